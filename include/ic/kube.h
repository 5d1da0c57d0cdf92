/* Kubernetes API client (lib/kube): configuration (in-cluster, kubeconfig), REST verbs over libcurl
 * with jansson objects, watch streams, a list+watch "watcher" thread, a work queue and Lease-based
 * leader election. Everything the controller and the server's TokenReview path need, nothing more.
 *
 * Ownership: every `json_t **out` hands a new reference to the caller (json_decref it); `json_t *`
 * inputs are borrowed. Strings returned as `char *` are malloc'd and owned by the caller.
 * Threads: an ic_kube_t may be shared by threads (each request uses its own curl handle); the
 * token file is re-read on every request so a rotated service-account token is picked up.
 *
 * Errors: 0 or a negative IC_E* code, mapped from the HTTP answer:
 *   404 -> IC_ENOTFOUND, 409 AlreadyExists -> IC_EEXIST, 409 Conflict -> IC_KUBE_CONFLICT,
 *   410 Gone -> IC_KUBE_GONE, 400/422 -> IC_EINVAL, 401/403 -> IC_EPERM,
 *   429/5xx (after the retries) -> IC_EUNAVAIL, transport -> IC_EIO, undecodable body -> IC_EPROTO.
 * An optional ic_kube_status_t receives the HTTP code and the Status reason/message. */
#ifndef IC_KUBE_H
#define IC_KUBE_H
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/err.h"

#define IC_KUBE_CONFLICT IC_ESTATE /* 409 Conflict (stale resourceVersion) */
#define IC_KUBE_GONE IC_ERANGE     /* 410 Gone (resourceVersion compacted): relist */

/* ---- configuration ---------------------------------------------------------------------- */

typedef struct ic_kube_config {
  char *server;      /* "https://host:port" (no trailing slash); http:// allowed for local tests */
  char *ca_file;     /* PEM file path, or NULL */
  char *ca_pem;      /* PEM bytes (kubeconfig certificate-authority-data), or NULL */
  bool insecure;     /* skip TLS verification (kubeconfig insecure-skip-tls-verify) */
  char *token;       /* static bearer token, or NULL */
  char *token_file;  /* bearer token file re-read on every request (rotation), or NULL */
  char *cert_file, *key_file; /* client certificate (PEM files), or NULL */
  char *cert_pem, *key_pem;   /* client certificate (PEM bytes), or NULL */
  char *namespace;   /* default namespace ("default" when unknown) */
} ic_kube_config_t;

/* In-cluster: KUBERNETES_SERVICE_HOST/PORT and the service-account directory `sa_dir`
 * (NULL = /var/run/secrets/kubernetes.io/serviceaccount: token, ca.crt, namespace).
 * IC_ENOTFOUND when not running in a cluster. */
int ic_kube_config_in_cluster(const char *sa_dir, ic_kube_config_t *out);
/* Kubeconfig file (YAML or JSON); `context` NULL = current-context. */
int ic_kube_config_from_file(const char *path, const char *context, ic_kube_config_t *out);
/* The usual order: explicit path, else $KUBECONFIG, else in-cluster, else ~/.kube/config. */
int ic_kube_config_load(const char *path, ic_kube_config_t *out);
void ic_kube_config_free(ic_kube_config_t *c);

/* ---- client ----------------------------------------------------------------------------- */

typedef struct ic_kube ic_kube_t;

typedef struct ic_kube_status {
  long http;          /* HTTP status, 0 on a transport error */
  char reason[64];    /* Status.reason (NotFound, AlreadyExists, Conflict, Expired, ...) */
  char message[512];  /* Status.message or transport error text */
} ic_kube_status_t;

/* A resource kind as the REST paths need it. */
typedef struct ic_kube_res {
  const char *group;   /* "" for the core group */
  const char *version; /* "v1", "v1alpha1" */
  const char *plural;  /* "pods", "cachebackends" */
  const char *kind;    /* "Pod" */
  bool namespaced;
} ic_kube_res_t;

extern const ic_kube_res_t ic_kube_res_pods, ic_kube_res_services, ic_kube_res_pvcs,
    ic_kube_res_deployments, ic_kube_res_statefulsets, ic_kube_res_leases, ic_kube_res_events,
    ic_kube_res_core_events;

/* Copies the config. Returns NULL on allocation failure or a config without a server. */
ic_kube_t *ic_kube_new(const ic_kube_config_t *cfg);
void ic_kube_free(ic_kube_t *k);
/* Retries of 429/5xx/transport failures: `attempts` total tries, backoff base_ms * 2^i
 * (capped at 2 s; Retry-After honoured up to 5 s). Default 4 tries, 100 ms. */
void ic_kube_set_retry(ic_kube_t *k, int attempts, int base_ms);
/* Per-request timeout for non-watch calls (default 10 s). */
void ic_kube_set_timeout(ic_kube_t *k, int timeout_ms);
const char *ic_kube_namespace(const ic_kube_t *k);
/* Counters since creation (for metrics/tests). */
uint64_t ic_kube_requests(const ic_kube_t *k);
uint64_t ic_kube_retries(const ic_kube_t *k);

/* Builds the REST path: /api/v1/namespaces/ns/pods/name/status. ns/name/sub may be NULL.
 * Returns a malloc'd string. */
char *ic_kube_path(const ic_kube_res_t *r, const char *ns, const char *name, const char *sub);

/* Raw request: method, path+query, optional JSON body with content type (NULL = JSON).
 * *out receives the decoded body (NULL for an empty body). Retries as configured. */
int ic_kube_request(ic_kube_t *k, const char *method, const char *path, const char *ctype,
                    json_t *body, json_t **out, ic_kube_status_t *st);

int ic_kube_get(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name, json_t **out,
                ic_kube_status_t *st);
/* ns NULL = all namespaces; label_selector may be NULL. *out is the List object. */
int ic_kube_list(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *label_selector,
                 json_t **out, ic_kube_status_t *st);
int ic_kube_create(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, json_t *obj, json_t **out,
                   ic_kube_status_t *st);
/* PUT; `sub` NULL or "status". The object's metadata.resourceVersion is the precondition. */
int ic_kube_update(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name,
                   const char *sub, json_t *obj, json_t **out, ic_kube_status_t *st);

typedef enum {
  IC_KUBE_PATCH_MERGE = 0, /* application/merge-patch+json (RFC 7386) */
  IC_KUBE_PATCH_JSON,      /* application/json-patch+json (RFC 6902) */
  IC_KUBE_PATCH_APPLY,     /* application/apply-patch+yaml (server-side apply) */
} ic_kube_patch_t;
/* `sub` NULL or "status". For APPLY `field_manager` is required and `force` sets force=true. */
int ic_kube_patch(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name,
                  const char *sub, ic_kube_patch_t type, json_t *patch, const char *field_manager,
                  bool force, json_t **out, ic_kube_status_t *st);
/* Server-side apply of a full object (its metadata.name names it). */
int ic_kube_apply(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, json_t *obj,
                  const char *field_manager, bool force, json_t **out, ic_kube_status_t *st);
/* DELETE with propagationPolicy=Background; `uid` (optional) is a precondition. */
int ic_kube_delete(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name,
                   const char *uid, ic_kube_status_t *st);

/* GET, mutate, PUT; on 409 Conflict re-GET and retry (up to 5 tries, backoff). `mutate` returns
 * 0 to write, 1 for "nothing to change" (no PUT, *out = current object), <0 to abort with that
 * code. `sub` NULL or "status". */
typedef int (*ic_kube_mutate_fn)(void *ud, json_t *obj);
int ic_kube_update_retry(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name,
                         const char *sub, ic_kube_mutate_fn mutate, void *ud, json_t **out,
                         ic_kube_status_t *st);

/* events.k8s.io/v1 Event about `regarding` (an object with apiVersion/kind/metadata). `type` is
 * "Normal" or "Warning"; action = reason (as the reference does). */
int ic_kube_event(ic_kube_t *k, const char *reporting_controller, const char *instance,
                  json_t *regarding, const char *type, const char *reason, const char *note);
/* Same, with a `related` object (may be NULL). */
int ic_kube_event_related(ic_kube_t *k, const char *reporting_controller, const char *instance,
                          json_t *regarding, json_t *related, const char *type, const char *reason,
                          const char *note);

/* authentication.k8s.io/v1 TokenReview. audience may be NULL (no audiences sent).
 * *authenticated and *username (malloc'd, may be NULL) receive the verdict. */
int ic_kube_token_review(ic_kube_t *k, const char *token, const char *audience,
                         bool *authenticated, char **username, char **error,
                         ic_kube_status_t *st);

/* ---- watch -------------------------------------------------------------------------------- */

/* One watch event: type "ADDED"/"MODIFIED"/"DELETED"/"BOOKMARK"/"ERROR"; obj borrowed.
 * Return non-zero to stop the watch. */
typedef int (*ic_kube_watch_fn)(void *ud, const char *type, json_t *obj);
/* Parses one newline-delimited watch event. *type is malloc'd, *obj a new reference.
 * IC_EPROTO on anything that is not {"type":string,"object":object}. */
int ic_kube_watch_parse_event(const char *line, size_t n, char **type, json_t **obj);
/* Streams events until the server ends the stream (0), the callback stops it (0), `stop` becomes
 * true (0), 410/ERROR-410 (IC_KUBE_GONE) or another failure. *rv (in: start version, may hold
 * NULL; out: last seen version incl. bookmarks; malloc'd) is updated as events arrive. */
int ic_kube_watch(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *label_selector,
                  char **rv, int timeout_s, ic_kube_watch_fn fn, void *ud, atomic_bool *stop,
                  ic_kube_status_t *st);

/* A thread running list+watch forever: items of every (re)list are delivered as "SYNC", then
 * watch events as they come; a 410 or broken stream relists. Callbacks run on that thread. */
typedef struct ic_kube_watcher ic_kube_watcher_t;
typedef void (*ic_kube_watcher_fn)(void *ud, const char *type, json_t *obj);
ic_kube_watcher_t *ic_kube_watcher_start(ic_kube_t *k, const ic_kube_res_t *r, const char *ns,
                                         const char *label_selector, ic_kube_watcher_fn fn,
                                         void *ud);
/* Asks the thread to stop without waiting (stop several watchers in parallel, then _stop each). */
void ic_kube_watcher_cancel(ic_kube_watcher_t *w);
void ic_kube_watcher_stop(ic_kube_watcher_t *w); /* cancels, joins and frees */
bool ic_kube_watcher_synced(ic_kube_watcher_t *w); /* first list delivered */
uint64_t ic_kube_watcher_relists(ic_kube_watcher_t *w);

/* ---- work queue ----------------------------------------------------------------------------- */

/* Keys ("ns/name") are de-duplicated while waiting; a key being processed is not handed to a
 * second worker, and re-added keys run again after done(). Rate-limited requeue backs off per key
 * (base * 2^failures, capped) until forget(). */
typedef struct ic_kube_queue ic_kube_queue_t;
ic_kube_queue_t *ic_kube_queue_new(int base_delay_ms, int max_delay_ms);
void ic_kube_queue_free(ic_kube_queue_t *q);
void ic_kube_queue_add(ic_kube_queue_t *q, const char *key);
void ic_kube_queue_add_after(ic_kube_queue_t *q, const char *key, int delay_ms);
void ic_kube_queue_add_rate_limited(ic_kube_queue_t *q, const char *key);
void ic_kube_queue_forget(ic_kube_queue_t *q, const char *key);
int ic_kube_queue_failures(ic_kube_queue_t *q, const char *key);
/* Blocks up to timeout_ms (-1 = forever) for a key (malloc'd, pass it to done()). NULL on
 * timeout or shutdown. */
char *ic_kube_queue_get(ic_kube_queue_t *q, int timeout_ms);
void ic_kube_queue_done(ic_kube_queue_t *q, char *key); /* frees key */
size_t ic_kube_queue_len(ic_kube_queue_t *q);           /* ready keys (not delayed) */
void ic_kube_queue_shutdown(ic_kube_queue_t *q);

/* ---- leader election (coordination.k8s.io/v1 Lease) ---------------------------------------- */

typedef struct ic_kube_elector ic_kube_elector_t;
typedef struct ic_kube_elector_cfg {
  const char *namespace, *name, *identity;
  int lease_duration_ms; /* default 15000 */
  int renew_deadline_ms; /* default 10000 */
  int retry_period_ms;   /* default 2000 */
  void (*on_started)(void *ud); /* became leader (called on the elector thread) */
  void (*on_stopped)(void *ud); /* lost the lease (renew deadline passed) */
  void *ud;
} ic_kube_elector_cfg_t;
ic_kube_elector_t *ic_kube_elector_start(ic_kube_t *k, const ic_kube_elector_cfg_t *cfg);
bool ic_kube_elector_is_leader(ic_kube_elector_t *e);
/* Stops the thread; `release` clears holderIdentity when we hold the lease. Frees. */
void ic_kube_elector_stop(ic_kube_elector_t *e, bool release);

/* ---- JSON helpers ------------------------------------------------------------------------- */

/* RFC 7386 merge patch turning `from` into `to` (objects); NULL-valued keys delete. Returns a new
 * object; an empty object means "equal". */
json_t *ic_kube_merge_diff(json_t *from, json_t *to);
/* Dotted-path lookup ("metadata.name"); borrowed, NULL if absent. */
json_t *ic_kube_jget(json_t *obj, const char *dotted);
const char *ic_kube_jstr(json_t *obj, const char *dotted); /* NULL unless a string */
/* RFC 3339 UTC "2006-01-02T15:04:05Z" (seconds) or with microseconds when `micro`. */
void ic_kube_format_time(int64_t unix_us, bool micro, char out[40]);
/* Parses RFC 3339 (with optional fraction and offset); IC_EINVAL on bad input. */
int ic_kube_parse_time(const char *s, int64_t *unix_us);
/* metav1.Condition semantics on a conditions array (created when NULL in `status`):
 * lastTransitionTime changes only when status changes. Returns true when anything changed. */
bool ic_kube_condition_set(json_t *status, const char *type, const char *cstatus,
                           const char *reason, const char *message, int64_t observed_generation,
                           const char *now);
bool ic_kube_condition_remove(json_t *status, const char *type);
json_t *ic_kube_condition_get(json_t *status, const char *type); /* borrowed */
/* YAML (libyaml) to JSON: plain scalars become numbers/bools/null when they look like them. */
int ic_kube_yaml_to_json(const char *text, size_t n, json_t **out);
/* True when the object's controller ownerReference has this uid. */
bool ic_kube_is_controlled_by(json_t *obj, const char *uid);

#endif
