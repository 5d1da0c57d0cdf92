/* PromptTemplate store (lib/promptstore): the templates the controller pushes to the server
 * (POST /prompttemplates), compiled once, and RenderTemplate over them: render the body with the
 * request's variables, find the stable prefix, fingerprint it with the template's model
 * (docs/chattemplate.md). Thread-safe: renders run concurrently with pushes. */
#ifndef IC_PROMPTSTORE_H
#define IC_PROMPTSTORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/buf.h"
#include "ic/chattemplate.h"
#include "ic/fingerprint.h"
#include "ic/metrics.h"
#include "ic/tokenizer.h"

typedef struct ic_promptstore ic_promptstore_t;

/* The tokenizer of a model id (NULL when the server has none for it: stable_prefix_hash is then
 * empty). Borrowed; must stay valid while the store lives. */
typedef const ic_tokenizer *(*ic_promptstore_tokenizer_fn)(void *ud, const char *model_id);

typedef struct ic_promptstore_config {
  int block_size; /* engine block size for the fingerprint; <= 0 -> 16 */
  ic_promptstore_tokenizer_fn tokenizer;
  void *tokenizer_ud;
  /* counter {reason_code} of RenderTemplate results (may be NULL) */
  ic_metric_family_t *renders;
} ic_promptstore_config_t;

ic_promptstore_t *ic_promptstore_new(const ic_promptstore_config_t *cfg);
void ic_promptstore_free(ic_promptstore_t *s);

/* Replaces every template with those of a push body:
 *   {"version":1,"templates":[{"namespace":"ns","name":"n","revision":"3-9f2c...","modelID":"m",
 *     "body":"...","slots":[{"name":"x","type":"Stable|Mutable","required":true}]}]}
 * A body that is not such an object (bad JSON, other version, templates not an array) changes
 * nothing: IC_EINVAL with `err`. Entries missing namespace/name/body are skipped and a template
 * that does not compile is kept as invalid (RenderTemplate answers RENDER_ERROR for it); both
 * are listed in *report (JSON: {"accepted":N,"rejected":[{"template":"ns/n","error":"..."}]},
 * malloc'd, may be NULL on OOM). Returns 0 when the store was replaced. */
int ic_promptstore_replace(ic_promptstore_t *s, const char *body, size_t len, char **report,
                           char *err, size_t errlen);

/* JSON listing of the stored templates (GET /prompttemplates), malloc'd. */
char *ic_promptstore_list_json(ic_promptstore_t *s);

typedef struct ic_promptstore_result {
  const char *reason_code; /* "OK" | "TEMPLATE_NOT_FOUND" | "RENDER_ERROR" (static) */
  char *text;              /* rendered prompt, UTF-8 (malloc'd; NULL unless OK) */
  size_t text_len;
  char revision[64]; /* the template's revision ("" when not found) */
  uint8_t stable_hash[IC_FP_WIRE_LEN];
  bool has_stable_hash; /* false: no tokenizer for the model, or under one full block */
  size_t stable_bytes;  /* length of the stable text prefix */
  size_t stable_tokens; /* tokens covered by the stable fingerprint (whole blocks) */
  char error[IC_CHATTEMPLATE_ERR_MAX + 64]; /* why RENDER_ERROR (for logs; not on the wire) */
} ic_promptstore_result_t;

/* RenderTemplate. `ref` is "namespace/name", or "name" resolved in `tenant_id`'s namespace.
 * Variables are parallel arrays of UTF-8 strings. Deterministic for fixed (template revision,
 * variables). Always fills *res (free with ic_promptstore_result_free); returns 0 or IC_ENOMEM. */
int ic_promptstore_render(ic_promptstore_t *s, const char *ref, const char *tenant_id, size_t nvars,
                          const char *const *keys, const char *const *values,
                          ic_promptstore_result_t *res);
void ic_promptstore_result_free(ic_promptstore_result_t *res);

#endif
