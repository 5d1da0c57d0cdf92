/* libFuzzer target: AdmissionReview bodies for every webhook path (the controller's HTTPS webhook
 * input). The namespace listing alternates between a fixed list, an empty one and a failure so the
 * cross-object checks and fail-open paths run too. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/admission.h"

static json_t *list(void *ud, const char *kind, const char *ns, char *err, size_t n) {
  (void)kind, (void)ns;
  int mode = *(int *)ud;
  if (mode == 2) {
    snprintf(err, n, "list failed");
    return NULL;
  }
  if (mode == 1) return json_array();
  return json_loads("[{\"kind\":\"CacheBackend\",\"metadata\":{\"name\":\"a\",\"namespace\":\"llm\"},\"spec\":{"
                    "\"runtime\":\"VLLM\",\"engineSelector\":{\"matchLabels\":{\"inferencecache.io/cache-domain\":"
                    "\"chat\"}},\"lmCache\":{\"topology\":\"PodLocal\",\"podLocal\":{\"server\":{\"image\":\"i@sha256:"
                    "0000000000000000000000000000000000000000000000000000000000000000\",\"port\":5555,\"l1Capacity\":"
                    "\"1Gi\",\"maxWorkers\":1,\"resources\":{}}}},\"observation\":{\"modelID\":\"m\"}}},"
                    "{\"kind\":\"CacheTenant\",\"metadata\":{\"name\":\"t\"},\"spec\":{\"tenantID\":\"x\"}}]",
                    0, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int mode = data[0] % 3;
  ic_admission_hook_t hook = (ic_admission_hook_t)((data[0] / 3) % IC_ADM_COUNT);
  ic_admission_config_t cfg = {.subscriber_image = "sub:1", .list = list, .list_ud = &mode};
  char *out = NULL;
  size_t len = 0;
  ic_admission_review(&cfg, hook, (const char *)data + 1, size - 1, &out, &len);
  free(out);
  /* the raw body as a Pod and a CacheBackend for the building blocks */
  json_t *j = json_loadb((const char *)data + 1, size - 1, 0, NULL);
  if (j) {
    json_t *backends = list(&mode, "CacheBackend", "llm", (char[64]){0}, 64);
    ic_admission_pod_result_t res;
    memset(&res, 0, sizeof res);
    ic_admission_mutate_pod(&cfg, j, "llm", backends, &res);
    json_decref(res.patched);
    json_t *ops = ic_admission_json_patch(j, backends ? backends : j);
    json_decref(ops);
    json_decref(backends);
    json_decref(j);
  }
  return 0;
}
