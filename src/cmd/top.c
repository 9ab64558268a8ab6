/* pymemspy top: a live view of a running process's memory growth by Python site. The same attach
 * as record (kernel events into a profile); every interval the profile's sites become rows
 * (grouped by line, function or file) with their growth rates over the last few intervals, drawn
 * full-screen, or written as plain-text snapshots when stdout is not a terminal. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attachopts.h"
#include "cli.h"
#include "leaks.h"
#include "proc.h"
#include "report.h"
#include "session.h"
#include "tui.h"
#include "u64map.h"

#define TOP_DEFAULT_BUDGET   500	 /* stack walks per second, as record */
#define TOP_DEFAULT_RATE     (64 * 1024) /* bytes between allocation samples, as record */
#define TOP_DEFAULT_INTERVAL 1.0
#define TOP_MIN_INTERVAL     0.1
#define TOP_DEFAULT_ROWS     10	 /* sites per plain-text snapshot */
#define TOP_RATE_SECONDS     5.0 /* rates cover about this much of the recent past */
#define TOP_MAX_SLOTS	     50
#define TOP_POLL_MS	     50 /* keys are read between polls: this bounds their latency */

/* A site of the profile as we know it, indexed by the profile's site id. */
struct site_stat {
	const char *function, *file; /* interned by the profile: stable while it lives */
	int line;
};

/* The state at the end of a refresh; rates are differences between two of them. */
struct mark {
	double at; /* seconds since attaching */
	uint64_t rss;
	uint64_t samples;
	int64_t charged; /* net bytes charged to all sites */
};

struct top {
	struct session *session;
	struct pytarget *target; /* the session's */
	struct profile *profile; /* the session's */
	struct sampler *sampler; /* the session's, once attached */
	char note[512];		 /* the sampler's last line for the user, on the screen */
	/* net bytes of each site in each of the last nslots refreshes (site-major) */
	struct site_stat *sites;
	int64_t *window;
	size_t nsites, sites_cap, nslots, slot;
	struct u64map *site_ids; /* hash of (function, file, line) -> site id */
	/* marks[refreshes % (nslots + 1)] is the newest; marks[0] starts as the attach */
	struct mark *marks;
	size_t refreshes;
	int64_t charged;
	uint64_t rss_start;
	uint64_t counters[PMS_CNT_MAX];
	struct tui_row *rows;
	size_t rows_cap;
	struct tui_view view;
};

/* ---- Sites by identity: the profile's site pointers move as it grows, its strings do not ---- */

static uint64_t key_hash(const char *function, const char *file, int line)
{
	struct {
		const char *function, *file;
		int64_t line;
	} k;

	memset(&k, 0, sizeof(k));
	k.function = function;
	k.file = file;
	k.line = line;
	return u64map_hash_bytes(&k, sizeof(k), 0x746f70);
}

static bool site_lookup(const struct top *t, const struct profile_site *s, size_t *id)
{
	uint64_t v;

	/* colliding keys go on to the next hash (the profile does the same) */
	for (uint64_t h = key_hash(s->function, s->file, s->line);; h++) {
		if (!u64map_get(t->site_ids, h, &v))
			return false;
		if (t->sites[v].function == s->function && t->sites[v].file == s->file &&
		    t->sites[v].line == s->line) {
			*id = (size_t)v;
			return true;
		}
	}
}

static int on_new_site(void *ctx, uint32_t id, const struct profile_site *s)
{
	struct top *t = ctx;
	uint64_t h = key_hash(s->function, s->file, s->line), v;

	if (id != t->nsites)
		return -EINVAL; /* ids come in order, from 0 */
	if (t->nsites == t->sites_cap) {
		size_t cap = t->sites_cap ? 2 * t->sites_cap : 64;
		struct site_stat *ns = realloc(t->sites, cap * sizeof(*ns));
		int64_t *nw;

		if (!ns)
			return -ENOMEM;
		t->sites = ns;
		nw = realloc(t->window, cap * t->nslots * sizeof(*nw));
		if (!nw)
			return -ENOMEM;
		t->window = nw;
		t->sites_cap = cap;
	}
	while (u64map_get(t->site_ids, h, &v))
		h++;
	if (u64map_put(t->site_ids, h, id))
		return -ENOMEM;
	t->sites[id] = (struct site_stat){s->function, s->file, s->line};
	memset(&t->window[(size_t)id * t->nslots], 0, t->nslots * sizeof(*t->window));
	t->nsites++;
	return 0;
}

static int on_delta(void *ctx, const struct profile_delta *d)
{
	struct top *t = ctx;
	int64_t net = d->grown - d->released;

	if (d->site >= t->nsites)
		return -EINVAL;
	t->window[(size_t)d->site * t->nslots + t->slot] += net;
	t->charged += net;
	return 0;
}

/* ---- Every interval: what changed, and the rates ---- */

static const struct mark *mark_at(const struct top *t, size_t refresh)
{
	return &t->marks[refresh % (t->nslots + 1)];
}

/* The oldest mark the rates start from. */
static const struct mark *window_start(const struct top *t)
{
	size_t k = t->refreshes < t->nslots ? t->refreshes : t->nslots;

	return mark_at(t, t->refreshes - k);
}

static double window_seconds(const struct top *t)
{
	return mark_at(t, t->refreshes)->at - window_start(t)->at;
}

static double site_rate(const struct top *t, size_t id, double seconds)
{
	const int64_t *w = &t->window[id * t->nslots];
	int64_t sum = 0;

	for (size_t i = 0; i < t->nslots; i++)
		sum += w[i];
	return seconds > 0 ? (double)sum / seconds : 0;
}

/* Takes what the profile learned since the last refresh into a new slot of every site's window,
 * and a new mark. */
static int refresh(struct top *t, double now)
{
	struct profile_delta_sink sink = {.site = on_new_site, .delta = on_delta, .ctx = t};
	struct mark *m;
	int ret;

	t->slot = t->refreshes % t->nslots;
	for (size_t i = 0; i < t->nsites; i++)
		t->window[i * t->nslots + t->slot] = 0;
	ret = profile_take_deltas(t->profile, &sink);
	if (ret)
		return ret;
	sampler_counters(t->sampler, t->counters);
	t->refreshes++;
	m = &t->marks[t->refreshes % (t->nslots + 1)];
	/* an exiting target has no RSS to read (a zombie's is 0): keep the last one */
	if (proc_rss(pytarget_proc(t->target), &m->rss) || !m->rss)
		m->rss = mark_at(t, t->refreshes - 1)->rss;
	m->at = now;
	m->samples = t->counters[PMS_CNT_SAMPLES];
	m->charged = t->charged;
	return 0;
}

static void fill_header(struct top *t, size_t nsites)
{
	const struct mark *now = mark_at(t, t->refreshes), *start = window_start(t);
	struct tui_header *h = &t->view.hdr;
	double secs = window_seconds(t);

	h->elapsed = now->at;
	h->rss = now->rss;
	h->rss_change = (int64_t)now->rss - (int64_t)t->rss_start;
	h->window = secs;
	if (secs > 0) {
		h->rss_rate = ((double)now->rss - (double)start->rss) / secs;
		h->charged_rate = (double)(now->charged - start->charged) / secs;
		h->samples_rate = (double)(now->samples - start->samples) / secs;
	}
	h->drops = t->counters[PMS_CNT_RINGBUF_FULL] + profile_totals(t->profile)->stacks_lost;
	h->sampled_out = t->counters[PMS_CNT_BUDGET_SKIPPED];
	h->nsites = nsites;
}

/* ---- Rows: the profile's sites, grouped ---- */

/* What identifies a site's row in a grouping. Pseudo-sites (no file) keep their own rows. */
static void group_key(const struct profile_site *s, enum tui_group g, struct tui_row *r)
{
	r->function = g == TUI_GROUP_FILE && *s->file ? NULL : s->function;
	r->file = s->file;
	r->line = g == TUI_GROUP_LINE ? s->line : 0;
}

/* Judges each row's series (a group's is the sum of its sites'): only rows that hold enough to
 * be a candidate at all. */
static int judge_rows(struct top *t, const struct profile_site *const *sites, size_t n,
		      const size_t *row_of, size_t nrows)
{
	double bucket = profile_bucket_seconds(t->profile);
	size_t nb = 0, nbuf = 0, *buf_of = NULL, *only = NULL;
	int64_t *bufs = NULL;
	int ret = 0;

	for (size_t i = 0; i < n; i++)
		if (sites[i]->nseries > nb)
			nb = sites[i]->nseries;
	if (!nb)
		return 0; /* no time series yet: nothing to judge */
	buf_of = malloc((nrows + 1) * sizeof(*buf_of));
	only = malloc((nrows + 1) * sizeof(*only));
	if (!buf_of || !only) {
		ret = -ENOMEM;
		goto out;
	}
	/* a row of one site judges that site's series in place; bigger groups get a sum */
	for (size_t r = 0; r < nrows; r++) {
		buf_of[r] = SIZE_MAX;
		if (t->rows[r].resident >= LEAKS_MIN_BYTES && t->rows[r].sites > 1)
			buf_of[r] = nbuf++;
	}
	for (size_t i = 0; i < n; i++)
		if (t->rows[row_of[i]].sites == 1)
			only[row_of[i]] = i;
	if (nbuf) {
		bufs = calloc(nbuf * nb, sizeof(*bufs));
		if (!bufs) {
			ret = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			size_t b = buf_of[row_of[i]];

			if (b == SIZE_MAX)
				continue;
			for (size_t k = 0; k < sites[i]->nseries; k++)
				bufs[b * nb + k] += sites[i]->series[k];
		}
	}
	for (size_t r = 0; r < nrows; r++) {
		struct tui_row *row = &t->rows[r];
		struct leak_series ls = {
		    .bucket_seconds = bucket,
		    .step_bytes = leaks_step_bytes((double)row->allocated, row->samples),
		};

		if (row->resident < LEAKS_MIN_BYTES)
			continue;
		if (row->sites == 1) {
			ls.bytes = sites[only[r]]->series;
			ls.n = sites[only[r]]->nseries;
		} else {
			ls.bytes = &bufs[buf_of[r] * nb];
			ls.n = nb;
		}
		leaks_judge_ex(&ls, &row->leak);
	}
out:
	free(buf_of);
	free(only);
	free(bufs);
	return ret;
}

/* Rebuilds the view's rows from the profile as it is now. */
static int build_rows(struct top *t)
{
	enum tui_group g = t->view.group;
	const struct profile_site *const *sites;
	double secs = window_seconds(t);
	struct u64map *groups = NULL;
	size_t n, nrows = 0, *row_of = NULL;
	int ret = 0;

	profile_extend_to(t->profile, session_elapsed(t->session));
	sites = profile_sites(t->profile, &n);
	if (!sites)
		return -ENOMEM;
	if (n > t->rows_cap) {
		struct tui_row *r = realloc(t->rows, n * sizeof(*r));

		if (!r)
			return -ENOMEM;
		t->rows = r;
		t->rows_cap = n;
	}
	groups = u64map_new(n + 16);
	row_of = malloc((n + 1) * sizeof(*row_of));
	if (!groups || !row_of) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct profile_site *s = sites[i];
		struct tui_row key, *row = NULL;
		uint64_t h, v;
		size_t id;

		group_key(s, g, &key);
		for (h = key_hash(key.function, key.file, key.line); u64map_get(groups, h, &v);
		     h++) {
			if (t->rows[v].function == key.function && t->rows[v].file == key.file &&
			    t->rows[v].line == key.line) {
				row = &t->rows[v];
				break;
			}
		}
		if (!row) {
			if (u64map_put(groups, h, nrows)) {
				ret = -ENOMEM;
				goto out;
			}
			v = nrows++;
			row = &t->rows[v];
			memset(row, 0, sizeof(*row));
			row->function = key.function;
			row->file = key.file;
			row->line = key.line;
			/* sites come biggest first: the first one of a group holds the most */
			row->stack = s->stack;
			row->stack_len = s->stack_len;
		}
		row_of[i] = (size_t)v;
		row->sites++;
		row->resident += s->grown - s->released;
		row->allocated += s->grown;
		row->samples += s->samples;
		/* a site not seen by a refresh yet has no rate so far */
		if (site_lookup(t, s, &id))
			row->rate += site_rate(t, id, secs);
	}
	ret = judge_rows(t, sites, n, row_of, nrows);
	if (ret)
		goto out;
	tui_sort_rows(t->rows, nrows, t->view.sort, t->view.ascending);
	t->view.rows = t->rows;
	t->view.nrows = nrows;
	fill_header(t, n);
	tui_reselect(&t->view);
out:
	u64map_free(groups);
	free(row_of);
	return ret;
}

/* ---- Plain text, when stdout is not a terminal ---- */

/* One block: a header line, the column headings, the top rows, a blank line. -EPIPE when the
 * reader went away. */
static int print_snapshot(const struct top *t, FILE *out, unsigned top)
{
	const struct tui_view *v = &t->view;
	const struct tui_header *h = &v->hdr;
	char a[32], b[32], c[40], label[1024];
	size_t shown = 0;

	report_format_bytes((double)h->rss, a, sizeof(a));
	report_format_bytes(h->rss_rate, b, sizeof(b));
	report_format_bytes(h->charged_rate, c, sizeof(c));
	fprintf(out,
		"pymemspy top: pid %d (%s), Python %s, %s, %.1f s: RSS %s (%s%s/s), charged "
		"%s%s/s, %.0f samples/s, %llu drops, %llu sampled out, %zu site%s\n",
		h->pid, h->comm, h->python, h->events, h->elapsed, a, h->rss_rate > 0 ? "+" : "", b,
		h->charged_rate > 0 ? "+" : "", c, h->samples_rate, (unsigned long long)h->drops,
		(unsigned long long)h->sampled_out, h->nsites, h->nsites == 1 ? "" : "s");
	fprintf(out, "  %-3s %10s %11s", "#", h->show_alloc ? "LIVE" : "RESIDENT", "GROWTH/s");
	if (h->show_alloc)
		fprintf(out, " %10s", "ALLOC");
	fprintf(out, " %5s %8s  %s\n", "LEAK", "SAMPLES", tui_group_heading(v->group));
	for (size_t i = 0; i < v->nrows && shown < top; i++) {
		const struct tui_row *r = &v->rows[i];

		shown++;
		report_format_bytes((double)r->resident, a, sizeof(a));
		report_format_bytes(r->rate, b, sizeof(b));
		snprintf(c, sizeof(c), "%s%s", r->rate > 0 ? "+" : "", b);
		fprintf(out, "  %-3zu %10s %11s", shown, a, c);
		if (h->show_alloc) {
			report_format_bytes((double)r->allocated, a, sizeof(a));
			fprintf(out, " %10s", a);
		}
		if (r->leak.candidate)
			snprintf(b, sizeof(b), "%.2f", r->leak.confidence);
		else
			snprintf(b, sizeof(b), "-");
		tui_row_label(r, v->group, false, label, sizeof(label));
		fprintf(out, " %5s %8llu  %s\n", b, (unsigned long long)r->samples, label);
	}
	if (!shown)
		fprintf(out, "  (no growth charged yet)\n");
	fprintf(out, "\n");
	return fflush(out) || ferror(out) ? -EPIPE : 0;
}

/* ---- The command ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: pymemspy top --pid PID [--interval S] [--duration S] [--events SOURCE]\n"
		"                    [--max-depth N] [--budget N] [--rate BYTES] [--attach MODE]\n"
		"                    [--max-overhead PCT] [--sort COLUMN] [--group BY]\n"
		"                    [--top N] [--verbose]\n\n"
		"A live view of a running CPython process's memory growth by Python site: the\n"
		"sites holding the most resident memory, how fast each grows, and which look like\n"
		"leaks. Full-screen when stdout is a terminal ('?' lists the keys); otherwise a\n"
		"plain-text snapshot of the top sites every interval. Ends on 'q', Ctrl-C,\n"
		"SIGTERM, --duration or the target's exit; the target keeps running, unchanged.\n\n"
		"Options:\n"
		"  -p, --pid PID        the process to watch\n"
		"  -i, --interval S     refresh every S seconds (default %.0f; at least %.1f)\n"
		"  -d, --duration S     stop after S seconds (default: until q or Ctrl-C)\n"
		"  -e, --events SOURCE  growth: resident memory the target gains (page faults and\n"
		"                       RSS changes), and the ranges it releases (default)\n"
		"                       survivors: growth, with pymalloc's pools charged to\n"
		"                       the stacks whose sampled objects survive (needs\n"
		"                       hardware watchpoints that trap: exit 8 where not)\n"
		"                       malloc: uprobes on the malloc family and free: live\n"
		"                       (allocated, not freed) bytes; pymalloc: CPython's own\n"
		"                       allocators (heavy: for staging); see pymemspy(1)\n"
		"      --max-depth N    frames per stack, 1 to %d (default %d)\n"
		"      --budget N       growth: stack walks per second before sampling starts\n"
		"                       (default %d; 0: no limit)\n"
		"  -r, --rate BYTES     malloc, pymalloc: mean bytes between two sampled\n"
		"                       allocations (default %uK)\n"
		"      --attach MODE    malloc, pymalloc: 'session', 'multi' or 'perf' uprobes\n"
		"                       (default: the best the kernel has)\n"
		"      --max-overhead PCT\n"
		"                       malloc, pymalloc: stop the probes once the slowdown\n"
		"                       predicted from the trap cost timed here and the\n"
		"                       target's call rate passes PCT %% of a thread\n"
		"  -s, --sort COLUMN    resident (default), growth, alloc (malloc, pymalloc),\n"
		"                       leak, samples or name\n"
		"  -g, --group BY       line (default), function or file\n"
		"  -n, --top N          sites per plain-text snapshot (default %d)\n"
		"  -v, --verbose        libbpf's messages on stderr\n"
		"  -h, --help           this help\n\n"
		"Keys: q quit, ? help, j/k or arrows select, Enter stack of the selected row,\n"
		"p or space pause, r g a l s n sort by resident/growth/alloc/leak/samples/name\n"
		"(again: reverse), 1 2 3 or Tab group by line/function/file.\n\n"
		"Needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE (and tracefs readable).\n\n"
		"Examples:\n"
		"  sudo pymemspy top --pid 4242\n"
		"  sudo pymemspy top --pid 4242 --group function --sort growth\n"
		"  sudo pymemspy top --pid 4242 --interval 5 --duration 60 > growth.txt\n",
		TOP_DEFAULT_INTERVAL, TOP_MIN_INTERVAL, PMS_MAX_DEPTH, PMS_MAX_DEPTH,
		TOP_DEFAULT_BUDGET, TOP_DEFAULT_RATE / 1024, TOP_DEFAULT_ROWS);
}

static void top_free(struct top *t)
{
	session_close(t->session);
	u64map_free(t->site_ids);
	free(t->sites);
	free(t->window);
	free(t->marks);
	free(t->rows);
}

/* What the command line asks. */
struct top_args {
	struct attach_opts attach;
	pid_t pid;
	double interval, duration; /* duration 0: until stopped */
	unsigned top_rows;
	enum tui_sort sort;
	enum tui_group group;
};

/* Fills a from the command line. Returns -1 to go on, else the exit code (--help, a usage
 * error). */
static int parse_args(int argc, char **argv, struct top_args *a)
{
	static const struct option opts[] = {
	    ATTACH_LONG_OPTIONS,
	    {"pid", required_argument, NULL, 'p'},
	    {"interval", required_argument, NULL, 'i'},
	    {"duration", required_argument, NULL, 'd'},
	    {"sort", required_argument, NULL, 's'},
	    {"group", required_argument, NULL, 'g'},
	    {"top", required_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	long v;
	int c;

	*a = (struct top_args){.interval = TOP_DEFAULT_INTERVAL,
			       .top_rows = TOP_DEFAULT_ROWS,
			       .sort = TUI_SORT_RESIDENT,
			       .group = TUI_GROUP_LINE};
	attach_opts_init(&a->attach, TOP_DEFAULT_BUDGET, TOP_DEFAULT_RATE);
	optind = 1;
	while ((c = getopt_long(argc, argv, ATTACH_SHORT_OPTIONS "p:i:d:s:g:n:h", opts, NULL)) !=
	       -1) {
		int applied = attach_opts_parse(&a->attach, "top", c, optarg);

		if (applied < 0)
			return PMS_EXIT_USAGE;
		if (applied)
			continue;
		switch (c) {
		case 'p':
			if (cli_parse_pid(optarg, &a->pid))
				return cli_usage_error("top", "--pid needs a process id");
			break;
		case 'i':
			if (cli_parse_seconds(optarg, &a->interval) ||
			    a->interval < TOP_MIN_INTERVAL || a->interval > 3600)
				return cli_usage_error("top",
						       "--interval needs a number of seconds "
						       "from 0.1 to 3600");
			break;
		case 'd':
			if (cli_parse_seconds(optarg, &a->duration) || a->duration <= 0)
				return cli_usage_error("top", "--duration needs a positive number "
							      "of seconds");
			break;
		case 's':
			if (tui_sort_parse(optarg, &a->sort))
				return cli_usage_error("top",
						       "--sort: resident, growth, alloc, leak, "
						       "samples or name");
			break;
		case 'g':
			if (tui_group_parse(optarg, &a->group))
				return cli_usage_error("top", "--group: line, function or file");
			break;
		case 'n':
			if (cli_parse_long(optarg, 1, 100000, &v))
				return cli_usage_error("top", "--top needs a positive number");
			a->top_rows = (unsigned)v;
			break;
		case 'h':
			return cli_help(usage);
		default:
			return cli_usage_error("top", "unknown option");
		}
	}
	if (cli_need_pid("top", argc, a->pid))
		return PMS_EXIT_USAGE;
	if (attach_opts_check(&a->attach, "top"))
		return PMS_EXIT_USAGE;
	if (a->sort == TUI_SORT_ALLOC && !pms_source_is_allocator(a->attach.sampler.source))
		return cli_usage_error("top",
				       "--sort alloc: this event source sees no allocations");
	return -1;
}

/* Acts on the keys typed since the last step. Returns 1 to quit, 0, or a negative errno. */
static int handle_keys(struct top *t, struct tui *tui, bool *redraw)
{
	int key, ret = 0;

	while (tui && (key = tui_getkey(tui)) != -1) {
		switch (tui_key(&t->view, key)) {
		case TUI_QUIT:
			return 1;
		case TUI_RESORT:
			tui_sort_rows(t->view.rows, t->view.nrows, t->view.sort, t->view.ascending);
			tui_reselect(&t->view);
			*redraw = true;
			break;
		case TUI_REGROUP: /* also when paused: the frozen rows are of another kind */
		case TUI_RESUME:
			ret = build_rows(t);
			*redraw = true;
			break;
		case TUI_REDRAW:
			*redraw = true;
			break;
		case TUI_NONE:
			break;
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* Refreshes every interval and draws (or prints) until a signal, --duration, the target's exit,
 * the q key, or a reader that went away (*output_closed). */
static int top_loop(struct top *t, const struct top_args *a, struct tui *tui, bool plain,
		    enum pms_end *ended, bool *output_closed, struct pms_error *err)
{
	double next_refresh = a->interval;
	char note[512];

	for (;;) {
		bool redraw = false;
		int n = session_step(t->session, TOP_POLL_MS, a->duration, ended, note,
				     sizeof(note), err);
		double now = session_elapsed(t->session);

		if (n < 0)
			return n;
		if (note[0] && plain)
			fprintf(stderr, "pymemspy: %s\n", note);
		else if (note[0]) {
			/* on the screen, not under it */
			snprintf(t->note, sizeof(t->note), "%s", note);
			t->view.hdr.note = t->note;
		}
		if (n > 0)
			return 0;
		if (now >= next_refresh) {
			n = refresh(t, now);
			if (!n && !t->view.paused)
				n = build_rows(t);
			if (n)
				return n;
			if (plain && print_snapshot(t, stdout, a->top_rows)) {
				*output_closed = true; /* nobody reads any more: end quietly */
				return 0;
			}
			redraw = true;
			/* a late refresh does not make the next ones come in a burst */
			next_refresh += a->interval;
			if (next_refresh <= now)
				next_refresh = now + a->interval;
		}
		n = handle_keys(t, tui, &redraw);
		if (n)
			return n < 0 ? n : 0;
		if (tui && redraw)
			tui_draw(tui, &t->view);
	}
}

int cmd_top(int argc, char **argv)
{
	struct top_args a;
	struct pms_error err = {{0}};
	struct top t = {0};
	struct tui *tui = NULL;
	enum pms_end ended = PMS_END_SIGNAL;
	bool plain, output_closed = false;
	double now;
	int ret = parse_args(argc, argv, &a);

	if (ret >= 0)
		return ret;
	t.view.sort = a.sort;
	t.view.group = a.group;
	t.view.ascending = !tui_sort_descending_default(t.view.sort);
	t.view.hdr.show_alloc = pms_source_is_allocator(a.attach.sampler.source);
	plain = !isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO);
	/* at 1 s a window of 5 slots; never fewer than one, never more than the cap */
	t.nslots = (size_t)lround(TOP_RATE_SECONDS / a.interval);
	t.nslots = t.nslots < 1 ? 1 : t.nslots > TOP_MAX_SLOTS ? TOP_MAX_SLOTS : t.nslots;

	/* signals are taken before the screen opens, so ncurses keeps its hands off them */
	ret = session_open(a.pid, &t.session, &err);
	if (ret)
		goto out;
	t.target = session_target(t.session);
	t.profile = session_profile(t.session);
	t.site_ids = u64map_new(1024);
	t.marks = calloc(t.nslots + 1, sizeof(*t.marks));
	if (!t.site_ids || !t.marks) {
		ret = -ENOMEM;
		goto out;
	}
	t.view.hdr.pid = a.pid;
	t.view.hdr.comm = proc_comm(pytarget_proc(t.target));
	t.view.hdr.python = pytarget_version(t.target)->text;
	t.view.hdr.build = pylayout_build_name(pytarget_version(t.target)->build);
	t.view.hdr.events = pms_source_name(a.attach.sampler.source);

	ret = session_attach(t.session, &a.attach.sampler, &err);
	if (ret)
		goto out;
	t.sampler = session_sampler(t.session);
	if (plain)
		sampler_describe(t.sampler, stderr);
	t.rss_start = session_rss_start(t.session);
	t.marks[0].rss = t.rss_start;
	if (plain)
		fprintf(stderr, "pymemspy: watching pid %d (Python %s); Ctrl-C to stop\n", a.pid,
			t.view.hdr.python);
	else
		ret = tui_open(&tui, &err);
	if (!ret)
		ret = build_rows(&t);
	if (ret)
		goto out;
	if (tui)
		tui_draw(tui, &t.view);
	ret = top_loop(&t, &a, tui, plain, &ended, &output_closed, &err);
	now = session_elapsed(t.session);
	/* the terminal first: whatever comes next is printed on a normal screen */
	tui_close(tui);
	tui = NULL;
	if (!ret && !output_closed && ended == PMS_END_TARGET_EXITED) {
		/* the live view vanishes with the screen: leave its last state on the terminal (as
		 * of the last refresh: the exit's own unmapping is teardown, not the program) */
		if (!plain)
			print_snapshot(&t, stdout, a.top_rows);
	} else if (!ret && !output_closed && plain &&
		   now - mark_at(&t, t.refreshes)->at >= TOP_POLL_MS / 1000.0) {
		/* the last, partial interval */
		ret = refresh(&t, now);
		if (!ret)
			ret = build_rows(&t);
		if (!ret)
			print_snapshot(&t, stdout, a.top_rows);
	}
	if (!ret && ended == PMS_END_TARGET_EXITED)
		fprintf(stderr, "pymemspy: the target (pid %d) exited after %.1f s; top stopped\n",
			a.pid, now);
out:
	tui_close(tui);
	top_free(&t);
	return ret ? cli_fail(&err, ret) : PMS_EXIT_OK;
}
