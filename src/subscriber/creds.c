/* kvevent-subscriber: the credentials its gRPC channel presents to the server — the server's CA
 * (TLS), a client certificate/key (mTLS writer auth) and a rotating bearer token file (a
 * projected service-account token, TokenReview writer auth) — loaded and checked at start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/auth.h"
#include "ic/buf.h"
#include "ic/log.h"
#include "sub.h"

/* A PEM bundle larger than this is not a certificate chain or key. */
#define MAX_PEM_BYTES (4u << 20)

/* The whole file when it holds PEM block `what` ("CERTIFICATE", "PRIVATE KEY"), else NULL. */
static char *read_pem(const char *path, const char *what) {
  ic_buf_t pem = IC_BUF_INIT;
  if (ic_buf_read_file(path, MAX_PEM_BYTES, &pem, NULL) != 0) return NULL;
  char tag[64];
  snprintf(tag, sizeof tag, "-----BEGIN %s", what);
  /* "PRIVATE KEY" also matches "RSA PRIVATE KEY" / "EC PRIVATE KEY" headers. */
  if (pem.len == 0 || (!strstr(pem.data, tag) && !(strcmp(what, "PRIVATE KEY") == 0 &&
                                                   strstr(pem.data, " PRIVATE KEY-----")))) {
    ic_buf_free(&pem);
    return NULL;
  }
  return ic_buf_detach(&pem, NULL);
}

static bool set(const char *s) { return s && *s; }

int sub_creds_load(sub_ctx_t *c, sub_grpc_creds_t *out) {
  memset(out, 0, sizeof *out);
  if (set(c->server_ca_file)) {
    out->ca_pem = read_pem(c->server_ca_file, "CERTIFICATE");
    if (!out->ca_pem) {
      ic_log_error("server_ca_file_unreadable", IC_LS("file", c->server_ca_file),
                   IC_LS("err", "no PEM certificate in the file"));
      return 1;
    }
  }
  if (set(c->client_cert_file) != set(c->client_key_file) ||
      (set(c->client_cert_file) && !set(c->server_ca_file))) {
    ic_log_error("client_certificate_flags",
                 IC_LS("err", "--client-cert-file and --client-key-file go together and need "
                              "--server-ca-file (client certificates are a TLS feature)"));
    sub_creds_release(out);
    return 1;
  }
  if (set(c->client_cert_file)) {
    out->cert_pem = read_pem(c->client_cert_file, "CERTIFICATE");
    out->key_pem = read_pem(c->client_key_file, "PRIVATE KEY");
    if (!out->cert_pem || !out->key_pem) {
      ic_log_error("client_certificate_unreadable", IC_LS("cert_file", c->client_cert_file),
                   IC_LS("key_file", c->client_key_file),
                   IC_LS("err", "no PEM certificate / private key in the files"));
      sub_creds_release(out);
      return 1;
    }
  }
  if (set(c->server_token_file)) {
    char err[512];
    c->token =
        ic_auth_token_file_new(c->server_token_file, c->token_refresh_us / 1000, err, sizeof err);
    if (!c->token) {
      ic_log_error("server_token_file_unreadable", IC_LS("file", c->server_token_file),
                   IC_LS("err", err));
      sub_creds_release(out);
      return 1;
    }
    if (!set(c->server_ca_file))
      ic_log_warn("server_token_plaintext",
                  IC_LS("reason", "--server-token-file without --server-ca-file sends the bearer "
                                  "token unencrypted; use TLS outside a trusted network"));
    out->token = c->token;
  }
  return 0;
}

void sub_creds_release(sub_grpc_creds_t *out) {
  free((char *)out->ca_pem);
  free((char *)out->cert_pem);
  if (out->key_pem) memset((char *)out->key_pem, 0, strlen(out->key_pem));
  free((char *)out->key_pem);
  out->ca_pem = out->cert_pem = out->key_pem = NULL;
}

void sub_creds_free_token(sub_ctx_t *c) {
  ic_auth_token_file_free(c->token);
  c->token = NULL;
}
