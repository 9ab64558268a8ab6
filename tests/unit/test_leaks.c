#include <criterion/criterion.h>
#include <math.h>

#include "leaks.h"

Test(leaks, steady_growth_is_a_leak_with_its_rate)
{
	int64_t series[30];
	struct leak_verdict v;

	for (int i = 0; i < 30; i++)
		series[i] = 100 * 1024 + (i % 3) * 1024; /* ~101 KiB per second */
	leaks_judge(series, 30, 1.0, &v);
	cr_assert(v.candidate);
	cr_assert(fabs(v.rate - 101 * 1024) < 2 * 1024, "rate %f", v.rate);
	cr_assert(v.rate_low <= v.rate && v.rate <= v.rate_high);
	cr_assert_gt(v.confidence, 0.9);
}

Test(leaks, a_cache_that_fills_then_stays_flat_is_not)
{
	int64_t series[30] = {0};
	struct leak_verdict v;

	for (int i = 0; i < 10; i++)
		series[i] = 1 << 20;
	leaks_judge(series, 30, 1.0, &v);
	cr_assert_not(v.candidate, "rate %f conf %f plateau %d", v.rate, v.confidence, v.plateaued);
	cr_assert(v.plateaued);
}

Test(leaks, constant_memory_and_churn_are_not)
{
	int64_t flat[20] = {0}, churn[20];
	struct leak_verdict v;

	leaks_judge(flat, 20, 1.0, &v);
	cr_assert_not(v.candidate);
	for (int i = 0; i < 20; i++)
		churn[i] = i % 2 ? 1 << 20 : -(1 << 20);
	leaks_judge(churn, 20, 1.0, &v);
	cr_assert_not(v.candidate);
}

Test(leaks, too_little_evidence)
{
	int64_t two[2] = {1 << 20, 1 << 20}, tiny[20];
	struct leak_verdict v;

	leaks_judge(two, 2, 1.0, &v);
	cr_assert_not(v.candidate);
	for (int i = 0; i < 20; i++)
		tiny[i] = 100;
	leaks_judge(tiny, 20, 1.0, &v);
	cr_assert_not(v.candidate, "2 KB in total is below the threshold");
	cr_assert(fabs(leaks_min_rate(16.0) - LEAKS_MIN_BYTES / 16.0) < 1e-9);
}
