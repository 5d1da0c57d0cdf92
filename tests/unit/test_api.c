/* Unit tests of lib/api: CacheBackend serialisation contract (J1-J4), schema errors with
 * Kubernetes wording and field paths, unknown-field round trips, read-time defaults, grammars. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ic/api.h"
#include "ic/err.h"

static json_t *J(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, 0, &e);
  cr_assert_not_null(j, "bad test json: %s (%s)", s, e.text);
  return j;
}

static char *dump(const json_t *j) { return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS); }

static const char *SEED =
    "{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\","
    "\"metadata\":{\"name\":\"kv-tier-primary\",\"namespace\":\"llm-serving\","
    "\"labels\":{\"app.kubernetes.io/part-of\":\"inference-cache\"}},"
    "\"spec\":{\"type\":\"LMCache\",\"deploymentKind\":\"StatefulSet\",\"replicas\":1,"
    "\"storage\":{\"pvc\":{\"size\":\"20Gi\",\"storageClassName\":\"fast-ssd\"}},"
    "\"integration\":{\"engine\":\"vLLM\",\"role\":\"ReadWrite\",\"lookupTimeoutMs\":25,"
    "\"minimumPrefixTokens\":64},"
    "\"engineSelector\":{\"matchLabels\":{\"inferencecache.io/cache-enabled\":\"true\"}},"
    "\"backendConfig\":{\"evictionPolicy\":\"LFU\"},"
    "\"template\":{\"nodeSelector\":{\"node-pool\":\"kv-cache\"},\"tolerations\":[{\"key\":"
    "\"dedicated\",\"operator\":\"Equal\",\"value\":\"kv-cache\",\"effect\":\"NoSchedule\"}]}}}";

static size_t decode_cb(const char *s, ic_api_cachebackend_t *cb, ic_api_errors_t *errs) {
  json_t *j = J(s);
  memset(cb, 0, sizeof *cb);
  cr_assert_eq(ic_api_cachebackend_decode(j, cb, errs), 0);
  json_decref(j);
  return errs ? errs->len : 0;
}

static bool has_error(const ic_api_errors_t *e, const char *field, ic_api_err_type_t t) {
  for (size_t i = 0; i < e->len; i++)
    if (strcmp(e->items[i].field, field) == 0 && e->items[i].type == t) return true;
  return false;
}

Test(api_cachebackend, j1_empty_spec_serialises_to_empty_object) {
  ic_api_cachebackend_t cb;
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  decode_cb("{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\",\"spec\":{}}", &cb, &e);
  cr_assert_eq(e.len, 0);
  ic_api_cachebackend_default(&cb);
  json_t *out = ic_api_cachebackend_encode(&cb);
  char *s = dump(json_object_get(out, "spec"));
  cr_assert_str_eq(s, "{}");
  cr_assert_null(json_object_get(out, "status"));
  free(s);
  json_decref(out);
  ic_api_cachebackend_free(&cb);
}

Test(api_cachebackend, no_spec_stays_without_spec_key) {
  ic_api_cachebackend_t cb;
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  decode_cb("{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\",\"metadata\":{\"name\":\"a\"}}",
            &cb, &e);
  cr_assert_eq(e.len, 0);
  json_t *out = ic_api_cachebackend_encode(&cb);
  cr_assert_null(json_object_get(out, "spec"));
  cr_assert_str_eq(ic_api_cachebackend_effective_type(&cb), "");
  json_decref(out);
  ic_api_cachebackend_free(&cb);
}

Test(api_cachebackend, j2_index_entries_zero_is_serialised_absent_stays_absent) {
  ic_api_cachebackend_t cb;
  decode_cb("{\"status\":{}}", &cb, NULL);
  json_t *out = ic_api_cachebackend_encode(&cb);
  char *s = dump(json_object_get(out, "status"));
  cr_assert_str_eq(s, "{}");
  free(s);
  json_decref(out);
  cb.status.has_index_entries = true;
  cb.status.index_entries = 0;
  out = ic_api_cachebackend_encode(&cb);
  s = dump(json_object_get(out, "status"));
  cr_assert_str_eq(s, "{\"indexEntries\":0}");
  free(s);
  json_decref(out);
  ic_api_cachebackend_free(&cb);
}

Test(api_cachebackend, j3_seed_sample_round_trips_and_clone_shares_nothing) {
  ic_api_cachebackend_t cb, cl;
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  decode_cb(SEED, &cb, &e);
  cr_assert_eq(e.len, 0);
  json_t *in = J(SEED);
  json_t *out = ic_api_cachebackend_encode(&cb);
  cr_assert(json_equal(in, out), "round trip changed the object");
  cr_assert_eq(ic_api_cachebackend_clone(&cb, &cl), 0);
  cr_assert_neq(cl.spec.template_, cb.spec.template_);
  json_object_set_new(cl.spec.template_, "schedulerName", json_string("x"));
  json_object_set_new(cl.spec.backend_config, "k", json_string("v"));
  json_t *out2 = ic_api_cachebackend_encode(&cb);
  cr_assert(json_equal(in, out2), "mutating the clone changed the original");
  cr_assert_eq(cb.spec.replicas, 1);
  cr_assert_str_eq(cb.spec.storage.pvc.storage_class_name, "fast-ssd");
  cr_assert_str_eq(ic_api_cachebackend_deployment_kind(&cb), "StatefulSet");
  json_decref(in), json_decref(out), json_decref(out2);
  ic_api_cachebackend_free(&cb);
  ic_api_cachebackend_free(&cl);
}

Test(api_cachebackend, j4_empty_storage_class_survives_distinct_from_absent) {
  ic_api_cachebackend_t cb;
  decode_cb("{\"spec\":{\"storage\":{\"pvc\":{\"size\":\"1Gi\",\"storageClassName\":\"\"}}}}", &cb, NULL);
  cr_assert_not_null(cb.spec.storage.pvc.storage_class_name);
  cr_assert_str_eq(cb.spec.storage.pvc.storage_class_name, "");
  json_t *out = ic_api_cachebackend_encode(&cb);
  json_t *scn = json_object_get(json_object_get(json_object_get(json_object_get(out, "spec"), "storage"), "pvc"),
                                "storageClassName");
  cr_assert(json_is_string(scn) && json_string_length(scn) == 0);
  json_decref(out);
  ic_api_cachebackend_free(&cb);
  decode_cb("{\"spec\":{\"storage\":{\"pvc\":{\"size\":\"1Gi\"}}}}", &cb, NULL);
  cr_assert_null(cb.spec.storage.pvc.storage_class_name);
  out = ic_api_cachebackend_encode(&cb);
  cr_assert_null(json_object_get(json_object_get(json_object_get(json_object_get(out, "spec"), "storage"), "pvc"),
                                 "storageClassName"));
  json_decref(out);
  ic_api_cachebackend_free(&cb);
}

Test(api_cachebackend, unknown_fields_round_trip_at_every_level) {
  const char *s =
      "{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\",\"x-top\":1,"
      "\"metadata\":{\"name\":\"a\",\"ownerReferences\":[{\"uid\":\"u\"}]},"
      "\"spec\":{\"futureField\":{\"a\":[1,2]},\"integration\":{\"role\":\"ReadOnly\",\"newKnob\":true}},"
      "\"status\":{\"someday\":\"x\",\"endpoint\":\"e:1\"}}";
  ic_api_cachebackend_t cb;
  decode_cb(s, &cb, NULL);
  free(cb.status.endpoint);
  cb.status.endpoint = ic_api_strdup("f:2");
  json_t *out = ic_api_cachebackend_encode(&cb);
  json_t *want = J(s);
  json_object_set_new(json_object_get(want, "status"), "endpoint", json_string("f:2"));
  cr_assert(json_equal(out, want));
  json_decref(out), json_decref(want);
  ic_api_cachebackend_free(&cb);
}

Test(api_cachebackend, schema_errors_have_kubernetes_paths_and_wording) {
  ic_api_cachebackend_t cb;
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  decode_cb("{\"spec\":{\"deploymentKind\":\"DaemonSet\",\"replicas\":-1,\"integration\":{\"role\":\"Admin\","
            "\"lookupTimeoutMs\":-1,\"minimumPrefixTokens\":-1,\"failOpen\":false},"
            "\"template\":{\"terminationGracePeriodSeconds\":-1,\"containers\":[]},"
            "\"storage\":{\"pvc\":{}},\"runtime\":\"TGI\"},"
            "\"status\":{\"indexEntries\":-1,\"health\":\"Unknown\"}}",
            &cb, &e);
  cr_assert(has_error(&e, "spec.deploymentKind", IC_API_ERR_NOT_SUPPORTED));
  cr_assert(has_error(&e, "spec.replicas", IC_API_ERR_INVALID));
  cr_assert(has_error(&e, "spec.integration.role", IC_API_ERR_NOT_SUPPORTED));
  cr_assert(has_error(&e, "spec.integration.lookupTimeoutMs", IC_API_ERR_INVALID));
  cr_assert(has_error(&e, "spec.integration.minimumPrefixTokens", IC_API_ERR_INVALID));
  cr_assert(has_error(&e, "spec.template.terminationGracePeriodSeconds", IC_API_ERR_INVALID));
  cr_assert(has_error(&e, "spec.storage.pvc.size", IC_API_ERR_REQUIRED));
  cr_assert(has_error(&e, "spec.runtime", IC_API_ERR_NOT_SUPPORTED));
  cr_assert(has_error(&e, "status.indexEntries", IC_API_ERR_INVALID));
  cr_assert(has_error(&e, "status.health", IC_API_ERR_NOT_SUPPORTED));
  cr_assert_eq(e.len, 10, "unexpected errors: %zu (failOpen/containers must be pruned, not rejected)", e.len);
  for (size_t i = 0; i < e.len; i++)
    if (strcmp(e.items[i].field, "spec.integration.role") == 0) {
      char *m = ic_api_field_error_string(&e.items[i]);
      cr_assert_str_eq(m, "spec.integration.role: Unsupported value: \"Admin\": supported values: \"ReadOnly\", "
                          "\"WriteOnly\", \"ReadWrite\"");
      free(m);
    }
  char *msg = ic_api_errors_message(&e, "CacheBackend", "inferencecache.io", "x");
  cr_assert(strncmp(msg, "CacheBackend.inferencecache.io \"x\" is invalid: [", 48) == 0, "%s", msg);
  free(msg);
  ic_api_errors_free(&e);
  ic_api_cachebackend_free(&cb);
}

Test(api_cachebackend, contract_regressions_accept_legacy_shapes) {
  static const char *ok[] = {
      "{\"spec\":{\"type\":\"memory\"}}",
      "{\"spec\":{\"endpoint\":\"cache.example.svc:9000\"}}",
      "{\"spec\":{\"type\":\"External\"}}",
      "{\"spec\":{\"type\":\"LMCache\",\"endpoint\":\"x:1\"}}",
      "{\"spec\":{\"storage\":{}}}",
      "{\"spec\":{\"storage\":{\"pvc\":{\"size\":\"10Gi\"}}}}",
      "{\"spec\":{\"template\":{\"nodeSelector\":{\"pool\":\"cache\"}}}}",
      "{\"spec\":{\"type\":\"Mooncake\",\"replicas\":0}}",
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    ic_api_cachebackend_t cb;
    ic_api_errors_t e = IC_API_ERRORS_INIT;
    decode_cb(ok[i], &cb, &e);
    cr_assert_eq(e.len, 0, "%s rejected", ok[i]);
    ic_api_cachebackend_free(&cb);
  }
}

Test(api_cachebackend, l1_capacity_cel_rule_and_quantity_pattern) {
  ic_api_cachebackend_t cb;
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  decode_cb("{\"spec\":{\"lmCache\":{\"topology\":\"PodLocal\",\"podLocal\":{\"server\":{\"image\":\"i\","
            "\"port\":5555,\"l1Capacity\":\"0\",\"maxWorkers\":1,\"resources\":{\"requests\":{\"memory\":\"1x\"}}}}}}}",
            &cb, &e);
  cr_assert(has_error(&e, "spec.lmCache.podLocal.server.l1Capacity", IC_API_ERR_INVALID));
  cr_assert(has_error(&e, "spec.lmCache.podLocal.server.resources.requests.memory", IC_API_ERR_INVALID));
  ic_api_errors_free(&e);
  ic_api_cachebackend_free(&cb);
}

Test(api_cachebackend, read_time_defaults) {
  ic_api_cachebackend_t cb;
  decode_cb("{\"spec\":{\"runtime\":\"VLLM\",\"observation\":{\"firstEventTimeout\":\"-1s\"}}}", &cb, NULL);
  char buf[16];
  cr_assert_str_eq(ic_api_cachebackend_effective_type(&cb), "LMCache");
  cr_assert_str_eq(ic_api_cachebackend_runtime_id(&cb, buf, sizeof buf), "vllm");
  cr_assert_str_eq(ic_api_cachebackend_role(&cb), "ReadWrite");
  cr_assert_str_eq(ic_api_cachebackend_mode(&cb), "Offload");
  cr_assert_eq(ic_api_cachebackend_replicas(&cb), 1);
  cr_assert_eq(ic_api_cachebackend_chunk_size(&cb), 256);
  cr_assert_eq(ic_api_cachebackend_first_event_timeout_ns(&cb), 300000000000LL);
  ic_api_cachebackend_free(&cb);
  decode_cb("{\"spec\":{\"observation\":{}}}", &cb, NULL);
  ic_api_cachebackend_default(&cb);
  cr_assert_str_eq(cb.spec.observation.first_event_timeout, "5m");
  cr_assert_null(cb.spec.integration.role, "no read-time default may be written");
  ic_api_cachebackend_free(&cb);
}

Test(api_conditions, set_keeps_transition_time_when_status_unchanged) {
  ic_api_conditions_t c = {0};
  cr_assert_eq(ic_api_conditions_set(&c, "Ready", "True", "A", "m1", true, 1, "t1"), 1);
  cr_assert_eq(ic_api_conditions_set(&c, "Ready", "True", "A", "m1", true, 1, "t2"), 0);
  cr_assert_eq(ic_api_conditions_set(&c, "Ready", "True", "A", "m2", true, 2, "t3"), 1);
  cr_assert_str_eq(ic_api_conditions_find(&c, "Ready")->last_transition_time, "t1");
  cr_assert_eq(ic_api_conditions_set(&c, "Ready", "False", "B", "m2", true, 2, "t4"), 1);
  cr_assert_str_eq(ic_api_conditions_find(&c, "Ready")->last_transition_time, "t4");
  cr_assert_eq(ic_api_conditions_remove(&c, "Ready"), 1);
  cr_assert_null(ic_api_conditions_find(&c, "Ready"));
  free(c.items);
}

Test(api_other, cachepolicy_schema_and_defaults) {
  json_t *j = J("{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CachePolicy\",\"spec\":{"
                "\"eviction\":\"FIFO\",\"routingFloorScore\":\"1.1234567\",\"strategy\":{\"enableChainMatching\":"
                "false,\"requireChain\":true}}}");
  ic_api_cachepolicy_t p = {0};
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  cr_assert_eq(ic_api_cachepolicy_decode(j, &p, &e), 0);
  cr_assert(has_error(&e, "spec.eviction", IC_API_ERR_NOT_SUPPORTED));
  cr_assert(has_error(&e, "spec.routingFloorScore", IC_API_ERR_INVALID));
  cr_assert(has_error(&e, "spec", IC_API_ERR_INVALID));
  ic_api_errors_free(&e);
  ic_api_cachepolicy_free(&p);
  json_decref(j);
  j = J("{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CachePolicy\",\"spec\":{}}");
  cr_assert_eq(ic_api_cachepolicy_decode(j, &p, &e), 0);
  cr_assert_eq(e.len, 0);
  ic_api_cachepolicy_default(&p);
  cr_assert_str_eq(p.spec.eviction, "LRU");
  cr_assert_eq(p.spec.minimum_matched_tokens, 64);
  cr_assert_str_eq(p.spec.routing_floor_score, "0.1");
  ic_api_cachepolicy_free(&p);
  json_decref(j);
}

Test(api_other, cachetenant_requires_spec_and_rejects_crypto_keys) {
  json_t *j = J("{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheTenant\"}");
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  cr_assert_eq(ic_api_validate_schema(j, &e), 0);
  cr_assert(has_error(&e, "spec", IC_API_ERR_REQUIRED));
  ic_api_errors_free(&e);
  json_decref(j);
  j = J("{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheTenant\",\"spec\":{\"tenantID\":\"t\","
        "\"crypto\":{\"keyRef\":\"x\"}}}");
  cr_assert_eq(ic_api_validate_schema(j, &e), 0);
  cr_assert(has_error(&e, "spec.crypto", IC_API_ERR_TYPE));
  ic_api_errors_free(&e);
  json_decref(j);
}

Test(api_other, cacheindex_always_encodes_empty_spec_and_memory_used) {
  json_t *j = J("{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheIndex\",\"spec\":{\"junk\":1},"
                "\"status\":{\"tenants\":[{\"id\":\"\",\"indexEntries\":3}]}}");
  ic_api_cacheindex_t x = {0};
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  cr_assert_eq(ic_api_cacheindex_decode(j, &x, &e), 0);
  cr_assert_eq(e.len, 0);
  json_t *out = ic_api_cacheindex_encode(&x);
  char *s = dump(json_object_get(out, "spec"));
  cr_assert_str_eq(s, "{}");
  free(s);
  s = dump(json_object_get(out, "status"));
  cr_assert_str_eq(s, "{\"tenants\":[{\"id\":\"\",\"indexEntries\":3,\"memoryUsed\":0}]}");
  free(s);
  json_decref(out);
  json_decref(j);
  ic_api_cacheindex_free(&x);
}

Test(api_other, prompttemplate_and_pdtopology_list_maps) {
  json_t *j = J("{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"PromptTemplate\",\"spec\":{\"body\":\"\","
                "\"slots\":[{\"name\":\"a\",\"type\":\"Stable\"},{\"name\":\"a\",\"type\":\"Weird\"}]}}");
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  cr_assert_eq(ic_api_validate_schema(j, &e), 0);
  cr_assert(has_error(&e, "spec.body", IC_API_ERR_INVALID));
  cr_assert(has_error(&e, "spec.slots[1]", IC_API_ERR_INVALID));
  cr_assert(has_error(&e, "spec.slots[1].type", IC_API_ERR_NOT_SUPPORTED));
  ic_api_errors_free(&e);
  json_decref(j);
  j = J("{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"PDTopology\",\"spec\":{\"prefillPools\":"
        "[{\"name\":\"p\",\"replicas\":2,\"extra\":1}],\"decodePools\":[{\"name\":\"d\",\"replicas\":-1}]}}");
  ic_api_pdtopology_t t = {0};
  cr_assert_eq(ic_api_pdtopology_decode(j, &t, &e), 0);
  cr_assert(has_error(&e, "spec.decodePools[0].replicas", IC_API_ERR_INVALID));
  cr_assert_eq(t.spec.n_decode_pools, 1);
  json_t *out = ic_api_pdtopology_encode(&t);
  cr_assert(json_equal(json_object_get(json_object_get(out, "spec"), "prefillPools"),
                       json_object_get(json_object_get(j, "spec"), "prefillPools")));
  json_decref(out);
  ic_api_errors_free(&e);
  ic_api_pdtopology_free(&t);
  json_decref(j);
}

Test(api_values, quantity_duration_and_names) {
  int64_t m;
  cr_assert_eq(ic_api_parse_quantity_str("10Gi", &m), 0);
  cr_assert_eq(m, 10LL * 1024 * 1024 * 1024 * 1000);
  cr_assert_eq(ic_api_parse_quantity_str("500m", &m), 0);
  cr_assert_eq(m, 500);
  cr_assert_eq(ic_api_parse_quantity_str("1.5", &m), 0);
  cr_assert_eq(m, 1500);
  cr_assert_eq(ic_api_parse_quantity_str("1e3", &m), 0);
  cr_assert_eq(m, 1000000);
  cr_assert_eq(ic_api_parse_quantity_str("-2k", &m), 0);
  cr_assert_eq(m, -2000000);
  cr_assert_eq(ic_api_parse_quantity_str("1x", &m), IC_EINVAL);
  cr_assert_eq(ic_api_parse_quantity_str("", &m), IC_EINVAL);
  cr_assert_eq(ic_api_parse_quantity_str(".", &m), IC_EINVAL);
  int64_t ns;
  cr_assert_eq(ic_api_parse_duration("1h30m", &ns), 0);
  cr_assert_eq(ns, 5400LL * 1000000000LL);
  cr_assert_eq(ic_api_parse_duration("1.5s", &ns), 0);
  cr_assert_eq(ns, 1500000000LL);
  cr_assert_eq(ic_api_parse_duration("5", &ns), IC_EINVAL);
  cr_assert(ic_api_is_dns1123_subdomain("my-secret.v1"));
  cr_assert(!ic_api_is_dns1123_subdomain("My_Secret"));
  cr_assert(ic_api_is_label_value(""));
  cr_assert(!ic_api_is_label_value("-bad"));
  cr_assert(ic_api_is_qualified_name("example.com/gpu"));
  cr_assert(!ic_api_is_qualified_name("a/b/c"));
  cr_assert_null(ic_api_check_endpoint_shape(" redis.ns.svc:6379 "));
  cr_assert_null(ic_api_check_endpoint_shape("[::1]:6379"));
  cr_assert_not_null(ic_api_check_endpoint_shape("redis://h:1"));
  cr_assert_not_null(ic_api_check_endpoint_shape("h:0"));
  cr_assert_not_null(ic_api_check_endpoint_shape("::1:6379"));
  cr_assert_not_null(ic_api_check_endpoint_shape(":6379"));
}

Test(api_cachebackend, typed_mp_redis_spec_and_status_round_trip) {
  const char *s =
      "{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\",\"metadata\":{\"name\":\"m\","
      "\"namespace\":\"n\",\"uid\":\"u\",\"generation\":4,\"annotations\":{\"a\":\"b\"}},\"spec\":{\"runtime\":\"SGLang\","
      "\"type\":\"LMCache\",\"allowCrossNamespace\":true,\"engineSelector\":{\"matchLabels\":{"
      "\"inferencecache.io/cache-domain\":\"d\"}},\"integration\":{\"mode\":\"Offload\",\"engineOverrides\":{\"args\":"
      "[\"--x\"],\"env\":[{\"name\":\"E\",\"value\":\"1\"}]}},\"lmCache\":{\"topology\":\"NodeLocal\",\"chunkSizeTokens\":"
      "512,\"nodeLocal\":{\"idleRetentionSeconds\":0,\"server\":{\"image\":\"i\",\"port\":1,\"httpPort\":2,\"l1Capacity\":"
      "\"1Gi\",\"maxGPUWorkers\":1,\"maxCPUWorkers\":2,\"resources\":{\"limits\":{\"memory\":\"3Gi\"}}},\"scheduling\":{"
      "\"priorityClassName\":\"p\"}}},\"remoteStorage\":{\"provider\":\"Redis\",\"ownership\":\"External\",\"endpoint\":"
      "\"r:1\",\"redis\":{\"authentication\":{\"password\":{\"name\":\"s\",\"key\":\"k\"},\"username\":{\"name\":\"s\","
      "\"key\":\"u\",\"optional\":false}}}},\"observation\":{\"modelID\":\"m\",\"firstEventTimeout\":\"30s\"},"
      "\"hiCache\":{\"ratio\":\"1.5\",\"ioBackend\":\"direct\"}},\"status\":{\"observedGeneration\":4,\"health\":\"Ready\","
      "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"ConnectorReady\",\"message\":\"ok\","
      "\"lastTransitionTime\":\"2026-01-01T00:00:00Z\",\"observedGeneration\":4}],\"remoteStorage\":{\"provider\":"
      "\"Redis\",\"endpoint\":\"r:1\",\"ready\":\"True\"},\"connector\":{\"mode\":\"Multiprocess\",\"matchedEnginePods\":1},"
      "\"matchedEnginePods\":1,\"firstAvailableAt\":\"2026-01-01T00:00:00Z\",\"indexParticipation\":{\"prefixCount\":0,"
      "\"t2HitRate\":\"0.5\"},\"indexEntries\":0}}";
  ic_api_cachebackend_t cb, cl;
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  decode_cb(s, &cb, &e);
  cr_assert_eq(e.len, 0);
  cr_assert_eq(cb.spec.lm_cache.node_local.server.max_cpu_workers, 2);
  cr_assert(cb.spec.lm_cache.node_local.has_idle_retention_seconds);
  cr_assert_eq(cb.spec.lm_cache.node_local.idle_retention_seconds, 0);
  cr_assert_str_eq(cb.spec.remote_storage.redis.authentication.username.key, "u");
  cr_assert(cb.spec.remote_storage.redis.authentication.username.has_optional);
  cr_assert_eq(ic_api_cachebackend_chunk_size(&cb), 512);
  cr_assert_eq(ic_api_cachebackend_first_event_timeout_ns(&cb), 30000000000LL);
  cr_assert_str_eq(ic_api_cachebackend_cache_domain(&cb), "d");
  json_t *labels = J("{\"inferencecache.io/cache-domain\":\"d\",\"x\":\"y\"}");
  cr_assert(ic_api_cachebackend_selects(&cb, labels));
  json_decref(labels);
  cr_assert_str_eq(ic_api_conditions_find(&cb.status.conditions, "Ready")->reason, "ConnectorReady");
  json_t *in = J(s), *out = ic_api_cachebackend_encode(&cb);
  cr_assert(json_equal(in, out));
  cr_assert_eq(ic_api_cachebackend_clone(&cb, &cl), 0);
  cr_assert_neq(cl.status.connector, cb.status.connector);
  cr_assert_neq(cl.spec.lm_cache.node_local.server.resources, cb.spec.lm_cache.node_local.server.resources);
  json_t *out2 = ic_api_cachebackend_encode(&cl);
  cr_assert(json_equal(in, out2));
  json_decref(in), json_decref(out), json_decref(out2);
  ic_api_cachebackend_free(&cb);
  ic_api_cachebackend_free(&cl);
}

Test(api_errors, message_formats_like_the_api_server) {
  ic_api_errors_t e = IC_API_ERRORS_INIT;
  json_t *v = json_integer(-1);
  ic_api_errors_add(&e, IC_API_ERR_INVALID, "spec.replicas", v, NULL, "%s", "must be >= 0");
  char *m = ic_api_errors_message(&e, "CacheBackend", "inferencecache.io", "x");
  cr_assert_str_eq(m, "CacheBackend.inferencecache.io \"x\" is invalid: spec.replicas: Invalid value: -1: must be >= 0");
  free(m);
  ic_api_errors_add(&e, IC_API_ERR_REQUIRED, "spec.lmCache", NULL, NULL, "%s", "");
  ic_api_errors_add(&e, IC_API_ERR_FORBIDDEN, "spec.hiCache", NULL, NULL, "%s", "nope");
  m = ic_api_errors_message(&e, "Pod", "", "p");
  cr_assert_str_eq(m, "Pod \"p\" is invalid: [spec.replicas: Invalid value: -1: must be >= 0, spec.lmCache: Required "
                      "value, spec.hiCache: Forbidden: nope]");
  free(m);
  cr_assert_str_eq(ic_api_err_reason(IC_API_ERR_NOT_SUPPORTED), "FieldValueNotSupported");
  cr_assert(ic_api_field_error_equal(&e.items[0], &e.items[0]));
  cr_assert(!ic_api_field_error_equal(&e.items[0], &e.items[1]));
  json_decref(v);
  ic_api_errors_free(&e);
}
