/* Benchmark for lib/policy: per-tenant knob resolution (what every LookupRoute pays) idle and
 * while a writer replaces the whole policy set in a loop, plus /policy parse throughput.
 * Prints JSON lines {"bench":"policy","name",...}; the ratio is what matters on a noisy host. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/policy.h"

#define NPOL 256

static char *make_body(int npol) {
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append_str(&b, "{\"version\":7,\"policies\":[");
  for (int i = 0; i < npol; i++)
    ic_buf_appendf(
        &b,
        "%s{\"namespace\":\"team-%04d\",\"minimumPrefixTokens\":%d,\"lookupTimeoutMs\":10,"
        "\"eviction\":\"lfu\",\"routingFloorScore\":0.5,\"strategy\":{\"requireChain\":false}}",
        i ? "," : "", i, i);
  ic_buf_append_str(&b, "],\"tenants\":[");
  for (int i = 0; i < npol; i++)
    ic_buf_appendf(&b, "%s{\"tenantID\":\"team-%04d\",\"maxIndexEntries\":%d}", i ? "," : "", i,
                   1000 + i);
  ic_buf_append_str(&b, "]}");
  return ic_buf_detach(&b, NULL);
}

static void push(ic_policy_store_t *s, const char *body) {
  ic_policy_doc_t *doc;
  char msg[128];
  if (ic_policy_parse(body, strlen(body), false, &doc, msg, sizeof msg) == IC_POLICY_OK)
    ic_policy_store_replace(s, doc);
}

typedef struct {
  ic_policy_store_t *s;
  const char *body;
  atomic_int stop;
  long pushes;
} writer_t;

static void *writer(void *p) {
  writer_t *w = p;
  while (!atomic_load(&w->stop)) {
    push(w->s, w->body);
    w->pushes++;
  }
  return NULL;
}

#define NNAMES (NPOL + 16) /* some tenants have no policy */
static char names[NNAMES][16];

static double resolve_ns(ic_policy_store_t *s, long iters) {
  volatile int32_t sink = 0;
  int64_t t0 = ic_clock_monotonic_ns();
  for (long i = 0; i < iters; i++) {
    const char *t = names[i % NNAMES];
    ic_policy_knobs_t k;
    ic_policy_store_resolve(s, t, 9, &k);
    sink += k.minimum_prefix_tokens;
  }
  (void)sink;
  return (double)(ic_clock_monotonic_ns() - t0) / (double)iters;
}

int main(void) {
  for (int i = 0; i < NNAMES; i++)
    snprintf(names[i], sizeof names[i], "team-%04d", i);
  char *body = make_body(NPOL);
  ic_policy_store_t *s = ic_policy_store_new();
  push(s, body);
  const long iters = 2000000;
  resolve_ns(s, iters / 10); /* warm up */
  double idle = resolve_ns(s, iters);
  printf("{\"bench\":\"policy\",\"name\":\"resolve_ns_idle\",\"value\":%.1f,\"unit\":\"ns/op\","
         "\"params\":{\"policies\":%d,\"iters\":%ld}}\n",
         idle, NPOL, iters);

  writer_t w = {.s = s, .body = body};
  pthread_t th;
  pthread_create(&th, NULL, writer, &w);
  double busy = resolve_ns(s, iters);
  atomic_store(&w.stop, 1);
  pthread_join(th, NULL);
  printf("{\"bench\":\"policy\",\"name\":\"resolve_ns_during_pushes\",\"value\":%.1f,\"unit\":"
         "\"ns/op\",\"params\":{\"policies\":%d,\"iters\":%ld,\"pushes\":%ld}}\n",
         busy, NPOL, iters, w.pushes);
  printf("{\"bench\":\"policy\",\"name\":\"resolve_busy_vs_idle_ratio\",\"value\":%.2f,\"unit\":"
         "\"ratio\",\"params\":{\"policies\":%d}}\n",
         busy / idle, NPOL);

  size_t blen = strlen(body);
  int64_t t0 = ic_clock_monotonic_ns();
  int n = 200;
  for (int i = 0; i < n; i++)
    push(s, body);
  double per = (double)(ic_clock_monotonic_ns() - t0) / n / 1000.0;
  printf("{\"bench\":\"policy\",\"name\":\"push_us\",\"value\":%.1f,\"unit\":\"us/op\","
         "\"params\":{\"policies\":%d,\"tenants\":%d,\"body_bytes\":%zu}}\n",
         per, NPOL, NPOL, blen);
  ic_policy_store_free(s);
  free(body);
  return 0;
}
