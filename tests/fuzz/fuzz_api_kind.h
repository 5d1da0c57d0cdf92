/* Shared body of the per-kind lib/api fuzz targets: decoding untrusted JSON (what the API server
 * or a webhook request hands us), then default, encode, re-decode and clone must never crash or leak. */
#ifndef IC_FUZZ_API_KIND_H
#define IC_FUZZ_API_KIND_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic/api.h"

#define IC_FUZZ_API_KIND(kind)                                                                \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {                              \
    json_error_t je;                                                                          \
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);                   \
    if (!j) return 0;                                                                         \
    ic_api_##kind##_t x, y, z;                                                                \
    memset(&x, 0, sizeof x), memset(&y, 0, sizeof y), memset(&z, 0, sizeof z);               \
    ic_api_errors_t errs = IC_API_ERRORS_INIT;                                                \
    if (ic_api_##kind##_decode(j, &x, &errs) == 0) {                                          \
      for (size_t i = 0; i < errs.len; i++) free(ic_api_field_error_string(&errs.items[i]));  \
      free(ic_api_errors_message(&errs, #kind, IC_API_GROUP, x.meta.name));                   \
      ic_api_##kind##_default(&x);                                                            \
      json_t *out = ic_api_##kind##_encode(&x);                                               \
      if (out) ic_api_##kind##_decode(out, &y, NULL);                                         \
      ic_api_##kind##_clone(&y, &z);                                                          \
      ic_api_##kind##_free(&z);                                                               \
      ic_api_##kind##_free(&y);                                                               \
      json_decref(out);                                                                       \
    }                                                                                         \
    ic_api_errors_free(&errs);                                                                \
    ic_api_##kind##_free(&x);                                                                 \
    json_decref(j);                                                                           \
    return 0;                                                                                 \
  }

#endif
