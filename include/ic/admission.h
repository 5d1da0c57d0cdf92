/* Admission logic of inferencecache-controller as pure functions: an admission.k8s.io/v1
 * AdmissionReview request body in, the AdmissionReview response JSON out.
 *
 * Webhooks: CacheBackend validation (CREATE reports all errors,
 * UPDATE only newly introduced ones, the cache-domain selector rule never grandfathered) and a
 * no-op CacheBackend defaulter (absent nested objects stay absent); CachePolicy and
 * CacheTenant validation (reserved probe tenant, one policy per namespace, tenantID unique per
 * namespace) with no-op defaulters; the mutating Pod webhook (engine selector match, engine
 * wiring for vLLM/SGLang, subscriber sidecar, injected-by annotations, fail-open) whose answer is a
 * minimal JSON Patch against the submitted Pod, so re-admitting an injected Pod yields zero ops.
 *
 * Nothing here does I/O: cross-object checks call `list`, which the controller backs with a live
 * read of the API server. Thread-safe as long as `list` is. */
#ifndef IC_ADMISSION_H
#define IC_ADMISSION_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ic/api.h"

/* Lists the objects of `kind` ("CacheBackend", "CachePolicy", "CacheTenant") in namespace `ns`.
 * Returns a new reference to a JSON array of objects, or NULL after writing a reason into `err`
 * (validators then deny, the Pod webhook fails open). */
typedef json_t *(*ic_admission_list_fn)(void *ud, const char *kind, const char *ns, char *err, size_t errlen);

typedef struct ic_admission_config {
  const char *subscriber_image;           /* --kvevent-subscriber-image; NULL/"" = no sidecar */
  const char *policy_server_grpc_address; /* --policy-server-grpc-address (subscriber --server) */
  ic_admission_list_fn list;              /* NULL = "no reader": validators deny, Pod fails open */
  void *list_ud;
  /* Sidecar credentials towards the server (docs/install.md "Writer authentication"); NULL/"" =
   * not injected. A ConfigMap (key ca.crt) in the Pod's namespace: TLS with --server-ca-file. */
  const char *subscriber_server_ca_configmap; /* --subscriber-server-ca-configmap */
  const char *subscriber_token_audience;      /* --subscriber-token-audience: projected token */
  const char *subscriber_client_cert_secret;  /* --subscriber-client-cert-secret (tls.crt/key) */
} ic_admission_config_t;

typedef enum {
  IC_ADM_UNKNOWN = -1,
  IC_ADM_POD_MUTATE = 0,       /* /mutate--v1-pod */
  IC_ADM_CACHEBACKEND_MUTATE,  /* /mutate-inferencecache-io-v1alpha1-cachebackend */
  IC_ADM_CACHEBACKEND_VALIDATE,/* /validate-inferencecache-io-v1alpha1-cachebackend */
  IC_ADM_CACHEPOLICY_MUTATE,   /* /mutate-inferencecache-io-v1alpha1-cachepolicy */
  IC_ADM_CACHEPOLICY_VALIDATE, /* /validate-inferencecache-io-v1alpha1-cachepolicy */
  IC_ADM_CACHETENANT_MUTATE,   /* /mutate-inferencecache-io-v1alpha1-cachetenant */
  IC_ADM_CACHETENANT_VALIDATE, /* /validate-inferencecache-io-v1alpha1-cachetenant */
  IC_ADM_COUNT
} ic_admission_hook_t;

/* Registered path of a hook ("" for UNKNOWN) and the reverse lookup. */
const char *ic_admission_path(ic_admission_hook_t h);
ic_admission_hook_t ic_admission_hook_for_path(const char *path);

/* Handles one AdmissionReview. On success returns 0 and *out = malloc'd response JSON (the caller
 * frees it) — also for denials and fail-open answers, which are ordinary responses. Returns
 * IC_EINVAL with *out = a malloc'd plain-text reason when the body is not an AdmissionReview with
 * a request.uid (the HTTP layer answers 400), IC_ENOMEM on allocation failure (*out NULL). */
int ic_admission_review(const ic_admission_config_t *cfg, ic_admission_hook_t hook, const char *body,
                        size_t len, char **out, size_t *out_len);

/* ---- building blocks (exposed for tests and the api-check tool) ------------------------------ */

/* CacheBackend webhook rules 1-18 of the reference, each triggered only by a later field (so
 * seed-only objects pass), for one object. */
void ic_admission_cachebackend_rules(const ic_api_cachebackend_t *cb, ic_api_errors_t *errs);
/* Full decision: CREATE (old NULL) or UPDATE; `siblings` = CacheBackends of the namespace (JSON
 * array, may be NULL when no reader). Returns 0 (errors in errs decide), or IC_EUNAVAIL when the
 * overlap check needed a list and it failed (plain denial with `err`). */
int ic_admission_cachebackend_validate(const ic_api_cachebackend_t *cb, const ic_api_cachebackend_t *old,
                                       const json_t *siblings, ic_api_errors_t *errs);
/* CachePolicy / CacheTenant spec rules without the namespace checks. */
void ic_admission_cachepolicy_rules(const ic_api_cachepolicy_t *p, ic_api_errors_t *errs);
void ic_admission_cachetenant_rules(const ic_api_cachetenant_t *t, ic_api_errors_t *errs);

/* Result of the Pod webhook core: `patched` is the mutated Pod (new reference) or NULL for
 * "no change"; `denied` with a message for multiple owners; `reason` is a human-readable note. */
typedef struct ic_admission_pod_result {
  json_t *patched;
  bool denied;
  char reason[512];
} ic_admission_pod_result_t;
/* Pod webhook on a decoded Pod; `backends` is the namespace's CacheBackend list (JSON array) or
 * NULL when listing failed (fail-open). Never fails: internal errors fail open. */
void ic_admission_mutate_pod(const ic_admission_config_t *cfg, const json_t *pod, const char *req_ns,
                             const json_t *backends, ic_admission_pod_result_t *res);

/* RFC 6902 patch turning `from` into `to`: objects diffed per key, equal-length arrays per item,
 * other arrays appended to or replaced. Equal documents give []. New reference, NULL on ENOMEM. */
json_t *ic_admission_json_patch(const json_t *from, const json_t *to);

#endif
