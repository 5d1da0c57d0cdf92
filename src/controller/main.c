/* inferencecache-controller: flags, Kubernetes client, Lease leader election gating the
 * CacheBackend reconciler, CacheIndex poller and policy push; /healthz /readyz /metrics; webhooks. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller.h"
#include "ic/api.h"
#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/http.h"
#include "ic/log.h"
#include "ic/cli.h"
#include "ic/version.h"
#ifdef IC_CONTROLLER_WEBHOOK
#include "webhook.h"
#endif

typedef struct opts {
  const char *metrics_bind, *probe_bind, *kubeconfig, *le_ns, *le_id;
  const char *webhook_bind, *webhook_cert_dir, *subscriber_image, *grpc_addr;
  bool leader_elect, metrics_secure, http2;
  int64_t lease_ms, renew_ms, retry_ms;
  const char *sub_ca_configmap, *sub_token_audience, *sub_client_secret; /* sidecar credentials */
} opts_t;

static const ic_cli_flag_t FLAGS[] = {
    {"metrics-bind-address", "string", ":8080", "Prometheus /metrics listener; \"0\" or \"\" disables"},
    {"health-probe-bind-address", "string", ":8081", "/healthz and /readyz listener"},
    {"metrics-secure", NULL, NULL, "accepted for manifest compatibility; metrics are plain HTTP"},
    {"enable-http2", NULL, NULL, "accepted for manifest compatibility; metrics are HTTP/1.1"},
    {"leader-elect", NULL, NULL, "run the reconcilers only while holding the leader Lease"},
    {"leader-election-namespace", "string", NULL, "namespace of the Lease (default: the pod's)"},
    {"leader-election-id", "string", "inference-cache-controller-leader-lock", "name of the Lease"},
    {"leader-elect-lease-duration", "duration", "15s", "how long a Lease is valid without renewal"},
    {"leader-elect-renew-deadline", "duration", "10s", "the leader gives up after failing to renew this long"},
    {"leader-elect-retry-period", "duration", "2s", "pause between Lease attempts"},
    {"server-snapshot-url", "string", "http://inference-cache-server:8081/snapshot",
     "the server's /snapshot, polled into CacheIndex status"},
    {"server-policy-url", "string", "http://inference-cache-server:8081/policy",
     "the server's /policy, where CachePolicy/CacheTenant are pushed (must not be empty)"},
    {"server-probe-url", "string", "http://inference-cache-server:8081/probe",
     "the server's /probe, the functional self-test of engine-wired backends; \"\" disables it"},
    {"server-prompttemplates-url", "string", NULL,
     "the server's /prompttemplates, where PromptTemplates are pushed (default: the policy URL's "
     "/prompttemplates)"},
    {"cacheindex-refresh-interval", "duration", "30s", "CacheIndex poll period"},
    {"cachepolicy-push-interval", "duration", "30s", "periodic policy re-push (a change pushes at once)"},
    {"controller-token-file", "string", "/var/run/secrets/inferencecache.io/controller-token/token",
     "bearer token for /snapshot and /probe (re-read per request; missing: no header)"},
    {"policy-token-file", "string", "/var/run/secrets/inferencecache.io/policy-token/token",
     "bearer token for /policy (re-read per request; missing: no header)"},
    {"kubeconfig", "string", NULL, "kubeconfig for runs outside a cluster (default: in-cluster)"},
    {"webhook-bind-address", "string", ":9443", "admission webhook listener (TLS); \"\" disables"},
    {"webhook-cert-dir", "string", "/tmp/k8s-webhook-server/serving-certs",
     "directory holding the webhook's tls.crt and tls.key"},
    {"kvevent-subscriber-image", "string", NULL,
     "image of the kvevent-subscriber sidecar the Pod webhook injects"},
    {"policy-server-grpc-address", "string",
     "inference-cache-server.inference-cache-system.svc.cluster.local:9090",
     "server gRPC address injected sidecars report to"},
    {"subscriber-server-ca-configmap", "string", NULL,
     "ConfigMap (key ca.crt) in each engine namespace with the server's gRPC CA: injected sidecars "
     "speak TLS to the server and verify it with it (the config/tls overlay)"},
    {"subscriber-token-audience", "string", NULL,
     "give injected sidecars a projected service-account token with this audience and send it to "
     "the server (server --writer-auth=token, audience inferencecache.io/writer)"},
    {"subscriber-client-cert-secret", "string", NULL,
     "Secret (tls.crt, tls.key) in each engine namespace: injected sidecars present it as their "
     "client certificate (server --writer-auth=mtls)"},
    {"log-level", "string", "info", "debug, info, warn or error"},
    {"log-format", "string", "json", "json or text"},
};
static const ic_cli_t CLI = {"inferencecache-controller",
                             "reconciles the inferencecache.io CRDs, pushes policy to the server, "
                             "serves the admission webhooks",
                             NULL, FLAGS, sizeof FLAGS / sizeof FLAGS[0]};

static int parse_dur_ms(const char *flag, const char *v, int64_t *out) {
  int64_t ns;
  if (ic_api_parse_duration(v, &ns) != 0 || ns <= 0) {
    fprintf(stderr, "invalid value \"%s\" for flag -%s: parse error\n", v, flag);
    return -1;
  }
  *out = ns / 1000000;
  if (*out == 0) *out = 1;
  return 0;
}

static bool parse_bool(const char *v) {
  return !v || strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "t") == 0 ||
         strcmp(v, "TRUE") == 0 || strcmp(v, "True") == 0;
}

/* ---- metrics and health ----------------------------------------------------------------- */

static void h_ok(ic_http_req_t *r, void *ud) {
  (void)ud;
  ic_http_reply(r, 200, "text/plain; charset=utf-8", "ok", 2);
}

static void h_metrics(ic_http_req_t *r, void *ud) {
  ctl_t *c = ud;
  ic_metric_set(ic_metric_child(c->m_queue_depth, (const char *[]){"cachebackend"}),
                (double)ic_kube_queue_len(c->queue));
  ic_buf_t b = IC_BUF_INIT;
  ic_metrics_render(c->metrics, &b);
  size_t len = b.len;
  char *body = ic_buf_detach(&b, &len);
  ic_http_reply_take(r, 200, "text/plain; version=0.0.4; charset=utf-8", body ? body : strdup(""),
                     body ? len : 0);
}

static ic_http_server_t *serve(const char *bind, const char *name, const ic_http_route_t *routes,
                               size_t n) {
  if (!bind || !*bind || strcmp(bind, "0") == 0) return NULL;
  ic_http_config_t cfg = {.bind = bind, .threads = 1, .name = name};
  ic_http_server_t *s = ic_http_new(&cfg);
  if (!s) return NULL;
  for (size_t i = 0; i < n; i++) ic_http_add_route(s, &routes[i]);
  char err[256];
  if (ic_http_start(s, err, sizeof err) != 0) {
    ic_log_error("listener_failed", IC_LS("listener", name), IC_LS("bind", bind),
                 IC_LS("error", err));
    ic_http_free(s);
    return NULL;
  }
  ic_log_info("listening", IC_LS("listener", name), IC_LI("port", ic_http_port(s)));
  return s;
}

/* ---- event sources -------------------------------------------------------------------------- */

static void enqueue_obj(ctl_t *c, json_t *obj) {
  const char *ns = ic_kube_jstr(obj, "metadata.namespace"), *name = ic_kube_jstr(obj, "metadata.name");
  if (!ns || !name) return;
  char key[512];
  snprintf(key, sizeof key, "%s/%s", ns, name);
  ic_kube_queue_add(c->queue, key);
}

static void on_cachebackend(void *ud, const char *type, json_t *obj) {
  (void)type;
  enqueue_obj(ud, obj); /* no predicate: status-only changes re-trigger too */
}

/* Owned children map to their controlling CacheBackend. */
static void on_child(void *ud, const char *type, json_t *obj) {
  (void)type;
  ctl_t *c = ud;
  json_t *refs = ic_kube_jget(obj, "metadata.ownerReferences");
  size_t i;
  json_t *r;
  json_array_foreach(refs, i, r) {
    const char *kind = ic_kube_jstr(r, "kind"), *name = ic_kube_jstr(r, "name");
    const char *ns = ic_kube_jstr(obj, "metadata.namespace");
    if (json_is_true(json_object_get(r, "controller")) && kind && name && ns &&
        strcmp(kind, "CacheBackend") == 0) {
      char key[512];
      snprintf(key, sizeof key, "%s/%s", ns, name);
      ic_kube_queue_add(c->queue, key);
    }
  }
}

/* Pods map to a CacheBackend through a controller ownerReference (NodeLocal server Pods) or a
 * well-formed injected-by stamp with a non-empty injected-by-uid. */
static void on_pod(void *ud, const char *type, json_t *obj) {
  ctl_t *c = ud;
  on_child(ud, type, obj);
  /* Creation = first sighting of a uid (the initial list included, as informers report it);
   * relists after 410 do not re-announce known Pods. */
  const char *puid = ic_kube_jstr(obj, "metadata.uid");
  if (puid && strcmp(type, "DELETED") == 0) {
    json_object_del(c->pods_seen, puid);
  } else if (puid && !json_object_get(c->pods_seen, puid)) {
    json_object_set_new(c->pods_seen, puid, json_true());
    if (ctl_pod_event_candidate(obj)) {
      char key[512];
      snprintf(key, sizeof key, "%s/%s", ic_kube_jstr(obj, "metadata.namespace"),
               ic_kube_jstr(obj, "metadata.name"));
      ic_kube_queue_add(c->podq, key);
    }
  }
  json_t *ann = ic_kube_jget(obj, "metadata.annotations");
  json_t *by = json_object_get(ann, "inferencecache.io/injected-by");
  json_t *uid = json_object_get(ann, "inferencecache.io/injected-by-uid");
  if (!json_is_string(by) || !json_is_string(uid) || json_string_length(uid) == 0) return;
  const char *ref = json_string_value(by);
  const char *slash = strchr(ref, '/');
  if (!slash || strchr(slash + 1, '/')) return;
  char ns[256], name[256];
  snprintf(ns, sizeof ns, "%.*s", (int)(slash - ref), ref);
  snprintf(name, sizeof name, "%s", slash + 1);
  if (!ic_api_is_dns1123_label(ns) || !ic_api_is_dns1123_subdomain(name)) return;
  ic_kube_queue_add(c->queue, ref);
}

static void trigger_push(ctl_t *c) {
  pthread_mutex_lock(&c->push_mu);
  c->push_dirty = true;
  pthread_cond_signal(&c->push_cv);
  pthread_mutex_unlock(&c->push_mu);
}

static void trigger_poll(ctl_t *c) {
  pthread_mutex_lock(&c->poll_mu);
  c->poll_dirty = true;
  pthread_cond_signal(&c->poll_cv);
  pthread_mutex_unlock(&c->poll_mu);
}

static void on_policy_or_tenant(void *ud, const char *type, json_t *obj) {
  (void)type, (void)obj;
  trigger_push(ud);
}

/* ---- workers -------------------------------------------------------------------------------- */

static void *worker_main(void *arg) {
  ctl_t *c = arg;
  for (;;) {
    char *key = ic_kube_queue_get(c->queue, -1);
    if (!key) break;
    if (!atomic_load(&c->leader)) {
      ic_kube_queue_done(c->queue, key); /* the leader-start resync enqueues everything again */
      continue;
    }
    int64_t t0 = ic_clock_monotonic_ns();
    int64_t requeue = 0;
    int rc = ctl_reconcile_cachebackend(c, key, &requeue);
    double secs = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
    ic_metric_observe(ic_metric_child(c->m_reconcile_time, (const char *[]){"cachebackend"}), secs);
    const char *result = rc != 0 ? "error" : requeue > 0 ? "requeue_after" : "success";
    ic_metric_inc(ic_metric_child(c->m_reconcile_total, (const char *[]){"cachebackend", result}));
    if (rc != 0) {
      ic_metric_inc(ic_metric_child(c->m_reconcile_errors, (const char *[]){"cachebackend"}));
      ic_kube_queue_add_rate_limited(c->queue, key);
    } else {
      ic_kube_queue_forget(c->queue, key);
      if (requeue > 0) ic_kube_queue_add_after(c->queue, key, (int)requeue);
    }
    ic_kube_queue_done(c->queue, key);
  }
  return NULL;
}

static void *pod_worker_main(void *arg) {
  ctl_t *c = arg;
  for (;;) {
    char *key = ic_kube_queue_get(c->podq, -1);
    if (!key) break;
    if (atomic_load(&c->leader)) {
      int rc = ctl_reconcile_pod_events(c, key);
      if (rc != 0) {
        ic_kube_queue_add_rate_limited(c->podq, key);
      } else {
        ic_kube_queue_forget(c->podq, key);
      }
    }
    ic_kube_queue_done(c->podq, key);
  }
  return NULL;
}

static bool wait_trigger(ctl_t *c, pthread_mutex_t *mu, pthread_cond_t *cv, bool *dirty,
                         int64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(mu);
  while (!*dirty && !atomic_load(&c->stopping)) {
    if (pthread_cond_timedwait(cv, mu, &ts) != 0) break;
  }
  bool was = *dirty;
  *dirty = false;
  pthread_mutex_unlock(mu);
  return was;
}

static void *pusher_main(void *arg) {
  ctl_t *c = arg;
  int64_t wait = c->push_interval_ms;
  while (!atomic_load(&c->stopping)) {
    wait_trigger(c, &c->push_mu, &c->push_cv, &c->push_dirty, wait);
    if (atomic_load(&c->stopping)) break;
    wait = c->push_interval_ms;
    if (!atomic_load(&c->leader)) continue;
    int rc = ctl_push_once(c);
    ic_metric_inc(ic_metric_child(c->m_push_total, (const char *[]){rc ? "error" : "success"}));
    if (ctl_push_prompt_templates(c) != 0) rc = rc ? rc : IC_EUNAVAIL;
    if (rc != 0) wait = 1000; /* retry soon; the reference relies on work-queue backoff */
  }
  return NULL;
}

static void *poller_main(void *arg) {
  ctl_t *c = arg;
  while (!atomic_load(&c->stopping)) {
    wait_trigger(c, &c->poll_mu, &c->poll_cv, &c->poll_dirty, c->refresh_interval_ms);
    if (atomic_load(&c->stopping)) break;
    if (!atomic_load(&c->leader)) continue;
    int rc = ctl_poll_once(c);
    ic_metric_inc(ic_metric_child(c->m_poll_total, (const char *[]){rc ? "error" : "success"}));
  }
  return NULL;
}

/* Leader start: resync every CacheBackend and kick the poller and the pusher at once. */
static void on_started(void *ud) {
  ctl_t *c = ud;
  atomic_store(&c->leader, true);
  json_t *list = NULL;
  if (ic_kube_list(c->kube, &ctl_res_cachebackends, NULL, NULL, &list, NULL) == 0) {
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(list, "items"), i, it) enqueue_obj(c, it);
  }
  json_decref(list);
  /* As an informer's initial list does for a newly started controller: existing engine Pods
   * are announced once by the new leader. */
  list = NULL;
  if (ic_kube_list(c->kube, &ic_kube_res_pods, NULL, NULL, &list, NULL) == 0) {
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(list, "items"), i, it) {
      if (ctl_pod_event_candidate(it)) {
        char key[512];
        snprintf(key, sizeof key, "%s/%s", ic_kube_jstr(it, "metadata.namespace"),
                 ic_kube_jstr(it, "metadata.name"));
        ic_kube_queue_add(c->podq, key);
      }
    }
  }
  json_decref(list);
  trigger_push(c);
  trigger_poll(c);
}

static void on_stopped(void *ud) {
  ctl_t *c = ud;
  atomic_store(&c->leader, false);
  /* As controller-runtime does: a replica that lost its lease exits and restarts clean. */
  ic_log_error("leader_election_lost", IC_LS("identity", c->identity));
  _exit(1);
}

#ifdef IC_CONTROLLER_WEBHOOK
static json_t *admission_list(void *ud, const char *kind, const char *ns, char *err,
                              size_t errlen) {
  ctl_t *c = ud;
  const ic_kube_res_t *r = strcmp(kind, "CacheBackend") == 0  ? &ctl_res_cachebackends
                           : strcmp(kind, "CachePolicy") == 0 ? &ctl_res_cachepolicies
                           : strcmp(kind, "CacheTenant") == 0 ? &ctl_res_cachetenants
                                                              : NULL;
  if (!r) {
    snprintf(err, errlen, "unknown kind %s", kind);
    return NULL;
  }
  json_t *list = NULL;
  ic_kube_status_t st;
  if (ic_kube_list(c->kube, r, ns, NULL, &list, &st) != 0) {
    snprintf(err, errlen, "list %s in %s: %s", kind, ns, st.message);
    return NULL;
  }
  json_t *items = json_incref(json_object_get(list, "items"));
  json_decref(list);
  return items ? items : json_array();
}
#endif

int main(int argc, char **argv) {
  opts_t o = {.metrics_bind = ":8080", .probe_bind = ":8081", .le_id =
                  "inference-cache-controller-leader-lock",
              .webhook_bind = ":9443", .webhook_cert_dir = "/tmp/k8s-webhook-server/serving-certs",
              .grpc_addr = "inference-cache-server.inference-cache-system.svc.cluster.local:9090",
              .lease_ms = 15000, .renew_ms = 10000, .retry_ms = 2000};
  ctl_t c = {.snapshot_url = "http://inference-cache-server:8081/snapshot",
             .policy_url = "http://inference-cache-server:8081/policy",
             .probe_url = "http://inference-cache-server:8081/probe",
             .controller_token_file = "/var/run/secrets/inferencecache.io/controller-token/token",
             .policy_token_file = "/var/run/secrets/inferencecache.io/policy-token/token",
             .refresh_interval_ms = 30000, .push_interval_ms = 30000,
             .cacheindex_name = "cluster-default"};
  enum {
    F_METRICS = 1000, F_METRICS_SECURE, F_HTTP2, F_LE, F_PROBE, F_SNAP, F_POLICY, F_PROBEURL,
    F_REFRESH, F_PUSH, F_SUBIMG, F_GRPC, F_KUBECONFIG, F_LENS, F_LEID, F_LEASE, F_RENEW, F_RETRY,
    F_CTOK, F_PTOK, F_WHBIND, F_WHDIR, F_LOGLEVEL, F_LOGFMT, F_HELP, F_VERSION, F_PTURL,
    F_SUBCA, F_SUBAUD, F_SUBCERT
  };
  static const struct option lo[] = {
      {"metrics-bind-address", required_argument, 0, F_METRICS},
      {"metrics-secure", optional_argument, 0, F_METRICS_SECURE},
      {"enable-http2", optional_argument, 0, F_HTTP2},
      {"leader-elect", optional_argument, 0, F_LE},
      {"health-probe-bind-address", required_argument, 0, F_PROBE},
      {"server-snapshot-url", required_argument, 0, F_SNAP},
      {"server-policy-url", required_argument, 0, F_POLICY},
      {"server-prompttemplates-url", required_argument, 0, F_PTURL},
      {"server-probe-url", required_argument, 0, F_PROBEURL},
      {"cacheindex-refresh-interval", required_argument, 0, F_REFRESH},
      {"cachepolicy-push-interval", required_argument, 0, F_PUSH},
      {"kvevent-subscriber-image", required_argument, 0, F_SUBIMG},
      {"policy-server-grpc-address", required_argument, 0, F_GRPC},
      {"subscriber-server-ca-configmap", required_argument, 0, F_SUBCA},
      {"subscriber-token-audience", required_argument, 0, F_SUBAUD},
      {"subscriber-client-cert-secret", required_argument, 0, F_SUBCERT},
      {"kubeconfig", required_argument, 0, F_KUBECONFIG},
      {"leader-election-namespace", required_argument, 0, F_LENS},
      {"leader-election-id", required_argument, 0, F_LEID},
      {"leader-elect-lease-duration", required_argument, 0, F_LEASE},
      {"leader-elect-renew-deadline", required_argument, 0, F_RENEW},
      {"leader-elect-retry-period", required_argument, 0, F_RETRY},
      {"controller-token-file", required_argument, 0, F_CTOK},
      {"policy-token-file", required_argument, 0, F_PTOK},
      {"webhook-bind-address", required_argument, 0, F_WHBIND},
      {"webhook-cert-dir", required_argument, 0, F_WHDIR},
      {"log-level", required_argument, 0, F_LOGLEVEL},
      {"log-format", required_argument, 0, F_LOGFMT},
      {"help", no_argument, 0, F_HELP},
      {"version", no_argument, 0, F_VERSION},
      {0, 0, 0, 0}};
  opterr = 0;
  int opt;
  while ((opt = getopt_long_only(argc, argv, "", lo, NULL)) != -1) {
    switch (opt) {
    case F_METRICS: o.metrics_bind = optarg; break;
    case F_METRICS_SECURE: o.metrics_secure = parse_bool(optarg); break;
    case F_HTTP2: o.http2 = parse_bool(optarg); break;
    case F_LE: o.leader_elect = parse_bool(optarg); break;
    case F_PROBE: o.probe_bind = optarg; break;
    case F_SNAP: c.snapshot_url = optarg; break;
    case F_POLICY: c.policy_url = optarg; break;
    case F_PTURL: c.prompttemplates_url = optarg; break;
    case F_PROBEURL: c.probe_url = optarg; break;
    case F_REFRESH:
      if (parse_dur_ms("cacheindex-refresh-interval", optarg, &c.refresh_interval_ms)) return 2;
      break;
    case F_PUSH:
      if (parse_dur_ms("cachepolicy-push-interval", optarg, &c.push_interval_ms)) return 2;
      break;
    case F_SUBIMG: o.subscriber_image = optarg; break;
    case F_GRPC: o.grpc_addr = optarg; break;
    case F_SUBCA: o.sub_ca_configmap = optarg; break;
    case F_SUBAUD: o.sub_token_audience = optarg; break;
    case F_SUBCERT: o.sub_client_secret = optarg; break;
    case F_KUBECONFIG: o.kubeconfig = optarg; break;
    case F_LENS: o.le_ns = optarg; break;
    case F_LEID: o.le_id = optarg; break;
    case F_LEASE: if (parse_dur_ms("leader-elect-lease-duration", optarg, &o.lease_ms)) return 2; break;
    case F_RENEW: if (parse_dur_ms("leader-elect-renew-deadline", optarg, &o.renew_ms)) return 2; break;
    case F_RETRY: if (parse_dur_ms("leader-elect-retry-period", optarg, &o.retry_ms)) return 2; break;
    case F_CTOK: c.controller_token_file = optarg; break;
    case F_PTOK: c.policy_token_file = optarg; break;
    case F_WHBIND: o.webhook_bind = optarg; break;
    case F_WHDIR: o.webhook_cert_dir = optarg; break;
    case F_LOGLEVEL: {
      ic_log_level_t l;
      if (ic_log_parse_level(optarg, &l) != 0) {
        fprintf(stderr, "invalid value \"%s\" for flag -log-level\n", optarg);
        return 2;
      }
      ic_log_set_level(l);
      break;
    }
    case F_LOGFMT: {
      ic_log_format_t f;
      if (ic_log_parse_format(optarg, &f) != 0) {
        fprintf(stderr, "invalid value \"%s\" for flag -log-format\n", optarg);
        return 2;
      }
      ic_log_set_format(f);
      break;
    }
    case F_HELP: ic_cli_usage(&CLI, stdout); return 0;
    case F_VERSION: ic_version_print(stdout, CLI.program); return 0;
    default: return ic_cli_fail(&CLI, "flag provided but not defined or missing its value: %s", argv[optind - 1]);
    }
  }
  if (!c.policy_url || !*c.policy_url) {
    ic_log_error("invalid_flags", IC_LS("error", "--server-policy-url must not be empty"));
    return 1;
  }
  /* PromptTemplates go to the same listener as the policy: ".../policy" -> ".../prompttemplates" */
  char pt_url[1024];
  if (!c.prompttemplates_url || !*c.prompttemplates_url) {
    size_t n = strlen(c.policy_url);
    if (n >= 7 && !strcmp(c.policy_url + n - 7, "/policy"))
      snprintf(pt_url, sizeof pt_url, "%.*s/prompttemplates", (int)(n - 7), c.policy_url);
    else
      snprintf(pt_url, sizeof pt_url, "%s/prompttemplates", c.policy_url);
    c.prompttemplates_url = pt_url;
  }
  if (o.metrics_secure || o.http2)
    ic_log_warn("flag_ignored", IC_LS("error", "--metrics-secure/--enable-http2 are accepted but "
                                               "metrics are served over plain HTTP/1.1"));

  ic_kube_config_t kc;
  int rc = ic_kube_config_load(o.kubeconfig, &kc);
  if (rc != 0) {
    ic_log_error("kube_config_failed", IC_LS("error", ic_strerror(rc)),
                 IC_LS("kubeconfig", o.kubeconfig ? o.kubeconfig : ""));
    return 1;
  }
  c.kube = ic_kube_new(&kc);
  const char *le_ns = o.le_ns ? o.le_ns : ic_kube_namespace(c.kube);
  ic_kube_config_free(&kc);
  char host[256] = "controller";
  gethostname(host, sizeof host - 1);
  char ident[400];
  snprintf(ident, sizeof ident, "%s_%d_%lld", host, (int)getpid(),
           (long long)(ic_clock_realtime_us() % 1000000));
  c.identity = ident;

  c.queue = ic_kube_queue_new(5, 1000 * 1000);
  c.podq = ic_kube_queue_new(5, 1000 * 1000);
  c.pods_seen = json_object();
  c.pods_announced = json_object();
  c.metrics = ic_metrics_new();
  if (!c.metrics || ic_metrics_add_process(c.metrics) != 0) {
    ic_log_error("metrics_init_failed", IC_LS("error", "out of memory"));
    return 1;
  }
  static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  c.m_reconcile_total = ic_metrics_counter(c.metrics, "controller_runtime_reconcile_total",
                                           "Total number of reconciliations per controller", 2,
                                           (const char *[]){"controller", "result"});
  c.m_reconcile_errors = ic_metrics_counter(c.metrics, "controller_runtime_reconcile_errors_total",
                                            "Total number of reconciliation errors per controller",
                                            1, (const char *[]){"controller"});
  c.m_reconcile_time = ic_metrics_histogram(
      c.metrics, "controller_runtime_reconcile_time_seconds",
      "Length of time per reconciliation per controller", 1, (const char *[]){"controller"},
      buckets, sizeof buckets / sizeof *buckets);
  c.m_queue_depth = ic_metrics_gauge(c.metrics, "workqueue_depth", "Current depth of workqueue", 1,
                                     (const char *[]){"name"});
  c.m_push_total = ic_metrics_counter(c.metrics, "inferencecache_controller_policy_push_total",
                                      "Policy pushes to the server by result", 1,
                                      (const char *[]){"result"});
  c.m_poll_total = ic_metrics_counter(c.metrics, "inferencecache_controller_snapshot_poll_total",
                                      "CacheIndex snapshot polls by result", 1,
                                      (const char *[]){"result"});
  c.m_probe_result = ic_metrics_counter(c.metrics, "inferencecache_backend_probe_result_total",
                                        "Functional probe stage results per CacheBackend", 3,
                                        (const char *[]){"backend", "stage", "result"});
  c.m_t2_hit_rate = ic_metrics_gauge(c.metrics, "inferencecache_backend_t2_hit_rate",
                                     "Tier-2 hit rate per CacheBackend from the server snapshot", 1,
                                     (const char *[]){"backend"});
  c.m_t2_query_tokens = ic_metrics_counter(c.metrics, "inferencecache_backend_t2_query_tokens_total",
                                           "Tier-2 query tokens per CacheBackend (snapshot deltas)",
                                           1, (const char *[]){"backend"});
  ic_metric_set(ic_metric_child(c.m_queue_depth, (const char *[]){"cachebackend"}), 0);
  pthread_mutex_init(&c.probe_mu, NULL);
  c.probe_limit_ms = 30000;
  c.t2_baseline = json_object();
  pthread_mutex_init(&c.push_mu, NULL);
  pthread_mutex_init(&c.poll_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c.push_cv, &ca);
  pthread_cond_init(&c.poll_cv, &ca);
  pthread_condattr_destroy(&ca);

  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread inherits this; main sigwaits */
  signal(SIGPIPE, SIG_IGN);

  ic_http_route_t hroutes[] = {{.path = "/healthz", .handler = h_ok},
                               {.path = "/readyz", .handler = h_ok}};
  ic_http_route_t mroutes[] = {{.path = "/metrics", .handler = h_metrics, .ud = &c}};
  ic_http_server_t *health = serve(o.probe_bind, "health", hroutes, 2);
  ic_http_server_t *metrics = serve(o.metrics_bind, "metrics", mroutes, 1);
  if ((o.probe_bind && *o.probe_bind && !health) || (o.metrics_bind && *o.metrics_bind &&
                                                     strcmp(o.metrics_bind, "0") && !metrics)) {
    ic_http_free(health);
    ic_http_free(metrics);
    return 1;
  }
#ifdef IC_CONTROLLER_WEBHOOK
  webhook_server_t *wh = NULL;
  if (o.webhook_bind && *o.webhook_bind) {
    char cert[1024], key[1024], err[256];
    snprintf(cert, sizeof cert, "%s/tls.crt", o.webhook_cert_dir);
    snprintf(key, sizeof key, "%s/tls.key", o.webhook_cert_dir);
    bool tls = access(cert, R_OK) == 0 && access(key, R_OK) == 0;
    webhook_config_t wc = {.bind = o.webhook_bind, .cert_file = tls ? cert : NULL,
                           .key_file = tls ? key : NULL,
                           .admission = {.subscriber_image = o.subscriber_image,
                                         .policy_server_grpc_address = o.grpc_addr,
                                         .subscriber_server_ca_configmap = o.sub_ca_configmap,
                                         .subscriber_token_audience = o.sub_token_audience,
                                         .subscriber_client_cert_secret = o.sub_client_secret,
                                         .list = admission_list, .list_ud = &c}};
    if (!tls)
      ic_log_warn("webhook_plain_http", IC_LS("cert_dir", o.webhook_cert_dir),
                  IC_LS("error", "serving certificate not found; webhooks served without TLS"));
    wh = webhook_start(&wc, err, sizeof err);
    if (!wh) ic_log_error("webhook_start_failed", IC_LS("error", err));
  }
#else
  (void)o.subscriber_image;
  (void)o.sub_ca_configmap, (void)o.sub_token_audience, (void)o.sub_client_secret;
#endif

  enum { NWATCH = 9 };
  ic_kube_watcher_t *w[NWATCH];
  const char *owned = "app.kubernetes.io/managed-by=inference-cache-controller";
  w[0] = ic_kube_watcher_start(c.kube, &ctl_res_cachebackends, NULL, NULL, on_cachebackend, &c);
  w[1] = ic_kube_watcher_start(c.kube, &ic_kube_res_deployments, NULL, owned, on_child, &c);
  w[2] = ic_kube_watcher_start(c.kube, &ic_kube_res_statefulsets, NULL, owned, on_child, &c);
  w[3] = ic_kube_watcher_start(c.kube, &ic_kube_res_services, NULL, owned, on_child, &c);
  w[4] = ic_kube_watcher_start(c.kube, &ic_kube_res_pvcs, NULL, owned, on_child, &c);
  w[5] = ic_kube_watcher_start(c.kube, &ctl_res_cachepolicies, NULL, NULL, on_policy_or_tenant, &c);
  w[6] = ic_kube_watcher_start(c.kube, &ctl_res_cachetenants, NULL, NULL, on_policy_or_tenant, &c);
  w[7] = ic_kube_watcher_start(c.kube, &ic_kube_res_pods, NULL, NULL, on_pod, &c);
  w[8] = ic_kube_watcher_start(c.kube, &ctl_res_prompttemplates, NULL, NULL, on_policy_or_tenant, &c);

  pthread_t worker, pusher, poller, podworker;
  pthread_create(&worker, NULL, worker_main, &c);
  pthread_create(&podworker, NULL, pod_worker_main, &c);
  pthread_create(&pusher, NULL, pusher_main, &c);
  pthread_create(&poller, NULL, poller_main, &c);

  ic_kube_elector_t *el = NULL;
  if (o.leader_elect) {
    ic_kube_elector_cfg_t ec = {.namespace = le_ns, .name = o.le_id, .identity = ident,
                                .lease_duration_ms = (int)o.lease_ms,
                                .renew_deadline_ms = (int)o.renew_ms,
                                .retry_period_ms = (int)o.retry_ms, .on_started = on_started,
                                .on_stopped = on_stopped, .ud = &c};
    el = ic_kube_elector_start(c.kube, &ec);
  } else {
    on_started(&c);
  }
  ic_log_info("controller_started", IC_LS("version", ic_version), IC_LS("commit", ic_git_commit), IC_LS("identity", ident), IC_LB("leader_elect", o.leader_elect),
              IC_LS("snapshot_url", c.snapshot_url), IC_LS("policy_url", c.policy_url));

  int sig = 0;
  sigwait(&sigs, &sig);
  ic_log_info("shutdown", IC_LI("signal", sig));
  atomic_store(&c.stopping, true);
  if (el) ic_kube_elector_stop(el, true);
  atomic_store(&c.leader, false);
  ic_kube_queue_shutdown(c.queue);
  ic_kube_queue_shutdown(c.podq);
  trigger_push(&c);
  trigger_poll(&c);
  pthread_join(worker, NULL);
  pthread_join(podworker, NULL);
  pthread_join(pusher, NULL);
  pthread_join(poller, NULL);
  for (int i = 0; i < NWATCH; i++) ic_kube_watcher_cancel(w[i]);
  for (int i = 0; i < NWATCH; i++) ic_kube_watcher_stop(w[i]);
#ifdef IC_CONTROLLER_WEBHOOK
  webhook_stop(wh);
#endif
  if (health) ic_http_stop(health, 1000);
  if (metrics) ic_http_stop(metrics, 1000);
  ic_http_free(health);
  ic_http_free(metrics);
  ic_kube_queue_free(c.queue);
  ic_kube_queue_free(c.podq);
  json_decref(c.pods_seen);
  json_decref(c.pods_announced);
  ic_metrics_free(c.metrics);
  json_decref(c.probe_slots);
  json_decref(c.t2_baseline);
  ic_kube_free(c.kube);
  return 0;
}
