/* lib/index load-aware ranking (docs/ranking.md): re-ranks a PREFIX_MATCH answer by prefill saved
 * against work queued, from the replicas' live load samples; stale or missing samples leave it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "internal.h"

void ic_index_load_cfg_init(ic_index_load_cfg_t *cfg) {
  cfg->max_age_ns = 2000000000LL;
  cfg->weight = 1.0f;
  cfg->running_weight = 0.02f;
  cfg->request_tokens = 0;
  cfg->overload_factor = 2.0f;
  cfg->overload_slack = 4.0f;
}

static int cand_cmp(const void *x, const void *y) {
  const ic_index_load_cand_t *a = x, *b = y;
  if (a->row.score != b->row.score) return a->row.score > b->row.score ? -1 : 1;
  return strcmp(a->row.replica_id, b->row.replica_id);
}

static bool overloaded(float queue, float fleet_mean, const ic_index_load_cfg_t *cfg) {
  return queue > cfg->overload_factor * fleet_mean + cfg->overload_slack;
}

size_t ic_index_load_rank(ic_index_load_cand_t *c, size_t n, float fleet_min, float fleet_mean,
                          float request_tokens, const ic_index_load_cfg_t *cfg) {
  for (size_t i = 0; i < n; i++)
    if (!(c[i].queue >= 0)) return n; /* one unknown queue: today's ranking, untouched */
  for (size_t i = 0; i < n; i++) {
    float extra = c[i].queue - fleet_min;
    if (extra < 0) extra = 0; /* the fleet minimum came from a slightly older read */
    float saved = (float)c[i].row.matched_tokens * c[i].row.estimated_cache_hit_prob;
    float s = saved - cfg->weight * extra * request_tokens;
    /* dropped rows sort last: NaN-free because every input above is finite */
    c[i].row.score = s > 0 && !overloaded(c[i].queue, fleet_mean, cfg) ? s : -INFINITY;
  }
  ix_sort(c, n, sizeof *c, cand_cmp);
  size_t kept = 0;
  while (kept < n && c[kept].row.score > -INFINITY)
    kept++;
  return kept;
}

/* Fleet statistics of (tenant, model) from fresh samples; *found = samples used. */
typedef struct {
  size_t found;
  float min, mean, hit_mean;
} fleet_t;

static float queue_of(const ic_index_stats_t *s, const ic_index_load_cfg_t *cfg) {
  return (float)s->num_waiting + cfg->running_weight * (float)s->num_running;
}

static bool fresh(const statrow_t *s, int64_t now, const ic_index_load_cfg_t *cfg) {
  return s->s.load_reported && age_ns(now, s->stats_reported) <= cfg->max_age_ns;
}

/* Requests predict-on-route sent to a replica after its sample (speculative.c), which the
 * sample cannot show: counted on top of its queue. Only where a tenant predicts (pend != NULL);
 * otherwise nothing is added and the ranking is exactly section 2's. */
typedef struct {
  ic_index_t *ix;
  const char *tenant, *model;
} pend_t;

static float pending(const pend_t *p, const statrow_t *s) {
  if (!p) return 0;
  return (float)ix_spec_routed_since(p->ix, p->tenant, p->model, ix_str(p->ix, s->replica),
                                     s->stats_reported);
}

/* Caller holds tm->stats_lock (read). */
static fleet_t fleet_of(const tmrec_t *tm, int64_t now, const ic_index_load_cfg_t *cfg,
                        const pend_t *pd) {
  fleet_t f = {0, INFINITY, 0, 0};
  double sum = 0, hits = 0;
  for (uint32_t i = 0; i < tm->nstats; i++) {
    const statrow_t *s = &tm->stats[i];
    if (!fresh(s, now, cfg)) continue;
    float q = queue_of(&s->s, cfg) + pending(pd, s);
    if (q < f.min) f.min = q;
    sum += q;
    hits += s->s.hit_rate;
    f.found++;
  }
  if (f.found)
    f.mean = (float)(sum / (double)f.found), f.hit_mean = (float)(hits / (double)f.found);
  return f;
}

/* Fresh queue of one replica (string id, resolved before the stats lock: ix_find_str takes the
 * directory lock), or -1. Caller holds tm->stats_lock (read). */
static float queue_for(const tmrec_t *tm, uint32_t id, int64_t now,
                       const ic_index_load_cfg_t *cfg) {
  uint64_t v;
  if (id == UINT32_MAX || !u64map_get((u64map_t *)&tm->stat_map, id, &v) || v >= tm->nstats)
    return -1;
  const statrow_t *s = &tm->stats[v];
  return fresh(s, now, cfg) ? queue_of(&s->s, cfg) : -1;
}

/* The same plus the routes sent since the sample, less `sharing` of them: siblings of this
 * prompt routed there along its predicted prefix reuse what the first computes, so they are not
 * work queued ahead of it (the burst case). */
static float queue_pending(const tmrec_t *tm, uint32_t id, int64_t now,
                           const ic_index_load_cfg_t *cfg, const pend_t *pd, uint32_t sharing) {
  float q = queue_for(tm, id, now, cfg);
  if (q < 0 || !pd) return q;
  uint64_t v;
  u64map_get((u64map_t *)&tm->stat_map, id, &v);
  float extra = pending(pd, &tm->stats[v]) - (float)sharing;
  return extra > 0 ? q + extra : q;
}

static int rank_by_load(ic_index_t *ix, ic_index_result_t *r, const char *tenant,
                        const char *model, int64_t prompt_tokens, const ic_index_load_cfg_t *cfg,
                        bool *changed) {
  *changed = false;
  size_t n;
  ic_index_row_t *rows = ix_result_rows_mut(r, &n);
  if (!ix || !r || n == 0 || ic_index_result_strategy(r) != IC_INDEX_STRATEGY_PREFIX_MATCH)
    return 0;
  tmrec_t *tm = ix_find_tm(ix, ix_find_str(ix, tenant), ix_find_str(ix, model));
  if (!tm) return 0;
  ic_index_load_cand_t stack[16], *c = n <= 16 ? stack : malloc(n * sizeof *c);
  if (!c) return IC_ENOMEM;
  for (size_t i = 0; i < n; i++)
    c[i].row = rows[i];
  uint32_t ids_stack[16], *ids = n <= 16 ? ids_stack : malloc(n * sizeof *ids);
  if (!ids) {
    if (c != stack) free(c);
    return IC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    ids[i] = ix_find_str(ix, rows[i].replica_id);
  int64_t now = ix_now(ix);
  pend_t pd = {ix, tenant, model};
  const pend_t *pp = ix_spec_active(ix) ? &pd : NULL;
  pthread_rwlock_rdlock(&tm->stats_lock);
  fleet_t f = fleet_of(tm, now, cfg, pp);
  for (size_t i = 0; i < n; i++)
    c[i].queue = f.found ? queue_pending(tm, ids[i], now, cfg, pp,
                                         ix_result_routes_of(r, rows[i].replica_id))
                         : -1;
  pthread_rwlock_unlock(&tm->stats_lock);
  if (ids != ids_stack) free(ids);
  int rc = 0;
  /* Every fresh replica of the fleet holds the prefix: there is no cold alternative to trade
     against, and ranking equal savings by 100 ms-old queues herds onto one replica (measured,
     docs/performance.md). Today's answer stands. */
  bool all_known = f.found > n;
  for (size_t i = 0; all_known && i < n; i++)
    all_known = c[i].queue >= 0;
  if (all_known) {
    float miss = 1.0f - f.hit_mean;
    if (miss < 0.125f) miss = 0.125f;
    float per_req =
        cfg->request_tokens > 0 ? (float)cfg->request_tokens : (float)prompt_tokens * miss;
    size_t kept = ic_index_load_rank(c, n, f.min, f.mean, per_req, cfg);
    const char *keep_stack[16], **keep = kept <= 16 ? keep_stack : malloc(kept * sizeof *keep);
    if (!keep) {
      rc = IC_ENOMEM;
    } else {
      for (size_t i = 0; i < kept; i++)
        keep[i] = c[i].row.replica_id;
      rc = ic_index_result_retain_replicas(r, keep, kept);
      rows = ix_result_rows_mut(r, &n);
      for (size_t i = 0; !rc && i < n && i < kept; i++)
        rows[i] = c[i].row; /* retain kept exactly these replicas; now in load order */
      if (keep != keep_stack) free(keep);
      *changed = !rc;
    }
  }
  if (c != stack) free(c);
  return rc;
}

/* The public entry points run pinned: the (tenant, model) record they resolve stays allocated
 * until they return (records.c). */
int ic_index_result_rank_by_load(ic_index_t *ix, ic_index_result_t *r, const char *tenant,
                                 const char *model, int64_t prompt_tokens,
                                 const ic_index_load_cfg_t *cfg, bool *changed) {
  *changed = false;
  if (!ix) return 0;
  pin_t pn = ix_pin(ix);
  int rc = rank_by_load(ix, r, tenant, model, prompt_tokens, cfg, changed);
  ix_unpin(ix, pn);
  return rc;
}

static bool replica_overloaded(ic_index_t *ix, const char *tenant, const char *model,
                               const char *replica, const ic_index_load_cfg_t *cfg) {
  if (!ix || !replica) return false;
  tmrec_t *tm = ix_find_tm(ix, ix_find_str(ix, tenant), ix_find_str(ix, model));
  if (!tm) return false;
  uint32_t id = ix_find_str(ix, replica);
  int64_t now = ix_now(ix);
  pthread_rwlock_rdlock(&tm->stats_lock);
  fleet_t f = fleet_of(tm, now, cfg, NULL);
  float q = f.found ? queue_for(tm, id, now, cfg) : -1;
  pthread_rwlock_unlock(&tm->stats_lock);
  return q >= 0 && overloaded(q, f.mean, cfg);
}

bool ic_index_replica_overloaded(ic_index_t *ix, const char *tenant, const char *model,
                                 const char *replica, const ic_index_load_cfg_t *cfg) {
  if (!ix) return false;
  pin_t pn = ix_pin(ix);
  bool o = replica_overloaded(ix, tenant, model, replica, cfg);
  ix_unpin(ix, pn);
  return o;
}

static bool least_loaded_replica(ic_index_t *ix, const char *tenant, const char *model,
                                 const char *prefer, uint64_t tiebreak,
                                 const ic_index_load_cfg_t *cfg, const char **replica) {
  if (!ix || !cfg || !replica) return false;
  tmrec_t *tm = ix_find_tm(ix, ix_find_str(ix, tenant), ix_find_str(ix, model));
  if (!tm) return false;
  int64_t now = ix_now(ix);
  typedef struct {
    uint32_t id;
    float queue;
    int64_t at;
  } cand_t2;
  cand_t2 stack[64], *c = stack;
  size_t n = 0, cap = 64;
  pthread_rwlock_rdlock(&tm->stats_lock);
  if (tm->nstats > cap) {
    c = malloc(tm->nstats * sizeof *c);
    cap = tm->nstats;
  }
  for (uint32_t i = 0; c && i < tm->nstats; i++) {
    const statrow_t *s = &tm->stats[i];
    /* a cold prompt saves nothing anywhere: plain least-loaded, every request counted in
       full (running ones share each step with a new prefill; running_weight is a knob of the
       saving-versus-queue trade of the ranking, not of this pick) */
    if (fresh(s, now, cfg))
      c[n++] = (cand_t2){s->replica, (float)s->s.num_waiting + (float)s->s.num_running,
                         s->stats_reported};
  }
  pthread_rwlock_unlock(&tm->stats_lock);
  if (!c) return false;
  /* the queue shows requests up to its sample; routes the predictions recorded since are on
     their way (speculative.c keeps their times per replica) */
  const char *best = NULL;
  float best_work = INFINITY;
  int64_t best_recent = INT64_MAX;
  uint64_t best_tb = 0;
  float prefer_work = INFINITY;
  int64_t prefer_recent = INT64_MAX;
  for (size_t i = 0; i < n; i++) {
    const char *name = ix_str(ix, c[i].id);
    float work = c[i].queue + (float)ix_spec_routed_since(ix, tenant, model, name, c[i].at);
    /* among equal work, the replica sent the fewest prompts lately (within the prediction TTL):
       idle replicas take turns instead of the hash picking the same one twice in a row */
    int64_t recent = ix_spec_routed_since(ix, tenant, model, name, INT64_MIN);
    uint64_t tb = ic_mix64(ic_hash_bytes(name, strlen(name)) ^ tiebreak);
    if (prefer && !strcmp(prefer, name)) prefer_work = work, prefer_recent = recent;
    if (work < best_work || (work == best_work && (recent < best_recent ||
                                                   (recent == best_recent && tb < best_tb))))
      best = name, best_work = work, best_recent = recent, best_tb = tb;
  }
  if (c != stack) free(c);
  if (!best) return false;
  *replica = prefer_work < best_work || (prefer_work == best_work && prefer_recent <= best_recent)
                 ? prefer
                 : best;
  return true;
}

bool ic_index_least_loaded_replica(ic_index_t *ix, const char *tenant, const char *model,
                                   const char *prefer, uint64_t tiebreak,
                                   const ic_index_load_cfg_t *cfg, const char **replica) {
  if (!ix) return false;
  pin_t pn = ix_pin(ix);
  bool ok = least_loaded_replica(ix, tenant, model, prefer, tiebreak, cfg, replica);
  ix_unpin(ix, pn);
  return ok;
}
