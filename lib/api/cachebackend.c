/* CacheBackend (cachebackend-v1alpha1.md): decode with the CRD schema's checks, encode that keeps
 * unknown fields and absent nested objects absent, schema defaults, and the read-time helpers. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "internal.h"

static const char *const deployment_kinds[] = {"Deployment", "StatefulSet", NULL};
static const char *const roles[] = {"ReadOnly", "WriteOnly", "ReadWrite", NULL};
static const char *const modes[] = {"Offload", "EventsOnly", NULL};
static const char *const runtimes[] = {"VLLM", "SGLang", NULL};
static const char *const topologies[] = {"PodLocal", "NodeLocal", NULL};
static const char *const providers[] = {"Redis", NULL};
static const char *const ownerships[] = {"Managed", "External", NULL};
static const char *const write_policies[] = {"write_back", "write_through", "write_through_selective", NULL};
static const char *const io_backends[] = {"direct", "kernel", "kernel_ascend", NULL};
static const char *const mem_layouts[] = {"layer_first",         "page_first", "page_first_direct",
                                          "page_first_kv_split", "page_head",  NULL};
static const char *const healths[] = {"Pending", "Ready", "Degraded", "Failed", NULL};
static const char *const tri[] = {"True", "False", "Unknown", NULL};
#define I32MAX 2147483647LL

static void rd_str_list(dctx_t *c, const json_t *o, const char *k, const char *parent) {
  const json_t *a = rd_arr(c, o, k, parent);
  if (!a) return;
  char p[IC_PATH_MAX], pi[IC_PATH_MAX];
  api_path(p, parent, k);
  size_t i;
  const json_t *it;
  json_array_foreach(a, i, it) {
    if (!json_is_string(it)) {
      api_path_idx(pi, p, i);
      api_type_err(c, pi, it, "string");
    }
  }
}

static void rd_server(dctx_t *c, const json_t *o, const char *parent, bool node_local,
                      ic_api_lmcache_server_t *s) {
  const json_t *v = rd_obj(c, o, "server", parent);
  if (!v) return;
  char p[IC_PATH_MAX];
  api_path(p, parent, "server");
  s->present = true;
  req(c, v, "image", p);
  req(c, v, "port", p);
  req(c, v, "l1Capacity", p);
  req(c, v, "resources", p);
  if (node_local) {
    req(c, v, "httpPort", p);
    req(c, v, "maxGPUWorkers", p);
    req(c, v, "maxCPUWorkers", p);
  } else {
    req(c, v, "maxWorkers", p);
  }
  rd_str(c, v, "image", p, &s->image);
  rd_int(c, v, "port", p, true, 1, true, 65535, &s->has_port, &s->port);
  if (node_local) {
    rd_int(c, v, "httpPort", p, true, 1, true, 65535, &s->has_http_port, &s->http_port);
    rd_int(c, v, "maxGPUWorkers", p, true, 1, true, I32MAX, &s->has_max_gpu_workers, &s->max_gpu_workers);
    rd_int(c, v, "maxCPUWorkers", p, true, 1, true, I32MAX, &s->has_max_cpu_workers, &s->max_cpu_workers);
  } else {
    rd_int(c, v, "maxWorkers", p, true, 1, true, I32MAX, &s->has_max_workers, &s->max_workers);
  }
  if (rd_quantity(c, v, "l1Capacity", p, &s->l1_capacity) > 0) {
    int64_t m = 0;
    if (ic_api_parse_quantity(s->l1_capacity, &m) == 0 && m <= 0) {
      char pq[IC_PATH_MAX];
      api_path(pq, p, "l1Capacity");
      /* the CRD's CEL rule */
      api_err(c, IC_API_ERR_INVALID, pq, s->l1_capacity, NULL, "%s", "l1Capacity must be greater than zero");
    }
  }
  const json_t *res = rd_obj(c, v, "resources", p);
  if (res) {
    char pr[IC_PATH_MAX];
    api_path(pr, p, "resources");
    chk_resources(c, res, pr);
    s->resources = json_deep_copy(res);
  }
}

static void decode_spec(dctx_t *c, const json_t *spec, ic_api_cachebackend_spec_t *s) {
  const char *P = "spec";
  char p[IC_PATH_MAX], q[IC_PATH_MAX];
  s->present = true;
  rd_str(c, spec, "type", P, &s->type);
  rd_enum(c, spec, "deploymentKind", P, deployment_kinds, &s->deployment_kind);
  rd_int(c, spec, "replicas", P, true, 0, true, I32MAX, &s->has_replicas, &s->replicas);
  const json_t *st = rd_obj(c, spec, "storage", P);
  if (st) {
    s->storage.present = true;
    api_path(p, P, "storage");
    const json_t *pvc = rd_obj(c, st, "pvc", p);
    if (pvc) {
      api_path(q, p, "pvc");
      s->storage.pvc.present = true;
      req(c, pvc, "size", q);
      rd_quantity(c, pvc, "size", q, &s->storage.pvc.size);
      rd_str(c, pvc, "storageClassName", q, &s->storage.pvc.storage_class_name);
    }
  }
  const json_t *in = rd_obj(c, spec, "integration", P);
  if (in) {
    api_path(p, P, "integration");
    s->integration.present = true;
    rd_str(c, in, "engine", p, &s->integration.engine);
    rd_enum(c, in, "role", p, roles, &s->integration.role);
    rd_enum(c, in, "mode", p, modes, &s->integration.mode);
    rd_int(c, in, "lookupTimeoutMs", p, true, 0, true, I32MAX, &s->integration.has_lookup_timeout_ms,
           &s->integration.lookup_timeout_ms);
    rd_int(c, in, "minimumPrefixTokens", p, true, 0, true, I32MAX, &s->integration.has_minimum_prefix_tokens,
           &s->integration.minimum_prefix_tokens);
    const json_t *eo = rd_obj(c, in, "engineOverrides", p);
    if (eo) {
      api_path(q, p, "engineOverrides");
      rd_str_list(c, eo, "args", q);
      rd_str_list(c, eo, "suppressArgs", q);
      rd_str_list(c, eo, "suppressEnv", q);
      const json_t *env = rd_arr(c, eo, "env", q);
      if (env) {
        char pe[IC_PATH_MAX];
        api_path(pe, q, "env");
        chk_env_list(c, env, pe);
      }
      s->integration.engine_overrides = json_deep_copy(eo);
    }
  }
  const json_t *es = rd_obj(c, spec, "engineSelector", P);
  if (es) {
    s->engine_selector.present = true;
    rd_str_map(c, es, "matchLabels", "spec.engineSelector", &s->engine_selector.match_labels);
  }
  rd_str_map(c, spec, "backendConfig", P, &s->backend_config);
  const json_t *tpl = rd_obj(c, spec, "template", P);
  if (tpl) {
    chk_pod_overrides(c, tpl, "spec.template");
    s->template_ = json_deep_copy(tpl);
  }
  rd_str(c, spec, "endpoint", P, &s->endpoint);
  rd_enum(c, spec, "runtime", P, runtimes, &s->runtime);

  const json_t *lm = rd_obj(c, spec, "lmCache", P);
  if (lm) {
    api_path(p, P, "lmCache");
    s->lm_cache.present = true;
    req(c, lm, "topology", p);
    rd_enum(c, lm, "topology", p, topologies, &s->lm_cache.topology);
    rd_int(c, lm, "chunkSizeTokens", p, true, 1, true, I32MAX, &s->lm_cache.has_chunk_size_tokens,
           &s->lm_cache.chunk_size_tokens);
    const json_t *pl = rd_obj(c, lm, "podLocal", p);
    if (pl) {
      api_path(q, p, "podLocal");
      s->lm_cache.pod_local.present = true;
      req(c, pl, "server", q);
      rd_server(c, pl, q, false, &s->lm_cache.pod_local.server);
    }
    const json_t *nl = rd_obj(c, lm, "nodeLocal", p);
    if (nl) {
      api_path(q, p, "nodeLocal");
      s->lm_cache.node_local.present = true;
      req(c, nl, "server", q);
      req(c, nl, "idleRetentionSeconds", q);
      rd_int(c, nl, "idleRetentionSeconds", q, true, 0, true, 86400,
             &s->lm_cache.node_local.has_idle_retention_seconds, &s->lm_cache.node_local.idle_retention_seconds);
      rd_server(c, nl, q, true, &s->lm_cache.node_local.server);
      const json_t *sch = rd_obj(c, nl, "scheduling", q);
      if (sch) {
        char ps[IC_PATH_MAX];
        api_path(ps, q, "scheduling");
        chk_pod_overrides(c, sch, ps);
        s->lm_cache.node_local.scheduling = json_deep_copy(sch);
      }
    }
  }

  const json_t *rs = rd_obj(c, spec, "remoteStorage", P);
  if (rs) {
    api_path(p, P, "remoteStorage");
    s->remote_storage.present = true;
    req(c, rs, "provider", p);
    req(c, rs, "ownership", p);
    rd_enum(c, rs, "provider", p, providers, &s->remote_storage.provider);
    rd_enum(c, rs, "ownership", p, ownerships, &s->remote_storage.ownership);
    rd_str(c, rs, "endpoint", p, &s->remote_storage.endpoint);
    const json_t *wl = rd_obj(c, rs, "workload", p);
    if (wl) {
      api_path(q, p, "workload");
      chk_pod_overrides(c, wl, q);
      s->remote_storage.workload = json_deep_copy(wl);
    }
    const json_t *rd = rd_obj(c, rs, "redis", p);
    if (rd) {
      api_path(q, p, "redis");
      s->remote_storage.redis.present = true;
      rd_str(c, rd, "image", q, &s->remote_storage.redis.image);
      const json_t *res = rd_obj(c, rd, "resources", q);
      if (res) {
        char pr[IC_PATH_MAX];
        api_path(pr, q, "resources");
        chk_resources(c, res, pr);
        s->remote_storage.redis.resources = json_deep_copy(res);
      }
      const json_t *au = rd_obj(c, rd, "authentication", q);
      if (au) {
        char pa[IC_PATH_MAX];
        api_path(pa, q, "authentication");
        s->remote_storage.redis.authentication.present = true;
        req(c, au, "password", pa);
        chk_secret_selector(c, au, "username", pa, &s->remote_storage.redis.authentication.username);
        chk_secret_selector(c, au, "password", pa, &s->remote_storage.redis.authentication.password);
      }
      const json_t *tls = rd_obj(c, rd, "tls", q);
      if (tls) {
        char pt[IC_PATH_MAX];
        api_path(pt, q, "tls");
        req(c, tls, "caCertificate", pt);
        ic_api_secret_key_selector_t tmp = {0};
        chk_secret_selector(c, tls, "caCertificate", pt, &tmp);
        free(tmp.name), free(tmp.key);
        char *sn = NULL;
        rd_str(c, tls, "serverName", pt, &sn);
        free(sn);
        s->remote_storage.redis.tls = json_deep_copy(tls);
      }
      rd_int(c, rd, "database", q, true, 0, true, I32MAX, &s->remote_storage.redis.has_database,
             &s->remote_storage.redis.database);
    }
  }
  const json_t *ob = rd_obj(c, spec, "observation", P);
  if (ob) {
    s->observation.present = true;
    rd_str(c, ob, "modelID", "spec.observation", &s->observation.model_id);
    rd_str(c, ob, "firstEventTimeout", "spec.observation", &s->observation.first_event_timeout);
  }
  const json_t *hc = rd_obj(c, spec, "hiCache", P);
  if (hc) {
    api_path(p, P, "hiCache");
    s->hi_cache.present = true;
    rd_int(c, hc, "sizeGB", p, true, 1, true, I32MAX, &s->hi_cache.has_size_gb, &s->hi_cache.size_gb);
    rd_str(c, hc, "ratio", p, &s->hi_cache.ratio);
    rd_enum(c, hc, "writePolicy", p, write_policies, &s->hi_cache.write_policy);
    rd_enum(c, hc, "ioBackend", p, io_backends, &s->hi_cache.io_backend);
    rd_enum(c, hc, "memoryLayout", p, mem_layouts, &s->hi_cache.memory_layout);
  }
  rd_bool(c, spec, "allowCrossNamespace", P, &s->has_allow_cross_namespace, &s->allow_cross_namespace);
}

static void decode_status(dctx_t *c, const json_t *st, ic_api_cachebackend_status_t *s) {
  const char *P = "status";
  char p[IC_PATH_MAX];
  s->present = true;
  rd_str(c, st, "endpoint", P, &s->endpoint);
  rd_enum(c, st, "health", P, healths, &s->health);
  rd_int(c, st, "indexEntries", P, true, 0, false, 0, &s->has_index_entries, &s->index_entries);
  rd_conditions(c, st, P, &s->conditions);
  rd_int(c, st, "observedGeneration", P, true, 0, false, 0, &s->has_observed_generation,
         &s->observed_generation);
  const json_t *rs = rd_obj(c, st, "remoteStorage", P);
  if (rs) {
    api_path(p, P, "remoteStorage");
    s->remote_storage.present = true;
    rd_enum(c, rs, "provider", p, providers, &s->remote_storage.provider);
    rd_str(c, rs, "endpoint", p, &s->remote_storage.endpoint);
    rd_enum(c, rs, "ready", p, tri, &s->remote_storage.ready);
  }
  const json_t *co = rd_obj(c, st, "connector", P);
  if (co) {
    static const char *const counters[] = {"matchedEnginePods", "readyEnginePods",    "desiredServers",
                                           "readyServers",      "coveredEnginePods",  "uncoveredEnginePods",
                                           NULL};
    static const char *const cmodes[] = {"Multiprocess", NULL};
    api_path(p, P, "connector");
    bool h;
    int64_t x;
    char *tmp = NULL;
    for (int i = 0; counters[i]; i++) rd_int(c, co, counters[i], p, true, 0, true, I32MAX, &h, &x);
    rd_enum(c, co, "mode", p, cmodes, &tmp);
    free(tmp);
    tmp = NULL;
    rd_enum(c, co, "topology", p, topologies, &tmp);
    free(tmp);
    s->connector = json_deep_copy(co);
  }
  rd_int(c, st, "matchedEnginePods", P, true, 0, true, I32MAX, &s->has_matched_engine_pods,
         &s->matched_engine_pods);
  rd_str(c, st, "engineSelectorMessage", P, &s->engine_selector_message);
  rd_str(c, st, "firstAvailableAt", P, &s->first_available_at);
  rd_str(c, st, "firstKVEventObservedAt", P, &s->first_kv_event_observed_at);
  const json_t *ip = rd_obj(c, st, "indexParticipation", P);
  if (ip) {
    api_path(p, P, "indexParticipation");
    s->index_participation.present = true;
    req(c, ip, "prefixCount", p);
    bool h = false;
    rd_int(c, ip, "prefixCount", p, true, 0, false, 0, &h, &s->index_participation.prefix_count);
    rd_str(c, ip, "lastEventAt", p, &s->index_participation.last_event_at);
    rd_str(c, ip, "hitRate", p, &s->index_participation.hit_rate);
    rd_str(c, ip, "t2HitRate", p, &s->index_participation.t2_hit_rate);
  }
}

int ic_api_cachebackend_decode(const json_t *obj, ic_api_cachebackend_t *out, ic_api_errors_t *errs) {
  if (!json_is_object(obj)) return IC_EINVAL;
  dctx_t c = {errs, 0};
  out->raw = json_deep_copy(obj);
  if (!out->raw) return IC_ENOMEM;
  rd_meta(&c, obj, &out->meta);
  const json_t *spec = rd_obj(&c, obj, "spec", "");
  if (spec) decode_spec(&c, spec, &out->spec);
  const json_t *st = rd_obj(&c, obj, "status", "");
  if (st) decode_status(&c, st, &out->status);
  return c.oom ? IC_ENOMEM : 0;
}

static void free_server(ic_api_lmcache_server_t *s) {
  free(s->image);
  json_decref(s->l1_capacity);
  json_decref(s->resources);
}

void ic_api_cachebackend_free(ic_api_cachebackend_t *x) {
  if (!x) return;
  json_decref(x->raw);
  free_meta(&x->meta);
  ic_api_cachebackend_spec_t *s = &x->spec;
  free(s->type), free(s->deployment_kind), free(s->endpoint), free(s->runtime);
  json_decref(s->storage.pvc.size);
  free(s->storage.pvc.storage_class_name);
  free(s->integration.engine), free(s->integration.role), free(s->integration.mode);
  json_decref(s->integration.engine_overrides);
  json_decref(s->engine_selector.match_labels);
  json_decref(s->backend_config);
  json_decref(s->template_);
  free(s->lm_cache.topology);
  free_server(&s->lm_cache.pod_local.server);
  free_server(&s->lm_cache.node_local.server);
  json_decref(s->lm_cache.node_local.scheduling);
  free(s->remote_storage.provider), free(s->remote_storage.ownership), free(s->remote_storage.endpoint);
  json_decref(s->remote_storage.workload);
  free(s->remote_storage.redis.image);
  json_decref(s->remote_storage.redis.resources);
  json_decref(s->remote_storage.redis.tls);
  ic_api_secret_key_selector_t *sel[] = {&s->remote_storage.redis.authentication.username,
                                         &s->remote_storage.redis.authentication.password};
  for (int i = 0; i < 2; i++) free(sel[i]->name), free(sel[i]->key);
  free(s->observation.model_id), free(s->observation.first_event_timeout);
  free(s->hi_cache.ratio), free(s->hi_cache.write_policy), free(s->hi_cache.io_backend),
      free(s->hi_cache.memory_layout);
  ic_api_cachebackend_status_t *t = &x->status;
  free(t->endpoint), free(t->health);
  free_conditions(&t->conditions);
  free(t->remote_storage.provider), free(t->remote_storage.endpoint), free(t->remote_storage.ready);
  json_decref(t->connector);
  free(t->engine_selector_message), free(t->first_available_at), free(t->first_kv_event_observed_at);
  free(t->index_participation.last_event_at), free(t->index_participation.hit_rate),
      free(t->index_participation.t2_hit_rate);
  memset(x, 0, sizeof *x);
}

static void wr_server(json_t *parent, const ic_api_lmcache_server_t *s, bool node_local) {
  json_t *o = wr_child(parent, "server", s->present);
  if (!o) return;
  wr_str(o, "image", s->image);
  wr_int(o, "port", s->has_port, s->port);
  wr_json(o, "l1Capacity", s->l1_capacity);
  wr_json(o, "resources", s->resources);
  if (node_local) {
    wr_int(o, "httpPort", s->has_http_port, s->http_port);
    wr_int(o, "maxGPUWorkers", s->has_max_gpu_workers, s->max_gpu_workers);
    wr_int(o, "maxCPUWorkers", s->has_max_cpu_workers, s->max_cpu_workers);
  } else {
    wr_int(o, "maxWorkers", s->has_max_workers, s->max_workers);
  }
}

static void wr_selector(json_t *parent, const char *k, const ic_api_secret_key_selector_t *s) {
  json_t *o = wr_child(parent, k, s->present);
  if (!o) return;
  wr_str(o, "name", s->name);
  wr_str(o, "key", s->key);
  wr_bool(o, "optional", s->has_optional, s->optional);
}

json_t *ic_api_cachebackend_encode(const ic_api_cachebackend_t *x) {
  json_t *o = wr_begin(x->raw, "CacheBackend");
  if (!o) return NULL;
  wr_meta(o, &x->meta);
  const ic_api_cachebackend_spec_t *s = &x->spec;
  json_t *sp = wr_child(o, "spec", s->present);
  if (sp) {
    wr_str(sp, "type", s->type);
    wr_str(sp, "deploymentKind", s->deployment_kind);
    wr_int(sp, "replicas", s->has_replicas, s->replicas);
    json_t *st = wr_child(sp, "storage", s->storage.present);
    if (st) {
      json_t *pvc = wr_child(st, "pvc", s->storage.pvc.present);
      if (pvc) {
        wr_json(pvc, "size", s->storage.pvc.size);
        wr_str(pvc, "storageClassName", s->storage.pvc.storage_class_name);
      }
    }
    json_t *in = wr_child(sp, "integration", s->integration.present);
    if (in) {
      wr_str(in, "engine", s->integration.engine);
      wr_str(in, "role", s->integration.role);
      wr_str(in, "mode", s->integration.mode);
      wr_int(in, "lookupTimeoutMs", s->integration.has_lookup_timeout_ms, s->integration.lookup_timeout_ms);
      wr_int(in, "minimumPrefixTokens", s->integration.has_minimum_prefix_tokens,
             s->integration.minimum_prefix_tokens);
      wr_json(in, "engineOverrides", s->integration.engine_overrides);
    }
    json_t *es = wr_child(sp, "engineSelector", s->engine_selector.present);
    if (es) wr_json(es, "matchLabels", s->engine_selector.match_labels);
    wr_json(sp, "backendConfig", s->backend_config);
    wr_json(sp, "template", s->template_);
    wr_str(sp, "endpoint", s->endpoint);
    wr_str(sp, "runtime", s->runtime);
    json_t *lm = wr_child(sp, "lmCache", s->lm_cache.present);
    if (lm) {
      wr_str(lm, "topology", s->lm_cache.topology);
      wr_int(lm, "chunkSizeTokens", s->lm_cache.has_chunk_size_tokens, s->lm_cache.chunk_size_tokens);
      json_t *pl = wr_child(lm, "podLocal", s->lm_cache.pod_local.present);
      if (pl) wr_server(pl, &s->lm_cache.pod_local.server, false);
      json_t *nl = wr_child(lm, "nodeLocal", s->lm_cache.node_local.present);
      if (nl) {
        wr_int(nl, "idleRetentionSeconds", s->lm_cache.node_local.has_idle_retention_seconds,
               s->lm_cache.node_local.idle_retention_seconds);
        wr_server(nl, &s->lm_cache.node_local.server, true);
        wr_json(nl, "scheduling", s->lm_cache.node_local.scheduling);
      }
    }
    json_t *rs = wr_child(sp, "remoteStorage", s->remote_storage.present);
    if (rs) {
      wr_str(rs, "provider", s->remote_storage.provider);
      wr_str(rs, "ownership", s->remote_storage.ownership);
      wr_str(rs, "endpoint", s->remote_storage.endpoint);
      wr_json(rs, "workload", s->remote_storage.workload);
      json_t *rd = wr_child(rs, "redis", s->remote_storage.redis.present);
      if (rd) {
        wr_str(rd, "image", s->remote_storage.redis.image);
        wr_json(rd, "resources", s->remote_storage.redis.resources);
        json_t *au = wr_child(rd, "authentication", s->remote_storage.redis.authentication.present);
        if (au) {
          wr_selector(au, "username", &s->remote_storage.redis.authentication.username);
          wr_selector(au, "password", &s->remote_storage.redis.authentication.password);
        }
        wr_json(rd, "tls", s->remote_storage.redis.tls);
        wr_int(rd, "database", s->remote_storage.redis.has_database, s->remote_storage.redis.database);
      }
    }
    json_t *ob = wr_child(sp, "observation", s->observation.present);
    if (ob) {
      wr_str(ob, "modelID", s->observation.model_id);
      wr_str(ob, "firstEventTimeout", s->observation.first_event_timeout);
    }
    json_t *hc = wr_child(sp, "hiCache", s->hi_cache.present);
    if (hc) {
      wr_int(hc, "sizeGB", s->hi_cache.has_size_gb, s->hi_cache.size_gb);
      wr_str(hc, "ratio", s->hi_cache.ratio);
      wr_str(hc, "writePolicy", s->hi_cache.write_policy);
      wr_str(hc, "ioBackend", s->hi_cache.io_backend);
      wr_str(hc, "memoryLayout", s->hi_cache.memory_layout);
    }
    wr_bool(sp, "allowCrossNamespace", s->has_allow_cross_namespace, s->allow_cross_namespace);
  }
  const ic_api_cachebackend_status_t *t = &x->status;
  json_t *st = wr_child(o, "status", t->present);
  if (st) {
    wr_str(st, "endpoint", t->endpoint);
    wr_str(st, "health", t->health);
    wr_int(st, "indexEntries", t->has_index_entries, t->index_entries);
    wr_conditions(st, &t->conditions);
    wr_int(st, "observedGeneration", t->has_observed_generation, t->observed_generation);
    json_t *rs = wr_child(st, "remoteStorage", t->remote_storage.present);
    if (rs) {
      wr_str(rs, "provider", t->remote_storage.provider);
      wr_str(rs, "endpoint", t->remote_storage.endpoint);
      wr_str(rs, "ready", t->remote_storage.ready);
    }
    wr_json(st, "connector", t->connector);
    wr_int(st, "matchedEnginePods", t->has_matched_engine_pods, t->matched_engine_pods);
    wr_str(st, "engineSelectorMessage", t->engine_selector_message);
    wr_str(st, "firstAvailableAt", t->first_available_at);
    wr_str(st, "firstKVEventObservedAt", t->first_kv_event_observed_at);
    json_t *ip = wr_child(st, "indexParticipation", t->index_participation.present);
    if (ip) {
      wr_int(ip, "prefixCount", true, t->index_participation.prefix_count);
      wr_str(ip, "lastEventAt", t->index_participation.last_event_at);
      wr_str(ip, "hitRate", t->index_participation.hit_rate);
      wr_str(ip, "t2HitRate", t->index_participation.t2_hit_rate);
    }
  }
  return o;
}

/* Only the two schema defaults that exist, both inside later objects. */
void ic_api_cachebackend_default(ic_api_cachebackend_t *x) {
  if (x->spec.observation.present && !x->spec.observation.first_event_timeout)
    x->spec.observation.first_event_timeout = strdup("5m");
  if (x->spec.lm_cache.node_local.present && !x->spec.lm_cache.node_local.has_idle_retention_seconds) {
    x->spec.lm_cache.node_local.has_idle_retention_seconds = true;
    x->spec.lm_cache.node_local.idle_retention_seconds = 300;
  }
}

int ic_api_cachebackend_clone(const ic_api_cachebackend_t *src, ic_api_cachebackend_t *dst) {
  json_t *j = ic_api_cachebackend_encode(src);
  if (!j) return IC_ENOMEM;
  memset(dst, 0, sizeof *dst);
  int rc = ic_api_cachebackend_decode(j, dst, NULL);
  json_decref(j);
  return rc;
}

/* ---- read-time defaults ---------------------------------------------------------------------- */

bool ic_api_cachebackend_engine_wired(const ic_api_cachebackend_t *cb) {
  return cb->spec.runtime && cb->spec.runtime[0];
}

const char *ic_api_cachebackend_effective_type(const ic_api_cachebackend_t *cb) {
  if (cb->spec.type && cb->spec.type[0]) return cb->spec.type;
  return ic_api_cachebackend_engine_wired(cb) ? "LMCache" : "";
}

const char *ic_api_cachebackend_runtime_id(const ic_api_cachebackend_t *cb, char *buf, size_t len) {
  if (!len) return "";
  size_t i = 0;
  const char *r = cb->spec.runtime ? cb->spec.runtime : "";
  for (; r[i] && i + 1 < len; i++) buf[i] = (char)tolower((unsigned char)r[i]);
  buf[i] = 0;
  return buf;
}

const char *ic_api_cachebackend_deployment_kind(const ic_api_cachebackend_t *cb) {
  return (cb->spec.deployment_kind && cb->spec.deployment_kind[0]) ? cb->spec.deployment_kind : "Deployment";
}
int64_t ic_api_cachebackend_replicas(const ic_api_cachebackend_t *cb) {
  return cb->spec.has_replicas ? cb->spec.replicas : 1;
}
const char *ic_api_cachebackend_role(const ic_api_cachebackend_t *cb) {
  return (cb->spec.integration.role && cb->spec.integration.role[0]) ? cb->spec.integration.role : "ReadWrite";
}
const char *ic_api_cachebackend_mode(const ic_api_cachebackend_t *cb) {
  return (cb->spec.integration.mode && cb->spec.integration.mode[0]) ? cb->spec.integration.mode : "Offload";
}
bool ic_api_cachebackend_events_only(const ic_api_cachebackend_t *cb) {
  return strcmp(ic_api_cachebackend_mode(cb), "EventsOnly") == 0;
}
int64_t ic_api_cachebackend_chunk_size(const ic_api_cachebackend_t *cb) {
  return cb->spec.lm_cache.has_chunk_size_tokens ? cb->spec.lm_cache.chunk_size_tokens : 256;
}
int64_t ic_api_cachebackend_first_event_timeout_ns(const ic_api_cachebackend_t *cb) {
  int64_t ns = 0;
  const int64_t def = 5LL * 60 * 1000000000LL;
  if (!cb->spec.observation.first_event_timeout) return def;
  if (ic_api_parse_duration(cb->spec.observation.first_event_timeout, &ns) != 0 || ns <= 0) return def;
  return ns;
}
const char *ic_api_cachebackend_cache_domain(const ic_api_cachebackend_t *cb) {
  return json_string_value(json_object_get(cb->spec.engine_selector.match_labels, IC_API_LABEL_CACHE_DOMAIN));
}
bool ic_api_cachebackend_selects(const ic_api_cachebackend_t *cb, const json_t *labels) {
  const json_t *ml = cb->spec.engine_selector.match_labels;
  if (!json_is_object(ml) || json_object_size(ml) == 0) return false;
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)ml, k, v) {
    const char *have = json_string_value(json_object_get(labels, k));
    if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0) return false;
  }
  return true;
}
