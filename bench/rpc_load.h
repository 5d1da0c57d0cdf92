/* Pieces shared by the gRPC load generators (bench_grpc, bench_rpc_streams): synthetic chains,
 * server processes with CPU placement, readiness, ingest writers and latency percentiles. */
#ifndef IC_BENCH_RPC_LOAD_H
#define IC_BENCH_RPC_LOAD_H
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ic/buf.h"
#include "ic/rpc.h"

#define RL_REPLICAS 16
#define RL_CHAIN 128
#define RL_BLOCK_TOKENS 16
#define RL_METHOD_REPORT "/inferencecache.v1alpha1.InferenceCache/ReportCacheState"
#define RL_METHOD_LOOKUP "/inferencecache.v1alpha1.InferenceCache/LookupRoute"
#define RL_METHOD_EMPTY "/inferencecache.v1alpha1.InferenceCache/LookupPDRoute"
#define RL_METHOD_HEALTH "/grpc.health.v1.Health/Check"

uint64_t rl_splitmix(uint64_t x);
/* Block j of chain c on replica r: 8 big-endian bytes. Chains are distinct per replica, so a
 * full-chain lookup matches exactly one replica. */
void rl_block_hash(int r, long c, int j, uint8_t out[8]);
/* Packs a LookupRoute request for chain c of replica r (RL_CHAIN blocks) into out. */
void rl_lookup_request(int r, long c, ic_buf_t *out);

int rl_free_port(void);
/* Path of a program relative to this executable's directory (e.g. "../src/server/x"). */
int rl_sibling_path(const char *rel, char *out, size_t cap);

/* Where the server and the load generator run. pinned: disjoint halves of the CPUs this
 * process may use (server gets the first half); shared: both get all of them. */
typedef struct rl_placement {
  bool pinned;
  cpu_set_t server, client;
  int server_cpus, client_cpus;
  char server_list[64], client_list[64]; /* "0", "1-3" for params and logs */
} rl_placement_t;
/* mode "pinned", "shared" or NULL (= pinned when at least 2 CPUs are available). Returns 0 or
 * -1 (unknown mode; pinned with one CPU falls back to shared). */
int rl_placement_init(rl_placement_t *p, const char *mode);
/* Moves the calling process (every thread created later) onto the client CPUs. */
void rl_placement_enter_client(const rl_placement_t *p);

/* Starts the server binary (inferencecache-server flags) with its gRPC listener on gport and
 * the other listeners on free ports, stderr to /dev/null, on `cpus` when not NULL. `extra` is a
 * NULL-terminated list of more flags (may be NULL). */
pid_t rl_start_server(const char *path, int gport, const char *const *extra, const cpu_set_t *cpus);
/* Starts any program with argv (NULL-terminated) on `cpus`. */
pid_t rl_spawn(const char *const *argv, const cpu_set_t *cpus);
void rl_stop(pid_t pid);
/* Health checks until SERVING or timeout: 0 or IC_ETIMEOUT. */
int rl_connect_ready(ic_rpc_channel_t *ch, int timeout_ms);

/* One ReportCacheState stream writing `chains` chains for replicas r0..r1-1, named
 * replica-<rbase + r> (use as a pthread body). */
typedef struct rl_writer {
  ic_rpc_channel_t *ch;
  int r0, r1, rbase;
  long chains;
  long blocks; /* out */
  int status;  /* out: the stream's gRPC status, -1 when it broke */
} rl_writer_t;
void *rl_writer_main(void *arg);

int rl_cmp_i64(const void *a, const void *b);
/* q-quantile (0..1) of n sorted ns values, in microseconds (0 when n == 0). */
double rl_quantile_us(const int64_t *sorted, size_t n, double q);

#endif
