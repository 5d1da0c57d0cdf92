/* lib/index predict-on-route (docs/ranking.md, section 3): short-lived speculative (block, replica)
 * entries recorded where LookupRoute sends a prompt, until the engine's own events confirm them.
 *
 * Layout: one table for the whole index, apart from the scope tables and under its own lock, so
 * recording a prediction (a write) never takes a scope's write lock and lookups of tenants
 * without predictions never touch it (one atomic load of `live`). Entries sit in a ring in
 * creation order; with one TTL for all, creation order is expiry order, so expiry and the cap
 * both pop the ring's head and the table needs no timer or heap. A removal in the middle
 * (confirmed, cleared, renewed) unlinks the entry from its hash bucket and leaves a dead slot the
 * head skips later; the cap counts slots, dead ones included, so memory is bounded exactly. */
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "internal.h"

#define DEFAULT_TTL_NS 1500000000LL
#define DEFAULT_CAP 65536
#define MAX_CAP (1LL << 24)
#define DEFAULT_WEIGHT 0.5f
#define NO_ENTRY (-1)

typedef struct {
  uint64_t key;    /* hash(scope, block bytes) */
  uint64_t tm;     /* hash(tenant, model): what ALL_CLEARED names */
  int64_t expires; /* ns */
  int32_t tokens;  /* cumulative prompt tokens through this block */
  uint32_t rep;    /* index into names */
  uint32_t routes; /* predictions that recorded this (block, replica) while it lived */
  int32_t next;    /* bucket chain */
  bool live;
} sent_t;

#define RECENT 32 /* routes remembered per replica (a burst's worth within one load sample) */
typedef struct {
  char *name; /* NULL = free slot */
  uint64_t h;
  int64_t refs;             /* live entries naming it */
  int64_t route_at[RECENT]; /* times of the last predictions recorded on it, a ring */
  uint64_t route_tm[RECENT];
  uint32_t route_pos;
} sname_t;

typedef struct spec {
  pthread_rwlock_t lock;
  sent_t *ring;
  uint32_t cap, head, n; /* slots [head, head + n) mod cap are in use, oldest first */
  int32_t *buckets;
  uint32_t nbuckets; /* power of two */
  sname_t *names;
  uint32_t nnames;
  u64map_t name_map; /* name hash -> index (a 64-bit collision shares a slot: harmless hint) */
  int64_t ttl;
  float weight;
  _Atomic int64_t live;
  _Atomic int64_t created, confirmed, expired, dropped_cap, cleared;
} spec_t;

static inline const char *nz(const char *s) { return s ? s : ""; }

static float weight_of(const ic_index_t *ix) {
  float w = ix->cfg.predict_weight;
  return w > 0 && w <= 1 ? w : DEFAULT_WEIGHT;
}

/* Created on first use, published with a CAS: an index whose tenants never predict pays
 * nothing, not even the table's memory. */
static spec_t *spec_get(ic_index_t *ix, bool create) {
  spec_t *s = atomic_load_explicit(&ix->spec, memory_order_acquire);
  if (s || !create) return s;
  s = calloc(1, sizeof *s);
  if (!s) return NULL;
  int64_t cap = ix->cfg.predict_max_entries > 0 ? ix->cfg.predict_max_entries : DEFAULT_CAP;
  if (cap > MAX_CAP) cap = MAX_CAP;
  s->cap = (uint32_t)cap;
  s->nbuckets = 64;
  while (s->nbuckets < s->cap)
    s->nbuckets *= 2;
  s->ring = malloc((size_t)s->cap * sizeof *s->ring);
  s->buckets = malloc((size_t)s->nbuckets * sizeof *s->buckets);
  if (!s->ring || !s->buckets) {
    free(s->ring);
    free(s->buckets);
    free(s);
    return NULL;
  }
  for (uint32_t i = 0; i < s->nbuckets; i++)
    s->buckets[i] = NO_ENTRY;
  s->ttl = ix->cfg.predict_ttl_ns > 0 ? ix->cfg.predict_ttl_ns : DEFAULT_TTL_NS;
  s->weight = weight_of(ix);
  pthread_rwlock_init(&s->lock, NULL);
  spec_t *expected = NULL;
  if (!atomic_compare_exchange_strong(&ix->spec, &expected, s)) {
    pthread_rwlock_destroy(&s->lock);
    free(s->ring);
    free(s->buckets);
    free(s);
    return expected;
  }
  return s;
}

void ix_spec_free(ic_index_t *ix) {
  spec_t *s = atomic_load(&ix->spec);
  if (!s) return;
  for (uint32_t i = 0; i < s->nnames; i++)
    free(s->names[i].name);
  free(s->names);
  u64map_free(&s->name_map);
  free(s->ring);
  free(s->buckets);
  pthread_rwlock_destroy(&s->lock);
  free(s);
  atomic_store(&ix->spec, NULL);
}

/* ---------------------------------------------------------------- keys */

static uint64_t str_h(const char *p) { return ic_hash_bytes(p, strlen(p)); }

static uint64_t tm_hash(const char *tenant, const char *model) {
  return ic_mix64(str_h(nz(tenant)) * 0x9e3779b97f4a7c15ULL ^ str_h(nz(model)));
}

/* The hash scheme is left out on purpose: PREFIX_EVICTED events do not name it, and two schemes
 * never produce the same block bytes in practice (a collision would cost one wrong hint). */
static uint64_t scope_hash(const char *tenant, const char *model, const char *adapter) {
  return ic_mix64(tm_hash(tenant, model) ^ str_h(nz(adapter)) * 0xff51afd7ed558ccdULL);
}

static uint64_t block_key(uint64_t scope, const uint8_t *p, size_t n) {
  return ic_mix64(scope ^ ic_hash_bytes(p, n));
}

static uint32_t bucket_of(const spec_t *s, uint64_t key) {
  return (uint32_t)(key >> 32 ^ key) & (s->nbuckets - 1);
}

/* Name index of replica, or UINT32_MAX. Caller holds the lock (read is enough). */
static uint32_t name_find(const spec_t *s, const char *replica) {
  uint64_t v;
  if (!u64map_get(&s->name_map, str_h(replica), &v)) return UINT32_MAX;
  return (uint32_t)v;
}

/* A name slot can be reused once no entry names it and its last route is older than the TTL
 * (its routes still count as load until then). Caller holds the write lock. */
static bool name_idle(const spec_t *s, const sname_t *x, int64_t now) {
  int64_t last = x->route_at[(x->route_pos + RECENT - 1) % RECENT];
  return x->refs <= 0 && (last == 0 || age_ns(now, last) > s->ttl);
}

/* Caller holds the write lock. */
static uint32_t name_get(spec_t *s, const char *replica, int64_t now) {
  uint32_t i = name_find(s, replica);
  if (i != UINT32_MAX) return i;
  for (i = 0; i < s->nnames && s->names[i].name && !name_idle(s, &s->names[i], now); i++)
    ;
  if (i < s->nnames && s->names[i].name) { /* reuse an idle slot */
    u64map_del(&s->name_map, s->names[i].h);
    free(s->names[i].name);
    s->names[i].name = NULL;
  }
  if (i == s->nnames) {
    sname_t *nn = realloc(s->names, (s->nnames + 1) * sizeof *nn);
    if (!nn) return UINT32_MAX;
    s->names = nn;
    s->nnames++;
  }
  char *copy = strdup(replica);
  if (!copy) return UINT32_MAX;
  uint64_t h = str_h(replica);
  if (u64map_put(&s->name_map, h, i)) {
    free(copy);
    return UINT32_MAX;
  }
  memset(&s->names[i], 0, sizeof s->names[i]);
  s->names[i].name = copy;
  s->names[i].h = h;
  return i;
}

static void name_unref(spec_t *s, uint32_t i) { s->names[i].refs--; }

/* ---------------------------------------------------------------- entries (write lock) */

static int32_t entry_find(const spec_t *s, uint64_t key, uint32_t rep) {
  for (int32_t i = s->buckets[bucket_of(s, key)]; i != NO_ENTRY; i = s->ring[i].next)
    if (s->ring[i].key == key && s->ring[i].rep == rep) return i;
  return NO_ENTRY;
}

/* Unlinks a live entry; `counter` says why (NULL: renewed, counted nowhere). */
static void entry_kill(spec_t *s, int32_t i, _Atomic int64_t *counter) {
  sent_t *e = &s->ring[i];
  int32_t *pp = &s->buckets[bucket_of(s, e->key)];
  while (*pp != i)
    pp = &s->ring[*pp].next;
  *pp = e->next;
  e->live = false;
  name_unref(s, e->rep);
  atomic_fetch_sub_explicit(&s->live, 1, memory_order_relaxed);
  if (counter) atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* Pops the ring's head while it is dead or expired; with `room`, also until a slot is free
 * (live entries popped for room count as dropped at the cap). Returns entries expired. */
static int64_t ring_trim(spec_t *s, int64_t now, bool room) {
  int64_t expired = 0;
  while (s->n > 0) {
    sent_t *e = &s->ring[s->head];
    if (e->live) {
      if (e->expires <= now) {
        entry_kill(s, (int32_t)s->head, &s->expired);
        expired++;
      } else if (room && s->n == s->cap) {
        entry_kill(s, (int32_t)s->head, &s->dropped_cap);
      } else {
        break;
      }
    }
    s->head = (s->head + 1) % s->cap;
    s->n--;
  }
  return expired;
}

static int entry_add(spec_t *s, uint64_t key, uint64_t tm, uint32_t rep, int32_t tokens,
                     uint32_t routes, int64_t now) {
  ring_trim(s, now, true);
  uint32_t i = (s->head + s->n) % s->cap;
  s->n++;
  uint32_t b = bucket_of(s, key);
  s->ring[i] = (sent_t){key, tm, now + s->ttl, tokens, rep, routes, s->buckets[b], true};
  s->buckets[b] = (int32_t)i;
  s->names[rep].refs++;
  atomic_fetch_add_explicit(&s->live, 1, memory_order_relaxed);
  return 0;
}

/* ---------------------------------------------------------------- record */

/* The prompt as (hash bytes, cumulative tokens) blocks: the chain, or the legacy single key. */
static size_t req_blocks(const ic_index_lookup_t *q) {
  if (q->n_block_hashes || q->n_block_token_counts) {
    if (q->n_block_hashes != q->n_block_token_counts || !q->block_hashes || !q->block_token_counts)
      return 0;
    return q->n_block_hashes;
  }
  return q->prefix_hash.len ? 1 : 0;
}

static ic_index_bytes_t req_block(const ic_index_lookup_t *q, size_t i) {
  return q->n_block_hashes ? q->block_hashes[i] : q->prefix_hash;
}

static int32_t req_count(const ic_index_lookup_t *q, size_t i) {
  return q->n_block_hashes ? q->block_token_counts[i] : q->token_count;
}

int ic_index_predict_record(ic_index_t *ix, const ic_index_lookup_t *req, const char *replica,
                            int32_t skip_tokens) {
  if (!ix || !req || !replica || !*replica) return IC_EINVAL;
  size_t nb = req_blocks(req);
  if (nb == 0 || !*nz(req->scheme)) return 0;
  spec_t *s = spec_get(ix, true);
  if (!s) return IC_ENOMEM;
  uint64_t scope = scope_hash(req->tenant, req->model, req->adapter);
  uint64_t tm = tm_hash(req->tenant, req->model);
  int64_t now = ix_now(ix);
  int rc = 0;
  pthread_rwlock_wrlock(&s->lock);
  uint32_t rep = name_get(s, replica, now);
  if (rep == UINT32_MAX) {
    rc = IC_ENOMEM;
    goto out;
  }
  sname_t *nm = &s->names[rep];
  nm->route_at[nm->route_pos] = now;
  nm->route_tm[nm->route_pos] = tm;
  nm->route_pos = (nm->route_pos + 1) % RECENT;
  /* Last block first, so the prompt's head is the newest: past the cap the oldest entries go
     first, and a chain that loses its head matches nothing while one that loses its tail still
     matches most of its length. */
  uint32_t cum = 0;
  for (size_t i = 0; i < nb; i++)
    cum += (uint32_t)req_count(req, i); /* int32 wrap like the lookup's sums */
  for (size_t i = nb; i-- > 0; cum -= (uint32_t)req_count(req, i)) {
    if ((int32_t)cum <= skip_tokens) break;
    ic_index_bytes_t b = req_block(req, i);
    if (!b.data && b.len) continue;
    uint64_t key = block_key(scope, b.data, b.len);
    uint32_t routes = 1;
    int32_t old = entry_find(s, key, rep);
    if (old != NO_ENTRY) {
      routes = s->ring[old].routes + 1;
      entry_kill(s, old, NULL); /* renewed: re-added at the ring's tail below */
    } else {
      atomic_fetch_add_explicit(&s->created, 1, memory_order_relaxed);
    }
    entry_add(s, key, tm, rep, (int32_t)cum, routes, now);
  }
out:
  pthread_rwlock_unlock(&s->lock);
  return rc;
}

/* ---------------------------------------------------------------- lookup side */

static int row_cmp(const void *x, const void *y) {
  const ic_index_row_t *a = x, *b = y;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  return strcmp(a->replica_id, b->replica_id);
}

#define MAX_RUNS 64

typedef struct {
  uint32_t rep; /* spec name index */
  int32_t tokens;
  size_t start;    /* first block not covered by the replica's real run */
  uint32_t routes; /* of the deepest predicted block */
  char *name;      /* copied for the runs kept */
} srun_t;

/* True when (key, rep) is a live, unexpired entry. Caller holds the lock. */
static bool spec_has(const spec_t *s, uint64_t key, uint32_t rep, int64_t now) {
  int32_t e = entry_find(s, key, rep);
  return e != NO_ENTRY && s->ring[e].expires > now;
}

static uint64_t key_at(const ic_index_lookup_t *req, uint64_t scope, size_t i) {
  ic_index_bytes_t b = req_block(req, i);
  return b.data || !b.len ? block_key(scope, b.data, b.len) : 0;
}

/* A replica's speculative run continues its real one (a prediction recorded with skip_tokens
 * starts past the real blocks), or starts at the prompt's first block. */
int ic_index_result_add_predicted(ic_index_t *ix, ic_index_result_t *r,
                                  const ic_index_lookup_t *req) {
  if (!ix || !r || !req) return 0;
  spec_t *s = spec_get(ix, false);
  if (!s || atomic_load_explicit(&s->live, memory_order_relaxed) == 0) return 0;
  if (!*nz(req->tenant) || !*nz(req->model) || !*nz(req->scheme)) return 0;
  size_t nb = req_blocks(req);
  if (nb == 0) return 0;
  int32_t cst[256];
  int32_t *cum = nb <= 256 ? cst : malloc(nb * sizeof *cum);
  srun_t runs[MAX_RUNS];
  int rc = 0;
  size_t kept = 0;
  if (!cum) {
    rc = IC_ENOMEM;
    goto out;
  }
  uint64_t scope = scope_hash(req->tenant, req->model, req->adapter);
  uint32_t c = 0;
  for (size_t i = 0; i < nb; i++) {
    c += (uint32_t)req_count(req, i);
    cum[i] = (int32_t)c;
  }
  /* keys are hashed as the walks need them (a walk stops at its first miss): one or two per
     lookup mostly, instead of the whole chain */
#define KEY(i) key_at(req, scope, (i))
  bool prefix_rows = ic_index_result_strategy(r) == IC_INDEX_STRATEGY_PREFIX_MATCH;
  size_t nrows;
  ic_index_row_t *rows = ix_result_rows_mut(r, &nrows);
  int64_t now = ix_now(ix);
  size_t nr = 0;
  pthread_rwlock_rdlock(&s->lock);
  /* replicas with a real run: continue past it */
  for (size_t i = 0; prefix_rows && i < nrows && nr < MAX_RUNS; i++) {
    uint32_t rep = name_find(s, rows[i].replica_id);
    if (rep == UINT32_MAX) continue;
    size_t st = 0;
    while (st < nb && cum[st] <= rows[i].matched_tokens)
      st++;
    runs[nr++] = (srun_t){rep, rows[i].matched_tokens, st, 0, NULL};
  }
  /* replicas predicted from the first block */
  uint64_t k0 = KEY(0);
  for (int32_t e = s->buckets[bucket_of(s, k0)]; e != NO_ENTRY && nr < MAX_RUNS;
       e = s->ring[e].next) {
    const sent_t *x = &s->ring[e];
    if (x->key != k0 || x->expires <= now) continue;
    bool seen = false;
    for (size_t k = 0; k < nr && !seen; k++)
      seen = runs[k].rep == x->rep;
    if (!seen) runs[nr++] = (srun_t){x->rep, 0, 0, 0, NULL};
  }
  for (size_t k = 0; k < nr && !rc; k++) {
    size_t i = runs[k].start;
    while (i < nb && spec_has(s, KEY(i), runs[k].rep, now))
      i++;
    const char *nm = s->names[runs[k].rep].name;
    if (i == runs[k].start || !nm) continue;
    runs[kept] = runs[k];
    runs[kept].tokens = cum[i - 1];
    runs[kept].routes = s->ring[entry_find(s, KEY(i - 1), runs[k].rep)].routes;
    if (!(runs[kept++].name = strdup(nm))) rc = IC_ENOMEM; /* names outlive the lock */
  }
  pthread_rwlock_unlock(&s->lock);
  if (kept == 0 || rc) goto out;
  if (!prefix_rows) ix_result_clear(r); /* TENANT_HOT rows go: a prefix match is better */
  float w = s->weight;
  bool added = false;
  for (size_t k = 0; k < kept && !rc; k++) {
    /* the row points at the index's interned name, like every other row; a replica the index
       no longer knows has nothing to route to */
    uint32_t id = ix_find_str(ix, runs[k].name);
    if (id == UINT32_MAX) continue;
    const char *interned = ix_str(ix, id);
    rows = ix_result_rows_mut(r, &nrows);
    ic_index_row_t *mine = NULL;
    for (size_t i = 0; i < nrows && !mine; i++)
      if (!strcmp(rows[i].replica_id, interned)) mine = &rows[i];
    float score = (float)runs[k].tokens * w;
    if (ix_result_note_routes(r, interned, runs[k].routes)) rc = IC_ENOMEM;
    if (mine) {
      if (runs[k].tokens <= mine->matched_tokens) continue;
      mine->matched_tokens = runs[k].tokens;
      mine->tier = IC_INDEX_TIER_SPECULATIVE;
      mine->estimated_cache_hit_prob = w;
      if (score > mine->score) mine->score = score;
    } else {
      rc = ix_result_push(
          r, (ic_index_row_t){interned, score, runs[k].tokens, w, IC_INDEX_TIER_SPECULATIVE});
    }
    added = !rc;
  }
  if (added) {
    rows = ix_result_rows_mut(r, &nrows);
    ix_sort(rows, nrows, sizeof *rows, row_cmp);
    ix_result_set_strategy(r, IC_INDEX_STRATEGY_PREFIX_MATCH);
  }
out:
#undef KEY
  for (size_t k = 0; k < kept; k++)
    free(runs[k].name);
  if (cum != cst) free(cum);
  return rc;
}

/* ---------------------------------------------------------------- real events (hooks) */

void ix_spec_on_ingest(ic_index_t *ix, const ic_index_update_t *u) {
  spec_t *s = spec_get(ix, false);
  if (!s || atomic_load_explicit(&s->live, memory_order_relaxed) == 0 || !u->n_prefixes) return;
  pthread_rwlock_wrlock(&s->lock);
  uint32_t rep = name_find(s, nz(u->replica));
  for (size_t p = 0; rep != UINT32_MAX && p < u->n_prefixes; p++) {
    const ic_index_prefix_t *e = &u->prefixes[p];
    const char *adapter = e->adapter && *e->adapter ? e->adapter : u->adapter;
    uint64_t scope = scope_hash(u->tenant, u->model, adapter);
    bool chain = e->n_block_hashes || e->n_block_token_counts;
    size_t nb = chain ? e->n_block_hashes : 1;
    if (chain && (e->n_block_hashes != e->n_block_token_counts || !e->block_hashes)) continue;
    for (size_t i = 0; i < nb; i++) {
      ic_index_bytes_t b = chain ? e->block_hashes[i] : e->prefix_hash;
      if (!b.data && b.len) continue;
      int32_t hit = entry_find(s, block_key(scope, b.data, b.len), rep);
      if (hit == NO_ENTRY) continue;
      entry_kill(s, hit, &s->confirmed);
    }
  }
  pthread_rwlock_unlock(&s->lock);
}

void ix_spec_on_event(ic_index_t *ix, const ic_index_event_t *ev) {
  spec_t *s = spec_get(ix, false);
  if (!s || atomic_load_explicit(&s->live, memory_order_relaxed) == 0) return;
  if (ev->type != IC_INDEX_EVENT_ALL_CLEARED && ev->type != IC_INDEX_EVENT_PREFIX_EVICTED) return;
  pthread_rwlock_wrlock(&s->lock);
  uint32_t rep = name_find(s, nz(ev->replica));
  if (rep != UINT32_MAX) {
    uint64_t tm = tm_hash(ev->tenant, ev->model);
    if (ev->type == IC_INDEX_EVENT_ALL_CLEARED) {
      /* rare: a scan of the ring (bounded by the cap) */
      for (uint32_t k = 0; k < s->n; k++) {
        uint32_t i = (s->head + k) % s->cap;
        sent_t *e = &s->ring[i];
        if (!e->live || e->rep != rep || e->tm != tm) continue;
        entry_kill(s, (int32_t)i, &s->cleared);
      }
    } else if (ev->prefix_hash.data || !ev->prefix_hash.len) {
      /* the engine dropped that block: a prediction of it on this replica is wrong now */
      uint64_t key = block_key(scope_hash(ev->tenant, ev->model, ev->adapter), ev->prefix_hash.data,
                               ev->prefix_hash.len);
      int32_t hit = entry_find(s, key, rep);
      if (hit != NO_ENTRY) entry_kill(s, hit, &s->cleared);
    }
  }
  pthread_rwlock_unlock(&s->lock);
}

int64_t ic_index_predict_expire(ic_index_t *ix) {
  spec_t *s = ix ? spec_get(ix, false) : NULL;
  if (!s) return 0;
  pthread_rwlock_wrlock(&s->lock);
  int64_t n = ring_trim(s, ix_now(ix), false);
  pthread_rwlock_unlock(&s->lock);
  return n;
}

/* ---------------------------------------------------------------- reads */

void ic_index_predict_stats(ic_index_t *ix, ic_index_predict_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (!ix) return;
  int64_t cap = ix->cfg.predict_max_entries > 0 ? ix->cfg.predict_max_entries : DEFAULT_CAP;
  out->capacity = cap > MAX_CAP ? MAX_CAP : cap;
  spec_t *s = spec_get(ix, false);
  if (!s) return;
  out->entries = atomic_load(&s->live);
  out->created = atomic_load(&s->created);
  out->confirmed = atomic_load(&s->confirmed);
  out->expired = atomic_load(&s->expired);
  out->dropped_cap = atomic_load(&s->dropped_cap);
  out->cleared = atomic_load(&s->cleared);
}

static int prow_cmp(const void *x, const void *y) {
  return strcmp(((const ic_index_predict_replica_t *)x)->replica_id,
                ((const ic_index_predict_replica_t *)y)->replica_id);
}

int ic_index_predict_replicas(ic_index_t *ix, ic_index_predict_replica_t **rows, size_t *n) {
  *rows = NULL;
  *n = 0;
  spec_t *s = ix ? spec_get(ix, false) : NULL;
  if (!s) return 0;
  int rc = 0;
  int64_t now = ix_now(ix);
  pthread_rwlock_rdlock(&s->lock);
  size_t m = 0;
  for (uint32_t i = 0; i < s->nnames; i++)
    m += s->names[i].name != NULL && s->names[i].refs > 0;
  ic_index_predict_replica_t *out = m ? calloc(m, sizeof *out) : NULL;
  int64_t *count = m ? calloc(s->nnames, sizeof *count) : NULL;
  if (m && (!out || !count)) {
    rc = IC_ENOMEM;
  } else {
    for (uint32_t k = 0; k < s->n; k++) {
      const sent_t *e = &s->ring[(s->head + k) % s->cap];
      if (e->live && e->expires > now) count[e->rep]++;
    }
    for (uint32_t i = 0; i < s->nnames && !rc; i++) {
      if (!s->names[i].name || !count[i]) continue;
      if (!(out[*n].replica_id = strdup(s->names[i].name)))
        rc = IC_ENOMEM;
      else
        out[(*n)++].entries = count[i];
    }
  }
  pthread_rwlock_unlock(&s->lock);
  free(count);
  if (rc) {
    ic_index_predict_replicas_free(out, *n);
    *n = 0;
    return rc;
  }
  if (*n == 0) {
    free(out);
    return 0;
  }
  ix_sort(out, *n, sizeof *out, prow_cmp);
  *rows = out;
  return 0;
}

void ic_index_predict_replicas_free(ic_index_predict_replica_t *rows, size_t n) {
  for (size_t i = 0; rows && i < n; i++)
    free(rows[i].replica_id);
  free(rows);
}

int64_t ix_spec_routed_since(ic_index_t *ix, const char *tenant, const char *model,
                             const char *replica, int64_t since_ns) {
  spec_t *s = spec_get(ix, false);
  if (!s) return 0;
  uint64_t tm = tm_hash(tenant, model);
  int64_t n = 0, now = ix_now(ix);
  pthread_rwlock_rdlock(&s->lock);
  uint32_t i = name_find(s, nz(replica));
  for (int k = 0; i != UINT32_MAX && k < RECENT; k++) {
    int64_t at = s->names[i].route_at[k];
    /* after the sample, and recent: a route older than the TTL has shown in some sample */
    n += at != 0 && at > since_ns && s->names[i].route_tm[k] == tm && age_ns(now, at) <= s->ttl;
  }
  pthread_rwlock_unlock(&s->lock);
  return n;
}

bool ix_spec_active(ic_index_t *ix) { return spec_get(ix, false) != NULL; }
