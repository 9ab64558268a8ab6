#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hostcost.h"
#include "overhead.h"

Test(overhead, emulated_instructions_are_the_ones_the_kernel_emulates)
{
	const uint8_t push_rbp[] = {0x55}, push_r12[] = {0x41, 0x54}, nopl[] = {0x0f, 0x1f, 0x44};
	const uint8_t mov[] = {0x48, 0x89, 0xf8}, test[] = {0x48, 0x85, 0xff};
	const uint8_t endbr[] = {0xf3, 0x0f, 0x1e, 0xfa}, rex_mov[] = {0x41, 0x89, 0xc0};

	cr_assert(overhead_insn_emulated(push_rbp, sizeof(push_rbp)));
	cr_assert(overhead_insn_emulated(push_r12, sizeof(push_r12)));
	cr_assert(overhead_insn_emulated(nopl, sizeof(nopl)));
	cr_assert_not(overhead_insn_emulated(mov, sizeof(mov)));
	cr_assert_not(overhead_insn_emulated(test, sizeof(test)));
	cr_assert_not(overhead_insn_emulated(endbr, sizeof(endbr)));
	cr_assert_not(overhead_insn_emulated(rex_mov, sizeof(rex_mov)));
	cr_assert_not(overhead_insn_emulated(push_r12, 1), "a REX prefix alone is not a push");
}

/* Two probes: a malloc at 1 us a call, a free at 10 us (single-stepped). */
static struct overhead two_probes(double max_pct)
{
	struct overhead o;

	memset(&o, 0, sizeof(o));
	o.nprobes = 2;
	o.call_ns[0] = 1000;
	o.call_ns[1] = 10000;
	o.max_pct = max_pct;
	o.stopped_at = -1;
	return o;
}

Test(overhead, each_function_is_priced_by_its_own_calls)
{
	struct overhead o = two_probes(0);
	uint64_t calls[PMS_MAX_PROBES] = {0};

	calls[0] = 100000; /* 0.1 s of traps in the first second */
	calls[1] = 1000;   /* 0.01 s */
	cr_assert_not(overhead_update(&o, calls, 0.5), "no prediction before a window");
	cr_assert_not(overhead_update(&o, calls, 1.0));
	cr_assert_float_eq(o.predicted_pct, 11.0, 1e-9);
	cr_assert_float_eq(o.calls_per_sec, 101000.0, 1e-9);
	cr_assert_float_eq(o.trap_ns, 10000.0, 1e-9, "the dearest function that was called");
	/* the next window counts only its own calls */
	calls[0] += 20000;
	cr_assert_not(overhead_update(&o, calls, 3.0));
	cr_assert_float_eq(o.predicted_pct, 1.0, 1e-9);
	cr_assert_float_eq(o.trap_ns, 1000.0, 1e-9, "free was not called this window");
	cr_assert_float_eq(o.peak_pct, 11.0, 1e-9);
}

Test(overhead, the_bound_stops_and_a_stop_is_final)
{
	struct overhead o = two_probes(5);
	uint64_t calls[PMS_MAX_PROBES] = {0};

	calls[1] = 4000; /* 4% */
	cr_assert_not(overhead_update(&o, calls, 1.0));
	calls[1] += 6000; /* 6% */
	cr_assert(overhead_update(&o, calls, 2.0));
	o.stopped_at = 2.0;
	calls[1] += 60000;
	cr_assert_not(overhead_update(&o, calls, 3.0), "stopped probes are not judged again");
	cr_assert_float_eq(o.predicted_pct, 6.0, 1e-9);
}

Test(overhead, a_prediction_is_capped_at_a_whole_thread)
{
	struct overhead o = two_probes(0);
	uint64_t calls[PMS_MAX_PROBES] = {0};

	calls[1] = 1000000; /* 10 s of traps in 1 s: the target could not have made them */
	overhead_update(&o, calls, 1.0);
	cr_assert_float_eq(o.predicted_pct, 100.0, 1e-9);
	cr_assert_float_eq(hostcost_trap_share(1000, 10000, 0, 1000000, 1.0), 1.0, 1e-9);
	cr_assert_float_eq(hostcost_trap_share(1000, 10000, 1000, 100, 1.0), 0.002, 1e-12);
}

/* The real watchpoint self-test: on a host whose hardware traps, every write counts and costs
 * something; where it opens and never traps, none counts. Either way the figures agree. */
Test(hostcost, watchpoint_counts_agree_with_cost)
{
	struct hostcost_watch w;
	int ret = hostcost_watchpoint(&w);

	if (ret) {
		/* Criterion 2.4 exits 1 after any cr_log_warn: say it on stderr */
		fprintf(stderr, "SKIP hostcost/watchpoint: no hardware breakpoint here (%s)\n",
			strerror(-ret));
		return;
	}
	cr_assert_gt(w.writes, 0);
	cr_assert(w.traps == 0 || w.traps == w.writes, "%llu traps of %u writes",
		  (unsigned long long)w.traps, w.writes);
	cr_assert_eq(w.traps > 0, w.trap_ns > 0, "a cost exactly where writes trapped");
}
