/* Census series: rows in insertion order, found by the hash of their key. */
#include "census.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "u64map.h"

struct row {
	char *key;
	double *a, *b; /* per snapshot; NAN = not seen */
};

struct census_table {
	bool absent_is_zero;
	double *times;
	size_t nsnap, capsnap;
	struct row *rows;
	size_t nrows, caprows;
	struct u64map *by_key; /* hash -> row index + 1 (collisions chained by probing below) */
};

struct census_table *census_table_new(bool absent_is_zero)
{
	struct census_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->absent_is_zero = absent_is_zero;
	t->by_key = u64map_new(256);
	if (!t->by_key) {
		free(t);
		return NULL;
	}
	return t;
}

void census_table_free(struct census_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows; i++) {
		free(t->rows[i].key);
		free(t->rows[i].a);
		free(t->rows[i].b);
	}
	free(t->rows);
	free(t->times);
	u64map_free(t->by_key);
	free(t);
}

/* Grows every row's arrays to cap snapshots. */
static int grow_snapshots(struct census_table *t, size_t cap)
{
	double *n = realloc(t->times, cap * sizeof(*n));

	if (!n)
		return -ENOMEM;
	t->times = n;
	for (size_t i = 0; i < t->nrows; i++) {
		double *a = realloc(t->rows[i].a, cap * sizeof(*a)), *b;

		if (!a)
			return -ENOMEM;
		t->rows[i].a = a;
		b = realloc(t->rows[i].b, cap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		t->rows[i].b = b;
	}
	t->capsnap = cap;
	return 0;
}

int census_table_snapshot(struct census_table *t, double time_s)
{
	if (t->nsnap == t->capsnap) {
		int ret = grow_snapshots(t, t->capsnap ? 2 * t->capsnap : 16);

		if (ret)
			return ret;
	}
	t->times[t->nsnap] = time_s;
	for (size_t i = 0; i < t->nrows; i++)
		t->rows[i].a[t->nsnap] = t->rows[i].b[t->nsnap] = NAN;
	t->nsnap++;
	return 0;
}

size_t census_table_snapshots(const struct census_table *t)
{
	return t->nsnap;
}

/* The row of key, or -1. Hash collisions probe the next hash values. */
static long find(const struct census_table *t, const char *key, uint64_t *free_hash)
{
	uint64_t h = u64map_hash_bytes(key, strlen(key), 0x636e73), v;

	for (;; h++) {
		if (!u64map_get(t->by_key, h, &v)) {
			*free_hash = h;
			return -1;
		}
		if (strcmp(t->rows[v - 1].key, key) == 0)
			return (long)(v - 1);
	}
}

int census_table_add(struct census_table *t, const char *key, double a, double b)
{
	uint64_t h = 0;
	long r;
	size_t cur;

	if (t->nsnap == 0)
		return -EINVAL;
	cur = t->nsnap - 1;
	r = find(t, key, &h);
	if (r < 0) {
		struct row *row;

		if (t->nrows == t->caprows) {
			size_t cap = t->caprows ? 2 * t->caprows : 64;
			struct row *n = realloc(t->rows, cap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			t->rows = n;
			t->caprows = cap;
		}
		row = &t->rows[t->nrows];
		row->key = strdup(key);
		row->a = malloc(t->capsnap * sizeof(*row->a));
		row->b = malloc(t->capsnap * sizeof(*row->b));
		if (!row->key || !row->a || !row->b) {
			free(row->key);
			free(row->a);
			free(row->b);
			return -ENOMEM;
		}
		for (size_t i = 0; i < t->nsnap; i++)
			row->a[i] = row->b[i] = NAN;
		if (u64map_put(t->by_key, h, t->nrows + 1)) {
			free(row->key);
			free(row->a);
			free(row->b);
			return -ENOMEM;
		}
		r = (long)t->nrows++;
	}
	if (isnan(t->rows[r].a[cur])) {
		t->rows[r].a[cur] = a;
		t->rows[r].b[cur] = b;
	} else {
		t->rows[r].a[cur] += a;
		t->rows[r].b[cur] += b;
	}
	return (int)r;
}

size_t census_table_rows(const struct census_table *t)
{
	return t->nrows;
}

const char *census_table_key(const struct census_table *t, size_t row)
{
	return row < t->nrows ? t->rows[row].key : NULL;
}

/* Two-sided 95% quantiles of Student's t, by degrees of freedom 1..30; 1.96 beyond. */
static double t95(size_t df)
{
	static const double q[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
				   2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
				   2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
				   2.060,  2.056, 2.052, 2.048, 2.045, 2.042};

	if (df == 0)
		return INFINITY;
	return df <= 30 ? q[df - 1] : 1.96;
}

int census_slope(const double *x, const double *y, size_t n, double *slope, double *half_width)
{
	double mx = 0, my = 0, sxx = 0, sxy = 0, sse = 0, b;

	if (n < 2)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		mx += x[i];
		my += y[i];
	}
	mx /= (double)n;
	my /= (double)n;
	for (size_t i = 0; i < n; i++) {
		sxx += (x[i] - mx) * (x[i] - mx);
		sxy += (x[i] - mx) * (y[i] - my);
	}
	if (!(sxx > 0))
		return -EINVAL;
	b = sxy / sxx;
	*slope = b;
	*half_width = 0;
	if (n >= 3) {
		for (size_t i = 0; i < n; i++) {
			double r = y[i] - (my + b * (x[i] - mx));

			sse += r * r;
		}
		*half_width = t95(n - 2) * sqrt(sse / (double)(n - 2) / sxx);
	}
	return 0;
}

static void rate_of(const struct census_table *t, const double *v, struct census_rate *out)
{
	double *x = malloc((t->nsnap ? t->nsnap : 1) * sizeof(*x));
	double *y = malloc((t->nsnap ? t->nsnap : 1) * sizeof(*y));
	double slope, hw;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	if (!x || !y)
		goto out;
	for (size_t i = 0; i < t->nsnap; i++) {
		double value = v[i];

		if (isnan(value)) {
			if (!t->absent_is_zero)
				continue;
			value = 0;
		}
		x[n] = t->times[i];
		y[n] = value;
		n++;
	}
	out->points = n;
	if (census_slope(x, y, n, &slope, &hw) == 0) {
		out->rate = slope;
		out->low = slope - hw;
		out->high = slope + hw;
	}
out:
	free(x);
	free(y);
}

int census_table_stats(const struct census_table *t, size_t row, struct census_stats *out)
{
	const struct row *r;

	if (row >= t->nrows)
		return -EINVAL;
	r = &t->rows[row];
	memset(out, 0, sizeof(*out));
	for (size_t i = t->nsnap; i-- > 0;)
		if (!isnan(r->a[i])) {
			out->a = r->a[i];
			out->b = r->b[i];
			out->in_last = i == t->nsnap - 1;
			break;
		}
	if (t->absent_is_zero && !out->in_last)
		out->a = out->b = 0;
	rate_of(t, r->a, &out->a_rate);
	rate_of(t, r->b, &out->b_rate);
	return 0;
}
