/* lib/base: error texts, buffer growth and JSON escaping, the logger's exact output, and the
 * Prometheus exposition text byte for byte (ordering, escaping, %g values, histograms). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"
#include "ic/metrics.h"

Test(err, every_code_has_text) {
  for (int c = 0; c >= IC_ESTATE; c--) cr_assert_str_neq(ic_strerror(c), "unknown error");
  cr_assert_str_eq(ic_strerror(-999), "unknown error");
}

Test(clock, monotonic_advances_and_realtime_is_plausible) {
  int64_t a = ic_clock_monotonic_ns();
  usleep(1000);
  cr_assert_gt(ic_clock_monotonic_ns() - a, 900000);
  cr_assert_gt(ic_clock_realtime_us(), 1700000000LL * 1000000);
}

Test(buf, grows_and_stays_nul_terminated) {
  ic_buf_t b = IC_BUF_INIT;
  for (int i = 0; i < 1000; i++) cr_assert_eq(ic_buf_appendf(&b, "%d,", i), 0);
  cr_assert_eq(strlen(b.data), b.len);
  cr_assert(strncmp(b.data, "0,1,2,", 6) == 0);
  char big[1000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  ic_buf_reset(&b);
  cr_assert_eq(ic_buf_appendf(&b, "<%s>", big), 0, "formatted output larger than the stack buffer");
  cr_assert_eq(b.len, 1001);
  size_t len;
  char *p = ic_buf_detach(&b, &len);
  cr_assert_eq(len, 1001);
  cr_assert_null(b.data);
  free(p);
}

Test(buf, json_string_escaping) {
  ic_buf_t b = IC_BUF_INIT;
  const char s[] = "a\"b\\c\n\t\x01z";
  ic_buf_append_json_str(&b, s, sizeof s - 1);
  cr_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001z\"");
  ic_buf_free(&b);
}

static char *capture_log(void (*fn)(void)) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  ic_log_set_fd(fds[1]);
  fn();
  ic_log_set_fd(2);
  close(fds[1]);
  static char out[4096];
  ssize_t n = read(fds[0], out, sizeof out - 1);
  close(fds[0]);
  out[n > 0 ? n : 0] = 0;
  return out;
}

static void emit_json(void) {
  ic_log_set_format(IC_LOG_FMT_JSON);
  ic_log_set_level(IC_LOG_INFO);
  ic_log_debug("hidden", IC_LS("k", "v"));
  ic_log_info("startup", IC_LS("grpc_addr", ":9090"), IC_LB("grpc_tls", false), IC_LI("n", -3),
              IC_LS("q", "a\"b"));
  ic_log_warn("bare");
}

Test(log, json_lines_with_typed_fields_and_level_filter) {
  char *out = capture_log(emit_json);
  char *nl = strchr(out, '\n');
  cr_assert_not_null(nl);
  *nl = 0;
  json_error_t e;
  json_t *rec = json_loads(out, 0, &e);
  cr_assert_not_null(rec, "valid JSON: %s", out);
  cr_assert_str_eq(json_string_value(json_object_get(rec, "level")), "INFO");
  cr_assert_str_eq(json_string_value(json_object_get(rec, "msg")), "startup");
  cr_assert_str_eq(json_string_value(json_object_get(rec, "grpc_addr")), ":9090");
  cr_assert(json_is_false(json_object_get(rec, "grpc_tls")));
  cr_assert_eq(json_integer_value(json_object_get(rec, "n")), -3);
  cr_assert_str_eq(json_string_value(json_object_get(rec, "q")), "a\"b");
  const char *ts = json_string_value(json_object_get(rec, "time"));
  cr_assert_eq(strlen(ts), strlen("2026-01-01T00:00:00.000000000Z"));
  json_decref(rec);
  cr_assert(strstr(nl + 1, "\"msg\":\"bare\"") != NULL);
  cr_assert(strstr(nl + 1, "hidden") == NULL, "debug record dropped at info level");
}

static void emit_text(void) {
  ic_log_set_format(IC_LOG_FMT_TEXT);
  ic_log_info("startup", IC_LS("grpc_addr", ":9090"), IC_LS("sp", "a b"));
  ic_log_set_format(IC_LOG_FMT_JSON);
}

Test(log, text_format) {
  char *out = capture_log(emit_text);
  cr_assert(strstr(out, " level=INFO msg=startup grpc_addr=:9090 sp=\"a b\"\n") != NULL, "%s", out);
  cr_assert(strncmp(out, "time=", 5) == 0);
}

Test(log, parse_level_and_format) {
  ic_log_level_t l;
  ic_log_format_t f;
  cr_assert_eq(ic_log_parse_level("WARN", &l), 0);
  cr_assert_eq(l, IC_LOG_WARN);
  cr_assert_eq(ic_log_parse_level("verbose", &l), IC_EINVAL);
  cr_assert_eq(ic_log_parse_format("text", &f), 0);
  cr_assert_eq(f, IC_LOG_FMT_TEXT);
  cr_assert_eq(ic_log_parse_format("yaml", &f), IC_EINVAL);
}

Test(metrics, go_shortest_g_formatting) {
  struct { double v; const char *s; } cases[] = {
      {1, "1"}, {3, "3"}, {0.0001, "0.0001"}, {1e6, "1e+06"}, {123456, "123456"},
      {1234567, "1.234567e+06"}, {0.00025, "0.00025"}, {0.5, "0.5"}, {0.1 + 0.2, "0.30000000000000004"},
      {1e-5, "1e-05"}, {0, "0"}, {-2.5, "-2.5"}, {INFINITY, "+Inf"}, {-INFINITY, "-Inf"}, {NAN, "NaN"},
      {100000, "100000"}, {2.5e-7, "2.5e-07"}};
  char out[32];
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ic_metrics_format_value(cases[i].v, out);
    cr_assert_str_eq(out, cases[i].s);
  }
}

Test(metrics, exact_exposition_text) {
  ic_metrics_t *m = ic_metrics_new();
  const char *lr[] = {"reason_code", "model", "hint_used"};
  ic_metric_family_t *calls = ic_metrics_counter(m, "inferencecache_lookup_route_calls_total",
      "LookupRoute calls by model, reason_code, and whether a hint was returned.", 3, lr);
  ic_metric_family_t *up = ic_metrics_gauge(m, "inferencecache_server_up",
      "1 if the cache policy server is serving requests, 0 otherwise.", 0, NULL);
  const char *ev[] = {"tenant_id", "reason"};
  ic_metric_family_t *evictions = ic_metrics_counter(m, "inferencecache_tenant_evictions_total",
      "Evictions.", 2, ev);
  const char *ml[] = {"model"};
  double b[] = {0.0001, 0.001, 1e6};
  ic_metric_family_t *lat = ic_metrics_histogram(m, "inferencecache_lookup_route_latency_seconds",
      "Server-side LookupRoute latency, per model.", 1, ml, b, 3);
  cr_assert_null(ic_metrics_gauge(m, "inferencecache_server_up", "dup", 0, NULL), "duplicate rejected");
  cr_assert_not_null(evictions);

  ic_metric_set(ic_metric_plain(up), 1);
  ic_metric_inc(ic_metric_child(calls, (const char *[]){"NO_HINT", "m", "false"}));
  ic_metric_add(ic_metric_child(calls, (const char *[]){"PREFIX_MATCH", "m", "true"}), 2);
  ic_metric_inc(ic_metric_child(calls, (const char *[]){"NO_HINT", "a\"b\\c\nd", "false"}));
  ic_metric_t *h = ic_metric_child(lat, (const char *[]){"m"});
  ic_metric_observe(h, 0.00005);
  ic_metric_observe(h, 0.0005);
  ic_metric_observe(h, 5e6);

  ic_buf_t out = IC_BUF_INIT;
  cr_assert_eq(ic_metrics_render(m, &out), 0);
  const char *want =
      "# HELP inferencecache_lookup_route_calls_total LookupRoute calls by model, reason_code, and whether a hint was returned.\n"
      "# TYPE inferencecache_lookup_route_calls_total counter\n"
      "inferencecache_lookup_route_calls_total{hint_used=\"false\",model=\"a\\\"b\\\\c\\nd\",reason_code=\"NO_HINT\"} 1\n"
      "inferencecache_lookup_route_calls_total{hint_used=\"false\",model=\"m\",reason_code=\"NO_HINT\"} 1\n"
      "inferencecache_lookup_route_calls_total{hint_used=\"true\",model=\"m\",reason_code=\"PREFIX_MATCH\"} 2\n"
      "# HELP inferencecache_lookup_route_latency_seconds Server-side LookupRoute latency, per model.\n"
      "# TYPE inferencecache_lookup_route_latency_seconds histogram\n"
      "inferencecache_lookup_route_latency_seconds_bucket{model=\"m\",le=\"0.0001\"} 1\n"
      "inferencecache_lookup_route_latency_seconds_bucket{model=\"m\",le=\"0.001\"} 2\n"
      "inferencecache_lookup_route_latency_seconds_bucket{model=\"m\",le=\"1e+06\"} 2\n"
      "inferencecache_lookup_route_latency_seconds_bucket{model=\"m\",le=\"+Inf\"} 3\n"
      "inferencecache_lookup_route_latency_seconds_sum{model=\"m\"} 5.00000000055e+06\n"
      "inferencecache_lookup_route_latency_seconds_count{model=\"m\"} 3\n"
      "# HELP inferencecache_server_up 1 if the cache policy server is serving requests, 0 otherwise.\n"
      "# TYPE inferencecache_server_up gauge\n"
      "inferencecache_server_up 1\n";
  cr_assert_str_eq(out.data, want, "labelled family without children renders nothing");
  ic_buf_free(&out);

  ic_metric_add(ic_metric_child(evictions, (const char *[]){"team-a", "over_entries"}), 3);
  ic_metrics_render(m, &out);
  cr_assert(strstr(out.data, "inferencecache_tenant_evictions_total{reason=\"over_entries\",tenant_id=\"team-a\"} 3\n"));
  cr_assert(strstr(out.data, "# HELP inferencecache_tenant_evictions_total Evictions.\n"));
  ic_buf_free(&out);
  ic_metrics_free(m);
}

Test(metrics, help_escaping_and_unlabelled_zero) {
  ic_metrics_t *m = ic_metrics_new();
  ic_metrics_counter(m, "x_total", "back\\slash\nnewline \"quotes\" kept", 0, NULL);
  ic_buf_t out = IC_BUF_INIT;
  ic_metrics_render(m, &out);
  cr_assert_str_eq(out.data, "# HELP x_total back\\\\slash\\nnewline \"quotes\" kept\n# TYPE x_total counter\nx_total 0\n");
  ic_buf_free(&out);
  ic_metrics_free(m);
}

struct sample_acc { ic_buf_t b; };
static void on_sample(void *ud, const char *name, const char *type, size_t n, const char *const *ln,
                      const char *const *lv, double v) {
  struct sample_acc *a = ud;
  ic_buf_appendf(&a->b, "%s|%s", name, type);
  for (size_t i = 0; i < n; i++) ic_buf_appendf(&a->b, "|%s=%s", ln[i], lv[i]);
  ic_buf_appendf(&a->b, "|%g\n", v);
}

Test(metrics, foreach_yields_samples) {
  ic_metrics_t *m = ic_metrics_new();
  const char *ml[] = {"model"};
  double b[] = {1};
  ic_metric_observe(ic_metric_child(ic_metrics_histogram(m, "h", "h", 1, ml, b, 1), (const char *[]){"m"}), 0.5);
  ic_metric_set(ic_metric_plain(ic_metrics_gauge(m, "g", "g", 0, NULL)), 7);
  struct sample_acc a = {IC_BUF_INIT};
  ic_metrics_foreach(m, on_sample, &a);
  cr_assert_str_eq(a.b.data, "g|gauge|7\nh_sum|histogram|model=m|0.5\nh_count|histogram|model=m|1\n"
                             "h_bucket|histogram|model=m|le=1|1\nh_bucket|histogram|model=m|le=+Inf|1\n");
  ic_buf_free(&a.b);
  ic_metrics_free(m);
}

static ic_metric_family_t *g_fam;
static void *hammer(void *arg) {
  (void)arg;
  for (int i = 0; i < 20000; i++) {
    char v[8];
    snprintf(v, sizeof v, "%d", i % 7);
    ic_metric_inc(ic_metric_child(g_fam, (const char *[]){v}));
  }
  return NULL;
}

Test(metrics, concurrent_updates_are_not_lost) {
  ic_metrics_t *m = ic_metrics_new();
  const char *l[] = {"k"};
  g_fam = ic_metrics_counter(m, "c_total", "c", 1, l);
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, hammer, NULL);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  double sum = 0;
  for (int i = 0; i < 7; i++) {
    char v[8];
    snprintf(v, sizeof v, "%d", i);
    sum += ic_metric_value(ic_metric_child(g_fam, (const char *[]){v}));
  }
  cr_assert_eq(sum, 80000);
  ic_metrics_free(m);
}

/* Issue 16 item 8: 20k tenant/model pairs used to leave 20k series (and a 1 MB /metrics)
   forever. A bounded label keeps at most N values; the rest share the "other" series. */
Test(metrics, bounded_label_folds_new_values_into_other) {
  ic_metrics_t *m = ic_metrics_new();
  static const char *const cl[] = {"model", "code"};
  static const char *const gl[] = {"model"};
  ic_metric_family_t *calls = ic_metrics_counter(m, "calls", "h", 2, cl);
  ic_metric_family_t *ent = ic_metrics_gauge(m, "entries", "h", 1, gl);
  cr_assert_eq(ic_metrics_bound_label(calls, "model", 3), 0);
  cr_assert_eq(ic_metrics_bound_label(ent, "model", 2), 0);
  cr_assert_eq(ic_metrics_bound_label(ent, "nope", 2), IC_EINVAL);
  char name[32];
  for (int i = 0; i < 20000; i++) {
    snprintf(name, sizeof name, "model-%d", i);
    const char *lv[2] = {name, i % 2 ? "A" : "B"};
    ic_metric_inc(ic_metric_child(calls, lv));
    cr_assert_eq(ic_metric_gauge_set(ent, lv, 10), 0);
  }
  /* the first three models keep their own series; the others share "other" per code */
  const char *a[2] = {"model-1", "A"}, *o_a[2] = {"other", "A"}, *o_b[2] = {"other", "B"};
  cr_assert_eq(ic_metric_value(ic_metric_child(calls, a)), 1);
  cr_assert_eq(ic_metric_value(ic_metric_child(calls, o_a)) +
                   ic_metric_value(ic_metric_child(calls, o_b)),
               19997);
  /* an over-bound model keeps landing in "other", never a series of its own */
  const char *late[2] = {"model-19999", "A"};
  cr_assert_eq(ic_metric_child(calls, late), ic_metric_child(calls, o_a));
  /* gauges: "other" is the sum of the values past the bound, and a value set to 0 leaves it */
  const char *go[1] = {"other"}, *g5[1] = {"model-5"}, *g0[1] = {"model-0"};
  cr_assert_eq(ic_metric_value(ic_metric_child(ent, go)), 10.0 * 19998);
  ic_metric_gauge_set(ent, g5, 0);
  cr_assert_eq(ic_metric_value(ic_metric_child(ent, go)), 10.0 * 19997);
  ic_metric_gauge_set(ent, g5, 4);
  cr_assert_eq(ic_metric_value(ic_metric_child(ent, go)), 10.0 * 19997 + 4);
  ic_metric_gauge_set(ent, g0, 7); /* within the bound: its own series */
  cr_assert_eq(ic_metric_value(ic_metric_child(ent, g0)), 7);
  ic_buf_t out = IC_BUF_INIT;
  cr_assert_eq(ic_metrics_render(m, &out), 0);
  cr_assert_lt(out.len, 2000, "exposition stays small: %zu bytes", out.len);
  cr_assert_not_null(strstr(out.data, "calls{code=\"A\",model=\"other\"}"));
  ic_buf_free(&out);
  ic_metrics_free(m);
}
