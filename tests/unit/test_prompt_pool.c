/* The tokenizer worker pool (lib/prompt/pool.c): the in-flight bound, FIFO hand-over to workers,
 * queued jobs expired at their deadline while every worker is busy, shutdown with jobs running
 * and queued; and the pool answering real gRPC calls deferred by lib/rpc (ic_rpc_call_defer):
 * the completion-queue thread stays free, sheds are OK answers, cancelled calls are seen and
 * skipped, and the server's shutdown waits for the pool's replies. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/prompt.h"
#include "ic/rpc.h"

/* ------------------------------------------------------------------ a gate jobs wait on */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static bool g_open;

static void gate_set(bool open) {
  pthread_mutex_lock(&g_mu);
  g_open = open;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

static void gate_wait(void) {
  pthread_mutex_lock(&g_mu);
  while (!g_open) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
}

static void *open_after(void *arg) {
  usleep((useconds_t)(intptr_t)arg * 1000);
  gate_set(true);
  return NULL;
}

/* ------------------------------------------------------------------ plain jobs */

static atomic_int g_ran, g_expired_deadline, g_expired_shutdown;

typedef struct tjob {
  ic_prompt_job_t base;
  bool block; /* waits for the gate */
  int64_t expired_at;
  int64_t *expired_at_out;
} tjob;

static void t_run(ic_prompt_job_t *b) {
  tjob *j = (tjob *)b;
  if (j->block) gate_wait();
  atomic_fetch_add(&g_ran, 1);
  free(j);
}

static void t_expire(ic_prompt_job_t *b, ic_prompt_expiry_t why) {
  tjob *j = (tjob *)b;
  if (j->expired_at_out) *j->expired_at_out = ic_clock_monotonic_ns();
  atomic_fetch_add(why == IC_PROMPT_EXPIRED_DEADLINE ? &g_expired_deadline : &g_expired_shutdown, 1);
  free(j);
}

static tjob *tjob_new(bool block, int64_t deadline, int64_t *expired_at) {
  tjob *j = calloc(1, sizeof *j);
  cr_assert_not_null(j);
  j->base = (ic_prompt_job_t){.deadline_ns = deadline, .run = t_run, .expire = t_expire};
  j->block = block;
  j->expired_at_out = expired_at;
  return j;
}

static void wait_for(ic_prompt_pool_t *p, int running, int queued) {
  for (int i = 0; i < 2000; i++) {
    ic_prompt_pool_stats_t st;
    ic_prompt_pool_stats(p, &st);
    if (st.running == running && st.queued == queued) return;
    usleep(5000);
  }
  cr_assert_fail("pool never reached %d running, %d queued", running, queued);
}

static void reset(void) {
  atomic_store(&g_ran, 0);
  atomic_store(&g_expired_deadline, 0);
  atomic_store(&g_expired_shutdown, 0);
  gate_set(false);
}

TestSuite(pool, .init = reset, .timeout = 60);

Test(pool, bound_counts_queued_and_running_and_frees_slots) {
  ic_prompt_pool_t *p = ic_prompt_pool_new(2, 8);
  cr_assert_not_null(p);
  for (int i = 0; i < 8; i++) cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(true, INT64_MAX, NULL)->base), 0);
  wait_for(p, 2, 6);
  tjob *extra = tjob_new(true, INT64_MAX, NULL);
  cr_assert_eq(ic_prompt_pool_submit(p, &extra->base), IC_EUNAVAIL, "a ninth job must be refused");
  ic_prompt_pool_stats_t st;
  ic_prompt_pool_stats(p, &st);
  cr_assert_eq(st.threads, 2);
  cr_assert_eq(st.max_in_flight, 8);
  cr_assert_eq(st.submitted, 8);
  cr_assert_eq(st.shed, 1);
  gate_set(true);
  wait_for(p, 0, 0);
  cr_assert_eq(atomic_load(&g_ran), 8);
  extra->block = false;
  cr_assert_eq(ic_prompt_pool_submit(p, &extra->base), 0, "slots are free again");
  wait_for(p, 0, 0);
  ic_prompt_pool_free(p);
  cr_assert_eq(atomic_load(&g_ran), 9);
  cr_assert_eq(atomic_load(&g_expired_deadline) + atomic_load(&g_expired_shutdown), 0);
}

Test(pool, queued_jobs_expire_at_their_deadline_while_workers_are_busy) {
  ic_prompt_pool_t *p = ic_prompt_pool_new(1, 64);
  cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(true, INT64_MAX, NULL)->base), 0);
  wait_for(p, 1, 0);
  int64_t now = ic_clock_monotonic_ns(), late_at = 0, early_at = 0;
  int64_t late = now + 400 * 1000000LL, early = now + 100 * 1000000LL;
  /* The later deadline first: the earlier one must wake the timer anew. */
  cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(false, late, &late_at)->base), 0);
  cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(false, early, &early_at)->base), 0);
  for (int i = 0; i < 400 && atomic_load(&g_expired_deadline) < 2; i++) usleep(5000);
  cr_assert_eq(atomic_load(&g_expired_deadline), 2, "both expired while the worker was busy");
  cr_assert_eq(atomic_load(&g_ran), 0);
  cr_assert_geq(early_at, early);
  cr_assert_geq(late_at, late);
  cr_assert_lt(early_at, late, "the early one did not wait for the late one's deadline");
  cr_assert_lt(late_at - late, 1000 * 1000000LL, "expired %.0f ms late", (late_at - late) / 1e6);
  ic_prompt_pool_stats_t st;
  ic_prompt_pool_stats(p, &st);
  cr_assert_eq(st.expired, 2);
  cr_assert_eq(st.queued, 0);
  gate_set(true);
  ic_prompt_pool_free(p);
  cr_assert_eq(atomic_load(&g_ran), 1);
}

Test(pool, free_expires_queued_jobs_and_finishes_running_ones) {
  ic_prompt_pool_t *p = ic_prompt_pool_new(1, 64);
  cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(true, INT64_MAX, NULL)->base), 0);
  wait_for(p, 1, 0);
  for (int i = 0; i < 5; i++)
    cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(false, INT64_MAX, NULL)->base), 0);
  pthread_t th;
  pthread_create(&th, NULL, open_after, (void *)(intptr_t)100);
  ic_prompt_pool_free(p); /* returns once the running job finished */
  pthread_join(th, NULL);
  cr_assert_eq(atomic_load(&g_ran), 1);
  cr_assert_eq(atomic_load(&g_expired_shutdown), 5);
}

typedef struct {
  ic_prompt_pool_t *p;
  int ok, refused;
} submitter;

static void *submit_many(void *arg) {
  submitter *s = arg;
  for (int i = 0; i < 500; i++) {
    tjob *j = tjob_new(false, INT64_MAX, NULL);
    if (ic_prompt_pool_submit(s->p, &j->base) == 0) {
      s->ok++;
    } else {
      s->refused++;
      free(j);
    }
  }
  return NULL;
}

Test(pool, concurrent_submitters_lose_nothing) {
  ic_prompt_pool_t *p = ic_prompt_pool_new(2, 16);
  enum { N = 6 };
  pthread_t th[N];
  submitter s[N];
  for (int i = 0; i < N; i++) {
    s[i] = (submitter){.p = p};
    pthread_create(&th[i], NULL, submit_many, &s[i]);
  }
  int ok = 0, refused = 0;
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    ok += s[i].ok;
    refused += s[i].refused;
  }
  wait_for(p, 0, 0);
  cr_assert_eq(ok + refused, N * 500);
  cr_assert_eq(atomic_load(&g_ran), ok);
  ic_prompt_pool_stats_t st;
  ic_prompt_pool_stats(p, &st);
  cr_assert_eq(st.shed, (uint64_t)refused);
  ic_prompt_pool_free(p);
}

/* ------------------------------------------------------------------ deferred gRPC calls */

static ic_rpc_server_t *srv;
static ic_rpc_channel_t *ch;
static ic_prompt_pool_t *pool;
static atomic_int g_cancelled_seen, g_reply_failed;

typedef struct call_job {
  ic_prompt_job_t base;
  ic_rpc_deferred_t *d;
  char req[32];
} call_job;

static void reply(call_job *j, const char *text) {
  if (ic_rpc_deferred_reply(j->d, IC_RPC_OK, (const uint8_t *)text, strlen(text), NULL) != 0)
    atomic_fetch_add(&g_reply_failed, 1);
  free(j);
}

static void c_run(ic_prompt_job_t *b) {
  call_job *j = (call_job *)b;
  gate_wait();
  if (ic_rpc_deferred_cancelled(j->d)) {
    atomic_fetch_add(&g_cancelled_seen, 1);
    reply(j, "skipped");
    return;
  }
  char out[64];
  snprintf(out, sizeof out, "done:%s", j->req);
  reply(j, out);
}

static void c_expire(ic_prompt_job_t *b, ic_prompt_expiry_t why) {
  reply((call_job *)b, why == IC_PROMPT_EXPIRED_DEADLINE ? "expired" : "stopped");
}

/* Hands the call to the pool; a full pool answers "shed" at once, from this thread. */
static int slow(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len, ic_buf_t *resp,
                const char **msg) {
  (void)ud, (void)resp, (void)msg;
  call_job *j = calloc(1, sizeof *j);
  cr_assert_not_null(j);
  j->d = ic_rpc_call_defer(call);
  cr_assert_not_null(j->d);
  cr_assert_null(ic_rpc_call_defer(call), "a call is deferred once");
  memcpy(j->req, req, len < sizeof j->req - 1 ? len : sizeof j->req - 1);
  j->base = (ic_prompt_job_t){.deadline_ns = INT64_MAX, .run = c_run, .expire = c_expire};
  if (ic_prompt_pool_submit(pool, &j->base) != 0) reply(j, "shed");
  return IC_RPC_INTERNAL; /* ignored once deferred */
}

static int echo(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len, ic_buf_t *resp,
                const char **msg) {
  (void)ud, (void)call, (void)msg;
  ic_buf_append(resp, req, len);
  return IC_RPC_OK;
}

static void start_server(int max_in_flight) {
  reset();
  atomic_store(&g_cancelled_seen, 0);
  atomic_store(&g_reply_failed, 0);
  pool = ic_prompt_pool_new(1, max_in_flight);
  cr_assert_not_null(pool);
  char err[256];
  ic_rpc_server_opts_t o = {.threads = 1}; /* one completion-queue thread: it must stay free */
  srv = ic_rpc_server_new("127.0.0.1:0", &o, err, sizeof err, NULL);
  cr_assert_not_null(srv, "%s", err);
  cr_assert_eq(ic_rpc_server_add_unary(srv, "/t.S/Slow", slow, NULL), 0);
  cr_assert_eq(ic_rpc_server_add_unary(srv, "/t.S/Echo", echo, NULL), 0);
  cr_assert_eq(ic_rpc_server_start(srv), 0);
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", ic_rpc_server_port(srv));
  ch = ic_rpc_channel_new(target, NULL);
  cr_assert_eq(ic_rpc_channel_wait_ready(ch, 20000), 0);
}

static void stop_server(void) {
  gate_set(true);
  if (ch) ic_rpc_channel_free(ch);
  if (srv) ic_rpc_server_free(srv); /* first: the pool answers its calls */
  if (pool) ic_prompt_pool_free(pool);
  ch = NULL;
  srv = NULL;
  pool = NULL;
}

static void start_default(void) { start_server(64); }
TestSuite(deferred, .init = start_default, .fini = stop_server, .timeout = 120);

static void start_calls(ic_rpc_pipeline_t *pl, int n, int timeout_ms) {
  for (intptr_t i = 0; i < n; i++) {
    char b[16];
    int l = snprintf(b, sizeof b, "%d", (int)i);
    cr_assert_eq(ic_rpc_pipeline_start(pl, (const uint8_t *)b, (size_t)l, timeout_ms, (void *)i), 0);
  }
}

Test(deferred, completion_queue_thread_serves_others_while_calls_wait) {
  ic_rpc_pipeline_t *pl = ic_rpc_pipeline_new(ch, "/t.S/Slow");
  start_calls(pl, 10, 60000);
  wait_for(pool, 1, 9); /* every call handed over; the one worker holds one */
  int64_t t0 = ic_clock_monotonic_ns();
  ic_buf_t out = IC_BUF_INIT;
  int st = -1;
  cr_assert_eq(ic_rpc_unary(ch, "/t.S/Echo", (const uint8_t *)"hi", 2, 20000, &out, &st, NULL), 0);
  cr_assert_eq(st, IC_RPC_OK);
  cr_assert_lt(ic_clock_monotonic_ns() - t0, 5000 * 1000000LL);
  gate_set(true);
  bool seen[10] = {0};
  for (int k = 0; k < 10; k++) {
    void *tag;
    ic_buf_reset(&out);
    cr_assert_eq(ic_rpc_pipeline_next(pl, 30000, &tag, &st, &out), 1);
    cr_assert_eq(st, IC_RPC_OK);
    char want[32];
    snprintf(want, sizeof want, "done:%d", (int)(intptr_t)tag);
    cr_assert_eq(out.len, strlen(want));
    cr_assert_eq(memcmp(out.data, want, out.len), 0);
    seen[(intptr_t)tag] = true;
  }
  for (int i = 0; i < 10; i++) cr_assert(seen[i]);
  ic_buf_free(&out);
  ic_rpc_pipeline_free(pl);
  cr_assert_eq(atomic_load(&g_reply_failed), 0);
}

Test(deferred, cancelled_calls_are_seen_and_skipped) {
  ic_rpc_pipeline_t *pl = ic_rpc_pipeline_new(ch, "/t.S/Slow");
  start_calls(pl, 5, 300); /* the client's deadline passes while they wait: gRPC cancels them */
  ic_buf_t out = IC_BUF_INIT;
  for (int k = 0; k < 5; k++) {
    void *tag;
    int st;
    cr_assert_eq(ic_rpc_pipeline_next(pl, 30000, &tag, &st, &out), 1);
    cr_assert_eq(st, IC_RPC_DEADLINE_EXCEEDED);
  }
  ic_rpc_pipeline_free(pl);
  wait_for(pool, 1, 4); /* still held: the worker waits on the gate */
  usleep(100000);       /* the cancellations reach the server */
  gate_set(true);
  wait_for(pool, 0, 0);
  cr_assert_eq(atomic_load(&g_cancelled_seen), 5);
  cr_assert_eq(atomic_load(&g_reply_failed), 5, "a cancelled call's reply sends nothing");
  ic_buf_free(&out);
}

static void start_small(void) { start_server(4); }
TestSuite(deferred_small, .init = start_small, .fini = stop_server, .timeout = 120);

Test(deferred_small, beyond_the_bound_calls_are_shed_with_ok) {
  ic_rpc_pipeline_t *pl = ic_rpc_pipeline_new(ch, "/t.S/Slow");
  start_calls(pl, 4, 60000);
  wait_for(pool, 1, 3);
  ic_rpc_pipeline_t *more = ic_rpc_pipeline_new(ch, "/t.S/Slow");
  start_calls(more, 4, 60000);
  ic_buf_t out = IC_BUF_INIT;
  for (int k = 0; k < 4; k++) { /* answered while the first four still wait */
    void *tag;
    int st;
    ic_buf_reset(&out);
    cr_assert_eq(ic_rpc_pipeline_next(more, 30000, &tag, &st, &out), 1);
    cr_assert_eq(st, IC_RPC_OK);
    cr_assert_eq(out.len, 4);
    cr_assert_eq(memcmp(out.data, "shed", 4), 0);
  }
  gate_set(true);
  for (int k = 0; k < 4; k++) {
    void *tag;
    int st;
    ic_buf_reset(&out);
    cr_assert_eq(ic_rpc_pipeline_next(pl, 30000, &tag, &st, &out), 1);
    cr_assert_eq(st, IC_RPC_OK);
    cr_assert_eq(memcmp(out.data, "done:", 5), 0);
  }
  ic_buf_free(&out);
  ic_rpc_pipeline_free(more);
  ic_rpc_pipeline_free(pl);
}

Test(deferred_small, server_shutdown_waits_for_the_pool_to_answer) {
  ic_rpc_pipeline_t *pl = ic_rpc_pipeline_new(ch, "/t.S/Slow");
  start_calls(pl, 3, 60000);
  wait_for(pool, 1, 2);
  pthread_t th;
  pthread_create(&th, NULL, open_after, (void *)(intptr_t)400);
  int64_t t0 = ic_clock_monotonic_ns();
  ic_rpc_server_shutdown(srv, 100); /* drain 100 ms, then cancel: the jobs are still waiting */
  int64_t took = ic_clock_monotonic_ns() - t0;
  pthread_join(th, NULL);
  cr_assert_geq(took, 300 * 1000000LL, "shutdown returned after %.0f ms, before the replies",
                took / 1e6);
  ic_prompt_pool_stats_t st;
  ic_prompt_pool_stats(pool, &st);
  cr_assert_eq(st.queued + st.running, 0);
  cr_assert_eq(atomic_load(&g_cancelled_seen), 3, "cancelled at the end of the drain");
  ic_buf_t out = IC_BUF_INIT;
  for (int k = 0; k < 3; k++) {
    void *tag;
    int s;
    cr_assert_eq(ic_rpc_pipeline_next(pl, 30000, &tag, &s, &out), 1);
    cr_assert_neq(s, IC_RPC_OK);
  }
  ic_buf_free(&out);
  ic_rpc_pipeline_free(pl);
}

Test(deferred_small, freeing_the_pool_answers_queued_calls) {
  ic_rpc_pipeline_t *pl = ic_rpc_pipeline_new(ch, "/t.S/Slow");
  start_calls(pl, 3, 60000);
  wait_for(pool, 1, 2);
  pthread_t th;
  pthread_create(&th, NULL, open_after, (void *)(intptr_t)200);
  ic_prompt_pool_free(pool);
  pool = NULL;
  pthread_join(th, NULL);
  ic_buf_t out = IC_BUF_INIT;
  int done = 0, stopped = 0;
  for (int k = 0; k < 3; k++) {
    void *tag;
    int s;
    ic_buf_reset(&out);
    cr_assert_eq(ic_rpc_pipeline_next(pl, 30000, &tag, &s, &out), 1);
    cr_assert_eq(s, IC_RPC_OK);
    done += out.len >= 5 && !memcmp(out.data, "done:", 5);
    stopped += out.len == 7 && !memcmp(out.data, "stopped", 7);
  }
  cr_assert_eq(done, 1);
  cr_assert_eq(stopped, 2);
  ic_buf_free(&out);
  ic_rpc_pipeline_free(pl);
}
