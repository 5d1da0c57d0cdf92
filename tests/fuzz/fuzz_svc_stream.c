/* Fuzzes the streaming and stub request conversions: StreamEventsRequest filters (then matched
 * against a change and re-encoded), StreamMetricsRequest filters, RenderTemplate and
 * LookupPDRoute requests. The first byte picks the request kind. */
#include <stdint.h>
#include <stdlib.h>

#include "ic/svc.h"

static ic_svc_t *svc;
static ic_index_t *ix;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!svc) {
    ic_index_config_t c;
    ic_index_config_init(&c);
    ix = ic_index_create(&c);
    ic_svc_config_t sc = {.index = ix};
    svc = ic_svc_new(&sc);
  }
  if (size < 1) return 0;
  ic_buf_t out = IC_BUF_INIT;
  const char *msg = NULL;
  switch (data[0] % 4) {
  case 0: {
    ic_svc_event_filter_t f;
    if (ic_svc_event_filter_parse(data + 1, size - 1, &f) == 0) {
      ic_index_change_t ch = {.type = IC_INDEX_CHANGE_PREFIX_ADDED, .tenant = "t", .model = "m", .scheme = "s",
                              .adapter = "", .replica = "r", .hash = data, .hash_len = size};
      if (ic_svc_event_filter_match(&f, &ch)) ic_svc_change_encode(&ch, &out);
      ic_svc_event_filter_free(&f);
    }
    break;
  }
  case 1: {
    ic_svc_metric_filter_t f;
    if (ic_svc_metric_filter_parse(data + 1, size - 1, &f) == 0) {
      ic_svc_metric_filter_match(&f, "inferencecache_server_up", "gauge");
      ic_svc_metric_filter_match(&f, "inferencecache_lookup_route_latency_seconds_bucket", "histogram");
      ic_svc_metric_filter_free(&f);
    }
    break;
  }
  case 2: ic_svc_render_template(svc, data + 1, size - 1, &out, &msg); break;
  default: ic_svc_lookup_pd_route(svc, data + 1, size - 1, &out, &msg); break;
  }
  ic_buf_free(&out);
  return 0;
}
