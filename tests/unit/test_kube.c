/* Unit tests for lib/kube's pure parts: work queue, merge-patch generation, conditions, times,
 * YAML/kubeconfig/in-cluster configuration, REST paths, watch-event parsing. (The network side
 * is exercised against the test API server in tests/integration/test_controller*.py.) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic/clock.h"
#include "ic/kube.h"

Test(kube_queue, dedups_waiting_keys) {
  ic_kube_queue_t *q = ic_kube_queue_new(5, 1000);
  ic_kube_queue_add(q, "ns/a");
  ic_kube_queue_add(q, "ns/a");
  ic_kube_queue_add(q, "ns/b");
  cr_assert_eq(ic_kube_queue_len(q), 2);
  char *k = ic_kube_queue_get(q, 0);
  cr_assert_str_eq(k, "ns/a");
  ic_kube_queue_done(q, k);
  k = ic_kube_queue_get(q, 0);
  cr_assert_str_eq(k, "ns/b");
  ic_kube_queue_done(q, k);
  cr_assert_null(ic_kube_queue_get(q, 10));
  ic_kube_queue_free(q);
}

Test(kube_queue, key_added_while_processing_runs_again_after_done) {
  ic_kube_queue_t *q = ic_kube_queue_new(5, 1000);
  ic_kube_queue_add(q, "ns/a");
  char *k = ic_kube_queue_get(q, 0);
  ic_kube_queue_add(q, "ns/a");
  /* Not handed to a second worker while the first holds it. */
  cr_assert_null(ic_kube_queue_get(q, 20));
  ic_kube_queue_done(q, k);
  k = ic_kube_queue_get(q, 100);
  cr_assert_not_null(k);
  cr_assert_str_eq(k, "ns/a");
  ic_kube_queue_done(q, k);
  ic_kube_queue_free(q);
}

Test(kube_queue, add_after_waits_and_earliest_wins) {
  ic_kube_queue_t *q = ic_kube_queue_new(5, 1000);
  int64_t t0 = ic_clock_monotonic_ns();
  ic_kube_queue_add_after(q, "ns/a", 5000);
  ic_kube_queue_add_after(q, "ns/a", 50);
  cr_assert_null(ic_kube_queue_get(q, 0));
  char *k = ic_kube_queue_get(q, 4000);
  int64_t ms = (ic_clock_monotonic_ns() - t0) / 1000000;
  cr_assert_not_null(k, "the earlier due time must win");
  cr_assert_geq(ms, 45);
  cr_assert_lt(ms, 4000);
  ic_kube_queue_done(q, k);
  ic_kube_queue_free(q);
}

Test(kube_queue, rate_limited_backoff_grows_and_forget_resets) {
  ic_kube_queue_t *q = ic_kube_queue_new(10, 40);
  for (int i = 0; i < 4; i++) {
    int64_t t0 = ic_clock_monotonic_ns();
    ic_kube_queue_add_rate_limited(q, "ns/a");
    char *k = ic_kube_queue_get(q, 2000);
    cr_assert_not_null(k);
    int64_t ms = (ic_clock_monotonic_ns() - t0) / 1000000;
    int want = 10 << i;
    if (want > 40) want = 40;
    cr_assert_geq(ms, want - 2, "try %d waited %lld ms, want >= %d", i, (long long)ms, want);
    ic_kube_queue_done(q, k);
  }
  cr_assert_eq(ic_kube_queue_failures(q, "ns/a"), 4);
  ic_kube_queue_forget(q, "ns/a");
  cr_assert_eq(ic_kube_queue_failures(q, "ns/a"), 0);
  ic_kube_queue_free(q);
}

static void *shutdown_later(void *arg) {
  usleep(50000);
  ic_kube_queue_shutdown(arg);
  return NULL;
}

Test(kube_queue, shutdown_wakes_blocked_get) {
  ic_kube_queue_t *q = ic_kube_queue_new(5, 1000);
  pthread_t t;
  pthread_create(&t, NULL, shutdown_later, q);
  cr_assert_null(ic_kube_queue_get(q, -1));
  pthread_join(t, NULL);
  ic_kube_queue_free(q);
}

Test(kube_json, merge_diff_adds_changes_and_deletes) {
  json_t *a = json_loads("{\"x\":1,\"y\":{\"a\":1,\"b\":2},\"z\":[1],\"gone\":true}", 0, NULL);
  json_t *b = json_loads("{\"x\":1,\"y\":{\"a\":1,\"b\":3},\"z\":[1,2],\"new\":\"s\"}", 0, NULL);
  json_t *d = ic_kube_merge_diff(a, b);
  json_t *want = json_loads("{\"y\":{\"b\":3},\"z\":[1,2],\"new\":\"s\",\"gone\":null}", 0, NULL);
  cr_assert(json_equal(d, want), "diff %s", json_dumps(d, JSON_COMPACT));
  json_t *same = ic_kube_merge_diff(a, a);
  cr_assert_eq(json_object_size(same), 0);
  json_decref(a), json_decref(b), json_decref(d), json_decref(want), json_decref(same);
}

Test(kube_json, condition_transition_time_changes_only_with_status) {
  json_t *st = json_object();
  cr_assert(ic_kube_condition_set(st, "Ready", "True", "A", "m1", 1, "2026-01-01T00:00:00Z"));
  cr_assert_not(ic_kube_condition_set(st, "Ready", "True", "A", "m1", 1, "2026-01-02T00:00:00Z"));
  cr_assert(ic_kube_condition_set(st, "Ready", "True", "B", "m2", 2, "2026-01-03T00:00:00Z"));
  json_t *c = ic_kube_condition_get(st, "Ready");
  cr_assert_str_eq(ic_kube_jstr(c, "lastTransitionTime"), "2026-01-01T00:00:00Z");
  cr_assert_str_eq(ic_kube_jstr(c, "message"), "m2");
  cr_assert(ic_kube_condition_set(st, "Ready", "False", "B", "m2", 2, "2026-01-04T00:00:00Z"));
  cr_assert_str_eq(ic_kube_jstr(c, "lastTransitionTime"), "2026-01-04T00:00:00Z");
  cr_assert(ic_kube_condition_remove(st, "Ready"));
  cr_assert_null(json_object_get(st, "conditions"));
  cr_assert_not(ic_kube_condition_remove(st, "Ready"));
  json_decref(st);
}

Test(kube_json, times_round_trip) {
  char buf[40];
  ic_kube_format_time(1700000000123456LL, false, buf);
  cr_assert_str_eq(buf, "2023-11-14T22:13:20Z");
  ic_kube_format_time(1700000000123456LL, true, buf);
  cr_assert_str_eq(buf, "2023-11-14T22:13:20.123456Z");
  int64_t us;
  cr_assert_eq(ic_kube_parse_time("2023-11-14T22:13:20.123456Z", &us), 0);
  cr_assert_eq(us, 1700000000123456LL);
  cr_assert_eq(ic_kube_parse_time("2023-11-14T23:13:20+01:00", &us), 0);
  cr_assert_eq(us, 1700000000000000LL);
  cr_assert_eq(ic_kube_parse_time("0001-01-01T00:00:00Z", &us), 0);
  cr_assert_eq(ic_kube_parse_time("2023-11-14 22:13:20Z", &us), IC_EINVAL);
  cr_assert_eq(ic_kube_parse_time("2023-11-14T22:13:20", &us), IC_EINVAL);
  cr_assert_eq(ic_kube_parse_time("2023-11-14T22:13:20.Z", &us), IC_EINVAL);
}

Test(kube_json, yaml_to_json_types) {
  const char *y = "a: 1\nb: \"1\"\nc: true\nd: [x, 2.5]\ne:\n  f: null\ng: ''\n";
  json_t *j = NULL;
  cr_assert_eq(ic_kube_yaml_to_json(y, strlen(y), &j), 0);
  json_t *want = json_loads(
      "{\"a\":1,\"b\":\"1\",\"c\":true,\"d\":[\"x\",2.5],\"e\":{\"f\":null},\"g\":\"\"}", 0, NULL);
  cr_assert(json_equal(j, want), "%s", json_dumps(j, JSON_COMPACT));
  json_decref(j), json_decref(want);
  cr_assert_neq(ic_kube_yaml_to_json("a: [1", 5, &j), 0);
  cr_assert_null(j);
}

Test(kube_config, kubeconfig_current_context_token_and_ca_data) {
  ic_kube_config_t c;
  cr_assert_eq(ic_kube_config_from_file(IC_TEST_DATA_DIR "/kube/kubeconfig.yaml", NULL, &c), 0);
  cr_assert_str_eq(c.server, "https://127.0.0.1:6443/");
  cr_assert_str_eq(c.token, "abc.def");
  cr_assert_str_eq(c.namespace, "team-a");
  cr_assert_str_eq(c.ca_pem, "-----BEGIN CERTIFICATE-----\n");
  cr_assert_not(c.insecure);
  ic_kube_t *k = ic_kube_new(&c);
  cr_assert_not_null(k);
  cr_assert_str_eq(ic_kube_namespace(k), "team-a");
  ic_kube_free(k);
  ic_kube_config_free(&c);
}

Test(kube_config, kubeconfig_named_context_token_file_relative) {
  ic_kube_config_t c;
  cr_assert_eq(ic_kube_config_from_file(IC_TEST_DATA_DIR "/kube/kubeconfig.yaml", "plain", &c), 0);
  cr_assert_str_eq(c.server, "http://127.0.0.1:8001");
  cr_assert(c.insecure);
  cr_assert_str_eq(c.token_file, IC_TEST_DATA_DIR "/kube/token");
  cr_assert_str_eq(c.namespace, "default");
  ic_kube_config_free(&c);
  cr_assert_eq(ic_kube_config_from_file(IC_TEST_DATA_DIR "/kube/kubeconfig.yaml", "nope", &c),
               IC_EINVAL);
  cr_assert_eq(ic_kube_config_from_file("/nonexistent/kubeconfig", NULL, &c), IC_ENOTFOUND);
}

Test(kube_config, in_cluster_env_and_namespace_file) {
  char dir[] = "/tmp/ic-kube-sa-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char p[128];
  snprintf(p, sizeof p, "%s/namespace", dir);
  FILE *f = fopen(p, "w");
  fputs("inference-cache-system\n", f);
  fclose(f);
  unsetenv("KUBERNETES_SERVICE_HOST");
  ic_kube_config_t c;
  cr_assert_eq(ic_kube_config_in_cluster(dir, &c), IC_ENOTFOUND);
  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  cr_assert_eq(ic_kube_config_in_cluster(dir, &c), 0);
  cr_assert_str_eq(c.server, "https://[fd00::1]:443");
  cr_assert_str_eq(c.namespace, "inference-cache-system");
  cr_assert_null(c.ca_file); /* ca.crt absent */
  char tok[160];
  snprintf(tok, sizeof tok, "%s/token", dir);
  cr_assert_str_eq(c.token_file, tok);
  ic_kube_config_free(&c);
  unlink(p);
  rmdir(dir);
}

Test(kube_client, rest_paths) {
  ic_kube_res_t cb = {"inferencecache.io", "v1alpha1", "cachebackends", "CacheBackend", true};
  ic_kube_res_t ci = {"inferencecache.io", "v1alpha1", "cacheindices", "CacheIndex", false};
  char *p = ic_kube_path(&cb, "ns1", "a", "status");
  cr_assert_str_eq(p, "/apis/inferencecache.io/v1alpha1/namespaces/ns1/cachebackends/a/status");
  free(p);
  p = ic_kube_path(&ic_kube_res_pods, NULL, NULL, NULL);
  cr_assert_str_eq(p, "/api/v1/pods");
  free(p);
  p = ic_kube_path(&ci, "ignored", "cluster-default", NULL);
  cr_assert_str_eq(p, "/apis/inferencecache.io/v1alpha1/cacheindices/cluster-default");
  free(p);
}

Test(kube_client, transport_error_is_eio_after_retries) {
  ic_kube_config_t c = {.server = "http://127.0.0.1:1"};
  ic_kube_t *k = ic_kube_new(&c);
  ic_kube_set_retry(k, 2, 1);
  json_t *out = NULL;
  ic_kube_status_t st;
  cr_assert_eq(ic_kube_get(k, &ic_kube_res_pods, "ns", "p", &out, &st), IC_EIO);
  cr_assert_null(out);
  cr_assert_eq(st.http, 0);
  cr_assert_eq(ic_kube_requests(k), 2);
  cr_assert_eq(ic_kube_retries(k), 1);
  ic_kube_free(k);
}

Test(kube_watch, parse_event_shapes) {
  char *type;
  json_t *obj;
  const char *ok = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"7\"}}}";
  cr_assert_eq(ic_kube_watch_parse_event(ok, strlen(ok), &type, &obj), 0);
  cr_assert_str_eq(type, "ADDED");
  cr_assert_str_eq(ic_kube_jstr(obj, "metadata.resourceVersion"), "7");
  free(type);
  json_decref(obj);
  const char *bad[] = {"", "[]", "{\"type\":1,\"object\":{}}", "{\"type\":\"ADDED\"}",
                       "{\"type\":\"ADDED\",\"object\":[]}", "{\"type\":\"\",\"object\":{}}",
                       "{\"type\":\"A\",\"object\":{},\"type\":\"B\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_assert_eq(ic_kube_watch_parse_event(bad[i], strlen(bad[i]), &type, &obj), IC_EPROTO,
                 "case %zu", i);
    cr_assert_null(type);
    cr_assert_null(obj);
  }
}

Test(kube_json, controlled_by_checks_controller_ref_uid) {
  json_t *o = json_loads("{\"metadata\":{\"ownerReferences\":[{\"uid\":\"x\"},"
                         "{\"uid\":\"u1\",\"controller\":true}]}}",
                         0, NULL);
  cr_assert(ic_kube_is_controlled_by(o, "u1"));
  cr_assert_not(ic_kube_is_controlled_by(o, "x"));
  cr_assert_not(ic_kube_is_controlled_by(o, ""));
  json_decref(o);
}
