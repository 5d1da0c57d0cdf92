/* Growable byte buffer: amortised doubling, always NUL-terminated, JSON string escaping.
 * The only allocator of ic_buf_t memory; callers free with ic_buf_free or take it with detach. */
#include "ic/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"

void ic_buf_init(ic_buf_t *b) { b->data = NULL, b->len = 0, b->cap = 0; }

void ic_buf_free(ic_buf_t *b) {
  free(b->data);
  ic_buf_init(b);
}

void ic_buf_reset(ic_buf_t *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

int ic_buf_reserve(ic_buf_t *b, size_t extra) {
  if (extra > SIZE_MAX / 2 - b->len) return IC_ENOMEM;
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) return IC_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int ic_buf_append(ic_buf_t *b, const void *p, size_t n) {
  if (ic_buf_reserve(b, n) != 0) return IC_ENOMEM;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int ic_buf_append_str(ic_buf_t *b, const char *s) { return ic_buf_append(b, s, strlen(s)); }

int ic_buf_append_byte(ic_buf_t *b, char c) { return ic_buf_append(b, &c, 1); }

int ic_buf_vappendf(ic_buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap2);
  va_end(ap2);
  if (n < 0) return IC_EINVAL;
  if ((size_t)n < sizeof small) return ic_buf_append(b, small, (size_t)n);
  if (ic_buf_reserve(b, (size_t)n) != 0) return IC_ENOMEM;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int ic_buf_appendf(ic_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = ic_buf_vappendf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int ic_buf_append_json_str(ic_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (ic_buf_reserve(b, n + 2) != 0) return IC_ENOMEM;
  int rc = ic_buf_append_byte(b, '"');
  for (size_t i = 0; i < n && rc == 0; i++) {
    unsigned char c = (unsigned char)s[i];
    switch (c) {
    case '"': rc = ic_buf_append(b, "\\\"", 2); break;
    case '\\': rc = ic_buf_append(b, "\\\\", 2); break;
    case '\n': rc = ic_buf_append(b, "\\n", 2); break;
    case '\r': rc = ic_buf_append(b, "\\r", 2); break;
    case '\t': rc = ic_buf_append(b, "\\t", 2); break;
    default:
      if (c < 0x20) {
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        rc = ic_buf_append(b, esc, 6);
      } else {
        rc = ic_buf_append_byte(b, (char)c);
      }
    }
  }
  return rc ? rc : ic_buf_append_byte(b, '"');
}

char *ic_buf_detach(ic_buf_t *b, size_t *len) {
  char *p = b->data;
  if (len) *len = b->len;
  ic_buf_init(b);
  return p;
}
