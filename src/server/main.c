/* inferencecache-server entry point: flags, logger, auth-flag matrix, TLS, the startup sequence
 * and exit codes of docs/server.md, the maintenance thread, signals and graceful drain.
 * Wiring only: the gRPC side is in grpc_*.c (+ lib/svc, lib/rpc), HTTP in http_*.c. */
#include <ctype.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/index.h"
#include "ic/log.h"
#include "ic/mem.h"
#include "ic/metrics.h"
#include "ic/policy.h"
#include "ic/warmstart.h"
#include "ic/rpc.h"
#include "ic/svc.h"
#include "ic/version.h"
#include "server.h"

#define HTTP_SHUTDOWN_MS 5000

/* ---- fallbacks until/unless the HTTP side provides these (strong symbols win at link) ---- */
__attribute__((weak)) int server_http_start(server_ctx_t *ctx, char *err, size_t errlen) {
  (void)ctx, (void)err, (void)errlen;
  ic_log_warn("http_listeners_unavailable", IC_LS("reason", "this build has no HTTP listeners"));
  return 0;
}
__attribute__((weak)) void server_http_stop(server_ctx_t *ctx, int deadline_ms) { (void)ctx, (void)deadline_ms; }
__attribute__((weak)) int server_auth_init(server_ctx_t *ctx) {
  (void)ctx;
  if (!getenv("KUBERNETES_SERVICE_HOST") || !getenv("KUBERNETES_SERVICE_PORT")) {
    ic_log_error("in_cluster_config",
                 IC_LS("err", "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
                              "KUBERNETES_SERVICE_PORT must be defined"));
    return 1;
  }
  return 0;
}

/* Trim (ASCII whitespace) and lower-case into out. */
static void norm(const char *in, char *out, size_t cap) {
  while (*in && isspace((unsigned char)*in)) in++;
  size_t n = strlen(in);
  while (n > 0 && isspace((unsigned char)in[n - 1])) n--;
  if (n >= cap) n = cap - 1;
  for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)in[i]);
  out[n] = '\0';
}

/* ---- metrics (docs/server.md, "Metrics") ---- */
static const double LATENCY_BUCKETS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1};

static int register_metrics(server_ctx_t *ctx) {
  ic_metrics_t *m = ctx->metrics;
  static const char *const model[] = {"model"};
  static const char *const calls[] = {"model", "reason_code", "hint_used"};
  static const char *const tev[] = {"tenant_id", "reason"};
  static const char *const iev[] = {"algorithm", "reason"};
  static const char *const result[] = {"result"};
  static const char *const stream[] = {"stream"};
  server_metrics_t *x = &ctx->m;
  x->server_up = ic_metrics_gauge(m, "inferencecache_server_up",
                                  "1 if the cache policy server is serving requests, 0 otherwise.", 0, NULL);
  x->grpc_tls_enabled = ic_metrics_gauge(m, "inferencecache_server_grpc_tls_enabled",
                                         "1 if the gRPC server is terminating TLS, 0 if serving plaintext.", 0, NULL);
  x->index_entries = ic_metrics_gauge(m, "inferencecache_index_entries",
                                      "Distinct prefix entries currently held in the cache index, per model.", 1, model);
  x->lookup_calls = ic_metrics_counter(m, "inferencecache_lookup_route_calls_total",
                                       "LookupRoute calls by model, reason_code, and whether a hint was returned.", 3,
                                       calls);
  x->lookup_latency = ic_metrics_histogram(m, "inferencecache_lookup_route_latency_seconds",
                                           "Server-side LookupRoute latency, per model.", 1, model, LATENCY_BUCKETS,
                                           sizeof LATENCY_BUCKETS / sizeof LATENCY_BUCKETS[0]);
  x->tenant_evictions =
      ic_metrics_counter(m, "inferencecache_tenant_evictions_total",
                         "Index prefixes evicted to enforce a CacheTenant quota, by tenant and reason.", 2, tev);
  x->index_evictions = ic_metrics_counter(
      m, "inferencecache_index_evictions_total",
      "Index entries evicted by the cap or TTL sweep, by algorithm (lru|lfu) and reason (cap|ttl).", 2, iev);
  x->snapshot_auth = ic_metrics_counter(
      m, "inferencecache_snapshot_auth_total",
      "Authentication outcomes for the internal /snapshot endpoint (ok|unauth|forbidden|error).", 1, result);
  x->policy_auth = ic_metrics_counter(
      m, "inferencecache_policy_auth_total",
      "Authentication outcomes for the internal /policy endpoint (ok|unauth|forbidden|error).", 1, result);
  x->probe_auth = ic_metrics_counter(
      m, "inferencecache_probe_auth_total",
      "Authentication outcomes for the internal /probe endpoint (ok|unauth|forbidden|error).", 1, result);
  x->stream_dropped = ic_metrics_counter(
      m, "inferencecache_stream_dropped_total",
      "Changes lost by too-slow StreamCacheEvents subscribers (events) and samples skipped by slow StreamMetrics readers (metrics).", 1, stream);
  x->stream_subscribers = ic_metrics_gauge(m, "inferencecache_stream_subscribers",
                                           "Open StreamCacheEvents/StreamMetrics subscriptions, by stream.", 1, stream);
  if (ctx->flags.metrics_max_label_values > 0) { /* bounded series (docs/server.md, Metrics) */
    size_t lim = (size_t)ctx->flags.metrics_max_label_values;
    if (x->index_entries) ic_metrics_bound_label(x->index_entries, "model", lim);
    if (x->lookup_calls) ic_metrics_bound_label(x->lookup_calls, "model", lim);
    if (x->lookup_latency) ic_metrics_bound_label(x->lookup_latency, "model", lim);
    if (x->tenant_evictions) ic_metrics_bound_label(x->tenant_evictions, "tenant_id", lim);
  }
  return x->server_up && x->grpc_tls_enabled && x->index_entries && x->lookup_calls && x->lookup_latency &&
                 x->tenant_evictions && x->index_evictions && x->snapshot_auth && x->policy_auth && x->probe_auth &&
                 x->stream_dropped && x->stream_subscribers
             ? 0
             : IC_ENOMEM;
}

/* Index metrics sinks. */
static void set_index_entries(void *ud, const char *model, int64_t n) {
  server_ctx_t *ctx = ud;
  const char *lv[1] = {model};
  ic_metric_gauge_set(ctx->m.index_entries, lv, (double)n);
}
static void add_tenant_evictions(void *ud, const char *tenant, const char *reason, int64_t n) {
  server_ctx_t *ctx = ud;
  const char *lv[2] = {tenant, reason};
  ic_metric_t *c = ic_metric_child(ctx->m.tenant_evictions, lv);
  if (c) ic_metric_add(c, (double)n);
}
static void add_index_evictions(void *ud, const char *algorithm, const char *reason, int64_t n) {
  server_ctx_t *ctx = ud;
  const char *lv[2] = {algorithm, reason};
  ic_metric_t *c = ic_metric_child(ctx->m.index_evictions, lv);
  if (c) ic_metric_add(c, (double)n);
}
static ic_index_eviction_t eviction_resolver(void *ud, const char *tenant) {
  return ic_policy_index_eviction(ud, tenant) == IC_POLICY_EVICT_LFU ? IC_INDEX_EVICT_LFU : IC_INDEX_EVICT_LRU;
}

/* ---- maintenance thread: TTL sweep every sweep interval, lazy reclaim in between ---- */
typedef struct maint {
  server_ctx_t *ctx;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop, started;
} maint_t;

/* The maintenance work (TTL sweep, reclaim, malloc trim) is throughput work that shares cores
 * with the completion-queue threads: at nice 10 a woken gRPC thread preempts it at once instead
 * of waiting out its slice, while a saturated server still gives it ~10% of a core, so sweeps
 * never starve (docs/performance.md, "LookupRoute tails"). */
#define MAINT_NICE 10

static void *maint_main(void *arg) {
  maint_t *mt = arg;
  if (setpriority(PRIO_PROCESS, (id_t)gettid(), MAINT_NICE) != 0)
    ic_log_debug("maintenance_nice_failed", IC_LI("nice", MAINT_NICE));
  int64_t interval = ic_index_sweep_interval_ns(mt->ctx->index);
  if (interval <= 0) interval = 60LL * 1000000000LL;
  int64_t next_sweep = ic_clock_monotonic_ns() + interval;
  pthread_mutex_lock(&mt->mu);
  while (!mt->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_cond_timedwait(&mt->cv, &mt->mu, &ts);
    if (mt->stop) break;
    pthread_mutex_unlock(&mt->mu);
    int64_t t0 = ic_clock_monotonic_ns();
    if (t0 >= next_sweep) {
      ic_index_evict_expired(mt->ctx->index);
      next_sweep = ic_clock_monotonic_ns() + interval;
    } else {
      ic_index_maintain(mt->ctx->index, 65536);
    }
    ic_index_predict_expire(mt->ctx->index); /* speculative entries live ~1 s */
    int64_t t1 = ic_clock_monotonic_ns();
    /* records and names nothing refers to any more (cleared tenants, models, replicas); hand
       the pages back (long names free whole pages inside the heap, which free() alone keeps) */
    size_t records = 0;
    if (ic_index_reclaim(mt->ctx->index, &records) > 0 || records > 0) malloc_trim(0);
    int64_t t2 = ic_clock_monotonic_ns();
    /* After a burst (a call flood, subscribers that left) give what malloc keeps free back to
     * the OS, so RSS returns to what the index and live calls need. */
    size_t freed = ic_mem_trim(SERVER_TRIM_MIN_FREE);
    int64_t t3 = ic_clock_monotonic_ns();
    if (freed) ic_log_debug("memory_trimmed", IC_LI("free_bytes", (int64_t)freed));
    ic_log_debug("maintenance_step", IC_LI("index_us", (t1 - t0) / 1000),
                 IC_LI("strings_us", (t2 - t1) / 1000), IC_LI("trim_us", (t3 - t2) / 1000));
    server_hub_publish_transport(mt->ctx->hub);
    pthread_mutex_lock(&mt->mu);
  }
  pthread_mutex_unlock(&mt->mu);
  return NULL;
}

int main(int argc, char **argv) {
  static server_ctx_t ctx_storage;
  server_ctx_t *ctx = &ctx_storage;
  ctx->version = ic_version;
  ctx->commit = ic_git_commit;
  int prc = server_flags_parse(&ctx->flags, argc, argv);
  if (prc == 1) return 0;
  if (prc) return 2;
  server_flags_t *f = &ctx->flags;
  /* Two malloc arenas: with one per thread, memory freed after a call flood stays stranded
   * in arenas malloc_trim cannot shrink (measured: 262 MB kept with the default, 20 MB with
   * two; docs/performance.md "Transport floods"). */
  ic_mem_limit_arenas(2);

  char buf[64];
  norm(f->log_format, buf, sizeof buf);
  ic_log_format_t fmt = IC_LOG_FMT_JSON;
  if (*buf && ic_log_parse_format(buf, &fmt) != 0) {
    fprintf(stderr, "unknown log format \"%s\" (want json|text)\n", f->log_format);
    return 2;
  }
  norm(f->log_level, buf, sizeof buf);
  ic_log_level_t lvl = IC_LOG_INFO;
  if (strcmp(buf, "warning") == 0) strcpy(buf, "warn");
  if (*buf && ic_log_parse_level(buf, &lvl) != 0) {
    fprintf(stderr, "unknown log level \"%s\" (want debug|info|warn|error)\n", f->log_level);
    return 2;
  }
  ic_log_set_format(fmt);
  ic_log_set_level(lvl);

  /* Signals are taken synchronously by the main thread (sigwait); every thread created from
   * here on inherits the blocked mask. SIGPIPE is ignored (peers may vanish mid-write). */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  char *owned = NULL;
  const char *auth_err = server_flags_validate_auth(f, &owned);
  if (auth_err) {
    fprintf(stderr, "%s\n", auth_err);
    free(owned);
    return 2;
  }
  if (!f->insecure_disable_auth) {
    if (server_auth_init(ctx) != 0) return 1;
    ic_log_info("controller_auth_enabled", IC_LS("expected_sa", f->allowed_controller_sa),
                IC_LS("controller_audience", f->controller_audience), IC_LS("policy_audience", f->policy_audience));
  } else {
    ic_log_warn("controller_auth_disabled",
                IC_LS("reason", "--insecure-disable-auth set; the controller listener accepts any caller"));
  }
  bool cert = f->tls_cert_file && *f->tls_cert_file, key = f->tls_key_file && *f->tls_key_file;
  if (cert != key) {
    fprintf(stderr, "server: --tls-cert-file and --tls-key-file must both be set or both be empty\n");
    return 2;
  }
  ctx->grpc_tls = cert && key;

  /* State: metrics, policy, hub, index, service. */
  ctx->metrics = ic_metrics_new();
  ctx->policy = ic_policy_store_new();
  if (!ctx->metrics || !ctx->policy || register_metrics(ctx) != 0 ||
      ic_metrics_add_process(ctx->metrics) != 0) {
    ic_log_error("serve_error", IC_LS("err", "out of memory"));
    return 1;
  }
  ic_metric_set(ic_metric_plain(ctx->m.grpc_tls_enabled), ctx->grpc_tls ? 1 : 0);
  int wrc = server_writer_auth_init(ctx);
  if (wrc) return wrc;
  ctx->hub = server_hub_new(ctx);
  ic_index_config_t icfg;
  ic_index_config_init(&icfg);
  static const char *const reserved[] = {IC_INDEX_PROBE_TENANT};
  icfg.reserved_tenants = reserved;
  icfg.cap_fair_share = !f->disable_cap_fair_share;
  icfg.n_reserved_tenants = 1;
  icfg.ttl_resolver = ic_policy_index_ttl;
  icfg.quota_resolver = ic_policy_index_quota;
  icfg.eviction_resolver = eviction_resolver;
  icfg.resolver_ud = ctx->policy;
  icfg.set_index_entries = set_index_entries;
  icfg.add_tenant_evictions = add_tenant_evictions;
  icfg.add_index_evictions = add_index_evictions;
  icfg.metrics_ud = ctx;
  icfg.predict_ttl_ns = (int64_t)(f->predict_ttl_ms > 0 ? f->predict_ttl_ms : 0) * 1000000;
  icfg.predict_max_entries = f->predict_max_entries;
  icfg.predict_weight = f->predict_weight;
  icfg.on_change = server_hub_on_change;
  icfg.on_change_flush = server_hub_on_change_flush;
  icfg.change_ud = ctx->hub;
  ctx->index = ic_index_create(&icfg);
  ic_index_load_cfg_t load;
  ic_index_load_cfg_init(&load);
  load.max_age_ns = (int64_t)(f->load_max_age_ms > 0 ? f->load_max_age_ms : 0) * 1000000;
  load.request_tokens = f->load_request_tokens;
  load.weight = f->load_weight;
  load.running_weight = f->load_running_weight;
  load.overload_factor = f->load_overload_factor;
  load.overload_slack = f->load_overload_slack;
  if (server_prompts_init(ctx) != 0) return 1;
  if (server_templates_init(ctx) != 0) return 1;
  ic_svc_config_t scfg = {.index = ctx->index,
                          .load = &load,
                          .policy = ctx->policy,
                          .engine_block_size = f->engine_block_size,
                          .max_identity_bytes =
                              f->max_identity_bytes > 0 ? f->max_identity_bytes : -1,
                          .lookup_calls = ctx->m.lookup_calls,
                          .lookup_latency = ctx->m.lookup_latency,
                          .prompt_encode = ctx->prompts ? server_prompt_encode : NULL,
                          .prompt_ud = ctx->prompts,
                          .render_template = server_render_template,
                          .render_ud = ctx};
  if (server_warmup_init(ctx) != 0) {
    ic_log_error("serve_error", IC_LS("err", "out of memory"));
    return 1;
  }
  scfg.on_report = server_warmup_on_report;
  scfg.report_ud = ctx;
  ctx->svc = ctx->index ? ic_svc_new(&scfg) : NULL;
  if (!ctx->hub || !ctx->index || !ctx->svc || server_predict_metrics_init(ctx) != 0) {
    ic_log_error("serve_error", IC_LS("err", "out of memory"));
    return 1;
  }

  /* gRPC listener (TLS keypair checked here: exit 1 on an unloadable pair). */
  char err[512];
  bool tls_err = false;
  ic_rpc_server_opts_t ro = {.threads = f->grpc_threads,
                             .max_recv_bytes = SERVER_MAX_RECV_MESSAGE,
                             .tls_cert_file = ctx->grpc_tls ? f->tls_cert_file : NULL,
                             .tls_key_file = ctx->grpc_tls ? f->tls_key_file : NULL,
                             .tls_client_ca_file = ctx->grpc_tls ? f->grpc_client_ca_file : NULL,
                             .max_concurrent_streams = f->grpc_max_concurrent_streams,
                             .max_streams = f->grpc_max_streams,
                             .timing_trailer = f->grpc_timing_trailer};
  ctx->grpc = ic_rpc_server_new(f->grpc_bind_address, &ro, err, sizeof err, &tls_err);
  if (!ctx->grpc && tls_err) {
    ic_log_error("grpc_tls_load", IC_LS("err", err));
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  ic_log_info("startup", IC_LS("version", ctx->version), IC_LS("commit", ctx->commit),
              IC_LS("grpc_addr", f->grpc_bind_address), IC_LB("grpc_tls", ctx->grpc_tls),
              IC_LS("http_addr", f->http_bind_address), IC_LS("snapshot_addr", f->snapshot_bind_address));
  if (!ctx->grpc) {
    ic_log_error("serve_error", IC_LS("err", err));
    return 1;
  }
  if (server_grpc_register(ctx) != 0) {
    ic_log_error("serve_error", IC_LS("err", "grpc: method registration failed"));
    ic_rpc_server_free(ctx->grpc);
    return 1;
  }
  if (server_http_start(ctx, err, sizeof err) != 0) {
    ic_log_error("serve_error", IC_LS("err", err));
    ic_rpc_server_free(ctx->grpc);
    return 1;
  }

  /* Serve. */
  ic_index_set_ready(ctx->index, true);
  ic_metric_set(ic_metric_plain(ctx->m.server_up), 1);
  ic_rpc_server_start(ctx->grpc);
  /* Ready (/readyz, gRPC health) now, or once the warm start is done (docs/ha.md). */
  server_warmup_start(ctx);
  maint_t mt = {.ctx = ctx};
  pthread_mutex_init(&mt.mu, NULL);
  pthread_cond_init(&mt.cv, NULL);
  mt.started = pthread_create(&mt.th, NULL, maint_main, &mt) == 0;
  if (mt.started) pthread_setname_np(mt.th, "ic-maintenance");

  int sig = 0;
  while (sigwait(&sigs, &sig) != 0) {
  }

  /* Graceful shutdown (docs/server.md, "Shutdown"). Later signals stay blocked, i.e. swallowed. */
  ic_log_info("graceful_shutdown_started");
  atomic_store(&ctx->stopping, true);
  server_warmup_stop(ctx);
  atomic_store(&ctx->ready, false);
  ic_index_set_ready(ctx->index, false);
  ic_rpc_server_set_serving(ctx->grpc, false);
  pthread_mutex_lock(&mt.mu);
  mt.stop = true;
  pthread_cond_broadcast(&mt.cv);
  pthread_mutex_unlock(&mt.mu);
  if (mt.started) pthread_join(mt.th, NULL);
  int cancelled = ic_rpc_server_shutdown(ctx->grpc, f->drain_timeout_s < 0 ? -1 : f->drain_timeout_s * 1000);
  if (cancelled > 0)
    ic_log_warn("grpc_drain_timeout", IC_LI("cancelled_calls", cancelled), IC_LI("drain_timeout_seconds", f->drain_timeout_s));
  server_http_stop(ctx, HTTP_SHUTDOWN_MS);
  ic_metric_set(ic_metric_plain(ctx->m.server_up), 0);
  ic_log_info("graceful_shutdown_done");

  ic_rpc_server_free(ctx->grpc);
  server_hub_free(ctx->hub);
  ic_svc_free(ctx->svc);
  server_writer_auth_free(ctx);
  server_prompts_free(ctx);
  server_templates_free(ctx);
  ic_index_destroy(ctx->index);
  ic_policy_store_free(ctx->policy);
  ic_warmstart_free(ctx->warm);
  ic_metrics_free(ctx->metrics);
  pthread_mutex_destroy(&mt.mu);
  pthread_cond_destroy(&mt.cv);
  return 0;
}
