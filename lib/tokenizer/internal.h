/* Internal types of lib/tokenizer shared by the loader, the pipeline stages and the BPE model.
 * Not a public header: callers use include/ic/tokenizer.h. */
#ifndef IC_TOKENIZER_INTERNAL_H
#define IC_TOKENIZER_INTERNAL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/tokenizer.h"

/* ---- byte strings and pieces ---- */

/* A growable byte buffer (the pipeline's scratch text). */
typedef struct {
  char *p;
  size_t n, cap;
} tk_str;

int tk_str_reserve(tk_str *s, size_t extra);
int tk_str_put(tk_str *s, const char *p, size_t n);

/* One pre-token: bytes [off, off+len) of a piece list's text. `origin` is true when it starts at
 * original offset 0 of the input (Metaspace's prepend_scheme "first" asks). */
typedef struct {
  size_t off, len;
  bool origin;
} tk_piece;

typedef struct {
  tk_str text;
  tk_piece *v;
  size_t n, cap;
} tk_pieces;

int tk_pieces_push(tk_pieces *ps, size_t off, size_t len, bool origin);

/* ---- string -> id hash table (open addressing, keys in an arena) ---- */

typedef struct {
  uint64_t *hashes; /* 0 = empty slot */
  uint32_t *key_off, *key_len, *ids;
  size_t mask, count;
  tk_str arena;
} tk_vocab;

int tk_vocab_init(tk_vocab *v, size_t expected);
void tk_vocab_free(tk_vocab *v);
/* Inserts or overwrites (the last definition wins, like a Rust HashMap collect). */
int tk_vocab_put(tk_vocab *v, const char *k, size_t n, uint32_t id);
bool tk_vocab_get(const tk_vocab *v, const char *k, size_t n, uint32_t *id);

/* ---- normalizers ---- */

typedef enum {
  NM_SEQUENCE,
  NM_NFC,
  NM_NFD,
  NM_NFKC,
  NM_NFKD,
  NM_LOWERCASE,
  NM_REPLACE,
  NM_PREPEND,
  NM_STRIP
} tk_norm_kind;

typedef struct tk_norm {
  tk_norm_kind kind;
  struct tk_norm *children; /* NM_SEQUENCE */
  size_t nchildren;
  pcre2_code *re;   /* NM_REPLACE: the pattern (a literal is compiled escaped) */
  char *content;    /* NM_REPLACE replacement, NM_PREPEND prefix */
  bool left, right; /* NM_STRIP */
} tk_norm;

/* Appends the normalization of in[0..n) to out. */
int tk_norm_apply(const tk_norm *nm, const char *in, size_t n, tk_str *out);
void tk_norm_free(tk_norm *nm);

/* ---- pre-tokenizers ---- */

typedef enum {
  PT_SEQUENCE,
  PT_SPLIT,
  PT_BYTELEVEL,
  PT_DIGITS,
  PT_METASPACE,
  PT_WHITESPACE_SPLIT
} tk_pre_kind;

typedef enum {
  SB_REMOVED,
  SB_ISOLATED,
  SB_MERGED_PREV,
  SB_MERGED_NEXT,
  SB_CONTIGUOUS
} tk_split_behavior;

typedef struct tk_pre {
  tk_pre_kind kind;
  struct tk_pre *children;
  size_t nchildren;
  pcre2_code *re; /* PT_SPLIT, PT_BYTELEVEL with use_regex */
  tk_split_behavior behavior;
  bool invert;
  bool add_prefix_space;  /* PT_BYTELEVEL */
  bool individual_digits; /* PT_DIGITS */
  char replacement[8];    /* PT_METASPACE: UTF-8 of the replacement char */
  int prepend_scheme;     /* 0 always, 1 first, 2 never */
  bool split;             /* PT_METASPACE */
  bool vetted;            /* PT_SPLIT / PT_BYTELEVEL regex known to be local at split points */
} tk_pre;

/* Reusable buffers of the pre-tokenizer (kept per thread by the encoder: no allocation and no
 * page faults per call once warm). */
typedef struct {
  size_t s, e;
  bool m;
} tk_span;

typedef struct {
  pcre2_match_data *md;
  tk_piece *out; /* next stage's pieces; swapped with the piece list after each stage */
  size_t out_cap;
  tk_span *sp;
  size_t sp_n, sp_cap;
} tk_pre_scratch;

/* Splits every piece of ps in place (pieces may be rewritten into ps->text). */
int tk_pre_apply(const tk_pre *pt, tk_pieces *ps, tk_pre_scratch *sc);
void tk_pre_free(tk_pre *pt);
/* Regex with the Rust library's flavour: UTF, Unicode properties for \s \d \w. */
pcre2_code *tk_regex_compile(const char *pat, size_t len, bool literal, char *err, size_t errlen);

/* ---- added tokens ---- */

typedef struct {
  char *content;
  size_t len;
  uint32_t id;
  bool single_word, lstrip, rstrip, normalized, special;
} tk_added;

/* Byte trie over the contents of one class of added tokens (leftmost-longest matching). */
typedef struct {
  void *edges;    /* (node, byte) -> child node table (added.c) */
  int32_t *token; /* node -> added token index, or -1 */
  size_t nnodes, cap;
  bool first[256]; /* bytes that can start a match */
} tk_trie;

/* A split of text into runs: token >= 0 is an added token, -1 free text. */
typedef struct {
  size_t off, len;
  int32_t token;
} tk_run;

int tk_trie_add(tk_trie *tr, const char *s, size_t n, int32_t token);
void tk_trie_free(tk_trie *tr);
/* Appends the runs of text[0..n) (offset base added) to *runs; see the Rust AddedVocabulary. */
int tk_added_split(const tk_trie *tr, const tk_added *added, const char *text, size_t n,
                   size_t base, tk_run **runs, size_t *nruns, size_t *cap);

/* ---- BPE model ---- */

typedef struct {
  uint64_t *keys; /* (a << 32 | b) + 1; 0 = empty */
  uint32_t *rank, *merged;
  size_t mask;
} tk_merges;

typedef struct {
  tk_vocab vocab; /* in model space: raw bytes when byte_level */
  tk_merges merges;
  bool byte_level; /* units are bytes (ByteLevel pre-tokenizer); else UTF-8 chars */
  bool byte_fallback, fuse_unk, ignore_merges;
  bool has_unk;
  uint32_t unk_id;
  char *prefix, *suffix;  /* continuing_subword_prefix / end_of_word_suffix (NULL or non-empty) */
  uint32_t byte_ids[256]; /* byte_fallback "<0xXX>" ids (UINT32_MAX when absent) */
  /* SentencePiece-style words split before "\u2581" (see tk_bpe_split_point): enabled when no
   * token that merges can produce has "X\u2581" inside, except for X in `glue` (sorted). */
  bool meta_split;
  int32_t *glue;
  size_t nglue;
} tk_bpe;

int tk_merges_init(tk_merges *m, size_t expected);
int tk_merges_put(tk_merges *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t merged);
void tk_bpe_free(tk_bpe *b);
/* Next offset > from in w where the piece can be cut without changing its BPE result (0: none). */
size_t tk_bpe_split_point(const tk_bpe *b, const char *w, size_t n, size_t from);
/* Encodes one pre-token (model space bytes) appending ids. */
int tk_bpe_word(const tk_bpe *b, const char *w, size_t n, ic_tok_ids *ids);

/* ---- pre-token cache ---- */

/* Direct-mapped, one seqlock per slot: readers never block, a writer skips a busy slot. */
#define TK_CACHE_KEY 30
#define TK_CACHE_IDS 14
#define TK_CACHE_SLOTS 65536

typedef struct {
  _Atomic uint32_t seq; /* odd while being written */
  uint8_t klen, nids;
  char key[TK_CACHE_KEY];
  uint64_t hash;
  uint32_t ids[TK_CACHE_IDS];
} tk_cache_slot;

/* ---- the tokenizer ---- */

typedef struct {
  bool present;
  uint32_t *pre, *post; /* ids before and after the sequence */
  size_t npre, npost;
} tk_template;

struct ic_tokenizer {
  tk_norm *normalizer; /* NULL: none */
  tk_pre *pre;         /* NULL: none */
  tk_bpe bpe;
  tk_added *added;
  size_t nadded;
  tk_trie raw_trie, norm_trie; /* non-normalized / normalized added tokens */
  bool has_raw, has_norm;
  tk_template post;
  size_t vocab_size;
  bool splittable; /* see ic_tokenizer_split_point */
  char *chat_template, *bos_token, *eos_token;
  tk_cache_slot *cache; /* TK_CACHE_SLOTS */
  _Atomic uint64_t cache_hits, cache_misses;
};

/* Sets the formatted error text; returns IC_EINVAL. */
int tk_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rust's char::is_whitespace (Unicode White_Space). */
bool tk_is_white_space(int32_t c);

/* UTF-8 helpers. */
size_t tk_utf8_len(unsigned char lead); /* 1..4 for a lead byte of valid text */
/* The code point of the valid UTF-8 sequence t[s..e) (1 to 4 bytes). */
int32_t tk_utf8_decode(const char *t, size_t s, size_t e);
/* Appends one id (growing ids->v); 0 or IC_ENOMEM. */
int tk_ids_push(ic_tok_ids *ids, uint32_t id);
/* Returns a malloc'd copy with invalid sequences replaced by U+FFFD, or NULL when text is valid. */
char *tk_utf8_sanitize(const char *s, size_t n, size_t *outn, int *rc);

#endif
