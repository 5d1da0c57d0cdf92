/* lib/replay HTTP side of a run: one sender thread drives every streamed completion through a
 * libcurl multi handle (hundreds of concurrent SSE streams on one thread), plus the /metrics
 * poller for load, the precise-mode oracle and the cache reset between modes. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/kvevents.h"
#include "ic/log.h"
#include "internal.h"

#define RAW_KEEP 1024 /* bytes of a non-SSE body kept for the error message */

typedef struct xfer {
  fleet_t *fleet;
  size_t idx;
  int replica;
  CURL *easy;
  struct curl_slist *hdrs;
  char *body;
  size_t body_len;
  int64_t due_ns, sent_ns;
  bool first;
  bool got_usage;
  int proto_err;
  ic_replay_sse_t sse;
  char raw[RAW_KEEP];
  size_t raw_len;
  char curl_err[CURL_ERROR_SIZE];
  struct xfer *next;          /* pending queue */
  struct xfer *rprev, *rnext; /* running list */
} xfer_t;

struct fleet {
  const ic_replay_opts_t *o;
  ic_replay_record_t *recs;
  fleet_done_fn done;
  void *ud;
  replica_load_t *load;
  char **completions_url;
  int64_t t0_ns; /* run start (wall clock for records without sim_timing) */

  /* sender */
  CURLM *multi;
  pthread_t sender;
  bool sender_started;
  pthread_mutex_t mu;
  xfer_t *pending_head, *pending_tail;
  bool stopping;
  xfer_t *running; /* transfers in the multi handle (sender thread only) */

  /* poller */
  pthread_t poller;
  bool poller_started;
  _Atomic bool poller_stop;
};

/* -------------------------------------- load -------------------------------------- */

int64_t fleet_load(fleet_t *f, int r) {
  replica_load_t *l = &f->load[r];
  int64_t sent = atomic_load(&l->sent), done = atomic_load(&l->done);
  int64_t scraped = atomic_load(&l->scraped);
  if (scraped < 0) return sent - done;
  int64_t v = scraped + (sent - atomic_load(&l->sent_at)) - (done - atomic_load(&l->done_at));
  return v > 0 ? v : 0;
}

void fleet_loads(fleet_t *f, int64_t *out) {
  for (int r = 0; r < f->o->nengines; r++)
    out[r] = fleet_load(f, r);
}

static size_t sink(char *p, size_t sz, size_t n, void *ud) {
  ic_buf_t *b = ud;
  if (b->len + sz * n > (64u << 20)) return 0; /* a runaway page is an error, not a malloc bomb */
  return ic_buf_append(b, p, sz * n) == 0 ? sz * n : 0;
}

/* Scrapes every engine's /metrics each interval; the kvevents scraper turns vLLM's or SGLang's
 * gauges into pressure = (running + waiting) / ceiling, and with ceiling 2^30 that division is
 * exact in float32, so multiplying back gives the queue depth. */
#define LOAD_CEILING (1 << 30)
static void *poller_main(void *arg) {
  fleet_t *f = arg;
  int n = f->o->nengines;
  ic_kv_scraper_t **sc = calloc((size_t)n, sizeof(*sc));
  CURL **e = calloc((size_t)n, sizeof(*e));
  char **urls = calloc((size_t)n, sizeof(*urls));
  ic_buf_t body = IC_BUF_INIT;
  if (!sc || !e || !urls) goto out;
  for (int r = 0; r < n; r++) {
    sc[r] = ic_kv_scraper_new(f->o->hash_scheme, NULL, IC_KV_TIER_AUTO, 0, LOAD_CEILING);
    e[r] = curl_easy_init();
    size_t ul = strlen(f->o->engines[r].url) + 16;
    urls[r] = malloc(ul);
    if (!sc[r] || !e[r] || !urls[r]) goto out;
    snprintf(urls[r], ul, "%s/metrics", f->o->engines[r].url);
    curl_easy_setopt(e[r], CURLOPT_URL, urls[r]);
    curl_easy_setopt(e[r], CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e[r], CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(e[r], CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(e[r], CURLOPT_NOSIGNAL, 1L);
  }
  bool warned = false;
  while (!atomic_load(&f->poller_stop)) {
    int64_t t = ic_clock_monotonic_ns();
    for (int r = 0; r < n; r++) {
      replica_load_t *l = &f->load[r];
      int64_t sent = atomic_load(&l->sent), done = atomic_load(&l->done);
      ic_buf_reset(&body);
      long code = 0;
      ic_kv_stats_t st;
      char err[160];
      if (curl_easy_perform(e[r]) == CURLE_OK &&
          curl_easy_getinfo(e[r], CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200 &&
          ic_kv_scraper_derive(sc[r], body.data ? body.data : "", body.len, &st, err,
                               sizeof(err)) == 0) {
        atomic_store(&l->sent_at, sent);
        atomic_store(&l->done_at, done);
        atomic_store(&l->scraped, (int64_t)((double)st.pressure * LOAD_CEILING + 0.5));
      } else if (!warned) {
        warned = true;
        ic_log_warn("replay_metrics_scrape_failed", IC_LS("url", urls[r]), IC_LI("status", code),
                    IC_LS("effect", "load falls back to the router's in-flight count"));
      }
    }
    int64_t next = t + (int64_t)f->o->metrics_interval_ms * 1000000;
    while (!atomic_load(&f->poller_stop) && ic_clock_monotonic_ns() < next) {
      struct timespec ts = {0, 5 * 1000000};
      nanosleep(&ts, NULL);
    }
  }
out:
  for (int r = 0; r < n; r++) {
    if (sc) ic_kv_scraper_free(sc[r]);
    if (e && e[r]) curl_easy_cleanup(e[r]);
    if (urls) free(urls[r]);
  }
  free(sc);
  free(e);
  free(urls);
  ic_buf_free(&body);
  return NULL;
}

int fleet_start_poller(fleet_t *f) {
  if (f->poller_started) return 0;
  if (pthread_create(&f->poller, NULL, poller_main, f)) return IC_ENOMEM;
  f->poller_started = true;
  return 0;
}

/* -------------------------------------- sender -------------------------------------- */

static int on_event(void *ud, const char *data, size_t len) {
  xfer_t *x = ud;
  if (len == 6 && !memcmp(data, "[DONE]", 6)) return 0;
  int rc = ic_replay_apply_completion(&x->fleet->recs[x->idx], data, len);
  if (rc > 0) x->got_usage = true;
  if (rc < 0 && !x->proto_err) x->proto_err = rc;
  return 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  xfer_t *x = ud;
  size_t len = sz * n;
  if (!x->first && len) {
    x->first = true;
    x->fleet->recs[x->idx].client_ttft_ms = (double)(ic_clock_monotonic_ns() - x->sent_ns) / 1e6;
  }
  size_t keep = len < RAW_KEEP - 1 - x->raw_len ? len : RAW_KEEP - 1 - x->raw_len;
  memcpy(x->raw + x->raw_len, p, keep);
  x->raw_len += keep;
  x->raw[x->raw_len] = '\0';
  if (ic_replay_sse_feed(&x->sse, p, len, on_event, x) < 0) return 0; /* abort the transfer */
  return len;
}

static void xfer_free(xfer_t *x) {
  if (!x) return;
  if (x->easy) curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->hdrs);
  free(x->body);
  ic_replay_sse_free(&x->sse);
  free(x);
}

static void finish(fleet_t *f, xfer_t *x, CURLcode cc) {
  ic_replay_record_t *r = &f->recs[x->idx];
  int64_t now = ic_clock_monotonic_ns();
  long code = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  if (cc == CURLE_OK) ic_replay_sse_finish(&x->sse, on_event, x);
  if (cc != CURLE_OK) {
    snprintf(r->error, sizeof(r->error), "transport: %.80s",
             x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc));
  } else if (code != 200) {
    snprintf(r->error, sizeof(r->error), "HTTP %ld: %.70s", code, x->raw);
  } else if (x->proto_err) {
    if (!r->error[0]) snprintf(r->error, sizeof(r->error), "bad stream");
  } else if (!x->first) {
    snprintf(r->error, sizeof(r->error), "empty response");
  } else {
    r->ok = true;
  }
  if (!r->sim_timing) { /* a real engine: wall-clock timings */
    r->ttft_ms = r->client_ttft_ms;
    r->e2e_ms = (double)(now - x->sent_ns) / 1e6;
    r->arrival_ms = (double)(x->sent_ns - f->t0_ns) / 1e6;
    r->finish_ms = (double)(now - f->t0_ns) / 1e6;
  }
  if (r->ok && !r->sim_timing && r->computed_prefill_tokens == 0)
    r->computed_prefill_tokens = r->prompt_tokens - r->cached_tokens;
  if (r->ok && !x->got_usage) snprintf(r->error, sizeof(r->error), "no usage in the stream");
  atomic_fetch_add(&f->load[x->replica].done, 1);
  f->done(f->ud, x->idx);
}

static void start_xfer(fleet_t *f, xfer_t *x) {
  x->easy = curl_easy_init();
  x->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  x->hdrs = curl_slist_append(x->hdrs, "Accept: text/event-stream");
  x->hdrs = curl_slist_append(x->hdrs, "Expect:");
  if (!x->easy || !x->hdrs) {
    snprintf(f->recs[x->idx].error, sizeof(f->recs[x->idx].error), "out of memory");
    atomic_fetch_add(&f->load[x->replica].done, 1);
    f->done(f->ud, x->idx);
    xfer_free(x);
    return;
  }
  CURL *e = x->easy;
  curl_easy_setopt(e, CURLOPT_URL, f->completions_url[x->replica]);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_PRIVATE, x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->curl_err);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  if (f->o->request_timeout_ms > 0)
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)f->o->request_timeout_ms);
  x->sent_ns = ic_clock_monotonic_ns();
  f->recs[x->idx].send_lag_ms = (double)(x->sent_ns - x->due_ns) / 1e6;
  curl_multi_add_handle(f->multi, e);
  x->rnext = f->running;
  if (f->running) f->running->rprev = x;
  f->running = x;
}

static void unlink_running(fleet_t *f, xfer_t *x) {
  if (x->rprev)
    x->rprev->rnext = x->rnext;
  else
    f->running = x->rnext;
  if (x->rnext) x->rnext->rprev = x->rprev;
}

static void *sender_main(void *arg) {
  fleet_t *f = arg;
  for (;;) {
    pthread_mutex_lock(&f->mu);
    xfer_t *q = f->pending_head;
    f->pending_head = f->pending_tail = NULL;
    bool stop = f->stopping;
    pthread_mutex_unlock(&f->mu);
    while (q) {
      xfer_t *next = q->next;
      start_xfer(f, q);
      q = next;
    }
    if (stop) break;
    int still = 0;
    curl_multi_perform(f->multi, &still);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(f->multi, &left))) {
      if (m->msg != CURLMSG_DONE) continue;
      xfer_t *x = NULL;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
      CURLcode cc = m->data.result;
      curl_multi_remove_handle(f->multi, m->easy_handle);
      unlink_running(f, x);
      finish(f, x, cc);
      xfer_free(x);
    }
    curl_multi_poll(f->multi, NULL, 0, 100, NULL);
  }
  /* Stopping: whatever still runs is abandoned and reported as failed. */
  while (f->running) {
    xfer_t *x = f->running;
    unlink_running(f, x);
    curl_multi_remove_handle(f->multi, x->easy);
    snprintf(f->recs[x->idx].error, sizeof(f->recs[x->idx].error),
             "abandoned at the end of the run");
    atomic_fetch_add(&f->load[x->replica].done, 1);
    f->done(f->ud, x->idx);
    xfer_free(x);
  }
  return NULL;
}

int fleet_send(fleet_t *f, size_t idx, int replica, char *body, size_t len, int64_t due_ns) {
  xfer_t *x = calloc(1, sizeof(*x));
  if (!x) {
    free(body);
    return IC_ENOMEM;
  }
  x->fleet = f;
  x->idx = idx;
  x->replica = replica;
  x->body = body;
  x->body_len = len;
  x->due_ns = due_ns;
  ic_replay_sse_init(&x->sse);
  f->recs[idx].replica = replica;
  atomic_fetch_add(&f->load[replica].sent, 1);
  pthread_mutex_lock(&f->mu);
  if (f->pending_tail)
    f->pending_tail->next = x;
  else
    f->pending_head = x;
  f->pending_tail = x;
  pthread_mutex_unlock(&f->mu);
  curl_multi_wakeup(f->multi);
  return 0;
}

/* -------------------------------------- oracle -------------------------------------- */

/* One per deciding thread: its own multi handle and a kept-alive connection per engine. */
struct fleet_oracle {
  fleet_t *f;
  CURLM *multi;
  CURL **easy;
  ic_buf_t *body;
  struct curl_slist *hdrs;
};

void fleet_oracle_free(fleet_oracle_t *o) {
  if (!o) return;
  int n = o->f->o->nengines;
  for (int r = 0; r < n; r++) {
    if (o->easy && o->easy[r]) curl_easy_cleanup(o->easy[r]);
    if (o->body) ic_buf_free(&o->body[r]);
  }
  curl_slist_free_all(o->hdrs);
  if (o->multi) curl_multi_cleanup(o->multi);
  free(o->easy);
  free(o->body);
  free(o);
}

fleet_oracle_t *fleet_oracle_new(fleet_t *f) {
  fleet_oracle_t *o = calloc(1, sizeof(*o));
  if (!o) return NULL;
  o->f = f;
  int n = f->o->nengines;
  o->easy = calloc((size_t)n, sizeof(CURL *));
  o->body = calloc((size_t)n, sizeof(ic_buf_t));
  o->multi = curl_multi_init();
  o->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  if (!o->easy || !o->body || !o->multi || !o->hdrs) goto fail;
  for (int r = 0; r < n; r++) {
    char url[1024];
    snprintf(url, sizeof(url), "%s/sim/prefix_match", f->o->engines[r].url);
    if (!(o->easy[r] = curl_easy_init())) goto fail;
    curl_easy_setopt(o->easy[r], CURLOPT_URL, url);
    curl_easy_setopt(o->easy[r], CURLOPT_HTTPHEADER, o->hdrs);
    curl_easy_setopt(o->easy[r], CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(o->easy[r], CURLOPT_WRITEDATA, &o->body[r]);
    curl_easy_setopt(o->easy[r], CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(o->easy[r], CURLOPT_NOSIGNAL, 1L);
  }
  return o;
fail:
  fleet_oracle_free(o);
  return NULL;
}

int fleet_oracle_ask(fleet_oracle_t *o, const char *prompt_json, size_t len, int64_t *out) {
  int n = o->f->o->nengines;
  ic_buf_t req = IC_BUF_INIT;
  if (ic_buf_append_str(&req, "{\"prompt\":") || ic_buf_append(&req, prompt_json, len) ||
      ic_buf_append_byte(&req, '}')) {
    ic_buf_free(&req);
    return IC_ENOMEM;
  }
  for (int r = 0; r < n; r++) {
    out[r] = -1;
    ic_buf_reset(&o->body[r]);
    curl_easy_setopt(o->easy[r], CURLOPT_POSTFIELDS, req.data);
    curl_easy_setopt(o->easy[r], CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req.len);
    curl_multi_add_handle(o->multi, o->easy[r]);
  }
  int still = n;
  while (still > 0) {
    curl_multi_perform(o->multi, &still);
    if (still > 0) curl_multi_poll(o->multi, NULL, 0, 100, NULL);
  }
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(o->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    int r = 0;
    while (r < n && o->easy[r] != m->easy_handle)
      r++;
    long code = 0;
    curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    if (r < n && m->data.result == CURLE_OK && code == 200) {
      json_t *j = json_loadb(o->body[r].data ? o->body[r].data : "", o->body[r].len, 0, NULL);
      json_t *v = json_object_get(j, "cached_tokens");
      if (json_is_integer(v) && json_integer_value(v) >= 0) out[r] = json_integer_value(v);
      json_decref(j);
    }
  }
  for (int r = 0; r < n; r++)
    curl_multi_remove_handle(o->multi, o->easy[r]);
  ic_buf_free(&req);
  return 0;
}

/* -------------------------------------- reset -------------------------------------- */

int fleet_reset(fleet_t *f, char *err, size_t errlen) {
  int fails = 0;
  for (int r = 0; r < f->o->nengines; r++) {
    CURL *e = curl_easy_init();
    char url[1024];
    ic_buf_t body = IC_BUF_INIT;
    snprintf(url, sizeof(url), "%s%s", f->o->engines[r].url, f->o->reset_path);
    long code = 0;
    CURLcode cc = CURLE_FAILED_INIT;
    if (e) {
      curl_easy_setopt(e, CURLOPT_URL, url);
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
      curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
      curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
      curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
      curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
      cc = curl_easy_perform(e);
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
      curl_easy_cleanup(e);
    }
    ic_buf_free(&body);
    if (cc != CURLE_OK || code / 100 != 2) {
      if (!fails)
        snprintf(err, errlen, "reset %s: %s", url,
                 cc != CURLE_OK ? curl_easy_strerror(cc) : "HTTP error");
      fails++;
    }
  }
  return fails;
}

/* ------------------------------------- lifecycle ------------------------------------- */

fleet_t *fleet_new(const ic_replay_opts_t *o, ic_replay_record_t *recs, fleet_done_fn done,
                   void *ud, char *err, size_t errlen) {
  fleet_t *f = calloc(1, sizeof(*f));
  if (!f) goto oom;
  f->o = o;
  f->recs = recs;
  f->done = done;
  f->ud = ud;
  f->t0_ns = ic_clock_monotonic_ns();
  pthread_mutex_init(&f->mu, NULL);
  int n = o->nengines;
  f->load = calloc((size_t)n, sizeof(*f->load));
  f->completions_url = calloc((size_t)n, sizeof(char *));
  f->multi = curl_multi_init();
  if (!f->load || !f->completions_url || !f->multi) goto oom;
  /* Unbounded connections: an open-loop replay must never queue behind its own client. */
  curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
  curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
  curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, 4096L);
  for (int r = 0; r < n; r++) {
    atomic_store(&f->load[r].scraped, -1);
    size_t ul = strlen(o->engines[r].url) + 32;
    f->completions_url[r] = malloc(ul);
    if (!f->completions_url[r]) goto oom;
    snprintf(f->completions_url[r], ul, "%s/v1/completions", o->engines[r].url);
  }
  if (pthread_create(&f->sender, NULL, sender_main, f)) goto oom;
  f->sender_started = true;
  return f;
oom:
  snprintf(err, errlen, "out of memory starting the fleet client");
  fleet_free(f);
  return NULL;
}

void fleet_free(fleet_t *f) {
  if (!f) return;
  if (f->poller_started) {
    atomic_store(&f->poller_stop, true);
    pthread_join(f->poller, NULL);
  }
  if (f->sender_started) {
    pthread_mutex_lock(&f->mu);
    f->stopping = true;
    pthread_mutex_unlock(&f->mu);
    curl_multi_wakeup(f->multi);
    pthread_join(f->sender, NULL);
  }
  for (xfer_t *x = f->pending_head; x;) {
    xfer_t *next = x->next;
    xfer_free(x);
    x = next;
  }
  int n = f->o ? f->o->nengines : 0;
  for (int r = 0; r < n; r++) {
    if (f->completions_url) free(f->completions_url[r]);
  }
  if (f->multi) curl_multi_cleanup(f->multi);
  free(f->load);
  free(f->completions_url);
  pthread_mutex_destroy(&f->mu);
  free(f);
}
