#include "hostcost.h"

#include <errno.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"
#include "host.h"

#define WATCH_WRITES 1000
#define PROBE_CALLS  1000
#define ROUNDS	     3
#define RETPROBE_FMT "/sys/bus/event_source/devices/uprobe/format/retprobe"

/* The probed functions, in assembly so that their first instruction is known: a register move
 * (single-stepped out of line, like PyObject_Malloc's first instruction in pyenv builds) and a
 * push (emulated, where the allocator sources put their probes when they can). */
__asm__(".text\n"
	".globl pms_hostcost_sstep\n"
	".type pms_hostcost_sstep, @function\n"
	"pms_hostcost_sstep:\n"
	"\tmovq %rdi, %rax\n"
	"\tret\n"
	".size pms_hostcost_sstep, .-pms_hostcost_sstep\n"
	".globl pms_hostcost_push\n"
	".type pms_hostcost_push, @function\n"
	"pms_hostcost_push:\n"
	"\tpushq %rbx\n"
	"\tmovq %rdi, %rax\n"
	"\tpopq %rbx\n"
	"\tret\n"
	".size pms_hostcost_push, .-pms_hostcost_push\n");

uint64_t pms_hostcost_sstep(uint64_t v);
uint64_t pms_hostcost_push(uint64_t v);

typedef uint64_t (*probed_fn)(uint64_t);

/* Written through a volatile pointer so that every store reaches memory. */
static uint64_t watched_word;

static int perf_open(struct perf_event_attr *a)
{
	int fd = (int)syscall(SYS_perf_event_open, a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static double time_writes(volatile uint64_t *word, unsigned n)
{
	uint64_t t0 = clock_monotonic_ns();

	for (unsigned i = 0; i < n; i++)
		*word = i;
	return (double)(clock_monotonic_ns() - t0);
}

int hostcost_watchpoint(struct hostcost_watch *w)
{
	volatile uint64_t *word = &watched_word;
	struct perf_event_attr a;
	double plain = 1e18, trapped = 1e18;
	uint64_t count = 0;
	int fd;

	memset(w, 0, sizeof(*w));
	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_BREAKPOINT;
	a.size = sizeof(a);
	a.bp_type = HW_BREAKPOINT_W;
	a.bp_addr = (uint64_t)(uintptr_t)word;
	a.bp_len = HW_BREAKPOINT_LEN_8;
	a.sample_period = 1;
	a.exclude_kernel = 1;
	a.exclude_hv = 1;
	a.disabled = 1;
	fd = perf_open(&a);
	if (fd < 0)
		return fd;
	for (int r = 0; r < ROUNDS; r++) {
		double t = time_writes(word, WATCH_WRITES);

		plain = t < plain ? t : plain;
		ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
		t = time_writes(word, WATCH_WRITES);
		ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
		trapped = t < trapped ? t : trapped;
	}
	if (read(fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
		count = 0;
	close(fd);
	w->writes = WATCH_WRITES * ROUNDS;
	w->traps = count;
	if (count && trapped > plain)
		w->trap_ns = (trapped - plain) / WATCH_WRITES;
	return 0;
}

/* The config bit that makes a uprobe PMU event a return probe ("config:0" in its format). */
static int retprobe_bit(void)
{
	FILE *f = fopen(RETPROBE_FMT, "r");
	int bit = 0;

	if (!f)
		return 0;
	if (fscanf(f, "config:%d", &bit) != 1 || bit < 0 || bit > 63)
		bit = 0;
	fclose(f);
	return bit;
}

static double time_calls(probed_fn fn, unsigned n)
{
	uint64_t t0 = clock_monotonic_ns(), sink = 0;

	for (unsigned i = 0; i < n; i++)
		sink += fn(i);
	__asm__ volatile("" ::"r"(sink) : "memory");
	return (double)(clock_monotonic_ns() - t0);
}

/* The least time of PROBE_CALLS calls of fn over a few rounds: with a uprobe of `type`
 * (return probe when ret) on it, or with none when type < 0. */
static int time_probed(probed_fn fn, long type, bool ret, double *ns)
{
	volatile probed_fn call = fn; /* never inlined, never hoisted */
	struct perf_event_attr a;
	char path[4096];
	uint64_t off = 0;
	int fd = -1, err;

	*ns = 1e18;
	if (type >= 0) {
		err = host_self_code_offset((uintptr_t)fn, path, sizeof(path), &off);
		if (err)
			return err;
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.type = (uint32_t)type;
		a.config = ret ? 1ull << retprobe_bit() : 0;
		a.uprobe_path = (uint64_t)(uintptr_t)path;
		a.probe_offset = off;
		a.exclude_kernel = 1;
		fd = perf_open(&a);
		if (fd < 0)
			return fd;
	}
	for (int r = 0; r < ROUNDS; r++) {
		double t = time_calls(call, PROBE_CALLS);

		*ns = t < *ns ? t : *ns;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

static double per_call(double probed, double plain)
{
	return probed > plain ? (probed - plain) / PROBE_CALLS : 0;
}

int hostcost_uprobe(long pmu_type, struct hostcost_uprobe *u)
{
	double plain_sstep, plain_push, sstep, push, ret;
	int err;

	memset(u, 0, sizeof(*u));
	if ((err = time_probed(pms_hostcost_sstep, -1, false, &plain_sstep)) ||
	    (err = time_probed(pms_hostcost_push, -1, false, &plain_push)) ||
	    (err = time_probed(pms_hostcost_sstep, pmu_type, false, &sstep)) ||
	    (err = time_probed(pms_hostcost_push, pmu_type, false, &push)) ||
	    (err = time_probed(pms_hostcost_push, pmu_type, true, &ret)))
		return err;
	u->sstep_ns = per_call(sstep, plain_sstep);
	u->emulated_ns = per_call(push, plain_push);
	u->return_ns = per_call(ret, plain_push);
	return 0;
}

double hostcost_trap_share(double alloc_ns, double free_ns, uint64_t alloc_calls,
			   uint64_t free_calls, double seconds)
{
	double share;

	if (seconds <= 0)
		return 0;
	share = ((double)alloc_calls * alloc_ns + (double)free_calls * free_ns) / (seconds * 1e9);
	return share > 1 ? 1 : share;
}
