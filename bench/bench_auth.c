/* Writer-authentication cost per write call (lib/auth writer.c): a cached token verdict (the
 * steady state of every subscriber: SHA-256 of the token, one bucket under a mutex), a verified
 * client certificate matched against the allowed names, and a token check with several threads
 * at once (the mutex shared by the gRPC threads). Prints JSON lines. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ic/auth.h"
#include "ic/clock.h"

static int review(void *ud, const char *tok, size_t len, const char *aud, ic_auth_review_t *out) {
  (void)ud, (void)tok, (void)len, (void)aud;
  out->authenticated = true;
  strcpy(out->username, "system:serviceaccount:engines:vllm");
  return 0;
}

/* A projected service-account token is a ~1 KB JWT. */
static char g_authz[1200];

static ic_writer_auth_t *g_w;
enum { ITERS = 200000 };

static void *worker(void *arg) {
  ic_writer_creds_t c = {.authorization = g_authz};
  for (int i = 0; i < ITERS; i++)
    ic_writer_auth_check(g_w, &c, NULL);
  (void)arg;
  return NULL;
}

static void emit(const char *name, double v, const char *unit, const char *params) {
  printf("{\"bench\":\"auth\",\"name\":\"%s\",\"value\":%.1f,\"unit\":\"%s\",\"params\":%s}\n",
         name, v, unit, params);
}

int main(void) {
  memcpy(g_authz, "Bearer ", 7);
  for (size_t i = 7; i < 1100; i++)
    g_authz[i] = (char)('a' + i % 26);
  ic_writer_auth_config_t cfg = {.accept_tokens = true,
                                 .accept_certs = true,
                                 .allowed_service_accounts = "engines:*",
                                 .allowed_cert_names = "spiffe://cluster.local/ns/engines/*",
                                 .reviewer = review};
  g_w = ic_writer_auth_new(&cfg, NULL, 0);
  if (!g_w) return 1;
  ic_writer_creds_t c = {.authorization = g_authz};
  while (ic_writer_auth_check(g_w, &c, NULL) != IC_WRITER_OK) {
  }
  int64_t t0 = ic_clock_monotonic_ns();
  worker(NULL);
  emit("writer_auth_token_cached_ns", (double)(ic_clock_monotonic_ns() - t0) / ITERS, "ns/call",
       "{\"token_bytes\":1093,\"threads\":1}");
  const char *names[] = {"vllm-0", "spiffe://cluster.local/ns/engines/sa/vllm"};
  ic_writer_creds_t cc = {.cert_verified = true, .cert_names = names, .n_cert_names = 2};
  t0 = ic_clock_monotonic_ns();
  for (int i = 0; i < ITERS; i++)
    ic_writer_auth_check(g_w, &cc, NULL);
  emit("writer_auth_cert_ns", (double)(ic_clock_monotonic_ns() - t0) / ITERS, "ns/call",
       "{\"names\":2,\"threads\":1}");
  enum { T = 4 };
  pthread_t th[T];
  t0 = ic_clock_monotonic_ns();
  for (int i = 0; i < T; i++)
    pthread_create(&th[i], NULL, worker, NULL);
  for (int i = 0; i < T; i++)
    pthread_join(th[i], NULL);
  emit("writer_auth_token_cached_4threads_ns",
       (double)(ic_clock_monotonic_ns() - t0) / ((double)ITERS * T) * T, "ns/call/thread",
       "{\"token_bytes\":1093,\"threads\":4}");
  ic_writer_auth_free(g_w);
  return 0;
}
