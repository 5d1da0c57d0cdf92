/* Object protocol of lib/chattemplate: attribute and item access, operators, membership,
 * iteration, and the str/dict/list methods chat templates call, with Python's semantics. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

#include "ic/err.h"
#include "ic/utf8.h"
#include "internal.h"

_Noreturn static void fail_undef(ct_ctx *c, ct_val v) {
  if (v.hint)
    ct_fail(c, IC_EINVAL, "'%.*s' is undefined", (int)(v.hint->n > 80 ? 80 : v.hint->n), v.hint->p);
  ct_fail(c, IC_EINVAL, "undefined value used");
}

/* ---- methods: ids are indexes into this table */
enum {
  M_STRIP,
  M_LSTRIP,
  M_RSTRIP,
  M_SPLIT,
  M_RSPLIT,
  M_SPLITLINES,
  M_STARTSWITH,
  M_ENDSWITH,
  M_UPPER,
  M_LOWER,
  M_TITLE,
  M_CAPITALIZE,
  M_REPLACE,
  M_FIND,
  M_RFIND,
  M_COUNT,
  M_JOIN,
  M_ISDIGIT,
  M_ISALPHA,
  M_ISSPACE,
  M_ISUPPER,
  M_ISLOWER,
  M_FORMAT,
  M_ITEMS,
  M_KEYS,
  M_VALUES,
  M_GET,
  M_COPY,
  M_LIST_INDEX,
  M_LIST_COUNT,
  M_CYCLE,
  M_UNSAFE, /* mutators the immutable sandbox refuses */
  M_COUNT_
};

typedef struct method_def {
  const char *name;
  uint8_t recv; /* V_STR / V_DICT / V_LIST / V_LOOP */
  uint16_t id;
} method_def;

static const method_def methods[] = {
    {"strip", V_STR, M_STRIP},
    {"lstrip", V_STR, M_LSTRIP},
    {"rstrip", V_STR, M_RSTRIP},
    {"split", V_STR, M_SPLIT},
    {"rsplit", V_STR, M_RSPLIT},
    {"splitlines", V_STR, M_SPLITLINES},
    {"startswith", V_STR, M_STARTSWITH},
    {"endswith", V_STR, M_ENDSWITH},
    {"upper", V_STR, M_UPPER},
    {"lower", V_STR, M_LOWER},
    {"title", V_STR, M_TITLE},
    {"capitalize", V_STR, M_CAPITALIZE},
    {"replace", V_STR, M_REPLACE},
    {"find", V_STR, M_FIND},
    {"rfind", V_STR, M_RFIND},
    {"count", V_STR, M_COUNT},
    {"join", V_STR, M_JOIN},
    {"isdigit", V_STR, M_ISDIGIT},
    {"isalpha", V_STR, M_ISALPHA},
    {"isspace", V_STR, M_ISSPACE},
    {"isupper", V_STR, M_ISUPPER},
    {"islower", V_STR, M_ISLOWER},
    {"format", V_STR, M_FORMAT},
    {"items", V_DICT, M_ITEMS},
    {"keys", V_DICT, M_KEYS},
    {"values", V_DICT, M_VALUES},
    {"get", V_DICT, M_GET},
    {"copy", V_DICT, M_COPY},
    {"pop", V_DICT, M_UNSAFE},
    {"update", V_DICT, M_UNSAFE},
    {"setdefault", V_DICT, M_UNSAFE},
    {"clear", V_DICT, M_UNSAFE},
    {"popitem", V_DICT, M_UNSAFE},
    {"index", V_LIST, M_LIST_INDEX},
    {"count", V_LIST, M_LIST_COUNT},
    {"append", V_LIST, M_UNSAFE},
    {"extend", V_LIST, M_UNSAFE},
    {"insert", V_LIST, M_UNSAFE},
    {"pop", V_LIST, M_UNSAFE},
    {"remove", V_LIST, M_UNSAFE},
    {"reverse", V_LIST, M_UNSAFE},
    {"sort", V_LIST, M_UNSAFE},
    {"clear", V_LIST, M_UNSAFE},
    {"cycle", V_LOOP, M_CYCLE},
};

typedef struct bound {
  ct_val recv;
  ct_str name;
} bound;

bool ct_method(ct_ctx *c, ct_val recv, ct_str name, ct_val *out) {
  for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
    const method_def *m = &methods[i];
    if (m->recv != recv.t || strlen(m->name) != name.n || memcmp(m->name, name.p, name.n)) continue;
    bound *b = ct_alloc(c, sizeof *b);
    b->recv = recv;
    b->name = name;
    *out = (ct_val){.t = V_METHOD, .id = m->id, .u.recv = (ct_val *)b};
    return true;
  }
  return false;
}

static ct_val loop_attr(ct_ctx *c, const ct_loop *l, ct_str name) {
#define IS(w) (name.n == sizeof(w) - 1 && !memcmp(name.p, w, name.n))
  int64_t i0 = (int64_t)l->index0, n = (int64_t)l->length;
  if (IS("index")) return ct_int(i0 + 1);
  if (IS("index0")) return ct_int(i0);
  if (IS("revindex")) return ct_int(n - i0);
  if (IS("revindex0")) return ct_int(n - i0 - 1);
  if (IS("first")) return ct_bool(i0 == 0);
  if (IS("last")) return ct_bool(i0 == n - 1);
  if (IS("length")) return ct_int(n);
  if (IS("depth")) return ct_int(l->depth);
  if (IS("depth0")) return ct_int(l->depth - 1);
  if (IS("previtem")) return i0 > 0 ? l->items->v[i0 - 1] : ct_undef(NULL);
  if (IS("nextitem")) return i0 + 1 < n ? l->items->v[i0 + 1] : ct_undef(NULL);
#undef IS
  ct_val m;
  if (ct_method(c, (ct_val){.t = V_LOOP, .u.loop = (ct_loop *)l}, name, &m)) return m;
  return ct_undef(NULL);
}

ct_val ct_getattr(ct_ctx *c, ct_val obj, ct_str name) {
  ct_val m;
  ct_str *hint;
  switch (obj.t) {
  case V_UNDEF: fail_undef(c, obj);
  case V_DICT:
    if (ct_method(c, obj, name, &m)) return m;
    /* fallthrough */
  case V_NS: {
    ct_val *v = ct_dict_gets(c, obj.u.d, name.p, name.n);
    if (v) return *v;
    break;
  }
  case V_STR:
  case V_LIST:
    if (ct_method(c, obj, name, &m)) return m;
    break;
  case V_LOOP: return loop_attr(c, obj.u.loop, name);
  default: break;
  }
  hint = ct_alloc(c, sizeof *hint);
  *hint = name;
  return ct_undef(hint);
}

ct_val ct_getitem(ct_ctx *c, ct_val obj, ct_val key) {
  if (obj.t == V_UNDEF) fail_undef(c, obj);
  if (obj.t == V_DICT) {
    ct_val *v = ct_dict_get(c, obj.u.d, key);
    if (v) return *v;
  } else if ((obj.t == V_LIST || obj.t == V_STR) && (key.t == V_INT || key.t == V_BOOL)) {
    int64_t i = key.t == V_INT ? key.u.i : key.u.b;
    if (obj.t == V_LIST) {
      int64_t n = (int64_t)obj.u.l->n;
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.u.l->v[i];
    } else {
      int64_t n = (int64_t)ct_u8_len(obj.u.s.p, obj.u.s.n);
      if (i < 0) i += n;
      if (i >= 0 && i < n) {
        size_t a = ct_u8_offset(obj.u.s.p, obj.u.s.n, (size_t)i);
        size_t b = ct_u8_offset(obj.u.s.p, obj.u.s.n, (size_t)i + 1);
        return ct_strv(obj.u.s.p + a, b - a);
      }
    }
    return ct_undef(NULL);
  }
  if (key.t == V_STR) return ct_getattr(c, obj, key.u.s);
  return ct_undef(NULL);
}

/* ---- operators */

static bool num(ct_val v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double dbl(ct_val v) {
  return v.t == V_FLOAT ? v.u.f : v.t == V_INT ? (double)v.u.i : v.u.b;
}
static int64_t i64(ct_val v) { return v.t == V_INT ? v.u.i : v.u.b; }

static const char *opname(int op) {
  static const char *n[] = {"+", "-", "*", "/", "//", "%", "**"};
  return n[op];
}

static ct_val repeat(ct_ctx *c, ct_val seq, int64_t times) {
  if (times < 0) times = 0;
  if (seq.t == V_STR) {
    if (seq.u.s.n && (uint64_t)times > c->arena.limit / seq.u.s.n)
      ct_fail(c, IC_ERANGE, "template exceeded its memory limit (%zu bytes)", c->arena.limit);
    size_t n = seq.u.s.n * (size_t)times;
    char *p = ct_alloc(c, n + 1);
    for (int64_t i = 0; i < times; i++)
      memcpy(p + (size_t)i * seq.u.s.n, seq.u.s.p, seq.u.s.n);
    ct_charge(c, n / 64);
    return ct_strv(p, n);
  }
  size_t k = seq.u.l->n;
  if (k && (uint64_t)times > c->arena.limit / (k * sizeof(ct_val)))
    ct_fail(c, IC_ERANGE, "template exceeded its memory limit (%zu bytes)", c->arena.limit);
  ct_val r = ct_list_new(c, k * (size_t)times, seq.tuple);
  for (int64_t i = 0; i < times; i++)
    memcpy(r.u.l->v + (size_t)i * k, seq.u.l->v, k * sizeof(ct_val));
  return r;
}

ct_val ct_binop(ct_ctx *c, int op, ct_val a, ct_val b) {
  if (a.t == V_UNDEF) fail_undef(c, a);
  if (b.t == V_UNDEF) fail_undef(c, b);
  if (num(a) && num(b)) {
    bool fl = a.t == V_FLOAT || b.t == V_FLOAT || op == OP_DIV;
    if (op == OP_POW && !fl && i64(b) < 0) fl = true;
    if (fl) {
      double x = dbl(a), y = dbl(b), r;
      switch (op) {
      case OP_ADD: r = x + y; break;
      case OP_SUB: r = x - y; break;
      case OP_MUL: r = x * y; break;
      case OP_DIV:
        if (y == 0) ct_fail(c, IC_EINVAL, "division by zero");
        r = x / y;
        break;
      case OP_FLOORDIV:
        if (y == 0) ct_fail(c, IC_EINVAL, "float floor division by zero");
        r = floor(x / y);
        break;
      case OP_MOD:
        if (y == 0) ct_fail(c, IC_EINVAL, "float modulo");
        r = fmod(x, y);
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        break;
      default:
        if (x == 0 && y < 0) ct_fail(c, IC_EINVAL, "0.0 cannot be raised to a negative power");
        r = pow(x, y);
        if (isinf(r) && !isinf(x)) ct_fail(c, IC_ERANGE, "numerical result out of range");
      }
      return ct_float(r);
    }
    int64_t x = i64(a), y = i64(b), r;
    bool ovf = false;
    switch (op) {
    case OP_ADD: ovf = __builtin_add_overflow(x, y, &r); break;
    case OP_SUB: ovf = __builtin_sub_overflow(x, y, &r); break;
    case OP_MUL: ovf = __builtin_mul_overflow(x, y, &r); break;
    case OP_FLOORDIV:
    case OP_MOD:
      if (y == 0) ct_fail(c, IC_EINVAL, "integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) ct_fail(c, IC_ERANGE, "integer overflow");
      r = op == OP_FLOORDIV ? x / y : x % y;
      if (op == OP_FLOORDIV && (x % y) && ((x < 0) != (y < 0))) r--;
      if (op == OP_MOD && r && ((r < 0) != (y < 0))) r += y;
      break;
    default:
      r = 1;
      for (int64_t e = y, base = x; e > 0 && !ovf; e >>= 1) {
        if (e & 1) ovf = __builtin_mul_overflow(r, base, &r);
        if (e > 1 && !ovf) ovf = __builtin_mul_overflow(base, base, &base);
        ct_charge(c, 1);
      }
    }
    if (ovf) ct_fail(c, IC_ERANGE, "integer overflow (beyond 64 bits)");
    return ct_int(r);
  }
  if (op == OP_ADD && a.t == V_STR && b.t == V_STR) return ct_str_concat(c, a.u.s, b.u.s);
  if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST && a.tuple == b.tuple) {
    ct_val r = ct_list_new(c, a.u.l->n + b.u.l->n, a.tuple);
    if (a.u.l->n) memcpy(r.u.l->v, a.u.l->v, a.u.l->n * sizeof(ct_val));
    if (b.u.l->n) memcpy(r.u.l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(ct_val));
    return r;
  }
  if (op == OP_MUL && (a.t == V_STR || a.t == V_LIST) && (b.t == V_INT || b.t == V_BOOL))
    return repeat(c, a, i64(b));
  if (op == OP_MUL && (b.t == V_STR || b.t == V_LIST) && (a.t == V_INT || a.t == V_BOOL))
    return repeat(c, b, i64(a));
  if (op == OP_MOD && a.t == V_STR)
    ct_fail(c, IC_EINVAL, "unsupported: printf-style '%%' string formatting");
  if (op == OP_ADD && a.t == V_STR)
    ct_fail(c, IC_EINVAL, "can only concatenate str (not \"%s\") to str", ct_typename(b));
  if (op == OP_ADD && a.t == V_LIST)
    ct_fail(c, IC_EINVAL, "can only concatenate %s (not \"%s\") to %s", ct_typename(a),
            ct_typename(b), ct_typename(a));
  ct_fail(c, IC_EINVAL, "unsupported operand type(s) for %s: '%s' and '%s'", opname(op),
          ct_typename(a), ct_typename(b));
}

bool ct_contains(ct_ctx *c, ct_val container, ct_val item) {
  switch (container.t) {
  case V_STR:
    if (item.t == V_UNDEF) fail_undef(c, item);
    if (item.t != V_STR)
      ct_fail(c, IC_EINVAL, "'in <string>' requires string as left operand, not %s",
              ct_typename(item));
    ct_charge(c, container.u.s.n / 32);
    return item.u.s.n == 0 || memmem(container.u.s.p, container.u.s.n, item.u.s.p, item.u.s.n);
  case V_LIST:
    for (size_t i = 0; i < container.u.l->n; i++)
      if (ct_equal(c, container.u.l->v[i], item)) return true;
    return false;
  case V_DICT: return ct_dict_get(c, container.u.d, item) != NULL;
  case V_UNDEF: return false;
  default: ct_fail(c, IC_EINVAL, "argument of type '%s' is not iterable", ct_typename(container));
  }
}

ct_list *ct_iterate(ct_ctx *c, ct_val v) {
  static ct_list empty = {0, NULL};
  switch (v.t) {
  case V_LIST: return v.u.l;
  case V_UNDEF: return &empty;
  case V_DICT: {
    ct_val l = ct_list_new(c, v.u.d->n, false);
    for (size_t i = 0; i < v.u.d->n; i++)
      l.u.l->v[i] = v.u.d->e[i].k;
    return l.u.l;
  }
  case V_STR: {
    ct_val l = ct_list_new(c, ct_u8_len(v.u.s.p, v.u.s.n), false);
    size_t k = 0;
    for (size_t i = 0; i < v.u.s.n;) {
      size_t j = i + 1;
      while (j < v.u.s.n && ((unsigned char)v.u.s.p[j] & 0xc0) == 0x80)
        j++;
      l.u.l->v[k++] = ct_strv(v.u.s.p + i, j - i);
      i = j;
    }
    return l.u.l;
  }
  case V_LOOP: return (ct_list *)v.u.loop->items;
  default: ct_fail(c, IC_EINVAL, "'%s' object is not iterable", ct_typename(v));
  }
}

/* ---- string helpers */

static uint32_t decode(const char *p, size_t n, size_t *adv) {
  utf8proc_int32_t cp;
  utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)n, &cp);
  if (k <= 0) {
    *adv = 1;
    return 0xfffd0000u | (unsigned char)p[0]; /* an invalid byte: matches only itself */
  }
  *adv = (size_t)k;
  return (uint32_t)cp;
}

static bool in_chars(ct_str chars, uint32_t cp) {
  for (size_t i = 0, adv; i < chars.n; i += adv)
    if (decode(chars.p + i, chars.n - i, &adv) == cp) return true;
  return false;
}

static bool strip_at(bool ws, ct_str chars, const char *p, size_t n, size_t *adv) {
  if (ws) return ct_u8_space_at(p, n, adv);
  return in_chars(chars, decode(p, n, adv));
}

/* str.strip/lstrip/rstrip. The ends are found from the ends: a long string with a short
 * whitespace tail costs what its tail costs. Walking back by code points is exact only on
 * well-formed UTF-8; anything else is walked forward the way it was decoded. */
ct_val ct_strip(ct_ctx *c, ct_str s, ct_val chars, bool left, bool right) {
  bool ws = chars.t == V_NONE || chars.t == V_UNDEF;
  if (!ws && chars.t != V_STR) ct_fail(c, IC_EINVAL, "strip arg must be None or str");
  ct_charge(c, s.n / 64);
  ct_str cs = ws ? (ct_str){"", 0} : chars.u.s;
  size_t start = 0, end = s.n, adv;
  if (left)
    while (start < s.n && strip_at(ws, cs, s.p + start, s.n - start, &adv))
      start += adv;
  if (right && start < s.n) {
    const unsigned char *u = (const unsigned char *)s.p;
    if (ic_utf8_valid(s.p + start, s.n - start)) {
      while (end > start) {
        size_t b = end - 1;
        while (b > start && (u[b] & 0xc0) == 0x80)
          b--;
        if (!strip_at(ws, cs, s.p + b, end - b, &adv)) break;
        end = b;
      }
    } else {
      end = start;
      for (size_t i = start; i < s.n; i += adv)
        if (!strip_at(ws, cs, s.p + i, s.n - i, &adv)) end = i + adv;
    }
  }
  return ct_strv(s.p + start, end - start);
}

ct_val ct_case(ct_ctx *c, ct_str s, int mode) {
  ct_sb b = {0};
  bool word_start = true;
  ct_charge(c, s.n / 16);
  for (size_t i = 0, adv; i < s.n; i += adv) {
    uint32_t cp = decode(s.p + i, s.n - i, &adv);
    if (cp >= 0xfffd0000u) {
      ct_sb_put(c, &b, s.p + i, adv);
      continue;
    }
    bool up;
    if (mode == 0)
      up = false;
    else if (mode == 1)
      up = true;
    else if (mode == 2)
      up = i == 0;
    else
      up = word_start;
    if (up && cp == 0xdf) { /* full case mapping: Python upper-cases ß to SS */
      ct_sb_put(c, &b, mode == 1 ? "SS" : "Ss", 2);
      word_start = false;
      continue;
    }
    utf8proc_int32_t m =
        up ? utf8proc_toupper((utf8proc_int32_t)cp) : utf8proc_tolower((utf8proc_int32_t)cp);
    if (mode == 3) {
      /* str.title(): a word starts after any uncased character */
      const utf8proc_property_t *pr = utf8proc_get_property((utf8proc_int32_t)cp);
      bool cased = pr->category == UTF8PROC_CATEGORY_LU || pr->category == UTF8PROC_CATEGORY_LL ||
                   pr->category == UTF8PROC_CATEGORY_LT;
      word_start = !cased;
    }
    utf8proc_uint8_t enc[4];
    utf8proc_ssize_t k = utf8proc_encode_char(m, enc);
    ct_sb_put(c, &b, (const char *)enc, (size_t)k);
  }
  return ct_strv(b.p ? b.p : "", b.n);
}

ct_val ct_replace(ct_ctx *c, ct_str s, ct_str old, ct_str neu, int64_t count) {
  ct_sb b = {0};
  ct_charge(c, s.n / 32);
  if (!old.n) {
    /* Python inserts `new` before every character and at the end */
    int64_t done = 0;
    for (size_t i = 0, adv; i <= s.n; i += adv) {
      if (count < 0 || done < count) {
        ct_sb_put(c, &b, neu.p, neu.n);
        done++;
      }
      if (i == s.n) break;
      decode(s.p + i, s.n - i, &adv);
      ct_sb_put(c, &b, s.p + i, adv);
    }
    return ct_strv(b.p ? b.p : "", b.n);
  }
  size_t i = 0;
  int64_t done = 0;
  while (i < s.n) {
    const char *hit = (count < 0 || done < count) ? memmem(s.p + i, s.n - i, old.p, old.n) : NULL;
    if (!hit) break;
    size_t at = (size_t)(hit - s.p);
    ct_sb_put(c, &b, s.p + i, at - i);
    ct_sb_put(c, &b, neu.p, neu.n);
    i = at + old.n;
    done++;
  }
  ct_sb_put(c, &b, s.p + i, s.n - i);
  return ct_strv(b.p ? b.p : "", b.n);
}

static ct_val split(ct_ctx *c, ct_str s, ct_val sepv, int64_t maxsplit, bool from_right) {
  size_t np = 0;
  ct_val out = ct_list_new(c, 0, false);
  size_t cap = 0;
  ct_val *items = NULL;
#define PUSH(v)                                                                                    \
  do {                                                                                             \
    if (np == cap) {                                                                               \
      size_t nc = cap ? cap * 2 : 8;                                                               \
      ct_val *ni = ct_alloc(c, nc * sizeof *ni);                                                   \
      if (np) memcpy(ni, items, np * sizeof *ni);                                                  \
      items = ni;                                                                                  \
      cap = nc;                                                                                    \
    }                                                                                              \
    items[np++] = (v);                                                                             \
  } while (0)
  ct_charge(c, s.n / 32);
  if (sepv.t == V_NONE || sepv.t == V_UNDEF) {
    /* runs of whitespace; leading/trailing whitespace yields no empty parts */
    size_t adv;
    if (!from_right) {
      size_t i = 0;
      while (i < s.n) {
        while (i < s.n && ct_u8_space_at(s.p + i, s.n - i, &adv))
          i += adv;
        if (i >= s.n) break;
        if (maxsplit >= 0 && (int64_t)np == maxsplit) {
          PUSH(ct_strv(s.p + i, s.n - i)); /* the rest keeps its trailing whitespace */
          break;
        }
        size_t j = i;
        while (j < s.n && !ct_u8_space_at(s.p + j, s.n - j, &adv))
          j += adv;
        PUSH(ct_strv(s.p + i, j - i));
        i = j;
      }
    } else {
      /* collect words left to right, then merge the leftmost ones past maxsplit */
      ct_val all = split(c, s, ct_none(), -1, false);
      size_t n = all.u.l->n;
      if (maxsplit < 0 || (size_t)maxsplit >= n) return all;
      size_t keep = (size_t)maxsplit;
      ct_val r = ct_list_new(c, keep + 1, false);
      ct_val lastw = all.u.l->v[n - keep - 1];
      /* the rest keeps its leading whitespace */
      r.u.l->v[0] = ct_strv(s.p, (size_t)(lastw.u.s.p + lastw.u.s.n - s.p));
      for (size_t k = 0; k < keep; k++)
        r.u.l->v[k + 1] = all.u.l->v[n - keep + k];
      return r;
    }
  } else {
    if (sepv.t != V_STR) ct_fail(c, IC_EINVAL, "must be str or None, not %s", ct_typename(sepv));
    ct_str sep = sepv.u.s;
    if (!sep.n) ct_fail(c, IC_EINVAL, "empty separator");
    if (!from_right) {
      size_t i = 0;
      for (;;) {
        const char *hit = (maxsplit < 0 || (int64_t)np < maxsplit)
                              ? memmem(s.p + i, s.n - i, sep.p, sep.n)
                              : NULL;
        if (!hit) {
          PUSH(ct_strv(s.p + i, s.n - i));
          break;
        }
        PUSH(ct_strv(s.p + i, (size_t)(hit - (s.p + i))));
        i = (size_t)(hit - s.p) + sep.n;
      }
    } else {
      size_t end = s.n;
      int64_t done = 0;
      while (maxsplit < 0 || done < maxsplit) {
        size_t at = SIZE_MAX;
        for (size_t q = end; q >= sep.n; q--)
          if (!memcmp(s.p + q - sep.n, sep.p, sep.n)) {
            at = q - sep.n;
            break;
          }
        if (at == SIZE_MAX) break;
        PUSH(ct_strv(s.p + at + sep.n, end - at - sep.n));
        end = at;
        done++;
      }
      PUSH(ct_strv(s.p, end));
      for (size_t a = 0, z = np - 1; a < z; a++, z--) {
        ct_val t = items[a];
        items[a] = items[z];
        items[z] = t;
      }
    }
  }
#undef PUSH
  out.u.l->v = items;
  out.u.l->n = np;
  return out;
}

static ct_val splitlines(ct_ctx *c, ct_str s) {
  size_t np = 0;
  ct_val out = ct_list_new(c, 0, false);
  ct_val *items = ct_alloc(c, (s.n + 1) * sizeof *items);
  size_t i = 0, start = 0;
  while (i < s.n) {
    unsigned char ch = (unsigned char)s.p[i];
    size_t brk = 0;
    if (ch == '\n' || ch == '\v' || ch == '\f' || (ch >= 0x1c && ch <= 0x1e))
      brk = 1;
    else if (ch == '\r')
      brk = (i + 1 < s.n && s.p[i + 1] == '\n') ? 2 : 1;
    else if (ch == 0xc2 && i + 1 < s.n && (unsigned char)s.p[i + 1] == 0x85)
      brk = 2;
    else if (ch == 0xe2 && i + 2 < s.n && (unsigned char)s.p[i + 1] == 0x80 &&
             ((unsigned char)s.p[i + 2] == 0xa8 || (unsigned char)s.p[i + 2] == 0xa9))
      brk = 3;
    if (brk) {
      items[np++] = ct_strv(s.p + start, i - start);
      i += brk;
      start = i;
    } else {
      i++;
    }
  }
  if (start < s.n) items[np++] = ct_strv(s.p + start, s.n - start);
  out.u.l->v = items;
  out.u.l->n = np;
  ct_charge(c, s.n / 32);
  return out;
}

static ct_val arg(ct_val *args, size_t nargs, size_t i, const ct_str *kwn, ct_val *kwv, size_t nkw,
                  const char *name, ct_val dflt) {
  if (i < nargs) return args[i];
  for (size_t k = 0; k < nkw; k++)
    if (kwn[k].n == strlen(name) && !memcmp(kwn[k].p, name, kwn[k].n)) return kwv[k];
  return dflt;
}

static ct_str want_str(ct_ctx *c, ct_val v, const char *what) {
  if (v.t == V_UNDEF) fail_undef(c, v);
  if (v.t != V_STR) ct_fail(c, IC_EINVAL, "%s must be str, not %s", what, ct_typename(v));
  return v.u.s;
}

static bool affix(ct_ctx *c, ct_str s, ct_val pre, bool end) {
  if (pre.t == V_LIST && pre.tuple) {
    for (size_t i = 0; i < pre.u.l->n; i++)
      if (affix(c, s, pre.u.l->v[i], end)) return true;
    return false;
  }
  ct_str p = want_str(c, pre, end ? "endswith first arg" : "startswith first arg");
  if (p.n > s.n) return false;
  return !memcmp(end ? s.p + s.n - p.n : s.p, p.p, p.n);
}

static bool all_chars(ct_str s, int kind) {
  if (!s.n) return false;
  bool cased = false;
  for (size_t i = 0, adv; i < s.n; i += adv) {
    uint32_t cp = decode(s.p + i, s.n - i, &adv);
    if (cp >= 0xfffd0000u) return false;
    const utf8proc_property_t *pr = utf8proc_get_property((utf8proc_int32_t)cp);
    int cat = pr->category;
    switch (kind) {
    case 0:
      if (cat != UTF8PROC_CATEGORY_ND) return false;
      break;
    case 1:
      if (cat != UTF8PROC_CATEGORY_LU && cat != UTF8PROC_CATEGORY_LL &&
          cat != UTF8PROC_CATEGORY_LT && cat != UTF8PROC_CATEGORY_LM && cat != UTF8PROC_CATEGORY_LO)
        return false;
      break;
    case 2: {
      size_t a;
      if (!ct_u8_space_at(s.p + i, s.n - i, &a)) return false;
      break;
    }
    case 3:
      if (cat == UTF8PROC_CATEGORY_LL) return false;
      if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) cased = true;
      break;
    default:
      if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) return false;
      if (cat == UTF8PROC_CATEGORY_LL) cased = true;
    }
  }
  return kind < 3 ? true : cased;
}

static int64_t want_int(ct_ctx *c, ct_val v, int64_t dflt) {
  if (v.t == V_NONE || v.t == V_UNDEF) return dflt;
  if (v.t == V_INT) return v.u.i;
  if (v.t == V_BOOL) return v.u.b;
  ct_fail(c, IC_EINVAL, "'%s' object cannot be interpreted as an integer", ct_typename(v));
}

static ct_val find(ct_ctx *c, ct_str s, ct_val subv, bool rev, bool count) {
  ct_str sub = want_str(c, subv, "substring");
  ct_charge(c, s.n / 32);
  if (count) {
    if (!sub.n) return ct_int((int64_t)ct_u8_len(s.p, s.n) + 1);
    int64_t k = 0;
    for (const char *p = s.p, *e = s.p + s.n; (p = memmem(p, (size_t)(e - p), sub.p, sub.n));
         p += sub.n)
      k++;
    return ct_int(k);
  }
  const char *hit = NULL;
  if (!rev) {
    hit = sub.n ? memmem(s.p, s.n, sub.p, sub.n) : s.p;
  } else if (sub.n <= s.n) {
    for (size_t q = s.n - sub.n + 1; q-- > 0;)
      if (!memcmp(s.p + q, sub.p, sub.n)) {
        hit = s.p + q;
        break;
      }
  }
  if (!hit) return ct_int(-1);
  return ct_int((int64_t)ct_u8_len(s.p, (size_t)(hit - s.p)));
}

ct_val ct_call_method(ct_ctx *c, ct_val m, ct_val *args, size_t nargs, const ct_str *kwn,
                      ct_val *kwv, size_t nkw) {
  bound *b = (bound *)m.u.recv;
  ct_val r = b->recv;
  ct_val none = ct_none();
#define A(i, name) arg(args, nargs, i, kwn, kwv, nkw, name, none)
  switch (m.id) {
  case M_STRIP: return ct_strip(c, r.u.s, A(0, "chars"), true, true);
  case M_LSTRIP: return ct_strip(c, r.u.s, A(0, "chars"), true, false);
  case M_RSTRIP: return ct_strip(c, r.u.s, A(0, "chars"), false, true);
  case M_SPLIT:
  case M_RSPLIT:
    return split(c, r.u.s, A(0, "sep"), want_int(c, A(1, "maxsplit"), -1), m.id == M_RSPLIT);
  case M_SPLITLINES: return splitlines(c, r.u.s);
  case M_STARTSWITH:
  case M_ENDSWITH:
    if (nargs < 1)
      ct_fail(c, IC_EINVAL, "%.*s() takes at least 1 argument", (int)b->name.n, b->name.p);
    return ct_bool(affix(c, r.u.s, args[0], m.id == M_ENDSWITH));
  case M_UPPER: return ct_case(c, r.u.s, 1);
  case M_LOWER: return ct_case(c, r.u.s, 0);
  case M_CAPITALIZE: return ct_case(c, r.u.s, 2);
  case M_TITLE: return ct_case(c, r.u.s, 3);
  case M_REPLACE:
    if (nargs < 2) ct_fail(c, IC_EINVAL, "replace() takes at least 2 arguments");
    return ct_replace(c, r.u.s, want_str(c, args[0], "replace() argument 1"),
                      want_str(c, args[1], "replace() argument 2"), want_int(c, A(2, "count"), -1));
  case M_FIND:
  case M_RFIND: return find(c, r.u.s, A(0, "sub"), m.id == M_RFIND, false);
  case M_COUNT: return find(c, r.u.s, A(0, "sub"), false, true);
  case M_JOIN: {
    ct_list *items = ct_iterate(c, A(0, "iterable"));
    ct_sb o = {0};
    for (size_t i = 0; i < items->n; i++) {
      if (i) ct_sb_put(c, &o, r.u.s.p, r.u.s.n);
      ct_sb_put(c, &o, want_str(c, items->v[i], "sequence item").p, items->v[i].u.s.n);
    }
    return ct_strv(o.p ? o.p : "", o.n);
  }
  case M_ISDIGIT: return ct_bool(all_chars(r.u.s, 0));
  case M_ISALPHA: return ct_bool(all_chars(r.u.s, 1));
  case M_ISSPACE: return ct_bool(all_chars(r.u.s, 2));
  case M_ISUPPER: return ct_bool(all_chars(r.u.s, 3));
  case M_ISLOWER: return ct_bool(all_chars(r.u.s, 4));
  case M_FORMAT: ct_fail(c, IC_EINVAL, "unsupported: str.format()");
  case M_ITEMS: {
    ct_val l = ct_list_new(c, r.u.d->n, false);
    for (size_t i = 0; i < r.u.d->n; i++) {
      ct_val t = ct_list_new(c, 2, true);
      t.u.l->v[0] = r.u.d->e[i].k;
      t.u.l->v[1] = r.u.d->e[i].v;
      l.u.l->v[i] = t;
    }
    return l;
  }
  case M_KEYS:
  case M_VALUES: {
    ct_val l = ct_list_new(c, r.u.d->n, false);
    for (size_t i = 0; i < r.u.d->n; i++)
      l.u.l->v[i] = m.id == M_KEYS ? r.u.d->e[i].k : r.u.d->e[i].v;
    return l;
  }
  case M_GET: {
    if (nargs < 1) ct_fail(c, IC_EINVAL, "get expected at least 1 argument, got 0");
    ct_val *v = ct_dict_get(c, r.u.d, args[0]);
    return v ? *v : (nargs > 1 ? args[1] : ct_none());
  }
  case M_COPY: {
    ct_dict *d = ct_dict_new(c, r.u.d->n);
    memcpy(d->e, r.u.d->e, r.u.d->n * sizeof *d->e);
    d->n = r.u.d->n;
    return (ct_val){.t = V_DICT, .u.d = d};
  }
  case M_LIST_INDEX:
    for (size_t i = 0; i < r.u.l->n; i++)
      if (nargs && ct_equal(c, r.u.l->v[i], args[0])) return ct_int((int64_t)i);
    ct_fail(c, IC_EINVAL, "list.index(x): x not in list");
  case M_LIST_COUNT: {
    int64_t k = 0;
    for (size_t i = 0; i < r.u.l->n; i++)
      if (nargs && ct_equal(c, r.u.l->v[i], args[0])) k++;
    return ct_int(k);
  }
  case M_CYCLE:
    if (!nargs) ct_fail(c, IC_EINVAL, "no items for cycling given");
    return args[r.u.loop->index0 % nargs];
  default:
    ct_fail(c, IC_EINVAL, "access to attribute '%.*s' of '%s' object is unsafe.", (int)b->name.n,
            b->name.p, ct_typename(r));
  }
#undef A
}
