/* Differential test: the real index and the naive model of test_index_model.h run the same
 * random operation sequences; every lookup answer (strategy, rows, float32 bits) must agree.
 * IC_INDEX_DIFF_SEEDS overrides the seed count (2000 in `make test`, >= 10000 nightly). */
#include <criterion/criterion.h>

#include "test_index_model.h"

Test(index_diff, random_sequences_match_naive_model, .timeout = 900) {
  long seeds = 2000;
  const char *env = getenv("IC_INDEX_DIFF_SEEDS");
  if (env && atol(env) > 0) seeds = atol(env);
  long lookups = 0, hits = 0;
  for (long seed = 1; seed <= seeds; seed++) {
    nm_rng_t g = {.s = 0x9e3779b97f4a7c15ULL ^ (uint64_t)seed * 0x2545f4914f6cdd1dULL};
    nm_t m;
    cr_assert(nm_init(&m, &g));
    int steps = 40 + (int)nm_rand(&g, 80);
    for (int i = 0; i < steps; i++) {
      if (!nm_step(&m, &g)) {
        nm_fini(&m);
        cr_assert_fail("seed %ld step %d: %s", seed, i, m.msg);
      }
    }
    lookups += m.lookups;
    hits += m.hits;
    nm_fini(&m);
  }
  /* the generator must actually exercise matches, not only misses */
  cr_assert_gt(hits, lookups / 20, "only %ld of %ld lookups matched", hits, lookups);
  cr_log_info("index_diff: %ld seeds, %ld lookups compared, %ld prefix matches", seeds, lookups,
              hits);
}
