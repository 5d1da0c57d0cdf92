/* Trace replayer (lib/replay): workloads (Mooncake JSONL traces, synthetic shared-prefix,
 * multi-turn and cache-stress shapes), routing modes (random, round-robin, least-loaded,
 * approximate, lookup, precise), the open-loop runner that sends a workload to a fleet of
 * OpenAI-compatible engines, and the reports (per-request JSON lines, per-mode summary, table,
 * SVG). `inferencecache replay` is a thin front end; docs/replay.md is the user guide.
 *
 * Prompts are token ids built from "segments": a segment is (id, length) and its tokens are a
 * pure function of (id, position), so equal ids give equal token blocks everywhere (a Mooncake
 * hash id is one 512-token segment). Functions return 0 / negative IC_E* or NULL (ic/err.h). */
#ifndef IC_REPLAY_H
#define IC_REPLAY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ===================================== workloads ===================================== */

#define IC_REPLAY_MOONCAKE_BLOCK 512    /* tokens per Mooncake hash id */
#define IC_REPLAY_MAX_PROMPT (1u << 20) /* tokens; longer prompts are rejected */
#define IC_REPLAY_TOKEN_BASE 1000u      /* generated ids live in [BASE, BASE + SPAN) */
#define IC_REPLAY_TOKEN_SPAN 120000u

typedef struct ic_replay_req {
  int64_t arrival_us;  /* workload time since its start (before --speedup) */
  uint32_t input_len;  /* prompt tokens = sum of segment lengths */
  uint32_t output_len; /* max_tokens (>= 1) */
  size_t seg_off;      /* segments [seg_off, seg_off + nseg) of the workload */
  uint32_t nseg;
  uint32_t burst;         /* `burst` scenario: 1 + the burst it belongs to; 0 = none */
  uint32_t burst_prefix;  /* tokens of the prefix the burst's siblings share */
} ic_replay_req_t;

typedef struct ic_replay_workload {
  char name[64]; /* scenario name in reports: "conversation", "shared-prefix", ... */
  ic_replay_req_t *reqs;
  size_t n, cap;
  uint64_t *seg_ids;
  uint32_t *seg_lens;
  size_t nsegs, segcap;
  size_t skipped;        /* malformed input lines skipped (Mooncake) */
  char first_error[256]; /* the first skipped line's reason, "" if none */
} ic_replay_workload_t;

void ic_replay_workload_free(ic_replay_workload_t *w); /* frees w itself too; NULL ok */

/* Token `pos` of segment `id` (deterministic, never 0). */
uint32_t ic_replay_token(uint64_t id, uint32_t pos);

/* Writes request i's prompt into out[0..input_len) (out_cap must be >= input_len).
 * Returns the number of tokens written. */
size_t ic_replay_req_tokens(const ic_replay_workload_t *w, size_t i, uint32_t *out, size_t out_cap);

/* Parses Mooncake JSONL (`timestamp` ms, `input_length`, `output_length`, `hash_ids`; the
 * trace format of kvcache-ai/Mooncake). Malformed lines are skipped, counted in w->skipped with
 * the first reason in w->first_error; valid neighbours are kept. Requests are ordered by
 * timestamp (stable). Returns a workload (caller frees) or NULL with a message in err when no
 * line is usable. */
ic_replay_workload_t *ic_replay_mooncake_parse(const char *data, size_t len, const char *name,
                                               char *err, size_t errlen);

/* Builds a workload from a spec:
 *   mooncake:PATH[,name=N]              a Mooncake JSONL file (name defaults to the file stem)
 *   shared-prefix[:k=v,...]             groups, questions, context, question, output, rate, seed
 *   multi-turn[:k=v,...]                sessions, turns, system, user, answer, think, rate, seed
 *   cache-stress[:k=v,...]              prefixes, prefix, suffix, output, rate, zipf, requests,
 * seed
 *   burst[:k=v,...]                     bursts, siblings, prefix, suffix, output, window, rate, seed
 * Unknown keys and bad values are errors (message in err). Returns NULL on error. */
ic_replay_workload_t *ic_replay_workload_load(const char *spec, char *err, size_t errlen);

/* Help text describing the specs and their defaults (static string). */
const char *ic_replay_workload_help(void);

/* Keeps the first max_requests requests (0 = all) whose arrival is < max_duration_us
 * (0 = no limit). */
void ic_replay_workload_limit(ic_replay_workload_t *w, size_t max_requests,
                              int64_t max_duration_us);

/* Appends one request made of the given segments (used by the generators and tests). */
int ic_replay_workload_add(ic_replay_workload_t *w, int64_t arrival_us, uint32_t output_len,
                           const uint64_t *ids, const uint32_t *lens, uint32_t nseg);
ic_replay_workload_t *ic_replay_workload_new(const char *name);

/* ===================================== routing ===================================== */

typedef enum {
  IC_REPLAY_RANDOM = 0,
  IC_REPLAY_ROUND_ROBIN,
  IC_REPLAY_LEAST_LOADED,
  IC_REPLAY_APPROXIMATE,
  IC_REPLAY_LOOKUP,
  IC_REPLAY_PRECISE,
  IC_REPLAY_NMODES
} ic_replay_mode_t;

const char *ic_replay_mode_name(ic_replay_mode_t m);
int ic_replay_mode_parse(const char *s, ic_replay_mode_t *out); /* 0 or IC_EINVAL */

/* Event-less router memory ("approximate"): per replica an LRU set of the block hashes it was
 * sent, bounded by capacity_blocks. Not thread-safe (the runner's router thread owns it). */
typedef struct ic_replay_approx ic_replay_approx_t;
ic_replay_approx_t *ic_replay_approx_new(int nreplicas, size_t capacity_blocks);
void ic_replay_approx_free(ic_replay_approx_t *a);
/* Number of leading chain blocks replica r was sent (and still remembers). */
size_t ic_replay_approx_match(const ic_replay_approx_t *a, int r, const uint64_t *chain, size_t n);
/* Remembers that the chain was sent to r (most recently used). */
int ic_replay_approx_record(ic_replay_approx_t *a, int r, const uint64_t *chain, size_t n);

/* Index of the smallest load (ties: the first at or after `start`, cyclically). */
int ic_replay_pick_least(const int64_t *load, int n, int start);
/* Index of the largest match (ties broken by the smallest load, then cyclically from start);
 * returns -1 when every match is 0. */
int ic_replay_pick_best_match(const int64_t *match, const int64_t *load, int n, int start);

/* ===================================== reports ===================================== */

typedef struct ic_replay_record {
  size_t index;             /* request index in the workload */
  int replica;              /* chosen engine index */
  char reason[24];          /* LookupRoute reason / decision source ("" for load-only modes) */
  int64_t lookup_us;        /* LookupRoute round trip (wall µs), -1 when not asked */
  int64_t predicted_tokens; /* tokens the router expected cached on `replica`, -1 = none */
  int64_t prompt_tokens;    /* as the engine reported (usage) */
  int64_t cached_tokens;    /* engine's prefix-cache hit (usage.prompt_tokens_details) */
  int64_t computed_prefill_tokens;
  int64_t completion_tokens;
  double ttft_ms; /* engine-side, simulated ms (sim_timing); wall when absent */
  double e2e_ms;
  double queue_ms;
  double arrival_ms, finish_ms; /* engine clock (simulated ms), for throughput */
  double client_ttft_ms;        /* wall: send -> first SSE chunk */
  double send_lag_ms;           /* wall: how late the request left vs its schedule */
  bool sim_timing;              /* the engine sent sim_timing */
  uint32_t burst, burst_prefix; /* copied from the request (burst scenario) */
  bool ok;
  char error[96];
} ic_replay_record_t;

typedef struct ic_replay_summary {
  char scenario[64];
  char mode[24];
  size_t requests, failed;
  double hit_rate; /* sum cached / sum prompt tokens */
  int64_t prompt_tokens, cached_tokens, prefill_tokens_computed;
  double ttft_mean_ms, ttft_p50_ms, ttft_p90_ms, ttft_p99_ms;
  double e2e_mean_ms, e2e_p99_ms;
  double throughput_rps, output_tokens_per_s; /* over the engines' (simulated) clock */
  double load_imbalance;                      /* max / mean prefill tokens computed per replica */
  size_t predictions;                         /* requests with a prediction (> 0 tokens) */
  double prediction_accuracy; /* share of them whose replica held the predicted tokens */
  double lookup_p50_us, lookup_p99_us;
  double send_lag_p99_ms;
  size_t reason_counts[12]; /* by slot of ic_replay_reason_names */
  /* burst scenario (0 without bursts): over bursts, the share of a burst's siblings on the
   * replica that got most of them; over (burst, replica) pairs, the siblings that computed the
   * shared prefix (engine cached_tokens below it) and the share of pairs where exactly one did */
  size_t bursts;
  double burst_same_replica_ratio;
  double burst_prefill_computes_per_replica;
  double burst_prefill_once_ratio;
} ic_replay_summary_t;

/* Names of the reason_counts slots (NULL-terminated list). */
extern const char *const ic_replay_reason_names[];
int ic_replay_reason_slot(const char *reason);

/* True when the replica held what was predicted: cached >= min(predicted, the most an engine
 * with vLLM's semantics can reuse: whole blocks of prompt_tokens - 1). */
bool ic_replay_prediction_held(int64_t predicted, int64_t cached, int64_t prompt_tokens,
                               int block_size);

void ic_replay_summarize(const ic_replay_record_t *recs, size_t n, int nreplicas, int block_size,
                         const char *scenario, const char *mode, ic_replay_summary_t *out);

/* One JSON object per line. */
int ic_replay_write_record_json(FILE *f, const char *scenario, const char *mode,
                                const char *replica_id, const ic_replay_record_t *r);
int ic_replay_write_summary_json(FILE *f, const ic_replay_summary_t *s);
/* A readable table of the summaries (one row per mode). */
void ic_replay_write_table(FILE *f, const ic_replay_summary_t *s, size_t n);

/* SVG picture: TTFT distribution (CDF, log axis) and hit rate per mode. ttfts[i] holds
 * nttft[i] successful requests' TTFTs of summary i. */
int ic_replay_write_svg(FILE *f, const char *title, const ic_replay_summary_t *s,
                        const double *const *ttfts, const size_t *nttft, size_t n);

/* ====================================== engines ====================================== */

/* Incremental Server-Sent-Events parser: feed bytes as they arrive; every complete event's
 * data (multi-line data joined with '\n') is passed to on_data. Lines beyond 8 MiB make the
 * parser fail (IC_ERANGE) instead of growing without bound. */
typedef struct ic_replay_sse {
  char *buf;
  size_t len, cap;
  char *data;
  size_t dlen, dcap;
  bool failed;
} ic_replay_sse_t;
typedef int (*ic_replay_sse_fn)(void *ud, const char *data, size_t len);
void ic_replay_sse_init(ic_replay_sse_t *p);
void ic_replay_sse_free(ic_replay_sse_t *p);
int ic_replay_sse_feed(ic_replay_sse_t *p, const char *bytes, size_t len, ic_replay_sse_fn fn,
                       void *ud);
/* End of stream: dispatches a final event not terminated by a blank line. */
int ic_replay_sse_finish(ic_replay_sse_t *p, ic_replay_sse_fn fn, void *ud);

/* Applies one completion response object (a streamed chunk or a whole non-streamed reply) to
 * the record: usage, prompt_tokens_details.cached_tokens, sim_timing, error. Returns 1 when the
 * object carried usage or sim_timing, 0 for a plain token chunk, IC_EPROTO for bad JSON or an
 * error object (message in r->error). */
int ic_replay_apply_completion(ic_replay_record_t *r, const char *json, size_t len);

/* ====================================== runner ====================================== */

typedef struct ic_replay_engine {
  char *replica_id; /* as the engine's subscriber reports it (--replica-id) */
  char *url;        /* base URL, e.g. http://127.0.0.1:8000 */
} ic_replay_engine_t;

/* Parses "replica=URL" (or a bare URL: replica id "replica-<index>"). Caller frees fields. */
int ic_replay_engine_parse(const char *s, int index, ic_replay_engine_t *out, char *err,
                           size_t errlen);

typedef struct ic_replay_opts {
  const ic_replay_engine_t *engines;
  int nengines;
  const char *server;   /* LookupRoute target host:port */
  const char *model_id; /* completions `model` and LookupRoute model_id */
  const char *tenant_id;
  const char *hash_scheme;
  int block_size; /* fingerprint block size (the engines' page size) */
  double speedup; /* wall = workload time / speedup */
  ic_replay_mode_t lookup_fallback;
  int lookup_timeout_ms;
  size_t approx_capacity_tokens; /* per replica, for `approximate` */
  double min_match_ratio;  /* approximate/precise: follow the longest match only when it covers
                            * at least this share of the prompt, else least-loaded */
  int metrics_interval_ms; /* engine /metrics scrape period for load */
  int request_timeout_ms;
  uint64_t seed;
  bool reset; /* reset engine caches (and wait for the index) before the run */
  int reset_wait_ms;
  const char *reset_path; /* POSTed on every engine to reset (vLLM /reset_prefix_cache) */
  FILE *records;          /* per-request JSON lines, may be NULL */
  bool progress;          /* progress lines on stderr */
} ic_replay_opts_t;

void ic_replay_opts_defaults(ic_replay_opts_t *o);

typedef struct ic_replay_result {
  ic_replay_summary_t summary;
  ic_replay_record_t *recs; /* one per request, in workload order */
  size_t n;
  double wall_s;
} ic_replay_result_t;

/* Replays the workload under one mode (open loop: request i leaves at arrival_i / speedup
 * regardless of completions) and fills res (caller frees with ic_replay_result_free).
 * Returns 0 when the run completed (individual requests may have failed: see res), or a
 * negative code when it could not start (message in err). */
int ic_replay_run(const ic_replay_opts_t *o, const ic_replay_workload_t *w, ic_replay_mode_t mode,
                  ic_replay_result_t *res, char *err, size_t errlen);
void ic_replay_result_free(ic_replay_result_t *res);

#endif
