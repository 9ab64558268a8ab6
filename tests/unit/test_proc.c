#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

Test(proc, parses_file_mapping)
{
	struct proc_map m;

	cr_assert_eq(
	    proc_maps_parse_line("7f1c2a000000-7f1c2a1c3000 r-xp 00028000 fe:01 1234567    "
				 "  /usr/lib/x86_64-linux-gnu/libc.so.6\n",
				 &m),
	    0);
	cr_assert_eq(m.start, 0x7f1c2a000000ull);
	cr_assert_eq(m.end, 0x7f1c2a1c3000ull);
	cr_assert_eq(m.offset, 0x28000ull);
	cr_assert_eq(m.inode, 1234567ull);
	cr_assert_str_eq(m.perms, "r-xp");
	cr_assert_str_eq(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
}

Test(proc, parses_anonymous_and_special)
{
	struct proc_map m;

	cr_assert_eq(proc_maps_parse_line("00400000-00401000 rw-p 00000000 00:00 0 \n", &m), 0);
	cr_assert_str_eq(m.path, "");
	cr_assert_eq(proc_maps_parse_line("7ffd1000-7ffd2000 rw-p 00000000 00:00 0  [stack]", &m),
		     0);
	cr_assert_str_eq(m.path, "[stack]");
	cr_assert_eq(
	    proc_maps_parse_line("1000-2000 r--p 0 00:00 0 /path with spaces (deleted)", &m), 0);
	cr_assert_str_eq(m.path, "/path with spaces (deleted)");
}

Test(proc, rejects_garbage)
{
	struct proc_map m;

	cr_assert_eq(proc_maps_parse_line("", &m), -EINVAL);
	cr_assert_eq(proc_maps_parse_line("hello world", &m), -EINVAL);
	cr_assert_eq(proc_maps_parse_line("2000-1000 r--p 0 00:00 0", &m), -EINVAL);
	cr_assert_eq(proc_maps_parse_line("1000-2000 r--pq 0 00:00 0", &m), -EINVAL);
}

Test(proc, reads_own_memory)
{
	static const char secret[] = "pymemspy-proc-test";
	struct pms_error err = {{0}};
	struct proc *p;
	char buf[sizeof(secret)];

	cr_assert_eq(proc_open(getpid(), &p, &err), 0, "%s", err.msg);
	cr_assert_eq(proc_read(p, (uint64_t)(uintptr_t)secret, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, secret);
	cr_assert_not_null(proc_map_find(p, (uint64_t)(uintptr_t)secret));
	cr_assert_eq(proc_read(p, 8, buf, 4), -EFAULT); /* the zero page is never mapped */
	cr_assert(proc_alive(p));
	cr_assert_eq(proc_task_state(p, getpid()), 'R');
	proc_close(p);
}

Test(proc, missing_process_is_esrch)
{
	struct pms_error err = {{0}};
	struct proc *p;

	cr_assert_eq(proc_open(0x3ffffff0, &p, &err), -ESRCH);
	cr_assert(strstr(err.msg, "no process") != NULL, "%s", err.msg);
}
