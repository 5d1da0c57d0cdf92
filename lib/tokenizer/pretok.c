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

typedef tk_span span;

/* The span list lives in the scratch (sp, sp_n, sp_cap). */
typedef tk_pre_scratch spans;

static int spans_push(spans *sp, size_t s, size_t e, bool m) {
  if (sp->sp_n == sp->sp_cap) {
    size_t cap = sp->sp_cap ? sp->sp_cap * 2 : 64;
    span *v = realloc(sp->sp, cap * sizeof *v);
    if (!v) return IC_ENOMEM;
    sp->sp = v;
    sp->sp_cap = cap;
  }
  sp->sp[sp->sp_n++] = (span){s, e, m};
  return 0;
}

/* Matches of a regex in t[0..n) as spans covering it (gaps unmatched), like Rust's Pattern. */
static int regex_spans(const pcre2_code *re, pcre2_match_data *md, const char *t, size_t n,
                       spans *sp) {
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
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)t + i, (utf8proc_ssize_t)(n - i), &c);
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
    for (size_t i = 0; i < sp->sp_n; i++)
      sp->sp[i].m = !sp->sp[i].m;
  size_t k = 0;
  bool prev_match = false;
  switch (b) {
  case SB_REMOVED:
    for (size_t i = 0; i < sp->sp_n; i++)
      if (!sp->sp[i].m) sp->sp[k++] = (span){sp->sp[i].s, sp->sp[i].e, true};
    break;
  case SB_ISOLATED:
    for (size_t i = 0; i < sp->sp_n; i++)
      sp->sp[k++] = (span){sp->sp[i].s, sp->sp[i].e, true};
    break;
  case SB_MERGED_PREV:
    for (size_t i = 0; i < sp->sp_n; i++) {
      span x = sp->sp[i];
      if (x.m && !prev_match && k)
        sp->sp[k - 1].e = x.e;
      else
        sp->sp[k++] = (span){x.s, x.e, true};
      prev_match = x.m;
    }
    break;
  case SB_MERGED_NEXT: {
    /* Right to left, merging each match into the following part. */
    size_t w = sp->sp_n;
    for (size_t i = sp->sp_n; i-- > 0;) {
      span x = sp->sp[i];
      if (x.m && !prev_match && w < sp->sp_n)
        sp->sp[w].s = x.s;
      else
        sp->sp[--w] = (span){x.s, x.e, true};
      prev_match = x.m;
    }
    memmove(sp->sp, sp->sp + w, (sp->sp_n - w) * sizeof *sp->sp);
    k = sp->sp_n - w;
    break;
  }
  case SB_CONTIGUOUS:
    for (size_t i = 0; i < sp->sp_n; i++) {
      span x = sp->sp[i];
      if (x.m == prev_match && k)
        sp->sp[k - 1].e = x.e;
      else
        sp->sp[k++] = (span){x.s, x.e, true};
      prev_match = x.m;
    }
    break;
  }
  sp->sp_n = k;
}

static bool is_numeric(int32_t c) {
  utf8proc_category_t cat = utf8proc_category(c);
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

/* Rewrites a piece into ps->text: optional prefix, then the bytes with ' ' replaced by rep. */
static int rewrite(tk_pieces *ps, const tk_piece *p, const char *prefix, const char *rep,
                   size_t *off, size_t *len) {
  size_t plen = prefix ? strlen(prefix) : 0, rlen = rep ? strlen(rep) : 0;
  size_t worst = plen + p->len * (rlen > 1 ? rlen : 1);
  if (tk_str_reserve(&ps->text, worst)) return IC_ENOMEM;
  const char *src = ps->text.p + p->off; /* stable: reserved above */
  *off = ps->text.n;
  if (plen) tk_str_put(&ps->text, prefix, plen);
  for (size_t i = 0; i < p->len; i++) {
    if (rep && src[i] == ' ')
      tk_str_put(&ps->text, rep, rlen);
    else
      ps->text.p[ps->text.n++] = src[i];
  }
  *len = ps->text.n - *off;
  return 0;
}

static int split_one(const tk_pre *pt, tk_pieces *ps, tk_piece p, tk_piece **out, size_t *nout,
                     size_t *cap, spans *sp, pcre2_match_data *md) {
  int rc = 0;
  tk_split_behavior beh = pt->behavior;
  bool invert = pt->invert;
  sp->sp_n = 0;
  switch (pt->kind) {
  case PT_SPLIT: rc = regex_spans(pt->re, md, ps->text.p + p.off, p.len, sp); break;
  case PT_BYTELEVEL:
    if (pt->add_prefix_space && (p.len == 0 || ps->text.p[p.off] != ' ')) {
      rc = rewrite(ps, &p, " ", NULL, &p.off, &p.len);
      if (rc) return rc;
    }
    if (pt->re)
      rc = regex_spans(pt->re, md, ps->text.p + p.off, p.len, sp), beh = SB_ISOLATED;
    else
      rc = spans_push(sp, 0, p.len, false), beh = SB_ISOLATED;
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
  for (size_t i = 0; i < sp->sp_n; i++) {
    if (sp->sp[i].e == sp->sp[i].s) continue; /* empty pieces are dropped */
    if (*nout == *cap) {
      size_t c = *cap ? *cap * 2 : 64;
      tk_piece *v = realloc(*out, c * sizeof *v);
      if (!v) return IC_ENOMEM;
      *out = v;
      *cap = c;
    }
    (*out)[(*nout)++] =
        (tk_piece){p.off + sp->sp[i].s, sp->sp[i].e - sp->sp[i].s, p.origin && sp->sp[i].s == 0};
  }
  return 0;
}

int tk_pre_apply(const tk_pre *pt, tk_pieces *ps, tk_pre_scratch *sc) {
  if (pt->kind == PT_BYTELEVEL && !pt->re && !pt->add_prefix_space) return 0; /* bytes map 1:1 */
  if (pt->kind == PT_SEQUENCE) {
    for (size_t i = 0; i < pt->nchildren; i++) {
      int rc = tk_pre_apply(&pt->children[i], ps, sc);
      if (rc) return rc;
    }
    return 0;
  }
  size_t nout = 0;
  int rc = 0;
  for (size_t i = 0; i < ps->n && !rc; i++)
    rc = split_one(pt, ps, ps->v[i], &sc->out, &nout, &sc->out_cap, sc, sc->md);
  if (rc) return rc;
  /* The new list becomes the pieces; the old array is the next stage's output buffer. */
  tk_piece *old = ps->v;
  size_t old_cap = ps->cap;
  ps->v = sc->out;
  ps->n = nout;
  ps->cap = sc->out_cap;
  sc->out = old;
  sc->out_cap = old_cap;
  return 0;
}

void tk_pre_free(tk_pre *pt) {
  if (!pt) return;
  for (size_t i = 0; i < pt->nchildren; i++)
    tk_pre_free(&pt->children[i]);
  free(pt->children);
  if (pt->re) pcre2_code_free(pt->re);
}
