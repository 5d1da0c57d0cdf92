/* lib/admission: the credentials the injected kvevent-subscriber presents to the server — the
 * server's TLS CA from a ConfigMap, a projected service-account token with the writer audience,
 * a client-certificate Secret — as Pod volumes plus the sidecar's mounts and flags. */
#include <stdio.h>
#include <string.h>

#include "ic/admission.h"
#include "internal.h"

#define CREDS_DIR "/var/run/secrets/inferencecache.io"
#define VOL_TOKEN "inferencecache-writer-token"
#define VOL_CA "inferencecache-server-ca"
#define VOL_CLIENT "inferencecache-client-tls"
#define TOKEN_EXPIRY_S 3600 /* the kubelet rotates it at 80%; the subscriber re-reads it */

static bool set(const char *s) { return s && *s; }

/* Adds `vol` to the Pod's volumes unless one of that name exists (a re-admission, or the
 * Pod's own volume which is then used as is). Steals vol. */
static void add_volume(json_t *spec, json_t *vol) {
  json_t *vols = json_object_get(spec, "volumes");
  if (!json_is_array(vols)) {
    vols = json_array();
    json_object_set_new(spec, "volumes", vols);
  }
  const char *name = json_string_value(json_object_get(vol, "name"));
  size_t i;
  json_t *v;
  json_array_foreach(vols, i, v) {
    const char *n = json_string_value(json_object_get(v, "name"));
    if (n && name && strcmp(n, name) == 0) {
      json_decref(vol);
      return;
    }
  }
  json_array_append_new(vols, vol);
}

static void mount(json_t *c, const char *vol, const char *path) {
  json_t *m = json_object_get(c, "volumeMounts");
  if (!json_is_array(m)) {
    m = json_array();
    json_object_set_new(c, "volumeMounts", m);
  }
  json_array_append_new(m,
                        json_pack("{s:s,s:s,s:b}", "name", vol, "mountPath", path, "readOnly", 1));
}

static void arg(json_t *c, const char *flag, const char *value) {
  char b[512];
  snprintf(b, sizeof b, "%s=%s", flag, value);
  json_array_append_new(json_object_get(c, "args"), json_string(b));
}

void adm_sidecar_creds(const ic_admission_config_t *cfg, json_t *spec, json_t *sidecar) {
  if (!cfg || !json_is_object(spec) || !json_is_array(json_object_get(sidecar, "args"))) return;
  if (set(cfg->subscriber_server_ca_configmap)) {
    add_volume(spec, json_pack("{s:s,s:{s:s,s:[{s:s,s:s}]}}", "name", VOL_CA, "configMap", "name",
                               cfg->subscriber_server_ca_configmap, "items", "key", "ca.crt",
                               "path", "ca.crt"));
    mount(sidecar, VOL_CA, CREDS_DIR "/server-ca");
    arg(sidecar, "--server-ca-file", CREDS_DIR "/server-ca/ca.crt");
  }
  if (set(cfg->subscriber_token_audience)) {
    add_volume(spec, json_pack("{s:s,s:{s:[{s:{s:s,s:i,s:s}}]}}", "name", VOL_TOKEN, "projected",
                               "sources", "serviceAccountToken", "audience",
                               cfg->subscriber_token_audience, "expirationSeconds", TOKEN_EXPIRY_S,
                               "path", "token"));
    mount(sidecar, VOL_TOKEN, CREDS_DIR "/writer-token");
    arg(sidecar, "--server-token-file", CREDS_DIR "/writer-token/token");
  }
  if (set(cfg->subscriber_client_cert_secret)) {
    add_volume(spec, json_pack("{s:s,s:{s:s}}", "name", VOL_CLIENT, "secret", "secretName",
                               cfg->subscriber_client_cert_secret));
    mount(sidecar, VOL_CLIENT, CREDS_DIR "/client-tls");
    arg(sidecar, "--client-cert-file", CREDS_DIR "/client-tls/tls.crt");
    arg(sidecar, "--client-key-file", CREDS_DIR "/client-tls/tls.key");
  }
}
