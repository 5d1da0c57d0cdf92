/* Admission webhook cost: AdmissionReview body in -> response JSON out, per call, for the two hot
 * webhooks (Pod CREATE with a full vLLM PodLocal injection, and CacheBackend validation). The Pod
 * webhook runs on every Pod creation in the cluster, so its latency is what a deploy waits for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/admission.h"

#define DIGEST "registry.example/lmcache@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
static const char CB[] =
    "{\"apiVersion\":\"inferencecache.io/v1alpha1\",\"kind\":\"CacheBackend\",\"metadata\":{\"name\":\"cb\","
    "\"namespace\":\"llm\",\"uid\":\"u\",\"generation\":1},\"spec\":{\"runtime\":\"VLLM\",\"engineSelector\":{"
    "\"matchLabels\":{\"inferencecache.io/cache-domain\":\"chat\"}},\"lmCache\":{\"topology\":\"PodLocal\","
    "\"podLocal\":{\"server\":{\"image\":\"" DIGEST "\",\"port\":5555,\"l1Capacity\":\"4Gi\",\"maxWorkers\":4,"
    "\"resources\":{\"requests\":{\"cpu\":\"2\",\"memory\":\"6Gi\"},\"limits\":{\"memory\":\"6Gi\"}}}}},"
    "\"observation\":{\"modelID\":\"m\"}}}";
static const char POD[] =
    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"e\",\"namespace\":\"llm\",\"labels\":{"
    "\"inferencecache.io/cache-domain\":\"chat\"}},\"spec\":{\"containers\":[{\"name\":\"vllm\",\"image\":\"v\","
    "\"args\":[\"--model\",\"m\",\"--port\",\"8000\"],\"env\":[{\"name\":\"A\",\"value\":\"1\"}],\"resources\":"
    "{\"limits\":{\"nvidia.com/gpu\":\"1\"}}}]}}";

static json_t *g_backends;
static json_t *list(void *ud, const char *kind, const char *ns, char *err, size_t n) {
  (void)ud, (void)kind, (void)ns, (void)err, (void)n;
  return json_incref(g_backends);
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void run(const char *name, ic_admission_hook_t hook, const char *object, int iters) {
  ic_admission_config_t cfg = {.subscriber_image = "sub:1", .list = list};
  char *body = NULL;
  if (asprintf(&body, "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":"
                      "\"u\",\"operation\":\"CREATE\",\"namespace\":\"llm\",\"object\":%s}}", object) < 0)
    return;
  size_t len = strlen(body);
  double *lat = calloc((size_t)iters, sizeof *lat);
  double t0 = now_ns(), c0 = cpu_ns();
  for (int i = 0; i < iters; i++) {
    double s = now_ns();
    char *out = NULL;
    ic_admission_review(&cfg, hook, body, len, &out, NULL);
    free(out);
    lat[i] = now_ns() - s;
  }
  double total = now_ns() - t0, cpu = cpu_ns() - c0;
  qsort(lat, (size_t)iters, sizeof *lat, cmp);
  printf("{\"bench\":\"admission\",\"name\":\"%s_reviews_per_s\",\"value\":%.0f,\"unit\":\"1/s\",\"params\":{\"iters\":%d,\"body_bytes\":%zu}}\n",
         name, iters / (total / 1e9), iters, len);
  /* CPU time per call: on a shared machine wall-clock tails are mostly time spent descheduled */
  printf("{\"bench\":\"admission\",\"name\":\"%s_cpu_us_per_review\",\"value\":%.1f,\"unit\":\"us\",\"params\":{\"iters\":%d}}\n",
         name, cpu / iters / 1e3, iters);
  printf("{\"bench\":\"admission\",\"name\":\"%s_p50_us\",\"value\":%.1f,\"unit\":\"us\",\"params\":{\"iters\":%d}}\n",
         name, lat[iters / 2] / 1e3, iters);
  printf("{\"bench\":\"admission\",\"name\":\"%s_p99_us\",\"value\":%.1f,\"unit\":\"us\",\"params\":{\"iters\":%d}}\n",
         name, lat[(int)(iters * 0.99)] / 1e3, iters);
  free(lat);
  free(body);
}

int main(void) {
  char *list_json = NULL;
  if (asprintf(&list_json, "[%s]", CB) < 0) return 1;
  g_backends = json_loads(list_json, 0, NULL);
  free(list_json);
  run("pod_inject", IC_ADM_POD_MUTATE, POD, 5000);
  run("cachebackend_validate", IC_ADM_CACHEBACKEND_VALIDATE, CB, 5000);
  json_decref(g_backends);
  return 0;
}
