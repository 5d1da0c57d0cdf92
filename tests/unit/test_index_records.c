/* lib/index record lifecycle (issue 16 item 8): tenant, (tenant, model) and scope records that no
 * entry, stats row or lookup result refers to any more are freed by ic_index_reclaim, and
 * concurrent lookups, ingests, clears and reclaims never touch a freed one (run under ASan). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "test_index_util.h"

static void clear(ic_index_t *ix, const char *tenant, const char *model, const char *replica) {
  ic_index_event_t ev = {
      .type = IC_INDEX_EVENT_ALL_CLEARED, .replica = replica, .model = model, .tenant = tenant};
  cr_assert_eq(ic_index_apply_event(ix, &ev), 0);
}

static size_t reclaim_all(ic_index_t *ix) {
  size_t total = 0, rec;
  while (ic_index_maintain(ix, 1 << 20)) {
  }
  for (int i = 0; i < 3; i++) { /* records, then the names they held */
    ic_index_reclaim(ix, &rec);
    total += rec;
  }
  return total;
}

/* The index_entries gauge, summed per model (the callback is called with the model's total). */
static _Atomic int64_t g_gauge_sets;
static void set_entries(void *ud, const char *model, int64_t n) {
  (void)ud;
  (void)model;
  (void)n;
  atomic_fetch_add(&g_gauge_sets, 1);
}

Test(index_records, cleared_pairs_are_freed_with_their_names) {
  ic_index_config_t c = base_cfg();
  c.set_index_entries = set_entries;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"keeper", "t", "m", "vllm", ""}, "k", 10);
  reclaim_all(ix);
  size_t recs = ic_index_record_count(ix), strs = ic_index_string_count(ix);
  cr_assert_eq(recs, 3); /* tenant, (tenant, model), scope */
  char t[32], m[32];
  for (int i = 0; i < 2000; i++) {
    snprintf(t, sizeof t, "tenant-%d", i);
    snprintf(m, sizeof m, "model-%d", i % 100);
    put_legacy(ix, (who_t){"r", t, m, "vllm", i % 2 ? "lora" : ""}, "p", 10);
    if (i % 3 == 0) put_stats(ix, (who_t){"r", t, m, "vllm", ""}, 0.5f, 0.1f);
  }
  cr_assert_eq(ic_index_record_count(ix), recs + 3 * 2000);
  for (int i = 0; i < 2000; i++) {
    snprintf(t, sizeof t, "tenant-%d", i);
    snprintf(m, sizeof m, "model-%d", i % 100);
    clear(ix, t, m, "r");
  }
  cr_assert_eq(reclaim_all(ix), 3 * 2000);
  cr_assert_eq(ic_index_record_count(ix), recs);
  cr_assert_eq(ic_index_string_count(ix), strs); /* tenant-*, model-*, "lora" and "r" went */
  /* nothing changed for the keeper; a cleared pair answers like one never seen */
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "k", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "keeper");
  ic_index_result_free(r);
  r = route_exact(ix, "tenant-5", "model-5", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_strategy(r), IC_INDEX_STRATEGY_UNKNOWN_TENANT);
  ic_index_result_free(r);
  /* and comes back as new */
  put_legacy(ix, (who_t){"r2", "tenant-5", "model-5", "vllm", ""}, "p", 10);
  r = route_exact(ix, "tenant-5", "model-5", "vllm", "", "p", 0);
  cr_assert_eq(ic_index_result_count(r), 1);
  cr_assert_str_eq(row(r, 0)->replica_id, "r2");
  ic_index_result_free(r);
  ic_index_snapshot_t snap;
  cr_assert_eq(ic_index_snapshot(ix, &snap), 0);
  cr_assert_eq(snap.n_tenants, 2);
  cr_assert_eq(snap.total_prefixes, 2);
  ic_index_snapshot_free(&snap);
  cr_assert_gt(atomic_load(&g_gauge_sets), 0);
  ic_index_destroy(ix);
}

Test(index_records, stats_rows_and_expiry_keep_and_release_records) {
  ic_index_config_t c = base_cfg();
  ic_index_t *ix = ic_index_create(&c);
  put_stats(ix, (who_t){"r", "t", "m", "", ""}, 0.5f, 0.1f); /* stats only: tenant + (t, m) */
  cr_assert_eq(reclaim_all(ix), 0);
  cr_assert_eq(ic_index_record_count(ix), 2);
  ic_index_stats_row_t *rows;
  size_t n;
  cr_assert_eq(ic_index_cache_state(ix, "t", "m", &rows, &n, NULL), 0);
  cr_assert_eq(n, 1);
  free(rows);
  put_legacy(ix, (who_t){"r", "t", "m", "vllm", ""}, "p", 10);
  cr_assert_eq(ic_index_record_count(ix), 3);
  g_now += 61 * MIN_NS; /* entry and stats row past the 60 min TTL */
  cr_assert_eq(ic_index_evict_expired(ix), 1);
  cr_assert_eq(reclaim_all(ix), 3);
  cr_assert_eq(ic_index_record_count(ix), 0);
  cr_assert_eq(ic_index_string_count(ix), 0);
  cr_assert_eq(ic_index_cache_state(ix, "t", "m", &rows, &n, NULL), 0);
  cr_assert_eq(n, 0);
  /* a scope created by an update whose blocks were all malformed is freed too */
  ic_index_prefix_t p = {.n_block_hashes = 2, .n_block_token_counts = 1};
  ic_index_update_t u = {"r", "m", "t", "vllm", "", 0, &p, 1, NULL};
  cr_assert_eq(ic_index_ingest(ix, &u), 0);
  cr_assert_eq(ic_index_record_count(ix), 3);
  cr_assert_eq(reclaim_all(ix), 3);
  ic_index_destroy(ix);
}

static ic_index_eviction_t all_lfu(void *ud, const char *tenant) {
  (void)ud;
  (void)tenant;
  return IC_INDEX_EVICT_LFU;
}

Test(index_records, a_result_to_credit_keeps_its_scope) {
  ic_index_config_t c = base_cfg();
  c.eviction_resolver = all_lfu;
  ic_index_t *ix = ic_index_create(&c);
  put_legacy(ix, (who_t){"r", "t", "m", "vllm", ""}, "p", 10);
  ic_index_result_t *r = route_exact(ix, "t", "m", "vllm", "", "p", 0); /* captures for credit */
  cr_assert_eq(ic_index_result_count(r), 1);
  clear(ix, "t", "m", "r");
  cr_assert_eq(reclaim_all(ix), 0); /* the scope waits for the result, the others for it */
  cr_assert_eq(ic_index_record_count(ix), 3);
  ic_index_result_credit_hits(r); /* its key is gone: nothing credited, nothing touched */
  ic_index_result_free(r);
  cr_assert_eq(reclaim_all(ix), 3);
  cr_assert_eq(ic_index_record_count(ix), 0);
  ic_index_destroy(ix);
}

Test(index_records, cap_queue_lets_go_of_freed_scopes) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 64;
  c.cap_fair_share = false;
  ic_index_t *ix = ic_index_create(&c);
  char h[32], t[32];
  /* over the cap: the victim queue fills with candidates of many scopes */
  for (int i = 0; i < 200; i++) {
    snprintf(t, sizeof t, "t%d", i % 20);
    snprintf(h, sizeof h, "h%d", i);
    g_now += SEC_NS;
    put_legacy(ix, (who_t){"r", t, "m", "vllm", ""}, h, 10);
  }
  for (int i = 0; i < 20; i += 2) { /* half the scopes go, with their queued candidates */
    snprintf(t, sizeof t, "t%d", i);
    clear(ix, t, "m", "r");
  }
  cr_assert_eq(reclaim_all(ix), 3 * 10);
  for (int i = 200; i < 400; i++) { /* pops skip the forgotten candidates */
    snprintf(t, sizeof t, "t%d", 1 + 2 * (i % 10));
    snprintf(h, sizeof h, "h%d", i);
    g_now += SEC_NS;
    put_legacy(ix, (who_t){"r", t, "m", "vllm", ""}, h, 10);
  }
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  cr_assert_eq(k.total_entries, 64);
  ic_index_result_t *r = route_exact(ix, "t1", "m", "vllm", "", "h390", 0); /* newest stay */
  cr_assert_eq(ic_index_result_count(r), 1);
  ic_index_result_free(r);
  ic_index_destroy(ix);
}

/* ------------------------------------------------------------------ concurrency */

#define TENANTS 24
typedef struct {
  ic_index_t *ix;
  _Atomic bool stop;
  _Atomic long lookups, hits, ingests, clears, reclaimed;
} churn_t;

static bool quota_some(void *ud, const char *tenant, int64_t *max) {
  (void)ud;
  if (tenant[strlen(tenant) - 1] != '3') return false;
  *max = 40;
  return true;
}

static ic_index_eviction_t lfu_some(void *ud, const char *tenant) {
  (void)ud;
  return tenant[strlen(tenant) - 1] % 2 ? IC_INDEX_EVICT_LFU : IC_INDEX_EVICT_LRU;
}

static void name_of(char *buf, size_t n, const char *what, unsigned i) {
  snprintf(buf, n, "%s-%u", what, i % TENANTS);
}

static void *churn_reader(void *arg) {
  churn_t *st = arg;
  char t[32], m[32];
  const char *chain[4] = {"c0", "c1", "c2", "c3"};
  for (unsigned i = 0; !atomic_load(&st->stop); i++) {
    name_of(t, sizeof t, "tenant", i * 7);
    name_of(m, sizeof m, "model", i * 7);
    /* result rows name interned strings: a guard keeps them until the rows are read (the
       records the calls resolve are guarded inside the index) */
    ic_index_guard_t g = ic_index_guard(st->ix);
    ic_index_result_t *r = i % 2 ? route_chain(st->ix, t, m, "vllm", "", chain, 4, 16, 0)
                                 : route_exact(st->ix, t, m, "vllm", "", "p", 0);
    for (size_t k = 0; k < ic_index_result_count(r); k++)
      cr_assert_eq(strncmp(row(r, k)->replica_id, "rep-", 4), 0);
    if (ic_index_result_count(r)) atomic_fetch_add(&st->hits, 1);
    ic_index_result_credit_hits(r);
    ic_index_result_free(r);
    const char *pick = NULL;
    if (ic_index_affinity_hint(st->ix, t, m, "vllm", (const uint8_t *)"seed", 4, &pick))
      cr_assert_eq(strncmp(pick, "rep-", 4), 0);
    ic_index_unguard(st->ix, g);
    /* unguarded calls that read no name afterwards: only the index's own pins protect them */
    ic_index_has_any_for_tenant_model(st->ix, t, m);
    r = i % 2 ? route_chain(st->ix, t, m, "vllm", "", chain, 4, 16, 0)
              : route_exact(st->ix, t, m, "vllm", "", "p", 0);
    ic_index_result_credit_hits(r);
    ic_index_result_free(r);
    if (i % 64 == 0) {
      ic_index_stats_row_t *rows;
      size_t n;
      g = ic_index_guard(st->ix);
      cr_assert_eq(ic_index_cache_state(st->ix, t, m, &rows, &n, NULL), 0);
      for (size_t k = 0; k < n; k++)
        cr_assert_eq(strncmp(rows[k].replica_id, "rep-", 4), 0);
      free(rows);
      ic_index_snapshot_t snap;
      cr_assert_eq(ic_index_snapshot(st->ix, &snap), 0);
      for (size_t k = 0; k < snap.n_tenants; k++)
        cr_assert_eq(strncmp(snap.tenants[k].tenant_id, "tenant-", 7), 0);
      ic_index_snapshot_free(&snap);
      ic_index_unguard(st->ix, g);
      ic_index_counters_t k;
      ic_index_counters(st->ix, &k);
    }
    atomic_fetch_add(&st->lookups, 1);
  }
  return NULL;
}

/* Writes to a window of 8 of the pairs that moves on every 4,096 ingests: the pairs behind it
   are cleared and freed while lookups still ask for them, and come back when it returns. */
static void *churn_writer(void *arg) {
  churn_t *st = arg;
  char t[32], m[32], rep[32];
  const char *chain[4] = {"c0", "c1", "c2", "c3"};
  for (unsigned i = 0; !atomic_load(&st->stop); i++) {
    unsigned pair = (i / 4096) * 8 + i % 8;
    name_of(t, sizeof t, "tenant", pair);
    name_of(m, sizeof m, "model", pair);
    snprintf(rep, sizeof rep, "rep-%u", i % 5);
    who_t w = {rep, t, m, "vllm", ""};
    if (i % 3 == 0)
      put_chain(st->ix, w, chain, 4, 16);
    else
      put_legacy(st->ix, w, "p", 16);
    if (i % 4 == 0) put_stats(st->ix, w, 0.5f, 0.1f);
    atomic_fetch_add(&st->ingests, 1);
  }
  return NULL;
}

static void *churn_clearer(void *arg) {
  churn_t *st = arg;
  char t[32], m[32], rep[32];
  for (unsigned i = 0; !atomic_load(&st->stop); i++) {
    name_of(t, sizeof t, "tenant", i * 5);
    name_of(m, sizeof m, "model", i * 5);
    for (unsigned k = 0; k < 5; k++) {
      snprintf(rep, sizeof rep, "rep-%u", k);
      clear(st->ix, t, m, rep);
    }
    atomic_fetch_add(&st->clears, 1);
  }
  return NULL;
}

Test(index_records, concurrent_lookups_ingest_clear_and_reclaim_never_touch_freed_records,
     .timeout = 120) {
  ic_index_config_t c = base_cfg();
  c.max_entries = 300; /* the cap's victim queue holds candidates across calls */
  c.quota_resolver = quota_some;
  c.eviction_resolver = lfu_some;
  c.set_index_entries = set_entries;
  churn_t st = {.ix = ic_index_create(&c)};
  pthread_t rd[2], wr, cl;
  for (int i = 0; i < 2; i++)
    pthread_create(&rd[i], NULL, churn_reader, &st);
  pthread_create(&wr, NULL, churn_writer, &st);
  pthread_create(&cl, NULL, churn_clearer, &st);
  size_t freed = 0, rec;
  for (int round = 0; round < 100 || freed < 200; round++) {
    while (ic_index_maintain(st.ix, 65536)) {
    }
    if (round % 50 == 0) ic_index_evict_expired(st.ix);
    ic_index_reclaim(st.ix, &rec);
    freed += rec;
    if (getenv("IC_TEST_VERBOSE") && round % 100 == 0)
      fprintf(stderr, "round %d freed %zu lookups %ld ingests %ld clears %ld\n", round, freed,
              atomic_load(&st.lookups), atomic_load(&st.ingests), atomic_load(&st.clears));
    struct timespec d = {0, 1000000};
    nanosleep(&d, NULL);
    if (round > 20000) break;
  }
  atomic_store(&st.stop, true);
  for (int i = 0; i < 2; i++)
    pthread_join(rd[i], NULL);
  pthread_join(wr, NULL);
  pthread_join(cl, NULL);
  cr_assert_geq(freed, 200, "records freed %zu", freed);
  cr_assert_gt(atomic_load(&st.lookups), 0);
  cr_assert_gt(atomic_load(&st.hits), 0);
  cr_assert_gt(atomic_load(&st.ingests), 0);
  /* quiet now: clear everything, and every record goes */
  char t[32], m[32], rep[32];
  for (unsigned i = 0; i < TENANTS; i++)
    for (unsigned k = 0; k < 5; k++) {
      name_of(t, sizeof t, "tenant", i);
      name_of(m, sizeof m, "model", i);
      snprintf(rep, sizeof rep, "rep-%u", k);
      clear(st.ix, t, m, rep);
    }
  reclaim_all(st.ix);
  cr_assert_eq(ic_index_record_count(st.ix), 0);
  cr_assert_eq(ic_index_string_count(st.ix), 0);
  ic_index_destroy(st.ix);
}
