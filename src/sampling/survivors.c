#include "survivors.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "pypools.h"
#include "survledger.h"

#define SURV_MAX_THREADS 4096
#define SURV_ARM_LOG	 65536 /* arms remembered, for the hits checked later */
#define SURV_PENDING	 16384 /* sampled allocations waiting for their check */
/* An armed block nobody takes for this long: arm another (allocations come in bursts). */
#define SURV_MISS_NS	     50000000ull
#define SURV_TICK_MS	     5		  /* how often the armer looks at its slots */
#define SURV_FOLLOW_AFTER_NS 3000000ull	  /* a live GC sample: watch its type word from then */
#define SURV_CHECK_SLACK_NS  250000000ull /* after the watch let go, before the final check */
/* surv_health: this many armed blocks found allocated without their trap, within this long after
 * surv_open, and no trap at all, say that watchpoints do not trap here. Looking later would only
 * cost reads: on a healthy host the first trap comes long before. */
#define SURV_HEALTH_WINDOW_NS 15000000000ull
#define SURV_HEALTH_MISSES    10
/* Where a watch points while nothing is armed: below mmap_min_addr, never written. */
#define SURV_IDLE_ADDR 0x8ULL

/* What became of an arm, for the check of its sample. */
struct arm_rec {
	uint64_t gen, block;
	unsigned cls;
	bool valid;   /* armed in time: its hit is an allocation */
	bool died;    /* the watch saw the sampled object die */
	bool settled; /* the watch saw it live for min_age */
};

struct followed {
	uint64_t gen, block, value, stack_id, hit_ns;
	uint32_t tid;
	uint8_t cls, flags;
};

/* A watch slot: one breakpoint event per thread, all on the same word. */
struct slot {
	int *fds;
	size_t nfds;
	uint64_t gen, block, armed_ns; /* gen 0: no arm in progress */
	uint64_t block_size;
	unsigned cls;
	bool followed; /* its watch moved to the type word already (or could not) */
	bool watching; /* the watches are on a block (not the idle address) */
};

struct survivors {
	struct proc *proc;
	struct pypools *pools;
	struct pms_watch_arm *arms; /* the mapped arm array */
	size_t arms_bytes;
	struct slot slots[PMS_WATCH_SLOTS];
	unsigned nslots;
	struct perf_event_attr attr;
	double arms_per_ns, tokens;
	uint64_t tokens_ns;
	uint64_t min_age_ns;
	bool debug_allocator;
	uint64_t type_type;
	unsigned next_cls;
	uint64_t last_head[PYPOOLS_CLASSES]; /* each class's next block when last looked at */
	struct ring_buffer *deaths;	     /* the kernel says which watched objects died */

	pthread_t armer;
	bool armer_started;
	pthread_mutex_t lock; /* the arm log, the counters the armer writes, the stop flag */
	bool stopping;
	struct arm_rec *log;
	uint64_t gen;
	uint64_t open_ns; /* when surv_open started arming, for surv_health */
	uint64_t missed;  /* arms that ended without a hit on a block allocated then (lock) */
	uint64_t traps;	  /* hits and deaths seen, by either thread (lock) */
	/* pypools reads a pool into one buffer: the armer and the caller's checks take turns */
	pthread_mutex_t pools_lock;

	struct followed *pending; /* a ring, oldest first */
	size_t head, count;

	struct survledger *ledger; /* held growth, survivors' stacks, the draw */

	uint64_t last_pool; /* the last pool found to be pymalloc's, for runs of faults */
	uint64_t counters[PMS_CNT_MAX];
};

static int open_watch(struct survivors *s, pid_t tid, int prog_fd)
{
	int fd = (int)syscall(__NR_perf_event_open, &s->attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd) != 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static void close_slot(struct slot *sl)
{
	for (size_t i = 0; i < sl->nfds; i++)
		close(sl->fds[i]);
	sl->nfds = 0;
}

/* Slot 0 on every thread it can get; the other slots only where every thread has one, so that
 * no slot misses a thread's writes. */
static int open_watches(struct survivors *s, int prog_fd, struct pms_error *err)
{
	pid_t *tids = calloc(SURV_MAX_THREADS, sizeof(*tids));
	int n, first_error = 0;

	if (!tids)
		return -ENOMEM;
	n = proc_tasks(s->proc, tids, SURV_MAX_THREADS);
	if (n < 0) {
		free(tids);
		return pms_error_set(err, -n, "cannot list the threads of process %d",
				     (int)proc_pid(s->proc));
	}
	for (unsigned k = 0; k < PMS_WATCH_SLOTS; k++) {
		struct slot *sl = &s->slots[k];

		sl->fds = calloc((size_t)n + 1, sizeof(*sl->fds));
		if (!sl->fds) {
			free(tids);
			return -ENOMEM;
		}
		for (int i = 0; i < n; i++) {
			int fd = open_watch(s, tids[i], prog_fd);

			if (fd >= 0) {
				sl->fds[sl->nfds++] = fd;
			} else if (fd != -ESRCH) {
				if (k == 0)
					s->counters[PMS_CNT_SURV_UNWATCHED]++;
				if (!first_error)
					first_error = fd;
				if (k > 0)
					break;
			}
		}
		if (k > 0 && sl->nfds < s->slots[0].nfds) {
			close_slot(sl);
			break;
		}
		s->nslots = k + 1;
	}
	free(tids);
	s->counters[PMS_CNT_SURV_THREADS] = s->slots[0].nfds;
	if (s->slots[0].nfds)
		return 0;
	s->nslots = 0;
	if (first_error == -EACCES || first_error == -EPERM)
		return pms_error_set(err, EPERM,
				     "not allowed to put watchpoints on process %d: run as root or "
				     "grant CAP_PERFMON (and CAP_BPF)",
				     (int)proc_pid(s->proc));
	if (first_error == -ENOSPC)
		return pms_error_set(err, ENOSPC,
				     "every thread of process %d has its debug registers taken (a "
				     "debugger's watchpoints?): --events survivors needs one",
				     (int)proc_pid(s->proc));
	return pms_error_set(err, first_error ? -first_error : ESRCH,
			     "cannot put a watchpoint on process %d: %s", (int)proc_pid(s->proc),
			     strerror(first_error ? -first_error : ESRCH));
}

/* Points a slot's watches at addr. Events whose thread is gone are dropped. */
static void point_slot(struct survivors *s, struct slot *sl, uint64_t addr)
{
	s->attr.bp_addr = addr;
	for (size_t i = 0; i < sl->nfds;) {
		if (ioctl(sl->fds[i], PERF_EVENT_IOC_MODIFY_ATTRIBUTES, &s->attr) != 0 &&
		    errno == ESRCH) {
			close(sl->fds[i]);
			sl->fds[i] = sl->fds[--sl->nfds];
			continue;
		}
		i++;
	}
}

/* Writes slot k of the mapped arm array. The program matches a trap by addr first: an arm
 * publishes its state before its address, and a retirement clears the address first. */
static void write_arm(struct survivors *s, unsigned k, uint64_t addr, uint64_t gen, uint64_t state)
{
	struct pms_watch_arm *a = &s->arms[k];

	if (!addr) {
		__atomic_store_n(&a->addr, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&a->state, state, __ATOMIC_RELEASE);
		return;
	}
	__atomic_store_n(&a->gen, gen, __ATOMIC_RELAXED);
	__atomic_store_n(&a->value, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&a->hit_ns, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&a->state, state, __ATOMIC_RELEASE);
	__atomic_store_n(&a->addr, addr, __ATOMIC_RELEASE);
}

static int pool_allocated(struct survivors *s, uint64_t block, unsigned cls, uint64_t *word)
{
	int ret;

	pthread_mutex_lock(&s->pools_lock);
	ret = pypools_allocated(s->pools, block, cls, word);
	pthread_mutex_unlock(&s->pools_lock);
	return ret;
}

static bool block_watched(const struct survivors *s, uint64_t block)
{
	for (unsigned k = 0; k < s->nslots; k++)
		if (s->slots[k].block == block)
			return true;
	return false;
}

/* Puts slot k's watches on the idle address: its block is taken, and churn may rewrite it
 * thousands of times a second. */
static void retire_slot(struct survivors *s, unsigned k)
{
	struct slot *sl = &s->slots[k];

	write_arm(s, k, 0, 0, PMS_WATCH_IDLE);
	if (sl->watching)
		point_slot(s, sl, SURV_IDLE_ADDR);
	sl->watching = false;
	sl->gen = 0;
	sl->block = 0;
}

/* Arms slot k on a free block of a class: classes in turn, skipping those whose next block has
 * not changed since we last looked (they allocate nothing now: a watch there would cost a move
 * for no sample). The block is the one after the next, so that it stays free while the watches
 * move (tens of microseconds); if it is taken meanwhile anyway, its first write may have gone
 * unseen, and a later one would be an object's, not an allocation's: the arm is dropped.
 * Returns true when the slot watches a block. */
static bool arm_slot(struct survivors *s, unsigned k)
{
	struct slot *sl = &s->slots[k];
	uint64_t head = 0, block = 0, gen;
	struct arm_rec *rec;
	unsigned cls = 0;
	bool found = false;

	uint64_t heads[PYPOOLS_CLASSES];

	if (pypools_next_blocks(s->pools, heads) != 0) {
		retire_slot(s, k);
		return false;
	}
	for (unsigned i = 0; i < PYPOOLS_CLASSES && !found; i++) {
		cls = (s->next_cls + i) % PYPOOLS_CLASSES;
		head = heads[cls];
		found = head && head != s->last_head[cls];
		if (found && pypools_block_after(s->pools, head, &block) != 0)
			block = head;
		found = found && !block_watched(s, block);
	}
	memcpy(s->last_head, heads, sizeof(heads));
	if (!found) {
		retire_slot(s, k);
		return false;
	}
	s->next_cls = cls + 1;
	pthread_mutex_lock(&s->lock);
	gen = ++s->gen;
	rec = &s->log[gen % SURV_ARM_LOG];
	*rec = (struct arm_rec){.gen = gen, .block = block, .cls = cls, .valid = true};
	pthread_mutex_unlock(&s->lock);
	/* the word first, then the watches: a trap always finds its arm */
	write_arm(s, k, block + 8, gen, PMS_WATCH_ARMED);
	point_slot(s, sl, block + 8);
	sl->watching = true;
	sl->gen = gen;
	sl->block = block;
	sl->block_size = pypools_block_size(cls);
	sl->cls = cls;
	sl->followed = false;
	sl->armed_ns = clock_monotonic_ns();
	if (pool_allocated(s, block, cls, NULL) != 0) {
		pthread_mutex_lock(&s->lock);
		rec->valid = false;
		s->counters[PMS_CNT_SURV_LOST]++;
		pthread_mutex_unlock(&s->lock);
		retire_slot(s, k);
		return false;
	}
	pthread_mutex_lock(&s->lock);
	s->counters[PMS_CNT_SURV_ARMS]++;
	pthread_mutex_unlock(&s->lock);
	return true;
}

/* Arms are rationed (arms_per_sec, a burst of one per slot): every arm moves watchpoints, and
 * moving one on a running thread interrupts it. */
static bool take_token(struct survivors *s, uint64_t now)
{
	s->tokens += (double)(now - s->tokens_ns) * s->arms_per_ns;
	s->tokens_ns = now;
	if (s->tokens > s->nslots)
		s->tokens = s->nslots;
	if (s->tokens < 1)
		return false;
	s->tokens -= 1;
	return true;
}

/* Whether v is a type object: its own type is PyType_Type (or a metaclass, missed here). */
static bool is_type_object(struct survivors *s, uint64_t v)
{
	uint64_t t = 0;

	return v && s->type_type && proc_read_u64(s->proc, v + 8, &t) == 0 && t == s->type_type;
}

/* A GC-tracked sample's watched word is its GC header's prev link, which every collection of
 * its generation rewrites: a trap each, for as long as it is followed. Its type word (after a
 * 16-byte GC header, or after a 32-byte pre-header from 3.11 on) is written by an allocation
 * only: the watch moves there once the object is set up. */
static void follow_type_word(struct survivors *s, unsigned k)
{
	struct slot *sl = &s->slots[k];
	const uint64_t offsets[2] = {24, 40};
	uint64_t value = __atomic_load_n(&s->arms[k].value, __ATOMIC_ACQUIRE);

	if (value || s->debug_allocator || sl->followed)
		return;
	sl->followed = true;
	for (int i = 0; i < 2; i++) {
		uint64_t word = sl->block + offsets[i], type = 0;

		if (offsets[i] + 8 > sl->block_size || proc_read_u64(s->proc, word, &type) != 0 ||
		    !is_type_object(s, type))
			continue;
		/* address first: a trap on the new word must find the slot in FOLLOW */
		__atomic_store_n(&s->arms[k].state, PMS_WATCH_FOLLOW, __ATOMIC_RELEASE);
		__atomic_store_n(&s->arms[k].addr, word, __ATOMIC_RELEASE);
		point_slot(s, sl, word);
		return;
	}
}

/* An arm that nobody took in SURV_MISS_NS, early on: if its block is allocated now, the target
 * wrote the watched word (an allocation's first write) and no trap came: evidence for
 * surv_health. Not looked at once a trap was seen or the window is over (a read each). */
static void note_untaken(struct survivors *s, unsigned k, uint64_t now)
{
	struct slot *sl = &s->slots[k];
	bool wanted;

	pthread_mutex_lock(&s->lock);
	wanted = !s->traps && now - s->open_ns <= SURV_HEALTH_WINDOW_NS;
	pthread_mutex_unlock(&s->lock);
	if (!wanted || pool_allocated(s, sl->block, sl->cls, NULL) != 1)
		return;
	pthread_mutex_lock(&s->lock);
	s->missed++;
	pthread_mutex_unlock(&s->lock);
}

/* One look at slot k: a new arm when its arm is over (the class allocated nothing for a while,
 * or the sampled object lived min_age), or when it is idle and the ration allows. */
static void tend_slot(struct survivors *s, unsigned k, uint64_t now)
{
	struct slot *sl = &s->slots[k];
	struct pms_watch_arm a = {0};

	if (sl->gen) {
		a.gen = __atomic_load_n(&s->arms[k].gen, __ATOMIC_ACQUIRE);
		a.state = __atomic_load_n(&s->arms[k].state, __ATOMIC_ACQUIRE);
		a.hit_ns = __atomic_load_n(&s->arms[k].hit_ns, __ATOMIC_ACQUIRE);
		if (a.gen != sl->gen)
			return;
		if (a.state == PMS_WATCH_ARMED && now - sl->armed_ns <= SURV_MISS_NS)
			return;
		if (a.state == PMS_WATCH_DIED)
			return; /* the ring buffer's wake-up handles it */
		if (a.state == PMS_WATCH_HIT || a.state == PMS_WATCH_FOLLOW) {
			if (a.state == PMS_WATCH_HIT && now > a.hit_ns &&
			    now - a.hit_ns >= SURV_FOLLOW_AFTER_NS)
				follow_type_word(s, k);
			if (now < a.hit_ns || now - a.hit_ns < s->min_age_ns)
				return;
			pthread_mutex_lock(&s->lock);
			s->log[sl->gen % SURV_ARM_LOG].settled = true;
			s->traps++;
			pthread_mutex_unlock(&s->lock);
		}
		if (a.state == PMS_WATCH_ARMED)
			note_untaken(s, k, now);
		/* over; its traps are ignored from now (a live object or a free block: few) */
		write_arm(s, k, 0, 0, PMS_WATCH_IDLE);
		sl->gen = 0;
	}
	if (take_token(s, now))
		arm_slot(s, k);
}

/* The kernel says an arm's object died: that slot moves on at once, to a new block when the
 * ration allows (one move), else to the idle address. */
static int on_death(void *ctx, void *data, size_t size)
{
	struct survivors *s = ctx;
	uint64_t gen;

	if (size < sizeof(gen))
		return 0;
	memcpy(&gen, data, sizeof(gen));
	for (unsigned k = 0; k < s->nslots; k++) {
		if (!gen || s->slots[k].gen != gen)
			continue;
		pthread_mutex_lock(&s->lock);
		s->log[gen % SURV_ARM_LOG].died = true;
		s->traps++;
		pthread_mutex_unlock(&s->lock);
		s->slots[k].gen = 0;
		if (!take_token(s, clock_monotonic_ns()) || !arm_slot(s, k))
			retire_slot(s, k);
	}
	return 0;
}

static void *armer_main(void *arg)
{
	struct survivors *s = arg;

	s->tokens_ns = clock_monotonic_ns();
	for (;;) {
		bool stop;

		pthread_mutex_lock(&s->lock);
		stop = s->stopping;
		pthread_mutex_unlock(&s->lock);
		if (stop)
			break;
		for (unsigned k = 0; k < s->nslots; k++)
			tend_slot(s, k, clock_monotonic_ns());
		ring_buffer__poll(s->deaths, SURV_TICK_MS);
	}
	return NULL;
}

int surv_open(struct proc *p, int minor, int prog_fd, int arm_map_fd, int deaths_fd,
	      const struct surv_opts *o, struct survivors **out, struct pms_error *err)
{
	unsigned rate = o && o->arms_per_sec ? o->arms_per_sec : SURV_DEFAULT_ARMS_PER_SEC;
	double age = o && o->min_age > 0 ? o->min_age : SURV_DEFAULT_MIN_AGE;
	struct survivors *s;
	int ret;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->pools_lock, NULL);
	s->proc = p;
	s->arms_bytes = (PMS_WATCH_SLOTS * sizeof(*s->arms) + 4095) & ~(size_t)4095;
	s->arms = mmap(NULL, s->arms_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, arm_map_fd, 0);
	if (s->arms == MAP_FAILED) {
		s->arms = NULL;
		ret = pms_error_set(err, errno, "cannot map the watch slots: %s", strerror(errno));
		goto fail;
	}
	s->arms_per_ns = rate / 1e9;
	s->min_age_ns = (uint64_t)(age * 1e9);
	s->debug_allocator = o && o->debug_allocator;
	s->type_type = o ? o->type_type : 0;
	s->log = calloc(SURV_ARM_LOG, sizeof(*s->log));
	s->pending = calloc(SURV_PENDING, sizeof(*s->pending));
	if (!s->log || !s->pending) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = survledger_new(clock_monotonic_ns(), &s->ledger);
	if (ret)
		goto fail;
	ret = pypools_find(p, minor, &s->pools, err);
	if (ret)
		goto fail;
	s->attr.type = PERF_TYPE_BREAKPOINT;
	s->attr.size = sizeof(s->attr);
	s->attr.bp_type = HW_BREAKPOINT_W;
	s->attr.bp_addr = SURV_IDLE_ADDR;
	s->attr.bp_len = HW_BREAKPOINT_LEN_8;
	s->attr.sample_period = 1;
	s->attr.inherit = 1; /* threads the target creates later are watched too */
	s->attr.exclude_kernel = 1;
	s->attr.exclude_hv = 1;
	s->deaths = ring_buffer__new(deaths_fd, on_death, s, NULL);
	if (!s->deaths) {
		ret = pms_error_set(err, errno ? errno : ENOMEM, "cannot map a ring buffer: %s",
				    strerror(errno));
		goto fail;
	}
	ret = open_watches(s, prog_fd, err);
	if (ret)
		goto fail;
	s->open_ns = clock_monotonic_ns();
	if (pthread_create(&s->armer, NULL, armer_main, s) != 0) {
		ret = pms_error_set(err, EAGAIN, "cannot start the arming thread");
		goto fail;
	}
	s->armer_started = true;
	*out = s;
	return 0;
fail:
	surv_close(s);
	return ret;
}

void surv_on_watch(struct survivors *s, const struct pms_event *ev)
{
	struct arm_rec rec;
	struct followed *f;

	pthread_mutex_lock(&s->lock);
	rec = s->log[ev->gen % SURV_ARM_LOG];
	s->traps++; /* lost or not, the hardware trapped */
	pthread_mutex_unlock(&s->lock);
	if (rec.gen != ev->gen || !rec.valid || ev->addr != rec.block + 8) {
		s->counters[PMS_CNT_SURV_LOST]++;
		return;
	}
	if (s->count == SURV_PENDING)
		return; /* the checks fall behind: sample less rather than grow */
	f = &s->pending[(s->head + s->count++) % SURV_PENDING];
	*f = (struct followed){.gen = ev->gen,
			       .block = rec.block,
			       .value = ev->len,
			       .stack_id = ev->stack_id,
			       .hit_ns = ev->ts_ns,
			       .tid = ev->tid,
			       .cls = (uint8_t)rec.cls,
			       .flags = ev->flags & PMS_EVF_NO_TSTATE};
	s->counters[PMS_CNT_SURV_FOLLOWED]++;
}

bool surv_hold_growth(struct survivors *s, const struct pms_event *ev)
{
	uint64_t pool = ev->addr & ~(pypools_pool_size(s->pools) - 1);
	struct surv_charge c = {.addr = ev->addr,
				.stack_id = ev->stack_id,
				.ts_ns = ev->ts_ns,
				.bytes = ev->bytes,
				.tid = ev->tid,
				.flags = ev->flags,
				.member = ev->member};

	if (ev->kind != PMS_EV_GROWTH || ev->bytes <= 0 || !ev->addr ||
	    (ev->flags & PMS_EVF_NO_FAULT))
		return false;
	if (s->last_pool != pool) {
		if (pypools_class_of(s->pools, ev->addr) < 0)
			return false;
		s->last_pool = pool;
	}
	return survledger_hold(s->ledger, &c);
}

void surv_release(struct survivors *s, uint64_t addr, uint64_t len)
{
	survledger_release(s->ledger, addr, len);
}

void surv_move(struct survivors *s, uint64_t from, uint64_t to, uint64_t len)
{
	survledger_move(s->ledger, from, to, len);
}

/* The verdict on a followed allocation once its watch let go: 1 survived, 0 died, -EAGAIN not
 * known yet. A survivor lived min_age under the watch without a write that only a death makes,
 * and its block is still allocated now (a free alone does not write the watched word) with the
 * same word (for objects that keep their type there). */
static int verdict(struct survivors *s, const struct followed *f, uint64_t now_ns)
{
	struct arm_rec rec;
	uint64_t word = 0;

	pthread_mutex_lock(&s->lock);
	rec = s->log[f->gen % SURV_ARM_LOG];
	pthread_mutex_unlock(&s->lock);
	if (rec.gen != f->gen || rec.died)
		return 0;
	if (!rec.settled)
		return now_ns - f->hit_ns > 4 * s->min_age_ns + SURV_CHECK_SLACK_NS ? 0 : -EAGAIN;
	if (pool_allocated(s, f->block, f->cls, &word) != 1)
		return 0;
	if (!f->value || s->debug_allocator)
		return 1; /* (the debug hooks' header is the same for every object) */
	return word == f->value;
}

static void check_pending(struct survivors *s, uint64_t now_ns)
{
	while (s->count) {
		struct followed *f = &s->pending[s->head];
		int v;

		if (f->hit_ns + s->min_age_ns + SURV_CHECK_SLACK_NS > now_ns)
			break;
		v = verdict(s, f, now_ns);
		if (v == -EAGAIN)
			break;
		if (v == 1)
			survledger_survived(s->ledger, f->stack_id, f->tid, f->flags,
					    pypools_block_size(f->cls));
		else
			survledger_died(s->ledger);
		s->head = (s->head + 1) % SURV_PENDING;
		s->count--;
	}
}

void surv_tick(struct survivors *s, uint64_t now_ns, surv_charge_fn fn, void *ctx)
{
	check_pending(s, now_ns);
	survledger_tick(s->ledger, now_ns, fn, ctx);
}

void surv_flush(struct survivors *s, surv_charge_fn fn, void *ctx)
{
	survledger_flush(s->ledger, fn, ctx);
}

int surv_health(struct survivors *s, uint64_t now_ns, struct pms_error *err)
{
	uint64_t missed, traps;

	pthread_mutex_lock(&s->lock);
	missed = s->missed;
	traps = s->traps;
	pthread_mutex_unlock(&s->lock);
	if (traps || missed < SURV_HEALTH_MISSES)
		return 0;
	return pms_error_set(err, PMS_ENOFEATURE,
			     "hardware watchpoints do not trap on this host: %llu armed blocks of "
			     "process %d were allocated and written without one trap in %.1f s; "
			     "--events survivors needs them (try --events growth or malloc; "
			     "`pymemspy doctor` tests this)",
			     (unsigned long long)missed, (int)proc_pid(s->proc),
			     now_ns > s->open_ns ? (double)(now_ns - s->open_ns) / 1e9 : 0.0);
}

void surv_stop(struct survivors *s)
{
	if (!s)
		return;
	if (s->armer_started) {
		pthread_mutex_lock(&s->lock);
		s->stopping = true;
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->armer, NULL);
		s->armer_started = false;
	}
	for (unsigned k = 0; k < PMS_WATCH_SLOTS; k++) {
		close_slot(&s->slots[k]);
		if (k < s->nslots && s->arms)
			write_arm(s, k, 0, 0, PMS_WATCH_IDLE);
	}
}

void surv_counters(const struct survivors *s, uint64_t counters[PMS_CNT_MAX])
{
	for (int i = PMS_CNT_SURV_ARMS; i <= PMS_CNT_SURV_UNWATCHED; i++)
		counters[i] = s->counters[i];
	survledger_counters(s->ledger, counters);
}

void surv_describe(const struct survivors *s, char *buf, size_t len)
{
	snprintf(
	    buf, len,
	    "%u watchpoints on each of %llu threads (and the threads they start), up to %llu "
	    "arms/s over pymalloc's %llu size classes (%llu KiB pools); a sampled object alive "
	    "after %.1f s is a survivor",
	    s->nslots, (unsigned long long)s->counters[PMS_CNT_SURV_THREADS],
	    (unsigned long long)(s->arms_per_ns * 1e9 + 0.5), (unsigned long long)PYPOOLS_CLASSES,
	    (unsigned long long)(pypools_pool_size(s->pools) >> 10), (double)s->min_age_ns / 1e9);
}

void surv_close(struct survivors *s)
{
	if (!s)
		return;
	surv_stop(s);
	for (unsigned k = 0; k < PMS_WATCH_SLOTS; k++)
		free(s->slots[k].fds);
	ring_buffer__free(s->deaths);
	if (s->arms)
		munmap(s->arms, s->arms_bytes);
	free(s->log);
	pypools_free(s->pools);
	free(s->pending);
	survledger_free(s->ledger);
	pthread_mutex_destroy(&s->pools_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
