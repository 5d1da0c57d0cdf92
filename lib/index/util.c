/* Small pieces of lib/index: a u64 -> u64 open-addressing map, the string intern table (neither
 * locks: the embedding structure's lock guards them, see internal.h) and the scope lock's back-off.
 */
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "ic/err.h"
#include "internal.h"

uint64_t ic_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t ic_hash_bytes(const void *p, size_t n) { return XXH3_64bits(p, n); }

void u64map_free(u64map_t *m) {
  free(m->keys);
  free(m->vals);
  free(m->used);
  memset(m, 0, sizeof *m);
}

static uint32_t map_find(const u64map_t *m, uint64_t k, bool *found) {
  uint32_t mask = m->cap - 1, i = (uint32_t)ic_mix64(k) & mask;
  while (m->used[i]) {
    if (m->keys[i] == k) {
      *found = true;
      return i;
    }
    i = (i + 1) & mask;
  }
  *found = false;
  return i;
}

bool u64map_get(const u64map_t *m, uint64_t k, uint64_t *v) {
  if (!m->cap) return false;
  bool f;
  uint32_t i = map_find(m, k, &f);
  if (f && v) *v = m->vals[i];
  return f;
}

static int map_rehash(u64map_t *m, uint32_t ncap) {
  u64map_t n = {calloc(ncap, 8), calloc(ncap, 8), calloc(ncap, 1), ncap, 0};
  if (!n.keys || !n.vals || !n.used) {
    u64map_free(&n);
    return IC_ENOMEM;
  }
  for (uint32_t i = 0; i < m->cap; i++) {
    if (!m->used[i]) continue;
    bool f;
    uint32_t j = map_find(&n, m->keys[i], &f);
    n.used[j] = 1;
    n.keys[j] = m->keys[i];
    n.vals[j] = m->vals[i];
    n.count++;
  }
  u64map_free(m);
  *m = n;
  return 0;
}

static int map_grow(u64map_t *m) { return map_rehash(m, m->cap ? m->cap * 2 : 8); }

void u64map_shrink(u64map_t *m) {
  if (m->cap <= 64 || (uint64_t)m->count * 8 >= m->cap) return;
  uint32_t ncap = 64;
  while ((uint64_t)m->count * 8 >= (uint64_t)ncap * 3) /* load <= 3/8 after the shrink */
    ncap *= 2;
  if (ncap < m->cap) map_rehash(m, ncap); /* ENOMEM: stays as it is */
}

int u64map_put(u64map_t *m, uint64_t k, uint64_t v) {
  if ((m->count + 1) * 4 > m->cap * 3 && map_grow(m)) return IC_ENOMEM;
  bool f;
  uint32_t i = map_find(m, k, &f);
  if (!f) {
    m->used[i] = 1;
    m->keys[i] = k;
    m->count++;
  }
  m->vals[i] = v;
  return 0;
}

bool u64map_del(u64map_t *m, uint64_t k) {
  if (!m->cap) return false;
  bool f;
  uint32_t mask = m->cap - 1, i = map_find(m, k, &f);
  if (!f) return false;
  /* Backward-shift deletion keeps probe chains intact without tombstones. */
  uint32_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!m->used[j]) break;
    uint32_t home = (uint32_t)ic_mix64(m->keys[j]) & mask;
    /* move j into the hole i unless home lies cyclically in (i, j] */
    bool in = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (in) continue;
    m->keys[i] = m->keys[j];
    m->vals[i] = m->vals[j];
    i = j;
  }
  m->used[i] = 0;
  m->count--;
  return true;
}

/* ---------------------------------------------------------------- string intern */

static char strtab_empty[1] = ""; /* what a released id reads as */

int strtab_init(strtab_t *t) {
  memset(t, 0, sizeof *t);
  t->cap = 64;
  t->slots = calloc(t->cap, sizeof *t->slots);
  pthread_mutex_init(&t->zero_lock, NULL);
  return t->slots ? 0 : IC_ENOMEM;
}

void strtab_free(strtab_t *t) {
  uint32_t n = atomic_load(&t->n);
  for (uint32_t id = 0; id < n; id++) {
    char *p = t->chunks[id / STR_CHUNK][id % STR_CHUNK];
    if (p != strtab_empty) free(p);
  }
  for (uint32_t c = 0; c < STR_MAXCHUNKS && t->chunks[c]; c++) {
    free(t->chunks[c]);
    free(t->lens[c]);
    free((void *)t->refs[c]);
    free(t->hashed[c]);
  }
  free(t->slots);
  free(t->free_ids);
  free(t->zero);
  pthread_mutex_destroy(&t->zero_lock);
  memset(t, 0, sizeof *t);
}

uint32_t strtab_find(const strtab_t *t, const char *p, size_t n) {
  uint32_t mask = t->cap - 1, i = (uint32_t)ic_hash_bytes(p, n) & mask;
  for (;;) {
    uint32_t v = t->slots[i];
    if (!v) return UINT32_MAX;
    uint32_t id = v - 1;
    if (strtab_len(t, id) == n && memcmp(strtab_get(t, id), p, n) == 0) return id;
    i = (i + 1) & mask;
  }
}

static void strtab_place(uint32_t *slots, uint32_t cap, uint64_t h, uint32_t id) {
  uint32_t mask = cap - 1, i = (uint32_t)h & mask;
  while (slots[i])
    i = (i + 1) & mask;
  slots[i] = id + 1;
}

static bool chunk_alloc(strtab_t *t, uint32_t c) {
  if (t->chunks[c]) return true;
  t->chunks[c] = calloc(STR_CHUNK, sizeof(char *));
  t->lens[c] = calloc(STR_CHUNK, sizeof(size_t));
  t->refs[c] = calloc(STR_CHUNK, sizeof(_Atomic uint32_t));
  t->hashed[c] = calloc(STR_CHUNK, 1);
  if (t->chunks[c] && t->lens[c] && t->refs[c] && t->hashed[c]) return true;
  free(t->chunks[c]);
  free(t->lens[c]);
  free((void *)t->refs[c]);
  free(t->hashed[c]);
  t->chunks[c] = NULL;
  t->lens[c] = NULL;
  t->refs[c] = NULL;
  t->hashed[c] = NULL;
  return false;
}

/* Rebuilds the slots at ncap (a power of two above 2 x live); false on ENOMEM. */
static bool strtab_rehash(strtab_t *t, uint32_t ncap) {
  uint32_t hw = atomic_load(&t->n);
  uint32_t *ns = calloc(ncap, sizeof *ns);
  if (!ns) return false;
  for (uint32_t k = 0; k < hw; k++)
    if (t->hashed[k / STR_CHUNK][k % STR_CHUNK])
      strtab_place(ns, ncap, ic_hash_bytes(strtab_get(t, k), strtab_len(t, k)), k);
  free(t->slots);
  t->slots = ns;
  t->cap = ncap;
  return true;
}

uint32_t strtab_intern(strtab_t *t, const char *p, size_t n) {
  uint32_t id = strtab_find(t, p, n);
  if (id != UINT32_MAX) return id;
  uint32_t hw = atomic_load(&t->n);
  bool reuse = t->nfree > 0;
  id = reuse ? t->free_ids[t->nfree - 1] : hw;
  if (id / STR_CHUNK >= STR_MAXCHUNKS) return UINT32_MAX;
  if ((t->live + 1) * 2 > t->cap && !strtab_rehash(t, t->cap * 2)) return UINT32_MAX;
  uint32_t c = id / STR_CHUNK;
  if (!chunk_alloc(t, c)) return UINT32_MAX;
  char *s = malloc(n + 1);
  if (!s) return UINT32_MAX;
  memcpy(s, p, n);
  s[n] = 0;
  if (reuse) t->nfree--;
  t->chunks[c][id % STR_CHUNK] = s;
  t->lens[c][id % STR_CHUNK] = n;
  atomic_store_explicit(&t->refs[c][id % STR_CHUNK], 0, memory_order_relaxed);
  t->hashed[c][id % STR_CHUNK] = 1;
  strtab_place(t->slots, t->cap, ic_hash_bytes(p, n), id);
  t->live++;
  if (!reuse) atomic_store_explicit(&t->n, id + 1, memory_order_release);
  return id;
}

void strtab_unref(strtab_t *t, uint32_t id) {
  if (atomic_fetch_sub_explicit(&t->refs[id / STR_CHUNK][id % STR_CHUNK], 1,
                                memory_order_acq_rel) != 1)
    return;
  pthread_mutex_lock(&t->zero_lock);
  if (t->nzero == t->capzero) {
    uint32_t nc = t->capzero ? t->capzero * 2 : 64;
    uint32_t *nz = realloc(t->zero, nc * sizeof *nz);
    if (nz) t->zero = nz, t->capzero = nc;
  }
  if (t->nzero < t->capzero) t->zero[t->nzero++] = id; /* else: kept (costs memory, not safety) */
  pthread_mutex_unlock(&t->zero_lock);
}

/* Backward-shift deletion of id from the slots (linear probing, no tombstones). */
static void strtab_unslot(strtab_t *t, uint32_t id) {
  uint32_t mask = t->cap - 1;
  uint32_t i = (uint32_t)ic_hash_bytes(strtab_get(t, id), strtab_len(t, id)) & mask;
  while (t->slots[i] != id + 1) {
    if (!t->slots[i]) return; /* not there (cannot happen) */
    i = (i + 1) & mask;
  }
  t->slots[i] = 0;
  for (uint32_t j = (i + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
    uint32_t k = t->slots[j] - 1;
    uint32_t home = (uint32_t)ic_hash_bytes(strtab_get(t, k), strtab_len(t, k)) & mask;
    /* move k back to the hole when its home is not in the cyclic range (i, j] */
    bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      t->slots[i] = t->slots[j];
      t->slots[j] = 0;
      i = j;
    }
  }
}

void strtab_unhash_zero(strtab_t *t, uint32_t **out, uint32_t *n) {
  *out = NULL;
  *n = 0;
  pthread_mutex_lock(&t->zero_lock);
  uint32_t *z = t->zero;
  uint32_t nz = t->nzero;
  t->zero = NULL;
  t->nzero = t->capzero = 0;
  pthread_mutex_unlock(&t->zero_lock);
  uint32_t k = 0;
  for (uint32_t i = 0; i < nz; i++) {
    uint32_t id = z[i];
    uint8_t *h = &t->hashed[id / STR_CHUNK][id % STR_CHUNK];
    /* re-referenced since (a find under the dir lock took one), or queued twice */
    if (!*h || atomic_load(&t->refs[id / STR_CHUNK][id % STR_CHUNK]) != 0) continue;
    strtab_unslot(t, id);
    *h = 0;
    t->live--;
    z[k++] = id;
  }
  if (k == 0) {
    free(z);
    return;
  }
  if (t->cap > 64 && (uint64_t)t->live * 16 < t->cap) { /* most names went: shrink to load 1/4 */
    uint32_t ncap = 64;
    while (ncap < t->live * 4)
      ncap *= 2;
    strtab_rehash(t, ncap);
  }
  *out = z;
  *n = k;
}

void strtab_release(strtab_t *t, const uint32_t *ids, uint32_t n) {
  if (t->nfree + n > t->capfree) {
    uint32_t nc = t->capfree ? t->capfree : 64;
    while (nc < t->nfree + n)
      nc *= 2;
    uint32_t *nf = realloc(t->free_ids, nc * sizeof *nf);
    if (nf) t->free_ids = nf, t->capfree = nc;
  }
  for (uint32_t i = 0; i < n; i++) {
    uint32_t id = ids[i];
    char **slot = &t->chunks[id / STR_CHUNK][id % STR_CHUNK];
    char *old = *slot;
    *slot = strtab_empty;
    t->lens[id / STR_CHUNK][id % STR_CHUNK] = 0;
    if (old != strtab_empty) free(old);
    if (t->nfree < t->capfree) t->free_ids[t->nfree++] = id; /* else the id is not reused */
  }
}

uint32_t strtab_count(const strtab_t *t) { return t->live; }

/* ---------------------------------------------------------------- reader pins */

static _Atomic uint32_t g_next_stripe;
static _Thread_local uint32_t tl_stripe = UINT32_MAX;

pin_t ix_pin(ic_index_t *ix) {
  if (tl_stripe == UINT32_MAX) tl_stripe = atomic_fetch_add(&g_next_stripe, 1) % PIN_STRIPES;
  pins_t *p = &ix->pins;
  uint32_t idx = atomic_load(&p->epoch) & 1;
  atomic_fetch_add(&p->ctr[idx][tl_stripe].n, 1); /* seq_cst: ordered before the reads */
  return (pin_t){(uint8_t)idx, (uint8_t)tl_stripe};
}

void ix_unpin(ic_index_t *ix, pin_t p) {
  atomic_fetch_sub_explicit(&ix->pins.ctr[p.idx][p.stripe].n, 1, memory_order_release);
}

/* Two flips, each waiting for the counters of the side no new pin goes to: a reader that read
   the epoch just before a flip and counted itself just after is caught by the second round. */
bool ix_pins_wait(ic_index_t *ix, int timeout_ms) {
  pins_t *p = &ix->pins;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int round = 0; round < 2; round++) {
    uint32_t old = atomic_fetch_add(&p->epoch, 1) & 1;
    unsigned spins = 0;
    for (;;) {
      int64_t sum = 0;
      for (int i = 0; i < PIN_STRIPES; i++)
        sum += atomic_load_explicit(&p->ctr[old][i].n, memory_order_acquire);
      if (sum == 0) break;
      clock_gettime(CLOCK_MONOTONIC, &t);
      if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= timeout_ms)
        return false;
      ixlock_relax(&spins);
    }
  }
  return true;
}

/* ---------------------------------------------------------------- scope lock back-off */

/* ~20 µs of pause-spinning covers a lookup or a writer batch on another core; past that the
   holder is probably descheduled, so give the core away; a wait that outlasts 64 yields is a
   long hold (a sweep chunk, a table swap, a snapshot chunk on a busy machine): sleep in 20 µs
   steps rather than spin a core at 100%. */
void ixlock_relax(unsigned *spins) {
  if (*spins < 1024) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else if (*spins < 1024 + 64) {
    sched_yield();
  } else {
    struct timespec d = {0, 20000};
    nanosleep(&d, NULL);
  }
  if (*spins < UINT_MAX) (*spins)++;
}
