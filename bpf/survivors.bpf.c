/* The survivors source, kernel side: a hardware watchpoint (a perf breakpoint event per target
 * thread) sits on the word an allocation will write first: block+8 of the head of a pymalloc
 * free list. The first write to it comes from the thread that allocates the block, inside the
 * allocation, so its Python stack is the allocating one. User space arms one word at a time,
 * and decides later which sampled blocks survived (src/survivors.c).
 *
 * The ring buffer, counters, thread-state cache and stack cache are the growth programs' own
 * (user space hands their fds over before loading): one stream of events. */
#include "pywalk.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pms_watch_arm);
} arm SEC(".maps");

SEC("perf_event")
int pms_watch_hit(struct bpf_perf_event_data *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), zero = 0;
	struct pms_watch_arm *a;
	struct pms_event *ev;
	__u64 addr = ctx->addr, gen, value = 0, tstate;

	if (!is_target())
		return 0;
	count(PMS_CNT_WATCH_TRAPS);
	a = bpf_map_lookup_elem(&arm, &zero);
	if (!a || !addr || a->addr != addr)
		return 0; /* a stale watch: user space is moving it elsewhere */
	gen = a->gen;
	/* one sample per arm, even when two threads trap at once */
	if (!__sync_bool_compare_and_swap(&a->addr, addr, 0))
		return 0;
	count(PMS_CNT_WATCH_HITS);
	ev = new_event(PMS_EV_WATCH, tid);
	if (!ev)
		return 0;
	bpf_probe_read_user(&value, sizeof(value), (const void *)addr);
	ev->addr = addr;
	ev->addr2 = gen;
	ev->len = value;
	tstate = find_tstate(tid);
	if (tstate) {
		count(PMS_CNT_SAMPLES);
		walk_python(ev, tid, tstate);
	} else {
		ev->flags |= PMS_EVF_NO_TSTATE;
		count(PMS_CNT_NO_TSTATE);
	}
	send(ev);
	return 0;
}
