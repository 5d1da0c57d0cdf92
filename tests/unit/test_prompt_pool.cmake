# The pool answers real gRPC calls deferred by lib/rpc, and runs lib/svc's two-step LookupRoute.
target_link_libraries(${name} PRIVATE ic_rpc ic_svc ic_index ic_proto)
