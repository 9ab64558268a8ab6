#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "survledger.h"

#define PAGE	 4096
#define SEC	 1000000000ull
#define BASE	 0x7f0000000000ull
#define TOUCHER	 0xf00dull /* the first toucher's stack: what a page carries when held */
#define T_TOUCH	 77u
#define STACK_A	 0xaaaaull
#define STACK_B	 0xbbbbull
#define MAX_SEEN (SURV_MAX_HELD + 16)

static struct survledger *led;
static struct surv_charge *seen;
static size_t nseen;

static void record(void *ctx, const struct surv_charge *c)
{
	(void)ctx;
	cr_assert_lt(nseen, MAX_SEEN);
	seen[nseen++] = *c;
}

static void start(void)
{
	cr_assert_eq(survledger_new(42, &led), 0);
	seen = calloc(MAX_SEEN, sizeof(*seen));
	cr_assert_not_null(seen);
	nseen = 0;
}

static void stop(void)
{
	survledger_free(led);
	free(seen);
}

/* Page i of a run at BASE, grown at ts_ns by the first toucher. */
static bool hold_page(struct survledger *l, size_t i, uint64_t ts_ns)
{
	struct surv_charge c = {.addr = BASE + i * PAGE,
				.stack_id = TOUCHER,
				.ts_ns = ts_ns,
				.bytes = PAGE,
				.tid = T_TOUCH,
				.flags = PMS_EVF_KERNEL_FAULT,
				.member = 1};

	return survledger_hold(l, &c);
}

static size_t charged_to(uint64_t stack_id)
{
	size_t n = 0;

	for (size_t i = 0; i < nseen; i++)
		n += seen[i].stack_id == stack_id;
	return n;
}

static void counters_of(uint64_t out[PMS_CNT_MAX])
{
	memset(out, 0, PMS_CNT_MAX * sizeof(*out));
	survledger_counters(led, out);
}

/* In proportion to bytes, not to samples: A has one 384-byte survivor, B two of 64 bytes
 * (3:1 in bytes, 1:2 in samples; B's not summed would make it 6:1). */
Test(survledger, held_pages_go_to_survivors_in_proportion_to_their_bytes, .init = start,
     .fini = stop)
{
	uint64_t cnt[PMS_CNT_MAX];
	bool *got = calloc(4000, sizeof(*got));

	cr_assert_eq(survledger_survived(led, STACK_A, 11, 0, 384), 0);
	cr_assert_eq(survledger_survived(led, STACK_B, 22, PMS_EVF_TRUNCATED, 64), 0);
	cr_assert_eq(survledger_survived(led, STACK_B, 23, 0, 64), 0);
	for (size_t i = 0; i < 4000; i++)
		cr_assert(hold_page(led, i, 5 * SEC));
	cr_assert_eq(survledger_held(led), 4000);
	survledger_tick(led, 5 * SEC + 1, record, NULL);
	cr_assert_eq(nseen, 4000);
	cr_assert_eq(survledger_held(led), 0);
	cr_assert(charged_to(STACK_A) > 2880 && charged_to(STACK_A) < 3120, "A got %zu of 4000",
		  charged_to(STACK_A));
	cr_assert_eq(charged_to(STACK_A) + charged_to(STACK_B), 4000);
	for (size_t i = 0; i < nseen; i++) {
		size_t page = (seen[i].addr - BASE) / PAGE;

		cr_assert(seen[i].survivor);
		cr_assert(page < 4000 && !got[page], "page %zu charged twice or unknown", page);
		got[page] = true;
		cr_assert_eq(seen[i].bytes, PAGE);
		cr_assert_eq(seen[i].member, 1);
		/* the owner's thread and flags, its first sample's, not the toucher's */
		if (seen[i].stack_id == STACK_A)
			cr_assert(seen[i].tid == 11 && seen[i].flags == 0);
		else
			cr_assert(seen[i].tid == 22 && seen[i].flags == PMS_EVF_TRUNCATED);
	}
	counters_of(cnt);
	cr_assert_eq(cnt[PMS_CNT_SURV_HELD], 4000ull * PAGE);
	cr_assert_eq(cnt[PMS_CNT_SURV_FALLBACK], 0);
	cr_assert_eq(cnt[PMS_CNT_SURV_SURVIVED], 3);
	cr_assert_eq(cnt[PMS_CNT_SURV_DIED], 0);
	/* a later tick draws with the bytes as they are then: B now has 3x A's */
	cr_assert_eq(survledger_survived(led, STACK_B, 22, 0, 1024), 0);
	nseen = 0;
	for (size_t i = 0; i < 4000; i++)
		hold_page(led, i, 6 * SEC);
	survledger_tick(led, 6 * SEC, record, NULL);
	cr_assert(charged_to(STACK_B) > 2880 && charged_to(STACK_B) < 3120, "B got %zu of 4000",
		  charged_to(STACK_B));
	free(got);
}

/* Samples without a Python stack are two owners: with and without a thread state. */
Test(survledger, stackless_survivors_with_and_without_thread_state_stay_apart, .init = start,
     .fini = stop)
{
	size_t no_tstate = 0;

	cr_assert_eq(survledger_survived(led, 0, 5, PMS_EVF_NO_TSTATE, 64), 0);
	cr_assert_eq(survledger_survived(led, 0, 6, 0, 64), 0);
	for (size_t i = 0; i < 1000; i++)
		hold_page(led, i, SEC);
	survledger_tick(led, SEC, record, NULL);
	cr_assert_eq(nseen, 1000);
	for (size_t i = 0; i < nseen; i++) {
		cr_assert_eq(seen[i].stack_id, 0);
		if (seen[i].flags & PMS_EVF_NO_TSTATE) {
			cr_assert_eq(seen[i].tid, 5);
			no_tstate++;
		} else {
			cr_assert_eq(seen[i].tid, 6);
		}
	}
	cr_assert(no_tstate > 420 && no_tstate < 580, "%zu of 1000 without a thread state",
		  no_tstate);
}

static void owners(uint64_t seed, uint64_t *out, size_t n)
{
	struct survledger *l;

	cr_assert_eq(survledger_new(seed, &l), 0);
	survledger_survived(l, STACK_A, 1, 0, 64);
	survledger_survived(l, STACK_B, 2, 0, 64);
	for (size_t i = 0; i < n; i++)
		hold_page(l, i, SEC);
	nseen = 0;
	survledger_tick(l, SEC, record, NULL);
	cr_assert_eq(nseen, n);
	for (size_t i = 0; i < n; i++)
		out[i] = seen[i].stack_id;
	survledger_free(l);
}

Test(survledger, the_draw_follows_the_seed, .init = start, .fini = stop)
{
	uint64_t a[200], b[200], c[200];

	owners(7, a, 200);
	owners(7, b, 200);
	owners(8, c, 200);
	cr_assert_arr_eq(a, b, sizeof(a));
	cr_assert(memcmp(a, c, sizeof(a)) != 0);
}

Test(survledger, without_survivor_a_page_waits_ten_seconds_then_goes_without_one, .init = start,
     .fini = stop)
{
	struct surv_charge c = {.addr = BASE + 50 * PAGE, .ts_ns = 20 * SEC, .bytes = PAGE};
	uint64_t cnt[PMS_CNT_MAX];

	cr_assert(hold_page(led, 0, 3 * SEC));
	cr_assert(hold_page(led, 1, 8 * SEC));
	cr_assert(survledger_hold(led, &c));
	survledger_tick(led, 3 * SEC + SURV_MAX_HOLD_NS - 1, record, NULL);
	cr_assert_eq(nseen, 0, "charged before %llu ns", SURV_MAX_HOLD_NS);
	cr_assert_eq(survledger_held(led), 3);
	survledger_tick(led, 3 * SEC + SURV_MAX_HOLD_NS, record, NULL);
	cr_assert_eq(nseen, 1);
	cr_assert_eq(seen[0].addr, BASE);
	cr_assert(!seen[0].survivor);
	/* as it was held: the sampler names it <pymalloc, no survivor> from the flag */
	cr_assert(seen[0].stack_id == TOUCHER && seen[0].tid == T_TOUCH &&
		  seen[0].flags == PMS_EVF_KERNEL_FAULT && seen[0].bytes == PAGE);
	cr_assert_eq(survledger_held(led), 2);
	counters_of(cnt);
	cr_assert_eq(cnt[PMS_CNT_SURV_FALLBACK], PAGE);
	cr_assert_eq(cnt[PMS_CNT_SURV_HELD], 3 * PAGE);
	/* the page of 20 s is younger than now, not 2^64 ns old */
	survledger_tick(led, 8 * SEC + SURV_MAX_HOLD_NS, record, NULL);
	cr_assert_eq(nseen, 2);
	cr_assert_eq(seen[1].addr, BASE + PAGE);
	cr_assert_eq(survledger_held(led), 1);
	/* a first survivor takes what is left, however young */
	survledger_survived(led, STACK_A, 9, 0, 32);
	survledger_tick(led, 20 * SEC, record, NULL);
	cr_assert_eq(nseen, 3);
	cr_assert(seen[2].survivor && seen[2].stack_id == STACK_A && seen[2].addr == c.addr);
	counters_of(cnt);
	cr_assert_eq(cnt[PMS_CNT_SURV_FALLBACK], 2 * PAGE);
}

/* With a survivor, even a page held past SURV_MAX_HOLD_NS goes to it. */
Test(survledger, with_survivors_no_page_expires, .init = start, .fini = stop)
{
	uint64_t cnt[PMS_CNT_MAX];

	survledger_survived(led, STACK_A, 9, 0, 32);
	hold_page(led, 0, SEC);
	survledger_tick(led, SEC + 5 * SURV_MAX_HOLD_NS, record, NULL);
	cr_assert_eq(nseen, 1);
	cr_assert(seen[0].survivor && seen[0].stack_id == STACK_A);
	counters_of(cnt);
	cr_assert_eq(cnt[PMS_CNT_SURV_FALLBACK], 0);
}

Test(survledger, released_ranges_drop_held_pages_uncharged, .init = start, .fini = stop)
{
	static const size_t kept[] = {0, 1, 5, 6, 7, 8, 9};
	uint64_t cnt[PMS_CNT_MAX];

	for (size_t i = 0; i < 10; i++)
		hold_page(led, i, SEC);
	/* pages 2, 3, 4: [start, end) */
	survledger_release(led, BASE + 2 * PAGE, 3 * PAGE);
	cr_assert_eq(survledger_held(led), 7);
	survledger_flush(led, record, NULL);
	cr_assert_eq(nseen, 7);
	for (size_t i = 0; i < 7; i++)
		cr_assert_eq(seen[i].addr, BASE + kept[i] * PAGE, "charge %zu at page %llu", i,
			     (unsigned long long)((seen[i].addr - BASE) / PAGE));
	counters_of(cnt);
	cr_assert_eq(cnt[PMS_CNT_SURV_HELD], 10 * PAGE);
	cr_assert_eq(cnt[PMS_CNT_SURV_FALLBACK], 7 * PAGE);
}

Test(survledger, moved_ranges_move_held_pages, .init = start, .fini = stop)
{
	const uint64_t to = 0x5500000000ull;

	for (size_t i = 0; i < 10; i++)
		hold_page(led, i, SEC);
	survledger_move(led, BASE + 2 * PAGE, to, 3 * PAGE);
	cr_assert_eq(survledger_held(led), 10);
	survledger_flush(led, record, NULL);
	cr_assert_eq(nseen, 10);
	for (size_t i = 0; i < 10; i++) {
		uint64_t want = i >= 2 && i < 5 ? to + (i - 2) * PAGE : BASE + i * PAGE;

		cr_assert_eq(seen[i].addr, want, "page %zu at %#llx", i,
			     (unsigned long long)seen[i].addr);
	}
	/* and a release at the new place finds them */
	for (size_t i = 0; i < 10; i++)
		hold_page(led, i, SEC);
	survledger_move(led, BASE, to, 10 * PAGE);
	survledger_release(led, to, 10 * PAGE);
	cr_assert_eq(survledger_held(led), 0);
}

Test(survledger, flush_charges_what_is_left_without_a_survivor, .init = start, .fini = stop)
{
	uint64_t cnt[PMS_CNT_MAX];
	struct surv_charge c = {.addr = BASE + 2 * PAGE, .stack_id = TOUCHER, .bytes = PAGE};

	for (size_t i = 0; i < 2; i++)
		hold_page(led, i, SEC);
	/* a hold whose caller left survivor set is still a page without one */
	c.survivor = true;
	survledger_hold(led, &c);
	survledger_tick(led, 2 * SEC, record, NULL);
	cr_assert_eq(nseen, 0);
	survledger_flush(led, record, NULL);
	cr_assert_eq(nseen, 3);
	for (size_t i = 0; i < 3; i++)
		cr_assert(!seen[i].survivor && seen[i].stack_id == TOUCHER);
	cr_assert_eq(survledger_held(led), 0);
	survledger_flush(led, record, NULL);
	cr_assert_eq(nseen, 3, "a page charged twice");
	counters_of(cnt);
	cr_assert_eq(cnt[PMS_CNT_SURV_FALLBACK], 3 * PAGE);
}

Test(survledger, a_full_ledger_refuses_and_counts_the_fallback, .init = start, .fini = stop)
{
	uint64_t cnt[PMS_CNT_MAX];
	struct surv_charge big = {.addr = BASE, .ts_ns = SEC, .bytes = 3 * PAGE};

	for (size_t i = 0; i < SURV_MAX_HELD; i++)
		cr_assert(hold_page(led, i, SEC), "refused page %zu", i);
	cr_assert(!survledger_hold(led, &big));
	cr_assert_eq(survledger_held(led), SURV_MAX_HELD);
	counters_of(cnt);
	cr_assert_eq(cnt[PMS_CNT_SURV_FALLBACK], 3 * PAGE);
	cr_assert_eq(cnt[PMS_CNT_SURV_HELD], (uint64_t)SURV_MAX_HELD * PAGE);
	/* the refused page is the caller's to charge: the ledger never charges it */
	survledger_survived(led, STACK_A, 1, 0, 16);
	survledger_tick(led, 2 * SEC, record, NULL);
	cr_assert_eq(nseen, SURV_MAX_HELD);
	/* room again */
	cr_assert(survledger_hold(led, &big));
}

Test(survledger, stacks_past_the_bound_count_as_died_and_own_nothing, .init = start, .fini = stop)
{
	uint64_t cnt[PMS_CNT_MAX];

	for (uint64_t i = 1; i <= SURV_MAX_STACKS; i++)
		cr_assert_eq(survledger_survived(led, 0x1000 + i, 1, 0, 16), 0);
	/* a heavy newcomer, refused: it would take nearly every page */
	cr_assert_eq(survledger_survived(led, STACK_A, 1, 0, 1u << 30), -ENOSPC);
	/* a stack already there still gains */
	cr_assert_eq(survledger_survived(led, 0x1001, 1, 0, 16), 0);
	survledger_died(led);
	counters_of(cnt);
	cr_assert_eq(cnt[PMS_CNT_SURV_SURVIVED], SURV_MAX_STACKS + 1);
	cr_assert_eq(cnt[PMS_CNT_SURV_DIED], 2);
	for (size_t i = 0; i < 2000; i++)
		hold_page(led, i, SEC);
	survledger_tick(led, SEC, record, NULL);
	cr_assert_eq(nseen, 2000);
	cr_assert_eq(charged_to(STACK_A), 0);
	/* 0x1001 has 2/4097 of the bytes: about one page in 2000, surely not hundreds */
	cr_assert_lt(charged_to(0x1001), 10);
}

/* The ledger sets its own four counters and leaves the others (the watch side's) alone. */
Test(survledger, counters_touch_only_their_own, .init = start, .fini = stop)
{
	uint64_t cnt[PMS_CNT_MAX];

	hold_page(led, 0, SEC);
	survledger_died(led);
	survledger_died(led);
	for (int i = 0; i < PMS_CNT_MAX; i++)
		cnt[i] = 1000 + (uint64_t)i;
	survledger_counters(led, cnt);
	for (int i = 0; i < PMS_CNT_MAX; i++) {
		if (i == PMS_CNT_SURV_HELD)
			cr_assert_eq(cnt[i], PAGE);
		else if (i == PMS_CNT_SURV_DIED)
			cr_assert_eq(cnt[i], 2);
		else if (i == PMS_CNT_SURV_FALLBACK || i == PMS_CNT_SURV_SURVIVED)
			cr_assert_eq(cnt[i], 0);
		else
			cr_assert_eq(cnt[i], 1000 + (uint64_t)i, "counter %d changed", i);
	}
}
