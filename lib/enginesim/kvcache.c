/* Paged KV cache with vLLM's prefix-caching semantics: a fixed GPU block pool, chained block
 * hashes, blocks pinned (ref-counted) while a request runs, LRU eviction of free blocks, and an
 * optional write-through CPU tier. Every change a subscriber must see becomes an event. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ic/enginesim.h"
#include "ic/err.h"

/* ---- hash -> slot map: open addressing, linear probing, backward-shift deletion ---------- */

typedef struct map {
  uint64_t *keys;
  int32_t *vals; /* -1 = empty */
  size_t mask;
} map_t;

static int map_init(map_t *m, int64_t entries) {
  size_t cap = 16;
  while (cap < (size_t)entries * 2)
    cap <<= 1;
  m->keys = calloc(cap, sizeof *m->keys);
  m->vals = malloc(cap * sizeof *m->vals);
  if (!m->keys || !m->vals) return IC_ENOMEM;
  memset(m->vals, 0xff, cap * sizeof *m->vals);
  m->mask = cap - 1;
  return 0;
}

static void map_destroy(map_t *m) {
  free(m->keys);
  free(m->vals);
}

static size_t slot_of(const map_t *m, uint64_t k) {
  return (size_t)(k * 0x9E3779B97F4A7C15ULL >> 7) & m->mask;
}

static int32_t map_get(const map_t *m, uint64_t k) {
  for (size_t i = slot_of(m, k);; i = (i + 1) & m->mask) {
    if (m->vals[i] < 0) return -1;
    if (m->keys[i] == k) return m->vals[i];
  }
}

/* The map is sized at twice the pool, so it never fills. */
static void map_put(map_t *m, uint64_t k, int32_t v) {
  size_t i = slot_of(m, k);
  while (m->vals[i] >= 0 && m->keys[i] != k)
    i = (i + 1) & m->mask;
  m->keys[i] = k;
  m->vals[i] = v;
}

static void map_del(map_t *m, uint64_t k) {
  size_t i = slot_of(m, k);
  while (m->vals[i] >= 0 && m->keys[i] != k)
    i = (i + 1) & m->mask;
  if (m->vals[i] < 0) return;
  /* Backward shift: pull later members of the probe run into the hole. */
  size_t j = i;
  for (;;) {
    m->vals[i] = -1;
    for (;;) {
      j = (j + 1) & m->mask;
      if (m->vals[j] < 0) return;
      size_t home = slot_of(m, m->keys[j]);
      bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!between) break;
    }
    m->keys[i] = m->keys[j];
    m->vals[i] = m->vals[j];
    i = j;
  }
}

static void map_clear(map_t *m) { memset(m->vals, 0xff, (m->mask + 1) * sizeof *m->vals); }

/* ---- intrusive LRU list over slot indices ------------------------------------------------ */

typedef struct slot {
  uint64_t hash;
  int32_t prev, next;
  int32_t ref; /* GPU: requests pinning it */
  bool cached; /* hash is in the map */
  bool listed; /* on the free (GPU) / LRU (CPU) list */
} slot_t;

typedef struct list {
  int32_t head, tail; /* head = evicted first */
  int64_t n;
} list_t;

static void list_push_tail(list_t *l, slot_t *s, int32_t i) {
  s[i].prev = l->tail;
  s[i].next = -1;
  if (l->tail >= 0)
    s[l->tail].next = i;
  else
    l->head = i;
  l->tail = i;
  s[i].listed = true;
  l->n++;
}

static void list_remove(list_t *l, slot_t *s, int32_t i) {
  if (s[i].prev >= 0)
    s[s[i].prev].next = s[i].next;
  else
    l->head = s[i].next;
  if (s[i].next >= 0)
    s[s[i].next].prev = s[i].prev;
  else
    l->tail = s[i].prev;
  s[i].listed = false;
  l->n--;
}

struct ic_esim_kv {
  ic_esim_kv_config_t cfg;
  ic_esim_event_fn fn;
  void *ud;
  slot_t *gpu;
  map_t gpu_map;
  list_t free; /* GPU blocks with ref 0, cached or not */
  int64_t gpu_cached;
  slot_t *cpu;
  map_t cpu_map;
  list_t cpu_lru; /* occupied CPU slots */
  list_t cpu_free;
  uint64_t evictions, cpu_evictions;
};

ic_esim_kv_t *ic_esim_kv_new(const ic_esim_kv_config_t *cfg, ic_esim_event_fn fn, void *ud) {
  if (!cfg || cfg->block_size <= 0 || cfg->gpu_blocks <= 0 || cfg->gpu_blocks > INT32_MAX / 4 ||
      cfg->cpu_blocks < 0 || cfg->cpu_blocks > INT32_MAX / 4)
    return NULL;
  ic_esim_kv_t *kv = calloc(1, sizeof *kv);
  if (!kv) return NULL;
  kv->cfg = *cfg;
  kv->fn = fn;
  kv->ud = ud;
  kv->free = kv->cpu_lru = kv->cpu_free = (list_t){-1, -1, 0};
  kv->gpu = calloc((size_t)cfg->gpu_blocks, sizeof *kv->gpu);
  if (!kv->gpu || map_init(&kv->gpu_map, cfg->gpu_blocks) != 0) goto fail;
  for (int32_t i = 0; i < (int32_t)cfg->gpu_blocks; i++)
    list_push_tail(&kv->free, kv->gpu, i);
  if (cfg->cpu_blocks > 0) {
    kv->cpu = calloc((size_t)cfg->cpu_blocks, sizeof *kv->cpu);
    if (!kv->cpu || map_init(&kv->cpu_map, cfg->cpu_blocks) != 0) goto fail;
    for (int32_t i = 0; i < (int32_t)cfg->cpu_blocks; i++)
      list_push_tail(&kv->cpu_free, kv->cpu, i);
  }
  return kv;
fail:
  ic_esim_kv_free(kv);
  return NULL;
}

void ic_esim_kv_free(ic_esim_kv_t *kv) {
  if (!kv) return;
  free(kv->gpu);
  map_destroy(&kv->gpu_map);
  free(kv->cpu);
  map_destroy(&kv->cpu_map);
  free(kv);
}

int ic_esim_kv_block_size(const ic_esim_kv_t *kv) { return kv->cfg.block_size; }

uint64_t ic_esim_kv_hash(const ic_esim_kv_t *kv, bool has_parent, uint64_t parent,
                         const uint32_t *tokens) {
  /* The parent (or "none") is folded into the seed, so equal tokens under different prefixes
   * hash apart, like vLLM's hash((parent, tokens, extra_keys)). */
  uint64_t seed = kv->cfg.hash_seed ^ (has_parent ? parent * 0x9E3779B97F4A7C15ULL + 1 : 0);
  return XXH3_64bits_withSeed(tokens, (size_t)kv->cfg.block_size * sizeof *tokens, seed);
}

static void emit(ic_esim_kv_t *kv, int type, int medium, const uint64_t *h, size_t n,
                 const uint64_t *parent, const uint32_t *tokens) {
  if (!kv->fn) return;
  ic_esim_event_t ev = {.type = type,
                        .medium = medium,
                        .hashes = h,
                        .nhashes = n,
                        .has_parent = parent != NULL,
                        .parent = parent ? *parent : 0,
                        .tokens = tokens,
                        .ntokens = tokens ? n * (size_t)kv->cfg.block_size : 0,
                        .block_size = kv->cfg.block_size};
  kv->fn(kv->ud, &ev);
}

static int seq_push(ic_esim_seq_t *q, int32_t b) {
  if (q->nblocks == q->cap) {
    size_t nc = q->cap ? q->cap * 2 : 16;
    int32_t *nb = realloc(q->blocks, nc * sizeof *nb);
    if (!nb) return IC_ENOMEM;
    q->blocks = nb;
    uint64_t *nh = realloc(q->hashes, nc * sizeof *nh);
    if (!nh) return IC_ENOMEM;
    q->hashes = nh;
    q->cap = nc;
  }
  q->blocks[q->nblocks++] = b;
  return 0;
}

/* Takes the least recently freed GPU block, evicting its cached content. */
static int32_t take_free_block(ic_esim_kv_t *kv) {
  int32_t b = kv->free.head;
  if (b < 0) return -1;
  list_remove(&kv->free, kv->gpu, b);
  slot_t *s = &kv->gpu[b];
  if (s->cached) {
    map_del(&kv->gpu_map, s->hash);
    s->cached = false;
    kv->gpu_cached--;
    kv->evictions++;
    emit(kv, IC_ESIM_EV_REMOVED, IC_ESIM_GPU, &s->hash, 1, NULL, NULL);
  }
  s->ref = 1;
  return b;
}

/* CPU tier: store (or refresh) one block; evicts the least recently used slot when full. */
static bool cpu_store(ic_esim_kv_t *kv, uint64_t h) {
  int32_t c = map_get(&kv->cpu_map, h);
  if (c >= 0) {
    list_remove(&kv->cpu_lru, kv->cpu, c);
    list_push_tail(&kv->cpu_lru, kv->cpu, c);
    return false;
  }
  if (kv->cpu_free.head >= 0) {
    c = kv->cpu_free.head;
    list_remove(&kv->cpu_free, kv->cpu, c);
  } else {
    c = kv->cpu_lru.head;
    list_remove(&kv->cpu_lru, kv->cpu, c);
    map_del(&kv->cpu_map, kv->cpu[c].hash);
    kv->cpu_evictions++;
    emit(kv, IC_ESIM_EV_REMOVED, IC_ESIM_CPU, &kv->cpu[c].hash, 1, NULL, NULL);
  }
  kv->cpu[c].hash = h;
  kv->cpu[c].cached = true;
  map_put(&kv->cpu_map, h, c);
  list_push_tail(&kv->cpu_lru, kv->cpu, c);
  return true;
}

void ic_esim_kv_match(ic_esim_kv_t *kv, ic_esim_seq_t *seq, const uint32_t *tokens, int64_t ntok,
                      int64_t *gpu_hit, int64_t *cpu_hit) {
  int bs = kv->cfg.block_size;
  int64_t max_blocks = ntok > 0 ? (ntok - 1) / bs : 0; /* always compute the last token */
  int64_t g = 0, c = 0;
  uint64_t parent = 0;
  bool has_parent = false;
  while (g < max_blocks) {
    uint64_t h = ic_esim_kv_hash(kv, has_parent, parent, tokens + g * bs);
    int32_t b = map_get(&kv->gpu_map, h);
    if (b < 0) break;
    if (seq_push(seq, b) != 0) break;
    slot_t *s = &kv->gpu[b];
    if (s->listed) list_remove(&kv->free, kv->gpu, b);
    s->ref++;
    seq->hashes[seq->nblocks - 1] = h;
    seq->ncached = seq->nblocks;
    parent = h;
    has_parent = true;
    g++;
  }
  while (kv->cpu && g + c < max_blocks) {
    uint64_t h = ic_esim_kv_hash(kv, has_parent, parent, tokens + (g + c) * bs);
    int32_t cs = map_get(&kv->cpu_map, h);
    if (cs < 0) break;
    int32_t b = take_free_block(kv);
    if (b < 0) break;
    if (seq_push(seq, b) != 0) {
      list_push_tail(&kv->free, kv->gpu, b);
      kv->gpu[b].ref = 0;
      break;
    }
    list_remove(&kv->cpu_lru, kv->cpu, cs);
    list_push_tail(&kv->cpu_lru, kv->cpu, cs);
    parent = h;
    has_parent = true;
    c++;
  }
  *gpu_hit = g * bs;
  *cpu_hit = c * bs;
}

int ic_esim_kv_allocate(ic_esim_kv_t *kv, ic_esim_seq_t *seq, int64_t ntokens) {
  int64_t want = (ntokens + kv->cfg.block_size - 1) / kv->cfg.block_size;
  int64_t need = want - (int64_t)seq->nblocks;
  if (need <= 0) return 0;
  if (need > kv->free.n) return IC_ERANGE;
  for (int64_t i = 0; i < need; i++) {
    int32_t b = take_free_block(kv);
    if (seq_push(seq, b) != 0) {
      kv->gpu[b].ref = 0;
      list_push_tail(&kv->free, kv->gpu, b);
      return IC_ENOMEM;
    }
  }
  return 0;
}

void ic_esim_kv_commit(ic_esim_kv_t *kv, ic_esim_seq_t *seq, const uint32_t *tokens,
                       int64_t computed) {
  int bs = kv->cfg.block_size;
  size_t full = (size_t)(computed / bs);
  if (full > seq->nblocks) full = seq->nblocks;
  size_t first = seq->ncached;
  if (full <= first) return;
  /* GPU: insert each new block; dedup'd ones split the BlockStored runs. */
  size_t run = first;
  for (size_t i = first; i < full; i++) {
    bool hp = i > 0;
    uint64_t h = ic_esim_kv_hash(kv, hp, hp ? seq->hashes[i - 1] : 0, tokens + i * (size_t)bs);
    seq->hashes[i] = h;
    slot_t *s = &kv->gpu[seq->blocks[i]];
    bool fresh = map_get(&kv->gpu_map, h) < 0;
    if (fresh) {
      s->hash = h;
      s->cached = true;
      map_put(&kv->gpu_map, h, seq->blocks[i]);
      kv->gpu_cached++;
    }
    if (!fresh) {
      if (i > run)
        emit(kv, IC_ESIM_EV_STORED, IC_ESIM_GPU, seq->hashes + run, i - run,
             run ? &seq->hashes[run - 1] : NULL, tokens + run * (size_t)bs);
      run = i + 1;
    }
  }
  if (full > run)
    emit(kv, IC_ESIM_EV_STORED, IC_ESIM_GPU, seq->hashes + run, full - run,
         run ? &seq->hashes[run - 1] : NULL, tokens + run * (size_t)bs);
  seq->ncached = full;
  if (!kv->cpu) return;
  /* CPU write-through. Refresh LRU tail-first so a chain's head is the most recent (evicted
   * last), then report the newly stored runs parent-first. */
  bool fresh_cpu[64];
  for (size_t lo = first; lo < full; lo += 64) {
    size_t hi = full - lo > 64 ? lo + 64 : full;
    for (size_t i = hi; i-- > lo;)
      fresh_cpu[i - lo] = cpu_store(kv, seq->hashes[i]);
    size_t r = lo;
    for (size_t i = lo; i <= hi; i++) {
      if (i < hi && fresh_cpu[i - lo]) continue;
      if (i > r)
        emit(kv, IC_ESIM_EV_STORED, IC_ESIM_CPU, seq->hashes + r, i - r,
             r ? &seq->hashes[r - 1] : NULL, tokens + r * (size_t)bs);
      r = i + 1;
    }
  }
}

void ic_esim_kv_release(ic_esim_kv_t *kv, ic_esim_seq_t *seq) {
  for (size_t i = seq->nblocks; i-- > 0;) {
    int32_t b = seq->blocks[i];
    if (--kv->gpu[b].ref == 0) list_push_tail(&kv->free, kv->gpu, b);
  }
  seq->nblocks = seq->ncached = 0;
}

void ic_esim_seq_free(ic_esim_seq_t *seq) {
  free(seq->blocks);
  free(seq->hashes);
  memset(seq, 0, sizeof *seq);
}

bool ic_esim_kv_reset(ic_esim_kv_t *kv) {
  if (kv->free.n != kv->cfg.gpu_blocks) return false;
  for (int64_t i = 0; i < kv->cfg.gpu_blocks; i++)
    kv->gpu[i].cached = false;
  map_clear(&kv->gpu_map);
  kv->gpu_cached = 0;
  if (kv->cpu) {
    map_clear(&kv->cpu_map);
    while (kv->cpu_lru.head >= 0) {
      int32_t c = kv->cpu_lru.head;
      list_remove(&kv->cpu_lru, kv->cpu, c);
      kv->cpu[c].cached = false;
      list_push_tail(&kv->cpu_free, kv->cpu, c);
    }
  }
  emit(kv, IC_ESIM_EV_CLEARED, IC_ESIM_GPU, NULL, 0, NULL, NULL);
  return true;
}

void ic_esim_kv_prefix_match(const ic_esim_kv_t *kv, const uint32_t *tokens, int64_t ntok,
                             int64_t *gpu_tokens, int64_t *cpu_tokens) {
  int bs = kv->cfg.block_size;
  int64_t nb = ntok / bs, g = 0, c = 0;
  uint64_t parent = 0;
  bool hp = false;
  while (g < nb) {
    uint64_t h = ic_esim_kv_hash(kv, hp, parent, tokens + g * bs);
    if (map_get(&kv->gpu_map, h) < 0) break;
    parent = h, hp = true, g++;
  }
  while (kv->cpu && g + c < nb) {
    uint64_t h = ic_esim_kv_hash(kv, hp, parent, tokens + (g + c) * bs);
    if (map_get(&kv->cpu_map, h) < 0) break;
    parent = h, hp = true, c++;
  }
  *gpu_tokens = g * bs;
  *cpu_tokens = c * bs;
}

int64_t ic_esim_kv_free_blocks(const ic_esim_kv_t *kv) { return kv->free.n; }

void ic_esim_kv_stats(const ic_esim_kv_t *kv, ic_esim_kv_stats_t *out) {
  out->gpu_blocks = kv->cfg.gpu_blocks;
  out->gpu_used = kv->cfg.gpu_blocks - kv->free.n;
  out->gpu_cached = kv->gpu_cached;
  out->cpu_blocks = kv->cfg.cpu_blocks;
  out->cpu_used = kv->cpu ? kv->cpu_lru.n : 0;
  out->evictions = kv->evictions;
  out->cpu_evictions = kv->cpu_evictions;
}
