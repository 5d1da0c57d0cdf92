/* Unit tests of ic_utf8_valid (lib/base): every sequence of up to three bytes, and four-byte
 * sequences around every boundary, against utf8proc's decoder as the independent oracle, both
 * alone and inside ASCII runs that take the word-at-a-time path. */
#include <criterion/criterion.h>
#include <string.h>
#include <utf8proc.h>

#include "ic/utf8.h"

/* The oracle: decodes sequence by sequence with utf8proc, which rejects overlongs, surrogates
 * and code points past U+10FFFF. */
static bool oracle(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
    if (k <= 0) return false;
    i += (size_t)k;
  }
  return true;
}

static void check(const unsigned char *seq, size_t n) {
  unsigned char buf[32];
  bool want = oracle(seq, n);
  cr_assert_eq(ic_utf8_valid((const char *)seq, n), want, "%zu bytes %02x %02x %02x %02x", n,
               seq[0], n > 1 ? seq[1] : 0, n > 2 ? seq[2] : 0, n > 3 ? seq[3] : 0);
  /* inside ASCII: 7 before (the sequence straddles a word), 9 after */
  memset(buf, 'a', sizeof buf);
  memcpy(buf + 7, seq, n);
  cr_assert_eq(ic_utf8_valid((const char *)buf, 7 + n + 9), want);
}

Test(base_utf8, all_short_sequences_match_utf8proc, .timeout = 120) {
  unsigned char s[4] = {0};
  for (unsigned a = 0; a < 256; a++) {
    s[0] = (unsigned char)a;
    check(s, 1);
    for (unsigned b = 0; b < 256; b++) {
      s[1] = (unsigned char)b;
      check(s, 2);
      if (a < 0xe0 || a > 0xef) continue; /* three-byte leads; others fail or pass on two */
      for (unsigned c = 0; c < 256; c++) {
        s[2] = (unsigned char)c;
        check(s, 3);
      }
    }
  }
}

Test(base_utf8, four_byte_sequences_match_utf8proc) {
  static const unsigned char edge[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0xbf, 0xc0, 0xff};
  unsigned char s[4];
  for (unsigned a = 0xf0; a < 0x100; a++)
    for (unsigned b = 0; b < 256; b++)
      for (size_t c = 0; c < sizeof edge; c++)
        for (size_t d = 0; d < sizeof edge; d++) {
          s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = edge[c], s[3] = edge[d];
          check(s, 4);
        }
}

#define VALID(lit) ic_utf8_valid(lit, sizeof lit - 1)

Test(base_utf8, empty_and_long_text) {
  cr_assert(VALID(""));
  cr_assert(VALID("plain ascii text that is longer than a word"));
  cr_assert(VALID("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 end"));
  cr_assert(!VALID("ascii then a cut sequence \xe4\xb8"));
  cr_assert(!VALID("a NUL is valid \0 but a lone \x80 is not"));
  cr_assert(VALID("a NUL is valid \0 here"));
}
