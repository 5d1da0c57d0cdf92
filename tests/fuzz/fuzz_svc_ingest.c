/* Fuzzes ReportCacheState (CacheStateUpdate -> index update) and PublishEvent (CacheEvent ->
 * index event) conversions, then GetCacheState, on a capped real index. The first byte picks
 * the request kind; the rest is the serialized message. */
#include <stdint.h>
#include <stdlib.h>

#include "ic/index.h"
#include "ic/svc.h"

/* A fresh index per input: bounded memory, and LeakSanitizer sees every allocation freed (the
 * index keeps spill pointers inside mmap'd slot arrays, which LSan does not scan). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  ic_index_config_t c;
  ic_index_config_init(&c);
  c.max_entries = 20000;
  ic_index_t *ix = ic_index_create(&c);
  ic_svc_config_t sc = {.index = ix};
  ic_svc_t *svc = ic_svc_new(&sc);
  ic_buf_t out = IC_BUF_INIT;
  const char *msg = NULL;
  switch (data[0] % 3) {
  case 0: ic_svc_report_one(svc, data + 1, size - 1, &msg); break;
  case 1: ic_svc_publish_event(svc, data + 1, size - 1, &out, &msg); break;
  default: ic_svc_get_cache_state(svc, data + 1, size - 1, &out, &msg); break;
  }
  /* a second pass over the same bytes exercises refresh/evict paths on existing state */
  if (data[0] % 3 == 0) ic_svc_report_one(svc, data + 1, size - 1, &msg);
  ic_buf_reset(&out);
  ic_svc_get_cache_state(svc, (const uint8_t *)"\x0a\x01m\x12\x01t", 6, &out, &msg);
  ic_buf_free(&out);
  ic_svc_free(svc);
  ic_index_destroy(ix);
  return 0;
}
