/* Record lifecycle of lib/index: the directory of tenant, (tenant, model) and scope records
 * (lookup, creation) and their reclamation, with the interned names, once nothing refers to them.
 *
 * Why retire-then-free after a grace period (and not reference counts). Records are reached
 * from the lookup path (a directory read, then the scope, its (tenant, model) stats and tenant
 * counters, without any lock on the record itself), /snapshot and the TTL sweep (pointer copies
 * walked outside the directory lock), the cap's victim queue and the quota's cached order
 * (pointers kept between calls), and ingest (resolved under a read lock, written under the
 * scope's own lock). Counting references on every one of those paths would put an atomic
 * increment and decrement of a shared cache line on each lookup, and every long-lived copy would
 * need its own release. Instead, everything that uses a record runs inside a reader pin (the
 * same two-counter SRCU the interned names use: two uncontended atomics on a per-thread stripe,
 * nestable, ic_index_guard for callers), and the only freer is ic_index_reclaim:
 *
 *   1. A record is a candidate once nothing in it refers to data: a scope with no key, no ingest
 *      between its write holds (busy) and no lookup result holding captured keys for a later
 *      LFU credit (results); a (tenant, model) record with no scope, no stats row and its gauge
 *      contribution reported; a tenant with no (tenant, model) record. Writers note the moment
 *      one may have become a candidate (ix_note_idle: a scope's last key gone, a stats row
 *      dropped, a record created), so an idle index costs the reclaim one atomic load.
 *   2. Under the directory write lock (in chunks, so lookups wait at most one chunk) each
 *      candidate is re-checked under its own lock, taken with trylock (a busy record waits for
 *      the next pass: never a lock-order inversion, never a wait behind a long write hold), then
 *      marked retired and unlinked. New lookups no longer find it; a writer that resolved it
 *      before sees `retired` under the record's lock and resolves again (creating a fresh one).
 *   3. The cap's victim queue forgets candidates of retired scopes; the quota's cached order of
 *      their tenant is invalidated (qgen), so neither keeps a pointer into them.
 *   4. After every pin taken before the unlink has ended (ix_pins_wait; up to 50 ms, else the
 *      next pass retries), the records are freed and drop their name references; the names go
 *      through the same retire / wait / free cycle.
 *
 * Lookups pay one pin (measured: docs/index.md, "Records and their lifetime"). */
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "internal.h"

static inline const char *nz(const char *s) { return s ? s : ""; }

/* ---------------------------------------------------------------- lookup */

uint32_t ix_find_str(ic_index_t *ix, const char *s) {
  s = nz(s);
  pthread_rwlock_rdlock(&ix->dir);
  uint32_t id = strtab_find(&ix->strs, s, strlen(s));
  pthread_rwlock_unlock(&ix->dir);
  return id;
}

static uint64_t scope_hkey(uint32_t t, uint32_t m, uint32_t s) {
  return ic_mix64(((uint64_t)t << 32 | m) ^ ic_mix64(s + 0x51ed27ULL));
}

/* scope_map maps a hash of the triple to a chain of scopes (hnext) whose triples hash alike;
 * retired scopes are unlinked in the same dir write hold that retires them. */
static scope_t *scope_lookup_locked(ic_index_t *ix, uint32_t t, uint32_t m, uint32_t s) {
  uint64_t v;
  if (!u64map_get(&ix->scope_map, scope_hkey(t, m, s), &v)) return NULL;
  for (scope_t *sc = (scope_t *)(uintptr_t)v; sc; sc = sc->hnext)
    if (sc->tenant == t && sc->model == m && sc->scheme == s) return sc;
  return NULL;
}

scope_t *ix_find_scope(ic_index_t *ix, uint32_t t, uint32_t m, uint32_t s) {
  if (t == UINT32_MAX || m == UINT32_MAX || s == UINT32_MAX) return NULL;
  pthread_rwlock_rdlock(&ix->dir);
  scope_t *sc = scope_lookup_locked(ix, t, m, s);
  pthread_rwlock_unlock(&ix->dir);
  return sc;
}

void ix_resolve(ic_index_t *ix, const char *const names[4], uint32_t ids[4], scope_t **sc,
                tmrec_t **tm, tenantrec_t **tr) {
  uint64_t v;
  pthread_rwlock_rdlock(&ix->dir);
  for (int i = 0; i < 4; i++)
    ids[i] = strtab_find(&ix->strs, names[i], strlen(names[i]));
  *sc = NULL;
  *tm = NULL;
  *tr = NULL;
  if (ids[0] != UINT32_MAX && u64map_get(&ix->tenant_map, ids[0], &v))
    *tr = (tenantrec_t *)(uintptr_t)v;
  if (ids[0] != UINT32_MAX && ids[1] != UINT32_MAX) {
    if (u64map_get(&ix->tm_map, (uint64_t)ids[0] << 32 | ids[1], &v)) *tm = (tmrec_t *)(uintptr_t)v;
    if (ids[2] != UINT32_MAX) *sc = scope_lookup_locked(ix, ids[0], ids[1], ids[2]);
  }
  pthread_rwlock_unlock(&ix->dir);
}

tmrec_t *ix_find_tm(ic_index_t *ix, uint32_t t, uint32_t m) {
  if (t == UINT32_MAX || m == UINT32_MAX) return NULL;
  uint64_t v;
  pthread_rwlock_rdlock(&ix->dir);
  bool f = u64map_get(&ix->tm_map, (uint64_t)t << 32 | m, &v);
  pthread_rwlock_unlock(&ix->dir);
  return f ? (tmrec_t *)(uintptr_t)v : NULL;
}

tenantrec_t *ix_find_tenant(ic_index_t *ix, uint32_t t) {
  if (t == UINT32_MAX) return NULL;
  uint64_t v;
  pthread_rwlock_rdlock(&ix->dir);
  bool f = u64map_get(&ix->tenant_map, t, &v);
  pthread_rwlock_unlock(&ix->dir);
  return f ? (tenantrec_t *)(uintptr_t)v : NULL;
}

/* ---------------------------------------------------------------- creation (dir write lock) */

static tenantrec_t *tenant_get_locked(ic_index_t *ix, uint32_t t) {
  uint64_t v;
  if (u64map_get(&ix->tenant_map, t, &v)) return (tenantrec_t *)(uintptr_t)v;
  if (!grow_arr((void **)&ix->tenants, &ix->captenants, ix->ntenants + 1, sizeof(void *)))
    return NULL;
  tenantrec_t *tr = calloc(1, sizeof *tr);
  if (!tr) return NULL;
  tr->tenant = t;
  const char *name = ix_str(ix, t);
  for (size_t i = 0; i < ix->nreserved; i++)
    if (strcmp(ix->reserved[i], name) == 0) tr->reserved = true;
  atomic_store(&tr->algo, IC_INDEX_EVICT_LRU);
  atomic_store(&tr->qthr, INT64_MIN);
  if (u64map_put(&ix->tenant_map, t, (uint64_t)(uintptr_t)tr)) {
    free(tr);
    return NULL;
  }
  strtab_ref(&ix->strs, t); /* dropped when the record is freed */
  tr->pos = ix->ntenants;
  ix->tenants[ix->ntenants++] = tr;
  ix_note_idle(ix); /* freed again if nothing ever lands in it */
  return tr;
}

tmrec_t *tm_get_locked(ic_index_t *ix, uint32_t t, uint32_t m) {
  uint64_t v;
  if (u64map_get(&ix->tm_map, (uint64_t)t << 32 | m, &v)) return (tmrec_t *)(uintptr_t)v;
  tenantrec_t *tr = tenant_get_locked(ix, t);
  if (!tr) return NULL;
  if (!grow_arr((void **)&ix->tms, &ix->captms, ix->ntms + 1, sizeof(void *))) return NULL;
  tmrec_t *tm = calloc(1, sizeof *tm);
  if (!tm) return NULL;
  tm->tenant = t;
  tm->model = m;
  tm->reserved = tr->reserved;
  pthread_rwlock_init(&tm->stats_lock, NULL);
  if (u64map_put(&ix->tm_map, (uint64_t)t << 32 | m, (uint64_t)(uintptr_t)tm)) {
    pthread_rwlock_destroy(&tm->stats_lock);
    free(tm);
    return NULL;
  }
  tm->pos = ix->ntms;
  ix->tms[ix->ntms++] = tm;
  tr->ntms++;
  strtab_ref(&ix->strs, m);
  ix_note_idle(ix);
  return tm;
}

scope_t *scope_get_locked(ic_index_t *ix, uint32_t t, uint32_t m, uint32_t s) {
  scope_t *sc = scope_lookup_locked(ix, t, m, s);
  if (sc) return sc;
  tmrec_t *tm = tm_get_locked(ix, t, m);
  if (!tm) return NULL;
  if (!grow_arr((void **)&ix->scopes, &ix->capscopes, ix->nscopes + 1, sizeof(void *))) return NULL;
  if (!grow_arr((void **)&tm->scopes, &tm->capscopes, tm->nscopes + 1, sizeof(void *))) return NULL;
  sc = calloc(1, sizeof *sc);
  if (!sc) return NULL;
  pthread_mutex_init(&sc->wlock, NULL);
  pthread_mutex_init(&sc->lfu_lock, NULL);
  sc->ix = ix;
  sc->seq = ++ix->scope_seq;
  sc->id = (uint32_t)sc->seq;
  sc->tenant = t;
  sc->model = m;
  sc->scheme = s;
  sc->tm = tm;
  uint64_t v;
  u64map_get(&ix->tenant_map, t, &v);
  sc->tr = (tenantrec_t *)(uintptr_t)v;
  sc->reserved = sc->tr->reserved;
  uint64_t h = scope_hkey(t, m, s);
  if (u64map_get(&ix->scope_map, h, &v)) sc->hnext = (scope_t *)(uintptr_t)v;
  if (u64map_put(&ix->scope_map, h, (uint64_t)(uintptr_t)sc)) {
    scope_free(sc);
    return NULL;
  }
  sc->pos = ix->nscopes;
  ix->scopes[ix->nscopes++] = sc;
  tm->scopes[tm->nscopes++] = sc;
  strtab_ref(&ix->strs, s);
  ix_note_idle(ix);
  return sc;
}

/* ---------------------------------------------------------------- writers and retired records */

scope_t *scope_wr_ingest(ic_index_t *ix, scope_t *sc, uint32_t t, uint32_t m, uint32_t s) {
  for (;;) {
    scope_wr(sc);
    if (!atomic_load_explicit(&sc->retired, memory_order_relaxed)) {
      sc->busy++;
      return sc;
    }
    /* retired (empty) since the caller resolved it: the directory has a fresh one or makes it */
    scope_wrun(sc);
    pthread_rwlock_wrlock(&ix->dir);
    sc = scope_get_locked(ix, t, m, s);
    pthread_rwlock_unlock(&ix->dir);
    if (!sc) return NULL;
  }
}

void scope_wrun_ingest(scope_t *sc) {
  sc->busy--;
  if (!atomic_load_explicit(&sc->distinct, memory_order_relaxed)) ix_note_idle(sc->ix);
  scope_wrun(sc);
}

tmrec_t *tm_stats_wrlock(ic_index_t *ix, tmrec_t *tm, uint32_t t, uint32_t m) {
  for (;;) {
    pthread_rwlock_wrlock(&tm->stats_lock);
    if (!tm->retired) return tm;
    pthread_rwlock_unlock(&tm->stats_lock);
    pthread_rwlock_wrlock(&ix->dir);
    tm = tm_get_locked(ix, t, m);
    pthread_rwlock_unlock(&ix->dir);
    if (!tm) return NULL;
  }
}

/* ---------------------------------------------------------------- retirement (dir write lock) */

#define RETIRE_CHUNK 256u /* candidates per dir write hold: lookups wait at most one chunk */

static bool push_ptr(void ***arr, uint32_t *n, uint32_t *cap, void *p) {
  if (!grow_arr((void **)arr, cap, *n + 1, sizeof(void *))) return false;
  (*arr)[(*n)++] = p;
  return true;
}

/* Caller holds the dir write lock and sc's wlock. */
static bool scope_idle(const scope_t *sc) {
  if (sc->busy || atomic_load(&sc->results)) return false;
  for (uint32_t i = 0; i < sc->nparts; i++)
    for (uint32_t k = 0; k < SUBS; k++)
      if (sc->parts[i]->subs[k].count) return false;
  return true;
}

static void scope_unlink_locked(ic_index_t *ix, scope_t *sc) {
  uint64_t h = scope_hkey(sc->tenant, sc->model, sc->scheme), v;
  if (u64map_get(&ix->scope_map, h, &v)) {
    scope_t *head = (scope_t *)(uintptr_t)v;
    if (head == sc) {
      if (sc->hnext)
        u64map_put(&ix->scope_map, h, (uint64_t)(uintptr_t)sc->hnext); /* overwrite: no ENOMEM */
      else
        u64map_del(&ix->scope_map, h);
    } else {
      for (scope_t *p = head; p; p = p->hnext)
        if (p->hnext == sc) {
          p->hnext = sc->hnext;
          break;
        }
    }
  }
  scope_t *last = ix->scopes[--ix->nscopes];
  ix->scopes[sc->pos] = last;
  last->pos = sc->pos;
  tmrec_t *tm = sc->tm;
  for (uint32_t i = 0; i < tm->nscopes; i++)
    if (tm->scopes[i] == sc) {
      tm->scopes[i] = tm->scopes[--tm->nscopes];
      break;
    }
}

/* Retires the idle scopes among v[0, n) (a copy of ix->scopes; the caller is the only freer).
 * Returns how many; *again when one was skipped for a transient reason. */
static uint32_t retire_scopes(ic_index_t *ix, scope_t **v, uint32_t n, bool *again) {
  uint32_t done = 0;
  for (uint32_t i = 0; i < n;) {
    pthread_rwlock_wrlock(&ix->dir);
    for (uint32_t end = i + RETIRE_CHUNK; i < n && i < end; i++) {
      scope_t *sc = v[i];
      if (atomic_load_explicit(&sc->distinct, memory_order_relaxed)) continue;
      if (pthread_mutex_trylock(&sc->wlock)) { /* a writer: look again next pass */
        *again = true;
        continue;
      }
      bool idle = scope_idle(sc);
      if (idle && !push_ptr((void ***)&ix->dead_scopes, &ix->ndead_scopes, &ix->capdead_scopes, sc))
        idle = false;
      if (idle) {
        atomic_store_explicit(&sc->retired, true, memory_order_relaxed);
        scope_unlink_locked(ix, sc);
        /* the tenant's cached quota order may point into it: rebuilt before its next use */
        atomic_fetch_add_explicit(&sc->tr->qgen, 1, memory_order_relaxed);
        if (sc->dead_pending) { /* bookkeeping drift the reclaim gave up on: settle it */
          atomic_fetch_sub(&ix->dead_pending, sc->dead_pending);
          sc->dead_pending = 0;
        }
        done++;
      } else if (!atomic_load_explicit(&sc->distinct, memory_order_relaxed)) {
        *again = true; /* an ingest in progress or a result still to be credited */
      }
      pthread_mutex_unlock(&sc->wlock);
    }
    pthread_rwlock_unlock(&ix->dir);
  }
  return done;
}

/* Retires (tenant, model) records without scope or stats row whose gauge contribution was
 * reported, then tenants without (tenant, model) record. The caller drained the gauge first. */
static void retire_tms_and_tenants(ic_index_t *ix, bool *again) {
  pthread_mutex_lock(&ix->report_lock); /* tm->reported */
  for (uint32_t i = 0;;) {
    pthread_rwlock_wrlock(&ix->dir);
    for (uint32_t k = 0; i < ix->ntms && k < RETIRE_CHUNK; k++) {
      tmrec_t *tm = ix->tms[i];
      bool idle = false;
      if (!tm->nscopes && !atomic_load(&tm->distinct) && !atomic_load(&tm->dirty) &&
          !tm->reported) {
        if (pthread_rwlock_trywrlock(&tm->stats_lock)) {
          *again = true;
        } else {
          idle = !tm->nstats &&
                 push_ptr((void ***)&ix->dead_tms, &ix->ndead_tms, &ix->capdead_tms, tm);
          if (idle) tm->retired = true;
          pthread_rwlock_unlock(&tm->stats_lock);
        }
      }
      if (!idle) {
        i++;
        continue;
      }
      u64map_del(&ix->tm_map, (uint64_t)tm->tenant << 32 | tm->model);
      tmrec_t *last = ix->tms[--ix->ntms];
      ix->tms[tm->pos] = last;
      last->pos = tm->pos; /* position i now holds another record: look at it next */
      uint64_t v;
      if (u64map_get(&ix->tenant_map, tm->tenant, &v)) ((tenantrec_t *)(uintptr_t)v)->ntms--;
    }
    bool more = i < ix->ntms;
    pthread_rwlock_unlock(&ix->dir);
    if (!more) break;
  }
  pthread_mutex_unlock(&ix->report_lock);
  pthread_rwlock_wrlock(&ix->dir);
  for (uint32_t i = 0; i < ix->ntenants;) {
    tenantrec_t *tr = ix->tenants[i];
    if (tr->ntms || atomic_load(&tr->distinct) ||
        !push_ptr((void ***)&ix->dead_trs, &ix->ndead_trs, &ix->capdead_trs, tr)) {
      i++;
      continue;
    }
    u64map_del(&ix->tenant_map, tr->tenant);
    tenantrec_t *last = ix->tenants[--ix->ntenants];
    ix->tenants[tr->pos] = last;
    last->pos = tr->pos;
  }
  /* after a burst of pairs the directory gives its memory back too */
  u64map_shrink(&ix->tenant_map);
  u64map_shrink(&ix->tm_map);
  u64map_shrink(&ix->scope_map);
  shrink_arr((void **)&ix->tenants, &ix->captenants, ix->ntenants, sizeof(void *));
  shrink_arr((void **)&ix->tms, &ix->captms, ix->ntms, sizeof(void *));
  shrink_arr((void **)&ix->scopes, &ix->capscopes, ix->nscopes, sizeof(void *));
  pthread_rwlock_unlock(&ix->dir);
}

/* ---------------------------------------------------------------- freeing */

/* A retired scope: its name references (scheme, adapters, replicas not yet released), then its
 * tables. No pin taken before its retirement is left, so nothing else can reach it. */
static void scope_drop(ic_index_t *ix, scope_t *sc) {
  strtab_unref(&ix->strs, sc->scheme);
  for (uint32_t i = 0; i < sc->nparts; i++)
    strtab_unref(&ix->strs, sc->parts[i]->adapter);
  for (uint32_t i = 0; i < sc->nreps; i++)
    if (!sc->reps[i].released) strtab_unref(&ix->strs, sc->reps[i].replica);
  scope_free(sc);
}

static void tm_free(tmrec_t *tm) {
  free(tm->scopes);
  free(tm->stats);
  u64map_free(&tm->stat_map);
  pthread_rwlock_destroy(&tm->stats_lock);
  free(tm);
}

static void tm_drop(ic_index_t *ix, tmrec_t *tm) {
  strtab_unref(&ix->strs, tm->model);
  for (uint32_t i = 0; i < tm->nstats; i++) /* none: retired without stats rows */
    strtab_unref(&ix->strs, tm->stats[i].replica);
  tm_free(tm);
}

static void tenant_drop(ic_index_t *ix, tenantrec_t *tr) {
  strtab_unref(&ix->strs, tr->tenant);
  free(tr->qk);
  free(tr);
}

/* Frees what the passes retired once their readers have left; false when pins outlived the
 * wait (the records stay queued for the next call). */
static size_t free_retired_records(ic_index_t *ix) {
  size_t n = ix->ndead_scopes + ix->ndead_tms + ix->ndead_trs;
  if (!n || !ix_pins_wait(ix, 50)) return 0;
  for (uint32_t i = 0; i < ix->ndead_scopes; i++)
    scope_drop(ix, ix->dead_scopes[i]);
  for (uint32_t i = 0; i < ix->ndead_tms; i++)
    tm_drop(ix, ix->dead_tms[i]);
  for (uint32_t i = 0; i < ix->ndead_trs; i++)
    tenant_drop(ix, ix->dead_trs[i]);
  ix->ndead_scopes = ix->ndead_tms = ix->ndead_trs = 0;
  return n;
}

static size_t reclaim_records(ic_index_t *ix) {
  if (atomic_exchange(&ix->idle_hint, false)) {
    bool again = false;
    pthread_rwlock_rdlock(&ix->dir);
    uint32_t n = ix->nscopes;
    scope_t **v = malloc((n ? n : 1) * sizeof *v);
    if (v && n) memcpy(v, ix->scopes, n * sizeof *v);
    pthread_rwlock_unlock(&ix->dir);
    if (!v) {
      again = true;
    } else if (retire_scopes(ix, v, n, &again)) {
      evq_forget_retired(ix);
    }
    free(v);
    ix_report_drain(ix); /* tm->reported of records whose last key went */
    retire_tms_and_tenants(ix, &again);
    if (again) ix_note_idle(ix);
  }
  return free_retired_records(ix);
}

/* ---------------------------------------------------------------- names */

static size_t reclaim_strings(ic_index_t *ix) {
  uint32_t *ids, n;
  pthread_rwlock_wrlock(&ix->dir);
  strtab_unhash_zero(&ix->strs, &ids, &n);
  pthread_rwlock_unlock(&ix->dir);
  if (n && ix->nretired + n > ix->capretired) {
    uint32_t nc = ix->capretired ? ix->capretired : 64;
    while (nc < ix->nretired + n)
      nc *= 2;
    uint32_t *nr = realloc(ix->retired, nc * sizeof *nr);
    if (nr) ix->retired = nr, ix->capretired = nc;
  }
  /* unhashed ids that do not fit are never freed (memory, not safety) */
  for (uint32_t i = 0; i < n && ix->nretired < ix->capretired; i++)
    ix->retired[ix->nretired++] = ids[i];
  free(ids);
  size_t freed = 0;
  if (ix->nretired && ix_pins_wait(ix, 50)) {
    pthread_rwlock_wrlock(&ix->dir);
    strtab_release(&ix->strs, ix->retired, ix->nretired);
    pthread_rwlock_unlock(&ix->dir);
    freed = ix->nretired;
    ix->nretired = 0;
  }
  return freed;
}

size_t ic_index_reclaim(ic_index_t *ix, size_t *records) {
  if (records) *records = 0;
  if (!ix) return 0;
  pthread_mutex_lock(&ix->str_reclaim_lock);
  size_t r = reclaim_records(ix); /* first: freed records drop name references */
  size_t s = reclaim_strings(ix);
  pthread_mutex_unlock(&ix->str_reclaim_lock);
  if (records) *records = r;
  return s;
}

size_t ic_index_record_count(ic_index_t *ix) {
  pthread_rwlock_rdlock(&ix->dir);
  size_t n = (size_t)ix->nscopes + ix->ntms + ix->ntenants;
  pthread_rwlock_unlock(&ix->dir);
  return n;
}

/* ---------------------------------------------------------------- destroy */

void ix_records_destroy(ic_index_t *ix) {
  /* live and retired alike; names go with the string table */
  for (uint32_t i = 0; i < ix->nscopes; i++)
    scope_free(ix->scopes[i]);
  for (uint32_t i = 0; i < ix->ndead_scopes; i++)
    scope_free(ix->dead_scopes[i]);
  for (uint32_t i = 0; i < ix->ntms; i++)
    tm_free(ix->tms[i]);
  for (uint32_t i = 0; i < ix->ndead_tms; i++)
    tm_free(ix->dead_tms[i]);
  for (uint32_t i = 0; i < ix->ntenants; i++) {
    free(ix->tenants[i]->qk);
    free(ix->tenants[i]);
  }
  for (uint32_t i = 0; i < ix->ndead_trs; i++) {
    free(ix->dead_trs[i]->qk);
    free(ix->dead_trs[i]);
  }
  free(ix->scopes);
  free(ix->tms);
  free(ix->tenants);
  free(ix->dead_scopes);
  free(ix->dead_tms);
  free(ix->dead_trs);
  u64map_free(&ix->tenant_map);
  u64map_free(&ix->tm_map);
  u64map_free(&ix->scope_map);
}
