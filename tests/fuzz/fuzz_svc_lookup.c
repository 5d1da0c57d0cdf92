/* Fuzzes LookupRoute request -> domain conversion and the whole service pipeline (decode, UTF-8
 * checks, input precedence, token_ids fingerprinting, policy gates, index lookup, envelope)
 * against a small real index that a fixed seed update populates. Tenant t has both ranking
 * switches of docs/ranking.md on (load-aware, predict-on-route with a 64-entry table), so the
 * speculative table records and merges fuzzed chains. Every other input goes through the
 * two-step LookupRoute the server uses for prompt_text (begin, then finish or fail open), with
 * the text's bytes as its token ids (the tokenizer has its own targets: this covers the
 * hand-over). Must never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic/index.h"
#include "ic/policy.h"
#include "ic/svc.h"

static ic_index_t *ix;
static ic_policy_store_t *pol;
static ic_svc_t *svc;

static int bytes_as_ids(void *ud, const char *model, const char *text, size_t len, size_t max_ids,
                        uint32_t **ids, size_t *n) {
  (void)ud, (void)model;
  if (len == 0 || len > max_ids) return -1;
  *ids = malloc(len * sizeof **ids);
  if (!*ids) return -2;
  for (size_t i = 0; i < len; i++)
    (*ids)[i] = (uint8_t)text[i];
  *n = len;
  return 0;
}

static void setup(void) {
  ic_index_config_t c;
  ic_index_config_init(&c);
  c.max_entries = 4096;
  c.predict_max_entries = 64;
  ix = ic_index_create(&c);
  pol = ic_policy_store_new();
  static const char doc[] = "{\"version\":7,\"policies\":[{\"namespace\":\"t\",\"strategy\":"
                            "{\"loadAwareRouting\":true,\"predictOnRoute\":true}}]}";
  ic_policy_doc_t *d = NULL;
  char msg[128];
  if (ic_policy_parse(doc, sizeof doc - 1, false, &d, msg, sizeof msg) == IC_POLICY_OK)
    ic_policy_store_replace(pol, d);
  static ic_index_load_cfg_t load;
  ic_index_load_cfg_init(&load);
  load.max_age_ns = INT64_MAX; /* the seed's sample never ages out */
  ic_svc_config_t sc = {.index = ix,
                        .policy = pol,
                        .engine_block_size = 4,
                        .load = &load,
                        .prompt_encode = bytes_as_ids};
  svc = ic_svc_new(&sc);
  /* one replica holding a 2-block chain and a legacy key in tenant t / model m / scheme s */
  static const uint8_t h0[8] = {1}, h1[8] = {2};
  ic_index_bytes_t bh[2] = {{8, h0}, {8, h1}};
  int32_t counts[2] = {16, 16};
  ic_index_prefix_t px[2] = {
      {.block_hashes = bh, .n_block_hashes = 2, .block_token_counts = counts, .n_block_token_counts = 2},
      {.prefix_hash = {3, (const uint8_t *)"abc"}, .token_count = 128},
  };
  ic_index_stats_t st = {.hit_rate = 0.5f, .load_reported = true, .num_waiting = 2};
  ic_index_update_t u = {.replica = "r1", .model = "m", .tenant = "t", .scheme = "s", .prefixes = px, .n_prefixes = 2,
                         .stats = &st};
  ic_index_ingest(ix, &u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!svc) setup();
  ic_buf_t out = IC_BUF_INIT;
  const char *msg = NULL;
  if (size % 2 == 0) {
    ic_svc_lookup_route(svc, data, size, INT64_MAX, &out, &msg);
  } else {
    ic_svc_pending_t *p = NULL;
    ic_svc_lookup_route_begin(svc, data, size, INT64_MAX, &out, &msg, &p);
    if (p && size % 4 == 1)
      ic_svc_lookup_route_finish(svc, p, &out, &msg);
    else if (p)
      ic_svc_lookup_route_fail_open(svc, p, size % 8 == 3, &out);
  }
  ic_buf_free(&out);
  return 0;
}
