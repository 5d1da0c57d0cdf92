/* inferencecache-controller: the program context shared by main.c, the CacheBackend reconciler,
 * the CacheIndex poller and the policy pusher. One instance, owned by main(). */
#ifndef IC_CONTROLLER_H
#define IC_CONTROLLER_H
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ic/kube.h"
#include "ic/metrics.h"

extern const ic_kube_res_t ctl_res_cachebackends, ctl_res_cachepolicies, ctl_res_cachetenants,
    ctl_res_cacheindices, ctl_res_prompttemplates;

typedef struct ctl {
  /* flags */
  const char *snapshot_url, *policy_url, *probe_url;
  const char *prompttemplates_url; /* PromptTemplate push (docs/chattemplate.md) */
  const char *controller_token_file, *policy_token_file;
  int64_t refresh_interval_ms, push_interval_ms;
  const char *cacheindex_name;
  const char *identity; /* leader-election identity and Event reportingInstance */

  ic_kube_t *kube;
  ic_kube_queue_t *queue;
  ic_metrics_t *metrics;
  ic_metric_family_t *m_reconcile_total, *m_reconcile_errors, *m_reconcile_time, *m_queue_depth,
      *m_push_total, *m_poll_total;

  /* functional-probe rate limit: "ns/name" -> last committed probe (monotonic ms); reconcile
   * runs on one worker thread, the mutex keeps it safe for any other caller. */
  pthread_mutex_t probe_mu;
  json_t *probe_slots;
  int64_t probe_limit_ms;
  ic_metric_family_t *m_probe_result, *m_t2_hit_rate, *m_t2_query_tokens;
  json_t *t2_baseline; /* poller thread only: "ns/name" -> last cumulative t2QueryTokens */

  ic_kube_queue_t *podq; /* EnginePodEvents: "ns/name" of created engine Pods */
  json_t *pods_seen;     /* watcher thread only: Pod uid -> true (creation = first sighting) */
  json_t *pods_announced; /* pod worker only: Pod uid -> true (one Event per Pod) */

  atomic_bool leader;
  atomic_bool stopping;

  /* policy push trigger (pusher thread waits on cv) */
  pthread_mutex_t push_mu;
  pthread_cond_t push_cv;
  bool push_dirty;
  /* poll trigger */
  pthread_mutex_t poll_mu;
  pthread_cond_t poll_cv;
  bool poll_dirty;
} ctl_t;

/* Reconciles one CacheBackend "ns/name". Returns 0 (with *requeue_ms >= 0, 0 = none) or a
 * negative IC_E* code (the caller requeues with backoff). */
int ctl_reconcile_cachebackend(ctl_t *c, const char *key, int64_t *requeue_ms);

/* EnginePodEvents: Event for one created Pod "ns/name". 0 or an error to retry. */
int ctl_reconcile_pod_events(ctl_t *c, const char *key);
/* Pods the EnginePodEvents reconciler cares about (injected-by, or the explicit skip marker). */
bool ctl_pod_event_candidate(json_t *pod);

/* NodeLocal MP servers (nodelocal.c). `binding` = {host, port, username?, password?} of the remote
 * tier or NULL. reconcile returns 0 or an error described in err. */
int ctl_nodelocal_reconcile(ctl_t *c, json_t *cb, json_t *binding, char *err, size_t errlen);
void ctl_nodelocal_cleanup(ctl_t *c, json_t *cb);
void ctl_nodelocal_connector(ctl_t *c, json_t *cb, json_t *pods, json_t *status, const char *now);

/* CacheIndex poller: one refresh (ensure singleton, GET /snapshot, projections). */
int ctl_poll_once(ctl_t *c);
/* Policy push: list CachePolicies + CacheTenants, POST the v7 body. */
int ctl_push_once(ctl_t *c);
/* Builds the v7 /policy body from the two lists (exposed for tests). Returns malloc'd JSON text. */
char *ctl_policy_body(json_t *policies, json_t *tenants);

/* HTTP to the inferencecache-server: GET/POST with a bearer token re-read from `token_file`
 * (missing file = no header). Returns 0 and the status/body (malloc'd) or IC_EIO. */
int ctl_server_call(const char *method, const char *url, const char *token_file, const char *body,
                    long *status, char **resp, size_t *resp_len);

/* Shortest decimal that round-trips a float32, written as Go's encoding/json writes a float32
 * (plain decimal in [1e-6, 1e21), else exponent form "1e-7"). out holds 48 bytes. */
void ctl_fmt_float32(float f, char out[48]);

void ctl_now(char out[40]); /* RFC 3339 seconds, UTC */

/* PromptTemplate push (prompttemplates.c): the v1 /prompttemplates body from a PromptTemplate
 * list (exposed for tests), a template's revision, and one push + status pass. */
char *ctl_prompt_templates_body(json_t *list);
void ctl_template_revision(json_t *obj, char out[64]);
int ctl_push_prompt_templates(ctl_t *c);

/* status.health from the conditions in `status` (the first of Degraded, Ready, Failed, Pending
 * that applies): sets or removes the key. */
void ctl_set_health(json_t *status);

#endif
