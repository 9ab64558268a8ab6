/* pymemspy report: the report of a recording from its file alone (record -o), and what grew
 * between two recordings of the same program (--diff). */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "pylayout.h"
#include "recfile.h"
#include "report.h"

#define REPORT_CMD_DEFAULT_TOP 10
#define DIFF_STACK_LINES       4

/* A recording read back, with what the report printers take. */
struct loaded {
	const char *path;
	struct recfile_contents c;
	struct pyversion py;
	struct report_meta meta;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: pymemspy report FILE [--json] [--top N]\n"
		"       pymemspy report --diff A B [--json] [--top N]\n\n"
		"Prints the report of a recording made with 'pymemspy record -o FILE', from the\n"
		"file alone: on another machine, after the target is gone, without privileges.\n"
		"A file cut short (the recorder killed, the disk full) gives the report of what\n"
		"it holds and says where it ends. A damaged file gives the report of what it\n"
		"holds before the damage, and exit status 7.\n\n"
		"With --diff, compares two recordings of the same program: the sites (function,\n"
		"file, line) whose growth rate changed most from A to B, then those whose bytes\n"
		"did; sites only in B are marked [new], sites only in A [gone]. Recordings of\n"
		"allocator sources (--events malloc, pymalloc) compare live bytes; both must be\n"
		"of the same source.\n\n"
		"Options:\n"
		"      --diff       compare recording A with recording B\n"
		"  -n, --top N      sites in the text report (default %d)\n"
		"  -j, --json       one JSON document on stdout (schema pymemspy.report/1, or\n"
		"                   pymemspy.diff/1 with --diff)\n"
		"  -h, --help       this help\n\n"
		"Examples:\n"
		"  sudo pymemspy record --pid 4242 --duration 600 -o app.pmsrec\n"
		"  pymemspy report app.pmsrec\n"
		"  pymemspy report app.pmsrec --json > report.json\n"
		"  pymemspy report --diff before.pmsrec after.pmsrec --top 5\n",
		REPORT_CMD_DEFAULT_TOP);
}

/* True when the file holds less than the whole recording. */
static bool cut_short(const struct loaded *l)
{
	return l->c.truncated || !l->c.has_end;
}

static const char *cut_reason(const struct loaded *l)
{
	if (l->c.corrupt)
		return "a damaged record follows";
	if (l->c.truncated)
		return "the file ends inside a record";
	return "no end record: the recorder was killed, or could write no more";
}

/* Reads path and fills what report_text/report_json take. */
static int load(const char *path, unsigned top, struct loaded *l, struct pms_error *err)
{
	const struct recfile_contents *c = &l->c;
	struct report_meta *m = &l->meta;
	int ret;

	memset(l, 0, sizeof(*l));
	l->path = path;
	ret = recfile_read(path, &l->c, err);
	if (ret)
		return ret;
	snprintf(l->py.text, sizeof(l->py.text), "%s",
		 c->meta.python_version[0] ? c->meta.python_version : "?");
	if (sscanf(l->py.text, "%d.%d.%d", &l->py.major, &l->py.minor, &l->py.micro) < 2)
		l->py.major = l->py.minor = l->py.micro = 0;
	l->py.build = PY_BUILD_RELEASE;
	for (int b = PY_BUILD_RELEASE; b <= PY_BUILD_FREE_THREADED; b++)
		if (strcmp(c->meta.python_build, pylayout_build_name((enum py_build)b)) == 0)
			l->py.build = (enum py_build)b;
	l->py.evidence = "the recording";

	m->pid = c->meta.pid;
	m->comm = c->meta.comm;
	m->python = &l->py;
	/* files of the first recorders name no source: theirs was growth */
	if (c->meta.events[0] && pms_source_parse(c->meta.events, &m->source))
		return pms_error_set(err, PMS_EBADFILE, "%s: unknown event source '%s'", path,
				     c->meta.events);
	m->rss_start = c->meta.rss_start;
	memcpy(m->counters, c->counters, sizeof(m->counters));
	m->budget_per_sec = c->meta.budget_per_sec;
	m->max_depth = c->meta.max_depth;
	m->rate = c->meta.rate;
	snprintf(m->allocator, sizeof(m->allocator), "%s", c->meta.allocator);
	m->coverage = c->meta.coverage;
	m->top = top;
	if (c->has_end) {
		m->duration = c->end.duration;
		m->rss_end = c->end.rss_end;
		m->profiler_cpu = c->end.profiler_cpu;
		m->profiler_max_rss = c->end.profiler_max_rss;
		m->bpf_map_bytes = c->end.bpf_map_bytes;
		m->profile_bytes = c->end.profile_bytes;
		m->ended_by = pms_end_parse(c->end.ended_by);
	} else {
		/* what the last tick saw is all we know */
		m->duration = c->last_tick;
		m->rss_end = c->rss_last;
		m->ended_by = PMS_END_UNKNOWN;
		m->no_end_record = true;
	}
	return 0;
}

/* The file's own facts, as one JSON object (under "recording" or "a"/"b"). */
static void json_recording(struct json *j, const struct loaded *l)
{
	json_object_begin(j);
	json_kv_string(j, "path", l->path);
	json_kv_int(j, "format_version", RECFILE_VERSION);
	json_kv_bool(j, "truncated", cut_short(l));
	json_kv_bool(j, "damaged", l->c.corrupt);
	json_kv_bool(j, "complete", l->c.has_end);
	json_kv_double(j, "ends_at", l->meta.duration);
	json_kv_uint(j, "valid_bytes", l->c.valid_bytes);
	json_kv_string(j, "host", l->c.meta.host);
	json_kv_double(j, "start_time", l->c.meta.start_time);
	json_object_end(j);
}

/* report_json's document with "truncated" and "recording" added at its end: the report module
 * knows nothing of files, and the contract lets us add keys. */
static int print_report_json(const struct loaded *l)
{
	char *doc = NULL;
	size_t len = 0, end;
	FILE *mem = open_memstream(&doc, &len);
	struct json *j;
	int ret;

	if (!mem)
		return -errno;
	ret = report_json(mem, l->c.profile, &l->meta);
	if (fclose(mem) != 0 && !ret)
		ret = -ENOMEM;
	if (ret)
		goto out;
	for (end = len; end > 0 && doc[end - 1] != '}'; end--)
		;
	if (end == 0) {
		ret = -EINVAL;
		goto out;
	}
	for (end--; end > 0 && isspace((unsigned char)doc[end - 1]); end--)
		;
	fwrite(doc, 1, end, stdout);
	printf(",\n  \"truncated\": %s,\n  \"recording\": ", cut_short(l) ? "true" : "false");
	fflush(stdout);
	j = json_new(stdout, false);
	if (!j) {
		ret = -ENOMEM;
		goto out;
	}
	json_recording(j, l);
	json_free(j);
	printf("}\n");
out:
	free(doc);
	return ret;
}

static int report_one(const char *path, bool json, unsigned top)
{
	struct pms_error err = {{0}};
	struct loaded l;
	int ret = load(path, top, &l, &err);

	if (ret)
		return cli_fail(&err, ret);
	if (json) {
		ret = print_report_json(&l);
		if (ret) {
			recfile_contents_free(&l.c);
			return cli_fail(NULL, ret);
		}
	} else {
		l.meta.command = "report";
		report_text(stdout, l.c.profile, &l.meta);
	}
	if (cut_short(&l)) {
		if (!json)
			printf("\nThis recording is truncated: it ends at %.1f s (%s).\n",
			       l.meta.duration, cut_reason(&l));
		else
			fprintf(stderr, "pymemspy: %s is truncated: it ends at %.1f s (%s)\n", path,
				l.meta.duration, cut_reason(&l));
	}
	fflush(stdout);
	if (l.c.corrupt)
		ret = pms_error_set(&err, PMS_EBADFILE,
				    "%s is damaged at byte %llu: the report covers what precedes "
				    "it",
				    path, (unsigned long long)l.c.valid_bytes);
	recfile_contents_free(&l.c);
	return ret ? cli_fail(&err, ret) : PMS_EXIT_OK;
}

/* ---- --diff ---- */

struct diff_row {
	const struct profile_site *a, *b; /* either may be NULL: the site is in one only */
	double rate_a, rate_b;
	int64_t bytes_a, bytes_b;
};

static const struct profile_site *row_site(const struct diff_row *r)
{
	return r->b ? r->b : r->a;
}

static int cmp_key(const struct profile_site *x, const struct profile_site *y)
{
	int c = strcmp(x->function, y->function);

	if (c)
		return c;
	c = strcmp(x->file, y->file);
	if (c)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

static int cmp_site_ptrs(const void *a, const void *b)
{
	return cmp_key(*(const struct profile_site *const *)a,
		       *(const struct profile_site *const *)b);
}

static int cmp_rows(const void *a, const void *b)
{
	const struct diff_row *x = a, *y = b;
	double rx = fabs(x->rate_b - x->rate_a), ry = fabs(y->rate_b - y->rate_a);
	double bx = fabs((double)x->bytes_b - (double)x->bytes_a);
	double by = fabs((double)y->bytes_b - (double)y->bytes_a);

	if (rx != ry)
		return rx > ry ? -1 : 1;
	if (bx != by)
		return bx > by ? -1 : 1;
	return cmp_key(row_site(x), row_site(y));
}

/* Growth: resident bytes charged, net of releases. Allocator sources: live bytes. */
static int64_t site_net(const struct profile_site *s)
{
	return s ? s->grown - s->released : 0;
}

/* Sites of p sorted by (function, file, line), in a new array. */
static const struct profile_site **sites_by_key(struct profile *p, size_t *n)
{
	const struct profile_site *const *sites = profile_sites(p, n);
	const struct profile_site **out = malloc((*n + 1) * sizeof(*out));

	if (!out)
		return NULL;
	if (*n)
		memcpy(out, sites, *n * sizeof(*out));
	qsort(out, *n, sizeof(*out), cmp_site_ptrs);
	return out;
}

/* Matches the sites of a and b by (function, file, line), sorted by change. */
static int diff_rows(const struct loaded *a, const struct loaded *b, struct diff_row **out,
		     size_t *nout)
{
	const struct profile_site **sa = NULL, **sb = NULL;
	struct diff_row *rows = NULL;
	size_t na, nb, i = 0, k = 0, n = 0;
	int ret = -ENOMEM;

	sa = sites_by_key(a->c.profile, &na);
	sb = sites_by_key(b->c.profile, &nb);
	if (!sa || !sb)
		goto out;
	rows = calloc(na + nb + 1, sizeof(*rows));
	if (!rows)
		goto out;
	while (i < na || k < nb) {
		struct diff_row *r = &rows[n++];
		int c = i == na ? 1 : k == nb ? -1 : cmp_key(sa[i], sb[k]);

		if (c <= 0)
			r->a = sa[i++];
		if (c >= 0)
			r->b = sb[k++];
		r->bytes_a = site_net(r->a);
		r->bytes_b = site_net(r->b);
		r->rate_a = a->meta.duration > 0 ? (double)r->bytes_a / a->meta.duration : 0;
		r->rate_b = b->meta.duration > 0 ? (double)r->bytes_b / b->meta.duration : 0;
	}
	qsort(rows, n, sizeof(*rows), cmp_rows);
	*out = rows;
	*nout = n;
	rows = NULL;
	ret = 0;
out:
	free(sa);
	free(sb);
	free(rows);
	return ret;
}

static const char *row_status(const struct diff_row *r)
{
	return !r->a ? "new" : !r->b ? "gone" : "both";
}

/* "40.0 KiB/s", or "+40.0 KiB/s" for a change. */
static void format_rate(double v, bool sign, char *out, size_t outlen)
{
	char b[32];

	report_format_bytes(v, b, sizeof(b));
	snprintf(out, outlen, "%s%s/s", sign && v > 0 ? "+" : "", b);
}

static void diff_text(const struct loaded *a, const struct loaded *b, const struct diff_row *rows,
		      size_t n, unsigned top)
{
	const struct loaded *both[2] = {a, b};
	size_t shown = 0;

	printf("pymemspy report --diff: what changed from A to B\n");
	for (int i = 0; i < 2; i++) {
		const struct loaded *l = both[i];

		printf("  %c: %s: pid %d (%s), Python %s, %.1f s%s\n", 'A' + i, l->path,
		       l->meta.pid, l->meta.comm, l->py.text, l->meta.duration,
		       cut_short(l) ? " (truncated)" : "");
	}
	if (pms_source_is_allocator(a->meta.source))
		printf("\nSites whose live bytes changed most (estimated bytes allocated and not "
		       "freed at the end; rate: per second recorded)\n");
	else
		printf("\nSites whose growth changed most (resident bytes charged; rate: per "
		       "second recorded)\n");
	printf("  %-3s %11s %11s %12s %10s %10s  %s\n", "#", "RATE A", "RATE B", "CHANGE",
	       "BYTES A", "BYTES B", "FUNCTION (FILE:LINE)");
	for (size_t i = 0; i < n && shown < top; i++) {
		const struct diff_row *r = &rows[i];
		const struct profile_site *s = row_site(r);
		char ra[40], rb[40], ch[40], ba[32], bb[32];

		if (r->rate_a == r->rate_b && r->bytes_a == r->bytes_b)
			continue;
		shown++;
		format_rate(r->rate_a, false, ra, sizeof(ra));
		format_rate(r->rate_b, false, rb, sizeof(rb));
		format_rate(r->rate_b - r->rate_a, true, ch, sizeof(ch));
		report_format_bytes((double)r->bytes_a, ba, sizeof(ba));
		report_format_bytes((double)r->bytes_b, bb, sizeof(bb));
		printf("  %-3zu %11s %11s %12s %10s %10s  %s (%s:%d)%s\n", shown, r->a ? ra : "-",
		       r->b ? rb : "-", ch, r->a ? ba : "-", r->b ? bb : "-", s->function, s->file,
		       s->line,
		       !r->a   ? " [new]"
		       : !r->b ? " [gone]"
			       : "");
		for (size_t f = 1; f < s->stack_len && f < DIFF_STACK_LINES; f++)
			printf("        <- %s (%s:%d)\n", s->stack[f].function, s->stack[f].file,
			       s->stack[f].line);
	}
	if (shown == 0)
		printf("  (no site changed)\n");
}

static int diff_json(const struct loaded *a, const struct loaded *b, const struct diff_row *rows,
		     size_t n)
{
	struct json *j = json_new(stdout, true);
	const struct loaded *both[2] = {a, b};

	if (!j)
		return -ENOMEM;
	json_object_begin(j);
	json_kv_string(j, "schema", "pymemspy.diff/1");
	/* what bytes_a and bytes_b count (a key added after the first release of the schema) */
	json_kv_string(j, "measure",
		       pms_source_is_allocator(a->meta.source) ? "live_bytes" : "resident_growth");
	for (int i = 0; i < 2; i++) {
		const struct loaded *l = both[i];

		json_key(j, i ? "b" : "a");
		json_object_begin(j);
		json_kv_string(j, "path", l->path);
		json_kv_int(j, "pid", l->meta.pid);
		json_kv_string(j, "comm", l->meta.comm);
		json_key(j, "python");
		json_object_begin(j);
		json_kv_string(j, "version", l->py.text);
		json_kv_string(j, "build", pylayout_build_name(l->py.build));
		json_object_end(j);
		json_kv_string(j, "events", pms_source_name(l->meta.source));
		json_kv_double(j, "duration", l->meta.duration);
		json_kv_bool(j, "truncated", cut_short(l));
		json_kv_bool(j, "damaged", l->c.corrupt);
		json_object_end(j);
	}
	json_key(j, "sites");
	json_array_begin(j);
	for (size_t i = 0; i < n; i++) {
		const struct diff_row *r = &rows[i];
		const struct profile_site *s = row_site(r);

		json_object_begin(j);
		json_kv_string(j, "function", s->function);
		json_kv_string(j, "file", s->file);
		json_kv_int(j, "line", s->line);
		json_kv_string(j, "status", row_status(r));
		json_kv_int(j, "bytes_a", r->bytes_a);
		json_kv_int(j, "bytes_b", r->bytes_b);
		json_kv_int(j, "bytes_change", r->bytes_b - r->bytes_a);
		json_kv_double(j, "rate_a", r->rate_a);
		json_kv_double(j, "rate_b", r->rate_b);
		json_kv_double(j, "rate_change", r->rate_b - r->rate_a);
		json_kv_uint(j, "samples_a", r->a ? r->a->samples : 0);
		json_kv_uint(j, "samples_b", r->b ? r->b->samples : 0);
		report_json_stack(j, s->stack, s->stack_len);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
	json_free(j);
	return 0;
}

static int report_diff(const char *path_a, const char *path_b, bool json, unsigned top)
{
	struct pms_error err = {{0}};
	struct loaded a, b;
	struct diff_row *rows = NULL;
	size_t n = 0;
	int ret;

	memset(&b, 0, sizeof(b));
	ret = load(path_a, top, &a, &err);
	if (ret)
		goto out;
	ret = load(path_b, top, &b, &err);
	if (ret)
		goto out;
	/* resident growth and live heap bytes, or two allocators' views, are not one measure */
	if (a.meta.source != b.meta.source) {
		ret = pms_error_set(&err, PMS_EUSAGE,
				    "%s records '%s' events and %s records '%s': --diff compares "
				    "two recordings of the same source (record both with the same "
				    "--events)",
				    a.path, pms_source_name(a.meta.source), b.path,
				    pms_source_name(b.meta.source));
		goto out;
	}
	if (strcmp(a.meta.comm, b.meta.comm) != 0 || strcmp(a.py.text, b.py.text) != 0)
		fprintf(stderr,
			"pymemspy: warning: A is %s (Python %s) and B is %s (Python %s): sites "
			"are matched by function, file and line all the same\n",
			a.meta.comm, a.py.text, b.meta.comm, b.py.text);
	ret = diff_rows(&a, &b, &rows, &n);
	if (ret)
		goto out;
	if (json)
		ret = diff_json(&a, &b, rows, n);
	else
		diff_text(&a, &b, rows, n, top);
	fflush(stdout);
	if (ret)
		goto out;
	for (int i = 0; i < 2; i++) {
		const struct loaded *l = i ? &b : &a;

		if (cut_short(l))
			fprintf(stderr, "pymemspy: %s is truncated: it ends at %.1f s (%s)\n",
				l->path, l->meta.duration, cut_reason(l));
		if (l->c.corrupt && !ret)
			ret = pms_error_set(&err, PMS_EBADFILE,
					    "%s is damaged at byte %llu: the diff covers what "
					    "precedes it",
					    l->path, (unsigned long long)l->c.valid_bytes);
	}
out:
	free(rows);
	recfile_contents_free(&a.c);
	recfile_contents_free(&b.c);
	return ret ? cli_fail(&err, ret) : PMS_EXIT_OK;
}

int cmd_report(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"diff", no_argument, NULL, 'D'},
	    {"top", required_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	unsigned top = REPORT_CMD_DEFAULT_TOP;
	bool json = false, diff = false;
	long v;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "n:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'D':
			diff = true;
			break;
		case 'n':
			if (cli_parse_long(optarg, 1, 100000, &v))
				return cli_usage_error("report", "--top needs a positive number");
			top = (unsigned)v;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			return cli_help(usage);
		default:
			return cli_usage_error("report", "unknown option");
		}
	}
	if (diff) {
		if (argc - optind != 2)
			return cli_usage_error("report", "--diff needs two recordings, A and B");
		return report_diff(argv[optind], argv[optind + 1], json, top);
	}
	if (argc - optind != 1)
		return cli_usage_error("report", argc == optind ? "a recording FILE is required"
								: "one recording FILE at a time");
	return report_one(argv[optind], json, top);
}
