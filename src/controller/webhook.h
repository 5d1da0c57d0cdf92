/* HTTPS admission webhook server of inferencecache-controller: lib/http routes -> lib/admission.
 * main.c calls webhook_start() once at startup (all replicas serve, not only the leader) and
 * webhook_stop() on shutdown. The certificate/key files come from the mounted Secret and are
 * reloaded by lib/http when they change (cert-manager rotation). */
#ifndef IC_CONTROLLER_WEBHOOK_H
#define IC_CONTROLLER_WEBHOOK_H
#include <stddef.h>

#include "ic/admission.h"

typedef struct webhook_server webhook_server_t;

typedef struct webhook_config {
  const char *bind;      /* "host:port", e.g. ":9443" (controller flag --webhook-bind-address) */
  const char *cert_file; /* e.g. /tmp/k8s-webhook-server/serving-certs/tls.crt */
  const char *key_file;  /* ... tls.key; both NULL/"" = plain HTTP (tests only) */
  unsigned threads;      /* 0 = 2 */
  ic_admission_config_t admission; /* copied; strings must outlive the server */
} webhook_config_t;

/* Starts serving; NULL on failure with a reason in err. */
webhook_server_t *webhook_start(const webhook_config_t *cfg, char *err, size_t errlen);
/* Bound port (useful with port 0). */
int webhook_port(const webhook_server_t *s);
/* Stops (drains for up to 5 s) and frees; NULL is a no-op. */
void webhook_stop(webhook_server_t *s);

#endif
