/* libFuzzer target for lib/replay's engine response readers: arbitrary bytes as an SSE stream
 * (split at a fuzzer-chosen point) whose events go through the completion-object reader, and the
 * same bytes as one non-streamed completion body. An engine's reply is untrusted input. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ic/replay.h"

static int on_data(void *ud, const char *d, size_t len) {
  ic_replay_apply_completion(ud, d, len); /* bounded by len: the data may hold NULs */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ic_replay_record_t r;
  memset(&r, 0, sizeof(r));
  size_t split = size ? data[0] % (size + 1) : 0;
  ic_replay_sse_t p;
  ic_replay_sse_init(&p);
  ic_replay_sse_feed(&p, (const char *)data, split, on_data, &r);
  ic_replay_sse_feed(&p, (const char *)data + split, size - split, on_data, &r);
  ic_replay_sse_finish(&p, on_data, &r);
  ic_replay_sse_free(&p);
  ic_replay_apply_completion(&r, (const char *)data, size);
  return 0;
}
