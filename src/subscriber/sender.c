/* kvevent-subscriber sender: drains the op queue into ReportCacheState / PublishEvent calls in
 * queue order, batching adds per --window (REF's fixed ticker) and sending removals and clears
 * at once. A failed call leaves its ops queued and is retried with exponential backoff plus
 * jitter; when the server is reached again after an outage the engine thread is asked to
 * re-report what the engine still holds. Also the connectivity watcher thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/log.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"
#include "sub.h"

#define M_REPORT "/inferencecache.v1alpha1.InferenceCache/ReportCacheState"
#define M_PUBLISH "/inferencecache.v1alpha1.InferenceCache/PublishEvent"

const char *sub_code_name(int st) {
  static const char *names[] = {"OK",
                                "CANCELLED",
                                "UNKNOWN",
                                "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED",
                                "NOT_FOUND",
                                "ALREADY_EXISTS",
                                "PERMISSION_DENIED",
                                "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION",
                                "ABORTED",
                                "OUT_OF_RANGE",
                                "UNIMPLEMENTED",
                                "INTERNAL",
                                "UNAVAILABLE",
                                "DATA_LOSS",
                                "UNAUTHENTICATED"};
  if (st >= 0 && st <= 16) return names[st];
  return "TRANSPORT";
}

/* Statuses worth a retry: the server may come back or the deadline was transient; a refused
 * credential (PERMISSION_DENIED 7, UNAUTHENTICATED 16) may be fixed by a rotated token or an
 * operator's change, and dropping would lose the updates meanwhile. Anything else
 * (INVALID_ARGUMENT, UNIMPLEMENTED, ...) would fail forever and block the queue. */
static bool retryable(int st) {
  return st < 0 || st == 1 || st == 2 || st == 4 || st == 7 || st == 8 || st == 13 || st == 14 ||
         st == 16;
}

static void count_rpc(sub_ctx_t *c, const char *method, int st) {
  const char *lv[] = {method, sub_code_name(st)};
  ic_metric_inc(ic_metric_child(c->m.rpcs, lv));
  if (st != 0) ic_metric_inc(ic_metric_child(c->m.rpc_errors, lv));
}

static bool counted; /* send_group: the concurrent path counted its calls one by one */

/* Sends one group (see subq_peek_group). Returns the gRPC status. */
static int send_group(sub_ctx_t *c, const ic_kv_op_t *ops, size_t n) {
  const char *replica = c->replica_of_ep[ops[0].ep];
  ic_buf_t out = IC_BUF_INIT;
  int st;
  const char *method;
  if (ops[0].kind == IC_KV_OP_ADD || ops[0].kind == IC_KV_OP_DOWNGRADE) {
    method = "ReportCacheState";
    Inferencecache__V1alpha1__PrefixEntry *ents = calloc(n, sizeof(*ents));
    Inferencecache__V1alpha1__PrefixEntry **ptrs = calloc(n, sizeof(*ptrs));
    uint8_t *hb = malloc(8 * n);
    if (!ents || !ptrs || !hb) {
      free(ents);
      free(ptrs);
      free(hb);
      return 8; /* RESOURCE_EXHAUSTED: retried */
    }
    int64_t ts = 0;
    for (size_t i = 0; i < n; i++) {
      Inferencecache__V1alpha1__PrefixEntry e = INFERENCECACHE__V1ALPHA1__PREFIX_ENTRY__INIT;
      for (int k = 0; k < 8; k++)
        hb[8 * i + k] = (uint8_t)(ops[i].prefix_hash >> (56 - 8 * k));
      e.prefix_hash.data = hb + 8 * i;
      e.prefix_hash.len = 8;
      e.token_count = ops[i].token_count;
      e.tier = (Inferencecache__V1alpha1__CacheTier)(ops[i].tier ? ops[i].tier : 1);
      e.adapter_id = (char *)(ops[i].adapter ? ops[i].adapter : "");
      ents[i] = e;
      ptrs[i] = &ents[i];
      if (ops[i].ts_us > 0) ts = ops[i].ts_us; /* REF: the last positive batch time wins */
    }
    Inferencecache__V1alpha1__CacheStateUpdate u =
        INFERENCECACHE__V1ALPHA1__CACHE_STATE_UPDATE__INIT;
    u.replica_id = (char *)replica;
    u.model_id = (char *)c->model_id;
    u.tenant_id = (char *)c->tenant_id;
    u.hash_scheme = (char *)c->hash_scheme;
    u.timestamp_us = ts;
    u.n_prefixes = n;
    u.prefixes = ptrs;
    size_t sz = inferencecache__v1alpha1__cache_state_update__get_packed_size(&u);
    if (ic_buf_reserve(&out, sz)) {
      st = 8;
    } else {
      inferencecache__v1alpha1__cache_state_update__pack(&u, (uint8_t *)out.data);
      st = sub_grpc_call(c->rpc, M_REPORT, (const uint8_t *)out.data, sz, SUB_RPC_TIMEOUT_MS, NULL);
    }
    free(ents);
    free(ptrs);
    free(hb);
  } else {
    method = "PublishEvent";
    /* n evictions (sent concurrently) or one clear. Every event is packed into `out`. */
    size_t *offs = calloc(n + 1, sizeof(size_t));
    const uint8_t **reqs = calloc(n, sizeof(*reqs));
    size_t *lens = calloc(n, sizeof(size_t));
    int *sts = calloc(n, sizeof(int));
    st = 8;
    if (offs && reqs && lens && sts) {
      bool oom = false;
      for (size_t i = 0; i < n && !oom; i++) {
        uint8_t hb[8];
        Inferencecache__V1alpha1__CacheEvent ev = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__INIT;
        ev.replica_id = (char *)replica;
        ev.model_id = (char *)c->model_id;
        ev.tenant_id = (char *)c->tenant_id;
        ev.timestamp_us = ops[i].ts_us;
        if (ops[i].kind == IC_KV_OP_EVICT) {
          ev.type = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__TYPE__PREFIX_EVICTED;
          for (int k = 0; k < 8; k++)
            hb[k] = (uint8_t)(ops[i].prefix_hash >> (56 - 8 * k));
          ev.prefix_hash.data = hb;
          ev.prefix_hash.len = 8;
          ev.adapter_id = (char *)(ops[i].adapter ? ops[i].adapter : "");
        } else {
          ev.type = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__TYPE__ALL_CLEARED;
        }
        size_t sz = inferencecache__v1alpha1__cache_event__get_packed_size(&ev);
        if (ic_buf_reserve(&out, sz)) {
          oom = true;
          break;
        }
        inferencecache__v1alpha1__cache_event__pack(&ev, (uint8_t *)out.data + out.len);
        offs[i] = out.len;
        lens[i] = sz;
        out.len += sz;
      }
      if (!oom) {
        for (size_t i = 0; i < n; i++)
          reqs[i] = (const uint8_t *)out.data + offs[i];
        if (n == 1) {
          st = sub_grpc_call(c->rpc, M_PUBLISH, reqs[0], lens[0], SUB_RPC_TIMEOUT_MS, NULL);
        } else {
          st = sub_grpc_call_many(c->rpc, M_PUBLISH, reqs, lens, n, SUB_RPC_TIMEOUT_MS, sts);
          for (size_t i = 0; i < n; i++)
            count_rpc(c, method, sts[i]);
          counted = true;
        }
      }
    }
    free(offs);
    free(reqs);
    free(lens);
    free(sts);
  }
  ic_buf_free(&out);
  if (!counted) count_rpc(c, method, st);
  counted = false;
  /* One WARN per failure streak, then at most one every 30 s: an outage must not flood logs. */
  static int64_t last_log_us;
  static bool failing;
  int64_t now = ic_clock_monotonic_us();
  if (st != 0 && (!failing || now - last_log_us >= 30000000)) {
    last_log_us = now;
    bool again = retryable(st);
    if (ops[0].kind == IC_KV_OP_ADD || ops[0].kind == IC_KV_OP_DOWNGRADE)
      ic_log_warn(again ? "report send failed; will retry" : "report rejected; dropping",
                  IC_LS("code", sub_code_name(st)), IC_LI("prefixes", n));
    else
      ic_log_warn(again ? "publish event failed; will retry" : "publish event rejected; dropping",
                  IC_LS("code", sub_code_name(st)),
                  IC_LS("type", ops[0].kind == IC_KV_OP_EVICT ? "PREFIX_EVICTED" : "ALL_CLEARED"),
                  IC_LI("events", n));
  }
  failing = st != 0;
  return st;
}

static void observe_lag(sub_ctx_t *c, const ic_kv_op_t *ops, size_t n) {
  ic_metric_t *h = ic_metric_plain(c->m.lag);
  int64_t now = ic_clock_monotonic_ns();
  for (size_t i = 0; i < n; i++)
    if (ops[i].recv_ns) ic_metric_observe(h, (double)(now - ops[i].recv_ns) / 1e9);
}

static void set_connected(sub_ctx_t *c, bool up) {
  atomic_store(&c->connected, up);
  ic_metric_set(ic_metric_plain(c->m.connected), up ? 1 : 0);
}

static void update_gauges(sub_ctx_t *c) {
  ic_metric_set(ic_metric_plain(c->m.queue_depth), (double)c->q.live);
  ic_metric_set(ic_metric_plain(c->m.queue_bytes), (double)subq_bytes(&c->q));
}

/* Sends queued groups until the queue is empty, a call fails (returns false) or, when
 * `only_urgent_or_full` is set, only a partial add batch remains. Caller holds q.mu. */
static bool drain_locked(sub_ctx_t *c, ic_kv_op_t *buf) {
  uint64_t last;
  size_t k;
  while ((k = subq_peek_group(&c->q, buf, SUB_MAX_ENTRIES_PER_CSU, &last, c->replica_of_ep))) {
    pthread_mutex_unlock(&c->q.mu);
    int st = send_group(c, buf, k);
    pthread_mutex_lock(&c->q.mu);
    if (st != 0 && retryable(st)) {
      set_connected(c, false);
      /* A server never reached holds nothing of ours and everything is still queued: nothing
       * to re-report when it answers (adds dropped meanwhile set `lost` where they drop). */
      if (atomic_load(&c->ever_sent)) atomic_store(&c->lost, true);
      update_gauges(c);
      return false;
    }
    /* Sent, or rejected for good (a retry cannot help): either way it leaves the queue. */
    subq_commit(&c->q, last);
    if (st == 0) {
      atomic_store(&c->ever_sent, true);
      observe_lag(c, buf, k);
      if (!atomic_load(&c->connected)) set_connected(c, true);
      if (atomic_exchange(&c->lost, false)) {
        /* Back after an outage: the server may have restarted empty. */
        atomic_store(&c->resync, 1);
        ic_log_info("server reachable again; re-reporting engine state");
      }
    }
  }
  update_gauges(c);
  return true;
}

bool sub_sleep(sub_ctx_t *c, int64_t us, atomic_bool *flag) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t end_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + us * 1000;
  struct timespec abs = {(time_t)(end_ns / 1000000000LL), (long)(end_ns % 1000000000LL)};
  pthread_mutex_lock(&c->stop_mu);
  while (!atomic_load(flag)) {
    if (flag == &c->stop_sender && atomic_load(&c->kick)) break;
    if (pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &abs) == ETIMEDOUT) break;
  }
  bool stopped = atomic_load(flag);
  pthread_mutex_unlock(&c->stop_mu);
  return stopped;
}

static int64_t jittered(int64_t us, unsigned *seed) {
  /* +-20 %, like gRPC's own reconnect jitter */
  double f = 0.8 + 0.4 * ((double)rand_r(seed) / RAND_MAX);
  return (int64_t)((double)us * f);
}

void *sub_sender_thread(void *arg) {
  sub_ctx_t *c = arg;
  ic_kv_op_t *buf = malloc(SUB_MAX_ENTRIES_PER_CSU * sizeof(ic_kv_op_t));
  if (!buf) return NULL;
  unsigned seed = (unsigned)ic_clock_monotonic_ns();
  int64_t backoff = 100000;
  int64_t next_tick = ic_clock_monotonic_us() + c->window_us;
  for (;;) {
    pthread_mutex_lock(&c->q.mu);
    for (;;) {
      if (atomic_load(&c->stop_sender)) break;
      int64_t now = ic_clock_monotonic_us();
      bool tick = now >= next_tick;
      if (c->q.live_urgent || c->q.live_adds >= SUB_MAX_ENTRIES_PER_CSU || (tick && c->q.live))
        break;
      if (tick)
        while (next_tick <= now)
          next_tick += c->window_us;
      struct timespec abs = {(time_t)(next_tick / 1000000), (long)(next_tick % 1000000) * 1000};
      pthread_cond_timedwait(&c->q.cv, &c->q.mu, &abs);
    }
    if (atomic_load(&c->stop_sender)) {
      pthread_mutex_unlock(&c->q.mu);
      break;
    }
    int64_t now = ic_clock_monotonic_us();
    while (next_tick <= now)
      next_tick += c->window_us;
    bool ok = drain_locked(c, buf);
    pthread_mutex_unlock(&c->q.mu);
    if (ok) {
      backoff = 100000;
      continue;
    }
    atomic_store(&c->kick, false);
    if (sub_sleep(c, jittered(backoff, &seed), &c->stop_sender)) break;
    if (atomic_exchange(&c->kick, false)) backoff = 100000; /* the server is back: retry now */
    backoff *= 2;
    if (backoff > c->max_backoff_us) backoff = c->max_backoff_us;
  }
  free(buf);
  return NULL;
}

void sub_sender_drain(sub_ctx_t *c, int64_t deadline_us) {
  ic_kv_op_t *buf = malloc(SUB_MAX_ENTRIES_PER_CSU * sizeof(ic_kv_op_t));
  if (!buf) return;
  int64_t backoff = 100000;
  while (ic_clock_monotonic_us() < deadline_us) {
    pthread_mutex_lock(&c->q.mu);
    bool ok = drain_locked(c, buf);
    bool empty = c->q.live == 0;
    pthread_mutex_unlock(&c->q.mu);
    if (ok && empty) break;
    int64_t left = deadline_us - ic_clock_monotonic_us();
    if (left <= 0) break;
    struct timespec ts = {0, 0};
    int64_t s = backoff < left ? backoff : left;
    ts.tv_sec = (time_t)(s / 1000000);
    ts.tv_nsec = (long)(s % 1000000) * 1000;
    nanosleep(&ts, NULL);
    backoff *= 2;
  }
  if (c->q.live) ic_log_warn("shutdown: undelivered updates dropped", IC_LI("ops", c->q.live));
  free(buf);
}

/* Connectivity watcher: notices the server going away and coming back even when no update is
 * flowing (a restarted server must relearn this replica without waiting for new traffic). */
void *sub_watch_thread(void *arg) {
  sub_ctx_t *c = arg;
  int st = sub_grpc_state(c->rpc, true);
  bool was_ready = st == SUB_GRPC_READY;
  if (was_ready) set_connected(c, true);
  while (!atomic_load(&c->stop_stats)) {
    int ns = sub_grpc_wait_change(c->rpc, st, 200);
    if (ns == st) continue;
    bool ready = ns == SUB_GRPC_READY;
    if (was_ready && !ready) {
      atomic_store(&c->lost, true);
      set_connected(c, false);
      ic_log_warn("server connection lost", IC_LS("server", c->server));
    } else if (!was_ready && ready) {
      set_connected(c, true);
      /* End the sender's backoff sleep: queued updates go out now, not after up to
       * --max-backoff. */
      pthread_mutex_lock(&c->stop_mu);
      atomic_store(&c->kick, true);
      pthread_cond_broadcast(&c->stop_cv);
      pthread_mutex_unlock(&c->stop_mu);
      if (atomic_exchange(&c->lost, false)) {
        atomic_store(&c->resync, 1);
        ic_log_info("server reachable again; re-reporting engine state",
                    IC_LS("server", c->server));
      }
    }
    was_ready = ready;
    st = ns;
  }
  return NULL;
}
