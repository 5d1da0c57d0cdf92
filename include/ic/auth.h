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

#endif
