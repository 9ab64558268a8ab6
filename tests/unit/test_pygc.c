/* The census walk against real interpreters, and the read cache against our own memory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pygc.h"
#include "pytarget.h"
#include "pyspawn.h"
#include "rcache.h"

#define PYENV "/root/.pyenv/versions/"

/* 3000 instances of a class of its own in a list, 700 bytes objects in another, then ready. */
#define KNOWN                                                                                      \
	"import sys, time\n"                                                                       \
	"class Known:\n"                                                                           \
	"    pass\n"                                                                               \
	"K = [Known() for _ in range(3000)]\n"                                                     \
	"B = [b'%05d' % i for i in range(700)]\n"                                                  \
	"sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)\n"

static void census_of(const char *exe)
{
	struct pms_error err = {{0}};
	struct pytarget *t = NULL;
	struct pygc *g = NULL;
	struct pygc_snapshot snap;
	struct pygc_opts opts = {.budget = 0};
	uint64_t known = 0, bytes_objs = 0;
	bool holder_k = false;
	char buf[6];
	FILE *out;
	pid_t pid = pyspawn(exe, NULL, NULL, KNOWN, &out);

	cr_assert_eq(fread(buf, 1, sizeof(buf), out), 6, "%s did not start", exe);
	fclose(out);
	cr_assert_eq(pytarget_open(pid, &t, &err), 0, "%s", err.msg);
	cr_assert_eq(pygc_open(t, &opts, &g, &err), 0, "%s", err.msg);
	cr_assert_eq(pygc_snapshot(g, &snap, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < snap.ntallies; i++) {
		const struct pygc_type *ty = pygc_type_at(g, snap.tallies[i].type);

		if (!strcmp(ty->name, "Known") && !strcmp(ty->module, "__main__"))
			known = snap.tallies[i].count;
		if (!strcmp(ty->name, "bytes") && !strcmp(ty->module, "builtins"))
			bytes_objs = snap.tallies[i].count;
	}
	for (size_t i = 0; i < snap.nholders; i++)
		if (!strcmp(snap.holders[i].path, "__main__.K")) {
			holder_k = true;
			cr_assert_eq(snap.holders[i].length, 3000);
			cr_assert_eq(snap.holders[i].nitems, PYGC_HOLDER_SAMPLE);
			cr_assert_str_eq(pygc_type_at(g, snap.holders[i].item_types[0])->name,
					 "Known");
		}
	cr_assert_eq(known, 3000, "%s: %llu Known counted", exe, (unsigned long long)known);
	cr_assert_geq(bytes_objs, 700);
	cr_assert(holder_k, "%s: no holder __main__.K", exe);
	cr_assert_eq(snap.counters.torn_reads, 0);
	cr_assert_gt(snap.counters.gc_objects, 3000);
	pygc_snapshot_clear(&snap);
	pygc_close(g);
	pytarget_close(t);
	pyspawn_stop(pid);
}

Test(pygc, pyenv_3_8)
{
	census_of(PYENV "3.8.18/bin/python3.8");
}

Test(pygc, pyenv_3_12)
{
	census_of(PYENV "3.12.1/bin/python3.12");
}

Test(pygc, pyenv_3_13)
{
	census_of(PYENV "3.13.0/bin/python3.13");
}

Test(pygc, debian_3_11_stripped)
{
	census_of("/usr/bin/python3.11");
}

Test(rcache, reads_across_chunks_and_budget_counts)
{
	struct pms_error err = {{0}};
	struct proc *p = NULL;
	struct rcache *c;
	size_t len = 3 * RCACHE_CHUNK;
	uint8_t *mem = malloc(len), *got = malloc(len);

	cr_assert(mem && got);
	for (size_t i = 0; i < len; i++)
		mem[i] = (uint8_t)(i * 7 + 3);
	cr_assert_eq(proc_open(getpid(), &p, &err), 0, "%s", err.msg);
	c = rcache_new(p, 4 * RCACHE_CHUNK, 0);
	cr_assert_not_null(c);
	/* straddles two chunk boundaries, odd offsets */
	cr_assert_eq(rcache_read(c, (uint64_t)(uintptr_t)(mem + 5), got, len - 10), 0);
	cr_assert_eq(memcmp(got, mem + 5, len - 10), 0);
	/* a second read of the same bytes comes from the cache */
	{
		uint64_t calls = rcache_stats(c)->syscalls;

		cr_assert_eq(rcache_read(c, (uint64_t)(uintptr_t)(mem + 100), got, 64), 0);
		cr_assert_eq(rcache_stats(c)->syscalls, calls);
		cr_assert_eq(memcmp(got, mem + 100, 64), 0);
	}
	cr_assert_eq(rcache_read(c, 0, got, 8), -EFAULT);
	cr_assert_gt(rcache_stats(c)->bytes_read, 0);
	cr_assert_leq(rcache_bytes(c), 4 * RCACHE_CHUNK + 4096);
	rcache_free(c);
	proc_close(p);
	free(mem);
	free(got);
}

Test(rcache, unmapped_pages_fail_cleanly)
{
	struct pms_error err = {{0}};
	struct proc *p = NULL;
	struct rcache *c;
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *m = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
		buf[16];

	cr_assert_neq(m, MAP_FAILED);
	m[0] = 42;
	cr_assert_eq(munmap(m + page, (size_t)page), 0);
	cr_assert_eq(proc_open(getpid(), &p, &err), 0, "%s", err.msg);
	c = rcache_new(p, 2 * RCACHE_CHUNK, 0);
	cr_assert_eq(rcache_read(c, (uint64_t)(uintptr_t)m, buf, 1), 0);
	cr_assert_eq(buf[0], 42);
	cr_assert_eq(rcache_read(c, (uint64_t)(uintptr_t)(m + page - 8), buf, 16), -EFAULT);
	rcache_free(c);
	proc_close(p);
	munmap(m, (size_t)page);
}
