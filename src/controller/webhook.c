/* HTTPS admission webhook server: one lib/http listener (TLS files reloaded by lib/http when they
 * change) whose seven routes hand the AdmissionReview body to lib/admission and send its answer. */
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/http.h"
#include "ic/log.h"

/* Route user data: which webhook a route serves and the server it belongs to. */
typedef struct route_ud {
  webhook_server_t *srv;
  ic_admission_hook_t hook;
} route_ud_t;

struct webhook_server {
  ic_http_server_t *http;
  ic_admission_config_t adm;
  route_ud_t routes[IC_ADM_COUNT];
};

static void handle(ic_http_req_t *r, void *ud) {
  route_ud_t *ru = ud;
  size_t len = 0;
  const char *body = ic_http_req_body(r, &len);
  if (ic_http_req_body_too_large(r)) {
    ic_http_reply_error(r, 413, "request body too large");
    return;
  }
  const char *ct = ic_http_req_header(r, "Content-Type");
  if (ct && strncmp(ct, "application/json", 16) != 0) {
    char msg[300];
    snprintf(msg, sizeof msg, "contentType=%s, expected application/json", ct);
    ic_http_reply_error(r, 400, msg);
    return;
  }
  char *out = NULL;
  size_t out_len = 0;
  int rc = ic_admission_review(&ru->srv->adm, ru->hook, body ? body : "", len, &out, &out_len);
  if (rc == IC_EINVAL) {
    ic_log_warn("webhook_bad_request", IC_LS("path", ic_http_req_path(r)), IC_LS("error", out ? out : ""));
    ic_http_reply_error(r, 400, out ? out : "bad request");
    free(out);
    return;
  }
  if (rc != 0 || !out) {
    free(out);
    ic_http_reply_error(r, 500, "admission failed");
    return;
  }
  ic_http_reply_take(r, 200, "application/json", out, out_len);
}

webhook_server_t *webhook_start(const webhook_config_t *cfg, char *err, size_t errlen) {
  webhook_server_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->adm = cfg->admission;
  bool tls = cfg->cert_file && *cfg->cert_file && cfg->key_file && *cfg->key_file;
  ic_http_config_t hc = {.bind = cfg->bind ? cfg->bind : ":9443",
                         .threads = cfg->threads ? cfg->threads : 2,
                         .idle_timeout_s = 60,
                         .max_body = 8u << 20, /* Pods with large env/config maps still fit */
                         .tls_cert_file = tls ? cfg->cert_file : NULL,
                         .tls_key_file = tls ? cfg->key_file : NULL,
                         .name = "webhook"};
  s->http = ic_http_new(&hc);
  if (!s->http) {
    snprintf(err, errlen, "cannot create the webhook listener (check the certificate and key paths)");
    free(s);
    return NULL;
  }
  for (int h = 0; h < IC_ADM_COUNT; h++) {
    s->routes[h].srv = s;
    s->routes[h].hook = (ic_admission_hook_t)h;
    ic_http_route_t rt = {.path = ic_admission_path((ic_admission_hook_t)h), .methods = "POST", .handler = handle,
                          .ud = &s->routes[h]};
    if (ic_http_add_route(s->http, &rt) != 0) {
      snprintf(err, errlen, "cannot register webhook route %s", rt.path);
      webhook_stop(s);
      return NULL;
    }
  }
  if (ic_http_start(s->http, err, errlen) != 0) {
    webhook_stop(s);
    return NULL;
  }
  ic_log_info("webhook_serving", IC_LS("bind", hc.bind), IC_LB("tls", tls), IC_LI("port", ic_http_port(s->http)));
  return s;
}

int webhook_port(const webhook_server_t *s) { return s ? ic_http_port(s->http) : -1; }

void webhook_stop(webhook_server_t *s) {
  if (!s) return;
  if (s->http) {
    ic_http_stop(s->http, 5000);
    ic_http_free(s->http);
  }
  free(s);
}
