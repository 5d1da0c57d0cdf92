/* The StreamCacheEvents change log: a bounded ring of encoded CacheEvents, written once per index
 * change and read by every subscriber at its own pace through its own cursor.
 *
 * Why a ring. Fanning each change out to every subscriber's queue on the ingest path cost
 * O(subscribers) work and memory per change under the index's write lock. Here the writer does
 * O(1): encode once, copy into the ring (evicting the oldest entries when full), bump `head`.
 * Readers copy what passes their filter out under the same short lock. A reader whose cursor
 * fell below `tail` lost entries it had not read yet; the caller decides what to do (the server
 * ends such a stream with RESOURCE_EXHAUSTED so the client knows to resubscribe).
 *
 * Layout. Payloads live back to back in one byte buffer (tenant bytes, model bytes, encoded
 * event), wrapping to offset 0 when the end has no room; a power-of-two slot array indexed by
 * sequence number holds each entry's offset, length and the 32-bit hashes the filter compares
 * first. Both are mapped lazily on the first append and unmapped by ic_svc_changelog_release
 * (the server calls it when the last subscriber leaves) so idle memory goes back to the OS. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ic/err.h"
#include "ic/svc.h"

#include "change_wire.h"

#define MIN_BYTES (64u * 1024u)
#define AVG_ENTRY 64u /* sizing of the slot array: one slot per this many ring bytes */

typedef struct slot {
  uint32_t off, len; /* payload in the byte ring: tenant, model, event */
  uint32_t tenant_h, model_h;
  uint32_t tlen, mlen;
  uint32_t type;
} slot_t;

struct ic_svc_changelog {
  pthread_mutex_t mu;
  size_t cap;     /* byte ring size */
  size_t nslots;  /* power of two */
  uint8_t *bytes; /* NULL until the first append */
  slot_t *slots;
  size_t wpos;         /* next write offset */
  uint64_t head, tail; /* live entries: [tail, head) */
  size_t used;         /* payload bytes of live entries */
  uint64_t too_large;  /* entries larger than half the ring, not stored */
};

static uint32_t hash32(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a: identities are short; only a pre-check before memcmp */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}

ic_svc_changelog_t *ic_svc_changelog_new(size_t bytes) {
  ic_svc_changelog_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  if (bytes < MIN_BYTES) bytes = MIN_BYTES;
  if (bytes > 0xF0000000u) bytes = 0xF0000000u; /* offsets are 32-bit */
  l->cap = bytes;
  l->nslots = 1024;
  while (l->nslots < bytes / AVG_ENTRY)
    l->nslots <<= 1;
  pthread_mutex_init(&l->mu, NULL);
  return l;
}

static void unmap_locked(ic_svc_changelog_t *l) {
  if (l->bytes) munmap(l->bytes, l->cap);
  if (l->slots) munmap(l->slots, l->nslots * sizeof *l->slots);
  l->bytes = NULL;
  l->slots = NULL;
  l->wpos = 0;
  l->used = 0;
  l->tail = l->head; /* every cursor at or past head stays valid */
}

void ic_svc_changelog_free(ic_svc_changelog_t *l) {
  if (!l) return;
  unmap_locked(l);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

void ic_svc_changelog_release(ic_svc_changelog_t *l) {
  pthread_mutex_lock(&l->mu);
  unmap_locked(l);
  pthread_mutex_unlock(&l->mu);
}

static int map_locked(ic_svc_changelog_t *l) {
  if (l->bytes) return 0;
  void *b = mmap(NULL, l->cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void *s = mmap(NULL, l->nslots * sizeof(slot_t), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (b == MAP_FAILED || s == MAP_FAILED) {
    if (b != MAP_FAILED) munmap(b, l->cap);
    if (s != MAP_FAILED) munmap(s, l->nslots * sizeof(slot_t));
    return IC_ENOMEM;
  }
  l->bytes = b;
  l->slots = s;
  return 0;
}

static void evict_oldest_locked(ic_svc_changelog_t *l) {
  l->used -= l->slots[l->tail & (l->nslots - 1)].len;
  l->tail++;
}

static bool overlaps(const slot_t *s, size_t off, size_t len) {
  return s->off < off + len && off < s->off + s->len;
}

int ic_svc_changelog_append(ic_svc_changelog_t *l, const ic_index_change_t *c) {
  change_wire_t w; /* measured outside the lock; encoded in place, straight into the ring */
  change_wire_measure(c, &w);
  if (w.tlen == sizeof IC_SVC_PROBE_TENANT - 1 &&
      memcmp(w.tenant, IC_SVC_PROBE_TENANT, w.tlen) == 0)
    return 0;
  size_t tlen = w.tlen, mlen = w.mlen, len = tlen + mlen + w.size;
  uint32_t th = hash32(w.tenant, tlen), mh = hash32(w.model, mlen);
  pthread_mutex_lock(&l->mu);
  int rc = map_locked(l);
  if (rc == 0 && len > l->cap / 2) {
    l->too_large++;
    rc = IC_ERANGE;
  }
  if (rc != 0) {
    pthread_mutex_unlock(&l->mu);
    return rc;
  }
  size_t off = l->wpos;
  if (off + len > l->cap) {
    /* Wrap: the entries between wpos and the end are the oldest; they go first. */
    while (l->tail < l->head && l->slots[l->tail & (l->nslots - 1)].off >= off)
      evict_oldest_locked(l);
    off = 0;
  }
  while (l->tail < l->head && (l->head - l->tail >= l->nslots ||
                               overlaps(&l->slots[l->tail & (l->nslots - 1)], off, len)))
    evict_oldest_locked(l);
  uint8_t *p = l->bytes + off;
  memcpy(p, w.tenant, tlen);
  memcpy(p + tlen, w.model, mlen);
  change_wire_write(&w, p + tlen + mlen);
  slot_t *s = &l->slots[l->head & (l->nslots - 1)];
  *s = (slot_t){.off = (uint32_t)off,
                .len = (uint32_t)len,
                .tenant_h = th,
                .model_h = mh,
                .tlen = (uint32_t)tlen,
                .mlen = (uint32_t)mlen,
                .type = (uint32_t)c->type};
  l->head++;
  l->used += len;
  l->wpos = off + len;
  pthread_mutex_unlock(&l->mu);
  return 0;
}

uint64_t ic_svc_changelog_head(ic_svc_changelog_t *l) {
  pthread_mutex_lock(&l->mu);
  uint64_t h = l->head;
  pthread_mutex_unlock(&l->mu);
  return h;
}

void ic_svc_changelog_stats(ic_svc_changelog_t *l, ic_svc_changelog_stats_t *st) {
  pthread_mutex_lock(&l->mu);
  st->entries = l->head - l->tail;
  st->bytes = l->used;
  st->head = l->head;
  st->too_large = l->too_large;
  pthread_mutex_unlock(&l->mu);
}

void ic_svc_changelog_cursor_init(ic_svc_changelog_t *l, ic_svc_changelog_cursor_t *cur,
                                  const ic_svc_event_filter_t *f) {
  memset(cur, 0, sizeof *cur);
  cur->seq = ic_svc_changelog_head(l);
  cur->f = f;
  const char *m = f->model_id ? f->model_id : "", *t = f->tenant_id ? f->tenant_id : "";
  cur->mlen = strlen(m);
  cur->tlen = strlen(t);
  cur->model_h = hash32(m, cur->mlen);
  cur->tenant_h = hash32(t, cur->tlen);
}

static bool slot_match(const ic_svc_changelog_cursor_t *cur, const slot_t *s, const uint8_t *p) {
  const ic_svc_event_filter_t *f = cur->f;
  if (f->types && !(s->type < 31 && (f->types & (1u << s->type)))) return false;
  if (cur->mlen && (s->model_h != cur->model_h || s->mlen != cur->mlen ||
                    memcmp(p + s->tlen, f->model_id, cur->mlen) != 0))
    return false;
  if (cur->tlen && (s->tenant_h != cur->tenant_h || s->tlen != cur->tlen ||
                    memcmp(p, f->tenant_id, cur->tlen) != 0))
    return false;
  return true;
}

int ic_svc_changelog_read(ic_svc_changelog_t *l, ic_svc_changelog_cursor_t *cur, size_t max_bytes,
                          size_t max_msgs, ic_buf_t *out, size_t *lens, size_t *n, uint64_t *lost) {
  *n = 0;
  if (lost) *lost = 0;
  pthread_mutex_lock(&l->mu);
  if (cur->seq < l->tail) {
    if (lost) *lost = l->tail - cur->seq;
    cur->seq = l->tail;
    pthread_mutex_unlock(&l->mu);
    return IC_ERANGE;
  }
  int rc = 0;
  while (cur->seq < l->head && *n < max_msgs) {
    const slot_t *s = &l->slots[cur->seq & (l->nslots - 1)];
    const uint8_t *p = l->bytes + s->off;
    if (slot_match(cur, s, p)) {
      size_t elen = s->len - s->tlen - s->mlen;
      if (*n > 0 && out->len + elen > max_bytes) break;
      if ((rc = ic_buf_append(out, p + s->tlen + s->mlen, elen)) != 0) break;
      lens[(*n)++] = elen;
    }
    cur->seq++;
  }
  pthread_mutex_unlock(&l->mu);
  return rc;
}
