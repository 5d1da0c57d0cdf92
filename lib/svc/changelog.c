/* The StreamCacheEvents change log: a bounded ring of encoded CacheEvents, written in batches of
 * index changes and read by every subscriber at its own pace through its own cursor.
 *
 * Why a ring. Fanning each change out to every subscriber's queue on the ingest path cost
 * O(subscribers) work and memory per change under the index's write lock. Here the writer does
 * O(1): encode once, copy into the ring (evicting the oldest entries when full), bump `head`.
 * Readers copy what passes their filter out under the same short lock. A reader whose cursor
 * fell below `tail` lost entries it had not read yet; the caller decides what to do (the server
 * ends such a stream with RESOURCE_EXHAUSTED so the client knows to resubscribe).
 *
 * Why staging. Ingest threads change the index many times per call; taking the ring's lock (a
 * cache line every writer and the sender share) once per change cost more than the encoding.
 * A writer encodes each change into its own thread's staging buffer without any lock and
 * publishes the batch with one lock and one copy per entry (ic_svc_changelog_flush); the index
 * asks for that flush before it releases the lock that ordered the changes.
 *
 * Layout. Payloads live back to back in one byte buffer (tenant bytes, model bytes, encoded
 * event), wrapping to offset 0 when the end has no room; a power-of-two slot array indexed by
 * sequence number holds each entry's offset, length and the 32-bit hashes the filter compares
 * first. Both are mapped lazily on the first append and unmapped by ic_svc_changelog_release
 * (the server calls it when the last subscriber leaves) so idle memory goes back to the OS. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ic/err.h"
#include "ic/svc.h"

#include "change_wire.h"

#define MIN_BYTES (64u * 1024u)
#define AVG_ENTRY 64u /* sizing of the slot array: one slot per this many ring bytes */
/* A thread's staged bytes past which staging publishes by itself (one long eviction pass under
 * one index lock may report thousands of changes): bounds the per-thread buffer. */
#define STAGE_FLUSH_BYTES (32u * 1024u)
#define MAX_INTEREST 8          /* distinct reader filters summarised; more = take everything */
#define INTEREST_ALL UINT32_MAX /* interest_t.n: every change is wanted */

typedef struct slot {
  uint32_t off, len; /* payload in the byte ring: tenant, model, event */
  uint32_t tenant_h, model_h;
  uint32_t tlen, mlen;
  uint32_t type;
} slot_t;

/* What the readers want, by the same hashes the read filter compares first, so a writer skips
 * encoding changes no reader would take (a collision only stores one nobody reads). Read by
 * writers on every change without a lock: a sequence lock, odd while being rewritten. */
typedef struct interest {
  _Atomic uint32_t seq, n;
  struct {
    _Atomic uint32_t types, tenant_h, tlen, model_h, mlen; /* tlen/mlen 0 = any */
  } f[MAX_INTEREST];
} interest_t;

struct ic_svc_changelog {
  pthread_mutex_t mu;
  size_t cap;     /* byte ring size */
  size_t nslots;  /* power of two */
  uint8_t *bytes; /* NULL until the first append */
  slot_t *slots;
  size_t wpos;                /* next write offset */
  uint64_t head, tail;        /* live entries: [tail, head) */
  size_t used;                /* payload bytes of live entries */
  _Atomic uint64_t too_large; /* entries larger than half the ring, not stored */
  pthread_key_t stage_key;    /* each writer thread's stage_t */
  interest_t in;
};

/* One thread's encoded changes not yet in the ring; slot offsets are into `bytes`. */
typedef struct stage {
  ic_svc_changelog_t *log;
  slot_t *slots;
  size_t n, cap;
  uint8_t *bytes;
  size_t len, bcap;
  size_t published; /* entries the stage flushed by itself since the owner's last flush */
} stage_t;

static int flush_stage(ic_svc_changelog_t *l, stage_t *st);

static uint32_t hash32(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a: identities are short; only a pre-check before memcmp */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}

static void stage_free(stage_t *st) {
  free(st->slots);
  free(st->bytes);
  free(st);
}

/* Thread exit: what the thread staged and never flushed still goes out, then its buffers go. */
static void stage_destroy(void *p) {
  stage_t *st = p;
  if (st->n) flush_stage(st->log, st);
  stage_free(st);
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
  atomic_init(&l->in.n, INTEREST_ALL); /* until the owner says what its readers want */
  if (pthread_key_create(&l->stage_key, stage_destroy) != 0) {
    free(l);
    return NULL;
  }
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
  /* The caller's own stage; other threads' stages must be gone (their threads ended). */
  stage_t *st = pthread_getspecific(l->stage_key);
  if (st) stage_free(st);
  pthread_key_delete(l->stage_key);
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

/* Where the next entry of len bytes goes: evicts the oldest entries it would overwrite (and
 * those whose slots it needs). Caller holds the lock; the ring is mapped. */
static size_t place_locked(ic_svc_changelog_t *l, size_t len) {
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
  return off;
}

/* Appends everything st holds, in order, under one lock; empties st. A ring that cannot be
 * mapped loses the batch (IC_ENOMEM). */
static int flush_stage(ic_svc_changelog_t *l, stage_t *st) {
  pthread_mutex_lock(&l->mu);
  int rc = map_locked(l);
  for (size_t i = 0; rc == 0 && i < st->n; i++) {
    slot_t e = st->slots[i];
    size_t off = place_locked(l, e.len);
    memcpy(l->bytes + off, st->bytes + e.off, e.len);
    e.off = (uint32_t)off;
    l->slots[l->head & (l->nslots - 1)] = e;
    l->head++;
    l->used += e.len;
    l->wpos = off + e.len;
  }
  pthread_mutex_unlock(&l->mu);
  if (rc == 0) st->published += st->n;
  st->n = 0;
  st->len = 0;
  if (st->bcap > 2 * STAGE_FLUSH_BYTES) { /* an outsized entry passed: give its room back */
    free(st->bytes);
    st->bytes = NULL;
    st->bcap = 0;
  }
  return rc;
}

static stage_t *stage_get(ic_svc_changelog_t *l) {
  stage_t *st = pthread_getspecific(l->stage_key);
  if (st) return st;
  if (!(st = calloc(1, sizeof *st))) return NULL;
  st->log = l;
  if (pthread_setspecific(l->stage_key, st) != 0) {
    free(st);
    return NULL;
  }
  return st;
}

/* Room for one more entry of len bytes. */
static bool stage_reserve(stage_t *st, size_t len) {
  if (st->n == st->cap) {
    size_t nc = st->cap ? st->cap * 2 : 64;
    slot_t *ns = realloc(st->slots, nc * sizeof *ns);
    if (!ns) return false;
    st->slots = ns;
    st->cap = nc;
  }
  if (st->len + len > st->bcap) {
    size_t nc = st->bcap ? st->bcap : 4096;
    while (nc < st->len + len)
      nc *= 2;
    uint8_t *nb = realloc(st->bytes, nc);
    if (!nb) return false;
    st->bytes = nb;
    st->bcap = nc;
  }
  return true;
}

static bool filter_takes(uint32_t types, uint32_t type) {
  return !types || (type < 31 && (types & (1u << type)));
}

void ic_svc_changelog_set_interest(ic_svc_changelog_t *l, const ic_svc_event_filter_t *const *f,
                                   size_t n) {
  uint32_t count = n > MAX_INTEREST ? INTEREST_ALL : (uint32_t)n;
  for (size_t i = 0; i < n && count != INTEREST_ALL; i++)
    if (!f[i]->types && !(f[i]->model_id && *f[i]->model_id) &&
        !(f[i]->tenant_id && *f[i]->tenant_id))
      count = INTEREST_ALL;
  pthread_mutex_lock(&l->mu); /* one rewriter at a time */
  interest_t *in = &l->in;
  uint32_t seq = atomic_load_explicit(&in->seq, memory_order_relaxed);
  atomic_store_explicit(&in->seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&in->n, count, memory_order_relaxed);
  for (uint32_t i = 0; count != INTEREST_ALL && i < count; i++) {
    const char *m = f[i]->model_id ? f[i]->model_id : "",
               *t = f[i]->tenant_id ? f[i]->tenant_id : "";
    size_t ml = strlen(m), tl = strlen(t);
    atomic_store_explicit(&in->f[i].types, f[i]->types, memory_order_relaxed);
    atomic_store_explicit(&in->f[i].model_h, hash32(m, ml), memory_order_relaxed);
    atomic_store_explicit(&in->f[i].mlen, (uint32_t)ml, memory_order_relaxed);
    atomic_store_explicit(&in->f[i].tenant_h, hash32(t, tl), memory_order_relaxed);
    atomic_store_explicit(&in->f[i].tlen, (uint32_t)tl, memory_order_relaxed);
  }
  atomic_store_explicit(&in->seq, seq + 2, memory_order_release);
  pthread_mutex_unlock(&l->mu);
}

/* Whether some reader's filter may take a change (by hash). */
static bool interest_wants(interest_t *in, uint32_t type, uint32_t th, size_t tlen, uint32_t mh,
                           size_t mlen) {
  for (;;) {
    uint32_t seq = atomic_load_explicit(&in->seq, memory_order_acquire);
    if (seq & 1) continue; /* being rewritten: a few stores */
    uint32_t n = atomic_load_explicit(&in->n, memory_order_relaxed);
    bool want = n == INTEREST_ALL;
    for (uint32_t i = 0; !want && i < n && i < MAX_INTEREST; i++) {
      uint32_t fm = atomic_load_explicit(&in->f[i].mlen, memory_order_relaxed),
               ft = atomic_load_explicit(&in->f[i].tlen, memory_order_relaxed);
      want = filter_takes(atomic_load_explicit(&in->f[i].types, memory_order_relaxed), type) &&
             (!fm || (fm == mlen &&
                      atomic_load_explicit(&in->f[i].model_h, memory_order_relaxed) == mh)) &&
             (!ft ||
              (ft == tlen && atomic_load_explicit(&in->f[i].tenant_h, memory_order_relaxed) == th));
    }
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&in->seq, memory_order_relaxed) == seq) return want;
  }
}

int ic_svc_changelog_stage(ic_svc_changelog_t *l, const ic_index_change_t *c) {
  /* What the filters compare first: a change nobody takes costs only this. */
  const char *tenant = c->tenant ? c->tenant : "", *model = c->model ? c->model : "";
  size_t tlen = strlen(tenant), mlen = strlen(model);
  if (tlen == sizeof IC_SVC_PROBE_TENANT - 1 && memcmp(tenant, IC_SVC_PROBE_TENANT, tlen) == 0)
    return 0;
  uint32_t th = hash32(tenant, tlen), mh = hash32(model, mlen);
  if (!interest_wants(&l->in, (uint32_t)c->type, th, tlen, mh, mlen)) return 0;
  change_wire_t w;
  change_wire_measure(c, &w);
  size_t len = tlen + mlen + w.size;
  if (len > l->cap / 2) {
    atomic_fetch_add(&l->too_large, 1);
    return IC_ERANGE;
  }
  stage_t *st = stage_get(l);
  if (!st) return IC_ENOMEM;
  if (st->n && st->len + len > STAGE_FLUSH_BYTES) {
    int rc = flush_stage(l, st);
    if (rc) return rc;
  }
  if (!stage_reserve(st, len)) return IC_ENOMEM;
  uint8_t *p = st->bytes + st->len;
  memcpy(p, w.tenant, tlen);
  memcpy(p + tlen, w.model, mlen);
  change_wire_write(&w, p + tlen + mlen);
  st->slots[st->n++] = (slot_t){.off = (uint32_t)st->len,
                                .len = (uint32_t)len,
                                .tenant_h = th,
                                .model_h = mh,
                                .tlen = (uint32_t)tlen,
                                .mlen = (uint32_t)mlen,
                                .type = (uint32_t)c->type};
  st->len += len;
  return 0;
}

int ic_svc_changelog_flush(ic_svc_changelog_t *l, size_t *published) {
  stage_t *st = pthread_getspecific(l->stage_key);
  int rc = st && st->n ? flush_stage(l, st) : 0;
  if (published) *published = st ? st->published : 0;
  if (st) st->published = 0;
  return rc;
}

int ic_svc_changelog_append(ic_svc_changelog_t *l, const ic_index_change_t *c) {
  int rc = ic_svc_changelog_stage(l, c);
  int frc = ic_svc_changelog_flush(l, NULL);
  return rc ? rc : frc;
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
  st->too_large = atomic_load(&l->too_large);
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
