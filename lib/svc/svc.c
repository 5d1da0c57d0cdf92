/* InferenceCache service logic over protobuf-c messages: the LookupRoute pipeline of
 * docs/server.md "LookupRoute" (policy gates, input precedence, floors, affinity, timeouts,
 * envelopes, metrics), ingest/event/state conversions, and stream encodings. No transport here.
 *
 * Deadlines: the reference runs resolution and lookup on goroutines and abandons them at the
 * deadline; we run them inline and check the deadline after each phase, which
 * preserves the observable rules: TIMEOUT when the deadline passes during resolution or lookup,
 * no LFU credit for a timed-out lookup. The hot path allocates only for derived chains. */
#include "ic/svc.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/fingerprint.h"
#include "ic/log.h"
#include "ic/rpc.h"
#include "ic/utf8.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"
#include "change_wire.h"
#include "wire_strings.h"

typedef Inferencecache__V1alpha1__LookupRouteRequest lr_req_t;
typedef Inferencecache__V1alpha1__LookupRouteResponse lr_resp_t;
typedef Inferencecache__V1alpha1__ReplicaScore score_t;

#define UNMARSHAL_MSG "grpc: error unmarshalling request"
#define UTF8_MSG "grpc: error unmarshalling request: string field contains invalid UTF-8"

struct ic_svc {
  ic_index_t *index;
  ic_policy_store_t *policy;
  int block_size;
  size_t max_identity; /* bytes, write paths only */
  ic_metric_family_t *lookup_calls;
  ic_metric_family_t *lookup_latency;
  ic_svc_prompt_fn prompt_encode;
  void *prompt_ud;
  ic_svc_render_fn render_template;
  void *render_ud;
  _Atomic int tokenizing; /* in-flight prompt_text encodes (MaxConcurrentTokenize) */
  ic_index_load_cfg_t load;
  void (*on_report)(void *ud, const char *replica_id, bool full_state);
  void *report_ud;
};

ic_svc_t *ic_svc_new(const ic_svc_config_t *cfg) {
  if (!cfg || !cfg->index) return NULL;
  ic_svc_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->index = cfg->index;
  s->policy = cfg->policy;
  s->block_size = cfg->engine_block_size > 0 ? cfg->engine_block_size : IC_FP_DEFAULT_BLOCK_SIZE;
  s->max_identity = cfg->max_identity_bytes > 0   ? (size_t)cfg->max_identity_bytes
                    : cfg->max_identity_bytes < 0 ? 0
                                                  : IC_SVC_DEFAULT_MAX_IDENTITY_BYTES;
  s->lookup_calls = cfg->lookup_calls;
  s->lookup_latency = cfg->lookup_latency;
  s->prompt_encode = cfg->prompt_encode;
  s->prompt_ud = cfg->prompt_ud;
  s->render_template = cfg->render_template;
  s->render_ud = cfg->render_ud;
  s->on_report = cfg->on_report;
  s->report_ud = cfg->report_ud;
  if (cfg->load)
    s->load = *cfg->load;
  else
    ic_index_load_cfg_init(&s->load);
  return s;
}

void ic_svc_free(ic_svc_t *s) { free(s); }

/* The one strict check (lib/base, ASCII a word at a time): prompt_text can be 1 MiB. */
bool ic_svc_utf8_valid(const char *str, size_t n) { return ic_utf8_valid(str, n); }

/* The status for a string field holding a NUL byte. protobuf-c hands strings over
 * NUL-terminated, so "pod-a\0other" would alias "pod-a": such requests are refused instead
 * (the reference accepts them as distinct ids; docs/server.md lists the difference). Messages
 * must be static (the transport sends them after the handler returns). */
static const char *nul_msg(const char *field) {
#define NUL_MSG(f)                                                                                 \
  "invalid argument: string field " f                                                              \
  " contains a NUL byte (U+0000); identities are never truncated"
  static const char *const known[][2] = {
      {"replica_id", NUL_MSG("replica_id")}, {"model_id", NUL_MSG("model_id")},
      {"tenant_id", NUL_MSG("tenant_id")},   {"hash_scheme", NUL_MSG("hash_scheme")},
      {"adapter_id", NUL_MSG("adapter_id")}, {"prompt_text", NUL_MSG("prompt_text")},
      {"names", NUL_MSG("names")},
  };
  for (size_t i = 0; field && i < sizeof known / sizeof *known; i++)
    if (strcmp(field, known[i][0]) == 0) return known[i][1];
  return "invalid argument: a string field contains a NUL byte (U+0000); identities are never "
         "truncated";
#undef NUL_MSG
}

/* The status for an identity longer than the write paths accept (static messages again). */
static const char *long_msg(const char *field) {
#define LONG_MSG(f) "invalid argument: string field " f " is longer than --max-identity-bytes"
  static const char *const known[][2] = {
      {"replica_id", LONG_MSG("replica_id")}, {"model_id", LONG_MSG("model_id")},
      {"tenant_id", LONG_MSG("tenant_id")},   {"hash_scheme", LONG_MSG("hash_scheme")},
      {"adapter_id", LONG_MSG("adapter_id")},
  };
  for (size_t i = 0; field && i < sizeof known / sizeof *known; i++)
    if (strcmp(field, known[i][0]) == 0) return known[i][1];
  return "invalid argument: an identity is longer than --max-identity-bytes";
#undef LONG_MSG
}

/* Every string field of a decoded request, checked on its wire bytes (the C strings protobuf-c
 * made cannot show an embedded NUL): invalid UTF-8 is Go's unmarshal error (INTERNAL), an
 * embedded NUL is INVALID_ARGUMENT, and so is an identity longer than max_identity bytes
 * (0 = unbounded; only the write paths pass a bound: an identity the index holds for good must
 * stay small, while a lookup for a long one is simply answered). IC_RPC_OK when all are fine. */
static int check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *req, size_t len,
                         size_t max_identity, const char **msg) {
  const char *field = NULL;
  switch (wire_strings_check(d, req, len, max_identity, &field)) {
  case WIRE_STRINGS_BAD_UTF8: return *msg = UTF8_MSG, IC_RPC_INTERNAL;
  case WIRE_STRINGS_NUL: return *msg = nul_msg(field), IC_RPC_INVALID_ARGUMENT;
  case WIRE_STRINGS_TOO_LONG: return *msg = long_msg(field), IC_RPC_INVALID_ARGUMENT;
  default: return IC_RPC_OK;
  }
}

static int append_packed(ic_buf_t *out, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  if (ic_buf_reserve(out, n)) return IC_ENOMEM;
  protobuf_c_message_pack(m, (uint8_t *)out->data + out->len);
  out->len += n;
  return 0;
}

/* ------------------------------------------------------------------ request arena */

/* protobuf-c unpacks a 128-block LookupRoute into ~130 small allocations; with malloc that was
 * ~40% of the handler. Each thread unpacks into its own bump arena instead: arena_begin() rewinds
 * it (every handler frees its message before returning), frees are no-ops inside the arena, and
 * a request that did not fit falls back to malloc and grows the arena for the next one (capped
 * at ARENA_MAX). The arena is freed when its thread exits. */
#define ARENA_MIN (64 * 1024)
#define ARENA_MAX (16 * 1024 * 1024)

typedef struct arena {
  uint8_t *buf;
  size_t cap, used, want;
  ProtobufCAllocator alloc;
} arena_t;

static pthread_key_t g_arena_key;
static pthread_once_t g_arena_once = PTHREAD_ONCE_INIT;

static void arena_destroy(void *p) {
  arena_t *a = p;
  free(a->buf);
  free(a);
}

static void arena_key_init(void) { pthread_key_create(&g_arena_key, arena_destroy); }

static void *arena_alloc(void *ud, size_t n) {
  arena_t *a = ud;
  size_t need = (n + 15) & ~(size_t)15;
  if (a->buf && need <= a->cap - a->used) {
    void *p = a->buf + a->used;
    a->used += need;
    return p;
  }
  a->want += need;
  return malloc(n ? n : 1);
}

static void arena_free(void *ud, void *p) {
  arena_t *a = ud;
  if (!p || (a->buf && (uint8_t *)p >= a->buf && (uint8_t *)p < a->buf + a->cap)) return;
  free(p);
}

/* The calling thread's allocator, rewound for a new request. NULL (= malloc) if unavailable. */
static ProtobufCAllocator *arena_begin(void) {
  pthread_once(&g_arena_once, arena_key_init);
  arena_t *a = pthread_getspecific(g_arena_key);
  if (!a) {
    a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->alloc = (ProtobufCAllocator){arena_alloc, arena_free, a};
    if (pthread_setspecific(g_arena_key, a) != 0) {
      free(a);
      return NULL;
    }
  }
  size_t want = a->used + a->want;
  if (!a->buf || (want > a->cap && a->cap < ARENA_MAX)) {
    size_t nc = a->cap ? a->cap : ARENA_MIN;
    while (nc < want && nc < ARENA_MAX) nc *= 2;
    uint8_t *nb = malloc(nc);
    if (nb) {
      free(a->buf);
      a->buf = nb;
      a->cap = nc;
    }
  }
  a->used = a->want = 0;
  return &a->alloc;
}

/* True when the last unpack used memory outside the arena (or there is no arena), i.e. the
 * message must be walked by free_unpacked; otherwise the next arena_begin() reclaims it all. */
static bool arena_needs_free(void) {
  arena_t *a = pthread_getspecific(g_arena_key);
  return !a || a->want > 0;
}

/* The current arena (no rewind), for free_unpacked. */
static ProtobufCAllocator *arena_cur(void) {
  arena_t *a = pthread_getspecific(g_arena_key);
  return a ? &a->alloc : NULL;
}

/* ------------------------------------------------------------------ LookupRoute */

static void observe(ic_svc_t *s, const char *model, const char *code, bool hint, double secs) {
  if (s->lookup_calls) {
    const char *lv[3] = {model, code, hint ? "true" : "false"};
    ic_metric_t *c = ic_metric_child(s->lookup_calls, lv);
    if (c) ic_metric_inc(c);
  }
  if (s->lookup_latency) {
    const char *lv[1] = {model};
    ic_metric_t *h = ic_metric_child(s->lookup_latency, lv);
    if (h) ic_metric_observe(h, secs);
  }
}

typedef struct resolved {
  bool fail_open;
  const ic_index_bytes_t *chain;
  size_t n_chain;
  const int32_t *counts;
  size_t n_counts;
  ic_index_bytes_t exact;
  int32_t exact_count;
  /* derived from token_ids */
  uint64_t *hashes;
  uint8_t *wire;
  ic_index_bytes_t *dchain;
  int32_t *dcounts;
  /* prompt_text path: the tokenizer's ids, echoed in token_ids once they exist */
  uint32_t *echo;
  size_t n_echo;
} resolved_t;

static void resolved_free(resolved_t *r) {
  free(r->hashes);
  free(r->wire);
  free(r->dchain);
  free(r->dcounts);
  free(r->echo);
}

/* Derives the chain of token_ids. */
static int derive_chain(const uint32_t *toks, size_t n, int bs, bool chain_enabled, resolved_t *r) {
  size_t nb = ic_fp_block_count(n, bs);
  if (nb == 0) return r->fail_open = true, 0;
  r->hashes = malloc(nb * sizeof *r->hashes);
  r->wire = malloc(nb * IC_FP_WIRE_LEN);
  r->dchain = malloc(nb * sizeof *r->dchain);
  r->dcounts = malloc(nb * sizeof *r->dcounts);
  if (!r->hashes || !r->wire || !r->dchain || !r->dcounts) return IC_ENOMEM;
  ic_fp_prefix_hashes(toks, n, bs, NULL, r->hashes, nb, NULL);
  int64_t sum = 0;
  for (size_t i = 0; i < nb; i++) {
    ic_fp_to_wire(r->hashes[i], r->wire + i * IC_FP_WIRE_LEN);
    r->dchain[i] = (ic_index_bytes_t){IC_FP_WIRE_LEN, r->wire + i * IC_FP_WIRE_LEN};
    r->dcounts[i] = bs;
    sum += bs;
  }
  if (chain_enabled) {
    r->chain = r->dchain;
    r->n_chain = nb;
    r->counts = r->dcounts;
    r->n_counts = nb;
  }
  r->exact = r->dchain[nb - 1];
  r->exact_count = sum > INT32_MAX ? INT32_MAX : (int32_t)sum;
  return 0;
}

static int resolve(ic_svc_t *s, const lr_req_t *q, bool chain_enabled, resolved_t *r) {
  size_t nbh = q->n_block_hashes, nbtc = q->n_block_token_counts;
  bool ignored_chain = false;
  if (!chain_enabled) {
    if (q->prefix_hash.len > 0) {
      r->exact = (ic_index_bytes_t){q->prefix_hash.len, q->prefix_hash.data};
      r->exact_count = q->prefix_token_count;
      return 0;
    }
    if (nbh > 0 || nbtc > 0) ignored_chain = true;
    nbh = nbtc = 0;
  }
  if (nbh > 0 || nbtc > 0 || q->prefix_hash.len > 0) {
    if (nbh != nbtc) return r->fail_open = true, 0;
    r->chain = (const ic_index_bytes_t *)q->block_hashes;
    r->n_chain = nbh;
    r->counts = q->block_token_counts;
    r->n_counts = nbtc;
    r->exact = (ic_index_bytes_t){q->prefix_hash.len, q->prefix_hash.data};
    r->exact_count = q->prefix_token_count;
    return 0;
  }
  if (q->n_token_ids > 0) {
    if (q->n_token_ids > IC_SVC_MAX_LOOKUP_TOKENS) return r->fail_open = true, 0;
    return derive_chain(q->token_ids, q->n_token_ids, s->block_size, chain_enabled, r);
  }
  if (q->prompt_text && *q->prompt_text) {
    if (!s->prompt_encode) {
      /* No --tokenizer-models-dir: the reference's default build behaves the same way
       * (tokenizer "unavailable" -> fail open NO_HINT, no echo). */
      ic_log_debug("lookup_route_prompt_text_unavailable", IC_LS("reason", "no tokenizer models loaded"),
                   IC_LS("effect", "NO_HINT"));
      return r->fail_open = true, 0;
    }
    size_t tl = strlen(q->prompt_text);
    if (tl > IC_SVC_MAX_PROMPT_TEXT_BYTES) return r->fail_open = true, 0;
    /* Non-blocking semaphore: sheds load instead of queueing behind long prompts. */
    if (atomic_fetch_add(&s->tokenizing, 1) >= IC_SVC_MAX_CONCURRENT_TOKENIZE) {
      atomic_fetch_sub(&s->tokenizing, 1);
      return r->fail_open = true, 0;
    }
    uint32_t *toks = NULL;
    size_t n = 0;
    int erc = s->prompt_encode(s->prompt_ud, q->model_id, q->prompt_text, tl, IC_SVC_MAX_LOOKUP_TOKENS, &toks, &n);
    atomic_fetch_sub(&s->tokenizing, 1);
    if (erc || n == 0 || n > IC_SVC_MAX_LOOKUP_TOKENS) {
      free(toks);
      ic_log_debug("lookup_route_prompt_text_failed", IC_LS("model_id", q->model_id),
                   IC_LS("err", erc ? ic_strerror(erc) : "no tokens"), IC_LS("effect", "NO_HINT"));
      return r->fail_open = true, 0;
    }
    r->echo = toks;
    r->n_echo = n;
    return derive_chain(toks, n, s->block_size, chain_enabled, r);
  }
  if (ignored_chain) return r->fail_open = true, 0;
  r->exact = (ic_index_bytes_t){q->prefix_hash.len, q->prefix_hash.data};
  r->exact_count = q->prefix_token_count;
  return 0;
}

static const char *strategy_code(ic_index_strategy_t st) {
  switch (st) {
  case IC_INDEX_STRATEGY_PREFIX_MATCH: return "PREFIX_MATCH";
  case IC_INDEX_STRATEGY_TENANT_HOT: return "TENANT_HOT";
  case IC_INDEX_STRATEGY_UNKNOWN_TENANT: return "UNKNOWN_TENANT";
  case IC_INDEX_STRATEGY_UNKNOWN_MODEL: return "UNKNOWN_MODEL";
  case IC_INDEX_STRATEGY_UNKNOWN_HASH_SCHEME: return "UNKNOWN_HASH_SCHEME";
  default: return "NO_HINT";
  }
}

/* Packs the envelope and records the metrics once. */
static int respond(ic_svc_t *s, const lr_req_t *q, ic_buf_t *out, const char *code,
                   const ic_index_row_t *rows, size_t nrows, const char *adapter, int64_t elapsed_ns,
                   const resolved_t *echo) {
  lr_resp_t r = INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_RESPONSE__INIT;
  score_t stack[16], *sp = stack;
  score_t *ptrs_stack[16], **pp = ptrs_stack;
  if (nrows > 16) {
    sp = malloc(nrows * sizeof *sp);
    pp = malloc(nrows * sizeof *pp);
    if (!sp || !pp) {
      free(sp == stack ? NULL : sp);
      free(pp == ptrs_stack ? NULL : pp);
      return IC_RPC_INTERNAL;
    }
  }
  for (size_t i = 0; i < nrows; i++) {
    score_t init = INFERENCECACHE__V1ALPHA1__REPLICA_SCORE__INIT;
    sp[i] = init;
    sp[i].replica_id = (char *)rows[i].replica_id;
    sp[i].score = rows[i].score;
    sp[i].matched_tokens = rows[i].matched_tokens;
    sp[i].estimated_cache_hit_prob = rows[i].estimated_cache_hit_prob;
    sp[i].tier = (Inferencecache__V1alpha1__CacheTier)rows[i].tier;
    pp[i] = &sp[i];
  }
  r.n_replica_scores = nrows;
  r.replica_scores = pp;
  r.reason_code = (char *)code;
  r.lookup_latency_us = elapsed_ns / 1000;
  r.adapter_id = (char *)(adapter ? adapter : "");
  if (echo && echo->n_echo) {
    r.token_ids = echo->echo;
    r.n_token_ids = echo->n_echo;
  }
  int rc = append_packed(out, &r.base) ? IC_RPC_INTERNAL : IC_RPC_OK;
  if (sp != stack) free(sp);
  if (pp != ptrs_stack) free(pp);
  observe(s, q->model_id, code, nrows > 0, (double)elapsed_ns / 1e9);
  return rc;
}

/* A prompt_text lookup waiting for a tokenizer worker: the request's bytes (decoded again on the
 * worker: the first decode lives in the transport thread's arena) and what steps 1-5 settled. */
struct ic_svc_pending {
  uint8_t *req;
  size_t len;
  int64_t start, deadline, budget_ns;
  ic_policy_knobs_t k;
  char *model; /* metrics label of a fail-open answer */
};

static int lookup_route(ic_svc_t *s, const uint8_t *req, size_t len, int64_t deadline_ns,
                        ic_buf_t *out, const char **msg, ic_svc_pending_t **pending);
static int route(ic_svc_t *s, const lr_req_t *q, const ic_policy_knobs_t *kp, int64_t start,
                 int64_t deadline, int64_t budget_ns, ic_buf_t *out);

/* Index results hold interned replica names: the guard keeps them alive until packed. */
int ic_svc_lookup_route(ic_svc_t *s, const uint8_t *req, size_t len, int64_t deadline_ns,
                        ic_buf_t *out, const char **msg) {
  ic_index_guard_t g = ic_index_guard(s->index);
  int rc = lookup_route(s, req, len, deadline_ns, out, msg, NULL);
  ic_index_unguard(s->index, g);
  return rc;
}

int ic_svc_lookup_route_begin(ic_svc_t *s, const uint8_t *req, size_t len, int64_t deadline_ns,
                              ic_buf_t *out, const char **msg, ic_svc_pending_t **pending) {
  if (pending) *pending = NULL;
  ic_index_guard_t g = ic_index_guard(s->index);
  int rc = lookup_route(s, req, len, deadline_ns, out, msg, pending);
  ic_index_unguard(s->index, g);
  return rc;
}

int64_t ic_svc_pending_deadline_ns(const ic_svc_pending_t *p) { return p->deadline; }
const char *ic_svc_pending_model(const ic_svc_pending_t *p) { return p->model; }

static void pending_free(ic_svc_pending_t *p) {
  free(p->req);
  free(p->model);
  free(p);
}

int ic_svc_lookup_route_finish(ic_svc_t *s, ic_svc_pending_t *p, ic_buf_t *out, const char **msg) {
  if (ic_clock_monotonic_ns() >= p->deadline) /* late: no tokenizing, as if it had expired */
    return ic_svc_lookup_route_fail_open(s, p, true, out);
  lr_req_t *q =
      inferencecache__v1alpha1__lookup_route_request__unpack(arena_begin(), p->len, p->req);
  if (!q) { /* decoded once already: only memory can fail */
    pending_free(p);
    return *msg = "out of memory", IC_RPC_RESOURCE_EXHAUSTED;
  }
  ic_index_guard_t g = ic_index_guard(s->index);
  int rc = route(s, q, &p->k, p->start, p->deadline, p->budget_ns, out);
  ic_index_unguard(s->index, g);
  if (arena_needs_free())
    inferencecache__v1alpha1__lookup_route_request__free_unpacked(q, arena_cur());
  pending_free(p);
  return rc;
}

int ic_svc_lookup_route_fail_open(ic_svc_t *s, ic_svc_pending_t *p, bool timed_out, ic_buf_t *out) {
  lr_req_t q = INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.model_id = p->model;
  int rc = respond(s, &q, out, timed_out ? "TIMEOUT" : "NO_HINT", NULL, 0, "",
                   ic_clock_monotonic_ns() - p->start, NULL);
  pending_free(p);
  return rc;
}

/* Steps 1-5 (decode, reserved tenant, deadline, gates), then either the rest inline (route) or,
 * for a prompt_text to tokenize when the caller takes pending lookups, a pending one. */
static int lookup_route(ic_svc_t *s, const uint8_t *req, size_t len, int64_t deadline_ns,
                        ic_buf_t *out, const char **msg, ic_svc_pending_t **pending) {
  int64_t start = ic_clock_monotonic_ns();
  lr_req_t *q = inferencecache__v1alpha1__lookup_route_request__unpack(arena_begin(), len, req);
  if (!q) return *msg = UNMARSHAL_MSG, IC_RPC_INTERNAL;
  int rc =
      check_strings(&inferencecache__v1alpha1__lookup_route_request__descriptor, req, len, 0, msg);
  if (rc != IC_RPC_OK) {
    if (arena_needs_free()) inferencecache__v1alpha1__lookup_route_request__free_unpacked(q, arena_cur());
    return rc;
  }
  /* 1. reserved tenant */
  if (strcmp(q->tenant_id, IC_SVC_PROBE_TENANT) == 0) {
    rc = respond(s, q, out, "NO_HINT", NULL, 0, "", 0, NULL);
    if (arena_needs_free()) inferencecache__v1alpha1__lookup_route_request__free_unpacked(q, arena_cur());
    return rc;
  }
  ic_policy_knobs_t k;
  if (s->policy) {
    ic_policy_store_resolve(s->policy, q->tenant_id, strlen(q->tenant_id), &k);
  } else {
    memset(&k, 0, sizeof k); /* no store (tests): floors off, strategy defaults */
    k.affinity_routing = k.enable_chain_matching = k.enable_tenant_hot = true;
  }
  /* 2-3. deadline */
  int64_t budget_ns = k.lookup_timeout_ms > 0 ? (int64_t)k.lookup_timeout_ms * 1000000 : 0;
  int64_t deadline = deadline_ns;
  if (budget_ns > 0 && start + budget_ns < deadline) deadline = start + budget_ns;
  bool will_tokenize = q->prompt_text && *q->prompt_text &&
                       (!k.enable_chain_matching || (q->n_block_hashes == 0 && q->n_block_token_counts == 0)) &&
                       q->prefix_hash.len == 0 && q->n_token_ids == 0;
  if (will_tokenize && deadline == INT64_MAX)
    deadline = start + (int64_t)IC_SVC_DEFAULT_TOKENIZE_TIMEOUT_MS * 1000000;
  /* 4. already expired */
  if (ic_clock_monotonic_ns() >= deadline) {
    rc = respond(s, q, out, "TIMEOUT", NULL, 0, "", ic_clock_monotonic_ns() - start, NULL);
  } else if (k.require_chain &&
             !(q->n_block_hashes > 0 && q->n_block_hashes == q->n_block_token_counts)) {
    /* 5. requireChain gate */
    rc = respond(s, q, out, "POLICY_REQUIRES_CHAIN", NULL, 0, "", ic_clock_monotonic_ns() - start,
                 NULL);
  } else if (pending && will_tokenize && s->prompt_encode &&
             strlen(q->prompt_text) <= IC_SVC_MAX_PROMPT_TEXT_BYTES) {
    /* 6 on a tokenizer worker (ic_svc_lookup_route_finish) */
    ic_svc_pending_t *p = calloc(1, sizeof *p);
    if (p && (p->req = malloc(len ? len : 1)) && (p->model = strdup(q->model_id))) {
      memcpy(p->req, req, len);
      p->len = len;
      p->start = start;
      p->deadline = deadline;
      p->budget_ns = budget_ns;
      p->k = k;
      *pending = p;
      rc = IC_RPC_OK;
    } else {
      if (p) free(p->req);
      free(p);
      rc = respond(s, q, out, "NO_HINT", NULL, 0, "", ic_clock_monotonic_ns() - start, NULL);
    }
  } else {
    rc = route(s, q, &k, start, deadline, budget_ns, out);
  }
  if (arena_needs_free())
    inferencecache__v1alpha1__lookup_route_request__free_unpacked(q, arena_cur());
  return rc;
}

/* Steps 6-12: resolve (tokenizing a prompt_text inline), look up, gate, answer. */
static int route(ic_svc_t *s, const lr_req_t *q, const ic_policy_knobs_t *kp, int64_t start,
                 int64_t deadline, int64_t budget_ns, ic_buf_t *out) {
  const ic_policy_knobs_t k = *kp;
  int rc;
  resolved_t r;
  memset(&r, 0, sizeof r);
  ic_index_result_t *res = NULL;
  /* 6. resolve inputs */
  if (resolve(s, q, k.enable_chain_matching, &r) != 0) {
    rc = respond(s, q, out, "NO_HINT", NULL, 0, "", ic_clock_monotonic_ns() - start, &r);
    goto done;
  }
  if (ic_clock_monotonic_ns() >= deadline) { /* 7 */
    rc = respond(s, q, out, "TIMEOUT", NULL, 0, "", ic_clock_monotonic_ns() - start, &r);
    goto done;
  }
  if (r.fail_open) { /* 8 */
    rc = respond(s, q, out, "NO_HINT", NULL, 0, "", ic_clock_monotonic_ns() - start, &r);
    goto done;
  }
  /* 9. minimumPrefixTokens pre-gate (affinity off). The chain's counts are summed in int32 with
     wrap-around, as the reference does (and as the index sums matched tokens), so absurd counts
     gate the same way there and here (docs/server.md "Deliberate differences" says why). */
  int32_t eff = 0;
  if (r.n_counts > 0) {
    uint32_t sum = 0;
    for (size_t i = 0; i < r.n_counts; i++)
      sum += (uint32_t)r.counts[i];
    eff = (int32_t)sum;
  } else {
    eff = r.exact_count;
  }
  bool below_min = k.minimum_prefix_tokens > 0 && eff < k.minimum_prefix_tokens;
  if (below_min && !k.affinity_routing) {
    rc = respond(s, q, out, "NO_HINT", NULL, 0, "", ic_clock_monotonic_ns() - start, &r);
    goto done;
  }
  /* 10-11. index lookup */
  ic_index_lookup_t ir = {
      .model = q->model_id,
      .tenant = q->tenant_id,
      .scheme = q->hash_scheme,
      .adapter = q->adapter_id,
      .prefix_hash = r.exact,
      .token_count = r.exact_count,
      .block_hashes = k.enable_chain_matching ? r.chain : NULL,
      .n_block_hashes = k.enable_chain_matching ? r.n_chain : 0,
      .block_token_counts = k.enable_chain_matching ? r.counts : NULL,
      .n_block_token_counts = k.enable_chain_matching ? r.n_counts : 0,
      .ttft_budget_ms = q->slo ? q->slo->ttft_ms : 0,
      .tbt_budget_ms = q->slo ? q->slo->tbt_ms : 0,
  };
  int64_t t0 = ic_clock_monotonic_ns();
  if (ic_index_lookup_route(s->index, &ir, &res) != 0) res = NULL;
  int64_t t1 = ic_clock_monotonic_ns();
  if (deadline != INT64_MAX && (t1 >= deadline || (budget_ns > 0 && t1 - t0 > budget_ns))) {
    rc = respond(s, q, out, "TIMEOUT", NULL, 0, "", t1 - start, &r);
    goto done;
  }
  /* 11b. predict-on-route (docs/ranking.md, section 3): speculative entries of prompts routed moments
     ago join the answer; off unless the tenant's policy asks */
  if (res && k.predict_on_route && ic_index_result_add_predicted(s->index, res, &ir) != 0)
    ic_log_debug("predict_merge_failed", IC_LS("err", "out of memory")); /* fail open */
  ic_index_strategy_t st = res ? ic_index_result_strategy(res) : IC_INDEX_STRATEGY_NONE;
  /* 12. strategy gates */
  if (st == IC_INDEX_STRATEGY_TENANT_HOT && !k.enable_tenant_hot) st = IC_INDEX_STRATEGY_NONE;
  if (below_min && (st == IC_INDEX_STRATEGY_PREFIX_MATCH || st == IC_INDEX_STRATEGY_TENANT_HOT))
    st = IC_INDEX_STRATEGY_NONE;
  if (st == IC_INDEX_STRATEGY_PREFIX_MATCH && k.minimum_matched_tokens > 0) {
    size_t n = ic_index_result_count(res), kept = 0;
    const ic_index_row_t *rows = ic_index_result_rows(res);
    for (size_t i = 0; i < n; i++) kept += rows[i].matched_tokens >= k.minimum_matched_tokens;
    if (kept == 0) {
      st = IC_INDEX_STRATEGY_NONE;
    } else if (kept < n) {
      const char *keep_stack[32], **keep = kept <= 32 ? keep_stack : malloc(kept * sizeof *keep);
      if (!keep) {
        st = IC_INDEX_STRATEGY_NONE;
      } else {
        size_t j = 0;
        for (size_t i = 0; i < n; i++)
          if (rows[i].matched_tokens >= k.minimum_matched_tokens) keep[j++] = rows[i].replica_id;
        if (ic_index_result_retain_replicas(res, keep, j) != 0) st = IC_INDEX_STRATEGY_NONE;
        if (keep != keep_stack) free(keep);
      }
    }
  }
  /* 12b'. load-aware ranking (docs/ranking.md; off unless the tenant's policy asks): rows
     re-scored by prefill saved against queued work; every holder overloaded = no hint at all,
     so the gateway balances by load instead of a load-blind consistent hash. */
  bool load_dropped_all = false;
  if (st == IC_INDEX_STRATEGY_PREFIX_MATCH && k.load_aware_routing) {
    bool changed = false;
    if (ic_index_result_rank_by_load(s->index, res, q->tenant_id, q->model_id, eff, &s->load, &changed) != 0)
      changed = false; /* ENOMEM: the rows are as retain left them; answer what is there */
    if (ic_index_result_count(res) == 0) st = IC_INDEX_STRATEGY_NONE, load_dropped_all = true;
  }
  if (st == IC_INDEX_STRATEGY_PREFIX_MATCH && k.routing_floor_score > 0 && ic_index_result_count(res) > 0 &&
      ic_index_result_rows(res)[0].score < k.routing_floor_score)
    st = IC_INDEX_STRATEGY_NONE;
  /* 12d. affinity fallback */
  bool load_pick = k.load_aware_routing && k.predict_on_route;
  if (st == IC_INDEX_STRATEGY_NONE && k.affinity_routing && (!load_dropped_all || load_pick) && *q->tenant_id && *q->model_id && *q->hash_scheme &&
      !((q->n_block_hashes > 0 || q->n_block_token_counts > 0) && q->n_block_hashes != q->n_block_token_counts)) {
    uint8_t *seed = NULL;
    size_t seed_len = 0;
    if (ir.n_block_hashes > 0) {
      size_t total = 0;
      for (size_t i = 0; i < ir.n_block_hashes; i++) total += 4 + ir.block_hashes[i].len;
      seed = malloc(total ? total : 1);
      if (seed)
        for (size_t i = 0; i < ir.n_block_hashes; i++) {
          uint32_t l = (uint32_t)ir.block_hashes[i].len;
          seed[seed_len++] = (uint8_t)(l >> 24);
          seed[seed_len++] = (uint8_t)(l >> 16);
          seed[seed_len++] = (uint8_t)(l >> 8);
          seed[seed_len++] = (uint8_t)l;
          if (l) memcpy(seed + seed_len, ir.block_hashes[i].data, l);
          seed_len += l;
        }
    } else if (r.exact.len > 0) {
      seed = malloc(r.exact.len);
      if (seed) memcpy(seed, r.exact.data, r.exact.len), seed_len = r.exact.len;
    }
    const char *replica = NULL;
    bool have = seed && seed_len > 0 &&
                ic_index_affinity_hint(s->index, q->tenant_id, q->model_id, q->hash_scheme, seed, seed_len, &replica);
    if (load_pick) { /* docs/ranking.md, section 3: least work, queue + routes since its sample */
      uint64_t tb = 1469598103934665603ULL;
      for (size_t i = 0; seed && i < seed_len; i++) tb = (tb ^ seed[i]) * 1099511628211ULL;
      const char *pick = NULL;
      if (ic_index_least_loaded_replica(s->index, q->tenant_id, q->model_id, have ? replica : NULL, tb, &s->load, &pick))
        have = true, replica = pick;
    } else if (have && k.load_aware_routing) {
      have = !ic_index_replica_overloaded(s->index, q->tenant_id, q->model_id, replica, &s->load);
    }
    if (have) {
      free(seed);
      if (k.predict_on_route) { /* past what the replica already holds (rows the floor gated) */
        int32_t held = 0;
        for (size_t i = 0; res && i < ic_index_result_count(res); i++)
          if (!strcmp(ic_index_result_rows(res)[i].replica_id, replica) &&
              ic_index_result_rows(res)[i].tier != IC_INDEX_TIER_SPECULATIVE)
            held = ic_index_result_rows(res)[i].matched_tokens;
        ic_index_predict_record(s->index, &ir, replica, held);
      }
      ic_index_row_t row = {.replica_id = replica};
      rc = respond(s, q, out, "AFFINITY_HINT", &row, 1, q->adapter_id, ic_clock_monotonic_ns() - start, &r);
      goto done;
    }
    free(seed);
  }
  /* 12e. result */
  if (st == IC_INDEX_STRATEGY_PREFIX_MATCH) ic_index_result_credit_hits(res);
  bool rows_ok = st == IC_INDEX_STRATEGY_PREFIX_MATCH || st == IC_INDEX_STRATEGY_TENANT_HOT;
  if (rows_ok && k.predict_on_route && ic_index_result_count(res) > 0) { /* the gateway's pick */
    const ic_index_row_t *top = ic_index_result_rows(res);
    ic_index_predict_record(s->index, &ir, top->replica_id,
                            top->tier == IC_INDEX_TIER_SPECULATIVE ? 0 : top->matched_tokens);
  }
  rc = respond(s, q, out, strategy_code(st), rows_ok ? ic_index_result_rows(res) : NULL,
               rows_ok ? ic_index_result_count(res) : 0, q->adapter_id, ic_clock_monotonic_ns() - start, &r);
done:
  if (res) ic_index_result_free(res);
  resolved_free(&r);
  return rc;
}

/* ------------------------------------------------------------------ ingest / events / state */

int ic_svc_report_one(ic_svc_t *s, const uint8_t *msg, size_t len, const char **errmsg) {
  Inferencecache__V1alpha1__CacheStateUpdate *u =
      inferencecache__v1alpha1__cache_state_update__unpack(arena_begin(), len, msg);
  if (!u) return *errmsg = UNMARSHAL_MSG, IC_RPC_INTERNAL;
  int rc = check_strings(&inferencecache__v1alpha1__cache_state_update__descriptor, msg, len,
                         s->max_identity, errmsg);
  if (rc != IC_RPC_OK) goto out;
  if (strcmp(u->tenant_id, IC_SVC_PROBE_TENANT) == 0) goto out;
  if (s->on_report) s->on_report(s->report_ud, u->replica_id, u->full_state);
  /* The bare marker changes nothing in the index (and must not look like a report). */
  if (u->full_state && u->n_prefixes == 0 && u->n_evicted == 0 && !u->stats) goto out;
  ic_index_prefix_t stack[32], *px = stack;
  if (u->n_prefixes > 32 && !(px = malloc(u->n_prefixes * sizeof *px))) {
    rc = IC_RPC_RESOURCE_EXHAUSTED;
    goto out;
  }
  for (size_t i = 0; i < u->n_prefixes; i++) {
    const Inferencecache__V1alpha1__PrefixEntry *e = u->prefixes[i];
    px[i] = (ic_index_prefix_t){
        .prefix_hash = {e->prefix_hash.len, e->prefix_hash.data},
        .token_count = e->token_count,
        .block_hashes = (const ic_index_bytes_t *)e->block_hashes,
        .n_block_hashes = e->n_block_hashes,
        .block_token_counts = e->block_token_counts,
        .n_block_token_counts = e->n_block_token_counts,
        .tier = (int32_t)e->tier,
        .adapter = e->adapter_id,
    };
  }
  ic_index_stats_t st;
  if (u->stats)
    st = (ic_index_stats_t){u->stats->cache_memory_bytes, u->stats->hit_rate, u->stats->pressure,
                            u->stats->t2_hit_tokens, u->stats->t2_query_tokens,
                            u->stats->load_reported, u->stats->num_requests_waiting,
                            u->stats->num_requests_running, u->stats->kv_cache_usage};
  ic_index_update_t iu = {
      .replica = u->replica_id,
      .model = u->model_id,
      .tenant = u->tenant_id,
      .scheme = u->hash_scheme,
      .adapter = u->adapter_id,
      .timestamp_us = u->timestamp_us,
      .prefixes = px,
      .n_prefixes = u->n_prefixes,
      .stats = u->stats ? &st : NULL,
  };
  if (u->n_prefixes || u->stats || !u->n_evicted) ic_index_ingest(s->index, &iu);
  if (px != stack) free(px);
  /* Batched evictions (CacheStateUpdate.evicted): each one a PREFIX_EVICTED event. */
  for (size_t i = 0; i < u->n_evicted; i++) {
    const Inferencecache__V1alpha1__PrefixEntry *e = u->evicted[i];
    ic_index_event_t ev = {
        .type = IC_INDEX_EVENT_PREFIX_EVICTED,
        .replica = u->replica_id,
        .model = u->model_id,
        .tenant = u->tenant_id,
        .adapter = *e->adapter_id ? e->adapter_id : u->adapter_id,
        .prefix_hash = {e->prefix_hash.len, e->prefix_hash.data},
        .timestamp_us = u->timestamp_us,
    };
    ic_index_apply_event(s->index, &ev);
  }
out:
  if (arena_needs_free()) inferencecache__v1alpha1__cache_state_update__free_unpacked(u, arena_cur());
  return rc;
}

int ic_svc_report_ack(ic_buf_t *resp) {
  Inferencecache__V1alpha1__Ack a = INFERENCECACHE__V1ALPHA1__ACK__INIT;
  a.accepted = 1;
  a.evicted_supported = 1; /* CacheStateUpdate.evicted is applied */
  return append_packed(resp, &a.base) ? IC_RPC_INTERNAL : IC_RPC_OK;
}

int ic_svc_publish_event(ic_svc_t *s, const uint8_t *req, size_t len, ic_buf_t *resp, const char **msg) {
  Inferencecache__V1alpha1__CacheEvent *e = inferencecache__v1alpha1__cache_event__unpack(arena_begin(), len, req);
  if (!e) return *msg = UNMARSHAL_MSG, IC_RPC_INTERNAL;
  int crc = check_strings(&inferencecache__v1alpha1__cache_event__descriptor, req, len,
                          s->max_identity, msg);
  if (crc != IC_RPC_OK) {
    inferencecache__v1alpha1__cache_event__free_unpacked(e, arena_cur());
    return crc;
  }
  int t = (int)e->type;
  if (s->on_report && strcmp(e->tenant_id, IC_SVC_PROBE_TENANT) != 0)
    s->on_report(s->report_ud, e->replica_id, false);
  if (strcmp(e->tenant_id, IC_SVC_PROBE_TENANT) != 0 && t >= IC_INDEX_EVENT_PREFIX_ADDED &&
      t <= IC_INDEX_EVENT_ALL_CLEARED) {
    ic_index_event_t ev = {
        .type = t,
        .replica = e->replica_id,
        .model = e->model_id,
        .tenant = e->tenant_id,
        .adapter = e->adapter_id,
        .prefix_hash = {e->prefix_hash.len, e->prefix_hash.data},
        .timestamp_us = e->timestamp_us,
    };
    ic_index_apply_event(s->index, &ev);
  }
  inferencecache__v1alpha1__cache_event__free_unpacked(e, arena_cur());
  return ic_svc_report_ack(resp);
}

int ic_svc_get_cache_state(ic_svc_t *s, const uint8_t *req, size_t len, ic_buf_t *resp, const char **msg) {
  Inferencecache__V1alpha1__GetCacheStateRequest *q =
      inferencecache__v1alpha1__get_cache_state_request__unpack(arena_begin(), len, req);
  if (!q) return *msg = UNMARSHAL_MSG, IC_RPC_INTERNAL;
  int crc = check_strings(&inferencecache__v1alpha1__get_cache_state_request__descriptor, req, len,
                          0, msg);
  if (crc != IC_RPC_OK) {
    inferencecache__v1alpha1__get_cache_state_request__free_unpacked(q, arena_cur());
    return crc;
  }
  Inferencecache__V1alpha1__GetCacheStateResponse r = INFERENCECACHE__V1ALPHA1__GET_CACHE_STATE_RESPONSE__INIT;
  Inferencecache__V1alpha1__CacheSummary sum = INFERENCECACHE__V1ALPHA1__CACHE_SUMMARY__INIT;
  r.summary = &sum;
  ic_index_stats_row_t *rows = NULL;
  size_t n = 0;
  int64_t total = 0;
  Inferencecache__V1alpha1__ReplicaStats *rs = NULL, **rp = NULL;
  int rc = IC_RPC_OK;
  ic_index_guard_t g = ic_index_guard(s->index); /* the rows' interned names, until packed */
  if (strcmp(q->tenant_id, IC_SVC_PROBE_TENANT) != 0 &&
      ic_index_cache_state(s->index, q->tenant_id, q->model_id, &rows, &n, &total) == 0) {
    sum.total_prefixes = total;
    if (n > 0) {
      rs = calloc(n, sizeof *rs);
      rp = calloc(n, sizeof *rp);
      if (!rs || !rp) n = 0;
      for (size_t i = 0; i < n; i++) {
        Inferencecache__V1alpha1__ReplicaStats init = INFERENCECACHE__V1ALPHA1__REPLICA_STATS__INIT;
        rs[i] = init;
        rs[i].replica_id = (char *)rows[i].replica_id;
        rs[i].cache_memory_bytes = rows[i].cache_memory_bytes;
        rs[i].hit_rate = rows[i].hit_rate;
        rs[i].pressure = rows[i].pressure;
        rs[i].t2_hit_tokens = rows[i].t2_hit_tokens;
        rs[i].t2_query_tokens = rows[i].t2_query_tokens;
        rs[i].load_reported = rows[i].load_reported;
        rs[i].num_requests_waiting = rows[i].num_waiting;
        rs[i].num_requests_running = rows[i].num_running;
        rs[i].kv_cache_usage = rows[i].kv_usage;
        rp[i] = &rs[i];
      }
      r.n_replicas = n;
      r.replicas = rp;
    }
  }
  if (append_packed(resp, &r.base)) rc = IC_RPC_INTERNAL;
  ic_index_unguard(s->index, g);
  free(rs);
  free(rp);
  free(rows);
  inferencecache__v1alpha1__get_cache_state_request__free_unpacked(q, arena_cur());
  return rc;
}

int ic_svc_render_template(ic_svc_t *s, const uint8_t *req, size_t len, ic_buf_t *resp, const char **msg) {
  Inferencecache__V1alpha1__RenderTemplateRequest *q =
      inferencecache__v1alpha1__render_template_request__unpack(arena_begin(), len, req);
  if (!q) return *msg = UNMARSHAL_MSG, IC_RPC_INTERNAL;
  /* every string (map entries too) is valid UTF-8 without NUL before the hook sees it */
  int crc = check_strings(&inferencecache__v1alpha1__render_template_request__descriptor, req, len,
                          0, msg);
  if (crc != IC_RPC_OK) {
    inferencecache__v1alpha1__render_template_request__free_unpacked(q, arena_cur());
    return crc;
  }
  Inferencecache__V1alpha1__RenderTemplateResponse r = INFERENCECACHE__V1ALPHA1__RENDER_TEMPLATE_RESPONSE__INIT;
  r.reason_code = "OK";
  ic_svc_render_result_t out = {0};
  const char **kv = NULL;
  if (s->render_template) {
    kv = calloc(2 * q->n_variables + 1, sizeof *kv);
    for (size_t i = 0; kv && i < q->n_variables; i++) {
      kv[i] = q->variables[i]->key ? q->variables[i]->key : "";
      kv[q->n_variables + i] = q->variables[i]->value ? q->variables[i]->value : "";
    }
    if (!kv) {
      r.reason_code = "RENDER_ERROR"; /* out of memory: fail open */
    } else {
      s->render_template(s->render_ud, q->template_ref, q->tenant_id, q->n_variables, kv,
                         kv + q->n_variables, &out);
      r.reason_code = (char *)(out.reason_code ? out.reason_code : "RENDER_ERROR");
      r.rendered_prompt.data = (uint8_t *)out.text;
      r.rendered_prompt.len = out.text ? out.text_len : 0;
      r.template_revision = out.revision;
      if (out.has_stable_hash) {
        r.stable_prefix_hash.data = out.stable_hash;
        r.stable_prefix_hash.len = sizeof out.stable_hash;
      }
    }
  }
  int rc = append_packed(resp, &r.base) ? IC_RPC_INTERNAL : IC_RPC_OK;
  free(out.text);
  free(kv);
  inferencecache__v1alpha1__render_template_request__free_unpacked(q, arena_cur());
  return rc;
}

int ic_svc_lookup_pd_route(ic_svc_t *s, const uint8_t *req, size_t len, ic_buf_t *resp, const char **msg) {
  (void)s;
  Inferencecache__V1alpha1__LookupPDRouteRequest *q =
      inferencecache__v1alpha1__lookup_pdroute_request__unpack(arena_begin(), len, req);
  if (!q) return *msg = UNMARSHAL_MSG, IC_RPC_INTERNAL;
  inferencecache__v1alpha1__lookup_pdroute_request__free_unpacked(q, arena_cur());
  int crc = check_strings(&inferencecache__v1alpha1__lookup_pdroute_request__descriptor, req, len,
                          0, msg);
  if (crc != IC_RPC_OK) return crc;
  Inferencecache__V1alpha1__LookupPDRouteResponse r = INFERENCECACHE__V1ALPHA1__LOOKUP_PDROUTE_RESPONSE__INIT;
  r.reason_code = "NO_HINT";
  return append_packed(resp, &r.base) ? IC_RPC_INTERNAL : IC_RPC_OK;
}

/* ------------------------------------------------------------------ streams */

int ic_svc_event_filter_parse(const uint8_t *req, size_t len, ic_svc_event_filter_t *f) {
  memset(f, 0, sizeof *f);
  Inferencecache__V1alpha1__StreamEventsRequest *q =
      inferencecache__v1alpha1__stream_events_request__unpack(arena_begin(), len, req);
  if (!q) return IC_RPC_INTERNAL;
  const char *unused;
  int crc = check_strings(&inferencecache__v1alpha1__stream_events_request__descriptor, req, len, 0,
                          &unused);
  if (crc != IC_RPC_OK) {
    inferencecache__v1alpha1__stream_events_request__free_unpacked(q, arena_cur());
    return crc;
  }
  f->model_id = strdup(q->model_id);
  f->tenant_id = strdup(q->tenant_id);
  for (size_t i = 0; i < q->n_types; i++) {
    int t = (int)q->types[i];
    if (t >= 0 && t < 32) f->types |= 1u << t;
    else f->types |= 1u << 31; /* unknown value: matches nothing, but the filter is non-empty */
  }
  inferencecache__v1alpha1__stream_events_request__free_unpacked(q, arena_cur());
  if (!f->model_id || !f->tenant_id) {
    ic_svc_event_filter_free(f);
    return IC_RPC_RESOURCE_EXHAUSTED;
  }
  return IC_RPC_OK;
}

void ic_svc_event_filter_free(ic_svc_event_filter_t *f) {
  free(f->model_id);
  free(f->tenant_id);
  f->model_id = f->tenant_id = NULL;
}

bool ic_svc_event_filter_match(const ic_svc_event_filter_t *f, const ic_index_change_t *c) {
  const char *tenant = c->tenant ? c->tenant : "", *model = c->model ? c->model : "";
  if (strcmp(tenant, IC_SVC_PROBE_TENANT) == 0) return false;
  if (f->types && !(c->type >= 0 && c->type < 31 && (f->types & (1u << c->type)))) return false;
  if (f->model_id && *f->model_id && strcmp(f->model_id, model) != 0) return false;
  if (f->tenant_id && *f->tenant_id && strcmp(f->tenant_id, tenant) != 0) return false;
  return true;
}

int ic_svc_change_encode(const ic_index_change_t *c, ic_buf_t *out) {
  change_wire_t w;
  change_wire_measure(c, &w);
  if (ic_buf_reserve(out, w.size)) return IC_ENOMEM;
  change_wire_write(&w, (uint8_t *)out->data + out->len);
  out->len += w.size;
  return 0;
}

int ic_svc_metric_filter_parse(const uint8_t *req, size_t len, ic_svc_metric_filter_t *f) {
  memset(f, 0, sizeof *f);
  Inferencecache__V1alpha1__StreamMetricsRequest *q =
      inferencecache__v1alpha1__stream_metrics_request__unpack(arena_begin(), len, req);
  if (!q) return IC_RPC_INTERNAL;
  const char *unused;
  int rc = check_strings(&inferencecache__v1alpha1__stream_metrics_request__descriptor, req, len, 0,
                         &unused);
  if (rc == IC_RPC_OK && q->n_names > 0) {
    f->names = calloc(q->n_names, sizeof *f->names);
    if (!f->names) rc = IC_RPC_RESOURCE_EXHAUSTED;
    for (size_t i = 0; f->names && i < q->n_names; i++) {
      f->names[f->n++] = strdup(q->names[i]);
    }
  }
  inferencecache__v1alpha1__stream_metrics_request__free_unpacked(q, arena_cur());
  if (rc != IC_RPC_OK) ic_svc_metric_filter_free(f);
  return rc;
}

void ic_svc_metric_filter_free(ic_svc_metric_filter_t *f) {
  for (size_t i = 0; i < f->n; i++) free(f->names[i]);
  free(f->names);
  f->names = NULL;
  f->n = 0;
}

typedef struct menc {
  const ic_svc_metric_filter_t *f;
  int64_t now_us;
  ic_svc_metric_emit_fn emit;
  void *ud;
  size_t count;
  ic_buf_t buf;
} menc_t;

bool ic_svc_metric_filter_match(const ic_svc_metric_filter_t *f, const char *name, const char *type) {
  if (!f || f->n == 0) return true;
  for (size_t i = 0; i < f->n; i++) {
    size_t l = strlen(f->names[i]);
    if (strcmp(name, f->names[i]) == 0) return true;
    if (strcmp(type, "histogram") == 0 && strncmp(name, f->names[i], l) == 0 &&
        (strcmp(name + l, "_bucket") == 0 || strcmp(name + l, "_sum") == 0 || strcmp(name + l, "_count") == 0))
      return true;
  }
  return false;
}

static void metric_sample(void *ud, const char *name, const char *type, size_t nlabels,
                          const char *const *label_names, const char *const *label_values, double value) {
  menc_t *m = ud;
  if (!ic_svc_metric_filter_match(m->f, name, type)) return;
  Inferencecache__V1alpha1__Metric__LabelsEntry ents[16], *ep[16];
  if (nlabels > 16) nlabels = 16;
  for (size_t i = 0; i < nlabels; i++) {
    Inferencecache__V1alpha1__Metric__LabelsEntry init = INFERENCECACHE__V1ALPHA1__METRIC__LABELS_ENTRY__INIT;
    ents[i] = init;
    ents[i].key = (char *)label_names[i];
    ents[i].value = (char *)label_values[i];
    ep[i] = &ents[i];
  }
  Inferencecache__V1alpha1__Metric mm = INFERENCECACHE__V1ALPHA1__METRIC__INIT;
  mm.name = (char *)name;
  mm.type = (char *)type;
  mm.n_labels = nlabels;
  mm.labels = ep;
  mm.value = value;
  mm.timestamp_us = m->now_us;
  ic_buf_reset(&m->buf);
  if (append_packed(&m->buf, &mm.base) == 0) {
    m->emit(m->ud, name, type, (const uint8_t *)(m->buf.data ? m->buf.data : ""), m->buf.len);
    m->count++;
  }
}

size_t ic_svc_metrics_encode(ic_metrics_t *mx, const ic_svc_metric_filter_t *f, int64_t now_us,
                             ic_svc_metric_emit_fn emit, void *ud) {
  menc_t m = {.f = f, .now_us = now_us, .emit = emit, .ud = ud};
  ic_metrics_foreach(mx, metric_sample, &m);
  ic_buf_free(&m.buf);
  return m.count;
}
