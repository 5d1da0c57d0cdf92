/* The tokenizer worker pool: prompt jobs queued FIFO and run on their own threads, at most
 * max_in_flight queued or running (one more is refused: the caller sheds it), and a timer thread
 * that expires a queued job the moment its deadline passes, however busy the workers are. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"
#include "ic/prompt.h"

struct ic_prompt_pool {
  pthread_mutex_t mu;
  pthread_cond_t work;          /* a job was queued, or stopping */
  pthread_cond_t timer;         /* a job with an earlier deadline was queued, or stopping */
  ic_prompt_job_t *head, *tail; /* queued, oldest first */
  int queued, running, max_in_flight;
  int64_t timer_wake_ns; /* the deadline the timer sleeps until (INT64_MAX: none) */
  uint64_t submitted, shed, expired;
  bool stopping;
  pthread_t *workers;
  int nworkers, nice;
  pthread_t timer_th;
  bool timer_started;
};

static void unlink_job(ic_prompt_pool_t *p, ic_prompt_job_t *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    p->head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    p->tail = j->prev;
  j->next = j->prev = NULL;
  p->queued--;
}

static void *worker_main(void *arg) {
  ic_prompt_pool_t *p = arg;
  if (p->nice > 0) { /* Linux: a thread's own nice value */
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, (id_t)gettid());
    if ((cur != -1 || errno == 0) && setpriority(PRIO_PROCESS, (id_t)gettid(), cur + p->nice) != 0)
      ic_log_debug("prompt_pool_nice_failed", IC_LI("nice", p->nice));
  }
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->head && !p->stopping)
      pthread_cond_wait(&p->work, &p->mu);
    ic_prompt_job_t *j = p->head;
    if (!j) break; /* stopping and nothing queued (ic_prompt_pool_free expires what is left) */
    unlink_job(p, j);
    p->running++;
    pthread_mutex_unlock(&p->mu);
    j->run(j); /* may free j */
    pthread_mutex_lock(&p->mu);
    p->running--;
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static struct timespec abs_mono(int64_t ns) {
  return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

/* Sleeps until the earliest queued deadline (a scan: the queue holds at most max_in_flight
 * jobs), then takes every expired job out of the queue and expires it outside the lock. */
static void *timer_main(void *arg) {
  ic_prompt_pool_t *p = arg;
  pthread_mutex_lock(&p->mu);
  while (!p->stopping) {
    int64_t now = ic_clock_monotonic_ns(), next = INT64_MAX;
    ic_prompt_job_t *due = NULL;
    for (ic_prompt_job_t *j = p->head, *n; j; j = n) {
      n = j->next;
      if (j->deadline_ns <= now) {
        unlink_job(p, j);
        j->next = due;
        due = j;
      } else if (j->deadline_ns < next) {
        next = j->deadline_ns;
      }
    }
    if (due) {
      /* Expire them unlocked (each answers its call); the queue may change meanwhile, so the
       * next round scans again. */
      pthread_mutex_unlock(&p->mu);
      int k = 0;
      for (ic_prompt_job_t *j = due, *n; j; j = n, k++) {
        n = j->next;
        j->next = NULL;
        j->expire(j, IC_PROMPT_EXPIRED_DEADLINE);
      }
      pthread_mutex_lock(&p->mu);
      p->expired += (uint64_t)k;
      continue;
    }
    p->timer_wake_ns = next;
    if (next == INT64_MAX) {
      pthread_cond_wait(&p->timer, &p->mu);
    } else {
      struct timespec ts = abs_mono(next);
      pthread_cond_timedwait(&p->timer, &p->mu, &ts);
    }
    p->timer_wake_ns = INT64_MAX;
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

ic_prompt_pool_t *ic_prompt_pool_new(int threads, int max_in_flight, int nice) {
  if (threads <= 0) threads = 1;
  if (max_in_flight <= 0) max_in_flight = IC_PROMPT_POOL_MAX_IN_FLIGHT;
  if (threads > max_in_flight) threads = max_in_flight; /* more could never all be busy */
  ic_prompt_pool_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->workers = calloc((size_t)threads, sizeof *p->workers);
  if (!p->workers) {
    free(p);
    return NULL;
  }
  p->max_in_flight = max_in_flight;
  p->nice = nice;
  p->timer_wake_ns = INT64_MAX;
  pthread_mutex_init(&p->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines are ic_clock_monotonic_ns */
  pthread_cond_init(&p->timer, &ca);
  pthread_condattr_destroy(&ca);
  pthread_cond_init(&p->work, NULL);
  for (int i = 0; i < threads; i++) {
    if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) break;
    p->nworkers++;
  }
  p->timer_started = pthread_create(&p->timer_th, NULL, timer_main, p) == 0;
  if (p->nworkers == 0 || !p->timer_started) {
    ic_log_error("prompt_pool_start_failed", IC_LI("threads", p->nworkers),
                 IC_LB("timer", p->timer_started));
    ic_prompt_pool_free(p);
    return NULL;
  }
  return p;
}

int ic_prompt_pool_submit(ic_prompt_pool_t *p, ic_prompt_job_t *j) {
  if (!p || !j || !j->run || !j->expire) return IC_EINVAL;
  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    pthread_mutex_unlock(&p->mu);
    return IC_ESTATE;
  }
  if (p->queued + p->running >= p->max_in_flight) {
    p->shed++;
    pthread_mutex_unlock(&p->mu);
    return IC_EUNAVAIL;
  }
  j->next = NULL;
  j->prev = p->tail;
  if (p->tail)
    p->tail->next = j;
  else
    p->head = j;
  p->tail = j;
  p->queued++;
  p->submitted++;
  pthread_cond_signal(&p->work);
  if (j->deadline_ns < p->timer_wake_ns) pthread_cond_signal(&p->timer);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

void ic_prompt_pool_stats(ic_prompt_pool_t *p, ic_prompt_pool_stats_t *st) {
  pthread_mutex_lock(&p->mu);
  *st = (ic_prompt_pool_stats_t){.threads = p->nworkers,
                                 .max_in_flight = p->max_in_flight,
                                 .queued = p->queued,
                                 .running = p->running,
                                 .submitted = p->submitted,
                                 .shed = p->shed,
                                 .expired = p->expired};
  pthread_mutex_unlock(&p->mu);
}

void ic_prompt_pool_free(ic_prompt_pool_t *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  ic_prompt_job_t *left = p->head;
  p->head = p->tail = NULL;
  p->queued = 0;
  pthread_cond_broadcast(&p->work);
  pthread_cond_broadcast(&p->timer);
  pthread_mutex_unlock(&p->mu);
  /* Queued jobs are answered without running; running ones finish on their workers. */
  for (ic_prompt_job_t *j = left, *n; j; j = n) {
    n = j->next;
    j->next = j->prev = NULL;
    j->expire(j, IC_PROMPT_EXPIRED_SHUTDOWN);
  }
  for (int i = 0; i < p->nworkers; i++)
    pthread_join(p->workers[i], NULL);
  if (p->timer_started) pthread_join(p->timer_th, NULL);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->timer);
  pthread_mutex_destroy(&p->mu);
  free(p->workers);
  free(p);
}
