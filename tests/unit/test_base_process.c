/* lib/base: the process collector (ic_metrics_add_process) against what the kernel reports for
 * this very process, several collectors per registry, and the shared help/version output. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/cli.h"
#include "ic/err.h"
#include "ic/metrics.h"
#include "ic/version.h"

/* The value of an unlabelled sample in an exposition, or -1. */
static double sample(ic_metrics_t *m, const char *name) {
  ic_buf_t b = IC_BUF_INIT;
  cr_assert_eq(ic_metrics_render(m, &b), 0);
  char key[128];
  snprintf(key, sizeof key, "\n%s ", name);
  const char *p = strstr(b.data, key);
  double v = p ? strtod(p + strlen(key), NULL) : -1;
  ic_buf_free(&b);
  return v;
}

static double status_kb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  cr_assert(f);
  char line[256];
  double v = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, strlen(field)) == 0) v = strtod(line + strlen(field) + 1, NULL);
  fclose(f);
  return v;
}

Test(process_metrics, values_match_the_kernel) {
  ic_metrics_t *m = ic_metrics_new();
  cr_assert_eq(ic_metrics_add_process(m), 0);
  double rss = sample(m, "process_resident_memory_bytes");
  double kernel_rss = status_kb("VmRSS:") * 1024;
  cr_assert(rss > 0.5 * kernel_rss && rss < 2 * kernel_rss, "rss %g vs VmRSS %g", rss, kernel_rss);
  double vsz = sample(m, "process_virtual_memory_bytes");
  cr_assert(vsz >= rss, "vsize %g < rss %g", vsz, rss);
  double start = sample(m, "process_start_time_seconds");
  double now = (double)time(NULL);
  cr_assert(start > now - 600 && start <= now + 1, "start %g now %g", start, now);
  cr_assert(sample(m, "process_cpu_seconds_total") >= 0);
  cr_assert(sample(m, "process_max_fds") >= 64);

  double fds = sample(m, "process_open_fds");
  int extra[3];
  for (int i = 0; i < 3; i++)
    extra[i] = open("/dev/null", O_RDONLY);
  cr_assert_eq(sample(m, "process_open_fds"), fds + 3);
  for (int i = 0; i < 3; i++)
    close(extra[i]);
  cr_assert_eq(sample(m, "process_open_fds"), fds);
  ic_metrics_free(m);
}

static volatile double burn_sink;

Test(process_metrics, cpu_seconds_grow_with_work) {
  ic_metrics_t *m = ic_metrics_new();
  cr_assert_eq(ic_metrics_add_process(m), 0);
  double before = sample(m, "process_cpu_seconds_total");
  struct timespec t0, t1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  do {
    for (int i = 0; i < 100000; i++)
      burn_sink += i * 0.5;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
  } while ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 < 0.2);
  double after = sample(m, "process_cpu_seconds_total");
  cr_assert(after - before >= 0.1, "cpu %g -> %g", before, after);
  ic_metrics_free(m);
}

Test(process_metrics, registering_twice_is_refused) {
  ic_metrics_t *m = ic_metrics_new();
  cr_assert_eq(ic_metrics_add_process(m), 0);
  cr_assert_neq(ic_metrics_add_process(m), 0);
  ic_metrics_free(m);
}

static void bump(void *ud) { (*(int *)ud)++; }

Test(metrics, collectors_all_run_in_order) {
  ic_metrics_t *m = ic_metrics_new();
  int a = 0, b = 0;
  ic_metrics_on_collect(m, bump, &a);
  cr_assert_eq(ic_metrics_add_process(m), 0);
  ic_metrics_on_collect(m, bump, &b);
  ic_buf_t out = IC_BUF_INIT;
  ic_metrics_render(m, &out);
  ic_buf_free(&out);
  cr_assert_eq(a, 1);
  cr_assert_eq(b, 1);
  cr_assert(sample(m, "process_resident_memory_bytes") > 0);
  ic_metrics_free(m);
}

Test(cli, usage_layout_and_version_line) {
  static const ic_cli_flag_t flags[] = {
      {"bind", "string", ":80", "where to listen"},
      {"count", "int", "3", "how many"},
      {"quiet", NULL, NULL, "say less\nmuch less"},
      {"name", "string", NULL, "who"},
  };
  ic_cli_t cli = {"prog", "does a thing", "FILE...", flags, 4};
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ic_cli_usage(&cli, f);
  fclose(f);
  cr_assert_str_eq(text, "prog: does a thing\n\n"
                         "Usage: prog [flags] FILE...\n\n"
                         "Flags (-name or --name; a value as -name=value or -name value):\n"
                         "  -bind string\n    \twhere to listen (default \":80\")\n"
                         "  -count int\n    \thow many (default 3)\n"
                         "  -quiet\n    \tsay less\n    \tmuch less\n"
                         "  -name string\n    \twho\n"
                         "  -help\n    \tprint this help and exit\n"
                         "  -version\n    \tprint the version and git commit and exit\n");
  free(text);
  text = NULL;
  f = open_memstream(&text, &len);
  ic_version_print(f, "prog");
  fclose(f);
  char want[256];
  snprintf(want, sizeof want, "prog version %s (commit %s)\n", ic_version, ic_git_commit);
  cr_assert_str_eq(text, want);
  cr_assert(strlen(ic_git_commit) >= 7);
  free(text);
}
