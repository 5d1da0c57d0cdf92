/* How many completion-queue threads a server gets by default: the CPUs this process may run
 * on (its affinity mask, e.g. taskset or a cpuset), further capped by a CPU quota (cgroup v2
 * cpu.max or v1 cfs_quota), so a server confined to one core runs one thread, not one per core. */
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ic/buf.h"
#include "rpc_internal.h"

/* The first numbers of a one-line control file; the count parsed (0 when unreadable). */
static int scan_file(const char *path, const char *fmt, void *a, void *b) {
  ic_buf_t text = IC_BUF_INIT;
  int n = ic_buf_read_file(path, 4096, &text, NULL) == 0 ? sscanf(text.data, fmt, a, b) : 0;
  ic_buf_free(&text);
  return n < 0 ? 0 : n;
}

/* Quota of one cgroup v2 directory in CPUs, rounded up; 0 = unlimited or unreadable. */
static int v2_quota(const char *dir) {
  char path[600];
  snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", dir);
  char quota[32] = "";
  long long period = 0;
  int n = scan_file(path, "%31s %lld", quota, &period);
  if (n != 2 || !strcmp(quota, "max") || period <= 0) return 0;
  long long q = 0;
  if (sscanf(quota, "%lld", &q) != 1 || q <= 0) return 0;
  return (int)((q + period - 1) / period);
}

static int v1_quota(void) {
  long long q = 0, p = 0;
  int ok = scan_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "%lld", &q, NULL) == 1 ||
           scan_file("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "%lld", &q, NULL) == 1;
  ok = ok && (scan_file("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "%lld", &p, NULL) == 1 ||
              scan_file("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "%lld", &p, NULL) == 1);
  return ok && q > 0 && p > 0 ? (int)((q + p - 1) / p) : 0;
}

/* The smallest quota on the way from this process's cgroup up to the root. */
static int cgroup_quota(void) {
  FILE *f = fopen("/proc/self/cgroup", "r");
  char line[512], dir[512] = "";
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "0::", 3)) {
      snprintf(dir, sizeof dir, "%s", line + 3);
      dir[strcspn(dir, "\n")] = '\0';
    }
  if (f) fclose(f);
  int best = 0;
  for (;;) {
    int q = v2_quota(strcmp(dir, "/") ? dir : "");
    if (q > 0 && (best == 0 || q < best)) best = q;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) break;
    *slash = '\0';
  }
  if (best == 0) {
    int q = v2_quota("");
    best = q > 0 ? q : v1_quota();
  }
  return best;
}

int ic_rpc_usable_cpus(void) {
  cpu_set_t set;
  int n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
  int q = cgroup_quota();
  if (q > 0 && q < n) n = q;
  return n > 0 ? n : 1;
}
