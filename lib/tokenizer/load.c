/* Loader: tokenizer.json -> normalizer, pre-tokenizer, BPE model, added tokens, post-processor;
 * tokenizer_config.json -> chat template and bos/eos strings. Anything unknown is an error. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/err.h"
#include "internal.h"

static const char *type_of(json_t *o) { return json_string_value(json_object_get(o, "type")); }

static bool flag(json_t *o, const char *k, bool dflt) {
  json_t *v = json_object_get(o, k);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s);
  char *p = malloc(n + 1);
  if (p) memcpy(p, s, n + 1);
  return p;
}

/* A {"String": s} or {"Regex": r} pattern compiled with the Rust library's regex flavour. */
static pcre2_code *pattern(json_t *p, const char *where, char *err) {
  json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
  char rxerr[200];
  pcre2_code *re = NULL;
  if (json_is_string(s)) {
    if (!json_string_length(s)) {
      tk_fail(err, "%s: empty String pattern is not supported", where);
      return NULL;
    }
    re = tk_regex_compile(json_string_value(s), json_string_length(s), true, rxerr, sizeof rxerr);
  } else if (json_is_string(r)) {
    re = tk_regex_compile(json_string_value(r), json_string_length(r), false, rxerr, sizeof rxerr);
  } else {
    tk_fail(err, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", where);
    return NULL;
  }
  if (!re) tk_fail(err, "%s: %s", where, rxerr);
  return re;
}

static int load_norm(json_t *o, tk_norm *nm, char *err, int depth) {
  memset(nm, 0, sizeof *nm);
  const char *t = type_of(o);
  if (!t) return tk_fail(err, "normalizer without a \"type\"");
  if (depth > 8) return tk_fail(err, "normalizer Sequence nested too deeply");
  if (!strcmp(t, "Sequence")) {
    json_t *a = json_object_get(o, "normalizers");
    if (!json_is_array(a)) return tk_fail(err, "normalizer Sequence without \"normalizers\"");
    nm->kind = NM_SEQUENCE;
    nm->children = calloc(json_array_size(a) + 1, sizeof *nm->children);
    if (!nm->children) return IC_ENOMEM;
    for (size_t i = 0; i < json_array_size(a); i++) {
      int rc = load_norm(json_array_get(a, i), &nm->children[i], err, depth + 1);
      nm->nchildren = i + 1;
      if (rc) return rc;
    }
    return 0;
  }
  if (!strcmp(t, "NFC"))
    nm->kind = NM_NFC;
  else if (!strcmp(t, "NFD"))
    nm->kind = NM_NFD;
  else if (!strcmp(t, "NFKC"))
    nm->kind = NM_NFKC;
  else if (!strcmp(t, "NFKD"))
    nm->kind = NM_NFKD;
  else if (!strcmp(t, "Lowercase"))
    nm->kind = NM_LOWERCASE;
  else if (!strcmp(t, "Strip")) {
    nm->kind = NM_STRIP;
    nm->left = flag(o, "strip_left", true);
    nm->right = flag(o, "strip_right", true);
  } else if (!strcmp(t, "Prepend")) {
    const char *p = json_string_value(json_object_get(o, "prepend"));
    if (!p) return tk_fail(err, "normalizer Prepend without \"prepend\"");
    nm->kind = NM_PREPEND;
    if (!(nm->content = dup_str(p))) return IC_ENOMEM;
  } else if (!strcmp(t, "Replace")) {
    const char *c = json_string_value(json_object_get(o, "content"));
    if (!c) return tk_fail(err, "normalizer Replace without \"content\"");
    nm->kind = NM_REPLACE;
    if (!(nm->content = dup_str(c))) return IC_ENOMEM;
    if (!(nm->re = pattern(json_object_get(o, "pattern"), "normalizer Replace", err)))
      return IC_EINVAL;
  } else {
    return tk_fail(err, "unsupported normalizer type \"%s\"", t);
  }
  return 0;
}

static int behavior(const char *b, tk_split_behavior *out) {
  static const struct {
    const char *name;
    tk_split_behavior b;
  } names[] = {{"Removed", SB_REMOVED},
               {"Isolated", SB_ISOLATED},
               {"MergedWithPrevious", SB_MERGED_PREV},
               {"MergedWithNext", SB_MERGED_NEXT},
               {"Contiguous", SB_CONTIGUOUS}};
  for (size_t i = 0; b && i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(b, names[i].name)) return *out = names[i].b, 0;
  return -1;
}

/* The GPT-2 pattern the ByteLevel pre-tokenizer uses when use_regex is true. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Pre-tokenizer regexes checked (by reading them, and by the split-point tests against the
 * oracle) to end every match before a space that follows an ASCII letter and before an ASCII
 * letter that follows a newline, looking no further than that byte: Llama 3, Qwen 2.5/3,
 * DeepSeek V3 (three stages), gpt-oss, and GPT-2's ByteLevel pattern. */
static const char *const vetted_patterns[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'"
    "s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}"
    "\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "\\p{N}{1,3}",
};

static bool is_vetted(const char *pat) {
  for (size_t i = 0; i < sizeof vetted_patterns / sizeof vetted_patterns[0]; i++)
    if (!strcmp(pat, vetted_patterns[i])) return true;
  return false;
}

static int load_pre(json_t *o, tk_pre *pt, char *err, int depth) {
  memset(pt, 0, sizeof *pt);
  const char *t = type_of(o);
  if (!t) return tk_fail(err, "pre_tokenizer without a \"type\"");
  if (depth > 8) return tk_fail(err, "pre_tokenizer Sequence nested too deeply");
  if (!strcmp(t, "Sequence")) {
    json_t *a = json_object_get(o, "pretokenizers");
    if (!json_is_array(a)) return tk_fail(err, "pre_tokenizer Sequence without \"pretokenizers\"");
    pt->kind = PT_SEQUENCE;
    pt->children = calloc(json_array_size(a) + 1, sizeof *pt->children);
    if (!pt->children) return IC_ENOMEM;
    for (size_t i = 0; i < json_array_size(a); i++) {
      int rc = load_pre(json_array_get(a, i), &pt->children[i], err, depth + 1);
      pt->nchildren = i + 1;
      if (rc) return rc;
    }
    return 0;
  }
  if (!strcmp(t, "Split")) {
    pt->kind = PT_SPLIT;
    if (behavior(json_string_value(json_object_get(o, "behavior")), &pt->behavior))
      return tk_fail(err, "pre_tokenizer Split: unknown behavior");
    pt->invert = flag(o, "invert", false);
    if (!(pt->re = pattern(json_object_get(o, "pattern"), "pre_tokenizer Split", err)))
      return IC_EINVAL;
    const char *rx = json_string_value(json_object_get(json_object_get(o, "pattern"), "Regex"));
    pt->vetted = rx && is_vetted(rx) && pt->behavior == SB_ISOLATED && !pt->invert;
  } else if (!strcmp(t, "ByteLevel")) {
    pt->kind = PT_BYTELEVEL;
    pt->add_prefix_space = flag(o, "add_prefix_space", true);
    pt->vetted = !pt->add_prefix_space; /* the GPT-2 pattern (or none) is local at split points */
    if (flag(o, "use_regex", true)) {
      char rxerr[200];
      pt->re = tk_regex_compile(gpt2_pattern, sizeof gpt2_pattern - 1, false, rxerr, sizeof rxerr);
      if (!pt->re) return tk_fail(err, "pre_tokenizer ByteLevel: %s", rxerr);
    }
  } else if (!strcmp(t, "Digits")) {
    pt->kind = PT_DIGITS;
    pt->vetted = true; /* splits at digits only */
    pt->individual_digits = flag(o, "individual_digits", false);
  } else if (!strcmp(t, "WhitespaceSplit")) {
    pt->kind = PT_WHITESPACE_SPLIT;
  } else if (!strcmp(t, "Metaspace")) {
    pt->kind = PT_METASPACE;
    const char *r = json_string_value(json_object_get(o, "replacement"));
    if (!r || !*r || strlen(r) > 4 || tk_utf8_len((unsigned char)r[0]) != strlen(r))
      return tk_fail(err, "pre_tokenizer Metaspace: \"replacement\" must be one character");
    strcpy(pt->replacement, r);
    const char *ps = json_string_value(json_object_get(o, "prepend_scheme"));
    if (!ps)
      pt->prepend_scheme = flag(o, "add_prefix_space", true) ? 0 : 2;
    else if (!strcmp(ps, "always"))
      pt->prepend_scheme = 0;
    else if (!strcmp(ps, "first"))
      pt->prepend_scheme = 1;
    else if (!strcmp(ps, "never"))
      pt->prepend_scheme = 2;
    else
      return tk_fail(err, "pre_tokenizer Metaspace: unknown prepend_scheme \"%s\"", ps);
    pt->split = flag(o, "split", true);
  } else {
    return tk_fail(err, "unsupported pre_tokenizer type \"%s\"", t);
  }
  return 0;
}

/* ByteLevel maps every byte to a char before the model sees it; we instead keep raw bytes and
 * convert the vocabulary, which only works when ByteLevel is the last pre-tokenizer stage. */
static int byte_level_position(const tk_pre *pt, bool last, bool *found, char *err) {
  if (pt->kind == PT_SEQUENCE) {
    for (size_t i = 0; i < pt->nchildren; i++) {
      int rc = byte_level_position(&pt->children[i], last && i + 1 == pt->nchildren, found, err);
      if (rc) return rc;
    }
    return 0;
  }
  if (pt->kind != PT_BYTELEVEL) return 0;
  if (!last || *found)
    return tk_fail(err, "unsupported pre_tokenizer layout: ByteLevel must be the last stage");
  *found = true;
  return 0;
}

/* The GPT-2 byte <-> char alphabet: printable Latin-1 bytes map to themselves, the rest to 256+. */
static void byte_alphabet(int32_t cp_to_byte[324]) {
  for (int i = 0; i < 324; i++)
    cp_to_byte[i] = -1;
  int extra = 0;
  for (int b = 0; b < 256; b++) {
    bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    cp_to_byte[self ? b : 256 + extra++] = b;
  }
}

/* Converts a byte-level vocab string to raw bytes; false when it has a char outside the alphabet.
 */
static bool from_byte_level(const char *s, size_t n, const int32_t map[324], char *out,
                            size_t *outn) {
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    int32_t cp;
    size_t l = tk_utf8_len(c);
    if (i + l > n) return false;
    if (l == 1)
      cp = c;
    else if (l == 2)
      cp = (c & 0x1F) << 6 | (s[i + 1] & 0x3F);
    else
      return false;
    if (cp >= 324 || map[cp] < 0) return false;
    out[k++] = (char)map[cp];
    i += l;
  }
  *outn = k;
  return true;
}

/* Records every char X that a merge result holds right before "\u2581" (so a word may not be cut
 * between them): the SentencePiece meta-space split is exact at every other X|"\u2581". */
static int note_glue(tk_bpe *b, const char *t, size_t n) {
  for (size_t i = 1; i + 3 <= n; i++) {
    if (memcmp(t + i, "\xe2\x96\x81", 3)) continue;
    size_t s = i - 1;
    while (s > 0 && ((unsigned char)t[s] & 0xC0) == 0x80)
      s--;
    if (i - s == 3 && !memcmp(t + s, "\xe2\x96\x81", 3)) continue; /* runs of the meta space */
    int32_t cp = tk_utf8_decode(t, s, i);
    bool have = false;
    for (size_t k = 0; k < b->nglue; k++)
      have |= b->glue[k] == cp;
    if (have) continue;
    int32_t *g = realloc(b->glue, (b->nglue + 1) * sizeof *g);
    if (!g) return IC_ENOMEM;
    b->glue = g;
    b->glue[b->nglue++] = cp;
  }
  return 0;
}

/* For a byte-level model the string-space vocabulary is handed back in *sv_keep (added tokens
 * are looked up by their text there); otherwise *sv_keep stays empty and b->vocab serves. */
static int load_model(json_t *m, tk_bpe *b, bool byte_level, size_t *vocab_size, tk_vocab *sv_keep,
                      char *err) {
  const char *t = type_of(m);
  if (!t) {
    /* Old files omit the model type; only a BPE has merges. */
    if (!json_object_get(m, "merges")) return tk_fail(err, "model without a \"type\"");
    t = "BPE";
  }
  if (strcmp(t, "BPE")) return tk_fail(err, "unsupported model type \"%s\"", t);
  json_t *dropout = json_object_get(m, "dropout");
  if (json_is_number(dropout) && json_number_value(dropout) != 0.0)
    return tk_fail(err, "model BPE: dropout is random and not supported");
  json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
  if (!json_is_object(vocab) || !json_is_array(merges))
    return tk_fail(err, "model BPE: \"vocab\" must be an object and \"merges\" an array");
  b->byte_fallback = flag(m, "byte_fallback", false);
  b->fuse_unk = flag(m, "fuse_unk", false);
  b->ignore_merges = flag(m, "ignore_merges", false);
  b->byte_level = byte_level;
  const char *pre = json_string_value(json_object_get(m, "continuing_subword_prefix"));
  const char *suf = json_string_value(json_object_get(m, "end_of_word_suffix"));
  if (pre && *pre && !(b->prefix = dup_str(pre))) return IC_ENOMEM;
  if (suf && *suf && !(b->suffix = dup_str(suf))) return IC_ENOMEM;
  if ((b->prefix || b->suffix) && byte_level)
    return tk_fail(
        err,
        "model BPE: continuing_subword_prefix/end_of_word_suffix with ByteLevel is not supported");

  tk_vocab sv;
  if (tk_vocab_init(&sv, json_object_size(vocab))) return IC_ENOMEM;
  const char *key;
  json_t *val;
  size_t maxid = 0;
  json_object_foreach(vocab, key, val) {
    json_int_t id = json_integer_value(val);
    if (!json_is_integer(val) || id < 0 || id >= (json_int_t)UINT32_MAX - 1) {
      tk_vocab_free(&sv);
      return tk_fail(err, "model BPE: vocab id of \"%.40s\" is not a valid id", key);
    }
    if (tk_vocab_put(&sv, key, strlen(key), (uint32_t)id)) {
      tk_vocab_free(&sv);
      return IC_ENOMEM;
    }
    if ((size_t)id + 1 > maxid) maxid = (size_t)id + 1;
  }
  *vocab_size = maxid;
  int rc = tk_merges_init(&b->merges, json_array_size(merges));
  size_t plen = b->prefix ? strlen(b->prefix) : 0;
  tk_str scratch = {0};
  for (size_t i = 0; !rc && i < json_array_size(merges); i++) {
    json_t *e = json_array_get(merges, i);
    const char *a, *c;
    size_t al, cl;
    if (json_is_string(e)) {
      /* Legacy "a b": exactly one space. */
      const char *s = json_string_value(e), *sp = strchr(s, ' ');
      if (!sp || strchr(sp + 1, ' ')) {
        rc = tk_fail(err, "model BPE: merge %zu is not \"a b\"", i);
        break;
      }
      a = s, al = (size_t)(sp - s), c = sp + 1, cl = strlen(sp + 1);
    } else if (json_is_array(e) && json_array_size(e) == 2 &&
               json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
      a = json_string_value(json_array_get(e, 0)), al = json_string_length(json_array_get(e, 0));
      c = json_string_value(json_array_get(e, 1)), cl = json_string_length(json_array_get(e, 1));
    } else {
      rc = tk_fail(err, "model BPE: merge %zu is neither \"a b\" nor [a, b]", i);
      break;
    }
    uint32_t ia, ic, inew;
    if (!tk_vocab_get(&sv, a, al, &ia) || !tk_vocab_get(&sv, c, cl, &ic)) {
      rc = tk_fail(err, "model BPE: merge %zu uses a token missing from the vocab", i);
      break;
    }
    size_t skip = plen && cl >= plen && !memcmp(c, b->prefix, plen) ? plen : 0;
    scratch.n = 0;
    if (tk_str_put(&scratch, a, al) || tk_str_put(&scratch, c + skip, cl - skip)) {
      rc = IC_ENOMEM;
      break;
    }
    if (!tk_vocab_get(&sv, scratch.p, scratch.n, &inew)) {
      rc = tk_fail(err, "model BPE: merge %zu produces a token missing from the vocab", i);
      break;
    }
    tk_merges_put(&b->merges, ia, ic, (uint32_t)i, inew);
    if (!byte_level && note_glue(b, scratch.p, scratch.n)) {
      rc = IC_ENOMEM;
      break;
    }
  }
  free(scratch.p);
  for (int x = 0; x < 256; x++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", x);
    if (!b->byte_fallback || !tk_vocab_get(&sv, name, 6, &b->byte_ids[x]))
      b->byte_ids[x] = UINT32_MAX;
  }
  {
    uint32_t meta;
    /* ignore_merges can emit any vocab token whole, and a prefix/suffix changes the unit lookups
     * at a cut: both keep words whole. Too many glue chars means the vocab joins words freely. */
    b->meta_split = !byte_level && !rc && !b->ignore_merges && !b->prefix && !b->suffix &&
                    b->nglue <= 64 && tk_vocab_get(&sv, "\xe2\x96\x81", 3, &meta);
  }
  const char *unk = json_string_value(json_object_get(m, "unk_token"));
  if (!rc && unk) {
    if (!tk_vocab_get(&sv, unk, strlen(unk), &b->unk_id))
      rc = tk_fail(err, "model BPE: unk_token \"%.40s\" is not in the vocab", unk);
    b->has_unk = true;
  }
  if (rc || !byte_level) {
    if (rc)
      tk_vocab_free(&sv);
    else
      b->vocab = sv;
    return rc;
  }
  int32_t map[324];
  byte_alphabet(map);
  if (tk_vocab_init(&b->vocab, sv.count)) {
    tk_vocab_free(&sv);
    return IC_ENOMEM;
  }
  for (size_t j = 0; j <= sv.mask && !rc; j++) {
    if (!sv.hashes[j]) continue;
    char buf[1024];
    size_t n;
    if (sv.key_len[j] > sizeof buf) continue;
    if (from_byte_level(sv.arena.p + sv.key_off[j], sv.key_len[j], map, buf, &n))
      rc = tk_vocab_put(&b->vocab, buf, n, sv.ids[j]);
  }
  if (rc)
    tk_vocab_free(&sv);
  else
    *sv_keep = sv;
  return rc;
}

/* Post-processor: collects the ids the single-sequence template puts before/after the text. */
static int load_post(json_t *o, tk_template *tp, char *err, int depth) {
  if (!o || json_is_null(o)) return 0;
  const char *t = type_of(o);
  if (!t) return tk_fail(err, "post_processor without a \"type\"");
  if (depth > 8) return tk_fail(err, "post_processor Sequence nested too deeply");
  if (!strcmp(t, "ByteLevel")) return 0; /* offsets only */
  if (!strcmp(t, "Sequence")) {
    json_t *a = json_object_get(o, "processors");
    if (!json_is_array(a)) return tk_fail(err, "post_processor Sequence without \"processors\"");
    for (size_t i = 0; i < json_array_size(a); i++) {
      int rc = load_post(json_array_get(a, i), tp, err, depth + 1);
      if (rc) return rc;
    }
    return 0;
  }
  if (tp->present) return tk_fail(err, "post_processor: more than one template in a Sequence");
  tp->present = true;
  if (!strcmp(t, "BertProcessing") || !strcmp(t, "RobertaProcessing")) {
    json_t *cls = json_object_get(o, "cls"), *sep = json_object_get(o, "sep");
    if (!json_is_integer(json_array_get(cls, 1)) || !json_is_integer(json_array_get(sep, 1)))
      return tk_fail(err, "post_processor %s: cls/sep must be [token, id]", t);
    tp->pre = malloc(sizeof *tp->pre);
    tp->post = malloc(sizeof *tp->post);
    if (!tp->pre || !tp->post) return IC_ENOMEM;
    tp->pre[0] = (uint32_t)json_integer_value(json_array_get(cls, 1));
    tp->post[0] = (uint32_t)json_integer_value(json_array_get(sep, 1));
    tp->npre = tp->npost = 1;
    return 0;
  }
  if (strcmp(t, "TemplateProcessing"))
    return tk_fail(err, "unsupported post_processor type \"%s\"", t);
  json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
  if (!json_is_array(single))
    return tk_fail(err, "post_processor TemplateProcessing without \"single\"");
  bool seen_seq = false;
  for (size_t i = 0; i < json_array_size(single); i++) {
    json_t *item = json_array_get(single, i), *sp = json_object_get(item, "SpecialToken"),
           *sq = json_object_get(item, "Sequence");
    if (sq) {
      const char *id = json_string_value(json_object_get(sq, "id"));
      if (!id || strcmp(id, "A") || seen_seq)
        return tk_fail(
            err, "post_processor TemplateProcessing: single template must hold sequence A once");
      seen_seq = true;
      continue;
    }
    const char *name = json_string_value(json_object_get(sp, "id"));
    json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
    if (!name || !json_is_array(ids))
      return tk_fail(err, "post_processor TemplateProcessing: special token %s is not defined",
                     name ? name : "(unnamed)");
    for (size_t k = 0; k < json_array_size(ids); k++) {
      uint32_t **v = seen_seq ? &tp->post : &tp->pre;
      size_t *n = seen_seq ? &tp->npost : &tp->npre;
      uint32_t *g = realloc(*v, (*n + 1) * sizeof *g);
      if (!g) return IC_ENOMEM;
      *v = g;
      json_t *x = json_array_get(ids, k);
      if (!json_is_integer(x) || json_integer_value(x) < 0 ||
          json_integer_value(x) > UINT32_MAX - 1)
        return tk_fail(err, "post_processor TemplateProcessing: bad id for %s", name);
      g[(*n)++] = (uint32_t)json_integer_value(x);
    }
  }
  if (!seen_seq)
    return tk_fail(err, "post_processor TemplateProcessing: single template lacks sequence A");
  return 0;
}

/* Added tokens get ids like the Rust AddedVocabulary: the model's id for a content it already
 * has, else the next id after the vocabulary. Normalized ones are matched after normalization. */
static int load_added(json_t *arr, ic_tokenizer *t, const tk_vocab *sv, char *err) {
  size_t n = json_array_size(arr);
  if (arr && !json_is_null(arr) && !json_is_array(arr))
    return tk_fail(err, "\"added_tokens\" must be an array");
  t->added = calloc(n + 1, sizeof *t->added);
  if (!t->added) return IC_ENOMEM;
  const tk_vocab *model_vocab = sv->hashes ? sv : &t->bpe.vocab;
  size_t model_size = model_vocab->count, max_added = 0;
  bool any_added = false;
  tk_vocab seen;
  if (tk_vocab_init(&seen, n + 1)) return IC_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    json_t *o = json_array_get(arr, i);
    json_t *c = json_object_get(o, "content");
    if (!json_is_string(c) || !json_string_length(c)) {
      rc = tk_fail(err, "added_tokens[%zu]: \"content\" must be a non-empty string", i);
      break;
    }
    const char *s = json_string_value(c);
    size_t sl = json_string_length(c);
    uint32_t id;
    if (tk_vocab_get(&seen, s, sl, &id)) continue; /* repeated content: the first one stands */
    tk_added *a = &t->added[t->nadded];
    a->single_word = flag(o, "single_word", false);
    a->lstrip = flag(o, "lstrip", false);
    a->rstrip = flag(o, "rstrip", false);
    a->special = flag(o, "special", false);
    a->normalized = flag(o, "normalized", !a->special);
    if (!(a->content = malloc(sl + 1))) {
      rc = IC_ENOMEM;
      break;
    }
    memcpy(a->content, s, sl + 1);
    a->len = sl;
    if (!tk_vocab_get(model_vocab, s, sl, &id)) {
      /* Not a model token: the next id after the model's vocabulary and every added id so far. */
      size_t base = model_size ? model_size - 1 : 0;
      if (any_added && max_added > base) base = max_added;
      id = (uint32_t)(model_size || any_added ? base + 1 : 0);
    }
    if (!any_added || id > max_added) max_added = id;
    any_added = true;
    a->id = id;
    if (id + 1 > t->vocab_size) t->vocab_size = id + 1;
    rc = tk_vocab_put(&seen, s, sl, id);
    t->nadded++;
  }
  tk_vocab_free(&seen);
  if (rc) return rc;
  for (size_t i = 0; i < t->nadded && !rc; i++) {
    tk_added *a = &t->added[i];
    if (!a->normalized || !t->normalizer) {
      rc = tk_trie_add(&t->raw_trie, a->content, a->len, (int32_t)i);
      t->has_raw = true;
    } else {
      tk_str norm = {0};
      rc = tk_norm_apply(t->normalizer, a->content, a->len, &norm);
      if (!rc) rc = tk_trie_add(&t->norm_trie, norm.p, norm.n, (int32_t)i);
      free(norm.p);
      t->has_norm = true;
    }
  }
  return rc;
}

static bool pre_vetted(const tk_pre *pt) {
  if (pt->kind != PT_SEQUENCE) return pt->vetted;
  for (size_t i = 0; i < pt->nchildren; i++)
    if (!pre_vetted(&pt->children[i])) return false;
  return true;
}

static bool norm_local(const tk_norm *nm) {
  if (!nm) return true;
  if (nm->kind == NM_SEQUENCE) {
    for (size_t i = 0; i < nm->nchildren; i++)
      if (!norm_local(&nm->children[i])) return false;
    return true;
  }
  /* Composition never reaches across an ASCII byte (a starter that composes with nothing before
   * it). */
  return nm->kind == NM_NFC || nm->kind == NM_NFD || nm->kind == NM_NFKC || nm->kind == NM_NFKD;
}

static bool ascii_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

/* True when split points (ic_tokenizer_split_point) are exact for this pipeline. */
static bool compute_splittable(const ic_tokenizer *t) {
  if (!t->bpe.byte_level || !t->pre || !pre_vetted(t->pre) || !norm_local(t->normalizer))
    return false;
  for (size_t i = 0; i < t->nadded; i++) {
    const tk_added *a = &t->added[i];
    if (a->lstrip || a->rstrip || a->single_word) return false;
    for (size_t k = 0; k + 1 < a->len; k++) {
      unsigned char x = (unsigned char)a->content[k], y = (unsigned char)a->content[k + 1];
      if ((ascii_alpha(x) && y == ' ') || (x == '\n' && ascii_alpha(y))) return false;
    }
  }
  return true;
}

bool ic_tokenizer_splittable(const ic_tokenizer *t) { return t->splittable; }

size_t ic_tokenizer_split_point(const ic_tokenizer *t, const char *text, size_t len, size_t from) {
  if (!t->splittable) return 0;
  for (size_t i = from + 1; i < len; i++) {
    unsigned char x = (unsigned char)text[i - 1], y = (unsigned char)text[i];
    if ((ascii_alpha(x) && y == ' ') || (x == '\n' && ascii_alpha(y))) return i;
  }
  return 0;
}

static int load_config(ic_tokenizer *t, const char *cfg, size_t len, char *err) {
  json_error_t je;
  json_t *c = json_loadb(cfg, len, JSON_DECODE_INT_AS_REAL, &je);
  if (!json_is_object(c)) {
    json_decref(c);
    return tk_fail(err, "tokenizer_config.json: %s (line %d)", je.text, je.line);
  }
  json_t *ct = json_object_get(c, "chat_template");
  const char *tmpl = json_string_value(ct);
  if (json_is_array(ct)) {
    for (size_t i = 0; i < json_array_size(ct); i++) {
      json_t *e = json_array_get(ct, i);
      const char *name = json_string_value(json_object_get(e, "name"));
      if (name && !strcmp(name, "default"))
        tmpl = json_string_value(json_object_get(e, "template"));
    }
  }
  const char *keys[2] = {"bos_token", "eos_token"};
  char **dst[2] = {&t->bos_token, &t->eos_token};
  for (int i = 0; i < 2; i++) {
    json_t *v = json_object_get(c, keys[i]);
    const char *s =
        json_is_string(v) ? json_string_value(v) : json_string_value(json_object_get(v, "content"));
    if (s && !(*dst[i] = dup_str(s))) goto oom;
  }
  if (tmpl && !(t->chat_template = dup_str(tmpl))) goto oom;
  json_decref(c);
  return 0;
oom:
  json_decref(c);
  return IC_ENOMEM;
}

int ic_tokenizer_load_json(const char *json, size_t len, const char *config_json, size_t config_len,
                           ic_tokenizer **out, char err[IC_TOK_ERRLEN]) {
  *out = NULL;
  if (err) err[0] = 0;
  json_error_t je;
  json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
  if (!json_is_object(root)) {
    json_decref(root);
    return tk_fail(err, "tokenizer.json: %s (line %d)", je.text, je.line);
  }
  ic_tokenizer *t = calloc(1, sizeof *t);
  int rc = t ? 0 : IC_ENOMEM;
  json_t *x;
  if (!rc && (x = json_object_get(root, "truncation")) && !json_is_null(x))
    rc = tk_fail(err, "truncation in tokenizer.json is not supported");
  if (!rc && (x = json_object_get(root, "padding")) && !json_is_null(x))
    rc = tk_fail(err, "padding in tokenizer.json is not supported");
  if (!rc && (x = json_object_get(root, "normalizer")) && !json_is_null(x)) {
    t->normalizer = calloc(1, sizeof *t->normalizer);
    rc = t->normalizer ? load_norm(x, t->normalizer, err, 0) : IC_ENOMEM;
  }
  bool byte_level = false;
  if (!rc && (x = json_object_get(root, "pre_tokenizer")) && !json_is_null(x)) {
    t->pre = calloc(1, sizeof *t->pre);
    rc = t->pre ? load_pre(x, t->pre, err, 0) : IC_ENOMEM;
    if (!rc) rc = byte_level_position(t->pre, true, &byte_level, err);
  }
  x = json_object_get(root, "model");
  if (!rc && !json_is_object(x)) rc = tk_fail(err, "tokenizer.json has no \"model\"");
  tk_vocab sv = {0};
  if (!rc) rc = load_model(x, &t->bpe, byte_level, &t->vocab_size, &sv, err);
  if (!rc) rc = load_added(json_object_get(root, "added_tokens"), t, &sv, err);
  tk_vocab_free(&sv);
  if (!rc) rc = load_post(json_object_get(root, "post_processor"), &t->post, err, 0);
  json_decref(root);
  if (!rc) t->splittable = compute_splittable(t);
  if (!rc && config_json) rc = load_config(t, config_json, config_len, err);
  if (!rc && !(t->cache = calloc(TK_CACHE_SLOTS, sizeof *t->cache))) rc = IC_ENOMEM;
  if (rc) {
    if (rc == IC_ENOMEM && err) snprintf(err, IC_TOK_ERRLEN, "out of memory loading the tokenizer");
    ic_tokenizer_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

/* tokenizer.json of the largest vocabularies is tens of MiB; beyond this it is not one. */
#define MAX_TOKENIZER_FILE_BYTES (256u << 20)

static char *read_file(const char *path, size_t *len, int *rc) {
  ic_buf_t b = IC_BUF_INIT;
  *rc = ic_buf_read_file(path, MAX_TOKENIZER_FILE_BYTES, &b, NULL);
  return *rc ? NULL : ic_buf_detach(&b, len);
}

int ic_tokenizer_load_dir(const char *dir, ic_tokenizer **out, char err[IC_TOK_ERRLEN]) {
  char path[4096];
  size_t jl = 0, cl = 0;
  int rc;
  *out = NULL;
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  char *json = read_file(path, &jl, &rc);
  if (!json) {
    if (err)
      snprintf(err, IC_TOK_ERRLEN, "cannot read %.200s: %s", path,
               rc == IC_ENOTFOUND ? "no such file"
               : rc == IC_EIO     ? "I/O error"
                                  : ic_strerror(rc));
    return rc;
  }
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  char *cfg = read_file(path, &cl, &rc);
  if (!cfg && rc != IC_ENOTFOUND) {
    free(json);
    if (err) snprintf(err, IC_TOK_ERRLEN, "cannot read %.200s", path);
    return rc;
  }
  rc = ic_tokenizer_load_json(json, jl, cfg, cl, out, err);
  free(json);
  free(cfg);
  return rc;
}

void ic_tokenizer_free(ic_tokenizer *t) {
  if (!t) return;
  tk_norm_free(t->normalizer);
  free(t->normalizer);
  tk_pre_free(t->pre);
  free(t->pre);
  tk_bpe_free(&t->bpe);
  for (size_t i = 0; i < t->nadded; i++)
    free(t->added[i].content);
  free(t->added);
  tk_trie_free(&t->raw_trie);
  tk_trie_free(&t->norm_trie);
  free(t->post.pre);
  free(t->post.post);
  free(t->chat_template);
  free(t->bos_token);
  free(t->eos_token);
  free(t->cache);
  free(t);
}
