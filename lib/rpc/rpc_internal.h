/* lib/rpc private declarations shared by server.c, client.c, health.c and reflection.c.
 * Nothing here is part of the public API (include/ic/rpc.h). */
#ifndef IC_RPC_INTERNAL_H
#define IC_RPC_INTERNAL_H
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "ic/rpc.h"

/* Process-wide grpc_init()/grpc_shutdown() reference, shared by servers and channels. */
void ic_rpc_global_ref(void);
void ic_rpc_global_unref(void);

/* Byte buffer <-> bytes. `scratch` receives a copy only when the buffer is not one slice;
 * *data points either into the byte buffer's slice (valid while `bb` lives) or into scratch. */
int ic_rpc_bb_read(grpc_byte_buffer *bb, ic_buf_t *scratch, const uint8_t **data, size_t *len);
grpc_byte_buffer *ic_rpc_bb_from(const uint8_t *data, size_t len);

/* Converts a Go-style listen/dial address (":9090", "host:port") to a gRPC target
 * ("[::]:9090"). Writes into out (cap bytes). */
void ic_rpc_listen_addr(const char *addr, char *out, size_t cap);

/* server.c's call internals for peer.c. */
const grpc_metadata_array *ic_rpc_call_md(const ic_rpc_call_t *c);
grpc_call *ic_rpc_call_core(const ic_rpc_call_t *c);

/* health.c / reflection.c hook into the server through the public API plus these. */
typedef struct ic_rpc_health ic_rpc_health_t;
ic_rpc_health_t *ic_rpc_health_new(const char *const *services);
void ic_rpc_health_free(ic_rpc_health_t *h);
int ic_rpc_health_register(ic_rpc_server_t *s, ic_rpc_health_t *h);
void ic_rpc_health_set(ic_rpc_health_t *h, bool serving);

typedef struct ic_rpc_reflection ic_rpc_reflection_t;
ic_rpc_reflection_t *ic_rpc_reflection_new(const uint8_t *fdset, size_t len);
void ic_rpc_reflection_free(ic_rpc_reflection_t *r);
/* Serialized ServerReflectionResponse for one serialized request (exposed for unit tests and
 * fuzzing). Returns 0 or IC_EINVAL (undecodable request). */
int ic_rpc_reflection_answer(ic_rpc_reflection_t *r, const uint8_t *req, size_t len, ic_buf_t *out);
int ic_rpc_reflection_register(ic_rpc_server_t *s, ic_rpc_reflection_t *r);

#endif
