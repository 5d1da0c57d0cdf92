/* lib/kvevents decoder: byte-exact msgpack samples of every encoding in the wild (the
 * reference's decoder examples A-F, vLLM map envelope, SGLang negative hashes, bin/str hashes, Go
 * fixed-width ints) and the per-event malformed/unknown accounting. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/kvevents.h"

static size_t unhex(const char *hex, uint8_t **out) {
  size_t n = strlen(hex) / 2;
  uint8_t *b = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    b[i] = (uint8_t)v;
  }
  *out = b;
  return n;
}

/* Holds the payload alive with the batch (borrowed pointers). */
typedef struct sample {
  uint8_t *buf;
  size_t len;
  ic_kv_batch_t b;
  int rc;
} sample_t;

static void decode_hex(sample_t *s, const char *hex) {
  s->len = unhex(hex, &s->buf);
  ic_kv_batch_init(&s->b);
  s->rc = ic_kv_decode(&s->b, s->buf, s->len);
}

static void sample_free(sample_t *s) {
  ic_kv_batch_free(&s->b);
  free(s->buf);
}

static uint64_t hash_u64(const ic_kv_hash_t *h) {
  uint8_t tmp[8];
  const uint8_t *p = ic_kv_hash_bytes(h, tmp);
  cr_assert_eq(h->len, 8);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

#define HEX_E "92cb40000000000000009196ab426c6f636b53746f7265649107c092010202c0"
#define HEX_E2 "92cb40080000000000009192ac426c6f636b52656d6f7665649107"
#define HEX_A                                                                                      \
  "92cb41da85c93c6000009396ab426c6f636b53746f726564920a0bc09400010203cc80c092ac426c6f636b52656d"   \
  "6f766564910491b0416c6c426c6f636b73436c6561726564"
#define HEX_B                                                                                      \
  "93cb41da85c93c6000009396ab426c6f636b53746f726564920a0bc0940001020340c092ac426c6f636b52656d6f"   \
  "766564910491b0416c6c426c6f636b73436c656172656403"
#define HEX_C                                                                                      \
  "93cb3ff00000000000009298ab426c6f636b53746f72656491cff8cb3b7b73b80fc20792050602c0a3475055c093"   \
  "ac426c6f636b52656d6f76656491cff8cb3b7b73b80fc2a347505500"
#define HEX_D                                                                                      \
  "93cb3ff4000000000000938ba474797065ab426c6f636b53746f726564ac626c6f636b5f686173686573910ab170"   \
  "6172656e745f626c6f636b5f68617368c0a9746f6b656e5f696473920102aa626c6f636b5f73697a6502a76c6f72"   \
  "615f6964c0a66d656469756da3475055a96c6f72615f6e616d65c0aa65787472615f6b65797391c0a967726f7570"   \
  "5f69647800b26b765f63616368655f737065635f6b696e64ae66756c6c5f617474656e74696f6e84a474797065ac"   \
  "426c6f636b52656d6f766564ac626c6f636b5f686173686573910aa66d656469756da3475055a967726f75705f69"   \
  "64780081a474797065b0416c6c426c6f636b73436c656172656400"
#define HEX_F                                                                                      \
  "92cb00000000000000009296ab426c6f636b53746f72656492cde000cde001c0946465666702c096ab426c6f636b"   \
  "53746f72656491cde002cde00192686902c0"
#define HEX_MAPENV                                                                                 \
  "83a27473cb3ff8000000000000a66576656e7473938ca474797065ab426c6f636b53746f726564ac626c6f636b5f"   \
  "68617368657391cfffffffffffffffffb1706172656e745f626c6f636b5f68617368c0a9746f6b656e5f69647394"   \
  "01020304aa626c6f636b5f73697a6502a76c6f72615f6964c0a66d656469756da3435055a96c6f72615f6e616d65"   \
  "a873716c2d6c6f7261aa65787472615f6b65797392c0c0a967726f75705f69647800b26b765f63616368655f7370"   \
  "65635f6b696e64ae66756c6c5f617474656e74696f6ebc6b765f63616368655f737065635f736c6964696e675f77"   \
  "696e646f77c082a474797065a74d797374657279a1780181a474797065b0416c6c426c6f636b73436c6561726564"   \
  "b2646174615f706172616c6c656c5f72616e6b02"
#define HEX_SGNEG                                                                                  \
  "93cb40000000000000009396ab426c6f636b53746f72656491fbc092090902c096ab426c6f636b53746f72656491"   \
  "fafb92080802c092ac426c6f636b52656d6f76656491fac0"
#define HEX_BIN                                                                                    \
  "92cb40000000000000009295ab426c6f636b53746f72656492c40401020304c402aabbc094010203040292ac426c"   \
  "6f636b52656d6f76656491c402aabb"
#define HEX_MALF                                                                                   \
  "92cb40080000000000009896ab426c6f636b53746f7265649101c092010202c095ab426c6f636b53746f72656491"   \
  "c0c09201020295ab426c6f636b53746f7265649102c09201020096ab426c6f636b53746f7265649103c092010202"   \
  "9101c093ab426c6f636b53746f7265649104c081ac626c6f636b5f686173686573910592ac426c6f636b52656d6f"   \
  "7665649101"
#define HEX_STR "92cb3ff00000000000009195ab426c6f636b53746f72656492a2616205c0940101020202"
/* REF's Go encoder: fixed-width int64/int32 everywhere. */
#define HEX_GOFIXED                                                                                \
  "92cb00000000000000009196ab426c6f636b53746f72656491d3000000000000e000c092d30000000000000001d3"   \
  "0000000000000002d200000002c0"

Test(kvevents_decode, example_E_minimal_positional_block_stored) {
  sample_t s;
  decode_hex(&s, HEX_E);
  cr_assert_eq(s.len, 32);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.ts, 2.0);
  cr_assert_eq(s.b.nevents, 1);
  const ic_kv_event_t *ev = &s.b.events[0];
  cr_assert_eq(ev->type, IC_KV_EV_STORED);
  cr_assert_eq(ev->nhashes, 1);
  cr_assert_eq(hash_u64(&ev->hashes[0]), 7);
  cr_assert_not(ev->has_parent);
  cr_assert_eq(ev->ntokens, 2);
  cr_assert_eq(ev->tokens[0], 1);
  cr_assert_eq(ev->tokens[1], 2);
  cr_assert_eq(ev->block_size, 2);
  cr_assert_not(ev->has_lora_id);
  cr_assert_eq(ev->tier, IC_KV_TIER_T1);
  cr_assert_not(s.b.map_envelope);
  sample_free(&s);
}

Test(kvevents_decode, example_E2_block_removed) {
  sample_t s;
  decode_hex(&s, HEX_E2);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.ts, 3.0);
  cr_assert_eq(s.b.nevents, 1);
  cr_assert_eq(s.b.events[0].type, IC_KV_EV_REMOVED);
  cr_assert_eq(hash_u64(&s.b.events[0].hashes[0]), 7);
  sample_free(&s);
}

Test(kvevents_decode, example_A_legacy_two_element_envelope) {
  sample_t s;
  decode_hex(&s, HEX_A);
  cr_assert_eq(s.len, 70);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(ic_kv_ts_us(s.b.ts), 1779901681500000LL);
  cr_assert_not(s.b.has_dp_rank);
  cr_assert_eq(s.b.nevents, 3);
  const ic_kv_event_t *st = &s.b.events[0];
  cr_assert_eq(st->type, IC_KV_EV_STORED);
  cr_assert_eq(st->nhashes, 2);
  cr_assert_eq(hash_u64(&st->hashes[0]), 10);
  cr_assert_eq(hash_u64(&st->hashes[1]), 11);
  cr_assert_eq(st->block_size, 128);
  cr_assert_eq(st->ntokens, 4);
  cr_assert_eq(st->tokens[3], 3);
  cr_assert_eq(s.b.events[1].type, IC_KV_EV_REMOVED);
  cr_assert_eq(hash_u64(&s.b.events[1].hashes[0]), 4);
  cr_assert_eq(s.b.events[2].type, IC_KV_EV_CLEARED);
  cr_assert_eq(s.b.seen[IC_KV_EV_STORED], 1);
  cr_assert_eq(s.b.seen[IC_KV_EV_REMOVED], 1);
  cr_assert_eq(s.b.seen[IC_KV_EV_CLEARED], 1);
  sample_free(&s);
}

Test(kvevents_decode, example_B_sglang_envelope_keeps_dp_rank) {
  sample_t s;
  decode_hex(&s, HEX_B);
  cr_assert_eq(s.rc, 0);
  cr_assert(s.b.has_dp_rank);
  cr_assert_eq(s.b.dp_rank, 3);
  cr_assert_eq(s.b.nevents, 3);
  cr_assert_eq(s.b.events[0].block_size, 64);
  cr_assert_eq(s.b.events[0].ntokens, 4);
  sample_free(&s);
}

Test(kvevents_decode, example_C_medium_uint64_hash_int_parent) {
  sample_t s;
  decode_hex(&s, HEX_C);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.dp_rank, 0);
  cr_assert(s.b.has_dp_rank);
  const ic_kv_event_t *st = &s.b.events[0];
  cr_assert_eq(hash_u64(&st->hashes[0]), 17927488143086849986ULL);
  cr_assert(st->has_parent);
  cr_assert_eq(hash_u64(&st->parent), 7);
  cr_assert_eq(st->medium_len, 3);
  cr_assert_eq(memcmp(st->medium, "GPU", 3), 0);
  cr_assert_eq(st->tier, IC_KV_TIER_T1);
  cr_assert_null(st->lora_name);
  uint8_t tmp[8];
  const uint8_t *wire = ic_kv_hash_bytes(&st->hashes[0], tmp);
  const uint8_t want[8] = {0xf8, 0xcb, 0x3b, 0x7b, 0x73, 0xb8, 0x0f, 0xc2};
  cr_assert_eq(memcmp(wire, want, 8), 0);
  cr_assert_eq(s.b.events[1].type, IC_KV_EV_REMOVED);
  cr_assert_eq(s.b.events[1].tier, IC_KV_TIER_T1);
  sample_free(&s);
}

Test(kvevents_decode, example_D_vllm_026_map_events) {
  sample_t s;
  decode_hex(&s, HEX_D);
  cr_assert_eq(s.len, 257);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.ts, 1.25);
  cr_assert_eq(s.b.nevents, 3);
  const ic_kv_event_t *st = &s.b.events[0];
  cr_assert_eq(st->type, IC_KV_EV_STORED);
  cr_assert_eq(hash_u64(&st->hashes[0]), 10);
  cr_assert_eq(st->block_size, 2);
  cr_assert_eq(st->ntokens, 2);
  cr_assert(st->has_group_idx);
  cr_assert_eq(st->group_idx, 0);
  cr_assert_not(st->has_lora_id);
  cr_assert_eq(s.b.events[1].type, IC_KV_EV_REMOVED);
  cr_assert_eq(s.b.events[2].type, IC_KV_EV_CLEARED);
  cr_assert_eq(s.b.unknown_tags, 0);
  sample_free(&s);
}

Test(kvevents_decode, example_F_chained_events) {
  sample_t s;
  decode_hex(&s, HEX_F);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.nevents, 2);
  cr_assert_eq(hash_u64(&s.b.events[0].hashes[1]), 0xE001);
  cr_assert(s.b.events[1].has_parent);
  cr_assert_eq(hash_u64(&s.b.events[1].parent), 0xE001);
  cr_assert_eq(s.b.events[1].tokens[1], 105);
  sample_free(&s);
}

Test(kvevents_decode, map_envelope_map_events_cpu_medium_lora_name_unknown_tag) {
  sample_t s;
  decode_hex(&s, HEX_MAPENV);
  cr_assert_eq(s.rc, 0);
  cr_assert(s.b.map_envelope);
  cr_assert_eq(s.b.ts, 1.5);
  cr_assert(s.b.has_dp_rank);
  cr_assert_eq(s.b.dp_rank, 2);
  cr_assert_eq(s.b.nevents, 2, "the Mystery event is skipped");
  cr_assert_eq(s.b.unknown_tags, 1);
  const ic_kv_event_t *st = &s.b.events[0];
  cr_assert_eq(hash_u64(&st->hashes[0]), UINT64_MAX);
  cr_assert_eq(st->tier, IC_KV_TIER_T2, "medium CPU is tier 2");
  cr_assert_eq(st->lora_name_len, 8);
  cr_assert_eq(memcmp(st->lora_name, "sql-lora", 8), 0);
  cr_assert_eq(s.b.events[1].type, IC_KV_EV_CLEARED);
  sample_free(&s);
}

Test(kvevents_decode, sglang_negative_int_hashes_are_twos_complement) {
  sample_t s;
  decode_hex(&s, HEX_SGNEG);
  cr_assert_eq(s.rc, 0);
  cr_assert_not(s.b.has_dp_rank, "nil rank");
  cr_assert_eq(s.b.nevents, 3);
  cr_assert_eq(hash_u64(&s.b.events[0].hashes[0]), (uint64_t)-5);
  cr_assert_eq(hash_u64(&s.b.events[1].parent), (uint64_t)-5);
  cr_assert_eq(hash_u64(&s.b.events[2].hashes[0]), (uint64_t)-6);
  sample_free(&s);
}

Test(kvevents_decode, bin_hashes_pass_through_verbatim) {
  sample_t s;
  decode_hex(&s, HEX_BIN);
  cr_assert_eq(s.rc, 0);
  const ic_kv_event_t *st = &s.b.events[0];
  cr_assert_eq(st->hashes[0].len, 4);
  cr_assert_eq(memcmp(st->hashes[0].ext, "\x01\x02\x03\x04", 4), 0);
  cr_assert_eq(st->hashes[1].len, 2);
  cr_assert_eq(memcmp(s.b.events[1].hashes[0].ext, "\xaa\xbb", 2), 0);
  sample_free(&s);
}

Test(kvevents_decode, str_hash_is_its_bytes_and_small_int_is_8_bytes) {
  sample_t s;
  decode_hex(&s, HEX_STR);
  cr_assert_eq(s.rc, 0);
  const ic_kv_event_t *st = &s.b.events[0];
  cr_assert_eq(st->hashes[0].len, 2);
  cr_assert_eq(memcmp(st->hashes[0].ext, "ab", 2), 0);
  cr_assert_eq(hash_u64(&st->hashes[1]), 5);
  cr_assert_not(st->has_lora_id, "5-element tuple has no lora_id");
  sample_free(&s);
}

Test(kvevents_decode, go_fixed_width_ints_decode_like_compact) {
  sample_t s;
  decode_hex(&s, HEX_GOFIXED);
  cr_assert_eq(s.rc, 0);
  const ic_kv_event_t *st = &s.b.events[0];
  cr_assert_eq(hash_u64(&st->hashes[0]), 0xE000);
  cr_assert_eq(st->ntokens, 2);
  cr_assert_eq(st->tokens[1], 2);
  cr_assert_eq(st->block_size, 2);
  sample_free(&s);
}

Test(kvevents_decode, malformed_events_are_counted_and_the_rest_kept) {
  sample_t s;
  decode_hex(&s, HEX_MALF);
  cr_assert_eq(s.rc, 0);
  /* good stored, nil hash, block_size 0, array lora_id, nil event, truncated tuple,
   * map without type, good removed */
  cr_assert_eq(s.b.nevents, 2);
  cr_assert_eq(s.b.events[0].type, IC_KV_EV_STORED);
  cr_assert_eq(hash_u64(&s.b.events[0].hashes[0]), 1);
  cr_assert_eq(s.b.events[1].type, IC_KV_EV_REMOVED);
  cr_assert_eq(hash_u64(&s.b.events[1].hashes[0]), 1);
  cr_assert_eq(s.b.malformed[IC_KV_EV_STORED], 4);
  cr_assert_eq(s.b.malformed[IC_KV_EV_UNKNOWN], 2);
  sample_free(&s);
}

Test(kvevents_decode, garbage_and_short_envelopes_fail_the_batch) {
  const char *bad[] = {
      "ff0001",    "91cb4000000000000000",   "",
      "c0",        "92cb4000000000000000c0", "92cb400000000000000091", /* truncated */
      "81a2747301" /* map envelope without events */};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    sample_t s;
    decode_hex(&s, bad[i]);
    cr_assert_eq(s.rc, IC_EPROTO, "case %zu", i);
    cr_assert_eq(s.b.nevents, 0);
    sample_free(&s);
  }
}

Test(kvevents_decode, lora_id_positional_and_undecodable_lora_id) {
  /* ["BlockStored",[1],nil,[1,2],2,7] then the same with lora_id [1] (malformed) */
  sample_t s;
  decode_hex(&s, "92cb3ff00000000000009296ab426c6f636b53746f7265649101c09201020207"
                 "96ab426c6f636b53746f7265649101c0920102029101");
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.nevents, 1);
  cr_assert(s.b.events[0].has_lora_id);
  cr_assert_eq(s.b.events[0].lora_id, 7);
  cr_assert_eq(s.b.malformed[IC_KV_EV_STORED], 1);
  sample_free(&s);
}

Test(kvevents_decode, token_ids_out_of_u32_range_is_malformed) {
  /* token -1 and 2^32 */
  sample_t s;
  decode_hex(&s, "92cb3ff00000000000009296ab426c6f636b53746f7265649101c092ff0202c0"
                 "96ab426c6f636b53746f7265649101c092cf00000001000000000202c0");
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.nevents, 0);
  cr_assert_eq(s.b.malformed[IC_KV_EV_STORED], 2);
  sample_free(&s);
}

Test(kvevents_decode, map_block_stored_requires_block_size) {
  /* {"type":"BlockStored","block_hashes":[1],"token_ids":[1,2]} */
  sample_t s;
  decode_hex(&s, "92cb3ff00000000000009183a474797065ab426c6f636b53746f726564ac626c6f636b5f"
                 "686173686573910"
                 "1a9746f6b656e5f696473920102");
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.nevents, 0);
  cr_assert_eq(s.b.malformed[IC_KV_EV_STORED], 1);
  sample_free(&s);
}

Test(kvevents_decode, batch_is_reusable_across_decodes) {
  uint8_t *a, *f;
  size_t na = unhex(HEX_A, &a), nf = unhex(HEX_F, &f);
  ic_kv_batch_t b;
  ic_kv_batch_init(&b);
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(ic_kv_decode(&b, a, na), 0);
    cr_assert_eq(b.nevents, 3);
    cr_assert_eq(ic_kv_decode(&b, f, nf), 0);
    cr_assert_eq(b.nevents, 2);
    cr_assert_eq(b.events[1].tokens[0], 104);
  }
  ic_kv_batch_free(&b);
  free(a);
  free(f);
}

Test(kvevents_decode, medium_tiers) {
  cr_assert_eq(ic_kv_medium_tier("GPU", 3), IC_KV_TIER_T1);
  cr_assert_eq(ic_kv_medium_tier("cpu", 3), IC_KV_TIER_T2);
  cr_assert_eq(ic_kv_medium_tier("CPU", 3), IC_KV_TIER_T2);
  cr_assert_eq(ic_kv_medium_tier("host", 4), IC_KV_TIER_T2);
  cr_assert_eq(ic_kv_medium_tier("DISK", 4), IC_KV_TIER_T3);
  cr_assert_eq(ic_kv_medium_tier("remote", 6), IC_KV_TIER_T3);
  cr_assert_eq(ic_kv_medium_tier("LMCache", 7), IC_KV_TIER_T2);
  cr_assert_eq(ic_kv_medium_tier("local_disk", 10), IC_KV_TIER_T3);
  cr_assert_eq(ic_kv_medium_tier("CPUX", 4), IC_KV_TIER_T1, "exact names only");
  cr_assert_eq(ic_kv_medium_tier(NULL, 0), IC_KV_TIER_T1);
  cr_assert_eq(ic_kv_medium_tier("xpu", 3), IC_KV_TIER_T1);
}

Test(kvevents_decode, ts_micros) {
  cr_assert_eq(ic_kv_ts_us(1779901681.5), 1779901681500000LL);
  cr_assert_eq(ic_kv_ts_us(2.5), 2500000);
  cr_assert_eq(ic_kv_ts_us(0), 0);
  cr_assert_eq(ic_kv_ts_us(-1), 0);
}

Test(kvevents_lora, parse_tolerates_spaces_and_trailing_comma) {
  char err[256];
  ic_kv_lora_map_t *m = ic_kv_lora_map_parse(" 1=sql-lora, 2 = chat-lora ,", err, sizeof(err));
  cr_assert_not_null(m, "%s", err);
  cr_assert_eq(ic_kv_lora_map_size(m), 2);
  cr_assert_str_eq(ic_kv_lora_map_get(m, 1), "sql-lora");
  cr_assert_str_eq(ic_kv_lora_map_get(m, 2), "chat-lora");
  cr_assert_null(ic_kv_lora_map_get(m, 3));
  ic_kv_lora_map_free(m);
  m = ic_kv_lora_map_parse("", err, sizeof(err));
  cr_assert_not_null(m);
  cr_assert_eq(ic_kv_lora_map_size(m), 0);
  ic_kv_lora_map_free(m);
}

Test(kvevents_lora, parse_rejects_malformed_items) {
  char err[256];
  const char *bad[] = {"sql-lora", "x=sql-lora", "1=", "1=a,1=b", "=a"};
  const char *msg[] = {"is not id=name", "non-integer lora id", "empty adapter name",
                       "mapped more than once", "non-integer lora id"};
  for (size_t i = 0; i < 5; i++) {
    err[0] = 0;
    cr_assert_null(ic_kv_lora_map_parse(bad[i], err, sizeof(err)), "%s", bad[i]);
    cr_assert(strstr(err, msg[i]), "%s: %s", bad[i], err);
  }
}

Test(kvevents_decode, token_ids_in_every_integer_width) {
  /* tokens 200 (uint8), 150000 (uint32), 7 (fixint), 300 (uint16), 5 (int64 d3, Go encoder) */
  sample_t s;
  decode_hex(&s, "92cb3ff00000000000009196ab426c6f636b53746f7265649101c095ccc8ce000249f007cd012c"
                 "d3000000000000000501c0");
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.nevents, 1);
  const uint32_t want[] = {200, 150000, 7, 300, 5};
  cr_assert_eq(s.b.events[0].ntokens, 5);
  for (int i = 0; i < 5; i++)
    cr_assert_eq(s.b.events[0].tokens[i], want[i]);
  sample_free(&s);
}

Test(kvevents_decode, odd_typed_optional_ints_are_skipped_whole) {
  /* map event with "group_idx":[1,[2]] before "block_size", and an envelope rank {"a":1} */
  sample_t s;
  decode_hex(&s, "93cb3ff00000000000009184a474797065ab426c6f636b53746f726564ac626c6f636b5f686173"
                 "686573910ba967726f75705f696478920191"
                 "02a9746f6b656e5f696473920102"
                 "81a1610"
                 "1");
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.nevents, 0, "no block_size: malformed, but the cursor stayed aligned");
  cr_assert_eq(s.b.malformed[IC_KV_EV_STORED], 1);
  cr_assert_not(s.b.has_dp_rank);
  sample_free(&s);
}

Test(kvevents_decode, int8_and_int16_hashes_are_8_byte_big_endian) {
  /* ["BlockRemoved",[int8 5, int16 -2, uint16 0xE000]] as REF's TestDecodeHashVariants */
  sample_t s;
  decode_hex(&s, "92cb3ff00000000000009192ac426c6f636b52656d6f76656493d005d1fffecde000");
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.b.nevents, 1);
  cr_assert_eq(hash_u64(&s.b.events[0].hashes[0]), 5);
  cr_assert_eq(hash_u64(&s.b.events[0].hashes[1]), (uint64_t)-2);
  cr_assert_eq(hash_u64(&s.b.events[0].hashes[2]), 0xE000);
  sample_free(&s);
}
