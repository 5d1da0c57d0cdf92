/* kvevent-subscriber's channel to one server: lib/rpc's client with a short reconnect backoff
 * (a restarted server is re-reached within --max-backoff, not gRPC's 120 s default) and the
 * writer credentials of sub_grpc_creds_t: TLS roots, a client certificate, and a bearer token
 * re-read as it rotates and sent as `authorization` metadata on every call. */
#include <stdlib.h>
#include <string.h>

#include "ic/auth.h"
#include "ic/buf.h"
#include "ic/err.h"
#include "ic/rpc.h"
#include "sub.h"

struct sub_grpc {
  ic_rpc_channel_t *ch;
  ic_auth_token_file_t *token; /* not owned; NULL = no bearer token */
};

/* A call's `authorization` header, "Bearer <token>" in hdr; wiped after the call. */
typedef struct {
  char hdr[16384];
  ic_rpc_md_t md;
} auth_md_t;

/* Fills a from g's token source; returns the metadata count (0: no token, the call goes
 * without one and the server says why). */
static size_t auth_md_make(const sub_grpc_t *g, auth_md_t *a) {
  a->md = (ic_rpc_md_t){"authorization", a->hdr, 0};
  int n = g->token ? ic_auth_token_file_header(g->token, a->hdr, sizeof a->hdr) : -1;
  if (n < 0) return 0;
  a->md.value_len = (size_t)n;
  return 1;
}

static void auth_md_done(auth_md_t *a) { memset(a->hdr, 0, a->md.value_len); }

sub_grpc_t *sub_grpc_new(const char *target, int max_backoff_ms, const sub_grpc_creds_t *creds,
                         const char *authority) {
  static const sub_grpc_creds_t plain = {0};
  if (!creds) creds = &plain;
  sub_grpc_t *g = calloc(1, sizeof(*g));
  if (!g) return NULL;
  if (max_backoff_ms < 100) max_backoff_ms = 100;
  /* The channel's own reconnect attempts are capped at 2 s: a TCP connect per second or two to
   * a down server is cheap, and the server's return is then seen within ~2 s (the watcher then
   * ends the sender's longer backoff at once). */
  if (max_backoff_ms > 2000) max_backoff_ms = 2000;
  ic_rpc_channel_opts_t o = {
      .tls_ca_pem = creds->ca_pem,
      .tls_cert_pem = creds->cert_pem,
      .tls_key_pem = creds->key_pem,
      /* an address target: verify TLS as the name it came from */
      .authority = creds->ca_pem ? authority : NULL,
      .max_reconnect_backoff_ms = max_backoff_ms,
  };
  g->ch = ic_rpc_channel_new(target, &o);
  g->token = creds->token;
  if (!g->ch) {
    free(g);
    return NULL;
  }
  return g;
}

void sub_grpc_free(sub_grpc_t *g) {
  if (!g) return;
  ic_rpc_channel_free(g->ch);
  free(g);
}

int sub_grpc_call(sub_grpc_t *g, const char *method, const uint8_t *req, size_t len, int timeout_ms,
                  ic_buf_t *resp) {
  int st;
  sub_grpc_call_each(&g, 1, method, req, len, timeout_ms, &st, resp);
  return st;
}

int sub_grpc_call_many(sub_grpc_t *g, const char *method, const uint8_t *const *reqs,
                       const size_t *lens, size_t n, int timeout_ms, int *statuses) {
  ic_rpc_unary_call_t *calls = calloc(n ? n : 1, sizeof *calls);
  auth_md_t *a = malloc(sizeof *a); /* one token for the whole batch */
  int worst = 0;
  if (!calls || !a) { /* nothing started: no status for any */
    for (size_t i = 0; i < n; i++)
      statuses[i] = IC_RPC_NO_STATUS;
    worst = n ? IC_RPC_NO_STATUS : 0;
  } else {
    size_t nmd = auth_md_make(g, a);
    for (size_t i = 0; i < n; i++)
      calls[i] = (ic_rpc_unary_call_t){g->ch, method, reqs[i], lens[i], &a->md, nmd, NULL, 0};
    ic_rpc_unary_all(calls, n, timeout_ms);
    for (size_t i = 0; i < n; i++) {
      statuses[i] = calls[i].status;
      if (statuses[i] != 0 && worst == 0) worst = statuses[i];
    }
    auth_md_done(a);
  }
  free(a);
  free(calls);
  return worst;
}

/* One request to each of n channels at once (stats reports to every server replica: a slow one
 * delays only this call's return, never the others' delivery); each channel's own token. */
void sub_grpc_call_each(sub_grpc_t *const *gs, size_t n, const char *method, const uint8_t *req,
                        size_t len, int timeout_ms, int *statuses, ic_buf_t *resps) {
  for (size_t i = 0; i < n; i++)
    statuses[i] = IC_RPC_NO_STATUS;
  if (!n) return;
  /* One target (every report and publish) needs no allocation. */
  ic_rpc_unary_call_t one_call, *calls = n == 1 ? &one_call : malloc(n * sizeof *calls);
  auth_md_t one_md, *a = n == 1 ? &one_md : malloc(n * sizeof *a);
  if (calls && a) {
    for (size_t i = 0; i < n; i++) {
      size_t nmd = auth_md_make(gs[i], &a[i]);
      calls[i] = (ic_rpc_unary_call_t){
          gs[i]->ch, method, req, len, &a[i].md, nmd, resps ? &resps[i] : NULL, 0};
    }
    ic_rpc_unary_all(calls, n, timeout_ms);
    for (size_t i = 0; i < n; i++) {
      statuses[i] = calls[i].status;
      auth_md_done(&a[i]);
    }
  }
  if (n > 1) {
    free(a);
    free(calls);
  }
}

int sub_grpc_state(sub_grpc_t *g, bool try_connect) {
  return ic_rpc_channel_state(g->ch, try_connect);
}

int sub_grpc_wait_change(sub_grpc_t *g, int last, int timeout_ms) {
  return ic_rpc_channel_wait_change(g->ch, last, timeout_ms);
}
