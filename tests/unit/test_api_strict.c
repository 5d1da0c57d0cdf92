/* lib/api strict field validation (ic_api_strict_fields): unknown fields at every depth against
 * a structural schema, the escape hatches Kubernetes honours, ObjectMeta, and built-in kinds. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "ic/api.h"

typedef struct seen {
  char paths[16][128];
  size_t n;
} seen_t;

static void collect(void *ud, const char *path, const char *why) {
  seen_t *s = ud;
  (void)why;
  if (s->n < 16) snprintf(s->paths[s->n++], 128, "%s", path);
}

static const char *SCHEMA =
    "{\"type\":\"object\",\"properties\":{"
    " \"spec\":{\"type\":\"object\",\"properties\":{"
    "   \"a\":{\"type\":\"integer\"},"
    "   "
    "\"list\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":"
    "\"string\"}}}},"
    "   \"labels\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
    "   \"free\":{\"type\":\"object\",\"x-kubernetes-preserve-unknown-fields\":true}}},"
    " \"status\":{\"type\":\"object\"}}}";

static size_t run(const char *obj_text, const char *schema_text, seen_t *s) {
  json_t *obj = json_loads(obj_text, 0, NULL),
         *sc = schema_text ? json_loads(schema_text, 0, NULL) : NULL;
  cr_assert(obj);
  memset(s, 0, sizeof *s);
  size_t n = ic_api_strict_fields(obj, sc, collect, s);
  json_decref(obj);
  json_decref(sc);
  return n;
}

Test(api_strict, unknown_fields_at_every_depth_are_reported_with_their_path) {
  seen_t s;
  size_t n =
      run("{\"apiVersion\":\"g/v1\",\"kind\":\"K\",\"metadata\":{\"name\":\"n\",\"lables\":{}},"
          "\"spec\":{\"a\":1,\"b\":2,\"list\":[{\"x\":\"1\"},{\"y\":2}],\"labels\":{\"any\":\"v\"},"
          "\"free\":{\"whatever\":{\"deep\":1}}},\"extra\":true}",
          SCHEMA, &s);
  cr_assert_eq(n, 4);
  cr_assert_str_eq(s.paths[0], "metadata.lables");
  cr_assert_str_eq(s.paths[1], "spec.b");
  cr_assert_str_eq(s.paths[2], "spec.list[1].y");
  cr_assert_str_eq(s.paths[3], "extra");
}

Test(api_strict, a_clean_object_passes) {
  seen_t s;
  cr_assert_eq(run("{\"apiVersion\":\"g/"
                   "v1\",\"kind\":\"K\",\"metadata\":{\"name\":\"n\",\"labels\":{\"a\":\"b\"}},"
                   "\"spec\":{\"a\":1},\"status\":{\"anything\":1}}",
                   SCHEMA, &s),
               0);
}

Test(api_strict, builtin_kinds_get_apiversion_kind_and_top_level_checks) {
  seen_t s;
  cr_assert_eq(run("{\"apiVersion\":\"apps/"
                   "v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"d\"},\"spec\":{}}",
                   NULL, &s),
               0);
  cr_assert_eq(run("{\"apiVersion\":\"apps/"
                   "v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"d\"},\"spce\":{}}",
                   NULL, &s),
               1);
  cr_assert_str_eq(s.paths[0], "spce");
  cr_assert_eq(
      run("{\"apiVersion\":\"app/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"d\"}}", NULL,
          &s),
      1);
  cr_assert_str_eq(s.paths[0], "kind");
  cr_assert_eq(run("{\"kind\":\"Deployment\"}", NULL, &s), 1);
  cr_assert_str_eq(s.paths[0], "apiVersion");
}

Test(api_strict, crd_schema_is_found_for_the_storage_version) {
  json_t *crd =
      json_loads("{\"kind\":\"CustomResourceDefinition\",\"spec\":{\"group\":\"g.io\",\"names\":{"
                 "\"kind\":\"K\"},"
                 "\"versions\":[{\"name\":\"v1\",\"storage\":true,\"schema\":{\"openAPIV3Schema\":"
                 "{\"type\":\"object\"}}}]}}",
                 0, NULL);
  const char *g, *k, *v;
  const json_t *sc = ic_api_crd_schema(crd, &g, &k, &v);
  cr_assert(sc);
  cr_assert_str_eq(g, "g.io");
  cr_assert_str_eq(k, "K");
  cr_assert_str_eq(v, "v1");
  json_decref(crd);
}
