/* Census series: rows named by a key (a type, a holder's path), two values per snapshot (count
 * and bytes, or length and bytes), and each value's rate over the snapshots with a 95% interval.
 * Pure arithmetic: the census command fills it from pygc snapshots. */
#ifndef PMS_CENSUS_H
#define PMS_CENSUS_H

#include <stdbool.h>
#include <stddef.h>

struct census_table;

/* A table whose rows count as 0 in snapshots where they were not seen (types: none counted)
 * or as missing (holders: not found that time). NULL on ENOMEM. */
struct census_table *census_table_new(bool absent_is_zero);
void census_table_free(struct census_table *t);

/* Starts snapshot number census_table_snapshots() at time t (seconds). 0 or -ENOMEM. */
int census_table_snapshot(struct census_table *t, double time_s);
size_t census_table_snapshots(const struct census_table *t);

/* Sets (adds to, when set twice) the key's two values in the current snapshot. Returns the
 * row's index, or -ENOMEM, or -EINVAL before the first snapshot. */
int census_table_add(struct census_table *t, const char *key, double a, double b);

size_t census_table_rows(const struct census_table *t);
const char *census_table_key(const struct census_table *t, size_t row);

struct census_rate {
	double rate;	  /* least-squares slope, per second */
	double low, high; /* its 95% interval (equal to rate with fewer than 3 points) */
	size_t points;	  /* snapshots that had a value */
};

struct census_stats {
	double a, b;  /* in the last snapshot that had a value (0 if none) */
	bool in_last; /* seen in the last snapshot */
	struct census_rate a_rate, b_rate;
};

/* The row's last values and rates. 0 or -EINVAL for a row out of range. */
int census_table_stats(const struct census_table *t, size_t row, struct census_stats *out);

/* Least-squares slope of y over x (n points) and the half width of its 95% interval (Student's
 * t with n - 2 degrees of freedom; 0 with fewer than 3 points, where no interval can be told).
 * 0, or -EINVAL for fewer than 2 points or no spread in x. */
int census_slope(const double *x, const double *y, size_t n, double *slope, double *half_width);

#endif
