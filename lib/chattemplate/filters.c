/* Filters of lib/chattemplate: jinja2's filters that chat templates use, with the Hugging Face
 * `tojson` (json.dumps with ensure_ascii=False and Python's separators). Tests and globals:
 * tests.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/err.h"
#include "internal.h"

#define FILTER(name)                                                                               \
  static ct_val f_##name(ct_ctx *c, const ct_node *n, ct_val v, ct_val *args, size_t nargs,        \
                         const ct_str *kwn, ct_val *kwv, size_t nkw)
#define UNUSED_FILTER_ARGS                                                                         \
  (void)n;                                                                                         \
  (void)args;                                                                                      \
  (void)nargs;                                                                                     \
  (void)kwn;                                                                                       \
  (void)kwv;                                                                                       \
  (void)nkw

static ct_val kwarg(ct_val *args, size_t nargs, size_t i, const ct_str *kwn, ct_val *kwv,
                    size_t nkw, const char *name, ct_val dflt) {
  if (i < nargs) return args[i];
  for (size_t k = 0; k < nkw; k++)
    if (kwn[k].n == strlen(name) && !memcmp(kwn[k].p, name, kwn[k].n)) return kwv[k];
  return dflt;
}
#define ARG(i, name, dflt) kwarg(args, nargs, i, kwn, kwv, nkw, name, dflt)

static ct_str as_str(ct_ctx *c, ct_val v) { return ct_to_str(c, v).u.s; }

static ct_val str_of(ct_sb *b) { return ct_strv(b->p ? b->p : "", b->n); }

/* attribute path "a.b.0" as jinja's make_attrgetter walks it */
static ct_val attr_path(ct_ctx *c, ct_val item, ct_val attr) {
  if (attr.t == V_INT) return ct_getitem(c, item, attr);
  ct_str a = as_str(c, attr);
  size_t i = 0;
  while (i <= a.n) {
    size_t j = i;
    while (j < a.n && a.p[j] != '.')
      j++;
    ct_str part = {a.p + i, j - i};
    bool digits = part.n > 0;
    int64_t idx = 0;
    for (size_t k = 0; k < part.n; k++) {
      if (part.p[k] < '0' || part.p[k] > '9')
        digits = false;
      else
        idx = idx * 10 + (part.p[k] - '0');
    }
    item = digits ? ct_getitem(c, item, ct_int(idx)) : ct_getitem(c, item, ct_strv(part.p, part.n));
    i = j + 1;
  }
  return item;
}

/* ---- filters */

FILTER(tojson) {
  (void)n;
  ct_val ascii = ARG(0, "ensure_ascii", ct_bool(false));
  ct_val indent = ARG(1, "indent", ct_none());
  ct_val seps = ARG(2, "separators", ct_none());
  ct_val sort = ARG(3, "sort_keys", ct_bool(false));
  int ind = -1;
  if (indent.t == V_INT)
    ind = indent.u.i < 0 ? 0 : indent.u.i > 64 ? 64 : (int)indent.u.i;
  else if (indent.t != V_NONE && indent.t != V_UNDEF)
    ct_fail(c, IC_EINVAL, "unsupported: tojson indent of type %s", ct_typename(indent));
  ct_str item_sep = ind >= 0 ? (ct_str){",", 1} : (ct_str){", ", 2}, key_sep = {": ", 2};
  if (seps.t == V_LIST && seps.u.l->n == 2 && seps.u.l->v[0].t == V_STR &&
      seps.u.l->v[1].t == V_STR) {
    item_sep = seps.u.l->v[0].u.s;
    key_sep = seps.u.l->v[1].u.s;
  } else if (seps.t != V_NONE && seps.t != V_UNDEF) {
    ct_fail(c, IC_EINVAL, "tojson separators must be a pair of strings");
  }
  ct_sb b = {0};
  ct_write_json(c, &b, v, ind, 0, ct_truthy(sort), ct_truthy(ascii), item_sep, key_sep);
  return str_of(&b);
}

FILTER(trim) {
  (void)n;
  return ct_strip(c, as_str(c, v), ARG(0, "chars", ct_none()), true, true);
}

static int64_t length_of(ct_ctx *c, ct_val v) {
  switch (v.t) {
  case V_STR: return (int64_t)ct_u8_len(v.u.s.p, v.u.s.n);
  case V_LIST: return (int64_t)v.u.l->n;
  case V_DICT: return (int64_t)v.u.d->n;
  case V_UNDEF: return 0;
  case V_LOOP: return (int64_t)v.u.loop->length;
  default: ct_fail(c, IC_EINVAL, "object of type '%s' has no len()", ct_typename(v));
  }
}

FILTER(length) {
  UNUSED_FILTER_ARGS;
  return ct_int(length_of(c, v));
}

FILTER(default) {
  (void)n;
  (void)c;
  ct_val d = ARG(0, "default_value", ct_strv("", 0));
  bool boolean = ct_truthy(ARG(1, "boolean", ct_bool(false)));
  if (v.t == V_UNDEF || (boolean && !ct_truthy(v))) return d;
  return v;
}

FILTER(join) {
  (void)n;
  ct_val sep = ARG(0, "d", ct_strv("", 0));
  ct_val attr = ARG(1, "attribute", ct_none());
  ct_list *items = ct_iterate(c, v);
  ct_str s = as_str(c, sep);
  ct_sb b = {0};
  for (size_t i = 0; i < items->n; i++) {
    if (i) ct_sb_put(c, &b, s.p, s.n);
    ct_val it = attr.t == V_NONE ? items->v[i] : attr_path(c, items->v[i], attr);
    ct_write_str(c, &b, it);
  }
  return str_of(&b);
}

FILTER(first) {
  UNUSED_FILTER_ARGS;
  ct_list *l = ct_iterate(c, v);
  return l->n ? l->v[0] : ct_undef(NULL);
}

FILTER(last) {
  UNUSED_FILTER_ARGS;
  ct_list *l = ct_iterate(c, v);
  return l->n ? l->v[l->n - 1] : ct_undef(NULL);
}

FILTER(list) {
  UNUSED_FILTER_ARGS;
  ct_list *l = ct_iterate(c, v);
  ct_val r = ct_list_new(c, l->n, false);
  if (l->n) memcpy(r.u.l->v, l->v, l->n * sizeof(ct_val));
  return r;
}

FILTER(string) {
  UNUSED_FILTER_ARGS;
  return ct_to_str(c, v);
}

FILTER(upper) {
  UNUSED_FILTER_ARGS;
  return ct_case(c, as_str(c, v), 1);
}
FILTER(lower) {
  UNUSED_FILTER_ARGS;
  return ct_case(c, as_str(c, v), 0);
}
FILTER(capitalize) {
  UNUSED_FILTER_ARGS;
  return ct_case(c, as_str(c, v), 2);
}
FILTER(title) {
  UNUSED_FILTER_ARGS;
  return ct_case(c, as_str(c, v), 3);
}

FILTER(replace) {
  (void)n;
  ct_val old = ARG(0, "old", ct_undef(NULL)), neu = ARG(1, "new", ct_undef(NULL));
  ct_val count = ARG(2, "count", ct_none());
  if (old.t == V_UNDEF || neu.t == V_UNDEF) ct_fail(c, IC_EINVAL, "replace needs old and new");
  return ct_replace(c, as_str(c, v), as_str(c, old), as_str(c, neu),
                    count.t == V_INT ? count.u.i : -1);
}

FILTER(int) {
  (void)n;
  ct_val d = ARG(0, "default", ct_int(0));
  if (v.t == V_INT) return v;
  if (v.t == V_BOOL) return ct_int(v.u.b);
  if (v.t == V_FLOAT) {
    if (!isfinite(v.u.f) || fabs(v.u.f) > 9.2e18) return d;
    return ct_int((int64_t)v.u.f);
  }
  if (v.t == V_STR) {
    char buf[64];
    ct_str s = ct_strip(c, v.u.s, ct_none(), true, true).u.s;
    if (!s.n || s.n >= sizeof buf) return d;
    memcpy(buf, s.p, s.n);
    buf[s.n] = 0;
    char *end;
    long long i = strtoll(buf, &end, 10);
    if (*end == 0) return ct_int(i);
    double f = strtod(buf, &end);
    if (*end == 0 && isfinite(f) && fabs(f) < 9.2e18) return ct_int((int64_t)f);
  }
  return d;
}

FILTER(float) {
  (void)n;
  ct_val d = ARG(0, "default", ct_float(0.0));
  if (v.t == V_FLOAT) return v;
  if (v.t == V_INT) return ct_float((double)v.u.i);
  if (v.t == V_BOOL) return ct_float(v.u.b);
  if (v.t == V_STR) {
    char buf[64];
    ct_str s = ct_strip(c, v.u.s, ct_none(), true, true).u.s;
    if (!s.n || s.n >= sizeof buf) return d;
    memcpy(buf, s.p, s.n);
    buf[s.n] = 0;
    char *end;
    double f = strtod(buf, &end);
    if (*end == 0) return ct_float(f);
  }
  return d;
}

FILTER(abs) {
  UNUSED_FILTER_ARGS;
  if (v.t == V_INT) {
    if (v.u.i == INT64_MIN) ct_fail(c, IC_ERANGE, "integer overflow");
    return ct_int(v.u.i < 0 ? -v.u.i : v.u.i);
  }
  if (v.t == V_BOOL) return ct_int(v.u.b);
  if (v.t == V_FLOAT) return ct_float(fabs(v.u.f));
  ct_fail(c, IC_EINVAL, "bad operand type for abs(): '%s'", ct_typename(v));
}

FILTER(round) {
  (void)n;
  ct_val prec = ARG(0, "precision", ct_int(0));
  ct_val method = ARG(1, "method", ct_strv("common", 6));
  double x = v.t == V_FLOAT ? v.u.f : v.t == V_INT ? (double)v.u.i : v.t == V_BOOL ? v.u.b : NAN;
  if (isnan(x) && v.t != V_FLOAT) ct_fail(c, IC_EINVAL, "round of a %s", ct_typename(v));
  int64_t p = prec.t == V_INT ? prec.u.i : 0;
  if (p < 0 || p > 15) ct_fail(c, IC_EINVAL, "unsupported: round precision %lld", (long long)p);
  double scale = pow(10, (double)p), y = x * scale;
  ct_str m = as_str(c, method);
  if (m.n == 4 && !memcmp(m.p, "ceil", 4))
    y = ceil(y);
  else if (m.n == 5 && !memcmp(m.p, "floor", 5))
    y = floor(y);
  else if (m.n == 6 && !memcmp(m.p, "common", 6))
    y = nearbyint(y); /* Python round(): half even */
  else
    ct_fail(c, IC_EINVAL, "method must be common, ceil or floor");
  return ct_float(y / scale);
}

FILTER(items) {
  UNUSED_FILTER_ARGS;
  if (v.t == V_UNDEF) return ct_list_new(c, 0, false);
  if (v.t != V_DICT) ct_fail(c, IC_EINVAL, "Can only get item pairs from a mapping.");
  ct_val l = ct_list_new(c, v.u.d->n, false);
  for (size_t i = 0; i < v.u.d->n; i++) {
    ct_val t = ct_list_new(c, 2, true);
    t.u.l->v[0] = v.u.d->e[i].k;
    t.u.l->v[1] = v.u.d->e[i].v;
    l.u.l->v[i] = t;
  }
  return l;
}

typedef struct sort_ctx {
  ct_ctx *c;
  bool ci;
  bool by_value;
  ct_val attr;
} sort_ctx;

static ct_val sort_key(sort_ctx *s, ct_val v) {
  if (s->attr.t != V_NONE) v = attr_path(s->c, v, s->attr);
  if (s->by_value) v = v.u.l->v[1];
  if (s->ci && v.t == V_STR) v = ct_case(s->c, v.u.s, 0);
  return v;
}

static int sort_cmp(const void *a, const void *b, void *ud) {
  sort_ctx *s = ud;
  return ct_compare(s->c, sort_key(s, *(const ct_val *)a), sort_key(s, *(const ct_val *)b));
}

/* stable like Python's sort: merge by index on ties */
typedef struct idx_val {
  ct_val v;
  size_t i;
} idx_val;
static int sort_cmp_stable(const void *a, const void *b, void *ud) {
  int r = sort_cmp(&((const idx_val *)a)->v, &((const idx_val *)b)->v, ud);
  if (r) return r;
  size_t x = ((const idx_val *)a)->i, y = ((const idx_val *)b)->i;
  return (x > y) - (x < y);
}

static ct_val sorted(ct_ctx *c, ct_list *l, sort_ctx *s, bool reverse) {
  idx_val *tmp = ct_alloc(c, (l->n + 1) * sizeof *tmp);
  for (size_t i = 0; i < l->n; i++)
    tmp[i] = (idx_val){l->v[i], i};
  ct_charge(c, l->n * 4);
  qsort_r(tmp, l->n, sizeof *tmp, sort_cmp_stable, s);
  ct_val r = ct_list_new(c, l->n, false);
  for (size_t i = 0; i < l->n; i++)
    r.u.l->v[i] = tmp[reverse ? l->n - 1 - i : i].v;
  return r;
}

FILTER(sort) {
  (void)n;
  bool reverse = ct_truthy(ARG(0, "reverse", ct_bool(false)));
  sort_ctx s = {c, !ct_truthy(ARG(1, "case_sensitive", ct_bool(false))), false,
                ARG(2, "attribute", ct_none())};
  return sorted(c, ct_iterate(c, v), &s, reverse);
}

FILTER(dictsort) {
  (void)n;
  if (v.t != V_DICT) ct_fail(c, IC_EINVAL, "dictsort needs a mapping");
  bool ci = !ct_truthy(ARG(0, "case_sensitive", ct_bool(false)));
  ct_str by = as_str(c, ARG(1, "by", ct_strv("key", 3)));
  bool reverse = ct_truthy(ARG(2, "reverse", ct_bool(false)));
  ct_val pairs = f_items(c, n, v, NULL, 0, NULL, NULL, 0);
  sort_ctx s = {c, ci, by.n == 5 && !memcmp(by.p, "value", 5), ct_int(0)};
  if (!s.by_value)
    s.attr = ct_int(0);
  else
    s.attr = ct_none();
  return sorted(c, pairs.u.l, &s, reverse);
}

FILTER(reverse) {
  UNUSED_FILTER_ARGS;
  if (v.t == V_STR) {
    ct_list *chars = ct_iterate(c, v);
    ct_sb b = {0};
    for (size_t i = chars->n; i-- > 0;)
      ct_sb_put(c, &b, chars->v[i].u.s.p, chars->v[i].u.s.n);
    return str_of(&b);
  }
  ct_list *l = ct_iterate(c, v);
  ct_val r = ct_list_new(c, l->n, false);
  for (size_t i = 0; i < l->n; i++)
    r.u.l->v[i] = l->v[l->n - 1 - i];
  return r;
}

FILTER(unique) {
  (void)n;
  bool ci = !ct_truthy(ARG(0, "case_sensitive", ct_bool(false)));
  ct_val attr = ARG(1, "attribute", ct_none());
  ct_list *l = ct_iterate(c, v);
  ct_val r = ct_list_new(c, l->n, false), seen = ct_list_new(c, l->n, false);
  size_t k = 0;
  for (size_t i = 0; i < l->n; i++) {
    ct_val key = attr.t == V_NONE ? l->v[i] : attr_path(c, l->v[i], attr);
    if (ci && key.t == V_STR) key = ct_case(c, key.u.s, 0);
    bool dup = false;
    for (size_t j = 0; j < k && !dup; j++)
      dup = ct_equal(c, seen.u.l->v[j], key);
    if (!dup) {
      seen.u.l->v[k] = key;
      r.u.l->v[k++] = l->v[i];
    }
  }
  r.u.l->n = k;
  return r;
}

/* map / select / reject / selectattr / rejectattr share the "filter or test by name" call */
static ct_val apply_named(ct_ctx *c, const ct_node *n, bool is_test, ct_str name, ct_val v,
                          ct_val *args, size_t nargs, bool *ok) {
  if (is_test) {
    ct_test_fn t = ct_find_test(name.p, name.n);
    if (!t) ct_fail(c, IC_EINVAL, "No test named '%.*s'.", (int)name.n, name.p);
    *ok = t(c, n, v, args, nargs);
    return v;
  }
  ct_filter_fn f = ct_find_filter(name.p, name.n);
  if (!f) ct_fail(c, IC_EINVAL, "No filter named '%.*s'.", (int)name.n, name.p);
  return f(c, n, v, args, nargs, NULL, NULL, 0);
}

FILTER(map) {
  ct_list *l = ct_iterate(c, v);
  ct_val r = ct_list_new(c, l->n, false);
  ct_val attr = kwarg(NULL, 0, 0, kwn, kwv, nkw, "attribute", ct_none());
  if (attr.t != V_NONE) {
    ct_val dflt = kwarg(NULL, 0, 0, kwn, kwv, nkw, "default", ct_undef(NULL));
    for (size_t i = 0; i < l->n; i++) {
      ct_val x = attr_path(c, l->v[i], attr);
      r.u.l->v[i] = x.t == V_UNDEF && dflt.t != V_UNDEF ? dflt : x;
    }
    return r;
  }
  if (!nargs || args[0].t != V_STR) ct_fail(c, IC_EINVAL, "map needs a filter name or attribute=");
  for (size_t i = 0; i < l->n; i++) {
    bool ok;
    r.u.l->v[i] = apply_named(c, n, false, args[0].u.s, l->v[i], args + 1, nargs - 1, &ok);
  }
  return r;
}

static ct_val select_impl(ct_ctx *c, const ct_node *n, ct_val v, ct_val *args, size_t nargs,
                          bool by_attr, bool keep_if) {
  ct_list *l = ct_iterate(c, v);
  ct_val r = ct_list_new(c, l->n, false);
  size_t k = 0, first = by_attr ? 1 : 0;
  if (by_attr && (!nargs || args[0].t != V_STR)) ct_fail(c, IC_EINVAL, "missing attribute name");
  for (size_t i = 0; i < l->n; i++) {
    ct_val x = by_attr ? attr_path(c, l->v[i], args[0]) : l->v[i];
    bool ok;
    if (nargs > first) {
      if (args[first].t != V_STR) ct_fail(c, IC_EINVAL, "test name must be a string");
      apply_named(c, n, true, args[first].u.s, x, args + first + 1, nargs - first - 1, &ok);
    } else {
      ok = ct_truthy(x);
    }
    if (ok == keep_if) r.u.l->v[k++] = l->v[i];
  }
  r.u.l->n = k;
  return r;
}

FILTER(select) {
  (void)kwn, (void)kwv, (void)nkw;
  return select_impl(c, n, v, args, nargs, false, true);
}
FILTER(reject) {
  (void)kwn, (void)kwv, (void)nkw;
  return select_impl(c, n, v, args, nargs, false, false);
}
FILTER(selectattr) {
  (void)kwn, (void)kwv, (void)nkw;
  return select_impl(c, n, v, args, nargs, true, true);
}
FILTER(rejectattr) {
  (void)kwn, (void)kwv, (void)nkw;
  return select_impl(c, n, v, args, nargs, true, false);
}

FILTER(sum) {
  (void)n;
  ct_val attr = ARG(0, "attribute", ct_none());
  ct_val acc = ARG(1, "start", ct_int(0));
  ct_list *l = ct_iterate(c, v);
  for (size_t i = 0; i < l->n; i++)
    acc = ct_binop(c, OP_ADD, acc, attr.t == V_NONE ? l->v[i] : attr_path(c, l->v[i], attr));
  return acc;
}

static ct_val minmax(ct_ctx *c, ct_val v, ct_val *args, size_t nargs, const ct_str *kwn,
                     ct_val *kwv, size_t nkw, int sign) {
  bool ci = !ct_truthy(ARG(0, "case_sensitive", ct_bool(false)));
  ct_val attr = ARG(1, "attribute", ct_none());
  ct_list *l = ct_iterate(c, v);
  if (!l->n) return ct_undef(NULL);
  sort_ctx s = {c, ci, false, attr};
  ct_val best = l->v[0];
  for (size_t i = 1; i < l->n; i++)
    if (sort_cmp(&l->v[i], &best, &s) * sign > 0) best = l->v[i];
  return best;
}
FILTER(min) {
  (void)n;
  return minmax(c, v, args, nargs, kwn, kwv, nkw, -1);
}
FILTER(max) {
  (void)n;
  return minmax(c, v, args, nargs, kwn, kwv, nkw, 1);
}

FILTER(indent) {
  (void)n;
  ct_val width = ARG(0, "width", ct_int(4));
  bool first = ct_truthy(ARG(1, "first", ct_bool(false)));
  bool blank = ct_truthy(ARG(2, "blank", ct_bool(false)));
  ct_str ind;
  if (width.t == V_STR) {
    ind = width.u.s;
  } else {
    int64_t w = width.t == V_INT ? width.u.i : 4;
    if (w < 0) w = 0;
    if (w > 1024) ct_fail(c, IC_ERANGE, "indent width %lld too large", (long long)w);
    char *p = ct_alloc(c, (size_t)w + 1);
    memset(p, ' ', (size_t)w);
    ind = (ct_str){p, (size_t)w};
  }
  ct_str s = as_str(c, v);
  /* jinja appends a newline, splits lines, and indents every non-empty line but the first */
  ct_sb b = {0};
  if (first) ct_sb_put(c, &b, ind.p, ind.n);
  size_t i = 0;
  bool first_line = true;
  while (i < s.n) {
    size_t j = i;
    while (j < s.n && s.p[j] != '\n' && s.p[j] != '\r')
      j++;
    if (!first_line) {
      ct_sb_putc(c, &b, '\n');
      if (blank || j > i) ct_sb_put(c, &b, ind.p, ind.n);
    }
    ct_sb_put(c, &b, s.p + i, j - i);
    first_line = false;
    if (j < s.n && s.p[j] == '\r' && j + 1 < s.n && s.p[j + 1] == '\n') j++;
    i = j + 1;
  }
  return str_of(&b);
}

FILTER(safe) {
  UNUSED_FILTER_ARGS;
  (void)c;
  return v;
}

FILTER(escape) {
  UNUSED_FILTER_ARGS;
  ct_str s = as_str(c, v);
  ct_sb b = {0};
  for (size_t i = 0; i < s.n; i++) {
    switch (s.p[i]) {
    case '&': ct_sb_put(c, &b, "&amp;", 5); break;
    case '<': ct_sb_put(c, &b, "&lt;", 4); break;
    case '>': ct_sb_put(c, &b, "&gt;", 4); break;
    case '"': ct_sb_put(c, &b, "&#34;", 5); break;
    case '\'': ct_sb_put(c, &b, "&#39;", 5); break;
    default: ct_sb_putc(c, &b, s.p[i]);
    }
  }
  return str_of(&b);
}

FILTER(attr) {
  (void)n;
  ct_val name = ARG(0, "name", ct_undef(NULL));
  if (name.t != V_STR) ct_fail(c, IC_EINVAL, "attr needs a name");
  return ct_getattr(c, v, name.u.s);
}

FILTER(wordcount) {
  UNUSED_FILTER_ARGS;
  ct_str s = as_str(c, v);
  int64_t k = 0;
  bool in = false;
  for (size_t i = 0; i < s.n; i++) {
    unsigned char ch = (unsigned char)s.p[i];
    bool w = ch >= 0x80 || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
             (ch >= 'A' && ch <= 'Z') || ch == '_';
    if (w && !in) k++;
    in = w;
  }
  return ct_int(k);
}

FILTER(center) {
  (void)n;
  ct_str s = as_str(c, v);
  ct_val wv = ARG(0, "width", ct_int(80));
  if (wv.t != V_INT) ct_fail(c, IC_EINVAL, "center width must be an integer");
  int64_t w = wv.u.i;
  int64_t len = (int64_t)ct_u8_len(s.p, s.n);
  if (w > 1 << 20) ct_fail(c, IC_ERANGE, "center width too large");
  if (w <= len) return ct_strv(s.p, s.n);
  int64_t pad = w - len, left = pad / 2 + (pad & w & 1);
  ct_sb b = {0};
  for (int64_t i = 0; i < left; i++)
    ct_sb_putc(c, &b, ' ');
  ct_sb_put(c, &b, s.p, s.n);
  for (int64_t i = 0; i < pad - left; i++)
    ct_sb_putc(c, &b, ' ');
  return str_of(&b);
}

typedef struct filter_def {
  const char *name;
  ct_filter_fn fn;
} filter_def;

static const filter_def filters[] = {
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"length", f_length},
    {"count", f_length},
    {"default", f_default},
    {"d", f_default},
    {"join", f_join},
    {"first", f_first},
    {"last", f_last},
    {"list", f_list},
    {"string", f_string},
    {"upper", f_upper},
    {"lower", f_lower},
    {"capitalize", f_capitalize},
    {"title", f_title},
    {"replace", f_replace},
    {"int", f_int},
    {"float", f_float},
    {"abs", f_abs},
    {"round", f_round},
    {"items", f_items},
    {"dictsort", f_dictsort},
    {"sort", f_sort},
    {"reverse", f_reverse},
    {"unique", f_unique},
    {"map", f_map},
    {"select", f_select},
    {"reject", f_reject},
    {"selectattr", f_selectattr},
    {"rejectattr", f_rejectattr},
    {"sum", f_sum},
    {"min", f_min},
    {"max", f_max},
    {"indent", f_indent},
    {"safe", f_safe},
    {"escape", f_escape},
    {"e", f_escape},
    {"forceescape", f_escape},
    {"attr", f_attr},
    {"wordcount", f_wordcount},
    {"center", f_center},
};

ct_filter_fn ct_find_filter(const char *name, size_t n) {
  for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
    if (strlen(filters[i].name) == n && !memcmp(filters[i].name, name, n)) return filters[i].fn;
  return NULL;
}
