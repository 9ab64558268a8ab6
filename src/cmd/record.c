/* pymemspy record: attach with eBPF, charge the target's memory growth to Python sites, detach
 * cleanly (Ctrl-C, --duration, the target exiting), report. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cli.h"
#include "profile.h"
#include "recfile.h"
#include "pytarget.h"
#include "report.h"
#include "attachopts.h"
#include "sampler.h"

#define RECORD_DEFAULT_BUDGET 500	  /* stack walks per second */
#define RECORD_DEFAULT_RATE   (64 * 1024) /* bytes between allocation samples, on average */
#define RECORD_DEFAULT_TOP    10
#define RECORD_POLL_MS	      100
/* --until-confident: the confidence that ends a recording, the least time before it may, and
 * the longest it waits when --duration does not say */
#define RECORD_CONFIDENT       0.9
#define RECORD_CONFIDENT_MIN_S 5.0
#define RECORD_CONFIDENT_MAX_S 600.0

/* Set by SIGINT/SIGTERM: the one piece of global state, owned by this CLI entry. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct recording {
	struct pytarget *target;
	struct profile *profile;
	struct sampler *sampler;
	struct recfile_writer *file; /* -o FILE, or NULL */
	const char *file_path;
	bool file_failed; /* said so once, then the recording goes on without it */
	uint64_t start_ns;
	int error; /* first error from the event path */
};

static int on_event(const struct pms_event *ev, size_t size, void *ctx)
{
	struct recording *r = ctx;
	double at = ev->ts_ns > r->start_ns ? (double)(ev->ts_ns - r->start_ns) / 1e9 : 0;
	int ret = profile_add_event(r->profile, ev, size, at);

	if (ret && !r->error)
		r->error = ret;
	return 0;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: pymemspy record --pid PID [--duration S] [--events SOURCE] [--max-depth N]\n"
	    "                       [--budget N] [--rate BYTES] [--attach MODE] [--top N]\n"
	    "                       [--max-overhead PCT]\n"
	    "                       [-o FILE [--force]]\n"
	    "                       [--until-confident] [--json]\n"
	    "                       [--quiet] [--verbose]\n\n"
	    "Attaches to a running CPython process with eBPF, charges the memory it grows to\n"
	    "the Python call sites that grow it, and prints the leak candidates and the top\n"
	    "sites. Stops at the end of --duration, on Ctrl-C or SIGTERM, or when the target\n"
	    "exits; the target keeps running, unchanged, after we detach.\n\n"
	    "Options:\n"
	    "  -p, --pid PID        the process to record\n"
	    "  -d, --duration S     stop after S seconds (default: until Ctrl-C)\n"
	    "  -e, --events SOURCE  growth: resident memory the target gains (page faults and\n"
	    "                       RSS changes), and the ranges it releases (default)\n"
	    "                       survivors: growth, but growth in pymalloc's pools goes\n"
	    "                       to the stacks whose sampled small objects survive\n"
	    "                       (hardware watchpoints that trap: refused, exit 8, on\n"
	    "                       hosts where they do not), not to the first toucher\n"
	    "                       malloc: uprobes on the malloc family and free (libc, or\n"
	    "                       jemalloc/tcmalloc/mimalloc): allocated, freed and live\n"
	    "                       bytes of objects over 512 bytes and C extensions\n"
	    "                       pymalloc: uprobes on CPython's own allocators: every\n"
	    "                       Python allocation; heavy (the target runs several times\n"
	    "                       slower), for staging\n"
	    "      --max-depth N    frames per stack, 1 to %d (default %d)\n"
	    "      --budget N       stack walks per second before sampling starts; sampled\n"
	    "                       growth is weighted so that estimates stay unbiased\n"
	    "                       (default %d; 0: no limit)\n"
	    "  -r, --rate BYTES     allocator sources: mean bytes between two sampled\n"
	    "                       allocations (K, M suffixes; default %uK); an allocation\n"
	    "                       of s bytes is sampled with chance 1-exp(-s/BYTES)\n"
	    "      --attach MODE    allocator sources: attach the probes as uprobe 'session's\n"
	    "                       (Linux 6.13+), uprobe_'multi' links (6.6+) or 'perf'\n"
	    "                       uprobes, or the next one the kernel has (default: the\n"
	    "                       best)\n"
	    "      --max-overhead PCT\n"
	    "                       allocator sources: the trap cost is timed on this host at\n"
	    "                       start and the slowdown predicted from the target's call\n"
	    "                       rate each second; above PCT %% of a thread, the probes\n"
	    "                       stop and the recording goes on without them (default:\n"
	    "                       no bound; the prediction is printed either way)\n"
	    "  -n, --top N          sites in the text report (default %d)\n"
	    "  -o, --output FILE    also write the recording to FILE as it goes (mode 0600);\n"
	    "                       read it back with 'pymemspy report FILE'\n"
	    "  -f, --force          replace FILE if it exists (never through a symlink)\n"
	    "  -u, --until-confident\n"
	    "                       stop as soon as a leak candidate reaches confidence %.1f\n"
	    "                       (after at least %.0f s), or at --duration (default %.0f s)\n"
	    "  -j, --json           one JSON document (schema pymemspy.report/1) on stdout\n"
	    "  -q, --quiet          no live status line on stderr\n"
	    "  -v, --verbose        libbpf's messages on stderr\n"
	    "  -h, --help           this help\n\n"
	    "Needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE (and tracefs readable).\n"
	    "'pymemspy doctor' says what this host allows.\n\n"
	    "Examples:\n"
	    "  sudo pymemspy record --pid 4242 --duration 60\n"
	    "  sudo pymemspy record --pid 4242 --duration 30 --json > report.json\n"
	    "  sudo pymemspy record --pid 4242 -o app.pmsrec   # then: pymemspy report "
	    "app.pmsrec\n",
	    PMS_MAX_DEPTH, PMS_MAX_DEPTH, RECORD_DEFAULT_BUDGET, RECORD_DEFAULT_RATE / 1024,
	    RECORD_DEFAULT_TOP, RECORD_CONFIDENT, RECORD_CONFIDENT_MIN_S, RECORD_CONFIDENT_MAX_S);
}

static void status_line(const struct recording *r, double elapsed, bool final)
{
	uint64_t c[PMS_CNT_MAX] = {0};
	char grown[32];

	sampler_counters(r->sampler, c);
	if (sampler_probes(r->sampler)) {
		const struct profile_totals *t = profile_totals(r->profile);

		report_format_bytes((double)(t->grown - t->released), grown, sizeof(grown));
		fprintf(stderr,
			"\r[%6.1fs] allocations %llu, sampled %llu, frees matched %llu, live %s, "
			"dropped %llu   %s",
			elapsed, (unsigned long long)c[PMS_CNT_ALLOC_CALLS],
			(unsigned long long)c[PMS_CNT_ALLOC_SAMPLES],
			(unsigned long long)c[PMS_CNT_FREES_MATCHED], grown,
			(unsigned long long)c[PMS_CNT_RINGBUF_FULL], final ? "\n" : "");
		fflush(stderr);
		return;
	}
	report_format_bytes((double)profile_totals(r->profile)->grown, grown, sizeof(grown));
	fprintf(stderr,
		"\r[%6.1fs] rss events %llu, samples %llu, growth +%s, sampled out %llu, dropped "
		"%llu   %s",
		elapsed, (unsigned long long)c[PMS_CNT_RSS_EVENTS],
		(unsigned long long)c[PMS_CNT_SAMPLES], grown,
		(unsigned long long)c[PMS_CNT_BUDGET_SKIPPED],
		(unsigned long long)c[PMS_CNT_RINGBUF_FULL], final ? "\n" : "");
	fflush(stderr);
}

/* Says once that the file could not be written, and stops writing it: the recording goes on
 * in memory and its report is still printed. */
static void file_failed(struct recording *r, int err)
{
	if (r->file_failed)
		return;
	r->file_failed = true;
	fprintf(stderr,
		"\npymemspy: writing %s failed (%s): it keeps what was written before; the "
		"recording goes on without it\n",
		r->file_path, strerror(-err));
}

/* One tick of the record file: what changed since the last one, the counters, the RSS. */
static void file_tick(struct recording *r, double at)
{
	uint64_t counters[PMS_CNT_MAX] = {0}, rss = 0;
	int ret;

	if (!r->file || r->file_failed)
		return;
	sampler_counters(r->sampler, counters);
	proc_rss(pytarget_proc(r->target), &rss);
	ret = recfile_tick(r->file, r->profile, at, rss, counters);
	if (!ret)
		ret = recfile_flush(r->file);
	if (!ret)
		ret = recfile_error(r->file);
	if (ret)
		file_failed(r, ret);
}

static void file_start(struct recording *r, const struct sampler_opts *sopts, const char *events,
		       uint64_t rss_start)
{
	const struct pyversion *v = pytarget_version(r->target);
	struct recfile_meta m;
	int ret;

	recfile_meta_init(&m);
	m.pid = proc_pid(pytarget_proc(r->target));
	snprintf(m.comm, sizeof(m.comm), "%s", proc_comm(pytarget_proc(r->target)));
	snprintf(m.python_version, sizeof(m.python_version), "%s", v->text);
	snprintf(m.python_build, sizeof(m.python_build), "%s", pylayout_build_name(v->build));
	snprintf(m.events, sizeof(m.events), "%s", events);
	m.rss_start = rss_start;
	m.budget_per_sec = sopts->budget_per_sec;
	m.max_depth = sopts->max_depth;
	m.rate = sampler_is_allocator(sopts->source) ? sopts->rate : 0;
	if (sampler_probes(r->sampler)) {
		snprintf(m.allocator, sizeof(m.allocator), "%s",
			 sampler_probes(r->sampler)->allocator);
		m.coverage = sampler_probes(r->sampler)->coverage;
	}
	ret = recfile_write_meta(r->file, &m);
	if (!ret)
		ret = recfile_flush(r->file);
	if (ret)
		file_failed(r, ret);
}

static void file_close(struct recording *r, const struct report_meta *meta)
{
	struct recfile_end e = {0};
	int ret;

	if (!r->file)
		return;
	if (!r->file_failed) {
		e.duration = meta->duration;
		snprintf(e.ended_by, sizeof(e.ended_by), "%s", meta->ended_by);
		e.rss_end = meta->rss_end;
		e.profiler_cpu = meta->profiler_cpu;
		e.profiler_max_rss = meta->profiler_max_rss;
		e.bpf_map_bytes = meta->bpf_map_bytes;
		e.profile_bytes = meta->profile_bytes;
		ret = recfile_write_oldest(r->file, r->profile);
		if (!ret)
			ret = recfile_write_end(r->file, &e);
		if (!ret)
			ret = recfile_flush(r->file);
		if (ret)
			file_failed(r, ret);
	}
	ret = recfile_close(r->file);
	if (ret)
		file_failed(r, ret);
	r->file = NULL;
}

int cmd_record(int argc, char **argv)
{
	/* clang-format off: one option a line */
	static const struct option opts[] = {
	    ATTACH_LONG_OPTIONS,
	    {"pid", required_argument, NULL, 'p'},
	    {"duration", required_argument, NULL, 'd'},
	    {"top", required_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {"output", required_argument, NULL, 'o'},
	    {"force", no_argument, NULL, 'f'},
	    {"until-confident", no_argument, NULL, 'u'},
	    {NULL, 0, NULL, 0},
	};
	/* clang-format on */
	struct attach_opts aopts;
	struct sampler_opts *sopts = &aopts.sampler;
	struct report_meta meta = {.top = RECORD_DEFAULT_TOP};
	struct sigaction sa = {0}, old_int, old_term;
	struct pms_error err = {{0}};
	struct recording r = {0};
	struct rusage ru;
	bool json = false, quiet = false, force = false, until_confident = false;
	double duration = 0, elapsed = 0, last_status = 0, last_tick = 0;
	pid_t pid = 0;
	char note[512];
	long v;
	int c, ret;

	attach_opts_init(&aopts, RECORD_DEFAULT_BUDGET, RECORD_DEFAULT_RATE);
	optind = 1;
	while ((c = getopt_long(argc, argv, ATTACH_SHORT_OPTIONS "p:d:n:o:fujqh", opts, NULL)) !=
	       -1) {
		int applied = attach_opts_parse(&aopts, "record", c, optarg);

		if (applied < 0)
			return PMS_EXIT_USAGE;
		if (applied)
			continue;
		switch (c) {
		case 'p':
			if (cli_parse_pid(optarg, &pid))
				return cli_usage_error("record", "--pid needs a process id");
			break;
		case 'd':
			if (cli_parse_seconds(optarg, &duration) || duration <= 0)
				return cli_usage_error("record",
						       "--duration needs a positive number "
						       "of seconds");
			break;
		case 'n':
			if (cli_parse_long(optarg, 1, 100000, &v))
				return cli_usage_error("record", "--top needs a positive number");
			meta.top = (unsigned)v;
			break;
		case 'o':
			r.file_path = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'u':
			until_confident = true;
			break;
		case 'j':
			json = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			cli_print_exit_codes();
			return PMS_EXIT_OK;
		default:
			return cli_usage_error("record", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_error("record", "unexpected argument");
	if (!pid)
		return cli_usage_error("record", "--pid is required");
	if (attach_opts_check(&aopts, "record"))
		return PMS_EXIT_USAGE;
	meta.events = aopts.events;
	if (until_confident && duration == 0)
		duration = RECORD_CONFIDENT_MAX_S;
	if (!isatty(STDERR_FILENO))
		quiet = true;

	ret = pytarget_open(pid, &r.target, &err);
	if (ret)
		goto out;
	r.profile = profile_new(r.target);
	if (!r.profile) {
		ret = -ENOMEM;
		goto out;
	}
	/* signals only set a flag: the loop below detaches before anything else happens */
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	/* the host and privileges, then the file: a run that cannot record leaves no file behind,
	 * and a file that may not be written stops us before we attach */
	ret = sampler_require(sopts, &err);
	if (ret)
		goto restore;
	sopts->host_checked = true; /* attach without asking again: the target runs meanwhile */
	if (r.file_path) {
		ret = recfile_create(r.file_path, force, &r.file, &err);
		if (ret)
			goto restore;
	}
	ret = sampler_open(r.target, sopts, on_event, &r, &r.sampler, &err);
	if (ret)
		goto restore;
	r.start_ns = clock_monotonic_ns();
	proc_rss(pytarget_proc(r.target), &meta.rss_start);
	if (r.file)
		file_start(&r, sopts, meta.events, meta.rss_start);
	meta.ended_by = "signal";
	if (!json || !quiet)
		fprintf(stderr, "pymemspy: recording pid %d (Python %s); Ctrl-C to stop\n", pid,
			pytarget_version(r.target)->text);
	if (!quiet || !json)
		sampler_describe(r.sampler, stderr);
	while (!stop_requested) {
		int n = sampler_poll(r.sampler, RECORD_POLL_MS);

		if (n < 0 && n != -EINTR) {
			ret = pms_error_set(&err, -n, "reading the ring buffer: %s", strerror(-n));
			break;
		}
		elapsed = (double)(clock_monotonic_ns() - r.start_ns) / 1e9;
		n = sampler_check(r.sampler, elapsed, note, sizeof(note), &err);
		if (n < 0) {
			ret = n;
			break;
		}
		if (n > 0)
			fprintf(stderr, "%spymemspy: %s\n", quiet ? "" : "\n", note);
		if (!proc_alive(pytarget_proc(r.target))) {
			meta.ended_by = "target exited";
			fprintf(stderr, "%spymemspy: the target (pid %d) exited after %.1f s\n",
				quiet ? "" : "\n", pid, elapsed);
			break;
		}
		if (duration > 0 && elapsed >= duration) {
			meta.ended_by = "duration";
			break;
		}
		if (elapsed - last_tick >= 1.0) {
			file_tick(&r, elapsed);
			last_tick = elapsed;
			if (until_confident && elapsed >= RECORD_CONFIDENT_MIN_S &&
			    report_top_confidence(r.profile, elapsed) >= RECORD_CONFIDENT) {
				meta.ended_by = "confident";
				break;
			}
		}
		if (!quiet && elapsed - last_status >= 1.0) {
			status_line(&r, elapsed, false);
			last_status = elapsed;
		}
	}
	if (ret)
		goto restore;
	/* detach first, then take what is already in the ring buffer: from here on the counters
	 * no longer move, so the report and the file's last tick see the same ones */
	sampler_detach(r.sampler);
	while (sampler_poll(r.sampler, 0) > 0)
		;
	elapsed = (double)(clock_monotonic_ns() - r.start_ns) / 1e9;
	file_tick(&r, elapsed);
	if (!quiet)
		status_line(&r, elapsed, true);
	if (strcmp(meta.ended_by, "target exited") != 0)
		proc_rss(pytarget_proc(r.target), &meta.rss_end);
	sampler_counters(r.sampler, meta.counters);
	if (sampler_overhead(r.sampler)) {
		meta.overhead = *sampler_overhead(r.sampler);
		meta.has_overhead = true;
	}
	meta.bpf_map_bytes = sampler_map_bytes(r.sampler);
	if (sampler_probes(r.sampler)) {
		snprintf(meta.allocator, sizeof(meta.allocator), "%s",
			 sampler_probes(r.sampler)->allocator);
		meta.coverage = sampler_probes(r.sampler)->coverage;
		meta.attach = sampler_attach_name(r.sampler);
	}
	sampler_close(r.sampler);
	r.sampler = NULL;
	if (r.error) {
		ret = pms_error_set(&err, -r.error, "keeping the profile: %s", strerror(-r.error));
		goto restore;
	}

	meta.pid = pid;
	meta.comm = proc_comm(pytarget_proc(r.target));
	meta.python = pytarget_version(r.target);
	meta.duration = elapsed;
	meta.budget_per_sec = sopts->budget_per_sec;
	meta.rate = sampler_is_allocator(sopts->source) ? sopts->rate : 0;
	meta.max_depth = sopts->max_depth;
	meta.profile_bytes = profile_memory(r.profile);
	getrusage(RUSAGE_SELF, &ru);
	meta.profiler_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	meta.profiler_max_rss = (uint64_t)ru.ru_maxrss * 1024;
	file_close(&r, &meta);
	if (json)
		ret = report_json(stdout, r.profile, &meta);
	else
		report_text(stdout, r.profile, &meta);
	if (r.file_path && !r.file_failed)
		fprintf(stderr, "pymemspy: wrote %s; read it with 'pymemspy report %s'\n",
			r.file_path, r.file_path);
restore:
	if (r.file)
		recfile_close(r.file); /* an error path: keep what was written */
	sampler_close(r.sampler);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
out:
	profile_free(r.profile);
	pytarget_close(r.target);
	return ret ? cli_fail(&err, ret) : PMS_EXIT_OK;
}
