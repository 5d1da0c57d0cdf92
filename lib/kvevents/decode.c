/* lib/kvevents decoder: msgpack EventBatch bytes -> ic_kv_batch_t, for every encoding engines
 * put on the wire (docs/subscriber.md: both envelopes, positional and tagged-map events).
 *
 * A hand-written cursor reader rather than msgpack-c's object tree: the hot loop (token ids,
 * hashes) decodes in place with no allocation, and every read is bounds-checked so hostile input
 * can only produce IC_EPROTO. Skipping is iterative (no recursion), so nesting depth is free.
 * Error granularity (a deliberate improvement over REF's whole-batch drop): a malformed event is
 * rewound, skipped as one msgpack object and counted; only a broken envelope fails the batch. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ic/err.h"
#include "ic/kvevents.h"

/* ---- msgpack cursor ---------------------------------------------------------------------- */

typedef struct rd {
  const uint8_t *p, *end;
} rd_t;

enum { MP_NIL, MP_BOOL, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARR, MP_MAP, MP_EXT };

typedef struct mp {
  int kind;
  bool neg;         /* MP_INT: value is negative (u holds the two's complement bits) */
  uint64_t u;       /* MP_INT value bits, MP_BOOL 0/1 */
  double f;         /* MP_FLOAT */
  const uint8_t *s; /* MP_STR/MP_BIN/MP_EXT payload */
  uint32_t n;       /* length (str/bin/ext) or element count (arr/map) */
} mp_t;

static inline uint64_t ld_be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = v << 8 | p[i];
  return v;
}

static inline bool rd_has(const rd_t *r, size_t n) { return (size_t)(r->end - r->p) >= n; }

/* Reads one value header; str/bin/ext payloads are consumed, containers are not. */
static int mp_read(rd_t *r, mp_t *o) {
  if (!rd_has(r, 1)) return -1;
  uint8_t c = *r->p++;
  o->neg = false;
  if (c <= 0x7f) {
    o->kind = MP_INT;
    o->u = c;
    return 0;
  }
  if (c >= 0xe0) {
    o->kind = MP_INT;
    o->neg = true;
    o->u = (uint64_t)(int64_t)(int8_t)c;
    return 0;
  }
  if ((c & 0xf0) == 0x80) {
    o->kind = MP_MAP;
    o->n = c & 0x0f;
    return 0;
  }
  if ((c & 0xf0) == 0x90) {
    o->kind = MP_ARR;
    o->n = c & 0x0f;
    return 0;
  }
  size_t lenw = 0; /* width of a length prefix */
  if ((c & 0xe0) == 0xa0) {
    o->kind = MP_STR;
    o->n = c & 0x1f;
    goto payload;
  }
  switch (c) {
  case 0xc0: o->kind = MP_NIL; return 0;
  case 0xc2:
  case 0xc3:
    o->kind = MP_BOOL;
    o->u = c & 1;
    return 0;
  case 0xc4:
  case 0xc5:
  case 0xc6:
    o->kind = MP_BIN;
    lenw = (size_t)1 << (c - 0xc4);
    goto lenpfx;
  case 0xd9:
  case 0xda:
  case 0xdb:
    o->kind = MP_STR;
    lenw = (size_t)1 << (c - 0xd9);
    goto lenpfx;
  case 0xc7:
  case 0xc8:
  case 0xc9:
    o->kind = MP_EXT;
    lenw = (size_t)1 << (c - 0xc7);
    if (!rd_has(r, lenw + 1)) return -1;
    o->n = (uint32_t)ld_be(r->p, (int)lenw);
    r->p += lenw + 1; /* length, then the type byte */
    goto payload;
  case 0xd4:
  case 0xd5:
  case 0xd6:
  case 0xd7:
  case 0xd8:
    o->kind = MP_EXT;
    o->n = 1u << (c - 0xd4);
    if (!rd_has(r, 1)) return -1;
    r->p++; /* type byte */
    goto payload;
  case 0xca: {
    if (!rd_has(r, 4)) return -1;
    uint32_t w = (uint32_t)ld_be(r->p, 4);
    float f;
    memcpy(&f, &w, 4);
    o->kind = MP_FLOAT;
    o->f = f;
    r->p += 4;
    return 0;
  }
  case 0xcb: {
    if (!rd_has(r, 8)) return -1;
    uint64_t w = ld_be(r->p, 8);
    memcpy(&o->f, &w, 8);
    o->kind = MP_FLOAT;
    r->p += 8;
    return 0;
  }
  case 0xcc:
  case 0xcd:
  case 0xce:
  case 0xcf: {
    int w = 1 << (c - 0xcc);
    if (!rd_has(r, (size_t)w)) return -1;
    o->kind = MP_INT;
    o->u = ld_be(r->p, w);
    r->p += w;
    return 0;
  }
  case 0xd0:
  case 0xd1:
  case 0xd2:
  case 0xd3: {
    int w = 1 << (c - 0xd0);
    if (!rd_has(r, (size_t)w)) return -1;
    uint64_t v = ld_be(r->p, w);
    if (w < 8 && (v >> (8 * w - 1)) & 1) v |= ~0ULL << (8 * w); /* sign-extend */
    o->kind = MP_INT;
    o->u = v;
    o->neg = (int64_t)v < 0;
    r->p += w;
    return 0;
  }
  case 0xdc:
  case 0xdd: {
    int w = c == 0xdc ? 2 : 4;
    if (!rd_has(r, (size_t)w)) return -1;
    o->kind = MP_ARR;
    o->n = (uint32_t)ld_be(r->p, w);
    r->p += w;
    return 0;
  }
  case 0xde:
  case 0xdf: {
    int w = c == 0xde ? 2 : 4;
    if (!rd_has(r, (size_t)w)) return -1;
    o->kind = MP_MAP;
    o->n = (uint32_t)ld_be(r->p, w);
    r->p += w;
    return 0;
  }
  default: return -1; /* 0xc1 is never used */
  }
lenpfx:
  if (!rd_has(r, lenw)) return -1;
  o->n = (uint32_t)ld_be(r->p, (int)lenw);
  r->p += lenw;
payload:
  if (!rd_has(r, o->n)) return -1;
  o->s = r->p;
  r->p += o->n;
  return 0;
}

/* Skips `count` complete values. Every value takes at least one byte, so a pending count larger
 * than the bytes left is rejected at once (no huge loops on a lying header). */
static int mp_skip_n(rd_t *r, uint64_t count) {
  while (count) {
    if (count > (uint64_t)(r->end - r->p)) return -1;
    mp_t o;
    if (mp_read(r, &o)) return -1;
    count--;
    if (o.kind == MP_ARR)
      count += o.n;
    else if (o.kind == MP_MAP)
      count += 2ull * o.n;
  }
  return 0;
}

static inline bool mp_streq(const mp_t *o, const char *lit, size_t litlen) {
  return o->kind == MP_STR && o->n == litlen && memcmp(o->s, lit, litlen) == 0;
}
#define STREQ(o, lit) mp_streq((o), lit, sizeof(lit) - 1)

/* ---- batch storage ------------------------------------------------------------------------ */

void ic_kv_batch_init(ic_kv_batch_t *b) { memset(b, 0, sizeof(*b)); }

void ic_kv_batch_free(ic_kv_batch_t *b) {
  free(b->events);
  free(b->hash_store);
  free(b->tok_store);
  free(b->offs);
  memset(b, 0, sizeof(*b));
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t nc = *cap ? *cap : 64;
  while (nc < need)
    nc *= 2;
  void *np = realloc(*p, nc * elem);
  if (!np) return IC_ENOMEM;
  *p = np;
  *cap = nc;
  return 0;
}

const uint8_t *ic_kv_hash_bytes(const ic_kv_hash_t *h, uint8_t buf[8]) {
  if (h->ext) return h->ext;
  for (int i = 0; i < 8; i++)
    buf[i] = (uint8_t)(h->ival >> (56 - 8 * i));
  return buf;
}

int64_t ic_kv_ts_us(double ts) {
  if (!(ts > 0)) return 0;
  double us = ts * 1e6;
  if (us >= 9.2e18) return INT64_MAX;
  return (int64_t)us;
}

const char *ic_kv_ev_type_name(ic_kv_ev_type_t t) {
  switch (t) {
  case IC_KV_EV_STORED: return "BlockStored";
  case IC_KV_EV_REMOVED: return "BlockRemoved";
  case IC_KV_EV_CLEARED: return "AllBlocksCleared";
  default: return "unknown";
  }
}

static bool ieq(const char *m, size_t len, const char *lit) {
  size_t n = strlen(lit);
  return len == n && strncasecmp(m, lit, n) == 0;
}

int ic_kv_medium_tier(const char *m, size_t len) {
  if (!m || !len) return IC_KV_TIER_T1;
  /* T2 = external offload next to the engine (e.g. LMCache); T3 = remote or
   * disaggregated storage. */
  static const char *t2[] = {"cpu",    "host",     "dram", "cpu_pinned",
                             "pinned", "cpu_tier", "l2",   "lmcache"};
  static const char *t3[] = {"disk",    "local_disk", "ssd", "nvme",     "remote",
                             "storage", "file",       "gds", "mooncake", "l3"};
  for (size_t i = 0; i < sizeof(t2) / sizeof(*t2); i++)
    if (ieq(m, len, t2[i])) return IC_KV_TIER_T2;
  for (size_t i = 0; i < sizeof(t3) / sizeof(*t3); i++)
    if (ieq(m, len, t3[i])) return IC_KV_TIER_T3;
  return IC_KV_TIER_T1; /* GPU, CUDA, HBM, device, anything unknown: as REF, the engine's own KV */
}

/* ---- field decoders (return 0, -1 malformed value, IC_ENOMEM) ----------------------------- */

static int hash_from(const mp_t *o, ic_kv_hash_t *h) {
  if (o->kind == MP_INT) {
    h->ext = NULL;
    h->len = 8;
    h->ival = o->u;
    return 0;
  }
  if (o->kind == MP_STR || o->kind == MP_BIN) {
    h->ext = o->s;
    h->len = o->n;
    h->ival = 0;
    return 0;
  }
  return -1;
}

/* block_hashes: array of int/bin/str; stored at the end of hash_store, offset in *off. */
static int dec_hashes(ic_kv_batch_t *b, rd_t *r, size_t *off, uint32_t *count) {
  mp_t o;
  if (mp_read(r, &o) || o.kind != MP_ARR) return -1;
  if (o.n > (size_t)(r->end - r->p)) return -1;
  if (grow((void **)&b->hash_store, &b->cap_hash_store, b->nhash_store + o.n, sizeof(ic_kv_hash_t)))
    return IC_ENOMEM;
  *off = b->nhash_store;
  *count = o.n;
  for (uint32_t i = 0; i < o.n; i++) {
    mp_t e;
    if (mp_read(r, &e) || hash_from(&e, &b->hash_store[b->nhash_store + i])) return -1;
  }
  b->nhash_store += o.n;
  return 0;
}

/* token_ids: nil or array of ints in [0, 2^32-1]. */
static int dec_tokens(ic_kv_batch_t *b, rd_t *r, bool *has, size_t *off, uint32_t *count) {
  mp_t o;
  if (mp_read(r, &o)) return -1;
  if (o.kind == MP_NIL) {
    *has = false;
    *count = 0;
    *off = b->ntok_store;
    return 0;
  }
  if (o.kind != MP_ARR) return -1;
  if (o.n > (size_t)(r->end - r->p)) return -1;
  if (grow((void **)&b->tok_store, &b->cap_tok_store, b->ntok_store + o.n, sizeof(uint32_t)))
    return IC_ENOMEM;
  uint32_t *out = b->tok_store + b->ntok_store;
  const uint8_t *p = r->p, *end = r->end;
  for (uint32_t i = 0; i < o.n; i++) {
    /* Fast paths for the encodings real engines use: fixint, uint8, uint16, uint32. */
    if (p < end && *p <= 0x7f) {
      out[i] = *p++;
      continue;
    }
    if (end - p >= 3 && *p == 0xcd) {
      out[i] = (uint32_t)p[1] << 8 | p[2];
      p += 3;
      continue;
    }
    if (end - p >= 5 && *p == 0xce) { /* vocabularies beyond 64k (Qwen, Llama 3) */
      out[i] = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
      p += 5;
      continue;
    }
    if (end - p >= 2 && *p == 0xcc) {
      out[i] = p[1];
      p += 2;
      continue;
    }
    r->p = p;
    mp_t e;
    if (mp_read(r, &e) || e.kind != MP_INT || e.neg || e.u > UINT32_MAX) return -1;
    out[i] = (uint32_t)e.u;
    p = r->p;
  }
  r->p = p;
  *has = true;
  *off = b->ntok_store;
  *count = o.n;
  b->ntok_store += o.n;
  return 0;
}

static int dec_int(rd_t *r, bool *has, int64_t *v, bool nil_ok) {
  mp_t o;
  if (mp_read(r, &o)) return -1;
  if (o.kind == MP_NIL && nil_ok) {
    *has = false;
    return 0;
  }
  if (o.kind != MP_INT) return -1;
  if (!o.neg && o.u > INT64_MAX) return -1;
  *has = true;
  *v = (int64_t)o.u;
  return 0;
}

/* Optional int that REF ignores: a value of any other type counts as absent and is skipped
 * whole (a container must not leave the cursor inside itself). Returns 0 or -1 (truncated). */
static int dec_int_lenient(rd_t *r, bool *has, int64_t *v) {
  rd_t save = *r;
  if (dec_int(r, has, v, true) == 0) return 0;
  *r = save;
  *has = false;
  return mp_skip_n(r, 1);
}

/* str or nil; any other type is tolerated as "absent" (a field REF ignores must not cost an
 * otherwise good event). */
static int dec_optstr(rd_t *r, const char **s, uint32_t *len) {
  mp_t o;
  rd_t save = *r;
  if (mp_read(r, &o)) return -1;
  if (o.kind == MP_STR) {
    *s = (const char *)o.s;
    *len = o.n;
    return 0;
  }
  *s = NULL;
  *len = 0;
  if (o.kind == MP_ARR || o.kind == MP_MAP) {
    *r = save;
    return mp_skip_n(r, 1);
  }
  return 0;
}

/* ---- events ------------------------------------------------------------------------------- */

/* Offsets of the event's arrays inside the batch stores; fixed up into pointers at the end
 * (the stores may move while the batch grows). */
typedef struct evoff {
  size_t hash_off, tok_off;
} evoff_t;

static ic_kv_ev_type_t tag_type(const mp_t *o) {
  if (STREQ(o, "BlockStored")) return IC_KV_EV_STORED;
  if (STREQ(o, "BlockRemoved")) return IC_KV_EV_REMOVED;
  if (STREQ(o, "AllBlocksCleared")) return IC_KV_EV_CLEARED;
  return IC_KV_EV_UNKNOWN;
}

static int parent_from(rd_t *r, ic_kv_event_t *ev) {
  mp_t o;
  if (mp_read(r, &o)) return -1;
  if (o.kind == MP_NIL) {
    ev->has_parent = false;
    return 0;
  }
  ev->has_parent = true;
  return hash_from(&o, &ev->parent);
}

static int check_stored(const ic_kv_event_t *ev) {
  if (ev->block_size <= 0) return -1;
  return 0;
}

static int set_block_size(rd_t *r, ic_kv_event_t *ev) {
  bool has = false;
  int64_t v = 0;
  if (dec_int(r, &has, &v, false)) return -1;
  if (v <= 0 || v > INT32_MAX) return -1;
  ev->block_size = (int32_t)v;
  return 0;
}

/* Positional form: [tag, fields...] (vLLM's array_like). `n` elements, the header already read.
 * Returns 0, 1 for "unknown tag, skipped", -1 malformed, IC_ENOMEM. */
static int dec_event_array(ic_kv_batch_t *b, rd_t *r, uint32_t n, ic_kv_event_t *ev, evoff_t *eo) {
  if (n == 0) return -1;
  mp_t tag;
  if (mp_read(r, &tag) || tag.kind != MP_STR) return -1;
  ev->type = tag_type(&tag);
  uint32_t used = 1;
  int rc;
  switch (ev->type) {
  case IC_KV_EV_UNKNOWN:
    if (mp_skip_n(r, n - 1)) return -1;
    return 1;
  case IC_KV_EV_STORED:
    if (n < 5) return -1; /* block_size must be present */
    if ((rc = dec_hashes(b, r, &eo->hash_off, &ev->nhashes))) return rc;
    if (parent_from(r, ev)) return -1;
    if ((rc = dec_tokens(b, r, &ev->has_tokens, &eo->tok_off, &ev->ntokens))) return rc;
    if (set_block_size(r, ev)) return -1;
    used = 5;
    if (n > 5) {
      if (dec_int(r, &ev->has_lora_id, &ev->lora_id, true)) return -1;
      used++;
    }
    if (n > 6) {
      if (dec_optstr(r, &ev->medium, &ev->medium_len)) return -1;
      used++;
    }
    if (n > 7) {
      if (dec_optstr(r, &ev->lora_name, &ev->lora_name_len)) return -1;
      used++;
    }
    if (n > 8) {
      if (mp_skip_n(r, 1)) return -1; /* extra_keys */
      used++;
    }
    if (n > 9) {
      if (dec_int_lenient(r, &ev->has_group_idx, &ev->group_idx)) return -1;
      used++;
    }
    if (n > 10) {
      if (dec_optstr(r, &ev->spec_kind, &ev->spec_kind_len)) return -1;
      used++;
    }
    break;
  case IC_KV_EV_REMOVED:
    if (n < 2) return -1;
    if ((rc = dec_hashes(b, r, &eo->hash_off, &ev->nhashes))) return rc;
    used = 2;
    if (n > 2) {
      if (dec_optstr(r, &ev->medium, &ev->medium_len)) return -1;
      used++;
    }
    if (n > 3) {
      if (dec_int_lenient(r, &ev->has_group_idx, &ev->group_idx)) return -1;
      used++;
    }
    break;
  case IC_KV_EV_CLEARED:
    if (n > 1) {
      if (dec_optstr(r, &ev->medium, &ev->medium_len)) return -1;
      used++;
    }
    break;
  }
  if (mp_skip_n(r, n - used)) return -1;
  return ev->type == IC_KV_EV_STORED ? check_stored(ev) : 0;
}

/* Tagged-map form {"type": tag, field: value, ...} (vLLM's map encoding). Keys in any order. */
static int dec_event_map(ic_kv_batch_t *b, rd_t *r, uint32_t n, ic_kv_event_t *ev, evoff_t *eo) {
  bool has_type = false, has_hashes = false, has_tokens_key = false, has_bs = false;
  int rc;
  for (uint32_t i = 0; i < n; i++) {
    mp_t k;
    if (mp_read(r, &k)) return -1;
    if (k.kind != MP_STR) {
      if (k.kind == MP_ARR || k.kind == MP_MAP) {
        /* a container key: skip its body, then the value */
        if (mp_skip_n(r, k.kind == MP_ARR ? k.n : 2ull * k.n)) return -1;
      }
      if (mp_skip_n(r, 1)) return -1;
      continue;
    }
    if (STREQ(&k, "type")) {
      mp_t t;
      if (mp_read(r, &t)) return -1;
      if (t.kind != MP_STR) {
        if ((t.kind == MP_ARR || t.kind == MP_MAP) &&
            mp_skip_n(r, t.kind == MP_ARR ? t.n : 2ull * t.n))
          return -1;
        has_type = false;
        ev->type = IC_KV_EV_UNKNOWN;
        continue;
      }
      has_type = true;
      ev->type = tag_type(&t);
    } else if (STREQ(&k, "block_hashes")) {
      if ((rc = dec_hashes(b, r, &eo->hash_off, &ev->nhashes))) return rc;
      has_hashes = true;
    } else if (STREQ(&k, "parent_block_hash")) {
      if (parent_from(r, ev)) return -1;
    } else if (STREQ(&k, "token_ids")) {
      if ((rc = dec_tokens(b, r, &ev->has_tokens, &eo->tok_off, &ev->ntokens))) return rc;
      has_tokens_key = true;
    } else if (STREQ(&k, "block_size")) {
      if (set_block_size(r, ev)) return -1;
      has_bs = true;
    } else if (STREQ(&k, "lora_id")) {
      if (dec_int(r, &ev->has_lora_id, &ev->lora_id, true)) return -1;
    } else if (STREQ(&k, "medium")) {
      if (dec_optstr(r, &ev->medium, &ev->medium_len)) return -1;
    } else if (STREQ(&k, "lora_name")) {
      if (dec_optstr(r, &ev->lora_name, &ev->lora_name_len)) return -1;
    } else if (STREQ(&k, "kv_cache_spec_kind")) {
      if (dec_optstr(r, &ev->spec_kind, &ev->spec_kind_len)) return -1;
    } else if (STREQ(&k, "group_idx")) {
      if (dec_int_lenient(r, &ev->has_group_idx, &ev->group_idx)) return -1;
    } else {
      if (mp_skip_n(r, 1)) return -1;
    }
  }
  if (!has_type) return -1;
  switch (ev->type) {
  case IC_KV_EV_UNKNOWN: return 1;
  case IC_KV_EV_STORED:
    if (!has_hashes || !has_tokens_key || !has_bs) return -1;
    return check_stored(ev);
  case IC_KV_EV_REMOVED: return has_hashes ? 0 : -1;
  case IC_KV_EV_CLEARED: return 0;
  }
  return -1;
}

/* Decodes the events array (header already read: n events). Returns 0, IC_EPROTO, IC_ENOMEM. */
static int dec_events(ic_kv_batch_t *b, rd_t *r, uint32_t n, evoff_t **offs, size_t *offcap) {
  if (n > (size_t)(r->end - r->p)) return IC_EPROTO;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *start = r->p;
    size_t hmark = b->nhash_store, tmark = b->ntok_store;
    if (grow((void **)&b->events, &b->cap_events, b->nevents + 1, sizeof(ic_kv_event_t)))
      return IC_ENOMEM;
    if (grow((void **)offs, offcap, b->nevents + 1, sizeof(evoff_t))) return IC_ENOMEM;
    ic_kv_event_t *ev = &b->events[b->nevents];
    evoff_t *eo = &(*offs)[b->nevents];
    memset(ev, 0, sizeof(*ev));
    eo->hash_off = hmark;
    eo->tok_off = tmark;
    mp_t o;
    int rc;
    if (mp_read(r, &o)) return IC_EPROTO;
    if (o.kind == MP_MAP)
      rc = dec_event_map(b, r, o.n, ev, eo);
    else if (o.kind == MP_ARR)
      rc = dec_event_array(b, r, o.n, ev, eo);
    else
      rc = -1; /* nil or scalar event */
    if (rc == IC_ENOMEM) return rc;
    if (rc == 0) {
      ev->tier = ic_kv_medium_tier(ev->medium, ev->medium_len);
      b->seen[ev->type]++;
      b->nevents++;
      continue;
    }
    /* Unknown tag or malformed: drop what it stored, rewind and skip it as one value. */
    b->nhash_store = hmark;
    b->ntok_store = tmark;
    if (rc == 1)
      b->unknown_tags++;
    else
      b->malformed[ev->type]++;
    r->p = start;
    if (mp_skip_n(r, 1)) return IC_EPROTO;
  }
  return 0;
}

static int dec_ts(rd_t *r, double *ts) {
  mp_t o;
  if (mp_read(r, &o)) return -1;
  switch (o.kind) {
  case MP_FLOAT: *ts = o.f; return 0;
  case MP_INT: *ts = o.neg ? (double)(int64_t)o.u : (double)o.u; return 0;
  case MP_NIL: *ts = 0; return 0;
  default: return -1;
  }
}

int ic_kv_decode(ic_kv_batch_t *b, const uint8_t *p, size_t len) {
  b->ts = 0;
  b->has_dp_rank = false;
  b->dp_rank = 0;
  b->map_envelope = false;
  b->nevents = 0;
  b->nhash_store = b->ntok_store = 0;
  b->unknown_tags = 0;
  memset(b->seen, 0, sizeof(b->seen));
  memset(b->malformed, 0, sizeof(b->malformed));
  if (!p && len) return IC_EPROTO;
  rd_t r = {p, p + len};
  mp_t top;
  evoff_t *offs = b->offs;
  size_t offcap = b->cap_offs;
  int rc = IC_EPROTO;
  bool have_events = false;
  if (mp_read(&r, &top)) goto fail;
  if (top.kind == MP_ARR) {
    if (top.n < 2) goto fail;
    if (dec_ts(&r, &b->ts)) goto fail;
    mp_t ev;
    if (mp_read(&r, &ev) || ev.kind != MP_ARR) goto fail;
    if ((rc = dec_events(b, &r, ev.n, &offs, &offcap))) goto fail;
    rc = IC_EPROTO;
    have_events = true;
    uint32_t used = 2;
    if (top.n > 2) {
      if (dec_int_lenient(&r, &b->has_dp_rank, &b->dp_rank)) goto fail; /* odd type: absent */
      used++;
    }
    if (mp_skip_n(&r, top.n - used)) goto fail;
  } else if (top.kind == MP_MAP) {
    b->map_envelope = true;
    for (uint32_t i = 0; i < top.n; i++) {
      mp_t k;
      if (mp_read(&r, &k)) goto fail;
      if (k.kind != MP_STR) {
        if ((k.kind == MP_ARR || k.kind == MP_MAP) &&
            mp_skip_n(&r, k.kind == MP_ARR ? k.n : 2ull * k.n))
          goto fail;
        if (mp_skip_n(&r, 1)) goto fail;
        continue;
      }
      if (STREQ(&k, "ts")) {
        if (dec_ts(&r, &b->ts)) goto fail;
      } else if (STREQ(&k, "events")) {
        mp_t ev;
        if (mp_read(&r, &ev) || ev.kind != MP_ARR) goto fail;
        if ((rc = dec_events(b, &r, ev.n, &offs, &offcap))) goto fail;
        rc = IC_EPROTO;
        have_events = true;
      } else if (STREQ(&k, "data_parallel_rank") || STREQ(&k, "attn_dp_rank") ||
                 STREQ(&k, "dp_rank")) {
        if (dec_int_lenient(&r, &b->has_dp_rank, &b->dp_rank)) goto fail;
      } else if (mp_skip_n(&r, 1)) {
        goto fail;
      }
    }
    if (!have_events) goto fail;
  } else {
    goto fail;
  }
  /* Fix offsets up into pointers now that the stores no longer move. */
  for (uint32_t i = 0; i < b->nevents; i++) {
    b->events[i].hashes = b->hash_store ? b->hash_store + offs[i].hash_off : NULL;
    b->events[i].tokens = b->tok_store ? b->tok_store + offs[i].tok_off : NULL;
  }
  b->offs = offs;
  b->cap_offs = offcap;
  return 0;
fail:
  b->offs = offs;
  b->cap_offs = offcap;
  b->nevents = 0;
  b->nhash_store = b->ntok_store = 0;
  return rc;
}
