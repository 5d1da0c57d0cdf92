/* kvevent-subscriber op queue (src/subscriber/queue.c, compiled into this test): grouping in
 * wire order, clear superseding queued ops of its replica, the byte bound dropping oldest adds
 * before any removal, commit after a concurrent drop, compaction keeping order. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "sub.h"

static const char *R0 = "r0", *R1 = "r1";
static const char *reps[4];

static void setup(void) {
  reps[0] = R0;
  reps[1] = R0; /* endpoints 0 and 1 share a replica id (DP without suffix) */
  reps[2] = R1;
}

static ic_kv_op_t op(int kind, uint64_t h, int ep, int64_t ts) {
  ic_kv_op_t o = {.kind = (uint8_t)kind,
                  .tier = 1,
                  .ep = (uint16_t)ep,
                  .token_count = 16,
                  .prefix_hash = h,
                  .ts_us = ts,
                  .adapter = ""};
  return o;
}

/* Pops every group, returning a compact signature: kind letter + count per group. */
static void drain(subq_t *q, char *sig, size_t cap) {
  ic_kv_op_t buf[SUB_MAX_ENTRIES_PER_CSU];
  uint64_t last;
  size_t k, n = 0;
  sig[0] = 0;
  pthread_mutex_lock(&q->mu);
  while ((k = subq_peek_group(q, buf, SUB_MAX_ENTRIES_PER_CSU, &last, reps))) {
    n += (size_t)snprintf(sig + n, cap - n, "%c%zu ", "?ADEC"[buf[0].kind], k);
    subq_commit(q, last);
  }
  pthread_mutex_unlock(&q->mu);
}

TestSuite(kvevents_queue, .init = setup);

Test(kvevents_queue, groups_keep_wire_order_and_split_by_kind_replica_and_downgrade_ts) {
  subq_t q;
  cr_assert_eq(subq_init(&q, 1 << 20), 0);
  ic_kv_op_t ops[] = {op(IC_KV_OP_ADD, 1, 0, 10),       op(IC_KV_OP_ADD, 2, 1, 11),
                      op(IC_KV_OP_EVICT, 1, 0, 12),     op(IC_KV_OP_ADD, 3, 2, 13),
                      op(IC_KV_OP_DOWNGRADE, 2, 0, 14), op(IC_KV_OP_DOWNGRADE, 4, 0, 14),
                      op(IC_KV_OP_DOWNGRADE, 5, 0, 15), op(IC_KV_OP_ADD, 6, 0, 16)};
  subq_push(&q, ops, 8, reps);
  char sig[256];
  drain(&q, sig, sizeof(sig));
  cr_assert_str_eq(sig, "A2 E1 A1 D2 D1 A1 ");
  cr_assert_eq(q.live, 0);
  subq_destroy(&q);
}

Test(kvevents_queue, clear_supersedes_queued_ops_of_its_replica_only) {
  subq_t q;
  subq_init(&q, 1 << 20);
  ic_kv_op_t ops[] = {op(IC_KV_OP_ADD, 1, 0, 1), op(IC_KV_OP_ADD, 2, 2, 1),
                      op(IC_KV_OP_EVICT, 3, 1, 1), op(IC_KV_OP_CLEAR, 0, 1, 2),
                      op(IC_KV_OP_ADD, 4, 0, 3)};
  subq_push(&q, ops, 5, reps);
  char sig[256];
  drain(&q, sig, sizeof(sig));
  /* r0's add and evict before the clear are gone; r1's add stays */
  cr_assert_str_eq(sig, "A1 C1 A1 ");
  subq_destroy(&q);
}

Test(kvevents_queue, overflow_drops_oldest_adds_never_removals_first) {
  subq_t q;
  subq_init(&q, 1); /* the minimum: 64 entries */
  cr_assert_eq(q.max_ops, 64);
  ic_kv_op_t ops[100];
  for (int i = 0; i < 60; i++)
    ops[i] = op(IC_KV_OP_ADD, (uint64_t)i, 0, 1);
  for (int i = 60; i < 70; i++)
    ops[i] = op(IC_KV_OP_EVICT, (uint64_t)i, 0, 1);
  size_t dropped = subq_push(&q, ops, 70, reps);
  cr_assert_eq(dropped, 6);
  cr_assert_eq(q.dropped[IC_KV_OP_ADD], 6);
  cr_assert_eq(q.dropped[IC_KV_OP_EVICT], 0);
  ic_kv_op_t buf[SUB_MAX_ENTRIES_PER_CSU];
  uint64_t last;
  pthread_mutex_lock(&q.mu);
  size_t k = subq_peek_group(&q, buf, SUB_MAX_ENTRIES_PER_CSU, &last, reps);
  pthread_mutex_unlock(&q.mu);
  cr_assert_eq(k, 54);
  cr_assert_eq(buf[0].prefix_hash, 6, "the six oldest adds went first");
  /* only removals left beyond the bound: then the oldest removal goes */
  for (int i = 0; i < 70; i++)
    ops[i] = op(IC_KV_OP_EVICT, 1000 + (uint64_t)i, 0, 1);
  subq_push(&q, ops, 70, reps);
  cr_assert_eq(q.dropped[IC_KV_OP_ADD], 60);
  cr_assert(q.dropped[IC_KV_OP_EVICT] > 0);
  cr_assert_eq(q.live, 64);
  subq_destroy(&q);
}

Test(kvevents_queue, commit_after_concurrent_drop_and_compaction_keeps_order) {
  subq_t q;
  subq_init(&q, 1 << 20);
  ic_kv_op_t buf[SUB_MAX_ENTRIES_PER_CSU];
  uint64_t last;
  /* many pushes interleaved with clears force dead entries and ring compaction/growth */
  uint64_t next = 0;
  for (int round = 0; round < 50; round++) {
    ic_kv_op_t ops[100];
    for (int i = 0; i < 100; i++)
      ops[i] = op(IC_KV_OP_ADD, next++, 2, 1);
    subq_push(&q, ops, 100, reps);
    ic_kv_op_t c = op(IC_KV_OP_CLEAR, 0, 0, 1);
    subq_push(&q, &c, 1, reps);
  }
  pthread_mutex_lock(&q.mu);
  size_t k = subq_peek_group(&q, buf, SUB_MAX_ENTRIES_PER_CSU, &last, reps);
  pthread_mutex_unlock(&q.mu);
  /* each clear superseded the one before it (same replica): the adds of r1 form one run, cut at
   * the CSU size */
  cr_assert_eq(k, SUB_MAX_ENTRIES_PER_CSU);
  for (size_t i = 0; i < k; i++)
    cr_assert_eq(buf[i].prefix_hash, i);
  /* a clear arriving between peek and commit does not disturb the commit */
  ic_kv_op_t c = op(IC_KV_OP_CLEAR, 0, 0, 1);
  subq_push(&q, &c, 1, reps);
  pthread_mutex_lock(&q.mu);
  subq_commit(&q, last);
  uint64_t expect = SUB_MAX_ENTRIES_PER_CSU;
  size_t adds = 0, clears = 0;
  while ((k = subq_peek_group(&q, buf, SUB_MAX_ENTRIES_PER_CSU, &last, reps))) {
    if (buf[0].kind == IC_KV_OP_ADD)
      for (size_t i = 0; i < k; i++, adds++)
        cr_assert_eq(buf[i].prefix_hash, expect++);
    else
      clears++;
    subq_commit(&q, last);
  }
  pthread_mutex_unlock(&q.mu);
  cr_assert_eq(adds, 5000 - SUB_MAX_ENTRIES_PER_CSU);
  cr_assert_eq(clears, 1, "only the newest clear survives");
  cr_assert_eq(q.live, 0);
  subq_destroy(&q);
}

/* Batched evictions (docs/ha.md): adds and evictions of one replica share an update; an add of a
 * prefix evicted earlier in the run, another replica, a clear or a marker ends it; a clear keeps
 * a queued full-state marker. */
Test(kvevents_queue, mixed_runs_merge_adds_and_evictions_until_a_restore_or_other_kind) {
  subq_t q;
  cr_assert_eq(subq_init(&q, 1 << 20), 0);
  ic_kv_op_t ops[] = {op(IC_KV_OP_ADD, 1, 0, 10),   op(IC_KV_OP_EVICT, 2, 0, 11),
                      op(IC_KV_OP_ADD, 3, 1, 12),   op(IC_KV_OP_EVICT, 1, 0, 13),
                      op(IC_KV_OP_ADD, 1, 0, 14), /* re-stored after its eviction: new run */
                      op(IC_KV_OP_EVICT, 4, 0, 15), op(IC_KV_OP_ADD, 5, 2, 16), /* other replica */
                      op(SUB_OP_SYNCED, 0, 2, 0),   op(IC_KV_OP_ADD, 6, 2, 17)};
  subq_push(&q, ops, 9, reps);
  ic_kv_op_t buf[SUB_MAX_ENTRIES_PER_CSU];
  uint64_t last;
  size_t sizes[8], n = 0, k;
  pthread_mutex_lock(&q.mu);
  while ((k = subq_peek_mixed(&q, buf, SUB_MAX_ENTRIES_PER_CSU, &last, reps)) ||
         (k = subq_peek_group(&q, buf, SUB_MAX_ENTRIES_PER_CSU, &last, reps))) {
    cr_assert_lt(n, 8);
    sizes[n++] = k;
    subq_commit(&q, last);
  }
  pthread_mutex_unlock(&q.mu);
  cr_assert_eq(n, 5);
  cr_assert_eq(sizes[0], 4); /* A1 E2 A3 E1 */
  cr_assert_eq(sizes[1], 2); /* A1 E4 */
  cr_assert_eq(sizes[2], 1); /* A5 (r1) */
  cr_assert_eq(sizes[3], 1); /* the marker, alone */
  cr_assert_eq(sizes[4], 1); /* A6 */
  cr_assert_eq(q.live, 0);
  cr_assert_eq(q.live_evicts, 0);
  subq_destroy(&q);
}

Test(kvevents_queue, clear_keeps_a_queued_full_state_marker) {
  subq_t q;
  cr_assert_eq(subq_init(&q, 1 << 20), 0);
  ic_kv_op_t ops[] = {op(IC_KV_OP_ADD, 1, 0, 10), op(SUB_OP_SYNCED, 0, 0, 0),
                      op(IC_KV_OP_CLEAR, 0, 0, 11)};
  subq_push(&q, ops, 3, reps);
  cr_assert_eq(q.live, 2); /* the add is superseded, the marker stays */
  ic_kv_op_t buf[4];
  uint64_t last;
  pthread_mutex_lock(&q.mu);
  cr_assert_eq(subq_peek_group(&q, buf, 4, &last, reps), 1);
  cr_assert_eq(buf[0].kind, SUB_OP_SYNCED);
  pthread_mutex_unlock(&q.mu);
  subq_destroy(&q);
}

/* A window tick cuts the stream at its grid time (docs/ha.md, "One flush grid"): ops pushed
 * before it go, later ones wait, whichever peek runs; no cut drains everything. */
Test(kvevents_queue, a_cut_stops_peeks_at_the_first_op_pushed_at_or_after_it) {
  subq_t q;
  cr_assert_eq(subq_init(&q, 1 << 20), 0);
  ic_kv_op_t ops[] = {op(IC_KV_OP_ADD, 1, 0, 10), op(IC_KV_OP_EVICT, 2, 0, 11),
                      op(IC_KV_OP_ADD, 3, 0, 12), op(IC_KV_OP_ADD, 4, 0, 13)};
  int64_t pushed[] = {1000, 1999, 2000, 2500};
  for (int i = 0; i < 4; i++)
    ops[i].recv_ns = pushed[i];
  subq_push(&q, ops, 4, reps);
  ic_kv_op_t buf[8];
  uint64_t last;
  pthread_mutex_lock(&q.mu);
  q.cut_ns = 2000;
  cr_assert_eq(subq_peek_mixed(&q, buf, 8, &last, reps), 2); /* A1 E2 */
  subq_commit(&q, last);
  cr_assert_eq(subq_peek_mixed(&q, buf, 8, &last, reps), 0); /* A3 is past the cut */
  cr_assert_eq(subq_peek_group(&q, buf, 8, &last, reps), 0);
  q.cut_ns = 1000; /* nothing before it left */
  cr_assert_eq(subq_peek_group(&q, buf, 8, &last, reps), 0);
  q.cut_ns = 2501;
  cr_assert_eq(subq_peek_group(&q, buf, 8, &last, reps), 2); /* A3 A4 */
  subq_commit(&q, last);
  ic_kv_op_t later = op(IC_KV_OP_ADD, 5, 0, 14);
  later.recv_ns = 9000;
  pthread_mutex_unlock(&q.mu);
  subq_push(&q, &later, 1, reps);
  pthread_mutex_lock(&q.mu);
  cr_assert_eq(subq_peek_group(&q, buf, 8, &last, reps), 0);
  q.cut_ns = 0;
  cr_assert_eq(subq_peek_group(&q, buf, 8, &last, reps), 1);
  pthread_mutex_unlock(&q.mu);
  subq_destroy(&q);
}
