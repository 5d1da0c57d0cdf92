/* Read side of the index: exact and chain lookups with the reference's float32 ranking,
 * TENANT_HOT, the UNKNOWN_* classifier, affinity, LFU credit, and the aggregate reads. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "internal.h"

static inline const char *nz(const char *s) { return s ? s : ""; }

/* ---------------------------------------------------------------- ranking primitives */

float ic_index_freshness(int64_t now, int64_t t, int64_t ttl) {
  if (ttl <= 0) return 0;
  int64_t age = age_ns(now, t);
  if (age <= 0) return 1;
  if (age >= ttl) return 0;
  return (float)(1.0 - (double)age / (double)ttl);
}

double ic_index_distinguishing_power(int64_t matching, int64_t total) {
  if (total <= 1 || matching < 0) return 1.0;
  if (matching >= total) return 0.0;
  return 1.0 - (double)matching / (double)total;
}

static float pressure_factor(float p, float w) {
  float f = 1.0f - w * p;
  if (f < 0) return 0;
  if (f > 1) return 1;
  return f;
}

static float slo_coef(const ic_index_ranker_t *r, int32_t ttft) {
  if (r->slo_tight_ttft_ms > 0 && r->slo_tight_bias > 0 && ttft > 0 && ttft < r->slo_tight_ttft_ms)
    return r->slo_tight_bias;
  return 0;
}

const char *ic_index_strategy_name(ic_index_strategy_t s) {
  switch (s) {
  case IC_INDEX_STRATEGY_PREFIX_MATCH: return "PREFIX_MATCH";
  case IC_INDEX_STRATEGY_TENANT_HOT: return "TENANT_HOT";
  case IC_INDEX_STRATEGY_UNKNOWN_TENANT: return "UNKNOWN_TENANT";
  case IC_INDEX_STRATEGY_UNKNOWN_MODEL: return "UNKNOWN_MODEL";
  case IC_INDEX_STRATEGY_UNKNOWN_HASH_SCHEME: return "UNKNOWN_HASH_SCHEME";
  default: return "NO_HINT";
  }
}

/* ---------------------------------------------------------------- results */

typedef struct {
  uint32_t rep, replica; /* rep index in the scope + string id (guards against reuse) */
  uint32_t nblocks;      /* captured blocks [0, nblocks) of keys[] */
} capgrp_t;

struct ic_index_result {
  ic_index_t *ix;
  ic_index_strategy_t strategy;
  ic_index_row_t *rows;
  size_t n;
  scope_t *sc;
  uint32_t part;
  uint64_t *keys;   /* resolved block keys of the capture (blob ids for long keys) */
  uint32_t *kflags; /* their slot flags (M_LONG) */
  uint32_t *kgen;   /* blob generation of long keys: an id reused since is not credited */
  size_t nkeys;
  capgrp_t *caps;
  size_t ncaps;
  const char **route_names; /* speculative rows' sibling routes (speculative.c) */
  uint32_t *routes;
  size_t nroutes;
};

ic_index_row_t *ix_result_rows_mut(ic_index_result_t *r, size_t *n) {
  *n = r ? r->n : 0;
  return r ? r->rows : NULL;
}

ic_index_strategy_t ic_index_result_strategy(const ic_index_result_t *r) {
  return r ? r->strategy : 0;
}
size_t ic_index_result_count(const ic_index_result_t *r) { return r ? r->n : 0; }
const ic_index_row_t *ic_index_result_rows(const ic_index_result_t *r) {
  return r ? r->rows : NULL;
}

/* A result that captured keys holds its scope (records.c frees no scope a result holds). */
static void result_release_scope(ic_index_result_t *r) {
  if (r->sc) atomic_fetch_sub_explicit(&r->sc->results, 1, memory_order_release);
  r->sc = NULL;
}

void ic_index_result_free(ic_index_result_t *r) {
  if (!r) return;
  result_release_scope(r);
  free(r->route_names);
  free(r->routes);
  free(r->rows);
  free(r->keys);
  free(r->kflags);
  free(r->kgen);
  free(r->caps);
  free(r);
}

static void result_drop_caps(ic_index_result_t *r) {
  result_release_scope(r);
  free(r->keys);
  free(r->kflags);
  free(r->kgen);
  free(r->caps);
  r->keys = NULL;
  r->kflags = NULL;
  r->kgen = NULL;
  r->caps = NULL;
  r->nkeys = r->ncaps = 0;
}

/* Copies the keys of the first n blocks for a later credit (caller holds sc's read lock). */
static int capture_keys(ic_index_result_t *r, scope_t *sc, const part_t *p, const uint64_t *keys,
                        const uint32_t *kfl, size_t n) {
  r->keys = malloc(n * sizeof *r->keys);
  r->kflags = malloc(n * sizeof *r->kflags);
  r->kgen = malloc(n * sizeof *r->kgen);
  if (!r->keys || !r->kflags || !r->kgen) return IC_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    r->keys[i] = keys[i];
    r->kflags[i] = kfl[i];
    r->kgen[i] = (kfl[i] & M_LONG) && keys[i] < sc->nblobs ? sc->blobs[keys[i]].gen : 0;
  }
  r->nkeys = n;
  if (r->sc != sc) { /* taken under sc's read lock: it has keys, so it is not being retired */
    result_release_scope(r);
    atomic_fetch_add_explicit(&sc->results, 1, memory_order_relaxed);
    r->sc = sc;
  }
  r->part = p->idx;
  return 0;
}

void ix_result_clear(ic_index_result_t *r) {
  r->n = 0;
  result_drop_caps(r);
}

int ix_result_push(ic_index_result_t *r, ic_index_row_t row) {
  ic_index_row_t *n = realloc(r->rows, (r->n + 1) * sizeof *n); /* rarely more than a few */
  if (!n) return IC_ENOMEM;
  r->rows = n;
  r->rows[r->n++] = row;
  return 0;
}

void ix_result_set_strategy(ic_index_result_t *r, ic_index_strategy_t st) { r->strategy = st; }

int ix_result_note_routes(ic_index_result_t *r, const char *replica, uint32_t routes) {
  const char **n = realloc(r->route_names, (r->nroutes + 1) * sizeof *n);
  if (!n) return IC_ENOMEM;
  r->route_names = n;
  uint32_t *v = realloc(r->routes, (r->nroutes + 1) * sizeof *v);
  if (!v) return IC_ENOMEM;
  r->routes = v;
  r->route_names[r->nroutes] = replica;
  r->routes[r->nroutes++] = routes;
  return 0;
}

uint32_t ix_result_routes_of(const ic_index_result_t *r, const char *replica) {
  for (size_t i = 0; r && i < r->nroutes; i++)
    if (!strcmp(r->route_names[i], replica)) return r->routes[i];
  return 0;
}

int ic_index_result_retain_replicas(ic_index_result_t *r, const char *const *keep, size_t n) {
  if (!r || r->n == 0) return 0;
  size_t w = 0;
  for (size_t i = 0; i < r->n; i++) {
    bool in = false;
    for (size_t k = 0; k < n && !in; k++)
      in = keep[k] && strcmp(keep[k], r->rows[i].replica_id) == 0;
    if (in) r->rows[w++] = r->rows[i];
  }
  r->n = w;
  size_t cw = 0;
  for (size_t i = 0; i < r->ncaps; i++) {
    const char *name = ix_str(r->ix, r->caps[i].replica);
    bool in = false;
    for (size_t k = 0; k < n && !in; k++)
      in = keep[k] && strcmp(keep[k], name) == 0;
    if (in) r->caps[cw++] = r->caps[i];
  }
  r->ncaps = cw;
  return 0;
}

void ic_index_result_credit_hits(ic_index_result_t *r) {
  if (!r || !r->ncaps || !r->sc) return;
  scope_t *sc = r->sc;
  /* Captures are re-resolved under the read lock: an entry evicted since the lookup is
     simply skipped, so no pointer can dangle. Slots are only read here. */
  ixlock_rd(&sc->lock);
  part_t *p = r->part < sc->nparts ? sc->parts[r->part] : NULL;
  for (size_t g = 0; p && g < r->ncaps; g++) {
    capgrp_t *c = &r->caps[g];
    if (c->rep >= sc->nreps || sc->reps[c->rep].dead || sc->reps[c->rep].replica != c->replica)
      continue;
    for (uint32_t b = 0; b < c->nblocks && b < r->nkeys; b++) {
      if ((r->kflags[b] & M_LONG) &&
          (r->keys[b] >= sc->nblobs || sc->blobs[r->keys[b]].gen != r->kgen[b]))
        continue; /* the long key is gone and its id names another key now */
      slot_t *s = part_find(p, r->keys[b], r->kflags[b]);
      if (!s) continue;
      holder_t tmp;
      const holder_t *hs;
      uint32_t hn = slot_holders(s, &tmp, &hs), j;
      for (j = 0; j < hn && META_REP(hs[j].meta) != c->rep; j++) {
      }
      if (j == hn) continue;
      /* the counter lives only in the LFU map (no flag in the slot: readers share the slot) */
      pthread_mutex_lock(&sc->lfu_lock);
      uint64_t k = lfu_key(p->idx, s->key, s->meta, c->rep), v = 0;
      u64map_get(&sc->lfu, k, &v);
      u64map_put(&sc->lfu, k, v + 1);
      atomic_store(&sc->lfu_n, sc->lfu.count);
      pthread_mutex_unlock(&sc->lfu_lock);
    }
  }
  ixlock_rdun(&sc->lock);
}

static int row_cmp(const void *x, const void *y) {
  const ic_index_row_t *a = x, *b = y;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  return strcmp(a->replica_id, b->replica_id);
}

static int row_depth_cmp(const void *x, const void *y) {
  const ic_index_row_t *a = x, *b = y;
  if (a->matched_tokens != b->matched_tokens) return a->matched_tokens > b->matched_tokens ? -1 : 1;
  return strcmp(a->replica_id, b->replica_id);
}

/* ---------------------------------------------------------------- prefix paths */

typedef struct {
  ic_index_t *ix;
  const ic_index_lookup_t *req;
  uint32_t tenant, model, scheme, adapter;
  scope_t *sc;
  tmrec_t *tm;
  tenantrec_t *tr;
  int64_t now, ttl;
  float coef;
  bool lfu;
} lctx_t;

/* Fresh-stats pressure of a replica; caller holds tm->stats_lock (read). */
static float fresh_pressure(const lctx_t *c, uint32_t replica) {
  if (!c->tm) return 0;
  uint64_t v;
  if (!u64map_get(&c->tm->stat_map, replica, &v)) return 0;
  const statrow_t *row = &c->tm->stats[v];
  if (ic_index_freshness(c->now, row->stats_reported, c->ttl) <= 0) return 0;
  return row->s.pressure;
}

static float prefix_score(const lctx_t *c, int32_t matched, float f, float p) {
  const ic_index_ranker_t *rk = &c->ix->cfg.ranker;
  float score = (float)matched * f;
  score = score * pressure_factor(p, rk->pressure_weight);
  score = score * (1.0f + f * c->coef);
  return score;
}

static int add_row(ic_index_result_t *r, size_t *cap, ic_index_row_t row) {
  if (r->n == *cap) {
    size_t nc = *cap ? *cap * 2 : 8;
    ic_index_row_t *n = realloc(r->rows, nc * sizeof *n);
    if (!n) return IC_ENOMEM;
    r->rows = n;
    *cap = nc;
  }
  r->rows[r->n++] = row;
  return 0;
}

static int add_cap(ic_index_result_t *r, size_t *cap, capgrp_t g) {
  if (r->ncaps == *cap) {
    size_t nc = *cap ? *cap * 2 : 8;
    capgrp_t *n = realloc(r->caps, nc * sizeof *n);
    if (!n) return IC_ENOMEM;
    r->caps = n;
    *cap = nc;
  }
  r->caps[r->ncaps++] = g;
  return 0;
}

static int lookup_exact(lctx_t *c, ic_index_result_t *r) {
  scope_t *sc = c->sc;
  int rc = 0;
  size_t rcap = 0, ccap = 0;
  int64_t total;
  ixlock_rd(&sc->lock);
  total = atomic_load(&sc->serving);
  part_t *p = c->adapter == UINT32_MAX ? NULL : scope_part(sc, c->adapter);
  uint64_t key;
  uint32_t flags;
  slot_t *s = NULL;
  if (p && scope_key(sc, c->req->prefix_hash.data, c->req->prefix_hash.len, &key, &flags))
    s = part_find(p, key, flags);
  if (s) {
    if (c->tm) pthread_rwlock_rdlock(&c->tm->stats_lock);
    holder_t tmp;
    const holder_t *hs;
    uint32_t hn = slot_holders(s, &tmp, &hs);
    for (uint32_t j = 0; j < hn && !rc; j++) {
      rep_t *rp = &sc->reps[META_REP(hs[j].meta)];
      if (rp->dead) continue;
      float f = ic_index_freshness(c->now, store_entry_ts(sc, hs[j].ts), c->ttl);
      if (f <= 0) continue;
      if (c->lfu && hs[j].tokens > 0) {
        if (!r->keys) rc = capture_keys(r, sc, p, &key, &flags, 1);
        if (!rc) rc = add_cap(r, &ccap, (capgrp_t){META_REP(hs[j].meta), rp->replica, 1});
      }
      float pr = fresh_pressure(c, rp->replica);
      ic_index_row_t row = {ix_str(c->ix, rp->replica), prefix_score(c, hs[j].tokens, f, pr),
                            hs[j].tokens, f, tier_wire(META_TIER(hs[j].meta))};
      if (!rc) rc = add_row(r, &rcap, row);
    }
    if (c->tm) pthread_rwlock_unlock(&c->tm->stats_lock);
  }
  ixlock_rdun(&sc->lock);
  if (rc) return rc;
  double dp = ic_index_distinguishing_power((int64_t)r->n, total);
  if (dp != 1.0)
    for (size_t i = 0; i < r->n; i++)
      r->rows[i].score = r->rows[i].score * (float)dp;
  return 0;
}

typedef struct {
  uint32_t rep;
  int32_t matched;
  int64_t oldest;
  int32_t tier; /* stored code, folded with worst_tier */
  uint32_t nblocks;
  uint32_t tsid; /* time id of the last block taken: an update's blocks share one, so the
                    next block with the same id needs no time lookup or TTL check */
} run_t;

#define PREP_FIRST 4  /* blocks prefetched before block 0 is known to match */
#define PREP_BATCH 32 /* blocks per later prefetch batch */
#define PREP_AHEAD 24 /* a new batch starts when the walk is this close to the prefetched end */

/* Resolves the keys of blocks [from, to) (clamped to the chain) and prefetches their slots;
 * returns the new prepared end. The walk prepares a batch ahead of itself and only as far as it
 * gets, so a miss at block 0 costs one small batch. The two passes are tight loops on purpose:
 * prefetches spread through the long walk loop took most of its samples (one that misses the
 * TLB appears to hold its reorder-window place until its page walk ends), batched they overlap. */
static size_t chain_prep(scope_t *sc, part_t *p, const ic_index_lookup_t *q, size_t from, size_t to,
                         uint64_t *keys, uint32_t *kfl, uint64_t *hsh) {
  if (to > q->n_block_hashes) to = q->n_block_hashes;
  for (size_t j = from; j < to; j++) {
    const ic_index_bytes_t *bh = &q->block_hashes[j];
    if (!scope_key(sc, bh->data, bh->len, &keys[j], &kfl[j]))
      kfl[j] = UINT32_MAX; /* unknown long key: cannot match */
    else
      hsh[j] = part_hash(p, keys[j], kfl[j]);
  }
  for (size_t j = from; j < to; j++)
    if (kfl[j] != UINT32_MAX) part_prefetch_h(p, hsh[j]);
  return to;
}

static int lookup_chain(lctx_t *c, ic_index_result_t *r) {
  scope_t *sc = c->sc;
  const ic_index_lookup_t *q = c->req;
  size_t nb = q->n_block_hashes;
  int rc = 0;
  size_t rcap = 0, ccap = 0;
  run_t stack_cur[32], stack_fin[32];
  run_t *cur = stack_cur, *fin = stack_fin;
  size_t ncur = 0, nfin = 0, capcur = 32, capfin = 32;
  uint64_t kst[256], hst[256];
  uint32_t fst[256];
  uint64_t *keys = nb <= 256 ? kst : malloc(nb * sizeof *keys);
  uint64_t *hsh = nb <= 256 ? hst : malloc(nb * sizeof *hsh);
  uint32_t *kfl = nb <= 256 ? fst : malloc(nb * sizeof *kfl);
  if (!keys || !kfl || !hsh) {
    if (keys != kst) free(keys);
    if (hsh != hst) free(hsh);
    if (kfl != fst) free(kfl);
    return IC_ENOMEM;
  }
  int64_t total;
  size_t prepped = 0;
  ixlock_rd(&sc->lock);
  total = atomic_load(&sc->serving);
  part_t *p = c->adapter == UINT32_MAX ? NULL : scope_part(sc, c->adapter);
  if (p) prepped = chain_prep(sc, p, q, 0, PREP_FIRST, keys, kfl, hsh);
  for (size_t i = 0; p && i < nb; i++) {
    if (i && i + PREP_AHEAD > prepped && prepped < nb)
      prepped = chain_prep(sc, p, q, prepped, prepped + PREP_BATCH, keys, kfl, hsh);
    slot_t *s = kfl[i] == UINT32_MAX ? NULL : part_find_h(p, hsh[i], keys[i], kfl[i]);
    holder_t tmp;
    const holder_t *hs = NULL;
    uint32_t hn = s ? slot_holders(s, &tmp, &hs) : 0;
    int32_t cnt = q->block_token_counts[i];
    if (i == 0) {
      for (uint32_t j = 0; j < hn; j++) {
        if (sc->reps[META_REP(hs[j].meta)].dead) continue;
        int64_t ts = store_entry_ts(sc, hs[j].ts);
        if (age_ns(c->now, ts) >= c->ttl) continue; /* == freshness <= 0, without the division */
        if (ncur == capcur) {
          run_t *n = cur == stack_cur ? malloc(capcur * 2 * sizeof *n)
                                      : realloc(cur, capcur * 2 * sizeof *n);
          if (!n) {
            rc = IC_ENOMEM;
            break;
          }
          if (cur == stack_cur) memcpy(n, stack_cur, sizeof stack_cur);
          cur = n;
          capcur *= 2;
        }
        cur[ncur++] =
            (run_t){META_REP(hs[j].meta), cnt, ts, (int32_t)META_TIER(hs[j].meta), 1, hs[j].ts};
      }
    } else {
      size_t w = 0;
      for (size_t k = 0; k < ncur; k++) {
        const holder_t *e = NULL;
        for (uint32_t j = 0; j < hn; j++)
          if (META_REP(hs[j].meta) == cur[k].rep) {
            e = &hs[j];
            break;
          }
        bool same_time = e && e->ts == cur[k].tsid;
        int64_t ts = e && !same_time ? store_entry_ts(sc, e->ts) : cur[k].oldest;
        if (!e || (!same_time && age_ns(c->now, ts) >= c->ttl)) {
          if (nfin == capfin) {
            run_t *n = fin == stack_fin ? malloc(capfin * 2 * sizeof *n)
                                        : realloc(fin, capfin * 2 * sizeof *n);
            if (!n) {
              rc = IC_ENOMEM;
              break;
            }
            if (fin == stack_fin) memcpy(n, stack_fin, sizeof stack_fin);
            fin = n;
            capfin *= 2;
          }
          fin[nfin++] = cur[k];
          continue;
        }
        run_t x = cur[k];
        x.matched = (int32_t)((uint32_t)x.matched + (uint32_t)cnt); /* int32 wrap like Go */
        if (ts < x.oldest) x.oldest = ts;
        x.tier = worst_tier(x.tier, (int32_t)META_TIER(e->meta));
        x.nblocks++;
        x.tsid = e->ts;
        cur[w++] = x;
      }
      ncur = w;
    }
    if (rc || ncur == 0) break;
  }
  /* runs that matched the whole walked chain */
  for (size_t k = 0; k < ncur && !rc; k++) {
    if (nfin == capfin) {
      run_t *n =
          fin == stack_fin ? malloc(capfin * 2 * sizeof *n) : realloc(fin, capfin * 2 * sizeof *n);
      if (!n) {
        rc = IC_ENOMEM;
        break;
      }
      if (fin == stack_fin) memcpy(n, stack_fin, sizeof stack_fin);
      fin = n;
      capfin *= 2;
    }
    fin[nfin++] = cur[k];
  }
  if (!rc && nfin) {
    if (c->tm) pthread_rwlock_rdlock(&c->tm->stats_lock);
    uint32_t maxb = 0;
    for (size_t k = 0; k < nfin && !rc; k++) {
      run_t *x = &fin[k];
      if (x->matched <= 0) continue;
      float f = ic_index_freshness(c->now, x->oldest, c->ttl);
      if (f <= 0) continue;
      uint32_t replica = sc->reps[x->rep].replica;
      if (c->lfu) {
        rc = add_cap(r, &ccap, (capgrp_t){x->rep, replica, x->nblocks});
        if (x->nblocks > maxb) maxb = x->nblocks;
      }
      ic_index_row_t row = {ix_str(c->ix, replica),
                            prefix_score(c, x->matched, f, fresh_pressure(c, replica)), x->matched,
                            f, tier_wire((uint32_t)x->tier)};
      if (!rc) rc = add_row(r, &rcap, row);
    }
    if (c->tm) pthread_rwlock_unlock(&c->tm->stats_lock);
    if (!rc && r->ncaps) rc = capture_keys(r, sc, p, keys, kfl, maxb);
  }
  ixlock_rdun(&sc->lock);
  if (cur != stack_cur) free(cur);
  if (fin != stack_fin) free(fin);
  if (keys != kst) free(keys);
  if (hsh != hst) free(hsh);
  if (kfl != fst) free(kfl);
  if (rc) return rc;
  /* depth-aware distinguishing power */
  if (total >= 2 && r->n) {
    ix_sort(r->rows, r->n, sizeof *r->rows, row_depth_cmp);
    size_t left = 0;
    while (left < r->n) {
      size_t right = left + 1;
      while (right < r->n && r->rows[right].matched_tokens == r->rows[left].matched_tokens)
        right++;
      double dp = ic_index_distinguishing_power((int64_t)right, total);
      if (dp != 1.0)
        for (size_t i = left; i < right; i++)
          r->rows[i].score = r->rows[i].score * (float)dp;
      left = right;
    }
  }
  return 0;
}

static bool chain_bearing(const ic_index_lookup_t *q) {
  return q->n_block_hashes || q->n_block_token_counts;
}

static void ctx_init(lctx_t *c, ic_index_t *ix, const ic_index_lookup_t *q) {
  memset(c, 0, sizeof *c);
  c->ix = ix;
  c->req = q;
  const char *s[4] = {nz(q->tenant), nz(q->model), nz(q->scheme), nz(q->adapter)};
  uint32_t id[4];
  ix_resolve(ix, s, id, &c->sc, &c->tm, &c->tr);
  c->tenant = id[0];
  c->model = id[1];
  c->scheme = id[2];
  c->adapter = id[3];
  c->now = ix_now(ix);
  /* resolvers run outside every index lock */
  int64_t ttl = 0;
  if (ix->cfg.ttl_resolver) ttl = ix->cfg.ttl_resolver(ix->cfg.resolver_ud, nz(q->tenant));
  c->ttl = ttl > 0 ? ttl : ix->ttl;
  c->lfu = ix->cfg.eviction_resolver &&
           ix->cfg.eviction_resolver(ix->cfg.resolver_ud, nz(q->tenant)) == IC_INDEX_EVICT_LFU;
  c->coef = slo_coef(&ix->cfg.ranker, q->ttft_budget_ms);
}

static int prefix_lookup(lctx_t *c, ic_index_result_t *r) {
  const ic_index_lookup_t *q = c->req;
  if (!*nz(q->scheme)) return 0;
  int rc = 0;
  if (chain_bearing(q)) {
    if (q->n_block_hashes != q->n_block_token_counts || !q->block_hashes || !q->block_token_counts)
      return 0;
    if (c->sc) rc = lookup_chain(c, r);
  } else if (c->sc) {
    rc = lookup_exact(c, r);
  }
  if (rc) return rc;
  ix_sort(r->rows, r->n, sizeof *r->rows, row_cmp);
  return 0;
}

static ic_index_result_t *result_new(ic_index_t *ix) {
  ic_index_result_t *r = calloc(1, sizeof *r);
  if (r) r->ix = ix;
  return r;
}

int ic_index_lookup(ic_index_t *ix, const ic_index_lookup_t *req, ic_index_result_t **out) {
  if (!ix || !req || !out) return IC_EINVAL;
  ic_index_result_t *r = result_new(ix);
  if (!r) return IC_ENOMEM;
  lctx_t c;
  pin_t pn = ix_pin(ix); /* the records resolved below (records.c) */
  ctx_init(&c, ix, req);
  int rc = prefix_lookup(&c, r);
  ix_unpin(ix, pn);
  if (rc) {
    ic_index_result_free(r);
    return rc;
  }
  r->strategy = r->n ? IC_INDEX_STRATEGY_PREFIX_MATCH : IC_INDEX_STRATEGY_NONE;
  *out = r;
  return 0;
}

/* ---------------------------------------------------------------- TENANT_HOT */

static int tenant_hot(lctx_t *c, ic_index_result_t *r) {
  const ic_index_ranker_t *rk = &c->ix->cfg.ranker;
  int64_t max_age = rk->tenant_hot_max_age_ns;
  if (max_age <= 0 || !*nz(c->req->scheme) || !c->tm || !c->sc) return 0;
  scope_t *sc = c->sc;
  tmrec_t *tm = c->tm;
  size_t rcap = 0;
  int rc = 0;
  ixlock_rd(&sc->lock);
  pthread_rwlock_rdlock(&tm->stats_lock);
  for (uint32_t i = 0; i < tm->nstats && !rc; i++) {
    const statrow_t *row = &tm->stats[i];
    int64_t age = age_ns(c->now, row->stats_reported);
    if (age >= max_age) continue;
    if (row->s.hit_rate < rk->tenant_hot_min_hit_rate) continue;
    uint64_t v;
    if (!u64map_get(&sc->rep_map, row->replica, &v) || sc->reps[v].count <= 0) continue;
    float recency;
    if (age <= 0)
      recency = 1;
    else
      recency = 1.0f - (float)age / (float)max_age;
    float score = row->s.hit_rate * recency;
    score = score * pressure_factor(row->s.pressure, rk->pressure_weight);
    score = score * (1.0f + recency * c->coef);
    rc = add_row(r, &rcap,
                 (ic_index_row_t){ix_str(c->ix, row->replica), score, 0, row->s.hit_rate, 0});
  }
  pthread_rwlock_unlock(&tm->stats_lock);
  ixlock_rdun(&sc->lock);
  if (!rc) ix_sort(r->rows, r->n, sizeof *r->rows, row_cmp);
  return rc;
}

/* ---------------------------------------------------------------- classifier */

static ic_index_strategy_t classify_miss(lctx_t *c) {
  ic_index_t *ix = c->ix;
  if (atomic_load(&ix->distinct_keys) == 0) return IC_INDEX_STRATEGY_NONE;
  tenantrec_t *tr = c->tr;
  if (!tr || atomic_load(&tr->distinct) == 0) return IC_INDEX_STRATEGY_UNKNOWN_TENANT;
  if (!c->tm || atomic_load(&c->tm->distinct) == 0) return IC_INDEX_STRATEGY_UNKNOWN_MODEL;
  if (!c->sc || atomic_load(&c->sc->serving) == 0) return IC_INDEX_STRATEGY_UNKNOWN_HASH_SCHEME;
  return IC_INDEX_STRATEGY_NONE;
}

int ic_index_lookup_route(ic_index_t *ix, const ic_index_lookup_t *req, ic_index_result_t **out) {
  if (!ix || !req || !out) return IC_EINVAL;
  ic_index_result_t *r = result_new(ix);
  if (!r) return IC_ENOMEM;
  *out = r;
  if (!*nz(req->tenant) || !*nz(req->model) || !*nz(req->scheme)) return 0;
  bool chain = chain_bearing(req);
  if (chain && req->n_block_hashes != req->n_block_token_counts) return 0;
  lctx_t c;
  pin_t pn = ix_pin(ix); /* the records resolved below (records.c) */
  ctx_init(&c, ix, req);
  int rc = prefix_lookup(&c, r);
  if (rc) goto fail;
  if (r->n) {
    r->strategy = IC_INDEX_STRATEGY_PREFIX_MATCH;
    ix_unpin(ix, pn);
    return 0;
  }
  result_drop_caps(r);
  if (!chain) {
    if ((rc = tenant_hot(&c, r))) goto fail;
    if (r->n) {
      r->strategy = IC_INDEX_STRATEGY_TENANT_HOT;
      ix_unpin(ix, pn);
      return 0;
    }
  }
  r->strategy = classify_miss(&c);
  ix_unpin(ix, pn);
  return 0;
fail:
  ix_unpin(ix, pn);
  ic_index_result_free(r);
  *out = NULL;
  return rc;
}

/* ---------------------------------------------------------------- presence, affinity */

/* Every reader below runs pinned: the records it resolves stay allocated until it returns. */
bool ic_index_has_any_for_tenant(ic_index_t *ix, const char *tenant) {
  pin_t pn = ix_pin(ix);
  tenantrec_t *tr = ix_find_tenant(ix, ix_find_str(ix, tenant));
  bool any = tr && atomic_load(&tr->distinct) > 0;
  ix_unpin(ix, pn);
  return any;
}

bool ic_index_has_any_for_tenant_model(ic_index_t *ix, const char *tenant, const char *model) {
  pin_t pn = ix_pin(ix);
  tmrec_t *tm = ix_find_tm(ix, ix_find_str(ix, tenant), ix_find_str(ix, model));
  bool any = tm && atomic_load(&tm->distinct) > 0;
  ix_unpin(ix, pn);
  return any;
}

bool ic_index_has_any_for_tenant_model_scheme(ic_index_t *ix, const char *tenant, const char *model,
                                              const char *scheme) {
  pin_t pn = ix_pin(ix);
  scope_t *sc =
      ix_find_scope(ix, ix_find_str(ix, tenant), ix_find_str(ix, model), ix_find_str(ix, scheme));
  bool any = sc && atomic_load(&sc->serving) > 0;
  ix_unpin(ix, pn);
  return any;
}

static int str_ptr_cmp(const void *x, const void *y) {
  return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static bool affinity_hint(ic_index_t *ix, const char *tenant, const char *model, const char *scheme,
                          const uint8_t *seed, size_t seed_len, const char **replica) {
  if (!ix || !seed || seed_len == 0 || !*nz(scheme)) return false;
  scope_t *sc =
      ix_find_scope(ix, ix_find_str(ix, tenant), ix_find_str(ix, model), ix_find_str(ix, scheme));
  if (!sc) return false;
  ixlock_rd(&sc->lock);
  const char **set = malloc((sc->nreps ? sc->nreps : 1) * sizeof *set);
  size_t n = 0;
  for (uint32_t i = 0; set && i < sc->nreps; i++)
    if (!sc->reps[i].dead && sc->reps[i].count > 0) set[n++] = ix_str(ix, sc->reps[i].replica);
  ixlock_rdun(&sc->lock);
  bool ok = false;
  if (set && n) {
    ix_sort(set, n, sizeof *set, str_ptr_cmp);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (EVP_Digest(seed, seed_len, d, &dl, EVP_sha256(), NULL) == 1 && dl >= 8) {
      uint64_t v = 0;
      for (int i = 0; i < 8; i++)
        v = v << 8 | d[i];
      if (replica) *replica = set[v % n];
      ok = true;
    }
  }
  free(set);
  return ok;
}

bool ic_index_affinity_hint(ic_index_t *ix, const char *tenant, const char *model,
                            const char *scheme, const uint8_t *seed, size_t seed_len,
                            const char **replica) {
  if (!ix) return false;
  pin_t pn = ix_pin(ix);
  bool ok = affinity_hint(ix, tenant, model, scheme, seed, seed_len, replica);
  ix_unpin(ix, pn);
  return ok;
}

/* ---------------------------------------------------------------- reads */

static int stats_row_cmp(const void *x, const void *y) {
  return strcmp(((const ic_index_stats_row_t *)x)->replica_id,
                ((const ic_index_stats_row_t *)y)->replica_id);
}

static int cache_state(ic_index_t *ix, const char *tenant, const char *model,
                       ic_index_stats_row_t **rows, size_t *n_rows, int64_t *total_prefixes) {
  if (!ix || !rows || !n_rows) return IC_EINVAL;
  *rows = NULL;
  *n_rows = 0;
  if (total_prefixes) *total_prefixes = 0;
  tmrec_t *tm = ix_find_tm(ix, ix_find_str(ix, tenant), ix_find_str(ix, model));
  if (!tm) return 0;
  if (total_prefixes) *total_prefixes = atomic_load(&tm->distinct);
  pthread_rwlock_rdlock(&tm->stats_lock);
  if (tm->nstats) {
    *rows = malloc(tm->nstats * sizeof **rows);
    if (!*rows) {
      pthread_rwlock_unlock(&tm->stats_lock);
      return IC_ENOMEM;
    }
    for (uint32_t i = 0; i < tm->nstats; i++) {
      const statrow_t *s = &tm->stats[i];
      (*rows)[i] = (ic_index_stats_row_t){ix_str(ix, s->replica), s->s.cache_memory_bytes,
                                          s->s.hit_rate,          s->s.pressure,
                                          s->s.t2_hit_tokens,     s->s.t2_query_tokens,
                                          s->s.load_reported,     s->s.num_waiting,
                                          s->s.num_running,       s->s.kv_usage};
    }
    *n_rows = tm->nstats;
  }
  pthread_rwlock_unlock(&tm->stats_lock);
  ix_sort(*rows, *n_rows, sizeof **rows, stats_row_cmp);
  return 0;
}

int ic_index_cache_state(ic_index_t *ix, const char *tenant, const char *model,
                         ic_index_stats_row_t **rows, size_t *n_rows, int64_t *total_prefixes) {
  if (!ix) return IC_EINVAL;
  pin_t pn = ix_pin(ix);
  int rc = cache_state(ix, tenant, model, rows, n_rows, total_prefixes);
  ix_unpin(ix, pn);
  return rc;
}

static int count_cmp(const void *x, const void *y) {
  return strcmp(((const ic_index_count_t *)x)->name, ((const ic_index_count_t *)y)->name);
}

int ic_index_aggregate(ic_index_t *ix, ic_index_count_t **counts, size_t *n, int64_t *total) {
  if (!ix || !counts || !n) return IC_EINVAL;
  *counts = NULL;
  *n = 0;
  int64_t t = 0;
  pthread_rwlock_rdlock(&ix->dir);
  if (ix->ntenants) *counts = malloc(ix->ntenants * sizeof **counts);
  for (uint32_t i = 0; *counts && i < ix->ntenants; i++) {
    tenantrec_t *tr = ix->tenants[i];
    int64_t d = atomic_load(&tr->distinct);
    if (tr->reserved || d <= 0) continue;
    (*counts)[(*n)++] = (ic_index_count_t){ix_str(ix, tr->tenant), d};
    t += d;
  }
  bool oom = ix->ntenants && !*counts;
  pthread_rwlock_unlock(&ix->dir);
  if (oom) return IC_ENOMEM;
  ix_sort(*counts, *n, sizeof **counts, count_cmp);
  if (total) *total = t;
  return 0;
}

int ic_index_entry_counts_by_model(ic_index_t *ix, ic_index_count_t **counts, size_t *n) {
  if (!ix || !counts || !n) return IC_EINVAL;
  *counts = NULL;
  *n = 0;
  u64map_t pos = {0};
  int rc = 0;
  pthread_rwlock_rdlock(&ix->dir);
  if (ix->ntms) *counts = malloc(ix->ntms * sizeof **counts);
  for (uint32_t i = 0; *counts && i < ix->ntms && !rc; i++) {
    tmrec_t *tm = ix->tms[i];
    uint64_t tv;
    u64map_get(&ix->tenant_map, tm->tenant, &tv);
    if (((tenantrec_t *)(uintptr_t)tv)->reserved) continue;
    int64_t d = atomic_load(&tm->distinct);
    if (d <= 0) continue;
    uint64_t at;
    if (u64map_get(&pos, tm->model, &at)) {
      (*counts)[at].count += d;
    } else {
      rc = u64map_put(&pos, tm->model, *n);
      (*counts)[(*n)++] = (ic_index_count_t){ix_str(ix, tm->model), d};
    }
  }
  if (ix->ntms && !*counts) rc = IC_ENOMEM;
  pthread_rwlock_unlock(&ix->dir);
  u64map_free(&pos);
  if (rc) {
    free(*counts);
    *counts = NULL;
    *n = 0;
    return rc;
  }
  ix_sort(*counts, *n, sizeof **counts, count_cmp);
  return 0;
}

#define SNAP_CHUNK 4096u /* slots per read hold of the snapshot scan */

static int snap_rep_cmp(const void *x, const void *y) {
  const ic_index_snapshot_replica_t *a = x, *b = y;
  int c = strcmp(a->tenant, b->tenant);
  return c ? c : strcmp(a->replica_id, b->replica_id);
}

static int snap_ten_cmp(const void *x, const void *y) {
  return strcmp(((const ic_index_snapshot_tenant_t *)x)->tenant_id,
                ((const ic_index_snapshot_tenant_t *)y)->tenant_id);
}

typedef struct {
  ic_index_snapshot_replica_t *v;
  size_t n, cap;
  u64map_t pos;         /* tenant<<32|replica -> index */
  uint32_t *stat_model; /* model id of the chosen stats row (tie rule) */
} snapacc_t;

static ic_index_snapshot_replica_t *snap_row(ic_index_t *ix, snapacc_t *a, uint32_t tenant,
                                             uint32_t replica) {
  uint64_t k = (uint64_t)tenant << 32 | replica, at;
  if (u64map_get(&a->pos, k, &at)) return &a->v[at];
  if (a->n == a->cap) {
    size_t nc = a->cap ? a->cap * 2 : 16;
    ic_index_snapshot_replica_t *n = realloc(a->v, nc * sizeof *n);
    uint32_t *m = realloc(a->stat_model, nc * sizeof *m);
    if (n) a->v = n;
    if (m) a->stat_model = m;
    if (!n || !m) return NULL;
    a->cap = nc;
  }
  if (u64map_put(&a->pos, k, a->n)) return NULL;
  a->stat_model[a->n] = UINT32_MAX;
  a->v[a->n] = (ic_index_snapshot_replica_t){.replica_id = ix_str(ix, replica),
                                             .tenant = ix_str(ix, tenant),
                                             .last_update_ns = IC_INDEX_TIME_ZERO,
                                             .load_observed_ns = IC_INDEX_TIME_ZERO,
                                             .last_event_at_ns = IC_INDEX_TIME_ZERO};
  return &a->v[a->n++];
}

static int snapshot(ic_index_t *ix, ic_index_snapshot_t *out) {
  if (!ix || !out) return IC_EINVAL;
  memset(out, 0, sizeof *out);
  snapacc_t a = {0};
  int rc = 0;
  pthread_rwlock_rdlock(&ix->dir);
  uint32_t ntm = ix->ntms, nsc = ix->nscopes;
  tmrec_t **tms = malloc((ntm ? ntm : 1) * sizeof *tms);
  scope_t **scs = malloc((nsc ? nsc : 1) * sizeof *scs);
  if (tms && ntm) memcpy(tms, ix->tms, ntm * sizeof *tms);
  if (scs && nsc) memcpy(scs, ix->scopes, nsc * sizeof *scs);
  pthread_rwlock_unlock(&ix->dir);
  if (!tms || !scs) rc = IC_ENOMEM;
  /* 1. latest stats row per (tenant, replica) across models: greatest last_seen, then the
        smallest model name (deterministic tie rule) */
  for (uint32_t i = 0; !rc && i < ntm; i++) {
    tmrec_t *tm = tms[i];
    tenantrec_t *tr = ix_find_tenant(ix, tm->tenant);
    if (!tr || tr->reserved) continue;
    pthread_rwlock_rdlock(&tm->stats_lock);
    for (uint32_t k = 0; k < tm->nstats && !rc; k++) {
      const statrow_t *s = &tm->stats[k];
      ic_index_snapshot_replica_t *row = snap_row(ix, &a, tm->tenant, s->replica);
      if (!row) {
        rc = IC_ENOMEM;
        break;
      }
      size_t at = (size_t)(row - a.v);
      bool take = !row->stats_reported || s->last_seen > row->last_update_ns ||
                  (s->last_seen == row->last_update_ns &&
                   strcmp(ix_str(ix, tm->model), ix_str(ix, a.stat_model[at])) < 0);
      if (!take) continue;
      a.stat_model[at] = tm->model;
      row->stats_reported = true;
      row->last_update_ns = s->last_seen;
      row->cache_memory_bytes = s->s.cache_memory_bytes;
      row->hit_rate = s->s.hit_rate;
      row->pressure = s->s.pressure;
      row->t2_hit_tokens = s->s.t2_hit_tokens;
      row->t2_query_tokens = s->s.t2_query_tokens;
      row->load_reported = s->s.load_reported;
      row->num_waiting = s->s.num_waiting;
      row->num_running = s->s.num_running;
      row->kv_usage = s->s.kv_usage;
      row->load_observed_ns = s->s.load_reported ? s->stats_reported : IC_INDEX_TIME_ZERO;
    }
    pthread_rwlock_unlock(&tm->stats_lock);
  }
  size_t nstatrows = a.n;
  (void)nstatrows;
  /* 2. entries per (tenant, replica) and their newest last_seen (a scan, like the reference) */
  for (uint32_t i = 0; !rc && i < nsc; i++) {
    scope_t *sc = scs[i];
    if (sc->reserved) continue;
    ixlock_rd(&sc->lock);
    uint32_t nr = sc->nreps;
    int64_t *mx = malloc((nr ? nr : 1) * sizeof *mx);
    if (!mx) rc = IC_ENOMEM;
    for (uint32_t r = 0; mx && r < nr; r++)
      mx[r] = IC_INDEX_TIME_ZERO;
    /* The scan gives the lock up every SNAP_CHUNK slots: a snapshot of a big index must not
       hold off writers (and, behind a waiting writer, lookups) for its whole duration. Between
       chunks a table may have grown or slots shifted, so an entry can be missed or seen twice:
       the newest-timestamp column may then lag by one write, the counts below are exact. */
    for (uint32_t pi = 0; mx && pi < sc->nparts; pi++) {
      for (uint32_t si = 0; si < SUBS; si++) {
        for (uint32_t k = 0;; k++) {
          if (k && k % SNAP_CHUNK == 0) {
            ixlock_rdun(&sc->lock);
            ixlock_rd(&sc->lock);
          }
          const sub_t *sb = &sc->parts[pi]->subs[si]; /* re-read: growth swaps the array */
          if (k >= sb->cap) break;
          holder_t tmp;
          const holder_t *hs;
          uint32_t hn = slot_holders(&sb->slots[k], &tmp, &hs);
          for (uint32_t j = 0; j < hn; j++) {
            uint32_t rep = META_REP(hs[j].meta);
            int64_t ts = store_entry_ts(sc, hs[j].ts);
            if (rep < nr && !sc->reps[rep].dead && ts > mx[rep]) mx[rep] = ts;
          }
        }
      }
    }
    for (uint32_t r = 0; mx && r < nr && !rc; r++) {
      if (sc->reps[r].dead || sc->reps[r].count <= 0) continue;
      ic_index_snapshot_replica_t *row = snap_row(ix, &a, sc->tenant, sc->reps[r].replica);
      if (!row) {
        rc = IC_ENOMEM;
        break;
      }
      row->prefix_count += sc->reps[r].count;
      if (row->last_event_at_ns == IC_INDEX_TIME_ZERO || mx[r] > row->last_event_at_ns)
        row->last_event_at_ns = mx[r];
    }
    free(mx);
    ixlock_rdun(&sc->lock);
  }
  /* 3. tenants: union of stats tenants and aggregate buckets */
  ic_index_count_t *agg = NULL;
  size_t nagg = 0;
  int64_t total = 0;
  if (!rc) rc = ic_index_aggregate(ix, &agg, &nagg, &total);
  ic_index_snapshot_tenant_t *ten = NULL;
  size_t nten = 0;
  if (!rc) {
    ten = malloc((nagg + a.n + 1) * sizeof *ten);
    if (!ten) rc = IC_ENOMEM;
  }
  if (!rc) {
    u64map_t tpos = {0};
    double *sum = calloc(nagg + a.n + 1, sizeof *sum);
    int64_t *cnt = calloc(nagg + a.n + 1, sizeof *cnt);
    if (!sum || !cnt) rc = IC_ENOMEM;
    for (size_t i = 0; !rc && i < nagg; i++) {
      uint32_t t = ix_find_str(ix, agg[i].name);
      u64map_put(&tpos, t, nten);
      ten[nten++] = (ic_index_snapshot_tenant_t){agg[i].name, agg[i].count, 0, false, 0};
    }
    for (size_t i = 0; !rc && i < a.n; i++) {
      if (!a.v[i].stats_reported) continue;
      uint32_t t = ix_find_str(ix, a.v[i].tenant);
      uint64_t at;
      if (!u64map_get(&tpos, t, &at)) {
        at = nten;
        u64map_put(&tpos, t, at);
        ten[nten++] = (ic_index_snapshot_tenant_t){a.v[i].tenant, 0, 0, false, 0};
      }
      sum[at] += (double)a.v[i].hit_rate;
      cnt[at]++;
    }
    for (size_t i = 0; !rc && i < nten; i++) {
      if (cnt[i]) {
        ten[i].hit_rate = (float)(sum[i] / (double)cnt[i]);
        ten[i].hit_rate_reported = true;
      }
    }
    free(sum);
    free(cnt);
    u64map_free(&tpos);
  }
  free(agg);
  free(tms);
  free(scs);
  u64map_free(&a.pos);
  free(a.stat_model);
  if (rc) {
    free(a.v);
    free(ten);
    return rc;
  }
  ix_sort(a.v, a.n, sizeof *a.v, snap_rep_cmp);
  ix_sort(ten, nten, sizeof *ten, snap_ten_cmp);
  out->replicas = a.n ? a.v : NULL;
  if (!a.n) free(a.v);
  out->n_replicas = a.n;
  out->tenants = nten ? ten : NULL;
  if (!nten) free(ten);
  out->n_tenants = nten;
  out->total_prefixes = total;
  out->hot_prefixes = 0;
  return 0;
}

int ic_index_snapshot(ic_index_t *ix, ic_index_snapshot_t *out) {
  if (!ix) return IC_EINVAL;
  pin_t pn = ix_pin(ix); /* the record copies it walks outside the directory lock */
  int rc = snapshot(ix, out);
  ix_unpin(ix, pn);
  return rc;
}

void ic_index_snapshot_free(ic_index_snapshot_t *s) {
  if (!s) return;
  free(s->replicas);
  free(s->tenants);
  memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- introspection */

static void counters(ic_index_t *ix, ic_index_counters_t *out) {
  memset(out, 0, sizeof *out);
  out->total_entries = atomic_load(&ix->total_entries);
  out->reserved_entries = atomic_load(&ix->reserved_entries);
  out->distinct_keys = atomic_load(&ix->distinct_keys);
  out->pending_reclaim = atomic_load(&ix->dead_pending);
  pthread_rwlock_rdlock(&ix->dir);
  uint32_t n = ix->nscopes;
  scope_t **v = malloc((n ? n : 1) * sizeof *v);
  if (v && n) memcpy(v, ix->scopes, n * sizeof *v);
  pthread_rwlock_unlock(&ix->dir);
  size_t mem = 0;
  for (uint32_t i = 0; v && i < n; i++) {
    scope_t *sc = v[i];
    ixlock_rd(&sc->lock);
    for (uint32_t p = 0; p < sc->nparts; p++) {
      mem += sizeof(part_t);
      for (uint32_t s = 0; s < SUBS; s++) {
        sub_t *sb = &sc->parts[p]->subs[s];
        mem += (size_t)sb->cap * sizeof(slot_t);
        for (uint32_t k = 0; k < sb->cap; k++)
          if ((sb->slots[k].meta & ST_MASK) == ST_MULTI) {
            spill_t *sp;
            memcpy(&sp, &sb->slots[k].a, sizeof sp);
            mem += sizeof(spill_t) + sp->cap * sizeof(holder_t);
          }
      }
    }
    mem += sc->captimes * sizeof(tslot_t) + sc->capreps * sizeof(rep_t) +
           sc->capblobs * sizeof(blob_t);
    ixlock_rdun(&sc->lock);
  }
  free(v);
  out->memory_bytes = mem;
}

void ic_index_counters(ic_index_t *ix, ic_index_counters_t *out) {
  pin_t pn = ix_pin(ix);
  counters(ix, out);
  ix_unpin(ix, pn);
}

static int64_t access_count(ic_index_t *ix, const char *tenant, const char *model,
                            const char *scheme, const char *adapter, const uint8_t *hash,
                            size_t hash_len, const char *replica) {
  scope_t *sc =
      ix_find_scope(ix, ix_find_str(ix, tenant), ix_find_str(ix, model), ix_find_str(ix, scheme));
  uint32_t ad = ix_find_str(ix, adapter), rid = ix_find_str(ix, replica);
  if (!sc || ad == UINT32_MAX || rid == UINT32_MAX) return -1;
  int64_t res = -1;
  ixlock_rd(&sc->lock);
  part_t *p = scope_part(sc, ad);
  uint64_t key, rv;
  uint32_t flags;
  if (p && u64map_get(&sc->rep_map, rid, &rv) && scope_key(sc, hash, hash_len, &key, &flags)) {
    slot_t *s = part_find(p, key, flags);
    holder_t tmp;
    const holder_t *hs;
    uint32_t hn = s ? slot_holders(s, &tmp, &hs) : 0;
    for (uint32_t j = 0; j < hn; j++) {
      if (META_REP(hs[j].meta) != rv) continue;
      res = (int64_t)store_entry_eff(sc, p, s, &hs[j]);
    }
  }
  ixlock_rdun(&sc->lock);
  return res;
}

int64_t ic_index_access_count(ic_index_t *ix, const char *tenant, const char *model,
                              const char *scheme, const char *adapter, const uint8_t *hash,
                              size_t hash_len, const char *replica) {
  pin_t pn = ix_pin(ix);
  int64_t n = access_count(ix, tenant, model, scheme, adapter, hash, hash_len, replica);
  ix_unpin(ix, pn);
  return n;
}
