/* lib/kube micro-benchmarks: work-queue throughput (add/get/done with de-duplication), watch-event
 * decoding and merge-patch generation on a CacheBackend-sized object. Prints JSON lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/clock.h"
#include "ic/kube.h"

static void emit(const char *name, double value, const char *unit, const char *params) {
  printf("{\"bench\":\"kube\",\"name\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"params\":%s}\n", name,
         value, unit, params);
  fflush(stdout);
}

static const char *EVENT =
    "{\"type\":\"MODIFIED\",\"object\":{\"apiVersion\":\"inferencecache.io/v1alpha1\","
    "\"kind\":\"CacheBackend\",\"metadata\":{\"name\":\"kv\",\"namespace\":\"llm\",\"uid\":"
    "\"0c7c3d2e-1111-2222-3333-444455556666\",\"resourceVersion\":\"123456\",\"generation\":3},"
    "\"spec\":{\"type\":\"LMCache\",\"runtime\":\"VLLM\",\"remoteStorage\":{\"provider\":\"Redis\","
    "\"ownership\":\"Managed\"},\"engineSelector\":{\"matchLabels\":{\"inferencecache.io/cache-domain\":"
    "\"d1\"}}},\"status\":{\"health\":\"Ready\",\"endpoint\":\"kv.llm.svc.cluster.local:6379\","
    "\"observedGeneration\":3,\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":"
    "\"BackendReady\",\"message\":\"1/1 replicas available\",\"lastTransitionTime\":"
    "\"2026-01-01T00:00:00Z\",\"observedGeneration\":3},{\"type\":\"Progressing\",\"status\":"
    "\"False\",\"reason\":\"Synced\",\"message\":\"rendered children match desired state\","
    "\"lastTransitionTime\":\"2026-01-01T00:00:00Z\",\"observedGeneration\":3}]}}}";

int main(void) {
  /* Work queue: 100k adds over 1000 keys (so most adds are de-duplicated), then drain. */
  ic_kube_queue_t *q = ic_kube_queue_new(5, 1000);
  char key[32];
  int64_t t0 = ic_clock_monotonic_ns();
  const int adds = 100000, keys = 1000;
  for (int i = 0; i < adds; i++) {
    snprintf(key, sizeof key, "ns/cb-%d", i % keys);
    ic_kube_queue_add(q, key);
  }
  int got = 0;
  char *k;
  while ((k = ic_kube_queue_get(q, 0)) != NULL) {
    ic_kube_queue_done(q, k);
    got++;
  }
  double secs = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
  char params[128];
  snprintf(params, sizeof params, "{\"adds\":%d,\"keys\":%d,\"handed_out\":%d}", adds, keys, got);
  emit("queue_add_dedup_drain", adds / secs, "ops/s", params);
  ic_kube_queue_free(q);

  /* Watch-event decode of a CacheBackend MODIFIED event. */
  const int n = 50000;
  size_t len = strlen(EVENT);
  t0 = ic_clock_monotonic_ns();
  for (int i = 0; i < n; i++) {
    char *type;
    json_t *obj;
    if (ic_kube_watch_parse_event(EVENT, len, &type, &obj) != 0) return 1;
    free(type);
    json_decref(obj);
  }
  secs = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
  snprintf(params, sizeof params, "{\"bytes\":%zu}", len);
  emit("watch_event_decode", n / secs, "events/s", params);

  /* Status diff with one changed condition message (the steady-state check runs this). */
  char *t;
  json_t *obj;
  ic_kube_watch_parse_event(EVENT, len, &t, &obj);
  free(t);
  json_t *a = json_object_get(obj, "status"), *b = json_deep_copy(a);
  ic_kube_condition_set(b, "Ready", "True", "BackendReady", "2/2 replicas available", 3,
                        "2026-01-02T00:00:00Z");
  t0 = ic_clock_monotonic_ns();
  for (int i = 0; i < n; i++) json_decref(ic_kube_merge_diff(a, b));
  secs = (double)(ic_clock_monotonic_ns() - t0) / 1e9;
  emit("status_merge_diff", n / secs, "diffs/s", "{\"changed\":\"one condition\"}");
  json_decref(b);
  json_decref(obj);
  return 0;
}
