/* lib/replay routing decisions that need no I/O: mode names, the event-less router memory of
 * `approximate` (per-replica LRU sets of block hashes) and the load / match pickers. */
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/replay.h"

static const char *const MODE_NAMES[IC_REPLAY_NMODES] = {
    "random", "round-robin", "least-loaded", "approximate", "lookup", "precise"};

const char *ic_replay_mode_name(ic_replay_mode_t m) {
  return (unsigned)m < IC_REPLAY_NMODES ? MODE_NAMES[m] : "unknown";
}

int ic_replay_mode_parse(const char *s, ic_replay_mode_t *out) {
  for (int i = 0; i < IC_REPLAY_NMODES; i++)
    if (!strcmp(s, MODE_NAMES[i])) {
      *out = (ic_replay_mode_t)i;
      return 0;
    }
  return IC_EINVAL;
}

int ic_replay_pick_least(const int64_t *load, int n, int start) {
  int best = -1;
  for (int k = 0; k < n; k++) {
    int i = (start + k) % n;
    if (best < 0 || load[i] < load[best]) best = i;
  }
  return best;
}

int ic_replay_pick_best_match(const int64_t *match, const int64_t *load, int n, int start) {
  int best = -1;
  for (int k = 0; k < n; k++) {
    int i = (start + k) % n;
    if (match[i] <= 0) continue;
    if (best < 0 || match[i] > match[best] || (match[i] == match[best] && load[i] < load[best]))
      best = i;
  }
  return best;
}

/* ------------------------------ approximate router memory ------------------------------ *
 * One chained hash table per replica maps a block hash to a node; nodes form an LRU list so
 * the memory forgets what the replica has most likely evicted (capacity = its KV size). */

typedef struct node {
  uint64_t hash;
  int32_t next_in_bucket, prev, next; /* -1 = none */
} node_t;

typedef struct replica_mem {
  node_t *nodes;
  int32_t *buckets;
  size_t nbuckets, used;
  int32_t head, tail; /* head = most recent */
} replica_mem_t;

struct ic_replay_approx {
  int n;
  size_t cap;
  replica_mem_t *r;
};

ic_replay_approx_t *ic_replay_approx_new(int nreplicas, size_t capacity_blocks) {
  if (nreplicas <= 0 || capacity_blocks == 0 || capacity_blocks > (1u << 30)) return NULL;
  ic_replay_approx_t *a = calloc(1, sizeof(*a));
  if (!a) return NULL;
  a->n = nreplicas;
  a->cap = capacity_blocks;
  a->r = calloc((size_t)nreplicas, sizeof(*a->r));
  if (!a->r) {
    free(a);
    return NULL;
  }
  size_t nb = 64;
  while (nb < capacity_blocks)
    nb *= 2;
  for (int i = 0; i < nreplicas; i++) {
    replica_mem_t *m = &a->r[i];
    m->nodes = malloc(capacity_blocks * sizeof(*m->nodes));
    m->buckets = malloc(nb * sizeof(*m->buckets));
    if (!m->nodes || !m->buckets) {
      ic_replay_approx_free(a);
      return NULL;
    }
    m->nbuckets = nb;
    for (size_t b = 0; b < nb; b++)
      m->buckets[b] = -1;
    m->head = m->tail = -1;
  }
  return a;
}

void ic_replay_approx_free(ic_replay_approx_t *a) {
  if (!a) return;
  for (int i = 0; i < a->n; i++) {
    free(a->r[i].nodes);
    free(a->r[i].buckets);
  }
  free(a->r);
  free(a);
}

static size_t bucket_of(const replica_mem_t *m, uint64_t h) {
  return (size_t)((h * 0x9e3779b97f4a7c15ULL) >> 20) & (m->nbuckets - 1);
}

static int32_t find(const replica_mem_t *m, uint64_t h) {
  for (int32_t i = m->buckets[bucket_of(m, h)]; i >= 0; i = m->nodes[i].next_in_bucket)
    if (m->nodes[i].hash == h) return i;
  return -1;
}

static void unlink_lru(replica_mem_t *m, int32_t i) {
  node_t *x = &m->nodes[i];
  if (x->prev >= 0)
    m->nodes[x->prev].next = x->next;
  else
    m->head = x->next;
  if (x->next >= 0)
    m->nodes[x->next].prev = x->prev;
  else
    m->tail = x->prev;
}

static void push_front(replica_mem_t *m, int32_t i) {
  node_t *x = &m->nodes[i];
  x->prev = -1;
  x->next = m->head;
  if (m->head >= 0) m->nodes[m->head].prev = i;
  m->head = i;
  if (m->tail < 0) m->tail = i;
}

static void unlink_bucket(replica_mem_t *m, int32_t i) {
  int32_t *pp = &m->buckets[bucket_of(m, m->nodes[i].hash)];
  while (*pp != i)
    pp = &m->nodes[*pp].next_in_bucket;
  *pp = m->nodes[i].next_in_bucket;
}

size_t ic_replay_approx_match(const ic_replay_approx_t *a, int r, const uint64_t *chain, size_t n) {
  if (!a || r < 0 || r >= a->n) return 0;
  size_t k = 0;
  while (k < n && find(&a->r[r], chain[k]) >= 0)
    k++;
  return k;
}

int ic_replay_approx_record(ic_replay_approx_t *a, int r, const uint64_t *chain, size_t n) {
  if (!a || r < 0 || r >= a->n) return IC_EINVAL;
  replica_mem_t *m = &a->r[r];
  /* Insert from the last block backwards so the prefix ends up most recent: like an engine's
   * LRU, the tail of a long prompt is forgotten before its head. */
  for (size_t k = n; k-- > 0;) {
    int32_t i = find(m, chain[k]);
    if (i >= 0) {
      unlink_lru(m, i);
      push_front(m, i);
      continue;
    }
    if (m->used < a->cap) {
      i = (int32_t)m->used++;
    } else { /* full: recycle the least recently used */
      i = m->tail;
      unlink_lru(m, i);
      unlink_bucket(m, i);
    }
    m->nodes[i].hash = chain[k];
    size_t b = bucket_of(m, chain[k]);
    m->nodes[i].next_in_bucket = m->buckets[b];
    m->buckets[b] = i;
    push_front(m, i);
  }
  return 0;
}
