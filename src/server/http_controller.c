/* The controller-facing HTTP listener (docs/server.md): GET /snapshot, POST|PUT /policy,
 * POST /probe, each behind its own TokenReview authenticator unless --insecure-disable-auth;
 * plus the HTTP listeners' lifecycle (server_http_start/stop) and controller auth setup. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_internal.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"
#include "ic/policy.h"

/* ------------------------------------------------------------------------ handlers */

/* This process's start (RFC 3339, microseconds), sent as a /snapshot and /policy response header
 * so the controller knows which instance holds its policy and notices a restarted replica
 * (docs/ha.md "Controller"). Bodies stay byte-identical to the reference's. Set once before the
 * listener starts. */
static char started_at[96];

static void set_started_at(void) {
  int64_t us = ic_clock_realtime_us();
  time_t secs = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(started_at, sizeof started_at, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
}

/* SHA-256 (hex) of the last /policy body accepted, "none" before the first: sent as a /snapshot
 * response header so `inferencecache doctor` can tell whether the replicas hold the same policy
 * (the controller sends every replica the same bytes). */
static pthread_mutex_t policy_sha_mu = PTHREAD_MUTEX_INITIALIZER;
static char policy_sha[65] = "none";

static void set_policy_sha(const char *body, size_t n) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int dl = 0;
  char hex[sizeof policy_sha];
  if (EVP_Digest(body, n, d, &dl, EVP_sha256(), NULL) != 1 || dl != 32) {
    snprintf(hex, sizeof hex, "unknown");
  } else {
    for (unsigned i = 0; i < dl; i++)
      snprintf(hex + 2 * i, 3, "%02x", d[i]);
  }
  pthread_mutex_lock(&policy_sha_mu);
  memcpy(policy_sha, hex, sizeof hex);
  pthread_mutex_unlock(&policy_sha_mu);
}

static void h_snapshot(ic_http_req_t *r, void *ud) {
  server_ctx_t *ctx = ud;
  ic_index_snapshot_t snap;
  memset(&snap, 0, sizeof snap);
  ic_index_guard_t g = ic_index_guard(ctx->index); /* its interned names, until encoded */
  if (ic_index_snapshot(ctx->index, &snap) != 0) {
    ic_index_unguard(ctx->index, g);
    ic_http_reply_error(r, 500, "snapshot failed");
    return;
  }
  ic_buf_t b = IC_BUF_INIT;
  int rc = server_snapshot_json(&snap, &b);
  if (!rc) rc = server_snapshot_predict_json(ctx->index, &b); /* additive, only when used */
  ic_index_snapshot_free(&snap);
  ic_index_unguard(ctx->index, g);
  if (rc != 0) {
    ic_buf_free(&b);
    ic_http_reply_error(r, 500, "encode snapshot failed");
    return;
  }
  size_t n;
  char *body = ic_buf_detach(&b, &n);
  ic_http_reply_header(r, "X-Inferencecache-Started-At", started_at);
  char sha[sizeof policy_sha];
  pthread_mutex_lock(&policy_sha_mu);
  memcpy(sha, policy_sha, sizeof sha);
  pthread_mutex_unlock(&policy_sha_mu);
  ic_http_reply_header(r, "X-Inferencecache-Policy-Sha256", sha);
  ic_http_reply_take(r, 200, "application/json", body, n);
}

static void h_policy(ic_http_req_t *r, void *ud) {
  server_ctx_t *ctx = ud;
  size_t n;
  const char *body = ic_http_req_body(r, &n);
  ic_policy_doc_t *doc = NULL;
  char msg[512];
  switch (ic_policy_parse(body, n, ic_http_req_body_too_large(r), &doc, msg, sizeof msg)) {
  case IC_POLICY_OK: break;
  case IC_POLICY_BAD_VERSION:
    ic_http_reply_error(r, 400, "unsupported policy snapshot version\n");
    return;
  default: {
    char full[600];
    snprintf(full, sizeof full, "decode policy snapshot: %s\n", msg);
    ic_http_reply_error(r, 400, full);
    return;
  }
  }
  if (ic_policy_store_replace(ctx->policy, doc) != 0) {
    ic_http_reply_error(r, 500, "store policy snapshot failed");
    return;
  }
  set_policy_sha(body, n);
  ic_http_reply_header(r, "X-Inferencecache-Started-At", started_at); /* which instance has it */
  ic_http_reply(r, 204, NULL, "", 0);
}

static void h_probe(ic_http_req_t *r, void *ud) {
  server_ctx_t *ctx = ud;
  size_t n;
  const char *body = ic_http_req_body(r, &n);
  ic_probe_req_t pr;
  char msg[512];
  switch (ic_probe_parse(body, n, ic_http_req_body_too_large(r), &pr, msg, sizeof msg)) {
  case IC_PROBE_PARSE_OK: break;
  case IC_PROBE_PARSE_TRAILING:
    ic_http_reply_error(r, 400,
                        "probe request body has trailing content after the first JSON value\n");
    return;
  case IC_PROBE_PARSE_MISSING:
    ic_http_reply_error(r, 400,
                        "probe request missing required field (backend, model, hashScheme)\n");
    return;
  default: {
    char full[600];
    snprintf(full, sizeof full, "decode probe request: %s\n", msg);
    ic_http_reply_error(r, 400, full);
    return;
  }
  }
  server_probe_result_t res;
  server_probe_run(ctx, pr.backend, pr.model, pr.hash_scheme, pr.backend_type, &res);
  ic_buf_t b = IC_BUF_INIT;
  int rc = server_probe_json(pr.backend, &res, &b);
  ic_probe_req_clear(&pr);
  if (rc != 0) {
    ic_buf_free(&b);
    ic_http_reply_error(r, 500, "encode probe result failed");
    return;
  }
  size_t bl;
  char *out = ic_buf_detach(&b, &bl);
  ic_http_reply_take(r, 200, "application/json", out, bl);
}

int server_http_add_controller_route(server_ctx_t *ctx, ic_http_server_t *s, ic_http_route_t rt,
                                     server_audience_t audience) {
  struct server_auth *a = ctx->flags.insecure_disable_auth ? NULL : ctx->auth;
  rt.ud = ctx;
  if (a) {
    rt.auth = ic_auth_http_hook;
    rt.auth_ud = audience == SERVER_AUD_SNAPSHOT ? a->snapshot
                 : audience == SERVER_AUD_POLICY ? a->policy
                                                 : a->probe;
  }
  return ic_http_add_route(s, &rt);
}

int server_http_controller_routes(server_ctx_t *ctx, ic_http_server_t *s) {
  if (!started_at[0]) set_started_at();
  int rc;
  if ((rc = server_http_add_controller_route(
           ctx, s, (ic_http_route_t){.path = "/snapshot", .methods = "GET", .handler = h_snapshot},
           SERVER_AUD_SNAPSHOT)) != 0 ||
      (rc = server_http_add_controller_route(ctx, s,
                                             (ic_http_route_t){.path = "/policy",
                                                               .methods = "POST, PUT",
                                                               .handler = h_policy,
                                                               .max_body = IC_POLICY_MAX_BODY},
                                             SERVER_AUD_POLICY)) != 0)
    return rc;
  return server_http_add_controller_route(ctx, s,
                                          (ic_http_route_t){.path = "/probe",
                                                            .methods = "POST",
                                                            .handler = h_probe,
                                                            .max_body = IC_PROBE_MAX_BODY},
                                          SERVER_AUD_PROBE);
}

/* ------------------------------------------------------------------------ auth setup */

/* The result counters are registered by main.c, possibly after server_auth_init ran (auth is
 * set up at startup step 8, metrics later); they are attached here once they exist. An
 * unregistered family is registered on the spot so counting never silently stops. */
static const char *const RESULT_LABEL[] = {"result"};

static ic_metric_family_t *auth_family(server_ctx_t *ctx, ic_metric_family_t **slot,
                                       const char *name, const char *endpoint) {
  if (!*slot && ctx->metrics) {
    char help[160];
    snprintf(help, sizeof help,
             "Authentication outcomes for the internal /%s endpoint (ok|unauth|forbidden|error).",
             endpoint);
    *slot = ic_metrics_counter(ctx->metrics, name, help, 1, RESULT_LABEL);
  }
  return *slot;
}

static void attach_auth_counters(server_ctx_t *ctx) {
  struct server_auth *a = ctx->auth;
  if (!a) return;
  ic_auth_set_counter(a->snapshot, auth_family(ctx, &ctx->m.snapshot_auth,
                                               "inferencecache_snapshot_auth_total", "snapshot"));
  ic_auth_set_counter(
      a->probe, auth_family(ctx, &ctx->m.probe_auth, "inferencecache_probe_auth_total", "probe"));
  ic_auth_set_counter(a->policy, auth_family(ctx, &ctx->m.policy_auth,
                                             "inferencecache_policy_auth_total", "policy"));
}

static void auth_free(struct server_auth *a) {
  if (!a) return;
  ic_auth_free(a->snapshot);
  ic_auth_free(a->policy);
  ic_auth_free(a->probe);
  ic_auth_kube_free(a->kube);
  free(a);
}

int server_auth_init(server_ctx_t *ctx) {
  if (ctx->auth) return 0;
  struct server_auth *a = calloc(1, sizeof *a);
  if (!a) {
    ic_log_error("kube_client", IC_LS("err", "out of memory"));
    return 1;
  }
  char err[512] = "";
  a->kube = ic_auth_kube_new(NULL, err, sizeof err);
  if (!a->kube) {
    ic_log_error("in_cluster_config", IC_LS("err", err));
    auth_free(a);
    return 1;
  }
  const char *sa = ctx->flags.allowed_controller_sa;
  ic_auth_config_t base = {
      .expected_user = sa, .reviewer = ic_auth_kube_review, .reviewer_ud = a->kube};
  ic_auth_config_t c = base;
  c.audience = ctx->flags.controller_audience;
  a->snapshot = ic_auth_new(&c);
  a->probe = ic_auth_new(&c);
  c.audience = ctx->flags.policy_audience;
  a->policy = ic_auth_new(&c);
  if (!a->snapshot || !a->probe || !a->policy) {
    ic_log_error("kube_client", IC_LS("err", "cannot build authenticators"));
    auth_free(a);
    return 1;
  }
  ctx->auth = a; /* main.c logs controller_auth_enabled once this returns 0 */
  return 0;
}

/* ------------------------------------------------------------------------ lifecycle */

static void http_free(struct server_http *h) {
  if (!h) return;
  ic_http_free(h->pub);
  ic_http_free(h->ctl);
  for (int i = 0; i < SERVER_PROBE_STRIPES; i++)
    pthread_mutex_destroy(&h->probe_mu[i]);
  free(h);
}

int server_http_start(server_ctx_t *ctx, char *err, size_t errlen) {
  if (!ctx->flags.insecure_disable_auth && !ctx->auth && server_auth_init(ctx) != 0) {
    snprintf(err, errlen, "controller auth: in-cluster TokenReview client unavailable");
    return IC_EUNAVAIL;
  }
  attach_auth_counters(ctx);
  struct server_http *h = calloc(1, sizeof *h);
  if (!h) {
    snprintf(err, errlen, "out of memory");
    return IC_ENOMEM;
  }
  for (int i = 0; i < SERVER_PROBE_STRIPES; i++)
    pthread_mutex_init(&h->probe_mu[i], NULL);
  /* Public endpoints are cheap: a small pool. The controller listener may block on a
   * TokenReview, so it gets a thread per connection (like Go's per-connection goroutines). */
  const server_flags_t *f = &ctx->flags;
  int req_ms = f->http_request_timeout_ms > 0 ? f->http_request_timeout_ms : -1;
  unsigned maxc = f->http_max_connections > 0 ? (unsigned)f->http_max_connections : 0;
  unsigned maxpc =
      f->http_max_connections_per_client > 0 ? (unsigned)f->http_max_connections_per_client : 0;
  ic_http_config_t pc = {.bind = f->http_bind_address,
                         .threads = 2,
                         .idle_timeout_s = 120,
                         .name = "http",
                         .request_timeout_ms = req_ms,
                         .max_conns = maxc,
                         .max_conns_per_client = maxpc};
  ic_http_config_t cc = pc;
  cc.bind = f->snapshot_bind_address;
  cc.threads = 0;
  cc.name = "snapshot";
  h->pub = ic_http_new(&pc);
  h->ctl = ic_http_new(&cc);
  char e[400] = "";
  int rc = 0;
  if (!h->pub || !h->ctl) {
    snprintf(err, errlen, "out of memory");
    rc = IC_ENOMEM;
  } else if ((rc = server_http_public_routes(ctx, h->pub)) != 0 ||
             (rc = server_http_controller_routes(ctx, h->ctl)) != 0 ||
             (rc = server_http_prompt_routes(ctx, h->ctl)) != 0 ||
             (rc = server_http_reporters_route(ctx, h->ctl)) != 0) {
    snprintf(err, errlen, "register routes: %s", ic_strerror(rc));
  } else if ((rc = ic_http_listen(h->pub, e, sizeof e)) != 0) {
    snprintf(err, errlen, "listen for http: %s", e);
  } else if ((rc = ic_http_listen(h->ctl, e, sizeof e)) != 0) {
    snprintf(err, errlen, "listen for snapshot: %s", e);
  } else if ((rc = ic_http_start(h->pub, e, sizeof e)) != 0) {
    snprintf(err, errlen, "serve http: %s", e);
  } else if ((rc = ic_http_start(h->ctl, e, sizeof e)) != 0) {
    snprintf(err, errlen, "serve snapshot: %s", e);
  }
  if (rc != 0) {
    http_free(h);
    auth_free(ctx->auth); /* the process exits next; leave nothing behind */
    ctx->auth = NULL;
    return rc;
  }
  ctx->http = h;
  return 0;
}

void server_http_stop(server_ctx_t *ctx, int deadline_ms) {
  struct server_http *h = ctx->http;
  if (h) {
    /* One shared deadline for both listeners, public first (docs/server.md, "Shutdown"). */
    int64_t t0 = ic_clock_monotonic_ns();
    ic_http_quiesce(h->pub); /* both listeners refuse new connections right away */
    ic_http_quiesce(h->ctl);
    ic_http_stop(h->pub, deadline_ms);
    int left = deadline_ms;
    if (deadline_ms >= 0) {
      int64_t used = (ic_clock_monotonic_ns() - t0) / 1000000;
      left = used >= deadline_ms ? 0 : deadline_ms - (int)used;
    }
    ic_http_stop(h->ctl, left);
    http_free(h);
    ctx->http = NULL;
  }
  auth_free(ctx->auth);
  ctx->auth = NULL;
}
