/* What pymemspy's tracepoints cost processes it does not record: the time of a cheap syscall
 * (getppid: on the slow path while any syscall tracepoint is enabled) and of a first-touch page
 * fault (the fault tracepoints run a filter for every process). Prints both, in ns. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(void)
{
	const long calls = 2000000, pages = 20000, rounds = 5;
	double t0, t1, t2, t3;

	t0 = now();
	for (long i = 0; i < calls; i++)
		syscall(SYS_getppid);
	t1 = now();
	t2 = now();
	for (long r = 0; r < rounds; r++) {
		char *p = mmap(NULL, (size_t)pages * 4096, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return 1;
		for (long i = 0; i < pages; i++)
			p[i * 4096] = 1;
		munmap(p, (size_t)pages * 4096);
	}
	t3 = now();
	printf("syscall_ns=%.1f fault_ns=%.1f\n", (t1 - t0) / (double)calls * 1e9,
	       (t3 - t2) / (double)(rounds * pages) * 1e9);
	return 0;
}
