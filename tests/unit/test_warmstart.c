/* Unit tests of lib/warmstart: who a new server replica waits for (window-seen reporters, the
 * controller's /reporters list with -dp<N> matching), the timeout, the latch and the body parser.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "ic/warmstart.h"

#define S 1000000LL

Test(warmstart, disabled_is_ready_at_once) {
  ic_warmstart_t *w = ic_warmstart_new(0, 5 * S, 0);
  cr_assert(ic_warmstart_ready(w, 0));
  ic_warmstart_progress_t p;
  ic_warmstart_progress(w, 0, &p);
  cr_assert_str_eq(p.reason, "disabled");
  ic_warmstart_free(w);
}

Test(warmstart, nobody_known_ready_when_window_ends) {
  ic_warmstart_t *w = ic_warmstart_new(100, 5 * S, 60 * S);
  cr_assert_not(ic_warmstart_ready(w, 100 + 4 * S));
  cr_assert(ic_warmstart_ready(w, 100 + 5 * S));
  ic_warmstart_free(w);
}

Test(warmstart, window_reporters_must_send_full_state) {
  ic_warmstart_t *w = ic_warmstart_new(0, 5 * S, 60 * S);
  ic_warmstart_heard(w, "a", false, 1 * S);
  ic_warmstart_heard(w, "b", false, 2 * S);
  ic_warmstart_heard(w, "a", true, 3 * S);
  cr_assert_not(ic_warmstart_ready(w, 6 * S)); /* b still missing */
  ic_warmstart_heard(w, "late", false, 7 * S); /* after the window: not waited for */
  ic_warmstart_progress_t p;
  ic_warmstart_progress(w, 7 * S, &p);
  cr_assert_eq(p.expected, 2);
  cr_assert_eq(p.synced, 1);
  ic_buf_t b = IC_BUF_INIT;
  ic_warmstart_describe(w, 7 * S, &b);
  cr_assert(strstr(b.data, "waiting for: b"), "%s", b.data);
  ic_buf_free(&b);
  ic_warmstart_heard(w, "b", true, 8 * S);
  cr_assert(ic_warmstart_ready(w, 8 * S));
  ic_warmstart_progress(w, 9 * S, &p);
  cr_assert_str_eq(p.reason, "complete");
  cr_assert_eq(p.ready_after_us, 8 * S);
  ic_warmstart_free(w);
}

Test(warmstart, timeout_bounds_the_wait_and_latches) {
  ic_warmstart_t *w = ic_warmstart_new(0, 5 * S, 20 * S);
  ic_warmstart_heard(w, "never", false, 1 * S);
  cr_assert_not(ic_warmstart_ready(w, 19 * S));
  cr_assert(ic_warmstart_ready(w, 20 * S));
  cr_assert(ic_warmstart_ready(w, 1 * S)); /* latched */
  ic_warmstart_progress_t p;
  ic_warmstart_progress(w, 21 * S, &p);
  cr_assert_str_eq(p.reason, "timeout");
  ic_warmstart_free(w);
}

Test(warmstart, controller_list_ends_the_window_early_and_matches_dp_ranks) {
  ic_warmstart_t *w = ic_warmstart_new(0, 10 * S, 60 * S);
  const char *names[] = {"pod-a", "pod-b"};
  cr_assert_eq(ic_warmstart_set_reporters(w, names, 2), 0);
  cr_assert_not(ic_warmstart_ready(w, 1 * S));
  ic_warmstart_heard(w, "pod-a-dp0", true, 1 * S); /* a rank of pod-a */
  cr_assert_not(ic_warmstart_ready(w, 1 * S));
  ic_warmstart_heard(w, "pod-bx", true, 1 * S); /* not pod-b */
  cr_assert_not(ic_warmstart_ready(w, 1 * S));
  ic_warmstart_heard(w, "pod-b", true, 2 * S);
  cr_assert(ic_warmstart_ready(w, 2 * S)); /* before the 10 s window ends */
  ic_warmstart_free(w);
}

Test(warmstart, list_after_the_markers_counts_them) {
  ic_warmstart_t *w = ic_warmstart_new(0, 10 * S, 60 * S);
  ic_warmstart_heard(w, "p1-dp3", true, 1 * S);
  const char *names[] = {"p1"};
  ic_warmstart_set_reporters(w, names, 1);
  cr_assert(ic_warmstart_ready(w, 2 * S));
  ic_warmstart_free(w);
}

Test(warmstart, parse_reporters) {
  size_t n;
  char err[128];
  const char *ok = "{\"replicas\":[\"a\",\"b-c\"],\"extra\":1}";
  char **v = ic_warmstart_parse_reporters(ok, strlen(ok), &n, err, sizeof err);
  cr_assert(v);
  cr_assert_eq(n, 2);
  cr_assert_str_eq(v[1], "b-c");
  cr_assert_null(v[2]);
  ic_warmstart_names_free(v);
  const char *bad[] = {"",
                       "[]",
                       "{\"replicas\":\"a\"}",
                       "{\"replicas\":[1]}",
                       "{\"replicas\":[\"\"]}",
                       "{\"replicas\":[\"a\\u0000b\"]}",
                       "{\"replicas\":[],\"replicas\":[]}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert_null(ic_warmstart_parse_reporters(bad[i], strlen(bad[i]), &n, err, sizeof err), "%s",
                   bad[i]);
  v = ic_warmstart_parse_reporters("{\"replicas\":[]}", 15, &n, err, sizeof err);
  cr_assert(v);
  cr_assert_eq(n, 0);
  ic_warmstart_names_free(v);
}
