/* ic_utf8_valid (include/ic/utf8.h): strict UTF-8 check; eight ASCII bytes are tested at once,
 * anything else one sequence at a time. */
#include <stdint.h>
#include <string.h>

#include "ic/utf8.h"

bool ic_utf8_valid(const char *str, size_t n) {
  const unsigned char *p = (const unsigned char *)str, *e = p + n;
  while (p < e) {
    if (e - p >= 8) {
      uint64_t w;
      memcpy(&w, p, 8);
      if (!(w & 0x8080808080808080ull)) {
        p += 8;
        continue;
      }
    }
    unsigned ch = *p;
    if (ch < 0x80) {
      p++;
      continue;
    }
    size_t k;
    unsigned min;
    if ((ch & 0xe0) == 0xc0)
      k = 1, min = 0x80, ch &= 0x1f;
    else if ((ch & 0xf0) == 0xe0)
      k = 2, min = 0x800, ch &= 0x0f;
    else if ((ch & 0xf8) == 0xf0)
      k = 3, min = 0x10000, ch &= 0x07;
    else
      return false;
    if ((size_t)(e - p) <= k) return false;
    for (size_t i = 1; i <= k; i++) {
      if ((p[i] & 0xc0) != 0x80) return false;
      ch = (ch << 6) | (p[i] & 0x3f);
    }
    if (ch < min || ch > 0x10ffff || (ch >= 0xd800 && ch <= 0xdfff)) return false;
    p += k + 1;
  }
  return true;
}
