/* Bounded LRU cache of recent prompt encodings with checkpoints at tokenizer split points, so a
 * prompt sharing a long prefix with a recent one re-encodes only what follows the last shared
 * checkpoint. Exact: split points are where encode(A ++ B) == encode(A) ++ encode(B). */
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "ic/err.h"
#include "prompt_internal.h"

#define SLOTS 65536

typedef struct {
  size_t off, nids;
} ckpt;

struct pc_entry {
  struct pc_entry *prev, *next; /* LRU list, most recent first */
  uint64_t seed;                /* model */
  char *text;
  size_t len;
  uint32_t *ids;
  size_t nids;
  ckpt *ck;
  size_t nck;
};

typedef struct {
  uint64_t h;
  pc_entry *e;
  size_t ck; /* index into e->ck */
} slot;

int pc_init(prefix_cache *c, size_t budget, size_t stride) {
  memset(c, 0, sizeof *c);
  c->budget = budget;
  c->stride = stride;
  c->slots = calloc(SLOTS, sizeof(slot));
  if (!c->slots) return IC_ENOMEM;
  return pthread_mutex_init(&c->mu, NULL) ? IC_ENOMEM : 0;
}

static size_t entry_bytes(const pc_entry *e) {
  return sizeof *e + e->len + e->nids * sizeof *e->ids + e->nck * sizeof *e->ck;
}

static void entry_free(pc_entry *e) {
  free(e->text);
  free(e->ids);
  free(e->ck);
  free(e);
}

static void unlink_entry(prefix_cache *c, pc_entry *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    c->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    c->tail = e->prev;
  e->prev = e->next = NULL;
}

static void push_front(prefix_cache *c, pc_entry *e) {
  e->prev = NULL;
  e->next = c->head;
  if (c->head) c->head->prev = e;
  c->head = e;
  if (!c->tail) c->tail = e;
}

/* Hash of the model seed and text[0..off): the rolling state makes every checkpoint O(step). */
static uint64_t ck_hash(XXH3_state_t *st, const char *text, size_t *done, size_t off) {
  XXH3_64bits_update(st, text + *done, off - *done);
  *done = off;
  uint64_t h = XXH3_64bits_digest(st);
  return h ? h : 1;
}

static void evict(prefix_cache *c, pc_entry *e) {
  slot *s = c->slots;
  XXH3_state_t st;
  XXH3_INITSTATE(&st); /* a stack state must be marked fresh, or reset may keep a stale secret */
  XXH3_64bits_reset_withSeed(&st, e->seed);
  size_t done = 0;
  for (size_t i = 0; i < e->nck; i++) {
    uint64_t h = ck_hash(&st, e->text, &done, e->ck[i].off);
    slot *x = &s[h & (SLOTS - 1)];
    if (x->e == e) memset(x, 0, sizeof *x);
  }
  unlink_entry(c, e);
  c->used -= entry_bytes(e);
  entry_free(e);
}

void pc_free(prefix_cache *c) {
  while (c->head) {
    pc_entry *e = c->head;
    unlink_entry(c, e);
    entry_free(e);
  }
  free(c->slots);
  pthread_mutex_destroy(&c->mu);
}

/* Next checkpoint after `from`: the first split point at least `stride` bytes further on. */
static size_t next_ckpt(const prefix_cache *c, const ic_tokenizer *t, const char *text, size_t len,
                        size_t from) {
  return ic_tokenizer_split_point(t, text, len, from + c->stride - 1);
}

int pc_encode(prefix_cache *c, const ic_tokenizer *t, uint64_t seed, const char *text, size_t len,
              size_t max_ids, ic_tok_ids *ids, bool *hit, size_t *reused) {
  *hit = false;
  *reused = 0;
  ids->n = 0;
  /* 1. Longest cached checkpoint that is a prefix of text. */
  size_t start = 0, start_ids = 0;
  ckpt *ck = NULL;
  size_t nck = 0, ckcap = 0;
  XXH3_state_t st;
  XXH3_INITSTATE(&st); /* a stack state must be marked fresh, or reset may keep a stale secret */
  XXH3_64bits_reset_withSeed(&st, seed);
  size_t done = 0;
  pthread_mutex_lock(&c->mu);
  pc_entry *best = NULL;
  for (size_t b = next_ckpt(c, t, text, len, 0); b; b = next_ckpt(c, t, text, len, b)) {
    uint64_t h = ck_hash(&st, text, &done, b);
    slot *x = &((slot *)c->slots)[h & (SLOTS - 1)];
    pc_entry *e = x->e;
    if (!e || x->h != h || e->seed != seed || e->ck[x->ck].off != b || e->len < b)
      break; /* no cached text shares text[0..b), so none shares a longer prefix */
    /* Verify the bytes (the hash only finds candidates); the same entry as the previous
     * checkpoint needs only the new stretch compared. */
    size_t from = e == best ? start : 0;
    if (memcmp(e->text + from, text + from, b - from)) break;
    best = e;
    start = b;
    start_ids = e->ck[x->ck].nids;
  }
  if (best) {
    if (start_ids > ids->cap) {
      uint32_t *v = realloc(ids->v, start_ids * sizeof *v);
      if (!v) {
        pthread_mutex_unlock(&c->mu);
        return IC_ENOMEM;
      }
      ids->v = v;
      ids->cap = start_ids;
    }
    memcpy(ids->v, best->ids, start_ids * sizeof *ids->v);
    ids->n = start_ids;
    for (size_t i = 0; i < best->nck && best->ck[i].off <= start; i++) {
      if (nck == ckcap) {
        ckcap = ckcap ? ckcap * 2 : 16;
        ckpt *g = realloc(ck, ckcap * sizeof *g);
        if (!g) {
          pthread_mutex_unlock(&c->mu);
          free(ck);
          return IC_ENOMEM;
        }
        ck = g;
      }
      ck[nck++] = best->ck[i];
    }
    unlink_entry(c, best);
    push_front(c, best);
    *hit = true;
    *reused = start_ids;
  }
  pthread_mutex_unlock(&c->mu);

  /* 2. Encode the rest segment by segment, recording the id count at each checkpoint. */
  ic_tok_ids seg = {0};
  int rc = 0;
  for (size_t from = start; !rc && from < len;) {
    size_t b = next_ckpt(c, t, text, len, from);
    size_t to = b ? b : len;
    rc = ic_tokenizer_encode(t, text + from, to - from, false, 0, &seg);
    if (rc) break;
    if (max_ids && ids->n + seg.n > max_ids) {
      rc = IC_ERANGE;
      break;
    }
    if (ids->n + seg.n > ids->cap) {
      size_t cap = ids->cap ? ids->cap : 256;
      while (cap < ids->n + seg.n)
        cap *= 2;
      uint32_t *v = realloc(ids->v, cap * sizeof *v);
      if (!v) {
        rc = IC_ENOMEM;
        break;
      }
      ids->v = v;
      ids->cap = cap;
    }
    memcpy(ids->v + ids->n, seg.v, seg.n * sizeof *seg.v);
    ids->n += seg.n;
    if (b) {
      if (nck == ckcap) {
        ckcap = ckcap ? ckcap * 2 : 16;
        ckpt *g = realloc(ck, ckcap * sizeof *g);
        if (!g) {
          rc = IC_ENOMEM;
          break;
        }
        ck = g;
      }
      ck[nck++] = (ckpt){b, ids->n};
    }
    from = to;
  }
  ic_tok_ids_free(&seg);
  if (rc || nck == 0 || c->budget == 0) {
    free(ck);
    return rc;
  }

  /* 3. Remember this text (its own entry: the next prompt may share more of it). */
  pc_entry *e = calloc(1, sizeof *e);
  if (e) {
    e->seed = seed;
    e->text = malloc(len);
    e->ids = malloc((ids->n ? ids->n : 1) * sizeof *e->ids);
    e->ck = ck;
    e->nck = nck;
    ck = NULL;
    e->len = len;
    e->nids = ids->n;
  }
  if (!e || !e->text || !e->ids) {
    if (e) entry_free(e);
    free(ck);
    return 0; /* caching is best effort */
  }
  memcpy(e->text, text, len);
  memcpy(e->ids, ids->v, ids->n * sizeof *ids->v);
  if (entry_bytes(e) > c->budget) {
    entry_free(e);
    return 0;
  }
  pthread_mutex_lock(&c->mu);
  while (c->used + entry_bytes(e) > c->budget && c->tail)
    evict(c, c->tail);
  push_front(c, e);
  c->used += entry_bytes(e);
  XXH3_64bits_reset_withSeed(&st, seed);
  done = 0;
  for (size_t i = 0; i < e->nck; i++) {
    uint64_t h = ck_hash(&st, e->text, &done, e->ck[i].off);
    slot *x = &((slot *)c->slots)[h & (SLOTS - 1)];
    *x = (slot){h, e, i}; /* the newest text owns a shared checkpoint */
  }
  pthread_mutex_unlock(&c->mu);
  return 0;
}
