/* Unit tests of lib/admission: the CacheBackend contract's admission statements (W1-W18,
 * named at each test), CachePolicy/CacheTenant namespace rules, the Pod webhook core
 * (wiring, sidecar, stamps, fail-open, idempotent re-admission) and the JSON Patch generator. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/admission.h"
#include "ic/err.h"

static json_t *J(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, 0, &e);
  cr_assert_not_null(j, "bad test json: %s (%s)", s, e.text);
  return j;
}

/* ---- a fake namespace listing (what the controller serves from a live read) ---- */
static json_t *g_list;
static int g_list_fail;
static json_t *list_cb(void *ud, const char *kind, const char *ns, char *err, size_t n) {
  (void)ud;
  if (g_list_fail) {
    snprintf(err, n, "boom listing %s in %s", kind, ns);
    return NULL;
  }
  json_t *out = json_array();
  size_t i;
  json_t *it;
  json_array_foreach(g_list, i, it) {
    const char *k = json_string_value(json_object_get(it, "kind"));
    const char *ons = json_string_value(json_object_get(json_object_get(it, "metadata"), "namespace"));
    if (k && strcmp(k, kind) == 0 && ons && strcmp(ons, ns) == 0) json_array_append(out, it);
  }
  return out;
}
static ic_admission_config_t cfg = {.subscriber_image = "registry.example/kvevent-subscriber:v1",
                                    .policy_server_grpc_address = "server.example:9090",
                                    .list = list_cb};

static void reset(const char *list) {
  json_decref(g_list);
  g_list = J(list ? list : "[]");
  g_list_fail = 0;
}

/* Runs one review; returns the parsed response object (caller decrefs the review). */
static json_t *review(ic_admission_hook_t h, const char *op, const char *obj, const char *old, json_t **keep) {
  char *body = NULL;
  if (asprintf(&body,
               "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u-1\","
               "\"operation\":\"%s\",\"namespace\":\"llm\",\"object\":%s,\"oldObject\":%s}}",
               op, obj ? obj : "null", old ? old : "null") < 0)
    cr_assert_fail("oom");
  char *out = NULL;
  size_t len = 0;
  cr_assert_eq(ic_admission_review(&cfg, h, body, strlen(body), &out, &len), 0);
  free(body);
  json_t *r = J(out);
  free(out);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "response"), "uid")), "u-1");
  *keep = r;
  return json_object_get(r, "response");
}

static bool allowed(json_t *resp) { return json_is_true(json_object_get(resp, "allowed")); }

static bool has_cause(json_t *resp, const char *field, const char *reason) {
  json_t *causes = json_object_get(json_object_get(json_object_get(resp, "status"), "details"), "causes");
  size_t i;
  json_t *c;
  json_array_foreach(causes, i, c) {
    if (strcmp(json_string_value(json_object_get(c, "field")), field) == 0 &&
        strcmp(json_string_value(json_object_get(c, "reason")), reason) == 0)
      return true;
  }
  return false;
}

#define CB(spec) "{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\",\"metadata\":{\"name\":\"cb\",\"namespace\":\"llm\",\"uid\":\"uid-cb\",\"generation\":3}" spec "}"
#define DIGEST "registry.example/lmcache@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define PODLOCAL                                                                                         \
  "\"lmCache\":{\"topology\":\"PodLocal\",\"podLocal\":{\"server\":{\"image\":\"" DIGEST "\",\"port\":5555,"  \
  "\"l1Capacity\":\"4Gi\",\"maxWorkers\":4,\"resources\":{\"requests\":{\"cpu\":\"2\",\"memory\":\"6Gi\"},"    \
  "\"limits\":{\"memory\":\"6Gi\"}}}}}"
#define VLLM_CB CB(",\"spec\":{\"runtime\":\"VLLM\",\"type\":\"LMCache\",\"engineSelector\":{\"matchLabels\":{\"inferencecache.io/cache-domain\":\"chat\"}}," PODLOCAL ",\"observation\":{\"modelID\":\"org/model-8b\"}}")

static void expect_allowed(const char *obj, const char *old, const char *op) {
  json_t *keep;
  json_t *r = review(IC_ADM_CACHEBACKEND_VALIDATE, op, obj, old, &keep);
  char *s = json_dumps(r, JSON_COMPACT);
  cr_assert(allowed(r), "denied: %s", s);
  free(s);
  json_decref(keep);
}

static json_t *expect_denied(const char *obj, const char *old, const char *op, json_t **keep) {
  json_t *r = review(IC_ADM_CACHEBACKEND_VALIDATE, op, obj, old, keep);
  cr_assert(!allowed(r), "unexpectedly allowed: %s", obj);
  return r;
}

Test(cachebackend_admission, w1_w6_seed_shapes_are_accepted, .init = NULL) {
  reset(NULL);
  const char *ok[] = {CB(""), CB(",\"spec\":{}"), CB(",\"spec\":{\"type\":\"memory\"}"),
                      CB(",\"spec\":{\"type\":\"Mooncake\"}"), CB(",\"spec\":{\"type\":\"AIBrix\"}"),
                      CB(",\"spec\":{\"type\":\"NIXL\"}"), CB(",\"spec\":{\"type\":\"SGLangHiCache\"}"),
                      CB(",\"spec\":{\"type\":\"anything at all\"}"),
                      CB(",\"spec\":{\"endpoint\":\"cache.example.svc:9000\"}"), CB(",\"spec\":{\"type\":\"External\"}"),
                      CB(",\"spec\":{\"type\":\"LMCache\",\"endpoint\":\"x:1\"}")};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) expect_allowed(ok[i], NULL, "CREATE");
}

Test(cachebackend_admission, w2_defaulter_adds_nothing) {
  reset(NULL);
  json_t *keep;
  json_t *r = review(IC_ADM_CACHEBACKEND_MUTATE, "CREATE", CB(",\"spec\":{}"), NULL, &keep);
  cr_assert(allowed(r));
  cr_assert_null(json_object_get(r, "patch"), "no CacheBackend defaulting may add nested objects");
  json_decref(keep);
}

Test(cachebackend_admission, w7_w8_w9_w10_schema_statements) {
  static const struct {
    const char *obj, *field;
  } bad[] = {
      {CB(",\"spec\":{\"deploymentKind\":\"DaemonSet\"}"), "spec.deploymentKind"},
      {CB(",\"spec\":{\"replicas\":-1}"), "spec.replicas"},
      {CB(",\"spec\":{\"integration\":{\"lookupTimeoutMs\":-1}}"), "spec.integration.lookupTimeoutMs"},
      {CB(",\"spec\":{\"integration\":{\"minimumPrefixTokens\":-1}}"), "spec.integration.minimumPrefixTokens"},
      {CB(",\"spec\":{\"template\":{\"terminationGracePeriodSeconds\":-1}}"), "spec.template.terminationGracePeriodSeconds"},
      {CB(",\"status\":{\"indexEntries\":-1}"), "status.indexEntries"},
      {CB(",\"spec\":{\"integration\":{\"role\":\"Admin\"}}"), "spec.integration.role"},
      {CB(",\"status\":{\"health\":\"Unknown\"}"), "status.health"},
      {CB(",\"spec\":{\"storage\":{\"pvc\":{}}}"), "spec.storage.pvc.size"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    json_t *j = J(bad[i].obj);
    ic_api_errors_t e = IC_API_ERRORS_INIT;
    cr_assert_eq(ic_api_validate_schema(j, &e), 0);
    cr_assert_eq(e.len, 1, "%s: %zu errors", bad[i].obj, e.len);
    cr_assert_str_eq(e.items[0].field, bad[i].field);
    ic_api_errors_free(&e);
    json_decref(j);
  }
  const char *good[] = {CB(",\"spec\":{\"storage\":{\"pvc\":{\"size\":\"10Gi\"}}}"), CB(",\"spec\":{\"storage\":{}}"),
                        CB(",\"spec\":{\"integration\":{\"failOpen\":false}}"),
                        CB(",\"spec\":{\"template\":{\"nodeSelector\":{\"pool\":\"cache\"},\"containers\":[{}]}}")};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    json_t *j = J(good[i]);
    ic_api_errors_t e = IC_API_ERRORS_INIT;
    cr_assert_eq(ic_api_validate_schema(j, &e), 0);
    cr_assert_eq(e.len, 0, "%s rejected by the schema", good[i]);
    json_decref(j);
    expect_allowed(good[i], NULL, "CREATE");
  }
}

#define SEED_CB                                                                                                      \
  CB(",\"spec\":{\"type\":\"LMCache\",\"deploymentKind\":\"StatefulSet\",\"replicas\":1,\"storage\":{\"pvc\":{"      \
     "\"size\":\"20Gi\",\"storageClassName\":\"fast-ssd\"}},\"integration\":{\"engine\":\"vLLM\",\"role\":\"ReadWrite\"," \
     "\"lookupTimeoutMs\":25,\"minimumPrefixTokens\":64},\"engineSelector\":{\"matchLabels\":{"                     \
     "\"inferencecache.io/cache-enabled\":\"true\"}},\"backendConfig\":{\"evictionPolicy\":\"LFU\"},\"template\":{"  \
     "\"nodeSelector\":{\"node-pool\":\"kv-cache\"}}}")

Test(cachebackend_admission, w11_w13_seed_sample_create_and_noop_update) {
  reset(NULL);
  expect_allowed(SEED_CB, NULL, "CREATE");
  expect_allowed(SEED_CB, SEED_CB, "UPDATE");
}

Test(cachebackend_admission, w12_update_does_not_trap_stored_objects) {
  reset(NULL);
  const char *old = CB(",\"spec\":{\"type\":\"External\",\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"Managed\"}}");
  const char *new_ = CB(",\"spec\":{\"type\":\"External\",\"backendConfig\":{\"a\":\"b\"},\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"Managed\"}}");
  json_t *keep;
  expect_denied(old, NULL, "CREATE", &keep);
  json_decref(keep);
  expect_allowed(new_, old, "UPDATE");
  /* a newly introduced error is still rejected */
  const char *worse = CB(",\"spec\":{\"type\":\"External\",\"hiCache\":{\"sizeGB\":1},\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"Managed\"}}");
  json_t *r = expect_denied(worse, old, "UPDATE", &keep);
  cr_assert(has_cause(r, "spec.hiCache", "FieldValueForbidden"));
  cr_assert(!has_cause(r, "spec.remoteStorage", "FieldValueForbidden"), "pre-existing error must be dropped");
  json_decref(keep);
}

Test(cachebackend_admission, w14_w15_remote_storage_rules) {
  reset(NULL);
  json_t *keep, *r;
  r = expect_denied(CB(",\"spec\":{\"type\":\"External\",\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"External\",\"endpoint\":\"r:6379\"}}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.remoteStorage", "FieldValueForbidden"));
  json_decref(keep);
  r = expect_denied(CB(",\"spec\":{\"type\":\"LMCache\",\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"Managed\",\"endpoint\":\"r:6379\"}}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.remoteStorage.endpoint", "FieldValueForbidden"));
  json_decref(keep);
  r = expect_denied(CB(",\"spec\":{\"type\":\"LMCache\",\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"External\"}}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.remoteStorage.endpoint", "FieldValueRequired"));
  json_decref(keep);
  r = expect_denied(CB(",\"spec\":{\"type\":\"LMCache\",\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"External\",\"endpoint\":\"redis://h:1\"}}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.remoteStorage.endpoint", "FieldValueInvalid"));
  json_decref(keep);
  expect_allowed(CB(",\"spec\":{\"type\":\"LMCache\",\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"Managed\"}}"), NULL, "CREATE");
  r = expect_denied(CB(",\"spec\":{\"type\":\"LMCache\",\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"External\",\"endpoint\":\"redis.other.svc:6379\"}}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.remoteStorage.endpoint", "FieldValueForbidden"), "cross-namespace needs opt-in");
  json_decref(keep);
  r = expect_denied(CB(",\"spec\":{\"type\":\"LMCache\",\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"Managed\",\"redis\":{\"database\":1,\"resources\":{\"requests\":{\"memory\":\"2Gi\"},\"limits\":{\"memory\":\"1Gi\"},\"claims\":[{\"name\":\"c\"}]}}}}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.remoteStorage.redis.database", "FieldValueForbidden"));
  cr_assert(has_cause(r, "spec.remoteStorage.redis.resources.limits[memory]", "FieldValueInvalid"));
  cr_assert(has_cause(r, "spec.remoteStorage.redis.resources.claims", "FieldValueForbidden"));
  json_decref(keep);
}

Test(cachebackend_admission, w16_unsupported_runtime_pair) {
  reset(NULL);
  json_t *keep;
  json_t *r = expect_denied(CB(",\"spec\":{\"runtime\":\"VLLM\",\"type\":\"SGLangHiCache\",\"hiCache\":{\"sizeGB\":4},\"engineSelector\":{\"matchLabels\":{\"inferencecache.io/cache-domain\":\"d\"}}}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.runtime", "FieldValueInvalid"));
  json_decref(keep);
}

Test(cachebackend_admission, w17_selector_shape_and_domain_uniqueness) {
  reset(NULL);
  json_t *keep;
  json_t *r = expect_denied(CB(",\"spec\":{\"runtime\":\"VLLM\",\"engineSelector\":{\"matchLabels\":{\"inferencecache.io/cache-domain\":\"d\",\"app\":\"x\"}}," PODLOCAL "}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.engineSelector.matchLabels", "FieldValueForbidden"));
  json_decref(keep);
  expect_allowed(VLLM_CB, NULL, "CREATE");
  reset("[{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\",\"metadata\":{\"name\":\"aaa\",\"namespace\":\"llm\"},"
        "\"spec\":{\"engineSelector\":{\"matchLabels\":{\"inferencecache.io/cache-domain\":\"chat\"}}}}]");
  r = expect_denied(VLLM_CB, NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.engineSelector.matchLabels[inferencecache.io/cache-domain]", "FieldValueForbidden"));
  json_decref(keep);
  r = expect_denied(VLLM_CB, VLLM_CB, "UPDATE", &keep); /* never grandfathered */
  cr_assert(has_cause(r, "spec.engineSelector.matchLabels[inferencecache.io/cache-domain]", "FieldValueForbidden"));
  json_decref(keep);
  g_list_fail = 1;
  r = expect_denied(VLLM_CB, NULL, "CREATE", &keep);
  cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "status"), "code")), 403);
  json_decref(keep);
}

Test(cachebackend_admission, w13_seed_selector_with_any_key_admitted) {
  reset(NULL);
  expect_allowed(CB(",\"spec\":{\"type\":\"LMCache\",\"engineSelector\":{\"matchLabels\":{\"app\":\"vllm\",\"tier\":\"a\"}}}"), NULL, "CREATE");
}

Test(cachebackend_admission, w18_delete_always_admitted) {
  reset(NULL);
  g_list_fail = 1;
  expect_allowed(CB(",\"spec\":{\"runtime\":\"TGI\"}"), NULL, "DELETE");
}

Test(cachebackend_admission, typed_rules_topology_role_overrides_annotation) {
  reset(NULL);
  json_t *keep, *r;
  r = expect_denied(CB(",\"spec\":{\"runtime\":\"VLLM\"}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.lmCache", "FieldValueRequired"));
  cr_assert(has_cause(r, "spec.runtime", "FieldValueInvalid"), "no adapter supports a topology-less LMCache backend");
  json_decref(keep);
  r = expect_denied(CB(",\"metadata\":{\"annotations\":{\"inferencecache.io/lmcache-kernel-check\":\"maybe\"}}"), NULL, "CREATE", &keep);
  json_decref(keep);
  r = expect_denied(CB(",\"spec\":{\"runtime\":\"VLLM\",\"integration\":{\"role\":\"ReadOnly\",\"engineOverrides\":{\"args\":[\"--kv-transfer-config={}\",\"positional\"],\"env\":[{\"name\":\"PYTHONHASHSEED\",\"value\":\"1\"},{\"name\":\"1BAD\"}]}}," PODLOCAL "}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.integration.role", "FieldValueNotSupported"));
  cr_assert(has_cause(r, "spec.integration.engineOverrides.args[0]", "FieldValueForbidden"));
  cr_assert(!has_cause(r, "spec.integration.engineOverrides.args[1]", "FieldValueForbidden"));
  cr_assert(has_cause(r, "spec.integration.engineOverrides.env[0].name", "FieldValueForbidden"));
  cr_assert(has_cause(r, "spec.integration.engineOverrides.env[1].name", "FieldValueInvalid"));
  json_decref(keep);
  r = expect_denied(CB(",\"spec\":{\"runtime\":\"VLLM\",\"engineSelector\":{\"matchLabels\":{\"inferencecache.io/cache-domain\":\"d\"}},\"lmCache\":{\"topology\":\"PodLocal\",\"podLocal\":{\"server\":{\"image\":\"lmcache:latest\",\"port\":8080,\"l1Capacity\":\"4Gi\",\"maxWorkers\":1,\"resources\":{\"requests\":{\"cpu\":\"1\",\"memory\":\"4Gi\"},\"limits\":{\"memory\":\"4Gi\"}}}}}}"), NULL, "CREATE", &keep);
  cr_assert(has_cause(r, "spec.lmCache.podLocal.server.image", "FieldValueInvalid"));
  cr_assert(has_cause(r, "spec.lmCache.podLocal.server.port", "FieldValueInvalid"));
  cr_assert(has_cause(r, "spec.lmCache.podLocal.server.resources.requests[memory]", "FieldValueInvalid"));
  json_decref(keep);
  const char *msg = json_string_value(json_object_get(json_object_get(r, "status"), "message"));
  (void)msg;
}

/* ---- CachePolicy / CacheTenant ---- */

#define CP(name, spec) "{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CachePolicy\",\"metadata\":{\"name\":\"" name "\",\"namespace\":\"llm\"},\"spec\":" spec "}"
#define CT(name, spec) "{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheTenant\",\"metadata\":{\"name\":\"" name "\",\"namespace\":\"llm\"},\"spec\":" spec "}"

Test(policy_tenant_admission, one_policy_per_namespace_and_spec_rules) {
  reset("[" CP("b-existing", "{}") "," CP("a-existing", "{}") "]");
  json_t *keep;
  json_t *r = review(IC_ADM_CACHEPOLICY_VALIDATE, "CREATE", CP("new", "{\"evictionTTL\":\"0s\"}"), NULL, &keep);
  cr_assert(!allowed(r));
  cr_assert(has_cause(r, "metadata.name", "FieldValueForbidden"));
  cr_assert(has_cause(r, "spec.evictionTTL", "FieldValueInvalid"));
  cr_assert(strstr(json_string_value(json_object_get(json_object_get(r, "status"), "message")), "a-existing"));
  json_decref(keep);
  r = review(IC_ADM_CACHEPOLICY_VALIDATE, "CREATE", CP("a-existing", "{}"), NULL, &keep);
  cr_assert(!allowed(r), "b-existing is still another policy");
  json_decref(keep);
  reset("[" CP("only", "{}") "]");
  r = review(IC_ADM_CACHEPOLICY_VALIDATE, "CREATE", CP("only", "{}"), NULL, &keep);
  cr_assert(allowed(r), "self re-admission is fine");
  json_decref(keep);
  r = review(IC_ADM_CACHEPOLICY_VALIDATE, "UPDATE", CP("only", "{\"evictionTTL\":\"-1m\"}"), CP("only", "{\"evictionTTL\":\"-1m\"}"), &keep);
  cr_assert(allowed(r), "pre-existing bad TTL is grandfathered");
  json_decref(keep);
  r = review(IC_ADM_CACHEPOLICY_VALIDATE, "UPDATE", CP("only", "{\"strategy\":{\"enableChainMatching\":false,\"requireChain\":true}}"), CP("only", "{}"), &keep);
  cr_assert(has_cause(r, "spec.strategy.requireChain", "FieldValueInvalid"));
  json_decref(keep);
  g_list_fail = 1;
  r = review(IC_ADM_CACHEPOLICY_VALIDATE, "CREATE", CP("x", "{}"), NULL, &keep);
  cr_assert(!allowed(r), "list errors fail closed");
  json_decref(keep);
}

Test(policy_tenant_admission, tenant_probe_reserved_and_unique_per_namespace) {
  reset("[" CT("t2", "{\"tenantID\":\"acme\"}") "," CT("t1", "{\"tenantID\":\"acme\"}") "]");
  json_t *keep;
  json_t *r = review(IC_ADM_CACHETENANT_VALIDATE, "CREATE", CT("t3", "{\"tenantID\":\"acme\"}"), NULL, &keep);
  cr_assert(!allowed(r));
  cr_assert(has_cause(r, "spec.tenantID", "FieldValueInvalid"));
  cr_assert(strstr(json_string_value(json_object_get(json_object_get(r, "status"), "message")), "\"t1\""));
  json_decref(keep);
  r = review(IC_ADM_CACHETENANT_VALIDATE, "CREATE", CT("t3", "{\"tenantID\":\"inferencecache.io/probe\"}"), NULL, &keep);
  cr_assert(!allowed(r));
  json_decref(keep);
  r = review(IC_ADM_CACHETENANT_VALIDATE, "UPDATE", CT("t1", "{\"tenantID\":\"acme\",\"quota\":{\"maxIndexEntries\":5}}"), CT("t1", "{\"tenantID\":\"acme\"}"), &keep);
  cr_assert(allowed(r), "unchanged tenantID is not re-checked");
  json_decref(keep);
  r = review(IC_ADM_CACHETENANT_VALIDATE, "UPDATE", CT("t9", "{\"tenantID\":\"acme\"}"), CT("t9", "{\"tenantID\":\"other\"}"), &keep);
  cr_assert(!allowed(r), "changing onto a sibling's tenantID is rejected");
  json_decref(keep);
  r = review(IC_ADM_CACHETENANT_VALIDATE, "CREATE", CT("t4", "{\"tenantID\":\"fresh\"}"), NULL, &keep);
  cr_assert(allowed(r));
  json_decref(keep);
}

/* ---- Pod webhook ---- */

#define POD(labels, anns, containers)                                                                  \
  "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"engine-0\",\"namespace\":\"llm\"," \
  "\"labels\":" labels ",\"annotations\":" anns "},\"spec\":{\"containers\":" containers "}}"
#define VLLM_CONTAINERS                                                                                       \
  "[{\"name\":\"vllm\",\"image\":\"vllm/vllm-openai:v0.9\",\"args\":[\"--model\",\"m\",\"--port\",\"8001\"]," \
  "\"env\":[{\"name\":\"HF_HOME\",\"value\":\"/cache\"}],\"resources\":{\"limits\":{\"nvidia.com/gpu\":\"1\"}}}]"
#define CHAT "{\"inferencecache.io/cache-domain\":\"chat\"}"

/* Applies a patch produced by ic_admission_json_patch (add/remove/replace with simple pointers). */
static json_t *resolve_parent(json_t *doc, const char *path, char *last) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", path);
  char *slash = strrchr(buf, '/');
  snprintf(last, 512, "%s", slash + 1);
  *slash = 0;
  json_t *cur = doc;
  char *save = NULL;
  for (char *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
    char tok[512];
    size_t o = 0;
    for (char *p = t; *p && o < 511; p++) {
      if (p[0] == '~' && p[1] == '1') tok[o++] = '/', p++;
      else if (p[0] == '~' && p[1] == '0') tok[o++] = '~', p++;
      else tok[o++] = *p;
    }
    tok[o] = 0;
    cur = json_is_array(cur) ? json_array_get(cur, strtoul(tok, NULL, 10)) : json_object_get(cur, tok);
  }
  char tmp[512];
  size_t o = 0;
  for (char *p = last; *p && o < 511; p++) {
    if (p[0] == '~' && p[1] == '1') tmp[o++] = '/', p++;
    else if (p[0] == '~' && p[1] == '0') tmp[o++] = '~', p++;
    else tmp[o++] = *p;
  }
  tmp[o] = 0;
  strcpy(last, tmp);
  return cur;
}
static void apply_patch(json_t *doc, const json_t *ops) {
  size_t i;
  const json_t *op;
  json_array_foreach(ops, i, op) {
    const char *kind = json_string_value(json_object_get(op, "op"));
    char last[512];
    json_t *parent = resolve_parent(doc, json_string_value(json_object_get(op, "path")), last);
    json_t *v = json_object_get(op, "value");
    cr_assert_not_null(parent);
    if (json_is_array(parent)) {
      if (strcmp(last, "-") == 0) json_array_append(parent, v);
      else if (strcmp(kind, "remove") == 0) json_array_remove(parent, strtoul(last, NULL, 10));
      else if (strcmp(kind, "replace") == 0) json_array_set(parent, strtoul(last, NULL, 10), v);
      else json_array_insert(parent, strtoul(last, NULL, 10), v);
    } else {
      if (strcmp(kind, "remove") == 0) json_object_del(parent, last);
      else json_object_set(parent, last, v);
    }
  }
}

static json_t *mutate(const char *pod, const char *backends, ic_admission_pod_result_t *res) {
  json_t *p = J(pod), *b = backends ? J(backends) : NULL;
  memset(res, 0, sizeof *res);
  ic_admission_mutate_pod(&cfg, p, "llm", b, res);
  json_decref(b);
  return p;
}

static json_t *find(json_t *arr, const char *name) {
  size_t i;
  json_t *it;
  json_array_foreach(arr, i, it) if (strcmp(json_string_value(json_object_get(it, "name")), name) == 0) return it;
  return NULL;
}

Test(pod_webhook, vllm_podlocal_injection_and_zero_op_readmission) {
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", VLLM_CONTAINERS), "[" VLLM_CB "]", &res);
  cr_assert(!res.denied);
  cr_assert_not_null(res.patched, "%s", res.reason);
  json_t *spec = json_object_get(res.patched, "spec");
  json_t *eng = find(json_object_get(spec, "containers"), "vllm");
  json_t *args = json_object_get(eng, "args");
  char *a = json_dumps(args, JSON_COMPACT);
  cr_assert(strstr(a, "\"--kv-transfer-config\",\"{\\\"kv_connector\\\":\\\"LMCacheMPConnector\\\""), "%s", a);
  cr_assert(strstr(a, "\\\"lmcache.mp.port\\\":\\\"5555\\\""), "%s", a);
  cr_assert(strstr(a, "\"--disable-hybrid-kv-cache-manager\""));
  free(a);
  cr_assert_str_eq(json_string_value(json_object_get(find(json_object_get(eng, "env"), "PYTHONHASHSEED"), "value")), "0");
  json_t *srv = find(json_object_get(spec, "initContainers"), "lmcache-mp-server");
  cr_assert_not_null(srv);
  cr_assert_str_eq(json_string_value(json_object_get(srv, "restartPolicy")), "Always");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(find(json_object_get(spec, "volumes"), "lmcache-mp-shm"), "emptyDir"), "sizeLimit")), "5Gi");
  json_t *side = find(json_object_get(spec, "containers"), "kvevent-subscriber");
  cr_assert_not_null(side);
  char *sa = json_dumps(json_object_get(side, "args"), JSON_COMPACT);
  cr_assert(strstr(sa, "--engine-metrics-url=http://127.0.0.1:8001/metrics"), "%s", sa);
  cr_assert(strstr(sa, "--hash-scheme=vllm") && strstr(sa, "--server=server.example:9090") &&
            strstr(sa, "--ignore-block-removed=true"), "%s", sa);
  free(sa);
  json_t *anns = json_object_get(json_object_get(res.patched, "metadata"), "annotations");
  cr_assert_str_eq(json_string_value(json_object_get(anns, "inferencecache.io/injected-by")), "llm/cb");
  cr_assert_str_eq(json_string_value(json_object_get(anns, "inferencecache.io/injected-by-uid")), "uid-cb");
  cr_assert_str_eq(json_string_value(json_object_get(anns, "inferencecache.io/injected-generation")), "3");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(res.patched, "metadata"), "labels"), "inferencecache.io/lmcache-mp-metrics")), "true");
  /* the patch reproduces the mutation */
  json_t *ops = ic_admission_json_patch(pod, res.patched);
  json_t *copy = json_deep_copy(pod);
  apply_patch(copy, ops);
  cr_assert(json_equal(copy, res.patched), "patch does not reproduce the mutated Pod");
  /* re-admission: zero ops */
  ic_admission_pod_result_t again;
  memset(&again, 0, sizeof again);
  json_t *b = J("[" VLLM_CB "]");
  ic_admission_mutate_pod(&cfg, res.patched, "llm", b, &again);
  cr_assert_null(again.patched, "re-admission changed the Pod: %s", again.reason);
  json_decref(b), json_decref(ops), json_decref(copy), json_decref(pod), json_decref(res.patched);
}

Test(pod_webhook, no_match_passthrough_and_forged_stamps_stripped) {
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD("{\"app\":\"x\"}", "{}", VLLM_CONTAINERS), "[" VLLM_CB "]", &res);
  cr_assert_null(res.patched);
  cr_assert(strstr(res.reason, "no matching CacheBackend"));
  json_decref(pod);
  pod = mutate(POD("{\"app\":\"x\"}", "{\"inferencecache.io/injected-by\":\"llm/forged\"}", VLLM_CONTAINERS), "[" VLLM_CB "]", &res);
  cr_assert_not_null(res.patched);
  cr_assert_null(json_object_get(json_object_get(res.patched, "metadata"), "annotations"));
  json_decref(pod), json_decref(res.patched);
  pod = mutate(POD(CHAT, "{}", VLLM_CONTAINERS), NULL, &res); /* list error */
  cr_assert_null(res.patched);
  cr_assert(!res.denied);
  json_decref(pod);
}

Test(pod_webhook, overlapping_selectors_denied) {
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", VLLM_CONTAINERS),
                       "[" VLLM_CB ",{\"metadata\":{\"name\":\"another\"},\"spec\":{\"engineSelector\":{\"matchLabels\":" CHAT "}}}]", &res);
  cr_assert(res.denied);
  cr_assert(strstr(res.reason, "(another, cb)"), "%s", res.reason);
  json_decref(pod);
}

Test(pod_webhook, skip_inject_annotation) {
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{\"inferencecache.io/skip-inject\":\"true\",\"inferencecache.io/injected-by\":\"x/y\"}", VLLM_CONTAINERS), "[" VLLM_CB "]", &res);
  cr_assert_not_null(res.patched);
  json_t *anns = json_object_get(json_object_get(res.patched, "metadata"), "annotations");
  cr_assert_str_eq(json_string_value(json_object_get(anns, "inferencecache.io/inject-skipped")), "skip-inject-annotation");
  cr_assert_null(json_object_get(anns, "inferencecache.io/injected-by"));
  json_t *again = json_deep_copy(res.patched);
  json_decref(res.patched);
  json_t *b = J("[" VLLM_CB "]");
  memset(&res, 0, sizeof res);
  ic_admission_mutate_pod(&cfg, again, "llm", b, &res);
  cr_assert_null(res.patched, "already-marked Pod gets no patch");
  json_decref(b), json_decref(again), json_decref(pod);
  pod = mutate(POD(CHAT, "{\"inferencecache.io/skip-inject\":\"off\"}", VLLM_CONTAINERS), "[" VLLM_CB "]", &res);
  cr_assert_not_null(res.patched, "\"off\" does not opt out");
  cr_assert_not_null(json_object_get(json_object_get(json_object_get(res.patched, "metadata"), "annotations"), "inferencecache.io/injected-by"));
  json_decref(pod), json_decref(res.patched);
}

Test(pod_webhook, incompatible_engine_fails_open) {
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", "[{\"name\":\"vllm\",\"image\":\"v\",\"args\":[\"--pipeline-parallel-size\",\"2\"]}]"), "[" VLLM_CB "]", &res);
  cr_assert_null(res.patched);
  cr_assert(strstr(res.reason, "pipeline"), "%s", res.reason);
  json_decref(pod);
}

#define EVENTS_CB CB(",\"spec\":{\"runtime\":\"SGLang\",\"integration\":{\"mode\":\"EventsOnly\"},\"engineSelector\":{\"matchLabels\":" CHAT "},\"observation\":{\"modelID\":\"m\"}}")

Test(pod_webhook, events_only_adds_only_the_subscriber) {
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\",\"args\":[\"--port\",\"30001\"]}]"), "[" EVENTS_CB "]", &res);
  cr_assert_not_null(res.patched, "%s", res.reason);
  json_t *cs = json_object_get(json_object_get(res.patched, "spec"), "containers");
  cr_assert_eq(json_array_size(cs), 2);
  cr_assert(json_equal(json_array_get(cs, 0), json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0)),
            "engine container must stay untouched");
  char *sa = json_dumps(json_object_get(find(cs, "kvevent-subscriber"), "args"), JSON_COMPACT);
  cr_assert(!strstr(sa, "--ignore-block-removed"), "%s", sa);
  cr_assert(strstr(sa, "http://127.0.0.1:30001/metrics"), "%s", sa);
  free(sa);
  json_t *b = J("[" EVENTS_CB "]");
  ic_admission_pod_result_t again;
  memset(&again, 0, sizeof again);
  ic_admission_mutate_pod(&cfg, res.patched, "llm", b, &again);
  cr_assert_null(again.patched, "%s", again.reason);
  json_decref(b), json_decref(pod), json_decref(res.patched);
  /* without a subscriber image nothing is wired and nothing is stamped */
  ic_admission_config_t saved = cfg;
  cfg.subscriber_image = NULL;
  pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\"}]"), "[" EVENTS_CB "]", &res);
  cr_assert_null(res.patched);
  cfg = saved;
  json_decref(pod);
}

Test(pod_webhook, sglang_podlocal_and_hicache) {
  const char *sg_cb = CB(",\"spec\":{\"runtime\":\"SGLang\",\"engineSelector\":{\"matchLabels\":" CHAT "}," PODLOCAL "}");
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\",\"args\":[\"--page-size\",\"64\"]}]"), sg_cb, &res);
  cr_assert_null(res.patched, "a non-list backends value is not a list");
  json_decref(pod);
  char list[4096];
  snprintf(list, sizeof list, "[%s]", sg_cb);
  pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\",\"args\":[\"--page-size\",\"64\"]}]"), list, &res);
  cr_assert_not_null(res.patched, "%s", res.reason);
  json_t *eng = find(json_object_get(json_object_get(res.patched, "spec"), "containers"), "sglang");
  char *a = json_dumps(json_object_get(eng, "args"), JSON_COMPACT);
  cr_assert(strstr(a, "\"--enable-lmcache\",\"--lmcache-config-file\",\"/var/run/inference-cache/lmcache/client.yaml\""), "%s", a);
  cr_assert(!strstr(a, "--disable-hybrid"), "%s", a);
  free(a);
  json_decref(pod), json_decref(res.patched);
  pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\",\"args\":[\"--page-size\",\"100\"]}]"), list, &res);
  cr_assert_null(res.patched, "chunk 256 is not a multiple of page size 100");
  json_decref(pod);
  const char *hc = CB(",\"spec\":{\"runtime\":\"SGLang\",\"type\":\"SGLangHiCache\",\"hiCache\":{\"sizeGB\":8,\"writePolicy\":\"write_through\"},\"engineSelector\":{\"matchLabels\":" CHAT "}}");
  snprintf(list, sizeof list, "[%s]", hc);
  pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\",\"args\":[\"--hicache-size\",\"8\"]}]"), list, &res);
  cr_assert_not_null(res.patched, "%s", res.reason);
  eng = find(json_object_get(json_object_get(res.patched, "spec"), "containers"), "sglang");
  a = json_dumps(json_object_get(eng, "args"), JSON_COMPACT);
  cr_assert_str_eq(a, "[\"--hicache-size\",\"8\",\"--enable-hierarchical-cache\",\"--hicache-write-policy\",\"write_through\",\"--enable-metrics\"]");
  free(a);
  json_decref(pod), json_decref(res.patched);
  pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\",\"args\":[\"--hicache-size\",\"4\"]}]"), list, &res);
  cr_assert_null(res.patched, "conflicting HiCache flag fails open");
  json_decref(pod);
}

Test(pod_webhook, review_wrapper_returns_base64_patch_and_fails_open_on_garbage) {
  reset("[" VLLM_CB "]");
  json_t *keep;
  json_t *r = review(IC_ADM_POD_MUTATE, "CREATE", POD(CHAT, "{}", VLLM_CONTAINERS), NULL, &keep);
  cr_assert(allowed(r));
  cr_assert_str_eq(json_string_value(json_object_get(r, "patchType")), "JSONPatch");
  cr_assert(json_string_length(json_object_get(r, "patch")) > 100);
  json_decref(keep);
  r = review(IC_ADM_POD_MUTATE, "CREATE", "\"not a pod\"", NULL, &keep);
  cr_assert(allowed(r));
  cr_assert_null(json_object_get(r, "patch"));
  json_decref(keep);
  char *out = NULL;
  cr_assert_eq(ic_admission_review(&cfg, IC_ADM_POD_MUTATE, "{", 1, &out, NULL), IC_EINVAL);
  free(out);
}

Test(json_patch, minimal_diff) {
  json_t *a = J("{\"a\":1,\"b\":[1,2],\"c\":{\"x~/\":1},\"d\":0}");
  json_t *b = J("{\"a\":2,\"b\":[1,2,3],\"c\":{\"x~/\":1,\"y\":2}}");
  json_t *ops = ic_admission_json_patch(a, b);
  char *s = json_dumps(ops, JSON_COMPACT);
  cr_assert_str_eq(s, "[{\"op\":\"remove\",\"path\":\"/d\"},{\"op\":\"replace\",\"path\":\"/a\",\"value\":2},"
                      "{\"op\":\"add\",\"path\":\"/b/-\",\"value\":3},{\"op\":\"add\",\"path\":\"/c/y\",\"value\":2}]");
  free(s);
  json_decref(ops);
  ops = ic_admission_json_patch(a, a);
  cr_assert_eq(json_array_size(ops), 0);
  json_decref(ops), json_decref(a), json_decref(b);
}

Test(pod_webhook, engine_overrides_merge_and_stay_idempotent) {
  char list[4096];
  snprintf(list, sizeof list, "[%s]",
           CB(",\"spec\":{\"runtime\":\"VLLM\",\"engineSelector\":{\"matchLabels\":" CHAT "}," PODLOCAL
              ",\"integration\":{\"engineOverrides\":{\"args\":[\"--max-model-len\",\"8192\",\"--model\",\"other\","
              "\"positional\"],\"env\":[{\"name\":\"EXTRA\",\"value\":\"1\"},{\"name\":\"HF_HOME\",\"value\":\"/x\"}]}}}"));
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", VLLM_CONTAINERS), list, &res);
  cr_assert_not_null(res.patched, "%s", res.reason);
  json_t *eng = find(json_object_get(json_object_get(res.patched, "spec"), "containers"), "vllm");
  char *a = json_dumps(json_object_get(eng, "args"), JSON_COMPACT);
  cr_assert(strstr(a, "\"--model\",\"m\""), "user-owned --model must win: %s", a);
  cr_assert(!strstr(a, "other"), "%s", a);
  cr_assert(strstr(a, "\"--max-model-len\",\"8192\""), "%s", a);
  cr_assert(strstr(a, "\"positional\""), "%s", a);
  free(a);
  json_t *env = json_object_get(eng, "env");
  cr_assert_str_eq(json_string_value(json_object_get(find(env, "EXTRA"), "value")), "1");
  cr_assert_str_eq(json_string_value(json_object_get(find(env, "HF_HOME"), "value")), "/cache");
  json_t *b = J(list);
  ic_admission_pod_result_t again;
  memset(&again, 0, sizeof again);
  ic_admission_mutate_pod(&cfg, res.patched, "llm", b, &again);
  cr_assert_null(again.patched, "re-admission with overrides changed the Pod");
  json_decref(b), json_decref(pod), json_decref(res.patched);
}

Test(pod_webhook, vllm_nodelocal_wire_gate_and_idempotent) {
  const char *nl = CB(",\"spec\":{\"runtime\":\"VLLM\",\"engineSelector\":{\"matchLabels\":" CHAT "},\"lmCache\":{"
                      "\"topology\":\"NodeLocal\",\"nodeLocal\":{\"idleRetentionSeconds\":300,\"server\":{\"image\":\""
                      DIGEST "\",\"port\":6555,\"httpPort\":6556,\"l1Capacity\":\"8Gi\",\"maxGPUWorkers\":8,"
                      "\"maxCPUWorkers\":4,\"resources\":{}}}}}");
  char list[4096];
  snprintf(list, sizeof list, "[%s]", nl);
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", VLLM_CONTAINERS), list, &res);
  cr_assert_not_null(res.patched, "%s", res.reason);
  json_t *spec = json_object_get(res.patched, "spec");
  json_t *gate = find(json_object_get(spec, "initContainers"), "lmcache-node-local-gate");
  cr_assert_not_null(gate);
  cr_assert_str_eq(json_string_value(json_object_get(find(json_object_get(gate, "env"), "EXPECTED_INSTANCE_ID"), "value")),
                   "llm/cb@uid-cb#3");
  cr_assert_str_eq(json_string_value(json_object_get(find(json_object_get(gate, "env"), "EXPECTED_SHM_NAME"), "value")),
                   "lmcache_l1_pool_inferencecache_uid-cb");
  json_t *vol = find(json_object_get(spec, "volumes"), "lmcache-node-shm");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(vol, "hostPath"), "path")), "/dev/shm/inference-cache/uid-cb");
  json_t *eng = find(json_object_get(spec, "containers"), "vllm");
  cr_assert_not_null(find(json_object_get(eng, "env"), "INFERENCECACHE_NODE_IP"));
  char *a = json_dumps(json_object_get(eng, "args"), JSON_COMPACT);
  cr_assert(strstr(a, "tcp://$(INFERENCECACHE_NODE_IP)") && strstr(a, "\\\"lmcache.mp.port\\\":\\\"6555\\\""), "%s", a);
  free(a);
  cr_assert_null(json_object_get(spec, "hostNetwork"), "engine placement is never changed");
  cr_assert_null(json_object_get(json_object_get(json_object_get(res.patched, "metadata"), "labels"), "inferencecache.io/lmcache-mp-metrics"));
  json_t *b = J(list);
  ic_admission_pod_result_t again;
  memset(&again, 0, sizeof again);
  ic_admission_mutate_pod(&cfg, res.patched, "llm", b, &again);
  cr_assert_null(again.patched, "%s", again.reason);
  json_decref(b), json_decref(pod), json_decref(res.patched);
}

Test(pod_webhook, kernel_check_init_container_modes) {
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", VLLM_CONTAINERS), "[" VLLM_CB "]", &res);
  json_t *kc = find(json_object_get(json_object_get(res.patched, "spec"), "initContainers"), "lmcache-kernel-check");
  cr_assert_not_null(kc, "GPU Pods get the kernel check in auto mode");
  cr_assert_str_eq(json_string_value(json_object_get(kc, "image")), "vllm/vllm-openai:v0.9");
  cr_assert_str_eq(json_string_value(json_object_get(find(json_object_get(kc, "env"), "KERNEL_CHECK_STRICT"), "value")), "0");
  cr_assert_str_eq(json_string_value(json_object_get(find(json_object_get(kc, "env"), "HF_HOME"), "value")), "/cache");
  json_decref(pod), json_decref(res.patched);
  pod = mutate(POD(CHAT, "{}", "[{\"name\":\"vllm\",\"image\":\"v\"}]"), "[" VLLM_CB "]", &res);
  cr_assert_null(find(json_object_get(json_object_get(res.patched, "spec"), "initContainers"), "lmcache-kernel-check"),
                 "CPU Pods skip the check in auto mode");
  json_decref(pod), json_decref(res.patched);
  const char *strict = CB(",\"metadata\":{\"name\":\"cb\",\"namespace\":\"llm\",\"uid\":\"u\",\"annotations\":{"
                          "\"inferencecache.io/lmcache-kernel-check\":\"strict\"}},\"spec\":{\"runtime\":\"VLLM\","
                          "\"engineSelector\":{\"matchLabels\":" CHAT "}," PODLOCAL "}");
  char list[4096];
  snprintf(list, sizeof list, "[%s]", strict);
  pod = mutate(POD(CHAT, "{}", "[{\"name\":\"vllm\",\"image\":\"v\"}]"), list, &res);
  kc = find(json_object_get(json_object_get(res.patched, "spec"), "initContainers"), "lmcache-kernel-check");
  cr_assert_not_null(kc, "strict checks CPU Pods too");
  cr_assert_str_eq(json_string_value(json_object_get(find(json_object_get(kc, "env"), "KERNEL_CHECK_STRICT"), "value")), "1");
  json_decref(pod), json_decref(res.patched);
}

Test(pod_webhook, sglang_nodelocal_uses_node_config_path) {
  const char *nl = CB(",\"spec\":{\"runtime\":\"SGLang\",\"engineSelector\":{\"matchLabels\":" CHAT "},\"lmCache\":{"
                      "\"topology\":\"NodeLocal\",\"nodeLocal\":{\"idleRetentionSeconds\":300,\"server\":{\"image\":\""
                      DIGEST "\",\"port\":6555,\"httpPort\":6556,\"l1Capacity\":\"8Gi\",\"maxGPUWorkers\":8,"
                      "\"maxCPUWorkers\":4,\"resources\":{}}}}}");
  char list[4096];
  snprintf(list, sizeof list, "[%s]", nl);
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\",\"args\":[\"--page-size\",\"16\"]}]"), list, &res);
  cr_assert_not_null(res.patched, "%s", res.reason);
  json_t *spec = json_object_get(res.patched, "spec");
  json_t *eng = find(json_object_get(spec, "containers"), "sglang");
  char *a = json_dumps(json_object_get(eng, "args"), JSON_COMPACT);
  cr_assert(strstr(a, "\"--lmcache-config-file\",\"/var/run/inference-cache/lmcache-node/client.yaml\""), "%s", a);
  free(a);
  json_t *gate = find(json_object_get(spec, "initContainers"), "lmcache-node-local-gate");
  cr_assert_str_eq(json_string_value(json_object_get(find(json_object_get(gate, "env"), "CLIENT_CONFIG_PATH"), "value")),
                   "/var/run/inference-cache/lmcache-node/client.yaml");
  cr_assert_not_null(find(json_object_get(spec, "volumes"), "lmcache-node-config"));
  cr_assert_null(find(json_object_get(spec, "initContainers"), "lmcache-kernel-check"), "kernel check is vLLM-only");
  json_decref(pod), json_decref(res.patched);
}

Test(pod_webhook, managed_redis_binding_needs_a_published_endpoint) {
  const char *spec = ",\"spec\":{\"runtime\":\"VLLM\",\"engineSelector\":{\"matchLabels\":" CHAT "}," PODLOCAL
                     ",\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"Managed\",\"redis\":{\"authentication\":"
                     "{\"password\":{\"name\":\"redis-auth\",\"key\":\"password\"}}}}";
  char list[4096];
  /* without status.remoteStorage the endpoint is not usable: fail open */
  snprintf(list, sizeof list, "[{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\",\"metadata\":"
                              "{\"name\":\"cb\",\"namespace\":\"llm\",\"uid\":\"u\"}%s}}]", spec);
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", VLLM_CONTAINERS), list, &res);
  cr_assert_null(res.patched);
  cr_assert(strstr(res.reason, "status.remoteStorage.endpoint not usable"), "%s", res.reason);
  json_decref(pod);
  snprintf(list, sizeof list, "[{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\",\"metadata\":"
                              "{\"name\":\"cb\",\"namespace\":\"llm\",\"uid\":\"u\"}%s},\"status\":{\"remoteStorage\":{"
                              "\"provider\":\"Redis\",\"endpoint\":\" cb.llm.svc.cluster.local:6379 \"}}}]", spec);
  pod = mutate(POD(CHAT, "{}", VLLM_CONTAINERS), list, &res);
  cr_assert_not_null(res.patched, "%s", res.reason);
  json_t *srv = find(json_object_get(json_object_get(res.patched, "spec"), "initContainers"), "lmcache-mp-server");
  char *a = json_dumps(json_object_get(srv, "args"), JSON_COMPACT);
  cr_assert(strstr(a, "\"--l2-adapter\",\"{\\\"host\\\":\\\"cb.llm.svc.cluster.local\\\",\\\"port\\\":6379,\\\"type\\\":\\\"resp\\\"}\""), "%s", a);
  free(a);
  json_t *pw = find(json_object_get(srv, "env"), "LMCACHE_RESP_PASSWORD");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(pw, "valueFrom"), "secretKeyRef"), "name")), "redis-auth");
  json_decref(pod), json_decref(res.patched);
}

Test(pod_webhook, reserved_volume_name_taken_by_the_pod_fails_open) {
  const char *p = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"e\",\"namespace\":\"llm\",\"labels\":" CHAT
                  "},\"spec\":{\"volumes\":[{\"name\":\"lmcache-mp-shm\",\"emptyDir\":{}}],\"containers\":" VLLM_CONTAINERS "}}";
  ic_admission_pod_result_t res;
  json_t *pod = mutate(p, "[" VLLM_CB "]", &res);
  cr_assert_null(res.patched);
  cr_assert(strstr(res.reason, "reserved volume name"), "%s", res.reason);
  json_decref(pod);
}

/* The sidecar's credentials towards the server (--subscriber-server-ca-configmap,
 * --subscriber-token-audience, --subscriber-client-cert-secret): volumes, mounts, flags; a
 * re-admission changes nothing; without them the sidecar is as before. */
Test(pod_webhook, sidecar_credentials_are_mounted_and_passed) {
  ic_admission_config_t saved = cfg;
  cfg.subscriber_server_ca_configmap = "inference-cache-server-ca";
  cfg.subscriber_token_audience = "inferencecache.io/writer";
  cfg.subscriber_client_cert_secret = "engine-writer-tls";
  ic_admission_pod_result_t res;
  json_t *pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\"}]"), "[" EVENTS_CB "]", &res);
  cr_assert_not_null(res.patched, "%s", res.reason);
  json_t *spec = json_object_get(res.patched, "spec");
  json_t *side = find(json_object_get(spec, "containers"), "kvevent-subscriber");
  char *a = json_dumps(json_object_get(side, "args"), JSON_COMPACT);
  cr_assert(strstr(a, "\"--server-ca-file=/var/run/secrets/inferencecache.io/server-ca/ca.crt\""), "%s", a);
  cr_assert(strstr(a, "\"--server-token-file=/var/run/secrets/inferencecache.io/writer-token/token\""), "%s", a);
  cr_assert(strstr(a, "\"--client-cert-file=/var/run/secrets/inferencecache.io/client-tls/tls.crt\""), "%s", a);
  cr_assert(strstr(a, "\"--client-key-file=/var/run/secrets/inferencecache.io/client-tls/tls.key\""), "%s", a);
  free(a);
  cr_assert_eq(json_array_size(json_object_get(side, "volumeMounts")), 3);
  json_t *vols = json_object_get(spec, "volumes");
  json_t *tok = find(vols, "inferencecache-writer-token");
  cr_assert_not_null(tok);
  json_t *sat = json_object_get(json_array_get(json_object_get(json_object_get(tok, "projected"), "sources"), 0),
                                "serviceAccountToken");
  cr_assert_str_eq(json_string_value(json_object_get(sat, "audience")), "inferencecache.io/writer");
  cr_assert_str_eq(json_string_value(json_object_get(sat, "path")), "token");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(find(vols, "inferencecache-server-ca"), "configMap"), "name")),
                   "inference-cache-server-ca");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(find(vols, "inferencecache-client-tls"), "secret"), "secretName")),
                   "engine-writer-tls");
  json_t *b = J("[" EVENTS_CB "]");
  ic_admission_pod_result_t again;
  memset(&again, 0, sizeof again);
  ic_admission_mutate_pod(&cfg, res.patched, "llm", b, &again);
  cr_assert_null(again.patched, "%s", again.reason);
  json_decref(b), json_decref(pod), json_decref(res.patched);
  cfg = saved;
  pod = mutate(POD(CHAT, "{}", "[{\"name\":\"sglang\",\"image\":\"s\"}]"), "[" EVENTS_CB "]", &res);
  cr_assert_not_null(res.patched);
  cr_assert_null(json_object_get(json_object_get(res.patched, "spec"), "volumes"));
  json_decref(pod), json_decref(res.patched);
}
