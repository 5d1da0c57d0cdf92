/* Unit tests for lib/auth: result per request, caching with
 * TTL and cap, audience propagation, fail-closed; plus the TokenReview client against a real
 * HTTPS endpoint served by lib/http with a self-signed certificate. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/auth.h"
#include "ic/buf.h"
#include "ic/http.h"
#include "ic/metrics.h"

#define SA "system:serviceaccount:ics:controller"

typedef struct {
  int calls;
  char last_audience[128];
  int mode; /* 0 normal, 1 transport error */
} fake_t;

/* Tokens: "good" -> SA, "other" -> other SA, "bad" -> unauthenticated with error text,
 * "nil" -> no review, "goodN" -> SA. */
static int fake_review(void *ud, const char *tok, size_t len, const char *aud,
                       ic_auth_review_t *out) {
  fake_t *f = ud;
  f->calls++;
  snprintf(f->last_audience, sizeof f->last_audience, "%s", aud ? aud : "(null)");
  if (f->mode == 1) return -5;
  if (len == 3 && !memcmp(tok, "nil", 3)) return -7;
  if (len >= 4 && !memcmp(tok, "good", 4)) {
    out->authenticated = true;
    strcpy(out->username, SA);
  } else if (len == 5 && !memcmp(tok, "other", 5)) {
    out->authenticated = true;
    strcpy(out->username, "system:serviceaccount:x:y");
  } else if (len == 3 && !memcmp(tok, "bad", 3)) {
    out->authenticated = false;
    strcpy(out->error, "invalid bearer token");
  }
  return 0;
}

static int64_t fake_now;
static int64_t now_fn(void *ud) {
  (void)ud;
  return fake_now;
}

static double counter_of(ic_metrics_t *m, const char *result) {
  ic_buf_t b = IC_BUF_INIT;
  ic_metrics_render(m, &b);
  char needle[128];
  snprintf(needle, sizeof needle, "t_auth_total{result=\"%s\"} ", result);
  const char *p = b.data ? strstr(b.data, needle) : NULL;
  double v = p ? atof(p + strlen(needle)) : 0;
  ic_buf_free(&b);
  return v;
}

static ic_auth_t *mk(fake_t *f, ic_metrics_t *m, const char *aud, size_t cap) {
  static const char *lbl[] = {"result"};
  ic_metric_family_t *fam = ic_metrics_counter(m, "t_auth_total", "h", 1, lbl);
  ic_auth_config_t cfg = {.expected_user = SA,
                          .audience = aud,
                          .reviewer = fake_review,
                          .reviewer_ud = f,
                          .counter = fam,
                          .cache_max = cap,
                          .now_ms = now_fn};
  ic_auth_t *a = ic_auth_new(&cfg);
  cr_assert_not_null(a);
  return a;
}

Test(auth, rejects_and_admits) {
  fake_t f = {0};
  ic_metrics_t *m = ic_metrics_new();
  ic_auth_t *a = mk(&f, m, "aud", 0);
  cr_assert_eq(ic_auth_check(a, NULL), IC_AUTH_UNAUTH);
  cr_assert_eq(ic_auth_check(a, "Bearer "), IC_AUTH_UNAUTH);
  cr_assert_eq(ic_auth_check(a, "Basic Zm9v"), IC_AUTH_UNAUTH);
  cr_assert_eq(f.calls, 0, "malformed headers never reach the reviewer");
  cr_assert_eq(ic_auth_check(a, "Bearer bad"), IC_AUTH_UNAUTH);
  cr_assert_eq(ic_auth_check(a, "Bearer other"), IC_AUTH_FORBIDDEN);
  cr_assert_eq(ic_auth_check(a, "Bearer nil"), IC_AUTH_ERROR);
  f.mode = 1;
  cr_assert_eq(ic_auth_check(a, "Bearer good"), IC_AUTH_ERROR, "fail closed");
  f.mode = 0;
  cr_assert_eq(ic_auth_check(a, "bearer good"), IC_AUTH_OK);
  cr_assert_eq(ic_auth_check(a, "BEARER good1"), IC_AUTH_OK);
  cr_assert_eq(counter_of(m, "unauth"), 4);
  cr_assert_eq(counter_of(m, "forbidden"), 1);
  cr_assert_eq(counter_of(m, "error"), 2);
  cr_assert_eq(counter_of(m, "ok"), 2);
  cr_assert_str_eq(f.last_audience, "aud");
  ic_auth_free(a);
  ic_metrics_free(m);
}

Test(auth, caches_validated_tokens) {
  fake_t f = {0};
  ic_metrics_t *m = ic_metrics_new();
  fake_now = 1000000;
  ic_auth_t *a = mk(&f, m, "aud", 0);
  cr_assert_eq(ic_auth_check(a, "Bearer good"), IC_AUTH_OK);
  cr_assert_eq(ic_auth_check(a, "Bearer good"), IC_AUTH_OK);
  cr_assert_eq(f.calls, 1, "same token within TTL reuses the cache");
  cr_assert_eq(ic_auth_check(a, "Bearer good2"), IC_AUTH_OK);
  cr_assert_eq(f.calls, 2, "a new token is reviewed");
  fake_now += 29999;
  cr_assert_eq(ic_auth_check(a, "Bearer good"), IC_AUTH_OK);
  cr_assert_eq(f.calls, 2);
  fake_now += 2001;
  cr_assert_eq(ic_auth_check(a, "Bearer good"), IC_AUTH_OK);
  cr_assert_eq(f.calls, 3, "after 30 s the token is reviewed again");
  cr_assert_eq(ic_auth_check(a, "Bearer other"), IC_AUTH_FORBIDDEN);
  cr_assert_eq(ic_auth_check(a, "Bearer other"), IC_AUTH_FORBIDDEN);
  cr_assert_eq(f.calls, 5, "failures are never cached");
  cr_assert_eq(counter_of(m, "ok"), 5, "one increment per request, cache hits included");
  ic_auth_free(a);
  ic_metrics_free(m);
}

Test(auth, cache_evicts_when_over_cap) {
  fake_t f = {0};
  ic_metrics_t *m = ic_metrics_new();
  fake_now = 0;
  ic_auth_t *a = mk(&f, m, "aud", 2);
  ic_auth_check(a, "Bearer good1");
  fake_now++;
  ic_auth_check(a, "Bearer good2");
  fake_now++;
  ic_auth_check(a, "Bearer good3");
  cr_assert_leq(ic_auth_cache_size(a), 2);
  cr_assert_eq(f.calls, 3);
  ic_auth_check(a, "Bearer good3");
  ic_auth_check(a, "Bearer good2");
  cr_assert_eq(f.calls, 3, "the two newest stay cached");
  ic_auth_check(a, "Bearer good1");
  cr_assert_eq(f.calls, 4, "the earliest expiry was evicted");
  ic_auth_free(a);
  ic_metrics_free(m);
}

Test(auth, required_fields_and_audience) {
  fake_t f = {0};
  ic_auth_config_t bad1 = {.expected_user = SA};
  ic_auth_config_t bad2 = {.reviewer = fake_review, .expected_user = ""};
  cr_assert_null(ic_auth_new(&bad1));
  cr_assert_null(ic_auth_new(&bad2));
  ic_auth_config_t ok = {.expected_user = SA, .reviewer = fake_review, .reviewer_ud = &f};
  ic_auth_t *a = ic_auth_new(&ok);
  ic_auth_check(a, "Bearer good");
  cr_assert_str_eq(f.last_audience, "", "no audience configured -> empty");
  ic_auth_free(a);
  cr_assert_str_eq(ic_auth_result_label(IC_AUTH_ERROR), "error");
}

/* ---- real HTTPS TokenReview endpoint ---- */

typedef struct {
  int calls;
  char last_body[1024];
  char last_authz[256];
  int status;
} tr_t;

static void tr_handler(ic_http_req_t *r, void *ud) {
  tr_t *t = ud;
  t->calls++;
  size_t n;
  const char *b = ic_http_req_body(r, &n);
  snprintf(t->last_body, sizeof t->last_body, "%.*s", (int)n, b);
  const char *az = ic_http_req_header(r, "Authorization");
  snprintf(t->last_authz, sizeof t->last_authz, "%s", az ? az : "");
  if (t->status != 201) {
    ic_http_reply(r, (unsigned)t->status, "application/json", "{}", 2);
    return;
  }
  json_t *req = json_loadb(b, n, 0, NULL);
  const char *tok = json_string_value(json_object_get(json_object_get(req, "spec"), "token"));
  json_t *resp;
  if (tok && !strcmp(tok, "good"))
    resp = json_pack("{s:s,s:s,s:{s:b,s:{s:s}}}", "apiVersion", "authentication.k8s.io/v1", "kind",
                     "TokenReview", "status", "authenticated", 1, "user", "username", SA);
  else
    resp = json_pack("{s:{s:b,s:s}}", "status", "authenticated", 0, "error", "token expired");
  ic_http_reply_json(r, 201, resp);
  json_decref(resp);
  json_decref(req);
}

Test(auth, kube_review_over_https, .timeout = 120) {
  char dir[] = "/tmp/ic_auth_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/tls.key -out %s/tls.crt -days 1 "
           "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 && "
           "printf 'sa-token-1\\n' > %s/token",
           dir, dir, dir);
  cr_assert_eq(system(cmd), 0);
  char crt[256], key[256], tokf[256];
  snprintf(crt, sizeof crt, "%s/tls.crt", dir);
  snprintf(key, sizeof key, "%s/tls.key", dir);
  snprintf(tokf, sizeof tokf, "%s/token", dir);
  tr_t t = {.status = 201};
  ic_http_config_t hc = {
      .bind = "127.0.0.1:0", .threads = 1, .tls_cert_file = crt, .tls_key_file = key};
  ic_http_server_t *s = ic_http_new(&hc);
  ic_http_route_t rt = {.path = "/apis/authentication.k8s.io/v1/tokenreviews",
                        .methods = "POST",
                        .handler = tr_handler,
                        .ud = &t};
  ic_http_add_route(s, &rt);
  char err[256];
  cr_assert_eq(ic_http_start(s, err, sizeof err), 0, "%s", err);
  char url[128];
  snprintf(url, sizeof url, "https://127.0.0.1:%d/", ic_http_port(s));

  ic_auth_kube_config_t kc = {.api_url = url, .token_file = tokf, .ca_file = crt};
  ic_auth_kube_t *k = ic_auth_kube_new(&kc, err, sizeof err);
  cr_assert_not_null(k, "%s", err);
  ic_auth_review_t rv;
  cr_assert_eq(ic_auth_kube_review(k, "good", 4, "inferencecache.io/policy", &rv), 0);
  cr_assert(rv.authenticated);
  cr_assert_str_eq(rv.username, SA);
  cr_assert_str_eq(t.last_authz, "Bearer sa-token-1");
  json_t *sent = json_loads(t.last_body, 0, NULL);
  cr_assert_str_eq(json_string_value(json_object_get(sent, "kind")), "TokenReview");
  cr_assert_str_eq(json_string_value(json_object_get(sent, "apiVersion")),
                   "authentication.k8s.io/v1");
  json_t *auds = json_object_get(json_object_get(sent, "spec"), "audiences");
  cr_assert_eq(json_array_size(auds), 1);
  cr_assert_str_eq(json_string_value(json_array_get(auds, 0)), "inferencecache.io/policy");
  json_decref(sent);

  cr_assert_eq(ic_auth_kube_review(k, "nope", 4, "", &rv), 0);
  cr_assert(!rv.authenticated);
  cr_assert_str_eq(rv.error, "token expired");
  sent = json_loads(t.last_body, 0, NULL);
  cr_assert_null(json_object_get(json_object_get(sent, "spec"), "audiences"),
                 "empty audience -> no audiences field");
  json_decref(sent);

  /* Rotated SA token is picked up. */
  snprintf(cmd, sizeof cmd, "printf 'sa-token-2' > %s/token && touch -d '+2 seconds' %s/token", dir,
           dir);
  cr_assert_eq(system(cmd), 0);
  ic_auth_kube_review(k, "good", 4, "", &rv);
  cr_assert_str_eq(t.last_authz, "Bearer sa-token-2");

  /* RBAC 403 from the API server -> unavailable (fail closed). */
  t.status = 403;
  cr_assert_lt(ic_auth_kube_review(k, "good", 4, "", &rv), 0);
  t.status = 201;

  /* Whole path through ic_auth_check. */
  ic_auth_config_t ac = {.expected_user = SA,
                         .audience = "inferencecache.io/controller",
                         .reviewer = ic_auth_kube_review,
                         .reviewer_ud = k};
  ic_auth_t *a = ic_auth_new(&ac);
  cr_assert_eq(ic_auth_check(a, "Bearer good"), IC_AUTH_OK);
  cr_assert_eq(ic_auth_check(a, "Bearer nope"), IC_AUTH_UNAUTH);
  ic_auth_free(a);
  ic_http_stop(s, 1000);
  ic_http_free(s);

  /* API server gone -> error result. */
  ic_auth_t *a2 = ic_auth_new(&ac);
  cr_assert_eq(ic_auth_check(a2, "Bearer good"), IC_AUTH_ERROR);
  ic_auth_free(a2);
  ic_auth_kube_free(k);

  ic_auth_kube_config_t missing = {
      .api_url = url, .token_file = "/nonexistent/token", .ca_file = crt};
  cr_assert_null(ic_auth_kube_new(&missing, err, sizeof err));
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  system(cmd);
}

Test(auth, in_cluster_env_required) {
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  char err[256];
  cr_assert_null(ic_auth_kube_new(NULL, err, sizeof err));
  cr_assert_not_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
}
