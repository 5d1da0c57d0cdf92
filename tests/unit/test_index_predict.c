/* Unit tests of predict-on-route (lib/index/speculative.c, docs/ranking.md, section 3): the speculative
 * entries' lifecycle (created, confirmed by a real ingest, expired, cleared with the replica or
 * the block, bounded at the cap), how a speculative row ranks against real ones, and the
 * load-aware AFFINITY_HINT pick that counts predicted routes on top of stale load samples. */
#include "ic/err.h"
#include "test_index_util.h"

static const char *const CHAIN[] = {"p0", "p1", "p2", "p3", "q-a"};
static const char *const SIBLING[] = {"p0", "p1", "p2", "p3", "q-b"};

static ic_index_t *make(int64_t cap) {
  ic_index_config_t cfg = base_cfg();
  cfg.predict_ttl_ns = SEC_NS;
  cfg.predict_max_entries = cap;
  cfg.predict_weight = 0.5f;
  return ic_index_create(&cfg);
}

/* A lookup request over hs (16 tokens a block) for tenant t / model m / vllm. */
typedef struct {
  ic_index_bytes_t bh[8];
  int32_t bc[8];
  ic_index_lookup_t q;
} req_t;

static void req_init(req_t *r, const char *const *hs, size_t n) {
  for (size_t i = 0; i < n; i++)
    r->bh[i] = B(hs[i]), r->bc[i] = 16;
  r->q = (ic_index_lookup_t){.tenant = "t",
                             .model = "m",
                             .scheme = "vllm",
                             .adapter = "",
                             .block_hashes = r->bh,
                             .n_block_hashes = n,
                             .block_token_counts = r->bc,
                             .n_block_token_counts = n};
}

/* lookup_route + the speculative merge, as LookupRoute does with the switch on */
static ic_index_result_t *route(ic_index_t *ix, const char *const *hs, size_t n) {
  req_t r;
  req_init(&r, hs, n);
  ic_index_result_t *res = NULL;
  cr_assert_eq(ic_index_lookup_route(ix, &r.q, &res), 0);
  cr_assert_eq(ic_index_result_add_predicted(ix, res, &r.q), 0);
  return res;
}

static void record(ic_index_t *ix, const char *const *hs, size_t n, const char *replica) {
  req_t r;
  req_init(&r, hs, n);
  cr_assert_eq(ic_index_predict_record(ix, &r.q, replica, 0), 0);
}

static ic_index_predict_stats_t stats(ic_index_t *ix) {
  ic_index_predict_stats_t s;
  ic_index_predict_stats(ix, &s);
  return s;
}

static const who_t R1 = {"r1", "t", "m", "vllm", ""};
static const who_t R2 = {"r2", "t", "m", "vllm", ""};

/* The index must know the replicas (rows point at its interned names): r1-r4 hold an unrelated
   block, so a real run held by one of them has distinguishing power 1 - 1/4. */
static void serve_two(ic_index_t *ix) {
  static const char *const other[] = {"zz"};
  put_chain(ix, R1, other, 1, 16);
  put_chain(ix, R2, other, 1, 16);
  put_chain(ix, (who_t){"r3", "t", "m", "vllm", ""}, other, 1, 16);
  put_chain(ix, (who_t){"r4", "t", "m", "vllm", ""}, other, 1, 16);
}

static const ic_index_row_t *row_of(ic_index_result_t *r, const char *replica) {
  for (size_t i = 0; i < ic_index_result_count(r); i++)
    if (!strcmp(ic_index_result_rows(r)[i].replica_id, replica)) return &ic_index_result_rows(r)[i];
  cr_assert_fail("no row for %s", replica);
  return NULL;
}

Test(index_predict, created_and_found_by_a_sibling_as_its_own_tier) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  ic_index_result_t *r = route(ix, CHAIN, 5);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE, "nothing predicted yet");
  ic_index_result_free(r);
  record(ix, CHAIN, 5, "r2");
  cr_assert_eq(stats(ix).created, 5);
  cr_assert_eq(stats(ix).entries, 5);
  /* a sibling shares the first four blocks */
  r = route(ix, SIBLING, 5);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_PREFIX_MATCH);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "r2");
  cr_assert_eq(row(r, 0)->matched_tokens, 64);
  cr_assert_eq(row(r, 0)->tier, IC_INDEX_TIER_SPECULATIVE, "never reported as T1");
  cr_assert_float_eq(row(r, 0)->score, 32.0f, 1e-4, "0.5 per speculative token");
  cr_assert_float_eq(row(r, 0)->estimated_cache_hit_prob, 0.5f, 1e-6);
  ic_index_result_free(r);
  /* re-recording renews, it does not create */
  record(ix, SIBLING, 5, "r2");
  cr_assert_eq(stats(ix).created, 6); /* only q-b is new */
  cr_assert_eq(stats(ix).entries, 6);
  ic_index_destroy(ix);
}

Test(index_predict, replaced_by_the_real_event) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  record(ix, CHAIN, 5, "r1");
  /* the engine reports the first three blocks on r1: those are confirmed, the rest stay */
  put_chain(ix, R1, CHAIN, 3, 16);
  ic_index_predict_stats_t s = stats(ix);
  cr_assert_eq(s.confirmed, 3);
  cr_assert_eq(s.entries, 2);
  /* a real event on ANOTHER replica confirms nothing */
  put_chain(ix, R2, CHAIN, 5, 16);
  cr_assert_eq(stats(ix).confirmed, 3);
  /* the lookup: r2 holds all five for real (T1); r1 three real blocks, and its two unconfirmed
     speculative blocks continue that run */
  ic_index_result_t *r = route(ix, CHAIN, 5);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_PREFIX_MATCH);
  cr_assert_eq(ic_index_result_count(r), 2);
  cr_assert_eq(row_of(r, "r2")->tier, 1);
  cr_assert_eq(row_of(r, "r2")->matched_tokens, 80);
  cr_assert_eq(row_of(r, "r1")->matched_tokens, 80);
  cr_assert_eq(row_of(r, "r1")->tier, IC_INDEX_TIER_SPECULATIVE);
  ic_index_result_free(r);
  /* the rest arrives: all confirmed, r1 is a real T1 row again */
  put_chain(ix, R1, CHAIN, 5, 16);
  cr_assert_eq(stats(ix).confirmed, 5);
  cr_assert_eq(stats(ix).entries, 0);
  r = route(ix, CHAIN, 5);
  cr_assert_eq(row_of(r, "r1")->tier, 1);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_predict, a_real_row_deepened_by_speculation_becomes_speculative) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  put_chain(ix, R1, CHAIN, 2, 16); /* r1 really holds 32 tokens */
  record(ix, CHAIN, 5, "r1");      /* skip 0: blocks 1-2 are speculative too (renewed later) */
  ic_index_result_t *r = route(ix, CHAIN, 5);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_eq(row(r, 0)->matched_tokens, 80);
  cr_assert_eq(row(r, 0)->tier, IC_INDEX_TIER_SPECULATIVE);
  ic_index_result_free(r);
  /* with skip_tokens = the real run, only the blocks beyond it are recorded */
  ic_index_t *ix2 = make(0);
  serve_two(ix2);
  req_t q;
  req_init(&q, CHAIN, 5);
  cr_assert_eq(ic_index_predict_record(ix2, &q.q, "r1", 32), 0);
  cr_assert_eq(stats(ix2).created, 3);
  put_chain(ix2, R1, CHAIN, 2, 16);
  r = route(ix2, CHAIN, 5);
  cr_assert_eq(row(r, 0)->matched_tokens, 80, "the speculative run continues the real one");
  cr_assert_eq(row(r, 0)->tier, IC_INDEX_TIER_SPECULATIVE);
  ic_index_result_free(r);
  ic_index_destroy(ix2);
  ic_index_destroy(ix);
}

Test(index_predict, a_real_match_outranks_an_equal_speculative_one) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  put_chain(ix, R1, CHAIN, 4, 16); /* real: 64 tokens on r1 */
  record(ix, CHAIN, 4, "r2");      /* speculative: 64 tokens on r2 */
  ic_index_result_t *r = route(ix, CHAIN, 4);
  cr_assert_eq(ic_index_result_count(r), 2);
  cr_assert_str_eq(row(r, 0)->replica_id, "r1");
  cr_assert_eq(row(r, 0)->tier, 1);
  cr_assert_str_eq(row(r, 1)->replica_id, "r2");
  cr_assert_eq(row(r, 1)->tier, IC_INDEX_TIER_SPECULATIVE);
  cr_assert_lt(row(r, 1)->score, row(r, 0)->score);
  ic_index_result_free(r);
  /* a speculative run more than twice as deep wins (weight 0.5) */
  static const char *const longer[] = {"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"};
  put_chain(ix, R1, longer, 1, 16); /* r1: 16 real tokens of `longer` */
  record(ix, longer, 8, "r2");      /* r2: 128 speculative */
  r = route(ix, longer, 8);
  cr_assert_str_eq(row(r, 0)->replica_id, "r2");
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_predict, expired_after_the_ttl) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  record(ix, CHAIN, 5, "r1");
  g_now += SEC_NS / 2;
  ic_index_result_t *r = route(ix, SIBLING, 5);
  cr_assert_eq(ic_index_result_count(r), 1, "alive at half the TTL");
  ic_index_result_free(r);
  g_now += SEC_NS / 2 + 1;
  r = route(ix, SIBLING, 5);
  cr_assert_eq(ic_index_result_count(r), 0, "a lookup ignores an expired entry at once");
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  cr_assert_eq(stats(ix).expired, 0, "counted when swept");
  cr_assert_eq(ic_index_predict_expire(ix), 5);
  ic_index_predict_stats_t s = stats(ix);
  cr_assert_eq(s.expired, 5);
  cr_assert_eq(s.entries, 0);
  ic_index_destroy(ix);
}

Test(index_predict, cleared_with_the_replica_and_with_an_evicted_block) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  record(ix, CHAIN, 5, "r1");
  record(ix, CHAIN, 5, "r2");
  /* the engine of r2 drops block p0: r2's prediction of it goes, and with it r2's whole run */
  ic_index_event_t ev = {.type = IC_INDEX_EVENT_PREFIX_EVICTED,
                         .replica = "r2",
                         .model = "m",
                         .tenant = "t",
                         .adapter = "",
                         .prefix_hash = B("p0")};
  cr_assert_eq(ic_index_apply_event(ix, &ev), 0);
  cr_assert_eq(stats(ix).cleared, 1);
  ic_index_result_t *r = route(ix, CHAIN, 5);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "r1");
  ic_index_result_free(r);
  /* ALL_CLEARED of r1 (another model's clear leaves it) */
  ev = (ic_index_event_t){
      .type = IC_INDEX_EVENT_ALL_CLEARED, .replica = "r1", .model = "other", .tenant = "t"};
  cr_assert_eq(ic_index_apply_event(ix, &ev), 0);
  cr_assert_eq(stats(ix).cleared, 1);
  ev.model = "m";
  cr_assert_eq(ic_index_apply_event(ix, &ev), 0);
  ic_index_predict_stats_t s = stats(ix);
  cr_assert_eq(s.cleared, 6);
  cr_assert_eq(s.entries, 4, "r2's four other blocks remain");
  r = route(ix, CHAIN, 5);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_predict, bounded_at_the_cap_oldest_first) {
  ic_index_t *ix = make(8);
  serve_two(ix);
  record(ix, CHAIN, 5, "r1"); /* 5 entries */
  static const char *const other[] = {"o0", "o1", "o2", "o3", "o4"};
  record(ix, other, 5, "r2"); /* 10 > 8: the two oldest of r1's go (its prompt's tail) */
  ic_index_predict_stats_t s = stats(ix);
  cr_assert_eq(s.entries, 8);
  cr_assert_eq(s.dropped_cap, 2);
  cr_assert_eq(s.capacity, 8);
  /* the head of r1's prompt was recorded last, so most of it still matches */
  ic_index_result_t *r = route(ix, CHAIN, 5);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_eq(row(r, 0)->matched_tokens, 48);
  ic_index_result_free(r);
  /* many more: still 8 */
  for (int i = 0; i < 20; i++)
    record(ix, i % 2 ? CHAIN : other, 5, i % 3 ? "r1" : "r2");
  cr_assert_eq(stats(ix).entries, 8);
  ic_index_destroy(ix);
}

Test(index_predict, unknown_replica_and_bad_requests_add_nothing) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  record(ix, CHAIN, 5, "gone"); /* the index has never heard of it */
  ic_index_result_t *r = route(ix, CHAIN, 5);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  req_t q;
  req_init(&q, CHAIN, 5);
  q.q.n_block_token_counts = 4; /* mismatched chain: ignored */
  cr_assert_eq(ic_index_predict_record(ix, &q.q, "r1", 0), 0);
  cr_assert_eq(ic_index_predict_record(ix, &q.q, "", 0), IC_EINVAL);
  cr_assert_eq(ic_index_predict_record(ix, NULL, "r1", 0), IC_EINVAL);
  ic_index_destroy(ix);
}

Test(index_predict, snapshot_rows_per_replica) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  ic_index_predict_replica_t *rows = NULL;
  size_t n = 9;
  cr_assert_eq(ic_index_predict_replicas(ix, &rows, &n), 0);
  cr_assert_eq(n, 0);
  record(ix, CHAIN, 5, "r2");
  record(ix, SIBLING, 2, "r1");
  cr_assert_eq(ic_index_predict_replicas(ix, &rows, &n), 0);
  cr_assert_eq(n, 2);
  cr_assert_str_eq(rows[0].replica_id, "r1");
  cr_assert_eq(rows[0].entries, 2);
  cr_assert_str_eq(rows[1].replica_id, "r2");
  cr_assert_eq(rows[1].entries, 5);
  ic_index_predict_replicas_free(rows, n);
  ic_index_destroy(ix);
}

Test(index_predict, legacy_single_key_requests) {
  ic_index_t *ix = make(0);
  put_legacy(ix, R1, "zz", 16);
  ic_index_lookup_t q = {.tenant = "t",
                         .model = "m",
                         .scheme = "vllm",
                         .adapter = "",
                         .prefix_hash = B("whole-prompt"),
                         .token_count = 300};
  cr_assert_eq(ic_index_predict_record(ix, &q, "r1", 0), 0);
  ic_index_result_t *r = NULL;
  cr_assert_eq(ic_index_lookup_route(ix, &q, &r), 0);
  cr_assert_eq(ic_index_result_add_predicted(ix, r, &q), 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_PREFIX_MATCH,
               "TENANT_HOT/NONE replaced");
  cr_assert_eq(row(r, 0)->matched_tokens, 300);
  ic_index_result_free(r);
  put_legacy(ix, R1, "whole-prompt", 300);
  cr_assert_eq(stats(ix).confirmed, 1);
  ic_index_destroy(ix);
}

/* ---------------------------------------------------------------- scoring with both switches */

static void report_load(ic_index_t *ix, const char *replica, int32_t waiting, int64_t ts_us) {
  ic_index_stats_t st = {.load_reported = true, .num_waiting = waiting};
  ic_index_update_t u = {replica, "m", "t", "vllm", "", ts_us, NULL, 0, &st};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
}

Test(index_predict, load_aware_pick_counts_routes_since_the_sample) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  const char *pick = NULL;
  cr_assert_not(ic_index_least_loaded_replica(ix, "t", "m", "r1", 7, &cfg, &pick), "no samples");
  int64_t now_us = g_now / 1000;
  report_load(ix, "r1", 2, now_us);
  report_load(ix, "r2", 0, now_us);
  cr_assert(ic_index_least_loaded_replica(ix, "t", "m", "r1", 7, &cfg, &pick));
  cr_assert_str_eq(pick, "r2", "r1 has more queued");
  /* routes recorded after r2's sample count as its queue: 3 new prompts sent there */
  g_now += 1000000; /* 1 ms later */
  static const char *const a[] = {"a"}, *const b[] = {"b"}, *const c[] = {"c"};
  record(ix, a, 1, "r2");
  record(ix, b, 1, "r2");
  cr_assert(ic_index_least_loaded_replica(ix, "t", "m", "r1", 7, &cfg, &pick));
  cr_assert_str_eq(pick, "r1", "a tie (2 = 2): the hash pick stays");
  record(ix, c, 1, "r2");
  cr_assert(ic_index_least_loaded_replica(ix, "t", "m", "r2", 7, &cfg, &pick));
  cr_assert_str_eq(pick, "r1", "r2 is now at 3");
  /* a fresh sample of r2 taken after those routes shows them: they stop counting twice */
  g_now += 1000000;
  report_load(ix, "r2", 1, g_now / 1000);
  cr_assert(ic_index_least_loaded_replica(ix, "t", "m", "r1", 7, &cfg, &pick));
  cr_assert_str_eq(pick, "r2");
  ic_index_destroy(ix);
}

Test(index_predict, speculative_rows_are_load_ranked_like_real_ones) {
  ic_index_t *ix = make(0);
  serve_two(ix);
  static const char *const idle_only[] = {"zz"};
  put_chain(ix, (who_t){"r3", "t", "m", "vllm", ""}, idle_only, 1, 16);
  int64_t now_us = g_now / 1000;
  report_load(ix, "r1", 0, now_us);
  report_load(ix, "r2", 6, now_us);
  report_load(ix, "r3", 0, now_us);
  record(ix, CHAIN, 5, "r1");
  record(ix, CHAIN, 5, "r2");
  ic_index_result_t *r = route(ix, CHAIN, 5);
  cr_assert_eq(ic_index_result_count(r), 2);
  ic_index_load_cfg_t cfg;
  ic_index_load_cfg_init(&cfg);
  cfg.request_tokens = 16;
  bool changed = false;
  cr_assert_eq(ic_index_result_rank_by_load(ix, r, "t", "m", 80, &cfg, &changed), 0);
  cr_assert(changed);
  /* saved = 80 x 0.5 = 40; r2 pays 6 x 16 = 96 more than the idlest: out */
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "r1");
  cr_assert_float_eq(row(r, 0)->score, 40.0f, 1e-3);
  cr_assert_eq(row(r, 0)->tier, IC_INDEX_TIER_SPECULATIVE);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_predict, off_means_untouched) {
  /* an index that never recorded a prediction answers exactly as before, merge or not */
  ic_index_t *ix = make(0);
  put_chain(ix, R1, CHAIN, 3, 16);
  req_t q;
  req_init(&q, CHAIN, 5);
  ic_index_result_t *a = NULL, *b = NULL;
  cr_assert_eq(ic_index_lookup_route(ix, &q.q, &a), 0);
  cr_assert_eq(ic_index_lookup_route(ix, &q.q, &b), 0);
  cr_assert_eq(ic_index_result_add_predicted(ix, b, &q.q), 0);
  cr_assert_eq(ic_index_result_count(a), ic_index_result_count(b));
  cr_assert_eq(memcmp(ic_index_result_rows(a), ic_index_result_rows(b),
                      ic_index_result_count(a) * sizeof(ic_index_row_t)),
               0);
  cr_assert_eq(stats(ix).created, 0);
  ic_index_result_free(a);
  ic_index_result_free(b);
  ic_index_destroy(ix);
}

/* Routes predicted since a replica's sample count as its queue in the load ranking, except the
 * siblings routed along the same predicted prefix (they reuse what the first one computes). */
Test(index_predict, load_ranking_counts_unrelated_routes_not_siblings) {
  for (int unrelated = 0; unrelated < 2; unrelated++) {
    ic_index_t *ix = make(0);
    serve_two(ix);
    int64_t now_us = g_now / 1000;
    report_load(ix, "r1", 0, now_us);
    report_load(ix, "r2", 0, now_us);
    report_load(ix, "r3", 0, now_us);
    g_now += 1000000; /* the routes below come after the samples */
    record(ix, CHAIN, 5, "r1");
    record(ix, SIBLING, 5, "r1"); /* two siblings already sent there */
    if (unrelated) {
      static const char *const u1[] = {"u1"}, *const u2[] = {"u2"}, *const u3[] = {"u3"};
      record(ix, u1, 1, "r1");
      record(ix, u2, 1, "r1");
      record(ix, u3, 1, "r1");
    }
    ic_index_result_t *r = route(ix, SIBLING, 4); /* a third sibling: the 64-token prefix */
    cr_assert_eq(ic_index_result_count(r), 1);
    ic_index_load_cfg_t cfg;
    ic_index_load_cfg_init(&cfg);
    cfg.request_tokens = 16;
    bool changed = false;
    cr_assert_eq(ic_index_result_rank_by_load(ix, r, "t", "m", 64, &cfg, &changed), 0);
    if (!unrelated) {
      /* 2 routes since the sample, both siblings: nothing queued ahead, saving 64 x 0.5 */
      cr_assert_eq(ic_index_result_count(r), 1);
      cr_assert_float_eq(row(r, 0)->score, 32.0f, 1e-3);
    } else {
      /* 3 unrelated requests queued ahead: 3 x 16 = 48 > 32, a cold idle replica is better */
      cr_assert_eq(ic_index_result_count(r), 0);
    }
    ic_index_result_free(r);
    ic_index_destroy(ix);
  }
}
