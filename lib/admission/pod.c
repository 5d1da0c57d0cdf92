/* Mutating Pod webhook core (docs/install.md, "Admission webhooks"): pick the one CacheBackend
 * whose cache-domain selector matches, wire the engine for vLLM/SGLang + LMCache (PodLocal) or
 * SGLang HiCache, add the kvevent-subscriber sidecar, stamp injected-by. Every step is an upsert on
 * a copy of the raw Pod JSON, so unknown fields survive and re-admitting an injected Pod changes
 * nothing. Any internal problem fails open: the Pod is admitted unchanged (minus forged stamps). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ic/admission.h"
#include "ic/err.h"
#include "ic/log.h"
#include "internal.h"

#define GI (1024LL * 1024 * 1024)
#define MP_SERVER "lmcache-mp-server"
#define MP_SHM "lmcache-mp-shm"
#define MP_CONFIG "lmcache-mp-config"
#define MP_CONFIG_DIR "/var/run/inference-cache/lmcache"
#define MP_CONFIG_PATH MP_CONFIG_DIR "/client.yaml"
#define SUBSCRIBER "kvevent-subscriber"
#define KERNEL_CHECK "lmcache-kernel-check"
#define DEFAULT_SERVER_ADDR "inference-cache-server-headless.inference-cache-system.svc.cluster.local:9090"

typedef enum { AD_NONE = 0, AD_VLLM, AD_SGLANG, AD_HICACHE } adapter_t;

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* ---- small JSON helpers ---------------------------------------------------------------------- */

static json_t *obj_child(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  if (json_is_object(v)) return v;
  v = json_object();
  json_object_set_new(o, k, v);
  return v;
}
static json_t *arr_child(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  if (json_is_array(v)) return v;
  v = json_array();
  json_object_set_new(o, k, v);
  return v;
}
static json_t *find_named(json_t *arr, const char *name, size_t *idx) {
  size_t i;
  json_t *it;
  json_array_foreach(arr, i, it) {
    if (streq(json_string_value(json_object_get(it, "name")), name)) {
      if (idx) *idx = i;
      return it;
    }
  }
  return NULL;
}
/* Replaces the same-named item in place (keeping its position) or appends; steals `item`. */
static void upsert_named(json_t *arr, json_t *item) {
  size_t i;
  if (find_named(arr, json_string_value(json_object_get(item, "name")), &i))
    json_array_set_new(arr, i, item);
  else
    json_array_append_new(arr, item);
}
static const char *ann(const json_t *pod, const char *k) {
  return json_string_value(json_object_get(json_object_get(json_object_get(pod, "metadata"), "annotations"), k));
}
/* Deletes annotation keys; drops an emptied annotations map. */
static void ann_del(json_t *pod, const char *const *keys) {
  json_t *md = json_object_get(pod, "metadata");
  json_t *a = json_object_get(md, "annotations");
  if (!json_is_object(a)) return;
  for (; *keys; keys++) json_object_del(a, *keys);
  if (json_object_size(a) == 0) json_object_del(md, "annotations");
}
static void ann_set(json_t *pod, const char *k, const char *v) {
  json_object_set_new(obj_child(obj_child(pod, "metadata"), "annotations"), k, json_string(v));
}

static const char *const stamps[] = {IC_API_ANN_INJECTED_BY, IC_API_ANN_INJECTED_BY_UID, IC_API_ANN_INJECTED_GENERATION,
                                     IC_API_ANN_INJECT_SKIPPED, NULL};
static const char *const trio[] = {IC_API_ANN_INJECTED_BY, IC_API_ANN_INJECTED_BY_UID, IC_API_ANN_INJECTED_GENERATION,
                                   NULL};

/* Fail-open: admit unchanged, except that stamps the Pod cannot have earned are removed. */
static void fail_open(const json_t *pod, ic_admission_pod_result_t *res, const char *fmt, const char *arg) {
  snprintf(res->reason, sizeof res->reason, fmt, arg ? arg : "");
  json_decref(res->patched);
  res->patched = NULL;
  bool any = false;
  for (int i = 0; stamps[i]; i++) any |= ann(pod, stamps[i]) != NULL;
  if (any) {
    res->patched = json_deep_copy(pod);
    ann_del(res->patched, stamps);
  }
  ic_log_debug("pod_webhook_fail_open", IC_LS("reason", res->reason));
}

/* The skip label: empty = no; Go strconv.ParseBool values honoured; other values opt out except
 * no/off/disable(d). */
static bool skip_inject(const char *v) {
  if (!v || !*v) return false;
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True", NULL};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False", NULL};
  for (int i = 0; t[i]; i++)
    if (strcmp(v, t[i]) == 0) return true;
  for (int i = 0; f[i]; i++)
    if (strcmp(v, f[i]) == 0) return false;
  return !(strcasecmp(v, "no") == 0 || strcasecmp(v, "off") == 0 || strcasecmp(v, "disable") == 0 ||
           strcasecmp(v, "disabled") == 0);
}

/* ---- args / env merge helpers ----------------------------------------------------------- */

static bool arg_present(const json_t *args, const char *a) {
  size_t i;
  const json_t *it;
  json_array_foreach(args, i, it) if (streq(json_string_value(it), a)) return true;
  return false;
}
static void flag_upsert(json_t *args, const char *flag) {
  if (!arg_present(args, flag)) json_array_append_new(args, json_string(flag));
}
static void pair_upsert(json_t *args, const char *flag, const char *value) {
  size_t n = json_array_size(args), fl = strlen(flag);
  for (size_t i = 0; i < n; i++) {
    const char *a = json_string_value(json_array_get(args, i));
    if (!a) continue;
    if (strcmp(a, flag) == 0) {
      if (i + 1 < n)
        json_array_set_new(args, i + 1, json_string(value));
      else
        json_array_append_new(args, json_string(value));
      return;
    }
    if (strncmp(a, flag, fl) == 0 && a[fl] == '=') {
      json_array_set_new(args, i, json_string(flag));
      json_array_insert_new(args, i + 1, json_string(value));
      return;
    }
  }
  json_array_append_new(args, json_string(flag));
  json_array_append_new(args, json_string(value));
}
static void env_remove_all(json_t *env, const char *name) {
  for (size_t i = json_array_size(env); i-- > 0;)
    if (streq(json_string_value(json_object_get(json_array_get(env, i), "name")), name)) json_array_remove(env, i);
}
static json_t *env_var(const char *name, const char *value) {
  json_t *e = json_object();
  json_object_set_new(e, "name", json_string(name));
  json_object_set_new(e, "value", json_string(value));
  return e;
}
static json_t *env_field(const char *name, const char *path) {
  json_t *e = json_object();
  json_object_set_new(e, "name", json_string(name));
  json_object_set_new(e, "valueFrom", json_pack("{s:{s:s}}", "fieldRef", "fieldPath", path));
  return e;
}
/* "Remove every definition, then append one": skipped when exactly that single definition is
 * already there, so re-admission does not reorder the engine's env (zero-op contract). */
static void env_set_single(json_t *env, const char *name, const char *value) {
  size_t n = 0, i;
  json_t *e, *only = NULL;
  json_array_foreach(env, i, e) {
    if (streq(json_string_value(json_object_get(e, "name")), name)) n++, only = e;
  }
  if (n == 1 && json_object_size(only) == 2 && streq(json_string_value(json_object_get(only, "value")), value)) return;
  env_remove_all(env, name);
  json_array_append_new(env, env_var(name, value));
}

static void env_upsert(json_t *env, const char *name, const char *value) {
  json_t *e = find_named(env, name, NULL);
  if (e) {
    json_object_del(e, "valueFrom");
    json_object_set_new(e, "value", json_string(value));
  } else {
    json_array_append_new(env, env_var(name, value));
  }
}

/* Concatenated command + args of a container (borrowed strings), for flag scans. */
typedef struct argv_view {
  const char *v[512];
  size_t n;
} argv_view_t;
static void argv_of(const json_t *c, argv_view_t *av) {
  av->n = 0;
  const char *keys[] = {"command", "args"};
  for (int k = 0; k < 2; k++) {
    size_t i;
    const json_t *it;
    json_array_foreach(json_object_get(c, keys[k]), i, it) {
      if (json_is_string(it) && av->n < 512) av->v[av->n++] = json_string_value(it);
    }
  }
}
/* Occurrences of a flag (`--f v` or `--f=v`); values returned through vals (NULL for bare). */
static int flag_values(const argv_view_t *av, const char *const *names, const char **vals, int max) {
  int found = 0;
  for (size_t i = 0; i < av->n; i++)
    for (int k = 0; names[k]; k++) {
      size_t l = strlen(names[k]);
      if (strcmp(av->v[i], names[k]) == 0) {
        const char *v = (i + 1 < av->n && av->v[i + 1][0] != '-') ? av->v[i + 1] : NULL;
        if (found < max) vals[found] = v;
        found++;
      } else if (strncmp(av->v[i], names[k], l) == 0 && av->v[i][l] == '=') {
        if (found < max) vals[found] = av->v[i] + l + 1;
        found++;
      }
    }
  return found;
}
static bool parse_pos_int(const char *s, long *out) {
  if (!s || !*s) return false;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v <= 0) return false;
  *out = v;
  return true;
}

/* ---- adapter model ---------------------------------------------------------------------------- */

static adapter_t select_adapter(const ic_api_cachebackend_t *cb) {
  char rid[16];
  ic_api_cachebackend_runtime_id(cb, rid, sizeof rid);
  const char *et = ic_api_cachebackend_effective_type(cb);
  bool typed = streq(cb->spec.lm_cache.topology, "PodLocal") || streq(cb->spec.lm_cache.topology, "NodeLocal");
  bool lm_ok = streq(et, "LMCache") && (ic_api_cachebackend_events_only(cb) || typed);
  if (streq(rid, "vllm") && lm_ok) return AD_VLLM;
  if (streq(rid, "sglang") && lm_ok) return AD_SGLANG;
  if (streq(rid, "sglang") && streq(cb->spec.type, "SGLangHiCache")) return AD_HICACHE;
  return AD_NONE;
}
static const char *engine_name(adapter_t a) { return a == AD_VLLM ? "vllm" : "sglang"; }

/* Engine container: the adapter's name, else the only container. */
static json_t *engine_container(json_t *pod, adapter_t a) {
  json_t *cs = json_object_get(json_object_get(pod, "spec"), "containers");
  json_t *c = find_named(cs, engine_name(a), NULL);
  if (c) return c;
  return json_array_size(cs) == 1 ? json_array_get(cs, 0) : NULL;
}

static const char *validate_vllm(const json_t *c) {
  argv_view_t av;
  argv_of(c, &av);
  const char *vals[8];
  static const char *const tp[] = {"--tensor-parallel-size", "-tp", NULL};
  int n = flag_values(&av, tp, vals, 8);
  long v;
  if (n > 1) return "tensor parallel size is given more than once";
  if (n == 1 && !parse_pos_int(vals[0], &v)) return "tensor parallel size must be a positive integer";
  static const char *const pp[] = {"--pipeline-parallel-size", "-pp", NULL};
  static const char *const dp[] = {"--data-parallel-size", "-dp", NULL};
  const char *const *must1[] = {pp, dp};
  for (int k = 0; k < 2; k++) {
    n = flag_values(&av, must1[k], vals, 8);
    for (int i = 0; i < n && i < 8; i++)
      if (!parse_pos_int(vals[i], &v) || v != 1)
        return "LMCache MP supports pipeline and data parallel size 1 only";
  }
  static const char *const dpx[] = {"--data-parallel-rank", "--data-parallel-start-rank", "--data-parallel-size-local",
                                    "--data-parallel-address", "--data-parallel-rpc-port", NULL};
  if (flag_values(&av, dpx, vals, 8) > 0) return "external data-parallel placement flags are not supported";
  static const char *const hy[] = {"--disable-hybrid-kv-cache-manager", NULL};
  n = flag_values(&av, hy, vals, 8);
  if (n > 1) return "--disable-hybrid-kv-cache-manager is repeated";
  for (size_t i = 0; i < av.n; i++) {
    if (strncmp(av.v[i], "--disable-hybrid-kv-cache-manager=", 34) == 0)
      return "--disable-hybrid-kv-cache-manager must not carry a value";
    if (strcmp(av.v[i], "--disable-hybrid-kv-cache-manager") == 0 && i + 1 < av.n) {
      const char *nx = av.v[i + 1];
      if (!strcasecmp(nx, "true") || !strcasecmp(nx, "false") || !strcmp(nx, "0") || !strcmp(nx, "1"))
        return "--disable-hybrid-kv-cache-manager must not carry a value";
    }
  }
  static const char *const kv[] = {"--kv-transfer-config", NULL};
  n = flag_values(&av, kv, vals, 8);
  if (n > 1) return "--kv-transfer-config is given more than once";
  if (n == 1) {
    json_error_t je;
    json_t *j = vals[0] ? json_loads(vals[0], 0, &je) : NULL;
    bool ok = json_is_object(j);
    json_decref(j);
    if (!ok) return "--kv-transfer-config is not a JSON object";
  }
  return NULL;
}

static const char *validate_sglang(const json_t *c, int64_t chunk) {
  argv_view_t av;
  argv_of(c, &av);
  const char *vals[4];
  static const char *const ps[] = {"--page-size", NULL};
  int n = flag_values(&av, ps, vals, 4);
  long v;
  if (n == 0) return "SGLang with LMCache needs --page-size";
  if (n > 1) return "--page-size is given more than once";
  if (!parse_pos_int(vals[0], &v)) return "--page-size must be a positive integer";
  if (chunk % v) return "lmCache.chunkSizeTokens must be a multiple of --page-size";
  return NULL;
}

/* ---- PodLocal MP server -------------------------------------------------------------------- */

static void fmt_gib(char *out, size_t n, int64_t bytes) {
  if (bytes % GI == 0) {
    snprintf(out, n, "%lld", (long long)(bytes / GI));
    return;
  }
  double g = (double)bytes / (double)GI;
  for (int p = 1; p <= 17; p++) {
    snprintf(out, n, "%.*g", p, g);
    if (strtod(out, NULL) == g) return;
  }
}
static void fmt_quantity(char *out, size_t n, int64_t bytes) {
  static const char *const suf[] = {"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"};
  for (int i = 0; i < 6; i++) {
    int64_t unit = 1LL << (10 * (6 - i));
    if (bytes >= unit && bytes % unit == 0) {
      snprintf(out, n, "%lld%s", (long long)(bytes / unit), suf[i]);
      return;
    }
  }
  snprintf(out, n, "%lld", (long long)bytes);
}

typedef struct binding {
  bool present;
  char host[256];
  int port;
  const ic_api_cachebackend_t *cb;
} binding_t;

static json_t *http_probe(int period, int failure) {
  return json_pack("{s:{s:s,s:s},s:i,s:i,s:i}", "httpGet", "path", "/healthcheck", "port", "lmcache-http",
                   "timeoutSeconds", 2, "periodSeconds", period, "failureThreshold", failure);
}

static json_t *hardened(void) {
  return json_pack("{s:b,s:{s:[s]},s:{s:s}}", "allowPrivilegeEscalation", 0, "capabilities", "drop", "ALL",
                   "seccompProfile", "type", "RuntimeDefault");
}

static const char sglang_script[] =
    "set -eu\n"
    "path=\"$1\"; chunk=\"$2\"; port=\"$3\"; shift 3\n"
    "printf 'chunk_size: %s\\nmp_host: \"127.0.0.1\"\\nmp_port: %s\\n' \"$chunk\" \"$port\" > \"$path.tmp\"\n"
    "mv \"$path.tmp\" \"$path\"\n"
    "exec \"$@\"\n";

/* Renders and adopts the server sidecar, the shm volume and (SGLang) the config volume.
 * Returns NULL or a reason to fail open; `pod` is only modified on success paths the caller owns. */
static const char *render_pod_local(json_t *pod, json_t *eng, adapter_t a, const ic_api_cachebackend_t *cb,
                                    const binding_t *b) {
  const ic_api_lmcache_server_t *s = &cb->spec.lm_cache.pod_local.server;
  if (!cb->spec.lm_cache.pod_local.present || !s->present) return "lmCache.podLocal.server is missing";
  if (!s->image || !*s->image) return "lmCache.podLocal.server.image is empty";
  if (!s->has_port || s->port < 1 || s->port > 65535 || s->port == 8080) return "lmCache.podLocal.server.port is invalid";
  int64_t l1m = 0;
  if (!s->l1_capacity || ic_api_parse_quantity(s->l1_capacity, &l1m) || l1m <= 0) return "l1Capacity must be > 0";
  if (!s->has_max_workers || s->max_workers < 1) return "maxWorkers must be >= 1";
  int64_t chunk = ic_api_cachebackend_chunk_size(cb);
  if (chunk < 1) return "chunkSizeTokens must be >= 1";
  int64_t l1 = (l1m + 999) / 1000, budget = l1 + GI;
  json_t *spec = obj_child(pod, "spec");
  json_t *vols = arr_child(spec, "volumes");
  json_t *inits = arr_child(spec, "initContainers");
  json_t *existing = find_named(inits, MP_SERVER, NULL);
  if (existing) {
    json_t *mark = find_named(json_object_get(existing, "env"), "INFERENCECACHE_MP_SERVER", NULL);
    if (!streq(json_string_value(json_object_get(mark, "value")), "true"))
      return "an init container named lmcache-mp-server already exists and is not ours";
  } else if (find_named(vols, MP_SHM, NULL) || find_named(vols, MP_CONFIG, NULL)) {
    /* not a re-admission of our own wiring: a reserved volume name is taken by the Pod itself */
    return "the Pod already uses a reserved volume name (lmcache-mp-shm or lmcache-mp-config)";
  }
  json_t *emounts = arr_child(eng, "volumeMounts");
  /* /dev/shm: reuse a suitable engine mount, else our own memory-backed emptyDir */
  json_t *shm_mount = NULL;
  size_t i;
  json_t *m;
  json_array_foreach(emounts, i, m) if (streq(json_string_value(json_object_get(m, "mountPath")), "/dev/shm")) shm_mount = m;
  char sizebuf[64];
  fmt_quantity(sizebuf, sizeof sizebuf, budget);
  json_t *server_shm = NULL;
  if (shm_mount && !streq(json_string_value(json_object_get(shm_mount, "name")), MP_SHM)) {
    const char *vn = json_string_value(json_object_get(shm_mount, "name"));
    json_t *vol = find_named(vols, vn, NULL);
    json_t *ed = json_object_get(vol, "emptyDir");
    int64_t lim = 0;
    if (json_is_true(json_object_get(shm_mount, "readOnly")) || json_object_get(shm_mount, "subPathExpr"))
      return "the engine's /dev/shm mount is read-only or uses subPathExpr";
    if (!json_is_object(ed) || !streq(json_string_value(json_object_get(ed, "medium")), "Memory") ||
        !json_object_get(ed, "sizeLimit") || ic_api_parse_quantity(json_object_get(ed, "sizeLimit"), &lim) ||
        lim / 1000 < budget)
      return "the engine's /dev/shm volume must be a Memory emptyDir with sizeLimit >= l1Capacity + 1Gi";
    server_shm = json_pack("{s:s,s:s}", "name", vn, "mountPath", "/dev/shm");
    if (json_object_get(shm_mount, "subPath"))
      json_object_set(server_shm, "subPath", json_object_get(shm_mount, "subPath"));
  } else {
    upsert_named(vols, json_pack("{s:s,s:{s:s,s:s}}", "name", MP_SHM, "emptyDir", "medium", "Memory", "sizeLimit", sizebuf));
    if (!shm_mount) json_array_append_new(emounts, json_pack("{s:s,s:s}", "name", MP_SHM, "mountPath", "/dev/shm"));
    server_shm = json_pack("{s:s,s:s}", "name", MP_SHM, "mountPath", "/dev/shm");
  }
  if (a == AD_SGLANG) {
    json_array_foreach(emounts, i, m) {
      if (streq(json_string_value(json_object_get(m, "mountPath")), MP_CONFIG_DIR) &&
          !streq(json_string_value(json_object_get(m, "name")), MP_CONFIG)) {
        json_decref(server_shm);
        return "the engine already mounts " MP_CONFIG_DIR " from another volume";
      }
    }
    upsert_named(vols, json_pack("{s:s,s:{}}", "name", MP_CONFIG, "emptyDir"));
    upsert_named(emounts, json_pack("{s:s,s:s}", "name", MP_CONFIG, "mountPath", MP_CONFIG_DIR));
  }
  char port[16], chunkb[32], gb[64], workers[32];
  snprintf(port, sizeof port, "%lld", (long long)s->port);
  snprintf(chunkb, sizeof chunkb, "%lld", (long long)chunk);
  snprintf(workers, sizeof workers, "%lld", (long long)s->max_workers);
  fmt_gib(gb, sizeof gb, l1);
  json_t *server_args = json_pack("[s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s]", "server", "--host", "127.0.0.1", "--port", port,
                                  "--http-host", "0.0.0.0", "--http-port", "8080", "--chunk-size", chunkb,
                                  "--l1-size-gb", gb, "--eviction-policy", "LRU", "--max-workers", workers);
  json_t *env = json_pack("[{s:s,s:s},{s:s,s:s}]", "name", "NVIDIA_VISIBLE_DEVICES", "value", "all", "name",
                          "INFERENCECACHE_MP_SERVER", "value", "true");
  if (b->present) {
    char l2[400];
    snprintf(l2, sizeof l2, "{\"host\":\"%s\",\"port\":%d,\"type\":\"resp\"}", b->host, b->port);
    json_array_append_new(server_args, json_string("--l2-adapter"));
    json_array_append_new(server_args, json_string(l2));
    const typeof(cb->spec.remote_storage.redis.authentication) *au = &cb->spec.remote_storage.redis.authentication;
    const ic_api_secret_key_selector_t *sel[2] = {&au->username, &au->password};
    const char *names[2] = {"LMCACHE_RESP_USERNAME", "LMCACHE_RESP_PASSWORD"};
    for (int k = 0; au->present && k < 2; k++)
      if (sel[k]->present)
        json_array_append_new(env, json_pack("{s:s,s:{s:{s:s,s:s}}}", "name", names[k], "valueFrom", "secretKeyRef",
                                             "name", sel[k]->name ? sel[k]->name : "", "key", sel[k]->key ? sel[k]->key : ""));
  }
  json_t *c = json_object();
  json_object_set_new(c, "name", json_string(MP_SERVER));
  const char *img = s->image;
  while (isspace((unsigned char)*img)) img++;
  char imgb[1024];
  snprintf(imgb, sizeof imgb, "%s", img);
  for (size_t k = strlen(imgb); k && isspace((unsigned char)imgb[k - 1]); k--) imgb[k - 1] = 0;
  json_object_set_new(c, "image", json_string(imgb));
  json_object_set_new(c, "imagePullPolicy", json_string("IfNotPresent"));
  json_object_set_new(c, "restartPolicy", json_string("Always"));
  if (a == AD_VLLM) {
    json_object_set_new(c, "command", json_pack("[s]", "lmcache"));
    json_object_set_new(c, "args", server_args);
  } else {
    json_t *args = json_pack("[s,s,s,s,s,s]", sglang_script, "inference-cache-lmcache-config", MP_CONFIG_PATH, chunkb,
                             port, "lmcache");
    json_array_extend(args, server_args);
    json_decref(server_args);
    json_object_set_new(c, "command", json_pack("[s,s]", "/bin/sh", "-c"));
    json_object_set_new(c, "args", args);
  }
  json_object_set_new(c, "env", env);
  json_object_set_new(c, "resources", s->resources ? json_deep_copy(s->resources) : json_object());
  json_t *mounts = json_array();
  json_array_append_new(mounts, server_shm);
  if (a == AD_SGLANG) json_array_append_new(mounts, json_pack("{s:s,s:s}", "name", MP_CONFIG, "mountPath", MP_CONFIG_DIR));
  json_object_set_new(c, "volumeMounts", mounts);
  json_object_set_new(c, "ports", json_pack("[{s:s,s:I,s:s},{s:s,s:i,s:s}]", "name", "lmcache-mp", "containerPort",
                                            (json_int_t)s->port, "protocol", "TCP", "name", "lmcache-http",
                                            "containerPort", 8080, "protocol", "TCP"));
  json_object_set_new(c, "startupProbe", http_probe(3, 40));
  json_object_set_new(c, "readinessProbe", http_probe(5, 3));
  json_object_set_new(c, "livenessProbe", http_probe(10, 3));
  json_object_set_new(c, "securityContext", hardened());
  upsert_named(inits, c);
  return NULL;
}

/* ---- NodeLocal engine wire ---------------------------------------------------------------- */

#define NODE_GATE "lmcache-node-local-gate"
#define NODE_SHM "lmcache-node-shm"
#define NODE_CONFIG "lmcache-node-config"
#define NODE_CONFIG_DIR "/var/run/inference-cache/lmcache-node"
#define NODE_CONFIG_PATH NODE_CONFIG_DIR "/client.yaml"

/* Waits until the node's shared MP server reports exactly the expected identity, then (SGLang)
 * writes the LMCache client config. Runs to completion as a regular init container. */
static const char node_gate_script[] =
    "import json, os, time, urllib.request\n"
    "E = os.environ\n"
    "ip = E['INFERENCECACHE_NODE_IP']; host = '[%s]' % ip if ':' in ip else ip; hp = E['EXPECTED_HTTP_PORT']\n"
    "want = {'mp.instance_id': E['EXPECTED_INSTANCE_ID'], 'mp.shm_name': E['EXPECTED_SHM_NAME'],\n"
    "        'mp.port': E['EXPECTED_MP_PORT'], 'mp.chunk_size': E['EXPECTED_CHUNK_SIZE'],\n"
    "        'mp.max_gpu_workers': E['EXPECTED_MAX_GPU_WORKERS'], 'mp.max_cpu_workers': E['EXPECTED_MAX_CPU_WORKERS'],\n"
    "        'storage_manager.l1_manager_config.memory_config.shm_name': E['EXPECTED_SHM_NAME'], 'http.http_port': hp}\n"
    "def get(path):\n"
    "    with urllib.request.urlopen('http://%s:%s%s' % (host, hp, path), timeout=2) as r:\n"
    "        return json.load(r)\n"
    "def dig(d, key):\n"
    "    for part in key.split('.'):\n"
    "        d = d[part]\n"
    "    return d\n"
    "while True:\n"
    "    try:\n"
    "        cfg = get('/config')\n"
    "        if all(str(dig(cfg, k)) == str(v) for k, v in want.items()) and get('/healthcheck').get('status') == 'healthy':\n"
    "            break\n"
    "    except Exception:\n"
    "        pass\n"
    "    time.sleep(2)\n"
    "path = E.get('CLIENT_CONFIG_PATH', '')\n"
    "if path:\n"
    "    with open(path + '.tmp', 'w') as f:\n"
    "        f.write('chunk_size: %s\\nmp_host: \"%s\"\\nmp_port: %s\\n' % (E['EXPECTED_CHUNK_SIZE'], ip, E['EXPECTED_MP_PORT']))\n"
    "    os.replace(path + '.tmp', path)\n";

static bool safe_uid(const char *u) {
  if (!u || !*u || strlen(u) > 64) return false;
  for (const char *p = u; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) return false;
  return true;
}

static const char *render_node_local(json_t *pod, json_t *eng, adapter_t a, const ic_api_cachebackend_t *cb) {
  const ic_api_lmcache_server_t *s = &cb->spec.lm_cache.node_local.server;
  if (!cb->spec.lm_cache.node_local.present || !s->present || !s->image || !*s->image || !s->has_port ||
      !s->has_http_port || !s->has_max_gpu_workers || !s->has_max_cpu_workers)
    return "lmCache.nodeLocal.server is incomplete";
  if (!safe_uid(cb->meta.uid)) return "the CacheBackend has no usable UID";
  json_t *spec = obj_child(pod, "spec");
  json_t *inits = arr_child(spec, "initContainers"), *vols = arr_child(spec, "volumes");
  json_t *gate = find_named(inits, NODE_GATE, NULL);
  bool owned = false;
  if (gate) {
    json_t *mark = find_named(json_object_get(gate, "env"), "INFERENCECACHE_NODE_LOCAL_GATE", NULL);
    owned = streq(json_string_value(json_object_get(mark, "value")), "true");
    if (!owned) return "an init container named " NODE_GATE " already exists and is not ours";
  }
  json_t *env = arr_child(eng, "env");
  json_t *ip = find_named(env, "INFERENCECACHE_NODE_IP", NULL);
  json_t *want_ip = env_field("INFERENCECACHE_NODE_IP", "status.hostIP");
  if (ip && !json_equal(ip, want_ip) && !owned) {
    json_decref(want_ip);
    return "the engine already defines INFERENCECACHE_NODE_IP differently";
  }
  char hostpath[200], shm_name[200];
  snprintf(hostpath, sizeof hostpath, "/dev/shm/inference-cache/%s", cb->meta.uid);
  snprintf(shm_name, sizeof shm_name, "lmcache_l1_pool_inferencecache_%s", cb->meta.uid);
  json_t *mounts = arr_child(eng, "volumeMounts");
  json_t *shm_mount = NULL, *m;
  size_t i;
  json_array_foreach(mounts, i, m) if (streq(json_string_value(json_object_get(m, "mountPath")), "/dev/shm")) shm_mount = m;
  if (shm_mount && !streq(json_string_value(json_object_get(shm_mount, "name")), NODE_SHM)) {
    json_t *vol = find_named(vols, json_string_value(json_object_get(shm_mount, "name")), NULL);
    json_t *hp = json_object_get(vol, "hostPath");
    if (json_is_true(json_object_get(shm_mount, "readOnly")) || json_object_get(shm_mount, "subPath") ||
        json_object_get(shm_mount, "subPathExpr") || !streq(json_string_value(json_object_get(hp, "path")), hostpath) ||
        !streq(json_string_value(json_object_get(hp, "type")), "DirectoryOrCreate")) {
      json_decref(want_ip);
      return "the engine's /dev/shm mount is not the node-local shared memory of this CacheBackend";
    }
  } else {
    upsert_named(vols, json_pack("{s:s,s:{s:s,s:s}}", "name", NODE_SHM, "hostPath", "path", hostpath, "type",
                                 "DirectoryOrCreate"));
    if (!shm_mount) json_array_append_new(mounts, json_pack("{s:s,s:s}", "name", NODE_SHM, "mountPath", "/dev/shm"));
  }
  if (ip) {
    size_t at;
    find_named(env, "INFERENCECACHE_NODE_IP", &at);
    json_array_set_new(env, at, want_ip);
  } else {
    json_array_append_new(env, want_ip);
  }
  if (a == AD_SGLANG) {
    upsert_named(vols, json_pack("{s:s,s:{}}", "name", NODE_CONFIG, "emptyDir"));
    upsert_named(mounts, json_pack("{s:s,s:s}", "name", NODE_CONFIG, "mountPath", NODE_CONFIG_DIR));
  }
  char inst[700], b[5][32];
  snprintf(inst, sizeof inst, "%.200s/%.253s@%.64s#%lld", cb->meta.namespace_ ? cb->meta.namespace_ : "",
           cb->meta.name ? cb->meta.name : "", cb->meta.uid, (long long)(cb->meta.has_generation ? cb->meta.generation : 0));
  snprintf(b[0], sizeof b[0], "%lld", (long long)s->port);
  snprintf(b[1], sizeof b[1], "%lld", (long long)s->http_port);
  snprintf(b[2], sizeof b[2], "%lld", (long long)ic_api_cachebackend_chunk_size(cb));
  snprintf(b[3], sizeof b[3], "%lld", (long long)s->max_gpu_workers);
  snprintf(b[4], sizeof b[4], "%lld", (long long)s->max_cpu_workers);
  json_t *genv = json_array();
  json_array_append_new(genv, env_var("INFERENCECACHE_NODE_LOCAL_GATE", "true"));
  json_array_append_new(genv, env_field("INFERENCECACHE_NODE_IP", "status.hostIP"));
  json_array_append_new(genv, env_var("EXPECTED_INSTANCE_ID", inst));
  json_array_append_new(genv, env_var("EXPECTED_SHM_NAME", shm_name));
  json_array_append_new(genv, env_var("EXPECTED_MP_PORT", b[0]));
  json_array_append_new(genv, env_var("EXPECTED_HTTP_PORT", b[1]));
  json_array_append_new(genv, env_var("EXPECTED_CHUNK_SIZE", b[2]));
  json_array_append_new(genv, env_var("EXPECTED_MAX_GPU_WORKERS", b[3]));
  json_array_append_new(genv, env_var("EXPECTED_MAX_CPU_WORKERS", b[4]));
  json_array_append_new(genv, env_var("CLIENT_CONFIG_PATH", a == AD_SGLANG ? NODE_CONFIG_PATH : ""));
  json_t *c = json_object();
  json_object_set_new(c, "name", json_string(NODE_GATE));
  json_object_set_new(c, "image", json_string(s->image));
  json_object_set_new(c, "imagePullPolicy", json_string("IfNotPresent"));
  json_object_set_new(c, "command", json_pack("[s,s,s]", "python3", "-c", node_gate_script));
  json_object_set_new(c, "env", genv);
  json_object_set_new(c, "resources", json_pack("{s:{s:s,s:s},s:{s:s}}", "requests", "cpu", "10m", "memory", "32Mi",
                                                "limits", "memory", "128Mi"));
  if (a == AD_SGLANG)
    json_object_set_new(c, "volumeMounts", json_pack("[{s:s,s:s}]", "name", NODE_CONFIG, "mountPath", NODE_CONFIG_DIR));
  json_object_set_new(c, "securityContext", hardened());
  upsert_named(inits, c);
  return NULL;
}

/* ---- engine wiring per adapter ---------------------------------------------------------------- */

static const char *inject_vllm(json_t *pod, json_t *eng, const ic_api_cachebackend_t *cb, const binding_t *b) {
  bool node = streq(cb->spec.lm_cache.topology, "NodeLocal");
  const char *why = node ? render_node_local(pod, eng, AD_VLLM, cb) : render_pod_local(pod, eng, AD_VLLM, cb, b);
  if (why) return why;
  const ic_api_lmcache_server_t *srv = node ? &cb->spec.lm_cache.node_local.server : &cb->spec.lm_cache.pod_local.server;
  const char *role = ic_api_cachebackend_role(cb);
  const char *kv_role = streq(role, "ReadOnly") ? "kv_consumer" : streq(role, "WriteOnly") ? "kv_producer" : "kv_both";
  char kv[600];
  snprintf(kv, sizeof kv,
           "{\"kv_connector\":\"LMCacheMPConnector\",\"kv_connector_module_path\":\"lmcache.integration.vllm."
           "lmcache_mp_connector\",\"kv_role\":\"%s\",\"kv_connector_extra_config\":{\"lmcache.mp.host\":\"tcp://"
           "%s\",\"lmcache.mp.port\":\"%lld\"}}",
           kv_role, node ? "$(INFERENCECACHE_NODE_IP)" : "127.0.0.1", (long long)srv->port);
  json_t *args = arr_child(eng, "args");
  pair_upsert(args, "--kv-transfer-config", kv);
  flag_upsert(args, "--disable-hybrid-kv-cache-manager");
  json_t *env = arr_child(eng, "env");
  env_set_single(env, "PYTHONHASHSEED", "0");
  env_set_single(env, "INFERENCECACHE_FAIL_OPEN", "true");
  return NULL;
}

static const char *inject_sglang(json_t *pod, json_t *eng, const ic_api_cachebackend_t *cb, const binding_t *b,
                                 bool metrics) {
  bool node = streq(cb->spec.lm_cache.topology, "NodeLocal");
  const char *why = node ? render_node_local(pod, eng, AD_SGLANG, cb) : render_pod_local(pod, eng, AD_SGLANG, cb, b);
  if (why) return why;
  json_t *args = arr_child(eng, "args");
  flag_upsert(args, "--enable-lmcache");
  pair_upsert(args, "--lmcache-config-file", node ? NODE_CONFIG_PATH : MP_CONFIG_PATH);
  json_t *env = arr_child(eng, "env");
  env_upsert(env, "LMCACHE_USE_EXPERIMENTAL", "True");
  env_upsert(env, "INFERENCECACHE_FAIL_OPEN", "true");
  if (metrics) flag_upsert(args, "--enable-metrics");
  return NULL;
}

/* SGLang HiCache flags: an equivalent existing flag is kept byte for byte, a different one fails. */
static const char *inject_hicache(json_t *eng, const ic_api_cachebackend_t *cb) {
  argv_view_t av;
  argv_of(eng, &av);
  const char *vals[4];
  static const char *const lm1[] = {"--enable-lmcache", NULL}, *const lm2[] = {"--lmcache-config-file", NULL};
  if (flag_values(&av, lm1, vals, 4) || flag_values(&av, lm2, vals, 4)) return "engine already enables LMCache";
  static const char *const hc[] = {"--enable-hierarchical-cache", NULL};
  if (flag_values(&av, hc, vals, 4) > 1) return "--enable-hierarchical-cache is repeated";
  for (size_t i = 0; i < av.n; i++)
    if (strncmp(av.v[i], "--enable-hierarchical-cache=", 28) == 0) return "--enable-hierarchical-cache must be bare";
  const typeof(cb->spec.hi_cache) *h = &cb->spec.hi_cache;
  if (h->has_size_gb == (h->ratio != NULL)) return "hiCache needs exactly one of sizeGB or ratio";
  char sz[32];
  struct {
    const char *flag, *want;
    int kind; /* 0 exact, 1 integer, 2 number */
  } want[5];
  int n = 0;
  static const char *const sizef[] = {"--hicache-size", NULL}, *const ratiof[] = {"--hicache-ratio", NULL};
  if (h->has_size_gb) {
    if (flag_values(&av, ratiof, vals, 4)) return "engine sets --hicache-ratio but hiCache.sizeGB is configured";
    snprintf(sz, sizeof sz, "%lld", (long long)h->size_gb);
    want[n++] = (typeof(want[0])){"--hicache-size", sz, 1};
  } else {
    if (flag_values(&av, sizef, vals, 4)) return "engine sets --hicache-size but hiCache.ratio is configured";
    want[n++] = (typeof(want[0])){"--hicache-ratio", h->ratio, 2};
  }
  if (h->write_policy) want[n++] = (typeof(want[0])){"--hicache-write-policy", h->write_policy, 0};
  if (h->io_backend) want[n++] = (typeof(want[0])){"--hicache-io-backend", h->io_backend, 0};
  if (h->memory_layout) want[n++] = (typeof(want[0])){"--hicache-mem-layout", h->memory_layout, 0};
  bool missing[5] = {0};
  for (int k = 0; k < n; k++) {
    const char *names[2] = {want[k].flag, NULL};
    int c = flag_values(&av, names, vals, 4);
    if (c > 1) return "a HiCache flag is repeated";
    if (c == 0) {
      missing[k] = true;
      continue;
    }
    const char *have = vals[0];
    if (!have || strncmp(have, "--", 2) == 0) return "a HiCache flag is missing its value";
    bool same = want[k].kind == 0 ? strcmp(have, want[k].want) == 0 : strtod(have, NULL) == strtod(want[k].want, NULL);
    if (!same) return "engine HiCache flags conflict with the CacheBackend";
  }
  json_t *args = arr_child(eng, "args");
  flag_upsert(args, "--enable-hierarchical-cache");
  for (int k = 0; k < n; k++)
    if (missing[k]) {
      json_array_append_new(args, json_string(want[k].flag));
      json_array_append_new(args, json_string(want[k].want));
    }
  flag_upsert(args, "--enable-metrics");
  return NULL;
}

/* ---- LMCache kernel-check init container (vLLM only) -------------------------------------- */

static const char kernel_check_script[] =
    "import ctypes, glob, importlib, os, sys\n"
    "def check():\n"
    "    try:\n"
    "        import lmcache\n"
    "    except Exception as e:\n"
    "        return 'lmcache is not importable: %s' % e\n"
    "    try:\n"
    "        import torch  # noqa: F401  (c_ops links against libtorch)\n"
    "        libs = glob.glob(os.path.join(os.path.dirname(lmcache.__file__), '**', 'c_ops*.so'), recursive=True)\n"
    "        if not libs:\n"
    "            return 'no lmcache c_ops extension found'\n"
    "        ctypes.CDLL(libs[0])\n"
    "    except Exception as e:\n"
    "        return 'lmcache c_ops does not load: %s' % e\n"
    "    try:\n"
    "        try:\n"
    "            importlib.import_module('vllm._C_stable_libtorch')\n"
    "        except ImportError:\n"
    "            importlib.import_module('vllm._C')\n"
    "    except Exception as e:\n"
    "        return 'vllm kernels do not load: %s' % e\n"
    "    return None\n"
    "err = check()\n"
    "msg = 'OK' if err is None else 'FAIL: ' + err\n"
    "try:\n"
    "    with open('/dev/termination-log', 'w') as f:\n"
    "        f.write(msg)\n"
    "except OSError:\n"
    "    pass\n"
    "print(msg)\n"
    "sys.exit(1 if err is not None and os.environ.get('KERNEL_CHECK_STRICT') == '1' else 0)\n";

static bool positive_gpu(const json_t *res) {
  const char *keys[] = {"limits", "requests"};
  for (int i = 0; i < 2; i++) {
    int64_t m;
    const json_t *q = json_object_get(json_object_get(res, keys[i]), "nvidia.com/gpu");
    if (q && ic_api_parse_quantity(q, &m) == 0 && m > 0) return true;
  }
  return false;
}

/* Returns the container to install, or NULL when the check is declined (mode off, CPU Pod in auto). */
static json_t *kernel_check(const ic_api_cachebackend_t *cb, json_t *pod) {
  const char *mode = json_string_value(json_object_get(cb->meta.annotations, IC_API_ANN_KERNEL_CHECK));
  if (!mode || (strcmp(mode, "report-only") && strcmp(mode, "strict") && strcmp(mode, "off"))) mode = "auto";
  if (streq(mode, "off")) return NULL;
  json_t *eng = engine_container(pod, AD_VLLM);
  if (!eng || !json_string_value(json_object_get(eng, "image"))) return NULL;
  if (streq(mode, "auto") && !positive_gpu(json_object_get(eng, "resources"))) return NULL;
  json_t *c = json_object();
  json_object_set_new(c, "name", json_string(KERNEL_CHECK));
  static const char *const copy[] = {"image", "imagePullPolicy", "securityContext", "workingDir", "envFrom",
                                     "volumeMounts", "volumeDevices", NULL};
  for (int i = 0; copy[i]; i++)
    if (json_object_get(eng, copy[i])) json_object_set_new(c, copy[i], json_deep_copy(json_object_get(eng, copy[i])));
  json_t *env = json_deep_copy(json_object_get(eng, "env"));
  if (!json_is_array(env)) {
    json_decref(env);
    env = json_array();
  }
  env_remove_all(env, "KERNEL_CHECK_STRICT");
  json_array_append_new(env, env_var("KERNEL_CHECK_STRICT", streq(mode, "strict") ? "1" : "0"));
  json_object_set_new(c, "env", env);
  json_object_set_new(c, "command", json_pack("[s,s,s]", "python3", "-c", kernel_check_script));
  json_object_set_new(c, "resources", json_pack("{s:{s:s,s:s}}", "requests", "cpu", "50m", "memory", "256Mi"));
  json_object_set_new(c, "terminationMessagePath", json_string("/dev/termination-log"));
  json_object_set_new(c, "terminationMessagePolicy", json_string("File"));
  return c;
}

/* ---- observation sidecar ------------------------------------------------------------------ */

/* Last valid --port of the engine (command + args), $(VAR) resolved from literal env values. */
static long engine_port(const json_t *eng, long dflt) {
  argv_view_t av;
  argv_of(eng, &av);
  long port = dflt;
  for (size_t i = 0; i < av.n; i++) {
    const char *v = NULL;
    if (strcmp(av.v[i], "--port") == 0 && i + 1 < av.n) v = av.v[i + 1];
    else if (strncmp(av.v[i], "--port=", 7) == 0) v = av.v[i] + 7;
    if (!v) continue;
    char name[256];
    if (sscanf(v, "$(%255[A-Za-z0-9_.-])", name) == 1 && v[strlen(v) - 1] == ')') {
      json_t *e = find_named(json_object_get(eng, "env"), name, NULL);
      v = json_string_value(json_object_get(e, "value"));
    }
    long p;
    if (parse_pos_int(v, &p) && p <= 65535) port = p;
  }
  return port;
}

static json_t *subscriber(const ic_admission_config_t *cfg, const ic_api_cachebackend_t *cb, adapter_t a,
                          const json_t *eng) {
  if (!cfg->subscriber_image || !*cfg->subscriber_image) return NULL;
  if (!cb->spec.observation.model_id || !*cb->spec.observation.model_id) return NULL;
  const char *scheme = a == AD_VLLM ? "vllm" : "sglang";
  long port = engine_port(eng, a == AD_VLLM ? 8000 : 30000);
  const char *srv = (cfg->policy_server_grpc_address && *cfg->policy_server_grpc_address)
                        ? cfg->policy_server_grpc_address : DEFAULT_SERVER_ADDR;
  char b[4][600];
  snprintf(b[0], sizeof b[0], "--server=%s", srv);
  snprintf(b[1], sizeof b[1], "--model-id=%s", cb->spec.observation.model_id);
  snprintf(b[2], sizeof b[2], "--hash-scheme=%s", scheme);
  snprintf(b[3], sizeof b[3], "--engine-metrics-url=http://127.0.0.1:%ld/metrics", port);
  json_t *args = json_pack("[s,s,s,s,s,s,s]", "--engine-endpoint=tcp://127.0.0.1:5557", b[0], "--replica-id=$(POD_NAME)",
                           "--tenant-id=$(POD_NAMESPACE)", b[1], b[2], b[3]);
  if (!ic_api_cachebackend_events_only(cb)) json_array_append_new(args, json_string("--ignore-block-removed=true"));
  json_t *c = json_object();
  json_object_set_new(c, "name", json_string(SUBSCRIBER));
  json_object_set_new(c, "image", json_string(cfg->subscriber_image));
  json_object_set_new(c, "imagePullPolicy", json_string("IfNotPresent"));
  json_object_set_new(c, "args", args);
  json_t *env = json_array();
  json_array_append_new(env, env_field("POD_NAME", "metadata.name"));
  json_array_append_new(env, env_field("POD_NAMESPACE", "metadata.namespace"));
  json_object_set_new(c, "env", env);
  json_object_set_new(c, "resources", json_pack("{s:{s:s,s:s},s:{s:s,s:s}}", "requests", "cpu", "10m", "memory", "64Mi",
                                                "limits", "cpu", "200m", "memory", "128Mi"));
  json_object_set_new(c, "securityContext",
                      json_pack("{s:b,s:i,s:b,s:b,s:{s:[s]}}", "runAsNonRoot", 1, "runAsUser", 65532,
                                "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem", 1, "capabilities", "drop", "ALL"));
  return c;
}

/* ---- engineOverrides merge ----------------------------------------------------------------- */

static bool is_flag(const char *a) { return a && a[0] == '-'; }

/* token -> value map of an argument list: "--f=v" -> v, "--f v" -> v (consuming v), bare -> "". */
static json_t *arg_map(const json_t *args) {
  json_t *m = json_object();
  size_t n = json_array_size(args);
  for (size_t i = 0; i < n; i++) {
    const char *a = json_string_value(json_array_get(args, i));
    if (!is_flag(a)) continue;
    const char *eq = strchr(a, '=');
    char tok[256];
    snprintf(tok, sizeof tok, "%.*s", (int)(eq ? (size_t)(eq - a) : strlen(a)), a);
    const char *v = "";
    if (eq) v = eq + 1;
    else if (i + 1 < n && !is_flag(json_string_value(json_array_get(args, i + 1)))) v = json_string_value(json_array_get(args, ++i));
    if (!json_object_get(m, tok)) json_object_set_new(m, tok, json_string(v ? v : ""));
  }
  return m;
}

/* Names whose entry is new or changed between `before` and `after` (objects keyed by token/name). */
static json_t *owned_keys(const json_t *before, const json_t *after) {
  json_t *o = json_object();
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)after, k, v) {
    const json_t *b = json_object_get(before, k);
    if (!b || !json_equal(b, v)) json_object_set_new(o, k, json_true());
  }
  return o;
}

static json_t *env_map(const json_t *env) {
  json_t *m = json_object();
  size_t i;
  json_t *e;
  json_array_foreach(env, i, e) {
    const char *n = json_string_value(json_object_get(e, "name"));
    if (n && !json_object_get(m, n)) json_object_set(m, n, e);
  }
  return m;
}

/* Index of the first occurrence of a flag token and how many slots it uses (1 or 2), or -1. */
static long find_flag(const json_t *args, const char *tok, int *slots) {
  size_t n = json_array_size(args), l = strlen(tok);
  for (size_t i = 0; i < n; i++) {
    const char *a = json_string_value(json_array_get(args, i));
    if (!a) continue;
    if (strncmp(a, tok, l) == 0 && a[l] == '=') return *slots = 1, (long)i;
    if (strcmp(a, tok) == 0) {
      *slots = (i + 1 < n && !is_flag(json_string_value(json_array_get(args, i + 1)))) ? 2 : 1;
      return (long)i;
    }
  }
  return -1;
}

static void apply_overrides(json_t *eng, const json_t *pre_args, const json_t *pre_env, const json_t *eo) {
  json_t *args = arr_child(eng, "args"), *env = arr_child(eng, "env");
  json_t *before = arg_map(pre_args), *after = arg_map(args);
  json_t *aown = owned_keys(before, after);
  json_t *ebefore = env_map(pre_env), *eafter = env_map(env);
  json_t *eown = owned_keys(ebefore, eafter);
  size_t i;
  json_t *it;
  json_array_foreach(json_object_get(eo, "suppressArgs"), i, it) {
    const char *tok = json_string_value(it);
    int slots;
    long at;
    if (!tok || !json_object_get(aown, tok)) continue;
    while ((at = find_flag(args, tok, &slots)) >= 0)
      for (int k = 0; k < slots; k++) json_array_remove(args, (size_t)at);
  }
  const json_t *oargs = json_object_get(eo, "args");
  size_t n = json_array_size(oargs);
  for (size_t k = 0; k < n; k++) {
    const char *a = json_string_value(json_array_get(oargs, k));
    if (!a) continue;
    if (!is_flag(a)) {
      if (!arg_present(args, a)) json_array_append_new(args, json_string(a)); /* idempotent re-admission */
      continue;
    }
    const char *eq = strchr(a, '=');
    const char *val = NULL;
    if (!eq && k + 1 < n && !is_flag(json_string_value(json_array_get(oargs, k + 1)))) val = json_string_value(json_array_get(oargs, ++k));
    char tok[256];
    snprintf(tok, sizeof tok, "%.*s", (int)(eq ? (size_t)(eq - a) : strlen(a)), a);
    bool adapter = json_object_get(aown, tok) != NULL, user = json_object_get(before, tok) && !adapter;
    if (user) continue;
    int slots;
    long at = adapter ? find_flag(args, tok, &slots) : -1;
    if (at >= 0) {
      for (int r = 0; r < slots; r++) json_array_remove(args, (size_t)at);
      json_array_insert_new(args, (size_t)at, json_string(a));
      if (val) json_array_insert_new(args, (size_t)at + 1, json_string(val));
    } else if (find_flag(args, tok, &slots) < 0) {
      json_array_append_new(args, json_string(a));
      if (val) json_array_append_new(args, json_string(val));
    }
  }
  json_array_foreach(json_object_get(eo, "suppressEnv"), i, it) {
    const char *name = json_string_value(it);
    if (name && json_object_get(eown, name)) env_remove_all(env, name);
  }
  json_array_foreach(json_object_get(eo, "env"), i, it) {
    const char *name = json_string_value(json_object_get(it, "name"));
    if (!name) continue;
    bool adapter = json_object_get(eown, name) != NULL, user = json_object_get(ebefore, name) && !adapter;
    if (user) continue;
    size_t at;
    if (find_named(env, name, &at))
      json_array_set_new(env, at, json_deep_copy(it));
    else
      json_array_append_new(env, json_deep_copy(it));
  }
  if (json_array_size(env) == 0) json_object_del(eng, "env");
  if (json_array_size(args) == 0) json_object_del(eng, "args");
  json_decref(before), json_decref(after), json_decref(aown);
  json_decref(ebefore), json_decref(eafter), json_decref(eown);
}

/* ---- the algorithm -------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

void ic_admission_mutate_pod(const ic_admission_config_t *cfg, const json_t *pod, const char *req_ns,
                             const json_t *backends, ic_admission_pod_result_t *res) {
  char saved_reason[512];
  snprintf(saved_reason, sizeof saved_reason, "%s", res->reason);
  memset(res, 0, sizeof *res);
  if (!json_is_object(pod)) {
    snprintf(res->reason, sizeof res->reason, "cannot decode Pod; admitting unchanged");
    return;
  }
  const json_t *md = json_object_get(pod, "metadata");
  const char *ns = json_string_value(json_object_get(md, "namespace"));
  if (!ns || !*ns) ns = req_ns ? req_ns : "";

  if (skip_inject(ann(pod, IC_API_ANN_SKIP_INJECT))) {
    bool has_trio = false;
    for (int i = 0; trio[i]; i++) has_trio |= ann(pod, trio[i]) != NULL;
    snprintf(res->reason, sizeof res->reason, "injection skipped by annotation %s", IC_API_ANN_SKIP_INJECT);
    if (streq(ann(pod, IC_API_ANN_INJECT_SKIPPED), "skip-inject-annotation") && !has_trio) return;
    res->patched = json_deep_copy(pod);
    ann_del(res->patched, trio);
    ann_set(res->patched, IC_API_ANN_INJECT_SKIPPED, "skip-inject-annotation");
    return;
  }
  if (!backends) {
    fail_open(pod, res, "%s", saved_reason[0] ? saved_reason : "cannot list CacheBackends");
    return;
  }
  const json_t *labels = json_object_get(md, "labels");
  const json_t *match = NULL;
  const char *names[64];
  size_t nmatch = 0;
  size_t i;
  const json_t *it;
  json_array_foreach(backends, i, it) {
    const json_t *ml = json_object_get(json_object_get(json_object_get(it, "spec"), "engineSelector"), "matchLabels");
    if (!json_is_object(ml) || json_object_size(ml) == 0) continue;
    const char *k;
    const json_t *v;
    bool ok = true;
    json_object_foreach((json_t *)ml, k, v) {
      const char *have = json_string_value(json_object_get(labels, k));
      if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0) ok = false;
    }
    if (!ok) continue;
    match = it;
    const char *nm = json_string_value(json_object_get(json_object_get(it, "metadata"), "name"));
    if (nmatch < 64) names[nmatch] = nm ? nm : "";
    nmatch++;
  }
  if (nmatch == 0) {
    fail_open(pod, res, "no matching CacheBackend%s", "");
    return;
  }
  if (nmatch > 1) {
    size_t n = nmatch < 64 ? nmatch : 64;
    qsort(names, n, sizeof *names, cmp_str);
    char list[300] = "";
    for (size_t k = 0; k < n; k++) {
      size_t l = strlen(list);
      snprintf(list + l, sizeof list - l, "%s%s", k ? ", " : "", names[k]);
    }
    res->denied = true;
    snprintf(res->reason, sizeof res->reason,
             "Pod labels match multiple CacheBackends in namespace \"%s\" (%s); engine admission requires exactly one "
             "CacheBackend owner",
             ns, list);
    return;
  }

  ic_api_cachebackend_t cb = {0};
  if (ic_api_cachebackend_decode(match, &cb, NULL) != 0) {
    fail_open(pod, res, "cannot decode the matching CacheBackend%s", "");
    return;
  }
  json_t *work = NULL;
  adapter_t a = select_adapter(&cb);
  bool events_only = ic_api_cachebackend_events_only(&cb);
  const char *why = NULL;
  if (a == AD_NONE) {
    fail_open(pod, res, "no runtime adapter supports CacheBackend %s", cb.meta.name);
    goto out;
  }
  work = json_deep_copy(pod);
  json_t *eng = engine_container(work, a);
  if (cb.spec.lm_cache.topology && !events_only) {
    if (!eng) {
      fail_open(pod, res, "name the engine container \"%s\" or run a single container", engine_name(a));
      goto out;
    }
    why = a == AD_VLLM ? validate_vllm(eng) : a == AD_SGLANG ? validate_sglang(eng, ic_api_cachebackend_chunk_size(&cb)) : NULL;
    if (why) {
      fail_open(pod, res, "engine Pod is not compatible with LMCache MP: %s", why);
      goto out;
    }
  }
  /* endpoint and binding (the algorithm's last steps) */
  binding_t b = {0};
  b.cb = &cb;
  if (cb.spec.remote_storage.present) {
    if (!streq(cb.spec.remote_storage.provider, "Redis")) {
      fail_open(pod, res, "unknown remote storage provider%s", "");
      goto out;
    }
    if (a == AD_HICACHE) {
      fail_open(pod, res, "SGLang HiCache does not accept a remote-storage binding%s", "");
      goto out;
    }
    if (cb.spec.remote_storage.redis.tls || cb.spec.remote_storage.redis.has_database) {
      fail_open(pod, res, "Redis TLS and database selection are not supported by the LMCache L2 adapter%s", "");
      goto out;
    }
    const char *ep = NULL;
    if (streq(cb.spec.remote_storage.ownership, "External"))
      ep = ic_api_check_endpoint_shape(cb.spec.remote_storage.endpoint) ? NULL : cb.spec.remote_storage.endpoint;
    else if (cb.status.remote_storage.present)
      ep = cb.status.remote_storage.endpoint;
    char epb[512] = "";
    if (ep) {
      while (isspace((unsigned char)*ep)) ep++;
      snprintf(epb, sizeof epb, "%s", ep);
      for (size_t k = strlen(epb); k && isspace((unsigned char)epb[k - 1]); k--) epb[k - 1] = 0;
    }
    if (!events_only) {
      if (!epb[0] || ic_api_check_endpoint_shape(epb)) {
        fail_open(pod, res, "CacheBackend %s.remoteStorage.endpoint not usable",
                  streq(cb.spec.remote_storage.ownership, "External") ? "spec" : "status");
        goto out;
      }
      b.present = true;
      char *colon = strrchr(epb, ':');
      *colon = 0;
      b.port = atoi(colon + 1);
      const char *h = epb;
      if (h[0] == '[') h++, epb[strlen(epb) - 1] = 0;
      snprintf(b.host, sizeof b.host, "%.255s", h);
    }
  }
  if (!events_only) {
    if (!eng) {
      fail_open(pod, res, "name the engine container \"%s\" or run a single container", engine_name(a));
      goto out;
    }
    bool metrics = cfg && cfg->subscriber_image && *cfg->subscriber_image && cb.spec.observation.model_id &&
                   *cb.spec.observation.model_id;
    json_t *pre_args = json_deep_copy(json_object_get(eng, "args")), *pre_env = json_deep_copy(json_object_get(eng, "env"));
    why = a == AD_VLLM ? inject_vllm(work, eng, &cb, &b)
        : a == AD_SGLANG ? inject_sglang(work, eng, &cb, &b, metrics)
                         : inject_hicache(eng, &cb);
    if (!why && cb.spec.integration.engine_overrides)
      apply_overrides(eng, pre_args, pre_env, cb.spec.integration.engine_overrides);
    json_decref(pre_args);
    json_decref(pre_env);
    if (why) {
      fail_open(pod, res, "engine injection failed: %s", why);
      goto out;
    }
  }
  if (a == AD_VLLM) { /* step 14: the vLLM adapter owns the kernel-check init container */
    json_t *inits = json_object_get(json_object_get(work, "spec"), "initContainers");
    json_t *kc = events_only ? NULL : kernel_check(&cb, work);
    size_t idx;
    if (kc)
      upsert_named(arr_child(obj_child(work, "spec"), "initContainers"), kc);
    else if (find_named(inits, KERNEL_CHECK, &idx))
      json_array_remove(inits, idx);
    inits = json_object_get(json_object_get(work, "spec"), "initContainers");
    if (json_is_array(inits) && json_array_size(inits) == 0 && !json_object_get(json_object_get(pod, "spec"), "initContainers"))
      json_object_del(json_object_get(work, "spec"), "initContainers");
  }
  bool appended = false;
  json_t *side = cfg ? subscriber(cfg, &cb, a, eng) : NULL;
  if (side) {
    json_t *cs = arr_child(obj_child(work, "spec"), "containers");
    if (!find_named(cs, SUBSCRIBER, NULL)) {
      adm_sidecar_creds(cfg, obj_child(work, "spec"), side);
      json_array_append(cs, side);
      appended = true;
    } else if (streq(ann(pod, IC_API_ANN_INJECTED_BY_UID), cb.meta.uid)) {
      appended = true; /* our own sidecar from an earlier admission: keep the stamps stable */
    }
    json_decref(side);
  }
  if (events_only && !appended) {
    fail_open(pod, res, "events-only: no subscriber configured%s", "");
    goto out;
  }
  ann_del(work, (const char *const[]){IC_API_ANN_INJECT_SKIPPED, NULL});
  char by[600], gen[32];
  snprintf(by, sizeof by, "%s/%s", cb.meta.namespace_ ? cb.meta.namespace_ : ns, cb.meta.name ? cb.meta.name : "");
  snprintf(gen, sizeof gen, "%lld", (long long)(cb.meta.has_generation ? cb.meta.generation : 0));
  ann_set(work, IC_API_ANN_INJECTED_BY, by);
  ann_set(work, IC_API_ANN_INJECTED_BY_UID, cb.meta.uid ? cb.meta.uid : "");
  ann_set(work, IC_API_ANN_INJECTED_GENERATION, gen);
  if (!events_only && streq(cb.spec.lm_cache.topology, "PodLocal"))
    json_object_set_new(obj_child(obj_child(work, "metadata"), "labels"), IC_API_LABEL_MP_METRICS, json_string("true"));
  snprintf(res->reason, sizeof res->reason, "injected by CacheBackend %.400s", by);
  if (!json_equal(work, pod)) {
    res->patched = work;
    work = NULL;
  }
out:
  json_decref(work);
  ic_api_cachebackend_free(&cb);
}
