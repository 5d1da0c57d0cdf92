/* The server fleet (docs/ha.md "Controller"): the ready inferencecache-server replicas, from the
 * EndpointSlices of the server's headless Service (or the one host of --server-policy-url), with
 * what each has accepted, so every replica gets the policy, the PromptTemplates and the reporter
 * list, and a replica that restarts (new address or Pod, ready again, new startedAt) gets them
 * again. Also the per-replica /snapshot polls and their fleet view. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "controller.h"
#include "ic/api.h"
#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"

enum { B_POLICY, B_TEMPLATES, B_REPORTERS, B_N };
static const char *const BODY_NAME[B_N] = {"policy", "prompttemplates", "reporters"};

static const ic_kube_res_t res_endpointslices = {"discovery.k8s.io", "v1", "endpointslices",
                                                 "EndpointSlice", true};

typedef struct replica {
  char name[256];   /* Pod name (targetRef.name), else the address */
  char host[160];   /* as it goes into a URL: "10.0.0.5", "[fd00::5]", or the flag's host */
  char uid[64];     /* targetRef.uid ("" when unknown) */
  char started[64]; /* the server's /snapshot startedAt last seen ("" before the first poll) */
  uint64_t accepted[B_N]; /* digest of the body this replica last accepted (0 = none) */
  int fails;
  int64_t next_try_ms; /* backoff after failures (monotonic) */
  unsigned epoch;      /* bumped by a detected restart: a pass begun before it writes nothing */
  bool serving;        /* the endpoint's serving (else ready) condition: false while warming */
} replica_t;

struct ctl_fleet {
  ctl_t *c;
  pthread_mutex_t mu;
  char ns[256], service[256]; /* service[0] == 0: the URLs' one host */
  json_t *slices;             /* slice name -> its endpoints array */
  replica_t *reps;
  size_t n;
  ic_kube_watcher_t *watcher;
};

/* ---- URLs ------------------------------------------------------------------------------------ */

int ctl_url_with_host(const char *url, const char *host, char *out, size_t n) {
  const char *p = strstr(url, "://");
  if (!p) return -1;
  const char *h = p + 3, *end = h + strcspn(h, "/?#");
  const char *at = memchr(h, '@', (size_t)(end - h));
  if (at) h = at + 1;
  const char *port = NULL;
  if (*h == '[') {
    const char *rb = memchr(h, ']', (size_t)(end - h));
    if (!rb) return -1;
    if (rb + 1 < end && rb[1] == ':') port = rb + 1;
  } else {
    port = memchr(h, ':', (size_t)(end - h));
  }
  if (h == end) return -1;
  int w = snprintf(out, n, "%.*s%s%.*s%s", (int)(h - url), url, host, port ? (int)(end - port) : 0,
                   port ? port : "", end);
  return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* The host part of a URL ("" when there is none). */
static void url_host(const char *url, char *out, size_t n) {
  out[0] = 0;
  const char *p = strstr(url, "://");
  if (!p) return;
  const char *h = p + 3, *end = h + strcspn(h, "/?#");
  const char *at = memchr(h, '@', (size_t)(end - h));
  if (at) h = at + 1;
  const char *stop = end;
  if (*h == '[') {
    const char *rb = memchr(h, ']', (size_t)(end - h));
    if (rb) stop = rb + 1;
  } else {
    const char *colon = memchr(h, ':', (size_t)(end - h));
    if (colon) stop = colon;
  }
  snprintf(out, n, "%.*s", (int)(stop - h), h);
}

/* ---- discovery ------------------------------------------------------------------------------- */

static int cmp_replica(const void *a, const void *b) {
  const replica_t *x = a, *y = b;
  int r = strcmp(x->name, y->name);
  return r ? r : strcmp(x->host, y->host);
}

/* Rebuilds the replica list from the slices (caller holds mu). Every endpoint that is not
 * terminating counts, ready or not: a replica in its warm start is not ready until it has the
 * state it waits for, and it needs the policy and the reporter list to get there. A replica keeps
 * what it accepted only while its address and Pod uid stay the same and it stays serving: a new
 * Pod, a new address, or a serving -> not-serving flip (a crashed container; the kubelet marks
 * it at once) start from nothing, so passes push everything to it (with backoff while it is
 * down). Conditions: serving, else ready; nil means true, as Kubernetes defines them. Returns
 * true when the list changed. */
static bool rebuild(struct ctl_fleet *f) {
  size_t cap = 8, n = 0;
  replica_t *v = calloc(cap, sizeof *v);
  if (!v) return false;
  const char *sname;
  json_t *eps;
  json_object_foreach(f->slices, sname, eps) {
    const char *fam = json_string_value(json_object_get(eps, "addressType"));
    bool v6 = fam && strcmp(fam, "IPv6") == 0;
    size_t i;
    json_t *ep;
    json_array_foreach(json_object_get(eps, "endpoints"), i, ep) {
      json_t *serving = ic_kube_jget(ep, "conditions.serving");
      if (!serving) serving = ic_kube_jget(ep, "conditions.ready");
      const char *addr = json_string_value(json_array_get(json_object_get(ep, "addresses"), 0));
      if (json_is_true(ic_kube_jget(ep, "conditions.terminating")) || !addr || !*addr ||
          strlen(addr) > 128)
        continue;
      char host[160];
      snprintf(host, sizeof host, v6 ? "[%s]" : "%s", addr);
      bool dup = false;
      for (size_t k = 0; k < n && !dup; k++)
        dup = strcmp(v[k].host, host) == 0;
      if (dup) continue;
      if (n == cap) {
        replica_t *nv = realloc(v, 2 * cap * sizeof *v);
        if (!nv) break;
        memset(nv + cap, 0, cap * sizeof *v);
        v = nv, cap *= 2;
      }
      replica_t *r = &v[n++];
      const char *pn = ic_kube_jstr(ep, "targetRef.name"), *uid = ic_kube_jstr(ep, "targetRef.uid");
      snprintf(r->name, sizeof r->name, "%s", pn && *pn ? pn : addr);
      snprintf(r->host, sizeof r->host, "%s", host);
      snprintf(r->uid, sizeof r->uid, "%s", uid ? uid : "");
      r->serving = !json_is_false(serving);
    }
  }
  qsort(v, n, sizeof *v, cmp_replica);
  bool changed = n != f->n;
  for (size_t i = 0; i < n; i++) {
    bool kept = false;
    for (size_t k = 0; k < f->n && !kept; k++) {
      replica_t *o = &f->reps[k];
      if (strcmp(o->host, v[i].host) == 0 && strcmp(o->uid, v[i].uid) == 0 &&
          strcmp(o->name, v[i].name) == 0) {
        bool serving = v[i].serving;
        v[i] = *o;
        v[i].serving = serving;
        if (o->serving != serving) changed = true;
        if (o->serving && !serving) { /* down: it may come back empty */
          memset(v[i].accepted, 0, sizeof v[i].accepted);
          v[i].epoch++;
          v[i].fails = 0;
          v[i].next_try_ms = 0;
        }
        kept = true;
      }
    }
    if (!kept) changed = true;
  }
  if (changed) {
    free(f->reps);
    f->reps = v;
    f->n = n;
  } else {
    free(v);
  }
  return changed;
}

static void on_slice(void *ud, const char *type, json_t *obj) {
  struct ctl_fleet *f = ud;
  const char *name = ic_kube_jstr(obj, "metadata.name");
  if (!name) return;
  pthread_mutex_lock(&f->mu);
  if (strcmp(type, "DELETED") == 0) {
    json_object_del(f->slices, name);
  } else {
    json_t *keep = json_pack("{s:O?,s:O?}", "addressType", json_object_get(obj, "addressType"),
                             "endpoints", json_object_get(obj, "endpoints"));
    if (keep) json_object_set_new(f->slices, name, keep);
  }
  bool changed = rebuild(f);
  size_t n = f->n, serving = 0;
  for (size_t i = 0; i < n; i++)
    serving += f->reps[i].serving;
  pthread_mutex_unlock(&f->mu);
  if (changed) {
    ic_log_info("server_replicas_changed", IC_LS("service", f->service), IC_LI("known", (long)n),
                IC_LI("serving", (long)serving));
    if (f->c->m_server_replicas) {
      ic_metric_set(ic_metric_child(f->c->m_server_replicas, (const char *[]){"known"}), (double)n);
      ic_metric_set(ic_metric_child(f->c->m_server_replicas, (const char *[]){"serving"}),
                    (double)serving);
    }
    ctl_trigger_push(f->c);
    ctl_trigger_poll(f->c);
  }
}

struct ctl_fleet *ctl_fleet_new(ctl_t *c) {
  struct ctl_fleet *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->c = c;
  pthread_mutex_init(&f->mu, NULL);
  f->slices = json_object();
  const char *svc = c->server_service;
  if (!svc || !*svc) {
    f->reps = calloc(1, sizeof *f->reps);
    if (!f->reps) {
      ctl_fleet_free(f);
      return NULL;
    }
    f->n = 1;
    url_host(c->policy_url, f->reps[0].host, sizeof f->reps[0].host);
    snprintf(f->reps[0].name, sizeof f->reps[0].name, "%s", f->reps[0].host);
    return f;
  }
  const char *slash = strchr(svc, '/');
  if (slash) {
    snprintf(f->ns, sizeof f->ns, "%.*s", (int)(slash - svc), svc);
    snprintf(f->service, sizeof f->service, "%s", slash + 1);
  } else {
    const char *own = ic_kube_namespace(c->kube);
    snprintf(f->ns, sizeof f->ns, "%s", own && *own ? own : "default");
    snprintf(f->service, sizeof f->service, "%s", svc);
  }
  if (!ic_api_is_dns1123_label(f->ns) || !ic_api_is_dns1123_label(f->service)) {
    ic_log_error("invalid_flags", IC_LS("error", "--server-service must be [namespace/]name"),
                 IC_LS("value", svc));
    ctl_fleet_free(f);
    return NULL;
  }
  char sel[320];
  snprintf(sel, sizeof sel, "kubernetes.io/service-name=%s", f->service);
  f->watcher = ic_kube_watcher_start(c->kube, &res_endpointslices, f->ns, sel, on_slice, f);
  return f;
}

void ctl_fleet_free(struct ctl_fleet *f) {
  if (!f) return;
  if (f->watcher) ic_kube_watcher_stop(f->watcher);
  json_decref(f->slices);
  free(f->reps);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

/* A copy of the replica list (caller frees). */
static replica_t *snapshot_reps(struct ctl_fleet *f, size_t *n) {
  pthread_mutex_lock(&f->mu);
  *n = f->n;
  replica_t *v = calloc(f->n ? f->n : 1, sizeof *v);
  if (v && f->n) memcpy(v, f->reps, f->n * sizeof *v);
  if (!v) *n = 0;
  pthread_mutex_unlock(&f->mu);
  return v;
}

static replica_t *find_live(struct ctl_fleet *f, const replica_t *r) {
  for (size_t k = 0; k < f->n; k++)
    if (strcmp(f->reps[k].host, r->host) == 0 && strcmp(f->reps[k].uid, r->uid) == 0 &&
        strcmp(f->reps[k].name, r->name) == 0)
      return &f->reps[k];
  return NULL;
}

/* ---- push ------------------------------------------------------------------------------------ */

static bool has_subscriber(json_t *pod) {
  const char *arrays[] = {"spec.containers", "spec.initContainers"};
  for (int a = 0; a < 2; a++) {
    size_t i;
    json_t *ct;
    json_array_foreach(ic_kube_jget(pod, arrays[a]), i, ct) {
      const char *n = ic_kube_jstr(ct, "name");
      if (n && strcmp(n, "kvevent-subscriber") == 0) return true;
    }
  }
  return false;
}

/* Running and not being deleted: a Pending engine has nothing to report yet, and a server waiting
 * for it would only sit out its warm-start bound. */
bool ctl_pod_reports(json_t *pod) {
  const char *phase = ic_kube_jstr(pod, "status.phase");
  return phase && strcmp(phase, "Running") == 0 &&
         !ic_kube_jget(pod, "metadata.deletionTimestamp") && has_subscriber(pod);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *ctl_reporters_body(json_t *pod_list) {
  json_t *items = json_object_get(pod_list, "items");
  size_t n = 0, i;
  const char **names = calloc(json_array_size(items) + 1, sizeof *names);
  if (!names) return NULL;
  json_t *pod;
  json_array_foreach(items, i, pod) {
    const char *name = ic_kube_jstr(pod, "metadata.name");
    if (name && ctl_pod_reports(pod)) names[n++] = name;
  }
  qsort(names, n, sizeof *names, cmp_str);
  json_t *arr = json_array();
  for (size_t k = 0; k < n; k++)
    if (k == 0 || strcmp(names[k], names[k - 1]) != 0)
      json_array_append_new(arr, json_string(names[k]));
  free(names);
  json_t *doc = json_pack("{s:o}", "replicas", arr);
  char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  return body;
}

static int reporters_load(ctl_t *c, char **body) {
  json_t *pods = NULL;
  ic_kube_status_t st;
  int rc = ic_kube_list(c->kube, &ic_kube_res_pods, NULL, NULL, &pods, &st);
  if (rc != 0) return rc;
  *body = ctl_reporters_body(pods);
  json_decref(pods);
  return *body ? 0 : IC_ENOMEM;
}

static uint64_t digest(const char *body) {
  uint64_t h = XXH3_64bits(body, strlen(body));
  return h ? h : 1; /* 0 means "nothing accepted" */
}

/* Sends one body to one replica. 0 when accepted (or, for the optional bodies, when the server
 * answers 404: an older server without the endpoint, logged at debug only). */
static int send_body(ctl_t *c, replica_t *r, int which, const char *body) {
  const char *base = which == B_POLICY      ? c->policy_url
                     : which == B_TEMPLATES ? c->prompttemplates_url
                                            : c->reporters_url;
  char url[2048];
  if (c->server_service && *c->server_service) {
    if (ctl_url_with_host(base, r->host, url, sizeof url) != 0) return IC_EINVAL;
  } else {
    snprintf(url, sizeof url, "%s", base);
  }
  long status = 0;
  char started[64];
  int rc = ctl_server_call_hdr(which == B_REPORTERS ? "PUT" : "POST", url, c->policy_token_file,
                               body, &status, NULL, NULL, "X-Inferencecache-Started-At", started,
                               sizeof started);
  /* The instance that took the policy: a later /snapshot from another one is a restart. */
  if (rc == 0 && which == B_POLICY && started[0])
    snprintf(r->started, sizeof r->started, "%s", started);
  if (rc == 0 && status == 404 && which != B_POLICY) {
    ic_log_debug("push_unsupported", IC_LS("body", BODY_NAME[which]), IC_LS("url", url));
    return 0;
  }
  if (rc == 0 && (status < 200 || status >= 300)) {
    ic_log_warn("push_failed", IC_LS("body", BODY_NAME[which]), IC_LS("replica", r->name),
                IC_LS("url", url), IC_LS("error", "unexpected status"), IC_LI("status", status));
    return IC_EUNAVAIL;
  }
  if (rc != 0) {
    ic_log_warn("push_failed", IC_LS("body", BODY_NAME[which]), IC_LS("replica", r->name),
                IC_LS("url", url), IC_LS("error", ic_strerror(rc)));
    return rc;
  }
  ic_log_debug("pushed", IC_LS("body", BODY_NAME[which]), IC_LS("replica", r->name),
               IC_LI("bytes", (long)strlen(body)));
  return 0;
}

int ctl_fleet_push(ctl_t *c, bool refresh, int64_t *retry_ms) {
  *retry_ms = -1;
  struct ctl_fleet *f = c->fleet;
  char *body[B_N] = {NULL, NULL, NULL};
  json_t *templates = NULL;
  int rc = ctl_policy_body_load(c, &body[B_POLICY]);
  if (rc == 0) rc = ctl_prompt_templates_load(c, &templates, &body[B_TEMPLATES]);
  if (rc == 0) rc = reporters_load(c, &body[B_REPORTERS]);
  if (rc != 0) {
    ic_log_warn("push_list_failed", IC_LS("error", ic_strerror(rc)));
    for (int b = 0; b < B_N; b++)
      free(body[b]);
    json_decref(templates);
    *retry_ms = 1000;
    return rc;
  }
  uint64_t want[B_N];
  for (int b = 0; b < B_N; b++)
    want[b] = body[b] ? digest(body[b]) : 0;
  size_t n = 0;
  replica_t *v = snapshot_reps(f, &n);
  int64_t now = ic_clock_monotonic_ns() / 1000000;
  int first_err = 0;
  bool policy_failed = false;
  size_t current = 0;
  for (size_t i = 0; i < n; i++) {
    replica_t *r = &v[i];
    bool behind = false;
    for (int b = 0; b < B_N; b++)
      behind |= body[b] && r->accepted[b] != want[b];
    if (!refresh && !behind) {
      current++;
      continue;
    }
    if (!refresh && r->next_try_ms > now) { /* still backing off: no retry storm */
      int64_t wait = r->next_try_ms - now;
      if (*retry_ms < 0 || wait < *retry_ms) *retry_ms = wait;
      if (!first_err) first_err = IC_EUNAVAIL;
      continue;
    }
    int err = 0;
    for (int b = 0; b < B_N && !err; b++) {
      if (!body[b] || (!refresh && r->accepted[b] == want[b])) continue;
      err = send_body(c, r, b, body[b]);
      if (err == 0)
        r->accepted[b] = want[b];
      else if (b == B_POLICY)
        policy_failed = true;
    }
    if (err) {
      r->fails++;
      int shift = r->fails < 6 ? r->fails - 1 : 5;
      int64_t wait = 1000LL << shift; /* 1 s doubling, capped at 32 s */
      r->next_try_ms = now + wait;
      if (*retry_ms < 0 || wait < *retry_ms) *retry_ms = wait;
      if (!first_err) first_err = err;
    } else {
      r->fails = 0;
      r->next_try_ms = 0;
      current++;
    }
  }
  /* Write back what each replica accepted, unless it left or restarted meanwhile. */
  pthread_mutex_lock(&f->mu);
  for (size_t i = 0; i < n; i++) {
    replica_t *live = find_live(f, &v[i]);
    if (!live || live->epoch != v[i].epoch) continue;
    memcpy(live->accepted, v[i].accepted, sizeof live->accepted);
    if (v[i].started[0]) memcpy(live->started, v[i].started, sizeof live->started);
    live->fails = v[i].fails;
    live->next_try_ms = v[i].next_try_ms;
  }
  pthread_mutex_unlock(&f->mu);
  free(v);
  if (c->m_push_total)
    ic_metric_inc(ic_metric_child(c->m_push_total,
                                  (const char *[]){policy_failed || n == 0 ? "error" : "success"}));
  if (c->m_server_replicas) {
    ic_metric_set(ic_metric_child(c->m_server_replicas, (const char *[]){"known"}), (double)n);
    ic_metric_set(ic_metric_child(c->m_server_replicas, (const char *[]){"current"}),
                  (double)current);
  }
  if (n == 0) {
    ic_log_warn("push_no_replicas", IC_LS("service", f->service),
                IC_LS("error", "no server replica to push to"));
    if (!first_err) first_err = IC_EUNAVAIL;
  }
  int src = templates ? ctl_prompt_templates_write_status(c, templates) : 0;
  json_decref(templates);
  for (int b = 0; b < B_N; b++)
    free(body[b]);
  return first_err ? first_err : src;
}

/* ---- poll ------------------------------------------------------------------------------------ */

static int64_t row_time(json_t *row, const char *key) {
  int64_t us = 0;
  const char *t = ic_kube_jstr(row, key);
  if (!t || ic_kube_parse_time(t, &us) != 0) return 0;
  return us;
}

/* true when row a is fresher than row b. */
static bool fresher(json_t *a, json_t *b) {
  int64_t ua = row_time(a, "lastUpdate"), ub = row_time(b, "lastUpdate");
  if (ua != ub) return ua > ub;
  return row_time(a, "lastEventAt") > row_time(b, "lastEventAt");
}

json_t *ctl_fleet_merge(json_t *const *snaps, size_t n) {
  json_t *out = json_object();
  long best = -1;
  json_int_t best_total = -1;
  for (size_t i = 0; i < n; i++) {
    json_int_t t = json_integer_value(json_object_get(snaps[i], "totalPrefixes"));
    if (json_is_object(snaps[i]) && t > best_total) best = (long)i, best_total = t;
  }
  if (best < 0) return out;
  json_object_set_new(out, "totalPrefixes", json_integer(best_total));
  json_object_set(out, "hotPrefixes", json_object_get(snaps[best], "hotPrefixes"));
  json_object_set(out, "tenants", json_object_get(snaps[best], "tenants"));
  json_t *byid = json_object(), *order = json_array();
  for (size_t i = 0; i < n; i++) {
    size_t k;
    json_t *row;
    json_array_foreach(json_object_get(snaps[i], "replicas"), k, row) {
      const char *id = ic_kube_jstr(row, "replicaId"), *tenant = ic_kube_jstr(row, "tenant");
      if (!id) continue;
      char key[1024];
      snprintf(key, sizeof key, "%s\n%s", tenant ? tenant : "", id);
      json_t *have = json_object_get(byid, key);
      if (!have) json_array_append_new(order, json_string(key));
      if (!have || fresher(row, have)) json_object_set(byid, key, row);
    }
  }
  json_t *rows = json_array(), *key;
  size_t k;
  json_array_foreach(order, k, key)
      json_array_append(rows, json_object_get(byid, json_string_value(key)));
  json_object_set_new(out, "replicas", rows);
  json_decref(byid);
  json_decref(order);
  return out;
}

/* A replica's restart seen through /snapshot's X-Inferencecache-Started-At: forget what it
 * accepted, so the next pass sends it everything. */
static void note_started(ctl_t *c, const replica_t *r, const char *started) {
  if (!started || !*started) return;
  struct ctl_fleet *f = c->fleet;
  bool restarted = false;
  pthread_mutex_lock(&f->mu);
  replica_t *live = find_live(f, r);
  if (live) {
    restarted = live->started[0] && strcmp(live->started, started) != 0;
    snprintf(live->started, sizeof live->started, "%s", started);
    if (restarted) {
      memset(live->accepted, 0, sizeof live->accepted);
      live->epoch++;
      live->next_try_ms = 0;
    }
  }
  pthread_mutex_unlock(&f->mu);
  ic_log_debug("server_replica_seen", IC_LS("replica", r->name), IC_LS("started_at", started),
               IC_LB("known", live != NULL));
  if (restarted) {
    ic_log_info("server_replica_restarted", IC_LS("replica", r->name),
                IC_LS("started_at", started));
    ctl_trigger_push(c);
  }
}

int ctl_fleet_snapshots(ctl_t *c, json_t **fleet, json_t **servers) {
  *fleet = NULL;
  *servers = NULL;
  bool multi = c->server_service && *c->server_service;
  size_t n = 0;
  replica_t *v = snapshot_reps(c->fleet, &n);
  json_t **snaps = calloc(n ? n : 1, sizeof *snaps);
  json_t *rows = multi ? json_array() : NULL;
  int last_rc = IC_EUNAVAIL;
  size_t got = 0;
  for (size_t i = 0; i < n && snaps; i++) {
    char url[2048];
    if (!multi)
      snprintf(url, sizeof url, "%s", c->snapshot_url);
    else if (ctl_url_with_host(c->snapshot_url, v[i].host, url, sizeof url) != 0)
      continue;
    long status = 0;
    char *body = NULL;
    size_t len = 0;
    char started[64];
    int rc = ctl_server_call_hdr("GET", url, c->controller_token_file, NULL, &status, &body, &len,
                                 "X-Inferencecache-Started-At", started, sizeof started);
    json_t *snap = rc == 0 && status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    free(body);
    if (!json_is_object(snap)) {
      ic_log_warn("snapshot_fetch_failed", IC_LS("url", url), IC_LI("status", status),
                  IC_LS("error", rc     ? ic_strerror(rc)
                                 : snap ? "not an object"
                                        : "bad status or body"));
      json_decref(snap);
      last_rc = rc ? rc : IC_EPROTO;
      if (rows)
        json_array_append_new(rows, json_pack("{s:s,s:s,s:s}", "name", v[i].name, "address",
                                              v[i].host, "state", "Unreachable"));
      continue;
    }
    note_started(c, &v[i], started);
    if (rows)
      json_array_append_new(
          rows, json_pack("{s:s,s:s,s:s,s:I,s:I}", "name", v[i].name, "address", v[i].host, "state",
                          v[i].serving ? "Observed" : "NotReady", "totalPrefixes",
                          (json_int_t)json_integer_value(json_object_get(snap, "totalPrefixes")),
                          "engineReplicas",
                          (json_int_t)json_array_size(json_object_get(snap, "replicas"))));
    snaps[got++] = snap;
  }
  free(v);
  int rc = 0;
  if (got == 0) {
    rc = last_rc;
    json_decref(rows);
  } else {
    *fleet = multi ? ctl_fleet_merge(snaps, got) : json_incref(snaps[0]);
    *servers = rows;
  }
  for (size_t i = 0; i < got; i++)
    json_decref(snaps[i]);
  free(snaps);
  return rc;
}
