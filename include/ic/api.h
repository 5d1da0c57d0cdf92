/* The six inferencecache.io/v1alpha1 kinds as C types: jansson decode/encode, schema defaults,
 * read-time defaults and Kubernetes-style field errors. Shared by the controller and the webhooks.
 *
 * Design: every decoded object keeps the JSON it came from (`raw`). Typed fields are a view the
 * caller may edit; encode() starts from a copy of `raw` and writes back only the fields this module
 * owns, so unknown fields (and unknown nested fields) round-trip untouched. Absent optional values
 * stay absent: strings are NULL, optional numbers carry a `has_*` flag, nested objects a `present`
 * flag, and core/v1 sub-objects we do not interpret (affinity, resources, tolerations, ...) are kept
 * as `json_t *` references owned by the struct.
 *
 * Ownership: decode() fills a caller-provided struct (zero it first or pass a fresh one); everything
 * it allocates belongs to that struct and is released by the kind's free(). Strings set by the
 * caller must be malloc'd (ic_api_strdup) because free() releases them. json_t members hold one
 * reference each. Nothing here does I/O or starts a thread. */
#ifndef IC_API_H
#define IC_API_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IC_API_GROUP "inferencecache.io"
#define IC_API_VERSION "v1alpha1"
#define IC_API_GROUP_VERSION "inferencecache.io/v1alpha1"

/* Well-known keys. */
#define IC_API_LABEL_CACHE_DOMAIN "inferencecache.io/cache-domain"
#define IC_API_ANN_SKIP_INJECT "inferencecache.io/skip-inject"
#define IC_API_ANN_INJECT_SKIPPED "inferencecache.io/inject-skipped"
#define IC_API_ANN_INJECTED_BY "inferencecache.io/injected-by"
#define IC_API_ANN_INJECTED_BY_UID "inferencecache.io/injected-by-uid"
#define IC_API_ANN_INJECTED_GENERATION "inferencecache.io/injected-generation"
#define IC_API_LABEL_MP_METRICS "inferencecache.io/lmcache-mp-metrics"
#define IC_API_ANN_REQUIRE_KV_EVENTS "inferencecache.io/require-kv-events"
#define IC_API_ANN_SKIP_FUNCTIONAL_PROBE "inferencecache.io/skip-functional-probe"
#define IC_API_ANN_KERNEL_CHECK "inferencecache.io/lmcache-kernel-check"
#define IC_API_LABEL_BACKEND_TYPE "inferencecache.io/backend-type"
#define IC_API_PROBE_TENANT "inferencecache.io/probe"

/* ---- field errors -------------------------------------------------------------------------- */

typedef enum {
  IC_API_ERR_REQUIRED = 0,  /* "Required value"           reason FieldValueRequired */
  IC_API_ERR_INVALID,       /* "Invalid value: <v>"       reason FieldValueInvalid */
  IC_API_ERR_FORBIDDEN,     /* "Forbidden"                reason FieldValueForbidden */
  IC_API_ERR_NOT_SUPPORTED, /* "Unsupported value: <v>"   reason FieldValueNotSupported */
  IC_API_ERR_INTERNAL,      /* "Internal error"           reason InternalError */
  IC_API_ERR_TYPE,          /* schema type mismatch, reported like the API server: Invalid value */
} ic_api_err_type_t;

typedef struct ic_api_field_error {
  ic_api_err_type_t type;
  char *field;       /* e.g. "spec.integration.role" (owned) */
  json_t *bad_value; /* value that failed, NULL when none (one reference, owned) */
  char *detail;      /* free text, may be NULL (owned) */
  char **supported;  /* NotSupported: allowed values (owned array of owned strings) */
  size_t n_supported;
} ic_api_field_error_t;

typedef struct ic_api_errors {
  ic_api_field_error_t *items; /* owned */
  size_t len, cap;
} ic_api_errors_t;

#define IC_API_ERRORS_INIT {NULL, 0, 0}
void ic_api_errors_free(ic_api_errors_t *e);
/* Appends one error; `bad` is borrowed (a reference is taken), `supported` NULL-terminated or NULL.
 * Returns 0 or IC_ENOMEM. `detail` is printf-style. */
int ic_api_errors_add(ic_api_errors_t *e, ic_api_err_type_t type, const char *field, const json_t *bad,
                      const char *const *supported, const char *detail_fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Moves every error of `src` into `dst` (src becomes empty). */
int ic_api_errors_move(ic_api_errors_t *dst, ic_api_errors_t *src);
/* True when both errors have the same type, field, bad value (JSON-equal) and detail: the identity the
 * UPDATE "only newly introduced errors" rule compares. */
bool ic_api_field_error_equal(const ic_api_field_error_t *a, const ic_api_field_error_t *b);
/* Kubernetes text of one error, e.g.
 *   spec.integration.role: Unsupported value: "X": supported values: "ReadOnly", "WriteOnly", "ReadWrite"
 * Returns a malloc'd string (caller frees) or NULL on ENOMEM. */
char *ic_api_field_error_string(const ic_api_field_error_t *fe);
/* Reason string for Status.details.causes[].reason ("FieldValueRequired", ...). */
const char *ic_api_err_reason(ic_api_err_type_t t);
/* Whole-object text as the API server prints it:
 *   <Kind>.inferencecache.io "<name>" is invalid: <err>            (one error)
 *   <Kind>.inferencecache.io "<name>" is invalid: [<err>, <err>]   (several)
 * `group` may be "" for core kinds. Caller frees. */
char *ic_api_errors_message(const ic_api_errors_t *e, const char *kind, const char *group, const char *name);

/* ---- shared pieces ------------------------------------------------------------------------- */

typedef enum {
  IC_API_KIND_UNKNOWN = 0,
  IC_API_KIND_CACHEBACKEND,
  IC_API_KIND_CACHEPOLICY,
  IC_API_KIND_CACHETENANT,
  IC_API_KIND_CACHEINDEX,
  IC_API_KIND_PROMPTTEMPLATE,
  IC_API_KIND_PDTOPOLOGY,
} ic_api_kind_t;

/* Kind of an object from apiVersion + kind (UNKNOWN for other groups/versions). */
ic_api_kind_t ic_api_kind_of(const json_t *obj);
const char *ic_api_kind_name(ic_api_kind_t k); /* "CacheBackend", ... ("" for UNKNOWN) */

typedef struct ic_api_meta {
  char *name, *namespace_, *uid, *resource_version, *creation_timestamp; /* NULL when absent */
  bool has_generation;
  int64_t generation;
  json_t *labels;      /* object string->string or NULL */
  json_t *annotations; /* object string->string or NULL */
} ic_api_meta_t;

typedef struct ic_api_condition {
  char *type, *status, *reason, *message, *last_transition_time;
  bool has_observed_generation;
  int64_t observed_generation;
} ic_api_condition_t;

typedef struct ic_api_conditions {
  ic_api_condition_t *items; /* owned */
  size_t len;
  bool present; /* the key existed (possibly as []) */
} ic_api_conditions_t;

/* Finds a condition by type (NULL if absent). */
const ic_api_condition_t *ic_api_conditions_find(const ic_api_conditions_t *c, const char *type);
/* meta.SetStatusCondition semantics: lastTransitionTime changes only when status changes (then it
 * becomes `now_rfc3339`); reason/message/observedGeneration are overwritten in place. Returns 1 when
 * anything changed, 0 when not, IC_ENOMEM on allocation failure. */
int ic_api_conditions_set(ic_api_conditions_t *c, const char *type, const char *status, const char *reason,
                          const char *message, bool has_observed_generation, int64_t observed_generation,
                          const char *now_rfc3339);
/* Removes a condition by type; returns 1 if removed, 0 if absent. */
int ic_api_conditions_remove(ic_api_conditions_t *c, const char *type);

/* ---- CacheBackend (cachebackend-v1alpha1.md) ----------------------------------------------- */

typedef struct ic_api_secret_key_selector {
  bool present;
  char *name, *key;
  bool has_optional, optional;
} ic_api_secret_key_selector_t;

typedef struct ic_api_lmcache_server {
  bool present;
  char *image;
  bool has_port, has_http_port, has_max_workers, has_max_gpu_workers, has_max_cpu_workers;
  int64_t port, http_port, max_workers, max_gpu_workers, max_cpu_workers;
  json_t *l1_capacity; /* quantity (string or integer) or NULL */
  json_t *resources;   /* core ResourceRequirements or NULL */
} ic_api_lmcache_server_t;

typedef struct ic_api_cachebackend_spec {
  bool present; /* the object had a "spec" key */
  /* seed fields */
  char *type;            /* any string; NULL = absent */
  char *deployment_kind; /* Deployment | StatefulSet */
  bool has_replicas;
  int64_t replicas;
  struct {
    bool present;
    struct {
      bool present;
      json_t *size;              /* quantity or NULL */
      char *storage_class_name;  /* NULL = absent; "" is kept distinct */
    } pvc;
  } storage;
  struct {
    bool present;
    char *engine, *role, *mode; /* mode is a later field */
    bool has_lookup_timeout_ms, has_minimum_prefix_tokens;
    int64_t lookup_timeout_ms, minimum_prefix_tokens;
    json_t *engine_overrides; /* later; {args,suppressArgs,env,suppressEnv} or NULL */
  } integration;
  struct {
    bool present;
    json_t *match_labels; /* object or NULL */
  } engine_selector;
  json_t *backend_config; /* object string->string or NULL */
  json_t *template_;      /* the narrow pod override (11 properties) or NULL */
  char *endpoint;
  /* later-additive fields */
  char *runtime; /* VLLM | SGLang */
  struct {
    bool present;
    char *topology; /* PodLocal | NodeLocal */
    bool has_chunk_size_tokens;
    int64_t chunk_size_tokens;
    struct {
      bool present;
      ic_api_lmcache_server_t server;
    } pod_local;
    struct {
      bool present;
      bool has_idle_retention_seconds;
      int64_t idle_retention_seconds;
      ic_api_lmcache_server_t server;
      json_t *scheduling; /* object or NULL */
    } node_local;
  } lm_cache;
  struct {
    bool present;
    char *provider, *ownership, *endpoint;
    json_t *workload; /* object or NULL */
    struct {
      bool present;
      char *image;
      json_t *resources; /* ResourceRequirements or NULL ({} is kept: it suppresses defaults) */
      struct {
        bool present;
        ic_api_secret_key_selector_t username, password;
      } authentication;
      json_t *tls; /* object or NULL (always denied by the webhook) */
      bool has_database;
      int64_t database;
    } redis;
  } remote_storage;
  struct {
    bool present;
    char *model_id, *first_event_timeout;
  } observation;
  struct {
    bool present;
    bool has_size_gb;
    int64_t size_gb;
    char *ratio, *write_policy, *io_backend, *memory_layout;
  } hi_cache;
  bool has_allow_cross_namespace, allow_cross_namespace;
} ic_api_cachebackend_spec_t;

typedef struct ic_api_cachebackend_status {
  bool present;
  char *endpoint, *health; /* seed */
  bool has_index_entries;
  int64_t index_entries; /* explicit 0 is serialised */
  ic_api_conditions_t conditions;
  bool has_observed_generation;
  int64_t observed_generation;
  struct {
    bool present;
    char *provider, *endpoint, *ready;
  } remote_storage;
  json_t *connector; /* object or NULL (docs/api.md) */
  bool has_matched_engine_pods;
  int64_t matched_engine_pods;
  char *engine_selector_message, *first_available_at, *first_kv_event_observed_at;
  struct {
    bool present;
    int64_t prefix_count;
    char *last_event_at, *hit_rate, *t2_hit_rate;
  } index_participation;
} ic_api_cachebackend_status_t;

typedef struct ic_api_cachebackend {
  json_t *raw; /* the decoded object (owned reference) */
  ic_api_meta_t meta;
  ic_api_cachebackend_spec_t spec;
  ic_api_cachebackend_status_t status;
} ic_api_cachebackend_t;

/* ---- CachePolicy --------------------------------------------------------------------------- */

typedef struct ic_api_cachepolicy {
  json_t *raw;
  ic_api_meta_t meta;
  struct {
    bool present;
    char *eviction, *eviction_ttl, *routing_floor_score, *affinity_routing;
    bool has_minimum_prefix_tokens, has_minimum_matched_tokens, has_lookup_timeout_ms;
    int64_t minimum_prefix_tokens, minimum_matched_tokens, lookup_timeout_ms;
    struct {
      bool present;
      bool has_enable_chain_matching, enable_chain_matching;
      bool has_require_chain, require_chain;
      bool has_enable_tenant_hot, enable_tenant_hot;
      bool has_load_aware_routing, load_aware_routing; /* additive; absent = false */
      bool has_predict_on_route, predict_on_route;     /* additive; absent = false */
    } strategy;
  } spec;
  struct {
    bool present, has_observed_generation;
    int64_t observed_generation;
    ic_api_conditions_t conditions;
  } status;
} ic_api_cachepolicy_t;

/* ---- CacheTenant --------------------------------------------------------------------------- */

typedef struct ic_api_cachetenant {
  json_t *raw;
  ic_api_meta_t meta;
  struct {
    bool present;
    char *tenant_id, *isolation_mode;
    struct {
      bool present, has_max_index_entries;
      int64_t max_index_entries;
    } quota;
    json_t *crypto; /* must be {} (maxProperties 0) */
  } spec;
  struct {
    bool present, has_observed_generation, has_index_entries;
    int64_t observed_generation, index_entries;
    ic_api_conditions_t conditions;
  } status;
} ic_api_cachetenant_t;

/* ---- CacheIndex (cluster-scoped singleton "cluster-default") ------------------------------- */

typedef struct ic_api_cacheindex_replica {
  char *id, *tenant, *hit_rate, *pressure, *last_update;
  bool has_cache_memory_bytes;
  int64_t cache_memory_bytes;
} ic_api_cacheindex_replica_t;

typedef struct ic_api_cacheindex_tenant {
  char *id, *hit_rate;
  bool has_index_entries;
  int64_t index_entries;
  int64_t memory_used; /* deprecated, always written (0) */
} ic_api_cacheindex_tenant_t;

typedef struct ic_api_cacheindex {
  json_t *raw;
  ic_api_meta_t meta; /* spec is always encoded as {} (legacy shape) */
  struct {
    bool present;
    ic_api_cacheindex_replica_t *replicas;
    size_t n_replicas;
    bool has_replicas;
    ic_api_cacheindex_tenant_t *tenants;
    size_t n_tenants;
    bool has_tenants;
    struct {
      bool present;
      int64_t total, hot;
    } prefixes;
    char *observed_server, *last_updated;
  } status;
} ic_api_cacheindex_t;

/* ---- PromptTemplate ------------------------------------------------------------------------ */

typedef struct ic_api_prompt_slot {
  char *name, *type, *description;
  bool has_required, required;
} ic_api_prompt_slot_t;

typedef struct ic_api_prompttemplate {
  json_t *raw;
  ic_api_meta_t meta;
  struct {
    bool present;
    char *body;
    ic_api_prompt_slot_t *slots;
    size_t n_slots;
    bool has_slots;
  } spec;
  struct {
    bool present, has_observed_generation;
    int64_t observed_generation;
    char *template_revision;
    ic_api_conditions_t conditions;
  } status;
} ic_api_prompttemplate_t;

/* ---- PDTopology ---------------------------------------------------------------------------- */

typedef struct ic_api_pd_pool {
  char *name, *accelerator_type;
  json_t *match_labels;
  bool has_replicas;
  int64_t replicas;
} ic_api_pd_pool_t;

typedef struct ic_api_accelerator_type {
  char *name, *vendor, *model;
  json_t *match_labels;
} ic_api_accelerator_type_t;

typedef struct ic_api_pdtopology {
  json_t *raw;
  ic_api_meta_t meta;
  struct {
    bool present;
    ic_api_pd_pool_t *prefill_pools, *decode_pools;
    size_t n_prefill_pools, n_decode_pools;
    bool has_prefill_pools, has_decode_pools;
    ic_api_accelerator_type_t *accelerator_types;
    size_t n_accelerator_types;
    bool has_accelerator_types;
  } spec;
  struct {
    bool present, has_observed_generation;
    int64_t observed_generation;
    ic_api_conditions_t conditions;
  } status;
} ic_api_pdtopology_t;

/* ---- per-kind operations ------------------------------------------------------------------- *
 * decode(obj, out, errs): fills *out (zero it first). Never fails on bad field values: they are
 *   reported into `errs` (may be NULL) exactly as the CRD's structural schema would reject them
 *   (types, enums, minimums, required, patterns, the two CEL rules) and the typed field is left
 *   absent (so encode() drops a rejected value; the API server never stores one). Unknown fields
 *   are not errors: the API server prunes them. Returns 0, IC_EINVAL when `obj` is not a JSON
 *   object, or IC_ENOMEM.
 * encode(x): a new JSON object (caller owns the reference) = raw with the owned fields rewritten;
 *   absent fields are removed, absent nested objects stay absent. NULL on ENOMEM.
 * default(x): applies the CRD schema defaults the API server would fill (never read-time defaults).
 * free(x): releases everything decode/caller attached; the struct is zeroed.
 * clone(src, dst): deep copy via encode+decode (no shared storage). */
#define IC_API_DECLARE_KIND(k)                                                                 \
  int ic_api_##k##_decode(const json_t *obj, ic_api_##k##_t *out, ic_api_errors_t *errs);      \
  json_t *ic_api_##k##_encode(const ic_api_##k##_t *x);                                       \
  void ic_api_##k##_default(ic_api_##k##_t *x);                                               \
  void ic_api_##k##_free(ic_api_##k##_t *x);                                                  \
  int ic_api_##k##_clone(const ic_api_##k##_t *src, ic_api_##k##_t *dst);

IC_API_DECLARE_KIND(cachebackend)
IC_API_DECLARE_KIND(cachepolicy)
IC_API_DECLARE_KIND(cachetenant)
IC_API_DECLARE_KIND(cacheindex)
IC_API_DECLARE_KIND(prompttemplate)
IC_API_DECLARE_KIND(pdtopology)

/* Schema validation of any of the six kinds (dispatch on apiVersion/kind): decode into a temporary
 * and collect the structural-schema errors. Unknown kinds get one error at "kind". */
int ic_api_validate_schema(const json_t *obj, ic_api_errors_t *errs);

/* Strict field validation (lib/api/strict.c), what `kubectl apply` with strict field validation
 * rejects: fields no schema declares, typos included. With `crd_schema` (a CRD version's
 * openAPIV3Schema) the whole object is walked; without it, built-in and third-party kinds the
 * install ships get apiVersion/kind, metadata and top-level fields checked, and an unknown
 * apiVersion/kind pair is itself reported. `fn(ud, path, why)` is called per problem (path like
 * "spec.strategy.requireChian"); returns how many. */
typedef void (*ic_api_strict_fn)(void *ud, const char *path, const char *why);
size_t ic_api_strict_fields(const json_t *obj, const json_t *crd_schema, ic_api_strict_fn fn, void *ud);
/* The openAPIV3Schema of a CustomResourceDefinition's storage version (borrowed from `crd`), with
 * its group, kind and version; NULL when it has none. */
const json_t *ic_api_crd_schema(const json_t *crd, const char **group, const char **kind,
                                const char **version);

/* ---- CacheBackend read-time defaults (never written to spec) -- */

/* Engine-wired = spec.runtime non-empty. */
bool ic_api_cachebackend_engine_wired(const ic_api_cachebackend_t *cb);
/* spec.type if non-empty; else "LMCache" when engine-wired; else "". Never NULL. */
const char *ic_api_cachebackend_effective_type(const ic_api_cachebackend_t *cb);
/* Lower-case spec.runtime ("vllm", "sglang", or "" when absent). Writes into buf (>= 16 bytes). */
const char *ic_api_cachebackend_runtime_id(const ic_api_cachebackend_t *cb, char *buf, size_t len);
const char *ic_api_cachebackend_deployment_kind(const ic_api_cachebackend_t *cb); /* "Deployment" */
int64_t ic_api_cachebackend_replicas(const ic_api_cachebackend_t *cb);            /* 1 */
const char *ic_api_cachebackend_role(const ic_api_cachebackend_t *cb);            /* "ReadWrite" */
const char *ic_api_cachebackend_mode(const ic_api_cachebackend_t *cb);            /* "Offload" */
bool ic_api_cachebackend_events_only(const ic_api_cachebackend_t *cb);
int64_t ic_api_cachebackend_chunk_size(const ic_api_cachebackend_t *cb); /* 256 */
/* observation.firstEventTimeout in nanoseconds; 5m when absent, unparsable or <= 0. */
int64_t ic_api_cachebackend_first_event_timeout_ns(const ic_api_cachebackend_t *cb);
/* The cache-domain label value of engineSelector.matchLabels, or NULL. */
const char *ic_api_cachebackend_cache_domain(const ic_api_cachebackend_t *cb);
/* True when matchLabels is non-empty and every label equals the one in `labels` (object or NULL). */
bool ic_api_cachebackend_selects(const ic_api_cachebackend_t *cb, const json_t *labels);

/* ---- value helpers --------------------------------------------------------------------------- */

char *ic_api_strdup(const char *s); /* NULL-safe strdup */
/* Go time.ParseDuration syntax ("5m", "1h30m", "-1.5s", "0"). 0 or IC_EINVAL/IC_ERANGE. */
int ic_api_parse_duration(const char *s, int64_t *ns);
/* Kubernetes resource.Quantity (integer or string such as "10Gi", "500m", "1e3") as milli-units
 * (1 = 1000). 0 or IC_EINVAL (malformed) / IC_ERANGE (beyond int64 milli-units). */
int ic_api_parse_quantity(const json_t *q, int64_t *milli);
int ic_api_parse_quantity_str(const char *s, int64_t *milli);
/* DNS-1123 label/subdomain, label value, qualified name, env var name, config map key checks. */
bool ic_api_is_dns1123_label(const char *s);
bool ic_api_is_dns1123_subdomain(const char *s);
bool ic_api_is_label_value(const char *s);
bool ic_api_is_qualified_name(const char *s);
bool ic_api_is_env_var_name(const char *s);
bool ic_api_is_config_map_key(const char *s);
/* Redis/External endpoint shape check: NULL when valid, else a static
 * message ending in "use bare host:port". */
const char *ic_api_check_endpoint_shape(const char *endpoint);

#endif
