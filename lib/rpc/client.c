/* gRPC client over the core C API: channels with per-method registered call handles, blocking
 * unary calls (one pluck queue per call), a client-streaming writer, a server-streaming reader
 * and an asynchronous unary pipeline that keeps many calls in flight from one thread (the load
 * generator's engine). Every call owns its op storage until its completion is consumed. */
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "rpc_internal.h"

#define MAX_CH_METHODS 32

struct ic_rpc_channel {
  grpc_channel *ch;
  pthread_mutex_t mu;
  struct {
    char *path;
    void *handle;
  } methods[MAX_CH_METHODS];
  size_t nmethods;
};

/* A PEM bundle larger than this is not a CA bundle (the system's is ~200 KiB). */
#define MAX_PEM_BYTES (4u << 20)

ic_rpc_channel_t *ic_rpc_channel_new(const char *target, const ic_rpc_channel_opts_t *opts) {
  ic_rpc_channel_opts_t o = opts ? *opts : (ic_rpc_channel_opts_t){0};
  ic_rpc_channel_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  ic_rpc_global_ref();
  pthread_mutex_init(&c->mu, NULL);
  grpc_channel_credentials *creds;
  ic_buf_t roots = IC_BUF_INIT;
  if (o.tls_ca_file && !o.tls_ca_pem) {
    if (ic_buf_read_file(o.tls_ca_file, MAX_PEM_BYTES, &roots, NULL) != 0 || !roots.len) {
      pthread_mutex_destroy(&c->mu);
      ic_rpc_global_unref();
      free(c);
      return NULL;
    }
    o.tls_ca_pem = roots.data;
  }
  bool tls = o.tls_ca_pem != NULL;
  if (tls) {
    grpc_ssl_pem_key_cert_pair pair = {.private_key = o.tls_key_pem, .cert_chain = o.tls_cert_pem};
    bool mtls = o.tls_cert_pem && o.tls_key_pem;
    creds = grpc_ssl_credentials_create(o.tls_ca_pem, mtls ? &pair : NULL, NULL, NULL);
  } else {
    creds = grpc_insecure_credentials_create();
  }
  ic_buf_free(&roots);
  grpc_arg args[9];
  size_t n = 0;
#define INT_ARG(k, v)                                                                              \
  (args[n].type = GRPC_ARG_INTEGER, args[n].key = (char *)(k), args[n++].value.integer = (v))
#define STR_ARG(k, v)                                                                              \
  (args[n].type = GRPC_ARG_STRING, args[n].key = (char *)(k), args[n++].value.string = (char *)(v))
  INT_ARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
          o.max_recv_bytes > 0 ? o.max_recv_bytes : 4 * 1024 * 1024);
  INT_ARG(GRPC_ARG_ENABLE_RETRIES, 0);
  if (o.max_reconnect_backoff_ms > 0) {
    INT_ARG(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    INT_ARG(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    INT_ARG(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, o.max_reconnect_backoff_ms);
    INT_ARG(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  }
  if (o.authority) STR_ARG(GRPC_ARG_DEFAULT_AUTHORITY, o.authority);
  const char *tls_name = o.tls_server_name ? o.tls_server_name : o.authority;
  if (tls && tls_name) STR_ARG(GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, tls_name);
#undef INT_ARG
#undef STR_ARG
  grpc_channel_args ca = {n, args};
  char t[512];
  ic_rpc_listen_addr(target, t, sizeof t);
  if (strncmp(t, "[::]:", 5) == 0) snprintf(t, sizeof t, "127.0.0.1:%s", target + 1);
  c->ch = grpc_channel_create(t, creds, &ca);
  grpc_channel_credentials_release(creds);
  return c;
}

void ic_rpc_channel_free(ic_rpc_channel_t *c) {
  if (!c) return;
  grpc_channel_destroy(c->ch);
  for (size_t i = 0; i < c->nmethods; i++) free(c->methods[i].path);
  pthread_mutex_destroy(&c->mu);
  ic_rpc_global_unref();
  free(c);
}

int ic_rpc_channel_wait_ready(ic_rpc_channel_t *c, int timeout_ms) {
  int64_t end = ic_clock_monotonic_ns() + (int64_t)timeout_ms * 1000000;
  int st = ic_rpc_channel_state(c, true);
  while (st != IC_RPC_CH_READY) {
    int64_t left_ms = (end - ic_clock_monotonic_ns()) / 1000000;
    if (left_ms <= 0) return IC_ETIMEOUT;
    st = ic_rpc_channel_wait_change(c, st, (int)left_ms);
  }
  return 0;
}

static void *method_handle(ic_rpc_channel_t *c, const char *path) {
  void *h = NULL;
  pthread_mutex_lock(&c->mu);
  for (size_t i = 0; i < c->nmethods; i++)
    if (strcmp(c->methods[i].path, path) == 0) {
      h = c->methods[i].handle;
      break;
    }
  if (!h) {
    h = grpc_channel_register_call(c->ch, path, NULL, NULL);
    if (c->nmethods < MAX_CH_METHODS) {
      c->methods[c->nmethods].path = strdup(path);
      c->methods[c->nmethods++].handle = h;
    }
  }
  pthread_mutex_unlock(&c->mu);
  return h;
}

static gpr_timespec deadline_of(int timeout_ms) {
  if (timeout_ms <= 0) return gpr_inf_future(GPR_CLOCK_REALTIME);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

static grpc_call *new_call(ic_rpc_channel_t *c, const char *method, grpc_completion_queue *cq, int timeout_ms) {
  return grpc_channel_create_registered_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                             method_handle(c, method), deadline_of(timeout_ms), NULL);
}

static void drain_destroy_cq(grpc_completion_queue *cq, bool pluck) {
  grpc_completion_queue_shutdown(cq);
  for (;;) {
    grpc_event e = pluck ? grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                         : grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (e.type == GRPC_QUEUE_SHUTDOWN) break;
  }
  grpc_completion_queue_destroy(cq);
}

int ic_rpc_channel_state(ic_rpc_channel_t *c, bool try_connect) {
  return (int)grpc_channel_check_connectivity_state(c->ch, try_connect ? 1 : 0);
}

int ic_rpc_channel_wait_change(ic_rpc_channel_t *c, int last, int timeout_ms) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  int tag;
  grpc_channel_watch_connectivity_state(c->ch, (grpc_connectivity_state)last,
                                        deadline_of(timeout_ms), cq, &tag);
  grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  drain_destroy_cq(cq, true);
  return ic_rpc_channel_state(c, true);
}

static char *slice_str(grpc_slice s) {
  size_t n = GRPC_SLICE_LENGTH(s);
  if (n == 0) return NULL;
  char *m = malloc(n + 1);
  if (m) memcpy(m, GRPC_SLICE_START_PTR(s), n), m[n] = '\0';
  return m;
}

static int append_bb(grpc_byte_buffer *bb, ic_buf_t *out) {
  if (!bb) return 0;
  ic_buf_t scratch = IC_BUF_INIT;
  const uint8_t *d;
  size_t n;
  int rc = ic_rpc_bb_read(bb, &scratch, &d, &n);
  if (rc == 0 && out) rc = ic_buf_append(out, d, n);
  ic_buf_free(&scratch);
  return rc;
}

/* One unary call's op storage (request, response, metadata, status), owned until the call's
 * completion is consumed. Shared by ic_rpc_unary, ic_rpc_unary_all and the pipeline. */
typedef struct unary_ops {
  grpc_call *call;
  grpc_byte_buffer *sbb, *rbb;
  grpc_metadata_array imd, tmd;
  grpc_status_code st;
  grpc_slice details;
  grpc_metadata *md; /* request metadata (copied slices); nmd entries */
  size_t nmd;
} unary_ops_t;

/* Starts `call` as one whole unary exchange, completing on its queue with `tag`. On failure
 * (no call, no memory, batch refused) the storage is released and false returned. */
static bool unary_start(unary_ops_t *u, grpc_call *call, const uint8_t *req, size_t len,
                        const ic_rpc_md_t *md, size_t nmd, void *tag) {
  memset(u, 0, sizeof *u);
  u->call = call;
  u->st = GRPC_STATUS_UNKNOWN;
  u->details = grpc_empty_slice();
  grpc_metadata_array_init(&u->imd);
  grpc_metadata_array_init(&u->tmd);
  if (!call) return false;
  if (nmd && !(u->md = calloc(nmd, sizeof *u->md))) return false;
  for (; u->nmd < nmd; u->nmd++) {
    u->md[u->nmd].key = grpc_slice_from_copied_string(md[u->nmd].key);
    u->md[u->nmd].value = grpc_slice_from_copied_buffer(md[u->nmd].value, md[u->nmd].value_len);
  }
  u->sbb = ic_rpc_bb_from(req ? req : (const uint8_t *)"", len);
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = u->nmd;
  ops[0].data.send_initial_metadata.metadata = u->md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = u->sbb;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->imd;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &u->rbb;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &u->tmd;
  ops[5].data.recv_status_on_client.status = &u->st;
  ops[5].data.recv_status_on_client.status_details = &u->details;
  return grpc_call_start_batch(call, ops, 6, tag, NULL) == GRPC_CALL_OK;
}

static void unary_release(unary_ops_t *u) {
  if (u->call) grpc_call_unref(u->call);
  u->call = NULL;
  if (u->sbb) grpc_byte_buffer_destroy(u->sbb);
  if (u->rbb) grpc_byte_buffer_destroy(u->rbb);
  u->sbb = u->rbb = NULL;
  grpc_metadata_array_destroy(&u->imd);
  grpc_metadata_array_destroy(&u->tmd);
  grpc_slice_unref(u->details);
  u->details = grpc_empty_slice();
  for (size_t i = 0; i < u->nmd; i++) {
    grpc_slice_unref(u->md[i].key);
    grpc_slice_unref(u->md[i].value);
  }
  free(u->md);
  u->md = NULL;
  u->nmd = 0;
}

int ic_rpc_unary(ic_rpc_channel_t *c, const char *method, const uint8_t *req, size_t len,
                 int timeout_ms, ic_buf_t *resp, int *status, char **status_msg) {
  if (status_msg) *status_msg = NULL;
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  unary_ops_t u;
  grpc_call *call = new_call(c, method, cq, timeout_ms);
  int rc = 0;
  if (!unary_start(&u, call, req, len, NULL, 0, &u)) {
    rc = IC_EIO;
  } else {
    grpc_completion_queue_pluck(cq, &u, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (status) *status = (int)u.st;
    if (u.st == GRPC_STATUS_OK) rc = append_bb(u.rbb, resp);
    if (status_msg) *status_msg = slice_str(u.details);
  }
  unary_release(&u);
  drain_destroy_cq(cq, true);
  return rc;
}

int ic_rpc_unary_all(ic_rpc_unary_call_t *calls, size_t n, int timeout_ms) {
  for (size_t i = 0; i < n; i++)
    calls[i].status = IC_RPC_NO_STATUS;
  if (!n) return 0;
  unary_ops_t *u = calloc(n, sizeof *u);
  if (!u) return IC_ENOMEM;
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  size_t started = 0;
  for (size_t i = 0; i < n; i++) {
    ic_rpc_unary_call_t *k = &calls[i];
    grpc_call *call = new_call(k->ch, k->method, cq, timeout_ms);
    if (unary_start(&u[i], call, k->req, k->len, k->md, k->nmd, &u[i])) started++;
  }
  /* Every started batch completes (OK, error or deadline) exactly once. */
  for (size_t done = 0; done < started;) {
    grpc_event e = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (e.type != GRPC_OP_COMPLETE) continue;
    unary_ops_t *d = e.tag;
    ic_rpc_unary_call_t *k = &calls[d - u];
    k->status = e.success ? (int)d->st : IC_RPC_NO_STATUS;
    if (k->status == IC_RPC_OK) append_bb(d->rbb, k->resp);
    done++;
  }
  for (size_t i = 0; i < n; i++)
    unary_release(&u[i]);
  drain_destroy_cq(cq, false);
  free(u);
  return 0;
}

/* ------------------------------------------------------------------ writer */

struct ic_rpc_writer {
  grpc_completion_queue *cq;
  grpc_call *call;
  bool md_sent;
  bool broken;
};

ic_rpc_writer_t *ic_rpc_writer_open(ic_rpc_channel_t *c, const char *method, int timeout_ms) {
  ic_rpc_writer_t *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->cq = grpc_completion_queue_create_for_pluck(NULL);
  w->call = new_call(c, method, w->cq, timeout_ms);
  if (!w->call) {
    drain_destroy_cq(w->cq, true);
    free(w);
    return NULL;
  }
  return w;
}

int ic_rpc_writer_send(ic_rpc_writer_t *w, const uint8_t *msg, size_t len) {
  if (w->broken) return IC_EIO;
  grpc_byte_buffer *bb = ic_rpc_bb_from(msg ? msg : (const uint8_t *)"", len);
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!w->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    w->md_sent = true;
  }
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = bb;
  int rc = 0;
  if (grpc_call_start_batch(w->call, ops, n, w, NULL) != GRPC_CALL_OK) {
    rc = IC_EIO;
  } else {
    grpc_event e = grpc_completion_queue_pluck(w->cq, w, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (!e.success) rc = IC_EIO;
  }
  grpc_byte_buffer_destroy(bb);
  if (rc) w->broken = true;
  return rc;
}

int ic_rpc_writer_finish(ic_rpc_writer_t *w, ic_buf_t *resp, int *status, char **status_msg) {
  if (status_msg) *status_msg = NULL;
  grpc_metadata_array imd, tmd;
  grpc_metadata_array_init(&imd);
  grpc_metadata_array_init(&tmd);
  grpc_byte_buffer *rbb = NULL;
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op ops[5];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!w->md_sent) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (!w->broken) ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[n++].data.recv_initial_metadata.recv_initial_metadata = &imd;
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n++].data.recv_message.recv_message = &rbb;
  ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[n].data.recv_status_on_client.trailing_metadata = &tmd;
  ops[n].data.recv_status_on_client.status = &st;
  ops[n++].data.recv_status_on_client.status_details = &details;
  int rc = 0;
  if (grpc_call_start_batch(w->call, ops, n, w, NULL) != GRPC_CALL_OK) {
    rc = IC_EIO;
  } else {
    grpc_completion_queue_pluck(w->cq, w, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (status) *status = (int)st;
    if (st == GRPC_STATUS_OK) rc = append_bb(rbb, resp);
    if (status_msg) *status_msg = slice_str(details);
  }
  grpc_slice_unref(details);
  if (rbb) grpc_byte_buffer_destroy(rbb);
  grpc_metadata_array_destroy(&imd);
  grpc_metadata_array_destroy(&tmd);
  grpc_call_unref(w->call);
  drain_destroy_cq(w->cq, true);
  free(w);
  return rc;
}

int ic_rpc_writer_cancel(ic_rpc_writer_t *w) {
  if (!w) return IC_RPC_CANCELLED;
  grpc_call_cancel(w->call, NULL);
  w->broken = true; /* no close-from-client after a cancel */
  int st = IC_RPC_CANCELLED;
  ic_rpc_writer_finish(w, NULL, &st, NULL);
  return st;
}

/* ------------------------------------------------------------------ pipeline */

typedef struct pcall {
  struct pcall *next_free;
  void *tag;
  unary_ops_t u;
} pcall_t;

struct ic_rpc_pipeline {
  ic_rpc_channel_t *ch;
  char *method;
  void *handle;
  grpc_completion_queue *cq;
  pthread_mutex_t mu; /* inflight and free_list: a starter and a collector thread may share it */
  size_t inflight;
  pcall_t *free_list;
  ic_buf_t last_trailers; /* the last returned call's trailing metadata: key\0value\0... */
};

ic_rpc_pipeline_t *ic_rpc_pipeline_new(ic_rpc_channel_t *ch, const char *method) {
  ic_rpc_pipeline_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->ch = ch;
  p->method = strdup(method);
  p->handle = method_handle(ch, method);
  p->cq = grpc_completion_queue_create_for_next(NULL);
  pthread_mutex_init(&p->mu, NULL);
  return p;
}

void ic_rpc_pipeline_free(ic_rpc_pipeline_t *p) {
  if (!p) return;
  while (ic_rpc_pipeline_inflight(p) > 0) {
    void *tag;
    int st;
    if (ic_rpc_pipeline_next(p, 10000, &tag, &st, NULL) <= 0) break;
  }
  drain_destroy_cq(p->cq, false);
  for (pcall_t *pc = p->free_list, *n; pc; pc = n) {
    n = pc->next_free;
    free(pc);
  }
  free(p->method);
  ic_buf_free(&p->last_trailers);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

size_t ic_rpc_pipeline_inflight(const ic_rpc_pipeline_t *p) {
  pthread_mutex_lock((pthread_mutex_t *)&p->mu);
  size_t n = p->inflight;
  pthread_mutex_unlock((pthread_mutex_t *)&p->mu);
  return n;
}

int ic_rpc_pipeline_start(ic_rpc_pipeline_t *p, const uint8_t *req, size_t len, int timeout_ms, void *tag) {
  pthread_mutex_lock(&p->mu);
  pcall_t *pc = p->free_list;
  if (pc) p->free_list = pc->next_free;
  pthread_mutex_unlock(&p->mu);
  if (!pc && !(pc = calloc(1, sizeof *pc))) return IC_ENOMEM;
  pc->tag = tag;
  grpc_call *call = grpc_channel_create_registered_call(
      p->ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, p->cq, p->handle, deadline_of(timeout_ms), NULL);
  pthread_mutex_lock(&p->mu);
  p->inflight++; /* before the batch: the collector may see the completion at once */
  pthread_mutex_unlock(&p->mu);
  if (!unary_start(&pc->u, call, req, len, NULL, 0, pc)) {
    unary_release(&pc->u);
    pthread_mutex_lock(&p->mu);
    p->inflight--;
    pc->next_free = p->free_list;
    p->free_list = pc;
    pthread_mutex_unlock(&p->mu);
    return IC_EIO;
  }
  return 0;
}

int ic_rpc_pipeline_next(ic_rpc_pipeline_t *p, int timeout_ms, void **tag, int *status, ic_buf_t *resp) {
  if (ic_rpc_pipeline_inflight(p) == 0) return 0;
  grpc_event e = grpc_completion_queue_next(p->cq, deadline_of(timeout_ms), NULL);
  if (e.type == GRPC_QUEUE_TIMEOUT) return 0;
  if (e.type != GRPC_OP_COMPLETE) return IC_EIO;
  pcall_t *pc = e.tag;
  *tag = pc->tag;
  *status = (int)pc->u.st;
  int rc = 1;
  if (pc->u.st == GRPC_STATUS_OK && resp && append_bb(pc->u.rbb, resp) != 0) rc = IC_ENOMEM;
  /* Trailer slices die with the call: keep a copy for ic_rpc_pipeline_last_trailer (the
   * buffer is reused, so steady state allocates nothing). */
  ic_buf_reset(&p->last_trailers);
  for (size_t i = 0; i < pc->u.tmd.count; i++) {
    const grpc_metadata *m = &pc->u.tmd.metadata[i];
    ic_buf_append(&p->last_trailers, GRPC_SLICE_START_PTR(m->key), GRPC_SLICE_LENGTH(m->key));
    ic_buf_append(&p->last_trailers, "", 1);
    ic_buf_append(&p->last_trailers, GRPC_SLICE_START_PTR(m->value), GRPC_SLICE_LENGTH(m->value));
    ic_buf_append(&p->last_trailers, "", 1);
  }
  unary_release(&pc->u);
  pthread_mutex_lock(&p->mu);
  p->inflight--;
  pc->next_free = p->free_list;
  p->free_list = pc;
  pthread_mutex_unlock(&p->mu);
  return rc;
}

int ic_rpc_pipeline_last_trailer(const ic_rpc_pipeline_t *p, const char *key, char *out,
                                 size_t cap) {
  const char *d = p->last_trailers.data, *end = d ? d + p->last_trailers.len : d;
  while (d && d < end) {
    const char *k = d, *v = k + strlen(k) + 1;
    d = v + strlen(v) + 1;
    if (strcmp(k, key) == 0) {
      if (cap) snprintf(out, cap, "%s", v);
      return 0;
    }
  }
  return IC_ENOTFOUND;
}

/* ------------------------------------------------------------------ reader */

enum { RT_START = 1, RT_RECV, RT_STATUS };

struct ic_rpc_reader {
  grpc_completion_queue *cq;
  grpc_call *call;
  grpc_byte_buffer *sbb, *rbb;
  grpc_metadata_array imd, tmd;
  grpc_status_code st;
  grpc_slice details;
  int t_start, t_recv, t_status; /* addresses used as tags */
  bool recv_pending, ended, status_done, start_pending;
};

ic_rpc_reader_t *ic_rpc_reader_open(ic_rpc_channel_t *c, const char *method, const uint8_t *req,
                                    size_t len, int timeout_ms) {
  ic_rpc_reader_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->cq = grpc_completion_queue_create_for_next(NULL);
  r->call = new_call(c, method, r->cq, timeout_ms);
  grpc_metadata_array_init(&r->imd);
  grpc_metadata_array_init(&r->tmd);
  r->details = grpc_empty_slice();
  if (!r->call) {
    drain_destroy_cq(r->cq, false);
    free(r);
    return NULL;
  }
  r->sbb = ic_rpc_bb_from(req ? req : (const uint8_t *)"", len);
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = r->sbb;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &r->imd;
  if (grpc_call_start_batch(r->call, ops, 4, &r->t_start, NULL) == GRPC_CALL_OK) r->start_pending = true;
  grpc_op sop;
  memset(&sop, 0, sizeof sop);
  sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  sop.data.recv_status_on_client.trailing_metadata = &r->tmd;
  sop.data.recv_status_on_client.status = &r->st;
  sop.data.recv_status_on_client.status_details = &r->details;
  if (grpc_call_start_batch(r->call, &sop, 1, &r->t_status, NULL) != GRPC_CALL_OK) r->status_done = true;
  return r;
}

int ic_rpc_reader_next(ic_rpc_reader_t *r, int timeout_ms, ic_buf_t *msg, int *status) {
  gpr_timespec dl = deadline_of(timeout_ms);
  for (;;) {
    if (r->ended && r->status_done) {
      if (status) *status = (int)r->st;
      return 0;
    }
    if (!r->ended && !r->recv_pending) {
      grpc_op op;
      memset(&op, 0, sizeof op);
      op.op = GRPC_OP_RECV_MESSAGE;
      op.data.recv_message.recv_message = &r->rbb;
      if (grpc_call_start_batch(r->call, &op, 1, &r->t_recv, NULL) != GRPC_CALL_OK) return IC_EIO;
      r->recv_pending = true;
    }
    grpc_event e = grpc_completion_queue_next(r->cq, dl, NULL);
    if (e.type == GRPC_QUEUE_TIMEOUT) return IC_ETIMEOUT;
    if (e.type != GRPC_OP_COMPLETE) return IC_EIO;
    if (e.tag == &r->t_start) {
      r->start_pending = false;
    } else if (e.tag == &r->t_status) {
      r->status_done = true;
    } else if (e.tag == &r->t_recv) {
      r->recv_pending = false;
      if (e.success && r->rbb) {
        int rc = append_bb(r->rbb, msg);
        grpc_byte_buffer_destroy(r->rbb);
        r->rbb = NULL;
        return rc ? rc : 1;
      }
      r->ended = true;
    }
  }
}

void ic_rpc_reader_close(ic_rpc_reader_t *r) {
  if (!r) return;
  grpc_call_cancel(r->call, NULL);
  /* Collect every outstanding completion before freeing the op storage. */
  while (r->recv_pending || r->start_pending || !r->status_done) {
    grpc_event e = grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (e.type != GRPC_OP_COMPLETE) break;
    if (e.tag == &r->t_start) r->start_pending = false;
    else if (e.tag == &r->t_status) r->status_done = true;
    else if (e.tag == &r->t_recv) {
      r->recv_pending = false;
      if (r->rbb) grpc_byte_buffer_destroy(r->rbb);
      r->rbb = NULL;
    }
  }
  grpc_call_unref(r->call);
  drain_destroy_cq(r->cq, false);
  if (r->sbb) grpc_byte_buffer_destroy(r->sbb);
  grpc_metadata_array_destroy(&r->imd);
  grpc_metadata_array_destroy(&r->tmd);
  grpc_slice_unref(r->details);
  free(r);
}
