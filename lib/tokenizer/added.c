/* Added and special tokens: a byte trie with leftmost-longest matching (the Rust library's
 * Aho-Corasick MatchKind::LeftmostLongest) and its lstrip / rstrip / single_word rules. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "ic/err.h"
#include "internal.h"

/* Edges live in one open-addressing table keyed by (node, byte): compact for thousands of tokens.
 */
static inline uint64_t edge_key(int32_t node, unsigned char b) {
  return ((uint64_t)node << 8 | b) + 1;
}

static inline size_t edge_slot(uint64_t k, size_t mask) {
  k *= 0x9E3779B97F4A7C15ULL;
  return (size_t)(k >> 20) & mask;
}

typedef struct {
  uint64_t *keys;
  int32_t *child;
  size_t mask, count;
} edges;

static edges *trie_edges(const tk_trie *tr) { return (edges *)tr->edges; }

static int edges_grow(edges *e) {
  size_t cap = e->mask ? (e->mask + 1) * 2 : 1024;
  uint64_t *k = calloc(cap, sizeof *k);
  int32_t *c = malloc(cap * sizeof *c);
  if (!k || !c) {
    free(k);
    free(c);
    return IC_ENOMEM;
  }
  for (size_t i = 0; e->mask && i <= e->mask; i++) {
    if (!e->keys[i]) continue;
    size_t j = edge_slot(e->keys[i], cap - 1);
    while (k[j])
      j = (j + 1) & (cap - 1);
    k[j] = e->keys[i];
    c[j] = e->child[i];
  }
  free(e->keys);
  free(e->child);
  e->keys = k;
  e->child = c;
  e->mask = cap - 1;
  return 0;
}

static int32_t edge_get(const edges *e, int32_t node, unsigned char b) {
  if (!e || !e->mask) return 0;
  uint64_t k = edge_key(node, b);
  for (size_t j = edge_slot(k, e->mask);; j = (j + 1) & e->mask) {
    if (e->keys[j] == k) return e->child[j];
    if (!e->keys[j]) return 0;
  }
}

int tk_trie_add(tk_trie *tr, const char *s, size_t n, int32_t token) {
  if (!n) return 0;
  if (!tr->edges) {
    tr->edges = calloc(1, sizeof(edges));
    if (!tr->edges) return IC_ENOMEM;
  }
  edges *e = trie_edges(tr);
  if (!tr->token) {
    tr->token = malloc(64 * sizeof *tr->token);
    if (!tr->token) return IC_ENOMEM;
    tr->cap = 64;
    tr->nnodes = 1;
    tr->token[0] = -1;
  }
  int32_t node = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char b = (unsigned char)s[i];
    int32_t c = edge_get(e, node, b);
    if (!c) {
      if ((e->count + 1) * 2 > e->mask + 1 && edges_grow(e)) return IC_ENOMEM;
      if (tr->nnodes == tr->cap) {
        int32_t *t = realloc(tr->token, tr->cap * 2 * sizeof *t);
        if (!t) return IC_ENOMEM;
        tr->token = t;
        tr->cap *= 2;
      }
      c = (int32_t)tr->nnodes++;
      tr->token[c] = -1;
      uint64_t k = edge_key(node, b);
      size_t j = edge_slot(k, e->mask);
      while (e->keys[j])
        j = (j + 1) & e->mask;
      e->keys[j] = k;
      e->child[j] = c;
      e->count++;
    }
    node = c;
  }
  if (tr->token[node] < 0) tr->token[node] = token; /* the first definition of a content wins */
  tr->first[(unsigned char)s[0]] = true;
  return 0;
}

void tk_trie_free(tk_trie *tr) {
  edges *e = trie_edges(tr);
  if (e) {
    free(e->keys);
    free(e->child);
    free(e);
  }
  free(tr->token);
  memset(tr, 0, sizeof *tr);
}

/* Longest token starting at t[i]; returns its length (0: none) and index. */
static size_t longest_at(const tk_trie *tr, const char *t, size_t n, size_t i, int32_t *tok) {
  const edges *e = trie_edges(tr);
  int32_t node = 0;
  size_t best = 0;
  for (size_t k = i; k < n; k++) {
    node = edge_get(e, node, (unsigned char)t[k]);
    if (!node) break;
    if (tr->token[node] >= 0) best = k + 1 - i, *tok = tr->token[node];
  }
  return best;
}

static int32_t char_before(const char *t, size_t i) {
  if (!i) return -1;
  size_t s = i - 1;
  while (s > 0 && ((unsigned char)t[s] & 0xC0) == 0x80)
    s--;
  utf8proc_int32_t c;
  return utf8proc_iterate((const utf8proc_uint8_t *)t + s, (utf8proc_ssize_t)(i - s), &c) > 0 ? c
                                                                                              : -1;
}

static int32_t char_at(const char *t, size_t n, size_t i, size_t *len) {
  utf8proc_int32_t c;
  utf8proc_ssize_t k =
      utf8proc_iterate((const utf8proc_uint8_t *)t + i, (utf8proc_ssize_t)(n - i), &c);
  *len = k > 0 ? (size_t)k : 1;
  return k > 0 ? c : -1;
}

/* A "word character" in the regex crate's sense (letters, marks, decimal digits, connectors). */
static bool is_word_char(int32_t c) {
  if (c < 0) return false;
  if (c == '_') return true;
  switch (utf8proc_category(c)) {
  case UTF8PROC_CATEGORY_LU:
  case UTF8PROC_CATEGORY_LL:
  case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO:
  case UTF8PROC_CATEGORY_MN:
  case UTF8PROC_CATEGORY_MC:
  case UTF8PROC_CATEGORY_ME:
  case UTF8PROC_CATEGORY_ND:
  case UTF8PROC_CATEGORY_PC: return true;
  default: return false;
  }
}

static int runs_push(tk_run **runs, size_t *n, size_t *cap, size_t off, size_t len, int32_t tok) {
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 16;
    tk_run *v = realloc(*runs, c * sizeof *v);
    if (!v) return IC_ENOMEM;
    *runs = v;
    *cap = c;
  }
  (*runs)[(*n)++] = (tk_run){off, len, tok};
  return 0;
}

int tk_added_split(const tk_trie *tr, const tk_added *added, const char *t, size_t n, size_t base,
                   tk_run **runs, size_t *nruns, size_t *cap) {
  size_t start_offset = 0;
  for (size_t i = 0; tr->token && i < n;) {
    if (!tr->first[(unsigned char)t[i]]) {
      i++;
      continue;
    }
    int32_t tok = -1;
    size_t mlen = longest_at(tr, t, n, i, &tok);
    if (!mlen) {
      i++;
      continue;
    }
    size_t start = i, stop = i + mlen;
    i = stop; /* the matcher resumes after the raw match, whatever the strip rules do */
    const tk_added *a = &added[tok];
    if (a->single_word) {
      size_t cl;
      bool start_space = start == 0 || !is_word_char(char_before(t, start));
      bool stop_space = stop == n || !is_word_char(char_at(t, n, stop, &cl));
      if (!start_space || !stop_space) continue;
    }
    if (a->lstrip) {
      size_t s = start;
      while (s > 0) {
        size_t b = s - 1;
        while (b > 0 && ((unsigned char)t[b] & 0xC0) == 0x80)
          b--;
        if (!tk_is_white_space(char_before(t, s))) break;
        s = b;
      }
      start = s > start_offset ? s : start_offset;
    }
    if (a->rstrip) {
      size_t cl;
      while (stop < n && tk_is_white_space(char_at(t, n, stop, &cl)))
        stop += cl;
    }
    if (start_offset < start &&
        runs_push(runs, nruns, cap, base + start_offset, start - start_offset, -1))
      return IC_ENOMEM;
    if (runs_push(runs, nruns, cap, base + start, stop - start, tok)) return IC_ENOMEM;
    start_offset = stop;
  }
  if (start_offset < n && runs_push(runs, nruns, cap, base + start_offset, n - start_offset, -1))
    return IC_ENOMEM;
  return 0;
}
