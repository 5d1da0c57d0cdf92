/* lib/base ic_buf_read_file / ic_buf_read_file_trimmed: a missing file, one over the limit, an
 * empty one, one of exactly the limit, a pipe (no size to trust), trimming and the mtime out. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/err.h"

static char dir[64];

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/ic_test_file.XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

/* Writes `len` bytes of `data` to dir/name; returns the path (static). */
static const char *put(const char *name, const char *data, size_t len) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
  return path;
}

TestSuite(buf_file, .init = setup, .fini = teardown);

Test(buf_file, missing_file_is_not_found_and_leaves_buffer_empty) {
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append_str(&b, "old contents");
  char path[128];
  snprintf(path, sizeof path, "%s/absent", dir);
  errno = 0;
  cr_assert_eq(ic_buf_read_file(path, 100, &b, NULL), IC_ENOTFOUND);
  cr_assert_eq(errno, ENOENT, "errno kept for the caller's message");
  cr_assert_eq(b.len, 0);
  cr_assert_str_eq(b.data, "");
  ic_buf_free(&b);
}

Test(buf_file, unreadable_path_is_eio) {
  ic_buf_t b = IC_BUF_INIT;
  char path[128];
  snprintf(path, sizeof path, "%s/x/y", dir); /* dir/x is a file: ENOTDIR */
  put("x", "a", 1);
  cr_assert_eq(ic_buf_read_file(path, 100, &b, NULL), IC_EIO);
  cr_assert_eq(errno, ENOTDIR);
  /* A directory opens but cannot be read. */
  cr_assert_eq(ic_buf_read_file(dir, 100, &b, NULL), IC_EIO);
  cr_assert_eq(b.len, 0);
  ic_buf_free(&b);
}

Test(buf_file, too_big_is_erange) {
  ic_buf_t b = IC_BUF_INIT;
  const char *p = put("big", "0123456789A", 11);
  cr_assert_eq(ic_buf_read_file(p, 10, &b, NULL), IC_ERANGE);
  cr_assert_eq(errno, EFBIG, "errno for the caller's strerror");
  cr_assert_eq(b.len, 0);
  cr_assert_eq(ic_buf_read_file(p, 0, &b, NULL), IC_ERANGE);
  ic_buf_free(&b);
}

Test(buf_file, empty_file_is_an_empty_string) {
  ic_buf_t b = IC_BUF_INIT;
  const char *p = put("empty", "", 0);
  cr_assert_eq(ic_buf_read_file(p, 0, &b, NULL), 0);
  cr_assert_not_null(b.data);
  cr_assert_eq(b.len, 0);
  cr_assert_str_eq(b.data, "");
  cr_assert_eq(ic_buf_read_file_trimmed(p, 10, &b, NULL), 0);
  cr_assert_str_eq(b.data, "");
  ic_buf_free(&b);
}

Test(buf_file, exactly_the_limit_is_read_whole) {
  ic_buf_t b = IC_BUF_INIT;
  const char *p = put("exact", "0123456789", 10);
  struct timespec mt = {0, 0};
  cr_assert_eq(ic_buf_read_file(p, 10, &b, &mt), 0);
  cr_assert_eq(b.len, 10);
  cr_assert_str_eq(b.data, "0123456789");
  struct stat st;
  cr_assert_eq(stat(p, &st), 0);
  cr_assert_eq(mt.tv_sec, st.st_mtim.tv_sec);
  cr_assert_eq(mt.tv_nsec, st.st_mtim.tv_nsec);
  ic_buf_free(&b);
}

Test(buf_file, binary_and_larger_than_one_chunk) {
  size_t n = 100000;
  char *data = malloc(n);
  for (size_t i = 0; i < n; i++)
    data[i] = (char)(i * 7);
  const char *p = put("bin", data, n);
  ic_buf_t b = IC_BUF_INIT;
  cr_assert_eq(ic_buf_read_file(p, n, &b, NULL), 0);
  cr_assert_eq(b.len, n);
  cr_assert_eq(memcmp(b.data, data, n), 0);
  cr_assert_eq(b.data[n], '\0');
  cr_assert_eq(ic_buf_read_file(p, n - 1, &b, NULL), IC_ERANGE);
  free(data);
  ic_buf_free(&b);
}

/* A pipe reports no size: the bound must hold by counting what was read. */
Test(buf_file, pipe_is_bounded_by_what_is_read) {
  char fifo[128];
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  cr_assert_eq(mkfifo(fifo, 0600), 0);
  for (int over = 0; over < 2; over++) {
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
      FILE *f = fopen(fifo, "wb");
      fwrite("abcdefgh", 1, over ? 8 : 5, f);
      fclose(f);
      _exit(0);
    }
    ic_buf_t b = IC_BUF_INIT;
    int rc = ic_buf_read_file(fifo, 5, &b, NULL);
    cr_assert_eq(rc, over ? IC_ERANGE : 0);
    if (!over) cr_assert_str_eq(b.data, "abcde");
    ic_buf_free(&b);
    /* The writer may block on a reader that stopped early; the pipe closes and it exits. */
    int status;
    waitpid(pid, &status, 0);
  }
}

Test(buf_file, trimmed_strips_white_space_at_both_ends_only) {
  ic_buf_t b = IC_BUF_INIT;
  const char *p = put("tok", " \t\r\n tok en\n\r\n ", 15);
  cr_assert_eq(ic_buf_read_file_trimmed(p, 64, &b, NULL), 0);
  cr_assert_str_eq(b.data, "tok en");
  cr_assert_eq(b.len, 6);
  p = put("blank", " \n\t\r", 4);
  cr_assert_eq(ic_buf_read_file_trimmed(p, 64, &b, NULL), 0);
  cr_assert_eq(b.len, 0);
  cr_assert_str_eq(b.data, "");
  /* The bound applies to the file, before trimming. */
  p = put("padded", "ab\n\n\n", 5);
  cr_assert_eq(ic_buf_read_file_trimmed(p, 4, &b, NULL), IC_ERANGE);
  ic_buf_free(&b);
}
