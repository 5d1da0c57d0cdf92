/* Heap memory return (ic/mem.h): glibc arena limit and trim. On a libc without these controls
 * the functions do nothing. */
#include "ic/mem.h"

#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void ic_mem_limit_arenas(int n) {
#if defined(__GLIBC__)
  const char *env = getenv("MALLOC_ARENA_MAX");
  if ((!env || !*env) && n > 0) mallopt(M_ARENA_MAX, n);
#else
  (void)n;
#endif
}

size_t ic_mem_free_bytes(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  return mi.fordblks + mi.fsmblks;
#else
  return 0;
#endif
}

size_t ic_mem_trim(size_t min_free) {
  size_t f = ic_mem_free_bytes();
  if (f <= min_free) return 0;
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  return f;
}
