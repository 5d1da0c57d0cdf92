/* lib/svc change log (StreamCacheEvents): append/read through cursors, filters, eviction of the
 * oldest entries when the ring is full (including the wrap at the end of the byte ring), the
 * lost count a too-slow cursor gets, batch bounds, release, and oversized entries. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/svc.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"

static ic_index_change_t change(const char *tenant, const char *model, ic_index_change_type_t type,
                                int n) {
  static char hashes[8][32]; /* a few changes may be alive at once (arrays of changes) */
  char *hash = hashes[n % 8];
  snprintf(hash, 32, "h%08d", n);
  return (ic_index_change_t){.type = type,
                             .tenant = tenant,
                             .model = model,
                             .scheme = "vllm",
                             .adapter = "",
                             .replica = "r1",
                             .hash = (const uint8_t *)hash,
                             .hash_len = strlen(hash),
                             .timestamp_ns = 1000};
}

/* Decodes the n messages of a read batch; returns the prefix hashes' numbers in out[]. */
static void decode(const ic_buf_t *b, const size_t *lens, size_t n, int *out) {
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    Inferencecache__V1alpha1__CacheEvent *e = inferencecache__v1alpha1__cache_event__unpack(
        NULL, lens[i], (const uint8_t *)b->data + off);
    cr_assert_not_null(e);
    char num[32] = {0};
    cr_assert(e->prefix_hash.len > 1 && e->prefix_hash.len < sizeof num);
    memcpy(num, e->prefix_hash.data + 1, e->prefix_hash.len - 1);
    out[i] = atoi(num);
    inferencecache__v1alpha1__cache_event__free_unpacked(e, NULL);
    off += lens[i];
  }
}

static ic_svc_event_filter_t all = {0};

Test(changelog, reader_sees_changes_after_subscribing_in_order) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(1 << 20);
  ic_index_change_t c = change("t", "m", IC_INDEX_CHANGE_PREFIX_ADDED, 0);
  cr_assert_eq(ic_svc_changelog_append(l, &c), 0); /* before the cursor: not seen */
  ic_svc_changelog_cursor_t cur;
  ic_svc_changelog_cursor_init(l, &cur, &all);
  for (int i = 1; i <= 10; i++) {
    c = change("t", "m", IC_INDEX_CHANGE_PREFIX_ADDED, i);
    cr_assert_eq(ic_svc_changelog_append(l, &c), 0);
  }
  ic_buf_t b = IC_BUF_INIT;
  size_t lens[64], n;
  cr_assert_eq(ic_svc_changelog_read(l, &cur, 1 << 20, 64, &b, lens, &n, NULL), 0);
  cr_assert_eq(n, 10);
  int got[64];
  decode(&b, lens, n, got);
  for (int i = 0; i < 10; i++)
    cr_assert_eq(got[i], i + 1);
  ic_buf_reset(&b);
  cr_assert_eq(ic_svc_changelog_read(l, &cur, 1 << 20, 64, &b, lens, &n, NULL), 0);
  cr_assert_eq(n, 0);
  ic_buf_free(&b);
  ic_svc_changelog_free(l);
}

Test(changelog, filters_by_model_tenant_and_type_and_skips_probe_tenant) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(1 << 20);
  ic_svc_event_filter_t fm = {.model_id = "m-b"}, ft = {.tenant_id = "t2"},
                        fty = {.types = 1u << IC_INDEX_CHANGE_ALL_CLEARED};
  ic_svc_changelog_cursor_t cm, ct, cty;
  ic_svc_changelog_cursor_init(l, &cm, &fm);
  ic_svc_changelog_cursor_init(l, &ct, &ft);
  ic_svc_changelog_cursor_init(l, &cty, &fty);
  ic_index_change_t cs[] = {change("t1", "m-a", IC_INDEX_CHANGE_PREFIX_ADDED, 1),
                            change("t1", "m-b", IC_INDEX_CHANGE_PREFIX_ADDED, 2),
                            change("t2", "m-a", IC_INDEX_CHANGE_ALL_CLEARED, 3),
                            change("t2", "m-bb", IC_INDEX_CHANGE_PREFIX_ADDED, 4),
                            change(IC_SVC_PROBE_TENANT, "m-b", IC_INDEX_CHANGE_PREFIX_ADDED, 5)};
  for (size_t i = 0; i < 5; i++)
    cr_assert_eq(ic_svc_changelog_append(l, &cs[i]), 0);
  ic_buf_t b = IC_BUF_INIT;
  size_t lens[8], n;
  int got[8];
  cr_assert_eq(ic_svc_changelog_read(l, &cm, 1 << 20, 8, &b, lens, &n, NULL), 0);
  decode(&b, lens, n, got);
  cr_assert(n == 1 && got[0] == 2, "model filter: n=%zu", n);
  ic_buf_reset(&b);
  cr_assert_eq(ic_svc_changelog_read(l, &ct, 1 << 20, 8, &b, lens, &n, NULL), 0);
  decode(&b, lens, n, got);
  cr_assert(n == 2 && got[0] == 3 && got[1] == 4, "tenant filter: n=%zu", n);
  ic_buf_reset(&b);
  cr_assert_eq(ic_svc_changelog_read(l, &cty, 1 << 20, 8, &b, lens, &n, NULL), 0);
  decode(&b, lens, n, got);
  cr_assert(n == 1 && got[0] == 3, "type filter: n=%zu", n);
  ic_svc_changelog_stats_t st;
  ic_svc_changelog_stats(l, &st);
  cr_assert_eq(st.entries, 4); /* the probe tenant was never stored */
  ic_buf_free(&b);
  ic_svc_changelog_free(l);
}

Test(changelog, batch_bounds_messages_and_bytes) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(1 << 20);
  ic_svc_changelog_cursor_t cur;
  ic_svc_changelog_cursor_init(l, &cur, &all);
  for (int i = 0; i < 100; i++) {
    ic_index_change_t c = change("t", "m", IC_INDEX_CHANGE_PREFIX_ADDED, i);
    ic_svc_changelog_append(l, &c);
  }
  ic_buf_t b = IC_BUF_INIT;
  size_t lens[100], n;
  cr_assert_eq(ic_svc_changelog_read(l, &cur, 1 << 20, 30, &b, lens, &n, NULL), 0);
  cr_assert_eq(n, 30);
  ic_buf_reset(&b);
  cr_assert_eq(ic_svc_changelog_read(l, &cur, 100, 100, &b, lens, &n, NULL), 0);
  cr_assert(n >= 1 && b.len <= 100, "n=%zu len=%zu", n, b.len);
  int got[100];
  decode(&b, lens, n, got);
  cr_assert_eq(got[0], 30);
  ic_buf_reset(&b);
  cr_assert_eq(ic_svc_changelog_read(l, &cur, 1, 100, &b, lens, &n, NULL), 0);
  cr_assert_eq(n, 1); /* at least one even when it exceeds max_bytes */
  ic_buf_free(&b);
  ic_svc_changelog_free(l);
}

Test(changelog, full_ring_evicts_oldest_and_slow_cursor_learns_what_it_lost) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(64 * 1024); /* the minimum: ~1,500 entries */
  ic_svc_changelog_cursor_t slow, fast;
  ic_svc_changelog_cursor_init(l, &slow, &all);
  ic_svc_changelog_cursor_init(l, &fast, &all);
  ic_buf_t b = IC_BUF_INIT;
  size_t lens[256], n;
  int got[256], next = 0;
  /* Many laps of the byte ring; the fast reader keeps up and sees every entry in order. */
  for (int i = 0; i < 20000; i++) {
    ic_index_change_t c = change("tenant", "model", IC_INDEX_CHANGE_PREFIX_ADDED, i);
    cr_assert_eq(ic_svc_changelog_append(l, &c), 0);
    if (i % 100 == 99) {
      ic_buf_reset(&b);
      cr_assert_eq(ic_svc_changelog_read(l, &fast, 1 << 20, 256, &b, lens, &n, NULL), 0);
      decode(&b, lens, n, got);
      for (size_t k = 0; k < n; k++)
        cr_assert_eq(got[k], next++, "entry %d after a wrap", next);
    }
  }
  cr_assert_eq(next, 20000);
  ic_svc_changelog_stats_t st;
  ic_svc_changelog_stats(l, &st);
  cr_assert(st.entries > 100 && st.entries < 20000 && st.bytes <= 64 * 1024,
            "entries=%lu bytes=%lu", (unsigned long)st.entries, (unsigned long)st.bytes);
  uint64_t lost = 0;
  ic_buf_reset(&b);
  cr_assert_eq(ic_svc_changelog_read(l, &slow, 1 << 20, 256, &b, lens, &n, &lost), IC_ERANGE);
  cr_assert_eq(lost, 20000 - st.entries);
  /* Moved to the oldest entry still held: the next read resumes there. */
  ic_buf_reset(&b);
  cr_assert_eq(ic_svc_changelog_read(l, &slow, 1 << 20, 1, &b, lens, &n, NULL), 0);
  decode(&b, lens, n, got);
  cr_assert_eq(got[0], (int)lost);
  ic_buf_free(&b);
  ic_svc_changelog_free(l);
}

Test(changelog, varied_sizes_wrap_without_corruption) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(64 * 1024);
  ic_svc_changelog_cursor_t cur;
  ic_svc_changelog_cursor_init(l, &cur, &all);
  char model[600];
  ic_buf_t b = IC_BUF_INIT;
  size_t lens[256], n;
  int got[256], next = 0;
  for (int i = 0; i < 5000; i++) {
    size_t ml = 1 + (size_t)(i * 37) % (sizeof model - 1);
    memset(model, 'a' + i % 26, ml);
    model[ml] = '\0';
    ic_index_change_t c = change("t", model, IC_INDEX_CHANGE_PREFIX_ADDED, i);
    cr_assert_eq(ic_svc_changelog_append(l, &c), 0);
    if (i % 10 == 9) {
      ic_buf_reset(&b);
      cr_assert_eq(ic_svc_changelog_read(l, &cur, 1 << 20, 256, &b, lens, &n, NULL), 0);
      decode(&b, lens, n, got);
      for (size_t k = 0; k < n; k++)
        cr_assert_eq(got[k], next++);
    }
  }
  cr_assert_eq(next, 5000);
  ic_buf_free(&b);
  ic_svc_changelog_free(l);
}

Test(changelog, oversized_entry_is_refused_and_release_keeps_new_cursors_valid) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(64 * 1024);
  static char big[40 * 1024];
  memset(big, 'x', sizeof big - 1);
  ic_index_change_t c = change("t", big, IC_INDEX_CHANGE_PREFIX_ADDED, 1);
  cr_assert_eq(ic_svc_changelog_append(l, &c), IC_ERANGE);
  c = change("t", "m", IC_INDEX_CHANGE_PREFIX_ADDED, 2);
  cr_assert_eq(ic_svc_changelog_append(l, &c), 0);
  ic_svc_changelog_release(l);
  ic_svc_changelog_stats_t st;
  ic_svc_changelog_stats(l, &st);
  cr_assert(st.entries == 0 && st.bytes == 0 && st.too_large == 1);
  ic_svc_changelog_cursor_t cur;
  ic_svc_changelog_cursor_init(l, &cur, &all);
  c = change("t", "m", IC_INDEX_CHANGE_PREFIX_ADDED, 3);
  cr_assert_eq(ic_svc_changelog_append(l, &c), 0);
  ic_buf_t b = IC_BUF_INIT;
  size_t lens[4], n;
  int got[4];
  cr_assert_eq(ic_svc_changelog_read(l, &cur, 1 << 20, 4, &b, lens, &n, NULL), 0);
  decode(&b, lens, n, got);
  cr_assert(n == 1 && got[0] == 3);
  ic_buf_free(&b);
  ic_svc_changelog_free(l);
}

/* The hand-written CacheEvent encoder (lib/svc/change_wire.c) must give protobuf-c's bytes for
 * every combination of empty and non-empty fields, multi-byte lengths, and negative or zero
 * timestamps. */
Test(changelog, change_encoding_is_protobuf_c_byte_for_byte) {
  static char big[300];
  memset(big, 'x', sizeof big - 1);
  const char *strs[] = {"", "t", big};
  const int64_t stamps[] = {0, 999, 1000, 1700000000123456789LL, -5000, INT64_MIN, INT64_MAX};
  const uint8_t hash[] = {0, 1, 2, 3, 4, 5, 6, 7};
  int cases = 0;
  for (int type = 0; type <= 4; type++)
    for (size_t si = 0; si < 81; si++)
      for (size_t ti = 0; ti < sizeof stamps / sizeof stamps[0]; ti++) {
        const char *tenant = strs[si % 3], *model = strs[si / 3 % 3], *replica = strs[si / 9 % 3],
                   *adapter = strs[si / 27 % 3];
        ic_index_change_t c = {.type = (ic_index_change_type_t)type,
                               .tenant = si == 80 ? NULL : tenant,
                               .model = model,
                               .replica = replica,
                               .adapter = si == 79 ? NULL : adapter,
                               .hash = ti % 2 ? hash : NULL,
                               .hash_len = ti % 2 ? sizeof hash : 0,
                               .timestamp_ns = stamps[ti]};
        Inferencecache__V1alpha1__CacheEvent e = INFERENCECACHE__V1ALPHA1__CACHE_EVENT__INIT;
        e.type = (Inferencecache__V1alpha1__CacheEvent__Type)type;
        e.tenant_id = (char *)(c.tenant ? c.tenant : "");
        e.model_id = (char *)model;
        e.replica_id = (char *)replica;
        e.adapter_id = (char *)(c.adapter ? c.adapter : "");
        e.prefix_hash = (ProtobufCBinaryData){c.hash_len, (uint8_t *)c.hash};
        e.timestamp_us = stamps[ti] / 1000;
        size_t want_n = inferencecache__v1alpha1__cache_event__get_packed_size(&e);
        uint8_t *want = malloc(want_n ? want_n : 1);
        inferencecache__v1alpha1__cache_event__pack(&e, want);
        ic_buf_t got = IC_BUF_INIT;
        cr_assert_eq(ic_svc_change_encode(&c, &got), 0);
        cr_assert_eq(got.len, want_n, "type %d case %zu ts %zu: %zu bytes, protobuf-c %zu", type,
                     si, ti, got.len, want_n);
        cr_assert(want_n == 0 || memcmp(got.data, want, want_n) == 0);
        free(want);
        ic_buf_free(&got);
        cases++;
      }
  cr_assert_eq(cases, 5 * 81 * 7);
}

/* Staging (what the server's index listener does): a thread's staged changes are invisible to
 * readers until it flushes; the flush appends them in the order they were staged and says how
 * many it published. */
Test(changelog, staged_changes_appear_at_the_flush_in_order) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(1 << 20);
  ic_svc_changelog_cursor_t cur;
  ic_svc_changelog_cursor_init(l, &cur, &all);
  for (int i = 0; i < 10; i++) {
    ic_index_change_t c = change("t", "m", IC_INDEX_CHANGE_PREFIX_ADDED, i);
    cr_assert_eq(ic_svc_changelog_stage(l, &c), 0);
  }
  ic_index_change_t probe = change(IC_SVC_PROBE_TENANT, "m", IC_INDEX_CHANGE_PREFIX_ADDED, 99);
  cr_assert_eq(ic_svc_changelog_stage(l, &probe), 0); /* skipped */
  ic_buf_t b = IC_BUF_INIT;
  size_t lens[16], n, published = 99;
  cr_assert_eq(ic_svc_changelog_read(l, &cur, 1 << 20, 16, &b, lens, &n, NULL), 0);
  cr_assert_eq(n, 0);
  cr_assert_eq(ic_svc_changelog_head(l), 0);
  cr_assert_eq(ic_svc_changelog_flush(l, &published), 0);
  cr_assert_eq(published, 10);
  cr_assert_eq(ic_svc_changelog_flush(l, &published), 0); /* nothing new */
  cr_assert_eq(published, 0);
  cr_assert_eq(ic_svc_changelog_read(l, &cur, 1 << 20, 16, &b, lens, &n, NULL), 0);
  int got[16];
  decode(&b, lens, n, got);
  cr_assert_eq(n, 10);
  for (int i = 0; i < 10; i++)
    cr_assert_eq(got[i], i);
  ic_buf_free(&b);
  ic_svc_changelog_free(l);
}

/* One index lock hold can report thousands of evictions: past 32 KiB the stage publishes by
 * itself (bounded per-thread memory), and the next flush still counts those entries. */
Test(changelog, large_stage_flushes_itself_and_the_flush_counts_it) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(1 << 20);
  ic_svc_changelog_cursor_t cur;
  ic_svc_changelog_cursor_init(l, &cur, &all);
  static char model[1024];
  memset(model, 'm', sizeof model - 1);
  for (int i = 0; i < 100; i++) {
    ic_index_change_t c = change("t", model, IC_INDEX_CHANGE_PREFIX_EVICTED, i);
    cr_assert_eq(ic_svc_changelog_stage(l, &c), 0);
  }
  uint64_t early = ic_svc_changelog_head(l);
  cr_assert(early >= 60 && early < 100, "published early: %llu", (unsigned long long)early);
  size_t published = 0;
  cr_assert_eq(ic_svc_changelog_flush(l, &published), 0);
  cr_assert_eq(published, 100);
  ic_buf_t b = IC_BUF_INIT;
  size_t lens[100], n;
  cr_assert_eq(ic_svc_changelog_read(l, &cur, 1 << 20, 100, &b, lens, &n, NULL), 0);
  cr_assert_eq(n, 100);
  int got[100];
  decode(&b, lens, n, got);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(got[i], i);
  ic_buf_free(&b);
  ic_svc_changelog_free(l);
}

typedef struct {
  ic_svc_changelog_t *l;
  int id, errors; /* asserted on the main thread */
} stager_t;

static void *stager(void *p) {
  stager_t *s = p;
  for (int i = 0; i < 500; i++) {
    char hash[32]; /* change()'s shared buffers are for one thread */
    snprintf(hash, sizeof hash, "h%08d", s->id * 1000 + i);
    ic_index_change_t c = {.type = IC_INDEX_CHANGE_PREFIX_ADDED,
                           .tenant = "t",
                           .model = "m",
                           .replica = "r1",
                           .hash = (const uint8_t *)hash,
                           .hash_len = strlen(hash),
                           .timestamp_ns = 1000};
    if (ic_svc_changelog_stage(s->l, &c) != 0) s->errors++;
    if (i % 7 == 6 && i < 490) ic_svc_changelog_flush(s->l, NULL);
  }
  return NULL; /* the last few are staged: thread exit publishes them */
}

/* Writers stage and flush concurrently: every change arrives once, each thread's in the order
 * it made them, including what a thread left staged when it ended. */
Test(changelog, concurrent_stagers_keep_their_order_and_exit_publishes_the_rest) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(1 << 20);
  ic_svc_changelog_cursor_t cur;
  ic_svc_changelog_cursor_init(l, &cur, &all);
  pthread_t th[4];
  stager_t st[4];
  for (int t = 0; t < 4; t++) {
    st[t] = (stager_t){l, t, 0};
    pthread_create(&th[t], NULL, stager, &st[t]);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(th[t], NULL);
    cr_assert_eq(st[t].errors, 0);
  }
  ic_buf_t b = IC_BUF_INIT;
  size_t lens[256], n, total = 0;
  int next[4] = {0};
  do {
    ic_buf_reset(&b);
    cr_assert_eq(ic_svc_changelog_read(l, &cur, 1 << 20, 256, &b, lens, &n, NULL), 0);
    int got[256];
    decode(&b, lens, n, got);
    for (size_t i = 0; i < n; i++) {
      int t = got[i] / 1000, k = got[i] % 1000;
      cr_assert(t >= 0 && t < 4);
      cr_assert_eq(k, next[t], "thread %d: change %d after %d", t, k, next[t] - 1);
      next[t]++;
    }
    total += n;
  } while (n > 0);
  cr_assert_eq(total, 2000);
  ic_buf_free(&b);
  ic_svc_changelog_free(l);
}

/* The readers' interest: changes no filter in use takes are not stored at all (the server's
 * "other" subscribers cost the ingest path no encoding); more than 8 filters or one that takes
 * everything keep every change; an empty set keeps none. */
Test(changelog, interest_skips_changes_no_reader_takes) {
  ic_svc_changelog_t *l = ic_svc_changelog_new(1 << 20);
  ic_svc_event_filter_t by_model = {.model_id = "m1"},
                        by_type = {.tenant_id = "t2", .types = 1u << IC_INDEX_CHANGE_ALL_CLEARED};
  const ic_svc_event_filter_t *two[2] = {&by_model, &by_type};
  ic_svc_changelog_set_interest(l, two, 2);
  ic_index_change_t cs[] = {
      change("t1", "m1", IC_INDEX_CHANGE_PREFIX_ADDED, 0),  /* by_model */
      change("t1", "m2", IC_INDEX_CHANGE_PREFIX_ADDED, 1),  /* nobody */
      change("t2", "m2", IC_INDEX_CHANGE_ALL_CLEARED, 2),   /* by_type */
      change("t2", "m2", IC_INDEX_CHANGE_PREFIX_ADDED, 3),  /* nobody: wrong type */
      change("t3", "m1", IC_INDEX_CHANGE_PREFIX_EVICTED, 4) /* by_model */
  };
  for (size_t i = 0; i < 5; i++)
    cr_assert_eq(ic_svc_changelog_append(l, &cs[i]), 0);
  cr_assert_eq(ic_svc_changelog_head(l), 3);
  ic_svc_event_filter_t many[9];
  const ic_svc_event_filter_t *nine[9];
  char names[9][8];
  for (int i = 0; i < 9; i++) {
    snprintf(names[i], sizeof names[i], "x%d", i);
    many[i] = (ic_svc_event_filter_t){.model_id = names[i]};
    nine[i] = &many[i];
  }
  ic_svc_changelog_set_interest(l, nine, 9);
  cr_assert_eq(ic_svc_changelog_append(l, &cs[1]), 0);
  cr_assert_eq(ic_svc_changelog_head(l), 4);
  ic_svc_changelog_set_interest(l, nine, 8);
  cr_assert_eq(ic_svc_changelog_append(l, &cs[1]), 0);
  cr_assert_eq(ic_svc_changelog_head(l), 4);
  const ic_svc_event_filter_t *any[1] = {&all};
  ic_svc_changelog_set_interest(l, any, 1);
  cr_assert_eq(ic_svc_changelog_append(l, &cs[1]), 0);
  cr_assert_eq(ic_svc_changelog_head(l), 5);
  ic_svc_changelog_set_interest(l, NULL, 0);
  cr_assert_eq(ic_svc_changelog_append(l, &cs[0]), 0);
  cr_assert_eq(ic_svc_changelog_head(l), 5);
  ic_svc_changelog_free(l);
}
