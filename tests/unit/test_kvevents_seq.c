/* Unit tests for lib/kvevents sequence continuity: next/gap/duplicate/restart/invalid verdicts,
 * including the reconnect case where a restarted engine's first seen number is small, not 0. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ic/kvevents.h"

static ic_kv_seq_t *fresh(void) {
  ic_kv_seq_t *s = malloc(sizeof(*s));
  cr_assert_not_null(s);
  ic_kv_seq_reset(s);
  return s;
}

static uint64_t dg(const char *payload) {
  return ic_kv_seq_digest((const uint8_t *)payload, strlen(payload));
}

Test(kvevents_seq, first_next_gap) {
  ic_kv_seq_t *s = fresh();
  cr_assert_eq(ic_kv_seq_check(s, 5, dg("a")), IC_KV_SEQ_FIRST);
  ic_kv_seq_applied(s, 5, dg("a"));
  cr_assert_eq(ic_kv_seq_check(s, 6, dg("b")), IC_KV_SEQ_NEXT);
  ic_kv_seq_applied(s, 6, dg("b"));
  cr_assert_eq(ic_kv_seq_check(s, 9, dg("c")), IC_KV_SEQ_GAP);
  cr_assert_eq(s->last, 6);
  free(s);
}

Test(kvevents_seq, same_payload_below_last_is_a_duplicate) {
  ic_kv_seq_t *s = fresh();
  for (uint64_t k = 0; k < 10; k++)
    ic_kv_seq_applied(s, k, k * 7919);
  cr_assert_eq(ic_kv_seq_check(s, 9, 9 * 7919), IC_KV_SEQ_DUP);
  cr_assert_eq(ic_kv_seq_check(s, 3, 3 * 7919), IC_KV_SEQ_DUP);
  free(s);
}

Test(kvevents_seq, a_small_nonzero_number_with_new_payload_is_a_restart) {
  /* The old engine reached 500; the restarted one is first heard at 3 (slow reconnect). */
  ic_kv_seq_t *s = fresh();
  for (uint64_t k = 0; k <= 500; k++)
    ic_kv_seq_applied(s, k, k);
  cr_assert_eq(ic_kv_seq_check(s, 3, 123456789), IC_KV_SEQ_RESTART);
  cr_assert_eq(ic_kv_seq_check(s, 500, 1), IC_KV_SEQ_RESTART);
  cr_assert_eq(ic_kv_seq_check(s, 0, 42), IC_KV_SEQ_RESTART);
  free(s);
}

Test(kvevents_seq, an_unremembered_old_number_is_a_restart) {
  ic_kv_seq_t *s = fresh();
  ic_kv_seq_applied(s, 1000000, 1);
  cr_assert_eq(ic_kv_seq_check(s, 10, 10), IC_KV_SEQ_RESTART);
  cr_assert_eq(ic_kv_seq_match(s, 10, 10), -1);
  cr_assert_eq(ic_kv_seq_match(s, 1000000, 1), 1);
  cr_assert_eq(ic_kv_seq_match(s, 1000000, 2), 0);
  free(s);
}

Test(kvevents_seq, hostile_numbers_are_invalid_and_not_adopted) {
  ic_kv_seq_t *s = fresh();
  ic_kv_seq_applied(s, 7, 7);
  /* 2^64-2: counting it as a gap would claim 1.8e19 missing batches */
  cr_assert_eq(ic_kv_seq_check(s, UINT64_MAX - 1, 1), IC_KV_SEQ_INVALID);
  cr_assert_eq(ic_kv_seq_check(s, IC_KV_SEQ_END, 1), IC_KV_SEQ_INVALID);
  cr_assert_eq(ic_kv_seq_check(s, 8 + IC_KV_SEQ_MAX_GAP + 1, 1), IC_KV_SEQ_INVALID);
  cr_assert_eq(ic_kv_seq_check(s, 8 + IC_KV_SEQ_MAX_GAP, 1), IC_KV_SEQ_GAP);
  cr_assert_eq(ic_kv_seq_check(s, 8, 1), IC_KV_SEQ_NEXT);
  /* even before anything was applied, the end marker is not a message number */
  ic_kv_seq_reset(s);
  cr_assert_eq(ic_kv_seq_check(s, IC_KV_SEQ_END, 1), IC_KV_SEQ_INVALID);
  free(s);
}

Test(kvevents_seq, replayed_older_number_does_not_move_last_back) {
  ic_kv_seq_t *s = fresh();
  ic_kv_seq_applied(s, 50, 1);
  ic_kv_seq_applied(s, 40, 2);
  cr_assert_eq(s->last, 50);
  cr_assert_eq(ic_kv_seq_check(s, 40, 2), IC_KV_SEQ_DUP);
  cr_assert_str_eq(ic_kv_seq_verdict_name(IC_KV_SEQ_RESTART), "restart");
  free(s);
}
