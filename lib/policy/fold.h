/* lib/policy internal: JSON key matching the way Go's encoding/json does it — exact match
 * first, then Unicode simple case folding (bytes.EqualFold). For the ASCII field names we know,
 * folding adds exactly two non-ASCII spellings: U+017F (long s) for 's' and U+212A (Kelvin) for
 * 'k'. */
#ifndef IC_POLICY_FOLD_H
#define IC_POLICY_FOLD_H
#include <stdbool.h>
#include <string.h>

/* Case-folded equality of a JSON key (UTF-8) with an ASCII field name. */
static inline bool ic_policy_key_fold_eq(const char *key, const char *name) {
  const unsigned char *k = (const unsigned char *)key;
  const unsigned char *n = (const unsigned char *)name;
  while (*n) {
    unsigned char want = (unsigned char)((*n >= 'A' && *n <= 'Z') ? *n + 32 : *n);
    unsigned char c = *k;
    if (c == 0xC5 && k[1] == 0xBF) { /* U+017F -> s */
      if (want != 's') return false;
      k += 2;
    } else if (c == 0xE2 && k[1] == 0x84 && k[2] == 0xAA) { /* U+212A -> k */
      if (want != 'k') return false;
      k += 3;
    } else {
      if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
      if (c != want) return false;
      k++;
    }
    n++;
  }
  return *k == 0;
}

/* Index of `key` among `names` (exact match preferred, then folded), or -1. */
static inline int ic_policy_match_key(const char *key, const char *const *names, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(key, names[i]) == 0) return (int)i;
  for (size_t i = 0; i < n; i++)
    if (ic_policy_key_fold_eq(key, names[i])) return (int)i;
  return -1;
}

#endif
