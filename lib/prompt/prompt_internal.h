/* Internal types of lib/prompt: the prefix cache shared by the registry. Not a public header. */
#ifndef IC_PROMPT_INTERNAL_H
#define IC_PROMPT_INTERNAL_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/tokenizer.h"

typedef struct pc_entry pc_entry;

typedef struct {
  pthread_mutex_t mu;
  pc_entry *head, *tail; /* LRU, most recent first */
  void *slots;           /* checkpoint hash -> (entry, checkpoint) */
  size_t used, budget, stride;
} prefix_cache;

int pc_init(prefix_cache *c, size_t budget, size_t stride);
void pc_free(prefix_cache *c);
/* Encodes text (add_special false) reusing the longest cached prefix of the same model (seed),
 * then caches the result. Exact for tokenizers with split points (ic_tokenizer_splittable). */
int pc_encode(prefix_cache *c, const ic_tokenizer *t, uint64_t seed, const char *text, size_t len,
              size_t max_ids, ic_tok_ids *ids, bool *hit, size_t *reused);

#endif
