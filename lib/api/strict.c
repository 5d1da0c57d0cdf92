/* Strict field validation, as `kubectl apply` (field validation "Strict") rejects manifests:
 * every field must be declared by the kind's schema. Our kinds are walked against their CRD's
 * structural openAPIV3Schema; metadata against ObjectMeta; built-in kinds we ship get their
 * apiVersion/kind and top-level fields checked (ic/api.h, ic_api_strict_fields). */
#include <stdio.h>
#include <string.h>

#include "ic/api.h"

static const char *const OBJECT_META[] = {"name",
                                          "generateName",
                                          "namespace",
                                          "selfLink",
                                          "uid",
                                          "resourceVersion",
                                          "generation",
                                          "creationTimestamp",
                                          "deletionTimestamp",
                                          "deletionGracePeriodSeconds",
                                          "labels",
                                          "annotations",
                                          "ownerReferences",
                                          "finalizers",
                                          "managedFields",
                                          NULL};

/* Built-in and third-party kinds the install ships: apiVersion, kind, their top-level fields. */
typedef struct known_kind {
  const char *api_version, *kind;
  const char *fields[6];
} known_kind_t;

static const known_kind_t KNOWN[] = {
    {"v1", "Namespace", {"spec", "status"}},
    {"v1", "ServiceAccount", {"secrets", "imagePullSecrets", "automountServiceAccountToken"}},
    {"v1", "Service", {"spec", "status"}},
    {"v1", "ConfigMap", {"data", "binaryData", "immutable"}},
    {"v1", "Secret", {"data", "stringData", "type", "immutable"}},
    {"apps/v1", "Deployment", {"spec", "status"}},
    {"apps/v1", "StatefulSet", {"spec", "status"}},
    {"apps/v1", "DaemonSet", {"spec", "status"}},
    {"policy/v1", "PodDisruptionBudget", {"spec", "status"}},
    {"rbac.authorization.k8s.io/v1", "Role", {"rules"}},
    {"rbac.authorization.k8s.io/v1", "ClusterRole", {"rules", "aggregationRule"}},
    {"rbac.authorization.k8s.io/v1", "RoleBinding", {"subjects", "roleRef"}},
    {"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", {"subjects", "roleRef"}},
    {"networking.k8s.io/v1", "NetworkPolicy", {"spec"}},
    {"admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", {"webhooks"}},
    {"admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", {"webhooks"}},
    {"apiextensions.k8s.io/v1", "CustomResourceDefinition", {"spec", "status"}},
    {"coordination.k8s.io/v1", "Lease", {"spec"}},
    {"cert-manager.io/v1", "Issuer", {"spec", "status"}},
    {"cert-manager.io/v1", "ClusterIssuer", {"spec", "status"}},
    {"cert-manager.io/v1", "Certificate", {"spec", "status"}},
    {"monitoring.coreos.com/v1", "ServiceMonitor", {"spec"}},
    {"monitoring.coreos.com/v1", "PodMonitor", {"spec"}},
    {"monitoring.coreos.com/v1", "PrometheusRule", {"spec"}},
};

typedef struct walk {
  ic_api_strict_fn fn;
  void *ud;
  size_t n;
} walk_t;

static void report(walk_t *w, const char *path, const char *why) {
  w->n++;
  if (w->fn) w->fn(w->ud, path, why);
}

static bool listed(const char *const *names, const char *key) {
  for (; *names; names++)
    if (strcmp(*names, key) == 0) return true;
  return false;
}

static void join(char *out, size_t n, const char *parent, const char *key) {
  snprintf(out, n, "%s%s%s", parent, *parent ? "." : "", key);
}

static void check_meta(walk_t *w, const json_t *meta) {
  if (!meta) return;
  if (!json_is_object(meta)) return report(w, "metadata", "must be an object");
  const char *k;
  json_t *v;
  char path[512];
  json_object_foreach((json_t *)meta, k, v) {
    if (listed(OBJECT_META, k)) continue;
    join(path, sizeof path, "metadata", k);
    report(w, path, "unknown field");
  }
}

/* Walks `v` against the structural schema `s`: unknown object fields are reported; anything under
 * x-kubernetes-preserve-unknown-fields or a schemaless additionalProperties is accepted. */
static void walk(walk_t *w, const json_t *s, const json_t *v, const char *path) {
  if (!json_is_object(s) || !v || json_is_null(v)) return;
  if (json_is_true(json_object_get(s, "x-kubernetes-preserve-unknown-fields"))) return;
  char sub[512];
  if (json_is_object(v)) {
    const json_t *props = json_object_get(s, "properties");
    const json_t *addl = json_object_get(s, "additionalProperties");
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) {
      join(sub, sizeof sub, path, k);
      const json_t *ps = props ? json_object_get(props, k) : NULL;
      if (ps) {
        walk(w, ps, x, sub);
      } else if (json_is_object(addl)) {
        walk(w, addl, x, sub);
      } else if (!json_is_true(addl) && (props || json_is_false(addl))) {
        report(w, sub, "unknown field");
      }
    }
  } else if (json_is_array(v)) {
    const json_t *items = json_object_get(s, "items");
    size_t i;
    json_t *x;
    json_array_foreach((json_t *)v, i, x) {
      snprintf(sub, sizeof sub, "%s[%zu]", path, i);
      walk(w, items, x, sub);
    }
  }
}

size_t ic_api_strict_fields(const json_t *obj, const json_t *crd_schema, ic_api_strict_fn fn,
                            void *ud) {
  walk_t w = {fn, ud, 0};
  if (!json_is_object(obj)) {
    report(&w, "", "not an object");
    return w.n;
  }
  const char *av = json_string_value(json_object_get(obj, "apiVersion"));
  const char *kind = json_string_value(json_object_get(obj, "kind"));
  if (!av || !kind) {
    report(&w, !av ? "apiVersion" : "kind", "required");
    return w.n;
  }
  check_meta(&w, json_object_get(obj, "metadata"));
  if (crd_schema) {
    const json_t *props = json_object_get(crd_schema, "properties");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
      if (!strcmp(k, "apiVersion") || !strcmp(k, "kind") || !strcmp(k, "metadata")) continue;
      const json_t *ps = props ? json_object_get(props, k) : NULL;
      if (!ps)
        report(&w, k, "unknown field");
      else
        walk(&w, ps, v, k);
    }
    return w.n;
  }
  for (size_t i = 0; i < sizeof KNOWN / sizeof KNOWN[0]; i++) {
    if (strcmp(KNOWN[i].kind, kind) != 0 || strcmp(KNOWN[i].api_version, av) != 0) continue;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
      if (!strcmp(k, "apiVersion") || !strcmp(k, "kind") || !strcmp(k, "metadata")) continue;
      bool ok = false;
      for (size_t f = 0; f < 6 && KNOWN[i].fields[f]; f++)
        ok |= strcmp(KNOWN[i].fields[f], k) == 0;
      if (!ok) report(&w, k, "unknown field");
    }
    return w.n;
  }
  char why[300];
  snprintf(why, sizeof why, "no schema for %s %s (not a kind this checker knows)", av, kind);
  report(&w, "kind", why);
  return w.n;
}

const json_t *ic_api_crd_schema(const json_t *crd, const char **group, const char **kind,
                                const char **version) {
  const json_t *spec = json_object_get(crd, "spec");
  const json_t *vs = json_object_get(spec, "versions");
  *group = json_string_value(json_object_get(spec, "group"));
  *kind = json_string_value(json_object_get(json_object_get(spec, "names"), "kind"));
  *version = NULL;
  size_t i;
  json_t *v;
  json_array_foreach((json_t *)vs, i, v) {
    if (!json_is_true(json_object_get(v, "storage")) && json_array_size(vs) > 1) continue;
    *version = json_string_value(json_object_get(v, "name"));
    return json_object_get(json_object_get(v, "schema"), "openAPIV3Schema");
  }
  return NULL;
}
