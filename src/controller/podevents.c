/* EnginePodEvents reconciler: on engine Pod creation, a Normal Event on the
 * Pod for `kubectl describe` — InjectedByCacheBackend (stamp verified against the live CR's uid) or
 * SkippedByOperator (explicit opt-out marker). Never writes anything but Events. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "controller.h"
#include "ic/api.h"
#include "ic/log.h"

static const char *ann(json_t *pod, const char *key) {
  json_t *v = json_object_get(ic_kube_jget(pod, "metadata.annotations"), key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* skip-inject: empty = no; strconv.ParseBool values honoured; other values opt out except
 * no/off/disable/disabled (case-insensitive). */
static bool skip_inject(const char *v) {
  if (!v || !*v) return false;
  const char *t[] = {"1", "t", "T", "TRUE", "true", "True"};
  const char *f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (int i = 0; i < 6; i++) {
    if (strcmp(v, t[i]) == 0) return true;
    if (strcmp(v, f[i]) == 0) return false;
  }
  const char *no[] = {"no", "off", "disable", "disabled"};
  for (int i = 0; i < 4; i++)
    if (strcasecmp(v, no[i]) == 0) return false;
  return true;
}

static bool skipped_marker(json_t *pod) {
  const char *m = ann(pod, "inferencecache.io/inject-skipped");
  return skip_inject(ann(pod, "inferencecache.io/skip-inject")) && m &&
         strcmp(m, "skip-inject-annotation") == 0;
}

bool ctl_pod_event_candidate(json_t *pod) {
  return ann(pod, "inferencecache.io/injected-by") != NULL || skipped_marker(pod);
}

/* A well-formed "<ns>/<name>" reference: one slash, DNS-1123 label / subdomain halves. */
static bool split_ref(const char *ref, char ns[256], char name[256]) {
  const char *slash = ref ? strchr(ref, '/') : NULL;
  if (!slash || strchr(slash + 1, '/') || slash - ref >= 256 || strlen(slash + 1) >= 256) return false;
  snprintf(ns, 256, "%.*s", (int)(slash - ref), ref);
  snprintf(name, 256, "%s", slash + 1);
  return ic_api_is_dns1123_label(ns) && ic_api_is_dns1123_subdomain(name);
}

int ctl_reconcile_pod_events(ctl_t *c, const char *key) {
  const char *slash = strchr(key, '/');
  if (!slash) return 0;
  char pns[256], pname[256];
  snprintf(pns, sizeof pns, "%.*s", (int)(slash - key), key);
  snprintf(pname, sizeof pname, "%s", slash + 1);
  json_t *pod = NULL;
  ic_kube_status_t st;
  int rc = ic_kube_get(c->kube, &ic_kube_res_pods, pns, pname, &pod, &st);
  if (rc == IC_ENOTFOUND) return 0;
  if (rc != 0) return rc;
  /* Announce each Pod (uid) once per process, however often its key was queued. */
  const char *puid = ic_kube_jstr(pod, "metadata.uid");
  if (puid && c->pods_announced) {
    /* Bounded: forgetting old uids at worst repeats an Event after a leader change. */
    if (json_object_size(c->pods_announced) > 65536) json_object_clear(c->pods_announced);
    if (json_object_get(c->pods_announced, puid)) {
      json_decref(pod);
      return 0;
    }
    json_object_set_new(c->pods_announced, puid, json_true());
  }
  const char *by = ann(pod, "inferencecache.io/injected-by");
  if (!by) {
    if (skipped_marker(pod))
      ic_kube_event(c->kube, "engine-pod-events", c->identity, pod, "Normal", "SkippedByOperator",
                    "Skipped cache injection: skip-inject-annotation");
    json_decref(pod);
    return 0;
  }
  char ns[256], name[256];
  const char *uid = ann(pod, "inferencecache.io/injected-by-uid");
  if (!split_ref(by, ns, name) || !uid || !*uid) {
    json_decref(pod);
    return 0;
  }
  json_t *cb = NULL;
  rc = ic_kube_get(c->kube, &ctl_res_cachebackends, ns, name, &cb, &st);
  if (rc != 0) {
    if (rc != IC_ENOTFOUND && puid) json_object_del(c->pods_announced, puid); /* retry */
    json_decref(pod);
    return rc == IC_ENOTFOUND ? 0 : rc; /* transient lookup errors retry */
  }
  const char *cbuid = ic_kube_jstr(cb, "metadata.uid");
  if (cbuid && strcmp(cbuid, uid) == 0) {
    char note[600];
    snprintf(note, sizeof note, "Injected engine config from CacheBackend \"%s/%s\"", ns, name);
    ic_kube_event_related(c->kube, "engine-pod-events", c->identity, pod, cb, "Normal",
                          "InjectedByCacheBackend", note);
  }
  json_decref(cb);
  json_decref(pod);
  return 0;
}
