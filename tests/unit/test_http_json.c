/* Unit tests for lib/http's Go-compatible JSON scalars: HTML-safe string escaping, float32
 * shortest formatting (Go encoding/json), RFC 3339 nano timestamps and Go's zero time. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/http.h"

static char out[256];

static const char *str(const char *s, size_t n) {
  ic_buf_t b = IC_BUF_INIT;
  ic_http_json_str(&b, s, n);
  snprintf(out, sizeof out, "%s", b.data);
  ic_buf_free(&b);
  return out;
}

static const char *f32(float v) {
  ic_buf_t b = IC_BUF_INIT;
  ic_http_json_f32(&b, v);
  snprintf(out, sizeof out, "%s", b.data);
  ic_buf_free(&b);
  return out;
}

static const char *tm(int64_t ns) {
  ic_buf_t b = IC_BUF_INIT;
  ic_http_json_time(&b, ns);
  snprintf(out, sizeof out, "%s", b.data);
  ic_buf_free(&b);
  return out;
}

Test(http_json, strings_escape_like_go) {
  cr_assert_str_eq(str("abc", 3), "\"abc\"");
  cr_assert_str_eq(str("<a&b>", 5), "\"\\u003ca\\u0026b\\u003e\"");
  cr_assert_str_eq(str("q\"\\", 3), "\"q\\\"\\\\\"");
  cr_assert_str_eq(str("\n\r\t\b\f\x01\x1f", 7), "\"\\n\\r\\t\\b\\f\\u0001\\u001f\"");
  cr_assert_str_eq(str("\x7f", 1), "\"\x7f\"");
  cr_assert_str_eq(str("h\xc3\xa9", 3), "\"h\xc3\xa9\"");
  cr_assert_str_eq(str("\xe2\x80\xa8\xe2\x80\xa9", 6), "\"\\u2028\\u2029\"");
  cr_assert_str_eq(str("a\xff"
                       "b",
                       3),
                   "\"a\\ufffdb\"");
  cr_assert_str_eq(str("\xed\xa0\x80", 3), "\"\\ufffd\\ufffd\\ufffd\"", "surrogates are invalid");
  cr_assert_str_eq(str("a\0b", 3), "\"a\\u0000b\"");
}

Test(http_json, float32_shortest_like_go) {
  cr_assert_str_eq(f32(0.75f), "0.75");
  cr_assert_str_eq(f32(0.1f), "0.1");
  cr_assert_str_eq(f32(0.8f), "0.8");
  cr_assert_str_eq(f32(1.0f), "1");
  cr_assert_str_eq(f32(0.0f), "0");
  cr_assert_str_eq(f32(1234567.0f), "1234567");
  cr_assert_str_eq(f32(1e20f), "100000000000000000000");
  cr_assert_str_eq(f32(1e21f), "1e+21");
  cr_assert_str_eq(f32(1e-6f), "0.000001");
  cr_assert_str_eq(f32(1e-7f), "1e-7");
  cr_assert_str_eq(f32(1.5e-10f), "1.5e-10");
  cr_assert_str_eq(f32(-2.5f), "-2.5");
  cr_assert_str_eq(f32(42.666668f), "42.666668");
  cr_assert_str_eq(f32(3.4028235e38f), "3.4028235e+38");
  cr_assert_str_eq(f32(NAN), "0");
}

Test(http_json, rfc3339_nano) {
  cr_assert_str_eq(tm(INT64_MIN), "\"0001-01-01T00:00:00Z\"");
  cr_assert_str_eq(tm(0), "\"1970-01-01T00:00:00Z\"");
  cr_assert_str_eq(tm(1700000000123000000LL), "\"2023-11-14T22:13:20.123Z\"");
  cr_assert_str_eq(tm(1700000000000000001LL), "\"2023-11-14T22:13:20.000000001Z\"");
  cr_assert_str_eq(tm(1700000000500000000LL), "\"2023-11-14T22:13:20.5Z\"");
}
