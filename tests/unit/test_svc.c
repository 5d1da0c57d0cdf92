/* lib/svc without a network: the LookupRoute pipeline (reason codes, precedence, policy gates,
 * floors, affinity, LFU credit, token_ids fingerprinting, envelopes, metrics), ingest/event/state
 * conversions and the stream encodings, over a real index and policy store. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ic/err.h"
#include "ic/index.h"
#include "ic/metrics.h"
#include "ic/policy.h"
#include "ic/rpc.h"
#include "ic/svc.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"

typedef Inferencecache__V1alpha1__LookupRouteRequest req_t;
typedef Inferencecache__V1alpha1__LookupRouteResponse resp_t;

static ic_index_t *ix;
static ic_policy_store_t *pol;
static ic_metrics_t *mx;
static ic_metric_family_t *calls, *lat;
static ic_svc_t *svc;

static ic_index_eviction_t eviction(void *ud, const char *tenant) {
  return ic_policy_index_eviction(ud, tenant) == IC_POLICY_EVICT_LFU ? IC_INDEX_EVICT_LFU : IC_INDEX_EVICT_LRU;
}

static void setup(void) {
  pol = ic_policy_store_new();
  ic_index_config_t c;
  ic_index_config_init(&c);
  static const char *const reserved[] = {IC_INDEX_PROBE_TENANT};
  c.reserved_tenants = reserved;
  c.n_reserved_tenants = 1;
  c.eviction_resolver = eviction;
  c.resolver_ud = pol;
  ix = ic_index_create(&c);
  mx = ic_metrics_new();
  static const char *const cl[] = {"model", "reason_code", "hint_used"};
  static const char *const ml[] = {"model"};
  static const double b[] = {0.001, 0.01};
  calls = ic_metrics_counter(mx, "calls", "h", 3, cl);
  lat = ic_metrics_histogram(mx, "lat", "h", 1, ml, b, 2);
  ic_svc_config_t sc = {.index = ix, .policy = pol, .lookup_calls = calls, .lookup_latency = lat};
  svc = ic_svc_new(&sc);
  cr_assert_not_null(svc);
}

static void teardown(void) {
  ic_svc_free(svc);
  ic_index_destroy(ix);
  ic_policy_store_free(pol);
  ic_metrics_free(mx);
}

TestSuite(svc, .init = setup, .fini = teardown);

static void push(const char *json) {
  ic_policy_doc_t *doc = NULL;
  char msg[256];
  cr_assert_eq(ic_policy_parse(json, strlen(json), false, &doc, msg, sizeof msg), IC_POLICY_OK, "%s", msg);
  cr_assert_eq(ic_policy_store_replace(pol, doc), 0);
}

static ic_index_bytes_t B(const char *s) { return (ic_index_bytes_t){strlen(s), (const uint8_t *)s}; }

static void ingest_legacy(const char *tenant, const char *replica, const char *hash, int32_t tokens, float hit) {
  ic_index_prefix_t p = {.prefix_hash = B(hash), .token_count = tokens};
  ic_index_stats_t st = {.hit_rate = hit};
  ic_index_update_t u = {.replica = replica, .model = "m", .tenant = tenant, .scheme = "vllm", .prefixes = &p,
                         .n_prefixes = 1, .stats = hit > 0 ? &st : NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
}

static resp_t *call(req_t *q, int64_t deadline) {
  size_t n = inferencecache__v1alpha1__lookup_route_request__get_packed_size(q);
  uint8_t *b = malloc(n + 1);
  inferencecache__v1alpha1__lookup_route_request__pack(q, b);
  ic_buf_t out = IC_BUF_INIT;
  const char *msg = NULL;
  cr_assert_eq(ic_svc_lookup_route(svc, b, n, deadline, &out, &msg), IC_RPC_OK);
  free(b);
  resp_t *r = inferencecache__v1alpha1__lookup_route_response__unpack(NULL, out.len, (const uint8_t *)out.data);
  cr_assert_not_null(r);
  ic_buf_free(&out);
  return r;
}

static req_t legacy_req(const char *tenant, const char *hash, int32_t tokens) {
  req_t q = INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.tenant_id = (char *)tenant;
  q.model_id = "m";
  q.hash_scheme = "vllm";
  q.prefix_hash = (ProtobufCBinaryData){strlen(hash), (uint8_t *)hash};
  q.prefix_token_count = tokens;
  return q;
}

static const char *code_of(req_t q) {
  static char buf[64];
  resp_t *r = call(&q, INT64_MAX);
  snprintf(buf, sizeof buf, "%s", r->reason_code);
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  return buf;
}

static double metric(const char *model, const char *code, const char *hint) {
  const char *lv[3] = {model, code, hint};
  return ic_metric_value(ic_metric_child(calls, lv));
}

Test(svc, probe_tenant_is_no_hint_with_zero_latency_and_counted) {
  ingest_legacy(IC_INDEX_PROBE_TENANT, "r1", "P", 128, 0);
  req_t q = legacy_req(IC_INDEX_PROBE_TENANT, "P", 128);
  resp_t *r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "NO_HINT");
  cr_assert_eq(r->lookup_latency_us, 0);
  cr_assert_eq(r->n_replica_scores, 0);
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  cr_assert_eq(metric("m", "NO_HINT", "false"), 1);
}

Test(svc, prefix_match_tenant_hot_and_diagnostics) {
  ingest_legacy("t", "r1", "H", 128, 0.8f);
  req_t q = legacy_req("t", "H", 128);
  resp_t *r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "PREFIX_MATCH");
  cr_assert_eq(r->n_replica_scores, 1);
  cr_assert_eq(r->replica_scores[0]->matched_tokens, 128);
  cr_assert_str_eq(r->adapter_id, "");
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  cr_assert_str_eq(code_of(legacy_req("t", "novel", 128)), "TENANT_HOT");
  cr_assert_str_eq(code_of(legacy_req("u", "novel", 128)), "UNKNOWN_TENANT");
  req_t q2 = legacy_req("t", "novel", 128);
  q2.model_id = "m2";
  cr_assert_str_eq(code_of(q2), "UNKNOWN_MODEL");
  q2 = legacy_req("t", "novel", 128);
  q2.hash_scheme = "sglang";
  cr_assert_str_eq(code_of(q2), "UNKNOWN_HASH_SCHEME");
  q2.hash_scheme = "";
  cr_assert_str_eq(code_of(q2), "NO_HINT");
  cr_assert_eq(metric("m", "PREFIX_MATCH", "true"), 1);
  cr_assert_eq(metric("m2", "UNKNOWN_MODEL", "false"), 1);
}

Test(svc, require_chain_and_chain_matching_disabled) {
  ingest_legacy("t", "r1", "X", 128, 0);
  push("{\"version\":7,\"policies\":[{\"namespace\":\"t\",\"strategy\":{\"requireChain\":true}},"
       "{\"namespace\":\"nc\",\"affinityRouting\":false,\"strategy\":{\"enableChainMatching\":false}}]}");
  req_t q = legacy_req("t", "X", 128);
  resp_t *r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "POLICY_REQUIRES_CHAIN");
  cr_assert_eq(r->n_replica_scores, 0);
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  ingest_legacy("nc", "r1", "X", 128, 0);
  /* chain off: prefix_hash wins even with a malformed chain */
  req_t q2 = legacy_req("nc", "X", 128);
  ProtobufCBinaryData bh[2] = {{1, (uint8_t *)"a"}, {1, (uint8_t *)"b"}};
  int32_t counts[1] = {16};
  q2.n_block_hashes = 2;
  q2.block_hashes = bh;
  q2.n_block_token_counts = 1;
  q2.block_token_counts = counts;
  cr_assert_str_eq(code_of(q2), "PREFIX_MATCH");
  /* chain only with chain matching off -> NO_HINT */
  q2.prefix_hash = (ProtobufCBinaryData){0, NULL};
  cr_assert_str_eq(code_of(q2), "NO_HINT");
}

Test(svc, minimum_prefix_tokens_with_and_without_affinity) {
  ingest_legacy("a", "r1", "K", 10, 0);
  ingest_legacy("b", "r1", "K", 10, 0);
  push("{\"version\":7,\"policies\":[{\"namespace\":\"a\",\"minimumPrefixTokens\":200,\"affinityRouting\":false,"
       "\"minimumMatchedTokens\":0},{\"namespace\":\"b\",\"minimumPrefixTokens\":200,\"minimumMatchedTokens\":0}]}");
  cr_assert_str_eq(code_of(legacy_req("a", "K", 10)), "NO_HINT");
  /* affinity on: the real hit is downgraded and rescued as AFFINITY_HINT r1 with zero fields */
  req_t q = legacy_req("b", "K", 10);
  resp_t *r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "AFFINITY_HINT");
  cr_assert_eq(r->n_replica_scores, 1);
  cr_assert_str_eq(r->replica_scores[0]->replica_id, "r1");
  cr_assert_eq(r->replica_scores[0]->score, 0);
  cr_assert_eq(r->replica_scores[0]->matched_tokens, 0);
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
}

Test(svc, matched_tokens_floor_default_and_filtering) {
  /* no policy: floor 64 drops the 16-token match; affinity (default on) rescues it */
  ingest_legacy("f", "r16", "S", 16, 0);
  cr_assert_str_eq(code_of(legacy_req("f", "S", 16)), "AFFINITY_HINT");
  /* a policy without minimumMatchedTokens turns the floor off */
  push("{\"version\":7,\"policies\":[{\"namespace\":\"g\",\"affinityRouting\":false,\"minimumMatchedTokens\":64},"
       "{\"namespace\":\"o\",\"affinityRouting\":false}]}");
  ingest_legacy("o", "r16", "S", 16, 0);
  cr_assert_str_eq(code_of(legacy_req("o", "S", 16)), "PREFIX_MATCH");
  ingest_legacy("g", "r16", "S", 16, 0);
  cr_assert_str_eq(code_of(legacy_req("g", "S", 16)), "NO_HINT");
  ingest_legacy("g", "r64", "T", 64, 0);
  cr_assert_str_eq(code_of(legacy_req("g", "T", 64)), "PREFIX_MATCH"); /* inclusive */
}

Test(svc, routing_floor_and_tenant_hot_gate) {
  push("{\"version\":7,\"policies\":[{\"namespace\":\"s\",\"affinityRouting\":false},"
       "{\"namespace\":\"h\",\"affinityRouting\":false,\"strategy\":{\"enableTenantHot\":false}}]}");
  for (int i = 0; i < 3; i++) {
    char rid[8];
    snprintf(rid, sizeof rid, "r%d", i);
    ingest_legacy("s", rid, "ALL", 1500, 0);
  }
  cr_assert_str_eq(code_of(legacy_req("s", "ALL", 1500)), "NO_HINT");
  ingest_legacy("h", "r1", "Z", 128, 0.9f);
  cr_assert_str_eq(code_of(legacy_req("h", "novel", 128)), "NO_HINT");
}

Test(svc, lfu_credit_only_on_delivered_prefix_match) {
  push("{\"version\":7,\"policies\":[{\"namespace\":\"l\",\"eviction\":\"lfu\",\"minimumMatchedTokens\":0}]}");
  ingest_legacy("l", "r1", "L", 64, 0);
  for (int i = 0; i < 3; i++) cr_assert_str_eq(code_of(legacy_req("l", "L", 64)), "PREFIX_MATCH");
  cr_assert_eq(ic_index_access_count(ix, "l", "m", "vllm", "", (const uint8_t *)"L", 1, "r1"), 3);
  /* a TIMEOUT (deadline already passed) does not credit */
  req_t q = legacy_req("l", "L", 64);
  resp_t *r = call(&q, 0);
  cr_assert_str_eq(r->reason_code, "TIMEOUT");
  cr_assert_str_eq(r->adapter_id, "");
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  cr_assert_eq(ic_index_access_count(ix, "l", "m", "vllm", "", (const uint8_t *)"L", 1, "r1"), 3);
}

Test(svc, token_ids_match_the_golden_chain) {
  /* golden multi_block_chain: tokens 1..64 -> 4 prefix hashes (tests/data/fingerprint_golden.json) */
  uint32_t toks[64];
  for (int i = 0; i < 64; i++) toks[i] = (uint32_t)(i + 1);
  req_t q = INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.tenant_id = "tok";
  q.model_id = "m";
  q.hash_scheme = "vllm";
  q.n_token_ids = 64;
  q.token_ids = toks;
  /* nothing indexed for this tenant yet, but another tenant exists: UNKNOWN_TENANT proves the
   * lookup ran with a well-formed derived chain (no fail-open) */
  ingest_legacy("other", "r1", "x", 16, 0);
  cr_assert_str_eq(code_of(q), "UNKNOWN_TENANT");
  q.n_token_ids = 8; /* below one block */
  cr_assert_str_eq(code_of(q), "NO_HINT");
  q.n_token_ids = 0;
  q.prompt_text = "hello";
  resp_t *r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "NO_HINT");
  cr_assert_eq(r->n_token_ids, 0);
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
}

Test(svc, affinity_vector_from_the_spec) {
  for (int i = 1; i <= 3; i++) {
    char rid[8];
    snprintf(rid, sizeof rid, "r-%d", i);
    ingest_legacy("aff", rid, rid, 128, 0);
  }
  req_t q = INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.tenant_id = "aff";
  q.model_id = "m";
  q.hash_scheme = "vllm";
  ProtobufCBinaryData bh[2] = {{14, (uint8_t *)"prompt-block-1"}, {14, (uint8_t *)"prompt-block-2"}};
  int32_t counts[2] = {16, 16};
  q.n_block_hashes = 2;
  q.block_hashes = bh;
  q.n_block_token_counts = 2;
  q.block_token_counts = counts;
  q.adapter_id = "ad";
  resp_t *r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "AFFINITY_HINT");
  cr_assert_str_eq(r->replica_scores[0]->replica_id, "r-1");
  cr_assert_str_eq(r->adapter_id, "ad");
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  cr_assert_eq(metric("m", "AFFINITY_HINT", "true"), 1);
}

Test(svc, undecodable_and_invalid_utf8_are_internal) {
  ic_buf_t out = IC_BUF_INIT;
  const char *msg = NULL;
  cr_assert_eq(ic_svc_lookup_route(svc, (const uint8_t *)"\xff\xff\xff", 3, INT64_MAX, &out, &msg), IC_RPC_INTERNAL);
  cr_assert_not_null(msg);
  cr_assert_eq(ic_svc_lookup_route(svc, (const uint8_t *)"\x0a\x02\xc3\x28", 4, INT64_MAX, &out, &msg),
               IC_RPC_INTERNAL);
  cr_assert_eq(ic_svc_report_one(svc, (const uint8_t *)"\x12\x01\xff", 3, &msg), IC_RPC_INTERNAL);
  cr_assert_eq(out.len, 0);
  cr_assert(ic_svc_utf8_valid("h\xc3\xa9", 3));
  cr_assert_not(ic_svc_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
  cr_assert_not(ic_svc_utf8_valid("\xc0\x80", 2));     /* overlong */
  ic_buf_free(&out);
}

static size_t pack_update(Inferencecache__V1alpha1__CacheStateUpdate *u, uint8_t *buf) {
  return inferencecache__v1alpha1__cache_state_update__pack(u, buf);
}

Test(svc, report_event_and_cache_state) {
  Inferencecache__V1alpha1__ReplicaStats st = INFERENCECACHE__V1ALPHA1__REPLICA_STATS__INIT;
  st.cache_memory_bytes = 2048;
  st.t2_hit_tokens = 600;
  st.t2_query_tokens = 1000;
  st.client_version = "v1";
  st.load_reported = true; /* additive fields 8-11 (docs/ranking.md) */
  st.num_requests_waiting = 5;
  st.num_requests_running = -2; /* stored as 0 */
  st.kv_cache_usage = 0.5f;
  Inferencecache__V1alpha1__PrefixEntry pe = INFERENCECACHE__V1ALPHA1__PREFIX_ENTRY__INIT;
  pe.prefix_hash = (ProtobufCBinaryData){1, (uint8_t *)"E"};
  pe.token_count = 128;
  Inferencecache__V1alpha1__PrefixEntry *pp = &pe;
  Inferencecache__V1alpha1__CacheStateUpdate u = INFERENCECACHE__V1ALPHA1__CACHE_STATE_UPDATE__INIT;
  u.replica_id = "replica-a";
  u.model_id = "m";
  u.tenant_id = "t";
  u.hash_scheme = "vllm";
  u.n_prefixes = 1;
  u.prefixes = &pp;
  u.stats = &st;
  uint8_t buf[512];
  const char *msg;
  cr_assert_eq(ic_svc_report_one(svc, buf, pack_update(&u, buf), &msg), IC_RPC_OK);
  u.replica_id = "replica-b";
  u.stats = NULL;
  cr_assert_eq(ic_svc_report_one(svc, buf, pack_update(&u, buf), &msg), IC_RPC_OK);
  u.tenant_id = IC_INDEX_PROBE_TENANT; /* dropped */
  cr_assert_eq(ic_svc_report_one(svc, buf, pack_update(&u, buf), &msg), IC_RPC_OK);

  Inferencecache__V1alpha1__GetCacheStateRequest g = INFERENCECACHE__V1ALPHA1__GET_CACHE_STATE_REQUEST__INIT;
  g.model_id = "m";
  g.tenant_id = "t";
  size_t n = inferencecache__v1alpha1__get_cache_state_request__pack(&g, buf);
  ic_buf_t out = IC_BUF_INIT;
  cr_assert_eq(ic_svc_get_cache_state(svc, buf, n, &out, &msg), IC_RPC_OK);
  Inferencecache__V1alpha1__GetCacheStateResponse *gs =
      inferencecache__v1alpha1__get_cache_state_response__unpack(NULL, out.len, (const uint8_t *)out.data);
  cr_assert_eq(gs->summary->total_prefixes, 1);
  cr_assert_eq(gs->n_replicas, 1);
  cr_assert_str_eq(gs->replicas[0]->replica_id, "replica-a");
  cr_assert_eq(gs->replicas[0]->cache_memory_bytes, 2048);
  cr_assert_eq(gs->replicas[0]->t2_hit_tokens, 600);
  cr_assert_str_eq(gs->replicas[0]->client_version, "");
  cr_assert(gs->replicas[0]->load_reported);
  cr_assert_eq(gs->replicas[0]->num_requests_waiting, 5);
  cr_assert_eq(gs->replicas[0]->num_requests_running, 0);
  cr_assert_float_eq(gs->replicas[0]->kv_cache_usage, 0.5f, 1e-7);
  inferencecache__v1alpha1__get_cache_state_response__free_unpacked(gs, NULL);
  /* probe tenant: empty with a summary */
  g.tenant_id = IC_INDEX_PROBE_TENANT;
  n = inferencecache__v1alpha1__get_cache_state_request__pack(&g, buf);
  ic_buf_reset(&out);
  cr_assert_eq(ic_svc_get_cache_state(svc, buf, n, &out, &msg), IC_RPC_OK);
  gs = inferencecache__v1alpha1__get_cache_state_response__unpack(NULL, out.len, (const uint8_t *)out.data);
  cr_assert_not_null(gs->summary);
  cr_assert_eq(gs->summary->total_prefixes, 0);
  inferencecache__v1alpha1__get_cache_state_response__free_unpacked(gs, NULL);

  /* PREFIX_EVICTED for replica-a leaves replica-b */
  Inferencecache__V1alpha1__CacheEvent ev = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__INIT;
  ev.type = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__TYPE__PREFIX_EVICTED;
  ev.replica_id = "replica-a";
  ev.model_id = "m";
  ev.tenant_id = "t";
  ev.prefix_hash = (ProtobufCBinaryData){1, (uint8_t *)"E"};
  n = inferencecache__v1alpha1__cache_event__pack(&ev, buf);
  ic_buf_reset(&out);
  cr_assert_eq(ic_svc_publish_event(svc, buf, n, &out, &msg), IC_RPC_OK);
  Inferencecache__V1alpha1__Ack *a = inferencecache__v1alpha1__ack__unpack(NULL, out.len, (const uint8_t *)out.data);
  cr_assert(a->accepted);
  inferencecache__v1alpha1__ack__free_unpacked(a, NULL);
  push("{\"version\":7,\"policies\":[{\"namespace\":\"t\",\"affinityRouting\":false}]}");
  req_t q = legacy_req("t", "E", 128);
  resp_t *r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "PREFIX_MATCH");
  cr_assert_eq(r->n_replica_scores, 1);
  cr_assert_str_eq(r->replica_scores[0]->replica_id, "replica-b");
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  ic_buf_free(&out);
}

Test(svc, stubs_answer_like_the_reference) {
  ic_buf_t out = IC_BUF_INIT;
  const char *msg;
  cr_assert_eq(ic_svc_render_template(svc, NULL, 0, &out, &msg), IC_RPC_OK);
  Inferencecache__V1alpha1__RenderTemplateResponse *rt =
      inferencecache__v1alpha1__render_template_response__unpack(NULL, out.len, (const uint8_t *)out.data);
  cr_assert_str_eq(rt->reason_code, "OK");
  cr_assert_eq(rt->stable_prefix_hash.len, 0);
  inferencecache__v1alpha1__render_template_response__free_unpacked(rt, NULL);
  ic_buf_reset(&out);
  cr_assert_eq(ic_svc_lookup_pd_route(svc, NULL, 0, &out, &msg), IC_RPC_OK);
  Inferencecache__V1alpha1__LookupPDRouteResponse *pd =
      inferencecache__v1alpha1__lookup_pdroute_response__unpack(NULL, out.len, (const uint8_t *)out.data);
  cr_assert_str_eq(pd->reason_code, "NO_HINT");
  inferencecache__v1alpha1__lookup_pdroute_response__free_unpacked(pd, NULL);
  ic_buf_free(&out);
}

Test(svc, event_filters_and_change_encoding) {
  Inferencecache__V1alpha1__StreamEventsRequest q = INFERENCECACHE__V1ALPHA1__STREAM_EVENTS_REQUEST__INIT;
  Inferencecache__V1alpha1__CacheEvent__Type types[1] = {INFERENCECACHE__V1ALPHA1__CACHE_EVENT__TYPE__ALL_CLEARED};
  q.tenant_id = "t";
  q.n_types = 1;
  q.types = types;
  uint8_t buf[128];
  size_t n = inferencecache__v1alpha1__stream_events_request__pack(&q, buf);
  ic_svc_event_filter_t f;
  cr_assert_eq(ic_svc_event_filter_parse(buf, n, &f), IC_RPC_OK);
  ic_index_change_t c = {.type = IC_INDEX_CHANGE_ALL_CLEARED, .tenant = "t", .model = "m", .adapter = "",
                         .replica = "r", .timestamp_ns = 5000};
  cr_assert(ic_svc_event_filter_match(&f, &c));
  c.type = IC_INDEX_CHANGE_PREFIX_ADDED;
  cr_assert_not(ic_svc_event_filter_match(&f, &c));
  c.type = IC_INDEX_CHANGE_ALL_CLEARED;
  c.tenant = "other";
  cr_assert_not(ic_svc_event_filter_match(&f, &c));
  c.tenant = IC_INDEX_PROBE_TENANT;
  cr_assert_not(ic_svc_event_filter_match(&f, &c));
  ic_svc_event_filter_free(&f);
  c.tenant = "t";
  c.hash = (const uint8_t *)"hh";
  c.hash_len = 2;
  ic_buf_t out = IC_BUF_INIT;
  cr_assert_eq(ic_svc_change_encode(&c, &out), 0);
  Inferencecache__V1alpha1__CacheEvent *e =
      inferencecache__v1alpha1__cache_event__unpack(NULL, out.len, (const uint8_t *)out.data);
  cr_assert_eq(e->type, INFERENCECACHE__V1ALPHA1__CACHE_EVENT__TYPE__ALL_CLEARED);
  cr_assert_str_eq(e->tenant_id, "t");
  cr_assert_eq(e->timestamp_us, 5);
  cr_assert_eq(e->prefix_hash.len, 2);
  inferencecache__v1alpha1__cache_event__free_unpacked(e, NULL);
  ic_buf_free(&out);
}

static void count_emit(void *ud, const char *name, const char *type, const uint8_t *m, size_t len) {
  (void)type;
  Inferencecache__V1alpha1__Metric *x = inferencecache__v1alpha1__metric__unpack(NULL, len, m);
  cr_assert_not_null(x);
  cr_assert_str_eq(x->name, name);
  inferencecache__v1alpha1__metric__free_unpacked(x, NULL);
  (*(int *)ud)++;
}

Test(svc, metric_filters) {
  ingest_legacy("t", "r1", "H", 128, 0);
  req_t q = legacy_req("t", "H", 128);
  code_of(q);
  Inferencecache__V1alpha1__StreamMetricsRequest mq = INFERENCECACHE__V1ALPHA1__STREAM_METRICS_REQUEST__INIT;
  char *names[1] = {"lat"};
  mq.n_names = 1;
  mq.names = names;
  uint8_t buf[64];
  size_t n = inferencecache__v1alpha1__stream_metrics_request__pack(&mq, buf);
  ic_svc_metric_filter_t f;
  cr_assert_eq(ic_svc_metric_filter_parse(buf, n, &f), IC_RPC_OK);
  int count = 0;
  ic_svc_metrics_encode(mx, &f, 1, count_emit, &count);
  cr_assert_eq(count, 5); /* 3 buckets (incl. +Inf) + sum + count */
  cr_assert(ic_svc_metric_filter_match(&f, "lat_bucket", "histogram"));
  cr_assert_not(ic_svc_metric_filter_match(&f, "calls", "counter"));
  ic_svc_metric_filter_free(&f);
}

/* Load-aware ranking (docs/ranking.md): off by default, on per tenant via
 * strategy.loadAwareRouting; an overloaded sole holder gives NO_HINT, not a load-blind affinity. */
static void ingest_load(const char *tenant, const char *replica, int32_t waiting) {
  ic_index_stats_t st = {.load_reported = true, .num_waiting = waiting};
  ic_index_update_t u = {.replica = replica, .model = "m", .tenant = tenant, .scheme = "vllm", .stats = &st};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
}

static const char *first_of(req_t q, char *code, size_t n) {
  static char id[32];
  resp_t *r = call(&q, INT64_MAX);
  snprintf(code, n, "%s", r->reason_code);
  snprintf(id, sizeof id, "%s", r->n_replica_scores ? r->replica_scores[0]->replica_id : "");
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  return id;
}

Test(svc, load_aware_routing_switch) {
  push("{\"version\":7,\"policies\":[{\"namespace\":\"la\",\"minimumMatchedTokens\":0,"
       "\"strategy\":{\"loadAwareRouting\":true}},{\"namespace\":\"off\",\"minimumMatchedTokens\":0}]}");
  const char *tenants[] = {"la", "off"};
  char code[64];
  for (int t = 0; t < 2; t++) {
    ingest_legacy(tenants[t], "busy", "P", 512, 0);
    ingest_legacy(tenants[t], "calm", "P", 512, 0);
    ingest_load(tenants[t], "busy", 40);
    ingest_load(tenants[t], "calm", 0);
    ingest_load(tenants[t], "idle", 0);
  }
  /* off: the reference's answer, queues unseen: every serving replica holds P, so P
     distinguishes nothing (score 0 < floor) and the consistent hash picks */
  first_of(legacy_req("off", "P", 512), code, sizeof code);
  cr_assert_str_eq(code, "AFFINITY_HINT");
  /* on: busy (40 queued, fleet mean 13.3 -> bound 30.7) falls out */
  req_t q = legacy_req("la", "P", 512);
  resp_t *r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "PREFIX_MATCH");
  cr_assert_eq(r->n_replica_scores, 1);
  cr_assert_str_eq(r->replica_scores[0]->replica_id, "calm");
  cr_assert_float_eq(r->replica_scores[0]->score, 512.0f, 0.5f, "tokens saved x freshness, nothing queued");
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  /* the only holder overloaded: NO_HINT (the gateway balances by load), no affinity pick */
  ingest_legacy("la", "busy", "Q", 512, 0);
  cr_assert_str_eq(first_of(legacy_req("la", "Q", 512), code, sizeof code), "");
  cr_assert_str_eq(code, "NO_HINT");
  ingest_legacy("off", "busy", "Q", 512, 0);
  cr_assert_str_eq(first_of(legacy_req("off", "Q", 512), code, sizeof code), "busy");
}

/* Predict-on-route (docs/ranking.md, section 3): off by default; on per tenant via
 * strategy.predictOnRoute, the replica an answer names holds the prompt speculatively until the
 * engine's events arrive, so a sibling sent meanwhile is a PREFIX_MATCH there (tier SPECULATIVE),
 * and the real event confirms it. */
Test(svc, predict_on_route_switch) {
  push("{\"version\":7,\"policies\":[{\"namespace\":\"pr\",\"minimumMatchedTokens\":0,"
       "\"strategy\":{\"predictOnRoute\":true}},{\"namespace\":\"off\",\"minimumMatchedTokens\":0}]}");
  const char *tenants[] = {"pr", "off"};
  char code[64];
  for (int t = 0; t < 2; t++) {
    ingest_legacy(tenants[t], "ra", "Z1", 64, 0);
    ingest_legacy(tenants[t], "rb", "Z2", 64, 0);
    ingest_legacy(tenants[t], "rc", "Z3", 64, 0);
  }
  /* off: a new prompt twice, two load-blind consistent-hash answers, nothing recorded */
  char first[32];
  snprintf(first, sizeof first, "%s", first_of(legacy_req("off", "NEW", 4096), code, sizeof code));
  cr_assert_str_eq(code, "AFFINITY_HINT");
  first_of(legacy_req("off", "NEW", 4096), code, sizeof code);
  cr_assert_str_eq(code, "AFFINITY_HINT");
  ic_index_predict_stats_t st;
  ic_index_predict_stats(ix, &st);
  cr_assert_eq(st.created, 0);
  /* on: the first answer is the same hash pick, recorded; the sibling finds it */
  cr_assert_str_eq(first_of(legacy_req("pr", "NEW", 4096), code, sizeof code), first);
  cr_assert_str_eq(code, "AFFINITY_HINT");
  ic_index_predict_stats(ix, &st);
  cr_assert_eq(st.created, 1);
  req_t q = legacy_req("pr", "NEW", 4096);
  resp_t *r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "PREFIX_MATCH");
  cr_assert_eq(r->n_replica_scores, 1);
  cr_assert_str_eq(r->replica_scores[0]->replica_id, first);
  cr_assert_eq((int)r->replica_scores[0]->tier, INFERENCECACHE__V1ALPHA1__CACHE_TIER__CACHE_TIER_SPECULATIVE);
  cr_assert_eq(r->replica_scores[0]->matched_tokens, 4096);
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  /* the engine reports it: confirmed, and the answer is a real T1 match */
  ingest_legacy("pr", first, "NEW", 4096, 0);
  ic_index_predict_stats(ix, &st);
  cr_assert_eq(st.confirmed, 1);
  cr_assert_eq(st.entries, 0);
  q = legacy_req("pr", "NEW", 4096);
  r = call(&q, INT64_MAX);
  cr_assert_str_eq(r->reason_code, "PREFIX_MATCH");
  cr_assert_eq((int)r->replica_scores[0]->tier, 1);
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
}

/* Both switches: a new prompt goes to the replica with the least work (queue plus the routes
 * predicted since its sample) instead of the load-blind hash pick. */
Test(svc, predict_and_load_pick_the_least_loaded) {
  push("{\"version\":7,\"policies\":[{\"namespace\":\"both\",\"minimumMatchedTokens\":0,"
       "\"strategy\":{\"predictOnRoute\":true,\"loadAwareRouting\":true}}]}");
  ingest_legacy("both", "ra", "Z1", 64, 0);
  ingest_legacy("both", "rb", "Z2", 64, 0);
  ingest_load("both", "ra", 5);
  ingest_load("both", "rb", 0);
  char code[64];
  cr_assert_str_eq(first_of(legacy_req("both", "N1", 1024), code, sizeof code), "rb");
  cr_assert_str_eq(code, "AFFINITY_HINT");
  /* its sibling follows the prediction */
  cr_assert_str_eq(first_of(legacy_req("both", "N1", 1024), code, sizeof code), "rb");
  cr_assert_str_eq(code, "PREFIX_MATCH");
}

/* Replaces the first '#' in buf[0..n) by a NUL byte: protobuf-c packs char* fields with
   strlen, so a NUL inside a string field is written this way. */
static void nul_at_hash(uint8_t *buf, size_t n) {
  uint8_t *p = memchr(buf, '#', n);
  cr_assert_not_null(p);
  *p = 0;
}

static const char *lookup_code_raw(const uint8_t *b, size_t n, int *rc, const char **msg) {
  static char code[64];
  ic_buf_t out = IC_BUF_INIT;
  *rc = ic_svc_lookup_route(svc, b, n, INT64_MAX, &out, msg);
  code[0] = 0;
  if (*rc == IC_RPC_OK) {
    resp_t *r = inferencecache__v1alpha1__lookup_route_response__unpack(NULL, out.len,
                                                                        (const uint8_t *)out.data);
    snprintf(code, sizeof code, "%s", r->reason_code);
    inferencecache__v1alpha1__lookup_route_response__free_unpacked(r, NULL);
  }
  ic_buf_free(&out);
  return code;
}

/* Issue 16 item 7: "pod-a\0other" must never alias "pod-a", nor "m\0zzz" land in "m". */
Test(svc, nul_inside_an_identity_is_invalid_argument_never_truncated) {
  push("{\"version\":7,\"policies\":[{\"namespace\":\"t\",\"affinityRouting\":false}]}");
  ingest_legacy("t", "pod-a", "E", 128, 0);
  uint8_t buf[512];
  const char *msg = NULL;
  ic_buf_t out = IC_BUF_INIT;
  /* ALL_CLEARED for "pod-a\0other" */
  Inferencecache__V1alpha1__CacheEvent ev = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__INIT;
  ev.type = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__TYPE__ALL_CLEARED;
  ev.replica_id = "pod-a#other";
  ev.model_id = "m";
  ev.tenant_id = "t";
  size_t n = inferencecache__v1alpha1__cache_event__pack(&ev, buf);
  nul_at_hash(buf, n);
  cr_assert_eq(ic_svc_publish_event(svc, buf, n, &out, &msg), IC_RPC_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(msg, "replica_id contains a NUL byte"), "%s", msg);
  cr_assert_eq(out.len, 0);
  req_t q = legacy_req("t", "E", 128);
  cr_assert_str_eq(code_of(q), "PREFIX_MATCH"); /* pod-a still advertised */
  /* ReportCacheState for model "m\0zzz" */
  Inferencecache__V1alpha1__PrefixEntry pe = INFERENCECACHE__V1ALPHA1__PREFIX_ENTRY__INIT;
  pe.prefix_hash = (ProtobufCBinaryData){1, (uint8_t *)"F"};
  pe.token_count = 64;
  Inferencecache__V1alpha1__PrefixEntry *pp = &pe;
  Inferencecache__V1alpha1__CacheStateUpdate u = INFERENCECACHE__V1ALPHA1__CACHE_STATE_UPDATE__INIT;
  u.replica_id = "pod-b";
  u.model_id = "m#zzz";
  u.tenant_id = "t";
  u.hash_scheme = "vllm";
  u.n_prefixes = 1;
  u.prefixes = &pp;
  n = pack_update(&u, buf);
  nul_at_hash(buf, n);
  cr_assert_eq(ic_svc_report_one(svc, buf, n, &msg), IC_RPC_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(msg, "model_id"), "%s", msg);
  q = legacy_req("t", "F", 64);
  cr_assert_str_eq(code_of(q), "NO_HINT"); /* nothing landed in "m" */
  /* nested string (adapter_id of a PrefixEntry) */
  u.model_id = "m";
  pe.adapter_id = "lora#1";
  n = pack_update(&u, buf);
  nul_at_hash(buf, n);
  cr_assert_eq(ic_svc_report_one(svc, buf, n, &msg), IC_RPC_INVALID_ARGUMENT);
  /* LookupRoute and GetCacheState with a NUL tenant */
  q = legacy_req("t#x", "E", 128);
  n = inferencecache__v1alpha1__lookup_route_request__pack(&q, buf);
  nul_at_hash(buf, n);
  int rc;
  lookup_code_raw(buf, n, &rc, &msg);
  cr_assert_eq(rc, IC_RPC_INVALID_ARGUMENT);
  Inferencecache__V1alpha1__GetCacheStateRequest g =
      INFERENCECACHE__V1ALPHA1__GET_CACHE_STATE_REQUEST__INIT;
  g.model_id = "m";
  g.tenant_id = "t#";
  n = inferencecache__v1alpha1__get_cache_state_request__pack(&g, buf);
  nul_at_hash(buf, n);
  cr_assert_eq(ic_svc_get_cache_state(svc, buf, n, &out, &msg), IC_RPC_INVALID_ARGUMENT);
  /* StreamCacheEvents filter */
  Inferencecache__V1alpha1__StreamEventsRequest sq =
      INFERENCECACHE__V1ALPHA1__STREAM_EVENTS_REQUEST__INIT;
  sq.tenant_id = "t#other";
  n = inferencecache__v1alpha1__stream_events_request__pack(&sq, buf);
  nul_at_hash(buf, n);
  ic_svc_event_filter_t f;
  cr_assert_eq(ic_svc_event_filter_parse(buf, n, &f), IC_RPC_INVALID_ARGUMENT);
  /* Invalid UTF-8 still wins over a NUL (Go's unmarshal error comes first): INTERNAL. */
  ev.replica_id = "pod#";
  ev.model_id = "\xff";
  n = inferencecache__v1alpha1__cache_event__pack(&ev, buf);
  nul_at_hash(buf, n);
  cr_assert_eq(ic_svc_publish_event(svc, buf, n, &out, &msg), IC_RPC_INTERNAL);
  ic_buf_free(&out);
}

/* Issue 16 item 9: RenderTemplate and LookupPDRoute reject invalid UTF-8 like the others. */
Test(svc, render_template_and_pd_route_reject_invalid_utf8) {
  uint8_t buf[256];
  const char *msg = NULL;
  ic_buf_t out = IC_BUF_INIT;
  Inferencecache__V1alpha1__RenderTemplateRequest rt =
      INFERENCECACHE__V1ALPHA1__RENDER_TEMPLATE_REQUEST__INIT;
  rt.template_ref = "ns/\xc3\x28";
  size_t n = inferencecache__v1alpha1__render_template_request__pack(&rt, buf);
  cr_assert_eq(ic_svc_render_template(svc, buf, n, &out, &msg), IC_RPC_INTERNAL);
  cr_assert_str_eq(msg, "grpc: error unmarshalling request: string field contains invalid UTF-8");
  cr_assert_eq(out.len, 0);
  rt.template_ref = "ns/ok";
  n = inferencecache__v1alpha1__render_template_request__pack(&rt, buf);
  cr_assert_eq(ic_svc_render_template(svc, buf, n, &out, &msg), IC_RPC_OK);
  ic_buf_reset(&out);
  Inferencecache__V1alpha1__LookupPDRouteRequest pd =
      INFERENCECACHE__V1ALPHA1__LOOKUP_PDROUTE_REQUEST__INIT;
  pd.model_id = "m";
  pd.pd_topology_ref = "ns/\xed\xa0\x80"; /* a surrogate */
  n = inferencecache__v1alpha1__lookup_pdroute_request__pack(&pd, buf);
  cr_assert_eq(ic_svc_lookup_pd_route(svc, buf, n, &out, &msg), IC_RPC_INTERNAL);
  cr_assert_eq(out.len, 0);
  pd.pd_topology_ref = "ns/pd";
  n = inferencecache__v1alpha1__lookup_pdroute_request__pack(&pd, buf);
  cr_assert_eq(ic_svc_lookup_pd_route(svc, buf, n, &out, &msg), IC_RPC_OK);
  ic_buf_free(&out);
}

/* Issue 16 item 10: the minimumPrefixTokens gate sums block_token_counts in int32 with
   wrap-around like the reference (and the index's matched-token sums): a chain whose warm
   blocks match 200 tokens but whose unmatched tail claims INT32_MAX sums to a negative count,
   below any floor, so the answer is NO_HINT there and here (a 64-bit sum said PREFIX_MATCH). */
Test(svc, minimum_prefix_tokens_sum_wraps_at_32_bits_like_the_reference) {
  ic_index_bytes_t chain[2] = {B("blk-A"), B("blk-B")};
  int32_t counts[2] = {16, 16};
  ic_index_prefix_t p = {.block_hashes = chain,
                         .n_block_hashes = 2,
                         .block_token_counts = counts,
                         .n_block_token_counts = 2};
  ic_index_update_t u = {.replica = "r1",
                         .model = "m",
                         .tenant = "w",
                         .scheme = "vllm",
                         .prefixes = &p,
                         .n_prefixes = 1};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  push("{\"version\":7,\"policies\":[{\"namespace\":\"w\",\"minimumPrefixTokens\":100,"
       "\"affinityRouting\":false,"
       "\"minimumMatchedTokens\":0}]}");
  ProtobufCBinaryData bh[3] = {
      {5, (uint8_t *)"blk-A"}, {5, (uint8_t *)"blk-B"}, {5, (uint8_t *)"blk-C"}};
  req_t q = INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  q.tenant_id = "w";
  q.model_id = "m";
  q.hash_scheme = "vllm";
  q.n_block_hashes = 3;
  q.block_hashes = bh;
  int32_t ok[3] = {100, 100, 16}, wrap[3] = {100, 100, INT32_MAX};
  q.n_block_token_counts = 3;
  q.block_token_counts = ok;
  cr_assert_str_eq(code_of(q), "PREFIX_MATCH");
  q.block_token_counts = wrap;
  cr_assert_str_eq(code_of(q), "NO_HINT");
}
