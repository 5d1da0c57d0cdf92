/* Unit tests for lib/replay without I/O: Mooncake parsing and token expansion, synthetic
 * workloads, the approximate router's memory, pickers, SSE/completion parsing, summaries, SVG. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/fingerprint.h"
#include "ic/replay.h"

static uint32_t *tokens_of(const ic_replay_workload_t *w, size_t i, size_t *n) {
  uint32_t *t = malloc((w->reqs[i].input_len + 1) * sizeof(*t));
  *n = ic_replay_req_tokens(w, i, t, w->reqs[i].input_len);
  return t;
}

static ic_replay_workload_t *parse(const char *s, char *err) {
  return ic_replay_mooncake_parse(s, strlen(s), "t", err, 256);
}

Test(replay_mooncake, expands_ids_into_shared_token_blocks) {
  char err[256] = "";
  ic_replay_workload_t *w = parse(
      "{\"timestamp\": 0, \"input_length\": 1100, \"output_length\": 5, \"hash_ids\": [7, 8, 9]}\n"
      "{\"timestamp\": 10, \"input_length\": 600, \"output_length\": 0, \"hash_ids\": [7, 3]}\n",
      err);
  cr_assert_not_null(w, "%s", err);
  cr_assert_eq(w->n, 2);
  cr_assert_eq(w->reqs[0].input_len, 1100);
  cr_assert_eq(w->reqs[1].arrival_us, 10000);
  cr_assert_eq(w->reqs[1].output_len, 1, "output 0 becomes max_tokens 1");
  size_t n0, n1;
  uint32_t *a = tokens_of(w, 0, &n0), *b = tokens_of(w, 1, &n1);
  cr_assert_eq(n0, 1100);
  cr_assert_eq(n1, 600);
  /* Same first id: the first 512 tokens are equal, the next block differs. */
  cr_assert_eq(memcmp(a, b, 512 * sizeof(uint32_t)), 0);
  cr_assert_neq(memcmp(a + 512, b + 512, 88 * sizeof(uint32_t)), 0);
  for (size_t i = 0; i < n0; i++)
    cr_assert(a[i] >= IC_REPLAY_TOKEN_BASE);
  /* And so the fingerprint chains share exactly 32 blocks of 16. */
  uint64_t ca[80], cb[80];
  size_t ka = ic_fp_prefix_hashes(a, n0, 16, NULL, ca, 80, NULL);
  size_t kb = ic_fp_prefix_hashes(b, n1, 16, NULL, cb, 80, NULL);
  cr_assert_eq(ka, 68);
  cr_assert_eq(kb, 37);
  size_t common = 0;
  while (common < kb && ca[common] == cb[common])
    common++;
  cr_assert_eq(common, 32);
  free(a);
  free(b);
  ic_replay_workload_free(w);
}

Test(replay_mooncake, truncated_last_block_is_a_prefix_of_the_full_block) {
  char err[256];
  ic_replay_workload_t *w =
      parse("{\"timestamp\":0,\"input_length\":700,\"output_length\":1,\"hash_ids\":[1,2]}\n"
            "{\"timestamp\":0,\"input_length\":1024,\"output_length\":1,\"hash_ids\":[1,2]}\n",
            err);
  cr_assert_not_null(w);
  size_t n0, n1;
  uint32_t *a = tokens_of(w, 0, &n0), *b = tokens_of(w, 1, &n1);
  cr_assert_eq(memcmp(a, b, 700 * sizeof(uint32_t)), 0);
  free(a);
  free(b);
  ic_replay_workload_free(w);
}

Test(replay_mooncake, bad_lines_are_skipped_and_neighbours_kept) {
  char err[256];
  ic_replay_workload_t *w = parse(
      "{\"timestamp\":5,\"input_length\":10,\"output_length\":1,\"hash_ids\":[1]}\n"
      "not json\n"
      "{\"timestamp\":6,\"input_length\":600,\"output_length\":1,\"hash_ids\":[1]}\n" /* too few */
      "{\"timestamp\":7,\"input_length\":10,\"output_length\":1,\"hash_ids\":[-1]}\n"
      "{\"timestamp\":-1,\"input_length\":10,\"output_length\":1,\"hash_ids\":[1]}\n"
      "[1,2,3]\n"
      "\n"
      "{\"timestamp\":1,\"input_length\":10,\"output_length\":2,\"hash_ids\":[4]}\r\n",
      err);
  cr_assert_not_null(w);
  cr_assert_eq(w->n, 2);
  cr_assert_eq(w->skipped, 5);
  cr_assert(strstr(w->first_error, "line 2") != NULL, "%s", w->first_error);
  /* Sorted by timestamp. */
  cr_assert_eq(w->reqs[0].arrival_us, 1000);
  cr_assert_eq(w->reqs[1].arrival_us, 5000);
  ic_replay_workload_free(w);
}

Test(replay_mooncake, nothing_usable_is_an_error) {
  char err[256] = "";
  cr_assert_null(parse("garbage\n{}\n", err));
  cr_assert(strstr(err, "no usable request") != NULL, "%s", err);
}

Test(replay_mooncake, real_trace_file_loads) {
  char err[256] = "", spec[512];
  snprintf(spec, sizeof(spec), "mooncake:%s/../../data/traces/mooncake_conversation_trace.jsonl",
           IC_TEST_DATA_DIR);
  ic_replay_workload_t *w = ic_replay_workload_load(spec, err, sizeof(err));
  cr_assert_not_null(w, "%s", err);
  cr_assert_eq(w->n, 12031);
  cr_assert_eq(w->skipped, 0);
  cr_assert_str_eq(w->name, "conversation");
  ic_replay_workload_limit(w, 0, 60 * 1000000LL);
  cr_assert(w->n > 100 && w->n < 12031);
  cr_assert(w->reqs[w->n - 1].arrival_us < 60 * 1000000LL);
  ic_replay_workload_limit(w, 10, 0);
  cr_assert_eq(w->n, 10);
  ic_replay_workload_free(w);
}

Test(replay_synth, shared_prefix_shape) {
  char err[256] = "";
  ic_replay_workload_t *w = ic_replay_workload_load(
      "shared-prefix:groups=5,questions=3,context=100,question=20,output=7,rate=10", err, 256);
  cr_assert_not_null(w, "%s", err);
  cr_assert_eq(w->n, 15);
  int per_ctx[16] = {0};
  uint64_t ctx[16];
  int nctx = 0;
  for (size_t i = 0; i < w->n; i++) {
    cr_assert_eq(w->reqs[i].input_len, 120);
    cr_assert_eq(w->reqs[i].output_len, 7);
    if (i) cr_assert(w->reqs[i].arrival_us >= w->reqs[i - 1].arrival_us);
    uint64_t c = w->seg_ids[w->reqs[i].seg_off];
    int k = 0;
    while (k < nctx && ctx[k] != c)
      k++;
    if (k == nctx) ctx[nctx++] = c;
    per_ctx[k]++;
  }
  cr_assert_eq(nctx, 5);
  for (int k = 0; k < 5; k++)
    cr_assert_eq(per_ctx[k], 3);
  ic_replay_workload_free(w);
}

Test(replay_synth, multi_turn_turns_extend_the_history) {
  char err[256] = "";
  ic_replay_workload_t *w = ic_replay_workload_load(
      "multi-turn:sessions=3,turns=4,system=32,user=8,answer=16,think=5", err, 256);
  cr_assert_not_null(w, "%s", err);
  cr_assert_eq(w->n, 12);
  /* For each request, a longer request with the same prefix exists unless it's a last turn:
   * count prefix relations. */
  int extended = 0;
  for (size_t i = 0; i < w->n; i++) {
    size_t ni;
    uint32_t *a = tokens_of(w, i, &ni);
    for (size_t j = 0; j < w->n; j++) {
      if (w->reqs[j].input_len != ni + 16 + 8) continue;
      size_t nj;
      uint32_t *b = tokens_of(w, j, &nj);
      if (!memcmp(a, b, ni * sizeof(uint32_t))) {
        extended++;
        cr_assert(w->reqs[j].arrival_us >= w->reqs[i].arrival_us);
      }
      free(b);
    }
    free(a);
  }
  cr_assert_eq(extended, 9, "3 sessions x 3 follow-up turns");
  ic_replay_workload_free(w);
}

Test(replay_synth, cache_stress_and_spec_errors) {
  char err[256] = "";
  ic_replay_workload_t *w = ic_replay_workload_load(
      "cache-stress:prefixes=50,prefix=64,suffix=4,requests=200,zipf=1.0", err, 256);
  cr_assert_not_null(w, "%s", err);
  cr_assert_eq(w->n, 200);
  cr_assert_eq(w->reqs[0].input_len, 68);
  ic_replay_workload_free(w);
  cr_assert_null(ic_replay_workload_load("shared-prefix:groups=0", err, 256));
  cr_assert(strstr(err, "groups") != NULL, "%s", err);
  cr_assert_null(ic_replay_workload_load("shared-prefix:bogus=1", err, 256));
  cr_assert(strstr(err, "unknown workload parameter") != NULL, "%s", err);
  cr_assert_null(ic_replay_workload_load("shared-prefix:groups", err, 256));
  cr_assert_null(ic_replay_workload_load("shared-prefix:groups=1.5", err, 256));
  cr_assert_null(ic_replay_workload_load("nope", err, 256));
  cr_assert(strstr(err, "unknown workload") != NULL);
  cr_assert_null(ic_replay_workload_load("mooncake:/nonexistent/file.jsonl", err, 256));
  cr_assert(strstr(err, "/nonexistent/file.jsonl") != NULL);
}

Test(replay_synth, burst_siblings_share_a_new_prefix_within_the_window) {
  char err[256] = "";
  ic_replay_workload_t *w = ic_replay_workload_load(
      "burst:bursts=4,siblings=5,prefix=64,suffix=16,output=3,window=50,rate=1", err, 256);
  cr_assert_not_null(w, "%s", err);
  cr_assert_str_eq(w->name, "burst");
  cr_assert_eq(w->n, 20);
  for (size_t i = 0; i < w->n; i++) {
    const ic_replay_req_t *q = &w->reqs[i];
    cr_assert_eq(q->burst, i / 5 + 1);
    cr_assert_eq(q->burst_prefix, 64);
    cr_assert_eq(q->input_len, 80);
    if (i) cr_assert(q->arrival_us >= w->reqs[i - 1].arrival_us, "arrivals are ordered");
    const ic_replay_req_t *first = &w->reqs[i / 5 * 5];
    cr_assert_leq(q->arrival_us - first->arrival_us, 50000, "within the 50 ms window");
    /* siblings share the prefix segment, bursts never do; suffixes are all different */
    cr_assert_eq(w->seg_ids[q->seg_off], w->seg_ids[first->seg_off]);
    if (i >= 5) cr_assert_neq(w->seg_ids[q->seg_off], w->seg_ids[w->reqs[i - 5].seg_off]);
    if (i % 5) cr_assert_neq(w->seg_ids[q->seg_off + 1], w->seg_ids[w->reqs[i - 1].seg_off + 1]);
  }
  ic_replay_workload_free(w);
  cr_assert_null(ic_replay_workload_load("burst:siblings=0", err, 256));
  cr_assert_null(ic_replay_workload_load("burst:window=-1", err, 256));
}

Test(replay_report, burst_figures) {
  /* burst 1: 3 siblings on replica 0 (one computed the prefix), 1 on replica 1 (computed);
     burst 2: 2 siblings on replica 1, both computed it (sent in the same step) */
  ic_replay_record_t r[6] = {0};
  int rep[6] = {0, 0, 0, 1, 1, 1};
  int64_t cached[6] = {0, 4096, 4096, 0, 0, 16};
  uint32_t burst[6] = {1, 1, 1, 1, 2, 2};
  for (int i = 0; i < 6; i++) {
    r[i].ok = true;
    r[i].replica = rep[i];
    r[i].prompt_tokens = 4224;
    r[i].cached_tokens = cached[i];
    r[i].lookup_us = r[i].predicted_tokens = -1;
    r[i].burst = burst[i];
    r[i].burst_prefix = 4096;
  }
  ic_replay_summary_t s;
  ic_replay_summarize(r, 6, 2, 16, "burst", "lookup", &s);
  cr_assert_eq(s.bursts, 2);
  cr_assert_float_eq(s.burst_same_replica_ratio, (0.75 + 1.0) / 2, 1e-9);
  /* pairs (1,0): 1 computed; (1,1): 1; (2,1): 2 */
  cr_assert_float_eq(s.burst_prefill_computes_per_replica, 4.0 / 3, 1e-9);
  cr_assert_float_eq(s.burst_prefill_once_ratio, 2.0 / 3, 1e-9);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_assert_eq(ic_replay_write_summary_json(f, &s), 0);
  fclose(f);
  cr_assert_not_null(strstr(buf, "\"burst_same_replica_ratio\":0.875"), "%s", buf);
  free(buf);
  /* no bursts: no burst keys */
  r[0].burst = r[1].burst = r[2].burst = r[3].burst = r[4].burst = r[5].burst = 0;
  ic_replay_summarize(r, 6, 2, 16, "x", "lookup", &s);
  cr_assert_eq(s.bursts, 0);
}

Test(replay_route, modes_parse_and_pickers) {
  ic_replay_mode_t m;
  cr_assert_eq(ic_replay_mode_parse("least-loaded", &m), 0);
  cr_assert_eq(m, IC_REPLAY_LEAST_LOADED);
  cr_assert_str_eq(ic_replay_mode_name(IC_REPLAY_PRECISE), "precise");
  cr_assert_eq(ic_replay_mode_parse("fastest", &m), IC_EINVAL);
  int64_t load[4] = {3, 1, 1, 2};
  cr_assert_eq(ic_replay_pick_least(load, 4, 0), 1);
  cr_assert_eq(ic_replay_pick_least(load, 4, 2), 2, "ties go to the first from start");
  int64_t match[4] = {0, 32, 32, 16};
  int64_t load2[4] = {0, 5, 2, 0};
  cr_assert_eq(ic_replay_pick_best_match(match, load2, 4, 0), 2, "longest, then least loaded");
  int64_t none[4] = {0};
  cr_assert_eq(ic_replay_pick_best_match(none, load2, 4, 0), -1);
}

Test(replay_route, approximate_memory_remembers_and_forgets_lru) {
  ic_replay_approx_t *a = ic_replay_approx_new(2, 7);
  cr_assert_not_null(a);
  uint64_t c1[5] = {1, 2, 3, 4, 5}, c2[5] = {1, 2, 9, 10, 11};
  ic_replay_approx_record(a, 0, c1, 5);
  cr_assert_eq(ic_replay_approx_match(a, 0, c1, 5), 5);
  cr_assert_eq(ic_replay_approx_match(a, 0, c2, 5), 2);
  cr_assert_eq(ic_replay_approx_match(a, 1, c1, 5), 0);
  /* 3 new blocks for a capacity of 7: the least recent block (c1's tail) goes first. */
  ic_replay_approx_record(a, 0, c2, 5);
  cr_assert_eq(ic_replay_approx_match(a, 0, c2, 5), 5);
  cr_assert_eq(ic_replay_approx_match(a, 0, c1, 5), 4, "block 5 was recycled");
  uint64_t big[20];
  for (int i = 0; i < 20; i++)
    big[i] = 100 + (uint64_t)i;
  ic_replay_approx_record(a, 0, big, 20);
  cr_assert_eq(ic_replay_approx_match(a, 0, big, 20), 7, "the head of the prompt survives");
  cr_assert_eq(ic_replay_approx_match(a, 0, c1, 5), 0);
  ic_replay_approx_free(a);
}

typedef struct {
  char got[8][64];
  int n;
} events_t;

static int collect(void *ud, const char *d, size_t len) {
  events_t *e = ud;
  cr_assert_eq(strlen(d), len);
  snprintf(e->got[e->n++], 64, "%s", d);
  return 0;
}

Test(replay_sse, events_split_anywhere) {
  const char *s =
      ": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata:{\"b\":2}\n\ndata: l1\ndata: "
      "l2\n\ndata: [DONE]\n\n";
  for (size_t split = 0; split < strlen(s); split++) {
    ic_replay_sse_t p;
    ic_replay_sse_init(&p);
    events_t e = {0};
    cr_assert_eq(ic_replay_sse_feed(&p, s, split, collect, &e), 0);
    cr_assert_eq(ic_replay_sse_feed(&p, s + split, strlen(s) - split, collect, &e), 0);
    cr_assert_eq(ic_replay_sse_finish(&p, collect, &e), 0);
    cr_assert_eq(e.n, 4, "split %zu", split);
    cr_assert_str_eq(e.got[0], "{\"a\":1}");
    cr_assert_str_eq(e.got[1], "{\"b\":2}");
    cr_assert_str_eq(e.got[2], "l1\nl2");
    cr_assert_str_eq(e.got[3], "[DONE]");
    ic_replay_sse_free(&p);
  }
  /* An unterminated last event is still delivered at the end of the stream. */
  ic_replay_sse_t p;
  ic_replay_sse_init(&p);
  events_t e = {0};
  ic_replay_sse_feed(&p, "data: tail", 10, collect, &e);
  cr_assert_eq(e.n, 0);
  ic_replay_sse_finish(&p, collect, &e);
  cr_assert_eq(e.n, 1);
  cr_assert_str_eq(e.got[0], "tail");
  ic_replay_sse_free(&p);
}

Test(replay_sse, completion_usage_and_sim_timing) {
  ic_replay_record_t r = {0};
  const char *tok = "{\"id\":\"c\",\"choices\":[{\"text\":\"x\"}]}";
  cr_assert_eq(ic_replay_apply_completion(&r, tok, strlen(tok)), 0);
  const char *fin =
      "{\"choices\":[],\"usage\":{\"prompt_tokens\":1100,\"completion_tokens\":5,"
      "\"prompt_tokens_details\":{\"cached_tokens\":512}},\"sim_timing\":{\"arrival_ms\":10.5,"
      "\"first_token_ms\":40,\"finish_ms\":90,\"ttft_ms\":29.5,\"e2e_ms\":79.5,\"queue_ms\":1,"
      "\"cached_tokens\":512,\"computed_prefill_tokens\":588}}";
  cr_assert_eq(ic_replay_apply_completion(&r, fin, strlen(fin)), 1);
  cr_assert_eq(r.prompt_tokens, 1100);
  cr_assert_eq(r.cached_tokens, 512);
  cr_assert_eq(r.computed_prefill_tokens, 588);
  cr_assert_eq(r.completion_tokens, 5);
  cr_assert_float_eq(r.ttft_ms, 29.5, 1e-9);
  cr_assert_float_eq(r.arrival_ms, 10.5, 1e-9);
  cr_assert(r.sim_timing);
  const char *e = "{\"error\":{\"message\":\"model not found\",\"code\":404}}";
  cr_assert_eq(ic_replay_apply_completion(&r, e, strlen(e)), IC_EPROTO);
  cr_assert(strstr(r.error, "model not found") != NULL);
  const char *bad = "{\"usage\": {";
  cr_assert_eq(ic_replay_apply_completion(&r, bad, strlen(bad)), IC_EPROTO);
}

Test(replay_report, prediction_held_follows_vllm_reuse_limit) {
  cr_assert(ic_replay_prediction_held(512, 512, 1000, 16));
  cr_assert_not(ic_replay_prediction_held(512, 496, 1000, 16));
  /* A fully cached 1024-token prompt: vLLM recomputes the last block. */
  cr_assert(ic_replay_prediction_held(1024, 1008, 1024, 16));
  cr_assert_not(ic_replay_prediction_held(1024, 992, 1024, 16));
  cr_assert(ic_replay_prediction_held(0, 0, 10, 16));
}

Test(replay_report, summary_numbers) {
  ic_replay_record_t r[4] = {0};
  for (int i = 0; i < 4; i++) {
    r[i].ok = true;
    r[i].replica = i % 2;
    r[i].prompt_tokens = 1000;
    r[i].lookup_us = -1;
    r[i].predicted_tokens = -1;
    r[i].arrival_ms = 0;
    r[i].finish_ms = 2000;
    r[i].completion_tokens = 10;
  }
  r[0].cached_tokens = 500, r[0].computed_prefill_tokens = 500, r[0].ttft_ms = 10;
  r[1].cached_tokens = 0, r[1].computed_prefill_tokens = 1000, r[1].ttft_ms = 20;
  r[2].cached_tokens = 500, r[2].computed_prefill_tokens = 500, r[2].ttft_ms = 30;
  r[2].predicted_tokens = 512; /* held 500 of 512 -> miss */
  r[3].ok = false;
  r[0].predicted_tokens = 496;
  r[0].lookup_us = 100;
  snprintf(r[0].reason, sizeof(r[0].reason), "PREFIX_MATCH");
  snprintf(r[1].reason, sizeof(r[1].reason), "NO_HINT");
  ic_replay_summary_t s;
  ic_replay_summarize(r, 4, 2, 16, "sc", "lookup", &s);
  cr_assert_eq(s.requests, 4);
  cr_assert_eq(s.failed, 1);
  cr_assert_float_eq(s.hit_rate, 1000.0 / 3000.0, 1e-9);
  cr_assert_eq(s.prefill_tokens_computed, 2000);
  cr_assert_float_eq(s.ttft_mean_ms, 20, 1e-9);
  cr_assert_float_eq(s.ttft_p50_ms, 20, 1e-9);
  cr_assert_float_eq(s.ttft_p99_ms, 30, 1e-9);
  /* replica 0: 500 + 500, replica 1: 1000 -> max/mean = 1 */
  cr_assert_float_eq(s.load_imbalance, 1.0, 1e-9);
  cr_assert_eq(s.predictions, 2);
  cr_assert_float_eq(s.prediction_accuracy, 0.5, 1e-9);
  cr_assert_float_eq(s.lookup_p99_us, 100, 1e-9);
  cr_assert_float_eq(s.throughput_rps, 1.5, 1e-9, "3 ok over a 2 s span");
  cr_assert_eq(s.reason_counts[ic_replay_reason_slot("PREFIX_MATCH")], 1);
  cr_assert_eq(s.reason_counts[ic_replay_reason_slot("NO_HINT")], 1);

  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ic_replay_write_summary_json(f, &s);
  ic_replay_write_table(f, &s, 1);
  const double v[3] = {10, 20, 30};
  const double *vs[1] = {v};
  size_t nv[1] = {3};
  cr_assert_eq(ic_replay_write_svg(f, "t <&>", &s, vs, nv, 1), 0);
  fclose(f);
  cr_assert(strstr(buf, "\"type\":\"summary\"") != NULL);
  cr_assert(strstr(buf, "\"hit_rate\":0.333333") != NULL, "%s", buf);
  cr_assert(strstr(buf, "\"reasons\":{\"PREFIX_MATCH\":1,\"NO_HINT\":1}") != NULL, "%s", buf);
  cr_assert(strstr(buf, "<svg") != NULL && strstr(buf, "</svg>") != NULL);
  cr_assert(strstr(buf, "t &lt;&amp;&gt;") != NULL, "title escaped");
  cr_assert(strstr(buf, "<polyline") != NULL);
  free(buf);
}

Test(replay_engine, engine_flag_forms) {
  ic_replay_engine_t e;
  char err[256];
  cr_assert_eq(ic_replay_engine_parse("pod-a=http://127.0.0.1:8000/", 0, &e, err, 256), 0);
  cr_assert_str_eq(e.replica_id, "pod-a");
  cr_assert_str_eq(e.url, "http://127.0.0.1:8000");
  free(e.replica_id);
  free(e.url);
  cr_assert_eq(ic_replay_engine_parse("http://h:1", 3, &e, err, 256), 0);
  cr_assert_str_eq(e.replica_id, "replica-3");
  free(e.replica_id);
  free(e.url);
  cr_assert_eq(ic_replay_engine_parse("pod=ftp://x", 0, &e, err, 256), IC_EINVAL);
  cr_assert_eq(ic_replay_engine_parse("=http://x", 0, &e, err, 256), IC_EINVAL);
}
