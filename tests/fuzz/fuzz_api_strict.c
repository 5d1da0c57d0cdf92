/* libFuzzer target: lib/api strict field validation of untrusted manifests. The input is a JSON
 * array [schema, object]: any schema shape (CRDs in the input are untrusted too) against any
 * object, and the object alone against the built-in kinds table; never crash, never leak. */
#include <stdint.h>
#include <string.h>

#include "ic/api.h"

static void sink(void *ud, const char *path, const char *why) {
  (*(size_t *)ud) += strlen(path) + strlen(why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t je;
  json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);
  if (!j) return 0;
  size_t n = 0;
  const json_t *schema = json_array_get(j, 0), *obj = json_array_get(j, 1);
  ic_api_strict_fields(obj ? obj : j, schema, sink, &n);
  ic_api_strict_fields(obj ? obj : j, NULL, sink, &n);
  const char *g, *k, *v;
  ic_api_crd_schema(j, &g, &k, &v);
  if (schema) ic_api_crd_schema(schema, &g, &k, &v);
  json_decref(j);
  return 0;
}
