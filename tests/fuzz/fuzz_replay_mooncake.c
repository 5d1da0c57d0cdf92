/* libFuzzer target for lib/replay's Mooncake JSONL parser and workload spec parser: a trace file
 * and a --workload spec are user input; neither may crash the replayer or lose valid lines. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic/replay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  ic_replay_workload_t *w =
      ic_replay_mooncake_parse((const char *)data, size, "fuzz", err, sizeof(err));
  if (w) {
    /* Expand every prompt: the segments must describe exactly input_len tokens. */
    for (size_t i = 0; i < w->n && i < 64; i++) {
      uint32_t *t = malloc((w->reqs[i].input_len + 1) * sizeof(*t));
      if (!t) break;
      size_t n = ic_replay_req_tokens(w, i, t, w->reqs[i].input_len);
      if (n != w->reqs[i].input_len) __builtin_trap();
      free(t);
    }
    ic_replay_workload_free(w);
  }
  /* The same bytes as a synthetic workload spec (small inputs only: a spec builds requests). */
  if (size < 128 && (size < 9 || memcmp(data, "mooncake:", 9) != 0)) {
    char spec[160];
    memcpy(spec, data, size);
    spec[size] = '\0';
    if (strlen(spec) == size && !strstr(spec, "requests") && !strstr(spec, "groups") &&
        !strstr(spec, "questions") && !strstr(spec, "sessions") && !strstr(spec, "turns") &&
        !strstr(spec, "prefix")) { /* sizes stay at their (bounded) defaults */
      w = ic_replay_workload_load(spec, err, sizeof(err));
      ic_replay_workload_free(w);
    }
  }
  return 0;
}
