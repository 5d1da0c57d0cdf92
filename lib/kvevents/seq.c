/* lib/kvevents sequence continuity: classifies each engine message number against what was
 * applied (next, gap, duplicate, restart, invalid) using the last number and payload digests. */
#include <string.h>
#include <xxhash.h>

#include "ic/kvevents.h"

uint64_t ic_kv_seq_digest(const uint8_t *p, size_t len) { return XXH3_64bits(p, len); }

void ic_kv_seq_reset(ic_kv_seq_t *s) { memset(s, 0, sizeof(*s)); }

int ic_kv_seq_match(const ic_kv_seq_t *s, uint64_t seq, uint64_t digest) {
  const ic_kv_seq_slot_t *r = &s->recent[seq % IC_KV_SEQ_RECENT];
  if (!r->used || r->seq != seq) return -1;
  return r->digest == digest;
}

ic_kv_seq_verdict_t ic_kv_seq_check(const ic_kv_seq_t *s, uint64_t seq, uint64_t digest) {
  if (seq == IC_KV_SEQ_END) return IC_KV_SEQ_INVALID;
  if (!s->have) return IC_KV_SEQ_FIRST;
  if (seq == s->last + 1) return IC_KV_SEQ_NEXT;
  if (seq > s->last)
    return seq - s->last - 1 > IC_KV_SEQ_MAX_GAP ? IC_KV_SEQ_INVALID : IC_KV_SEQ_GAP;
  /* At or below the last number: the same bytes again are a replay overlap; anything else is a
   * new numbering, i.e. another engine process. */
  return ic_kv_seq_match(s, seq, digest) == 1 ? IC_KV_SEQ_DUP : IC_KV_SEQ_RESTART;
}

void ic_kv_seq_applied(ic_kv_seq_t *s, uint64_t seq, uint64_t digest) {
  ic_kv_seq_slot_t *r = &s->recent[seq % IC_KV_SEQ_RECENT];
  r->seq = seq;
  r->digest = digest;
  r->used = true;
  if (!s->have || seq > s->last) s->last = seq;
  s->have = true;
}

const char *ic_kv_seq_verdict_name(ic_kv_seq_verdict_t v) {
  static const char *n[] = {"first", "next", "gap", "duplicate", "restart", "invalid"};
  return (unsigned)v < sizeof(n) / sizeof(*n) ? n[v] : "?";
}
