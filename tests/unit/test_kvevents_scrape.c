/* lib/kvevents engine metrics scraper: the reference scraper's worked values (vLLM and
 * SGLang profiles, tiers, model filter, priority breakdowns, deltas, resets, fail-loud cases). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ic/err.h"
#include "ic/kvevents.h"

#define GIB 1073741824LL

static int derive(ic_kv_scraper_t *s, const char *body, ic_kv_stats_t *st) {
  char err[256] = "";
  return ic_kv_scraper_derive(s, body, strlen(body), st, err, sizeof(err));
}

static const char *VLLM_CPU =
    "# HELP vllm:kv_cache_usage_perc KV usage\n"
    "# TYPE vllm:kv_cache_usage_perc gauge\n"
    "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.42\n"
    "# TYPE vllm:num_requests_running gauge\n"
    "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3.0\n"
    "# TYPE vllm:num_requests_waiting gauge\n"
    "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 5.0\n"
    "# TYPE vllm:prefix_cache_hits_total counter\n"
    "vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"m\"} 25.0\n"
    "# TYPE vllm:prefix_cache_queries_total counter\n"
    "vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"m\"} 100.0\n";

static const char *VLLM_CPU_TICK2 = "# TYPE vllm:kv_cache_usage_perc gauge\n"
                                    "vllm:kv_cache_usage_perc{model_name=\"m\"} 0.55\n"
                                    "# TYPE vllm:num_requests_running gauge\n"
                                    "vllm:num_requests_running{model_name=\"m\"} 7\n"
                                    "# TYPE vllm:num_requests_waiting gauge\n"
                                    "vllm:num_requests_waiting{model_name=\"m\"} 1\n"
                                    "# TYPE vllm:prefix_cache_hits_total counter\n"
                                    "vllm:prefix_cache_hits_total{model_name=\"m\"} 95\n"
                                    "# TYPE vllm:prefix_cache_queries_total counter\n"
                                    "vllm:prefix_cache_queries_total{model_name=\"m\"} 200\n";

static const char *SGLANG = "# TYPE sglang:token_usage gauge\n"
                            "sglang:token_usage{model_name=\"m\",tp_rank=\"0\"} 0.63\n"
                            "# TYPE sglang:num_running_reqs gauge\n"
                            "sglang:num_running_reqs{model_name=\"m\",tp_rank=\"0\"} 6\n"
                            "# TYPE sglang:num_queue_reqs gauge\n"
                            "sglang:num_queue_reqs{model_name=\"m\",priority=\"\"} 2\n"
                            "sglang:num_queue_reqs{model_name=\"m\",priority=\"0\"} 2\n"
                            "# TYPE sglang:cache_hit_rate gauge\n"
                            "sglang:cache_hit_rate{model_name=\"m\"} 0.75\n"
                            "# TYPE sglang:gen_throughput gauge\n"
                            "sglang:gen_throughput{model_name=\"m\"} 12.5\n";

Test(kvevents_scrape, vllm_first_tick_zero_hit_rate_then_delta) {
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, GIB, 256);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, VLLM_CPU, &st), 0);
  cr_assert_eq(st.cache_memory_bytes, 450971566);
  cr_assert_eq(st.pressure, 0.03125f);
  cr_assert_eq(st.hit_rate, 0.0f);
  cr_assert_eq(derive(s, VLLM_CPU_TICK2, &st), 0);
  cr_assert_float_eq(st.hit_rate, 0.7f, 1e-6);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, legacy_gpu_gauge_and_auto_max_of_gpu_cpu) {
  const char *gpu = "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.61\n"
                    "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 12\n"
                    "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n";
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, GIB, 32);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, gpu, &st), 0);
  cr_assert_eq(st.cache_memory_bytes, 654982512);
  cr_assert_eq(st.pressure, 0.375f);
  const char *legacy = "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.0\n"
                       "# TYPE vllm:cpu_cache_usage_perc gauge\nvllm:cpu_cache_usage_perc 0.42\n"
                       "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\n"
                       "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n";
  cr_assert_eq(derive(s, legacy, &st), 0);
  cr_assert_eq(st.cache_memory_bytes, 450971566);
  ic_kv_scraper_free(s);
  /* an explicit tier pins the lookup: gpu on a kv-only exposition is 0 bytes */
  s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_GPU, GIB, 256);
  cr_assert_eq(derive(s, VLLM_CPU, &st), 0);
  cr_assert_eq(st.cache_memory_bytes, 0);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, t2_external_counters_and_absent_ones) {
  const char *t2 =
      "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 0\n"
      "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} 0\n"
      "# TYPE vllm:external_prefix_cache_hits_total counter\n"
      "vllm:external_prefix_cache_hits_total{model_name=\"m\"} 750\n"
      "vllm:external_prefix_cache_hits_total{model_name=\"other\"} 5\n"
      "# TYPE vllm:external_prefix_cache_queries_total counter\n"
      "vllm:external_prefix_cache_queries_total{model_name=\"m\"} 1000\n";
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", "m", IC_KV_TIER_AUTO, 0, 256);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, t2, &st), 0);
  cr_assert_eq(st.t2_hit_tokens, 750);
  cr_assert_eq(st.t2_query_tokens, 1000);
  cr_assert_eq(st.cache_memory_bytes, 0, "size 0 => 0 bytes");
  cr_assert_eq(st.pressure, 0.0f);
  cr_assert_eq(derive(s, VLLM_CPU, &st), 0);
  cr_assert_eq(st.t2_hit_tokens, 0);
  cr_assert_eq(st.t2_query_tokens, 0);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, counter_reset_gives_zero_then_recovers) {
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, GIB, 256);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, VLLM_CPU_TICK2, &st), 0);
  cr_assert_eq(derive(s, VLLM_CPU, &st), 0); /* counters went down */
  cr_assert_eq(st.hit_rate, 0.0f);
  cr_assert_eq(derive(s, VLLM_CPU_TICK2, &st), 0);
  cr_assert_float_eq(st.hit_rate, 0.7f, 1e-6);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, rejected_scrape_does_not_poison_the_baseline) {
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, GIB, 256);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, VLLM_CPU, &st), 0);
  cr_assert_eq(derive(s, SGLANG, &st), IC_EPROTO, "vLLM profile on SGLang exposition");
  cr_assert_eq(derive(s, VLLM_CPU_TICK2, &st), 0);
  cr_assert_float_eq(st.hit_rate, 0.7f, 1e-6);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, sglang_profile_and_scheme_mismatch) {
  ic_kv_scraper_t *s = ic_kv_scraper_new("sglang", NULL, IC_KV_TIER_AUTO, GIB, 256);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, SGLANG, &st), 0);
  cr_assert_eq(st.pressure, 0.03125f, "priority breakdown skipped: 6 + 2");
  cr_assert_float_eq(st.hit_rate, 0.75f, 1e-6);
  cr_assert_eq(st.cache_memory_bytes, 676457349);
  char err[256];
  cr_assert_eq(ic_kv_scraper_derive(s, VLLM_CPU, strlen(VLLM_CPU), &st, err, sizeof(err)),
               IC_EPROTO);
  cr_assert(strstr(err, "no recognized sglang metric families"), "%s", err);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, sglang_data_parallel_aggregation) {
  const char *dp =
      "# TYPE sglang:num_running_reqs gauge\n"
      "sglang:num_running_reqs{dp_rank=\"0\"} 3\n"
      "sglang:num_running_reqs{dp_rank=\"1\"} 5\n"
      "sglang:num_running_reqs{dp_rank=\"1\",priority=\"0\"} 5\n"
      "# TYPE sglang:num_queue_reqs gauge\n"
      "sglang:num_queue_reqs{dp_rank=\"0\"} 1\n"
      "sglang:num_queue_reqs{dp_rank=\"1\"} 2\n"
      "# TYPE sglang:token_usage gauge\n"
      "sglang:token_usage{dp_rank=\"0\"} 0.40\nsglang:token_usage{dp_rank=\"1\"} 0.70\n"
      "# TYPE sglang:cache_hit_rate gauge\n"
      "sglang:cache_hit_rate{dp_rank=\"0\"} 0.60\nsglang:cache_hit_rate{dp_rank=\"1\"} 0.90\n";
  ic_kv_scraper_t *s = ic_kv_scraper_new("sglang", NULL, IC_KV_TIER_AUTO, GIB, 256);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, dp, &st), 0);
  cr_assert_eq(st.pressure, 0.04296875f);
  cr_assert_float_eq(st.hit_rate, 0.9f, 1e-6);
  cr_assert_eq(st.cache_memory_bytes, 751619276);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, missing_and_non_finite_load_gauges_fail_loud) {
  ic_kv_scraper_t *s = ic_kv_scraper_new("sglang", NULL, IC_KV_TIER_AUTO, GIB, 256);
  ic_kv_stats_t st;
  char err[256];
  const char *only_hit = "# TYPE sglang:cache_hit_rate gauge\nsglang:cache_hit_rate 0.5\n";
  cr_assert_eq(ic_kv_scraper_derive(s, only_hit, strlen(only_hit), &st, err, sizeof(err)),
               IC_EPROTO);
  cr_assert(strstr(err, "load gauges incomplete"), "%s", err);
  const char *nan = "# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs NaN\n"
                    "# TYPE sglang:num_queue_reqs gauge\nsglang:num_queue_reqs 1\n";
  cr_assert_eq(derive(s, nan, &st), IC_EPROTO);
  const char *nanrank =
      "# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{dp_rank=\"0\"} NaN\n"
      "sglang:num_running_reqs{dp_rank=\"1\"} 4\n"
      "# TYPE sglang:num_queue_reqs gauge\nsglang:num_queue_reqs 0\n";
  cr_assert_eq(derive(s, nanrank, &st), 0);
  cr_assert_eq(st.pressure, 4.0f / 256);
  cr_assert_eq(st.hit_rate, 0.0f, "absent hit rate is 0");
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, model_filter_and_unlabeled_series) {
  const char *multi = "# TYPE vllm:kv_cache_usage_perc gauge\n"
                      "vllm:kv_cache_usage_perc{model_name=\"primary\"} 0.2\n"
                      "vllm:kv_cache_usage_perc{model_name=\"other\"} 0.9\n"
                      "vllm:kv_cache_usage_perc 0.95\n"
                      "# TYPE vllm:num_requests_running gauge\n"
                      "vllm:num_requests_running{model_name=\"primary\"} 1\n"
                      "vllm:num_requests_running{model_name=\"other\"} 50\n"
                      "# TYPE vllm:num_requests_waiting gauge\n"
                      "vllm:num_requests_waiting{model_name=\"primary\"} 1\n";
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", "primary", IC_KV_TIER_AUTO, GIB, 8);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, multi, &st), 0);
  cr_assert_eq(st.cache_memory_bytes, 214748364);
  cr_assert_eq(st.pressure, 0.25f);
  ic_kv_scraper_free(s);
  s = ic_kv_scraper_new("vllm", "absent-model", IC_KV_TIER_AUTO, GIB, 8);
  cr_assert_eq(derive(s, multi, &st), IC_EPROTO, "filter excluding the load gauges fails loud");
  ic_kv_scraper_free(s);
  s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, GIB, 8);
  cr_assert_eq(derive(s, multi, &st), 0);
  cr_assert_eq(st.pressure, 1.0f, "52/8 clamps to 1");
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, unsuffixed_counters_and_untyped_samples) {
  const char *a = "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0.3\n"
                  "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\n"
                  "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 1\n"
                  "# TYPE vllm:prefix_cache_hits counter\nvllm:prefix_cache_hits 10\n"
                  "# TYPE vllm:prefix_cache_queries counter\nvllm:prefix_cache_queries 20\n";
  const char *b = "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0.3\n"
                  "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\n"
                  "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 1\n"
                  "# TYPE vllm:prefix_cache_hits counter\nvllm:prefix_cache_hits 16\n"
                  "# TYPE vllm:prefix_cache_queries counter\nvllm:prefix_cache_queries 30\n";
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, GIB, 8);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, a, &st), 0);
  cr_assert_eq(derive(s, b, &st), 0);
  cr_assert_float_eq(st.hit_rate, 0.6f, 1e-6);
  cr_assert_eq(st.pressure, 0.25f);
  ic_kv_scraper_free(s);
  /* samples without # TYPE are invisible to value extraction */
  const char *untyped = "vllm:num_requests_running 1\nvllm:num_requests_waiting 1\n";
  s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, GIB, 8);
  cr_assert_eq(derive(s, untyped, &st), IC_EPROTO);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, partial_exposition_succeeds_with_zeros_and_garbage_fails) {
  const char *p = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n"
                  "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n";
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, GIB, 256);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, p, &st), 0);
  cr_assert_eq(st.pressure, 0.0f);
  cr_assert_eq(st.cache_memory_bytes, 0);
  cr_assert_eq(st.hit_rate, 0.0f);
  cr_assert_eq(derive(s, "vllm:num_requests_running{model_name=\"x 1\n", &st), IC_EPROTO);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, cache_tier_parse_and_unknown_scheme) {
  ic_kv_cache_tier_t t;
  cr_assert_eq(ic_kv_cache_tier_parse("auto", &t), 0);
  cr_assert_eq(ic_kv_cache_tier_parse("kv", &t), 0);
  cr_assert_eq(ic_kv_cache_tier_parse("gpu", &t), 0);
  cr_assert_eq(ic_kv_cache_tier_parse("cpu", &t), 0);
  const char *bad[] = {"", "xpu", "AUTO", "default"};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(ic_kv_cache_tier_parse(bad[i], &t), IC_EINVAL);
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm-v1", NULL, IC_KV_TIER_AUTO, 0, 256);
  cr_assert(ic_kv_scraper_unknown_scheme(s));
  ic_kv_scraper_free(s);
  s = ic_kv_scraper_new("sglang", NULL, IC_KV_TIER_AUTO, 0, 256);
  cr_assert_not(ic_kv_scraper_unknown_scheme(s));
  ic_kv_scraper_free(s);
  s = ic_kv_scraper_new("", NULL, IC_KV_TIER_AUTO, 0, 256);
  cr_assert_not(ic_kv_scraper_unknown_scheme(s));
  ic_kv_scraper_free(s);
}

/* The live load sample (docs/ranking.md): the queue gauges as counts and the KV usage fraction. */
Test(kvevents_scrape, live_load_sample_queue_and_kv_usage) {
  const char *body = "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0.25\n"
                     "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 12\n"
                     "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 7\n";
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, GIB, 256);
  ic_kv_stats_t st;
  cr_assert_eq(derive(s, body, &st), 0);
  cr_assert_eq(st.num_waiting, 7);
  cr_assert_eq(st.num_running, 12);
  cr_assert_float_eq(st.kv_usage, 0.25f, 1e-7);
  const char *over = "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 1.7\n"
                     "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running -3\n"
                     "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 1e12\n";
  cr_assert_eq(derive(s, over, &st), 0);
  cr_assert_eq(st.num_waiting, INT32_MAX, "saturates, never wraps");
  cr_assert_eq(st.num_running, 0, "a negative gauge reads as 0");
  cr_assert_float_eq(st.kv_usage, 1.0f, 1e-7);
  ic_kv_scraper_free(s);
}

Test(kvevents_scrape, process_start_time_is_reported_even_when_derivation_fails) {
  ic_kv_scraper_t *s = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, 0, 256);
  ic_kv_stats_t st;
  char *body = "# TYPE process_start_time_seconds gauge\n"
               "process_start_time_seconds 1.7650e+09\n"
               "# TYPE vllm:num_requests_running gauge\n"
               "vllm:num_requests_running{model_name=\"m\"} 1\n"
               "# TYPE vllm:num_requests_waiting gauge\n"
               "vllm:num_requests_waiting{model_name=\"m\"} 0\n";
  cr_assert_eq(derive(s, body, &st), 0);
  cr_assert_float_eq(st.process_start_s, 1.765e9, 1);
  /* no engine families at all: the derivation fails, the start time is still read */
  cr_assert_neq(derive(s, "process_start_time_seconds 1765000001\n", &st), 0);
  cr_assert_float_eq(st.process_start_s, 1765000001.0, 0.5);
  cr_assert_eq(derive(s, "up 1\n", &st) == 0, false);
  cr_assert_eq(st.process_start_s, 0);
  ic_kv_scraper_free(s);
}
