/* What the uprobe sources cost the target, predicted while they run: the trap cost measured on
 * this host at start (hostcost.h), the kind of instruction each probe sits on, and the target's
 * rate of probed calls. With a bound (--max-overhead), the caller stops the probes once the
 * prediction passes it: a uprobe traps on every call, sampled or not, so sampling less would
 * not cost less. */
#ifndef PMS_OVERHEAD_H
#define PMS_OVERHEAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "allocators.h"
#include "errors.h"
#include "pymemspy.h"

/* Seconds of calls a prediction averages over. */
#define OVERHEAD_WINDOW_S 1.0

struct overhead {
	double trap_ns;	       /* the dearest entry trap of the called functions, here */
	double return_trap_ns; /* what a return probe adds */
	double max_pct;	       /* the bound, % of one thread's time; 0: none */
	double calls_per_sec;  /* probed calls (allocations and frees) in the last window */
	double predicted_pct;  /* of one thread's time, in the last window */
	double peak_pct;       /* the highest prediction so far */
	double stopped_at;     /* seconds into the recording the probes were stopped; <0 not */
	bool said;	       /* the first prediction was told the user */
	/* private: each probed function's price per call, and the window's start */
	size_t nprobes;
	double call_ns[PMS_MAX_PROBES];
	uint64_t last_calls[PMS_MAX_PROBES];
	double last_t;
};

/* Times the traps here and looks at the instructions the probes sit on. max_pct 0 means no
 * bound. Errors with a message: -PMS_ENOFEATURE or -EPERM when the trap cannot be timed. */
int overhead_init(struct overhead *o, const struct alloc_probes *probes, double max_pct,
		  struct pms_error *err);

/* Takes the calls of each probed function so far (calls[i] for probes->probes[i]) at `elapsed`
 * seconds; once a window has passed, updates the prediction. Returns true when it is above the
 * bound and the probes should stop now (the caller stops them and sets stopped_at). */
bool overhead_update(struct overhead *o, const uint64_t calls[PMS_MAX_PROBES], double elapsed);

/* One line for the user: the call rate, the trap cost and the predicted slowdown (or why the
 * probes were stopped). */
void overhead_describe(const struct overhead *o, const char *source, char *buf, size_t len);

/* Whether instruction bytes code[0..len) are ones the x86 uprobe code emulates (push, nop, a
 * relative jump or call) rather than single-steps out of line: a tenth of the cost, or less. */
bool overhead_insn_emulated(const uint8_t *code, size_t len);

#endif
