/* Shared types of lib/chattemplate: values, arena, AST nodes and the render context.
 * Only the module's own files include this; the public API is include/ic/chattemplate.h. */
#ifndef IC_CHATTEMPLATE_INTERNAL_H
#define IC_CHATTEMPLATE_INTERNAL_H
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/chattemplate.h"

/* ---- arena: every value of one render (and every node of one template) lives in one arena,
 * freed at once; a byte limit bounds what an untrusted template can allocate. */
typedef struct ct_chunk ct_chunk;
typedef struct ct_arena {
  ct_chunk *head;
  size_t total, limit;
  char *bytes_end; /* end of the newest allocation when it is a byte buffer, else NULL */
} ct_arena;

void *ct_arena_alloc(ct_arena *a, size_t n); /* NULL past the limit or on OOM; zeroed */
void *ct_arena_bytes(ct_arena *a, size_t n); /* not zeroed; may later grow in place */
/* Grows the newest allocation, a byte buffer ending at `end`, by `add` bytes in place. Safe for
 * any string view ending at `end`: no value references the unallocated bytes past it. */
bool ct_arena_extend(ct_arena *a, const char *end, size_t add);
void ct_arena_free(ct_arena *a);

/* ---- values (Python objects as Jinja sees them). Strings are UTF-8 byte spans, never
 * NUL-terminated, pointing into the template, the input JSON or the arena. */
typedef enum {
  V_UNDEF, /* jinja2.Undefined: '' when printed, false, empty when iterated, errors otherwise */
  V_NONE,
  V_BOOL,
  V_INT,
  V_FLOAT,
  V_STR,
  V_LIST,   /* list or tuple (flag), immutable */
  V_DICT,   /* dict, immutable once built */
  V_NS,     /* namespace(): the one mutable object */
  V_MACRO,  /* a template macro, bound to the frame it was defined in */
  V_FUNC,   /* a global function (range, namespace, raise_exception, ...) */
  V_METHOD, /* a bound method of a str/dict/list receiver */
  V_LOOP,   /* the `loop` object of a for loop */
} ct_vtype;

typedef struct ct_list ct_list;
typedef struct ct_dict ct_dict;
typedef struct ct_val ct_val;
typedef struct ct_ctx ct_ctx;

typedef struct ct_str {
  const char *p;
  size_t n;
} ct_str;

struct ct_val {
  uint8_t t;
  uint8_t tuple; /* V_LIST: printed as a tuple */
  uint16_t id;   /* V_FUNC / V_METHOD: which builtin */
  union {
    bool b;
    int64_t i;
    double f;
    ct_str s;
    ct_list *l;
    ct_dict *d;
    struct ct_macro *m;
    struct ct_loop *loop;
    ct_val *recv; /* V_METHOD receiver; V_UNDEF: name hint (ct_str*) via `hint` */
  } u;
  const ct_str *hint; /* V_UNDEF: what was undefined, for the error message */
};

struct ct_list {
  size_t n;
  ct_val *v;
};

typedef struct ct_kv {
  ct_val k, v;
} ct_kv;

struct ct_dict {
  size_t n, cap;
  ct_kv *e;
};

/* ---- AST */
typedef enum {
  /* expressions */
  N_CONST,
  N_NAME,
  N_ATTR,
  N_ITEM,
  N_SLICE,
  N_CALL,
  N_FILTER,
  N_TEST,
  N_BIN,
  N_NEG,
  N_POS,
  N_NOT,
  N_AND,
  N_OR,
  N_COND,
  N_CMP,
  N_CONCAT,
  N_LIST,
  N_TUPLE,
  N_DICT,
  /* statements */
  N_BODY,
  N_TEXT,
  N_OUTPUT,
  N_IF,
  N_FOR,
  N_SET,
  N_SETBLOCK,
  N_MACRO,
  N_BREAK,
  N_CONTINUE,
} ct_nkind;

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW };
enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN };

typedef struct ct_node ct_node;
typedef ct_val (*ct_filter_fn)(ct_ctx *c, const ct_node *n, ct_val v, ct_val *args, size_t nargs,
                               const ct_str *kwn, ct_val *kwv, size_t nkw);
typedef bool (*ct_test_fn)(ct_ctx *c, const ct_node *n, ct_val v, ct_val *args, size_t nargs);

struct ct_node {
  uint8_t kind, op;
  bool flag; /* N_TEST: negated; N_FOR: has filter; N_SET: target is ns.attr */
  int line;
  ct_node *a, *b, *c; /* operands: object/condition/iterable, second operand, third */
  ct_node **kids;     /* args / items / body / compare operands */
  size_t nkids;
  ct_node **kids2; /* keyword values / else body / dict values / macro defaults */
  size_t nkids2;
  ct_str *names; /* keyword names / for targets / macro params */
  size_t nnames;
  uint8_t *ops; /* N_CMP: operators between kids */
  ct_str s;     /* name / attribute / text / filter name */
  ct_val v;     /* N_CONST */
  ct_filter_fn filter;
  ct_test_fn test;
};

typedef struct ct_macro {
  const ct_node *def;
  struct ct_frame *scope;
} ct_macro;

typedef struct ct_loop {
  size_t index0, length;
  const ct_list *items;
  int depth;
} ct_loop;

/* ---- parser (lex.c + parse.c) */
typedef struct ct_parser ct_parser;
struct ic_chattemplate {
  ct_arena arena;
  ct_node *root;
};
/* Lexes and parses; nodes go to t->arena. Returns 0 or an IC_E* code with `err` filled. */
int ct_parse(struct ic_chattemplate *t, const char *src, size_t len, char *err, size_t errlen);

/* ---- render context (eval.c) */
typedef struct ct_sb { /* string builder in the arena */
  char *p;
  size_t n, cap;
} ct_sb;

typedef struct ct_frame {
  struct ct_frame *parent;
  size_t n, cap;
  ct_str *names;
  ct_val *vals;
} ct_frame;

struct ct_ctx {
  ct_arena arena;
  jmp_buf jb;
  int code;
  char *err;
  size_t errlen;
  uint64_t steps, max_steps;
  size_t max_output;
  uint32_t depth, max_depth;
  int64_t now;
  bool no_clock;
  ct_sb *out;
  ic_buf_t *final;    /* the caller's buffer while out == NULL */
  int line;           /* line of the node being evaluated, for messages */
  const ct_val *hole; /* `{% set x | filter %}`: the captured text the filter chain starts from */
};

/* Errors unwind with longjmp: everything a render allocates lives in the arena. */
_Noreturn void ct_fail(ct_ctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ct_charge(ct_ctx *c, uint64_t work);
void *ct_alloc(ct_ctx *c, size_t n);
char *ct_alloc_bytes(ct_ctx *c, size_t n); /* string bytes: not zeroed, not NUL-terminated */

/* ---- values (value.c) */
ct_val ct_undef(const ct_str *hint);
ct_val ct_none(void);
ct_val ct_bool(bool b);
ct_val ct_int(int64_t i);
ct_val ct_float(double f);
ct_val ct_strv(const char *p, size_t n);
ct_val ct_str_copy(ct_ctx *c, const char *p, size_t n);
ct_val ct_str_concat(ct_ctx *c, ct_str a, ct_str b); /* a + b, appending in place when it can */
ct_val ct_list_new(ct_ctx *c, size_t n, bool tuple);
ct_dict *ct_dict_new(ct_ctx *c, size_t cap);
void ct_dict_set(ct_ctx *c, ct_dict *d, ct_val k, ct_val v);
ct_val *ct_dict_get(ct_ctx *c, const ct_dict *d, ct_val k);
ct_val *ct_dict_gets(ct_ctx *c, const ct_dict *d, const char *k, size_t n);
ct_val ct_from_json(ct_ctx *c, const json_t *j, int depth);

bool ct_truthy(ct_val v);
bool ct_equal(ct_ctx *c, ct_val a, ct_val b);
int ct_compare(ct_ctx *c, ct_val a, ct_val b); /* <0, 0, >0; fails on unorderable types */
const char *ct_typename(ct_val v);
void ct_sb_put(ct_ctx *c, ct_sb *b, const char *p, size_t n);
void ct_sb_putc(ct_ctx *c, ct_sb *b, char ch);
void ct_write_str(ct_ctx *c, ct_sb *b, ct_val v);  /* Python str() */
void ct_write_repr(ct_ctx *c, ct_sb *b, ct_val v); /* Python repr() */
void ct_write_json(ct_ctx *c, ct_sb *b, ct_val v, int indent, int level, bool sort_keys, bool ascii,
                   ct_str item_sep, ct_str key_sep);
ct_val ct_to_str(ct_ctx *c, ct_val v); /* Python str() as a value */

/* ---- UTF-8 helpers (value.c) */
size_t ct_u8_len(const char *p, size_t n);                 /* code points */
size_t ct_u8_offset(const char *p, size_t n, size_t cp);   /* byte offset of code point cp */
bool ct_u8_space_at(const char *p, size_t n, size_t *adv); /* Python str.isspace() char */

/* ---- builtins (filters.c, tests.c) */
ct_filter_fn ct_find_filter(const char *name, size_t n);
ct_test_fn ct_find_test(const char *name, size_t n);
bool ct_find_global(const char *name, size_t n, ct_val *out);
ct_val ct_call_builtin(ct_ctx *c, ct_val fn, ct_val *args, size_t nargs, const ct_str *kwn,
                       ct_val *kwv, size_t nkw);
bool ct_method(ct_ctx *c, ct_val recv, ct_str name, ct_val *out); /* str/dict/list methods */
ct_val ct_getattr(ct_ctx *c, ct_val obj, ct_str name);
ct_val ct_getitem(ct_ctx *c, ct_val obj, ct_val key);
ct_val ct_binop(ct_ctx *c, int op, ct_val a, ct_val b);
bool ct_contains(ct_ctx *c, ct_val container, ct_val item);
ct_list *ct_iterate(ct_ctx *c, ct_val v); /* list of items Python's iter() would yield */
ct_val ct_call_method(ct_ctx *c, ct_val m, ct_val *args, size_t nargs, const ct_str *kwn,
                      ct_val *kwv, size_t nkw);

/* ---- string helpers (methods.c) */
ct_val ct_strip(ct_ctx *c, ct_str s, ct_val chars, bool left, bool right);
ct_val ct_case(ct_ctx *c, ct_str s, int mode); /* 0 lower, 1 upper, 2 capitalize, 3 title */
ct_val ct_replace(ct_ctx *c, ct_str s, ct_str old, ct_str neu, int64_t count);

/* ---- evaluator entry used by builtins (eval.c) */
ct_val ct_call_value(ct_ctx *c, ct_val fn, ct_val *args, size_t nargs, const ct_str *kwn,
                     ct_val *kwv, size_t nkw);

#endif
