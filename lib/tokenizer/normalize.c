/* Normalizers: Unicode forms (libutf8proc), Lowercase, Replace, Prepend, Strip and Sequence,
 * with the Rust library's semantics (Prepend skips empty text, Replace rewrites every match). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "ic/err.h"
#include "internal.h"

static bool all_ascii(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] >= 0x80) return false;
  return true;
}

static int unicode_form(const char *in, size_t n, utf8proc_option_t opt, tk_str *out) {
  if (all_ascii(in, n) && !(opt & UTF8PROC_COMPAT)) return tk_str_put(out, in, n);
  utf8proc_uint8_t *res = NULL;
  utf8proc_ssize_t r =
      utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)n, &res, opt | UTF8PROC_STABLE);
  if (r < 0) return r == UTF8PROC_ERROR_NOMEM ? IC_ENOMEM : IC_EINVAL;
  int rc = tk_str_put(out, (const char *)res, (size_t)r);
  free(res);
  return rc;
}

/* Rust's char::is_whitespace (the Unicode White_Space property). */
bool tk_is_white_space(int32_t c) {
  return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

static int lowercase(const char *in, size_t n, tk_str *out) {
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)in + i, (utf8proc_ssize_t)(n - i), &c);
    if (k <= 0) return IC_EINVAL;
    i += (size_t)k;
    if (c == 0x130) { /* the one unconditional multi-char lowercase mapping */
      if (tk_str_put(out, "i\xCC\x87", 3)) return IC_ENOMEM;
      continue;
    }
    utf8proc_uint8_t buf[4];
    utf8proc_ssize_t m = utf8proc_encode_char(utf8proc_tolower(c), buf);
    if (tk_str_put(out, (const char *)buf, (size_t)m)) return IC_ENOMEM;
  }
  return 0;
}

static int replace(const tk_norm *nm, const char *in, size_t n, tk_str *out) {
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  if (!md) return IC_ENOMEM;
  size_t pos = 0, copied = 0, clen = strlen(nm->content);
  int rc = 0;
  while (pos <= n) {
    int m = pcre2_match(nm->re, (PCRE2_SPTR)in, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (m < 0) break;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    if (ov[1] == ov[0]) { /* empty match: nothing to replace here, step one char */
      pos = ov[0] < n ? ov[0] + tk_utf8_len((unsigned char)in[ov[0]]) : n + 1;
      continue;
    }
    if (tk_str_put(out, in + copied, ov[0] - copied) || tk_str_put(out, nm->content, clen)) {
      rc = IC_ENOMEM;
      break;
    }
    copied = pos = ov[1];
  }
  if (!rc && tk_str_put(out, in + copied, n - copied)) rc = IC_ENOMEM;
  pcre2_match_data_free(md);
  return rc;
}

static int strip(const tk_norm *nm, const char *in, size_t n, tk_str *out) {
  size_t b = 0, e = n;
  utf8proc_int32_t c;
  while (nm->left && b < e) {
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)in + b, (utf8proc_ssize_t)(e - b), &c);
    if (k <= 0 || !tk_is_white_space(c)) break;
    b += (size_t)k;
  }
  while (nm->right && e > b) {
    size_t s = e - 1;
    while (s > b && ((unsigned char)in[s] & 0xC0) == 0x80)
      s--;
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)in + s, (utf8proc_ssize_t)(e - s), &c);
    if (k <= 0 || !tk_is_white_space(c)) break;
    e = s;
  }
  return tk_str_put(out, in + b, e - b);
}

int tk_norm_apply(const tk_norm *nm, const char *in, size_t n, tk_str *out) {
  switch (nm->kind) {
  case NM_NFC: return unicode_form(in, n, UTF8PROC_COMPOSE, out);
  case NM_NFD: return unicode_form(in, n, UTF8PROC_DECOMPOSE, out);
  case NM_NFKC: return unicode_form(in, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
  case NM_NFKD: return unicode_form(in, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
  case NM_LOWERCASE: return lowercase(in, n, out);
  case NM_REPLACE: return replace(nm, in, n, out);
  case NM_STRIP: return strip(nm, in, n, out);
  case NM_PREPEND:
    if (n && tk_str_put(out, nm->content, strlen(nm->content))) return IC_ENOMEM;
    return tk_str_put(out, in, n);
  case NM_SEQUENCE: {
    /* Ping-pong between two buffers; the last stage writes into out. */
    if (!nm->nchildren) return tk_str_put(out, in, n);
    tk_str a = {0}, b = {0};
    const char *cur = in;
    size_t curn = n;
    int rc = 0;
    for (size_t i = 0; i < nm->nchildren && !rc; i++) {
      tk_str *dst = i + 1 == nm->nchildren ? out : (i % 2 ? &b : &a);
      size_t start = dst->n;
      if (dst != out) dst->n = start = 0;
      rc = tk_norm_apply(&nm->children[i], cur, curn, dst);
      cur = dst->p + start;
      curn = dst->n - start;
    }
    free(a.p);
    free(b.p);
    return rc;
  }
  }
  return IC_EINVAL;
}

void tk_norm_free(tk_norm *nm) {
  if (!nm) return;
  for (size_t i = 0; i < nm->nchildren; i++)
    tk_norm_free(&nm->children[i]);
  free(nm->children);
  if (nm->re) pcre2_code_free(nm->re);
  free(nm->content);
}
