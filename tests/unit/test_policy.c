/* Unit tests for lib/policy: /policy decoding (strictness, Go quirks), v3..v7 normalisation,
 * replace-on-write store semantics and per-tenant knob resolution. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/policy.h"

static ic_policy_parse_status_t parse(const char *body, ic_policy_doc_t **doc, char *msg) {
  return ic_policy_parse(body, strlen(body), false, doc, msg, 256);
}

static ic_policy_store_t *store_with(const char *body) {
  ic_policy_store_t *s = ic_policy_store_new();
  ic_policy_doc_t *doc = NULL;
  char msg[256];
  cr_assert_eq(parse(body, &doc, msg), IC_POLICY_OK, "%s", msg);
  cr_assert_eq(ic_policy_store_replace(s, doc), 0);
  return s;
}

static ic_policy_knobs_t knobs(ic_policy_store_t *s, const char *t) {
  ic_policy_knobs_t k;
  ic_policy_store_resolve(s, t, strlen(t), &k);
  return k;
}

Test(policy, defaults_when_unset) {
  ic_policy_store_t *s = ic_policy_store_new();
  ic_policy_knobs_t k = knobs(s, "missing");
  cr_assert(!k.has_policy);
  cr_assert_eq(k.ttl_ns, 0);
  cr_assert_eq(k.minimum_prefix_tokens, 0);
  cr_assert_eq(k.lookup_timeout_ms, 0);
  cr_assert_eq(k.minimum_matched_tokens, 64);
  cr_assert_float_eq(k.routing_floor_score, 0.1f, 1e-9);
  cr_assert(k.affinity_routing && k.enable_chain_matching && !k.require_chain &&
            k.enable_tenant_hot);
  cr_assert_eq(k.eviction, IC_POLICY_EVICT_LRU);
  cr_assert(!k.has_quota);
  cr_assert_eq(ic_policy_store_generation(s), 0);
  ic_policy_store_free(s);
}

Test(policy, v7_body_stored_and_resolved) {
  ic_policy_store_t *s =
      store_with("{\"version\":7,\"policies\":[{\"namespace\":\"ns1\",\"evictionTTL\":420000000000,"
                 "\"minimumPrefixTokens\":16,\"minimumMatchedTokens\":32,\"routingFloorScore\":2.5,"
                 "\"lookupTimeoutMs\":10,\"eviction\":\"LFU\",\"affinityRouting\":false,"
                 "\"strategy\":{\"enableChainMatching\":true,\"requireChain\":true,"
                 "\"enableTenantHot\":false}}],"
                 "\"tenants\":[{\"tenantID\":\"ns1\",\"maxIndexEntries\":5000,\"isolationMode\":"
                 "\"Fairness\"}]}");
  ic_policy_knobs_t k = knobs(s, "ns1");
  cr_assert(k.has_policy);
  cr_assert_eq(k.ttl_ns, 420000000000LL);
  cr_assert_eq(k.minimum_prefix_tokens, 16);
  cr_assert_eq(k.minimum_matched_tokens, 32);
  cr_assert_float_eq(k.routing_floor_score, 2.5f, 1e-9);
  cr_assert_eq(k.lookup_timeout_ms, 10);
  cr_assert_eq(k.eviction, IC_POLICY_EVICT_LFU);
  cr_assert(!k.affinity_routing && k.enable_chain_matching && k.require_chain &&
            !k.enable_tenant_hot);
  cr_assert(k.has_quota);
  cr_assert_eq(k.max_index_entries, 5000);
  ic_policy_knobs_t other = knobs(s, "ns2");
  cr_assert(!other.has_policy && other.minimum_matched_tokens == 64 && !other.has_quota,
            "a policy for one tenant does not affect another");
  const ic_policy_snap_t *snap = ic_policy_acquire(s);
  const ic_policy_quota_t *q = ic_policy_snap_quota(snap, "ns1");
  cr_assert_str_eq(q->isolation_mode, "Fairness");
  cr_assert_str_eq(ic_policy_snap_policy(snap, "ns1")->eviction, "LFU");
  ic_policy_release(snap);
  ic_policy_store_free(s);
}

Test(policy, installed_policy_floor_semantics) {
  ic_policy_store_t *s =
      store_with("{\"version\":7,\"policies\":[{\"namespace\":\"a\"},"
                 "{\"namespace\":\"b\",\"minimumMatchedTokens\":-1,\"routingFloorScore\":-1},"
                 "{\"namespace\":\"c\",\"minimumMatchedTokens\":256,\"routingFloorScore\":0},"
                 "{\"namespace\":\"d\",\"routingFloorScore\":null,\"affinityRouting\":true}]}");
  ic_policy_knobs_t a = knobs(s, "a"), b = knobs(s, "b"), c = knobs(s, "c"), d = knobs(s, "d");
  cr_assert_eq(a.minimum_matched_tokens, 0, "installed policy omitting the floor = off");
  cr_assert_float_eq(a.routing_floor_score, 0.1f, 1e-9, "absent routing floor = 0.1");
  cr_assert(a.affinity_routing);
  cr_assert_eq(b.minimum_matched_tokens, 0);
  cr_assert_float_eq(b.routing_floor_score, 0.0f, 1e-9);
  cr_assert_eq(c.minimum_matched_tokens, 256);
  cr_assert_float_eq(c.routing_floor_score, 0.0f, 1e-9);
  cr_assert_float_eq(d.routing_floor_score, 0.1f, 1e-9, "null = absent");
  cr_assert(d.affinity_routing);
  ic_policy_store_free(s);
}

Test(policy, v3_normalised) {
  ic_policy_doc_t *doc;
  char msg[256];
  cr_assert_eq(
      parse("{\"version\":3,\"policies\":[{\"namespace\":\"n\",\"evictionTTL\":5,"
            "\"eviction\":\"lfu\"}],\"tenants\":[{\"tenantID\":\"t\",\"maxIndexEntries\":7}]}",
            &doc, msg),
      IC_POLICY_OK);
  ic_policy_entry_t *e = &doc->policies[0];
  cr_assert_eq(e->minimum_matched_tokens, 64);
  cr_assert(e->has_routing_floor_score);
  cr_assert_float_eq(e->routing_floor_score, 0.1f, 1e-9);
  cr_assert(e->has_strategy && e->has_enable_chain_matching && e->enable_chain_matching);
  cr_assert(e->has_require_chain && !e->require_chain);
  cr_assert(e->has_enable_tenant_hot && e->enable_tenant_hot);
  cr_assert(e->has_affinity_routing && e->affinity_routing);
  cr_assert_eq(e->eviction_ttl_ns, 5);
  cr_assert_str_eq(e->eviction, "lfu");
  cr_assert_eq(doc->tenants[0].max_index_entries, 7);
  ic_policy_doc_free(doc);
}

Test(policy, v4_explicit_zero_preserved_and_floor_normalised) {
  ic_policy_doc_t *doc;
  char msg[256];
  cr_assert_eq(
      parse("{\"version\":4,\"policies\":[{\"namespace\":\"n\",\"minimumMatchedTokens\":0}]}", &doc,
            msg),
      IC_POLICY_OK);
  cr_assert_eq(doc->policies[0].minimum_matched_tokens, 0);
  cr_assert_float_eq(doc->policies[0].routing_floor_score, 0.1f, 1e-9);
  cr_assert(doc->policies[0].has_strategy && doc->policies[0].affinity_routing);
  ic_policy_doc_free(doc);
}

Test(policy, v5_explicit_zero_floor_and_affinity_default) {
  ic_policy_doc_t *doc;
  char msg[256];
  cr_assert_eq(parse("{\"version\":5,\"policies\":[{\"namespace\":\"n\",\"routingFloorScore\":0,"
                     "\"strategy\":{\"requireChain\":true}}]}",
                     &doc, msg),
               IC_POLICY_OK);
  ic_policy_entry_t *e = &doc->policies[0];
  cr_assert(e->has_routing_floor_score);
  cr_assert_float_eq(e->routing_floor_score, 0.0f, 1e-9);
  cr_assert(e->require_chain && e->enable_chain_matching && e->enable_tenant_hot);
  cr_assert(e->has_affinity_routing && e->affinity_routing, "v5 body gets affinity true");
  ic_policy_doc_free(doc);
}

Test(policy, v7_stored_verbatim) {
  ic_policy_doc_t *doc;
  char msg[256];
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"namespace\":\"n\"}]}", &doc, msg),
               IC_POLICY_OK);
  ic_policy_entry_t *e = &doc->policies[0];
  cr_assert(!e->has_routing_floor_score && !e->has_strategy && !e->has_affinity_routing);
  cr_assert_eq(e->minimum_matched_tokens, 0);
  ic_policy_doc_free(doc);
  cr_assert_eq(
      parse("{\"version\":7,\"policies\":[{\"namespace\":\"n\",\"strategy\":"
            "{\"enableChainMatching\":true,\"requireChain\":true,\"enableTenantHot\":false}}]}",
            &doc, msg),
      IC_POLICY_OK);
  e = &doc->policies[0];
  cr_assert(e->enable_chain_matching && e->require_chain && !e->enable_tenant_hot);
  ic_policy_doc_free(doc);
}

Test(policy, version_band) {
  ic_policy_doc_t *doc = NULL;
  char msg[256];
  cr_assert_eq(parse("{\"version\":2}", &doc, msg), IC_POLICY_BAD_VERSION);
  cr_assert_eq(parse("{\"version\":99}", &doc, msg), IC_POLICY_BAD_VERSION);
  cr_assert_eq(parse("{}", &doc, msg), IC_POLICY_BAD_VERSION, "missing version = 0");
  cr_assert_eq(parse("{\"version\":null}", &doc, msg), IC_POLICY_BAD_VERSION);
  cr_assert_eq(parse("null", &doc, msg), IC_POLICY_BAD_VERSION);
  cr_assert_null(doc);
  cr_assert_eq(parse("{\"version\":3}", &doc, msg), IC_POLICY_OK);
  ic_policy_doc_free(doc);
  cr_assert_eq(parse("{\"version\":7,\"policies\":null}", &doc, msg), IC_POLICY_OK);
  cr_assert_eq(doc->npolicies, 0);
  ic_policy_doc_free(doc);
  cr_assert_eq(IC_POLICY_VERSION, 7);
  cr_assert_eq(IC_POLICY_MIN_VERSION, 3);
}

Test(policy, decode_errors) {
  ic_policy_doc_t *doc = NULL;
  char msg[256];
  cr_assert_eq(parse("not json", &doc, msg), IC_POLICY_DECODE_ERROR);
  cr_assert_eq(parse("", &doc, msg), IC_POLICY_DECODE_ERROR);
  cr_assert_str_eq(msg, "EOF");
  cr_assert_eq(parse("{\"version\":7,\"bogus\":1}", &doc, msg), IC_POLICY_DECODE_ERROR);
  cr_assert_str_eq(msg, "json: unknown field \"bogus\"");
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"namespace\":\"a\",\"x\":1}]}", &doc, msg),
               IC_POLICY_DECODE_ERROR);
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"strategy\":{\"y\":true}}]}", &doc, msg),
               IC_POLICY_DECODE_ERROR);
  cr_assert_eq(parse("{\"version\":7,\"tenants\":[{\"tenantID\":\"a\",\"z\":1}]}", &doc, msg),
               IC_POLICY_DECODE_ERROR);
  cr_assert_eq(parse("{\"version\":\"7\"}", &doc, msg), IC_POLICY_DECODE_ERROR);
  cr_assert_str_eq(
      msg, "json: cannot unmarshal string into Go struct field PolicySnapshot.version of type int");
  cr_assert_eq(parse("{\"version\":7.5}", &doc, msg), IC_POLICY_DECODE_ERROR);
  cr_assert_eq(
      parse("{\"version\":7,\"policies\":[{\"minimumPrefixTokens\":2147483648}]}", &doc, msg),
      IC_POLICY_DECODE_ERROR, "int32 overflow");
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"routingFloorScore\":1e39}]}", &doc, msg),
               IC_POLICY_DECODE_ERROR, "float32 overflow");
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"affinityRouting\":1}]}", &doc, msg),
               IC_POLICY_DECODE_ERROR);
  cr_assert_eq(parse("{\"version\":7,\"policies\":{}}", &doc, msg), IC_POLICY_DECODE_ERROR);
  cr_assert_eq(parse("[1]", &doc, msg), IC_POLICY_DECODE_ERROR);
  cr_assert_null(doc);
  cr_assert_eq(ic_policy_parse("{\"version\":7}", 13, true, &doc, msg, sizeof msg),
               IC_POLICY_DECODE_ERROR, "truncated body is a decode error");
  cr_assert_str_eq(msg, "http: request body too large");
}

Test(policy, go_decoder_quirks) {
  ic_policy_doc_t *doc = NULL;
  char msg[256];
  cr_assert_eq(parse("{\"Version\":7,\"POLICIES\":[{\"NameSpace\":\"x\"}]}", &doc, msg),
               IC_POLICY_OK, "keys match case-insensitively: %s", msg);
  cr_assert_str_eq(doc->policies[0].ns, "x");
  ic_policy_doc_free(doc);
  /* Go's folding also maps U+017F (long s) to s and U+212A (Kelvin) to k. */
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"name\u017fpace\":\"y\","
                     "\"minimumPrefixTo\u212aens\":5}]}",
                     &doc, msg),
               IC_POLICY_OK, "%s", msg);
  cr_assert_str_eq(doc->policies[0].ns, "y");
  cr_assert_eq(doc->policies[0].minimum_prefix_tokens, 5);
  ic_policy_doc_free(doc);
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"namespacee\":\"y\"}]}", &doc, msg),
               IC_POLICY_DECODE_ERROR);
  cr_assert_eq(parse("{\"version\":2,\"version\":7}", &doc, msg), IC_POLICY_OK,
               "last duplicate wins");
  ic_policy_doc_free(doc);
  cr_assert_eq(parse("{\"version\":7} trailing garbage", &doc, msg), IC_POLICY_OK,
               "trailing bytes after the first value are not checked");
  ic_policy_doc_free(doc);
  cr_assert_eq(parse("{\"version\":7,\"policies\":[null,{\"namespace\":\"q\"}]}", &doc, msg),
               IC_POLICY_OK);
  cr_assert_eq(doc->npolicies, 2);
  ic_policy_doc_free(doc);
}

Test(policy, replace_is_atomic_and_drops_stale) {
  ic_policy_store_t *s = store_with(
      "{\"version\":7,\"policies\":[{\"namespace\":\"a\",\"minimumPrefixTokens\":5},"
      "{\"namespace\":\"\",\"minimumPrefixTokens\":9},{\"namespace\":\"a\",\"minimumPrefixTokens\":"
      "6}],"
      "\"tenants\":[{\"tenantID\":\"t\",\"maxIndexEntries\":-1},{\"tenantID\":\"\","
      "\"maxIndexEntries\":3},"
      "{\"tenantID\":\"u\",\"maxIndexEntries\":0},{\"tenantID\":\"v\",\"maxIndexEntries\":1},"
      "{\"tenantID\":\"v\",\"maxIndexEntries\":2}]}");
  cr_assert_eq(knobs(s, "a").minimum_prefix_tokens, 6, "later duplicate namespace wins");
  cr_assert(!knobs(s, "").has_policy, "empty namespace dropped");
  ic_policy_knobs_t t = knobs(s, "t");
  cr_assert(t.has_quota && t.max_index_entries == 0, "negative budget clamped to an enforced 0");
  cr_assert(knobs(s, "u").has_quota && knobs(s, "u").max_index_entries == 0, "0 is a real quota");
  cr_assert_eq(knobs(s, "v").max_index_entries, 2);
  cr_assert(!knobs(s, "").has_quota, "empty tenantID dropped");
  cr_assert(!knobs(s, "w").has_quota, "unknown tenant unbounded");
  const ic_policy_snap_t *snap = ic_policy_acquire(s);
  cr_assert_eq(ic_policy_snap_npolicies(snap), 1);
  cr_assert_eq(ic_policy_snap_nquotas(snap), 3);

  ic_policy_doc_t *doc;
  char msg[256];
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"namespace\":\"b\"}]}", &doc, msg),
               IC_POLICY_OK);
  cr_assert_eq(ic_policy_store_replace(s, doc), 0);
  cr_assert(!knobs(s, "a").has_policy, "namespace absent from the next push reverts");
  cr_assert(!knobs(s, "t").has_quota, "omitted tenant loses its quota");
  cr_assert(knobs(s, "b").has_policy);
  /* The old snapshot stays readable while referenced. */
  cr_assert_eq(ic_policy_snap_policy(snap, "a")->minimum_prefix_tokens, 6);
  ic_policy_release(snap);
  cr_assert_eq(ic_policy_store_generation(s), 2);
  ic_policy_store_free(s);
}

Test(policy, probe_tenant_quota_exempt) {
  ic_policy_store_t *s = store_with("{\"version\":7,\"tenants\":[{\"tenantID\":\"inferencecache.io/"
                                    "probe\",\"maxIndexEntries\":1},"
                                    "{\"tenantID\":\"team\",\"maxIndexEntries\":4}]}");
  cr_assert(!knobs(s, IC_POLICY_PROBE_TENANT).has_quota);
  cr_assert(knobs(s, "team").has_quota);
  int64_t m = -1;
  cr_assert(!ic_policy_index_quota(s, IC_POLICY_PROBE_TENANT, &m));
  cr_assert(ic_policy_index_quota(s, "team", &m) && m == 4);
  ic_policy_store_free(s);
}

Test(policy, eviction_and_ttl_resolution) {
  ic_policy_store_t *s = store_with(
      "{\"version\":7,\"policies\":[{\"namespace\":\"l\",\"eviction\":\"lfu\",\"evictionTTL\":-5},"
      "{\"namespace\":\"r\",\"eviction\":\"random\",\"evictionTTL\":60000000000}]}");
  cr_assert_eq(ic_policy_index_eviction(s, "l"), IC_POLICY_EVICT_LFU);
  cr_assert_eq(ic_policy_index_eviction(s, "r"), IC_POLICY_EVICT_LRU);
  cr_assert_eq(ic_policy_index_eviction(s, "x"), IC_POLICY_EVICT_LRU);
  cr_assert_eq(ic_policy_index_ttl(s, "l"), 0, "non-positive TTL = index default");
  cr_assert_eq(ic_policy_index_ttl(s, "r"), 60000000000LL);
  const ic_policy_snap_t *snap = ic_policy_acquire(s);
  cr_assert_str_eq(ic_policy_snap_policy(snap, "l")->eviction, "lfu");
  cr_assert_str_eq(ic_policy_snap_policy(snap, "r")->eviction, "random");
  ic_policy_release(snap);
  ic_policy_doc_t *doc;
  char msg[256];
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"namespace\":\"u\"}]}", &doc, msg),
               IC_POLICY_OK);
  cr_assert_eq(ic_policy_store_replace(s, doc), 0);
  snap = ic_policy_acquire(s);
  cr_assert_str_eq(ic_policy_snap_policy(snap, "u")->eviction, "", "unset eviction stored as \"\"");
  ic_policy_release(snap);
  ic_policy_store_free(s);
}

typedef struct {
  ic_policy_store_t *s;
  volatile int stop;
  int torn;
} race_t;

static void *reader(void *p) {
  race_t *r = p;
  while (!r->stop) {
    ic_policy_knobs_t k;
    ic_policy_store_resolve(r->s, "ns", 2, &k);
    /* Each push sets minimumPrefixTokens == lookupTimeoutMs; a torn read would differ. */
    if (k.has_policy && k.minimum_prefix_tokens != k.lookup_timeout_ms) r->torn++;
  }
  return NULL;
}

Test(policy, concurrent_reads_with_writer) {
  race_t r = {.s = ic_policy_store_new()};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&th[i], NULL, reader, &r);
  for (int i = 1; i <= 500; i++) {
    char body[256];
    snprintf(body, sizeof body,
             "{\"version\":7,\"policies\":[{\"namespace\":\"ns\",\"minimumPrefixTokens\":%d,"
             "\"lookupTimeoutMs\":%d}]}",
             i, i);
    ic_policy_doc_t *doc;
    char msg[256];
    cr_assert_eq(parse(body, &doc, msg), IC_POLICY_OK);
    cr_assert_eq(ic_policy_store_replace(r.s, doc), 0);
  }
  r.stop = 1;
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  cr_assert_eq(r.torn, 0);
  cr_assert_eq(knobs(r.s, "ns").minimum_prefix_tokens, 500);
  ic_policy_store_free(r.s);
}

Test(policy, resolution_table_matches_exact_bytes) {
  ic_policy_store_t *s =
      store_with("{\"version\":7,\"policies\":[{\"namespace\":\"team\",\"minimumPrefixTokens\":1},"
                 "{\"namespace\":\"team-a\",\"minimumPrefixTokens\":2}],"
                 "\"tenants\":[{\"tenantID\":\"team\",\"maxIndexEntries\":9},{\"tenantID\":\"quota-"
                 "only\",\"maxIndexEntries\":3}]}");
  ic_policy_knobs_t k;
  ic_policy_store_resolve(s, "team-a", 4, &k);
  cr_assert(k.has_policy && k.minimum_prefix_tokens == 1, "tlen bounds the tenant bytes");
  cr_assert(k.has_quota && k.max_index_entries == 9, "namespace and tenantID share one entry");
  ic_policy_store_resolve(s, "team-a", 6, &k);
  cr_assert(k.minimum_prefix_tokens == 2 && !k.has_quota);
  ic_policy_store_resolve(s, "team-", 5, &k);
  cr_assert(!k.has_policy && !k.has_quota && k.minimum_matched_tokens == 64);
  ic_policy_store_resolve(s, "quota-only", 10, &k);
  cr_assert(!k.has_policy && k.has_quota && k.max_index_entries == 3);
  cr_assert_eq(k.minimum_matched_tokens, 64, "quota without policy keeps the no-policy defaults");
  cr_assert(k.affinity_routing);
  ic_policy_store_resolve(s, NULL, 0, &k);
  cr_assert(!k.has_policy);
  /* Many tenants: every one resolves to its own values. */
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append_str(&b, "{\"version\":7,\"policies\":[");
  for (int i = 0; i < 1000; i++)
    ic_buf_appendf(&b, "%s{\"namespace\":\"ns%d\",\"lookupTimeoutMs\":%d}", i ? "," : "", i, i + 1);
  ic_buf_append_str(&b, "]}");
  ic_policy_doc_t *doc;
  char msg[256];
  cr_assert_eq(parse(b.data, &doc, msg), IC_POLICY_OK);
  ic_buf_free(&b);
  cr_assert_eq(ic_policy_store_replace(s, doc), 0);
  for (int i = 0; i < 1000; i++) {
    char t[16];
    int n = snprintf(t, sizeof t, "ns%d", i);
    ic_policy_store_resolve(s, t, (size_t)n, &k);
    cr_assert_eq(k.lookup_timeout_ms, i + 1);
  }
  ic_policy_store_resolve(s, "team", 4, &k);
  cr_assert(!k.has_policy && !k.has_quota, "previous push fully replaced");
  ic_policy_store_free(s);
}

/* Additive strategy switch (docs/ranking.md): absent = off, v3..v6 bodies leave them off,
 * wrong types are rejected like every other key. */
Test(policy, load_aware_switch) {
  ic_policy_store_t *s = store_with(
      "{\"version\":7,\"policies\":[{\"namespace\":\"a\",\"strategy\":{\"loadAwareRouting\":true}},{\"namespace\":\"b\",\"strategy\":{\"enableTenantHot\":true}},"
      "{\"namespace\":\"c\",\"strategy\":{\"loadawarerouting\":true}}]}");
  ic_policy_knobs_t k = knobs(s, "a");
  cr_assert(k.load_aware_routing);
  cr_assert(k.enable_chain_matching, "the other switches keep their defaults");
  k = knobs(s, "b");
  cr_assert_not(k.load_aware_routing);
  cr_assert(knobs(s, "c").load_aware_routing, "keys match case-insensitively like the others");
  cr_assert_not(knobs(s, "none").load_aware_routing);
  ic_policy_store_free(s);
  ic_policy_doc_t *doc = NULL;
  char msg[256];
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"namespace\":\"a\",\"strategy\":"
                     "{\"loadAwareRouting\":\"yes\"}}]}",
                     &doc, msg),
               IC_POLICY_DECODE_ERROR);
}

/* The second additive switch (docs/ranking.md, section 3), independent of the first. */
Test(policy, predict_on_route_switch) {
  ic_policy_store_t *s = store_with(
      "{\"version\":7,\"policies\":[{\"namespace\":\"a\",\"strategy\":{\"predictOnRoute\":true}},"
      "{\"namespace\":\"b\",\"strategy\":{\"predictOnRoute\":true,\"loadAwareRouting\":true}}]}");
  cr_assert(knobs(s, "a").predict_on_route);
  cr_assert_not(knobs(s, "a").load_aware_routing);
  cr_assert(knobs(s, "b").predict_on_route && knobs(s, "b").load_aware_routing);
  cr_assert_not(knobs(s, "none").predict_on_route, "absent = off");
  ic_policy_store_free(s);
  ic_policy_doc_t *doc = NULL;
  char msg[256];
  cr_assert_eq(parse("{\"version\":7,\"policies\":[{\"namespace\":\"a\",\"strategy\":"
                     "{\"predictOnRoute\":1}}]}",
                     &doc, msg),
               IC_POLICY_DECODE_ERROR);
}
