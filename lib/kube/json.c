/* lib/kube JSON helpers: dotted lookups, RFC 7386 merge-patch generation, metav1.Condition
 * semantics, RFC 3339 times, YAML -> JSON (libyaml) for kubeconfig files. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "ic/kube.h"

json_t *ic_kube_jget(json_t *obj, const char *dotted) {
  if (!obj || !dotted) return NULL;
  char key[256];
  const char *p = dotted;
  json_t *cur = obj;
  while (cur && *p) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (n >= sizeof key) return NULL;
    memcpy(key, p, n);
    key[n] = 0;
    if (!json_is_object(cur)) return NULL;
    cur = json_object_get(cur, key);
    p = dot ? dot + 1 : p + n;
  }
  return cur;
}

const char *ic_kube_jstr(json_t *obj, const char *dotted) {
  json_t *v = ic_kube_jget(obj, dotted);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

json_t *ic_kube_merge_diff(json_t *from, json_t *to) {
  json_t *patch = json_object();
  if (!patch) return NULL;
  const char *key;
  json_t *v;
  json_object_foreach(from, key, v) {
    if (!json_object_get(to, key)) json_object_set_new(patch, key, json_null());
  }
  json_object_foreach(to, key, v) {
    json_t *old = json_object_get(from, key);
    if (old && json_equal(old, v)) continue;
    if (old && json_is_object(old) && json_is_object(v)) {
      json_t *sub = ic_kube_merge_diff(old, v);
      if (sub && json_object_size(sub) > 0)
        json_object_set_new(patch, key, sub);
      else
        json_decref(sub);
    } else {
      json_object_set(patch, key, v);
    }
  }
  return patch;
}

void ic_kube_format_time(int64_t unix_us, bool micro, char out[40]) {
  time_t s = (time_t)(unix_us / 1000000);
  struct tm tm;
  gmtime_r(&s, &tm);
  int year = tm.tm_year + 1900;
  if (year < 0 || year > 9999) year = 1; /* keeps the output within 40 bytes */
  tm.tm_year = year - 1900;
  int us = (int)(unix_us % 1000000);
  if (us < 0) us = 0;
  if (micro)
    snprintf(out, 40, "%04u-%02u-%02uT%02u:%02u:%02u.%06uZ", (unsigned)year % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
             (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
             (unsigned)tm.tm_sec % 100u, (unsigned)us % 1000000u);
  else
    snprintf(out, 40, "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)year % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
             (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
             (unsigned)tm.tm_sec % 100u);
}

int ic_kube_parse_time(const char *s, int64_t *unix_us) {
  if (!s) return IC_EINVAL;
  int y, mo, d, h, mi, sec, n = 0;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
    return IC_EINVAL;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return IC_EINVAL;
  const char *p = s + 19;
  int64_t frac = 0;
  if (*p == '.') {
    p++;
    int digits = 0;
    while (isdigit((unsigned char)*p)) {
      if (digits < 6) frac = frac * 10 + (*p - '0');
      digits++;
      p++;
    }
    if (digits == 0) return IC_EINVAL;
    for (int i = digits; i < 6; i++) frac *= 10;
  }
  int64_t off = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int oh, om, m = 0;
    if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5) return IC_EINVAL;
    off = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return IC_EINVAL;
  }
  if (*p) return IC_EINVAL;
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  int64_t t = (int64_t)timegm(&tm);
  *unix_us = (t - off) * 1000000 + frac;
  return 0;
}

json_t *ic_kube_condition_get(json_t *status, const char *type) {
  json_t *arr = json_object_get(status, "conditions");
  size_t i;
  json_t *c;
  json_array_foreach(arr, i, c) {
    const char *t = ic_kube_jstr(c, "type");
    if (t && strcmp(t, type) == 0) return c;
  }
  return NULL;
}

static bool set_str(json_t *o, const char *k, const char *v) {
  const char *cur = ic_kube_jstr(o, k);
  if (cur && strcmp(cur, v) == 0) return false;
  json_object_set_new(o, k, json_string(v));
  return true;
}

bool ic_kube_condition_set(json_t *status, const char *type, const char *cstatus,
                           const char *reason, const char *message, int64_t observed_generation,
                           const char *now) {
  json_t *arr = json_object_get(status, "conditions");
  if (!json_is_array(arr)) {
    arr = json_array();
    json_object_set_new(status, "conditions", arr);
  }
  json_t *c = ic_kube_condition_get(status, type);
  bool changed = false;
  if (!c) {
    c = json_object();
    json_object_set_new(c, "type", json_string(type));
    json_object_set_new(c, "status", json_string(cstatus));
    json_object_set_new(c, "lastTransitionTime", json_string(now));
    json_array_append_new(arr, c);
    changed = true;
  } else if (set_str(c, "status", cstatus)) {
    json_object_set_new(c, "lastTransitionTime", json_string(now));
    changed = true;
  }
  changed |= set_str(c, "reason", reason);
  changed |= set_str(c, "message", message ? message : "");
  json_t *og = json_object_get(c, "observedGeneration");
  if (observed_generation > 0) {
    if (!json_is_integer(og) || json_integer_value(og) != observed_generation) {
      json_object_set_new(c, "observedGeneration", json_integer(observed_generation));
      changed = true;
    }
  } else if (og) {
    json_object_del(c, "observedGeneration");
    changed = true;
  }
  return changed;
}

bool ic_kube_condition_remove(json_t *status, const char *type) {
  json_t *arr = json_object_get(status, "conditions");
  size_t i;
  json_t *c;
  json_array_foreach(arr, i, c) {
    const char *t = ic_kube_jstr(c, "type");
    if (t && strcmp(t, type) == 0) {
      json_array_remove(arr, i);
      if (json_array_size(arr) == 0) json_object_del(status, "conditions");
      return true;
    }
  }
  return false;
}

bool ic_kube_is_controlled_by(json_t *obj, const char *uid) {
  if (!uid || !*uid) return false;
  json_t *refs = ic_kube_jget(obj, "metadata.ownerReferences");
  size_t i;
  json_t *r;
  json_array_foreach(refs, i, r) {
    if (!json_is_true(json_object_get(r, "controller"))) continue;
    const char *u = ic_kube_jstr(r, "uid");
    return u && strcmp(u, uid) == 0;
  }
  return false;
}

/* ---- YAML -> JSON ------------------------------------------------------------------------- */

static json_t *scalar_to_json(const yaml_event_t *ev) {
  const char *v = (const char *)ev->data.scalar.value;
  size_t n = ev->data.scalar.length;
  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return json_stringn(v, n);
  if (n == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0) return json_null();
  if (strcmp(v, "true") == 0) return json_true();
  if (strcmp(v, "false") == 0) return json_false();
  char *end;
  long long ll = strtoll(v, &end, 10);
  if (*end == 0 && end != v && (isdigit((unsigned char)v[0]) || v[0] == '-'))
    return json_integer(ll);
  double d = strtod(v, &end);
  if (*end == 0 && end != v && (isdigit((unsigned char)v[0]) || v[0] == '-' || v[0] == '.'))
    return json_real(d);
  return json_stringn(v, n);
}

/* Recursive descent over the libyaml event stream; depth-bounded. */
static int parse_node(yaml_parser_t *p, yaml_event_t *first, json_t **out, int depth) {
  if (depth > 64) return IC_ERANGE;
  switch (first->type) {
  case YAML_SCALAR_EVENT: *out = scalar_to_json(first); return *out ? 0 : IC_ENOMEM;
  case YAML_ALIAS_EVENT: *out = json_null(); return 0; /* anchors are not used by kubeconfigs */
  case YAML_SEQUENCE_START_EVENT: {
    json_t *arr = json_array();
    for (;;) {
      yaml_event_t ev;
      if (!yaml_parser_parse(p, &ev)) {
        json_decref(arr);
        return IC_EINVAL;
      }
      if (ev.type == YAML_SEQUENCE_END_EVENT) {
        yaml_event_delete(&ev);
        break;
      }
      json_t *item = NULL;
      int rc = parse_node(p, &ev, &item, depth + 1);
      yaml_event_delete(&ev);
      if (rc) {
        json_decref(arr);
        return rc;
      }
      json_array_append_new(arr, item);
    }
    *out = arr;
    return 0;
  }
  case YAML_MAPPING_START_EVENT: {
    json_t *obj = json_object();
    for (;;) {
      yaml_event_t kev;
      if (!yaml_parser_parse(p, &kev)) {
        json_decref(obj);
        return IC_EINVAL;
      }
      if (kev.type == YAML_MAPPING_END_EVENT) {
        yaml_event_delete(&kev);
        break;
      }
      if (kev.type != YAML_SCALAR_EVENT) {
        yaml_event_delete(&kev);
        json_decref(obj);
        return IC_EINVAL;
      }
      char *key = strndup((const char *)kev.data.scalar.value, kev.data.scalar.length);
      yaml_event_delete(&kev);
      yaml_event_t vev;
      if (!key || !yaml_parser_parse(p, &vev)) {
        free(key);
        json_decref(obj);
        return IC_EINVAL;
      }
      json_t *val = NULL;
      int rc = parse_node(p, &vev, &val, depth + 1);
      yaml_event_delete(&vev);
      if (rc) {
        free(key);
        json_decref(obj);
        return rc;
      }
      json_object_set_new(obj, key, val);
      free(key);
    }
    *out = obj;
    return 0;
  }
  default: return IC_EINVAL;
  }
}

int ic_kube_yaml_to_json(const char *text, size_t n, json_t **out) {
  *out = NULL;
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) return IC_ENOMEM;
  yaml_parser_set_input_string(&p, (const unsigned char *)text, n);
  int rc = IC_EINVAL;
  for (;;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) break;
    yaml_event_type_t t = ev.type;
    if (t == YAML_STREAM_END_EVENT) {
      yaml_event_delete(&ev);
      if (!*out) *out = json_null();
      rc = 0;
      break;
    }
    if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT ||
        t == YAML_MAPPING_START_EVENT || t == YAML_ALIAS_EVENT) {
      json_t *doc = NULL;
      rc = parse_node(&p, &ev, &doc, 0);
      yaml_event_delete(&ev);
      if (rc) break;
      if (*out) { /* first document wins */
        json_decref(doc);
      } else {
        *out = doc;
      }
      rc = IC_EINVAL;
      continue;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&p);
  if (rc) {
    json_decref(*out);
    *out = NULL;
  }
  return rc;
}
