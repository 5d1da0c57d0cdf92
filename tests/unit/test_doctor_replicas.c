/* lib/doctor replica agreement (ic_doctor_check_replicas): readiness per replica, the policy most
 * replicas hold, index sizes against the fullest replica, and the one agreement finding. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ic/doctor.h"

static ic_doctor_report_t R;
static void setup(void) { ic_doctor_report_init(&R); }
static void teardown(void) { ic_doctor_report_free(&R); }
TestSuite(doctor_replicas, .init = setup, .fini = teardown);

static const char *codes(void) {
  static char out[1024];
  out[0] = 0;
  for (size_t i = 0; i < R.len; i++)
    snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s@%s", i ? " " : "", R.items[i].code,
             R.items[i].resource);
  return out;
}

#define SHA_A "aaaa000000000000000000000000000000000000000000000000000000000000"
#define SHA_B "bbbb000000000000000000000000000000000000000000000000000000000000"

static ic_doctor_replica_t rep(const char *addr, long ready, const char *sha, long long prefixes) {
  return (ic_doctor_replica_t){.addr = addr,
                               .readyz_http = ready,
                               .readyz_text = ready == 200 ? "ok\n" : "warming up: 1/2 reporters",
                               .have_snapshot = true,
                               .policy_sha256 = sha,
                               .total_prefixes = prefixes};
}

Test(doctor_replicas, all_ready_same_policy_close_sizes_agree) {
  ic_doctor_replica_t v[] = {rep("a:9090", 200, SHA_A, 100000), rep("b:9090", 200, SHA_A, 95000),
                             rep("c:9090", 200, SHA_A, 99000)};
  ic_doctor_check_replicas(&R, v, 3);
  cr_assert_str_eq(codes(), "RP002@a:9090 RP002@b:9090 RP002@c:9090 RP005@");
  cr_assert(strstr(R.items[3].message, "3 replicas ready"), "%s", R.items[3].message);
  cr_assert(strstr(R.items[3].message, "95000 to 100000 prefixes"), "%s", R.items[3].message);
  cr_assert(strstr(R.items[3].message, "sha256:aaaa00000000"), "%s", R.items[3].message);
  cr_assert_eq(ic_doctor_exit_code(&R), 0);
}

Test(doctor_replicas, warming_replica_is_a_warning_with_its_progress) {
  ic_doctor_replica_t v[] = {rep("a:9090", 200, SHA_A, 10), rep("b:9090", 503, SHA_A, 10)};
  ic_doctor_check_replicas(&R, v, 2);
  cr_assert_str_eq(codes(), "RP002@a:9090 RP001@b:9090");
  cr_assert(strstr(R.items[1].message, "warming up: 1/2 reporters"), "%s", R.items[1].message);
  cr_assert_eq(ic_doctor_exit_code(&R), 1);
}

Test(doctor_replicas, unreachable_readyz_names_the_port_flag) {
  ic_doctor_replica_t v[] = {rep("a:9090", 200, SHA_A, 10), rep("b:9090", 0, SHA_A, 10)};
  v[1].readyz_text = "Connection refused";
  ic_doctor_check_replicas(&R, v, 2);
  cr_assert_str_eq(codes(), "RP002@a:9090 RP001@b:9090");
  cr_assert(strstr(R.items[1].message, "Connection refused"), "%s", R.items[1].message);
  cr_assert(strstr(R.items[1].message, "--readyz-port"), "%s", R.items[1].message);
}

Test(doctor_replicas, the_odd_policy_out_is_named_against_the_majority) {
  ic_doctor_replica_t v[] = {rep("a:9090", 200, SHA_B, 10), rep("b:9090", 200, SHA_A, 10),
                             rep("c:9090", 200, SHA_A, 10)};
  ic_doctor_check_replicas(&R, v, 3);
  cr_assert_str_eq(codes(), "RP002@a:9090 RP003@a:9090 RP002@b:9090 RP002@c:9090");
  cr_assert(strstr(R.items[1].message, "policy sha256:bbbb00000000, 2 of 3 replicas hold "
                                       "sha256:aaaa00000000"),
            "%s", R.items[1].message);
}

Test(doctor_replicas, a_replica_without_a_policy_yet_is_flagged) {
  ic_doctor_replica_t v[] = {rep("a:9090", 200, SHA_A, 10), rep("b:9090", 200, "none", 10),
                             rep("c:9090", 200, SHA_A, 10)};
  ic_doctor_check_replicas(&R, v, 3);
  cr_assert_eq(ic_doctor_count_code(&R, "RP003"), 1);
  cr_assert(strstr(R.items[2].message, "none (no policy pushed yet)"), "%s", R.items[2].message);
  /* no policy anywhere is agreement too (the server defaults apply on every replica) */
  ic_doctor_report_free(&R);
  ic_doctor_report_init(&R);
  ic_doctor_replica_t w[] = {rep("a:9090", 200, "none", 0), rep("b:9090", 200, "none", 0)};
  ic_doctor_check_replicas(&R, w, 2);
  cr_assert_str_eq(codes(), "RP002@a:9090 RP002@b:9090 RP005@");
}

Test(doctor_replicas, an_older_server_without_the_header_is_not_compared) {
  ic_doctor_replica_t v[] = {rep("a:9090", 200, SHA_A, 10), rep("b:9090", 200, NULL, 10)};
  ic_doctor_check_replicas(&R, v, 2);
  cr_assert_eq(ic_doctor_count_code(&R, "RP003"), 0);
  cr_assert(strstr(R.items[1].message, "unknown"), "%s", R.items[1].message);
}

Test(doctor_replicas, index_sizes_within_the_tolerance_or_the_slack_agree) {
  /* 10 % of the largest, or 100 prefixes, whichever is more */
  ic_doctor_replica_t v[] = {rep("a:9090", 200, SHA_A, 1000), rep("b:9090", 200, SHA_A, 900),
                             rep("c:9090", 200, SHA_A, 899), rep("d:9090", 200, SHA_A, 50000),
                             rep("e:9090", 200, SHA_A, 44999)};
  ic_doctor_check_replicas(&R, v, 3); /* a, b, c: 101 short of 1000 is over both */
  cr_assert_str_eq(codes(), "RP002@a:9090 RP002@b:9090 RP002@c:9090 RP004@c:9090");
  cr_assert(strstr(R.items[3].message, "indexes 899 prefixes, 10% fewer than a:9090 (1000)"), "%s",
            R.items[3].message);
  ic_doctor_report_free(&R);
  ic_doctor_report_init(&R);
  ic_doctor_check_replicas(&R, v + 3, 2); /* 5001 short of 50000: over 10 % */
  cr_assert_eq(ic_doctor_count_code(&R, "RP004"), 1);
  ic_doctor_report_free(&R);
  ic_doctor_report_init(&R);
  ic_doctor_replica_t small[] = {rep("a:9090", 200, SHA_A, 60), rep("b:9090", 200, SHA_A, 0)};
  ic_doctor_check_replicas(&R, small, 2); /* 60 apart: within the slack */
  cr_assert_eq(ic_doctor_count_code(&R, "RP004"), 0);
  cr_assert_eq(ic_doctor_count_code(&R, "RP005"), 1);
}

Test(doctor_replicas, unreadable_snapshot_means_no_comparison_and_no_agreement_claim) {
  ic_doctor_replica_t v[] = {rep("a:9090", 200, SHA_A, 1000), rep("b:9090", 200, NULL, 0)};
  v[1].have_snapshot = false;
  ic_doctor_check_replicas(&R, v, 2);
  cr_assert_str_eq(codes(), "RP002@a:9090 RP002@b:9090");
  cr_assert(strstr(R.items[1].message, "could not be read"), "%s", R.items[1].message);
}
