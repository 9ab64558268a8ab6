#include "leaks.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define LEAKS_MIN_BUCKETS 3
#define LEAKS_Z		  1.96 /* two-sided 95%: the rate's interval */
/* Levelling off is tested at every look (top redraws every second, bench/leaks/run checks every
 * second). The slowdown test compares two sums that a steady leak keeps close, so at 5% it
 * would call every steady leak levelled off at one look or another: it asks for 0.1%. The
 * quiet test cannot fire on a leak that grew in its last seconds, so 5% costs little. */
#define LEAKS_QUIET_P	 0.05
#define LEAKS_SLOWDOWN_Z 3.09 /* one-sided 0.1% */

/* Bounds of the mean of a Poisson count, given count k, by the Wilson-Hilferty approximation
 * of the chi-square quantiles: it takes a k that is not whole (an effective count), is within
 * 3% of the exact bounds from k = 3 on, and below that errs wide (low bound 0.013 for k = 1,
 * exactly 0.025). */
static double poisson_low(double k, double z)
{
	double b;

	if (k <= 0)
		return 0;
	b = 1 - 1 / (9 * k) - z / (3 * sqrt(k));
	return b > 0 ? k * b * b * b : 0;
}

static double poisson_high(double k, double z)
{
	double b;

	k += 1;
	b = 1 - 1 / (9 * k) + z / (3 * sqrt(k));
	return k * b * b * b;
}

/*
 * A stretch of buckets, read as two compound Poisson processes: steps of growth and steps of
 * release at random times. Each process's variance is the sum of its steps' squares: a bucket
 * that grew is as many equal steps as it has samples (told, or its bytes over the bytes of a
 * sample; else one: no sampled series can then look surer than it is), a bucket that released
 * is one step. The growth's variance is raised to what the successive differences of the
 * buckets show when the pace itself wanders more than that. sum^2 / variance is then the number
 * of equal, independent steps a process amounts to, and its bounds those of a Poisson count of
 * so many steps: two sampled steps of 128 KiB give a wide interval, a thousand pages a narrow
 * one.
 */
struct stretch {
	double grown, released;		/* bytes, both >= 0 */
	double var_grown, var_released; /* of those sums */
	double var;			/* of the net bytes */
	size_t grew;			/* buckets that grew */
};

/* The stretch [a, b) of a series, bucket `skip` left out (SIZE_MAX: none). */
static void stretch_of(const struct leak_series *s, size_t a, size_t b, size_t skip,
		       struct stretch *st)
{
	size_t len = b - a - (skip >= a && skip < b), prev = SIZE_MAX, pairs = 0;
	double by_steps = 0, diffs = 0;

	memset(st, 0, sizeof(*st));
	for (size_t i = a; i < b; i++) {
		double x = (double)s->bytes[i];

		if (i == skip)
			continue;
		if (x > 0) {
			double k = 1;

			if (s->samples && s->samples[i])
				k = (double)s->samples[i];
			else if (!s->samples && s->step_bytes > 0)
				k = fmax(1, x / s->step_bytes);
			st->grown += x;
			by_steps += x * x / k;
			st->grew++;
		} else {
			st->released -= x;
			st->var_released += x * x;
		}
		/* successive differences, not the spread around the mean: a pace that wanders
		 * shows in them, a change of pace (a cache that filled, then stopped) does not
		 * pass for noise */
		if (prev != SIZE_MAX) {
			diffs += (x - (double)s->bytes[prev]) * (x - (double)s->bytes[prev]);
			pairs++;
		}
		prev = i;
	}
	if (pairs)
		diffs = diffs / (2.0 * (double)pairs) * (double)len;
	st->var_grown = fmax(by_steps, diffs);
	st->var = fmax(by_steps + st->var_released, diffs);
}

static double steps_of(double sum, double var)
{
	return sum > 0 && var > 0 ? sum * sum / var : 0;
}

/* The least the stretch can have gained: the least it grew less the most it released, each
 * at 97.5%, so that both hold together at 95% at least. Churn that nets a little growth
 * gains nothing surely; a lone step that nothing took back does. */
static double stretch_low(const struct stretch *st)
{
	double kg = steps_of(st->grown, st->var_grown), kr;
	double low = kg > 0 ? st->grown * poisson_low(kg, LEAKS_Z) / kg : 0;

	kr = steps_of(st->released, st->var_released);
	if (kr > 0)
		low -= st->released * poisson_high(kr, LEAKS_Z) / kr;
	return low;
}

static double stretch_high(const struct stretch *st)
{
	double kg = steps_of(st->grown, st->var_grown), kr;
	double high = kg > 0 ? st->grown * poisson_high(kg, LEAKS_Z) / kg : 0;

	kr = steps_of(st->released, st->var_released);
	if (kr > 0)
		high -= st->released * poisson_low(kr, LEAKS_Z) / kr;
	return high;
}

/* Bucket i grew more than three times both of its neighbours within [a, b). */
static bool is_burst(const struct leak_series *s, size_t a, size_t b, size_t i)
{
	double x = (double)s->bytes[i];
	double left = i > a ? (double)s->bytes[i - 1] : 0,
	       right = i + 1 < b ? (double)s->bytes[i + 1] : 0;

	return x > 0 && x > 3 * left && x > 3 * right;
}

void leaks_judge_ex(const struct leak_series *s, struct leak_verdict *out)
{
	size_t n = s->n, first, m, half, top;
	double bs = s->bucket_seconds, span, t1, t2, cover, net, near, d;
	struct stretch all, h1, h2, rest;

	memset(out, 0, sizeof(*out));
	if (!s->bytes || n < LEAKS_MIN_BUCKETS || !(bs > 0))
		return;
	/* warm-up: the first tenth of the window is not judged */
	first = n / 10;
	m = n - first;
	/* the last bucket covers only what was recorded of it */
	cover = bs;
	if (s->duration > (double)(n - 1) * bs && s->duration < (double)n * bs)
		cover = s->duration - (double)(n - 1) * bs;
	span = (double)(m - 1) * bs + cover;
	half = first + m / 2;
	t1 = (double)(half - first) * bs;
	t2 = span - t1;
	top = first;
	for (size_t i = first; i < n; i++)
		if (s->bytes[i] > s->bytes[top])
			top = i;
	stretch_of(s, first, n, SIZE_MAX, &all);
	stretch_of(s, first, half, SIZE_MAX, &h1);
	stretch_of(s, half, n, SIZE_MAX, &h2);
	stretch_of(s, first, n, top, &rest);
	net = all.grown - all.released;

	out->rate = net / span;
	out->rate_low = stretch_low(&all) / span;
	out->rate_high = stretch_high(&all) / span;
	out->steady = (double)all.grew / (double)m;
	out->steps = steps_of(all.grown, all.var_grown);
	if (net > 0 && out->rate_low > 0) {
		out->confidence = fmin(1.0, out->rate_low / out->rate);
		out->score = out->rate_low;
	}
	/* stopped: with k steps at random over the window, the last one falls before time t
	 * with chance (t / window)^k; t is when the site came within half a typical step of its
	 * final bytes to stay (noise around a plateau is no step), and k counts no more steps than
	 * seconds that grew (arrival times are only known to the second) */
	out->quiet_p = 1;
	near = out->steps > 0 ? net - all.grown / out->steps / 2 : 0;
	if (near > 0) {
		double c = net;
		size_t j = n;

		while (j > first && (c -= (double)s->bytes[j - 1]) >= near)
			j--;
		out->quiet_p = pow(fmin(1.0, (double)(j - first) * bs / span),
				   fmin(out->steps, (double)all.grew));
	}
	/* slowed down: the halves' rates differ by more than the process's own noise allows,
	 * that noise judged without the largest step (a burst would otherwise hide itself), and
	 * the halves compared without it either when it is a burst (one burst is not a pace: a
	 * buffer that grows by copying itself now and then would otherwise look as if it slowed
	 * down after it; a decay's largest second is no burst, its neighbours are as large) */
	if (is_burst(s, first, n, top)) {
		if (top < half) {
			stretch_of(s, first, half, top, &h1);
			t1 -= bs;
		} else if (top < n - 1) {
			stretch_of(s, half, n, top, &h2);
			t2 -= bs;
		}
	}
	d = t2 * (h1.grown - h1.released) - t1 * (h2.grown - h2.released);
	if (rest.var > 0 && t2 > 0 && t1 > 0)
		out->slowdown_z = d / sqrt(rest.var * t1 * t2);
	else if (t2 > 0 && d != 0)
		out->slowdown_z = d > 0 ? 1000 : -1000;
	out->slowdown_z = fmax(-1000, fmin(1000, out->slowdown_z));
	out->plateaued =
	    net > 0 && (out->quiet_p < LEAKS_QUIET_P || out->slowdown_z > LEAKS_SLOWDOWN_Z);
	/* a pace, not a burst: each half grew, beyond its releases and its noise */
	out->candidate = out->rate_low * span >= LEAKS_MIN_BYTES && stretch_low(&h1) > 0 &&
			 stretch_low(&h2) > 0 && !out->plateaued;
}

void leaks_judge(const int64_t *series, size_t n, double bucket_seconds, struct leak_verdict *out)
{
	struct leak_series s = {.bytes = series, .n = n, .bucket_seconds = bucket_seconds};

	leaks_judge_ex(&s, out);
}

void leaks_rank(struct leak_rank *best, size_t *n, size_t max, size_t index,
		const struct leak_verdict *v)
{
	size_t at = *n;

	if (max == 0 || (*n == max && v->score <= best[max - 1].v.score))
		return;
	if (*n < max)
		(*n)++;
	else
		at = max - 1; /* the worst goes */
	while (at > 0 && best[at - 1].v.score < v->score) {
		best[at] = best[at - 1];
		at--;
	}
	best[at] = (struct leak_rank){.index = index, .v = *v};
}

double leaks_min_rate(double seconds)
{
	size_t n, m;

	if (!(seconds > 0))
		return 0;
	n = (size_t)ceil(seconds);
	if (n < LEAKS_MIN_BUCKETS)
		n = LEAKS_MIN_BUCKETS;
	m = n - n / 10;
	/* g a second over m one-second steps: the low end of its interval is g x poisson_low(m) */
	return LEAKS_MIN_BYTES / poisson_low((double)m, LEAKS_Z);
}
