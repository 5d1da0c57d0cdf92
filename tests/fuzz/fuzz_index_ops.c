/* libFuzzer target: the input bytes drive a random operation sequence (ingest, events, sweeps,
 * clock moves, policy flips, lookups with LFU credit) run against the real index and the naive
 * model of tests/unit/test_index_model.h; any disagreement or sanitizer report is a crash. */
#include <stdio.h>
#include <stdlib.h>

#include "../unit/test_index_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1024) return 0; /* the model is quadratic; long inputs add little */
  nm_rng_t g = {.data = data, .len = size};
  nm_t m;
  if (!nm_init(&m, &g)) return 0;
  while (!nm_done(&g)) {
    if (!nm_step(&m, &g)) {
      fprintf(stderr, "index/model mismatch: %s\n", m.msg);
      abort();
    }
  }
  nm_fini(&m);
  return 0;
}
