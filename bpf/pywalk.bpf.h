/* Kernel-side code every event source shares (included by each program file): the ring buffer,
 * the counters, finding the current thread's PyThreadState, walking its Python frames, and
 * sending events with their stacks deduplicated. Each program file has its own copy of the maps
 * (one skeleton per event source). */
#ifndef PMS_PYWALK_BPF_H
#define PMS_PYWALK_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "pymemspy.h"

const volatile struct pms_config cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PMS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Thread id -> thread state, so the thread list is searched once per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} tstates SEC(".maps");

/* Stacks already sent to user space (by hash): later events carry only the hash. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} seen_stacks SEC(".maps");

/* Where an event is built (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pms_event);
} scratch SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &which);

	if (c)
		*c += 1;
}

static __always_inline bool is_target(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == cfg.tgid;
}

static __always_inline __u64 read_ptr(__u64 addr, bool *ok)
{
	__u64 v = 0;

	if (bpf_probe_read_user(&v, sizeof(v), (const void *)addr) != 0) {
		*ok = false;
		count(PMS_CNT_READ_ERRORS);
	}
	return v;
}

/* ---- finding the current thread's PyThreadState ---- */

struct tstate_search {
	__u64 tstate; /* the candidate being looked at */
	__u64 found;
	__u64 fsbase;
	__u32 tid;
	bool ok;
};

static long match_tstate(__u64 index, void *data)
{
	struct tstate_search *s = data;
	__u64 id = 0;

	if (!s->tstate)
		return 1;
	if (cfg.py.tstate_native_thread_id >= 0) {
		__s32 native = 0;

		if (bpf_probe_read_user(&native, sizeof(native),
					(const void *)(s->tstate + cfg.py.tstate_native_thread_id)))
			return 1;
		if ((__u32)native == s->tid) {
			s->found = s->tstate;
			return 1;
		}
	} else {
		if (bpf_probe_read_user(&id, sizeof(id),
					(const void *)(s->tstate + cfg.py.tstate_thread_id)))
			return 1;
		if (id == s->fsbase) {
			s->found = s->tstate;
			return 1;
		}
	}
	s->tstate = read_ptr(s->tstate + cfg.py.tstate_next, &s->ok);
	return 0;
}

static __always_inline bool tstate_matches(__u64 ts, __u32 tid, __u64 fsbase)
{
	if (cfg.py.tstate_native_thread_id >= 0) {
		__s32 native = 0;

		return bpf_probe_read_user(&native, sizeof(native),
					   (const void *)(ts + cfg.py.tstate_native_thread_id)) ==
			   0 &&
		       (__u32)native == tid;
	} else {
		__u64 id = 0;

		return bpf_probe_read_user(&id, sizeof(id),
					   (const void *)(ts + cfg.py.tstate_thread_id)) == 0 &&
		       id == fsbase;
	}
}

static __always_inline __u64 find_tstate(__u32 tid)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 fsbase = BPF_CORE_READ(task, thread.fsbase);
	struct tstate_search s = {.tid = tid, .fsbase = fsbase, .ok = true};
	__u64 *cached = bpf_map_lookup_elem(&tstates, &tid);
	__u64 interp;

	/* re-checked every time: thread states are freed and their memory reused */
	if (cached && *cached && tstate_matches(*cached, tid, fsbase))
		return *cached;
	interp = read_ptr(cfg.py.runtime + cfg.py.runtime_interpreters_head, &s.ok);
	for (int i = 0; i < PMS_MAX_INTERPRETERS && interp; i++) {
		s.tstate = read_ptr(interp + cfg.py.interp_threads_head, &s.ok);
		bpf_loop(PMS_MAX_THREADS, match_tstate, &s, 0);
		if (s.found) {
			bpf_map_update_elem(&tstates, &tid, &s.found, BPF_ANY);
			return s.found;
		}
		interp = read_ptr(interp + cfg.py.interp_next, &s.ok);
	}
	return 0;
}

/* ---- walking the frames ---- */

struct frame_walk {
	struct pms_event *ev;
	__u64 frame;
	__u64 hash;
	__u32 n;
	bool truncated;
};

static long walk_frame(__u64 index, void *data)
{
	struct frame_walk *w = data;
	__u64 code = 0, next = 0;
	__s32 offset = -1;
	__u8 owner = 0;

	if (!w->frame)
		return 1;
	if (w->n >= cfg.max_depth || w->n >= PMS_MAX_DEPTH) {
		w->truncated = true;
		return 1;
	}
	if (bpf_probe_read_user(&next, sizeof(next),
				(const void *)(w->frame + cfg.py.frame_previous)) ||
	    bpf_probe_read_user(&code, sizeof(code),
				(const void *)(w->frame + cfg.py.frame_code))) {
		count(PMS_CNT_READ_ERRORS);
		w->truncated = true;
		return 1;
	}
	code &= ~(__u64)cfg.py.executable_tag_mask;
	if (cfg.py.frame_owner >= 0)
		bpf_probe_read_user(&owner, sizeof(owner),
				    (const void *)(w->frame + cfg.py.frame_owner));
	if (cfg.py.frame_model == 1) {
		__s32 lasti = -1;

		bpf_probe_read_user(&lasti, sizeof(lasti),
				    (const void *)(w->frame + cfg.py.frame_lasti));
		offset = lasti < 0 ? -1 : (cfg.py.lasti_in_bytes ? lasti : lasti * 2);
	} else {
		__u64 instr = 0;
		__s64 delta;

		bpf_probe_read_user(&instr, sizeof(instr),
				    (const void *)(w->frame + cfg.py.frame_instr_ptr));
		delta = (__s64)(instr - (code + cfg.py.code_code_adaptive));
		offset = delta >= 0 && delta < (1 << 30) ? (__s32)delta : -1;
	}
	w->frame = next;
	/* entry and shim frames of the interpreter itself carry no Python code */
	if ((cfg.py.owner_skip_from && owner >= cfg.py.owner_skip_from) || !code)
		return 0;
	w->ev->frames[w->n & (PMS_MAX_DEPTH - 1)].code = code;
	w->ev->frames[w->n & (PMS_MAX_DEPTH - 1)].offset = offset;
	w->hash = (w->hash ^ code) * 0x100000001b3ULL;
	w->hash = (w->hash ^ (__u64)(__u32)offset) * 0x100000001b3ULL;
	w->n++;
	return 0;
}

static __always_inline __u64 first_frame(__u64 tstate, bool *ok)
{
	if (cfg.py.frame_model == 1)
		return read_ptr(tstate + cfg.py.tstate_frame, ok);
	if (cfg.py.frame_model == 2) {
		__u64 cframe = read_ptr(tstate + cfg.py.tstate_cframe, ok);

		return cframe ? read_ptr(cframe + cfg.py.cframe_current_frame, ok) : 0;
	}
	return read_ptr(tstate + cfg.py.tstate_current_frame, ok);
}

/* Fills ev->frames and ev->stack_id with the Python stack of the current thread. */
static __always_inline void walk_python(struct pms_event *ev, __u32 tid, __u64 tstate)
{
	struct frame_walk w = {.ev = ev, .hash = 0xcbf29ce484222325ULL};
	bool ok = true;
	__u8 one = 1;

	ev->nframes = 0;
	ev->stack_id = 0;
	w.frame = first_frame(tstate, &ok);
	/* twice the depth: skipped shim frames take turns too, and a cycle still ends */
	bpf_loop(2 * PMS_MAX_DEPTH, walk_frame, &w, 0);
	if (w.frame && !w.truncated && w.n >= cfg.max_depth)
		w.truncated = true;
	if (w.truncated || !ok) {
		ev->flags |= PMS_EVF_TRUNCATED;
		count(PMS_CNT_TRUNCATED);
	}
	ev->nframes = w.n;
	ev->stack_id = w.n ? (w.hash ? w.hash : 1) : 0;
	if (ev->stack_id &&
	    bpf_map_update_elem(&seen_stacks, &ev->stack_id, &one, BPF_NOEXIST) == 0)
		ev->flags |= PMS_EVF_STACK_INLINE;
}

/* Walks the Python stack of thread tid (its thread state, or 0 when it has none) into ev, or
 * marks ev as coming from a thread without one; counts either. */
static __always_inline void walk_or_mark(struct pms_event *ev, __u32 tid, __u64 tstate)
{
	if (tstate) {
		count(PMS_CNT_SAMPLES);
		walk_python(ev, tid, tstate);
	} else {
		ev->flags |= PMS_EVF_NO_TSTATE;
		count(PMS_CNT_NO_TSTATE);
	}
}

static __always_inline void send(struct pms_event *ev)
{
	__u32 n = ev->flags & PMS_EVF_STACK_INLINE ? ev->nframes : 0;
	__u64 size, flags;

	if (n > PMS_MAX_DEPTH)
		n = PMS_MAX_DEPTH;
	size = PMS_EVENT_SIZE(n);
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	/* no wakeup per event: waking the reader costs the target's CPU, and user space drains
	 * the buffer every 100 ms anyway; only a filling buffer wakes it early */
	flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > (1 << 20) ? BPF_RB_FORCE_WAKEUP
									  : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, ev, size, flags) != 0) {
		count(PMS_CNT_RINGBUF_FULL);
		/* user space never saw this stack: let the next event carry it */
		if (ev->flags & PMS_EVF_STACK_INLINE)
			bpf_map_delete_elem(&seen_stacks, &ev->stack_id);
	}
}

static __always_inline struct pms_event *new_event(__u16 kind, __u32 tid)
{
	__u32 zero = 0;
	struct pms_event *ev = bpf_map_lookup_elem(&scratch, &zero);

	if (!ev)
		return NULL;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->addr = 0;
	ev->len = 0;
	ev->extra = 0;
	ev->bytes = 0;
	ev->stack_id = 0;
	ev->tid = tid;
	ev->kind = kind;
	ev->member = 0;
	ev->flags = 0;
	ev->nframes = 0;
	ev->cause = 0;
	return ev;
}

#endif
