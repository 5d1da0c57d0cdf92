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
#define SUB_MAX_TARGETS 64 /* server replicas fed at once (addresses past it are ignored) */
/* Queue op kind beyond lib/kvevents' four: "the full state of this endpoint's replica has been
 * sent" (CacheStateUpdate.full_state, docs/ha.md). Urgent, never superseded by a clear. */
#define SUB_OP_SYNCED 5

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
  size_t cap, head, n;                              /* ring: n entries (live or dead) from head */
  size_t live, live_adds, live_urgent, live_evicts; /* urgent: not an add (evicts included) */
  size_t max_ops;
  uint64_t next_qseq;
  uint64_t dropped[6]; /* by op kind */
  bool stop;
  bool evicts_lazy; /* the sender batches evictions with the window: pushing one does not wake it */
  /* > 0: peeks stop before the first op pushed (recv_ns) at or after it. A window tick drains
   * what was pushed before the tick's grid time, so every replica's sender cuts the stream at
   * the same op however late it wakes (docs/ha.md, "One flush grid"). */
  int64_t cut_ns;
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
/* For servers that apply batched evictions: the next run of adds and evictions of one replica,
 * as one CacheStateUpdate can carry them (prefixes, then evicted): adds may move ahead of
 * earlier evictions of other prefixes, so the run stops at an add of a prefix evicted earlier in
 * it, at any other kind, or at max ops. Caller holds q->mu; returns 0 when the head is not an
 * add or eviction. */
size_t subq_peek_mixed(subq_t *q, ic_kv_op_t *out, size_t max, uint64_t *last_qseq,
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
  bool learned;            /* first connection handled (catch-up done): the tracker is the
                            * engine's state, so a "full state sent" marker may follow it */
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
  /* per server replica (label target = "ip:port", bounded) and the number of targets */
  ic_metric_family_t *t_connected, *t_depth, *t_dropped, *t_rpcs, *t_errors, *t_resyncs, *t_synced,
      *targets;
} sub_metrics_t;

/* ---- one server replica fed by this subscriber (targets.c) ---------------------------------
 * Each target has its own channel, bounded queue, sender (backoff) and connectivity watcher,
 * so a slow or dead replica never blocks the others; the engine thread decodes every event once
 * and pushes the ops into every target's queue. */
struct sub_ctx;
typedef struct sub_target {
  struct sub_ctx *c;
  char addr[80]; /* "ip:port": identity, metric label */
  char chan[96]; /* gRPC channel target ("ipv4:ip:port") */
  struct sub_grpc *rpc;
  subq_t q;
  pthread_t t_sender, t_watch;
  bool started;
  atomic_bool stop;        /* this target's threads end (removed from the set, or shutdown) */
  atomic_bool connected;   /* last known state of the channel */
  atomic_bool lost;        /* seen down since the last successful send */
  atomic_bool ever_sent;   /* a send to it has succeeded */
  atomic_bool kick;        /* watcher saw it come back: cut the sender's backoff short */
  atomic_int resync;       /* engine thread: 1 = re-report full state + marker, 2 = marker only */
  atomic_bool evict_batch; /* its last Ack set evicted_supported: evictions go batched */
  pthread_mutex_t stop_mu;
  pthread_cond_t stop_cv;
  uint64_t dropped_seen[6]; /* queue drops already mirrored into the counters (engine thread) */
  bool failing;             /* send_group's log throttle */
  int64_t last_log_us;
  ic_metric_t *m_connected, *m_depth, *m_dropped, *m_rpcs, *m_errors, *m_resyncs, *m_synced;
} sub_target_t;

typedef struct sub_ctx {
  /* flags */
  const char *server, *replica_id, *model_id, *tenant_id, *hash_scheme, *topic;
  const char *metrics_url, *engine_model_name, *http_bind;
  int64_t load_interval_us;   /* live load reports between stats scrapes; <= 0 = off */
  const char *server_ca_file; /* TLS to the server when set */
  const char *client_cert_file, *client_key_file; /* mTLS writer auth (creds.c) */
  const char *server_token_file; /* bearer token for writer auth (creds.c) */
  int64_t token_refresh_us;      /* how often the token file is looked at */
  struct ic_auth_token_file *token;
  int64_t window_us, stats_interval_us, cache_size_bytes, ceiling, queue_max_bytes;
  /* Every target's window ticks on one grid (origin + k x window_us), so the replicas get the
   * same batches at the same moment instead of up to a window apart (docs/ha.md). */
  int64_t tick_origin_us;
  int64_t max_backoff_us, replay_timeout_us, down_grace_us;
  ic_kv_cache_tier_t cache_tier;
  bool l2_mode, dp_suffix;
  ic_kv_lora_map_t *lora;
  size_t neps;
  sub_endpoint_t eps[SUB_MAX_ENDPOINTS];
  const char *replica_of_ep[SUB_MAX_ENDPOINTS]; /* replica id stamped on each ep's ops */
  char *owned_names[4 * SUB_MAX_ENDPOINTS];     /* --dp-rank-suffix ids, freed at exit */
  size_t nowned;
  int64_t resolve_interval_us; /* --server-resolve-interval; 0 = resolve once */
  bool batch_evictions;        /* --batch-evictions (true) */
  const struct sub_grpc_creds *creds; /* how every target's channel talks (creds.c) */
  /* runtime */
  pthread_rwlock_t tlock; /* the target set: read by the engine/stats threads, written by the
                           * resolver */
  sub_target_t *targets[SUB_MAX_TARGETS];
  size_t ntargets;
  atomic_bool engine_started; /* targets created later start with a full re-report */
  sub_metrics_t m;
  atomic_bool stop_engine, stop_stats;
  atomic_bool engine_restarted; /* the stats scrape saw the engine's process start time change */
  pthread_mutex_t stop_mu;
  pthread_cond_t stop_cv; /* wakes the stats/watch threads on shutdown */
} sub_ctx_t;

/* ---- targets (targets.c) ------------------------------------------------------------------ */
/* Resolves --server (a comma-separated list of host:port; a DNS name may resolve to several
 * addresses, e.g. a headless Service) and adds/removes targets to match. Returns the number of
 * addresses found (-1: nothing resolved; the set is then left as it is). */
int sub_targets_resolve(sub_ctx_t *c);
/* Re-resolves every --server-resolve-interval until shutdown. */
void *sub_resolver_thread(void *arg);
/* Stops and frees every target after draining each queue (in parallel) until deadline_us. */
void sub_targets_shutdown(sub_ctx_t *c, int64_t deadline_us);
/* Appends ops to every target's queue (caller holds tlock for reading); returns the ops dropped
 * on overflow, all targets together. paced (may be NULL): while *paced, wait (5 s at most) for
 * room in the queues of connected targets instead of dropping their oldest adds; a wait that
 * times out clears *paced. */
size_t sub_targets_push(sub_ctx_t *c, const ic_kv_op_t *ops, size_t n, bool *paced);
/* Mirrors queue drops into the counters (engine thread). */
void sub_targets_count_drops(sub_ctx_t *c);
/* Aggregate gauges (queue depth/bytes, server_connected) from the targets. */
void sub_targets_gauges(sub_ctx_t *c);
/* Sends one ReportCacheState request to every connected target at once (stats). Returns 0 when
 * at least one answered OK with Ack.accepted, else the first failing status (-2: answered OK
 * without Ack.accepted); counts each call. */
int sub_targets_call_all(sub_ctx_t *c, const char *method, const char *method_label,
                         const uint8_t *req, size_t len);
void sub_target_set_connected(sub_target_t *t, bool up);

struct sub_grpc_creds; /* below, with the gRPC client */
/* ---- writer credentials (creds.c) ---- */
/* Loads --server-ca-file, --client-cert-file/--client-key-file and --server-token-file into out
 * (PEM strings malloc'd; c->token created). Returns 0, or 1 after logging why (exit 1). */
int sub_creds_load(sub_ctx_t *c, struct sub_grpc_creds *out);
/* Frees the PEM strings of out (the token source stays with c until sub_creds_free_token). */
void sub_creds_release(struct sub_grpc_creds *out);
void sub_creds_free_token(sub_ctx_t *c);

/* ---- gRPC client (grpcc.c): one target's lib/rpc channel with the writer credentials (the
 * bearer token goes as metadata on every call) and a short, bounded reconnect backoff
 * (--max-backoff). Thread-safe. */
typedef struct sub_grpc sub_grpc_t;
/* How the channel talks to the server (creds.c loads it from the flags). All NULL = plaintext,
 * no credentials. */
typedef struct sub_grpc_creds {
  const char *ca_pem;                /* PEM roots to verify a TLS server with; NULL = plaintext */
  const char *cert_pem, *key_pem;    /* client certificate for mTLS writer auth (TLS only) */
  struct ic_auth_token_file *token;  /* bearer token source (not owned); NULL = none */
} sub_grpc_creds_t;
/* `authority`: the host name a TLS server is verified as when `target` is an address (NULL:
 * from the target). */
sub_grpc_t *sub_grpc_new(const char *target, int max_backoff_ms, const sub_grpc_creds_t *creds,
                         const char *authority);
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
/* One request to each of n channels at once; statuses[i] per channel, resps[i] (may be NULL)
 * gets channel i's response bytes when OK. */
void sub_grpc_call_each(sub_grpc_t *const *gs, size_t n, const char *method, const uint8_t *req,
                        size_t len, int timeout_ms, int *statuses, struct ic_buf *resps);
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
void *sub_sender_thread(void *arg); /* arg: sub_target_t */
void *sub_stats_thread(void *arg);
void *sub_watch_thread(void *arg); /* arg: sub_target_t */
/* Final drain of one target at shutdown: sends what is queued, bounded by deadline_us. */
void sub_sender_drain(sub_target_t *t, int64_t deadline_us);
/* Sleeps up to us, returning early (true) when *flag becomes set (or, for a target's stop flag,
 * when its kick is set). */
bool sub_sleep(sub_ctx_t *c, int64_t us, atomic_bool *flag);
bool sub_target_sleep(sub_target_t *t, int64_t us);

#endif
