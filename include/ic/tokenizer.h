/* Hugging Face tokenizer (lib/tokenizer): loads tokenizer.json (+ tokenizer_config.json) and
 * encodes text to exactly the ids the Rust `tokenizers` library produces (see docs/tokenizer.md).
 */
#ifndef IC_TOKENIZER_H
#define IC_TOKENIZER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ic_tokenizer ic_tokenizer;

/* Growable id vector filled by ic_tokenizer_encode (reuse it across calls; free with _ids_free). */
typedef struct {
  uint32_t *v;
  size_t n, cap;
} ic_tok_ids;

/* Error text buffer size that always holds a complete load/encode message. */
#define IC_TOK_ERRLEN 256

/* Loads a tokenizer from the JSON text of tokenizer.json and, optionally (NULL/0),
 * tokenizer_config.json. Unknown or unsupported components fail with IC_EINVAL and a message
 * naming the component (e.g. "unsupported normalizer type \"Precompiled\""), never a tokenizer
 * that would encode differently. Returns 0 or a negative IC_E* code. */
int ic_tokenizer_load_json(const char *json, size_t len, const char *config_json, size_t config_len,
                           ic_tokenizer **out, char err[IC_TOK_ERRLEN]);

/* Same from a directory holding tokenizer.json and (if present) tokenizer_config.json. */
int ic_tokenizer_load_dir(const char *dir, ic_tokenizer **out, char err[IC_TOK_ERRLEN]);

void ic_tokenizer_free(ic_tokenizer *t);

/* Encodes `len` bytes of text, replacing ids->v[0..n). Invalid UTF-8 is first replaced by
 * U+FFFD per maximal subpart (as String::from_utf8_lossy / a WHATWG decoder would), which is
 * what the Rust library sees from any client that decodes bytes to a string. add_special applies
 * the post-processor's template (e.g. a leading BOS) like `add_special_tokens=true`.
 * Thread-safe: many threads may encode with one tokenizer. Returns 0, IC_ENOMEM or IC_ERANGE
 * (more than max_ids ids; 0 means no limit). */
int ic_tokenizer_encode(const ic_tokenizer *t, const char *text, size_t len, bool add_special,
                        size_t max_ids, ic_tok_ids *ids);

void ic_tok_ids_free(ic_tok_ids *ids);

/* Values from tokenizer_config.json (NULL when absent): the default chat template (a plain
 * string, or the entry named "default" of a list), and the bos/eos token strings. */
const char *ic_tokenizer_chat_template(const ic_tokenizer *t);
const char *ic_tokenizer_bos_token(const ic_tokenizer *t);
const char *ic_tokenizer_eos_token(const ic_tokenizer *t);

/* Vocabulary size including added tokens (largest id + 1). */
size_t ic_tokenizer_vocab_size(const ic_tokenizer *t);

/* Split points make prefix caching exact. A split point of text is a byte offset b such that
 * for EVERY text T with T[0..b] == text[0..b] (byte b included):
 *   encode(T) == encode(T[0..b)) ++ encode(T[b..])      (add_special false)
 * They exist only for pipelines checked to be local at such points (ic_tokenizer_splittable:
 * byte-level BPE, Unicode-composition normalizers at most, pre-tokenizer regexes from a vetted
 * list, no added token spanning the boundary bytes); the points are an ASCII letter followed by
 * a space, and a newline followed by an ASCII letter. Returns the first split point greater than
 * `from`, or 0 when there is none (always 0 for a tokenizer that is not splittable). */
bool ic_tokenizer_splittable(const ic_tokenizer *t);
size_t ic_tokenizer_split_point(const ic_tokenizer *t, const char *text, size_t len, size_t from);

/* Pre-token cache counters since load (hits, misses), for metrics and benchmarks. */
void ic_tokenizer_cache_stats(const ic_tokenizer *t, uint64_t *hits, uint64_t *misses);

#endif
