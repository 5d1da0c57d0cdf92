/* lib/kube watch: newline-delimited JSON event streams over chunked HTTP (resourceVersion resume,
 * bookmarks, 410 Gone), and the watcher thread that lists, then watches, and relists on 410. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/buf.h"
#include "ic/log.h"
#include "kube_internal.h"

int ic_kube_watch_parse_event(const char *line, size_t n, char **type, json_t **obj) {
  *type = NULL;
  *obj = NULL;
  json_error_t je;
  json_t *doc = json_loadb(line, n, JSON_REJECT_DUPLICATES, &je);
  if (!json_is_object(doc)) {
    json_decref(doc);
    return IC_EPROTO;
  }
  json_t *t = json_object_get(doc, "type");
  json_t *o = json_object_get(doc, "object");
  if (!json_is_string(t) || !json_is_object(o) || json_string_length(t) == 0 ||
      json_string_length(t) > 32) {
    json_decref(doc);
    return IC_EPROTO;
  }
  *type = strdup(json_string_value(t));
  *obj = json_incref(o);
  json_decref(doc);
  if (!*type) {
    json_decref(*obj);
    *obj = NULL;
    return IC_ENOMEM;
  }
  return 0;
}

typedef struct {
  ic_buf_t pending;
  ic_kube_watch_fn fn;
  void *ud;
  char **rv;
  atomic_bool *stop;
  bool gone, stopped, proto_err;
  ic_kube_status_t *st;
} wstate_t;

static void set_rv(wstate_t *w, json_t *obj) {
  const char *rv = ic_kube_jstr(obj, "metadata.resourceVersion");
  if (!rv || !*rv) return;
  char *d = strdup(rv);
  if (!d) return;
  free(*w->rv);
  *w->rv = d;
}

/* Handles one complete line; returns false to abort the transfer. */
static bool handle_line(wstate_t *w, const char *line, size_t n) {
  while (n && (line[n - 1] == '\r' || line[n - 1] == ' ')) n--;
  if (n == 0) return true;
  char *type = NULL;
  json_t *obj = NULL;
  if (ic_kube_watch_parse_event(line, n, &type, &obj) != 0) {
    w->proto_err = true;
    return false;
  }
  bool keep = true;
  if (strcmp(type, "ERROR") == 0) {
    json_t *code = json_object_get(obj, "code");
    if (json_is_integer(code) && json_integer_value(code) == 410) w->gone = true;
    ic_kube_map_status(json_is_integer(code) ? (long)json_integer_value(code) : 500, obj, w->st);
    keep = false;
  } else {
    set_rv(w, obj);
    if (strcmp(type, "BOOKMARK") != 0 && w->fn && w->fn(w->ud, type, obj) != 0) {
      w->stopped = true;
      keep = false;
    }
  }
  free(type);
  json_decref(obj);
  return keep;
}

static size_t watch_write(char *ptr, size_t sz, size_t nm, void *ud) {
  wstate_t *w = ud;
  size_t n = sz * nm;
  if (w->stop && atomic_load(w->stop)) {
    w->stopped = true;
    return 0;
  }
  if (ic_buf_append(&w->pending, ptr, n) != 0) return 0;
  size_t start = 0;
  for (size_t i = 0; i < w->pending.len; i++) {
    if (w->pending.data[i] != '\n') continue;
    if (!handle_line(w, w->pending.data + start, i - start)) return 0;
    start = i + 1;
  }
  if (start > 0) {
    memmove(w->pending.data, w->pending.data + start, w->pending.len - start);
    w->pending.len -= start;
    w->pending.data[w->pending.len] = 0;
  }
  /* A single event larger than 64 MiB is not a Kubernetes object; refuse to buffer it. */
  if (w->pending.len > ((size_t)64 << 20)) {
    w->proto_err = true;
    return 0;
  }
  return n;
}

static int watch_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
  (void)a, (void)b, (void)c, (void)d;
  wstate_t *w = ud;
  if (w->stop && atomic_load(w->stop)) {
    w->stopped = true;
    return 1;
  }
  return 0;
}

int ic_kube_watch(ic_kube_t *k, const ic_kube_res_t *r, const char *ns, const char *label_selector,
                  char **rv, int timeout_s, ic_kube_watch_fn fn, void *ud, atomic_bool *stop,
                  ic_kube_status_t *st) {
  char *p = ic_kube_path(r, ns, NULL, NULL);
  if (!p) return IC_ENOMEM;
  ic_buf_t q = IC_BUF_INIT;
  ic_buf_appendf(&q, "%s?watch=true&allowWatchBookmarks=true", p);
  free(p);
  if (timeout_s > 0) ic_buf_appendf(&q, "&timeoutSeconds=%d", timeout_s);
  if (*rv && **rv) {
    char *e = curl_easy_escape(NULL, *rv, 0);
    ic_buf_appendf(&q, "&resourceVersion=%s", e ? e : "");
    curl_free(e);
  }
  if (label_selector && *label_selector) {
    char *e = curl_easy_escape(NULL, label_selector, 0);
    ic_buf_appendf(&q, "&labelSelector=%s", e ? e : "");
    curl_free(e);
  }
  struct curl_slist *hdrs = NULL;
  CURL *c = ic_kube_curl(k, q.data, &hdrs, NULL);
  ic_buf_free(&q);
  if (!c) return IC_ENOMEM;
  ic_kube_status_t local;
  if (!st) st = &local;
  memset(st, 0, sizeof *st);
  wstate_t w = {.pending = IC_BUF_INIT, .fn = fn, .ud = ud, .rv = rv, .stop = stop, .st = st};
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, watch_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &w);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, watch_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &w);
  if (timeout_s > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)timeout_s + 30);
  atomic_fetch_add(&k->nrequests, 1);
  CURLcode cc = curl_easy_perform(c);
  long http = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
  int rc;
  if (w.stopped) {
    rc = 0;
  } else if (w.gone) {
    rc = IC_KUBE_GONE;
  } else if (w.proto_err) {
    rc = IC_EPROTO;
  } else if (http >= 300) {
    json_t *doc = w.pending.len ? json_loadb(w.pending.data, w.pending.len, 0, NULL) : NULL;
    rc = ic_kube_map_status(http, doc, st);
    json_decref(doc);
  } else if (cc != CURLE_OK) {
    rc = IC_EIO;
    snprintf(st->message, sizeof st->message, "watch %s: %s", r->plural, curl_easy_strerror(cc));
  } else {
    rc = 0;
    if (w.pending.len) handle_line(&w, w.pending.data, w.pending.len);
    if (w.gone) rc = IC_KUBE_GONE;
  }
  curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  ic_buf_free(&w.pending);
  return rc;
}

/* ---- watcher thread ----------------------------------------------------------------------- */

struct ic_kube_watcher {
  ic_kube_t *k;
  ic_kube_res_t res;
  char *ns, *selector;
  ic_kube_watcher_fn fn;
  void *ud;
  pthread_t thr;
  atomic_bool stop;
  atomic_bool synced;
  atomic_uint_fast64_t relists;
};

static void nap(ic_kube_watcher_t *w, int ms) {
  for (int i = 0; i < ms / 50 && !atomic_load(&w->stop); i++) {
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
}

static int watcher_event(void *ud, const char *type, json_t *obj) {
  ic_kube_watcher_t *w = ud;
  w->fn(w->ud, type, obj);
  return atomic_load(&w->stop) ? 1 : 0;
}

static void *watcher_main(void *arg) {
  ic_kube_watcher_t *w = arg;
  int backoff = 200;
  while (!atomic_load(&w->stop)) {
    json_t *list = NULL;
    ic_kube_status_t st;
    int rc = ic_kube_list(w->k, &w->res, w->ns, w->selector, &list, &st);
    if (rc != 0) {
      ic_log_warn("kube_list_failed", IC_LS("resource", w->res.plural), IC_LI("http", st.http),
                  IC_LS("error", st.message));
      nap(w, backoff);
      backoff = backoff < 5000 ? backoff * 2 : 5000;
      continue;
    }
    atomic_fetch_add(&w->relists, 1);
    json_t *items = json_object_get(list, "items");
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
      if (atomic_load(&w->stop)) break;
      w->fn(w->ud, "SYNC", it);
    }
    const char *lrv = ic_kube_jstr(list, "metadata.resourceVersion");
    char *rv = lrv ? strdup(lrv) : NULL;
    json_decref(list);
    atomic_store(&w->synced, true);
    backoff = 200;
    while (!atomic_load(&w->stop)) {
      rc = ic_kube_watch(w->k, &w->res, w->ns, w->selector, &rv, 300, watcher_event, w, &w->stop,
                         &st);
      if (rc == 0) continue; /* stream ended (timeout): resume from the last version */
      if (rc == IC_KUBE_GONE) {
        ic_log_info("kube_watch_expired_relist", IC_LS("resource", w->res.plural));
        nap(w, 100); /* never spin if the server keeps answering 410 */
        break;
      }
      ic_log_warn("kube_watch_failed", IC_LS("resource", w->res.plural), IC_LI("http", st.http),
                  IC_LS("error", st.message));
      nap(w, backoff);
      backoff = backoff < 5000 ? backoff * 2 : 5000;
      if (rc != IC_EIO) break; /* unknown state: relist */
    }
    free(rv);
  }
  return NULL;
}

ic_kube_watcher_t *ic_kube_watcher_start(ic_kube_t *k, const ic_kube_res_t *r, const char *ns,
                                         const char *label_selector, ic_kube_watcher_fn fn,
                                         void *ud) {
  ic_kube_watcher_t *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->k = k;
  w->res = *r;
  w->ns = ns ? strdup(ns) : NULL;
  w->selector = label_selector ? strdup(label_selector) : NULL;
  w->fn = fn;
  w->ud = ud;
  if (pthread_create(&w->thr, NULL, watcher_main, w) != 0) {
    free(w->ns);
    free(w->selector);
    free(w);
    return NULL;
  }
  return w;
}

void ic_kube_watcher_cancel(ic_kube_watcher_t *w) {
  if (w) atomic_store(&w->stop, true);
}

void ic_kube_watcher_stop(ic_kube_watcher_t *w) {
  if (!w) return;
  atomic_store(&w->stop, true);
  pthread_join(w->thr, NULL);
  free(w->ns);
  free(w->selector);
  free(w);
}

bool ic_kube_watcher_synced(ic_kube_watcher_t *w) { return atomic_load(&w->synced); }
uint64_t ic_kube_watcher_relists(ic_kube_watcher_t *w) { return atomic_load(&w->relists); }
