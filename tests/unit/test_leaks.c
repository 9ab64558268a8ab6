#include <criterion/criterion.h>
#include <math.h>

#include "leaks.h"

#define KIB 1024
#define MIB (1024 * 1024)

/* Deterministic noise for the synthetic series: the same numbers on every run. */
static uint32_t noise_state = 12345;

static int64_t noise(int64_t amplitude)
{
	noise_state = noise_state * 1103515245u + 12345u;
	return (int64_t)((noise_state >> 8) % (uint32_t)(2 * amplitude + 1)) - amplitude;
}

static void judge(const int64_t *series, const uint64_t *samples, size_t n, struct leak_verdict *v)
{
	struct leak_series s = {.bytes = series, .samples = samples, .n = n, .bucket_seconds = 1.0};

	leaks_judge_ex(&s, v);
}

Test(leaks, steady_growth_is_a_leak_with_its_rate)
{
	int64_t series[30];
	uint64_t samples[30];
	struct leak_verdict v;

	for (int i = 0; i < 30; i++) {
		series[i] = 100 * KIB + (i % 3) * KIB; /* ~101 KiB per second */
		samples[i] = (uint64_t)series[i] / 4096;
	}
	/* without sample counts every second is one step: 27 of them, a wide interval */
	leaks_judge(series, 30, 1.0, &v);
	cr_assert(v.candidate);
	cr_assert(fabs(v.rate - 101 * KIB) < 2 * KIB, "rate %f", v.rate);
	cr_assert(v.rate_low <= v.rate && v.rate <= v.rate_high);
	cr_assert(v.rate_low > 0.6 * v.rate && v.rate_high < 1.5 * v.rate, "[%f, %f]", v.rate_low,
		  v.rate_high);
	cr_assert(fabs(v.score - v.confidence * v.rate) < 1e-6 * v.rate);
	/* with them, 25 pages a second: much surer */
	judge(series, samples, 30, &v);
	cr_assert(v.candidate);
	cr_assert_gt(v.confidence, 0.9);
	cr_assert(v.rate_low <= 101 * KIB && 101 * KIB <= v.rate_high);
}

Test(leaks, the_bytes_of_a_sample_stand_for_the_sample_counts)
{
	int64_t dense[30], sparse[30] = {0};
	uint64_t pages[30], ones[30] = {0};
	struct leak_series s = {.n = 30, .bucket_seconds = 1.0};
	struct leak_verdict by_count, by_bytes;

	for (int i = 0; i < 30; i++) {
		pages[i] = 20 + (uint64_t)(i % 7);
		dense[i] = (int64_t)pages[i] * 4096;
	}
	s.bytes = dense;
	s.samples = pages;
	leaks_judge_ex(&s, &by_count);
	s.samples = NULL;
	s.step_bytes = 4096;
	leaks_judge_ex(&s, &by_bytes);
	cr_assert(by_count.candidate && by_bytes.candidate);
	cr_assert(fabs(by_count.rate_low - by_bytes.rate_low) < 1e-6 * by_count.rate);
	/* sampled 1 in 32: a step of 128 KiB is one sample, not 32 pages */
	for (int i = 3; i < 30; i += 7) {
		sparse[i] = 128 * KIB;
		ones[i] = 1;
	}
	s.bytes = sparse;
	s.samples = ones;
	leaks_judge_ex(&s, &by_count);
	s.samples = NULL;
	s.step_bytes = 128 * KIB;
	leaks_judge_ex(&s, &by_bytes);
	cr_assert(fabs(by_count.rate_low - by_bytes.rate_low) < 1e-6 * by_count.rate);
	cr_assert_lt(by_bytes.confidence, 0.4);
}

Test(leaks, the_old_signature_reads_every_bucket_as_one_step)
{
	int64_t series[20];
	struct leak_verdict a, b;

	for (int i = 0; i < 20; i++)
		series[i] = 50 * KIB + noise(20 * KIB);
	leaks_judge(series, 20, 1.0, &a);
	judge(series, NULL, 20, &b);
	cr_assert(a.candidate == b.candidate && a.rate == b.rate && a.rate_low == b.rate_low &&
		  a.confidence == b.confidence);
}

/* A slow leak under heavy churn: the budget samples 1 event in 32, so each sample weighs
 * 128 KiB and the leak shows a step every several seconds, never given back. */
Test(leaks, sparse_heavy_steps_at_a_steady_pace_are_a_leak_with_a_wide_interval)
{
	int64_t series[30] = {0};
	uint64_t samples[30] = {0};
	static const int at[] = {6, 13, 19, 26};
	struct leak_verdict v;

	for (size_t k = 0; k < 4; k++) {
		series[at[k]] = 128 * KIB;
		samples[at[k]] = 1;
	}
	judge(series, samples, 30, &v);
	cr_assert(v.candidate, "rate %f [%f, %f] steps %f quiet %f", v.rate, v.rate_low,
		  v.rate_high, v.steps, v.quiet_p);
	cr_assert(fabs(v.rate - 512.0 * KIB / 27) < 1, "rate %f", v.rate);
	cr_assert(fabs(v.steps - 4) < 0.2, "steps %f", v.steps);
	/* honest: a Poisson count of 4 is known to within a factor of about ten */
	cr_assert(v.rate_high / v.rate_low > 5, "[%f, %f]", v.rate_low, v.rate_high);
	cr_assert_lt(v.confidence, 0.4);
	cr_assert_lt(v.steady, 0.2, "only 4 of 27 windows grew");
	/* without sample counts the same series reads the same: one step a bucket */
	judge(series, NULL, 30, &v);
	cr_assert(v.candidate);
}

Test(leaks, three_heavy_steps_are_enough_two_are_not)
{
	int64_t three[30] = {0}, two[30] = {0};
	struct leak_verdict v;

	three[6] = three[15] = three[24] = 128 * KIB;
	judge(three, NULL, 30, &v);
	cr_assert(v.candidate, "low %f x 27 s", v.rate_low);
	two[9] = two[22] = 128 * KIB;
	judge(two, NULL, 30, &v);
	cr_assert_not(v.candidate, "low %f x 27 s < 64 KiB", v.rate_low);
	cr_assert(v.rate_low * 27 < LEAKS_MIN_BYTES);
}

Test(leaks, a_cache_that_fills_then_stays_flat_is_not)
{
	int64_t series[30] = {0};
	struct leak_verdict v;

	for (int i = 0; i < 10; i++)
		series[i] = 1 * MIB;
	leaks_judge(series, 30, 1.0, &v);
	cr_assert_not(v.candidate, "rate %f conf %f plateau %d", v.rate, v.confidence, v.plateaued);
	cr_assert(v.plateaued);
	cr_assert_lt(v.quiet_p, 0.05);
}

Test(leaks, a_sampled_cache_that_fills_then_stays_flat_is_not)
{
	int64_t series[30] = {0};
	struct leak_verdict v;

	for (int i = 4; i <= 12; i += 2)
		series[i] = 128 * KIB;
	leaks_judge(series, 30, 1.0, &v);
	cr_assert_not(v.candidate);
	cr_assert(v.plateaued, "quiet_p %f", v.quiet_p);
}

Test(leaks, growth_that_slows_down_is_levelling_off)
{
	int64_t series[40];
	uint64_t samples[40];
	struct leak_verdict v;

	/* a cache filling ever more slowly as it hits more: grows every second, less and less */
	for (int i = 0; i < 40; i++) {
		series[i] = (int64_t)(400 * KIB * exp(-i / 12.0));
		samples[i] = (uint64_t)series[i] / 4096 + 1;
	}
	judge(series, samples, 40, &v);
	cr_assert_gt(v.slowdown_z, 3.09);
	cr_assert(v.plateaued);
	cr_assert_not(v.candidate);
	/* read cautiously (one step a second), the slowdown is still plain */
	judge(series, NULL, 40, &v);
	cr_assert(v.plateaued, "z %f quiet %f", v.slowdown_z, v.quiet_p);
	cr_assert_not(v.candidate);
}

Test(leaks, a_leak_that_pauses_at_the_end_is_still_one)
{
	int64_t series[30];
	uint64_t samples[30];
	struct leak_verdict v;

	/* two quiet seconds after 25 that grew are no plateau, however many samples */
	for (int i = 0; i < 30; i++) {
		series[i] = i < 28 ? 100 * KIB : 0;
		samples[i] = i < 28 ? 25 : 0;
	}
	judge(series, samples, 30, &v);
	cr_assert(v.candidate, "quiet %f", v.quiet_p);
	cr_assert_gt(v.quiet_p, 0.05);
}

Test(leaks, a_warm_up_then_a_steady_state_is_not)
{
	int64_t series[30];
	uint64_t samples[30];
	struct leak_verdict v;

	for (int i = 0; i < 30; i++) {
		series[i] = i < 6 ? 10 * MIB : noise(8 * KIB);
		samples[i] = i < 6 ? 320 : 2;
	}
	judge(series, samples, 30, &v);
	cr_assert_not(v.candidate, "rate %f quiet %f z %f", v.rate, v.quiet_p, v.slowdown_z);
	judge(series, NULL, 30, &v);
	cr_assert_not(v.candidate);
}

Test(leaks, a_warm_up_then_a_leak_is_found_once_the_warm_up_is_in_the_first_tenth)
{
	int64_t series[100];
	struct leak_verdict v;

	for (int i = 0; i < 100; i++)
		series[i] = i < 6 ? 10 * MIB : 100 * KIB + noise(10 * KIB);
	leaks_judge(series, 100, 1.0, &v);
	cr_assert(v.candidate, "rate %f z %f", v.rate, v.slowdown_z);
	cr_assert(fabs(v.rate - 100 * KIB) < 5 * KIB, "rate %f", v.rate);
}

Test(leaks, constant_memory_churn_and_noise_around_zero_are_not)
{
	int64_t flat[20] = {0}, churn[20], jitter[30], drift[30];
	struct leak_verdict v;

	leaks_judge(flat, 20, 1.0, &v);
	cr_assert_not(v.candidate);
	for (int i = 0; i < 20; i++)
		churn[i] = i % 2 ? 1 << 20 : -(1 << 20);
	leaks_judge(churn, 20, 1.0, &v);
	cr_assert_not(v.candidate);
	/* sampled page churn: steps of +-128 KiB that happen to net +512 KiB */
	for (int i = 0; i < 30; i++)
		jitter[i] = (i % 3 == 0 ? 2 : i % 3 == 1 ? -1 : 0) * 128 * KIB;
	for (int i = 0; i < 30; i++)
		jitter[i] -= (i == 29 || i == 26 || i == 20 || i == 11 || i == 5) * 128 * KIB;
	leaks_judge(jitter, 30, 1.0, &v);
	cr_assert_not(v.candidate, "rate %f [%f, %f]", v.rate, v.rate_low, v.rate_high);
	cr_assert_lt(v.rate_low, 0, "it may have released as much as it grew");
	/* a real drift of 20 KiB/s under +-1 MiB a second of churn: the churn could hide far
	 * more than that either way */
	for (int i = 0; i < 30; i++)
		drift[i] = (i % 2 ? 1 : -1) * MIB + 20 * KIB;
	leaks_judge(drift, 30, 1.0, &v);
	cr_assert_not(v.candidate);
	cr_assert(v.rate_low < 20 * KIB && 20 * KIB < v.rate_high);
}

Test(leaks, a_leak_that_also_releases_is_a_leak)
{
	int64_t series[30];
	struct leak_verdict v;

	/* grows 150 KiB a second, but every third second gives back more than it grew: nets
	 * 83 KiB/s */
	for (int i = 0; i < 30; i++)
		series[i] = i % 3 == 2 ? -50 * KIB : 150 * KIB;
	leaks_judge(series, 30, 1.0, &v);
	cr_assert(v.candidate, "[%f, %f]", v.rate_low, v.rate_high);
	cr_assert(v.rate_low < v.rate && v.rate < v.rate_high);
	cr_assert(fabs(v.rate - 250.0 / 3 * KIB) < 2 * KIB, "rate %f", v.rate);
}

Test(leaks, a_single_burst_is_not)
{
	int64_t mid[30] = {0}, late[30] = {0}, noisy[30];
	struct leak_verdict v;

	mid[15] = 50 * MIB;
	leaks_judge(mid, 30, 1.0, &v);
	cr_assert_not(v.candidate);
	late[28] = 50 * MIB;
	leaks_judge(late, 30, 1.0, &v);
	cr_assert_not(v.candidate);
	/* a burst that spills past the warm-up, then noise around zero (a store that rewrites
	 * itself: what it held before the recording is released untracked, so its first
	 * rewrites look like growth) */
	for (int i = 0; i < 30; i++)
		noisy[i] = i < 4 ? 40 * MIB : noise(2 * MIB);
	leaks_judge(noisy, 30, 1.0, &v);
	cr_assert_not(v.candidate, "steps %f quiet %f z %f", v.steps, v.quiet_p, v.slowdown_z);
}

Test(leaks, a_partial_last_bucket_does_not_bias_the_rate)
{
	int64_t series[31];
	struct leak_series s = {.bytes = series, .n = 31, .bucket_seconds = 1.0, .duration = 30.2};
	struct leak_verdict v;

	for (int i = 0; i < 30; i++)
		series[i] = 100 * KIB;
	series[30] = 20 * KIB; /* 0.2 s of it */
	leaks_judge_ex(&s, &v);
	cr_assert(v.candidate);
	cr_assert(fabs(v.rate - 100 * KIB) < 0.5 * KIB, "rate %f", v.rate);
	cr_assert_gt(v.quiet_p, 0.5);
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
	leaks_judge(NULL, 0, 1.0, &v);
	cr_assert_not(v.candidate);
	leaks_judge(tiny, 20, 0, &v);
	cr_assert_not(v.candidate);
}

Test(leaks, the_smallest_rate_is_the_one_flagged)
{
	int64_t series[30];
	struct leak_verdict v;
	double r = leaks_min_rate(30.0);

	cr_assert(r > LEAKS_MIN_BYTES / 30.0 && r < 3 * LEAKS_MIN_BYTES / 30.0, "%f", r);
	for (int i = 0; i < 30; i++)
		series[i] = (int64_t)(1.01 * r);
	leaks_judge(series, 30, 1.0, &v);
	cr_assert(v.candidate);
	for (int i = 0; i < 30; i++)
		series[i] = (int64_t)(0.95 * r);
	leaks_judge(series, 30, 1.0, &v);
	cr_assert_not(v.candidate);
	cr_assert_eq(leaks_min_rate(0), 0);
}

Test(leaks, a_buffer_that_grows_by_copying_itself_is_still_a_leak)
{
	/* bench/leaks native_array under growth (the recording's series, KiB a second, the last
	 * second partial): 20 KiB a second, and now and then a burst when the buffer is copied
	 * into a bigger one. The bursts fall early, which must not read as a slowdown after them:
	 * one burst is not a pace. */
	static const int64_t kib[31] = {24, 28, 20, 20, 20, 128, 20, 20, 24, 20, 20,
					16, 68, 20, 20, 24, 20,	 20, 20, 20, 20, 20,
					24, 20, 20, 20, 20, 20,	 20, 20, 4};
	int64_t series[31];
	/* one sample a page, as report.c passes them (grown over samples) */
	struct leak_series s = {
	    .bytes = series, .n = 31, .bucket_seconds = 1.0, .duration = 30.85, .step_bytes = 4096};
	struct leak_verdict v;

	for (int i = 0; i < 31; i++)
		series[i] = kib[i] * KIB;
	leaks_judge_ex(&s, &v);
	cr_assert(v.candidate, "z %f quiet %f low %f", v.slowdown_z, v.quiet_p, v.rate_low);
	cr_assert_lt(v.slowdown_z, 3.09);
	cr_assert_float_eq(v.rate, 26.0 * KIB, 4.0 * KIB);
}

static struct leak_verdict scored(double score)
{
	return (struct leak_verdict){.candidate = true, .score = score};
}

/* The ranking keeps the best by score whatever the order they come in: an 11th site that scores
 * higher than the first ten displaces the worst of them. */
Test(leaks, rank_keeps_the_best_k_in_any_order)
{
	struct leak_rank best[3];
	const double scores[] = {5, 1, 7, 3, 9, 7, 2};
	size_t n = 0;

	for (size_t i = 0; i < sizeof(scores) / sizeof(scores[0]); i++) {
		struct leak_verdict v = scored(scores[i]);

		leaks_rank(best, &n, 3, i, &v);
	}
	cr_assert_eq(n, 3);
	cr_assert_eq(best[0].index, 4);
	cr_assert_eq(best[1].index, 2, "ties keep the earlier first");
	cr_assert_eq(best[2].index, 5);
	cr_assert_float_eq(best[2].v.score, 7, 1e-12);
}

Test(leaks, rank_with_room_keeps_everything_sorted)
{
	struct leak_rank best[8];
	size_t n = 0;

	for (size_t i = 0; i < 4; i++) {
		struct leak_verdict v = scored((double)i);

		leaks_rank(best, &n, 8, i, &v);
	}
	cr_assert_eq(n, 4);
	for (size_t r = 0; r < n; r++)
		cr_assert_eq(best[r].index, 3 - r);
	cr_assert_float_eq(leaks_step_bytes(1000, 4), 250, 1e-12);
	cr_assert_float_eq(leaks_step_bytes(1000, 0), 0, 1e-12);
}
