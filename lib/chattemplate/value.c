/* Values of lib/chattemplate: the arena, JSON input, and Python's str()/repr()/json.dumps()
 * renderings, equality and ordering, which the output must match byte for byte. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "internal.h"

struct ct_chunk {
  ct_chunk *next;
  size_t cap, used;
  max_align_t data[];
};

/* Reserves n bytes (16-aligned) at the top of the newest chunk, adding a chunk when needed. */
static void *arena_take(ct_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  ct_chunk *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    if (a->limit && a->total + cap + sizeof *c > a->limit) return NULL;
    c = malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->cap = cap;
    c->used = 0;
    c->next = a->head;
    a->head = c;
    a->total += cap + sizeof *c;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  return p;
}

void *ct_arena_alloc(ct_arena *a, size_t n) {
  void *p = arena_take(a, n);
  a->bytes_end = NULL;
  if (p) memset(p, 0, n);
  return p;
}

void *ct_arena_bytes(ct_arena *a, size_t n) {
  char *p = arena_take(a, n);
  a->bytes_end = p ? p + n : NULL;
  return p;
}

bool ct_arena_extend(ct_arena *a, const char *end, size_t add) {
  ct_chunk *c = a->head;
  if (!end || end != a->bytes_end || !c) return false;
  size_t off = (size_t)(end - (const char *)c->data);
  if (add > c->cap - off) return false;
  size_t used = (off + add + 15) & ~(size_t)15;
  if (used > c->cap) used = c->cap;
  if (used > c->used) c->used = used;
  a->bytes_end += add;
  return true;
}

void ct_arena_free(ct_arena *a) {
  for (ct_chunk *c = a->head, *nx; c; c = nx) {
    nx = c->next;
    free(c);
  }
  a->head = NULL;
  a->total = 0;
  a->bytes_end = NULL;
}

void *ct_alloc(ct_ctx *c, size_t n) {
  void *p = ct_arena_alloc(&c->arena, n);
  if (!p) ct_fail(c, IC_ERANGE, "template exceeded its memory limit (%zu bytes)", c->arena.limit);
  return p;
}

char *ct_alloc_bytes(ct_ctx *c, size_t n) {
  char *p = ct_arena_bytes(&c->arena, n);
  if (!p) ct_fail(c, IC_ERANGE, "template exceeded its memory limit (%zu bytes)", c->arena.limit);
  return p;
}

ct_val ct_undef(const ct_str *hint) { return (ct_val){.t = V_UNDEF, .hint = hint}; }
ct_val ct_none(void) { return (ct_val){.t = V_NONE}; }
ct_val ct_bool(bool b) { return (ct_val){.t = V_BOOL, .u.b = b}; }
ct_val ct_int(int64_t i) { return (ct_val){.t = V_INT, .u.i = i}; }
ct_val ct_float(double f) { return (ct_val){.t = V_FLOAT, .u.f = f}; }
ct_val ct_strv(const char *p, size_t n) { return (ct_val){.t = V_STR, .u.s = {p, n}}; }

ct_val ct_str_copy(ct_ctx *c, const char *p, size_t n) {
  char *d = ct_alloc_bytes(c, n);
  if (n) memcpy(d, p, n);
  return ct_strv(d, n);
}

/* Strings are immutable views, so `a + b` may reuse a's bytes: when a ends where the newest
 * byte buffer ends, b is copied after it and a chain like `x + long + y` copies `long` once. */
ct_val ct_str_concat(ct_ctx *c, ct_str a, ct_str b) {
  size_t n = a.n + b.n;
  ct_charge(c, n / 64);
  if (!b.n) return ct_strv(a.p, a.n);
  if (!a.n) return ct_strv(b.p, b.n);
  if (ct_arena_extend(&c->arena, a.p + a.n, b.n)) {
    memcpy((char *)a.p + a.n, b.p, b.n);
    return ct_strv(a.p, n);
  }
  char *p = ct_alloc_bytes(c, n);
  memcpy(p, a.p, a.n);
  memcpy(p + a.n, b.p, b.n);
  return ct_strv(p, n);
}

ct_val ct_list_new(ct_ctx *c, size_t n, bool tuple) {
  ct_list *l = ct_alloc(c, sizeof *l);
  if (n > ((size_t)1 << 40) / sizeof(ct_val)) ct_fail(c, IC_ERANGE, "list too large");
  l->v = n ? ct_alloc(c, n * sizeof(ct_val)) : NULL;
  l->n = n;
  ct_charge(c, n);
  return (ct_val){.t = V_LIST, .tuple = tuple, .u.l = l};
}

ct_dict *ct_dict_new(ct_ctx *c, size_t cap) {
  ct_dict *d = ct_alloc(c, sizeof *d);
  d->cap = cap ? cap : 4;
  d->e = ct_alloc(c, d->cap * sizeof *d->e);
  return d;
}

ct_val *ct_dict_get(ct_ctx *c, const ct_dict *d, ct_val k) {
  ct_charge(c, d->n / 8);
  for (size_t i = 0; i < d->n; i++)
    if (ct_equal(c, d->e[i].k, k)) return &d->e[i].v;
  return NULL;
}

ct_val *ct_dict_gets(ct_ctx *c, const ct_dict *d, const char *k, size_t n) {
  ct_charge(c, d->n / 8);
  for (size_t i = 0; i < d->n; i++)
    if (d->e[i].k.t == V_STR && d->e[i].k.u.s.n == n && !memcmp(d->e[i].k.u.s.p, k, n))
      return &d->e[i].v;
  return NULL;
}

void ct_dict_set(ct_ctx *c, ct_dict *d, ct_val k, ct_val v) {
  ct_val *slot = ct_dict_get(c, d, k);
  if (slot) {
    *slot = v;
    return;
  }
  if (d->n == d->cap) {
    ct_kv *e = ct_alloc(c, d->cap * 2 * sizeof *e);
    memcpy(e, d->e, d->n * sizeof *e);
    d->e = e;
    d->cap *= 2;
  }
  d->e[d->n].k = k;
  d->e[d->n].v = v;
  d->n++;
}

ct_val ct_from_json(ct_ctx *c, const json_t *j, int depth) {
  if (depth > 512) ct_fail(c, IC_ERANGE, "input nested deeper than 512 levels");
  ct_charge(c, 1);
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    ct_dict *d = ct_dict_new(c, json_object_size(j));
    const char *k;
    json_t *v;
    /* keys are unique in a JSON object as jansson holds it: append without lookups */
    json_object_foreach((json_t *)j, k, v) {
      d->e[d->n].k = ct_strv(k, strlen(k));
      d->e[d->n].v = ct_from_json(c, v, depth + 1);
      d->n++;
    }
    return (ct_val){.t = V_DICT, .u.d = d};
  }
  case JSON_ARRAY: {
    ct_val l = ct_list_new(c, json_array_size(j), false);
    for (size_t i = 0; i < l.u.l->n; i++)
      l.u.l->v[i] = ct_from_json(c, json_array_get(j, i), depth + 1);
    return l;
  }
  case JSON_STRING: return ct_strv(json_string_value(j), json_string_length(j));
  case JSON_INTEGER: return ct_int((int64_t)json_integer_value(j));
  case JSON_REAL: return ct_float(json_real_value(j));
  case JSON_TRUE: return ct_bool(true);
  case JSON_FALSE: return ct_bool(false);
  default: return ct_none();
  }
}

bool ct_truthy(ct_val v) {
  switch (v.t) {
  case V_UNDEF:
  case V_NONE: return false;
  case V_BOOL: return v.u.b;
  case V_INT: return v.u.i != 0;
  case V_FLOAT: return v.u.f != 0.0;
  case V_STR: return v.u.s.n != 0;
  case V_LIST: return v.u.l->n != 0;
  case V_DICT: return v.u.d->n != 0;
  default: return true;
  }
}

const char *ct_typename(ct_val v) {
  switch (v.t) {
  case V_UNDEF: return "Undefined";
  case V_NONE: return "NoneType";
  case V_BOOL: return "bool";
  case V_INT: return "int";
  case V_FLOAT: return "float";
  case V_STR: return "str";
  case V_LIST: return v.tuple ? "tuple" : "list";
  case V_DICT: return "dict";
  case V_NS: return "Namespace";
  case V_MACRO: return "Macro";
  case V_LOOP: return "LoopContext";
  default: return "builtin_function_or_method";
  }
}

static bool numeric(ct_val v) { return v.t == V_BOOL || v.t == V_INT || v.t == V_FLOAT; }
static double as_double(ct_val v) {
  return v.t == V_FLOAT ? v.u.f : v.t == V_INT ? (double)v.u.i : (double)v.u.b;
}
static int64_t as_int(ct_val v) { return v.t == V_INT ? v.u.i : (int64_t)v.u.b; }

static bool equal_nested(ct_ctx *c, ct_val a, ct_val b);

bool ct_equal(ct_ctx *c, ct_val a, ct_val b) {
  if ((a.t != V_LIST && a.t != V_DICT) || a.t != b.t) return equal_nested(c, a, b);
  /* containers built in a loop can nest arbitrarily deep: bound the recursion */
  if (++c->depth > c->max_depth * 8) ct_fail(c, IC_ERANGE, "values nested too deeply to compare");
  bool r = equal_nested(c, a, b);
  c->depth--;
  return r;
}

static bool equal_nested(ct_ctx *c, ct_val a, ct_val b) {
  if (numeric(a) && numeric(b)) {
    if (a.t == V_FLOAT || b.t == V_FLOAT) return as_double(a) == as_double(b);
    return as_int(a) == as_int(b);
  }
  if (a.t != b.t) return false;
  switch (a.t) {
  case V_UNDEF:
  case V_NONE: return true;
  case V_STR: return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
  case V_LIST:
    if (a.tuple != b.tuple || a.u.l->n != b.u.l->n) return false;
    ct_charge(c, a.u.l->n);
    for (size_t i = 0; i < a.u.l->n; i++)
      if (!ct_equal(c, a.u.l->v[i], b.u.l->v[i])) return false;
    return true;
  case V_DICT:
    if (a.u.d->n != b.u.d->n) return false;
    for (size_t i = 0; i < a.u.d->n; i++) {
      ct_val *o = ct_dict_get(c, b.u.d, a.u.d->e[i].k);
      if (!o || !ct_equal(c, a.u.d->e[i].v, *o)) return false;
    }
    return true;
  case V_NS: return a.u.d == b.u.d;
  case V_MACRO: return a.u.m == b.u.m;
  case V_LOOP: return a.u.loop == b.u.loop;
  default: return a.id == b.id;
  }
}

int ct_compare(ct_ctx *c, ct_val a, ct_val b) {
  if (numeric(a) && numeric(b)) {
    if (a.t == V_FLOAT || b.t == V_FLOAT) {
      double x = as_double(a), y = as_double(b);
      return x < y ? -1 : x > y ? 1 : 0; /* NaN compares as neither: Python's too */
    }
    int64_t x = as_int(a), y = as_int(b);
    return x < y ? -1 : x > y;
  }
  if (a.t == V_STR && b.t == V_STR) {
    size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
    int r = memcmp(a.u.s.p, b.u.s.p, n); /* UTF-8 byte order is code point order */
    return r ? r : (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
  }
  if (a.t == V_LIST && b.t == V_LIST && a.tuple == b.tuple) {
    if (++c->depth > c->max_depth * 8) ct_fail(c, IC_ERANGE, "values nested too deeply to compare");
    size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
    int r = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    for (size_t i = 0; i < n; i++) {
      if (ct_equal(c, a.u.l->v[i], b.u.l->v[i])) continue;
      r = ct_compare(c, a.u.l->v[i], b.u.l->v[i]);
      break;
    }
    c->depth--;
    return r;
  }
  if (a.t == V_UNDEF || b.t == V_UNDEF)
    ct_fail(c, IC_EINVAL, "'%.*s' is undefined",
            (int)(a.t == V_UNDEF && a.hint ? a.hint->n
                  : b.hint                 ? b.hint->n
                                           : 9),
            a.t == V_UNDEF && a.hint ? a.hint->p
            : b.hint                 ? b.hint->p
                                     : "undefined");
  ct_fail(c, IC_EINVAL, "'<' not supported between instances of '%s' and '%s'", ct_typename(a),
          ct_typename(b));
}

/* ---- string builder */

void ct_sb_put(ct_ctx *c, ct_sb *b, const char *p, size_t n) {
  if (!n) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->n + n)
      cap *= 2;
    if (b->p && ct_arena_extend(&c->arena, b->p + b->cap, cap - b->cap)) {
      b->cap = cap; /* the buffer is the newest allocation: grown where it is */
    } else {
      char *np = ct_alloc_bytes(c, cap);
      if (b->n) memcpy(np, b->p, b->n);
      b->p = np;
      b->cap = cap;
    }
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  ct_charge(c, n / 64);
}

void ct_sb_putc(ct_ctx *c, ct_sb *b, char ch) { ct_sb_put(c, b, &ch, 1); }

/* Python's repr(float): the shortest digits that round-trip, fixed notation for exponents in
 * [-4, 16), scientific otherwise, always with a '.0' or exponent so it reads back as a float. */
static void write_float(ct_ctx *c, ct_sb *b, double f) {
  char buf[64];
  if (isnan(f)) {
    ct_sb_put(c, b, "nan", 3);
    return;
  }
  if (isinf(f)) {
    if (f < 0)
      ct_sb_put(c, b, "-inf", 4);
    else
      ct_sb_put(c, b, "inf", 3);
    return;
  }
  int prec;
  for (prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
    if (strtod(buf, NULL) == f) break;
  }
  /* buf = [-]d.ddde[+-]XX */
  char digits[32];
  size_t nd = 0;
  const char *p = buf;
  bool neg = *p == '-';
  if (neg) p++;
  for (; *p && *p != 'e'; p++)
    if (*p != '.') digits[nd++] = *p;
  int exp = atoi(p + 1);
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  char out[64];
  size_t k = 0;
  if (neg) out[k++] = '-';
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out[k++] = '0';
      out[k++] = '.';
      for (int z = 0; z < -exp - 1; z++)
        out[k++] = '0';
      for (size_t i = 0; i < nd; i++)
        out[k++] = digits[i];
    } else {
      for (int i = 0; i <= exp; i++)
        out[k++] = (size_t)i < nd ? digits[i] : '0';
      out[k++] = '.';
      if ((size_t)exp + 1 < nd)
        for (size_t i = (size_t)exp + 1; i < nd; i++)
          out[k++] = digits[i];
      else
        out[k++] = '0';
    }
  } else {
    out[k++] = digits[0];
    if (nd > 1) {
      out[k++] = '.';
      for (size_t i = 1; i < nd; i++)
        out[k++] = digits[i];
    }
    k += (size_t)snprintf(out + k, sizeof out - k, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
  }
  ct_sb_put(c, b, out, k);
}

static void write_int(ct_ctx *c, ct_sb *b, int64_t i) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%lld", (long long)i);
  ct_sb_put(c, b, buf, (size_t)n);
}

/* Python's str.isprintable() for repr(): ASCII controls and the C1 range are escaped; other
 * code points print as themselves (exotic unprintables such as U+2028 are rare in chat data). */
static void write_str_repr(ct_ctx *c, ct_sb *b, ct_str s) {
  bool has_sq = memchr(s.p, '\'', s.n) != NULL, has_dq = memchr(s.p, '"', s.n) != NULL;
  char q = has_sq && !has_dq ? '"' : '\'';
  ct_sb_putc(c, b, q);
  for (size_t i = 0; i < s.n; i++) {
    unsigned char ch = (unsigned char)s.p[i];
    char esc[8];
    if (ch == (unsigned char)q || ch == '\\') {
      esc[0] = '\\';
      esc[1] = (char)ch;
      ct_sb_put(c, b, esc, 2);
    } else if (ch == '\n') {
      ct_sb_put(c, b, "\\n", 2);
    } else if (ch == '\r') {
      ct_sb_put(c, b, "\\r", 2);
    } else if (ch == '\t') {
      ct_sb_put(c, b, "\\t", 2);
    } else if (ch < 0x20 || ch == 0x7f) {
      snprintf(esc, sizeof esc, "\\x%02x", ch);
      ct_sb_put(c, b, esc, 4);
    } else if (ch == 0xc2 && i + 1 < s.n &&
               ((unsigned char)s.p[i + 1] <= 0xa0 || (unsigned char)s.p[i + 1] == 0xad)) {
      /* U+0080..U+00A0 and U+00AD are unprintable for Python: repr escapes them */
      snprintf(esc, sizeof esc, "\\x%02x", (unsigned char)s.p[i + 1]);
      ct_sb_put(c, b, esc, 4);
      i++;
    } else {
      ct_sb_putc(c, b, (char)ch);
    }
  }
  ct_sb_putc(c, b, q);
}

void ct_write_repr(ct_ctx *c, ct_sb *b, ct_val v) {
  ct_charge(c, 1);
  if (++c->depth > c->max_depth * 8) ct_fail(c, IC_ERANGE, "value nested too deeply to print");
  switch (v.t) {
  case V_STR: write_str_repr(c, b, v.u.s); break;
  case V_LIST:
    ct_sb_putc(c, b, v.tuple ? '(' : '[');
    for (size_t i = 0; i < v.u.l->n; i++) {
      if (i) ct_sb_put(c, b, ", ", 2);
      ct_write_repr(c, b, v.u.l->v[i]);
    }
    if (v.tuple && v.u.l->n == 1) ct_sb_putc(c, b, ',');
    ct_sb_putc(c, b, v.tuple ? ')' : ']');
    break;
  case V_DICT:
  case V_NS:
    if (v.t == V_NS) ct_sb_put(c, b, "<Namespace ", 11);
    ct_sb_putc(c, b, '{');
    for (size_t i = 0; i < v.u.d->n; i++) {
      if (i) ct_sb_put(c, b, ", ", 2);
      ct_write_repr(c, b, v.u.d->e[i].k);
      ct_sb_put(c, b, ": ", 2);
      ct_write_repr(c, b, v.u.d->e[i].v);
    }
    ct_sb_putc(c, b, '}');
    if (v.t == V_NS) ct_sb_putc(c, b, '>');
    break;
  default: ct_write_str(c, b, v); break;
  }
  c->depth--;
}

void ct_write_str(ct_ctx *c, ct_sb *b, ct_val v) {
  switch (v.t) {
  case V_UNDEF: break;
  case V_NONE: ct_sb_put(c, b, "None", 4); break;
  case V_BOOL: v.u.b ? ct_sb_put(c, b, "True", 4) : ct_sb_put(c, b, "False", 5); break;
  case V_INT: write_int(c, b, v.u.i); break;
  case V_FLOAT: write_float(c, b, v.u.f); break;
  case V_STR: ct_sb_put(c, b, v.u.s.p, v.u.s.n); break;
  case V_LIST:
  case V_DICT:
  case V_NS: ct_write_repr(c, b, v); break;
  case V_MACRO: ct_sb_put(c, b, "<Macro>", 7); break;
  case V_LOOP: ct_sb_put(c, b, "<LoopContext>", 13); break;
  default: ct_fail(c, IC_EINVAL, "unsupported: printing a builtin function or method");
  }
}

ct_val ct_to_str(ct_ctx *c, ct_val v) {
  if (v.t == V_STR) return v;
  ct_sb b = {0};
  ct_write_str(c, &b, v);
  return ct_strv(b.p ? b.p : "", b.n);
}

/* ---- json.dumps(x, ensure_ascii=?, indent=?, separators=?, sort_keys=?) */

static void json_str(ct_ctx *c, ct_sb *b, ct_str s, bool ascii) {
  ct_sb_putc(c, b, '"');
  size_t run = 0;
  for (size_t i = 0; i < s.n; i++) {
    unsigned char ch = (unsigned char)s.p[i];
    const char *e = NULL;
    char esc[16];
    switch (ch) {
    case '"': e = "\\\""; break;
    case '\\': e = "\\\\"; break;
    case '\n': e = "\\n"; break;
    case '\r': e = "\\r"; break;
    case '\t': e = "\\t"; break;
    case '\b': e = "\\b"; break;
    case '\f': e = "\\f"; break;
    default:
      if (ch < 0x20 || (ascii && ch == 0x7f)) {
        snprintf(esc, sizeof esc, "\\u%04x", ch);
        e = esc;
      } else if (ascii && ch >= 0x80) {
        uint32_t cp = 0;
        size_t len = (ch & 0xe0) == 0xc0   ? 2
                     : (ch & 0xf0) == 0xe0 ? 3
                     : (ch & 0xf8) == 0xf0 ? 4
                                           : 1;
        if (i + len > s.n) len = 1;
        cp = len == 1 ? ch : ch & (0xff >> (len + 1));
        for (size_t k = 1; k < len; k++)
          cp = (cp << 6) | ((unsigned char)s.p[i + k] & 0x3f);
        if (cp >= 0x10000) {
          cp -= 0x10000;
          snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
        } else {
          snprintf(esc, sizeof esc, "\\u%04x", cp);
        }
        ct_sb_put(c, b, s.p + run, i - run);
        ct_sb_put(c, b, esc, strlen(esc));
        i += len - 1;
        run = i + 1;
        continue;
      }
    }
    if (e) {
      ct_sb_put(c, b, s.p + run, i - run);
      ct_sb_put(c, b, e, strlen(e));
      run = i + 1;
    }
  }
  ct_sb_put(c, b, s.p + run, s.n - run);
  ct_sb_putc(c, b, '"');
}

static void json_newline(ct_ctx *c, ct_sb *b, int indent, int level) {
  ct_sb_putc(c, b, '\n');
  for (int i = 0; i < indent * level; i++)
    ct_sb_putc(c, b, ' ');
}

static int kv_cmp(const void *x, const void *y, void *c) {
  return ct_compare(c, ((const ct_kv *)x)->k, ((const ct_kv *)y)->k);
}

void ct_write_json(ct_ctx *c, ct_sb *b, ct_val v, int indent, int level, bool sort_keys, bool ascii,
                   ct_str item_sep, ct_str key_sep) {
  ct_charge(c, 1);
  if (level > (int)c->max_depth * 8) ct_fail(c, IC_ERANGE, "value nested too deeply for tojson");
  switch (v.t) {
  case V_NONE: ct_sb_put(c, b, "null", 4); break;
  case V_BOOL: v.u.b ? ct_sb_put(c, b, "true", 4) : ct_sb_put(c, b, "false", 5); break;
  case V_INT: write_int(c, b, v.u.i); break;
  case V_FLOAT:
    if (isnan(v.u.f))
      ct_sb_put(c, b, "NaN", 3);
    else if (isinf(v.u.f))
      v.u.f < 0 ? ct_sb_put(c, b, "-Infinity", 9) : ct_sb_put(c, b, "Infinity", 8);
    else
      write_float(c, b, v.u.f);
    break;
  case V_STR: json_str(c, b, v.u.s, ascii); break;
  case V_LIST:
    if (!v.u.l->n) {
      ct_sb_put(c, b, "[]", 2);
      break;
    }
    ct_sb_putc(c, b, '[');
    for (size_t i = 0; i < v.u.l->n; i++) {
      if (i) ct_sb_put(c, b, item_sep.p, item_sep.n);
      if (indent >= 0) json_newline(c, b, indent, level + 1);
      ct_write_json(c, b, v.u.l->v[i], indent, level + 1, sort_keys, ascii, item_sep, key_sep);
    }
    if (indent >= 0) json_newline(c, b, indent, level);
    ct_sb_putc(c, b, ']');
    break;
  case V_DICT: {
    if (!v.u.d->n) {
      ct_sb_put(c, b, "{}", 2);
      break;
    }
    const ct_kv *e = v.u.d->e;
    if (sort_keys) {
      ct_kv *s = ct_alloc(c, v.u.d->n * sizeof *s);
      memcpy(s, e, v.u.d->n * sizeof *s);
      qsort_r(s, v.u.d->n, sizeof *s, kv_cmp, c);
      e = s;
    }
    ct_sb_putc(c, b, '{');
    for (size_t i = 0; i < v.u.d->n; i++) {
      if (i) ct_sb_put(c, b, item_sep.p, item_sep.n);
      if (indent >= 0) json_newline(c, b, indent, level + 1);
      ct_val k = e[i].k;
      if (k.t == V_STR) {
        json_str(c, b, k.u.s, ascii);
      } else if (k.t == V_INT || k.t == V_FLOAT || k.t == V_BOOL || k.t == V_NONE) {
        ct_sb_putc(c, b, '"');
        ct_write_json(c, b, k, -1, level, false, ascii, item_sep, key_sep);
        ct_sb_putc(c, b, '"');
      } else {
        ct_fail(c, IC_EINVAL, "keys must be str, int, float, bool or None, not %s", ct_typename(k));
      }
      ct_sb_put(c, b, key_sep.p, key_sep.n);
      ct_write_json(c, b, e[i].v, indent, level + 1, sort_keys, ascii, item_sep, key_sep);
    }
    if (indent >= 0) json_newline(c, b, indent, level);
    ct_sb_putc(c, b, '}');
    break;
  }
  default: ct_fail(c, IC_EINVAL, "Object of type %s is not JSON serializable", ct_typename(v));
  }
}

/* ---- UTF-8 */

size_t ct_u8_len(const char *p, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)p[i] & 0xc0) != 0x80) k++;
  return k;
}

size_t ct_u8_offset(const char *p, size_t n, size_t cp) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (((unsigned char)p[i] & 0xc0) != 0x80) {
      if (k == cp) return i;
      k++;
    }
  }
  return n;
}
