/* libFuzzer target for lib/kube's decoding of untrusted API-server bytes: one watch-event line,
 * then the helpers the controller runs over decoded objects (lookups, conditions, merge diff). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *type = NULL;
  json_t *obj = NULL;
  if (ic_kube_watch_parse_event((const char *)data, size, &type, &obj) == 0) {
    (void)ic_kube_jstr(obj, "metadata.resourceVersion");
    (void)ic_kube_is_controlled_by(obj, "uid");
    json_t *status = json_object_get(obj, "status");
    if (json_is_object(status)) {
      json_t *copy = json_deep_copy(status);
      (void)ic_kube_condition_get(copy, "Ready");
      ic_kube_condition_set(copy, "Ready", "True", "R", "m", 1, "2026-01-01T00:00:00Z");
      json_t *d = ic_kube_merge_diff(status, copy);
      json_decref(d);
      json_decref(copy);
    }
    int64_t us;
    (void)ic_kube_parse_time(ic_kube_jstr(obj, "metadata.creationTimestamp"), &us);
    free(type);
    json_decref(obj);
  }
  /* The same bytes as a kubeconfig-style YAML document. */
  json_t *y = NULL;
  if (size < 4096 && ic_kube_yaml_to_json((const char *)data, size, &y) == 0) json_decref(y);
  return 0;
}
