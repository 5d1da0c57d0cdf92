/* inferencecache-server: wiring of writer authentication (--writer-auth) — flag checks, the
 * TokenReview client for writers, the denial counter, and the per-call check ReportCacheState and
 * PublishEvent run first (decision logic in lib/auth writer.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/auth.h"
#include "ic/err.h"
#include "ic/log.h"
#include "ic/rpc.h"
#include "server.h"

#define MAX_CERT_NAMES 16
#define AUTHZ_MAX 8192
#define WRITER_REVIEW_THREADS 4 /* TokenReviews in flight at once (lib/auth's own threads) */

struct server_writer_auth {
  ic_auth_kube_t *kube; /* NULL without tokens */
  ic_writer_auth_t *w;
};

static bool has_word(const char *list, const char *word, bool *unknown) {
  bool found = false;
  const char *p = list;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    while (n && *p == ' ')
      p++, n--;
    while (n && p[n - 1] == ' ')
      n--;
    if (n == strlen(word) && strncmp(p, word, n) == 0)
      found = true;
    else if (n && !(n == 5 && strncmp(p, "token", 5) == 0) &&
             !(n == 4 && strncmp(p, "mtls", 4) == 0) && !(n == 4 && strncmp(p, "none", 4) == 0))
      *unknown = true;
    if (!e) break;
    p = e + 1;
  }
  return found;
}

int server_writer_auth_init(server_ctx_t *ctx) {
  const server_flags_t *f = &ctx->flags;
  const char *mode = f->writer_auth ? f->writer_auth : "";
  bool unknown = false;
  bool tokens = has_word(mode, "token", &unknown), certs = has_word(mode, "mtls", &unknown);
  bool client_ca = f->grpc_client_ca_file && *f->grpc_client_ca_file;
  if (unknown) {
    fprintf(stderr, "invalid --writer-auth \"%s\" (want token, mtls, token,mtls or empty)\n", mode);
    return 2;
  }
  if (client_ca && !ctx->grpc_tls) {
    fprintf(
        stderr,
        "--grpc-client-ca-file needs TLS on the gRPC port (--tls-cert-file and --tls-key-file)\n");
    return 2;
  }
  if (certs && !client_ca) {
    fprintf(stderr, "--writer-auth=mtls needs --grpc-client-ca-file (and TLS on the gRPC port)\n");
    return 2;
  }
  if (!tokens && !certs) {
    if (!f->insecure_disable_auth)
      ic_log_warn("writers_unauthenticated",
                  IC_LS("reason",
                        "the HTTP controller endpoints require authentication but anyone who "
                        "reaches the gRPC port may call ReportCacheState and PublishEvent; set "
                        "--writer-auth (docs/server.md, Writer authentication)"));
    return 0;
  }
  struct server_writer_auth *a = calloc(1, sizeof *a);
  if (!a) return 1;
  char err[512] = "";
  if (tokens) {
    ic_auth_kube_config_t kc = {.timeout_ms = f->writer_token_review_timeout_ms > 0
                                                  ? f->writer_token_review_timeout_ms
                                                  : 2000};
    a->kube = ic_auth_kube_new(&kc, err, sizeof err);
    if (!a->kube) {
      ic_log_error("in_cluster_config", IC_LS("err", err), IC_LS("for", "--writer-auth=token"));
      free(a);
      return 1;
    }
  }
  static const char *const reason[] = {"reason"};
  ic_metric_family_t *denials = ic_metrics_counter(
      ctx->metrics, "inferencecache_writer_auth_denied_total",
      "ReportCacheState/PublishEvent calls refused by writer authentication, by "
      "reason (no_credentials|invalid_token|review_unavailable|identity_not_allowed|"
      "certificate_not_allowed).",
      1, reason);
  ic_writer_auth_config_t wc = {.accept_tokens = tokens,
                                .accept_certs = certs,
                                .audience = f->writer_token_audience,
                                .allowed_service_accounts = f->writer_allowed_service_accounts,
                                .allowed_cert_names = f->writer_allowed_cert_names,
                                .reviewer = ic_auth_kube_review,
                                .reviewer_ud = a->kube,
                                .max_reviews = WRITER_REVIEW_THREADS,
                                .denials = denials};
  a->w = ic_writer_auth_new(&wc, err, sizeof err);
  if (!a->w) {
    fprintf(stderr, "%s\n", err);
    ic_auth_kube_free(a->kube);
    free(a);
    return 2;
  }
  ctx->writer_auth = a;
  ic_log_info("writer_auth_enabled", IC_LB("tokens", tokens), IC_LB("client_certificates", certs),
              IC_LS("allowed_service_accounts", tokens ? f->writer_allowed_service_accounts : ""),
              IC_LS("allowed_cert_names", certs ? f->writer_allowed_cert_names : ""),
              IC_LS("audience", tokens ? f->writer_token_audience : ""));
  return 0;
}

void server_writer_auth_free(server_ctx_t *ctx) {
  struct server_writer_auth *a = ctx->writer_auth;
  if (!a) return;
  ic_writer_auth_free(a->w);
  ic_auth_kube_free(a->kube);
  free(a);
  ctx->writer_auth = NULL;
}

typedef struct {
  const char *names[MAX_CERT_NAMES];
  size_t n, used;
  char store[4096];
} names_t;

static void add_name(void *ud, const char *name) {
  names_t *nm = ud;
  size_t len = strlen(name) + 1;
  if (nm->n == MAX_CERT_NAMES || nm->used + len > sizeof nm->store) return;
  memcpy(nm->store + nm->used, name, len);
  nm->names[nm->n++] = nm->store + nm->used;
  nm->used += len;
}

int server_writer_auth_check(server_ctx_t *ctx, ic_rpc_call_t *call, const char **msg) {
  struct server_writer_auth *a = ctx->writer_auth;
  if (!a) return IC_RPC_OK;
  char authz[AUTHZ_MAX];
  int n = ic_rpc_call_metadata(call, "authorization", authz, sizeof authz);
  names_t nm;
  nm.n = nm.used = 0;
  ic_rpc_call_peer_cert(call, add_name, &nm);
  ic_writer_creds_t c = {.authorization = n >= 0           ? authz
                                          : n == IC_ERANGE ? ""
                                                           : NULL,
                         .cert_verified = nm.n > 0,
                         .cert_names = nm.names,
                         .n_cert_names = nm.n};
  switch (ic_writer_auth_check(a->w, &c, NULL)) {
  case IC_WRITER_OK: return IC_RPC_OK;
  case IC_WRITER_FORBIDDEN:
    *msg = "writer identity is not allowed to write to the index";
    return IC_RPC_PERMISSION_DENIED;
  case IC_WRITER_UNAVAILABLE: *msg = "writer token review unavailable"; return IC_RPC_UNAVAILABLE;
  default:
    *msg = "writer authentication required: a valid service-account token or client certificate";
    return IC_RPC_UNAUTHENTICATED;
  }
}
