/* lib/auth: a client's bearer token read from a file that the kubelet rotates (a projected
 * service-account token), re-read when its mtime changes, checked at most every check_ms.
 * A re-read that fails or finds the file empty keeps the last good token: the kubelet writes
 * through a symlink swap, so a reader can see the file missing for an instant. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ic/auth.h"
#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"

#define MAX_TOKEN_BYTES (64u * 1024)

struct ic_auth_token_file {
  char *path;
  int64_t check_ns, next_check_ns;
  pthread_mutex_t mu;
  char *token; /* NULL until read once */
  struct timespec mtime;
};

/* Reads the token (surrounding whitespace trimmed); NULL with err set on failure or empty. */
static char *load(const char *path, struct timespec *mtime, char *err, size_t errlen) {
  ic_buf_t b = IC_BUF_INIT;
  int rc = ic_buf_read_file_trimmed(path, MAX_TOKEN_BYTES, &b, mtime);
  if (rc == IC_ERANGE) {
    snprintf(err, errlen, "%s: token longer than %u bytes", path, MAX_TOKEN_BYTES);
    return NULL;
  }
  if (rc) {
    snprintf(err, errlen, "open %s: %s", path, strerror(errno));
    return NULL;
  }
  char *t = NULL;
  if (b.len && !memchr(b.data, '\n', b.len) && !memchr(b.data, 0, b.len))
    t = strdup(b.data);
  else
    snprintf(err, errlen, "%s: empty or not a single-line token", path);
  memset(b.data, 0, b.len);
  ic_buf_free(&b);
  return t;
}

ic_auth_token_file_t *ic_auth_token_file_new(const char *path, int64_t check_ms, char *err,
                                             size_t errlen) {
  char tmp[8];
  if (!err) err = tmp, errlen = sizeof tmp;
  if (!path || !*path) {
    snprintf(err, errlen, "no token file given");
    return NULL;
  }
  ic_auth_token_file_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->path = strdup(path);
  t->check_ns = (check_ms > 0 ? check_ms : 30000) * 1000000LL;
  pthread_mutex_init(&t->mu, NULL);
  t->token = t->path ? load(path, &t->mtime, err, errlen) : NULL;
  if (!t->token) {
    ic_auth_token_file_free(t);
    return NULL;
  }
  t->next_check_ns = ic_clock_monotonic_ns() + t->check_ns;
  return t;
}

void ic_auth_token_file_free(ic_auth_token_file_t *t) {
  if (!t) return;
  if (t->token) memset(t->token, 0, strlen(t->token));
  free(t->token);
  free(t->path);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

static void refresh(ic_auth_token_file_t *t) {
  int64_t now = ic_clock_monotonic_ns();
  if (now < t->next_check_ns) return;
  t->next_check_ns = now + t->check_ns;
  struct stat st;
  if (stat(t->path, &st) != 0 ||
      (st.st_mtim.tv_sec == t->mtime.tv_sec && st.st_mtim.tv_nsec == t->mtime.tv_nsec))
    return;
  char err[256];
  struct timespec mt = t->mtime;
  char *tok = load(t->path, &mt, err, sizeof err);
  if (!tok) {
    ic_log_warn("token_file_reload_failed", IC_LS("err", err));
    return;
  }
  memset(t->token, 0, strlen(t->token));
  free(t->token);
  t->token = tok;
  t->mtime = mt;
  ic_log_info("token_file_reloaded", IC_LS("file", t->path));
}

int ic_auth_token_file_header(ic_auth_token_file_t *t, char *out, size_t cap) {
  pthread_mutex_lock(&t->mu);
  refresh(t);
  int rc;
  if (!t->token) {
    rc = IC_EUNAVAIL;
  } else {
    int n = snprintf(out, cap, "Bearer %s", t->token);
    rc = n < 0 || (size_t)n >= cap ? IC_ERANGE : n;
  }
  pthread_mutex_unlock(&t->mu);
  return rc;
}
