#include "leaks.h"

#include <math.h>
#include <string.h>

#define LEAKS_MIN_BUCKETS   3
#define LEAKS_MIN_R2	    0.7
#define LEAKS_MIN_STEADY    0.5
#define LEAKS_PLATEAU_RATIO 0.2 /* the last third grew less than this share of the slope's due */

void leaks_judge(const int64_t *series, size_t n, double bucket_seconds, struct leak_verdict *out)
{
	double sx = 0, sy = 0, sxx = 0, sxy = 0, syy = 0, cum = 0, slope, r2 = 0, se = 0;
	size_t first, m, grew = 0;
	double last_third = 0, expected_last_third;

	memset(out, 0, sizeof(*out));
	if (n < LEAKS_MIN_BUCKETS || bucket_seconds <= 0)
		return;
	/* warm-up: the first tenth of the window does not count towards the slope */
	first = n / 10;
	for (size_t i = 0; i < first; i++)
		cum += (double)series[i];
	m = n - first;
	for (size_t i = first; i < n; i++) {
		double x = (double)(i + 1) * bucket_seconds;

		cum += (double)series[i];
		sx += x;
		sy += cum;
		sxx += x * x;
		sxy += x * cum;
		syy += cum * cum;
		if (series[i] > 0)
			grew++;
		if (i >= n - n / 3)
			last_third += (double)series[i];
	}
	{
		double vx = sxx - sx * sx / (double)m, vy = syy - sy * sy / (double)m;
		double cxy = sxy - sx * sy / (double)m;

		if (vx <= 0)
			return;
		slope = cxy / vx;
		if (vy > 0)
			r2 = cxy * cxy / (vx * vy);
		if (m > 2) {
			double resid = vy - slope * cxy;

			se = sqrt((resid > 0 ? resid : 0) / (double)(m - 2) / vx);
		}
	}
	out->rate = slope;
	out->rate_low = slope - 1.96 * se;
	out->rate_high = slope + 1.96 * se;
	out->steady = (double)grew / (double)m;
	expected_last_third = slope * (double)(n / 3) * bucket_seconds;
	out->plateaued = n >= 6 && expected_last_third > 0 &&
			 last_third < LEAKS_PLATEAU_RATIO * expected_last_third;
	out->confidence = r2 * out->steady * fmin(1.0, (double)m / 10.0);
	out->score = out->confidence * (slope > 0 ? slope : 0);
	out->candidate = slope > 0 && cum >= LEAKS_MIN_BYTES && r2 >= LEAKS_MIN_R2 &&
			 out->steady >= LEAKS_MIN_STEADY && !out->plateaued;
}

double leaks_min_rate(double seconds)
{
	return seconds > 0 ? LEAKS_MIN_BYTES / seconds : 0;
}
