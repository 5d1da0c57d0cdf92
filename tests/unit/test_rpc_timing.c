/* lib/rpc latency plumbing over real loopback gRPC: the server's timing trailer (opts
 * timing_trailer) read back through the pipeline, recycled unary calls staying correct across
 * many calls and error statuses, and the default thread count following the affinity mask. */
#include <criterion/criterion.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/rpc/rpc_internal.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/rpc.h"

static int echo(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len, ic_buf_t *resp,
                const char **msg) {
  (void)ud, (void)call;
  if (len == 4 && memcmp(req, "fail", 4) == 0)
    return *msg = "asked to fail", IC_RPC_INVALID_ARGUMENT;
  ic_buf_append(resp, req, len);
  return IC_RPC_OK;
}

static ic_rpc_server_t *start_server(bool timing, int threads, ic_rpc_channel_t **ch) {
  char err[256], target[64];
  ic_rpc_server_opts_t o = {.threads = threads, .timing_trailer = timing};
  ic_rpc_server_t *s = ic_rpc_server_new("127.0.0.1:0", &o, err, sizeof err, NULL);
  cr_assert_not_null(s, "%s", err);
  cr_assert_eq(ic_rpc_server_add_unary(s, "/t.S/Echo", echo, NULL), 0);
  cr_assert_eq(ic_rpc_server_start(s), 0);
  snprintf(target, sizeof target, "127.0.0.1:%d", ic_rpc_server_port(s));
  *ch = ic_rpc_channel_new(target, NULL);
  cr_assert_not_null(*ch);
  cr_assert_eq(ic_rpc_channel_wait_ready(*ch, 20000), 0);
  return s;
}

/* Every answer carries arrival <= handler start <= handler end, all between the client's send
 * and receive (one clock on one host); 1 in 7 calls fails and its status still comes through. */
Test(rpc_timing, trailer_orders_the_stages_and_recycled_calls_stay_correct) {
  ic_rpc_channel_t *ch;
  ic_rpc_server_t *s = start_server(true, 1, &ch);
  ic_rpc_pipeline_t *p = ic_rpc_pipeline_new(ch, "/t.S/Echo");
  enum { N = 600, WINDOW = 24 };
  static int64_t sent[N];
  ic_buf_t out = IC_BUF_INIT;
  int started = 0, done = 0, failed = 0;
  while (done < N) {
    while (started < N && started - done < WINDOW) {
      char b[16];
      int l =
          started % 7 == 3 ? snprintf(b, sizeof b, "fail") : snprintf(b, sizeof b, "c%d", started);
      sent[started] = ic_clock_monotonic_ns();
      cr_assert_eq(
          ic_rpc_pipeline_start(p, (const uint8_t *)b, (size_t)l, 10000, (void *)(intptr_t)started),
          0);
      started++;
    }
    void *tag;
    int st;
    ic_buf_reset(&out);
    cr_assert_eq(ic_rpc_pipeline_next(p, 20000, &tag, &st, &out), 1);
    int64_t now = ic_clock_monotonic_ns();
    int i = (int)(intptr_t)tag;
    if (i % 7 == 3) {
      cr_assert_eq(st, IC_RPC_INVALID_ARGUMENT);
      failed++;
    } else {
      char want[16];
      int l = snprintf(want, sizeof want, "c%d", i);
      cr_assert_eq(st, IC_RPC_OK);
      cr_assert_eq(out.len, (size_t)l);
      cr_assert(memcmp(out.data, want, (size_t)l) == 0, "call %d got another call's answer", i);
    }
    char v[96];
    long long arrive, h0, h1;
    if (st == IC_RPC_OK) {
      cr_assert_eq(ic_rpc_pipeline_last_trailer(p, IC_RPC_TIMING_TRAILER, v, sizeof v), 0);
      cr_assert_eq(sscanf(v, "%lld,%lld,%lld", &arrive, &h0, &h1), 3, "trailer '%s'", v);
      cr_assert(sent[i] <= arrive && arrive <= h0 && h0 <= h1 && h1 <= now,
                "stages out of order: %s", v);
    }
    done++;
  }
  cr_assert_eq(failed, N / 7 + (N % 7 > 3));
  cr_assert_eq(ic_rpc_pipeline_last_trailer(p, "no-such-key", (char[8]){0}, 8), IC_ENOTFOUND);
  ic_buf_free(&out);
  ic_rpc_pipeline_free(p);
  ic_rpc_channel_free(ch);
  ic_rpc_server_free(s);
}

Test(rpc_timing, no_trailer_unless_asked) {
  ic_rpc_channel_t *ch;
  ic_rpc_server_t *s = start_server(false, 2, &ch);
  ic_rpc_pipeline_t *p = ic_rpc_pipeline_new(ch, "/t.S/Echo");
  cr_assert_eq(ic_rpc_pipeline_start(p, (const uint8_t *)"x", 1, 10000, NULL), 0);
  void *tag;
  int st;
  cr_assert_eq(ic_rpc_pipeline_next(p, 20000, &tag, &st, NULL), 1);
  cr_assert_eq(st, IC_RPC_OK);
  char v[96];
  cr_assert_eq(ic_rpc_pipeline_last_trailer(p, IC_RPC_TIMING_TRAILER, v, sizeof v), IC_ENOTFOUND);
  ic_rpc_pipeline_free(p);
  ic_rpc_channel_free(ch);
  ic_rpc_server_free(s);
}

/* A process confined to one CPU gets one completion-queue thread by default, not one per core. */
Test(rpc_timing, usable_cpus_follow_the_affinity_mask) {
  cpu_set_t all, one;
  cr_assert_eq(sched_getaffinity(0, sizeof all, &all), 0);
  int n = ic_rpc_usable_cpus();
  cr_assert(n >= 1 && n <= CPU_COUNT(&all), "usable %d of %d", n, CPU_COUNT(&all));
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &all)) {
      CPU_SET(c, &one);
      break;
    }
  cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
  cr_assert_eq(ic_rpc_usable_cpus(), 1);
  cr_assert_eq(sched_setaffinity(0, sizeof all, &all), 0);
}
