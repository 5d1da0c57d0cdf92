/* Engine KV-event decoding and positional chain tracking (lib/kvevents, docs/subscriber.md):
 * msgpack EventBatch (every encoding vLLM/SGLang put on the wire) -> events -> index operations.
 *
 * Three layers, each usable alone:
 *   1. ic_kv_decode()      payload bytes -> ic_kv_batch_t (no I/O, no allocation once warm).
 *      Envelope as array [ts, events, dp_rank, ...] or map {"ts","events","data_parallel_rank"};
 *      events as positional arrays or tagged maps; hashes as any msgpack int, bin or str;
 *      unknown fields and unknown tags skipped; a malformed event is counted and skipped while
 *      the rest of its batch is kept. Only a broken envelope fails the whole batch.
 *   2. ic_kv_tracker_t     engine block hash -> {content fingerprint, cumulative tokens, adapter,
 *      tiers held}: the reverse map that turns random engine hashes into our frozen fingerprints.
 *   3. ic_kv_apply()       batch + tracker + LoRA map -> ordered ic_kv_op_t list (adds, T2
 *      downgrades, evictions, clears) ready to become CacheStateUpdate / CacheEvent messages.
 * Plus the engine /metrics scraper (text parser + stats derivation) used by the
 * subscriber's stats path.
 *
 * Thread-safety: none inside; every object belongs to one thread at a time. */
#ifndef IC_KVEVENTS_H
#define IC_KVEVENTS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * 1. Decoding */

typedef enum {
  IC_KV_EV_UNKNOWN = 0, /* unknown tag: skipped, counted */
  IC_KV_EV_STORED = 1,
  IC_KV_EV_REMOVED = 2,
  IC_KV_EV_CLEARED = 3,
} ic_kv_ev_type_t;
#define IC_KV_EV_NTYPES 4

/* Cache tiers as in the proto enum (CacheTier). */
enum { IC_KV_TIER_NONE = 0, IC_KV_TIER_T1 = 1, IC_KV_TIER_T2 = 2, IC_KV_TIER_T3 = 3 };

/* An engine block hash, normalised: an integer stands for the 8-byte big-endian
 * two's complement of its value (materialised by ic_kv_hash_bytes), bin/str for their raw bytes,
 * borrowed from the payload. */
typedef struct ic_kv_hash {
  const uint8_t *ext; /* bin/str bytes inside the payload (borrowed); NULL for integers */
  uint32_t len;       /* 8 for integers */
  uint64_t ival;      /* integer value as uint64 (two's complement for negatives) */
} ic_kv_hash_t;

/* Writes the hash's wire bytes into buf (when it is an integer) and returns a pointer to them. */
const uint8_t *ic_kv_hash_bytes(const ic_kv_hash_t *h, uint8_t buf[8]);

typedef struct ic_kv_event {
  ic_kv_ev_type_t type;
  uint32_t nhashes;
  const ic_kv_hash_t *hashes; /* into the batch */
  bool has_parent;
  ic_kv_hash_t parent;
  bool has_tokens; /* token_ids present and non-nil */
  uint32_t ntokens;
  const uint32_t *tokens; /* into the batch */
  int32_t block_size;
  bool has_lora_id;
  int64_t lora_id;
  const char *lora_name; /* borrowed from the payload, NOT NUL-terminated; NULL if absent */
  uint32_t lora_name_len;
  const char *medium; /* borrowed, not NUL-terminated; NULL if absent/nil */
  uint32_t medium_len;
  int tier; /* medium -> tier: GPU T1, CPU/host T2, disk/remote T3; T1 if absent */
  bool has_group_idx;
  int64_t group_idx;     /* KV cache group (hybrid models) */
  const char *spec_kind; /* kv_cache_spec_kind, borrowed, not NUL-terminated; NULL if absent */
  uint32_t spec_kind_len;
} ic_kv_event_t;

/* A decoded batch. Reused across ic_kv_decode() calls (arrays keep their capacity).
 * Borrowed pointers (bin/str hashes, lora_name, medium) point into the payload passed to
 * ic_kv_decode(): the payload must outlive the use of the batch. */
typedef struct ic_kv_batch {
  double ts; /* seconds; 0 when absent */
  bool has_dp_rank;
  int64_t dp_rank;   /* data_parallel_rank / attn_dp_rank */
  bool map_envelope; /* the envelope was a map */
  uint32_t nevents;
  ic_kv_event_t *events;
  /* Per-batch counters: events seen by type (known tags), malformed events by declared type
   * (IC_KV_EV_UNKNOWN when the tag itself could not be read), unknown tags skipped. */
  uint32_t seen[IC_KV_EV_NTYPES];
  uint32_t malformed[IC_KV_EV_NTYPES];
  uint32_t unknown_tags;
  /* storage (owned) */
  ic_kv_hash_t *hash_store;
  size_t nhash_store, cap_hash_store;
  uint32_t *tok_store;
  size_t ntok_store, cap_tok_store;
  size_t cap_events;
  void *offs; /* per-event store offsets while decoding */
  size_t cap_offs;
} ic_kv_batch_t;

void ic_kv_batch_init(ic_kv_batch_t *b);
void ic_kv_batch_free(ic_kv_batch_t *b);

/* Decodes one EventBatch payload into `b` (previous contents are discarded).
 * Returns 0 when the envelope decoded (individual events may still be malformed: see
 * b->malformed), IC_EPROTO when the envelope is unusable (garbage, truncated, wrong shape; the
 * batch then holds no events), IC_ENOMEM. Never reads outside [p, p+len). */
int ic_kv_decode(ic_kv_batch_t *b, const uint8_t *p, size_t len);

/* Microseconds for a batch timestamp: trunc(ts*1e6) when ts > 0, else 0. */
int64_t ic_kv_ts_us(double ts);

/* Maps a medium string to a tier (case-insensitive): CPU/host/DRAM/pinned/LMCache T2;
 * disk/SSD/NVMe/remote/storage/GDS/Mooncake T3; GPU and NULL/empty/unknown T1. */
int ic_kv_medium_tier(const char *m, size_t len);

const char *ic_kv_ev_type_name(ic_kv_ev_type_t t); /* "BlockStored", ... "unknown" */

/* ---------------------------------------------------------------------------------------------
 * 2. LoRA adapter names (--lora-adapter-names "1=sql-lora,2=chat-lora") */

typedef struct ic_kv_lora_map ic_kv_lora_map_t;

/* Parses the flag value ("id=name,..." pairs). Empty input gives an empty map. On error returns
 * NULL and writes a message into err (if not NULL). Caller owns the map. */
ic_kv_lora_map_t *ic_kv_lora_map_parse(const char *s, char *err, size_t errlen);
void ic_kv_lora_map_free(ic_kv_lora_map_t *m);
/* Name for an id, or NULL when unmapped. */
const char *ic_kv_lora_map_get(const ic_kv_lora_map_t *m, int64_t id);
size_t ic_kv_lora_map_size(const ic_kv_lora_map_t *m);

/* ---------------------------------------------------------------------------------------------
 * 3. Positional tracker and operations */

typedef struct ic_kv_tracker ic_kv_tracker_t;

typedef enum {
  IC_KV_OP_ADD = 1,       /* PrefixEntry at `tier` (T1 store, or best tier still held) */
  IC_KV_OP_DOWNGRADE = 2, /* PrefixEntry re-reported at T2/T3 after the engine evicted it from a
                             hotter tier (own CSU, own timestamp) */
  IC_KV_OP_EVICT = 3,     /* CacheEvent PREFIX_EVICTED */
  IC_KV_OP_CLEAR = 4,     /* CacheEvent ALL_CLEARED */
} ic_kv_op_kind_t;

typedef struct ic_kv_op {
  uint8_t kind;
  uint8_t tier;
  uint16_t ep; /* engine endpoint index (set by the caller of ic_kv_apply) */
  int32_t token_count;
  uint64_t prefix_hash; /* our content fingerprint (wire: 8 bytes BE) */
  int64_t ts_us;        /* producer timestamp, 0 = now */
  const char *adapter;  /* interned by the tracker ("" = base); valid while the tracker lives */
  int64_t recv_ns;      /* monotonic receive time, for lag metrics (set by the caller) */
} ic_kv_op_t;

typedef struct ic_kv_ops {
  ic_kv_op_t *v;
  size_t n, cap;
} ic_kv_ops_t;

void ic_kv_ops_free(ic_kv_ops_t *o);
int ic_kv_ops_push(ic_kv_ops_t *o, const ic_kv_op_t *op);

ic_kv_tracker_t *ic_kv_tracker_new(void);
void ic_kv_tracker_free(ic_kv_tracker_t *t);
size_t ic_kv_tracker_size(const ic_kv_tracker_t *t);
void ic_kv_tracker_clear(ic_kv_tracker_t *t);
/* Interns an adapter name (copied); returns the stable pointer or NULL (ENOMEM / too many). */
const char *ic_kv_tracker_intern(ic_kv_tracker_t *t, const char *s, size_t len);

/* Looks up an engine hash; returns true and fills the outputs when known. */
bool ic_kv_tracker_get(const ic_kv_tracker_t *t, const ic_kv_hash_t *h, uint64_t *prefix,
                       int32_t *token_count, const char **adapter, int *best_tier);

/* Appends one ADD op (ts 0, best tier held) per tracked block: what the engine still holds,
 * re-reported after the server comes back. Returns the number appended or IC_ENOMEM. */
int ic_kv_tracker_snapshot(const ic_kv_tracker_t *t, ic_kv_ops_t *out);

typedef struct ic_kv_apply_cfg {
  const ic_kv_lora_map_t *lora; /* may be NULL */
  bool l2_mode;                 /* --ignore-block-removed: removal re-reports at T2 */
} ic_kv_apply_cfg_t;

typedef struct ic_kv_apply_stats {
  uint32_t applied[IC_KV_EV_NTYPES]; /* events that changed state / produced ops */
  uint32_t no_entries;               /* BlockStored with hashes but no usable token_ids */
  uint32_t lora_dropped;             /* BlockStored dropped for an unmapped lora id */
  uint32_t other_group;              /* events of a non-full-attention KV cache group, skipped */
} ic_kv_apply_stats_t;

/* Applies a decoded batch to the tracker and appends the resulting ops in wire order (with
 * medium tiers): BlockStored -> ADD per full block; BlockRemoved -> EVICT, or DOWNGRADE
 * when a colder tier still holds the block (or in l2_mode); AllBlocksCleared -> CLEAR (ops already
 * in `out` are NOT touched: superseding queued adds is the queue's job). Hybrid models: events
 * of a KV cache group whose kv_cache_spec_kind is not full attention (sliding window, mamba) are
 * skipped, and removals carrying such a group_idx too: a sliding window evicting a block says
 * nothing about the full-attention copy that prefix reuse depends on. Returns 0 or IC_ENOMEM. */
int ic_kv_apply(ic_kv_tracker_t *t, const ic_kv_batch_t *b, const ic_kv_apply_cfg_t *cfg,
                ic_kv_ops_t *out, ic_kv_apply_stats_t *st);

/* ---------------------------------------------------------------------------------------------
 * 4. Engine /metrics scraper: Prometheus text -> ReplicaStats */

typedef enum {
  IC_KV_TIER_AUTO = 0,
  IC_KV_TIER_KV,
  IC_KV_TIER_GPU,
  IC_KV_TIER_CPU
} ic_kv_cache_tier_t;
/* Parses --cache-tier (exact: auto|kv|gpu|cpu). Returns 0 or IC_EINVAL. */
int ic_kv_cache_tier_parse(const char *s, ic_kv_cache_tier_t *out);

typedef struct ic_kv_scraper ic_kv_scraper_t;

typedef struct ic_kv_stats {
  int64_t cache_memory_bytes;
  float hit_rate;
  float pressure;
  int64_t t2_hit_tokens;
  int64_t t2_query_tokens;
  /* The engine's own load gauges, summed like pressure's (num_waiting + num_running is the load
   * pressure divides by the ceiling), and its KV usage (the tier-selected gauge, in [0, 1]). */
  int32_t num_waiting, num_running;
  float kv_usage;
  /* process_start_time_seconds of the engine (Prometheus client default), 0 when absent: a
   * change between scrapes means the engine process restarted. Set even when the derivation
   * fails for other reasons, as long as the exposition parsed. */
  double process_start_s;
} ic_kv_stats_t;

/* `scheme` "sglang" selects the SGLang profile, anything else vLLM. `model_name` may be NULL. */
ic_kv_scraper_t *ic_kv_scraper_new(const char *scheme, const char *model_name,
                                   ic_kv_cache_tier_t tier, int64_t cache_size_bytes,
                                   int64_t concurrency_ceiling);
void ic_kv_scraper_free(ic_kv_scraper_t *s);
/* True when the scheme is neither vllm, sglang nor empty (the caller logs the fallback). */
bool ic_kv_scraper_unknown_scheme(const ic_kv_scraper_t *s);
/* Derives stats from one exposition body. Returns 0, or IC_EPROTO with a reason in err
 * (no recognized families, incomplete load gauges, parse error). A failed derivation never
 * touches the hit-rate baseline. */
int ic_kv_scraper_derive(ic_kv_scraper_t *s, const char *body, size_t len, ic_kv_stats_t *out,
                         char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------------
 * 5. Sequence continuity (the 8-byte seq frame of each engine message)
 *
 * Decides what one received message is relative to what was applied before: the next one, a gap
 * to repair, a duplicate (a replay overlapping the live stream), an engine restart, or an
 * absurd number. A restarted engine numbers from 0 again, but a subscriber that reconnects with
 * backoff usually first sees a small non-zero number, so "seq == 0" is not the test: a number
 * at or below the last applied one whose payload differs from what was applied under that number
 * means a different engine. Payloads are remembered by a 64-bit digest for the last
 * IC_KV_SEQ_RECENT numbers (engine payloads carry a timestamp, so a restarted engine never
 * reproduces an old payload). */

#define IC_KV_SEQ_RECENT 16384
/* A forward jump beyond this many messages is not a gap but a corrupt or hostile number (an
 * engine at 100k messages/s needs ~3 minutes of partition for 2^24): the message is applied,
 * its number is not adopted and nothing is counted as missing. */
#define IC_KV_SEQ_MAX_GAP (1ULL << 24)
/* The replay protocol's end marker (-1 as 8 bytes); never a message number. */
#define IC_KV_SEQ_END UINT64_MAX

typedef enum {
  IC_KV_SEQ_FIRST = 0, /* nothing applied yet */
  IC_KV_SEQ_NEXT,      /* last + 1 */
  IC_KV_SEQ_GAP,       /* last + 1 < seq <= last + IC_KV_SEQ_MAX_GAP + 1: [last+1, seq-1] missing */
  IC_KV_SEQ_DUP,       /* seq <= last and the same payload was applied under it */
  IC_KV_SEQ_RESTART,   /* seq <= last with another (or an unremembered) payload */
  IC_KV_SEQ_INVALID,   /* the end marker, or a jump past IC_KV_SEQ_MAX_GAP */
} ic_kv_seq_verdict_t;

typedef struct ic_kv_seq_slot {
  uint64_t seq, digest;
  bool used;
} ic_kv_seq_slot_t;

typedef struct ic_kv_seq {
  bool have;
  uint64_t last;                             /* last applied number (valid when have) */
  ic_kv_seq_slot_t recent[IC_KV_SEQ_RECENT]; /* slot seq % IC_KV_SEQ_RECENT */
} ic_kv_seq_t;

/* The payload digest the tracker compares (XXH3 of the bytes). */
uint64_t ic_kv_seq_digest(const uint8_t *p, size_t len);
void ic_kv_seq_reset(ic_kv_seq_t *s);
ic_kv_seq_verdict_t ic_kv_seq_check(const ic_kv_seq_t *s, uint64_t seq, uint64_t digest);
/* Records an applied message; `last` moves forward only (a replayed older number is remembered
 * but does not move it back). */
void ic_kv_seq_applied(ic_kv_seq_t *s, uint64_t seq, uint64_t digest);
/* 1: `seq` was applied with this digest; 0: applied with another digest; -1: not remembered. */
int ic_kv_seq_match(const ic_kv_seq_t *s, uint64_t seq, uint64_t digest);
const char *ic_kv_seq_verdict_name(ic_kv_seq_verdict_t v);

#endif
