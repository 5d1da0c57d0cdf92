/* PromptTemplate push (docs/chattemplate.md): every PromptTemplate -> the server's
 * POST /prompttemplates body (v1), then status.{observedGeneration,templateRevision} and a Ready
 * condition saying whether the body compiles (the controller checks it with lib/chattemplate). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "controller.h"
#include "ic/chattemplate.h"
#include "ic/err.h"
#include "ic/log.h"

const ic_kube_res_t ctl_res_prompttemplates = {"inferencecache.io", "v1alpha1", "prompttemplates",
                                               "PromptTemplate", true};

/* "<generation>-<16 hex>": the CR's generation, plus a digest of the spec so a template deleted
 * and recreated (generation restarts at 1) with another body never reuses a revision. */
void ctl_template_revision(json_t *obj, char out[64]) {
  json_t *gen = ic_kube_jget(obj, "metadata.generation");
  char *spec = json_dumps(json_object_get(obj, "spec"), JSON_COMPACT | JSON_SORT_KEYS);
  uint64_t h = XXH3_64bits(spec ? spec : "", spec ? strlen(spec) : 0);
  snprintf(out, 64, "%lld-%016llx", (long long)(json_is_integer(gen) ? json_integer_value(gen) : 0),
           (unsigned long long)h);
  free(spec);
}

char *ctl_prompt_templates_body(json_t *list) {
  json_t *items = json_object_get(list, "items"), *arr = json_array();
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    const char *ns = ic_kube_jstr(it, "metadata.namespace"),
               *name = ic_kube_jstr(it, "metadata.name");
    json_t *spec = json_object_get(it, "spec");
    if (!ns || !name || !json_is_string(json_object_get(spec, "body"))) continue;
    char rev[64];
    ctl_template_revision(it, rev);
    json_t *e = json_pack("{s:s,s:s,s:s,s:O}", "namespace", ns, "name", name, "revision", rev,
                          "body", json_object_get(spec, "body"));
    if (!e) continue;
    const char *model = ic_kube_jstr(spec, "modelID");
    if (model && *model) json_object_set_new(e, "modelID", json_string(model));
    json_t *slots = json_array(), *sl;
    size_t k;
    json_array_foreach(json_object_get(spec, "slots"), k, sl) {
      json_t *o = json_pack("{s:O,s:O,s:b}", "name", json_object_get(sl, "name"), "type",
                            json_object_get(sl, "type"), "required",
                            json_is_true(json_object_get(sl, "required")));
      if (o) json_array_append_new(slots, o);
    }
    json_object_set_new(e, "slots", slots);
    json_array_append_new(arr, e);
  }
  json_t *doc = json_pack("{s:i,s:o}", "version", 1, "templates", arr);
  char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  return body;
}

/* Writes status when revision, generation or validity changed. Returns 0 or the first error. */
static int write_statuses(ctl_t *c, json_t *list) {
  json_t *items = json_object_get(list, "items"), *it;
  size_t i;
  int first_err = 0;
  char now[40];
  ctl_now(now);
  json_array_foreach(items, i, it) {
    const char *ns = ic_kube_jstr(it, "metadata.namespace"),
               *name = ic_kube_jstr(it, "metadata.name");
    json_t *gen = ic_kube_jget(it, "metadata.generation");
    const char *body = ic_kube_jstr(it, "spec.body");
    if (!ns || !name || !body) continue;
    int64_t g = json_is_integer(gen) ? json_integer_value(gen) : 0;
    char rev[64], err[IC_CHATTEMPLATE_ERR_MAX];
    ctl_template_revision(it, rev);
    ic_chattemplate_t *t = NULL;
    int crc = ic_chattemplate_compile(body, strlen(body), &t, err);
    ic_chattemplate_free(t);
    json_t *before = json_object_get(it, "status");
    before = before ? json_deep_copy(before) : json_object();
    json_t *want = json_deep_copy(before);
    json_object_set_new(want, "observedGeneration", json_integer(g));
    json_object_set_new(want, "templateRevision", json_string(rev));
    if (crc == 0)
      ic_kube_condition_set(want, "Ready", "True", "Compiled",
                            "the body compiles; pushed to the server", g, now);
    else
      ic_kube_condition_set(want, "Ready", "False", "TemplateError", err, g, now);
    json_t *diff = ic_kube_merge_diff(before, want);
    if (json_object_size(diff) > 0) {
      json_t *patch = json_pack("{s:O}", "status", diff);
      ic_kube_status_t st;
      int prc = ic_kube_patch(c->kube, &ctl_res_prompttemplates, ns, name, "status",
                              IC_KUBE_PATCH_MERGE, patch, NULL, false, NULL, &st);
      json_decref(patch);
      if (prc != 0 && prc != IC_ENOTFOUND && !first_err) first_err = prc;
    }
    json_decref(diff);
    json_decref(before);
    json_decref(want);
  }
  return first_err;
}

int ctl_prompt_templates_load(ctl_t *c, json_t **list, char **body) {
  *list = NULL;
  *body = NULL;
  ic_kube_status_t st;
  int rc = ic_kube_list(c->kube, &ctl_res_prompttemplates, NULL, NULL, list, &st);
  if (rc == IC_ENOTFOUND) return 0; /* CRD not installed */
  if (rc != 0) return rc;
  *body = ctl_prompt_templates_body(*list);
  if (!*body) {
    json_decref(*list);
    *list = NULL;
    return IC_ENOMEM;
  }
  return 0;
}

int ctl_prompt_templates_write_status(ctl_t *c, json_t *list) { return write_statuses(c, list); }
