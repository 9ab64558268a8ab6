// SPDX-License-Identifier: GPL-2.0
/* The allocator event sources (`malloc`, `pymalloc`): uprobes on the allocation functions the
 * target really calls, sampled by bytes, and on free.
 *
 * An allocation is sampled at its entry (the size is known there) with probability
 * p = 1 - exp(-size/rate) (pms_sample_p_q32); its return probe then has the address, walks the
 * Python stack and remembers the address in `live`. A free looks the address up in `live`: only
 * frees of sampled allocations reach user space. realloc is a free of the old block (when it
 * succeeded) and an allocation of the new one.
 *
 * Allocators call each other (glibc's realloc(NULL, n) calls malloc; pymalloc hands big blocks
 * to the raw domain): a per-thread depth makes only the outermost call count. Return probes are
 * attached before entry probes, so a return without its entry is ignored rather than leaving a
 * depth that never comes back to zero; and an entry whose stack pointer is not below the pending
 * outer call's proves that call ended unseen, so it starts afresh. */
#include "pywalk.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct pending_call {
	__u64 size;
	__u64 memptr; /* posix_memalign: where the result goes */
	__u64 p;      /* sampling probability (q32) when sampled, else 0 */
	__u64 sp;     /* stack pointer at the outermost entry */
	__u32 depth;
	__u32 fn;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending_call);
} pending SEC(".maps");

/* The code of every probed function (runtime [start, end)): an allocator call whose return
 * address lies in one is made by another allocator call, which is the one that counts. */
const volatile __u64 range_start[PMS_MAX_RANGES] = {};
const volatile __u64 range_end[PMS_MAX_RANGES] = {};
const volatile __u32 nranges = 0;

extern bool bpf_session_is_return(void) __ksym __weak;

/* Sampled allocations still alive: address -> 1. Sized by user space (--max-live). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} live SEC(".maps");

/* n * size, or ~0 when it may overflow (the call then fails: nothing to count, nothing freed),
 * without a 128-bit multiply. */
#define SIZE_OVERFLOW (~0ULL)
static __always_inline __u64 array_size(__u64 n, __u64 size)
{
	if (n <= 1 || size <= 1)
		return n * size;
	return (n >> 32) || (size >> 32) ? SIZE_OVERFLOW : n * size;
}

/* The last allocator entry on this CPU. The next entry from the same thread, with the same stack
 * pointer and size but of another kind, is a tail call of it (glibc's realloc(NULL, n) jumps to
 * malloc(n), reallocarray to realloc, memalign to malloc; pymalloc's realloc(NULL) to its
 * malloc), which the return address cannot tell from a call of the program's. It takes the same
 * coin, so that the allocation is sampled with probability p once, not twice. (Calls of one
 * function in a loop from one frame look alike but for that: each draws its own coin.) */
struct entry_slot {
	__u64 sp;
	__u64 size;
	__u32 tid;
	__u32 func; /* which probed function (not its kind: pymalloc's realloc jumps to the raw
		     * realloc, a realloc too) */
	__u32 coin;
	__u32 pad;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct entry_slot);
} last_entry SEC(".maps");

static __always_inline __u32 shared_coin(__u32 tid, __u64 sp, __u32 func, __u64 size)
{
	__u32 zero = 0;
	struct entry_slot *e = bpf_map_lookup_elem(&last_entry, &zero);

	if (!e)
		return bpf_get_prandom_u32();
	if (e->tid == tid && e->sp == sp && e->size == size && e->func != func) {
		e->func = func; /* a chain of them (reallocarray, realloc, malloc) keeps the coin */
		return e->coin;
	}
	e->tid = tid;
	e->sp = sp;
	e->size = size;
	e->func = func;
	e->coin = bpf_get_prandom_u32();
	return e->coin;
}

static __always_inline void forget_entry(void)
{
	__u32 zero = 0;
	struct entry_slot *e = bpf_map_lookup_elem(&last_entry, &zero);

	if (e)
		e->tid = 0;
}

static __always_inline void freed(__u64 addr)
{
	struct pms_event *ev;

	if (bpf_map_delete_elem(&live, &addr) != 0)
		return;
	count(PMS_CNT_FREES_MATCHED);
	ev = new_event(PMS_EV_FREE, (__u32)bpf_get_current_pid_tgid());
	if (!ev)
		return;
	ev->addr = addr;
	send(ev);
}

static __always_inline int enter(struct pt_regs *ctx, __u32 fn, __u64 size, __u64 old, __u64 memptr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pending_call *st;
	__u64 sp = PT_REGS_SP(ctx), p;

	if (!is_target())
		return 0;
	count(PMS_CNT_ALLOC_CALLS);
	if (size == SIZE_OVERFLOW)
		return 0; /* fails with ENOMEM: nothing allocated, nothing freed */
	st = bpf_task_storage_get(&pending, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	if (st->depth && sp < st->sp) {
		/* called by the allocator call in progress: that one counts, not this one */
		st->depth++;
		count(PMS_CNT_NESTED);
		return 0;
	}
	/* realloc: the old block is gone once it returns; dropping it now, while it is still
	 * ours, keeps another thread's new block at that address from being taken for it (only a
	 * realloc that fails is then wrong: its block counts as freed) */
	if (old)
		freed(old);
	st->depth = 1;
	st->sp = sp;
	st->fn = fn;
	st->size = size;
	st->memptr = memptr;
	p = pms_sample_p_q32(size, cfg.rate);
	st->p = p && (p >= PMS_P_ONE || bpf_get_prandom_u32() < p) ? p : 0;
	return 0;
}

static __always_inline void sampled(__u64 addr, __u64 size, __u64 p, __u32 fn)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pms_event *ev;
	__u8 one = 1;

	count(PMS_CNT_ALLOC_SAMPLES);
	ev = new_event(PMS_EV_ALLOC, tid);
	if (!ev)
		return;
	/* a stale entry (a free we did not see) is replaced: user space sees the address again */
	if (bpf_map_update_elem(&live, &addr, &one, BPF_ANY) != 0) {
		count(PMS_CNT_LIVE_FULL);
		ev->flags |= PMS_EVF_UNTRACKED;
	}
	ev->addr = addr;
	ev->len = size;
	ev->p_q32 = p;
	ev->bytes = (__s64)size;
	ev->cause = fn;
	walk_or_mark(ev, tid, find_tstate(tid));
	send(ev);
}

static __always_inline int free_enter(__u64 addr)
{
	if (!is_target())
		return 0;
	forget_entry();
	count(PMS_CNT_FREE_CALLS);
	if (addr)
		freed(addr);
	return 0;
}

static __always_inline int on_return(struct pt_regs *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pending_call *st;
	__u64 ret = PT_REGS_RC(ctx), addr = ret;

	if (!is_target())
		return 0;
	st = bpf_task_storage_get(&pending, task, 0, 0);
	if (!st || !st->depth)
		return 0;
	if (--st->depth)
		return 0;
	if (st->fn == PMS_FN_POSIX_MEMALIGN) {
		addr = 0;
		if ((__s32)ret != 0 || !st->memptr ||
		    bpf_probe_read_user(&addr, sizeof(addr), (const void *)st->memptr) != 0)
			return 0;
	}
	if (st->p && addr)
		sampled(addr, st->size, st->p, st->fn);
	return 0;
}

SEC("uretprobe")
int pms_alloc_return(struct pt_regs *ctx)
{
	return on_return(ctx);
}

/* What an allocator call asks for, from its kind (the cookie's low bits) and arguments. */
struct call {
	__u64 size;   /* bytes asked; SIZE_OVERFLOW when n * size overflows */
	__u64 old;    /* realloc: the block it resizes */
	__u64 memptr; /* posix_memalign: where the result goes */
	__u64 freed;  /* free: the block */
	bool is_free;
	bool skip; /* counted by the probed function it tail-calls */
};

static __always_inline void decode_call(struct pt_regs *ctx, __u64 cookie, struct call *c)
{
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx);

	__builtin_memset(c, 0, sizeof(*c));
	switch (cookie & PMS_COOKIE_FN_MASK) {
	case PMS_FN_MALLOC:
	case PMS_FN_VALLOC:
		c->size = a1;
		break;
	case PMS_FN_CALLOC:
		c->size = array_size(a1, a2);
		break;
	case PMS_FN_REALLOC:
		c->size = a2;
		c->old = a1;
		break;
	case PMS_FN_REALLOCARRAY:
		c->size = array_size(a2, a3);
		c->old = a1;
		break;
	case PMS_FN_POSIX_MEMALIGN:
		c->size = a3;
		c->memptr = a1;
		break;
	case PMS_FN_ALIGNED:
		c->size = a2;
		break;
	case PMS_FN_FREE:
		c->is_free = true;
		c->freed = a1;
		break;
	/* CPython's allocator table functions take the table's ctx first */
	case PMS_FN_PY_MALLOC:
		c->size = a2;
		break;
	case PMS_FN_PY_CALLOC:
		c->size = array_size(a2, a3);
		break;
	case PMS_FN_PY_REALLOC:
		c->size = a3;
		c->old = a2;
		/* the probed malloc it jumps to counts this allocation */
		c->skip = !a2 && (cookie & PMS_COOKIE_NULL_DELEGATES);
		break;
	case PMS_FN_PY_FREE:
		c->is_free = true;
		c->freed = a2;
		break;
	default:
		c->skip = true;
	}
}

/* Calls per probed function (the cookie's index): the trap of each costs the target up to 30
 * times more or less depending on the instruction its probe sits on, so user space prices each
 * function's calls on its own to predict the overhead. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PMS_MAX_PROBES);
	__type(key, __u32);
	__type(value, __u64);
} probe_calls SEC(".maps");

static __always_inline void count_probe(__u64 cookie)
{
	__u32 i = (__u32)(cookie >> PMS_COOKIE_FUNC_SHIFT) - 1;
	__u64 *c;

	if (i >= PMS_MAX_PROBES || !is_target())
		return;
	c = bpf_map_lookup_elem(&probe_calls, &i);
	if (c)
		(*c)++;
}

/* One entry program for every probed function: the attach cookie says which kind it is, so
 * that all entries fit in one uprobe_multi link (one RCU grace period to detach, not one per
 * function). */
SEC("uprobe")
int pms_alloc_enter(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	struct call c;

	count_probe(cookie);
	decode_call(ctx, cookie, &c);
	if (c.is_free)
		return free_enter(c.freed);
	if (c.skip)
		return 0;
	return enter(ctx, cookie & PMS_COOKIE_FN_MASK, c.size, c.old, c.memptr);
}

/* ---- session mode (Linux 6.13+): the return probe only for the calls that need it ----
 *
 * A session program runs at the entry and, unless the entry returned 1, at the return of the
 * same call; returning 1 also spares the kernel hijacking the return address, which is most of
 * a return probe's cost. So only sampled calls (and reallocs of a followed block) pay for a
 * return. Nesting is told by the return address instead of a depth (an unsampled outer call has
 * no return to bring a depth back down): a call from inside a probed function does not count. */

static __always_inline bool nested_call(struct pt_regs *ctx)
{
	__u64 ret_addr = 0;

	if (bpf_probe_read_user(&ret_addr, sizeof(ret_addr), (const void *)PT_REGS_SP(ctx)))
		return false;
	for (__u32 i = 0; i < PMS_MAX_RANGES && i < nranges; i++)
		if (ret_addr >= range_start[i] && ret_addr < range_end[i])
			return true;
	return false;
}

static __always_inline int session_enter(struct pt_regs *ctx, __u64 cookie, __u64 size, __u64 old,
					 __u64 memptr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u32 fn = cookie & PMS_COOKIE_FN_MASK;
	struct pending_call *st;
	__u64 p;

	if (!is_target())
		return 1;
	count(PMS_CNT_ALLOC_CALLS);
	if (size == SIZE_OVERFLOW)
		return 1; /* fails with ENOMEM: nothing allocated, nothing freed */
	/* realloc: see enter() */
	if (old)
		freed(old);
	p = pms_sample_p_q32(size, cfg.rate);
	if (!p || (p < PMS_P_ONE &&
		   shared_coin(tid, PT_REGS_SP(ctx), cookie >> PMS_COOKIE_FUNC_SHIFT, size) >= p))
		return 1;
	if (nested_call(ctx)) {
		count(PMS_CNT_NESTED);
		return 1;
	}
	st = bpf_task_storage_get(&pending, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		return 1;
	st->fn = fn;
	st->size = size;
	st->memptr = memptr;
	st->p = p;
	st->depth = 1;
	return 0;
}

SEC("uprobe")
int pms_alloc_session(struct pt_regs *ctx)
{
	__u64 cookie;
	struct call c;

	if (bpf_session_is_return())
		return on_return(ctx);
	cookie = bpf_get_attach_cookie(ctx);
	count_probe(cookie);
	decode_call(ctx, cookie, &c);
	if (c.is_free) {
		free_enter(c.freed);
		return 1;
	}
	if (c.skip)
		return 1;
	return session_enter(ctx, cookie, c.size, c.old, c.memptr);
}
