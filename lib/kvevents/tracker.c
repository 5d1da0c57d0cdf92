/* lib/kvevents tracker: the positional reverse map engine block hash -> {content fingerprint,
 * cumulative tokens, adapter, tiers held}, and ic_kv_apply() which turns batches into index ops.
 *
 * Engines name blocks with their own (randomly seeded) hashes; the index wants our frozen
 * content fingerprints (ic/fingerprint.h). BlockStored carries token ids and the parent's engine
 * hash, so the fingerprint chain continues from the parent's prefix hash kept here.
 * The table is open addressing with linear probing and backward-shift deletion (no tombstones:
 * evictions are as frequent as stores). 8-byte engine keys are stored exactly; other lengths by
 * an XXH3 digest plus the length (a 2^-64 collision is accepted and documented). */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ic/err.h"
#include "ic/fingerprint.h"
#include "ic/kvevents.h"
#include "ic/log.h"

typedef struct slot {
  uint64_t key;        /* integer hash value, or digest of other-length bytes */
  uint64_t prefix;     /* our fingerprint */
  int32_t token_count; /* cumulative tokens through this block */
  uint32_t klen;       /* key length + 1; 0 = empty slot */
  uint16_t adapter;    /* index into names */
  uint8_t tiers;       /* bit (t-1) set when tier t holds the block */
  uint8_t pad;
} slot_t;

#define MAX_NAMES 65535
#define MIN_CAP 64
#define MAX_WARNED 1024

struct ic_kv_tracker {
  slot_t *slots;
  size_t cap, n; /* cap is a power of two */
  char **names;  /* interned adapter names; names[0] = "" */
  size_t nnames, capnames;
  int64_t warned[MAX_WARNED]; /* unmapped lora ids already warned about */
  size_t nwarned;
  uint64_t other_groups; /* bit g: group_idx g was announced as not full attention */
  uint64_t full_groups;  /* bit g: group_idx g was announced as full attention */
};

static inline uint64_t mix(uint64_t k, uint32_t klen) {
  k ^= (uint64_t)klen * 0x9e3779b97f4a7c15ULL;
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

static void key_of(const ic_kv_hash_t *h, uint64_t *key, uint32_t *klen) {
  if (!h->ext) {
    *key = h->ival;
    *klen = 9;
    return;
  }
  if (h->len == 8) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
      v = v << 8 | h->ext[i];
    *key = v; /* identical to the integer form of the same bytes: vLLM sends either */
    *klen = 9;
    return;
  }
  *key = XXH3_64bits(h->ext, h->len);
  *klen = h->len + 1;
}

ic_kv_tracker_t *ic_kv_tracker_new(void) {
  ic_kv_tracker_t *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->slots = calloc(MIN_CAP, sizeof(slot_t));
  t->names = calloc(8, sizeof(char *));
  if (!t->slots || !t->names || !(t->names[0] = strdup(""))) {
    ic_kv_tracker_free(t);
    return NULL;
  }
  t->cap = MIN_CAP;
  t->nnames = 1;
  t->capnames = 8;
  return t;
}

void ic_kv_tracker_free(ic_kv_tracker_t *t) {
  if (!t) return;
  free(t->slots);
  if (t->names)
    for (size_t i = 0; i < t->nnames; i++)
      free(t->names[i]);
  free(t->names);
  free(t);
}

size_t ic_kv_tracker_size(const ic_kv_tracker_t *t) { return t->n; }

void ic_kv_tracker_clear(ic_kv_tracker_t *t) {
  /* Give memory back: a clear usually follows an engine reset, the map refills gradually. */
  slot_t *s = calloc(MIN_CAP, sizeof(slot_t));
  if (s) {
    free(t->slots);
    t->slots = s;
    t->cap = MIN_CAP;
  } else {
    memset(t->slots, 0, t->cap * sizeof(slot_t));
  }
  t->n = 0;
}

const char *ic_kv_tracker_intern(ic_kv_tracker_t *t, const char *s, size_t len) {
  for (size_t i = 0; i < t->nnames; i++)
    if (strlen(t->names[i]) == len && memcmp(t->names[i], s, len) == 0) return t->names[i];
  if (t->nnames >= MAX_NAMES) return NULL;
  if (t->nnames == t->capnames) {
    char **nn = realloc(t->names, 2 * t->capnames * sizeof(char *));
    if (!nn) return NULL;
    t->names = nn;
    t->capnames *= 2;
  }
  char *c = strndup(s, len);
  if (!c) return NULL;
  t->names[t->nnames++] = c;
  return c;
}

static uint16_t name_index(const ic_kv_tracker_t *t, const char *interned) {
  for (size_t i = 0; i < t->nnames; i++)
    if (t->names[i] == interned) return (uint16_t)i;
  return 0;
}

static slot_t *find(const ic_kv_tracker_t *t, uint64_t key, uint32_t klen) {
  size_t mask = t->cap - 1;
  for (size_t i = mix(key, klen) & mask;; i = (i + 1) & mask) {
    slot_t *s = &t->slots[i];
    if (!s->klen) return NULL;
    if (s->key == key && s->klen == klen) return s;
  }
}

static int rehash(ic_kv_tracker_t *t, size_t ncap) {
  slot_t *ns = calloc(ncap, sizeof(slot_t));
  if (!ns) return IC_ENOMEM;
  for (size_t i = 0; i < t->cap; i++) {
    slot_t *s = &t->slots[i];
    if (!s->klen) continue;
    size_t j = mix(s->key, s->klen) & (ncap - 1);
    while (ns[j].klen)
      j = (j + 1) & (ncap - 1);
    ns[j] = *s;
  }
  free(t->slots);
  t->slots = ns;
  t->cap = ncap;
  return 0;
}

/* Returns the slot for key, inserting an empty-valued one if needed (*fresh set). */
static slot_t *upsert(ic_kv_tracker_t *t, uint64_t key, uint32_t klen, bool *fresh) {
  slot_t *s = find(t, key, klen);
  if (s) {
    *fresh = false;
    return s;
  }
  if ((t->n + 1) * 2 > t->cap && rehash(t, t->cap * 2)) return NULL;
  size_t mask = t->cap - 1;
  size_t i = mix(key, klen) & mask;
  while (t->slots[i].klen)
    i = (i + 1) & mask;
  s = &t->slots[i];
  memset(s, 0, sizeof(*s));
  s->key = key;
  s->klen = klen;
  t->n++;
  *fresh = true;
  return s;
}

static void erase(ic_kv_tracker_t *t, slot_t *s) {
  size_t mask = t->cap - 1;
  size_t i = (size_t)(s - t->slots);
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!t->slots[j].klen) break;
    size_t home = mix(t->slots[j].key, t->slots[j].klen) & mask;
    /* Move j back into the hole at i unless its home lies cyclically in (i, j]. */
    bool in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!in_range) {
      t->slots[i] = t->slots[j];
      i = j;
    }
  }
  memset(&t->slots[i], 0, sizeof(slot_t));
  t->n--;
}

static inline int best_tier(uint8_t tiers) {
  for (int k = 0; k < 3; k++)
    if (tiers & (1u << k)) return k + 1;
  return IC_KV_TIER_NONE;
}

static inline uint8_t tier_bit(int tier) {
  return (uint8_t)(tier >= 1 && tier <= 3 ? 1u << (tier - 1) : 1u);
}

bool ic_kv_tracker_get(const ic_kv_tracker_t *t, const ic_kv_hash_t *h, uint64_t *prefix,
                       int32_t *token_count, const char **adapter, int *tier) {
  uint64_t key;
  uint32_t klen;
  key_of(h, &key, &klen);
  const slot_t *s = find(t, key, klen);
  if (!s) return false;
  if (prefix) *prefix = s->prefix;
  if (token_count) *token_count = s->token_count;
  if (adapter) *adapter = t->names[s->adapter];
  if (tier) *tier = best_tier(s->tiers);
  return true;
}

void ic_kv_ops_free(ic_kv_ops_t *o) {
  free(o->v);
  o->v = NULL;
  o->n = o->cap = 0;
}

int ic_kv_ops_push(ic_kv_ops_t *o, const ic_kv_op_t *op) {
  if (o->n == o->cap) {
    size_t nc = o->cap ? o->cap * 2 : 64;
    ic_kv_op_t *nv = realloc(o->v, nc * sizeof(*nv));
    if (!nv) return IC_ENOMEM;
    o->v = nv;
    o->cap = nc;
  }
  o->v[o->n++] = *op;
  return 0;
}

int ic_kv_tracker_snapshot(const ic_kv_tracker_t *t, ic_kv_ops_t *out) {
  int count = 0;
  for (size_t i = 0; i < t->cap; i++) {
    const slot_t *s = &t->slots[i];
    if (!s->klen) continue;
    ic_kv_op_t op = {.kind = IC_KV_OP_ADD,
                     .tier = (uint8_t)best_tier(s->tiers),
                     .token_count = s->token_count,
                     .prefix_hash = s->prefix,
                     .adapter = t->names[s->adapter]};
    if (ic_kv_ops_push(out, &op)) return IC_ENOMEM;
    count++;
  }
  return count;
}

/* ---- apply -------------------------------------------------------------------------------- */

static bool warned_before(ic_kv_tracker_t *t, int64_t id) {
  for (size_t i = 0; i < t->nwarned; i++)
    if (t->warned[i] == id) return true;
  if (t->nwarned < MAX_WARNED) t->warned[t->nwarned++] = id;
  return false;
}

/* Resolves the adapter of a BlockStored: the operator's id map first, then the engine's own
 * lora_name, else fail closed (NULL) for an id nobody can name. Base model -> "". */
static const char *resolve_adapter(ic_kv_tracker_t *t, const ic_kv_event_t *ev,
                                   const ic_kv_apply_cfg_t *cfg, bool *failed) {
  *failed = false;
  if (ev->has_lora_id) {
    const char *name = cfg && cfg->lora ? ic_kv_lora_map_get(cfg->lora, ev->lora_id) : NULL;
    if (name) return ic_kv_tracker_intern(t, name, strlen(name));
    if (ev->lora_name && ev->lora_name_len)
      return ic_kv_tracker_intern(t, ev->lora_name, ev->lora_name_len);
    *failed = true;
    return NULL;
  }
  if (ev->lora_name && ev->lora_name_len)
    return ic_kv_tracker_intern(t, ev->lora_name, ev->lora_name_len);
  return t->names[0];
}

#define STACK_BLOCKS 256

static int apply_stored(ic_kv_tracker_t *t, const ic_kv_event_t *ev, int64_t ts_us,
                        const ic_kv_apply_cfg_t *cfg, ic_kv_ops_t *out, ic_kv_apply_stats_t *st) {
  bool failed;
  const char *adapter = resolve_adapter(t, ev, cfg, &failed);
  if (failed || !adapter) {
    st->lora_dropped++;
    if (failed && !warned_before(t, ev->lora_id))
      ic_log_warn("dropping BlockStored for an unmapped LoRA id (fail-closed; add it to "
                  "--lora-adapter-names to cache this adapter)",
                  IC_LI("lora_id", ev->lora_id));
    return 0;
  }
  if (ev->block_size <= 0 || ev->nhashes == 0) return 0;
  uint16_t aidx = name_index(t, adapter);
  uint8_t bit = tier_bit(ev->tier);
  uint64_t parent = 0;
  int64_t ptokens = 0;
  bool has_parent = false;
  if (ev->has_parent) {
    uint64_t key;
    uint32_t klen;
    key_of(&ev->parent, &key, &klen);
    const slot_t *ps = find(t, key, klen);
    if (ps) {
      parent = ps->prefix;
      ptokens = ps->token_count;
      has_parent = true;
    }
  }
  size_t nblocks = ic_fp_block_count(ev->ntokens, ev->block_size);
  if (!ev->has_tokens || nblocks != ev->nhashes) {
    /* No usable tokens (offload tiers often send none): blocks we already know only gain a
     * tier; the rest cannot be fingerprinted. */
    bool any = false;
    for (uint32_t i = 0; i < ev->nhashes; i++) {
      uint64_t key;
      uint32_t klen;
      key_of(&ev->hashes[i], &key, &klen);
      slot_t *s = find(t, key, klen);
      if (!s) continue;
      s->tiers |= bit;
      ic_kv_op_t op = {.kind = IC_KV_OP_ADD,
                       .tier = (uint8_t)best_tier(s->tiers),
                       .token_count = s->token_count,
                       .prefix_hash = s->prefix,
                       .ts_us = ts_us,
                       .adapter = t->names[s->adapter]};
      if (ic_kv_ops_push(out, &op)) return IC_ENOMEM;
      any = true;
    }
    if (any) {
      st->applied[IC_KV_EV_STORED]++;
    } else {
      st->no_entries++;
      ic_log_warn("BlockStored produced no index entries (missing or mismatched token_ids)",
                  IC_LI("block_hashes", ev->nhashes), IC_LI("token_ids", ev->ntokens),
                  IC_LI("block_size", ev->block_size));
    }
    return 0;
  }
  uint64_t stackbuf[STACK_BLOCKS];
  uint64_t *ph = nblocks <= STACK_BLOCKS ? stackbuf : malloc(nblocks * sizeof(uint64_t));
  if (!ph) return IC_ENOMEM;
  ic_fp_prefix_hashes(ev->tokens, ev->ntokens, ev->block_size, has_parent ? &parent : NULL, ph,
                      nblocks, NULL);
  int rc = 0;
  for (size_t i = 0; i < nblocks; i++) {
    int64_t tc = ptokens + (int64_t)(i + 1) * ev->block_size;
    if (tc > INT32_MAX) tc = INT32_MAX;
    uint64_t key;
    uint32_t klen;
    key_of(&ev->hashes[i], &key, &klen);
    bool fresh;
    slot_t *s = upsert(t, key, klen, &fresh);
    if (!s) {
      rc = IC_ENOMEM;
      break;
    }
    if (fresh || s->prefix != ph[i] || s->adapter != aidx) s->tiers = 0; /* a different block */
    s->prefix = ph[i];
    s->token_count = (int32_t)tc;
    s->adapter = aidx;
    s->tiers |= bit;
    ic_kv_op_t op = {.kind = IC_KV_OP_ADD,
                     .tier = (uint8_t)best_tier(s->tiers),
                     .token_count = (int32_t)tc,
                     .prefix_hash = ph[i],
                     .ts_us = ts_us,
                     .adapter = adapter};
    if ((rc = ic_kv_ops_push(out, &op))) break;
  }
  if (ph != stackbuf) free(ph);
  if (!rc) st->applied[IC_KV_EV_STORED]++;
  return rc;
}

static int apply_removed(ic_kv_tracker_t *t, const ic_kv_event_t *ev, int64_t ts_us,
                         const ic_kv_apply_cfg_t *cfg, ic_kv_ops_t *out, ic_kv_apply_stats_t *st) {
  uint8_t bit = tier_bit(ev->tier);
  bool any = false;
  for (uint32_t i = 0; i < ev->nhashes; i++) {
    uint64_t key;
    uint32_t klen;
    key_of(&ev->hashes[i], &key, &klen);
    slot_t *s = find(t, key, klen);
    if (!s) continue; /* unknown: never stored, or stored under an unmapped adapter */
    any = true;
    int before = best_tier(s->tiers);
    s->tiers &= (uint8_t)~bit;
    ic_kv_op_t op = {.token_count = s->token_count,
                     .prefix_hash = s->prefix,
                     .ts_us = ts_us,
                     .adapter = t->names[s->adapter]};
    if (s->tiers) {
      int after = best_tier(s->tiers);
      if (after > before) { /* left the hot tier, a colder one still holds it */
        op.kind = IC_KV_OP_DOWNGRADE;
        op.tier = (uint8_t)after;
        if (ic_kv_ops_push(out, &op)) return IC_ENOMEM;
      }
      continue;
    }
    if (cfg && cfg->l2_mode) {
      op.kind = IC_KV_OP_DOWNGRADE;
      op.tier = IC_KV_TIER_T2;
    } else {
      op.kind = IC_KV_OP_EVICT;
    }
    /* The reverse map is pruned in both modes (REF: TestReporterIgnoreBlockRemovedStill...). */
    erase(t, s);
    if (ic_kv_ops_push(out, &op)) return IC_ENOMEM;
  }
  if (any) st->applied[IC_KV_EV_REMOVED]++;
  return 0;
}

/* Hybrid-model groups: BlockStored announces each group's kind; removals only carry the index. */
static bool other_group(ic_kv_tracker_t *t, const ic_kv_event_t *ev) {
  if (!ev->has_group_idx || ev->group_idx < 0 || ev->group_idx > 63) return false;
  uint64_t bit = 1ULL << ev->group_idx;
  if (ev->type == IC_KV_EV_STORED && ev->spec_kind) {
    bool full = ev->spec_kind_len == 14 && !memcmp(ev->spec_kind, "full_attention", 14);
    if (full) {
      t->other_groups &= ~bit;
      t->full_groups |= bit;
    } else {
      t->other_groups |= bit;
      t->full_groups &= ~bit;
    }
  }
  /* A model with no full-attention group at all (every layer windowed) keeps its events. */
  return (t->other_groups & bit) != 0 && t->full_groups != 0;
}

int ic_kv_apply(ic_kv_tracker_t *t, const ic_kv_batch_t *b, const ic_kv_apply_cfg_t *cfg,
                ic_kv_ops_t *out, ic_kv_apply_stats_t *st) {
  ic_kv_apply_stats_t dummy;
  if (!st) st = &dummy;
  memset(st, 0, sizeof(*st));
  int64_t ts_us = ic_kv_ts_us(b->ts);
  for (uint32_t i = 0; i < b->nevents; i++) {
    const ic_kv_event_t *ev = &b->events[i];
    int rc = 0;
    if (ev->type != IC_KV_EV_CLEARED && other_group(t, ev)) {
      st->other_group++;
      continue;
    }
    switch (ev->type) {
    case IC_KV_EV_STORED: rc = apply_stored(t, ev, ts_us, cfg, out, st); break;
    case IC_KV_EV_REMOVED: rc = apply_removed(t, ev, ts_us, cfg, out, st); break;
    case IC_KV_EV_CLEARED: {
      ic_kv_tracker_clear(t);
      ic_kv_op_t op = {.kind = IC_KV_OP_CLEAR, .ts_us = ts_us, .adapter = t->names[0]};
      rc = ic_kv_ops_push(out, &op);
      st->applied[IC_KV_EV_CLEARED]++;
      break;
    }
    default: break;
    }
    if (rc) return rc;
  }
  return 0;
}
