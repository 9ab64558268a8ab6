/* The survivors source, user side: samples pymalloc allocations with hardware watchpoints and
 * keeps those whose objects survive, then charges growth in pymalloc's pools to the surviving
 * samples' stacks instead of to whoever touched the fresh page first (doc/survivors.md).
 *
 * A thread of its own arms up to three watch slots (rationed to arms_per_sec): the word at
 * block+8 of a free block a size class will hand out soon, classes in turn, on a breakpoint
 * event per target thread and slot (threads created later inherit them). The kernel program
 * reports the first write with the writer's Python stack, then watches for a write only the
 * object's death makes. A sample that lived min_age, whose block is still allocated with the
 * same word, is a survivor: it counts for its stack with its block size. */
#ifndef PMS_SURVIVORS_H
#define PMS_SURVIVORS_H

#include <stdbool.h>
#include <stdint.h>

#include "errors.h"
#include "proc.h"
#include "pymemspy.h"
#include "survledger.h" /* struct surv_charge, surv_charge_fn: the accounting */

#define SURV_DEFAULT_ARMS_PER_SEC 100
#define SURV_DEFAULT_MIN_AGE	  1.0

struct survivors;

struct surv_opts {
	unsigned arms_per_sec; /* 0: SURV_DEFAULT_ARMS_PER_SEC */
	double min_age;	       /* seconds; 0: SURV_DEFAULT_MIN_AGE */
	bool debug_allocator;  /* the debug hooks wrap pymalloc: the watched word is theirs */
	uint64_t type_type;    /* address of PyType_Type in the target */
};

/* Finds the pools, opens a write breakpoint on every thread of p with prog_fd attached, and
 * starts arming through arm_map_fd (struct pms_watch_arm); deaths_fd is the ring buffer where the
 * kernel says which watched object died. Errors with a message: -PMS_EUNSUPPORTED
 * no pymalloc (exit 5), -EPERM (CAP_PERFMON), -ENOSPC every thread's debug registers taken. */
int surv_open(struct proc *p, int minor, int prog_fd, int arm_map_fd, int deaths_fd,
	      const struct surv_opts *o, struct survivors **out, struct pms_error *err);

/* A PMS_EV_WATCH event: follows the sampled allocation when its arm was good. */
void surv_on_watch(struct survivors *s, const struct pms_event *ev);

/* A growth event: true when its page is in a pymalloc pool, the page then held until a
 * survivor's stack takes it (the caller must not charge it). */
bool surv_hold_growth(struct survivors *s, const struct pms_event *ev);

/* The target released [addr, addr+len) (or moved it to `to`): held growth there is dropped
 * (or moves along). */
void surv_release(struct survivors *s, uint64_t addr, uint64_t len);
void surv_move(struct survivors *s, uint64_t from, uint64_t to, uint64_t len);

/* Checks the followed allocations old enough at now_ns (CLOCK_MONOTONIC), then gives each held
 * page to a survivor's stack drawn in proportion to their surviving bytes (or, with no survivor
 * yet, charges pages held SURV_MAX_HOLD_NS without one: survledger_tick). */
void surv_tick(struct survivors *s, uint64_t now_ns, surv_charge_fn fn, void *ctx);

/* At the end: held growth no survivor could take goes to fn without a survivor. */
void surv_flush(struct survivors *s, surv_charge_fn fn, void *ctx);

/* Whether the watchpoints trap: 0 while they do or it is not known yet; -PMS_ENOFEATURE with a
 * message when, within 15 s of surv_open, ten armed blocks were allocated (their watched word
 * written) without a single trap. now_ns: CLOCK_MONOTONIC. Called from the caller's thread. */
int surv_health(struct survivors *s, uint64_t now_ns, struct pms_error *err);

/* Stops arming and takes the watchpoints out (the target runs untouched from here). */
void surv_stop(struct survivors *s);

/* Adds the user-side counters (PMS_CNT_SURV_*). */
void surv_counters(const struct survivors *s, uint64_t counters[PMS_CNT_MAX]);

/* One line on what it watches, for the user. */
void surv_describe(const struct survivors *s, char *buf, size_t len);

void surv_close(struct survivors *s);

#endif
