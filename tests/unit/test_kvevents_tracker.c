/* lib/kvevents tracker + apply: positional fingerprint chaining across events,
 * removals/clears, medium tiers and T2 downgrades, L2 mode, LoRA fail-closed, re-report
 * snapshot. Batches are built from msgpack bytes the way the subscriber receives them. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/fingerprint.h"
#include "ic/kvevents.h"

/* --- a tiny msgpack batch builder (msgpack-c packer) --- */
typedef struct bb {
  msgpack_sbuffer sb;
  msgpack_packer pk;
} bb_t;

static void bb_begin(bb_t *b, double ts, int nevents) {
  msgpack_sbuffer_init(&b->sb);
  msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
  msgpack_pack_array(&b->pk, 2);
  msgpack_pack_double(&b->pk, ts);
  msgpack_pack_array(&b->pk, (size_t)nevents);
}

static void pk_str(msgpack_packer *pk, const char *s) {
  msgpack_pack_str(pk, strlen(s));
  msgpack_pack_str_body(pk, s, strlen(s));
}

/* ["BlockStored", hashes, parent|nil, tokens, bs, lora|nil, medium|nil] */
static void bb_stored(bb_t *b, const uint64_t *h, int nh, const uint64_t *parent, uint32_t tok0,
                      int ntok, int bs, const int64_t *lora, const char *medium) {
  msgpack_pack_array(&b->pk, 7);
  pk_str(&b->pk, "BlockStored");
  msgpack_pack_array(&b->pk, (size_t)nh);
  for (int i = 0; i < nh; i++)
    msgpack_pack_uint64(&b->pk, h[i]);
  if (parent)
    msgpack_pack_uint64(&b->pk, *parent);
  else
    msgpack_pack_nil(&b->pk);
  if (ntok < 0) {
    msgpack_pack_nil(&b->pk);
  } else {
    msgpack_pack_array(&b->pk, (size_t)ntok);
    for (int i = 0; i < ntok; i++)
      msgpack_pack_uint32(&b->pk, tok0 + (uint32_t)i);
  }
  msgpack_pack_int(&b->pk, bs);
  if (lora)
    msgpack_pack_int64(&b->pk, *lora);
  else
    msgpack_pack_nil(&b->pk);
  if (medium)
    pk_str(&b->pk, medium);
  else
    msgpack_pack_nil(&b->pk);
}

static void bb_removed(bb_t *b, const uint64_t *h, int nh, const char *medium) {
  msgpack_pack_array(&b->pk, medium ? 3 : 2);
  pk_str(&b->pk, "BlockRemoved");
  msgpack_pack_array(&b->pk, (size_t)nh);
  for (int i = 0; i < nh; i++)
    msgpack_pack_uint64(&b->pk, h[i]);
  if (medium) pk_str(&b->pk, medium);
}

static void bb_cleared(bb_t *b) {
  msgpack_pack_array(&b->pk, 1);
  pk_str(&b->pk, "AllBlocksCleared");
}

/* Decodes and applies; returns the ops appended. */
static int bb_apply(bb_t *b, ic_kv_tracker_t *t, const ic_kv_apply_cfg_t *cfg, ic_kv_ops_t *ops,
                    ic_kv_apply_stats_t *st) {
  ic_kv_batch_t batch;
  ic_kv_batch_init(&batch);
  cr_assert_eq(ic_kv_decode(&batch, (const uint8_t *)b->sb.data, b->sb.size), 0);
  size_t before = ops->n;
  cr_assert_eq(ic_kv_apply(t, &batch, cfg, ops, st), 0);
  ic_kv_batch_free(&batch);
  msgpack_sbuffer_destroy(&b->sb);
  return (int)(ops->n - before);
}

static void roll(uint32_t tok0, int ntok, int bs, uint64_t *out) {
  uint32_t *t = malloc(sizeof(uint32_t) * (size_t)ntok);
  for (int i = 0; i < ntok; i++)
    t[i] = tok0 + (uint32_t)i;
  ic_fp_prefix_hashes(t, (size_t)ntok, bs, NULL, out, (size_t)(ntok / bs), NULL);
  free(t);
}

Test(kvevents_tracker, example_F_expected_prefix_hashes) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  bb_t b;
  bb_begin(&b, 0, 2);
  uint64_t h1[] = {0xE000, 0xE001}, h2[] = {0xE002}, p = 0xE001;
  msgpack_pack_array(&b.pk, 6);
  pk_str(&b.pk, "BlockStored");
  msgpack_pack_array(&b.pk, 2);
  msgpack_pack_uint64(&b.pk, h1[0]);
  msgpack_pack_uint64(&b.pk, h1[1]);
  msgpack_pack_nil(&b.pk);
  msgpack_pack_array(&b.pk, 4);
  for (int i = 100; i < 104; i++)
    msgpack_pack_int(&b.pk, i);
  msgpack_pack_int(&b.pk, 2);
  msgpack_pack_nil(&b.pk);
  msgpack_pack_array(&b.pk, 6);
  pk_str(&b.pk, "BlockStored");
  msgpack_pack_array(&b.pk, 1);
  msgpack_pack_uint64(&b.pk, h2[0]);
  msgpack_pack_uint64(&b.pk, p);
  msgpack_pack_array(&b.pk, 2);
  msgpack_pack_int(&b.pk, 104);
  msgpack_pack_int(&b.pk, 105);
  msgpack_pack_int(&b.pk, 2);
  msgpack_pack_nil(&b.pk);
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 3);
  cr_assert_eq(ops.v[0].prefix_hash, 0xf456bd721f2c0950ULL);
  cr_assert_eq(ops.v[0].token_count, 2);
  cr_assert_eq(ops.v[1].prefix_hash, 0xbad2d68e2a9c656aULL);
  cr_assert_eq(ops.v[1].token_count, 4);
  cr_assert_eq(ops.v[2].prefix_hash, 0xa6b5db5dc8dc346cULL);
  cr_assert_eq(ops.v[2].token_count, 6);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(ops.v[i].kind, IC_KV_OP_ADD);
    cr_assert_eq(ops.v[i].tier, IC_KV_TIER_T1);
    cr_assert_str_eq(ops.v[i].adapter, "");
    cr_assert_eq(ops.v[i].ts_us, 0);
  }
  cr_assert_eq(ic_kv_tracker_size(t), 3);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, chain_split_across_batches_equals_full_roll) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  uint64_t want[5];
  roll(0, 80, 16, want);
  uint64_t h1[] = {11, 12, 13}, h2[] = {14, 15}, parent = 13;
  bb_t b;
  bb_begin(&b, 2.5, 1);
  bb_stored(&b, h1, 3, NULL, 0, 48, 16, NULL, NULL);
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 3);
  bb_begin(&b, 3.0, 1);
  bb_stored(&b, h2, 2, &parent, 48, 32, 16, NULL, NULL);
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 2);
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(ops.v[i].prefix_hash, want[i], "block %d", i);
    cr_assert_eq(ops.v[i].token_count, 16 * (i + 1));
  }
  cr_assert_eq(ops.v[0].ts_us, 2500000);
  cr_assert_eq(ops.v[4].ts_us, 3000000);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, unknown_parent_starts_fresh_sequence) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  uint64_t want[1], h[] = {99}, parent = 12345;
  roll(7, 16, 16, want);
  bb_t b;
  bb_begin(&b, 1, 1);
  bb_stored(&b, h, 1, &parent, 7, 16, 16, NULL, NULL);
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 1);
  cr_assert_eq(ops.v[0].prefix_hash, want[0]);
  cr_assert_eq(ops.v[0].token_count, 16);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, removed_maps_to_our_hash_and_forgets) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  uint64_t h[] = {1}, want[1];
  roll(0, 16, 16, want);
  bb_t b;
  bb_begin(&b, 1, 3);
  bb_stored(&b, h, 1, NULL, 0, 16, 16, NULL, NULL);
  bb_removed(&b, h, 1, NULL);
  bb_removed(&b, h, 1, NULL);
  ic_kv_apply_stats_t st;
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, &st), 2);
  cr_assert_eq(ops.v[1].kind, IC_KV_OP_EVICT);
  cr_assert_eq(ops.v[1].prefix_hash, want[0]);
  cr_assert_eq(ops.v[1].token_count, 16);
  cr_assert_str_eq(ops.v[1].adapter, "");
  cr_assert_eq(st.applied[IC_KV_EV_REMOVED], 1, "second removal is a no-op");
  cr_assert_eq(ic_kv_tracker_size(t), 0);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, cleared_resets_so_stale_parent_starts_fresh) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  uint64_t h[] = {1}, h2[] = {2}, parent = 1, want[1];
  roll(100, 16, 16, want);
  bb_t b;
  bb_begin(&b, 1, 3);
  bb_stored(&b, h, 1, NULL, 0, 16, 16, NULL, NULL);
  bb_cleared(&b);
  bb_stored(&b, h2, 1, &parent, 100, 16, 16, NULL, NULL);
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 3);
  cr_assert_eq(ops.v[1].kind, IC_KV_OP_CLEAR);
  cr_assert_eq(ops.v[2].prefix_hash, want[0]);
  cr_assert_eq(ops.v[2].token_count, 16);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, missing_tokens_index_nothing) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  uint64_t h[] = {1, 2};
  bb_t b;
  bb_begin(&b, 1, 2);
  bb_stored(&b, h, 2, NULL, 0, -1, 16, NULL, NULL);
  bb_stored(&b, h, 2, NULL, 0, 24, 16, NULL, NULL); /* 1 full block != 2 hashes */
  ic_kv_apply_stats_t st;
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, &st), 0);
  cr_assert_eq(st.no_entries, 2);
  cr_assert_eq(ic_kv_tracker_size(t), 0);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, l2_mode_downgrades_to_t2_and_still_prunes) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  ic_kv_apply_cfg_t cfg = {.l2_mode = true};
  uint64_t h[] = {1}, unknown[] = {77};
  bb_t b;
  bb_begin(&b, 200, 3);
  bb_stored(&b, h, 1, NULL, 0, 16, 16, NULL, NULL);
  bb_removed(&b, unknown, 1, NULL);
  bb_removed(&b, h, 1, NULL);
  cr_assert_eq(bb_apply(&b, t, &cfg, &ops, NULL), 2);
  cr_assert_eq(ops.v[0].tier, IC_KV_TIER_T1);
  cr_assert_eq(ops.v[1].kind, IC_KV_OP_DOWNGRADE);
  cr_assert_eq(ops.v[1].tier, IC_KV_TIER_T2);
  cr_assert_eq(ops.v[1].ts_us, 200000000);
  cr_assert_eq(ops.v[1].prefix_hash, ops.v[0].prefix_hash);
  cr_assert_eq(ic_kv_tracker_size(t), 0);
  /* evict then restore: T1, T2, T1 */
  bb_begin(&b, 300, 1);
  bb_stored(&b, h, 1, NULL, 0, 16, 16, NULL, NULL);
  cr_assert_eq(bb_apply(&b, t, &cfg, &ops, NULL), 1);
  cr_assert_eq(ops.v[2].tier, IC_KV_TIER_T1);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, medium_cpu_copy_downgrades_instead_of_evicting) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  uint64_t h[] = {1};
  bb_t b;
  bb_begin(&b, 1, 4);
  bb_stored(&b, h, 1, NULL, 0, 16, 16, NULL, "GPU");
  bb_stored(&b, h, 1, NULL, 0, -1, 16, NULL, "CPU"); /* offload copy, no tokens */
  bb_removed(&b, h, 1, "GPU");
  bb_removed(&b, h, 1, "CPU");
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 4);
  cr_assert_eq(ops.v[0].kind, IC_KV_OP_ADD);
  cr_assert_eq(ops.v[0].tier, IC_KV_TIER_T1);
  cr_assert_eq(ops.v[1].kind, IC_KV_OP_ADD);
  cr_assert_eq(ops.v[1].tier, IC_KV_TIER_T1, "still in GPU: best tier");
  cr_assert_eq(ops.v[2].kind, IC_KV_OP_DOWNGRADE);
  cr_assert_eq(ops.v[2].tier, IC_KV_TIER_T2);
  cr_assert_eq(ops.v[3].kind, IC_KV_OP_EVICT);
  cr_assert_eq(ops.v[3].prefix_hash, ops.v[0].prefix_hash);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, block_stored_on_cpu_medium_is_t2) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  uint64_t h[] = {1};
  bb_t b;
  bb_begin(&b, 1, 1);
  bb_stored(&b, h, 1, NULL, 0, 16, 16, NULL, "CPU");
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 1);
  cr_assert_eq(ops.v[0].tier, IC_KV_TIER_T2);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, lora_mapped_base_and_unmapped_fail_closed) {
  char err[128];
  ic_kv_lora_map_t *m = ic_kv_lora_map_parse("1=sql-lora", err, sizeof(err));
  ic_kv_apply_cfg_t cfg = {.lora = m};
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  uint64_t h1[] = {1}, h2[] = {2}, h3[] = {3};
  int64_t l1 = 1, l9 = 9;
  bb_t b;
  bb_begin(&b, 1, 5);
  bb_stored(&b, h1, 1, NULL, 0, 16, 16, &l1, NULL);
  bb_stored(&b, h2, 1, NULL, 0, 16, 16, NULL, NULL);
  bb_stored(&b, h3, 1, NULL, 0, 16, 16, &l9, NULL);
  bb_removed(&b, h3, 1, NULL);
  bb_removed(&b, h1, 1, NULL);
  ic_kv_apply_stats_t st;
  cr_assert_eq(bb_apply(&b, t, &cfg, &ops, &st), 3);
  cr_assert_str_eq(ops.v[0].adapter, "sql-lora");
  cr_assert_str_eq(ops.v[1].adapter, "");
  cr_assert_eq(ops.v[0].prefix_hash, ops.v[1].prefix_hash, "adapter is not in the hash");
  cr_assert_eq(ops.v[2].kind, IC_KV_OP_EVICT);
  cr_assert_str_eq(ops.v[2].adapter, "sql-lora");
  cr_assert_eq(st.lora_dropped, 1);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
  ic_kv_lora_map_free(m);
}

Test(kvevents_tracker, lora_name_from_engine_is_honoured) {
  /* {"type":"BlockStored","block_hashes":[1],"token_ids":[0..1],"block_size":2,"lora_id":5,
   *  "lora_name":"chat"} with no operator map */
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_double(&pk, 1.0);
  msgpack_pack_array(&pk, 1);
  msgpack_pack_map(&pk, 6);
  pk_str(&pk, "type");
  pk_str(&pk, "BlockStored");
  pk_str(&pk, "block_hashes");
  msgpack_pack_array(&pk, 1);
  msgpack_pack_int(&pk, 1);
  pk_str(&pk, "token_ids");
  msgpack_pack_array(&pk, 2);
  msgpack_pack_int(&pk, 0);
  msgpack_pack_int(&pk, 1);
  pk_str(&pk, "block_size");
  msgpack_pack_int(&pk, 2);
  pk_str(&pk, "lora_id");
  msgpack_pack_int(&pk, 5);
  pk_str(&pk, "lora_name");
  pk_str(&pk, "chat");
  ic_kv_batch_t batch;
  ic_kv_batch_init(&batch);
  cr_assert_eq(ic_kv_decode(&batch, (const uint8_t *)sb.data, sb.size), 0);
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  cr_assert_eq(ic_kv_apply(t, &batch, NULL, &ops, NULL), 0);
  cr_assert_eq(ops.n, 1);
  cr_assert_str_eq(ops.v[0].adapter, "chat");
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
  ic_kv_batch_free(&batch);
  msgpack_sbuffer_destroy(&sb);
}

Test(kvevents_tracker, snapshot_re_reports_what_the_engine_holds) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0}, snap = {0};
  uint64_t h[] = {1, 2, 3}, r[] = {2};
  bb_t b;
  bb_begin(&b, 1, 2);
  bb_stored(&b, h, 3, NULL, 0, 48, 16, NULL, NULL);
  bb_removed(&b, r, 1, NULL);
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 4);
  cr_assert_eq(ic_kv_tracker_snapshot(t, &snap), 2);
  uint64_t got = snap.v[0].prefix_hash ^ snap.v[1].prefix_hash;
  cr_assert_eq(got, ops.v[0].prefix_hash ^ ops.v[2].prefix_hash);
  for (size_t i = 0; i < snap.n; i++) {
    cr_assert_eq(snap.v[i].kind, IC_KV_OP_ADD);
    cr_assert_eq(snap.v[i].ts_us, 0);
  }
  ic_kv_ops_free(&ops);
  ic_kv_ops_free(&snap);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, many_blocks_grow_and_erase_consistently) {
  /* 20000 stores then removal of every other one: lookups stay exact through rehash and
   * backward-shift deletion. */
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  enum { N = 20000 };
  bb_t b;
  bb_begin(&b, 1, N);
  for (uint64_t i = 0; i < N; i++) {
    uint64_t h = i * 0x9e3779b97f4a7c15ULL;
    bb_stored(&b, &h, 1, NULL, (uint32_t)i, 2, 2, NULL, NULL);
  }
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), N);
  bb_begin(&b, 2, N / 2);
  for (uint64_t i = 0; i < N; i += 2) {
    uint64_t h = i * 0x9e3779b97f4a7c15ULL;
    bb_removed(&b, &h, 1, NULL);
  }
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), N / 2);
  cr_assert_eq(ic_kv_tracker_size(t), N / 2);
  for (uint64_t i = 0; i < N; i++) {
    ic_kv_hash_t hh = {.ext = NULL, .len = 8, .ival = i * 0x9e3779b97f4a7c15ULL};
    uint64_t pf;
    bool known = ic_kv_tracker_get(t, &hh, &pf, NULL, NULL, NULL);
    cr_assert_eq(known, i % 2 == 1, "block %lu", (unsigned long)i);
    if (known) cr_assert_eq(pf, ops.v[i].prefix_hash);
  }
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, bin_8_byte_hash_and_int_hash_are_the_same_block) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  uint64_t h[] = {0x0102030405060708ULL};
  bb_t b;
  bb_begin(&b, 1, 1);
  bb_stored(&b, h, 1, NULL, 0, 16, 16, NULL, NULL);
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 1);
  ic_kv_hash_t binh = {.ext = (const uint8_t *)"\x01\x02\x03\x04\x05\x06\x07\x08", .len = 8};
  cr_assert(ic_kv_tracker_get(t, &binh, NULL, NULL, NULL, NULL));
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

/* A map event {"type":..., "block_hashes":[h], "token_ids":[0..bs), "block_size":bs,
 * "group_idx":g, "kv_cache_spec_kind":kind} (kind NULL = removal without it). */
static void pk_group_event(msgpack_packer *pk, const char *type, uint64_t h, int bs, int g,
                           const char *kind) {
  bool stored = !strcmp(type, "BlockStored");
  msgpack_pack_map(pk, stored ? 6 : 3);
  pk_str(pk, "type");
  pk_str(pk, type);
  pk_str(pk, "block_hashes");
  msgpack_pack_array(pk, 1);
  msgpack_pack_uint64(pk, h);
  if (stored) {
    pk_str(pk, "token_ids");
    msgpack_pack_array(pk, (size_t)bs);
    for (int i = 0; i < bs; i++)
      msgpack_pack_int(pk, i);
    pk_str(pk, "block_size");
    msgpack_pack_int(pk, bs);
    pk_str(pk, "kv_cache_spec_kind");
    pk_str(pk, kind);
  }
  pk_str(pk, "group_idx");
  msgpack_pack_int(pk, g);
}

Test(kvevents_tracker, hybrid_model_sliding_window_group_does_not_evict) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  bb_t b;
  bb_begin(&b, 1, 4);
  pk_group_event(&b.pk, "BlockStored", 1, 16, 0, "full_attention");
  pk_group_event(&b.pk, "BlockStored", 1, 16, 1, "sliding_window");
  pk_group_event(&b.pk, "BlockRemoved", 1, 16, 1, NULL); /* the window moved on */
  pk_group_event(&b.pk, "BlockRemoved", 1, 16, 0, NULL); /* the real eviction */
  ic_kv_apply_stats_t st;
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, &st), 2);
  cr_assert_eq(ops.v[0].kind, IC_KV_OP_ADD);
  cr_assert_eq(ops.v[1].kind, IC_KV_OP_EVICT);
  cr_assert_eq(ops.v[1].prefix_hash, ops.v[0].prefix_hash);
  cr_assert_eq(st.other_group, 2);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}

Test(kvevents_tracker, all_sliding_window_model_keeps_its_events) {
  ic_kv_tracker_t *t = ic_kv_tracker_new();
  ic_kv_ops_t ops = {0};
  bb_t b;
  bb_begin(&b, 1, 2);
  pk_group_event(&b.pk, "BlockStored", 1, 16, 0, "sliding_window");
  pk_group_event(&b.pk, "BlockRemoved", 1, 16, 0, NULL);
  cr_assert_eq(bb_apply(&b, t, NULL, &ops, NULL), 2);
  cr_assert_eq(ops.v[1].kind, IC_KV_OP_EVICT);
  ic_kv_ops_free(&ops);
  ic_kv_tracker_free(t);
}
