/* AdmissionReview v1 plumbing: parse the request, route it to a webhook, and build the response
 * with controller-runtime's conventions (422 Invalid status with causes for field errors, 403 for
 * plain denials, base64 JSONPatch for mutations, no patch when nothing changed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/admission.h"
#include "ic/err.h"
#include "ic/log.h"
#include "internal.h"

const char *adm_first_conflict(const json_t *list, const char *self, const char *tenant_id);

static const char *const paths[IC_ADM_COUNT] = {
    "/mutate--v1-pod",
    "/mutate-inferencecache-io-v1alpha1-cachebackend",
    "/validate-inferencecache-io-v1alpha1-cachebackend",
    "/mutate-inferencecache-io-v1alpha1-cachepolicy",
    "/validate-inferencecache-io-v1alpha1-cachepolicy",
    "/mutate-inferencecache-io-v1alpha1-cachetenant",
    "/validate-inferencecache-io-v1alpha1-cachetenant",
};

const char *ic_admission_path(ic_admission_hook_t h) { return (h >= 0 && h < IC_ADM_COUNT) ? paths[h] : ""; }

ic_admission_hook_t ic_admission_hook_for_path(const char *path) {
  for (int i = 0; path && i < IC_ADM_COUNT; i++)
    if (strcmp(path, paths[i]) == 0) return (ic_admission_hook_t)i;
  return IC_ADM_UNKNOWN;
}

typedef struct resp {
  json_t *r; /* the "response" object */
} resp_t;

static void allow(resp_t *o, const char *reason) {
  json_object_set_new(o->r, "allowed", json_true());
  if (reason && *reason) {
    json_t *st = json_object();
    json_object_set_new(st, "metadata", json_object());
    json_object_set_new(st, "code", json_integer(200));
    json_object_set_new(st, "reason", json_string(reason));
    json_object_set_new(o->r, "status", st);
  }
}

static void deny_plain(resp_t *o, int code, const char *msg) {
  json_object_set_new(o->r, "allowed", json_false());
  json_t *st = json_object();
  json_object_set_new(st, "metadata", json_object());
  json_object_set_new(st, "status", json_string("Failure"));
  json_object_set_new(st, "message", json_string(msg));
  json_object_set_new(st, "reason", json_string(msg));
  json_object_set_new(st, "code", json_integer(code));
  json_object_set_new(o->r, "status", st);
}

static void deny_invalid(resp_t *o, const ic_api_errors_t *e, const char *kind, const char *group, const char *name) {
  json_object_set_new(o->r, "allowed", json_false());
  char *msg = ic_api_errors_message(e, kind, group, name);
  json_t *st = json_object();
  json_object_set_new(st, "metadata", json_object());
  json_object_set_new(st, "status", json_string("Failure"));
  json_object_set_new(st, "message", json_string(msg ? msg : "invalid"));
  json_object_set_new(st, "reason", json_string("Invalid"));
  json_t *det = json_object();
  json_object_set_new(det, "name", json_string(name ? name : ""));
  json_object_set_new(det, "group", json_string(group));
  json_object_set_new(det, "kind", json_string(kind));
  json_t *causes = json_array();
  for (size_t i = 0; i < e->len; i++) {
    char *full = ic_api_field_error_string(&e->items[i]);
    /* cause messages drop the "field: " prefix, like field.ErrorList.ToAggregate causes */
    const char *m = full ? full + strlen(e->items[i].field) + 2 : "";
    json_t *c = json_object();
    json_object_set_new(c, "reason", json_string(ic_api_err_reason(e->items[i].type)));
    json_object_set_new(c, "message", json_string(m));
    json_object_set_new(c, "field", json_string(e->items[i].field));
    json_array_append_new(causes, c);
    free(full);
  }
  json_object_set_new(det, "causes", causes);
  json_object_set_new(st, "details", det);
  json_object_set_new(st, "code", json_integer(422));
  json_object_set_new(o->r, "status", st);
  free(msg);
}

static void set_patch(resp_t *o, const json_t *from, const json_t *to) {
  json_t *ops = ic_admission_json_patch(from, to);
  if (ops && json_array_size(ops) > 0) {
    char *s = json_dumps(ops, JSON_COMPACT);
    char *b64 = s ? adm_base64(s, strlen(s)) : NULL;
    if (b64) {
      json_object_set_new(o->r, "patchType", json_string("JSONPatch"));
      json_object_set_new(o->r, "patch", json_string(b64));
    }
    free(b64);
    free(s);
  }
  json_decref(ops);
}

static json_t *list_or_null(const ic_admission_config_t *cfg, const char *kind, const char *ns, char *err, size_t n) {
  if (!cfg || !cfg->list) {
    snprintf(err, n, "no API reader configured to list %s objects", kind);
    return NULL;
  }
  json_t *l = cfg->list(cfg->list_ud, kind, ns, err, n);
  if (l && !json_is_array(l)) {
    json_decref(l);
    snprintf(err, n, "listing %s objects returned no list", kind);
    return NULL;
  }
  return l;
}

static const char *obj_name(const json_t *obj, const json_t *req) {
  const char *n = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  return n ? n : json_string_value(json_object_get(req, "name"));
}

/* Fill metadata.namespace from the request when the object lacks it (namespaced kinds). */
static void ensure_ns(json_t *obj, const char *ns) {
  json_t *md = json_object_get(obj, "metadata");
  if (!json_is_object(md) || !ns || !*ns) return;
  if (!json_string_value(json_object_get(md, "namespace"))) json_object_set_new(md, "namespace", json_string(ns));
}

static void cachebackend(const ic_admission_config_t *cfg, const char *op, json_t *obj, json_t *old, const char *ns,
                         const json_t *req, resp_t *o) {
  ic_api_cachebackend_t cb = {0}, ocb = {0};
  ic_api_errors_t errs = IC_API_ERRORS_INIT;
  ensure_ns(obj, ns);
  if (ic_api_cachebackend_decode(obj, &cb, NULL) != 0) {
    deny_plain(o, 400, "cannot decode CacheBackend");
    return;
  }
  bool update = strcmp(op, "UPDATE") == 0;
  if (update && old) {
    ensure_ns(old, ns);
    ic_api_cachebackend_decode(old, &ocb, NULL);
  }
  json_t *siblings = NULL;
  char err[512] = "";
  /* rule 19 runs only with a reader; CachePolicy/CacheTenant instead fail closed without one */
  if (cfg && cfg->list && ic_api_cachebackend_engine_wired(&cb) && ic_api_cachebackend_cache_domain(&cb)) {
    siblings = list_or_null(cfg, "CacheBackend", cb.meta.namespace_ ? cb.meta.namespace_ : ns, err, sizeof err);
    if (!siblings) {
      deny_plain(o, 403, err);
      goto out;
    }
  }
  ic_admission_cachebackend_validate(&cb, (update && old) ? &ocb : NULL, siblings, &errs);
  if (errs.len)
    deny_invalid(o, &errs, "CacheBackend", IC_API_GROUP, obj_name(obj, req));
  else
    allow(o, NULL);
out:
  json_decref(siblings);
  ic_api_errors_free(&errs);
  ic_api_cachebackend_free(&cb);
  ic_api_cachebackend_free(&ocb);
}

static void cachepolicy(const ic_admission_config_t *cfg, const char *op, json_t *obj, json_t *old, const char *ns,
                        const json_t *req, resp_t *o) {
  ic_api_cachepolicy_t p = {0}, op_ = {0};
  ic_api_errors_t errs = IC_API_ERRORS_INIT;
  ensure_ns(obj, ns);
  if (ic_api_cachepolicy_decode(obj, &p, NULL) != 0) {
    deny_plain(o, 400, "cannot decode CachePolicy");
    return;
  }
  ic_admission_cachepolicy_rules(&p, &errs);
  if (strcmp(op, "UPDATE") == 0) {
    if (old && ic_api_cachepolicy_decode(old, &op_, NULL) == 0 && errs.len) {
      ic_api_errors_t before = IC_API_ERRORS_INIT, kept = IC_API_ERRORS_INIT;
      ic_admission_cachepolicy_rules(&op_, &before);
      for (size_t i = 0; i < errs.len; i++) {
        bool was = false;
        for (size_t j = 0; j < before.len && !was; j++) was = ic_api_field_error_equal(&errs.items[i], &before.items[j]);
        if (!was)
          ic_api_errors_add(&kept, errs.items[i].type, errs.items[i].field, errs.items[i].bad_value, NULL, "%s",
                            errs.items[i].detail ? errs.items[i].detail : "");
      }
      ic_api_errors_free(&errs);
      ic_api_errors_free(&before);
      errs = kept;
    }
  } else {
    char err[512] = "";
    const char *pns = p.meta.namespace_ ? p.meta.namespace_ : ns;
    json_t *list = list_or_null(cfg, "CachePolicy", pns, err, sizeof err);
    if (!list) {
      deny_plain(o, 403, err);
      goto out;
    }
    const char *other = adm_first_conflict(list, obj_name(obj, req), NULL);
    if (other) {
      char d[700];
      snprintf(d, sizeof d, "namespace \"%s\" already has CachePolicy \"%s\"; at most one CachePolicy per namespace is allowed",
               pns ? pns : "", other);
      ic_api_errors_add(&errs, IC_API_ERR_FORBIDDEN, "metadata.name", NULL, NULL, "%s", d);
    }
    json_decref(list);
  }
  if (errs.len)
    deny_invalid(o, &errs, "CachePolicy", IC_API_GROUP, obj_name(obj, req));
  else
    allow(o, NULL);
out:
  ic_api_errors_free(&errs);
  ic_api_cachepolicy_free(&p);
  ic_api_cachepolicy_free(&op_);
}

static void cachetenant(const ic_admission_config_t *cfg, const char *op, json_t *obj, json_t *old, const char *ns,
                        const json_t *req, resp_t *o) {
  ic_api_cachetenant_t t = {0}, ot = {0};
  ic_api_errors_t errs = IC_API_ERRORS_INIT;
  ensure_ns(obj, ns);
  if (ic_api_cachetenant_decode(obj, &t, NULL) != 0) {
    deny_plain(o, 400, "cannot decode CacheTenant");
    return;
  }
  bool update = strcmp(op, "UPDATE") == 0;
  bool check_unique = true;
  ic_admission_cachetenant_rules(&t, &errs);
  if (update && old && ic_api_cachetenant_decode(old, &ot, NULL) == 0) {
    const char *a = t.spec.tenant_id ? t.spec.tenant_id : "", *b = ot.spec.tenant_id ? ot.spec.tenant_id : "";
    check_unique = strcmp(a, b) != 0;
    ic_api_errors_t before = IC_API_ERRORS_INIT, kept = IC_API_ERRORS_INIT;
    ic_admission_cachetenant_rules(&ot, &before);
    for (size_t i = 0; i < errs.len; i++) {
      bool was = false;
      for (size_t j = 0; j < before.len && !was; j++) was = ic_api_field_error_equal(&errs.items[i], &before.items[j]);
      if (!was)
        ic_api_errors_add(&kept, errs.items[i].type, errs.items[i].field, errs.items[i].bad_value, NULL, "%s",
                          errs.items[i].detail ? errs.items[i].detail : "");
    }
    ic_api_errors_free(&errs);
    ic_api_errors_free(&before);
    errs = kept;
  }
  if (check_unique && t.spec.tenant_id) {
    char err[512] = "";
    const char *tns = t.meta.namespace_ ? t.meta.namespace_ : ns;
    json_t *list = list_or_null(cfg, "CacheTenant", tns, err, sizeof err);
    if (!list) {
      deny_plain(o, 403, err);
      goto out;
    }
    const char *other = adm_first_conflict(list, obj_name(obj, req), t.spec.tenant_id);
    if (other) {
      json_t *bad = json_string(t.spec.tenant_id);
      ic_api_errors_add(&errs, IC_API_ERR_INVALID, "spec.tenantID", bad, NULL,
                        "tenantID is already claimed by CacheTenant \"%s\" in namespace \"%s\"", other, tns ? tns : "");
      json_decref(bad);
    }
    json_decref(list);
  }
  if (errs.len)
    deny_invalid(o, &errs, "CacheTenant", IC_API_GROUP, obj_name(obj, req));
  else
    allow(o, NULL);
out:
  ic_api_errors_free(&errs);
  ic_api_cachetenant_free(&t);
  ic_api_cachetenant_free(&ot);
}

static void pod(const ic_admission_config_t *cfg, json_t *obj, const char *ns, resp_t *o) {
  if (!json_is_object(obj)) {
    allow(o, "cannot decode Pod; admitting unchanged (fail-open)");
    return;
  }
  const char *pns = json_string_value(json_object_get(json_object_get(obj, "metadata"), "namespace"));
  if (!pns || !*pns) pns = ns;
  char err[512] = "";
  json_t *backends = list_or_null(cfg, "CacheBackend", pns ? pns : "", err, sizeof err);
  ic_admission_pod_result_t res;
  memset(&res, 0, sizeof res);
  if (!backends) snprintf(res.reason, sizeof res.reason, "listing CacheBackends failed: %.450s", err);
  ic_admission_mutate_pod(cfg, obj, ns, backends, &res);
  json_decref(backends);
  if (res.denied) {
    deny_plain(o, 403, res.reason);
  } else {
    allow(o, res.reason);
    if (res.patched) set_patch(o, obj, res.patched);
  }
  json_decref(res.patched);
}

static int fail(char **out, size_t *out_len, const char *msg) {
  *out = strdup(msg);
  if (out_len) *out_len = *out ? strlen(*out) : 0;
  return *out ? IC_EINVAL : IC_ENOMEM;
}

int ic_admission_review(const ic_admission_config_t *cfg, ic_admission_hook_t hook, const char *body, size_t len,
                        char **out, size_t *out_len) {
  *out = NULL;
  json_error_t je;
  json_t *rev = json_loadb(body, len, 0, &je);
  if (!json_is_object(rev)) {
    json_decref(rev);
    return fail(out, out_len, "request body is not an AdmissionReview JSON object");
  }
  json_t *req = json_object_get(rev, "request");
  const char *uid = json_string_value(json_object_get(req, "uid"));
  if (!json_is_object(req) || !uid) {
    json_decref(rev);
    return fail(out, out_len, "AdmissionReview has no request.uid");
  }
  const char *op = json_string_value(json_object_get(req, "operation"));
  const char *ns = json_string_value(json_object_get(req, "namespace"));
  json_t *obj = json_object_get(req, "object"), *old = json_object_get(req, "oldObject");
  resp_t o = {json_object()};
  json_object_set_new(o.r, "uid", json_string(uid));
  if (!op || !*op) {
    allow(&o, "no operation");
  } else if (strcmp(op, "CREATE") != 0 && strcmp(op, "UPDATE") != 0) {
    allow(&o, NULL); /* DELETE and CONNECT are always admitted */
  } else {
    switch (hook) {
      case IC_ADM_POD_MUTATE:
        if (strcmp(op, "CREATE") == 0)
          pod(cfg, obj, ns, &o);
        else
          allow(&o, NULL);
        break;
      case IC_ADM_CACHEBACKEND_VALIDATE:
        if (json_is_object(obj)) cachebackend(cfg, op, obj, json_is_object(old) ? old : NULL, ns, req, &o);
        else deny_plain(&o, 400, "AdmissionReview has no object");
        break;
      case IC_ADM_CACHEPOLICY_VALIDATE:
        if (json_is_object(obj)) cachepolicy(cfg, op, obj, json_is_object(old) ? old : NULL, ns, req, &o);
        else deny_plain(&o, 400, "AdmissionReview has no object");
        break;
      case IC_ADM_CACHETENANT_VALIDATE:
        if (json_is_object(obj)) cachetenant(cfg, op, obj, json_is_object(old) ? old : NULL, ns, req, &o);
        else deny_plain(&o, 400, "AdmissionReview has no object");
        break;
      case IC_ADM_CACHEBACKEND_MUTATE: /* no CacheBackend defaulting: absent nested objects stay absent */
      case IC_ADM_CACHEPOLICY_MUTATE:  /* schema markers do the defaulting */
      case IC_ADM_CACHETENANT_MUTATE:
        allow(&o, NULL);
        break;
      default:
        deny_plain(&o, 404, "unknown webhook path");
        break;
    }
  }
  json_t *outj = json_object();
  json_object_set_new(outj, "apiVersion", json_string("admission.k8s.io/v1"));
  json_object_set_new(outj, "kind", json_string("AdmissionReview"));
  json_object_set_new(outj, "response", o.r);
  char *s = json_dumps(outj, JSON_COMPACT);
  json_decref(outj);
  json_decref(rev);
  if (!s) return IC_ENOMEM;
  *out = s;
  if (out_len) *out_len = strlen(s);
  return 0;
}
