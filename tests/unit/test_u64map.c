#include <criterion/criterion.h>
#include <stdlib.h>

#include "u64map.h"

Test(u64map, put_get_delete_and_grow)
{
	struct u64map *m = u64map_new(4);
	uint64_t v;

	cr_assert_not_null(m);
	for (uint64_t k = 0; k < 100000; k++)
		cr_assert_eq(u64map_put(m, k * 4096, k + 1), 0);
	cr_assert_eq(u64map_count(m), 100000);
	for (uint64_t k = 0; k < 100000; k++) {
		cr_assert(u64map_get(m, k * 4096, &v));
		cr_assert_eq(v, k + 1);
	}
	cr_assert_not(u64map_get(m, 4095, &v));
	for (uint64_t k = 0; k < 100000; k += 2)
		cr_assert(u64map_del(m, k * 4096, NULL));
	cr_assert_eq(u64map_count(m), 50000);
	cr_assert_not(u64map_get(m, 0, &v));
	cr_assert(u64map_get(m, 4096, &v));
	cr_assert_eq(v, 2);
	/* tombstones are reused and cleaned: the map does not grow without bound */
	for (int round = 0; round < 20; round++) {
		for (uint64_t k = 0; k < 1000; k++)
			u64map_put(m, (1ull << 40) + k, k);
		for (uint64_t k = 0; k < 1000; k++)
			u64map_del(m, (1ull << 40) + k, NULL);
	}
	cr_assert_eq(u64map_count(m), 50000);
	cr_assert_lt(u64map_bytes(m), 100000 * 4 * 17);
	cr_assert(u64map_put(m, 4096, 77) == 0 && u64map_get(m, 4096, &v) && v == 77);
	u64map_free(m);
}

static void sum(uint64_t key, uint64_t value, void *ctx)
{
	(void)key;
	*(uint64_t *)ctx += value;
}

Test(u64map, iterates_every_entry)
{
	struct u64map *m = u64map_new(0);
	uint64_t total = 0;

	for (uint64_t k = 1; k <= 1000; k++)
		u64map_put(m, k, k);
	u64map_each(m, sum, &total);
	cr_assert_eq(total, 500500);
	u64map_free(m);
}

Test(u64map, hash_spreads)
{
	cr_assert_neq(u64map_hash_bytes("a", 1, 0), u64map_hash_bytes("b", 1, 0));
	cr_assert_neq(u64map_hash_bytes("a", 1, 0), u64map_hash_bytes("a", 1, 1));
	cr_assert_eq(u64map_hash_bytes("abc", 3, 7), u64map_hash_bytes("abc", 3, 7));
}
