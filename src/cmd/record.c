/* pymemspy record: attach with eBPF, charge the target's memory growth to Python sites, detach
 * cleanly (Ctrl-C, --duration, the target exiting), report. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attachopts.h"
#include "cli.h"
#include "proc.h"
#include "recfile.h"
#include "report.h"
#include "session.h"

#define RECORD_DEFAULT_BUDGET 500	  /* stack walks per second */
#define RECORD_DEFAULT_RATE   (64 * 1024) /* bytes between allocation samples, on average */
#define RECORD_DEFAULT_TOP    10
#define RECORD_POLL_MS	      100
/* --until-confident: the confidence that ends a recording, the least time before it may, and
 * the longest it waits when --duration does not say */
#define RECORD_CONFIDENT       0.9
#define RECORD_CONFIDENT_MIN_S 5.0
#define RECORD_CONFIDENT_MAX_S 600.0

struct recording {
	struct session *session;
	struct profile *profile;     /* the session's */
	struct sampler *sampler;     /* the session's, once attached */
	struct recfile_writer *file; /* -o FILE, or NULL */
	const char *file_path;
	bool file_failed; /* said so once, then the recording goes on without it */
};

/* What the command line asks. */
struct record_args {
	struct attach_opts attach;
	pid_t pid;
	double duration; /* 0: until stopped */
	unsigned top;
	const char *file_path;
	bool json, quiet, force, until_confident;
};

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
	proc_rss(pytarget_proc(session_target(r->session)), &rss);
	ret = recfile_tick(r->file, r->profile, at, rss, counters);
	if (!ret)
		ret = recfile_flush(r->file);
	if (!ret)
		ret = recfile_error(r->file);
	if (ret)
		file_failed(r, ret);
}

static void file_start(struct recording *r, const struct sampler_opts *sopts)
{
	struct pytarget *target = session_target(r->session);
	const struct pyversion *v = pytarget_version(target);
	struct recfile_meta m;
	int ret;

	recfile_meta_init(&m);
	m.pid = proc_pid(pytarget_proc(target));
	snprintf(m.comm, sizeof(m.comm), "%s", proc_comm(pytarget_proc(target)));
	snprintf(m.python_version, sizeof(m.python_version), "%s", v->text);
	snprintf(m.python_build, sizeof(m.python_build), "%s", pylayout_build_name(v->build));
	snprintf(m.events, sizeof(m.events), "%s", pms_source_name(sopts->source));
	m.rss_start = session_rss_start(r->session);
	m.budget_per_sec = sopts->budget_per_sec;
	m.max_depth = sopts->max_depth;
	m.rate = pms_source_is_allocator(sopts->source) ? sopts->rate : 0;
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
		snprintf(e.ended_by, sizeof(e.ended_by), "%s", pms_end_name(meta->ended_by));
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

/* Fills a from the command line. Returns -1 to go on, else the exit code (--help, a usage
 * error). */
static int parse_args(int argc, char **argv, struct record_args *a)
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
	long v;
	int c;

	*a = (struct record_args){.top = RECORD_DEFAULT_TOP};
	attach_opts_init(&a->attach, RECORD_DEFAULT_BUDGET, RECORD_DEFAULT_RATE);
	optind = 1;
	while ((c = getopt_long(argc, argv, ATTACH_SHORT_OPTIONS "p:d:n:o:fujqh", opts, NULL)) !=
	       -1) {
		int applied = attach_opts_parse(&a->attach, "record", c, optarg);

		if (applied < 0)
			return PMS_EXIT_USAGE;
		if (applied)
			continue;
		switch (c) {
		case 'p':
			if (cli_parse_pid(optarg, &a->pid))
				return cli_usage_error("record", "--pid needs a process id");
			break;
		case 'd':
			if (cli_parse_seconds(optarg, &a->duration) || a->duration <= 0)
				return cli_usage_error("record",
						       "--duration needs a positive number "
						       "of seconds");
			break;
		case 'n':
			if (cli_parse_long(optarg, 1, 100000, &v))
				return cli_usage_error("record", "--top needs a positive number");
			a->top = (unsigned)v;
			break;
		case 'o':
			a->file_path = optarg;
			break;
		case 'f':
			a->force = true;
			break;
		case 'u':
			a->until_confident = true;
			break;
		case 'j':
			a->json = true;
			break;
		case 'q':
			a->quiet = true;
			break;
		case 'h':
			return cli_help(usage);
		default:
			return cli_usage_error("record", "unknown option");
		}
	}
	if (cli_need_pid("record", argc, a->pid))
		return PMS_EXIT_USAGE;
	if (attach_opts_check(&a->attach, "record"))
		return PMS_EXIT_USAGE;
	if (a->until_confident && a->duration == 0)
		a->duration = RECORD_CONFIDENT_MAX_S;
	if (!isatty(STDERR_FILENO))
		a->quiet = true;
	return -1;
}

/* Records until a signal, --duration, the target's exit or (--until-confident) confidence. */
static int record_loop(struct recording *r, const struct record_args *a, enum pms_end *ended,
		       struct pms_error *err)
{
	double elapsed, last_status = 0, last_tick = 0;
	char note[512];

	for (;;) {
		int n = session_step(r->session, RECORD_POLL_MS, a->duration, ended, note,
				     sizeof(note), err);

		if (n < 0)
			return n;
		elapsed = session_elapsed(r->session);
		if (note[0])
			fprintf(stderr, "%spymemspy: %s\n", a->quiet ? "" : "\n", note);
		if (n > 0) {
			if (*ended == PMS_END_TARGET_EXITED)
				fprintf(stderr,
					"%spymemspy: the target (pid %d) exited after %.1f s\n",
					a->quiet ? "" : "\n", a->pid, elapsed);
			return 0;
		}
		if (elapsed - last_tick >= 1.0) {
			file_tick(r, elapsed);
			last_tick = elapsed;
			if (a->until_confident && elapsed >= RECORD_CONFIDENT_MIN_S &&
			    report_top_confidence(r->profile, elapsed) >= RECORD_CONFIDENT) {
				*ended = PMS_END_CONFIDENT;
				return 0;
			}
		}
		if (!a->quiet && elapsed - last_status >= 1.0) {
			status_line(r, elapsed, false);
			last_status = elapsed;
		}
	}
}

int cmd_record(int argc, char **argv)
{
	struct record_args a;
	struct sampler_opts *sopts = &a.attach.sampler;
	struct report_meta meta = {0};
	struct pms_error err = {{0}};
	struct recording r = {0};
	double elapsed;
	int ret = parse_args(argc, argv, &a);

	if (ret >= 0)
		return ret;
	r.file_path = a.file_path;
	ret = session_open(a.pid, &r.session, &err);
	if (ret)
		goto out;
	r.profile = session_profile(r.session);
	/* the host and privileges, then the file: a run that cannot record leaves no file behind,
	 * and a file that may not be written stops us before we attach */
	ret = session_require(r.session, sopts, &err);
	if (!ret && r.file_path)
		ret = recfile_create(r.file_path, a.force, &r.file, &err);
	if (!ret)
		ret = session_attach(r.session, sopts, &err);
	if (ret)
		goto out;
	r.sampler = session_sampler(r.session);
	if (r.file)
		file_start(&r, sopts);
	if (!a.json || !a.quiet)
		fprintf(stderr, "pymemspy: recording pid %d (Python %s); Ctrl-C to stop\n", a.pid,
			pytarget_version(session_target(r.session))->text);
	if (!a.quiet || !a.json)
		sampler_describe(r.sampler, stderr);
	ret = record_loop(&r, &a, &meta.ended_by, &err);
	if (!ret)
		ret = session_detach(r.session, &err);
	if (ret)
		goto out;
	elapsed = session_elapsed(r.session);
	file_tick(&r, elapsed);
	if (!a.quiet)
		status_line(&r, elapsed, true);
	if (meta.ended_by != PMS_END_TARGET_EXITED)
		proc_rss(pytarget_proc(session_target(r.session)), &meta.rss_end);
	session_fill_meta(r.session, sopts, &meta);
	meta.duration = elapsed;
	meta.top = a.top;
	file_close(&r, &meta);
	if (a.json)
		ret = report_json(stdout, r.profile, &meta);
	else
		report_text(stdout, r.profile, &meta);
	if (r.file_path && !r.file_failed)
		fprintf(stderr, "pymemspy: wrote %s; read it with 'pymemspy report %s'\n",
			r.file_path, r.file_path);
out:
	if (r.file)
		recfile_close(r.file); /* an error path: keep what was written */
	session_close(r.session);
	return ret ? cli_fail(&err, ret) : PMS_EXIT_OK;
}
