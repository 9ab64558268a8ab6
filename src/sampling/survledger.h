/* The survivors source's accounting, apart from how its samples are taken (doc/survivors.md,
 * "Amount and owner"): growth pages in pymalloc's pools are held, stacks gain surviving bytes
 * from their sampled objects' verdicts, and each tick gives every held page to one stack drawn
 * in proportion to those bytes. A page no survivor took within SURV_MAX_HOLD_NS, or by the end,
 * is charged without one (the sampler sends it to <pymalloc, no survivor>). It knows nothing of
 * watchpoints or the target: the caller decides which growth lies in a pool, and passes time in.
 * One thread uses a ledger. */
#ifndef PMS_SURVLEDGER_H
#define PMS_SURVLEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pymemspy.h"

#define SURV_MAX_STACKS	 4096		/* stacks with survivors */
#define SURV_MAX_HELD	 65536		/* growth events in pools waiting for a survivor */
#define SURV_MAX_HOLD_NS 10000000000ull /* growth waits this long for a first survivor */

/* Growth to charge: a page (addr, bytes, member as the growth event had them) and the stack it
 * goes to (stack_id as the kernel hashed it, its thread, flags PMS_EVF_*): a survivor's when
 * survivor is set, else still the first toucher's (no survivor could take it). */
struct surv_charge {
	uint64_t addr, stack_id, ts_ns;
	int64_t bytes;
	uint32_t tid;
	uint8_t flags, member;
	bool survivor;
};
typedef void (*surv_charge_fn)(void *ctx, const struct surv_charge *c);

struct survledger;

/* An empty ledger whose draws follow seed (the same seed, the same owners). 0 or -ENOMEM. */
int survledger_new(uint64_t seed, struct survledger **out);
void survledger_free(struct survledger *l);

/* Holds a page of growth in a pool (c->ts_ns its time; c->survivor ignored) until a survivor's
 * stack takes it: true. False when SURV_MAX_HELD pages are held already: the page is counted as
 * fallback and the caller charges it by first touch. */
bool survledger_hold(struct survledger *l, const struct surv_charge *c);

/* The target released [addr, addr+len): held pages there are dropped uncharged (grown and gone
 * before an owner was found). */
void survledger_release(struct survledger *l, uint64_t addr, uint64_t len);

/* The target moved [from, from+len) to `to`: held pages there move along. */
void survledger_move(struct survledger *l, uint64_t from, uint64_t to, uint64_t len);

/* A sampled object survived: its stack (stack_id 0: one stack per NO_TSTATE flag) gains bytes.
 * 0, or -ENOSPC when SURV_MAX_STACKS other stacks have survivors (counted as died then). */
int survledger_survived(struct survledger *l, uint64_t stack_id, uint32_t tid, uint8_t flags,
			uint64_t bytes);

/* A sampled object died (or could not be checked): counted. */
void survledger_died(struct survledger *l);

/* With survivors: every held page goes to fn with one survivor's stack (survivor set), drawn
 * with chance in proportion to surviving bytes. Without: pages held SURV_MAX_HOLD_NS at now_ns
 * go to fn as they were (survivor unset, counted as fallback); the others wait. */
void survledger_tick(struct survledger *l, uint64_t now_ns, surv_charge_fn fn, void *ctx);

/* At the end: every page still held goes to fn without a survivor (counted as fallback). */
void survledger_flush(struct survledger *l, surv_charge_fn fn, void *ctx);

/* Pages held now. */
size_t survledger_held(const struct survledger *l);

/* Sets the ledger's counters in counters[]: PMS_CNT_SURV_HELD and _FALLBACK (bytes), _SURVIVED
 * and _DIED (samples). */
void survledger_counters(const struct survledger *l, uint64_t counters[PMS_CNT_MAX]);

#endif
