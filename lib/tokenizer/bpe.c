/* The BPE model: initial symbols (bytes or UTF-8 chars, byte fallback, unk fusing) and the merge
 * loop, lowest rank first and leftmost on ties, exactly as the Rust library's Word::merge_all. */
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "internal.h"

static inline uint64_t pair_key(uint32_t a, uint32_t b) { return (((uint64_t)a << 32) | b) + 1; }

static inline size_t pair_slot(uint64_t k, size_t mask) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return (size_t)k & mask;
}

int tk_merges_init(tk_merges *m, size_t expected) {
  size_t cap = 64;
  while (cap < expected * 2)
    cap *= 2;
  m->keys = calloc(cap, sizeof *m->keys);
  m->rank = malloc(cap * sizeof *m->rank);
  m->merged = malloc(cap * sizeof *m->merged);
  m->mask = cap - 1;
  return m->keys && m->rank && m->merged ? 0 : IC_ENOMEM;
}

int tk_merges_put(tk_merges *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t merged) {
  uint64_t k = pair_key(a, b);
  size_t j = pair_slot(k, m->mask);
  while (m->keys[j] && m->keys[j] != k)
    j = (j + 1) & m->mask;
  m->keys[j] = k; /* a repeated pair keeps the last definition, like the Rust HashMap */
  m->rank[j] = rank;
  m->merged[j] = merged;
  return 0;
}

static inline bool merge_get(const tk_merges *m, uint32_t a, uint32_t b, uint32_t *rank,
                             uint32_t *merged) {
  uint64_t k = pair_key(a, b);
  size_t j = pair_slot(k, m->mask);
  for (;;) {
    uint64_t x = m->keys[j];
    if (x == k) {
      *rank = m->rank[j];
      *merged = m->merged[j];
      return true;
    }
    if (!x) return false;
    j = (j + 1) & m->mask;
  }
}

void tk_bpe_free(tk_bpe *b) {
  tk_vocab_free(&b->vocab);
  free(b->merges.keys);
  free(b->merges.rank);
  free(b->merges.merged);
  free(b->prefix);
  free(b->suffix);
  free(b->glue);
}

size_t tk_bpe_split_point(const tk_bpe *b, const char *w, size_t n, size_t from) {
  if (!b->meta_split) return 0;
  for (size_t i = from + 1; i + 3 <= n; i++) {
    if (memcmp(w + i, "\xe2\x96\x81", 3)) continue;
    size_t s = i - 1;
    while (s > from && ((unsigned char)w[s] & 0xC0) == 0x80)
      s--;
    if (i - s == 3 && !memcmp(w + s, "\xe2\x96\x81", 3)) continue; /* inside a meta-space run */
    int32_t cp = tk_utf8_decode(w, s, i);
    bool glued = false;
    for (size_t k = 0; k < b->nglue; k++)
      glued |= b->glue[k] == cp;
    if (!glued) return i;
  }
  return 0;
}

/* Symbols of a word as a doubly linked list over an array (index = position in the word). */
typedef struct {
  uint32_t id;
  int32_t prev, next;
  bool alive;
} sym;

typedef struct {
  uint32_t rank;
  int32_t pos;
  uint32_t merged;
} cand;

/* Min-heap on (rank, pos). */
static inline bool cand_less(cand a, cand b) {
  return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(cand *h, size_t *n, cand c) {
  size_t i = (*n)++;
  while (i) {
    size_t p = (i - 1) / 2;
    if (!cand_less(c, h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
  cand top = h[0], last = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    cand best = last;
    if (l < *n && cand_less(h[l], best)) m = l, best = h[l];
    if (r < *n && cand_less(h[r], best)) m = r;
    if (m == i) break;
    h[i] = h[m];
    i = m;
  }
  if (*n) h[i] = last;
  return top;
}

/* Small words: repeated scan for the lowest-rank pair (leftmost on ties), same result as the
 * heap; pair ranks are kept in an array so each merge looks up only its two new pairs. */
static void merge_scan(const tk_merges *mg, uint32_t *s, size_t *pn) {
  size_t n = *pn;
  uint32_t rk[32], nw[32];
  for (size_t i = 0; i + 1 < n; i++)
    if (!merge_get(mg, s[i], s[i + 1], &rk[i], &nw[i])) rk[i] = UINT32_MAX;
  while (n > 1) {
    uint32_t best = UINT32_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < n; i++)
      if (rk[i] < best) best = rk[i], at = i;
    if (best == UINT32_MAX) break;
    s[at] = nw[at];
    memmove(s + at + 1, s + at + 2, (n - at - 2) * sizeof *s);
    memmove(rk + at + 1, rk + at + 2, (n - at - 2) * sizeof *rk);
    memmove(nw + at + 1, nw + at + 2, (n - at - 2) * sizeof *nw);
    n--;
    if (at > 0 && !merge_get(mg, s[at - 1], s[at], &rk[at - 1], &nw[at - 1]))
      rk[at - 1] = UINT32_MAX;
    if (at + 1 < n && !merge_get(mg, s[at], s[at + 1], &rk[at], &nw[at])) rk[at] = UINT32_MAX;
  }
  *pn = n;
}

static int merge_heap(const tk_merges *mg, uint32_t *s, size_t *pn) {
  size_t n = *pn;
  sym *y = malloc(n * sizeof *y);
  cand *h = malloc(n * 2 * sizeof *h);
  if (!y || !h) {
    free(y);
    free(h);
    return IC_ENOMEM;
  }
  size_t hn = 0, hcap = n * 2;
  for (size_t i = 0; i < n; i++)
    y[i] = (sym){s[i], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, true};
  uint32_t r, nw;
  for (size_t i = 0; i + 1 < n; i++)
    if (merge_get(mg, s[i], s[i + 1], &r, &nw)) heap_push(h, &hn, (cand){r, (int32_t)i, nw});
  while (hn) {
    cand c = heap_pop(h, &hn);
    sym *a = &y[c.pos];
    if (!a->alive || a->next < 0) continue;
    sym *b = &y[a->next];
    if (!merge_get(mg, a->id, b->id, &r, &nw) || nw != c.merged) continue; /* stale entry */
    a->id = nw;
    b->alive = false;
    a->next = b->next;
    if (b->next >= 0) y[b->next].prev = c.pos;
    /* Every merge kills one symbol and pushes at most two candidates: 2n slots suffice, but
     * grow defensively rather than trust arithmetic. */
    if (hn + 2 > hcap) {
      cand *g = realloc(h, hcap * 2 * sizeof *g);
      if (!g) {
        free(y);
        free(h);
        return IC_ENOMEM;
      }
      h = g;
      hcap *= 2;
    }
    if (a->prev >= 0 && merge_get(mg, y[a->prev].id, a->id, &r, &nw))
      heap_push(h, &hn, (cand){r, a->prev, nw});
    if (a->next >= 0 && merge_get(mg, a->id, y[a->next].id, &r, &nw))
      heap_push(h, &hn, (cand){r, c.pos, nw});
  }
  size_t k = 0;
  for (int32_t i = 0; i >= 0; i = y[i].next)
    s[k++] = y[i].id;
  *pn = k;
  free(y);
  free(h);
  return 0;
}

/* Looks up one unit with the optional continuing-subword prefix / end-of-word suffix. */
static bool unit_id(const tk_bpe *b, const char *u, size_t ulen, bool first, bool last,
                    uint32_t *id, char *scratch, size_t scratch_cap) {
  if ((!b->prefix || first) && (!b->suffix || !last)) return tk_vocab_get(&b->vocab, u, ulen, id);
  size_t pl = b->prefix && !first ? strlen(b->prefix) : 0,
         sl = b->suffix && last ? strlen(b->suffix) : 0;
  if (pl + ulen + sl > scratch_cap) return false;
  memcpy(scratch, b->prefix ? b->prefix : "", pl);
  memcpy(scratch + pl, u, ulen);
  memcpy(scratch + pl + ulen, b->suffix ? b->suffix : "", sl);
  return tk_vocab_get(&b->vocab, scratch, pl + ulen + sl, id);
}

int tk_bpe_word(const tk_bpe *b, const char *w, size_t n, ic_tok_ids *ids) {
  uint32_t id;
  if (!n) return 0;
  if (b->ignore_merges && tk_vocab_get(&b->vocab, w, n, &id)) return tk_ids_push(ids, id);
  uint32_t stack[64], *s = n <= 64 ? stack : malloc(n * sizeof *s);
  if (!s) return IC_ENOMEM;
  size_t ns = 0;
  bool have_unk = false;
  char scratch[128];
  for (size_t i = 0; i < n;) {
    size_t ul = b->byte_level ? 1 : tk_utf8_len((unsigned char)w[i]);
    if (ul > n - i) ul = n - i;
    bool first = i == 0, last = i + ul == n;
    if (unit_id(b, w + i, ul, first, last, &id, scratch, sizeof scratch)) {
      if (have_unk) s[ns++] = b->unk_id, have_unk = false;
      s[ns++] = id;
    } else {
      bool done = false;
      if (b->byte_fallback) {
        done = true;
        for (size_t k = 0; k < ul; k++)
          if (b->byte_ids[(unsigned char)w[i + k]] == UINT32_MAX) done = false;
        /* Like the Rust model, byte-fallback tokens do not flush a pending unk first. */
        if (done)
          for (size_t k = 0; k < ul; k++)
            s[ns++] = b->byte_ids[(unsigned char)w[i + k]];
      }
      if (!done && b->has_unk) {
        if (have_unk && b->fuse_unk) {
          /* fused into the pending unk */
        } else {
          if (have_unk) s[ns++] = b->unk_id;
          have_unk = true;
        }
      }
    }
    i += ul;
  }
  if (have_unk) s[ns++] = b->unk_id;
  int rc = 0;
  if (ns <= 32)
    merge_scan(&b->merges, s, &ns);
  else
    rc = merge_heap(&b->merges, s, &ns);
  for (size_t i = 0; !rc && i < ns; i++)
    rc = tk_ids_push(ids, s[i]);
  if (s != stack) free(s);
  return rc;
}
