/* NodeLocal LMCache MP servers: one host-network server Pod
 * per node that runs engines injected by a typed NodeLocal CacheBackend — demand, identity checks,
 * idle retention, creation — and the NodeLocal ConnectorReady verdict from servers and engines. */
#include <ctype.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"
#include "ic/api.h"
#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/log.h"

/* Names and messages are bounded buffers; cutting an overlong one is intended. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

static const char *js(json_t *o, const char *path) { return ic_kube_jstr(o, path); }

static const char *ann(json_t *o, const char *key) {
  json_t *v = json_object_get(ic_kube_jget(o, "metadata.annotations"), key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool pod_active(json_t *pod) {
  const char *ph = js(pod, "status.phase");
  return !ic_kube_jget(pod, "metadata.deletionTimestamp") &&
         !(ph && (strcmp(ph, "Succeeded") == 0 || strcmp(ph, "Failed") == 0));
}

static bool pod_ready(json_t *pod) {
  size_t i;
  json_t *c;
  json_array_foreach(ic_kube_jget(pod, "status.conditions"), i, c) {
    const char *t = js(c, "type"), *s = js(c, "status");
    if (t && s && strcmp(t, "Ready") == 0) return strcmp(s, "True") == 0;
  }
  return false;
}

/* Expected SHM identity; false when the uid has characters outside [A-Za-z0-9._-]. */
static bool shm_identity(const char *uid, char name[300], char path[300]) {
  if (!uid || !*uid) return false;
  for (const char *p = uid; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') return false;
  snprintf(name, 300, "lmcache_l1_pool_inferencecache_%s", uid);
  snprintf(path, 300, "/dev/shm/inference-cache/%s", uid);
  return strlen(name) <= 255;
}

/* <cb name without trailing '.'/'-'>-<hex(sha256(node)[0:6])>, prefix cut to stay <= 253. */
static void server_pod_name(const char *cb, const char *node, char out[300]) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)node, strlen(node), md);
  char hex[13];
  for (int i = 0; i < 6; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  size_t n = strlen(cb);
  while (n && (cb[n - 1] == '.' || cb[n - 1] == '-')) n--;
  if (n > 253 - 13) n = 253 - 13;
  snprintf(out, 300, "%.*s-%s", (int)n, cb, hex);
}

static bool server_identity_ok(json_t *pod, const char *shm_name, const char *shm_path) {
  const char *a = ann(pod, "inferencecache.io/node-local-shm-name");
  if (!a || strcmp(a, shm_name) != 0) return false;
  json_t *ctr = NULL;
  size_t i;
  json_t *c;
  json_array_foreach(ic_kube_jget(pod, "spec.containers"), i, c) {
    if (js(c, "name") && strcmp(js(c, "name"), "lmcache-mp-server") == 0) ctr = c;
  }
  if (!ctr) return false;
  bool args_ok = false;
  json_t *args = json_object_get(ctr, "args");
  for (i = 0; i + 1 < json_array_size(args); i++) {
    const char *x = json_string_value(json_array_get(args, i));
    const char *y = json_string_value(json_array_get(args, i + 1));
    if (x && y && strcmp(x, "--shm-name") == 0 && strcmp(y, shm_name) == 0) args_ok = true;
  }
  if (!args_ok) return false;
  json_t *m;
  json_array_foreach(json_object_get(ctr, "volumeMounts"), i, m) {
    const char *mp = js(m, "mountPath");
    if (!mp || strcmp(mp, "/dev/shm") != 0) continue;
    if (json_is_true(json_object_get(m, "readOnly")) || js(m, "subPath") || js(m, "subPathExpr"))
      return false;
    size_t j;
    json_t *v;
    json_array_foreach(ic_kube_jget(pod, "spec.volumes"), j, v) {
      if (!js(v, "name") || !js(m, "name") || strcmp(js(v, "name"), js(m, "name")) != 0) continue;
      const char *hp = js(v, "hostPath.path"), *ht = js(v, "hostPath.type");
      return hp && ht && strcmp(hp, shm_path) == 0 && strcmp(ht, "DirectoryOrCreate") == 0;
    }
    return false;
  }
  return false;
}

static char *selector_string(json_t *cb) {
  json_t *ml = ic_kube_jget(cb, "spec.engineSelector.matchLabels");
  if (!json_is_object(ml) || json_object_size(ml) == 0) return NULL;
  ic_buf_t b = IC_BUF_INIT;
  const char *k;
  json_t *v;
  json_object_foreach(ml, k, v) {
    ic_buf_appendf(&b, "%s%s=%s", b.len ? "," : "", k, json_is_string(v) ? json_string_value(v) : "");
  }
  return ic_buf_detach(&b, NULL);
}

static int cmp_name(const void *a, const void *b) {
  const char *x = js(*(json_t *const *)a, "metadata.name"), *y = js(*(json_t *const *)b, "metadata.name");
  return strcmp(x ? x : "", y ? y : "");
}

/* The CB's controlled server Pods (label query, then ownership check). New reference. */
static json_t *list_servers(ctl_t *c, json_t *cb, int *rc) {
  char sel[400];
  snprintf(sel, sizeof sel, "inferencecache.io/lmcache-node-server=true,inferencecache.io/cache-backend-uid=%s",
           js(cb, "metadata.uid"));
  json_t *list = NULL;
  *rc = ic_kube_list(c->kube, &ic_kube_res_pods, js(cb, "metadata.namespace"), sel, &list, NULL);
  json_t *out = json_array();
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(list, "items"), i, p) {
    if (ic_kube_is_controlled_by(p, js(cb, "metadata.uid"))) json_array_append(out, p);
  }
  json_decref(list);
  return out;
}

void ctl_nodelocal_cleanup(ctl_t *c, json_t *cb) {
  const char *uid = js(cb, "metadata.uid");
  if (!uid || !*uid) return;
  int rc;
  json_t *servers = list_servers(c, cb, &rc);
  size_t i;
  json_t *p;
  json_array_foreach(servers, i, p) {
    if (ic_kube_jget(p, "metadata.deletionTimestamp")) continue;
    ic_kube_delete(c->kube, &ic_kube_res_pods, js(cb, "metadata.namespace"), js(p, "metadata.name"),
                   js(p, "metadata.uid"), NULL);
  }
  json_decref(servers);
}

static void shortest_double(double v, char out[48]) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(out, 48, "%.*g", prec, v);
    if (strtod(out, NULL) == v) return;
  }
}

/* Merges `add` into `dst` (arrays), skipping values already present (deep equality) or, with
 * `key`, entries whose `key` field is already present. */
static void merge_list(json_t *dst, json_t *add, const char *key) {
  size_t i, j;
  json_t *a, *d;
  json_array_foreach(add, i, a) {
    bool dup = false;
    json_array_foreach(dst, j, d) {
      if (key ? (js(a, key) && js(d, key) && strcmp(js(a, key), js(d, key)) == 0) : json_equal(a, d))
        dup = true;
    }
    if (!dup) json_array_append(dst, a);
  }
}

static json_t *render_server(ctl_t *c, json_t *cb, const char *node, json_t *source,
                             const char *name, const char *shm_name, const char *shm_path,
                             json_t *binding) {
  (void)c;
  json_t *spec = ic_kube_jget(cb, "spec");
  json_t *nl = ic_kube_jget(spec, "lmCache.nodeLocal");
  json_t *srv = json_object_get(nl, "server");
  const char *ns = js(cb, "metadata.namespace"), *cbname = js(cb, "metadata.name");
  const char *uid = js(cb, "metadata.uid");
  long long gen = (long long)json_integer_value(ic_kube_jget(cb, "metadata.generation"));
  char owner[600], instance[700], genstr[32], port[16], hport[16], chunk[16], gpu[16], cpu[16], l1[48];
  snprintf(owner, sizeof owner, "%s/%s", ns, cbname);
  snprintf(instance, sizeof instance, "%s@%s#%lld", owner, uid, gen);
  snprintf(genstr, sizeof genstr, "%lld", gen);
  long long mp = json_integer_value(json_object_get(srv, "port"));
  long long hp = json_integer_value(json_object_get(srv, "httpPort"));
  snprintf(port, sizeof port, "%lld", mp);
  snprintf(hport, sizeof hport, "%lld", hp);
  json_t *cs = ic_kube_jget(spec, "lmCache.chunkSizeTokens");
  snprintf(chunk, sizeof chunk, "%lld", json_is_integer(cs) ? (long long)json_integer_value(cs) : 256LL);
  snprintf(gpu, sizeof gpu, "%lld", (long long)json_integer_value(json_object_get(srv, "maxGPUWorkers")));
  snprintf(cpu, sizeof cpu, "%lld", (long long)json_integer_value(json_object_get(srv, "maxCPUWorkers")));
  int64_t milli = 0;
  ic_api_parse_quantity(json_object_get(srv, "l1Capacity"), &milli);
  int64_t bytes = milli / 1000;
  if (bytes % (1LL << 30) == 0)
    snprintf(l1, sizeof l1, "%lld", (long long)(bytes >> 30));
  else
    shortest_double((double)bytes / (double)(1LL << 30), l1);
  const char *argv[] = {"server", "--instance-id", instance, "--shm-name", shm_name, "--host",
                        "$(INFERENCECACHE_NODE_IP)", "--port", port, "--http-host",
                        "$(INFERENCECACHE_NODE_IP)", "--http-port", hport, "--chunk-size", chunk,
                        "--l1-size-gb", l1, "--eviction-policy", "LRU", "--max-gpu-workers", gpu,
                        "--max-cpu-workers", cpu};
  json_t *args = json_array();
  for (size_t i = 0; i < sizeof argv / sizeof *argv; i++) json_array_append_new(args, json_string(argv[i]));
  json_t *env = json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:{s:{s:s}}}]", "name", "NVIDIA_VISIBLE_DEVICES",
                          "value", "all", "name", "INFERENCECACHE_MP_SERVER", "value", "true", "name",
                          "INFERENCECACHE_NODE_IP", "valueFrom", "fieldRef", "fieldPath", "status.hostIP");
  if (binding) {
    char adapter[600];
    snprintf(adapter, sizeof adapter, "{\"host\":\"%s\",\"port\":%lld,\"type\":\"resp\"}",
             js(binding, "host"), (long long)json_integer_value(json_object_get(binding, "port")));
    json_array_append_new(args, json_string("--l2-adapter"));
    json_array_append_new(args, json_string(adapter));
    json_t *user = json_object_get(binding, "username"), *pw = json_object_get(binding, "password");
    if (json_is_object(user))
      json_array_append_new(env, json_pack("{s:s,s:{s:O}}", "name", "LMCACHE_RESP_USERNAME",
                                           "valueFrom", "secretKeyRef", user));
    if (json_is_object(pw))
      json_array_append_new(env, json_pack("{s:s,s:{s:O}}", "name", "LMCACHE_RESP_PASSWORD",
                                           "valueFrom", "secretKeyRef", pw));
  }
  json_t *probe = json_pack("{s:{s:s,s:s},s:i}", "httpGet", "path", "/healthcheck", "port",
                            "lmcache-http", "timeoutSeconds", 2);
  json_t *startup = json_deep_copy(probe), *ready = json_deep_copy(probe), *live = json_deep_copy(probe);
  json_object_set_new(startup, "periodSeconds", json_integer(3));
  json_object_set_new(startup, "failureThreshold", json_integer(40));
  json_object_set_new(ready, "periodSeconds", json_integer(5));
  json_object_set_new(ready, "failureThreshold", json_integer(3));
  json_object_set_new(live, "periodSeconds", json_integer(10));
  json_object_set_new(live, "failureThreshold", json_integer(3));
  json_decref(probe);
  json_t *res = json_object_get(srv, "resources");
  json_t *ctr = json_pack(
      "{s:s,s:s,s:s,s:[s],s:o,s:o,s:o,s:[{s:s,s:s}],s:[{s:s,s:I,s:I,s:s},{s:s,s:I,s:I,s:s}],"
      "s:o,s:o,s:o,s:{s:b,s:{s:[s]},s:{s:s}}}",
      "name", "lmcache-mp-server", "image", js(srv, "image") ? js(srv, "image") : "",
      "imagePullPolicy", "IfNotPresent", "command", "lmcache", "args", args, "env", env, "resources",
      json_is_object(res) ? json_deep_copy(res) : json_object(), "volumeMounts", "name",
      "lmcache-node-shm", "mountPath", "/dev/shm", "ports", "name", "lmcache-mp", "containerPort",
      (json_int_t)mp, "hostPort", (json_int_t)mp, "protocol", "TCP", "name", "lmcache-http",
      "containerPort", (json_int_t)hp, "hostPort", (json_int_t)hp, "protocol", "TCP", "startupProbe",
      startup, "readinessProbe", ready, "livenessProbe", live, "securityContext",
      "allowPrivilegeEscalation", 0, "capabilities", "drop", "ALL", "seccompProfile", "type",
      "RuntimeDefault");
  json_t *podspec = json_pack(
      "{s:b,s:b,s:s,s:b,s:b,s:s,s:{s:{s:{s:[{s:[{s:s,s:s,s:[s]}]}]}}},s:[o],s:[{s:s,s:{s:s,s:s}}]}",
      "hostNetwork", 1, "hostIPC", 0, "dnsPolicy", "ClusterFirstWithHostNet",
      "automountServiceAccountToken", 0, "enableServiceLinks", 0, "restartPolicy", "Always",
      "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
      "nodeSelectorTerms", "matchFields", "key", "metadata.name", "operator", "In", "values", node,
      "containers", ctr, "volumes", "name", "lmcache-node-shm", "hostPath", "path", shm_path, "type",
      "DirectoryOrCreate");
  /* Scheduling: inherited from the source engine, then the backend's overrides. */
  json_t *sspec = json_object_get(source, "spec");
  json_t *sched = json_object_get(nl, "scheduling");
  json_t *tol = json_array(), *ips = json_array();
  merge_list(tol, json_object_get(sspec, "tolerations"), NULL);
  merge_list(tol, json_object_get(sched, "tolerations"), NULL);
  merge_list(ips, json_object_get(sspec, "imagePullSecrets"), "name");
  merge_list(ips, json_object_get(sched, "imagePullSecrets"), "name");
  if (json_array_size(tol)) json_object_set(podspec, "tolerations", tol);
  if (json_array_size(ips)) json_object_set(podspec, "imagePullSecrets", ips);
  json_decref(tol);
  json_decref(ips);
  const char *inherit[] = {"priorityClassName", "schedulerName", "runtimeClassName"};
  for (int i = 0; i < 3; i++) {
    json_t *v = json_object_get(sspec, inherit[i]);
    if (json_is_string(v) && json_string_length(v)) json_object_set(podspec, inherit[i], v);
    v = json_object_get(sched, inherit[i]);
    if (json_is_string(v) && json_string_length(v)) json_object_set(podspec, inherit[i], v);
  }
  if (!json_object_get(podspec, "schedulerName"))
    json_object_set_new(podspec, "schedulerName", json_string("default-scheduler"));
  json_t *tg = json_object_get(sched, "terminationGracePeriodSeconds");
  json_object_set_new(podspec, "terminationGracePeriodSeconds",
                      json_integer(json_is_integer(tg) ? json_integer_value(tg) : 30));
  if (js(sched, "serviceAccountName") && *js(sched, "serviceAccountName"))
    json_object_set(podspec, "serviceAccountName", json_object_get(sched, "serviceAccountName"));
  if (json_is_object(json_object_get(sched, "securityContext")))
    json_object_set(podspec, "securityContext", json_object_get(sched, "securityContext"));
  return json_pack(
      "{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s,s:s,s:s,s:s},s:{s:s,s:s,s:s,s:s,s:s},s:[{s:s,s:s,s:s,s:s,s:b,s:b}]},s:o}",
      "apiVersion", "v1", "kind", "Pod", "metadata", "name", name, "namespace", ns, "labels",
      "app.kubernetes.io/name", "lmcache-mp-server", "app.kubernetes.io/managed-by",
      "inference-cache-controller", "inferencecache.io/lmcache-node-server", "true",
      "inferencecache.io/cache-backend-uid", uid, "inferencecache.io/lmcache-mp-metrics", "true",
      "annotations", "inferencecache.io/node-local-owner", owner, "inferencecache.io/node-local-owner-uid",
      uid, "inferencecache.io/node-local-generation", genstr, "inferencecache.io/node-local-target-node",
      node, "inferencecache.io/node-local-shm-name", shm_name, "ownerReferences", "apiVersion",
      "inferencecache.io/v1alpha1", "kind", "CacheBackend", "name", cbname, "uid", uid, "controller",
      1, "blockOwnerDeletion", 1, "spec", podspec);
}

static void patch_idle(ctl_t *c, const char *ns, const char *name, const char *value) {
  json_t *p = json_pack("{s:{s:{s:o}}}", "metadata", "annotations",
                        "inferencecache.io/node-local-idle-since",
                        value ? json_string(value) : json_null());
  ic_kube_patch(c->kube, &ic_kube_res_pods, ns, name, NULL, IC_KUBE_PATCH_MERGE, p, NULL, false,
                NULL, NULL);
  json_decref(p);
}

int ctl_nodelocal_reconcile(ctl_t *c, json_t *cb, json_t *binding, char *err, size_t errlen) {
  const char *ns = js(cb, "metadata.namespace"), *cbname = js(cb, "metadata.name");
  const char *uid = js(cb, "metadata.uid");
  char owner[600], genstr[32];
  snprintf(owner, sizeof owner, "%s/%s", ns, cbname);
  snprintf(genstr, sizeof genstr, "%lld", (long long)json_integer_value(ic_kube_jget(cb, "metadata.generation")));
  char shm_name[300], shm_path[300];
  if (!shm_identity(uid, shm_name, shm_path)) {
    snprintf(err, errlen, "nodelocal %s: CacheBackend uid cannot name a shared-memory pool", owner);
    return IC_EINVAL;
  }
  /* 1. Demand: scheduled, active engine Pods injected by this backend (generation not required). */
  json_t *demand = json_object(); /* node -> source engine Pod */
  char *sel = selector_string(cb);
  if (sel) {
    json_t *list = NULL;
    int rc = ic_kube_list(c->kube, &ic_kube_res_pods, ns, sel, &list, NULL);
    free(sel);
    if (rc != 0) {
      json_decref(demand);
      snprintf(err, errlen, "list engine pods %s: %s", owner, ic_strerror(rc));
      return rc;
    }
    json_t *items = json_object_get(list, "items");
    size_t n = json_array_size(items);
    json_t **v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = json_array_get(items, i);
    qsort(v, n, sizeof *v, cmp_name);
    for (size_t i = 0; i < n; i++) {
      const char *node = js(v[i], "spec.nodeName");
      const char *by = ann(v[i], "inferencecache.io/injected-by");
      const char *byuid = ann(v[i], "inferencecache.io/injected-by-uid");
      if (!pod_active(v[i]) || !node || !*node || !by || strcmp(by, owner) != 0 || !byuid ||
          strcmp(byuid, uid) != 0 || json_object_get(demand, node))
        continue;
      json_object_set(demand, node, v[i]);
    }
    free(v);
    json_decref(list);
  }
  /* 3. Existing servers. */
  int rc;
  json_t *servers = list_servers(c, cb, &rc);
  if (rc != 0) {
    json_decref(servers);
    json_decref(demand);
    snprintf(err, errlen, "list nodelocal servers %s: %s", owner, ic_strerror(rc));
    return rc;
  }
  json_t *tracked = json_object(); /* node -> true */
  int64_t retention = json_integer_value(ic_kube_jget(cb, "spec.lmCache.nodeLocal.idleRetentionSeconds"));
  size_t i;
  json_t *p;
  json_array_foreach(servers, i, p) {
    if (ic_kube_jget(p, "metadata.deletionTimestamp")) continue;
    const char *pname = js(p, "metadata.name"), *puid = js(p, "metadata.uid");
    const char *target = ann(p, "inferencecache.io/node-local-target-node");
    char want[300] = "";
    if (target) server_pod_name(cbname, target, want);
    const char *ouid = ann(p, "inferencecache.io/node-local-owner-uid");
    const char *g = ann(p, "inferencecache.io/node-local-generation");
    bool current = target && ouid && strcmp(ouid, uid) == 0 && g && strcmp(g, genstr) == 0 &&
                   strcmp(pname, want) == 0 && server_identity_ok(p, shm_name, shm_path);
    if (!current) {
      ic_kube_delete(c->kube, &ic_kube_res_pods, ns, pname, puid, NULL);
      continue;
    }
    const char *idle = ann(p, "inferencecache.io/node-local-idle-since");
    if (!json_object_get(demand, target)) {
      int64_t since = 0;
      if (retention == 0) {
        ic_kube_delete(c->kube, &ic_kube_res_pods, ns, pname, puid, NULL);
      } else if (!idle || ic_kube_parse_time(idle, &since) != 0) {
        char now[40];
        ic_kube_format_time(ic_clock_realtime_us(), true, now);
        patch_idle(c, ns, pname, now);
      } else if (ic_clock_realtime_us() - since >= retention * 1000000) {
        ic_kube_delete(c->kube, &ic_kube_res_pods, ns, pname, puid, NULL);
      }
      continue;
    }
    if (idle) patch_idle(c, ns, pname, NULL);
    if (json_object_get(tracked, target))
      ic_kube_delete(c->kube, &ic_kube_res_pods, ns, pname, puid, NULL); /* duplicate */
    else
      json_object_set_new(tracked, target, json_true());
  }
  json_decref(servers);
  /* 4. Create the missing ones, nodes in order. */
  const char *node;
  json_t *src;
  int first_err = 0;
  size_t nn = json_object_size(demand), k = 0;
  const char **nodes = calloc(nn ? nn : 1, sizeof *nodes);
  json_object_foreach(demand, node, src) nodes[k++] = node;
  for (size_t a = 0; a < nn; a++)
    for (size_t b = a + 1; b < nn; b++)
      if (strcmp(nodes[a], nodes[b]) > 0) {
        const char *t = nodes[a];
        nodes[a] = nodes[b];
        nodes[b] = t;
      }
  for (k = 0; k < nn; k++) {
    node = nodes[k];
    if (json_object_get(tracked, node)) continue;
    char pname[300];
    server_pod_name(cbname, node, pname);
    json_t *pod = render_server(c, cb, node, json_object_get(demand, node), pname, shm_name, shm_path,
                                binding);
    if (!pod) {
      snprintf(err, errlen, "render nodelocal server %s/%s: bad spec", ns, pname);
      first_err = IC_EINVAL;
      continue;
    }
    ic_kube_status_t st;
    rc = ic_kube_create(c->kube, &ic_kube_res_pods, ns, pod, NULL, &st);
    json_decref(pod);
    if (rc == IC_EEXIST) {
      json_t *live = NULL;
      if (ic_kube_get(c->kube, &ic_kube_res_pods, ns, pname, &live, NULL) == 0 &&
          ic_kube_is_controlled_by(live, uid) && ic_kube_jget(live, "metadata.deletionTimestamp")) {
        json_decref(live);
        continue; /* the old one is terminating: next pass */
      }
      json_decref(live);
      snprintf(err, errlen, "create nodelocal server %s/%s: name %s is already occupied by another object",
               ns, pname, pname);
      if (!first_err) first_err = IC_EEXIST;
    } else if (rc != 0) {
      snprintf(err, errlen, "create nodelocal server %s/%s: %s", ns, pname, st.message);
      if (!first_err) first_err = rc;
    } else {
      ic_log_info("nodelocal_server_created", IC_LS("cachebackend", owner), IC_LS("node", node),
                  IC_LS("pod", pname));
    }
  }
  free(nodes);
  json_decref(tracked);
  json_decref(demand);
  return first_err;
}

/* NodeLocal ConnectorReady. `pods` = selector-matched Pods. */
void ctl_nodelocal_connector(ctl_t *c, json_t *cb, json_t *pods, json_t *status, const char *now) {
  const char *ns = js(cb, "metadata.namespace"), *cbname = js(cb, "metadata.name");
  const char *uid = js(cb, "metadata.uid");
  int64_t gen = json_integer_value(ic_kube_jget(cb, "metadata.generation"));
  json_t *srv = ic_kube_jget(cb, "spec.lmCache.nodeLocal.server");
  char shm_name[300], shm_path[300];
  if (!json_is_object(srv) || !json_is_integer(json_object_get(srv, "maxGPUWorkers")) ||
      !shm_identity(uid, shm_name, shm_path))
    return; /* incomplete spec or unusable uid: fail soft, no write */
  int rc;
  json_t *servers = list_servers(c, cb, &rc);
  if (rc != 0) {
    json_decref(servers);
    return;
  }
  char owner[600], genstr[32];
  snprintf(owner, sizeof owner, "%s/%s", ns, cbname);
  snprintf(genstr, sizeof genstr, "%lld", (long long)gen);
  json_t *ready_by_node = json_object(); /* node -> count of ready servers */
  bool conflict = false;
  size_t i;
  json_t *p;
  json_array_foreach(servers, i, p) {
    if (ic_kube_jget(p, "metadata.deletionTimestamp")) continue;
    const char *o = ann(p, "inferencecache.io/node-local-owner");
    const char *ou = ann(p, "inferencecache.io/node-local-owner-uid");
    const char *g = ann(p, "inferencecache.io/node-local-generation");
    const char *target = ann(p, "inferencecache.io/node-local-target-node");
    if (!o || strcmp(o, owner) || !ou || strcmp(ou, uid) || !g || strcmp(g, genstr) || !target ||
        !server_identity_ok(p, shm_name, shm_path))
      continue;
    size_t j;
    json_t *cnd;
    json_array_foreach(ic_kube_jget(p, "status.conditions"), j, cnd) {
      const char *t = js(cnd, "type"), *s = js(cnd, "status"), *r = js(cnd, "reason");
      const char *m = js(cnd, "message");
      if (t && s && r && m && strcmp(t, "PodScheduled") == 0 && strcmp(s, "False") == 0 &&
          strcmp(r, "Unschedulable") == 0) {
        char low[1024];
        snprintf(low, sizeof low, "%s", m);
        for (char *q = low; *q; q++) *q = (char)tolower((unsigned char)*q);
        if (strstr(low, "free ports") || strstr(low, "hostport") || strstr(low, "host port"))
          conflict = true;
      }
    }
    bool running = false;
    json_t *cs;
    json_array_foreach(ic_kube_jget(p, "status.containerStatuses"), j, cs) {
      if (js(cs, "name") && strcmp(js(cs, "name"), "lmcache-mp-server") == 0)
        running = json_is_true(json_object_get(cs, "ready")) && ic_kube_jget(cs, "state.running");
    }
    const char *nn = js(p, "spec.nodeName");
    if (nn && strcmp(nn, target) == 0 && pod_ready(p) && running) {
      json_t *cur = json_object_get(ready_by_node, target);
      json_object_set_new(ready_by_node, target, json_integer(json_integer_value(cur) + 1));
    }
  }
  json_decref(servers);
  /* Engines. */
  int64_t max_gpu = json_integer_value(json_object_get(srv, "maxGPUWorkers"));
  json_t *per_node = json_object();
  json_array_foreach(pods, i, p) {
    const char *by = ann(p, "inferencecache.io/injected-by"), *bu = ann(p, "inferencecache.io/injected-by-uid");
    const char *nn = js(p, "spec.nodeName");
    if (!pod_active(p) || !by || strcmp(by, owner) || !bu || strcmp(bu, uid) || !nn || !*nn) continue;
    json_t *cur = json_object_get(per_node, nn);
    json_object_set_new(per_node, nn, json_integer(json_integer_value(cur) + 1));
  }
  int matched = 0, verified = 0, covered = 0, ready_engines = 0;
  bool capacity = false, ambiguous = false;
  json_t *cov = json_array();
  json_array_foreach(pods, i, p) {
    if (!pod_active(p)) continue;
    matched++;
    const char *by = ann(p, "inferencecache.io/injected-by"), *bu = ann(p, "inferencecache.io/injected-by-uid");
    const char *bg = ann(p, "inferencecache.io/injected-generation");
    bool injected = by && !strcmp(by, owner) && bu && !strcmp(bu, uid) && bg && !strcmp(bg, genstr);
    const char *nn = js(p, "spec.nodeName");
    bool has_node = nn && *nn;
    bool within = has_node && json_integer_value(json_object_get(per_node, nn)) <= max_gpu;
    int64_t rb = has_node ? json_integer_value(json_object_get(ready_by_node, nn)) : 0;
    bool is_cov = injected && within && rb == 1;
    const char *reason = !injected ? "ConnectorInjectionUnverified"
                         : !has_node ? "EngineSchedulingPending"
                         : !within ? "NodeLocalWorkerCapacityExceeded"
                         : rb > 1 ? "AmbiguousNodeLocalServers"
                         : is_cov ? "ConnectorReady" : "MPServersNotReady";
    if (injected) verified++;
    if (injected && has_node && !within) capacity = true;
    if (injected && rb > 1) ambiguous = true;
    if (is_cov) covered++;
    if (is_cov && pod_ready(p)) ready_engines++;
    json_t *row = json_pack("{s:s,s:b,s:b,s:s}", "name", js(p, "metadata.name"), "ready",
                            pod_ready(p), "covered", is_cov, "reason", reason);
    if (has_node) json_object_set_new(row, "nodeName", json_string(nn));
    json_array_append_new(cov, row);
  }
  int desired = (int)json_object_size(per_node), ready_servers = 0;
  const char *nk;
  json_t *nv;
  json_object_foreach(per_node, nk, nv) {
    if (json_integer_value(json_object_get(ready_by_node, nk)) == 1) ready_servers++;
  }
  json_t *conn = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i}", "mode", "Multiprocess", "topology",
                           "NodeLocal", "matchedEnginePods", matched, "readyEnginePods", ready_engines,
                           "desiredServers", desired, "readyServers", ready_servers,
                           "coveredEnginePods", covered, "uncoveredEnginePods", matched - covered);
  if (json_array_size(cov)) json_object_set(conn, "enginePodCoverage", cov);
  json_decref(cov);
  json_object_set_new(status, "connector", conn);
  const char *cs, *cr;
  char msg[300];
  if (matched == 0) {
    cs = "False", cr = "NoEnginePods";
    snprintf(msg, sizeof msg, "no active engine Pods match spec.engineSelector");
  } else if (verified != matched) {
    cs = "Unknown", cr = "ConnectorInjectionUnverified";
    snprintf(msg, sizeof msg, "%d/%d selected engine Pods carry the current injection stamp", verified, matched);
  } else if (desired == 0) {
    cs = "False", cr = "NodeLocalServerPoolPending";
    snprintf(msg, sizeof msg, "engine Pods are not scheduled to nodes yet");
  } else if (conflict) {
    cs = "False", cr = "NodeLocalHostPortConflict";
    snprintf(msg, sizeof msg, "a NodeLocal server Pod cannot be scheduled: its host ports are in use");
  } else if (capacity) {
    cs = "False", cr = "NodeLocalWorkerCapacityExceeded";
    snprintf(msg, sizeof msg, "more engine Pods on a node than maxGPUWorkers %lld", (long long)max_gpu);
  } else if (ambiguous) {
    cs = "False", cr = "AmbiguousNodeLocalServers";
    snprintf(msg, sizeof msg, "more than one ready NodeLocal server on a node");
  } else if (ready_servers == desired && covered == matched && ready_engines == matched) {
    cs = "True", cr = "ConnectorReady";
    snprintf(msg, sizeof msg, "%d/%d nodes have a ready NodeLocal server; %d/%d engine Pods covered",
             ready_servers, desired, covered, matched);
  } else {
    cs = "False", cr = "NodeLocalServerPoolPending";
    snprintf(msg, sizeof msg, "%d/%d nodes have a ready NodeLocal server; %d/%d engine Pods covered",
             ready_servers, desired, covered, matched);
  }
  ic_kube_condition_set(status, "ConnectorReady", cs, cr, msg, gen, now);
  json_decref(per_node);
  json_decref(ready_by_node);
}
