/* kvevent-subscriber sender, one per server replica (target): drains that target's op queue into
 * ReportCacheState / PublishEvent calls in queue order, batching adds per --window (REF's fixed
 * ticker) and sending removals and clears at once. A failed call leaves its ops queued and is
 * retried with exponential backoff plus jitter; when the replica is reached again after an
 * outage the engine thread is asked to re-report what the engine still holds to it alone. Also
 * the target's connectivity watcher thread. */
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

static void count_rpc(sub_target_t *t, const char *method, int st) {
  const char *lv[] = {method, sub_code_name(st)};
  ic_metric_inc(ic_metric_child(t->c->m.rpcs, lv));
  ic_metric_inc(t->m_rpcs);
  if (st != 0) {
    ic_metric_inc(ic_metric_child(t->c->m.rpc_errors, lv));
    ic_metric_inc(t->m_errors);
  }
}

/* Evictions ride in ReportCacheState (with the window's adds) to this replica. */
static bool batching(const sub_target_t *t) {
  return t->c->batch_evictions && atomic_load(&t->evict_batch);
}

/* Learns from a ReportCacheState Ack whether the replica takes batched evictions. */
static void learn_ack(sub_target_t *t, const ic_buf_t *resp) {
  Inferencecache__V1alpha1__Ack *ack =
      inferencecache__v1alpha1__ack__unpack(NULL, resp->len, (const uint8_t *)resp->data);
  if (!ack) return;
  atomic_store(&t->evict_batch, ack->evicted_supported);
  inferencecache__v1alpha1__ack__free_unpacked(ack, NULL);
}

/* A run of adds (stores and downgrades) and, for replicas that said they apply
 * CacheStateUpdate.evicted, evictions (subq_peek_mixed) as one ReportCacheState: adds in
 * `prefixes`, evictions in `evicted` (applied after them). Other replicas get one PublishEvent
 * per eviction (see send_group). */
static int send_report(sub_target_t *t, const char *replica, const ic_kv_op_t *ops, size_t n) {
  sub_ctx_t *c = t->c;
  size_t nadd = 0;
  for (size_t i = 0; i < n; i++)
    nadd += ops[i].kind != IC_KV_OP_EVICT;
  Inferencecache__V1alpha1__PrefixEntry *ents = calloc(n, sizeof(*ents));
  Inferencecache__V1alpha1__PrefixEntry **ptrs = calloc(n, sizeof(*ptrs));
  uint8_t *hb = malloc(8 * n);
  int st = 8; /* RESOURCE_EXHAUSTED: retried */
  int64_t ts = 0;
  if (ents && ptrs && hb) {
    size_t ia = 0, ie = nadd; /* ptrs: the adds first, then the evictions, each in queue order */
    for (size_t i = 0; i < n; i++) {
      Inferencecache__V1alpha1__PrefixEntry e = INFERENCECACHE__V1ALPHA1__PREFIX_ENTRY__INIT;
      for (int k = 0; k < 8; k++)
        hb[8 * i + k] = (uint8_t)(ops[i].prefix_hash >> (56 - 8 * k));
      e.prefix_hash.data = hb + 8 * i;
      e.prefix_hash.len = 8;
      e.adapter_id = (char *)(ops[i].adapter ? ops[i].adapter : "");
      if (ops[i].kind != IC_KV_OP_EVICT) {
        e.token_count = ops[i].token_count;
        e.tier = (Inferencecache__V1alpha1__CacheTier)(ops[i].tier ? ops[i].tier : 1);
      }
      ents[i] = e;
      ptrs[ops[i].kind != IC_KV_OP_EVICT ? ia++ : ie++] = &ents[i];
      if (ops[i].ts_us > 0) ts = ops[i].ts_us; /* REF: the last positive batch time wins */
    }
    Inferencecache__V1alpha1__CacheStateUpdate u =
        INFERENCECACHE__V1ALPHA1__CACHE_STATE_UPDATE__INIT;
    u.replica_id = (char *)replica;
    u.model_id = (char *)c->model_id;
    u.tenant_id = (char *)c->tenant_id;
    u.hash_scheme = (char *)c->hash_scheme;
    u.timestamp_us = ts;
    u.n_prefixes = nadd;
    u.prefixes = nadd ? ptrs : NULL;
    u.n_evicted = n - nadd;
    u.evicted = n > nadd ? ptrs + nadd : NULL;
    size_t sz = inferencecache__v1alpha1__cache_state_update__get_packed_size(&u);
    uint8_t *buf = malloc(sz ? sz : 1);
    if (buf) {
      inferencecache__v1alpha1__cache_state_update__pack(&u, buf);
      ic_buf_t resp = IC_BUF_INIT;
      st = sub_grpc_call(t->rpc, M_REPORT, buf, sz, SUB_RPC_TIMEOUT_MS, &resp);
      if (st == 0) learn_ack(t, &resp);
      ic_buf_free(&resp);
      free(buf);
    }
  }
  free(ents);
  free(ptrs);
  free(hb);
  return st;
}

/* The full-state marker (docs/ha.md): an update without prefixes and stats, full_state set. */
static int send_marker(sub_target_t *t, const char *replica) {
  sub_ctx_t *c = t->c;
  Inferencecache__V1alpha1__CacheStateUpdate u = INFERENCECACHE__V1ALPHA1__CACHE_STATE_UPDATE__INIT;
  u.replica_id = (char *)replica;
  u.model_id = (char *)c->model_id;
  u.tenant_id = (char *)c->tenant_id;
  u.hash_scheme = (char *)c->hash_scheme;
  u.full_state = true;
  uint8_t buf[4096];
  size_t sz = inferencecache__v1alpha1__cache_state_update__get_packed_size(&u);
  if (sz > sizeof buf) return 3; /* identities this long were rejected long before */
  inferencecache__v1alpha1__cache_state_update__pack(&u, buf);
  ic_buf_t resp = IC_BUF_INIT;
  int st = sub_grpc_call(t->rpc, M_REPORT, buf, sz, SUB_RPC_TIMEOUT_MS, &resp);
  if (st == 0) learn_ack(t, &resp);
  ic_buf_free(&resp);
  if (st == 0) {
    ic_metric_inc(t->m_synced);
    ic_log_debug("full state sent", IC_LS("target", t->addr), IC_LS("replica_id", replica));
  }
  return st;
}

/* Sends one group (see subq_peek_group) to target t. Returns the gRPC status. */
static int send_group(sub_target_t *t, const ic_kv_op_t *ops, size_t n) {
  sub_ctx_t *c = t->c;
  bool counted = false; /* the concurrent path counts its calls one by one */
  const char *replica = c->replica_of_ep[ops[0].ep];
  ic_buf_t out = IC_BUF_INIT;
  int st;
  const char *method;
  bool mixed = false;
  for (size_t i = 0; i < n && !mixed; i++)
    mixed = ops[i].kind != ops[0].kind;
  if (ops[0].kind == SUB_OP_SYNCED) {
    method = "ReportCacheState";
    st = send_marker(t, replica);
  } else if (mixed || ops[0].kind == IC_KV_OP_ADD || ops[0].kind == IC_KV_OP_DOWNGRADE ||
             (ops[0].kind == IC_KV_OP_EVICT && batching(t))) {
    method = "ReportCacheState";
    st = send_report(t, replica, ops, n);
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
          st = sub_grpc_call(t->rpc, M_PUBLISH, reqs[0], lens[0], SUB_RPC_TIMEOUT_MS, NULL);
        } else {
          st = sub_grpc_call_many(t->rpc, M_PUBLISH, reqs, lens, n, SUB_RPC_TIMEOUT_MS, sts);
          for (size_t i = 0; i < n; i++)
            count_rpc(t, method, sts[i]);
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
  if (!counted) count_rpc(t, method, st);
  /* One WARN per failure streak, then at most one every 30 s: an outage must not flood logs. */
  int64_t now = ic_clock_monotonic_us();
  if (st != 0 && (!t->failing || now - t->last_log_us >= 30000000)) {
    t->last_log_us = now;
    bool again = retryable(st);
    if (ops[0].kind != IC_KV_OP_EVICT && ops[0].kind != IC_KV_OP_CLEAR)
      ic_log_warn(again ? "report send failed; will retry" : "report rejected; dropping",
                  IC_LS("code", sub_code_name(st)), IC_LI("prefixes", n), IC_LS("target", t->addr));
    else
      ic_log_warn(again ? "publish event failed; will retry" : "publish event rejected; dropping",
                  IC_LS("code", sub_code_name(st)),
                  IC_LS("type", ops[0].kind == IC_KV_OP_EVICT ? "PREFIX_EVICTED" : "ALL_CLEARED"),
                  IC_LI("events", n), IC_LS("target", t->addr));
  }
  t->failing = st != 0;
  return st;
}

static void observe_lag(sub_ctx_t *c, const ic_kv_op_t *ops, size_t n) {
  ic_metric_t *h = ic_metric_plain(c->m.lag);
  int64_t now = ic_clock_monotonic_ns();
  for (size_t i = 0; i < n; i++)
    if (ops[i].recv_ns) ic_metric_observe(h, (double)(now - ops[i].recv_ns) / 1e9);
}

static void update_gauges(sub_target_t *t) {
  ic_metric_set(t->m_depth, (double)t->q.live); /* the totals are summed at collection */
}

/* Sends queued groups until the queue is empty or a call fails (returns false). Caller holds
 * t->q.mu. */
static bool drain_locked(sub_target_t *t, ic_kv_op_t *buf) {
  sub_ctx_t *c = t->c;
  uint64_t last;
  size_t k;
  for (;;) {
    k = batching(t) ? subq_peek_mixed(&t->q, buf, SUB_MAX_ENTRIES_PER_CSU, &last, c->replica_of_ep)
                    : 0;
    if (!k) k = subq_peek_group(&t->q, buf, SUB_MAX_ENTRIES_PER_CSU, &last, c->replica_of_ep);
    if (!k) break;
    pthread_mutex_unlock(&t->q.mu);
    int st = send_group(t, buf, k);
    pthread_mutex_lock(&t->q.mu);
    if (st != 0 && retryable(st)) {
      sub_target_set_connected(t, false);
      /* A server never reached holds nothing of ours and everything is still queued: nothing
       * to re-report when it answers (adds dropped meanwhile set `lost` where they drop). */
      if (atomic_load(&t->ever_sent)) atomic_store(&t->lost, true);
      update_gauges(t);
      return false;
    }
    /* Sent, or rejected for good (a retry cannot help): either way it leaves the queue. */
    subq_commit(&t->q, last);
    if (st == 0) {
      atomic_store(&t->ever_sent, true);
      observe_lag(c, buf, k);
      if (!atomic_load(&t->connected)) sub_target_set_connected(t, true);
      if (atomic_exchange(&t->lost, false)) {
        /* Back after an outage: the server may have restarted empty. */
        atomic_store(&t->resync, 1);
        ic_log_info("server reachable again; re-reporting engine state", IC_LS("target", t->addr));
      }
    }
  }
  update_gauges(t);
  return true;
}

bool sub_sleep(sub_ctx_t *c, int64_t us, atomic_bool *flag) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t end_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + us * 1000;
  struct timespec abs = {(time_t)(end_ns / 1000000000LL), (long)(end_ns % 1000000000LL)};
  pthread_mutex_lock(&c->stop_mu);
  while (!atomic_load(flag))
    if (pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &abs) == ETIMEDOUT) break;
  bool stopped = atomic_load(flag);
  pthread_mutex_unlock(&c->stop_mu);
  return stopped;
}

bool sub_target_sleep(sub_target_t *t, int64_t us) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t end_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + us * 1000;
  struct timespec abs = {(time_t)(end_ns / 1000000000LL), (long)(end_ns % 1000000000LL)};
  pthread_mutex_lock(&t->stop_mu);
  while (!atomic_load(&t->stop) && !atomic_load(&t->kick))
    if (pthread_cond_timedwait(&t->stop_cv, &t->stop_mu, &abs) == ETIMEDOUT) break;
  bool stopped = atomic_load(&t->stop);
  pthread_mutex_unlock(&t->stop_mu);
  return stopped;
}

static int64_t jittered(int64_t us, unsigned *seed) {
  /* +-20 %, like gRPC's own reconnect jitter */
  double f = 0.8 + 0.4 * ((double)rand_r(seed) / RAND_MAX);
  return (int64_t)((double)us * f);
}

void *sub_sender_thread(void *arg) {
  sub_target_t *t = arg;
  sub_ctx_t *c = t->c;
  ic_kv_op_t *buf = malloc(SUB_MAX_ENTRIES_PER_CSU * sizeof(ic_kv_op_t));
  if (!buf) return NULL;
  unsigned seed = (unsigned)ic_clock_monotonic_ns();
  int64_t backoff = 100000;
  /* On the subscriber's grid: a target added later drains what it holds at once, then ticks
   * with the others. */
  int64_t next_tick = c->tick_origin_us + c->window_us;
  for (;;) {
    pthread_mutex_lock(&t->q.mu);
    for (;;) {
      if (atomic_load(&t->stop)) break;
      int64_t now = ic_clock_monotonic_us();
      bool tick = now >= next_tick;
      /* Clears and markers go at once; evictions too, unless they ride with the window's adds
       * to a replica that takes them batched (then they wait at most --window). */
      t->q.evicts_lazy = batching(t);
      size_t urgent = t->q.live_urgent - (batching(t) ? t->q.live_evicts : 0);
      size_t batch = t->q.live_adds + (batching(t) ? t->q.live_evicts : 0);
      /* Only a tick cuts (subq_t.cut_ns); an urgent op or a full batch drains everything. */
      t->q.cut_ns = 0;
      if (urgent || batch >= SUB_MAX_ENTRIES_PER_CSU) break;
      if (tick && t->q.live) {
        int64_t due = next_tick + (now - next_tick) / c->window_us * c->window_us;
        t->q.cut_ns = due * 1000;
        break;
      }
      if (tick)
        while (next_tick <= now)
          next_tick += c->window_us;
      struct timespec abs = {(time_t)(next_tick / 1000000), (long)(next_tick % 1000000) * 1000};
      pthread_cond_timedwait(&t->q.cv, &t->q.mu, &abs);
    }
    if (atomic_load(&t->stop)) {
      pthread_mutex_unlock(&t->q.mu);
      break;
    }
    int64_t now = ic_clock_monotonic_us();
    while (next_tick <= now)
      next_tick += c->window_us;
    bool ok = drain_locked(t, buf);
    t->q.cut_ns = 0;
    pthread_mutex_unlock(&t->q.mu);
    if (ok) {
      backoff = 100000;
      continue;
    }
    atomic_store(&t->kick, false);
    if (sub_target_sleep(t, jittered(backoff, &seed))) break;
    if (atomic_exchange(&t->kick, false)) backoff = 100000; /* the server is back: retry now */
    backoff *= 2;
    if (backoff > c->max_backoff_us) backoff = c->max_backoff_us;
  }
  free(buf);
  return NULL;
}

void sub_sender_drain(sub_target_t *t, int64_t deadline_us) {
  ic_kv_op_t *buf = malloc(SUB_MAX_ENTRIES_PER_CSU * sizeof(ic_kv_op_t));
  if (!buf) return;
  int64_t backoff = 100000;
  while (ic_clock_monotonic_us() < deadline_us) {
    pthread_mutex_lock(&t->q.mu);
    t->q.cut_ns = 0; /* everything goes */
    bool ok = drain_locked(t, buf);
    bool empty = t->q.live == 0;
    pthread_mutex_unlock(&t->q.mu);
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
  if (t->q.live)
    ic_log_warn("shutdown: undelivered updates dropped", IC_LI("ops", t->q.live),
                IC_LS("target", t->addr));
  free(buf);
}

/* Connectivity watcher of one target: notices the replica going away and coming back even when
 * no update is flowing (a restarted server must relearn this replica without waiting for new
 * traffic), and asks for the "full state sent" marker on its first connection. */
void *sub_watch_thread(void *arg) {
  sub_target_t *t = arg;
  sub_ctx_t *c = t->c;
  int st = sub_grpc_state(t->rpc, true);
  bool was_ready = false, ever_ready = false;
  while (!atomic_load(&t->stop)) {
    int ns = st;
    if (was_ready || st != SUB_GRPC_READY) ns = sub_grpc_wait_change(t->rpc, st, 200);
    if (ns == st && was_ready == (st == SUB_GRPC_READY)) continue;
    bool ready = ns == SUB_GRPC_READY;
    if (was_ready && !ready) {
      atomic_store(&t->lost, true);
      sub_target_set_connected(t, false);
      ic_log_warn("server connection lost", IC_LS("server", c->server), IC_LS("target", t->addr));
    } else if (!was_ready && ready) {
      sub_target_set_connected(t, true);
      /* End the sender's backoff sleep: queued updates go out now, not after up to
       * --max-backoff. */
      pthread_mutex_lock(&t->stop_mu);
      atomic_store(&t->kick, true);
      pthread_cond_broadcast(&t->stop_cv);
      pthread_mutex_unlock(&t->stop_mu);
      /* It may be another server build now: learn again from its next Ack. */
      atomic_store(&t->evict_batch, false);
      if (atomic_exchange(&t->lost, false)) {
        atomic_store(&t->resync, 1);
        ic_log_info("server reachable again; re-reporting engine state", IC_LS("server", c->server),
                    IC_LS("target", t->addr));
      } else if (!ever_ready) {
        /* Everything since start is in its queue already: only the marker follows it. */
        int zero = 0;
        atomic_compare_exchange_strong(&t->resync, &zero, 2);
      }
      ever_ready = true;
    }
    was_ready = ready;
    st = ns;
  }
  return NULL;
}
