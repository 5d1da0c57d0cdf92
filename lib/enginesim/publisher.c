/* KV-event publisher as vLLM runs it: ZMQ PUB frames [topic, seq 8-byte BE, payload] and a
 * ROUTER socket answering replay requests from a ring of recent messages ([id, "", start] in;
 * [id, "", seq, payload]... then [id, "", -1, ""] out). Used inline (republish mode) or from its
 * own thread fed over an inproc PAIR (simulator: the engine thread never blocks on sockets). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ic/enginesim.h"
#include "ic/err.h"

typedef struct ring_item {
  uint64_t seq;
  void *data;
  size_t len;
} ring_item_t;

struct ic_esim_pub {
  void *ctx;
  void *pub, *router;
  char *topic;
  ring_item_t *ring;
  size_t cap, n, head; /* head = oldest */
  uint64_t seq;
  atomic_uint_least64_t published;
  /* threaded mode */
  void *tx, *rx;
  pthread_t th;
  bool started;
};

static void ring_push(ic_esim_pub_t *p, uint64_t seq, const void *data, size_t len) {
  if (!p->cap) return;
  size_t idx;
  if (p->n == p->cap) {
    idx = p->head;
    free(p->ring[idx].data);
    p->head = (p->head + 1) % p->cap;
  } else {
    idx = (p->head + p->n) % p->cap;
    p->n++;
  }
  p->ring[idx].seq = seq;
  p->ring[idx].data = malloc(len ? len : 1);
  if (p->ring[idx].data) memcpy(p->ring[idx].data, data, len);
  p->ring[idx].len = p->ring[idx].data ? len : 0;
}

static void be8(uint64_t v, uint8_t out[8]) {
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(v >> (56 - 8 * i));
}

ic_esim_pub_t *ic_esim_pub_new(const char *bind, const char *replay_bind, const char *topic,
                               size_t ring, char *err, size_t errlen) {
  ic_esim_pub_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->ctx = zmq_ctx_new();
  p->topic = strdup(topic ? topic : "");
  p->cap = ring;
  p->ring = ring ? calloc(ring, sizeof *p->ring) : NULL;
  if (!p->ctx || !p->topic || (ring && !p->ring)) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  int hwm = 100000, linger = 0;
  p->pub = zmq_socket(p->ctx, ZMQ_PUB);
  zmq_setsockopt(p->pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(p->pub, ZMQ_LINGER, &linger, sizeof linger);
  if (zmq_bind(p->pub, bind) != 0) {
    snprintf(err, errlen, "bind %s: %s", bind, zmq_strerror(zmq_errno()));
    goto fail;
  }
  if (replay_bind && *replay_bind) {
    p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
    zmq_setsockopt(p->router, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(p->router, replay_bind) != 0) {
      snprintf(err, errlen, "bind %s: %s", replay_bind, zmq_strerror(zmq_errno()));
      goto fail;
    }
  }
  return p;
fail:
  ic_esim_pub_free(p);
  return NULL;
}

int ic_esim_pub_send(ic_esim_pub_t *p, const void *payload, size_t len, bool skip) {
  uint8_t s8[8];
  be8(p->seq, s8);
  ring_push(p, p->seq, payload, len);
  p->seq++;
  if (skip) return 0;
  size_t tl = strlen(p->topic);
  if (zmq_send(p->pub, p->topic, tl, ZMQ_SNDMORE) < 0 || zmq_send(p->pub, s8, 8, ZMQ_SNDMORE) < 0 ||
      zmq_send(p->pub, payload, len, 0) < 0)
    return IC_EIO;
  atomic_fetch_add(&p->published, 1);
  return 0;
}

/* One replay request: accepts [id, "", start] (REQ/DEALER with delimiter) and [id, start]. */
static void serve_one(ic_esim_pub_t *p) {
  zmq_msg_t parts[4];
  int np = 0, more = 1;
  while (more) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, p->router, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&m);
      break;
    }
    more = zmq_msg_more(&m);
    if (np < 4)
      parts[np++] = m;
    else
      zmq_msg_close(&m);
  }
  zmq_msg_t *id = np >= 2 ? &parts[0] : NULL;
  zmq_msg_t *start = np == 3 ? &parts[2] : np == 2 ? &parts[1] : NULL;
  if (id && start && zmq_msg_size(start) == 8) {
    const uint8_t *sb = zmq_msg_data(start);
    uint64_t from = 0;
    for (int i = 0; i < 8; i++)
      from = from << 8 | sb[i];
    bool delim = np == 3;
    for (size_t k = 0; k < p->n; k++) {
      ring_item_t *it = &p->ring[(p->head + k) % p->cap];
      if (it->seq < from) continue;
      uint8_t s8[8];
      be8(it->seq, s8);
      zmq_send(p->router, zmq_msg_data(id), zmq_msg_size(id), ZMQ_SNDMORE);
      if (delim) zmq_send(p->router, "", 0, ZMQ_SNDMORE);
      zmq_send(p->router, s8, 8, ZMQ_SNDMORE);
      zmq_send(p->router, it->data, it->len, 0);
    }
    uint8_t end[8];
    memset(end, 0xff, 8);
    zmq_send(p->router, zmq_msg_data(id), zmq_msg_size(id), ZMQ_SNDMORE);
    if (delim) zmq_send(p->router, "", 0, ZMQ_SNDMORE);
    zmq_send(p->router, end, 8, ZMQ_SNDMORE);
    zmq_send(p->router, "", 0, 0);
  }
  for (int i = 0; i < np; i++)
    zmq_msg_close(&parts[i]);
}

void ic_esim_pub_serve(ic_esim_pub_t *p, long timeout_ms) {
  if (!p->router) {
    zmq_poll(NULL, 0, timeout_ms);
    return;
  }
  zmq_pollitem_t it = {p->router, 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&it, 1, timeout_ms) > 0) serve_one(p);
}

/* Thread: frames from the PAIR are 'P' + payload (publish) or 'Q' (quit). */
static void *pub_thread(void *arg) {
  ic_esim_pub_t *p = arg;
  zmq_pollitem_t its[2] = {{p->rx, 0, ZMQ_POLLIN, 0}, {p->router, 0, ZMQ_POLLIN, 0}};
  int nit = p->router ? 2 : 1;
  for (;;) {
    if (zmq_poll(its, nit, -1) < 0) continue;
    if (nit == 2 && (its[1].revents & ZMQ_POLLIN)) serve_one(p);
    if (!(its[0].revents & ZMQ_POLLIN)) continue;
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, p->rx, ZMQ_DONTWAIT) >= 0) {
      const char *d = zmq_msg_data(&m);
      size_t len = zmq_msg_size(&m);
      if (len >= 1 && d[0] == 'Q') {
        zmq_msg_close(&m);
        return NULL;
      }
      if (len >= 1) ic_esim_pub_send(p, d + 1, len - 1, false);
    }
    zmq_msg_close(&m);
  }
}

int ic_esim_pub_start(ic_esim_pub_t *p) {
  char ep[64];
  snprintf(ep, sizeof ep, "inproc://esim-pub-%p", (void *)p);
  p->rx = zmq_socket(p->ctx, ZMQ_PAIR);
  p->tx = zmq_socket(p->ctx, ZMQ_PAIR);
  int hwm = 0, linger = 0; /* unbounded: the engine must never block nor drop */
  zmq_setsockopt(p->tx, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(p->rx, ZMQ_RCVHWM, &hwm, sizeof hwm);
  zmq_setsockopt(p->tx, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(p->rx, ZMQ_LINGER, &linger, sizeof linger);
  if (zmq_bind(p->rx, ep) != 0 || zmq_connect(p->tx, ep) != 0) return IC_EIO;
  if (pthread_create(&p->th, NULL, pub_thread, p) != 0) return IC_ENOMEM;
  p->started = true;
  return 0;
}

int ic_esim_pub_post(ic_esim_pub_t *p, const void *payload, size_t len) {
  zmq_msg_t m;
  if (zmq_msg_init_size(&m, len + 1) != 0) return IC_ENOMEM;
  char *d = zmq_msg_data(&m);
  d[0] = 'P';
  memcpy(d + 1, payload, len);
  if (zmq_msg_send(&m, p->tx, 0) < 0) {
    zmq_msg_close(&m);
    return IC_EIO;
  }
  return 0;
}

uint64_t ic_esim_pub_published(const ic_esim_pub_t *p) {
  return atomic_load(&((ic_esim_pub_t *)p)->published);
}

void ic_esim_pub_free(ic_esim_pub_t *p) {
  if (!p) return;
  if (p->started) {
    zmq_send(p->tx, "Q", 1, 0);
    pthread_join(p->th, NULL);
  }
  if (p->tx) zmq_close(p->tx);
  if (p->rx) zmq_close(p->rx);
  if (p->pub) zmq_close(p->pub);
  if (p->router) zmq_close(p->router);
  if (p->ctx) zmq_ctx_term(p->ctx);
  for (size_t i = 0; i < p->n; i++)
    free(p->ring[(p->head + i) % p->cap].data);
  free(p->ring);
  free(p->topic);
  free(p);
}
