/* Judging a site's growth over time: is it a leak (growth that goes on at its pace to the end
 * of the recording), how fast, and how sure are we. Growth and releases are read as compound
 * Poisson processes, steps at random times, so that a few heavy sampled steps give an honest,
 * wide interval rather than a precise-looking one. The rule is explained in man/pymemspy.1
 * (Leak candidates). */
#ifndef PMS_LEAKS_H
#define PMS_LEAKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct leak_verdict {
	bool candidate;
	double rate;	   /* bytes per second: net growth over the judged window / its length */
	double rate_low;   /* 95% interval of the rate: the least it grew less the most it */
	double rate_high;  /* released, each a Poisson count of its effective steps */
	double confidence; /* 0..1: rate_low / rate, the share of the rate that is sure */
	double steady;	   /* share of windows that grew */
	double steps;	   /* effective number of independent growth steps: grown^2 / variance */
	double quiet_p;	   /* chance that growth at this pace leaves as long a quiet end */
	double slowdown_z; /* standard errors by which the second half grew less than the first */
	bool plateaued;	   /* grew, then stopped (quiet_p < 5%) or slowed (slowdown_z > 3.09) */
	double score;	   /* ranking: confidence x rate, that is rate_low */
};

/* A site's series, and what is known of how it was measured. */
struct leak_series {
	const int64_t *bytes; /* net bytes (grown - released) per bucket, from the start */
	/* growth samples (stack walks, sampled allocations) charged per bucket, or NULL */
	const uint64_t *samples;
	/* without them: the bytes one sample stands for on average (the site's grown bytes over
	 * its samples), a bucket that grew x being x / step_bytes samples; 0 as well: every
	 * bucket that grew counts as one step, the most cautious reading */
	double step_bytes;
	size_t n;
	double bucket_seconds;
	/* seconds the n buckets cover (the last one may be partial); 0: n x bucket_seconds */
	double duration;
};

/* Smallest net growth (bytes) that can make a candidate: the low end of the 95% interval of
 * what the judged window grew must reach it. */
#define LEAKS_MIN_BYTES (64 * 1024)

/* The bytes one growth sample stands for on average, a site's grown bytes over its samples, to
 * tell how many steps a bucket's growth is (leak_series.step_bytes); 0 without samples. */
static inline double leaks_step_bytes(double grown, uint64_t samples)
{
	return samples ? grown / (double)samples : 0;
}

/* One entry of a ranking of candidates: the caller's index of what was judged, its verdict. */
struct leak_rank {
	size_t index;
	struct leak_verdict v;
};

/* Adds (index, *v) to best[0..*n), kept sorted by v->score, highest first, and at most max
 * long: a candidate better than the worst kept displaces it, whatever the order they come in.
 * Ties keep the earlier one first. */
void leaks_rank(struct leak_rank *best, size_t *n, size_t max, size_t index,
		const struct leak_verdict *v);

/* Judges a series. */
void leaks_judge_ex(const struct leak_series *s, struct leak_verdict *out);

/* Judges a series of net bytes per bucket (bucket_seconds wide), with no sample counts. */
void leaks_judge(const int64_t *series, size_t n, double bucket_seconds, struct leak_verdict *out);

/* The smallest rate (bytes/s) that is sure to be flagged in a window of `seconds` (one-second
 * buckets, growth the same every second, no sample counts). */
double leaks_min_rate(double seconds);

#endif
