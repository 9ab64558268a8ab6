/* What a recording learned: events from the kernel turned into stacks and sites (the innermost
 * Python frame), each with bytes grown and released and a time series, plus per-thread totals.
 * Memory is bounded: stacks, sites, tracked pages and series buckets all have caps. */
#ifndef PMS_PROFILE_H
#define PMS_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "pymemspy.h"
#include "pytarget.h"

struct profile;

struct profile_frame {
	const char *function;
	const char *file;
	int line;
};

struct profile_site {
	const char *function, *file;
	int line;
	int64_t grown;	  /* bytes charged to this site */
	int64_t released; /* of those, bytes released since (by address) */
	uint64_t samples;
	double first_seen; /* seconds since the start */
	/* the stack that charged this site the most bytes, innermost first */
	const struct profile_frame *stack;
	size_t stack_len;
	/* net bytes per bucket of profile_bucket_seconds(), from the start */
	const int64_t *series;
	size_t nseries;
	/* allocator sources: grown is the bytes allocated and released the bytes freed, both
	 * estimates from sampled allocations; these are the estimated counts and the variances
	 * of the byte estimates (for error bars) */
	double allocs, frees;
	double var_grown, var_live;
	uint64_t live_samples; /* sampled allocations of this site still alive */
};

/* A sampled allocation still alive. */
struct profile_live {
	double at;     /* seconds since the start */
	uint64_t size; /* bytes asked */
	uint64_t addr;
	uint32_t tid;
};

struct profile_thread {
	uint32_t tid;
	int64_t bytes;
};

/* Totals the events told. */
struct profile_totals {
	int64_t grown;		   /* bytes of growth charged */
	int64_t released;	   /* bytes released from tracked pages */
	int64_t shrunk;		   /* RSS decreases seen (any cause) */
	uint64_t events;	   /* growth events received */
	uint64_t stacks_lost;	   /* events whose stack never reached us */
	uint64_t pages_untracked;  /* growth not tracked by address (cap reached, or no address) */
	uint64_t allocs_untracked; /* sampled allocations whose free cannot be seen (caps) */
};

/* A profile that symbolizes stacks from target t as they arrive (t may be NULL for a profile
 * rebuilt from a file: it then takes no kernel events). NULL on ENOMEM. */
struct profile *profile_new(struct pytarget *t);
void profile_free(struct profile *p);

/* Adds one kernel event, received `at` seconds after the recording started. 0 or -ENOMEM. */
int profile_add_event(struct profile *p, const struct pms_event *ev, size_t size, double at);

/* Makes every series span the recording up to `at` seconds, even where nothing happened at
 * its end: a site that stopped growing must be judged with its flat tail. */
void profile_extend_to(struct profile *p, double at);

/* Sites sorted by net bytes (grown - released), biggest first; valid until the next add. */
const struct profile_site *const *profile_sites(struct profile *p, size_t *n);
/* A whole stack (not only its innermost frame) and what it was charged. */
struct profile_stack {
	const struct profile_frame *frames; /* innermost first */
	size_t nframes;
	int64_t grown;	  /* bytes grown, or allocated */
	int64_t released; /* of those, released, or freed */
	uint64_t samples;
};

/* The stacks with the most net bytes, biggest first: fills out (at most max), returns how many. */
size_t profile_stacks(const struct profile *p, struct profile_stack *out, size_t max);

/* The oldest sampled allocations of a site that are still alive, oldest first; returns how many
 * were written to out (at most max). */
size_t profile_oldest_live(const struct profile *p, const struct profile_site *s,
			   struct profile_live *out, size_t max);
/* Threads sorted by bytes, biggest first. */
const struct profile_thread *profile_threads(struct profile *p, size_t *n);
const struct profile_totals *profile_totals(const struct profile *p);
double profile_bucket_seconds(const struct profile *p);
/* Bytes the profile holds (for the profiler's own-cost figures). */
size_t profile_memory(const struct profile *p);

/* ---- Deltas: what changed since the last call, for record files written as they go ---- */

/* A site's identity is its index: stable for the life of the profile, starting at 0. */
struct profile_delta {
	uint32_t site;
	int64_t grown;	  /* bytes grown since the last take */
	int64_t released; /* bytes released since the last take */
	uint64_t samples;
	/* allocator sources (all 0 for growth): changes of the estimated counts, of the
	 * variances, and of the number of sampled allocations alive */
	double allocs, frees, var_grown, var_live;
	int64_t live_samples;
};

struct profile_delta_sink {
	/* a site seen for the first time (called before any delta or stack of it) */
	int (*site)(void *ctx, uint32_t site, const struct profile_site *s);
	/* the site's representative stack changed (or is new) */
	int (*stack)(void *ctx, uint32_t site, const struct profile_frame *frames, size_t n);
	/* the site grew or released something since the last take */
	int (*delta)(void *ctx, const struct profile_delta *d);
	/* a thread's bytes since the last take */
	int (*thread)(void *ctx, uint32_t tid, int64_t bytes);
	void *ctx;
};

/* Reports everything that changed since the previous call, in that order: new sites, new
 * stacks, deltas, threads. Returns 0 or the first non-zero value a callback returned. */
int profile_take_deltas(struct profile *p, const struct profile_delta_sink *sink);

/* ---- Rebuilding a profile from a record file (no target: p = profile_new(NULL)) ---- */

/* Defines site `id` (ids must come in order: 0, 1, 2...). 0, -EINVAL, -ENOMEM. */
int profile_define_site(struct profile *p, uint32_t id, const char *function, const char *file,
			int line, double first_seen);
/* Sets the representative stack of a defined site (strings are copied). */
int profile_set_stack(struct profile *p, uint32_t id, const struct profile_frame *frames, size_t n);
/* Adds a delta to a defined site at time `at` (seconds since the start). */
int profile_add_delta(struct profile *p, const struct profile_delta *d, double at);
/* Adds bytes to a thread. */
int profile_add_thread(struct profile *p, uint32_t tid, int64_t bytes);
/* Adds a whole stack with its figures (what profile_stacks reports), attached to no site. */
int profile_add_stack(struct profile *p, const struct profile_frame *frames, size_t n,
		      int64_t grown, int64_t released, uint64_t samples);
/* Adds a surviving sampled allocation to a defined site (what profile_oldest_live reports). */
int profile_add_live(struct profile *p, uint32_t id, const struct profile_live *l);
/* Replaces the totals (as recorded). */
void profile_set_totals(struct profile *p, const struct profile_totals *t);

#endif
