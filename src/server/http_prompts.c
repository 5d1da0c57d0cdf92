/* PromptTemplates on the controller-facing listener (docs/chattemplate.md): POST|PUT
 * /prompttemplates replaces the server's templates (lib/promptstore), GET lists them; same
 * policy-audience TokenReview as /policy unless --insecure-disable-auth. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"
#include "ic/err.h"
#include "ic/log.h"
#include "ic/promptstore.h"

#define PROMPTTEMPLATES_MAX_BODY (8u << 20)

static void h_prompttemplates(ic_http_req_t *r, void *ud) {
  server_ctx_t *ctx = ud;
  if (!strcmp(ic_http_req_method(r), "GET")) {
    char *list = ic_promptstore_list_json(ctx->templates);
    if (!list) {
      ic_http_reply_error(r, 500, "list prompt templates failed");
      return;
    }
    ic_http_reply_take(r, 200, "application/json", list, strlen(list));
    return;
  }
  if (ic_http_req_body_too_large(r)) {
    ic_http_reply_error(r, 413, "prompt templates body over 8 MiB\n");
    return;
  }
  size_t n;
  const char *body = ic_http_req_body(r, &n);
  char err[512], *report = NULL;
  int rc = ic_promptstore_replace(ctx->templates, body, n, &report, err, sizeof err);
  if (rc) {
    char full[600];
    snprintf(full, sizeof full, "%s\n", rc == IC_ENOMEM ? "out of memory" : err);
    ic_http_reply_error(r, rc == IC_ENOMEM ? 500 : 400, full);
    return;
  }
  if (report && strstr(report, "\"rejected\":[{"))
    ic_log_warn("prompttemplates_rejected", IC_LS("report", report));
  if (!report) {
    ic_http_reply(r, 200, "application/json", "{}", 2);
    return;
  }
  ic_http_reply_take(r, 200, "application/json", report, strlen(report));
}

int server_http_prompt_routes(server_ctx_t *ctx, ic_http_server_t *s) {
  return server_http_add_controller_route(ctx, s,
                                          (ic_http_route_t){.path = "/prompttemplates",
                                                            .methods = "GET, POST, PUT",
                                                            .handler = h_prompttemplates,
                                                            .max_body = PROMPTTEMPLATES_MAX_BODY},
                                          SERVER_AUD_POLICY);
}
