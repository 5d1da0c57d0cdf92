/* Bearer-token authentication through Kubernetes TokenReview (lib/auth), docs/server.md.
 *
 * An ic_auth_t guards one endpoint: it expects one service-account username and one audience,
 * caches successful reviews for 30 s (at most 32 entries, keyed by SHA-256 of the token), fails
 * closed (503) when the review cannot be made, and counts exactly one `result` label
 * (ok|unauth|forbidden|error) per request. The reviewer is pluggable: production uses
 * ic_auth_kube_review (libcurl to the API server with the pod's service-account token and CA),
 * unit tests may pass their own function.
 * Thread-safety: ic_auth_check and the HTTP hook may run concurrently from any thread; the
 * review itself runs outside the cache lock. Ownership: strings are copied. */
#ifndef IC_AUTH_H
#define IC_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/http.h"
#include "ic/metrics.h"

#define IC_AUTH_CONTROLLER_AUDIENCE "inferencecache.io/controller"
#define IC_AUTH_POLICY_AUDIENCE "inferencecache.io/policy"
#define IC_AUTH_DEFAULT_CACHE_TTL_MS 30000
#define IC_AUTH_DEFAULT_CACHE_MAX 32

typedef enum {
  IC_AUTH_OK = 0,
  IC_AUTH_UNAUTH = 1,    /* 401 "unauthorized" */
  IC_AUTH_FORBIDDEN = 2, /* 403 "forbidden" */
  IC_AUTH_ERROR = 3,     /* 503 "token review unavailable" */
} ic_auth_result_t;

/* "ok", "unauth", "forbidden", "error". */
const char *ic_auth_result_label(ic_auth_result_t r);

/* What a TokenReview said. */
typedef struct ic_auth_review {
  bool authenticated;
  char username[512];
  char error[512]; /* status.error, may be empty */
} ic_auth_review_t;

/* Performs one review. Returns 0 with *out filled, or a negative IC_E* when no usable review
 * came back (transport/HTTP error, empty review) — the caller then fails closed. */
typedef int (*ic_auth_reviewer_fn)(void *ud, const char *token, size_t len, const char *audience,
                                   ic_auth_review_t *out);

typedef struct ic_auth_config {
  const char *expected_user;    /* required, e.g. system:serviceaccount:ns:name */
  const char *audience;         /* NULL or "" = no audiences field in the review */
  ic_auth_reviewer_fn reviewer; /* required */
  void *reviewer_ud;
  ic_metric_family_t *counter; /* optional counter family with one label "result" */
  int64_t cache_ttl_ms;        /* 0 = 30 s */
  size_t cache_max;            /* 0 = 32 */
  int64_t (*now_ms)(void *ud); /* clock for cache expiry; NULL = monotonic */
  void *now_ud;
} ic_auth_config_t;

typedef struct ic_auth ic_auth_t;

/* NULL when the reviewer or expected user is missing, or on allocation failure. */
ic_auth_t *ic_auth_new(const ic_auth_config_t *cfg);
void ic_auth_free(ic_auth_t *a);

/* Runs bearer auth for one Authorization header value (may be NULL) and counts the
 * result. */
ic_auth_result_t ic_auth_check(ic_auth_t *a, const char *authorization);
/* ic_http_auth_fn: checks the request and on failure replies 401/403/503 with Go's bodies. */
bool ic_auth_http_hook(ic_http_req_t *req, void *auth);
/* Sets (or replaces) the result counter family after construction, for programs that build
 * their metrics registry after their authenticators. Call before serving requests. */
void ic_auth_set_counter(ic_auth_t *a, ic_metric_family_t *counter);
/* Entries currently cached (tests). */
size_t ic_auth_cache_size(ic_auth_t *a);

/* ---- TokenReview client against the Kubernetes API server ---- */
typedef struct ic_auth_kube ic_auth_kube_t;

typedef struct ic_auth_kube_config {
  /* NULL = in-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT. */
  const char *api_url;
  /* NULL = $IC_SA_TOKEN_FILE or /var/run/secrets/kubernetes.io/serviceaccount/token. Re-read on
   * change, since projected tokens rotate. */
  const char *token_file;
  /* NULL = $IC_SA_CA_FILE or /var/run/secrets/kubernetes.io/serviceaccount/ca.crt. */
  const char *ca_file;
  long timeout_ms; /* 0 = 10 s per review */
} ic_auth_kube_config_t;

/* Fails (NULL, reason in err) like client-go's in-cluster config: missing service env or an
 * unreadable token file. */
ic_auth_kube_t *ic_auth_kube_new(const ic_auth_kube_config_t *cfg, char *err, size_t errlen);
void ic_auth_kube_free(ic_auth_kube_t *k);
/* ic_auth_reviewer_fn over HTTPS: POST /apis/authentication.k8s.io/v1/tokenreviews. */
int ic_auth_kube_review(void *kube, const char *token, size_t len, const char *audience,
                        ic_auth_review_t *out);

/* ---- writer authentication (ReportCacheState / PublishEvent), docs/server.md "Writer
 * authentication" ----
 * An ic_writer_auth_t decides whether one gRPC write call may change the index. It accepts a
 * verified TLS client certificate whose subject CN or a SAN is on the allowed list, and/or a
 * service-account bearer token that TokenReview authenticates (with the writer audience) to
 * an allowed username. Reviews are cached (accepted 10 s, refreshed in the background past
 * half of it; rejected 2 s; keyed by the token's bytes, bucketed by XXH3) so ingest does not
 * wait on the API server. Reviews run on `max_reviews` threads of the checker; a call with an uncached token
 * waits for its review at most IC_AUTH_WRITER_INLINE_WAIT_MS and is otherwise denied
 * UNAVAILABLE (fail closed; the writer retries and then finds the verdict cached), so a slow
 * or hanging API server never holds a gRPC thread longer than that. Thread-safe; strings are
 * copied. */
#define IC_AUTH_WRITER_AUDIENCE "inferencecache.io/writer"
#define IC_AUTH_WRITER_CACHE_TTL_MS 10000
#define IC_AUTH_WRITER_NEGATIVE_TTL_MS 2000
#define IC_AUTH_WRITER_CACHE_MAX 4096
#define IC_AUTH_WRITER_INLINE_WAIT_MS 50

typedef enum {
  IC_WRITER_OK = 0,
  IC_WRITER_UNAUTHENTICATED = 1, /* no accepted credential, or the token was not valid */
  IC_WRITER_FORBIDDEN = 2,       /* authenticated, but not an allowed writer */
  IC_WRITER_UNAVAILABLE = 3,     /* the token could not be reviewed (error, timeout, busy) */
} ic_writer_result_t;

/* Denial reasons, the `reason` label of the denial counter. */
#define IC_WRITER_DENY_NO_CREDENTIALS "no_credentials"
#define IC_WRITER_DENY_BAD_TOKEN "invalid_token"
#define IC_WRITER_DENY_REVIEW "review_unavailable"
#define IC_WRITER_DENY_IDENTITY "identity_not_allowed"
#define IC_WRITER_DENY_CERT "certificate_not_allowed"

typedef struct ic_writer_auth_config {
  bool accept_tokens; /* bearer tokens checked with TokenReview */
  bool accept_certs;  /* verified TLS client certificates */
  const char *audience; /* NULL = IC_AUTH_WRITER_AUDIENCE; "" = no audiences in the review */
  /* Comma-separated. Service accounts: "namespace:name", "namespace:*" (every service account
   * of the namespace), a full username ("system:serviceaccount:ns:name", trailing '*' = prefix)
   * or "*" (any authenticated token). Certificates: subject CN / SAN values (DNS, URI, e-mail,
   * IP), a trailing '*' = prefix, "*" = any certificate the CA verified. */
  const char *allowed_service_accounts;
  const char *allowed_cert_names;
  ic_auth_reviewer_fn reviewer; /* required with accept_tokens */
  void *reviewer_ud;
  int64_t cache_ttl_ms;    /* 0 = IC_AUTH_WRITER_CACHE_TTL_MS */
  int64_t negative_ttl_ms; /* 0 = IC_AUTH_WRITER_NEGATIVE_TTL_MS */
  size_t cache_max;        /* 0 = IC_AUTH_WRITER_CACHE_MAX */
  int max_reviews;         /* review threads (reviews in flight at once); <= 0 = 1 */
  int inline_wait_ms;      /* 0 = IC_AUTH_WRITER_INLINE_WAIT_MS; < 0 = never wait */
  ic_metric_family_t *denials; /* optional counter family with one label "reason" */
  int64_t (*now_ms)(void *ud); /* NULL = monotonic */
  void *now_ud;
} ic_writer_auth_config_t;

/* What one call presented. */
typedef struct ic_writer_creds {
  const char *authorization;      /* NUL-terminated "authorization" metadata, or NULL */
  bool cert_verified;             /* a client certificate chained to the client CA */
  const char *const *cert_names;  /* its subject CN and SAN values */
  size_t n_cert_names;
} ic_writer_creds_t;

typedef struct ic_writer_auth ic_writer_auth_t;

/* NULL with a message in err when nothing is accepted, an accepted kind has an empty allowed
 * list, or the reviewer is missing. */
ic_writer_auth_t *ic_writer_auth_new(const ic_writer_auth_config_t *cfg, char *err, size_t errlen);
void ic_writer_auth_free(ic_writer_auth_t *w);
/* Decides one call; on denial counts the reason and sets *reason (static string, may be NULL). */
ic_writer_result_t ic_writer_auth_check(ic_writer_auth_t *w, const ic_writer_creds_t *c,
                                        const char **reason);
/* Matches one name against a comma-separated allowed list with the rules above (tests). */
bool ic_writer_auth_name_allowed(const char *list, const char *name, bool service_accounts);

/* ---- bearer token from a file, for clients (the subscriber) ----
 * Projected service-account tokens are rotated by the kubelet: the file is re-read when its
 * mtime changes, looked at no more often than every check_ms. */
typedef struct ic_auth_token_file ic_auth_token_file_t;
/* NULL (message in err) when the file cannot be read or is empty. */
ic_auth_token_file_t *ic_auth_token_file_new(const char *path, int64_t check_ms, char *err,
                                             size_t errlen);
void ic_auth_token_file_free(ic_auth_token_file_t *t);
/* Writes "Bearer <token>" (NUL-terminated) into out; returns its length, or IC_ERANGE (out too small) /
 * IC_EUNAVAIL (never read successfully). A failed re-read keeps the last good token. */
int ic_auth_token_file_header(ic_auth_token_file_t *t, char *out, size_t cap);

#endif
