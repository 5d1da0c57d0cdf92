/* YAML -> JSON for ic-api-check (libyaml event parser): every document of a stream becomes one
 * JSON value; plain scalars are typed with the YAML 1.2 core schema, quoted ones stay strings. */
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "yaml_json.h"

typedef struct anchor {
  char *name;
  json_t *value;
} anchor_t;

typedef struct frame {
  json_t *node;
  char *key; /* pending mapping key (owned) */
  char *anchor;
} frame_t;

static bool full_match(const char *re, const char *s) {
  regex_t r;
  if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB)) return false;
  bool ok = regexec(&r, s, 0, NULL, 0) == 0;
  regfree(&r);
  return ok;
}

static json_t *scalar(const yaml_event_t *ev) {
  const char *v = (const char *)ev->data.scalar.value;
  const char *tag = (const char *)ev->data.scalar.tag;
  if (tag && strcmp(tag, YAML_STR_TAG) == 0) return json_string(v);
  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return json_string(v);
  if (!*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL")) return json_null();
  if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE")) return json_true();
  if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE")) return json_false();
  if (full_match("^[-+]?[0-9]+$", v)) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*end) return json_integer(x);
  }
  if (full_match("^0x[0-9a-fA-F]+$", v)) return json_integer(strtoll(v + 2, NULL, 16));
  if (full_match("^0o[0-7]+$", v)) return json_integer(strtoll(v + 2, NULL, 8));
  if (full_match("^[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?$", v)) return json_real(strtod(v, NULL));
  return json_string(v);
}

/* Attaches `v` (stolen) to the frame on top of the stack, or makes it the document root. */
static int attach(frame_t *st, int depth, json_t **root, json_t *v, char *err, size_t errlen, size_t line) {
  if (depth == 0) {
    json_decref(*root);
    *root = v;
    return 0;
  }
  frame_t *f = &st[depth - 1];
  if (json_is_array(f->node)) return json_array_append_new(f->node, v);
  if (!f->key) { /* mapping key: keys must be scalars, rendered as strings */
    if (!json_is_string(v)) {
      char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
      json_decref(v);
      f->key = s;
    } else {
      f->key = strdup(json_string_value(v));
      json_decref(v);
    }
    return f->key ? 0 : -1;
  }
  if (json_object_get(f->node, f->key)) { /* strict decoding rejects a repeated key */
    snprintf(err, errlen, "YAML line %zu: duplicate field \"%s\"", line, f->key);
    json_decref(v);
    free(f->key);
    f->key = NULL;
    return -1;
  }
  int rc = json_object_set_new(f->node, f->key, v);
  free(f->key);
  f->key = NULL;
  return rc;
}

int yaml_to_json_docs(const char *text, size_t n, json_t **out, char *err, size_t errlen) {
  yaml_parser_t p;
  yaml_event_t ev;
  if (!yaml_parser_initialize(&p)) return -1;
  yaml_parser_set_input_string(&p, (const unsigned char *)text, n);
  json_t *docs = json_array(), *root = NULL;
  frame_t st[128];
  int depth = 0, rc = 0;
  anchor_t anchors[64];
  int nanchors = 0;
  for (bool done = false; !done;) {
    if (!yaml_parser_parse(&p, &ev)) {
      snprintf(err, errlen, "YAML error at line %zu: %s", p.problem_mark.line + 1, p.problem ? p.problem : "?");
      rc = -1;
      break;
    }
    json_t *v = NULL;
    const char *anchor = NULL;
    switch (ev.type) {
      case YAML_STREAM_END_EVENT: done = true; break;
      case YAML_DOCUMENT_START_EVENT: root = NULL; break;
      case YAML_DOCUMENT_END_EVENT:
        if (root) json_array_append_new(docs, root);
        root = NULL;
        break;
      case YAML_SCALAR_EVENT:
        v = scalar(&ev);
        anchor = (const char *)ev.data.scalar.anchor;
        break;
      case YAML_ALIAS_EVENT:
        for (int i = 0; i < nanchors; i++)
          if (strcmp(anchors[i].name, (const char *)ev.data.alias.anchor) == 0) v = json_deep_copy(anchors[i].value);
        if (!v) {
          snprintf(err, errlen, "unknown YAML alias *%s", ev.data.alias.anchor);
          rc = -1;
          done = true;
        }
        break;
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT:
        if (depth == 128) {
          snprintf(err, errlen, "YAML nesting too deep");
          rc = -1;
          done = true;
          break;
        }
        st[depth].node = ev.type == YAML_SEQUENCE_START_EVENT ? json_array() : json_object();
        st[depth].key = NULL;
        anchor = ev.type == YAML_SEQUENCE_START_EVENT ? (const char *)ev.data.sequence_start.anchor
                                                      : (const char *)ev.data.mapping_start.anchor;
        st[depth].anchor = anchor ? strdup(anchor) : NULL;
        depth++;
        anchor = NULL;
        break;
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT: {
        frame_t f = st[--depth];
        free(f.key);
        v = f.node;
        if (f.anchor && nanchors < 64) {
          anchors[nanchors].name = f.anchor;
          anchors[nanchors++].value = json_incref(v);
        } else {
          free(f.anchor);
        }
        break;
      }
      default: break;
    }
    if (v && anchor && nanchors < 64) {
      anchors[nanchors].name = strdup(anchor);
      anchors[nanchors++].value = json_incref(v);
    }
    if (v && attach(st, depth, &root, v, err, errlen, ev.start_mark.line + 1) != 0) {
      rc = -1;
      done = true;
    }
    yaml_event_delete(&ev);
  }
  while (depth > 0) {
    frame_t f = st[--depth];
    free(f.key);
    free(f.anchor);
    json_decref(f.node);
  }
  json_decref(root);
  for (int i = 0; i < nanchors; i++) free(anchors[i].name), json_decref(anchors[i].value);
  yaml_parser_delete(&p);
  if (rc != 0) {
    json_decref(docs);
    return -1;
  }
  *out = docs;
  return 0;
}
