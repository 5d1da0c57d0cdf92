/* UTF-8 well-formedness (RFC 3629: no overlongs, surrogates or code points past U+10FFFF), with a
 * word-at-a-time ASCII fast path: prompts are long and mostly ASCII, and this runs on every one. */
#ifndef IC_UTF8_H
#define IC_UTF8_H
#include <stdbool.h>
#include <stddef.h>

bool ic_utf8_valid(const char *s, size_t n);

#endif
