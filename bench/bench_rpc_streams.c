/* Stream-subscriber load: starts the real inferencecache-server once per phase, opens N idle
 * StreamCacheEvents subscribers (streams that never read), ingests a fixed number of blocks over
 * the wire while an open-loop LookupRoute load runs, then closes the subscribers and samples the
 * server's RSS. Phases: no subscribers, N subscribed to everything, N filtered on a model that is
 * never written. Prints JSON lines (docs/performance.md, "Stream subscribers").
 *
 * Usage: bench_rpc_streams [--server PATH] [--subscribers N] [--blocks N] [--warmup-blocks N]
 *                          [--lookup-rate R] [--phases none,all,other] [--server-arg ARG]...
 * Defaults: server next to this binary, 1000 subscribers, 131,072 warm-up then 524,288 measured
 * blocks, 2000 lookups/s. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/rpc.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"
#include "rpc_load.h"

#define REPLICAS RL_REPLICAS
#define CHAIN RL_CHAIN
#define WRITERS 4
#define STREAMS_PER_CHANNEL 100
#define LOOKUP_REQS 256
#define MAX_SERVER_ARGS 16

static const char *METHOD_EVENTS = "/inferencecache.v1alpha1.InferenceCache/StreamCacheEvents";
static const char *METHOD_LOOKUP = RL_METHOD_LOOKUP;

static int g_subs = 1000;
static long g_blocks = 1L << 19;
static long g_warmup = 1L << 17;
static double g_lookup_rate = 2000;
static const char *g_server_args[MAX_SERVER_ARGS];
static int g_nserver_args;

static pid_t start_server(const char *path, int gport) {
  const char *extra[MAX_SERVER_ARGS + 1];
  for (int i = 0; i < g_nserver_args; i++)
    extra[i] = g_server_args[i];
  extra[g_nserver_args] = NULL;
  return rl_start_server(path, gport, extra, NULL);
}

static double rss_mb(pid_t pid) {
  char p[64], line[256];
  snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
  FILE *f = fopen(p, "r");
  if (!f) return -1;
  double kb = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
  fclose(f);
  return kb / 1024.0;
}

/* CPU seconds (user + system) the process has used: the server's cost per block, which unlike
 * the ingest rate hardly depends on what else the machine runs. */
static double cpu_s(pid_t pid) {
  char p[64];
  snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
  ic_buf_t buf = IC_BUF_INIT;
  if (ic_buf_read_file(p, 4096, &buf, NULL) != 0) return -1;
  const char *q = strrchr(buf.data, ')'); /* the command name may hold spaces */
  unsigned long ut = 0, st = 0;
  int ok = q && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2;
  ic_buf_free(&buf);
  return ok ? (double)(ut + st) / (double)sysconf(_SC_CLK_TCK) : -1;
}

static void emit(const char *phase, const char *name, double value, const char *unit,
                 const char *extra) {
  printf("{\"bench\":\"rpc_streams\",\"name\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"params\":{"
         "\"phase\":\"%s\","
         "\"subscribers\":%d,\"blocks\":%ld,\"chain_blocks\":%d,\"writers\":%d,\"lookup_rate\":%."
         "0f%s}}\n",
         name, value, unit, phase, strcmp(phase, "none") ? g_subs : 0, g_blocks, CHAIN, WRITERS,
         g_lookup_rate, extra ? extra : "");
  fflush(stdout);
}

/* ---- open-loop lookups while ingest runs ---- */
typedef struct looker {
  ic_rpc_channel_t *ch;
  ic_buf_t reqs[LOOKUP_REQS];
  atomic_int stop;
  int64_t *lat;
  size_t n, cap;
  long errors;
} looker_t;

static void build_lookups(looker_t *l, long chains) {
  for (int i = 0; i < LOOKUP_REQS; i++) {
    ic_buf_init(&l->reqs[i]);
    rl_lookup_request((int)(rl_splitmix((uint64_t)i) % REPLICAS),
                      (long)(rl_splitmix((uint64_t)i * 7 + 1) % (uint64_t)chains), &l->reqs[i]);
  }
}

/* One call at a time on a fixed schedule: a call that takes longer than the interval delays
 * the next, and its latency counts from its scheduled start (no coordinated omission). */
static void *looker_main(void *p) {
  looker_t *l = p;
  int64_t interval = (int64_t)(1e9 / g_lookup_rate), next = ic_clock_monotonic_ns();
  ic_buf_t resp = IC_BUF_INIT;
  for (long k = 0; !atomic_load(&l->stop); k++, next += interval) {
    int64_t now = ic_clock_monotonic_ns();
    if (next > now) {
      struct timespec ts = {.tv_sec = (time_t)(next / 1000000000LL),
                            .tv_nsec = (long)(next % 1000000000LL)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
      }
    }
    int st = -1;
    ic_buf_reset(&resp);
    ic_buf_t *q = &l->reqs[k % LOOKUP_REQS];
    if (ic_rpc_unary(l->ch, METHOD_LOOKUP, (const uint8_t *)q->data, q->len, 30000, &resp, &st,
                     NULL) != 0 ||
        st != IC_RPC_OK)
      l->errors++;
    int64_t done = ic_clock_monotonic_ns();
    if (l->n == l->cap) {
      l->cap = l->cap ? l->cap * 2 : 4096;
      l->lat = realloc(l->lat, l->cap * sizeof *l->lat);
    }
    l->lat[l->n++] = done - next;
    if (done > next + interval) next = done - interval; /* far behind: restart the schedule */
  }
  ic_buf_free(&resp);
  return NULL;
}

/* One phase: kind "none" (no subscribers), "all" (subscribed to everything), "other" (filtered
 * on a model that is never written). Returns 0 or non-zero on a failed phase. */
static int run_phase(const char *server, const char *kind) {
  int port = rl_free_port();
  pid_t pid = start_server(server, port);
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", port);
  ic_rpc_channel_t *ch = ic_rpc_channel_new(target, NULL);
  int rc = 1, nsubs = strcmp(kind, "none") ? g_subs : 0;
  int nch = (nsubs + STREAMS_PER_CHANNEL - 1) / STREAMS_PER_CHANNEL;
  ic_rpc_channel_t **sch = calloc((size_t)nch + 1, sizeof *sch);
  ic_rpc_reader_t **subs = calloc((size_t)nsubs + 1, sizeof *subs);
  if (rl_connect_ready(ch, 30000) != 0) {
    fprintf(stderr, "bench_rpc_streams: server did not become ready\n");
    goto out;
  }
  double rss0 = rss_mb(pid);
  uint8_t req[64];
  size_t reqlen = 0;
  if (!strcmp(kind, "other")) {
    Inferencecache__V1alpha1__StreamEventsRequest q =
        INFERENCECACHE__V1ALPHA1__STREAM_EVENTS_REQUEST__INIT;
    q.model_id = "never-written";
    reqlen = inferencecache__v1alpha1__stream_events_request__pack(&q, req);
  }
  for (int i = 0; i < nch; i++) {
    sch[i] = ic_rpc_channel_new(target, NULL);
    rl_connect_ready(sch[i], 30000);
  }
  for (int i = 0; i < nsubs; i++)
    subs[i] = ic_rpc_reader_open(sch[i / STREAMS_PER_CHANNEL], METHOD_EVENTS, req, reqlen, 0);
  usleep(nsubs ? 1500000 : 0); /* let every subscription reach the server */
  double rss_subscribed = rss_mb(pid);

  /* Warm-up on other replicas: fills every idle subscriber's flow-control window (a one-time
   * cost per subscriber, reported as its own figure), so the measured ingest is the steady
   * state with the subscribers still attached (the measured volume stays inside the default
   * 64 MiB change log). */
  double warm_secs = 0;
  if (g_warmup > 0) {
    long wchains = g_warmup / ((long)REPLICAS * CHAIN);
    if (wchains < 1) wchains = 1;
    rl_writer_t ww[WRITERS];
    pthread_t wth[WRITERS];
    int64_t w0 = ic_clock_monotonic_ns();
    for (int i = 0; i < WRITERS; i++) {
      ww[i] = (rl_writer_t){.ch = ch,
                            .r0 = i * REPLICAS / WRITERS,
                            .r1 = (i + 1) * REPLICAS / WRITERS,
                            .rbase = 50,
                            .chains = wchains};
      pthread_create(&wth[i], NULL, rl_writer_main, &ww[i]);
    }
    for (int i = 0; i < WRITERS; i++)
      pthread_join(wth[i], NULL);
    warm_secs = (double)(ic_clock_monotonic_ns() - w0) / 1e9;
    usleep(500000);
  }
  long chains = g_blocks / ((long)REPLICAS * CHAIN);
  if (chains < 1) chains = 1;
  looker_t lk = {.ch = ch};
  build_lookups(&lk, chains);
  pthread_t lth;
  pthread_create(&lth, NULL, looker_main, &lk);
  rl_writer_t w[WRITERS];
  pthread_t th[WRITERS];
  double cpu0 = cpu_s(pid);
  int64_t t0 = ic_clock_monotonic_ns();
  for (int i = 0; i < WRITERS; i++) {
    w[i] = (rl_writer_t){.ch = ch,
                         .r0 = i * REPLICAS / WRITERS,
                         .r1 = (i + 1) * REPLICAS / WRITERS,
                         .chains = chains};
    pthread_create(&th[i], NULL, rl_writer_main, &w[i]);
  }
  long blocks = 0, bad = 0;
  for (int i = 0; i < WRITERS; i++) {
    pthread_join(th[i], NULL);
    blocks += w[i].blocks;
    if (w[i].status != 0) bad++;
  }
  double secs = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
  double cpu_used = cpu_s(pid) - cpu0;
  atomic_store(&lk.stop, 1);
  pthread_join(lth, NULL);
  double rss_ingested = rss_mb(pid);

  /* subscribers leave */
  int ended = 0;
  for (int i = 0; i < nsubs; i++) {
    ic_buf_t m = IC_BUF_INIT;
    int st = -1;
    /* a subscriber the server already disconnected has its status waiting */
    int r = ic_rpc_reader_next(subs[i], 1, &m, &st);
    while (r == 1)
      ic_buf_reset(&m), r = ic_rpc_reader_next(subs[i], 1, &m, &st);
    if (r == 0) ended++;
    ic_buf_free(&m);
    ic_rpc_reader_close(subs[i]);
  }
  for (int i = 0; i < nch; i++)
    ic_rpc_channel_free(sch[i]);
  sleep(nsubs ? 3 : 0);
  double rss_left = rss_mb(pid);

  qsort(lk.lat, lk.n, sizeof *lk.lat, rl_cmp_i64);
  double p50 = rl_quantile_us(lk.lat, lk.n, 0.5);
  double p99 = rl_quantile_us(lk.lat, lk.n, 0.99);
  double pmax = rl_quantile_us(lk.lat, lk.n, 1.0);
  char extra[160];
  snprintf(extra, sizeof extra, ",\"ingested\":%ld,\"seconds\":%.2f,\"failed_writers\":%ld", blocks,
           secs, bad);
  emit(kind, "stream_ingest_blocks_per_s", (double)blocks / secs, "blocks/s", extra);
  snprintf(extra, sizeof extra, ",\"warmup_blocks\":%ld", g_warmup);
  emit(kind, "stream_warmup_seconds", warm_secs, "s", extra);
  if (cpu0 >= 0 && blocks > 0)
    emit(kind, "stream_server_cpu_us_per_block", cpu_used * 1e6 / (double)blocks, "us", extra);
  snprintf(extra, sizeof extra, ",\"samples\":%zu,\"errors\":%ld", lk.n, lk.errors);
  emit(kind, "stream_lookup_p50_us", p50, "us", extra);
  emit(kind, "stream_lookup_p99_us", p99, "us", extra);
  emit(kind, "stream_lookup_max_us", pmax, "us", extra);
  emit(kind, "stream_server_rss_start_mb", rss0, "MB", NULL);
  emit(kind, "stream_server_rss_subscribed_mb", rss_subscribed, "MB", NULL);
  emit(kind, "stream_server_rss_ingested_mb", rss_ingested, "MB", NULL);
  emit(kind, "stream_server_rss_after_leave_mb", rss_left, "MB", NULL);
  if (nsubs) {
    snprintf(extra, sizeof extra, ",\"opened\":%d", nsubs);
    emit(kind, "stream_subscribers_ended_by_server", ended, "streams", extra);
  }
  for (int i = 0; i < LOOKUP_REQS; i++)
    ic_buf_free(&lk.reqs[i]);
  free(lk.lat);
  rc = bad || lk.errors ? 2 : 0;
out:
  free(subs);
  free(sch);
  ic_rpc_channel_free(ch);
  rl_stop(pid);
  return rc;
}

int main(int argc, char **argv) {
  char server[PATH_MAX] = "";
  const char *phases = "none,all,other";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--server") && i + 1 < argc)
      snprintf(server, sizeof server, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--subscribers") && i + 1 < argc)
      g_subs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--blocks") && i + 1 < argc)
      g_blocks = atol(argv[++i]);
    else if (!strcmp(argv[i], "--warmup-blocks") && i + 1 < argc)
      g_warmup = atol(argv[++i]);
    else if (!strcmp(argv[i], "--lookup-rate") && i + 1 < argc)
      g_lookup_rate = atof(argv[++i]);
    else if (!strcmp(argv[i], "--phases") && i + 1 < argc)
      phases = argv[++i];
    else if (!strcmp(argv[i], "--server-arg") && i + 1 < argc && g_nserver_args < MAX_SERVER_ARGS)
      g_server_args[g_nserver_args++] = argv[++i];
  }
  if (g_subs < 0) g_subs = 0;
  if (g_blocks <= 0) g_blocks = 1L << 19;
  if (g_warmup < 0) g_warmup = 0;
  if (g_lookup_rate <= 0) g_lookup_rate = 2000;
  if (!*server &&
      rl_sibling_path("../src/server/inferencecache-server", server, sizeof server) != 0)
    return 1;
  if (access(server, X_OK) != 0) {
    fprintf(stderr, "bench_rpc_streams: server binary not found at %s (use --server)\n", server);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  int rc = 0;
  char list[256];
  snprintf(list, sizeof list, "%s", phases);
  for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
    if (strcmp(p, "none") && strcmp(p, "all") && strcmp(p, "other")) {
      fprintf(stderr, "bench_rpc_streams: unknown phase '%s' (none, all, other)\n", p);
      return 1;
    }
    int r = run_phase(server, p);
    if (r) rc = r;
  }
  return rc;
}
