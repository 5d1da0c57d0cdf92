/* lib/base: returning freed heap memory to the operating system. glibc keeps what a burst freed
 * (a flood of calls, subscribers that left) in its arenas; these helpers bound the arenas and
 * trim them when much is free, so a process's RSS goes back down after the burst. */
#ifndef IC_MEM_H
#define IC_MEM_H
#include <stddef.h>

/* Limits malloc to `n` arenas (fewer arenas = less memory stranded per thread) unless the
 * operator set MALLOC_ARENA_MAX in the environment. Call before starting threads. */
void ic_mem_limit_arenas(int n);
/* Bytes malloc holds free (not in use by the program, not yet returned to the OS). */
size_t ic_mem_free_bytes(void);
/* When more than `min_free` bytes are free, gives free pages back to the OS (malloc_trim) and
 * returns how many bytes were free before; else returns 0 and does nothing. */
size_t ic_mem_trim(size_t min_free);

#endif
