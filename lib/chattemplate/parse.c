/* Parser of lib/chattemplate: tokens -> AST with jinja2's grammar and operator precedence
 * (filters and tests bind tighter than arithmetic; comparisons chain; `x if c else y`). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ic/err.h"
#include "lex.h"

#define MAX_NEST 200

typedef struct parser {
  ct_arena *arena;
  ct_tok *t;
  size_t n, pos;
  int depth;
  jmp_buf jb;
  char *err;
  size_t errlen;
  int code;
} parser;

typedef struct vec {
  ct_node **v;
  size_t n, cap;
} vec;

__attribute__((format(printf, 3, 4))) _Noreturn static void pfail(parser *P, int code,
                                                                  const char *fmt, ...) {
  int line = P->pos < P->n ? P->t[P->pos].line : 0;
  int k = snprintf(P->err, P->errlen, "line %d: ", line);
  va_list ap;
  va_start(ap, fmt);
  if (k >= 0 && (size_t)k < P->errlen) vsnprintf(P->err + k, P->errlen - (size_t)k, fmt, ap);
  va_end(ap);
  P->code = code;
  longjmp(P->jb, 1);
}

static void *palloc(parser *P, size_t n) {
  void *p = ct_arena_alloc(P->arena, n);
  if (!p) pfail(P, IC_ERANGE, "template too large");
  return p;
}

static void vpush(parser *P, vec *v, ct_node *x) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 4;
    ct_node **nv = palloc(P, cap * sizeof *nv);
    if (v->n) memcpy(nv, v->v, v->n * sizeof *nv);
    v->v = nv;
    v->cap = cap;
  }
  v->v[v->n++] = x;
}

static ct_node *mk(parser *P, int kind, int line) {
  ct_node *x = palloc(P, sizeof *x);
  x->kind = (uint8_t)kind;
  x->line = line;
  return x;
}

static ct_tok *cur(parser *P) { return &P->t[P->pos]; }
static ct_tok *ahead(parser *P, size_t k) {
  return P->pos + k < P->n ? &P->t[P->pos + k] : &P->t[P->n - 1];
}
static bool str_is(ct_str s, const char *w) { return s.n == strlen(w) && !memcmp(s.p, w, s.n); }
static bool is_op(const ct_tok *t, const char *op) { return t->type == TK_OP && str_is(t->s, op); }
static bool is_name(const ct_tok *t, const char *w) {
  return t->type == TK_NAME && str_is(t->s, w);
}

static const char *tok_desc(const ct_tok *t, char *buf, size_t len) {
  switch (t->type) {
  case TK_EOF: return "end of template";
  case TK_DATA: return "template text";
  case TK_VAR_BEGIN: return "'{{'";
  case TK_VAR_END: return "'}}'";
  case TK_BLOCK_BEGIN: return "'{%'";
  case TK_BLOCK_END: return "'%}'";
  case TK_STRING: return "string literal";
  case TK_INT:
  case TK_FLOAT: return "number";
  default: snprintf(buf, len, "'%.*s'", (int)(t->s.n > 40 ? 40 : t->s.n), t->s.p); return buf;
  }
}

_Noreturn static void unexpected(parser *P, const char *want) {
  char b[64];
  pfail(P, IC_EINVAL, "expected %s, got %s", want, tok_desc(cur(P), b, sizeof b));
}

static void expect_op(parser *P, const char *op) {
  if (!is_op(cur(P), op)) {
    char w[16];
    snprintf(w, sizeof w, "'%s'", op);
    unexpected(P, w);
  }
  P->pos++;
}
static void expect_type(parser *P, int type, const char *want) {
  if (cur(P)->type != type) unexpected(P, want);
  P->pos++;
}
static ct_str expect_ident(parser *P) {
  if (cur(P)->type != TK_NAME) unexpected(P, "a name");
  return P->t[P->pos++].s;
}

static void enter(parser *P) {
  if (++P->depth > MAX_NEST) pfail(P, IC_ERANGE, "nesting deeper than %d", MAX_NEST);
}

static ct_node *parse_expr(parser *P, bool with_cond);
static ct_node *parse_unary(parser *P, bool with_filter);
static ct_node *parse_or(parser *P);

/* Arguments of a call / filter / test after '(': positional, then name=value. */
static void parse_args(parser *P, ct_node *x) {
  vec pos = {0}, kw = {0};
  size_t nkw = 0, capkw = 0;
  ct_str *names = NULL;
  expect_op(P, "(");
  while (!is_op(cur(P), ")")) {
    if (pos.n || nkw) expect_op(P, ",");
    if (is_op(cur(P), ")")) break;
    if (is_op(cur(P), "*") || is_op(cur(P), "**"))
      pfail(P, IC_EINVAL, "unsupported: *args / **kwargs in a call");
    if (cur(P)->type == TK_NAME && is_op(ahead(P, 1), "=")) {
      if (nkw == capkw) {
        capkw = capkw ? capkw * 2 : 4;
        ct_str *nn = palloc(P, capkw * sizeof *nn);
        if (nkw) memcpy(nn, names, nkw * sizeof *nn);
        names = nn;
      }
      names[nkw++] = P->t[P->pos].s;
      P->pos += 2;
      vpush(P, &kw, parse_expr(P, true));
    } else {
      if (nkw) pfail(P, IC_EINVAL, "positional argument follows keyword argument");
      vpush(P, &pos, parse_expr(P, true));
    }
  }
  P->pos++;
  x->kids = pos.v;
  x->nkids = pos.n;
  x->kids2 = kw.v;
  x->nkids2 = kw.n;
  x->names = names;
  x->nnames = nkw;
}

static ct_node *parse_subscript(parser *P, ct_node *obj, int line) {
  ct_node *parts[3] = {0};
  int k = 0;
  bool slice = false;
  if (!is_op(cur(P), ":")) parts[0] = parse_expr(P, true);
  while (is_op(cur(P), ":")) {
    slice = true;
    P->pos++;
    if (++k > 2) pfail(P, IC_EINVAL, "invalid slice");
    if (!is_op(cur(P), ":") && !is_op(cur(P), "]")) parts[k] = parse_expr(P, true);
  }
  if (is_op(cur(P), ",")) pfail(P, IC_EINVAL, "unsupported: tuple subscript");
  expect_op(P, "]");
  ct_node *x = mk(P, slice ? N_SLICE : N_ITEM, line);
  x->a = obj;
  if (slice) {
    x->b = parts[0];
    x->c = parts[1];
    x->kids = palloc(P, sizeof(ct_node *));
    x->kids[0] = parts[2];
    x->nkids = 1;
  } else {
    x->b = parts[0];
  }
  return x;
}

static ct_node *parse_postfix(parser *P, ct_node *x) {
  for (;;) {
    ct_tok *t = cur(P);
    if (is_op(t, ".")) {
      P->pos++;
      ct_tok *a = cur(P);
      if (a->type == TK_NAME) {
        ct_node *y = mk(P, N_ATTR, t->line);
        y->a = x;
        y->s = a->s;
        P->pos++;
        x = y;
      } else if (a->type == TK_INT) {
        ct_node *y = mk(P, N_ITEM, t->line), *k = mk(P, N_CONST, t->line);
        k->v = ct_int(a->i);
        y->a = x;
        y->b = k;
        P->pos++;
        x = y;
      } else {
        unexpected(P, "an attribute name");
      }
    } else if (is_op(t, "[")) {
      P->pos++;
      x = parse_subscript(P, x, t->line);
    } else if (is_op(t, "(")) {
      ct_node *y = mk(P, N_CALL, t->line);
      y->a = x;
      parse_args(P, y);
      x = y;
    } else {
      return x;
    }
  }
}

static ct_str dotted_name(parser *P) {
  ct_str s = expect_ident(P);
  while (is_op(cur(P), ".") && ahead(P, 1)->type == TK_NAME) {
    ct_str more = ahead(P, 1)->s;
    s.n = (size_t)(more.p + more.n - s.p);
    P->pos += 2;
  }
  return s;
}

static ct_node *parse_filter_expr(parser *P, ct_node *x) {
  for (;;) {
    ct_tok *t = cur(P);
    if (is_op(t, "|")) {
      P->pos++;
      ct_node *f = mk(P, N_FILTER, t->line);
      f->s = dotted_name(P);
      f->filter = ct_find_filter(f->s.p, f->s.n);
      f->a = x;
      if (is_op(cur(P), "(")) parse_args(P, f);
      x = f;
    } else if (is_name(t, "is")) {
      P->pos++;
      bool neg = false;
      if (is_name(cur(P), "not")) {
        neg = true;
        P->pos++;
      }
      ct_node *f = mk(P, N_TEST, t->line);
      f->s = dotted_name(P);
      f->test = ct_find_test(f->s.p, f->s.n);
      f->a = x;
      ct_tok *n = cur(P);
      if (is_op(n, "(")) {
        parse_args(P, f);
      } else if ((n->type == TK_NAME || n->type == TK_STRING || n->type == TK_INT ||
                  n->type == TK_FLOAT || is_op(n, "(") || is_op(n, "[") || is_op(n, "{")) &&
                 !is_name(n, "else") && !is_name(n, "or") && !is_name(n, "and")) {
        ct_node *arg = parse_postfix(P, parse_unary(P, false));
        f->kids = palloc(P, sizeof(ct_node *));
        f->kids[0] = arg;
        f->nkids = 1;
      }
      if (neg) {
        ct_node *y = mk(P, N_NOT, t->line);
        y->a = f;
        f = y;
      }
      x = f;
    } else if (is_op(t, "(")) {
      ct_node *y = mk(P, N_CALL, t->line);
      y->a = x;
      parse_args(P, y);
      x = y;
    } else {
      return x;
    }
  }
}

/* Comma-separated expressions: one alone stays itself, several (or a trailing comma) make a
 * tuple. `paren`: inside ( ), where () is the empty tuple. */
static ct_node *parse_tuple(parser *P, bool with_cond, bool paren) {
  int line = cur(P)->line;
  vec items = {0};
  bool comma = false;
  for (;;) {
    if (items.n) {
      if (!is_op(cur(P), ",")) break;
      P->pos++;
      comma = true;
    }
    ct_tok *t = cur(P);
    if (paren ? is_op(t, ")")
              : (t->type == TK_VAR_END || t->type == TK_BLOCK_END || is_op(t, ")") ||
                 is_name(t, "if") || is_name(t, "recursive") || is_name(t, "in")))
      break;
    vpush(P, &items, parse_expr(P, with_cond));
  }
  if (items.n == 1 && !comma) return items.v[0];
  if (!items.n && !paren) unexpected(P, "an expression");
  ct_node *x = mk(P, N_TUPLE, line);
  x->kids = items.v;
  x->nkids = items.n;
  return x;
}

static ct_node *parse_primary(parser *P) {
  ct_tok *t = cur(P);
  ct_node *x;
  enter(P);
  switch (t->type) {
  case TK_NAME:
    x = mk(P, N_CONST, t->line);
    if (str_is(t->s, "true") || str_is(t->s, "True")) {
      x->v = ct_bool(true);
    } else if (str_is(t->s, "false") || str_is(t->s, "False")) {
      x->v = ct_bool(false);
    } else if (str_is(t->s, "none") || str_is(t->s, "None")) {
      x->v = ct_none();
    } else {
      x->kind = N_NAME;
      x->s = t->s;
    }
    P->pos++;
    break;
  case TK_STRING: {
    /* adjacent literals concatenate, as in Python */
    x = mk(P, N_CONST, t->line);
    size_t total = 0, k = P->pos;
    while (P->t[k].type == TK_STRING)
      total += P->t[k++].s.n;
    if (k == P->pos + 1) {
      x->v = ct_strv(t->s.p, t->s.n);
    } else {
      char *buf = palloc(P, total + 1);
      size_t off = 0;
      for (size_t q = P->pos; q < k; q++) {
        memcpy(buf + off, P->t[q].s.p, P->t[q].s.n);
        off += P->t[q].s.n;
      }
      x->v = ct_strv(buf, total);
    }
    P->pos = k;
    break;
  }
  case TK_INT:
    x = mk(P, N_CONST, t->line);
    x->v = ct_int(t->i);
    P->pos++;
    break;
  case TK_FLOAT:
    x = mk(P, N_CONST, t->line);
    x->v = ct_float(t->f);
    P->pos++;
    break;
  case TK_OP:
    if (is_op(t, "(")) {
      P->pos++;
      x = parse_tuple(P, true, true);
      expect_op(P, ")");
      break;
    }
    if (is_op(t, "[")) {
      P->pos++;
      vec items = {0};
      while (!is_op(cur(P), "]")) {
        if (items.n) expect_op(P, ",");
        if (is_op(cur(P), "]")) break;
        vpush(P, &items, parse_expr(P, true));
      }
      P->pos++;
      x = mk(P, N_LIST, t->line);
      x->kids = items.v;
      x->nkids = items.n;
      break;
    }
    if (is_op(t, "{")) {
      P->pos++;
      vec keys = {0}, vals = {0};
      while (!is_op(cur(P), "}")) {
        if (keys.n) expect_op(P, ",");
        if (is_op(cur(P), "}")) break;
        vpush(P, &keys, parse_expr(P, true));
        expect_op(P, ":");
        vpush(P, &vals, parse_expr(P, true));
      }
      P->pos++;
      x = mk(P, N_DICT, t->line);
      x->kids = keys.v;
      x->nkids = keys.n;
      x->kids2 = vals.v;
      x->nkids2 = vals.n;
      break;
    }
    /* fallthrough */
  default: unexpected(P, "an expression");
  }
  P->depth--;
  return x;
}

static ct_node *parse_unary(parser *P, bool with_filter) {
  ct_tok *t = cur(P);
  ct_node *x;
  enter(P);
  if (is_op(t, "-") || is_op(t, "+")) {
    P->pos++;
    x = mk(P, is_op(t, "-") ? N_NEG : N_POS, t->line);
    x->a = parse_unary(P, false);
  } else {
    x = parse_primary(P);
  }
  x = parse_postfix(P, x);
  if (with_filter) x = parse_filter_expr(P, x);
  P->depth--;
  return x;
}

static ct_node *bin(parser *P, int op, ct_node *l, ct_node *r, int line) {
  ct_node *x = mk(P, N_BIN, line);
  x->op = (uint8_t)op;
  x->a = l;
  x->b = r;
  return x;
}

static ct_node *parse_pow(parser *P) {
  ct_node *l = parse_unary(P, true);
  while (is_op(cur(P), "**")) {
    int line = cur(P)->line;
    P->pos++;
    l = bin(P, OP_POW, l, parse_unary(P, true), line);
  }
  return l;
}

static ct_node *parse_math2(parser *P) {
  ct_node *l = parse_pow(P);
  for (;;) {
    ct_tok *t = cur(P);
    int op = is_op(t, "*")    ? OP_MUL
             : is_op(t, "/")  ? OP_DIV
             : is_op(t, "//") ? OP_FLOORDIV
             : is_op(t, "%")  ? OP_MOD
                              : -1;
    if (op < 0) return l;
    P->pos++;
    l = bin(P, op, l, parse_pow(P), t->line);
  }
}

static ct_node *parse_concat(parser *P) {
  ct_node *first = parse_math2(P);
  if (!is_op(cur(P), "~")) return first;
  vec items = {0};
  vpush(P, &items, first);
  int line = cur(P)->line;
  while (is_op(cur(P), "~")) {
    P->pos++;
    vpush(P, &items, parse_math2(P));
  }
  ct_node *x = mk(P, N_CONCAT, line);
  x->kids = items.v;
  x->nkids = items.n;
  return x;
}

static ct_node *parse_math1(parser *P) {
  ct_node *l = parse_concat(P);
  for (;;) {
    ct_tok *t = cur(P);
    int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
    if (op < 0) return l;
    P->pos++;
    l = bin(P, op, l, parse_concat(P), t->line);
  }
}

static ct_node *parse_compare(parser *P) {
  int line = cur(P)->line;
  ct_node *first = parse_math1(P);
  vec operands = {0};
  uint8_t ops[64];
  size_t nops = 0;
  for (;;) {
    ct_tok *t = cur(P);
    int op = is_op(t, "==")                                      ? CMP_EQ
             : is_op(t, "!=")                                    ? CMP_NE
             : is_op(t, "<")                                     ? CMP_LT
             : is_op(t, "<=")                                    ? CMP_LE
             : is_op(t, ">")                                     ? CMP_GT
             : is_op(t, ">=")                                    ? CMP_GE
             : is_name(t, "in")                                  ? CMP_IN
             : (is_name(t, "not") && is_name(ahead(P, 1), "in")) ? CMP_NOTIN
                                                                 : -1;
    if (op < 0) break;
    if (nops == sizeof ops) pfail(P, IC_ERANGE, "comparison chain too long");
    P->pos += op == CMP_NOTIN ? 2 : 1;
    if (!operands.n) vpush(P, &operands, first);
    vpush(P, &operands, parse_math1(P));
    ops[nops++] = (uint8_t)op;
  }
  if (!nops) return first;
  ct_node *x = mk(P, N_CMP, line);
  x->kids = operands.v;
  x->nkids = operands.n;
  x->ops = palloc(P, nops);
  memcpy(x->ops, ops, nops);
  return x;
}

static ct_node *parse_not(parser *P) {
  if (is_name(cur(P), "not")) {
    ct_node *x = mk(P, N_NOT, cur(P)->line);
    P->pos++;
    enter(P);
    x->a = parse_not(P);
    P->depth--;
    return x;
  }
  return parse_compare(P);
}

static ct_node *parse_and(parser *P) {
  ct_node *l = parse_not(P);
  while (is_name(cur(P), "and")) {
    ct_node *x = mk(P, N_AND, cur(P)->line);
    P->pos++;
    x->a = l;
    x->b = parse_not(P);
    l = x;
  }
  return l;
}

static ct_node *parse_or(parser *P) {
  ct_node *l = parse_and(P);
  while (is_name(cur(P), "or")) {
    ct_node *x = mk(P, N_OR, cur(P)->line);
    P->pos++;
    x->a = l;
    x->b = parse_and(P);
    l = x;
  }
  return l;
}

static ct_node *parse_expr(parser *P, bool with_cond) {
  enter(P);
  ct_node *x = parse_or(P);
  while (with_cond && is_name(cur(P), "if")) {
    ct_node *c = mk(P, N_COND, cur(P)->line);
    P->pos++;
    c->a = parse_or(P);
    c->b = x;
    if (is_name(cur(P), "else")) {
      P->pos++;
      c->c = parse_expr(P, true);
    }
    x = c;
  }
  P->depth--;
  return x;
}

/* ---- statements */

static ct_node *parse_body(parser *P, const char *const *ends, ct_str *which);

static void block_end(parser *P) { expect_type(P, TK_BLOCK_END, "'%}'"); }

/* for / set targets: a name, `a, b`, or `(a, b)`; `ns.attr` for set only. */
static void parse_targets(parser *P, ct_node *x, bool allow_attr) {
  ct_str names[16];
  size_t n = 0;
  bool paren = is_op(cur(P), "(");
  if (paren) P->pos++;
  for (;;) {
    if (n == 16) pfail(P, IC_ERANGE, "too many assignment targets");
    names[n++] = expect_ident(P);
    if (allow_attr && n == 1 && is_op(cur(P), ".")) {
      P->pos++;
      x->flag = true;
      x->s = expect_ident(P);
      break;
    }
    if (!is_op(cur(P), ",")) break;
    P->pos++;
  }
  if (paren) expect_op(P, ")");
  x->names = palloc(P, n * sizeof *names);
  memcpy(x->names, names, n * sizeof *names);
  x->nnames = n;
}

static ct_node *parse_for(parser *P, int line) {
  ct_node *x = mk(P, N_FOR, line);
  parse_targets(P, x, false);
  if (!is_name(cur(P), "in")) unexpected(P, "'in'");
  P->pos++;
  x->a = parse_tuple(P, false, false);
  if (is_name(cur(P), "if")) {
    P->pos++;
    x->b = parse_expr(P, true);
  }
  if (is_name(cur(P), "recursive")) pfail(P, IC_EINVAL, "unsupported: recursive for loops");
  block_end(P);
  static const char *const ends[] = {"endfor", "else", NULL};
  static const char *const ends2[] = {"endfor", NULL};
  ct_str which;
  x->c = parse_body(P, ends, &which);
  if (str_is(which, "else")) {
    block_end(P);
    ct_node *e = parse_body(P, ends2, &which);
    x->kids2 = palloc(P, sizeof(ct_node *));
    x->kids2[0] = e;
    x->nkids2 = 1;
  }
  block_end(P);
  return x;
}

static ct_node *parse_if(parser *P, int line) {
  ct_node *x = mk(P, N_IF, line);
  x->a = parse_tuple(P, false, false);
  block_end(P);
  static const char *const ends[] = {"elif", "else", "endif", NULL};
  static const char *const ends2[] = {"endif", NULL};
  ct_str which;
  x->b = parse_body(P, ends, &which);
  if (str_is(which, "elif")) {
    x->c = parse_if(P, cur(P)->line);
    return x; /* the nested if consumed endif */
  }
  if (str_is(which, "else")) {
    block_end(P);
    x->c = parse_body(P, ends2, &which);
  }
  block_end(P);
  return x;
}

static ct_node *parse_set(parser *P, int line) {
  ct_node *x = mk(P, N_SET, line);
  parse_targets(P, x, true);
  if (is_op(cur(P), "=")) {
    P->pos++;
    x->a = parse_tuple(P, true, false);
    block_end(P);
    return x;
  }
  if (x->nnames != 1 || x->flag) unexpected(P, "'='");
  x->kind = N_SETBLOCK;
  if (is_op(cur(P), "|")) {
    /* `{% set x | filter %}`: the filter applies to the captured text */
    ct_node *hole = mk(P, N_CONST, line);
    hole->flag = true;
    x->b = parse_filter_expr(P, hole);
  }
  block_end(P);
  static const char *const ends[] = {"endset", NULL};
  ct_str which;
  x->a = parse_body(P, ends, &which);
  block_end(P);
  return x;
}

static ct_node *parse_macro(parser *P, int line) {
  ct_node *x = mk(P, N_MACRO, line);
  x->s = expect_ident(P);
  expect_op(P, "(");
  ct_str names[64];
  vec defs = {0};
  size_t n = 0;
  bool any_default = false;
  while (!is_op(cur(P), ")")) {
    if (n) expect_op(P, ",");
    if (is_op(cur(P), ")")) break;
    if (n == 64) pfail(P, IC_ERANGE, "too many macro parameters");
    names[n++] = expect_ident(P);
    if (is_op(cur(P), "=")) {
      P->pos++;
      vpush(P, &defs, parse_expr(P, true));
      any_default = true;
    } else {
      if (any_default) pfail(P, IC_EINVAL, "non-default macro argument follows default argument");
      vpush(P, &defs, NULL);
    }
  }
  P->pos++;
  block_end(P);
  x->names = palloc(P, (n ? n : 1) * sizeof *names);
  memcpy(x->names, names, n * sizeof *names);
  x->nnames = n;
  x->kids2 = defs.v;
  x->nkids2 = defs.n;
  static const char *const ends[] = {"endmacro", NULL};
  ct_str which;
  x->a = parse_body(P, ends, &which);
  if (cur(P)->type == TK_NAME) P->pos++; /* `{% endmacro name %}` */
  block_end(P);
  return x;
}

static ct_node *parse_statement(parser *P) {
  ct_tok *t = cur(P);
  if (t->type != TK_NAME) unexpected(P, "a statement name");
  int line = t->line;
  ct_str s = t->s;
  P->pos++;
  enter(P);
  ct_node *x;
  if (str_is(s, "for")) {
    x = parse_for(P, line);
  } else if (str_is(s, "if")) {
    x = parse_if(P, line);
  } else if (str_is(s, "set")) {
    x = parse_set(P, line);
  } else if (str_is(s, "macro")) {
    x = parse_macro(P, line);
  } else if (str_is(s, "break") || str_is(s, "continue")) {
    x = mk(P, str_is(s, "break") ? N_BREAK : N_CONTINUE, line);
    block_end(P);
  } else if (str_is(s, "generation")) {
    /* transformers' AssistantTracker marks assistant spans; rendering is unaffected */
    block_end(P);
    static const char *const ends[] = {"endgeneration", NULL};
    ct_str which;
    x = parse_body(P, ends, &which);
    block_end(P);
  } else {
    static const char *const known[] = {"include", "import", "from", "extends",    "block", "call",
                                        "filter",  "with",   "do",   "autoescape", "trans", NULL};
    for (size_t i = 0; known[i]; i++)
      if (str_is(s, known[i]))
        pfail(P, IC_EINVAL, "unsupported tag '%s' (not allowed in chat templates)", known[i]);
    pfail(P, IC_EINVAL, "unknown tag '%.*s'", (int)(s.n > 40 ? 40 : s.n), s.p);
  }
  P->depth--;
  return x;
}

/* Statements until `{% <one of ends> ...`: returns the body with the end tag's name consumed
 * (its arguments and '%}' left to the caller) and names it in *which. */
static ct_node *parse_body(parser *P, const char *const *ends, ct_str *which) {
  ct_node *body = mk(P, N_BODY, cur(P)->line);
  vec items = {0};
  for (;;) {
    ct_tok *t = cur(P);
    if (t->type == TK_EOF) {
      if (ends && ends[0])
        pfail(P, IC_EINVAL, "unexpected end of template: missing {%% %s %%}",
              !strcmp(ends[0], "elif") ? "endif" : ends[0]);
      break;
    }
    if (t->type == TK_DATA) {
      ct_node *x = mk(P, N_TEXT, t->line);
      x->s = t->s;
      vpush(P, &items, x);
      P->pos++;
    } else if (t->type == TK_VAR_BEGIN) {
      ct_node *x = mk(P, N_OUTPUT, t->line);
      P->pos++;
      x->a = parse_tuple(P, true, false);
      expect_type(P, TK_VAR_END, "'}}'");
      vpush(P, &items, x);
    } else if (t->type == TK_BLOCK_BEGIN) {
      ct_tok *nm = ahead(P, 1);
      if (nm->type == TK_NAME && ends) {
        for (size_t i = 0; ends[i]; i++) {
          if (str_is(nm->s, ends[i])) {
            P->pos += 2;
            *which = nm->s;
            goto done;
          }
        }
      }
      if (nm->type == TK_NAME &&
          (str_is(nm->s, "endfor") || str_is(nm->s, "endif") || str_is(nm->s, "else") ||
           str_is(nm->s, "elif") || str_is(nm->s, "endmacro") || str_is(nm->s, "endset") ||
           str_is(nm->s, "endgeneration") || str_is(nm->s, "endraw"))) {
        P->pos++;
        pfail(P, IC_EINVAL, "unexpected '%.*s'", (int)nm->s.n, nm->s.p);
      }
      P->pos++;
      vpush(P, &items, parse_statement(P));
    } else {
      char b[64];
      pfail(P, IC_EINVAL, "unexpected %s", tok_desc(t, b, sizeof b));
    }
  }
done:
  body->kids = items.v;
  body->nkids = items.n;
  return body;
}

int ct_parse(struct ic_chattemplate *t, const char *src, size_t len, char *err, size_t errlen) {
  parser P = {.arena = &t->arena, .err = err, .errlen = errlen};
  int rc = ct_lex(&t->arena, src, len, &P.t, &P.n, err, errlen);
  if (rc) return rc;
  if (setjmp(P.jb)) return P.code;
  t->root = parse_body(&P, NULL, NULL);
  return 0;
}
