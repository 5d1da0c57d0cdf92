/* Part of bench_tokenizer: LookupRoute with prompt_text through the real service logic
 * (lib/svc + lib/index + lib/prompt, no network), p50 of a 12k-token chat prompt with a cold
 * prefix cache (every prompt starts differently) and warm (a long shared prefix, new question). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/index.h"
#include "ic/prompt.h"
#include "ic/rpc.h"
#include "ic/svc.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"

static int prompt_fn(void *ud, const char *model_id, const char *text, size_t len, size_t max_ids,
                     uint32_t **ids, size_t *n) {
  ic_tok_ids v = {0};
  int rc = ic_prompt_encode(ud, model_id, text, len, max_ids, &v, NULL);
  if (rc) return ic_tok_ids_free(&v), rc;
  *ids = v.v;
  *n = v.n;
  return 0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double thread_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One LookupRoute; returns handler ms (wall), its thread-CPU ms and the echoed token count. The
 * CPU figure is what the request costs when the shared machine preempts the bench. */
static double one_lookup(ic_svc_t *svc, const char *model, const char *text, size_t *ntok,
                         double *cpu_ms) {
  Inferencecache__V1alpha1__LookupRouteRequest q =
      INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.model_id = (char *)model;
  q.tenant_id = "bench";
  q.hash_scheme = "vllm";
  q.prompt_text = (char *)text;
  size_t len = inferencecache__v1alpha1__lookup_route_request__get_packed_size(&q);
  uint8_t *buf = malloc(len);
  inferencecache__v1alpha1__lookup_route_request__pack(&q, buf);
  ic_buf_t out = IC_BUF_INIT;
  const char *msg;
  double c0 = thread_cpu_ms();
  int64_t t0 = ic_clock_monotonic_ns();
  ic_svc_lookup_route(svc, buf, len, INT64_MAX, &out, &msg);
  double ms = (double)(ic_clock_monotonic_ns() - t0) / 1e6;
  *cpu_ms = thread_cpu_ms() - c0;
  Inferencecache__V1alpha1__LookupRouteResponse *r =
      inferencecache__v1alpha1__lookup_route_response__unpack(NULL, out.len,
                                                              (const uint8_t *)out.data);
  *ntok = r ? r->n_token_ids : 0;
  if (r) inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  ic_buf_free(&out);
  free(buf);
  return ms;
}

void bench_prompt_lookup(const char *models_root, const char *prose, size_t plen);
void bench_prompt_lookup(const char *models_root, const char *prose, size_t plen) {
  char err[512];
  ic_prompt_registry_t *reg;
  if (ic_prompt_registry_load(models_root, NULL, &reg, err, sizeof err)) {
    fprintf(stderr, "bench_tokenizer: %s\n", err);
    return;
  }
  ic_index_config_t icfg;
  ic_index_config_init(&icfg);
  ic_index_t *ix = ic_index_create(&icfg);
  ic_svc_config_t scfg = {.index = ix, .prompt_encode = prompt_fn, .prompt_ud = reg};
  ic_svc_t *svc = ic_svc_new(&scfg);
  static const char *models[] = {"tokenizer-llama3_1/models", "tokenizer-qwen3/models"};
  enum { RUNS = 41 };
  size_t body = plen < 56000 ? plen : 56000; /* ~12k tokens of English prose */
  char *text = malloc(body + 256);
  for (size_t m = 0; m < 2; m++) {
    if (!ic_prompt_registry_tokenizer(reg, models[m])) continue;
    double cold[RUNS], warm[RUNS], cold_cpu[RUNS], warm_cpu[RUNS], cpu;
    size_t ntok = 0;
    for (int i = 0; i < RUNS; i++) { /* cold: a different first line every time */
      int k = snprintf(text, 256, "Request %d of run %zu: read the document below.\n", i, m);
      memcpy(text + k, prose, body);
      strcpy(text + k + body, "\nQuestion: what does it say?");
      cold[i] = one_lookup(svc, models[m], text, &ntok, &cold_cpu[i]);
    }
    size_t cold_tok = ntok;
    int k = snprintf(text, 256, "Shared system context for run %zu.\n", m);
    memcpy(text + k, prose, body);
    size_t base = (size_t)k + body;
    for (int i = -1; i < RUNS;
         i++) { /* warm: the same long prefix, a new question (i = -1 fills it) */
      snprintf(text + base, 128, "\nQuestion %d: summarise section %d.", i, i * 3);
      double ms = one_lookup(svc, models[m], text, &ntok, &cpu);
      if (i >= 0) warm[i] = ms, warm_cpu[i] = cpu;
    }
    qsort(cold, RUNS, sizeof *cold, cmp_d);
    qsort(warm, RUNS, sizeof *warm, cmp_d);
    qsort(cold_cpu, RUNS, sizeof *cold_cpu, cmp_d);
    qsort(warm_cpu, RUNS, sizeof *warm_cpu, cmp_d);
    const char *short_name = m == 0 ? "llama3_1" : "qwen3";
    printf("{\"bench\":\"tokenizer\",\"name\":\"prompt_text_lookup_p50_ms\",\"value\":%.3f,"
           "\"unit\":\"ms\","
           "\"params\":{\"cache\":\"cold\",\"model\":\"%s\",\"tokens\":%zu,\"runs\":%d,\"p90_ms\":%"
           ".3f,\"cpu_p50_ms\":%.3f}}\n",
           cold[RUNS / 2], short_name, cold_tok, RUNS, cold[RUNS * 9 / 10], cold_cpu[RUNS / 2]);
    printf("{\"bench\":\"tokenizer\",\"name\":\"prompt_text_lookup_p50_ms\",\"value\":%.3f,"
           "\"unit\":\"ms\","
           "\"params\":{\"cache\":\"warm\",\"model\":\"%s\",\"tokens\":%zu,\"runs\":%d,\"p90_ms\":%"
           ".3f,\"cpu_p50_ms\":%.3f}}\n",
           warm[RUNS / 2], short_name, ntok, RUNS, warm[RUNS * 9 / 10], warm_cpu[RUNS / 2]);
    fflush(stdout);
  }
  free(text);
  ic_svc_free(svc);
  ic_index_destroy(ix);
  ic_prompt_registry_free(reg);
}
