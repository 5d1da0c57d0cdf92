/* Shared fixtures of the lib/index unit tests: a manual fake clock, byte-string hashes
 * ("hash(s)" = the raw bytes of s, as in the reference tests) and terse ingest/lookup helpers. */
#ifndef TEST_INDEX_UTIL_H
#define TEST_INDEX_UTIL_H
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ic/index.h"

#define MIN_NS (60LL * 1000000000LL)
#define SEC_NS 1000000000LL

static int64_t g_now = 1000000LL * SEC_NS;
static int64_t fake_clock(void *ud) {
  (void)ud;
  return g_now;
}

static inline ic_index_config_t base_cfg(void) {
  ic_index_config_t c;
  ic_index_config_init(&c);
  c.clock = fake_clock;
  c.ttl_ns = 60 * MIN_NS;
  c.max_entries = 0;
  return c;
}

static inline ic_index_bytes_t B(const char *s) {
  return (ic_index_bytes_t){strlen(s), (const uint8_t *)s};
}

typedef struct {
  const char *replica, *tenant, *model, *scheme, *adapter;
} who_t;

static inline void put_legacy_tier(ic_index_t *ix, who_t w, const char *hash, int32_t tokens,
                                   int32_t tier) {
  ic_index_prefix_t p = {.prefix_hash = B(hash), .token_count = tokens, .tier = tier};
  ic_index_update_t u = {w.replica, w.model, w.tenant, w.scheme, w.adapter, 0, &p, 1, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
}
static inline void put_legacy(ic_index_t *ix, who_t w, const char *hash, int32_t tokens) {
  put_legacy_tier(ix, w, hash, tokens, 0);
}

/* chain of NUL-free strings, `per` tokens each */
static inline void put_chain_tier(ic_index_t *ix, who_t w, const char *const *hs, size_t n,
                                  int32_t per, int32_t tier) {
  ic_index_bytes_t bh[64];
  int32_t bc[64];
  for (size_t i = 0; i < n; i++) {
    bh[i] = B(hs[i]);
    bc[i] = per;
  }
  ic_index_prefix_t p = {.block_hashes = bh,
                         .n_block_hashes = n,
                         .block_token_counts = bc,
                         .n_block_token_counts = n,
                         .tier = tier};
  ic_index_update_t u = {w.replica, w.model, w.tenant, w.scheme, w.adapter, 0, &p, 1, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
}
static inline void put_chain(ic_index_t *ix, who_t w, const char *const *hs, size_t n,
                             int32_t per) {
  put_chain_tier(ix, w, hs, n, per, 0);
}

static inline void put_stats(ic_index_t *ix, who_t w, float hit, float pressure) {
  ic_index_stats_t s = {.cache_memory_bytes = 100, .hit_rate = hit, .pressure = pressure};
  ic_index_update_t u = {w.replica, w.model, w.tenant, w.scheme, w.adapter, 0, NULL, 0, &s};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
}

static inline ic_index_result_t *route_exact(ic_index_t *ix, const char *tenant, const char *model,
                                             const char *scheme, const char *adapter,
                                             const char *hash, int32_t ttft) {
  ic_index_lookup_t q = {.tenant = tenant,
                         .model = model,
                         .scheme = scheme,
                         .adapter = adapter,
                         .prefix_hash = B(hash),
                         .ttft_budget_ms = ttft};
  ic_index_result_t *r = NULL;
  cr_assert_eq(ic_index_lookup_route(ix, &q, &r), 0);
  cr_assert_not_null(r);
  return r;
}

static inline ic_index_result_t *route_chain(ic_index_t *ix, const char *tenant, const char *model,
                                             const char *scheme, const char *adapter,
                                             const char *const *hs, size_t n, int32_t per,
                                             int32_t ttft) {
  ic_index_bytes_t bh[64];
  int32_t bc[64];
  for (size_t i = 0; i < n; i++) {
    bh[i] = B(hs[i]);
    bc[i] = per;
  }
  ic_index_lookup_t q = {.tenant = tenant,
                         .model = model,
                         .scheme = scheme,
                         .adapter = adapter,
                         .block_hashes = bh,
                         .n_block_hashes = n,
                         .block_token_counts = bc,
                         .n_block_token_counts = n,
                         .ttft_budget_ms = ttft};
  ic_index_result_t *r = NULL;
  cr_assert_eq(ic_index_lookup_route(ix, &q, &r), 0);
  cr_assert_not_null(r);
  return r;
}

static inline const ic_index_row_t *row(ic_index_result_t *r, size_t i) {
  cr_assert_lt(i, ic_index_result_count(r));
  return &ic_index_result_rows(r)[i];
}

#endif
