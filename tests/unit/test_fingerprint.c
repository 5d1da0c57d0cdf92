/* lib/fingerprint: the spec's golden vectors (tests/data/fingerprint_golden.json) byte for byte,
 * the frozen anchors, and edge cases (empty, partial, exact multiples, block size 1, large). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ic/fingerprint.h"

static uint64_t dec(json_t *h) { return strtoull(json_string_value(json_object_get(h, "dec")), NULL, 10); }

static int b64val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes a 12-character base64 string of 8 bytes. */
static void b64_8(const char *s, uint8_t out[8]) {
  cr_assert_eq(strlen(s), 12);
  uint8_t tmp[9];
  size_t n = 0;
  for (int i = 0; i < 12; i += 4) {
    int v[4];
    for (int k = 0; k < 4; k++) v[k] = s[i + k] == '=' ? 0 : b64val(s[i + k]);
    uint32_t w = (uint32_t)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
    tmp[n++] = (uint8_t)(w >> 16);
    tmp[n++] = (uint8_t)(w >> 8);
    tmp[n++] = (uint8_t)w;
  }
  memcpy(out, tmp, 8);
}

Test(fingerprint, golden_vectors_match_exact_wire_bytes) {
  json_error_t err;
  json_t *root = json_load_file(IC_TEST_DATA_DIR "/fingerprint_golden.json", 0, &err);
  cr_assert_not_null(root, "fixture: %s", err.text);
  json_t *scheme = json_object_get(root, "scheme");
  cr_assert_str_eq(json_string_value(json_object_get(scheme, "algorithm")), "XXH3-64");
  cr_assert_eq(json_integer_value(json_object_get(scheme, "seed")), 1337);
  json_t *vectors = json_object_get(root, "vectors");
  cr_assert_gt(json_array_size(vectors), 0);
  size_t i;
  json_t *v;
  json_array_foreach(vectors, i, v) {
    json_t *jt = json_object_get(v, "tokens");
    size_t nt = json_array_size(jt);
    uint32_t *tokens = calloc(nt + 1, sizeof *tokens);
    for (size_t k = 0; k < nt; k++) tokens[k] = (uint32_t)json_integer_value(json_array_get(jt, k));
    int bs = (int)json_integer_value(json_object_get(v, "block_size"));
    json_t *jp = json_object_get(v, "parent_prefix");
    uint64_t parent = 0;
    if (!json_is_null(jp)) parent = dec(jp);
    json_t *jc = json_object_get(v, "content_hashes"), *jh = json_object_get(v, "prefix_hashes");
    size_t nb = ic_fp_block_count(nt, bs);
    cr_assert_eq(nb, json_array_size(jc), "%s: one content hash per full block", json_string_value(json_object_get(v, "name")));
    uint64_t out[64], content[64];
    size_t got = ic_fp_prefix_hashes(tokens, nt, bs, json_is_null(jp) ? NULL : &parent, out, 64, content);
    cr_assert_eq(got, json_array_size(jh));
    for (size_t k = 0; k < got; k++) {
      cr_assert_eq(content[k], dec(json_array_get(jc, k)));
      cr_assert_eq(content[k], ic_fp_content_hash(tokens + k * (size_t)bs, (size_t)bs));
      json_t *h = json_array_get(jh, k);
      cr_assert_eq(out[k], dec(h), "%s block %zu", json_string_value(json_object_get(v, "name")), k);
      uint8_t wire[8], want[8];
      ic_fp_to_wire(out[k], wire);
      b64_8(json_string_value(json_object_get(h, "b64be")), want);
      cr_assert_arr_eq(wire, want, 8);
      cr_assert_eq(ic_fp_from_wire(wire), out[k]);
    }
    free(tokens);
  }
  json_decref(root);
}

Test(fingerprint, frozen_anchors) {
  uint32_t t[82];
  for (uint32_t i = 0; i < 82; i++) t[i] = i;
  cr_assert_eq(ic_fp_content_hash(t + 1, 16), 16863443419780771464ULL);
  uint64_t out[8];
  cr_assert_eq(ic_fp_prefix_hashes(t, 64, 16, NULL, out, 8, NULL), 4);
  cr_assert_eq(out[3], 3888788807566526800ULL);
  uint64_t parent = 0xDEADBEEF;
  cr_assert_eq(ic_fp_prefix_hashes(t + 50, 32, 16, &parent, out, 8, NULL), 2);
  cr_assert_eq(out[1], 2998384554010166533ULL);
  uint8_t w[8];
  ic_fp_to_wire(out[1], w);
  const uint8_t want[8] = {0x29, 0x9c, 0x66, 0xdd, 0xa1, 0xcb, 0x45, 0x05};
  cr_assert_arr_eq(w, want, 8);
}

Test(fingerprint, fresh_sequence_first_prefix_is_content) {
  uint32_t t[16];
  for (uint32_t i = 0; i < 16; i++) t[i] = 7 + i;
  uint64_t out[1];
  ic_fp_prefix_hashes(t, 16, 16, NULL, out, 1, NULL);
  cr_assert_eq(out[0], ic_fp_content_hash(t, 16));
  uint64_t parent = 1;
  uint64_t with_parent[1];
  ic_fp_prefix_hashes(t, 16, 16, &parent, with_parent, 1, NULL);
  cr_assert_neq(with_parent[0], out[0], "a parent changes block 0's hash");
}

Test(fingerprint, empty_partial_and_bad_block_sizes_yield_nothing) {
  uint32_t t[10] = {0};
  uint64_t out[4] = {0};
  cr_assert_eq(ic_fp_prefix_hashes(NULL, 0, 16, NULL, out, 4, NULL), 0);
  cr_assert_eq(ic_fp_prefix_hashes(t, 10, 16, NULL, out, 4, NULL), 0);
  cr_assert_eq(ic_fp_prefix_hashes(t, 10, 0, NULL, out, 4, NULL), 0);
  cr_assert_eq(ic_fp_prefix_hashes(t, 10, -1, NULL, out, 4, NULL), 0);
  cr_assert_eq(out[0], 0, "nothing written");
}

Test(fingerprint, exact_multiples_and_block_size_one) {
  uint32_t t[48];
  for (uint32_t i = 0; i < 48; i++) t[i] = i * 3;
  uint64_t out[48];
  cr_assert_eq(ic_fp_prefix_hashes(t, 48, 16, NULL, out, 48, NULL), 3);
  cr_assert_eq(ic_fp_prefix_hashes(t, 47, 16, NULL, out, 48, NULL), 2);
  cr_assert_eq(ic_fp_prefix_hashes(t, 48, 1, NULL, out, 48, NULL), 48);
  cr_assert_eq(out[0], ic_fp_content_hash(t, 1));
  cr_assert_eq(out[1], ic_fp_chain_hash(out[0], ic_fp_content_hash(t + 1, 1)));
}

Test(fingerprint, large_input_and_capped_output_agree) {
  size_t n = 1 << 20; /* 1 Mi tokens, 65536 blocks; also a block larger than the stack buffer */
  uint32_t *t = malloc(n * sizeof *t);
  for (size_t i = 0; i < n; i++) t[i] = (uint32_t)(i * 2654435761u);
  uint64_t *all = malloc((n / 16) * sizeof *all), few[4];
  cr_assert_eq(ic_fp_prefix_hashes(t, n, 16, NULL, all, n / 16, NULL), n / 16);
  cr_assert_eq(ic_fp_prefix_hashes(t, n, 16, NULL, few, 4, NULL), n / 16, "full count even when capped");
  cr_assert_arr_eq(few, all, sizeof few);
  uint64_t big[2];
  cr_assert_eq(ic_fp_prefix_hashes(t, n, 4096, NULL, big, 2, NULL), n / 4096);
  cr_assert_eq(big[0], ic_fp_content_hash(t, 4096));
  free(all);
  free(t);
}
