#include "survledger.h"

#include <errno.h>
#include <stdlib.h>

#include "u64map.h"

/* A stack that sampled objects survived for. */
struct stack_acc {
	uint64_t stack_id;
	uint32_t tid;
	uint8_t flags;
	double surviving; /* bytes of its sampled objects that survived */
};

struct survledger {
	struct stack_acc *stacks;
	size_t nstacks;
	struct u64map *stack_index;
	double surviving_total;
	double *cumulative; /* running sums of stacks[].surviving, for the draw */

	struct surv_charge *held; /* growth in pools waiting for an owner */
	size_t nheld;
	uint64_t rng;

	uint64_t held_bytes, fallback_bytes, survived, died;
};

int survledger_new(uint64_t seed, struct survledger **out)
{
	struct survledger *l;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->stacks = calloc(SURV_MAX_STACKS, sizeof(*l->stacks));
	l->cumulative = calloc(SURV_MAX_STACKS, sizeof(*l->cumulative));
	l->held = calloc(SURV_MAX_HELD, sizeof(*l->held));
	l->stack_index = u64map_new(SURV_MAX_STACKS);
	if (!l->stacks || !l->cumulative || !l->held || !l->stack_index)
		goto fail;
	l->rng = seed | 1; /* xorshift never leaves 0 */
	*out = l;
	return 0;
fail:
	survledger_free(l);
	return -ENOMEM;
}

void survledger_free(struct survledger *l)
{
	if (!l)
		return;
	free(l->stacks);
	free(l->cumulative);
	free(l->held);
	u64map_free(l->stack_index);
	free(l);
}

bool survledger_hold(struct survledger *l, const struct surv_charge *c)
{
	if (l->nheld == SURV_MAX_HELD) {
		l->fallback_bytes += (uint64_t)c->bytes;
		return false; /* no survivor for a long while: first touch charges it */
	}
	l->held[l->nheld] = *c;
	l->held[l->nheld++].survivor = false;
	l->held_bytes += (uint64_t)c->bytes;
	return true;
}

void survledger_release(struct survledger *l, uint64_t addr, uint64_t len)
{
	size_t kept = 0;

	for (size_t i = 0; i < l->nheld; i++)
		if (l->held[i].addr < addr || l->held[i].addr >= addr + len)
			l->held[kept++] = l->held[i];
	l->nheld = kept;
}

void survledger_move(struct survledger *l, uint64_t from, uint64_t to, uint64_t len)
{
	for (size_t i = 0; i < l->nheld; i++)
		if (l->held[i].addr >= from && l->held[i].addr < from + len)
			l->held[i].addr = l->held[i].addr - from + to;
}

int survledger_survived(struct survledger *l, uint64_t stack_id, uint32_t tid, uint8_t flags,
			uint64_t bytes)
{
	/* stackless samples keep apart those without a thread state (they are different sites) */
	uint64_t key = stack_id ? stack_id : (flags & PMS_EVF_NO_TSTATE ? 1 : 2), idx;
	struct stack_acc *st;
	int ret = 0;

	if (u64map_get(l->stack_index, key, &idx)) {
		st = &l->stacks[idx];
	} else {
		if (l->nstacks == SURV_MAX_STACKS) {
			ret = -ENOSPC;
			goto cleanup;
		}
		ret = u64map_put(l->stack_index, key, l->nstacks);
		if (ret)
			goto cleanup;
		st = &l->stacks[l->nstacks++];
		*st = (struct stack_acc){.stack_id = stack_id, .tid = tid, .flags = flags};
	}
	st->surviving += (double)bytes;
	l->surviving_total += (double)bytes;
	l->survived++;
cleanup:
	if (ret)
		l->died++; /* as before the split: a survivor no stack can take counts as died */
	return ret;
}

void survledger_died(struct survledger *l)
{
	l->died++;
}

/* xorshift64*: the draws of owners need no more than that. */
static double uniform(struct survledger *l)
{
	l->rng ^= l->rng >> 12;
	l->rng ^= l->rng << 25;
	l->rng ^= l->rng >> 27;
	return (double)((l->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* No survivor yet: a page held SURV_MAX_HOLD_NS is charged now. Held to the end, a warm-up's
 * pages would all be charged at the end, a burst of growth where there was none. */
static void expire_held(struct survledger *l, uint64_t now_ns, surv_charge_fn fn, void *ctx)
{
	size_t kept = 0;

	for (size_t h = 0; h < l->nheld; h++) {
		if (now_ns > l->held[h].ts_ns && now_ns - l->held[h].ts_ns >= SURV_MAX_HOLD_NS) {
			l->fallback_bytes += (uint64_t)l->held[h].bytes;
			fn(ctx, &l->held[h]);
		} else {
			l->held[kept++] = l->held[h];
		}
	}
	l->nheld = kept;
}

/* Each held page goes to one stack, not a share to each: the expected charge of every stack is
 * its share, and the page keeps one owner, so that releasing it later is charged back to it (as
 * for growth). */
void survledger_tick(struct survledger *l, uint64_t now_ns, surv_charge_fn fn, void *ctx)
{
	double sum = 0;

	if (!l->nheld)
		return;
	if (l->surviving_total <= 0) {
		expire_held(l, now_ns, fn, ctx);
		return;
	}
	for (size_t i = 0; i < l->nstacks; i++) {
		sum += l->stacks[i].surviving;
		l->cumulative[i] = sum;
	}
	for (size_t h = 0; h < l->nheld; h++) {
		struct surv_charge c = l->held[h];
		double r = uniform(l) * sum;
		size_t lo = 0, hi = l->nstacks - 1;

		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (l->cumulative[mid] > r)
				hi = mid;
			else
				lo = mid + 1;
		}
		c.stack_id = l->stacks[lo].stack_id;
		c.tid = l->stacks[lo].tid;
		c.flags = l->stacks[lo].flags;
		c.survivor = true;
		fn(ctx, &c);
	}
	l->nheld = 0;
}

void survledger_flush(struct survledger *l, surv_charge_fn fn, void *ctx)
{
	for (size_t h = 0; h < l->nheld; h++) {
		l->fallback_bytes += (uint64_t)l->held[h].bytes;
		fn(ctx, &l->held[h]);
	}
	l->nheld = 0;
}

size_t survledger_held(const struct survledger *l)
{
	return l->nheld;
}

void survledger_counters(const struct survledger *l, uint64_t counters[PMS_CNT_MAX])
{
	counters[PMS_CNT_SURV_HELD] = l->held_bytes;
	counters[PMS_CNT_SURV_FALLBACK] = l->fallback_bytes;
	counters[PMS_CNT_SURV_SURVIVED] = l->survived;
	counters[PMS_CNT_SURV_DIED] = l->died;
}
