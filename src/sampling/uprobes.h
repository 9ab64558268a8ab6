/* Attaching one BPF program (or an entry and a return program) to the allocator functions
 * allocators_find chose, in one of three ways the kernel may have, and taking the probes out
 * again, entries first. libbpf 1.1 cannot make uprobe_multi or session links: those are made
 * with BPF_LINK_CREATE here. */
#ifndef PMS_UPROBES_H
#define PMS_UPROBES_H

#include <bpf/libbpf.h>
#include <sys/types.h>

#include "allocators.h"
#include "errors.h"

/* Best first: sessions (6.13+) give a return probe only to the calls that need one; multi links
 * (6.6+) attach all functions of a file at once; perf uprobes work everywhere but cost an RCU
 * grace period each to attach and detach. */
enum uprobe_mode { UPROBE_SESSION, UPROBE_MULTI, UPROBE_PERF };

/* The kernel's attach types for them (what bpf_program__set_expected_attach_type needs before
 * loading a program that is to be linked so). */
#define PMS_BPF_TRACE_UPROBE_MULTI   48
#define PMS_BPF_TRACE_UPROBE_SESSION 57

/* The programs: session for UPROBE_SESSION, enter and ret for the others. */
struct uprobe_progs {
	struct bpf_program *enter, *ret, *session;
};

struct uprobes;

/* Attaches progs to every probe of probes in process pid; each probe's cookie carries its kind,
 * flags and index (PMS_COOKIE_*). Errors: -EINVAL, -EOPNOTSUPP, -E2BIG, -ESRCH or -ENOENT when
 * this kernel has no links of this mode (try the next), else a negative errno with a message. */
int uprobes_attach(const struct alloc_probes *probes, const struct uprobe_progs *progs, pid_t pid,
		   enum uprobe_mode mode, struct uprobes **out, struct pms_error *err);

/* "session", "multi", "perf". */
const char *uprobes_mode_name(enum uprobe_mode mode);

/* Takes every probe out, entries first: no call starts whose return would be missed. The links
 * of perf uprobes go in parallel (each waits for an RCU grace period). */
void uprobes_detach(struct uprobes *u);

/* Detaches and frees. NULL is fine. */
void uprobes_free(struct uprobes *u);

#endif
