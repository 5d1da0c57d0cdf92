/* Server-streaming RPCs: StreamCacheEvents (index changes, filtered by model, tenant and types)
 * and StreamMetrics (the server's own metric samples every SERVER_METRICS_INTERVAL_MS). Beyond
 * the reference, whose handlers are empty stubs.
 *
 * Fan-out is off the ingest path. The index change listener only stages the encoded change in
 * the ingest thread's buffer; the index's flush at the end of its write hold publishes the batch
 * to the change log (lib/svc changelog: one bounded ring shared by all subscribers) and wakes the
 * sender thread; no per-subscriber work runs under the index's locks. The sender thread gives
 * each subscriber whose previous batch was written (on_drain) its next batch from its own
 * cursor, so a reader that does not read holds at most one batch. A subscriber the ring
 * overtook has lost events: its stream ends with RESOURCE_EXHAUSTED and a message saying so.
 * Totals are bounded: subscribers (--stream-max-subscribers), ring bytes (--stream-log-bytes),
 * bytes queued to the transport (--stream-max-queued-bytes), events sent per second to all
 * subscribers together (--stream-max-send-rate). */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"
#include "ic/rpc.h"
#include "ic/svc.h"
#include "server.h"

#define SERVER_METRICS_INTERVAL_MS 1000
#define BATCH_BYTES (32 * 1024) /* one subscriber's batch: what it may hold unread */
#define BATCH_MSGS 256
/* The sender waits after a pass so appends batch up. A pass costs time per subscriber, so the
 * pause grows with them (0.5 ms alone, 2.5 ms with 1,000): the passes' share of the CPU that
 * ingest and lookups also need stays small, at a few ms more event latency. */
#define COALESCE_NS 500000
#define COALESCE_PER_SUB_NS 2000
#define COALESCE_MAX_NS 5000000
#define STARVED_MAX_WAIT_NS 100000000 /* out of send budget: at most 0.1 s to the next pass */

enum { STREAM_EVENTS = 0, STREAM_METRICS = 1 };

/* One subscriber of either kind. `busy` is set by the sender while a batch is queued and
 * cleared by on_drain (the call's completion-queue thread); `inflight` is that batch's size. */
typedef struct sub {
  ic_rpc_call_t *call;
  int kind;
  atomic_bool busy;
  size_t inflight;
  bool gone;    /* aborted as too slow; on_close follows */
  uint64_t gid; /* filter group: subscribers with equal filters share it, and share reads */
  ic_svc_event_filter_t ef;
  ic_svc_changelog_cursor_t cur;
  ic_svc_metric_filter_t mf;
} sub_t;

/* The subscribers of one stream kind, under the hub lock; `count` is also read without it. */
typedef struct sublist {
  sub_t **items;
  size_t n, cap;
  atomic_size_t count;
  ic_metric_t *gauge, *dropped, *rejected, *slow;
} sublist_t;

struct server_hub {
  server_ctx_t *ctx;
  pthread_mutex_t mu; /* subscriber lists, batch scratch */
  sublist_t lists[2];
  ic_svc_changelog_t *log;
  size_t max_subs, max_queued;
  atomic_size_t queued; /* bytes handed to send queues and not yet written */
  ic_buf_t batch;
  size_t lens[BATCH_MSGS];
  size_t rr;           /* round-robin start, so a queued-bytes shortage is shared */
  double rate, tokens; /* --stream-max-send-rate: events/s to all subscribers together */
  int64_t tokens_at;
  uint64_t next_gid; /* filter groups handed out so far */
  sub_t **cand;      /* sender pass scratch: subscribers due a batch, in group order */
  size_t *runs;      /* sender pass scratch: where each run of one group and position starts */
  size_t ncand_cap;
  ic_metric_t *queued_gauge, *log_gauge;
  ic_metric_t *open_streams, *streams_refused; /* lib/rpc's server-wide stream cap */
  uint64_t refused_seen;
  /* sender thread (events) and ticker thread (metrics) */
  pthread_t sender, ticker;
  bool sender_started, ticker_started;
  pthread_mutex_t wmu;
  pthread_cond_t wcv, tcv;
  atomic_bool pending;
  bool stop;
};

static const char *const STREAM_NAMES[2] = {"events", "metrics"};

static void sublist_publish(sublist_t *l) {
  atomic_store(&l->count, l->n);
  if (l->gauge) ic_metric_set(l->gauge, (double)l->n);
}

static size_t total_subs(struct server_hub *h) { return h->lists[0].n + h->lists[1].n; }

/* Registers `s` and attaches it to its call before it becomes visible, so the close callback
 * always finds it. Caller holds the hub lock. */
static int sublist_add(struct server_hub *h, sublist_t *l, sub_t *s) {
  if (total_subs(h) >= h->max_subs) return IC_ERANGE;
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 8;
    sub_t **n = realloc(l->items, nc * sizeof *n);
    if (!n) return IC_ENOMEM;
    l->items = n;
    l->cap = nc;
  }
  ic_rpc_call_set_data(s->call, s);
  /* Kept in filter-group order (a new group sorts last), so the sender pass finds each group's
   * members adjacent without sorting every pass. */
  size_t at = l->n;
  while (at > 0 && l->items[at - 1]->gid > s->gid)
    at--;
  memmove(l->items + at + 1, l->items + at, (l->n - at) * sizeof *l->items);
  l->items[at] = s;
  l->n++;
  sublist_publish(l);
  return 0;
}

/* Caller holds the hub lock. Keeps the group order. */
static void sublist_remove(sublist_t *l, sub_t *s) {
  for (size_t i = 0; i < l->n; i++)
    if (l->items[i] == s) {
      memmove(l->items + i, l->items + i + 1, (l->n - i - 1) * sizeof *l->items);
      l->n--;
      break;
    }
  if (l->n == 0 && l->cap > 64) { /* a flood of subscribers left: give the array back */
    free(l->items);
    l->items = NULL;
    l->cap = 0;
  }
  sublist_publish(l);
}

static void sub_free(sub_t *s) {
  ic_svc_event_filter_free(&s->ef);
  ic_svc_metric_filter_free(&s->mf);
  free(s);
}

static void metric_add(ic_metric_t *m, double v) {
  if (m && v > 0) ic_metric_add(m, v);
}

static void queued_add(struct server_hub *h, size_t n) {
  size_t q = atomic_fetch_add(&h->queued, n) + n;
  if (h->queued_gauge) ic_metric_set(h->queued_gauge, (double)q);
}

static void queued_sub(struct server_hub *h, size_t n) {
  size_t q = atomic_fetch_sub(&h->queued, n) - n;
  if (h->queued_gauge) ic_metric_set(h->queued_gauge, (double)q);
}

static void wake_sender(struct server_hub *h) {
  /* Already woken, the pass has not begun. Read first: every ingest thread's flush comes here,
   * and a plain load leaves the cache line shared while the flag stays set. */
  if (atomic_load_explicit(&h->pending, memory_order_relaxed) || atomic_exchange(&h->pending, true))
    return;
  pthread_mutex_lock(&h->wmu);
  pthread_cond_signal(&h->wcv);
  pthread_mutex_unlock(&h->wmu);
}

/* Queues the batch in h->batch / h->lens on `s`. Caller holds the hub lock. */
static void send_batch(struct server_hub *h, sub_t *s, size_t n) {
  size_t bytes = h->batch.len;
  s->inflight = bytes;
  queued_add(h, bytes);
  atomic_store(&s->busy, true);
  int rc = ic_rpc_stream_sendv(s->call, (const uint8_t *)(h->batch.data ? h->batch.data : ""),
                               h->lens, n);
  if (rc < 0) { /* the call is closing: on_close follows, nothing was queued */
    atomic_store(&s->busy, false);
    s->inflight = 0;
    queued_sub(h, bytes);
  }
}

/* Ends a subscriber the change log overtook. Caller holds the hub lock. */
static void drop_slow(sublist_t *l, sub_t *s, uint64_t lost) {
  char msg[256];
  snprintf(msg, sizeof msg,
           "StreamCacheEvents subscriber too slow: %" PRIu64
           " changes were overwritten in the server's change log before it read them; resubscribe "
           "(and re-read state with GetCacheState)",
           lost);
  s->gone = true;
  metric_add(l->dropped, (double)lost);
  metric_add(l->slow, 1);
  ic_log_warn("stream_subscriber_too_slow", IC_LS("stream", "events"),
              IC_LI("lost", (int64_t)lost));
  ic_rpc_stream_abort(s->call, IC_RPC_RESOURCE_EXHAUSTED, msg);
}

static bool same_filter(const ic_svc_event_filter_t *x, const ic_svc_event_filter_t *y) {
  return x->types == y->types &&
         !strcmp(x->model_id ? x->model_id : "", y->model_id ? y->model_id : "") &&
         !strcmp(x->tenant_id ? x->tenant_id : "", y->tenant_id ? y->tenant_id : "");
}

/* The filter group of a new events subscriber: that of a subscriber with the same filter, or a
 * new one. Compared exactly once here, so a pass compares group numbers only. Caller holds the
 * hub lock. */
static uint64_t filter_group(struct server_hub *h, const ic_svc_event_filter_t *f) {
  const sublist_t *l = &h->lists[STREAM_EVENTS];
  for (size_t i = 0; i < l->n; i++)
    if (same_filter(&l->items[i]->ef, f)) return l->items[i]->gid;
  return ++h->next_gid;
}

/* Tells the change log which filters are in use (one per group), so changes nobody's filter
 * takes are not even encoded. Caller holds the hub lock. */
static void publish_interest(struct server_hub *h) {
  const sublist_t *l = &h->lists[STREAM_EVENTS];
  const ic_svc_event_filter_t *f[9];
  size_t n = 0;
  for (size_t i = 0; i < l->n && n < 9; i++) /* in group order: a group's first member */
    if (i == 0 || l->items[i]->gid != l->items[i - 1]->gid) f[n++] = &l->items[i]->ef;
  ic_svc_changelog_set_interest(h->log, f, n); /* more than 8 groups: everything is kept */
}

static int seq_cmp(const void *pa, const void *pb) {
  const sub_t *a = *(sub_t *const *)pa, *b = *(sub_t *const *)pb;
  if (a->cur.seq != b->cur.seq) return a->cur.seq < b->cur.seq ? -1 : 1;
  return a < b ? -1 : a > b;
}

/* Splits the due subscribers (in group order) into runs of one group at one position; each run
 * costs one read of the log. A group's members are usually all caught up at the same position,
 * so a group is sorted only when they are not. Returns the number of runs (starts in h->runs). */
static size_t group_runs(struct server_hub *h, size_t nc) {
  size_t nruns = 0;
  for (size_t i = 0; i < nc;) {
    size_t j = i + 1;
    bool mixed = false;
    for (; j < nc && h->cand[j]->gid == h->cand[i]->gid; j++)
      mixed |= h->cand[j]->cur.seq != h->cand[i]->cur.seq;
    if (mixed) qsort(h->cand + i, j - i, sizeof *h->cand, seq_cmp);
    for (size_t k = i; k < j; k++)
      if (k == i || h->cand[k]->cur.seq != h->cand[k - 1]->cur.seq) h->runs[nruns++] = k;
    i = j;
  }
  return nruns;
}

/* One pass of the sender: every events subscriber that is not busy gets its next batch. Due
 * subscribers with the same filter and position (typically all that are caught up) share one
 * read of the log; the runs take turns at being first, so a shortage of send budget or queued
 * bytes is shared. Caller holds nothing. */
static int64_t sender_pass(struct server_hub *h) {
  sublist_t *l = &h->lists[STREAM_EVENTS];
  ic_svc_changelog_stats_t st;
  ic_svc_changelog_stats(h->log, &st);
  uint64_t tail = st.head - st.entries;
  if (h->log_gauge) ic_metric_set(h->log_gauge, (double)st.bytes);
  pthread_mutex_lock(&h->mu);
  if (h->ncand_cap < l->n) {
    sub_t **nc = realloc(h->cand, l->n * sizeof *nc);
    if (nc) h->cand = nc;
    size_t *nr = realloc(h->runs, l->n * sizeof *nr);
    if (nr) h->runs = nr;
    if (!nc || !nr) {
      pthread_mutex_unlock(&h->mu);
      return 0;
    }
    h->ncand_cap = l->n;
  }
  size_t n = l->n, nc = 0;
  for (size_t k = 0; k < n; k++) {
    sub_t *s = l->items[k];
    if (s->gone) continue;
    if (atomic_load(&s->busy)) {
      /* A reader that is not reading holds its batch; once the ring passed it, it cannot
       * catch up any more: end it now so its queued bytes are freed. */
      if (s->cur.seq < tail) drop_slow(l, s, tail - s->cur.seq);
      continue;
    }
    if (s->cur.seq != st.head) h->cand[nc++] = s;
  }
  size_t nruns = group_runs(h, nc), first = nruns ? h->rr++ % nruns : 0;
  /* The send budget: every message costs CPU on the threads that also ingest and answer
   * lookups, so all subscribers together get at most --stream-max-send-rate events/s; one
   * that cannot keep up within it is overtaken by the log and ended, ingest keeps its pace. */
  int64_t now = ic_clock_monotonic_ns();
  double burst = h->rate / 50 > BATCH_MSGS ? h->rate / 50 : BATCH_MSGS;
  h->tokens += h->rate * (double)(now - h->tokens_at) / 1e9;
  if (h->tokens > burst) h->tokens = burst;
  h->tokens_at = now;
  bool starved = false;
  for (size_t r = 0; r < nruns; r++) {
    size_t run = (first + r) % nruns, i = h->runs[run], j = run + 1 < nruns ? h->runs[run + 1] : nc;
    if (h->tokens < 1) {
      starved = true;
      break;
    }
    /* One read for the run, at most what the budget can send once; as many members as it
     * affords get it (starting at a rotating member, so a shortage is shared), the rest wait
     * for the next pass. A read that matched nothing moves every member on for free. */
    size_t max = h->tokens >= BATCH_MSGS ? BATCH_MSGS : (size_t)h->tokens;
    ic_buf_reset(&h->batch);
    size_t got = 0, members = j - i;
    uint64_t lost = 0;
    ic_svc_changelog_cursor_t cur = h->cand[i]->cur;
    int rc = ic_svc_changelog_read(h->log, &cur, BATCH_BYTES, max, &h->batch, h->lens, &got, &lost);
    size_t afford = got ? (size_t)(h->tokens / (double)got) : members, at = h->rr % members;
    if (afford < members) starved = true;
    for (size_t m = 0; m < members; m++) {
      sub_t *s = h->cand[i + (at + m) % members];
      if (rc == IC_ERANGE) {
        drop_slow(l, s, lost);
        continue;
      }
      if (rc != 0 || m >= afford) continue;
      if (got > 0 && atomic_load(&h->queued) >= h->max_queued) continue; /* next drain wakes us */
      s->cur.seq = cur.seq;
      if (got > 0) {
        send_batch(h, s, got);
        h->tokens -= (double)got;
      }
    }
  }
  /* Out of budget: the next pass waits until a batch's worth has accrued, so the passes over
   * every subscriber do not outnumber the batches the budget can pay for. */
  int64_t wait = 0;
  if (starved) {
    atomic_store(&h->pending, true);
    double need = (double)BATCH_MSGS - h->tokens;
    wait = need > 0 ? (int64_t)(need / h->rate * 1e9) : 0;
    if (wait > STARVED_MAX_WAIT_NS) wait = STARVED_MAX_WAIT_NS;
  }
  pthread_mutex_unlock(&h->mu);
  return wait;
}

static void sleep_ns(long ns) {
  struct timespec ts = {0, ns};
  nanosleep(&ts, NULL);
}

static void *sender_main(void *arg) {
  struct server_hub *h = arg;
  pthread_mutex_lock(&h->wmu);
  while (!h->stop) {
    if (!atomic_load(&h->pending)) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += 1; /* also re-checks stalled subscribers now and then */
      pthread_cond_timedwait(&h->wcv, &h->wmu, &ts);
    }
    if (h->stop) break;
    pthread_mutex_unlock(&h->wmu);
    atomic_store(&h->pending, false);
    int64_t starved_wait = sender_pass(h);
    size_t subs = atomic_load_explicit(&h->lists[STREAM_EVENTS].count, memory_order_relaxed);
    long pause = COALESCE_NS + (long)subs * COALESCE_PER_SUB_NS;
    if (pause > COALESCE_MAX_NS) pause = COALESCE_MAX_NS;
    sleep_ns(starved_wait > pause ? (long)starved_wait : pause);
    pthread_mutex_lock(&h->wmu);
  }
  pthread_mutex_unlock(&h->wmu);
  return NULL;
}

/* The index reports each change on the thread that made it: it is staged (encoded into the
 * thread's own buffer, no shared lock), and the index's flush at the end of its lock hold
 * publishes the batch under one change-log lock and wakes the sender once. */
void server_hub_on_change(void *ud, const ic_index_change_t *c) {
  struct server_hub *h = ud;
  if (!h || atomic_load_explicit(&h->lists[STREAM_EVENTS].count, memory_order_relaxed) == 0) return;
  ic_svc_changelog_stage(h->log, c);
}

void server_hub_on_change_flush(void *ud) {
  struct server_hub *h = ud;
  if (!h) return;
  size_t published = 0;
  ic_svc_changelog_flush(h->log, &published);
  if (published) wake_sender(h);
}

static void stream_drain(void *ud, ic_rpc_call_t *call) {
  struct server_hub *h = ud;
  sub_t *s = ic_rpc_call_data(call);
  if (!s) return;
  size_t b = s->inflight;
  s->inflight = 0;
  queued_sub(h, b);
  atomic_store(&s->busy, false);
  if (s->kind == STREAM_EVENTS) wake_sender(h);
}

static void stream_close(void *ud, ic_rpc_call_t *call) {
  struct server_hub *h = ud;
  sub_t *s = ic_rpc_call_data(call);
  if (!s) return;
  pthread_mutex_lock(&h->mu);
  sublist_remove(&h->lists[s->kind], s);
  if (atomic_load(&s->busy)) queued_sub(h, s->inflight);
  bool last = s->kind == STREAM_EVENTS && h->lists[STREAM_EVENTS].n == 0;
  if (s->kind == STREAM_EVENTS) publish_interest(h);
  if (last) ic_svc_changelog_release(h->log); /* nobody reads: the ring's memory goes back */
  pthread_mutex_unlock(&h->mu);
  sub_free(s);
}

/* Adds a parsed subscriber (*added = true) or frees it and ends the call with
 * RESOURCE_EXHAUSTED at the cap. */
static int add_sub(struct server_hub *h, sub_t *s, bool *added) {
  *added = false;
  sublist_t *l = &h->lists[s->kind];
  ic_rpc_call_t *call = s->call;
  pthread_mutex_lock(&h->mu);
  if (s->kind == STREAM_EVENTS) s->gid = filter_group(h, &s->ef);
  int rc = sublist_add(h, l, s);
  if (rc == 0 && s->kind == STREAM_EVENTS) {
    /* Interest before the cursor starts: every change made from then on is kept for it. */
    publish_interest(h);
    ic_svc_changelog_cursor_init(h->log, &s->cur, &s->ef);
  }
  pthread_mutex_unlock(&h->mu);
  *added = rc == 0;
  if (rc == 0) return IC_RPC_OK;
  sub_free(s);
  if (rc != IC_ERANGE) return IC_RPC_RESOURCE_EXHAUSTED;
  metric_add(l->rejected, 1);
  ic_log_warn("stream_subscriber_rejected", IC_LS("stream", STREAM_NAMES[l == &h->lists[1]]),
              IC_LI("limit", (int64_t)h->max_subs));
  ic_rpc_stream_finish(
      call, IC_RPC_RESOURCE_EXHAUSTED,
      "too many stream subscribers on this server (--stream-max-subscribers); retry later");
  return IC_RPC_OK;
}

static int events_start(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len) {
  struct server_hub *h = ud;
  sub_t *s = calloc(1, sizeof *s);
  if (!s) return IC_RPC_RESOURCE_EXHAUSTED;
  int rc = ic_svc_event_filter_parse(req, len, &s->ef);
  if (rc != IC_RPC_OK) {
    free(s);
    return rc;
  }
  s->call = call;
  s->kind = STREAM_EVENTS;
  ic_rpc_stream_set_limit(call, BATCH_MSGS); /* never reached: one batch at a time */
  bool added;
  return add_sub(h, s, &added);
}

/* StreamMetrics: a subscriber gets the whole sample set on subscribe and then every tick; one
 * that has not taken the previous set yet (busy) skips a tick, counted as dropped. */
static void send_samples(struct server_hub *h, sub_t *s, const ic_buf_t *data, const size_t *lens,
                         const char *const *names, const char *const *types, size_t n,
                         size_t *sel) {
  ic_buf_reset(&h->batch);
  size_t k = 0, off = 0, skipped = 0;
  for (size_t j = 0; j < n; off += lens[j], j++) {
    if (!ic_svc_metric_filter_match(&s->mf, names[j], types[j])) continue;
    if (atomic_load(&s->busy)) {
      skipped++;
      continue;
    }
    ic_buf_append(&h->batch, data->data + off, lens[j]);
    sel[k++] = lens[j];
  }
  metric_add(h->lists[STREAM_METRICS].dropped, (double)skipped);
  if (k == 0) return;
  size_t bytes = h->batch.len;
  s->inflight = bytes;
  queued_add(h, bytes);
  atomic_store(&s->busy, true);
  if (ic_rpc_stream_sendv(s->call, (const uint8_t *)h->batch.data, sel, k) < 0) {
    atomic_store(&s->busy, false);
    s->inflight = 0;
    queued_sub(h, bytes);
  }
}

typedef struct samples {
  ic_buf_t data;
  size_t *lens;
  char **names, **types;
  size_t n, cap;
} samples_t;

static void collect_sample(void *ud, const char *name, const char *type, const uint8_t *msg,
                           size_t len) {
  samples_t *ss = ud;
  if (ss->n == ss->cap) {
    size_t nc = ss->cap ? ss->cap * 2 : 64;
    size_t *nl = realloc(ss->lens, nc * sizeof *nl);
    if (nl) ss->lens = nl;
    char **nn = realloc(ss->names, nc * sizeof *nn);
    if (nn) ss->names = nn;
    char **nt = realloc(ss->types, nc * sizeof *nt);
    if (nt) ss->types = nt;
    if (!nl || !nn || !nt) return;
    ss->cap = nc;
  }
  char *a = strdup(name), *b = strdup(type);
  if (!a || !b || ic_buf_append(&ss->data, msg, len) != 0) {
    free(a), free(b);
    return;
  }
  ss->names[ss->n] = a;
  ss->types[ss->n] = b;
  ss->lens[ss->n++] = len;
}

static void samples_free(samples_t *ss) {
  for (size_t j = 0; j < ss->n; j++)
    free(ss->names[j]), free(ss->types[j]);
  free(ss->names), free(ss->types), free(ss->lens);
  ic_buf_free(&ss->data);
}

/* Samples are collected without the hub lock: collecting may refresh gauges from the index,
 * and the index calls server_hub_on_change with its own locks held. `only` = one new
 * subscriber (its first set) or NULL for every subscriber. */
static void tick(struct server_hub *h, sub_t *only) {
  if (!only && atomic_load(&h->lists[STREAM_METRICS].count) == 0) return;
  samples_t ss = {.data = IC_BUF_INIT};
  ic_svc_metrics_encode(h->ctx->metrics, only ? &only->mf : NULL, ic_clock_realtime_us(),
                        collect_sample, &ss);
  size_t *sel = malloc((ss.n ? ss.n : 1) * sizeof *sel);
  pthread_mutex_lock(&h->mu);
  sublist_t *l = &h->lists[STREAM_METRICS];
  for (size_t i = 0; sel && i < l->n; i++) {
    sub_t *s = l->items[i];
    if (!only || s == only)
      send_samples(h, s, &ss.data, ss.lens, (const char *const *)ss.names,
                   (const char *const *)ss.types, ss.n, sel);
  }
  pthread_mutex_unlock(&h->mu);
  free(sel);
  samples_free(&ss);
}

static int metrics_start(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len) {
  struct server_hub *h = ud;
  sub_t *s = calloc(1, sizeof *s);
  if (!s) return IC_RPC_RESOURCE_EXHAUSTED;
  int rc = ic_svc_metric_filter_parse(req, len, &s->mf);
  if (rc != IC_RPC_OK) {
    free(s);
    return rc;
  }
  s->call = call;
  s->kind = STREAM_METRICS;
  ic_rpc_stream_set_limit(call, 4096);
  bool added;
  rc = add_sub(h, s, &added);
  if (added) tick(h, s); /* first sample set right away */
  return rc;
}

/* Transport counters from lib/rpc; called by the maintenance thread, which stops before the
 * gRPC server is freed. */
void server_hub_publish_transport(struct server_hub *h) {
  if (!h || !h->ctx->grpc) return;
  ic_rpc_server_stats_t st;
  ic_rpc_server_stats(h->ctx->grpc, &st);
  if (h->open_streams) ic_metric_set(h->open_streams, (double)st.open_streams);
  if (h->streams_refused && st.streams_refused > h->refused_seen)
    ic_metric_add(h->streams_refused, (double)(st.streams_refused - h->refused_seen));
  h->refused_seen = st.streams_refused;
}

static void *ticker_main(void *arg) {
  struct server_hub *h = arg;
  pthread_mutex_lock(&h->wmu);
  while (!h->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)SERVER_METRICS_INTERVAL_MS * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&h->tcv, &h->wmu, &ts);
    if (h->stop) break;
    pthread_mutex_unlock(&h->wmu);
    tick(h, NULL);
    pthread_mutex_lock(&h->wmu);
  }
  pthread_mutex_unlock(&h->wmu);
  return NULL;
}

static ic_metric_t *child(ic_metric_family_t *f, int kind) {
  const char *lv[1] = {STREAM_NAMES[kind]};
  return f ? ic_metric_child(f, lv) : NULL;
}

struct server_hub *server_hub_new(server_ctx_t *ctx) {
  struct server_hub *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->ctx = ctx;
  const server_flags_t *f = &ctx->flags;
  h->max_subs = f->stream_max_subscribers > 0 ? (size_t)f->stream_max_subscribers : 0;
  h->max_queued =
      f->stream_max_queued_bytes > 0 ? (size_t)f->stream_max_queued_bytes : (size_t)BATCH_BYTES;
  h->log = ic_svc_changelog_new(f->stream_log_bytes > 0 ? (size_t)f->stream_log_bytes : 0);
  h->rate = f->stream_max_send_rate > 0 ? (double)f->stream_max_send_rate : 1e12;
  h->tokens_at = ic_clock_monotonic_ns();
  if (!h->log) {
    free(h);
    return NULL;
  }
  pthread_mutex_init(&h->mu, NULL);
  pthread_mutex_init(&h->wmu, NULL);
  pthread_cond_init(&h->wcv, NULL);
  pthread_cond_init(&h->tcv, NULL);
  const char *sl[1] = {"stream"};
  ic_metric_family_t *rejected = ic_metrics_counter(
      ctx->metrics, "inferencecache_stream_rejected_total",
      "Stream subscriptions refused because --stream-max-subscribers were open, by stream.", 1, sl);
  ic_metric_family_t *slow =
      ic_metrics_counter(ctx->metrics, "inferencecache_stream_slow_disconnects_total",
                         "StreamCacheEvents subscribers ended with RESOURCE_EXHAUSTED because the "
                         "change log overtook them.",
                         1, sl);
  ic_metric_family_t *queued = ic_metrics_gauge(
      ctx->metrics, "inferencecache_stream_queued_bytes",
      "Stream bytes handed to subscribers' send queues and not yet written to the transport.", 0,
      NULL);
  ic_metric_family_t *logb = ic_metrics_gauge(
      ctx->metrics, "inferencecache_stream_log_bytes",
      "Bytes of encoded changes held in the StreamCacheEvents change log.", 0, NULL);
  ic_metric_family_t *open = ic_metrics_gauge(ctx->metrics, "inferencecache_grpc_open_streams",
                                              "Streaming gRPC calls open on the server.", 0, NULL);
  ic_metric_family_t *refusedf = ic_metrics_counter(
      ctx->metrics, "inferencecache_grpc_streams_refused_total",
      "Streaming gRPC calls ended with RESOURCE_EXHAUSTED because --grpc-max-streams were open.", 0,
      NULL);
  h->open_streams = open ? ic_metric_plain(open) : NULL;
  h->streams_refused = refusedf ? ic_metric_plain(refusedf) : NULL;
  if (h->open_streams) ic_metric_set(h->open_streams, 0);
  if (h->streams_refused) ic_metric_add(h->streams_refused, 0);
  h->queued_gauge = queued ? ic_metric_plain(queued) : NULL;
  h->log_gauge = logb ? ic_metric_plain(logb) : NULL;
  for (int k = 0; k < 2; k++) {
    h->lists[k].gauge = child(ctx->m.stream_subscribers, k);
    h->lists[k].dropped = child(ctx->m.stream_dropped, k);
    h->lists[k].rejected = child(rejected, k);
    h->lists[k].slow = child(slow, k);
  }
  if (h->queued_gauge) ic_metric_set(h->queued_gauge, 0);
  if (h->log_gauge) ic_metric_set(h->log_gauge, 0);
  if (pthread_create(&h->sender, NULL, sender_main, h) == 0) h->sender_started = true;
  if (pthread_create(&h->ticker, NULL, ticker_main, h) == 0) h->ticker_started = true;
  return h;
}

/* Call after the gRPC server is shut down (no subscriber is left). */
void server_hub_free(struct server_hub *h) {
  if (!h) return;
  pthread_mutex_lock(&h->wmu);
  h->stop = true;
  pthread_cond_broadcast(&h->wcv);
  pthread_cond_broadcast(&h->tcv);
  pthread_mutex_unlock(&h->wmu);
  if (h->sender_started) pthread_join(h->sender, NULL);
  if (h->ticker_started) pthread_join(h->ticker, NULL);
  for (int k = 0; k < 2; k++) {
    for (size_t i = 0; i < h->lists[k].n; i++)
      sub_free(h->lists[k].items[i]);
    free(h->lists[k].items);
  }
  ic_svc_changelog_free(h->log);
  ic_buf_free(&h->batch);
  free(h->cand);
  free(h->runs);
  pthread_mutex_destroy(&h->mu);
  pthread_mutex_destroy(&h->wmu);
  pthread_cond_destroy(&h->wcv);
  pthread_cond_destroy(&h->tcv);
  free(h);
}

int server_hub_register(server_ctx_t *ctx) {
  static const ic_rpc_stream_handler_t ev = {
      .on_start = events_start, .on_close = stream_close, .on_drain = stream_drain};
  static const ic_rpc_stream_handler_t mx = {
      .on_start = metrics_start, .on_close = stream_close, .on_drain = stream_drain};
  int rc = ic_rpc_server_add_stream(ctx->grpc,
                                    "/inferencecache.v1alpha1.InferenceCache/StreamCacheEvents",
                                    IC_RPC_SERVER_STREAM, &ev, ctx->hub);
  if (rc) return rc;
  return ic_rpc_server_add_stream(ctx->grpc,
                                  "/inferencecache.v1alpha1.InferenceCache/StreamMetrics",
                                  IC_RPC_SERVER_STREAM, &mx, ctx->hub);
}
