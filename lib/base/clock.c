/* Realtime and monotonic clocks. Thin wrappers so callers never touch struct timespec. */
#include "ic/clock.h"

#include <time.h>

static int64_t read_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t ic_clock_realtime_ns(void) { return read_ns(CLOCK_REALTIME); }
int64_t ic_clock_realtime_us(void) { return read_ns(CLOCK_REALTIME) / 1000; }
int64_t ic_clock_monotonic_ns(void) { return read_ns(CLOCK_MONOTONIC); }
int64_t ic_clock_monotonic_us(void) { return read_ns(CLOCK_MONOTONIC) / 1000; }
