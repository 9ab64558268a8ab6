/* Census series: slopes and their intervals, rows that come and go between snapshots. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "census.h"

Test(census, slope_of_a_line_is_exact)
{
	double x[] = {0, 1, 2, 3, 4}, y[] = {10, 15, 20, 25, 30}, slope, hw;

	cr_assert_eq(census_slope(x, y, 5, &slope, &hw), 0);
	cr_assert_float_eq(slope, 5.0, 1e-9);
	cr_assert_float_eq(hw, 0.0, 1e-9);
}

Test(census, slope_interval_covers_noise)
{
	/* y = 2x + noise of +-1: the 95% interval holds 2 and is narrow */
	double x[10], y[10], slope, hw;

	for (int i = 0; i < 10; i++) {
		x[i] = i;
		y[i] = 2 * i + (i % 2 ? 1 : -1);
	}
	cr_assert_eq(census_slope(x, y, 10, &slope, &hw), 0);
	cr_assert(slope - hw < 2 && slope + hw > 2, "2 outside [%f, %f]", slope - hw, slope + hw);
	cr_assert_lt(hw, 0.5);
	cr_assert_gt(hw, 0);
}

Test(census, slope_needs_two_points_and_spread)
{
	double x[] = {1, 1, 1}, y[] = {1, 2, 3}, slope = -1, hw = -1;

	cr_assert_eq(census_slope(x, y, 1, &slope, &hw), -EINVAL);
	cr_assert_eq(census_slope(x, y, 3, &slope, &hw), -EINVAL);
	x[1] = 2;
	cr_assert_eq(census_slope(x, y, 2, &slope, &hw), 0);
	cr_assert_float_eq(slope, 1.0, 1e-9);
	cr_assert_float_eq(hw, 0.0, 1e-9); /* no interval from two points */
}

Test(census, type_rows_absent_count_as_zero)
{
	struct census_table *t = census_table_new(true);
	struct census_stats st;
	int steady = -1, newcomer = -1;

	cr_assert_not_null(t);
	cr_assert_eq(census_table_add(t, "x", 1, 1), -EINVAL, "no snapshot yet");
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(census_table_snapshot(t, i * 2.0), 0);
		steady = census_table_add(t,
					  "builtins\x1f"
					  "dict",
					  100, 6400);
		if (i >= 2)
			newcomer = census_table_add(t,
						    "app\x1f"
						    "Invoice",
						    10.0 * i, 560.0 * i);
	}
	cr_assert_geq(steady, 0);
	cr_assert_geq(newcomer, 0);
	cr_assert_eq(census_table_rows(t), 2);
	cr_assert_eq(census_table_snapshots(t), 4);
	cr_assert_str_eq(census_table_key(t, (size_t)newcomer), "app\x1f"
								"Invoice");

	cr_assert_eq(census_table_stats(t, (size_t)steady, &st), 0);
	cr_assert_float_eq(st.a, 100, 1e-9);
	cr_assert_float_eq(st.a_rate.rate, 0, 1e-9);
	cr_assert_eq(st.a_rate.points, 4);

	/* 0, 0, 20, 30 at t = 0, 2, 4, 6 */
	cr_assert_eq(census_table_stats(t, (size_t)newcomer, &st), 0);
	cr_assert(st.in_last);
	cr_assert_float_eq(st.a, 30, 1e-9);
	cr_assert_float_eq(st.a_rate.rate, 5.5, 1e-9);
	cr_assert_eq(st.a_rate.points, 4);
	cr_assert(st.a_rate.low < 5.5 && st.a_rate.high > 5.5);
	cr_assert_eq(census_table_stats(t, 2, &st), -EINVAL);
	census_table_free(t);
}

Test(census, holder_rows_absent_are_skipped)
{
	struct census_table *t = census_table_new(false);
	struct census_stats st;
	int row = -1;

	cr_assert_not_null(t);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(census_table_snapshot(t, (double)i), 0);
		if (i != 2) /* not found in snapshot 2 (a torn read): not a zero */
			row = census_table_add(t, "app.LEDGER", 500.0 * i, 4000.0 * i);
	}
	cr_assert_eq(census_table_stats(t, (size_t)row, &st), 0);
	cr_assert_eq(st.a_rate.points, 4);
	cr_assert_float_eq(st.a_rate.rate, 500, 1e-9);
	cr_assert_float_eq(st.b_rate.rate, 4000, 1e-9);
	cr_assert_float_eq(st.a, 2000, 1e-9);
	census_table_free(t);
}

Test(census, adding_twice_in_a_snapshot_sums)
{
	struct census_table *t = census_table_new(true);
	struct census_stats st;
	int a, b;

	cr_assert_eq(census_table_snapshot(t, 0), 0);
	a = census_table_add(t,
			     "m\x1f"
			     "T",
			     1, 10);
	b = census_table_add(t,
			     "m\x1f"
			     "T",
			     2, 20);
	cr_assert_eq(a, b);
	cr_assert_eq(census_table_stats(t, (size_t)a, &st), 0);
	cr_assert_float_eq(st.a, 3, 1e-9);
	cr_assert_float_eq(st.b, 30, 1e-9);
	census_table_free(t);
}

Test(census, many_rows_and_snapshots)
{
	struct census_table *t = census_table_new(true);
	char key[32];
	struct census_stats st;

	for (int s = 0; s < 40; s++) {
		cr_assert_eq(census_table_snapshot(t, s), 0);
		for (int r = 0; r < 500; r++) {
			snprintf(key, sizeof(key),
				 "m\x1f"
				 "T%d",
				 r);
			cr_assert_geq(census_table_add(t, key, (double)(r * s), 1), 0);
		}
	}
	cr_assert_eq(census_table_rows(t), 500);
	for (size_t r = 0; r < 500; r += 97) {
		cr_assert_eq(census_table_stats(t, r, &st), 0);
		cr_assert_float_eq(st.a_rate.rate, (double)r, 1e-6);
	}
	census_table_free(t);
}
