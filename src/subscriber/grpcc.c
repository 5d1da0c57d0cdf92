/* kvevent-subscriber gRPC client: one channel over gRPC core with a short reconnect backoff (so a
 * restarted server is re-reached within --max-backoff, not gRPC's 120 s default) and a private
 * subchannel pool (so the backoff settings are not shared with anything else). Plaintext or TLS,
 * with the writer credentials of sub_grpc_creds_t: a client certificate and/or a bearer token
 * sent as `authorization` metadata on every call. */
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

#include "ic/auth.h"
#include "ic/buf.h"
#include "ic/log.h"
#include "sub.h"

struct sub_grpc {
  grpc_channel *ch;
  ic_auth_token_file_t *token; /* not owned; NULL = no bearer token */
};

/* The call's `authorization` metadata: filled from the token source (re-read as it rotates).
 * md->value must be unreffed after the call completes (auth_md_done). */
typedef struct {
  grpc_metadata md;
  size_t n;
} auth_md_t;

static void auth_md_make(sub_grpc_t *g, auth_md_t *a) {
  memset(a, 0, sizeof *a);
  if (!g->token) return;
  char hdr[16384];
  int n = ic_auth_token_file_header(g->token, hdr, sizeof hdr);
  if (n < 0) return; /* no token: the call goes without one and the server says why */
  a->md.key = grpc_slice_from_static_string("authorization");
  a->md.value = grpc_slice_from_copied_buffer(hdr, (size_t)n);
  memset(hdr, 0, (size_t)n);
  a->n = 1;
}

static void auth_md_done(auth_md_t *a) {
  if (a->n) grpc_slice_unref(a->md.value);
}

sub_grpc_t *sub_grpc_new(const char *target, int max_backoff_ms, const sub_grpc_creds_t *creds) {
  static const sub_grpc_creds_t plain = {0};
  if (!creds) creds = &plain;
  sub_grpc_t *g = calloc(1, sizeof(*g));
  if (!g) return NULL;
  grpc_init();
  if (max_backoff_ms < 100) max_backoff_ms = 100;
  /* The channel's own reconnect attempts are capped at 2 s: a TCP connect per second or two to
   * a down server is cheap, and the server's return is then seen within ~2 s (the watcher then
   * ends the sender's longer backoff at once). */
  if (max_backoff_ms > 2000) max_backoff_ms = 2000;
  grpc_arg args[6];
  size_t n = 0;
#define IARG(k, v)                                                                                 \
  do {                                                                                             \
    args[n].type = GRPC_ARG_INTEGER;                                                               \
    args[n].key = (char *)(k);                                                                     \
    args[n++].value.integer = (v);                                                                 \
  } while (0)
  IARG(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  IARG(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  IARG(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
  IARG(GRPC_ARG_ENABLE_RETRIES, 0);
  IARG(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  IARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 4 * 1024 * 1024);
#undef IARG
  grpc_channel_args ca = {n, args};
  grpc_ssl_pem_key_cert_pair pair = {.private_key = creds->key_pem, .cert_chain = creds->cert_pem};
  bool mtls = creds->cert_pem && creds->key_pem;
  grpc_channel_credentials *cc =
      creds->ca_pem ? grpc_ssl_credentials_create(creds->ca_pem, mtls ? &pair : NULL, NULL, NULL)
                    : grpc_insecure_credentials_create();
  g->ch = grpc_channel_create(target, cc, &ca);
  grpc_channel_credentials_release(cc);
  g->token = creds->token;
  if (!g->ch) {
    grpc_shutdown();
    free(g);
    return NULL;
  }
  return g;
}

void sub_grpc_free(sub_grpc_t *g) {
  if (!g) return;
  grpc_channel_destroy(g->ch);
  grpc_shutdown();
  free(g);
}

static void cq_drain_destroy(grpc_completion_queue *cq) {
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
}

int sub_grpc_call(sub_grpc_t *g, const char *method, const uint8_t *req, size_t len, int timeout_ms,
                  ic_buf_t *resp) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  gpr_timespec dl =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
  grpc_slice mslice = grpc_slice_from_static_string(method);
  grpc_call *call =
      grpc_channel_create_call(g->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, mslice, NULL, dl, NULL);
  if (!call) {
    cq_drain_destroy(cq);
    return -1;
  }
  grpc_slice payload = grpc_slice_from_copied_buffer((const char *)req, len);
  grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&payload, 1);
  grpc_slice_unref(payload);
  grpc_metadata_array md_init, md_trail;
  grpc_metadata_array_init(&md_init);
  grpc_metadata_array_init(&md_trail);
  grpc_byte_buffer *recv = NULL;
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  auth_md_t amd;
  auth_md_make(g, &amd);
  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = amd.n;
  ops[0].data.send_initial_metadata.metadata = &amd.md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_init;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &md_trail;
  ops[5].data.recv_status_on_client.status = &status;
  ops[5].data.recv_status_on_client.status_details = &details;
  int tag;
  int rc = -1;
  if (grpc_call_start_batch(call, ops, 6, &tag, NULL) == GRPC_CALL_OK) {
    grpc_event ev = grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_OP_COMPLETE) {
      rc = (int)status;
      if (status == GRPC_STATUS_OK && recv && resp) {
        grpc_byte_buffer_reader rd;
        if (grpc_byte_buffer_reader_init(&rd, recv)) {
          grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
          ic_buf_append(resp, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
          grpc_slice_unref(all);
          grpc_byte_buffer_reader_destroy(&rd);
        }
      }
    }
  }
  if (recv) grpc_byte_buffer_destroy(recv);
  grpc_byte_buffer_destroy(send);
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&md_init);
  grpc_metadata_array_destroy(&md_trail);
  grpc_call_unref(call);
  cq_drain_destroy(cq);
  auth_md_done(&amd);
  return rc;
}

int sub_grpc_state(sub_grpc_t *g, bool try_connect) {
  return (int)grpc_channel_check_connectivity_state(g->ch, try_connect ? 1 : 0);
}

int sub_grpc_wait_change(sub_grpc_t *g, int last, int timeout_ms) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  gpr_timespec dl =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
  int tag;
  grpc_channel_watch_connectivity_state(g->ch, (grpc_connectivity_state)last, dl, cq, &tag);
  grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  cq_drain_destroy(cq);
  return sub_grpc_state(g, true);
}

/* Per-call state of sub_grpc_call_many. */
typedef struct mcall {
  grpc_call *call;
  grpc_byte_buffer *send, *recv;
  grpc_metadata_array md_init, md_trail;
  grpc_status_code status;
  grpc_slice details;
  bool started;
} mcall_t;

int sub_grpc_call_many(sub_grpc_t *g, const char *method, const uint8_t *const *reqs,
                       const size_t *lens, size_t n, int timeout_ms, int *statuses) {
  mcall_t *m = calloc(n, sizeof(*m));
  if (!m) return -1;
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  gpr_timespec dl =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
  grpc_slice mslice = grpc_slice_from_static_string(method);
  auth_md_t amd; /* one token for the whole batch */
  auth_md_make(g, &amd);
  size_t started = 0;
  for (size_t i = 0; i < n; i++) {
    statuses[i] = -1;
    m[i].details = grpc_empty_slice();
    grpc_metadata_array_init(&m[i].md_init);
    grpc_metadata_array_init(&m[i].md_trail);
    m[i].call =
        grpc_channel_create_call(g->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, mslice, NULL, dl, NULL);
    if (!m[i].call) continue;
    grpc_slice payload = grpc_slice_from_copied_buffer((const char *)reqs[i], lens[i]);
    m[i].send = grpc_raw_byte_buffer_create(&payload, 1);
    grpc_slice_unref(payload);
    m[i].status = GRPC_STATUS_UNKNOWN;
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = amd.n;
    ops[0].data.send_initial_metadata.metadata = &amd.md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = m[i].send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &m[i].md_init;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &m[i].recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &m[i].md_trail;
    ops[5].data.recv_status_on_client.status = &m[i].status;
    ops[5].data.recv_status_on_client.status_details = &m[i].details;
    if (grpc_call_start_batch(m[i].call, ops, 6, &m[i], NULL) == GRPC_CALL_OK) {
      m[i].started = true;
      started++;
    }
  }
  /* Every started batch completes (OK, error or deadline) exactly once. */
  for (size_t done = 0; done < started;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE) continue;
    mcall_t *c = ev.tag;
    statuses[c - m] = ev.success ? (int)c->status : -1;
    done++;
  }
  int worst = 0;
  for (size_t i = 0; i < n; i++) {
    if (statuses[i] != 0 && worst == 0) worst = statuses[i];
    if (m[i].recv) grpc_byte_buffer_destroy(m[i].recv);
    if (m[i].send) grpc_byte_buffer_destroy(m[i].send);
    grpc_slice_unref(m[i].details);
    grpc_metadata_array_destroy(&m[i].md_init);
    grpc_metadata_array_destroy(&m[i].md_trail);
    if (m[i].call) grpc_call_unref(m[i].call);
  }
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  auth_md_done(&amd);
  free(m);
  return worst;
}
