/* Evaluator of lib/chattemplate: runs the AST with jinja2's scoping (a for loop body gets a fresh
 * scope per iteration, `if` none, macros their own), under step, memory and depth limits. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/err.h"
#include "internal.h"

typedef enum { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE } flow;

_Noreturn void ct_fail(ct_ctx *c, int code, const char *fmt, ...) {
  int k = snprintf(c->err, c->errlen, "line %d: ", c->line);
  va_list ap;
  va_start(ap, fmt);
  if (k >= 0 && (size_t)k < c->errlen) vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
  va_end(ap);
  c->code = code;
  longjmp(c->jb, 1);
}

void ct_charge(ct_ctx *c, uint64_t work) {
  c->steps += work;
  if (c->steps > c->max_steps)
    ct_fail(c, IC_ERANGE, "template exceeded its step limit (%llu)",
            (unsigned long long)c->max_steps);
}

/* ---- scopes */

static ct_frame *frame_new(ct_ctx *c, ct_frame *parent) {
  ct_frame *f = ct_alloc(c, sizeof *f);
  f->parent = parent;
  return f;
}

static ct_val *frame_find(ct_frame *f, const char *p, size_t n) {
  for (; f; f = f->parent)
    for (size_t i = f->n; i-- > 0;)
      if (f->names[i].n == n && !memcmp(f->names[i].p, p, n)) return &f->vals[i];
  return NULL;
}

static void frame_set(ct_ctx *c, ct_frame *f, ct_str name, ct_val v) {
  for (size_t i = 0; i < f->n; i++)
    if (f->names[i].n == name.n && !memcmp(f->names[i].p, name.p, name.n)) {
      f->vals[i] = v;
      return;
    }
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 8;
    ct_str *nn = ct_alloc(c, cap * sizeof *nn);
    ct_val *nv = ct_alloc(c, cap * sizeof *nv);
    if (f->n) {
      memcpy(nn, f->names, f->n * sizeof *nn);
      memcpy(nv, f->vals, f->n * sizeof *nv);
    }
    f->names = nn;
    f->vals = nv;
    f->cap = cap;
  }
  ct_charge(c, f->n / 8);
  f->names[f->n] = name;
  f->vals[f->n] = v;
  f->n++;
}

/* ---- expressions */

static ct_val eval(ct_ctx *c, ct_frame *f, const ct_node *x);
static flow exec(ct_ctx *c, ct_frame *f, const ct_node *x);

typedef struct call_args {
  ct_val *pos, *kwv;
  size_t npos, nkw;
  const ct_str *kwn;
} call_args;

static call_args eval_args(ct_ctx *c, ct_frame *f, const ct_node *x) {
  call_args a = {.npos = x->nkids, .nkw = x->nkids2, .kwn = x->names};
  if (a.npos) a.pos = ct_alloc(c, a.npos * sizeof(ct_val));
  if (a.nkw) a.kwv = ct_alloc(c, a.nkw * sizeof(ct_val));
  for (size_t i = 0; i < a.npos; i++)
    a.pos[i] = eval(c, f, x->kids[i]);
  for (size_t i = 0; i < a.nkw; i++)
    a.kwv[i] = eval(c, f, x->kids2[i]);
  return a;
}

static ct_val call_macro(ct_ctx *c, const ct_macro *m, ct_val *args, size_t nargs,
                         const ct_str *kwn, ct_val *kwv, size_t nkw) {
  const ct_node *d = m->def;
  if (nargs > d->nnames)
    ct_fail(c, IC_EINVAL, "macro '%.*s' takes not more than %zu argument(s)", (int)d->s.n, d->s.p,
            d->nnames);
  if (++c->depth > c->max_depth)
    ct_fail(c, IC_ERANGE, "macro calls nested deeper than %u", c->max_depth);
  ct_frame *f = frame_new(c, m->scope);
  bool *given = ct_alloc(c, d->nnames + 1);
  for (size_t i = 0; i < nargs; i++) {
    frame_set(c, f, d->names[i], args[i]);
    given[i] = true;
  }
  for (size_t k = 0; k < nkw; k++) {
    size_t i = 0;
    while (i < d->nnames &&
           !(d->names[i].n == kwn[k].n && !memcmp(d->names[i].p, kwn[k].p, kwn[k].n)))
      i++;
    if (i == d->nnames)
      ct_fail(c, IC_EINVAL, "macro '%.*s' takes no keyword argument '%.*s'", (int)d->s.n, d->s.p,
              (int)kwn[k].n, kwn[k].p);
    if (given[i])
      ct_fail(c, IC_EINVAL, "macro '%.*s' got multiple values for argument '%.*s'", (int)d->s.n,
              d->s.p, (int)kwn[k].n, kwn[k].p);
    frame_set(c, f, d->names[i], kwv[k]);
    given[i] = true;
  }
  for (size_t i = 0; i < d->nnames; i++) {
    if (given[i]) continue;
    const ct_node *def = i < d->nkids2 ? d->kids2[i] : NULL;
    frame_set(c, f, d->names[i], def ? eval(c, f, def) : ct_undef(&d->names[i]));
  }
  ct_sb *saved = c->out, buf = {0};
  c->out = &buf;
  exec(c, f, d->a);
  c->out = saved;
  c->depth--;
  return ct_strv(buf.p ? buf.p : "", buf.n);
}

_Noreturn static void fail_undefined(ct_ctx *c, ct_val v) {
  if (v.hint)
    ct_fail(c, IC_EINVAL, "'%.*s' is undefined", (int)(v.hint->n > 80 ? 80 : v.hint->n), v.hint->p);
  ct_fail(c, IC_EINVAL, "undefined value used");
}

ct_val ct_call_value(ct_ctx *c, ct_val fn, ct_val *args, size_t nargs, const ct_str *kwn,
                     ct_val *kwv, size_t nkw) {
  switch (fn.t) {
  case V_MACRO: return call_macro(c, fn.u.m, args, nargs, kwn, kwv, nkw);
  case V_FUNC:
  case V_METHOD: return ct_call_builtin(c, fn, args, nargs, kwn, kwv, nkw);
  case V_UNDEF: fail_undefined(c, fn);
  default: ct_fail(c, IC_EINVAL, "'%s' object is not callable", ct_typename(fn));
  }
}

static int64_t slice_index(ct_ctx *c, ct_val v, int64_t dflt) {
  if (v.t == V_NONE || v.t == V_UNDEF) return dflt;
  if (v.t == V_INT) return v.u.i;
  if (v.t == V_BOOL) return v.u.b;
  ct_fail(c, IC_EINVAL, "slice indices must be integers or None");
}

/* Python's slice semantics (PySlice_AdjustIndices) over `len` elements. */
static size_t slice_plan(ct_ctx *c, ct_val vs, ct_val ve, ct_val vt, int64_t len, int64_t *start,
                         int64_t *step) {
  int64_t st = slice_index(c, vt, 1);
  if (st == 0) ct_fail(c, IC_EINVAL, "slice step cannot be zero");
  int64_t lo = st < 0 ? -1 : 0, hi = st < 0 ? len - 1 : len;
  int64_t s = slice_index(c, vs, st < 0 ? hi : lo), e = slice_index(c, ve, st < 0 ? lo : hi);
  if (vs.t == V_INT || vs.t == V_BOOL) {
    if (s < 0)
      s = s + len < lo ? lo : s + len;
    else if (s > hi)
      s = hi;
  }
  if (ve.t == V_INT || ve.t == V_BOOL) {
    if (e < 0)
      e = e + len < lo ? lo : e + len;
    else if (e > hi)
      e = hi;
  }
  *start = s;
  *step = st;
  if (st > 0) return e > s ? (size_t)((e - s - 1) / st + 1) : 0;
  return s > e ? (size_t)((s - e - 1) / (-st) + 1) : 0;
}

static ct_val eval_slice(ct_ctx *c, ct_val obj, ct_val vs, ct_val ve, ct_val vt) {
  int64_t start, step;
  if (obj.t == V_LIST) {
    size_t n = slice_plan(c, vs, ve, vt, (int64_t)obj.u.l->n, &start, &step);
    ct_val r = ct_list_new(c, n, obj.tuple);
    for (size_t i = 0; i < n; i++)
      r.u.l->v[i] = obj.u.l->v[start + (int64_t)i * step];
    return r;
  }
  if (obj.t == V_STR) {
    size_t cps = ct_u8_len(obj.u.s.p, obj.u.s.n);
    size_t n = slice_plan(c, vs, ve, vt, (int64_t)cps, &start, &step);
    if (step == 1 && cps == obj.u.s.n) return ct_strv(obj.u.s.p + start, n);
    size_t *off = ct_alloc(c, (cps + 1) * sizeof *off);
    for (size_t i = 0, k = 0; i <= obj.u.s.n; i++)
      if (i == obj.u.s.n || ((unsigned char)obj.u.s.p[i] & 0xc0) != 0x80) off[k++] = i;
    ct_sb b = {0};
    for (size_t i = 0; i < n; i++) {
      int64_t q = start + (int64_t)i * step;
      ct_sb_put(c, &b, obj.u.s.p + off[q], off[q + 1] - off[q]);
    }
    return ct_strv(b.p ? b.p : "", b.n);
  }
  if (obj.t == V_UNDEF) fail_undefined(c, obj);
  ct_fail(c, IC_EINVAL, "'%s' object is not subscriptable", ct_typename(obj));
}

static bool compare_op(ct_ctx *c, int op, ct_val l, ct_val r) {
  switch (op) {
  case CMP_EQ: return ct_equal(c, l, r);
  case CMP_NE: return !ct_equal(c, l, r);
  case CMP_LT: return ct_compare(c, l, r) < 0;
  case CMP_LE: return ct_equal(c, l, r) || ct_compare(c, l, r) < 0;
  case CMP_GT: return ct_compare(c, l, r) > 0;
  case CMP_GE: return ct_equal(c, l, r) || ct_compare(c, l, r) > 0;
  case CMP_IN: return ct_contains(c, r, l);
  default: return !ct_contains(c, r, l);
  }
}

static ct_val eval(ct_ctx *c, ct_frame *f, const ct_node *x) {
  ct_charge(c, 1);
  c->line = x->line;
  switch (x->kind) {
  case N_CONST: return x->flag ? *c->hole : x->v;
  case N_NAME: {
    ct_val *v = frame_find(f, x->s.p, x->s.n);
    if (v) return *v;
    ct_val g;
    if (ct_find_global(x->s.p, x->s.n, &g)) return g;
    return ct_undef(&x->s);
  }
  case N_ATTR: return ct_getattr(c, eval(c, f, x->a), x->s);
  case N_ITEM: {
    ct_val o = eval(c, f, x->a);
    return ct_getitem(c, o, eval(c, f, x->b));
  }
  case N_SLICE: {
    ct_val o = eval(c, f, x->a);
    ct_val s = x->b ? eval(c, f, x->b) : ct_none();
    ct_val e = x->c ? eval(c, f, x->c) : ct_none();
    ct_val t = x->kids[0] ? eval(c, f, x->kids[0]) : ct_none();
    c->line = x->line;
    return eval_slice(c, o, s, e, t);
  }
  case N_CALL: {
    ct_val fn = eval(c, f, x->a);
    call_args a = eval_args(c, f, x);
    c->line = x->line;
    return ct_call_value(c, fn, a.pos, a.npos, a.kwn, a.kwv, a.nkw);
  }
  case N_FILTER: {
    ct_val v = eval(c, f, x->a);
    call_args a = eval_args(c, f, x);
    c->line = x->line;
    if (!x->filter)
      ct_fail(c, IC_EINVAL, "No filter named '%.*s'.", (int)(x->s.n > 60 ? 60 : x->s.n), x->s.p);
    return x->filter(c, x, v, a.pos, a.npos, a.kwn, a.kwv, a.nkw);
  }
  case N_TEST: {
    ct_val v = eval(c, f, x->a);
    call_args a = eval_args(c, f, x);
    c->line = x->line;
    if (!x->test)
      ct_fail(c, IC_EINVAL, "No test named '%.*s'.", (int)(x->s.n > 60 ? 60 : x->s.n), x->s.p);
    return ct_bool(x->test(c, x, v, a.pos, a.npos));
  }
  case N_BIN: {
    ct_val l = eval(c, f, x->a);
    ct_val r = eval(c, f, x->b);
    c->line = x->line;
    return ct_binop(c, x->op, l, r);
  }
  case N_NEG:
  case N_POS: {
    ct_val v = eval(c, f, x->a);
    c->line = x->line;
    if (v.t == V_BOOL) v = ct_int(v.u.b);
    if (v.t == V_INT) {
      if (x->kind == N_NEG && v.u.i == INT64_MIN) ct_fail(c, IC_ERANGE, "integer overflow");
      return x->kind == N_NEG ? ct_int(-v.u.i) : v;
    }
    if (v.t == V_FLOAT) return x->kind == N_NEG ? ct_float(-v.u.f) : v;
    if (v.t == V_UNDEF) fail_undefined(c, v);
    ct_fail(c, IC_EINVAL, "bad operand type for unary %c: '%s'", x->kind == N_NEG ? '-' : '+',
            ct_typename(v));
  }
  case N_NOT: return ct_bool(!ct_truthy(eval(c, f, x->a)));
  case N_AND: {
    ct_val l = eval(c, f, x->a);
    return ct_truthy(l) ? eval(c, f, x->b) : l;
  }
  case N_OR: {
    ct_val l = eval(c, f, x->a);
    return ct_truthy(l) ? l : eval(c, f, x->b);
  }
  case N_COND:
    if (ct_truthy(eval(c, f, x->a))) return eval(c, f, x->b);
    return x->c ? eval(c, f, x->c) : ct_undef(NULL);
  case N_CMP: {
    ct_val l = eval(c, f, x->kids[0]);
    for (size_t i = 0; i + 1 < x->nkids; i++) {
      ct_val r = eval(c, f, x->kids[i + 1]);
      c->line = x->line;
      if (!compare_op(c, x->ops[i], l, r)) return ct_bool(false);
      l = r;
    }
    return ct_bool(true);
  }
  case N_CONCAT: {
    ct_sb b = {0};
    for (size_t i = 0; i < x->nkids; i++)
      ct_write_str(c, &b, eval(c, f, x->kids[i]));
    return ct_strv(b.p ? b.p : "", b.n);
  }
  case N_LIST:
  case N_TUPLE: {
    ct_val l = ct_list_new(c, x->nkids, x->kind == N_TUPLE);
    for (size_t i = 0; i < x->nkids; i++)
      l.u.l->v[i] = eval(c, f, x->kids[i]);
    return l;
  }
  case N_DICT: {
    ct_dict *d = ct_dict_new(c, x->nkids);
    for (size_t i = 0; i < x->nkids; i++) {
      ct_val k = eval(c, f, x->kids[i]);
      if (k.t == V_LIST && !k.tuple) ct_fail(c, IC_EINVAL, "unhashable type: 'list'");
      if (k.t == V_DICT || k.t == V_NS) ct_fail(c, IC_EINVAL, "unhashable type: 'dict'");
      ct_dict_set(c, d, k, eval(c, f, x->kids2[i]));
    }
    return (ct_val){.t = V_DICT, .u.d = d};
  }
  default: ct_fail(c, IC_EINVAL, "internal: not an expression");
  }
}

/* ---- statements */

static void bind_targets(ct_ctx *c, ct_frame *f, const ct_node *x, ct_val v) {
  if (x->nnames == 1) {
    frame_set(c, f, x->names[0], v);
    return;
  }
  ct_list *items = ct_iterate(c, v);
  if (items->n != x->nnames)
    ct_fail(c, IC_EINVAL, "%s values to unpack (expected %zu, got %zu)",
            items->n > x->nnames ? "too many" : "not enough", x->nnames, items->n);
  for (size_t i = 0; i < x->nnames; i++)
    frame_set(c, f, x->names[i], items->v[i]);
}

static void out_put(ct_ctx *c, const char *p, size_t n) {
  ct_sb_put(c, c->out, p, n);
  if (c->out->n > c->max_output) ct_fail(c, IC_ERANGE, "output exceeds %zu bytes", c->max_output);
}

static flow exec_for(ct_ctx *c, ct_frame *f, const ct_node *x) {
  ct_val it = eval(c, f, x->a);
  c->line = x->line;
  ct_list *items = ct_iterate(c, it);
  if (x->b) { /* `for x in xs if cond`: filtered first, so loop.length counts what is kept */
    ct_frame *tf = frame_new(c, f);
    ct_val kept = ct_list_new(c, items->n, false);
    size_t k = 0;
    for (size_t i = 0; i < items->n; i++) {
      tf->n = 0;
      bind_targets(c, tf, x, items->v[i]);
      if (ct_truthy(eval(c, tf, x->b))) kept.u.l->v[k++] = items->v[i];
    }
    kept.u.l->n = k;
    items = kept.u.l;
  }
  ct_frame *lf = frame_new(c, f);
  if (!items->n) {
    if (x->nkids2) return exec(c, lf, x->kids2[0]);
    return FLOW_NEXT;
  }
  if (++c->depth > c->max_depth) ct_fail(c, IC_ERANGE, "loops nested deeper than %u", c->max_depth);
  ct_loop *lp = ct_alloc(c, sizeof *lp);
  lp->length = items->n;
  lp->items = items;
  lp->depth = 1; /* depth grows only in recursive loops, which are unsupported */
  static const ct_str loop_name = {"loop", 4};
  for (size_t i = 0; i < items->n; i++) {
    lf->n = 0; /* assignments in the body do not survive the iteration (jinja scoping) */
    lp->index0 = i;
    frame_set(c, lf, loop_name, (ct_val){.t = V_LOOP, .u.loop = lp});
    bind_targets(c, lf, x, items->v[i]);
    flow fl = exec(c, lf, x->c);
    if (fl == FLOW_BREAK) break;
  }
  c->depth--;
  return FLOW_NEXT;
}

static flow exec(ct_ctx *c, ct_frame *f, const ct_node *x) {
  ct_charge(c, 1);
  c->line = x->line;
  switch (x->kind) {
  case N_BODY:
    for (size_t i = 0; i < x->nkids; i++) {
      flow fl = exec(c, f, x->kids[i]);
      if (fl != FLOW_NEXT) return fl;
    }
    return FLOW_NEXT;
  case N_TEXT: out_put(c, x->s.p, x->s.n); return FLOW_NEXT;
  case N_OUTPUT: {
    ct_val v = eval(c, f, x->a);
    c->line = x->line;
    if (v.t == V_STR) {
      out_put(c, v.u.s.p, v.u.s.n);
    } else {
      ct_sb b = {0};
      ct_write_str(c, &b, v);
      out_put(c, b.p, b.n);
    }
    return FLOW_NEXT;
  }
  case N_IF:
    if (ct_truthy(eval(c, f, x->a))) return exec(c, f, x->b);
    return x->c ? exec(c, f, x->c) : FLOW_NEXT;
  case N_FOR: return exec_for(c, f, x);
  case N_SET: {
    ct_val v = eval(c, f, x->a);
    c->line = x->line;
    if (x->flag) {
      ct_val *ns = frame_find(f, x->names[0].p, x->names[0].n);
      if (!ns || ns->t != V_NS)
        ct_fail(c, IC_EINVAL, "cannot assign attribute on non-namespace object");
      ct_dict_set(c, ns->u.d, ct_strv(x->s.p, x->s.n), v);
    } else {
      bind_targets(c, f, x, v);
    }
    return FLOW_NEXT;
  }
  case N_SETBLOCK: {
    ct_sb *saved = c->out, buf = {0};
    c->out = &buf;
    exec(c, f, x->a);
    c->out = saved;
    ct_val v = ct_strv(buf.p ? buf.p : "", buf.n);
    if (x->b) {
      const ct_val *saved_hole = c->hole;
      c->hole = &v;
      v = eval(c, f, x->b);
      c->hole = saved_hole;
    }
    frame_set(c, f, x->names[0], v);
    return FLOW_NEXT;
  }
  case N_MACRO: {
    ct_macro *m = ct_alloc(c, sizeof *m);
    m->def = x;
    m->scope = f;
    frame_set(c, f, x->s, (ct_val){.t = V_MACRO, .u.m = m});
    return FLOW_NEXT;
  }
  case N_BREAK: return FLOW_BREAK;
  case N_CONTINUE: return FLOW_CONTINUE;
  default: ct_fail(c, IC_EINVAL, "internal: not a statement");
  }
}

/* ---- public API */

int ic_chattemplate_compile(const char *src, size_t len, ic_chattemplate_t **out,
                            char err[IC_CHATTEMPLATE_ERR_MAX]) {
  err[0] = 0;
  *out = NULL;
  if (!src && len) {
    snprintf(err, IC_CHATTEMPLATE_ERR_MAX, "no template");
    return IC_EINVAL;
  }
  ic_chattemplate_t *t = calloc(1, sizeof *t);
  if (!t) return IC_ENOMEM;
  /* nodes and tokens take a bounded multiple of the source */
  t->arena.limit = 192 * len + (4u << 20);
  int rc = ct_parse(t, src ? src : "", len, err, IC_CHATTEMPLATE_ERR_MAX);
  if (rc) {
    ct_arena_free(&t->arena);
    free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void ic_chattemplate_free(ic_chattemplate_t *t) {
  if (!t) return;
  ct_arena_free(&t->arena);
  free(t);
}

static int render_root(ct_ctx *c, const ic_chattemplate_t *t, const json_t *vars, ic_buf_t *out) {
  ct_frame *root = frame_new(c, NULL);
  if (vars && !json_is_object(vars)) ct_fail(c, IC_EINVAL, "variables must be a JSON object");
  if (vars) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)vars, k, v) {
      frame_set(c, root, (ct_str){k, strlen(k)}, ct_from_json(c, v, 0));
    }
  }
  ct_sb buf = {0};
  c->out = &buf;
  exec(c, root, t->root);
  return ic_buf_append(out, buf.p ? buf.p : "", buf.n) ? IC_ENOMEM : 0;
}

/* The one place errors land: ct_fail longjmps here; everything else is in the arena. */
static int render_guarded(ct_ctx *c, const ic_chattemplate_t *t, const json_t *vars,
                          ic_buf_t *out) {
  if (setjmp(c->jb)) return c->code;
  return render_root(c, t, vars, out);
}

int ic_chattemplate_render(const ic_chattemplate_t *t, const json_t *vars,
                           const ic_chattemplate_opts_t *opts, ic_buf_t *out,
                           char err[IC_CHATTEMPLATE_ERR_MAX]) {
  static const ic_chattemplate_opts_t defaults = {.now = -1};
  if (!opts) opts = &defaults;
  err[0] = 0;
  ct_ctx *c = calloc(1, sizeof *c);
  if (!c) return IC_ENOMEM;
  c->err = err;
  c->errlen = IC_CHATTEMPLATE_ERR_MAX;
  c->max_steps = opts->max_steps ? opts->max_steps : 20000000;
  c->max_output = opts->max_output ? opts->max_output : (16u << 20);
  c->max_depth = opts->max_depth ? opts->max_depth : 64;
  c->arena.limit = opts->max_memory ? opts->max_memory : (64u << 20);
  c->now = opts->now >= 0 ? opts->now : (int64_t)time(NULL);
  c->no_clock = opts->no_clock != 0;
  int rc = render_guarded(c, t, vars, out);
  ct_arena_free(&c->arena);
  free(c);
  return rc;
}
