/* lib/doctor checks: each turns what was gathered (server answers, API lists, the /snapshot body)
 * into findings. No I/O here except the optional TCP dial callback, so every branch is unit-tested
 * with literal JSON (tests/unit/test_doctor.c). Codes and conditions: docs/doctor.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/doctor.h"
#include "ic/kube.h"

#define INJECTED_BY "inferencecache.io/injected-by"
#define INJECTED_BY_UID "inferencecache.io/injected-by-uid"
#define EVENT_INJECTED "InjectedByCacheBackend"
#define EVENT_NO_MATCH "NoMatchingCacheBackend"

/* ------------------------------------------------------------------------ helpers */

static const char *str_or(json_t *o, const char *path, const char *def) {
  const char *s = ic_kube_jstr(o, path);
  return s ? s : def;
}

static const char *ns_of(json_t *o) { return str_or(o, "metadata.namespace", ""); }
static const char *name_of(json_t *o) { return str_or(o, "metadata.name", ""); }

/* "kind/namespace/name" with the kind in lower case, the form findings use. */
static void ref(char *out, size_t n, const char *kind, json_t *o) {
  snprintf(out, n, "%s/%s/%s", kind, ns_of(o), name_of(o));
}

static json_t *condition(json_t *o, const char *type) {
  json_t *st = json_object_get(o, "status");
  return json_is_object(st) ? ic_kube_condition_get(st, type) : NULL;
}

static bool cond_true(json_t *c) { return c && !strcmp(str_or(c, "status", ""), "True"); }

static json_t *match_labels(json_t *cb) {
  json_t *ml = ic_kube_jget(cb, "spec.engineSelector.matchLabels");
  return json_is_object(ml) && json_object_size(ml) ? ml : NULL;
}

/* Every selector label present with the same value (an empty selector matches nothing here:
 * selector-less backends select no engine pods). */
static bool selects(json_t *ml, json_t *pod) {
  if (!ml) return false;
  json_t *labels = ic_kube_jget(pod, "metadata.labels");
  const char *k;
  json_t *v;
  json_object_foreach(ml, k, v) {
    json_t *have = json_object_get(labels, k);
    if (!json_is_string(have) || !json_is_string(v) ||
        strcmp(json_string_value(have), json_string_value(v)))
      return false;
  }
  return true;
}

static bool has_time(json_t *o, const char *path, int64_t *us) {
  const char *s = ic_kube_jstr(o, path);
  return s && *s && ic_kube_parse_time(s, us) == 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted, distinct namespaces of the objects in `arr` (borrowed strings; caller frees the array).
 */
static const char **namespaces(json_t *arr, size_t *n) {
  *n = 0;
  size_t len = json_array_size(arr);
  const char **out = calloc(len ? len : 1, sizeof *out);
  if (!out) return NULL;
  size_t i;
  json_t *o;
  json_array_foreach(arr, i, o) out[(*n)++] = ns_of(o);
  qsort(out, *n, sizeof *out, cmp_str);
  size_t w = 0;
  for (size_t j = 0; j < *n; j++)
    if (!w || strcmp(out[w - 1], out[j])) out[w++] = out[j];
  *n = w;
  return out;
}

/* -------------------------------------------------------------- server endpoints */

void ic_doctor_check_health(ic_doctor_report_t *r, const char *target, const char *rpc_err,
                            int health_status) {
  static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  if (rpc_err)
    ic_doctor_add(r, "SV001", IC_DOCTOR_FAIL, IC_DOCTOR_CHECK_SERVER, target,
                  "gRPC health check failed: %s — is the server running and is its gRPC port "
                  "reachable from here (kubectl port-forward, --server-endpoint)?",
                  rpc_err);
  else if (health_status != 1)
    ic_doctor_add(r, "SV002", IC_DOCTOR_FAIL, IC_DOCTOR_CHECK_SERVER, target,
                  "server reported health status %s, want SERVING (it is starting or draining)",
                  (unsigned)health_status < 4 ? names[health_status] : "invalid");
  else
    ic_doctor_add(r, "SV003", IC_DOCTOR_OK, IC_DOCTOR_CHECK_SERVER, target,
                  "gRPC health check reports SERVING");
}

void ic_doctor_check_snapshot(ic_doctor_report_t *r, const char *url, long http, const char *err,
                              const char *body, size_t body_len, bool token_sent) {
  const char *chk = IC_DOCTOR_CHECK_SNAPSHOT;
  if (http == 0) {
    ic_doctor_add(r, "SN001", IC_DOCTOR_FAIL, chk, url, "GET /snapshot failed: %s",
                  err ? err : "no answer");
    return;
  }
  if (http == 401 || http == 403) {
    ic_doctor_add(r, "SN005", IC_DOCTOR_WARN, chk, url,
                  "/snapshot is reachable but returned HTTP %ld (auth enforced): the token was "
                  "missing or rejected — pass a controller-audience token with "
                  "--snapshot-token-file to verify the snapshot body",
                  http);
    return;
  }
  if (http != 200) {
    ic_doctor_add(r, "SN001", IC_DOCTOR_FAIL, chk, url,
                  "GET /snapshot returned HTTP %ld, want 200 (is this the server's snapshot "
                  "listener, --snapshot-bind-address?)",
                  http);
    return;
  }
  json_error_t je;
  json_t *doc = body ? json_loadb(body, body_len, 0, &je) : NULL;
  if (!doc) {
    ic_doctor_add(r, "SN002", IC_DOCTOR_WARN, chk, url,
                  "GET /snapshot returned 200 but the body is not JSON%s%s",
                  body || err ? ": " : "",
                  body  ? je.text
                  : err ? err
                        : "");
    return;
  }
  json_decref(doc);
  ic_doctor_add(r, "SN004", IC_DOCTOR_OK, chk, url, "/snapshot answered 200 with a JSON body");
  if (!token_sent)
    ic_doctor_add(r, "SN003", IC_DOCTOR_INFO, chk, url,
                  "/snapshot answered without authentication (no token was sent): the server "
                  "runs with --insecure-disable-auth or its auth is not enforced");
}

void ic_doctor_check_route(ic_doctor_report_t *r, const char *route, const char *url, long http,
                           const char *err) {
  bool probe = !strcmp(route, "/probe");
  const char *chk = probe ? IC_DOCTOR_CHECK_PROBE : IC_DOCTOR_CHECK_POLICY;
  const char *missing = probe ? "PB001" : "PL001", *wired = probe ? "PB002" : "PL002",
             *odd = probe ? "PB003" : "PL003";
  if (http == 0)
    ic_doctor_add(r, missing, IC_DOCTOR_FAIL, chk, url, "HEAD %s failed to connect: %s", route,
                  err ? err : "no answer");
  else if (http == 404)
    ic_doctor_add(r, missing, IC_DOCTOR_FAIL, chk, url,
                  "HEAD %s returned HTTP 404: the route is not mounted there (a wired route "
                  "answers 2xx/401/403/405) — is this the server's snapshot listener?",
                  route);
  else if ((http >= 200 && http < 300) || http == 401 || http == 403 || http == 405)
    ic_doctor_add(r, wired, IC_DOCTOR_OK, chk, url,
                  "%s route is wired (HTTP %ld to a non-mutating HEAD)", route, http);
  else
    ic_doctor_add(r, odd, IC_DOCTOR_WARN, chk, url,
                  "%s is mounted but answered HTTP %ld (expected 2xx/401/403/405): the server or "
                  "a proxy in front of it is erroring",
                  route, http);
}

/* ------------------------------------------------------------------ CacheBackends */

static size_t live_matches(json_t *cb, json_t *ml, json_t *pods) {
  size_t n = 0, i;
  json_t *pod;
  json_array_foreach(pods, i, pod) n += !strcmp(ns_of(pod), ns_of(cb)) && selects(ml, pod);
  return n;
}

static void one_backend(ic_doctor_report_t *r, json_t *cb, json_t *pods, int64_t now_us,
                        ic_doctor_dial_fn dial, void *dial_ud) {
  const char *chk = IC_DOCTOR_CHECK_BACKEND;
  char rs[512];
  ref(rs, sizeof rs, "cachebackend", cb);
  size_t before = r->len;

  json_t *ready = condition(cb, "Ready");
  if (!ready)
    ic_doctor_add(r, "CB001", IC_DOCTOR_WARN, chk, rs,
                  "Ready condition is not set yet: the controller has not reconciled this "
                  "backend (is inferencecache-controller running?)");
  else if (!cond_true(ready))
    ic_doctor_add(r, "CB001", IC_DOCTOR_WARN, chk, rs, "Ready=%s (reason %s): %s",
                  str_or(ready, "status", ""), str_or(ready, "reason", ""),
                  str_or(ready, "message", ""));

  json_t *storage = ic_kube_jget(cb, "spec.remoteStorage");
  if (!json_is_object(storage)) storage = NULL;
  bool external = storage && !strcmp(str_or(storage, "ownership", ""), "External");
  json_t *ml = match_labels(cb);
  if (!external) {
    if (ml) {
      json_t *m = ic_kube_jget(cb, "status.matchedEnginePods");
      if (!json_is_integer(m) && !pods)
        ic_doctor_add(r, "API001", IC_DOCTOR_FAIL, chk, rs,
                      "could not determine matched engine pods (the Pod list failed)");
      else if ((json_is_integer(m) ? (size_t)json_integer_value(m) : live_matches(cb, ml, pods)) ==
               0)
        ic_doctor_add(r, "CB002", IC_DOCTOR_WARN, chk, rs,
                      "status.matchedEnginePods is 0 (LikelySelectorMismatch): "
                      "spec.engineSelector matches no engine pods — the engine Deployment may be "
                      "missing, scaled to zero, or its pod labels differ from the selector");
    }
    int64_t first, last;
    bool has_first = has_time(cb, "status.firstKVEventObservedAt", &first);
    bool has_last = has_time(cb, "status.indexParticipation.lastEventAt", &last);
    if (!has_first && !has_last)
      ic_doctor_add(r, "CB003", IC_DOCTOR_WARN, chk, rs,
                    "no KV event ever observed for this backend (EngineNotReportingState): "
                    "status.firstKVEventObservedAt and indexParticipation.lastEventAt are both "
                    "unset — the engine's KV-event publisher may be off or the kvevent-subscriber "
                    "sidecar absent");
    else if (has_last && now_us - last > IC_DOCTOR_STALE_WINDOW_US)
      ic_doctor_add(r, "CB004", IC_DOCTOR_WARN, chk, rs,
                    "status.indexParticipation.lastEventAt is %llds old (EngineStale): beyond the "
                    "%llds freshness window — KV events have stopped flowing",
                    (long long)((now_us - last) / 1000000),
                    (long long)(IC_DOCTOR_STALE_WINDOW_US / 1000000));
    json_t *fp = condition(cb, "FunctionalProbeOK");
    if (fp && !cond_true(fp))
      ic_doctor_add(r, "CB007", IC_DOCTOR_WARN, chk, rs,
                    "FunctionalProbeOK=%s (reason %s): the controller's functional self-test "
                    "(POST /probe) is failing for this backend — %s",
                    str_or(fp, "status", ""), str_or(fp, "reason", ""), str_or(fp, "message", ""));
  }
  if (storage) {
    const char *ep = str_or(cb, "status.remoteStorage.endpoint", "");
    char err[256] = "";
    if (!*ep)
      ic_doctor_add(r, "CB005", IC_DOCTOR_WARN, chk, rs,
                    "status.remoteStorage.endpoint is empty: the remote tier has no published "
                    "address");
    else if (dial && dial(dial_ud, ep, err, sizeof err) != 0)
      ic_doctor_add(r, "CB005", IC_DOCTOR_WARN, chk, rs,
                    "status.remoteStorage.endpoint \"%s\" is not reachable over TCP: %s", ep, err);
  }
  if (r->len == before) {
    json_t *pc = ic_kube_jget(cb, "status.indexParticipation.prefixCount");
    if (external)
      ic_doctor_add(r, "CB006", IC_DOCTOR_OK, chk, rs, "External backend: Ready, endpoint %s",
                    dial ? "reachable" : "present");
    else
      ic_doctor_add(r, "CB006", IC_DOCTOR_OK, chk, rs, "Ready, %s, %lld prefix(es) indexed, %s",
                    ml ? "engine pods matched" : "no engineSelector (matching not applicable)",
                    json_is_integer(pc) ? (long long)json_integer_value(pc) : 0LL,
                    !storage ? "host-only (no endpoint)"
                    : dial   ? "endpoint reachable"
                             : "endpoint present");
  }
}

void ic_doctor_check_backends(ic_doctor_report_t *r, json_t *backends, json_t *pods, int64_t now_us,
                              ic_doctor_dial_fn dial, void *dial_ud) {
  size_t i;
  json_t *cb;
  json_array_foreach(backends, i, cb) one_backend(r, cb, pods, now_us, dial, dial_ud);
}

/* ------------------------------------------------------------- engine-pod injection */

/* The object an Event is about: events.k8s.io/v1 `regarding`, core/v1 `involvedObject`. */
static json_t *regarding(json_t *ev) {
  json_t *o = json_object_get(ev, "regarding");
  return json_is_object(o) ? o : json_object_get(ev, "involvedObject");
}

static bool event_about_pod(json_t *ev, const char *reason) {
  return !strcmp(str_or(ev, "reason", ""), reason) &&
         !strcmp(str_or(regarding(ev), "kind", ""), "Pod");
}

static bool injected_event(json_t *events, const char *uid) {
  size_t i;
  json_t *ev;
  if (!*uid) return false;
  json_array_foreach(events, i, ev) {
    if (event_about_pod(ev, EVENT_INJECTED) && !strcmp(str_or(regarding(ev), "uid", ""), uid))
      return true;
  }
  return false;
}

/* The backends in the pod's namespace whose selector picks it, sorted by name (borrowed). */
static size_t owners(json_t *backends, json_t *pod, json_t **out, size_t cap) {
  size_t n = 0, i;
  json_t *cb;
  json_array_foreach(backends, i, cb) {
    if (strcmp(ns_of(cb), ns_of(pod)) || !selects(match_labels(cb), pod)) continue;
    if (n < cap) { /* insertion keeps the first `cap` sorted; the count goes on */
      size_t j = n;
      while (j > 0 && strcmp(name_of(out[j - 1]), name_of(cb)) > 0) {
        out[j] = out[j - 1];
        j--;
      }
      out[j] = cb;
    }
    n++;
  }
  return n;
}

/* The annotation the Pod webhook stamps names ns/backend and carries the backend's uid. */
static bool stamped_by(json_t *pod, json_t *cb) {
  json_t *ann = ic_kube_jget(pod, "metadata.annotations");
  const char *uid = json_string_value(json_object_get(ann, INJECTED_BY_UID));
  const char *cbuid = str_or(cb, "metadata.uid", "");
  char want[512];
  snprintf(want, sizeof want, "%s/%s", ns_of(cb), name_of(cb));
  const char *by = json_string_value(json_object_get(ann, INJECTED_BY));
  return by && !strcmp(by, want) && *cbuid && uid && !strcmp(uid, cbuid);
}

void ic_doctor_check_injection(ic_doctor_report_t *r, json_t *backends, json_t *pods,
                               json_t *events) {
  const char *chk = IC_DOCTOR_CHECK_INJECTION;
  size_t i;
  json_t *pod;
  json_array_foreach(pods, i, pod) {
    json_t *m[8];
    size_t n = owners(backends, pod, m, 8);
    if (!n) continue;
    char rs[512];
    ref(rs, sizeof rs, "pod", pod);
    if (n > 1) {
      char names[512] = "";
      size_t off = 0;
      for (size_t k = 0; k < n && k < 8 && off < sizeof names; k++)
        off += snprintf(names + off, sizeof names - off, "%s%s", k ? ", " : "", name_of(m[k]));
      ic_doctor_add(r, "EP003", IC_DOCTOR_WARN, chk, rs,
                    "engine pod matches %zu CacheBackends (%s) in namespace %s: none is chosen "
                    "implicitly and new pods like it are denied at admission — make the "
                    "engineSelectors disjoint",
                    n, names, ns_of(pod));
    } else if (stamped_by(pod, m[0]))
      ic_doctor_add(r, "EP002", IC_DOCTOR_OK, chk, rs,
                    "engine pod is injected by CacheBackend %s/%s (injected-by annotation "
                    "matches the backend's uid)",
                    ns_of(m[0]), name_of(m[0]));
    else if (injected_event(events, str_or(pod, "metadata.uid", "")))
      ic_doctor_add(r, "EP002", IC_DOCTOR_OK, chk, rs,
                    "engine pod matches CacheBackend %s and has an InjectedByCacheBackend Event "
                    "for its uid",
                    name_of(m[0]));
    else
      ic_doctor_add(r, "EP001", IC_DOCTOR_WARN, chk, rs,
                    "engine pod matches CacheBackend %s (engineSelector) but was not injected "
                    "(no validated inferencecache.io/injected-by annotation, no "
                    "InjectedByCacheBackend Event): it runs without the kvevent-subscriber "
                    "sidecar and is invisible to routing — recreate it (kubectl rollout restart) "
                    "once the Pod webhook is up",
                    name_of(m[0]));
  }
}

/* ------------------------------------------------------------- index participation */

static json_t *snapshot_replica(json_t *snapshot, const char *id, const char *tenant) {
  size_t i;
  json_t *rep;
  json_array_foreach(json_object_get(snapshot, "replicas"), i, rep) {
    if (!strcmp(str_or(rep, "replicaId", ""), id) && !strcmp(str_or(rep, "tenant", ""), tenant))
      return rep;
  }
  return NULL;
}

void ic_doctor_check_index(ic_doctor_report_t *r, json_t *backends, json_t *pods,
                           json_t *snapshot) {
  if (!json_is_object(snapshot)) return;
  size_t i;
  json_t *pod;
  json_array_foreach(pods, i, pod) {
    json_t *m[2];
    /* Only pods the sidecar is in: one owner, stamped, running and not being deleted. */
    if (owners(backends, pod, m, 2) != 1 || !stamped_by(pod, m[0])) continue;
    if (strcmp(str_or(pod, "status.phase", ""), "Running") ||
        ic_kube_jget(pod, "metadata.deletionTimestamp"))
      continue;
    char rs[512];
    ref(rs, sizeof rs, "pod", pod);
    json_t *rep = snapshot_replica(snapshot, name_of(pod), ns_of(pod));
    if (!rep) {
      ic_doctor_add(r, "IX001", IC_DOCTOR_WARN, IC_DOCTOR_CHECK_INDEX, rs,
                    "running engine pod of CacheBackend %s has no replica \"%s\" (tenant %s) in "
                    "the server's index (/snapshot): its kvevent-subscriber sidecar is not "
                    "reporting — check the sidecar's logs and that it reaches the server's gRPC "
                    "port; gateways cannot route to this replica by cache",
                    name_of(m[0]), name_of(pod), ns_of(pod));
      continue;
    }
    json_t *pc = json_object_get(rep, "prefixCount");
    ic_doctor_add(r, "IX002", IC_DOCTOR_OK, IC_DOCTOR_CHECK_INDEX, rs,
                  "replica \"%s\" reports to the index: %lld prefix(es), last update %s",
                  name_of(pod), json_is_integer(pc) ? (long long)json_integer_value(pc) : 0LL,
                  str_or(rep, "lastUpdate", "unknown"));
  }
}

/* ------------------------------------------------------------------ orphaned pods */

/* When an Event last happened: series, then the legacy timestamps, then creation. */
static bool event_time(json_t *ev, int64_t *us) {
  return has_time(ev, "series.lastObservedTime", us) || has_time(ev, "lastTimestamp", us) ||
         has_time(ev, "deprecatedLastTimestamp", us) || has_time(ev, "eventTime", us) ||
         has_time(ev, "metadata.creationTimestamp", us);
}

void ic_doctor_check_orphans(ic_doctor_report_t *r, json_t *events, int64_t now_us) {
  size_t i;
  json_t *ev;
  json_array_foreach(events, i, ev) {
    int64_t t;
    if (!event_about_pod(ev, EVENT_NO_MATCH)) continue;
    if (!event_time(ev, &t) || now_us - t > IC_DOCTOR_ORPHAN_WINDOW_US) continue;
    json_t *about = regarding(ev);
    char rs[512];
    snprintf(rs, sizeof rs, "pod/%s/%s", str_or(about, "namespace", ns_of(ev)),
             str_or(about, "name", ""));
    ic_doctor_add(r, "OP001", IC_DOCTOR_WARN, IC_DOCTOR_CHECK_ORPHAN, rs,
                  "pod recorded a NoMatchingCacheBackend Event (LikelyOperatorMisconfiguration): "
                  "%s",
                  str_or(ev, "note", str_or(ev, "message", "")));
  }
}

/* ------------------------------------------------------------- tenants and policies */

void ic_doctor_check_tenants(ic_doctor_report_t *r, json_t *tenants) {
  size_t i;
  json_t *ct;
  json_array_foreach(tenants, i, ct) {
    char rs[512];
    ref(rs, sizeof rs, "cachetenant", ct);
    const char *id = str_or(ct, "spec.tenantID", "");
    json_t *q = condition(ct, "QuotaExceeded");
    if (cond_true(q)) {
      json_t *used = ic_kube_jget(ct, "status.indexEntries");
      json_t *max = ic_kube_jget(ct, "spec.quota.maxIndexEntries");
      ic_doctor_add(r, "CT001", IC_DOCTOR_WARN, IC_DOCTOR_CHECK_TENANT, rs,
                    "QuotaExceeded=True for tenant \"%s\": %lld index entries against a "
                    "maxIndexEntries quota of %lld%s%s — its new prefixes are not indexed; raise "
                    "the quota or expect more cache misses",
                    id, json_is_integer(used) ? (long long)json_integer_value(used) : -1LL,
                    json_is_integer(max) ? (long long)json_integer_value(max) : -1LL,
                    *str_or(q, "message", "") ? ": " : "", str_or(q, "message", ""));
    } else {
      ic_doctor_add(r, "CT002", IC_DOCTOR_OK, IC_DOCTOR_CHECK_TENANT, rs,
                    "tenant \"%s\" is within quota", id);
    }
  }
}

static size_t count_in(json_t *arr, const char *ns, json_t **first) {
  size_t n = 0, i;
  json_t *o;
  *first = NULL;
  json_array_foreach(arr, i, o) {
    if (strcmp(ns_of(o), ns)) continue;
    if (!*first || strcmp(name_of(o), name_of(*first)) < 0) *first = o;
    n++;
  }
  return n;
}

static bool tenant_claimed(json_t *tenants, const char *id) {
  size_t i;
  json_t *ct;
  json_array_foreach(tenants, i, ct) {
    if (!strcmp(str_or(ct, "spec.tenantID", ""), id)) return true;
  }
  return false;
}

void ic_doctor_check_coverage(ic_doctor_report_t *r, json_t *backends, json_t *policies,
                              json_t *tenants) {
  const char *chk = IC_DOCTOR_CHECK_COVERAGE;
  size_t n;
  const char **nss = policies ? namespaces(backends, &n) : NULL;
  for (size_t i = 0; nss && i < n; i++) {
    char rs[300];
    json_t *first;
    snprintf(rs, sizeof rs, "namespace/%s", nss[i]);
    size_t c = count_in(policies, nss[i], &first);
    if (c == 0)
      ic_doctor_add(r, "CP001", IC_DOCTOR_INFO, chk, rs,
                    "namespace \"%s\" has CacheBackends but no CachePolicy: the server's default "
                    "routing and eviction policy applies",
                    nss[i]);
    else if (c > 1)
      ic_doctor_add(r, "CP003", IC_DOCTOR_WARN, chk, rs,
                    "namespace \"%s\" has %zu CachePolicies: only \"%s\" (the first by name) is "
                    "in effect, the rest are inert — delete the extras",
                    nss[i], c, name_of(first));
    else
      ic_doctor_add(r, "CP002", IC_DOCTOR_OK, chk, rs, "namespace \"%s\" has 1 CachePolicy",
                    nss[i]);
  }
  free(nss);
  /* A CachePolicy governs the tenant named like its namespace (the sidecar reports
   * --tenant-id=<pod namespace>); without a CacheTenant for it that tenant has no quota. */
  nss = tenants ? namespaces(policies, &n) : NULL;
  for (size_t i = 0; nss && i < n; i++) {
    if (tenant_claimed(tenants, nss[i])) continue;
    json_t *first;
    count_in(policies, nss[i], &first);
    char rs[512];
    ref(rs, sizeof rs, "cachepolicy", first);
    ic_doctor_add(r, "CP004", IC_DOCTOR_WARN, chk, rs,
                  "CachePolicy %s/%s applies to tenant \"%s\" but no CacheTenant declares "
                  "spec.tenantID \"%s\": the tenant has no index quota and can crowd others out "
                  "of the shared index — create a CacheTenant for it",
                  nss[i], name_of(first), nss[i], nss[i]);
  }
  free(nss);
}
