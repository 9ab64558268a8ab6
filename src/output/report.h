/* The report of a recording, as text (for people) and JSON (schema pymemspy.report/1, for
 * tools): a header, the leak candidates, the top sites with their stacks, threads, counters. */
#ifndef PMS_REPORT_H
#define PMS_REPORT_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "overhead.h"
#include "profile.h"
#include "pymemspy.h"
#include "pytarget.h"
#include "source.h"

struct report_meta {
	pid_t pid;
	const char *comm;
	const struct pyversion *python;
	enum pms_source source;
	double duration;    /* seconds recorded */
	uint64_t rss_start; /* target RSS (bytes) when recording started */
	uint64_t rss_end;   /* ... when it stopped (0: the target had exited) */
	uint64_t counters[PMS_CNT_MAX];
	unsigned budget_per_sec; /* 0: no limit */
	uint64_t rate;		 /* allocator sources: mean bytes between samples; 0 for growth */
	char allocator[32];	 /* allocator sources: "glibc", "cpython 3.12"... */
	double coverage;    /* allocator sources: share of allocations the probes see; <0 unknown */
	const char *attach; /* allocator sources, live: how the probes were attached; else NULL */
	unsigned max_depth;
	double profiler_cpu; /* seconds of CPU pymemspy used */
	uint64_t profiler_max_rss;
	uint64_t bpf_map_bytes;
	uint64_t profile_bytes;
	enum pms_end ended_by;
	bool no_end_record; /* a record file cut short: ended_by is unknown */
	bool has_overhead;  /* uprobe sources, live: the predicted overhead */
	struct overhead overhead;
	unsigned top;	     /* sites to show */
	const char *command; /* what made the report: "record" (NULL) or "report" */
};

/* Writes the plain-text report. */
void report_text(FILE *out, struct profile *p, const struct report_meta *m);
/* Writes the JSON report. 0 or -ENOMEM. */
int report_json(FILE *out, struct profile *p, const struct report_meta *m);

struct json;
/* Writes "stack": [{function, file, line}, ...] (innermost first) into an open object. */
void report_json_stack(struct json *j, const struct profile_frame *frames, size_t n);

/* The confidence of the best leak candidate after `duration` seconds, 0 when there is none. */
double report_top_confidence(struct profile *p, double duration);

/* "12.3 MiB" style (IEC units). */
void report_format_bytes(double bytes, char *out, size_t outlen);

#endif
