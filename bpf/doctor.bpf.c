/* pymemspy doctor's self-test: one tracepoint program and one uprobe program, each reporting a
 * single u64 through a ring buffer, so doctor can prove the whole pipeline (load, CO-RE, attach,
 * ring buffer) works on this host, not only that the pieces exist. Events are plain u64 values
 * the user side recognises (the page it touched, the argument it passed), so no struct has to be
 * shared between the two sides. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/* The record of exceptions:page_fault_user as its tracefs format file gives it: the common header,
 * then the fault address. Not CO-RE on purpose: the kernel's name for this struct changed
 * (trace_event_raw_x86_exceptions, then trace_event_raw_exceptions) and, with libbpf 1.1, a
 * relocation against a type vmlinux lacks makes libbpf walk module BTFs, which needs
 * CAP_SYS_ADMIN: the program would not load with only CAP_BPF and CAP_PERFMON. The format has
 * not changed since the tracepoint appeared. */
struct page_fault_record {
	__u64 common;
	unsigned long address;
	unsigned long ip;
	unsigned long error_code;
};

/* Set before load: only our own process reports, whatever else faults or runs this code. */
const volatile __u32 self_tgid = 0;

/* Set after load (the page does not exist before): the tracepoint reports faults on it only. */
__u64 fault_page = 0;

/* How often each program ran for us and how often the ring buffer was full: when an event is
 * missing these tell "never ran" from "ran but could not report". */
__u64 tracepoint_hits = 0;
__u64 uprobe_hits = 0;
__u64 ringbuf_full = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

static __always_inline bool from_self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == self_tgid;
}

static __always_inline void report(__u64 value)
{
	if (bpf_ringbuf_output(&events, &value, sizeof(value), 0))
		__sync_fetch_and_add(&ringbuf_full, 1);
}

SEC("tp/exceptions/page_fault_user")
int doctor_page_fault(struct page_fault_record *ctx)
{
	__u64 addr;

	if (!from_self())
		return 0;
	addr = ctx->address;
	if (!fault_page || (addr & ~4095ULL) != fault_page)
		return 0;
	__sync_fetch_and_add(&tracepoint_hits, 1);
	report(addr);
	return 0;
}

/* Attached by doctor to a function of its own binary; reports that function's first argument. */
SEC("uprobe")
int BPF_KPROBE(doctor_uprobe, __u64 token)
{
	if (!from_self())
		return 0;
	__sync_fetch_and_add(&uprobe_hits, 1);
	report(token);
	return 0;
}

/* Tracing helpers are GPL-only in the kernel; this program and its siblings declare GPL. */
char LICENSE[] SEC("license") = "GPL";
