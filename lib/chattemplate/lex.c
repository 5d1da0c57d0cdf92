/* Lexer of lib/chattemplate: template source -> tokens, with Jinja's whitespace control exactly
 * as jinja2 applies it under trim_blocks + lstrip_blocks (and `-`/`+` tag modifiers). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "lex.h"

typedef struct lexer {
  ct_arena *arena;
  const char *s;
  size_t n, pos;
  int line;
  ct_tok *toks;
  size_t ntoks, cap;
  char *err;
  size_t errlen;
  int code;
} lexer;

static int lfail(lexer *L, int code, const char *fmt, ...) {
  if (L->code) return L->code;
  int k = snprintf(L->err, L->errlen, "line %d: ", L->line);
  va_list ap;
  va_start(ap, fmt);
  if (k >= 0 && (size_t)k < L->errlen) vsnprintf(L->err + k, L->errlen - (size_t)k, fmt, ap);
  va_end(ap);
  L->code = code;
  return code;
}

static int line_of(const lexer *L, size_t upto, size_t from, int line) {
  for (size_t i = from; i < upto; i++)
    if (L->s[i] == '\n') line++;
  return line;
}

static ct_tok *push(lexer *L, int type) {
  if (L->ntoks == L->cap) {
    size_t cap = L->cap ? L->cap * 2 : 256;
    ct_tok *t = ct_arena_alloc(L->arena, cap * sizeof *t);
    if (!t) {
      lfail(L, IC_ERANGE, "template too large");
      return NULL;
    }
    if (L->ntoks) memcpy(t, L->toks, L->ntoks * sizeof *t);
    L->toks = t;
    L->cap = cap;
  }
  ct_tok *t = &L->toks[L->ntoks++];
  memset(t, 0, sizeof *t);
  t->type = (uint8_t)type;
  t->line = L->line;
  return t;
}

/* Python's str.isspace() for the code point at p (ASCII and the Unicode spaces). */
bool ct_u8_space_at(const char *p, size_t n, size_t *adv) {
  unsigned char c = (unsigned char)p[0];
  *adv = 1;
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return true;
  if (c < 0x80) return false;
  uint32_t cp;
  if ((c & 0xe0) == 0xc0 && n >= 2) {
    cp = ((uint32_t)(c & 0x1f) << 6) | (p[1] & 0x3f);
    *adv = 2;
  } else if ((c & 0xf0) == 0xe0 && n >= 3) {
    cp = ((uint32_t)(c & 0x0f) << 12) | ((uint32_t)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
    *adv = 3;
  } else {
    return false;
  }
  return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* Length of `p[0..n)` once trailing Python whitespace is removed (str.rstrip()). */
size_t ct_u8_rstrip_len(const char *p, size_t n) {
  size_t keep = 0, i = 0, adv;
  while (i < n) {
    bool sp = ct_u8_space_at(p + i, n - i, &adv);
    i += adv;
    if (!sp) keep = i;
  }
  return keep;
}

static void emit_data(lexer *L, size_t from, size_t to, int line) {
  if (to <= from) return;
  ct_tok *t = push(L, TK_DATA);
  if (!t) return;
  t->s.p = L->s + from;
  t->s.n = to - from;
  t->line = line;
}

/* Decodes a Python string literal body (what jinja does with unicode-escape). */
static int unescape(lexer *L, const char *p, size_t n, ct_str *out) {
  char *o = ct_arena_alloc(L->arena, n + 1);
  if (!o) return lfail(L, IC_ERANGE, "template too large");
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = p[i];
    if (ch != '\\' || i + 1 >= n) {
      o[k++] = ch;
      continue;
    }
    char e = p[++i];
    uint32_t cp = 0;
    int digits = 0;
    switch (e) {
    case '\n': continue;
    case '\\': o[k++] = '\\'; continue;
    case '\'': o[k++] = '\''; continue;
    case '"': o[k++] = '"'; continue;
    case 'a': o[k++] = '\a'; continue;
    case 'b': o[k++] = '\b'; continue;
    case 'f': o[k++] = '\f'; continue;
    case 'n': o[k++] = '\n'; continue;
    case 'r': o[k++] = '\r'; continue;
    case 't': o[k++] = '\t'; continue;
    case 'v': o[k++] = '\v'; continue;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    case 'N': return lfail(L, IC_EINVAL, "unsupported \\N{...} escape in a string literal");
    default:
      if (e >= '0' && e <= '7') {
        size_t j = i;
        for (int d = 0; d < 3 && j < n && p[j] >= '0' && p[j] <= '7'; d++, j++)
          cp = cp * 8 + (uint32_t)(p[j] - '0');
        i = j - 1;
        goto put_cp;
      }
      o[k++] = '\\';
      o[k++] = e;
      continue;
    }
    for (int d = 0; d < digits; d++) {
      if (i + 1 >= n) return lfail(L, IC_EINVAL, "truncated \\%c escape in a string literal", e);
      char h = p[++i];
      int v = (h >= '0' && h <= '9')   ? h - '0'
              : (h >= 'a' && h <= 'f') ? h - 'a' + 10
              : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                       : -1;
      if (v < 0) return lfail(L, IC_EINVAL, "truncated \\%c escape in a string literal", e);
      cp = cp * 16 + (uint32_t)v;
    }
  put_cp:
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return lfail(L, IC_EINVAL, "escape out of Unicode range in a string literal");
    if (cp < 0x80) {
      o[k++] = (char)cp;
    } else if (cp < 0x800) {
      o[k++] = (char)(0xc0 | (cp >> 6));
      o[k++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      o[k++] = (char)(0xe0 | (cp >> 12));
      o[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
      o[k++] = (char)(0x80 | (cp & 0x3f));
    } else {
      o[k++] = (char)(0xf0 | (cp >> 18));
      o[k++] = (char)(0x80 | ((cp >> 12) & 0x3f));
      o[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
      o[k++] = (char)(0x80 | (cp & 0x3f));
    }
  }
  out->p = o;
  out->n = k;
  return 0;
}

static bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Digits with single '_' separators, as Python and jinja accept them. */
static size_t digits_at(const char *s, size_t n, size_t i) {
  size_t j = i;
  while (j < n && is_digit(s[j])) {
    j++;
    if (j + 1 < n && s[j] == '_' && is_digit(s[j + 1])) j++;
  }
  return j - i;
}

/* Tokens of one `{{ }}` / `{% %}` tag starting after its opener; returns the position after the
 * closer (and the whitespace it swallows). `block`: closes with %} (trim_blocks applies). */
static size_t lex_tag(lexer *L, size_t i, bool block, bool *line_starting) {
  const char *s = L->s;
  size_t n = L->n;
  int balance = 0;
  char close = block ? '%' : '}';
  while (i < n) {
    char ch = s[i];
    if (is_space(ch)) {
      if (ch == '\n') L->line++;
      i++;
      continue;
    }
    if (balance == 0) {
      /* closers: -%} (eat all following whitespace), +%}, %} (+ one newline), -}}, }} */
      if (ch == '-' && i + 2 < n && s[i + 1] == close && s[i + 2] == '}') {
        push(L, block ? TK_BLOCK_END : TK_VAR_END);
        i += 3;
        while (i < n && is_space(s[i])) {
          if (s[i] == '\n') L->line++;
          i++;
        }
        *line_starting = i > 0 && s[i - 1] == '\n';
        return i;
      }
      if (block && ch == '+' && i + 2 < n && s[i + 1] == '%' && s[i + 2] == '}') {
        push(L, TK_BLOCK_END);
        *line_starting = false;
        return i + 3;
      }
      if (ch == close && i + 1 < n && s[i + 1] == '}') {
        push(L, block ? TK_BLOCK_END : TK_VAR_END);
        i += 2;
        *line_starting = false;
        if (block && i < n && s[i] == '\n') {
          L->line++;
          i++;
          *line_starting = true;
        }
        return i;
      }
    }
    ct_tok *t;
    if (is_name_start(ch)) {
      size_t j = i + 1;
      while (j < n && (is_name_start(s[j]) || is_digit(s[j])))
        j++;
      if (!(t = push(L, TK_NAME))) return n;
      t->s.p = s + i;
      t->s.n = j - i;
      i = j;
      continue;
    }
    if (ch == '\'' || ch == '"') {
      size_t j = i + 1;
      int line = L->line;
      while (j < n && s[j] != ch) {
        if (s[j] == '\\' && j + 1 < n) j++;
        if (s[j] == '\n') L->line++;
        j++;
      }
      if (j >= n) {
        L->line = line;
        lfail(L, IC_EINVAL, "unterminated string literal");
        return n;
      }
      if (!(t = push(L, TK_STRING))) return n;
      t->line = line;
      if (unescape(L, s + i + 1, j - i - 1, &t->s)) return n;
      i = j + 1;
      continue;
    }
    if (is_digit(ch)) {
      size_t j = i + digits_at(s, n, i);
      bool isf = false;
      if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
        j += 1 + digits_at(s, n, j + 1);
        isf = true;
      }
      if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (s[k] == '+' || s[k] == '-')) k++;
        size_t d = digits_at(s, n, k);
        if (d) {
          j = k + d;
          isf = true;
        }
      }
      char buf[64];
      size_t m = 0;
      for (size_t q = i; q < j && m < sizeof buf - 1; q++)
        if (s[q] != '_') buf[m++] = s[q];
      buf[m] = 0;
      if (!(t = push(L, isf ? TK_FLOAT : TK_INT))) return n;
      if (isf) {
        t->f = strtod(buf, NULL);
      } else {
        errno = 0;
        unsigned long long v = strtoull(buf, NULL, 10);
        if (errno || v > INT64_MAX) {
          lfail(L, IC_ERANGE, "integer literal %s beyond 64 bits", buf);
          return n;
        }
        t->i = (int64_t)v;
      }
      i = j;
      continue;
    }
    static const char *ops2[] = {"//", "**", "==", "!=", "<=", ">="};
    bool two = false;
    for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
      if (i + 1 < n && s[i] == ops2[k][0] && s[i + 1] == ops2[k][1]) two = true;
    if (two || strchr("+-*/%~=<>.,:|()[]{}", ch)) {
      if (ch == '\0') goto bad;
      if (!(t = push(L, TK_OP))) return n;
      t->s.p = s + i;
      t->s.n = two ? 2 : 1;
      if (!two) {
        if (ch == '(' || ch == '[' || ch == '{') balance++;
        if ((ch == ')' || ch == ']' || ch == '}') && balance > 0) balance--;
      }
      i += two ? 2 : 1;
      continue;
    }
  bad:
    if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f)
      lfail(L, IC_EINVAL, "unexpected byte 0x%02x inside a tag", (unsigned char)ch);
    else
      lfail(L, IC_EINVAL, "unexpected character '%c' inside a tag", ch);
    return n;
  }
  lfail(L, IC_EINVAL, "unexpected end of template: missing '%s'", block ? "%}" : "}}");
  return n;
}

/* `{% raw %}`: true when the tag at i (after its opener and modifier) is `raw %}`. */
static bool raw_open_at(const lexer *L, size_t i, size_t *after) {
  const char *s = L->s;
  size_t n = L->n;
  while (i < n && is_space(s[i]))
    i++;
  if (i + 3 > n || memcmp(s + i, "raw", 3) != 0) return false;
  i += 3;
  if (i < n && (is_name_start(s[i]) || is_digit(s[i]))) return false;
  while (i < n && is_space(s[i]))
    i++;
  if (i + 2 <= n && s[i] == '%' && s[i + 1] == '}') {
    *after = i + 2;
    return true;
  }
  if (i + 3 <= n && s[i] == '-' && s[i + 1] == '%' && s[i + 2] == '}') {
    i += 3;
    while (i < n && is_space(s[i]))
      i++;
    *after = i;
    return true;
  }
  return false;
}

static size_t lex_raw(lexer *L, size_t i, bool *line_starting) {
  const char *s = L->s;
  size_t n = L->n;
  for (size_t j = i; j + 1 < n; j++) {
    if (s[j] != '{' || s[j + 1] != '%') continue;
    size_t k = j + 2;
    bool strip = k < n && s[k] == '-';
    if (k < n && (s[k] == '-' || s[k] == '+')) k++;
    while (k < n && is_space(s[k]))
      k++;
    if (k + 6 > n || memcmp(s + k, "endraw", 6) != 0) continue;
    k += 6;
    while (k < n && is_space(s[k]))
      k++;
    size_t end = strip ? i + ct_u8_rstrip_len(s + i, j - i) : j;
    int line = L->line;
    if (k + 2 <= n && s[k] == '%' && s[k + 1] == '}') {
      k += 2;
      *line_starting = false;
      if (k < n && s[k] == '\n') {
        k++;
        *line_starting = true;
      }
    } else if (k + 3 <= n && s[k] == '-' && s[k + 1] == '%' && s[k + 2] == '}') {
      k += 3;
      while (k < n && is_space(s[k]))
        k++;
      *line_starting = s[k - 1] == '\n';
    } else if (k + 3 <= n && s[k] == '+' && s[k + 1] == '%' && s[k + 2] == '}') {
      k += 3;
      *line_starting = false;
    } else {
      continue;
    }
    emit_data(L, i, end, line);
    L->line = line_of(L, k, i, line);
    return k;
  }
  lfail(L, IC_EINVAL, "missing {%% endraw %%}");
  return n;
}

int ct_lex(ct_arena *arena, const char *src, size_t len, ct_tok **toks, size_t *ntoks, char *err,
           size_t errlen) {
  lexer L = {.arena = arena, .line = 1, .err = err, .errlen = errlen};
  /* jinja normalizes every newline to \n and drops one trailing newline (keep_trailing_newline
   * is off in the Hugging Face environment). */
  char *s = ct_arena_alloc(arena, len + 1);
  if (!s) return lfail(&L, IC_ERANGE, "template too large");
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (src[i] == '\r') {
      s[n++] = '\n';
      if (i + 1 < len && src[i + 1] == '\n') i++;
    } else {
      s[n++] = src[i];
    }
  }
  if (n && s[n - 1] == '\n') n--;
  L.s = s;
  L.n = n;
  bool line_starting = true;
  size_t i = 0;
  while (i < n && !L.code) {
    size_t j = i;
    while (j + 1 < n && !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')))
      j++;
    if (j + 1 >= n) {
      emit_data(&L, i, n, L.line);
      break;
    }
    char kind = s[j + 1];
    char mod = j + 2 < n ? s[j + 2] : 0;
    size_t end = j;
    int dline = L.line;
    if (mod == '-') {
      end = i + ct_u8_rstrip_len(s + i, j - i);
    } else if (kind != '{' && mod != '+') {
      size_t l_pos = j;
      while (l_pos > i && s[l_pos - 1] != '\n')
        l_pos--;
      if (l_pos > i || line_starting) {
        bool only_ws = true;
        for (size_t q = l_pos; q < j; q++)
          if (s[q] != ' ' && s[q] != '\t') only_ws = false;
        if (only_ws) end = l_pos;
      }
    }
    emit_data(&L, i, end, dline);
    L.line = line_of(&L, j, i, L.line);
    size_t body = j + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
    if (kind == '#') {
      size_t k = body;
      while (k + 1 < n && !(s[k] == '#' && s[k + 1] == '}'))
        k++;
      if (k + 1 >= n) return lfail(&L, IC_EINVAL, "missing end of comment tag");
      size_t after = k + 2;
      line_starting = false;
      if (k > body && s[k - 1] == '-') {
        while (after < n && is_space(s[after]))
          after++;
        line_starting = s[after - 1] == '\n';
      } else if (!(k > body && s[k - 1] == '+') && after < n && s[after] == '\n') {
        after++;
        line_starting = true;
      }
      L.line = line_of(&L, after, j, L.line);
      i = after;
      continue;
    }
    size_t after;
    if (kind == '%' && raw_open_at(&L, body, &after)) {
      L.line = line_of(&L, after, j, L.line);
      i = lex_raw(&L, after, &line_starting);
      continue;
    }
    push(&L, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN);
    i = lex_tag(&L, body, kind == '%', &line_starting);
  }
  if (L.code) return L.code;
  if (!push(&L, TK_EOF)) return L.code;
  *toks = L.toks;
  *ntoks = L.ntoks;
  return 0;
}
