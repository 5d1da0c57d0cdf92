/* lib/enginesim KV cache: prefix hits (with vLLM's last-token cap), pinning, LRU eviction order
 * (tail of a chain first, touched chains last), dedup, CPU offload tier, reset, and the events
 * each change produces. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ic/enginesim.h"
#include "ic/err.h"

#define BS 16

typedef struct rec {
  int type, medium;
  size_t n;
  uint64_t hashes[64];
  bool has_parent;
  uint64_t parent;
  size_t ntokens;
  uint32_t tok0;
} rec_t;

static rec_t evs[256];
static size_t nev;

static void on_ev(void *ud, const ic_esim_event_t *ev) {
  (void)ud;
  cr_assert_lt(nev, 256);
  rec_t *r = &evs[nev++];
  memset(r, 0, sizeof *r);
  r->type = ev->type;
  r->medium = ev->medium;
  r->n = ev->nhashes;
  for (size_t i = 0; i < ev->nhashes && i < 64; i++)
    r->hashes[i] = ev->hashes[i];
  r->has_parent = ev->has_parent;
  r->parent = ev->parent;
  r->ntokens = ev->ntokens;
  r->tok0 = ev->tokens ? ev->tokens[0] : 0;
  if (ev->type == IC_ESIM_EV_STORED) cr_assert_eq(ev->block_size, BS);
}

static ic_esim_kv_t *mk(int64_t gpu, int64_t cpu) {
  nev = 0;
  ic_esim_kv_config_t c = {.block_size = BS, .gpu_blocks = gpu, .cpu_blocks = cpu};
  ic_esim_kv_t *kv = ic_esim_kv_new(&c, on_ev, NULL);
  cr_assert_not_null(kv);
  return kv;
}

static void seq_tokens(uint32_t *t, size_t n, uint32_t start) {
  for (size_t i = 0; i < n; i++)
    t[i] = start + (uint32_t)i;
}

/* Runs a whole prompt through: match, allocate, compute everything, commit. */
static void run(ic_esim_kv_t *kv, ic_esim_seq_t *q, const uint32_t *t, int64_t n, int64_t *hit) {
  int64_t g = 0, c = 0;
  ic_esim_kv_match(kv, q, t, n, &g, &c);
  cr_assert_eq(ic_esim_kv_allocate(kv, q, n), 0);
  ic_esim_kv_commit(kv, q, t, n);
  if (hit) *hit = g + c;
}

Test(enginesim_kvcache, stores_chain_and_hits_prefix) {
  ic_esim_kv_t *kv = mk(64, 0);
  uint32_t t[80];
  seq_tokens(t, 80, 100);
  ic_esim_seq_t a = {0};
  int64_t hit;
  run(kv, &a, t, 70, &hit); /* 4 full blocks + 6 tokens */
  cr_assert_eq(hit, 0);
  cr_assert_eq(nev, 1);
  cr_assert_eq(evs[0].type, IC_ESIM_EV_STORED);
  cr_assert_eq(evs[0].medium, IC_ESIM_GPU);
  cr_assert_eq(evs[0].n, 4);
  cr_assert_not(evs[0].has_parent);
  cr_assert_eq(evs[0].ntokens, 64);
  cr_assert_eq(evs[0].tok0, 100);
  cr_assert_eq(evs[0].hashes[1], ic_esim_kv_hash(kv, true, evs[0].hashes[0], t + BS));
  /* Extending the partial block later caches it with the chain's parent. */
  cr_assert_eq(ic_esim_kv_allocate(kv, &a, 80), 0);
  ic_esim_kv_commit(kv, &a, t, 80);
  cr_assert_eq(nev, 2);
  cr_assert_eq(evs[1].n, 1);
  cr_assert(evs[1].has_parent);
  cr_assert_eq(evs[1].parent, evs[0].hashes[3]);
  cr_assert_eq(evs[1].tok0, 100 + 64);
  ic_esim_kv_release(kv, &a);

  /* Same 80 tokens: vLLM computes at least the last token, so 4 blocks hit, not 5. */
  ic_esim_seq_t b = {0};
  int64_t g, c;
  ic_esim_kv_match(kv, &b, t, 80, &g, &c);
  cr_assert_eq(g, 64);
  cr_assert_eq(c, 0);
  ic_esim_kv_release(kv, &b);
  /* A prompt that diverges in block 2 hits blocks 0-1 only. */
  uint32_t u[80];
  memcpy(u, t, sizeof u);
  u[40] = 7;
  ic_esim_kv_match(kv, &b, u, 80, &g, &c);
  cr_assert_eq(g, 32);
  ic_esim_kv_release(kv, &b);
  int64_t pg, pc;
  ic_esim_kv_prefix_match(kv, t, 80, &pg, &pc);
  cr_assert_eq(pg, 80); /* the oracle reports every held block */
  ic_esim_seq_free(&a);
  ic_esim_seq_free(&b);
  ic_esim_kv_free(kv);
}

Test(enginesim_kvcache, same_block_under_other_parent_hashes_apart) {
  ic_esim_kv_t *kv = mk(8, 0);
  uint32_t blk[BS];
  seq_tokens(blk, BS, 5);
  cr_assert_neq(ic_esim_kv_hash(kv, false, 0, blk), ic_esim_kv_hash(kv, true, 1, blk));
  cr_assert_neq(ic_esim_kv_hash(kv, true, 1, blk), ic_esim_kv_hash(kv, true, 2, blk));
  cr_assert_eq(ic_esim_kv_hash(kv, true, 2, blk), ic_esim_kv_hash(kv, true, 2, blk));
  ic_esim_kv_free(kv);
}

Test(enginesim_kvcache, pinned_blocks_are_never_evicted) {
  ic_esim_kv_t *kv = mk(4, 0);
  uint32_t t[64], u[64];
  seq_tokens(t, 64, 1000);
  seq_tokens(u, 64, 5000);
  ic_esim_seq_t a = {0}, b = {0};
  run(kv, &a, t, 64, NULL);
  cr_assert_eq(ic_esim_kv_free_blocks(kv), 0);
  size_t before = nev;
  cr_assert_eq(ic_esim_kv_allocate(kv, &b, 16), IC_ERANGE);
  cr_assert_eq(b.nblocks, 0);
  cr_assert_eq(nev, before);           /* nothing evicted */
  cr_assert_not(ic_esim_kv_reset(kv)); /* like vLLM: not while blocks are in use */
  ic_esim_kv_release(kv, &a);
  cr_assert_eq(ic_esim_kv_free_blocks(kv), 4);
  cr_assert_eq(ic_esim_kv_allocate(kv, &b, 16), 0);
  cr_assert_eq(nev, before + 1);
  cr_assert_eq(evs[before].type, IC_ESIM_EV_REMOVED);
  cr_assert_eq(evs[before].hashes[0], a.hashes[3]); /* the chain's tail goes first */
  ic_esim_seq_free(&a);
  ic_esim_seq_free(&b);
  ic_esim_kv_free(kv);
}

Test(enginesim_kvcache, lru_evicts_least_recently_freed_and_touch_refreshes) {
  ic_esim_kv_t *kv = mk(4, 0);
  uint32_t a_t[32], b_t[32], c_t[32];
  seq_tokens(a_t, 32, 100);
  seq_tokens(b_t, 32, 200);
  seq_tokens(c_t, 32, 300);
  ic_esim_seq_t a = {0}, b = {0}, c = {0};
  run(kv, &a, a_t, 32, NULL);
  uint64_t ah0 = a.hashes[0], ah1 = a.hashes[1];
  ic_esim_kv_release(kv, &a);
  run(kv, &b, b_t, 32, NULL);
  uint64_t bh0 = b.hashes[0], bh1 = b.hashes[1];
  ic_esim_kv_release(kv, &b);
  /* Touch A (a request hits it), so B is now the least recently used. */
  int64_t g, cc;
  uint32_t a_long[48];
  seq_tokens(a_long, 48, 100);
  ic_esim_kv_match(kv, &a, a_long, 48, &g, &cc);
  cr_assert_eq(g, 32);
  ic_esim_kv_release(kv, &a);
  size_t before = nev;
  run(kv, &c, c_t, 32, NULL);
  cr_assert_eq(evs[before].type, IC_ESIM_EV_REMOVED);
  cr_assert_eq(evs[before].hashes[0], bh1);
  cr_assert_eq(evs[before + 1].hashes[0], bh0);
  int64_t pg, pc;
  ic_esim_kv_prefix_match(kv, a_t, 32, &pg, &pc);
  cr_assert_eq(pg, 32);
  ic_esim_kv_prefix_match(kv, b_t, 32, &pg, &pc);
  cr_assert_eq(pg, 0);
  (void)ah0;
  (void)ah1;
  ic_esim_kv_stats_t st;
  ic_esim_kv_stats(kv, &st);
  cr_assert_eq(st.evictions, 2);
  cr_assert_eq(st.gpu_used, 2);
  ic_esim_seq_free(&a);
  ic_esim_seq_free(&b);
  ic_esim_seq_free(&c);
  ic_esim_kv_free(kv);
}

Test(enginesim_kvcache, concurrent_duplicate_stays_private_without_event) {
  ic_esim_kv_t *kv = mk(16, 0);
  uint32_t t[48];
  seq_tokens(t, 48, 42);
  ic_esim_seq_t a = {0}, b = {0};
  int64_t g, c;
  ic_esim_kv_match(kv, &a, t, 48, &g, &c);
  ic_esim_kv_match(kv, &b, t, 48, &g, &c); /* both miss: computed concurrently */
  cr_assert_eq(ic_esim_kv_allocate(kv, &a, 48), 0);
  cr_assert_eq(ic_esim_kv_allocate(kv, &b, 48), 0);
  ic_esim_kv_commit(kv, &a, t, 48);
  size_t before = nev;
  ic_esim_kv_commit(kv, &b, t, 48);
  cr_assert_eq(nev, before);
  ic_esim_kv_release(kv, &a);
  ic_esim_kv_release(kv, &b);
  ic_esim_kv_stats_t st;
  ic_esim_kv_stats(kv, &st);
  cr_assert_eq(st.gpu_cached, 3);
  ic_esim_seq_free(&a);
  ic_esim_seq_free(&b);
  ic_esim_kv_free(kv);
}

Test(enginesim_kvcache, cpu_offload_tier_stores_serves_and_evicts) {
  ic_esim_kv_t *kv = mk(2, 4);
  uint32_t t[33], u[32], w[64];
  seq_tokens(t, 33, 100);
  seq_tokens(u, 32, 900);
  seq_tokens(w, 64, 5000);
  ic_esim_seq_t a = {0}, b = {0};
  run(kv, &a, t, 32, NULL);
  cr_assert_eq(nev, 2);
  cr_assert_eq(evs[0].medium, IC_ESIM_GPU);
  cr_assert_eq(evs[1].type, IC_ESIM_EV_STORED);
  cr_assert_eq(evs[1].medium, IC_ESIM_CPU);
  cr_assert_eq(evs[1].n, 2);
  cr_assert_not(evs[1].has_parent);
  ic_esim_kv_release(kv, &a);
  run(kv, &b, u, 32, NULL); /* evicts a's GPU copies; the CPU tier keeps them */
  cr_assert_eq(evs[2].type, IC_ESIM_EV_REMOVED);
  cr_assert_eq(evs[2].medium, IC_ESIM_GPU);
  int64_t g, c;
  ic_esim_kv_prefix_match(kv, t, 32, &g, &c);
  cr_assert_eq(g, 0);
  cr_assert_eq(c, 32);
  ic_esim_kv_release(kv, &b);
  /* A request for t: loaded from CPU into fresh GPU blocks, re-reported as GPU on commit. */
  ic_esim_seq_t d = {0};
  ic_esim_kv_match(kv, &d, t, 33, &g, &c);
  cr_assert_eq(g, 0);
  cr_assert_eq(c, 32);
  cr_assert_eq(d.nblocks, 2);
  size_t before = nev;
  cr_assert_eq(ic_esim_kv_allocate(kv, &d, 33), IC_ERANGE); /* 3rd block: no room (2 GPU) */
  ic_esim_kv_commit(kv, &d, t, 32);
  bool gpu_stored = false;
  for (size_t i = before; i < nev; i++)
    if (evs[i].type == IC_ESIM_EV_STORED && evs[i].medium == IC_ESIM_GPU && evs[i].n == 2)
      gpu_stored = true;
  cr_assert(gpu_stored);
  ic_esim_kv_release(kv, &d);
  /* Four more CPU blocks push a's two out of the 4-block CPU tier. */
  ic_esim_seq_t e = {0};
  run(kv, &e, w, 32, NULL);
  ic_esim_kv_release(kv, &e);
  run(kv, &e, w + 32, 32, NULL);
  ic_esim_kv_release(kv, &e);
  size_t cpu_removed = 0;
  for (size_t i = 0; i < nev; i++)
    if (evs[i].type == IC_ESIM_EV_REMOVED && evs[i].medium == IC_ESIM_CPU) cpu_removed++;
  cr_assert_geq(cpu_removed, 2);
  ic_esim_kv_stats_t st;
  ic_esim_kv_stats(kv, &st);
  cr_assert_eq(st.cpu_used, 4);
  ic_esim_seq_free(&a);
  ic_esim_seq_free(&b);
  ic_esim_seq_free(&d);
  ic_esim_seq_free(&e);
  ic_esim_kv_free(kv);
}

Test(enginesim_kvcache, reset_clears_everything_with_one_event) {
  ic_esim_kv_t *kv = mk(8, 8);
  uint32_t t[64];
  seq_tokens(t, 64, 1);
  ic_esim_seq_t a = {0};
  run(kv, &a, t, 64, NULL);
  ic_esim_kv_release(kv, &a);
  size_t before = nev;
  cr_assert(ic_esim_kv_reset(kv));
  cr_assert_eq(nev, before + 1);
  cr_assert_eq(evs[before].type, IC_ESIM_EV_CLEARED);
  int64_t g, c;
  ic_esim_kv_prefix_match(kv, t, 64, &g, &c);
  cr_assert_eq(g + c, 0);
  ic_esim_seq_free(&a);
  ic_esim_kv_free(kv);
}

Test(enginesim_kvcache, churn_keeps_map_and_lists_consistent) {
  /* Many prompts through a small cache: every event pairs up (stored once, removed once). */
  ic_esim_kv_t *kv = mk(32, 0);
  uint32_t t[160];
  int64_t stored = 0, removed = 0;
  for (uint32_t p = 0; p < 200; p++) {
    seq_tokens(t, 160, (p % 37) * 1000);
    ic_esim_seq_t q = {0};
    nev = 0;
    run(kv, &q, t, 100 + (p % 60), NULL);
    for (size_t i = 0; i < nev; i++)
      if (evs[i].type == IC_ESIM_EV_STORED)
        stored += (int64_t)evs[i].n;
      else if (evs[i].type == IC_ESIM_EV_REMOVED)
        removed += (int64_t)evs[i].n;
    ic_esim_kv_release(kv, &q);
    ic_esim_seq_free(&q);
  }
  ic_esim_kv_stats_t st;
  ic_esim_kv_stats(kv, &st);
  cr_assert_eq(stored - removed, st.gpu_cached);
  cr_assert_eq(st.gpu_used, 0);
  ic_esim_kv_free(kv);
}

Test(enginesim_kvcache, rejects_bad_config) {
  ic_esim_kv_config_t c = {.block_size = 0, .gpu_blocks = 4};
  cr_assert_null(ic_esim_kv_new(&c, NULL, NULL));
  c.block_size = 16;
  c.gpu_blocks = 0;
  cr_assert_null(ic_esim_kv_new(&c, NULL, NULL));
}
