/* Pure parts of the controller's server fleet (fleet.c): per-replica URLs, the fleet view of
 * several /snapshot bodies (never a sum; freshest engine row wins) and the PUT /reporters body. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"

static void url_is(const char *url, const char *host, const char *want) {
  char out[256];
  cr_assert_eq(ctl_url_with_host(url, host, out, sizeof out), 0, "%s", url);
  cr_assert_str_eq(out, want);
}

Test(kube_controller_fleet, url_host_replaced_port_and_path_kept) {
  url_is("http://inference-cache-server:8081/policy", "10.0.0.5", "http://10.0.0.5:8081/policy");
  url_is("http://svc/snapshot", "10.0.0.5", "http://10.0.0.5/snapshot");
  url_is("https://u:p@svc:9/x?y=1", "[fd00::5]", "https://u:p@[fd00::5]:9/x?y=1");
  url_is("http://[::1]:8081/policy", "10.1.2.3", "http://10.1.2.3:8081/policy");
  url_is("http://svc:8081", "1.2.3.4", "http://1.2.3.4:8081");
  char out[16];
  cr_assert_eq(ctl_url_with_host("no-scheme/policy", "1.2.3.4", out, sizeof out), -1);
  cr_assert_eq(ctl_url_with_host("http:///policy", "1.2.3.4", out, sizeof out), -1);
  cr_assert_eq(ctl_url_with_host("http://svc:8081/a-long-path", "10.0.0.5", out, sizeof out), -1);
}

static json_t *snap(const char *text) {
  json_t *j = json_loads(text, 0, NULL);
  cr_assert_not_null(j, "bad fixture %s", text);
  return j;
}

Test(kube_controller_fleet, merge_takes_most_complete_totals_and_freshest_rows) {
  json_t *a =
      snap("{\"replicas\":[{\"replicaId\":\"e0\",\"tenant\":\"t\",\"prefixCount\":5,"
           "\"lastUpdate\":\"2026-01-01T00:00:05Z\",\"lastEventAt\":\"2026-01-01T00:00:05Z\"}],"
           "\"tenants\":[{\"tenantId\":\"t\",\"indexEntries\":5}],\"totalPrefixes\":5,"
           "\"hotPrefixes\":0}");
  json_t *b = snap("{\"replicas\":[{\"replicaId\":\"e0\",\"tenant\":\"t\",\"prefixCount\":4,"
                   "\"lastUpdate\":\"2026-01-01T00:00:03Z\"},"
                   "{\"replicaId\":\"e1\",\"tenant\":\"t\",\"prefixCount\":3,"
                   "\"lastUpdate\":\"2026-01-01T00:00:04Z\"}],"
                   "\"tenants\":[{\"tenantId\":\"t\",\"indexEntries\":7}],\"totalPrefixes\":7,"
                   "\"hotPrefixes\":0}");
  json_t *v[] = {a, b};
  json_t *m = ctl_fleet_merge(v, 2);
  cr_assert_eq(json_integer_value(json_object_get(m, "totalPrefixes")), 7); /* not 12 */
  cr_assert_eq(json_integer_value(
                   ic_kube_jget(json_array_get(json_object_get(m, "tenants"), 0), "indexEntries")),
               7);
  json_t *rows = json_object_get(m, "replicas");
  cr_assert_eq(json_array_size(rows), 2);
  /* e0 from a (fresher lastUpdate), e1 only b knows */
  cr_assert_str_eq(ic_kube_jstr(json_array_get(rows, 0), "replicaId"), "e0");
  cr_assert_eq(json_integer_value(json_object_get(json_array_get(rows, 0), "prefixCount")), 5);
  cr_assert_str_eq(ic_kube_jstr(json_array_get(rows, 1), "replicaId"), "e1");
  json_decref(m);
  /* Same engine id in two tenants stays two rows. */
  json_t *c = snap("{\"replicas\":[{\"replicaId\":\"e0\",\"tenant\":\"u\",\"prefixCount\":1}],"
                   "\"tenants\":null,\"totalPrefixes\":1,\"hotPrefixes\":0}");
  json_t *w[] = {a, c};
  m = ctl_fleet_merge(w, 2);
  cr_assert_eq(json_array_size(json_object_get(m, "replicas")), 2);
  cr_assert_eq(json_integer_value(json_object_get(m, "totalPrefixes")), 5);
  json_decref(m);
  json_decref(a);
  json_decref(b);
  json_decref(c);
}

Test(kube_controller_fleet, merge_of_nothing_or_garbage_is_empty) {
  json_t *m = ctl_fleet_merge(NULL, 0);
  cr_assert(json_is_object(m) && json_object_size(m) == 0);
  json_decref(m);
  json_t *bad = json_string("x"), *v[] = {bad};
  m = ctl_fleet_merge(v, 1);
  cr_assert_eq(json_object_size(m), 0);
  json_decref(m);
  json_decref(bad);
}

Test(kube_controller_fleet, reporters_body_names_running_pods_with_the_sidecar) {
  json_t *pods = snap(
      "{\"items\":["
      "{\"metadata\":{\"name\":\"b\"},\"spec\":{\"containers\":[{\"name\":\"vllm\"},"
      "{\"name\":\"kvevent-subscriber\"}]},\"status\":{\"phase\":\"Running\"}},"
      "{\"metadata\":{\"name\":\"a\"},\"spec\":{\"containers\":[{\"name\":\"vllm\"}],"
      "\"initContainers\":[{\"name\":\"kvevent-subscriber\"}]},\"status\":{\"phase\":\"Running\"}},"
      "{\"metadata\":{\"name\":\"b\",\"namespace\":\"other\"},\"spec\":{\"containers\":[{\"name\":"
      "\"kvevent-subscriber\"}]},\"status\":{\"phase\":\"Running\"}},"
      "{\"metadata\":{\"name\":\"pending\"},\"spec\":{\"containers\":[{\"name\":\"kvevent-"
      "subscriber\"}]},"
      "\"status\":{\"phase\":\"Pending\"}},"
      "{\"metadata\":{\"name\":\"going\",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"},"
      "\"spec\":{\"containers\":[{\"name\":\"kvevent-subscriber\"}]},\"status\":{\"phase\":"
      "\"Running\"}},"
      "{\"metadata\":{\"name\":\"plain\"},\"spec\":{\"containers\":[{\"name\":\"vllm\"}]},"
      "\"status\":{\"phase\":\"Running\"}},"
      "{\"spec\":{}}, 7]}");
  char *body = ctl_reporters_body(pods);
  cr_assert_str_eq(body, "{\"replicas\":[\"a\",\"b\"]}");
  free(body);
  json_decref(pods);
  json_t *none = snap("{}");
  body = ctl_reporters_body(none);
  cr_assert_str_eq(body, "{\"replicas\":[]}");
  free(body);
  json_decref(none);
}
