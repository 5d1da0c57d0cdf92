/* ic-api-check: validates Kubernetes manifests (JSON object/array/List, or YAML documents): our kinds
 * with lib/api's schema checks and lib/admission's CREATE rules, every kind with strict field
 * validation (unknown fields, like `kubectl apply`); prints one JSON result per object.
 * Exit 0 = all valid, 1 = some object invalid, 2 = unreadable input. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/admission.h"
#include "ic/api.h"
#include "ic/buf.h"
#include "ic/cli.h"
#include "ic/err.h"
#include "ic/version.h"
#include "yaml_json.h"

/* Manifests beyond this are not something to check in one go. */
#define MAX_INPUT_BYTES (256u << 20)

static json_t *errors_json(const ic_api_errors_t *e) {
  json_t *a = json_array();
  for (size_t i = 0; i < e->len; i++) {
    char *m = ic_api_field_error_string(&e->items[i]);
    json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "field", e->items[i].field, "reason",
                                       ic_api_err_reason(e->items[i].type), "message", m ? m : ""));
    free(m);
  }
  return a;
}

static enum { VALIDATE_STRICT, VALIDATE_WARN, VALIDATE_IGNORE } g_validate = VALIDATE_STRICT;

static void add_strict(void *ud, const char *path, const char *why) {
  json_array_append_new(ud, json_pack("{s:s,s:s}", "field", path, "message", why));
}

/* Our kinds: lib/api's schema checks and admission rules. Every kind: strict field validation
 * against the CRD schema for its apiVersion/kind when one is known (embedded or in the input). */
static int check(const json_t *obj, json_t *out, const json_t *schemas) {
  ic_api_errors_t schema = IC_API_ERRORS_INIT, rules = IC_API_ERRORS_INIT;
  ic_api_kind_t k = ic_api_kind_of(obj);
  if (k != IC_API_KIND_UNKNOWN && ic_api_validate_schema(obj, &schema) == IC_EINVAL)
    ic_api_errors_add(&schema, IC_API_ERR_TYPE, "<root>", obj, NULL, "%s", "must be a JSON object");
  if (k == IC_API_KIND_CACHEBACKEND) {
    ic_api_cachebackend_t cb = {0};
    if (ic_api_cachebackend_decode(obj, &cb, NULL) == 0) ic_admission_cachebackend_validate(&cb, NULL, NULL, &rules);
    ic_api_cachebackend_free(&cb);
  } else if (k == IC_API_KIND_CACHEPOLICY) {
    ic_api_cachepolicy_t p = {0};
    if (ic_api_cachepolicy_decode(obj, &p, NULL) == 0) ic_admission_cachepolicy_rules(&p, &rules);
    ic_api_cachepolicy_free(&p);
  } else if (k == IC_API_KIND_CACHETENANT) {
    ic_api_cachetenant_t t = {0};
    if (ic_api_cachetenant_decode(obj, &t, NULL) == 0) ic_admission_cachetenant_rules(&t, &rules);
    ic_api_cachetenant_free(&t);
  }
  const char *av = json_string_value(json_object_get(obj, "apiVersion"));
  const char *kind = json_string_value(json_object_get(obj, "kind"));
  char key[512];
  snprintf(key, sizeof key, "%s/%s", av ? av : "", kind ? kind : "");
  json_t *strict = json_array();
  if (g_validate != VALIDATE_IGNORE) ic_api_strict_fields(obj, json_object_get(schemas, key), add_strict, strict);
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  json_t *r = json_pack("{s:s,s:s,s:o,s:o,s:o}", "kind", kind ? kind : "", "name", name ? name : "", "schema",
                        errors_json(&schema), "rules", errors_json(&rules), "fields", strict);
  int bad = schema.len || rules.len || (g_validate == VALIDATE_STRICT && json_array_size(strict));
  json_object_set_new(r, "valid", json_boolean(!bad));
  json_array_append_new(out, r);
  ic_api_errors_free(&schema);
  ic_api_errors_free(&rules);
  return bad;
}

/* "apiVersion/kind" -> openAPIV3Schema for every CRD among `docs` (added to `schemas`). */
static void add_crd_schemas(json_t *schemas, const json_t *docs) {
  size_t i;
  json_t *d;
  json_array_foreach((json_t *)docs, i, d) {
    const char *kind = json_string_value(json_object_get(d, "kind"));
    if (!kind || strcmp(kind, "CustomResourceDefinition") != 0) continue;
    const char *group, *k, *version;
    const json_t *sc = ic_api_crd_schema(d, &group, &k, &version);
    if (!sc || !group || !k || !version) continue;
    char key[512];
    snprintf(key, sizeof key, "%s/%s/%s", group, version, k);
    json_object_set(schemas, key, (json_t *)sc);
  }
}

static json_t *load(const char *path, const char *text, size_t n) {
  json_error_t je;
  json_t *j = json_loadb(text, n, 0, &je);
  if (!j) {
    char err[256] = "";
    json_t *docs = NULL;
    if (yaml_to_json_docs(text, n, &docs, err, sizeof err) != 0)
      fprintf(stderr, "ic-api-check: %s: not JSON (%s, line %d) nor YAML (%s)\n", path, je.text, je.line, err);
    j = docs;
  }
  return j;
}

int main(int argc, char **argv) {
  static const ic_cli_flag_t flags[] = {
      {"validate", "string", "strict",
       "unknown fields: strict (rejected, as kubectl apply does by default), warn (listed, still valid)\n"
       "or ignore (the API server's pruning)"},
  };
  static const ic_cli_t cli = {"ic-api-check",
                               "decodes Kubernetes manifests (JSON or multi-document YAML) strictly like the API "
                               "server:\nprints one result per object, exit 1 when any is rejected, 2 when a file "
                               "cannot be read",
                               "[FILE.json|FILE.yaml|- ...]   (stdin when omitted)", flags, 1};
  int first = 1;
  for (; first < argc && argv[first][0] == '-' && argv[first][1]; first++) {
    const char *a = argv[first] + (argv[first][1] == '-' ? 2 : 1);
    if (!*a) { first++; break; } /* "--" ends the flags */
    if (!strcmp(a, "help") || !strcmp(a, "h")) {
      ic_cli_usage(&cli, stdout);
      return 0;
    }
    if (!strcmp(a, "version")) {
      ic_version_print(stdout, cli.program);
      return 0;
    }
    if (!strncmp(a, "validate=", 9) || !strcmp(a, "validate")) {
      const char *v = a[8] == '=' ? a + 9 : (first + 1 < argc ? argv[++first] : "");
      if (!strcmp(v, "strict")) g_validate = VALIDATE_STRICT;
      else if (!strcmp(v, "warn")) g_validate = VALIDATE_WARN;
      else if (!strcmp(v, "ignore")) g_validate = VALIDATE_IGNORE;
      else return ic_cli_fail(&cli, "invalid value \"%s\" for flag -validate (want strict|warn|ignore)", v);
      continue;
    }
    return ic_cli_fail(&cli, "flag provided but not defined: %s", argv[first]);
  }
  argv += first - 1;
  argc -= first - 1;
  /* Everything is read first, so CRDs in the input serve objects before them too. */
  json_t *schemas = json_object(), *objs = json_array();
  json_t *embedded = NULL;
  char err[256] = "";
  extern const unsigned char ic_crds_yaml[];
  extern const size_t ic_crds_yaml_len;
  if (yaml_to_json_docs((const char *)ic_crds_yaml, ic_crds_yaml_len, &embedded, err, sizeof err) == 0) {
    add_crd_schemas(schemas, embedded);
    json_decref(embedded);
  }
  for (int a = 1; a < argc || a == 1; a++) {
    const char *path = argc > 1 ? argv[a] : "-";
    ic_buf_t text = IC_BUF_INIT;
    if (ic_buf_read_file(strcmp(path, "-") ? path : "/dev/stdin", MAX_INPUT_BYTES, &text, NULL)) {
      fprintf(stderr, "ic-api-check: cannot open %s: %s\n", path, strerror(errno));
      json_decref(objs);
      json_decref(schemas);
      return 2;
    }
    json_t *in = load(path, text.data, text.len);
    ic_buf_free(&text);
    if (!in) {
      json_decref(objs);
      json_decref(schemas);
      return 2;
    }
    json_t *items = json_is_array(in) ? in : json_object_get(in, "items");
    if (json_is_array(items))
      json_array_extend(objs, items);
    else
      json_array_append(objs, in);
    json_decref(in);
    if (argc <= 1) break;
  }
  add_crd_schemas(schemas, objs);
  json_t *out = json_array();
  int bad = 0;
  size_t i;
  json_t *it;
  json_array_foreach(objs, i, it) bad |= check(it, out, schemas);
  json_decref(objs);
  json_decref(schemas);
  char *s = json_dumps(out, JSON_INDENT(2));
  puts(s ? s : "[]");
  free(s);
  json_decref(out);
  return bad ? 1 : 0;
}
