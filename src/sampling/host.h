/* Host checks: what this kernel and this process's privileges allow, asked before attaching, so
 * that a missing piece becomes one clear message ("needs CAP_BPF", "this kernel has no uprobes")
 * instead of an EPERM from deep inside libbpf. `pymemspy doctor` prints every check; record, dump
 * and the others call host_require() with what their mode needs. */
#ifndef PMS_HOST_H
#define PMS_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errors.h"
#include "hostcost.h"

/* The capabilities pymemspy cares about (their numbers in linux/capability.h). */
enum host_cap {
	HOST_CAP_SYS_PTRACE = 19, /* read any process's memory, whatever its uid */
	HOST_CAP_SYS_ADMIN =
	    21,		       /* implies CAP_BPF and CAP_PERFMON; uprobes (Linux 6.16+); tracefs */
	HOST_CAP_PERFMON = 38, /* tracing BPF programs, perf events (Linux 5.8+) */
	HOST_CAP_BPF = 39,     /* the bpf() syscall: maps and programs (Linux 5.8+) */
};

/* What a mode needs from the host; combine with |. */
enum host_need {
	HOST_NEED_PTRACE = 1u << 0,	 /* read the target's memory (process_vm_readv) */
	HOST_NEED_BPF = 1u << 1,	 /* load tracing BPF programs (BTF, bpf(), ring buffers) */
	HOST_NEED_TRACEPOINTS = 1u << 2, /* the memory tracepoints of --events growth (tracefs) */
	HOST_NEED_UPROBES = 1u << 3,	 /* uprobes on the target's allocator functions */
	HOST_NEED_WATCHPOINTS = 1u << 4, /* hardware write watchpoints that trap (survivors) */
};

/* What each mode needs. record also reads the target's memory (to find the interpreter and name
 * code objects), hence HOST_NEED_PTRACE. */
#define HOST_NEEDS_DUMP	     HOST_NEED_PTRACE
#define HOST_NEEDS_GROWTH    (HOST_NEED_PTRACE | HOST_NEED_BPF | HOST_NEED_TRACEPOINTS)
#define HOST_NEEDS_ALLOCATOR (HOST_NEED_PTRACE | HOST_NEED_BPF | HOST_NEED_UPROBES)
#define HOST_NEEDS_SURVIVORS (HOST_NEEDS_GROWTH | HOST_NEED_WATCHPOINTS)

/* The outcome of one check. */
enum host_status {
	HOST_OK,      /* present and usable by this process */
	HOST_MISSING, /* this kernel or host lacks it: more privileges would not help */
	HOST_DENIED,  /* present (or unknowable) but refused to this process: privileges would help
		       */
	HOST_SKIPPED, /* not tried, because something it depends on already failed */
};

/* One check: a stable name (e.g. "btf", "exceptions:page_fault_user"), what it found, and what
 * to do about it when it is not HOST_OK (advice is empty then). */
struct host_check {
	char name[48];
	unsigned needs; /* the enum host_need bits this check serves */
	enum host_status status;
	char detail[192];
	char advice[192];
};

/* Options of host_report_new(). */
enum host_probe_flag {
	HOST_PROBE_MOUNT =
	    1u << 0, /* mount tracefs at /sys/kernel/tracing when absent and allowed */
	HOST_PROBE_SELFTEST = 1u << 1, /* also load, attach and trigger doctor's BPF programs, and
					* time a uprobe trap */
};

/* What the features cost here, as far as the report measured them (the watchpoint self-test
 * runs whenever HOST_NEED_WATCHPOINTS is asked; the uprobe timing with HOST_PROBE_SELFTEST). */
struct host_costs {
	bool uprobe_measured;
	struct hostcost_uprobe uprobe;
	bool watch_measured; /* the watchpoint could be opened and written */
	struct hostcost_watch watch;
};

/* The CPU's model name (from /proc/cpuinfo, "unknown" when absent) and whether the kernel runs
 * under a hypervisor (the cpu flag): the host facts every figure should carry. */
void host_cpu(char *model, size_t len, bool *hypervisor);

/* The results of the checks serving some needs, taken once (opaque). */
struct host_report;

/* Runs the checks serving `needs` (a mask of enum host_need) with `flags` (enum
 * host_probe_flag) and stores a new report in *out. A failing check is a result, not an error:
 * this fails only with -ENOMEM. With HOST_PROBE_MOUNT the host may be changed (tracefs mounted);
 * the "tracefs" check's detail then says so. */
int host_report_new(unsigned needs, unsigned flags, struct host_report **out);
/* Frees a report; NULL is fine. */
void host_report_free(struct host_report *r);
/* Number of checks in the report, in a fixed order. */
size_t host_report_count(const struct host_report *r);
/* The i-th check (i < host_report_count), valid until the report is freed. */
const struct host_check *host_report_check(const struct host_report *r, size_t i);
/* The effective capabilities (bit n = capability n) the checks were judged against. */
uint64_t host_report_caps(const struct host_report *r);
/* The trap costs the checks measured (valid until the report is freed). */
const struct host_costs *host_report_costs(const struct host_report *r);
/* Whether a mode needing `needs` can run, judged from the report: 0 when it can, -EPERM when
 * only privileges are missing, -PMS_ENOFEATURE when the host lacks something. `reason` always
 * receives one sentence: why not, or a caveat ("only processes of uid 1000"), or that all is
 * well. Needs the report was not built for count as unchecked, hence fine. */
int host_report_verdict(const struct host_report *r, unsigned needs, char *reason, size_t len);

/* Checks what `needs` requires (mounting tracefs if absent and allowed) and returns 0, -EPERM
 * with a message naming the missing capability and the fix, -PMS_ENOFEATURE naming the missing
 * feature, or -ENOMEM. For record and dump, before they attach. */
int host_require(unsigned needs, struct pms_error *err);

/* Makes sure tracefs is mounted (at /sys/kernel/tracing or under debugfs), mounting it at
 * /sys/kernel/tracing when absent and this process may (CAP_SYS_ADMIN); *mounted (may be NULL)
 * tells whether this call mounted it. 0, -EPERM (not mounted and may not mount) or
 * -PMS_ENOFEATURE (kernel without tracefs), with a message. */
int host_ensure_tracefs(bool *mounted, struct pms_error *err);

/* Whether tracepoint category:event exists, from tracefs: 1 yes, 0 no, -EACCES when tracefs is
 * not readable by this process, -ENOENT when tracefs is not mounted. */
int host_tracepoint_exists(const char *category, const char *event);

/* Loads doctor's BPF programs, attaches a tracepoint (exceptions:page_fault_user) and a uprobe on
 * a function of this very binary, triggers both and checks that their events came back through
 * the ring buffer. 0 when both did; else -EPERM, -PMS_ENOFEATURE, -ETIME (attached but no event)
 * or another -errno, with a message saying which part failed. Takes well under a second. */
int host_selftest(struct pms_error *err);

/* The file (as this process sees it) and file offset where `addr`, code of this process, is
 * mapped: what a uprobe on our own code takes, symbol or not. 0, -ENOENT or -errno. */
int host_self_code_offset(uintptr_t addr, char *path, size_t path_len, uint64_t *off);

/* The perf type of the uprobe PMU, what perf_event_open takes to create a uprobe. 0, -ENOENT
 * (no uprobes in this kernel) or -errno. */
int host_uprobe_pmu_type(long *type);

/* Effective capabilities of the calling thread (capget), bit n = capability n. 0 or -errno. */
int host_caps_self(uint64_t *mask);
/* Capability set `set` ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb") of process `pid`, from
 * /proc/PID/status: e.g. ptrace needs CAP_SYS_PTRACE when the target's CapPrm is not a subset of
 * ours. 0, -ESRCH (no such process), -EINVAL (no such field) or -errno. */
int host_caps_pid(pid_t pid, const char *set, uint64_t *mask);
/* Parses the line "<set>:\t<hex mask>" out of the text of a /proc/PID/status file. 0, or
 * -EINVAL when the field is absent or its value is not 1 to 16 hex digits. */
int host_caps_parse(const char *status, const char *set, uint64_t *mask);
/* "CAP_BPF" for HOST_CAP_BPF and so on for enum host_cap; NULL for other numbers. */
const char *host_cap_name(int cap);

/* Whether capability `cap` is in `mask`. */
static inline bool host_cap_in(uint64_t mask, int cap)
{
	return cap >= 0 && cap < 64 && (mask >> cap) & 1;
}

#endif
