/* Unit tests of load-aware ranking (lib/index/load.c, docs/ranking.md): the pure scorer, and the
 * re-ranking of real lookup answers from ingested load samples (fresh, stale, missing). */
#include <math.h>

#include "test_index_util.h"

static ic_index_load_cand_t cand(const char *id, int32_t matched, float fresh, float queue) {
  ic_index_load_cand_t c = {{.replica_id = id,
                             .score = 1.0f,
                             .matched_tokens = matched,
                             .estimated_cache_hit_prob = fresh,
                             .tier = 1},
                            queue};
  return c;
}

Test(index_load, score_is_saved_minus_extra_queued_work) {
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  /* a holds 1024 tokens with 3 queued; b holds 512 and is the fleet's least loaded (1) */
  ic_index_load_cand_t c[] = {cand("a", 1024, 1.0f, 3), cand("b", 512, 1.0f, 1)};
  size_t kept = ic_index_load_rank(c, 2, 1.0f, 2.0f, 100.0f, &cfg);
  cr_assert_eq(kept, 2);
  cr_assert_str_eq(c[0].row.replica_id, "a"); /* 1024 - 2*100 = 824 > 512 */
  cr_assert_float_eq(c[0].row.score, 824.0f, 1e-3);
  cr_assert_float_eq(c[1].row.score, 512.0f, 1e-3);
  /* the same with a heavier per-request cost: b wins */
  c[0] = cand("a", 1024, 1.0f, 3), c[1] = cand("b", 512, 1.0f, 1);
  kept = ic_index_load_rank(c, 2, 1.0f, 2.0f, 400.0f, &cfg);
  cr_assert_eq(kept, 2);
  cr_assert_str_eq(c[0].row.replica_id, "b"); /* 512 > 1024 - 2*400 = 224 */
  cr_assert_float_eq(c[1].row.score, 224.0f, 1e-3);
}

Test(index_load, freshness_scales_the_saving_and_weights_apply) {
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  cfg.weight = 0.5f;
  ic_index_load_cand_t c[] = {cand("a", 1000, 0.5f, 2), cand("b", 600, 1.0f, 2)};
  size_t kept = ic_index_load_rank(c, 2, 0.0f, 2.0f, 100.0f, &cfg);
  cr_assert_eq(kept, 2);
  cr_assert_str_eq(c[0].row.replica_id, "b"); /* 600 - 0.5*2*100 = 500 vs 500 - 100 = 400 */
  cr_assert_float_eq(c[0].row.score, 500.0f, 1e-3);
  cr_assert_float_eq(c[1].row.score, 400.0f, 1e-3);
}

Test(index_load, no_benefit_falls_out) {
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  /* holding 256 tokens is not worth 3 extra queued requests of 100 tokens each */
  ic_index_load_cand_t c[] = {cand("busy", 256, 1.0f, 3), cand("idle", 64, 1.0f, 0)};
  size_t kept = ic_index_load_rank(c, 2, 0.0f, 1.0f, 100.0f, &cfg);
  cr_assert_eq(kept, 1);
  cr_assert_str_eq(c[0].row.replica_id, "idle");
  cr_assert_str_eq(c[1].row.replica_id, "busy", "dropped rows sort after the kept ones");
}

Test(index_load, queue_far_above_the_fleet_falls_out_even_with_a_big_saving) {
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  cfg.request_tokens = 1;
  /* fleet mean 3: bound 2*3 + 4 = 10; a queue of 11 is out whatever it saves */
  ic_index_load_cand_t c[] = {cand("hot", 100000, 1.0f, 11), cand("ok", 16, 1.0f, 10)};
  size_t kept = ic_index_load_rank(c, 2, 0.0f, 3.0f, 1.0f, &cfg);
  cr_assert_eq(kept, 1);
  cr_assert_str_eq(c[0].row.replica_id, "ok");
  /* every row out: nothing kept */
  c[0] = cand("hot", 100000, 1.0f, 11);
  cr_assert_eq(ic_index_load_rank(c, 1, 0.0f, 3.0f, 1.0f, &cfg), 0);
}

Test(index_load, unknown_queue_leaves_everything_untouched) {
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  ic_index_load_cand_t c[] = {cand("b", 16, 1.0f, 50), cand("a", 32, 1.0f, -1)};
  cr_assert_eq(ic_index_load_rank(c, 2, 0.0f, 1.0f, 100.0f, &cfg), 2);
  cr_assert_str_eq(c[0].row.replica_id, "b");
  cr_assert_eq(c[0].row.score, 1.0f);
  cr_assert_eq(c[1].row.score, 1.0f);
}

Test(index_load, ties_break_by_replica_id) {
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  ic_index_load_cand_t c[] = {cand("z", 64, 1.0f, 0), cand("m", 64, 1.0f, 0)};
  cr_assert_eq(ic_index_load_rank(c, 2, 0.0f, 0.0f, 100.0f, &cfg), 2);
  cr_assert_str_eq(c[0].row.replica_id, "m");
}

/* ---------------------------------------------------------------- on a real index */

static void report_load(ic_index_t *ix, const char *replica, int32_t waiting, int32_t running,
                        bool reported, int64_t ts_us) {
  ic_index_stats_t st = {.hit_rate = 0.0f,
                         .pressure = 0.5f,
                         .load_reported = reported,
                         .num_waiting = waiting,
                         .num_running = running,
                         .kv_usage = 0.3f};
  ic_index_update_t u = {replica, "m", "t", "vllm", "", ts_us, NULL, 0, &st};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
}

static ic_index_result_t *lookup4(ic_index_t *ix) {
  static const char *const hs[] = {"h0", "h1", "h2", "h3"};
  ic_index_bytes_t bh[4];
  int32_t bc[4];
  for (int i = 0; i < 4; i++)
    bh[i] = B(hs[i]), bc[i] = 16;
  ic_index_lookup_t q = {.model = "m",
                         .tenant = "t",
                         .scheme = "vllm",
                         .adapter = "",
                         .block_hashes = bh,
                         .n_block_hashes = 4,
                         .block_token_counts = bc,
                         .n_block_token_counts = 4};
  ic_index_result_t *r = NULL;
  cr_assert_eq(ic_index_lookup_route(ix, &q, &r), 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_PREFIX_MATCH);
  return r;
}

static ic_index_t *fleet(void) {
  ic_index_config_t cfg = base_cfg();
  ic_index_t *ix = ic_index_create(&cfg);
  static const char *const four[] = {"h0", "h1", "h2", "h3"};
  put_chain_tier(ix, (who_t){"r-hot", "t", "m", "vllm", ""}, four, 4, 16, 1);  /* 64 tokens */
  put_chain_tier(ix, (who_t){"r-cool", "t", "m", "vllm", ""}, four, 2, 16, 1); /* 32 tokens */
  return ix;
}

Test(index_load, result_reranked_by_fresh_samples) {
  ic_index_t *ix = fleet();
  int64_t now_us = g_now / 1000;
  report_load(ix, "r-hot", 12, 4, true, now_us);
  report_load(ix, "r-cool", 0, 1, true, now_us);
  report_load(ix, "r-idle", 0, 0, true, now_us); /* holds nothing: only in the fleet */
  ic_index_result_t *r = lookup4(ix);
  cr_assert_str_eq(ic_index_result_rows(r)[0].replica_id, "r-hot", "today's ranking");
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  cfg.request_tokens = 16;
  cfg.running_weight = 0.25f;
  bool changed = false;
  cr_assert_eq(ic_index_result_rank_by_load(ix, r, "t", "m", 64, &cfg, &changed), 0);
  cr_assert(changed);
  /* fleet: queues 13, 0.25, 0 -> mean 4.42, bound 12.8: r-hot (13) is out */
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(ic_index_result_rows(r)[0].replica_id, "r-cool");
  cr_assert_float_eq(ic_index_result_rows(r)[0].score, 32.0f - 0.25f * 16, 1e-3);
  ic_index_result_credit_hits(r); /* captures of the dropped replica are gone: no crash */
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* Ranks a fresh lookup by load and checks it equals today's answer to the same lookup. */
static void assert_untouched(ic_index_t *ix) {
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  ic_index_result_t *ref = lookup4(ix), *r = lookup4(ix);
  bool changed = true;
  cr_assert_eq(ic_index_result_rank_by_load(ix, r, "t", "m", 64, &cfg, &changed), 0);
  cr_assert_not(changed);
  cr_assert_eq(ic_index_result_count(r), ic_index_result_count(ref));
  cr_assert_eq(memcmp(ic_index_result_rows(r), ic_index_result_rows(ref),
                      ic_index_result_count(r) * sizeof(ic_index_row_t)),
               0);
  ic_index_result_free(r);
  ic_index_result_free(ref);
}

Test(index_load, stale_or_missing_samples_leave_the_answer_bit_exact) {
  ic_index_t *ix = fleet();
  int64_t now_us = g_now / 1000;
  assert_untouched(ix); /* 1. no stats at all */
  /* 2. one holder's sample too old (3 s > 2 s), the other fresh */
  report_load(ix, "r-hot", 50, 0, true, now_us - 3000000);
  report_load(ix, "r-cool", 0, 0, true, now_us);
  assert_untouched(ix);
  /* 3. an old subscriber: stats without a load sample */
  report_load(ix, "r-hot", 50, 0, false, now_us);
  assert_untouched(ix);
  /* 4. the samples age out: fresh at first, then 2.5 s later no longer used */
  report_load(ix, "r-hot", 50, 0, true, now_us);
  g_now += 2500 * 1000000LL;
  assert_untouched(ix);
  ic_index_destroy(ix);
}

Test(index_load, overloaded_replica_for_affinity) {
  ic_index_t *ix = fleet();
  int64_t now_us = g_now / 1000;
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  cr_assert_not(ic_index_replica_overloaded(ix, "t", "m", "r-hot", &cfg), "no samples");
  report_load(ix, "r-hot", 30, 0, true, now_us);
  report_load(ix, "r-cool", 1, 0, true, now_us);
  report_load(ix, "r-idle", 0, 0, true, now_us);
  cr_assert(ic_index_replica_overloaded(ix, "t", "m", "r-hot", &cfg)); /* 30 > 2*10.33+4 */
  cr_assert_not(ic_index_replica_overloaded(ix, "t", "m", "r-cool", &cfg));
  cr_assert_not(ic_index_replica_overloaded(ix, "t", "m", "nobody", &cfg));
  ic_index_destroy(ix);
}

Test(index_load, snapshot_and_cache_state_show_the_sample) {
  ic_index_t *ix = fleet();
  int64_t now_us = g_now / 1000;
  report_load(ix, "r-hot", 7, 3, true, now_us);
  ic_index_stats_row_t *rows;
  size_t n;
  cr_assert_eq(ic_index_cache_state(ix, "t", "m", &rows, &n, NULL), 0);
  cr_assert_eq(n, 1);
  cr_assert(rows[0].load_reported);
  cr_assert_eq(rows[0].num_waiting, 7);
  cr_assert_eq(rows[0].num_running, 3);
  cr_assert_float_eq(rows[0].kv_usage, 0.3f, 1e-7);
  free(rows);
  ic_index_snapshot_t s;
  cr_assert_eq(ic_index_snapshot(ix, &s), 0);
  bool seen = false;
  for (size_t i = 0; i < s.n_replicas; i++)
    if (!strcmp(s.replicas[i].replica_id, "r-hot")) {
      seen = true;
      cr_assert(s.replicas[i].load_reported);
      cr_assert_eq(s.replicas[i].num_waiting, 7);
      cr_assert_eq(s.replicas[i].load_observed_ns, now_us * 1000);
    } else {
      cr_assert_not(s.replicas[i].load_reported);
    }
  cr_assert(seen);
  ic_index_snapshot_free(&s);
  ic_index_destroy(ix);
}

Test(index_load, every_replica_a_holder_keeps_todays_answer) {
  ic_index_t *ix = fleet(); /* r-hot and r-cool hold the prefix; nobody else reports */
  int64_t now_us = g_now / 1000;
  report_load(ix, "r-hot", 9, 0, true, now_us);
  report_load(ix, "r-cool", 0, 0, true, now_us);
  assert_untouched(ix);
  report_load(ix, "r-idle", 0, 0, true, now_us); /* a cold alternative appears: ranked */
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  ic_index_result_t *r = lookup4(ix);
  bool changed = false;
  cr_assert_eq(ic_index_result_rank_by_load(ix, r, "t", "m", 64, &cfg, &changed), 0);
  cr_assert(changed);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}
