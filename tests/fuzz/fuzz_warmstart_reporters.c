/* libFuzzer target: PUT /reporters bodies through the parser and into a warm-start tracker (the
 * whole path the controller-facing handler takes), plus markers naming the parsed entries. */
#include <stddef.h>
#include <stdint.h>

#include "ic/warmstart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n = 0;
  char err[256];
  char **names = ic_warmstart_parse_reporters((const char *)data, size, &n, err, sizeof err);
  if (!names) return 0;
  ic_warmstart_t *w = ic_warmstart_new(0, 1000, 5000);
  if (w) {
    ic_warmstart_set_reporters(w, (const char *const *)names, n);
    for (size_t i = 0; i < n; i++)
      ic_warmstart_heard(w, names[i], i % 2 == 0, (int64_t)i);
    ic_warmstart_ready(w, 10);
    ic_buf_t b = IC_BUF_INIT;
    ic_warmstart_describe(w, 10, &b);
    ic_buf_free(&b);
    ic_warmstart_free(w);
  }
  ic_warmstart_names_free(names);
  return 0;
}
