/* Growable byte buffer (part of lib/base). The buffer owns `data`; it is always
 * NUL-terminated after a successful append so text can be used as a C string. */
#ifndef IC_BUF_H
#define IC_BUF_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct ic_buf {
  char *data; /* NULL until the first append */
  size_t len;
  size_t cap;
} ic_buf_t;

#define IC_BUF_INIT {NULL, 0, 0}

void ic_buf_init(ic_buf_t *b);
void ic_buf_free(ic_buf_t *b);                    /* releases memory, leaves an empty buffer */
void ic_buf_reset(ic_buf_t *b);                   /* len = 0, keeps capacity */
int ic_buf_reserve(ic_buf_t *b, size_t extra);    /* ensure room for `extra` more bytes + NUL */
int ic_buf_append(ic_buf_t *b, const void *p, size_t n);
int ic_buf_append_str(ic_buf_t *b, const char *s);
int ic_buf_append_byte(ic_buf_t *b, char c);
int ic_buf_appendf(ic_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ic_buf_vappendf(ic_buf_t *b, const char *fmt, va_list ap);
/* Appends `s` as a JSON string literal (quotes included, control characters escaped). */
int ic_buf_append_json_str(ic_buf_t *b, const char *s, size_t n);
/* Hands the contents to the caller (free() it); the buffer becomes empty. */
char *ic_buf_detach(ic_buf_t *b, size_t *len);

/* Reads the whole file at `path` into `out` (its old contents replaced; NUL-terminated, data
 * non-NULL also for an empty file), refusing one larger than max_bytes (lib/base/file.c).
 * `mtime` (may be NULL) gets the modification time of the file that was opened. Returns 0,
 * IC_ENOTFOUND (no such file), IC_EIO (cannot open or read it: errno says why), IC_ERANGE
 * (larger than max_bytes) or IC_ENOMEM; on error `out` is left empty and errno says why
 * (EFBIG for IC_ERANGE), for a caller's strerror. */
int ic_buf_read_file(const char *path, size_t max_bytes, ic_buf_t *out, struct timespec *mtime);
/* The same, then leading and trailing white space (space, tab, CR, LF) removed: for tokens,
 * names and other one-value files. */
int ic_buf_read_file_trimmed(const char *path, size_t max_bytes, ic_buf_t *out,
                             struct timespec *mtime);

#endif
