/* Private structures of lib/index shared by its .c files (never installed). The layout and
 * its reasons are described in docs/index.md; this header is the single place they live. */
#ifndef IC_INDEX_INTERNAL_H
#define IC_INDEX_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic/index.h"

/* ---------------------------------------------------------------- small maps (util.c) */

/* Open-addressing map from a non-zero-agnostic u64 key to a u64 value (backward-shift
 * deletion, no tombstones). Owner: whoever embeds it; guarded by the embedder's lock. */
typedef struct {
  uint64_t *keys;
  uint64_t *vals;
  uint8_t *used;
  uint32_t cap, count; /* cap is a power of two or 0 */
} u64map_t;

void u64map_free(u64map_t *m);
bool u64map_get(const u64map_t *m, uint64_t k, uint64_t *v);
int u64map_put(u64map_t *m, uint64_t k, uint64_t v); /* insert or overwrite; 0 / IC_ENOMEM */
bool u64map_del(u64map_t *m, uint64_t k);
void u64map_shrink(u64map_t *m); /* to load <= 3/8 once below 1/8 (and above 64 slots) */
uint64_t ic_mix64(uint64_t x);
uint64_t ic_hash_bytes(const void *p, size_t n);

/* Interned byte strings -> dense u32 ids, reference counted. Strings are stored in stable
 * chunks so that id -> pointer reads need no lock while the reader is pinned (ix_pin) or holds
 * a reference. Lifecycle of an id: interned (refs 0) -> referenced by records (replica records,
 * stats rows, tenant/model/scope/partition records, an ingest in progress) -> refs back to 0:
 * queued as a zero candidate -> the reclaim pass unhashes it if still unreferenced (under the
 * dir write lock, so a concurrent find cannot take a new reference) -> after every pinned
 * reader has left (ix_pins_wait) its memory is freed and the id reused. */
#define STR_CHUNK 4096u
#define STR_MAXCHUNKS 4096u /* 16 M distinct strings */
typedef struct {
  char **chunks[STR_MAXCHUNKS]; /* chunk i holds ids [i*STR_CHUNK, (i+1)*STR_CHUNK) */
  size_t *lens[STR_MAXCHUNKS];
  _Atomic uint32_t *refs[STR_MAXCHUNKS];
  uint8_t *hashed[STR_MAXCHUNKS]; /* 1 while findable (in slots) */
  _Atomic uint32_t n;             /* ids handed out so far (high-water mark) */
  uint32_t *slots;                /* hash -> id+1 (0 empty) */
  uint32_t cap, live;             /* slots capacity, ids in slots */
  uint32_t *free_ids;             /* released ids, reused first */
  uint32_t nfree, capfree;
  pthread_mutex_t zero_lock; /* guards zero: ids whose refs reached 0 (may be re-referenced) */
  uint32_t *zero;
  uint32_t nzero, capzero;
} strtab_t;

int strtab_init(strtab_t *t);
void strtab_free(strtab_t *t);
/* Returns the id of (p, n) or UINT32_MAX when absent. Caller holds a read lock. */
uint32_t strtab_find(const strtab_t *t, const char *p, size_t n);
/* Finds or inserts; caller holds the write lock. Returns UINT32_MAX on ENOMEM. */
uint32_t strtab_intern(strtab_t *t, const char *p, size_t n);
static inline const char *strtab_get(const strtab_t *t, uint32_t id) {
  return t->chunks[id / STR_CHUNK][id % STR_CHUNK];
}
static inline size_t strtab_len(const strtab_t *t, uint32_t id) {
  return t->lens[id / STR_CHUNK][id % STR_CHUNK];
}
/* A reference: taken under the dir lock (read is enough) or by a holder of another reference. */
static inline void strtab_ref(strtab_t *t, uint32_t id) {
  atomic_fetch_add_explicit(&t->refs[id / STR_CHUNK][id % STR_CHUNK], 1, memory_order_relaxed);
}
/* Drops a reference; the last one queues the id for the reclaim pass. */
void strtab_unref(strtab_t *t, uint32_t id);
/* Reclaim, phase 1 (dir write lock): unhashes the queued ids still unreferenced into *out
 * (malloc'd, *n ids). Phase 2 (dir write lock, after ix_pins_wait): strtab_release frees them. */
void strtab_unhash_zero(strtab_t *t, uint32_t **out, uint32_t *n);
void strtab_release(strtab_t *t, const uint32_t *ids, uint32_t n);
uint32_t strtab_count(const strtab_t *t); /* ids findable now */

/* Reader pins (a two-counter SRCU): anything that reads interned strings without holding a
 * reference (lookups, results, cap passes) runs pinned; the reclaim pass waits for every pin
 * taken before it unhashed its ids to end before freeing their memory. Striped counters keep
 * pinning cheap on many threads. */
#define PIN_STRIPES 16
typedef struct {
  _Atomic int64_t n;
  char pad[56]; /* one cache line each (padding, not _Alignas: the index is calloc'd) */
} pin_ctr_t;
typedef struct {
  _Atomic uint32_t epoch;
  pin_ctr_t ctr[2][PIN_STRIPES];
} pins_t;
typedef struct {
  uint8_t idx, stripe;
} pin_t;

/* ---------------------------------------------------------------- block tables */

/* One slot of a partition sub-table: 20 bytes, packed. State and the single inline holder
 * share the slot; several holders spill to a malloc'd array referenced from a/b. */
typedef struct __attribute__((packed, aligned(4))) {
  uint64_t key; /* 8-byte hash as big-endian u64, or blob id (M_LONG) */
  uint32_t a;   /* SINGLE: time id      MULTI: low half of spill pointer */
  uint32_t b;   /* SINGLE: token count  MULTI: high half of spill pointer */
  uint32_t meta;
} slot_t;

#define ST_MASK 3u
#define ST_EMPTY 0u
#define ST_SINGLE 1u
#define ST_MULTI 2u
#define M_LONG 4u /* key is a blob id (hash bytes not exactly 8 long) */
#define M_CNT 8u  /* reserved (LFU counters are looked up in the scope's lfu map) */
#define META_TIER(m) (((m) >> 8) & 0xffu)
#define META_REP(m) ((m) >> 16)
#define MK_META(rep, tier, flags) (((uint32_t)(rep) << 16) | ((uint32_t)(tier) << 8) | (flags))

typedef struct {
  uint32_t ts;    /* time id in the scope's time table */
  int32_t tokens; /* stored token count */
  uint32_t meta;  /* rep | tier */
} holder_t;

typedef struct {
  uint16_t n, cap;
  holder_t h[];
} spill_t;

#define SUB_BITS 2u
#define SUBS (1u << SUB_BITS)
typedef struct {
  slot_t *slots;
  uint32_t cap, count;
} sub_t;

/* (scope, adapter) content partition. */
typedef struct {
  struct scope *sc;
  uint32_t adapter; /* string id */
  uint32_t idx;     /* position in scope->parts */
  uint64_t seed;
  sub_t subs[SUBS];
} part_t;

typedef struct {
  uint32_t replica; /* string id (referenced until `released`) */
  bool dead;        /* cleared by ALL_CLEARED or emptied; holders awaiting reclaim */
  bool released;    /* dead, nothing left: its string reference was dropped */
  int64_t count;    /* live entries held (0 once dead) */
  int64_t pending;  /* dead entries not yet reclaimed */
} rep_t;

typedef struct {
  int64_t ns;
  uint32_t ref;  /* holders referencing this time */
  uint32_t next; /* free list */
} tslot_t;

typedef struct {
  uint8_t *bytes;
  uint32_t len;
  uint32_t ref; /* slots referencing this blob; 0 = free */
  uint32_t next;
  uint32_t gen; /* bumped each time the id is given to a key: ids are reused, ids + gen not */
} blob_t;

/* ---------------------------------------------------------------- scope lock */

/* Reader-writer lock of a scope: readers are lookups (a few µs), the only writer at a time is
 * whoever holds the scope's wlock mutex (holds of at most BATCH upserts or SWEEP_CHUNK slots).
 * Waits are that short, so both sides spin (then yield) instead of sleeping in the kernel: with
 * a futex-based rwlock every hand-over cost a sleep/wake round trip (tens of µs in a VM), which
 * throttled ingest under steady lookups to ~5% of its rate. Phase-fair: a waiting writer stops
 * new readers, and readers that queued behind a writer's hold get in before its next hold, so
 * neither side waits longer than one hold of the other. */
typedef struct {
  _Atomic uint32_t word;  /* readers in the low bits, plus the two writer bits */
  _Atomic uint32_t rwait; /* readers spinning for the lock */
} ixlock_t;
#define IXL_HELD 0x80000000u
#define IXL_WANT 0x40000000u
void ixlock_relax(unsigned *spins); /* pause, and yield the core after a while (util.c) */
static inline bool ixlock_try_rd(ixlock_t *l) {
  uint32_t v = atomic_load_explicit(&l->word, memory_order_relaxed);
  return !(v & (IXL_HELD | IXL_WANT)) &&
         atomic_compare_exchange_weak_explicit(&l->word, &v, v + 1, memory_order_acquire,
                                               memory_order_relaxed);
}
static inline void ixlock_rd(ixlock_t *l) {
  if (ixlock_try_rd(l)) return;
  atomic_fetch_add_explicit(&l->rwait, 1, memory_order_relaxed);
  unsigned spins = 0;
  while (!ixlock_try_rd(l))
    ixlock_relax(&spins);
  atomic_fetch_sub_explicit(&l->rwait, 1, memory_order_relaxed);
}
static inline void ixlock_rdun(ixlock_t *l) {
  atomic_fetch_sub_explicit(&l->word, 1, memory_order_release);
}
/* Caller holds the scope's wlock: there is never a second writer. */
static inline void ixlock_wr(ixlock_t *l) {
  unsigned spins = 0;
  /* readers queued behind the previous hold go first (bounded: one may be descheduled) */
  while (atomic_load_explicit(&l->rwait, memory_order_relaxed) && spins < 1024)
    ixlock_relax(&spins);
  atomic_fetch_or_explicit(&l->word, IXL_WANT, memory_order_relaxed);
  spins = 0;
  uint32_t v = IXL_WANT;
  while (!atomic_compare_exchange_weak_explicit(&l->word, &v, IXL_HELD, memory_order_acquire,
                                                memory_order_relaxed)) {
    v = IXL_WANT;
    ixlock_relax(&spins);
  }
}
static inline void ixlock_wrun(ixlock_t *l) {
  atomic_store_explicit(&l->word, 0, memory_order_release);
}

struct tmrec;
struct ic_index;

/* Scope = (tenant, model, hash_scheme): the lock domain of lookups and ingest. */
typedef struct scope {
  ixlock_t lock;         /* readers vs. the writer's commits */
  pthread_mutex_t wlock; /* serialises writers; a writer holding it may read without `lock`
                            and drops `lock` during long rebuilds (table growth) */
  struct ic_index *ix;
  uint32_t id, tenant, model, scheme; /* id: low bits of seq (partition seeds) */
  uint64_t seq;                       /* creation order, never reused: multi-scope lock order */
  struct tmrec *tm;
  struct tenantrec *tr;
  bool reserved;
  /* Lifecycle (records.c): a scope with no key, no ingest in progress (busy, under wlock) and
     no lookup result holding it (results) is retired under the dir write lock + wlock, then
     freed after the grace period. Writers that resolved it earlier see `retired` under wlock
     and resolve again. */
  _Atomic bool retired;
  uint32_t busy;               /* ingests between their first and last write hold (wlock) */
  _Atomic int32_t results;     /* lookup results that captured keys for a later credit */
  _Atomic int64_t distinct;    /* keys (slots) in the scope, dead holders included */
  uint32_t pos;                /* index in ix->scopes (dir lock) */
  struct scope *hnext;         /* next scope whose triple hashes alike (dir lock) */
  part_t **parts;
  uint32_t nparts, capparts;
  rep_t *reps;
  uint32_t nreps, capreps;
  u64map_t rep_map;        /* replica string id -> live rep index */
  _Atomic int64_t serving; /* live reps with count > 0 */
  tslot_t *times;
  uint32_t ntimes, captimes, time_free;
  u64map_t time_map; /* ns -> time id */
  blob_t *blobs;
  uint32_t nblobs, capblobs, blob_free;
  u64map_t blob_map;         /* XXH3(bytes) -> blob id; a 64-bit collision probes hash+1,
                                hash+2, ... (UINT64_MAX marks a freed link in such a run) */
  pthread_mutex_t lfu_lock;  /* guards lfu (credits run under the scope READ lock) */
  u64map_t lfu;              /* entry identity hash -> count, see lfu_key() */
  _Atomic uint32_t lfu_n;    /* lfu.count, readable without lfu_lock: 0 = no counter anywhere */
  int64_t dead_pending;      /* sum of reps[].pending */
  uint32_t rc_part, rc_sub;  /* reclaim cursor: partition, sub-table, */
  uint32_t rc_slot, rc_idle; /* slot; full passes that found nothing */
} scope_t;

typedef struct {
  uint32_t replica;
  int64_t last_seen, stats_reported;
  ic_index_stats_t s;
} statrow_t;

/* (tenant, model) record: distinct key counter, scopes (one per scheme), stats rows. */
typedef struct tmrec {
  uint32_t tenant, model;
  uint32_t pos;  /* index in ix->tms (dir lock) */
  bool retired;  /* unlinked (set under the dir write lock and stats_lock): stats writers that
                    resolved it earlier resolve again */
  _Atomic int64_t distinct;
  scope_t **scopes; /* grows under the dir write lock; read under the dir read lock */
  uint32_t nscopes, capscopes;
  pthread_rwlock_t stats_lock;
  statrow_t *stats;
  uint32_t nstats, capstats;
  u64map_t stat_map; /* replica id -> index in stats */
  /* index_entries gauge (store.c, ix_report_entries): a change of `distinct` pushes the record
     on the index's dirty list once; the report folds distinct - reported into its model's
     total, so a report costs the records that changed, not every record. */
  bool reserved;            /* of a reserved tenant: not in the gauge */
  _Atomic bool dirty;       /* on ix->dirty_tms */
  struct tmrec *dirty_next; /* written by the pusher before the CAS publishes it */
  int64_t reported;         /* distinct at the last report (report_lock) */
} tmrec_t;

struct qkey;
typedef struct tenantrec {
  uint32_t tenant;
  uint32_t pos, ntms; /* index in ix->tenants; its (tenant, model) records (dir lock) */
  bool reserved;
  _Atomic int64_t distinct;
  _Atomic int algo; /* algorithm cached at the last cap pass (ic_index_eviction_t) */
  /* Cached quota eviction order (store.c, quota_enforce): the oldest keys of the tenant up to
     age qthr, sorted, valid while qgen == qk_gen. Writers bump qgen (quota_touch) on any change
     that could put a key at or below qthr out of that order. qk/qn/qpos/qk_gen are guarded by
     the write locks of all the tenant's scopes (quota_enforce holds them). */
  _Atomic int64_t qthr; /* INT64_MIN: no cached order */
  _Atomic uint64_t qgen;
  struct qkey *qk;
  size_t qn, qpos;
  uint64_t qk_gen;
} tenantrec_t;

/* Cap victim candidate (see evict.c). */
typedef struct {
  int64_t ts;
  uint64_t eff;
  uint64_t key;  /* slot key */
  uint64_t hpre; /* first <= 8 hash bytes, big-endian, zero padded: order key */
  scope_t *sc;   /* NULL once its scope was retired (evq_forget_retired): skipped at pop */
  part_t *pp; /* partitions live as long as their scope, which outlives its candidates: safe
                 to prefetch through */
  uint32_t part;
  uint32_t rep;
  uint32_t hlen;
  uint32_t flags;            /* M_LONG */
  uint32_t adapter, replica; /* string ids, copied so comparisons need no scope lock */
  uint8_t *bytes; /* owned copy of hash bytes when hlen > 8 (exact tie-breaks), else NULL */
} cand_t;

struct ic_index {
  ic_index_config_t cfg;
  int64_t ttl, sweep;
  char **reserved;
  size_t nreserved;
  pthread_rwlock_t dir;
  strtab_t strs;
  pins_t pins;
  pthread_mutex_t str_reclaim_lock; /* one reclaim at a time; guards retired and the dead_* */
  uint32_t *retired;                /* unhashed ids waiting for the readers before them */
  uint32_t nretired, capretired;
  u64map_t tenant_map; /* tenant string id -> tenantrec_t* */
  u64map_t tm_map;     /* tenant<<32|model -> tmrec_t* */
  u64map_t scope_map;  /* hash(tenant, model, scheme) -> scope_t* (chained by hnext) */
  uint64_t scope_seq;  /* scopes created so far (dir write lock) */
  _Atomic bool idle_hint; /* some record may have become unreferenced (records.c) */
  /* Records unlinked by the reclaim, freed once the readers before it have left. */
  scope_t **dead_scopes;
  uint32_t ndead_scopes, capdead_scopes;
  tmrec_t **dead_tms;
  uint32_t ndead_tms, capdead_tms;
  tenantrec_t **dead_trs;
  uint32_t ndead_trs, capdead_trs;
  tmrec_t **tms;
  uint32_t ntms, captms;
  tenantrec_t **tenants;
  uint32_t ntenants, captenants;
  scope_t **scopes;
  uint32_t nscopes, capscopes;
  _Atomic int64_t total_entries, reserved_entries, distinct_keys;
  _Atomic int64_t dead_pending; /* holders of cleared replicas awaiting reclaim, all scopes */
  _Atomic bool ready;
  pthread_mutex_t report_lock;
  u64map_t reported;            /* model id -> its total entries as last reported (report_lock) */
  _Atomic(tmrec_t *) dirty_tms; /* records whose distinct changed since the last report */
  /* cap victim queue */
  pthread_mutex_t cap_lock;
  cand_t *q;
  size_t qn, qpos, qcap;
  void *rk, *rk2; /* radix records (16 bytes per candidate), kept between rebuilds */
  size_t rkcap;
  void *qord; /* = rk or rk2 after a sort: pop order (idx into q); NULL = q order */
  pthread_mutex_t extra_lock;
  cand_t *extra; /* min-heap */
  size_t nextra, capextra;
  _Atomic int64_t thr_ts; /* threshold: (eff, ts) <= (thr_eff, thr_ts) must be queued */
  _Atomic uint64_t thr_eff;
  _Atomic bool thr_on;
  bool q_invalid; /* (extra_lock) a candidate was dropped: the queue must be rebuilt */
  struct spec *_Atomic spec; /* predict-on-route table (speculative.c); NULL until first used */
};

/* ---------------------------------------------------------------- cross-file helpers */

/* Grows *arr (of *cap elements) to hold need elements: doubling, from 4. */
static inline bool grow_arr(void **arr, uint32_t *cap, uint32_t need, size_t elem) {
  if (need <= *cap) return true;
  uint32_t nc = *cap ? *cap * 2 : 4;
  while (nc < need)
    nc *= 2;
  void *n = realloc(*arr, (size_t)nc * elem);
  if (!n) return false;
  *arr = n;
  *cap = nc;
  return true;
}

/* Gives back most of *arr once fewer than a quarter of its *cap elements are used. */
static inline void shrink_arr(void **arr, uint32_t *cap, uint32_t used, size_t elem) {
  if (*cap <= 64 || used >= *cap / 4) return;
  uint32_t nc = 64;
  while (nc < used * 2)
    nc *= 2;
  void *n = realloc(*arr, (size_t)nc * elem);
  if (!n) return;
  *arr = n;
  *cap = nc;
}

/* qsort that tolerates (NULL, 0): UBSan rejects a NULL base even for zero elements. */
static inline void ix_sort(void *b, size_t n, size_t sz, int (*cmp)(const void *, const void *)) {
  if (n > 1) qsort(b, n, sz, cmp);
}

/* Writer side of a scope: wlock then lock (see scope_t). */
static inline void scope_wr(scope_t *sc) {
  pthread_mutex_lock(&sc->wlock);
  ixlock_wr(&sc->lock);
}
/* Ends a batch of reported changes (ic_index_config_t.on_change_flush). */
static inline void ix_flush_changes(ic_index_t *ix) {
  if (ix->cfg.on_change_flush) ix->cfg.on_change_flush(ix->cfg.change_ud);
}
/* The changes reported under the hold are flushed while it still orders them. */
static inline void scope_wrun(scope_t *sc) {
  ix_flush_changes(sc->ix);
  ixlock_wrun(&sc->lock);
  pthread_mutex_unlock(&sc->wlock);
}

/* now - t without signed overflow (producer timestamps are untrusted). */
static inline int64_t age_ns(int64_t now, int64_t t) {
  int64_t r;
  if (__builtin_sub_overflow(now, t, &r)) return t < 0 ? INT64_MAX : INT64_MIN;
  return r;
}

int64_t ix_now(const ic_index_t *ix);
int64_t ix_ttl_for(ic_index_t *ix, uint32_t tenant);
ic_index_eviction_t ix_algo_for(ic_index_t *ix, uint32_t tenant);
const char *ix_str(const ic_index_t *ix, uint32_t id);
pin_t ix_pin(ic_index_t *ix);
void ix_unpin(ic_index_t *ix, pin_t p);
/* True once every pin taken before the call has ended; false after timeout_ms without that. */
bool ix_pins_wait(ic_index_t *ix, int timeout_ms);
/* Drops the replica references of emptied replica records of sc (caller holds its write lock,
 * no ingest in progress): live records with no entry become dead, dead ones with nothing
 * pending release their string. */
void scope_release_reps(scope_t *sc);
/* Record lifecycle (records.c). Creation under the dir write lock; a record nothing refers to
 * any more is unlinked and freed by ic_index_reclaim (see the design note there). */
tmrec_t *tm_get_locked(ic_index_t *ix, uint32_t tenant, uint32_t model);
scope_t *scope_get_locked(ic_index_t *ix, uint32_t tenant, uint32_t model, uint32_t scheme);
/* The ingest's write hold of the scope of (tenant, model, scheme): sc as resolved, or the live
 * scope that replaced it when sc was retired meanwhile (NULL on ENOMEM). Marks it busy until
 * scope_wrun_ingest, so that it is not retired between the ingest's write holds. */
scope_t *scope_wr_ingest(ic_index_t *ix, scope_t *sc, uint32_t tenant, uint32_t model,
                         uint32_t scheme);
void scope_wrun_ingest(scope_t *sc);
/* Write-locks the stats of (tenant, model): tm as resolved, or the live record that replaced it
 * (NULL on ENOMEM, nothing locked). */
tmrec_t *tm_stats_wrlock(ic_index_t *ix, tmrec_t *tm, uint32_t tenant, uint32_t model);
/* A record may have lost its last reference (a scope's last key, a stats row): the next
 * reclaim looks. Cheap; call freely. */
static inline void ix_note_idle(ic_index_t *ix) {
  if (!atomic_load_explicit(&ix->idle_hint, memory_order_relaxed))
    atomic_store_explicit(&ix->idle_hint, true, memory_order_relaxed);
}
/* Frees the memory of a scope's tables (store.c); records.c drops its string references. */
void scope_free(scope_t *sc);
/* Every record, at ic_index_destroy. */
void ix_records_destroy(ic_index_t *ix);
/* Folds the changed distinct counters into the gauge (callback or not): after it, a record
 * that is not dirty has reported == distinct. */
void ix_report_drain(ic_index_t *ix);

/* Resolution of request strings to ids without inserting (read lock taken inside). */
uint32_t ix_find_str(ic_index_t *ix, const char *s);
scope_t *ix_find_scope(ic_index_t *ix, uint32_t tenant, uint32_t model, uint32_t scheme);
tmrec_t *ix_find_tm(ic_index_t *ix, uint32_t tenant, uint32_t model);
tenantrec_t *ix_find_tenant(ic_index_t *ix, uint32_t tenant);
/* One dir read lock for a lookup: ids of (tenant, model, scheme, adapter) and the records. */
void ix_resolve(ic_index_t *ix, const char *const names[4], uint32_t ids[4], scope_t **sc,
                tmrec_t **tm, tenantrec_t **tr);

/* Mutable rows of a lookup result (lookup.c owns the struct; load.c re-ranks them). */
ic_index_row_t *ix_result_rows_mut(ic_index_result_t *r, size_t *n);
/* Row edits for speculative.c: drop every row (and capture), append one, set the strategy. */
void ix_result_clear(ic_index_result_t *r);
int ix_result_push(ic_index_result_t *r, ic_index_row_t row);
void ix_result_set_strategy(ic_index_result_t *r, ic_index_strategy_t st);

/* Predict-on-route hooks (speculative.c), called by the public ingest / event / destroy entry
 * points after their own work, outside every index lock. */
void ix_spec_on_ingest(ic_index_t *ix, const ic_index_update_t *u);
void ix_spec_on_event(ic_index_t *ix, const ic_index_event_t *ev);
void ix_spec_free(ic_index_t *ix);
/* Predictions recorded on replica of (tenant, model) after since_ns (load.c's pick). */
int64_t ix_spec_routed_since(ic_index_t *ix, const char *tenant, const char *model,
                             const char *replica, int64_t since_ns);
/* True once any prediction was recorded (the table exists). */
bool ix_spec_active(ic_index_t *ix);
/* Siblings routed along a speculative row's prefix (the `routes` of its deepest predicted block,
 * noted by the merge), 0 for other rows. */
int ix_result_note_routes(ic_index_result_t *r, const char *replica, uint32_t routes);
uint32_t ix_result_routes_of(const ic_index_result_t *r, const char *replica);

/* Table access, caller holds the scope lock (read for find). */
part_t *scope_part(scope_t *sc, uint32_t adapter);
/* Resolves hash bytes to a slot key; false when a long key is unknown to the scope. */
bool scope_key(scope_t *sc, const uint8_t *p, size_t n, uint64_t *key, uint32_t *flags);
slot_t *part_find(part_t *p, uint64_t key, uint32_t flags);
/* The same with the slot hash computed once by the caller (chain walks prefetch with it). */
static inline uint64_t part_hash(const part_t *p, uint64_t key, uint32_t flags) {
  uint64_t x = key ^ p->seed ^ ((flags & M_LONG) ? 0x9e3779b97f4a7c15ULL : 0); /* long-key salt */
  x ^= x >> 30; /* = ic_mix64, inlined: chain walks hash every block */
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
/* Home slot of hash h in a sub-table of cap slots (the top SUB_BITS of h pick the sub-table). */
static inline uint32_t home_of(uint64_t h, uint32_t cap) {
  return (uint32_t)(((unsigned __int128)(h << SUB_BITS) * cap) >> 64);
}
/* The slot of key in p (hash h = part_hash(p, key, flags)), or NULL. Inline: chain walks call
   it for every block. (Branch-free compares of the first 3-8 slots measured no faster.) */
static inline slot_t *part_find_h(part_t *p, uint64_t h, uint64_t key, uint32_t flags) {
  sub_t *sb = &p->subs[h >> (64 - SUB_BITS)];
  if (!sb->cap) return NULL;
  uint32_t i = home_of(h, sb->cap);
  for (;;) {
    slot_t *s = &sb->slots[i];
    uint32_t m = s->meta;
    if ((m & ST_MASK) == ST_EMPTY) return NULL;
    if (s->key == key && (m & M_LONG) == (flags & M_LONG)) return s;
    if (++i == sb->cap) i = 0;
  }
}
/* A read prefetch the compiler must keep: GCC 12's tree DCE drops __builtin_prefetch once the
   caller is inlined into the chain walk (measured: lookups 2.5x slower). */
static inline void ix_prefetch(const void *a) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)a));
#else
  __builtin_prefetch(a);
#endif
}
/* The first `lines` cache lines from the home slot of h in (slots, cap). */
static inline void slots_prefetch(const slot_t *slots, uint32_t cap, uint64_t h, int lines) {
  if (!slots || !cap) return;
  const char *a = (const char *)&slots[home_of(h, cap)], *end = (const char *)&slots[cap];
  for (int l = 0; l < lines && a + 64 * l < end; l++)
    ix_prefetch(a + 64 * l);
}
/* A lookup probe: the home slot's line and the next (a 20-byte slot and the 1-3 slots a probe
   usually visits straddle a line boundary often enough that the second line would be a
   dependent miss). */
static inline void part_prefetch_h(part_t *p, uint64_t h) {
  sub_t *sb = &p->subs[h >> (64 - SUB_BITS)];
  slots_prefetch(sb->slots, sb->cap, h, 2);
}
/* An insert of a new key or a removal's backward shift: both scan the rest of the cluster, to
   the next empty slot (~8 slots, 3-4 lines at load 0.75). */
#define CLUSTER_LINES 6
static inline void part_prefetch_cluster(part_t *p, uint64_t h) {
  sub_t *sb = &p->subs[h >> (64 - SUB_BITS)];
  slots_prefetch(sb->slots, sb->cap, h, CLUSTER_LINES);
}
void part_prefetch_unlocked(part_t *p, uint64_t key); /* no scope lock held (cap queue) */
static inline spill_t *slot_spill(const slot_t *s) {
  spill_t *sp;
  memcpy(&sp, &s->a, sizeof sp);
  return sp;
}
/* Holders of slot s: *out points at tmp (single holder, decoded) or into the spill array. */
static inline uint32_t slot_holders(const slot_t *s, holder_t *tmp, const holder_t **out) {
  uint32_t m = s->meta;
  if ((m & ST_MASK) == ST_SINGLE) {
    tmp->ts = s->a;
    tmp->tokens = (int32_t)s->b;
    tmp->meta = m & ~(ST_MASK | M_LONG);
    *out = tmp;
    return 1;
  }
  if ((m & ST_MASK) == ST_MULTI) {
    spill_t *sp = slot_spill(s);
    *out = sp->h;
    return sp->n;
  }
  *out = NULL;
  return 0;
}
const uint8_t *scope_blob(scope_t *sc, uint64_t key, uint32_t *len);

/* LFU counter map identity of one entry. */
uint64_t lfu_key(uint32_t part, uint64_t key, uint32_t flags, uint32_t rep);

/* = ic_index_worst_tier, inline for the chain walk: 0 (unknown) wins, else the colder. */
static inline int32_t worst_tier(int32_t a, int32_t b) {
  if (a == 0 || b == 0) return 0;
  return a > b ? a : b;
}

/* Tier mapping: wire -> stored code, stored code -> wire. */
uint8_t tier_code(int32_t wire);
int32_t tier_wire(uint32_t code);

/* Eviction queue hooks (evict.c). */
void evq_note(ic_index_t *ix, scope_t *sc, part_t *p, uint64_t key, uint32_t flags, uint32_t rep,
              int64_t ts, uint64_t eff);
void evq_enforce_cap(ic_index_t *ix, int64_t evicted[2]);
void evq_free(ic_index_t *ix);
/* Drops the queued candidates of retired scopes (before records.c frees them). */
void evq_forget_retired(ic_index_t *ix);

/* Removal primitive (store.c): removes holder index hi of slot s (caller holds scope write
 * lock). `dead` = holder belongs to a cleared rep (counters already adjusted). */
void store_remove_holder(scope_t *sc, part_t *p, slot_t *s, uint32_t hi,
                         ic_index_change_reason_t why, int64_t when);
/* Or'ed into `why` by the quota pass (store.c) when it evicts for another reason (the fair
 * share at the cap): the pass keeps its own order valid, so the removal must not invalidate it. */
#define REASON_BY_QUOTA_PASS 0x100
static inline int64_t store_entry_ts(const scope_t *sc, uint32_t ts_id) {
  return sc->times[ts_id].ns;
}
uint64_t store_entry_eff(scope_t *sc, part_t *p, const slot_t *s, const holder_t *h);
void ix_report_entries(ic_index_t *ix);

#endif
