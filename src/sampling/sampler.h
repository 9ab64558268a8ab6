/* The kernel side of `record`, from user space: the libbpf lifecycle of the growth programs
 * (open, configure from the target's layout, load, attach), the ring buffer of events, the
 * counters, and detaching. */
#ifndef PMS_SAMPLER_H
#define PMS_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "allocators.h"
#include "errors.h"
#include "overhead.h"
#include "pymemspy.h"
#include "pytarget.h"
#include "source.h"

struct sampler;

/* How the allocator sources' probes are attached: the best the kernel has (sessions, 6.13+;
 * uprobe_multi links, 6.6+; perf uprobes), or from a given one down. */
enum sampler_attach {
	SAMPLER_ATTACH_AUTO,
	SAMPLER_ATTACH_SESSION,
	SAMPLER_ATTACH_MULTI,
	SAMPLER_ATTACH_PERF,
};

struct sampler_opts {
	enum pms_source source;
	enum sampler_attach attach; /* allocator sources */
	unsigned max_depth;	    /* frames per stack, 1..PMS_MAX_DEPTH */
	unsigned budget_per_sec; /* growth: stack walks per second before sampling; 0: no limit */
	uint64_t rate;		 /* allocator sources: mean bytes between samples */
	unsigned max_live;	 /* allocator sources: sampled allocations followed (0: default) */
	double max_overhead_pct; /* allocator sources: stop the probes above this predicted
				  * slowdown (% of one thread); 0: no bound */
	bool verbose;		 /* show libbpf's messages */
	bool host_checked;	 /* sampler_require already passed: sampler_open skips it */
};

/* Called for each event; size is the number of bytes received (frames are only present up to
 * it). A non-zero return stops the current poll and is returned by sampler_poll. */
typedef int (*sampler_event_fn)(const struct pms_event *ev, size_t size, void *ctx);

/* Whether this host and these privileges allow opts->source: 0, or -EPERM / -PMS_ENOFEATURE with
 * a message naming the capability or the feature (for survivors: hardware watchpoints that
 * trap, tested for real). sampler_open asks it too; callers ask first when they would
 * otherwise leave something behind (a record file). */
int sampler_require(const struct sampler_opts *opts, struct pms_error *err);

/* Loads and attaches the programs of opts->source for the target. Errors (message in err): -EPERM
 * when a privilege is missing, -PMS_ENOFEATURE when the kernel lacks what they need. */
int sampler_open(struct pytarget *t, const struct sampler_opts *opts, sampler_event_fn fn,
		 void *ctx, struct sampler **out, struct pms_error *err);

/* Delivers pending events, waiting at most timeout_ms for the first one. Returns the number of
 * events delivered or a negative errno (-EINTR when a signal interrupted the wait). */
int sampler_poll(struct sampler *s, int timeout_ms);

/* "session", "multi", "perf" -> how probes are attached. 0 or -EINVAL. */
int sampler_parse_attach(const char *text, enum sampler_attach *out);

/* How the allocator sources' probes were attached ("session", "multi", "perf"); NULL for the
 * other sources. */
const char *sampler_attach_name(const struct sampler *s);

/* Tells the user, once attached, what an allocator source probes or what survivors watches,
 * what it costs, and what it cannot see. Nothing for growth. */
void sampler_describe(const struct sampler *s, FILE *out);

/* Called about every poll with the seconds since attaching: the uprobe sources' predicted
 * overhead is updated once a second, and the probes are detached when it passes
 * max_overhead_pct. Returns 1 with a line for the user in note (the first prediction, or the
 * stop), 0 when there is nothing to say, or a negative errno when the source cannot go on on
 * this host (survivors' watchpoints that do not trap: -PMS_ENOFEATURE), with a message. */
int sampler_check(struct sampler *s, double elapsed, char *note, size_t len, struct pms_error *err);

/* The uprobe sources' overhead prediction, else NULL. */
const struct overhead *sampler_overhead(const struct sampler *s);

/* The probed allocator functions (allocator sources), else NULL. */
const struct alloc_probes *sampler_probes(const struct sampler *s);

/* Detaches the programs but keeps the maps: the ring buffer can still be drained and the
 * counters read, and they no longer change. Polls after it also settle what survivors still
 * holds. */
void sampler_detach(struct sampler *s);

/* Sums the per-CPU counters (enum pms_counter). */
int sampler_counters(struct sampler *s, uint64_t out[PMS_CNT_MAX]);

/* Bytes of kernel memory our maps take (for the benchmarks' own-cost figures). */
size_t sampler_map_bytes(const struct sampler *s);

/* Detaches everything and frees. NULL is fine. */
void sampler_close(struct sampler *s);

/* Fills the kernel's view of the layout from the user-space one. */
void sampler_fill_offsets(const struct py_layout *l, uint64_t runtime, struct pms_py_offsets *out);

#endif
