/* ic-api-check: validates inferencecache.io manifests (JSON object/array/List, or YAML documents) with
 * lib/api's schema checks and lib/admission's CREATE rules; prints one JSON result per object.
 * Exit 0 = all valid, 1 = some object invalid, 2 = unreadable input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/admission.h"
#include "ic/api.h"
#include "ic/cli.h"
#include "ic/err.h"
#include "ic/version.h"
#include "yaml_json.h"

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

static int check(const json_t *obj, json_t *out) {
  ic_api_errors_t schema = IC_API_ERRORS_INIT, rules = IC_API_ERRORS_INIT;
  if (ic_api_validate_schema(obj, &schema) == IC_EINVAL)
    ic_api_errors_add(&schema, IC_API_ERR_TYPE, "<root>", obj, NULL, "%s", "must be a JSON object");
  ic_api_kind_t k = ic_api_kind_of(obj);
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
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  json_t *r = json_pack("{s:s,s:s,s:o,s:o}", "kind", ic_api_kind_name(k), "name", name ? name : "", "schema",
                        errors_json(&schema), "rules", errors_json(&rules));
  int bad = schema.len || rules.len;
  json_object_set_new(r, "valid", json_boolean(!bad));
  json_array_append_new(out, r);
  ic_api_errors_free(&schema);
  ic_api_errors_free(&rules);
  return bad;
}

static char *slurp(FILE *f, size_t *n) {
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (size_t r; buf && (r = fread(buf + len, 1, cap - len - 1, f)) > 0;) {
    len += r;
    if (cap - len < 2) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb) free(buf);
      buf = nb;
    }
  }
  if (buf) buf[len] = 0;
  *n = len;
  return buf;
}

/* JSON (an object, an array of objects, or a List) or YAML (one or more documents). */
static json_t *load(const char *path, FILE *f) {
  size_t n = 0;
  char *text = slurp(f, &n);
  if (!text) return NULL;
  json_error_t je;
  json_t *j = json_loadb(text, n, 0, &je);
  if (!j) {
    char err[256] = "";
    json_t *docs = NULL;
    if (yaml_to_json_docs(text, n, &docs, err, sizeof err) != 0)
      fprintf(stderr, "ic-api-check: %s: not JSON (%s, line %d) nor YAML (%s)\n", path, je.text, je.line, err);
    j = docs;
  }
  free(text);
  return j;
}

int main(int argc, char **argv) {
  static const ic_cli_t cli = {"ic-api-check",
                               "decodes Kubernetes manifests (JSON or multi-document YAML) strictly like the API "
                               "server:\nprints one result per object, exit 1 when any is rejected, 2 when a file "
                               "cannot be read",
                               "[FILE.json|FILE.yaml|- ...]   (stdin when omitted)", NULL, 0};
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
    return ic_cli_fail(&cli, "flag provided but not defined: %s", argv[first]);
  }
  argv += first - 1;
  argc -= first - 1;
  json_t *out = json_array();
  int bad = 0;
  for (int a = 1; a < argc || a == 1; a++) {
    const char *path = argc > 1 ? argv[a] : "-";
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
      fprintf(stderr, "ic-api-check: cannot open %s\n", path);
      json_decref(out);
      return 2;
    }
    json_t *in = load(path, f);
    if (f != stdin) fclose(f);
    if (!in) {
      json_decref(out);
      return 2;
    }
    json_t *items = json_is_array(in) ? in : json_object_get(in, "items");
    if (json_is_array(items)) {
      size_t i;
      json_t *it;
      json_array_foreach(items, i, it) bad |= check(it, out);
    } else {
      bad |= check(in, out);
    }
    json_decref(in);
    if (argc <= 1) break;
  }
  char *s = json_dumps(out, JSON_INDENT(2));
  puts(s ? s : "[]");
  free(s);
  json_decref(out);
  return bad ? 1 : 0;
}
