/* Pre-tokenizers: Split (regex or literal, the five delimiter behaviours, invert), ByteLevel,
 * Digits, Metaspace, WhitespaceSplit and Sequence, splitting pieces as the Rust library does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "ic/err.h"
#include "internal.h"

pcre2_code *tk_regex_compile(const char *pat, size_t len, bool literal, char *err, size_t errlen) {
  int ec;
  PCRE2_SIZE eo;
  /* UCP: \s \d \w and POSIX classes use Unicode properties, as Oniguruma's do for UTF-8. */
  uint32_t opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &ec, &eo, NULL);
  if (!re) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(ec, msg, sizeof msg);
    if (err) snprintf(err, errlen, "regex error at offset %zu: %s", (size_t)eo, (char *)msg);
    return NULL;
  }
  (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* JIT is an optimisation: fine if absent */
  return re;
}

typedef struct {
  size_t s, e;
  bool m;
} span;

typedef struct {
  span *v;
  size_t n, cap;
} spans;

static int spans_push(spans *sp, size_t s, size_t e, bool m) {
  if (sp->n == sp->cap) {
    size_t cap = sp->cap ? sp->cap * 2 : 64;
    span *v = realloc(sp->v, cap * sizeof *v);
    if (!v) return IC_ENOMEM;
    sp->v = v;
    sp->cap = cap;
  }
  sp->v[sp->n++] = (span){s, e, m};
  return 0;
}

/* Matches of a regex in t[0..n) as spans covering it (gaps unmatched), like Rust's Pattern. */
static int regex_spans(const pcre2_code *re, pcre2_match_data *md, const char *t, size_t n, spans *sp) {
  size_t prev = 0, pos = 0, jitsize = 0;
  bool jit = pcre2_pattern_info(re, PCRE2_INFO_JITSIZE, &jitsize) == 0 && jitsize > 0;
  while (pos <= n) {
    /* pcre2_jit_match skips the interpreter's option checks: measurably faster per match. */
    int rc = jit ? pcre2_jit_match(re, (PCRE2_SPTR)t, n, pos, 0, md, NULL)
                 : pcre2_match(re, (PCRE2_SPTR)t, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* deep backtracking: the interpreter has a larger heap */
      rc = pcre2_match(re, (PCRE2_SPTR)t, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) return rc == PCRE2_ERROR_NOMEMORY ? IC_ENOMEM : IC_EINVAL;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t s = ov[0], e = ov[1];
    if (prev != s && spans_push(sp, prev, s, false)) return IC_ENOMEM;
    if (spans_push(sp, s, e, true)) return IC_ENOMEM;
    prev = e;
    pos = e > s ? e : (s < n ? s + tk_utf8_len((unsigned char)t[s]) : n + 1);
  }
  if (prev != n && spans_push(sp, prev, n, false)) return IC_ENOMEM;
  return 0;
}

/* Spans where each char satisfying pred is its own match (Rust's `Fn(char) -> bool` pattern). */
static int char_spans(const char *t, size_t n, bool (*pred)(int32_t), spans *sp) {
  size_t prev = 0;
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)t + i, (utf8proc_ssize_t)(n - i), &c);
    if (k <= 0) k = 1, c = -1;
    if (c >= 0 && pred(c)) {
      if (prev != i && spans_push(sp, prev, i, false)) return IC_ENOMEM;
      if (spans_push(sp, i, i + (size_t)k, true)) return IC_ENOMEM;
      prev = i + (size_t)k;
    }
    i += (size_t)k;
  }
  if (prev != n && spans_push(sp, prev, n, false)) return IC_ENOMEM;
  return 0;
}

/* Applies invert and the delimiter behaviour to sp in place; keeps spans to emit with m=true. */
static void apply_behavior(spans *sp, tk_split_behavior b, bool invert) {
  if (invert)
    for (size_t i = 0; i < sp->n; i++) sp->v[i].m = !sp->v[i].m;
  size_t k = 0;
  bool prev_match = false;
  switch (b) {
  case SB_REMOVED:
    for (size_t i = 0; i < sp->n; i++)
      if (!sp->v[i].m) sp->v[k++] = (span){sp->v[i].s, sp->v[i].e, true};
    break;
  case SB_ISOLATED:
    for (size_t i = 0; i < sp->n; i++) sp->v[k++] = (span){sp->v[i].s, sp->v[i].e, true};
    break;
  case SB_MERGED_PREV:
    for (size_t i = 0; i < sp->n; i++) {
      span x = sp->v[i];
      if (x.m && !prev_match && k) sp->v[k - 1].e = x.e;
      else sp->v[k++] = (span){x.s, x.e, true};
      prev_match = x.m;
    }
    break;
  case SB_MERGED_NEXT: {
    /* Right to left, merging each match into the following part. */
    size_t w = sp->n;
    for (size_t i = sp->n; i-- > 0;) {
      span x = sp->v[i];
      if (x.m && !prev_match && w < sp->n) sp->v[w].s = x.s;
      else sp->v[--w] = (span){x.s, x.e, true};
      prev_match = x.m;
    }
    memmove(sp->v, sp->v + w, (sp->n - w) * sizeof *sp->v);
    k = sp->n - w;
    break;
  }
  case SB_CONTIGUOUS:
    for (size_t i = 0; i < sp->n; i++) {
      span x = sp->v[i];
      if (x.m == prev_match && k) sp->v[k - 1].e = x.e;
      else sp->v[k++] = (span){x.s, x.e, true};
      prev_match = x.m;
    }
    break;
  }
  sp->n = k;
}

static bool is_numeric(int32_t c) {
  utf8proc_category_t cat = utf8proc_category(c);
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

/* Rewrites a piece into ps->text: optional prefix, then the bytes with ' ' replaced by rep. */
static int rewrite(tk_pieces *ps, const tk_piece *p, const char *prefix, const char *rep, size_t *off,
                   size_t *len) {
  size_t plen = prefix ? strlen(prefix) : 0, rlen = rep ? strlen(rep) : 0;
  size_t worst = plen + p->len * (rlen > 1 ? rlen : 1);
  if (tk_str_reserve(&ps->text, worst)) return IC_ENOMEM;
  const char *src = ps->text.p + p->off; /* stable: reserved above */
  *off = ps->text.n;
  if (plen) tk_str_put(&ps->text, prefix, plen);
  for (size_t i = 0; i < p->len; i++) {
    if (rep && src[i] == ' ') tk_str_put(&ps->text, rep, rlen);
    else ps->text.p[ps->text.n++] = src[i];
  }
  *len = ps->text.n - *off;
  return 0;
}

static int split_one(const tk_pre *pt, tk_pieces *ps, tk_piece p, tk_piece **out, size_t *nout,
                     size_t *cap, spans *sp, pcre2_match_data *md) {
  int rc = 0;
  tk_split_behavior beh = pt->behavior;
  bool invert = pt->invert;
  sp->n = 0;
  switch (pt->kind) {
  case PT_SPLIT: rc = regex_spans(pt->re, md, ps->text.p + p.off, p.len, sp); break;
  case PT_BYTELEVEL:
    if (pt->add_prefix_space && (p.len == 0 || ps->text.p[p.off] != ' ')) {
      rc = rewrite(ps, &p, " ", NULL, &p.off, &p.len);
      if (rc) return rc;
    }
    if (pt->re) rc = regex_spans(pt->re, md, ps->text.p + p.off, p.len, sp), beh = SB_ISOLATED;
    else rc = spans_push(sp, 0, p.len, false), beh = SB_ISOLATED;
    invert = false;
    break;
  case PT_DIGITS:
    rc = char_spans(ps->text.p + p.off, p.len, is_numeric, sp);
    beh = pt->individual_digits ? SB_ISOLATED : SB_CONTIGUOUS, invert = false;
    break;
  case PT_WHITESPACE_SPLIT:
    rc = char_spans(ps->text.p + p.off, p.len, tk_is_white_space, sp);
    beh = SB_REMOVED, invert = false;
    break;
  case PT_METASPACE: {
    size_t rl = strlen(pt->replacement);
    bool starts = p.len >= rl && !memcmp(ps->text.p + p.off, pt->replacement, rl);
    bool prepend = !starts && (pt->prepend_scheme == 0 || (pt->prepend_scheme == 1 && p.origin));
    rc = rewrite(ps, &p, prepend ? pt->replacement : NULL, pt->replacement, &p.off, &p.len);
    if (rc) return rc;
    if (pt->split) {
      const char *t = ps->text.p + p.off;
      size_t prev = 0;
      for (size_t i = 0; i + rl <= p.len;) {
        if (!memcmp(t + i, pt->replacement, rl)) {
          if (prev != i && spans_push(sp, prev, i, false)) return IC_ENOMEM;
          if (spans_push(sp, i, i + rl, true)) return IC_ENOMEM;
          prev = i += rl;
        } else {
          i++;
        }
      }
      if (prev != p.len && spans_push(sp, prev, p.len, false)) return IC_ENOMEM;
      beh = SB_MERGED_NEXT;
    } else {
      rc = spans_push(sp, 0, p.len, false), beh = SB_ISOLATED;
    }
    invert = false;
    break;
  }
  case PT_SEQUENCE: return IC_EINVAL;
  }
  if (rc) return rc;
  apply_behavior(sp, beh, invert);
  for (size_t i = 0; i < sp->n; i++) {
    if (sp->v[i].e == sp->v[i].s) continue; /* empty pieces are dropped */
    if (*nout == *cap) {
      size_t c = *cap ? *cap * 2 : 64;
      tk_piece *v = realloc(*out, c * sizeof *v);
      if (!v) return IC_ENOMEM;
      *out = v;
      *cap = c;
    }
    (*out)[(*nout)++] = (tk_piece){p.off + sp->v[i].s, sp->v[i].e - sp->v[i].s, p.origin && sp->v[i].s == 0};
  }
  return 0;
}

int tk_pre_apply(const tk_pre *pt, tk_pieces *ps, pcre2_match_data *md) {
  if (pt->kind == PT_BYTELEVEL && !pt->re && !pt->add_prefix_space) return 0; /* bytes map 1:1 */
  if (pt->kind == PT_SEQUENCE) {
    for (size_t i = 0; i < pt->nchildren; i++) {
      int rc = tk_pre_apply(&pt->children[i], ps, md);
      if (rc) return rc;
    }
    return 0;
  }
  tk_piece *out = NULL;
  size_t nout = 0, cap = 0;
  spans sp = {0};
  int rc = 0;
  for (size_t i = 0; i < ps->n && !rc; i++) rc = split_one(pt, ps, ps->v[i], &out, &nout, &cap, &sp, md);
  free(sp.v);
  if (rc) {
    free(out);
    return rc;
  }
  free(ps->v);
  ps->v = out;
  ps->n = nout;
  ps->cap = cap;
  return 0;
}

void tk_pre_free(tk_pre *pt) {
  if (!pt) return;
  for (size_t i = 0; i < pt->nchildren; i++) tk_pre_free(&pt->children[i]);
  free(pt->children);
  if (pt->re) pcre2_code_free(pt->re);
}
