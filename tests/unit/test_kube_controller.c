/* Pure parts of inferencecache-controller: the v7 /policy body (flattening, dedup, float32 and
 * nanosecond encodings), Go-style float32 formatting, and the status.health table H1-H5. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"

static json_t *list_of(const char *items) {
  char buf[4096];
  snprintf(buf, sizeof buf, "{\"items\":%s}", items);
  json_t *j = json_loads(buf, 0, NULL);
  cr_assert_not_null(j, "bad fixture %s", items);
  return j;
}

static void expect_body(const char *pols, const char *tens, const char *want) {
  json_t *p = list_of(pols), *t = list_of(tens);
  char *body = ctl_policy_body(p, t);
  cr_assert_str_eq(body, want);
  /* The server decodes it strictly; it must at least be one JSON object. */
  json_t *j = json_loads(body, 0, NULL);
  cr_assert(json_is_object(j));
  json_decref(j);
  free(body);
  json_decref(p);
  json_decref(t);
}

Test(kube_controller, policy_body_minimal_and_empty) {
  expect_body("[]", "[]", "{\"version\":7,\"policies\":[]}");
  expect_body("[{\"metadata\":{\"namespace\":\"team-a\",\"name\":\"p\"},"
              "\"spec\":{\"routingFloorScore\":\"0\"}}]",
              "[{\"metadata\":{\"namespace\":\"x\",\"name\":\"t\"},\"spec\":{\"tenantID\":"
              "\"tenant-a\",\"quota\":{\"maxIndexEntries\":10}}}]",
              "{\"version\":7,\"policies\":[{\"namespace\":\"team-a\",\"routingFloorScore\":0,"
              "\"eviction\":\"lru\"}],\"tenants\":[{\"tenantID\":\"tenant-a\",\"maxIndexEntries\":10}]}");
}

Test(kube_controller, policy_body_full_fields) {
  expect_body(
      "[{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"evictionTTL\":\"10m\","
      "\"minimumPrefixTokens\":16,\"minimumMatchedTokens\":32,\"routingFloorScore\":\"2.5\","
      "\"lookupTimeoutMs\":10,\"eviction\":\"LFU\",\"affinityRouting\":\"Disabled\","
      "\"strategy\":{\"enableChainMatching\":true,\"requireChain\":true,\"enableTenantHot\":false}}}]",
      "[{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"t\"},\"spec\":{\"tenantID\":\"ns1\","
      "\"isolationMode\":\"Fairness\",\"quota\":{\"maxIndexEntries\":5000}}}]",
      "{\"version\":7,\"policies\":[{\"namespace\":\"ns1\",\"evictionTTL\":600000000000,"
      "\"minimumPrefixTokens\":16,\"minimumMatchedTokens\":32,\"routingFloorScore\":2.5,"
      "\"lookupTimeoutMs\":10,\"affinityRouting\":false,\"eviction\":\"lfu\",\"strategy\":"
      "{\"enableChainMatching\":true,\"requireChain\":true,\"enableTenantHot\":false}}],"
      "\"tenants\":[{\"tenantID\":\"ns1\",\"maxIndexEntries\":5000,\"isolationMode\":\"Fairness\"}]}");
}

Test(kube_controller, policy_body_dedup_zero_omission_and_floor_fallbacks) {
  /* Sorted by (namespace, name); first per namespace wins; zero integers are omitted. */
  expect_body("[{\"metadata\":{\"namespace\":\"b\",\"name\":\"z\"},\"spec\":{\"routingFloorScore\":\"-1\"}},"
              "{\"metadata\":{\"namespace\":\"a\",\"name\":\"y\"},\"spec\":{\"eviction\":\"LFU\"}},"
              "{\"metadata\":{\"namespace\":\"a\",\"name\":\"x\"},\"spec\":{\"minimumPrefixTokens\":0,"
              "\"routingFloorScore\":\"abc\",\"affinityRouting\":\"Enabled\"}}]",
              "[{\"metadata\":{\"namespace\":\"b\",\"name\":\"t2\"},\"spec\":{\"tenantID\":\"q\","
              "\"quota\":{\"maxIndexEntries\":7}}},"
              "{\"metadata\":{\"namespace\":\"a\",\"name\":\"t1\"},\"spec\":{\"tenantID\":\"q\","
              "\"quota\":{\"maxIndexEntries\":0}}},"
              "{\"metadata\":{\"namespace\":\"a\",\"name\":\"t0\"},\"spec\":{\"tenantID\":\"noquota\"}}]",
              "{\"version\":7,\"policies\":[{\"namespace\":\"a\",\"routingFloorScore\":0.1,"
              "\"affinityRouting\":true,\"eviction\":\"lru\"},{\"namespace\":\"b\","
              "\"routingFloorScore\":0.1,\"eviction\":\"lru\"}],\"tenants\":[{\"tenantID\":\"q\","
              "\"maxIndexEntries\":0}]}");
}

Test(kube_controller, float32_shortest_form) {
  char out[48];
  struct {
    float f;
    const char *s;
  } cases[] = {{0, "0"}, {0.1f, "0.1"}, {0.75f, "0.75"}, {1, "1"}, {2.5f, "2.5"},
               {0.333333343f, "0.33333334"}, {1e-7f, "1e-7"}, {12345678, "12345678"}, {1e22f, "1e+22"}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ctl_fmt_float32(cases[i].f, out);
    cr_assert_str_eq(out, cases[i].s, "case %zu", i);
  }
}

static const char *health_of(const char *conds) {
  static char buf[32];
  char doc[1024];
  snprintf(doc, sizeof doc, "{\"conditions\":%s}", conds);
  json_t *st = json_loads(doc, 0, NULL);
  ctl_set_health(st);
  const char *h = json_string_value(json_object_get(st, "health"));
  snprintf(buf, sizeof buf, "%s", h ? h : "<absent>");
  json_decref(st);
  return buf;
}

Test(kube_controller, health_table_h1_to_h5) {
  cr_assert_str_eq(health_of("[{\"type\":\"Ready\",\"status\":\"True\"},"
                             "{\"type\":\"Degraded\",\"status\":\"True\"}]"), "Degraded");
  cr_assert_str_eq(health_of("[{\"type\":\"Ready\",\"status\":\"True\"},"
                             "{\"type\":\"Degraded\",\"status\":\"False\"}]"), "Ready");
  const char *failed[] = {"InvalidStorageConfiguration", "ExternalEndpointMissing",
                          "ExternalEndpointInvalid", "EngineKernelDegraded"};
  for (int i = 0; i < 4; i++) {
    char c[256];
    snprintf(c, sizeof c, "[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"%s\"}]", failed[i]);
    cr_assert_str_eq(health_of(c), "Failed", "%s", failed[i]);
  }
  cr_assert_str_eq(health_of("[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"RolloutInProgress\"}]"),
                   "Pending");
  cr_assert_str_eq(health_of("[{\"type\":\"Ready\",\"status\":\"Unknown\",\"reason\":\"ExternalEndpointMissing\"}]"),
                   "Pending");
  cr_assert_str_eq(health_of("[]"), "<absent>");
}

/* The additive strategy switch of docs/ranking.md travels to /policy only when the CR sets it. */
Test(kube_controller, policy_body_load_aware_switch) {
  expect_body("[{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"strategy\":"
              "{\"enableTenantHot\":true,\"loadAwareRouting\":true}}}]",
              "[]",
              "{\"version\":7,\"policies\":[{\"namespace\":\"ns1\",\"eviction\":\"lru\",\"strategy\":"
              "{\"enableTenantHot\":true,\"loadAwareRouting\":true}}]}");
}

/* predictOnRoute travels like loadAwareRouting: only when the CR sets it. */
Test(kube_controller, policy_body_predict_switch) {
  expect_body("[{\"metadata\":{\"namespace\":\"ns1\",\"name\":\"p\"},\"spec\":{\"strategy\":"
              "{\"loadAwareRouting\":true,\"predictOnRoute\":true}}}]",
              "[]",
              "{\"version\":7,\"policies\":[{\"namespace\":\"ns1\",\"eviction\":\"lru\",\"strategy\":"
              "{\"loadAwareRouting\":true,\"predictOnRoute\":true}}]}");
}
