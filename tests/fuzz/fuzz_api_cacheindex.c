/* libFuzzer target: lib/api cacheindex decoding of untrusted JSON (what the API server or a webhook
 * request hands us) — decode, encode, re-decode and clone must never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t je;
  json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);
  if (!j) return 0;
  ic_api_cacheindex_t x;
  memset(&x, 0, sizeof x);
  ic_api_errors_t errs = IC_API_ERRORS_INIT;
  if (ic_api_cacheindex_decode(j, &x, &errs) == 0) {
    for (size_t i = 0; i < errs.len; i++) free(ic_api_field_error_string(&errs.items[i]));
    free(ic_api_errors_message(&errs, "cacheindex", IC_API_GROUP, x.meta.name));
    ic_api_cacheindex_default(&x);
    json_t *out = ic_api_cacheindex_encode(&x);
    ic_api_cacheindex_t y;
    memset(&y, 0, sizeof y);
    if (out) ic_api_cacheindex_decode(out, &y, NULL);
    ic_api_cacheindex_t z;
    memset(&z, 0, sizeof z);
    ic_api_cacheindex_clone(&y, &z);
    ic_api_cacheindex_free(&z);
    ic_api_cacheindex_free(&y);
    json_decref(out);
  }
  ic_api_errors_free(&errs);
  ic_api_cacheindex_free(&x);
  json_decref(j);
  return 0;
}
