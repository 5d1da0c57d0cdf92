/* Server-streaming RPCs: StreamCacheEvents (every index change fanned out to subscribers,
 * filtered by model, tenant and types) and StreamMetrics (the server's own metric samples every
 * SERVER_METRICS_INTERVAL_MS). Beyond the reference, whose handlers are empty stubs.
 *
 * Back-pressure: each subscriber's queue is bounded (SUBSCRIBER_QUEUE messages, in lib/rpc); a
 * slow reader loses its oldest events and inferencecache_stream_dropped_total{stream} counts
 * them. Ingest never waits: the change listener only encodes and enqueues. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/clock.h"
#include "ic/rpc.h"
#include "ic/svc.h"
#include "server.h"

#define SERVER_METRICS_INTERVAL_MS 1000
#define SUBSCRIBER_QUEUE 4096

typedef struct esub {
  ic_rpc_call_t *call;
  ic_svc_event_filter_t f;
} esub_t;

typedef struct msub {
  ic_rpc_call_t *call;
  ic_svc_metric_filter_t f;
} msub_t;

/* The subscribers of one stream kind. Items change under the hub lock; `count` is also read
 * without it (the ingest path skips all work when nobody listens). */
typedef struct sublist {
  void **items;
  size_t n, cap;
  atomic_size_t count;
  ic_metric_t *gauge; /* inferencecache_stream_subscribers{stream} */
} sublist_t;

struct server_hub {
  server_ctx_t *ctx;
  pthread_mutex_t mu;
  sublist_t events;  /* esub_t * */
  sublist_t metrics; /* msub_t * */
  ic_buf_t enc; /* encoding scratch, under mu */
  pthread_t ticker;
  bool ticker_started;
  pthread_mutex_t tmu;
  pthread_cond_t tcv;
  bool stop;
  ic_metric_t *dropped_events, *dropped_metrics;
};

static void sublist_publish(sublist_t *l) {
  atomic_store(&l->count, l->n);
  if (l->gauge) ic_metric_set(l->gauge, (double)l->n);
}

/* Registers `item` and attaches it to `call` before it becomes visible, so the stream's close
 * callback always finds it. Caller holds the hub lock. Returns 0 or IC_RPC_RESOURCE_EXHAUSTED. */
static int sublist_add(sublist_t *l, ic_rpc_call_t *call, void *item) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 8;
    void **n = realloc(l->items, nc * sizeof *n);
    if (!n) return IC_RPC_RESOURCE_EXHAUSTED;
    l->items = n;
    l->cap = nc;
  }
  ic_rpc_call_set_data(call, item);
  l->items[l->n++] = item;
  sublist_publish(l);
  return IC_RPC_OK;
}

/* Caller holds the hub lock. Order is not kept (swap with the last). */
static void sublist_remove(sublist_t *l, void *item) {
  for (size_t i = 0; i < l->n; i++)
    if (l->items[i] == item) {
      l->items[i] = l->items[--l->n];
      break;
    }
  sublist_publish(l);
}

static void count_dropped(ic_metric_t *m, int rc) {
  if (rc > 0 && m) ic_metric_add(m, rc);
}

void server_hub_on_change(void *ud, const ic_index_change_t *c) {
  struct server_hub *h = ud;
  if (!h || atomic_load_explicit(&h->events.count, memory_order_relaxed) == 0) return;
  pthread_mutex_lock(&h->mu);
  bool encoded = false;
  for (size_t i = 0; i < h->events.n; i++) {
    esub_t *s = h->events.items[i];
    if (!ic_svc_event_filter_match(&s->f, c)) continue;
    if (!encoded) {
      ic_buf_reset(&h->enc);
      if (ic_svc_change_encode(c, &h->enc) != 0) break;
      encoded = true;
    }
    count_dropped(h->dropped_events,
                  ic_rpc_stream_send(s->call, (const uint8_t *)(h->enc.data ? h->enc.data : ""), h->enc.len));
  }
  pthread_mutex_unlock(&h->mu);
}

static int events_start(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len) {
  struct server_hub *h = ud;
  esub_t *s = calloc(1, sizeof *s);
  if (!s) return IC_RPC_RESOURCE_EXHAUSTED;
  int rc = ic_svc_event_filter_parse(req, len, &s->f);
  if (rc != IC_RPC_OK) {
    free(s);
    return rc;
  }
  s->call = call;
  ic_rpc_stream_set_limit(call, SUBSCRIBER_QUEUE);
  pthread_mutex_lock(&h->mu);
  rc = sublist_add(&h->events, call, s);
  pthread_mutex_unlock(&h->mu);
  if (rc != IC_RPC_OK) {
    ic_svc_event_filter_free(&s->f);
    free(s);
  }
  return rc;
}

static void events_close(void *ud, ic_rpc_call_t *call) {
  struct server_hub *h = ud;
  esub_t *s = ic_rpc_call_data(call);
  if (!s) return;
  pthread_mutex_lock(&h->mu);
  sublist_remove(&h->events, s);
  pthread_mutex_unlock(&h->mu);
  ic_svc_event_filter_free(&s->f);
  free(s);
}

typedef struct emit_ctx {
  struct server_hub *h;
  ic_rpc_call_t *call;
} emit_ctx_t;

static void emit_metric(void *ud, const char *name, const char *type, const uint8_t *msg, size_t len) {
  (void)name, (void)type;
  emit_ctx_t *e = ud;
  count_dropped(e->h->dropped_metrics, ic_rpc_stream_send(e->call, msg, len));
}

static void send_metrics(struct server_hub *h, msub_t *s) {
  emit_ctx_t e = {h, s->call};
  ic_svc_metrics_encode(h->ctx->metrics, &s->f, ic_clock_realtime_us(), emit_metric, &e);
}

static int metrics_start(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len) {
  struct server_hub *h = ud;
  msub_t *s = calloc(1, sizeof *s);
  if (!s) return IC_RPC_RESOURCE_EXHAUSTED;
  int rc = ic_svc_metric_filter_parse(req, len, &s->f);
  if (rc != IC_RPC_OK) {
    free(s);
    return rc;
  }
  s->call = call;
  ic_rpc_stream_set_limit(call, SUBSCRIBER_QUEUE);
  pthread_mutex_lock(&h->mu);
  rc = sublist_add(&h->metrics, call, s);
  pthread_mutex_unlock(&h->mu);
  if (rc != IC_RPC_OK) {
    ic_svc_metric_filter_free(&s->f);
    free(s);
    return rc;
  }
  send_metrics(h, s); /* first sample set right away */
  return IC_RPC_OK;
}

static void metrics_close(void *ud, ic_rpc_call_t *call) {
  struct server_hub *h = ud;
  msub_t *s = ic_rpc_call_data(call);
  if (!s) return;
  pthread_mutex_lock(&h->mu);
  sublist_remove(&h->metrics, s);
  pthread_mutex_unlock(&h->mu);
  ic_svc_metric_filter_free(&s->f);
  free(s);
}

typedef struct sample {
  char *name, *type;
  uint8_t *msg;
  size_t len;
} sample_t;

typedef struct samples {
  sample_t *v;
  size_t n, cap;
} samples_t;

static void collect_sample(void *ud, const char *name, const char *type, const uint8_t *msg, size_t len) {
  samples_t *ss = ud;
  if (ss->n == ss->cap) {
    size_t nc = ss->cap ? ss->cap * 2 : 64;
    sample_t *nv = realloc(ss->v, nc * sizeof *nv);
    if (!nv) return;
    ss->v = nv;
    ss->cap = nc;
  }
  sample_t *s = &ss->v[ss->n];
  s->name = strdup(name);
  s->type = strdup(type);
  s->msg = malloc(len ? len : 1);
  s->len = len;
  if (!s->name || !s->type || !s->msg) {
    free(s->name), free(s->type), free(s->msg);
    return;
  }
  memcpy(s->msg, msg, len);
  ss->n++;
}

/* Samples are collected without the hub lock: collecting may refresh gauges from the index,
 * and the index calls server_hub_on_change (hub lock) with its own locks held. */
static void tick(struct server_hub *h) {
  if (atomic_load(&h->metrics.count) == 0) return;
  samples_t ss = {0};
  ic_svc_metrics_encode(h->ctx->metrics, NULL, ic_clock_realtime_us(), collect_sample, &ss);
  pthread_mutex_lock(&h->mu);
  for (size_t i = 0; i < h->metrics.n; i++) {
    msub_t *s = h->metrics.items[i];
    for (size_t j = 0; j < ss.n; j++)
      if (ic_svc_metric_filter_match(&s->f, ss.v[j].name, ss.v[j].type))
        count_dropped(h->dropped_metrics, ic_rpc_stream_send(s->call, ss.v[j].msg, ss.v[j].len));
  }
  pthread_mutex_unlock(&h->mu);
  for (size_t j = 0; j < ss.n; j++) free(ss.v[j].name), free(ss.v[j].type), free(ss.v[j].msg);
  free(ss.v);
}

static void *ticker_main(void *arg) {
  struct server_hub *h = arg;
  pthread_mutex_lock(&h->tmu);
  while (!h->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)SERVER_METRICS_INTERVAL_MS * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&h->tcv, &h->tmu, &ts);
    if (h->stop) break;
    pthread_mutex_unlock(&h->tmu);
    tick(h);
    pthread_mutex_lock(&h->tmu);
  }
  pthread_mutex_unlock(&h->tmu);
  return NULL;
}

struct server_hub *server_hub_new(server_ctx_t *ctx) {
  struct server_hub *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->ctx = ctx;
  pthread_mutex_init(&h->mu, NULL);
  pthread_mutex_init(&h->tmu, NULL);
  pthread_cond_init(&h->tcv, NULL);
  if (ctx->m.stream_dropped) {
    const char *ev[1] = {"events"}, *mv[1] = {"metrics"};
    h->dropped_events = ic_metric_child(ctx->m.stream_dropped, ev);
    h->dropped_metrics = ic_metric_child(ctx->m.stream_dropped, mv);
  }
  if (ctx->m.stream_subscribers) {
    const char *ev[1] = {"events"}, *mv[1] = {"metrics"};
    h->events.gauge = ic_metric_child(ctx->m.stream_subscribers, ev);
    h->metrics.gauge = ic_metric_child(ctx->m.stream_subscribers, mv);
  }
  if (pthread_create(&h->ticker, NULL, ticker_main, h) == 0) h->ticker_started = true;
  return h;
}

/* Call after the gRPC server is shut down (no subscriber is left). */
void server_hub_free(struct server_hub *h) {
  if (!h) return;
  pthread_mutex_lock(&h->tmu);
  h->stop = true;
  pthread_cond_broadcast(&h->tcv);
  pthread_mutex_unlock(&h->tmu);
  if (h->ticker_started) pthread_join(h->ticker, NULL);
  for (size_t i = 0; i < h->events.n; i++) {
    esub_t *s = h->events.items[i];
    ic_svc_event_filter_free(&s->f);
    free(s);
  }
  for (size_t i = 0; i < h->metrics.n; i++) {
    msub_t *s = h->metrics.items[i];
    ic_svc_metric_filter_free(&s->f);
    free(s);
  }
  free(h->events.items);
  free(h->metrics.items);
  ic_buf_free(&h->enc);
  pthread_mutex_destroy(&h->mu);
  pthread_mutex_destroy(&h->tmu);
  pthread_cond_destroy(&h->tcv);
  free(h);
}

int server_hub_register(server_ctx_t *ctx) {
  static const ic_rpc_stream_handler_t ev = {.on_start = events_start, .on_close = events_close};
  static const ic_rpc_stream_handler_t mx = {.on_start = metrics_start, .on_close = metrics_close};
  int rc = ic_rpc_server_add_stream(ctx->grpc, "/inferencecache.v1alpha1.InferenceCache/StreamCacheEvents",
                                    IC_RPC_SERVER_STREAM, &ev, ctx->hub);
  if (rc) return rc;
  return ic_rpc_server_add_stream(ctx->grpc, "/inferencecache.v1alpha1.InferenceCache/StreamMetrics",
                                  IC_RPC_SERVER_STREAM, &mx, ctx->hub);
}
