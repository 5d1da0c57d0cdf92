target_link_libraries(${name} PRIVATE ic_rpc ic_proto PkgConfig::MSGPACK PkgConfig::ZMQ m)
target_compile_definitions(${name} PRIVATE IC_BUILD_DIR="${CMAKE_BINARY_DIR}")
