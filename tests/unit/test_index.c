/* Black-box tests of lib/index: the reference's behaviour groups A-Q and its worked scoring
 * examples with their exact float32 scores. Fake clock; hashes are raw string bytes. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>

#include "ic/err.h"
#include "test_index_util.h"
#define IC_INDEX_TEST_ERANGE IC_ERANGE

static const who_t T = {"r1", "t", "m", "vllm", ""};
static who_t W(const char *replica) { return (who_t){replica, "t", "m", "vllm", ""}; }

/* ------------------------------------------------------------------ A. construction */

Test(index_a, ready_reflects_set_ready) {
  ic_index_t *ix = ic_index_create(NULL);
  cr_assert_not_null(ix);
  cr_assert(!ic_index_ready(ix));
  ic_index_set_ready(ix, true);
  cr_assert(ic_index_ready(ix));
  ic_index_set_ready(ix, false);
  cr_assert(!ic_index_ready(ix));
  ic_index_destroy(ix);
}

Test(index_a, non_positive_durations_clamp_to_defaults) {
  ic_index_config_t c = base_cfg();
  c.ttl_ns = 0;
  c.sweep_interval_ns = -5;
  ic_index_t *ix = ic_index_create(&c);
  cr_assert_eq(ic_index_sweep_interval_ns(ix), MIN_NS);
  put_legacy(ix, T, "p", 10);
  g_now += 29 * MIN_NS; /* 30 min default TTL: still fresh */
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  g_now += 2 * MIN_NS;
  r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_a, legacy_exact_match_path) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "legacy", 128);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "legacy", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_PREFIX_MATCH);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_eq(row(r, 0)->matched_tokens, 128);
  cr_assert_eq(row(r, 0)->score, 128.0f);
  cr_assert_eq(row(r, 0)->tier, 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "r1");
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ B. ingest basics */

Test(index_b, ranks_by_tokens_and_freshness) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("replica-a"), "p", 100);
  put_legacy(ix, W("replica-b"), "p", 50);
  put_legacy(ix, W("decoy"), "d", 10);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "replica-a");
  ic_index_result_free(r);
  g_now += 50 * MIN_NS; /* E11 */
  put_legacy(ix, W("replica-b"), "p", 50);
  r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "replica-b");
  cr_assert_eq(row(r, 0)->score, 50.0f * (float)(1.0 - 2.0 / 3.0));
  cr_assert_eq(row(r, 1)->score, (100.0f * 0.16666667f) * (float)(1.0 - 2.0 / 3.0));
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_b, ingest_is_idempotent) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  for (int i = 0; i < 3; i++)
    put_legacy(ix, T, "p", 64);
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 1);
  cr_assert_eq(k.distinct_keys, 1);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_b, tiers_default_and_explicit) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "p", 64);
  put_legacy_tier(ix, W("r2"), "q", 64, 2);
  put_legacy_tier(ix, W("r3"), "n", 64, -1); /* negative: coldest sentinel, reported 0 */
  const char *ch[] = {"c1", "c2", "c3"};
  put_chain(ix, W("r4"), ch, 3, 16);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_eq(row(r, 0)->tier, 1);
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "", "q", 0);
  cr_assert_eq(row(r, 0)->tier, 2);
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "", "n", 0);
  cr_assert_eq(row(r, 0)->tier, 0);
  ic_index_result_free(r);
  r = route_chain(ix, "t", "m", "vllm", "", ch, 3, 16, 0);
  cr_assert_eq(row(r, 0)->tier, 1);
  cr_assert_eq(row(r, 0)->matched_tokens, 48);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_b, stats_keyed_by_top_level_replica_and_sanitised) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "p", 64);
  ic_index_stats_t s = {.cache_memory_bytes = 42, .hit_rate = NAN, .pressure = INFINITY};
  ic_index_update_t u = {"r1", "m", "t", "vllm", "", 0, NULL, 0, &s};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  ic_index_stats_row_t *rows;
  size_t n;
  int64_t total;
  cr_assert_eq(ic_index_cache_state(ix, "t", "m", &rows, &n, &total), 0);
  cr_assert_eq(n, 1);
  cr_assert_eq(total, 1);
  cr_assert_str_eq(rows[0].replica_id, "r1");
  cr_assert_eq(rows[0].cache_memory_bytes, 42);
  cr_assert_eq(rows[0].hit_rate, 0.0f);
  cr_assert_eq(rows[0].pressure, 0.0f);
  free(rows);
  s.hit_rate = -INFINITY;
  s.pressure = 0.5f;
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  cr_assert_eq(ic_index_cache_state(ix, "t", "m", &rows, &n, &total), 0);
  cr_assert_eq(rows[0].hit_rate, 0.0f);
  cr_assert_eq(rows[0].pressure, 0.5f);
  free(rows);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ C. chain ingest */

Test(index_c, chain_lookup_against_legacy_ingest) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "p", 64);
  const char *ch[] = {"p", "x", "y"};
  ic_index_result_t *r = route_chain(ix, "t", "m", "vllm", "", ch, 3, 16, 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_eq(row(r, 0)->matched_tokens, 16);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_c, malformed_and_one_sided_chains_dropped) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  ic_index_bytes_t bh[3] = {B("a"), B("b"), B("c")};
  int32_t bc[3] = {16, 16, 16};
  ic_index_prefix_t ps[3] = {
      {.block_hashes = bh,
       .n_block_hashes = 3,
       .block_token_counts = bc,
       .n_block_token_counts = 1},
      {.block_hashes = bh, .n_block_hashes = 3},
      {.prefix_hash = B("legacy"),
       .token_count = 64,
       .block_token_counts = bc,
       .n_block_token_counts = 3},
  };
  ic_index_update_t u = {"r1", "m", "t", "vllm", "", 0, ps, 3, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 0);
  /* empty scheme indexes nothing */
  ic_index_prefix_t ok = {
      .block_hashes = bh, .n_block_hashes = 3, .block_token_counts = bc, .n_block_token_counts = 3};
  ic_index_update_t u2 = {"r1", "m", "t", "", "", 0, &ok, 1, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u2), 0);
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 0);
  ic_index_destroy(ix);
}

Test(index_c, chain_with_coset_legacy_hash_preserves_both) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  ic_index_bytes_t bh[3] = {B("b1"), B("b2"), B("b3")};
  int32_t bc[3] = {16, 16, 16};
  ic_index_prefix_t p = {.prefix_hash = B("legacy-full"),
                         .token_count = 128,
                         .block_hashes = bh,
                         .n_block_hashes = 3,
                         .block_token_counts = bc,
                         .n_block_token_counts = 3};
  ic_index_update_t u = {"r", "m", "t", "vllm", "", 0, &p, 1, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 4);
  const char *ch[] = {"b1", "b2", "b3"};
  ic_index_result_t *r = route_chain(ix, "t", "m", "vllm", "", ch, 3, 16, 0);
  cr_assert_eq(row(r, 0)->matched_tokens, 48);
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "", "legacy-full", 0);
  cr_assert_eq(row(r, 0)->matched_tokens, 128);
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "", "b2", 0);
  cr_assert_eq(row(r, 0)->matched_tokens, 32);
  ic_index_result_free(r);
  /* a second replica adds an entry to the block's key, not a distinct key */
  put_legacy(ix, (who_t){"r2", "t", "m", "vllm", ""}, "b1", 16);
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 5);
  cr_assert_eq(k.distinct_keys, 4);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ D. isolation */

Test(index_d, scheme_tenant_model_isolation) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"r-vllm", "t", "m", "vllm", ""}, "same", 64);
  put_legacy(ix, (who_t){"r-sgl", "t", "m", "sglang", ""}, "same", 64);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "same", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "r-vllm");
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "sglang", "", "same", 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "r-sgl");
  ic_index_result_free(r);
  r = route_exact(ix, "t2", "m", "vllm", "", "same", 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m2", "vllm", "", "same", 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "", "", "same", 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_d, adapter_partitions) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"ra", "t", "m", "vllm", "lora-a"}, "p", 128);
  put_legacy(ix, (who_t){"rb", "t", "m", "vllm", "lora-b"}, "p", 128);
  put_legacy(ix, (who_t){"rd", "t", "m", "vllm", ""}, "p", 128);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "lora-a", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "ra");
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "rd");
  ic_index_result_free(r);
  /* update-level default and per-entry override */
  ic_index_prefix_t ps[2] = {{.prefix_hash = B("q1"), .token_count = 64},
                             {.prefix_hash = B("q2"), .token_count = 64, .adapter = "lora-x"}};
  ic_index_update_t u = {"rx", "m", "t", "vllm", "lora-u", 0, ps, 2, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  r = route_exact(ix, "t", "m", "vllm", "lora-u", "q1", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "lora-u", "q2", 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "lora-x", "q2", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  /* unseen adapter under a populated scope: novel prefix (NONE), not UNKNOWN_* */
  r = route_exact(ix, "t", "m", "vllm", "lora-zzz", "p", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ E. events */

static void event(ic_index_t *ix, int type, const char *replica, const char *hash,
                  const char *adapter) {
  ic_index_event_t ev = {.type = type,
                         .replica = replica,
                         .model = "m",
                         .tenant = "t",
                         .adapter = adapter,
                         .prefix_hash = hash ? B(hash) : (ic_index_bytes_t){0, NULL}};
  cr_assert_eq(ic_index_apply_event(ix, &ev), 0);
}

Test(index_e, evict_and_clear) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r1"), "p1", 64);
  put_legacy(ix, W("r1"), "p2", 64);
  put_legacy(ix, W("r2"), "p1", 64);
  event(ix, IC_INDEX_EVENT_PREFIX_EVICTED, "r1", "p1", "");
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p1", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "r2");
  ic_index_result_free(r);
  event(ix, IC_INDEX_EVENT_ALL_CLEARED, "r1", NULL, "");
  r = route_exact(ix, "t", "m", "vllm", "", "p2", 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 1);
  cr_assert_eq(k.distinct_keys, 1);
  cr_assert_eq(k.pending_reclaim, 0);
  event(ix, IC_INDEX_EVENT_ALL_CLEARED, "r2", NULL, "");
  cr_assert(!ic_index_has_any_for_tenant(ix, "t"));
  cr_assert(!ic_index_has_any_for_tenant_model(ix, "t", "m"));
  cr_assert(!ic_index_has_any_for_tenant_model_scheme(ix, "t", "m", "vllm"));
  /* a cleared replica can come back */
  put_legacy(ix, W("r1"), "p9", 64);
  r = route_exact(ix, "t", "m", "vllm", "", "p9", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_e, prefix_added_does_not_refresh) {
  ic_index_config_t c = base_cfg();
  c.ttl_ns = 10 * MIN_NS;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"r1", "t", "m", "vllm", ""}, "p", 64);
  put_legacy(ix, (who_t){"r1", "t", "m", "sglang", ""}, "p", 64);
  g_now += 9 * MIN_NS;
  event(ix, IC_INDEX_EVENT_PREFIX_ADDED, "r1", "p", "");
  g_now += 2 * MIN_NS;
  cr_assert_eq(ic_index_evict_expired(ix), 2);
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 0);
  ic_index_destroy(ix);
}

Test(index_e, adapter_scoped_eviction) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"r1", "t", "m", "vllm", "a"}, "p", 64);
  put_legacy(ix, (who_t){"r1", "t", "m", "vllm", "b"}, "p", 64);
  put_legacy(ix, (who_t){"r1", "t", "m", "vllm", ""}, "p", 64);
  event(ix, IC_INDEX_EVENT_PREFIX_EVICTED, "r1", "p", "a");
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 2);
  event(ix, IC_INDEX_EVENT_PREFIX_EVICTED, "r1", "p", "");
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 0);
  put_legacy(ix, (who_t){"r1", "t", "m", "vllm", "a"}, "p", 64);
  put_legacy(ix, (who_t){"r1", "t", "m", "sglang", "b"}, "q", 64);
  event(ix, IC_INDEX_EVENT_ALL_CLEARED, "r1", NULL, "a");
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 0);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ F. TTL */

static int64_t short_ttl(void *ud, const char *tenant) {
  (void)ud;
  return strcmp(tenant, "short") == 0 ? 5 * MIN_NS : 0;
}

Test(index_f, per_tenant_ttl_and_sweep) {
  ic_index_config_t c = base_cfg();
  c.ttl_resolver = short_ttl;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"r1", "short", "m", "vllm", ""}, "p", 64);
  put_legacy(ix, (who_t){"r1", "long", "m", "vllm", ""}, "p", 64);
  g_now += 10 * MIN_NS;
  ic_index_result_t *r = route_exact(ix, "short", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  r = route_exact(ix, "long", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  cr_assert_eq(ic_index_evict_expired(ix), 1);
  cr_assert(!ic_index_has_any_for_tenant(ix, "short"));
  cr_assert(ic_index_has_any_for_tenant(ix, "long"));
  ic_index_destroy(ix);
}

Test(index_f, chain_run_freshness_is_weakest_link) {
  ic_index_config_t c = base_cfg();
  c.ttl_ns = 10 * MIN_NS;
  ic_index_t *ix = ic_index_create(&c);
  const char *b1[] = {"b1"};
  put_chain(ix, T, b1, 1, 16);
  g_now += 8 * MIN_NS;
  const char *b23[] = {"b2", "b3"};
  put_chain(ix, T, b23, 2, 16);
  const char *ch[] = {"b1", "b2", "b3"};
  ic_index_result_t *r = route_chain(ix, "t", "m", "vllm", "", ch, 3, 16, 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_lt(row(r, 0)->estimated_cache_hit_prob, 0.5f);
  cr_assert_eq(row(r, 0)->estimated_cache_hit_prob, 0.2f);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ G. cap */

static ic_index_eviction_t lfu_all(void *ud, const char *t) {
  (void)ud;
  (void)t;
  return IC_INDEX_EVICT_LFU;
}

typedef struct {
  int64_t lru_cap, lfu_cap, lru_ttl, lfu_ttl, over;
} msink_t;
static void m_idx(void *ud, const char *algo, const char *reason, int64_t n) {
  msink_t *m = ud;
  bool lfu = strcmp(algo, "lfu") == 0, cap = strcmp(reason, "cap") == 0;
  *(cap ? (lfu ? &m->lfu_cap : &m->lru_cap) : (lfu ? &m->lfu_ttl : &m->lru_ttl)) += n;
}
static void m_ten(void *ud, const char *t, const char *reason, int64_t n) {
  (void)t;
  cr_assert_str_eq(reason, "over_entries");
  ((msink_t *)ud)->over += n;
}

static bool has(ic_index_t *ix, const char *hash) {
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", hash, 0);
  bool h = ic_index_result_strategy(r) == IC_INDEX_STRATEGY_PREFIX_MATCH;
  ic_index_result_free(r);
  return h;
}

Test(index_g, cap_evicts_oldest) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 2;
  msink_t ms = {0};
  c.add_index_evictions = m_idx;
  c.metrics_ud = &ms;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "a", 64);
  g_now += MIN_NS;
  put_legacy(ix, T, "b", 64);
  g_now += MIN_NS;
  put_legacy(ix, T, "c", 64);
  cr_assert(!has(ix, "a"));
  cr_assert(has(ix, "b") && has(ix, "c"));
  cr_assert_eq(ms.lru_cap, 1);
  ic_index_destroy(ix);
}

static void credit(ic_index_t *ix, const char *hash, int times) {
  for (int i = 0; i < times; i++) {
    ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", hash, 0);
    ic_index_result_credit_hits(r);
    ic_index_result_free(r);
  }
}

static bool holds(ic_index_t *ix, const char *hash, const char *replica) {
  return ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)hash, strlen(hash),
                               replica) >= 0;
}

/* A queued cap victim names a long (not 8-byte) key by its interned id, and ids are reused once
 * a key is gone: the stale victim must not evict the key that holds the id now. */
Test(index_g, cap_victim_of_a_freed_long_key_does_not_evict_its_successor) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 4;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r9"), "fill-000", 1);
  g_now += 1000000000LL;
  int64_t t_a = g_now;
  put_legacy(ix, W("r3"), "aa", 1); /* long key: interned id */
  g_now += 1000000000LL;
  put_legacy(ix, W("r9"), "fill-001", 1);
  put_legacy(ix, W("r9"), "fill-002", 1);
  put_legacy(ix, W("r9"), "fill-003", 1); /* over the cap: queue built, fill-000 evicted */
  cr_assert(!holds(ix, "fill-000", "r9"));
  event(ix, IC_INDEX_EVENT_PREFIX_EVICTED, "r3", "aa", ""); /* its queued victim is now stale */
  g_now = t_a;
  put_legacy(ix, W("r3"), "zz", 1); /* reuses the freed id */
  put_legacy(ix, W("r1"), "zz", 1); /* over the cap by one: (zz, r1) goes, by replica order */
  cr_assert(holds(ix, "zz", "r3"));
  cr_assert(!holds(ix, "zz", "r1"));
  cr_assert(holds(ix, "fill-001", "r9"));
  ic_index_destroy(ix);
}

Test(index_g, lfu_evicts_lowest_count_then_oldest) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 3;
  c.eviction_resolver = lfu_all;
  msink_t ms = {0};
  c.add_index_evictions = m_idx;
  c.metrics_ud = &ms;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "hot", 64);
  g_now += MIN_NS;
  put_legacy(ix, T, "warm", 64);
  g_now += MIN_NS;
  put_legacy(ix, T, "cold", 64);
  credit(ix, "hot", 5);
  credit(ix, "warm", 2);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)"hot", 3, "r1"), 5);
  g_now += MIN_NS;
  put_legacy(ix, T, "new", 64);
  cr_assert(!has(ix, "cold"));
  cr_assert(has(ix, "hot") && has(ix, "warm") && has(ix, "new"));
  cr_assert_eq(ms.lfu_cap, 1);
  ic_index_destroy(ix);
}

static ic_index_eviction_t g_algo = IC_INDEX_EVICT_LRU;
static ic_index_eviction_t algo_var(void *ud, const char *t) {
  (void)ud;
  (void)t;
  return g_algo;
}

Test(index_g, policy_switch_selects_different_victims) {
  for (int pass = 0; pass < 2; pass++) {
    ic_index_config_t c = base_cfg();
    c.max_entries = 4;
    c.eviction_resolver = algo_var;
    g_algo = IC_INDEX_EVICT_LRU;
    ic_index_t *ix = ic_index_create(&c);
    const char *names[] = {"A", "B", "C", "D"};
    int counts[] = {9, 3, 5, 0};
    for (int i = 0; i < 4; i++) {
      put_legacy(ix, T, names[i], 64);
      g_now += MIN_NS;
    }
    g_algo = IC_INDEX_EVICT_LFU; /* counts only accrue under LFU */
    for (int i = 0; i < 4; i++)
      credit(ix, names[i], counts[i]);
    g_algo = pass ? IC_INDEX_EVICT_LFU : IC_INDEX_EVICT_LRU;
    put_legacy(ix, T, "E", 64);
    cr_assert(!has(ix, pass ? "D" : "A"));
    cr_assert(has(ix, pass ? "A" : "D"));
    ic_index_destroy(ix);
  }
}

Test(index_g, reserved_tenant_hidden_from_cap_and_aggregate) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 1;
  const char *res[] = {IC_INDEX_PROBE_TENANT, ""};
  c.reserved_tenants = res;
  c.n_reserved_tenants = 2;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "p", 64);
  put_legacy(ix, (who_t){"probe-r", IC_INDEX_PROBE_TENANT, "m", "vllm", ""}, "q", 64);
  cr_assert(has(ix, "p"));
  ic_index_result_t *r = route_exact(ix, IC_INDEX_PROBE_TENANT, "m", "vllm", "", "q", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  ic_index_count_t *agg;
  size_t n;
  int64_t total;
  cr_assert_eq(ic_index_aggregate(ix, &agg, &n, &total), 0);
  cr_assert_eq(total, 1);
  cr_assert_eq(n, 1);
  free(agg);
  cr_assert_eq(ic_index_entry_counts_by_model(ix, &agg, &n), 0);
  cr_assert_eq(n, 1);
  cr_assert_eq(agg[0].count, 1);
  free(agg);
  ic_index_snapshot_t s;
  cr_assert_eq(ic_index_snapshot(ix, &s), 0);
  cr_assert_eq(s.n_replicas, 1);
  cr_assert_str_eq(s.replicas[0].replica_id, "r1");
  cr_assert_eq(s.n_tenants, 1);
  ic_index_snapshot_free(&s);
  ic_index_destroy(ix);
}

Test(index_g, eviction_metric_labels) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 1;
  msink_t ms = {0};
  c.add_index_evictions = m_idx;
  c.metrics_ud = &ms;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "a", 1);
  put_legacy(ix, T, "b", 1);
  cr_assert_eq(ms.lru_cap, 1);
  ic_index_destroy(ix);
  c.eviction_resolver = lfu_all;
  c.max_entries = 0;
  c.ttl_ns = MIN_NS;
  ix = ic_index_create(&c);
  put_legacy(ix, T, "a", 1);
  g_now += 2 * MIN_NS;
  ic_index_evict_expired(ix);
  cr_assert_eq(ms.lfu_ttl, 1);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ H. LFU counters */

typedef struct {
  ic_index_t *ix;
} cth_t;
static void *credit_thread(void *arg) {
  cth_t *t = arg;
  for (int i = 0; i < 200; i++) {
    ic_index_lookup_t q = {.tenant = "t", .model = "m", .scheme = "vllm", .prefix_hash = B("p")};
    ic_index_result_t *r;
    if (ic_index_lookup_route(t->ix, &q, &r) == 0) {
      ic_index_result_credit_hits(r);
      ic_index_result_free(r);
    }
  }
  return NULL;
}

Test(index_h, lfu_counter_atomic_under_concurrency) {
  ic_index_config_t c = base_cfg();
  c.eviction_resolver = lfu_all;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "p", 64);
  pthread_t th[50];
  cth_t arg = {ix};
  for (int i = 0; i < 50; i++)
    pthread_create(&th[i], NULL, credit_thread, &arg);
  for (int i = 0; i < 50; i++)
    pthread_join(th[i], NULL);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)"p", 1, "r1"),
               10000);
  ic_index_destroy(ix);
}

Test(index_h, lfu_only_under_lfu_survives_reingest_and_chain) {
  ic_index_config_t c = base_cfg();
  c.eviction_resolver = algo_var;
  g_algo = IC_INDEX_EVICT_LRU;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "p", 64);
  credit(ix, "p", 5);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)"p", 1, "r1"), 0);
  g_algo = IC_INDEX_EVICT_LFU;
  credit(ix, "p", 3);
  put_legacy(ix, T, "p", 64);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)"p", 1, "r1"), 3);
  const char *ch[] = {"b1", "b2", "b3", "x4"};
  put_chain(ix, T, ch, 4, 16);
  for (int i = 0; i < 2; i++) {
    ic_index_result_t *r = route_chain(ix, "t", "m", "vllm", "", ch, 3, 16, 0);
    ic_index_result_credit_hits(r);
    ic_index_result_free(r);
  }
  for (int i = 0; i < 3; i++)
    cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)ch[i], 2, "r1"),
                 2);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)"x4", 2, "r1"), 0);
  g_algo = IC_INDEX_EVICT_LRU;
  ic_index_destroy(ix);
}

Test(index_h, retain_replicas_prunes_rows_and_captures) {
  ic_index_config_t c = base_cfg();
  c.eviction_resolver = lfu_all;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r1"), "p", 100);
  put_legacy(ix, W("r2"), "p", 50);
  put_legacy(ix, W("r3"), "d", 50);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 2);
  const char *keep[] = {"r2"};
  cr_assert_eq(ic_index_result_retain_replicas(r, keep, 1), 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "r2");
  ic_index_result_credit_hits(r);
  ic_index_result_free(r);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)"p", 1, "r1"), 0);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)"p", 1, "r2"), 1);
  /* crediting after the entry was evicted is harmless */
  r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  event(ix, IC_INDEX_EVENT_ALL_CLEARED, "r1", NULL, "");
  event(ix, IC_INDEX_EVENT_PREFIX_EVICTED, "r2", "p", "");
  ic_index_result_credit_hits(r);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* A result names long (not 8-byte) keys by interned id; once the key is gone the id can name
 * another key, which must not receive the delayed credit. */
Test(index_h, credit_skips_a_long_key_whose_id_was_reused) {
  ic_index_config_t c = base_cfg();
  c.eviction_resolver = lfu_all;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r1"), "aa", 100);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "aa", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  event(ix, IC_INDEX_EVENT_PREFIX_EVICTED, "r1", "aa", "");
  put_legacy(ix, W("r1"), "zz", 100); /* takes the freed id */
  ic_index_result_credit_hits(r);
  ic_index_result_free(r);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)"zz", 2, "r1"), 0);
  /* a credit of the live key still lands */
  r = route_exact(ix, "t", "m", "vllm", "", "zz", 0);
  ic_index_result_credit_hits(r);
  ic_index_result_free(r);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", (const uint8_t *)"zz", 2, "r1"), 1);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ I. quota */

static int64_t g_budget = 2;
static bool quota_team_a(void *ud, const char *t, int64_t *max) {
  (void)ud;
  if (strcmp(t, "team-a") != 0) return false;
  *max = g_budget;
  return true;
}

Test(index_i, quota_counts_multi_replica_prefix_once_and_evicts_oldest) {
  ic_index_config_t c = base_cfg();
  c.quota_resolver = quota_team_a;
  g_budget = 2;
  msink_t ms = {0};
  c.add_tenant_evictions = m_ten;
  c.metrics_ud = &ms;
  ic_index_t *ix = ic_index_create(&c);
  who_t a1 = {"r1", "team-a", "m", "vllm", ""}, a2 = {"r2", "team-a", "m", "vllm", ""};
  put_legacy(ix, a1, "a", 64);
  put_legacy(ix, a2, "a", 64);
  g_now += MIN_NS;
  put_legacy(ix, a1, "b", 64);
  cr_assert_eq(ms.over, 0);
  g_now += MIN_NS;
  put_legacy(ix, a1, "c", 64);
  cr_assert_eq(ms.over, 1);
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 2);
  /* other tenants untouched */
  for (int i = 0; i < 4; i++) {
    char h[8];
    snprintf(h, sizeof h, "x%d", i);
    put_legacy(ix, (who_t){"r1", "team-b", "m", "vllm", ""}, h, 64);
  }
  cr_assert(ic_index_has_any_for_tenant(ix, "team-b"));
  ic_index_count_t *agg;
  size_t n;
  int64_t total;
  ic_index_aggregate(ix, &agg, &n, &total);
  cr_assert_eq(n, 2);
  cr_assert_eq(agg[0].count, 2);
  cr_assert_eq(agg[1].count, 4);
  free(agg);
  g_budget = 0;
  put_legacy(ix, a1, "d", 64);
  ic_index_aggregate(ix, &agg, &n, &total);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(agg[0].name, "team-b");
  free(agg);
  ic_index_destroy(ix);
}

Test(index_i, quota_tie_break_is_byte_order_of_full_key) {
  const char *variants[4][2][3] = {
      /* model, scheme, hash of the smaller key, then of the larger */
      {{"m1", "vllm", "h"}, {"m2", "vllm", "h"}},
      {{"m", "s1", "h"}, {"m", "s2", "h"}},
      {{"m", "vllm", "h1"}, {"m", "vllm", "h2"}},
      {{"m", "vllm", "h\x01"}, {"m", "vllm", "h\x02"}},
  };
  for (int v = 0; v < 4; v++) {
    for (int it = 0; it < 16; it++) {
      ic_index_config_t c = base_cfg();
      c.quota_resolver = quota_team_a;
      g_budget = 1;
      ic_index_t *ix = ic_index_create(&c);
      ic_index_prefix_t ps[2];
      for (int k = 0; k < 2; k++) {
        int j = (it & 1) ? 1 - k : k;
        ps[0] = (ic_index_prefix_t){.prefix_hash = B(variants[v][j][2]), .token_count = 1};
        ic_index_update_t u = {
            "r", variants[v][j][0], "team-a", variants[v][j][1], "", g_now / 1000, ps, 1, NULL};
        cr_assert_eq(ic_index_ingest(ix, &u), 0);
      }
      ic_index_result_t *r =
          route_exact(ix, "team-a", variants[v][1][0], variants[v][1][1], "", variants[v][1][2], 0);
      cr_assert_eq(ic_index_result_count(r), 1, "variant %d: larger key survives", v);
      ic_index_result_free(r);
      ic_index_destroy(ix);
    }
  }
  /* adapter variant */
  ic_index_config_t c = base_cfg();
  c.quota_resolver = quota_team_a;
  g_budget = 1;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"r", "team-a", "m", "vllm", "b"}, "h", 1);
  put_legacy(ix, (who_t){"r", "team-a", "m", "vllm", "a"}, "h", 1);
  ic_index_result_t *r = route_exact(ix, "team-a", "m", "vllm", "b", "h", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ J. metrics */

typedef struct {
  char model[16];
  int64_t n;
  int calls;
} gauge_t;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static void m_gauge(void *ud, const char *model, int64_t n) {
  gauge_t *g = ud;
  pthread_mutex_lock(&g_mu);
  snprintf(g->model, sizeof g->model, "%s", model);
  g->n = n;
  g->calls++;
  pthread_mutex_unlock(&g_mu);
}

static void *ingest_one(void *arg) {
  static _Atomic int seq;
  ic_index_t *ix = arg;
  char h[16];
  snprintf(h, sizeof h, "k%d", atomic_fetch_add(&seq, 1));
  ic_index_prefix_t p = {.prefix_hash = B(h), .token_count = 1};
  ic_index_update_t u = {"r", "m", "t", "vllm", "", 0, &p, 1, NULL};
  ic_index_ingest(ix, &u);
  return NULL;
}

Test(index_j, gauge_final_value_and_drain) {
  ic_index_config_t c = base_cfg();
  c.ttl_ns = MIN_NS;
  gauge_t g = {0};
  c.set_index_entries = m_gauge;
  c.metrics_ud = &g;
  ic_index_t *ix = ic_index_create(&c);
  pthread_t th[50];
  for (int i = 0; i < 50; i++)
    pthread_create(&th[i], NULL, ingest_one, ix);
  for (int i = 0; i < 50; i++)
    pthread_join(th[i], NULL);
  cr_assert_str_eq(g.model, "m");
  cr_assert_eq(g.n, 50);
  g_now += 2 * MIN_NS;
  ic_index_evict_expired(ix);
  cr_assert_eq(g.n, 0);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ K/L. ranking, worked examples
 */

Test(index_k, e2_exact_with_decoy_uniform_dp) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r1"), "p", 80);
  put_legacy(ix, W("r2"), "p", 40);
  put_legacy(ix, W("r3-decoy"), "decoy", 10);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 2);
  cr_assert_str_eq(row(r, 0)->replica_id, "r1");
  cr_assert_eq(row(r, 0)->score, 26.666668f);
  cr_assert_eq(row(r, 1)->score, 13.333334f);
  cr_assert_eq(row(r, 0)->estimated_cache_hit_prob, 1.0f);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_k, e3_every_replica_holds_it) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r0"), "chat-template", 16);
  put_legacy(ix, W("r1"), "chat-template", 16);
  put_legacy(ix, W("r2"), "chat-template", 16);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "chat-template", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_PREFIX_MATCH);
  cr_assert_eq(ic_index_result_count(r), 3);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(row(r, i)->score, 0.0f);
    cr_assert_eq(row(r, i)->matched_tokens, 16);
  }
  cr_assert_str_eq(row(r, 0)->replica_id, "r0");
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_k, e4_unique_holder) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r0"), "unique-rag-ctx", 64);
  put_legacy(ix, W("r1"), "other-prefix", 64);
  put_legacy(ix, W("r2"), "other-prefix", 64);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "unique-rag-ctx", 0);
  cr_assert_eq(row(r, 0)->score, 42.666668f);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_k, e5_chain_three_depths) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  const char *ch[] = {"b1", "b2", "b3", "b4"};
  put_chain(ix, W("r0"), ch, 4, 64);
  put_chain(ix, W("r1"), ch, 2, 64);
  put_chain(ix, W("r2"), ch, 1, 64);
  ic_index_result_t *r = route_chain(ix, "t", "m", "vllm", "", ch, 4, 64, 0);
  cr_assert_eq(ic_index_result_count(r), 3);
  cr_assert_str_eq(row(r, 0)->replica_id, "r0");
  cr_assert_eq(row(r, 0)->score, 170.66667f);
  cr_assert_eq(row(r, 0)->matched_tokens, 256);
  cr_assert_str_eq(row(r, 1)->replica_id, "r1");
  cr_assert_eq(row(r, 1)->score, 42.666668f);
  cr_assert_str_eq(row(r, 2)->replica_id, "r2");
  cr_assert_eq(row(r, 2)->score, 0.0f);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_k, e6_chain_with_ages) {
  ic_index_config_t c = base_cfg();
  c.ttl_ns = 30 * MIN_NS;
  ic_index_t *ix = ic_index_create(&c);
  const char *ch[] = {"h1", "h2", "h3", "h4", "h5"};
  put_chain(ix, W("C"), ch, 1, 64);
  g_now += 2 * MIN_NS;
  put_chain(ix, W("B"), ch, 2, 64);
  g_now += MIN_NS;
  put_chain(ix, W("A"), ch, 3, 64);
  g_now += MIN_NS;
  ic_index_result_t *r = route_chain(ix, "t", "m", "vllm", "", ch, 5, 64, 0);
  cr_assert_eq(ic_index_result_count(r), 3);
  cr_assert_str_eq(row(r, 0)->replica_id, "A");
  cr_assert_eq(row(r, 0)->score, 123.73333f);
  cr_assert_eq(row(r, 0)->estimated_cache_hit_prob, 0.96666664f);
  cr_assert_str_eq(row(r, 1)->replica_id, "B");
  cr_assert_eq(row(r, 1)->score, 39.822224f);
  cr_assert_eq(row(r, 2)->score, 0.0f);
  cr_assert_eq(row(r, 2)->estimated_cache_hit_prob, 0.8666667f);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_k, e7_e8_pressure_flips_ranking) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("big-but-hot"), "p", 100);
  put_legacy(ix, W("small-cool"), "p", 50);
  put_legacy(ix, W("decoy"), "d", 5);
  put_stats(ix, W("big-but-hot"), 0.5f, 0.9f);
  put_stats(ix, W("small-cool"), 0.5f, 0.0f);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "small-cool");
  cr_assert_eq(row(r, 0)->score, 16.666668f);
  cr_assert_eq(row(r, 1)->score, 3.333334f);
  ic_index_result_free(r);
  const char *ch[] = {"b1", "b2", "b3"};
  put_chain(ix, W("big-but-hot"), ch, 3, 16);
  put_chain(ix, W("small-cool"), ch, 2, 16);
  r = route_chain(ix, "t", "m", "vllm", "", ch, 3, 16, 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "small-cool");
  cr_assert_eq(row(r, 0)->score, 10.666667f);
  cr_assert_eq(row(r, 1)->score, 3.2000008f);
  ic_index_result_free(r);
  ic_index_destroy(ix);
  /* weight 0: big first; pressure 1.5 clamps to factor 0 */
  c.ranker.pressure_weight = 0;
  ix = ic_index_create(&c);
  put_legacy(ix, W("big"), "p", 100);
  put_legacy(ix, W("small"), "p", 50);
  put_stats(ix, W("big"), 0.5f, 0.9f);
  r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "big");
  ic_index_result_free(r);
  ic_index_destroy(ix);
  c.ranker.pressure_weight = 1;
  ix = ic_index_create(&c);
  put_legacy(ix, W("big"), "p", 100);
  put_legacy(ix, W("tiny"), "p", 1);
  put_legacy(ix, W("decoy"), "d", 1);
  put_stats(ix, W("big"), 0.5f, 1.5f);
  r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "tiny");
  cr_assert_eq(row(r, 1)->score, 0.0f);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_k, e9_slo_bias) {
  ic_index_config_t c = base_cfg();
  c.ranker.slo_tight_ttft_ms = 100;
  c.ranker.slo_tight_bias = 5;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("big-old"), "p", 100);
  put_legacy(ix, W("decoy"), "d", 5);
  g_now += 20 * MIN_NS;
  put_legacy(ix, W("small-fresh"), "p", 50);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 500);
  cr_assert_str_eq(row(r, 0)->replica_id, "big-old");
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "big-old");
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "", "p", 50);
  cr_assert_str_eq(row(r, 0)->replica_id, "small-fresh");
  cr_assert_eq(row(r, 0)->score, 100.0f);
  cr_assert_eq(row(r, 1)->score, 96.29631f);
  ic_index_result_free(r);
  ic_index_destroy(ix);
  c.ranker.slo_tight_bias = 0;
  ix = ic_index_create(&c);
  put_legacy(ix, W("big-old"), "p", 100);
  g_now += 20 * MIN_NS;
  put_legacy(ix, W("small-fresh"), "p", 50);
  r = route_exact(ix, "t", "m", "vllm", "", "p", 50);
  cr_assert_str_eq(row(r, 0)->replica_id, "big-old");
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_k, stale_stats_pressure_ignored) {
  ic_index_config_t c = base_cfg();
  c.ttl_ns = 10 * MIN_NS;
  ic_index_t *ix = ic_index_create(&c);
  put_stats(ix, T, 0.9f, 0.9f);
  g_now += 15 * MIN_NS;
  put_legacy(ix, T, "p", 50);
  /* liveness events refresh last_seen but not the payload age */
  event(ix, IC_INDEX_EVENT_REPLICA_UPDATED, "r1", NULL, "");
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_eq(row(r, 0)->score, 50.0f);
  ic_index_result_free(r);
  r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_neq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_TENANT_HOT);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_k, worst_tier_and_dp_table) {
  cr_assert_eq(ic_index_worst_tier(1, 2), 2);
  cr_assert_eq(ic_index_worst_tier(3, 2), 3);
  cr_assert_eq(ic_index_worst_tier(1, 1), 1);
  cr_assert_eq(ic_index_worst_tier(0, 3), 0);
  cr_assert_eq(ic_index_worst_tier(2, 0), 0);
  cr_assert_eq(ic_index_worst_tier(0, 0), 0);
  cr_assert_eq(ic_index_distinguishing_power(1, 1), 1.0);
  cr_assert_eq(ic_index_distinguishing_power(0, 1), 1.0);
  cr_assert_eq(ic_index_distinguishing_power(0, 0), 1.0);
  cr_assert_eq(ic_index_distinguishing_power(3, 3), 0.0);
  cr_assert_eq(ic_index_distinguishing_power(10, 10), 0.0);
  cr_assert_eq((float)ic_index_distinguishing_power(1, 3), 0.6666667f);
  cr_assert_eq((float)ic_index_distinguishing_power(2, 3), 0.33333334f);
  cr_assert_eq(ic_index_distinguishing_power(5, 3), 0.0);
  cr_assert_eq(ic_index_distinguishing_power(-1, 3), 1.0);
}

Test(index_m, chain_coldest_tier_and_no_overlap_and_malformed) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  const char *b1[] = {"b1"}, *b2[] = {"b2"};
  put_chain_tier(ix, T, b1, 1, 16, 2);
  put_chain_tier(ix, T, b2, 1, 16, 1);
  const char *ch[] = {"b1", "b2"};
  ic_index_result_t *r = route_chain(ix, "t", "m", "vllm", "", ch, 2, 16, 0);
  cr_assert_eq(row(r, 0)->tier, 2);
  cr_assert_eq(row(r, 0)->matched_tokens, 32);
  ic_index_result_free(r);
  const char *no[] = {"zz", "b1"};
  r = route_chain(ix, "t", "m", "vllm", "", no, 2, 16, 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  /* malformed request chain with a valid legacy prefix hash: no rows, no fallback */
  put_legacy(ix, T, "legacy", 64);
  ic_index_bytes_t bh[2] = {B("b1"), B("b2")};
  int32_t bc[1] = {16};
  ic_index_lookup_t q = {.tenant = "t",
                         .model = "m",
                         .scheme = "vllm",
                         .prefix_hash = B("legacy"),
                         .block_hashes = bh,
                         .n_block_hashes = 2,
                         .block_token_counts = bc,
                         .n_block_token_counts = 1};
  cr_assert_eq(ic_index_lookup_route(ix, &q, &r), 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  ic_index_lookup_t q2 = {.tenant = "t",
                          .model = "m",
                          .scheme = "vllm",
                          .block_token_counts = bc,
                          .n_block_token_counts = 1};
  cr_assert_eq(ic_index_lookup_route(ix, &q2, &r), 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ N. TENANT_HOT */

Test(index_n, e10_tenant_hot) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r-warm"), "other", 64);
  put_stats(ix, W("r-warm"), 0.8f, 0.1f);
  put_stats(ix, W("r-cold"), 0.0f, 0.0f);
  g_now += 30 * SEC_NS;
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_TENANT_HOT);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "r-warm");
  cr_assert_eq(row(r, 0)->score, 0.64799994f);
  cr_assert_eq(row(r, 0)->matched_tokens, 0);
  cr_assert_eq(row(r, 0)->estimated_cache_hit_prob, 0.8f);
  cr_assert_eq(row(r, 0)->tier, 0);
  ic_index_result_free(r);
  /* a chain miss never tries TENANT_HOT */
  const char *ch[] = {"zz"};
  r = route_chain(ix, "t", "m", "vllm", "", ch, 1, 16, 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_n, tenant_hot_gates) {
  ic_index_config_t c = base_cfg();
  c.ranker.tenant_hot_min_hit_rate = 0.5f;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r"), "x", 64);
  put_stats(ix, W("r"), 0.2f, 0);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  put_stats(ix, W("r"), 0.5f, 0); /* equal qualifies */
  r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_TENANT_HOT);
  ic_index_result_free(r);
  g_now += 10 * MIN_NS; /* payload older than max age 5 min */
  put_legacy(ix, W("r"), "x", 64);
  r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  /* future stats timestamp: recency clamps to 1 */
  ic_index_stats_t s = {.hit_rate = 0.5f};
  ic_index_update_t u = {"r", "m", "t", "vllm", "", (g_now + 2 * MIN_NS) / 1000, NULL, 0, &s};
  ic_index_ingest(ix, &u);
  r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(row(r, 0)->score, 0.5f);
  ic_index_result_free(r);
  ic_index_destroy(ix);
  c.ranker.tenant_hot_max_age_ns = 0;
  ix = ic_index_create(&c);
  put_legacy(ix, W("r"), "x", 64);
  put_stats(ix, W("r"), 0.9f, 0);
  r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_n, tenant_hot_requires_serving_scheme_and_scope) {
  ic_index_config_t c = base_cfg();
  c.ttl_ns = 10 * MIN_NS;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"r", "t", "m", "sglang", ""}, "x", 64);
  put_stats(ix, W("r"), 0.9f, 0);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_UNKNOWN_HASH_SCHEME);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  /* stats-only replicas never qualify; stats-only tenant is "globally empty" */
  ic_index_t *iy = ic_index_create(&c);
  put_stats(iy, W("r"), 0.9f, 0);
  r = route_exact(iy, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  r = route_exact(iy, "other", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  ic_index_destroy(iy);
  /* after the sweep removes its only prefix the replica is no longer serving */
  put_legacy(ix, W("r"), "y", 64);
  put_stats(ix, W("r"), 0.9f, 0);
  r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_TENANT_HOT);
  ic_index_result_free(r);
  g_now += 4 * MIN_NS;
  put_stats(ix, W("r"), 0.9f, 0);
  g_now += 7 * MIN_NS;
  put_stats(ix, W("r"), 0.9f, 0);
  ic_index_evict_expired(ix);
  r = route_exact(ix, "t", "m", "vllm", "", "novel", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ O. classifier */

Test(index_o, e12_diagnostics) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  ic_index_result_t *r = route_exact(ix, "default", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE); /* cold start */
  ic_index_result_free(r);
  put_legacy(ix, (who_t){"r", "ic-smoke", "m", "vllm", ""}, "p", 64);
  struct {
    const char *t, *m, *s, *h;
    ic_index_strategy_t want;
  } cases[] = {
      {"default", "m", "vllm", "p", IC_INDEX_STRATEGY_UNKNOWN_TENANT},
      {"ic-smoke", "m2", "vllm", "p", IC_INDEX_STRATEGY_UNKNOWN_MODEL},
      {"ic-smoke", "m", "vllm-v1", "p", IC_INDEX_STRATEGY_UNKNOWN_HASH_SCHEME},
      {"other", "m-other", "sglang", "p", IC_INDEX_STRATEGY_UNKNOWN_TENANT},
      {"ic-smoke", "m2", "sglang", "p", IC_INDEX_STRATEGY_UNKNOWN_MODEL},
      {"ic-smoke", "m", "vllm", "novel", IC_INDEX_STRATEGY_NONE},
      {"", "m", "vllm", "p", IC_INDEX_STRATEGY_NONE},
      {"ic-smoke", "", "vllm", "p", IC_INDEX_STRATEGY_NONE},
      {"ic-smoke", "m", "", "p", IC_INDEX_STRATEGY_NONE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    r = route_exact(ix, cases[i].t, cases[i].m, cases[i].s, "", cases[i].h, 0);
    cr_assert_eq(ic_index_result_strategy(r), cases[i].want, "case %zu", i);
    cr_assert_eq(ic_index_result_count(r), 0);
    ic_index_result_free(r);
  }
  const char *ch[] = {"p"};
  r = route_chain(ix, "ic-smoke", "m", "sglang", "", ch, 1, 16, 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_UNKNOWN_HASH_SCHEME);
  ic_index_result_free(r);
  cr_assert_str_eq(ic_index_strategy_name(IC_INDEX_STRATEGY_NONE), "NO_HINT");
  ic_index_destroy(ix);
}

Test(index_o, empty_keys_not_served_even_when_ingested_under_empty) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"r", "", "", "vllm", ""}, "p", 64);
  ic_index_result_t *r = route_exact(ix, "", "", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_NONE);
  ic_index_result_free(r);
  /* public Lookup has no empty-key guard */
  ic_index_lookup_t q = {.tenant = "", .model = "", .scheme = "vllm", .prefix_hash = B("p")};
  cr_assert_eq(ic_index_lookup(ix, &q, &r), 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ P. affinity */

Test(index_p, affinity_vectors_and_guards) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  const char *pick = NULL;
  cr_assert(!ic_index_affinity_hint(ix, "t", "m", "vllm", (const uint8_t *)"seed", 4, &pick));
  put_legacy(ix, W("r-2"), "x", 1);
  put_legacy(ix, W("r-1"), "y", 1);
  cr_assert(ic_index_affinity_hint(ix, "t", "m", "vllm", (const uint8_t *)"seed", 4, &pick));
  cr_assert_str_eq(pick, "r-1");
  cr_assert(!ic_index_affinity_hint(ix, "t", "m", "vllm", (const uint8_t *)"", 0, &pick));
  cr_assert(!ic_index_affinity_hint(ix, "t", "m", "", (const uint8_t *)"seed", 4, &pick));
  cr_assert(!ic_index_affinity_hint(ix, "t", "m", "sglang", (const uint8_t *)"seed", 4, &pick));
  put_legacy(ix, W("r-4"), "x", 1);
  put_legacy(ix, W("r-3"), "x", 1);
  cr_assert(ic_index_affinity_hint(ix, "t", "m", "vllm", (const uint8_t *)"prompt-fingerprint", 18,
                                   &pick));
  cr_assert_str_eq(pick, "r-2");
  /* balance: 1000 pseudo-random 32-byte seeds over 8 replicas */
  ic_index_t *iy = ic_index_create(&c);
  char name[8];
  for (int i = 0; i < 8; i++) {
    snprintf(name, sizeof name, "b-%d", i);
    put_legacy(iy, W(name), "x", 1);
  }
  int hits[8] = {0};
  uint64_t s = 42;
  for (int i = 0; i < 1000; i++) {
    uint8_t seed[32];
    for (int k = 0; k < 32; k++) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      seed[k] = (uint8_t)(s >> 56);
    }
    cr_assert(ic_index_affinity_hint(iy, "t", "m", "vllm", seed, 32, &pick));
    hits[pick[2] - '0']++;
  }
  for (int i = 0; i < 8; i++)
    cr_assert(hits[i] >= 80 && hits[i] <= 220, "replica %d got %d", i, hits[i]);
  ic_index_destroy(iy);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ Q. snapshot */

Test(index_q, snapshot_aggregates_and_presence_bits) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  ic_index_stats_t s = {.cache_memory_bytes = 100,
                        .hit_rate = 0.8f,
                        .pressure = 0.5f,
                        .t2_hit_tokens = 600,
                        .t2_query_tokens = 1000};
  ic_index_prefix_t p1 = {.prefix_hash = B("p1"), .token_count = 1};
  ic_index_prefix_t p2 = {.prefix_hash = B("p2"), .token_count = 1};
  ic_index_prefix_t p3 = {.prefix_hash = B("p3"), .token_count = 1};
  ic_index_update_t u1 = {"replica-a", "m1", "tenant-a", "vllm", "", 0, &p1, 1, &s};
  ic_index_update_t u2 = {"replica-a", "m2", "tenant-a", "vllm", "", 0, &p2, 1, &s};
  ic_index_stats_t sb = {.hit_rate = 0.6f};
  ic_index_update_t u3 = {"replica-b", "m1", "tenant-b", "vllm", "", 0, &p3, 1, &sb};
  ic_index_ingest(ix, &u1);
  ic_index_ingest(ix, &u2);
  ic_index_ingest(ix, &u3);
  put_legacy(ix, (who_t){"prefix-only", "tenant-c", "m", "vllm", ""}, "x1", 1);
  put_legacy(ix, (who_t){"prefix-only", "tenant-c", "m", "vllm", ""}, "x2", 1);
  ic_index_snapshot_t snap;
  cr_assert_eq(ic_index_snapshot(ix, &snap), 0);
  cr_assert_eq(snap.total_prefixes, 5);
  cr_assert_eq(snap.hot_prefixes, 0);
  cr_assert_eq(snap.n_replicas, 3);
  cr_assert_str_eq(snap.replicas[0].replica_id, "replica-a");
  cr_assert_eq(snap.replicas[0].prefix_count, 2);
  cr_assert(snap.replicas[0].stats_reported);
  cr_assert_eq(snap.replicas[0].t2_hit_tokens, 600);
  cr_assert_eq(snap.replicas[0].last_event_at_ns, g_now);
  cr_assert_str_eq(snap.replicas[1].replica_id, "replica-b");
  cr_assert_str_eq(snap.replicas[2].replica_id, "prefix-only");
  cr_assert(!snap.replicas[2].stats_reported);
  cr_assert_eq(snap.replicas[2].last_update_ns, IC_INDEX_TIME_ZERO);
  cr_assert_eq(snap.replicas[2].prefix_count, 2);
  cr_assert_eq(snap.n_tenants, 3);
  cr_assert_str_eq(snap.tenants[0].tenant_id, "tenant-a");
  cr_assert_eq(snap.tenants[0].index_entries, 2);
  cr_assert_eq(snap.tenants[0].hit_rate, 0.8f);
  cr_assert(snap.tenants[0].hit_rate_reported);
  cr_assert_eq(snap.tenants[1].hit_rate, 0.6f);
  cr_assert(!snap.tenants[2].hit_rate_reported);
  cr_assert_eq(snap.tenants[2].index_entries, 2);
  int64_t sum = 0;
  for (size_t i = 0; i < snap.n_tenants; i++)
    sum += snap.tenants[i].index_entries;
  cr_assert_eq(sum, snap.total_prefixes);
  ic_index_snapshot_free(&snap);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ change listener + long keys */

typedef struct {
  int added, evicted, updated, cleared;
} chg_t;
static void on_chg(void *ud, const ic_index_change_t *ch) {
  chg_t *c = ud;
  switch (ch->type) {
  case IC_INDEX_CHANGE_PREFIX_ADDED: c->added++; break;
  case IC_INDEX_CHANGE_PREFIX_EVICTED: c->evicted++; break;
  case IC_INDEX_CHANGE_REPLICA_UPDATED: c->updated++; break;
  case IC_INDEX_CHANGE_ALL_CLEARED: c->cleared++; break;
  }
}

Test(index_x, change_listener_and_long_hashes) {
  ic_index_config_t c = base_cfg();
  chg_t ch = {0};
  c.on_change = on_chg;
  c.change_ud = &ch;
  ic_index_t *ix = ic_index_create(&c);
  const char *long32 = "0123456789abcdef0123456789abcdef";
  put_legacy(ix, T, long32, 64);
  put_legacy(ix, T, long32, 64); /* refresh: no second ADDED */
  put_legacy(ix, T, "", 3);      /* empty hash is a legal key */
  put_legacy(ix, T, "12345678", 8);
  put_stats(ix, T, 0.5f, 0);
  cr_assert_eq(ch.added, 3);
  cr_assert_eq(ch.updated, 1);
  cr_assert(has(ix, long32));
  cr_assert(has(ix, ""));
  cr_assert(has(ix, "12345678"));
  cr_assert(!has(ix, "0123456789abcdef0123456789abcdeX"));
  event(ix, IC_INDEX_EVENT_PREFIX_EVICTED, "r1", long32, "");
  cr_assert_eq(ch.evicted, 1);
  event(ix, IC_INDEX_EVENT_ALL_CLEARED, "r1", NULL, "");
  cr_assert_eq(ch.cleared, 1);
  cr_assert_eq(ch.evicted, 1);
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 0);
  cr_assert_eq(k.distinct_keys, 0);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ lazy clear, concurrency */

static void put_many(ic_index_t *ix, const char *replica, int from, int n) {
  ic_index_bytes_t bh[128];
  int32_t bc[128];
  uint8_t raw[128][8];
  for (int base = from; base < from + n; base += 128) {
    int k = from + n - base < 128 ? from + n - base : 128;
    for (int j = 0; j < k; j++) {
      uint64_t v = (uint64_t)(base + j) * 0x9e3779b97f4a7c15ULL;
      memcpy(raw[j], &v, 8);
      bh[j] = (ic_index_bytes_t){8, raw[j]};
      bc[j] = 16;
    }
    ic_index_prefix_t p = {.block_hashes = bh,
                           .n_block_hashes = (size_t)k,
                           .block_token_counts = bc,
                           .n_block_token_counts = (size_t)k};
    ic_index_update_t u = {replica, "m", "t", "vllm", "", 0, &p, 1, NULL};
    cr_assert_eq(ic_index_ingest(ix, &u), 0);
  }
}

Test(index_x, large_clear_is_immediate_and_reclaimed_lazily) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_many(ix, "big", 0, 150000);
  put_many(ix, "small", 0, 1000); /* shares the first 1000 keys with "big" */
  ic_index_event_t ev = {
      .type = IC_INDEX_EVENT_ALL_CLEARED, .replica = "big", .model = "m", .tenant = "t"};
  cr_assert_eq(ic_index_apply_event(ix, &ev), 0);
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 1000); /* immediate */
  cr_assert_gt(k.pending_reclaim, 0);  /* memory comes back lazily */
  uint8_t raw[8];
  uint64_t v = 5000ULL * 0x9e3779b97f4a7c15ULL; /* a key only "big" held */
  memcpy(raw, &v, 8);
  ic_index_lookup_t q = {.tenant = "t", .model = "m", .scheme = "vllm", .prefix_hash = {8, raw}};
  ic_index_result_t *r;
  cr_assert_eq(ic_index_lookup_route(ix, &q, &r), 0);
  cr_assert_eq(ic_index_result_count(r), 0);
  ic_index_result_free(r);
  cr_assert(
      ic_index_has_any_for_tenant_model_scheme(ix, "t", "m", "vllm")); /* "small" still serves */
  const char *pick;
  cr_assert(ic_index_affinity_hint(ix, "t", "m", "vllm", raw, 8, &pick));
  cr_assert_str_eq(pick, "small");
  while (ic_index_maintain(ix, 16)) {
  }
  ic_index_counters(ix, &k);
  cr_assert_eq(k.pending_reclaim, 0);
  cr_assert_eq(k.total_entries, 1000);
  cr_assert_eq(k.distinct_keys, 1000);
  /* the replica can report again under a fresh slot */
  put_many(ix, "big", 0, 10);
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 1010);
  ic_index_destroy(ix);
}

typedef struct {
  ic_index_t *ix;
  _Atomic bool stop;
} stress_t;

static void *stress_reader(void *arg) {
  stress_t *st = arg;
  uint8_t raw[4][8];
  ic_index_bytes_t bh[4];
  int32_t bc[4] = {16, 16, 16, 16};
  for (int it = 0; !atomic_load(&st->stop); it++) {
    for (int j = 0; j < 4; j++) {
      uint64_t v = (uint64_t)((it * 4 + j) % 20000) * 0x9e3779b97f4a7c15ULL;
      memcpy(raw[j], &v, 8);
      bh[j] = (ic_index_bytes_t){8, raw[j]};
    }
    ic_index_lookup_t q = {.tenant = "t",
                           .model = "m",
                           .scheme = "vllm",
                           .block_hashes = bh,
                           .n_block_hashes = 4,
                           .block_token_counts = bc,
                           .n_block_token_counts = 4};
    ic_index_result_t *r;
    if (ic_index_lookup_route(st->ix, &q, &r) == 0) {
      for (size_t i = 0; i < ic_index_result_count(r); i++)
        cr_assert_gt(ic_index_result_rows(r)[i].matched_tokens, 0);
      ic_index_result_credit_hits(r);
      ic_index_result_free(r);
    }
  }
  return NULL;
}

/* /snapshot scans give the scope lock up between chunks: rows must stay sane while writers
 * grow tables, clear a replica and evict in between. */
static void *stress_snapshot(void *arg) {
  stress_t *st = arg;
  while (!atomic_load(&st->stop)) {
    ic_index_snapshot_t snap;
    cr_assert_eq(ic_index_snapshot(st->ix, &snap), 0);
    for (size_t i = 0; i < snap.n_replicas; i++)
      cr_assert_geq(snap.replicas[i].prefix_count, 0);
    ic_index_snapshot_free(&snap);
  }
  return NULL;
}

static bool quota_12k(void *ud, const char *tenant, int64_t *max) {
  (void)ud;
  (void)tenant;
  *max = 12000;
  return true;
}

Test(index_x, concurrent_lookups_ingest_clear_sweep_cap, .timeout = 300) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 15000;
  c.eviction_resolver = lfu_all;
  c.quota_resolver = quota_12k; /* the cached quota order under concurrent writers too */
  ic_index_t *ix = ic_index_create(&c);
  stress_t st = {ix, false};
  pthread_t th[4];
  for (int i = 0; i < 3; i++)
    pthread_create(&th[i], NULL, stress_reader, &st);
  pthread_create(&th[3], NULL, stress_snapshot, &st);
  for (int round = 0; round < 30; round++) {
    put_many(ix, round % 2 ? "ra" : "rb", (round * 700) % 20000, 2000);
    if (round % 7 == 3) {
      ic_index_event_t ev = {
          .type = IC_INDEX_EVENT_ALL_CLEARED, .replica = "ra", .model = "m", .tenant = "t"};
      ic_index_apply_event(ix, &ev);
    }
    if (round % 5 == 4) ic_index_evict_expired(ix);
    ic_index_maintain(ix, 8);
  }
  atomic_store(&st.stop, true);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  while (ic_index_maintain(ix, 64)) {
  }
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_leq(k.total_entries, 15000);
  cr_assert_leq(k.distinct_keys, 12000);
  cr_assert_eq(k.pending_reclaim, 0);
  ic_index_count_t *agg;
  size_t n;
  int64_t total;
  cr_assert_eq(ic_index_aggregate(ix, &agg, &n, &total), 0);
  cr_assert_eq(total, k.distinct_keys);
  free(agg);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ more behaviour cases */

Test(index_j, metrics_sink_receives_counts) {
  ic_index_config_t c = base_cfg();
  gauge_t g = {0};
  c.set_index_entries = m_gauge;
  c.metrics_ud = &g;
  ic_index_t *ix = ic_index_create(&c);
  ic_index_prefix_t ps[2] = {{.prefix_hash = B("a"), .token_count = 1},
                             {.prefix_hash = B("b"), .token_count = 1}};
  ic_index_update_t u = {"r", "m", "t", "vllm", "", 0, ps, 2, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  cr_assert_str_eq(g.model, "m");
  cr_assert_eq(g.n, 2);
  ic_index_destroy(ix);
}

Test(index_o, has_any_presence_checks) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  cr_assert(!ic_index_has_any_for_tenant(ix, "t"));
  put_legacy(ix, T, "p", 1);
  cr_assert(ic_index_has_any_for_tenant(ix, "t"));
  cr_assert(!ic_index_has_any_for_tenant(ix, "u"));
  cr_assert(ic_index_has_any_for_tenant_model(ix, "t", "m"));
  cr_assert(!ic_index_has_any_for_tenant_model(ix, "t", "m2"));
  cr_assert(ic_index_has_any_for_tenant_model_scheme(ix, "t", "m", "vllm"));
  cr_assert(!ic_index_has_any_for_tenant_model_scheme(ix, "t", "m", "sglang"));
  ic_index_destroy(ix);
}

Test(index_p, affinity_spec_vectors) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("r-3"), "x", 1);
  put_legacy(ix, W("r-1"), "x", 1);
  put_legacy(ix, W("r-2"), "x", 1);
  /* canonical chain seed: uint32_be(len) || hash per block */
  const uint8_t seed[] = {0,   0,   0,   14,  'p', 'r', 'o', 'm', 'p', 't', '-', 'b',
                          'l', 'o', 'c', 'k', '-', '1', 0,   0,   0,   14,  'p', 'r',
                          'o', 'm', 'p', 't', '-', 'b', 'l', 'o', 'c', 'k', '-', '2'};
  const char *pick = NULL;
  cr_assert(ic_index_affinity_hint(ix, "t", "m", "vllm", seed, sizeof seed, &pick));
  cr_assert_str_eq(pick, "r-1");
  /* "p": SHA-256 prefix mod 3 = 1 */
  cr_assert(ic_index_affinity_hint(ix, "t", "m", "vllm", (const uint8_t *)"p", 1, &pick));
  cr_assert_str_eq(pick, "r-2");
  /* stable over repeats, and order of insertion does not matter */
  for (int i = 0; i < 100; i++) {
    cr_assert(ic_index_affinity_hint(ix, "t", "m", "vllm", (const uint8_t *)"p", 1, &pick));
    cr_assert_str_eq(pick, "r-2");
  }
  ic_index_destroy(ix);
}

static _Atomic int64_t g_flip_ttl = 0;
static int64_t flip_ttl(void *ud, const char *t) {
  (void)ud;
  (void)t;
  return atomic_load(&g_flip_ttl);
}
static void *flipper(void *arg) {
  _Atomic bool *stop = arg;
  for (int i = 0; !atomic_load(stop); i++)
    atomic_store(&g_flip_ttl, (i & 1) ? 5 * MIN_NS : 0);
  return NULL;
}

Test(index_f, concurrent_ttl_resolver_mutation) {
  ic_index_config_t c = base_cfg();
  c.ttl_resolver = flip_ttl;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, T, "p", 64);
  _Atomic bool stop = false;
  pthread_t th;
  pthread_create(&th, NULL, flipper, &stop);
  for (int i = 0; i < 2000; i++) {
    ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
    cr_assert_eq(ic_index_result_count(r), 1); /* fresh under both TTLs */
    ic_index_result_free(r);
  }
  atomic_store(&stop, true);
  pthread_join(th, NULL);
  ic_index_destroy(ix);
}

Test(index_x, replica_slots_are_recycled_past_65535_names, .timeout = 300) {
  ic_index_config_t c = base_cfg();
  c.ttl_ns = MIN_NS;
  ic_index_t *ix = ic_index_create(&c);
  char name[32];
  for (int i = 0; i < 65535; i++) {
    snprintf(name, sizeof name, "pod-%d", i);
    put_legacy(ix, W(name), i % 2 ? "p" : name, 1); /* shared and own keys */
  }
  /* every slot is taken and still holds an entry: a new name cannot be placed */
  ic_index_prefix_t p = {.prefix_hash = B("q"), .token_count = 1};
  ic_index_update_t u = {"pod-new", "m", "t", "vllm", "", 0, &p, 1, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), IC_INDEX_TEST_ERANGE);
  g_now += 2 * MIN_NS;
  ic_index_evict_expired(ix); /* the old pods' entries expire: their slots become reusable */
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "q", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "pod-new");
  ic_index_result_free(r);
  /* an old name that comes back gets a slot too */
  put_legacy(ix, W("pod-7"), "p", 1);
  r = route_exact(ix, "t", "m", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "pod-7");
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

Test(index_m, long_chains_beyond_stack_buffers) {
  ic_index_config_t c = base_cfg();
  c.eviction_resolver = lfu_all;
  ic_index_t *ix = ic_index_create(&c);
  enum { N = 1000 };
  static uint8_t raw[N][8];
  static ic_index_bytes_t bh[N];
  static int32_t bc[N];
  for (int i = 0; i < N; i++) {
    uint64_t v = (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL;
    memcpy(raw[i], &v, 8);
    bh[i] = (ic_index_bytes_t){8, raw[i]};
    bc[i] = 16;
  }
  ic_index_prefix_t p = {.block_hashes = bh,
                         .n_block_hashes = 700,
                         .block_token_counts = bc,
                         .n_block_token_counts = 700};
  ic_index_update_t u = {"r1", "m", "t", "vllm", "", 0, &p, 1, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  ic_index_lookup_t q = {.tenant = "t",
                         .model = "m",
                         .scheme = "vllm",
                         .block_hashes = bh,
                         .n_block_hashes = N,
                         .block_token_counts = bc,
                         .n_block_token_counts = N};
  ic_index_result_t *r;
  cr_assert_eq(ic_index_lookup_route(ix, &q, &r), 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_eq(row(r, 0)->matched_tokens, 700 * 16);
  ic_index_result_credit_hits(r);
  ic_index_result_free(r);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", raw[699], 8, "r1"), 1);
  cr_assert_eq(ic_index_access_count(ix, "t", "m", "vllm", "", raw[0], 8, "r1"), 1);
  ic_index_destroy(ix);
}

typedef struct {
  int by_reason[5];
  int cleared;
  char last_hash[32];
  char last_adapter[16];
} why_t;
static void on_why(void *ud, const ic_index_change_t *ch) {
  why_t *w = ud;
  if (ch->type == IC_INDEX_CHANGE_PREFIX_EVICTED) {
    w->by_reason[ch->reason]++;
    snprintf(w->last_hash, sizeof w->last_hash, "%.*s", (int)ch->hash_len, (const char *)ch->hash);
    snprintf(w->last_adapter, sizeof w->last_adapter, "%s", ch->adapter);
  }
  if (ch->type == IC_INDEX_CHANGE_ALL_CLEARED) w->cleared++;
}

Test(index_x, change_listener_reasons) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 2;
  c.ttl_ns = 10 * MIN_NS;
  c.quota_resolver = quota_team_a;
  g_budget = 1;
  why_t w = {0};
  c.on_change = on_why;
  c.change_ud = &w;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"r1", "t", "m", "vllm", "lora"}, "a", 1);
  event(ix, IC_INDEX_EVENT_PREFIX_EVICTED, "r1", "a", "");
  cr_assert_eq(w.by_reason[IC_INDEX_REASON_EVENT], 1);
  cr_assert_str_eq(w.last_hash, "a");
  cr_assert_str_eq(w.last_adapter, "lora");
  put_legacy(ix, T, "b", 1);
  g_now += MIN_NS;
  put_legacy(ix, T, "c", 1);
  g_now += MIN_NS;
  put_legacy(ix, T, "d", 1); /* over the cap of 2: "b" goes */
  cr_assert_eq(w.by_reason[IC_INDEX_REASON_CAP], 1);
  cr_assert_str_eq(w.last_hash, "b");
  put_legacy(ix, (who_t){"r1", "team-a", "m", "vllm", ""}, "q1", 1);
  g_now += MIN_NS;
  put_legacy(ix, (who_t){"r1", "team-a", "m", "vllm", ""}, "q2", 1); /* quota 1: "q1" goes */
  cr_assert_eq(w.by_reason[IC_INDEX_REASON_QUOTA], 1);
  cr_assert_str_eq(w.last_hash, "q1");
  g_now += 20 * MIN_NS;
  ic_index_evict_expired(ix);
  cr_assert_geq(w.by_reason[IC_INDEX_REASON_TTL], 2);
  put_legacy(ix, T, "e", 1);
  event(ix, IC_INDEX_EVENT_ALL_CLEARED, "r1", NULL, "");
  cr_assert_eq(w.cleared, 1);
  ic_index_destroy(ix);
}

/* on_change_flush (StreamCacheEvents stages each thread's changes and publishes them at the
 * flush): a listener that keeps a thread's changes until the flush and then appends them to one
 * shared log must still see every key's ADDED and EVICTED alternate, with the last one matching
 * the index, while one thread ingests and another evicts the same keys; nothing is left staged
 * when a call returns. */
#define BATCHED_KEYS 64
typedef struct {
  int *order; /* published changes: +1 + key (ADDED) or -1 - key (EVICTED) */
  _Atomic size_t n;
  pthread_mutex_t mu;
  _Atomic int left_staged, flushes;
} batched_t;
static _Thread_local int tl_staged[4096];
static _Thread_local size_t tl_nstaged;

static int batched_key(const ic_index_change_t *ch) {
  uint64_t v;
  memcpy(&v, ch->hash, 8);
  for (int k = 0; k < BATCHED_KEYS; k++)
    if ((uint64_t)(k + 1) * 0x9e3779b97f4a7c15ULL == v) return k;
  return -1;
}
static void on_batched(void *ud, const ic_index_change_t *ch) {
  (void)ud;
  if (ch->type != IC_INDEX_CHANGE_PREFIX_ADDED && ch->type != IC_INDEX_CHANGE_PREFIX_EVICTED)
    return;
  int k = ch->hash_len == 8 ? batched_key(ch) : -1;
  if (k >= 0 && tl_nstaged < 4096)
    tl_staged[tl_nstaged++] = ch->type == IC_INDEX_CHANGE_PREFIX_ADDED ? 1 + k : -1 - k;
}
static void on_batched_flush(void *ud) {
  batched_t *b = ud;
  atomic_fetch_add(&b->flushes, 1);
  pthread_mutex_lock(&b->mu);
  for (size_t i = 0; i < tl_nstaged; i++)
    b->order[atomic_fetch_add(&b->n, 1)] = tl_staged[i];
  pthread_mutex_unlock(&b->mu);
  tl_nstaged = 0;
}

typedef struct {
  ic_index_t *ix;
  batched_t *b;
  int rounds;
  _Atomic bool started, done;
} batched_arg_t;

static void batched_put(ic_index_t *ix) {
  ic_index_bytes_t bh[BATCHED_KEYS];
  int32_t bc[BATCHED_KEYS];
  uint64_t raw[BATCHED_KEYS];
  for (int k = 0; k < BATCHED_KEYS; k++) {
    raw[k] = (uint64_t)(k + 1) * 0x9e3779b97f4a7c15ULL;
    bh[k] = (ic_index_bytes_t){8, (const uint8_t *)&raw[k]};
    bc[k] = 16;
  }
  ic_index_prefix_t p = {.block_hashes = bh,
                         .n_block_hashes = BATCHED_KEYS,
                         .block_token_counts = bc,
                         .n_block_token_counts = BATCHED_KEYS};
  ic_index_update_t u = {"r1", "m", "t", "vllm", "", 0, &p, 1, NULL};
  ic_index_ingest(ix, &u);
}

static void *batched_writer(void *p) {
  batched_arg_t *a = p;
  for (int i = 0; i < a->rounds; i++) {
    batched_put(a->ix);
    if (tl_nstaged) atomic_fetch_add(&a->b->left_staged, 1);
    atomic_store(&a->started, true);
  }
  atomic_store(&a->done, true);
  return NULL;
}

static void *batched_evictor(void *p) {
  batched_arg_t *a = p;
  while (!atomic_load(&a->started))
    sched_yield();
  for (int i = 0; i < a->rounds || !atomic_load(&a->done); i++)
    for (int k = i % 3; k < BATCHED_KEYS; k += 3) {
      uint64_t v = (uint64_t)(k + 1) * 0x9e3779b97f4a7c15ULL;
      ic_index_event_t ev = {.type = IC_INDEX_EVENT_PREFIX_EVICTED,
                             .replica = "r1",
                             .model = "m",
                             .tenant = "t",
                             .prefix_hash = {8, (const uint8_t *)&v}};
      ic_index_apply_event(a->ix, &ev);
      if (tl_nstaged) atomic_fetch_add(&a->b->left_staged, 1);
    }
  return NULL;
}

Test(index_x, change_listener_batches_keep_each_keys_order) {
  ic_index_config_t c = base_cfg();
  enum { ROUNDS = 300 };
  batched_t b = {.order = calloc(2 * ROUNDS * BATCHED_KEYS + 64, sizeof(int))};
  pthread_mutex_init(&b.mu, NULL);
  c.on_change = on_batched;
  c.on_change_flush = on_batched_flush;
  c.change_ud = &b;
  ic_index_t *ix = ic_index_create(&c);
  batched_arg_t a = {.ix = ix, .b = &b, .rounds = ROUNDS};
  pthread_t w, e;
  pthread_create(&w, NULL, batched_writer, &a);
  pthread_create(&e, NULL, batched_evictor, &a);
  pthread_join(w, NULL);
  pthread_join(e, NULL);
  cr_assert_eq(atomic_load(&b.left_staged), 0, "changes left staged after a call returned");
  cr_assert_gt(atomic_load(&b.flushes), 0);
  int last[BATCHED_KEYS] = {0};
  size_t n = atomic_load(&b.n), evicted = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b.order[i], k = v > 0 ? v - 1 : -v - 1;
    cr_assert_neq(v > 0, last[k] > 0, "key %d: two %s in a row (change %zu of %zu)", k,
                  v > 0 ? "ADDED" : "EVICTED", i, n);
    last[k] = v;
    evicted += v < 0;
  }
  cr_assert_gt(evicted, 0, "the evictor never overlapped the writer");
  for (int k = 0; k < BATCHED_KEYS; k++) {
    uint64_t v = (uint64_t)(k + 1) * 0x9e3779b97f4a7c15ULL;
    ic_index_lookup_t q = {
        .tenant = "t", .model = "m", .scheme = "vllm", .prefix_hash = {8, (const uint8_t *)&v}};
    ic_index_result_t *r;
    cr_assert_eq(ic_index_lookup_route(ix, &q, &r), 0);
    cr_assert_eq(ic_index_result_count(r) == 1, last[k] > 0, "key %d: stream says %s", k,
                 last[k] > 0 ? "held" : "gone");
    ic_index_result_free(r);
  }
  ic_index_destroy(ix);
  pthread_mutex_destroy(&b.mu);
  free(b.order);
}

/* ------------------------------------------------------------------ S. interned strings */

/* Issue 16 item 8: 200 cleared replica ids (1 MiB each) used to stay interned for good. */
Test(index_s, strings_of_cleared_replicas_are_freed_and_names_reusable) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, W("keeper"), "k", 10);
  size_t base = ic_index_string_count(ix); /* keeper, t, m, vllm, "" */
  size_t len = 64 * 1024;
  char *id = malloc(len + 8);
  for (int i = 0; i < 200; i++) {
    memset(id, 'a' + i % 26, len);
    snprintf(id + len, 8, "%03d", i);
    ic_index_prefix_t p = {.prefix_hash = B("p"), .token_count = 10};
    ic_index_stats_t st = {.hit_rate = 0.5f};
    ic_index_update_t u = {id, "m", "t", "vllm", "", 0, &p, 1, &st};
    cr_assert_eq(ic_index_ingest(ix, &u), 0);
    event(ix, IC_INDEX_EVENT_ALL_CLEARED, id, NULL, "");
  }
  cr_assert_eq(ic_index_string_count(ix), base + 200);
  while (ic_index_maintain(ix, 65536)) {
  }
  ic_index_evict_expired(ix); /* releases what the lazy reclaim left */
  cr_assert_eq(ic_index_reclaim(ix, NULL), 200);
  cr_assert_eq(ic_index_string_count(ix), base);
  /* the keeper is untouched; a cleared name can come back (its id is reused) */
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "k", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "keeper");
  ic_index_result_free(r);
  put_legacy(ix, W(id), "again", 10);
  r = route_exact(ix, "t", "m", "vllm", "", "again", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, id);
  ic_index_result_free(r);
  cr_assert_eq(ic_index_string_count(ix), base + 1);
  free(id);
  ic_index_destroy(ix);
}

Test(index_s, strings_of_expired_replicas_are_freed_shared_names_kept) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  /* "t" is a tenant and also a replica name: the tenant record keeps it */
  put_legacy(ix, W("t"), "p1", 10);
  put_legacy(ix, W("gone"), "p2", 10);
  size_t before = ic_index_string_count(ix);
  g_now += 61 * MIN_NS; /* past the 60 min TTL */
  put_legacy(ix, W("fresh"), "p3", 10);
  ic_index_evict_expired(ix);
  cr_assert_eq(ic_index_reclaim(ix, NULL), 1);   /* "gone"; "t" stays (tenant) */
  cr_assert_eq(ic_index_string_count(ix), before); /* -gone +fresh */
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p3", 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "fresh");
  ic_index_result_free(r);
  put_legacy(ix, W("t"), "p4", 10); /* the replica named like the tenant comes back */
  r = route_exact(ix, "t", "m", "vllm", "", "p4", 0);
  cr_assert_str_eq(row(r, 0)->replica_id, "t");
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* Readers under a guard never see a freed string while replicas churn and strings are reclaimed
   concurrently (run under ASan: a use-after-free fails the test). */
typedef struct {
  ic_index_t *ix;
  _Atomic bool stop;
  _Atomic long lookups;
} churn_t;

static void *churn_reader(void *arg) {
  churn_t *st = arg;
  while (!atomic_load(&st->stop)) {
    ic_index_guard_t g = ic_index_guard(st->ix);
    ic_index_result_t *r = route_exact(st->ix, "t", "m", "vllm", "", "hot", 0);
    for (size_t i = 0; i < ic_index_result_count(r); i++)
      cr_assert_eq(strncmp(row(r, i)->replica_id, "churn-", 6), 0);
    ic_index_result_free(r);
    ic_index_unguard(st->ix, g);
    atomic_fetch_add(&st->lookups, 1);
  }
  return NULL;
}

Test(index_s, guarded_readers_survive_concurrent_reclaim) {
  ic_index_config_t c = base_cfg();
  churn_t st = {.ix = ic_index_create(&c)};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&th[i], NULL, churn_reader, &st);
  char name[32];
  size_t freed = 0;
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "churn-%d", i);
    put_legacy(st.ix, W(name), "hot", 10);
    if (i >= 4) {
      snprintf(name, sizeof name, "churn-%d", i - 4);
      event(st.ix, IC_INDEX_EVENT_ALL_CLEARED, name, NULL, "");
    }
    if (i % 50 == 49) {
      while (ic_index_maintain(st.ix, 65536)) {
      }
      ic_index_evict_expired(st.ix);
      freed += ic_index_reclaim(st.ix, NULL);
    }
  }
  atomic_store(&st.stop, true);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  cr_assert_gt(freed, 2000, "freed %zu", freed);
  cr_assert_gt(atomic_load(&st.lookups), 0);
  ic_index_destroy(st.ix);
}

/* ------------------------------------------------------------------ T. fair share at the cap */

static int64_t tenant_keys(ic_index_t *ix, const char *tenant) {
  ic_index_count_t *c = NULL;
  size_t n = 0;
  int64_t total = 0, k = 0;
  cr_assert_eq(ic_index_aggregate(ix, &c, &n, &total), 0);
  for (size_t i = 0; i < n; i++)
    if (strcmp(c[i].name, tenant) == 0) k = c[i].count;
  free(c);
  return k;
}

static void flood(ic_index_t *ix, const char *tenant, const char *replica, int from, int n) {
  char h[32];
  for (int i = from; i < from + n; i++) {
    snprintf(h, sizeof h, "%s-%d", tenant, i);
    put_legacy(ix, (who_t){replica, tenant, "m", "vllm", ""}, h, 16);
  }
}

/* Issue 16 item 5: one writer pushing far past the cap used to evict every other tenant. */
Test(index_t, a_flooding_tenant_is_evicted_before_the_others) {
  for (int fair = 0; fair <= 1; fair++) {
    ic_index_config_t c = base_cfg();
    c.max_entries = 1000;
    c.cap_fair_share = fair;
    ic_index_t *ix = ic_index_create(&c);
    flood(ix, "a", "ra", 0, 100);
    flood(ix, "b", "rb", 0, 100);
    g_now += SEC_NS; /* the flood is newer: the global LRU order picks a and b first */
    flood(ix, "c", "rc", 0, 5000);
    int64_t a = tenant_keys(ix, "a"), b = tenant_keys(ix, "b"), cc = tenant_keys(ix, "c");
    cr_assert_leq(a + b + cc, 1000);
    if (fair) {
      cr_assert_eq(a, 100);
      cr_assert_eq(b, 100);
      cr_assert_eq(cc, 800);
      ic_index_result_t *r = route_exact(ix, "a", "m", "vllm", "", "a-0", 0);
      cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_PREFIX_MATCH);
      ic_index_result_free(r);
    } else {
      cr_assert_eq(a + b, 0, "reference order: the older tenants go first (a %lld b %lld)",
                   (long long)a, (long long)b);
    }
    ic_index_destroy(ix);
  }
}

/* Within the shares nothing changes: the global order still decides. */
Test(index_t, tenants_within_their_share_keep_the_global_order) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 300;
  ic_index_t *ix = ic_index_create(&c);
  flood(ix, "a", "ra", 0, 140);
  g_now += SEC_NS;
  flood(ix, "b", "rb", 0, 140);
  g_now += SEC_NS;
  flood(ix, "b", "rb", 140, 40); /* b: 180 > share 150: b's oldest go first */
  cr_assert_eq(tenant_keys(ix, "a"), 140);
  cr_assert_eq(tenant_keys(ix, "b"), 160);
  ic_index_destroy(ix);
}
