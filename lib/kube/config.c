/* lib/kube configuration: in-cluster service-account identity and kubeconfig files (YAML/JSON:
 * server, CA file or data, insecure flag, token or token file, client certificate). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/kube.h"

void ic_kube_config_free(ic_kube_config_t *c) {
  if (!c) return;
  free(c->server);
  free(c->ca_file);
  free(c->ca_pem);
  free(c->token);
  free(c->token_file);
  free(c->cert_file);
  free(c->key_file);
  free(c->cert_pem);
  free(c->key_pem);
  free(c->namespace);
  memset(c, 0, sizeof *c);
}

/* Bounds on what is read whole: a kubeconfig (certificates inline) and a namespace name. */
#define MAX_KUBECONFIG_BYTES (16u << 20)
#define MAX_NAMESPACE_BYTES 4096u

int ic_kube_config_in_cluster(const char *sa_dir, ic_kube_config_t *out) {
  memset(out, 0, sizeof *out);
  const char *host = getenv("KUBERNETES_SERVICE_HOST");
  const char *port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port) return IC_ENOTFOUND;
  if (!sa_dir) sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  ic_buf_t b = IC_BUF_INIT;
  /* IPv6 service hosts need brackets in a URL. */
  if (strchr(host, ':'))
    ic_buf_appendf(&b, "https://[%s]:%s", host, port);
  else
    ic_buf_appendf(&b, "https://%s:%s", host, port);
  out->server = ic_buf_detach(&b, NULL);
  ic_buf_appendf(&b, "%s/token", sa_dir);
  out->token_file = ic_buf_detach(&b, NULL);
  ic_buf_appendf(&b, "%s/ca.crt", sa_dir);
  char *ca = ic_buf_detach(&b, NULL);
  if (ca && access(ca, R_OK) == 0)
    out->ca_file = ca;
  else
    free(ca);
  ic_buf_appendf(&b, "%s/namespace", sa_dir);
  char *nsf = ic_buf_detach(&b, NULL);
  ic_buf_t ns = IC_BUF_INIT;
  if (nsf && ic_buf_read_file_trimmed(nsf, MAX_NAMESPACE_BYTES, &ns, NULL) == 0)
    out->namespace = ic_buf_detach(&ns, NULL);
  else
    out->namespace = strdup("default");
  ic_buf_free(&ns);
  free(nsf);
  if (!out->server || !out->token_file || !out->namespace) {
    ic_kube_config_free(out);
    return IC_ENOMEM;
  }
  return 0;
}

static char *b64_decode(const char *in) {
  size_t n = strlen(in);
  unsigned char *out = malloc(n / 4 * 3 + 4);
  if (!out) return NULL;
  /* EVP_DecodeBlock wants no whitespace and counts padding as output bytes. */
  char *clean = malloc(n + 1);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (in[i] != '\n' && in[i] != '\r' && in[i] != ' ') clean[m++] = in[i];
  clean[m] = 0;
  int len = EVP_DecodeBlock(out, (const unsigned char *)clean, (int)m);
  if (len < 0) {
    free(clean);
    free(out);
    return NULL;
  }
  while (m > 0 && clean[m - 1] == '=') {
    len--;
    m--;
  }
  free(clean);
  out[len] = 0;
  return (char *)out;
}

/* Looks up `name` in a kubeconfig list ("clusters", "users", "contexts") and returns its inner
 * object ("cluster", "user", "context"). */
static json_t *named(json_t *doc, const char *list, const char *inner, const char *name) {
  json_t *arr = json_object_get(doc, list);
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) {
    const char *n = ic_kube_jstr(e, "name");
    if (n && name && strcmp(n, name) == 0) return json_object_get(e, inner);
  }
  return NULL;
}

/* Relative file references in a kubeconfig are relative to the file's directory. */
static char *resolve(const char *base, const char *p) {
  if (!p) return NULL;
  if (p[0] == '/') return strdup(p);
  const char *slash = strrchr(base, '/');
  if (!slash) return strdup(p);
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append(&b, base, (size_t)(slash - base + 1));
  ic_buf_append_str(&b, p);
  return ic_buf_detach(&b, NULL);
}

int ic_kube_config_from_file(const char *path, const char *context, ic_kube_config_t *out) {
  memset(out, 0, sizeof *out);
  ic_buf_t text = IC_BUF_INIT;
  int rc = ic_buf_read_file(path, MAX_KUBECONFIG_BYTES, &text, NULL);
  if (rc == IC_EIO) rc = IC_ENOTFOUND; /* unreadable is "no kubeconfig here" to the caller */
  if (rc) return rc;
  json_t *doc = NULL;
  rc = ic_kube_yaml_to_json(text.data, text.len, &doc);
  ic_buf_free(&text);
  if (rc) return rc;
  if (!json_is_object(doc)) {
    json_decref(doc);
    return IC_EINVAL;
  }
  const char *ctx_name = context ? context : ic_kube_jstr(doc, "current-context");
  json_t *ctx = named(doc, "contexts", "context", ctx_name);
  json_t *cluster = ctx ? named(doc, "clusters", "cluster", ic_kube_jstr(ctx, "cluster")) : NULL;
  json_t *user = ctx ? named(doc, "users", "user", ic_kube_jstr(ctx, "user")) : NULL;
  const char *server = cluster ? ic_kube_jstr(cluster, "server") : NULL;
  if (!server) {
    json_decref(doc);
    return IC_EINVAL;
  }
  out->server = strdup(server);
  out->insecure = json_is_true(json_object_get(cluster, "insecure-skip-tls-verify"));
  out->ca_file = resolve(path, ic_kube_jstr(cluster, "certificate-authority"));
  const char *cad = ic_kube_jstr(cluster, "certificate-authority-data");
  if (cad) out->ca_pem = b64_decode(cad);
  const char *ns = ic_kube_jstr(ctx, "namespace");
  out->namespace = strdup(ns && *ns ? ns : "default");
  if (user) {
    const char *tok = ic_kube_jstr(user, "token");
    if (tok) out->token = strdup(tok);
    out->token_file = resolve(path, ic_kube_jstr(user, "tokenFile"));
    out->cert_file = resolve(path, ic_kube_jstr(user, "client-certificate"));
    out->key_file = resolve(path, ic_kube_jstr(user, "client-key"));
    const char *cd = ic_kube_jstr(user, "client-certificate-data");
    const char *kd = ic_kube_jstr(user, "client-key-data");
    if (cd) out->cert_pem = b64_decode(cd);
    if (kd) out->key_pem = b64_decode(kd);
  }
  json_decref(doc);
  if (!out->server || !out->namespace || (cad && !out->ca_pem)) {
    ic_kube_config_free(out);
    return IC_EINVAL;
  }
  return 0;
}

int ic_kube_config_load(const char *path, ic_kube_config_t *out) {
  if (path && *path) return ic_kube_config_from_file(path, NULL, out);
  const char *env = getenv("KUBECONFIG");
  if (env && *env) {
    /* First entry of a colon-separated list; merging several files is not supported. */
    char *first = strndup(env, strcspn(env, ":"));
    int rc = first ? ic_kube_config_from_file(first, NULL, out) : IC_ENOMEM;
    free(first);
    return rc;
  }
  if (ic_kube_config_in_cluster(NULL, out) == 0) return 0;
  const char *home = getenv("HOME");
  if (!home) return IC_ENOTFOUND;
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_appendf(&b, "%s/.kube/config", home);
  int rc = ic_kube_config_from_file(b.data, NULL, out);
  ic_buf_free(&b);
  return rc;
}
