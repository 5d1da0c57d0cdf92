/* --tokenizer-models-dir wiring: loads the prompt registry (lib/prompt) at start, registers its
 * metrics, adapts it to lib/svc's prompt-encoder hook, and runs prompt_text LookupRoutes on the
 * tokenizer worker pool, which answers their (deferred) gRPC calls. */
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/err.h"
#include "ic/log.h"
#include "ic/prompt.h"
#include "ic/rpc.h"
#include "ic/svc.h"
#include "server.h"

static const double TOKENIZE_BUCKETS[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                          0.0025,  0.005,  0.01,    0.025,  0.1};

/* The pool's depth at every scrape: how far --tokenizer-threads is behind the offered load. */
static ic_metric_family_t *g_in_flight;
static void collect_pool(void *ud) {
  server_ctx_t *ctx = ud;
  if (!ctx->prompt_pool || !g_in_flight) return;
  ic_prompt_pool_stats_t st;
  ic_prompt_pool_stats(ctx->prompt_pool, &st);
  const char *q[1] = {"queued"}, *r[1] = {"running"};
  ic_metric_t *c = ic_metric_child(g_in_flight, q);
  if (c) ic_metric_set(c, st.queued);
  if ((c = ic_metric_child(g_in_flight, r))) ic_metric_set(c, st.running);
}

int server_prompts_init(server_ctx_t *ctx) {
  const char *dir = ctx->flags.tokenizer_models_dir;
  if (!dir || !*dir) return 0;
  static const char *const model[] = {"model"};
  static const char *const result[] = {"result"};
  ic_prompt_config_t cfg = {
      .tokenize_seconds = ic_metrics_histogram(
          ctx->metrics, "inferencecache_prompt_tokenize_seconds",
          "Time to render (chat template) and tokenize a LookupRoute prompt_text, per model.", 1,
          model, TOKENIZE_BUCKETS, sizeof TOKENIZE_BUCKETS / sizeof TOKENIZE_BUCKETS[0]),
      .prefix_cache_lookups =
          ic_metrics_counter(ctx->metrics, "inferencecache_prompt_prefix_cache_lookups_total",
                             "prompt_text prefix-cache lookups by result (hit: a cached prompt "
                             "prefix was reused; miss).",
                             1, result),
  };
  ctx->prompt_shed = ic_metrics_counter(
      ctx->metrics, "inferencecache_prompt_tokenize_shed_total",
      "prompt_text tokenizations shed because the in-flight bound was reached (answered NO_HINT "
      "without token_ids), per model.",
      1, model);
  char err[512];
  int rc = ic_prompt_registry_load(dir, &cfg, &ctx->prompts, err, sizeof err);
  if (rc) {
    ic_log_error("tokenizer_models_dir_load", IC_LS("tokenizer_models_dir", dir),
                 IC_LS("err", err));
    return rc;
  }
  int threads =
      ctx->flags.tokenizer_threads > 0 ? ctx->flags.tokenizer_threads : ic_rpc_usable_cpus();
  /* Workers at nice 10, like the maintenance thread: a completion-queue thread woken for a
   * token-id lookup or an ingest preempts a long tokenization at once, and a saturated server
   * still gives the workers all the CPU the other threads leave. */
  ctx->prompt_pool = ic_prompt_pool_new(threads, IC_SVC_MAX_CONCURRENT_TOKENIZE, 10);
  if (!ctx->prompt_pool) {
    ic_log_error("tokenizer_threads_start_failed", IC_LI("tokenizer_threads", threads));
    ic_prompt_registry_free(ctx->prompts);
    ctx->prompts = NULL;
    return IC_ENOMEM;
  }
  static const char *const state[] = {"state"};
  g_in_flight = ic_metrics_gauge(ctx->metrics, "inferencecache_prompt_tokenize_in_flight",
                                 "prompt_text lookups on the tokenizer workers now, by state "
                                 "(queued, running); more than 64 together are shed.",
                                 1, state);
  ic_metrics_on_collect(ctx->metrics, collect_pool, ctx);
  ic_prompt_pool_stats_t ps;
  ic_prompt_pool_stats(ctx->prompt_pool, &ps);
  ic_log_info("tokenizer_models_loaded", IC_LS("tokenizer_models_dir", dir),
              IC_LI("models", ic_prompt_registry_count(ctx->prompts)),
              IC_LI("tokenizer_threads", ps.threads), IC_LI("max_in_flight", ps.max_in_flight));
  if (ic_prompt_registry_count(ctx->prompts) == 0)
    ic_log_warn("tokenizer_models_dir_empty", IC_LS("tokenizer_models_dir", dir),
                IC_LS("effect", "prompt_text lookups fail open to NO_HINT"));
  return 0;
}

int server_prompt_encode(void *ud, const char *model_id, const char *text, size_t len,
                         size_t max_ids, uint32_t **ids, size_t *n) {
  ic_tok_ids v = {0};
  int rc = ic_prompt_encode(ud, model_id, text, len, max_ids, &v, NULL);
  if (rc) {
    ic_tok_ids_free(&v);
    return rc;
  }
  *ids = v.v;
  *n = v.n;
  return 0;
}

/* A prompt_text LookupRoute on a tokenizer worker; its call was deferred by the handler. */
typedef struct lookup_job {
  ic_prompt_job_t base;
  server_ctx_t *ctx;
  ic_rpc_deferred_t *call;
  ic_svc_pending_t *p;
} lookup_job;

static void job_answer(lookup_job *j, int st, ic_buf_t *resp, const char *msg) {
  ic_rpc_deferred_reply(j->call, st, (const uint8_t *)resp->data, resp->len, msg);
  ic_buf_free(resp);
  free(j);
}

static void job_run(ic_prompt_job_t *base) {
  lookup_job *j = (lookup_job *)base;
  ic_buf_t resp = IC_BUF_INIT;
  const char *msg = NULL;
  int st;
  if (ic_rpc_deferred_cancelled(j->call)) /* the caller is gone: nobody to tokenize for */
    st = ic_svc_lookup_route_fail_open(j->ctx->svc, j->p, true, &resp);
  else
    st = ic_svc_lookup_route_finish(j->ctx->svc, j->p, &resp, &msg);
  job_answer(j, st, &resp, msg);
}

/* Its deadline passed while it was queued (TIMEOUT, as when the deadline passes during
 * tokenization), or the pool stopped with it queued (NO_HINT). */
static void job_expire(ic_prompt_job_t *base, ic_prompt_expiry_t why) {
  lookup_job *j = (lookup_job *)base;
  ic_buf_t resp = IC_BUF_INIT;
  int st =
      ic_svc_lookup_route_fail_open(j->ctx->svc, j->p, why == IC_PROMPT_EXPIRED_DEADLINE, &resp);
  job_answer(j, st, &resp, NULL);
}

int server_prompt_lookup(server_ctx_t *ctx, ic_rpc_call_t *call, ic_svc_pending_t *p,
                         ic_buf_t *resp, const char **msg) {
  /* An unknown model fails open at once: no slot, no hand-over. */
  if (!ic_prompt_registry_tokenizer(ctx->prompts, ic_svc_pending_model(p)))
    return ic_svc_lookup_route_finish(ctx->svc, p, resp, msg);
  lookup_job *j = calloc(1, sizeof *j);
  ic_rpc_deferred_t *d = j ? ic_rpc_call_defer(call) : NULL;
  if (!d) {
    free(j);
    return ic_svc_lookup_route_fail_open(ctx->svc, p, false, resp);
  }
  *j = (lookup_job){
      .base = {.deadline_ns = ic_svc_pending_deadline_ns(p), .run = job_run, .expire = job_expire},
      .ctx = ctx,
      .call = d,
      .p = p};
  int rc = ic_prompt_pool_submit(ctx->prompt_pool, &j->base);
  if (rc != 0) {
    /* The reference's shed: MaxConcurrentTokenize (64) lookups already queued or tokenizing. */
    if (rc == IC_EUNAVAIL && ctx->prompt_shed) {
      const char *lv[1] = {ic_svc_pending_model(p)};
      ic_metric_t *c = ic_metric_child(ctx->prompt_shed, lv);
      if (c) ic_metric_inc(c);
    }
    ic_buf_t out = IC_BUF_INIT;
    int st = ic_svc_lookup_route_fail_open(ctx->svc, p, false, &out);
    job_answer(j, st, &out, NULL);
  }
  return IC_RPC_OK; /* ignored: the call was deferred */
}

void server_prompts_free(server_ctx_t *ctx) {
  ic_prompt_pool_free(ctx->prompt_pool); /* after the gRPC server: nothing is queued any more */
  ctx->prompt_pool = NULL;
  ic_prompt_registry_free(ctx->prompts);
  ctx->prompts = NULL;
}
