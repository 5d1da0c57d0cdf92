/* The cache index (lib/index): which replica holds which KV blocks, and the ranking that turns
 * it into LookupRoute hints (design: docs/index.md). Pure data structure: no I/O, no threads. */
#ifndef IC_INDEX_H
#define IC_INDEX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Conventions of this API
 * - Identity strings (tenant, model, hash scheme, adapter, replica id) are NUL-terminated;
 *   NULL is treated as "". Hash bytes are (data, len) and may contain NUL bytes, any length.
 * - Times are int64 Unix nanoseconds. IC_INDEX_TIME_ZERO marks Go's zero time.
 * - Thread safety: every function may be called concurrently from any number of threads on
 *   the same index, except ic_index_destroy. The index starts no thread and does no I/O.
 * - Strings returned by the index (replica ids, tenants, models in result rows) are interned:
 *   owned by the index and valid until ic_index_destroy.
 * - Functions return 0 or a negative IC_E* code (ic/err.h); lookups fail open (empty). */

typedef struct ic_index ic_index_t;

#define IC_INDEX_TIME_ZERO INT64_MIN
#define IC_INDEX_PROBE_TENANT "inferencecache.io/probe"

/* Byte string; layout-compatible with protobuf-c's ProtobufCBinaryData {len, data}. */
typedef struct {
  size_t len;
  const uint8_t *data;
} ic_index_bytes_t;

typedef enum {
  IC_INDEX_EVICT_LRU = 0,
  IC_INDEX_EVICT_LFU = 1,
} ic_index_eviction_t;

/* Ranker knobs. All zero disables pressure, SLO bias and TENANT_HOT. */
typedef struct {
  float pressure_weight;         /* default 1.0 */
  int32_t slo_tight_ttft_ms;     /* default 200 */
  float slo_tight_bias;          /* default 1.0 */
  float tenant_hot_min_hit_rate; /* default 0.1 */
  int64_t tenant_hot_max_age_ns; /* default 5 min; <= 0 disables TENANT_HOT */
} ic_index_ranker_t;

/* What a change-listener call reports. */
typedef enum {
  IC_INDEX_CHANGE_PREFIX_ADDED = 1,    /* a (key, replica) entry was created (not on refresh) */
  IC_INDEX_CHANGE_PREFIX_EVICTED = 2,  /* a (key, replica) entry was removed (see reason) */
  IC_INDEX_CHANGE_REPLICA_UPDATED = 3, /* stats ingested, or a REPLICA_UPDATED event applied */
  IC_INDEX_CHANGE_ALL_CLEARED = 4,     /* ALL_CLEARED applied: replica dropped from (tenant, model);
                                          no per-entry PREFIX_EVICTED calls follow for it */
} ic_index_change_type_t;

typedef enum {
  IC_INDEX_REASON_NONE = 0,  /* additions, updates */
  IC_INDEX_REASON_EVENT = 1, /* PREFIX_EVICTED event */
  IC_INDEX_REASON_TTL = 2,   /* TTL sweep */
  IC_INDEX_REASON_CAP = 3,   /* global entry cap */
  IC_INDEX_REASON_QUOTA = 4, /* per-tenant quota (over_entries) */
} ic_index_change_reason_t;

/* Passed to the change listener. All pointers are borrowed and valid only during the call.
 * scheme and hash are NULL/0 for REPLICA_UPDATED and ALL_CLEARED; adapter is "" there. */
typedef struct {
  ic_index_change_type_t type;
  ic_index_change_reason_t reason;
  const char *tenant, *model, *scheme, *adapter, *replica;
  const uint8_t *hash;
  size_t hash_len;
  int32_t token_count;  /* PREFIX_ADDED: stored token count; else 0 */
  int32_t tier;         /* PREFIX_ADDED: wire tier (0 for unknown tiers); else 0 */
  int64_t timestamp_ns; /* time of the change (ingest/event timestamp or the sweep's now) */
} ic_index_change_t;

/* Configuration. Initialise with ic_index_config_init (the reference's defaults), then
 * override. Every callback is optional (NULL). Callbacks may be called with internal locks
 * held: they must be cheap, thread-safe, and must never call back into the index. */
typedef struct {
  int64_t ttl_ns;            /* <= 0 -> 30 min */
  int64_t sweep_interval_ns; /* <= 0 -> 1 min; informational (the caller runs the ticker) */
  int64_t max_entries;       /* global cap on storage entries; <= 0 = unbounded */
  /* Fair share at the cap (default on; not in the reference): when an ingest takes the index
   * over max_entries, tenants holding more than max_entries / (tenants with entries) prefix keys
   * lose their oldest keys first, the largest first, before the global LRU/LFU order picks
   * victims among everyone. One tenant flooding the index then cannot evict the others. Off =
   * the reference's purely global order. */
  bool cap_fair_share;
  ic_index_ranker_t ranker;
  const char *const *reserved_tenants; /* copied at create; "" entries ignored */
  size_t n_reserved_tenants;

  /* Clock in Unix ns; NULL = realtime. Tests inject a fake one. */
  int64_t (*clock)(void *ud);
  void *clock_ud;

  /* Per-tenant policy, resolved by the server from /policy.
   * ttl: > 0 overrides the index TTL for that tenant; <= 0 = use the index TTL.
   * quota: return true and set *max_prefixes to enforce a distinct-key budget (0 enforces
   *   an empty budget; negative = no enforcement); false = unbounded.
   * eviction: IC_INDEX_EVICT_LFU or _LRU. */
  int64_t (*ttl_resolver)(void *ud, const char *tenant);
  bool (*quota_resolver)(void *ud, const char *tenant, int64_t *max_prefixes);
  ic_index_eviction_t (*eviction_resolver)(void *ud, const char *tenant);
  void *resolver_ud;

  /* Metrics sink. algorithm is "lru"/"lfu"; reason "cap"/"ttl"/"over_entries". */
  void (*set_index_entries)(void *ud, const char *model, int64_t n);
  void (*add_tenant_evictions)(void *ud, const char *tenant, const char *reason, int64_t n);
  void (*add_index_evictions)(void *ud, const char *algorithm, const char *reason, int64_t n);
  void *metrics_ud;

  /* Predict-on-route (docs/ranking.md, section 3; used only where the tenant's CachePolicy sets
   * strategy.predictOnRoute): speculative entries live predict_ttl_ns (<= 0 -> 1.5 s), at most
   * predict_max_entries (block, replica) entries exist at once (<= 0 -> 65536; the oldest are
   * dropped past it), and a speculative match scores predict_weight (<= 0 -> 0.5) per token
   * where a fresh real match scores up to 1. */
  int64_t predict_ttl_ns;
  int64_t predict_max_entries;
  float predict_weight;

  /* Change listener (feeds StreamCacheEvents). on_change reports each change as it is made;
   * on_change_flush, when set, ends each batch of them: it is called on the same thread before
   * the index releases the lock under which it reported changes (an ingest of 128 blocks into
   * one scope: every 32 of them), and after a change reported under no lock. A listener may
   * keep a thread's changes until then and publish them together; changes to one (tenant,
   * model, scheme) then still come out in the order they were made. It may also be called
   * when nothing was reported since the last call. */
  void (*on_change)(void *ud, const ic_index_change_t *change);
  void (*on_change_flush)(void *ud);
  void *change_ud;
} ic_index_config_t;

void ic_index_config_init(ic_index_config_t *cfg);

/* Returns a new index (owned by the caller, free with ic_index_destroy) or NULL on ENOMEM. */
ic_index_t *ic_index_create(const ic_index_config_t *cfg);
void ic_index_destroy(ic_index_t *ix);

/* Readiness flag for /readyz; the caller runs the sweep ticker. */
void ic_index_set_ready(ic_index_t *ix, bool ready);
bool ic_index_ready(const ic_index_t *ix);
int64_t ic_index_sweep_interval_ns(const ic_index_t *ix);

/* ------------------------------------------------------------------ ingest */

/* One PrefixEntry. Chain form when either block array is non-empty (lengths must match or
 * the entry is dropped); otherwise legacy single-blob form keyed by prefix_hash. */
typedef struct {
  ic_index_bytes_t prefix_hash;
  int32_t token_count;
  const ic_index_bytes_t *block_hashes;
  size_t n_block_hashes;
  const int32_t *block_token_counts;
  size_t n_block_token_counts;
  int32_t tier;        /* WIRE value: 0 -> T1, negative -> coldest sentinel */
  const char *adapter; /* NULL/"" = inherit the update's adapter */
} ic_index_prefix_t;

/* ReplicaStats payload (client_version is not stored). */
typedef struct {
  int64_t cache_memory_bytes;
  float hit_rate; /* non-finite -> 0 */
  float pressure; /* non-finite -> 0 */
  int64_t t2_hit_tokens;
  int64_t t2_query_tokens;
  /* Live load sample (additive wire fields 8-11), taken at the update's timestamp. */
  bool load_reported;
  int32_t num_waiting, num_running; /* negatives stored as 0 */
  float kv_usage;                   /* non-finite -> 0, clamped to [0, 1] */
} ic_index_stats_t;

/* One CacheStateUpdate. Nothing is retained: the index copies what it keeps. */
typedef struct {
  const char *replica, *model, *tenant, *scheme, *adapter;
  int64_t timestamp_us; /* 0 = now */
  const ic_index_prefix_t *prefixes;
  size_t n_prefixes;
  const ic_index_stats_t *stats; /* NULL = absent */
} ic_index_update_t;

/* Applies one update: prefixes, stats, then quota and cap enforcement, metrics.
 * Returns 0, IC_EINVAL (NULL arguments), IC_ENOMEM, or IC_ERANGE (65,535 replicas of the scope
 * all hold entries); on an error the update may be partly applied. */
int ic_index_ingest(ic_index_t *ix, const ic_index_update_t *u);

typedef enum {
  IC_INDEX_EVENT_UNSPECIFIED = 0,
  IC_INDEX_EVENT_PREFIX_ADDED = 1, /* no-op by design */
  IC_INDEX_EVENT_PREFIX_EVICTED = 2,
  IC_INDEX_EVENT_REPLICA_UPDATED = 3,
  IC_INDEX_EVENT_ALL_CLEARED = 4,
} ic_index_event_type_t;

typedef struct {
  int type; /* ic_index_event_type_t; unknown values are ignored */
  const char *replica, *model, *tenant, *adapter;
  ic_index_bytes_t prefix_hash;
  int64_t timestamp_us; /* 0 = now */
} ic_index_event_t;

/* Applies one event. ALL_CLEARED is visible to lookups on return and reclaims
 * memory lazily (see ic_index_maintain). Returns 0 or IC_EINVAL. */
int ic_index_apply_event(ic_index_t *ix, const ic_index_event_t *ev);

/* TTL sweep; also finishes pending lazy reclaims. Returns entries removed. */
int64_t ic_index_evict_expired(ic_index_t *ix);

/* Bounded background work: reclaims memory of cleared replicas, visiting about `budget`
 * table slots (in chunks of 4096, each under its own short write hold). Returns 0 when nothing
 * is left, else an estimate of the slots still to visit. Optional: ingest does a little of the
 * same work and the TTL sweep finishes it. */
size_t ic_index_maintain(ic_index_t *ix, size_t budget);

/* Identity strings (replica, model, tenant, scheme, adapter names) are interned and reference
 * counted: replica records, stats rows and the tenant/model/scope/partition records hold them.
 * A replica whose entries are all gone (cleared, expired, evicted) drops its reference at the
 * next sweep/reclaim. The tenant, (tenant, model) and (tenant, model, scheme) records are freed
 * too once no entry, stats row or record refers to them any more. ic_index_reclaim frees both.
 *
 * Interned pointers the index hands out (result rows, affinity hints, cache-state rows,
 * snapshots) stay valid while the caller holds a read guard taken before the call; callers
 * that never run ic_index_reclaim concurrently need none. The index guards itself inside every
 * call. Guards are cheap (two atomic operations on a per-thread stripe), nest, and must be
 * short: a reclaim waits for them. */
typedef struct {
  uint8_t idx, stripe;
} ic_index_guard_t;
ic_index_guard_t ic_index_guard(ic_index_t *ix);
void ic_index_unguard(ic_index_t *ix, ic_index_guard_t g);
/* Frees the records and interned strings nothing refers to any more once every guard taken
 * before the call has ended (waits up to ~50 ms for them, twice; what is still guarded waits for
 * the next call). Returns the number of strings freed; *records (optional) the records freed.
 * Call from a maintenance thread (not while holding a guard: it would wait for itself). */
size_t ic_index_reclaim(ic_index_t *ix, size_t *records);
/* Tenant, (tenant, model) and scope records alive now (tests, debugging). */
size_t ic_index_record_count(ic_index_t *ix);
/* Interned strings alive now (tests, debugging). */
size_t ic_index_string_count(ic_index_t *ix);

/* ------------------------------------------------------------------ lookup */

typedef struct {
  const char *model, *tenant, *scheme, *adapter;
  ic_index_bytes_t prefix_hash;
  int32_t token_count; /* carried, unused by the index */
  const ic_index_bytes_t *block_hashes;
  size_t n_block_hashes;
  const int32_t *block_token_counts;
  size_t n_block_token_counts;
  int32_t ttft_budget_ms;
  int32_t tbt_budget_ms; /* unused by scoring */
} ic_index_lookup_t;

typedef enum {
  IC_INDEX_STRATEGY_NONE = 0,
  IC_INDEX_STRATEGY_PREFIX_MATCH = 1,
  IC_INDEX_STRATEGY_TENANT_HOT = 2,
  IC_INDEX_STRATEGY_UNKNOWN_TENANT = 3,
  IC_INDEX_STRATEGY_UNKNOWN_MODEL = 4,
  IC_INDEX_STRATEGY_UNKNOWN_HASH_SCHEME = 5,
} ic_index_strategy_t;

/* ReplicaScore. tier is the WIRE value: 1/2/3, or 0 (unspecified/unknown/coldest sentinel). */
typedef struct {
  const char *replica_id; /* interned, owned by the index */
  float score;
  int32_t matched_tokens;
  float estimated_cache_hit_prob;
  int32_t tier;
} ic_index_row_t;

/* A lookup answer: rows sorted by score desc then replica id, a strategy, and the LFU
 * captures. Owned by the caller (ic_index_result_free); must not outlive its index. */
typedef struct ic_index_result ic_index_result_t;

/* LookupRoute at index level: empty keys -> NONE; prefix match; TENANT_HOT;
 * UNKNOWN_* classification. *out is always set on success (possibly empty, NONE). */
int ic_index_lookup_route(ic_index_t *ix, const ic_index_lookup_t *req, ic_index_result_t **out);
/* Public Lookup: prefix paths only, no empty tenant/model guard; strategy is
 * PREFIX_MATCH when rows exist, else NONE. */
int ic_index_lookup(ic_index_t *ix, const ic_index_lookup_t *req, ic_index_result_t **out);

ic_index_strategy_t ic_index_result_strategy(const ic_index_result_t *r);
size_t ic_index_result_count(const ic_index_result_t *r);
const ic_index_row_t *ic_index_result_rows(const ic_index_result_t *r); /* count entries */
/* Increments the LFU counters captured by the lookup (only delivered PREFIX_MATCH answers
 * should be credited). Entries evicted meanwhile are skipped (no dangling pointers). */
void ic_index_result_credit_hits(ic_index_result_t *r);
/* Keeps only rows whose replica is in keep[0..n) (order preserved) and drops the captures of
 * every other replica. No-op on an empty result. Returns 0 or IC_ENOMEM. */
int ic_index_result_retain_replicas(ic_index_result_t *r, const char *const *keep, size_t n);
void ic_index_result_free(ic_index_result_t *r);

/* ------------------------------------------------------------------ load-aware ranking
 * (docs/ranking.md; not in the reference, selected per tenant by CachePolicy
 * strategy.loadAwareRouting). Re-ranks a PREFIX_MATCH answer by the prefill a replica would save
 * against the work queued on it, from the live load samples of ReplicaStats fields 8-11:
 *   queue_i = waiting_i + running_weight * running_i
 *   score_i = matched_i * freshness_i - weight * (queue_i - min_j queue_j) * request_tokens
 * over the fleet F of replicas of (tenant, model) with a sample no older than max_age. A row
 * whose score is <= 0 (a cold but idle replica would serve the prompt sooner) or whose queue
 * exceeds overload_factor * mean_F queue + overload_slack falls out of the answer. If any
 * answered replica has no fresh sample, the answer is left exactly as it was. */
typedef struct {
  int64_t max_age_ns;     /* older samples count as missing; default 2 s */
  float weight;           /* queued tokens per saved token (beta); default 1 */
  float running_weight;   /* a running request as a fraction of a waiting one; default 0.02 */
  int32_t request_tokens; /* expected prefill per queued request; <= 0 = derived (below) */
  float overload_factor;  /* default 2 */
  float overload_slack;   /* requests; default 4 */
} ic_index_load_cfg_t;

void ic_index_load_cfg_init(ic_index_load_cfg_t *cfg);

/* One candidate for the pure scorer: its row, and its queue (negative = no fresh sample). */
typedef struct {
  ic_index_row_t row;
  float queue;
} ic_index_load_cand_t;

/* The pure scorer (unit-tested on its own): rewrites scores, sorts score desc then replica id,
 * and returns how many candidates stay (the rest are after them). fleet_min / fleet_mean are
 * the queue statistics of the fleet; request_tokens the expected prefill per queued request.
 * Returns n unchanged (and touches nothing) when any candidate has queue < 0. */
size_t ic_index_load_rank(ic_index_load_cand_t *c, size_t n, float fleet_min, float fleet_mean,
                          float request_tokens, const ic_index_load_cfg_t *cfg);

/* Applies ic_index_load_rank to a PREFIX_MATCH result of (tenant, model). prompt_tokens is the
 * request's token count: with request_tokens <= 0, the expected prefill per queued request is
 * prompt_tokens * max(1 - mean fleet hit rate, 1/8). Sets *changed when the answer differs from
 * today's ranking (a load sample was used). Dropped rows lose their LFU captures; a result left
 * with no rows keeps its strategy (the caller decides). Returns 0 or IC_ENOMEM. */
int ic_index_result_rank_by_load(ic_index_t *ix, ic_index_result_t *r, const char *tenant,
                                 const char *model, int64_t prompt_tokens,
                                 const ic_index_load_cfg_t *cfg, bool *changed);

/* True when replica's fresh queue is above the overload bound of its fleet (same rule as the
 * ranking); false without fresh samples. Used to keep AFFINITY_HINT off overloaded replicas. */
bool ic_index_replica_overloaded(ic_index_t *ix, const char *tenant, const char *model,
                                 const char *replica, const ic_index_load_cfg_t *cfg);

/* ------------------------------------------------------------------ predict-on-route
 * (docs/ranking.md, section 3; not in the reference). When LookupRoute sends a prompt to a replica, the
 * prompt's blocks are recorded on it as short-lived speculative entries, so siblings arriving
 * before the engine's events (the subscriber's flush window plus a round trip) find them. They
 * live in their own small table (lib/index/speculative.c, its own lock; lookups skip it with one
 * atomic load while it is empty), are reported with tier IC_INDEX_TIER_SPECULATIVE (never T1),
 * are replaced by the real entry when an ingest reports that block on that replica (confirmed),
 * expire after predict_ttl_ns, and go with the replica on ALL_CLEARED or a PREFIX_EVICTED of
 * the block. */
#define IC_INDEX_TIER_SPECULATIVE 4 /* wire CACHE_TIER_SPECULATIVE (additive enum value) */

/* Adds the speculative matches of req to a lookup result: a replica whose speculative run is
 * deeper than its real one gets matched_tokens = that run, score = predict_weight x tokens (or
 * its real score when higher), estimated_cache_hit_prob = predict_weight and tier SPECULATIVE;
 * rows are re-sorted. A NONE / TENANT_HOT / UNKNOWN_* result that gains rows becomes
 * PREFIX_MATCH (TENANT_HOT rows are replaced). Returns 0 or IC_ENOMEM. */
int ic_index_result_add_predicted(ic_index_t *ix, ic_index_result_t *r,
                                  const ic_index_lookup_t *req);

/* Records req's blocks on replica as speculative entries (blocks whose cumulative token count is
 * at most skip_tokens are left out: the replica already holds them for real). Re-recording a
 * live (block, replica) renews it and counts the route. Returns 0, IC_EINVAL or IC_ENOMEM. */
int ic_index_predict_record(ic_index_t *ix, const ic_index_lookup_t *req, const char *replica,
                            int32_t skip_tokens);

/* Counters of the speculative table (metrics, /snapshot). */
typedef struct {
  int64_t entries;     /* live speculative (block, replica) entries now */
  int64_t capacity;    /* predict_max_entries in effect */
  int64_t created;     /* entries created (a renewal is not a creation) */
  int64_t confirmed;   /* replaced by a real entry of the same block on the same replica */
  int64_t expired;     /* reached their TTL unconfirmed */
  int64_t dropped_cap; /* dropped, oldest first, to make room past the cap */
  int64_t cleared;     /* dropped with their replica (ALL_CLEARED) or block (PREFIX_EVICTED) */
} ic_index_predict_stats_t;
void ic_index_predict_stats(ic_index_t *ix, ic_index_predict_stats_t *out);

/* Live speculative entries per replica (all tenants) for /snapshot, sorted by replica id;
 * *rows is malloc'd, and so is each replica_id: free with ic_index_predict_replicas_free. */
typedef struct {
  char *replica_id;
  int64_t entries;
} ic_index_predict_replica_t;
int ic_index_predict_replicas(ic_index_t *ix, ic_index_predict_replica_t **rows, size_t *n);
void ic_index_predict_replicas_free(ic_index_predict_replica_t *rows, size_t n);

/* Expires speculative entries now (the maintenance ticker; lookups ignore expired ones anyway).
 * Returns how many expired. */
int64_t ic_index_predict_expire(ic_index_t *ix);

/* Load-aware AFFINITY_HINT (docs/ranking.md, section 3, used when both loadAwareRouting and
 * predictOnRoute are on): among the replicas of (tenant, model) with a fresh load sample, the one
 * with the least work, work_i = waiting_i + running_i + routes recorded on i by predictions
 * after its sample (requests the sample cannot show yet). Ties: the fewest prompts routed
 * there within the prediction TTL, then the consistent-hash pick `prefer`, then
 * hash(replica, tiebreak), so equal replicas share new prompts instead of herding onto one.
 * Returns false (and leaves *replica) without fresh samples. *replica is interned. */
bool ic_index_least_loaded_replica(ic_index_t *ix, const char *tenant, const char *model,
                                   const char *prefer, uint64_t tiebreak,
                                   const ic_index_load_cfg_t *cfg, const char **replica);

/* Consistent-hash fallback: SHA-256(seed) mod the sorted serving set of the
 * scope. Returns true and sets *replica (interned) on success. */
bool ic_index_affinity_hint(ic_index_t *ix, const char *tenant, const char *model,
                            const char *scheme, const uint8_t *seed, size_t seed_len,
                            const char **replica);

/* Miss-classifier presence checks; O(1). */
bool ic_index_has_any_for_tenant(ic_index_t *ix, const char *tenant);
bool ic_index_has_any_for_tenant_model(ic_index_t *ix, const char *tenant, const char *model);
bool ic_index_has_any_for_tenant_model_scheme(ic_index_t *ix, const char *tenant, const char *model,
                                              const char *scheme);

/* ------------------------------------------------------------------ reads */

typedef struct {
  const char *replica_id; /* interned */
  int64_t cache_memory_bytes;
  float hit_rate, pressure;
  int64_t t2_hit_tokens, t2_query_tokens;
  bool load_reported; /* the live load sample below (zeros when false) */
  int32_t num_waiting, num_running;
  float kv_usage;
} ic_index_stats_row_t;

/* GetCacheState: stats rows of (tenant, model) sorted by replica id, and the
 * distinct prefix keys of (tenant, model). *rows is malloc'd (caller free()s; NULL if 0). */
int ic_index_cache_state(ic_index_t *ix, const char *tenant, const char *model,
                         ic_index_stats_row_t **rows, size_t *n_rows, int64_t *total_prefixes);

typedef struct {
  const char *name; /* interned tenant or model */
  int64_t count;
} ic_index_count_t;

/* Aggregate: distinct prefix keys per non-reserved tenant, sorted by tenant;
 * *counts is malloc'd (caller free()s; NULL if 0). total == sum of counts. */
int ic_index_aggregate(ic_index_t *ix, ic_index_count_t **counts, size_t *n, int64_t *total);

/* EntryCountsByModel, sorted by model; same ownership as aggregate. */
int ic_index_entry_counts_by_model(ic_index_t *ix, ic_index_count_t **counts, size_t *n);

typedef struct {
  const char *replica_id, *tenant; /* interned */
  int64_t cache_memory_bytes;
  float hit_rate, pressure;
  int64_t last_update_ns;   /* stats liveness; IC_INDEX_TIME_ZERO when no stats */
  int64_t prefix_count;     /* storage entries of the replica for the tenant */
  int64_t last_event_at_ns; /* max last_seen of those; IC_INDEX_TIME_ZERO when none */
  bool stats_reported;
  int64_t t2_hit_tokens, t2_query_tokens;
  bool load_reported; /* live load sample of the stats record (zeros when false) */
  int32_t num_waiting, num_running;
  float kv_usage;
  int64_t load_observed_ns; /* when that sample was taken; IC_INDEX_TIME_ZERO when none */
} ic_index_snapshot_replica_t;

typedef struct {
  const char *tenant_id; /* interned; "" is the untenanted bucket */
  int64_t index_entries;
  float hit_rate;
  bool hit_rate_reported;
  int64_t memory_used; /* always 0 */
} ic_index_snapshot_tenant_t;

/* Snapshot: replicas sorted by (tenant, replica id), tenants by id. When one
 * (tenant, replica) has stats under several models with equal last_seen, the smallest model
 * wins (deterministic; the reference is not). Free with ic_index_snapshot_free. */
typedef struct {
  ic_index_snapshot_replica_t *replicas;
  size_t n_replicas;
  ic_index_snapshot_tenant_t *tenants;
  size_t n_tenants;
  int64_t total_prefixes;
  int64_t hot_prefixes; /* always 0 */
} ic_index_snapshot_t;

int ic_index_snapshot(ic_index_t *ix, ic_index_snapshot_t *out);
void ic_index_snapshot_free(ic_index_snapshot_t *s);

/* ------------------------------------------------------------------ introspection */

typedef struct {
  int64_t total_entries;    /* storage entries (key x replica), all tenants, live */
  int64_t reserved_entries; /* subset under reserved tenants */
  int64_t distinct_keys;    /* prefix keys, all tenants */
  int64_t pending_reclaim;  /* entries of cleared replicas not yet reclaimed */
  size_t memory_bytes;      /* bytes held by tables and side arrays (approximate; computing it
                               walks every slot: not for hot paths) */
} ic_index_counters_t;

void ic_index_counters(ic_index_t *ix, ic_index_counters_t *out);

/* LFU counter of one entry, or -1 when absent (tests, debugging). */
int64_t ic_index_access_count(ic_index_t *ix, const char *tenant, const char *model,
                              const char *scheme, const char *adapter, const uint8_t *hash,
                              size_t hash_len, const char *replica);

/* Helpers shared with the server. */
int32_t ic_index_worst_tier(int32_t a, int32_t b);
double ic_index_distinguishing_power(int64_t matching, int64_t total);
float ic_index_freshness(int64_t now_ns, int64_t t_ns, int64_t ttl_ns);
const char *ic_index_strategy_name(ic_index_strategy_t s); /* "PREFIX_MATCH", ..., "NO_HINT" */

#endif
