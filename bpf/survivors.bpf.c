/* The survivors source, kernel side: hardware watchpoints (a perf breakpoint event per target
 * thread and slot) sit on the word an allocation writes first: block+8 of the block the next
 * pymalloc allocation of a size class takes. That first write comes from the allocating thread,
 * inside the allocation, so its Python stack is the allocating one: the sample. The watch then
 * stays on the word, and the writes that only the object's death makes mark the sample dead
 * (src/survivors.c decides the rest, doc/survivors.md says why these writes):
 *   - an object that is not tracked by the GC has its type there: any later write is a new
 *     allocation of the block;
 *   - a GC-tracked object has the GC's prev link there, rewritten by collections; its
 *     deallocation untracks it (writes 0), and a new allocation writes 0 or a type. Each
 *     collection would trap, so once the object is set up user space moves the watch to its
 *     type word (state FOLLOW), which only a new allocation of the block writes;
 *   - under the debug hooks (debug builds) the word is their header (the API byte and guard
 *     bytes), which their free overwrites with 0xdd bytes.
 *
 * The ring buffer, counters, thread-state cache and stack cache are the growth programs' own
 * (user space hands their fds over before loading): one stream of events. */
#include "pywalk.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Writes of 0 this soon after the allocation are its own set-up (a pre-header, the GC head). */
#define SETUP_GRACE_NS 20000

/* Mapped into the arming thread's memory: it reads and writes the slots without system calls. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, PMS_WATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct pms_watch_arm);
} arm SEC(".maps");

/* The arms whose object died, for the arming thread (which sleeps on it). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} deaths SEC(".maps");

static __always_inline bool is_type_object(__u64 v)
{
	__u64 t = 0;

	if (!v || bpf_probe_read_user(&t, sizeof(t), (const void *)(v + 8)) != 0)
		return false;
	return t == cfg.type_type;
}

static __always_inline void sample(struct pms_watch_arm *a, __u64 addr, __u64 value, __u64 now)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pms_event *ev;

	a->value = value;
	a->hit_ns = now;
	count(PMS_CNT_WATCH_HITS);
	ev = new_event(PMS_EV_WATCH, tid);
	if (!ev)
		return;
	ev->ts_ns = now;
	ev->addr = addr;
	ev->gen = a->gen;
	ev->len = value;
	walk_or_mark(ev, tid, find_tstate(tid));
	send(ev);
}

SEC("perf_event")
int pms_watch_hit(struct bpf_perf_event_data *ctx)
{
	__u64 addr = ctx->addr, value = 0, now;
	struct pms_watch_arm *a = NULL;

	if (!is_target() || !addr)
		return 0;
	count(PMS_CNT_WATCH_TRAPS);
	for (__u32 k = 0; k < PMS_WATCH_SLOTS; k++) {
		struct pms_watch_arm *s = bpf_map_lookup_elem(&arm, &k);

		if (s && s->addr == addr) {
			a = s;
			break;
		}
	}
	if (!a)
		return 0; /* a watch user space is moving elsewhere */
	now = bpf_ktime_get_ns();
	bpf_probe_read_user(&value, sizeof(value), (const void *)addr);
	if (a->state == PMS_WATCH_ARMED) {
		/* one sample per arm, even when two threads trap at once */
		if (__sync_bool_compare_and_swap(&a->state, PMS_WATCH_ARMED, PMS_WATCH_HIT))
			sample(a, addr, value, now);
		return 0;
	}
	if (a->state == PMS_WATCH_FOLLOW) {
		count(PMS_CNT_WATCH_FOLLOWING);
		if (__sync_bool_compare_and_swap(&a->state, PMS_WATCH_FOLLOW, PMS_WATCH_DIED))
			bpf_ringbuf_output(&deaths, &a->gen, sizeof(a->gen), BPF_RB_FORCE_WAKEUP);
		return 0;
	}
	if (a->state != PMS_WATCH_HIT)
		return 0;
	count(PMS_CNT_WATCH_FOLLOWING);
	/* the debug hooks rewrite their header (byte by byte, and around a realloc); their free
	 * fills the block with 0xdd bytes */
	if (cfg.debug_allocator ? value != 0xddddddddddddddddULL
				: value == 0 && now - a->hit_ns <= SETUP_GRACE_NS)
		return 0; /* the allocation's own set-up (zeroing a pre-header or GC header) */
	if (cfg.debug_allocator || a->value || value == 0 || is_type_object(value)) {
		/* wake the arming thread to move the watch off a block that churn may now
		 * rewrite thousands of times a second */
		if (__sync_bool_compare_and_swap(&a->state, PMS_WATCH_HIT, PMS_WATCH_DIED))
			bpf_ringbuf_output(&deaths, &a->gen, sizeof(a->gen), BPF_RB_FORCE_WAKEUP);
	}
	return 0;
}
