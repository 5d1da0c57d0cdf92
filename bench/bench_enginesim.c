/* Benchmark for lib/enginesim: how fast the simulator's core (scheduler + KV cache + event
 * encoding) runs compared with the simulated time it produces, i.e. the largest --speedup one
 * core sustains before the simulated clock lags the wall clock. Closed loop of C concurrent
 * requests over a shared-prefix workload (contexts x questions) through a cache small enough to
 * evict. Prints JSON lines {"bench":"enginesim","name",...}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/clock.h"
#include "ic/enginesim.h"

typedef struct state {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  uint64_t events;
  int done;
} state_t;

static void on_event(void *ud, const ic_esim_event_t *ev) {
  state_t *s = ud;
  if (ev->type == IC_ESIM_EV_STORED)
    ic_esim_pack_stored(&s->pk, IC_ESIM_ENC_VLLM_MAP, ev->hashes, ev->nhashes,
                        ev->has_parent ? &ev->parent : NULL, ev->tokens, ev->ntokens,
                        ev->block_size, -1, "GPU", NULL);
  else if (ev->type == IC_ESIM_EV_REMOVED)
    ic_esim_pack_removed(&s->pk, IC_ESIM_ENC_VLLM_MAP, ev->hashes, ev->nhashes, "GPU");
  s->events++;
}

static void on_token(void *ud, ic_esim_req_t *r, uint32_t tok, bool first, bool fin) {
  (void)r, (void)tok, (void)first;
  if (fin) ((state_t *)ud)->done++;
}

static uint64_t rng(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static void run(int concurrency, int total, int64_t cap_tokens) {
  enum { CTX = 2048, Q = 128, OUT = 64, NCTX = 64 };
  state_t st = {0};
  msgpack_sbuffer_init(&st.sb);
  msgpack_packer_init(&st.pk, &st.sb, msgpack_sbuffer_write);
  ic_esim_config_t cfg;
  ic_esim_config_defaults(&cfg);
  cfg.kv.gpu_blocks = cap_tokens / cfg.kv.block_size;
  ic_esim_kv_t *kv = ic_esim_kv_new(&cfg.kv, on_event, &st);
  ic_esim_sched_t *s = ic_esim_sched_new(&cfg.sched, &cfg.time, kv);
  ic_esim_req_t **live = calloc((size_t)total, sizeof *live);
  uint32_t *prompt = malloc((CTX + Q) * sizeof *prompt);
  uint64_t seed = 42;
  int submitted = 0;
  double now = 0;
  uint64_t steps = 0;
  int64_t t0 = ic_clock_monotonic_ns();
  while (st.done < total) {
    while (submitted - st.done < concurrency && submitted < total) {
      uint32_t ctx = (uint32_t)(rng(&seed) % NCTX);
      for (int i = 0; i < CTX; i++)
        prompt[i] = 1000 + ctx * 100000 + (uint32_t)i;
      for (int i = 0; i < Q; i++)
        prompt[CTX + i] = (uint32_t)(rng(&seed) % 128000);
      live[submitted] = ic_esim_req_new((uint64_t)submitted + 1, prompt, CTX + Q, OUT, now);
      ic_esim_sched_add(s, live[submitted++]);
    }
    now += ic_esim_sched_step(s, now, on_token, NULL, &st);
    msgpack_sbuffer_clear(&st.sb);
    steps++;
  }
  double wall_ms = (double)(ic_clock_monotonic_ns() - t0) / 1e6;
  ic_esim_sched_stats_t ss;
  ic_esim_sched_stats(s, &ss);
  const char *fmt = "{\"bench\":\"enginesim\",\"name\":\"%s\",\"value\":%.4g,\"unit\":\"%s\","
                    "\"params\":{\"concurrency\":%d,\"requests\":%d,\"kv_capacity_tokens\":%lld,"
                    "\"prompt\":%d,\"output\":%d,\"contexts\":%d}}\n";
  long long cap = (long long)cap_tokens;
  printf(fmt, "sim_ms_per_wall_ms", now / wall_ms, "x", concurrency, total, cap, CTX + Q, OUT,
         NCTX);
  printf(fmt, "step_us", wall_ms * 1e3 / (double)steps, "us", concurrency, total, cap, CTX + Q, OUT,
         NCTX);
  printf(fmt, "kv_events_per_s", (double)st.events / (wall_ms / 1e3), "1/s", concurrency, total,
         cap, CTX + Q, OUT, NCTX);
  printf(fmt, "hit_rate", (double)ss.prefix_hits / (double)ss.prefix_queries, "ratio", concurrency,
         total, cap, CTX + Q, OUT, NCTX);
  for (int i = 0; i < total; i++)
    ic_esim_req_free(live[i]);
  free(live);
  free(prompt);
  ic_esim_sched_free(s);
  ic_esim_kv_free(kv);
  msgpack_sbuffer_destroy(&st.sb);
}

int main(void) {
  run(32, 2000, 450000);
  run(128, 4000, 450000);
  run(128, 4000, 65536); /* working set (64 x 2k) above capacity: evictions */
  return 0;
}
