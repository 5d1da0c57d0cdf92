/* The public HTTP listener (docs/server.md): /healthz (liveness), /readyz (follows the
 * server's readiness, 503 once shutdown begins) and /metrics (Prometheus text exposition). */
#include <stdatomic.h>

#include "http_internal.h"
#include "ic/err.h"

static void h_healthz(ic_http_req_t *r, void *ud) {
  (void)ud;
  ic_http_reply(r, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void h_readyz(ic_http_req_t *r, void *ud) {
  server_ctx_t *ctx = ud;
  if (atomic_load(&ctx->ready))
    ic_http_reply(r, 200, "text/plain; charset=utf-8", "ok\n", 3);
  else
    ic_http_reply_error(r, 503, "not ready\n");
}

static void h_metrics(ic_http_req_t *r, void *ud) {
  server_ctx_t *ctx = ud;
  ic_buf_t b = IC_BUF_INIT;
  if (ic_metrics_render(ctx->metrics, &b) != 0) {
    ic_buf_free(&b);
    ic_http_reply_error(r, 500, "render metrics failed");
    return;
  }
  size_t n;
  char *body = ic_buf_detach(&b, &n);
  ic_http_reply_take(r, 200, "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", body,
                     n);
}

int server_http_public_routes(server_ctx_t *ctx, ic_http_server_t *s) {
  ic_http_route_t routes[] = {
      {.path = "/healthz", .handler = h_healthz, .ud = ctx},
      {.path = "/readyz", .handler = h_readyz, .ud = ctx},
      {.path = "/metrics", .handler = h_metrics, .ud = ctx, .gzip = true},
  };
  for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
    int rc = ic_http_add_route(s, &routes[i]);
    if (rc) return rc;
  }
  return 0;
}
