/* lib/enginesim scheduler and time model: step costs, one request's life (prefill, decode,
 * finish), chunked prefill, max_num_seqs, prefix hits shortening TTFT, preemption under a full
 * cache, future arrivals, cancellation. Simulated time is driven by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "ic/enginesim.h"

typedef struct log {
  int tokens, firsts, finished, aborted;
  int per_req[8];
} log_t;

static void on_tok(void *ud, ic_esim_req_t *r, uint32_t tok, bool first, bool fin) {
  log_t *l = ud;
  (void)tok;
  l->tokens++;
  l->firsts += first;
  l->finished += fin;
  if (r->id < 8) l->per_req[r->id]++;
}

static void on_abort(void *ud, ic_esim_req_t *r) {
  (void)r;
  ((log_t *)ud)->aborted++;
}

typedef struct world {
  ic_esim_kv_t *kv;
  ic_esim_sched_t *s;
  ic_esim_time_config_t tc;
  double now;
} world_t;

static void mk(world_t *w, int64_t blocks, int64_t seqs, int64_t budget) {
  ic_esim_kv_config_t kc = {.block_size = 16, .gpu_blocks = blocks};
  w->kv = ic_esim_kv_new(&kc, NULL, NULL);
  ic_esim_time_defaults(&w->tc);
  ic_esim_sched_config_t sc = {seqs, budget, 1 << 20};
  w->s = ic_esim_sched_new(&sc, &w->tc, w->kv);
  cr_assert_not_null(w->s);
  w->now = 0;
}

static void done(world_t *w) {
  ic_esim_sched_free(w->s);
  ic_esim_kv_free(w->kv);
}

static ic_esim_req_t *req(uint64_t id, int64_t n, uint32_t start, int64_t max_tokens, double at) {
  uint32_t *t = malloc((size_t)n * sizeof *t);
  for (int64_t i = 0; i < n; i++)
    t[i] = start + (uint32_t)i;
  ic_esim_req_t *r = ic_esim_req_new(id, t, n, max_tokens, at);
  free(t);
  cr_assert_not_null(r);
  return r;
}

static double step(world_t *w, log_t *l) {
  double dt = ic_esim_sched_step(w->s, w->now, on_tok, on_abort, l);
  w->now += dt;
  return dt;
}

Test(enginesim_time, step_costs) {
  ic_esim_time_config_t c;
  ic_esim_time_defaults(&c);
  ic_esim_batch_t b = {0};
  cr_assert_eq(ic_esim_time_step_ms(&c, &b), 0);
  b.decode_seqs = 1;
  b.decode_context = 1000;
  cr_assert_float_eq(ic_esim_time_step_ms(&c, &b), 6.2 + 0.12 + 0.04, 1e-9);
  double one = ic_esim_time_step_ms(&c, &b);
  b.decode_seqs = 16;
  b.decode_context = 16000;
  cr_assert_gt(ic_esim_time_step_ms(&c, &b), one); /* decode cost grows with batch size */
  ic_esim_batch_t p = {.prefill_tokens = 1024, .prefill_pairs = 1024.0 * 512.5};
  double t1k = ic_esim_time_step_ms(&c, &p);
  cr_assert_float_eq(t1k, 6.2 + 1024 * 0.030 + 1.3e-6 * 1024 * 512.5, 1e-9);
  /* Attention makes long prompts super-linear: a chunk late in a 32k prompt costs more. */
  ic_esim_batch_t late = {.prefill_tokens = 1024, .prefill_pairs = 1024.0 * (31744 + 512.5)};
  cr_assert_gt(ic_esim_time_step_ms(&c, &late), t1k + 30);
  ic_esim_batch_t load = {.cpu_load_tokens = 1000};
  cr_assert_float_eq(ic_esim_time_step_ms(&c, &load), 0, 1e-12); /* loads ride on a step */
}

Test(enginesim_sched, one_request_prefill_decode_finish) {
  world_t w;
  mk(&w, 1000, 256, 8192);
  log_t l = {0};
  ic_esim_req_t *r = req(1, 100, 10, 3, 0);
  ic_esim_sched_add(w.s, r);
  double dt1 = step(&w, &l);
  ic_esim_batch_t b = {.prefill_tokens = 100, .prefill_pairs = 100 * 50.5};
  cr_assert_float_eq(dt1, ic_esim_time_step_ms(&w.tc, &b), 1e-9);
  cr_assert_eq(l.firsts, 1);
  cr_assert_float_eq(r->first_token_ms, dt1, 1e-9);
  cr_assert_eq(r->cached_tokens, 0);
  cr_assert_eq(r->computed_prefill, 100);
  cr_assert_eq(ic_esim_sched_running(w.s), 1);
  double dt2 = step(&w, &l);
  ic_esim_batch_t d = {.decode_seqs = 1, .decode_context = 100};
  cr_assert_float_eq(dt2, ic_esim_time_step_ms(&w.tc, &d), 1e-9);
  step(&w, &l);
  cr_assert_eq(l.tokens, 3);
  cr_assert_eq(l.finished, 1);
  cr_assert_eq(r->state, IC_ESIM_FINISHED);
  cr_assert_float_eq(r->finish_ms, w.now, 1e-9);
  cr_assert_eq(ic_esim_sched_running(w.s), 0);
  cr_assert_eq(step(&w, &l), 0); /* idle */
  ic_esim_kv_stats_t ks;
  ic_esim_kv_stats(w.kv, &ks);
  cr_assert_eq(ks.gpu_used, 0);
  cr_assert_eq(ks.gpu_cached, 6); /* 102 tokens computed: 6 full blocks cached */
  ic_esim_req_free(r);
  done(&w);
}

Test(enginesim_sched, chunked_prefill_spreads_over_steps) {
  world_t w;
  mk(&w, 1000, 256, 64);
  log_t l = {0};
  ic_esim_req_t *r = req(1, 200, 10, 1, 0);
  ic_esim_sched_add(w.s, r);
  int steps = 0;
  while (l.finished == 0 && steps < 10) {
    step(&w, &l);
    steps++;
  }
  cr_assert_eq(steps, 4); /* 64 + 64 + 64 + 8 */
  cr_assert_eq(r->computed_prefill, 200);
  ic_esim_req_free(r);
  done(&w);
}

Test(enginesim_sched, max_num_seqs_caps_the_batch) {
  world_t w;
  mk(&w, 1000, 2, 8192);
  log_t l = {0};
  ic_esim_req_t *r[3];
  for (int i = 0; i < 3; i++) {
    r[i] = req((uint64_t)i + 1, 32, 1000 * (uint32_t)i, 4, 0);
    ic_esim_sched_add(w.s, r[i]);
  }
  step(&w, &l);
  cr_assert_eq(ic_esim_sched_running(w.s), 2);
  cr_assert_eq(ic_esim_sched_waiting(w.s), 1);
  while (l.finished < 3)
    cr_assert_gt(step(&w, &l), 0);
  cr_assert_gt(r[2]->first_sched_ms, 0); /* it queued */
  for (int i = 0; i < 3; i++)
    ic_esim_req_free(r[i]);
  done(&w);
}

Test(enginesim_sched, prefix_hit_cuts_prefill_and_ttft) {
  world_t w;
  mk(&w, 1000, 256, 8192);
  log_t l = {0};
  ic_esim_req_t *a = req(1, 2048, 7, 2, 0);
  ic_esim_sched_add(w.s, a);
  while (l.finished < 1)
    step(&w, &l);
  ic_esim_req_t *b = req(2, 2048 + 64, 7, 2, w.now);
  ic_esim_sched_add(w.s, b);
  while (l.finished < 2)
    step(&w, &l);
  cr_assert_eq(b->cached_tokens, 2048);
  cr_assert_eq(b->computed_prefill, 64);
  double ttft_a = a->first_token_ms - a->arrival_ms, ttft_b = b->first_token_ms - b->arrival_ms;
  cr_assert_lt(ttft_b * 4, ttft_a);
  ic_esim_sched_stats_t st;
  ic_esim_sched_stats(w.s, &st);
  cr_assert_eq(st.prefix_queries, 2048 + 2048 + 64);
  cr_assert_eq(st.prefix_hits, 2048);
  ic_esim_req_free(a);
  ic_esim_req_free(b);
  done(&w);
}

Test(enginesim_sched, preemption_under_a_full_cache_still_finishes_all) {
  world_t w;
  mk(&w, 8, 256, 8192); /* 128 tokens of KV */
  log_t l = {0};
  ic_esim_req_t *a = req(1, 48, 100, 40, 0), *b = req(2, 48, 500, 40, 0);
  ic_esim_sched_add(w.s, a);
  ic_esim_sched_add(w.s, b);
  int steps = 0;
  while (l.finished < 2 && steps < 1000) {
    cr_assert_gt(step(&w, &l), 0);
    steps++;
  }
  cr_assert_eq(l.finished, 2);
  cr_assert_eq(l.per_req[1], 40);
  cr_assert_eq(l.per_req[2], 40);
  ic_esim_sched_stats_t st;
  ic_esim_sched_stats(w.s, &st);
  cr_assert_gt(st.preemptions, 0);
  cr_assert_gt(a->preemptions + b->preemptions, 0);
  ic_esim_kv_stats_t ks;
  ic_esim_kv_stats(w.kv, &ks);
  cr_assert_eq(ks.gpu_used, 0);
  ic_esim_req_free(a);
  ic_esim_req_free(b);
  done(&w);
}

Test(enginesim_sched, future_arrivals_wait_and_cancel_aborts) {
  world_t w;
  mk(&w, 100, 256, 8192);
  log_t l = {0};
  ic_esim_req_t *r = req(1, 40, 1, 100, 50.0);
  ic_esim_sched_add(w.s, r);
  cr_assert_float_eq(ic_esim_sched_next_arrival(w.s), 50.0, 1e-12);
  cr_assert_eq(step(&w, &l), 0); /* not arrived at t=0 */
  w.now = 50.0;
  cr_assert_gt(step(&w, &l), 0);
  cr_assert_float_eq(r->first_sched_ms, 50.0, 1e-12);
  step(&w, &l);
  r->cancelled = true;
  step(&w, &l);
  cr_assert_eq(l.aborted, 1);
  cr_assert_eq(ic_esim_sched_running(w.s), 0);
  ic_esim_kv_stats_t ks;
  ic_esim_kv_stats(w.kv, &ks);
  cr_assert_eq(ks.gpu_used, 0);
  ic_esim_req_free(r);
  done(&w);
}
