/* Record files: what `record -o FILE` writes as it goes and `report FILE` reads back, on
 * another machine and without the target. The format is specified in man/pymemspy-record.5:
 * a header, then self-delimiting records each with a CRC-32, so that a file cut anywhere (the
 * recorder killed, the disk full) still reads up to its last whole record. */
#ifndef PMS_RECFILE_H
#define PMS_RECFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "profile.h"
#include "pymemspy.h"

#define RECFILE_MAGIC	"PYMEMSPY"
#define RECFILE_VERSION 1

/* Strings longer than this are cut when written (names and paths are far shorter). */
#define RECFILE_MAX_STRING 65535

/* What a recording is of, written once at the start. */
struct recfile_meta {
	int32_t pid;
	char comm[64];
	char python_version[32]; /* "3.12.1" */
	char python_build[16];	 /* "release", "debug", "free-threaded" */
	char events[16];	 /* "growth", "survivors", "malloc", "pymalloc" */
	char host[128];		 /* uname: machine, kernel */
	double start_time;	 /* wall clock, seconds since the epoch */
	uint64_t rss_start;
	uint32_t budget_per_sec;
	uint32_t max_depth;
	/* allocator sources (absent from files written before them: read as 0, "", 1.0) */
	uint64_t rate;	    /* mean bytes between two samples; 0 for growth */
	char allocator[32]; /* "glibc", "cpython 3.12"... */
	double coverage;    /* share of allocations the probes see; < 0: unknown */
};

/* How it ended, written once at the end (absent from a file cut short). */
struct recfile_end {
	double duration;
	char ended_by[32];
	uint64_t rss_end;
	double profiler_cpu;
	uint64_t profiler_max_rss;
	uint64_t bpf_map_bytes;
	uint64_t profile_bytes;
};

struct recfile_writer;

/* Zeroes m and fills what the recorder's host knows: host (machine, kernel) and start_time
 * (now), and coverage 1.0. The recorder fills the rest. */
void recfile_meta_init(struct recfile_meta *m);

/* Creates path with mode 0600, never following a symlink, and refusing to replace an existing
 * file unless force (then replaced only if it is a regular file). Writes the header. */
int recfile_create(const char *path, bool force, struct recfile_writer **out,
		   struct pms_error *err);
/* Writes the metadata record (once, before anything else) and pushes it to the kernel, so that
 * the file is a readable recording from then on. */
int recfile_write_meta(struct recfile_writer *w, const struct recfile_meta *m);
/* One tick (about a second): everything the profile took as deltas since the last tick (call
 * profile_take_deltas with recfile_sink(w)), then the counters and the target's RSS at `at`.
 * The sink's callbacks return 0 even when writing failed: the error comes from
 * recfile_write_tick, recfile_flush and recfile_error. */
const struct profile_delta_sink *recfile_sink(struct recfile_writer *w);
/* One tick, the way the recorder should do it: takes p's deltas (profile_take_deltas), reads
 * the series buckets they changed, and writes them with the counters, p's totals and the RSS.
 * The file then rebuilds every series bucket by bucket, so that `report FILE` prints the same
 * leak rates as the live report. `at`: seconds since the start, not before the previous tick.
 * 0, or the writer's error (see recfile_flush); the profile is left as take_deltas leaves it. */
int recfile_tick(struct recfile_writer *w, struct profile *p, double at, uint64_t rss,
		 const uint64_t counters[PMS_CNT_MAX]);
/* The same in two steps, without the series: call profile_take_deltas(p, recfile_sink(w)),
 * then this. A reader then places a tick's deltas in the middle of the interval it covers.
 * `at` is in seconds since the start, not before the previous tick's; counters and totals are
 * cumulative. 0, or the writer's error (see recfile_flush). */
int recfile_write_tick(struct recfile_writer *w, double at, uint64_t rss,
		       const uint64_t counters[PMS_CNT_MAX], const struct profile_totals *totals);
/* At most this many whole stacks are written at the end (WHOLE_STACK records). */
#define RECFILE_WHOLE_STACKS 50

/* Sampled allocations still alive, written once after the last tick and before the END:
 * for each site with live samples, the oldest RECFILE_OLDEST_PER_SITE (profile_oldest_live),
 * over the RECFILE_OLDEST_SITES sites with the most net bytes. Sites the file does not hold yet
 * (none after a last recfile_tick) are left out. Writes nothing when no site has live samples
 * (growth recordings). 0, or the writer's error (see recfile_flush). */
#define RECFILE_OLDEST_PER_SITE 3
#define RECFILE_OLDEST_SITES	1000
int recfile_write_oldest(struct recfile_writer *w, struct profile *p);
/* The last record: how the recording ended. Call recfile_close after it. */
int recfile_write_end(struct recfile_writer *w, const struct recfile_end *e);
/* Pushes what is written to the kernel (and to the disk with fdatasync every few seconds). After
 * an error (ENOSPC...), every later call returns the same error and writes nothing. */
int recfile_flush(struct recfile_writer *w);
/* The writer's first error (-ENOSPC, -EIO, -ENOMEM...), or 0. The file keeps every record
 * written whole before it. */
int recfile_error(const struct recfile_writer *w);
/* Bytes written so far (in the file and buffered). */
uint64_t recfile_size(const struct recfile_writer *w);
/* Pushes what is buffered, syncs, closes and frees w (NULL is fine). 0, or the first error
 * the writer met, earlier ones included. */
int recfile_close(struct recfile_writer *w);

/* What a file held. */
struct recfile_contents {
	struct recfile_meta meta;
	bool has_end;
	struct recfile_end end;
	bool truncated;	      /* the file ends inside a record, or a record's CRC is wrong */
	bool corrupt;	      /* of those: a whole record was damaged (not just cut) */
	uint64_t valid_bytes; /* where the last whole record ends */
	double last_tick;     /* time of the last tick read */
	uint64_t counters[PMS_CNT_MAX];
	uint64_t rss_last;     /* RSS at the last tick */
	uint64_t oldest_sites; /* sites whose oldest live allocations the file held */
	/* rebuilt, with the allocator figures, totals and oldest live allocations when the file
	 * has them; owned by the caller (profile_free) */
	struct profile *profile;
};

/* Frees what recfile_read left in c (the profile) and clears it. */
void recfile_contents_free(struct recfile_contents *c);

/* Reads path. -ENOENT, -EACCES, -PMS_EBADFILE (not a record file, another version, or no
 * whole header/meta) with a message in err. A truncated file is not an error: it reads what
 * it holds and sets truncated. */
int recfile_read(const char *path, struct recfile_contents *out, struct pms_error *err);
/* The same from memory (for the fuzz target). */
int recfile_read_buffer(const uint8_t *data, size_t len, struct recfile_contents *out,
			struct pms_error *err);

#endif
