/* A deliberately naive model of the index semantics (keys, entries, scoring: flat arrays, full
 * scans and sorts) plus a random operation driver that applies every operation to both the
 * model and the real lib/index and compares every answer. Shared by the differential unit
 * test and the fuzz target; reports the first mismatch through a message buffer. */
#ifndef TEST_INDEX_MODEL_H
#define TEST_INDEX_MODEL_H
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/index.h"

#define NM_MIN (60LL * 1000000000LL)

static const char *const NM_TEN[] = {"t0", "t1", IC_INDEX_PROBE_TENANT};
static const char *const NM_MOD[] = {"m0", "m1"};
static const char *const NM_SCH[] = {"vllm", "sglang", ""};
static const char *const NM_ADA[] = {"", "a1"};
static const char *const NM_REP[] = {"r0", "r1", "r2", "r3"};
static const char *const NM_HASH[] = {
    "h0", "h1", "h2", "h3", "hash-000", "hash-001", "hash-002", "hash-003", "long-hash-xyz0", ""};
static const int NM_CANON[] = {4, 5, 0, 8, 6, 1}; /* a shared chain, so runs of many depths occur */
#define NM_NT 3
#define NM_NM 2
#define NM_NS 3
#define NM_NA 2
#define NM_NR 4
#define NM_NH 10

/* ---------------------------------------------------------------- randomness source */

typedef struct {
  uint64_t s;
  const uint8_t *data; /* fuzz mode: bytes drive choices; exhausted -> zeros */
  size_t len, pos;
} nm_rng_t;

static uint32_t nm_rand(nm_rng_t *g, uint32_t n) {
  uint32_t v;
  if (g->data) {
    v = 0;
    for (int i = 0; i < 2; i++)
      v = v << 8 | (g->pos < g->len ? g->data[g->pos++] : 0);
  } else {
    g->s ^= g->s << 13;
    g->s ^= g->s >> 7;
    g->s ^= g->s << 17;
    v = (uint32_t)(g->s >> 16);
  }
  return n ? v % n : 0;
}
static inline bool nm_done(const nm_rng_t *g) { return g->data && g->pos >= g->len; }

/* ---------------------------------------------------------------- model state */

typedef struct {
  int t, m, s, a, h, r;
  int32_t tokens, tier;
  int64_t ts, cnt;
} nent_t;

typedef struct {
  int t, m, r;
  ic_index_stats_t s;
  int64_t last_seen, reported;
} nstat_t;

typedef struct {
  nent_t *e;
  size_t n, cap;
  nstat_t st[NM_NT * NM_NM * NM_NR];
  size_t nst;
  int64_t now, ttl_global, max_entries;
  int64_t tenant_ttl[NM_NT];
  int algo[NM_NT];
  bool quota_on[NM_NT];
  int64_t quota[NM_NT];
  bool reserved_probe;
  ic_index_ranker_t rk;
  ic_index_t *ix;
  char msg[512];
  long ops, lookups, hits;
} nm_t;

static int nm_tidx(const char *t) {
  for (int i = 0; i < NM_NT; i++)
    if (strcmp(t, NM_TEN[i]) == 0) return i;
  return -1;
}
static int64_t nm_clock(void *ud) { return ((nm_t *)ud)->now; }
static int64_t nm_ttl_res(void *ud, const char *t) {
  int i = nm_tidx(t);
  return i < 0 ? 0 : ((nm_t *)ud)->tenant_ttl[i];
}
static ic_index_eviction_t nm_algo_res(void *ud, const char *t) {
  int i = nm_tidx(t);
  return (i >= 0 && ((nm_t *)ud)->algo[i]) ? IC_INDEX_EVICT_LFU : IC_INDEX_EVICT_LRU;
}
static bool nm_quota_res(void *ud, const char *t, int64_t *max) {
  nm_t *m = ud;
  int i = nm_tidx(t);
  if (i < 0 || !m->quota_on[i]) return false;
  *max = m->quota[i];
  return true;
}

static int nm_cmp_bytes(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), n = la < lb ? la : lb;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c;
  return la < lb ? -1 : la > lb;
}

static int64_t nm_ttl(const nm_t *m, int t) {
  return m->tenant_ttl[t] > 0 ? m->tenant_ttl[t] : m->ttl_global;
}

static float nm_fresh(int64_t now, int64_t t, int64_t ttl) {
  if (ttl <= 0) return 0;
  int64_t age;
  if (__builtin_sub_overflow(now, t, &age)) age = t < 0 ? INT64_MAX : INT64_MIN;
  if (age <= 0) return 1;
  if (age >= ttl) return 0;
  return (float)(1.0 - (double)age / (double)ttl);
}

static bool nm_reserved(const nm_t *m, int t) { return m->reserved_probe && t == 2; }

static nent_t *nm_find(nm_t *m, int t, int mo, int s, int a, int h, int r) {
  for (size_t i = 0; i < m->n; i++) {
    nent_t *e = &m->e[i];
    if (e->t == t && e->m == mo && e->s == s && e->a == a && e->h == h && e->r == r) return e;
  }
  return NULL;
}

static void nm_upsert(nm_t *m, int t, int mo, int s, int a, int h, int r, int32_t tokens,
                      int32_t tier, int64_t ts) {
  nent_t *e = nm_find(m, t, mo, s, a, h, r);
  if (!e) {
    if (m->n == m->cap) {
      m->cap = m->cap ? m->cap * 2 : 64;
      m->e = realloc(m->e, m->cap * sizeof *m->e);
    }
    e = &m->e[m->n++];
    *e = (nent_t){t, mo, s, a, h, r, 0, 0, 0, 0};
  }
  e->tokens = tokens;
  e->tier = tier;
  e->ts = ts;
}

static void nm_del(nm_t *m, size_t i) { m->e[i] = m->e[--m->n]; }

static nstat_t *nm_stat(nm_t *m, int t, int mo, int r) {
  for (size_t i = 0; i < m->nst; i++)
    if (m->st[i].t == t && m->st[i].m == mo && m->st[i].r == r) return &m->st[i];
  return NULL;
}
static void nm_stat_del(nm_t *m, nstat_t *s) { *s = m->st[--m->nst]; }

static bool same_key(const nent_t *x, const nent_t *y) {
  return x->t == y->t && x->m == y->m && x->s == y->s && x->a == y->a && x->h == y->h;
}

static int64_t nm_distinct(const nm_t *m, int t /* -1 = all */, int mo /* -1 = any */) {
  int64_t n = 0;
  for (size_t i = 0; i < m->n; i++) {
    const nent_t *e = &m->e[i];
    if ((t >= 0 && e->t != t) || (mo >= 0 && e->m != mo)) continue;
    bool first = true;
    for (size_t j = 0; j < i && first; j++)
      first = !same_key(&m->e[j], e);
    n += first;
  }
  return n;
}

/* ---------------------------------------------------------------- quota and cap */

static const nm_t *nm_sort_model;

static int nm_key_cmp(const nent_t *a, const nent_t *b) {
  int c;
  if ((c = strcmp(NM_TEN[a->t], NM_TEN[b->t]))) return c;
  if ((c = strcmp(NM_MOD[a->m], NM_MOD[b->m]))) return c;
  if ((c = strcmp(NM_SCH[a->s], NM_SCH[b->s]))) return c;
  if ((c = strcmp(NM_ADA[a->a], NM_ADA[b->a]))) return c;
  return nm_cmp_bytes(NM_HASH[a->h], NM_HASH[b->h]);
}

static int64_t nm_key_age(const nm_t *m, const nent_t *k) {
  int64_t age = INT64_MIN;
  for (size_t i = 0; i < m->n; i++)
    if (same_key(&m->e[i], k) && m->e[i].ts > age) age = m->e[i].ts;
  return age;
}

static int nm_quota_cmp(const void *x, const void *y) {
  const nent_t *a = x, *b = y;
  int64_t aa = nm_key_age(nm_sort_model, a), ab = nm_key_age(nm_sort_model, b);
  if (aa != ab) return aa < ab ? -1 : 1;
  return nm_key_cmp(a, b);
}

static int64_t nm_quota_enforce(nm_t *m, int t, int64_t budget) {
  if (budget < 0 || nm_distinct(m, t, -1) <= budget) return 0;
  nent_t *keys = malloc((m->n + 1) * sizeof *keys);
  size_t nk = 0;
  for (size_t i = 0; i < m->n; i++) {
    if (m->e[i].t != t) continue;
    bool dup = false;
    for (size_t j = 0; j < nk && !dup; j++)
      dup = same_key(&keys[j], &m->e[i]);
    if (!dup) keys[nk++] = m->e[i];
  }
  nm_sort_model = m;
  qsort(keys, nk, sizeof *keys, nm_quota_cmp);
  int64_t removed = 0;
  for (size_t k = 0; k < nk && nm_distinct(m, t, -1) > budget; k++) {
    for (size_t i = 0; i < m->n;) {
      if (same_key(&m->e[i], &keys[k]))
        nm_del(m, i);
      else
        i++;
    }
    removed++;
  }
  free(keys);
  return removed;
}

static int nm_cap_cmp(const void *x, const void *y) {
  const nent_t *a = x, *b = y;
  const nm_t *m = nm_sort_model;
  int64_t ea = m->algo[a->t] ? a->cnt : 0, eb = m->algo[b->t] ? b->cnt : 0;
  if (ea != eb) return ea < eb ? -1 : 1;
  if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
  int c = nm_key_cmp(a, b);
  if (c) return c;
  return strcmp(NM_REP[a->r], NM_REP[b->r]);
}

static void nm_cap_enforce(nm_t *m) {
  int64_t eff = 0;
  for (size_t i = 0; i < m->n; i++)
    eff += !nm_reserved(m, m->e[i].t);
  if (m->max_entries <= 0 || eff <= m->max_entries) return;
  nent_t *c = malloc(m->n * sizeof *c);
  size_t nc = 0;
  for (size_t i = 0; i < m->n; i++)
    if (!nm_reserved(m, m->e[i].t)) c[nc++] = m->e[i];
  nm_sort_model = m;
  qsort(c, nc, sizeof *c, nm_cap_cmp);
  for (size_t k = 0; k < nc && eff > m->max_entries; k++) {
    for (size_t i = 0; i < m->n; i++) {
      if (same_key(&m->e[i], &c[k]) && m->e[i].r == c[k].r) {
        nm_del(m, i);
        eff--;
        break;
      }
    }
  }
  free(c);
}

/* ---------------------------------------------------------------- lookup */

typedef struct {
  int r;
  float score, prob;
  int32_t matched, tier;
} nrow_t;

static int nm_row_cmp(const void *x, const void *y) {
  const nrow_t *a = x, *b = y;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  return strcmp(NM_REP[a->r], NM_REP[b->r]);
}
static int nm_depth_cmp(const void *x, const void *y) {
  const nrow_t *a = x, *b = y;
  if (a->matched != b->matched) return a->matched > b->matched ? -1 : 1;
  return strcmp(NM_REP[a->r], NM_REP[b->r]);
}

static int nm_serving(const nm_t *m, int t, int mo, int s, bool out[NM_NR]) {
  int n = 0;
  for (int r = 0; r < NM_NR; r++)
    out[r] = false;
  for (size_t i = 0; i < m->n; i++) {
    const nent_t *e = &m->e[i];
    if (e->t == t && e->m == mo && e->s == s && !out[e->r]) {
      out[e->r] = true;
      n++;
    }
  }
  return n;
}

static double nm_dp(int64_t matching, int64_t total) {
  if (total <= 1 || matching < 0) return 1.0;
  if (matching >= total) return 0.0;
  return 1.0 - (double)matching / (double)total;
}

static float nm_pf(float p, float w) {
  float f = 1.0f - w * p;
  return f < 0 ? 0 : (f > 1 ? 1 : f);
}

typedef struct {
  int t, m, s, a, h; /* h = -1: no exact hash (empty bytes) */
  int nb, nc;
  int blocks[8];
  int32_t counts[8];
  int32_t ttft;
} nq_t;

static float nm_pressure(nm_t *m, int t, int mo, int r, int64_t ttl) {
  nstat_t *s = nm_stat(m, t, mo, r);
  if (!s || nm_fresh(m->now, s->reported, ttl) <= 0) return 0;
  return s->s.pressure;
}

static int32_t nm_wire_tier(int32_t t) { return (t >= 1 && t <= 3) ? t : 0; }

/* Returns rows; caps[] gets captured entry indices (duplicates allowed). */
static size_t nm_prefix(nm_t *m, const nq_t *q, nrow_t *rows, size_t *caps, size_t *ncaps) {
  size_t n = 0;
  *ncaps = 0;
  if (q->s == 2) return 0; /* empty scheme */
  int64_t ttl = nm_ttl(m, q->t);
  bool lfu = m->algo[q->t];
  float coef = (m->rk.slo_tight_ttft_ms > 0 && m->rk.slo_tight_bias > 0 && q->ttft > 0 &&
                q->ttft < m->rk.slo_tight_ttft_ms)
                   ? m->rk.slo_tight_bias
                   : 0;
  bool serv[NM_NR];
  int total = nm_serving(m, q->t, q->m, q->s, serv);
  if (q->nb || q->nc) {
    if (q->nb != q->nc) return 0;
    struct {
      bool on;
      int32_t matched, tier;
      int64_t oldest;
      int nblocks;
    } cur[NM_NR] = {0}, fin[NM_NR] = {0};
    for (int i = 0; i < q->nb; i++) {
      nent_t *hold[NM_NR] = {0};
      for (int r = 0; r < NM_NR; r++)
        hold[r] = nm_find(m, q->t, q->m, q->s, q->a, q->blocks[i], r);
      bool any = false;
      for (int r = 0; r < NM_NR; r++) {
        nent_t *e = hold[r];
        bool fresh = e && nm_fresh(m->now, e->ts, ttl) > 0;
        if (i == 0) {
          if (fresh) {
            cur[r].on = true;
            cur[r].matched = q->counts[0];
            cur[r].oldest = e->ts;
            cur[r].tier = e->tier;
            cur[r].nblocks = 1;
          }
        } else if (cur[r].on) {
          if (!fresh) {
            fin[r].on = true;
            fin[r].matched = cur[r].matched;
            fin[r].oldest = cur[r].oldest;
            fin[r].tier = cur[r].tier;
            fin[r].nblocks = cur[r].nblocks;
            cur[r].on = false;
          } else {
            cur[r].matched = (int32_t)((uint32_t)cur[r].matched + (uint32_t)q->counts[i]);
            if (e->ts < cur[r].oldest) cur[r].oldest = e->ts;
            int32_t a = cur[r].tier, b = e->tier;
            cur[r].tier = (a == 0 || b == 0) ? 0 : (a > b ? a : b);
            cur[r].nblocks++;
          }
        }
        any |= cur[r].on;
      }
      if (!any) break;
    }
    for (int r = 0; r < NM_NR; r++)
      if (cur[r].on) {
        fin[r].on = true;
        fin[r].matched = cur[r].matched;
        fin[r].oldest = cur[r].oldest;
        fin[r].tier = cur[r].tier;
        fin[r].nblocks = cur[r].nblocks;
      }
    for (int r = 0; r < NM_NR; r++) {
      if (!fin[r].on || fin[r].matched <= 0) continue;
      float f = nm_fresh(m->now, fin[r].oldest, ttl);
      if (f <= 0) continue;
      if (lfu)
        for (int b = 0; b < fin[r].nblocks; b++) {
          nent_t *e = nm_find(m, q->t, q->m, q->s, q->a, q->blocks[b], r);
          caps[(*ncaps)++] = (size_t)(e - m->e);
        }
      float p = nm_pressure(m, q->t, q->m, r, ttl);
      float sc = (float)fin[r].matched * f;
      sc = sc * nm_pf(p, m->rk.pressure_weight);
      sc = sc * (1.0f + f * coef);
      rows[n++] = (nrow_t){r, sc, f, fin[r].matched, nm_wire_tier(fin[r].tier)};
    }
    if (total >= 2 && n) {
      qsort(rows, n, sizeof *rows, nm_depth_cmp);
      for (size_t l = 0; l < n;) {
        size_t rr = l + 1;
        while (rr < n && rows[rr].matched == rows[l].matched)
          rr++;
        double dp = nm_dp((int64_t)rr, total);
        if (dp != 1.0)
          for (size_t i = l; i < rr; i++)
            rows[i].score = rows[i].score * (float)dp;
        l = rr;
      }
    }
  } else {
    int h = q->h < 0 ? NM_NH - 1 : q->h;
    for (int r = 0; r < NM_NR; r++) {
      nent_t *e = nm_find(m, q->t, q->m, q->s, q->a, h, r);
      if (!e) continue;
      float f = nm_fresh(m->now, e->ts, ttl);
      if (f <= 0) continue;
      if (lfu && e->tokens > 0) caps[(*ncaps)++] = (size_t)(e - m->e);
      float p = nm_pressure(m, q->t, q->m, r, ttl);
      float sc = (float)e->tokens * f;
      sc = sc * nm_pf(p, m->rk.pressure_weight);
      sc = sc * (1.0f + f * coef);
      rows[n++] = (nrow_t){r, sc, f, e->tokens, nm_wire_tier(e->tier)};
    }
    double dp = nm_dp((int64_t)n, total);
    if (dp != 1.0)
      for (size_t i = 0; i < n; i++)
        rows[i].score = rows[i].score * (float)dp;
  }
  qsort(rows, n, sizeof *rows, nm_row_cmp);
  return n;
}

static size_t nm_hot(nm_t *m, const nq_t *q, nrow_t *rows) {
  int64_t max_age = m->rk.tenant_hot_max_age_ns;
  if (max_age <= 0 || q->s == 2) return 0;
  bool serv[NM_NR];
  nm_serving(m, q->t, q->m, q->s, serv);
  float coef = (m->rk.slo_tight_ttft_ms > 0 && m->rk.slo_tight_bias > 0 && q->ttft > 0 &&
                q->ttft < m->rk.slo_tight_ttft_ms)
                   ? m->rk.slo_tight_bias
                   : 0;
  size_t n = 0;
  for (int r = 0; r < NM_NR; r++) {
    nstat_t *s = nm_stat(m, q->t, q->m, r);
    if (!s || !serv[r]) continue;
    int64_t age;
    if (__builtin_sub_overflow(m->now, s->reported, &age))
      age = s->reported < 0 ? INT64_MAX : INT64_MIN;
    if (age >= max_age || s->s.hit_rate < m->rk.tenant_hot_min_hit_rate) continue;
    float rec = age <= 0 ? 1.0f : 1.0f - (float)age / (float)max_age;
    float sc = s->s.hit_rate * rec;
    sc = sc * nm_pf(s->s.pressure, m->rk.pressure_weight);
    sc = sc * (1.0f + rec * coef);
    rows[n++] = (nrow_t){r, sc, s->s.hit_rate, 0, 0};
  }
  qsort(rows, n, sizeof *rows, nm_row_cmp);
  return n;
}

static ic_index_strategy_t nm_classify(nm_t *m, const nq_t *q) {
  if (m->n == 0) return IC_INDEX_STRATEGY_NONE;
  if (nm_distinct(m, q->t, -1) == 0) return IC_INDEX_STRATEGY_UNKNOWN_TENANT;
  if (nm_distinct(m, q->t, q->m) == 0) return IC_INDEX_STRATEGY_UNKNOWN_MODEL;
  bool serv[NM_NR];
  if (nm_serving(m, q->t, q->m, q->s, serv) == 0) return IC_INDEX_STRATEGY_UNKNOWN_HASH_SCHEME;
  return IC_INDEX_STRATEGY_NONE;
}

/* ---------------------------------------------------------------- driver */

#define NM_FAIL(m, ...)                                                                            \
  do {                                                                                             \
    snprintf((m)->msg, sizeof(m)->msg, __VA_ARGS__);                                               \
    return false;                                                                                  \
  } while (0)

static int32_t nm_tier_pick(nm_rng_t *g) {
  static const int32_t tiers[] = {0, 0, 0, 1, 2, 3, 7, -1, 300};
  return tiers[nm_rand(g, 9)];
}
static int32_t nm_tier_store(int32_t w) { return w == 0 ? 1 : (w < 0 ? INT32_MAX : w); }

static ic_index_bytes_t nm_hb(int h) {
  return (ic_index_bytes_t){strlen(NM_HASH[h]), (const uint8_t *)NM_HASH[h]};
}

/* Small budgets evict on most ingests; larger ones (16-63 keys) let the index pop several
 * passes from one cached quota order, with refreshes, removals and clears in between. */
static int64_t nm_quota_pick(nm_rng_t *g) {
  return nm_rand(g, 2) ? nm_rand(g, 6) : 16 + nm_rand(g, 48);
}

static bool nm_init(nm_t *m, nm_rng_t *g) {
  memset(m, 0, sizeof *m);
  m->now = 1000000LL * 1000000000LL;
  m->ttl_global = 30 * NM_MIN;
  static const int64_t caps[] = {0, 0, 4, 7, 12, 20};
  m->max_entries = caps[nm_rand(g, 6)];
  m->tenant_ttl[1] = nm_rand(g, 2) ? 10 * NM_MIN : 0;
  m->reserved_probe = nm_rand(g, 2);
  for (int t = 0; t < NM_NT; t++) {
    m->algo[t] = nm_rand(g, 3) == 0;
    m->quota_on[t] = nm_rand(g, 4) == 0;
    m->quota[t] = nm_quota_pick(g);
  }
  ic_index_config_t c;
  ic_index_config_init(&c);
  if (nm_rand(g, 4) == 0) {
    c.ranker.slo_tight_ttft_ms = 100;
    c.ranker.slo_tight_bias = 5;
  }
  m->rk = c.ranker;
  c.ttl_ns = m->ttl_global;
  c.max_entries = m->max_entries;
  c.cap_fair_share = false; /* the model is the reference's purely global cap order */
  c.clock = nm_clock;
  c.clock_ud = m;
  c.ttl_resolver = nm_ttl_res;
  c.eviction_resolver = nm_algo_res;
  c.quota_resolver = nm_quota_res;
  c.resolver_ud = m;
  const char *res[] = {IC_INDEX_PROBE_TENANT};
  if (m->reserved_probe) {
    c.reserved_tenants = res;
    c.n_reserved_tenants = 1;
  }
  m->ix = ic_index_create(&c);
  return m->ix != NULL;
}

static void nm_fini(nm_t *m) {
  ic_index_destroy(m->ix);
  free(m->e);
  m->e = NULL;
}

static bool nm_check_counts(nm_t *m) {
  ic_index_counters_t k;
  ic_index_counters(m->ix, &k);
  if (k.total_entries != (int64_t)m->n)
    NM_FAIL(m, "total_entries %lld != model %zu", (long long)k.total_entries, m->n);
  int64_t d = nm_distinct(m, -1, -1);
  if (k.distinct_keys != d)
    NM_FAIL(m, "distinct %lld != model %lld", (long long)k.distinct_keys, (long long)d);
  ic_index_count_t *agg;
  size_t n;
  int64_t total;
  if (ic_index_aggregate(m->ix, &agg, &n, &total)) NM_FAIL(m, "aggregate failed");
  int64_t mt = 0;
  size_t want = 0;
  for (int t = 0; t < NM_NT; t++) {
    if (nm_reserved(m, t)) continue;
    int64_t c = nm_distinct(m, t, -1);
    if (!c) continue;
    mt += c;
    bool found = false;
    for (size_t i = 0; i < n; i++)
      if (strcmp(agg[i].name, NM_TEN[t]) == 0) found = agg[i].count == c;
    if (!found) {
      free(agg);
      NM_FAIL(m, "aggregate bucket %s mismatch", NM_TEN[t]);
    }
    want++;
  }
  free(agg);
  if (n != want || total != mt) NM_FAIL(m, "aggregate size/total mismatch");
  return true;
}

static bool nm_op_ingest(nm_t *m, nm_rng_t *g) {
  int r = nm_rand(g, NM_NR), t = nm_rand(g, NM_NT), mo = nm_rand(g, NM_NM);
  int s = nm_rand(g, 8) == 0 ? 2 : nm_rand(g, 2), a = nm_rand(g, 3) == 0 ? 1 : 0;
  int64_t us = 0;
  if (nm_rand(g, 4) == 0) us = m->now / 1000 + ((int64_t)nm_rand(g, 21) - 18) * 60000000LL;
  ic_index_prefix_t ps[3];
  ic_index_bytes_t bh[3][6];
  int32_t bc[3][6];
  int pa[3];
  int np = (int)nm_rand(g, 4);
  for (int i = 0; i < np; i++) {
    memset(&ps[i], 0, sizeof ps[i]);
    pa[i] = nm_rand(g, 4) == 0 ? (int)nm_rand(g, 2) : -1;
    ps[i].adapter = pa[i] >= 0 ? NM_ADA[pa[i]] : NULL;
    ps[i].tier = nm_tier_pick(g);
    int kind = nm_rand(g, 4);
    if (kind == 0 || kind == 3) {
      ps[i].prefix_hash = nm_hb(nm_rand(g, NM_NH));
      ps[i].token_count = (int32_t)nm_rand(g, 200) - 5;
    }
    if (kind >= 1) {
      int nb = 1 + nm_rand(g, 5), nc = nb;
      if (nm_rand(g, 10) == 0) nc = nm_rand(g, 2) ? nb - 1 : 0;
      bool canon = nm_rand(g, 2);
      for (int j = 0; j < nb; j++)
        bh[i][j] = nm_hb(canon ? NM_CANON[j] : (int)nm_rand(g, NM_NH));
      for (int j = 0; j < nc; j++)
        bc[i][j] = nm_rand(g, 12) == 0 ? -3 : (int32_t)nm_rand(g, 65);
      ps[i].block_hashes = bh[i];
      ps[i].n_block_hashes = (size_t)nb;
      ps[i].block_token_counts = bc[i];
      ps[i].n_block_token_counts = (size_t)nc;
    }
  }
  ic_index_stats_t st;
  bool has_st = nm_rand(g, 3) == 0;
  if (has_st) {
    static const float hits[] = {0, 0.05f, 0.1f, 0.5f, 0.9f, NAN};
    static const float pr[] = {0, 0.3f, 0.9f, 1.5f, -0.2f, INFINITY};
    st = (ic_index_stats_t){(int64_t)nm_rand(g, 1000), hits[nm_rand(g, 6)], pr[nm_rand(g, 6)],
                            nm_rand(g, 9), nm_rand(g, 9), false, 0, 0, 0};
  }
  ic_index_update_t u = {NM_REP[r], NM_MOD[mo], NM_TEN[t],  NM_SCH[s],          NM_ADA[a],
                         us,        ps,         (size_t)np, has_st ? &st : NULL};
  if (ic_index_ingest(m->ix, &u)) NM_FAIL(m, "ingest failed");
  /* model */
  int64_t ts = us ? us * 1000 : m->now;
  if (s != 2) {
    for (int i = 0; i < np; i++) {
      int32_t tier = nm_tier_store(ps[i].tier);
      int ad = pa[i] == 1 ? 1 : a; /* NULL or "" entry adapter inherits the update's */
      if (ps[i].n_block_hashes || ps[i].n_block_token_counts) {
        if (ps[i].n_block_hashes != ps[i].n_block_token_counts) continue;
        int32_t cum = 0;
        for (size_t j = 0; j < ps[i].n_block_hashes; j++) {
          cum = (int32_t)((uint32_t)cum + (uint32_t)ps[i].block_token_counts[j]);
          int h = 0;
          while (strcmp(NM_HASH[h], (const char *)ps[i].block_hashes[j].data) != 0)
            h++;
          nm_upsert(m, t, mo, s, ad, h, r, cum, tier, ts);
        }
        if (ps[i].prefix_hash.len) {
          int h = 0;
          while (strcmp(NM_HASH[h], (const char *)ps[i].prefix_hash.data) != 0)
            h++;
          nm_upsert(m, t, mo, s, ad, h, r, ps[i].token_count, tier, ts);
        }
        continue;
      }
      int h = NM_NH - 1; /* unset prefix hash = empty bytes */
      if (ps[i].prefix_hash.data)
        while (strcmp(NM_HASH[h], (const char *)ps[i].prefix_hash.data) != 0)
          h = (h + 1) % NM_NH;
      nm_upsert(m, t, mo, s, ad, h, r, ps[i].token_count, tier, ts);
    }
  }
  if (has_st) {
    nstat_t *row = nm_stat(m, t, mo, r);
    if (!row) row = &m->st[m->nst++];
    *row = (nstat_t){t, mo, r, st, ts, ts};
    if (!isfinite(row->s.hit_rate)) row->s.hit_rate = 0;
    if (!isfinite(row->s.pressure)) row->s.pressure = 0;
  }
  if (m->quota_on[t]) nm_quota_enforce(m, t, m->quota[t]);
  nm_cap_enforce(m);
  return nm_check_counts(m);
}

static bool nm_op_event(nm_t *m, nm_rng_t *g) {
  int type = (int)nm_rand(g, 6), r = nm_rand(g, NM_NR), t = nm_rand(g, NM_NT),
      mo = nm_rand(g, NM_NM);
  int h = nm_rand(g, NM_NH), a = nm_rand(g, 3) == 0 ? 1 : 0;
  int64_t us = nm_rand(g, 3) == 0 ? m->now / 1000 - (int64_t)nm_rand(g, 600) * 1000000LL : 0;
  ic_index_event_t ev = {type, NM_REP[r], NM_MOD[mo], NM_TEN[t], NM_ADA[a], nm_hb(h), us};
  if (ic_index_apply_event(m->ix, &ev)) NM_FAIL(m, "event failed");
  int64_t ts = us ? us * 1000 : m->now;
  if (type == IC_INDEX_EVENT_PREFIX_EVICTED) {
    for (size_t i = 0; i < m->n;) {
      nent_t *e = &m->e[i];
      if (e->t == t && e->m == mo && e->h == h && e->r == r && (a == 0 || e->a == a))
        nm_del(m, i);
      else
        i++;
    }
  } else if (type == IC_INDEX_EVENT_ALL_CLEARED) {
    for (size_t i = 0; i < m->n;) {
      nent_t *e = &m->e[i];
      if (e->t == t && e->m == mo && e->r == r)
        nm_del(m, i);
      else
        i++;
    }
    nstat_t *s = nm_stat(m, t, mo, r);
    if (s) nm_stat_del(m, s);
  } else if (type == IC_INDEX_EVENT_REPLICA_UPDATED) {
    nstat_t *s = nm_stat(m, t, mo, r);
    if (s) s->last_seen = ts;
  }
  return nm_check_counts(m);
}

static bool nm_op_sweep(nm_t *m) {
  ic_index_evict_expired(m->ix);
  ic_index_reclaim(m->ix, NULL); /* records and names nothing refers to are freed, ids reused */
  for (size_t i = 0; i < m->n;) {
    int64_t age;
    if (__builtin_sub_overflow(m->now, m->e[i].ts, &age))
      age = m->e[i].ts < 0 ? INT64_MAX : INT64_MIN;
    if (age >= nm_ttl(m, m->e[i].t))
      nm_del(m, i);
    else
      i++;
  }
  for (size_t i = 0; i < m->nst;) {
    int64_t age;
    if (__builtin_sub_overflow(m->now, m->st[i].last_seen, &age))
      age = m->st[i].last_seen < 0 ? INT64_MAX : INT64_MIN;
    if (age >= nm_ttl(m, m->st[i].t))
      nm_stat_del(m, &m->st[i]);
    else
      i++;
  }
  return nm_check_counts(m);
}

static bool nm_op_lookup(nm_t *m, nm_rng_t *g) {
  nq_t q = {0};
  q.t = nm_rand(g, 8) == 0 ? -1 : (int)nm_rand(g, NM_NT);
  q.m = nm_rand(g, NM_NM);
  q.s = nm_rand(g, 10) == 0 ? 2 : (int)nm_rand(g, 2);
  q.a = nm_rand(g, 3) == 0 ? 1 : 0;
  q.h = nm_rand(g, 10) == 0 ? -1 : (int)nm_rand(g, NM_NH);
  if (m->n && nm_rand(g, 2)) { /* aim at existing data half of the time */
    const nent_t *e = &m->e[nm_rand(g, (uint32_t)m->n)];
    q.t = e->t;
    q.m = e->m;
    q.s = e->s;
    q.a = e->a;
    q.h = e->h;
  }
  q.ttft = nm_rand(g, 3) == 0 ? 50 : 0;
  ic_index_bytes_t bh[8];
  int32_t bc[8];
  if (nm_rand(g, 2)) {
    q.nb = 1 + (int)nm_rand(g, 6);
    q.nc = nm_rand(g, 12) == 0 ? q.nb - 1 : q.nb;
    bool canon = nm_rand(g, 3) != 0;
    for (int i = 0; i < q.nb; i++) {
      q.blocks[i] = canon ? NM_CANON[i] : (int)nm_rand(g, NM_NH);
      bh[i] = nm_hb(q.blocks[i]);
    }
    for (int i = 0; i < q.nc; i++)
      q.counts[i] = bc[i] = nm_rand(g, 12) == 0 ? -2 : (int32_t)nm_rand(g, 40);
  }
  ic_index_lookup_t lq = {.tenant = q.t < 0 ? "" : NM_TEN[q.t],
                          .model = NM_MOD[q.m],
                          .scheme = NM_SCH[q.s],
                          .adapter = NM_ADA[q.a],
                          .prefix_hash = q.h < 0 ? (ic_index_bytes_t){0, NULL} : nm_hb(q.h),
                          .block_hashes = bh,
                          .n_block_hashes = (size_t)q.nb,
                          .block_token_counts = bc,
                          .n_block_token_counts = (size_t)q.nc,
                          .ttft_budget_ms = q.ttft};
  ic_index_result_t *res = NULL;
  if (ic_index_lookup_route(m->ix, &lq, &res) || !res) NM_FAIL(m, "lookup_route failed");
  /* model */
  nrow_t rows[NM_NR];
  size_t caps[64], ncaps = 0, n = 0;
  ic_index_strategy_t want = IC_INDEX_STRATEGY_NONE;
  m->lookups++;
  if (q.t >= 0 && q.s != 2 && !((q.nb || q.nc) && q.nb != q.nc)) {
    n = nm_prefix(m, &q, rows, caps, &ncaps);
    if (n)
      want = IC_INDEX_STRATEGY_PREFIX_MATCH;
    else {
      ncaps = 0;
      if (!(q.nb || q.nc)) {
        n = nm_hot(m, &q, rows);
        if (n) want = IC_INDEX_STRATEGY_TENANT_HOT;
      }
      if (!n) want = nm_classify(m, &q);
    }
  }
  bool ok = true;
  if (ic_index_result_strategy(res) != want) {
    snprintf(m->msg, sizeof m->msg, "strategy %d != model %d (op %ld)",
             ic_index_result_strategy(res), want, m->ops);
    ok = false;
  } else if (ic_index_result_count(res) != n) {
    snprintf(m->msg, sizeof m->msg, "rows %zu != model %zu (op %ld)", ic_index_result_count(res), n,
             m->ops);
    ok = false;
  }
  for (size_t i = 0; ok && i < n; i++) {
    const ic_index_row_t *x = &ic_index_result_rows(res)[i];
    if (strcmp(x->replica_id, NM_REP[rows[i].r]) || memcmp(&x->score, &rows[i].score, 4) ||
        x->matched_tokens != rows[i].matched ||
        memcmp(&x->estimated_cache_hit_prob, &rows[i].prob, 4) || x->tier != rows[i].tier) {
      snprintf(m->msg, sizeof m->msg,
               "row %zu: got {%s %.9g m%d p%.9g t%d} model {%s %.9g m%d p%.9g t%d} (op %ld)", i,
               x->replica_id, x->score, x->matched_tokens, x->estimated_cache_hit_prob, x->tier,
               NM_REP[rows[i].r], rows[i].score, rows[i].matched, rows[i].prob, rows[i].tier,
               m->ops);
      ok = false;
    }
  }
  if (ok && want == IC_INDEX_STRATEGY_PREFIX_MATCH) m->hits++;
  if (ok && want == IC_INDEX_STRATEGY_PREFIX_MATCH && nm_rand(g, 2)) {
    ic_index_result_credit_hits(res);
    for (size_t i = 0; i < ncaps; i++)
      m->e[caps[i]].cnt++;
  }
  ic_index_result_free(res);
  return ok;
}

/* One random operation; false (with m->msg) on the first disagreement. */
static bool nm_step(nm_t *m, nm_rng_t *g) {
  m->ops++;
  uint32_t k = nm_rand(g, 20);
  if (k < 8) return nm_op_ingest(m, g);
  if (k < 12) return nm_op_lookup(m, g);
  if (k < 14) return nm_op_event(m, g);
  if (k < 15) return nm_op_sweep(m);
  if (k < 18) {
    static const int64_t adv[] = {0, 1000000000LL, 60000000000LL, 5 * NM_MIN, 11 * NM_MIN};
    m->now += adv[nm_rand(g, 5)];
    return true;
  }
  if (k < 19) {
    int t = nm_rand(g, NM_NT);
    m->algo[t] = !m->algo[t];
    return true;
  }
  int t = nm_rand(g, NM_NT);
  m->quota_on[t] = nm_rand(g, 2);
  m->quota[t] = nm_quota_pick(g);
  return true;
}

#endif
