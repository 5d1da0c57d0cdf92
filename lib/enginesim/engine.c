/* The simulated engine: one thread steps the scheduler in simulated time (step durations from
 * the time model, slept off as duration / speedup of wall time), delivers each step's tokens to
 * the requests' sinks, and publishes the step's KV events as one batch — the way vLLM's engine
 * core loop does. HTTP threads only queue requests and read state under the lock. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/clock.h"
#include "ic/enginesim.h"
#include "ic/err.h"
#include "ic/metrics.h"

typedef struct ereq {
  ic_esim_req_t *r;
  ic_esim_sink_t sink;
  struct ereq *prev, *next; /* live list */
} ereq_t;

typedef struct output {
  ereq_t *q;
  uint32_t token;
  bool first, finished, aborted;
} output_t;

struct ic_esim_engine {
  ic_esim_config_t cfg;
  char *model;
  ic_esim_kv_t *kv;
  ic_esim_sched_t *sched;
  ic_esim_pub_t *pub;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t th;
  bool started, stop;
  int64_t wall0_us;
  double clock_ms;
  uint64_t next_id;
  ic_esim_req_t **inbox;
  size_t ninbox, inbox_cap;
  ereq_t *live;
  size_t nlive;
  /* per step (engine thread only) */
  output_t *out;
  size_t nout, out_cap;
  msgpack_sbuffer evbuf;
  msgpack_packer evpk;
  size_t nev;
  msgpack_sbuffer envbuf;
  /* reset handshake */
  uint64_t reset_asked, reset_done;
  bool reset_ok;
  /* metrics */
  ic_metrics_t *metrics;
  ic_metric_t *m_running, *m_waiting, *m_usage, *m_usage_old, *m_cpu_usage;
  ic_metric_t *m_queries, *m_hits, *m_prompt, *m_gen, *m_preempt, *m_success;
  ic_metric_t *m_ttft, *m_e2e, *m_queue;
  ic_esim_sched_stats_t reported;
};

void ic_esim_config_defaults(ic_esim_config_t *c) {
  memset(c, 0, sizeof *c);
  c->kv.block_size = 16;
  c->kv.gpu_blocks = 450000 / 16;
  c->kv.cpu_blocks = 0;
  c->kv.hash_seed = 0;
  c->sched.max_num_seqs = 256;
  c->sched.max_num_batched_tokens = 8192;
  c->sched.max_model_len = 131072;
  ic_esim_time_defaults(&c->time);
  c->speedup = 1.0;
  c->encoding = IC_ESIM_ENC_VLLM_MAP;
  c->dp_rank = -1;
  c->model = "sim-model";
  c->stream_interval = 1;
}

/* ---- events: one msgpack batch per step ------------------------------------------------ */

static void on_kv_event(void *ud, const ic_esim_event_t *ev) {
  ic_esim_engine_t *e = ud;
  const char *medium = ev->medium == IC_ESIM_CPU ? "CPU" : "GPU";
  int enc = e->cfg.encoding;
  if (ev->type == IC_ESIM_EV_STORED)
    ic_esim_pack_stored(&e->evpk, enc, ev->hashes, ev->nhashes, ev->has_parent ? &ev->parent : NULL,
                        ev->tokens, ev->ntokens, ev->block_size, -1, medium, NULL);
  else if (ev->type == IC_ESIM_EV_REMOVED)
    ic_esim_pack_removed(&e->evpk, enc, ev->hashes, ev->nhashes, medium);
  else
    ic_esim_pack_cleared(&e->evpk, enc);
  e->nev++;
}

static void flush_events(ic_esim_engine_t *e) {
  if (!e->nev) return;
  if (e->pub) {
    msgpack_sbuffer_clear(&e->envbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &e->envbuf, msgpack_sbuffer_write);
    double ts = (double)ic_clock_realtime_us() / 1e6;
    ic_esim_pack_envelope_begin(&pk, e->cfg.encoding, ts, e->cfg.dp_rank, e->nev);
    msgpack_sbuffer_write(&e->envbuf, e->evbuf.data, e->evbuf.size);
    ic_esim_pack_envelope_end(&pk, e->cfg.encoding, e->cfg.dp_rank);
    ic_esim_pub_post(e->pub, e->envbuf.data, e->envbuf.size);
  }
  msgpack_sbuffer_clear(&e->evbuf);
  e->nev = 0;
}

/* ---- metrics ----------------------------------------------------------------------------- */

static const double TTFT_BUCKETS[] = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                      0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                      20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
static const double E2E_BUCKETS[] = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                     5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                     60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

static ic_metric_t *labelled(ic_esim_engine_t *e, ic_metric_family_t *f) {
  const char *v[] = {e->model};
  return f ? ic_metric_child(f, v) : NULL;
}

static int setup_metrics(ic_esim_engine_t *e) {
  static const char *L[] = {"model_name"};
  ic_metrics_t *m = e->metrics = ic_metrics_new();
  /* process_* as every program here (and vLLM's prometheus_client) exports them */
  if (!m || ic_metrics_add_process(m) != 0) return IC_ENOMEM;
  e->m_running =
      labelled(e, ic_metrics_gauge(m, "vllm:num_requests_running",
                                   "Number of requests in model execution batches.", 1, L));
  e->m_waiting = labelled(e, ic_metrics_gauge(m, "vllm:num_requests_waiting",
                                              "Number of requests waiting to be processed.", 1, L));
  e->m_usage = labelled(e, ic_metrics_gauge(m, "vllm:kv_cache_usage_perc",
                                            "KV-cache usage. 1 means 100 percent usage.", 1, L));
  e->m_usage_old =
      labelled(e, ic_metrics_gauge(m, "vllm:gpu_cache_usage_perc",
                                   "GPU KV-cache usage. 1 means 100 percent usage.", 1, L));
  if (e->cfg.kv.cpu_blocks > 0)
    e->m_cpu_usage =
        labelled(e, ic_metrics_gauge(m, "vllm:cpu_cache_usage_perc",
                                     "CPU KV-cache usage. 1 means 100 percent usage.", 1, L));
  e->m_queries = labelled(
      e, ic_metrics_counter(m, "vllm:prefix_cache_queries_total",
                            "Prefix cache queries, in terms of number of queried tokens.", 1, L));
  e->m_hits = labelled(
      e, ic_metrics_counter(m, "vllm:prefix_cache_hits_total",
                            "Prefix cache hits, in terms of number of cached tokens.", 1, L));
  e->m_prompt = labelled(e, ic_metrics_counter(m, "vllm:prompt_tokens_total",
                                               "Number of prefill tokens processed.", 1, L));
  e->m_gen = labelled(e, ic_metrics_counter(m, "vllm:generation_tokens_total",
                                            "Number of generation tokens processed.", 1, L));
  e->m_preempt =
      labelled(e, ic_metrics_counter(m, "vllm:num_preemptions_total",
                                     "Cumulative number of preemption from the engine.", 1, L));
  e->m_success = labelled(e, ic_metrics_counter(m, "vllm:request_success_total",
                                                "Count of successfully processed requests.", 1, L));
  e->m_ttft =
      labelled(e, ic_metrics_histogram(m, "vllm:time_to_first_token_seconds",
                                       "Histogram of time to first token in seconds.", 1, L,
                                       TTFT_BUCKETS, sizeof TTFT_BUCKETS / sizeof *TTFT_BUCKETS));
  e->m_e2e =
      labelled(e, ic_metrics_histogram(m, "vllm:e2e_request_latency_seconds",
                                       "Histogram of e2e request latency in seconds.", 1, L,
                                       E2E_BUCKETS, sizeof E2E_BUCKETS / sizeof *E2E_BUCKETS));
  e->m_queue = labelled(
      e, ic_metrics_histogram(m, "vllm:request_queue_time_seconds",
                              "Histogram of time spent in WAITING phase for request.", 1, L,
                              TTFT_BUCKETS, sizeof TTFT_BUCKETS / sizeof *TTFT_BUCKETS));
  if (!e->m_running || !e->m_waiting || !e->m_usage || !e->m_usage_old || !e->m_queries ||
      !e->m_hits || !e->m_prompt || !e->m_gen || !e->m_preempt || !e->m_success || !e->m_ttft ||
      !e->m_e2e || !e->m_queue || (e->cfg.kv.cpu_blocks > 0 && !e->m_cpu_usage))
    return IC_ENOMEM;
  return 0;
}

/* Gauges and counters are refreshed from the scheduler when scraped. */
static void on_collect(void *ud) {
  ic_esim_engine_t *e = ud;
  pthread_mutex_lock(&e->mu);
  ic_esim_kv_stats_t ks;
  ic_esim_kv_stats(e->kv, &ks);
  ic_esim_sched_stats_t ss;
  ic_esim_sched_stats(e->sched, &ss);
  ic_metric_set(e->m_running, (double)ic_esim_sched_running(e->sched));
  ic_metric_set(e->m_waiting, (double)(ic_esim_sched_waiting(e->sched) + e->ninbox));
  double usage = (double)ks.gpu_used / (double)ks.gpu_blocks;
  ic_metric_set(e->m_usage, usage);
  ic_metric_set(e->m_usage_old, usage);
  if (e->m_cpu_usage) ic_metric_set(e->m_cpu_usage, (double)ks.cpu_used / (double)ks.cpu_blocks);
  ic_metric_add(e->m_queries, (double)(ss.prefix_queries - e->reported.prefix_queries));
  ic_metric_add(e->m_hits, (double)(ss.prefix_hits - e->reported.prefix_hits));
  ic_metric_add(e->m_prompt, (double)(ss.prompt_tokens - e->reported.prompt_tokens));
  ic_metric_add(e->m_gen, (double)(ss.generation_tokens - e->reported.generation_tokens));
  ic_metric_add(e->m_preempt, (double)(ss.preemptions - e->reported.preemptions));
  e->reported = ss;
  pthread_mutex_unlock(&e->mu);
}

char *ic_esim_engine_metrics(ic_esim_engine_t *e, size_t *len) {
  ic_buf_t b;
  ic_buf_init(&b);
  if (ic_metrics_render(e->metrics, &b) != 0) {
    ic_buf_free(&b);
    return NULL;
  }
  *len = b.len;
  return b.data;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

ic_esim_engine_t *ic_esim_engine_new(const ic_esim_config_t *cfg, ic_esim_pub_t *pub) {
  if (!cfg || !(cfg->speedup > 0) || cfg->stream_interval < 1) return NULL;
  ic_esim_engine_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->cfg = *cfg;
  e->model = strdup(cfg->model ? cfg->model : "sim-model");
  e->cfg.model = e->model;
  e->pub = pub;
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  msgpack_sbuffer_init(&e->evbuf);
  msgpack_sbuffer_init(&e->envbuf);
  msgpack_packer_init(&e->evpk, &e->evbuf, msgpack_sbuffer_write);
  e->wall0_us = ic_clock_monotonic_us();
  e->kv = ic_esim_kv_new(&cfg->kv, on_kv_event, e);
  e->sched = e->kv ? ic_esim_sched_new(&cfg->sched, &cfg->time, e->kv) : NULL;
  if (!e->model || !e->sched || setup_metrics(e) != 0) {
    ic_esim_engine_free(e);
    return NULL;
  }
  ic_metrics_on_collect(e->metrics, on_collect, e);
  return e;
}

const ic_esim_config_t *ic_esim_engine_config(const ic_esim_engine_t *e) { return &e->cfg; }

static double wall_sim_ms(const ic_esim_engine_t *e) {
  return (double)(ic_clock_monotonic_us() - e->wall0_us) / 1e3 * e->cfg.speedup;
}

double ic_esim_engine_now_ms(ic_esim_engine_t *e) { return wall_sim_ms(e); }

int ic_esim_engine_submit(ic_esim_engine_t *e, const uint32_t *prompt, size_t n, int64_t max_tokens,
                          const ic_esim_sink_t *sink, char *err, size_t errlen) {
  int64_t cap_tokens = e->cfg.kv.gpu_blocks * e->cfg.kv.block_size;
  int64_t need = (int64_t)n + max_tokens;
  if (need > e->cfg.sched.max_model_len) {
    snprintf(err, errlen,
             "This model's maximum context length is %lld tokens. However, you requested %lld "
             "tokens (%zu in the messages, %lld in the completion). Please reduce the length of "
             "the messages or completion.",
             (long long)e->cfg.sched.max_model_len, (long long)need, n, (long long)max_tokens);
    return IC_EINVAL;
  }
  if (need > cap_tokens) {
    snprintf(err, errlen,
             "request needs %lld tokens of KV cache, more than the %lld the engine has",
             (long long)need, (long long)cap_tokens);
    return IC_EINVAL;
  }
  ereq_t *q = calloc(1, sizeof *q);
  if (!q) return IC_ENOMEM;
  q->sink = *sink;
  pthread_mutex_lock(&e->mu);
  if (e->stop) {
    pthread_mutex_unlock(&e->mu);
    free(q);
    snprintf(err, errlen, "engine is shutting down");
    return IC_ESTATE;
  }
  if (e->ninbox == e->inbox_cap) {
    size_t nc = e->inbox_cap ? e->inbox_cap * 2 : 64;
    ic_esim_req_t **ni = realloc(e->inbox, nc * sizeof *ni);
    if (!ni) goto oom;
    e->inbox = ni;
    e->inbox_cap = nc;
  }
  q->r = ic_esim_req_new(++e->next_id, prompt, (int64_t)n, max_tokens, wall_sim_ms(e));
  if (!q->r) goto oom;
  q->r->ud = q;
  e->inbox[e->ninbox++] = q->r;
  q->next = e->live;
  if (e->live) e->live->prev = q;
  e->live = q;
  e->nlive++;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  return 0;
oom:
  pthread_mutex_unlock(&e->mu);
  free(q);
  snprintf(err, errlen, "out of memory");
  return IC_ENOMEM;
}

static void push_out(ic_esim_engine_t *e, ereq_t *q, uint32_t tok, bool first, bool fin,
                     bool aborted) {
  if (e->nout == e->out_cap) {
    size_t nc = e->out_cap ? e->out_cap * 2 : 256;
    output_t *no = realloc(e->out, nc * sizeof *no);
    if (!no) abort(); /* a lost token would hang a client forever */
    e->out = no;
    e->out_cap = nc;
  }
  e->out[e->nout++] = (output_t){q, tok, first, fin, aborted};
}

static void on_token(void *ud, ic_esim_req_t *r, uint32_t tok, bool first, bool finished) {
  push_out(ud, r->ud, tok, first, finished, false);
}

static void on_abort(void *ud, ic_esim_req_t *r) { push_out(ud, r->ud, 0, false, true, true); }

static void unlink_live(ic_esim_engine_t *e, ereq_t *q) {
  if (q->prev)
    q->prev->next = q->next;
  else
    e->live = q->next;
  if (q->next) q->next->prev = q->prev;
  e->nlive--;
}

static void finish(ic_esim_engine_t *e, ereq_t *q, bool aborted) {
  ic_esim_req_t *r = q->r;
  ic_esim_timing_t t = {.arrival_ms = r->arrival_ms,
                        .first_token_ms = r->first_token_ms,
                        .finish_ms = r->finish_ms,
                        .queue_ms = r->first_sched_ms >= 0 ? r->first_sched_ms - r->arrival_ms : 0,
                        .prompt_tokens = r->prompt_len,
                        .completion_tokens = r->output_len,
                        .cached_tokens = r->cached_tokens,
                        .cached_tokens_cpu = r->cpu_cached_tokens,
                        .computed_prefill_tokens = r->computed_prefill};
  if (!aborted) {
    ic_metric_observe(e->m_ttft, (t.first_token_ms - t.arrival_ms) / 1e3);
    ic_metric_observe(e->m_e2e, (t.finish_ms - t.arrival_ms) / 1e3);
    ic_metric_observe(e->m_queue, t.queue_ms / 1e3);
    ic_metric_inc(e->m_success);
  }
  if (q->sink.done) q->sink.done(q->sink.ud, &t, aborted);
  pthread_mutex_lock(&e->mu);
  unlink_live(e, q);
  pthread_mutex_unlock(&e->mu);
  ic_esim_req_free(r);
  free(q);
}

/* Delivers one step's outputs, outside the lock. */
static void deliver(ic_esim_engine_t *e) {
  for (size_t i = 0; i < e->nout; i++) {
    output_t *o = &e->out[i];
    if (!o->aborted && o->q->sink.tokens &&
        !o->q->sink.tokens(o->q->sink.ud, &o->token, 1, o->first) && !o->finished)
      o->q->r->cancelled = true; /* read by the scheduler on this thread */
    if (o->finished) finish(e, o->q, o->aborted);
  }
  e->nout = 0;
}

static void sleep_until_sim(ic_esim_engine_t *e, double sim_ms) {
  int64_t target = e->wall0_us + (int64_t)(sim_ms / e->cfg.speedup * 1e3);
  int64_t now = ic_clock_monotonic_us();
  if (target <= now) return;
  struct timespec ts = {(time_t)((target - now) / 1000000),
                        (long)((target - now) % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static void cond_wait_until_sim(ic_esim_engine_t *e, double sim_ms) {
  int64_t target = e->wall0_us + (int64_t)(sim_ms / e->cfg.speedup * 1e3);
  int64_t delta = target - ic_clock_monotonic_us();
  if (delta <= 0) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ns = ts.tv_nsec + (delta % 1000000) * 1000;
  ts.tv_sec += (time_t)(delta / 1000000 + ns / 1000000000);
  ts.tv_nsec = (long)(ns % 1000000000);
  pthread_cond_timedwait(&e->cv, &e->mu, &ts);
}

static void *engine_thread(void *arg) {
  ic_esim_engine_t *e = arg;
  pthread_mutex_lock(&e->mu);
  while (!e->stop) {
    for (size_t i = 0; i < e->ninbox; i++)
      ic_esim_sched_add(e->sched, e->inbox[i]);
    e->ninbox = 0;
    if (e->reset_asked != e->reset_done) {
      e->reset_ok = ic_esim_kv_reset(e->kv);
      e->reset_done = e->reset_asked;
      pthread_cond_broadcast(&e->cv);
    }
    size_t running = ic_esim_sched_running(e->sched);
    double next = ic_esim_sched_next_arrival(e->sched);
    if (running == 0 && next < 0) {
      if (e->nev == 0) {
        pthread_cond_wait(&e->cv, &e->mu);
        continue;
      }
    }
    double t = e->clock_ms;
    if (running == 0 && next > t) t = next; /* idle until the next arrival */
    double dt = (running || next >= 0) ? ic_esim_sched_step(e->sched, t, on_token, on_abort, e) : 0;
    if (dt > 0) e->clock_ms = t + dt;
    pthread_mutex_unlock(&e->mu);
    if (dt > 0) sleep_until_sim(e, e->clock_ms);
    flush_events(e);
    deliver(e);
    pthread_mutex_lock(&e->mu);
    if (dt <= 0 && e->ninbox == 0 && !e->stop && e->reset_asked == e->reset_done) {
      /* Nothing could run (a waiting request does not fit yet): wait for news or its arrival. */
      double na = ic_esim_sched_next_arrival(e->sched);
      if (na > e->clock_ms)
        cond_wait_until_sim(e, na);
      else
        cond_wait_until_sim(e, wall_sim_ms(e) + 10 * e->cfg.speedup);
    }
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

int ic_esim_engine_start(ic_esim_engine_t *e) {
  if (pthread_create(&e->th, NULL, engine_thread, e) != 0) return IC_ENOMEM;
  e->started = true;
  return 0;
}

void ic_esim_engine_prefix_match(ic_esim_engine_t *e, const uint32_t *t, size_t n, int64_t *gpu,
                                 int64_t *cpu) {
  pthread_mutex_lock(&e->mu);
  ic_esim_kv_prefix_match(e->kv, t, (int64_t)n, gpu, cpu);
  pthread_mutex_unlock(&e->mu);
}

bool ic_esim_engine_reset_cache(ic_esim_engine_t *e) {
  pthread_mutex_lock(&e->mu);
  if (!e->started || e->stop) {
    pthread_mutex_unlock(&e->mu);
    return false;
  }
  uint64_t mine = ++e->reset_asked;
  pthread_cond_broadcast(&e->cv);
  while (e->reset_done < mine && !e->stop)
    pthread_cond_wait(&e->cv, &e->mu);
  bool ok = e->reset_done >= mine && e->reset_ok;
  pthread_mutex_unlock(&e->mu);
  return ok;
}

void ic_esim_engine_stop(ic_esim_engine_t *e) {
  if (!e) return;
  pthread_mutex_lock(&e->mu);
  bool was = e->stop;
  e->stop = true;
  pthread_cond_broadcast(&e->cv);
  pthread_mutex_unlock(&e->mu);
  if (was) return;
  if (e->started) pthread_join(e->th, NULL);
  e->started = false;
  flush_events(e);
  deliver(e);
  /* Everything still queued or running gets done(aborted). */
  for (;;) {
    pthread_mutex_lock(&e->mu);
    ereq_t *q = e->live;
    pthread_mutex_unlock(&e->mu);
    if (!q) break;
    finish(e, q, true);
  }
  e->ninbox = 0;
}

void ic_esim_engine_free(ic_esim_engine_t *e) {
  if (!e) return;
  ic_esim_engine_stop(e);
  ic_esim_sched_free(e->sched);
  ic_esim_kv_free(e->kv);
  ic_metrics_free(e->metrics);
  msgpack_sbuffer_destroy(&e->evbuf);
  msgpack_sbuffer_destroy(&e->envbuf);
  free(e->out);
  free(e->inbox);
  free(e->model);
  pthread_cond_destroy(&e->cv);
  pthread_mutex_destroy(&e->mu);
  free(e);
}
