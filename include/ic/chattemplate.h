/* Chat-template engine: a sandboxed Jinja2 subset that renders Hugging Face chat templates and
 * PromptTemplate bodies exactly as Python's jinja2 does under the Hugging Face configuration. */
#ifndef IC_CHATTEMPLATE_H
#define IC_CHATTEMPLATE_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/buf.h"

/* The configuration matched is transformers' ImmutableSandboxedEnvironment with trim_blocks,
 * lstrip_blocks, the loopcontrols extension, `{% generation %}` blocks, the `tojson` filter as
 * transformers defines it (ensure_ascii=False, Python's separators) and the globals
 * raise_exception(msg) and strftime_now(fmt), plus Jinja's range/dict/namespace.
 * Templates are untrusted: rendering does no I/O, and steps, memory, output and nesting are
 * bounded; anything outside the subset fails with an error naming it, never a wrong output. */

typedef struct ic_chattemplate ic_chattemplate_t;

typedef struct ic_chattemplate_opts {
  uint64_t max_steps; /* evaluation steps (nodes + linear work of builtins); 0 = 20,000,000 */
  size_t max_output;  /* bytes of rendered text; 0 = 16 MiB */
  size_t max_memory;  /* bytes of scratch values during one render; 0 = 64 MiB */
  uint32_t max_depth; /* nested macro calls / loops; 0 = 64 */
  int64_t now;        /* strftime_now's clock, seconds since the epoch (UTC); < 0 = now */
  int no_clock;       /* strftime_now fails: the output must depend on the inputs alone */
} ic_chattemplate_opts_t;

#define IC_CHATTEMPLATE_ERR_MAX 1024

/* Compiles `src` (`len` bytes, any bytes allowed). On success *out owns the template (free with
 * ic_chattemplate_free); it is immutable, so one template may render on many threads at once.
 * On failure returns IC_EINVAL (syntax or unsupported construct: `err` says what, with its line),
 * IC_ERANGE (nesting or size beyond the limits) or IC_ENOMEM. */
int ic_chattemplate_compile(const char *src, size_t len, ic_chattemplate_t **out,
                            char err[IC_CHATTEMPLATE_ERR_MAX]);
void ic_chattemplate_free(ic_chattemplate_t *t);

/* Renders with the top-level variables of `vars` (a JSON object, e.g. messages, tools,
 * add_generation_prompt, bos_token; NULL = none) appended to `out`. JSON values map to Python's
 * (object -> dict in key order, array -> list, true/false/null -> True/False/None). `opts` may be
 * NULL. Returns 0, IC_EINVAL for a template error (raise_exception, undefined attribute access,
 * type errors, unknown filters: `err` has the message), IC_ERANGE when a limit was hit, or
 * IC_ENOMEM. On error `out` may hold partial output: the caller discards it. */
int ic_chattemplate_render(const ic_chattemplate_t *t, const json_t *vars,
                           const ic_chattemplate_opts_t *opts, ic_buf_t *out,
                           char err[IC_CHATTEMPLATE_ERR_MAX]);

/* ---- Hugging Face tokenizer_config.json helpers */

/* The chat template of a tokenizer_config.json: `chat_template` when it is a string, else the
 * entry named `name` (NULL = "default") of its list form. NULL when absent. Borrowed from cfg. */
const char *ic_chattemplate_hf_template(const json_t *cfg, const char *name);

/* The variables transformers' apply_chat_template passes besides messages: every special token of
 * cfg (bos_token, eos_token, unk_token, pad_token, sep_token, cls_token, mask_token; AddedToken
 * objects reduced to their content; absent or null ones left out) plus
 * add_generation_prompt. Returns a new object (caller decrefs), NULL on OOM; the caller adds
 * `messages` (and `tools`, or anything else) to it. */
json_t *ic_chattemplate_hf_vars(const json_t *cfg, int add_generation_prompt);

#endif
