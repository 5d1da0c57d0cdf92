/* CacheBackend reconciler (docs/controller.md): dispatch D1..D6, managed Redis workload
 * (Deployment/StatefulSet + Service + PVC, template and workload overrides, owner references),
 * External endpoint mirror, conditions + health, one status merge patch only when something changed. */
#include <ctype.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "controller.h"
#include "ic/api.h"
#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/log.h"

/* Error and condition texts are bounded buffers; cutting an overlong message is intended. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define DEFAULT_REDIS_IMAGE "docker.io/library/redis:7.4-alpine"
#define GIB (1024LL * 1024 * 1024)

static const char *const override_fields[] = {
    "nodeSelector",     "affinity",         "tolerations",       "topologySpreadConstraints",
    "imagePullSecrets", "serviceAccountName", "securityContext", "priorityClassName",
    "schedulerName",    "runtimeClassName", "terminationGracePeriodSeconds"};
#define N_OVERRIDES (sizeof override_fields / sizeof *override_fields)

/* Per-pass view of one CacheBackend. */
typedef struct {
  ctl_t *c;
  json_t *cb;     /* live object (owned) */
  json_t *spec;   /* borrowed */
  const char *ns, *name, *uid;
  int64_t generation;
  char type[64];  /* effective type */
  bool engine_wired;
  const char *mode;
  json_t *remote; /* spec.remoteStorage, borrowed */
  char now[40];
  bool deleted_service;
  json_t *pods;      /* selector-matched engine Pods (borrowed), NULL when the list failed */
  bool probe_commit; /* a probe call succeeded: commit the rate-limit slot after the patch */
  int64_t requeue_ms;
  char err[512];
} pass_t;

static const char *sstr(json_t *o, const char *path) { return ic_kube_jstr(o, path); }

static bool nonempty(const char *s) { return s && *s; }

static json_t *owner_ref(pass_t *p) {
  return json_pack("[{s:s,s:s,s:s,s:s,s:b,s:b}]", "apiVersion", "inferencecache.io/v1alpha1",
                   "kind", "CacheBackend", "name", p->name, "uid", p->uid, "controller", 1,
                   "blockOwnerDeletion", 1);
}

static json_t *child_labels(pass_t *p) {
  json_t *l = json_pack("{s:s,s:s,s:s}", "app.kubernetes.io/name", "cachebackend",
                        "app.kubernetes.io/instance", p->name, "app.kubernetes.io/managed-by",
                        "inference-cache-controller");
  const char *t = sstr(p->spec, "type");
  if (nonempty(t)) json_object_set_new(l, "inferencecache.io/backend-type", json_string(t));
  return l;
}

static json_t *selector_labels(pass_t *p) {
  return json_pack("{s:s,s:s,s:s}", "app.kubernetes.io/name", "cachebackend",
                   "app.kubernetes.io/instance", p->name, "app.kubernetes.io/managed-by",
                   "inference-cache-controller");
}

static int64_t eff_replicas(pass_t *p) {
  json_t *r = json_object_get(p->spec, "replicas");
  return json_is_integer(r) ? json_integer_value(r) : 1;
}

static const char *eff_kind(pass_t *p) {
  const char *k = sstr(p->spec, "deploymentKind");
  return (k && strcmp(k, "StatefulSet") == 0) ? "StatefulSet" : "Deployment";
}

static json_t *pvc_spec(pass_t *p) { return ic_kube_jget(p->spec, "storage.pvc"); }

/* ---- rendering ------------------------------------------------------------------------------ */

static json_t *render_container(pass_t *p) {
  json_t *redis = ic_kube_jget(p->remote, "redis");
  const char *image = sstr(redis, "image");
  json_t *res = json_object_get(redis, "resources");
  json_t *resources = json_is_object(res)
                          ? json_deep_copy(res)
                          : json_pack("{s:{s:s},s:{s:s}}", "requests", "memory", "4Gi", "limits",
                                      "memory", "8Gi");
  int64_t limit = 8 * GIB;
  json_t *lim = ic_kube_jget(resources, "limits.memory");
  int64_t milli;
  if (lim && ic_api_parse_quantity(lim, &milli) == 0 && milli > 0) limit = milli / 1000;
  int64_t maxmem = limit - limit / 5;
  char mm[32];
  snprintf(mm, sizeof mm, "%lld", (long long)maxmem);
  json_t *args = json_array();
  json_array_append_new(args, json_string("redis-server"));
  if (pvc_spec(p)) {
    /* A volume is only useful if Redis persists into it (a project decision). */
    const char *a[] = {"--dir", "/data", "--appendonly", "yes"};
    for (int i = 0; i < 4; i++) json_array_append_new(args, json_string(a[i]));
  } else {
    const char *a[] = {"--save", "", "--appendonly", "no"};
    for (int i = 0; i < 4; i++) json_array_append_new(args, json_string(a[i]));
  }
  const char *rest[] = {"--protected-mode", "no", "--maxmemory", mm, "--maxmemory-policy",
                        "allkeys-lru"};
  for (int i = 0; i < 6; i++) json_array_append_new(args, json_string(rest[i]));
  json_t *pw = ic_kube_jget(redis, "authentication.password");
  if (json_is_object(pw)) {
    json_array_append_new(args, json_string("--requirepass"));
    json_array_append_new(args, json_string("$(REDIS_PASSWORD)"));
  }
  json_t *ctr = json_pack(
      "{s:s,s:s,s:s,s:o,s:[{s:s,s:i,s:s}],s:{s:{s:s},s:i,s:i,s:i},s:o}", "name", "redis-l2",
      "image", nonempty(image) ? image : DEFAULT_REDIS_IMAGE, "imagePullPolicy", "IfNotPresent",
      "args", args, "ports", "name", "redis", "containerPort", 6379, "protocol", "TCP",
      "readinessProbe", "tcpSocket", "port", "redis", "initialDelaySeconds", 3, "periodSeconds",
      10, "failureThreshold", 6, "resources", resources);
  /* Server defaults made explicit, so a steady state compares equal and never re-updates. */
  json_object_set_new(json_object_get(ctr, "readinessProbe"), "timeoutSeconds", json_integer(1));
  json_object_set_new(json_object_get(ctr, "readinessProbe"), "successThreshold", json_integer(1));
  if (pvc_spec(p))
    json_object_set_new(ctr, "volumeMounts", json_pack("[{s:s,s:s}]", "name", "data", "mountPath",
                                                       "/data"));
  if (json_is_object(pw)) {
    /* Password from the namespace-local Secret; redis-cli reads REDISCLI_AUTH for the probe. */
    json_t *ref = json_pack("{s:O}", "secretKeyRef", pw);
    json_object_set_new(ctr, "env", json_pack("[{s:s,s:O},{s:s,s:O}]", "name", "REDIS_PASSWORD",
                                              "valueFrom", ref, "name", "REDISCLI_AUTH",
                                              "valueFrom", ref));
    json_decref(ref);
    json_object_set_new(ctr, "readinessProbe",
                        json_pack("{s:{s:[s,s]},s:i,s:i,s:i,s:i,s:i}", "exec", "command",
                                  "redis-cli", "ping", "initialDelaySeconds", 3, "periodSeconds",
                                  10, "failureThreshold", 6, "timeoutSeconds", 2,
                                  "successThreshold", 1));
  }
  return ctr;
}

static json_t *render_pod_spec(pass_t *p, bool deployment_volume) {
  json_t *ps = json_pack("{s:[o],s:s,s:i}", "containers", render_container(p), "schedulerName",
                         "default-scheduler", "terminationGracePeriodSeconds", 30);
  if (deployment_volume)
    json_object_set_new(ps, "volumes",
                        json_pack("[{s:s,s:{s:s+}}]", "name", "data", "persistentVolumeClaim",
                                  "claimName", p->name, "-data"));
  json_t *layers[2] = {json_object_get(p->spec, "template"), json_object_get(p->remote, "workload")};
  for (int l = 0; l < 2; l++) {
    if (!json_is_object(layers[l])) continue;
    for (size_t i = 0; i < N_OVERRIDES; i++) {
      json_t *v = json_object_get(layers[l], override_fields[i]);
      if (!v || json_is_null(v)) continue;
      if ((json_is_string(v) && json_string_length(v) == 0) ||
          (json_is_array(v) && json_array_size(v) == 0) ||
          (json_is_object(v) && json_object_size(v) == 0))
        continue;
      json_object_set(ps, override_fields[i], v);
    }
  }
  return ps;
}

static json_t *pvc_template(pass_t *p, const char *name) {
  json_t *pvc = pvc_spec(p);
  json_t *spec = json_pack("{s:[s],s:{s:{s:O}}}", "accessModes", "ReadWriteOnce", "resources",
                           "requests", "storage", json_object_get(pvc, "size"));
  json_t *cls = json_object_get(pvc, "storageClassName");
  if (json_is_string(cls)) json_object_set(spec, "storageClassName", cls);
  return json_pack("{s:{s:s},s:o}", "metadata", "name", name, "spec", spec);
}

static json_t *render_workload(pass_t *p, const char *kind) {
  bool sts = strcmp(kind, "StatefulSet") == 0;
  json_t *spec = json_pack("{s:I,s:{s:o},s:{s:{s:o},s:o}}", "replicas", (json_int_t)eff_replicas(p),
                           "selector", "matchLabels", selector_labels(p), "template", "metadata",
                           "labels", child_labels(p), "spec",
                           render_pod_spec(p, !sts && pvc_spec(p)));
  if (sts) {
    json_object_set_new(spec, "serviceName", json_string(p->name));
    if (pvc_spec(p))
      json_object_set_new(spec, "volumeClaimTemplates", json_pack("[o]", pvc_template(p, "data")));
  }
  return json_pack("{s:s,s:s,s:{s:s,s:s,s:o,s:o},s:o}", "apiVersion", "apps/v1", "kind", kind,
                   "metadata", "name", p->name, "namespace", p->ns, "labels", child_labels(p),
                   "ownerReferences", owner_ref(p), "spec", spec);
}

static json_t *render_service(pass_t *p) {
  return json_pack("{s:s,s:s,s:{s:s,s:s,s:o,s:o},s:{s:s,s:o,s:[{s:s,s:i,s:s,s:s}]}}",
                   "apiVersion", "v1", "kind", "Service", "metadata", "name", p->name,
                   "namespace", p->ns, "labels", child_labels(p), "ownerReferences", owner_ref(p),
                   "spec", "type", "ClusterIP", "selector", selector_labels(p), "ports", "name",
                   "redis", "port", 6379, "targetPort", "redis", "protocol", "TCP");
}

/* ---- apply (create-or-update with retry on conflict) ---------------------------------------- */

typedef struct {
  pass_t *p;
  json_t *desired;
  const char *kind;
  bool foreign;
} apply_ctx_t;

static const char *const container_fields[] = {
    "image",        "imagePullPolicy", "command",        "args",          "env",
    "ports",        "resources",       "volumeMounts",   "readinessProbe", "livenessProbe",
    "startupProbe", "securityContext"};

static void copy_or_delete(json_t *dst, json_t *src, const char *key) {
  json_t *v = json_object_get(src, key);
  if (v)
    json_object_set(dst, key, v);
  else
    json_object_del(dst, key);
}

/* Reconciles a live pod spec towards the desired one without touching server-defaulted fields
 * we do not render, so a steady state produces no update. */
static void merge_pod_spec(json_t *live, json_t *want) {
  json_t *lc = json_object_get(live, "containers");
  json_t *wc = json_object_get(want, "containers");
  json_t *out = json_array();
  size_t i, j;
  json_t *w, *l;
  json_array_foreach(wc, i, w) {
    json_t *match = NULL;
    json_array_foreach(lc, j, l) {
      const char *ln = sstr(l, "name"), *wn = sstr(w, "name");
      if (ln && wn && strcmp(ln, wn) == 0) match = l;
    }
    if (!match) {
      json_array_append(out, w);
      continue;
    }
    json_t *m = json_deep_copy(match);
    for (size_t f = 0; f < sizeof container_fields / sizeof *container_fields; f++)
      copy_or_delete(m, w, container_fields[f]);
    json_array_append_new(out, m);
  }
  json_object_set_new(live, "containers", out);
  copy_or_delete(live, want, "volumes");
  for (size_t f = 0; f < N_OVERRIDES; f++) {
    /* An empty value the API server defaulted (securityContext: {}) equals "not set". */
    json_t *lv = json_object_get(live, override_fields[f]);
    if (!json_object_get(want, override_fields[f]) &&
        ((json_is_object(lv) && json_object_size(lv) == 0) ||
         (json_is_array(lv) && json_array_size(lv) == 0)))
      continue;
    copy_or_delete(live, want, override_fields[f]);
  }
  copy_or_delete(live, want, "hostNetwork");
  json_t *dns = json_object_get(want, "dnsPolicy");
  if (dns || json_object_get(live, "dnsPolicy"))
    json_object_set_new(live, "dnsPolicy", json_string(dns ? json_string_value(dns) : "ClusterFirst"));
}

static int mutate_workload(void *ud, json_t *live) {
  apply_ctx_t *a = ud;
  if (!ic_kube_is_controlled_by(live, a->p->uid)) {
    a->foreign = true;
    return IC_EEXIST;
  }
  json_t *before = json_deep_copy(live);
  json_t *md = json_object_get(live, "metadata");
  json_object_set(md, "labels", ic_kube_jget(a->desired, "metadata.labels"));
  json_t *ls = json_object_get(live, "spec"), *ws = json_object_get(a->desired, "spec");
  if (!json_is_object(ls)) {
    ls = json_object();
    json_object_set_new(live, "spec", ls);
  }
  json_object_set(ls, "replicas", json_object_get(ws, "replicas"));
  json_t *lt = json_object_get(ls, "template");
  if (!json_is_object(lt)) {
    json_object_set(ls, "template", json_object_get(ws, "template"));
  } else {
    json_t *ltm = json_object_get(lt, "metadata");
    if (!json_is_object(ltm)) {
      ltm = json_object();
      json_object_set_new(lt, "metadata", ltm);
    }
    json_object_set(ltm, "labels", ic_kube_jget(ws, "template.metadata.labels"));
    json_t *lps = json_object_get(lt, "spec");
    if (!json_is_object(lps)) {
      json_object_set(lt, "spec", ic_kube_jget(ws, "template.spec"));
    } else {
      merge_pod_spec(lps, ic_kube_jget(ws, "template.spec"));
    }
  }
  if (strcmp(a->kind, "StatefulSet") == 0)
    json_object_set(ls, "serviceName", json_object_get(ws, "serviceName"));
  int rc = json_equal(before, live) ? 1 : 0;
  json_decref(before);
  return rc;
}

static int mutate_service(void *ud, json_t *live) {
  apply_ctx_t *a = ud;
  if (!ic_kube_is_controlled_by(live, a->p->uid)) {
    a->foreign = true;
    return IC_EEXIST;
  }
  json_t *before = json_deep_copy(live);
  json_object_set(json_object_get(live, "metadata"), "labels",
                  ic_kube_jget(a->desired, "metadata.labels"));
  json_t *ls = json_object_get(live, "spec"), *ws = json_object_get(a->desired, "spec");
  if (!json_is_object(ls)) {
    ls = json_object();
    json_object_set_new(live, "spec", ls);
  }
  json_object_set(ls, "type", json_object_get(ws, "type"));
  json_object_set(ls, "selector", json_object_get(ws, "selector"));
  json_object_set(ls, "ports", json_object_get(ws, "ports"));
  int rc = json_equal(before, live) ? 1 : 0;
  json_decref(before);
  return rc;
}

static int mutate_pvc(void *ud, json_t *live) {
  apply_ctx_t *a = ud;
  if (!ic_kube_is_controlled_by(live, a->p->uid)) {
    a->foreign = true;
    return IC_EEXIST;
  }
  /* Only ever raise the request: shrinking and class changes are not possible in Kubernetes. */
  json_t *want = ic_kube_jget(a->desired, "spec.resources.requests.storage");
  json_t *have = ic_kube_jget(live, "spec.resources.requests.storage");
  int64_t w = 0, h = 0;
  if (!want || ic_api_parse_quantity(want, &w) != 0) return 1;
  if (have && ic_api_parse_quantity(have, &h) == 0 && h >= w) return 1;
  json_t *spec = json_object_get(live, "spec");
  if (!json_is_object(spec)) return 1;
  json_t *res = json_object_get(spec, "resources");
  if (!json_is_object(res)) {
    res = json_object();
    json_object_set_new(spec, "resources", res);
  }
  json_t *req = json_object_get(res, "requests");
  if (!json_is_object(req)) {
    req = json_object();
    json_object_set_new(res, "requests", req);
  }
  json_object_set(req, "storage", want);
  return 0;
}

/* Create-or-update of one child. Returns 0 or an error, with p->err describing it. */
static int apply_child(pass_t *p, const ic_kube_res_t *res, const char *name, json_t *desired,
                       const char *kind, ic_kube_mutate_fn mutate, const char *what) {
  apply_ctx_t a = {p, desired, kind, false};
  ic_kube_status_t st = {0};
  int rc = IC_EIO;
  for (int attempt = 0; attempt < 3; attempt++) {
    rc = ic_kube_update_retry(p->c->kube, res, p->ns, name, NULL, mutate, &a, NULL, &st);
    if (rc != IC_ENOTFOUND) break;
    rc = ic_kube_create(p->c->kube, res, p->ns, desired, NULL, &st);
    if (rc != IC_EEXIST) break; /* created concurrently: loop to update it */
  }
  if (rc != 0) {
    if (a.foreign)
      snprintf(p->err, sizeof p->err, "apply %s %s/%s: %s %s/%s is not controlled by this CacheBackend",
               what, p->ns, name, kind, p->ns, name);
    else
      snprintf(p->err, sizeof p->err, "apply %s %s/%s: %s", what, p->ns, name,
               st.message[0] ? st.message : ic_strerror(rc));
  }
  return rc;
}

/* Deletes a child named `name` only if this CacheBackend controls it. */
static int delete_controlled(pass_t *p, const ic_kube_res_t *res, const char *name,
                             const char *what, bool *deleted) {
  json_t *live = NULL;
  ic_kube_status_t st;
  int rc = ic_kube_get(p->c->kube, res, p->ns, name, &live, &st);
  if (rc == IC_ENOTFOUND) return 0;
  if (rc != 0) {
    snprintf(p->err, sizeof p->err, "delete %s %s/%s: %s", what, p->ns, name, st.message);
    return rc;
  }
  bool mine = ic_kube_is_controlled_by(live, p->uid);
  const char *uid = sstr(live, "metadata.uid");
  char *uidc = uid ? strdup(uid) : NULL;
  json_decref(live);
  if (!mine) {
    free(uidc);
    return 0;
  }
  rc = ic_kube_delete(p->c->kube, res, p->ns, name, uidc, &st);
  free(uidc);
  if (rc == IC_ENOTFOUND) return 0;
  if (rc != 0) {
    snprintf(p->err, sizeof p->err, "delete %s %s/%s: %s", what, p->ns, name, st.message);
    return rc;
  }
  if (deleted) *deleted = true;
  ic_log_info("child_deleted", IC_LS("cachebackend", p->name), IC_LS("namespace", p->ns),
              IC_LS("kind", what));
  return 0;
}

/* Leaving the managed path: controlled Deployment, StatefulSet and Service go; PVCs stay. */
static int delete_managed_children(pass_t *p, const char *keep_kind) {
  int rc = 0;
  if (!keep_kind || strcmp(keep_kind, "Deployment") != 0)
    rc |= delete_controlled(p, &ic_kube_res_deployments, p->name, "deployment", NULL);
  if (!keep_kind || strcmp(keep_kind, "StatefulSet") != 0)
    rc |= delete_controlled(p, &ic_kube_res_statefulsets, p->name, "statefulset", NULL);
  if (!keep_kind)
    rc |= delete_controlled(p, &ic_kube_res_services, p->name, "service", &p->deleted_service);
  return rc ? IC_EIO : 0;
}

/* ---- conditions and health ------------------------------------------------------------------ */

typedef struct {
  char status[16]; /* copied: a verdict may outlive the condition it was read from */
  char reason[64];
  char message[512];
} verdict_t;

static void verdict(verdict_t *v, const char *status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void verdict(verdict_t *v, const char *status, const char *reason, const char *fmt, ...) {
  snprintf(v->status, sizeof v->status, "%s", status);
  snprintf(v->reason, sizeof v->reason, "%s", reason);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->message, sizeof v->message, fmt, ap);
  va_end(ap);
}

static void set_cond(pass_t *p, json_t *st, const char *type, const verdict_t *v, int64_t og) {
  ic_kube_condition_set(st, type, v->status, v->reason, v->message, og, p->now);
}

static void set_progressing(pass_t *p, json_t *st, const verdict_t *ready, int64_t og) {
  verdict_t pr;
  if (strcmp(ready->status, "True") == 0)
    verdict(&pr, "False", "Synced", "rendered children match desired state");
  else if (strcmp(ready->reason, "RolloutInProgress") == 0 ||
           strcmp(ready->reason, "AwaitingFirstKVEvent") == 0)
    verdict(&pr, "True", ready->reason, "%s", ready->message);
  else if (strcmp(ready->reason, "ReplicasUnavailable") == 0)
    verdict(&pr, "False", "Degraded", "%s", ready->message);
  else
    verdict(&pr, "False", ready->reason, "%s", ready->message);
  set_cond(p, st, "Progressing", &pr, og);
}

void ctl_set_health(json_t *st) {
  json_t *d = ic_kube_condition_get(st, "Degraded");
  json_t *r = ic_kube_condition_get(st, "Ready");
  const char *h = NULL;
  const char *rs = r ? sstr(r, "status") : NULL;
  const char *rr = r ? sstr(r, "reason") : NULL;
  if (d && nonempty(sstr(d, "status")) && strcmp(sstr(d, "status"), "True") == 0)
    h = "Degraded";
  else if (rs && strcmp(rs, "True") == 0)
    h = "Ready";
  else if (rs && strcmp(rs, "False") == 0 && rr &&
           (strcmp(rr, "InvalidStorageConfiguration") == 0 ||
            strcmp(rr, "ExternalEndpointMissing") == 0 ||
            strcmp(rr, "ExternalEndpointInvalid") == 0 || strcmp(rr, "EngineKernelDegraded") == 0))
    h = "Failed";
  else if (r)
    h = "Pending";
  if (h)
    json_object_set_new(st, "health", json_string(h));
  else
    json_object_del(st, "health");
}

static void remove_advisories(json_t *st) {
  const char *t[] = {"FunctionalProbeOK", "EngineKernelsHealthy", "T2Degraded",
                     "EngineCompatibility"};
  for (int i = 0; i < 4; i++) ic_kube_condition_remove(st, t[i]);
}

static bool typed_mp(pass_t *p) {
  return p->engine_wired && strcmp(p->type, "LMCache") == 0 &&
         json_is_object(json_object_get(p->spec, "lmCache"));
}

static bool typed_nodelocal(pass_t *p) {
  const char *t = sstr(p->spec, "lmCache.topology");
  return typed_mp(p) && t && strcmp(t, "NodeLocal") == 0;
}

/* Server Pods for typed NodeLocal backends, with the remote-tier binding (host:port, auth). */
static int nodelocal_servers(pass_t *p, const char *endpoint) {
  if (!typed_nodelocal(p)) return 0;
  json_t *binding = NULL;
  if (endpoint && *endpoint) {
    const char *colon = strrchr(endpoint, ':');
    if (colon) {
      char host[300];
      snprintf(host, sizeof host, "%.*s", (int)(colon - endpoint), endpoint);
      binding = json_pack("{s:s,s:I}", "host", host, "port", (json_int_t)atoll(colon + 1));
      json_t *auth = ic_kube_jget(p->remote, "redis.authentication");
      if (json_is_object(json_object_get(auth, "username")))
        json_object_set(binding, "username", json_object_get(auth, "username"));
      if (json_is_object(json_object_get(auth, "password")))
        json_object_set(binding, "password", json_object_get(auth, "password"));
    }
  }
  char err[512] = "";
  int rc = ctl_nodelocal_reconcile(p->c, p->cb, binding, err, sizeof err);
  json_decref(binding);
  if (rc) snprintf(p->err, sizeof p->err, "%s", err);
  return rc;
}

/* lmCacheMPReadyBase with fail-open fixed to true: the remote tier never gates Ready. */
static void mp_ready_base(pass_t *p, json_t *st, verdict_t *out) {
  json_t *cr = ic_kube_condition_get(st, "ConnectorReady");
  json_t *og = cr ? json_object_get(cr, "observedGeneration") : NULL;
  if (!cr || !json_is_integer(og) || json_integer_value(og) != p->generation) {
    verdict(out, "Unknown", "ConnectorInjectionUnverified",
            "connector health for the current CacheBackend generation has not been observed yet");
    return;
  }
  const char *s = sstr(cr, "status");
  if (!s || strcmp(s, "True") != 0) {
    verdict(out, s ? s : "Unknown", nonempty(sstr(cr, "reason")) ? sstr(cr, "reason") : "Unknown",
            "%s", sstr(cr, "message") ? sstr(cr, "message") : "");
    return;
  }
  verdict(out, "True", "ConnectorReady", "%s", sstr(cr, "message") ? sstr(cr, "message") : "");
}

/* KV-event readiness gate; engine-wired backends only. */
static void kv_gate(pass_t *p, json_t *st, verdict_t *ready, verdict_t *degraded, bool fresh,
                    bool events_only) {
  if (strcmp(ready->status, "False") == 0 && strcmp(ready->reason, "ReplicasUnavailable") == 0)
    verdict(degraded, "True", "ReplicasUnavailable", "%s", ready->message);
  else
    verdict(degraded, "False", "NotDegraded", "backend is not in a degraded state");
  json_t *ann = ic_kube_jget(p->cb, "metadata.annotations");
  json_t *ov = json_object_get(ann, "inferencecache.io/require-kv-events");
  bool disabled = json_is_string(ov) && strcmp(json_string_value(ov), "false") == 0;
  if (!p->engine_wired || disabled || strcmp(ready->status, "True") != 0) return;
  if (json_object_get(st, "firstKVEventObservedAt") ||
      ic_kube_jget(st, "indexParticipation.lastEventAt")) {
    verdict(ready, "True", "KVEventsObserved", "KV events observed from engine replicas");
    verdict(degraded, "False", "NotDegraded", "backend is not in a degraded state");
    return;
  }
  json_t *cur = ic_kube_condition_get(st, "Ready");
  int64_t timeout_ns = 5LL * 60 * 1000000000;
  const char *fet = sstr(p->spec, "observation.firstEventTimeout");
  int64_t parsed;
  if (fet && ic_api_parse_duration(fet, &parsed) == 0 && parsed > 0) timeout_ns = parsed;
  const char *what = events_only ? "events-only backend is wired" : "cache-backend workload is Available";
  if (!fresh && cur && nonempty(sstr(cur, "reason")) &&
      strcmp(sstr(cur, "reason"), "NoKVEventsObserved") == 0) {
    verdict(ready, "False", "NoKVEventsObserved", "%s but no KV event arrived within %llds",
            what, (long long)(timeout_ns / 1000000000));
    verdict(degraded, "True", "NoKVEventsObserved", "%s", ready->message);
    return;
  }
  int64_t anchor_us = ic_clock_realtime_us(), now_us = ic_clock_realtime_us();
  const char *fa = sstr(st, "firstAvailableAt");
  if (!fresh && fa) ic_kube_parse_time(fa, &anchor_us);
  int64_t elapsed_ns = (now_us - anchor_us) * 1000;
  if (elapsed_ns < timeout_ns) {
    verdict(ready, "False", "AwaitingFirstKVEvent",
            "%s; waiting up to %llds for the first KV event", what,
            (long long)(timeout_ns / 1000000000));
    int64_t left = (timeout_ns - elapsed_ns) / 1000000;
    if (p->requeue_ms == 0 || left < p->requeue_ms) p->requeue_ms = left > 0 ? left : 1;
  } else {
    verdict(ready, "False", "NoKVEventsObserved", "%s but no KV event arrived within %llds",
            what, (long long)(timeout_ns / 1000000000));
    verdict(degraded, "True", "NoKVEventsObserved", "%s", ready->message);
  }
}

static void latch_first_event(json_t *st) {
  json_t *le = ic_kube_jget(st, "indexParticipation.lastEventAt");
  if (!json_object_get(st, "firstKVEventObservedAt") && json_is_string(le))
    json_object_set(st, "firstKVEventObservedAt", le);
}

/* ---- engine selector count and connector status ----------------------------------------- */

static bool selector_of(pass_t *p, ic_buf_t *sel) {
  json_t *ml = ic_kube_jget(p->spec, "engineSelector.matchLabels");
  if (!json_is_object(ml) || json_object_size(ml) == 0) return false;
  const char *k;
  json_t *v;
  json_object_foreach(ml, k, v) {
    ic_buf_appendf(sel, "%s%s=%s", sel->len ? "," : "", k,
                   json_is_string(v) ? json_string_value(v) : "");
  }
  return true;
}

static bool pod_terminal(json_t *pod) {
  const char *ph = sstr(pod, "status.phase");
  return ph && (strcmp(ph, "Succeeded") == 0 || strcmp(ph, "Failed") == 0);
}

static bool labels_match(json_t *ml, json_t *labels) {
  const char *k;
  json_t *v;
  json_object_foreach(ml, k, v) {
    json_t *lv = json_object_get(labels, k);
    if (!json_is_string(lv) || !json_is_string(v) ||
        strcmp(json_string_value(lv), json_string_value(v)) != 0)
      return false;
  }
  return true;
}

/* status.matchedEnginePods / engineSelectorMessage. `pods` is the live
 * selector list (NULL when listing failed: keep the previous values). */
static void refresh_matched_pods(pass_t *p, json_t *st, json_t *pods, bool have_selector,
                                 bool *announce) {
  *announce = false;
  if (!have_selector) {
    json_object_del(st, "matchedEnginePods");
    json_object_del(st, "engineSelectorMessage");
    return;
  }
  if (p->requeue_ms == 0 || p->requeue_ms > 30000) p->requeue_ms = 30000;
  if (!pods) return;
  size_t count = json_array_size(pods), nonterminal = 0, i;
  json_t *pod;
  json_array_foreach(pods, i, pod) if (!pod_terminal(pod)) nonterminal++;
  /* Desired replicas of Deployments whose pod template the selector matches. */
  json_t *deps = NULL;
  bool reliable = ic_kube_list(p->c->kube, &ic_kube_res_deployments, p->ns, NULL, &deps, NULL) == 0;
  bool known = false;
  int64_t desired = 0;
  json_t *ml = ic_kube_jget(p->spec, "engineSelector.matchLabels");
  json_t *d;
  json_array_foreach(json_object_get(deps, "items"), i, d) {
    if (!labels_match(ml, ic_kube_jget(d, "spec.template.metadata.labels"))) continue;
    known = true;
    json_t *r = ic_kube_jget(d, "spec.replicas");
    desired += json_is_integer(r) ? json_integer_value(r) : 1;
  }
  json_decref(deps);
  if (reliable && known && desired != (int64_t)nonterminal) p->requeue_ms = 5000; /* churn */
  json_t *prev_count = json_object_get(st, "matchedEnginePods");
  const char *prev_msg = sstr(st, "engineSelectorMessage");
  bool prev_announced = prev_count && json_integer_value(prev_count) == 0 && nonempty(prev_msg);
  char msg[600] = "";
  if (count == 0) {
    if (!reliable) {
      snprintf(msg, sizeof msg, "%s", prev_msg ? prev_msg : "");
    } else if (!known || desired > 0) {
      snprintf(msg, sizeof msg,
               "spec.engineSelector matches no Pods in namespace %s; label the engine Pods "
               "(inferencecache.io/cache-domain) or fix the selector",
               p->ns);
    }
  }
  json_object_set_new(st, "matchedEnginePods", json_integer((json_int_t)count));
  if (*msg)
    json_object_set_new(st, "engineSelectorMessage", json_string(msg));
  else
    json_object_del(st, "engineSelectorMessage");
  *announce = reliable && count == 0 && *msg && !prev_announced;
}

static const char *pod_ann(json_t *pod, const char *key) {
  json_t *v = json_object_get(ic_kube_jget(pod, "metadata.annotations"), key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool pod_ready(json_t *pod) {
  size_t i;
  json_t *c;
  json_array_foreach(ic_kube_jget(pod, "status.conditions"), i, c) {
    const char *t = sstr(c, "type"), *s = sstr(c, "status");
    if (t && s && strcmp(t, "Ready") == 0) return strcmp(s, "True") == 0;
  }
  return false;
}

static int cmp_cov(const void *a, const void *b) {
  return strcmp(sstr(*(json_t *const *)a, "name"), sstr(*(json_t *const *)b, "name"));
}

/* status.connector + ConnectorReady for typed PodLocal MP backends.
 * Runs before dispatch so Ready folds the verdict of this pass (the reference folds it one
 * pass later and converges through the re-trigger; the end state is the same). */
static void refresh_connector(pass_t *p, json_t *st, json_t *pods, bool have_selector) {
  const char *topo = sstr(p->spec, "lmCache.topology");
  bool mp = p->engine_wired && strcmp(p->type, "LMCache") == 0 && strcmp(p->mode, "Offload") == 0 &&
            topo;
  if (!mp) {
    json_object_del(st, "connector");
    ic_kube_condition_remove(st, "ConnectorReady");
    return;
  }
  if (have_selector && !pods) return; /* list error: skip silently */
  if (strcmp(topo, "NodeLocal") == 0) {
    ctl_nodelocal_connector(p->c, p->cb, pods, st, p->now);
    return;
  }
  if (strcmp(topo, "PodLocal") != 0) return;
  char owner[600], gen[32];
  snprintf(owner, sizeof owner, "%s/%s", p->ns, p->name);
  snprintf(gen, sizeof gen, "%lld", (long long)p->generation);
  int matched = 0, verified = 0, ready_servers = 0, covered = 0, ready_engines = 0;
  json_t *cov = json_array();
  size_t i;
  json_t *pod;
  json_array_foreach(pods, i, pod) {
    if (pod_terminal(pod) || ic_kube_jget(pod, "metadata.deletionTimestamp")) continue;
    matched++;
    const char *by = pod_ann(pod, "inferencecache.io/injected-by");
    const char *byuid = pod_ann(pod, "inferencecache.io/injected-by-uid");
    const char *bygen = pod_ann(pod, "inferencecache.io/injected-generation");
    bool injected = by && strcmp(by, owner) == 0 && nonempty(p->uid) && byuid &&
                    strcmp(byuid, p->uid) == 0 && bygen && strcmp(bygen, gen) == 0;
    bool server_ready = false;
    size_t j;
    json_t *cs;
    json_array_foreach(ic_kube_jget(pod, "status.initContainerStatuses"), j, cs) {
      const char *n = sstr(cs, "name");
      if (n && strcmp(n, "lmcache-mp-server") == 0)
        server_ready = injected && json_is_true(json_object_get(cs, "ready")) &&
                       ic_kube_jget(cs, "state.running") != NULL;
    }
    bool pready = pod_ready(pod);
    if (injected) verified++;
    if (server_ready) {
      ready_servers++;
      covered++;
      if (pready) ready_engines++;
    }
    const char *reason = !injected ? "ConnectorInjectionUnverified"
                         : server_ready ? "ConnectorReady" : "MPServersNotReady";
    json_t *row = json_pack("{s:s,s:b,s:b,s:s}", "name", sstr(pod, "metadata.name"), "ready",
                            pready, "covered", server_ready, "reason", reason);
    const char *node = sstr(pod, "spec.nodeName");
    if (nonempty(node)) json_object_set_new(row, "nodeName", json_string(node));
    json_array_append_new(cov, row);
  }
  size_t n = json_array_size(cov);
  if (n > 1) {
    json_t **rows = malloc(n * sizeof *rows);
    for (size_t k = 0; k < n; k++) rows[k] = json_incref(json_array_get(cov, k));
    qsort(rows, n, sizeof *rows, cmp_cov);
    json_array_clear(cov);
    for (size_t k = 0; k < n; k++) json_array_append_new(cov, rows[k]);
    free(rows);
  }
  json_t *conn = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i}", "mode", "Multiprocess", "topology",
                           "PodLocal", "matchedEnginePods", matched, "readyEnginePods",
                           ready_engines, "desiredServers", matched, "readyServers", ready_servers,
                           "coveredEnginePods", covered, "uncoveredEnginePods", matched - covered);
  if (n) json_object_set(conn, "enginePodCoverage", cov);
  json_decref(cov);
  json_object_set_new(st, "connector", conn);
  verdict_t v;
  if (matched == 0)
    verdict(&v, "False", "NoEnginePods", "no active engine Pods match spec.engineSelector");
  else if (verified != matched)
    verdict(&v, "Unknown", "ConnectorInjectionUnverified",
            "%d/%d selected engine Pods carry the current injection stamp", verified, matched);
  else if (ready_servers == matched && ready_engines == matched)
    verdict(&v, "True", "ConnectorReady",
            "%d/%d selected engine Pods have a Ready LMCache MP native sidecar", ready_servers,
            matched);
  else
    verdict(&v, "False", "MPServersNotReady",
            "%d/%d selected engine Pods have a Ready LMCache MP native sidecar; %d engine Pods "
            "are Ready with the connector",
            ready_servers, matched, ready_engines);
  set_cond(p, st, "ConnectorReady", &v, p->generation);
}

/* ---- paths ---------------------------------------------------------------------------------- */

static void path_external(pass_t *p, json_t *st) {
  const char *ep = sstr(p->spec, "endpoint");
  if (nonempty(ep))
    json_object_set_new(st, "endpoint", json_string(ep)); /* byte for byte, no trimming */
  else
    json_object_del(st, "endpoint");
  char *trim = strdup(ep ? ep : "");
  char *s = trim;
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
  verdict_t ready;
  if (*s)
    verdict(&ready, "True", "ExternalEndpointAccepted",
            "external endpoint accepted; reachability is owned by the operator");
  else
    verdict(&ready, "False", "ExternalEndpointMissing", "spec.endpoint is empty");
  free(trim);
  set_cond(p, st, "Ready", &ready, p->generation);
  set_progressing(p, st, &ready, p->generation);
  ic_kube_condition_remove(st, "Degraded");
  ic_kube_condition_remove(st, "RemoteStorageReady");
  ic_kube_condition_remove(st, "ConnectorReady");
  remove_advisories(st);
  json_object_del(st, "remoteStorage");
  json_object_del(st, "connector");
  json_object_set_new(st, "observedGeneration", json_integer(p->generation));
}

static void path_unmanaged(pass_t *p, json_t *st) {
  const char *t[] = {"Ready", "Progressing", "Degraded", "ConnectorReady", "RemoteStorageReady"};
  for (int i = 0; i < 5; i++) ic_kube_condition_remove(st, t[i]);
  remove_advisories(st);
  json_object_del(st, "connector");
  json_object_del(st, "remoteStorage");
  json_object_del(st, "firstAvailableAt");
  json_object_set_new(st, "observedGeneration", json_integer(p->generation));
}

static int path_external_remote(pass_t *p, json_t *st) {
  const char *raw = sstr(p->remote, "endpoint");
  char *trim = strdup(raw ? raw : "");
  char *s = trim;
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
  verdict_t ev, remote, ready;
  const char *shape = *s ? ic_api_check_endpoint_shape(s) : NULL;
  if (!*s)
    verdict(&ev, "False", "ExternalEndpointMissing", "the external remote-storage endpoint is empty");
  else if (shape)
    verdict(&ev, "False", "ExternalEndpointInvalid", "spec.remoteStorage.endpoint: %s", shape);
  else
    verdict(&ev, "True", "ExternalEndpointAccepted", "external remote-storage endpoint accepted");
  if (strcmp(ev.status, "True") == 0)
    verdict(&remote, "True", "RemoteStorageReady",
            "external remote storage accepted; reachability owned by operator");
  else
    remote = ev;
  json_object_set_new(st, "remoteStorage", json_pack("{s:s,s:s,s:s}", "provider", "Redis",
                                                     "endpoint", s, "ready", remote.status));
  int nrc = strcmp(ev.status, "True") == 0 ? nodelocal_servers(p, s) : 0;
  free(trim);
  set_cond(p, st, "RemoteStorageReady", &remote, p->generation);
  if (typed_mp(p))
    mp_ready_base(p, st, &ready);
  else
    ready = ev;
  set_cond(p, st, "Ready", &ready, p->generation);
  set_progressing(p, st, &ready, p->generation);
  ic_kube_condition_remove(st, "Degraded");
  remove_advisories(st);
  json_object_set_new(st, "observedGeneration", json_integer(p->generation));
  return nrc;
}

static void engine_advisories(pass_t *p, json_t *st, verdict_t *ready, int64_t og);

static int path_serverless(pass_t *p, json_t *st, bool events_only) {
  int nrc = events_only ? 0 : nodelocal_servers(p, NULL);
  bool transitioned = json_object_get(st, "remoteStorage") != NULL;
  verdict_t ready, degraded;
  if (events_only)
    verdict(&ready, "True", "EventsOnlyActive",
            "events-only backend active; routing tier wired with no offload server");
  else
    verdict(&ready, "True", "HostOnlyActive",
            "host-only cache active; engine-local cache wired with no remote provider");
  if (!events_only && typed_mp(p)) {
    verdict_t base;
    mp_ready_base(p, st, &base);
    if (strcmp(base.status, "True") != 0) ready = base;
  }
  bool base_true = strcmp(ready.status, "True") == 0;
  latch_first_event(st);
  bool can_anchor = events_only || !typed_mp(p) || base_true;
  if (transitioned && !can_anchor)
    json_object_del(st, "firstAvailableAt");
  else if (can_anchor && (!json_object_get(st, "firstAvailableAt") || transitioned))
    json_object_set_new(st, "firstAvailableAt", json_string(p->now));
  kv_gate(p, st, &ready, &degraded, transitioned, events_only);
  if (!events_only && p->engine_wired) engine_advisories(p, st, &ready, p->generation);
  json_object_del(st, "remoteStorage");
  ic_kube_condition_remove(st, "RemoteStorageReady");
  set_cond(p, st, "Ready", &ready, p->generation);
  set_cond(p, st, "Degraded", &degraded, p->generation);
  set_progressing(p, st, &ready, p->generation);
  ic_kube_condition_remove(st, "FunctionalProbeOK");
  ic_kube_condition_remove(st, "T2Degraded");
  if (events_only || !p->engine_wired) {
    ic_kube_condition_remove(st, "EngineKernelsHealthy");
    ic_kube_condition_remove(st, "EngineCompatibility");
  }
  json_object_set_new(st, "observedGeneration", json_integer(p->generation));
  return nrc;
}

/* Workload readiness. */
static void workload_readiness(json_t *live, int64_t want, verdict_t *v) {
  if (want == 0) {
    verdict(v, "False", "ScaledToZero", "backend scaled to zero replicas");
    return;
  }
  json_t *s = json_object_get(live, "status");
  int64_t og = json_integer_value(json_object_get(s, "observedGeneration"));
  int64_t gen = json_integer_value(ic_kube_jget(live, "metadata.generation"));
  int64_t upd = json_integer_value(json_object_get(s, "updatedReplicas"));
  int64_t avail = json_integer_value(json_object_get(s, "availableReplicas"));
  bool rolled = og >= gen;
  if (rolled && upd >= want && avail >= want)
    verdict(v, "True", "BackendReady", "%lld/%lld replicas available", (long long)avail,
            (long long)want);
  else if (!rolled || upd < want)
    verdict(v, "False", "RolloutInProgress", "%lld/%lld replicas updated", (long long)upd,
            (long long)want);
  else
    verdict(v, "False", "ReplicasUnavailable", "%lld/%lld replicas available", (long long)avail,
            (long long)want);
}

static void probe_gate(pass_t *p, json_t *st, verdict_t *ready, int64_t og);
static void t2_advisory(pass_t *p, json_t *st, int64_t og);

static int path_managed(pass_t *p, json_t *st) {
  const char *kind = eff_kind(p);
  const ic_kube_res_t *wres =
      strcmp(kind, "StatefulSet") == 0 ? &ic_kube_res_statefulsets : &ic_kube_res_deployments;
  bool deployment = strcmp(kind, "Deployment") == 0;
  json_t *pvc = pvc_spec(p);
  if (ic_kube_jget(p->remote, "redis.authentication.username")) {
    /* Managed Redis has no ACL users (admission forbids it; be defensive for bypassed objects). */
    snprintf(p->err, sizeof p->err,
             "render redis %s/%s: remoteStorage.redis.authentication.username is not supported "
             "for Managed Redis", p->ns, p->name);
    return IC_EINVAL;
  }
  if (deployment && pvc && eff_replicas(p) > 1) {
    /* A ReadWriteOnce claim cannot back several replicas: provision nothing. */
    int rc = delete_managed_children(p, NULL);
    verdict_t ready;
    verdict(&ready, "False", "InvalidStorageConfiguration",
            "spec.storage.pvc with deploymentKind Deployment needs replicas <= 1 "
            "(a ReadWriteOnce claim cannot be shared); use StatefulSet");
    json_object_del(st, "endpoint");
    json_object_set_new(st, "remoteStorage", json_pack("{s:s,s:s,s:s}", "provider", "Redis",
                                                       "endpoint", "", "ready", "False"));
    set_cond(p, st, "Ready", &ready, p->generation);
    set_cond(p, st, "Progressing", &ready, p->generation);
    ic_kube_condition_remove(st, "Degraded");
    json_object_set_new(st, "observedGeneration", json_integer(p->generation));
    return rc;
  }
  /* The other workload kind goes when the kind changed. */
  int rc = delete_controlled(p, deployment ? &ic_kube_res_statefulsets : &ic_kube_res_deployments,
                             p->name, deployment ? "statefulset" : "deployment", NULL);
  int apply_rc = 0;
  char apply_err[512] = "";
  if (deployment && pvc) {
    char pvcname[300];
    snprintf(pvcname, sizeof pvcname, "%s-data", p->name);
    json_t *want = pvc_template(p, pvcname);
    json_t *md = json_object_get(want, "metadata");
    json_object_set_new(md, "namespace", json_string(p->ns));
    json_object_set_new(md, "labels", child_labels(p));
    json_object_set_new(md, "ownerReferences", owner_ref(p));
    json_object_set_new(want, "apiVersion", json_string("v1"));
    json_object_set_new(want, "kind", json_string("PersistentVolumeClaim"));
    apply_rc = apply_child(p, &ic_kube_res_pvcs, pvcname, want, "PersistentVolumeClaim",
                           mutate_pvc, "pvc");
    json_decref(want);
    if (apply_rc) snprintf(apply_err, sizeof apply_err, "%s", p->err);
  }
  if (apply_rc == 0) {
    json_t *w = render_workload(p, kind);
    apply_rc = apply_child(p, wres, p->name, w, kind, mutate_workload,
                           deployment ? "deployment" : "statefulset");
    json_decref(w);
    if (apply_rc) snprintf(apply_err, sizeof apply_err, "%s", p->err);
  }
  if (apply_rc == 0) {
    json_t *svc = render_service(p);
    apply_rc = apply_child(p, &ic_kube_res_services, p->name, svc, "Service", mutate_service,
                           "service");
    json_decref(svc);
    if (apply_rc) snprintf(apply_err, sizeof apply_err, "%s", p->err);
  }
  (void)rc;
  /* Status comes only from the live workload we control. */
  json_t *live = NULL;
  ic_kube_status_t gst;
  int grc = ic_kube_get(p->c->kube, wres, p->ns, p->name, &live, &gst);
  if (grc != 0 || !ic_kube_is_controlled_by(live, p->uid)) {
    json_decref(live);
    if (apply_rc) {
      snprintf(p->err, sizeof p->err, "%s", apply_err);
      return apply_rc;
    }
    if (grc == 0)
      snprintf(p->err, sizeof p->err, "get %s %s/%s: lost controller reference", kind, p->ns,
               p->name);
    else
      snprintf(p->err, sizeof p->err, "get %s %s/%s: %s", kind, p->ns, p->name,
               grc == IC_ENOTFOUND ? "not found after apply" : gst.message);
    return grc ? grc : IC_ESTATE;
  }
  char endpoint[400] = "";
  json_t *svc = NULL;
  if (ic_kube_get(p->c->kube, &ic_kube_res_services, p->ns, p->name, &svc, NULL) == 0 &&
      ic_kube_is_controlled_by(svc, p->uid)) {
    json_t *port = ic_kube_jget(json_array_get(ic_kube_jget(svc, "spec.ports"), 0), "port");
    snprintf(endpoint, sizeof endpoint, "%s.%s.svc.cluster.local:%lld", p->name, p->ns,
             (long long)(json_is_integer(port) ? json_integer_value(port) : 6379));
  }
  json_decref(svc);
  if (nodelocal_servers(p, endpoint) != 0 && apply_rc == 0) {
    apply_rc = IC_EIO;
    snprintf(apply_err, sizeof apply_err, "%s", p->err);
  }
  verdict_t wv, remote, ready, degraded;
  workload_readiness(live, eff_replicas(p), &wv);
  json_decref(live);
  if (strcmp(wv.reason, "RolloutInProgress") == 0)
    verdict(&remote, "Unknown", "RemoteStoragePending", "%s", wv.message);
  else if (!*endpoint)
    verdict(&remote, "False", "RemoteStorageUnavailable", "the managed Service is not published yet");
  else if (strcmp(wv.status, "True") == 0)
    verdict(&remote, "True", "RemoteStorageReady", "%s", wv.message);
  else
    verdict(&remote, wv.status, "RemoteStorageUnavailable", "%s", wv.message);
  int64_t og = apply_rc == 0 ? p->generation
                             : json_integer_value(json_object_get(st, "observedGeneration"));
  ready = typed_mp(p) ? (verdict_t){0} : wv;
  if (typed_mp(p)) mp_ready_base(p, st, &ready);
  latch_first_event(st);
  if (strcmp(ready.status, "True") == 0 && !json_object_get(st, "firstAvailableAt"))
    json_object_set_new(st, "firstAvailableAt", json_string(p->now));
  kv_gate(p, st, &ready, &degraded, false, false);
  if (p->engine_wired) {
    probe_gate(p, st, &ready, og);
    t2_advisory(p, st, og);
    engine_advisories(p, st, &ready, og);
  } else {
    ic_kube_condition_remove(st, "EngineKernelsHealthy");
    ic_kube_condition_remove(st, "EngineCompatibility");
    ic_kube_condition_remove(st, "FunctionalProbeOK");
    ic_kube_condition_remove(st, "T2Degraded");
  }
  if (*endpoint)
    json_object_set_new(st, "endpoint", json_string(endpoint));
  else
    json_object_del(st, "endpoint");
  json_object_set_new(st, "remoteStorage", json_pack("{s:s,s:s,s:s}", "provider", "Redis",
                                                     "endpoint", endpoint, "ready", remote.status));
  set_cond(p, st, "RemoteStorageReady", &remote, og);
  set_cond(p, st, "Ready", &ready, og);
  set_cond(p, st, "Degraded", &degraded, og);
  set_progressing(p, st, &ready, og);
  if (og > 0) json_object_set_new(st, "observedGeneration", json_integer(og));
  if (p->requeue_ms == 0 || p->requeue_ms > 30000) p->requeue_ms = 30000;
  if (apply_rc) {
    snprintf(p->err, sizeof p->err, "%s", apply_err);
    return apply_rc;
  }
  return 0;
}

/* ---- functional-probe gate (managed, engine-wired) ------------------- */

static void probe_forget(pass_t *p) {
  char key[600];
  snprintf(key, sizeof key, "%s/%s", p->ns, p->name);
  pthread_mutex_lock(&p->c->probe_mu);
  if (p->c->probe_slots) json_object_del(p->c->probe_slots, key);
  pthread_mutex_unlock(&p->c->probe_mu);
}

static void probe_commit(pass_t *p) {
  char key[600];
  snprintf(key, sizeof key, "%s/%s", p->ns, p->name);
  pthread_mutex_lock(&p->c->probe_mu);
  if (!p->c->probe_slots) p->c->probe_slots = json_object();
  json_object_set_new(p->c->probe_slots, key, json_integer(ic_clock_monotonic_ns() / 1000000));
  pthread_mutex_unlock(&p->c->probe_mu);
}

static void want_requeue(pass_t *p, int64_t ms) {
  if (ms < 1000) ms = 1000;
  if (p->requeue_ms == 0 || ms < p->requeue_ms) p->requeue_ms = ms;
}

static void trunc512(char *s) {
  if (strlen(s) > 512) strcpy(s + 509, "...");
}

static void probe_downgrade(verdict_t *ready, const char *reason, const char *msg) {
  verdict(ready, "False", reason, "functional probe failed: %s", msg);
}

static void probe_gate(pass_t *p, json_t *st, verdict_t *ready, int64_t og) {
  ctl_t *c = p->c;
  json_t *existing = ic_kube_condition_get(st, "FunctionalProbeOK");
  if (!c->probe_url || !*c->probe_url) {
    ic_kube_condition_remove(st, "FunctionalProbeOK");
    return;
  }
  if (strcmp(ready->status, "True") != 0) return;
  json_t *ann = ic_kube_jget(p->cb, "metadata.annotations");
  json_t *skip = json_object_get(ann, "inferencecache.io/skip-functional-probe");
  if (json_is_string(skip) && strcmp(json_string_value(skip), "true") == 0) {
    verdict_t v;
    verdict(&v, "True", "ProbeBypassed",
            "functional probe bypassed by annotation inferencecache.io/skip-functional-probe");
    set_cond(p, st, "FunctionalProbeOK", &v, og);
    return;
  }
  bool was_false = existing && sstr(existing, "status") && strcmp(sstr(existing, "status"), "False") == 0;
  char key[600];
  snprintf(key, sizeof key, "%s/%s", p->ns, p->name);
  int64_t now_ms = ic_clock_monotonic_ns() / 1000000, last = -1;
  pthread_mutex_lock(&c->probe_mu);
  json_t *slot = c->probe_slots ? json_object_get(c->probe_slots, key) : NULL;
  if (json_is_integer(slot)) last = json_integer_value(slot);
  pthread_mutex_unlock(&c->probe_mu);
  if (last >= 0 && now_ms - last < c->probe_limit_ms) {
    want_requeue(p, c->probe_limit_ms - (now_ms - last));
    if (was_false) probe_downgrade(ready, sstr(existing, "reason"), sstr(existing, "message"));
    return;
  }
  char scheme[64] = "vllm";
  const char *rt = sstr(p->spec, "runtime");
  if (nonempty(rt)) {
    snprintf(scheme, sizeof scheme, "%s", rt);
    for (char *q = scheme; *q; q++) *q = (char)tolower((unsigned char)*q);
  }
  json_t *req = json_pack("{s:s,s:s,s:s}", "backend", key, "model", "functional-self-test",
                          "hashScheme", scheme);
  const char *bt = sstr(p->spec, "type");
  if (nonempty(bt)) json_object_set_new(req, "backendType", json_string(bt));
  char *body = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  long status = 0;
  char *resp = NULL;
  size_t rlen = 0;
  char err[1200] = "";
  int rc = ctl_server_call("POST", c->probe_url, c->controller_token_file, body, &status, &resp, &rlen);
  free(body);
  json_t *out = NULL;
  if (rc != 0)
    snprintf(err, sizeof err, "POST %s: %s", c->probe_url, ic_strerror(rc));
  else if (status < 200 || status >= 300)
    snprintf(err, sizeof err, "POST %s: unexpected status %ld: %.1024s", c->probe_url, status,
             resp ? resp : "");
  else if (!(out = json_loadb(resp ? resp : "", rlen, 0, NULL)) || !json_is_object(out))
    snprintf(err, sizeof err, "POST %s: undecodable probe response", c->probe_url);
  else if (!sstr(out, "backend") || strcmp(sstr(out, "backend"), key) != 0)
    snprintf(err, sizeof err, "probe response is for backend %s, want %s",
             sstr(out, "backend") ? sstr(out, "backend") : "\"\"", key);
  free(resp);
  if (*err) {
    json_decref(out);
    want_requeue(p, c->probe_limit_ms);
    if (was_false) {
      probe_downgrade(ready, sstr(existing, "reason"), sstr(existing, "message"));
      return;
    }
    char msg[1300];
    snprintf(msg, sizeof msg, "probe call failed: %s", err);
    trunc512(msg);
    verdict_t v;
    verdict(&v, "Unknown", "ProbeError", "%s", msg);
    set_cond(p, st, "FunctionalProbeOK", &v, og);
    return;
  }
  const char *stages[3] = {"ingest", "routing", "t2"};
  const char *reasons[3] = {"ProbeIngestFailed", "ProbeRoutingFailed", "ProbeT2Failed"};
  bool all = true;
  int failed = -1;
  for (int i = 0; i < 3; i++) {
    const char *v = sstr(out, stages[i]);
    const char *res = v && (strcmp(v, "ok") == 0 || strcmp(v, "skipped") == 0) ? v : "failed";
    if (v && strcmp(v, "ok") != 0 && strcmp(v, "skipped") != 0) all = false;
    if (!v) all = false;
    if (v && strcmp(v, "failed") == 0 && failed < 0) failed = i;
    if (c->m_probe_result)
      ic_metric_inc(ic_metric_child(c->m_probe_result, (const char *[]){key, stages[i], res}));
  }
  p->probe_commit = true;
  want_requeue(p, c->probe_limit_ms);
  verdict_t v;
  if (all) {
    verdict(&v, "True", "ProbeOK", "functional probe passed (ingest %s, routing %s, t2 %s)",
            sstr(out, "ingest"), sstr(out, "routing"), sstr(out, "t2"));
    set_cond(p, st, "FunctionalProbeOK", &v, og);
  } else {
    char msg[1300] = "";
    const char *reason = "ProbeError";
    if (failed >= 0) {
      reason = reasons[failed];
      size_t i;
      json_t *e;
      json_array_foreach(json_object_get(out, "errors"), i, e) {
        const char *stg = sstr(e, "stage");
        if (stg && strcmp(stg, stages[failed]) == 0 && sstr(e, "message")) {
          snprintf(msg, sizeof msg, "%s", sstr(e, "message"));
          break;
        }
      }
      if (!*msg) snprintf(msg, sizeof msg, "probe stage %s failed", stages[failed]);
    } else {
      snprintf(msg, sizeof msg, "probe returned unrecognized stage results: ingest=%s routing=%s t2=%s",
               sstr(out, "ingest") ? sstr(out, "ingest") : "",
               sstr(out, "routing") ? sstr(out, "routing") : "", sstr(out, "t2") ? sstr(out, "t2") : "");
    }
    trunc512(msg);
    verdict(&v, "False", reason, "%s", msg);
    set_cond(p, st, "FunctionalProbeOK", &v, og);
    probe_downgrade(ready, reason, msg);
  }
  json_decref(out);
}

/* T2Degraded advisory (managed, engine-wired): from indexParticipation.t2HitRate. */
static void t2_advisory(pass_t *p, json_t *st, int64_t og) {
  const char *rate = sstr(st, "indexParticipation.t2HitRate");
  if (!rate) {
    ic_kube_condition_remove(st, "T2Degraded");
    return;
  }
  verdict_t v;
  if (strcmp(rate, "0") == 0)
    verdict(&v, "True", "T2ZeroHitRate", "the remote tier served no hits (t2HitRate 0)");
  else
    verdict(&v, "False", "T2Serving", "the remote tier is serving hits (t2HitRate %s)", rate);
  set_cond(p, st, "T2Degraded", &v, og);
}

/* Engine advisories for managed and host-only engine-wired
 * backends: EngineKernelsHealthy from the lmcache-kernel-check init container (strict failures
 * downgrade Ready), EngineCompatibility from a crash-looping injected engine (never gates). */
static bool owned_by(pass_t *p, json_t *pod) {
  json_t *a = ic_kube_jget(pod, "metadata.annotations");
  json_t *by = json_object_get(a, "inferencecache.io/injected-by");
  json_t *uid = json_object_get(a, "inferencecache.io/injected-by-uid");
  char owner[600];
  snprintf(owner, sizeof owner, "%s/%s", p->ns, p->name);
  return json_is_string(by) && strcmp(json_string_value(by), owner) == 0 && nonempty(p->uid) &&
         json_is_string(uid) && strcmp(json_string_value(uid), p->uid) == 0;
}

static void engine_advisories(pass_t *p, json_t *st, verdict_t *ready, int64_t og) {
  if (p->pods) {
    int fail = 0, error = 0, pending = 0, ok = 0;
    bool strict_fail = false;
    char detail[400] = "";
    size_t i, j;
    json_t *pod, *ic;
    json_array_foreach(p->pods, i, pod) {
      if (!owned_by(p, pod)) continue;
      json_t *spec_ic = NULL;
      json_array_foreach(ic_kube_jget(pod, "spec.initContainers"), j, ic) {
        if (sstr(ic, "name") && strcmp(sstr(ic, "name"), "lmcache-kernel-check") == 0) spec_ic = ic;
      }
      if (!spec_ic) continue;
      bool strict = false;
      json_t *e;
      json_array_foreach(json_object_get(spec_ic, "env"), j, e) {
        if (sstr(e, "name") && strcmp(sstr(e, "name"), "KERNEL_CHECK_STRICT") == 0 && sstr(e, "value") &&
            strcmp(sstr(e, "value"), "1") == 0)
          strict = true;
      }
      json_t *term = NULL;
      json_array_foreach(ic_kube_jget(pod, "status.initContainerStatuses"), j, ic) {
        if (!sstr(ic, "name") || strcmp(sstr(ic, "name"), "lmcache-kernel-check") != 0) continue;
        term = ic_kube_jget(ic, "state.terminated");
        if (!term) term = ic_kube_jget(ic, "lastState.terminated");
      }
      if (!term) {
        pending++;
        continue;
      }
      char msg[300];
      snprintf(msg, sizeof msg, "%s", sstr(term, "message") ? sstr(term, "message") : "");
      char *m = msg;
      while (isspace((unsigned char)*m)) m++;
      size_t n = strlen(m);
      while (n && isspace((unsigned char)m[n - 1])) m[--n] = 0;
      long long code = json_integer_value(json_object_get(term, "exitCode"));
      if (strncmp(m, "FAIL:", 5) == 0) {
        fail++;
        strict_fail |= strict;
        if (!*detail) snprintf(detail, sizeof detail, "%s: %s", sstr(pod, "metadata.name"), m);
      } else if (strcmp(m, "OK") == 0 && code == 0) {
        ok++;
      } else {
        error++;
        if (!*detail) {
          const char *r = sstr(term, "reason");
          snprintf(detail, sizeof detail, "%s: exit %lld%s%s%s%s", sstr(pod, "metadata.name"), code,
                   nonempty(r) ? " " : "", nonempty(r) ? r : "", *m ? ": " : "", m);
        }
      }
    }
    verdict_t v;
    if (fail + error + pending + ok == 0) {
      ic_kube_condition_remove(st, "EngineKernelsHealthy");
    } else {
      if (fail)
        verdict(&v, "False", "KernelLoadFailed", "LMCache kernel check failed on %d engine Pod(s): %s",
                fail, detail);
      else if (error)
        verdict(&v, "Unknown", "KernelCheckError", "LMCache kernel check errored: %s", detail);
      else if (pending)
        verdict(&v, "Unknown", "KernelCheckPending", "%d engine Pod(s) have not finished the kernel check",
                pending);
      else
        verdict(&v, "True", "KernelsHealthy", "LMCache kernels load on %d engine Pod(s)", ok);
      set_cond(p, st, "EngineKernelsHealthy", &v, og);
      if (fail && strict_fail)
        verdict(ready, "False", "EngineKernelDegraded", "strict kernel check failed: %s", detail);
    }
  }
  /* Crash-looping injected engines anywhere in the namespace (list error: leave as is). */
  json_t *all = NULL;
  if (ic_kube_list(p->c->kube, &ic_kube_res_pods, p->ns, NULL, &all, NULL) != 0) return;
  const char *rt = sstr(p->spec, "runtime");
  const char *engine = rt && strcasecmp(rt, "SGLang") == 0 ? "sglang" : "vllm";
  bool found = false;
  size_t i, j;
  json_t *pod, *cs;
  json_array_foreach(json_object_get(all, "items"), i, pod) {
    if (found || !owned_by(p, pod)) continue;
    json_t *pick = NULL, *sole = NULL;
    int others = 0;
    json_array_foreach(ic_kube_jget(pod, "status.containerStatuses"), j, cs) {
      const char *n = sstr(cs, "name");
      if (!n) continue;
      if (strcmp(n, engine) == 0) pick = cs;
      if (strcmp(n, "kvevent-subscriber") != 0) {
        others++;
        sole = cs;
      }
    }
    if (!pick && others == 1) pick = sole;
    const char *wr = pick ? sstr(pick, "state.waiting.reason") : NULL;
    if (wr && strcmp(wr, "CrashLoopBackOff") == 0) {
      verdict_t v;
      verdict(&v, "False", "InjectedEngineCrashLooping",
              "engine container %s in Pod %s is in CrashLoopBackOff after cache injection; some "
              "models (for example hybrid-attention ones) do not work with the injected connector — "
              "verify the engine logs",
              sstr(pick, "name"), sstr(pod, "metadata.name"));
      set_cond(p, st, "EngineCompatibility", &v, og);
      found = true;
    }
  }
  if (!found) ic_kube_condition_remove(st, "EngineCompatibility");
  json_decref(all);
}

/* ---- reconcile -------------------------------------------------------------------------------- */

static void compute_effective(pass_t *p) {
  const char *t = sstr(p->spec, "type");
  const char *rt = sstr(p->spec, "runtime");
  p->engine_wired = nonempty(rt);
  snprintf(p->type, sizeof p->type, "%s", nonempty(t) ? t : (p->engine_wired ? "LMCache" : ""));
  const char *m = sstr(p->spec, "integration.mode");
  p->mode = nonempty(m) ? m : "Offload";
  p->remote = json_object_get(p->spec, "remoteStorage");
}

static void emit_transition_events(pass_t *p, json_t *before, json_t *after) {
  json_t *bd = ic_kube_condition_get(before, "Degraded"), *ad = ic_kube_condition_get(after, "Degraded");
  json_t *br = ic_kube_condition_get(before, "Ready"), *ar = ic_kube_condition_get(after, "Ready");
  bool was_deg = bd && sstr(bd, "status") && strcmp(sstr(bd, "status"), "True") == 0;
  bool is_deg = ad && sstr(ad, "status") && strcmp(sstr(ad, "status"), "True") == 0;
  const char *areason = ar ? sstr(ar, "reason") : NULL;
  const char *breason = br ? sstr(br, "reason") : NULL;
  bool ready = ar && sstr(ar, "status") && strcmp(sstr(ar, "status"), "True") == 0;
  char note[600];
  if (!was_deg && is_deg && !(areason && strcmp(areason, "NoKVEventsObserved") == 0)) {
    snprintf(note, sizeof note, "cache backend is degraded: %s", ar ? sstr(ar, "message") : "");
    ic_kube_event(p->c->kube, "cachebackend-controller", p->c->identity, p->cb, "Warning",
                  "BackendDegraded", note);
  }
  if (was_deg && ready && !(breason && strcmp(breason, "NoKVEventsObserved") == 0))
    ic_kube_event(p->c->kube, "cachebackend-controller", p->c->identity, p->cb, "Normal",
                  "BackendRecovered", "cache backend recovered");
  if (areason && (!breason || strcmp(breason, areason) != 0)) {
    if (strcmp(areason, "AwaitingFirstKVEvent") == 0 || strcmp(areason, "NoKVEventsObserved") == 0)
      ic_kube_event(p->c->kube, "cachebackend-controller", p->c->identity, p->cb,
                    areason[0] == 'N' ? "Warning" : "Normal", areason, sstr(ar, "message"));
  }
  const char *mp_conds[] = {"ConnectorReady", "RemoteStorageReady"};
  for (int i = 0; i < 2; i++) {
    json_t *b = ic_kube_condition_get(before, mp_conds[i]), *a = ic_kube_condition_get(after, mp_conds[i]);
    if (!a) continue;
    bool changed = !b || !json_equal(json_object_get(a, "status"), json_object_get(b, "status")) ||
                   !json_equal(json_object_get(a, "reason"), json_object_get(b, "reason")) ||
                   !json_equal(json_object_get(a, "observedGeneration"),
                               json_object_get(b, "observedGeneration"));
    const char *s = sstr(a, "status"), *r = sstr(a, "reason");
    if (changed && s && r)
      ic_kube_event(p->c->kube, "cachebackend-controller", p->c->identity, p->cb,
                    strcmp(s, "True") == 0 ? "Normal" : "Warning", r, sstr(a, "message"));
  }
  json_t *bc = ic_kube_condition_get(before, "EngineCompatibility");
  json_t *ac = ic_kube_condition_get(after, "EngineCompatibility");
  if (ac && !bc)
    ic_kube_event(p->c->kube, "cachebackend-controller", p->c->identity, p->cb, "Warning",
                  "InjectedEngineCrashLooping", sstr(ac, "message"));
  if (!json_object_get(before, "firstKVEventObservedAt") &&
      json_object_get(after, "firstKVEventObservedAt"))
    ic_kube_event(p->c->kube, "cachebackend-controller", p->c->identity, p->cb, "Normal",
                  "KVEventsObserved", "first KV event observed");
}

int ctl_reconcile_cachebackend(ctl_t *c, const char *key, int64_t *requeue_ms) {
  *requeue_ms = 0;
  const char *slash = strchr(key, '/');
  if (!slash) return IC_EINVAL;
  char ns[256], name[256];
  snprintf(ns, sizeof ns, "%.*s", (int)(slash - key), key);
  snprintf(name, sizeof name, "%s", slash + 1);
  pass_t p = {.c = c, .ns = ns, .name = name};
  ic_kube_status_t st;
  int rc = ic_kube_get(c->kube, &ctl_res_cachebackends, ns, name, &p.cb, &st);
  if (rc == IC_ENOTFOUND) {
    probe_forget(&p);
    return 0;
  }
  if (rc != 0) {
    ic_log_error("reconcile_failed", IC_LS("cachebackend", key),
                 IC_LS("error", "get CacheBackend"), IC_LS("cause", st.message));
    return rc;
  }
  p.spec = json_object_get(p.cb, "spec");
  p.uid = sstr(p.cb, "metadata.uid");
  p.generation = json_integer_value(ic_kube_jget(p.cb, "metadata.generation"));
  ctl_now(p.now);
  compute_effective(&p);

  json_t *old_status = json_object_get(p.cb, "status");
  json_t *before = json_is_object(old_status) ? json_deep_copy(old_status) : json_object();
  json_t *stj = json_deep_copy(before);
  /* One live list of the selected engine Pods feeds the connector and the matched count. */
  ic_buf_t sel = IC_BUF_INIT;
  bool have_selector = selector_of(&p, &sel);
  json_t *podlist = NULL, *pods = NULL;
  if (!have_selector)
    pods = json_array();
  else if (ic_kube_list(c->kube, &ic_kube_res_pods, ns, sel.data, &podlist, NULL) == 0)
    pods = json_incref(json_object_get(podlist, "items"));
  ic_buf_free(&sel);
  json_decref(podlist);
  p.pods = pods;
  refresh_connector(&p, stj, pods, have_selector);
  if (!typed_nodelocal(&p)) ctl_nodelocal_cleanup(c, p.cb);
  const char *ownership = sstr(p.remote, "ownership");
  const char *provider = sstr(p.remote, "provider");
  bool redis = provider && strcmp(provider, "Redis") == 0;
  bool lmcache = strcmp(p.type, "LMCache") == 0;
  bool offload = strcmp(p.mode, "Offload") == 0;
  const char *path;
  rc = 0;
  if (strcmp(p.type, "External") == 0) {
    path = "external";
    rc = delete_managed_children(&p, NULL);
    path_external(&p, stj);
  } else if (lmcache && p.engine_wired && strcmp(p.mode, "EventsOnly") == 0) {
    path = "events-only";
    rc = delete_managed_children(&p, NULL);
    int prc2 = path_serverless(&p, stj, true);
    if (!rc) rc = prc2;
  } else if (lmcache && redis && offload && ownership && strcmp(ownership, "Managed") == 0) {
    path = "managed";
    rc = path_managed(&p, stj);
  } else if (lmcache && redis && offload && ownership && strcmp(ownership, "External") == 0) {
    path = "external-remote";
    rc = delete_managed_children(&p, NULL);
    int prc2 = path_external_remote(&p, stj);
    if (!rc) rc = prc2;
  } else if (lmcache && p.engine_wired && json_is_object(json_object_get(p.spec, "lmCache")) &&
             !p.remote) {
    path = "host-only";
    rc = delete_managed_children(&p, NULL);
    int prc2 = path_serverless(&p, stj, false);
    if (!rc) rc = prc2;
  } else {
    path = "unmanaged";
    rc = delete_managed_children(&p, NULL);
    path_unmanaged(&p, stj);
  }
  if (strcmp(path, "managed") != 0) probe_forget(&p);
  /* The controller retracts an endpoint it published through a Service it just deleted. */
  if (p.deleted_service && strcmp(path, "external") != 0) json_object_del(stj, "endpoint");
  bool announce = false;
  refresh_matched_pods(&p, stj, have_selector ? pods : NULL, have_selector, &announce);
  json_decref(pods);
  ctl_set_health(stj);

  json_t *diff = ic_kube_merge_diff(before, stj);
  if (diff && json_object_size(diff) > 0) {
    json_t *patch = json_pack("{s:o}", "status", diff);
    int prc = ic_kube_patch(c->kube, &ctl_res_cachebackends, ns, name, "status",
                            IC_KUBE_PATCH_MERGE, patch, NULL, false, NULL, &st);
    json_decref(patch);
    if (prc != 0) {
      snprintf(p.err, sizeof p.err, "patch CacheBackend status %s/%s: %s", ns, name,
               st.message[0] ? st.message : ic_strerror(prc));
      if (rc == 0) rc = prc;
    } else {
      if (p.probe_commit) probe_commit(&p);
      emit_transition_events(&p, before, stj);
      if (announce)
        ic_kube_event(c->kube, "cachebackend-controller", c->identity, p.cb, "Normal",
                      "EngineSelectorUnmatched", sstr(stj, "engineSelectorMessage"));
    }
  } else {
    json_decref(diff);
    if (p.probe_commit) probe_commit(&p);
  }
  if (rc != 0)
    ic_log_error("reconcile_failed", IC_LS("cachebackend", key), IC_LS("path", path),
                 IC_LS("error", p.err));
  else
    ic_log_debug("reconciled", IC_LS("cachebackend", key), IC_LS("path", path));
  *requeue_ms = p.requeue_ms;
  json_decref(before);
  json_decref(stj);
  json_decref(p.cb);
  return rc;
}
