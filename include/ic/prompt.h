/* Server-side prompt encoding (lib/prompt): the models of a --tokenizer-models-dir, each a
 * tokenizer plus its chat template, and a bounded cache of recent prompt prefixes, so a
 * LookupRoute's prompt_text becomes the token ids the engine will see (docs/tokenizer.md); and
 * the bounded worker pool that runs those encodes off the gRPC threads. */
#ifndef IC_PROMPT_H
#define IC_PROMPT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/metrics.h"
#include "ic/tokenizer.h"

typedef struct ic_prompt_registry ic_prompt_registry_t;

typedef struct ic_prompt_config {
  size_t cache_bytes;  /* prefix cache budget (texts + ids + checkpoints); 0 = 64 MiB */
  size_t cache_stride; /* bytes between cached prefix checkpoints; 0 = 1024 */
  bool cache_off;      /* disable the prefix cache (benchmarks of the cold path) */
  /* Metrics (may be NULL): histogram {model} of render+tokenize seconds, counter {result} of
   * prefix-cache lookups (hit|miss), label order as registered by the caller. */
  ic_metric_family_t *tokenize_seconds;
  ic_metric_family_t *prefix_cache_lookups;
} ic_prompt_config_t;

/* Loads every model under `dir`: each directory (at most 4 levels deep) holding tokenizer.json
 * is the model whose id is its path relative to `dir` (so an id may contain '/'). Paths that
 * resolve outside `dir` (symlinks) are skipped. A model that fails to load (bad tokenizer.json,
 * chat template that does not compile) is skipped with an ERROR log naming it; the others serve.
 * Returns 0, or IC_ENOTFOUND / IC_EIO when `dir` itself cannot be read (`err` says why). */
int ic_prompt_registry_load(const char *dir, const ic_prompt_config_t *cfg,
                            ic_prompt_registry_t **out, char *err, size_t errlen);
void ic_prompt_registry_free(ic_prompt_registry_t *r);

size_t ic_prompt_registry_count(const ic_prompt_registry_t *r);
/* The i-th model id (sorted), for logs and tests. */
const char *ic_prompt_registry_model(const ic_prompt_registry_t *r, size_t i);
/* The tokenizer of a model, NULL when unknown (borrowed; lives as long as the registry). */
const ic_tokenizer *ic_prompt_registry_tokenizer(const ic_prompt_registry_t *r,
                                                 const char *model_id);

typedef struct ic_prompt_stats {
  bool cache_hit;       /* a cached prefix was reused */
  size_t reused_tokens; /* ids taken from the cache */
  int64_t render_ns, tokenize_ns;
} ic_prompt_stats_t;

/* Renders `text` as one user message with the model's chat template (add_generation_prompt on,
 * the config's special tokens as variables; a model without a template encodes the bare text
 * with its special tokens) and tokenizes the result into *ids. Thread-safe.
 * Returns 0; IC_ENOTFOUND (unknown model), IC_EINVAL (the template raised or failed, or the
 * text of a templated model is not valid UTF-8), IC_ERANGE (more than max_ids ids, or a render
 * limit), IC_ENOMEM. `st` may be
 * NULL. */
int ic_prompt_encode(ic_prompt_registry_t *r, const char *model_id, const char *text, size_t len,
                     size_t max_ids, ic_tok_ids *ids, ic_prompt_stats_t *st);

/* Renders only (the text the tokenizer sees), appended to *out (malloc'd, NUL-terminated). */
int ic_prompt_render(ic_prompt_registry_t *r, const char *model_id, const char *text, size_t len,
                     char **out, size_t *outlen);

/* ---- The tokenizer worker pool ----
 * Runs prompt jobs (render, tokenize and whatever follows: the server's LookupRoute) on threads of
 * their own, so the caller (a gRPC completion-queue thread) hands a job over and returns. At most
 * max_in_flight jobs are queued or running; one more is refused at once, for the caller to shed
 * (docs/tokenizer.md "Shedding"). A queued job whose deadline passes is expired at that moment by
 * the pool's timer thread, without running, however busy the workers are. */
#define IC_PROMPT_POOL_MAX_IN_FLIGHT 64 /* the reference's MaxConcurrentTokenize */

typedef enum {
  IC_PROMPT_EXPIRED_DEADLINE = 1, /* its deadline passed while it was queued */
  IC_PROMPT_EXPIRED_SHUTDOWN = 2, /* still queued when the pool was freed */
} ic_prompt_expiry_t;

/* Embedded in the caller's own job struct. Exactly one of run / expire is called, once, on a
 * pool thread (expire: also on the thread freeing the pool); either may free the job. */
typedef struct ic_prompt_job ic_prompt_job_t;
struct ic_prompt_job {
  int64_t deadline_ns; /* ic_clock_monotonic_ns() instant; INT64_MAX = none */
  void (*run)(ic_prompt_job_t *j);
  void (*expire)(ic_prompt_job_t *j, ic_prompt_expiry_t why);
  ic_prompt_job_t *next, *prev; /* the pool's */
};

typedef struct ic_prompt_pool ic_prompt_pool_t;
/* `threads` workers (<= 0: 1; at most max_in_flight) plus one timer thread; max_in_flight <= 0:
 * IC_PROMPT_POOL_MAX_IN_FLIGHT. `nice` > 0 lowers the workers' priority by that much (the timer
 * keeps the caller's), so threads answering short requests preempt a long tokenization at once.
 * NULL when threads cannot be started. */
ic_prompt_pool_t *ic_prompt_pool_new(int threads, int max_in_flight, int nice);
/* Queues `j` (FIFO). 0, IC_EUNAVAIL when max_in_flight jobs are already queued or running (the
 * job is untouched: the caller answers it, e.g. sheds it), IC_ESTATE when the pool is stopping,
 * IC_EINVAL. Thread-safe, never blocks on a running job. */
int ic_prompt_pool_submit(ic_prompt_pool_t *p, ic_prompt_job_t *j);

typedef struct ic_prompt_pool_stats {
  int threads, max_in_flight;
  int queued, running;               /* now */
  uint64_t submitted, shed, expired; /* since start (expired: deadline only) */
} ic_prompt_pool_stats_t;
void ic_prompt_pool_stats(ic_prompt_pool_t *p, ic_prompt_pool_stats_t *st);

/* Stops: queued jobs are expired (IC_PROMPT_EXPIRED_SHUTDOWN) on this thread, running ones
 * finish; joins every thread and frees. No submit may race it. */
void ic_prompt_pool_free(ic_prompt_pool_t *p);

#endif
