# The pool answers real gRPC calls deferred by lib/rpc in half of its tests.
target_link_libraries(${name} PRIVATE ic_rpc)
