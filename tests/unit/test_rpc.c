/* lib/rpc over real loopback gRPC: unary, unknown method, client streaming (half-close and
 * cancel), server streaming with the bounded queue, health Check/Watch, reflection, deadlines,
 * TLS keypair errors and graceful shutdown that finishes open streams; unary calls fanned out
 * over several channels with request metadata, and channel connectivity states. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/rpc/rpc_internal.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/rpc.h"

extern const unsigned char ic_proto_descriptor_set[];
extern const size_t ic_proto_descriptor_set_len;

static int echo(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len, ic_buf_t *resp, const char **msg) {
  (void)ud;
  if (len == 4 && memcmp(req, "fail", 4) == 0) return *msg = "asked to fail", IC_RPC_INVALID_ARGUMENT;
  if (len == 8 && memcmp(req, "deadline", 8) == 0) {
    int64_t d = ic_rpc_call_deadline_ns(call);
    ic_buf_appendf(resp, "%s", d == INT64_MAX ? "none" : "set");
    return IC_RPC_OK;
  }
  if (len == 4 && memcmp(req, "auth", 4) == 0) { /* echoes the call's authorization metadata */
    char v[256];
    ic_buf_append_str(resp,
                      ic_rpc_call_metadata(call, "authorization", v, sizeof v) >= 0 ? v : "none");
    return IC_RPC_OK;
  }
  ic_buf_append(resp, req, len);
  return IC_RPC_OK;
}

/* client stream: sums message lengths; counts completed/broken streams. */
static atomic_int g_sum, g_broken, g_closed, g_ended;
static int cs_msg(void *ud, ic_rpc_call_t *c, const uint8_t *m, size_t n) {
  (void)ud, (void)c, (void)m;
  atomic_fetch_add(&g_sum, (int)n);
  return IC_RPC_OK;
}
static int cs_end(void *ud, ic_rpc_call_t *c, int status, ic_buf_t *resp) {
  (void)ud, (void)c;
  atomic_fetch_add(&g_ended, 1);
  if (status != IC_RPC_OK) {
    atomic_fetch_add(&g_broken, 1);
    return status;
  }
  ic_buf_appendf(resp, "sum=%d", atomic_load(&g_sum));
  return IC_RPC_OK;
}

/* server stream: sends N messages named in the request, keeps the call open. */
static ic_rpc_call_t *_Atomic g_stream;
static int ss_start(void *ud, ic_rpc_call_t *c, const uint8_t *req, size_t len) {
  (void)ud;
  int n = 0;
  for (size_t i = 0; i < len; i++) n = n * 10 + (req[i] - '0');
  atomic_store(&g_stream, c); /* before the first send: the client may see it at once */
  for (int i = 0; i < n; i++) {
    char b[16];
    int l = snprintf(b, sizeof b, "m%d", i);
    ic_rpc_stream_send(c, (const uint8_t *)b, (size_t)l);
  }
  return IC_RPC_OK;
}
static void ss_close(void *ud, ic_rpc_call_t *c) {
  (void)ud, (void)c;
  atomic_store(&g_stream, NULL);
  atomic_fetch_add(&g_closed, 1);
}

static ic_rpc_server_t *srv;
static ic_rpc_channel_t *ch;
static char target[64];

static void start(void) {
  char err[256];
  ic_rpc_server_opts_t o = {.threads = 2};
  srv = ic_rpc_server_new("127.0.0.1:0", &o, err, sizeof err, NULL);
  cr_assert_not_null(srv, "%s", err);
  cr_assert_eq(ic_rpc_server_add_unary(srv, "/t.S/Echo", echo, NULL), 0);
  static const ic_rpc_stream_handler_t cs = {.on_msg = cs_msg, .on_end = cs_end};
  static const ic_rpc_stream_handler_t ss = {.on_start = ss_start, .on_close = ss_close};
  cr_assert_eq(ic_rpc_server_add_stream(srv, "/t.S/Sum", IC_RPC_CLIENT_STREAM, &cs, NULL), 0);
  cr_assert_eq(ic_rpc_server_add_stream(srv, "/t.S/Feed", IC_RPC_SERVER_STREAM, &ss, NULL), 0);
  static const char *const svcs[] = {"t.S", NULL};
  cr_assert_eq(ic_rpc_server_add_health(srv, svcs), 0);
  cr_assert_eq(ic_rpc_server_add_reflection(srv, ic_proto_descriptor_set, ic_proto_descriptor_set_len), 0);
  cr_assert_eq(ic_rpc_server_start(srv), 0);
  snprintf(target, sizeof target, "127.0.0.1:%d", ic_rpc_server_port(srv));
  ch = ic_rpc_channel_new(target, NULL);
  cr_assert_not_null(ch);
  cr_assert_eq(ic_rpc_channel_wait_ready(ch, 20000), 0);
}

static void stop(void) {
  if (ch) ic_rpc_channel_free(ch);
  if (srv) ic_rpc_server_free(srv);
  ch = NULL;
  srv = NULL;
}

TestSuite(rpc, .init = start, .fini = stop, .timeout = 120);

Test(rpc, unary_echo_and_error_status) {
  ic_buf_t out = IC_BUF_INIT;
  int st = -1;
  char *m = NULL;
  cr_assert_eq(ic_rpc_unary(ch, "/t.S/Echo", (const uint8_t *)"hello", 5, 10000, &out, &st, &m), 0);
  cr_assert_eq(st, IC_RPC_OK);
  cr_assert_eq(out.len, 5);
  cr_assert(memcmp(out.data, "hello", 5) == 0);
  free(m);
  ic_buf_reset(&out);
  cr_assert_eq(ic_rpc_unary(ch, "/t.S/Echo", (const uint8_t *)"fail", 4, 10000, &out, &st, &m), 0);
  cr_assert_eq(st, IC_RPC_INVALID_ARGUMENT);
  cr_assert_str_eq(m, "asked to fail");
  cr_assert_eq(out.len, 0);
  free(m);
  /* empty request message round-trips as empty */
  cr_assert_eq(ic_rpc_unary(ch, "/t.S/Echo", NULL, 0, 10000, &out, &st, NULL), 0);
  cr_assert_eq(st, IC_RPC_OK);
  cr_assert_eq(out.len, 0);
  ic_buf_free(&out);
}

Test(rpc, deadline_is_visible_to_handler) {
  ic_buf_t out = IC_BUF_INIT;
  int st;
  cr_assert_eq(ic_rpc_unary(ch, "/t.S/Echo", (const uint8_t *)"deadline", 8, 10000, &out, &st, NULL), 0);
  cr_assert_str_eq(out.data, "set");
  ic_buf_reset(&out);
  cr_assert_eq(ic_rpc_unary(ch, "/t.S/Echo", (const uint8_t *)"deadline", 8, 0, &out, &st, NULL), 0);
  cr_assert_str_eq(out.data, "none");
  ic_buf_free(&out);
}

Test(rpc, unknown_method_is_unimplemented) {
  int st = -1;
  cr_assert_eq(ic_rpc_unary(ch, "/t.S/Nope", (const uint8_t *)"x", 1, 10000, NULL, &st, NULL), 0);
  cr_assert_eq(st, IC_RPC_UNIMPLEMENTED);
}

/* A free loopback port with nothing listening (bound, then closed). */
static int dead_port(void) {
  char err[256];
  ic_rpc_server_t *s = ic_rpc_server_new("127.0.0.1:0", NULL, err, sizeof err, NULL);
  cr_assert_not_null(s, "%s", err);
  int port = ic_rpc_server_port(s);
  ic_rpc_server_free(s);
  return port;
}

Test(rpc, unary_all_runs_calls_on_several_channels_with_metadata) {
  ic_rpc_channel_t *other = ic_rpc_channel_new(target, NULL);
  char dead[64];
  snprintf(dead, sizeof dead, "127.0.0.1:%d", dead_port());
  ic_rpc_channel_t *gone = ic_rpc_channel_new(dead, NULL);
  cr_assert(other && gone);
  static const char tok[] = "Bearer abc";
  const ic_rpc_md_t md = {"authorization", tok, sizeof tok - 1};
  ic_buf_t out[5] = {IC_BUF_INIT, IC_BUF_INIT, IC_BUF_INIT, IC_BUF_INIT, IC_BUF_INIT};
  ic_rpc_unary_call_t calls[5] = {
      {ch, "/t.S/Echo", (const uint8_t *)"auth", 4, &md, 1, &out[0], 99},
      {other, "/t.S/Echo", (const uint8_t *)"auth", 4, NULL, 0, &out[1], 99},
      {other, "/t.S/Echo", (const uint8_t *)"fail", 4, &md, 1, &out[2], 99},
      {gone, "/t.S/Echo", (const uint8_t *)"x", 1, &md, 1, &out[3], 99},
      {ch, "/t.S/Echo", (const uint8_t *)"hello", 5, NULL, 0, NULL, 99},
  };
  int64_t t0 = ic_clock_monotonic_ns();
  cr_assert_eq(ic_rpc_unary_all(calls, 5, 3000), 0);
  cr_assert_lt(ic_clock_monotonic_ns() - t0, 10 * 1000000000LL);
  cr_assert_eq(calls[0].status, IC_RPC_OK);
  cr_assert_str_eq(out[0].data, "Bearer abc");
  cr_assert_eq(calls[1].status, IC_RPC_OK);
  cr_assert_str_eq(out[1].data, "none", "metadata belongs to its own call");
  cr_assert_eq(calls[2].status, IC_RPC_INVALID_ARGUMENT);
  cr_assert_eq(out[2].len, 0);
  /* Nothing listens: UNAVAILABLE (or the deadline), never OK, and the others were not held up. */
  cr_assert(calls[3].status == IC_RPC_UNAVAILABLE || calls[3].status == IC_RPC_DEADLINE_EXCEEDED,
            "status %d", calls[3].status);
  cr_assert_eq(calls[4].status, IC_RPC_OK);
  cr_assert_eq(ic_rpc_unary_all(NULL, 0, 1000), 0);
  for (int i = 0; i < 5; i++)
    ic_buf_free(&out[i]);
  ic_rpc_channel_free(other);
  ic_rpc_channel_free(gone);
}

Test(rpc, channel_state_follows_the_server) {
  cr_assert_eq(ic_rpc_channel_state(ch, false), IC_RPC_CH_READY);
  char dead[64];
  snprintf(dead, sizeof dead, "127.0.0.1:%d", dead_port());
  ic_rpc_channel_opts_t o = {.max_reconnect_backoff_ms = 200};
  ic_rpc_channel_t *c = ic_rpc_channel_new(dead, &o);
  cr_assert_not_null(c);
  cr_assert_eq(ic_rpc_channel_state(c, false), IC_RPC_CH_IDLE);
  /* Asked to connect to nothing: it leaves IDLE and reaches TRANSIENT_FAILURE. */
  int st = ic_rpc_channel_state(c, true);
  for (int i = 0; i < 50 && st != IC_RPC_CH_TRANSIENT_FAILURE; i++)
    st = ic_rpc_channel_wait_change(c, st, 200);
  cr_assert_eq(st, IC_RPC_CH_TRANSIENT_FAILURE);
  ic_rpc_channel_free(c);
}

Test(rpc, many_unary_calls_in_flight_via_pipeline) {
  ic_rpc_pipeline_t *p = ic_rpc_pipeline_new(ch, "/t.S/Echo");
  for (intptr_t i = 0; i < 64; i++) {
    char b[8];
    int l = snprintf(b, sizeof b, "%d", (int)i);
    cr_assert_eq(ic_rpc_pipeline_start(p, (const uint8_t *)b, (size_t)l, 10000, (void *)i), 0);
  }
  bool seen[64] = {0};
  ic_buf_t out = IC_BUF_INIT;
  for (int k = 0; k < 64; k++) {
    void *tag;
    int st;
    ic_buf_reset(&out);
    cr_assert_eq(ic_rpc_pipeline_next(p, 20000, &tag, &st, &out), 1);
    cr_assert_eq(st, IC_RPC_OK);
    intptr_t i = (intptr_t)tag;
    char b[8];
    snprintf(b, sizeof b, "%d", (int)i);
    cr_assert_str_eq(out.data, b);
    seen[i] = true;
  }
  for (int i = 0; i < 64; i++) cr_assert(seen[i]);
  cr_assert_eq(ic_rpc_pipeline_inflight(p), 0);
  ic_buf_free(&out);
  ic_rpc_pipeline_free(p);
}

Test(rpc, client_stream_half_close_gets_response) {
  atomic_store(&g_sum, 0);
  ic_rpc_writer_t *w = ic_rpc_writer_open(ch, "/t.S/Sum", 10000);
  cr_assert_not_null(w);
  cr_assert_eq(ic_rpc_writer_send(w, (const uint8_t *)"abc", 3), 0);
  cr_assert_eq(ic_rpc_writer_send(w, (const uint8_t *)"de", 2), 0);
  ic_buf_t out = IC_BUF_INIT;
  int st = -1;
  cr_assert_eq(ic_rpc_writer_finish(w, &out, &st, NULL), 0);
  cr_assert_eq(st, IC_RPC_OK);
  cr_assert_str_eq(out.data, "sum=5");
  ic_buf_free(&out);
}

Test(rpc, client_stream_cancel_applies_received_and_sends_no_ack) {
  atomic_store(&g_sum, 0);
  atomic_store(&g_broken, 0);
  atomic_store(&g_ended, 0);
  ic_rpc_writer_t *w = ic_rpc_writer_open(ch, "/t.S/Sum", 10000);
  cr_assert_eq(ic_rpc_writer_send(w, (const uint8_t *)"abcd", 4), 0);
  /* wait until the server has consumed the message, then cancel */
  int64_t until = ic_clock_monotonic_ns() + 10000000000LL;
  while (atomic_load(&g_sum) < 4 && ic_clock_monotonic_ns() < until) usleep(1000);
  /* the client sees CANCELLED and no response; what the server consumed stays consumed */
  cr_assert_eq(ic_rpc_writer_cancel(w), IC_RPC_CANCELLED);
  cr_assert_eq(atomic_load(&g_sum), 4);
  /* let the server see the end of the stream before the suite tears the server down (a free
     racing the server's end-of-stream handling crashed the test process about once in 25
     runs). gRPC core reports a client's cancel to the server's pending receive as a plain end
     of stream, so the handler's status is not asserted here. */
  until = ic_clock_monotonic_ns() + 10000000000LL;
  while (atomic_load(&g_ended) == 0 && ic_clock_monotonic_ns() < until) usleep(1000);
  cr_assert_eq(atomic_load(&g_ended), 1);
}

Test(rpc, server_stream_delivers_in_order_and_closes_on_cancel) {
  atomic_store(&g_closed, 0);
  ic_rpc_reader_t *r = ic_rpc_reader_open(ch, "/t.S/Feed", (const uint8_t *)"3", 1, 0);
  cr_assert_not_null(r);
  ic_buf_t m = IC_BUF_INIT;
  for (int i = 0; i < 3; i++) {
    ic_buf_reset(&m);
    int st;
    cr_assert_eq(ic_rpc_reader_next(r, 10000, &m, &st), 1);
    char want[8];
    snprintf(want, sizeof want, "m%d", i);
    cr_assert_str_eq(m.data, want);
  }
  /* nothing more yet: times out, stream still open */
  cr_assert_eq(ic_rpc_reader_next(r, 100, &m, NULL), IC_ETIMEOUT);
  /* a send from another thread arrives */
  ic_rpc_call_t *c = atomic_load(&g_stream);
  cr_assert_not_null(c);
  cr_assert_eq(ic_rpc_stream_send(c, (const uint8_t *)"late", 4), 0);
  ic_buf_reset(&m);
  cr_assert_eq(ic_rpc_reader_next(r, 10000, &m, NULL), 1);
  cr_assert_str_eq(m.data, "late");
  ic_rpc_reader_close(r);
  int64_t until = ic_clock_monotonic_ns() + 10000000000LL;
  while (atomic_load(&g_closed) == 0 && ic_clock_monotonic_ns() < until) usleep(1000);
  cr_assert_eq(atomic_load(&g_closed), 1);
  ic_buf_free(&m);
}

Test(rpc, server_stream_finish_ends_with_status) {
  ic_rpc_reader_t *r = ic_rpc_reader_open(ch, "/t.S/Feed", (const uint8_t *)"1", 1, 0);
  ic_buf_t m = IC_BUF_INIT;
  cr_assert_eq(ic_rpc_reader_next(r, 10000, &m, NULL), 1);
  ic_rpc_call_t *c = atomic_load(&g_stream);
  cr_assert_eq(ic_rpc_stream_finish(c, IC_RPC_OK, NULL), 0);
  int st = -1;
  cr_assert_eq(ic_rpc_reader_next(r, 10000, &m, &st), 0);
  cr_assert_eq(st, IC_RPC_OK);
  ic_rpc_reader_close(r);
  ic_buf_free(&m);
}

static int health_check(const char *svc, int *status) {
  Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  q.service = (char *)svc;
  uint8_t b[256];
  size_t n = grpc__health__v1__health_check_request__pack(&q, b);
  ic_buf_t out = IC_BUF_INIT;
  int st = -1;
  cr_assert_eq(ic_rpc_unary(ch, "/grpc.health.v1.Health/Check", b, n, 10000, &out, &st, NULL), 0);
  *status = -1;
  if (st == IC_RPC_OK) {
    Grpc__Health__V1__HealthCheckResponse *r =
        grpc__health__v1__health_check_response__unpack(NULL, out.len, (const uint8_t *)out.data);
    cr_assert_not_null(r);
    *status = r->status;
    grpc__health__v1__health_check_response__free_unpacked(r, NULL);
  }
  ic_buf_free(&out);
  return st;
}

Test(rpc, health_follows_serving_flag) {
  int hs;
  cr_assert_eq(health_check("", &hs), IC_RPC_OK);
  cr_assert_eq(hs, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  ic_rpc_server_set_serving(srv, true);
  cr_assert_eq(health_check("", &hs), IC_RPC_OK);
  cr_assert_eq(hs, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  cr_assert_eq(health_check("t.S", &hs), IC_RPC_OK);
  cr_assert_eq(hs, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  cr_assert_eq(health_check("nope", &hs), IC_RPC_NOT_FOUND);

  /* Watch: current status, then the change */
  Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  uint8_t b[16];
  size_t n = grpc__health__v1__health_check_request__pack(&q, b);
  ic_rpc_reader_t *r = ic_rpc_reader_open(ch, "/grpc.health.v1.Health/Watch", b, n, 0);
  ic_buf_t m = IC_BUF_INIT;
  cr_assert_eq(ic_rpc_reader_next(r, 10000, &m, NULL), 1);
  Grpc__Health__V1__HealthCheckResponse *hr =
      grpc__health__v1__health_check_response__unpack(NULL, m.len, (const uint8_t *)m.data);
  cr_assert_eq(hr->status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  grpc__health__v1__health_check_response__free_unpacked(hr, NULL);
  ic_rpc_server_set_serving(srv, false);
  ic_buf_reset(&m);
  cr_assert_eq(ic_rpc_reader_next(r, 10000, &m, NULL), 1);
  hr = grpc__health__v1__health_check_response__unpack(NULL, m.len, (const uint8_t *)m.data);
  cr_assert_eq(hr->status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  grpc__health__v1__health_check_response__free_unpacked(hr, NULL);
  ic_rpc_reader_close(r);
  ic_buf_free(&m);
}

static Grpc__Reflection__V1alpha__ServerReflectionResponse *reflect(ic_rpc_reflection_t *rf,
                                                                     Grpc__Reflection__V1alpha__ServerReflectionRequest *q) {
  uint8_t b[512];
  size_t n = grpc__reflection__v1alpha__server_reflection_request__pack(q, b);
  ic_buf_t out = IC_BUF_INIT;
  cr_assert_eq(ic_rpc_reflection_answer(rf, b, n, &out), 0);
  Grpc__Reflection__V1alpha__ServerReflectionResponse *r =
      grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, out.len, (const uint8_t *)out.data);
  cr_assert_not_null(r);
  ic_buf_free(&out);
  return r;
}

Test(rpc, reflection_lists_services_and_resolves_symbols) {
  ic_rpc_reflection_t *rf = ic_rpc_reflection_new(ic_proto_descriptor_set, ic_proto_descriptor_set_len);
  cr_assert_not_null(rf);
  Grpc__Reflection__V1alpha__ServerReflectionRequest q = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
  q.message_request_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
  q.list_services = "";
  Grpc__Reflection__V1alpha__ServerReflectionResponse *r = reflect(rf, &q);
  cr_assert_eq(r->message_response_case,
               GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
  bool ic = false, health = false;
  for (size_t i = 0; i < r->list_services_response->n_service; i++) {
    ic |= strcmp(r->list_services_response->service[i]->name, "inferencecache.v1alpha1.InferenceCache") == 0;
    health |= strcmp(r->list_services_response->service[i]->name, "grpc.health.v1.Health") == 0;
  }
  cr_assert(ic && health);
  grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

  const char *syms[] = {"inferencecache.v1alpha1.InferenceCache", "inferencecache.v1alpha1.LookupRouteRequest",
                        "inferencecache.v1alpha1.CacheEvent.Type", "inferencecache.v1alpha1.InferenceCache.LookupRoute",
                        "inferencecache.v1alpha1.CacheTier"};
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    q.message_request_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    q.file_containing_symbol = (char *)syms[i];
    r = reflect(rf, &q);
    cr_assert_eq(r->message_response_case,
                 GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE,
                 "%s", syms[i]);
    cr_assert_geq(r->file_descriptor_response->n_file_descriptor_proto, 1);
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
  }
  q.file_containing_symbol = "no.such.Symbol";
  r = reflect(rf, &q);
  cr_assert_eq(r->message_response_case,
               GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
  cr_assert_eq(r->error_response->error_code, IC_RPC_NOT_FOUND);
  grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
  q.message_request_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
  q.file_by_filename = "inferencecache/v1alpha1/inferencecache.proto";
  r = reflect(rf, &q);
  cr_assert_eq(r->file_descriptor_response->n_file_descriptor_proto, 1);
  grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
  /* garbage request */
  ic_buf_t out = IC_BUF_INIT;
  cr_assert_eq(ic_rpc_reflection_answer(rf, (const uint8_t *)"\xff\xff\xff", 3, &out), IC_EINVAL);
  ic_buf_free(&out);
  ic_rpc_reflection_free(rf);
  /* corrupt descriptor set is refused, not crashed on */
  cr_assert_null(ic_rpc_reflection_new((const uint8_t *)"\x0a\x05\x0a", 3));
}

Test(rpc, shutdown_finishes_open_server_streams_with_ok) {
  ic_rpc_reader_t *r = ic_rpc_reader_open(ch, "/t.S/Feed", (const uint8_t *)"1", 1, 0);
  ic_buf_t m = IC_BUF_INIT;
  cr_assert_eq(ic_rpc_reader_next(r, 10000, &m, NULL), 1);
  int cancelled = ic_rpc_server_shutdown(srv, 10000);
  cr_assert_eq(cancelled, 0);
  int st = -1;
  cr_assert_eq(ic_rpc_reader_next(r, 10000, &m, &st), 0);
  cr_assert_eq(st, IC_RPC_OK);
  ic_rpc_reader_close(r);
  ic_buf_free(&m);
}

Test(rpc, shutdown_cancels_streams_after_bounded_drain) {
  atomic_store(&g_sum, 0);
  ic_rpc_writer_t *w = ic_rpc_writer_open(ch, "/t.S/Sum", 0);
  cr_assert_eq(ic_rpc_writer_send(w, (const uint8_t *)"x", 1), 0);
  int64_t until = ic_clock_monotonic_ns() + 10000000000LL;
  while (atomic_load(&g_sum) < 1 && ic_clock_monotonic_ns() < until) usleep(1000); /* server has the call */
  int64_t t0 = ic_clock_monotonic_ns();
  int cancelled = ic_rpc_server_shutdown(srv, 300);
  int64_t took_ms = (ic_clock_monotonic_ns() - t0) / 1000000;
  cr_assert_geq(cancelled, 1);
  cr_assert_lt(took_ms, 10000);
  int st = -1;
  ic_rpc_writer_finish(w, NULL, &st, NULL);
  cr_assert_neq(st, IC_RPC_OK);
}

Test(rpc_plain, bind_failure_and_bad_tls_are_reported) {
  char err[256];
  bool tls = true;
  ic_rpc_server_t *a = ic_rpc_server_new("127.0.0.1:0", NULL, err, sizeof err, NULL);
  cr_assert_not_null(a);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", ic_rpc_server_port(a));
  ic_rpc_server_t *b = ic_rpc_server_new(addr, NULL, err, sizeof err, &tls);
  cr_assert_null(b);
  cr_assert_not(tls);
  cr_assert(strstr(err, "listen for grpc") != NULL, "%s", err);
  ic_rpc_server_free(a);
  ic_rpc_server_opts_t o = {.tls_cert_file = "/nonexistent/cert.pem", .tls_key_file = "/nonexistent/key.pem"};
  cr_assert_null(ic_rpc_server_new("127.0.0.1:0", &o, err, sizeof err, &tls));
  cr_assert(tls);
  cr_assert(strstr(err, "load gRPC TLS keypair") != NULL, "%s", err);
}

/* ---------------------------------------------------------------- TLS with reload */

static int make_cert(const char *dir, int serial) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout k.new -out c.new -days 2 -subj /CN=localhost "
           "-addext subjectAltName=DNS:localhost -set_serial %d >/dev/null 2>&1 && mv k.new tls.key && mv c.new tls.crt "
           "&& cp tls.crt ca%d.pem",
           dir, serial, serial);
  return system(cmd);
}

static int tls_call(const char *target, const char *ca) {
  ic_rpc_channel_opts_t co = {.tls_ca_file = ca, .tls_server_name = "localhost"};
  ic_rpc_channel_t *c = ic_rpc_channel_new(target, &co);
  cr_assert_not_null(c);
  int st = -1;
  ic_buf_t out = IC_BUF_INIT;
  ic_rpc_unary(c, "/t.S/Echo", (const uint8_t *)"tls", 3, 10000, &out, &st, NULL);
  ic_buf_free(&out);
  ic_rpc_channel_free(c);
  return st;
}

Test(rpc_plain, tls_serves_and_reloads_a_rotated_certificate, .timeout = 120) {
  char dir[] = "/tmp/ic-rpc-tls-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  if (make_cert(dir, 1) != 0) cr_skip_test("openssl CLI not available");
  char cert[128], key[128], ca1[128], ca2[128], err[256];
  snprintf(cert, sizeof cert, "%s/tls.crt", dir);
  snprintf(key, sizeof key, "%s/tls.key", dir);
  snprintf(ca1, sizeof ca1, "%s/ca1.pem", dir);
  snprintf(ca2, sizeof ca2, "%s/ca2.pem", dir);
  ic_rpc_server_opts_t o = {.threads = 1, .tls_cert_file = cert, .tls_key_file = key};
  ic_rpc_server_t *s = ic_rpc_server_new("127.0.0.1:0", &o, err, sizeof err, NULL);
  cr_assert_not_null(s, "%s", err);
  cr_assert_eq(ic_rpc_server_add_unary(s, "/t.S/Echo", echo, NULL), 0);
  cr_assert_eq(ic_rpc_server_start(s), 0);
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", ic_rpc_server_port(s));
  cr_assert_eq(tls_call(target, ca1), IC_RPC_OK);
  /* plaintext is refused */
  ic_rpc_channel_t *plain = ic_rpc_channel_new(target, NULL);
  int st = -1;
  ic_rpc_unary(plain, "/t.S/Echo", (const uint8_t *)"x", 1, 5000, NULL, &st, NULL);
  cr_assert_neq(st, IC_RPC_OK);
  ic_rpc_channel_free(plain);
  /* rotate: a new key pair; new handshakes must present it */
  usleep(1100000); /* coarse mtime filesystems */
  cr_assert_eq(make_cert(dir, 2), 0);
  cr_assert_eq(tls_call(target, ca2), IC_RPC_OK);
  cr_assert_neq(tls_call(target, ca1), IC_RPC_OK);
  /* a broken replacement keeps the last good pair */
  usleep(1100000);
  FILE *f = fopen(cert, "w");
  fputs("garbage\n", f);
  fclose(f);
  cr_assert_eq(tls_call(target, ca2), IC_RPC_OK);
  ic_rpc_server_free(s);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}
