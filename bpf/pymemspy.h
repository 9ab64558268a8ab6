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
	__u32 tgid;	       /* the target process */
	__u32 max_depth;       /* <= PMS_MAX_DEPTH */
	__u32 budget_per_sec;  /* stack walks per second before sampling starts; 0: no limit */
	__u32 debug_allocator; /* survivors: pymalloc wrapped by the debug hooks (a debug build) */
	__u64 rate;	 /* allocator sources: mean bytes between two samples (PMS_RATE_MIN..MAX) */
	__u64 type_type; /* survivors: address of PyType_Type (what a type object's type is) */
	struct pms_py_offsets py;
};

enum pms_event_kind {
	PMS_EV_GROWTH = 1,  /* resident memory grew in the target's context: bytes > 0 */
	PMS_EV_SHRINK = 2,  /* resident memory shrank in the target's context: bytes < 0 */
	PMS_EV_RELEASE = 3, /* the target released [addr, addr+len): munmap, madvise, brk, mremap */
	PMS_EV_MOVE = 4,    /* mremap moved [addr, addr+len) to new_addr: its pages stay resident */
	PMS_EV_ALLOC = 5,   /* a sampled allocation: addr, len bytes asked, p_q32 its chance */
	PMS_EV_FREE = 6,    /* a sampled allocation at addr was freed (or moved by realloc) */
	PMS_EV_WATCH = 7,   /* survivors: the watched word at addr was written (len: the value,
			     * gen: the arm's generation) */
};

enum pms_event_flags {
	PMS_EVF_STACK_INLINE = 1 << 0, /* frames[] follow: the first time this stack was seen */
	PMS_EVF_TRUNCATED = 1 << 1,    /* the stack was deeper than max_depth, or a read failed */
	PMS_EVF_KERNEL_FAULT = 1 << 2, /* the page was faulted in by the kernel on our behalf */
	PMS_EVF_NO_TSTATE = 1 << 3,    /* the thread has no Python thread state */
	PMS_EVF_NO_FAULT = 1 << 4,     /* growth outside a page fault: no address known */
	PMS_EVF_UNTRACKED = 1 << 5,    /* sampled allocation whose free cannot be seen (map full) */
	PMS_EVF_SURVIVOR = 1 << 6,     /* growth charged to a stack by the survivor split */
	PMS_EVF_NO_SURVIVOR = 1 << 7,  /* growth in pools that no survivor took (a pseudo-site) */
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
	__u64 ts_ns;		/* bpf_ktime_get_ns() */
	__u64 addr;		/* fault address (GROWTH) or range start (RELEASE) */
	__u64 len;		/* range length (RELEASE, MOVE) */
	union {			/* what a kind needs besides addr and len; 0 for the others */
		__u64 new_addr; /* MOVE: the range's new start */
		__u64 p_q32;	/* ALLOC: the chance it was sampled with, in units of 2^-32 */
		__u64 gen;	/* WATCH: the generation of the arm that trapped */
		__u64 extra;	/* the union as one word, for clearing it */
	};
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
	PMS_CNT_ALLOC_CALLS,	 /* allocator sources: entries of allocation functions seen (a
				  * call an allocator makes to another counts again) */
	PMS_CNT_FREE_CALLS,	 /* free calls seen (free(NULL) may return before the probe) */
	PMS_CNT_ALLOC_SAMPLES,	 /* allocations sampled */
	PMS_CNT_FREES_MATCHED,	 /* frees of sampled allocations */
	PMS_CNT_LIVE_FULL,	 /* sampled allocations not followed: the live map was full */
	PMS_CNT_NESTED,		 /* allocator calls made by another probed allocator call */
	PMS_CNT_WATCH_TRAPS,	 /* survivors: watchpoint traps in the target */
	PMS_CNT_WATCH_HITS,	 /* of which wrote the armed word first (a sampled allocation) */
	PMS_CNT_WATCH_FOLLOWING, /* of which came while a live sample was followed */
	/* survivors, counted by user space (src/survivors.c) into the same array */
	PMS_CNT_SURV_ARMS,	/* words armed */
	PMS_CNT_SURV_LOST,	/* arms or hits thrown away: the block moved while we armed */
	PMS_CNT_SURV_FOLLOWED,	/* sampled allocations followed */
	PMS_CNT_SURV_SURVIVED,	/* of which were alive and unchanged at the check */
	PMS_CNT_SURV_DIED,	/* of which were freed or reused by then */
	PMS_CNT_SURV_HELD,	/* bytes of growth in pymalloc pools, split among survivors */
	PMS_CNT_SURV_FALLBACK,	/* of those, bytes charged by first touch (no survivor yet) */
	PMS_CNT_SURV_THREADS,	/* threads watched when we attached (later ones inherit) */
	PMS_CNT_SURV_UNWATCHED, /* threads we could not watch (debug registers taken) */
	PMS_CNT_MAX,
};

/* The survivors source's watch slots: each is a set of breakpoint events (one per thread)
 * pointed at one word. User space arms a slot (state ARMED, then points its watches there);
 * the first write makes it HIT (the sampled allocation, sent with its stack); a later write
 * that only a death makes marks it DIED. */
#define PMS_WATCH_SLOTS 3

enum pms_watch_state {
	PMS_WATCH_IDLE = 0,
	PMS_WATCH_ARMED = 1,
	PMS_WATCH_HIT = 2,
	PMS_WATCH_DIED = 3,
	PMS_WATCH_FOLLOW = 4, /* a GC object's watch moved to its type word: any write is a death */
};

struct pms_watch_arm {
	__u64 addr;   /* the watched word: block+8; 0 when idle */
	__u64 gen;    /* the arm's number, echoed in the event */
	__u64 state;  /* enum pms_watch_state */
	__u64 value;  /* what the allocation wrote (HIT) */
	__u64 hit_ns; /* when (bpf_ktime_get_ns) */
};

/* The attach cookie of an allocator probe: its kind (enum pms_alloc_fn) in the low 16 bits, flags
 * above, which function it is in the high 32. */
#define PMS_COOKIE_FN_MASK	  0xffffULL
#define PMS_COOKIE_NULL_DELEGATES (1ULL << 16) /* realloc(NULL, n) tail-calls a probed malloc */
#define PMS_COOKIE_FUNC_SHIFT	  32	       /* which probed function: its index + 1 */
#define PMS_MAX_PROBES		  16	       /* probed allocator functions, at most */
#define PMS_MAX_RANGES		  32	       /* code ranges of the probed functions */

/* What a probed allocator function does, i.e. where its size, pointer and result are: the low
 * bits of each probe's cookie. */
enum pms_alloc_fn {
	PMS_FN_MALLOC = 1,	   /* (size) -> ptr */
	PMS_FN_CALLOC = 2,	   /* (nmemb, size) -> ptr */
	PMS_FN_REALLOC = 3,	   /* (ptr, size) -> ptr */
	PMS_FN_REALLOCARRAY = 4,   /* (ptr, nmemb, size) -> ptr */
	PMS_FN_POSIX_MEMALIGN = 5, /* (void **out, align, size) -> int */
	PMS_FN_ALIGNED = 6,	   /* aligned_alloc, memalign: (align, size) -> ptr */
	PMS_FN_VALLOC = 7,	   /* valloc, pvalloc: (size) -> ptr */
	PMS_FN_FREE = 8,	   /* (ptr) */
	/* CPython's table functions take the table's ctx first: (ctx, size), (ctx, n, size),
	 * (ctx, ptr, size), (ctx, ptr) */
	PMS_FN_PY_MALLOC = 9,
	PMS_FN_PY_CALLOC = 10,
	PMS_FN_PY_REALLOC = 11,
	PMS_FN_PY_FREE = 12,
};

/* ---- Sampling allocations by bytes (shared so that user space computes the same numbers) ----
 *
 * Every byte allocated has the same chance 1/rate of being a sample point, so an allocation of
 * s bytes is sampled with probability p(s) = 1 - exp(-s/rate) and counts 1/p(s) times: the
 * estimates are unbiased (Horvitz-Thompson) whatever the sizes. BPF has no floating point, so
 * p is computed in 32-bit fixed point from two tables: exp(-x) = exp(-k) * exp(-h/256) *
 * exp(-l) for x = k + h/256 + l (l < 1/256, its factor taken as 1 - l + l^2/2 - l^3/6, off by
 * less than 1e-11). The tables hold round(exp(-k) * 2^32) and round(exp(-h/256) * 2^32), 1.0 held
 * as 2^32-1 so that products stay within 64 bits; a unit test checks every entry and p itself. */

#define PMS_RATE_MIN 64ULL
#define PMS_RATE_MAX (64ULL << 20)
#define PMS_P_ONE    (1ULL << 32)

static const __u64 pms_exp_int_q32[32] = {
    0xffffffffULL, 0x5e2d58d9ULL, 0x22a55547ULL, 0x0cbed866ULL, 0x04b0556eULL, 0x01b993feULL,
    0x00a27290ULL, 0x003bc2d7ULL, 0x0015fc21ULL, 0x00081679ULL, 0x0002f9afULL, 0x00011835ULL,
    0x00006715ULL, 0x000025ecULL, 0x00000df3ULL, 0x00000522ULL, 0x000001e3ULL, 0x000000b2ULL,
    0x00000041ULL, 0x00000018ULL, 0x00000009ULL, 0x00000003ULL, 0x00000001ULL, 0x00000000ULL,
    0x00000000ULL, 0x00000000ULL, 0x00000000ULL, 0x00000000ULL, 0x00000000ULL, 0x00000000ULL,
    0x00000000ULL, 0x00000000ULL,
};

static const __u64 pms_exp_256th_q32[256] = {
    0xffffffffULL, 0xff007fd5ULL, 0xfe01feabULL, 0xfd047b83ULL, 0xfc07f560ULL, 0xfb0c6b45ULL,
    0xfa11dc36ULL, 0xf9184739ULL, 0xf81fab54ULL, 0xf728078fULL, 0xf6315af3ULL, 0xf53ba488ULL,
    0xf446e358ULL, 0xf353166fULL, 0xf2603cdaULL, 0xf16e55a5ULL, 0xf07d5fdeULL, 0xef8d5a95ULL,
    0xee9e44d9ULL, 0xedb01dbcULL, 0xecc2e44fULL, 0xebd697a4ULL, 0xeaeb36d1ULL, 0xea00c0e8ULL,
    0xe9173501ULL, 0xe82e9231ULL, 0xe746d78fULL, 0xe6600434ULL, 0xe57a173aULL, 0xe4950fb9ULL,
    0xe3b0ecceULL, 0xe2cdad94ULL, 0xe1eb5127ULL, 0xe109d6a6ULL, 0xe0293d2fULL, 0xdf4983e1ULL,
    0xde6aa9ddULL, 0xdd8cae43ULL, 0xdcaf9037ULL, 0xdbd34ed9ULL, 0xdaf7e950ULL, 0xda1d5ebeULL,
    0xd943ae49ULL, 0xd86ad719ULL, 0xd792d853ULL, 0xd6bbb120ULL, 0xd5e560a9ULL, 0xd50fe618ULL,
    0xd43b4096ULL, 0xd3676f50ULL, 0xd2947171ULL, 0xd1c24627ULL, 0xd0f0ec9fULL, 0xd0206408ULL,
    0xcf50ab91ULL, 0xce81c26cULL, 0xcdb3a7c8ULL, 0xcce65ad7ULL, 0xcc19daceULL, 0xcb4e26deULL,
    0xca833e3cULL, 0xc9b9201eULL, 0xc8efcbb9ULL, 0xc8274043ULL, 0xc75f7cf5ULL, 0xc6988107ULL,
    0xc5d24bb1ULL, 0xc50cdc2eULL, 0xc44831b7ULL, 0xc3844b89ULL, 0xc2c128dfULL, 0xc1fec8f6ULL,
    0xc13d2b0cULL, 0xc07c4e60ULL, 0xbfbc322fULL, 0xbefcd5bbULL, 0xbe3e3844ULL, 0xbd80590bULL,
    0xbcc33753ULL, 0xbc06d25eULL, 0xbb4b2970ULL, 0xba903bcdULL, 0xb9d608baULL, 0xb91c8f7dULL,
    0xb863cf5dULL, 0xb7abc7a1ULL, 0xb6f47791ULL, 0xb63dde75ULL, 0xb587fb97ULL, 0xb4d2ce41ULL,
    0xb41e55beULL, 0xb36a915aULL, 0xb2b78060ULL, 0xb205221dULL, 0xb15375e0ULL, 0xb0a27af6ULL,
    0xaff230afULL, 0xaf42965aULL, 0xae93ab48ULL, 0xade56ecaULL, 0xad37e031ULL, 0xac8afed0ULL,
    0xabdec9f9ULL, 0xab334102ULL, 0xaa88633eULL, 0xa9de3003ULL, 0xa934a6a6ULL, 0xa88bc67dULL,
    0xa7e38ee1ULL, 0xa73bff28ULL, 0xa69516abULL, 0xa5eed4c3ULL, 0xa54938caULL, 0xa4a4421aULL,
    0xa3fff00fULL, 0xa35c4203ULL, 0xa2b93754ULL, 0xa216cf5eULL, 0xa175097fULL, 0xa0d3e516ULL,
    0xa0336180ULL, 0x9f937e1dULL, 0x9ef43a4eULL, 0x9e559574ULL, 0x9db78eefULL, 0x9d1a2621ULL,
    0x9c7d5a6eULL, 0x9be12b38ULL, 0x9b4597e3ULL, 0x9aaa9fd5ULL, 0x9a104270ULL, 0x99767f1cULL,
    0x98dd553fULL, 0x9844c43fULL, 0x97accb84ULL, 0x97156a75ULL, 0x967ea07cULL, 0x95e86d02ULL,
    0x9552cf70ULL, 0x94bdc731ULL, 0x942953b0ULL, 0x93957459ULL, 0x93022897ULL, 0x926f6fd7ULL,
    0x91dd4986ULL, 0x914bb513ULL, 0x90bab1ebULL, 0x902a3f7fULL, 0x8f9a5d3cULL, 0x8f0b0a94ULL,
    0x8e7c46f8ULL, 0x8dee11d7ULL, 0x8d606aa5ULL, 0x8cd350d3ULL, 0x8c46c3d4ULL, 0x8bbac31cULL,
    0x8b2f4e1fULL, 0x8aa46452ULL, 0x8a1a0528ULL, 0x89903019ULL, 0x8906e49aULL, 0x887e2222ULL,
    0x87f5e829ULL, 0x876e3625ULL, 0x86e70b8fULL, 0x866067e1ULL, 0x85da4a93ULL, 0x8554b31fULL,
    0x84cfa100ULL, 0x844b13b1ULL, 0x83c70aacULL, 0x8343856fULL, 0x82c08376ULL, 0x823e043dULL,
    0x81bc0742ULL, 0x813a8c03ULL, 0x80b991ffULL, 0x803918b4ULL, 0x7fb91fa3ULL, 0x7f39a64aULL,
    0x7ebaac2cULL, 0x7e3c30c8ULL, 0x7dbe33a0ULL, 0x7d40b437ULL, 0x7cc3b20eULL, 0x7c472ca9ULL,
    0x7bcb238bULL, 0x7b4f9638ULL, 0x7ad48436ULL, 0x7a59ed07ULL, 0x79dfd033ULL, 0x79662d3eULL,
    0x78ed03b0ULL, 0x7874530eULL, 0x77fc1ae1ULL, 0x77845ab1ULL, 0x770d1204ULL, 0x76964065ULL,
    0x761fe55cULL, 0x75aa0073ULL, 0x75349134ULL, 0x74bf9729ULL, 0x744b11dfULL, 0x73d700dfULL,
    0x736363b6ULL, 0x72f039f1ULL, 0x727d831cULL, 0x720b3ec5ULL, 0x71996c78ULL, 0x71280bc6ULL,
    0x70b71c3bULL, 0x70469d68ULL, 0x6fd68edbULL, 0x6f66f025ULL, 0x6ef7c0d6ULL, 0x6e89007eULL,
    0x6e1aaeb0ULL, 0x6daccafcULL, 0x6d3f54f5ULL, 0x6cd24c2eULL, 0x6c65b039ULL, 0x6bf980a9ULL,
    0x6b8dbd13ULL, 0x6b22650bULL, 0x6ab77825ULL, 0x6a4cf5f7ULL, 0x69e2de16ULL, 0x69793018ULL,
    0x690feb93ULL, 0x68a7101eULL, 0x683e9d50ULL, 0x67d692c0ULL, 0x676ef008ULL, 0x6707b4beULL,
    0x66a0e07cULL, 0x663a72dbULL, 0x65d46b74ULL, 0x656ec9e2ULL, 0x65098dbeULL, 0x64a4b6a5ULL,
    0x64404430ULL, 0x63dc35fbULL, 0x63788ba2ULL, 0x631544c2ULL, 0x62b260f8ULL, 0x624fdfe0ULL,
    0x61edc117ULL, 0x618c043dULL, 0x612aa8eeULL, 0x60c9aecaULL, 0x60691570ULL, 0x6008dc7fULL,
    0x5fa90397ULL, 0x5f498a58ULL, 0x5eea7063ULL, 0x5e8bb558ULL,
};

/* p(size) in units of 2^-32: sample when a uniform 32-bit random number is below it (PMS_P_ONE:
 * always). rate must be within PMS_RATE_MIN..PMS_RATE_MAX. */
static inline __u64 pms_sample_p_q32(__u64 size, __u64 rate)
{
	__u64 x, e, low, low2, low_factor;

	if (size == 0)
		return 0;
	if (size >= 32 * rate) /* exp(-32) is below 2^-32 */
		return PMS_P_ONE;
	x = (size << 32) / rate; /* size < 2^32 here, since rate <= 2^26 */
	low = x & 0xffffffULL;
	low2 = (low * low) >> 32;
	low_factor = (1ULL << 32) - low + (low2 >> 1) - ((low2 * low) >> 32) / 6;
	if (low_factor > 0xffffffffULL)
		low_factor = 0xffffffffULL;
	e = (pms_exp_int_q32[(x >> 32) & 31] * pms_exp_256th_q32[(x >> 24) & 255]) >> 32;
	e = (e * low_factor) >> 32;
	return PMS_P_ONE - e;
}

#endif
