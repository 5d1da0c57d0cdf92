/* PromptTemplate store of lib/promptstore: decodes the controller's push, compiles every body
 * once, and swaps an immutable snapshot in; readers pin a snapshot with a reference count. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "internal.h"

static void entry_free(ps_entry *e) {
  free(e->ref);
  free(e->model);
  ic_chattemplate_free(e->tpl);
  for (size_t i = 0; i < e->nslots; i++)
    free(e->slots[i].name);
  free(e->slots);
  free(e->error);
}

void ps_snapshot_release(ps_snapshot *snap) {
  if (!snap || atomic_fetch_sub(&snap->refs, 1) != 1) return;
  for (size_t i = 0; i < snap->n; i++)
    entry_free(&snap->e[i]);
  free(snap->e);
  free(snap);
}

ps_snapshot *ps_snapshot_acquire(ic_promptstore_t *s) {
  pthread_mutex_lock(&s->mu);
  ps_snapshot *snap = s->cur;
  atomic_fetch_add(&snap->refs, 1);
  pthread_mutex_unlock(&s->mu);
  return snap;
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const ps_entry *)a)->ref, ((const ps_entry *)b)->ref);
}

const ps_entry *ps_find(const ps_snapshot *snap, const char *ref) {
  ps_entry key = {.ref = (char *)ref};
  return bsearch(&key, snap->e, snap->n, sizeof *snap->e, cmp_entry);
}

ic_promptstore_t *ic_promptstore_new(const ic_promptstore_config_t *cfg) {
  ic_promptstore_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->cur = calloc(1, sizeof *s->cur);
  if (!s->cur) {
    free(s);
    return NULL;
  }
  atomic_init(&s->cur->refs, 1);
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->cache_mu, NULL);
  if (cfg) s->cfg = *cfg;
  if (s->cfg.block_size <= 0) s->cfg.block_size = IC_FP_DEFAULT_BLOCK_SIZE;
  return s;
}

void ic_promptstore_free(ic_promptstore_t *s) {
  if (!s) return;
  ps_snapshot_release(s->cur);
  pthread_mutex_destroy(&s->mu);
  pthread_mutex_destroy(&s->cache_mu);
  free(s);
}

static void reject(json_t *rejected, const char *ref, const char *msg) {
  json_array_append_new(rejected, json_pack("{s:s,s:s}", "template", ref, "error", msg));
}

/* One push entry -> e (0), or a reason to skip it (message in msg). */
static int decode_entry(json_t *it, ps_entry *e, char *ref, size_t reflen, char *msg,
                        size_t msglen) {
  const char *ns = json_string_value(json_object_get(it, "namespace"));
  const char *name = json_string_value(json_object_get(it, "name"));
  snprintf(ref, reflen, "%s/%s", ns ? ns : "?", name ? name : "?");
  if (!json_is_object(it)) return snprintf(msg, msglen, "not an object"), IC_EINVAL;
  if (!ns || !*ns || !name || !*name || strchr(ns, '/') || strchr(name, '/'))
    return snprintf(msg, msglen, "namespace and name must be non-empty and contain no '/'"),
           IC_EINVAL;
  json_t *body = json_object_get(it, "body");
  if (!json_is_string(body) || !json_string_length(body))
    return snprintf(msg, msglen, "body must be a non-empty string"), IC_EINVAL;
  json_t *slots = json_object_get(it, "slots");
  if (slots && !json_is_array(slots) && !json_is_null(slots))
    return snprintf(msg, msglen, "slots must be an array"), IC_EINVAL;
  const char *rev = json_string_value(json_object_get(it, "revision"));
  const char *model = json_string_value(json_object_get(it, "modelID"));
  e->ref = strdup(ref);
  e->model = model && *model ? strdup(model) : NULL;
  snprintf(e->revision, sizeof e->revision, "%s", rev ? rev : "");
  size_t n = json_array_size(slots);
  e->slots = calloc(n ? n : 1, sizeof *e->slots);
  if (!e->ref || !e->slots || (model && *model && !e->model)) return IC_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    json_t *sl = json_array_get(slots, i);
    const char *sn = json_string_value(json_object_get(sl, "name"));
    const char *ty = json_string_value(json_object_get(sl, "type"));
    if (!sn || !*sn || !ty || (strcmp(ty, "Stable") && strcmp(ty, "Mutable"))) {
      snprintf(msg, msglen, "slots[%zu] needs a name and type Stable or Mutable", i);
      return IC_EINVAL;
    }
    ps_slot *s = &e->slots[e->nslots++];
    if (!(s->name = strdup(sn))) return IC_ENOMEM;
    s->stable = !strcmp(ty, "Stable");
    s->required = json_is_true(json_object_get(sl, "required"));
  }
  char cerr[IC_CHATTEMPLATE_ERR_MAX];
  int rc =
      ic_chattemplate_compile(json_string_value(body), json_string_length(body), &e->tpl, cerr);
  if (rc == IC_ENOMEM) return rc;
  if (rc) {
    /* kept, so RenderTemplate says RENDER_ERROR (the template exists) rather than NOT_FOUND */
    e->error = strdup(cerr);
    snprintf(msg, msglen, "%s", cerr);
    return 1;
  }
  return 0;
}

int ic_promptstore_replace(ic_promptstore_t *s, const char *body, size_t len, char **report,
                           char *err, size_t errlen) {
  if (report) *report = NULL;
  json_error_t je;
  json_t *doc = json_loadb(body, len, 0, &je);
  if (!doc || !json_is_object(doc)) {
    snprintf(err, errlen, "decode prompt templates: %s", doc ? "not a JSON object" : je.text);
    json_decref(doc);
    return IC_EINVAL;
  }
  json_t *ver = json_object_get(doc, "version"), *items = json_object_get(doc, "templates");
  if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
    snprintf(err, errlen, "unsupported prompt templates version (want 1)");
    json_decref(doc);
    return IC_EINVAL;
  }
  if (items && !json_is_array(items) && !json_is_null(items)) {
    snprintf(err, errlen, "decode prompt templates: templates must be an array");
    json_decref(doc);
    return IC_EINVAL;
  }
  size_t n = json_array_size(items);
  ps_snapshot *snap = calloc(1, sizeof *snap);
  json_t *rejected = json_array();
  if (!snap || !rejected || !(snap->e = calloc(n ? n : 1, sizeof *snap->e))) {
    free(snap ? snap->e : NULL);
    free(snap);
    json_decref(rejected);
    json_decref(doc);
    return IC_ENOMEM;
  }
  atomic_init(&snap->refs, 1);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    char ref[512], msg[IC_CHATTEMPLATE_ERR_MAX];
    ps_entry *e = &snap->e[snap->n];
    memset(e, 0, sizeof *e);
    int r = decode_entry(json_array_get(items, i), e, ref, sizeof ref, msg, sizeof msg);
    if (r == IC_ENOMEM) {
      entry_free(e);
      rc = IC_ENOMEM;
    } else if (r < 0) {
      entry_free(e);
      reject(rejected, ref, msg);
    } else {
      if (r > 0) reject(rejected, ref, msg);
      snap->n++;
    }
  }
  json_decref(doc);
  if (rc) {
    json_decref(rejected);
    ps_snapshot_release(snap);
    snprintf(err, errlen, "out of memory");
    return rc;
  }
  qsort(snap->e, snap->n, sizeof *snap->e, cmp_entry);
  /* duplicates (same namespace/name twice): the first pushed wins, the rest are reported */
  size_t k = 0;
  for (size_t i = 0; i < snap->n; i++) {
    if (k && !strcmp(snap->e[k - 1].ref, snap->e[i].ref)) {
      reject(rejected, snap->e[i].ref, "duplicate template");
      entry_free(&snap->e[i]);
      continue;
    }
    snap->e[k++] = snap->e[i];
  }
  snap->n = k;
  if (report) {
    size_t invalid = 0;
    for (size_t i = 0; i < snap->n; i++)
      invalid += snap->e[i].error != NULL;
    json_t *r =
        json_pack("{s:I,s:o}", "accepted", (json_int_t)(snap->n - invalid), "rejected", rejected);
    *report = r ? json_dumps(r, JSON_COMPACT) : NULL;
    json_decref(r);
  } else {
    json_decref(rejected);
  }
  pthread_mutex_lock(&s->mu);
  ps_snapshot *old = s->cur;
  s->cur = snap;
  pthread_mutex_unlock(&s->mu);
  ps_snapshot_release(old);
  return 0;
}

char *ic_promptstore_list_json(ic_promptstore_t *s) {
  ps_snapshot *snap = ps_snapshot_acquire(s);
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < snap->n; i++) {
    const ps_entry *e = &snap->e[i];
    json_t *o = json_pack("{s:s,s:s,s:b}", "template", e->ref, "revision", e->revision, "valid",
                          e->error == NULL);
    if (o && e->model) json_object_set_new(o, "modelID", json_string(e->model));
    if (o && e->error) json_object_set_new(o, "error", json_string(e->error));
    json_array_append_new(arr, o);
  }
  ps_snapshot_release(snap);
  json_t *doc = json_pack("{s:o}", "templates", arr);
  char *out = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  return out;
}
