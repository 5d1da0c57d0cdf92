/* kvevent-subscriber op queue: ordered, byte-bounded hand-off from the engine reader to the RPC
 * sender that survives server outages without silent loss (see sub.h for the drop policy).
 * A ring of entries; dropped/superseded entries become dead in place and are reclaimed when
 * the sender commits past them or when the ring compacts instead of growing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/err.h"
#include "sub.h"

static inline qent_t *at(subq_t *q, size_t i) { return &q->v[(q->head + i) % q->cap]; }
static inline bool is_add(int k) { return k == IC_KV_OP_ADD || k == IC_KV_OP_DOWNGRADE; }

int subq_init(subq_t *q, size_t max_bytes) {
  memset(q, 0, sizeof(*q));
  q->max_ops = max_bytes / sizeof(qent_t);
  if (q->max_ops < 64) q->max_ops = 64;
  q->cap = 1024;
  q->v = calloc(q->cap, sizeof(qent_t));
  if (!q->v) return IC_ENOMEM;
  pthread_mutex_init(&q->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q->cv, &ca);
  pthread_cond_init(&q->room, &ca);
  pthread_condattr_destroy(&ca);
  return 0;
}

void subq_destroy(subq_t *q) {
  free(q->v);
  q->v = NULL;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  pthread_cond_destroy(&q->room);
}

bool subq_wait_room(subq_t *q, size_t n, int64_t timeout_us) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  int64_t end = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec + timeout_us * 1000;
  struct timespec abs = {(time_t)(end / 1000000000LL), (long)(end % 1000000000LL)};
  pthread_mutex_lock(&q->mu);
  while (q->live + n > q->max_ops && !q->stop)
    if (pthread_cond_timedwait(&q->room, &q->mu, &abs) == ETIMEDOUT) break;
  bool room = q->live + n <= q->max_ops;
  pthread_mutex_unlock(&q->mu);
  return room;
}

size_t subq_bytes(const subq_t *q) { return q->live * sizeof(qent_t); }

static void kill(subq_t *q, qent_t *e) {
  e->live = false;
  q->live--;
  if (is_add(e->op.kind))
    q->live_adds--;
  else
    q->live_urgent--;
  if (e->op.kind == IC_KV_OP_EVICT) q->live_evicts--;
}

/* Makes room for one more entry: compacts when at least a quarter is dead, else doubles. */
static int ensure_room(subq_t *q) {
  if (q->n < q->cap) return 0;
  size_t ncap = (q->n - q->live) >= q->n / 4 ? q->cap : q->cap * 2;
  qent_t *nv = calloc(ncap, sizeof(qent_t));
  if (!nv) return IC_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < q->n; i++) {
    qent_t *e = at(q, i);
    if (e->live) nv[k++] = *e;
  }
  free(q->v);
  q->v = nv;
  q->cap = ncap;
  q->head = 0;
  q->n = k;
  return 0;
}

/* Drops one entry to honour the bound: the oldest add, else the oldest non-clear, else the
 * oldest entry. Returns its kind. */
static int drop_one(subq_t *q) {
  qent_t *victim = NULL;
  for (size_t i = 0; i < q->n && !victim; i++) {
    qent_t *e = at(q, i);
    if (e->live && is_add(e->op.kind)) victim = e;
  }
  for (size_t i = 0; i < q->n && !victim; i++) {
    qent_t *e = at(q, i);
    if (e->live && e->op.kind != IC_KV_OP_CLEAR) victim = e;
  }
  for (size_t i = 0; i < q->n && !victim; i++) {
    qent_t *e = at(q, i);
    if (e->live) victim = e;
  }
  if (!victim) return 0;
  int kind = victim->op.kind;
  kill(q, victim);
  q->dropped[kind]++;
  return kind;
}

size_t subq_push(subq_t *q, const ic_kv_op_t *ops, size_t nops, const char *const *replica_of_ep) {
  size_t dropped = 0;
  bool wake = false;
  pthread_mutex_lock(&q->mu);
  for (size_t j = 0; j < nops; j++) {
    const ic_kv_op_t *op = &ops[j];
    if (op->kind == IC_KV_OP_CLEAR) {
      /* ALL_CLEARED wipes the replica server-side: anything queued for it before is moot. */
      const char *r = replica_of_ep[op->ep];
      for (size_t i = 0; i < q->n; i++) {
        qent_t *e = at(q, i);
        /* a full-state marker stays: it reports what was sent, which the clear does not undo */
        if (e->live && e->op.kind != SUB_OP_SYNCED && replica_of_ep[e->op.ep] == r) kill(q, e);
      }
    }
    if (ensure_room(q)) {
      q->dropped[op->kind]++;
      dropped++;
      continue;
    }
    qent_t *e = at(q, q->n);
    e->op = *op;
    e->qseq = ++q->next_qseq;
    e->live = true;
    q->n++;
    q->live++;
    if (is_add(op->kind))
      q->live_adds++;
    else {
      q->live_urgent++;
      if (op->kind != IC_KV_OP_EVICT || !q->evicts_lazy) wake = true;
    }
    if (op->kind == IC_KV_OP_EVICT) q->live_evicts++;
    while (q->live > q->max_ops) {
      if (!drop_one(q)) break;
      dropped++;
    }
  }
  if (wake || q->live_adds >= SUB_MAX_ENTRIES_PER_CSU) pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return dropped;
}

/* Whether e lies past the queue's cut (see subq_t.cut_ns). */
static bool past_cut(const subq_t *q, const qent_t *e) {
  return q->cut_ns > 0 && e->op.recv_ns >= q->cut_ns;
}

size_t subq_peek_group(subq_t *q, ic_kv_op_t *out, size_t max, uint64_t *last_qseq,
                       const char *const *replica_of_ep) {
  while (q->n && !at(q, 0)->live) { /* reclaim dead entries at the head */
    q->head = (q->head + 1) % q->cap;
    q->n--;
  }
  if (!q->n || !max || past_cut(q, at(q, 0))) return 0;
  qent_t *first = at(q, 0);
  out[0] = first->op;
  *last_qseq = first->qseq;
  int kind = first->op.kind;
  if (kind == IC_KV_OP_CLEAR || kind == SUB_OP_SYNCED) return 1;
  /* Evictions are independent of each other: a run of them is sent concurrently. */
  if (kind == IC_KV_OP_EVICT && max > SUB_MAX_EVICTS_IN_FLIGHT) max = SUB_MAX_EVICTS_IN_FLIGHT;
  const char *r = replica_of_ep[first->op.ep];
  size_t k = 1;
  for (size_t i = 1; i < q->n && k < max; i++) {
    qent_t *e = at(q, i);
    if (!e->live) continue;
    if (e->op.kind != kind || replica_of_ep[e->op.ep] != r || past_cut(q, e)) break;
    /* A downgrade keeps its eviction time: group only equal timestamps. */
    if (kind == IC_KV_OP_DOWNGRADE && e->op.ts_us != first->op.ts_us) break;
    out[k++] = e->op;
    *last_qseq = e->qseq;
  }
  return k;
}

/* Small open-addressing set of the evicted keys of one run (max ops). */
static bool key_seen(const uint64_t *set, size_t cap, uint64_t k) {
  for (size_t i = (size_t)(k * 0x9E3779B97F4A7C15ULL) & (cap - 1); set[i]; i = (i + 1) & (cap - 1))
    if (set[i] == k) return true;
  return false;
}

static void key_add(uint64_t *set, size_t cap, uint64_t k) {
  size_t i = (size_t)(k * 0x9E3779B97F4A7C15ULL) & (cap - 1);
  while (set[i] && set[i] != k)
    i = (i + 1) & (cap - 1);
  set[i] = k;
}

size_t subq_peek_mixed(subq_t *q, ic_kv_op_t *out, size_t max, uint64_t *last_qseq,
                       const char *const *replica_of_ep) {
  while (q->n && !at(q, 0)->live) {
    q->head = (q->head + 1) % q->cap;
    q->n--;
  }
  if (!q->n || !max || past_cut(q, at(q, 0))) return 0;
  qent_t *first = at(q, 0);
  int k0 = first->op.kind;
  if (k0 != IC_KV_OP_ADD && k0 != IC_KV_OP_EVICT) return 0;
  size_t cap = 16;
  while (cap < 2 * max)
    cap <<= 1;
  uint64_t *evicted = calloc(cap, sizeof(uint64_t)); /* keys | 1: 0 marks an empty slot */
  if (!evicted) return 0;
  const char *r = replica_of_ep[first->op.ep];
  size_t k = 0;
  for (size_t i = 0; i < q->n && k < max; i++) {
    qent_t *e = at(q, i);
    if (!e->live) continue;
    int kind = e->op.kind;
    if ((kind != IC_KV_OP_ADD && kind != IC_KV_OP_EVICT) || replica_of_ep[e->op.ep] != r ||
        past_cut(q, e))
      break;
    uint64_t key = e->op.prefix_hash | 1, key2 = e->op.prefix_hash;
    /* the low bit is folded; keep the exact hash for the rare pair that differs only there */
    if (kind == IC_KV_OP_ADD && key_seen(evicted, cap, key)) {
      bool clash = false;
      for (size_t j = 0; j < k && !clash; j++)
        clash = out[j].kind == IC_KV_OP_EVICT && out[j].prefix_hash == key2;
      if (clash) break; /* re-stored after its eviction: it must follow that eviction */
    }
    if (kind == IC_KV_OP_EVICT) key_add(evicted, cap, key);
    out[k++] = e->op;
    *last_qseq = e->qseq;
  }
  free(evicted);
  return k;
}

void subq_commit(subq_t *q, uint64_t last) {
  while (q->n) {
    qent_t *e = at(q, 0);
    if (e->qseq > last) break;
    if (e->live) kill(q, e);
    q->head = (q->head + 1) % q->cap;
    q->n--;
  }
  pthread_cond_broadcast(&q->room);
}
