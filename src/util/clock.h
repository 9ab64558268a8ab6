/* The one clock the profiler compares times on: CLOCK_MONOTONIC, the clock bpf_ktime_get_ns()
 * reads in the kernel, so event times and our own can be subtracted. */
#ifndef PMS_CLOCK_H
#define PMS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
