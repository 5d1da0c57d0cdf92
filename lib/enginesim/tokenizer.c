/* Deterministic stand-in tokenizer of the simulator (a real one arrives with another issue):
 * text is cut into words (leading spaces + a run of letters/digits/UTF-8 bytes, or one other
 * character), words into pieces of at most 4 bytes, each piece hashed to an id. */
#include <ctype.h>
#include <xxhash.h>

#include "ic/enginesim.h"

static bool wordish(unsigned char c) { return isalnum(c) || c >= 0x80; }

static uint32_t piece_id(const char *p, size_t n) {
  return 1000 + (uint32_t)(XXH3_64bits(p, n) % 128000);
}

size_t ic_esim_tokenize(const char *text, size_t len, uint32_t *out, size_t cap, size_t *total) {
  size_t n = 0, i = 0;
  while (i < len) {
    size_t start = i;
    while (i < len && text[i] == ' ')
      i++;
    if (i < len && wordish((unsigned char)text[i])) {
      while (i < len && wordish((unsigned char)text[i]))
        i++;
    } else if (i < len) {
      i++;
    }
    for (size_t p = start; p < i; p += 4) {
      size_t k = i - p < 4 ? i - p : 4;
      if (n < cap) out[n] = piece_id(text + p, k);
      n++;
    }
  }
  if (total) *total = n;
  return n < cap ? n : cap;
}
