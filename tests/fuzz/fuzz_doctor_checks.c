/* libFuzzer target: what a cluster and a server hand `inferencecache doctor` (API lists, the
 * /snapshot body) as one JSON document {"backends","pods","events","tenants","policies",
 * "snapshot"} of any shape, through every check and the three renderings. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ic/doctor.h"

static int no_dial(void *ud, const char *ep, char *err, size_t n) {
  (void)ud;
  snprintf(err, n, "%.32s", ep);
  return ep[0] % 2;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ic_doctor_report_t r;
  ic_doctor_report_init(&r);
  ic_doctor_check_snapshot(&r, "u", 200, NULL, (const char *)data, size, false);
  json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
  json_t *b = json_object_get(doc, "backends"), *p = json_object_get(doc, "pods"),
         *e = json_object_get(doc, "events"), *t = json_object_get(doc, "tenants"),
         *pol = json_object_get(doc, "policies"), *s = json_object_get(doc, "snapshot");
  int64_t now = 1780000000000000LL;
  ic_doctor_check_backends(&r, b, p, now, no_dial, NULL);
  ic_doctor_check_backends(&r, b, NULL, now, NULL, NULL);
  ic_doctor_check_injection(&r, b, p, e);
  ic_doctor_check_index(&r, b, p, s);
  ic_doctor_check_orphans(&r, e, now);
  ic_doctor_check_tenants(&r, t);
  ic_doctor_check_coverage(&r, b, pol, t);
  json_decref(doc);
  for (int f = IC_DOCTOR_HUMAN; f <= IC_DOCTOR_TABLE; f++) {
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    if (m) {
      ic_doctor_render(&r, (ic_doctor_format_t)f, f == IC_DOCTOR_HUMAN, m);
      fclose(m);
    }
    free(buf);
  }
  ic_doctor_report_free(&r);
  return 0;
}
