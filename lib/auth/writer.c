/* lib/auth: who may write to the index (ReportCacheState / PublishEvent): verified client
 * certificates and TokenReview'd service-account tokens against allowed lists, fail closed.
 *
 * The review cache is set-associative (4 ways per bucket, buckets a power of two): a lookup is
 * one hash and four compares under a mutex held for nanoseconds, so a fleet of thousands of
 * subscribers each with its own token costs ingest nothing once reviewed. Accepted and
 * rejected verdicts are both cached (rejected ones briefly, so a client hammering with a bad
 * token cannot turn every call into an API-server request); review failures are not cached.
 * Reviews run outside the lock and at most max_reviews at a time: a call that would be one
 * too many is denied UNAVAILABLE at once instead of parking a gRPC thread behind a slow API
 * server (lookups share those threads). */
#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/auth.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"

#define WAYS 4
#define SA_PREFIX "system:serviceaccount:"

typedef struct {
  uint8_t key[32]; /* SHA-256 of the token */
  int64_t expiry_ms;
  uint8_t used;
  uint8_t verdict; /* ic_writer_result_t: OK, UNAUTHENTICATED or FORBIDDEN */
  char user[96];   /* username the review returned (for the denial log), truncated */
} wentry_t;

struct ic_writer_auth {
  bool tokens, certs;
  char *audience;
  char *allowed_sa, *allowed_certs;
  ic_auth_reviewer_fn reviewer;
  void *reviewer_ud;
  int64_t ttl_ms, neg_ttl_ms;
  size_t nbuckets; /* power of two */
  int max_reviews;
  _Atomic int reviews;
  ic_metric_family_t *denials;
  int64_t (*now_ms)(void *);
  void *now_ud;
  pthread_mutex_t mu;
  wentry_t *cache; /* nbuckets * WAYS */
  _Atomic int64_t last_log_ns;
};

/* Copies src into dst (cap bytes), cut to fit: usernames are kept for the denial log only. */
static void copy_cut(char *dst, size_t cap, const char *src) {
  size_t n = strnlen(src ? src : "", cap - 1);
  memcpy(dst, src ? src : "", n);
  dst[n] = 0;
}

static int64_t mono_ms(void *ud) {
  (void)ud;
  return ic_clock_monotonic_ns() / 1000000;
}

/* Non-empty entries of a comma list, whitespace trimmed; calls fn until it returns true. */
static bool each_entry(const char *list, bool (*fn)(void *, const char *, size_t), void *ud) {
  const char *p = list ? list : "";
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    const char *b = p;
    size_t m = n;
    while (m && isspace((unsigned char)*b)) b++, m--;
    while (m && isspace((unsigned char)b[m - 1])) m--;
    if (m && fn(ud, b, m)) return true;
    p += n + (e ? 1 : 0);
  }
  return false;
}

static bool count_one(void *ud, const char *p, size_t n) {
  (void)p, (void)n;
  ++*(size_t *)ud;
  return false;
}

typedef struct {
  const char *name;
  bool sa;
} match_t;

/* Pattern p (n bytes) against m->name: '*' alone = anything; a trailing '*' = prefix. Service
 * accounts: "ns:name" / "ns:*" stand for "system:serviceaccount:ns:name" / its namespace. */
static bool match_one(void *ud, const char *p, size_t n) {
  const match_t *m = ud;
  const char *name = m->name;
  if (n == 1 && p[0] == '*') return true;
  if (m->sa && !(n >= 7 && memcmp(p, "system:", 7) == 0)) {
    size_t pl = strlen(SA_PREFIX);
    if (strncmp(name, SA_PREFIX, pl) != 0) return false;
    name += pl;
  }
  if (p[n - 1] == '*') return strncmp(name, p, n - 1) == 0;
  return strlen(name) == n && memcmp(name, p, n) == 0;
}

bool ic_writer_auth_name_allowed(const char *list, const char *name, bool service_accounts) {
  if (!name || !*name) return false;
  match_t m = {.name = name, .sa = service_accounts};
  return each_entry(list, match_one, &m);
}

ic_writer_auth_t *ic_writer_auth_new(const ic_writer_auth_config_t *cfg, char *err, size_t errlen) {
  char tmp[8];
  if (!err) err = tmp, errlen = sizeof tmp;
  if (!cfg || (!cfg->accept_tokens && !cfg->accept_certs)) {
    snprintf(err, errlen, "writer auth: neither tokens nor client certificates are accepted");
    return NULL;
  }
  size_t nsa = 0, ncert = 0;
  each_entry(cfg->allowed_service_accounts, count_one, &nsa);
  each_entry(cfg->allowed_cert_names, count_one, &ncert);
  if (cfg->accept_tokens && !cfg->reviewer) {
    snprintf(err, errlen, "writer auth: tokens need a TokenReview client");
    return NULL;
  }
  if (cfg->accept_tokens && nsa == 0) {
    snprintf(err, errlen, "writer auth: tokens are accepted but no service account is allowed "
                          "(--writer-allowed-service-accounts)");
    return NULL;
  }
  if (cfg->accept_certs && ncert == 0) {
    snprintf(err, errlen, "writer auth: client certificates are accepted but no name is allowed "
                          "(--writer-allowed-cert-names)");
    return NULL;
  }
  ic_writer_auth_t *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->tokens = cfg->accept_tokens;
  w->certs = cfg->accept_certs;
  w->audience = strdup(cfg->audience ? cfg->audience : IC_AUTH_WRITER_AUDIENCE);
  w->allowed_sa = strdup(cfg->allowed_service_accounts ? cfg->allowed_service_accounts : "");
  w->allowed_certs = strdup(cfg->allowed_cert_names ? cfg->allowed_cert_names : "");
  w->reviewer = cfg->reviewer;
  w->reviewer_ud = cfg->reviewer_ud;
  w->ttl_ms = cfg->cache_ttl_ms > 0 ? cfg->cache_ttl_ms : IC_AUTH_WRITER_CACHE_TTL_MS;
  w->neg_ttl_ms = cfg->negative_ttl_ms > 0 ? cfg->negative_ttl_ms : IC_AUTH_WRITER_NEGATIVE_TTL_MS;
  size_t want = cfg->cache_max ? cfg->cache_max : IC_AUTH_WRITER_CACHE_MAX;
  w->nbuckets = 1;
  while (w->nbuckets * WAYS < want) w->nbuckets <<= 1;
  w->max_reviews = cfg->max_reviews > 0 ? cfg->max_reviews : 1;
  w->denials = cfg->denials;
  w->now_ms = cfg->now_ms ? cfg->now_ms : mono_ms;
  w->now_ud = cfg->now_ud;
  pthread_mutex_init(&w->mu, NULL);
  w->cache = calloc(w->nbuckets * WAYS, sizeof *w->cache);
  if (!w->audience || !w->allowed_sa || !w->allowed_certs || !w->cache) {
    snprintf(err, errlen, "out of memory");
    ic_writer_auth_free(w);
    return NULL;
  }
  return w;
}

void ic_writer_auth_free(ic_writer_auth_t *w) {
  if (!w) return;
  free(w->audience);
  free(w->allowed_sa);
  free(w->allowed_certs);
  free(w->cache);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

static wentry_t *bucket_of(ic_writer_auth_t *w, const uint8_t key[32]) {
  uint64_t h;
  memcpy(&h, key, sizeof h);
  return &w->cache[(h & (w->nbuckets - 1)) * WAYS];
}

/* Cached verdict of key, or -1. */
static int cache_get(ic_writer_auth_t *w, const uint8_t key[32], int64_t now, char *user,
                     size_t ucap) {
  int v = -1;
  pthread_mutex_lock(&w->mu);
  wentry_t *b = bucket_of(w, key);
  for (int i = 0; i < WAYS; i++) {
    if (!b[i].used || memcmp(b[i].key, key, 32) != 0) continue;
    if (b[i].expiry_ms > now) {
      v = b[i].verdict;
      copy_cut(user, ucap, b[i].user);
    } else {
      b[i].used = 0;
    }
    break;
  }
  pthread_mutex_unlock(&w->mu);
  return v;
}

static void cache_put(ic_writer_auth_t *w, const uint8_t key[32], int verdict, const char *user,
                      int64_t now) {
  pthread_mutex_lock(&w->mu);
  wentry_t *b = bucket_of(w, key), *slot = NULL;
  for (int i = 0; i < WAYS && !slot; i++)
    if (b[i].used && memcmp(b[i].key, key, 32) == 0) slot = &b[i];
  for (int i = 0; i < WAYS && !slot; i++)
    if (!b[i].used || b[i].expiry_ms <= now) slot = &b[i];
  if (!slot) { /* the entry expiring first makes room */
    slot = &b[0];
    for (int i = 1; i < WAYS; i++)
      if (b[i].expiry_ms < slot->expiry_ms) slot = &b[i];
  }
  memcpy(slot->key, key, 32);
  slot->used = 1;
  slot->verdict = (uint8_t)verdict;
  slot->expiry_ms = now + (verdict == IC_WRITER_OK ? w->ttl_ms : w->neg_ttl_ms);
  copy_cut(slot->user, sizeof slot->user, user);
  pthread_mutex_unlock(&w->mu);
}

/* Denials are counted always and logged at most every 10 s (a hostile client must not be
 * able to flood the log). */
static ic_writer_result_t deny(ic_writer_auth_t *w, ic_writer_result_t r, const char *reason,
                               const char *who, const char **out) {
  if (out) *out = reason;
  if (w->denials) {
    const char *lv[1] = {reason};
    ic_metric_t *c = ic_metric_child(w->denials, lv);
    if (c) ic_metric_inc(c);
  }
  int64_t now = ic_clock_monotonic_ns(), last = atomic_load(&w->last_log_ns);
  if ((!last || now - last >= 10LL * 1000000000) &&
      atomic_compare_exchange_strong(&w->last_log_ns, &last, now))
    ic_log_warn("writer_auth_denied", IC_LS("reason", reason), IC_LS("identity", who ? who : ""));
  return r;
}

static ic_writer_result_t check_token(ic_writer_auth_t *w, const char *authz, const char **reason) {
  const char *tok;
  size_t len;
  if (!ic_http_parse_bearer(authz, &tok, &len))
    return deny(w, IC_WRITER_UNAUTHENTICATED, IC_WRITER_DENY_BAD_TOKEN, NULL, reason);
  uint8_t key[32];
  unsigned int mdlen = 0;
  if (EVP_Digest(tok, len, key, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
    return deny(w, IC_WRITER_UNAVAILABLE, IC_WRITER_DENY_REVIEW, NULL, reason);
  char user[96] = "";
  int v = cache_get(w, key, w->now_ms(w->now_ud), user, sizeof user);
  if (v < 0) {
    if (atomic_fetch_add(&w->reviews, 1) >= w->max_reviews) {
      atomic_fetch_sub(&w->reviews, 1);
      return deny(w, IC_WRITER_UNAVAILABLE, IC_WRITER_DENY_REVIEW, "(reviews busy)", reason);
    }
    ic_auth_review_t rv;
    memset(&rv, 0, sizeof rv);
    int rc = w->reviewer(w->reviewer_ud, tok, len, w->audience, &rv);
    atomic_fetch_sub(&w->reviews, 1);
    if (rc != 0) return deny(w, IC_WRITER_UNAVAILABLE, IC_WRITER_DENY_REVIEW, NULL, reason);
    rv.username[sizeof rv.username - 1] = 0;
    if (!rv.authenticated)
      v = IC_WRITER_UNAUTHENTICATED;
    else if (!ic_writer_auth_name_allowed(w->allowed_sa, rv.username, true))
      v = IC_WRITER_FORBIDDEN;
    else
      v = IC_WRITER_OK;
    copy_cut(user, sizeof user, rv.username);
    cache_put(w, key, v, user, w->now_ms(w->now_ud));
  }
  if (v == IC_WRITER_OK) return IC_WRITER_OK;
  if (v == IC_WRITER_FORBIDDEN)
    return deny(w, IC_WRITER_FORBIDDEN, IC_WRITER_DENY_IDENTITY, user, reason);
  return deny(w, IC_WRITER_UNAUTHENTICATED, IC_WRITER_DENY_BAD_TOKEN, NULL, reason);
}

ic_writer_result_t ic_writer_auth_check(ic_writer_auth_t *w, const ic_writer_creds_t *c,
                                        const char **reason) {
  if (reason) *reason = NULL;
  static const ic_writer_creds_t none = {0};
  if (!c) c = &none;
  bool cert_denied = false;
  if (w->certs && c->cert_verified) {
    for (size_t i = 0; i < c->n_cert_names; i++)
      if (ic_writer_auth_name_allowed(w->allowed_certs, c->cert_names[i], false))
        return IC_WRITER_OK;
    cert_denied = true;
  }
  /* A token is still tried after a certificate that is not allowed: a pod may hold both. */
  if (w->tokens && c->authorization) return check_token(w, c->authorization, reason);
  if (cert_denied)
    return deny(w, IC_WRITER_FORBIDDEN, IC_WRITER_DENY_CERT,
                c->n_cert_names ? c->cert_names[0] : "", reason);
  return deny(w, IC_WRITER_UNAUTHENTICATED, IC_WRITER_DENY_NO_CREDENTIALS, NULL, reason);
}
