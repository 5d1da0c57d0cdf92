/* lib/auth: per-endpoint bearer authentication via TokenReview with a small success cache, and a
 * libcurl TokenReview client for the in-cluster API server (docs/server.md).
 *
 * The cache is a fixed array scanned linearly: 32 entries, so a scan is cheaper than a hash
 * table and keeps eviction ("earliest expiry first") trivial. Reviews run outside the lock;
 * two concurrent first requests with one token may both review, which only costs a call. */
#include "ic/auth.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"

/* A service-account token is a few KiB; more is not a token. */
#define MAX_TOKEN_BYTES (64u * 1024)

const char *ic_auth_result_label(ic_auth_result_t r) {
  switch (r) {
  case IC_AUTH_OK: return "ok";
  case IC_AUTH_UNAUTH: return "unauth";
  case IC_AUTH_FORBIDDEN: return "forbidden";
  default: return "error";
  }
}

typedef struct entry {
  char key[65]; /* lowercase hex SHA-256 of the token; "" = free slot */
  int64_t expiry_ms;
} entry_t;

struct ic_auth {
  char *expected_user;
  char *audience; /* "" = none */
  ic_auth_reviewer_fn reviewer;
  void *reviewer_ud;
  ic_metric_family_t *family; /* children created on first use: silent until then */
  int64_t ttl_ms;
  size_t cap;
  int64_t (*now_ms)(void *);
  void *now_ud;
  pthread_mutex_t mu;
  entry_t *cache;
};

static int64_t mono_ms(void *ud) {
  (void)ud;
  return ic_clock_monotonic_ns() / 1000000;
}

ic_auth_t *ic_auth_new(const ic_auth_config_t *cfg) {
  if (!cfg || !cfg->reviewer || !cfg->expected_user || !*cfg->expected_user) return NULL;
  ic_auth_t *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->expected_user = strdup(cfg->expected_user);
  a->audience = strdup(cfg->audience ? cfg->audience : "");
  a->reviewer = cfg->reviewer;
  a->reviewer_ud = cfg->reviewer_ud;
  a->family = cfg->counter;
  a->ttl_ms = cfg->cache_ttl_ms > 0 ? cfg->cache_ttl_ms : IC_AUTH_DEFAULT_CACHE_TTL_MS;
  a->cap = cfg->cache_max ? cfg->cache_max : IC_AUTH_DEFAULT_CACHE_MAX;
  a->now_ms = cfg->now_ms ? cfg->now_ms : mono_ms;
  a->now_ud = cfg->now_ud;
  a->cache = calloc(a->cap, sizeof *a->cache);
  pthread_mutex_init(&a->mu, NULL);
  if (!a->expected_user || !a->audience || !a->cache) {
    ic_auth_free(a);
    return NULL;
  }
  return a;
}

void ic_auth_free(ic_auth_t *a) {
  if (!a) return;
  free(a->expected_user);
  free(a->audience);
  free(a->cache);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

static void count(ic_auth_t *a, ic_auth_result_t r) {
  if (!a->family) return;
  const char *lv[1] = {ic_auth_result_label(r)};
  ic_metric_t *c = ic_metric_child(a->family, lv);
  if (c) ic_metric_inc(c);
}

static void token_key(const char *tok, size_t len, char out[65]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_Digest(tok, len, md, &mdlen, EVP_sha256(), NULL);
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hx[md[i] >> 4];
    out[2 * i + 1] = hx[md[i] & 15];
  }
  out[64] = 0;
}

/* Hit = present and expiry strictly after now; an expired match is deleted. */
static bool cache_hit(ic_auth_t *a, const char *key, int64_t now) {
  bool hit = false;
  pthread_mutex_lock(&a->mu);
  for (size_t i = 0; i < a->cap; i++) {
    entry_t *e = &a->cache[i];
    if (!e->key[0] || strcmp(e->key, key) != 0) continue;
    if (e->expiry_ms > now)
      hit = true;
    else
      e->key[0] = 0;
    break;
  }
  pthread_mutex_unlock(&a->mu);
  return hit;
}

static void cache_put(ic_auth_t *a, const char *key, int64_t now) {
  pthread_mutex_lock(&a->mu);
  entry_t *slot = NULL;
  for (size_t i = 0; i < a->cap && !slot; i++)
    if (a->cache[i].key[0] && strcmp(a->cache[i].key, key) == 0) slot = &a->cache[i];
  if (!slot) {
    for (size_t i = 0; i < a->cap; i++) /* full or not: expired entries go first */
      if (a->cache[i].key[0] && a->cache[i].expiry_ms <= now) a->cache[i].key[0] = 0;
    for (size_t i = 0; i < a->cap && !slot; i++)
      if (!a->cache[i].key[0]) slot = &a->cache[i];
  }
  if (!slot) {
    slot = &a->cache[0];
    for (size_t i = 1; i < a->cap; i++)
      if (a->cache[i].expiry_ms < slot->expiry_ms) slot = &a->cache[i];
  }
  memcpy(slot->key, key, 65);
  slot->expiry_ms = now + a->ttl_ms;
  pthread_mutex_unlock(&a->mu);
}

void ic_auth_set_counter(ic_auth_t *a, ic_metric_family_t *counter) {
  if (a) a->family = counter;
}

size_t ic_auth_cache_size(ic_auth_t *a) {
  size_t n = 0;
  pthread_mutex_lock(&a->mu);
  for (size_t i = 0; i < a->cap; i++)
    n += a->cache[i].key[0] != 0;
  pthread_mutex_unlock(&a->mu);
  return n;
}

ic_auth_result_t ic_auth_check(ic_auth_t *a, const char *authorization) {
  const char *tok;
  size_t len;
  ic_auth_result_t r;
  if (!ic_http_parse_bearer(authorization, &tok, &len)) {
    r = IC_AUTH_UNAUTH;
    goto done;
  }
  char key[65];
  token_key(tok, len, key);
  if (cache_hit(a, key, a->now_ms(a->now_ud))) {
    r = IC_AUTH_OK;
    goto done;
  }
  ic_auth_review_t rv;
  memset(&rv, 0, sizeof rv);
  if (a->reviewer(a->reviewer_ud, tok, len, a->audience, &rv) != 0) {
    r = IC_AUTH_ERROR;
    goto done;
  }
  if (!rv.authenticated) {
    if (rv.error[0]) ic_log_warn("auth_token_review_unauthenticated", IC_LS("error", rv.error));
    r = IC_AUTH_UNAUTH;
    goto done;
  }
  if (strcmp(rv.username, a->expected_user) != 0) {
    r = IC_AUTH_FORBIDDEN;
    goto done;
  }
  cache_put(a, key, a->now_ms(a->now_ud));
  r = IC_AUTH_OK;
done:
  count(a, r);
  return r;
}

bool ic_auth_http_hook(ic_http_req_t *req, void *ud) {
  ic_auth_t *a = ud;
  switch (ic_auth_check(a, ic_http_req_header(req, "Authorization"))) {
  case IC_AUTH_OK: return true;
  case IC_AUTH_UNAUTH: ic_http_reply_error(req, 401, "unauthorized\n"); return false;
  case IC_AUTH_FORBIDDEN: ic_http_reply_error(req, 403, "forbidden\n"); return false;
  default: ic_http_reply_error(req, 503, "token review unavailable\n"); return false;
  }
}

/* ---------------------------------------------------------------------------------------- */
/* TokenReview over HTTPS */

struct ic_auth_kube {
  char *url; /* full tokenreviews URL */
  char *token_file;
  char *ca_file;
  long timeout_ms;
  pthread_mutex_t mu;
  char *sa_token; /* cached service-account token, refreshed when the file changes */
  struct timespec sa_mtime;
  _Atomic int64_t last_log_ns;
};

static char *env_or(const char *name, const char *dflt) {
  const char *v = getenv(name);
  return strdup(v && *v ? v : dflt);
}

/* The service account's token: a single line; surrounding white space is not part of it. */
static char *read_token(const char *path, char *err, size_t errlen) {
  ic_buf_t b = IC_BUF_INIT;
  int rc = ic_buf_read_file_trimmed(path, MAX_TOKEN_BYTES, &b, NULL);
  if (rc == IC_ERANGE)
    snprintf(err, errlen, "%s: token longer than %u bytes", path, MAX_TOKEN_BYTES);
  else if (rc)
    snprintf(err, errlen, "open %s: %s", path, strerror(errno));
  return rc ? NULL : ic_buf_detach(&b, NULL);
}

/* Returns a malloc'd copy of the current SA token, re-reading the file when it changed. */
static char *sa_token(ic_auth_kube_t *k) {
  struct stat st;
  char err[256];
  pthread_mutex_lock(&k->mu);
  if (stat(k->token_file, &st) == 0 &&
      (st.st_mtim.tv_sec != k->sa_mtime.tv_sec || st.st_mtim.tv_nsec != k->sa_mtime.tv_nsec)) {
    char *t = read_token(k->token_file, err, sizeof err);
    if (t) {
      free(k->sa_token);
      k->sa_token = t;
      k->sa_mtime = st.st_mtim;
    }
  }
  char *c = k->sa_token ? strdup(k->sa_token) : NULL;
  pthread_mutex_unlock(&k->mu);
  return c;
}

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

ic_auth_kube_t *ic_auth_kube_new(const ic_auth_kube_config_t *cfg, char *err, size_t errlen) {
  pthread_once(&g_curl_once, curl_init_once);
  char tmp[8];
  if (!err) {
    err = tmp;
    errlen = sizeof tmp;
  }
  ic_auth_kube_config_t dflt = {0};
  if (!cfg) cfg = &dflt;
  ic_auth_kube_t *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  pthread_mutex_init(&k->mu, NULL);
  ic_buf_t u = IC_BUF_INIT;
  if (cfg->api_url && *cfg->api_url) {
    ic_buf_append_str(&u, cfg->api_url);
  } else {
    const char *h = getenv("KUBERNETES_SERVICE_HOST"), *p = getenv("KUBERNETES_SERVICE_PORT");
    if (!h || !*h || !p || !*p) {
      snprintf(err, errlen,
               "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
               "KUBERNETES_SERVICE_PORT must be defined");
      ic_auth_kube_free(k);
      return NULL;
    }
    if (strchr(h, ':'))
      ic_buf_appendf(&u, "https://[%s]:%s", h, p);
    else
      ic_buf_appendf(&u, "https://%s:%s", h, p);
  }
  while (u.len && u.data[u.len - 1] == '/')
    u.data[--u.len] = 0;
  ic_buf_append_str(&u, "/apis/authentication.k8s.io/v1/tokenreviews");
  k->url = ic_buf_detach(&u, NULL);
  k->token_file = cfg->token_file ? strdup(cfg->token_file)
                                  : env_or("IC_SA_TOKEN_FILE",
                                           "/var/run/secrets/kubernetes.io/serviceaccount/token");
  k->ca_file = cfg->ca_file ? strdup(cfg->ca_file)
                            : env_or("IC_SA_CA_FILE",
                                     "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
  k->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 10000;
  if (!k->url || !k->token_file || !k->ca_file) {
    snprintf(err, errlen, "out of memory");
    ic_auth_kube_free(k);
    return NULL;
  }
  char *t = read_token(k->token_file, err, errlen);
  if (!t) {
    ic_auth_kube_free(k);
    return NULL;
  }
  free(t);
  struct stat st;
  if (stat(k->ca_file, &st) != 0) {
    snprintf(err, errlen, "open %s: %s", k->ca_file, strerror(errno));
    ic_auth_kube_free(k);
    return NULL;
  }
  return k;
}

void ic_auth_kube_free(ic_auth_kube_t *k) {
  if (!k) return;
  free(k->url);
  free(k->token_file);
  free(k->ca_file);
  free(k->sa_token);
  pthread_mutex_destroy(&k->mu);
  free(k);
}

/* Review failures are logged at most every 10 s: an unreachable API server must not turn every
 * controller poll into a log line (the reference logs nothing there; we say it once in a while). */
static bool log_allowed(ic_auth_kube_t *k) {
  int64_t now = ic_clock_monotonic_ns();
  int64_t last = atomic_load(&k->last_log_ns);
  if (last && now - last < 10LL * 1000000000) return false;
  return atomic_compare_exchange_strong(&k->last_log_ns, &last, now);
}

static size_t collect(char *p, size_t sz, size_t n, void *ud) {
  ic_buf_t *b = ud;
  if (b->len + sz * n > (4u << 20)) return 0; /* a review is small; refuse runaway bodies */
  return ic_buf_append(b, p, sz * n) == 0 ? sz * n : 0;
}

int ic_auth_kube_review(void *kube, const char *token, size_t len, const char *audience,
                        ic_auth_review_t *out) {
  ic_auth_kube_t *k = kube;
  memset(out, 0, sizeof *out);
  json_t *req = json_pack("{s:s,s:s,s:{s:s%}}", "apiVersion", "authentication.k8s.io/v1", "kind",
                          "TokenReview", "spec", "token", token, len);
  if (!req) return IC_ENOMEM;
  if (audience && *audience) {
    json_t *spec = json_object_get(req, "spec");
    json_object_set_new(spec, "audiences", json_pack("[s]", audience));
  }
  char *body = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  char *sa = sa_token(k);
  if (!body || !sa) {
    free(body);
    free(sa);
    return IC_EUNAVAIL;
  }
  CURL *c = curl_easy_init();
  if (!c) {
    free(body);
    free(sa);
    return IC_ENOMEM;
  }
  ic_buf_t authz = IC_BUF_INIT, resp = IC_BUF_INIT;
  ic_buf_appendf(&authz, "Authorization: Bearer %s", sa);
  free(sa);
  struct curl_slist *h = NULL;
  h = curl_slist_append(h, authz.data);
  h = curl_slist_append(h, "Content-Type: application/json");
  h = curl_slist_append(h, "Accept: application/json");
  h = curl_slist_append(h, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, k->url);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_CAINFO, k->ca_file);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, k->timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
  CURLcode cr = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  /* The SA token must not linger in freed memory longer than needed. */
  if (authz.data) memset(authz.data, 0, authz.len);
  ic_buf_free(&authz);
  free(body);
  int rc = 0;
  if (cr != CURLE_OK) {
    if (log_allowed(k))
      ic_log_warn("auth_token_review_failed", IC_LS("err", curl_easy_strerror(cr)));
    rc = IC_EUNAVAIL;
  } else if (status < 200 || status > 299) {
    if (log_allowed(k)) ic_log_warn("auth_token_review_failed", IC_LI("status", status));
    rc = IC_EUNAVAIL;
  } else {
    json_error_t je;
    json_t *j = resp.data ? json_loadb(resp.data, resp.len, 0, &je) : NULL;
    json_t *st = j ? json_object_get(j, "status") : NULL;
    if (!json_is_object(j)) {
      rc = IC_EUNAVAIL; /* nil/empty review: fail closed */
    } else {
      out->authenticated = json_is_true(json_object_get(st, "authenticated"));
      const char *u = json_string_value(json_object_get(json_object_get(st, "user"), "username"));
      const char *e = json_string_value(json_object_get(st, "error"));
      if (u) snprintf(out->username, sizeof out->username, "%s", u);
      if (e) snprintf(out->error, sizeof out->error, "%s", e);
    }
    json_decref(j);
  }
  ic_buf_free(&resp);
  return rc;
}
