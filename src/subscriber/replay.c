/* kvevent-subscriber replay client: asks an engine's ROUTER replay socket (vLLM's protocol: start
 * sequence in; [seq, payload]... then seq -1 out) for a range and hands each message, in order, to
 * a callback. Complete or says exactly what it could not get: see sub_replay() in sub.h. */
#include <string.h>
#include <zmq.h>

#include "ic/clock.h"
#include "ic/log.h"
#include "sub.h"

#define MAX_FRAMES 8
/* Rounds (requests) one replay may take; each round that makes no progress counts double. */
#define MAX_ROUNDS 64
/* The engine answers a request with everything from `start` at once; the pipe must hold a large
 * ring (ZeroMQ's default of 1,000 messages silently truncated catch-ups). The engine's own send
 * side may still drop past its HWM: holes are re-requested. */
#define REPLAY_RCVHWM 1000000
/* Silence this long in the middle of an answer means it was cut (see sub_replay). */
#define CUT_PAUSE_US 250000

static void close_dealer(sub_endpoint_t *ep) {
  if (ep->dealer) zmq_close(ep->dealer);
  ep->dealer = NULL;
}

void sub_replay_close(sub_endpoint_t *ep) { close_dealer(ep); }

static int request(void *zctx, sub_endpoint_t *ep, uint64_t from) {
  if (!ep->dealer) {
    ep->dealer = zmq_socket(zctx, ZMQ_DEALER);
    int linger = 0, hwm = REPLAY_RCVHWM;
    zmq_setsockopt(ep->dealer, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(ep->dealer, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    if (zmq_connect(ep->dealer, ep->replay) != 0) {
      ic_log_warn("replay connect failed", IC_LS("replay_endpoint", ep->replay),
                  IC_LS("err", zmq_strerror(zmq_errno())));
      close_dealer(ep);
      return -1;
    }
  }
  uint8_t start[8];
  for (int k = 0; k < 8; k++)
    start[k] = (uint8_t)(from >> (56 - 8 * k));
  /* DEALER -> ROUTER: the empty delimiter makes the engine see [identity, "", start]. A DEALER
   * with no connected peer yet queues the request (sent once the connection is up). */
  if (zmq_send(ep->dealer, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
      zmq_send(ep->dealer, start, 8, ZMQ_DONTWAIT) < 0) {
    close_dealer(ep);
    return -1;
  }
  return 0;
}

/* Receives one reply: 1 with *seq and the payload frame (caller closes *pl), 0 on timeout,
 * -1 for a reply of no known shape (skipped). */
static int receive(sub_endpoint_t *ep, int64_t timeout_us, uint64_t *seq, zmq_msg_t *pl) {
  zmq_pollitem_t it = {ep->dealer, 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&it, 1, (long)(timeout_us / 1000) + 1) <= 0) return 0;
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
  int rc = -1;
  if (si >= 0 && zmq_msg_size(&fr[si]) == 8) {
    const uint8_t *sb = zmq_msg_data(&fr[si]);
    uint64_t s = 0;
    for (int k = 0; k < 8; k++)
      s = s << 8 | sb[k];
    *seq = s;
    zmq_msg_init(pl);
    zmq_msg_move(pl, &fr[si + 1]);
    rc = 1;
  }
  for (int k = 0; k < nf; k++)
    zmq_msg_close(&fr[k]);
  return rc;
}

void sub_replay(void *zctx, sub_endpoint_t *ep, int64_t timeout_us, uint64_t from, uint64_t to,
                sub_replay_apply_fn apply, void *ud, sub_replay_out_t *out) {
  memset(out, 0, sizeof(*out));
  uint64_t expect = from;
  int budget = MAX_ROUNDS;
  while (expect <= to && budget > 0 && expect != IC_KV_SEQ_END) {
    if (request(zctx, ep, expect)) return;
    bool first = true, hole = false, ended = false, progress = false;
    for (;;) {
      uint64_t seq = 0;
      zmq_msg_t pl;
      /* An engine sends its whole answer at once: a pause once messages flowed means the rest
       * was dropped, so wait the full timeout only for the first reply. */
      int rc =
          receive(ep, progress && timeout_us > CUT_PAUSE_US ? CUT_PAUSE_US : timeout_us, &seq, &pl);
      if (rc == 0) break; /* silence: the engine is gone or never answered */
      if (rc < 0) continue;
      out->answered = true;
      if (seq == IC_KV_SEQ_END) {
        zmq_msg_close(&pl);
        ended = true;
        break;
      }
      if (seq < expect) { /* an overlap: already applied */
        zmq_msg_close(&pl);
        continue;
      }
      if (seq > expect) {
        if (!first) { /* a hole inside one answer: dropped in transit, ask again from there */
          zmq_msg_close(&pl);
          hole = true;
          break;
        }
        /* The answer starts after what was asked: the engine no longer holds [expect, seq). */
        uint64_t upto = seq - 1 < to ? seq - 1 : to;
        if (!out->lost) out->lost_from = expect;
        out->lost += upto - expect + 1;
        out->lost_to = upto;
        expect = upto + 1;
      }
      if (seq > to) { /* past the range: everything asked for has been seen */
        zmq_msg_close(&pl);
        break;
      }
      first = false;
      apply(ud, seq, zmq_msg_data(&pl), zmq_msg_size(&pl));
      zmq_msg_close(&pl);
      out->applied++;
      out->last = seq;
      expect = seq + 1;
      progress = true;
      if (expect > to) break;
    }
    /* The rest of an answer must not leak into the next request. */
    if (!ended || hole) close_dealer(ep);
    if (expect > to) break;
    /* Silence after some progress: the engine dropped the rest of its answer (the end marker
     * too) past its send high-water mark; ask again from there. Silence from the start: gone. */
    if (!ended && !hole && !progress) return; /* incomplete: out->complete stays false */
    if (ended && !hole && !progress) {
      /* The whole answer was the end marker: the engine holds nothing from `expect` on. */
      if (to != IC_KV_SEQ_END - 1) {
        if (!out->lost) out->lost_from = expect;
        out->lost += to - expect + 1;
        out->lost_to = to;
      }
      out->complete = to == IC_KV_SEQ_END - 1 && out->lost == 0;
      return;
    }
    if (ended && !hole && to == IC_KV_SEQ_END - 1) { /* open range: the engine's end reached */
      out->complete = out->lost == 0;
      return;
    }
    budget -= progress ? 1 : 2;
  }
  out->complete = expect > to && out->lost == 0;
}

int sub_replay_probe(void *zctx, sub_endpoint_t *ep, int64_t timeout_us, uint64_t seq,
                     uint64_t *digest) {
  if (request(zctx, ep, seq)) return -1;
  int result = -1;
  for (;;) {
    uint64_t s = 0;
    zmq_msg_t pl;
    int rc = receive(ep, timeout_us, &s, &pl);
    if (rc == 0) break;
    if (rc < 0) continue;
    if (s == IC_KV_SEQ_END || s > seq) {
      result = 0; /* the engine does not hold `seq` */
    } else if (s == seq) {
      *digest = ic_kv_seq_digest(zmq_msg_data(&pl), zmq_msg_size(&pl));
      result = 1;
    } else {
      zmq_msg_close(&pl);
      continue;
    }
    zmq_msg_close(&pl);
    break;
  }
  close_dealer(ep); /* the rest of the answer is not wanted */
  return result;
}
