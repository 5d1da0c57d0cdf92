/* The encode pipeline: added tokens on raw text, normalizer, added tokens on normalized text,
 * pre-tokenizer, BPE per pre-token through a lock-free cache, then the post-processor template. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ic/err.h"
#include "internal.h"

/* Per-thread scratch buffers: a large prompt makes the piece lists megabytes long, and fresh
 * allocations of that size cost page faults on every call. Freed at thread exit, and trimmed
 * after a call that left them above SCRATCH_KEEP bytes. */
typedef struct {
  tk_str norm;
  tk_pieces ps;
  tk_run *runs;
  size_t runcap;
  tk_pre_scratch pre;
  bool busy;
} scratch;

#define SCRATCH_KEEP (4u << 20)

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_release(scratch *s) {
  free(s->norm.p);
  free(s->ps.text.p);
  free(s->ps.v);
  free(s->runs);
  free(s->pre.out);
  free(s->pre.sp);
  if (s->pre.md) pcre2_match_data_free(s->pre.md);
  memset(s, 0, sizeof *s);
}

static void scratch_destroy(void *p) {
  scratch_release(p);
  free(p);
}

static void scratch_key_init(void) { (void)pthread_key_create(&scratch_key, scratch_destroy); }

/* This thread's scratch, or NULL (then the caller uses a temporary one). */
static scratch *scratch_get(void) {
  pthread_once(&scratch_once, scratch_key_init);
  scratch *s = pthread_getspecific(scratch_key);
  if (!s && (s = calloc(1, sizeof *s)) && pthread_setspecific(scratch_key, s)) {
    free(s);
    s = NULL;
  }
  return s && !s->busy ? s : NULL;
}

typedef struct {
  const ic_tokenizer *t;
  ic_tok_ids *ids;
  size_t max_ids;
  scratch *sc;
  size_t nruns;
  uint64_t hits, misses;
} enc;

static int push_id(enc *e, uint32_t id) { return tk_ids_push(e->ids, id); }

/* Seqlock read: copies a slot's ids when it holds this exact key and was not being written. */
static bool cache_get(tk_cache_slot *s, uint64_t h, const char *k, size_t n, uint32_t *ids,
                      size_t *nids) {
  uint32_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
  if (seq & 1) return false;
  bool ok = s->hash == h && s->klen == n && !memcmp(s->key, k, n);
  size_t c = s->nids;
  if (ok && c <= TK_CACHE_IDS) memcpy(ids, s->ids, c * sizeof *ids);
  atomic_thread_fence(memory_order_acquire);
  if (atomic_load_explicit(&s->seq, memory_order_relaxed) != seq || !ok || c > TK_CACHE_IDS)
    return false;
  *nids = c;
  return true;
}

static void cache_put(tk_cache_slot *s, uint64_t h, const char *k, size_t n, const uint32_t *ids,
                      size_t nids) {
  uint32_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
  if ((seq & 1) || !atomic_compare_exchange_strong_explicit(
                       &s->seq, &seq, seq + 1, memory_order_acquire, memory_order_relaxed))
    return; /* another writer holds it: skip, the cache is only an optimisation */
  atomic_thread_fence(memory_order_release);
  s->hash = h;
  s->klen = (uint8_t)n;
  s->nids = (uint8_t)nids;
  memcpy(s->key, k, n);
  memcpy(s->ids, ids, nids * sizeof *ids);
  atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

static int model_piece_whole(enc *e, const char *w, size_t n);

/* SentencePiece-style models see whole sentences as one word: cut them where BPE cannot merge
 * across (before a meta space that no token joins to the char before it), so each part is short,
 * cached and merged independently with the same result. */
static int model_piece(enc *e, const char *w, size_t n) {
  size_t from = 0;
  for (size_t cut; (cut = tk_bpe_split_point(&e->t->bpe, w, n, from)); from = cut) {
    int rc = model_piece_whole(e, w + from, cut - from);
    if (rc) return rc;
  }
  return model_piece_whole(e, w + from, n - from);
}

static int model_piece_whole(enc *e, const char *w, size_t n) {
  const ic_tokenizer *t = e->t;
  if (n > TK_CACHE_KEY) return tk_bpe_word(&t->bpe, w, n, e->ids);
  uint64_t h = XXH3_64bits(w, n);
  tk_cache_slot *s = &t->cache[h & (TK_CACHE_SLOTS - 1)];
  uint32_t got[TK_CACHE_IDS];
  size_t ng;
  if (cache_get(s, h, w, n, got, &ng)) {
    e->hits++;
    for (size_t i = 0; i < ng; i++)
      if (push_id(e, got[i])) return IC_ENOMEM;
    return 0;
  }
  e->misses++;
  size_t before = e->ids->n;
  int rc = tk_bpe_word(&t->bpe, w, n, e->ids);
  if (!rc && e->ids->n - before <= TK_CACHE_IDS)
    cache_put(s, h, w, n, e->ids->v + before, e->ids->n - before);
  return rc;
}

/* Pre-tokenizes and encodes one stretch of (normalized) text free of added tokens. */
static int encode_text(enc *e, const char *s, size_t n, bool origin) {
  const ic_tokenizer *t = e->t;
  tk_pieces *ps = &e->sc->ps;
  ps->text.n = 0;
  ps->n = 0;
  if (tk_str_put(&ps->text, s, n) || tk_pieces_push(ps, 0, n, origin)) return IC_ENOMEM;
  if (t->pre) {
    int rc = tk_pre_apply(t->pre, ps, &e->sc->pre);
    if (rc) return rc;
  }
  for (size_t i = 0; i < ps->n; i++) {
    int rc = model_piece(e, ps->text.p + ps->v[i].off, ps->v[i].len);
    if (rc) return rc;
    if (e->max_ids && e->ids->n > e->max_ids) return IC_ERANGE;
  }
  return 0;
}

/* One stretch of raw text free of non-normalized added tokens. */
static int encode_segment(enc *e, const char *s, size_t n, bool origin) {
  const ic_tokenizer *t = e->t;
  const char *ns = s;
  size_t nn = n;
  if (t->normalizer) {
    tk_str *norm = &e->sc->norm;
    norm->n = 0;
    int rc = tk_norm_apply(t->normalizer, s, n, norm);
    if (rc) return rc;
    ns = norm->p ? norm->p : "";
    nn = norm->n;
  }
  if (!t->has_norm) return encode_text(e, ns, nn, origin);
  tk_run *runs = NULL;
  size_t nruns = 0, cap = 0;
  int rc = tk_added_split(&t->norm_trie, t->added, ns, nn, 0, &runs, &nruns, &cap);
  /* encode_text reuses the scratch piece list, never the normalized text: ns stays valid. */
  for (size_t i = 0; !rc && i < nruns; i++) {
    if (runs[i].token >= 0)
      rc = push_id(e, t->added[runs[i].token].id);
    else
      rc = encode_text(e, ns + runs[i].off, runs[i].len, origin && runs[i].off == 0);
  }
  free(runs);
  return rc;
}

int ic_tokenizer_encode(const ic_tokenizer *t, const char *text, size_t len, bool add_special,
                        size_t max_ids, ic_tok_ids *ids) {
  int rc = 0;
  size_t clean_len = 0;
  char *clean = tk_utf8_sanitize(text, len, &clean_len, &rc);
  if (rc) return rc;
  if (clean) text = clean, len = clean_len;
  scratch tmp = {0}, *sc = scratch_get();
  if (!sc) sc = &tmp;
  sc->busy = true;
  enc e = {.t = t, .ids = ids, .max_ids = max_ids, .sc = sc};
  ids->n = 0;
  if (!sc->pre.md && !(sc->pre.md = pcre2_match_data_create(1, NULL))) rc = IC_ENOMEM;
  if (!rc && add_special && t->post.present)
    for (size_t i = 0; !rc && i < t->post.npre; i++)
      rc = push_id(&e, t->post.pre[i]);
  e.nruns = 0;
  if (!rc && t->has_raw) {
    rc = tk_added_split(&t->raw_trie, t->added, text, len, 0, &sc->runs, &e.nruns, &sc->runcap);
  } else if (!rc && len) {
    if (!sc->runcap && !(sc->runs = malloc(sizeof *sc->runs)))
      rc = IC_ENOMEM;
    else
      sc->runcap = sc->runcap ? sc->runcap : 1, sc->runs[0] = (tk_run){0, len, -1}, e.nruns = 1;
  }
  for (size_t i = 0; !rc && i < e.nruns; i++) {
    tk_run r = sc->runs[i];
    if (r.token >= 0)
      rc = push_id(&e, t->added[r.token].id);
    else
      rc = encode_segment(&e, text + r.off, r.len, r.off == 0);
  }
  if (!rc && add_special && t->post.present)
    for (size_t i = 0; !rc && i < t->post.npost; i++)
      rc = push_id(&e, t->post.post[i]);
  if (!rc && max_ids && ids->n > max_ids) rc = IC_ERANGE;
  atomic_fetch_add_explicit((_Atomic uint64_t *)&t->cache_hits, e.hits, memory_order_relaxed);
  atomic_fetch_add_explicit((_Atomic uint64_t *)&t->cache_misses, e.misses, memory_order_relaxed);
  size_t held = sc->norm.cap + sc->ps.text.cap + sc->ps.cap * sizeof(tk_piece) +
                sc->pre.out_cap * sizeof(tk_piece) + sc->pre.sp_cap * sizeof(tk_span) +
                sc->runcap * sizeof(tk_run);
  sc->busy = false;
  if (sc == &tmp || held > SCRATCH_KEEP) scratch_release(sc);
  free(clean);
  return rc;
}

void ic_tok_ids_free(ic_tok_ids *ids) {
  free(ids->v);
  ids->v = NULL;
  ids->n = ids->cap = 0;
}

const char *ic_tokenizer_chat_template(const ic_tokenizer *t) { return t->chat_template; }
const char *ic_tokenizer_bos_token(const ic_tokenizer *t) { return t->bos_token; }
const char *ic_tokenizer_eos_token(const ic_tokenizer *t) { return t->eos_token; }
size_t ic_tokenizer_vocab_size(const ic_tokenizer *t) { return t->vocab_size; }

void ic_tokenizer_cache_stats(const ic_tokenizer *t, uint64_t *hits, uint64_t *misses) {
  *hits = atomic_load_explicit((_Atomic uint64_t *)&t->cache_hits, memory_order_relaxed);
  *misses = atomic_load_explicit((_Atomic uint64_t *)&t->cache_misses, memory_order_relaxed);
}
