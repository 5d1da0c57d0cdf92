/* lib/replay runner: open-loop replay of one workload under one routing mode. The router (the
 * calling thread) builds each prompt ahead of time, sleeps until the request's scheduled instant,
 * decides where it goes (asking LookupRoute, the engines' oracle or its own memory), and hands it
 * to the sender thread (fleet.c); completions are recorded as they stream back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/fingerprint.h"
#include "ic/log.h"
#include "ic/rpc.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"
#include "internal.h"

#define LOOKUP_METHOD "/inferencecache.v1alpha1.InferenceCache/LookupRoute"
#define STATE_METHOD "/inferencecache.v1alpha1.InferenceCache/GetCacheState"

void ic_replay_opts_defaults(ic_replay_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->server = "127.0.0.1:9090";
  o->model_id = "sim-model";
  o->tenant_id = "";
  o->hash_scheme = "vllm";
  o->block_size = IC_FP_DEFAULT_BLOCK_SIZE;
  o->speedup = 1.0;
  o->lookup_fallback = IC_REPLAY_LEAST_LOADED;
  o->lookup_timeout_ms = 100;
  o->approx_capacity_tokens = 450000;
  o->min_match_ratio = 0.5;
  o->metrics_interval_ms = 100;
  o->request_timeout_ms = 600000;
  o->seed = 1;
  o->reset = true;
  o->reset_wait_ms = 10000;
  o->reset_path = "/reset_prefix_cache";
}

int ic_replay_engine_parse(const char *s, int index, ic_replay_engine_t *out, char *err,
                           size_t errlen) {
  const char *eq = strchr(s, '=');
  const char *url = eq ? eq + 1 : s;
  if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
    snprintf(err, errlen, "engine \"%s\": want REPLICA_ID=http://HOST:PORT", s);
    return IC_EINVAL;
  }
  if (eq && eq == s) {
    snprintf(err, errlen, "engine \"%s\": empty replica id", s);
    return IC_EINVAL;
  }
  char id[64];
  if (!eq) snprintf(id, sizeof(id), "replica-%d", index);
  out->replica_id = eq ? strndup(s, (size_t)(eq - s)) : strdup(id);
  out->url = strdup(url);
  if (!out->replica_id || !out->url) {
    free(out->replica_id);
    free(out->url);
    return IC_ENOMEM;
  }
  size_t ul = strlen(out->url);
  while (ul > 0 && out->url[ul - 1] == '/')
    out->url[--ul] = '\0'; /* base URL */
  return 0;
}

void ic_replay_result_free(ic_replay_result_t *res) {
  if (!res) return;
  free(res->recs);
  res->recs = NULL;
  res->n = 0;
}

/* --------------------------------------- run state --------------------------------------- */

/* A request whose decision waits for a network answer (lookup, precise): decided on one of
 * DECIDERS threads so a slow answer delays only its own request, never the schedule. */
#define DECIDERS 8
typedef struct job {
  size_t idx;
  int64_t due;
  uint64_t *chain;
  size_t nb, nt;
  char *prompt, *body;
  size_t plen, blen;
  struct job *next;
} job_t;

typedef struct run {
  const ic_replay_opts_t *o;
  const ic_replay_workload_t *w;
  ic_replay_mode_t mode;
  fleet_t *fleet;
  ic_replay_record_t *recs;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t done;
  ic_rpc_channel_t *ch;
  ic_replay_approx_t *approx;
  pthread_mutex_t pick_mu; /* rng and rr: deciders share them */
  uint64_t rng;
  unsigned rr;
  /* decider pool */
  pthread_mutex_t qmu;
  pthread_cond_t qcv;
  job_t *qhead, *qtail;
  bool qclosed;
  pthread_t deciders[DECIDERS];
  int ndeciders;
} run_t;

static void on_done(void *ud, size_t idx) {
  run_t *r = ud;
  (void)idx;
  pthread_mutex_lock(&r->mu);
  r->done++;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int engine_index(const ic_replay_opts_t *o, const char *replica_id) {
  for (int i = 0; i < o->nengines; i++)
    if (!strcmp(o->engines[i].replica_id, replica_id)) return i;
  return -1;
}

/* Load-only choice used by random / round-robin / least-loaded and as every fallback. */
static unsigned next_rr(run_t *r) {
  pthread_mutex_lock(&r->pick_mu);
  unsigned v = r->rr++;
  pthread_mutex_unlock(&r->pick_mu);
  return v;
}

static int pick_simple(run_t *r, ic_replay_mode_t m) {
  int n = r->o->nengines;
  switch (m) {
  case IC_REPLAY_RANDOM: {
    pthread_mutex_lock(&r->pick_mu);
    uint64_t v = rng_next(&r->rng);
    pthread_mutex_unlock(&r->pick_mu);
    return (int)(v % (uint64_t)n);
  }
  case IC_REPLAY_ROUND_ROBIN: return (int)(next_rr(r) % (unsigned)n);
  default: {
    int64_t load[n];
    fleet_loads(r->fleet, load);
    return ic_replay_pick_least(load, n, (int)(next_rr(r) % (unsigned)n));
  }
  }
}

/* lookup: the thin-gateway path. Returns the engine index; fills reason/prediction/latency. */
static int pick_lookup(run_t *r, ic_replay_record_t *rec, const uint64_t *chain, size_t nblocks) {
  const ic_replay_opts_t *o = r->o;
  Inferencecache__V1alpha1__LookupRouteRequest q =
      INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.model_id = (char *)o->model_id;
  q.tenant_id = (char *)o->tenant_id;
  q.hash_scheme = (char *)o->hash_scheme;
  uint8_t *wire = malloc(nblocks * IC_FP_WIRE_LEN + 1);
  ProtobufCBinaryData *bh = malloc((nblocks + 1) * sizeof(*bh));
  int32_t *counts = malloc((nblocks + 1) * sizeof(*counts));
  ic_buf_t req = IC_BUF_INIT, resp = IC_BUF_INIT;
  int pick = -1;
  if (!wire || !bh || !counts) goto out;
  for (size_t k = 0; k < nblocks; k++) {
    ic_fp_to_wire(chain[k], wire + k * IC_FP_WIRE_LEN);
    bh[k].data = wire + k * IC_FP_WIRE_LEN;
    bh[k].len = IC_FP_WIRE_LEN;
    counts[k] = o->block_size;
  }
  q.n_block_hashes = q.n_block_token_counts = nblocks;
  q.block_hashes = bh;
  q.block_token_counts = counts;
  size_t len = inferencecache__v1alpha1__lookup_route_request__get_packed_size(&q);
  if (ic_buf_reserve(&req, len)) goto out;
  inferencecache__v1alpha1__lookup_route_request__pack(&q, (uint8_t *)req.data);
  int status = -1;
  int64_t t = ic_clock_monotonic_ns();
  int rc = ic_rpc_unary(r->ch, LOOKUP_METHOD, (const uint8_t *)req.data, len, o->lookup_timeout_ms,
                        &resp, &status, NULL);
  rec->lookup_us = (ic_clock_monotonic_ns() - t) / 1000;
  if (rc != 0 || status != IC_RPC_OK) { /* fail open: the gateway routes without a hint */
    snprintf(rec->reason, sizeof(rec->reason), "%s",
             status == IC_RPC_DEADLINE_EXCEEDED || rc == IC_ETIMEOUT ? "TIMEOUT" : "error");
    goto out;
  }
  Inferencecache__V1alpha1__LookupRouteResponse *a =
      inferencecache__v1alpha1__lookup_route_response__unpack(NULL, resp.len,
                                                              (const uint8_t *)resp.data);
  if (!a) {
    snprintf(rec->reason, sizeof(rec->reason), "error");
    goto out;
  }
  snprintf(rec->reason, sizeof(rec->reason), "%s", a->reason_code ? a->reason_code : "");
  bool usable = !strcmp(rec->reason, "PREFIX_MATCH") || !strcmp(rec->reason, "TENANT_HOT") ||
                !strcmp(rec->reason, "AFFINITY_HINT");
  for (size_t i = 0; usable && i < a->n_replica_scores && pick < 0; i++) {
    pick = engine_index(o, a->replica_scores[i]->replica_id);
    if (pick >= 0 && a->replica_scores[i]->matched_tokens > 0)
      rec->predicted_tokens = a->replica_scores[i]->matched_tokens;
  }
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(a, NULL);
out:
  free(wire);
  free(bh);
  free(counts);
  ic_buf_free(&req);
  ic_buf_free(&resp);
  return pick;
}

static int decide(run_t *r, ic_replay_record_t *rec, const uint64_t *chain, size_t nblocks,
                  size_t ntokens, const char *prompt_json, size_t prompt_len,
                  fleet_oracle_t *oracle) {
  const ic_replay_opts_t *o = r->o;
  int n = o->nengines;
  switch (r->mode) {
  case IC_REPLAY_RANDOM:
  case IC_REPLAY_ROUND_ROBIN:
  case IC_REPLAY_LEAST_LOADED: return pick_simple(r, r->mode);
  case IC_REPLAY_LOOKUP: {
    int p = pick_lookup(r, rec, chain, nblocks);
    return p >= 0 ? p : pick_simple(r, o->lookup_fallback);
  }
  case IC_REPLAY_APPROXIMATE:
  case IC_REPLAY_PRECISE: {
    int64_t match[n], load[n];
    if (r->mode == IC_REPLAY_PRECISE) {
      if (!oracle || fleet_oracle_ask(oracle, prompt_json, prompt_len, match))
        for (int i = 0; i < n; i++)
          match[i] = -1;
    } else {
      for (int i = 0; i < n; i++)
        match[i] = (int64_t)ic_replay_approx_match(r->approx, i, chain, nblocks) * o->block_size;
    }
    fleet_loads(r->fleet, load);
    /* Longest match wins only when it is worth more than balance: a prefix every replica has
     * (a system prompt) or a sliver of the prompt would otherwise pile every request onto the
     * first warm replica (the cache_threshold rule of SGLang's router). */
    int p = ic_replay_pick_best_match(match, load, n, (int)(next_rr(r) % (unsigned)n));
    if (p >= 0 && (double)match[p] < o->min_match_ratio * (double)ntokens) p = -1;
    if (p >= 0) {
      rec->predicted_tokens = match[p];
      snprintf(rec->reason, sizeof(rec->reason),
               r->mode == IC_REPLAY_PRECISE ? "oracle" : "memory");
      return p;
    }
    snprintf(rec->reason, sizeof(rec->reason), "fallback");
    return ic_replay_pick_least(load, n, (int)(next_rr(r) % (unsigned)n));
  }
  default: return 0;
  }
}

static void job_free(job_t *j) {
  if (!j) return;
  free(j->chain);
  free(j->prompt);
  free(j->body);
  free(j);
}

static void *decider_main(void *arg) {
  run_t *r = arg;
  fleet_oracle_t *oracle = r->mode == IC_REPLAY_PRECISE ? fleet_oracle_new(r->fleet) : NULL;
  for (;;) {
    pthread_mutex_lock(&r->qmu);
    while (!r->qhead && !r->qclosed)
      pthread_cond_wait(&r->qcv, &r->qmu);
    job_t *j = r->qhead;
    if (j) {
      r->qhead = j->next;
      if (!r->qhead) r->qtail = NULL;
    }
    pthread_mutex_unlock(&r->qmu);
    if (!j) break;
    ic_replay_record_t *rec = &r->recs[j->idx];
    int pick = decide(r, rec, j->chain, j->nb, j->nt, j->prompt, j->plen, oracle);
    fleet_send(r->fleet, j->idx, pick, j->body, j->blen, j->due);
    j->body = NULL; /* the sender owns it now */
    job_free(j);
  }
  fleet_oracle_free(oracle);
  return NULL;
}

static void decider_push(run_t *r, job_t *j) {
  pthread_mutex_lock(&r->qmu);
  if (r->qtail)
    r->qtail->next = j;
  else
    r->qhead = j;
  r->qtail = j;
  pthread_cond_signal(&r->qcv);
  pthread_mutex_unlock(&r->qmu);
}

static void deciders_stop(run_t *r) {
  pthread_mutex_lock(&r->qmu);
  r->qclosed = true;
  pthread_cond_broadcast(&r->qcv);
  pthread_mutex_unlock(&r->qmu);
  for (int i = 0; i < r->ndeciders; i++)
    pthread_join(r->deciders[i], NULL);
  r->ndeciders = 0;
}

/* ------------------------------------- request bodies ------------------------------------- */

static char *u32_dec(char *p, uint32_t v) {
  char tmp[10];
  int k = 0;
  do
    tmp[k++] = (char)('0' + v % 10);
  while ((v /= 10));
  while (k)
    *p++ = tmp[--k];
  return p;
}

/* Prompt as a JSON array into b (reset first). */
static int prompt_array(ic_buf_t *b, const uint32_t *tok, size_t n) {
  ic_buf_reset(b);
  if (ic_buf_reserve(b, n * 11 + 2)) return IC_ENOMEM;
  char *p = b->data;
  *p++ = '[';
  for (size_t i = 0; i < n; i++) {
    if (i) *p++ = ',';
    p = u32_dec(p, tok[i]);
  }
  *p++ = ']';
  b->len = (size_t)(p - b->data);
  b->data[b->len] = '\0';
  return 0;
}

static char *completion_body(const ic_replay_opts_t *o, const ic_buf_t *prompt, uint32_t max_tokens,
                             size_t *len) {
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append_str(&b, "{\"model\":");
  ic_buf_append_json_str(&b, o->model_id, strlen(o->model_id));
  ic_buf_append_str(&b, ",\"prompt\":");
  ic_buf_append(&b, prompt->data, prompt->len);
  if (ic_buf_appendf(&b,
                     ",\"max_tokens\":%u,\"stream\":true,\"stream_options\":{\"include_usage\":"
                     "true},\"ignore_eos\":true}",
                     max_tokens)) {
    ic_buf_free(&b);
    return NULL;
  }
  return ic_buf_detach(&b, len);
}

/* ------------------------------------- index reset ------------------------------------- */

/* After the engines cleared their caches, waits until the server's index for this model and
 * tenant is empty (the subscribers forward AllBlocksCleared), so a lookup run never starts
 * with the previous run's hints. Returns the prefixes still indexed (0 = clean). */
static int64_t wait_index_empty(run_t *r) {
  const ic_replay_opts_t *o = r->o;
  Inferencecache__V1alpha1__GetCacheStateRequest q =
      INFERENCECACHE__V1ALPHA1__GET_CACHE_STATE_REQUEST__INIT;
  q.model_id = (char *)o->model_id;
  q.tenant_id = (char *)o->tenant_id;
  uint8_t buf[512];
  size_t len = inferencecache__v1alpha1__get_cache_state_request__get_packed_size(&q);
  if (len > sizeof(buf)) return -1;
  inferencecache__v1alpha1__get_cache_state_request__pack(&q, buf);
  int64_t deadline = ic_clock_monotonic_ns() + (int64_t)o->reset_wait_ms * 1000000;
  int64_t left = -1;
  for (;;) {
    ic_buf_t resp = IC_BUF_INIT;
    int status = -1;
    if (ic_rpc_unary(r->ch, STATE_METHOD, buf, len, 2000, &resp, &status, NULL) == 0 &&
        status == IC_RPC_OK) {
      Inferencecache__V1alpha1__GetCacheStateResponse *a =
          inferencecache__v1alpha1__get_cache_state_response__unpack(NULL, resp.len,
                                                                     (const uint8_t *)resp.data);
      if (a) {
        left = a->summary ? a->summary->total_prefixes : 0;
        inferencecache__v1alpha1__get_cache_state_response__free_unpacked(a, NULL);
      }
    }
    ic_buf_free(&resp);
    if (left == 0 || ic_clock_monotonic_ns() > deadline) return left;
    struct timespec ts = {0, 50 * 1000000};
    nanosleep(&ts, NULL);
  }
}

/* ------------------------------------------ run ------------------------------------------ */

static void sleep_until(int64_t mono_ns) {
  struct timespec ts = {(time_t)(mono_ns / 1000000000), (long)(mono_ns % 1000000000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
  }
}

static int check_opts(const ic_replay_opts_t *o, const ic_replay_workload_t *w, char *err,
                      size_t errlen) {
  if (o->nengines <= 0) {
    snprintf(err, errlen, "no engines given");
    return IC_EINVAL;
  }
  if (!w || w->n == 0) {
    snprintf(err, errlen, "the workload has no requests");
    return IC_EINVAL;
  }
  if (!(o->speedup > 0) || o->block_size <= 0 || o->metrics_interval_ms <= 0 ||
      !(o->min_match_ratio >= 0 && o->min_match_ratio <= 1)) {
    snprintf(err, errlen,
             "speedup, block size and metrics interval must be positive, the "
             "minimum match ratio in [0, 1]");
    return IC_EINVAL;
  }
  if (o->lookup_fallback == IC_REPLAY_LOOKUP || o->lookup_fallback == IC_REPLAY_PRECISE ||
      o->lookup_fallback == IC_REPLAY_APPROXIMATE) {
    snprintf(err, errlen, "the lookup fallback must be random, round-robin or least-loaded");
    return IC_EINVAL;
  }
  return 0;
}

int ic_replay_run(const ic_replay_opts_t *o, const ic_replay_workload_t *w, ic_replay_mode_t mode,
                  ic_replay_result_t *res, char *err, size_t errlen) {
  memset(res, 0, sizeof(*res));
  int rc = check_opts(o, w, err, errlen);
  if (rc) return rc;
  run_t r = {.o = o, .w = w, .mode = mode, .rng = o->seed};
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  pthread_mutex_init(&r.pick_mu, NULL);
  pthread_mutex_init(&r.qmu, NULL);
  pthread_cond_init(&r.qcv, NULL);
  bool pooled = mode == IC_REPLAY_LOOKUP || mode == IC_REPLAY_PRECISE;
  r.recs = calloc(w->n, sizeof(*r.recs));
  uint32_t *tok = NULL;
  uint64_t *chain = NULL;
  ic_buf_t prompt = IC_BUF_INIT;
  size_t maxlen = 0;
  for (size_t i = 0; i < w->n; i++)
    if (w->reqs[i].input_len > maxlen) maxlen = w->reqs[i].input_len;
  tok = malloc((maxlen + 1) * sizeof(*tok));
  chain = malloc((maxlen / (size_t)o->block_size + 1) * sizeof(*chain));
  rc = IC_ENOMEM;
  if (!r.recs || !tok || !chain) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < w->n; i++) {
    r.recs[i] = (ic_replay_record_t){.index = i,
                                     .replica = -1,
                                     .lookup_us = -1,
                                     .predicted_tokens = -1,
                                     .burst = w->reqs[i].burst,
                                     .burst_prefix = w->reqs[i].burst_prefix};
  }
  bool need_server = mode == IC_REPLAY_LOOKUP;
  if (need_server || o->reset) {
    r.ch = ic_rpc_channel_new(o->server, NULL);
    if (!r.ch) {
      snprintf(err, errlen, "cannot create a gRPC channel to %s", o->server);
      goto out;
    }
    if (need_server && ic_rpc_channel_wait_ready(r.ch, 10000) != 0) {
      snprintf(err, errlen, "inferencecache server %s not reachable (lookup mode needs it)",
               o->server);
      rc = IC_EUNAVAIL;
      goto out;
    }
  }
  if (mode == IC_REPLAY_APPROXIMATE) {
    size_t cap = o->approx_capacity_tokens / (size_t)o->block_size;
    r.approx = ic_replay_approx_new(o->nengines, cap ? cap : 1);
    if (!r.approx) {
      snprintf(err, errlen, "out of memory for the approximate router's memory");
      goto out;
    }
  }
  r.fleet = fleet_new(o, r.recs, on_done, &r, err, errlen);
  if (!r.fleet) goto out;
  if (o->reset) {
    char rerr[256] = "";
    if (fleet_reset(r.fleet, rerr, sizeof(rerr)) > 0)
      ic_log_warn("replay_reset_failed", IC_LS("error", rerr),
                  IC_LS("effect", "the run starts with whatever the engines cached"));
    if (ic_rpc_channel_wait_ready(r.ch, need_server ? 10000 : 500) == 0) {
      int64_t left = wait_index_empty(&r);
      if (left != 0)
        ic_log_warn("replay_index_not_empty", IC_LI("prefixes", left),
                    IC_LS("effect", "lookups may see entries from before the reset"));
    }
  }
  if (mode == IC_REPLAY_LEAST_LOADED || mode == IC_REPLAY_PRECISE ||
      mode == IC_REPLAY_APPROXIMATE ||
      (mode == IC_REPLAY_LOOKUP && o->lookup_fallback == IC_REPLAY_LEAST_LOADED))
    fleet_start_poller(r.fleet);
  for (int i = 0; pooled && i < DECIDERS; i++)
    if (pthread_create(&r.deciders[r.ndeciders], NULL, decider_main, &r) == 0) r.ndeciders++;
  if (pooled && r.ndeciders == 0) {
    snprintf(err, errlen, "cannot start decision threads");
    goto out;
  }

  /* A short lead so the first requests are not late by construction. */
  int64_t t0 = ic_clock_monotonic_ns() + 200 * 1000000LL;
  int64_t last_progress = t0;
  for (size_t i = 0; i < w->n; i++) {
    const ic_replay_req_t *q = &w->reqs[i];
    size_t nt = ic_replay_req_tokens(w, i, tok, maxlen);
    size_t nb = 0;
    if (mode == IC_REPLAY_LOOKUP || mode == IC_REPLAY_APPROXIMATE)
      nb = ic_fp_prefix_hashes(tok, nt, o->block_size, NULL, chain,
                               maxlen / (size_t)o->block_size + 1, NULL);
    if (prompt_array(&prompt, tok, nt)) {
      snprintf(err, errlen, "out of memory");
      goto out;
    }
    size_t blen = 0;
    char *body = completion_body(o, &prompt, q->output_len, &blen);
    if (!body) {
      snprintf(err, errlen, "out of memory");
      goto out;
    }
    int64_t due = t0 + (int64_t)((double)q->arrival_us * 1000.0 / o->speedup);
    job_t *j = NULL;
    if (pooled) { /* copies made before the deadline, so the hand-over at `due` is instant */
      j = calloc(1, sizeof(*j));
      if (j) {
        *j = (job_t){.idx = i, .due = due, .nb = nb, .nt = nt, .body = body, .blen = blen};
        j->chain = malloc((nb ? nb : 1) * sizeof(*chain));
        j->prompt = malloc(prompt.len + 1);
      }
      if (!j || !j->chain || !j->prompt) {
        if (!j) free(body);
        job_free(j);
        snprintf(err, errlen, "out of memory");
        goto out;
      }
      memcpy(j->chain, chain, nb * sizeof(*chain));
      memcpy(j->prompt, prompt.data, prompt.len + 1);
      j->plen = prompt.len;
    }
    sleep_until(due);
    if (j) {
      decider_push(&r, j);
    } else {
      ic_replay_record_t *rec = &r.recs[i];
      int pick = decide(&r, rec, chain, nb, nt, prompt.data, prompt.len, NULL);
      if (r.approx) ic_replay_approx_record(r.approx, pick, chain, nb);
      fleet_send(r.fleet, i, pick, body, blen, due);
    }
    int64_t now = ic_clock_monotonic_ns();
    if (o->progress && now - last_progress > 5000000000LL) {
      last_progress = now;
      pthread_mutex_lock(&r.mu);
      size_t d = r.done;
      pthread_mutex_unlock(&r.mu);
      fprintf(stderr, "replay %s/%s: sent %zu/%zu, finished %zu\n", w->name,
              ic_replay_mode_name(mode), i + 1, w->n, d);
    }
  }
  deciders_stop(&r); /* every request has been handed to the sender after this */
  /* Wait for the stragglers (bounded by the per-request timeout). */
  int64_t limit = ic_clock_realtime_ns() +
                  (int64_t)(o->request_timeout_ms > 0 ? o->request_timeout_ms : 600000) * 1000000 +
                  5000000000LL;
  struct timespec abs = {(time_t)(limit / 1000000000), (long)(limit % 1000000000)};
  pthread_mutex_lock(&r.mu);
  while (r.done < w->n)
    if (pthread_cond_timedwait(&r.cv, &r.mu, &abs) != 0) break;
  pthread_mutex_unlock(&r.mu);
  res->wall_s = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
  fleet_free(r.fleet); /* aborts whatever is still running, marking it failed */
  r.fleet = NULL;
  for (size_t i = 0; i < w->n && o->records; i++)
    ic_replay_write_record_json(
        o->records, w->name, ic_replay_mode_name(mode),
        r.recs[i].replica >= 0 ? o->engines[r.recs[i].replica].replica_id : "", &r.recs[i]);
  ic_replay_summarize(r.recs, w->n, o->nengines, o->block_size, w->name, ic_replay_mode_name(mode),
                      &res->summary);
  res->recs = r.recs;
  res->n = w->n;
  r.recs = NULL;
  rc = 0;
out:
  deciders_stop(&r);
  for (job_t *j = r.qhead; j;) {
    job_t *next = j->next;
    job_free(j);
    j = next;
  }
  fleet_free(r.fleet);
  ic_replay_approx_free(r.approx);
  if (r.ch) ic_rpc_channel_free(r.ch);
  free(r.recs);
  free(tok);
  free(chain);
  ic_buf_free(&prompt);
  pthread_mutex_destroy(&r.mu);
  pthread_cond_destroy(&r.cv);
  pthread_mutex_destroy(&r.pick_mu);
  pthread_mutex_destroy(&r.qmu);
  pthread_cond_destroy(&r.qcv);
  return rc;
}
