/* lib/http: JSON scalars written byte-for-byte as Go's encoding/json writes them (HTML-safe
 * strings, shortest float32, RFC 3339 nano timestamps), for bodies the reference's clients parse.
 *
 * jansson's dumper differs in all three (no HTML escaping, %.17g reals, no time type), so the
 * few endpoints whose bytes are part of the contract (/snapshot, /probe) build JSON from these. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/buf.h"
#include "ic/err.h"
#include "ic/http.h"

static const char HEX[] = "0123456789abcdef";

/* Length of a valid UTF-8 sequence at s (n bytes left) and its code point; 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
  unsigned c = s[0];
  size_t len;
  unsigned min;
  if (c < 0xC2) return 0;
  if (c < 0xE0) {
    len = 2;
    c &= 0x1F;
    min = 0x80;
  } else if (c < 0xF0) {
    len = 3;
    c &= 0x0F;
    min = 0x800;
  } else if (c < 0xF5) {
    len = 4;
    c &= 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    c = (c << 6) | (s[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  *cp = c;
  return len;
}

int ic_http_json_str(ic_buf_t *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  if (ic_buf_reserve(b, n + 2) != 0) return IC_ENOMEM;
  int rc = ic_buf_append_byte(b, '"');
  size_t i = 0;
  while (i < n && rc == 0) {
    unsigned c = s[i];
    if (c < 0x80) {
      if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
        rc = ic_buf_append_byte(b, (char)c);
      } else {
        char e[7] = {'\\', 0};
        size_t el = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
          memcpy(e, "\\u00", 4);
          e[4] = HEX[c >> 4];
          e[5] = HEX[c & 15];
          el = 6;
        }
        rc = ic_buf_append(b, e, el);
      }
      i++;
      continue;
    }
    unsigned cp;
    size_t l = utf8_decode(s + i, n - i, &cp);
    if (!l) {
      rc = ic_buf_append(b, "\\ufffd", 6);
      i++;
    } else if (cp == 0x2028 || cp == 0x2029) {
      rc = ic_buf_append(b, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
      i += l;
    } else {
      rc = ic_buf_append(b, s + i, l);
      i += l;
    }
  }
  if (rc == 0) rc = ic_buf_append_byte(b, '"');
  return rc;
}

int ic_http_json_f32(ic_buf_t *b, float v) {
  if (!isfinite(v)) return ic_buf_append_byte(b, '0');
  if (v == 0.0f) return ic_buf_append_str(b, signbit(v) ? "-0" : "0");
  /* Shortest digits that read back as the same float32 (Go's 'g'/-1 digit choice). */
  char e[40];
  int p;
  for (p = 1; p <= 9; p++) {
    snprintf(e, sizeof e, "%.*e", p - 1, (double)v);
    if (strtof(e, NULL) == v) break;
  }
  char digits[16];
  size_t nd = 0;
  const char *q = e;
  bool neg = false;
  if (*q == '-') {
    neg = true;
    q++;
  }
  for (; *q && *q != 'e'; q++)
    if (*q >= '0' && *q <= '9') digits[nd++] = *q;
  int exp10 = atoi(q + 1); /* value = d.ddd x 10^exp10 */
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  digits[nd] = 0;
  float a = fabsf(v);
  char out[64];
  size_t o = 0;
  if (neg) out[o++] = '-';
  if (a < 1e-6f || a >= 1e21f) {
    out[o++] = digits[0];
    if (nd > 1) {
      out[o++] = '.';
      memcpy(out + o, digits + 1, nd - 1);
      o += nd - 1;
    }
    /* Go writes at least two exponent digits, then encoding/json trims "e-07" to "e-7". */
    int ae = exp10 < 0 ? -exp10 : exp10;
    o += (size_t)snprintf(out + o, sizeof out - o, "e%c%s%d", exp10 < 0 ? '-' : '+',
                          (ae < 10 && exp10 >= 0) ? "0" : "", ae);
  } else {
    int point = exp10 + 1; /* digits before the decimal point */
    if (point <= 0) {
      out[o++] = '0';
      out[o++] = '.';
      for (int i = 0; i < -point; i++)
        out[o++] = '0';
      memcpy(out + o, digits, nd);
      o += nd;
    } else if ((size_t)point >= nd) {
      memcpy(out + o, digits, nd);
      o += nd;
      for (size_t i = nd; i < (size_t)point; i++)
        out[o++] = '0';
    } else {
      memcpy(out + o, digits, (size_t)point);
      o += (size_t)point;
      out[o++] = '.';
      memcpy(out + o, digits + point, nd - (size_t)point);
      o += nd - (size_t)point;
    }
  }
  return ic_buf_append(b, out, o);
}

int ic_http_json_time(ic_buf_t *b, int64_t ns) {
  if (ns == INT64_MIN) return ic_buf_append_str(b, "\"0001-01-01T00:00:00Z\"");
  int64_t sec = ns / 1000000000;
  int64_t frac = ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    sec--;
  }
  time_t t = (time_t)sec;
  struct tm tm;
  if (!gmtime_r(&t, &tm)) return ic_buf_append_str(b, "\"0001-01-01T00:00:00Z\"");
  char s[64];
  size_t n = strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (frac) {
    char f[16];
    snprintf(f, sizeof f, ".%09lld", (long long)frac);
    size_t fl = strlen(f);
    while (f[fl - 1] == '0')
      f[--fl] = 0;
    memcpy(s + n, f, fl + 1);
    n += fl;
  }
  return ic_buf_appendf(b, "\"%.*sZ\"", (int)n, s);
}
