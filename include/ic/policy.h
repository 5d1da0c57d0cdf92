/* Policy store (lib/policy): parses the controller's `/policy` body (versions 3..7, normalised to
 * v7, docs/server.md "POST|PUT /policy") and answers per-tenant knob resolution.
 *
 * Replace-on-write: each successful push builds a complete immutable snapshot off to the side,
 * then swaps it in; a reader never sees half of a push. Readers take a reference to the current
 * snapshot (a few atomic operations, never waiting behind a parse) and resolve as many knobs as
 * they like from it; the convenience resolvers do acquire/resolve/release in one call.
 * Thread-safety: every function may be called concurrently. Ownership is stated per function. */
#ifndef IC_POLICY_H
#define IC_POLICY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IC_POLICY_MIN_VERSION 3
#define IC_POLICY_VERSION 7           /* PolicyPropagationVersion */
#define IC_POLICY_MAX_BODY (1u << 20) /* /policy body cap */
#define IC_POLICY_DEFAULT_MIN_MATCHED 64
#define IC_POLICY_DEFAULT_FLOOR_SCORE 0.1f
#define IC_POLICY_PROBE_TENANT "inferencecache.io/probe"

/* One CachePolicy as received (after normalisation). `has_*` = the key was present (not null). */
typedef struct ic_policy_entry {
  char *ns; /* owned */
  int64_t eviction_ttl_ns;
  int32_t minimum_prefix_tokens;
  int32_t minimum_matched_tokens;
  bool has_routing_floor_score;
  float routing_floor_score;
  int32_t lookup_timeout_ms;
  bool has_affinity_routing;
  bool affinity_routing;
  char *eviction; /* owned; "" when absent */
  bool has_strategy;
  bool has_enable_chain_matching, enable_chain_matching;
  bool has_require_chain, require_chain;
  bool has_enable_tenant_hot, enable_tenant_hot;
  /* additive, not in the reference (docs/ranking.md); absent = false */
  bool has_load_aware_routing, load_aware_routing;
  bool has_predict_on_route, predict_on_route;
} ic_policy_entry_t;

typedef struct ic_policy_quota {
  char *tenant_id; /* owned */
  int64_t max_index_entries;
  char *isolation_mode; /* owned; "" when absent; stored, unused */
} ic_policy_quota_t;

/* A decoded /policy body. */
typedef struct ic_policy_doc {
  int64_t version;
  ic_policy_entry_t *policies;
  size_t npolicies;
  ic_policy_quota_t *tenants;
  size_t ntenants;
} ic_policy_doc_t;

typedef enum {
  IC_POLICY_OK = 0,
  IC_POLICY_DECODE_ERROR = 1, /* 400 "decode policy snapshot: <msg>" */
  IC_POLICY_BAD_VERSION = 2,  /* 400 "unsupported policy snapshot version" */
} ic_policy_parse_status_t;

/* Strict decode (unknown keys rejected at any level, case-insensitive key match, last duplicate
 * wins, null = absent, integer ranges and types checked, trailing bytes after the first value
 * ignored), version check, then normalisation of v3..v6 bodies to v7. On IC_POLICY_OK *out is a
 * new document the caller owns (ic_policy_doc_free). On error `msg` gets the decoder message
 * (the part after "decode policy snapshot: "). `too_large` = the transport truncated the body. */
ic_policy_parse_status_t ic_policy_parse(const char *body, size_t len, bool too_large,
                                         ic_policy_doc_t **out, char *msg, size_t msglen);
void ic_policy_doc_free(ic_policy_doc_t *doc);

typedef struct ic_policy_store ic_policy_store_t;
typedef struct ic_policy_snap ic_policy_snap_t;

ic_policy_store_t *ic_policy_store_new(void);
void ic_policy_store_free(ic_policy_store_t *s);
/* Replace-on-write: empty namespaces / tenantIDs dropped, later duplicates win, negative
 * quotas clamped to 0. Consumes `doc` (freed here, also on error). Returns 0 or IC_ENOMEM. */
int ic_policy_store_replace(ic_policy_store_t *s, ic_policy_doc_t *doc);
/* Number of successful replaces (0 = never pushed). */
uint64_t ic_policy_store_generation(const ic_policy_store_t *s);

/* Reference-counted current snapshot; never NULL for a live store. Release when done. */
const ic_policy_snap_t *ic_policy_acquire(ic_policy_store_t *s);
void ic_policy_release(const ic_policy_snap_t *snap);

typedef enum { IC_POLICY_EVICT_LRU = 0, IC_POLICY_EVICT_LFU = 1 } ic_policy_eviction_t;

/* Every knob LookupRoute and the index use, resolved for one tenant. */
typedef struct ic_policy_knobs {
  bool has_policy; /* a policy exists for this namespace */
  int64_t ttl_ns;  /* 0 = index default (30 min) */
  ic_policy_eviction_t eviction;
  int32_t minimum_prefix_tokens;  /* <= 0 = off */
  int32_t minimum_matched_tokens; /* 64 without policy; >= 0 */
  float routing_floor_score;      /* 0.1 default; 0 = off */
  int32_t lookup_timeout_ms;      /* 0 = none */
  bool affinity_routing;          /* default true */
  bool enable_chain_matching;     /* default true */
  bool require_chain;             /* default false */
  bool enable_tenant_hot;         /* default true */
  bool load_aware_routing;        /* default false (docs/ranking.md) */
  bool predict_on_route;          /* default false (docs/ranking.md, section 3) */
  bool has_quota;                 /* false = unbounded (always false for the probe tenant) */
  int64_t max_index_entries;      /* >= 0 when has_quota */
} ic_policy_knobs_t;

/* Resolution from a snapshot; `tenant` is bytes (tlen), matched exactly against namespace and
 * tenantID. A NULL snapshot resolves to the no-policy defaults. */
void ic_policy_resolve(const ic_policy_snap_t *snap, const char *tenant, size_t tlen,
                       ic_policy_knobs_t *out);
/* acquire + resolve + release. */
void ic_policy_store_resolve(ic_policy_store_t *s, const char *tenant, size_t tlen,
                             ic_policy_knobs_t *out);

/* Read access to the stored (normalised) policy/quota, for tests and diagnostics. NULL when
 * absent. The pointers live as long as the snapshot reference. */
const ic_policy_entry_t *ic_policy_snap_policy(const ic_policy_snap_t *snap, const char *ns);
const ic_policy_quota_t *ic_policy_snap_quota(const ic_policy_snap_t *snap, const char *tenant);
size_t ic_policy_snap_npolicies(const ic_policy_snap_t *snap);
size_t ic_policy_snap_nquotas(const ic_policy_snap_t *snap);

/* Index resolver adapters (signatures of ic_index_config_t's resolvers; `ud` = the store). */
int64_t ic_policy_index_ttl(void *store, const char *tenant);
bool ic_policy_index_quota(void *store, const char *tenant, int64_t *max_entries);
int ic_policy_index_eviction(void *store, const char *tenant); /* IC_POLICY_EVICT_* */

/* ---- POST /probe request body; lives here with the other controller ->
 * server bodies so it can be fuzzed without a server. ---- */
#define IC_PROBE_MAX_BODY 4096
#define IC_PROBE_TOKEN_COUNT 16

typedef struct ic_probe_req {
  char *backend, *model, *hash_scheme, *backend_type; /* owned; "" when absent */
} ic_probe_req_t;

typedef enum {
  IC_PROBE_PARSE_OK = 0,
  IC_PROBE_PARSE_DECODE = 1, /* 400 "decode probe request: <msg>" */
  IC_PROBE_PARSE_TRAILING =
      2, /* 400 "probe request body has trailing content after the first JSON value" */
  IC_PROBE_PARSE_MISSING =
      3, /* 400 "probe request missing required field (backend, model, hashScheme)" */
} ic_probe_parse_status_t;

/* Strict decode in the reference's order: decode (unknown keys rejected), trailing content,
 * required fields. On OK the caller owns *out's strings (ic_probe_req_clear). */
ic_probe_parse_status_t ic_probe_parse(const char *body, size_t len, bool too_large,
                                       ic_probe_req_t *out, char *msg, size_t msglen);
void ic_probe_req_clear(ic_probe_req_t *r);
/* SHA-256("inferencecache.io/probe/v1\n" || u32be(len) scheme || u32be(len) model ||
 * u32be(len) backend): the probe's synthetic block hash. */
void ic_probe_hash(const char *backend, const char *model, const char *hash_scheme,
                   uint8_t out[32]);

#endif
