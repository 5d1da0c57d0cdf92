/* lib/kube work queue: controller-style queue of string keys with de-duplication, a processing
 * set (one worker per key at a time), delayed adds and per-key exponential backoff.
 * Sizes are small (one key per CacheBackend), so plain arrays with linear scans are enough. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/clock.h"
#include "ic/kube.h"

typedef struct {
  char **v;
  size_t n, cap;
} strvec_t;

typedef struct {
  char *key;
  int64_t due_ns;
} delayed_t;

typedef struct {
  char *key;
  int failures;
} fail_t;

struct ic_kube_queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  strvec_t ready;      /* FIFO of keys to hand out */
  strvec_t dirty;      /* keys waiting to be processed (ready or re-added while processing) */
  strvec_t processing; /* keys handed out, not yet done() */
  delayed_t *delayed;
  size_t ndelayed, capdelayed;
  fail_t *fails;
  size_t nfails, capfails;
  int base_ms, max_ms;
  bool shutdown;
};

static ssize_t vec_find(strvec_t *s, const char *k) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], k) == 0) return (ssize_t)i;
  return -1;
}

static int vec_push(strvec_t *s, const char *k) {
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 16;
    char **nv = realloc(s->v, nc * sizeof *nv);
    if (!nv) return IC_ENOMEM;
    s->v = nv;
    s->cap = nc;
  }
  char *d = strdup(k);
  if (!d) return IC_ENOMEM;
  s->v[s->n++] = d;
  return 0;
}

static void vec_del(strvec_t *s, size_t i) {
  free(s->v[i]);
  memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
  s->n--;
}

static void vec_free(strvec_t *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
}

ic_kube_queue_t *ic_kube_queue_new(int base_delay_ms, int max_delay_ms) {
  ic_kube_queue_t *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  pthread_mutex_init(&q->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q->cv, &ca);
  pthread_condattr_destroy(&ca);
  q->base_ms = base_delay_ms > 0 ? base_delay_ms : 5;
  q->max_ms = max_delay_ms > 0 ? max_delay_ms : 1000 * 1000;
  return q;
}

void ic_kube_queue_free(ic_kube_queue_t *q) {
  if (!q) return;
  vec_free(&q->ready);
  vec_free(&q->dirty);
  vec_free(&q->processing);
  for (size_t i = 0; i < q->ndelayed; i++) free(q->delayed[i].key);
  free(q->delayed);
  for (size_t i = 0; i < q->nfails; i++) free(q->fails[i].key);
  free(q->fails);
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  free(q);
}

/* Caller holds mu. */
static void add_locked(ic_kube_queue_t *q, const char *key) {
  if (q->shutdown || vec_find(&q->dirty, key) >= 0) return;
  if (vec_push(&q->dirty, key) != 0) return;
  if (vec_find(&q->processing, key) >= 0) return; /* re-queued by done() */
  vec_push(&q->ready, key);
  pthread_cond_signal(&q->cv);
}

void ic_kube_queue_add(ic_kube_queue_t *q, const char *key) {
  pthread_mutex_lock(&q->mu);
  add_locked(q, key);
  pthread_mutex_unlock(&q->mu);
}

void ic_kube_queue_add_after(ic_kube_queue_t *q, const char *key, int delay_ms) {
  if (delay_ms <= 0) {
    ic_kube_queue_add(q, key);
    return;
  }
  int64_t due = ic_clock_monotonic_ns() + (int64_t)delay_ms * 1000000;
  pthread_mutex_lock(&q->mu);
  if (q->shutdown) goto out;
  for (size_t i = 0; i < q->ndelayed; i++) {
    if (strcmp(q->delayed[i].key, key) == 0) {
      if (due < q->delayed[i].due_ns) q->delayed[i].due_ns = due; /* earliest wins */
      goto signal;
    }
  }
  if (q->ndelayed == q->capdelayed) {
    size_t nc = q->capdelayed ? q->capdelayed * 2 : 16;
    delayed_t *nd = realloc(q->delayed, nc * sizeof *nd);
    if (!nd) goto out;
    q->delayed = nd;
    q->capdelayed = nc;
  }
  q->delayed[q->ndelayed].key = strdup(key);
  if (!q->delayed[q->ndelayed].key) goto out;
  q->delayed[q->ndelayed++].due_ns = due;
signal:
  pthread_cond_broadcast(&q->cv);
out:
  pthread_mutex_unlock(&q->mu);
}

static fail_t *fail_entry(ic_kube_queue_t *q, const char *key, bool create) {
  for (size_t i = 0; i < q->nfails; i++)
    if (strcmp(q->fails[i].key, key) == 0) return &q->fails[i];
  if (!create) return NULL;
  if (q->nfails == q->capfails) {
    size_t nc = q->capfails ? q->capfails * 2 : 16;
    fail_t *nf = realloc(q->fails, nc * sizeof *nf);
    if (!nf) return NULL;
    q->fails = nf;
    q->capfails = nc;
  }
  q->fails[q->nfails].key = strdup(key);
  if (!q->fails[q->nfails].key) return NULL;
  q->fails[q->nfails].failures = 0;
  return &q->fails[q->nfails++];
}

void ic_kube_queue_add_rate_limited(ic_kube_queue_t *q, const char *key) {
  pthread_mutex_lock(&q->mu);
  fail_t *f = fail_entry(q, key, true);
  int64_t delay = q->base_ms;
  if (f) {
    for (int i = 0; i < f->failures && delay < q->max_ms; i++) delay *= 2;
    f->failures++;
  }
  if (delay > q->max_ms) delay = q->max_ms;
  pthread_mutex_unlock(&q->mu);
  ic_kube_queue_add_after(q, key, (int)delay);
}

void ic_kube_queue_forget(ic_kube_queue_t *q, const char *key) {
  pthread_mutex_lock(&q->mu);
  for (size_t i = 0; i < q->nfails; i++) {
    if (strcmp(q->fails[i].key, key) == 0) {
      free(q->fails[i].key);
      q->fails[i] = q->fails[--q->nfails];
      break;
    }
  }
  pthread_mutex_unlock(&q->mu);
}

int ic_kube_queue_failures(ic_kube_queue_t *q, const char *key) {
  pthread_mutex_lock(&q->mu);
  fail_t *f = fail_entry(q, key, false);
  int n = f ? f->failures : 0;
  pthread_mutex_unlock(&q->mu);
  return n;
}

/* Moves due delayed keys to the ready list; returns the next due time (or INT64_MAX). */
static int64_t promote_locked(ic_kube_queue_t *q) {
  int64_t now = ic_clock_monotonic_ns(), next = INT64_MAX;
  for (size_t i = 0; i < q->ndelayed;) {
    if (q->delayed[i].due_ns <= now) {
      char *k = q->delayed[i].key;
      q->delayed[i] = q->delayed[--q->ndelayed];
      add_locked(q, k);
      free(k);
    } else {
      if (q->delayed[i].due_ns < next) next = q->delayed[i].due_ns;
      i++;
    }
  }
  return next;
}

char *ic_kube_queue_get(ic_kube_queue_t *q, int timeout_ms) {
  int64_t deadline = timeout_ms < 0 ? INT64_MAX : ic_clock_monotonic_ns() + (int64_t)timeout_ms * 1000000;
  pthread_mutex_lock(&q->mu);
  char *out = NULL;
  for (;;) {
    if (q->shutdown) break;
    int64_t next = promote_locked(q);
    if (q->ready.n > 0) {
      out = q->ready.v[0];
      memmove(&q->ready.v[0], &q->ready.v[1], (q->ready.n - 1) * sizeof *q->ready.v);
      q->ready.n--;
      ssize_t di = vec_find(&q->dirty, out);
      if (di >= 0) vec_del(&q->dirty, (size_t)di);
      vec_push(&q->processing, out);
      break;
    }
    int64_t now = ic_clock_monotonic_ns();
    if (now >= deadline) break;
    int64_t wake = next < deadline ? next : deadline;
    if (wake == INT64_MAX) {
      pthread_cond_wait(&q->cv, &q->mu);
    } else {
      struct timespec ts = {(time_t)(wake / 1000000000), (long)(wake % 1000000000)};
      pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
  }
  pthread_mutex_unlock(&q->mu);
  return out;
}

void ic_kube_queue_done(ic_kube_queue_t *q, char *key) {
  if (!key) return;
  pthread_mutex_lock(&q->mu);
  ssize_t pi = vec_find(&q->processing, key);
  if (pi >= 0) vec_del(&q->processing, (size_t)pi);
  /* Added again while it was being processed: it is dirty, so hand it out again. */
  if (vec_find(&q->dirty, key) >= 0 && !q->shutdown) {
    vec_push(&q->ready, key);
    pthread_cond_signal(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  free(key);
}

size_t ic_kube_queue_len(ic_kube_queue_t *q) {
  pthread_mutex_lock(&q->mu);
  size_t n = q->ready.n;
  pthread_mutex_unlock(&q->mu);
  return n;
}

void ic_kube_queue_shutdown(ic_kube_queue_t *q) {
  pthread_mutex_lock(&q->mu);
  q->shutdown = true;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}
