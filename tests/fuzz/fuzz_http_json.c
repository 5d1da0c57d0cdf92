/* libFuzzer target: lib/http's Go-compatible JSON writers. Properties checked: every escaped
 * string is valid JSON that decodes to the input (invalid UTF-8 -> U+FFFD aside), and every
 * finite float32 prints in a form that reads back as the same float32. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/http.h"

static int valid_utf8(const uint8_t *s, size_t n) {
  json_t *j = json_stringn((const char *)s, n); /* jansson validates UTF-8 */
  int ok = j != NULL;
  json_decref(j);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ic_buf_t b = IC_BUF_INIT;
  if (ic_http_json_str(&b, (const char *)data, size) != 0) abort();
  json_error_t e;
  json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
  if (!j || !json_is_string(j)) abort(); /* always valid JSON */
  if (valid_utf8(data, size) &&
      (json_string_length(j) != size || memcmp(json_string_value(j), data, size) != 0))
    abort(); /* valid input round-trips exactly */
  for (size_t i = 0; i < b.len; i++)
    if (b.data[i] == '<' || b.data[i] == '>' || b.data[i] == '&') abort(); /* HTML-safe */
  json_decref(j);
  ic_buf_free(&b);

  if (size >= 4) {
    float f;
    memcpy(&f, data, 4);
    ic_buf_t fb = IC_BUF_INIT;
    ic_http_json_f32(&fb, f);
    if (isfinite(f) && strtof(fb.data, NULL) != f && !(f == 0 && strtof(fb.data, NULL) == 0))
      abort();
    json_t *num = json_loadb(fb.data, fb.len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    if (!num || !json_is_number(num)) abort(); /* always a JSON number */
    json_decref(num);
    ic_buf_free(&fb);
  }
  if (size >= 8) {
    int64_t ns;
    memcpy(&ns, data, 8);
    ic_buf_t tb = IC_BUF_INIT;
    ic_http_json_time(&tb, ns);
    if (tb.len < 22 || tb.data[0] != '"' || tb.data[tb.len - 1] != '"') abort();
    ic_buf_free(&tb);
  }
  return 0;
}
