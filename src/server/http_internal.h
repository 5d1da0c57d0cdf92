/* Private interface between the server's HTTP files (http_public.c, http_controller.c,
 * snapshot_json.c, probe.c): the listener state hung off server_ctx_t.http / .auth. */
#ifndef IC_SERVER_HTTP_INTERNAL_H
#define IC_SERVER_HTTP_INTERNAL_H
#include <pthread.h>

#include "ic/auth.h"
#include "ic/buf.h"
#include "ic/http.h"
#include "ic/index.h"
#include "server.h"

#define SERVER_PROBE_STRIPES 64

struct server_http {
  ic_http_server_t *pub; /* --http-bind-address: /healthz /readyz /metrics */
  ic_http_server_t *ctl; /* --snapshot-bind-address: /snapshot /policy /probe */
  pthread_mutex_t probe_mu[SERVER_PROBE_STRIPES]; /* serialise probes per (backend, model) */
};

struct server_auth {
  ic_auth_kube_t *kube;
  ic_auth_t *snapshot, *policy, *probe;
};

/* snapshot_json.c: the /snapshot body (one JSON object + "\n"), Go encoding/json bytes. */
int server_snapshot_json(const ic_index_snapshot_t *s, ic_buf_t *out);
/* Inserts "speculative":{...} before the closing brace of a snapshot body once the index has
 * recorded a prediction (docs/ranking.md, section 3); leaves the body as it is otherwise. */
int server_snapshot_predict_json(ic_index_t *ix, ic_buf_t *b);

/* probe.c: runs the three-stage probe and writes the response JSON + "\n" into out. */
typedef struct server_probe_result {
  const char *ingest, *routing, *t2; /* "ok" | "failed" | "skipped" */
  char stage_err[3][512];            /* message per stage (ingest, routing, t2), "" = none */
} server_probe_result_t;
void server_probe_run(server_ctx_t *ctx, const char *backend, const char *model,
                      const char *hash_scheme, const char *backend_type,
                      server_probe_result_t *res);
int server_probe_json(const char *backend, const server_probe_result_t *res, ic_buf_t *out);

/* http_controller.c */
int server_http_controller_routes(server_ctx_t *ctx, ic_http_server_t *s);
/* Adds a controller-listener route (rt.ud = ctx) guarded by the reviewer of `audience` (one of
 * the server_auth fields; none under --insecure-disable-auth). */
typedef enum { SERVER_AUD_SNAPSHOT, SERVER_AUD_POLICY, SERVER_AUD_PROBE } server_audience_t;
int server_http_add_controller_route(server_ctx_t *ctx, ic_http_server_t *s, ic_http_route_t rt,
                                     server_audience_t audience);
/* http_prompts.c: POST|PUT|GET /prompttemplates on the controller listener. */
int server_http_prompt_routes(server_ctx_t *ctx, ic_http_server_t *s);
/* warmup.c: PUT /reporters on the controller listener; the warm-up /readyz body. */
int server_http_reporters_route(server_ctx_t *ctx, ic_http_server_t *s);
void server_warmup_describe(server_ctx_t *ctx, ic_buf_t *out);
/* http_public.c */
int server_http_public_routes(server_ctx_t *ctx, ic_http_server_t *s);

#endif
