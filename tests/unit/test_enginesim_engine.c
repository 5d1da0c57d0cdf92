/* lib/enginesim engine thread, event encodings, tokenizer and request bodies: requests through
 * the real engine thread (sinks, simulated timing, prefix hits, reset, shutdown aborts), every
 * encoding decoded back by lib/kvevents (an independent reader: the subscriber's), the stand-in
 * tokenizer's prefix stability, and request-body validation. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/enginesim.h"
#include "ic/err.h"
#include "ic/kvevents.h"

/* ---- engine ------------------------------------------------------------------------------ */

typedef struct got {
  pthread_mutex_t mu;
  int tokens, firsts, done, aborted;
  ic_esim_timing_t t;
} got_t;

static bool s_tokens(void *ud, const uint32_t *t, size_t n, bool first) {
  got_t *g = ud;
  (void)t;
  pthread_mutex_lock(&g->mu);
  g->tokens += (int)n;
  g->firsts += first;
  pthread_mutex_unlock(&g->mu);
  return true;
}

static void s_done(void *ud, const ic_esim_timing_t *t, bool aborted) {
  got_t *g = ud;
  pthread_mutex_lock(&g->mu);
  g->t = *t;
  g->done++;
  g->aborted += aborted;
  pthread_mutex_unlock(&g->mu);
}

static void wait_done(got_t *g, int n) {
  for (int i = 0; i < 2000; i++) {
    pthread_mutex_lock(&g->mu);
    int d = g->done;
    pthread_mutex_unlock(&g->mu);
    if (d >= n) return;
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  cr_assert_fail("requests did not finish");
}

static ic_esim_engine_t *mk_engine(double speedup, int64_t blocks) {
  ic_esim_config_t c;
  ic_esim_config_defaults(&c);
  c.speedup = speedup;
  c.kv.gpu_blocks = blocks;
  ic_esim_engine_t *e = ic_esim_engine_new(&c, NULL);
  cr_assert_not_null(e);
  cr_assert_eq(ic_esim_engine_start(e), 0);
  return e;
}

Test(enginesim_engine, serves_requests_in_simulated_time_with_prefix_hits) {
  ic_esim_engine_t *e = mk_engine(1000.0, 1000);
  uint32_t p[200];
  for (int i = 0; i < 200; i++)
    p[i] = 7 + (uint32_t)i;
  got_t g = {.mu = PTHREAD_MUTEX_INITIALIZER};
  ic_esim_sink_t sink = {s_tokens, s_done, &g};
  char err[256];
  cr_assert_eq(ic_esim_engine_submit(e, p, 200, 10, &sink, err, sizeof err), 0);
  wait_done(&g, 1);
  cr_assert_eq(g.tokens, 10);
  cr_assert_eq(g.firsts, 1);
  cr_assert_eq(g.aborted, 0);
  ic_esim_timing_t a = g.t;
  cr_assert_eq(a.prompt_tokens, 200);
  cr_assert_eq(a.completion_tokens, 10);
  cr_assert_eq(a.cached_tokens, 0);
  /* TTFT = one prefill step of 200 tokens: 6.2 + 6.0 + attention (ms). */
  cr_assert_float_eq(a.first_token_ms - a.arrival_ms, 6.2 + 6.0 + 1.3e-6 * 200 * 100.5, 1e-6);
  cr_assert_gt(a.finish_ms, a.first_token_ms);
  cr_assert_eq(ic_esim_engine_submit(e, p, 200, 1, &sink, err, sizeof err), 0);
  wait_done(&g, 2);
  cr_assert_eq(g.t.cached_tokens, 192);
  cr_assert_eq(g.t.computed_prefill_tokens, 8);
  int64_t gpu, cpu;
  ic_esim_engine_prefix_match(e, p, 200, &gpu, &cpu);
  cr_assert_eq(gpu, 192);
  cr_assert(ic_esim_engine_reset_cache(e));
  ic_esim_engine_prefix_match(e, p, 200, &gpu, &cpu);
  cr_assert_eq(gpu, 0);
  size_t len = 0;
  char *m = ic_esim_engine_metrics(e, &len);
  cr_assert_not_null(strstr(m, "vllm:prefix_cache_hits_total{model_name=\"sim-model\"} 192"));
  cr_assert_not_null(
      strstr(m, "vllm:time_to_first_token_seconds_count{model_name=\"sim-model\"} 2"));
  free(m);
  ic_esim_engine_free(e);
}

Test(enginesim_engine, rejects_what_cannot_fit_and_aborts_on_stop) {
  ic_esim_engine_t *e = mk_engine(0.01, 64); /* 100x slower than real time: nothing finishes */
  uint32_t p[2048] = {0};
  got_t g = {.mu = PTHREAD_MUTEX_INITIALIZER};
  ic_esim_sink_t sink = {s_tokens, s_done, &g};
  char err[256] = "";
  cr_assert_eq(ic_esim_engine_submit(e, p, 2000, 100, &sink, err, sizeof err), IC_EINVAL);
  cr_assert_not_null(strstr(err, "KV cache"));
  for (int i = 0; i < 5; i++)
    cr_assert_eq(ic_esim_engine_submit(e, p + i, 100, 50, &sink, err, sizeof err), 0);
  ic_esim_engine_stop(e);
  cr_assert_eq(g.done, 5);
  cr_assert_eq(g.aborted, 5);
  cr_assert_eq(ic_esim_engine_submit(e, p, 10, 1, &sink, err, sizeof err), IC_ESTATE);
  ic_esim_engine_free(e);
}

/* ---- encodings, read back by the subscriber's decoder ------------------------------------- */

static void encode(int enc, msgpack_sbuffer *sb, int64_t dp) {
  msgpack_sbuffer_init(sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  uint64_t h[2] = {0x8000000000000001ULL, 0x0123456789ABCDEFULL}, parent = 0xFFFFFFFFFFFFFFFFULL;
  uint32_t tok[32];
  for (int i = 0; i < 32; i++)
    tok[i] = 100000 + (uint32_t)i;
  ic_esim_pack_envelope_begin(&pk, enc, 1234.5, dp, 3);
  ic_esim_pack_stored(&pk, enc, h, 2, &parent, tok, 32, 16, -1, "CPU", NULL);
  ic_esim_pack_removed(&pk, enc, h + 1, 1, "GPU");
  ic_esim_pack_cleared(&pk, enc);
  ic_esim_pack_envelope_end(&pk, enc, dp);
}

Test(enginesim_events, every_encoding_decodes_in_the_subscriber) {
  for (int enc = 0; enc < 3; enc++) {
    for (int64_t dp = -1; dp <= 2; dp += 3) {
      msgpack_sbuffer sb;
      encode(enc, &sb, dp);
      ic_kv_batch_t b;
      ic_kv_batch_init(&b);
      cr_assert_eq(ic_kv_decode(&b, (const uint8_t *)sb.data, sb.size), 0, "enc %d", enc);
      cr_assert_eq(b.nevents, 3);
      cr_assert_float_eq(b.ts, 1234.5, 1e-9);
      cr_assert_eq(b.map_envelope, enc == IC_ESIM_ENC_VLLM_MAP);
      cr_assert_eq(b.has_dp_rank, dp >= 0);
      if (dp >= 0) cr_assert_eq(b.dp_rank, dp);
      ic_kv_event_t *s = &b.events[0];
      cr_assert_eq(s->type, IC_KV_EV_STORED);
      cr_assert_eq(s->nhashes, 2);
      cr_assert_eq(s->hashes[0].ival, 0x8000000000000001ULL); /* same 64 bits in every form */
      cr_assert_eq(s->hashes[1].ival, 0x0123456789ABCDEFULL);
      cr_assert(s->has_parent);
      cr_assert_eq(s->parent.ival, 0xFFFFFFFFFFFFFFFFULL);
      cr_assert(s->has_tokens);
      cr_assert_eq(s->ntokens, 32);
      cr_assert_eq(s->tokens[31], 100031);
      cr_assert_eq(s->block_size, 16);
      cr_assert_not(s->has_lora_id);
      cr_assert_eq(s->tier, IC_KV_TIER_T2);
      cr_assert_eq(b.events[1].type, IC_KV_EV_REMOVED);
      cr_assert_eq(b.events[1].tier, IC_KV_TIER_T1);
      cr_assert_eq(b.events[2].type, IC_KV_EV_CLEARED);
      cr_assert_eq(b.malformed[IC_KV_EV_STORED], 0);
      ic_kv_batch_free(&b);
      msgpack_sbuffer_destroy(&sb);
    }
  }
  cr_assert_eq(ic_esim_encoding_parse("vllm-map"), IC_ESIM_ENC_VLLM_MAP);
  cr_assert_eq(ic_esim_encoding_parse("VLLM"), -1);
}

/* ---- tokenizer and request bodies --------------------------------------------------------- */

Test(enginesim_request, tokenizer_is_deterministic_and_prefix_stable) {
  const char *a = "The quick brown fox, jumps over the extraordinarily lazy dog.";
  uint32_t t1[64], t2[64], t3[64];
  size_t n1 = ic_esim_tokenize(a, strlen(a), t1, 64, NULL);
  size_t n2 = ic_esim_tokenize(a, strlen(a), t2, 64, NULL);
  cr_assert_eq(n1, n2);
  cr_assert_arr_eq(t1, t2, n1 * sizeof *t1);
  const char *b = "The quick brown fox, jumps over something else";
  size_t n3 = ic_esim_tokenize(b, strlen(b), t3, 64, NULL);
  size_t same = 0;
  while (same < n1 && same < n3 && t1[same] == t3[same])
    same++;
  cr_assert_geq(same, 7); /* The, quick, brown, fox, ",", jumps, over */
  size_t total;
  cr_assert_eq(ic_esim_tokenize(a, strlen(a), t1, 3, &total), 3);
  cr_assert_eq(total, n1);
  for (size_t i = 0; i < n1; i++)
    cr_assert(t2[i] >= 1000 && t2[i] < 129000);
}

Test(enginesim_request, bodies_parse_and_reject_clearly) {
  ic_esim_body_t b;
  char err[256];
  const char *ok = "{\"model\":\"m\",\"prompt\":[1,2,3],\"max_tokens\":7,\"stream\":true,"
                   "\"stream_options\":{\"include_usage\":true},\"ignore_eos\":true}";
  cr_assert_eq(ic_esim_body_parse(ok, strlen(ok), false, 100, &b, err, sizeof err), 0);
  cr_assert_eq(b.nprompt, 3);
  cr_assert_eq(b.prompt[2], 3);
  cr_assert_eq(b.max_tokens, 7);
  cr_assert(b.stream && b.include_usage && b.ignore_eos);
  cr_assert_str_eq(b.model, "m");
  ic_esim_body_free(&b);
  const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                     "\"text\":\"hi\"}]}],\"max_completion_tokens\":3,\"max_tokens\":9}";
  cr_assert_eq(ic_esim_body_parse(chat, strlen(chat), true, 100, &b, err, sizeof err), 0);
  cr_assert_eq(b.max_tokens, 3);
  cr_assert_eq(b.max_tokens, 3);
  cr_assert_gt(b.nprompt, 4);
  ic_esim_body_free(&b);
  struct {
    const char *body;
    bool chat;
    const char *needle;
  } bad[] = {
      {"[1]", false, "JSON object"},
      {"{\"prompt\":\"\"}", false, "empty"},
      {"{\"prompt\":[1,2,3,4,5,6,7,8,9,10,11]}", false, "maximum"},
      {"{\"prompt\":[1.5]}", false, "token ids"},
      {"{\"prompt\":\"x\",\"max_tokens\":\"3\"}", false, "max_tokens"},
      {"{\"prompt\":\"x\",\"n\":2}", false, "n=1"},
      {"{\"prompt\":\"x\",\"stream\":1}", false, "boolean"},
      {"{\"prompt\":\"x\",\"model\":5}", false, "model"},
      {"{\"messages\":[]}", true, "messages"},
      {"{\"messages\":[{\"content\":\"x\"}]}", true, "role"},
      {"{\"messages\":[{\"role\":\"u\",\"content\":[{\"type\":\"image_url\"}]}]}", true, "text"},
      {"{\"prompt\":\"x\",\"prompt\":\"y\"}", false, "duplicate"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err[0] = 0;
    cr_assert_eq(
        ic_esim_body_parse(bad[i].body, strlen(bad[i].body), bad[i].chat, 10, &b, err, sizeof err),
        IC_EINVAL, "%s", bad[i].body);
    cr_assert_not_null(strstr(err, bad[i].needle), "%s -> %s", bad[i].body, err);
  }
  uint32_t *t;
  size_t n;
  const char *pm = "{\"prompt\":[4,5]}";
  cr_assert_eq(ic_esim_prompt_parse(pm, strlen(pm), 10, &t, &n, err, sizeof err), 0);
  cr_assert_eq(n, 2);
  free(t);
}
