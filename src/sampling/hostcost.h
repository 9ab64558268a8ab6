/* What the features our modes rest on cost on this host, measured for real: a uprobe trap (on an
 * instruction the kernel must single-step, on one it emulates, and a return probe's) and a
 * hardware watchpoint trap, each timed on code and data of this very process. Hosts of one kind
 * differ by 30 times here (a uprobe trap of 1 us on one, 30 us on another; watchpoints that trap
 * on one and never on another), so nothing about them is assumed. */
#ifndef PMS_HOSTCOST_H
#define PMS_HOSTCOST_H

#include <stdbool.h>
#include <stdint.h>

/* The watchpoint self-test: a write watchpoint (PERF_TYPE_BREAKPOINT, 8 bytes, as --events
 * survivors arms them) on a variable of ours, written `writes` times. */
struct hostcost_watch {
	unsigned writes;
	uint64_t traps; /* what the kernel counted: writes when the hardware traps, 0 where not */
	double trap_ns; /* extra time of one trapped write; 0 when nothing trapped */
};

/* Opens the watchpoint, writes, counts and times. 0 with *w filled (traps may be 0: it opened
 * but never trapped), or -errno when it could not be opened (-EACCES/-EPERM privileges,
 * -ENOSPC debug registers taken, -ENOENT/-EOPNOTSUPP/-ENODEV no breakpoint support). */
int hostcost_watchpoint(struct hostcost_watch *w);

/* Uprobe trap costs, in ns per hit, of perf uprobes on functions of this binary. */
struct hostcost_uprobe {
	double sstep_ns;    /* entry probe on an instruction run out of line (mov) */
	double emulated_ns; /* entry probe on one the kernel emulates (push) */
	double return_ns;   /* what a return probe adds to a call */
};

/* Creates the uprobes (perf PMU `pmu_type`, from /sys/bus/event_source/devices/uprobe/type),
 * calls the probed functions and times them with and without. 0, or -errno from
 * perf_event_open (-EACCES/-EPERM: privileges). Takes 1000 calls per figure and round: about
 * 0.1 s where a trap costs 30 us. */
int hostcost_uprobe(long pmu_type, struct hostcost_uprobe *u);

/* The predicted share (0..1) of one thread's time the target spends in our uprobe traps, from
 * the calls the probes saw over `seconds`: an allocation call pays alloc_ns (its entry and return
 * traps), a free free_ns. Capped at 1. */
double hostcost_trap_share(double alloc_ns, double free_ns, uint64_t alloc_calls,
			   uint64_t free_calls, double seconds);

#endif
