/* lib/policy: strict decoder for the controller's /policy body (v3..v7, Go encoding/json rules
 * that a client can observe), normalisation to v7, and the replace-on-write snapshot store.
 *
 * Decoding walks a jansson tree against a small static schema so unknown keys, type mismatches
 * and integer ranges are reported the way Go's decoder reports them. The store keeps one
 * immutable snapshot (sorted arrays, binary search) behind a pointer that a push swaps; readers
 * hold a reference count, so a push never frees a snapshot someone is still reading; taking
 * that reference is lock-free (see struct ic_policy_store). */
#include "ic/policy.h"

#include <ctype.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fold.h"
#include "ic/err.h"

/* ---------------------------------------------------------------------------------------- */
/* decoding helpers */

typedef struct dec {
  char *msg;
  size_t msglen;
  bool failed;
} dec_t;

static void fail(dec_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(dec_t *d, const char *fmt, ...) {
  if (d->failed) return;
  d->failed = true;
  if (!d->msg || !d->msglen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->msg, d->msglen, fmt, ap);
  va_end(ap);
}

static const char *jtype(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "object";
  case JSON_ARRAY: return "array";
  case JSON_STRING: return "string";
  case JSON_INTEGER:
  case JSON_REAL: return "number";
  case JSON_TRUE:
  case JSON_FALSE: return "bool";
  default: return "null";
  }
}

static void type_err(dec_t *d, const json_t *v, const char *field, const char *gotype) {
  if (json_is_integer(v))
    fail(d, "json: cannot unmarshal number %lld into Go struct field %s of type %s",
         (long long)json_integer_value(v), field, gotype);
  else if (json_is_real(v))
    fail(d, "json: cannot unmarshal number %g into Go struct field %s of type %s",
         json_real_value(v), field, gotype);
  else
    fail(d, "json: cannot unmarshal %s into Go struct field %s of type %s", jtype(v), field,
         gotype);
}

/* Integer field of Go type intN: JSON integer within range; fractional/exponent forms are
 * reals in jansson and rejected like Go does. */
static bool get_int(dec_t *d, const json_t *v, const char *field, int bits, int64_t *out) {
  if (json_is_null(v)) return false;
  if (!json_is_integer(v)) {
    /* bits 0 = Go `int` (64-bit), the type of `version`. */
    type_err(d, v, field, bits == 32 ? "int32" : bits == 0 ? "int" : "int64");
    return false;
  }
  json_int_t x = json_integer_value(v);
  if (bits == 32 && (x < INT32_MIN || x > INT32_MAX)) {
    fail(d, "json: cannot unmarshal number %lld into Go struct field %s of type int32",
         (long long)x, field);
    return false;
  }
  *out = x;
  return true;
}

static bool get_f32(dec_t *d, const json_t *v, const char *field, float *out) {
  if (json_is_null(v)) return false;
  double x;
  if (json_is_integer(v))
    x = (double)json_integer_value(v);
  else if (json_is_real(v))
    x = json_real_value(v);
  else {
    type_err(d, v, field, "float32");
    return false;
  }
  if (!isfinite(x) || fabs(x) > FLT_MAX) {
    fail(d, "json: cannot unmarshal number %g into Go struct field %s of type float32", x, field);
    return false;
  }
  *out = (float)x;
  return true;
}

static bool get_bool(dec_t *d, const json_t *v, const char *field, bool *out) {
  if (json_is_null(v)) return false;
  if (!json_is_boolean(v)) {
    type_err(d, v, field, "bool");
    return false;
  }
  *out = json_is_true(v);
  return true;
}

/* Returns a malloc'd copy (the caller's field owns it) or NULL for null/absent. */
static bool get_str(dec_t *d, const json_t *v, const char *field, char **out) {
  if (json_is_null(v)) return false;
  if (!json_is_string(v)) {
    type_err(d, v, field, "string");
    return false;
  }
  char *c = strndup(json_string_value(v), json_string_length(v));
  if (!c) {
    fail(d, "out of memory");
    return false;
  }
  free(*out);
  *out = c;
  return true;
}

/* Matches a JSON key against the known keys as Go does (exact first, then case-folded). */
static int match_key(const char *key, const char *const *names, size_t n) {
  return ic_policy_match_key(key, names, n);
}

/* ---------------------------------------------------------------------------------------- */

static void free_entry(ic_policy_entry_t *e) {
  free(e->ns);
  free(e->eviction);
}
static void free_quota(ic_policy_quota_t *q) {
  free(q->tenant_id);
  free(q->isolation_mode);
}

static const char *const STRATEGY_KEYS[] = {"enableChainMatching", "requireChain",
                                            "enableTenantHot", "loadAwareRouting",
                                            "predictOnRoute"};

static void dec_strategy(dec_t *d, const json_t *o, ic_policy_entry_t *e) {
  if (json_is_null(o)) return;
  if (!json_is_object(o)) {
    type_err(d, o, "CachePolicy.strategy", "StrategySpec");
    return;
  }
  e->has_strategy = true;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)o, k, v) {
    if (d->failed) return;
    switch (match_key(k, STRATEGY_KEYS, 5)) {
    case 0:
      if (get_bool(d, v, "CachePolicy.strategy.enableChainMatching", &e->enable_chain_matching))
        e->has_enable_chain_matching = true;
      break;
    case 1:
      if (get_bool(d, v, "CachePolicy.strategy.requireChain", &e->require_chain))
        e->has_require_chain = true;
      break;
    case 2:
      if (get_bool(d, v, "CachePolicy.strategy.enableTenantHot", &e->enable_tenant_hot))
        e->has_enable_tenant_hot = true;
      break;
    case 3:
      if (get_bool(d, v, "CachePolicy.strategy.loadAwareRouting", &e->load_aware_routing))
        e->has_load_aware_routing = true;
      break;
    case 4:
      if (get_bool(d, v, "CachePolicy.strategy.predictOnRoute", &e->predict_on_route))
        e->has_predict_on_route = true;
      break;
    default: fail(d, "json: unknown field \"%s\"", k);
    }
  }
}

static const char *const POLICY_KEYS[] = {
    "namespace",         "evictionTTL",     "minimumPrefixTokens", "minimumMatchedTokens",
    "routingFloorScore", "lookupTimeoutMs", "affinityRouting",     "eviction",
    "strategy"};

static void dec_policy(dec_t *d, const json_t *o, ic_policy_entry_t *e) {
  if (json_is_null(o)) return; /* Go: null element = zero value */
  if (!json_is_object(o)) {
    fail(d,
         "json: cannot unmarshal %s into Go struct field PolicySnapshot.policies of type "
         "CachePolicy",
         jtype(o));
    return;
  }
  const char *k;
  json_t *v;
  int64_t x;
  json_object_foreach((json_t *)o, k, v) {
    if (d->failed) return;
    switch (match_key(k, POLICY_KEYS, 9)) {
    case 0: get_str(d, v, "CachePolicy.namespace", &e->ns); break;
    case 1:
      if (get_int(d, v, "CachePolicy.evictionTTL", 64, &x)) e->eviction_ttl_ns = x;
      break;
    case 2:
      if (get_int(d, v, "CachePolicy.minimumPrefixTokens", 32, &x))
        e->minimum_prefix_tokens = (int32_t)x;
      break;
    case 3:
      if (get_int(d, v, "CachePolicy.minimumMatchedTokens", 32, &x))
        e->minimum_matched_tokens = (int32_t)x;
      break;
    case 4:
      /* Go decodes null into a pointer as nil, i.e. "absent". */
      if (json_is_null(v))
        e->has_routing_floor_score = false;
      else if (get_f32(d, v, "CachePolicy.routingFloorScore", &e->routing_floor_score))
        e->has_routing_floor_score = true;
      break;
    case 5:
      if (get_int(d, v, "CachePolicy.lookupTimeoutMs", 32, &x)) e->lookup_timeout_ms = (int32_t)x;
      break;
    case 6:
      if (json_is_null(v))
        e->has_affinity_routing = false;
      else if (get_bool(d, v, "CachePolicy.affinityRouting", &e->affinity_routing))
        e->has_affinity_routing = true;
      break;
    case 7: get_str(d, v, "CachePolicy.eviction", &e->eviction); break;
    case 8:
      if (json_is_null(v)) {
        e->has_strategy = e->has_enable_chain_matching = e->has_require_chain =
            e->has_enable_tenant_hot = e->has_load_aware_routing = e->has_predict_on_route = false;
      } else {
        dec_strategy(d, v, e);
      }
      break;
    default: fail(d, "json: unknown field \"%s\"", k);
    }
  }
}

static const char *const TENANT_KEYS[] = {"tenantID", "maxIndexEntries", "isolationMode"};

static void dec_tenant(dec_t *d, const json_t *o, ic_policy_quota_t *q) {
  if (json_is_null(o)) return;
  if (!json_is_object(o)) {
    fail(d,
         "json: cannot unmarshal %s into Go struct field PolicySnapshot.tenants of type "
         "TenantQuota",
         jtype(o));
    return;
  }
  const char *k;
  json_t *v;
  int64_t x;
  json_object_foreach((json_t *)o, k, v) {
    if (d->failed) return;
    switch (match_key(k, TENANT_KEYS, 3)) {
    case 0: get_str(d, v, "TenantQuota.tenantID", &q->tenant_id); break;
    case 1:
      if (get_int(d, v, "TenantQuota.maxIndexEntries", 64, &x)) q->max_index_entries = x;
      break;
    case 2: get_str(d, v, "TenantQuota.isolationMode", &q->isolation_mode); break;
    default: fail(d, "json: unknown field \"%s\"", k);
    }
  }
}

static const char *const TOP_KEYS[] = {"version", "policies", "tenants"};

void ic_policy_doc_free(ic_policy_doc_t *doc) {
  if (!doc) return;
  for (size_t i = 0; i < doc->npolicies; i++)
    free_entry(&doc->policies[i]);
  for (size_t i = 0; i < doc->ntenants; i++)
    free_quota(&doc->tenants[i]);
  free(doc->policies);
  free(doc->tenants);
  free(doc);
}

/* Go: decoding an array into a slice replaces the slice (a later duplicate key wins). */
static void dec_policies(dec_t *d, const json_t *v, ic_policy_doc_t *doc) {
  for (size_t i = 0; i < doc->npolicies; i++)
    free_entry(&doc->policies[i]);
  free(doc->policies);
  doc->policies = NULL;
  doc->npolicies = 0;
  if (json_is_null(v)) return;
  if (!json_is_array(v)) {
    type_err(d, v, "PolicySnapshot.policies", "[]CachePolicy");
    return;
  }
  size_t n = json_array_size(v);
  if (!n) return;
  doc->policies = calloc(n, sizeof *doc->policies);
  if (!doc->policies) {
    fail(d, "out of memory");
    return;
  }
  for (size_t i = 0; i < n && !d->failed; i++) {
    doc->npolicies = i + 1;
    dec_policy(d, json_array_get(v, i), &doc->policies[i]);
  }
}

static void dec_tenants(dec_t *d, const json_t *v, ic_policy_doc_t *doc) {
  for (size_t i = 0; i < doc->ntenants; i++)
    free_quota(&doc->tenants[i]);
  free(doc->tenants);
  doc->tenants = NULL;
  doc->ntenants = 0;
  if (json_is_null(v)) return;
  if (!json_is_array(v)) {
    type_err(d, v, "PolicySnapshot.tenants", "[]TenantQuota");
    return;
  }
  size_t n = json_array_size(v);
  if (!n) return;
  doc->tenants = calloc(n, sizeof *doc->tenants);
  if (!doc->tenants) {
    fail(d, "out of memory");
    return;
  }
  for (size_t i = 0; i < n && !d->failed; i++) {
    doc->ntenants = i + 1;
    dec_tenant(d, json_array_get(v, i), &doc->tenants[i]);
  }
}

static void normalise(ic_policy_doc_t *doc) {
  if (doc->version >= IC_POLICY_VERSION) return; /* v7 stored verbatim */
  for (size_t i = 0; i < doc->npolicies; i++) {
    ic_policy_entry_t *e = &doc->policies[i];
    if (doc->version < 4 && e->minimum_matched_tokens == 0)
      e->minimum_matched_tokens = IC_POLICY_DEFAULT_MIN_MATCHED;
    if (doc->version < 5 && !e->has_routing_floor_score) {
      e->has_routing_floor_score = true;
      e->routing_floor_score = IC_POLICY_DEFAULT_FLOOR_SCORE;
    }
    if (doc->version < 6) {
      e->has_strategy = true;
      if (!e->has_enable_chain_matching) {
        e->has_enable_chain_matching = true;
        e->enable_chain_matching = true;
      }
      if (!e->has_require_chain) {
        e->has_require_chain = true;
        e->require_chain = false;
      }
      if (!e->has_enable_tenant_hot) {
        e->has_enable_tenant_hot = true;
        e->enable_tenant_hot = true;
      }
    }
    if (!e->has_affinity_routing) {
      e->has_affinity_routing = true;
      e->affinity_routing = true;
    }
  }
}

ic_policy_parse_status_t ic_policy_parse(const char *body, size_t len, bool too_large,
                                         ic_policy_doc_t **out, char *msg, size_t msglen) {
  dec_t d = {.msg = msg, .msglen = msglen};
  if (msg && msglen) msg[0] = 0;
  *out = NULL;
  if (too_large) {
    fail(&d, "http: request body too large");
    return IC_POLICY_DECODE_ERROR;
  }
  size_t i = 0;
  while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
    i++;
  if (i == len) {
    fail(&d, "EOF");
    return IC_POLICY_DECODE_ERROR;
  }
  json_error_t je;
  /* Trailing bytes after the first value are not checked (reference behaviour). */
  json_t *root = json_loadb(body, len, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &je);
  if (!root) {
    fail(&d, "%s", je.text);
    return IC_POLICY_DECODE_ERROR;
  }
  ic_policy_doc_t *doc = calloc(1, sizeof *doc);
  if (!doc) {
    json_decref(root);
    fail(&d, "out of memory");
    return IC_POLICY_DECODE_ERROR;
  }
  if (json_is_null(root)) {
    /* Go: null into a struct is a no-op -> version 0 */
  } else if (!json_is_object(root)) {
    fail(&d, "json: cannot unmarshal %s into Go value of type controlplaneapi.PolicySnapshot",
         jtype(root));
  } else {
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
      if (d.failed) break;
      switch (match_key(k, TOP_KEYS, 3)) {
      case 0: get_int(&d, v, "PolicySnapshot.version", 0, &doc->version); break;
      case 1: dec_policies(&d, v, doc); break;
      case 2: dec_tenants(&d, v, doc); break;
      default: fail(&d, "json: unknown field \"%s\"", k);
      }
    }
  }
  json_decref(root);
  if (d.failed) {
    ic_policy_doc_free(doc);
    return IC_POLICY_DECODE_ERROR;
  }
  if (doc->version < IC_POLICY_MIN_VERSION || doc->version > IC_POLICY_VERSION) {
    ic_policy_doc_free(doc);
    return IC_POLICY_BAD_VERSION;
  }
  normalise(doc);
  *out = doc;
  return IC_POLICY_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* store */

/* Every tenant named by a push (policy namespace or quota tenantID) gets its knobs resolved once
 * at push time into an open-addressing table, so a lookup is one hash, one probe run and a
 * struct copy; tenants not in the table get the defaults. */
typedef struct knob_slot {
  const char *key; /* NULL = empty; points into doc */
  size_t klen;
  uint64_t hash;
  ic_policy_knobs_t knobs;
} knob_slot_t;

struct ic_policy_snap {
  atomic_long refs;
  ic_policy_doc_t *doc; /* policies sorted by ns, tenants by tenant_id, unique keys */
  knob_slot_t *slots;   /* power-of-two table, NULL when the push named no tenant */
  size_t mask;
};

/* Readers never take a lock: they announce themselves in one of two counters (picked by the
 * current epoch), load the pointer, take a reference, and leave. A writer swaps the pointer,
 * then flips the epoch twice, each time waiting for the counter new readers no longer use to
 * drain; after that no reader can still be between "load pointer" and "take reference" on the
 * old snapshot, so dropping the store's reference is safe (the two-phase grace period of
 * userspace RCU, in miniature). Writers are serialised by a mutex; only they ever wait. */
struct ic_policy_store {
  _Atomic(ic_policy_snap_t *) cur;
  atomic_uint epoch;
  atomic_long active[2];
  pthread_mutex_t wmu;
  atomic_ullong generation;
};

static void snap_unref(ic_policy_snap_t *s) {
  if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
    free(s->slots);
    ic_policy_doc_free(s->doc);
    free(s);
  }
}

ic_policy_store_t *ic_policy_store_new(void) {
  ic_policy_store_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->cur = calloc(1, sizeof *s->cur);
  if (s->cur) s->cur->doc = calloc(1, sizeof *s->cur->doc);
  if (!s->cur || !s->cur->doc) {
    if (s->cur) free(s->cur);
    free(s);
    return NULL;
  }
  atomic_init(&s->cur->refs, 1);
  pthread_mutex_init(&s->wmu, NULL);
  return s;
}

void ic_policy_store_free(ic_policy_store_t *s) {
  if (!s) return;
  snap_unref(atomic_load(&s->cur));
  pthread_mutex_destroy(&s->wmu);
  free(s);
}

const ic_policy_snap_t *ic_policy_acquire(ic_policy_store_t *s) {
  if (!s) return NULL;
  unsigned e = atomic_load(&s->epoch) & 1u;
  atomic_fetch_add(&s->active[e], 1);
  ic_policy_snap_t *p = atomic_load(&s->cur);
  atomic_fetch_add(&p->refs, 1);
  atomic_fetch_sub(&s->active[e], 1);
  return p;
}

void ic_policy_release(const ic_policy_snap_t *snap) { snap_unref((ic_policy_snap_t *)snap); }

uint64_t ic_policy_store_generation(const ic_policy_store_t *s) {
  return s ? atomic_load(&((ic_policy_store_t *)s)->generation) : 0;
}

typedef struct {
  const char *key;
  size_t idx;
} sortkey_t;

static int cmp_sortkey(const void *a, const void *b) {
  const sortkey_t *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c) return c;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorts items by key and keeps only the last occurrence of each key; drops empty keys.
 * Works on either array through a key accessor; frees dropped items via `drop`. */
static int dedupe_policies(ic_policy_doc_t *doc) {
  size_t n = doc->npolicies;
  if (!n) return 0;
  sortkey_t *k = malloc(n * sizeof *k);
  ic_policy_entry_t *out = calloc(n, sizeof *out);
  if (!k || !out) {
    free(k);
    free(out);
    return IC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    k[i] = (sortkey_t){doc->policies[i].ns ? doc->policies[i].ns : "", i};
  qsort(k, n, sizeof *k, cmp_sortkey);
  size_t m = 0;
  bool *keep = calloc(n, sizeof *keep);
  if (!keep) {
    free(k);
    free(out);
    return IC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    if (!k[i].key[0]) continue;
    if (i + 1 < n && strcmp(k[i].key, k[i + 1].key) == 0) continue; /* a later one wins */
    keep[k[i].idx] = true;
    out[m++] = doc->policies[k[i].idx];
  }
  for (size_t i = 0; i < n; i++)
    if (!keep[i]) free_entry(&doc->policies[i]);
  free(keep);
  free(k);
  free(doc->policies);
  doc->policies = out;
  doc->npolicies = m;
  return 0;
}

static int dedupe_tenants(ic_policy_doc_t *doc) {
  size_t n = doc->ntenants;
  if (!n) return 0;
  sortkey_t *k = malloc(n * sizeof *k);
  ic_policy_quota_t *out = calloc(n, sizeof *out);
  bool *keep = calloc(n, sizeof *keep);
  if (!k || !out || !keep) {
    free(k);
    free(out);
    free(keep);
    return IC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    k[i] = (sortkey_t){doc->tenants[i].tenant_id ? doc->tenants[i].tenant_id : "", i};
  qsort(k, n, sizeof *k, cmp_sortkey);
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (!k[i].key[0]) continue;
    if (i + 1 < n && strcmp(k[i].key, k[i + 1].key) == 0) continue;
    keep[k[i].idx] = true;
    ic_policy_quota_t q = doc->tenants[k[i].idx];
    if (q.max_index_entries < 0) q.max_index_entries = 0;
    out[m++] = q;
  }
  for (size_t i = 0; i < n; i++)
    if (!keep[i]) free_quota(&doc->tenants[i]);
  free(keep);
  free(k);
  free(doc->tenants);
  doc->tenants = out;
  doc->ntenants = m;
  return 0;
}

static int build_slots(ic_policy_snap_t *snap);

int ic_policy_store_replace(ic_policy_store_t *s, ic_policy_doc_t *doc) {
  if (!s || !doc) {
    ic_policy_doc_free(doc);
    return IC_EINVAL;
  }
  if (dedupe_policies(doc) != 0 || dedupe_tenants(doc) != 0) {
    ic_policy_doc_free(doc);
    return IC_ENOMEM;
  }
  for (size_t i = 0; i < doc->npolicies; i++)
    if (!doc->policies[i].eviction && !(doc->policies[i].eviction = strdup(""))) {
      ic_policy_doc_free(doc);
      return IC_ENOMEM;
    }
  ic_policy_snap_t *n = calloc(1, sizeof *n);
  if (!n) {
    ic_policy_doc_free(doc);
    return IC_ENOMEM;
  }
  atomic_init(&n->refs, 1);
  n->doc = doc;
  if (build_slots(n) != 0) {
    snap_unref(n);
    return IC_ENOMEM;
  }
  pthread_mutex_lock(&s->wmu);
  ic_policy_snap_t *old = atomic_exchange(&s->cur, n);
  atomic_fetch_add(&s->generation, 1);
  for (int phase = 0; phase < 2; phase++) {
    unsigned e = atomic_fetch_xor(&s->epoch, 1u) & 1u; /* new readers use the other counter */
    while (atomic_load(&s->active[e]) != 0)
      sched_yield();
  }
  pthread_mutex_unlock(&s->wmu);
  snap_unref(old);
  return 0;
}

/* Exact byte order of `t` (tlen bytes) against a NUL-terminated key, in one pass (no strlen):
 * the shorter string sorts first, as with strcmp. */
static int cmp_key(const char *t, size_t tlen, const char *key) {
  const unsigned char *a = (const unsigned char *)t, *k = (const unsigned char *)key;
  for (size_t i = 0; i < tlen; i++) {
    if (!k[i]) return 1;
    if (a[i] != k[i]) return a[i] < k[i] ? -1 : 1;
  }
  return k[tlen] ? -1 : 0;
}

static const ic_policy_entry_t *find_policy(const ic_policy_doc_t *d, const char *t, size_t tl) {
  size_t lo = 0, hi = d->npolicies;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = cmp_key(t, tl, d->policies[mid].ns);
    if (!c) return &d->policies[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

static const ic_policy_quota_t *find_quota(const ic_policy_doc_t *d, const char *t, size_t tl) {
  size_t lo = 0, hi = d->ntenants;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = cmp_key(t, tl, d->tenants[mid].tenant_id);
    if (!c) return &d->tenants[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

static void defaults(ic_policy_knobs_t *o) {
  memset(o, 0, sizeof *o);
  o->eviction = IC_POLICY_EVICT_LRU;
  o->minimum_matched_tokens = IC_POLICY_DEFAULT_MIN_MATCHED;
  o->routing_floor_score = IC_POLICY_DEFAULT_FLOOR_SCORE;
  o->affinity_routing = true;
  o->enable_chain_matching = true;
  o->require_chain = false;
  o->enable_tenant_hot = true;
}

/* Per-tenant knob resolution, from the sorted document (push time only). */
static void resolve_doc(const ic_policy_doc_t *doc, const char *tenant, size_t tlen,
                        ic_policy_knobs_t *o) {
  defaults(o);
  const ic_policy_entry_t *e = find_policy(doc, tenant, tlen);
  if (e) {
    o->has_policy = true;
    o->ttl_ns = e->eviction_ttl_ns > 0 ? e->eviction_ttl_ns : 0;
    o->eviction = (e->eviction && strcasecmp(e->eviction, "lfu") == 0) ? IC_POLICY_EVICT_LFU
                                                                       : IC_POLICY_EVICT_LRU;
    o->minimum_prefix_tokens = e->minimum_prefix_tokens > 0 ? e->minimum_prefix_tokens : 0;
    o->minimum_matched_tokens = e->minimum_matched_tokens > 0 ? e->minimum_matched_tokens : 0;
    if (e->has_routing_floor_score)
      o->routing_floor_score = e->routing_floor_score > 0 ? e->routing_floor_score : 0.0f;
    o->lookup_timeout_ms = e->lookup_timeout_ms > 0 ? e->lookup_timeout_ms : 0;
    if (e->has_affinity_routing) o->affinity_routing = e->affinity_routing;
    if (e->has_strategy) {
      if (e->has_enable_chain_matching) o->enable_chain_matching = e->enable_chain_matching;
      if (e->has_require_chain) o->require_chain = e->require_chain;
      if (e->has_enable_tenant_hot) o->enable_tenant_hot = e->enable_tenant_hot;
      if (e->has_load_aware_routing) o->load_aware_routing = e->load_aware_routing;
      if (e->has_predict_on_route) o->predict_on_route = e->predict_on_route;
    }
  }
  static const char probe[] = IC_POLICY_PROBE_TENANT;
  bool is_probe = tlen == sizeof probe - 1 && memcmp(tenant, probe, tlen) == 0;
  const ic_policy_quota_t *q = is_probe ? NULL : find_quota(doc, tenant, tlen);
  if (q) {
    o->has_quota = true;
    o->max_index_entries = q->max_index_entries > 0 ? q->max_index_entries : 0;
  }
}

static uint64_t hash_key(const char *k, size_t n) { /* FNV-1a 64 */
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
  return h;
}

static const knob_slot_t *find_slot(const ic_policy_snap_t *snap, const char *k, size_t n,
                                    uint64_t h) {
  for (size_t i = (size_t)h & snap->mask;; i = (i + 1) & snap->mask) {
    const knob_slot_t *sl = &snap->slots[i];
    if (!sl->key) return NULL;
    if (sl->hash == h && sl->klen == n && memcmp(sl->key, k, n) == 0) return sl;
  }
}

static void put_slot(ic_policy_snap_t *snap, const char *k) {
  size_t n = strlen(k);
  uint64_t h = hash_key(k, n);
  if (find_slot(snap, k, n, h)) return; /* named both as namespace and tenantID */
  size_t i = (size_t)h & snap->mask;
  while (snap->slots[i].key)
    i = (i + 1) & snap->mask;
  knob_slot_t *sl = &snap->slots[i];
  sl->key = k;
  sl->klen = n;
  sl->hash = h;
  resolve_doc(snap->doc, k, n, &sl->knobs);
}

/* Builds the knob table of a snapshot whose doc is already sorted and deduplicated. */
static int build_slots(ic_policy_snap_t *snap) {
  size_t nkeys = snap->doc->npolicies + snap->doc->ntenants;
  if (!nkeys) return 0;
  size_t cap = 8;
  while (cap < 2 * nkeys)
    cap <<= 1; /* load factor <= 1/2: short probe runs */
  snap->slots = calloc(cap, sizeof *snap->slots);
  if (!snap->slots) return IC_ENOMEM;
  snap->mask = cap - 1;
  for (size_t i = 0; i < snap->doc->npolicies; i++)
    put_slot(snap, snap->doc->policies[i].ns);
  for (size_t i = 0; i < snap->doc->ntenants; i++)
    put_slot(snap, snap->doc->tenants[i].tenant_id);
  return 0;
}

void ic_policy_resolve(const ic_policy_snap_t *snap, const char *tenant, size_t tlen,
                       ic_policy_knobs_t *o) {
  const knob_slot_t *sl = NULL;
  if (snap && snap->slots) {
    if (!tenant) tenant = "";
    sl = find_slot(snap, tenant, tlen, hash_key(tenant, tlen));
  }
  if (sl)
    *o = sl->knobs;
  else
    defaults(o);
}

void ic_policy_store_resolve(ic_policy_store_t *s, const char *tenant, size_t tlen,
                             ic_policy_knobs_t *out) {
  const ic_policy_snap_t *snap = ic_policy_acquire(s);
  ic_policy_resolve(snap, tenant, tlen, out);
  ic_policy_release(snap);
}

const ic_policy_entry_t *ic_policy_snap_policy(const ic_policy_snap_t *snap, const char *ns) {
  return snap && ns ? find_policy(snap->doc, ns, strlen(ns)) : NULL;
}
const ic_policy_quota_t *ic_policy_snap_quota(const ic_policy_snap_t *snap, const char *t) {
  return snap && t ? find_quota(snap->doc, t, strlen(t)) : NULL;
}
size_t ic_policy_snap_npolicies(const ic_policy_snap_t *snap) {
  return snap ? snap->doc->npolicies : 0;
}
size_t ic_policy_snap_nquotas(const ic_policy_snap_t *snap) {
  return snap ? snap->doc->ntenants : 0;
}

int64_t ic_policy_index_ttl(void *store, const char *tenant) {
  ic_policy_knobs_t k;
  ic_policy_store_resolve(store, tenant, tenant ? strlen(tenant) : 0, &k);
  return k.ttl_ns;
}

bool ic_policy_index_quota(void *store, const char *tenant, int64_t *max_entries) {
  ic_policy_knobs_t k;
  ic_policy_store_resolve(store, tenant, tenant ? strlen(tenant) : 0, &k);
  if (k.has_quota && max_entries) *max_entries = k.max_index_entries;
  return k.has_quota;
}

int ic_policy_index_eviction(void *store, const char *tenant) {
  ic_policy_knobs_t k;
  ic_policy_store_resolve(store, tenant, tenant ? strlen(tenant) : 0, &k);
  return (int)k.eviction;
}
