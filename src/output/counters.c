/* The counters' names (counters.h). */
#include "counters.h"

#include <stddef.h>

struct counter_name {
	const char *key, *label;
};

/* indexed by enum pms_counter: a new counter without a name fails to build (below) */
static const struct counter_name names[] = {
    [PMS_CNT_RSS_EVENTS] = {"rss_events", "rss events"},
    [PMS_CNT_GROWTH] = {"growth_events", "growth events"},
    [PMS_CNT_SHRINK] = {"shrink_events", "shrink events"},
    [PMS_CNT_FAULTS] = {"page_faults", "page faults"},
    [PMS_CNT_SAMPLES] = {"samples", "samples"},
    [PMS_CNT_BUDGET_SKIPPED] = {"budget_skipped", "sampled out"},
    [PMS_CNT_NO_TSTATE] = {"no_thread_state", "no thread state"},
    [PMS_CNT_READ_ERRORS] = {"read_errors", "read errors"},
    [PMS_CNT_TRUNCATED] = {"truncated", "truncated"},
    [PMS_CNT_RINGBUF_FULL] = {"dropped", "ring buffer full"},
    [PMS_CNT_RELEASES] = {"releases", "releases"},
    [PMS_CNT_BUDGET_OVERFLOW] = {"budget_overflow", "dropped beyond the budget"},
    [PMS_CNT_ALLOC_CALLS] = {"alloc_calls", "allocation calls"},
    [PMS_CNT_FREE_CALLS] = {"free_calls", "frees"},
    [PMS_CNT_ALLOC_SAMPLES] = {"alloc_samples", "sampled"},
    [PMS_CNT_FREES_MATCHED] = {"frees_matched", "frees of samples"},
    [PMS_CNT_LIVE_FULL] = {"live_map_full", "live map full"},
    [PMS_CNT_NESTED] = {"nested_calls", "nested calls"},
    [PMS_CNT_WATCH_TRAPS] = {"watch_traps", "watchpoint traps"},
    [PMS_CNT_WATCH_HITS] = {"watch_hits", "watchpoint hits"},
    [PMS_CNT_WATCH_FOLLOWING] = {"watch_traps_following", "traps while following"},
    [PMS_CNT_SURV_ARMS] = {"survivor_arms", "watch arms"},
    [PMS_CNT_SURV_LOST] = {"survivor_arms_lost", "arms thrown away"},
    [PMS_CNT_SURV_FOLLOWED] = {"survivor_followed", "followed"},
    [PMS_CNT_SURV_SURVIVED] = {"survivors", "survived"},
    [PMS_CNT_SURV_DIED] = {"survivor_died", "died"},
    [PMS_CNT_SURV_HELD] = {"survivor_held_bytes", "bytes held by survivors"},
    [PMS_CNT_SURV_FALLBACK] = {"survivor_fallback_bytes", "bytes with no survivor"},
    [PMS_CNT_SURV_THREADS] = {"threads_watched", "threads watched"},
    [PMS_CNT_SURV_UNWATCHED] = {"threads_unwatched", "threads unwatched"},
};

_Static_assert(sizeof(names) / sizeof(names[0]) == PMS_CNT_MAX,
	       "every counter of enum pms_counter needs its names here");

const char *counter_key(enum pms_counter c)
{
	return (unsigned)c < PMS_CNT_MAX ? names[c].key : NULL;
}

const char *counter_label(enum pms_counter c)
{
	return (unsigned)c < PMS_CNT_MAX ? names[c].label : NULL;
}

void counter_print_list(FILE *out, const uint64_t values[PMS_CNT_MAX],
			const enum pms_counter *which, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(out, "%s%s %llu", i ? ", " : "", counter_label(which[i]),
			(unsigned long long)values[which[i]]);
}
