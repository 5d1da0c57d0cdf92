/* Small building blocks of lib/tokenizer: byte buffers, piece lists, the string -> id hash table,
 * and UTF-8 validation with U+FFFD replacement by maximal subpart. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ic/err.h"
#include "internal.h"

int tk_fail(char *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, IC_TOK_ERRLEN, fmt, ap);
    va_end(ap);
  }
  return IC_EINVAL;
}

int tk_str_reserve(tk_str *s, size_t extra) {
  if (s->n + extra <= s->cap) return 0;
  size_t cap = s->cap ? s->cap : 256;
  while (cap < s->n + extra)
    cap *= 2;
  char *p = realloc(s->p, cap);
  if (!p) return IC_ENOMEM;
  s->p = p;
  s->cap = cap;
  return 0;
}

int tk_str_put(tk_str *s, const char *p, size_t n) {
  if (tk_str_reserve(s, n)) return IC_ENOMEM;
  if (n) memcpy(s->p + s->n, p, n);
  s->n += n;
  return 0;
}

int tk_pieces_push(tk_pieces *ps, size_t off, size_t len, bool origin) {
  if (ps->n == ps->cap) {
    size_t cap = ps->cap ? ps->cap * 2 : 64;
    tk_piece *v = realloc(ps->v, cap * sizeof *v);
    if (!v) return IC_ENOMEM;
    ps->v = v;
    ps->cap = cap;
  }
  ps->v[ps->n++] = (tk_piece){off, len, origin};
  return 0;
}

/* ---- vocabulary hash table ---- */

static uint64_t key_hash(const char *k, size_t n) {
  uint64_t h = XXH3_64bits(k, n);
  return h ? h : 1;
}

int tk_vocab_init(tk_vocab *v, size_t expected) {
  memset(v, 0, sizeof *v);
  size_t cap = 64;
  while (cap < expected * 2)
    cap *= 2;
  v->hashes = calloc(cap, sizeof *v->hashes);
  v->key_off = malloc(cap * sizeof *v->key_off);
  v->key_len = malloc(cap * sizeof *v->key_len);
  v->ids = malloc(cap * sizeof *v->ids);
  if (!v->hashes || !v->key_off || !v->key_len || !v->ids) return IC_ENOMEM;
  v->mask = cap - 1;
  return 0;
}

void tk_vocab_free(tk_vocab *v) {
  free(v->hashes);
  free(v->key_off);
  free(v->key_len);
  free(v->ids);
  free(v->arena.p);
  memset(v, 0, sizeof *v);
}

static int vocab_grow(tk_vocab *v) {
  tk_vocab bigger = {0};
  size_t cap = (v->mask + 1) * 2;
  bigger.hashes = calloc(cap, sizeof *bigger.hashes);
  bigger.key_off = malloc(cap * sizeof *bigger.key_off);
  bigger.key_len = malloc(cap * sizeof *bigger.key_len);
  bigger.ids = malloc(cap * sizeof *bigger.ids);
  if (!bigger.hashes || !bigger.key_off || !bigger.key_len || !bigger.ids) {
    free(bigger.hashes);
    free(bigger.key_off);
    free(bigger.key_len);
    free(bigger.ids);
    return IC_ENOMEM;
  }
  bigger.mask = cap - 1;
  for (size_t i = 0; i <= v->mask; i++) {
    if (!v->hashes[i]) continue;
    size_t j = v->hashes[i] & bigger.mask;
    while (bigger.hashes[j])
      j = (j + 1) & bigger.mask;
    bigger.hashes[j] = v->hashes[i];
    bigger.key_off[j] = v->key_off[i];
    bigger.key_len[j] = v->key_len[i];
    bigger.ids[j] = v->ids[i];
  }
  free(v->hashes);
  free(v->key_off);
  free(v->key_len);
  free(v->ids);
  bigger.arena = v->arena;
  bigger.count = v->count;
  *v = bigger;
  return 0;
}

int tk_vocab_put(tk_vocab *v, const char *k, size_t n, uint32_t id) {
  if (n > UINT32_MAX || v->arena.n + n > UINT32_MAX) return IC_ERANGE;
  if ((v->count + 1) * 2 > v->mask + 1 && vocab_grow(v)) return IC_ENOMEM;
  uint64_t h = key_hash(k, n);
  size_t j = h & v->mask;
  while (v->hashes[j]) {
    if (v->hashes[j] == h && v->key_len[j] == n && !memcmp(v->arena.p + v->key_off[j], k, n)) {
      v->ids[j] = id;
      return 0;
    }
    j = (j + 1) & v->mask;
  }
  size_t off = v->arena.n;
  if (tk_str_put(&v->arena, k, n)) return IC_ENOMEM;
  v->hashes[j] = h;
  v->key_off[j] = (uint32_t)off;
  v->key_len[j] = (uint32_t)n;
  v->ids[j] = id;
  v->count++;
  return 0;
}

bool tk_vocab_get(const tk_vocab *v, const char *k, size_t n, uint32_t *id) {
  if (!v->hashes) return false;
  uint64_t h = key_hash(k, n);
  size_t j = h & v->mask;
  while (v->hashes[j]) {
    if (v->hashes[j] == h && v->key_len[j] == n && !memcmp(v->arena.p + v->key_off[j], k, n)) {
      *id = v->ids[j];
      return true;
    }
    j = (j + 1) & v->mask;
  }
  return false;
}

/* ---- UTF-8 ---- */

size_t tk_utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

/* Length of the valid sequence at s[0..n), or 0 when invalid. Follows the Unicode table of
 * well-formed byte sequences (no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t valid_seq(const unsigned char *s, size_t n, size_t *maximal_subpart) {
  unsigned char c = s[0];
  *maximal_subpart = 1;
  if (c < 0x80) return 1;
  unsigned char lo = 0x80, hi = 0xBF;
  size_t need;
  if (c >= 0xC2 && c <= 0xDF)
    need = 2;
  else if (c == 0xE0)
    need = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC)
    need = 3;
  else if (c == 0xED)
    need = 3, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF)
    need = 3;
  else if (c == 0xF0)
    need = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3)
    need = 4;
  else if (c == 0xF4)
    need = 4, hi = 0x8F;
  else
    return 0;
  for (size_t i = 1; i < need; i++) {
    if (i >= n) return 0;
    unsigned char b = s[i];
    unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
    *maximal_subpart = i + 1;
  }
  return need;
}

char *tk_utf8_sanitize(const char *s, size_t n, size_t *outn, int *rc) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, sub;
  *rc = 0;
  while (i < n) {
    if (u[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = valid_seq(u + i, n - i, &sub);
    if (!k) break;
    i += k;
  }
  if (i == n) return NULL;
  tk_str out = {0};
  if (tk_str_reserve(&out, n + n / 2 + 4)) goto oom;
  if (tk_str_put(&out, s, i)) goto oom;
  while (i < n) {
    size_t k = valid_seq(u + i, n - i, &sub);
    if (k) {
      if (tk_str_put(&out, s + i, k)) goto oom;
      i += k;
    } else {
      if (tk_str_put(&out, "\xEF\xBF\xBD", 3)) goto oom;
      i += sub;
    }
  }
  *outn = out.n;
  return out.p;
oom:
  free(out.p);
  *rc = IC_ENOMEM;
  return NULL;
}

int32_t tk_utf8_decode(const char *t, size_t s, size_t e) {
  int32_t cp = 0;
  for (size_t k = s; k < e; k++)
    cp = k == s ? (unsigned char)t[k] : (cp << 6) | (t[k] & 0x3F);
  static const int32_t mask[5] = {0, 0xFF, 0x7FF, 0xFFFF, 0x1FFFFF}; /* 1 byte: as is */
  return e - s <= 4 ? cp & mask[e - s] : cp;
}

int tk_ids_push(ic_tok_ids *ids, uint32_t id) {
  if (ids->n == ids->cap) {
    size_t cap = ids->cap ? ids->cap * 2 : 256;
    uint32_t *v = realloc(ids->v, cap * sizeof *v);
    if (!v) return IC_ENOMEM;
    ids->v = v;
    ids->cap = cap;
  }
  ids->v[ids->n++] = id;
  return 0;
}
