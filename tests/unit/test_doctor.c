/* lib/doctor: the severity ladder and exit codes, the three renderings, and every check's
 * branches over literal API objects (what the run gathers from a cluster and the server). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/doctor.h"
#include "ic/kube.h"

#define NOW_US 1780000000000000LL /* 2026-05-28T20:26:40Z */

static ic_doctor_report_t R;
static void setup(void) { ic_doctor_report_init(&R); }
static void teardown(void) { ic_doctor_report_free(&R); }
TestSuite(doctor, .init = setup, .fini = teardown);

static json_t *J(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  cr_assert(j, "bad test JSON: %s: %s", e.text, text);
  return j;
}

static char *render(ic_doctor_format_t f, bool color) {
  char *buf = NULL;
  size_t n = 0;
  FILE *m = open_memstream(&buf, &n);
  cr_assert_eq(ic_doctor_render(&R, f, color, m), 0);
  fclose(m);
  return buf;
}

/* The codes in emission order, space separated. */
static const char *codes(void) {
  static char out[1024];
  out[0] = 0;
  for (size_t i = 0; i < R.len; i++)
    snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "", R.items[i].code);
  return out;
}

static void time_str(int64_t us, char *out) { ic_kube_format_time(us, false, out); }

/* ------------------------------------------------------------------ report */

Test(doctor, exit_code_follows_the_worst_status) {
  cr_assert_eq(ic_doctor_exit_code(&R), 0);
  ic_doctor_add(&R, "SV003", IC_DOCTOR_OK, "c", NULL, "ok");
  ic_doctor_add(&R, "CP001", IC_DOCTOR_INFO, "c", NULL, "info");
  cr_assert_eq(ic_doctor_exit_code(&R), 0, "INFO never changes the exit code");
  ic_doctor_add(&R, "CB001", IC_DOCTOR_WARN, "c", "cachebackend/a/b", "warn %d", 1);
  cr_assert_eq(ic_doctor_exit_code(&R), 1);
  ic_doctor_add(&R, "SV001", IC_DOCTOR_FAIL, "c", "", "fail");
  cr_assert_eq(ic_doctor_exit_code(&R), 2);
  cr_assert_eq(ic_doctor_worst(&R), IC_DOCTOR_FAIL);
  size_t c[4];
  ic_doctor_counts(&R, c);
  cr_assert(c[0] == 1 && c[1] == 1 && c[2] == 1 && c[3] == 1);
  cr_assert_str_eq(R.items[2].message, "warn 1");
  cr_assert_eq(ic_doctor_count_code(&R, "CB001"), 1);
  cr_assert_eq(ic_doctor_count_code(&R, "CB002"), 0);
}

Test(doctor, out_of_memory_report_counts_as_fail) {
  R.oom = true;
  cr_assert_eq(ic_doctor_exit_code(&R), 2);
}

Test(doctor, status_names_and_formats) {
  cr_assert_str_eq(ic_doctor_status_name(IC_DOCTOR_OK), "OK");
  cr_assert_str_eq(ic_doctor_status_name(IC_DOCTOR_INFO), "INFO");
  cr_assert_str_eq(ic_doctor_status_name(IC_DOCTOR_WARN), "WARN");
  cr_assert_str_eq(ic_doctor_status_name(IC_DOCTOR_FAIL), "FAIL");
  cr_assert_str_eq(ic_doctor_status_name((ic_doctor_status_t)9), "UNKNOWN");
  ic_doctor_format_t f;
  cr_assert_eq(ic_doctor_parse_format("json", &f), 0);
  cr_assert_eq(f, IC_DOCTOR_JSON);
  cr_assert_eq(ic_doctor_parse_format("table", &f), 0);
  cr_assert_eq(f, IC_DOCTOR_TABLE);
  cr_assert_eq(ic_doctor_parse_format("human", &f), 0);
  cr_assert_eq(f, IC_DOCTOR_HUMAN);
  cr_assert_lt(ic_doctor_parse_format("yaml", &f), 0);
  cr_assert_lt(ic_doctor_parse_format(NULL, &f), 0);
}

Test(doctor, human_sections_most_urgent_first) {
  ic_doctor_add(&R, "SV003", IC_DOCTOR_OK, "ServerReachability", "h:9090", "serving");
  ic_doctor_add(&R, "CB002", IC_DOCTOR_WARN, "CacheBackendHealth", "cachebackend/n/b", "none");
  ic_doctor_add(&R, "SV001", IC_DOCTOR_FAIL, "ServerReachability", NULL, "down");
  char *out = render(IC_DOCTOR_HUMAN, false);
  cr_assert_str_eq(out, "inferencecache doctor\n\n"
                        "FAIL\n  FAIL SV001\n      down\n\n"
                        "WARN\n  WARN CB002  cachebackend/n/b\n      none\n\n"
                        "OK\n  OK   SV003  h:9090\n      serving\n\n"
                        "Summary: 1 OK, 0 INFO, 1 WARN, 1 FAIL  (exit 2)\n");
  free(out);
  out = render(IC_DOCTOR_HUMAN, true);
  cr_assert(strstr(out, "\033[31m"), "FAIL is red on a terminal");
  free(out);
}

Test(doctor, json_schema_and_optional_resource) {
  char *out = render(IC_DOCTOR_JSON, false);
  json_t *doc = J(out);
  cr_assert_eq(json_array_size(json_object_get(doc, "findings")), 0, "[] when empty, not null");
  json_decref(doc);
  free(out);
  ic_doctor_add(&R, "SN003", IC_DOCTOR_INFO, "SnapshotReachability", "", "no \"token\"");
  ic_doctor_add(&R, "CB001", IC_DOCTOR_WARN, "CacheBackendHealth", "cachebackend/a/b", "x");
  out = render(IC_DOCTOR_JSON, false);
  cr_assert(strstr(out, "\n  \"summary\": {\n    \"ok\": 0,"), "indented by two: %s", out);
  doc = J(out);
  json_t *s = json_object_get(doc, "summary");
  cr_assert_eq(json_integer_value(json_object_get(s, "info")), 1);
  cr_assert_eq(json_integer_value(json_object_get(s, "warn")), 1);
  cr_assert_eq(json_integer_value(json_object_get(s, "exitCode")), 1);
  json_t *f0 = json_array_get(json_object_get(doc, "findings"), 0);
  cr_assert_null(json_object_get(f0, "resource"), "omitted when empty");
  cr_assert_str_eq(json_string_value(json_object_get(f0, "message")), "no \"token\"");
  cr_assert_str_eq(json_string_value(json_object_get(f0, "status")), "INFO");
  json_t *f1 = json_array_get(json_object_get(doc, "findings"), 1);
  cr_assert_str_eq(json_string_value(json_object_get(f1, "resource")), "cachebackend/a/b");
  json_decref(doc);
  free(out);
}

Test(doctor, table_aligns_and_keeps_one_row_per_finding) {
  ic_doctor_add(&R, "SV001", IC_DOCTOR_FAIL, "ServerReachability", "host:9090", "a\n  b\tc");
  ic_doctor_add(&R, "EP000", IC_DOCTOR_OK, "Summary", NULL, "note — dash");
  char *out = render(IC_DOCTOR_TABLE, false);
  cr_assert_str_eq(out, "STATUS  CODE   CHECK               RESOURCE   MESSAGE\n"
                        "FAIL    SV001  ServerReachability  host:9090  a b c\n"
                        "OK      EP000  Summary             -          note — dash\n");
  free(out);
}

/* ------------------------------------------------------------ server endpoints */

Test(doctor, health_states) {
  ic_doctor_check_health(&R, "h:1", "connection refused", 0);
  ic_doctor_check_health(&R, "h:1", NULL, 2);
  ic_doctor_check_health(&R, "h:1", NULL, 1);
  cr_assert_str_eq(codes(), "SV001 SV002 SV003");
  cr_assert(strstr(R.items[1].message, "NOT_SERVING"));
  cr_assert_eq(R.items[2].status, IC_DOCTOR_OK);
}

Test(doctor, snapshot_answers) {
  const char *u = "http://h:8081/snapshot";
  ic_doctor_check_snapshot(&R, u, 0, "refused", NULL, 0, false);
  ic_doctor_check_snapshot(&R, u, 401, NULL, NULL, 0, true);
  ic_doctor_check_snapshot(&R, u, 403, NULL, NULL, 0, false);
  ic_doctor_check_snapshot(&R, u, 500, NULL, "oops", 4, false);
  ic_doctor_check_snapshot(&R, u, 200, NULL, "<html>", 6, false);
  cr_assert_str_eq(codes(), "SN001 SN005 SN005 SN001 SN002");
  cr_assert_eq(R.items[1].status, IC_DOCTOR_WARN);
  ic_doctor_report_free(&R);
  ic_doctor_check_snapshot(&R, u, 200, NULL, "{\"replicas\":null}", 17, false);
  cr_assert_str_eq(codes(), "SN004 SN003", "unauthenticated answer is flagged INFO");
  ic_doctor_report_free(&R);
  ic_doctor_check_snapshot(&R, u, 200, NULL, "{}", 2, true);
  cr_assert_str_eq(codes(), "SN004");
  ic_doctor_report_free(&R);
  ic_doctor_check_snapshot(&R, u, 200, "body over 8388608 bytes", NULL, 0, true);
  cr_assert_str_eq(codes(), "SN002");
  cr_assert(strstr(R.items[0].message, "body over"), "%s", R.items[0].message);
}

Test(doctor, route_answers) {
  ic_doctor_check_route(&R, "/policy", "u", 0, "refused");
  ic_doctor_check_route(&R, "/policy", "u", 404, NULL);
  ic_doctor_check_route(&R, "/policy", "u", 405, NULL);
  ic_doctor_check_route(&R, "/policy", "u", 401, NULL);
  ic_doctor_check_route(&R, "/policy", "u", 204, NULL);
  ic_doctor_check_route(&R, "/policy", "u", 502, NULL);
  ic_doctor_check_route(&R, "/probe", "u", 404, NULL);
  ic_doctor_check_route(&R, "/probe", "u", 403, NULL);
  ic_doctor_check_route(&R, "/probe", "u", 500, NULL);
  cr_assert_str_eq(codes(), "PL001 PL001 PL002 PL002 PL002 PL003 PB001 PB002 PB003");
  cr_assert_eq(R.items[5].status, IC_DOCTOR_WARN);
  cr_assert_str_eq(R.items[6].check, IC_DOCTOR_CHECK_PROBE);
}

/* ---------------------------------------------------------------- CacheBackends */

#define READY "{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KVEventsObserved\"}"
#define SEL "\"engineSelector\":{\"matchLabels\":{\"d\":\"a\"}}"

static json_t *backend(const char *spec, const char *status) {
  char buf[4096];
  snprintf(buf, sizeof buf,
           "[{\"metadata\":{\"namespace\":\"ns\",\"name\":\"b\",\"uid\":\"u-1\"},"
           "\"spec\":%s,\"status\":%s}]",
           spec, status);
  return J(buf);
}

static int dial_ok(void *ud, const char *ep, char *err, size_t n) {
  (void)err, (void)n;
  *(const char **)ud = ep;
  return 0;
}
static int dial_fail(void *ud, const char *ep, char *err, size_t n) {
  (void)ud, (void)ep;
  snprintf(err, n, "connection refused");
  return -5;
}

Test(doctor, healthy_backend) {
  char fresh[40], st[512];
  time_str(NOW_US - 5000000, fresh);
  snprintf(st, sizeof st,
           "{\"conditions\":[" READY "],\"matchedEnginePods\":2,"
           "\"indexParticipation\":{\"lastEventAt\":\"%s\",\"prefixCount\":7}}",
           fresh);
  json_t *b = backend("{" SEL "}", st);
  ic_doctor_check_backends(&R, b, NULL, NOW_US, NULL, NULL);
  cr_assert_str_eq(codes(), "CB006");
  cr_assert(strstr(R.items[0].message, "7 prefix"), "%s", R.items[0].message);
  cr_assert_str_eq(R.items[0].resource, "cachebackend/ns/b");
  json_decref(b);
}

Test(doctor, fresh_backend_without_status) {
  json_t *b = backend("{" SEL "}", "{}");
  json_t *pods = J("[]");
  ic_doctor_check_backends(&R, b, pods, NOW_US, NULL, NULL);
  cr_assert_str_eq(codes(), "CB001 CB002 CB003");
  cr_assert(strstr(R.items[0].message, "not set yet"));
  json_decref(b);
  json_decref(pods);
}

Test(doctor, matched_pods_fall_back_to_a_live_count) {
  json_t *b = backend("{" SEL "}", "{\"conditions\":[" READY
                                   "],\"firstKVEventObservedAt\":\"2026-01-01T00:00:00Z\"}");
  json_t *pods =
      J("[{\"metadata\":{\"namespace\":\"ns\",\"name\":\"p\",\"labels\":{\"d\":\"a\"}}}]");
  ic_doctor_check_backends(&R, b, pods, NOW_US, NULL, NULL);
  cr_assert_str_eq(codes(), "CB006", "a drained backend keeps its first-event latch");
  ic_doctor_report_free(&R);
  json_t *other =
      J("[{\"metadata\":{\"namespace\":\"x\",\"name\":\"p\",\"labels\":{\"d\":\"a\"}}}]");
  ic_doctor_check_backends(&R, b, other, NOW_US, NULL, NULL);
  cr_assert_str_eq(codes(), "CB002", "pods of another namespace do not count");
  ic_doctor_report_free(&R);
  ic_doctor_check_backends(&R, b, NULL, NOW_US, NULL, NULL);
  cr_assert_str_eq(codes(), "API001");
  cr_assert_eq(R.items[0].status, IC_DOCTOR_FAIL);
  json_decref(b);
  json_decref(pods);
  json_decref(other);
}

Test(doctor, stale_events_probe_failing_and_not_ready) {
  char old[40], st[1024];
  time_str(NOW_US - 600 * 1000000LL, old);
  snprintf(st, sizeof st,
           "{\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"Degraded\","
           "\"message\":\"probe\"},{\"type\":\"FunctionalProbeOK\",\"status\":\"False\","
           "\"reason\":\"IngestFailed\",\"message\":\"m\"}],\"matchedEnginePods\":1,"
           "\"indexParticipation\":{\"lastEventAt\":\"%s\"}}",
           old);
  json_t *b = backend("{" SEL "}", st);
  ic_doctor_check_backends(&R, b, NULL, NOW_US, NULL, NULL);
  cr_assert_str_eq(codes(), "CB001 CB004 CB007");
  cr_assert(strstr(R.items[0].message, "Ready=False (reason Degraded)"));
  cr_assert(strstr(R.items[1].message, "600s old"), "%s", R.items[1].message);
  json_decref(b);
}

Test(doctor, remote_storage_endpoint) {
  const char *ready_seen = "{\"conditions\":[" READY "],\"firstKVEventObservedAt\":"
                           "\"2026-01-01T00:00:00Z\"%s}";
  char st[512];
  snprintf(st, sizeof st, ready_seen, "");
  json_t *b = backend("{\"remoteStorage\":{\"provider\":\"Redis\"}}", st);
  ic_doctor_check_backends(&R, b, NULL, NOW_US, NULL, NULL);
  cr_assert_str_eq(codes(), "CB005", "no published endpoint");
  json_decref(b);
  ic_doctor_report_free(&R);
  snprintf(st, sizeof st, ready_seen, ",\"remoteStorage\":{\"endpoint\":\"redis:6379\"}");
  b = backend("{\"remoteStorage\":{\"provider\":\"Redis\"}}", st);
  ic_doctor_check_backends(&R, b, NULL, NOW_US, dial_fail, NULL);
  cr_assert_str_eq(codes(), "CB005");
  cr_assert(strstr(R.items[0].message, "connection refused"));
  ic_doctor_report_free(&R);
  const char *dialed = NULL;
  ic_doctor_check_backends(&R, b, NULL, NOW_US, dial_ok, &dialed);
  cr_assert_str_eq(codes(), "CB006");
  cr_assert_str_eq(dialed, "redis:6379");
  json_decref(b);
}

Test(doctor, external_backend_skips_engine_axes) {
  json_t *b = backend("{\"remoteStorage\":{\"ownership\":\"External\"}," SEL "}",
                      "{\"conditions\":[" READY "],\"remoteStorage\":{\"endpoint\":\"e:1\"},"
                      "\"matchedEnginePods\":0}");
  ic_doctor_check_backends(&R, b, NULL, NOW_US, NULL, NULL);
  cr_assert_str_eq(codes(), "CB006");
  cr_assert(strstr(R.items[0].message, "External"));
  json_decref(b);
}

/* ------------------------------------------------------------- engine pods */

static const char *BACKENDS =
    "[{\"metadata\":{\"namespace\":\"ns\",\"name\":\"b\",\"uid\":\"u-1\"},"
    "\"spec\":{" SEL "}}]";

static json_t *pod(const char *name, const char *annotations, const char *phase) {
  char buf[2048];
  snprintf(buf, sizeof buf,
           "{\"metadata\":{\"namespace\":\"ns\",\"name\":\"%s\",\"uid\":\"pu-%s\","
           "\"labels\":{\"d\":\"a\"},\"annotations\":%s},\"status\":{\"phase\":\"%s\"}}",
           name, name, annotations, phase);
  return J(buf);
}

#define STAMP                                                                                      \
  "{\"inferencecache.io/injected-by\":\"ns/b\",\"inferencecache.io/injected-by-uid\":\"u-1\"}"

Test(doctor, injection_audit) {
  json_t *b = J(BACKENDS), *pods = json_array();
  json_array_append_new(pods, pod("stamped", STAMP, "Running"));
  json_array_append_new(pods, pod("bare", "{}", "Running"));
  json_array_append_new(pods, pod("evented", "{}", "Running"));
  json_array_append_new(
      pods, pod("stale-uid",
                "{\"inferencecache.io/injected-by\":\"ns/b\",\"inferencecache.io/injected-by-uid\":"
                "\"old\"}",
                "Running"));
  json_t *unrelated = J("{\"metadata\":{\"namespace\":\"ns\",\"name\":\"web\",\"labels\":{}}}");
  json_array_append_new(pods, unrelated);
  json_t *evs = J("[{\"reason\":\"InjectedByCacheBackend\",\"regarding\":{\"kind\":\"Pod\","
                  "\"uid\":\"pu-evented\"}}]");
  ic_doctor_check_injection(&R, b, pods, evs);
  cr_assert_str_eq(codes(), "EP002 EP001 EP002 EP001");
  cr_assert_str_eq(R.items[1].resource, "pod/ns/bare");
  json_decref(b);
  json_decref(pods);
  json_decref(evs);
}

Test(doctor, ambiguous_selectors) {
  json_t *b = J("[{\"metadata\":{\"namespace\":\"ns\",\"name\":\"z\"},\"spec\":{" SEL "}},"
                "{\"metadata\":{\"namespace\":\"ns\",\"name\":\"a\"},\"spec\":{" SEL "}},"
                "{\"metadata\":{\"namespace\":\"other\",\"name\":\"o\"},\"spec\":{" SEL "}}]");
  json_t *pods = json_array(), *evs = json_array();
  json_array_append_new(pods, pod("p", "{}", "Running"));
  ic_doctor_check_injection(&R, b, pods, evs);
  cr_assert_str_eq(codes(), "EP003");
  cr_assert(strstr(R.items[0].message, "2 CacheBackends (a, z)"), "%s", R.items[0].message);
  json_decref(b);
  json_decref(pods);
  json_decref(evs);
}

Test(doctor, index_participation) {
  json_t *b = J(BACKENDS), *pods = json_array();
  json_array_append_new(pods, pod("in", STAMP, "Running"));
  json_array_append_new(pods, pod("missing", STAMP, "Running"));
  json_array_append_new(pods, pod("pending", STAMP, "Pending"));
  json_array_append_new(pods, pod("bare", "{}", "Running"));
  json_t *snap = J("{\"replicas\":[{\"replicaId\":\"in\",\"tenant\":\"ns\",\"prefixCount\":3},"
                   "{\"replicaId\":\"missing\",\"tenant\":\"elsewhere\"}]}");
  ic_doctor_check_index(&R, b, pods, snap);
  cr_assert_str_eq(codes(), "IX002 IX001", "same pod name in another tenant does not count");
  cr_assert_str_eq(R.items[1].resource, "pod/ns/missing");
  ic_doctor_report_free(&R);
  ic_doctor_check_index(&R, b, pods, NULL);
  cr_assert_eq(R.len, 0, "no snapshot (config-only, or /snapshot failed): no verdict");
  json_decref(b);
  json_decref(pods);
  json_decref(snap);
}

Test(doctor, orphan_events_within_a_day) {
  char recent[40], old[40], buf[1024];
  time_str(NOW_US - 3600 * 1000000LL, recent);
  time_str(NOW_US - 48 * 3600 * 1000000LL, old);
  snprintf(buf, sizeof buf,
           "[{\"reason\":\"NoMatchingCacheBackend\",\"note\":\"n\",\"eventTime\":\"%s\","
           "\"regarding\":{\"kind\":\"Pod\",\"namespace\":\"ns\",\"name\":\"p1\"}},"
           "{\"reason\":\"NoMatchingCacheBackend\",\"lastTimestamp\":\"%s\","
           "\"involvedObject\":{\"kind\":\"Pod\",\"namespace\":\"ns\",\"name\":\"p2\"}},"
           "{\"reason\":\"Other\",\"eventTime\":\"%s\",\"regarding\":{\"kind\":\"Pod\"}}]",
           recent, old, recent);
  json_t *evs = J(buf);
  ic_doctor_check_orphans(&R, evs, NOW_US);
  cr_assert_str_eq(codes(), "OP001");
  cr_assert_str_eq(R.items[0].resource, "pod/ns/p1");
  json_decref(evs);
}

/* ---------------------------------------------------------- tenants, policies */

Test(doctor, tenant_quota) {
  json_t *t =
      J("[{\"metadata\":{\"namespace\":\"a\",\"name\":\"t\"},\"spec\":{\"tenantID\":\"a\","
        "\"quota\":{\"maxIndexEntries\":10}},\"status\":{\"indexEntries\":12,"
        "\"conditions\":[{\"type\":\"QuotaExceeded\",\"status\":\"True\"}]}},"
        "{\"metadata\":{\"namespace\":\"b\",\"name\":\"t\"},\"spec\":{\"tenantID\":\"b\"}}]");
  ic_doctor_check_tenants(&R, t);
  cr_assert_str_eq(codes(), "CT001 CT002");
  cr_assert(strstr(R.items[0].message, "12 index entries against a maxIndexEntries quota of 10"));
  json_decref(t);
}

Test(doctor, policy_coverage_and_tenants) {
  json_t *b = J("[{\"metadata\":{\"namespace\":\"one\",\"name\":\"x\"}},"
                "{\"metadata\":{\"namespace\":\"none\",\"name\":\"x\"}},"
                "{\"metadata\":{\"namespace\":\"two\",\"name\":\"x\"}},"
                "{\"metadata\":{\"namespace\":\"one\",\"name\":\"y\"}}]");
  json_t *p = J("[{\"metadata\":{\"namespace\":\"one\",\"name\":\"p\"}},"
                "{\"metadata\":{\"namespace\":\"two\",\"name\":\"q\"}},"
                "{\"metadata\":{\"namespace\":\"two\",\"name\":\"p\"}}]");
  json_t *t = J("[{\"metadata\":{\"namespace\":\"elsewhere\",\"name\":\"t\"},"
                "\"spec\":{\"tenantID\":\"one\"}}]");
  ic_doctor_check_coverage(&R, b, p, t);
  cr_assert_str_eq(codes(), "CP001 CP002 CP003 CP004");
  cr_assert_str_eq(R.items[0].resource, "namespace/none");
  cr_assert(strstr(R.items[2].message, "only \"p\""), "%s", R.items[2].message);
  cr_assert_str_eq(R.items[3].resource, "cachepolicy/two/p", "tenant two has no CacheTenant");
  cr_assert_eq(R.items[3].status, IC_DOCTOR_WARN);
  ic_doctor_report_free(&R);
  ic_doctor_check_coverage(&R, b, p, NULL);
  cr_assert_str_eq(codes(), "CP001 CP002 CP003", "tenant list failed: no CP004 guess");
  json_decref(b);
  json_decref(p);
  json_decref(t);
}
