/* kvevent-subscriber engine reader: one ZMQ SUB socket per --engine-endpoint (one per DP rank),
 * sequence continuity from the 8-byte seq frame (gaps, duplicates, engine restarts), the engine
 * connection watched through the SUB socket's monitor (restart checks, --engine-down-grace), gap
 * repair and catch-up over the engine's replay socket, decode + positional tracking, and the
 * hand-off of the resulting ops to the queue. Runs on one thread; owns the sockets and trackers. */
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
  bool paced; /* replaying: wait for queue room instead of dropping the oldest adds */
  size_t replay_ep;
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
  /* A replay can hold far more than the queue: it flows at the sender's pace, unless the sender
   * is stuck (server away): then the rest of the replay overflows like live events. */
  if (e->paced && !subq_wait_room(&c->q, e->ops.n, 5000000)) e->paced = false;
  size_t dropped = subq_push(&c->q, e->ops.v, e->ops.n, c->replica_of_ep);
  if (dropped) {
    /* Before the server was ever reached a failed send does not mark it lost (sender.c): the
     * dropped adds still need the re-report when it answers. */
    if (!atomic_load(&c->ever_sent)) atomic_store(&c->lost, true);
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

/* ---- resynchronisation ------------------------------------------------------------------- */

static bool should_log(int64_t *last_us) {
  int64_t now = ic_clock_monotonic_us();
  if (*last_us && now - *last_us < 10000000) return false;
  *last_us = now;
  return true;
}

/* Withdraws everything endpoint i advertised (ALL_CLEARED for its replica, siblings sharing the
 * replica id re-reported) and forgets its sequence: what follows is learned from scratch. */
static void reset_ep(eng_t *e, size_t i, const char *reason) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  ic_metric_inc(ic_metric_child(c->m.engine_resyncs, (const char *[]){reason}));
  ic_kv_tracker_clear(ep->tracker);
  ic_kv_seq_reset(ep->seq);
  e->ops.n = 0;
  ic_kv_op_t op = {.kind = IC_KV_OP_CLEAR, .adapter = ""};
  ic_kv_ops_push(&e->ops, &op);
  push_ops(e, i);
  for (size_t j = 0; j < c->neps; j++)
    if (j != i && c->replica_of_ep[j] == c->replica_of_ep[i]) snapshot_ep(e, j);
  ic_metric_set(ic_metric_child(c->m.tracked, (const char *[]){ep->endpoint}), 0);
}

static void apply_one(eng_t *e, size_t i, uint64_t seq, const uint8_t *p, size_t len) {
  ic_kv_seq_applied(e->c->eps[i].seq, seq, ic_kv_seq_digest(p, len));
  handle_payload(e, i, p, len);
}

static void replay_apply(void *ud, uint64_t seq, const uint8_t *p, size_t len) {
  eng_t *e = ud;
  apply_one(e, e->replay_ep, seq, p, len);
}

static void run_replay(eng_t *e, size_t i, uint64_t from, uint64_t to, sub_replay_out_t *r) {
  sub_ctx_t *c = e->c;
  e->paced = true;
  e->replay_ep = i;
  sub_replay(e->zctx, &c->eps[i], c->replay_timeout_us, from, to, replay_apply, e, r);
  e->paced = false;
  ic_metric_add(ic_metric_plain(c->m.replayed), (double)r->applied);
  if (r->lost) ic_metric_add(ic_metric_plain(c->m.unrecovered), (double)r->lost);
}

/* Learns endpoint i from the start of what its engine still holds, up to `to` (IC_KV_SEQ_END - 1:
 * everything). The replica was cleared first, so a ring that no longer starts at 0 means missed
 * hints for older blocks, never wrong ones. */
static void catch_up(eng_t *e, size_t i, uint64_t to) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  sub_replay_out_t r;
  run_replay(e, i, 0, to, &r);
  ic_metric_inc(ic_metric_child(c->m.replays, (const char *[]){"catchup"}));
  if (!r.answered)
    ic_log_warn("engine replay socket did not answer; learning from live events only",
                IC_LS("endpoint", ep->endpoint), IC_LS("replay_endpoint", ep->replay));
  else if (r.lost)
    ic_log_warn("catch-up incomplete: the engine no longer holds its oldest messages; blocks "
                "stored before them are unknown until stored again",
                IC_LS("endpoint", ep->endpoint), IC_LI("lost_from", r.lost_from),
                IC_LI("lost_to", r.lost_to), IC_LI("replayed", r.applied));
  else if (!r.complete)
    ic_log_warn("catch-up incomplete: the engine stopped answering",
                IC_LS("endpoint", ep->endpoint), IC_LI("replayed", r.applied));
  ic_log_info("caught up from the engine's replay buffer", IC_LS("endpoint", ep->endpoint),
              IC_LI("replayed", r.applied), IC_LB("complete", r.complete));
}

/* The engine restarted (or cannot be proven not to have): forget it, re-learn it. */
static void engine_restarted(eng_t *e, size_t i, const char *why, uint64_t upto) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  ic_metric_inc(ic_metric_plain(c->m.restarts));
  ep->last_restart_us = ic_clock_monotonic_us();
  ic_log_warn("engine restarted; clearing its blocks and re-learning it",
              IC_LS("endpoint", ep->endpoint), IC_LS("evidence", why),
              IC_LI("last_seq", ep->seq->have ? (int64_t)ep->seq->last : -1));
  reset_ep(e, i, "restart");
  if (ep->replay && upto != IC_KV_SEQ_END) catch_up(e, i, upto);
}

/* The connection to endpoint i dropped and came back: the same engine still holds the last message
 * applied, byte for byte; a restarted one numbers from 0 again and holds other payloads. Without a
 * replay socket nothing can be proven, and a dropped connection to a local engine is a restart in
 * practice. */
static void verify_continuity(eng_t *e, size_t i, const char *signal) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  ep->verify = false;
  if (!ep->seq->have) return; /* nothing learned yet: the next message starts afresh */
  if (!ep->replay) {
    engine_restarted(e, i, signal, IC_KV_SEQ_END);
    return;
  }
  uint64_t digest = 0;
  int rc = sub_replay_probe(e->zctx, ep, c->replay_timeout_us, ep->seq->last, &digest);
  if (rc == 1 && ic_kv_seq_match(ep->seq, ep->seq->last, digest) == 1) {
    ic_log_info("engine connection back; same engine, sequence continues",
                IC_LS("endpoint", ep->endpoint), IC_LI("last_seq", ep->seq->last));
    return;
  }
  engine_restarted(e, i,
                   rc == 1   ? "replayed message differs from the one applied under its number"
                   : rc == 0 ? "engine no longer holds the last message applied"
                             : "replay socket did not answer after the connection came back",
                   IC_KV_SEQ_END - 1);
}

/* Repairs [from, to] before the message numbered to + 1 is applied. */
static void repair_gap(eng_t *e, size_t i, uint64_t from, uint64_t to) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  ic_metric_inc(ic_metric_plain(c->m.gaps));
  ic_metric_add(ic_metric_plain(c->m.missing), (double)(to - from + 1));
  if (!ep->replay) {
    /* Lost for good: a lost removal would leave a wrong hint until the TTL, so start over. */
    ic_metric_add(ic_metric_plain(c->m.unrecovered), (double)(to - from + 1));
    ic_log_warn("sequence gap: engine events lost (no --replay-endpoint); resynchronising the "
                "replica",
                IC_LS("endpoint", ep->endpoint), IC_LI("from", from), IC_LI("to", to));
    reset_ep(e, i, "gap_unrecoverable");
    return;
  }
  sub_replay_out_t r;
  run_replay(e, i, from, to, &r);
  const char *lv[] = {r.complete ? "ok" : r.applied ? "partial" : "failed"};
  ic_metric_inc(ic_metric_child(c->m.replays, lv));
  if (r.complete) {
    ic_log_info("sequence gap repaired by replay", IC_LS("endpoint", ep->endpoint),
                IC_LI("from", from), IC_LI("to", to));
    return;
  }
  if (!r.lost)
    ic_metric_add(ic_metric_plain(c->m.unrecovered), (double)(to - from + 1 - r.applied));
  ic_log_warn("sequence gap not repairable by replay; resynchronising the replica",
              IC_LS("endpoint", ep->endpoint), IC_LI("from", from), IC_LI("to", to),
              IC_LI("replayed", r.applied), IC_LI("engine_no_longer_holds", r.lost));
  /* Start clean from what follows the last hole: anything before it may have been removed inside
   * it, so re-learning older messages would bring wrong entries back. */
  uint64_t from_clean = r.lost ? r.lost_to + 1 : IC_KV_SEQ_END;
  reset_ep(e, i, "gap_unrecoverable");
  if (from_clean <= to) {
    sub_replay_out_t r2;
    run_replay(e, i, from_clean, to, &r2);
  }
}

/* Sequence bookkeeping for one received message, then the payload itself. */
static void handle_message(eng_t *e, size_t i, uint64_t seq, bool has_seq, const uint8_t *p,
                           size_t len) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  if (!has_seq) { /* no seq frame (REF's two-frame form): nothing to track */
    handle_payload(e, i, p, len);
    return;
  }
  if (ep->verify) verify_continuity(e, i, "engine connection dropped");
  uint64_t digest = ic_kv_seq_digest(p, len);
  switch (ic_kv_seq_check(ep->seq, seq, digest)) {
  case IC_KV_SEQ_INVALID: {
    static int64_t last_log;
    ic_metric_inc(ic_metric_plain(c->m.seq_invalid));
    if (should_log(&last_log))
      ic_log_warn("implausible sequence number; applying the batch without adopting its number",
                  IC_LS("endpoint", ep->endpoint), IC_LI("seq", (int64_t)seq),
                  IC_LI("last_seq", ep->seq->have ? (int64_t)ep->seq->last : -1));
    handle_payload(e, i, p, len);
    return;
  }
  case IC_KV_SEQ_DUP: ic_metric_inc(ic_metric_plain(c->m.dups)); return;
  case IC_KV_SEQ_RESTART:
    engine_restarted(e, i, "sequence went backwards", seq ? seq - 1 : IC_KV_SEQ_END);
    break;
  case IC_KV_SEQ_FIRST:
    if (seq > 0 && ep->replay) {
      /* A late join (subscriber restarted, engine kept running): what the server holds for this
       * replica may be stale, so start clean and rebuild from the engine's replay ring. */
      reset_ep(e, i, "late_join");
      catch_up(e, i, seq - 1);
    }
    break;
  case IC_KV_SEQ_GAP: repair_gap(e, i, ep->seq->last + 1, seq - 1); break;
  case IC_KV_SEQ_NEXT: break;
  }
  /* A catch-up may already have applied up to (or past) this number. */
  if (ic_kv_seq_check(ep->seq, seq, digest) == IC_KV_SEQ_DUP) return;
  apply_one(e, i, seq, p, len);
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

/* ---- engine connection ----------------------------------------------------------------------- */

static void set_up(sub_ctx_t *c, sub_endpoint_t *ep, bool up) {
  ep->up = up;
  ic_metric_set(ic_metric_child(c->m.engine_connected, (const char *[]){ep->endpoint}), up);
}

/* One event from endpoint i's SUB socket monitor: [u16 event, u32 value] then the address. */
static void handle_monitor(eng_t *e, size_t i) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  for (;;) {
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, ep->mon, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&ev);
      return;
    }
    uint16_t id = 0;
    if (zmq_msg_size(&ev) >= 2) memcpy(&id, zmq_msg_data(&ev), 2);
    bool more = zmq_msg_more(&ev);
    zmq_msg_close(&ev);
    if (more) {
      zmq_msg_init(&addr);
      zmq_msg_recv(&addr, ep->mon, 0);
      zmq_msg_close(&addr);
    }
    if (id == ZMQ_EVENT_DISCONNECTED && ep->up) {
      /* What the old connection delivered belongs to the old engine: apply it first. */
      drain_socket(e, i);
      set_up(c, ep, false);
      ep->down_since_us = ic_clock_monotonic_us();
      ep->verify = ep->seq->have;
      ic_log_warn("engine connection lost", IC_LS("endpoint", ep->endpoint));
    } else if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && !ep->up) {
      bool was_down = ep->down_since_us != 0;
      set_up(c, ep, true);
      ep->down_since_us = 0;
      ep->down_cleared = false;
      if (was_down) ic_log_info("engine connection back", IC_LS("endpoint", ep->endpoint));
      if (ep->verify) {
        verify_continuity(e, i, "engine connection dropped");
      } else if (!ep->seq->have && ep->replay) {
        /* First contact (or back after the grace period): learn what the engine already holds
         * now, even if it publishes nothing more for a while. */
        reset_ep(e, i, "late_join");
        catch_up(e, i, IC_KV_SEQ_END - 1);
      }
    }
  }
}

/* An engine gone for longer than --engine-down-grace holds nothing any more as far as routing
 * should know: stop advertising it (the reference keeps advertising until the TTL). */
static void check_down(eng_t *e, size_t i, int64_t now_us) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  if (ep->up || !ep->down_since_us || ep->down_cleared || c->down_grace_us <= 0) return;
  if (now_us - ep->down_since_us < c->down_grace_us) return;
  ep->down_cleared = true;
  ep->verify = false; /* forgotten: whatever comes back is learned from scratch */
  ic_metric_inc(ic_metric_plain(c->m.down_clears));
  ic_log_warn("engine unreachable past the grace period; withdrawing its blocks",
              IC_LS("endpoint", ep->endpoint),
              IC_LI("down_ms", (now_us - ep->down_since_us) / 1000));
  reset_ep(e, i, "engine_down");
}

static void open_endpoint(eng_t *e, size_t i) {
  sub_ctx_t *c = e->c;
  sub_endpoint_t *ep = &c->eps[i];
  ep->sub = zmq_socket(e->zctx, ZMQ_SUB);
  int hwm = 100000, linger = 0;
  zmq_setsockopt(ep->sub, ZMQ_RCVHWM, &hwm, sizeof(hwm));
  zmq_setsockopt(ep->sub, ZMQ_LINGER, &linger, sizeof(linger));
  zmq_setsockopt(ep->sub, ZMQ_SUBSCRIBE, c->topic, strlen(c->topic));
  /* libzmq reconnects on its own (100 ms, doubling up to 1 s): one socket for the process
   * lifetime, so "subscribed" is logged once per endpoint. A short cap
   * keeps a restarted engine's blind window small; it is a local connection. */
  int ivl_max = 1000;
  zmq_setsockopt(ep->sub, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof(ivl_max));
  /* ZMTP heartbeats: a hung engine (process stopped, kernel still accepting) drops the
   * connection too, and counts as down. */
  int hb_ivl = 2000, hb_timeout = 6000;
  zmq_setsockopt(ep->sub, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof(hb_ivl));
  zmq_setsockopt(ep->sub, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof(hb_timeout));
  char mon[64];
  snprintf(mon, sizeof(mon), "inproc://engine-monitor-%zu", i);
  if (zmq_socket_monitor(ep->sub, mon, ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ==
      0) {
    ep->mon = zmq_socket(e->zctx, ZMQ_PAIR);
    zmq_setsockopt(ep->mon, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_connect(ep->mon, mon) != 0) {
      zmq_close(ep->mon);
      ep->mon = NULL;
    }
  }
  if (!ep->mon)
    ic_log_warn("engine connection monitor unavailable; restarts are detected from sequence "
                "numbers only",
                IC_LS("endpoint", ep->endpoint), IC_LS("err", zmq_strerror(zmq_errno())));
  set_up(c, ep, false);
  if (zmq_connect(ep->sub, ep->endpoint) != 0) {
    ic_log_error("zmq dial failed", IC_LS("endpoint", ep->endpoint),
                 IC_LS("err", zmq_strerror(zmq_errno())));
  } else {
    ic_log_info("subscribed to engine KV events", IC_LS("endpoint", ep->endpoint),
                IC_LS("topic", c->topic));
  }
}

void *sub_engine_thread(void *arg) {
  sub_ctx_t *c = arg;
  eng_t e = {.c = c};
  ic_kv_batch_init(&e.batch);
  e.zctx = zmq_ctx_new();
  zmq_pollitem_t items[2 * SUB_MAX_ENDPOINTS];
  for (size_t i = 0; i < c->neps; i++) {
    open_endpoint(&e, i);
    items[i] = (zmq_pollitem_t){c->eps[i].sub, 0, ZMQ_POLLIN, 0};
    items[c->neps + i] = c->eps[i].mon ? (zmq_pollitem_t){c->eps[i].mon, 0, ZMQ_POLLIN, 0}
                                       : (zmq_pollitem_t){NULL, -1, 0, 0};
  }
  int nitems = (int)(2 * c->neps);
  while (!atomic_load(&c->stop_engine)) {
    if (atomic_exchange(&c->resync, 0)) {
      ic_metric_inc(ic_metric_plain(c->m.resyncs));
      for (size_t i = 0; i < c->neps; i++)
        snapshot_ep(&e, i);
    }
    int64_t now = ic_clock_monotonic_us();
    if (atomic_exchange(&c->engine_restarted, false))
      for (size_t i = 0; i < c->neps; i++)
        /* a restart detected since the previous scrape was this one */
        if (!c->eps[i].last_restart_us ||
            now - c->eps[i].last_restart_us > c->stats_interval_us + 5000000)
          engine_restarted(&e, i, "engine /metrics process_start_time_seconds changed",
                           IC_KV_SEQ_END - 1);
    for (size_t i = 0; i < c->neps; i++)
      check_down(&e, i, now);
    int n = zmq_poll(items, nitems, 100);
    if (n <= 0) continue;
    for (size_t i = 0; i < c->neps; i++) {
      if (items[c->neps + i].revents & ZMQ_POLLIN) handle_monitor(&e, i);
      if (items[i].revents & ZMQ_POLLIN) drain_socket(&e, i);
    }
  }
  for (size_t i = 0; i < c->neps; i++) {
    if (c->eps[i].mon) {
      zmq_socket_monitor(c->eps[i].sub, NULL, 0);
      zmq_close(c->eps[i].mon);
    }
    zmq_close(c->eps[i].sub);
    sub_replay_close(&c->eps[i]);
  }
  zmq_ctx_term(e.zctx);
  ic_kv_batch_free(&e.batch);
  ic_kv_ops_free(&e.ops);
  return NULL;
}
