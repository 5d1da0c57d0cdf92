/* lib/kube client: REST verbs over libcurl with JSON bodies, error mapping, retries with backoff on
 * 429/5xx/transport failures, the conflict-retry helper, Events and TokenReview. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/kube.h"
#include "ic/log.h"
#include "kube_internal.h"

/* A bearer token is a few KiB (a projected service-account JWT); more is not a token. */
#define MAX_TOKEN_BYTES (64u * 1024)

const ic_kube_res_t ic_kube_res_pods = {"", "v1", "pods", "Pod", true};
const ic_kube_res_t ic_kube_res_services = {"", "v1", "services", "Service", true};
const ic_kube_res_t ic_kube_res_pvcs = {"", "v1", "persistentvolumeclaims",
                                        "PersistentVolumeClaim", true};
const ic_kube_res_t ic_kube_res_core_events = {"", "v1", "events", "Event", true};
const ic_kube_res_t ic_kube_res_deployments = {"apps", "v1", "deployments", "Deployment", true};
const ic_kube_res_t ic_kube_res_statefulsets = {"apps", "v1", "statefulsets", "StatefulSet", true};
const ic_kube_res_t ic_kube_res_leases = {"coordination.k8s.io", "v1", "leases", "Lease", true};
const ic_kube_res_t ic_kube_res_events = {"events.k8s.io", "v1", "events", "Event", true};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static char *dupn(const char *s) { return s ? strdup(s) : NULL; }

ic_kube_t *ic_kube_new(const ic_kube_config_t *cfg) {
  if (!cfg || !cfg->server || !*cfg->server) return NULL;
  pthread_once(&curl_once, curl_init_once);
  ic_kube_t *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->cfg.server = dupn(cfg->server);
  size_t sl = strlen(k->cfg.server);
  while (sl > 0 && k->cfg.server[sl - 1] == '/') k->cfg.server[--sl] = 0;
  k->cfg.ca_file = dupn(cfg->ca_file);
  k->cfg.ca_pem = dupn(cfg->ca_pem);
  k->cfg.insecure = cfg->insecure;
  k->cfg.token = dupn(cfg->token);
  k->cfg.token_file = dupn(cfg->token_file);
  k->cfg.cert_file = dupn(cfg->cert_file);
  k->cfg.key_file = dupn(cfg->key_file);
  k->cfg.cert_pem = dupn(cfg->cert_pem);
  k->cfg.key_pem = dupn(cfg->key_pem);
  k->cfg.namespace = dupn(cfg->namespace ? cfg->namespace : "default");
  k->attempts = 4;
  k->base_ms = 100;
  k->timeout_ms = 10000;
  return k;
}

void ic_kube_free(ic_kube_t *k) {
  if (!k) return;
  ic_kube_config_free(&k->cfg);
  free(k);
}

void ic_kube_set_retry(ic_kube_t *k, int attempts, int base_ms) {
  k->attempts = attempts < 1 ? 1 : attempts;
  k->base_ms = base_ms < 0 ? 0 : base_ms;
}
void ic_kube_set_timeout(ic_kube_t *k, int timeout_ms) { k->timeout_ms = timeout_ms; }
const char *ic_kube_namespace(const ic_kube_t *k) { return k->cfg.namespace; }
uint64_t ic_kube_requests(const ic_kube_t *k) { return atomic_load(&k->nrequests); }
uint64_t ic_kube_retries(const ic_kube_t *k) { return atomic_load(&k->nretries); }

char *ic_kube_path(const ic_kube_res_t *r, const char *ns, const char *name, const char *sub) {
  ic_buf_t b = IC_BUF_INIT;
  if (!r->group || !*r->group)
    ic_buf_appendf(&b, "/api/%s", r->version);
  else
    ic_buf_appendf(&b, "/apis/%s/%s", r->group, r->version);
  if (r->namespaced && ns && *ns) ic_buf_appendf(&b, "/namespaces/%s", ns);
  ic_buf_appendf(&b, "/%s", r->plural);
  if (name && *name) ic_buf_appendf(&b, "/%s", name);
  if (sub && *sub) ic_buf_appendf(&b, "/%s", sub);
  return ic_buf_detach(&b, NULL);
}

/* Reads the bearer token: static, or the file re-read on every request so rotated projected
 * tokens are used as soon as the kubelet writes them. Returns malloc'd token or NULL. */
static char *read_token(const ic_kube_t *k) {
  if (k->cfg.token_file) {
    ic_buf_t b = IC_BUF_INIT;
    if (ic_buf_read_file_trimmed(k->cfg.token_file, MAX_TOKEN_BYTES, &b, NULL) == 0 && b.len)
      return ic_buf_detach(&b, NULL);
    ic_buf_free(&b);
  }
  return k->cfg.token ? strdup(k->cfg.token) : NULL;
}

static size_t write_cb(char *ptr, size_t sz, size_t nm, void *ud) {
  ic_buf_t *b = ud;
  if (ic_buf_append(b, ptr, sz * nm) != 0) return 0;
  return sz * nm;
}

typedef struct {
  long retry_after_s;
} hdr_state_t;

static size_t header_cb(char *ptr, size_t sz, size_t nm, void *ud) {
  hdr_state_t *h = ud;
  size_t n = sz * nm;
  if (n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) h->retry_after_s = atol(ptr + 12);
  return n;
}

CURL *ic_kube_curl(ic_kube_t *k, const char *path, struct curl_slist **hdrs, const char *ctype) {
  CURL *c = curl_easy_init();
  if (!c) return NULL;
  ic_buf_t url = IC_BUF_INIT;
  ic_buf_appendf(&url, "%s%s", k->cfg.server, path);
  curl_easy_setopt(c, CURLOPT_URL, url.data);
  ic_buf_free(&url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  if (k->cfg.insecure) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (k->cfg.ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, k->cfg.ca_file);
  if (k->cfg.ca_pem) {
    struct curl_blob blob = {k->cfg.ca_pem, strlen(k->cfg.ca_pem), CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (k->cfg.cert_file) curl_easy_setopt(c, CURLOPT_SSLCERT, k->cfg.cert_file);
  if (k->cfg.key_file) curl_easy_setopt(c, CURLOPT_SSLKEY, k->cfg.key_file);
  if (k->cfg.cert_pem) {
    struct curl_blob blob = {k->cfg.cert_pem, strlen(k->cfg.cert_pem), CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &blob);
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (k->cfg.key_pem) {
    struct curl_blob blob = {k->cfg.key_pem, strlen(k->cfg.key_pem), CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &blob);
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
  }
  struct curl_slist *h = NULL;
  h = curl_slist_append(h, "Accept: application/json");
  h = curl_slist_append(h, "User-Agent: inferencecache-controller/v1alpha1");
  if (ctype) {
    char line[128];
    snprintf(line, sizeof line, "Content-Type: %s", ctype);
    h = curl_slist_append(h, line);
  }
  char *tok = read_token(k);
  if (tok) {
    ic_buf_t a = IC_BUF_INIT;
    ic_buf_appendf(&a, "Authorization: Bearer %s", tok);
    h = curl_slist_append(h, a.data);
    ic_buf_free(&a);
    free(tok);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  *hdrs = h;
  return c;
}

/* Maps an HTTP status + Status body to an IC_E* code, filling `st`. */
int ic_kube_map_status(long http, json_t *body, ic_kube_status_t *st) {
  const char *reason = body ? ic_kube_jstr(body, "reason") : NULL;
  const char *msg = body ? ic_kube_jstr(body, "message") : NULL;
  if (st) {
    st->http = http;
    snprintf(st->reason, sizeof st->reason, "%s", reason ? reason : "");
    snprintf(st->message, sizeof st->message, "%s", msg ? msg : "");
  }
  if (http >= 200 && http < 300) return 0;
  switch (http) {
  case 404: return IC_ENOTFOUND;
  case 409: return (reason && strcmp(reason, "AlreadyExists") == 0) ? IC_EEXIST : IC_KUBE_CONFLICT;
  case 410: return IC_KUBE_GONE;
  case 400:
  case 422: return IC_EINVAL;
  case 401:
  case 403: return IC_EPERM;
  default: return IC_EUNAVAIL;
  }
}

static bool retryable(long http, int rc) {
  if (rc == IC_EIO) return true;
  return http == 429 || (http >= 500 && http != 501);
}

static void sleep_ms(long ms) {
  if (ms <= 0) return;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int ic_kube_request(ic_kube_t *k, const char *method, const char *path, const char *ctype,
                    json_t *body, json_t **out, ic_kube_status_t *st) {
  if (out) *out = NULL;
  char *payload = NULL;
  if (body) {
    payload = json_dumps(body, JSON_COMPACT);
    if (!payload) return IC_ENOMEM;
    if (!ctype) ctype = "application/json";
  }
  int rc = IC_EIO;
  for (int attempt = 0; attempt < k->attempts; attempt++) {
    struct curl_slist *hdrs = NULL;
    CURL *c = ic_kube_curl(k, path, &hdrs, ctype);
    if (!c) {
      rc = IC_ENOMEM;
      break;
    }
    ic_buf_t resp = IC_BUF_INIT;
    hdr_state_t hs = {0};
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (payload) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)k->timeout_ms);
    atomic_fetch_add(&k->nrequests, 1);
    CURLcode cc = curl_easy_perform(c);
    long http = 0;
    json_t *doc = NULL;
    if (cc != CURLE_OK) {
      rc = IC_EIO;
      if (st) {
        st->http = 0;
        st->reason[0] = 0;
        snprintf(st->message, sizeof st->message, "%s %s: %s", method, path,
                 curl_easy_strerror(cc));
      }
    } else {
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
      if (resp.len > 0) {
        json_error_t je;
        doc = json_loadb(resp.data, resp.len, 0, &je);
      }
      rc = ic_kube_map_status(http, doc, st);
      if (rc == 0 && resp.len > 0 && !doc) {
        rc = IC_EPROTO;
        if (st) snprintf(st->message, sizeof st->message, "%s %s: undecodable body", method, path);
      }
      if (rc != 0 && st && !st->message[0] && resp.len > 0)
        snprintf(st->message, sizeof st->message, "%.*s", (int)(resp.len > 400 ? 400 : resp.len),
                 resp.data);
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    ic_buf_free(&resp);
    if (rc == 0) {
      if (out)
        *out = doc;
      else
        json_decref(doc);
      break;
    }
    json_decref(doc);
    if (!retryable(http, rc) || attempt + 1 >= k->attempts) break;
    long backoff = (long)k->base_ms << attempt;
    if (backoff > 2000) backoff = 2000;
    if (hs.retry_after_s > 0) backoff = hs.retry_after_s > 5 ? 5000 : hs.retry_after_s * 1000;
    atomic_fetch_add(&k->nretries, 1);
    ic_log_debug("kube_retry", IC_LS("method", method), IC_LS("path", path), IC_LI("http", http),
                 IC_LI("backoff_ms", backoff));
    sleep_ms(backoff);
  }
  free(payload);
  return rc;
}

int ic_kube_get(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name, json_t **out,
                ic_kube_status_t *st) {
  char *p = ic_kube_path(r, ns, name, NULL);
  if (!p) return IC_ENOMEM;
  int rc = ic_kube_request(k, "GET", p, NULL, NULL, out, st);
  free(p);
  return rc;
}

/* Appends ?k=v query parameters, URL-escaped. */
static void add_query(ic_buf_t *b, const char *key, const char *val) {
  if (!val) return;
  char *e = curl_easy_escape(NULL, val, 0);
  ic_buf_appendf(b, "%c%s=%s", strchr(b->data, '?') ? '&' : '?', key, e ? e : "");
  curl_free(e);
}

int ic_kube_list(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *label_selector,
                 json_t **out, ic_kube_status_t *st) {
  char *p = ic_kube_path(r, ns, NULL, NULL);
  if (!p) return IC_ENOMEM;
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append_str(&b, p);
  free(p);
  if (label_selector && *label_selector) add_query(&b, "labelSelector", label_selector);
  int rc = ic_kube_request(k, "GET", b.data, NULL, NULL, out, st);
  ic_buf_free(&b);
  return rc;
}

int ic_kube_create(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, json_t *obj, json_t **out,
                   ic_kube_status_t *st) {
  char *p = ic_kube_path(r, ns, NULL, NULL);
  if (!p) return IC_ENOMEM;
  int rc = ic_kube_request(k, "POST", p, NULL, obj, out, st);
  free(p);
  return rc;
}

int ic_kube_update(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name,
                   const char *sub, json_t *obj, json_t **out, ic_kube_status_t *st) {
  char *p = ic_kube_path(r, ns, name, sub);
  if (!p) return IC_ENOMEM;
  int rc = ic_kube_request(k, "PUT", p, NULL, obj, out, st);
  free(p);
  return rc;
}

int ic_kube_patch(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name,
                  const char *sub, ic_kube_patch_t type, json_t *patch, const char *field_manager,
                  bool force, json_t **out, ic_kube_status_t *st) {
  if (type == IC_KUBE_PATCH_APPLY && (!field_manager || !*field_manager)) return IC_EINVAL;
  char *p = ic_kube_path(r, ns, name, sub);
  if (!p) return IC_ENOMEM;
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append_str(&b, p);
  free(p);
  if (field_manager) add_query(&b, "fieldManager", field_manager);
  if (type == IC_KUBE_PATCH_APPLY && force) add_query(&b, "force", "true");
  const char *ct = type == IC_KUBE_PATCH_JSON    ? "application/json-patch+json"
                   : type == IC_KUBE_PATCH_APPLY ? "application/apply-patch+yaml"
                                                 : "application/merge-patch+json";
  int rc = ic_kube_request(k, "PATCH", b.data, ct, patch, out, st);
  ic_buf_free(&b);
  return rc;
}

int ic_kube_apply(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, json_t *obj,
                  const char *field_manager, bool force, json_t **out, ic_kube_status_t *st) {
  const char *name = ic_kube_jstr(obj, "metadata.name");
  if (!name) return IC_EINVAL;
  return ic_kube_patch(k, r, ns, name, NULL, IC_KUBE_PATCH_APPLY, obj, field_manager, force, out,
                       st);
}

int ic_kube_delete(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name,
                   const char *uid, ic_kube_status_t *st) {
  char *p = ic_kube_path(r, ns, name, NULL);
  if (!p) return IC_ENOMEM;
  json_t *opts = json_pack("{s:s,s:s,s:s}", "apiVersion", "v1", "kind", "DeleteOptions",
                           "propagationPolicy", "Background");
  if (uid) json_object_set_new(opts, "preconditions", json_pack("{s:s}", "uid", uid));
  int rc = ic_kube_request(k, "DELETE", p, NULL, opts, NULL, st);
  json_decref(opts);
  free(p);
  return rc;
}

int ic_kube_update_retry(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *name,
                         const char *sub, ic_kube_mutate_fn mutate, void *ud, json_t **out,
                         ic_kube_status_t *st) {
  if (out) *out = NULL;
  int rc = IC_KUBE_CONFLICT;
  for (int attempt = 0; attempt < 5; attempt++) {
    json_t *cur = NULL;
    rc = ic_kube_get(k, r, ns, name, &cur, st);
    if (rc != 0) return rc;
    int m = mutate(ud, cur);
    if (m < 0) {
      json_decref(cur);
      return m;
    }
    if (m == 1) {
      if (out)
        *out = cur;
      else
        json_decref(cur);
      return 0;
    }
    rc = ic_kube_update(k, r, ns, name, sub, cur, out, st);
    json_decref(cur);
    if (rc != IC_KUBE_CONFLICT) return rc;
    atomic_fetch_add(&k->nretries, 1);
    sleep_ms((long)(10 << attempt));
  }
  return rc;
}

/* An ObjectReference for an event's regarding/related field. */
static json_t *obj_ref(json_t *o) {
  json_t *ref = json_object();
  const char *keys[][2] = {{"apiVersion", "apiVersion"},
                           {"kind", "kind"},
                           {"metadata.namespace", "namespace"},
                           {"metadata.name", "name"},
                           {"metadata.uid", "uid"},
                           {"metadata.resourceVersion", "resourceVersion"}};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    const char *v = ic_kube_jstr(o, keys[i][0]);
    if (v) json_object_set_new(ref, keys[i][1], json_string(v));
  }
  return ref;
}

int ic_kube_event_related(ic_kube_t *k, const char *reporting_controller, const char *instance,
                          json_t *regarding, json_t *related, const char *type, const char *reason,
                          const char *note) {
  const char *ns = ic_kube_jstr(regarding, "metadata.namespace");
  const char *name = ic_kube_jstr(regarding, "metadata.name");
  if (!ns || !name || !reason || !type) return IC_EINVAL;
  char now[40];
  ic_kube_format_time(ic_clock_realtime_us(), true, now);
  char gen[300];
  snprintf(gen, sizeof gen, "%s.", name);
  json_t *ev = json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "apiVersion",
                         "events.k8s.io/v1", "kind", "Event", "metadata", "generateName", gen,
                         "namespace", ns, "eventTime", now, "reportingController",
                         reporting_controller, "reportingInstance", instance ? instance : "",
                         "action", reason, "reason", reason, "type", type, "regarding",
                         obj_ref(regarding));
  if (!ev) return IC_ENOMEM;
  if (related) json_object_set_new(ev, "related", obj_ref(related));
  if (note) json_object_set_new(ev, "note", json_string(note));
  int rc = ic_kube_create(k, &ic_kube_res_events, ns, ev, NULL, NULL);
  json_decref(ev);
  return rc;
}

int ic_kube_event(ic_kube_t *k, const char *reporting_controller, const char *instance,
                  json_t *regarding, const char *type, const char *reason, const char *note) {
  return ic_kube_event_related(k, reporting_controller, instance, regarding, NULL, type, reason,
                               note);
}

int ic_kube_token_review(ic_kube_t *k, const char *token, const char *audience,
                         bool *authenticated, char **username, char **error,
                         ic_kube_status_t *st) {
  *authenticated = false;
  if (username) *username = NULL;
  if (error) *error = NULL;
  json_t *spec = json_pack("{s:s}", "token", token ? token : "");
  if (audience && *audience) json_object_set_new(spec, "audiences", json_pack("[s]", audience));
  json_t *tr = json_pack("{s:s,s:s,s:o}", "apiVersion", "authentication.k8s.io/v1", "kind",
                         "TokenReview", "spec", spec);
  json_t *out = NULL;
  int rc = ic_kube_request(k, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", NULL, tr, &out,
                           st);
  json_decref(tr);
  if (rc != 0) return rc;
  json_t *status = json_object_get(out, "status");
  if (!json_is_object(status)) {
    json_decref(out);
    return IC_EPROTO;
  }
  *authenticated = json_is_true(json_object_get(status, "authenticated"));
  const char *u = ic_kube_jstr(status, "user.username");
  const char *e = ic_kube_jstr(status, "error");
  if (username && u) *username = strdup(u);
  if (error && e) *error = strdup(e);
  json_decref(out);
  return 0;
}
