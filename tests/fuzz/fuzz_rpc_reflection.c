/* Fuzzes the server-reflection request handler (untrusted ServerReflectionRequest bytes) over
 * the embedded descriptor set, and the descriptor-set indexer itself with arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "../../lib/rpc/rpc_internal.h"

extern const unsigned char ic_proto_descriptor_set[];
extern const size_t ic_proto_descriptor_set_len;

static ic_rpc_reflection_t *rf;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!rf) rf = ic_rpc_reflection_new(ic_proto_descriptor_set, ic_proto_descriptor_set_len);
  ic_buf_t out = IC_BUF_INIT;
  ic_rpc_reflection_answer(rf, data, size, &out);
  ic_buf_free(&out);
  ic_rpc_reflection_t *other = ic_rpc_reflection_new(data, size);
  ic_rpc_reflection_free(other);
  return 0;
}
