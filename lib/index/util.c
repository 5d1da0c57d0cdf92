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

static int map_grow(u64map_t *m) {
  uint32_t ncap = m->cap ? m->cap * 2 : 8;
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

int strtab_init(strtab_t *t) {
  memset(t, 0, sizeof *t);
  t->cap = 64;
  t->slots = calloc(t->cap, sizeof *t->slots);
  return t->slots ? 0 : IC_ENOMEM;
}

void strtab_free(strtab_t *t) {
  uint32_t n = atomic_load(&t->n);
  for (uint32_t id = 0; id < n; id++)
    free(t->chunks[id / STR_CHUNK][id % STR_CHUNK]);
  for (uint32_t c = 0; c < STR_MAXCHUNKS && t->chunks[c]; c++) {
    free(t->chunks[c]);
    free(t->lens[c]);
  }
  free(t->slots);
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

uint32_t strtab_intern(strtab_t *t, const char *p, size_t n) {
  uint32_t id = strtab_find(t, p, n);
  if (id != UINT32_MAX) return id;
  id = atomic_load(&t->n);
  if (id / STR_CHUNK >= STR_MAXCHUNKS) return UINT32_MAX;
  if ((id + 1) * 2 > t->cap) {
    uint32_t ncap = t->cap * 2;
    uint32_t *ns = calloc(ncap, sizeof *ns);
    if (!ns) return UINT32_MAX;
    for (uint32_t k = 0; k < id; k++)
      strtab_place(ns, ncap, ic_hash_bytes(strtab_get(t, k), strtab_len(t, k)), k);
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
  }
  uint32_t c = id / STR_CHUNK;
  if (!t->chunks[c]) {
    t->chunks[c] = calloc(STR_CHUNK, sizeof(char *));
    t->lens[c] = calloc(STR_CHUNK, sizeof(size_t));
    if (!t->chunks[c] || !t->lens[c]) {
      free(t->chunks[c]);
      free(t->lens[c]);
      t->chunks[c] = NULL;
      t->lens[c] = NULL;
      return UINT32_MAX;
    }
  }
  char *s = malloc(n + 1);
  if (!s) return UINT32_MAX;
  memcpy(s, p, n);
  s[n] = 0;
  t->chunks[c][id % STR_CHUNK] = s;
  t->lens[c][id % STR_CHUNK] = n;
  strtab_place(t->slots, t->cap, ic_hash_bytes(p, n), id);
  atomic_store_explicit(&t->n, id + 1, memory_order_release);
  return id;
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
