/* lib/doctor replica agreement: with several server replicas (docs/ha.md) each one must be
 * ready, hold the policy the others hold, and index about as much as the fullest one. Pure: the
 * run (run.c) gathers each replica's /readyz, /snapshot body and headers. */
#include <stdio.h>
#include <string.h>

#include "ic/doctor.h"

/* The policy hash most replicas hold (ties: the one seen first); NULL when none is known. */
static const char *common_policy(const ic_doctor_replica_t *reps, size_t n, size_t *holders) {
  const char *best = NULL;
  *holders = 0;
  for (size_t i = 0; i < n; i++) {
    if (!reps[i].have_snapshot || !reps[i].policy_sha256) continue;
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
      k += reps[j].have_snapshot && reps[j].policy_sha256 &&
           !strcmp(reps[j].policy_sha256, reps[i].policy_sha256);
    if (k > *holders) best = reps[i].policy_sha256, *holders = k;
  }
  return best;
}

static void short_sha(char *out, size_t n, const char *sha) {
  if (!sha)
    snprintf(out, n, "unknown (server without the policy header)");
  else if (!strcmp(sha, "none"))
    snprintf(out, n, "none (no policy pushed yet)");
  else
    snprintf(out, n, "sha256:%.12s", sha);
}

void ic_doctor_check_replicas(ic_doctor_report_t *r, const ic_doctor_replica_t *reps, size_t n) {
  const char *chk = IC_DOCTOR_CHECK_REPLICAS;
  size_t before = r->len, holders = 0;
  const char *policy = common_policy(reps, n, &holders);
  long long most = -1;
  const char *fullest = NULL;
  for (size_t i = 0; i < n; i++)
    if (reps[i].have_snapshot && reps[i].total_prefixes > most)
      most = reps[i].total_prefixes, fullest = reps[i].addr;
  long long least = most;
  for (size_t i = 0; i < n; i++) {
    const ic_doctor_replica_t *x = &reps[i];
    char sha[80];
    short_sha(sha, sizeof sha, x->policy_sha256);
    if (x->readyz_http == 200) {
      if (x->have_snapshot)
        ic_doctor_add(r, "RP002", IC_DOCTOR_OK, chk, x->addr,
                      "replica ready; %lld prefixes indexed; policy %s", x->total_prefixes, sha);
      else
        ic_doctor_add(r, "RP002", IC_DOCTOR_OK, chk, x->addr,
                      "replica ready (its /snapshot could not be read: index and policy not "
                      "compared, see SN00x)");
    } else if (x->readyz_http == 0) {
      ic_doctor_add(r, "RP001", IC_DOCTOR_WARN, chk, x->addr,
                    "GET /readyz failed: %s — is --readyz-port the servers' public HTTP port?",
                    x->readyz_text && *x->readyz_text ? x->readyz_text : "no answer");
    } else {
      char text[400];
      snprintf(text, sizeof text, "%s", x->readyz_text ? x->readyz_text : "");
      size_t tl = strlen(text);
      while (tl && (text[tl - 1] == '\n' || text[tl - 1] == ' '))
        text[--tl] = 0;
      ic_doctor_add(r, "RP001", IC_DOCTOR_WARN, chk, x->addr,
                    "replica not ready (/readyz HTTP %ld): %s — a new replica waits for every "
                    "subscriber's full state (or --warm-start-timeout-ms); gateways that "
                    "health-check skip it meanwhile",
                    x->readyz_http, *text ? text : "no reason given");
    }
    if (!x->have_snapshot) continue;
    if (policy && x->policy_sha256 && strcmp(x->policy_sha256, policy)) {
      char want[80];
      short_sha(want, sizeof want, policy);
      ic_doctor_add(r, "RP003", IC_DOCTOR_WARN, chk, x->addr,
                    "replica holds policy %s, %zu of %zu replicas hold %s — the controller "
                    "has not (re)pushed to it: check its log for this address and "
                    "--cachepolicy-push-interval",
                    sha, holders, n, want);
    }
    if (x->total_prefixes < least) least = x->total_prefixes;
    long long gap = most - x->total_prefixes;
    if (gap > IC_DOCTOR_PREFIX_SLACK && (double)gap > IC_DOCTOR_PREFIX_TOLERANCE * (double)most)
      ic_doctor_add(r, "RP004", IC_DOCTOR_WARN, chk, x->addr,
                    "replica indexes %lld prefixes, %.0f%% fewer than %s (%lld): it is missing "
                    "reports — a subscriber that cannot reach it "
                    "(kvevent_subscriber_target_connected), a partition, or still warming up",
                    x->total_prefixes, 100.0 * (double)gap / (double)most, fullest, most);
  }
  bool clean = true;
  for (size_t i = 0; i < n; i++)
    clean = clean && reps[i].have_snapshot;
  for (size_t i = before; i < r->len; i++)
    clean = clean && r->items[i].status == IC_DOCTOR_OK;
  if (clean && n) {
    char sha[80];
    short_sha(sha, sizeof sha, policy);
    ic_doctor_add(r, "RP005", IC_DOCTOR_OK, chk, NULL,
                  "%zu replicas ready and in agreement: policy %s on each, %lld to %lld "
                  "prefixes indexed",
                  n, sha, least, most);
  }
}
