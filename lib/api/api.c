/* lib/api core: field errors with Kubernetes wording, schema-checking readers and owned-field
 * writers used by every kind, metadata and conditions, and the value grammars (quantity, duration,
 * DNS names, label values, endpoint shape) the schema and the webhooks share. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/err.h"
#include "internal.h"

char *ic_api_strdup(const char *s) { return s ? strdup(s) : NULL; }

/* ---- errors ---------------------------------------------------------------------------------- */

void ic_api_errors_free(ic_api_errors_t *e) {
  if (!e) return;
  for (size_t i = 0; i < e->len; i++) {
    ic_api_field_error_t *f = &e->items[i];
    free(f->field);
    free(f->detail);
    json_decref(f->bad_value);
    for (size_t j = 0; j < f->n_supported; j++) free(f->supported[j]);
    free(f->supported);
  }
  free(e->items);
  e->items = NULL, e->len = 0, e->cap = 0;
}

static int errors_add_v(ic_api_errors_t *e, ic_api_err_type_t type, const char *field, const json_t *bad,
                        const char *const *supported, const char *fmt, va_list ap) {
  if (e->len == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 8;
    ic_api_field_error_t *p = realloc(e->items, cap * sizeof *p);
    if (!p) return IC_ENOMEM;
    e->items = p, e->cap = cap;
  }
  ic_api_field_error_t *f = &e->items[e->len];
  memset(f, 0, sizeof *f);
  f->type = type;
  f->field = strdup(field ? field : "");
  if (bad) f->bad_value = json_deep_copy(bad);
  if (fmt && *fmt) {
    if (vasprintf(&f->detail, fmt, ap) < 0) f->detail = NULL;
  }
  size_t n = 0;
  while (supported && supported[n]) n++;
  if (n) {
    f->supported = calloc(n, sizeof(char *));
    if (f->supported) {
      for (size_t i = 0; i < n; i++) f->supported[i] = strdup(supported[i]);
      f->n_supported = n;
    }
  }
  e->len++;
  return f->field ? 0 : IC_ENOMEM;
}

int ic_api_errors_add(ic_api_errors_t *e, ic_api_err_type_t type, const char *field, const json_t *bad,
                      const char *const *supported, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = errors_add_v(e, type, field, bad, supported, fmt, ap);
  va_end(ap);
  return rc;
}

int ic_api_errors_move(ic_api_errors_t *dst, ic_api_errors_t *src) {
  for (size_t i = 0; i < src->len; i++) {
    if (dst->len == dst->cap) {
      size_t cap = dst->cap ? dst->cap * 2 : 8;
      ic_api_field_error_t *p = realloc(dst->items, cap * sizeof *p);
      if (!p) return IC_ENOMEM;
      dst->items = p, dst->cap = cap;
    }
    dst->items[dst->len++] = src->items[i];
  }
  free(src->items);
  src->items = NULL, src->len = 0, src->cap = 0;
  return 0;
}

static bool streq0(const char *a, const char *b) {
  return (a ? a : "")[0] == (b ? b : "")[0] && strcmp(a ? a : "", b ? b : "") == 0;
}

bool ic_api_field_error_equal(const ic_api_field_error_t *a, const ic_api_field_error_t *b) {
  if (a->type != b->type || !streq0(a->field, b->field) || !streq0(a->detail, b->detail)) return false;
  if (!a->bad_value || !b->bad_value) return a->bad_value == b->bad_value;
  return json_equal(a->bad_value, b->bad_value);
}

const char *ic_api_err_reason(ic_api_err_type_t t) {
  switch (t) {
    case IC_API_ERR_REQUIRED: return "FieldValueRequired";
    case IC_API_ERR_FORBIDDEN: return "FieldValueForbidden";
    case IC_API_ERR_NOT_SUPPORTED: return "FieldValueNotSupported";
    case IC_API_ERR_INTERNAL: return "InternalError";
    case IC_API_ERR_INVALID:
    case IC_API_ERR_TYPE:
    default: return "FieldValueInvalid";
  }
}

/* Go's %#v for the values we carry: strings quoted, numbers bare, the rest as compact JSON. */
static void append_value(ic_buf_t *b, const json_t *v) {
  if (!v) {
    ic_buf_append_str(b, "null");
  } else if (json_is_string(v)) {
    ic_buf_append_json_str(b, json_string_value(v), json_string_length(v));
  } else {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    ic_buf_append_str(b, s ? s : "null");
    free(s);
  }
}

static void append_error(ic_buf_t *b, const ic_api_field_error_t *fe) {
  ic_buf_append_str(b, fe->field);
  ic_buf_append_str(b, ": ");
  switch (fe->type) {
    case IC_API_ERR_REQUIRED: ic_buf_append_str(b, "Required value"); break;
    case IC_API_ERR_FORBIDDEN: ic_buf_append_str(b, "Forbidden"); break;
    case IC_API_ERR_INTERNAL: ic_buf_append_str(b, "Internal error"); break;
    case IC_API_ERR_NOT_SUPPORTED:
      ic_buf_append_str(b, "Unsupported value: ");
      append_value(b, fe->bad_value);
      break;
    default:
      ic_buf_append_str(b, "Invalid value: ");
      append_value(b, fe->bad_value);
      break;
  }
  if (fe->detail && *fe->detail) {
    ic_buf_append_str(b, ": ");
    ic_buf_append_str(b, fe->detail);
  }
  if (fe->type == IC_API_ERR_NOT_SUPPORTED && fe->n_supported) {
    ic_buf_append_str(b, ": supported values: ");
    for (size_t i = 0; i < fe->n_supported; i++) {
      if (i) ic_buf_append_str(b, ", ");
      ic_buf_append_json_str(b, fe->supported[i], strlen(fe->supported[i]));
    }
  }
}

char *ic_api_field_error_string(const ic_api_field_error_t *fe) {
  ic_buf_t b = IC_BUF_INIT;
  append_error(&b, fe);
  return ic_buf_detach(&b, NULL);
}

char *ic_api_errors_message(const ic_api_errors_t *e, const char *kind, const char *group, const char *name) {
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_appendf(&b, "%s%s%s \"%s\" is invalid: ", kind ? kind : "", (group && *group) ? "." : "",
                 group ? group : "", name ? name : "");
  if (e->len != 1) ic_buf_append_byte(&b, '[');
  for (size_t i = 0; i < e->len; i++) {
    if (i) ic_buf_append_str(&b, ", ");
    append_error(&b, &e->items[i]);
  }
  if (e->len != 1) ic_buf_append_byte(&b, ']');
  return ic_buf_detach(&b, NULL);
}

/* ---- kinds ----------------------------------------------------------------------------------- */

static const char *const kind_names[] = {"",           "CacheBackend",   "CachePolicy", "CacheTenant",
                                         "CacheIndex", "PromptTemplate", "PDTopology"};

const char *ic_api_kind_name(ic_api_kind_t k) {
  return (k > 0 && k <= IC_API_KIND_PDTOPOLOGY) ? kind_names[k] : "";
}

ic_api_kind_t ic_api_kind_of(const json_t *obj) {
  const char *av = json_string_value(json_object_get(obj, "apiVersion"));
  const char *k = json_string_value(json_object_get(obj, "kind"));
  if (!av || !k || strcmp(av, IC_API_GROUP_VERSION) != 0) return IC_API_KIND_UNKNOWN;
  for (int i = 1; i <= IC_API_KIND_PDTOPOLOGY; i++)
    if (strcmp(k, kind_names[i]) == 0) return (ic_api_kind_t)i;
  return IC_API_KIND_UNKNOWN;
}

/* ---- decode helpers -------------------------------------------------------------------------- */

/* Paths longer than IC_PATH_MAX are truncated (the return value is checked to say so). */
void api_path(char *out, const char *parent, const char *key) {
  int n = (parent && *parent) ? snprintf(out, IC_PATH_MAX, "%s.%s", parent, key)
                              : snprintf(out, IC_PATH_MAX, "%s", key);
  if (n < 0 || n >= IC_PATH_MAX) out[IC_PATH_MAX - 1] = 0;
}
void api_path_idx(char *out, const char *parent, size_t i) {
  int n = snprintf(out, IC_PATH_MAX, "%s[%zu]", parent, i);
  if (n < 0 || n >= IC_PATH_MAX) out[IC_PATH_MAX - 1] = 0;
}
void api_path_key(char *out, const char *parent, const char *key) {
  int n = snprintf(out, IC_PATH_MAX, "%s[%s]", parent, key);
  if (n < 0 || n >= IC_PATH_MAX) out[IC_PATH_MAX - 1] = 0;
}

void api_err(dctx_t *c, ic_api_err_type_t t, const char *path, const json_t *bad, const char *const *sup,
             const char *fmt, ...) {
  if (!c->errs) return;
  va_list ap;
  va_start(ap, fmt);
  if (errors_add_v(c->errs, t, path, bad, sup, fmt, ap) != 0) c->oom = 1;
  va_end(ap);
}

static const char *json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
  }
}

/* Same wording as the API server's OpenAPI validator. */
void api_type_err(dctx_t *c, const char *path, const json_t *v, const char *want) {
  json_t *tn = json_string(json_type_name(v));
  api_err(c, IC_API_ERR_TYPE, path, tn, NULL, "%s in body must be of type %s: \"%s\"", path, want,
          json_type_name(v));
  json_decref(tn);
}

static const json_t *present(const json_t *o, const char *k) {
  const json_t *v = json_is_object(o) ? json_object_get(o, k) : NULL;
  return (v && !json_is_null(v)) ? v : NULL;
}

void req(dctx_t *c, const json_t *o, const char *k, const char *parent) {
  if (present(o, k)) return;
  char p[IC_PATH_MAX];
  api_path(p, parent, k);
  api_err(c, IC_API_ERR_REQUIRED, p, NULL, NULL, "%s", "");
}

int rd_str(dctx_t *c, const json_t *o, const char *k, const char *parent, char **out) {
  const json_t *v = present(o, k);
  if (!v) return 0;
  if (!json_is_string(v)) {
    char p[IC_PATH_MAX];
    api_path(p, parent, k);
    api_type_err(c, p, v, "string");
    return -1;
  }
  free(*out);
  *out = strdup(json_string_value(v));
  if (!*out) c->oom = 1;
  return 1;
}

int rd_enum(dctx_t *c, const json_t *o, const char *k, const char *parent, const char *const *allowed,
            char **out) {
  char *s = NULL;
  int rc = rd_str(c, o, k, parent, &s);
  if (rc <= 0) return rc;
  for (size_t i = 0; allowed[i]; i++)
    if (strcmp(allowed[i], s) == 0) {
      free(*out);
      *out = s;
      return 1;
    }
  char p[IC_PATH_MAX];
  api_path(p, parent, k);
  api_err(c, IC_API_ERR_NOT_SUPPORTED, p, json_object_get(o, k), allowed, "%s", "");
  free(s);
  return -1;
}

int rd_int(dctx_t *c, const json_t *o, const char *k, const char *parent, bool has_min, int64_t min,
           bool has_max, int64_t max, bool *has, int64_t *out) {
  const json_t *v = present(o, k);
  if (!v) return 0;
  char p[IC_PATH_MAX];
  api_path(p, parent, k);
  int64_t x;
  if (json_is_integer(v)) {
    x = json_integer_value(v);
  } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
             fabs(json_real_value(v)) < 9e15) {
    x = (int64_t)json_real_value(v); /* 3.0 is an integer to the API server's JSON decoder */
  } else {
    api_type_err(c, p, v, "integer");
    return -1;
  }
  if (has_min && x < min) {
    api_err(c, IC_API_ERR_INVALID, p, v, NULL, "%s in body should be greater than or equal to %lld", p,
            (long long)min);
    return -1;
  }
  if (has_max && x > max) {
    api_err(c, IC_API_ERR_INVALID, p, v, NULL, "%s in body should be less than or equal to %lld", p,
            (long long)max);
    return -1;
  }
  *has = true;
  *out = x;
  return 1;
}

int rd_bool(dctx_t *c, const json_t *o, const char *k, const char *parent, bool *has, bool *out) {
  const json_t *v = present(o, k);
  if (!v) return 0;
  if (!json_is_boolean(v)) {
    char p[IC_PATH_MAX];
    api_path(p, parent, k);
    api_type_err(c, p, v, "boolean");
    return -1;
  }
  *has = true;
  *out = json_is_true(v);
  return 1;
}

const json_t *rd_obj(dctx_t *c, const json_t *o, const char *k, const char *parent) {
  const json_t *v = present(o, k);
  if (!v) return NULL;
  if (!json_is_object(v)) {
    char p[IC_PATH_MAX];
    api_path(p, parent, k);
    api_type_err(c, p, v, "object");
    return NULL;
  }
  return v;
}

const json_t *rd_arr(dctx_t *c, const json_t *o, const char *k, const char *parent) {
  const json_t *v = present(o, k);
  if (!v) return NULL;
  if (!json_is_array(v)) {
    char p[IC_PATH_MAX];
    api_path(p, parent, k);
    api_type_err(c, p, v, "array");
    return NULL;
  }
  return v;
}

int rd_str_map(dctx_t *c, const json_t *o, const char *k, const char *parent, json_t **out) {
  const json_t *v = rd_obj(c, o, k, parent);
  if (!v) return 0;
  char p[IC_PATH_MAX], pk[IC_PATH_MAX];
  api_path(p, parent, k);
  const char *key;
  const json_t *val;
  int ok = 1;
  json_object_foreach((json_t *)v, key, val) {
    if (!json_is_string(val)) {
      api_path(pk, p, key);
      api_type_err(c, pk, val, "string");
      ok = -1;
    }
  }
  if (ok < 0) return -1;
  json_decref(*out);
  *out = json_deep_copy(v);
  if (!*out) c->oom = 1;
  return 1;
}

static bool quantity_ok(const json_t *v) {
  int64_t m;
  if (json_is_integer(v)) return true;
  if (!json_is_string(v)) return false;
  int rc = ic_api_parse_quantity_str(json_string_value(v), &m);
  return rc == 0 || rc == IC_ERANGE;
}

static bool check_quantity_at(dctx_t *c, const char *path, const json_t *v) {
  if (json_is_integer(v) || json_is_string(v)) {
    if (quantity_ok(v)) return true;
    api_err(c, IC_API_ERR_INVALID, path, v, NULL, "%s in body should match quantity pattern", path);
    return false;
  }
  api_type_err(c, path, v, "integer or string");
  return false;
}

int rd_quantity(dctx_t *c, const json_t *o, const char *k, const char *parent, json_t **out) {
  const json_t *v = present(o, k);
  if (!v) return 0;
  char p[IC_PATH_MAX];
  api_path(p, parent, k);
  if (!check_quantity_at(c, p, v)) return -1;
  json_decref(*out);
  *out = json_deep_copy(v);
  return 1;
}

int rd_json_obj(dctx_t *c, const json_t *o, const char *k, const char *parent, json_t **out) {
  const json_t *v = rd_obj(c, o, k, parent);
  if (!v) return 0;
  json_decref(*out);
  *out = json_deep_copy(v);
  if (!*out) c->oom = 1;
  return 1;
}

void chk_resources(dctx_t *c, const json_t *res, const char *path) {
  static const char *const rl[] = {"limits", "requests"};
  for (int i = 0; i < 2; i++) {
    const json_t *m = rd_obj(c, res, rl[i], path);
    if (!m) continue;
    char p[IC_PATH_MAX], pk[IC_PATH_MAX];
    api_path(p, path, rl[i]);
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)m, key, val) {
      api_path(pk, p, key);
      check_quantity_at(c, pk, val);
    }
  }
  const json_t *claims = rd_arr(c, res, "claims", path);
  if (claims) {
    char p[IC_PATH_MAX], pi[IC_PATH_MAX];
    api_path(p, path, "claims");
    size_t i;
    const json_t *it;
    json_array_foreach(claims, i, it) {
      api_path_idx(pi, p, i);
      if (!json_is_object(it)) {
        api_type_err(c, pi, it, "object");
        continue;
      }
      char *s = NULL;
      req(c, it, "name", pi);
      rd_str(c, it, "name", pi, &s);
      free(s);
    }
  }
}

/* The 11 pod-level override fields of spec.template / remoteStorage.workload (closed set; unknown
 * keys are pruned by the API server, so they are not errors here). */
void chk_pod_overrides(dctx_t *c, const json_t *t, const char *path) {
  json_t *tmp = NULL;
  rd_str_map(c, t, "nodeSelector", path, &tmp);
  json_decref(tmp);
  tmp = NULL;
  rd_obj(c, t, "affinity", path);
  rd_obj(c, t, "securityContext", path);
  static const char *const arrays[] = {"tolerations", "topologySpreadConstraints", "imagePullSecrets", NULL};
  for (int i = 0; arrays[i]; i++) {
    const json_t *a = rd_arr(c, t, arrays[i], path);
    if (!a) continue;
    char p[IC_PATH_MAX], pi[IC_PATH_MAX];
    api_path(p, path, arrays[i]);
    size_t j;
    const json_t *it;
    json_array_foreach(a, j, it) {
      api_path_idx(pi, p, j);
      if (!json_is_object(it)) {
        api_type_err(c, pi, it, "object");
        continue;
      }
      if (i == 1) {
        req(c, it, "maxSkew", pi);
        req(c, it, "topologyKey", pi);
        req(c, it, "whenUnsatisfiable", pi);
        bool h;
        int64_t x;
        rd_int(c, it, "maxSkew", pi, false, 0, false, 0, &h, &x);
      }
    }
  }
  char *s = NULL;
  static const char *const strs[] = {"serviceAccountName", "priorityClassName", "schedulerName",
                                     "runtimeClassName", NULL};
  for (int i = 0; strs[i]; i++) {
    rd_str(c, t, strs[i], path, &s);
    free(s);
    s = NULL;
  }
  bool h;
  int64_t x;
  rd_int(c, t, "terminationGracePeriodSeconds", path, true, 0, false, 0, &h, &x);
}

void chk_secret_selector(dctx_t *c, const json_t *o, const char *k, const char *parent,
                         ic_api_secret_key_selector_t *out) {
  const json_t *s = rd_obj(c, o, k, parent);
  if (!s) return;
  char p[IC_PATH_MAX];
  api_path(p, parent, k);
  out->present = true;
  req(c, s, "key", p);
  rd_str(c, s, "key", p, &out->key);
  rd_str(c, s, "name", p, &out->name);
  rd_bool(c, s, "optional", p, &out->has_optional, &out->optional);
}

void chk_env_list(dctx_t *c, const json_t *arr, const char *path) {
  size_t i;
  const json_t *it;
  char pi[IC_PATH_MAX];
  json_array_foreach(arr, i, it) {
    api_path_idx(pi, path, i);
    if (!json_is_object(it)) {
      api_type_err(c, pi, it, "object");
      continue;
    }
    req(c, it, "name", pi);
    char *s = NULL;
    rd_str(c, it, "name", pi, &s);
    free(s);
    s = NULL;
    rd_str(c, it, "value", pi, &s);
    free(s);
    rd_obj(c, it, "valueFrom", pi);
  }
}

/* ---- metadata and conditions ---------------------------------------------------------------- */

int rd_meta(dctx_t *c, const json_t *obj, ic_api_meta_t *m) {
  const json_t *md = rd_obj(c, obj, "metadata", "");
  if (!md) return 0;
  rd_str(c, md, "name", "metadata", &m->name);
  rd_str(c, md, "namespace", "metadata", &m->namespace_);
  rd_str(c, md, "uid", "metadata", &m->uid);
  rd_str(c, md, "resourceVersion", "metadata", &m->resource_version);
  rd_str(c, md, "creationTimestamp", "metadata", &m->creation_timestamp);
  rd_int(c, md, "generation", "metadata", false, 0, false, 0, &m->has_generation, &m->generation);
  rd_str_map(c, md, "labels", "metadata", &m->labels);
  rd_str_map(c, md, "annotations", "metadata", &m->annotations);
  return 0;
}

void free_meta(ic_api_meta_t *m) {
  free(m->name), free(m->namespace_), free(m->uid), free(m->resource_version), free(m->creation_timestamp);
  json_decref(m->labels);
  json_decref(m->annotations);
  memset(m, 0, sizeof *m);
}

int wr_meta(json_t *obj, const ic_api_meta_t *m) {
  bool any = m->name || m->namespace_ || m->uid || m->resource_version || m->creation_timestamp ||
             m->has_generation || m->labels || m->annotations || json_object_get(obj, "metadata");
  json_t *md = wr_child(obj, "metadata", any);
  if (!md) return any ? -1 : 0;
  int rc = wr_str(md, "name", m->name) | wr_str(md, "namespace", m->namespace_) | wr_str(md, "uid", m->uid) |
           wr_str(md, "resourceVersion", m->resource_version) |
           wr_str(md, "creationTimestamp", m->creation_timestamp) |
           wr_int(md, "generation", m->has_generation, m->generation) | wr_json(md, "labels", m->labels) |
           wr_json(md, "annotations", m->annotations);
  return rc ? -1 : 0;
}

static const char *const cond_status_enum[] = {"True", "False", "Unknown", NULL};

static bool reason_ok(const char *r) {
  size_t n = strlen(r);
  if (n < 1 || n > 1024 || !isalpha((unsigned char)r[0])) return false;
  for (size_t i = 1; i < n; i++) {
    unsigned char ch = (unsigned char)r[i];
    if (!(isalnum(ch) || ch == '_' || ch == ',' || ch == ':')) return false;
  }
  return isalnum((unsigned char)r[n - 1]) || r[n - 1] == '_';
}

int rd_conditions(dctx_t *c, const json_t *status, const char *parent, ic_api_conditions_t *out) {
  const json_t *a = rd_arr(c, status, "conditions", parent);
  if (!a) return 0;
  out->present = true;
  size_t n = json_array_size(a);
  if (!n) return 0;
  out->items = calloc(n, sizeof *out->items);
  if (!out->items) {
    c->oom = 1;
    return -1;
  }
  char p[IC_PATH_MAX], pi[IC_PATH_MAX];
  api_path(p, parent, "conditions");
  size_t i;
  const json_t *it;
  json_array_foreach(a, i, it) {
    api_path_idx(pi, p, i);
    if (!json_is_object(it)) {
      api_type_err(c, pi, it, "object");
      continue;
    }
    ic_api_condition_t *cd = &out->items[out->len++];
    static const char *const reqd[] = {"type", "status", "reason", "message", "lastTransitionTime", NULL};
    for (int r = 0; reqd[r]; r++) req(c, it, reqd[r], pi);
    rd_str(c, it, "type", pi, &cd->type);
    rd_enum(c, it, "status", pi, cond_status_enum, &cd->status);
    if (rd_str(c, it, "reason", pi, &cd->reason) > 0 && !reason_ok(cd->reason)) {
      char pr[IC_PATH_MAX];
      api_path(pr, pi, "reason");
      api_err(c, IC_API_ERR_INVALID, pr, json_object_get(it, "reason"), NULL,
              "%s in body should match '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$'", pr);
    }
    rd_str(c, it, "message", pi, &cd->message);
    rd_str(c, it, "lastTransitionTime", pi, &cd->last_transition_time);
    rd_int(c, it, "observedGeneration", pi, true, 0, false, 0, &cd->has_observed_generation,
           &cd->observed_generation);
    /* list-map keyed by type: duplicates are rejected */
    for (size_t j = 0; j + 1 < out->len; j++)
      if (cd->type && out->items[j].type && strcmp(out->items[j].type, cd->type) == 0) {
        api_err(c, IC_API_ERR_INVALID, pi, json_object_get(it, "type"), NULL, "%s", "Duplicate value");
        break;
      }
  }
  return 0;
}

static void free_condition(ic_api_condition_t *cd) {
  free(cd->type), free(cd->status), free(cd->reason), free(cd->message), free(cd->last_transition_time);
}

void free_conditions(ic_api_conditions_t *cs) {
  for (size_t i = 0; i < cs->len; i++) free_condition(&cs->items[i]);
  free(cs->items);
  memset(cs, 0, sizeof *cs);
}

int wr_conditions(json_t *status, const ic_api_conditions_t *cs) {
  if (!cs->present && cs->len == 0) return json_object_del(status, "conditions"), 0;
  json_t *a = json_array();
  if (!a) return -1;
  for (size_t i = 0; i < cs->len; i++) {
    const ic_api_condition_t *cd = &cs->items[i];
    json_t *o = json_object();
    if (!o) break;
    wr_str(o, "type", cd->type);
    wr_str(o, "status", cd->status);
    wr_int(o, "observedGeneration", cd->has_observed_generation, cd->observed_generation);
    json_object_set_new(o, "lastTransitionTime", json_string(cd->last_transition_time ? cd->last_transition_time : ""));
    json_object_set_new(o, "reason", json_string(cd->reason ? cd->reason : ""));
    json_object_set_new(o, "message", json_string(cd->message ? cd->message : ""));
    json_array_append_new(a, o);
  }
  return json_object_set_new(status, "conditions", a) ? -1 : 0;
}

const ic_api_condition_t *ic_api_conditions_find(const ic_api_conditions_t *c, const char *type) {
  for (size_t i = 0; c && i < c->len; i++)
    if (c->items[i].type && strcmp(c->items[i].type, type) == 0) return &c->items[i];
  return NULL;
}

static int set_if_diff(char **dst, const char *v, int *changed) {
  if (streq0(*dst, v) && (*dst != NULL) == (v != NULL)) return 0;
  char *n = ic_api_strdup(v);
  if (v && !n) return IC_ENOMEM;
  free(*dst);
  *dst = n;
  *changed = 1;
  return 0;
}

int ic_api_conditions_set(ic_api_conditions_t *c, const char *type, const char *status, const char *reason,
                          const char *message, bool has_og, int64_t og, const char *now) {
  ic_api_condition_t *cd = (ic_api_condition_t *)ic_api_conditions_find(c, type);
  int changed = 0;
  c->present = true;
  if (!cd) {
    ic_api_condition_t *p = realloc(c->items, (c->len + 1) * sizeof *p);
    if (!p) return IC_ENOMEM;
    c->items = p;
    cd = &c->items[c->len++];
    memset(cd, 0, sizeof *cd);
    cd->type = strdup(type);
    if (!cd->type) return IC_ENOMEM;
    changed = 1;
  }
  if (!streq0(cd->status, status)) {
    if (set_if_diff(&cd->status, status, &changed) || set_if_diff(&cd->last_transition_time, now, &changed))
      return IC_ENOMEM;
  } else if (!cd->last_transition_time) {
    if (set_if_diff(&cd->last_transition_time, now, &changed)) return IC_ENOMEM;
  }
  if (set_if_diff(&cd->reason, reason, &changed) || set_if_diff(&cd->message, message ? message : "", &changed))
    return IC_ENOMEM;
  if (cd->has_observed_generation != has_og || (has_og && cd->observed_generation != og)) {
    cd->has_observed_generation = has_og;
    cd->observed_generation = og;
    changed = 1;
  }
  return changed;
}

int ic_api_conditions_remove(ic_api_conditions_t *c, const char *type) {
  for (size_t i = 0; i < c->len; i++)
    if (c->items[i].type && strcmp(c->items[i].type, type) == 0) {
      free_condition(&c->items[i]);
      memmove(&c->items[i], &c->items[i + 1], (c->len - i - 1) * sizeof *c->items);
      c->len--;
      return 1;
    }
  return 0;
}

/* ---- encode helpers --------------------------------------------------------------------------- */

int wr_str(json_t *o, const char *k, const char *s) {
  if (!s) return json_object_del(o, k), 0;
  return json_object_set_new(o, k, json_string(s)) ? -1 : 0;
}
int wr_int(json_t *o, const char *k, bool has, int64_t v) {
  if (!has) return json_object_del(o, k), 0;
  return json_object_set_new(o, k, json_integer(v)) ? -1 : 0;
}
int wr_bool(json_t *o, const char *k, bool has, bool v) {
  if (!has) return json_object_del(o, k), 0;
  return json_object_set_new(o, k, json_boolean(v)) ? -1 : 0;
}
int wr_json(json_t *o, const char *k, const json_t *v) {
  if (!v) return json_object_del(o, k), 0;
  return json_object_set_new(o, k, json_deep_copy(v)) ? -1 : 0;
}
json_t *wr_child(json_t *o, const char *k, bool present_) {
  if (!present_) {
    json_object_del(o, k);
    return NULL;
  }
  json_t *v = json_object_get(o, k);
  if (json_is_object(v)) return v;
  v = json_object();
  if (!v || json_object_set_new(o, k, v)) return NULL;
  return v;
}
json_t *wr_begin(const json_t *raw, const char *kind) {
  json_t *o = json_is_object(raw) ? json_deep_copy(raw) : json_object();
  if (!o) return NULL;
  json_object_set_new(o, "apiVersion", json_string(IC_API_GROUP_VERSION));
  json_object_set_new(o, "kind", json_string(kind));
  return o;
}
const json_t *find_item(const json_t *arr, const char *key, const char *val) {
  size_t i;
  const json_t *it;
  if (!val) return NULL;
  json_array_foreach(arr, i, it) {
    const char *s = json_string_value(json_object_get(it, key));
    if (s && strcmp(s, val) == 0) return it;
  }
  return NULL;
}

/* ---- value grammars -------------------------------------------------------------------------- */

int ic_api_parse_duration(const char *s, int64_t *ns) {
  if (!s || !*s) return IC_EINVAL;
  const char *p = s;
  int neg = 0;
  if (*p == '-' || *p == '+') neg = (*p++ == '-');
  if (strcmp(p, "0") == 0) return *ns = 0, 0;
  if (!*p) return IC_EINVAL;
  long double total = 0;
  while (*p) {
    if (!(isdigit((unsigned char)*p) || *p == '.')) return IC_EINVAL;
    const char *start = p;
    long double v = 0, scale = 1;
    int digits = 0, frac = 0;
    while (isdigit((unsigned char)*p)) v = v * 10 + (*p++ - '0'), digits++;
    if (*p == '.') {
      p++;
      while (isdigit((unsigned char)*p)) scale /= 10, v += (*p++ - '0') * scale, frac++;
    }
    if (!digits && !frac) return IC_EINVAL;
    (void)start;
    long double unit;
    if (strncmp(p, "ns", 2) == 0) unit = 1, p += 2;
    else if (strncmp(p, "us", 2) == 0) unit = 1e3, p += 2;
    else if (strncmp(p, "\xc2\xb5s", 3) == 0 || strncmp(p, "\xce\xbcs", 3) == 0) unit = 1e3, p += 3;
    else if (strncmp(p, "ms", 2) == 0) unit = 1e6, p += 2;
    else if (*p == 's') unit = 1e9, p++;
    else if (*p == 'm') unit = 60e9, p++;
    else if (*p == 'h') unit = 3600e9, p++;
    else return IC_EINVAL;
    total += v * unit;
    if (total > 9.2e18L) return IC_ERANGE;
  }
  *ns = (int64_t)(neg ? -total : total);
  return 0;
}

int ic_api_parse_quantity_str(const char *s, int64_t *milli) {
  if (!s || !*s) return IC_EINVAL;
  const char *p = s;
  int neg = 0;
  if (*p == '+' || *p == '-') neg = (*p++ == '-');
  __int128 mant = 0;
  int digits = 0, frac = 0;
  while (isdigit((unsigned char)*p)) {
    if (digits < 36) mant = mant * 10 + (*p - '0');
    else return IC_ERANGE;
    digits++, p++;
  }
  if (*p == '.') {
    p++;
    while (isdigit((unsigned char)*p)) {
      if (digits + frac < 36) mant = mant * 10 + (*p - '0'), frac++;
      else return IC_ERANGE;
      p++;
    }
    if (!digits && !frac) return IC_EINVAL;
  } else if (!digits) {
    return IC_EINVAL;
  }
  int pow2 = 0, pow10 = 0;
  if (*p) {
    static const char bin[] = "KMGTPE";
    if (p[1] == 'i' && p[2] == 0 && strchr(bin, p[0]) && p[0]) {
      pow2 = 10 * (int)(strchr(bin, p[0]) - bin + 1);
    } else if (p[1] == 0 && strchr("numkMGTPE", p[0])) {
      switch (p[0]) {
        case 'n': pow10 = -9; break;
        case 'u': pow10 = -6; break;
        case 'm': pow10 = -3; break;
        case 'k': pow10 = 3; break;
        case 'M': pow10 = 6; break;
        case 'G': pow10 = 9; break;
        case 'T': pow10 = 12; break;
        case 'P': pow10 = 15; break;
        case 'E': pow10 = 18; break;
      }
    } else if (p[0] == 'e' || p[0] == 'E') {
      p++;
      int eneg = 0, e = 0, ed = 0;
      if (*p == '+' || *p == '-') eneg = (*p++ == '-');
      while (isdigit((unsigned char)*p)) {
        if (e < 1000) e = e * 10 + (*p - '0');
        ed++, p++;
      }
      if (!ed || *p) return IC_EINVAL;
      pow10 = eneg ? -e : e;
    } else {
      return IC_EINVAL;
    }
  }
  /* milli = mant * 2^pow2 * 10^(pow10 + 3 - frac), rounded up like resource.Quantity.MilliValue */
  int e10 = pow10 + 3 - frac;
  const __int128 lim = (__int128)INT64_MAX;
  __int128 v = mant;
  for (int i = 0; i < pow2; i++) {
    v *= 2;
    if (v > lim * 1000000000000000000LL) return IC_ERANGE;
  }
  if (e10 >= 0) {
    for (int i = 0; i < e10; i++) {
      v *= 10;
      if (v > lim) return IC_ERANGE;
    }
  } else {
    for (int i = 0; i < -e10 && v; i++) {
      __int128 q = v / 10;
      if (v % 10) q++;
      v = q;
      if (i > 60) break;
    }
  }
  if (v > lim) return IC_ERANGE;
  *milli = neg ? -(int64_t)v : (int64_t)v;
  return 0;
}

int ic_api_parse_quantity(const json_t *q, int64_t *milli) {
  if (json_is_integer(q)) {
    json_int_t v = json_integer_value(q);
    if (v > INT64_MAX / 1000 || v < INT64_MIN / 1000) return IC_ERANGE;
    *milli = v * 1000;
    return 0;
  }
  if (json_is_string(q)) return ic_api_parse_quantity_str(json_string_value(q), milli);
  return IC_EINVAL;
}

static bool alnum_lower(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'); }

bool ic_api_is_dns1123_label(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n < 1 || n > 63 || !alnum_lower(s[0]) || !alnum_lower(s[n - 1])) return false;
  for (size_t i = 0; i < n; i++)
    if (!(alnum_lower(s[i]) || s[i] == '-')) return false;
  return true;
}

bool ic_api_is_dns1123_subdomain(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n < 1 || n > 253) return false;
  char buf[254];
  memcpy(buf, s, n + 1);
  char *save = NULL;
  if (buf[0] == '.' || buf[n - 1] == '.' || strstr(buf, "..")) return false;
  for (char *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save)) {
    size_t m = strlen(t);
    if (!alnum_lower(t[0]) || !alnum_lower(t[m - 1])) return false;
    for (size_t i = 0; i < m; i++)
      if (!(alnum_lower(t[i]) || t[i] == '-')) return false;
  }
  return true;
}

static bool name_part_ok(const char *s, size_t n) {
  if (n < 1 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1])) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!(isalnum(ch) || ch == '-' || ch == '_' || ch == '.')) return false;
  }
  return true;
}

bool ic_api_is_label_value(const char *s) {
  if (!s) return false;
  size_t n = strlen(s);
  return n == 0 || name_part_ok(s, n);
}

bool ic_api_is_qualified_name(const char *s) {
  if (!s || !*s) return false;
  const char *slash = strchr(s, '/');
  if (!slash) return name_part_ok(s, strlen(s));
  if (strchr(slash + 1, '/')) return false;
  size_t pn = (size_t)(slash - s);
  if (pn == 0 || pn > 253) return false;
  char pre[254];
  memcpy(pre, s, pn);
  pre[pn] = 0;
  return ic_api_is_dns1123_subdomain(pre) && name_part_ok(slash + 1, strlen(slash + 1));
}

bool ic_api_is_env_var_name(const char *s) {
  if (!s || !*s) return false;
  if (!(isalpha((unsigned char)s[0]) || s[0] == '-' || s[0] == '.' || s[0] == '_')) return false;
  for (const char *p = s; *p; p++)
    if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_')) return false;
  return true;
}

bool ic_api_is_config_map_key(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n < 1 || n > 253 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strncmp(s, "..", 2) == 0) return false;
  for (size_t i = 0; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '.' || s[i] == '_')) return false;
  return true;
}

const char *ic_api_check_endpoint_shape(const char *ep) {
  if (!ep) return "endpoint is empty; use bare host:port";
  while (isspace((unsigned char)*ep)) ep++;
  size_t n = strlen(ep);
  while (n && isspace((unsigned char)ep[n - 1])) n--;
  if (!n) return "endpoint is empty; use bare host:port";
  char buf[1024];
  if (n >= sizeof buf) return "endpoint is too long; use bare host:port";
  memcpy(buf, ep, n);
  buf[n] = 0;
  if (strstr(buf, "://")) return "endpoint must not contain a URL scheme; use bare host:port";
  for (size_t i = 0; i < n; i++)
    if (isspace((unsigned char)buf[i]) || iscntrl((unsigned char)buf[i]) || buf[i] == 0x7f)
      return "endpoint must not contain whitespace or control characters; use bare host:port";
  const char *host_end, *port;
  if (buf[0] == '[') {
    char *rb = strchr(buf, ']');
    if (!rb || rb[1] != ':') return "endpoint must be host:port with a bracketed IPv6 host; use bare host:port";
    host_end = rb;
    port = rb + 2;
    if (rb == buf + 1) return "endpoint host is empty; use bare host:port";
  } else {
    char *colon = strrchr(buf, ':');
    if (!colon) return "endpoint is missing a port; use bare host:port";
    if (memchr(buf, ':', (size_t)(colon - buf))) return "IPv6 endpoint hosts must be bracketed; use bare host:port";
    host_end = colon;
    port = colon + 1;
    if (colon == buf) return "endpoint host is empty; use bare host:port";
  }
  (void)host_end;
  if (!*port) return "endpoint port is empty; use bare host:port";
  long v = 0;
  for (const char *p = port; *p; p++) {
    if (!isdigit((unsigned char)*p)) return "endpoint port must be an integer in 1..65535; use bare host:port";
    v = v * 10 + (*p - '0');
    if (v > 65535) return "endpoint port must be an integer in 1..65535; use bare host:port";
  }
  if (v < 1) return "endpoint port must be an integer in 1..65535; use bare host:port";
  return NULL;
}
