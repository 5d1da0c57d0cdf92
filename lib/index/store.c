/* Storage side of the index: construction, interning, scopes/partitions, the 20-byte slot
 * tables, the upsert/remove primitives, ingest, events, TTL sweep, lazy reclaim and quota. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "internal.h"

#define NS_PER_MIN (60LL * 1000000000LL)
/* Upserts per write-lock hold: bounds how long a lookup waits (~8 us). Each hand-over costs the
   writer the lookup in progress, so smaller batches starve ingest under steady lookups and
   larger ones show in the lookup p99 (bench_index under ingest: 8 -> writer 1.1-1.6 M/s,
   32 -> 2.0 M/s at busy/idle p99 1.2, 128 -> 3.2 M/s at 2.9-3.4). */
#define BATCH 32
#define SYNC_RECLAIM_SLOTS (1u << 16)

static inline const char *nz(const char *s) { return s ? s : ""; }

/* ---------------------------------------------------------------- config / lifecycle */

void ic_index_config_init(ic_index_config_t *c) {
  memset(c, 0, sizeof *c);
  c->ttl_ns = 30 * NS_PER_MIN;
  c->sweep_interval_ns = NS_PER_MIN;
  c->max_entries = 1000000;
  c->cap_fair_share = true;
  c->ranker.pressure_weight = 1.0f;
  c->ranker.slo_tight_ttft_ms = 200;
  c->ranker.slo_tight_bias = 1.0f;
  c->ranker.tenant_hot_min_hit_rate = 0.1f;
  c->ranker.tenant_hot_max_age_ns = 5 * NS_PER_MIN;
}

ic_index_t *ic_index_create(const ic_index_config_t *cfg) {
  ic_index_t *ix = calloc(1, sizeof *ix);
  if (!ix) return NULL;
  if (cfg)
    ix->cfg = *cfg;
  else
    ic_index_config_init(&ix->cfg);
  ix->ttl = ix->cfg.ttl_ns > 0 ? ix->cfg.ttl_ns : 30 * NS_PER_MIN;
  ix->sweep = ix->cfg.sweep_interval_ns > 0 ? ix->cfg.sweep_interval_ns : NS_PER_MIN;
  pthread_rwlock_init(&ix->dir, NULL);
  pthread_mutex_init(&ix->report_lock, NULL);
  pthread_mutex_init(&ix->cap_lock, NULL);
  pthread_mutex_init(&ix->extra_lock, NULL);
  pthread_mutex_init(&ix->str_reclaim_lock, NULL);
  if (strtab_init(&ix->strs)) goto fail;
  if (cfg && cfg->n_reserved_tenants) {
    ix->reserved = calloc(cfg->n_reserved_tenants, sizeof(char *));
    if (!ix->reserved) goto fail;
    for (size_t i = 0; i < cfg->n_reserved_tenants; i++) {
      const char *t = cfg->reserved_tenants[i];
      if (!t || !*t) continue;
      if (!(ix->reserved[ix->nreserved++] = strdup(t))) goto fail;
    }
  }
  ix->cfg.reserved_tenants = NULL;
  ix->cfg.n_reserved_tenants = 0;
  return ix;
fail:
  ic_index_destroy(ix);
  return NULL;
}

static void slots_free(slot_t *s, uint32_t cap);

void scope_free(scope_t *sc) {
  for (uint32_t i = 0; i < sc->nparts; i++) {
    part_t *p = sc->parts[i];
    for (uint32_t s = 0; s < SUBS; s++) {
      sub_t *sb = &p->subs[s];
      for (uint32_t k = 0; k < sb->cap; k++) {
        if ((sb->slots[k].meta & ST_MASK) == ST_MULTI) {
          spill_t *sp;
          memcpy(&sp, &sb->slots[k].a, sizeof sp);
          free(sp);
        }
      }
      slots_free(sb->slots, sb->cap);
    }
    free(p);
  }
  free(sc->parts);
  free(sc->reps);
  u64map_free(&sc->rep_map);
  free(sc->times);
  u64map_free(&sc->time_map);
  for (uint32_t i = 0; i < sc->nblobs; i++)
    free(sc->blobs[i].bytes);
  free(sc->blobs);
  u64map_free(&sc->blob_map);
  u64map_free(&sc->lfu);
  pthread_mutex_destroy(&sc->wlock);
  pthread_mutex_destroy(&sc->lfu_lock);
  free(sc);
}

void ic_index_destroy(ic_index_t *ix) {
  if (!ix) return;
  ix_spec_free(ix);
  ix_records_destroy(ix);
  u64map_free(&ix->reported);
  strtab_free(&ix->strs);
  free(ix->retired);
  pthread_mutex_destroy(&ix->str_reclaim_lock);
  for (size_t i = 0; i < ix->nreserved; i++)
    free(ix->reserved[i]);
  free(ix->reserved);
  evq_free(ix);
  pthread_rwlock_destroy(&ix->dir);
  pthread_mutex_destroy(&ix->report_lock);
  pthread_mutex_destroy(&ix->cap_lock);
  pthread_mutex_destroy(&ix->extra_lock);
  free(ix);
}

void ic_index_set_ready(ic_index_t *ix, bool r) { atomic_store(&ix->ready, r); }
bool ic_index_ready(const ic_index_t *ix) { return atomic_load(&((ic_index_t *)ix)->ready); }
int64_t ic_index_sweep_interval_ns(const ic_index_t *ix) { return ix->sweep; }

int64_t ix_now(const ic_index_t *ix) {
  return ix->cfg.clock ? ix->cfg.clock(ix->cfg.clock_ud) : ic_clock_realtime_ns();
}

const char *ix_str(const ic_index_t *ix, uint32_t id) { return strtab_get(&ix->strs, id); }

int64_t ix_ttl_for(ic_index_t *ix, uint32_t tenant) {
  if (ix->cfg.ttl_resolver) {
    int64_t t = ix->cfg.ttl_resolver(ix->cfg.resolver_ud, ix_str(ix, tenant));
    if (t > 0) return t;
  }
  return ix->ttl;
}

ic_index_eviction_t ix_algo_for(ic_index_t *ix, uint32_t tenant) {
  if (!ix->cfg.eviction_resolver) return IC_INDEX_EVICT_LRU;
  return ix->cfg.eviction_resolver(ix->cfg.resolver_ud, ix_str(ix, tenant)) == IC_INDEX_EVICT_LFU
             ? IC_INDEX_EVICT_LFU
             : IC_INDEX_EVICT_LRU;
}

/* ---------------------------------------------------------------- directory
 * The directory (tenant, (tenant, model) and scope records: lookup, creation, reclamation)
 * lives in records.c. */

/* Interns the strings of an update/event under the dir lock (read first, write on miss). */
/* Interns the strings of an update/event under the dir lock (read first, write on miss) and
 * takes a reference on each (taken under the lock, so the reclaim pass cannot unhash them in
 * between); the caller drops them with unref_ids when done. On failure nothing is held. */
static void unref_ids(ic_index_t *ix, const uint32_t *ids, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] != UINT32_MAX) strtab_unref(&ix->strs, ids[i]);
}

static int intern_ids(ic_index_t *ix, const char *const *in, uint32_t *out, size_t n) {
  bool miss = false;
  pthread_rwlock_rdlock(&ix->dir);
  for (size_t i = 0; i < n; i++) {
    const char *s = nz(in[i]);
    out[i] = strtab_find(&ix->strs, s, strlen(s));
    if (out[i] == UINT32_MAX) miss = true;
  }
  if (!miss)
    for (size_t i = 0; i < n; i++)
      strtab_ref(&ix->strs, out[i]);
  pthread_rwlock_unlock(&ix->dir);
  if (!miss) return 0;
  int rc = 0;
  pthread_rwlock_wrlock(&ix->dir);
  for (size_t i = 0; i < n; i++) {
    const char *s = nz(in[i]);
    out[i] = strtab_intern(&ix->strs, s, strlen(s));
    if (out[i] == UINT32_MAX)
      rc = IC_ENOMEM;
    else
      strtab_ref(&ix->strs, out[i]);
  }
  pthread_rwlock_unlock(&ix->dir);
  if (rc) {
    unref_ids(ix, out, n);
    for (size_t i = 0; i < n; i++)
      out[i] = UINT32_MAX;
  }
  return rc;
}

/* ---------------------------------------------------------------- tiers */

uint8_t tier_code(int32_t wire) {
  if (wire < 0) return 255; /* coldest, no claim (INT32_MAX in the reference) */
  if (wire == 0) return 1;  /* unspecified -> T1 */
  return wire >= 255 ? 255 : (uint8_t)wire;
}

int32_t tier_wire(uint32_t code) { return (code >= 1 && code <= 3) ? (int32_t)code : 0; }

int32_t ic_index_worst_tier(int32_t a, int32_t b) { return worst_tier(a, b); }

/* ---------------------------------------------------------------- time table */

static uint32_t time_intern(scope_t *sc, int64_t ns) {
  uint64_t v;
  if (u64map_get(&sc->time_map, (uint64_t)ns, &v)) return (uint32_t)v;
  uint32_t id;
  if (sc->time_free) {
    id = sc->time_free - 1;
    sc->time_free = sc->times[id].next;
  } else {
    if (!grow_arr((void **)&sc->times, &sc->captimes, sc->ntimes + 1, sizeof(tslot_t)))
      return UINT32_MAX;
    id = sc->ntimes++;
  }
  sc->times[id] = (tslot_t){ns, 0, 0};
  if (u64map_put(&sc->time_map, (uint64_t)ns, id)) {
    sc->times[id].next = sc->time_free;
    sc->time_free = id + 1;
    return UINT32_MAX;
  }
  return id;
}

static void time_unref(scope_t *sc, uint32_t id) {
  if (--sc->times[id].ref == 0) {
    u64map_del(&sc->time_map, (uint64_t)sc->times[id].ns);
    sc->times[id].next = sc->time_free;
    sc->time_free = id + 1;
  }
}

/* ---------------------------------------------------------------- blobs (long keys) */

const uint8_t *scope_blob(scope_t *sc, uint64_t key, uint32_t *len) {
  if (key >= sc->nblobs || !sc->blobs[key].ref) {
    *len = 0;
    return NULL;
  }
  *len = sc->blobs[key].len;
  return sc->blobs[key].bytes;
}

static bool blob_find(scope_t *sc, const uint8_t *p, size_t n, uint64_t *id, uint64_t *hslot) {
  uint64_t h = ic_hash_bytes(p, n), v;
  while (u64map_get(&sc->blob_map, h, &v)) {
    if (v != UINT64_MAX) {
      blob_t *b = &sc->blobs[v];
      if (b->len == n && (n == 0 || memcmp(b->bytes, p, n) == 0)) {
        *id = v;
        if (hslot) *hslot = h;
        return true;
      }
    }
    h++;
  }
  if (hslot) *hslot = h;
  return false;
}

static bool blob_intern(scope_t *sc, const uint8_t *p, size_t n, uint64_t *id) {
  uint64_t h;
  if (blob_find(sc, p, n, id, &h)) return true;
  if (n > UINT32_MAX) return false;
  uint32_t b;
  if (sc->blob_free) {
    b = sc->blob_free - 1;
    sc->blob_free = sc->blobs[b].next;
  } else {
    if (!grow_arr((void **)&sc->blobs, &sc->capblobs, sc->nblobs + 1, sizeof(blob_t))) return false;
    b = sc->nblobs++;
  }
  uint8_t *copy = malloc(n ? n : 1);
  if (!copy || u64map_put(&sc->blob_map, h, b)) {
    free(copy);
    sc->blobs[b] = (blob_t){NULL, 0, 0, sc->blob_free, sc->blobs[b].gen};
    sc->blob_free = b + 1;
    return false;
  }
  if (n) memcpy(copy, p, n);
  sc->blobs[b] = (blob_t){copy, (uint32_t)n, 0, 0, sc->blobs[b].gen + 1};
  *id = b;
  return true;
}

static void blob_unref(scope_t *sc, uint64_t id) {
  blob_t *b = &sc->blobs[id];
  if (--b->ref) return;
  uint64_t bid, h;
  if (blob_find(sc, b->bytes, b->len, &bid, &h)) {
    /* keep a marker when a collision chain continues past this hash */
    if (u64map_get(&sc->blob_map, h + 1, NULL))
      u64map_put(&sc->blob_map, h, UINT64_MAX);
    else
      u64map_del(&sc->blob_map, h);
  }
  free(b->bytes);
  *b = (blob_t){NULL, 0, 0, sc->blob_free, b->gen};
  sc->blob_free = (uint32_t)id + 1;
}

static inline uint64_t be64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}

bool scope_key(scope_t *sc, const uint8_t *p, size_t n, uint64_t *key, uint32_t *flags) {
  if (!p && n) return false; /* malformed byte string: matches nothing */
  if (n == 8) {
    *key = be64(p);
    *flags = 0;
    return true;
  }
  *flags = M_LONG;
  return blob_find(sc, p, n, key, NULL);
}

/* ---------------------------------------------------------------- partitions and slots */

part_t *scope_part(scope_t *sc, uint32_t adapter) {
  for (uint32_t i = 0; i < sc->nparts; i++)
    if (sc->parts[i]->adapter == adapter) return sc->parts[i];
  return NULL;
}

static part_t *scope_part_get(scope_t *sc, uint32_t adapter) {
  part_t *p = scope_part(sc, adapter);
  if (p) return p;
  if (!grow_arr((void **)&sc->parts, &sc->capparts, sc->nparts + 1, sizeof(void *))) return NULL;
  p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->sc = sc;
  p->adapter = adapter;
  p->idx = sc->nparts;
  p->seed = ic_mix64(((uint64_t)sc->id << 32) ^ adapter ^ 0x243f6a8885a308d3ULL);
  sc->parts[sc->nparts++] = p;
  strtab_ref(&sc->ix->strs, adapter);
  return p;
}

void part_prefetch_unlocked(part_t *p, uint64_t key) {
  uint64_t h = part_hash(p, key, 0);
  sub_t *sb = &p->subs[h >> (64 - SUB_BITS)];
  /* a torn (slots, cap) pair only mis-aims a prefetch, which cannot fault */
  slots_prefetch(__atomic_load_n(&sb->slots, __ATOMIC_RELAXED),
                 __atomic_load_n(&sb->cap, __ATOMIC_RELAXED), h, CLUSTER_LINES);
}

#define INGEST_AHEAD 32
static void ingest_prefetch(part_t *p, const ic_index_prefix_t *pr, size_t from, size_t to) {
  if (to > pr->n_block_hashes) to = pr->n_block_hashes;
  for (size_t j = from; j < to; j++)
    if (pr->block_hashes[j].len == 8 && pr->block_hashes[j].data)
      part_prefetch_cluster(p, part_hash(p, be64(pr->block_hashes[j].data), 0));
}

slot_t *part_find(part_t *p, uint64_t key, uint32_t flags) {
  return part_find_h(p, part_hash(p, key, flags), key, flags);
}

static sub_t *slot_sub(part_t *p, const slot_t *s, uint32_t *idx) {
  uint64_t h = part_hash(p, s->key, s->meta);
  sub_t *sb = &p->subs[h >> (64 - SUB_BITS)];
  *idx = (uint32_t)(s - sb->slots);
  return sb;
}

static void sub_place(sub_t *sb, part_t *p, const slot_t *s) {
  uint32_t i = home_of(part_hash(p, s->key, s->meta), sb->cap);
  while ((sb->slots[i].meta & ST_MASK) != ST_EMPTY)
    if (++i == sb->cap) i = 0;
  sb->slots[i] = *s;
}

/* Big slot arrays get their own 2 MiB-aligned mapping with transparent huge pages: a chain
 * lookup touches one random slot per block, and TLB misses would dominate otherwise. */
#define HUGE_MIN ((size_t)2 << 20)
static slot_t *slots_alloc(uint32_t cap) {
  size_t bytes = (size_t)cap * sizeof(slot_t);
  if (bytes < HUGE_MIN) return calloc(cap, sizeof(slot_t));
  size_t len = (bytes + HUGE_MIN - 1) & ~(HUGE_MIN - 1);
  uint8_t *raw =
      mmap(NULL, len + HUGE_MIN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  uint8_t *al = (uint8_t *)(((uintptr_t)raw + HUGE_MIN - 1) & ~(uintptr_t)(HUGE_MIN - 1));
  if (al > raw) munmap(raw, (size_t)(al - raw));
  size_t tail = (size_t)(raw + len + HUGE_MIN - (al + len));
  if (tail) munmap(al + len, tail);
  madvise(al, len, MADV_HUGEPAGE);
  return (slot_t *)al;
}

static void slots_free(slot_t *s, uint32_t cap) {
  if (!s) return;
  size_t bytes = (size_t)cap * sizeof(slot_t);
  if (bytes < HUGE_MIN)
    free(s);
  else
    munmap(s, (bytes + HUGE_MIN - 1) & ~(HUGE_MIN - 1));
}

/* Called by the writer holding wlock + lock. Big tables are rebuilt with `lock` dropped: no
 * other writer can run (wlock) and readers keep using the old array, so a resize never
 * stalls lookups; only the pointer swap happens under the write lock. */
static bool sub_grow(part_t *p, sub_t *sb) {
  /* x1.25 above 1024 slots keeps the load in [0.64, 0.8] (memory per membership stays within
     budget at any size); rehashing streams (homes are monotone in the hash), so it is cheap */
  uint32_t nc = sb->cap < 1024 ? (sb->cap ? sb->cap * 2 : 8) : sb->cap + sb->cap / 4;
  slot_t *ns = slots_alloc(nc);
  if (!ns) return false;
  sub_t n = {ns, nc, sb->count};
  bool drop = sb->cap >= 4096;
  if (drop) ixlock_wrun(&p->sc->lock);
  for (uint32_t i = 0; i < sb->cap; i++)
    if ((sb->slots[i].meta & ST_MASK) != ST_EMPTY) sub_place(&n, p, &sb->slots[i]);
  if (drop) ixlock_wr(&p->sc->lock);
  slots_free(sb->slots, sb->cap);
  /* atomic stores: part_prefetch_unlocked() peeks at these without the lock */
  __atomic_store_n(&sb->slots, n.slots, __ATOMIC_RELAXED);
  __atomic_store_n(&sb->cap, n.cap, __ATOMIC_RELAXED);
  sb->count = n.count;
  return true;
}

/* Returns the slot for key, creating an empty-state slot (meta = flags only, caller fills)
 * when absent; *created tells which. One probe in the common case. NULL on ENOMEM. */
static slot_t *part_upsert_slot(part_t *p, uint64_t key, uint32_t flags, bool *created) {
  uint64_t h = part_hash(p, key, flags);
  sub_t *sb = &p->subs[h >> (64 - SUB_BITS)];
  *created = false;
  uint32_t i = 0;
  if (sb->cap) {
    i = home_of(h, sb->cap);
    for (;;) {
      slot_t *s = &sb->slots[i];
      if ((s->meta & ST_MASK) == ST_EMPTY) break;
      if (s->key == key && (s->meta & M_LONG) == (flags & M_LONG)) return s;
      if (++i == sb->cap) i = 0;
    }
  }
  if ((uint64_t)(sb->count + 1) * 5 > (uint64_t)sb->cap * 4) {
    if (!sub_grow(p, sb)) return NULL;
    i = home_of(h, sb->cap);
    while ((sb->slots[i].meta & ST_MASK) != ST_EMPTY)
      if (++i == sb->cap) i = 0;
  }
  slot_t *s = &sb->slots[i];
  s->key = key;
  s->a = s->b = 0;
  s->meta = flags & M_LONG; /* state EMPTY until a holder is added */
  sb->count++;
  *created = true;
  return s;
}

/* Backward-shift deletion: no tombstones, probe chains stay short. */
static void sub_delete(part_t *p, sub_t *sb, uint32_t i) {
  uint32_t j = i;
  for (;;) {
    if (++j == sb->cap) j = 0;
    slot_t *s = &sb->slots[j];
    if ((s->meta & ST_MASK) == ST_EMPTY) break;
    uint32_t home = home_of(part_hash(p, s->key, s->meta), sb->cap);
    bool in = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (in) continue;
    sb->slots[i] = *s;
    i = j;
  }
  memset(&sb->slots[i], 0, sizeof(slot_t));
  sb->count--;
}

static void slot_set_holder(slot_t *s, uint32_t i, holder_t h) {
  if ((s->meta & ST_MASK) == ST_SINGLE) {
    s->a = h.ts;
    s->b = (uint32_t)h.tokens;
    s->meta = (h.meta & ~(ST_MASK | M_LONG)) | (s->meta & M_LONG) | ST_SINGLE;
  } else {
    slot_spill(s)->h[i] = h;
  }
}

static bool slot_add_holder(slot_t *s, holder_t h) {
  uint32_t st = s->meta & ST_MASK;
  if (st == ST_EMPTY) {
    s->a = h.ts;
    s->b = (uint32_t)h.tokens;
    s->meta = (h.meta & ~(ST_MASK | M_LONG)) | (s->meta & M_LONG) | ST_SINGLE;
    return true;
  }
  if (st == ST_SINGLE) {
    spill_t *sp = malloc(sizeof(spill_t) + 2 * sizeof(holder_t));
    if (!sp) return false;
    sp->n = 2;
    sp->cap = 2;
    sp->h[0] = (holder_t){s->a, (int32_t)s->b, s->meta & ~(ST_MASK | M_LONG)};
    sp->h[1] = h;
    memcpy(&s->a, &sp, sizeof sp);
    s->meta = (s->meta & M_LONG) | ST_MULTI;
    return true;
  }
  spill_t *sp = slot_spill(s);
  if (sp->n == sp->cap) {
    if (sp->cap == UINT16_MAX) return false; /* 65,535 holders of one key (one per rep index) */
    uint32_t nc = sp->cap >= 32768 ? UINT16_MAX : sp->cap * 2u;
    spill_t *n = realloc(sp, sizeof(spill_t) + nc * sizeof(holder_t));
    if (!n) return false;
    n->cap = (uint16_t)nc;
    sp = n;
    memcpy(&s->a, &sp, sizeof sp);
  }
  sp->h[sp->n++] = h;
  return true;
}

/* Drops holder i; returns true when the slot has no holder left. */
static bool slot_drop_holder(slot_t *s, uint32_t i) {
  if ((s->meta & ST_MASK) == ST_SINGLE) return true;
  spill_t *sp = slot_spill(s);
  sp->h[i] = sp->h[--sp->n];
  if (sp->n == 1) {
    holder_t h = sp->h[0];
    free(sp);
    s->a = h.ts;
    s->b = (uint32_t)h.tokens;
    s->meta = (h.meta & ~(ST_MASK | M_LONG)) | (s->meta & M_LONG) | ST_SINGLE;
  }
  return false;
}

uint64_t lfu_key(uint32_t part, uint64_t key, uint32_t flags, uint32_t rep) {
  return ic_mix64(key ^
                  ic_mix64(((uint64_t)part << 32 | (uint64_t)rep << 1 | (flags & M_LONG ? 1 : 0)) +
                           0x632be59bd9b4e019ULL));
}

uint64_t store_entry_eff(scope_t *sc, part_t *p, const slot_t *s, const holder_t *h) {
  if (!atomic_load_explicit(&sc->lfu_n, memory_order_relaxed)) return 0;
  uint64_t v = 0;
  pthread_mutex_lock(&sc->lfu_lock);
  u64map_get(&sc->lfu, lfu_key(p->idx, s->key, s->meta, META_REP(h->meta)), &v);
  pthread_mutex_unlock(&sc->lfu_lock);
  return v;
}

/* ---------------------------------------------------------------- counters + listener */

static void distinct_add(scope_t *sc, int64_t d) {
  ic_index_t *ix = sc->ix;
  if (atomic_fetch_add(&sc->distinct, d) == -d) ix_note_idle(ix); /* its last key went */
  atomic_fetch_add(&ix->distinct_keys, d);
  tmrec_t *tm = sc->tm;
  atomic_fetch_add(&tm->distinct, d);
  atomic_fetch_add(&sc->tr->distinct, d);
  if (!atomic_load_explicit(&tm->dirty, memory_order_relaxed) && !atomic_exchange(&tm->dirty, true)) {
    tmrec_t *head = atomic_load(&ix->dirty_tms); /* push: a dirty record is not freed, no ABA */
    do
      tm->dirty_next = head;
    while (!atomic_compare_exchange_weak(&ix->dirty_tms, &head, tm));
  }
}

static void notify(scope_t *sc, part_t *p, ic_index_change_type_t type,
                   ic_index_change_reason_t why, const slot_t *s, const holder_t *h, int64_t when) {
  ic_index_t *ix = sc->ix;
  if (!ix->cfg.on_change) return;
  uint8_t kb[8];
  const uint8_t *hp = kb;
  uint32_t hl = 8;
  if (s->meta & M_LONG) {
    hp = scope_blob(sc, s->key, &hl);
  } else {
    for (int i = 0; i < 8; i++)
      kb[i] = (uint8_t)(s->key >> (56 - 8 * i));
  }
  ic_index_change_t ch = {
      .type = type,
      .reason = why,
      .tenant = ix_str(ix, sc->tenant),
      .model = ix_str(ix, sc->model),
      .scheme = ix_str(ix, sc->scheme),
      .adapter = ix_str(ix, p->adapter),
      .replica = ix_str(ix, sc->reps[META_REP(h->meta)].replica),
      .hash = hp,
      .hash_len = hl,
      .token_count = type == IC_INDEX_CHANGE_PREFIX_ADDED ? h->tokens : 0,
      .tier = type == IC_INDEX_CHANGE_PREFIX_ADDED ? tier_wire(META_TIER(h->meta)) : 0,
      .timestamp_ns = when,
  };
  ix->cfg.on_change(ix->cfg.change_ud, &ch);
}

/* ---------------------------------------------------------------- primitives */

static uint32_t rep_live(scope_t *sc, uint32_t replica, bool create) {
  uint64_t v;
  if (u64map_get(&sc->rep_map, replica, &v)) return (uint32_t)v;
  if (!create) return UINT32_MAX;
  if (sc->nreps >= 65535) {
    /* 16-bit rep indices: recycle one that no holder references (pods come and go). Only
       reached once 65,535 replica names were seen in this scope; a linear scan is fine. */
    for (uint32_t i = 0; i < sc->nreps; i++) {
      rep_t *r = &sc->reps[i];
      if (r->count || r->pending) continue;
      if (!r->dead) u64map_del(&sc->rep_map, r->replica);
      if (!r->released) strtab_unref(&sc->ix->strs, r->replica);
      *r = (rep_t){.replica = replica, .dead = true, .released = true}; /* until mapped */
      if (u64map_put(&sc->rep_map, replica, i)) return UINT32_MAX;
      *r = (rep_t){.replica = replica};
      strtab_ref(&sc->ix->strs, replica);
      return i;
    }
    return UINT32_MAX;
  }
  if (!grow_arr((void **)&sc->reps, &sc->capreps, sc->nreps + 1, sizeof(rep_t))) return UINT32_MAX;
  if (u64map_put(&sc->rep_map, replica, sc->nreps)) return UINT32_MAX;
  sc->reps[sc->nreps] = (rep_t){.replica = replica};
  strtab_ref(&sc->ix->strs, replica);
  return sc->nreps++;
}

void scope_release_reps(scope_t *sc) {
  for (uint32_t i = 0; i < sc->nreps; i++) {
    rep_t *r = &sc->reps[i];
    if (r->released || r->count || r->pending) continue;
    if (!r->dead) { /* emptied (TTL, cap, events): forgotten like a cleared one */
      u64map_del(&sc->rep_map, r->replica);
      r->dead = true;
    }
    r->released = true;
    strtab_unref(&sc->ix->strs, r->replica);
  }
}

/* A change that may move a key of the scope's tenant to an age at or below the cached quota
 * threshold (or out of the cached order): the next quota pass rebuilds the order. A removal
 * can lower a key's age (its freshest holder gone); an upsert with an old producer timestamp
 * can create or refresh a key at or below the threshold. */
static inline void quota_touch(scope_t *sc, int64_t ts) {
  tenantrec_t *tr = sc->tr;
  int64_t thr = tr ? atomic_load_explicit(&tr->qthr, memory_order_relaxed) : INT64_MIN;
  if (thr != INT64_MIN && ts <= thr) atomic_fetch_add_explicit(&tr->qgen, 1, memory_order_relaxed);
}

void store_remove_holder(scope_t *sc, part_t *p, slot_t *s, uint32_t hi,
                         ic_index_change_reason_t why, int64_t when) {
  ic_index_t *ix = sc->ix;
  bool by_quota = why == IC_INDEX_REASON_QUOTA || (why & REASON_BY_QUOTA_PASS);
  why = (ic_index_change_reason_t)(why & ~REASON_BY_QUOTA_PASS);
  if (!by_quota) quota_touch(sc, INT64_MIN);
  holder_t tmp;
  const holder_t *hs;
  slot_holders(s, &tmp, &hs);
  holder_t h = hs[hi];
  rep_t *r = &sc->reps[META_REP(h.meta)];
  if (!r->dead) {
    if (--r->count == 0) atomic_fetch_sub(&sc->serving, 1);
    atomic_fetch_sub(&ix->total_entries, 1);
    if (sc->reserved) atomic_fetch_sub(&ix->reserved_entries, 1);
    notify(sc, p, IC_INDEX_CHANGE_PREFIX_EVICTED, why, s, &h, when);
  } else {
    r->pending--;
    sc->dead_pending--;
    atomic_fetch_sub(&ix->dead_pending, 1);
  }
  time_unref(sc, h.ts);
  if (atomic_load_explicit(&sc->lfu_n, memory_order_relaxed)) {
    pthread_mutex_lock(&sc->lfu_lock);
    u64map_del(&sc->lfu, lfu_key(p->idx, s->key, s->meta, META_REP(h.meta)));
    atomic_store(&sc->lfu_n, sc->lfu.count);
    pthread_mutex_unlock(&sc->lfu_lock);
  }
  if (slot_drop_holder(s, hi)) {
    uint64_t key = s->key;
    bool lng = s->meta & M_LONG;
    uint32_t idx;
    sub_t *sb = slot_sub(p, s, &idx);
    sub_delete(p, sb, idx);
    if (lng) blob_unref(sc, key);
    distinct_add(sc, -1);
  }
}

/* Counter deltas of one writer hold, published with one atomic add each (flush_delta) before
 * the hold ends: an ingest of 128 blocks pays 4 atomics instead of 512. */
typedef struct {
  int64_t distinct, total;
} delta_t;

static void flush_delta(scope_t *sc, delta_t *d) {
  if (d->distinct) distinct_add(sc, d->distinct);
  if (d->total) {
    atomic_fetch_add(&sc->ix->total_entries, d->total);
    if (sc->reserved) atomic_fetch_add(&sc->ix->reserved_entries, d->total);
  }
  d->distinct = d->total = 0;
}

/* upsert of one (key, replica) in partition p; caller holds the write lock. */
static int store_upsert(scope_t *sc, part_t *p, const uint8_t *hb, size_t hn, uint32_t rep,
                        int32_t tokens, uint8_t tier, uint32_t ts_id, int64_t ts,
                        ic_index_eviction_t algo, delta_t *d) {
  uint64_t key;
  uint32_t flags = 0;
  if (!hb && hn) return 0; /* malformed byte string: nothing to index */
  if (hn == 8) {
    key = be64(hb);
  } else {
    flags = M_LONG;
    if (!blob_intern(sc, hb, hn, &key)) return IC_ENOMEM;
  }
  bool created;
  slot_t *s = part_upsert_slot(p, key, flags, &created);
  if (!s) {
    if (flags && !sc->blobs[key].ref) {
      sc->blobs[key].ref = 1;
      blob_unref(sc, key);
    }
    return IC_ENOMEM;
  }
  if (created) {
    if (flags) sc->blobs[key].ref++;
    d->distinct++;
  } else {
    holder_t tmp;
    const holder_t *hs;
    uint32_t n = slot_holders(s, &tmp, &hs);
    for (uint32_t i = 0; i < n; i++) {
      if (META_REP(hs[i].meta) != rep) continue;
      holder_t h = hs[i];
      sc->times[ts_id].ref++;
      time_unref(sc, h.ts);
      h.ts = ts_id;
      h.tokens = tokens;
      h.meta = MK_META(rep, tier, h.meta & M_CNT);
      slot_set_holder(s, i, h);
      quota_touch(sc, ts);
      uint64_t eff = algo == IC_INDEX_EVICT_LFU ? store_entry_eff(sc, p, s, &h) : 0;
      if (!sc->reserved) evq_note(sc->ix, sc, p, key, flags, rep, ts, eff);
      return 0;
    }
  }
  holder_t h = {ts_id, tokens, MK_META(rep, tier, 0)};
  if (!slot_add_holder(s, h)) {
    if (created) {
      uint32_t idx;
      sub_t *sb = slot_sub(p, s, &idx);
      sub_delete(p, sb, idx);
      if (flags) blob_unref(sc, key);
      d->distinct--;
    }
    return IC_ENOMEM;
  }
  sc->times[ts_id].ref++;
  rep_t *r = &sc->reps[rep];
  if (r->count++ == 0) atomic_fetch_add(&sc->serving, 1);
  d->total++;
  quota_touch(sc, ts);
  if (!sc->reserved) evq_note(sc->ix, sc, p, key, flags, rep, ts, 0);
  notify(sc, p, IC_INDEX_CHANGE_PREFIX_ADDED, IC_INDEX_REASON_NONE, s, &h, ts);
  return 0;
}

/* ---------------------------------------------------------------- reclaim (lazy clear) */

/* Removes holders matching the predicate in one sub-table (caller holds the write lock). */
typedef bool (*holder_pred)(scope_t *sc, const holder_t *h, void *ud);

/* Slots per write-lock hold for sweeps and reclaim: bounds how long a lookup can wait. */
#define SWEEP_CHUNK 4096u

static int64_t sub_sweep(scope_t *sc, part_t *p, sub_t *sb, uint32_t from, uint32_t to,
                         holder_pred pred, void *ud, ic_index_change_reason_t why, int64_t when,
                         int64_t *live_removed) {
  int64_t removed = 0;
  if (to > sb->cap) to = sb->cap;
  for (uint32_t i = from; i < to;) {
    slot_t *s = &sb->slots[i];
    holder_t tmp;
    const holder_t *hs;
    uint32_t n = slot_holders(s, &tmp, &hs), j;
    for (j = 0; j < n && !pred(sc, &hs[j], ud); j++) {
    }
    if (j == n) {
      i++;
      continue;
    }
    if (!sc->reps[META_REP(hs[j].meta)].dead && live_removed) (*live_removed)++;
    store_remove_holder(sc, p, s, j, why, when);
    removed++;
    /* re-examine slot i: it may hold another match or a shifted slot */
  }
  return removed;
}

static bool pred_dead(scope_t *sc, const holder_t *h, void *ud) {
  (void)ud;
  return sc->reps[META_REP(h->meta)].dead;
}

/* Reclaims cleared holders, at most `budget` chunks of SWEEP_CHUNK slots, each chunk in its
 * own write hold. Slots moved by other writers between holds can be missed by a pass; the
 * pass then restarts (and gives up after 3 fruitless passes: a bookkeeping safety net).
 * Returns non-zero while work remains. */
static size_t scope_reclaim(scope_t *sc, size_t budget) {
  for (; budget > 0; budget--) {
    scope_wr(sc);
    if (sc->dead_pending <= 0) {
      sc->dead_pending = 0;
      sc->rc_part = sc->rc_sub = sc->rc_slot = sc->rc_idle = 0;
      scope_release_reps(sc);
      scope_wrun(sc);
      return 0;
    }
    if (sc->rc_part >= sc->nparts) {
      sc->rc_part = sc->rc_sub = sc->rc_slot = 0;
      if (++sc->rc_idle > 3) {
        atomic_fetch_sub(&sc->ix->dead_pending, sc->dead_pending);
        sc->dead_pending = 0;
        sc->rc_idle = 0;
        scope_wrun(sc);
        return 0;
      }
    }
    if (sc->nparts) {
      part_t *p = sc->parts[sc->rc_part];
      sub_t *sb = &p->subs[sc->rc_sub];
      if (sub_sweep(sc, p, sb, sc->rc_slot, sc->rc_slot + SWEEP_CHUNK, pred_dead, NULL,
                    IC_INDEX_REASON_NONE, 0, NULL))
        sc->rc_idle = 0;
      sc->rc_slot += SWEEP_CHUNK;
      if (sc->rc_slot >= sb->cap) {
        sc->rc_slot = 0;
        if (++sc->rc_sub == SUBS) {
          sc->rc_sub = 0;
          sc->rc_part++;
        }
      }
    }
    scope_wrun(sc);
  }
  return 1;
}

static scope_t **snapshot_scopes(ic_index_t *ix, uint32_t *n) {
  pthread_rwlock_rdlock(&ix->dir);
  *n = ix->nscopes;
  scope_t **v = malloc((*n ? *n : 1) * sizeof *v);
  if (v && *n) memcpy(v, ix->scopes, *n * sizeof *v);
  pthread_rwlock_unlock(&ix->dir);
  if (!v) *n = 0;
  return v;
}

size_t ic_index_maintain(ic_index_t *ix, size_t budget) {
  if (atomic_load_explicit(&ix->dead_pending, memory_order_relaxed) <= 0) return 0;
  uint32_t n;
  pin_t pn = ix_pin(ix); /* the scopes of the copy below */
  scope_t **v = snapshot_scopes(ix, &n);
  size_t chunks = budget / SWEEP_CHUNK + 1, left = 0; /* budget is in slots */
  for (uint32_t i = 0; i < n; i++) {
    size_t more = chunks ? scope_reclaim(v[i], chunks) : 1;
    if (more) left += SWEEP_CHUNK;
    chunks = chunks > 1 ? chunks - 1 : 0;
  }
  ix_unpin(ix, pn);
  free(v);
  return left;
}

/* ---------------------------------------------------------------- ingest */

static void report_evictions(ic_index_t *ix, const int64_t ev[2], const char *reason) {
  if (!ix->cfg.add_index_evictions) return;
  if (ev[0] > 0) ix->cfg.add_index_evictions(ix->cfg.metrics_ud, "lru", reason, ev[0]);
  if (ev[1] > 0) ix->cfg.add_index_evictions(ix->cfg.metrics_ud, "lfu", reason, ev[1]);
}

static int64_t quota_enforce(ic_index_t *ix, uint32_t tenant, int64_t budget, int64_t now,
                             ic_index_change_reason_t why);
static int64_t fair_share_enforce(ic_index_t *ix, int64_t now, int64_t evicted[2]);

static int64_t ts_from_us(int64_t us, int64_t now) {
  if (us == 0) return now;
  if (us > INT64_MAX / 1000) return INT64_MAX;
  if (us < INT64_MIN / 1000) return INT64_MIN + 1;
  return us * 1000;
}

static int ingest(ic_index_t *ix, const ic_index_update_t *u, const uint32_t id[5]);

int ic_index_ingest(ic_index_t *ix, const ic_index_update_t *u) {
  if (!ix || !u || (u->n_prefixes && !u->prefixes)) return IC_EINVAL;
  /* ids: replica, model, tenant, scheme, adapter, referenced for the whole ingest */
  const char *names[5] = {u->replica, u->model, u->tenant, u->scheme, u->adapter};
  uint32_t id[5];
  int rc = intern_ids(ix, names, id, 5);
  if (rc) return rc;
  pin_t pn = ix_pin(ix); /* the records it resolves, and cap candidates compared unlocked */
  rc = ingest(ix, u, id);
  ix_unpin(ix, pn);
  unref_ids(ix, id, 5);
  ix_spec_on_ingest(ix, u); /* real blocks replace speculative ones (speculative.c) */
  return rc;
}

static int ingest(ic_index_t *ix, const ic_index_update_t *u, const uint32_t id[5]) {
  int rc = 0;
  int64_t now = ix_now(ix);
  int64_t ts = ts_from_us(u->timestamp_us, now);
  int64_t budget = 0;
  bool has_quota =
      ix->cfg.quota_resolver && ix->cfg.quota_resolver(ix->cfg.resolver_ud, nz(u->tenant), &budget);
  tmrec_t *tm = NULL;
  scope_t *sc = NULL;
  bool want_sc = *nz(u->scheme) && u->n_prefixes;
  uint64_t tv = 0;
  /* the records usually exist: a read lock keeps lookups' directory reads flowing */
  {
    const char *nm[4] = {nz(u->tenant), nz(u->model), nz(u->scheme), ""};
    uint32_t rid[4];
    tenantrec_t *trp;
    ix_resolve(ix, nm, rid, &sc, &tm, &trp);
    tv = (uint64_t)(uintptr_t)trp;
  }
  if (!tm || !tv || (want_sc && !sc)) {
    pthread_rwlock_wrlock(&ix->dir);
    tm = tm_get_locked(ix, id[2], id[1]);
    if (tm && want_sc) sc = scope_get_locked(ix, id[2], id[1], id[3]);
    u64map_get(&ix->tenant_map, id[2], &tv);
    pthread_rwlock_unlock(&ix->dir);
  }
  if (!want_sc) sc = NULL;
  if (!tm || (*nz(u->scheme) && u->n_prefixes && !sc)) return IC_ENOMEM;
  tenantrec_t *tr = (tenantrec_t *)(uintptr_t)tv;
  ic_index_eviction_t algo = (ic_index_eviction_t)atomic_load(&tr->algo);

  if (sc) {
    /* adapter ids per prefix (interned up front, outside the scope lock) */
    uint32_t *ad = malloc(u->n_prefixes * sizeof *ad);
    if (!ad) return IC_ENOMEM;
    for (size_t i = 0; i < u->n_prefixes; i++) {
      const char *a = u->prefixes[i].adapter;
      if (a && *a) {
        if ((rc = intern_ids(ix, &a, &ad[i], 1))) {
          for (size_t k = 0; k < i; k++)
            if (u->prefixes[k].adapter && *u->prefixes[k].adapter) strtab_unref(&ix->strs, ad[k]);
          free(ad);
          return rc;
        }
      } else {
        ad[i] = id[4];
      }
    }
    size_t done = 0;
    delta_t dl = {0, 0};
    if (!(sc = scope_wr_ingest(ix, sc, id[2], id[1], id[3]))) {
      for (size_t k = 0; k < u->n_prefixes; k++)
        if (u->prefixes[k].adapter && *u->prefixes[k].adapter) strtab_unref(&ix->strs, ad[k]);
      free(ad);
      return IC_ENOMEM;
    }
    uint32_t rep = rep_live(sc, id[0], true);
    uint32_t ts_id = time_intern(sc, ts);
    /* hold a reference on ts_id across lock drops so it is not recycled */
    if (ts_id != UINT32_MAX) sc->times[ts_id].ref++;
    if (rep == UINT32_MAX || ts_id == UINT32_MAX) rc = rep == UINT32_MAX ? IC_ERANGE : IC_ENOMEM;
    for (size_t i = 0; i < u->n_prefixes && !rc; i++) {
      const ic_index_prefix_t *pr = &u->prefixes[i];
      uint8_t tier = tier_code(pr->tier);
      part_t *p = scope_part_get(sc, ad[i]);
      if (!p) {
        rc = IC_ENOMEM;
        break;
      }
      if (pr->n_block_hashes || pr->n_block_token_counts) {
        if (pr->n_block_hashes != pr->n_block_token_counts) continue; /* malformed: dropped */
        if (!pr->block_hashes || !pr->block_token_counts) continue;
        int32_t cum = 0;
        /* inserts miss the cache like lookups do: the slots of the next INGEST_AHEAD blocks
           are kept in flight, prefetched in tight batches (see chain_prep in lookup.c) */
        ingest_prefetch(p, pr, 0, 2 * INGEST_AHEAD);
        for (size_t j = 0; j < pr->n_block_hashes && !rc; j++) {
          if (j % INGEST_AHEAD == 0 && j)
            ingest_prefetch(p, pr, j + INGEST_AHEAD, j + 2 * INGEST_AHEAD);
          cum = (int32_t)((uint32_t)cum + (uint32_t)pr->block_token_counts[j]); /* int32 wrap */
          rc = store_upsert(sc, p, pr->block_hashes[j].data, pr->block_hashes[j].len, rep, cum,
                            tier, ts_id, ts, algo, &dl);
          if (++done % BATCH == 0) {
            /* let readers in; partition and rep indices stay valid (never freed/reused) */
            flush_delta(sc, &dl);
            scope_wrun(sc);
            scope_wr(sc);
            rep = rep_live(sc, id[0], true);
            if (rep == UINT32_MAX) rc = IC_ERANGE;
          }
        }
        if (!rc && pr->prefix_hash.len > 0)
          rc = store_upsert(sc, p, pr->prefix_hash.data, pr->prefix_hash.len, rep, pr->token_count,
                            tier, ts_id, ts, algo, &dl);
        continue;
      }
      rc = store_upsert(sc, p, pr->prefix_hash.data, pr->prefix_hash.len, rep, pr->token_count,
                        tier, ts_id, ts, algo, &dl);
      if (++done % BATCH == 0) {
        flush_delta(sc, &dl);
        scope_wrun(sc);
        scope_wr(sc);
        rep = rep_live(sc, id[0], true);
        if (rep == UINT32_MAX) rc = IC_ERANGE;
      }
    }
    if (ts_id != UINT32_MAX) time_unref(sc, ts_id);
    flush_delta(sc, &dl);
    scope_wrun_ingest(sc);
    for (size_t k = 0; k < u->n_prefixes; k++) /* partitions hold their own references */
      if (u->prefixes[k].adapter && *u->prefixes[k].adapter) strtab_unref(&ix->strs, ad[k]);
    free(ad);
  }

  if (u->stats) {
    statrow_t row = {.replica = id[0], .last_seen = ts, .stats_reported = ts, .s = *u->stats};
    if (!isfinite(row.s.hit_rate)) row.s.hit_rate = 0;
    if (!isfinite(row.s.pressure)) row.s.pressure = 0;
    if (!row.s.load_reported) {
      row.s.num_waiting = row.s.num_running = 0, row.s.kv_usage = 0;
    } else {
      if (row.s.num_waiting < 0) row.s.num_waiting = 0;
      if (row.s.num_running < 0) row.s.num_running = 0;
      float ku = row.s.kv_usage;
      row.s.kv_usage = !isfinite(ku) || ku < 0 ? 0 : ku > 1 ? 1 : ku;
    }
    uint64_t v;
    if (!(tm = tm_stats_wrlock(ix, tm, id[2], id[1]))) {
      if (!rc) rc = IC_ENOMEM;
    } else {
      if (u64map_get(&tm->stat_map, id[0], &v)) {
        tm->stats[v] = row;
      } else if (grow_arr((void **)&tm->stats, &tm->capstats, tm->nstats + 1, sizeof(statrow_t)) &&
                 !u64map_put(&tm->stat_map, id[0], tm->nstats)) {
        tm->stats[tm->nstats++] = row;
        strtab_ref(&ix->strs, id[0]);
      } else if (!rc) {
        rc = IC_ENOMEM;
      }
      pthread_rwlock_unlock(&tm->stats_lock);
    }
    if (ix->cfg.on_change) {
      ic_index_change_t ch = {.type = IC_INDEX_CHANGE_REPLICA_UPDATED,
                              .tenant = ix_str(ix, id[2]),
                              .model = ix_str(ix, id[1]),
                              .adapter = "",
                              .replica = ix_str(ix, id[0]),
                              .timestamp_ns = ts};
      ix->cfg.on_change(ix->cfg.change_ud, &ch);
      ix_flush_changes(ix);
    }
  }

  int64_t qev = has_quota ? quota_enforce(ix, id[2], budget, now, IC_INDEX_REASON_QUOTA) : 0;
  int64_t cev[2] = {0, 0};
  if (ix->cfg.cap_fair_share) fair_share_enforce(ix, now, cev);
  evq_enforce_cap(ix, cev); /* pinned by the caller: candidates name replicas by string id */
  if (ix->cfg.add_tenant_evictions && qev > 0)
    ix->cfg.add_tenant_evictions(ix->cfg.metrics_ud, ix_str(ix, id[2]), "over_entries", qev);
  report_evictions(ix, cev, "cap");
  ix_report_entries(ix);
  /* a little lazy reclaim per ingest keeps cleared replicas from lingering */
  ic_index_maintain(ix, 4 * SWEEP_CHUNK);
  return rc;
}

/* ---------------------------------------------------------------- quota */

typedef struct qkey {
  int64_t age;
  uint64_t key, hpre;
  uint32_t model, scheme, adapter, hlen, flags;
  scope_t *sc;
  part_t *p;
} qkey_t;

static int cmp_bytes(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
  size_t n = al < bl ? al : bl;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c;
  return al < bl ? -1 : al > bl;
}

static int qkey_cmp(const void *x, const void *y, void *ud) {
  const qkey_t *a = x, *b = y;
  ic_index_t *ix = ud;
  if (a->age != b->age) return a->age < b->age ? -1 : 1;
  int c;
  if (a->model != b->model && (c = strcmp(ix_str(ix, a->model), ix_str(ix, b->model)))) return c;
  if (a->scheme != b->scheme && (c = strcmp(ix_str(ix, a->scheme), ix_str(ix, b->scheme))))
    return c;
  if (a->adapter != b->adapter && (c = strcmp(ix_str(ix, a->adapter), ix_str(ix, b->adapter))))
    return c;
  /* both keys belong to the same scope here (scope locks held by the caller) */
  uint8_t ka[8], kb[8];
  const uint8_t *pa = ka, *pb = kb;
  uint32_t la = 8, lb = 8;
  if (a->flags & M_LONG)
    pa = scope_blob(a->sc, a->key, &la);
  else
    for (int i = 0; i < 8; i++)
      ka[i] = (uint8_t)(a->key >> (56 - 8 * i));
  if (b->flags & M_LONG)
    pb = scope_blob(b->sc, b->key, &lb);
  else
    for (int i = 0; i < 8; i++)
      kb[i] = (uint8_t)(b->key >> (56 - 8 * i));
  return cmp_bytes(pa, la, pb, lb);
}

/* Moves the k smallest of a[0, n) in quota order to a[0, k), unordered (quickselect with a
 * pseudo-random pivot: expected O(n); distinct keys never compare equal). */
static void qkey_select(qkey_t *a, size_t n, size_t k, ic_index_t *ix) {
  size_t lo = 0, hi = n;
  uint64_t rnd = 0x9e3779b97f4a7c15ULL ^ n;
  while (hi - lo > 1 && k > lo && k < hi) {
    rnd = ic_mix64(rnd + 1);
    size_t pi = lo + rnd % (hi - lo);
    qkey_t t = a[pi];
    a[pi] = a[hi - 1];
    a[hi - 1] = t;
    size_t store = lo;
    for (size_t i = lo; i < hi - 1; i++)
      if (qkey_cmp(&a[i], &a[hi - 1], ix) < 0) {
        t = a[i];
        a[i] = a[store];
        a[store++] = t;
      }
    t = a[store];
    a[store] = a[hi - 1];
    a[hi - 1] = t;
    if (store == k) return;
    if (store < k)
      lo = store + 1;
    else
      hi = store;
  }
}

/* Age of a key for the quota order: its freshest holder's last_seen. */
static int64_t slot_age(const scope_t *sc, const slot_t *s) {
  holder_t tmp;
  const holder_t *hs;
  int64_t age = INT64_MIN;
  for (uint32_t j = 0, hn = slot_holders(s, &tmp, &hs); j < hn; j++)
    if (sc->times[hs[j].ts].ns > age) age = sc->times[hs[j].ts].ns;
  return age;
}

/* Rebuilds the tenant's cached quota order: one scan of its keys, of which the oldest
 * max(excess, distinct / 8) in the reference's order are selected, sorted and kept; qthr becomes
 * the last kept age. Until a writer invalidates it (quota_touch), the next quota passes pop from
 * this list instead of scanning and sorting again, so a tenant held at its quota pays O(log n) per
 * evicted key amortised instead of a scan and a sort per ingest. Caller holds the write locks
 * of all the tenant's scopes. */
static void quota_rebuild(ic_index_t *ix, tenantrec_t *tr, scope_t **mine, uint32_t m,
                          int64_t excess) {
  free(tr->qk);
  tr->qk = NULL;
  tr->qn = tr->qpos = 0;
  atomic_store(&tr->qthr, INT64_MIN);
  size_t cnt = 0, cap = (size_t)atomic_load(&tr->distinct);
  qkey_t *ks = malloc((cap ? cap : 1) * sizeof *ks);
  if (!ks) return;
  for (uint32_t i = 0; i < m; i++) {
    scope_t *sc = mine[i];
    for (uint32_t pi = 0; pi < sc->nparts; pi++) {
      part_t *p = sc->parts[pi];
      for (uint32_t si = 0; si < SUBS; si++) {
        sub_t *sb = &p->subs[si];
        for (uint32_t k = 0; k < sb->cap && cnt < cap; k++) {
          slot_t *s = &sb->slots[k];
          if ((s->meta & ST_MASK) == ST_EMPTY) continue;
          ks[cnt++] = (qkey_t){slot_age(sc, s),  s->key, 0, sc->model, sc->scheme, p->adapter, 0,
                               s->meta & M_LONG, sc,     p};
        }
      }
    }
  }
  size_t keep = (size_t)atomic_load(&tr->distinct) / 8;
  if ((size_t)excess > keep) keep = (size_t)excess;
  if (keep > cnt) keep = cnt;
  if (keep < cnt) qkey_select(ks, cnt, keep, ix);
  if (keep > 1) qsort_r(ks, keep, sizeof *ks, qkey_cmp, ix);
  if (keep < cnt) {
    qkey_t *shrunk = realloc(ks, (keep ? keep : 1) * sizeof *ks);
    if (shrunk) ks = shrunk;
  }
  tr->qk = ks;
  tr->qn = keep;
  tr->qk_gen = atomic_load(&tr->qgen);
  if (keep) atomic_store(&tr->qthr, ks[keep - 1].age);
}

static int scope_seq_cmp(const void *x, const void *y) {
  uint64_t a = (*(scope_t *const *)x)->seq, b = (*(scope_t *const *)y)->seq;
  return a < b ? -1 : a > b;
}

/* Quota enforcement, only when over budget. It takes every scope of the tenant in
 * write mode, in creation order (scope seq: ix->scopes is reordered as records are freed), and
 * evicts whole keys in the reference's order from the
 * cached order (quota_rebuild), rebuilding it when a writer invalidated it or it ran out. */
static int64_t quota_enforce(ic_index_t *ix, uint32_t tenant, int64_t budget, int64_t now,
                             ic_index_change_reason_t why) {
  if (budget < 0) return 0;
  tenantrec_t *tr = ix_find_tenant(ix, tenant);
  if (!tr || atomic_load(&tr->distinct) <= budget) return 0;
  uint32_t n;
  scope_t **all = snapshot_scopes(ix, &n), **mine = malloc((n ? n : 1) * sizeof(scope_t *));
  uint32_t m = 0;
  if (!all || !mine) {
    free(all);
    free(mine);
    return 0;
  }
  for (uint32_t i = 0; i < n; i++)
    if (all[i]->tenant == tenant) mine[m++] = all[i];
  free(all);
  ix_sort(mine, m, sizeof *mine, scope_seq_cmp); /* one lock order for concurrent passes */
  /* finish pending clears first so the distinct count is exact */
  for (uint32_t i = 0; i < m; i++)
    while (scope_reclaim(mine[i], SUBS)) {
    }
  for (uint32_t i = 0; i < m; i++)
    scope_wr(mine[i]);
  int64_t removed = 0;
  int rebuilds = 0;
  while (atomic_load(&tr->distinct) > budget) {
    /* a writer in a scope created after `mine` was taken can keep invalidating the order: after
       a few rebuilds this pass goes on with the last one (entries are still re-checked) */
    bool stale = tr->qk_gen != atomic_load(&tr->qgen) && rebuilds < 3;
    if (tr->qpos >= tr->qn || stale) {
      if (rebuilds && tr->qpos >= tr->qn) break; /* nothing left to evict */
      quota_rebuild(ix, tr, mine, m, atomic_load(&tr->distinct) - budget);
      rebuilds++;
      continue;
    }
    const qkey_t *q = &tr->qk[tr->qpos++];
    slot_t *s = part_find(q->p, q->key, q->flags);
    if (!s || (s->meta & ST_MASK) == ST_EMPTY) continue; /* gone since the rebuild */
    int64_t age = slot_age(q->sc, s);
    if (age != q->age) {
      /* refreshed since the rebuild: past the threshold it left the oldest keys; at or below
         it the order is stale (quota_touch has already invalidated it) */
      continue;
    }
    /* remove every holder; the last removal deletes the slot */
    holder_t tmp;
    const holder_t *hs;
    for (uint32_t hn = slot_holders(s, &tmp, &hs); hn > 0; hn--) {
      bool last = hn == 1;
      store_remove_holder(q->sc, q->p, s, hn - 1, why, now);
      if (last) break;
      s = part_find(q->p, q->key, q->flags);
      if (!s) break;
    }
    removed++;
  }
  for (uint32_t i = m; i-- > 0;)
    scope_wrun(mine[i]);
  free(mine);
  return removed;
}

/* ---------------------------------------------------------------- events */

static scope_t **tm_scopes(ic_index_t *ix, tmrec_t *tm, uint32_t *n) {
  pthread_rwlock_rdlock(&ix->dir);
  *n = tm->nscopes;
  scope_t **v = malloc((*n ? *n : 1) * sizeof *v);
  if (v && *n) memcpy(v, tm->scopes, *n * sizeof *v);
  pthread_rwlock_unlock(&ix->dir);
  if (!v) *n = 0;
  return v;
}

static size_t scope_slots(scope_t *sc) {
  size_t t = 0;
  for (uint32_t i = 0; i < sc->nparts; i++)
    for (uint32_t s = 0; s < SUBS; s++)
      t += sc->parts[i]->subs[s].cap;
  return t;
}

static int apply_event(ic_index_t *ix, const ic_index_event_t *ev);

int ic_index_apply_event(ic_index_t *ix, const ic_index_event_t *ev) {
  if (!ix || !ev) return IC_EINVAL;
  /* pinned: the ids found below are used after the dir lock is dropped, and must not be
     freed and reused for another name meanwhile */
  pin_t pn = ix_pin(ix);
  int rc = apply_event(ix, ev);
  ix_unpin(ix, pn);
  ix_spec_on_event(ix, ev); /* ALL_CLEARED / PREFIX_EVICTED drop predictions too */
  return rc;
}

static int apply_event(ic_index_t *ix, const ic_index_event_t *ev) {
  if (ev->type < IC_INDEX_EVENT_PREFIX_EVICTED || ev->type > IC_INDEX_EVENT_ALL_CLEARED) return 0;
  int64_t now = ix_now(ix);
  int64_t ts = ts_from_us(ev->timestamp_us, now);
  uint32_t t = ix_find_str(ix, ev->tenant), m = ix_find_str(ix, ev->model),
           r = ix_find_str(ix, ev->replica);
  tmrec_t *tm = ix_find_tm(ix, t, m);
  if (!tm || r == UINT32_MAX) {
    ix_report_entries(ix);
    return 0;
  }
  if (ev->type == IC_INDEX_EVENT_REPLICA_UPDATED) {
    bool hit = false;
    pthread_rwlock_wrlock(&tm->stats_lock);
    uint64_t v;
    if (u64map_get(&tm->stat_map, r, &v)) {
      tm->stats[v].last_seen = ts;
      hit = true;
    }
    pthread_rwlock_unlock(&tm->stats_lock);
    if (hit && ix->cfg.on_change) {
      ic_index_change_t ch = {.type = IC_INDEX_CHANGE_REPLICA_UPDATED,
                              .tenant = ix_str(ix, t),
                              .model = ix_str(ix, m),
                              .adapter = "",
                              .replica = ix_str(ix, r),
                              .timestamp_ns = ts};
      ix->cfg.on_change(ix->cfg.change_ud, &ch);
      ix_flush_changes(ix);
    }
    ix_report_entries(ix);
    return 0;
  }
  uint32_t ns;
  scope_t **scs = tm_scopes(ix, tm, &ns);
  if (ev->type == IC_INDEX_EVENT_PREFIX_EVICTED) {
    uint32_t ad = UINT32_MAX;
    bool scoped = ev->adapter && *ev->adapter;
    if (scoped) ad = ix_find_str(ix, ev->adapter);
    for (uint32_t i = 0; i < ns && !(scoped && ad == UINT32_MAX); i++) {
      scope_t *sc = scs[i];
      scope_wr(sc);
      uint32_t rep = rep_live(sc, r, false);
      uint64_t key;
      uint32_t flags;
      if (rep != UINT32_MAX &&
          scope_key(sc, ev->prefix_hash.data, ev->prefix_hash.len, &key, &flags)) {
        for (uint32_t pi = 0; pi < sc->nparts; pi++) {
          part_t *p = sc->parts[pi];
          if (scoped && p->adapter != ad) continue;
          slot_t *s = part_find(p, key, flags);
          if (!s) continue;
          holder_t tmp;
          const holder_t *hs;
          uint32_t hn = slot_holders(s, &tmp, &hs);
          for (uint32_t j = 0; j < hn; j++) {
            if (META_REP(hs[j].meta) == rep) {
              store_remove_holder(sc, p, s, j, IC_INDEX_REASON_EVENT, ts);
              break;
            }
          }
        }
      }
      scope_wrun(sc);
    }
  } else { /* ALL_CLEARED */
    for (uint32_t i = 0; i < ns; i++) {
      scope_t *sc = scs[i];
      bool sync;
      scope_wr(sc);
      uint32_t rep = rep_live(sc, r, false);
      if (rep != UINT32_MAX) {
        rep_t *rp = &sc->reps[rep];
        sc->rc_idle = 0;
        /* O(1) visibility: the rep is marked dead and forgotten; lookups skip its holders
           and new ingests get a fresh rep index. Memory is reclaimed by scope_reclaim. */
        u64map_del(&sc->rep_map, r);
        rp->dead = true;
        if (rp->count > 0) atomic_fetch_sub(&sc->serving, 1);
        atomic_fetch_sub(&ix->total_entries, rp->count);
        if (sc->reserved) atomic_fetch_sub(&ix->reserved_entries, rp->count);
        rp->pending = rp->count;
        sc->dead_pending += rp->count;
        atomic_fetch_add(&ix->dead_pending, rp->count);
        rp->count = 0;
        sc->rc_part = sc->rc_sub = sc->rc_slot = 0; /* restart the reclaim pass to cover this rep */
        quota_touch(sc, INT64_MIN);                 /* its keys' ages may drop */
      }
      sync = sc->dead_pending > 0 && scope_slots(sc) <= SYNC_RECLAIM_SLOTS;
      scope_wrun(sc);
      if (sync)
        while (scope_reclaim(sc, SUBS)) {
        }
    }
    bool had = false;
    pthread_rwlock_wrlock(&tm->stats_lock);
    uint64_t v;
    if (u64map_get(&tm->stat_map, r, &v)) {
      had = true;
      u64map_del(&tm->stat_map, r);
      strtab_unref(&ix->strs, r);
      uint32_t last = --tm->nstats;
      if (v != last) {
        tm->stats[v] = tm->stats[last];
        u64map_put(&tm->stat_map, tm->stats[v].replica, v);
      }
      if (!tm->nstats) ix_note_idle(ix); /* the record may be unreferenced now */
    }
    pthread_rwlock_unlock(&tm->stats_lock);
    (void)had;
    if (ix->cfg.on_change) {
      ic_index_change_t ch = {.type = IC_INDEX_CHANGE_ALL_CLEARED,
                              .tenant = ix_str(ix, t),
                              .model = ix_str(ix, m),
                              .adapter = "",
                              .replica = ix_str(ix, r),
                              .timestamp_ns = ts};
      ix->cfg.on_change(ix->cfg.change_ud, &ch);
      ix_flush_changes(ix);
    }
  }
  free(scs);
  ix_report_entries(ix);
  return 0;
}

/* ---------------------------------------------------------------- TTL sweep */

typedef struct {
  int64_t now, ttl;
} sweep_ud_t;

static bool pred_expired_or_dead(scope_t *sc, const holder_t *h, void *ud) {
  sweep_ud_t *s = ud;
  return sc->reps[META_REP(h->meta)].dead || age_ns(s->now, sc->times[h->ts].ns) >= s->ttl;
}

static int64_t evict_expired(ic_index_t *ix);

int64_t ic_index_evict_expired(ic_index_t *ix) {
  ic_index_predict_expire(ix);
  pin_t pn = ix_pin(ix); /* the records it walks outside the directory lock */
  int64_t n = evict_expired(ix);
  ix_unpin(ix, pn);
  return n;
}

static int64_t evict_expired(ic_index_t *ix) {
  int64_t now = ix_now(ix);
  int64_t ev[2] = {0, 0}, total = 0;
  uint32_t n;
  scope_t **v = snapshot_scopes(ix, &n);
  for (uint32_t i = 0; i < n; i++) {
    scope_t *sc = v[i];
    sweep_ud_t ud = {now, ix_ttl_for(ix, sc->tenant)};
    ic_index_eviction_t algo = ix_algo_for(ix, sc->tenant);
    for (uint32_t pi = 0;; pi++) {
      ixlock_rd(&sc->lock);
      uint32_t np = sc->nparts;
      ixlock_rdun(&sc->lock);
      if (pi >= np) break;
      for (uint32_t si = 0; si < SUBS; si++) {
        /* SWEEP_CHUNK slots per write hold keeps lookups flowing during a long sweep; a slot
           shifted by a concurrent writer may be left to the next sweep (lookups already treat
           expired entries as absent) */
        for (uint32_t from = 0;; from += SWEEP_CHUNK) {
          scope_wr(sc);
          part_t *p = sc->parts[pi];
          sub_t *sb = &p->subs[si];
          bool more = from + SWEEP_CHUNK < sb->cap;
          if (sb->count && from < sb->cap) {
            int64_t live = 0;
            sub_sweep(sc, p, sb, from, from + SWEEP_CHUNK, pred_expired_or_dead, &ud,
                      IC_INDEX_REASON_TTL, now, &live);
            ev[algo] += live;
            total += live;
          }
          scope_wrun(sc);
          if (!more) break;
        }
      }
    }
    while (scope_reclaim(sc, 1024)) {
    }
    scope_wr(sc);
    scope_release_reps(sc);
    scope_wrun(sc);
  }
  free(v);
  /* stats rows: liveness (last_seen) against the tenant TTL */
  pthread_rwlock_rdlock(&ix->dir);
  uint32_t ntm = ix->ntms;
  tmrec_t **tms = malloc((ntm ? ntm : 1) * sizeof *tms);
  if (tms && ntm) memcpy(tms, ix->tms, ntm * sizeof *tms);
  pthread_rwlock_unlock(&ix->dir);
  for (uint32_t i = 0; tms && i < ntm; i++) {
    tmrec_t *tm = tms[i];
    int64_t ttl = ix_ttl_for(ix, tm->tenant);
    pthread_rwlock_wrlock(&tm->stats_lock);
    for (uint32_t k = 0; k < tm->nstats;) {
      if (age_ns(now, tm->stats[k].last_seen) >= ttl) {
        u64map_del(&tm->stat_map, tm->stats[k].replica);
        strtab_unref(&ix->strs, tm->stats[k].replica);
        uint32_t last = --tm->nstats;
        if (k != last) {
          tm->stats[k] = tm->stats[last];
          u64map_put(&tm->stat_map, tm->stats[k].replica, k);
        }
        if (!tm->nstats) ix_note_idle(ix);
      } else {
        k++;
      }
    }
    pthread_rwlock_unlock(&tm->stats_lock);
  }
  free(tms);
  report_evictions(ix, ev, "ttl");
  ix_report_entries(ix);
  return total;
}

/* ---------------------------------------------------------------- gauge */

/* Incremental: only the records whose distinct count changed since the last report are
 * visited (each ingest and event calls this; visiting all of them made ingest quadratic in the
 * number of (tenant, model) pairs — 1,000 new pairs took 48 s next to 4,000 others). A model's
 * gauge is set whenever one of its records changed; a model that drains to 0 is set to 0 once. */
void ix_report_entries(ic_index_t *ix) {
  if (ix->cfg.set_index_entries) ix_report_drain(ix);
}

void ix_report_drain(ic_index_t *ix) {
  if (!atomic_load_explicit(&ix->dirty_tms, memory_order_relaxed)) return;
  pthread_mutex_lock(&ix->report_lock);
  tmrec_t *tm = atomic_exchange(&ix->dirty_tms, NULL);
  while (tm) {
    tmrec_t *next = tm->dirty_next; /* read before `dirty` drops: a re-push rewrites it */
    atomic_store(&tm->dirty, false);
    int64_t d = atomic_load(&tm->distinct), delta = d - tm->reported;
    tm->reported = d;
    if (!tm->reserved && delta && ix->cfg.set_index_entries) {
      uint64_t v = 0;
      u64map_get(&ix->reported, tm->model, &v);
      int64_t total = (int64_t)v + delta;
      if (total > 0)
        u64map_put(&ix->reported, tm->model, (uint64_t)total);
      else
        u64map_del(&ix->reported, tm->model);
      /* the record holds its model's string (it is freed only once it reported 0) */
      ix->cfg.set_index_entries(ix->cfg.metrics_ud, ix_str(ix, tm->model), total > 0 ? total : 0);
    }
    tm = next;
  }
  pthread_mutex_unlock(&ix->report_lock);
}

/* ---------------------------------------------------------------- guards (reclaim: records.c) */

ic_index_guard_t ic_index_guard(ic_index_t *ix) {
  pin_t p = ix_pin(ix);
  return (ic_index_guard_t){p.idx, p.stripe};
}

void ic_index_unguard(ic_index_t *ix, ic_index_guard_t g) {
  ix_unpin(ix, (pin_t){g.idx, g.stripe});
}

size_t ic_index_string_count(ic_index_t *ix) {
  pthread_rwlock_rdlock(&ix->dir);
  size_t n = strtab_count(&ix->strs);
  pthread_rwlock_unlock(&ix->dir);
  return n;
}

/* ---------------------------------------------------------------- fair share at the cap */

typedef struct {
  uint32_t tenant;
  int64_t keys;
  int algo;
} share_t;

static int share_cmp(const void *a, const void *b) {
  const share_t *x = a, *y = b;
  if (x->keys != y->keys) return x->keys > y->keys ? -1 : 1;
  return x->tenant < y->tenant ? -1 : x->tenant > y->tenant;
}

/* Over the cap: takes the excess from tenants above max / (tenants with keys), largest first,
 * never below that share, each losing its oldest keys (the quota machinery, reason CAP). What
 * is left over (everyone at or below the share) goes to the global order. Returns entries
 * evicted, also added to evicted[algo]. */
static int64_t fair_share_enforce(ic_index_t *ix, int64_t now, int64_t evicted[2]) {
  int64_t max = ix->cfg.max_entries;
  if (max <= 0) return 0;
  int64_t before = atomic_load(&ix->total_entries) - atomic_load(&ix->reserved_entries);
  if (before <= max) return 0;
  pthread_rwlock_rdlock(&ix->dir);
  uint32_t n = 0;
  int64_t top = 0;
  share_t *v = malloc((ix->ntenants ? ix->ntenants : 1) * sizeof *v);
  for (uint32_t i = 0; v && i < ix->ntenants; i++) {
    tenantrec_t *tr = ix->tenants[i];
    int64_t k = atomic_load(&tr->distinct);
    if (!tr->reserved && k > 0) v[n++] = (share_t){tr->tenant, k, atomic_load(&tr->algo)};
    if (k > top) top = k;
  }
  pthread_rwlock_unlock(&ix->dir);
  int64_t total = 0;
  if (v && n > 1 && top > max / n) { /* someone is over the share (else: global order) */
    int64_t share = max / n;
    qsort(v, n, sizeof *v, share_cmp);
    for (uint32_t i = 0; i < n && v[i].keys > share; i++) {
      int64_t excess = atomic_load(&ix->total_entries) - atomic_load(&ix->reserved_entries) - max;
      if (excess <= 0) break;
      int64_t keep = v[i].keys - excess < share ? share : v[i].keys - excess;
      int64_t e0 = atomic_load(&ix->total_entries);
      quota_enforce(ix, v[i].tenant, keep, now,
                    (ic_index_change_reason_t)(IC_INDEX_REASON_CAP | REASON_BY_QUOTA_PASS));
      int64_t got = e0 - atomic_load(&ix->total_entries);
      if (got > 0) {
        evicted[v[i].algo == IC_INDEX_EVICT_LFU ? 1 : 0] += got;
        total += got;
      }
    }
  }
  free(v);
  return total;
}
