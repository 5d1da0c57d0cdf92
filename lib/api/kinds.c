/* CachePolicy, CacheTenant, CacheIndex, PromptTemplate and PDTopology: decode with the CRD
 * schema's checks, encode preserving unknown fields, schema defaults. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "internal.h"

#define I32MAX 2147483647LL

/* ---- CachePolicy ----------------------------------------------------------------------------- */

static const char *const evictions[] = {"LRU", "LFU", NULL};
static const char *const affinity_modes[] = {"Enabled", "Disabled", NULL};

static bool floor_score_ok(const char *s) {
  regex_t re;
  if (regcomp(&re, "^(0|[1-9][0-9]{0,7})(\\.[0-9]{1,6})?$", REG_EXTENDED | REG_NOSUB) != 0) return true;
  bool ok = regexec(&re, s, 0, NULL, 0) == 0;
  regfree(&re);
  return ok;
}

int ic_api_cachepolicy_decode(const json_t *obj, ic_api_cachepolicy_t *out, ic_api_errors_t *errs) {
  if (!json_is_object(obj)) return IC_EINVAL;
  dctx_t c = {errs, 0};
  out->raw = json_deep_copy(obj);
  if (!out->raw) return IC_ENOMEM;
  rd_meta(&c, obj, &out->meta);
  req(&c, obj, "spec", "");
  const json_t *sp = rd_obj(&c, obj, "spec", "");
  if (sp) {
    const char *P = "spec";
    out->spec.present = true;
    rd_enum(&c, sp, "eviction", P, evictions, &out->spec.eviction);
    rd_str(&c, sp, "evictionTTL", P, &out->spec.eviction_ttl);
    rd_int(&c, sp, "minimumPrefixTokens", P, true, 0, true, I32MAX, &out->spec.has_minimum_prefix_tokens,
           &out->spec.minimum_prefix_tokens);
    rd_int(&c, sp, "minimumMatchedTokens", P, true, 0, true, I32MAX, &out->spec.has_minimum_matched_tokens,
           &out->spec.minimum_matched_tokens);
    rd_int(&c, sp, "lookupTimeoutMs", P, true, 0, true, I32MAX, &out->spec.has_lookup_timeout_ms,
           &out->spec.lookup_timeout_ms);
    if (rd_str(&c, sp, "routingFloorScore", P, &out->spec.routing_floor_score) > 0 &&
        !floor_score_ok(out->spec.routing_floor_score)) {
      api_err(&c, IC_API_ERR_INVALID, "spec.routingFloorScore", json_object_get(sp, "routingFloorScore"), NULL,
              "%s", "spec.routingFloorScore in body should match '^(0|[1-9][0-9]{0,7})(\\.[0-9]{1,6})?$'");
      free(out->spec.routing_floor_score);
      out->spec.routing_floor_score = NULL;
    }
    rd_enum(&c, sp, "affinityRouting", P, affinity_modes, &out->spec.affinity_routing);
    const json_t *st = rd_obj(&c, sp, "strategy", P);
    if (st) {
      const char *Q = "spec.strategy";
      out->spec.strategy.present = true;
      rd_bool(&c, st, "enableChainMatching", Q, &out->spec.strategy.has_enable_chain_matching,
              &out->spec.strategy.enable_chain_matching);
      rd_bool(&c, st, "requireChain", Q, &out->spec.strategy.has_require_chain, &out->spec.strategy.require_chain);
      rd_bool(&c, st, "enableTenantHot", Q, &out->spec.strategy.has_enable_tenant_hot,
              &out->spec.strategy.enable_tenant_hot);
      rd_bool(&c, st, "loadAwareRouting", Q, &out->spec.strategy.has_load_aware_routing,
              &out->spec.strategy.load_aware_routing);
      rd_bool(&c, st, "predictOnRoute", Q, &out->spec.strategy.has_predict_on_route,
              &out->spec.strategy.predict_on_route);
      /* the CRD's CEL rule on spec */
      if (out->spec.strategy.has_enable_chain_matching && !out->spec.strategy.enable_chain_matching &&
          out->spec.strategy.has_require_chain && out->spec.strategy.require_chain)
        api_err(&c, IC_API_ERR_INVALID, "spec", sp, NULL, "%s",
                "strategy.requireChain requires strategy.enableChainMatching");
    }
  }
  const json_t *st = rd_obj(&c, obj, "status", "");
  if (st) {
    out->status.present = true;
    rd_int(&c, st, "observedGeneration", "status", true, 0, false, 0, &out->status.has_observed_generation,
           &out->status.observed_generation);
    rd_conditions(&c, st, "status", &out->status.conditions);
  }
  return c.oom ? IC_ENOMEM : 0;
}

json_t *ic_api_cachepolicy_encode(const ic_api_cachepolicy_t *x) {
  json_t *o = wr_begin(x->raw, "CachePolicy");
  if (!o) return NULL;
  wr_meta(o, &x->meta);
  json_t *sp = wr_child(o, "spec", x->spec.present);
  if (sp) {
    wr_str(sp, "eviction", x->spec.eviction);
    wr_str(sp, "evictionTTL", x->spec.eviction_ttl);
    wr_int(sp, "minimumPrefixTokens", x->spec.has_minimum_prefix_tokens, x->spec.minimum_prefix_tokens);
    wr_int(sp, "minimumMatchedTokens", x->spec.has_minimum_matched_tokens, x->spec.minimum_matched_tokens);
    wr_int(sp, "lookupTimeoutMs", x->spec.has_lookup_timeout_ms, x->spec.lookup_timeout_ms);
    wr_str(sp, "routingFloorScore", x->spec.routing_floor_score);
    wr_str(sp, "affinityRouting", x->spec.affinity_routing);
    json_t *st = wr_child(sp, "strategy", x->spec.strategy.present);
    if (st) {
      wr_bool(st, "enableChainMatching", x->spec.strategy.has_enable_chain_matching,
              x->spec.strategy.enable_chain_matching);
      wr_bool(st, "requireChain", x->spec.strategy.has_require_chain, x->spec.strategy.require_chain);
      wr_bool(st, "enableTenantHot", x->spec.strategy.has_enable_tenant_hot, x->spec.strategy.enable_tenant_hot);
      wr_bool(st, "loadAwareRouting", x->spec.strategy.has_load_aware_routing,
              x->spec.strategy.load_aware_routing);
      wr_bool(st, "predictOnRoute", x->spec.strategy.has_predict_on_route,
              x->spec.strategy.predict_on_route);
    }
  }
  json_t *st = wr_child(o, "status", x->status.present);
  if (st) {
    wr_int(st, "observedGeneration", x->status.has_observed_generation, x->status.observed_generation);
    wr_conditions(st, &x->status.conditions);
  }
  return o;
}

static void set_default_str(char **p, const char *v) {
  if (!*p) *p = strdup(v);
}

void ic_api_cachepolicy_default(ic_api_cachepolicy_t *x) {
  if (!x->spec.present) return;
  set_default_str(&x->spec.eviction, "LRU");
  if (!x->spec.has_minimum_matched_tokens) x->spec.has_minimum_matched_tokens = true, x->spec.minimum_matched_tokens = 64;
  set_default_str(&x->spec.routing_floor_score, "0.1");
  set_default_str(&x->spec.affinity_routing, "Enabled");
  if (x->spec.strategy.present) {
    if (!x->spec.strategy.has_enable_chain_matching)
      x->spec.strategy.has_enable_chain_matching = true, x->spec.strategy.enable_chain_matching = true;
    if (!x->spec.strategy.has_require_chain) x->spec.strategy.has_require_chain = true, x->spec.strategy.require_chain = false;
    if (!x->spec.strategy.has_enable_tenant_hot)
      x->spec.strategy.has_enable_tenant_hot = true, x->spec.strategy.enable_tenant_hot = true;
  }
}

void ic_api_cachepolicy_free(ic_api_cachepolicy_t *x) {
  if (!x) return;
  json_decref(x->raw);
  free_meta(&x->meta);
  free(x->spec.eviction), free(x->spec.eviction_ttl), free(x->spec.routing_floor_score),
      free(x->spec.affinity_routing);
  free_conditions(&x->status.conditions);
  memset(x, 0, sizeof *x);
}

/* ---- CacheTenant ----------------------------------------------------------------------------- */

static const char *const isolation_modes[] = {"Fairness", NULL};

int ic_api_cachetenant_decode(const json_t *obj, ic_api_cachetenant_t *out, ic_api_errors_t *errs) {
  if (!json_is_object(obj)) return IC_EINVAL;
  dctx_t c = {errs, 0};
  out->raw = json_deep_copy(obj);
  if (!out->raw) return IC_ENOMEM;
  rd_meta(&c, obj, &out->meta);
  req(&c, obj, "spec", "");
  const json_t *sp = rd_obj(&c, obj, "spec", "");
  if (sp) {
    out->spec.present = true;
    req(&c, sp, "tenantID", "spec");
    if (rd_str(&c, sp, "tenantID", "spec", &out->spec.tenant_id) > 0 && !out->spec.tenant_id[0])
      api_err(&c, IC_API_ERR_INVALID, "spec.tenantID", json_object_get(sp, "tenantID"), NULL, "%s",
              "spec.tenantID in body should be at least 1 chars long");
    rd_enum(&c, sp, "isolationMode", "spec", isolation_modes, &out->spec.isolation_mode);
    const json_t *q = rd_obj(&c, sp, "quota", "spec");
    if (q) {
      out->spec.quota.present = true;
      rd_int(&c, q, "maxIndexEntries", "spec.quota", true, 0, false, 0, &out->spec.quota.has_max_index_entries,
             &out->spec.quota.max_index_entries);
    }
    const json_t *cr = rd_obj(&c, sp, "crypto", "spec");
    if (cr) {
      /* preserve-unknown-fields + maxProperties 0: any key is rejected, not pruned */
      if (json_object_size(cr) > 0)
        api_err(&c, IC_API_ERR_TYPE, "spec.crypto", NULL, NULL, "%s", "must have at most 0 properties");
      out->spec.crypto = json_deep_copy(cr);
    }
  }
  const json_t *st = rd_obj(&c, obj, "status", "");
  if (st) {
    out->status.present = true;
    rd_int(&c, st, "observedGeneration", "status", true, 0, false, 0, &out->status.has_observed_generation,
           &out->status.observed_generation);
    rd_int(&c, st, "indexEntries", "status", true, 0, false, 0, &out->status.has_index_entries,
           &out->status.index_entries);
    rd_conditions(&c, st, "status", &out->status.conditions);
  }
  return c.oom ? IC_ENOMEM : 0;
}

json_t *ic_api_cachetenant_encode(const ic_api_cachetenant_t *x) {
  json_t *o = wr_begin(x->raw, "CacheTenant");
  if (!o) return NULL;
  wr_meta(o, &x->meta);
  json_t *sp = wr_child(o, "spec", x->spec.present);
  if (sp) {
    wr_str(sp, "tenantID", x->spec.tenant_id);
    wr_str(sp, "isolationMode", x->spec.isolation_mode);
    json_t *q = wr_child(sp, "quota", x->spec.quota.present);
    if (q) wr_int(q, "maxIndexEntries", x->spec.quota.has_max_index_entries, x->spec.quota.max_index_entries);
    wr_json(sp, "crypto", x->spec.crypto);
  }
  json_t *st = wr_child(o, "status", x->status.present);
  if (st) {
    wr_int(st, "observedGeneration", x->status.has_observed_generation, x->status.observed_generation);
    wr_int(st, "indexEntries", x->status.has_index_entries, x->status.index_entries);
    wr_conditions(st, &x->status.conditions);
  }
  return o;
}

void ic_api_cachetenant_default(ic_api_cachetenant_t *x) {
  if (x->spec.present) set_default_str(&x->spec.isolation_mode, "Fairness");
}

void ic_api_cachetenant_free(ic_api_cachetenant_t *x) {
  if (!x) return;
  json_decref(x->raw);
  free_meta(&x->meta);
  free(x->spec.tenant_id), free(x->spec.isolation_mode);
  json_decref(x->spec.crypto);
  free_conditions(&x->status.conditions);
  memset(x, 0, sizeof *x);
}

/* ---- CacheIndex ------------------------------------------------------------------------------ */

/* list-map uniqueness of `key` within array items */
static void chk_unique(dctx_t *c, const json_t *arr, const char *key, const char *path) {
  size_t n = json_array_size(arr);
  char pi[IC_PATH_MAX];
  for (size_t i = 0; i < n; i++) {
    const char *a = json_string_value(json_object_get(json_array_get(arr, i), key));
    for (size_t j = 0; a && j < i; j++) {
      const char *b = json_string_value(json_object_get(json_array_get(arr, j), key));
      if (b && strcmp(a, b) == 0) {
        api_path_idx(pi, path, i);
        api_err(c, IC_API_ERR_INVALID, pi, json_array_get(arr, i), NULL, "%s", "Duplicate value");
        break;
      }
    }
  }
}

int ic_api_cacheindex_decode(const json_t *obj, ic_api_cacheindex_t *out, ic_api_errors_t *errs) {
  if (!json_is_object(obj)) return IC_EINVAL;
  dctx_t c = {errs, 0};
  out->raw = json_deep_copy(obj);
  if (!out->raw) return IC_ENOMEM;
  rd_meta(&c, obj, &out->meta);
  rd_obj(&c, obj, "spec", ""); /* any keys: pruned by the API server, never rejected */
  const json_t *st = rd_obj(&c, obj, "status", "");
  if (!st) return c.oom ? IC_ENOMEM : 0;
  out->status.present = true;
  char pi[IC_PATH_MAX];
  const json_t *ra = rd_arr(&c, st, "replicas", "status");
  if (ra) {
    out->status.has_replicas = true;
    chk_unique(&c, ra, "id", "status.replicas");
    out->status.replicas = calloc(json_array_size(ra) + 1, sizeof *out->status.replicas);
    size_t i;
    const json_t *it;
    json_array_foreach(ra, i, it) {
      api_path_idx(pi, "status.replicas", i);
      if (!json_is_object(it)) {
        api_type_err(&c, pi, it, "object");
        continue;
      }
      if (!out->status.replicas) break;
      ic_api_cacheindex_replica_t *r = &out->status.replicas[out->status.n_replicas++];
      req(&c, it, "id", pi);
      rd_str(&c, it, "id", pi, &r->id);
      rd_str(&c, it, "tenant", pi, &r->tenant);
      rd_int(&c, it, "cacheMemoryBytes", pi, false, 0, false, 0, &r->has_cache_memory_bytes, &r->cache_memory_bytes);
      rd_str(&c, it, "hitRate", pi, &r->hit_rate);
      rd_str(&c, it, "pressure", pi, &r->pressure);
      rd_str(&c, it, "lastUpdate", pi, &r->last_update);
    }
  }
  const json_t *ta = rd_arr(&c, st, "tenants", "status");
  if (ta) {
    out->status.has_tenants = true;
    chk_unique(&c, ta, "id", "status.tenants");
    out->status.tenants = calloc(json_array_size(ta) + 1, sizeof *out->status.tenants);
    size_t i;
    const json_t *it;
    json_array_foreach(ta, i, it) {
      api_path_idx(pi, "status.tenants", i);
      if (!json_is_object(it)) {
        api_type_err(&c, pi, it, "object");
        continue;
      }
      if (!out->status.tenants) break;
      ic_api_cacheindex_tenant_t *t = &out->status.tenants[out->status.n_tenants++];
      bool h;
      req(&c, it, "id", pi);
      rd_str(&c, it, "id", pi, &t->id);
      rd_int(&c, it, "indexEntries", pi, false, 0, false, 0, &t->has_index_entries, &t->index_entries);
      rd_str(&c, it, "hitRate", pi, &t->hit_rate);
      rd_int(&c, it, "memoryUsed", pi, false, 0, false, 0, &h, &t->memory_used);
    }
  }
  const json_t *px = rd_obj(&c, st, "prefixes", "status");
  if (px) {
    const json_t *sm = rd_obj(&c, px, "summary", "status.prefixes");
    if (sm) {
      bool h;
      out->status.prefixes.present = true;
      req(&c, sm, "hot", "status.prefixes.summary");
      req(&c, sm, "total", "status.prefixes.summary");
      rd_int(&c, sm, "total", "status.prefixes.summary", false, 0, false, 0, &h, &out->status.prefixes.total);
      rd_int(&c, sm, "hot", "status.prefixes.summary", false, 0, false, 0, &h, &out->status.prefixes.hot);
    }
  }
  rd_str(&c, st, "observedServer", "status", &out->status.observed_server);
  rd_str(&c, st, "lastUpdated", "status", &out->status.last_updated);
  return c.oom ? IC_ENOMEM : 0;
}

json_t *ic_api_cacheindex_encode(const ic_api_cacheindex_t *x) {
  json_t *o = wr_begin(x->raw, "CacheIndex");
  if (!o) return NULL;
  wr_meta(o, &x->meta);
  /* the Go type always serialises "spec":{} and the schema keeps no spec keys */
  json_object_set_new(o, "spec", json_object());
  json_t *st = wr_child(o, "status", x->status.present);
  if (st) {
    const json_t *rawst = json_object_get(x->raw, "status");
    if (x->status.has_replicas || x->status.n_replicas) {
      json_t *a = json_array();
      for (size_t i = 0; a && i < x->status.n_replicas; i++) {
        const ic_api_cacheindex_replica_t *r = &x->status.replicas[i];
        const json_t *old = find_item(json_object_get(rawst, "replicas"), "id", r->id);
        json_t *it = old ? json_deep_copy(old) : json_object();
        wr_str(it, "id", r->id ? r->id : "");
        wr_str(it, "tenant", (r->tenant && r->tenant[0]) ? r->tenant : NULL);
        wr_int(it, "cacheMemoryBytes", r->has_cache_memory_bytes && r->cache_memory_bytes, r->cache_memory_bytes);
        wr_str(it, "hitRate", r->hit_rate);
        wr_str(it, "pressure", (r->pressure && r->pressure[0]) ? r->pressure : NULL);
        wr_str(it, "lastUpdate", r->last_update);
        json_array_append_new(a, it);
      }
      json_object_set_new(st, "replicas", a);
    } else {
      json_object_del(st, "replicas");
    }
    if (x->status.has_tenants || x->status.n_tenants) {
      json_t *a = json_array();
      for (size_t i = 0; a && i < x->status.n_tenants; i++) {
        const ic_api_cacheindex_tenant_t *t = &x->status.tenants[i];
        const json_t *old = find_item(json_object_get(rawst, "tenants"), "id", t->id);
        json_t *it = old ? json_deep_copy(old) : json_object();
        wr_str(it, "id", t->id ? t->id : "");
        wr_int(it, "indexEntries", t->has_index_entries, t->index_entries);
        wr_str(it, "hitRate", t->hit_rate);
        wr_int(it, "memoryUsed", true, t->memory_used);
        json_array_append_new(a, it);
      }
      json_object_set_new(st, "tenants", a);
    } else {
      json_object_del(st, "tenants");
    }
    json_t *px = wr_child(st, "prefixes", x->status.prefixes.present);
    if (px) {
      json_t *sm = wr_child(px, "summary", true);
      wr_int(sm, "total", true, x->status.prefixes.total);
      wr_int(sm, "hot", true, x->status.prefixes.hot);
    }
    wr_str(st, "observedServer", x->status.observed_server);
    wr_str(st, "lastUpdated", x->status.last_updated);
  }
  return o;
}

void ic_api_cacheindex_default(ic_api_cacheindex_t *x) { (void)x; }

void ic_api_cacheindex_free(ic_api_cacheindex_t *x) {
  if (!x) return;
  json_decref(x->raw);
  free_meta(&x->meta);
  for (size_t i = 0; i < x->status.n_replicas; i++) {
    ic_api_cacheindex_replica_t *r = &x->status.replicas[i];
    free(r->id), free(r->tenant), free(r->hit_rate), free(r->pressure), free(r->last_update);
  }
  free(x->status.replicas);
  for (size_t i = 0; i < x->status.n_tenants; i++) free(x->status.tenants[i].id), free(x->status.tenants[i].hit_rate);
  free(x->status.tenants);
  free(x->status.observed_server), free(x->status.last_updated);
  memset(x, 0, sizeof *x);
}

/* ---- PromptTemplate -------------------------------------------------------------------------- */

static const char *const slot_types[] = {"Stable", "Mutable", NULL};

static void min_len1(dctx_t *c, const json_t *o, const char *k, const char *parent, const char *v) {
  if (v && !v[0]) {
    char p[IC_PATH_MAX];
    api_path(p, parent, k);
    api_err(c, IC_API_ERR_INVALID, p, json_object_get(o, k), NULL, "%s in body should be at least 1 chars long", p);
  }
}

int ic_api_prompttemplate_decode(const json_t *obj, ic_api_prompttemplate_t *out, ic_api_errors_t *errs) {
  if (!json_is_object(obj)) return IC_EINVAL;
  dctx_t c = {errs, 0};
  out->raw = json_deep_copy(obj);
  if (!out->raw) return IC_ENOMEM;
  rd_meta(&c, obj, &out->meta);
  req(&c, obj, "spec", "");
  const json_t *sp = rd_obj(&c, obj, "spec", "");
  if (sp) {
    out->spec.present = true;
    req(&c, sp, "body", "spec");
    rd_str(&c, sp, "body", "spec", &out->spec.body);
    min_len1(&c, sp, "body", "spec", out->spec.body);
    const json_t *sl = rd_arr(&c, sp, "slots", "spec");
    if (sl) {
      out->spec.has_slots = true;
      chk_unique(&c, sl, "name", "spec.slots");
      out->spec.slots = calloc(json_array_size(sl) + 1, sizeof *out->spec.slots);
      size_t i;
      const json_t *it;
      char pi[IC_PATH_MAX];
      json_array_foreach(sl, i, it) {
        api_path_idx(pi, "spec.slots", i);
        if (!json_is_object(it)) {
          api_type_err(&c, pi, it, "object");
          continue;
        }
        if (!out->spec.slots) break;
        ic_api_prompt_slot_t *s = &out->spec.slots[out->spec.n_slots++];
        req(&c, it, "name", pi);
        req(&c, it, "type", pi);
        rd_str(&c, it, "name", pi, &s->name);
        min_len1(&c, it, "name", pi, s->name);
        rd_enum(&c, it, "type", pi, slot_types, &s->type);
        rd_bool(&c, it, "required", pi, &s->has_required, &s->required);
        rd_str(&c, it, "description", pi, &s->description);
      }
    }
  }
  const json_t *st = rd_obj(&c, obj, "status", "");
  if (st) {
    out->status.present = true;
    rd_int(&c, st, "observedGeneration", "status", true, 0, false, 0, &out->status.has_observed_generation,
           &out->status.observed_generation);
    rd_str(&c, st, "templateRevision", "status", &out->status.template_revision);
    rd_conditions(&c, st, "status", &out->status.conditions);
  }
  return c.oom ? IC_ENOMEM : 0;
}

json_t *ic_api_prompttemplate_encode(const ic_api_prompttemplate_t *x) {
  json_t *o = wr_begin(x->raw, "PromptTemplate");
  if (!o) return NULL;
  wr_meta(o, &x->meta);
  json_t *sp = wr_child(o, "spec", x->spec.present);
  if (sp) {
    wr_str(sp, "body", x->spec.body);
    if (x->spec.has_slots || x->spec.n_slots) {
      json_t *a = json_array();
      const json_t *rawsl = json_object_get(json_object_get(x->raw, "spec"), "slots");
      for (size_t i = 0; a && i < x->spec.n_slots; i++) {
        const ic_api_prompt_slot_t *s = &x->spec.slots[i];
        const json_t *old = find_item(rawsl, "name", s->name);
        json_t *it = old ? json_deep_copy(old) : json_object();
        wr_str(it, "name", s->name);
        wr_str(it, "type", s->type);
        wr_bool(it, "required", s->has_required, s->required);
        wr_str(it, "description", s->description);
        json_array_append_new(a, it);
      }
      json_object_set_new(sp, "slots", a);
    } else {
      json_object_del(sp, "slots");
    }
  }
  json_t *st = wr_child(o, "status", x->status.present);
  if (st) {
    wr_int(st, "observedGeneration", x->status.has_observed_generation, x->status.observed_generation);
    wr_str(st, "templateRevision", x->status.template_revision);
    wr_conditions(st, &x->status.conditions);
  }
  return o;
}

void ic_api_prompttemplate_default(ic_api_prompttemplate_t *x) { (void)x; }

void ic_api_prompttemplate_free(ic_api_prompttemplate_t *x) {
  if (!x) return;
  json_decref(x->raw);
  free_meta(&x->meta);
  free(x->spec.body);
  for (size_t i = 0; i < x->spec.n_slots; i++)
    free(x->spec.slots[i].name), free(x->spec.slots[i].type), free(x->spec.slots[i].description);
  free(x->spec.slots);
  free(x->status.template_revision);
  free_conditions(&x->status.conditions);
  memset(x, 0, sizeof *x);
}

/* ---- PDTopology ------------------------------------------------------------------------------ */

static ic_api_pd_pool_t *rd_pools(dctx_t *c, const json_t *sp, const char *k, size_t *n, bool *has) {
  const json_t *a = rd_arr(c, sp, k, "spec");
  if (!a) return NULL;
  *has = true;
  char p[IC_PATH_MAX], pi[IC_PATH_MAX];
  api_path(p, "spec", k);
  chk_unique(c, a, "name", p);
  ic_api_pd_pool_t *pools = calloc(json_array_size(a) + 1, sizeof *pools);
  if (!pools) return c->oom = 1, NULL;
  size_t i;
  const json_t *it;
  json_array_foreach(a, i, it) {
    api_path_idx(pi, p, i);
    if (!json_is_object(it)) {
      api_type_err(c, pi, it, "object");
      continue;
    }
    ic_api_pd_pool_t *pl = &pools[(*n)++];
    req(c, it, "name", pi);
    rd_str(c, it, "name", pi, &pl->name);
    min_len1(c, it, "name", pi, pl->name);
    rd_str_map(c, it, "matchLabels", pi, &pl->match_labels);
    rd_int(c, it, "replicas", pi, true, 0, true, I32MAX, &pl->has_replicas, &pl->replicas);
    rd_str(c, it, "acceleratorType", pi, &pl->accelerator_type);
  }
  return pools;
}

int ic_api_pdtopology_decode(const json_t *obj, ic_api_pdtopology_t *out, ic_api_errors_t *errs) {
  if (!json_is_object(obj)) return IC_EINVAL;
  dctx_t c = {errs, 0};
  out->raw = json_deep_copy(obj);
  if (!out->raw) return IC_ENOMEM;
  rd_meta(&c, obj, &out->meta);
  const json_t *sp = rd_obj(&c, obj, "spec", "");
  if (sp) {
    out->spec.present = true;
    out->spec.prefill_pools =
        rd_pools(&c, sp, "prefillPools", &out->spec.n_prefill_pools, &out->spec.has_prefill_pools);
    out->spec.decode_pools = rd_pools(&c, sp, "decodePools", &out->spec.n_decode_pools, &out->spec.has_decode_pools);
    const json_t *a = rd_arr(&c, sp, "acceleratorTypes", "spec");
    if (a) {
      out->spec.has_accelerator_types = true;
      chk_unique(&c, a, "name", "spec.acceleratorTypes");
      out->spec.accelerator_types = calloc(json_array_size(a) + 1, sizeof *out->spec.accelerator_types);
      size_t i;
      const json_t *it;
      char pi[IC_PATH_MAX];
      json_array_foreach(a, i, it) {
        api_path_idx(pi, "spec.acceleratorTypes", i);
        if (!json_is_object(it)) {
          api_type_err(&c, pi, it, "object");
          continue;
        }
        if (!out->spec.accelerator_types) break;
        ic_api_accelerator_type_t *t = &out->spec.accelerator_types[out->spec.n_accelerator_types++];
        req(&c, it, "name", pi);
        rd_str(&c, it, "name", pi, &t->name);
        min_len1(&c, it, "name", pi, t->name);
        rd_str(&c, it, "vendor", pi, &t->vendor);
        rd_str(&c, it, "model", pi, &t->model);
        rd_str_map(&c, it, "matchLabels", pi, &t->match_labels);
      }
    }
  }
  const json_t *st = rd_obj(&c, obj, "status", "");
  if (st) {
    out->status.present = true;
    rd_int(&c, st, "observedGeneration", "status", true, 0, false, 0, &out->status.has_observed_generation,
           &out->status.observed_generation);
    rd_conditions(&c, st, "status", &out->status.conditions);
  }
  return c.oom ? IC_ENOMEM : 0;
}

static void wr_pools(json_t *sp, const char *k, const json_t *rawsp, const ic_api_pd_pool_t *pools, size_t n,
                     bool has) {
  if (!has && !n) {
    json_object_del(sp, k);
    return;
  }
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++) {
    const json_t *old = find_item(json_object_get(rawsp, k), "name", pools[i].name);
    json_t *it = old ? json_deep_copy(old) : json_object();
    wr_str(it, "name", pools[i].name);
    wr_json(it, "matchLabels", pools[i].match_labels);
    wr_int(it, "replicas", pools[i].has_replicas, pools[i].replicas);
    wr_str(it, "acceleratorType", pools[i].accelerator_type);
    json_array_append_new(a, it);
  }
  json_object_set_new(sp, k, a);
}

json_t *ic_api_pdtopology_encode(const ic_api_pdtopology_t *x) {
  json_t *o = wr_begin(x->raw, "PDTopology");
  if (!o) return NULL;
  wr_meta(o, &x->meta);
  json_t *sp = wr_child(o, "spec", x->spec.present);
  if (sp) {
    const json_t *rawsp = json_object_get(x->raw, "spec");
    wr_pools(sp, "prefillPools", rawsp, x->spec.prefill_pools, x->spec.n_prefill_pools, x->spec.has_prefill_pools);
    wr_pools(sp, "decodePools", rawsp, x->spec.decode_pools, x->spec.n_decode_pools, x->spec.has_decode_pools);
    if (x->spec.has_accelerator_types || x->spec.n_accelerator_types) {
      json_t *a = json_array();
      for (size_t i = 0; a && i < x->spec.n_accelerator_types; i++) {
        const ic_api_accelerator_type_t *t = &x->spec.accelerator_types[i];
        const json_t *old = find_item(json_object_get(rawsp, "acceleratorTypes"), "name", t->name);
        json_t *it = old ? json_deep_copy(old) : json_object();
        wr_str(it, "name", t->name);
        wr_str(it, "vendor", t->vendor);
        wr_str(it, "model", t->model);
        wr_json(it, "matchLabels", t->match_labels);
        json_array_append_new(a, it);
      }
      json_object_set_new(sp, "acceleratorTypes", a);
    } else {
      json_object_del(sp, "acceleratorTypes");
    }
  }
  json_t *st = wr_child(o, "status", x->status.present);
  if (st) {
    wr_int(st, "observedGeneration", x->status.has_observed_generation, x->status.observed_generation);
    wr_conditions(st, &x->status.conditions);
  }
  return o;
}

void ic_api_pdtopology_default(ic_api_pdtopology_t *x) { (void)x; }

static void free_pools(ic_api_pd_pool_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) free(p[i].name), free(p[i].accelerator_type), json_decref(p[i].match_labels);
  free(p);
}

void ic_api_pdtopology_free(ic_api_pdtopology_t *x) {
  if (!x) return;
  json_decref(x->raw);
  free_meta(&x->meta);
  free_pools(x->spec.prefill_pools, x->spec.n_prefill_pools);
  free_pools(x->spec.decode_pools, x->spec.n_decode_pools);
  for (size_t i = 0; i < x->spec.n_accelerator_types; i++) {
    ic_api_accelerator_type_t *t = &x->spec.accelerator_types[i];
    free(t->name), free(t->vendor), free(t->model), json_decref(t->match_labels);
  }
  free(x->spec.accelerator_types);
  free_conditions(&x->status.conditions);
  memset(x, 0, sizeof *x);
}

/* ---- clone and generic schema validation ----------------------------------------------------- */

#define CLONE_IMPL(k)                                                       \
  int ic_api_##k##_clone(const ic_api_##k##_t *src, ic_api_##k##_t *dst) {  \
    json_t *j = ic_api_##k##_encode(src);                                   \
    if (!j) return IC_ENOMEM;                                               \
    memset(dst, 0, sizeof *dst);                                            \
    int rc = ic_api_##k##_decode(j, dst, NULL);                             \
    json_decref(j);                                                         \
    return rc;                                                              \
  }
CLONE_IMPL(cachepolicy)
CLONE_IMPL(cachetenant)
CLONE_IMPL(cacheindex)
CLONE_IMPL(prompttemplate)
CLONE_IMPL(pdtopology)

#define VALIDATE_CASE(K, k)                       \
  case K: {                                       \
    ic_api_##k##_t x;                             \
    memset(&x, 0, sizeof x);                      \
    int rc = ic_api_##k##_decode(obj, &x, errs);  \
    ic_api_##k##_free(&x);                        \
    return rc;                                    \
  }

int ic_api_validate_schema(const json_t *obj, ic_api_errors_t *errs) {
  if (!json_is_object(obj)) return IC_EINVAL;
  switch (ic_api_kind_of(obj)) {
    VALIDATE_CASE(IC_API_KIND_CACHEBACKEND, cachebackend)
    VALIDATE_CASE(IC_API_KIND_CACHEPOLICY, cachepolicy)
    VALIDATE_CASE(IC_API_KIND_CACHETENANT, cachetenant)
    VALIDATE_CASE(IC_API_KIND_CACHEINDEX, cacheindex)
    VALIDATE_CASE(IC_API_KIND_PROMPTTEMPLATE, prompttemplate)
    VALIDATE_CASE(IC_API_KIND_PDTOPOLOGY, pdtopology)
    default:
      return ic_api_errors_add(errs, IC_API_ERR_NOT_SUPPORTED, "kind", json_object_get(obj, "kind"), NULL,
                               "not a kind of %s", IC_API_GROUP_VERSION);
  }
}
