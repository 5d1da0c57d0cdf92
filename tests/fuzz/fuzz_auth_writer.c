/* libFuzzer target: lib/auth writer authentication over untrusted call credentials — the
 * `authorization` metadata and the names of a client certificate. The input is split at NUL
 * bytes: the first part is the header, the rest are certificate names. Properties: never
 * crashes or leaks; only the reviewer's one good token or an allowed name is accepted; the
 * same input gets the same verdict again (cache hit), and a denial always names a reason. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic/auth.h"

static int review(void *ud, const char *tok, size_t len, const char *aud, ic_auth_review_t *out) {
  (void)ud, (void)aud;
  if (len == 4 && memcmp(tok, "good", 4) == 0) {
    out->authenticated = true;
    strcpy(out->username, "system:serviceaccount:engines:vllm");
  } else if (len == 5 && memcmp(tok, "other", 5) == 0) {
    out->authenticated = true;
    strcpy(out->username, "system:serviceaccount:default:x");
  }
  return 0;
}

static ic_writer_auth_t *g_w;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_w) {
    ic_writer_auth_config_t c = {.accept_tokens = true,
                                 .accept_certs = true,
                                 .allowed_service_accounts = "engines:*",
                                 .allowed_cert_names = "spiffe://cluster.local/ns/engines/*,sub-0",
                                 .reviewer = review,
                                 .inline_wait_ms = 2000,
                                 .cache_max = 64};
    g_w = ic_writer_auth_new(&c, NULL, 0);
    if (!g_w) abort();
  }
  char *buf = malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = 0;
  const char *names[8];
  size_t n = 0;
  for (size_t i = 0; i < size && n < 8; i++)
    if (buf[i] == 0) names[n++] = buf + i + 1;
  ic_writer_creds_t cr = {.authorization = size && buf[0] != '!' ? buf : NULL,
                          .cert_verified = n > 0,
                          .cert_names = names,
                          .n_cert_names = n};
  const char *why = NULL;
  ic_writer_result_t r = ic_writer_auth_check(g_w, &cr, &why);
  if (r != IC_WRITER_OK && !why) abort();
  if (r == IC_WRITER_OK) {
    bool name_ok = false;
    for (size_t i = 0; i < n; i++)
      name_ok |=
          ic_writer_auth_name_allowed("spiffe://cluster.local/ns/engines/*,sub-0", names[i], false);
    const char *tok = NULL;
    size_t len = 0;
    bool tok_ok = cr.authorization && ic_http_parse_bearer(cr.authorization, &tok, &len) &&
                  len == 4 && memcmp(tok, "good", 4) == 0;
    if (!name_ok && !tok_ok) abort();
  }
  if (ic_writer_auth_check(g_w, &cr, NULL) != r) abort();
  free(buf);
  return 0;
}
