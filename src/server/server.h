/* The inferencecache-server program context: parsed flags, the index, the policy store, the
 * metrics registry with its metric handles, readiness, and the event-stream hub. One instance,
 * created by main.c and passed explicitly to every listener (gRPC handlers, HTTP handlers). */
#ifndef IC_SERVER_SERVER_H
#define IC_SERVER_SERVER_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/buf.h"
#include "ic/index.h"
#include "ic/metrics.h"

/* Forward declarations so this header does not force every user to include every module. */
struct ic_index;         /* include/ic/index.h  (lib/index) */
struct ic_policy_store;  /* include/ic/policy.h (lib/policy) */
struct ic_rpc_server;    /* include/ic/rpc.h    (lib/rpc) */
struct ic_rpc_call;      /* include/ic/rpc.h    (lib/rpc): one call */
struct server_writer_auth; /* writer_auth.c */
struct server_hub;       /* src/server/grpc_stream.c: StreamCacheEvents fan-out */
struct ic_svc;           /* include/ic/svc.h    (lib/svc): the service logic */
struct ic_prompt_registry; /* include/ic/prompt.h (lib/prompt): --tokenizer-models-dir */
struct ic_promptstore;     /* include/ic/promptstore.h (lib/promptstore): PromptTemplates */
struct ic_svc_render_result;
struct server_http;      /* src/server/http_*.c: the two HTTP listeners (http helper) */
struct server_auth;      /* src/server/http_*.c / lib/auth (http helper) */

/* Constants (the reference's) that the handlers share. */
#define SERVER_PROBE_TENANT "inferencecache.io/probe"
#define SERVER_MAX_LOOKUP_TOKENS (1u << 20)
#define SERVER_MAX_PROMPT_TEXT_BYTES (1u << 20)
#define SERVER_DEFAULT_TOKENIZE_TIMEOUT_MS 5000
#define SERVER_MAX_RECV_MESSAGE (4 * 1024 * 1024)
#define SERVER_TRIM_MIN_FREE (16u * 1024 * 1024) /* free heap bytes that trigger malloc_trim */

/* Command-line configuration (docs/server.md, "Flags"). Strings point into argv or literals and are
 * never freed. */
typedef struct server_flags {
  const char *grpc_bind_address;     /* ":9090" */
  const char *http_bind_address;     /* ":8080" */
  const char *snapshot_bind_address; /* ":8081" */
  const char *allowed_controller_sa; /* "" */
  bool insecure_disable_auth;        /* false */
  const char *controller_audience;   /* "inferencecache.io/controller" */
  const char *policy_audience;       /* "inferencecache.io/policy" */
  const char *tls_cert_file;         /* "" */
  const char *tls_key_file;          /* "" */
  const char *tokenizer_models_dir;  /* "" */
  int tokenizer_threads;             /* --tokenizer-threads, 0 = one per usable CPU */
  int engine_block_size;             /* 16 (values <= 0 keep 16) */
  const char *log_format;            /* "json" */
  const char *log_level;             /* "info" */
  /* Not reference flags: operational knobs of this port (documented in docs/server.md). */
  int grpc_threads;                  /* --grpc-threads, 0 = one per core */
  bool grpc_timing_trailer;          /* --grpc-timing-trailer (false), bench_grpc's breakdown */
  int drain_timeout_s;               /* --drain-timeout-seconds (4), bounded gRPC drain */
  /* load-aware ranking knobs (docs/ranking.md) */
  int load_max_age_ms, load_request_tokens;
  float load_weight, load_running_weight, load_overload_factor, load_overload_slack;
  /* predict-on-route knobs (docs/ranking.md, section 3) */
  int predict_ttl_ms, predict_max_entries;
  float predict_weight;
  int http_request_timeout_ms;       /* --http-request-timeout-ms (5000), both HTTP listeners */
  int http_max_connections;          /* --http-max-connections (1024) per HTTP listener */
  int http_max_connections_per_client; /* --http-max-connections-per-client (128) */
  int metrics_max_label_values;      /* --metrics-max-label-values (256), model / tenant_id */
  int max_identity_bytes;            /* --max-identity-bytes (1024), write paths */
  bool disable_cap_fair_share;       /* --disable-cap-fair-share (false) */
  int grpc_max_concurrent_streams;   /* --grpc-max-concurrent-streams (1024), per connection */
  int grpc_max_streams;              /* --grpc-max-streams (8192), streaming calls in total */
  int stream_max_subscribers;        /* --stream-max-subscribers (4096), both stream kinds */
  int stream_log_bytes;              /* --stream-log-bytes (64 MiB), StreamCacheEvents change log */
  int stream_max_queued_bytes;       /* --stream-max-queued-bytes (64 MiB), all subscribers */
  int stream_max_send_rate;          /* --stream-max-send-rate (25000 events/s), all subscribers */
  int warm_start_timeout_ms;         /* --warm-start-timeout-ms (60000), <= 0 = off (docs/ha.md) */
  int warm_start_window_ms;          /* --warm-start-window-ms (10000) */
  /* writer authentication (writer_auth.c, docs/server.md "Writer authentication") */
  const char *grpc_client_ca_file;             /* --grpc-client-ca-file ("") */
  const char *writer_auth;                     /* --writer-auth ("": off) */
  const char *writer_allowed_service_accounts; /* --writer-allowed-service-accounts */
  const char *writer_allowed_cert_names;       /* --writer-allowed-cert-names */
  const char *writer_token_audience;           /* --writer-token-audience */
  int writer_token_review_timeout_ms;          /* --writer-token-review-timeout-ms (2000) */
} server_flags_t;

struct server_ctx;
/* Predict-on-route metrics, refreshed from the index at every scrape (predict.c). */
int server_predict_metrics_init(struct server_ctx *ctx);

/* Metric handles (docs/server.md). Families are registered by main.c; children of labelled
 * families are created lazily by whoever first increments them. */
typedef struct server_metrics {
  ic_metric_family_t *server_up;            /* gauge */
  ic_metric_family_t *grpc_tls_enabled;     /* gauge */
  ic_metric_family_t *index_entries;        /* gauge {model} */
  ic_metric_family_t *lookup_calls;         /* counter {model, reason_code, hint_used} */
  ic_metric_family_t *lookup_latency;       /* histogram {model} */
  ic_metric_family_t *tenant_evictions;     /* counter {tenant_id, reason} */
  ic_metric_family_t *index_evictions;      /* counter {algorithm, reason} */
  ic_metric_family_t *snapshot_auth;        /* counter {result} (http helper) */
  ic_metric_family_t *policy_auth;          /* counter {result} (http helper) */
  ic_metric_family_t *probe_auth;           /* counter {result} (http helper) */
  ic_metric_family_t *stream_dropped;       /* counter {stream}: events a slow subscriber lost */
  ic_metric_family_t *stream_subscribers;   /* gauge {stream} */
} server_metrics_t;

typedef struct server_ctx {
  server_flags_t flags;
  const char *version; /* build-time, "dev" by default */
  const char *commit;  /* build-time, "unknown" by default */

  struct ic_index *index;         /* owned; created before listeners start */
  struct ic_policy_store *policy; /* owned; replaced atomically by POST /policy */
  ic_metrics_t *metrics;          /* owned registry */
  server_metrics_t m;

  /* "Ready" = the index is started and serving. Set true when serving starts, false
   * as soon as shutdown begins; /readyz and grpc.health.v1 follow it. */
  atomic_bool ready;
  /* Set by the signal handler thread when shutdown starts. */
  atomic_bool stopping;

  struct ic_rpc_server *grpc;  /* owned by main.c */
  struct server_hub *hub;      /* StreamCacheEvents subscribers, fed by the index listener */
  struct ic_svc *svc;          /* owned; InferenceCache handlers' logic */
  struct ic_prompt_registry *prompts; /* owned; NULL without --tokenizer-models-dir (prompts.c) */
  struct ic_prompt_pool *prompt_pool; /* owned; tokenizer workers, with prompts (prompts.c) */
  ic_metric_family_t *prompt_shed;    /* counter {model}: prompt_text lookups shed */
  struct ic_promptstore *templates;   /* owned; PromptTemplates for RenderTemplate (templates.c) */
  struct server_http *http;    /* owned by the http listeners (http helper) */
  struct server_auth *auth;    /* controller-listener auth (http helper) */
  bool grpc_tls;               /* TLS configured on the gRPC port */
  struct ic_warmstart *warm;   /* owned; warm start (warmup.c, docs/ha.md) */
  struct server_writer_auth *writer_auth; /* NULL = writers unauthenticated (writer_auth.c) */
} server_ctx_t;

/* --- flags.c --- */
/* Parses argv into ctx->flags with reference defaults. Returns 0 to run, 1 when --help was
 * printed (exit 0), 2 on a usage error (message already on stderr, exit 2). */
int server_flags_parse(server_flags_t *f, int argc, char **argv);
/* Auth-flag matrix checked at startup: returns NULL when valid, else the stderr message
 * (static or malloc'd into *owned, which the caller frees). */
const char *server_flags_validate_auth(const server_flags_t *f, char **owned);

/* --- gRPC side (grpc_*.c) --- */
/* prompts.c: loads --tokenizer-models-dir (0, or an IC_E* code: the server exits 1) and starts
 * the tokenizer worker pool, the lib/svc prompt-encoder hook, the hand-over of a pending
 * prompt_text LookupRoute to the pool (the call is answered from there; shed when the pool is
 * full), and the release (after the gRPC server is shut down: the pool answers its calls). */
int server_prompts_init(server_ctx_t *ctx);
int server_prompt_encode(void *ud, const char *model_id, const char *text, size_t len, size_t max_ids, uint32_t **ids,
                         size_t *n);
struct ic_svc_pending;
/* Returns the handler's status (the answer is in resp) unless the call was deferred. */
int server_prompt_lookup(server_ctx_t *ctx, struct ic_rpc_call *call, struct ic_svc_pending *p,
                         ic_buf_t *resp, const char **msg);
void server_prompts_free(server_ctx_t *ctx);
/* templates.c: the PromptTemplate store, lib/svc's RenderTemplate hook, the store's release. */
int server_templates_init(server_ctx_t *ctx);
void server_render_template(void *ud, const char *ref, const char *tenant_id, size_t nvars,
                            const char *const *keys, const char *const *values,
                            struct ic_svc_render_result *out);
void server_templates_free(server_ctx_t *ctx);

/* Registers InferenceCache, health and reflection on ctx->grpc. */
int server_grpc_register(server_ctx_t *ctx);
/* Stream hub: StreamCacheEvents subscribers (fed by the index change listener) and the
 * StreamMetrics ticker thread. */
struct server_hub *server_hub_new(server_ctx_t *ctx);
void server_hub_free(struct server_hub *h);
/* Registers StreamCacheEvents and StreamMetrics on ctx->grpc (called by server_grpc_register). */
int server_hub_register(server_ctx_t *ctx);
/* Publishes lib/rpc's stream counters as metrics (maintenance thread, once a second). */
void server_hub_publish_transport(struct server_hub *h);
/* Index change listener (ic_index_config_t.on_change with ud = the hub). */
void server_hub_on_change(void *hub, const ic_index_change_t *change);
void server_hub_on_change_flush(void *hub); /* ic_index_config_t.on_change_flush */

/* --- warm start (warmup.c, docs/ha.md) --- */
/* Creates ctx->warm from the flags and registers its metrics (0, or IC_ENOMEM). */
int server_warmup_init(server_ctx_t *ctx);
/* lib/svc's on_report hook (ud = ctx). */
void server_warmup_on_report(void *ud, const char *replica_id, bool full_state);
/* Starts serving: ready at once when warm start is off or already done, else a thread flips
 * ctx->ready and gRPC health once ic_warmstart_ready says so. */
void server_warmup_start(server_ctx_t *ctx);
/* Joins that thread (shutdown); ctx->warm itself is freed by main after the listeners stop. */
void server_warmup_stop(server_ctx_t *ctx);

/* --- controller auth (http helper; main.c has a weak fallback) --- */
/* Called at startup when auth is enabled: builds the in-cluster TokenReview
 * client. Returns 0, or 1 after logging in_cluster_config / kube_client (exit 1). */
int server_auth_init(server_ctx_t *ctx);

/* --- writer authentication (writer_auth.c) --- */
/* Validates the writer-auth flags and builds the checker (NULL when off); logs the start-up
 * WARN when writers are open while the HTTP endpoints need auth. Returns 0, 2 (usage error,
 * message on stderr) or 1 (cannot start, logged). */
int server_writer_auth_init(server_ctx_t *ctx);
void server_writer_auth_free(server_ctx_t *ctx);
/* Checks one write call: IC_RPC_OK, or UNAUTHENTICATED / PERMISSION_DENIED / UNAVAILABLE with
 * *msg set (static). Always OK when writer auth is off. */
int server_writer_auth_check(server_ctx_t *ctx, struct ic_rpc_call *call, const char **msg);

/* --- HTTP listeners (http helper, src/server/http_*.c) --- */
/* Open both HTTP listeners (public then snapshot); on failure returns negative IC_E* and
 * writes "listen for http: ..." / "listen for snapshot: ..." into err (cap errlen). */
int server_http_start(server_ctx_t *ctx, char *err, size_t errlen);
/* Graceful stop of both HTTP listeners within the shared deadline (ms, <0 = none). */
void server_http_stop(server_ctx_t *ctx, int deadline_ms);

#endif
