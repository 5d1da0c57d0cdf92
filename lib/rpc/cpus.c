/* How many completion-queue threads a server gets by default: the CPUs this process may run
 * on (its affinity mask, e.g. taskset or a cpuset), further capped by a CPU quota (cgroup v2
 * cpu.max or v1 cfs_quota), so a server confined to one core runs one thread, not one per core. */
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rpc_internal.h"

/* Quota of one cgroup v2 directory in CPUs, rounded up; 0 = unlimited or unreadable. */
static int v2_quota(const char *dir) {
  char path[600];
  snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", dir);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char quota[32] = "";
  long long period = 0;
  int n = fscanf(f, "%31s %lld", quota, &period);
  fclose(f);
  if (n != 2 || !strcmp(quota, "max") || period <= 0) return 0;
  long long q = 0;
  if (sscanf(quota, "%lld", &q) != 1 || q <= 0) return 0;
  return (int)((q + period - 1) / period);
}

static int v1_quota(void) {
  long long q = 0, p = 0;
  FILE *f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r");
  if (!f) f = fopen("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "r");
  if (!f) return 0;
  int ok = fscanf(f, "%lld", &q) == 1;
  fclose(f);
  f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r");
  if (!f) f = fopen("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "r");
  if (!f) return 0;
  ok = ok && fscanf(f, "%lld", &p) == 1;
  fclose(f);
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
