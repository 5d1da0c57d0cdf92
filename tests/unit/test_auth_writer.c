/* Unit tests for lib/auth writer authentication (docs/server.md "Writer authentication"):
 * allowed-name matching, the certificate/token decision and its statuses, the verdict cache
 * (TTL, negative TTL, background refresh), reviews that fail or hang (bounded wait, not
 * cached), denial counting; and the rotating token file a client sends. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ic/auth.h"
#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/metrics.h"

typedef struct {
  atomic_int calls;
  atomic_int fail;    /* reviewer returns an error */
  atomic_int hang_ms; /* reviewer sleeps first */
  char audience[128];
} fake_t;

/* "vllm" -> engines:vllm, "intruder" -> default:intruder, anything else -> unauthenticated. */
static int fake_review(void *ud, const char *tok, size_t len, const char *aud,
                       ic_auth_review_t *out) {
  fake_t *f = ud;
  atomic_fetch_add(&f->calls, 1);
  snprintf(f->audience, sizeof f->audience, "%s", aud);
  int h = atomic_load(&f->hang_ms);
  if (h) usleep((useconds_t)h * 1000);
  if (atomic_load(&f->fail)) return IC_EUNAVAIL;
  if (len == 4 && !memcmp(tok, "vllm", 4)) {
    out->authenticated = true;
    strcpy(out->username, "system:serviceaccount:engines:vllm");
  } else if (len == 8 && !memcmp(tok, "intruder", 8)) {
    out->authenticated = true;
    strcpy(out->username, "system:serviceaccount:default:intruder");
  }
  return 0;
}

static _Atomic int64_t fake_now = 1000000;
static int64_t now_fn(void *ud) {
  (void)ud;
  return atomic_load(&fake_now);
}

static double denials(ic_metrics_t *m, const char *reason) {
  ic_buf_t b = IC_BUF_INIT;
  ic_metrics_render(m, &b);
  char needle[128];
  snprintf(needle, sizeof needle, "w_denied_total{reason=\"%s\"} ", reason);
  const char *p = b.data ? strstr(b.data, needle) : NULL;
  double v = p ? atof(p + strlen(needle)) : 0;
  ic_buf_free(&b);
  return v;
}

static const char *const REASON[] = {"reason"};

static ic_writer_auth_t *make(fake_t *f, ic_metrics_t *m, bool tokens, bool certs, int wait_ms) {
  ic_writer_auth_config_t c = {
      .accept_tokens = tokens,
      .accept_certs = certs,
      .allowed_service_accounts = "engines:*,other:one",
      .allowed_cert_names = "spiffe://cluster.local/ns/engines/*,sub-0",
      .reviewer = fake_review,
      .reviewer_ud = f,
      .inline_wait_ms = wait_ms,
      .max_reviews = 2,
      .denials = m ? ic_metrics_counter(m, "w_denied_total", "h", 1, REASON) : NULL,
      .now_ms = now_fn};
  char err[256];
  ic_writer_auth_t *w = ic_writer_auth_new(&c, err, sizeof err);
  cr_assert(w, "%s", err);
  return w;
}

static ic_writer_result_t with_token(ic_writer_auth_t *w, const char *authz, const char **why) {
  ic_writer_creds_t c = {.authorization = authz};
  return ic_writer_auth_check(w, &c, why);
}

Test(writer_auth, allowed_names) {
  const char *sa = "engines:*, other:one ,system:serviceaccount:ops:*";
  cr_assert(ic_writer_auth_name_allowed(sa, "system:serviceaccount:engines:vllm", true));
  cr_assert(ic_writer_auth_name_allowed(sa, "system:serviceaccount:other:one", true));
  cr_assert(ic_writer_auth_name_allowed(sa, "system:serviceaccount:ops:x", true));
  cr_assert_not(ic_writer_auth_name_allowed(sa, "system:serviceaccount:other:two", true));
  cr_assert_not(ic_writer_auth_name_allowed(sa, "system:serviceaccount:enginesx:vllm", true));
  cr_assert_not(ic_writer_auth_name_allowed(sa, "engines:vllm", true)); /* not an SA username */
  cr_assert_not(ic_writer_auth_name_allowed(sa, "", true));
  cr_assert(ic_writer_auth_name_allowed("*", "system:serviceaccount:a:b", true));
  const char *certs = "spiffe://cluster.local/ns/engines/*,sub-0";
  cr_assert(ic_writer_auth_name_allowed(certs, "spiffe://cluster.local/ns/engines/sa/vllm", false));
  cr_assert(ic_writer_auth_name_allowed(certs, "sub-0", false));
  cr_assert_not(ic_writer_auth_name_allowed(certs, "sub-00", false));
  cr_assert_not(ic_writer_auth_name_allowed(certs, "spiffe://cluster.local/ns/other/sa/x", false));
  cr_assert_not(ic_writer_auth_name_allowed(",, ,", "x", false));
}

Test(writer_auth, config_errors) {
  char err[256];
  ic_writer_auth_config_t c = {0};
  cr_assert_null(ic_writer_auth_new(&c, err, sizeof err));
  c.accept_tokens = true;
  c.reviewer = fake_review;
  cr_assert_null(ic_writer_auth_new(&c, err, sizeof err));
  cr_assert(strstr(err, "--writer-allowed-service-accounts"));
  c.accept_tokens = false;
  c.accept_certs = true;
  c.allowed_cert_names = " , ";
  cr_assert_null(ic_writer_auth_new(&c, err, sizeof err));
  cr_assert(strstr(err, "--writer-allowed-cert-names"));
}

Test(writer_auth, token_decisions_and_cache) {
  fake_t f = {0};
  ic_metrics_t *m = ic_metrics_new();
  ic_writer_auth_t *w = make(&f, m, true, false, 2000);
  const char *why = NULL;
  cr_assert_eq(with_token(w, NULL, &why), IC_WRITER_UNAUTHENTICATED);
  cr_assert_str_eq(why, IC_WRITER_DENY_NO_CREDENTIALS);
  cr_assert_eq(with_token(w, "Basic abc", &why), IC_WRITER_UNAUTHENTICATED);
  cr_assert_str_eq(why, IC_WRITER_DENY_BAD_TOKEN);
  cr_assert_eq(with_token(w, "Bearer nope", &why), IC_WRITER_UNAUTHENTICATED);
  cr_assert_str_eq(why, IC_WRITER_DENY_BAD_TOKEN);
  cr_assert_eq(with_token(w, "Bearer intruder", &why), IC_WRITER_FORBIDDEN);
  cr_assert_str_eq(why, IC_WRITER_DENY_IDENTITY);
  cr_assert_eq(with_token(w, "bearer vllm", &why), IC_WRITER_OK);
  cr_assert_str_eq(f.audience, IC_AUTH_WRITER_AUDIENCE);
  int calls = atomic_load(&f.calls);
  cr_assert_eq(calls, 3);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(with_token(w, "Bearer vllm", NULL), IC_WRITER_OK);
  cr_assert_eq(with_token(w, "Bearer nope", NULL), IC_WRITER_UNAUTHENTICATED); /* cached too */
  cr_assert_eq(atomic_load(&f.calls), calls);
  /* a rejected verdict lasts 2 s, an accepted one 10 s */
  atomic_fetch_add(&fake_now, 2001);
  cr_assert_eq(with_token(w, "Bearer nope", NULL), IC_WRITER_UNAUTHENTICATED);
  cr_assert_eq(atomic_load(&f.calls), calls + 1);
  /* past half the TTL: still accepted at once, refreshed in the background */
  atomic_fetch_add(&fake_now, 4000);
  cr_assert_eq(with_token(w, "Bearer vllm", NULL), IC_WRITER_OK);
  for (int i = 0; i < 200 && atomic_load(&f.calls) < calls + 2; i++)
    usleep(5000);
  cr_assert_eq(atomic_load(&f.calls), calls + 2);
  cr_assert_eq(denials(m, IC_WRITER_DENY_NO_CREDENTIALS), 1);
  cr_assert_eq(denials(m, IC_WRITER_DENY_BAD_TOKEN), 4);
  cr_assert_eq(denials(m, IC_WRITER_DENY_IDENTITY), 1);
  ic_writer_auth_free(w);
  ic_metrics_free(m);
}

Test(writer_auth, review_failure_and_hang_deny_within_the_wait) {
  fake_t f = {0};
  ic_metrics_t *m = ic_metrics_new();
  ic_writer_auth_t *w = make(&f, m, true, false, 50);
  atomic_store(&f.fail, 1);
  const char *why = NULL;
  cr_assert_eq(with_token(w, "Bearer vllm", &why), IC_WRITER_UNAVAILABLE);
  cr_assert_str_eq(why, IC_WRITER_DENY_REVIEW);
  atomic_store(&f.fail, 0);
  /* failures are not cached: the next call reviews again and is accepted */
  cr_assert_eq(with_token(w, "Bearer vllm", NULL), IC_WRITER_OK);
  /* a hanging reviewer: the call is denied after ~50 ms, not after the review */
  atomic_store(&f.hang_ms, 1000);
  int64_t t0 = ic_clock_monotonic_ns();
  cr_assert_eq(with_token(w, "Bearer other", &why), IC_WRITER_UNAVAILABLE);
  int64_t took_ms = (ic_clock_monotonic_ns() - t0) / 1000000;
  cr_assert(took_ms >= 40 && took_ms < 500, "took %lld ms", (long long)took_ms);
  /* the same token again while its review runs: shares it (no second review) */
  int calls = atomic_load(&f.calls);
  cr_assert_eq(with_token(w, "Bearer other", NULL), IC_WRITER_UNAVAILABLE);
  cr_assert_eq(atomic_load(&f.calls), calls);
  /* the cached token is unaffected by the hang */
  cr_assert_eq(with_token(w, "Bearer vllm", NULL), IC_WRITER_OK);
  cr_assert_eq(denials(m, IC_WRITER_DENY_REVIEW), 3);
  atomic_store(&f.hang_ms, 0);
  ic_writer_auth_free(w); /* joins the worker still in its review */
  ic_metrics_free(m);
}

Test(writer_auth, certificates) {
  fake_t f = {0};
  ic_writer_auth_t *w = make(&f, NULL, true, true, 2000);
  const char *good[] = {"vllm-0", "spiffe://cluster.local/ns/engines/sa/vllm"};
  const char *bad[] = {"intruder", "intruder.default"};
  ic_writer_creds_t c = {.cert_verified = true, .cert_names = good, .n_cert_names = 2};
  const char *why = NULL;
  cr_assert_eq(ic_writer_auth_check(w, &c, &why), IC_WRITER_OK);
  c.cert_names = bad;
  cr_assert_eq(ic_writer_auth_check(w, &c, &why), IC_WRITER_FORBIDDEN);
  cr_assert_str_eq(why, IC_WRITER_DENY_CERT);
  /* a certificate that is not allowed, plus a good token: the token decides */
  c.authorization = "Bearer vllm";
  cr_assert_eq(ic_writer_auth_check(w, &c, &why), IC_WRITER_OK);
  /* names of an unverified certificate count for nothing */
  ic_writer_creds_t u = {.cert_verified = false, .cert_names = good, .n_cert_names = 2};
  cr_assert_eq(ic_writer_auth_check(w, &u, &why), IC_WRITER_UNAUTHENTICATED);
  cr_assert_eq(atomic_load(&f.calls), 1);
  ic_writer_auth_free(w);
  /* mTLS only: a token is not a credential */
  w = make(&f, NULL, false, true, 0);
  ic_writer_creds_t t = {.authorization = "Bearer vllm"};
  cr_assert_eq(ic_writer_auth_check(w, &t, &why), IC_WRITER_UNAUTHENTICATED);
  cr_assert_str_eq(why, IC_WRITER_DENY_NO_CREDENTIALS);
  ic_writer_auth_free(w);
}

Test(writer_auth, token_file_rotation) {
  char dir[] = "/tmp/ic-tokfile-XXXXXX";
  cr_assert(mkdtemp(dir));
  char path[256], tmp[256];
  snprintf(path, sizeof path, "%s/token", dir);
  snprintf(tmp, sizeof tmp, "%s/token.new", dir);
  char err[256], out[128];
  cr_assert_null(ic_auth_token_file_new(path, 10, err, sizeof err)); /* missing */
  FILE *fp = fopen(path, "w");
  fputs("\n  \n", fp);
  fclose(fp);
  cr_assert_null(ic_auth_token_file_new(path, 10, err, sizeof err)); /* empty */
  fp = fopen(path, "w");
  fputs("first-token\n", fp);
  fclose(fp);
  ic_auth_token_file_t *t = ic_auth_token_file_new(path, 10, err, sizeof err);
  cr_assert(t, "%s", err);
  cr_assert_eq(ic_auth_token_file_header(t, out, sizeof out), (int)strlen("Bearer first-token"));
  cr_assert_str_eq(out, "Bearer first-token");
  cr_assert_eq(ic_auth_token_file_header(t, out, 8), IC_ERANGE);
  usleep(20000);
  fp = fopen(tmp, "w");
  fputs("second-token", fp);
  fclose(fp);
  struct timespec ts[2] = {{0, UTIME_NOW}, {time(NULL) + 5, 0}}; /* a visibly newer mtime */
  utimensat(AT_FDCWD, tmp, ts, 0);
  rename(tmp, path);
  usleep(20000);
  ic_auth_token_file_header(t, out, sizeof out);
  cr_assert_str_eq(out, "Bearer second-token");
  /* a vanished file keeps the last good token */
  unlink(path);
  usleep(20000);
  ic_auth_token_file_header(t, out, sizeof out);
  cr_assert_str_eq(out, "Bearer second-token");
  ic_auth_token_file_free(t);
  rmdir(dir);
}
