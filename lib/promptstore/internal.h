/* Shared types of lib/promptstore (store.c: push decoding and snapshots; render.c: RenderTemplate).
 * Only the module's own files include this. */
#ifndef IC_PROMPTSTORE_INTERNAL_H
#define IC_PROMPTSTORE_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>

#include "ic/chattemplate.h"
#include "ic/promptstore.h"

typedef struct ps_slot {
  char *name;
  bool stable, required;
} ps_slot;

typedef struct ps_entry {
  char *ref; /* "namespace/name" */
  char revision[64];
  char *model;            /* NULL: no model, no fingerprint */
  ic_chattemplate_t *tpl; /* NULL when the body did not compile */
  char *error;            /* the compile error then */
  ps_slot *slots;
  size_t nslots;
} ps_entry;

/* Immutable once published; freed when the last reader lets go. */
typedef struct ps_snapshot {
  atomic_int refs;
  ps_entry *e; /* sorted by ref */
  size_t n;
} ps_snapshot;

/* A family's stable prefix is the same text on every request: its fingerprint is remembered,
 * keyed by a 128-bit digest of (model, stable text), so repeated renders skip the tokenizer. */
#define PS_CACHE_SLOTS 1024
typedef struct ps_cache_slot {
  uint64_t key_lo, key_hi;
  uint8_t hash[8];
  uint32_t tokens;
  bool used, has_hash;
} ps_cache_slot;

struct ic_promptstore {
  pthread_mutex_t mu; /* guards cur (the pointer swap and the pin) */
  ps_snapshot *cur;
  ic_promptstore_config_t cfg;
  pthread_mutex_t cache_mu;
  ps_cache_slot cache[PS_CACHE_SLOTS]; /* direct-mapped */
};

ps_snapshot *ps_snapshot_acquire(ic_promptstore_t *s);
void ps_snapshot_release(ps_snapshot *snap);
const ps_entry *ps_find(const ps_snapshot *snap, const char *ref);

#endif
