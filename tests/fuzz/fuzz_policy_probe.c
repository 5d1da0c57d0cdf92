/* libFuzzer target: POST /probe bodies through the strict decoder (decode, trailing-content and
 * required-field checks) and the probe hash, as the /probe handler runs them. */
#include <stddef.h>
#include <stdint.h>

#include "ic/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ic_probe_req_t r;
  char msg[256];
  bool too_large = size > IC_PROBE_MAX_BODY;
  size_t n = too_large ? IC_PROBE_MAX_BODY : size;
  if (ic_probe_parse((const char *)data, n, too_large, &r, msg, sizeof msg) == IC_PROBE_PARSE_OK) {
    uint8_t h[32];
    ic_probe_hash(r.backend, r.model, r.hash_scheme, h);
    ic_probe_req_clear(&r);
  }
  return 0;
}
