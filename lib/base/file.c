/* Whole-file reads into an ic_buf_t with a size bound: the one way the project reads a small
 * file (tokens, PEM bundles, kubeconfigs, templates), so every caller refuses a runaway file. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/err.h"

/* Reads at most max_bytes + 1 bytes (one more than allowed tells "too big" from "exactly the
 * limit" without trusting st_size, which pipes and /proc files do not report). */
static int read_all(int fd, size_t max_bytes, ic_buf_t *out) {
  size_t cap_read = max_bytes == SIZE_MAX ? SIZE_MAX : max_bytes + 1;
  for (;;) {
    if (out->cap - out->len <= 1 && ic_buf_reserve(out, 4096) != 0) return IC_ENOMEM;
    size_t room = out->cap - out->len - 1;
    if (room > cap_read - out->len) room = cap_read - out->len;
    ssize_t n = read(fd, out->data + out->len, room);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IC_EIO;
    if (n == 0) return 0;
    out->len += (size_t)n;
    out->data[out->len] = '\0';
    if (out->len > max_bytes) return IC_ERANGE;
  }
}

int ic_buf_read_file(const char *path, size_t max_bytes, ic_buf_t *out, struct timespec *mtime) {
  ic_buf_reset(out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? IC_ENOTFOUND : IC_EIO;
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) == 0) {
    if (mtime) *mtime = st.st_mtim;
    /* A regular file's size is known: refuse early, else size the buffer once (one allocation,
     * so a secret is never left behind in a block realloc gave up). */
    if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max_bytes)
      rc = IC_ERANGE;
    else if (S_ISREG(st.st_mode))
      rc = ic_buf_reserve(out, (size_t)st.st_size + 1);
  }
  if (rc == 0) rc = read_all(fd, max_bytes, out);
  if (rc == 0 && !out->data) rc = ic_buf_reserve(out, 0); /* empty file: "" not NULL */
  if (rc == 0) out->data[out->len] = '\0';
  int saved = rc == IC_ERANGE ? EFBIG : rc == IC_ENOMEM ? ENOMEM : errno;
  close(fd);
  errno = saved;
  if (rc != 0 && out->data) {
    memset(out->data, 0, out->len); /* may have been a token */
    ic_buf_reset(out);
  }
  return rc;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int ic_buf_read_file_trimmed(const char *path, size_t max_bytes, ic_buf_t *out,
                             struct timespec *mtime) {
  int rc = ic_buf_read_file(path, max_bytes, out, mtime);
  if (rc != 0) return rc;
  size_t s = 0, e = out->len;
  while (s < e && is_space(out->data[s]))
    s++;
  while (e > s && is_space(out->data[e - 1]))
    e--;
  memmove(out->data, out->data + s, e - s);
  memset(out->data + (e - s), 0, out->len - (e - s)); /* the trimmed tail leaves no copy */
  out->len = e - s;
  return 0;
}
