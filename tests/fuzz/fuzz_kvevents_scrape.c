/* libFuzzer target for lib/kvevents' engine /metrics scraper: arbitrary Prometheus text through
 * the parser and the stats derivation of both profiles (the engine's page is untrusted input). */
#include <stddef.h>
#include <stdint.h>

#include "ic/kvevents.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ic_kv_scraper_t *v, *s;
  if (!v) v = ic_kv_scraper_new("vllm", NULL, IC_KV_TIER_AUTO, 1 << 30, 256);
  if (!s) s = ic_kv_scraper_new("sglang", "m", IC_KV_TIER_KV, 1 << 30, 8);
  ic_kv_stats_t st;
  char err[256];
  ic_kv_scraper_derive(v, (const char *)data, size, &st, err, sizeof(err));
  ic_kv_scraper_derive(s, (const char *)data, size, &st, err, sizeof(err));
  return 0;
}
