/* lib/auth: who may write to the index (ReportCacheState / PublishEvent): verified client
 * certificates and TokenReview'd service-account tokens against allowed lists, fail closed.
 *
 * The review cache is set-associative (4 ways per bucket, buckets a power of two): a lookup is
 * one XXH3 of the token and a compare of its bytes under a mutex held for nanoseconds, so a fleet
 * of thousands of subscribers each with its own token costs ingest nothing once reviewed. Accepted
 * and rejected verdicts are both cached (rejected ones briefly, so a client hammering with a bad
 * token cannot turn every call into an API-server request); review failures are not cached.
 * Reviews run on the checker's own threads (max_reviews of them), never on the caller's: gRPC
 * core hands calls to completion-queue threads in turn, so one thread parked on a slow API
 * server would stall the lookups queued behind it. A call whose token is not cached waits for
 * its review at most IC_AUTH_WRITER_INLINE_WAIT_MS (a healthy API server answers in a few ms)
 * and is otherwise denied UNAVAILABLE while the review goes on (the writer retries and then
 * hits the cache). Concurrent calls with one token share one review; an accepted verdict past
 * half its TTL is refreshed in the background so steady writers never wait. */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "ic/auth.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"

#define WAYS 4
#define MAX_PENDING 256 /* reviews queued or running; beyond it calls are denied at once */
#define SA_PREFIX "system:serviceaccount:"

/* A token as the cache knows it: XXH3 picks the bucket, the bytes themselves are compared, so
 * no crafted token can pass for a cached one (a 64-bit digest alone could be collided). */
typedef struct {
  uint64_t h;
  const char *tok;
  size_t len;
} tkey_t;

typedef struct {
  uint64_t h;
  char *tok; /* malloc'd copy, zeroed before it is freed; NULL = free slot */
  size_t len;
  int64_t expiry_ms;
  uint8_t verdict; /* ic_writer_result_t: OK, UNAUTHENTICATED or FORBIDDEN */
  char user[96];   /* username the review returned (for the denial log), truncated */
} wentry_t;

static void entry_clear(wentry_t *e);

/* One review queued or running; shared by the calls waiting for it (refs). */
typedef struct pending {
  struct pending *next;
  uint64_t h;
  char *token;
  size_t len;
  bool running, done;
  int verdict; /* when done: ic_writer_result_t (UNAVAILABLE = review failed) */
  char user[96];
  int refs; /* the queue/worker + each waiting call */
} pending_t;

struct ic_writer_auth {
  bool tokens, certs;
  char *audience;
  char *allowed_sa, *allowed_certs;
  ic_auth_reviewer_fn reviewer;
  void *reviewer_ud;
  int64_t ttl_ms, neg_ttl_ms;
  size_t nbuckets; /* power of two */
  int inline_wait_ms;
  ic_metric_family_t *denials;
  int64_t (*now_ms)(void *);
  void *now_ud;
  pthread_mutex_t mu;
  wentry_t *cache; /* nbuckets * WAYS */
  _Atomic int64_t last_log_ns;
  /* review workers (guarded by mu) */
  pthread_cond_t work_cv, done_cv;
  pending_t *pending; /* all queued or running reviews */
  size_t npending;
  bool stopping;
  pthread_t *workers;
  int nworkers;
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
    while (m && isspace((unsigned char)*b))
      b++, m--;
    while (m && isspace((unsigned char)b[m - 1]))
      m--;
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

static void *review_worker(void *arg);

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
    snprintf(err, errlen,
             "writer auth: tokens are accepted but no service account is allowed "
             "(--writer-allowed-service-accounts)");
    return NULL;
  }
  if (cfg->accept_certs && ncert == 0) {
    snprintf(err, errlen,
             "writer auth: client certificates are accepted but no name is allowed "
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
  w->inline_wait_ms = cfg->inline_wait_ms > 0   ? cfg->inline_wait_ms
                      : cfg->inline_wait_ms < 0 ? 0
                                                : IC_AUTH_WRITER_INLINE_WAIT_MS;
  size_t want = cfg->cache_max ? cfg->cache_max : IC_AUTH_WRITER_CACHE_MAX;
  w->nbuckets = 1;
  while (w->nbuckets * WAYS < want)
    w->nbuckets <<= 1;
  w->denials = cfg->denials;
  w->now_ms = cfg->now_ms ? cfg->now_ms : mono_ms;
  w->now_ud = cfg->now_ud;
  pthread_mutex_init(&w->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->work_cv, &ca);
  pthread_cond_init(&w->done_cv, &ca);
  pthread_condattr_destroy(&ca);
  w->cache = calloc(w->nbuckets * WAYS, sizeof *w->cache);
  int nworkers = w->tokens ? (cfg->max_reviews > 0 ? cfg->max_reviews : 1) : 0;
  w->workers = nworkers ? calloc((size_t)nworkers, sizeof *w->workers) : NULL;
  if (!w->audience || !w->allowed_sa || !w->allowed_certs || !w->cache ||
      (nworkers && !w->workers)) {
    snprintf(err, errlen, "out of memory");
    ic_writer_auth_free(w);
    return NULL;
  }
  for (int i = 0; i < nworkers; i++) {
    if (pthread_create(&w->workers[i], NULL, review_worker, w) != 0) break;
    w->nworkers++;
  }
  if (nworkers && !w->nworkers) {
    snprintf(err, errlen, "writer auth: cannot start a review thread");
    ic_writer_auth_free(w);
    return NULL;
  }
  return w;
}

static void pending_unref(pending_t *p) { /* mu held */
  if (--p->refs > 0) return;
  if (p->token) memset(p->token, 0, p->len);
  free(p->token);
  free(p);
}

void ic_writer_auth_free(ic_writer_auth_t *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stopping = true;
  pthread_cond_broadcast(&w->work_cv);
  pthread_mutex_unlock(&w->mu);
  for (int i = 0; i < w->nworkers; i++)
    pthread_join(w->workers[i], NULL);
  /* No caller may be inside ic_writer_auth_check now; queued reviews are dropped. */
  while (w->pending) {
    pending_t *p = w->pending;
    w->pending = p->next;
    p->refs = 1;
    pending_unref(p);
  }
  for (size_t i = 0; w->cache && i < w->nbuckets * WAYS; i++)
    entry_clear(&w->cache[i]);
  free(w->workers);
  free(w->audience);
  free(w->allowed_sa);
  free(w->allowed_certs);
  free(w->cache);
  pthread_cond_destroy(&w->work_cv);
  pthread_cond_destroy(&w->done_cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

static bool same(uint64_t h, const char *tok, size_t len, const tkey_t *k) {
  return h == k->h && len == k->len && memcmp(tok, k->tok, len) == 0;
}

static void entry_clear(wentry_t *e) {
  if (!e->tok) return;
  memset(e->tok, 0, e->len);
  free(e->tok);
  e->tok = NULL;
}

static wentry_t *bucket_of(ic_writer_auth_t *w, uint64_t h) {
  return &w->cache[(h & (w->nbuckets - 1)) * WAYS];
}

/* Cached verdict of k or -1; *stale when an accepted verdict is past half its TTL. mu held. */
static int cache_get(ic_writer_auth_t *w, const tkey_t *k, int64_t now, char *user, size_t ucap,
                     bool *stale) {
  wentry_t *b = bucket_of(w, k->h);
  for (int i = 0; i < WAYS; i++) {
    if (!b[i].tok || !same(b[i].h, b[i].tok, b[i].len, k)) continue;
    if (b[i].expiry_ms <= now) {
      entry_clear(&b[i]);
      return -1;
    }
    copy_cut(user, ucap, b[i].user);
    *stale = b[i].verdict == IC_WRITER_OK && b[i].expiry_ms - now < w->ttl_ms / 2;
    return b[i].verdict;
  }
  return -1;
}

/* mu held. */
static void cache_put(ic_writer_auth_t *w, const tkey_t *k, int verdict, const char *user,
                      int64_t now) {
  wentry_t *b = bucket_of(w, k->h), *slot = NULL;
  for (int i = 0; i < WAYS && !slot; i++)
    if (b[i].tok && same(b[i].h, b[i].tok, b[i].len, k)) slot = &b[i];
  for (int i = 0; i < WAYS && !slot; i++)
    if (!b[i].tok || b[i].expiry_ms <= now) slot = &b[i];
  if (!slot) { /* the entry expiring first makes room */
    slot = &b[0];
    for (int i = 1; i < WAYS; i++)
      if (b[i].expiry_ms < slot->expiry_ms) slot = &b[i];
  }
  if (!slot->tok || !same(slot->h, slot->tok, slot->len, k)) {
    entry_clear(slot);
    if (!(slot->tok = malloc(k->len ? k->len : 1))) return; /* not cached: reviewed again */
    memcpy(slot->tok, k->tok, k->len);
    slot->len = k->len;
    slot->h = k->h;
  }
  slot->verdict = (uint8_t)verdict;
  slot->expiry_ms = now + (verdict == IC_WRITER_OK ? w->ttl_ms : w->neg_ttl_ms);
  copy_cut(slot->user, sizeof slot->user, user);
}

static pending_t *pending_find(ic_writer_auth_t *w, const tkey_t *k) { /* mu held */
  for (pending_t *p = w->pending; p; p = p->next)
    if (same(p->h, p->token, p->len, k)) return p;
  return NULL;
}

/* Queues a review of the token unless one is queued already or the queue is full (NULL).
 * mu held. */
static pending_t *pending_add(ic_writer_auth_t *w, const tkey_t *k) {
  pending_t *p = pending_find(w, k);
  if (p) return p;
  if (w->npending >= MAX_PENDING) return NULL;
  p = calloc(1, sizeof *p);
  if (!p || !(p->token = malloc(k->len + 1))) {
    free(p);
    return NULL;
  }
  memcpy(p->token, k->tok, k->len);
  p->token[k->len] = 0;
  p->len = k->len;
  p->h = k->h;
  p->refs = 1; /* the queue's */
  p->next = w->pending;
  w->pending = p;
  w->npending++;
  pthread_cond_signal(&w->work_cv);
  return p;
}

static void pending_remove(ic_writer_auth_t *w, pending_t *p) { /* mu held */
  for (pending_t **pp = &w->pending; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      w->npending--;
      return;
    }
}

static void *review_worker(void *arg) {
  ic_writer_auth_t *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    pending_t *p = NULL;
    while (!w->stopping) {
      for (pending_t *q = w->pending; q; q = q->next)
        if (!q->running) p = q; /* the oldest: new ones are pushed at the head */
      if (p) break;
      pthread_cond_wait(&w->work_cv, &w->mu);
    }
    if (w->stopping) break;
    p->running = true;
    pthread_mutex_unlock(&w->mu);
    ic_auth_review_t rv;
    memset(&rv, 0, sizeof rv);
    int rc = w->reviewer(w->reviewer_ud, p->token, p->len, w->audience, &rv);
    rv.username[sizeof rv.username - 1] = 0;
    int v = IC_WRITER_UNAVAILABLE;
    if (rc == 0)
      v = !rv.authenticated ? IC_WRITER_UNAUTHENTICATED
          : ic_writer_auth_name_allowed(w->allowed_sa, rv.username, true) ? IC_WRITER_OK
                                                                          : IC_WRITER_FORBIDDEN;
    pthread_mutex_lock(&w->mu);
    copy_cut(p->user, sizeof p->user, rv.username);
    tkey_t k = {p->h, p->token, p->len};
    if (v != IC_WRITER_UNAVAILABLE) cache_put(w, &k, v, p->user, w->now_ms(w->now_ud));
    p->verdict = v;
    p->done = true;
    pending_remove(w, p);
    pending_unref(p);
    pthread_cond_broadcast(&w->done_cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
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
  tkey_t key = {XXH3_64bits(tok, len), tok, len};
  char user[96] = "";
  bool stale = false;
  pthread_mutex_lock(&w->mu);
  int v = cache_get(w, &key, w->now_ms(w->now_ud), user, sizeof user, &stale);
  if (v >= 0) {
    if (stale) pending_add(w, &key); /* refresh in the background; no wait */
  } else {
    pending_t *p = pending_add(w, &key);
    v = IC_WRITER_UNAVAILABLE;
    if (p && w->inline_wait_ms > 0) {
      p->refs++;
      struct timespec dl;
      clock_gettime(CLOCK_MONOTONIC, &dl);
      int64_t ns = dl.tv_nsec + (int64_t)w->inline_wait_ms * 1000000;
      dl.tv_sec += ns / 1000000000;
      dl.tv_nsec = ns % 1000000000;
      while (!p->done && !w->stopping && pthread_cond_timedwait(&w->done_cv, &w->mu, &dl) == 0) {
      }
      if (p->done) {
        v = p->verdict;
        copy_cut(user, sizeof user, p->user);
      }
      pending_unref(p);
    }
  }
  pthread_mutex_unlock(&w->mu);
  if (v == IC_WRITER_OK) return IC_WRITER_OK;
  if (v == IC_WRITER_FORBIDDEN)
    return deny(w, IC_WRITER_FORBIDDEN, IC_WRITER_DENY_IDENTITY, user, reason);
  if (v == IC_WRITER_UNAVAILABLE)
    return deny(w, IC_WRITER_UNAVAILABLE, IC_WRITER_DENY_REVIEW, NULL, reason);
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
