/* The sampling probability the allocator programs compute in fixed point (bpf/pymemspy.h): its
 * tables, its accuracy against 1 - exp(-s/rate), and that weighting samples by its inverse gives
 * unbiased totals whatever the sizes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>

#include "pymemspy.h"

static double p_of(uint64_t size, uint64_t rate)
{
	return (double)pms_sample_p_q32(size, rate) / (double)PMS_P_ONE;
}

Test(sampling, tables_hold_rounded_exponentials)
{
	for (int k = 0; k < 32; k++) {
		double want = fmin(round(exp(-k) * 4294967296.0), 4294967295.0);

		cr_expect_eq((double)pms_exp_int_q32[k], want, "exp(-%d)", k);
	}
	for (int h = 0; h < 256; h++) {
		double want = fmin(round(exp(-h / 256.0) * 4294967296.0), 4294967295.0);

		cr_expect_eq((double)pms_exp_256th_q32[h], want, "exp(-%d/256)", h);
	}
}

Test(sampling, probability_matches_the_exponential)
{
	static const uint64_t rates[] = {PMS_RATE_MIN, 4096, 65536, 1 << 20, PMS_RATE_MAX};

	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		uint64_t rate = rates[r];

		/* sizes from 1 byte to far beyond the rate, geometric steps plus odd values */
		for (double s = 1; s < 64.0 * (double)rate; s = s * 1.37 + 1) {
			uint64_t size = (uint64_t)s;
			double want = -expm1(-(double)size / (double)rate), got = p_of(size, rate);

			/* p is held in units of 2^-32: a few of them, and 1e-6 relative */
			cr_assert(fabs(got - want) <= 1e-6 * want + 0x1p-29,
				  "size %llu rate %llu: p %.12g, want %.12g",
				  (unsigned long long)size, (unsigned long long)rate, got, want);
		}
	}
	cr_expect_eq(pms_sample_p_q32(0, 65536), 0);
	cr_expect_eq(pms_sample_p_q32(32 * 65536, 65536), PMS_P_ONE);
	cr_expect_eq(pms_sample_p_q32(~0ULL, 65536), PMS_P_ONE);
}

Test(sampling, probability_grows_with_size)
{
	uint64_t last = 0;

	for (uint64_t s = 1; s < 40 * 65536; s += 97) {
		uint64_t p = pms_sample_p_q32(s, 65536);

		cr_assert_geq(p, last, "p(%llu) < p(%llu)", (unsigned long long)s,
			      (unsigned long long)(s - 97));
		last = p;
	}
}

/* xorshift64*: a fixed-seed generator, so the test is deterministic */
static uint32_t next_random(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return (uint32_t)((*state * 0x2545F4914F6CDD1DULL) >> 32);
}

/* What the BPF program does with each allocation, and what user space makes of the samples:
 * the estimate of the total must sit within its own error of the truth. */
Test(sampling, weighted_samples_estimate_the_total_without_bias)
{
	static const uint64_t sizes[] = {16, 48, 100, 512, 1000, 4096, 20000, 300000};
	const uint64_t rate = 65536;
	uint64_t state = 0x9E3779B97F4A7C15ULL;
	double truth = 0, estimate = 0, variance = 0, expected = 0, expected_var = 0;
	unsigned sampled = 0;

	for (int i = 0; i < 2000000; i++) {
		uint64_t size = sizes[next_random(&state) % 8];
		uint64_t p = pms_sample_p_q32(size, rate);

		truth += (double)size;
		expected += (double)p / (double)PMS_P_ONE;
		expected_var += (double)p / (double)PMS_P_ONE * (1 - (double)p / (double)PMS_P_ONE);
		if (p >= PMS_P_ONE || next_random(&state) < p) {
			double w = (double)PMS_P_ONE / (double)p;

			estimate += (double)size * w;
			variance += (double)size * (double)size * w * (w - 1);
			sampled++;
		}
	}
	cr_assert_gt(sampled, 1000);
	/* 4 standard errors: fails by chance about once in 16000 seeds, and this seed is fixed */
	cr_expect_leq(fabs(estimate - truth), 4 * sqrt(variance),
		      "estimate %.0f truth %.0f sd %.0f", estimate, truth, sqrt(variance));
	/* and the random draws follow the probabilities: the count of samples is theirs */
	cr_expect_leq(fabs((double)sampled - expected), 4 * sqrt(expected_var),
		      "%u samples, %.0f expected", sampled, expected);
}
