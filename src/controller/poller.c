/* CacheIndex poller (docs/controller.md, "CacheIndex poller"): GET /snapshot with the
 * controller-audience token, then the per-backend participation, cluster-default CacheIndex and
 * CacheTenant projections, each written only when it changed. Also the server HTTP client. */
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "controller.h"
#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/log.h"

/* A bearer token is a few KiB (a projected service-account JWT); more is not a token. */
#define MAX_TOKEN_BYTES (64u * 1024)

void ctl_now(char out[40]) { ic_kube_format_time(ic_clock_realtime_us(), false, out); }

void ctl_fmt_float32(float f, char out[48]) {
  if (f == 0) {
    snprintf(out, 48, "0");
    return;
  }
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(out, 48, "%.*g", prec, (double)f);
    if (strtof(out, NULL) == f) break;
  }
  /* Go's encoding/json writes plain decimals in this range; %g may use an exponent. */
  if (strchr(out, 'e') && fabsf(f) >= 1e-6f && fabsf(f) < 1e21f) {
    char tmp[48];
    for (int dec = 1; dec <= 30; dec++) {
      snprintf(tmp, sizeof tmp, "%.*f", dec, (double)f);
      if (strtof(tmp, NULL) == f) break;
    }
    snprintf(out, 48, "%s", tmp);
  }
  /* encoding/json cleans "e-07" to "e-7". */
  size_t n = strlen(out);
  if (n >= 4 && out[n - 4] == 'e' && out[n - 3] == '-' && out[n - 2] == '0') {
    out[n - 2] = out[n - 1];
    out[n - 1] = 0;
  }
}

static size_t sink(char *ptr, size_t sz, size_t nm, void *ud) {
  return ic_buf_append(ud, ptr, sz * nm) == 0 ? sz * nm : 0;
}

typedef struct {
  const char *name;
  char *out;
  size_t n;
} hdr_want_t;

static size_t header_sink(char *ptr, size_t sz, size_t nm, void *ud) {
  hdr_want_t *w = ud;
  size_t len = sz * nm, nl = strlen(w->name);
  if (len > nl + 1 && strncasecmp(ptr, w->name, nl) == 0 && ptr[nl] == ':') {
    const char *v = ptr + nl + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ')) vl--;
    snprintf(w->out, w->n, "%.*s", (int)vl, v);
  }
  return len;
}

int ctl_server_call(const char *method, const char *url, const char *token_file, const char *body,
                    long *status, char **resp, size_t *resp_len) {
  return ctl_server_call_hdr(method, url, token_file, body, status, resp, resp_len, NULL, NULL, 0);
}

int ctl_server_call_hdr(const char *method, const char *url, const char *token_file,
                        const char *body, long *status, char **resp, size_t *resp_len,
                        const char *header, char *hval, size_t hlen) {
  *status = 0;
  hdr_want_t want = {header, hval, hlen};
  if (hval && hlen) hval[0] = 0;
  if (resp) *resp = NULL;
  CURL *c = curl_easy_init();
  if (!c) return IC_ENOMEM;
  struct curl_slist *h = NULL;
  if (token_file && *token_file) {
    ic_buf_t tok = IC_BUF_INIT;
    if (ic_buf_read_file_trimmed(token_file, MAX_TOKEN_BYTES, &tok, NULL) == 0 && tok.len) {
      ic_buf_t a = IC_BUF_INIT;
      ic_buf_appendf(&a, "Authorization: Bearer %s", tok.data);
      h = curl_slist_append(h, a.data);
      ic_buf_free(&a);
    }
    ic_buf_free(&tok);
    /* A missing file means "no token" (local runs); not an error. */
  }
  if (body) h = curl_slist_append(h, "Content-Type: application/json");
  ic_buf_t out = IC_BUF_INIT;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  if (header && hval && hlen) {
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_sink);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &want);
  }
  CURLcode cc = curl_easy_perform(c);
  if (cc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_easy_cleanup(c);
  curl_slist_free_all(h);
  if (cc != CURLE_OK) {
    ic_buf_free(&out);
    return IC_EIO;
  }
  if (resp)
    *resp = ic_buf_detach(&out, resp_len);
  else
    ic_buf_free(&out);
  return 0;
}

static bool zero_time(const char *t) {
  return !t || !*t || strncmp(t, "0001-01-01T00:00:00", 19) == 0;
}

/* Go's time comparisons on RFC 3339 strings: parse, compare microseconds. */
static int64_t tparse(const char *t) {
  int64_t us = 0;
  if (zero_time(t) || ic_kube_parse_time(t, &us) != 0) return 0;
  return us;
}

static int ensure_singleton(ctl_t *c, json_t **out) {
  ic_kube_status_t st;
  int rc = ic_kube_get(c->kube, &ctl_res_cacheindices, NULL, c->cacheindex_name, out, &st);
  if (rc != IC_ENOTFOUND) return rc;
  json_t *obj = json_pack("{s:s,s:s,s:{s:s},s:{}}", "apiVersion", "inferencecache.io/v1alpha1",
                          "kind", "CacheIndex", "metadata", "name", c->cacheindex_name, "spec");
  rc = ic_kube_create(c->kube, &ctl_res_cacheindices, NULL, obj, out, &st);
  json_decref(obj);
  if (rc == 0) ic_log_info("cacheindex_created", IC_LS("name", c->cacheindex_name));
  return rc;
}

static bool labels_subset(json_t *ml, json_t *labels) {
  if (!json_is_object(ml) || json_object_size(ml) == 0) return false;
  const char *k;
  json_t *v;
  json_object_foreach(ml, k, v) {
    json_t *lv = json_object_get(labels, k);
    if (!json_is_string(lv) || !json_is_string(v) ||
        strcmp(json_string_value(lv), json_string_value(v)) != 0)
      return false;
  }
  return true;
}

static int cmp_by_name(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  const char *nx = ic_kube_jstr(x, "metadata.name"), *ny = ic_kube_jstr(y, "metadata.name");
  return strcmp(nx ? nx : "", ny ? ny : "");
}

typedef struct {
  char key[512];
  int64_t prefix;
  int64_t last_us;
  char last[64];
  int64_t t2hit, t2query;
  bool attributed;
} agg_t;

/* Projection 1: per-CacheBackend indexEntries / indexParticipation. */
static int project_backends(ctl_t *c, json_t *snap) {
  json_t *list = NULL;
  ic_kube_status_t st;
  int rc = ic_kube_list(c->kube, &ctl_res_cachebackends, NULL, NULL, &list, &st);
  if (rc != 0) return rc;
  json_t *items = json_object_get(list, "items");
  size_t nb = json_array_size(items);
  if (nb == 0) {
    json_decref(list);
    return 0;
  }
  json_t **sorted = calloc(nb, sizeof *sorted);
  agg_t *agg = calloc(nb, sizeof *agg);
  for (size_t i = 0; i < nb; i++) sorted[i] = json_array_get(items, i);
  qsort(sorted, nb, sizeof *sorted, cmp_by_name);
  for (size_t i = 0; i < nb; i++)
    snprintf(agg[i].key, sizeof agg[i].key, "%s/%s", ic_kube_jstr(sorted[i], "metadata.namespace"),
             ic_kube_jstr(sorted[i], "metadata.name"));
  json_t *tainted = json_object();  /* namespace -> true */
  json_t *podcache = json_object(); /* ns/pod -> pod or null */
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(snap, "replicas"), i, r) {
    const char *tenant = ic_kube_jstr(r, "tenant"), *rid = ic_kube_jstr(r, "replicaId");
    if (!tenant || !*tenant || !rid || !*rid || json_object_get(tainted, tenant)) continue;
    char pk[600];
    snprintf(pk, sizeof pk, "%s/%s", tenant, rid);
    json_t *pod = json_object_get(podcache, pk);
    if (!pod) {
      json_t *got = NULL;
      int prc = ic_kube_get(c->kube, &ic_kube_res_pods, tenant, rid, &got, &st);
      if (prc != 0 && prc != IC_ENOTFOUND) {
        json_object_set_new(tainted, tenant, json_true());
        continue;
      }
      pod = got ? got : json_null();
      json_object_set_new(podcache, pk, pod);
    }
    if (json_is_null(pod)) continue;
    long owner = -1;
    json_t *ann = ic_kube_jget(pod, "metadata.annotations");
    json_t *injv = json_object_get(ann, "inferencecache.io/injected-by");
    const char *inj = json_is_string(injv) ? json_string_value(injv) : NULL;
    const char *sl = inj ? strchr(inj, '/') : NULL;
    if (sl && strlen(tenant) == (size_t)(sl - inj) && strncmp(inj, tenant, sl - inj) == 0) {
      for (size_t b = 0; b < nb; b++)
        if (strcmp(agg[b].key, inj) == 0) owner = (long)b;
    } else {
      json_t *labels = ic_kube_jget(pod, "metadata.labels");
      for (size_t b = 0; b < nb && owner < 0; b++) {
        const char *bns = ic_kube_jstr(sorted[b], "metadata.namespace");
        if (bns && strcmp(bns, tenant) == 0 &&
            labels_subset(ic_kube_jget(sorted[b], "spec.engineSelector.matchLabels"), labels))
          owner = (long)b;
      }
    }
    if (owner < 0) continue;
    agg_t *a = &agg[owner];
    a->attributed = true;
    a->prefix += json_integer_value(json_object_get(r, "prefixCount"));
    const char *le = ic_kube_jstr(r, "lastEventAt");
    int64_t us = tparse(le);
    if (us > a->last_us) {
      a->last_us = us;
      snprintf(a->last, sizeof a->last, "%s", le);
    }
    a->t2hit += json_integer_value(json_object_get(r, "t2HitTokens"));
    a->t2query += json_integer_value(json_object_get(r, "t2QueryTokens"));
  }
  int first_err = 0;
  for (size_t b = 0; b < nb; b++) {
    json_t *cb = sorted[b];
    const char *ns = ic_kube_jstr(cb, "metadata.namespace");
    if (json_object_get(tainted, ns)) continue;
    json_t *status = json_object_get(cb, "status");
    json_t *ml = ic_kube_jget(cb, "spec.engineSelector.matchLabels");
    bool has_sel = json_is_object(ml) && json_object_size(ml) > 0;
    bool published = json_object_get(status, "indexParticipation") ||
                     json_object_get(status, "indexEntries");
    agg_t *a = &agg[b];
    if (a->prefix == 0 && a->last_us == 0 && a->t2query == 0 && !has_sel && !published) continue;
    json_t *part = json_pack("{s:I}", "prefixCount", (json_int_t)a->prefix);
    if (a->last_us) {
      /* Normalise to seconds precision like metav1.Time. */
      char t[40];
      ic_kube_format_time(a->last_us - a->last_us % 1000000, false, t);
      json_object_set_new(part, "lastEventAt", json_string(t));
    }
    if (a->t2query > 0) {
      double ratio = (double)a->t2hit / (double)a->t2query;
      if (ratio < 0) ratio = 0;
      if (ratio > 1) ratio = 1;
      if (c->m_t2_hit_rate)
        ic_metric_set(ic_metric_child(c->m_t2_hit_rate, (const char *[]){a->key}), ratio);
      /* Counter of cumulative query tokens: the first observation is a baseline; a drop
       * (server restart) re-baselines instead of going negative. */
      json_t *base = c->t2_baseline ? json_object_get(c->t2_baseline, a->key) : NULL;
      if (json_is_integer(base) && a->t2query > json_integer_value(base) && c->m_t2_query_tokens)
        ic_metric_add(ic_metric_child(c->m_t2_query_tokens, (const char *[]){a->key}),
                      (double)(a->t2query - json_integer_value(base)));
      if (c->t2_baseline)
        json_object_set_new(c->t2_baseline, a->key, json_integer(a->t2query));
      char f[48];
      ctl_fmt_float32((float)ratio, f);
      json_object_set_new(part, "t2HitRate", json_string(f));
    }
    json_t *want = json_pack("{s:I,s:o}", "indexEntries", (json_int_t)a->prefix,
                             "indexParticipation", part);
    json_t *have = json_object();
    if (json_object_get(status, "indexEntries"))
      json_object_set(have, "indexEntries", json_object_get(status, "indexEntries"));
    if (json_object_get(status, "indexParticipation"))
      json_object_set(have, "indexParticipation", json_object_get(status, "indexParticipation"));
    json_t *diff = ic_kube_merge_diff(have, want);
    if (json_object_size(diff) > 0) {
      json_t *patch = json_pack("{s:O}", "status", diff);
      int prc = ic_kube_patch(c->kube, &ctl_res_cachebackends, ns,
                              ic_kube_jstr(cb, "metadata.name"), "status", IC_KUBE_PATCH_MERGE,
                              patch, NULL, false, NULL, &st);
      json_decref(patch);
      if (prc != 0) {
        ic_log_warn("participation_patch_failed", IC_LS("cachebackend", a->key),
                    IC_LS("error", st.message));
        if (!first_err) first_err = prc;
      }
    }
    json_decref(diff);
    json_decref(have);
    json_decref(want);
  }
  json_decref(tainted);
  json_decref(podcache);
  free(sorted);
  free(agg);
  json_decref(list);
  return first_err;
}

static int cmp_row_id(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  return strcmp(ic_kube_jstr(x, "id"), ic_kube_jstr(y, "id"));
}

/* Projection 2 body: the CacheIndex status (without lastUpdated). */
static json_t *build_index_status(ctl_t *c, json_t *snap) {
  json_t *reps = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(snap, "replicas"), i, r) {
    const char *lu = ic_kube_jstr(r, "lastUpdate");
    const char *id = ic_kube_jstr(r, "replicaId");
    if (zero_time(lu) || !id) continue;
    const char *tenant = ic_kube_jstr(r, "tenant");
    json_t *row = json_pack("{s:s}", "id", id);
    if (tenant && *tenant) json_object_set_new(row, "tenant", json_string(tenant));
    json_int_t mem = json_integer_value(json_object_get(r, "cacheMemoryBytes"));
    if (mem) json_object_set_new(row, "cacheMemoryBytes", json_integer(mem));
    char f[48];
    ctl_fmt_float32((float)json_number_value(json_object_get(r, "hitRate")), f);
    json_object_set_new(row, "hitRate", json_string(f));
    ctl_fmt_float32((float)json_number_value(json_object_get(r, "pressure")), f);
    json_object_set_new(row, "pressure", json_string(f));
    char t[40];
    int64_t us = tparse(lu);
    ic_kube_format_time(us - us % 1000000, false, t);
    json_object_set_new(row, "lastUpdate", json_string(t));
    /* Duplicate ids: keep the row with the lexicographically greater tenant. */
    size_t j;
    json_t *e;
    bool replaced = false;
    json_array_foreach(reps, j, e) {
      if (strcmp(ic_kube_jstr(e, "id"), id) == 0) {
        const char *et = ic_kube_jstr(e, "tenant");
        if (strcmp(tenant ? tenant : "", et ? et : "") > 0) json_array_set(reps, j, row);
        replaced = true;
        break;
      }
    }
    if (!replaced) json_array_append(reps, row);
    json_decref(row);
  }
  size_t n = json_array_size(reps);
  json_t **rows = calloc(n ? n : 1, sizeof *rows);
  for (size_t k = 0; k < n; k++) rows[k] = json_incref(json_array_get(reps, k));
  qsort(rows, n, sizeof *rows, cmp_row_id);
  json_array_clear(reps);
  for (size_t k = 0; k < n; k++) json_array_append_new(reps, rows[k]);
  free(rows);
  json_t *tens = json_array();
  json_array_foreach(json_object_get(snap, "tenants"), i, r) {
    const char *id = ic_kube_jstr(r, "tenantId");
    json_t *row = json_pack("{s:s,s:I,s:i}", "id", id ? id : "", "indexEntries",
                            json_integer_value(json_object_get(r, "indexEntries")), "memoryUsed", 0);
    double hr = json_number_value(json_object_get(r, "hitRate"));
    if (json_is_true(json_object_get(r, "hitRateReported")) || hr != 0) {
      char f[48];
      ctl_fmt_float32((float)hr, f);
      json_object_set_new(row, "hitRate", json_string(f));
    }
    json_array_append_new(tens, row);
  }
  json_t *st = json_pack("{s:{s:{s:I,s:I}},s:s}", "prefixes", "summary", "total",
                         json_integer_value(json_object_get(snap, "totalPrefixes")), "hot",
                         json_integer_value(json_object_get(snap, "hotPrefixes")),
                         "observedServer", c->snapshot_url);
  if (json_array_size(reps)) json_object_set(st, "replicas", reps);
  if (json_array_size(tens)) json_object_set(st, "tenants", tens);
  json_decref(reps);
  json_decref(tens);
  return st;
}

/* Comparison ignoring lastUpdated and replicas[].lastUpdate. */
static json_t *strip_times(json_t *st) {
  json_t *s = json_is_object(st) ? json_deep_copy(st) : json_object();
  json_object_del(s, "lastUpdated");
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(s, "replicas"), i, r) json_object_del(r, "lastUpdate");
  return s;
}

static int project_index(ctl_t *c, json_t *ci, json_t *snap, json_t *servers) {
  json_t *want = build_index_status(c, snap);
  /* Several server replicas: each one's own figures next to the fleet view. */
  if (json_array_size(servers)) json_object_set(want, "servers", servers);
  json_t *a = strip_times(json_object_get(ci, "status")), *b = strip_times(want);
  bool same = json_equal(a, b);
  json_decref(a);
  json_decref(b);
  int rc = 0;
  if (!same) {
    char now[40];
    ctl_now(now);
    json_object_set_new(want, "lastUpdated", json_string(now));
    json_t *obj = json_deep_copy(ci);
    json_object_set(obj, "status", want);
    ic_kube_status_t st;
    rc = ic_kube_update(c->kube, &ctl_res_cacheindices, NULL, c->cacheindex_name, "status", obj,
                        NULL, &st);
    json_decref(obj);
    if (rc != 0)
      ic_log_warn("cacheindex_update_failed", IC_LS("error", st.message));
  }
  json_decref(want);
  return rc;
}

static int cmp_ns_name(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  int r = strcmp(ic_kube_jstr(x, "metadata.namespace"), ic_kube_jstr(y, "metadata.namespace"));
  return r ? r : cmp_by_name(a, b);
}

/* Projection 3: CacheTenant status. */
static int project_tenants(ctl_t *c, json_t *snap) {
  json_t *list = NULL;
  ic_kube_status_t st;
  int rc = ic_kube_list(c->kube, &ctl_res_cachetenants, NULL, NULL, &list, &st);
  if (rc == IC_ENOTFOUND) return 0;
  if (rc != 0) return rc;
  json_t *items = json_object_get(list, "items");
  size_t n = json_array_size(items);
  json_t **v = calloc(n ? n : 1, sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = json_array_get(items, i);
  qsort(v, n, sizeof *v, cmp_ns_name);
  char now[40];
  ctl_now(now);
  int first_err = 0;
  for (size_t i = 0; i < n; i++) {
    const char *tid = ic_kube_jstr(v[i], "spec.tenantID");
    int64_t entries = 0;
    size_t k;
    json_t *t;
    json_array_foreach(json_object_get(snap, "tenants"), k, t) {
      const char *id = ic_kube_jstr(t, "tenantId");
      if (tid && id && strcmp(id, tid) == 0)
        entries = json_integer_value(json_object_get(t, "indexEntries"));
    }
    long owner = -1;
    for (size_t j = 0; j < n && owner < 0; j++) {
      const char *oid = ic_kube_jstr(v[j], "spec.tenantID");
      if (tid && *tid && oid && strcmp(oid, tid) == 0 &&
          json_is_integer(ic_kube_jget(v[j], "spec.quota.maxIndexEntries")))
        owner = (long)j;
    }
    json_t *status = json_object_get(v[i], "status");
    json_t *before = json_is_object(status) ? json_deep_copy(status) : json_object();
    json_t *want = json_deep_copy(before);
    int64_t gen = json_integer_value(ic_kube_jget(v[i], "metadata.generation"));
    json_object_set_new(want, "observedGeneration", json_integer(gen));
    json_object_set_new(want, "indexEntries", json_integer(entries));
    if (owner >= 0 && (size_t)owner != i) {
      char msg[600];
      snprintf(msg, sizeof msg, "tenantID %s is owned by CacheTenant %s/%s", tid,
               ic_kube_jstr(v[owner], "metadata.namespace"), ic_kube_jstr(v[owner], "metadata.name"));
      ic_kube_condition_set(want, "Ready", "False", "DuplicateTenantID", msg, gen, now);
      ic_kube_condition_set(want, "QuotaExceeded", "False", "NotEffective",
                            "quota is not effective for a shadowed CacheTenant", gen, now);
    } else {
      ic_kube_condition_set(want, "Ready", "True", "Observed",
                            "projected from the latest server snapshot read", gen, now);
      json_t *q = ic_kube_jget(v[i], "spec.quota.maxIndexEntries");
      if (!json_is_integer(q)) {
        ic_kube_condition_set(want, "QuotaExceeded", "False", "NoQuota", "no quota configured",
                              gen, now);
      } else if (entries > json_integer_value(q)) {
        char msg[200];
        snprintf(msg, sizeof msg, "index entries %lld exceed budget %lld", (long long)entries,
                 (long long)json_integer_value(q));
        ic_kube_condition_set(want, "QuotaExceeded", "True", "OverEntryBudget", msg, gen, now);
      } else {
        char msg[200];
        snprintf(msg, sizeof msg, "index entries %lld within budget %lld", (long long)entries,
                 (long long)json_integer_value(q));
        ic_kube_condition_set(want, "QuotaExceeded", "False", "WithinBudget", msg, gen, now);
      }
    }
    json_t *diff = ic_kube_merge_diff(before, want);
    if (json_object_size(diff) > 0) {
      json_t *patch = json_pack("{s:O}", "status", diff);
      int prc = ic_kube_patch(c->kube, &ctl_res_cachetenants,
                              ic_kube_jstr(v[i], "metadata.namespace"),
                              ic_kube_jstr(v[i], "metadata.name"), "status", IC_KUBE_PATCH_MERGE,
                              patch, NULL, false, NULL, &st);
      json_decref(patch);
      if (prc != 0 && !first_err) first_err = prc;
    }
    json_decref(diff);
    json_decref(before);
    json_decref(want);
  }
  free(v);
  json_decref(list);
  return first_err;
}

int ctl_poll_once(ctl_t *c) {
  json_t *ci = NULL;
  int rc = ensure_singleton(c, &ci);
  if (rc != 0) {
    ic_log_warn("cacheindex_ensure_failed", IC_LS("error", ic_strerror(rc)));
    return rc;
  }
  /* One replica's /snapshot, or the fleet view of every ready replica's (fleet.c). */
  json_t *snap = NULL, *servers = NULL;
  rc = ctl_fleet_snapshots(c, &snap, &servers);
  if (rc != 0) {
    /* Soft state: a failed scrape changes nothing. */
    json_decref(ci);
    return rc;
  }
  int e1 = project_backends(c, snap);
  int e2 = project_index(c, ci, snap, servers);
  int e3 = project_tenants(c, snap);
  json_decref(snap);
  json_decref(servers);
  json_decref(ci);
  return e1 ? e1 : e2 ? e2 : e3;
}
