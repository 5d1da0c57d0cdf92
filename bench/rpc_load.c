/* Pieces shared by the gRPC load generators (bench_grpc, bench_rpc_streams): synthetic chains,
 * server processes with CPU placement, readiness, ingest writers and latency percentiles. */
#include "rpc_load.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"

uint64_t rl_splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

void rl_block_hash(int r, long c, int j, uint8_t out[8]) {
  uint64_t h = rl_splitmix(((uint64_t)r << 48) ^ ((uint64_t)c << 8) ^ (uint64_t)j);
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(h >> (56 - 8 * i));
}

void rl_lookup_request(int r, long c, ic_buf_t *out) {
  uint8_t hashes[RL_CHAIN][8];
  ProtobufCBinaryData bh[RL_CHAIN];
  int32_t counts[RL_CHAIN];
  for (int j = 0; j < RL_CHAIN; j++) {
    counts[j] = RL_BLOCK_TOKENS, bh[j] = (ProtobufCBinaryData){8, hashes[j]};
    rl_block_hash(r, c, j, hashes[j]);
  }
  Inferencecache__V1alpha1__LookupRouteRequest q =
      INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.model_id = "m";
  q.tenant_id = "bench";
  q.hash_scheme = "vllm";
  q.n_block_hashes = RL_CHAIN;
  q.block_hashes = bh;
  q.n_block_token_counts = RL_CHAIN;
  q.block_token_counts = counts;
  size_t n = inferencecache__v1alpha1__lookup_route_request__get_packed_size(&q);
  ic_buf_reset(out);
  ic_buf_reserve(out, n);
  inferencecache__v1alpha1__lookup_route_request__pack(&q, (uint8_t *)out->data);
  out->len = n;
}

int rl_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

int rl_sibling_path(const char *rel, char *out, size_t cap) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return -1;
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash) *slash = '\0';
  int w = snprintf(out, cap, "%s/%s", self, rel);
  return w > 0 && (size_t)w < cap ? 0 : -1;
}

static void cpu_list(const cpu_set_t *s, char *out, size_t cap) {
  size_t o = 0;
  out[0] = '\0';
  for (int c = 0; c < CPU_SETSIZE && o + 16 < cap; c++) {
    if (!CPU_ISSET(c, s)) continue;
    int e = c;
    while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, s))
      e++;
    o += (size_t)snprintf(out + o, cap - o, e > c ? "%s%d-%d" : "%s%d", o ? "," : "", c, e);
    c = e;
  }
}

int rl_placement_init(rl_placement_t *p, const char *mode) {
  memset(p, 0, sizeof *p);
  cpu_set_t all;
  CPU_ZERO(&all);
  if (sched_getaffinity(0, sizeof all, &all) != 0) {
    for (int c = 0; c < (int)sysconf(_SC_NPROCESSORS_ONLN) && c < CPU_SETSIZE; c++)
      CPU_SET(c, &all);
  }
  int n = CPU_COUNT(&all);
  int rc = 0;
  if (mode && strcmp(mode, "pinned") && strcmp(mode, "shared")) rc = -1;
  p->pinned = n >= 2 && (!mode || !strcmp(mode, "pinned"));
  if (!p->pinned) {
    p->server = p->client = all;
  } else {
    CPU_ZERO(&p->server);
    CPU_ZERO(&p->client);
    int k = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
      if (!CPU_ISSET(c, &all)) continue;
      if (k++ < n / 2)
        CPU_SET(c, &p->server);
      else
        CPU_SET(c, &p->client);
    }
  }
  p->server_cpus = CPU_COUNT(&p->server);
  p->client_cpus = CPU_COUNT(&p->client);
  cpu_list(&p->server, p->server_list, sizeof p->server_list);
  cpu_list(&p->client, p->client_list, sizeof p->client_list);
  return rc;
}

void rl_placement_enter_client(const rl_placement_t *p) {
  if (p->pinned) sched_setaffinity(0, sizeof p->client, &p->client);
}

pid_t rl_spawn(const char *const *argv, const cpu_set_t *cpus) {
  pid_t pid = fork();
  if (pid == 0) {
    if (cpus) sched_setaffinity(0, sizeof *cpus, cpus);
    int dn = open("/dev/null", O_WRONLY);
    if (dn >= 0) dup2(dn, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  return pid;
}

pid_t rl_start_server(const char *path, int gport, const char *const *extra,
                      const cpu_set_t *cpus) {
  char g[64], h[64], s[64];
  snprintf(g, sizeof g, "--grpc-bind-address=127.0.0.1:%d", gport);
  snprintf(h, sizeof h, "--http-bind-address=127.0.0.1:%d", rl_free_port());
  snprintf(s, sizeof s, "--snapshot-bind-address=127.0.0.1:%d", rl_free_port());
  const char *argv[64];
  int n = 0;
  argv[n++] = path;
  argv[n++] = "--insecure-disable-auth";
  argv[n++] = "--log-level=error";
  argv[n++] = g;
  argv[n++] = h;
  argv[n++] = s;
  for (int i = 0; extra && extra[i] && n < 63; i++)
    argv[n++] = extra[i];
  argv[n] = NULL;
  return rl_spawn(argv, cpus);
}

void rl_stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  int st;
  waitpid(pid, &st, 0);
}

int rl_connect_ready(ic_rpc_channel_t *ch, int timeout_ms) {
  int64_t until = ic_clock_monotonic_ns() + (int64_t)timeout_ms * 1000000;
  while (ic_clock_monotonic_ns() < until) {
    int st = -1;
    if (ic_rpc_unary(ch, RL_METHOD_HEALTH, NULL, 0, 1000, NULL, &st, NULL) == 0 && st == 0)
      return 0;
    usleep(50000);
  }
  return IC_ETIMEOUT;
}

void *rl_writer_main(void *arg) {
  rl_writer_t *a = arg;
  ic_rpc_writer_t *w = ic_rpc_writer_open(a->ch, RL_METHOD_REPORT, 600000);
  uint8_t hashes[RL_CHAIN][8];
  ProtobufCBinaryData bh[RL_CHAIN];
  int32_t counts[RL_CHAIN];
  for (int j = 0; j < RL_CHAIN; j++)
    counts[j] = RL_BLOCK_TOKENS, bh[j] = (ProtobufCBinaryData){8, hashes[j]};
  ic_buf_t buf = IC_BUF_INIT;
  for (int r = a->r0; r < a->r1 && w; r++) {
    char rid[32];
    snprintf(rid, sizeof rid, "replica-%02d", a->rbase + r);
    for (long c = 0; c < a->chains; c++) {
      for (int j = 0; j < RL_CHAIN; j++)
        rl_block_hash(a->rbase + r, c, j, hashes[j]);
      Inferencecache__V1alpha1__PrefixEntry pe = INFERENCECACHE__V1ALPHA1__PREFIX_ENTRY__INIT;
      pe.n_block_hashes = RL_CHAIN;
      pe.block_hashes = bh;
      pe.n_block_token_counts = RL_CHAIN;
      pe.block_token_counts = counts;
      Inferencecache__V1alpha1__PrefixEntry *pp = &pe;
      Inferencecache__V1alpha1__CacheStateUpdate u =
          INFERENCECACHE__V1ALPHA1__CACHE_STATE_UPDATE__INIT;
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
      a->blocks += RL_CHAIN;
    }
  }
done:
  a->status = -1;
  if (w) ic_rpc_writer_finish(w, NULL, &a->status, NULL);
  ic_buf_free(&buf);
  return NULL;
}

int rl_cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

double rl_quantile_us(const int64_t *sorted, size_t n, double q) {
  if (!n) return 0;
  size_t i = (size_t)((double)n * q);
  if (i >= n) i = n - 1;
  return (double)sorted[i] / 1000.0;
}
