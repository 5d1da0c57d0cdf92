/* Private helpers shared by the files of lib/admission (not installed). */
#ifndef IC_ADMISSION_INTERNAL_H
#define IC_ADMISSION_INTERNAL_H
#include <jansson.h>
#include <stddef.h>

/* Standard base64 of n bytes; malloc'd, NULL on ENOMEM. */
char *adm_base64(const char *in, size_t n);

struct ic_admission_config;
/* sidecar_creds.c: mounts and flags of the subscriber's credentials towards the server (server
 * CA, writer token, client certificate) onto the new sidecar container and the Pod spec. */
void adm_sidecar_creds(const struct ic_admission_config *cfg, json_t *spec, json_t *sidecar);

#endif
