/* The one header shared by the BPF programs and user space: configuration, events and counters.
 * Plain fixed-width fields only, so both compilers lay them out the same way. */
#ifndef PMS_BPF_SHARED_H
#define PMS_BPF_SHARED_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Frames carried per stack; deeper stacks are truncated (and counted). */
#define PMS_MAX_DEPTH 128
/* Bounds of the thread-state search in the kernel. */
#define PMS_MAX_INTERPRETERS 8
#define PMS_MAX_THREADS	     512

/* Where CPython keeps what the kernel walker reads (a subset of struct py_layout). */
struct pms_py_offsets {
	__u64 runtime; /* address of _PyRuntime */
	__s32 runtime_interpreters_head;
	__s32 interp_next;
	__s32 interp_threads_head;
	__s32 tstate_next;
	__s32 tstate_thread_id;	       /* pthread_t == the thread's fsbase on x86_64 glibc */
	__s32 tstate_native_thread_id; /* 3.11+, -1 before */
	__s32 tstate_frame;	       /* 3.8-3.10 */
	__s32 tstate_cframe;	       /* 3.11-3.12 */
	__s32 cframe_current_frame;    /* 3.11-3.12 */
	__s32 tstate_current_frame;    /* 3.13+ */
	__s32 frame_previous;
	__s32 frame_code;
	__s32 frame_lasti;     /* 3.8-3.10 */
	__s32 frame_instr_ptr; /* 3.11+ */
	__s32 frame_owner;     /* 3.11+ */
	__s32 code_code_adaptive;
	__u8 frame_model; /* enum py_frame_model */
	__u8 lasti_in_bytes;
	__u8 owner_skip_from;
	__u8 executable_tag_mask;
};

struct pms_config {
	__u32 tgid;	      /* the target process */
	__u32 max_depth;      /* <= PMS_MAX_DEPTH */
	__u32 budget_per_sec; /* stack walks per second before sampling starts; 0: no limit */
	__u32 pad;
	struct pms_py_offsets py;
};

enum pms_event_kind {
	PMS_EV_GROWTH = 1,  /* resident memory grew in the target's context: bytes > 0 */
	PMS_EV_SHRINK = 2,  /* resident memory shrank in the target's context: bytes < 0 */
	PMS_EV_RELEASE = 3, /* the target released [addr, addr+len): munmap, madvise, brk, mremap */
	PMS_EV_MOVE = 4,    /* mremap moved [addr, addr+len) to addr2: its pages stay resident */
};

enum pms_event_flags {
	PMS_EVF_STACK_INLINE = 1 << 0, /* frames[] follow: the first time this stack was seen */
	PMS_EVF_TRUNCATED = 1 << 1,    /* the stack was deeper than max_depth, or a read failed */
	PMS_EVF_KERNEL_FAULT = 1 << 2, /* the page was faulted in by the kernel on our behalf */
	PMS_EVF_NO_TSTATE = 1 << 3,    /* the thread has no Python thread state */
	PMS_EVF_NO_FAULT = 1 << 4,     /* growth outside a page fault: no address known */
};

/* Why a range was released (PMS_EV_RELEASE). */
enum pms_release_cause {
	PMS_REL_MUNMAP = 1,
	PMS_REL_MADVISE = 2,
	PMS_REL_BRK = 3,
	PMS_REL_MREMAP = 4,
};

struct pms_frame {
	__u64 code;   /* code object address */
	__s32 offset; /* byte offset of the instruction; -1 unknown */
	__u32 pad;
};

struct pms_event {
	__u64 ts_ns; /* bpf_ktime_get_ns() */
	__u64 addr;  /* fault address (GROWTH) or range start (RELEASE) */
	__u64 len;   /* range length (RELEASE, MOVE) */
	__u64 addr2; /* new start (MOVE) */
	__s64 bytes; /* resident bytes this event adds (or removes), weighted by the sampling (1 <<
			shift) */
	__u64 stack_id; /* hash of the frames; 0: no Python stack */
	__u32 tid;
	__u16 kind;    /* enum pms_event_kind, or the release cause in the high byte */
	__u8 member;   /* MM_FILEPAGES 0, MM_ANONPAGES 1, MM_SHMEMPAGES 3 */
	__u8 flags;    /* enum pms_event_flags */
	__u32 nframes; /* frames[] entries when PMS_EVF_STACK_INLINE */
	__u32 cause;   /* enum pms_release_cause for RELEASE */
	struct pms_frame frames[PMS_MAX_DEPTH];
};

/* Size of an event carrying n frames. */
#define PMS_EVENT_SIZE(n)                                                                          \
	(sizeof(struct pms_event) - sizeof(struct pms_frame) * (PMS_MAX_DEPTH - (n)))

enum pms_counter {
	PMS_CNT_RSS_EVENTS,	 /* rss_stat events of the target */
	PMS_CNT_GROWTH,		 /* of which grew */
	PMS_CNT_SHRINK,		 /* of which shrank */
	PMS_CNT_FAULTS,		 /* page faults of the target (user and kernel side) */
	PMS_CNT_SAMPLES,	 /* stack walks done */
	PMS_CNT_BUDGET_SKIPPED,	 /* growth events not sampled because of the budget */
	PMS_CNT_NO_TSTATE,	 /* growth in a thread without a Python thread state */
	PMS_CNT_READ_ERRORS,	 /* bpf_probe_read_user failures during walks */
	PMS_CNT_TRUNCATED,	 /* stacks cut at max_depth or by a failed read */
	PMS_CNT_RINGBUF_FULL,	 /* events lost because the ring buffer was full */
	PMS_CNT_RELEASES,	 /* released ranges seen */
	PMS_CNT_BUDGET_OVERFLOW, /* growth events dropped by a burst far beyond the budget */
	PMS_CNT_MAX,
};

#endif
