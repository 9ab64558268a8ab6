/* Judging a site's growth over time: is it a leak (steady growth that does not level off), how
 * fast, and how sure are we. The score is explained in man/pymemspy.1 (LEAK CANDIDATES). */
#ifndef PMS_LEAKS_H
#define PMS_LEAKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct leak_verdict {
	bool candidate;
	double rate;	 /* bytes per second, least-squares slope of resident bytes */
	double rate_low; /* 95% interval of the slope */
	double rate_high;
	double confidence; /* 0..1: fit quality x share of windows that grew x length of evidence */
	double steady;	   /* share of windows that grew */
	bool plateaued;	   /* grew early, then stopped */
	double score;	   /* ranking: confidence x rate */
};

/* Smallest net growth (bytes) that can make a candidate. */
#define LEAKS_MIN_BYTES (64 * 1024)

/* Judges a series of net bytes per bucket (bucket_seconds wide). */
void leaks_judge(const int64_t *series, size_t n, double bucket_seconds, struct leak_verdict *out);

/* The smallest rate (bytes/s) that could have been flagged in a window of `seconds`. */
double leaks_min_rate(double seconds);

#endif
