/* POST /probe: the functional self-test (docs/server.md). A synthetic one-block prefix for
 * the reserved probe tenant is ingested straight into the index, looked up, routed, and always
 * cleared again, so probes never show up in snapshots, gauges, quotas or the entry cap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/policy.h"

static bool has_replica(const ic_index_result_t *r, const char *replica) {
  size_t n = ic_index_result_count(r);
  const ic_index_row_t *rows = ic_index_result_rows(r);
  for (size_t i = 0; i < n; i++)
    if (rows[i].replica_id && strcmp(rows[i].replica_id, replica) == 0) return true;
  return false;
}

static unsigned stripe_of(const char *backend, const char *model) {
  /* FNV-1a over backend NUL model: same pair -> same mutex. */
  uint32_t h = 2166136261u;
  for (const char *p = backend; *p; p++)
    h = (h ^ (uint8_t)*p) * 16777619u;
  h = (h ^ 0) * 16777619u;
  for (const char *p = model; *p; p++)
    h = (h ^ (uint8_t)*p) * 16777619u;
  return h % SERVER_PROBE_STRIPES;
}

void server_probe_run(server_ctx_t *ctx, const char *backend, const char *model,
                      const char *hash_scheme, const char *backend_type,
                      server_probe_result_t *res) {
  (void)backend_type; /* Stage C eligibility; no T2 prober exists in this server (as in REF) */
  memset(res, 0, sizeof *res);
  res->ingest = "failed";
  res->routing = "skipped";
  res->t2 = "skipped";
  size_t rl = strlen(backend) + 9;
  char *replica = malloc(rl);
  if (!replica) {
    snprintf(res->stage_err[0], sizeof res->stage_err[0], "out of memory");
    return;
  }
  snprintf(replica, rl, "__probe-%s", backend);
  uint8_t hash[32];
  ic_probe_hash(backend, model, hash_scheme, hash);
  ic_index_bytes_t hb = {32, hash};
  int32_t cnt = IC_PROBE_TOKEN_COUNT;

  pthread_mutex_t *mu = &ctx->http->probe_mu[stripe_of(backend, model)];
  pthread_mutex_lock(mu);

  /* Stage A: ingest directly (bypassing the gRPC handler's probe-tenant drop), then verify. */
  ic_index_prefix_t pf = {.block_hashes = &hb,
                          .n_block_hashes = 1,
                          .block_token_counts = &cnt,
                          .n_block_token_counts = 1};
  ic_index_stats_t st = {.cache_memory_bytes = 0, .hit_rate = 1.0f, .pressure = 0.0f};
  ic_index_update_t up = {.replica = replica,
                          .model = model,
                          .tenant = SERVER_PROBE_TENANT,
                          .scheme = hash_scheme,
                          .adapter = "",
                          .timestamp_us = ic_clock_realtime_us(),
                          .prefixes = &pf,
                          .n_prefixes = 1,
                          .stats = &st};
  ic_index_lookup_t lk = {.model = model,
                          .tenant = SERVER_PROBE_TENANT,
                          .scheme = hash_scheme,
                          .adapter = "",
                          .block_hashes = &hb,
                          .n_block_hashes = 1,
                          .block_token_counts = &cnt,
                          .n_block_token_counts = 1};
  ic_index_result_t *r = NULL;
  bool landed = ic_index_ingest(ctx->index, &up) == 0 &&
                ic_index_lookup(ctx->index, &lk, &r) == 0 && r && has_replica(r, replica);
  ic_index_result_free(r);
  r = NULL;
  if (!landed) {
    snprintf(res->stage_err[0], sizeof res->stage_err[0],
             "synthesized probe event did not land in the index — ingest of replica \"%s\" for "
             "model \"%s\" (hash scheme \"%s\") was not visible to a direct chain lookup",
             replica, model, hash_scheme);
    goto cleanup;
  }
  res->ingest = "ok";

  /* Stage B: the index's LookupRoute orchestration (no policy gates). */
  res->routing = "failed";
  if (ic_index_lookup_route(ctx->index, &lk, &r) != 0 || !r) {
    snprintf(res->stage_err[1], sizeof res->stage_err[1],
             "LookupRoute returned NO_HINT, expected PREFIX_MATCH — the index could not route "
             "the synthesized prefix");
    goto cleanup;
  }
  ic_index_strategy_t sgy = ic_index_result_strategy(r);
  if (sgy != IC_INDEX_STRATEGY_PREFIX_MATCH) {
    snprintf(res->stage_err[1], sizeof res->stage_err[1],
             "LookupRoute returned %s, expected PREFIX_MATCH — the index did not route the "
             "synthesized prefix back to the probe replica",
             ic_index_strategy_name(sgy));
    goto cleanup;
  }
  if (!has_replica(r, replica)) {
    snprintf(res->stage_err[1], sizeof res->stage_err[1],
             "LookupRoute returned PREFIX_MATCH but probe replica \"%s\" is not among the scored "
             "replicas — routing would send this prefix elsewhere",
             replica);
    goto cleanup;
  }
  res->routing = "ok";
  /* Stage C: no T2 prober is configured in this server, so t2 stays "skipped". */

cleanup:
  ic_index_result_free(r);
  {
    ic_index_event_t ev = {.type = IC_INDEX_EVENT_ALL_CLEARED,
                           .replica = replica,
                           .model = model,
                           .tenant = SERVER_PROBE_TENANT,
                           .adapter = "",
                           .timestamp_us = ic_clock_realtime_us()};
    ic_index_apply_event(ctx->index, &ev);
  }
  pthread_mutex_unlock(mu);
  free(replica);
}

int server_probe_json(const char *backend, const server_probe_result_t *res, ic_buf_t *b) {
  static const char *const stages[3] = {"ingest", "routing", "t2"};
  int rc = ic_buf_append_str(b, "{\"backend\":");
  rc |= ic_http_json_str(b, backend, strlen(backend));
  rc |= ic_buf_appendf(b, ",\"ingest\":\"%s\",\"routing\":\"%s\",\"t2\":\"%s\"", res->ingest,
                       res->routing, res->t2);
  bool any = false;
  for (int i = 0; i < 3; i++) {
    if (!res->stage_err[i][0]) continue;
    rc |= ic_buf_append_str(b, any ? "," : ",\"errors\":[");
    any = true;
    rc |= ic_buf_appendf(b, "{\"stage\":\"%s\",\"message\":", stages[i]);
    rc |= ic_http_json_str(b, res->stage_err[i], strlen(res->stage_err[i]));
    rc |= ic_buf_append_byte(b, '}');
  }
  if (any) rc |= ic_buf_append_byte(b, ']');
  rc |= ic_buf_append_str(b, "}\n");
  return rc ? IC_ENOMEM : 0;
}
