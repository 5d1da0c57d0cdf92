/* RenderTemplate wiring: the PromptTemplate store (lib/promptstore) the controller pushes to
 * (http_prompts.c), fingerprinting with the --tokenizer-models-dir tokenizers, adapted to
 * lib/svc's RenderTemplate hook (docs/chattemplate.md). */
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/fingerprint.h"
#include "ic/prompt.h"
#include "ic/promptstore.h"
#include "ic/svc.h"
#include "server.h"

static const ic_tokenizer *model_tokenizer(void *ud, const char *model_id) {
  server_ctx_t *ctx = ud;
  return ctx->prompts ? ic_prompt_registry_tokenizer(ctx->prompts, model_id) : NULL;
}

int server_templates_init(server_ctx_t *ctx) {
  static const char *const code[] = {"reason_code"};
  ic_promptstore_config_t cfg = {
      .block_size = ctx->flags.engine_block_size,
      .tokenizer = model_tokenizer,
      .tokenizer_ud = ctx,
      .renders = ic_metrics_counter(ctx->metrics, "inferencecache_render_template_total",
                                    "RenderTemplate answers by reason code.", 1, code),
  };
  ctx->templates = ic_promptstore_new(&cfg);
  return ctx->templates ? 0 : IC_ENOMEM;
}

void server_render_template(void *ud, const char *ref, const char *tenant_id, size_t nvars,
                            const char *const *keys, const char *const *values,
                            ic_svc_render_result_t *out) {
  server_ctx_t *ctx = ud;
  ic_promptstore_result_t res;
  if (ic_promptstore_render(ctx->templates, ref, tenant_id, nvars, keys, values, &res) != 0) {
    out->reason_code = "RENDER_ERROR";
    return;
  }
  out->reason_code = res.reason_code;
  out->text = res.text; /* handed over: lib/svc frees it */
  out->text_len = res.text_len;
  memcpy(out->revision, res.revision, sizeof out->revision);
  out->has_stable_hash = res.has_stable_hash;
  memcpy(out->stable_hash, res.stable_hash, sizeof out->stable_hash);
}

void server_templates_free(server_ctx_t *ctx) {
  ic_promptstore_free(ctx->templates);
  ctx->templates = NULL;
}
