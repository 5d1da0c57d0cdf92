/* kvevent-subscriber engine reader: one ZMQ SUB socket per --engine-endpoint (one per DP rank),
 * sequence tracking from the 8-byte seq frame (gaps, duplicates, engine restarts), gap repair
 * over the engine's ROUTER replay socket, decode + positional tracking, and the hand-off of the
 * resulting ops to the queue. Runs on one thread; owns the sockets and the trackers. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"
#include "sub.h"

#define MAX_FRAMES 8

typedef struct eng {
  sub_ctx_t *c;
  void *zctx;
  ic_kv_batch_t batch;
  ic_kv_ops_t ops;
} eng_t;

static void count_batch(sub_ctx_t *c, const char *result) {
  const char *lv[] = {result};
  ic_metric_inc(ic_metric_child(c->m.batches, lv));
}

static void push_ops(eng_t *e, size_t ep_idx) {
  sub_ctx_t *c = e->c;
  if (!e->ops.n) return;
  int64_t now = ic_clock_monotonic_ns();
  for (size_t i = 0; i < e->ops.n; i++) {
    e->ops.v[i].ep = (uint16_t)ep_idx;
    e->ops.v[i].recv_ns = now;
  }
  size_t dropped = subq_push(&c->q, e->ops.v, e->ops.n, c->replica_of_ep);
  if (dropped) {
    static const char *kinds[] = {"", "add", "downgrade", "evict", "clear"};
    /* per-kind totals live in the queue; mirror them into the counter family */
    pthread_mutex_lock(&c->q.mu);
    for (int k = 1; k <= 4; k++) {
      const char *lv[] = {kinds[k]};
      ic_metric_t *m = ic_metric_child(c->m.queue_dropped, lv);
      double cur = ic_metric_value(m);
      if ((double)c->q.dropped[k] > cur) ic_metric_add(m, (double)c->q.dropped[k] - cur);
    }
    pthread_mutex_unlock(&c->q.mu);
    /* at most one line per 10 s while the server stays away */
    static int64_t last_log;
    static uint64_t since_log;
    since_log += dropped;
    int64_t now_us = ic_clock_monotonic_us();
    if (!last_log || now_us - last_log >= 10000000) {
      ic_log_warn("update queue full; dropped oldest updates", IC_LI("dropped", since_log),
                  IC_LI("queue_max_bytes", c->queue_max_bytes));
      last_log = now_us;
      since_log = 0;
    }
  }
  e->ops.n = 0;
}

/* Re-reports one endpoint's positional state (after reconnect, or after another rank's clear
 * wiped a shared replica id). */
static void snapshot_ep(eng_t *e, size_t i) {
  sub_ctx_t *c = e->c;
  ic_kv_ops_t snap = {0};
  int n = ic_kv_tracker_snapshot(c->eps[i].tracker, &snap);
  if (n > 0) {
    ic_metric_add(ic_metric_plain(c->m.resync_entries), n);
    /* In chunks at the sender's pace: a re-report larger than the queue bound must not
     * overflow it (and drop its own beginning). */
    size_t chunk = c->q.max_ops / 4 ? c->q.max_ops / 4 : 1;
    int64_t now = ic_clock_monotonic_ns();
    for (size_t off = 0; off < snap.n && !atomic_load(&c->stop_engine); off += chunk) {
      size_t k = snap.n - off < chunk ? snap.n - off : chunk;
      subq_wait_room(&c->q, k, 5000000);
      for (size_t j = 0; j < k; j++) {
        snap.v[off + j].ep = (uint16_t)i;
        snap.v[off + j].recv_ns = now;
      }
      subq_push(&c->q, snap.v + off, k, c->replica_of_ep);
    }
  }
  ic_kv_ops_free(&snap);
}

static void set_replica(sub_ctx_t *c, size_t i, int64_t rank) {
  /* --dp-rank-suffix: identity "<replica-id>-dp<rank>". Strings live until exit (queued ops
   * refer to them by endpoint index, and a rank change is rare). */
  char *s = NULL;
  if (c->nowned >= sizeof(c->owned_names) / sizeof(*c->owned_names)) return;
  if (asprintf(&s, "%s-dp%" PRId64, c->replica_id, rank) < 0 || !s) return;
  c->owned_names[c->nowned++] = s;
  c->replica_of_ep[i] = s;
  c->eps[i].dp_rank = rank;
}

/* Decodes and applies one payload from endpoint i. */
static void handle_payload(eng_t *e, size_t i, const uint8_t *p, size_t len) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  int rc = ic_kv_decode(&e->batch, p, len);
  if (rc) {
    count_batch(c, "undecodable");
    ic_log_warn("dropping undecodable event batch", IC_LS("err", ic_strerror(rc)),
                IC_LS("endpoint", ep->endpoint), IC_LI("bytes", len));
    return;
  }
  ic_kv_batch_t *b = &e->batch;
  count_batch(c, "ok");
  for (int t = 0; t < IC_KV_EV_NTYPES; t++) {
    const char *lv[] = {ic_kv_ev_type_name((ic_kv_ev_type_t)t)};
    if (b->seen[t]) ic_metric_add(ic_metric_child(c->m.events_received, lv), b->seen[t]);
    if (b->malformed[t]) {
      ic_metric_add(ic_metric_child(c->m.events_received, lv), b->malformed[t]);
      ic_metric_add(ic_metric_child(c->m.events_malformed, lv), b->malformed[t]);
    }
  }
  uint32_t nmal = b->malformed[0] + b->malformed[1] + b->malformed[2] + b->malformed[3];
  if (nmal)
    ic_log_warn("skipping malformed events in batch", IC_LI("malformed", nmal),
                IC_LI("kept", b->nevents), IC_LS("endpoint", ep->endpoint));
  if (b->unknown_tags) {
    ic_metric_add(ic_metric_plain(c->m.unknown_tags), b->unknown_tags);
    const char *lv[] = {"unknown"};
    ic_metric_add(ic_metric_child(c->m.events_received, lv), b->unknown_tags);
  }
  if (c->dp_suffix && b->has_dp_rank && b->dp_rank != ep->dp_rank) set_replica(c, i, b->dp_rank);
  ic_kv_apply_cfg_t cfg = {.lora = c->lora, .l2_mode = c->l2_mode};
  ic_kv_apply_stats_t st;
  e->ops.n = 0;
  if (ic_kv_apply(ep->tracker, b, &cfg, &e->ops, &st)) {
    ic_log_error("out of memory applying event batch", IC_LS("endpoint", ep->endpoint));
    return;
  }
  for (int t = 1; t < IC_KV_EV_NTYPES; t++) {
    const char *lv[] = {ic_kv_ev_type_name((ic_kv_ev_type_t)t)};
    if (st.applied[t]) ic_metric_add(ic_metric_child(c->m.events_applied, lv), st.applied[t]);
  }
  if (st.lora_dropped) ic_metric_add(ic_metric_plain(c->m.lora_dropped), st.lora_dropped);
  if (st.no_entries) ic_metric_add(ic_metric_plain(c->m.no_entries), st.no_entries);
  if (st.other_group) ic_metric_add(ic_metric_plain(c->m.other_group), st.other_group);
  bool cleared = false;
  for (size_t k = 0; k < e->ops.n; k++)
    if (e->ops.v[k].kind == IC_KV_OP_CLEAR) cleared = true;
  push_ops(e, i);
  if (cleared) {
    /* ALL_CLEARED wipes the replica id server-side; ranks sharing the id must re-report. */
    for (size_t j = 0; j < c->neps; j++)
      if (j != i && c->replica_of_ep[j] == c->replica_of_ep[i]) snapshot_ep(e, j);
  }
  ic_metric_set(ic_metric_child(c->m.tracked, (const char *[]){ep->endpoint}),
                (double)ic_kv_tracker_size(ep->tracker));
}

static void close_dealer(sub_endpoint_t *ep) {
  if (ep->dealer) zmq_close(ep->dealer);
  ep->dealer = NULL;
}

/* Fetches [from, to] over the replay socket and applies them in order. Returns the number of
 * batches applied; *complete says whether every missing seq came back. `catchup`: the engine's
 * ring may no longer hold `from` (a late join); start at the oldest message it still has. */
static uint64_t replay(eng_t *e, size_t i, uint64_t from, uint64_t to, bool catchup,
                       bool *complete) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  *complete = false;
  if (!ep->dealer) {
    ep->dealer = zmq_socket(e->zctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(ep->dealer, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_connect(ep->dealer, ep->replay) != 0) {
      ic_log_warn("replay connect failed", IC_LS("replay_endpoint", ep->replay),
                  IC_LS("err", zmq_strerror(zmq_errno())));
      close_dealer(ep);
      return 0;
    }
  }
  uint8_t start[8];
  for (int k = 0; k < 8; k++)
    start[k] = (uint8_t)(from >> (56 - 8 * k));
  /* DEALER -> ROUTER: the empty delimiter makes the engine see [identity, "", start]. */
  if (zmq_send(ep->dealer, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
      zmq_send(ep->dealer, start, 8, ZMQ_DONTWAIT) < 0) {
    close_dealer(ep);
    return 0;
  }
  uint64_t applied = 0, expect = from;
  int64_t deadline = ic_clock_monotonic_us() + c->replay_timeout_us;
  bool ended = false;
  while (!ended) {
    int64_t left = deadline - ic_clock_monotonic_us();
    if (left <= 0) break;
    zmq_pollitem_t it = {ep->dealer, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, (long)(left / 1000) + 1) <= 0) continue;
    zmq_msg_t fr[MAX_FRAMES];
    int nf = 0, more = 1;
    while (more) {
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, ep->dealer, 0) < 0) {
        zmq_msg_close(&m);
        break;
      }
      more = zmq_msg_more(&m);
      if (nf < MAX_FRAMES)
        fr[nf++] = m;
      else
        zmq_msg_close(&m);
    }
    /* ["", seq, payload] (tolerate a missing delimiter: [seq, payload]) */
    int si = nf >= 3 ? nf - 2 : nf == 2 ? 0 : -1;
    if (si >= 0 && zmq_msg_size(&fr[si]) == 8) {
      const uint8_t *sb = zmq_msg_data(&fr[si]);
      uint64_t seq = 0;
      for (int k = 0; k < 8; k++)
        seq = seq << 8 | sb[k];
      if (seq == UINT64_MAX) {
        ended = true;
      } else if (seq >= expect && seq <= to) {
        if (catchup && applied == 0 && seq > expect) expect = seq;
        if (seq == expect) {
          handle_payload(e, i, zmq_msg_data(&fr[si + 1]), zmq_msg_size(&fr[si + 1]));
          applied++;
          expect = seq + 1;
        }
        /* a hole inside the replayed range: the ring no longer had it; we stop there */
      }
    }
    for (int k = 0; k < nf; k++)
      zmq_msg_close(&fr[k]);
  }
  if (!ended) close_dealer(ep); /* stale replies must not leak into the next replay */
  *complete = expect == to + 1;
  return applied;
}

/* Sequence bookkeeping for one received message, then the payload itself. */
static void handle_message(eng_t *e, size_t i, uint64_t seq, bool has_seq, const uint8_t *p,
                           size_t len) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  if (has_seq && ep->have_seq) {
    if (seq == ep->last_seq + 1) {
      /* in order */
    } else if (seq > ep->last_seq + 1) {
      uint64_t from = ep->last_seq + 1, to = seq - 1, missing = to - from + 1;
      ic_metric_inc(ic_metric_plain(c->m.gaps));
      ic_metric_add(ic_metric_plain(c->m.missing), (double)missing);
      if (ep->replay) {
        bool complete;
        uint64_t got = replay(e, i, from, to, false, &complete);
        ic_metric_add(ic_metric_plain(c->m.replayed), (double)got);
        const char *lv[] = {complete ? "ok" : got ? "partial" : "failed"};
        ic_metric_inc(ic_metric_child(c->m.replays, lv));
        if (complete)
          ic_log_info("sequence gap repaired by replay", IC_LS("endpoint", ep->endpoint),
                      IC_LI("from", from), IC_LI("to", to));
        else
          ic_log_warn("sequence gap not fully repaired", IC_LS("endpoint", ep->endpoint),
                      IC_LI("from", from), IC_LI("to", to), IC_LI("replayed", got));
      } else {
        ic_log_warn("sequence gap: engine events lost (no --replay-endpoint)",
                    IC_LS("endpoint", ep->endpoint), IC_LI("from", from), IC_LI("to", to));
      }
    } else if (seq == 0 || ep->last_seq - seq > 1000000) {
      /* The engine restarted (its seq starts at 0 again; a far jump back means we missed the
       * first messages): its cache is empty, our positional state is stale. */
      ic_metric_inc(ic_metric_plain(c->m.restarts));
      ic_log_warn("engine sequence restarted; clearing its blocks", IC_LS("endpoint", ep->endpoint),
                  IC_LI("last_seq", ep->last_seq));
      ic_kv_tracker_clear(ep->tracker);
      e->ops.n = 0;
      ic_kv_op_t op = {.kind = IC_KV_OP_CLEAR, .adapter = ""};
      ic_kv_ops_push(&e->ops, &op);
      push_ops(e, i);
    } else {
      ic_metric_inc(ic_metric_plain(c->m.dups));
      return; /* duplicate or stale: already applied */
    }
  }
  if (has_seq && !ep->have_seq && seq > 0 && ep->replay) {
    /* A late join (subscriber restarted, engine kept running): rebuild the positional state
     * from what the engine's replay ring still holds, so the blocks stored before we came up
     * are known as parents and re-reported. */
    bool complete;
    uint64_t got = replay(e, i, 0, seq - 1, true, &complete);
    ic_metric_add(ic_metric_plain(c->m.replayed), (double)got);
    const char *lv[] = {"catchup"};
    ic_metric_inc(ic_metric_child(c->m.replays, lv));
    ic_log_info("caught up from the engine's replay buffer", IC_LS("endpoint", ep->endpoint),
                IC_LI("first_seq", seq), IC_LI("replayed", got));
  }
  if (has_seq) {
    ep->have_seq = true;
    ep->last_seq = seq;
  }
  handle_payload(e, i, p, len);
}

/* Receives every message pending on endpoint i (bounded per round). */
static void drain_socket(eng_t *e, size_t i) {
  sub_endpoint_t *ep = &e->c->eps[i];
  for (int round = 0; round < 256; round++) {
    zmq_msg_t fr[MAX_FRAMES];
    int nf = 0, more = 1;
    bool got = false;
    while (more) {
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, ep->sub, got ? 0 : ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        break;
      }
      got = true;
      more = zmq_msg_more(&m);
      if (nf < MAX_FRAMES)
        fr[nf++] = m;
      else
        zmq_msg_close(&m); /* frames beyond 8 are not part of any engine protocol */
    }
    if (!got) return;
    if (nf > 0) {
      /* [topic, seq, payload]; REF takes the last frame as payload whatever the count. */
      bool has_seq = nf >= 3 && zmq_msg_size(&fr[nf - 2]) == 8;
      uint64_t seq = 0;
      if (has_seq) {
        const uint8_t *sb = zmq_msg_data(&fr[nf - 2]);
        for (int k = 0; k < 8; k++)
          seq = seq << 8 | sb[k];
      }
      handle_message(e, i, seq, has_seq, zmq_msg_data(&fr[nf - 1]), zmq_msg_size(&fr[nf - 1]));
    }
    for (int k = 0; k < nf; k++)
      zmq_msg_close(&fr[k]);
  }
}

void *sub_engine_thread(void *arg) {
  sub_ctx_t *c = arg;
  eng_t e = {.c = c};
  ic_kv_batch_init(&e.batch);
  e.zctx = zmq_ctx_new();
  zmq_pollitem_t items[SUB_MAX_ENDPOINTS];
  for (size_t i = 0; i < c->neps; i++) {
    sub_endpoint_t *ep = &c->eps[i];
    ep->sub = zmq_socket(e.zctx, ZMQ_SUB);
    int hwm = 100000, linger = 0;
    zmq_setsockopt(ep->sub, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(ep->sub, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(ep->sub, ZMQ_SUBSCRIBE, c->topic, strlen(c->topic));
    /* libzmq reconnects on its own (100 ms, doubling up to 5 s): one socket for the process
     * lifetime, so "subscribed" is logged once per endpoint (spec §3.7 C-port note). */
    int ivl_max = 5000;
    zmq_setsockopt(ep->sub, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof(ivl_max));
    if (zmq_connect(ep->sub, ep->endpoint) != 0) {
      ic_log_error("zmq dial failed", IC_LS("endpoint", ep->endpoint),
                   IC_LS("err", zmq_strerror(zmq_errno())));
    } else {
      ic_log_info("subscribed to engine KV events", IC_LS("endpoint", ep->endpoint),
                  IC_LS("topic", c->topic));
    }
    items[i] = (zmq_pollitem_t){ep->sub, 0, ZMQ_POLLIN, 0};
  }
  while (!atomic_load(&c->stop_engine)) {
    if (atomic_exchange(&c->resync, 0)) {
      ic_metric_inc(ic_metric_plain(c->m.resyncs));
      for (size_t i = 0; i < c->neps; i++)
        snapshot_ep(&e, i);
    }
    int n = zmq_poll(items, (int)c->neps, 100);
    if (n <= 0) continue;
    for (size_t i = 0; i < c->neps; i++)
      if (items[i].revents & ZMQ_POLLIN) drain_socket(&e, i);
  }
  for (size_t i = 0; i < c->neps; i++) {
    zmq_close(c->eps[i].sub);
    close_dealer(&c->eps[i]);
  }
  zmq_ctx_term(e.zctx);
  ic_kv_batch_free(&e.batch);
  ic_kv_ops_free(&e.ops);
  return NULL;
}
