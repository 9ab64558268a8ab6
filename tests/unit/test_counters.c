/* The counters' one table: every counter named, keys unique, and man 5 listing them all in the
 * order record files store them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"

Test(counters, every_counter_has_a_key_and_a_label)
{
	for (int c = 0; c < PMS_CNT_MAX; c++) {
		cr_assert_not_null(counter_key((enum pms_counter)c), "counter %d has no key", c);
		cr_assert_not_null(counter_label((enum pms_counter)c), "counter %d has no label",
				   c);
		for (int d = 0; d < c; d++)
			cr_assert_str_neq(counter_key((enum pms_counter)c),
					  counter_key((enum pms_counter)d),
					  "counters %d and %d share a key", d, c);
	}
	cr_assert_null(counter_key(PMS_CNT_MAX));
}

Test(counters, list_prints_labels_and_values)
{
	uint64_t v[PMS_CNT_MAX] = {[PMS_CNT_FAULTS] = 7, [PMS_CNT_RELEASES] = 3};
	const enum pms_counter which[] = {PMS_CNT_FAULTS, PMS_CNT_RELEASES};
	char buf[128] = {0};
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");

	counter_print_list(f, v, which, 2);
	fclose(f);
	cr_assert_str_eq(buf, "page faults 7, releases 3");
}

/* man/pymemspy-record.5 names each key as `.B key`, in enum order, in its counters paragraph. */
Test(counters, man5_lists_every_counter_in_order)
{
	FILE *f = fopen("man/pymemspy-record.5", "r");
	char *text, *at;
	long len;

	cr_assert_not_null(f, "run from the repository's root");
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)len + 1);
	cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	at = strstr(text, "The counters, in this order");
	cr_assert_not_null(at);
	for (int c = 0; c < PMS_CNT_MAX; c++) {
		char want[80];
		char *hit;

		snprintf(want, sizeof(want), "\n.B %s\n", counter_key((enum pms_counter)c));
		hit = strstr(at, want);
		cr_assert_not_null(hit, "man 5 does not list %s after the previous counter",
				   counter_key((enum pms_counter)c));
		at = hit + 1;
	}
	free(text);
}
