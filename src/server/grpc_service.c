/* The gRPC side of inferencecache-server: wires the eight InferenceCache methods (logic in
 * lib/svc), grpc.health.v1 and server reflection onto the rpc server in ctx->grpc. */
#include <stdlib.h>

#include "ic/rpc.h"
#include "ic/svc.h"
#include "server.h"

extern const unsigned char ic_proto_descriptor_set[];
extern const size_t ic_proto_descriptor_set_len;

#define SVC "/inferencecache.v1alpha1.InferenceCache/"

/* A prompt_text to tokenize goes to the tokenizer workers (prompts.c), which answer the call;
 * every other lookup is answered here, on the completion-queue thread, with no hand-over. */
static int lookup_route(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len, ic_buf_t *resp,
                        const char **msg) {
  server_ctx_t *ctx = ud;
  ic_svc_pending_t *p = NULL;
  int st = ic_svc_lookup_route_begin(ctx->svc, req, len, ic_rpc_call_deadline_ns(call), resp, msg,
                                     ctx->prompt_pool ? &p : NULL);
  return p ? server_prompt_lookup(ctx, call, p, resp, msg) : st;
}

#define UNARY(name, fn)                                                                           \
  static int name(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len, ic_buf_t *resp, \
                  const char **msg) {                                                             \
    (void)call;                                                                                   \
    return fn(((server_ctx_t *)ud)->svc, req, len, resp, msg);                                    \
  }
UNARY(get_cache_state, ic_svc_get_cache_state)

/* Writers (PublishEvent, ReportCacheState) pass writer authentication first (writer_auth.c). */
static int publish_event(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len,
                         ic_buf_t *resp, const char **msg) {
  server_ctx_t *ctx = ud;
  int st = server_writer_auth_check(ctx, call, msg);
  if (st != IC_RPC_OK) return st;
  return ic_svc_publish_event(ctx->svc, req, len, resp, msg);
}
UNARY(render_template, ic_svc_render_template)
UNARY(lookup_pd_route, ic_svc_lookup_pd_route)

/* ReportCacheState: each message is ingested before the next is read, so a broken stream
 * keeps what arrived (partial application) and gets no Ack. */
static int report_msg(void *ud, ic_rpc_call_t *call, const uint8_t *msg, size_t len) {
  const char *err = NULL;
  int st = ic_svc_report_one(((server_ctx_t *)ud)->svc, msg, len, &err);
  /* Finish here so the status carries its reason (the transport's own finish that follows a
     non-OK return then finds the call already finishing). */
  if (st != IC_RPC_OK && err) ic_rpc_stream_finish(call, st, err);
  return st;
}

static int report_start(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len) {
  (void)req, (void)len;
  const char *msg = NULL;
  int st = server_writer_auth_check(ud, call, &msg);
  if (st != IC_RPC_OK) ic_rpc_stream_finish(call, st, msg);
  return st;
}

static int report_end(void *ud, ic_rpc_call_t *call, int status, ic_buf_t *resp) {
  (void)ud, (void)call;
  if (status != IC_RPC_OK) return status;
  return ic_svc_report_ack(resp);
}

int server_grpc_register(server_ctx_t *ctx) {
  ic_rpc_server_t *s = ctx->grpc;
  int rc = 0;
  rc |= ic_rpc_server_add_unary(s, SVC "LookupRoute", lookup_route, ctx);
  rc |= ic_rpc_server_add_unary(s, SVC "GetCacheState", get_cache_state, ctx);
  rc |= ic_rpc_server_add_unary(s, SVC "PublishEvent", publish_event, ctx);
  rc |= ic_rpc_server_add_unary(s, SVC "RenderTemplate", render_template, ctx);
  rc |= ic_rpc_server_add_unary(s, SVC "LookupPDRoute", lookup_pd_route, ctx);
  static const ic_rpc_stream_handler_t report = {
      .on_start = report_start, .on_msg = report_msg, .on_end = report_end};
  rc |= ic_rpc_server_add_stream(s, SVC "ReportCacheState", IC_RPC_CLIENT_STREAM, &report, ctx);
  static const char *const services[] = {"inferencecache.v1alpha1.InferenceCache", NULL};
  rc |= ic_rpc_server_add_health(s, services);
  rc |= ic_rpc_server_add_reflection(s, ic_proto_descriptor_set, ic_proto_descriptor_set_len);
  rc |= server_hub_register(ctx);
  return rc ? -1 : 0;
}
