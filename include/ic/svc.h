/* lib/svc: the InferenceCache service logic, transport-free: serialized protobuf request in,
 * serialized response out (docs/server.md, "gRPC service"). Wire -> domain conversions live
 * here so they are unit-tested and fuzzed without a network; src/server wires these functions
 * to gRPC methods. Thread-safe: any number of threads may call into one ic_svc_t.
 *
 * Return values of the ic_svc_* request functions are gRPC status codes (IC_RPC_* of ic/rpc.h):
 * IC_RPC_OK with the response appended to `resp`, or IC_RPC_INTERNAL for an undecodable
 * request (bad protobuf or invalid UTF-8 in a string field; `*msg` gets a static message). */
#ifndef IC_SVC_H
#define IC_SVC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/buf.h"
#include "ic/index.h"
#include "ic/metrics.h"
#include "ic/policy.h"

#define IC_SVC_PROBE_TENANT "inferencecache.io/probe"
#define IC_SVC_MAX_LOOKUP_TOKENS (1u << 20)
#define IC_SVC_MAX_PROMPT_TEXT_BYTES (1u << 20)
#define IC_SVC_DEFAULT_TOKENIZE_TIMEOUT_MS 5000
#define IC_SVC_DEFAULT_MAX_IDENTITY_BYTES 1024
#define IC_SVC_MAX_CONCURRENT_TOKENIZE 64

/* Turns a LookupRoute's prompt_text into token ids (lib/prompt behind it in the server): renders
 * it as one user message with the model's chat template and tokenizes. Returns 0 with *ids
 * malloc'd (caller frees) or a negative IC_E* code (unknown model, template error, more than
 * max_ids ids...), which fails the lookup open. */
typedef int (*ic_svc_prompt_fn)(void *ud, const char *model_id, const char *text, size_t len, size_t max_ids,
                                uint32_t **ids, size_t *n);

/* RenderTemplate (lib/promptstore behind it in the server, docs/chattemplate.md): resolves the
 * template, renders it with the variables (parallel arrays) and fills *out: reason_code (static
 * string), text (malloc'd, the callee's allocation freed by lib/svc), revision, stable hash. */
typedef struct ic_svc_render_result {
  const char *reason_code;
  char *text;
  size_t text_len;
  char revision[64];
  uint8_t stable_hash[8];
  bool has_stable_hash;
} ic_svc_render_result_t;
typedef void (*ic_svc_render_fn)(void *ud, const char *template_ref, const char *tenant_id, size_t nvars,
                                 const char *const *keys, const char *const *values,
                                 ic_svc_render_result_t *out);

typedef struct ic_svc ic_svc_t;

typedef struct ic_svc_config {
  ic_index_t *index;              /* required, borrowed */
  ic_policy_store_t *policy;      /* may be NULL (tests): floors off, strategy defaults */
  int engine_block_size;          /* <= 0 -> 16 */
  /* Longest identity (replica/model/tenant/hash scheme/adapter id) ReportCacheState and
   * PublishEvent accept; longer ones are INVALID_ARGUMENT. 0 = the default, < 0 = unbounded. */
  int max_identity_bytes;
  /* Lookup metrics (may be NULL): counter {model, reason_code, hint_used} and histogram
   * {model}, label order as registered by the caller. */
  ic_metric_family_t *lookup_calls;
  ic_metric_family_t *lookup_latency;
  /* prompt_text support (NULL: prompt_text fails open to NO_HINT, as in the reference's default
   * build); the response echoes the ids in token_ids. */
  ic_svc_prompt_fn prompt_encode;
  void *prompt_ud;
  /* RenderTemplate (NULL: the reference's stub, OK with every field empty) */
  ic_svc_render_fn render_template;
  void *render_ud;
  /* Knobs of load-aware ranking (docs/ranking.md), copied; NULL = ic_index_load_cfg_init's. */
  const ic_index_load_cfg_t *load;
  /* Warm start (docs/ha.md; may be NULL): told the replica id of every accepted
   * ReportCacheState update and PublishEvent (probe tenant excluded), and whether the update
   * was the reporter's "full state sent" marker (CacheStateUpdate.full_state). */
  void (*on_report)(void *ud, const char *replica_id, bool full_state);
  void *report_ud;
} ic_svc_config_t;

ic_svc_t *ic_svc_new(const ic_svc_config_t *cfg);
void ic_svc_free(ic_svc_t *s);

/* LookupRoute. `deadline_ns` is the caller's deadline on ic_clock_monotonic_ns() (INT64_MAX =
 * none); the tenant's lookupTimeoutMs tightens it. */
int ic_svc_lookup_route(ic_svc_t *s, const uint8_t *req, size_t len, int64_t deadline_ns,
                        ic_buf_t *resp, const char **msg);
/* LookupRoute in two steps, so a server can tokenize prompt_text off its transport threads
 * (src/server hands it to lib/prompt's worker pool). ic_svc_lookup_route_begin answers every
 * request exactly as ic_svc_lookup_route does, inline, except one whose prompt_text is to be
 * tokenized: that one returns IC_RPC_OK with nothing appended and *pending set, and exactly one
 * of ic_svc_lookup_route_finish or ic_svc_lookup_route_fail_open must follow (any thread; each
 * frees it). A NULL `pending` makes it ic_svc_lookup_route. */
typedef struct ic_svc_pending ic_svc_pending_t;
int ic_svc_lookup_route_begin(ic_svc_t *s, const uint8_t *req, size_t len, int64_t deadline_ns,
                              ic_buf_t *resp, const char **msg, ic_svc_pending_t **pending);
/* Its deadline (the caller's, tightened by the tenant's lookupTimeoutMs; 5 s when neither) and
 * model_id. */
int64_t ic_svc_pending_deadline_ns(const ic_svc_pending_t *p);
const char *ic_svc_pending_model(const ic_svc_pending_t *p);
/* Tokenizes, looks up and answers, as ic_svc_lookup_route would have; lookup_latency_us counts
 * from begin. Past the deadline it answers TIMEOUT without tokenizing. */
int ic_svc_lookup_route_finish(ic_svc_t *s, ic_svc_pending_t *p, ic_buf_t *resp, const char **msg);
/* Answers without tokenizing (no scores, no token_ids): TIMEOUT when `timed_out` (its deadline
 * passed or the call was cancelled while it waited), else NO_HINT (shed). Always IC_RPC_OK
 * unless out of memory. */
int ic_svc_lookup_route_fail_open(ic_svc_t *s, ic_svc_pending_t *p, bool timed_out, ic_buf_t *resp);
/* One CacheStateUpdate of a ReportCacheState stream: ingested synchronously (probe tenant
 * dropped). IC_RPC_OK or IC_RPC_INTERNAL (undecodable; the stream should end with it). */
int ic_svc_report_one(ic_svc_t *s, const uint8_t *msg, size_t len, const char **errmsg);
/* The Ack that ends a ReportCacheState stream. */
int ic_svc_report_ack(ic_buf_t *resp);
int ic_svc_publish_event(ic_svc_t *s, const uint8_t *req, size_t len, ic_buf_t *resp, const char **msg);
int ic_svc_get_cache_state(ic_svc_t *s, const uint8_t *req, size_t len, ic_buf_t *resp, const char **msg);
/* RenderTemplate through the config's hook (the reference's stub without one),
 * and LookupPDRoute, the reference's fail-open stub. */
int ic_svc_render_template(ic_svc_t *s, const uint8_t *req, size_t len, ic_buf_t *resp, const char **msg);
int ic_svc_lookup_pd_route(ic_svc_t *s, const uint8_t *req, size_t len, ic_buf_t *resp, const char **msg);

/* --- StreamCacheEvents: filters and change encoding --- */
typedef struct ic_svc_event_filter {
  char *model_id;  /* owned; "" = any */
  char *tenant_id; /* owned; "" = any */
  uint32_t types;  /* bit (1 << type); 0 = all */
} ic_svc_event_filter_t;

/* Parses a StreamEventsRequest. Returns IC_RPC_OK or IC_RPC_INTERNAL. */
int ic_svc_event_filter_parse(const uint8_t *req, size_t len, ic_svc_event_filter_t *f);
void ic_svc_event_filter_free(ic_svc_event_filter_t *f);
/* True when the change passes the filter (the probe tenant never does). */
bool ic_svc_event_filter_match(const ic_svc_event_filter_t *f, const ic_index_change_t *c);
/* Serializes an index change as a CacheEvent (type, replica, model, tenant, prefix hash,
 * timestamp_us, adapter). Appends to out; 0 or IC_ENOMEM. */
int ic_svc_change_encode(const ic_index_change_t *c, ic_buf_t *out);

/* The change log StreamCacheEvents subscribers read (lib/svc/changelog.c): a ring of encoded
 * CacheEvents bounded to `bytes`, written in per-thread batches of index changes, read through
 * per-subscriber cursors. Thread-safe; every call but _stage takes one short internal lock. */
typedef struct ic_svc_changelog ic_svc_changelog_t;
ic_svc_changelog_t *ic_svc_changelog_new(size_t bytes); /* >= 64 KiB; memory mapped lazily */
/* Call when no other thread uses the log any more. */
void ic_svc_changelog_free(ic_svc_changelog_t *l);
/* Encodes `c` into the calling thread's staging buffer (no lock; the probe tenant is skipped).
 * Readers see nothing until the thread flushes (a stage past 32 KiB flushes by itself), so a
 * writer flushes before it releases whatever orders its changes against other writers'.
 * 0, IC_ENOMEM, or IC_ERANGE for an entry larger than half the ring (not stored). */
int ic_svc_changelog_stage(ic_svc_changelog_t *l, const ic_index_change_t *c);
/* Appends what the calling thread staged, in order, under one lock, evicting the oldest entries
 * when full. *published (may be NULL) gets the number of entries the thread's staging appended
 * since its previous flush (including any it flushed by itself). 0 or IC_ENOMEM (the staged
 * entries are lost). */
int ic_svc_changelog_flush(ic_svc_changelog_t *l, size_t *published);
/* Tells writers what the readers' filters take (n filters, borrowed for the call), so _stage
 * skips changes none of them would; changes staged before the call are judged by the previous
 * set. Until the first call every change is kept; n == 0 keeps none. */
void ic_svc_changelog_set_interest(ic_svc_changelog_t *l, const ic_svc_event_filter_t *const *f,
                                   size_t n);
/* Stage and flush one change. */
int ic_svc_changelog_append(ic_svc_changelog_t *l, const ic_index_change_t *c);
/* Returns the ring's memory to the OS; call when no reader is left (cursors past head stay
 * valid, older ones read as lost). */
void ic_svc_changelog_release(ic_svc_changelog_t *l);
uint64_t ic_svc_changelog_head(ic_svc_changelog_t *l);
typedef struct ic_svc_changelog_stats {
  uint64_t entries, bytes, head, too_large;
} ic_svc_changelog_stats_t;
void ic_svc_changelog_stats(ic_svc_changelog_t *l, ic_svc_changelog_stats_t *st);

/* A reader's position and its filter (borrowed; must outlive the cursor). */
typedef struct ic_svc_changelog_cursor {
  uint64_t seq; /* next entry to read */
  const ic_svc_event_filter_t *f;
  size_t tlen, mlen;
  uint32_t tenant_h, model_h;
} ic_svc_changelog_cursor_t;
/* Positions the cursor at the current head (a new subscriber sees changes from now on). */
void ic_svc_changelog_cursor_init(ic_svc_changelog_t *l, ic_svc_changelog_cursor_t *cur,
                                  const ic_svc_event_filter_t *f);
/* Copies the next entries passing the cursor's filter back to back into `out` (appended), at
 * most max_msgs of them and max_bytes in total (at least one when any is due); their lengths go
 * to lens[0..*n). Returns 0, IC_ENOMEM, or IC_ERANGE when the ring overwrote entries the cursor
 * had not read: *lost (may be NULL) gets their number and the cursor moves to the oldest entry. */
int ic_svc_changelog_read(ic_svc_changelog_t *l, ic_svc_changelog_cursor_t *cur, size_t max_bytes,
                          size_t max_msgs, ic_buf_t *out, size_t *lens, size_t *n, uint64_t *lost);

/* --- StreamMetrics --- */
typedef struct ic_svc_metric_filter {
  char **names; /* owned; empty = all */
  size_t n;
} ic_svc_metric_filter_t;
int ic_svc_metric_filter_parse(const uint8_t *req, size_t len, ic_svc_metric_filter_t *f);
void ic_svc_metric_filter_free(ic_svc_metric_filter_t *f);
/* Encodes every sample of `m` passing the filter as a Metric message and calls emit() with
 * each serialized message. Returns the number of messages emitted. A name matches a family
 * name or the sample name (histograms: name_bucket/_sum/_count). */
typedef void (*ic_svc_metric_emit_fn)(void *ud, const char *name, const char *type, const uint8_t *msg,
                                      size_t len);
size_t ic_svc_metrics_encode(ic_metrics_t *m, const ic_svc_metric_filter_t *f, int64_t now_us,
                             ic_svc_metric_emit_fn emit, void *ud);
/* True when a sample (name, type) passes the filter (NULL or empty filter = all). */
bool ic_svc_metric_filter_match(const ic_svc_metric_filter_t *f, const char *name, const char *type);

/* True when s is valid UTF-8 (proto3 string fields must be). */
bool ic_svc_utf8_valid(const char *s, size_t n);

#endif
