/* Tokens of lib/chattemplate's lexer (lex.c), consumed by the parser (parse.c).
 * Text between tags arrives as TK_DATA with whitespace control already applied. */
#ifndef IC_CHATTEMPLATE_LEX_H
#define IC_CHATTEMPLATE_LEX_H
#include "internal.h"

enum {
  TK_EOF,
  TK_DATA,
  TK_VAR_BEGIN,
  TK_VAR_END,
  TK_BLOCK_BEGIN,
  TK_BLOCK_END,
  TK_NAME,
  TK_STRING,
  TK_INT,
  TK_FLOAT,
  TK_OP,
};

typedef struct ct_tok {
  uint8_t type;
  int line;
  ct_str s; /* name, operator, data text, or the decoded string literal */
  int64_t i;
  double f;
} ct_tok;

int ct_lex(ct_arena *arena, const char *src, size_t len, ct_tok **toks, size_t *ntoks, char *err,
           size_t errlen);
size_t ct_u8_rstrip_len(const char *p, size_t n);

#endif
