#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pypools.h"
#include "pytarget.h"
#include "pyspawn.h"

#define PYENV "/root/.pyenv/versions/"

/* ---- pool headers, built by hand ---- */

static void make_header(uint8_t hdr[48], uint32_t count, uint32_t cls, uint32_t next,
			uint32_t maxnext)
{
	memset(hdr, 0, 48);
	memcpy(hdr + 0, &count, 4);
	memcpy(hdr + 36, &cls, 4);
	memcpy(hdr + 40, &next, 4);
	memcpy(hdr + 44, &maxnext, 4);
}

Test(pypools, header_checks_pin_a_pool_down)
{
	uint8_t hdr[48];
	unsigned cls = 99;

	/* class 3 (64-byte blocks) in a 16 KiB pool: 255 blocks */
	make_header(hdr, 10, 3, 48 + 12 * 64, 16384 - 64);
	cr_assert(pypools_header_valid(hdr, 16384, &cls));
	cr_assert_eq(cls, 3);
	/* the same header is not a 4 KiB pool's */
	cr_assert_not(pypools_header_valid(hdr, 4096, NULL));
	/* full pool: every block used, nextoffset past maxnextoffset */
	make_header(hdr, 255, 3, 48 + 255 * 64, 16384 - 64);
	cr_assert(pypools_header_valid(hdr, 16384, NULL));
	/* more blocks in use than fit */
	make_header(hdr, 256, 3, 48 + 12 * 64, 16384 - 64);
	cr_assert_not(pypools_header_valid(hdr, 16384, NULL));
	/* no such class */
	make_header(hdr, 1, 32, 48 + 2 * 528, 16384 - 528);
	cr_assert_not(pypools_header_valid(hdr, 16384, NULL));
	/* nextoffset off a block boundary, or before the first block */
	make_header(hdr, 1, 3, 48 + 12 * 64 + 8, 16384 - 64);
	cr_assert_not(pypools_header_valid(hdr, 16384, NULL));
	make_header(hdr, 1, 3, 32, 16384 - 64);
	cr_assert_not(pypools_header_valid(hdr, 16384, NULL));
	/* zeroes (an untouched page) are no pool */
	memset(hdr, 0, sizeof(hdr));
	cr_assert_not(pypools_header_valid(hdr, 16384, NULL));
	cr_assert_eq(pypools_block_size(0), 16);
	cr_assert_eq(pypools_block_size(31), 512);
}

/* ---- against real interpreters ---- */

struct kept {
	uint64_t str_addr, str_size, tuple_addr, tuple_size;
};

/* Starts exe keeping a str and a tuple alive, and reads their addresses (id()) and sizes
 * (sys.getsizeof, which counts a GC-tracked object's GC header) from its first line. */
static pid_t start_python(const char *exe, const char *env, struct kept *k)
{
	const char *code = "import sys, time\n"
			   "s = 'kept-%d' % 12345678901234\n"
			   "t = (s, 1.5)\n"
			   "junk = [str(i) * 3 for i in range(20000)]\n"
			   "print(id(s), sys.getsizeof(s), id(t), sys.getsizeof(t), flush=True)\n"
			   "time.sleep(60)\n";
	char line[256] = "";
	FILE *in;
	pid_t pid = pyspawn(exe, NULL, env, code, &in);

	cr_assert_not_null(fgets(line, sizeof(line), in), "%s did not start", exe);
	fclose(in);
	cr_assert_eq(sscanf(line, "%lu %lu %lu %lu", &k->str_addr, &k->str_size, &k->tuple_addr,
			    &k->tuple_size),
		     4, "%s printed %s", exe, line);
	return pid;
}

static unsigned class_of_size(uint64_t size)
{
	return (unsigned)((size + 15) / 16 - 1);
}

static void check_interpreter(const char *exe, uint64_t pool_size)
{
	struct pms_error err = {{0}};
	struct pytarget *t = NULL;
	struct pypools *pp = NULL;
	uint64_t blocks[PYPOOLS_CLASSES];
	struct kept k;
	pid_t pid = start_python(exe, NULL, &k);
	unsigned nblocks = 0;

	cr_assert_eq(pytarget_open(pid, &t, &err), 0, "%s: %s", exe, err.msg);
	cr_assert_eq(pypools_find(pytarget_proc(t), pytarget_version(t)->minor, &pp, &err), 0,
		     "%s: %s", exe, err.msg);
	cr_assert_eq(pypools_pool_size(pp), pool_size, "%s", exe);
	/* a str is not tracked by the GC: its block starts at the object */
	cr_assert_eq(pypools_class_of(pp, k.str_addr), (int)class_of_size(k.str_size), "%s", exe);
	cr_assert_eq(pypools_allocated(pp, k.str_addr, class_of_size(k.str_size), NULL), 1, "%s",
		     exe);
	/* a tuple is: its block starts at its 16-byte GC header */
	cr_assert_eq(pypools_class_of(pp, k.tuple_addr - 16), (int)class_of_size(k.tuple_size),
		     "%s", exe);
	cr_assert_eq(pypools_allocated(pp, k.tuple_addr - 16, class_of_size(k.tuple_size), NULL), 1,
		     "%s", exe);
	/* the wrong class is not allocated from this pool */
	cr_assert_eq(pypools_allocated(pp, k.str_addr, class_of_size(k.str_size) + 1, NULL), 0);
	/* the next block of every class is free (the target sleeps: nothing moves) */
	cr_assert_eq(pypools_next_blocks(pp, blocks), 0);
	for (unsigned c = 0; c < PYPOOLS_CLASSES; c++) {
		uint64_t one = 0;

		if (!blocks[c])
			continue;
		nblocks++;
		cr_assert_eq(pypools_class_of(pp, blocks[c]), (int)c, "%s class %u", exe, c);
		cr_assert_eq(pypools_allocated(pp, blocks[c], c, NULL), 0, "%s class %u", exe, c);
		cr_assert_eq(pypools_next_block(pp, c, &one), 0);
		cr_assert_eq(one, blocks[c]);
	}
	cr_assert_geq(nblocks, 10, "%s: only %u classes have a free block", exe, nblocks);
	/* not an arena: the stack of the test process is no pool of the target */
	cr_assert_eq(pypools_class_of(pp, (uint64_t)(uintptr_t)&k), -1);
	pypools_free(pp);
	pytarget_close(t);
	pyspawn_stop(pid);
}

Test(pypools, pyenv_3_8)
{
	check_interpreter(PYENV "3.8.18/bin/python3", 4096);
}
Test(pypools, pyenv_3_9)
{
	check_interpreter(PYENV "3.9.18/bin/python3", 4096);
}
Test(pypools, pyenv_3_10)
{
	check_interpreter(PYENV "3.10.13/bin/python3", 16384);
}
Test(pypools, pyenv_3_11)
{
	check_interpreter(PYENV "3.11.7/bin/python3", 16384);
}
Test(pypools, pyenv_3_12)
{
	check_interpreter(PYENV "3.12.1/bin/python3", 16384);
}
Test(pypools, pyenv_3_13)
{
	check_interpreter(PYENV "3.13.0/bin/python3", 16384);
}
Test(pypools, debian_static_stripped_3_11)
{
	check_interpreter("/usr/bin/python3.11", 16384);
}

Test(pypools, no_pymalloc_is_refused_with_exit_5)
{
	struct pms_error err = {{0}};
	struct pytarget *t = NULL;
	struct pypools *pp = NULL;
	struct kept k;
	pid_t pid = start_python(PYENV "3.12.1/bin/python3", "PYTHONMALLOC=malloc", &k);

	cr_assert_eq(pytarget_open(pid, &t, &err), 0, "%s", err.msg);
	cr_assert_eq(pypools_find(pytarget_proc(t), 12, &pp, &err), -PMS_EUNSUPPORTED);
	cr_assert_null(pp);
	cr_assert(strstr(err.msg, "pymalloc"), "%s", err.msg);
	cr_assert_eq(pms_exit_code(-PMS_EUNSUPPORTED), PMS_EXIT_UNSUPPORTED);
	pytarget_close(t);
	pyspawn_stop(pid);
}
