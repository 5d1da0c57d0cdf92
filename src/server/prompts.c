/* --tokenizer-models-dir wiring: loads the prompt registry (lib/prompt) at start, registers its
 * metrics and adapts it to lib/svc's prompt-encoder hook for LookupRoute's prompt_text. */
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/log.h"
#include "ic/prompt.h"
#include "ic/rpc.h"
#include "ic/svc.h"
#include "server.h"

static const double TOKENIZE_BUCKETS[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                          0.0025,  0.005,  0.01,    0.025,  0.1};

/* Unary handlers run on the gRPC completion-queue threads (--grpc-threads, default one per
 * usable CPU; lib/rpc caps them at 64), so the reference's 64-slot shedding would never fire here
 * and long prompts would queue every other call behind them. One thread is always kept free of
 * tokenizing: min(64, threads - 1), at least 1. */
static int max_in_flight(const server_ctx_t *ctx) {
  int threads = ctx->flags.grpc_threads > 0 ? ctx->flags.grpc_threads : ic_rpc_usable_cpus();
  if (threads > 64) threads = 64;
  int n = threads - 1;
  if (n > IC_SVC_MAX_CONCURRENT_TOKENIZE) n = IC_SVC_MAX_CONCURRENT_TOKENIZE;
  return n < 1 ? 1 : n;
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
      .shed = ic_metrics_counter(ctx->metrics, "inferencecache_prompt_tokenize_shed_total",
                                 "prompt_text tokenizations shed because the in-flight bound was "
                                 "reached (answered NO_HINT without token_ids), per model.",
                                 1, model),
      .max_in_flight = max_in_flight(ctx),
  };
  char err[512];
  int rc = ic_prompt_registry_load(dir, &cfg, &ctx->prompts, err, sizeof err);
  if (rc) {
    ic_log_error("tokenizer_models_dir_load", IC_LS("tokenizer_models_dir", dir),
                 IC_LS("err", err));
    return rc;
  }
  ic_log_info("tokenizer_models_loaded", IC_LS("tokenizer_models_dir", dir),
              IC_LI("models", ic_prompt_registry_count(ctx->prompts)),
              IC_LI("max_in_flight", cfg.max_in_flight));
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

void server_prompts_free(server_ctx_t *ctx) {
  ic_prompt_registry_free(ctx->prompts);
  ctx->prompts = NULL;
}
