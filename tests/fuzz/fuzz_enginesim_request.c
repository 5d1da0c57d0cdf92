/* libFuzzer target for lib/enginesim's request readers: arbitrary bytes as a /v1/completions
 * body, a /v1/chat/completions body and a /sim/prefix_match body (the first byte picks which and
 * the prompt cap). A client's body is untrusted input; every reject must carry a message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ic/enginesim.h"
#include "ic/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t cap = 1 + (size_t)(data[0] >> 2) * 64;
  const char *body = (const char *)data + 1;
  size_t len = size - 1;
  char err[256];
  err[0] = 0;
  switch (data[0] & 3) {
  case 0:
  case 1: {
    ic_esim_body_t b;
    int rc = ic_esim_body_parse(body, len, data[0] & 1, cap, &b, err, sizeof err);
    if (rc == 0) {
      if (b.nprompt == 0 || b.nprompt > cap || b.max_tokens < 1 || !b.prompt) abort();
      ic_esim_body_free(&b);
    } else if (rc == IC_EINVAL && !err[0]) {
      abort();
    }
    break;
  }
  default: {
    uint32_t *t = NULL;
    size_t n = 0;
    int rc = ic_esim_prompt_parse(body, len, cap, &t, &n, err, sizeof err);
    if (rc == 0 && (n == 0 || n > cap)) abort();
    if (rc == IC_EINVAL && !err[0]) abort();
    free(t);
    break;
  }
  }
  return 0;
}
