/* Clocks (part of lib/base): realtime for timestamps on the wire, monotonic for durations.
 * All functions are thread-safe and never fail on Linux. */
#ifndef IC_CLOCK_H
#define IC_CLOCK_H
#include <stdint.h>

int64_t ic_clock_realtime_us(void);  /* Unix microseconds */
int64_t ic_clock_realtime_ns(void);  /* Unix nanoseconds */
int64_t ic_clock_monotonic_ns(void); /* CLOCK_MONOTONIC nanoseconds */
int64_t ic_clock_monotonic_us(void);

#endif
