// SPDX-License-Identifier: GPL-2.0
/* The growth event source: resident memory the target gains, charged to the Python stack of the
 * thread that gains it, and the ranges it releases.
 *
 * kmem:rss_stat reports the exact RSS counter after every change of it, so the difference from
 * the previous value is what the change really added: a THP fault adds 2 MiB, a copy-on-write
 * or a read-then-write fault adds nothing. The page fault tracepoints only remember the address
 * being faulted, so that growth can later be taken back when that range is released.
 * Releases come from the tracepoints of the four syscalls that release memory (munmap, madvise,
 * brk, mremap). fexit programs would spare the host's other tasks the slow syscall path, but
 * they need ftrace function entries, which kernels without them (like this project's CI) lack. */
#include "pywalk.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define MM_SWAPENTS	     2
#define USER_ADDR_MAX	     0x00007fffffffffffULL
#define MADV_DONTNEED	     4
#define MADV_FREE	     8
#define MADV_REMOVE	     9
#define MADV_DONTNEED_LOCKED 24

/* The last value of each RSS counter of the target, to turn rss_stat's totals into changes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __s64);
} rss_last SEC(".maps");

/* The address each thread of the target is faulting right now. */
struct pending_fault {
	__u64 addr;
	__u64 kernel;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pending_fault);
} faults SEC(".maps");

/* The budget, in 100 ms windows per thread: a thread's window samples its growth events 1 in
 * 2^shift, the shift chosen from how many events that thread's previous window saw, and charges
 * a sampled one 2^shift times its bytes, so that estimates stay unbiased (Horvitz-Thompson)
 * while walks stay bounded. Per thread, so that a thread growing slowly beside one growing fast
 * keeps every one of its samples: sampled 1 in 2^k with the fast one, a 10 KB/s leak next to
 * 50 MB/s of churn got two samples in 30 s. A process-wide window bounds the total. */
struct budget_window {
	__u64 start_ns;
	__u64 events;
	__u64 walks;
	__u64 shift;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct budget_window);
} thread_budget SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct budget_window);
} budget SEC(".maps");

/* brk of the target, to tell a shrinking brk from a growing one. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} last_brk SEC(".maps");

/* ---- the budget ---- */

/* The sampling shift for a growth event of thread tid (its weight is 1 << shift), or -1 when
 * it is not sampled. */
static __always_inline int budget_sample(__u64 now, __u32 tid)
{
	__u64 per_window = cfg.budget_per_sec / 10 + 1, events, shift = 0;
	struct budget_window *b, *t, fresh = {.start_ns = now};
	__u32 zero = 0;

	if (!cfg.budget_per_sec)
		return 0;
	t = bpf_map_lookup_elem(&thread_budget, &tid);
	if (!t) {
		bpf_map_update_elem(&thread_budget, &tid, &fresh, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&thread_budget, &tid);
	}
	b = bpf_map_lookup_elem(&budget, &zero);
	if (!t || !b)
		return 0;
	if (now - t->start_ns > 100000000ULL) {
		events = t->events;
		while (shift < 20 && (events >> shift) > per_window)
			shift++;
		t->shift = shift;
		t->start_ns = now;
		t->events = 0;
	}
	t->events++; /* a thread runs on one CPU at a time */
	shift = t->shift & 31;
	if (shift && (bpf_get_prandom_u32() & ((1U << shift) - 1)))
		return -1;
	if (now - b->start_ns > 100000000ULL) {
		b->start_ns = now;
		b->walks = 0;
	}
	/* a burst far beyond what the last windows predicted, or many threads at once: drop, and
	 * say so */
	if (__sync_fetch_and_add(&b->walks, 1) >= 4 * per_window) {
		count(PMS_CNT_BUDGET_OVERFLOW);
		return -1;
	}
	return (int)shift;
}

/* ---- programs ---- */

/* The tracepoint records, as their tracefs format files give them (not CO-RE on purpose: the
 * kernel renamed the exceptions struct, and CO-RE on a missing type needs CAP_SYS_ADMIN). */
struct page_fault_record {
	__u64 common;
	__u64 address;
	__u64 ip;
	__u64 error_code;
};

struct rss_stat_record {
	__u64 common;
	__u32 mm_id;
	__u32 curr;
	__s32 member;
	__u32 pad;
	__s64 size;
};

static __always_inline int remember_fault(__u64 address, __u64 kernel)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_fault f = {.addr = address, .kernel = kernel};

	if (!is_target() || address > USER_ADDR_MAX)
		return 0;
	count(PMS_CNT_FAULTS);
	bpf_map_update_elem(&faults, &tid, &f, BPF_ANY);
	return 0;
}

SEC("tp/exceptions/page_fault_user")
int pms_fault_user(struct page_fault_record *ctx)
{
	return remember_fault(ctx->address, 0);
}

SEC("tp/exceptions/page_fault_kernel")
int pms_fault_kernel(struct page_fault_record *ctx)
{
	return remember_fault(ctx->address, 1);
}

SEC("tp/kmem/rss_stat")
int pms_rss_stat(struct rss_stat_record *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), member = (__u32)ctx->member;
	struct pending_fault *f;
	struct pms_event *ev;
	__s64 *last, old, delta;
	__u64 now, tstate;
	int shift;

	/* only changes the target makes itself: not reclaim, not our own remote reads */
	if (!ctx->curr || !is_target() || member >= 4 || member == MM_SWAPENTS)
		return 0;
	last = bpf_map_lookup_elem(&rss_last, &member);
	if (!last)
		return 0;
	old = __sync_lock_test_and_set(last, ctx->size);
	if (old == 0)
		return 0; /* the first value we see is the baseline */
	delta = ctx->size - old;
	if (delta == 0)
		return 0;
	count(PMS_CNT_RSS_EVENTS);
	now = bpf_ktime_get_ns();
	if (delta < 0) {
		count(PMS_CNT_SHRINK);
		ev = new_event(PMS_EV_SHRINK, tid);
		if (!ev)
			return 0;
		ev->bytes = delta;
		ev->member = (__u8)member;
		send(ev);
		return 0;
	}
	count(PMS_CNT_GROWTH);
	tstate = find_tstate(tid);
	/* no Python thread state: nothing to walk, so no budget to spend */
	if (tstate) {
		shift = budget_sample(now, tid);
		if (shift < 0) {
			count(PMS_CNT_BUDGET_SKIPPED);
			return 0;
		}
		delta <<= shift;
	}
	ev = new_event(PMS_EV_GROWTH, tid);
	if (!ev)
		return 0;
	ev->bytes = delta;
	ev->member = (__u8)member;
	f = bpf_map_lookup_elem(&faults, &tid);
	if (f && f->addr) {
		ev->addr = f->addr;
		if (f->kernel)
			ev->flags |= PMS_EVF_KERNEL_FAULT;
	} else {
		ev->flags |= PMS_EVF_NO_FAULT;
	}
	walk_or_mark(ev, tid, tstate);
	send(ev);
	return 0;
}

static __always_inline int released(__u64 addr, __u64 len, __u32 cause)
{
	struct pms_event *ev;

	if (!len)
		return 0;
	ev = new_event(PMS_EV_RELEASE, (__u32)bpf_get_current_pid_tgid());
	if (!ev)
		return 0;
	count(PMS_CNT_RELEASES);
	ev->addr = addr;
	ev->len = len;
	ev->cause = cause;
	send(ev);
	return 0;
}

static __always_inline int moved(__u64 from, __u64 to, __u64 len)
{
	struct pms_event *ev;

	if (!len)
		return 0;
	ev = new_event(PMS_EV_MOVE, (__u32)bpf_get_current_pid_tgid());
	if (!ev)
		return 0;
	ev->addr = from;
	ev->new_addr = to;
	ev->len = len;
	ev->cause = PMS_REL_MREMAP;
	send(ev);
	return 0;
}

/* Syscall tracepoints: enter remembers the arguments, exit emits the range when it succeeded. */
struct syscall_enter_record {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

struct syscall_exit_record {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

struct pending_syscall {
	__u64 args[3];
	__u32 cause;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pending_syscall);
} syscalls SEC(".maps");

/* Each program reads only the arguments its syscall has: reading past the end of a
 * tracepoint's record makes the kernel refuse to attach the program. */
static __always_inline int syscall_enter(__u64 a0, __u64 a1, __u64 a2, __u32 cause)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_syscall s = {
	    .args = {a0, a1, a2},
	    .cause = cause,
	};

	if (!is_target())
		return 0;
	bpf_map_update_elem(&syscalls, &tid, &s, BPF_ANY);
	return 0;
}

static __always_inline int syscall_exit(struct syscall_exit_record *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), zero = 0;
	struct pending_syscall *s;
	__u64 *last, old, a0, a1, a2;
	__s64 ret = ctx->ret;
	__u32 cause;

	if (!is_target())
		return 0;
	s = bpf_map_lookup_elem(&syscalls, &tid);
	if (!s)
		return 0;
	a0 = s->args[0];
	a1 = s->args[1];
	a2 = s->args[2];
	cause = s->cause;
	bpf_map_delete_elem(&syscalls, &tid);
	switch (cause) {
	case PMS_REL_MUNMAP:
		return ret == 0 ? released(a0, a1, cause) : 0;
	case PMS_REL_MADVISE:
		if (ret != 0 || (a2 != MADV_DONTNEED && a2 != MADV_FREE && a2 != MADV_REMOVE &&
				 a2 != MADV_DONTNEED_LOCKED))
			return 0;
		return released(a0, a1, cause);
	case PMS_REL_BRK:
		last = bpf_map_lookup_elem(&last_brk, &zero);
		if (!last || ret <= 0)
			return 0;
		old = __sync_lock_test_and_set(last, (__u64)ret);
		return old && (__u64)ret < old ? released((__u64)ret, old - (__u64)ret, cause) : 0;
	case PMS_REL_MREMAP:
		if (ret < 0)
			return 0;
		/* shrunk: the tail is gone; moved: the pages live on at the new address */
		if (a2 < a1)
			released(a0 + a2, a1 - a2, cause);
		return (__u64)ret != a0 ? moved(a0, (__u64)ret, a2 < a1 ? a2 : a1) : 0;
	}
	return 0;
}

SEC("tp/syscalls/sys_enter_munmap")
int pms_enter_munmap(struct syscall_enter_record *ctx)
{
	return syscall_enter(ctx->args[0], ctx->args[1], 0, PMS_REL_MUNMAP);
}

SEC("tp/syscalls/sys_enter_madvise")
int pms_enter_madvise(struct syscall_enter_record *ctx)
{
	return syscall_enter(ctx->args[0], ctx->args[1], ctx->args[2], PMS_REL_MADVISE);
}

SEC("tp/syscalls/sys_enter_brk")
int pms_enter_brk(struct syscall_enter_record *ctx)
{
	return syscall_enter(ctx->args[0], 0, 0, PMS_REL_BRK);
}

SEC("tp/syscalls/sys_enter_mremap")
int pms_enter_mremap(struct syscall_enter_record *ctx)
{
	return syscall_enter(ctx->args[0], ctx->args[1], ctx->args[2], PMS_REL_MREMAP);
}

SEC("tp/syscalls/sys_exit_munmap")
int pms_exit_munmap(struct syscall_exit_record *ctx)
{
	return syscall_exit(ctx);
}

SEC("tp/syscalls/sys_exit_madvise")
int pms_exit_madvise(struct syscall_exit_record *ctx)
{
	return syscall_exit(ctx);
}

SEC("tp/syscalls/sys_exit_brk")
int pms_exit_brk(struct syscall_exit_record *ctx)
{
	return syscall_exit(ctx);
}

SEC("tp/syscalls/sys_exit_mremap")
int pms_exit_mremap(struct syscall_exit_record *ctx)
{
	return syscall_exit(ctx);
}
