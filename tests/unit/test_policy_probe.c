/* Unit tests for the /probe body decoder and probe hash in lib/policy: validation order,
 * strictness, trailing content, hash determinism and injectivity. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ic/policy.h"

static ic_probe_parse_status_t pp(const char *body, ic_probe_req_t *r, char *msg) {
  return ic_probe_parse(body, strlen(body), false, r, msg, 256);
}

Test(probe, happy_path) {
  ic_probe_req_t r;
  char msg[256];
  cr_assert_eq(pp(" {\"backend\":\"ns/"
                  "b\",\"model\":\"m\",\"hashScheme\":\"vllm\",\"backendType\":\"LMCache\"}\n",
                  &r, msg),
               IC_PROBE_PARSE_OK, "%s", msg);
  cr_assert_str_eq(r.backend, "ns/b");
  cr_assert_str_eq(r.model, "m");
  cr_assert_str_eq(r.hash_scheme, "vllm");
  cr_assert_str_eq(r.backend_type, "LMCache");
  ic_probe_req_clear(&r);
  cr_assert_eq(pp("{\"BACKEND\":\"b\",\"model\":\"m\",\"hashscheme\":\"s\"}", &r, msg),
               IC_PROBE_PARSE_OK);
  cr_assert_str_eq(r.backend_type, "");
  ic_probe_req_clear(&r);
}

Test(probe, malformed_bodies) {
  ic_probe_req_t r;
  char msg[256];
  cr_assert_eq(pp("", &r, msg), IC_PROBE_PARSE_DECODE);
  cr_assert_str_eq(msg, "EOF");
  cr_assert_eq(pp("not json", &r, msg), IC_PROBE_PARSE_DECODE);
  cr_assert_eq(
      pp("{\"backend\":\"b\",\"model\":\"m\",\"hashScheme\":\"s\",\"tenant\":\"t\"}", &r, msg),
      IC_PROBE_PARSE_DECODE);
  cr_assert_str_eq(msg, "json: unknown field \"tenant\"");
  cr_assert_eq(pp("{\"backend\":1,\"model\":\"m\",\"hashScheme\":\"s\"}", &r, msg),
               IC_PROBE_PARSE_DECODE);
  cr_assert_eq(pp("[]", &r, msg), IC_PROBE_PARSE_DECODE);
  const char *ok = "{\"backend\":\"b\",\"model\":\"m\",\"hashScheme\":\"s\"}";
  char buf[256];
  snprintf(buf, sizeof buf, "%s{\"x\":1}", ok);
  cr_assert_eq(pp(buf, &r, msg), IC_PROBE_PARSE_TRAILING);
  snprintf(buf, sizeof buf, "%s]", ok);
  cr_assert_eq(pp(buf, &r, msg), IC_PROBE_PARSE_TRAILING);
  snprintf(buf, sizeof buf, "%s garbage", ok);
  cr_assert_eq(pp(buf, &r, msg), IC_PROBE_PARSE_TRAILING);
  snprintf(buf, sizeof buf, "%s \r\n\t ", ok);
  cr_assert_eq(pp(buf, &r, msg), IC_PROBE_PARSE_OK);
  ic_probe_req_clear(&r);
  cr_assert_eq(pp("{\"model\":\"m\",\"hashScheme\":\"s\"}", &r, msg), IC_PROBE_PARSE_MISSING);
  cr_assert_eq(pp("{\"backend\":\"b\",\"hashScheme\":\"s\"}", &r, msg), IC_PROBE_PARSE_MISSING);
  cr_assert_eq(pp("{\"backend\":\"b\",\"model\":\"m\",\"hashScheme\":\"\"}", &r, msg),
               IC_PROBE_PARSE_MISSING);
  cr_assert_eq(pp("null", &r, msg), IC_PROBE_PARSE_MISSING);
  cr_assert_eq(pp("{\"model\":\"m\"} x", &r, msg), IC_PROBE_PARSE_TRAILING,
               "trailing content is checked before required fields");
  cr_assert_eq(ic_probe_parse(ok, strlen(ok), true, &r, msg, sizeof msg), IC_PROBE_PARSE_DECODE);
  cr_assert_str_eq(msg, "http: request body too large");
}

Test(probe, hash_deterministic_and_injective) {
  uint8_t a[32], b[32], c[32], d[32], e[32];
  ic_probe_hash("ns/b", "m", "vllm", a);
  ic_probe_hash("ns/b", "m", "vllm", b);
  cr_assert(!memcmp(a, b, 32));
  ic_probe_hash("ns/c", "m", "vllm", c);
  ic_probe_hash("ns/b", "m", "sglang", d);
  ic_probe_hash("ns/b", "m2", "vllm", e);
  cr_assert(memcmp(a, c, 32) && memcmp(a, d, 32) && memcmp(a, e, 32));
  /* Length prefixes keep field boundaries apart. */
  uint8_t x[32], y[32];
  ic_probe_hash("b", "ab", "c", x);
  ic_probe_hash("b", "a", "bc", y);
  cr_assert(memcmp(x, y, 32));
  /* Known answer: SHA-256("inferencecache.io/probe/v1\n" 00000001 's' 00000001 'm' 00000001 'b').
   */
  uint8_t k[32];
  ic_probe_hash("b", "m", "s", k);
  static const uint8_t want[32] = {0x7a, 0x28, 0x77, 0x2d, 0xb2, 0xea, 0x9a, 0xc9, 0x46, 0x4f, 0x98,
                                   0x59, 0xf2, 0x7b, 0x85, 0x61, 0x9a, 0x87, 0x27, 0xef, 0x37, 0x9d,
                                   0xb5, 0xbb, 0x0f, 0xbe, 0x8d, 0x5d, 0x08, 0xcd, 0x7e, 0xfd};
  cr_assert(!memcmp(k, want, 32), "field order scheme, model, backend");
}
