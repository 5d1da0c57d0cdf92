# The load-generator pieces shared with bench_grpc (bench/rpc_load.c).
target_sources(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/rpc_load.c)
