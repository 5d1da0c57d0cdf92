/* The wire contract: every message of inferencecache.proto packs and unpacks to the same values,
 * including field numbers checked against hand-encoded bytes and open-enum values. */
#include <criterion/criterion.h>
#include <string.h>

#include "inferencecache/v1alpha1/inferencecache.pb-c.h"

#define ROUNDTRIP(type, lower, msgp)                                                     \
  ({                                                                                     \
    size_t n_ = lower##__get_packed_size(msgp);                                          \
    uint8_t *buf_ = malloc(n_ + 1);                                                      \
    cr_assert_eq(lower##__pack(msgp, buf_), n_);                                         \
    type *out_ = lower##__unpack(NULL, n_, buf_);                                        \
    cr_assert_not_null(out_, #type " unpacks");                                          \
    free(buf_);                                                                          \
    out_;                                                                                \
  })

static ProtobufCBinaryData bin(const char *s) { return (ProtobufCBinaryData){strlen(s), (uint8_t *)s}; }

Test(proto, render_template) {
  Inferencecache__V1alpha1__RenderTemplateRequest req = INFERENCECACHE__V1ALPHA1__RENDER_TEMPLATE_REQUEST__INIT;
  Inferencecache__V1alpha1__RenderTemplateRequest__VariablesEntry e1 = INFERENCECACHE__V1ALPHA1__RENDER_TEMPLATE_REQUEST__VARIABLES_ENTRY__INIT;
  e1.key = "user";
  e1.value = "bob";
  Inferencecache__V1alpha1__RenderTemplateRequest__VariablesEntry *ents[] = {&e1};
  req.template_ref = "ns/t";
  req.tenant_id = "team";
  req.n_variables = 1;
  req.variables = ents;
  Inferencecache__V1alpha1__RenderTemplateRequest *r = ROUNDTRIP(Inferencecache__V1alpha1__RenderTemplateRequest, inferencecache__v1alpha1__render_template_request, &req);
  cr_assert_str_eq(r->template_ref, "ns/t");
  cr_assert_str_eq(r->tenant_id, "team");
  cr_assert_eq(r->n_variables, 1);
  cr_assert_str_eq(r->variables[0]->key, "user");
  cr_assert_str_eq(r->variables[0]->value, "bob");
  inferencecache__v1alpha1__render_template_request__free_unpacked(r, NULL);

  Inferencecache__V1alpha1__RenderTemplateResponse resp = INFERENCECACHE__V1ALPHA1__RENDER_TEMPLATE_RESPONSE__INIT;
  resp.rendered_prompt = bin("hello");
  resp.stable_prefix_hash = bin("h");
  resp.tenant_namespace = bin("tn");
  resp.reason_code = "OK";
  resp.template_revision = "7";
  Inferencecache__V1alpha1__RenderTemplateResponse *p = ROUNDTRIP(Inferencecache__V1alpha1__RenderTemplateResponse, inferencecache__v1alpha1__render_template_response, &resp);
  cr_assert_eq(p->rendered_prompt.len, 5);
  cr_assert_eq(p->stable_prefix_hash.len, 1);
  cr_assert_eq(p->tenant_namespace.len, 2);
  cr_assert_str_eq(p->reason_code, "OK");
  cr_assert_str_eq(p->template_revision, "7");
  inferencecache__v1alpha1__render_template_response__free_unpacked(p, NULL);
}

Test(proto, lookup_route_request_and_response) {
  Inferencecache__V1alpha1__SLO slo = INFERENCECACHE__V1ALPHA1__SLO__INIT;
  slo.ttft_ms = 200;
  slo.tbt_ms = 20;
  Inferencecache__V1alpha1__LookupRouteRequest req = INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  ProtobufCBinaryData hashes[] = {bin("b0"), bin("b1")};
  int32_t counts[] = {16, 32};
  uint32_t toks[] = {1, 2, 3};
  req.model_id = "m";
  req.tenant_id = "t";
  req.prefix_hash = bin("ph");
  req.prefix_token_count = 32;
  req.hash_scheme = "vllm";
  req.slo = &slo;
  req.n_block_hashes = 2, req.block_hashes = hashes;
  req.n_block_token_counts = 2, req.block_token_counts = counts;
  req.n_token_ids = 3, req.token_ids = toks;
  req.prompt_text = "hi";
  req.adapter_id = "lora";
  Inferencecache__V1alpha1__LookupRouteRequest *r = ROUNDTRIP(Inferencecache__V1alpha1__LookupRouteRequest, inferencecache__v1alpha1__lookup_route_request, &req);
  cr_assert_str_eq(r->model_id, "m");
  cr_assert_str_eq(r->tenant_id, "t");
  cr_assert_eq(r->prefix_hash.len, 2);
  cr_assert_eq(r->prefix_token_count, 32);
  cr_assert_str_eq(r->hash_scheme, "vllm");
  cr_assert_eq(r->slo->ttft_ms, 200);
  cr_assert_eq(r->slo->tbt_ms, 20);
  cr_assert_eq(r->n_block_hashes, 2);
  cr_assert(memcmp(r->block_hashes[1].data, "b1", 2) == 0);
  cr_assert_eq(r->block_token_counts[1], 32);
  cr_assert_eq(r->n_token_ids, 3);
  cr_assert_eq(r->token_ids[2], 3);
  cr_assert_str_eq(r->prompt_text, "hi");
  cr_assert_str_eq(r->adapter_id, "lora");
  inferencecache__v1alpha1__lookup_route_request__free_unpacked(r, NULL);

  Inferencecache__V1alpha1__ReplicaScore s = INFERENCECACHE__V1ALPHA1__REPLICA_SCORE__INIT;
  s.replica_id = "r1";
  s.score = 1.5f;
  s.matched_tokens = 64;
  s.estimated_cache_hit_prob = 0.25f;
  s.tier = 99; /* open enum: preserved as an integer */
  Inferencecache__V1alpha1__ReplicaScore *ss[] = {&s};
  Inferencecache__V1alpha1__LookupRouteResponse resp = INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_RESPONSE__INIT;
  resp.n_replica_scores = 1, resp.replica_scores = ss;
  resp.reason_code = "PREFIX_MATCH";
  resp.lookup_latency_us = 12;
  resp.n_token_ids = 3, resp.token_ids = toks;
  resp.adapter_id = "lora";
  Inferencecache__V1alpha1__LookupRouteResponse *p = ROUNDTRIP(Inferencecache__V1alpha1__LookupRouteResponse, inferencecache__v1alpha1__lookup_route_response, &resp);
  cr_assert_eq(p->n_replica_scores, 1);
  cr_assert_str_eq(p->replica_scores[0]->replica_id, "r1");
  cr_assert_eq(p->replica_scores[0]->score, 1.5f);
  cr_assert_eq(p->replica_scores[0]->matched_tokens, 64);
  cr_assert_eq(p->replica_scores[0]->estimated_cache_hit_prob, 0.25f);
  cr_assert_eq((int)p->replica_scores[0]->tier, 99);
  cr_assert_str_eq(p->reason_code, "PREFIX_MATCH");
  cr_assert_eq(p->lookup_latency_us, 12);
  cr_assert_eq(p->n_token_ids, 3);
  cr_assert_str_eq(p->adapter_id, "lora");
  inferencecache__v1alpha1__lookup_route_response__free_unpacked(p, NULL);
}

Test(proto, pd_route) {
  Inferencecache__V1alpha1__LookupPDRouteRequest req = INFERENCECACHE__V1ALPHA1__LOOKUP_PDROUTE_REQUEST__INIT;
  req.model_id = "m", req.tenant_id = "t", req.prefix_hash = bin("x"), req.prefix_token_count = 5;
  req.pd_topology_ref = "ns/pd";
  Inferencecache__V1alpha1__LookupPDRouteRequest *r = ROUNDTRIP(Inferencecache__V1alpha1__LookupPDRouteRequest, inferencecache__v1alpha1__lookup_pdroute_request, &req);
  cr_assert_str_eq(r->model_id, "m");
  cr_assert_str_eq(r->tenant_id, "t");
  cr_assert_eq(r->prefix_hash.len, 1);
  cr_assert_eq(r->prefix_token_count, 5);
  cr_assert_str_eq(r->pd_topology_ref, "ns/pd");
  inferencecache__v1alpha1__lookup_pdroute_request__free_unpacked(r, NULL);
  Inferencecache__V1alpha1__LookupPDRouteResponse resp = INFERENCECACHE__V1ALPHA1__LOOKUP_PDROUTE_RESPONSE__INIT;
  resp.prefill_replica_id = "p", resp.decode_replica_id = "d", resp.transport_hint = "NIXL", resp.reason_code = "NO_HINT";
  Inferencecache__V1alpha1__LookupPDRouteResponse *p = ROUNDTRIP(Inferencecache__V1alpha1__LookupPDRouteResponse, inferencecache__v1alpha1__lookup_pdroute_response, &resp);
  cr_assert_str_eq(p->prefill_replica_id, "p");
  cr_assert_str_eq(p->decode_replica_id, "d");
  cr_assert_str_eq(p->transport_hint, "NIXL");
  cr_assert_str_eq(p->reason_code, "NO_HINT");
  inferencecache__v1alpha1__lookup_pdroute_response__free_unpacked(p, NULL);
}

Test(proto, cache_state_update_with_prefixes_and_stats) {
  Inferencecache__V1alpha1__PrefixEntry pe = INFERENCECACHE__V1ALPHA1__PREFIX_ENTRY__INIT;
  ProtobufCBinaryData hashes[] = {bin("a"), bin("b")};
  int32_t counts[] = {16, 32};
  pe.prefix_hash = bin("b"), pe.token_count = 32;
  pe.n_block_hashes = 2, pe.block_hashes = hashes;
  pe.n_block_token_counts = 2, pe.block_token_counts = counts;
  pe.tier = INFERENCECACHE__V1ALPHA1__CACHE_TIER__CACHE_TIER_T2;
  pe.adapter_id = "lora";
  Inferencecache__V1alpha1__PrefixEntry *pes[] = {&pe};
  Inferencecache__V1alpha1__ReplicaStats st = INFERENCECACHE__V1ALPHA1__REPLICA_STATS__INIT;
  st.replica_id = "ignored", st.cache_memory_bytes = 1 << 30, st.hit_rate = 0.5f, st.pressure = 0.25f;
  st.client_version = "v1", st.t2_hit_tokens = 7, st.t2_query_tokens = 9;
  Inferencecache__V1alpha1__CacheStateUpdate u = INFERENCECACHE__V1ALPHA1__CACHE_STATE_UPDATE__INIT;
  u.replica_id = "r", u.model_id = "m", u.tenant_id = "t", u.hash_scheme = "s", u.timestamp_us = 123;
  u.n_prefixes = 1, u.prefixes = pes, u.stats = &st, u.adapter_id = "base";
  Inferencecache__V1alpha1__CacheStateUpdate *r = ROUNDTRIP(Inferencecache__V1alpha1__CacheStateUpdate, inferencecache__v1alpha1__cache_state_update, &u);
  cr_assert_str_eq(r->replica_id, "r");
  cr_assert_str_eq(r->model_id, "m");
  cr_assert_str_eq(r->tenant_id, "t");
  cr_assert_str_eq(r->hash_scheme, "s");
  cr_assert_eq(r->timestamp_us, 123);
  cr_assert_str_eq(r->adapter_id, "base");
  cr_assert_eq(r->n_prefixes, 1);
  cr_assert_eq(r->prefixes[0]->token_count, 32);
  cr_assert_eq(r->prefixes[0]->n_block_hashes, 2);
  cr_assert_eq(r->prefixes[0]->block_token_counts[1], 32);
  cr_assert_eq(r->prefixes[0]->tier, 2);
  cr_assert_str_eq(r->prefixes[0]->adapter_id, "lora");
  cr_assert_not_null(r->stats, "stats presence survives");
  cr_assert_str_eq(r->stats->replica_id, "ignored");
  cr_assert_eq(r->stats->cache_memory_bytes, 1 << 30);
  cr_assert_eq(r->stats->hit_rate, 0.5f);
  cr_assert_eq(r->stats->pressure, 0.25f);
  cr_assert_str_eq(r->stats->client_version, "v1");
  cr_assert_eq(r->stats->t2_hit_tokens, 7);
  cr_assert_eq(r->stats->t2_query_tokens, 9);
  inferencecache__v1alpha1__cache_state_update__free_unpacked(r, NULL);

  u.stats = NULL;
  r = ROUNDTRIP(Inferencecache__V1alpha1__CacheStateUpdate, inferencecache__v1alpha1__cache_state_update, &u);
  cr_assert_null(r->stats, "absent stats stay absent");
  inferencecache__v1alpha1__cache_state_update__free_unpacked(r, NULL);
}

Test(proto, cache_state_query) {
  Inferencecache__V1alpha1__GetCacheStateRequest req = INFERENCECACHE__V1ALPHA1__GET_CACHE_STATE_REQUEST__INIT;
  req.model_id = "m", req.tenant_id = "t";
  Inferencecache__V1alpha1__GetCacheStateRequest *r = ROUNDTRIP(Inferencecache__V1alpha1__GetCacheStateRequest, inferencecache__v1alpha1__get_cache_state_request, &req);
  cr_assert_str_eq(r->model_id, "m");
  cr_assert_str_eq(r->tenant_id, "t");
  inferencecache__v1alpha1__get_cache_state_request__free_unpacked(r, NULL);
  Inferencecache__V1alpha1__ReplicaStats st = INFERENCECACHE__V1ALPHA1__REPLICA_STATS__INIT;
  st.replica_id = "r1";
  Inferencecache__V1alpha1__ReplicaStats *sts[] = {&st};
  Inferencecache__V1alpha1__CacheSummary sum = INFERENCECACHE__V1ALPHA1__CACHE_SUMMARY__INIT;
  sum.total_prefixes = 42, sum.hot_prefixes = 0;
  Inferencecache__V1alpha1__GetCacheStateResponse resp = INFERENCECACHE__V1ALPHA1__GET_CACHE_STATE_RESPONSE__INIT;
  resp.n_replicas = 1, resp.replicas = sts, resp.summary = &sum;
  Inferencecache__V1alpha1__GetCacheStateResponse *p = ROUNDTRIP(Inferencecache__V1alpha1__GetCacheStateResponse, inferencecache__v1alpha1__get_cache_state_response, &resp);
  cr_assert_eq(p->n_replicas, 1);
  cr_assert_str_eq(p->replicas[0]->replica_id, "r1");
  cr_assert_not_null(p->summary, "summary present even when zero-valued");
  cr_assert_eq(p->summary->total_prefixes, 42);
  inferencecache__v1alpha1__get_cache_state_response__free_unpacked(p, NULL);
}

Test(proto, events_streams_metrics_ack) {
  Inferencecache__V1alpha1__CacheEvent ev = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__INIT;
  ev.type = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__TYPE__ALL_CLEARED;
  ev.replica_id = "r", ev.model_id = "m", ev.tenant_id = "t", ev.prefix_hash = bin("p");
  ev.timestamp_us = 9, ev.adapter_id = "a";
  Inferencecache__V1alpha1__CacheEvent *e = ROUNDTRIP(Inferencecache__V1alpha1__CacheEvent, inferencecache__v1alpha1__cache_event, &ev);
  cr_assert_eq(e->type, 4);
  cr_assert_str_eq(e->replica_id, "r");
  cr_assert_str_eq(e->model_id, "m");
  cr_assert_str_eq(e->tenant_id, "t");
  cr_assert_eq(e->prefix_hash.len, 1);
  cr_assert_eq(e->timestamp_us, 9);
  cr_assert_str_eq(e->adapter_id, "a");
  inferencecache__v1alpha1__cache_event__free_unpacked(e, NULL);

  Inferencecache__V1alpha1__StreamEventsRequest sr = INFERENCECACHE__V1ALPHA1__STREAM_EVENTS_REQUEST__INIT;
  Inferencecache__V1alpha1__CacheEvent__Type types[] = {1, 2};
  sr.model_id = "m", sr.tenant_id = "t", sr.n_types = 2, sr.types = types;
  Inferencecache__V1alpha1__StreamEventsRequest *s = ROUNDTRIP(Inferencecache__V1alpha1__StreamEventsRequest, inferencecache__v1alpha1__stream_events_request, &sr);
  cr_assert_str_eq(s->model_id, "m");
  cr_assert_str_eq(s->tenant_id, "t");
  cr_assert_eq(s->n_types, 2);
  cr_assert_eq(s->types[1], 2);
  inferencecache__v1alpha1__stream_events_request__free_unpacked(s, NULL);

  Inferencecache__V1alpha1__StreamMetricsRequest mr = INFERENCECACHE__V1ALPHA1__STREAM_METRICS_REQUEST__INIT;
  char *names[] = {"a", "b"};
  mr.n_names = 2, mr.names = names;
  Inferencecache__V1alpha1__StreamMetricsRequest *q = ROUNDTRIP(Inferencecache__V1alpha1__StreamMetricsRequest, inferencecache__v1alpha1__stream_metrics_request, &mr);
  cr_assert_eq(q->n_names, 2);
  cr_assert_str_eq(q->names[1], "b");
  inferencecache__v1alpha1__stream_metrics_request__free_unpacked(q, NULL);

  Inferencecache__V1alpha1__Metric__LabelsEntry le = INFERENCECACHE__V1ALPHA1__METRIC__LABELS_ENTRY__INIT;
  le.key = "model", le.value = "m";
  Inferencecache__V1alpha1__Metric__LabelsEntry *les[] = {&le};
  Inferencecache__V1alpha1__Metric met = INFERENCECACHE__V1ALPHA1__METRIC__INIT;
  met.name = "x", met.type = "gauge", met.n_labels = 1, met.labels = les, met.value = 2.5, met.timestamp_us = 3;
  Inferencecache__V1alpha1__Metric *mm = ROUNDTRIP(Inferencecache__V1alpha1__Metric, inferencecache__v1alpha1__metric, &met);
  cr_assert_str_eq(mm->name, "x");
  cr_assert_str_eq(mm->type, "gauge");
  cr_assert_eq(mm->n_labels, 1);
  cr_assert_str_eq(mm->labels[0]->key, "model");
  cr_assert_eq(mm->value, 2.5);
  cr_assert_eq(mm->timestamp_us, 3);
  inferencecache__v1alpha1__metric__free_unpacked(mm, NULL);

  Inferencecache__V1alpha1__Ack ack = INFERENCECACHE__V1ALPHA1__ACK__INIT;
  ack.accepted = 1, ack.reason_code = "X";
  Inferencecache__V1alpha1__Ack *a = ROUNDTRIP(Inferencecache__V1alpha1__Ack, inferencecache__v1alpha1__ack, &ack);
  cr_assert(a->accepted);
  cr_assert_str_eq(a->reason_code, "X");
  inferencecache__v1alpha1__ack__free_unpacked(a, NULL);
}

/* Field numbers on the wire: hand-encoded bytes decode into the documented fields. */
Test(proto, field_numbers_match_the_contract) {
  /* LookupRouteRequest: 1:"m" 5:"s" 9:[7] packed 11:"a" */
  const uint8_t lr[] = {0x0a, 1, 'm', 0x2a, 1, 's', 0x4a, 1, 7, 0x5a, 1, 'a'};
  Inferencecache__V1alpha1__LookupRouteRequest *r = inferencecache__v1alpha1__lookup_route_request__unpack(NULL, sizeof lr, lr);
  cr_assert_not_null(r);
  cr_assert_str_eq(r->model_id, "m");
  cr_assert_str_eq(r->hash_scheme, "s");
  cr_assert_eq(r->n_token_ids, 1);
  cr_assert_eq(r->token_ids[0], 7);
  cr_assert_str_eq(r->adapter_id, "a");
  inferencecache__v1alpha1__lookup_route_request__free_unpacked(r, NULL);
  /* CacheStateUpdate: 5:int64 42, 8:"x", 7:{} (present, empty) */
  const uint8_t u[] = {0x28, 42, 0x42, 1, 'x', 0x3a, 0};
  Inferencecache__V1alpha1__CacheStateUpdate *c = inferencecache__v1alpha1__cache_state_update__unpack(NULL, sizeof u, u);
  cr_assert_not_null(c);
  cr_assert_eq(c->timestamp_us, 42);
  cr_assert_str_eq(c->adapter_id, "x");
  cr_assert_not_null(c->stats);
  inferencecache__v1alpha1__cache_state_update__free_unpacked(c, NULL);
  /* CacheEvent: 1:enum 4 (ALL_CLEARED), 7:"a" ; PrefixEntry 5: tier -1 preserved */
  const uint8_t e[] = {0x08, 4, 0x3a, 1, 'a'};
  Inferencecache__V1alpha1__CacheEvent *ev = inferencecache__v1alpha1__cache_event__unpack(NULL, sizeof e, e);
  cr_assert_eq(ev->type, INFERENCECACHE__V1ALPHA1__CACHE_EVENT__TYPE__ALL_CLEARED);
  cr_assert_str_eq(ev->adapter_id, "a");
  inferencecache__v1alpha1__cache_event__free_unpacked(ev, NULL);
  const uint8_t p[] = {0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  Inferencecache__V1alpha1__PrefixEntry *pe = inferencecache__v1alpha1__prefix_entry__unpack(NULL, sizeof p, p);
  cr_assert_not_null(pe);
  cr_assert_eq((int)pe->tier, -1, "open enum keeps -1");
  inferencecache__v1alpha1__prefix_entry__free_unpacked(pe, NULL);
}
