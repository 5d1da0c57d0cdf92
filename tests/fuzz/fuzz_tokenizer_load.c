/* libFuzzer: tokenizer.json loading (untrusted model files). Any input either loads or fails
 * with a message; a loaded tokenizer must encode a fixed text and its own input without error
 * beyond the documented codes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ic/err.h"
#include "ic/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[IC_TOK_ERRLEN];
  ic_tokenizer *t = NULL;
  int rc = ic_tokenizer_load_json((const char *)data, size, NULL, 0, &t, err);
  if (rc) {
    if (t || !memchr(err, 0, sizeof err)) __builtin_trap();
    return 0;
  }
  ic_tok_ids ids = {0};
  static const char text[] =
      "Hello, world! It's 2024 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\n\n  x";
  rc = ic_tokenizer_encode(t, text, sizeof text - 1, true, 0, &ids);
  if (rc && rc != IC_ENOMEM && rc != IC_EINVAL) __builtin_trap();
  size_t n = size > 4096 ? 4096 : size;
  rc = ic_tokenizer_encode(t, (const char *)data, n, false, 100000, &ids);
  if (rc && rc != IC_ENOMEM && rc != IC_EINVAL && rc != IC_ERANGE) __builtin_trap();
  ic_tok_ids_free(&ids);
  ic_tokenizer_free(t);
  return 0;
}
