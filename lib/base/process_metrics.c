/* The process collector (ic_metrics_add_process): the six process_* series Prometheus users
 * expect from any Go service, read from /proc/self at scrape time. Operators size the index by
 * process_resident_memory_bytes, so these must match what the kernel reports. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/err.h"
#include "ic/metrics.h"
#include "metrics_internal.h"

typedef struct proc_metrics {
  ic_metric_t *cpu, *open_fds, *max_fds, *rss, *vsize, *start;
} proc_metrics_t;

/* Boot time (seconds since the epoch) from /proc/stat's btime; 0 when unreadable. */
static double boot_time(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return 0;
  char line[256];
  double bt = 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "btime ", 6) == 0) {
      bt = strtod(line + 6, NULL);
      break;
    }
  fclose(f);
  return bt;
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory stream's own descriptor */
}

static double max_fds(void) {
  FILE *f = fopen("/proc/self/limits", "r");
  if (!f) return -1;
  char line[256];
  double v = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "Max open files", 14) == 0) {
      char *p = line + 14;
      while (*p == ' ')
        p++;
      v = strncmp(p, "unlimited", 9) == 0 ? INFINITY : strtod(p, NULL);
      break;
    }
  fclose(f);
  return v;
}

static void refresh(void *ud) {
  proc_metrics_t *pm = ud;
  ic_buf_t buf = IC_BUF_INIT;
  if (ic_buf_read_file("/proc/self/stat", 4096, &buf, NULL) == 0) {
    /* Fields after the parenthesised command name (which may hold spaces), numbered from 3. */
    char *p = strrchr(buf.data, ')');
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    if (p && sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
                    "%llu %llu %lld",
                    &utime, &stime, &start, &vsize, &rss) == 5) {
      double hz = (double)sysconf(_SC_CLK_TCK);
      long page = sysconf(_SC_PAGESIZE);
      ic_metric_set(pm->cpu, (double)(utime + stime) / hz);
      ic_metric_set(pm->vsize, (double)vsize);
      ic_metric_set(pm->rss, (double)rss * (double)page);
      ic_metric_set(pm->start, boot_time() + (double)start / hz);
    }
  }
  ic_buf_free(&buf);
  int fds = count_fds();
  if (fds >= 0) ic_metric_set(pm->open_fds, fds);
  ic_metric_set(pm->max_fds, max_fds());
}

int ic_metrics_add_process(ic_metrics_t *m) {
  ic_metric_family_t *cpu = ic_metrics_counter(
      m, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", 0, NULL);
  ic_metric_family_t *ofd =
      ic_metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", 0, NULL);
  ic_metric_family_t *mfd =
      ic_metrics_gauge(m, "process_max_fds", "Maximum number of open file descriptors.", 0, NULL);
  ic_metric_family_t *rss = ic_metrics_gauge(m, "process_resident_memory_bytes",
                                             "Resident memory size in bytes.", 0, NULL);
  ic_metric_family_t *vsz =
      ic_metrics_gauge(m, "process_virtual_memory_bytes", "Virtual memory size in bytes.", 0, NULL);
  ic_metric_family_t *st =
      ic_metrics_gauge(m, "process_start_time_seconds",
                       "Start time of the process since unix epoch in seconds.", 0, NULL);
  if (!cpu || !ofd || !mfd || !rss || !vsz || !st) return IC_EINVAL;
  proc_metrics_t *pm = malloc(sizeof *pm);
  if (!pm) return IC_ENOMEM;
  *pm = (proc_metrics_t){ic_metric_plain(cpu), ic_metric_plain(ofd), ic_metric_plain(mfd),
                         ic_metric_plain(rss), ic_metric_plain(vsz), ic_metric_plain(st)};
  refresh(pm);
  if (ic_metrics_on_collect_owned(m, refresh, pm, true) != 0) {
    free(pm);
    return IC_ENOMEM;
  }
  return 0;
}
