/* gRPC load generator: starts the real inferencecache-server on loopback, fills its index over
 * the wire (ReportCacheState) with 1 M memberships over 16 replicas, then measures LookupRoute
 * with 128-block chains against the transport ceiling (grpc.health.v1 Check, a trivial handler on
 * the same rpc layer), and latency at 50% of the max rate (open loop, latency measured from the
 * actual send time, and p99 also from the scheduled one). Prints JSON lines (docs/performance.md).
 *
 * Usage: bench_grpc [--server PATH | --target HOST:PORT] [--seconds N] [--inflight N] [--memberships N]
 *                   [--latency-fraction F]   (open-loop rate = F x max, default 0.5)
 * Defaults: server next to this binary (../src/server/inferencecache-server), 3 s per phase,
 * 32 calls in flight, 1,000,000 memberships. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "grpc/health/v1/health.pb-c.h"
#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/rpc.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"

#define REPLICAS 16
#define CHAIN 128
#define BLOCK_TOKENS 16
#define LOOKUP_REQS 512

static int g_seconds = 3, g_inflight = 32;
static double g_fraction = 0.5; /* open-loop rate as a fraction of the measured max */
static long g_memberships = 1000000;

static uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* Block j of chain c on replica r: 8 big-endian bytes. Chains are distinct per replica, so a
 * 128-block lookup matches exactly one replica (distinguishing power 1 -> PREFIX_MATCH). */
static void block_hash(int r, long c, int j, uint8_t out[8]) {
  uint64_t h = splitmix(((uint64_t)r << 48) ^ ((uint64_t)c << 8) ^ (uint64_t)j);
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(h >> (56 - 8 * i));
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

static pid_t start_server(const char *path, int gport) {
  char g[64], h[64], s[64];
  snprintf(g, sizeof g, "--grpc-bind-address=127.0.0.1:%d", gport);
  snprintf(h, sizeof h, "--http-bind-address=127.0.0.1:%d", free_port());
  snprintf(s, sizeof s, "--snapshot-bind-address=127.0.0.1:%d", free_port());
  pid_t pid = fork();
  if (pid == 0) {
    int dn = open("/dev/null", O_WRONLY);
    if (dn >= 0) dup2(dn, 2);
    execl(path, path, "--insecure-disable-auth", "--log-level=error", g, h, s, (char *)NULL);
    _exit(127);
  }
  return pid;
}

static void emit(const char *name, double value, const char *unit, const char *extra) {
  printf("{\"bench\":\"grpc\",\"name\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"params\":{\"replicas\":%d,"
         "\"memberships\":%ld,\"chain_blocks\":%d,\"inflight\":%d,\"seconds\":%d%s}}\n",
         name, value, unit, REPLICAS, g_memberships, CHAIN, g_inflight, g_seconds, extra ? extra : "");
  fflush(stdout);
}

/* ---- report phase: one writer thread per group of replicas ---- */
typedef struct rep_arg {
  ic_rpc_channel_t *ch;
  int r0, r1;
  long chains_per_replica;
  long blocks;
  int status;
} rep_arg_t;

static void *report_main(void *p) {
  rep_arg_t *a = p;
  ic_rpc_writer_t *w = ic_rpc_writer_open(a->ch, "/inferencecache.v1alpha1.InferenceCache/ReportCacheState", 600000);
  uint8_t hashes[CHAIN][8];
  ProtobufCBinaryData bh[CHAIN];
  int32_t counts[CHAIN];
  for (int j = 0; j < CHAIN; j++) counts[j] = BLOCK_TOKENS, bh[j] = (ProtobufCBinaryData){8, hashes[j]};
  ic_buf_t buf = IC_BUF_INIT;
  for (int r = a->r0; r < a->r1 && w; r++) {
    char rid[32];
    snprintf(rid, sizeof rid, "replica-%02d", r);
    for (long c = 0; c < a->chains_per_replica; c++) {
      for (int j = 0; j < CHAIN; j++) block_hash(r, c, j, hashes[j]);
      Inferencecache__V1alpha1__PrefixEntry pe = INFERENCECACHE__V1ALPHA1__PREFIX_ENTRY__INIT;
      pe.n_block_hashes = CHAIN;
      pe.block_hashes = bh;
      pe.n_block_token_counts = CHAIN;
      pe.block_token_counts = counts;
      Inferencecache__V1alpha1__PrefixEntry *pp = &pe;
      Inferencecache__V1alpha1__CacheStateUpdate u = INFERENCECACHE__V1ALPHA1__CACHE_STATE_UPDATE__INIT;
      u.replica_id = rid;
      u.model_id = "m";
      u.tenant_id = "bench";
      u.hash_scheme = "vllm";
      u.n_prefixes = 1;
      u.prefixes = &pp;
      size_t n = inferencecache__v1alpha1__cache_state_update__get_packed_size(&u);
      ic_buf_reset(&buf);
      ic_buf_reserve(&buf, n);
      inferencecache__v1alpha1__cache_state_update__pack(&u, (uint8_t *)buf.data);
      if (ic_rpc_writer_send(w, (const uint8_t *)buf.data, n) != 0) goto done;
      a->blocks += CHAIN;
    }
  }
done:
  a->status = -1;
  if (w) ic_rpc_writer_finish(w, NULL, &a->status, NULL);
  ic_buf_free(&buf);
  return NULL;
}

/* ---- closed-loop max throughput with a pipeline ---- */
static double max_qps_for(ic_rpc_channel_t *ch, const char *method, ic_buf_t *reqs, int nreqs, long *errors,
                          const char *expect_code, int64_t duration_ns, long *calls, double *secs_out) {
  ic_rpc_pipeline_t *p = ic_rpc_pipeline_new(ch, method);
  ic_buf_t resp = IC_BUF_INIT;
  long done = 0, k = 0;
  *errors = 0;
  int64_t t0 = ic_clock_monotonic_ns(), end = t0 + duration_ns;
  for (int i = 0; i < g_inflight; i++, k++)
    ic_rpc_pipeline_start(p, (const uint8_t *)reqs[k % nreqs].data, reqs[k % nreqs].len, 30000, NULL);
  while (ic_rpc_pipeline_inflight(p) > 0) {
    void *tag;
    int st;
    ic_buf_reset(&resp);
    if (ic_rpc_pipeline_next(p, 30000, &tag, &st, &resp) != 1) break;
    done++;
    if (st != IC_RPC_OK) (*errors)++;
    else if (expect_code && (done & 1023) == 1) {
      Inferencecache__V1alpha1__LookupRouteResponse *r =
          inferencecache__v1alpha1__lookup_route_response__unpack(NULL, resp.len, (const uint8_t *)resp.data);
      if (!r || strcmp(r->reason_code, expect_code) != 0) (*errors)++;
      if (r) inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
    }
    if (ic_clock_monotonic_ns() < end) {
      ic_rpc_pipeline_start(p, (const uint8_t *)reqs[k % nreqs].data, reqs[k % nreqs].len, 30000, NULL);
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

static double max_qps(ic_rpc_channel_t *ch, const char *method, ic_buf_t *reqs, int nreqs, long *errors,
                      const char *expect_code) {
  return max_qps_for(ch, method, reqs, nreqs, errors, expect_code, (int64_t)g_seconds * 1000000000LL, NULL, NULL);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Open loop at `rate` req/s: a sender thread starts calls on a fixed schedule (absolute sleeps)
 * while this thread collects completions. Latency is taken from the actual start of each call
 * and, separately, from its scheduled start (a sender that fell behind then counts too). */
typedef struct sender {
  ic_rpc_pipeline_t *p;
  ic_buf_t *reqs;
  int nreqs;
  int64_t t0, interval, end;
  _Atomic int done;
} sender_t;

static void *sender_main(void *arg) {
  sender_t *s = arg;
  long k = 0;
  for (int64_t next = s->t0; next < s->end; next += s->interval, k++) {
    struct timespec ts = {.tv_sec = (time_t)(next / 1000000000LL), .tv_nsec = (long)(next % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    int64_t *sched = malloc(2 * sizeof *sched);
    sched[0] = next;                   /* when the call should have started */
    sched[1] = ic_clock_monotonic_ns(); /* when it did */
    if (ic_rpc_pipeline_start(s->p, (const uint8_t *)s->reqs[k % s->nreqs].data, s->reqs[k % s->nreqs].len, 30000,
                              sched) != 0)
      free(sched);
  }
  atomic_store(&s->done, 1);
  return NULL;
}

static void latency_at(ic_rpc_channel_t *ch, const char *method, ic_buf_t *reqs, int nreqs, double rate,
                       double *p50, double *p99, double *p99_sched, long *count) {
  ic_rpc_pipeline_t *p = ic_rpc_pipeline_new(ch, method);
  size_t cap = (size_t)(rate * g_seconds * 1.2) + 1024, n = 0;
  int64_t *lat = malloc(cap * sizeof *lat), *slat = malloc(cap * sizeof *slat);
  sender_t s = {.p = p, .reqs = reqs, .nreqs = nreqs, .interval = (int64_t)(1e9 / rate)};
  s.t0 = ic_clock_monotonic_ns() + 1000000;
  s.end = s.t0 + (int64_t)g_seconds * 1000000000LL;
  pthread_t th;
  pthread_create(&th, NULL, sender_main, &s);
  for (;;) {
    void *tag;
    int st;
    int rc = ic_rpc_pipeline_next(p, 100, &tag, &st, NULL);
    if (rc == 1) {
      int64_t *sched = tag, now = ic_clock_monotonic_ns();
      if (n < cap) {
        slat[n] = now - sched[0];
        lat[n++] = now - sched[1];
      }
      free(sched);
    } else if (atomic_load(&s.done) && ic_rpc_pipeline_inflight(p) == 0) {
      break;
    } else if (rc == 0 && ic_rpc_pipeline_inflight(p) == 0) {
      usleep(100);
    }
  }
  pthread_join(th, NULL);
  qsort(lat, n, sizeof *lat, cmp_i64);
  *p50 = n ? (double)lat[n / 2] / 1000.0 : 0;
  *p99 = n ? (double)lat[(size_t)((double)n * 0.99) < n ? (size_t)((double)n * 0.99) : n - 1] / 1000.0 : 0;
  qsort(slat, n, sizeof *slat, cmp_i64);
  *p99_sched = n ? (double)slat[(size_t)((double)n * 0.99) < n ? (size_t)((double)n * 0.99) : n - 1] / 1000.0 : 0;
  *count = (long)n;
  free(lat);
  free(slat);
  ic_rpc_pipeline_free(p);
}

int main(int argc, char **argv) {
  char server[PATH_MAX] = "";
  const char *attach = NULL; /* --target host:port: use a running server instead of starting one */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--server") && i + 1 < argc) snprintf(server, sizeof server, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) g_seconds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--inflight") && i + 1 < argc) g_inflight = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--memberships") && i + 1 < argc) g_memberships = atol(argv[++i]);
    else if (!strcmp(argv[i], "--target") && i + 1 < argc) attach = argv[++i];
    else if (!strcmp(argv[i], "--latency-fraction") && i + 1 < argc) g_fraction = atof(argv[++i]);
  }
  if (g_seconds <= 0) g_seconds = 3;
  if (g_inflight <= 0) g_inflight = 32;
  if (g_fraction <= 0 || g_fraction > 1) g_fraction = 0.5;
  if (!*server) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(server, sizeof server, "%.*s/../src/server/inferencecache-server", PATH_MAX - 64, self);
  }
  if (!attach && access(server, X_OK) != 0) {
    fprintf(stderr, "bench_grpc: server binary not found at %s (use --server)\n", server);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  int port = free_port();
  pid_t pid = attach ? -1 : start_server(server, port);
  char target[128];
  if (attach)
    snprintf(target, sizeof target, "%s", attach);
  else
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
  ic_rpc_channel_t *ch = ic_rpc_channel_new(target, NULL);
  int rc = 1;
  if (ic_rpc_channel_wait_ready(ch, 30000) != 0) {
    /* the channel may need a first call to connect: retry with health checks */
    int64_t until = ic_clock_monotonic_ns() + 30000000000LL;
    int st = -1;
    while (ic_clock_monotonic_ns() < until) {
      if (ic_rpc_unary(ch, "/grpc.health.v1.Health/Check", NULL, 0, 1000, NULL, &st, NULL) == 0 && st == 0) break;
      usleep(50000);
    }
    if (st != 0) {
      fprintf(stderr, "bench_grpc: server did not become ready\n");
      goto out;
    }
  }

  /* 1. ingest over the wire */
  long chains_per_replica = g_memberships / (REPLICAS * CHAIN);
  if (chains_per_replica < 1) chains_per_replica = 1;
  int writers = 4;
  rep_arg_t args[4];
  pthread_t th[4];
  int64_t t0 = ic_clock_monotonic_ns();
  for (int i = 0; i < writers; i++) {
    args[i] = (rep_arg_t){.ch = ch, .r0 = i * REPLICAS / writers, .r1 = (i + 1) * REPLICAS / writers,
                          .chains_per_replica = chains_per_replica};
    pthread_create(&th[i], NULL, report_main, &args[i]);
  }
  long blocks = 0;
  for (int i = 0; i < writers; i++) {
    pthread_join(th[i], NULL);
    blocks += args[i].blocks;
    if (args[i].status != 0) fprintf(stderr, "bench_grpc: report stream %d ended with status %d\n", i, args[i].status);
  }
  double secs = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
  char extra[128];
  snprintf(extra, sizeof extra, ",\"writers\":%d,\"blocks\":%ld", writers, blocks);
  emit("report_blocks_per_s", (double)blocks / secs, "blocks/s", extra);

  /* 2. requests */
  ic_buf_t lreq[LOOKUP_REQS], hreq[1];
  uint8_t hashes[CHAIN][8];
  ProtobufCBinaryData bh[CHAIN];
  int32_t counts[CHAIN];
  for (int j = 0; j < CHAIN; j++) counts[j] = BLOCK_TOKENS, bh[j] = (ProtobufCBinaryData){8, hashes[j]};
  for (int i = 0; i < LOOKUP_REQS; i++) {
    int r = (int)(splitmix((uint64_t)i) % REPLICAS);
    long c = (long)(splitmix((uint64_t)i * 7 + 1) % (uint64_t)chains_per_replica);
    for (int j = 0; j < CHAIN; j++) block_hash(r, c, j, hashes[j]);
    Inferencecache__V1alpha1__LookupRouteRequest q = INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
    q.model_id = "m";
    q.tenant_id = "bench";
    q.hash_scheme = "vllm";
    q.n_block_hashes = CHAIN;
    q.block_hashes = bh;
    q.n_block_token_counts = CHAIN;
    q.block_token_counts = counts;
    size_t n = inferencecache__v1alpha1__lookup_route_request__get_packed_size(&q);
    ic_buf_init(&lreq[i]);
    ic_buf_reserve(&lreq[i], n);
    inferencecache__v1alpha1__lookup_route_request__pack(&q, (uint8_t *)lreq[i].data);
    lreq[i].len = n;
  }
  /* The transport ceiling: LookupPDRoute, a stub on the same rpc layer, fed a request of the same
   * size on the wire as a 128-block LookupRoute (one bytes field), so both carry equal bytes. */
  ic_buf_init(&hreq[0]);
  {
    uint8_t *pad = calloc(1, lreq[0].len);
    Inferencecache__V1alpha1__LookupPDRouteRequest q = INFERENCECACHE__V1ALPHA1__LOOKUP_PDROUTE_REQUEST__INIT;
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

  long errs_e = 0, errs_l = 0, errs_z = 0;
  /* warm-up */
  max_qps(ch, "/grpc.health.v1.Health/Check", &zreq, 1, &errs_z, NULL);
  double zq = max_qps(ch, "/grpc.health.v1.Health/Check", &zreq, 1, &errs_z, NULL);
  /* The machine is shared: alternate 200 ms slices of the ceiling and of LookupRoute so load
   * swings hit both sides of the ratio alike. */
  long ecalls = 0, lcalls = 0, e1 = 0, l1 = 0;
  double esecs = 0, lsecs = 0;
  for (int round = 0; round < 5 * g_seconds; round++) {
    max_qps_for(ch, "/inferencecache.v1alpha1.InferenceCache/LookupPDRoute", hreq, 1, &e1, NULL, 200000000LL, &ecalls,
                &esecs);
    errs_e += e1;
    max_qps_for(ch, "/inferencecache.v1alpha1.InferenceCache/LookupRoute", lreq, LOOKUP_REQS, &l1, "PREFIX_MATCH",
                200000000LL, &lcalls, &lsecs);
    errs_l += l1;
  }
  double eq = (double)ecalls / esecs, lq = (double)lcalls / lsecs;
  snprintf(extra, sizeof extra, ",\"errors\":%ld,\"request_bytes\":%zu", errs_e, hreq[0].len);
  emit("empty_handler_qps", eq, "req/s", extra);
  snprintf(extra, sizeof extra, ",\"errors\":%ld,\"request_bytes\":0", errs_z);
  emit("empty_handler_zero_payload_qps", zq, "req/s", extra);
  snprintf(extra, sizeof extra, ",\"errors\":%ld,\"request_bytes\":%zu", errs_l, lreq[0].len);
  emit("lookup_route_qps", lq, "req/s", extra);
  emit("lookup_vs_empty_ratio", eq > 0 ? lq / eq : 0, "ratio", NULL);
  double p50, p99, p99s;
  long count;
  latency_at(ch, "/inferencecache.v1alpha1.InferenceCache/LookupRoute", lreq, LOOKUP_REQS, lq * g_fraction, &p50, &p99,
             &p99s, &count);
  snprintf(extra, sizeof extra, ",\"rate\":%.0f,\"fraction\":%.2f,\"samples\":%ld", lq * g_fraction, g_fraction,
           count);
  emit("lookup_route_p50_us", p50, "us", extra);
  emit("lookup_route_p99_us", p99, "us", extra);
  /* the same calls timed from their scheduled start: adds the generator's own lag (coordinated
   * omission), which on a shared 2-core box is mostly the sender thread waiting for a core */
  emit("lookup_route_p99_from_schedule_us", p99s, "us", extra);
  for (int i = 0; i < LOOKUP_REQS; i++) ic_buf_free(&lreq[i]);
  ic_buf_free(&hreq[0]);
  ic_buf_free(&zreq);
  rc = (errs_e || errs_l || errs_z) ? 2 : 0;
out:
  ic_rpc_channel_free(ch);
  if (pid > 0) {
    kill(pid, SIGTERM);
    int wst;
    waitpid(pid, &wst, 0);
  }
  return rc;
}
