/* Jinja tests (`is defined`, `is string`, ...) and the global functions of lib/chattemplate:
 * range, dict, namespace, and the Hugging Face globals raise_exception and strftime_now. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/err.h"
#include "internal.h"

#define TEST(name)                                                                                 \
  static bool t_##name(ct_ctx *c, const ct_node *n, ct_val v, ct_val *args, size_t nargs)
#define UNUSED_TEST_ARGS                                                                           \
  (void)c;                                                                                         \
  (void)n;                                                                                         \
  (void)args;                                                                                      \
  (void)nargs

static ct_str as_str(ct_ctx *c, ct_val v) { return ct_to_str(c, v).u.s; }

/* ---- tests */

static ct_val targ(ct_ctx *c, ct_val *args, size_t nargs, const char *test) {
  if (!nargs) ct_fail(c, IC_EINVAL, "test '%s' needs an argument", test);
  return args[0];
}

TEST(defined) {
  UNUSED_TEST_ARGS;
  return v.t != V_UNDEF;
}
TEST(undefined) {
  UNUSED_TEST_ARGS;
  return v.t == V_UNDEF;
}
TEST(none) {
  UNUSED_TEST_ARGS;
  return v.t == V_NONE;
}
TEST(boolean) {
  UNUSED_TEST_ARGS;
  return v.t == V_BOOL;
}
TEST(true) {
  UNUSED_TEST_ARGS;
  return v.t == V_BOOL && v.u.b;
}
TEST(false) {
  UNUSED_TEST_ARGS;
  return v.t == V_BOOL && !v.u.b;
}
TEST(integer) {
  UNUSED_TEST_ARGS;
  return v.t == V_INT;
}
TEST(float) {
  UNUSED_TEST_ARGS;
  return v.t == V_FLOAT;
}
TEST(number) {
  UNUSED_TEST_ARGS;
  return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL;
}
TEST(string) {
  UNUSED_TEST_ARGS;
  return v.t == V_STR;
}
TEST(mapping) {
  UNUSED_TEST_ARGS;
  return v.t == V_DICT;
}
TEST(iterable) {
  UNUSED_TEST_ARGS;
  return v.t == V_STR || v.t == V_LIST || v.t == V_DICT || v.t == V_UNDEF || v.t == V_LOOP;
}
TEST(sequence) {
  UNUSED_TEST_ARGS;
  return v.t == V_STR || v.t == V_LIST || v.t == V_DICT;
}
TEST(callable) {
  UNUSED_TEST_ARGS;
  return v.t == V_MACRO || v.t == V_FUNC || v.t == V_METHOD;
}
TEST(sameas) {
  (void)n;
  ct_val o = targ(c, args, nargs, "sameas");
  if (v.t != o.t) return false;
  switch (v.t) {
  case V_NONE:
  case V_UNDEF: return true;
  case V_BOOL: return v.u.b == o.u.b;
  case V_INT: return v.u.i == o.u.i && v.u.i >= -5 && v.u.i <= 256; /* CPython small ints */
  case V_STR: return v.u.s.p == o.u.s.p && v.u.s.n == o.u.s.n;
  case V_LIST: return v.u.l == o.u.l;
  case V_DICT:
  case V_NS: return v.u.d == o.u.d;
  default: return false;
  }
}
TEST(eq) {
  (void)n;
  return ct_equal(c, v, targ(c, args, nargs, "eq"));
}
TEST(ne) {
  (void)n;
  return !ct_equal(c, v, targ(c, args, nargs, "ne"));
}
TEST(lt) {
  (void)n;
  return ct_compare(c, v, targ(c, args, nargs, "lt")) < 0;
}
TEST(le) {
  (void)n;
  ct_val o = targ(c, args, nargs, "le");
  return ct_equal(c, v, o) || ct_compare(c, v, o) < 0;
}
TEST(gt) {
  (void)n;
  return ct_compare(c, v, targ(c, args, nargs, "gt")) > 0;
}
TEST(ge) {
  (void)n;
  ct_val o = targ(c, args, nargs, "ge");
  return ct_equal(c, v, o) || ct_compare(c, v, o) > 0;
}
TEST(in) {
  (void)n;
  return ct_contains(c, targ(c, args, nargs, "in"), v);
}
static int64_t test_int(ct_ctx *c, ct_val v, const char *test) {
  if (v.t == V_INT) return v.u.i;
  if (v.t == V_BOOL) return v.u.b;
  ct_fail(c, IC_EINVAL, "test '%s' needs an integer, got %s", test, ct_typename(v));
}
TEST(odd) {
  UNUSED_TEST_ARGS;
  return test_int(c, v, "odd") % 2 != 0;
}
TEST(even) {
  UNUSED_TEST_ARGS;
  return test_int(c, v, "even") % 2 == 0;
}
TEST(divisibleby) {
  (void)n;
  int64_t d = test_int(c, targ(c, args, nargs, "divisibleby"), "divisibleby");
  if (!d) ct_fail(c, IC_EINVAL, "integer division or modulo by zero");
  return test_int(c, v, "divisibleby") % d == 0;
}
TEST(lower) {
  UNUSED_TEST_ARGS;
  ct_str s = as_str(c, v);
  ct_val l = ct_case(c, s, 0);
  return l.u.s.n == s.n && !memcmp(l.u.s.p, s.p, s.n);
}
TEST(upper) {
  UNUSED_TEST_ARGS;
  ct_str s = as_str(c, v);
  ct_val u = ct_case(c, s, 1);
  return u.u.s.n == s.n && !memcmp(u.u.s.p, s.p, s.n);
}
TEST(escaped) {
  UNUSED_TEST_ARGS;
  (void)v;
  return false;
}

typedef struct test_def {
  const char *name;
  ct_test_fn fn;
} test_def;

static const test_def tests[] = {
    {"defined", t_defined},
    {"undefined", t_undefined},
    {"none", t_none},
    {"boolean", t_boolean},
    {"true", t_true},
    {"false", t_false},
    {"integer", t_integer},
    {"float", t_float},
    {"number", t_number},
    {"string", t_string},
    {"mapping", t_mapping},
    {"iterable", t_iterable},
    {"sequence", t_sequence},
    {"callable", t_callable},
    {"sameas", t_sameas},
    {"eq", t_eq},
    {"equalto", t_eq},
    {"==", t_eq},
    {"ne", t_ne},
    {"!=", t_ne},
    {"lt", t_lt},
    {"lessthan", t_lt},
    {"<", t_lt},
    {"le", t_le},
    {"<=", t_le},
    {"gt", t_gt},
    {"greaterthan", t_gt},
    {">", t_gt},
    {"ge", t_ge},
    {">=", t_ge},
    {"in", t_in},
    {"odd", t_odd},
    {"even", t_even},
    {"divisibleby", t_divisibleby},
    {"lower", t_lower},
    {"upper", t_upper},
    {"escaped", t_escaped},
};

ct_test_fn ct_find_test(const char *name, size_t n) {
  for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
    if (strlen(tests[i].name) == n && !memcmp(tests[i].name, name, n)) return tests[i].fn;
  return NULL;
}

/* ---- globals */

enum { G_RANGE, G_DICT, G_NAMESPACE, G_RAISE, G_STRFTIME };
static const char *const globals[] = {"range", "dict", "namespace", "raise_exception",
                                      "strftime_now"};

bool ct_find_global(const char *name, size_t n, ct_val *out) {
  for (size_t i = 0; i < sizeof globals / sizeof *globals; i++)
    if (strlen(globals[i]) == n && !memcmp(globals[i], name, n)) {
      *out = (ct_val){.t = V_FUNC, .id = (uint16_t)i};
      return true;
    }
  return false;
}

ct_val ct_call_method(ct_ctx *c, ct_val m, ct_val *args, size_t nargs, const ct_str *kwn,
                      ct_val *kwv, size_t nkw);

ct_val ct_call_builtin(ct_ctx *c, ct_val fn, ct_val *args, size_t nargs, const ct_str *kwn,
                       ct_val *kwv, size_t nkw) {
  if (fn.t == V_METHOD) return ct_call_method(c, fn, args, nargs, kwn, kwv, nkw);
  switch (fn.id) {
  case G_RANGE: {
    int64_t a[3] = {0, 0, 1};
    if (nargs < 1 || nargs > 3) ct_fail(c, IC_EINVAL, "range expected 1 to 3 arguments");
    for (size_t i = 0; i < nargs; i++) {
      if (args[i].t != V_INT && args[i].t != V_BOOL)
        ct_fail(c, IC_EINVAL, "'%s' object cannot be interpreted as an integer",
                ct_typename(args[i]));
      a[nargs == 1 ? 1 : i] = args[i].t == V_INT ? args[i].u.i : args[i].u.b;
    }
    if (a[2] == 0) ct_fail(c, IC_EINVAL, "range() arg 3 must not be zero");
    double cnt = a[2] > 0 ? ceil(((double)a[1] - (double)a[0]) / (double)a[2])
                          : ceil(((double)a[0] - (double)a[1]) / (double)-a[2]);
    if (cnt < 0) cnt = 0;
    if (cnt > 100000) ct_fail(c, IC_ERANGE, "range too big (sandbox limit is 100000 items)");
    ct_val l = ct_list_new(c, (size_t)cnt, false);
    for (size_t i = 0; i < (size_t)cnt; i++)
      l.u.l->v[i] = ct_int(a[0] + (int64_t)i * a[2]);
    return l;
  }
  case G_DICT:
  case G_NAMESPACE: {
    ct_dict *d = ct_dict_new(c, nkw + 4);
    for (size_t i = 0; i < nargs; i++) {
      if (args[i].t != V_DICT)
        ct_fail(c, IC_EINVAL, "%s() positional arguments must be mappings", globals[fn.id]);
      for (size_t k = 0; k < args[i].u.d->n; k++)
        ct_dict_set(c, d, args[i].u.d->e[k].k, args[i].u.d->e[k].v);
    }
    for (size_t k = 0; k < nkw; k++)
      ct_dict_set(c, d, ct_strv(kwn[k].p, kwn[k].n), kwv[k]);
    return (ct_val){.t = fn.id == G_DICT ? V_DICT : V_NS, .u.d = d};
  }
  case G_RAISE: {
    ct_str m = nargs ? as_str(c, args[0]) : (ct_str){"", 0};
    ct_fail(c, IC_EINVAL, "%.*s", (int)(m.n > 900 ? 900 : m.n), m.p);
  }
  default: {
    if (c->no_clock)
      ct_fail(c, IC_EINVAL,
              "strftime_now is not available here (the render must be deterministic: "
              "pass the date as a variable)");
    if (!nargs || args[0].t != V_STR) ct_fail(c, IC_EINVAL, "strftime_now needs a format string");
    char fmt[256], out[512];
    ct_str f = args[0].u.s;
    if (f.n >= sizeof fmt) ct_fail(c, IC_EINVAL, "strftime_now format too long");
    memcpy(fmt, f.p, f.n);
    fmt[f.n] = 0;
    time_t t = (time_t)c->now;
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t k = strftime(out, sizeof out, fmt, &tm);
    return ct_str_copy(c, out, k);
  }
  }
}
