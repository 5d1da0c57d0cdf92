/* Global entry cap without sorting the index per ingest: a victim queue holding
 * every non-reserved entry whose (eff, last_seen) is <= a threshold T, refilled by a scan when
 * it runs dry. Victims pop in the reference's exact order (see docs/index.md). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

static void cand_bytes(const cand_t *c, uint8_t buf[8], const uint8_t **p, uint32_t *len) {
  if (c->bytes) {
    *p = c->bytes;
    *len = c->hlen;
    return;
  }
  for (int i = 0; i < 8; i++)
    buf[i] = (uint8_t)(c->hpre >> (56 - 8 * i));
  *p = buf;
  *len = c->hlen;
}

/* Full reference order: eff, last_seen, tenant, model, scheme, adapter, hash bytes, replica. */
static int cand_cmp(const cand_t *a, const cand_t *b) {
  if (a->eff != b->eff) return a->eff < b->eff ? -1 : 1;
  if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
  ic_index_t *ix = a->sc->ix;
  int c;
  if (a->sc != b->sc) {
    if (a->sc->tenant != b->sc->tenant &&
        (c = strcmp(ix_str(ix, a->sc->tenant), ix_str(ix, b->sc->tenant))))
      return c;
    if (a->sc->model != b->sc->model &&
        (c = strcmp(ix_str(ix, a->sc->model), ix_str(ix, b->sc->model))))
      return c;
    if (a->sc->scheme != b->sc->scheme &&
        (c = strcmp(ix_str(ix, a->sc->scheme), ix_str(ix, b->sc->scheme))))
      return c;
  }
  uint32_t aa = a->adapter, ba = b->adapter;
  if (aa != ba && (c = strcmp(ix_str(ix, aa), ix_str(ix, ba)))) return c;
  if (a->hpre != b->hpre) return a->hpre < b->hpre ? -1 : 1;
  if (a->hlen != b->hlen || a->bytes || b->bytes) {
    uint8_t ba8[8], bb8[8];
    const uint8_t *pa, *pb;
    uint32_t la, lb;
    cand_bytes(a, ba8, &pa, &la);
    cand_bytes(b, bb8, &pb, &lb);
    uint32_t n = la < lb ? la : lb;
    c = n ? memcmp(pa, pb, n) : 0;
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
  }
  uint32_t ra = a->replica, rb = b->replica;
  if (ra != rb) return strcmp(ix_str(ix, ra), ix_str(ix, rb));
  return 0;
}

static int cand_qcmp(const void *x, const void *y) { return cand_cmp(x, y); }

/* A long-key candidate names its key by blob id, and blob ids are reused once a key is gone:
 * a stale candidate must not evict whichever key holds the id now (caller holds sc's lock). */
static bool cand_key_live(const cand_t *c, scope_t *sc) {
  if (!(c->flags & M_LONG)) return true;
  uint32_t len;
  const uint8_t *live = scope_blob(sc, c->key, &len);
  uint8_t buf[8];
  const uint8_t *mine;
  uint32_t mlen;
  cand_bytes(c, buf, &mine, &mlen);
  return live && len == mlen && (len == 0 || memcmp(live, mine, len) == 0);
}

/* Radix record of one queued candidate (see sort_queue). */
typedef struct {
  uint64_t ts;  /* last_seen with the sign bit flipped (unsigned order) */
  uint32_t eff; /* saturated; ties beyond 2^32 fall to the full comparator */
  uint32_t idx;
} rk_t;

/* Position i of the pop order -> index into q. */
static inline size_t qidx(const ic_index_t *ix, size_t i) {
  return ix->qord ? ((const rk_t *)ix->qord)[i].idx : i;
}

/* Fills the order fields of a candidate; caller holds sc's lock. false on ENOMEM. */
static bool cand_make(cand_t *c, scope_t *sc, uint32_t part, uint64_t key, uint32_t flags,
                      uint32_t rep, int64_t ts, uint64_t eff) {
  *c = (cand_t){.ts = ts,
                .eff = eff,
                .key = key,
                .sc = sc,
                .pp = sc->parts[part],
                .part = part,
                .rep = rep,
                .flags = flags & M_LONG,
                .adapter = sc->parts[part]->adapter,
                .replica = sc->reps[rep].replica};
  if (!(flags & M_LONG)) {
    c->hpre = key;
    c->hlen = 8;
    return true;
  }
  uint32_t len;
  const uint8_t *b = scope_blob(sc, key, &len);
  c->hlen = len;
  uint64_t pre = 0;
  for (uint32_t i = 0; i < 8; i++)
    pre = pre << 8 | (i < len ? b[i] : 0);
  c->hpre = pre;
  if (len > 8) {
    if (!(c->bytes = malloc(len))) return false;
    memcpy(c->bytes, b, len);
  }
  return true;
}

/* The queue is filled in scan order and popped in sorted order, i.e. at random positions of an
 * N/8 x 80-byte array (20 MB at a 2 M cap). On 4 KiB pages almost every pop (and the prefetch
 * issued for it) is a TLB miss with a page walk, so a big queue gets a 2 MiB-aligned mapping
 * with transparent huge pages, like the slot arrays. Owner: ix->q; freed by q_free. */
#define Q_HUGE ((size_t)2 << 20)
static size_t q_bytes(size_t cap) {
  size_t b = cap * sizeof(cand_t);
  return b < Q_HUGE ? b : (b + Q_HUGE - 1) & ~(Q_HUGE - 1);
}

static void q_free(cand_t *q, size_t cap) {
  if (!q) return;
  if (cap * sizeof(cand_t) < Q_HUGE)
    free(q);
  else
    munmap(q, q_bytes(cap));
}

/* A 2 MiB-aligned huge-page mapping for cap candidates (cap * sizeof(cand_t) >= Q_HUGE). */
static cand_t *q_map(size_t cap) {
  size_t len = q_bytes(cap);
  uint8_t *raw =
      mmap(NULL, len + Q_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  uint8_t *al = (uint8_t *)(((uintptr_t)raw + Q_HUGE - 1) & ~(uintptr_t)(Q_HUGE - 1));
  if (al > raw) munmap(raw, (size_t)(al - raw));
  size_t tail = (size_t)(raw + len + Q_HUGE - (al + len));
  if (tail) munmap(al + len, tail);
  madvise(al, len, MADV_HUGEPAGE);
  return (cand_t *)al;
}

static bool q_grow(ic_index_t *ix) {
  size_t nc = ix->qcap ? ix->qcap * 2 : 1024;
  if (nc * sizeof(cand_t) < Q_HUGE) {
    cand_t *nq = realloc(ix->q, nc * sizeof *nq);
    if (!nq) return false;
    ix->q = nq;
    ix->qcap = nc;
    return true;
  }
  cand_t *nq = q_map(nc);
  if (!nq) return false;
  if (ix->qn) memcpy(nq, ix->q, ix->qn * sizeof(cand_t));
  q_free(ix->q, ix->qcap);
  ix->q = nq;
  ix->qcap = nc;
  return true;
}

static void cand_drop(cand_t *c) {
  free(c->bytes);
  c->bytes = NULL;
}

/* ---------------------------------------------------------------- extra min-heap */

static void heap_push(ic_index_t *ix, const cand_t *c) {
  if (ix->nextra == ix->capextra) {
    size_t nc = ix->capextra ? ix->capextra * 2 : 64;
    cand_t *n = realloc(ix->extra, nc * sizeof *n);
    if (!n) {
      cand_t tmp = *c;
      cand_drop(&tmp);
      ix->q_invalid = true; /* the invariant lost a member: rebuild before the next pop */
      return;               /* dropping a candidate only delays it to the next rebuild */
    }
    ix->extra = n;
    ix->capextra = nc;
  }
  size_t i = ix->nextra++;
  ix->extra[i] = *c;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (cand_cmp(&ix->extra[p], &ix->extra[i]) <= 0) break;
    cand_t t = ix->extra[p];
    ix->extra[p] = ix->extra[i];
    ix->extra[i] = t;
    i = p;
  }
}

/* Moves extra[i] down until neither child of it in extra[0, n) sorts before it. */
static void sift_down(ic_index_t *ix, size_t i, size_t n) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && cand_cmp(&ix->extra[l], &ix->extra[m]) < 0) m = l;
    if (r < n && cand_cmp(&ix->extra[r], &ix->extra[m]) < 0) m = r;
    if (m == i) return;
    cand_t t = ix->extra[m];
    ix->extra[m] = ix->extra[i];
    ix->extra[i] = t;
    i = m;
  }
}

static cand_t heap_pop(ic_index_t *ix) {
  cand_t top = ix->extra[0];
  ix->extra[0] = ix->extra[--ix->nextra];
  sift_down(ix, 0, ix->nextra);
  return top;
}

#define EXTRA_MAX 65536u

static inline bool under_thr(ic_index_t *ix, uint64_t eff, int64_t ts) {
  uint64_t te = atomic_load_explicit(&ix->thr_eff, memory_order_relaxed);
  int64_t tt = atomic_load_explicit(&ix->thr_ts, memory_order_relaxed);
  return eff < te || (eff == te && ts <= tt);
}

void evq_note(ic_index_t *ix, scope_t *sc, part_t *p, uint64_t key, uint32_t flags, uint32_t rep,
              int64_t ts, uint64_t eff) {
  if (!atomic_load_explicit(&ix->thr_on, memory_order_acquire) || !under_thr(ix, eff, ts)) return;
  cand_t c;
  pthread_mutex_lock(&ix->extra_lock);
  if (!cand_make(&c, sc, p->idx, key, flags, rep, ts, eff)) {
    ix->q_invalid = true;
  } else if (ix->nextra >= EXTRA_MAX) {
    /* below the cap nothing pops, and under LFU every new entry qualifies: stop collecting and
       let the next over-cap ingest rebuild instead of growing without bound */
    cand_drop(&c);
    ix->q_invalid = true;
    atomic_store(&ix->thr_on, false);
    for (size_t i = 0; i < ix->nextra; i++)
      cand_drop(&ix->extra[i]);
    ix->nextra = 0;
  } else {
    heap_push(ix, &c);
  }
  pthread_mutex_unlock(&ix->extra_lock);
}

static void queue_clear(ic_index_t *ix) {
  for (size_t i = ix->qpos; i < ix->qn; i++)
    cand_drop(&ix->q[qidx(ix, i)]);
  ix->qn = ix->qpos = 0;
  ix->qord = NULL;
  atomic_store(&ix->thr_on, false);
  pthread_mutex_lock(&ix->extra_lock);
  for (size_t i = 0; i < ix->nextra; i++)
    cand_drop(&ix->extra[i]);
  ix->nextra = 0;
  ix->q_invalid = false;
  pthread_mutex_unlock(&ix->extra_lock);
}

void evq_free(ic_index_t *ix) {
  queue_clear(ix);
  q_free(ix->q, ix->qcap);
  ix->qcap = 0;
  free(ix->rk);
  free(ix->rk2);
  free(ix->extra);
  ix->q = ix->extra = NULL;
  ix->rk = ix->rk2 = ix->qord = NULL;
}

/* Restores the heap property of extra[0, n) (after candidates were taken out). */
static void heap_fix(ic_index_t *ix) {
  for (size_t s = ix->nextra / 2; s-- > 0;)
    sift_down(ix, s, ix->nextra);
}

/* records.c frees a retired scope once its readers are gone; the queue keeps candidates
 * between calls, so it lets go of theirs first. Queue entries are blanked in place (the pop
 * order stays valid; pops skip them); the side heap is compacted and re-heaped. O(queue). */
void evq_forget_retired(ic_index_t *ix) {
  pthread_mutex_lock(&ix->cap_lock);
  for (size_t i = ix->qpos; i < ix->qn; i++) {
    cand_t *c = &ix->q[qidx(ix, i)];
    if (c->sc && atomic_load_explicit(&c->sc->retired, memory_order_relaxed)) {
      cand_drop(c);
      c->sc = NULL;
      c->pp = NULL;
    }
  }
  pthread_mutex_lock(&ix->extra_lock);
  size_t w = 0;
  for (size_t i = 0; i < ix->nextra; i++) {
    if (atomic_load_explicit(&ix->extra[i].sc->retired, memory_order_relaxed))
      cand_drop(&ix->extra[i]);
    else
      ix->extra[w++] = ix->extra[i];
  }
  if (w != ix->nextra) {
    ix->nextra = w;
    heap_fix(ix);
  }
  pthread_mutex_unlock(&ix->extra_lock);
  pthread_mutex_unlock(&ix->cap_lock);
}

/* ---------------------------------------------------------------- rebuild */

typedef struct {
  uint64_t eff;
  int64_t ts;
} ekey_t;

static int ekey_cmp(const void *x, const void *y) {
  const ekey_t *a = x, *b = y;
  if (a->eff != b->eff) return a->eff < b->eff ? -1 : 1;
  return a->ts < b->ts ? -1 : a->ts > b->ts;
}

static scope_t **all_scopes(ic_index_t *ix, uint32_t *n) {
  pthread_rwlock_rdlock(&ix->dir);
  *n = ix->nscopes;
  scope_t **v = malloc((*n ? *n : 1) * sizeof *v);
  if (v && *n) memcpy(v, ix->scopes, *n * sizeof *v);
  pthread_rwlock_unlock(&ix->dir);
  if (!v) *n = 0;
  return v;
}

static uint64_t holder_eff(scope_t *sc, part_t *p, const slot_t *s, const holder_t *h) {
  if (atomic_load_explicit(&sc->tr->algo, memory_order_relaxed) != IC_INDEX_EVICT_LFU) return 0;
  return store_entry_eff(sc, p, s, h);
}

/* Collects every live non-reserved holder whose (eff, last_seen) is under the threshold into
 * the queue, 4096 slots per read hold so a scan of a big partition never holds writers (and,
 * with the writer-preferring lock, lookups) for long. A sub-table rehashed between two holds is
 * rescanned from its start (duplicates are harmless: a stale candidate is skipped at pop); a
 * slot moved backwards by a concurrent deletion may be missed, which only delays that victim. */
static void scan(ic_index_t *ix) {
  uint32_t n;
  scope_t **v = all_scopes(ix, &n);
  for (uint32_t i = 0; i < n; i++) {
    scope_t *sc = v[i];
    if (sc->reserved) continue;
    for (uint32_t pi = 0;; pi++) {
      ixlock_rd(&sc->lock);
      uint32_t np = sc->nparts;
      ixlock_rdun(&sc->lock);
      if (pi >= np) break;
      for (uint32_t si = 0; si < SUBS; si++) {
        uint32_t from = 0, cap0 = UINT32_MAX;
        for (;;) {
          ixlock_rd(&sc->lock);
          part_t *p = sc->parts[pi];
          sub_t *sb = &p->subs[si];
          if (sb->cap != cap0) {
            if (cap0 != UINT32_MAX) from = 0;
            cap0 = sb->cap;
          }
          uint32_t to = from + 4096 < sb->cap ? from + 4096 : sb->cap;
          for (uint32_t k = from; k < to; k++) {
            slot_t *s = &sb->slots[k];
            holder_t tmp;
            const holder_t *hs;
            uint32_t hn = slot_holders(s, &tmp, &hs);
            for (uint32_t j = 0; j < hn; j++) {
              uint32_t rep = META_REP(hs[j].meta);
              if (sc->reps[rep].dead) continue;
              int64_t ts = store_entry_ts(sc, hs[j].ts);
              uint64_t eff = holder_eff(sc, p, s, &hs[j]);
              if (!under_thr(ix, eff, ts)) continue;
              if (ix->qn == ix->qcap && !q_grow(ix)) continue;
              if (cand_make(&ix->q[ix->qn], sc, pi, s->key, s->meta, rep, ts, eff)) ix->qn++;
            }
          }
          bool done = to >= sb->cap;
          ixlock_rdun(&sc->lock);
          if (done) break;
          from = to;
        }
      }
    }
  }
  free(v);
}

/* Threshold estimate from ~8192 random slots (weighted by sub-table population) instead of a
 * pass over the whole index: only the collecting scan touches every slot. */
static void sample(ic_index_t *ix, int64_t N, ekey_t **smp, size_t *ns, size_t *cs) {
  uint32_t n;
  scope_t **v = all_scopes(ix, &n);
  uint64_t rnd = 0x9e3779b97f4a7c15ULL ^ (uint64_t)N;
  for (uint32_t i = 0; i < n; i++) {
    scope_t *sc = v[i];
    if (sc->reserved) continue;
    ixlock_rd(&sc->lock);
    for (uint32_t pi = 0; pi < sc->nparts; pi++) {
      part_t *p = sc->parts[pi];
      for (uint32_t si = 0; si < SUBS; si++) {
        sub_t *sb = &p->subs[si];
        if (!sb->count) continue;
        uint64_t want = (uint64_t)sb->count * 8192 / (uint64_t)N + 1;
        for (uint64_t k = 0; k < want * 2; k++) { /* ~2 probes per hit at load 0.64-0.8 */
          if (k && k % 256 == 0) { /* random probes miss the cache: keep read holds short */
            ixlock_rdun(&sc->lock);
            ixlock_rd(&sc->lock);
            if (pi >= sc->nparts || !sb->cap) break;
          }
          rnd ^= rnd << 13;
          rnd ^= rnd >> 7;
          rnd ^= rnd << 17;
          slot_t *s = &sb->slots[rnd % sb->cap];
          holder_t tmp;
          const holder_t *hs;
          uint32_t hn = slot_holders(s, &tmp, &hs);
          for (uint32_t j = 0; j < hn; j++) {
            if (sc->reps[META_REP(hs[j].meta)].dead) continue;
            if (*ns == *cs) {
              size_t nc = *cs ? *cs * 2 : 1024;
              ekey_t *nn = realloc(*smp, nc * sizeof **smp);
              if (!nn) continue;
              *smp = nn;
              *cs = nc;
            }
            (*smp)[(*ns)++] = (ekey_t){holder_eff(sc, p, s, &hs[j]), store_entry_ts(sc, hs[j].ts)};
          }
        }
      }
    }
    ixlock_rdun(&sc->lock);
  }
  free(v);
}

static void sort_queue(ic_index_t *ix);

static void rebuild(ic_index_t *ix, int64_t over) {
  queue_clear(ix);
  int64_t N = atomic_load(&ix->total_entries) - atomic_load(&ix->reserved_entries);
  if (N <= 0) return;
  int64_t K = N / 8;
  if (K < 1024) K = 1024;
  if (K < over) K = over;
  ekey_t *smp = NULL;
  size_t ns = 0, cs = 0;
  uint64_t te = UINT64_MAX;
  int64_t tt = INT64_MAX;
  if (K < N) {
    sample(ix, N, &smp, &ns, &cs);
    if (ns) {
      ix_sort(smp, ns, sizeof *smp, ekey_cmp);
      size_t at = (size_t)((double)K / (double)N * (double)ns);
      if (at >= ns) at = ns - 1;
      te = smp[at].eff;
      tt = smp[at].ts;
    }
    free(smp);
  }
  atomic_store(&ix->thr_eff, te);
  atomic_store(&ix->thr_ts, tt);
  atomic_store_explicit(&ix->thr_on, true, memory_order_release);
  scan(ix);
  sort_queue(ix);
  ix->qpos = 0;
}

/* Sorting 80-byte candidates with qsort moves a lot of memory and calls the comparator
 * ~log K times each. Instead: an LSD radix sort of 16-byte (eff, last_seen, index) records,
 * skipping byte positions where every key agrees (eff is 0 for LRU, timestamps share high
 * bytes), then the full comparator only inside groups of equal (eff, last_seen) (one update's
 * blocks). Candidates stay where the scan put them; the sorted records are the pop order. */
static int rk_full_cmp(const void *x, const void *y, void *ud) {
  const cand_t *q = ud;
  return cand_cmp(&q[((const rk_t *)x)->idx], &q[((const rk_t *)y)->idx]);
}

/* Ties on (eff, last_seen) are usually one update's blocks: same scope, adapter and replica
 * order key, 8-byte hashes. Then the reference order reduces to (hash, replica id), sorted on
 * a compact local copy instead of chasing candidates through the comparator. */
typedef struct {
  uint64_t key;
  const char *rep;
  uint32_t idx;
} tie_t;

static int tie_cmp(const void *x, const void *y) {
  const tie_t *a = x, *b = y;
  if (a->key != b->key) return a->key < b->key ? -1 : 1;
  return strcmp(a->rep, b->rep);
}

static inline bool tie_lt(const tie_t *a, const tie_t *b) {
  return a->key != b->key ? a->key < b->key : strcmp(a->rep, b->rep) < 0;
}

/* Sorts one tie group (typically an update's 128 blocks) with the comparison inlined: qsort's
 * indirect calls were a visible share of the rebuild. Quicksort with insertion sort below 16
 * and qsort as the fallback past a depth bound, so producer-chosen hashes cannot make it
 * quadratic. The result is the same total order as tie_cmp. */
static void tie_sort(tie_t *t, size_t n, int depth) {
  while (n > 16) {
    if (depth++ > 48) {
      qsort(t, n, sizeof *t, tie_cmp);
      return;
    }
    tie_t *a = &t[0], *m = &t[n / 2], *z = &t[n - 1], tmp;
    if (tie_lt(m, a)) tmp = *m, *m = *a, *a = tmp;
    if (tie_lt(z, m)) {
      tmp = *z, *z = *m, *m = tmp;
      if (tie_lt(m, a)) tmp = *m, *m = *a, *a = tmp;
    }
    tie_t piv = *m;
    size_t i = 0, j = n - 1;
    for (;;) { /* Hoare partition: [0, j] <= piv <= [j+1, n) */
      while (tie_lt(&t[i], &piv))
        i++;
      while (tie_lt(&piv, &t[j]))
        j--;
      if (i >= j) break;
      tmp = t[i], t[i] = t[j], t[j] = tmp;
      i++;
      j--;
    }
    size_t left = j + 1;
    if (left < n - left) {
      tie_sort(t, left, depth);
      t += left;
      n -= left;
    } else {
      tie_sort(t + left, n - left, depth);
      n = left;
    }
  }
  for (size_t i = 1; i < n; i++) {
    tie_t x = t[i];
    size_t k = i;
    while (k > 0 && tie_lt(&x, &t[k - 1])) {
      t[k] = t[k - 1];
      k--;
    }
    t[k] = x;
  }
}

static void sort_ties(const cand_t *q, rk_t *g, size_t n, tie_t *buf, size_t bufn) {
  const cand_t *f = &q[g[0].idx];
  bool simple = true;
  for (size_t i = 0; i < n && simple; i++) {
    const cand_t *c = &q[g[i].idx];
    simple = c->sc == f->sc && c->adapter == f->adapter && !(c->flags & M_LONG);
  }
  tie_t *t = n <= bufn ? buf : malloc(n * sizeof *t);
  if (!simple || !t) {
    if (t && t != buf) free(t);
    qsort_r(g, n, sizeof *g, rk_full_cmp, (void *)q);
    return;
  }
  ic_index_t *ix = f->sc->ix;
  for (size_t i = 0; i < n; i++) {
    const cand_t *c = &q[g[i].idx];
    t[i] = (tie_t){c->key, ix_str(ix, c->replica), g[i].idx};
  }
  tie_sort(t, n, 0);
  for (size_t i = 0; i < n; i++)
    g[i].idx = t[i].idx;
  if (t != buf) free(t);
}

static bool grow_buf(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  void *n = realloc(*p, need * elem);
  if (!n) return false;
  *p = n;
  *cap = need;
  return true;
}

/* Moves a big queue into the radix order `o` (eff, last_seen) before the ties are sorted (a
 * fresh mapping of the same capacity; the old one is freed, so steady-state memory is
 * unchanged), and makes `o` the identity. The gather is one tight loop of independent,
 * prefetched loads; without it the tie sort and every pop would read a random 80-byte
 * candidate, the pops interleaved with the removal work where the misses cannot overlap.
 * After it, tie groups are contiguous and the pop order only permutes inside a group.
 * Candidates (and their owned hash copies) move, nothing is duplicated. On ENOMEM the queue
 * stays in place and pops go through the order records as before. */
static void q_gather(ic_index_t *ix, rk_t *o) {
  size_t n = ix->qn;
  if (n * sizeof(cand_t) < Q_HUGE) return; /* small queue: cache-resident anyway */
  cand_t *nq = q_map(ix->qcap), *q = ix->q;
  if (!nq) return;
  for (size_t i = 0; i < n; i++) {
    if (i + 16 < n) {
      const char *a = (const char *)&q[o[i + 16].idx];
      ix_prefetch(a);
      ix_prefetch(a + sizeof(cand_t) - 1);
    }
    nq[i] = q[o[i].idx];
  }
  q_free(q, ix->qcap);
  ix->q = nq;
  for (size_t i = 0; i < n; i++)
    o[i].idx = (uint32_t)i;
}

static void sort_queue(ic_index_t *ix) {
  size_t n = ix->qn;
  ix->qord = NULL;
  if (n < 2) return;
  size_t c1 = ix->rkcap, c2 = ix->rkcap;
  if (n > UINT32_MAX || !grow_buf(&ix->rk, &c1, n, sizeof(rk_t)) ||
      !grow_buf(&ix->rk2, &c2, n, sizeof(rk_t))) {
    ix->rkcap = c1 < c2 ? c1 : c2;
    qsort(ix->q, n, sizeof *ix->q, cand_qcmp);
    return;
  }
  ix->rkcap = c1 < c2 ? c1 : c2;
  rk_t *a = ix->rk, *b = ix->rk2;
  for (size_t i = 0; i < n; i++)
    a[i] = (rk_t){(uint64_t)ix->q[i].ts ^ (1ULL << 63),
                  ix->q[i].eff > UINT32_MAX ? UINT32_MAX : (uint32_t)ix->q[i].eff, (uint32_t)i};
  for (int pass = 0; pass < 12; pass++) {
    int sh = pass < 8 ? pass * 8 : (pass - 8) * 8;
#define DIGIT(r) ((pass < 8 ? (r).ts >> sh : (uint64_t)(r).eff >> sh) & 0xff)
    size_t cnt[256] = {0};
    for (size_t i = 0; i < n; i++)
      cnt[DIGIT(a[i])]++;
    bool uniform = false;
    for (int d = 0; d < 256; d++)
      if (cnt[d] == n) uniform = true;
    if (uniform) continue;
    size_t pos = 0;
    for (int d = 0; d < 256; d++) {
      size_t c = cnt[d];
      cnt[d] = pos;
      pos += c;
    }
    for (size_t i = 0; i < n; i++)
      b[cnt[DIGIT(a[i])]++] = a[i];
#undef DIGIT
    rk_t *t = a;
    a = b;
    b = t;
  }
  q_gather(ix, a);
  tie_t tst[256];
  for (size_t l = 0; l < n;) {
    size_t r = l + 1;
    while (r < n && a[r].eff == a[l].eff && a[r].ts == a[l].ts)
      r++;
    if (r - l > 1) sort_ties(ix->q, &a[l], r - l, tst, 256);
    l = r;
  }
  ix->qord = a;
}

/* Pops up to max victims in the merged (queue, side heap) order into out[] under one hold of
 * extra_lock; returns how many (0: the queue is dry or invalid, the caller rebuilds). The
 * caller removes them in that order; see evq_enforce_cap for why a batch changes nothing. */
#define VICTIM_BATCH 64
static size_t pop_cands(ic_index_t *ix, cand_t *out, size_t max) {
  cand_t *q = ix->q;
  size_t n = 0;
  pthread_mutex_lock(&ix->extra_lock);
  while (n < max && !ix->q_invalid) {
    while (ix->qpos < ix->qn && !q[qidx(ix, ix->qpos)].sc) /* of a retired scope */
      ix->qpos++;
    bool have_q = ix->qpos < ix->qn;
    bool have_x = ix->nextra > 0;
    if (!have_q && !have_x) break;
    if (have_x && (!have_q || cand_cmp(&ix->extra[0], &q[qidx(ix, ix->qpos)]) < 0))
      out[n++] = heap_pop(ix);
    else
      out[n++] = q[qidx(ix, ix->qpos++)];
    /* candidates sit in scan order and pop in sorted order: fetch the ones a batch ahead */
    if (ix->qpos + VICTIM_BATCH < ix->qn) ix_prefetch(&q[qidx(ix, ix->qpos + VICTIM_BATCH)]);
  }
  pthread_mutex_unlock(&ix->extra_lock);
  return n;
}

/* Per-pass algorithm refresh: a tenant switching algorithm invalidates the queue. */
static bool refresh_algos(ic_index_t *ix) {
  bool changed = false;
  pthread_rwlock_rdlock(&ix->dir);
  uint32_t n = ix->ntenants;
  tenantrec_t **v = malloc((n ? n : 1) * sizeof *v);
  if (v && n) memcpy(v, ix->tenants, n * sizeof *v);
  pthread_rwlock_unlock(&ix->dir);
  for (uint32_t i = 0; v && i < n; i++) {
    if (v[i]->reserved) continue;
    int a = ix_algo_for(ix, v[i]->tenant);
    if (atomic_exchange(&v[i]->algo, a) != a) changed = true;
  }
  free(v);
  return changed;
}

void evq_enforce_cap(ic_index_t *ix, int64_t evicted[2]) {
  int64_t max = ix->cfg.max_entries;
  if (max <= 0) return;
  if (atomic_load(&ix->total_entries) - atomic_load(&ix->reserved_entries) <= max) return;
  int64_t now = ix_now(ix);
  pthread_mutex_lock(&ix->cap_lock);
  if (refresh_algos(ix)) queue_clear(ix);
  bool rebuilt = false;
  int fruitless = 0;    /* rebuilds in a row that evicted nothing: bail out rather than spin */
  scope_t *held = NULL; /* consecutive victims mostly share a scope: keep it locked a while */
  int held_n = 0;
  cand_t batch[VICTIM_BATCH];
  for (;;) {
    int64_t eff_total = atomic_load(&ix->total_entries) - atomic_load(&ix->reserved_entries);
    if (eff_total <= max) break;
    /* Never more victims than the excess: a candidate found refreshed is requeued under its
       newer key and popped again if still among the smallest, so a batch evicts exactly the
       entries one-at-a-time popping would (each batch member has fewer evictions before it in
       the merged order than the excess). */
    size_t want =
        (uint64_t)(eff_total - max) < VICTIM_BATCH ? (size_t)(eff_total - max) : VICTIM_BATCH;
    size_t nb = pop_cands(ix, batch, want);
    if (nb == 0) {
      if (held) scope_wrun(held);
      held = NULL;
      if ((rebuilt && ix->qn == 0) || fruitless > 3) break; /* nothing evictable */
      rebuild(ix, eff_total - max);
      rebuilt = true;
      fruitless++;
      continue;
    }
    rebuilt = false;
    /* the victims' slots and the clusters their backward shifts read, in one tight loop so
       the misses overlap */
    for (size_t i = 0; i < nb; i++)
      if (!(batch[i].flags & M_LONG)) part_prefetch_unlocked(batch[i].pp, batch[i].key);
    for (size_t i = 0; i < nb; i++) {
      cand_t *c = &batch[i];
      scope_t *sc = c->sc;
      if (held != sc || ++held_n >= 64) {
        if (held) scope_wrun(held);
        scope_wr(sc);
        held = sc;
        held_n = 0;
      }
      part_t *p = sc->parts[c->part];
      slot_t *s = cand_key_live(c, sc) ? part_find(p, c->key, c->flags) : NULL;
      /* rep indices are reused too (a fresh replica takes the index of one holding nothing) */
      if (s && !sc->reps[c->rep].dead && sc->reps[c->rep].replica == c->replica) {
        holder_t tmp;
        const holder_t *hs;
        uint32_t hn = slot_holders(s, &tmp, &hs);
        for (uint32_t j = 0; j < hn; j++) {
          if (META_REP(hs[j].meta) != c->rep) continue;
          int64_t ts = store_entry_ts(sc, hs[j].ts);
          uint64_t eff = holder_eff(sc, p, s, &hs[j]);
          if (ts != c->ts || eff != c->eff) {
            /* refreshed or credited since queued: requeue under its current order key */
            if (under_thr(ix, eff, ts)) {
              cand_t n;
              if (cand_make(&n, sc, c->part, c->key, c->flags, c->rep, ts, eff)) {
                pthread_mutex_lock(&ix->extra_lock);
                heap_push(ix, &n);
                pthread_mutex_unlock(&ix->extra_lock);
              }
            }
            break;
          }
          int a = atomic_load(&sc->tr->algo);
          store_remove_holder(sc, p, s, j, IC_INDEX_REASON_CAP, now);
          evicted[a == IC_INDEX_EVICT_LFU ? 1 : 0]++;
          fruitless = 0;
          break;
        }
      }
      cand_drop(c);
    }
  }
  if (held) scope_wrun(held);
  pthread_mutex_unlock(&ix->cap_lock);
}
