/* kvevent-subscriber internals: the program context shared by its threads (engine reader, RPC
 * sender, stats reporter, connectivity watcher, HTTP), and the bounded op queue between them.
 * Not a library: only src/subscriber includes this. */
#ifndef IC_SUBSCRIBER_SUB_H
#define IC_SUBSCRIBER_SUB_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/kvevents.h"
#include "ic/metrics.h"

#define SUB_MAX_ENDPOINTS 64
#define SUB_RPC_TIMEOUT_MS 5000
#define SUB_MAX_ENTRIES_PER_CSU 4096
#define SUB_MAX_EVICTS_IN_FLIGHT 256

/* ---- bounded op queue (queue.c) ------------------------------------------------------------
 * Ordered ops from the engine reader to the sender. Bounded in bytes (each op accounts
 * sizeof(qent_t)). On overflow the oldest ADD/DOWNGRADE is dropped first; removals and clears go
 * only once no add is left (a lost removal leaves a wrong hint, a lost add only a missed one).
 * An ALL_CLEARED supersedes every queued op of its replica. Entries carry a queue sequence so
 * the sender can peek a group, send it without the lock, and commit it afterwards. */
typedef struct qent {
  ic_kv_op_t op;
  uint64_t qseq;
  bool live;
} qent_t;

typedef struct subq {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_cond_t room; /* signalled when the sender commits (space freed) */
  qent_t *v;
  size_t cap, head, n; /* ring: n entries (live or dead) from head */
  size_t live, live_adds, live_urgent;
  size_t max_ops;
  uint64_t next_qseq;
  uint64_t dropped[5]; /* by op kind */
  bool stop;
} subq_t;

int subq_init(subq_t *q, size_t max_bytes);
void subq_destroy(subq_t *q);
/* Appends ops in order (stamping nothing); returns the number of ops dropped to make room. */
size_t subq_push(subq_t *q, const ic_kv_op_t *ops, size_t n, const char *const *replica_of_ep);
/* Waits (up to timeout_us) until n more ops fit under the bound; returns whether they do. Used
 * for re-reports and replays, which are large and must not evict each other: they flow at the
 * sender's pace instead. */
bool subq_wait_room(subq_t *q, size_t n, int64_t timeout_us);
/* Copies the next group (same kind/replica; ADDs up to max) into out; returns its size (0 =
 * empty). *last_qseq receives the qseq to commit. Caller holds q->mu. */
size_t subq_peek_group(subq_t *q, ic_kv_op_t *out, size_t max, uint64_t *last_qseq,
                       const char *const *replica_of_ep);
/* Drops every entry with qseq <= last (sent). Caller holds q->mu. */
void subq_commit(subq_t *q, uint64_t last);
size_t subq_bytes(const subq_t *q);

/* ---- program context ---------------------------------------------------------------------- */

typedef struct sub_endpoint {
  const char *endpoint;
  const char *replay;       /* NULL = no replay socket */
  void *sub, *dealer, *mon; /* ZMQ sockets (engine thread only); mon reads sub's monitor events */
  ic_kv_tracker_t *tracker;
  ic_kv_seq_t *seq; /* sequence continuity (what was applied) */
  int64_t dp_rank;  /* last seen rank, -1 unknown */
  /* Engine connection (from the SUB socket's monitor): up after a completed handshake. */
  bool up;
  bool verify;             /* the connection dropped: continuity unproven until checked */
  bool down_cleared;       /* down past --engine-down-grace: its blocks were withdrawn */
  int64_t down_since_us;   /* monotonic; 0 while up or before the first connection */
  int64_t last_restart_us; /* monotonic time of the last engine restart detected, 0 = none */
} sub_endpoint_t;

typedef struct sub_metrics {
  ic_metrics_t *reg;
  ic_metric_family_t *events_received, *events_applied, *events_malformed, *batches, *gaps,
      *missing, *dups, *restarts, *replays, *replayed, *queue_depth, *queue_bytes, *queue_max,
      *queue_dropped, *rpcs, *rpc_errors, *connected, *resyncs, *resync_entries, *lag, *tracked,
      *lora_dropped, *no_entries, *scrapes, *unknown_tags, *other_group, *seq_invalid, *unrecovered,
      *engine_resyncs, *down_clears, *engine_connected;
  ic_metric_family_t *reported_hit_rate, *reported_pressure; /* last stats the server accepted */
} sub_metrics_t;

typedef struct sub_ctx {
  /* flags */
  const char *server, *replica_id, *model_id, *tenant_id, *hash_scheme, *topic;
  const char *metrics_url, *engine_model_name, *http_bind;
  int64_t load_interval_us; /* live load reports between stats scrapes; <= 0 = off */
  const char *server_ca_file; /* TLS to the server when set */
  const char *client_cert_file, *client_key_file; /* mTLS writer auth (creds.c) */
  const char *server_token_file; /* bearer token for writer auth (creds.c) */
  int64_t token_refresh_us;      /* how often the token file is looked at */
  struct ic_auth_token_file *token;
  int64_t window_us, stats_interval_us, cache_size_bytes, ceiling, queue_max_bytes;
  int64_t max_backoff_us, replay_timeout_us, down_grace_us;
  ic_kv_cache_tier_t cache_tier;
  bool l2_mode, dp_suffix;
  ic_kv_lora_map_t *lora;
  size_t neps;
  sub_endpoint_t eps[SUB_MAX_ENDPOINTS];
  const char *replica_of_ep[SUB_MAX_ENDPOINTS]; /* replica id stamped on each ep's ops */
  char *owned_names[4 * SUB_MAX_ENDPOINTS];     /* --dp-rank-suffix ids, freed at exit */
  size_t nowned;
  /* runtime */
  struct sub_grpc *rpc;
  subq_t q;
  sub_metrics_t m;
  atomic_bool stop_engine, stop_sender, stop_stats;
  atomic_int resync;     /* set: the engine thread re-reports every tracker */
  atomic_bool connected; /* last known server state */
  atomic_bool lost;      /* server seen down since the last successful send */
  atomic_bool ever_sent; /* a send has succeeded since start */
  atomic_bool kick;      /* watcher saw the server come back: cut the sender's backoff short */
  atomic_bool engine_restarted; /* the stats scrape saw the engine's process start time change */
  pthread_mutex_t stop_mu;
  pthread_cond_t stop_cv; /* wakes the stats/watch threads on shutdown */
} sub_ctx_t;

struct sub_grpc_creds; /* below, with the gRPC client */
/* ---- writer credentials (creds.c) ---- */
/* Loads --server-ca-file, --client-cert-file/--client-key-file and --server-token-file into out
 * (PEM strings malloc'd; c->token created). Returns 0, or 1 after logging why (exit 1). */
int sub_creds_load(sub_ctx_t *c, struct sub_grpc_creds *out);
/* Frees the PEM strings of out (the token source stays with c until sub_creds_free_token). */
void sub_creds_release(struct sub_grpc_creds *out);
void sub_creds_free_token(sub_ctx_t *c);

/* ---- gRPC client (grpcc.c): our own small layer over gRPC core, because the channel must
 * reconnect on a short, bounded backoff (--max-backoff) and be watched for connectivity, which
 * a generic client does not expose. One channel, thread-safe, plaintext. */
typedef struct sub_grpc sub_grpc_t;
/* How the channel talks to the server (creds.c loads it from the flags). All NULL = plaintext,
 * no credentials. */
typedef struct sub_grpc_creds {
  const char *ca_pem;                /* PEM roots to verify a TLS server with; NULL = plaintext */
  const char *cert_pem, *key_pem;    /* client certificate for mTLS writer auth (TLS only) */
  struct ic_auth_token_file *token;  /* bearer token source (not owned); NULL = none */
} sub_grpc_creds_t;
sub_grpc_t *sub_grpc_new(const char *target, int max_backoff_ms, const sub_grpc_creds_t *creds);
void sub_grpc_free(sub_grpc_t *g);
/* One request message, one response (unary and single-message client streams look the same
 * on the wire). Returns the gRPC status code (0 OK), or -1 when no status came back; the
 * response bytes (when OK) are appended to resp (may be NULL). */
int sub_grpc_call(sub_grpc_t *g, const char *method, const uint8_t *req, size_t len, int timeout_ms,
                  struct ic_buf *resp);
/* The same for n independent requests in flight at once (evictions of one engine step).
 * statuses[i] gets each call's status (-1 = none); returns 0 when all are OK, else the first
 * failing status. */
int sub_grpc_call_many(sub_grpc_t *g, const char *method, const uint8_t *const *reqs,
                       const size_t *lens, size_t n, int timeout_ms, int *statuses);
/* Current state (grpc_connectivity_state numeric value); try_connect kicks an idle channel. */
int sub_grpc_state(sub_grpc_t *g, bool try_connect);
/* Waits up to timeout_ms for the state to differ from `last`; returns the new state. */
int sub_grpc_wait_change(sub_grpc_t *g, int last, int timeout_ms);
#define SUB_GRPC_READY 2

/* gRPC status code name ("OK", "UNAVAILABLE", ...; "TRANSPORT" when no status came back). */
const char *sub_code_name(int st);

/* ---- replay client (replay.c) --------------------------------------------------------------
 * Fetches [from, to] from the endpoint's replay socket (to = IC_KV_SEQ_END - 1: everything the
 * engine holds) and calls apply for each message in order. Re-requests from the first missing
 * number when an answer has a hole (the engine's send side drops past its high-water mark), until
 * the range is done, the engine shows it no longer holds the rest (its answer starts later, or is
 * only the end marker), or it stops answering for timeout_us. */
typedef void (*sub_replay_apply_fn)(void *ud, uint64_t seq, const uint8_t *p, size_t len);
typedef struct sub_replay_out {
  uint64_t applied;            /* messages handed to apply */
  uint64_t last;               /* number of the last one (when applied > 0) */
  uint64_t lost;               /* numbers in the range the engine no longer holds */
  uint64_t lost_from, lost_to; /* span of the lost numbers (when lost > 0) */
  bool answered;               /* the engine answered at all */
  bool complete;               /* every number in the range applied (open range: up to the end) */
} sub_replay_out_t;
void sub_replay(void *zctx, sub_endpoint_t *ep, int64_t timeout_us, uint64_t from, uint64_t to,
                sub_replay_apply_fn apply, void *ud, sub_replay_out_t *out);
/* Asks for message `seq` only: 1 and its payload digest, 0 when the engine does not hold it,
 * -1 when it did not answer. */
int sub_replay_probe(void *zctx, sub_endpoint_t *ep, int64_t timeout_us, uint64_t seq,
                     uint64_t *digest);
void sub_replay_close(sub_endpoint_t *ep);

int sub_metrics_init(sub_ctx_t *c);
void *sub_engine_thread(void *arg);
void *sub_sender_thread(void *arg);
void *sub_stats_thread(void *arg);
void *sub_watch_thread(void *arg);
/* Final drain at shutdown: sends what is queued, bounded by deadline_us (monotonic). */
void sub_sender_drain(sub_ctx_t *c, int64_t deadline_us);
/* Sleeps up to us, returning early (true) when *flag becomes set. */
bool sub_sleep(sub_ctx_t *c, int64_t us, atomic_bool *flag);

#endif
