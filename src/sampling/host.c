/* Host checks: kernel features, sysctls and this process's capabilities, judged per mode, plus a
 * self-test that runs a real tracepoint and uprobe program end to end (bpf/doctor.bpf.c). */
#include "host.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/perf_event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "doctor.skel.h"
#include "proc.h"

#define BTF_PATH	"/sys/kernel/btf/vmlinux"
#define TRACEFS		"/sys/kernel/tracing"
#define DEBUGFS_TRACING "/sys/kernel/debug/tracing"
#define UPROBE_TYPE	"/sys/bus/event_source/devices/uprobe/type"
#define LOCKDOWN	"/sys/kernel/security/lockdown"

#define N_TRACEPOINTS (sizeof(tracepoints) / sizeof(tracepoints[0]))
/* btf, bpf-syscall, ringbuf, 2 sysctls, lockdown, uprobes, tracefs, ptrace_scope, 2 self-tests,
 * the uprobe trap's cost, the watchpoint self-test */
#define N_OTHER_CHECKS 13
#define MAX_CHECKS     32
#define ROOT_HINT      "run as root (sudo)"

struct host_report {
	uint64_t caps;
	uid_t euid;
	size_t n;
	struct host_check checks[MAX_CHECKS];
	struct host_costs costs;
};

/* The tracepoints the growth event source attaches to; absent ones make it unable to run. */
static const struct {
	const char *category;
	const char *event;
} tracepoints[] = {
    {"exceptions", "page_fault_user"},
    {"exceptions", "page_fault_kernel"},
    {"kmem", "rss_stat"},
    {"syscalls", "sys_enter_mmap"},
    {"syscalls", "sys_exit_mmap"},
    {"syscalls", "sys_enter_munmap"},
    {"syscalls", "sys_exit_munmap"},
    {"syscalls", "sys_enter_mremap"},
    {"syscalls", "sys_exit_mremap"},
    {"syscalls", "sys_enter_brk"},
    {"syscalls", "sys_exit_brk"},
    {"syscalls", "sys_enter_madvise"},
    {"syscalls", "sys_exit_madvise"},
};

_Static_assert(N_TRACEPOINTS + N_OTHER_CHECKS <= MAX_CHECKS, "host_report holds every check");

/* ---- capabilities ---- */

const char *host_cap_name(int cap)
{
	switch (cap) {
	case HOST_CAP_SYS_PTRACE:
		return "CAP_SYS_PTRACE";
	case HOST_CAP_SYS_ADMIN:
		return "CAP_SYS_ADMIN";
	case HOST_CAP_PERFMON:
		return "CAP_PERFMON";
	case HOST_CAP_BPF:
		return "CAP_BPF";
	}
	return NULL;
}

int host_caps_self(uint64_t *mask)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {0};

	/* Raw syscall: libcap would be one more dependency for two words. */
	if (syscall(SYS_capget, &hdr, data) != 0)
		return -errno;
	*mask = (uint64_t)data[1].effective << 32 | data[0].effective;
	return 0;
}

int host_caps_parse(const char *status, const char *set, uint64_t *mask)
{
	size_t set_len = strlen(set);
	const char *line = status;
	uint64_t v = 0;
	int digits = 0;

	while (line && *line) {
		if (!strncmp(line, set, set_len) && line[set_len] == ':')
			break;
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	if (!line || !*line)
		return -EINVAL;
	line += set_len + 1;
	line += strspn(line, " \t");
	for (; *line && *line != '\n'; line++, digits++) {
		int d;

		if (*line >= '0' && *line <= '9')
			d = *line - '0';
		else if (*line >= 'a' && *line <= 'f')
			d = *line - 'a' + 10;
		else if (*line >= 'A' && *line <= 'F')
			d = *line - 'A' + 10;
		else
			return -EINVAL;
		if (digits >= 16)
			return -EINVAL;
		v = v << 4 | (uint64_t)d;
	}
	if (digits == 0)
		return -EINVAL;
	*mask = v;
	return 0;
}

int host_caps_pid(pid_t pid, const char *set, uint64_t *mask)
{
	char path[64], buf[8192];
	size_t used = 0;
	ssize_t len;
	int fd, err = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	while (used < sizeof(buf) - 1) {
		len = read(fd, buf + used, sizeof(buf) - 1 - used);
		if (len < 0 && errno == EINTR)
			continue;
		if (len < 0) {
			/* ESRCH: the process exited between open and read. */
			err = -errno;
			goto cleanup;
		}
		if (len == 0)
			break;
		used += (size_t)len;
	}
	buf[used] = '\0';
	err = host_caps_parse(buf, set, mask);
cleanup:
	close(fd);
	return err;
}

/* Tracing programs need both CAP_BPF and CAP_PERFMON; CAP_SYS_ADMIN still implies both. */
static bool can_trace(uint64_t caps)
{
	return host_cap_in(caps, HOST_CAP_SYS_ADMIN) ||
	       (host_cap_in(caps, HOST_CAP_BPF) && host_cap_in(caps, HOST_CAP_PERFMON));
}

/* ---- small readers ---- */

static int read_long(const char *path, long *out)
{
	char buf[64], *end;
	ssize_t len;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = read(fd, buf, sizeof(buf) - 1);
	if (len < 0) {
		err = -errno;
		goto cleanup;
	}
	buf[len] = '\0';
	errno = 0;
	*out = strtol(buf, &end, 10);
	if (errno || end == buf)
		err = -EINVAL;
cleanup:
	close(fd);
	return err;
}

/* ---- tracefs ---- */

static bool is_tracefs(const char *path)
{
	struct statfs s;

	return statfs(path, &s) == 0 && s.f_type == TRACEFS_MAGIC;
}

/* Where tracefs is mounted, or NULL. libbpf looks in the same two places. */
static const char *tracefs_root(void)
{
	if (is_tracefs(TRACEFS))
		return TRACEFS;
	if (is_tracefs(DEBUGFS_TRACING))
		return DEBUGFS_TRACING;
	return NULL;
}

int host_ensure_tracefs(bool *mounted, struct pms_error *err)
{
	int e;

	if (mounted)
		*mounted = false;
	if (tracefs_root())
		return 0;
	if (mount("nodev", TRACEFS, "tracefs", 0, NULL) == 0) {
		if (mounted)
			*mounted = true;
		return 0;
	}
	e = errno;
	if (e == ENODEV || e == ENOENT)
		return pms_error_set(err, PMS_ENOFEATURE,
				     "this kernel has no tracefs (CONFIG_TRACING): the growth "
				     "tracepoints need it");
	if (e == EPERM || e == EACCES)
		return pms_error_set(
		    err, EPERM,
		    "tracefs is not mounted and mounting it needs CAP_SYS_ADMIN: %s, "
		    "or mount it first (mount -t tracefs nodev " TRACEFS ")",
		    ROOT_HINT);
	return pms_error_set(err, e, "cannot mount tracefs at " TRACEFS ": %s", strerror(e));
}

/* Reads the tracepoint's id: 0, -ENOENT (no such tracepoint), -ENODEV (tracefs not mounted),
 * -EACCES or another -errno. */
static int tracepoint_id(const char *category, const char *event, long *id)
{
	const char *root = tracefs_root();
	char path[256];

	if (!root)
		return -ENODEV;
	if (strchr(category, '/') || strchr(event, '/') || category[0] == '.' || event[0] == '.')
		return -EINVAL;
	snprintf(path, sizeof(path), "%s/events/%s/%s/id", root, category, event);
	return read_long(path, id);
}

int host_tracepoint_exists(const char *category, const char *event)
{
	long id;
	int err = tracepoint_id(category, event, &id);

	if (err == 0)
		return 1;
	if (err == -ENOENT)
		return 0;
	if (err == -ENODEV)
		return -ENOENT;
	return err;
}

/* ---- report plumbing ---- */

static struct host_check *add_check(struct host_report *r, const char *name, unsigned needs)
{
	struct host_check *c = &r->checks[r->n++];

	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->needs = needs;
	c->status = HOST_OK;
	return c;
}

__attribute__((format(printf, 3, 4))) static void
set_result(struct host_check *c, enum host_status status, const char *fmt, ...)
{
	va_list ap;

	c->status = status;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 2, 3))) static void set_advice(struct host_check *c, const char *fmt,
							     ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->advice, sizeof(c->advice), fmt, ap);
	va_end(ap);
}

static const struct host_check *find_check(const struct host_report *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->checks[i].name, name))
			return &r->checks[i];
	return NULL;
}

static bool check_ok(const struct host_report *r, const char *name)
{
	const struct host_check *c = find_check(r, name);

	return c && c->status == HOST_OK;
}

/* ---- the checks ---- */

static void check_btf(struct host_report *r)
{
	struct host_check *c = add_check(r, "btf", HOST_NEED_BPF);

	if (faccessat(AT_FDCWD, BTF_PATH, R_OK, AT_EACCESS) == 0) {
		set_result(c, HOST_OK, BTF_PATH " (CO-RE relocates against it)");
	} else if (errno == ENOENT) {
		set_result(c, HOST_MISSING,
			   "no " BTF_PATH ": kernel built without CONFIG_DEBUG_INFO_BTF");
		set_advice(c, "use a kernel with BTF (most distributions enable it since 2020)");
	} else {
		set_result(c, HOST_DENIED, "cannot read " BTF_PATH ": %s", strerror(errno));
		set_advice(c, ROOT_HINT);
	}
}

/* Whether the bpf() syscall exists at all (a seccomp filter may also hide it with ENOSYS). */
static bool bpf_syscall_exists(void)
{
	/* An invalid command: EINVAL (or EPERM) when the syscall exists. */
	return !(syscall(SYS_bpf, -1, NULL, 0) < 0 && errno == ENOSYS);
}

static void check_bpf_syscall(struct host_report *r)
{
	struct host_check *c = add_check(r, "bpf-syscall", HOST_NEED_BPF);
	int ret, e;

	errno = 0;
	ret = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_TRACEPOINT, NULL);
	/* libbpf reports "unsupported" (0) for a refusal as well; errno still tells which. */
	e = ret < 0 ? -ret : errno;
	if (ret == 1) {
		set_result(c, HOST_OK, "bpf() loads tracepoint programs");
	} else if (!bpf_syscall_exists()) {
		set_result(c, HOST_MISSING,
			   "no bpf() syscall: kernel built without CONFIG_BPF_SYSCALL, or a "
			   "seccomp filter hides it");
		set_advice(c, "use a kernel with BPF; in a container, allow bpf() (--privileged)");
	} else if (!can_trace(r->caps)) {
		set_result(c, HOST_DENIED,
			   "loading tracing programs needs CAP_BPF and CAP_PERFMON (or "
			   "CAP_SYS_ADMIN)");
		set_advice(c, ROOT_HINT);
	} else if (e == EPERM || e == EACCES) {
		set_result(c, HOST_DENIED,
			   "bpf() refused a tracepoint program although this process has the "
			   "capabilities (%s): a seccomp filter or an LSM blocks it",
			   strerror(e));
		set_advice(c, "run outside the container, or allow bpf() in its seccomp profile");
	} else {
		set_result(c, HOST_MISSING, "the kernel cannot load tracepoint programs (%s)",
			   e ? strerror(e) : "unsupported");
		set_advice(c, "use a kernel built with CONFIG_BPF_EVENTS");
	}
}

static void check_ringbuf(struct host_report *r)
{
	struct host_check *c = add_check(r, "ringbuf", HOST_NEED_BPF);
	int ret, e;

	if (!check_ok(r, "bpf-syscall")) {
		set_result(c, HOST_SKIPPED, "not tried: bpf() is unusable");
		return;
	}
	errno = 0;
	ret = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL);
	e = ret < 0 ? -ret : errno;
	if (ret == 1) {
		set_result(c, HOST_OK, "BPF ring buffer maps work");
	} else if (e == EPERM || e == EACCES) {
		set_result(c, HOST_DENIED, "creating a ring buffer map was refused (%s)",
			   strerror(e));
		set_advice(c, ROOT_HINT);
	} else {
		set_result(c, HOST_MISSING, "no BPF ring buffer maps (they came in Linux 5.8)");
		set_advice(c, "use Linux 5.8 or newer");
	}
}

static void check_perf_paranoid(struct host_report *r)
{
	struct host_check *c = add_check(r, "perf_event_paranoid", HOST_NEED_BPF);
	long v;
	int err = read_long("/proc/sys/kernel/perf_event_paranoid", &v);

	if (err == -ENOENT) {
		set_result(c, HOST_MISSING,
			   "no perf events (CONFIG_PERF_EVENTS): BPF cannot attach");
		set_advice(c, "use a kernel with perf events");
	} else if (err) {
		set_result(c, HOST_OK, "unreadable (%s); it does not bind CAP_PERFMON",
			   strerror(-err));
	} else if (host_cap_in(r->caps, HOST_CAP_PERFMON) ||
		   host_cap_in(r->caps, HOST_CAP_SYS_ADMIN)) {
		set_result(c, HOST_OK, "kernel.perf_event_paranoid=%ld: no limit with CAP_PERFMON",
			   v);
	} else {
		set_result(c, HOST_DENIED,
			   "kernel.perf_event_paranoid=%ld; BPF tracing needs CAP_PERFMON whatever "
			   "its value",
			   v);
		set_advice(c, ROOT_HINT);
	}
}

static void check_unpriv_bpf(struct host_report *r)
{
	struct host_check *c = add_check(r, "unprivileged_bpf_disabled", HOST_NEED_BPF);
	bool bpf_cap =
	    host_cap_in(r->caps, HOST_CAP_BPF) || host_cap_in(r->caps, HOST_CAP_SYS_ADMIN);
	long v;
	int err = read_long("/proc/sys/kernel/unprivileged_bpf_disabled", &v);

	if (err)
		set_result(c, HOST_OK, "unreadable (%s); it does not bind CAP_BPF", strerror(-err));
	else if (v == 0)
		set_result(c, HOST_OK,
			   "kernel.unprivileged_bpf_disabled=0 (tracing still needs CAP_BPF)");
	else if (bpf_cap)
		set_result(c, HOST_OK,
			   "kernel.unprivileged_bpf_disabled=%ld: no limit with CAP_BPF", v);
	else {
		set_result(c, HOST_DENIED,
			   "kernel.unprivileged_bpf_disabled=%ld: bpf() needs CAP_BPF", v);
		set_advice(c, ROOT_HINT);
	}
}

/* Lockdown "confidentiality" (some Secure Boot setups) forbids BPF reading kernel memory, which
 * the samplers do to find the current thread's state. */
static void check_lockdown(struct host_report *r)
{
	struct host_check *c = add_check(r, "lockdown", HOST_NEED_BPF);
	char buf[128] = "";
	const char *open_br, *close_br;
	ssize_t len;
	int fd = open(LOCKDOWN, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		set_result(c, HOST_OK, "not reported (no lockdown LSM, or securityfs not mounted)");
		return;
	}
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[len > 0 ? len : 0] = '\0';
	open_br = strchr(buf, '[');
	close_br = open_br ? strchr(open_br, ']') : NULL;
	if (!open_br || !close_br) {
		set_result(c, HOST_OK, "not reported");
		return;
	}
	if (!strncmp(open_br + 1, "confidentiality", 15)) {
		set_result(c, HOST_MISSING,
			   "kernel lockdown=confidentiality: BPF may not read kernel memory");
		set_advice(c, "boot with lockdown=integrity or none (Secure Boot policy)");
	} else {
		set_result(c, HOST_OK, "lockdown=%.*s", (int)(close_br - open_br - 1), open_br + 1);
	}
}

static void check_tracefs(struct host_report *r, bool may_mount)
{
	struct host_check *c = add_check(r, "tracefs", HOST_NEED_TRACEPOINTS);
	struct pms_error e = {{0}};
	bool mounted = false;
	const char *root;
	int err;

	if (!may_mount) {
		root = tracefs_root();
		if (root) {
			set_result(c, HOST_OK, "mounted at %s", root);
		} else {
			set_result(c, HOST_MISSING, "not mounted (and not mounting it, as asked)");
			set_advice(c, "mount -t tracefs nodev " TRACEFS
				      "; pymemspy record does it when run as root");
		}
		return;
	}
	err = host_ensure_tracefs(&mounted, &e);
	if (!err && mounted) {
		set_result(c, HOST_OK, "was not mounted: mounted it at " TRACEFS " (it stays)");
	} else if (!err) {
		set_result(c, HOST_OK, "mounted at %s", tracefs_root());
	} else if (err == -EPERM) {
		set_result(c, HOST_DENIED, "not mounted, and mounting it needs CAP_SYS_ADMIN");
		set_advice(c, "%s, or mount -t tracefs nodev " TRACEFS, ROOT_HINT);
	} else {
		set_result(c, HOST_MISSING, "%s", e.msg);
		set_advice(c, "use a kernel with CONFIG_TRACING");
	}
}

static void check_tracepoints(struct host_report *r)
{
	bool tracefs = check_ok(r, "tracefs");

	for (size_t i = 0; i < N_TRACEPOINTS; i++) {
		const char *cat = tracepoints[i].category, *ev = tracepoints[i].event;
		char name[sizeof(((struct host_check *)0)->name)];
		struct host_check *c;
		long id;
		int err;

		snprintf(name, sizeof(name), "%s:%s", cat, ev);
		c = add_check(r, name, HOST_NEED_TRACEPOINTS);
		if (!tracefs) {
			set_result(c, HOST_SKIPPED, "not checked: tracefs is unavailable");
			continue;
		}
		err = tracepoint_id(cat, ev, &id);
		if (!err) {
			set_result(c, HOST_OK, "tracepoint id %ld", id);
		} else if (err == -ENOENT) {
			set_result(c, HOST_MISSING, "not in this kernel");
			if (!strcmp(cat, "syscalls"))
				set_advice(c, "use a kernel with CONFIG_FTRACE_SYSCALLS");
			else
				set_advice(c, "use a newer kernel (x86-64, Linux 5.5+)");
		} else if (err == -EACCES || err == -EPERM) {
			set_result(
			    c, HOST_DENIED,
			    "tracefs is readable by root only (or with CAP_DAC_READ_SEARCH)");
			set_advice(c, ROOT_HINT);
		} else {
			set_result(c, HOST_MISSING, "cannot read its id: %s", strerror(-err));
		}
	}
}

static void check_ptrace_scope(struct host_report *r)
{
	struct host_check *c = add_check(r, "ptrace_scope", HOST_NEED_PTRACE);
	bool cap = host_cap_in(r->caps, HOST_CAP_SYS_PTRACE);
	long v;
	int err = read_long("/proc/sys/kernel/yama/ptrace_scope", &v);

	if (err) {
		set_result(c, HOST_OK, "Yama is not active: classic ptrace rules");
	} else if (v == 0) {
		set_result(c, HOST_OK, "kernel.yama.ptrace_scope=0: classic ptrace rules");
	} else if (v == 3) {
		set_result(c, HOST_MISSING,
			   "kernel.yama.ptrace_scope=3: no process may read another, root "
			   "included, until reboot");
		set_advice(c, "reboot with kernel.yama.ptrace_scope at most 2");
	} else if (cap) {
		set_result(c, HOST_OK, "kernel.yama.ptrace_scope=%ld: no limit with CAP_SYS_PTRACE",
			   v);
	} else {
		set_result(c, HOST_DENIED, "kernel.yama.ptrace_scope=%ld: %s", v,
			   v == 1 ? "only a target's ancestors may read it, unless they have "
				    "CAP_SYS_PTRACE"
				  : "reading another process needs CAP_SYS_PTRACE");
		set_advice(c, "%s, or sysctl kernel.yama.ptrace_scope=0", ROOT_HINT);
	}
}

/* ---- the BPF self-test ---- */

#define SELFTEST_TOKEN	 0x706d73646f63746fULL /* "pmsdocto": what the uprobe must send back */
#define SELFTEST_FUNC	 "pms_host_selftest_target"
#define SELFTEST_WAIT_MS 1000

/* The uprobe's target. Not static and never inlined, cloned or specialised, so that its symbol
 * is the code that runs; the asm keeps the call from being optimised away. */
#if defined(__clang__)
__attribute__((noinline, used))
#else
__attribute__((noipa, used))
#endif
uint64_t
pms_host_selftest_target(uint64_t token);

uint64_t pms_host_selftest_target(uint64_t token)
{
	__asm__ volatile("" : "+r"(token)::"memory");
	return token;
}

struct selftest {
	struct host_check *tp, *up; /* NULL: that half is not wanted */
	uint64_t caps;		    /* to tell a refusal from a verifier rejection (both EACCES) */
	int tp_err, up_err;
	uint64_t fault_page;
	bool fault_seen, token_seen;
};

static int on_event(void *ctx, void *data, size_t size)
{
	struct selftest *st = ctx;
	uint64_t v;

	if (size < sizeof(v))
		return 0;
	memcpy(&v, data, sizeof(v));
	if (v == SELFTEST_TOKEN)
		st->token_seen = true;
	else if (st->fault_page && v - st->fault_page < 4096)
		st->fault_seen = true;
	return 0;
}

/* Marks a half of the self-test failed at step `what`. A load that fails with EACCES although we
 * have the capabilities is the verifier refusing the program, not a privilege matter. */
static void selftest_fail(const struct selftest *st, struct host_check *c, int *errp, int err,
			  const char *what)
{
	bool loading = !strncmp(what, "loading", 7);

	if (!c || c->status != HOST_OK)
		return;
	if (err == -EPERM || (err == -EACCES && (!loading || !can_trace(st->caps)))) {
		set_result(c, HOST_DENIED, "%s: %s", what, strerror(-err));
		set_advice(c, ROOT_HINT);
	} else {
		set_result(c, HOST_MISSING, "%s: %s", what, strerror(-err));
		set_advice(c, "run with --verbose to see libbpf's messages");
	}
	if (c->status == HOST_DENIED)
		*errp = -EPERM;
	else
		*errp = err == -EACCES || err == -EPERM ? -PMS_ENOFEATURE : err;
}

/* The file and file offset where `addr` (code of this process) is mapped: the uprobe's target
 * when the binary was stripped of the symbol. */
int host_self_code_offset(uintptr_t addr, char *path, size_t path_len, uint64_t *off)
{
	struct proc *self = NULL;
	const struct proc_map *m;
	int err = proc_open(getpid(), &self, NULL);

	if (err)
		return err;
	m = proc_map_find(self, addr);
	if (!m || m->path[0] != '/') {
		err = -ENOENT;
		goto cleanup;
	}
	snprintf(path, path_len, "%s", m->path);
	*off = addr - m->start + m->offset;
cleanup:
	proc_close(self);
	return err;
}

/* Creates (and drops) a perf uprobe on this binary, without BPF: whether this process may use
 * uprobes at all. The rule changed across kernels (CAP_SYS_ADMIN, then CAP_PERFMON from 5.8, then
 * CAP_SYS_ADMIN again from 6.16 and in stable kernels since mid-2025), so ask the kernel. */
static int try_uprobe(long type)
{
	struct perf_event_attr attr;
	char path[512];
	uint64_t off = 0;
	int fd, err;

	err = host_self_code_offset((uintptr_t)&pms_host_selftest_target, path, sizeof(path), &off);
	if (err)
		return err;
	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = (uint32_t)type;
	attr.uprobe_path = (uint64_t)(uintptr_t)path;
	attr.probe_offset = off;
	attr.disabled = 1;
	fd = (int)syscall(SYS_perf_event_open, &attr, getpid(), -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static void check_uprobes(struct host_report *r)
{
	struct host_check *c = add_check(r, "uprobes", HOST_NEED_UPROBES);
	long type;
	int err = read_long(UPROBE_TYPE, &type);

	if (err == -ENOENT) {
		set_result(c, HOST_MISSING,
			   "no uprobe PMU: kernel built without CONFIG_UPROBE_EVENTS");
		set_advice(c, "use a kernel with uprobes (--events growth does not need them)");
		return;
	} else if (err) {
		set_result(c, HOST_DENIED, "cannot read " UPROBE_TYPE ": %s", strerror(-err));
		set_advice(c, ROOT_HINT);
		return;
	}
	err = try_uprobe(type);
	if (!err) {
		set_result(c, HOST_OK,
			   "uprobe PMU (perf type %ld) lets this process create uprobes", type);
	} else if (err == -EACCES || err == -EPERM) {
		set_result(
		    c, HOST_DENIED,
		    "the kernel refuses this process uprobes: they need CAP_SYS_ADMIN (Linux "
		    "6.16+ and recent stable kernels no longer accept CAP_PERFMON)");
		set_advice(c, ROOT_HINT);
	} else {
		set_result(c, HOST_MISSING, "creating a uprobe failed: %s", strerror(-err));
		set_advice(c, "use a kernel with CONFIG_UPROBES");
	}
}

static struct bpf_link *attach_self_uprobe(struct bpf_program *prog, char *how, size_t how_len)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = SELFTEST_FUNC);
	struct bpf_link *link;
	char path[4096];
	uint64_t off = 0;
	int err;

	/* Our pid only: libbpf's per-process attach, so other processes running this binary do
	 * not fire it. */
	link = bpf_program__attach_uprobe_opts(prog, getpid(), "/proc/self/exe", 0, &opts);
	if (link) {
		snprintf(how, how_len, "%s in /proc/self/exe", SELFTEST_FUNC);
		return link;
	}
	err = -errno;
	if (err != -ENOENT && err != -ESRCH)
		return NULL;
	/* A stripped binary has no symbol to look up: locate the function's code ourselves. */
	err = host_self_code_offset((uintptr_t)&pms_host_selftest_target, path, sizeof(path), &off);
	if (err) {
		errno = -err;
		return NULL;
	}
	opts.func_name = NULL;
	link = bpf_program__attach_uprobe_opts(prog, getpid(), path, (size_t)off, &opts);
	if (link)
		snprintf(how, how_len, "%s+0x%" PRIx64, path, off);
	return link;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs the wanted halves of the self-test and fills their checks (which start HOST_OK). */
static void selftest_run(struct selftest *st)
{
	struct doctor_bpf *skel = NULL;
	struct ring_buffer *rb = NULL;
	void *page = MAP_FAILED;
	size_t page_size = (size_t)sysconf(_SC_PAGESIZE);
	char how[4200] = "";
	double deadline;
	int err;

	skel = doctor_bpf__open();
	if (!skel) {
		err = -errno;
		selftest_fail(st, st->tp, &st->tp_err, err, "opening the BPF object");
		selftest_fail(st, st->up, &st->up_err, err, "opening the BPF object");
		goto cleanup;
	}
	skel->rodata->self_tgid = (uint32_t)getpid();
	/* Load only the programs whose attach point this kernel has. */
	bpf_program__set_autoload(skel->progs.doctor_page_fault, st->tp != NULL);
	bpf_program__set_autoload(skel->progs.doctor_uprobe, st->up != NULL);
	err = doctor_bpf__load(skel);
	if (err) {
		selftest_fail(st, st->tp, &st->tp_err, err, "loading the BPF programs");
		selftest_fail(st, st->up, &st->up_err, err, "loading the BPF programs");
		goto cleanup;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, st, NULL);
	if (!rb) {
		err = -errno;
		selftest_fail(st, st->tp, &st->tp_err, err, "opening the ring buffer");
		selftest_fail(st, st->up, &st->up_err, err, "opening the ring buffer");
		goto cleanup;
	}

	if (st->tp) {
		skel->links.doctor_page_fault = bpf_program__attach(skel->progs.doctor_page_fault);
		if (!skel->links.doctor_page_fault) {
			selftest_fail(st, st->tp, &st->tp_err, -errno,
				      "attaching to exceptions:page_fault_user");
		} else {
			page = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (page == MAP_FAILED) {
				selftest_fail(st, st->tp, &st->tp_err, -errno, "mapping a page");
			} else {
				st->fault_page = (uintptr_t)page;
				/* Publish the page before touching it: the fault is the event. */
				__atomic_store_n(&skel->bss->fault_page, (uint64_t)(uintptr_t)page,
						 __ATOMIC_SEQ_CST);
				*(volatile char *)page = 1;
			}
		}
	}
	if (st->up) {
		skel->links.doctor_uprobe =
		    attach_self_uprobe(skel->progs.doctor_uprobe, how, sizeof(how));
		if (!skel->links.doctor_uprobe) {
			selftest_fail(st, st->up, &st->up_err, -errno,
				      "attaching a uprobe to " SELFTEST_FUNC " in /proc/self/exe");
		} else {
			/* Through a volatile, so the compiler cannot specialise the call. */
			volatile uint64_t token = SELFTEST_TOKEN;

			pms_host_selftest_target(token);
		}
	}

	deadline = now_ms() + SELFTEST_WAIT_MS;
	while ((st->tp && st->tp->status == HOST_OK && !st->fault_seen) ||
	       (st->up && st->up->status == HOST_OK && !st->token_seen)) {
		int left = (int)(deadline - now_ms());

		if (left <= 0)
			break;
		err = ring_buffer__poll(rb, left < 50 ? left : 50);
		if (err < 0 && err != -EINTR) {
			selftest_fail(st, st->tp, &st->tp_err, err, "polling the ring buffer");
			selftest_fail(st, st->up, &st->up_err, err, "polling the ring buffer");
			break;
		}
	}

	if (st->tp && st->tp->status == HOST_OK) {
		if (st->fault_seen)
			set_result(st->tp, HOST_OK,
				   "a page fault of ours came back through the ring buffer");
		else if (skel->bss->ringbuf_full)
			selftest_fail(st, st->tp, &st->tp_err, -ENOSPC,
				      "the ring buffer refused events");
		else
			selftest_fail(st, st->tp, &st->tp_err, -ETIME,
				      skel->bss->tracepoint_hits
					  ? "the program ran but its event never arrived"
					  : "attached, but the program never saw our page fault");
	}
	if (st->up && st->up->status == HOST_OK) {
		if (st->token_seen)
			set_result(st->up, HOST_OK, "uprobe on %s fired; its argument came back",
				   how);
		else if (skel->bss->ringbuf_full)
			selftest_fail(st, st->up, &st->up_err, -ENOSPC,
				      "the ring buffer refused events");
		else
			selftest_fail(st, st->up, &st->up_err, -ETIME,
				      skel->bss->uprobe_hits
					  ? "the program ran but its event never arrived"
					  : "attached, but the uprobe never fired");
	}

cleanup:
	if (page != MAP_FAILED)
		munmap(page, page_size);
	ring_buffer__free(rb);
	doctor_bpf__destroy(skel);
}

/* Adds the self-test checks to a report, running what the checks before them allow. */
static void check_selftest(struct host_report *r, unsigned needs)
{
	struct selftest st = {.caps = r->caps};
	const char *blocker = NULL;

	if (!check_ok(r, "btf"))
		blocker = "btf";
	else if (!check_ok(r, "bpf-syscall"))
		blocker = "bpf-syscall";
	else if (!check_ok(r, "ringbuf"))
		blocker = "ringbuf";
	if (needs & HOST_NEED_TRACEPOINTS) {
		st.tp = add_check(r, "selftest:tracepoint", HOST_NEED_TRACEPOINTS);
		if (blocker || !check_ok(r, "exceptions:page_fault_user")) {
			set_result(st.tp, HOST_SKIPPED, "not run: needs %s",
				   blocker ? blocker : "exceptions:page_fault_user");
			st.tp = NULL;
		}
	}
	if (needs & HOST_NEED_UPROBES) {
		st.up = add_check(r, "selftest:uprobe", HOST_NEED_UPROBES);
		if (blocker || !check_ok(r, "uprobes")) {
			set_result(st.up, HOST_SKIPPED, "not run: needs %s",
				   blocker ? blocker : "uprobes");
			st.up = NULL;
		}
	}
	if (st.tp || st.up)
		selftest_run(&st);
}

int host_selftest(struct pms_error *err)
{
	struct host_check tp = {.name = "selftest:tracepoint", .status = HOST_OK};
	struct host_check up = {.name = "selftest:uprobe", .status = HOST_OK};
	struct selftest st = {.tp = &tp, .up = &up};
	int exists = host_tracepoint_exists("exceptions", "page_fault_user");

	if (host_caps_self(&st.caps))
		st.caps = 0;

	if (exists == 0)
		return pms_error_set(err, PMS_ENOFEATURE,
				     "self-test: this kernel has no exceptions:page_fault_user");
	if (exists < 0)
		return pms_error_set(err,
				     exists == -ENOENT	 ? PMS_ENOFEATURE
				     : exists == -EACCES ? EPERM
							 : exists,
				     "self-test: cannot look up exceptions:page_fault_user: %s",
				     exists == -ENOENT ? "tracefs is not mounted"
						       : strerror(-exists));
	selftest_run(&st);
	if (st.tp_err)
		return pms_error_set(err, st.tp_err, "self-test, tracepoint: %s", tp.detail);
	if (st.up_err)
		return pms_error_set(err, st.up_err, "self-test, uprobe: %s", up.detail);
	return 0;
}

/* ---- what the features cost here ---- */

/* Whether hardware write watchpoints trap here, and what a trap costs. They can open and never
 * trap (a hypervisor that does not pass the debug registers through): only a real write tells. */
static void check_watchpoint(struct host_report *r)
{
	struct host_check *c = add_check(r, "selftest:watchpoint", HOST_NEED_WATCHPOINTS);
	struct hostcost_watch *w = &r->costs.watch;
	int err = hostcost_watchpoint(w);

	if (err == -EACCES || err == -EPERM) {
		set_result(c, HOST_DENIED, "perf_event_open(PERF_TYPE_BREAKPOINT) refused: %s",
			   strerror(-err));
		set_advice(c, "grant CAP_PERFMON, or %s", ROOT_HINT);
	} else if (err == -ENOSPC) {
		set_result(c, HOST_MISSING,
			   "every hardware debug register is taken (by a debugger's or perf's "
			   "breakpoints?)");
		set_advice(c, "--events survivors needs one; use --events growth or malloc");
	} else if (err) {
		set_result(c, HOST_MISSING, "no hardware breakpoints: perf_event_open: %s",
			   strerror(-err));
		set_advice(c, "--events survivors needs them; use --events growth or malloc");
	} else if (w->traps * 2 < w->writes) {
		r->costs.watch_measured = true;
		set_result(c, HOST_MISSING,
			   "a write watchpoint on a variable of ours opened, but %llu of %u writes "
			   "trapped: hardware watchpoints do not work on this host",
			   (unsigned long long)w->traps, w->writes);
		set_advice(c, "--events survivors needs them; use --events growth or malloc");
	} else {
		r->costs.watch_measured = true;
		set_result(c, HOST_OK,
			   "a write watchpoint on a variable of ours trapped on %llu of %u writes, "
			   "%.1f us a trap",
			   (unsigned long long)w->traps, w->writes, w->trap_ns / 1e3);
	}
}

/* What one uprobe trap costs here: the allocator sources pay it on every probed call. */
static void check_uprobe_cost(struct host_report *r)
{
	struct host_check *c = add_check(r, "cost:uprobe-trap", HOST_NEED_UPROBES);
	struct hostcost_uprobe *u = &r->costs.uprobe;
	long type;
	int err;

	if (!check_ok(r, "uprobes")) {
		set_result(c, HOST_SKIPPED, "not run: needs uprobes");
		return;
	}
	err = host_uprobe_pmu_type(&type);
	if (!err)
		err = hostcost_uprobe(type, u);
	if (err) {
		set_result(c, err == -EACCES || err == -EPERM ? HOST_DENIED : HOST_MISSING,
			   "timing a uprobe on our own code failed: %s", strerror(-err));
		return;
	}
	r->costs.uprobe_measured = true;
	set_result(c, HOST_OK,
		   "a uprobe trap costs %.2f us on an instruction run out of line, %.2f us on an "
		   "emulated one; a return probe adds %.2f us",
		   u->sstep_ns / 1e3, u->emulated_ns / 1e3, u->return_ns / 1e3);
}

void host_cpu(char *model, size_t len, bool *hypervisor)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[1024];

	snprintf(model, len, "unknown");
	*hypervisor = false;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (!colon)
			continue;
		if (!strncmp(line, "model name", 10) && !strcmp(model, "unknown")) {
			colon += strspn(colon + 1, " \t") + 1;
			colon[strcspn(colon, "\n")] = 0;
			snprintf(model, len, "%s", colon);
		} else if (!strncmp(line, "flags", 5)) {
			*hypervisor = strstr(colon, " hypervisor") != NULL;
			break; /* the first CPU says it */
		}
	}
	fclose(f);
}

/* ---- reports and verdicts ---- */

int host_uprobe_pmu_type(long *type)
{
	return read_long(UPROBE_TYPE, type);
}

int host_report_new(unsigned needs, unsigned flags, struct host_report **out)
{
	struct host_report *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->euid = geteuid();
	if (host_caps_self(&r->caps))
		r->caps = 0; /* judge as unprivileged: the checks then say what is refused */
	/* Tracepoints and uprobes are only reached through BPF programs. */
	if (needs & (HOST_NEED_TRACEPOINTS | HOST_NEED_UPROBES))
		needs |= HOST_NEED_BPF;

	if (needs & HOST_NEED_BPF) {
		check_btf(r);
		check_bpf_syscall(r);
		check_ringbuf(r);
		check_perf_paranoid(r);
		check_unpriv_bpf(r);
		check_lockdown(r);
	}
	if (needs & HOST_NEED_UPROBES)
		check_uprobes(r);
	if (needs & HOST_NEED_TRACEPOINTS) {
		check_tracefs(r, flags & HOST_PROBE_MOUNT);
		check_tracepoints(r);
	}
	if (needs & HOST_NEED_PTRACE)
		check_ptrace_scope(r);
	if ((flags & HOST_PROBE_SELFTEST) && (needs & (HOST_NEED_TRACEPOINTS | HOST_NEED_UPROBES)))
		check_selftest(r, needs);
	if ((flags & HOST_PROBE_SELFTEST) && (needs & HOST_NEED_UPROBES))
		check_uprobe_cost(r);
	if (needs & HOST_NEED_WATCHPOINTS)
		check_watchpoint(r);
	*out = r;
	return 0;
}

void host_report_free(struct host_report *r)
{
	free(r);
}

size_t host_report_count(const struct host_report *r)
{
	return r->n;
}

const struct host_check *host_report_check(const struct host_report *r, size_t i)
{
	return i < r->n ? &r->checks[i] : NULL;
}

uint64_t host_report_caps(const struct host_report *r)
{
	return r->caps;
}

const struct host_costs *host_report_costs(const struct host_report *r)
{
	return &r->costs;
}

static void describe_check(const struct host_check *c, char *reason, size_t len)
{
	if (c->advice[0])
		snprintf(reason, len, "%s: %s; %s", c->name, c->detail, c->advice);
	else
		snprintf(reason, len, "%s: %s", c->name, c->detail);
}

int host_report_verdict(const struct host_report *r, unsigned needs, char *reason, size_t len)
{
	/* Missing features first: more privileges would not fix those, so they are the news. */
	for (size_t i = 0; i < r->n; i++)
		if ((r->checks[i].needs & needs) && r->checks[i].status == HOST_MISSING) {
			describe_check(&r->checks[i], reason, len);
			return -PMS_ENOFEATURE;
		}
	if ((needs & (HOST_NEED_BPF | HOST_NEED_TRACEPOINTS | HOST_NEED_UPROBES)) &&
	    !can_trace(r->caps)) {
		bool bpf = host_cap_in(r->caps, HOST_CAP_BPF);
		bool perfmon = host_cap_in(r->caps, HOST_CAP_PERFMON);

		snprintf(reason, len,
			 "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); this process lacks %s: "
			 "%s",
			 !bpf && !perfmon ? "both"
			 : !bpf		  ? "CAP_BPF"
					  : "CAP_PERFMON",
			 ROOT_HINT);
		return -EPERM;
	}
	for (size_t i = 0; i < r->n; i++)
		if ((r->checks[i].needs & needs) && r->checks[i].status == HOST_DENIED) {
			describe_check(&r->checks[i], reason, len);
			return -EPERM;
		}
	if ((needs & HOST_NEED_PTRACE) && !host_cap_in(r->caps, HOST_CAP_SYS_PTRACE)) {
		snprintf(reason, len,
			 "only for processes of uid %u that hold no capability this one lacks; any "
			 "other needs CAP_SYS_PTRACE: %s",
			 (unsigned)r->euid, ROOT_HINT);
		return 0;
	}
	snprintf(reason, len, "every check it needs passed");
	return 0;
}

int host_require(unsigned needs, struct pms_error *err)
{
	struct host_report *r = NULL;
	char reason[512];
	int ret = host_report_new(needs, HOST_PROBE_MOUNT, &r);

	if (ret)
		return pms_error_set(err, -ret, "checking the host: %s", strerror(-ret));
	ret = host_report_verdict(r, needs, reason, sizeof(reason));
	if (ret)
		pms_error_set(err, -ret, "%s", reason);
	host_report_free(r);
	return ret;
}
