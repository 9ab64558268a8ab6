#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "host.h"

static const char status_fixture[] = "Name:\tpython3\n"
				     "Umask:\t0022\n"
				     "State:\tS (sleeping)\n"
				     "CapInh:\t0000000000000000\n"
				     "CapPrm:\t000001fffeffffff\n"
				     "CapEff:\t000001FFFEFFFFFF\n"
				     "CapBnd:\t000001fffeffffff\n"
				     "CapAmb:\t0000000000000000\n"
				     "NoNewPrivs:\t0\n";

static bool is_root(void)
{
	uint64_t caps = 0;

	return geteuid() == 0 && host_caps_self(&caps) == 0 &&
	       host_cap_in(caps, HOST_CAP_SYS_ADMIN);
}

static const struct host_check *find(const struct host_report *r, const char *name)
{
	for (size_t i = 0; i < host_report_count(r); i++)
		if (!strcmp(host_report_check(r, i)->name, name))
			return host_report_check(r, i);
	return NULL;
}

/* Becomes nobody with no capabilities (each Criterion test runs in its own process). */
static void drop_privileges(void)
{
	cr_assert_eq(setresgid(65534, 65534, 65534), 0);
	cr_assert_eq(setgroups(0, NULL), 0);
	cr_assert_eq(setresuid(65534, 65534, 65534), 0);
}

Test(host, parses_capability_sets)
{
	uint64_t mask = 0;

	cr_assert_eq(host_caps_parse(status_fixture, "CapPrm", &mask), 0);
	cr_assert_eq(mask, 0x1fffeffffffULL);
	cr_assert_eq(host_caps_parse(status_fixture, "CapEff", &mask), 0); /* upper-case hex */
	cr_assert_eq(mask, 0x1fffeffffffULL);
	cr_assert(host_cap_in(mask, HOST_CAP_BPF));
	cr_assert(host_cap_in(mask, HOST_CAP_PERFMON));
	cr_assert(host_cap_in(mask, HOST_CAP_SYS_PTRACE));
	cr_assert(!host_cap_in(mask, 24)); /* CAP_SYS_RESOURCE, cleared in the fixture */
	cr_assert_eq(host_caps_parse(status_fixture, "CapAmb", &mask), 0);
	cr_assert_eq(mask, 0);
	cr_assert(!host_cap_in(~0ULL, 64));
	cr_assert(!host_cap_in(~0ULL, -1));
}

Test(host, rejects_bad_capability_text)
{
	uint64_t mask = 42;

	cr_assert_eq(host_caps_parse(status_fixture, "CapFoo", &mask), -EINVAL);
	cr_assert_eq(host_caps_parse(status_fixture, "Cap", &mask), -EINVAL); /* not a prefix */
	cr_assert_eq(host_caps_parse("CapEff:\t\n", "CapEff", &mask), -EINVAL);
	cr_assert_eq(host_caps_parse("CapEff:\t00000zff\n", "CapEff", &mask), -EINVAL);
	cr_assert_eq(host_caps_parse("CapEff:\t10000000000000000\n", "CapEff", &mask), -EINVAL);
	cr_assert_eq(host_caps_parse("", "CapEff", &mask), -EINVAL);
	cr_assert_eq(mask, 42, "a failed parse leaves the output alone");
	/* Last line without a newline, and no confusion with a longer field name. */
	cr_assert_eq(host_caps_parse("CapEffX:\t1\nCapEff:\t80", "CapEff", &mask), 0);
	cr_assert_eq(mask, 0x80);
}

Test(host, names_capabilities)
{
	cr_assert_str_eq(host_cap_name(HOST_CAP_BPF), "CAP_BPF");
	cr_assert_str_eq(host_cap_name(HOST_CAP_PERFMON), "CAP_PERFMON");
	cr_assert_str_eq(host_cap_name(HOST_CAP_SYS_PTRACE), "CAP_SYS_PTRACE");
	cr_assert_str_eq(host_cap_name(HOST_CAP_SYS_ADMIN), "CAP_SYS_ADMIN");
	cr_assert_null(host_cap_name(0));
}

Test(host, capget_agrees_with_proc)
{
	uint64_t mine = 0, proc = 1;

	cr_assert_eq(host_caps_self(&mine), 0);
	cr_assert_eq(host_caps_pid(getpid(), "CapEff", &proc), 0);
	cr_assert_eq(mine, proc);
	cr_assert_eq(host_caps_pid(0x7ffffff0, "CapEff", &proc), -ESRCH);
	cr_assert_eq(host_caps_pid(getpid(), "NoSuch", &proc), -EINVAL);
}

Test(host, finds_tracepoints)
{
	if (!is_root())
		cr_skip_test("needs root (tracefs is root-only)");
	cr_assert_eq(host_ensure_tracefs(NULL, NULL), 0);
	cr_assert_eq(host_tracepoint_exists("exceptions", "page_fault_user"), 1);
	cr_assert_eq(host_tracepoint_exists("syscalls", "sys_enter_mmap"), 1);
	cr_assert_eq(host_tracepoint_exists("syscalls", "sys_enter_no_such_call"), 0);
	cr_assert_eq(host_tracepoint_exists("..", "x"), -EINVAL);
	cr_assert_eq(host_tracepoint_exists("kmem", "../../id"), -EINVAL);
}

/* This machine has everything: BTF, bpf(), ring buffers, uprobes and the tracepoints. */
Test(host, this_machine_has_every_feature)
{
	struct host_report *r = NULL;
	const unsigned all =
	    HOST_NEED_PTRACE | HOST_NEED_BPF | HOST_NEED_TRACEPOINTS | HOST_NEED_UPROBES;
	char reason[512];
	const char *must[] = {"btf",
			      "bpf-syscall",
			      "ringbuf",
			      "uprobes",
			      "tracefs",
			      "exceptions:page_fault_user",
			      "exceptions:page_fault_kernel",
			      "kmem:rss_stat",
			      "syscalls:sys_enter_mmap",
			      "syscalls:sys_exit_munmap",
			      "syscalls:sys_enter_mremap",
			      "syscalls:sys_exit_brk",
			      "syscalls:sys_enter_madvise",
			      "ptrace_scope"};

	if (!is_root())
		cr_skip_test("needs root");
	cr_assert_eq(host_report_new(all, HOST_PROBE_MOUNT, &r), 0);
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
		const struct host_check *c = find(r, must[i]);

		cr_assert_not_null(c, "no check named %s", must[i]);
		cr_expect_eq(c->status, HOST_OK, "%s: %s", c->name, c->detail);
		cr_expect_str_empty(c->advice);
	}
	cr_assert_null(find(r, "selftest:tracepoint"), "no self-test unless asked");
	cr_assert_eq(host_report_verdict(r, HOST_NEEDS_DUMP, reason, sizeof(reason)), 0, "%s",
		     reason);
	cr_assert_eq(host_report_verdict(r, HOST_NEEDS_GROWTH, reason, sizeof(reason)), 0, "%s",
		     reason);
	cr_assert_eq(host_report_verdict(r, HOST_NEEDS_ALLOCATOR, reason, sizeof(reason)), 0, "%s",
		     reason);
	host_report_free(r);
	cr_assert_eq(host_require(HOST_NEEDS_ALLOCATOR, NULL), 0);
}

Test(host, only_the_needed_checks_run)
{
	struct host_report *r = NULL;

	cr_assert_eq(host_report_new(HOST_NEED_PTRACE, HOST_PROBE_SELFTEST, &r), 0);
	cr_assert_eq(host_report_count(r), 1);
	cr_assert_str_eq(host_report_check(r, 0)->name, "ptrace_scope");
	cr_assert_null(host_report_check(r, 1));
	host_report_free(r);
}

Test(host, bpf_selftest_passes_as_root)
{
	struct pms_error err = {{0}};
	struct host_report *r = NULL;
	const struct host_check *tp, *up;

	if (!is_root())
		cr_skip_test("needs root");
	cr_assert_eq(host_ensure_tracefs(NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(host_selftest(&err), 0, "%s", err.msg);

	/* The same through a report, as doctor runs it. */
	cr_assert_eq(host_report_new(HOST_NEEDS_GROWTH | HOST_NEEDS_ALLOCATOR,
				     HOST_PROBE_SELFTEST | HOST_PROBE_MOUNT, &r),
		     0);
	tp = find(r, "selftest:tracepoint");
	up = find(r, "selftest:uprobe");
	cr_assert_not_null(tp);
	cr_assert_not_null(up);
	cr_expect_eq(tp->status, HOST_OK, "%s", tp->detail);
	cr_expect_eq(up->status, HOST_OK, "%s", up->detail);
	host_report_free(r);
}

Test(host, unprivileged_is_told_which_capability)
{
	struct pms_error err = {{0}};
	struct host_report *r = NULL;
	char reason[512];
	uint64_t caps = ~0ULL;

	if (geteuid() != 0)
		cr_skip_test("needs root to become nobody");
	drop_privileges();
	cr_assert_eq(host_caps_self(&caps), 0);
	cr_assert_eq(caps, 0);

	cr_assert_eq(host_require(HOST_NEEDS_GROWTH, &err), -EPERM);
	cr_assert_not_null(strstr(err.msg, "CAP_BPF"), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "CAP_PERFMON"), "%s", err.msg);
	cr_assert_eq(pms_exit_code(-EPERM), PMS_EXIT_PRIVILEGE);

	cr_assert_eq(host_report_new(HOST_NEEDS_GROWTH | HOST_NEEDS_ALLOCATOR,
				     HOST_PROBE_SELFTEST | HOST_PROBE_MOUNT, &r),
		     0);
	cr_assert_eq(host_report_caps(r), 0);
	cr_expect_eq(find(r, "bpf-syscall")->status, HOST_DENIED);
	cr_expect_eq(find(r, "btf")->status, HOST_OK);
	cr_expect_eq(find(r, "uprobes")->status, HOST_DENIED, "%s", find(r, "uprobes")->detail);
	cr_expect_eq(find(r, "selftest:uprobe")->status, HOST_SKIPPED);
	cr_expect_neq(find(r, "exceptions:page_fault_user")->status, HOST_OK);
	cr_assert_eq(host_report_verdict(r, HOST_NEEDS_ALLOCATOR, reason, sizeof(reason)), -EPERM);
	/* Reading processes of one's own uid needs no capability, unless Yama restricts it. */
	if (access("/proc/sys/kernel/yama/ptrace_scope", F_OK) != 0) {
		cr_assert_eq(host_report_verdict(r, HOST_NEEDS_DUMP, reason, sizeof(reason)), 0,
			     "%s", reason);
		cr_assert_not_null(strstr(reason, "CAP_SYS_PTRACE"), "%s", reason);
	}
	host_report_free(r);
	cr_assert_eq(host_selftest(&err), -EPERM);
}
