/* Validating webhooks: CacheBackend rules (every rule triggered by a
 * later field, so seed-only objects are never denied), UPDATE grandfathering, the namespace-wide
 * cache-domain uniqueness check, and the CachePolicy / CacheTenant spec rules. */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/admission.h"
#include "ic/err.h"
#include "internal.h"

#define GI (1024LL * 1024 * 1024)
#define DOMAIN_FIELD "spec.engineSelector.matchLabels[" IC_API_LABEL_CACHE_DOMAIN "]"

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }
static bool blank(const char *s) {
  if (!s) return true;
  while (*s)
    if (!isspace((unsigned char)*s++)) return false;
  return true;
}

static void add(ic_api_errors_t *e, ic_api_err_type_t t, const char *field, const json_t *bad,
                const char *const *sup, const char *detail) {
  ic_api_errors_add(e, t, field, bad, sup, "%s", detail ? detail : "");
}
static void add_str(ic_api_errors_t *e, ic_api_err_type_t t, const char *field, const char *bad,
                    const char *detail) {
  json_t *v = bad ? json_string(bad) : NULL;
  add(e, t, field, v, NULL, detail);
  json_decref(v);
}
static void add_int(ic_api_errors_t *e, ic_api_err_type_t t, const char *field, int64_t bad, const char *detail) {
  json_t *v = json_integer(bad);
  add(e, t, field, v, NULL, detail);
  json_decref(v);
}

/* ---- resource requirement rules (and the LMCache MP block rules) ----- */

static bool overcommittable(const char *n) {
  return streq(n, "cpu") || streq(n, "memory") || streq(n, "ephemeral-storage");
}
static bool is_hugepages(const char *n) { return strncmp(n, "hugepages-", 10) == 0; }

static bool resource_name_ok(const char *n) {
  if (overcommittable(n)) return true;
  if (is_hugepages(n)) {
    int64_t m;
    return ic_api_parse_quantity_str(n + 10, &m) == 0 && m > 0;
  }
  if (!strchr(n, '/')) return false;
  if (strncmp(n, "kubernetes.io/", 14) == 0 || strncmp(n, "requests.kubernetes.io/", 23) == 0) return false;
  return ic_api_is_qualified_name(n);
}

static void resource_rules(const json_t *res, const char *path, ic_api_errors_t *e) {
  char f[600];
  const json_t *req = json_object_get(res, "requests"), *lim = json_object_get(res, "limits");
  const char *k;
  const json_t *v;
  /* 6: limits below requests */
  json_object_foreach((json_t *)lim, k, v) {
    const json_t *r = json_object_get(req, k);
    int64_t lm, rm;
    if (!r || ic_api_parse_quantity(v, &lm) || ic_api_parse_quantity(r, &rm)) continue;
    snprintf(f, sizeof f, "%s.limits[%s]", path, k);
    if (overcommittable(k) && lm < rm)
      add(e, IC_API_ERR_INVALID, f, v, NULL, "must be greater than or equal to the request");
    else if (!overcommittable(k) && lm != rm)
      add(e, IC_API_ERR_INVALID, f, v, NULL, "must equal the request for a non-overcommittable resource");
  }
  /* 7: requests-only non-overcommittable */
  json_object_foreach((json_t *)req, k, v) {
    if (overcommittable(k) || json_object_get(lim, k)) continue;
    snprintf(f, sizeof f, "%s.requests[%s]", path, k);
    add(e, IC_API_ERR_INVALID, f, v, NULL, "a non-overcommittable resource request needs an equal limit");
  }
  /* 8: claims */
  const json_t *claims = json_object_get(res, "claims");
  if (json_array_size(claims) > 0) {
    snprintf(f, sizeof f, "%s.claims", path);
    add(e, IC_API_ERR_FORBIDDEN, f, NULL, NULL, "dynamic resource claims are not supported");
  }
  const json_t *maps[2] = {req, lim};
  const char *names[2] = {"requests", "limits"};
  /* 9: negative, 10: names, 11: fractional extended, 12: misaligned hugepages */
  for (int pass = 9; pass <= 12; pass++)
    for (int i = 0; i < 2; i++) {
      json_object_foreach((json_t *)maps[i], k, v) {
        int64_t m;
        bool parsed = ic_api_parse_quantity(v, &m) == 0;
        snprintf(f, sizeof f, "%s.%s[%s]", path, names[i], k);
        if (pass == 9 && parsed && m < 0) add(e, IC_API_ERR_INVALID, f, v, NULL, "must be greater than or equal to 0");
        if (pass == 10 && !resource_name_ok(k)) {
          json_t *bad = json_string(k);
          add(e, IC_API_ERR_INVALID, f, bad, NULL, "must be a standard resource name or a qualified extended resource name");
          json_decref(bad);
        }
        if (pass == 11 && parsed && !overcommittable(k) && !is_hugepages(k) && m % 1000 != 0)
          add(e, IC_API_ERR_INVALID, f, v, NULL, "must be an integer for an extended resource");
        if (pass == 12 && parsed && is_hugepages(k) && m > 0) {
          int64_t page;
          if (ic_api_parse_quantity_str(k + 10, &page) == 0 && page > 0 && m % page != 0)
            add(e, IC_API_ERR_INVALID, f, v, NULL, "must be a multiple of the huge page size");
        }
      }
    }
}

static bool qty(const json_t *m, const char *k, int64_t *out) {
  const json_t *v = json_object_get(m, k);
  return v && ic_api_parse_quantity(v, out) == 0;
}

/* ---- LMCache MP server rules ----------------------------------- */

/* Compiled once: regcomp costs more than the rest of a validation. regexec is thread-safe. */
static regex_t digest_re;
static int digest_re_ok;
static pthread_once_t digest_once = PTHREAD_ONCE_INIT;
static void digest_init(void) {
  digest_re_ok = regcomp(&digest_re, "^[^[:space:]@]+@sha256:[a-f0-9]{64}$", REG_EXTENDED | REG_NOSUB) == 0;
}

static bool digest_pinned(const char *img) {
  pthread_once(&digest_once, digest_init);
  if (!digest_re_ok) return true;
  char buf[1024];
  size_t n = strlen(img);
  while (n && isspace((unsigned char)img[n - 1])) n--;
  while (*img && isspace((unsigned char)*img)) img++, n--;
  if (n >= sizeof buf) n = sizeof buf - 1;
  memcpy(buf, img, n);
  buf[n] = 0;
  return regexec(&digest_re, buf, 0, NULL, 0) == 0;
}

static void server_rules(const ic_api_lmcache_server_t *s, const char *p, bool pod_local, ic_api_errors_t *e) {
  char f[600];
  snprintf(f, sizeof f, "%s.image", p);
  if (blank(s->image))
    add(e, IC_API_ERR_REQUIRED, f, NULL, NULL, "image is required");
  else if (!digest_pinned(s->image))
    add_str(e, IC_API_ERR_INVALID, f, s->image, "must be pinned by digest as <repository>@sha256:<64 hex>");
  snprintf(f, sizeof f, "%s.port", p);
  if (s->has_port && (s->port < 1 || s->port > 65535))
    add_int(e, IC_API_ERR_INVALID, f, s->port, "must be between 1 and 65535, inclusive");
  if (pod_local && s->has_port && s->port == 5557)
    add_int(e, IC_API_ERR_INVALID, f, s->port, "collides with the engine KV-event publisher port 5557");
  if (pod_local && s->has_port && s->port == 8080)
    add_int(e, IC_API_ERR_INVALID, f, s->port, "collides with the LMCache MP HTTP health/control port 8080");
  int64_t l1 = 0;
  snprintf(f, sizeof f, "%s.l1Capacity", p);
  bool have_l1 = s->l1_capacity && ic_api_parse_quantity(s->l1_capacity, &l1) == 0;
  if (s->l1_capacity && (!have_l1 || l1 <= 0))
    add(e, IC_API_ERR_INVALID, f, s->l1_capacity, NULL, "must be greater than zero");
  if (!s->resources) return;
  snprintf(f, sizeof f, "%s.resources", p);
  resource_rules(s->resources, f, e);
  const json_t *req = json_object_get(s->resources, "requests"), *lim = json_object_get(s->resources, "limits");
  int64_t cpu, mreq = 0, mlim = 0;
  char g[700];
  if (!qty(req, "cpu", &cpu) || cpu <= 0) {
    snprintf(g, sizeof g, "%s.requests[cpu]", f);
    add(e, IC_API_ERR_REQUIRED, g, NULL, NULL, "a positive CPU request is required");
  }
  int64_t need = have_l1 && l1 > 0 ? l1 + GI * 1000 : 0;
  snprintf(g, sizeof g, "%s.requests[memory]", f);
  bool have_req = qty(req, "memory", &mreq) && mreq > 0;
  if (!have_req)
    add(e, IC_API_ERR_REQUIRED, g, NULL, NULL, "a positive memory request is required");
  else if (need && mreq < need)
    add(e, IC_API_ERR_INVALID, g, json_object_get(req, "memory"), NULL,
        "must be at least l1Capacity + 1Gi (the /dev/shm budget)");
  snprintf(g, sizeof g, "%s.limits[memory]", f);
  if (!qty(lim, "memory", &mlim) || mlim <= 0) {
    add(e, IC_API_ERR_REQUIRED, g, NULL, NULL, "a positive memory limit is required");
  } else {
    if (have_req && mlim < mreq)
      add(e, IC_API_ERR_INVALID, g, json_object_get(lim, "memory"), NULL, "must be greater than or equal to the memory request");
    if (need && mlim < need)
      add(e, IC_API_ERR_INVALID, g, json_object_get(lim, "memory"), NULL,
          "must be at least l1Capacity + 1Gi (the /dev/shm budget)");
  }
}

static bool selector_empty(const ic_api_cachebackend_t *cb) {
  return json_object_size(cb->spec.engine_selector.match_labels) == 0;
}

static void topology_rules(const ic_api_cachebackend_t *cb, ic_api_errors_t *e) {
  const char *topo = cb->spec.lm_cache.topology;
  static const char *const topos[] = {"PodLocal", "NodeLocal", NULL};
  if (blank(topo)) {
    add(e, IC_API_ERR_REQUIRED, "spec.lmCache.topology", NULL, NULL, NULL);
    return;
  }
  if (streq(topo, "PodLocal")) {
    if (!cb->spec.lm_cache.pod_local.present)
      add(e, IC_API_ERR_REQUIRED, "spec.lmCache.podLocal", NULL, NULL, NULL);
    else if (!cb->spec.lm_cache.pod_local.server.present)
      add(e, IC_API_ERR_REQUIRED, "spec.lmCache.podLocal.server", NULL, NULL, NULL);
    else {
      const ic_api_lmcache_server_t *s = &cb->spec.lm_cache.pod_local.server;
      server_rules(s, "spec.lmCache.podLocal.server", true, e);
      if (s->has_max_workers && s->max_workers < 1)
        add_int(e, IC_API_ERR_INVALID, "spec.lmCache.podLocal.server.maxWorkers", s->max_workers, "must be at least 1");
    }
    if (cb->spec.lm_cache.node_local.present)
      add(e, IC_API_ERR_FORBIDDEN, "spec.lmCache.nodeLocal", NULL, NULL, "must not be set for topology PodLocal");
    return;
  }
  if (streq(topo, "NodeLocal")) {
    const char *P = "spec.lmCache.nodeLocal.server";
    if (!cb->spec.lm_cache.node_local.present)
      add(e, IC_API_ERR_REQUIRED, "spec.lmCache.nodeLocal", NULL, NULL, NULL);
    else if (!cb->spec.lm_cache.node_local.server.present)
      add(e, IC_API_ERR_REQUIRED, P, NULL, NULL, NULL);
    else {
      const ic_api_lmcache_server_t *s = &cb->spec.lm_cache.node_local.server;
      server_rules(s, P, false, e);
      if (s->has_max_gpu_workers && s->max_gpu_workers < 1)
        add_int(e, IC_API_ERR_INVALID, "spec.lmCache.nodeLocal.server.maxGPUWorkers", s->max_gpu_workers, "must be at least 1");
      if (s->has_max_cpu_workers && s->max_cpu_workers < 1)
        add_int(e, IC_API_ERR_INVALID, "spec.lmCache.nodeLocal.server.maxCPUWorkers", s->max_cpu_workers, "must be at least 1");
      if (s->has_port && s->has_http_port && s->port == s->http_port)
        add_int(e, IC_API_ERR_INVALID, "spec.lmCache.nodeLocal.server.httpPort", s->http_port,
                "must be distinct from port: both listeners bind the node network namespace");
      const json_t *res = s->resources;
      if (json_object_get(json_object_get(res, "requests"), "nvidia.com/gpu") ||
          json_object_get(json_object_get(res, "limits"), "nvidia.com/gpu"))
        add(e, IC_API_ERR_FORBIDDEN, "spec.lmCache.nodeLocal.server.resources", NULL, NULL,
            "the node-local server must not request GPUs");
      const int64_t idle = cb->spec.lm_cache.node_local.idle_retention_seconds;
      if (cb->spec.lm_cache.node_local.has_idle_retention_seconds && (idle < 0 || idle > 86400))
        add_int(e, IC_API_ERR_INVALID, "spec.lmCache.nodeLocal.idleRetentionSeconds", idle, "must be between 0 and 86400");
    }
    if (cb->spec.lm_cache.pod_local.present)
      add(e, IC_API_ERR_FORBIDDEN, "spec.lmCache.podLocal", NULL, NULL, "must not be set for topology NodeLocal");
    if (selector_empty(cb))
      add(e, IC_API_ERR_REQUIRED, "spec.engineSelector.matchLabels", NULL, NULL,
          "NodeLocal needs a cache-domain selector (trust domain)");
    return;
  }
  json_t *v = json_string(topo);
  add(e, IC_API_ERR_NOT_SUPPORTED, "spec.lmCache.topology", v, topos, NULL);
  json_decref(v);
}

/* ---- selector domain (never grandfathered) --------------------------------------------------- */

static void selector_domain_rules(const ic_api_cachebackend_t *cb, ic_api_errors_t *e) {
  const json_t *ml = cb->spec.engine_selector.match_labels;
  if (json_object_size(ml) == 0) return;
  const char *d = ic_api_cachebackend_cache_domain(cb);
  if (!d || !*d)
    add(e, IC_API_ERR_REQUIRED, DOMAIN_FIELD, NULL, NULL, "engine-wired backends select engines by cache domain");
  else if (!ic_api_is_label_value(d))
    add_str(e, IC_API_ERR_INVALID, DOMAIN_FIELD, d, "must be a valid label value");
  if (json_object_size(ml) > 1)
    add(e, IC_API_ERR_FORBIDDEN, "spec.engineSelector.matchLabels", NULL, NULL,
        "must contain only the " IC_API_LABEL_CACHE_DOMAIN " label");
}

/* ---- redis binding, cross-namespace ---------------------------------------------------------- */

static void secret_selector_rules(const ic_api_secret_key_selector_t *s, const char *p, ic_api_errors_t *e) {
  char f[600];
  snprintf(f, sizeof f, "%s.name", p);
  if (blank(s->name))
    add(e, IC_API_ERR_REQUIRED, f, NULL, NULL, NULL);
  else if (!ic_api_is_dns1123_subdomain(s->name))
    add_str(e, IC_API_ERR_INVALID, f, s->name, "must be a DNS-1123 subdomain");
  snprintf(f, sizeof f, "%s.key", p);
  if (!s->key || !*s->key)
    add(e, IC_API_ERR_REQUIRED, f, NULL, NULL, NULL);
  else if (!ic_api_is_config_map_key(s->key))
    add_str(e, IC_API_ERR_INVALID, f, s->key, "must be a valid Secret key");
  if (s->has_optional && s->optional) {
    snprintf(f, sizeof f, "%s.optional", p);
    add(e, IC_API_ERR_FORBIDDEN, f, NULL, NULL, "the Redis credentials Secret must not be optional");
  }
}

static bool typed_mp(const ic_api_cachebackend_t *cb) {
  char rid[16];
  ic_api_cachebackend_runtime_id(cb, rid, sizeof rid);
  return streq(ic_api_cachebackend_effective_type(cb), "LMCache") &&
         (streq(cb->spec.lm_cache.topology, "PodLocal") || streq(cb->spec.lm_cache.topology, "NodeLocal")) &&
         (streq(rid, "vllm") || streq(rid, "sglang"));
}

/* In-cluster Service DNS -> namespace; false when not recognised. */
static bool endpoint_namespace(const char *ep, char *ns, size_t nslen) {
  char b[512];
  while (*ep && isspace((unsigned char)*ep)) ep++;
  size_t n = 0;
  for (; ep[n] && n + 1 < sizeof b; n++) b[n] = (char)tolower((unsigned char)ep[n]);
  b[n] = 0;
  while (n && isspace((unsigned char)b[n - 1])) b[--n] = 0;
  char *s = strstr(b, "://");
  s = s ? s + 3 : b;
  char *cut = strpbrk(s, "/?");
  if (cut) *cut = 0;
  if (s[0] == '[') return false;
  char *colon = strrchr(s, ':');
  if (colon) *colon = 0;
  n = strlen(s);
  if (n && s[n - 1] == '.') s[--n] = 0;
  if (n >= 14 && strcmp(s + n - 14, ".cluster.local") == 0) s[n -= 14] = 0;
  if (n < 5 || strcmp(s + n - 4, ".svc") != 0) return false;
  s[n - 4] = 0;
  char *dot = strrchr(s, '.');
  if (!dot || dot == s || !dot[1]) return false;
  snprintf(ns, nslen, "%s", dot + 1);
  return true;
}

/* ---- engine overrides ------------------------------------------------------------------------ */

static const char *const vllm_args[] = {"--kv-transfer-config", "--disable-hybrid-kv-cache-manager", NULL};
static const char *const vllm_env[] = {"PYTHONHASHSEED", "INFERENCECACHE_FAIL_OPEN", NULL};
static const char *const sglang_args[] = {"--enable-lmcache", "--lmcache-config-file", "--enable-metrics", NULL};
static const char *const sglang_env[] = {"LMCACHE_USE_EXPERIMENTAL", "INFERENCECACHE_FAIL_OPEN", NULL};
static const char *const hicache_args[] = {"--enable-hierarchical-cache", "--hicache-size", "--hicache-ratio",
                                           "--hicache-write-policy", "--hicache-io-backend", "--hicache-mem-layout",
                                           "--enable-metrics", NULL};
static const char *const no_env[] = {NULL};

static bool in_list(const char *const *l, const char *s) {
  for (; s && *l; l++)
    if (strcmp(*l, s) == 0) return true;
  return false;
}

static void overrides_rules(const ic_api_cachebackend_t *cb, const char *rid, const char *etype, ic_api_errors_t *e) {
  const json_t *eo = cb->spec.integration.engine_overrides;
  const char *P = "spec.integration.engineOverrides";
  char f[600];
  size_t i;
  const json_t *it;
  json_array_foreach(json_object_get(eo, "env"), i, it) {
    const char *name = json_string_value(json_object_get(it, "name"));
    snprintf(f, sizeof f, "%s.env[%zu].name", P, i);
    if (!name || !*name)
      add(e, IC_API_ERR_REQUIRED, f, NULL, NULL, NULL);
    else if (!ic_api_is_env_var_name(name))
      add_str(e, IC_API_ERR_INVALID, f, name, "must be a valid environment variable name");
    const json_t *vf = json_object_get(it, "valueFrom");
    snprintf(f, sizeof f, "%s.env[%zu].valueFrom", P, i);
    if (json_object_get(it, "value") && json_string_length(json_object_get(it, "value")) && vf)
      add(e, IC_API_ERR_INVALID, f, NULL, NULL, "may not be specified when `value` is not empty");
    if (vf) {
      static const char *const srcs[] = {"fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef",
                                         "fileKeyRef", NULL};
      int n = 0;
      for (int s = 0; srcs[s]; s++) n += json_object_get(vf, srcs[s]) != NULL;
      if (n == 0) add(e, IC_API_ERR_REQUIRED, f, NULL, NULL, "must specify one of the value sources");
      if (n > 1) add(e, IC_API_ERR_INVALID, f, NULL, NULL, "may not have more than one field specified at a time");
    }
  }
  const char *const *rargs = NULL, *const *renv = NULL;
  if (streq(rid, "vllm") && streq(etype, "LMCache")) rargs = vllm_args, renv = vllm_env;
  else if (streq(rid, "sglang") && streq(etype, "LMCache")) rargs = sglang_args, renv = sglang_env;
  else if (streq(rid, "sglang") && streq(etype, "SGLangHiCache")) rargs = hicache_args, renv = no_env;
  if (!rargs) return;
  json_array_foreach(json_object_get(eo, "args"), i, it) {
    const char *a = json_string_value(it);
    if (!a || a[0] != '-') continue; /* positional args are never checked */
    char tok[256];
    snprintf(tok, sizeof tok, "%.*s", (int)strcspn(a, "="), a);
    if (in_list(rargs, tok)) {
      snprintf(f, sizeof f, "%s.args[%zu]", P, i);
      char d[400];
      snprintf(d, sizeof d, "%s is owned by the %s adapter and cannot be overridden", tok, rid);
      add(e, IC_API_ERR_FORBIDDEN, f, NULL, NULL, d);
    }
  }
  json_array_foreach(json_object_get(eo, "suppressArgs"), i, it) {
    if (in_list(rargs, json_string_value(it))) {
      snprintf(f, sizeof f, "%s.suppressArgs[%zu]", P, i);
      char d[400];
      snprintf(d, sizeof d, "%s is owned by the %s adapter and cannot be suppressed", json_string_value(it), rid);
      add(e, IC_API_ERR_FORBIDDEN, f, NULL, NULL, d);
    }
  }
  json_array_foreach(json_object_get(eo, "env"), i, it) {
    const char *name = json_string_value(json_object_get(it, "name"));
    if (in_list(renv, name)) {
      snprintf(f, sizeof f, "%s.env[%zu].name", P, i);
      char d[400];
      snprintf(d, sizeof d, "%s is owned by the %s adapter and cannot be overridden", name, rid);
      add(e, IC_API_ERR_FORBIDDEN, f, NULL, NULL, d);
    }
  }
  json_array_foreach(json_object_get(eo, "suppressEnv"), i, it) {
    if (in_list(renv, json_string_value(it))) {
      snprintf(f, sizeof f, "%s.suppressEnv[%zu]", P, i);
      char d[400];
      snprintf(d, sizeof d, "%s is owned by the %s adapter and cannot be suppressed", json_string_value(it), rid);
      add(e, IC_API_ERR_FORBIDDEN, f, NULL, NULL, d);
    }
  }
}

/* ---- HiCache (rule 7f) ----------------------------------------------------------------------- */

static void hicache_rules(const ic_api_cachebackend_t *cb, const char *rid, ic_api_errors_t *e) {
  if (!cb->spec.hi_cache.present) {
    add(e, IC_API_ERR_REQUIRED, "spec.hiCache", NULL, NULL, NULL);
  } else {
    bool size = cb->spec.hi_cache.has_size_gb, ratio = cb->spec.hi_cache.ratio != NULL;
    if (!size && !ratio) add(e, IC_API_ERR_REQUIRED, "spec.hiCache", NULL, NULL, "exactly one of sizeGB or ratio is required");
    if (size && ratio) add(e, IC_API_ERR_INVALID, "spec.hiCache", NULL, NULL, "sizeGB and ratio are mutually exclusive");
    if (size && cb->spec.hi_cache.size_gb < 1)
      add_int(e, IC_API_ERR_INVALID, "spec.hiCache.sizeGB", cb->spec.hi_cache.size_gb, "must be at least 1");
    if (ratio) {
      char *end = NULL;
      double r = strtod(cb->spec.hi_cache.ratio, &end);
      if (!*cb->spec.hi_cache.ratio || *end || !isfinite(r) || r <= 0)
        add_str(e, IC_API_ERR_INVALID, "spec.hiCache.ratio", cb->spec.hi_cache.ratio, "must be a finite number greater than 0");
    }
  }
  if (!streq(rid, "sglang"))
    add_str(e, IC_API_ERR_INVALID, "spec.runtime", cb->spec.runtime, "SGLangHiCache requires runtime SGLang");
  if (selector_empty(cb)) add(e, IC_API_ERR_REQUIRED, "spec.engineSelector.matchLabels", NULL, NULL, NULL);
  if (!streq(ic_api_cachebackend_mode(cb), "Offload")) {
    static const char *const off[] = {"Offload", NULL};
    json_t *v = json_string(ic_api_cachebackend_mode(cb));
    add(e, IC_API_ERR_NOT_SUPPORTED, "spec.integration.mode", v, off, NULL);
    json_decref(v);
  }
}

/* ---- the rule set ---------------------------------------------------------------------------- */

void ic_admission_cachebackend_rules(const ic_api_cachebackend_t *cb, ic_api_errors_t *e) {
  const char *etype = ic_api_cachebackend_effective_type(cb);
  bool wired = ic_api_cachebackend_engine_wired(cb);
  bool events_only = ic_api_cachebackend_events_only(cb);
  char rid[16];
  ic_api_cachebackend_runtime_id(cb, rid, sizeof rid);
  const typeof(cb->spec.remote_storage) *rs = &cb->spec.remote_storage;

  if (wired) selector_domain_rules(cb, e); /* 7b shape */

  /* 1-3: later objects on the wrong type */
  if (cb->spec.lm_cache.present && !streq(etype, "LMCache"))
    add(e, IC_API_ERR_FORBIDDEN, "spec.lmCache", NULL, NULL, "lmCache is only valid for spec.type LMCache");
  if (cb->spec.hi_cache.present && !streq(etype, "SGLangHiCache"))
    add(e, IC_API_ERR_FORBIDDEN, "spec.hiCache", NULL, NULL, "hiCache is only valid for spec.type SGLangHiCache");
  if (rs->present) {
    bool managed = streq(rs->ownership, "Managed"), external = streq(rs->ownership, "External");
    if (!streq(etype, "LMCache"))
      add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage", NULL, NULL, "remoteStorage is only valid for spec.type LMCache");
    /* 4: shape */
    if (blank(rs->provider)) add(e, IC_API_ERR_REQUIRED, "spec.remoteStorage.provider", NULL, NULL, NULL);
    if (blank(rs->ownership)) add(e, IC_API_ERR_REQUIRED, "spec.remoteStorage.ownership", NULL, NULL, NULL);
    if (managed && !blank(rs->endpoint))
      add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.endpoint", NULL, NULL,
          "a Managed remote tier publishes its own endpoint");
    if (external && blank(rs->endpoint))
      add(e, IC_API_ERR_REQUIRED, "spec.remoteStorage.endpoint", NULL, NULL, "an External remote tier needs an endpoint");
    else if (external) {
      const char *why = ic_api_check_endpoint_shape(rs->endpoint);
      if (why) add_str(e, IC_API_ERR_INVALID, "spec.remoteStorage.endpoint", rs->endpoint, why);
    }
    if (external && rs->workload)
      add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.workload", NULL, NULL, "only valid for ownership Managed");
    if (rs->redis.present && !streq(rs->provider, "Redis"))
      add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.redis", NULL, NULL, "only valid for provider Redis");
    if (external && !blank(rs->redis.image))
      add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.redis.image", NULL, NULL, "only valid for ownership Managed");
    if (external && rs->redis.resources)
      add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.redis.resources", NULL, NULL, "only valid for ownership Managed");
    /* redis binding features */
    if (rs->redis.present) {
      const typeof(rs->redis.authentication) *au = &rs->redis.authentication;
      if (au->present && !typed_mp(cb)) {
        add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.redis.authentication", NULL, NULL,
            "authentication is only supported for typed LMCache multiprocess backends");
      } else if (au->present) {
        if (au->username.present) {
          if (managed)
            add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.redis.authentication.username", NULL, NULL,
                "managed Redis uses the default user, password only");
          else
            secret_selector_rules(&au->username, "spec.remoteStorage.redis.authentication.username", e);
        }
        if (au->password.present)
          secret_selector_rules(&au->password, "spec.remoteStorage.redis.authentication.password", e);
      }
      if (rs->redis.tls)
        add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.redis.tls", NULL, NULL, "TLS to Redis is not supported yet");
      if (rs->redis.has_database)
        add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.redis.database", NULL, NULL,
            "selecting a Redis database is not supported yet");
    }
    /* 5: cross-namespace */
    char ns[256];
    if (rs->endpoint && endpoint_namespace(rs->endpoint, ns, sizeof ns) && cb->meta.namespace_ &&
        strcmp(ns, cb->meta.namespace_) != 0 && !(cb->spec.has_allow_cross_namespace && cb->spec.allow_cross_namespace))
      add_str(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage.endpoint", NULL,
              "names a Service in another namespace; set spec.allowCrossNamespace to allow it");
    /* 6-12 */
    if (rs->redis.resources) resource_rules(rs->redis.resources, "spec.remoteStorage.redis.resources", e);
  }

  if (wired) {
    /* 7c/7d: LMCache topology and events-only */
    if (streq(etype, "LMCache")) {
      if (events_only) {
        if (cb->spec.lm_cache.present)
          add(e, IC_API_ERR_FORBIDDEN, "spec.lmCache", NULL, NULL, "EventsOnly backends run no LMCache server");
        if (rs->present)
          add(e, IC_API_ERR_FORBIDDEN, "spec.remoteStorage", NULL, NULL, "EventsOnly backends have no remote tier");
      } else if (!cb->spec.lm_cache.present) {
        add(e, IC_API_ERR_REQUIRED, "spec.lmCache", NULL, NULL, "LMCache offload needs a topology");
      } else {
        topology_rules(cb, e);
      }
    } else if (events_only && cb->spec.type && cb->spec.type[0]) {
      add(e, IC_API_ERR_FORBIDDEN, "spec.integration.mode", NULL, NULL, "EventsOnly requires spec.type LMCache");
    }
    /* 7f */
    if (streq(cb->spec.type, "SGLangHiCache")) hicache_rules(cb, rid, e);
    /* 7e */
    const char *role = cb->spec.integration.role;
    if (role && *role && strcmp(role, "ReadWrite") != 0) {
      static const char *const rw[] = {"ReadWrite", NULL};
      json_t *v = json_string(role);
      add(e, IC_API_ERR_NOT_SUPPORTED, "spec.integration.role", v, rw, NULL);
      json_decref(v);
    }
    /* 7a: an adapter must support the backend. The LMCache adapters only take a typed topology or
     * EventsOnly, so a topology-less LMCache object fails here as well as on spec.lmCache. */
    bool typed = streq(cb->spec.lm_cache.topology, "PodLocal") || streq(cb->spec.lm_cache.topology, "NodeLocal");
    bool lm_ok = streq(etype, "LMCache") && (events_only || typed);
    bool pair = (streq(rid, "sglang") && (lm_ok || streq(cb->spec.type, "SGLangHiCache"))) ||
                (streq(rid, "vllm") && lm_ok);
    if (pair && rs->present && streq(cb->spec.type, "SGLangHiCache")) {
      char d[300];
      snprintf(d, sizeof d, "runtime %s with cache type %s does not accept remote-storage protocol resp", rid, etype);
      add_str(e, IC_API_ERR_INVALID, "spec.remoteStorage.provider", rs->provider, d);
    }
    if (!pair) {
      char d[300];
      snprintf(d, sizeof d, "runtime %s with cache type %s is not supported; supported pairs: %s", rid, etype,
               "sglang/LMCache, sglang/SGLangHiCache, vllm/LMCache");
      add_str(e, IC_API_ERR_INVALID, "spec.runtime", cb->spec.runtime, d);
    }
    /* 7g */
    if (cb->spec.integration.engine_overrides) overrides_rules(cb, rid, etype, e);
  }

  /* 8: kernel-check annotation */
  const char *kc = json_string_value(json_object_get(cb->meta.annotations, IC_API_ANN_KERNEL_CHECK));
  if (kc && *kc && strcmp(kc, "auto") && strcmp(kc, "report-only") && strcmp(kc, "strict") && strcmp(kc, "off"))
    add_str(e, IC_API_ERR_INVALID, "metadata.annotations[" IC_API_ANN_KERNEL_CHECK "]", kc,
            "must be one of auto, report-only, strict, off");
}

static int cmp_names(const void *a, const void *b) {
  const char *x = json_string_value(json_object_get(json_object_get(*(json_t *const *)a, "metadata"), "name"));
  const char *y = json_string_value(json_object_get(json_object_get(*(json_t *const *)b, "metadata"), "name"));
  return strcmp(x ? x : "", y ? y : "");
}

/* Sorted (by metadata.name) borrowed view of a list; caller frees the array only. */
static const json_t **sorted_items(const json_t *list, size_t *n) {
  *n = json_array_size(list);
  const json_t **v = calloc(*n + 1, sizeof *v);
  if (!v) return NULL;
  for (size_t i = 0; i < *n; i++) v[i] = json_array_get(list, i);
  qsort(v, *n, sizeof *v, cmp_names);
  return v;
}

static void overlap_rules(const ic_api_cachebackend_t *cb, const json_t *siblings, ic_api_errors_t *e) {
  const char *d = ic_api_cachebackend_cache_domain(cb);
  if (!d || !*d) return;
  size_t n;
  const json_t **items = sorted_items(siblings, &n);
  for (size_t i = 0; items && i < n; i++) {
    const json_t *md = json_object_get(items[i], "metadata");
    const char *name = json_string_value(json_object_get(md, "name"));
    if (!name || streq(name, cb->meta.name)) continue;
    const json_t *ml = json_object_get(json_object_get(json_object_get(items[i], "spec"), "engineSelector"), "matchLabels");
    const char *od = json_string_value(json_object_get(ml, IC_API_LABEL_CACHE_DOMAIN));
    if (json_object_size(ml) && od && strcmp(od, d) == 0) {
      char msg[700];
      snprintf(msg, sizeof msg, "cache domain \"%s\" is already owned by CacheBackend \"%s\" in namespace \"%s\"", d,
               name, cb->meta.namespace_ ? cb->meta.namespace_ : "");
      add(e, IC_API_ERR_FORBIDDEN, DOMAIN_FIELD, NULL, NULL, msg);
      break;
    }
  }
  free(items);
}

static bool contains(const ic_api_errors_t *e, const ic_api_field_error_t *f) {
  for (size_t i = 0; i < e->len; i++)
    if (ic_api_field_error_equal(&e->items[i], f)) return true;
  return false;
}

/* Moves the errors of `src` not already in `dst` (and, when `minus` is set, not in `minus`). */
static void merge_new(ic_api_errors_t *dst, ic_api_errors_t *src, const ic_api_errors_t *minus) {
  ic_api_errors_t keep = IC_API_ERRORS_INIT, drop = IC_API_ERRORS_INIT;
  for (size_t i = 0; i < src->len; i++) {
    ic_api_field_error_t *f = &src->items[i];
    bool skip = contains(dst, f) || (minus && contains(minus, f));
    ic_api_errors_t *to = skip ? &drop : &keep;
    if (to->len == to->cap) {
      size_t cap = to->cap ? to->cap * 2 : 8;
      ic_api_field_error_t *p = realloc(to->items, cap * sizeof *p);
      if (!p) continue;
      to->items = p, to->cap = cap;
    }
    to->items[to->len++] = *f;
  }
  free(src->items);
  src->items = NULL, src->len = src->cap = 0;
  ic_api_errors_move(dst, &keep);
  ic_api_errors_free(&drop);
}

int ic_admission_cachebackend_validate(const ic_api_cachebackend_t *cb, const ic_api_cachebackend_t *old,
                                       const json_t *siblings, ic_api_errors_t *errs) {
  ic_api_errors_t now = IC_API_ERRORS_INIT, overlap = IC_API_ERRORS_INIT;
  ic_admission_cachebackend_rules(cb, &now);
  if (ic_api_cachebackend_engine_wired(cb) && siblings) overlap_rules(cb, siblings, &overlap);
  if (!old) {
    ic_api_errors_move(errs, &now);
    ic_api_errors_move(errs, &overlap);
    return 0;
  }
  if (now.len == 0 && overlap.len == 0) return 0;
  ic_api_errors_t before = IC_API_ERRORS_INIT, domain = IC_API_ERRORS_INIT;
  ic_admission_cachebackend_rules(old, &before);
  merge_new(errs, &now, &before);
  if (ic_api_cachebackend_engine_wired(cb)) selector_domain_rules(cb, &domain);
  merge_new(errs, &domain, NULL);
  merge_new(errs, &overlap, NULL);
  ic_api_errors_free(&before);
  return 0;
}

/* ---- CachePolicy / CacheTenant ----------------------------------------------------------------- */

void ic_admission_cachepolicy_rules(const ic_api_cachepolicy_t *p, ic_api_errors_t *e) {
  if (p->spec.eviction_ttl) {
    int64_t ns = 0;
    if (ic_api_parse_duration(p->spec.eviction_ttl, &ns) != 0)
      add_str(e, IC_API_ERR_INVALID, "spec.evictionTTL", p->spec.eviction_ttl, "must be a duration such as 30m");
    else if (ns <= 0)
      add_str(e, IC_API_ERR_INVALID, "spec.evictionTTL", p->spec.eviction_ttl, "must be greater than zero");
  }
  if (p->spec.strategy.has_enable_chain_matching && !p->spec.strategy.enable_chain_matching &&
      p->spec.strategy.has_require_chain && p->spec.strategy.require_chain) {
    json_t *t = json_true();
    add(e, IC_API_ERR_INVALID, "spec.strategy.requireChain", t, NULL,
        "strategy.requireChain requires strategy.enableChainMatching");
    json_decref(t);
  }
}

void ic_admission_cachetenant_rules(const ic_api_cachetenant_t *t, ic_api_errors_t *e) {
  if (streq(t->spec.tenant_id, IC_API_PROBE_TENANT))
    add_str(e, IC_API_ERR_INVALID, "spec.tenantID", t->spec.tenant_id, "is reserved for the functional probe");
}

/* Smallest other object name in `list` (CachePolicy) or with the same tenantID (CacheTenant). */
const char *adm_first_conflict(const json_t *list, const char *self, const char *tenant_id) {
  size_t n;
  const json_t **items = sorted_items(list, &n);
  const char *found = NULL;
  for (size_t i = 0; items && i < n && !found; i++) {
    const char *name = json_string_value(json_object_get(json_object_get(items[i], "metadata"), "name"));
    if (!name || streq(name, self)) continue;
    if (tenant_id) {
      const char *tid = json_string_value(json_object_get(json_object_get(items[i], "spec"), "tenantID"));
      if (!streq(tid, tenant_id)) continue;
    }
    found = name;
  }
  free(items);
  return found;
}
