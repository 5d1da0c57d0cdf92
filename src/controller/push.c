/* Policy push (docs/controller.md): CachePolicy + CacheTenant -> the v7 /policy body
 * (nanosecond TTL, lower-case eviction, first-per-namespace / first-per-tenantID dedup),
 * sent to every server replica by fleet.c. The body is written by hand so float32 values keep
 * Go's shortest form (jansson would print 17 digits). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"
#include "ic/api.h"
#include "ic/buf.h"
#include "ic/log.h"

static int cmp_ns_name(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  const char *nx = ic_kube_jstr(x, "metadata.namespace"), *ny = ic_kube_jstr(y, "metadata.namespace");
  int r = strcmp(nx ? nx : "", ny ? ny : "");
  if (r) return r;
  nx = ic_kube_jstr(x, "metadata.name");
  ny = ic_kube_jstr(y, "metadata.name");
  return strcmp(nx ? nx : "", ny ? ny : "");
}

static json_t **sorted_items(json_t *list, size_t *n) {
  json_t *items = json_object_get(list, "items");
  *n = json_array_size(items);
  json_t **v = calloc(*n ? *n : 1, sizeof *v);
  for (size_t i = 0; i < *n; i++) v[i] = json_array_get(items, i);
  qsort(v, *n, sizeof *v, cmp_ns_name);
  return v;
}

static void put_i(ic_buf_t *b, const char *key, json_t *v) {
  if (json_is_integer(v) && json_integer_value(v) != 0)
    ic_buf_appendf(b, ",\"%s\":%lld", key, (long long)json_integer_value(v));
}

static void put_b(ic_buf_t *b, const char *key, json_t *v, bool *first) {
  if (!json_is_boolean(v)) return;
  ic_buf_appendf(b, "%s\"%s\":%s", *first ? "" : ",", key, json_is_true(v) ? "true" : "false");
  *first = false;
}

char *ctl_policy_body(json_t *policies, json_t *tenants) {
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append_str(&b, "{\"version\":7,\"policies\":[");
  size_t n = 0;
  json_t **v = sorted_items(policies, &n);
  json_t *seen = json_object();
  bool first = true;
  for (size_t i = 0; i < n; i++) {
    const char *ns = ic_kube_jstr(v[i], "metadata.namespace");
    if (!ns || json_object_get(seen, ns)) continue;
    json_object_set_new(seen, ns, json_true());
    json_t *spec = json_object_get(v[i], "spec");
    if (!first) ic_buf_append_byte(&b, ',');
    first = false;
    ic_buf_append_str(&b, "{\"namespace\":");
    ic_buf_append_json_str(&b, ns, strlen(ns));
    const char *ttl = ic_kube_jstr(spec, "evictionTTL");
    int64_t ns_ttl = 0;
    if (ttl && ic_api_parse_duration(ttl, &ns_ttl) == 0 && ns_ttl != 0)
      ic_buf_appendf(&b, ",\"evictionTTL\":%lld", (long long)ns_ttl);
    put_i(&b, "minimumPrefixTokens", json_object_get(spec, "minimumPrefixTokens"));
    put_i(&b, "minimumMatchedTokens", json_object_get(spec, "minimumMatchedTokens"));
    json_t *rfs = json_object_get(spec, "routingFloorScore");
    if (json_is_string(rfs)) {
      const char *s = json_string_value(rfs);
      char *end = NULL;
      float f = strtof(s, &end);
      if (!*s || !end || *end || isnan(f) || isinf(f) || f < 0) f = 0.1f;
      char out[48];
      ctl_fmt_float32(f, out);
      ic_buf_appendf(&b, ",\"routingFloorScore\":%s", out);
    }
    put_i(&b, "lookupTimeoutMs", json_object_get(spec, "lookupTimeoutMs"));
    const char *aff = ic_kube_jstr(spec, "affinityRouting");
    if (aff) ic_buf_appendf(&b, ",\"affinityRouting\":%s", strcmp(aff, "Enabled") == 0 ? "true" : "false");
    const char *ev = ic_kube_jstr(spec, "eviction");
    char lower[32] = "lru";
    if (ev && *ev) {
      snprintf(lower, sizeof lower, "%s", ev);
      for (char *p = lower; *p; p++) *p = (char)tolower((unsigned char)*p);
    }
    ic_buf_append_str(&b, ",\"eviction\":");
    ic_buf_append_json_str(&b, lower, strlen(lower));
    json_t *strat = json_object_get(spec, "strategy");
    if (json_is_object(strat)) {
      ic_buf_append_str(&b, ",\"strategy\":{");
      bool f2 = true;
      put_b(&b, "enableChainMatching", json_object_get(strat, "enableChainMatching"), &f2);
      put_b(&b, "requireChain", json_object_get(strat, "requireChain"), &f2);
      put_b(&b, "enableTenantHot", json_object_get(strat, "enableTenantHot"), &f2);
      put_b(&b, "loadAwareRouting", json_object_get(strat, "loadAwareRouting"), &f2); /* additive */
      put_b(&b, "predictOnRoute", json_object_get(strat, "predictOnRoute"), &f2);     /* additive */
      ic_buf_append_byte(&b, '}');
    }
    ic_buf_append_byte(&b, '}');
  }
  ic_buf_append_byte(&b, ']');
  free(v);
  json_decref(seen);
  v = sorted_items(tenants, &n);
  seen = json_object();
  first = true;
  for (size_t i = 0; i < n; i++) {
    const char *tid = ic_kube_jstr(v[i], "spec.tenantID");
    json_t *q = ic_kube_jget(v[i], "spec.quota.maxIndexEntries");
    if (!tid || !*tid || !json_is_integer(q) || json_object_get(seen, tid)) continue;
    json_object_set_new(seen, tid, json_true());
    ic_buf_append_str(&b, first ? ",\"tenants\":[" : ",");
    first = false;
    ic_buf_append_str(&b, "{\"tenantID\":");
    ic_buf_append_json_str(&b, tid, strlen(tid));
    ic_buf_appendf(&b, ",\"maxIndexEntries\":%lld", (long long)json_integer_value(q));
    const char *iso = ic_kube_jstr(v[i], "spec.isolationMode");
    if (iso && *iso) {
      ic_buf_append_str(&b, ",\"isolationMode\":");
      ic_buf_append_json_str(&b, iso, strlen(iso));
    }
    ic_buf_append_byte(&b, '}');
  }
  if (!first) ic_buf_append_byte(&b, ']');
  ic_buf_append_byte(&b, '}');
  free(v);
  json_decref(seen);
  return ic_buf_detach(&b, NULL);
}

int ctl_policy_body_load(ctl_t *c, char **body) {
  *body = NULL;
  json_t *pol = NULL, *ten = NULL;
  ic_kube_status_t st;
  int rc = ic_kube_list(c->kube, &ctl_res_cachepolicies, NULL, NULL, &pol, &st);
  if (rc == IC_ENOTFOUND) return 0; /* CRD not installed: nothing to push */
  if (rc != 0) return rc;
  rc = ic_kube_list(c->kube, &ctl_res_cachetenants, NULL, NULL, &ten, &st);
  if (rc != 0 && rc != IC_ENOTFOUND) {
    json_decref(pol);
    return rc;
  }
  *body = ctl_policy_body(pol, ten);
  json_decref(pol);
  json_decref(ten);
  return *body ? 0 : IC_ENOMEM;
}
