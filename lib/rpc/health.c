/* grpc.health.v1.Health on top of the rpc layer: Check answers from one serving flag, Watch
 * sends the current status and then every change. The flag follows the server's readiness (the
 * program flips it on start and off when shutdown begins). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "ic/err.h"
#include "rpc_internal.h"

#define MAX_WATCHERS 256

struct ic_rpc_health {
  pthread_mutex_t mu;
  bool serving;
  char **services; /* NULL-terminated copies; "" is always known */
  ic_rpc_call_t *watchers[MAX_WATCHERS];
  size_t nwatchers;
};

ic_rpc_health_t *ic_rpc_health_new(const char *const *services) {
  ic_rpc_health_t *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  pthread_mutex_init(&h->mu, NULL);
  size_t n = 0;
  while (services && services[n]) n++;
  h->services = calloc(n + 1, sizeof *h->services);
  for (size_t i = 0; i < n && h->services; i++) h->services[i] = strdup(services[i]);
  return h;
}

void ic_rpc_health_free(ic_rpc_health_t *h) {
  if (!h) return;
  for (size_t i = 0; h->services && h->services[i]; i++) free(h->services[i]);
  free(h->services);
  pthread_mutex_destroy(&h->mu);
  free(h);
}

static bool known(const ic_rpc_health_t *h, const char *svc) {
  if (!svc || !*svc) return true;
  for (size_t i = 0; h->services && h->services[i]; i++)
    if (strcmp(h->services[i], svc) == 0) return true;
  return false;
}

static int pack_status(int st, ic_buf_t *out) {
  Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
  size_t n = grpc__health__v1__health_check_response__get_packed_size(&r);
  if (ic_buf_reserve(out, n)) return IC_ENOMEM;
  grpc__health__v1__health_check_response__pack(&r, (uint8_t *)out->data + out->len);
  out->len += n;
  return 0;
}

static int check(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len, ic_buf_t *resp,
                 const char **msg) {
  (void)call;
  ic_rpc_health_t *h = ud;
  Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, req);
  if (!r) return *msg = "grpc: error unmarshalling request", IC_RPC_INTERNAL;
  bool k = known(h, r->service);
  grpc__health__v1__health_check_request__free_unpacked(r, NULL);
  if (!k) return *msg = "unknown service", IC_RPC_NOT_FOUND;
  pthread_mutex_lock(&h->mu);
  int st = h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
  pthread_mutex_unlock(&h->mu);
  return pack_status(st, resp) ? IC_RPC_INTERNAL : IC_RPC_OK;
}

static void send_status(ic_rpc_call_t *c, int st) {
  ic_buf_t b = IC_BUF_INIT;
  if (pack_status(st, &b) == 0) ic_rpc_stream_send(c, (const uint8_t *)(b.data ? b.data : ""), b.len);
  ic_buf_free(&b);
}

static int watch_start(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len) {
  ic_rpc_health_t *h = ud;
  Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, req);
  if (!r) return IC_RPC_INTERNAL;
  bool k = known(h, r->service);
  grpc__health__v1__health_check_request__free_unpacked(r, NULL);
  if (!k) { /* stays open like grpc-go: status may appear later */
    send_status(call, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
    return IC_RPC_OK;
  }
  pthread_mutex_lock(&h->mu);
  if (h->nwatchers >= MAX_WATCHERS) {
    pthread_mutex_unlock(&h->mu);
    return IC_RPC_RESOURCE_EXHAUSTED;
  }
  h->watchers[h->nwatchers++] = call;
  ic_rpc_call_set_data(call, h);
  send_status(call, h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  pthread_mutex_unlock(&h->mu);
  return IC_RPC_OK;
}

static void watch_close(void *ud, ic_rpc_call_t *call) {
  ic_rpc_health_t *h = ud;
  pthread_mutex_lock(&h->mu);
  for (size_t i = 0; i < h->nwatchers; i++)
    if (h->watchers[i] == call) {
      h->watchers[i] = h->watchers[--h->nwatchers];
      break;
    }
  pthread_mutex_unlock(&h->mu);
}

void ic_rpc_health_set(ic_rpc_health_t *h, bool serving) {
  pthread_mutex_lock(&h->mu);
  if (h->serving != serving) {
    h->serving = serving;
    for (size_t i = 0; i < h->nwatchers; i++)
      send_status(h->watchers[i], serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                                          : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  }
  pthread_mutex_unlock(&h->mu);
}

int ic_rpc_health_register(ic_rpc_server_t *s, ic_rpc_health_t *h) {
  int rc = ic_rpc_server_add_unary(s, "/grpc.health.v1.Health/Check", check, h);
  if (rc) return rc;
  static const ic_rpc_stream_handler_t wh = {.on_start = watch_start, .on_close = watch_close};
  return ic_rpc_server_add_stream(s, "/grpc.health.v1.Health/Watch", IC_RPC_SERVER_STREAM, &wh, h);
}
