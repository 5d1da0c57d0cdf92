/* Engine simulator (lib/enginesim): a vLLM replica in simulated time — paged KV cache with
 * prefix caching, continuous-batching scheduler, step-time model, KV-event encoding/publishing,
 * and the OpenAI-compatible HTTP surface. `fake-engine --http-bind-address=...` runs it.
 *
 * Layers (one file each): kvcache (blocks, chained hashes, LRU, CPU tier, events), timemodel
 * (step cost), scheduler (waiting/running queues, chunked prefill, preemption; pure, no threads),
 * events (msgpack encodings engines use), publisher (ZMQ PUB + ROUTER replay ring), tokenizer
 * (deterministic stand-in, chat template), request (JSON body -> request), engine (the thread
 * that steps the scheduler in simulated time), api (HTTP routes). Design: docs/enginesim.md. */
#ifndef IC_ENGINESIM_H
#define IC_ENGINESIM_H
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- KV events (what the cache reports; encoded by events.c) --------------------------- */

enum { IC_ESIM_EV_STORED = 1, IC_ESIM_EV_REMOVED, IC_ESIM_EV_CLEARED };
enum { IC_ESIM_GPU = 0, IC_ESIM_CPU = 1 }; /* medium "GPU" / "CPU" */

typedef struct ic_esim_event {
  int type;
  int medium;
  const uint64_t *hashes; /* STORED/REMOVED: block hashes, parent first */
  size_t nhashes;
  bool has_parent; /* STORED: parent_block_hash present (not the first block of a chain) */
  uint64_t parent;
  const uint32_t *tokens; /* STORED: nhashes * block_size token ids */
  size_t ntokens;
  int block_size;
} ic_esim_event_t;

typedef void (*ic_esim_event_fn)(void *ud, const ic_esim_event_t *ev);

/* ---- paged KV cache (kvcache.c) ------------------------------------------------------- */

typedef struct ic_esim_kv ic_esim_kv_t;

typedef struct ic_esim_kv_config {
  int block_size;     /* tokens per block (vLLM default 16) */
  int64_t gpu_blocks; /* GPU pool size */
  int64_t cpu_blocks; /* CPU offload tier size; 0 = no offload */
  uint64_t hash_seed; /* seed of the chained block hash (vLLM's NONE_HASH role) */
} ic_esim_kv_config_t;

/* A request's block table: block ids in order; the first `ncached` are committed to the cache
 * (hashed), `hashes[i]` is block i's hash for i < ncached. */
typedef struct ic_esim_seq {
  int32_t *blocks;
  uint64_t *hashes;
  size_t nblocks, cap, ncached;
} ic_esim_seq_t;

typedef struct ic_esim_kv_stats {
  int64_t gpu_blocks, gpu_used; /* used = pinned by a running request */
  int64_t gpu_cached;           /* blocks holding a cached hash (pinned or free) */
  int64_t cpu_blocks, cpu_used;
  uint64_t evictions, cpu_evictions;
} ic_esim_kv_stats_t;

/* Returns NULL on bad config or allocation failure. `fn` receives every event synchronously. */
ic_esim_kv_t *ic_esim_kv_new(const ic_esim_kv_config_t *cfg, ic_esim_event_fn fn, void *ud);
void ic_esim_kv_free(ic_esim_kv_t *kv);
int ic_esim_kv_block_size(const ic_esim_kv_t *kv);
/* vLLM-style chained hash of one full block: f(seed, parent hash or none, its token ids). */
uint64_t ic_esim_kv_hash(const ic_esim_kv_t *kv, bool has_parent, uint64_t parent,
                         const uint32_t *tokens);
/* Prefix lookup for a new (empty) seq: pins the GPU blocks that hold the leading full blocks of
 * `tokens` (at most ntok-1 tokens, so one token is always computed, as vLLM does), then — with
 * offload — allocates GPU blocks for the chain's continuation found in the CPU tier (they count
 * as computed: loaded, not recomputed). Sets *gpu_hit and *cpu_hit in tokens. Never fails:
 * CPU hits that cannot get a GPU block are dropped. */
void ic_esim_kv_match(ic_esim_kv_t *kv, ic_esim_seq_t *seq, const uint32_t *tokens, int64_t ntok,
                      int64_t *gpu_hit, int64_t *cpu_hit);
/* Grows seq to hold `ntokens` tokens, evicting least-recently-freed cached blocks (BlockRemoved)
 * as needed. Returns 0, or IC_ERANGE (nothing allocated) when free blocks are too few. */
int ic_esim_kv_allocate(ic_esim_kv_t *kv, ic_esim_seq_t *seq, int64_t ntokens);
/* Caches the full blocks among the first `computed` tokens that are not cached yet
 * (BlockStored GPU, and CPU with offload). A block whose hash is already cached elsewhere stays
 * private (no event), as in vLLM. */
void ic_esim_kv_commit(ic_esim_kv_t *kv, ic_esim_seq_t *seq, const uint32_t *tokens,
                       int64_t computed);
/* Unpins seq's blocks (last block first, so a chain's tail is evicted before its head) and
 * empties seq (its arrays are kept for reuse). */
void ic_esim_kv_release(ic_esim_kv_t *kv, ic_esim_seq_t *seq);
void ic_esim_seq_free(ic_esim_seq_t *seq);
/* Drops every cached hash (AllBlocksCleared). Like vLLM, refuses (false) while any block is
 * pinned by a running request. */
bool ic_esim_kv_reset(ic_esim_kv_t *kv);
/* Read-only oracle: leading tokens (full blocks) cached in GPU, and how many more the CPU tier
 * continues the chain with. Does not touch LRU order. */
void ic_esim_kv_prefix_match(const ic_esim_kv_t *kv, const uint32_t *tokens, int64_t ntok,
                             int64_t *gpu_tokens, int64_t *cpu_tokens);
int64_t ic_esim_kv_free_blocks(const ic_esim_kv_t *kv);
void ic_esim_kv_stats(const ic_esim_kv_t *kv, ic_esim_kv_stats_t *out);

/* ---- step-time model (timemodel.c) ---------------------------------------------------- */

typedef struct ic_esim_time_config {
  double step_base_ms;           /* fixed cost of one forward pass (weights read, launch) */
  double prefill_us_per_token;   /* linear (GEMM) cost per computed prompt token */
  double attn_ns_per_token_pair; /* prefill attention: per (new token x context token) */
  double decode_us_per_seq;      /* per decoding sequence in the batch */
  double kv_read_ns_per_token;   /* decode attention: per context token read per step */
  double cpu_load_us_per_token;  /* loading offloaded KV from the CPU tier */
} ic_esim_time_config_t;

typedef struct ic_esim_batch {
  int64_t prefill_tokens;  /* tokens computed for prompts (chunks) this step */
  double prefill_pairs;    /* sum over chunks of chunk * (context before + (chunk+1)/2) */
  int64_t decode_seqs;     /* sequences producing their next token */
  int64_t decode_context;  /* sum of their context lengths */
  int64_t cpu_load_tokens; /* tokens loaded from the CPU tier */
} ic_esim_batch_t;

/* Defaults: Llama-3.1-8B, bf16, one H100 80GB (derivation in docs/enginesim.md). */
void ic_esim_time_defaults(ic_esim_time_config_t *cfg);
/* Simulated duration of one step in ms (0 for an empty batch). */
double ic_esim_time_step_ms(const ic_esim_time_config_t *cfg, const ic_esim_batch_t *b);

/* ---- scheduler (scheduler.c): vLLM v1's loop, pure and single-threaded ------------------ */

enum { IC_ESIM_WAITING = 0, IC_ESIM_RUNNING, IC_ESIM_FINISHED };

typedef struct ic_esim_req {
  uint64_t id;
  uint32_t *tokens; /* prompt, then generated tokens */
  int64_t ntokens, cap;
  int64_t prompt_len, max_tokens, output_len;
  int64_t computed;          /* tokens whose KV exists */
  int64_t cached_tokens;     /* prefix-cache hit at first schedule (GPU + CPU) */
  int64_t cpu_cached_tokens; /* of which loaded from the CPU tier */
  int64_t computed_prefill;  /* prompt tokens actually computed (incl. recompute) */
  int64_t preemptions;
  double arrival_ms, first_sched_ms, first_token_ms, finish_ms; /* simulated; -1 = not yet */
  int state;
  bool cancelled; /* abort at the next step */
  ic_esim_seq_t seq;
  int64_t step_new; /* tokens scheduled in the current step */
  struct ic_esim_req *next, *prev;
  void *ud; /* the engine's */
} ic_esim_req_t;

typedef struct ic_esim_sched_config {
  int64_t max_num_seqs;
  int64_t max_num_batched_tokens;
  int64_t max_model_len;
} ic_esim_sched_config_t;

typedef struct ic_esim_sched ic_esim_sched_t;

/* What a step produced, per request, in order: a token (first or not), and finished. */
typedef void (*ic_esim_token_fn)(void *ud, ic_esim_req_t *r, uint32_t token, bool first,
                                 bool finished);

/* A new request (tokens copied) in WAITING; NULL on allocation failure. */
ic_esim_req_t *ic_esim_req_new(uint64_t id, const uint32_t *prompt, int64_t n, int64_t max_tokens,
                               double arrival_ms);
void ic_esim_req_free(ic_esim_req_t *r);

ic_esim_sched_t *ic_esim_sched_new(const ic_esim_sched_config_t *cfg,
                                   const ic_esim_time_config_t *tcfg, ic_esim_kv_t *kv);
void ic_esim_sched_free(ic_esim_sched_t *s); /* does not free queued requests */
/* Queues r (FCFS by arrival). The scheduler borrows r until it reports it finished (or
 * aborted). */
void ic_esim_sched_add(ic_esim_sched_t *s, ic_esim_req_t *r);
/* One engine step at simulated time `now_ms`: drops cancelled requests (abort_fn), schedules a
 * batch (running first, then waiting requests that arrived by now), prices it, and applies it
 * as of now + duration (KV commit, one token for every sequence that caught up, finishes).
 * Returns the duration in ms, 0 when there was nothing to run. */
double ic_esim_sched_step(ic_esim_sched_t *s, double now_ms, ic_esim_token_fn token_fn,
                          void (*abort_fn)(void *ud, ic_esim_req_t *r), void *ud);
size_t ic_esim_sched_running(const ic_esim_sched_t *s);
size_t ic_esim_sched_waiting(const ic_esim_sched_t *s);
/* Earliest arrival among waiting requests (or -1 when none): lets the engine sleep until then. */
double ic_esim_sched_next_arrival(const ic_esim_sched_t *s);
typedef struct ic_esim_sched_stats {
  uint64_t prefix_queries, prefix_hits; /* tokens, as vLLM counts them */
  uint64_t prompt_tokens, generation_tokens, preemptions, steps;
} ic_esim_sched_stats_t;
void ic_esim_sched_stats(const ic_esim_sched_t *s, ic_esim_sched_stats_t *out);

/* ---- event encodings (events.c): the wire forms the subscriber reads -------------------- */

enum { IC_ESIM_ENC_VLLM_ARRAY = 0, IC_ESIM_ENC_VLLM_MAP, IC_ESIM_ENC_SGLANG };
/* "vllm-array" | "vllm-map" | "sglang" -> enum; -1 if unknown. */
int ic_esim_encoding_parse(const char *s);
const char *ic_esim_encoding_name(int enc);

/* Hashes are packed as the engine would: uint64 (vllm-map), int64 (vllm-array, sglang). tokens
 * NULL packs token_ids nil. medium/lora_name NULL = nil (or omitted in array forms, as msgspec
 * omits trailing defaults). lora_id < 0 = nil. */
void ic_esim_pack_stored(msgpack_packer *pk, int enc, const uint64_t *hashes, size_t n,
                         const uint64_t *parent, const uint32_t *tokens, size_t ntok,
                         int64_t block_size, int64_t lora_id, const char *medium,
                         const char *lora_name);
void ic_esim_pack_removed(msgpack_packer *pk, int enc, const uint64_t *hashes, size_t n,
                          const char *medium);
void ic_esim_pack_cleared(msgpack_packer *pk, int enc);
/* Envelope around `nevents` events: ts (seconds), optional data_parallel_rank (< 0 = none;
 * SGLang always sends the slot). Pack the events between begin and end. */
void ic_esim_pack_envelope_begin(msgpack_packer *pk, int enc, double ts, int64_t dp_rank,
                                 size_t nevents);
void ic_esim_pack_envelope_end(msgpack_packer *pk, int enc, int64_t dp_rank);

/* ---- publisher (publisher.c): ZMQ PUB [topic, seq 8B BE, payload] + ROUTER replay ------- */

typedef struct ic_esim_pub ic_esim_pub_t;
/* Binds PUB (and ROUTER when replay_bind is set). ring = replay buffer in messages. NULL with
 * a reason in err on failure. */
ic_esim_pub_t *ic_esim_pub_new(const char *bind, const char *replay_bind, const char *topic,
                               size_t ring, char *err, size_t errlen);
/* Single-threaded use (republish mode): publishes with the next seq (skip = keep it only for
 * replay: a lost message); serves replay requests for up to timeout_ms. */
int ic_esim_pub_send(ic_esim_pub_t *p, const void *payload, size_t len, bool skip);
void ic_esim_pub_serve(ic_esim_pub_t *p, long timeout_ms);
/* Threaded use (simulator): a thread owns the sockets; post() hands it a payload from ONE
 * producer thread (copied). */
int ic_esim_pub_start(ic_esim_pub_t *p);
int ic_esim_pub_post(ic_esim_pub_t *p, const void *payload, size_t len);
uint64_t ic_esim_pub_published(const ic_esim_pub_t *p);
void ic_esim_pub_free(ic_esim_pub_t *p); /* stops the thread */

/* ---- tokenizer stand-in (tokenizer.c) --------------------------------------------------- */

/* Deterministic text -> token ids (docs/enginesim.md): pieces of at most 4 bytes cut at word
 * boundaries, each hashed to [1000, 129000). Equal text prefixes give equal token prefixes up to
 * the last shared word. Returns the count written (<= cap) and the full count in *total. */
size_t ic_esim_tokenize(const char *text, size_t len, uint32_t *out, size_t cap, size_t *total);

/* ---- request bodies (request.c) --------------------------------------------------------- */

typedef struct ic_esim_body {
  uint32_t *prompt; /* malloc'd */
  size_t nprompt;
  int64_t max_tokens; /* default 16 */
  bool stream, include_usage, ignore_eos, chat;
  char model[256]; /* "" = not given */
} ic_esim_body_t;
/* Chat bodies are rendered with a fixed template before tokenizing: "<|role|>\n" content "\n"
 * per message (content parts of type "text" concatenated), then "<|assistant|>\n". */

/* Parses a /v1/completions (chat=false) or /v1/chat/completions body. Returns 0, or IC_EINVAL
 * with a message for the client in err. max_prompt caps the prompt length. */
int ic_esim_body_parse(const char *json, size_t len, bool chat, size_t max_prompt,
                       ic_esim_body_t *out, char *err, size_t errlen);
void ic_esim_body_free(ic_esim_body_t *b);
/* {"prompt":[ids]} for /sim/prefix_match (also accepts a text prompt). */
int ic_esim_prompt_parse(const char *json, size_t len, size_t max_prompt, uint32_t **out, size_t *n,
                         char *err, size_t errlen);

/* ---- engine (engine.c): the scheduler's thread in simulated time ------------------------ */

typedef struct ic_esim_config {
  ic_esim_kv_config_t kv;
  ic_esim_sched_config_t sched;
  ic_esim_time_config_t time;
  double speedup; /* simulated ms per wall ms */
  int encoding;
  int64_t dp_rank;
  const char *model;
  int stream_interval; /* tokens per SSE chunk after the first */
} ic_esim_config_t;

void ic_esim_config_defaults(ic_esim_config_t *cfg);

typedef struct ic_esim_engine ic_esim_engine_t;

/* Timing of a finished request (simulated ms since engine start). */
typedef struct ic_esim_timing {
  double arrival_ms, first_token_ms, finish_ms, queue_ms;
  int64_t prompt_tokens, completion_tokens, cached_tokens, cached_tokens_cpu;
  int64_t computed_prefill_tokens;
} ic_esim_timing_t;

/* Output callbacks, called on the engine thread outside its lock. tokens() gets the tokens
 * produced since the last call (first = includes the first token); done() once at the end
 * (aborted = the engine gave up, e.g. shutdown). Returning false from tokens() cancels the
 * request (client gone); done() still follows. */
typedef struct ic_esim_sink {
  bool (*tokens)(void *ud, const uint32_t *toks, size_t n, bool first);
  void (*done)(void *ud, const ic_esim_timing_t *t, bool aborted);
  void *ud;
} ic_esim_sink_t;

/* pub may be NULL (no events). The engine owns neither. */
ic_esim_engine_t *ic_esim_engine_new(const ic_esim_config_t *cfg, ic_esim_pub_t *pub);
int ic_esim_engine_start(ic_esim_engine_t *e);
/* Queues a request at the current simulated time. Returns 0 or IC_EINVAL (too long for the
 * model / the cache) / IC_ESTATE (stopping). On error the sink is not called. */
int ic_esim_engine_submit(ic_esim_engine_t *e, const uint32_t *prompt, size_t n, int64_t max_tokens,
                          const ic_esim_sink_t *sink, char *err, size_t errlen);
/* Simulated ms now. */
double ic_esim_engine_now_ms(ic_esim_engine_t *e);
void ic_esim_engine_prefix_match(ic_esim_engine_t *e, const uint32_t *t, size_t n, int64_t *gpu,
                                 int64_t *cpu);
/* Asks the engine thread to reset the prefix cache; false while requests hold blocks. */
bool ic_esim_engine_reset_cache(ic_esim_engine_t *e);
/* Renders /metrics (Prometheus text) into a malloc'd string. */
char *ic_esim_engine_metrics(ic_esim_engine_t *e, size_t *len);
const ic_esim_config_t *ic_esim_engine_config(const ic_esim_engine_t *e);
/* Aborts everything in flight (sinks get done(aborted)) and joins the thread. */
void ic_esim_engine_stop(ic_esim_engine_t *e);
void ic_esim_engine_free(ic_esim_engine_t *e);

/* ---- HTTP surface (api.c) --------------------------------------------------------------- */

struct ic_http_server;
/* Adds the OpenAI-compatible, metrics, health and /sim routes for engine e. */
int ic_esim_api_register(struct ic_http_server *srv, ic_esim_engine_t *e);

#endif
