/* pymemspy doctor: what this host lets pymemspy do, check by check, then a verdict per mode. The
 * checks and the verdicts live in host.c so that record and dump judge exactly the same way. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "cli.h"
#include "host.h"
#include "json.h"

#define ALL_NEEDS                                                                                  \
	(HOST_NEED_PTRACE | HOST_NEED_BPF | HOST_NEED_TRACEPOINTS | HOST_NEED_UPROBES |            \
	 HOST_NEED_WATCHPOINTS)

enum mode_cost { COST_NONE, COST_GROWTH, COST_UPROBES, COST_WATCHPOINTS };

/* calls_per_sec: a busy target's rate of probed calls, to put the trap cost in proportion */
static const struct {
	const char *name;
	unsigned needs;
	enum mode_cost cost;
	double calls_per_sec;
} modes[] = {
    {"dump", HOST_NEEDS_DUMP, COST_NONE, 0},
    {"record --events growth", HOST_NEEDS_GROWTH, COST_GROWTH, 0},
    {"record --events survivors", HOST_NEEDS_SURVIVORS, COST_WATCHPOINTS, 0},
    {"record --events malloc", HOST_NEEDS_ALLOCATOR, COST_UPROBES, 10000},
    {"record --events pymalloc", HOST_NEEDS_ALLOCATOR, COST_UPROBES, 100000},
};
#define N_MODES (sizeof(modes) / sizeof(modes[0]))

static const int shown_caps[] = {HOST_CAP_BPF, HOST_CAP_PERFMON, HOST_CAP_SYS_PTRACE,
				 HOST_CAP_SYS_ADMIN};
#define N_CAPS (sizeof(shown_caps) / sizeof(shown_caps[0]))

struct verdict {
	int err; /* 0, -EPERM or -PMS_ENOFEATURE */
	char reason[512];
	char cost[256]; /* what the mode costs the target here */
};

static bool verbose;

/* libbpf explains every failed probe at length; doctor says it in one line unless asked. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	if (!verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static void usage(void)
{
	printf("Usage: pymemspy doctor [--json] [--verbose] [--no-mount]\n"
	       "\n"
	       "Says whether this host lets pymemspy run each of its modes, and why not: kernel\n"
	       "features (BTF, bpf(), ring buffers, uprobes, the memory tracepoints, tracefs),\n"
	       "sysctls, and the capabilities of this process. Then it loads, attaches and\n"
	       "triggers a tracepoint program and a uprobe of its own to prove that the whole\n"
	       "BPF pipeline works, tests that a write watchpoint on a variable of its own\n"
	       "traps (--events survivors needs that; on some hosts they never trap), and\n"
	       "times a uprobe trap (what --events malloc and pymalloc pay per call): each mode\n"
	       "is listed with what it costs here. Run as root, it mounts tracefs at\n"
	       "/sys/kernel/tracing when absent (as record does) and says so.\n"
	       "\n"
	       "Options:\n"
	       "  --json          one JSON document on stdout (schema pymemspy.doctor/1)\n"
	       "  -v, --verbose   show libbpf's own messages on stderr\n"
	       "  --no-mount      do not mount tracefs when it is absent\n"
	       "  -h, --help      show this help\n"
	       "\n"
	       "Examples:\n"
	       "  sudo pymemspy doctor\n"
	       "  pymemspy doctor                 what this unprivileged user may do\n"
	       "  sudo pymemspy doctor --json | jq '.modes[] | select(.ok | not)'\n"
	       "  sudo pymemspy doctor --json | jq .costs       trap costs here, in ns\n"
	       "\n"
	       "doctor exits 0 when every mode can run here, 6 when only privileges are\n"
	       "missing, 8 when this host lacks something a mode needs.\n");
	cli_print_exit_codes();
}

static const char *status_word(enum host_status s)
{
	switch (s) {
	case HOST_OK:
		return "ok";
	case HOST_MISSING:
		return "missing";
	case HOST_DENIED:
		return "denied";
	case HOST_SKIPPED:
		return "skipped";
	}
	return "?";
}

static const char *blocker_word(int err)
{
	if (err == -EPERM)
		return "privilege";
	if (err)
		return "host";
	return NULL;
}

/* What mode i costs a target on this host, from the costs the checks measured. */
static void describe_cost(size_t i, const struct host_costs *c, char *buf, size_t len)
{
	switch (modes[i].cost) {
	case COST_NONE:
		snprintf(buf, len,
			 "no probes: reads the target's memory; --lock pauses it meanwhile");
		return;
	case COST_GROWTH:
		snprintf(buf, len,
			 "a BPF program per page fault and memory syscall of the target: nothing "
			 "in steady state, in proportion to growth");
		return;
	case COST_WATCHPOINTS:
		if (c->watch_measured && c->watch.trap_ns > 0)
			snprintf(buf, len,
				 "growth's, plus a watchpoint trap (%.1f us here) per write to a "
				 "watched word: at most 100 arms/s, a few traps each",
				 c->watch.trap_ns / 1e3);
		else
			snprintf(buf, len, "cannot run: hardware watchpoints do not trap here");
		return;
	case COST_UPROBES:
		if (!c->uprobe_measured) {
			snprintf(buf, len, "a uprobe trap per probed call (not measured here)");
			return;
		}
		snprintf(buf, len,
			 "a trap per probed call: %.1f to %.1f us, plus %.1f us on return, here; "
			 "%.0f%% to %.0f%% of a thread at %.0f calls/s",
			 c->uprobe.emulated_ns / 1e3, c->uprobe.sstep_ns / 1e3,
			 c->uprobe.return_ns / 1e3,
			 100 * hostcost_trap_share(c->uprobe.emulated_ns + c->uprobe.return_ns, 0,
						   (uint64_t)modes[i].calls_per_sec, 0, 1),
			 100 * hostcost_trap_share(c->uprobe.sstep_ns + c->uprobe.return_ns, 0,
						   (uint64_t)modes[i].calls_per_sec, 0, 1),
			 modes[i].calls_per_sec);
		return;
	}
}

static void print_text(const struct host_report *r, const struct utsname *uts,
		       const struct verdict *v, int code)
{
	uint64_t caps = host_report_caps(r);
	int width = 24;

	for (size_t i = 0; i < host_report_count(r); i++) {
		int len = (int)strlen(host_report_check(r, i)->name);

		width = len > width ? len : width;
	}
	printf("pymemspy doctor: Linux %s %s, euid %u\n\nChecks\n", uts->release, uts->machine,
	       (unsigned)geteuid());
	for (size_t i = 0; i < host_report_count(r); i++) {
		const struct host_check *c = host_report_check(r, i);

		printf("  %-7s  %-*s  %s%s%s\n", status_word(c->status), width, c->name, c->detail,
		       c->advice[0] ? "; " : "", c->advice);
	}
	printf("\nCapabilities (effective)\n ");
	for (size_t i = 0; i < N_CAPS; i++)
		printf(" %s %s%s", host_cap_name(shown_caps[i]),
		       host_cap_in(caps, shown_caps[i]) ? "yes" : "no", i + 1 < N_CAPS ? "," : "");
	printf("; %s\n\nModes\n", geteuid() == 0 ? "root" : "not root");
	for (size_t i = 0; i < N_MODES; i++) {
		printf("  %-7s  %-*s  %s\n", v[i].err ? "cannot" : "ok", width, modes[i].name,
		       v[i].reason);
		if (!v[i].err)
			printf("  %-7s  %-*s  cost: %s\n", "", width, "", v[i].cost);
	}
	if (code == PMS_EXIT_OK)
		printf("\nEvery mode can run here.\n");
	else if (code == PMS_EXIT_PRIVILEGE)
		printf("\nSome modes need more privileges: run pymemspy as root.\n");
	else
		printf("\nSome modes cannot run on this host, whatever the privileges.\n");
}

static void json_cost(struct json *j, const char *key, bool known, double ns)
{
	json_key(j, key);
	if (known)
		json_uint(j, (uint64_t)(ns + 0.5));
	else
		json_null(j);
}

static int print_json(const struct host_report *r, const struct utsname *uts,
		      const struct verdict *v, int code)
{
	uint64_t caps = host_report_caps(r);
	const struct host_costs *costs = host_report_costs(r);
	char hex[32], cpu[256];
	bool hypervisor;
	struct json *j = json_new(stdout, isatty(STDOUT_FILENO));

	if (!j)
		return -ENOMEM;
	json_object_begin(j);
	json_kv_string(j, "schema", "pymemspy.doctor/1");
	json_kv_string(j, "kernel", uts->release);
	json_kv_string(j, "machine", uts->machine);
	json_kv_uint(j, "euid", geteuid());
	host_cpu(cpu, sizeof(cpu), &hypervisor);
	json_key(j, "host");
	json_object_begin(j);
	json_kv_string(j, "cpu_model", cpu);
	json_kv_bool(j, "hypervisor", hypervisor);
	json_kv_int(j, "cpus", sysconf(_SC_NPROCESSORS_ONLN));
	json_object_end(j);

	json_key(j, "checks");
	json_array_begin(j);
	for (size_t i = 0; i < host_report_count(r); i++) {
		const struct host_check *c = host_report_check(r, i);

		json_object_begin(j);
		json_kv_string(j, "name", c->name);
		json_kv_bool(j, "ok", c->status == HOST_OK);
		json_kv_string(j, "status", status_word(c->status));
		json_kv_string(j, "detail", c->detail);
		json_kv_string(j, "advice", c->advice);
		json_object_end(j);
	}
	json_array_end(j);

	json_key(j, "capabilities");
	json_object_begin(j);
	snprintf(hex, sizeof(hex), "0x%016llx", (unsigned long long)caps);
	json_kv_string(j, "effective", hex);
	json_kv_bool(j, "root", geteuid() == 0);
	for (size_t i = 0; i < N_CAPS; i++)
		json_kv_bool(j, host_cap_name(shown_caps[i]), host_cap_in(caps, shown_caps[i]));
	json_object_end(j);

	json_key(j, "modes");
	json_array_begin(j);
	for (size_t i = 0; i < N_MODES; i++) {
		const char *blocker = blocker_word(v[i].err);

		json_object_begin(j);
		json_kv_string(j, "name", modes[i].name);
		json_kv_bool(j, "ok", v[i].err == 0);
		json_kv_string(j, "reason", v[i].reason);
		json_kv_string(j, "cost", v[i].cost);
		json_key(j, "blocked_by");
		if (blocker)
			json_string(j, blocker);
		else
			json_null(j);
		json_object_end(j);
	}
	json_array_end(j);

	/* in ns; null where not measured, and a watchpoint that does not trap costs nothing */
	json_key(j, "costs");
	json_object_begin(j);
	json_cost(j, "uprobe_trap_ns", costs->uprobe_measured, costs->uprobe.sstep_ns);
	json_cost(j, "uprobe_emulated_trap_ns", costs->uprobe_measured, costs->uprobe.emulated_ns);
	json_cost(j, "uretprobe_trap_ns", costs->uprobe_measured, costs->uprobe.return_ns);
	json_cost(j, "watchpoint_trap_ns", costs->watch_measured && costs->watch.trap_ns > 0,
		  costs->watch.trap_ns);
	json_object_end(j);
	json_kv_int(j, "exit_code", code);
	json_object_end(j);
	json_free(j);
	return 0;
}

int cmd_doctor(int argc, char **argv)
{
	static const struct option options[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"no-mount", no_argument, NULL, 'M'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct verdict v[N_MODES];
	struct host_report *r = NULL;
	struct pms_error err = {{0}};
	struct utsname uts;
	bool json = false, mount = true, host_fail = false, priv_fail = false;
	int opt, ret, code;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":hv", options, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'M':
			mount = false;
			break;
		case 'h':
			usage();
			return PMS_EXIT_OK;
		default: {
			char what[128];

			snprintf(what, sizeof(what), "unknown option '%s'", argv[optind - 1]);
			return cli_usage_error("doctor", what);
		}
		}
	}
	if (optind < argc)
		return cli_usage_error("doctor", "takes no arguments");

	libbpf_set_print(libbpf_print);
	if (uname(&uts))
		memset(&uts, 0, sizeof(uts));
	ret = host_report_new(ALL_NEEDS, HOST_PROBE_SELFTEST | (mount ? HOST_PROBE_MOUNT : 0), &r);
	if (ret) {
		code = cli_fail(&err, ret);
		goto cleanup;
	}
	for (size_t i = 0; i < N_MODES; i++) {
		v[i].err = host_report_verdict(r, modes[i].needs, v[i].reason, sizeof(v[i].reason));
		describe_cost(i, host_report_costs(r), v[i].cost, sizeof(v[i].cost));
		host_fail |= v[i].err && v[i].err != -EPERM;
		priv_fail |= v[i].err == -EPERM;
	}
	code = host_fail ? PMS_EXIT_HOST : priv_fail ? PMS_EXIT_PRIVILEGE : PMS_EXIT_OK;
	if (json) {
		ret = print_json(r, &uts, v, code);
		if (ret)
			code = cli_fail(&err, ret);
	} else {
		print_text(r, &uts, v, code);
	}

cleanup:
	host_report_free(r);
	return code;
}
