/* Warm start wiring (docs/ha.md): the lib/warmstart tracker fed by lib/svc's report hook, the
 * thread that flips /readyz and gRPC health once the new replica has everyone's full state (or
 * the timeout passed), its metrics, and PUT /reporters on the controller listener. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http_internal.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"
#include "ic/rpc.h"
#include "ic/warmstart.h"

static pthread_t warm_thread;
static bool warm_thread_started;
static atomic_bool warm_stop;
static ic_metric_family_t *m_ready, *m_reporters, *m_seconds;

static void publish(server_ctx_t *ctx) {
  ic_warmstart_progress_t p;
  ic_warmstart_progress(ctx->warm, ic_clock_monotonic_us(), &p);
  ic_metric_set(ic_metric_child(m_reporters, (const char *[]){"expected"}), (double)p.expected);
  ic_metric_set(ic_metric_child(m_reporters, (const char *[]){"synced"}), (double)p.synced);
  ic_metric_set(ic_metric_plain(m_ready), p.ready ? 1 : 0);
  if (p.ready) ic_metric_set(ic_metric_plain(m_seconds), (double)p.ready_after_us / 1e6);
}

int server_warmup_init(server_ctx_t *ctx) {
  const server_flags_t *f = &ctx->flags;
  int64_t timeout = f->warm_start_timeout_ms > 0 ? (int64_t)f->warm_start_timeout_ms * 1000 : 0;
  int64_t window = f->warm_start_window_ms > 0 ? (int64_t)f->warm_start_window_ms * 1000 : 0;
  ctx->warm = ic_warmstart_new(ic_clock_monotonic_us(), window, timeout);
  const char *state[] = {"state"};
  m_ready = ic_metrics_gauge(ctx->metrics, "inferencecache_warm_start_ready",
                             "1 once this replica finished its warm start (docs/ha.md).", 0, NULL);
  m_reporters = ic_metrics_gauge(ctx->metrics, "inferencecache_warm_start_reporters",
                                 "Reporters the warm start waits for (expected) and those that "
                                 "sent their full state (synced).",
                                 1, state);
  m_seconds = ic_metrics_gauge(ctx->metrics, "inferencecache_warm_start_seconds",
                               "Seconds from start to ready (0 until ready).", 0, NULL);
  if (!ctx->warm || !m_ready || !m_reporters || !m_seconds) return IC_ENOMEM;
  publish(ctx);
  return 0;
}

void server_warmup_on_report(void *ud, const char *replica_id, bool full_state) {
  server_ctx_t *ctx = ud;
  ic_warmstart_heard(ctx->warm, replica_id, full_state, ic_clock_monotonic_us());
}

static void become_ready(server_ctx_t *ctx) {
  if (atomic_load(&ctx->stopping)) return;
  atomic_store(&ctx->ready, true);
  ic_rpc_server_set_serving(ctx->grpc, true);
  ic_warmstart_progress_t p;
  ic_warmstart_progress(ctx->warm, ic_clock_monotonic_us(), &p);
  publish(ctx);
  if (strcmp(p.reason, "disabled") != 0)
    ic_log_info("warm_start_done", IC_LS("reason", p.reason), IC_LI("expected", p.expected),
                IC_LI("synced", p.synced), IC_LI("after_ms", p.ready_after_us / 1000));
}

static void *warm_main(void *arg) {
  server_ctx_t *ctx = arg;
  int tick = 0;
  while (!atomic_load(&warm_stop)) {
    if (ic_warmstart_ready(ctx->warm, ic_clock_monotonic_us())) {
      become_ready(ctx);
      break;
    }
    if (++tick % 10 == 0) publish(ctx); /* progress gauges every ~0.5 s */
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

void server_warmup_start(server_ctx_t *ctx) {
  if (ic_warmstart_ready(ctx->warm, ic_clock_monotonic_us())) {
    become_ready(ctx);
    return;
  }
  ic_warmstart_progress_t p;
  ic_warmstart_progress(ctx->warm, ic_clock_monotonic_us(), &p);
  ic_log_info("warm_start_waiting", IC_LI("window_ms", ctx->flags.warm_start_window_ms),
              IC_LI("timeout_ms", ctx->flags.warm_start_timeout_ms));
  ic_rpc_server_set_serving(ctx->grpc, false);
  warm_thread_started = pthread_create(&warm_thread, NULL, warm_main, ctx) == 0;
  if (warm_thread_started) pthread_setname_np(warm_thread, "ic-warm-start");
  if (!warm_thread_started) become_ready(ctx); /* fail open: never stay unready for good */
}

void server_warmup_stop(server_ctx_t *ctx) {
  atomic_store(&warm_stop, true);
  if (warm_thread_started) pthread_join(warm_thread, NULL);
  warm_thread_started = false;
  (void)ctx; /* ctx->warm lives until main frees it: late reports may still reach the hook */
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

/* PUT /reporters {"replicas":["<pod>",...]}: the engine pods the controller injected a subscriber
 * into; a new replica waits for each one's full state (or a "-dp<N>" rank's). 204. */
static void h_reporters(ic_http_req_t *r, void *ud) {
  server_ctx_t *ctx = ud;
  size_t n;
  const char *body = ic_http_req_body(r, &n);
  if (ic_http_req_body_too_large(r)) {
    ic_http_reply_error(r, 413, "reporters body too large");
    return;
  }
  char err[256], msg[320];
  size_t count = 0;
  char **names = ic_warmstart_parse_reporters(body, n, &count, err, sizeof err);
  if (!names) {
    snprintf(msg, sizeof msg, "decode reporters: %s", err);
    ic_http_reply_error(r, 400, msg);
    return;
  }
  int rc = ic_warmstart_set_reporters(ctx->warm, (const char *const *)names, count);
  ic_warmstart_names_free(names);
  if (rc) {
    ic_http_reply_error(r, 500, "store reporters failed");
    return;
  }
  publish(ctx);
  ic_http_reply(r, 204, NULL, "", 0);
}

int server_http_reporters_route(server_ctx_t *ctx, ic_http_server_t *s) {
  return server_http_add_controller_route(ctx, s,
                                          (ic_http_route_t){.path = "/reporters",
                                                            .methods = "PUT",
                                                            .handler = h_reporters,
                                                            .max_body = IC_WARMSTART_MAX_BODY},
                                          SERVER_AUD_POLICY);
}

/* The /readyz body while warming up (ready replicas answer "ok"). */
void server_warmup_describe(server_ctx_t *ctx, ic_buf_t *out) {
  if (ctx->warm) ic_warmstart_describe(ctx->warm, ic_clock_monotonic_us(), out);
}
