/* Continuous-batching scheduler modelled on vLLM v1: each step spends a token budget on running
 * requests first (decode tokens, remaining prompt chunks), then admits waiting requests FCFS with
 * a prefix-cache lookup and chunked prefill; a request that cannot get a block preempts the
 * newest running one (recompute). Pure: simulated time comes in, the step's duration goes out. */
#include <stdlib.h>
#include <string.h>

#include "ic/enginesim.h"
#include "ic/err.h"

typedef struct queue {
  ic_esim_req_t *head, *tail;
  size_t n;
} queue_t;

struct ic_esim_sched {
  ic_esim_sched_config_t cfg;
  ic_esim_time_config_t time;
  ic_esim_kv_t *kv;
  queue_t waiting, running;
  ic_esim_sched_stats_t stats;
};

static void q_remove(queue_t *q, ic_esim_req_t *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    q->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    q->tail = r->prev;
  r->next = r->prev = NULL;
  q->n--;
}

static void q_insert_after(queue_t *q, ic_esim_req_t *at, ic_esim_req_t *r) {
  r->prev = at;
  r->next = at ? at->next : q->head;
  if (r->next)
    r->next->prev = r;
  else
    q->tail = r;
  if (at)
    at->next = r;
  else
    q->head = r;
  q->n++;
}

ic_esim_req_t *ic_esim_req_new(uint64_t id, const uint32_t *prompt, int64_t n, int64_t max_tokens,
                               double arrival_ms) {
  if (n <= 0 || max_tokens <= 0) return NULL;
  ic_esim_req_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->cap = n + max_tokens;
  r->tokens = malloc((size_t)r->cap * sizeof *r->tokens);
  if (!r->tokens) {
    free(r);
    return NULL;
  }
  memcpy(r->tokens, prompt, (size_t)n * sizeof *prompt);
  r->id = id;
  r->ntokens = r->prompt_len = n;
  r->max_tokens = max_tokens;
  r->arrival_ms = arrival_ms;
  r->first_sched_ms = r->first_token_ms = r->finish_ms = -1;
  return r;
}

void ic_esim_req_free(ic_esim_req_t *r) {
  if (!r) return;
  ic_esim_seq_free(&r->seq);
  free(r->tokens);
  free(r);
}

ic_esim_sched_t *ic_esim_sched_new(const ic_esim_sched_config_t *cfg,
                                   const ic_esim_time_config_t *tcfg, ic_esim_kv_t *kv) {
  if (!cfg || !tcfg || !kv || cfg->max_num_seqs <= 0 || cfg->max_num_batched_tokens <= 0)
    return NULL;
  ic_esim_sched_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->cfg = *cfg;
  s->time = *tcfg;
  s->kv = kv;
  return s;
}

void ic_esim_sched_free(ic_esim_sched_t *s) { free(s); }

void ic_esim_sched_add(ic_esim_sched_t *s, ic_esim_req_t *r) {
  r->state = IC_ESIM_WAITING;
  ic_esim_req_t *at = s->waiting.tail;
  while (at && at->arrival_ms > r->arrival_ms)
    at = at->prev;
  q_insert_after(&s->waiting, at, r);
}

size_t ic_esim_sched_running(const ic_esim_sched_t *s) { return s->running.n; }
size_t ic_esim_sched_waiting(const ic_esim_sched_t *s) { return s->waiting.n; }

double ic_esim_sched_next_arrival(const ic_esim_sched_t *s) {
  return s->waiting.head ? s->waiting.head->arrival_ms : -1;
}

void ic_esim_sched_stats(const ic_esim_sched_t *s, ic_esim_sched_stats_t *out) { *out = s->stats; }

/* Back to the front of the waiting queue with nothing computed (vLLM's recompute mode). */
static void preempt(ic_esim_sched_t *s, ic_esim_req_t *r) {
  q_remove(&s->running, r);
  ic_esim_kv_release(s->kv, &r->seq);
  r->computed = 0;
  r->step_new = 0;
  r->preemptions++;
  s->stats.preemptions++;
  r->state = IC_ESIM_WAITING;
  q_insert_after(&s->waiting, NULL, r);
}

/* Deterministic stand-in for a sampled token. */
static uint32_t next_token(const ic_esim_req_t *r) {
  uint64_t z = r->id * 0x9E3779B97F4A7C15ULL + (uint64_t)r->output_len + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return 1000 + (uint32_t)((z ^ (z >> 31)) % 128000);
}

static void drop_cancelled(ic_esim_sched_t *s, queue_t *q,
                           void (*abort_fn)(void *ud, ic_esim_req_t *r), void *ud) {
  for (ic_esim_req_t *r = q->head, *nx; r; r = nx) {
    nx = r->next;
    if (!r->cancelled) continue;
    q_remove(q, r);
    ic_esim_kv_release(s->kv, &r->seq);
    r->state = IC_ESIM_FINISHED;
    if (abort_fn) abort_fn(ud, r);
  }
}

/* Running requests take their share of the budget first. Returns false when someone was
 * preempted (then, as in vLLM, no waiting request is admitted this step). */
static bool schedule_running(ic_esim_sched_t *s, int64_t *budget) {
  bool preempted = false;
  for (ic_esim_req_t *r = s->running.head, *nx; r; r = nx) {
    nx = r->next;
    r->step_new = 0;
    int64_t n = r->ntokens - r->computed;
    if (n > *budget) n = *budget;
    if (n <= 0) continue;
    bool self = false;
    while (ic_esim_kv_allocate(s->kv, &r->seq, r->computed + n) != 0) {
      ic_esim_req_t *victim = s->running.tail;
      preempted = true;
      if (victim == nx) nx = NULL; /* the victim is always the tail: nothing follows it */
      preempt(s, victim);
      if (victim == r) {
        self = true;
        break;
      }
    }
    if (self) break;
    r->step_new = n;
    *budget -= n;
  }
  return !preempted;
}

static void schedule_waiting(ic_esim_sched_t *s, double now, int64_t *budget, ic_esim_batch_t *b) {
  for (ic_esim_req_t *r = s->waiting.head, *nx; r; r = nx) {
    nx = r->next;
    if (*budget <= 0 || (int64_t)s->running.n >= s->cfg.max_num_seqs) break;
    if (r->arrival_ms > now) break;
    int64_t gpu = 0, cpu = 0;
    if (r->seq.nblocks == 0) {
      ic_esim_kv_match(s->kv, &r->seq, r->tokens, r->ntokens, &gpu, &cpu);
      r->computed = gpu + cpu;
    }
    int64_t n = r->ntokens - r->computed;
    if (n > *budget) n = *budget;
    if (ic_esim_kv_allocate(s->kv, &r->seq, r->computed + n) != 0) {
      ic_esim_kv_release(s->kv, &r->seq); /* unpin the hits; try again next step */
      r->computed = 0;
      break;
    }
    s->stats.prefix_queries += (uint64_t)r->ntokens;
    s->stats.prefix_hits += (uint64_t)(gpu + cpu);
    if (r->first_sched_ms < 0) {
      r->first_sched_ms = now;
      r->cached_tokens = gpu + cpu;
      r->cpu_cached_tokens = cpu;
    }
    b->cpu_load_tokens += cpu;
    q_remove(&s->waiting, r);
    q_insert_after(&s->running, s->running.tail, r);
    r->state = IC_ESIM_RUNNING;
    r->step_new = n;
    *budget -= n;
  }
}

double ic_esim_sched_step(ic_esim_sched_t *s, double now, ic_esim_token_fn token_fn,
                          void (*abort_fn)(void *ud, ic_esim_req_t *r), void *ud) {
  drop_cancelled(s, &s->running, abort_fn, ud);
  drop_cancelled(s, &s->waiting, abort_fn, ud);
  int64_t budget = s->cfg.max_num_batched_tokens;
  ic_esim_batch_t b = {0};
  if (schedule_running(s, &budget)) schedule_waiting(s, now, &budget, &b);
  for (ic_esim_req_t *r = s->running.head; r; r = r->next) {
    int64_t n = r->step_new;
    if (n <= 0) continue;
    if (r->output_len > 0 && n == 1 && r->computed == r->ntokens - 1) {
      b.decode_seqs++;
      b.decode_context += r->computed;
    } else {
      b.prefill_tokens += n;
      b.prefill_pairs += (double)n * ((double)r->computed + (double)(n + 1) / 2.0);
    }
  }
  double dt = ic_esim_time_step_ms(&s->time, &b);
  if (dt <= 0) return 0;
  double end = now + dt;
  s->stats.steps++;
  for (ic_esim_req_t *r = s->running.head, *nx; r; r = nx) {
    nx = r->next;
    int64_t n = r->step_new;
    if (n <= 0) continue;
    r->step_new = 0;
    if (r->computed < r->prompt_len) {
      int64_t p = r->prompt_len - r->computed;
      r->computed_prefill += p < n ? p : n;
    }
    r->computed += n;
    ic_esim_kv_commit(s->kv, &r->seq, r->tokens, r->computed);
    if (r->computed < r->ntokens) continue; /* mid-prefill chunk */
    uint32_t tok = next_token(r);
    if (r->ntokens < r->cap) r->tokens[r->ntokens++] = tok;
    r->output_len++;
    bool first = r->output_len == 1;
    if (first) {
      r->first_token_ms = end;
      s->stats.prompt_tokens += (uint64_t)r->prompt_len;
    }
    s->stats.generation_tokens++;
    bool finished = r->output_len >= r->max_tokens;
    if (finished) {
      r->finish_ms = end;
      q_remove(&s->running, r);
      ic_esim_kv_release(s->kv, &r->seq);
      r->state = IC_ESIM_FINISHED;
    }
    if (token_fn) token_fn(ud, r, tok, first, finished);
  }
  return dt;
}
