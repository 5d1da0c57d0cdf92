/* Private to lib/kube: the client struct and helpers shared by client.c, watch.c and lease.c.
 * Nothing outside lib/kube includes this. */
#ifndef IC_KUBE_INTERNAL_H
#define IC_KUBE_INTERNAL_H
#include <curl/curl.h>
#include <stdatomic.h>

#include "ic/kube.h"

struct ic_kube {
  ic_kube_config_t cfg; /* owned copy */
  int attempts, base_ms, timeout_ms;
  atomic_uint_fast64_t nrequests, nretries;
};

/* A configured easy handle for server+path (TLS, auth, Accept, optional Content-Type);
 * *hdrs must be freed with curl_slist_free_all after curl_easy_cleanup. */
CURL *ic_kube_curl(ic_kube_t *k, const char *path, struct curl_slist **hdrs, const char *ctype);
int ic_kube_map_status(long http, json_t *body, ic_kube_status_t *st);

#endif
