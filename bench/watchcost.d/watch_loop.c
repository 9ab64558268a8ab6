/* What a hardware watchpoint costs the thread it watches, on this machine: the time of a write
 * that traps (perf breakpoint event on the word, as --events survivors arms them), and the time
 * a move of the watchpoint (PERF_EVENT_IOC_MODIFY_ATTRIBUTES) takes the thread that makes it.
 * Prints "traps N of M writes", "trap_ns N" (per trapped write; 0 when nothing trapped) and
 * "modify_us N". On some hosts (VMs whose hypervisor does not pass debug registers through) the
 * breakpoint opens and enables but never fires: the count read back tells that apart from a cost.
 */
#define _GNU_SOURCE
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long watched[4];

/* The breakpoint's count so far: opened without read_format flags, read() gives one u64. */
static uint64_t count(int fd)
{
	uint64_t c = 0;

	if (read(fd, &c, sizeof(c)) != (ssize_t)sizeof(c))
		return 0;
	return c;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(void)
{
	struct perf_event_attr a;
	double best_trap = 1e9, best_plain = 1e9, t0, t1;
	const int n = 100000, moves = 2000, rounds = 3;
	uint64_t traps = 0, best_traps = 0, c0;
	int fd;

	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_BREAKPOINT;
	a.size = sizeof(a);
	a.bp_type = HW_BREAKPOINT_W;
	a.bp_addr = (unsigned long)&watched[0];
	a.bp_len = HW_BREAKPOINT_LEN_8;
	a.sample_period = 1;
	a.exclude_kernel = 1;
	a.disabled = 1;
	fd = (int)syscall(__NR_perf_event_open, &a, 0, -1, -1, 0);
	if (fd < 0) {
		perror("perf_event_open (breakpoint)");
		return 1;
	}
	for (int round = 0; round < rounds; round++) {
		t0 = now();
		for (int i = 0; i < n; i++)
			watched[0] = (unsigned long)i;
		t1 = now();
		if (t1 - t0 < best_plain)
			best_plain = t1 - t0;
		c0 = count(fd);
		ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
		t0 = now();
		for (int i = 0; i < n; i++)
			watched[0] = (unsigned long)i;
		t1 = now();
		ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
		c0 = count(fd) - c0;
		traps += c0;
		if (t1 - t0 < best_trap) {
			best_trap = t1 - t0;
			best_traps = c0;
		}
	}
	printf("traps %llu of %d writes\n", (unsigned long long)traps, rounds * n);
	/* the extra time of the fastest enabled round, per write that trapped in it */
	printf("trap_ns %.0f\n",
	       best_traps ? (best_trap - best_plain) / (double)best_traps * 1e9 : 0.0);
	a.disabled = 0;
	t0 = now();
	for (int i = 0; i < moves; i++) {
		a.bp_addr = (unsigned long)&watched[i & 1 ? 2 : 0];
		ioctl(fd, PERF_EVENT_IOC_MODIFY_ATTRIBUTES, &a);
	}
	t1 = now();
	printf("modify_us %.1f\n", (t1 - t0) / moves * 1e6);
	close(fd);
	return 0;
}
