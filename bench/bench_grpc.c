/* gRPC load generator: starts the real inferencecache-server on loopback (server and generator
 * on disjoint CPUs by default), fills its index over the wire (ReportCacheState) with 1 M
 * memberships over 16 replicas, measures the max rate of LookupRoute (128-block chains) and of
 * an empty handler carrying the same bytes, then open-loop latency (p50/p99/p99.9, from the
 * actual send and from the schedule) at 10/25/50/75% of each max, split into stages with the
 * server's timing trailer. The same load then runs against a gRPC-Go transport anchor
 * (bench/grpc_anchor, built when Go is installed). Prints JSON lines (docs/performance.md).
 *
 * Usage: bench_grpc [--server PATH | --target HOST:PORT] [--seconds N] [--inflight N]
 *                   [--memberships N] [--placement pinned|shared] [--fractions F,F,...]
 *                   [--latency-fraction F] [--anchor PATH|none] [--server-arg ARG]... [--rate R]
 *                   [--prompt-models DIR --prompt-model ID]
 * --rate R skips the max-rate phases and runs each method open-loop at R req/s (profiling).
 * --prompt-models DIR (the server's --tokenizer-models-dir) adds a closed-loop phase of
 * prompt_text lookups, --inflight at once, each a new ~12k-token prompt of model ID (default
 * Qwen/Qwen3-8B, i.e. DIR/Qwen/Qwen3-8B/tokenizer.json; cold prefix cache):
 * prompt_text_lookup_qps counts the tokenized answers per second, params say how many were
 * shed; then prompt_text_lookup_rtt_p50_us, one at a time with the prompt's prefix cached.
 * Defaults: server next to this binary (../src/server/inferencecache-server), anchor
 * ../bench/grpc-anchor when built, pinned on >= 2 CPUs, 3 s per phase, 32 calls in flight for
 * the max rate, 1,000,000 memberships, fractions 0.1,0.25,0.5,0.75. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/rpc.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"
#include "rpc_load.h"

#define LOOKUP_REQS 512
#define MAX_FRACTIONS 8
#define MAX_SERVER_ARGS 16

static int g_seconds = 3, g_inflight = 32;
static long g_memberships = 1000000;
static rl_placement_t g_pl;

static void emit(const char *name, double value, const char *unit, const char *extra) {
  printf(
      "{\"bench\":\"grpc\",\"name\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"params\":{\"replicas\":"
      "%d,"
      "\"memberships\":%ld,\"chain_blocks\":%d,\"inflight\":%d,\"seconds\":%d,\"placement\":\"%s\","
      "\"server_cpus\":\"%s\",\"client_cpus\":\"%s\"%s}}\n",
      name, value, unit, RL_REPLICAS, g_memberships, RL_CHAIN, g_inflight, g_seconds,
      g_pl.pinned ? "pinned" : "shared", g_pl.server_list, g_pl.client_list, extra ? extra : "");
  fflush(stdout);
}

/* ---- closed-loop max throughput with a pipeline ---- */
static double max_qps_for(ic_rpc_channel_t *ch, const char *method, ic_buf_t *reqs, int nreqs,
                          long *errors, const char *expect_code, int64_t duration_ns, long *calls,
                          double *secs_out) {
  ic_rpc_pipeline_t *p = ic_rpc_pipeline_new(ch, method);
  ic_buf_t resp = IC_BUF_INIT;
  long done = 0, k = 0;
  *errors = 0;
  int64_t t0 = ic_clock_monotonic_ns(), end = t0 + duration_ns;
  for (int i = 0; i < g_inflight; i++, k++)
    ic_rpc_pipeline_start(p, (const uint8_t *)reqs[k % nreqs].data, reqs[k % nreqs].len, 30000,
                          NULL);
  while (ic_rpc_pipeline_inflight(p) > 0) {
    void *tag;
    int st;
    ic_buf_reset(&resp);
    if (ic_rpc_pipeline_next(p, 30000, &tag, &st, &resp) != 1) break;
    done++;
    if (st != IC_RPC_OK)
      (*errors)++;
    else if (expect_code && (done & 1023) == 1) {
      Inferencecache__V1alpha1__LookupRouteResponse *r =
          inferencecache__v1alpha1__lookup_route_response__unpack(NULL, resp.len,
                                                                  (const uint8_t *)resp.data);
      if (!r || strcmp(r->reason_code, expect_code) != 0) (*errors)++;
      if (r) inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
    }
    if (ic_clock_monotonic_ns() < end) {
      ic_rpc_pipeline_start(p, (const uint8_t *)reqs[k % nreqs].data, reqs[k % nreqs].len, 30000,
                            NULL);
      k++;
    }
  }
  double secs = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
  ic_buf_free(&resp);
  ic_rpc_pipeline_free(p);
  if (calls) *calls += done;
  if (secs_out) *secs_out += secs;
  return (double)done / secs;
}

/* ---- prompt_text, closed loop ---- */

/* A new LookupRoute of a ~12k-token prompt (56 kB of English prose), its first line numbered so
 * no two share a cached prefix; warm: the same document first, the number in the question. */
static void prompt_request(const char *model, const char *prose, size_t plen, long k, bool warm,
                           ic_buf_t *out) {
  static char text[56000 + 256];
  int n = warm ? snprintf(text, 256, "Read the document below.\n")
               : snprintf(text, 256, "Request %ld: read the document below.\n", k);
  size_t body = plen < 56000 ? plen : 56000;
  memcpy(text + n, prose, body);
  snprintf(text + n + body, 128, "\nQuestion %ld: what does it say?", k);
  Inferencecache__V1alpha1__LookupRouteRequest q =
      INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.model_id = (char *)model;
  q.tenant_id = "bench";
  q.hash_scheme = "vllm";
  q.prompt_text = text;
  size_t len = inferencecache__v1alpha1__lookup_route_request__get_packed_size(&q);
  ic_buf_reset(out);
  ic_buf_reserve(out, len);
  inferencecache__v1alpha1__lookup_route_request__pack(&q, (uint8_t *)out->data);
  out->len = len;
}

/* g_inflight prompt_text lookups kept in flight for `duration_ns`: answers with token_ids
 * (tokenized) and without (shed) per second. */
static void prompt_text_rate(ic_rpc_channel_t *ch, const char *model, const char *prose,
                             size_t plen, int64_t duration_ns, double *served_s, double *shed_s,
                             long *errors, long *tokens) {
  ic_rpc_pipeline_t *p = ic_rpc_pipeline_new(ch, RL_METHOD_LOOKUP);
  ic_buf_t req = IC_BUF_INIT, resp = IC_BUF_INIT;
  long k = 0, served = 0, shed = 0;
  *errors = 0;
  int64_t t0 = ic_clock_monotonic_ns(), end = t0 + duration_ns;
  for (int i = 0; i < g_inflight; i++, k++) {
    prompt_request(model, prose, plen, k, false, &req);
    ic_rpc_pipeline_start(p, (const uint8_t *)req.data, req.len, 60000, NULL);
  }
  while (ic_rpc_pipeline_inflight(p) > 0) {
    void *tag;
    int st;
    ic_buf_reset(&resp);
    if (ic_rpc_pipeline_next(p, 60000, &tag, &st, &resp) != 1) break;
    Inferencecache__V1alpha1__LookupRouteResponse *r =
        st == IC_RPC_OK ? inferencecache__v1alpha1__lookup_route_response__unpack(
                              NULL, resp.len, (const uint8_t *)resp.data)
                        : NULL;
    if (!r)
      (*errors)++;
    else if (r->n_token_ids > 0)
      served++, *tokens = (long)r->n_token_ids;
    else
      shed++;
    if (r) inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
    if (ic_clock_monotonic_ns() < end) {
      prompt_request(model, prose, plen, k++, false, &req);
      ic_rpc_pipeline_start(p, (const uint8_t *)req.data, req.len, 60000, NULL);
    }
  }
  double secs = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
  *served_s = (double)served / secs;
  *shed_s = (double)shed / secs;
  ic_buf_free(&req);
  ic_buf_free(&resp);
  ic_rpc_pipeline_free(p);
}

/* 56 kB of English prose: the GPL's text, repeated. */
static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* One prompt_text lookup at a time, its long prefix cached (a new question each time): the p50
 * round trip, tokenizer hand-over included. */
static double prompt_text_warm_p50_us(ic_rpc_channel_t *ch, const char *model, const char *prose,
                                      size_t plen, int n) {
  ic_buf_t req = IC_BUF_INIT, resp = IC_BUF_INIT;
  int64_t *us = calloc((size_t)n, sizeof *us);
  int got = 0;
  for (int i = -1; i < n; i++) { /* i = -1 fills the prefix cache */
    prompt_request(model, prose, plen, i + 1, true, &req);
    ic_buf_reset(&resp);
    int st = -1;
    int64_t t0 = ic_clock_monotonic_ns();
    if (ic_rpc_unary(ch, RL_METHOD_LOOKUP, (const uint8_t *)req.data, req.len, 30000, &resp, &st,
                     NULL) == 0 &&
        st == IC_RPC_OK && i >= 0)
      us[got++] = (ic_clock_monotonic_ns() - t0) / 1000;
  }
  qsort(us, (size_t)got, sizeof *us, cmp_i64);
  double p50 = got ? (double)us[got / 2] : 0;
  free(us);
  ic_buf_free(&req);
  ic_buf_free(&resp);
  return p50;
}

static char *read_prose(size_t *n) {
  FILE *f = fopen("/usr/share/common-licenses/GPL-3", "rb");
  if (!f) return NULL;
  enum { WANT = 56000 };
  char *b = malloc(WANT);
  size_t got = b ? fread(b, 1, WANT, f) : 0;
  fclose(f);
  if (!b || got < 1000) {
    free(b);
    return NULL;
  }
  for (size_t i = got; i < WANT; i++)
    b[i] = b[i % got];
  *n = WANT;
  return b;
}

/* ---- open loop ---- */

/* One scheduled call: when it should have started and when it did. */
typedef struct sched_call {
  int64_t sched, sent;
} sched_call_t;

typedef struct sender {
  ic_rpc_pipeline_t *p;
  ic_buf_t *reqs;
  int nreqs;
  sched_call_t *calls;
  size_t ncalls;
  int64_t t0, interval;
  atomic_size_t started;
} sender_t;

/* Starts calls on a fixed schedule (absolute sleeps); a sender that fell behind starts the
 * late calls at once, and their latency from the schedule shows it. */
static void *sender_main(void *arg) {
  sender_t *s = arg;
  /* The default 50 us timer slack would add itself to every scheduled start. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  for (size_t k = 0; k < s->ncalls; k++) {
    int64_t next = s->t0 + (int64_t)k * s->interval;
    struct timespec ts = {.tv_sec = (time_t)(next / 1000000000LL),
                          .tv_nsec = (long)(next % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    s->calls[k].sched = next;
    s->calls[k].sent = ic_clock_monotonic_ns();
    if (ic_rpc_pipeline_start(s->p, (const uint8_t *)s->reqs[k % (size_t)s->nreqs].data,
                              s->reqs[k % (size_t)s->nreqs].len, 30000, &s->calls[k]) != 0)
      s->calls[k].sent = 0;
  }
  atomic_store(&s->started, s->ncalls);
  return NULL;
}

enum { ST_GENERATOR, ST_TO_SERVER, ST_HANDLER, ST_TO_CLIENT, NSTAGES };
static const char *const STAGE_NAMES[NSTAGES] = {"generator", "to_server", "handler", "to_client"};

typedef struct lat_result {
  double rate_achieved;
  long samples, errors, timed; /* timed: samples with a server timing trailer */
  double p50, p99, p999;       /* from the actual send */
  double s50, s99, s999;       /* from the schedule */
  double max_sched;
  double stage_p50[NSTAGES], stage_tail[NSTAGES]; /* tail: mean over calls >= p99 (schedule) */
} lat_result_t;

static void latency_at(ic_rpc_channel_t *ch, const char *method, ic_buf_t *reqs, int nreqs,
                       double rate, lat_result_t *out) {
  memset(out, 0, sizeof *out);
  ic_rpc_pipeline_t *p = ic_rpc_pipeline_new(ch, method);
  size_t n = (size_t)(rate * g_seconds);
  sender_t s = {
      .p = p, .reqs = reqs, .nreqs = nreqs, .ncalls = n, .interval = (int64_t)(1e9 / rate)};
  s.calls = calloc(n + 1, sizeof *s.calls);
  int64_t *lat = calloc(n + 1, sizeof *lat), *slat = calloc(n + 1, sizeof *slat), *stage[NSTAGES];
  for (int i = 0; i < NSTAGES; i++)
    stage[i] = calloc(n + 1, sizeof(int64_t));
  size_t got = 0, timed = 0;
  s.t0 = ic_clock_monotonic_ns() + 2000000;
  pthread_t th;
  pthread_create(&th, NULL, sender_main, &s);
  for (;;) {
    void *tag;
    int st;
    int rc = ic_rpc_pipeline_next(p, 100, &tag, &st, NULL);
    if (rc == 1) {
      int64_t now = ic_clock_monotonic_ns();
      sched_call_t *c = tag;
      if (st != IC_RPC_OK) {
        out->errors++;
        continue;
      }
      lat[got] = now - c->sent;
      slat[got] = now - c->sched;
      char v[96];
      long long arrive, h0, h1;
      if (ic_rpc_pipeline_last_trailer(p, IC_RPC_TIMING_TRAILER, v, sizeof v) == 0 &&
          sscanf(v, "%lld,%lld,%lld", &arrive, &h0, &h1) == 3) {
        stage[ST_GENERATOR][timed] = c->sent - c->sched;
        stage[ST_TO_SERVER][timed] = arrive - c->sent;
        stage[ST_HANDLER][timed] = h1 - arrive;
        stage[ST_TO_CLIENT][timed] = now - h1;
        timed++;
      }
      got++;
    } else if (atomic_load(&s.started) == n && ic_rpc_pipeline_inflight(p) == 0) {
      break;
    } else if (rc == 0 && ic_rpc_pipeline_inflight(p) == 0) {
      usleep(100);
    }
  }
  pthread_join(th, NULL);
  double span = (double)(ic_clock_monotonic_ns() - s.t0) / 1e9;
  out->rate_achieved = span > 0 ? (double)got / span : 0;
  /* The tail split: stages of the calls at or past the p99 from the schedule. Needs the
   * unsorted order of slat, so it is computed before sorting. */
  if (timed == got && got > 0) {
    int64_t *tmp = malloc(got * sizeof *tmp);
    memcpy(tmp, slat, got * sizeof *tmp);
    qsort(tmp, got, sizeof *tmp, rl_cmp_i64);
    int64_t thr = (int64_t)(rl_quantile_us(tmp, got, 0.99) * 1000.0);
    free(tmp);
    double sum[NSTAGES] = {0};
    long cnt = 0;
    for (size_t i = 0; i < got; i++)
      if (slat[i] >= thr) {
        for (int k = 0; k < NSTAGES; k++)
          sum[k] += (double)stage[k][i];
        cnt++;
      }
    for (int k = 0; k < NSTAGES; k++)
      out->stage_tail[k] = cnt ? sum[k] / (double)cnt / 1000.0 : 0;
  }
  for (int k = 0; k < NSTAGES; k++) {
    qsort(stage[k], timed, sizeof(int64_t), rl_cmp_i64);
    out->stage_p50[k] = rl_quantile_us(stage[k], timed, 0.5);
    free(stage[k]);
  }
  qsort(lat, got, sizeof *lat, rl_cmp_i64);
  qsort(slat, got, sizeof *slat, rl_cmp_i64);
  out->p50 = rl_quantile_us(lat, got, 0.5);
  out->p99 = rl_quantile_us(lat, got, 0.99);
  out->p999 = rl_quantile_us(lat, got, 0.999);
  out->s50 = rl_quantile_us(slat, got, 0.5);
  out->s99 = rl_quantile_us(slat, got, 0.99);
  out->s999 = rl_quantile_us(slat, got, 0.999);
  out->max_sched = rl_quantile_us(slat, got, 1.0);
  out->samples = (long)got;
  out->timed = (long)timed;
  free(lat);
  free(slat);
  free(s.calls);
  ic_rpc_pipeline_free(p);
}

static void emit_latency(const char *prefix, double fraction, double rate, const lat_result_t *r) {
  char name[128], extra[256];
  snprintf(extra, sizeof extra,
           ",\"fraction\":%.2f,\"rate\":%.0f,\"achieved_rate\":%.0f,\"samples\":%ld,\"errors\":%ld,"
           "\"max_from_schedule_us\":%.0f",
           fraction, rate, r->rate_achieved, r->samples, r->errors, r->max_sched);
  const struct {
    const char *suffix;
    double v;
  } rows[] = {{"p50_us", r->p50},
              {"p99_us", r->p99},
              {"p999_us", r->p999},
              {"p50_from_schedule_us", r->s50},
              {"p99_from_schedule_us", r->s99},
              {"p999_from_schedule_us", r->s999}};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    snprintf(name, sizeof name, "%s_%s", prefix, rows[i].suffix);
    emit(name, rows[i].v, "us", extra);
  }
  if (r->timed == 0) return;
  /* Where the time goes: generator lag (schedule -> send), client send -> server thread,
   * server thread -> handler end, handler end -> client receive. p50 over all calls and the
   * mean over the slowest 1% (>= p99 from the schedule). */
  for (int k = 0; k < NSTAGES; k++) {
    snprintf(name, sizeof name, "%s_stage_%s_p50_us", prefix, STAGE_NAMES[k]);
    emit(name, r->stage_p50[k], "us", extra);
    snprintf(name, sizeof name, "%s_stage_%s_tail_us", prefix, STAGE_NAMES[k]);
    emit(name, r->stage_tail[k], "us", extra);
  }
}

/* Max rates of LookupRoute and the empty handler, alternating 200 ms slices so load swings on
 * a shared machine hit both sides of the ratio alike. */
static void max_rates(ic_rpc_channel_t *ch, ic_buf_t *lreq, ic_buf_t *ereq, const char *expect,
                      double *lq, double *eq, long *errs_l, long *errs_e) {
  long ecalls = 0, lcalls = 0, e1 = 0, l1 = 0;
  double esecs = 0, lsecs = 0;
  for (int round = 0; round < 5 * g_seconds; round++) {
    max_qps_for(ch, RL_METHOD_EMPTY, ereq, 1, &e1, NULL, 200000000LL, &ecalls, &esecs);
    *errs_e += e1;
    max_qps_for(ch, RL_METHOD_LOOKUP, lreq, LOOKUP_REQS, &l1, expect, 200000000LL, &lcalls, &lsecs);
    *errs_l += l1;
  }
  *eq = (double)ecalls / esecs;
  *lq = (double)lcalls / lsecs;
}

static ic_rpc_channel_t *connect_to(const char *target) {
  ic_rpc_channel_t *ch = ic_rpc_channel_new(target, NULL);
  if (ch && rl_connect_ready(ch, 30000) == 0) return ch;
  ic_rpc_channel_free(ch);
  return NULL;
}

/* The transport anchor: a gRPC-Go server with the same two methods (fixed answers), on the
 * server's CPUs, driven at the same rates as ours (see below). */
static int run_anchor(const char *anchor, ic_buf_t *lreq, ic_buf_t *ereq, const double *fractions,
                      int nf, double our_lq, double our_eq) {
  int port = rl_free_port();
  char addr[64], target[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  snprintf(target, sizeof target, "127.0.0.1:%d", port);
  const char *argv[] = {anchor, "--addr", addr, NULL};
  pid_t pid = rl_spawn(argv, g_pl.pinned ? &g_pl.server : NULL);
  ic_rpc_channel_t *ch = connect_to(target);
  if (!ch) {
    fprintf(stderr, "bench_grpc: the anchor %s did not become ready\n", anchor);
    rl_stop(pid);
    return 1;
  }
  long errs_l = 0, errs_e = 0;
  double lq, eq;
  max_qps_for(ch, RL_METHOD_EMPTY, ereq, 1, &errs_e, NULL, 1000000000LL, NULL, NULL); /* warm-up */
  errs_e = 0;
  max_rates(ch, lreq, ereq, NULL, &lq, &eq, &errs_l, &errs_e);
  char extra[128];
  snprintf(extra, sizeof extra, ",\"server\":\"grpc-go\",\"errors\":%ld", errs_l);
  emit("anchor_lookup_route_qps", lq, "req/s", extra);
  snprintf(extra, sizeof extra, ",\"server\":\"grpc-go\",\"errors\":%ld", errs_e);
  emit("anchor_empty_handler_qps", eq, "req/s", extra);
  /* The same absolute rate as ours where the anchor can carry it, else the same fraction of
   * its own max (a rate past its max would measure queue growth, not the transport). */
  for (int i = 0; i < nf; i++) {
    lat_result_t r;
    double lr = fractions[i] * (our_lq < lq ? our_lq : lq),
           er = fractions[i] * (our_eq < eq ? our_eq : eq);
    latency_at(ch, RL_METHOD_LOOKUP, lreq, LOOKUP_REQS, lr, &r);
    emit_latency("anchor_lookup_route", fractions[i], lr, &r);
    latency_at(ch, RL_METHOD_EMPTY, ereq, 1, er, &r);
    emit_latency("anchor_empty_handler", fractions[i], er, &r);
  }
  ic_rpc_channel_free(ch);
  rl_stop(pid);
  return errs_l || errs_e ? 2 : 0;
}

static int parse_fractions(const char *list, double *out) {
  int n = 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n < MAX_FRACTIONS;
       t = strtok_r(NULL, ",", &save)) {
    double f = atof(t);
    if (f <= 0 || f > 1) return -1;
    out[n++] = f;
  }
  return n;
}

int main(int argc, char **argv) {
  char server[PATH_MAX] = "", anchor[PATH_MAX] = "";
  const char *attach = NULL, *placement = NULL, *fraction_list = "0.1,0.25,0.5,0.75";
  const char *prompt_model = "Qwen/Qwen3-8B";
  char models_arg[PATH_MAX + 32] = "";
  double fixed_rate = 0; /* --rate R: skip the max-rate phases, open loop at R req/s only */
  const char *server_args[MAX_SERVER_ARGS + 2] = {"--grpc-timing-trailer"};
  int nserver_args = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--server") && i + 1 < argc)
      snprintf(server, sizeof server, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--anchor") && i + 1 < argc)
      snprintf(anchor, sizeof anchor, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      g_seconds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--inflight") && i + 1 < argc)
      g_inflight = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--memberships") && i + 1 < argc)
      g_memberships = atol(argv[++i]);
    else if (!strcmp(argv[i], "--target") && i + 1 < argc)
      attach = argv[++i];
    else if (!strcmp(argv[i], "--placement") && i + 1 < argc)
      placement = argv[++i];
    else if (!strcmp(argv[i], "--fractions") && i + 1 < argc)
      fraction_list = argv[++i];
    else if (!strcmp(argv[i], "--rate") && i + 1 < argc)
      fixed_rate = atof(argv[++i]);
    else if (!strcmp(argv[i], "--latency-fraction") && i + 1 < argc)
      fraction_list = argv[++i];
    else if (!strcmp(argv[i], "--server-arg") && i + 1 < argc && nserver_args < MAX_SERVER_ARGS)
      server_args[nserver_args++] = argv[++i];
    else if (!strcmp(argv[i], "--prompt-models") && i + 1 < argc &&
             nserver_args < MAX_SERVER_ARGS) {
      snprintf(models_arg, sizeof models_arg, "--tokenizer-models-dir=%s", argv[++i]);
      server_args[nserver_args++] = models_arg;
    } else if (!strcmp(argv[i], "--prompt-model") && i + 1 < argc)
      prompt_model = argv[++i];
    else {
      fprintf(
          stderr,
          "bench_grpc: unknown or incomplete option %s (see the header of bench/bench_grpc.c)\n",
          argv[i]);
      return 1;
    }
  }
  server_args[nserver_args] = NULL;
  if (g_seconds <= 0) g_seconds = 3;
  if (g_inflight <= 0) g_inflight = 32;
  double fractions[MAX_FRACTIONS];
  int nf = parse_fractions(fraction_list, fractions);
  if (nf <= 0) {
    fprintf(stderr, "bench_grpc: --fractions wants numbers in (0, 1], e.g. 0.1,0.25,0.5,0.75\n");
    return 1;
  }
  if (rl_placement_init(&g_pl, placement) != 0) {
    fprintf(stderr, "bench_grpc: --placement is pinned or shared\n");
    return 1;
  }
  if (!*server &&
      rl_sibling_path("../src/server/inferencecache-server", server, sizeof server) != 0)
    return 1;
  if (!*anchor) rl_sibling_path("grpc-anchor", anchor, sizeof anchor);
  if (!strcmp(anchor, "none")) anchor[0] = '\0';
  if (*anchor && access(anchor, X_OK) != 0) {
    fprintf(stderr,
            "bench_grpc: no transport anchor at %s (needs Go: cmake --build <build> --target "
            "grpc-anchor); "
            "skipping the anchor figures\n",
            anchor);
    anchor[0] = '\0';
  }
  if (!attach && access(server, X_OK) != 0) {
    fprintf(stderr, "bench_grpc: server binary not found at %s (use --server)\n", server);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  /* The server is forked onto its CPUs first; this process (and the gRPC threads it creates
   * later) then moves to the generator's. With --target the caller places the server. */
  int port = rl_free_port();
  pid_t pid =
      attach ? -1 : rl_start_server(server, port, server_args, g_pl.pinned ? &g_pl.server : NULL);
  rl_placement_enter_client(&g_pl);
  if (attach) /* the caller placed the server: say so instead of naming CPUs it may not use */
    snprintf(g_pl.server_list, sizeof g_pl.server_list, "external");
  char target[128];
  if (attach)
    snprintf(target, sizeof target, "%s", attach);
  else
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
  int rc = 1;
  ic_rpc_channel_t *ch = connect_to(target);
  if (!ch) {
    fprintf(stderr, "bench_grpc: server did not become ready\n");
    rl_stop(pid);
    return 1;
  }

  /* 1. ingest over the wire */
  long chains_per_replica = g_memberships / (RL_REPLICAS * RL_CHAIN);
  if (chains_per_replica < 1) chains_per_replica = 1;
  enum { WRITERS = 4 };
  rl_writer_t args[WRITERS];
  pthread_t th[WRITERS];
  int64_t t0 = ic_clock_monotonic_ns();
  for (int i = 0; i < WRITERS; i++) {
    args[i] = (rl_writer_t){.ch = ch,
                            .r0 = i * RL_REPLICAS / WRITERS,
                            .r1 = (i + 1) * RL_REPLICAS / WRITERS,
                            .chains = chains_per_replica};
    pthread_create(&th[i], NULL, rl_writer_main, &args[i]);
  }
  long blocks = 0;
  for (int i = 0; i < WRITERS; i++) {
    pthread_join(th[i], NULL);
    blocks += args[i].blocks;
    if (args[i].status != 0)
      fprintf(stderr, "bench_grpc: report stream %d ended with status %d\n", i, args[i].status);
  }
  double secs = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
  char extra[256];
  snprintf(extra, sizeof extra, ",\"writers\":%d,\"blocks\":%ld", WRITERS, blocks);
  emit("report_blocks_per_s", (double)blocks / secs, "blocks/s", extra);

  /* 2. requests */
  ic_buf_t lreq[LOOKUP_REQS], hreq[1];
  for (int i = 0; i < LOOKUP_REQS; i++) {
    ic_buf_init(&lreq[i]);
    rl_lookup_request((int)(rl_splitmix((uint64_t)i) % RL_REPLICAS),
                      (long)(rl_splitmix((uint64_t)i * 7 + 1) % (uint64_t)chains_per_replica),
                      &lreq[i]);
  }
  /* The transport ceiling: LookupPDRoute, a stub on the same rpc layer, fed a request of the same
   * size on the wire as a 128-block LookupRoute (one bytes field), so both carry equal bytes. */
  ic_buf_init(&hreq[0]);
  {
    uint8_t *pad = calloc(1, lreq[0].len);
    Inferencecache__V1alpha1__LookupPDRouteRequest q =
        INFERENCECACHE__V1ALPHA1__LOOKUP_PDROUTE_REQUEST__INIT;
    q.model_id = "m";
    q.tenant_id = "bench";
    q.prefix_hash = (ProtobufCBinaryData){lreq[0].len > 32 ? lreq[0].len - 32 : 1, pad};
    size_t n = inferencecache__v1alpha1__lookup_pdroute_request__get_packed_size(&q);
    ic_buf_reserve(&hreq[0], n);
    inferencecache__v1alpha1__lookup_pdroute_request__pack(&q, (uint8_t *)hreq[0].data);
    hreq[0].len = n;
    free(pad);
  }
  ic_buf_t zreq = IC_BUF_INIT;
  ic_buf_append(&zreq, "", 0); /* HealthCheckRequest{}: zero bytes */

  long errs_e = 0, errs_l = 0, errs_z = 0, lat_errors = 0;
  if (fixed_rate > 0) {
    /* Profiling mode: one open-loop phase per method at the given rate ("fraction": 0). */
    lat_result_t r;
    latency_at(ch, RL_METHOD_LOOKUP, lreq, LOOKUP_REQS, fixed_rate, &r);
    emit_latency("lookup_route", 0, fixed_rate, &r);
    lat_errors += r.errors;
    latency_at(ch, RL_METHOD_EMPTY, hreq, 1, fixed_rate, &r);
    emit_latency("empty_handler", 0, fixed_rate, &r);
    lat_errors += r.errors;
    anchor[0] = '\0';
    goto done;
  }
  int64_t dur = (int64_t)g_seconds * 1000000000LL;
  max_qps_for(ch, RL_METHOD_HEALTH, &zreq, 1, &errs_z, NULL, dur, NULL, NULL); /* warm-up */
  double zq = max_qps_for(ch, RL_METHOD_HEALTH, &zreq, 1, &errs_z, NULL, dur, NULL, NULL);
  double eq, lq;
  max_rates(ch, lreq, hreq, "PREFIX_MATCH", &lq, &eq, &errs_l, &errs_e);
  snprintf(extra, sizeof extra, ",\"errors\":%ld,\"request_bytes\":%zu", errs_e, hreq[0].len);
  emit("empty_handler_qps", eq, "req/s", extra);
  snprintf(extra, sizeof extra, ",\"errors\":%ld,\"request_bytes\":0", errs_z);
  emit("empty_handler_zero_payload_qps", zq, "req/s", extra);
  snprintf(extra, sizeof extra, ",\"errors\":%ld,\"request_bytes\":%zu", errs_l, lreq[0].len);
  emit("lookup_route_qps", lq, "req/s", extra);
  emit("lookup_vs_empty_ratio", eq > 0 ? lq / eq : 0, "ratio", NULL);

  /* 3. open-loop latency at fractions of each max rate */
  for (int i = 0; i < nf; i++) {
    lat_result_t r;
    latency_at(ch, RL_METHOD_LOOKUP, lreq, LOOKUP_REQS, lq * fractions[i], &r);
    emit_latency("lookup_route", fractions[i], lq * fractions[i], &r);
    lat_errors += r.errors;
    latency_at(ch, RL_METHOD_EMPTY, hreq, 1, eq * fractions[i], &r);
    emit_latency("empty_handler", fractions[i], eq * fractions[i], &r);
    lat_errors += r.errors;
  }

  /* 3b. prompt_text lookups (--prompt-models) */
  if (*models_arg) {
    size_t plen = 0;
    char *prose = read_prose(&plen);
    if (!prose) {
      fprintf(stderr, "bench_grpc: no /usr/share/common-licenses/GPL-3 for the prompt text\n");
    } else {
      double served_s, shed_s;
      long perr = 0, ptok = 0;
      prompt_text_rate(ch, prompt_model, prose, plen, dur, &served_s, &shed_s, &perr, &ptok);
      snprintf(extra, sizeof extra,
               ",\"model\":\"%s\",\"tokens\":%ld,\"shed_per_s\":%.1f,\"errors\":%ld", prompt_model,
               ptok, shed_s, perr);
      emit("prompt_text_lookup_qps", served_s, "req/s", extra);
      snprintf(extra, sizeof extra, ",\"model\":\"%s\",\"cache\":\"warm\",\"runs\":200",
               prompt_model);
      emit("prompt_text_lookup_rtt_p50_us",
           prompt_text_warm_p50_us(ch, prompt_model, prose, plen, 200), "us", extra);
      lat_errors += perr;
      free(prose);
    }
  }
done:
  ic_rpc_channel_free(ch);
  ch = NULL;
  rl_stop(pid); /* the anchor gets the server's CPUs to itself */
  pid = -1;
  rc = (errs_e || errs_l || errs_z || lat_errors) ? 2 : 0;

  /* 4. the transport anchor */
  if (*anchor && run_anchor(anchor, lreq, hreq, fractions, nf, lq, eq) != 0 && rc == 0) rc = 2;

  for (int i = 0; i < LOOKUP_REQS; i++)
    ic_buf_free(&lreq[i]);
  ic_buf_free(&hreq[0]);
  ic_buf_free(&zreq);
  return rc;
}
