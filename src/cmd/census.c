/* pymemspy census: what lives in a running CPython heap, by type, which named containers grow,
 * from outside with ptrace rights only (no BPF). Snapshots every --interval over --duration;
 * each type's count and bytes at the last one, and their rates. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "census.h"
#include "cli.h"
#include "clock.h"
#include "json.h"
#include "ptracelock.h"
#include "pygc.h"
#include "pytarget.h"

#define CENSUS_DEFAULT_DURATION 10.0
#define CENSUS_DEFAULT_INTERVAL 2.0
#define CENSUS_DEFAULT_TOP	20
#define CENSUS_MAX_SNAPSHOTS	10000
#define ITEM_TYPES_SHOWN	3

/* What census keeps about a holder beyond its series: the last sighting's type and item types. */
struct holder_info {
	char type[160];
	uint32_t item_types[PYGC_HOLDER_SAMPLE];
	size_t nitems;
};

struct census {
	struct pytarget *target;
	struct pygc *gc;
	struct census_table *types;   /* key: module '\x1f' name */
	struct census_table *holders; /* key: path */
	struct holder_info *hinfo;    /* by holder row */
	size_t caphinfo;
	struct pygc_counters counters; /* summed over snapshots (bytes_read: the total) */
	double duration, paused_s, last_scan_s;
	size_t snapshots;
	bool partial; /* the last snapshot was cut short */
	uint64_t budget;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int keep_snapshot(struct census *c, const struct pygc_snapshot *s, double t)
{
	char key[300];
	int ret;

	ret = census_table_snapshot(c->types, t);
	if (ret == 0)
		ret = census_table_snapshot(c->holders, t);
	if (ret)
		return ret;
	for (size_t i = 0; i < s->ntallies; i++) {
		const struct pygc_type *ty = pygc_type_at(c->gc, s->tallies[i].type);

		snprintf(key, sizeof(key), "%s\x1f%s", ty->module, ty->name);
		ret = census_table_add(c->types, key, (double)s->tallies[i].count,
				       (double)s->tallies[i].bytes);
		if (ret < 0)
			return ret;
	}
	for (size_t i = 0; i < s->nholders; i++) {
		const struct pygc_holder *h = &s->holders[i];
		const struct pygc_type *ty = pygc_type_at(c->gc, h->type);
		struct holder_info *hi;
		int row =
		    census_table_add(c->holders, h->path, (double)h->length, (double)h->bytes);

		if (row < 0)
			return row;
		if ((size_t)row >= c->caphinfo) {
			size_t cap = c->caphinfo ? 2 * c->caphinfo : 256;
			struct holder_info *n;

			while (cap <= (size_t)row)
				cap *= 2;
			n = realloc(c->hinfo, cap * sizeof(*n));
			if (!n)
				return -ENOMEM;
			memset(n + c->caphinfo, 0, (cap - c->caphinfo) * sizeof(*n));
			c->hinfo = n;
			c->caphinfo = cap;
		}
		hi = &c->hinfo[row];
		snprintf(hi->type, sizeof(hi->type), "%s", ty ? ty->name : "?");
		memcpy(hi->item_types, h->item_types, sizeof(hi->item_types));
		hi->nitems = h->nitems;
	}
	c->counters.objects_read += s->counters.objects_read;
	c->counters.gc_objects += s->counters.gc_objects;
	c->counters.torn_reads += s->counters.torn_reads;
	c->counters.invalid_objects += s->counters.invalid_objects;
	c->counters.unseen += s->counters.unseen;
	c->counters.bytes_read = s->counters.bytes_read;
	c->counters.throttle_ns = s->counters.throttle_ns;
	c->last_scan_s = s->scan_s;
	c->snapshots++;
	return 0;
}

/* Rows sorted for output. */
struct out_row {
	size_t row;
	struct census_stats st;
};

static int by_bytes(const void *a, const void *b)
{
	const struct out_row *x = a, *y = b;

	return x->st.b < y->st.b ? 1 : x->st.b > y->st.b ? -1 : 0;
}

static int by_count_rate(const void *a, const void *b)
{
	const struct out_row *x = a, *y = b;

	return x->st.a_rate.rate < y->st.a_rate.rate   ? 1
	       : x->st.a_rate.rate > y->st.a_rate.rate ? -1
						       : 0;
}

static int by_bytes_rate(const void *a, const void *b)
{
	const struct out_row *x = a, *y = b;

	return x->st.b_rate.rate < y->st.b_rate.rate   ? 1
	       : x->st.b_rate.rate > y->st.b_rate.rate ? -1
						       : 0;
}

static struct out_row *rows_of(const struct census_table *t, size_t *n, bool only_present)
{
	size_t rows = census_table_rows(t), k = 0;
	struct out_row *out = calloc(rows ? rows : 1, sizeof(*out));

	if (!out)
		return NULL;
	for (size_t i = 0; i < rows; i++) {
		census_table_stats(t, i, &out[k].st);
		out[k].row = i;
		if (!only_present || out[k].st.in_last)
			k++;
	}
	*n = k;
	return out;
}

/* A holder grows when its length does: the whole interval above zero with 3+ snapshots, a
 * positive slope with 2. */
static bool growing(const struct census_stats *st)
{
	if (st->a_rate.points >= 3)
		return st->a_rate.low > 0;
	return st->a_rate.points == 2 && st->a_rate.rate > 0;
}

static void split_key(const char *key, char *module, size_t mlen, const char **name)
{
	const char *sep = strchr(key, '\x1f');

	if (!sep) {
		snprintf(module, mlen, "?");
		*name = key;
		return;
	}
	snprintf(module, mlen, "%.*s", (int)(sep - key), key);
	*name = sep + 1;
}

/* The item types of a holder's sample: up to `max` distinct names with their shares. */
struct share {
	uint32_t type;
	size_t n;
};

static size_t item_shares(const struct holder_info *hi, struct share *out, size_t max)
{
	size_t k = 0;

	for (size_t i = 0; i < hi->nitems; i++) {
		size_t j;

		for (j = 0; j < k; j++)
			if (out[j].type == hi->item_types[i])
				break;
		if (j < k) {
			out[j].n++;
		} else if (k < max) {
			out[k].type = hi->item_types[i];
			out[k].n = 1;
			k++;
		}
	}
	for (size_t i = 1; i < k; i++)
		for (size_t j = i; j > 0 && out[j].n > out[j - 1].n; j--) {
			struct share tmp = out[j];

			out[j] = out[j - 1];
			out[j - 1] = tmp;
		}
	return k;
}

static void fmt_bytes(char *out, size_t len, double b)
{
	const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;

	while (fabs(b) >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void print_text(const struct census *c, long top)
{
	const struct pyversion *v = pytarget_version(c->target);
	struct proc *p = pytarget_proc(c->target);
	struct out_row *rows, *hrows;
	size_t n = 0, nh = 0, shown = 0;
	char b1[32], b2[32];

	printf("Census of process %d (%s): Python %s (%s build), %zu snapshot%s over %.1f s, %s\n",
	       proc_pid(p), proc_comm(p), v->text, pylayout_build_name(v->build), c->snapshots,
	       c->snapshots == 1 ? "" : "s", c->duration,
	       c->paused_s > 0 ? "target paused for each snapshot" : "target not paused");
	fmt_bytes(b1, sizeof(b1), (double)c->counters.bytes_read);
	printf("Read %llu objects (%llu on the collector's lists; %llu torn links, %llu invalid), "
	       "%s of the target's memory; last scan %.2f s",
	       (unsigned long long)c->counters.objects_read,
	       (unsigned long long)c->counters.gc_objects,
	       (unsigned long long)c->counters.torn_reads,
	       (unsigned long long)c->counters.invalid_objects, b1, c->last_scan_s);
	if (c->paused_s > 0)
		printf(", paused %.3f s in all", c->paused_s);
	printf("\n");
	if (c->partial)
		printf("The last snapshot is partial: the target exited while it was read.\n");

	rows = rows_of(c->types, &n, false);
	if (!rows)
		return;
	if (c->snapshots >= 2) {
		qsort(rows, n, sizeof(*rows), by_count_rate);
		printf("\nGrowth (count and rate per second, 95%% interval):\n");
		for (size_t i = 0; i < n && shown < (size_t)top; i++) {
			char module[128];
			const char *name;

			if (!(rows[i].st.a_rate.rate > 0))
				break;
			split_key(census_table_key(c->types, rows[i].row), module, sizeof(module),
				  &name);
			printf("  %-40.40s %10.0f %+10.1f/s  [%+.1f, %+.1f]\n", name, rows[i].st.a,
			       rows[i].st.a_rate.rate, rows[i].st.a_rate.low,
			       rows[i].st.a_rate.high);
			shown++;
		}
		if (shown == 0)
			printf("  (no type grew)\n");
	}
	qsort(rows, n, sizeof(*rows), by_bytes);
	printf("\nTypes by bytes (last snapshot):\n");
	printf("  %12s %10s %12s %10s  %s\n", "bytes", "count", "bytes/s", "count/s", "type");
	for (size_t i = 0; i < n && i < (size_t)top; i++) {
		char module[128];
		const char *name;

		if (rows[i].st.a <= 0)
			break;
		split_key(census_table_key(c->types, rows[i].row), module, sizeof(module), &name);
		fmt_bytes(b1, sizeof(b1), rows[i].st.b);
		fmt_bytes(b2, sizeof(b2), rows[i].st.b_rate.rate);
		printf("  %12s %10.0f %12s %+10.1f  %s%s%s\n", b1, rows[i].st.a, b2,
		       rows[i].st.a_rate.rate, strcmp(module, "builtins") ? module : "",
		       strcmp(module, "builtins") ? "." : "", name);
	}
	free(rows);

	hrows = rows_of(c->holders, &nh, true);
	if (!hrows)
		return;
	qsort(hrows, nh, sizeof(*hrows), by_bytes_rate);
	printf("\nGrowing holders:\n");
	shown = 0;
	for (size_t i = 0; i < nh && shown < (size_t)top; i++) {
		const struct holder_info *hi = &c->hinfo[hrows[i].row];
		struct share sh[ITEM_TYPES_SHOWN];
		size_t k;

		if (!growing(&hrows[i].st))
			continue;
		fmt_bytes(b1, sizeof(b1), hrows[i].st.b);
		fmt_bytes(b2, sizeof(b2), hrows[i].st.b_rate.rate);
		printf("  %s (%s): length %.0f, %+.1f/s [%+.1f, %+.1f]; %s, %s/s",
		       census_table_key(c->holders, hrows[i].row), hi->type, hrows[i].st.a,
		       hrows[i].st.a_rate.rate, hrows[i].st.a_rate.low, hrows[i].st.a_rate.high, b1,
		       b2);
		k = item_shares(hi, sh, ITEM_TYPES_SHOWN);
		for (size_t j = 0; j < k; j++) {
			const struct pygc_type *t = pygc_type_at(c->gc, sh[j].type);

			printf("%s%s %.0f%%", j ? ", " : "; new items: ", t ? t->name : "?",
			       100.0 * (double)sh[j].n / (double)hi->nitems);
		}
		printf("\n");
		shown++;
	}
	if (shown == 0)
		printf("  (none%s)\n", c->snapshots < 2 ? ": one snapshot shows no growth" : "");
	free(hrows);
}

static int print_json(const struct census *c)
{
	struct out_row *rows, *hrows;
	size_t n = 0, nh = 0;
	struct json *j;

	rows = rows_of(c->types, &n, false);
	hrows = rows_of(c->holders, &nh, true);
	j = json_new(stdout, true);
	if (!rows || !hrows || !j) {
		free(rows);
		free(hrows);
		json_free(j);
		return -ENOMEM;
	}
	json_object_begin(j);
	json_kv_string(j, "schema", "pymemspy.census/1");
	json_kv_int(j, "pid", proc_pid(pytarget_proc(c->target)));
	pytarget_json(j, c->target);
	json_kv_double(j, "duration", c->duration);
	json_kv_uint(j, "snapshots", c->snapshots);
	json_kv_double(j, "paused_s", c->paused_s);
	json_kv_bool(j, "partial", c->partial);
	json_kv_uint(j, "budget", c->budget);

	qsort(rows, n, sizeof(*rows), by_bytes);
	json_key(j, "types");
	json_array_begin(j);
	for (size_t i = 0; i < n; i++) {
		char module[128];
		const char *name;

		if (rows[i].st.a <= 0 && !(rows[i].st.a_rate.rate != 0))
			continue;
		split_key(census_table_key(c->types, rows[i].row), module, sizeof(module), &name);
		json_object_begin(j);
		json_kv_string(j, "type", name);
		json_kv_string(j, "module", module);
		json_kv_uint(j, "count", (uint64_t)rows[i].st.a);
		json_kv_uint(j, "bytes", (uint64_t)rows[i].st.b);
		json_kv_double(j, "count_rate", rows[i].st.a_rate.rate);
		json_kv_double(j, "count_rate_low", rows[i].st.a_rate.low);
		json_kv_double(j, "count_rate_high", rows[i].st.a_rate.high);
		json_kv_double(j, "bytes_rate", rows[i].st.b_rate.rate);
		json_object_end(j);
	}
	json_array_end(j);

	qsort(hrows, nh, sizeof(*hrows), by_bytes_rate);
	json_key(j, "holders");
	json_array_begin(j);
	for (size_t i = 0; i < nh; i++) {
		const struct holder_info *hi = &c->hinfo[hrows[i].row];
		struct share sh[PYGC_HOLDER_SAMPLE];
		size_t k;

		if (!growing(&hrows[i].st))
			continue;
		json_object_begin(j);
		json_kv_string(j, "path", census_table_key(c->holders, hrows[i].row));
		json_kv_string(j, "type", hi->type);
		json_kv_uint(j, "length", (uint64_t)hrows[i].st.a);
		json_kv_double(j, "length_rate", hrows[i].st.a_rate.rate);
		json_kv_double(j, "length_rate_low", hrows[i].st.a_rate.low);
		json_kv_double(j, "length_rate_high", hrows[i].st.a_rate.high);
		json_kv_uint(j, "bytes", (uint64_t)hrows[i].st.b);
		json_kv_double(j, "bytes_rate", hrows[i].st.b_rate.rate);
		json_key(j, "item_types");
		json_object_begin(j);
		k = item_shares(hi, sh, PYGC_HOLDER_SAMPLE);
		for (size_t m = 0; m < k; m++) {
			const struct pygc_type *t = pygc_type_at(c->gc, sh[m].type);

			json_kv_double(j, t ? t->name : "?", (double)sh[m].n / (double)hi->nitems);
		}
		json_object_end(j);
		json_key(j, "writers");
		json_array_begin(j);
		json_array_end(j);
		json_object_end(j);
	}
	json_array_end(j);

	json_key(j, "counters");
	json_object_begin(j);
	json_kv_uint(j, "objects_read", c->counters.objects_read);
	json_kv_uint(j, "gc_objects", c->counters.gc_objects);
	json_kv_uint(j, "torn_reads", c->counters.torn_reads);
	json_kv_uint(j, "invalid_objects", c->counters.invalid_objects);
	json_kv_uint(j, "unseen", c->counters.unseen);
	json_kv_uint(j, "bytes_read", c->counters.bytes_read);
	json_kv_double(j, "throttled_s", (double)c->counters.throttle_ns * 1e-9);
	json_kv_double(j, "last_scan_s", c->last_scan_s);
	json_kv_uint(j, "profiler_bytes", pygc_memory(c->gc));
	json_object_end(j);
	json_object_end(j);
	json_free(j);
	free(rows);
	free(hrows);
	return 0;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: pymemspy census --pid PID [--duration S] [--interval S] [--json] [--lock]\n"
	    "                       [--top N] [--budget MB]\n\n"
	    "Counts the live objects of a running CPython process by type (count, and bytes:\n"
	    "the object with the buffers it owns), from the collector's generation lists and\n"
	    "the items of the containers on them; takes a snapshot every --interval seconds\n"
	    "over --duration and gives each type's rate; names the containers reachable from\n"
	    "modules (module.NAME, module.Class.attr, module.NAME.attr) whose length grows.\n"
	    "Needs no BPF: only the right to read the target's memory. The target keeps\n"
	    "running unless --lock is given; every object read is validated and what fails\n"
	    "is counted (counters in the report).\n\n"
	    "Options:\n"
	    "  -p, --pid PID        the process to read\n"
	    "  -d, --duration S     seconds to watch (default %.0f; 0: one snapshot)\n"
	    "  -i, --interval S     seconds between snapshots (default %.0f)\n"
	    "  -j, --json           one JSON document (schema pymemspy.census/1) on stdout\n"
	    "  -l, --lock           pause the target (PTRACE_SEIZE) during each snapshot, for a\n"
	    "                       consistent one; the report says how long it was paused\n"
	    "  -t, --top N          rows per table in the text report (default %d)\n"
	    "  -b, --budget MB      remote reads per second at most (default %llu MB/s; 0: no\n"
	    "                       limit)\n"
	    "  -h, --help           this help\n\n"
	    "Needs ptrace rights over the target: root, or CAP_SYS_PTRACE (and Yama's\n"
	    "kernel.yama.ptrace_scope must allow it). Free-threaded builds are refused.\n"
	    "If the target exits mid-census, what was counted is printed and the exit code\n"
	    "is 3.\n\n"
	    "Examples:\n"
	    "  sudo pymemspy census --pid 4242\n"
	    "  sudo pymemspy census --pid 4242 --duration 60 --interval 10 --json | jq "
	    "'.holders'\n",
	    CENSUS_DEFAULT_DURATION, CENSUS_DEFAULT_INTERVAL, CENSUS_DEFAULT_TOP,
	    (unsigned long long)(PYGC_DEFAULT_BUDGET >> 20));
}

/* Sleeps until the monotonic time `until_ns`, or a signal asks to stop. */
static void sleep_until(uint64_t until_ns)
{
	while (!stop_requested) {
		uint64_t now = clock_monotonic_ns();
		struct timespec ts;

		if (now >= until_ns)
			return;
		ts.tv_sec = (time_t)((until_ns - now) / 1000000000ull);
		ts.tv_nsec = (long)((until_ns - now) % 1000000000ull);
		if (ts.tv_sec > 0) {
			ts.tv_sec = 0;
			ts.tv_nsec = 200000000; /* wake up now and then to see a stop request */
		}
		nanosleep(&ts, NULL);
	}
}

int cmd_census(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"pid", required_argument, NULL, 'p'},
	    {"duration", required_argument, NULL, 'd'},
	    {"interval", required_argument, NULL, 'i'},
	    {"json", no_argument, NULL, 'j'},
	    {"lock", no_argument, NULL, 'l'},
	    {"top", required_argument, NULL, 't'},
	    {"budget", required_argument, NULL, 'b'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct pms_error err = {{0}}, snap_err = {{0}};
	struct pygc_opts gopts = {.budget = PYGC_DEFAULT_BUDGET};
	struct census c = {0};
	struct sigaction sa, old_int, old_term;
	double duration = CENSUS_DEFAULT_DURATION, interval = CENSUS_DEFAULT_INTERVAL;
	bool json = false, want_lock = false, progress = isatty(STDERR_FILENO);
	long top = CENSUS_DEFAULT_TOP, budget_mb;
	uint64_t start_ns, next_ns;
	pid_t pid = 0;
	int opt, ret = 0, snap_ret = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "p:d:i:jlt:b:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (cli_parse_pid(optarg, &pid))
				return cli_usage_error("census", "--pid needs a process id");
			break;
		case 'd':
			if (cli_parse_seconds(optarg, &duration))
				return cli_usage_error("census", "--duration needs seconds");
			break;
		case 'i':
			if (cli_parse_seconds(optarg, &interval) || interval < 0.1)
				return cli_usage_error("census",
						       "--interval needs seconds (0.1 or more)");
			break;
		case 'j':
			json = true;
			break;
		case 'l':
			want_lock = true;
			break;
		case 't':
			if (cli_parse_long(optarg, 1, 100000, &top))
				return cli_usage_error("census", "--top needs a number from 1 to "
								 "100000");
			break;
		case 'b':
			if (cli_parse_long(optarg, 0, 1000000, &budget_mb))
				return cli_usage_error("census", "--budget needs MB per second (0 "
								 "for no limit)");
			gopts.budget = (uint64_t)budget_mb << 20;
			break;
		case 'h':
			return cli_help(usage);
		default:
			return cli_usage_error("census", "unknown option");
		}
	}
	if (cli_need_pid("census", argc, pid))
		return PMS_EXIT_USAGE;
	if (duration / interval > CENSUS_MAX_SNAPSHOTS)
		return cli_usage_error("census", "too many snapshots: raise --interval");
	c.budget = gopts.budget;

	ret = pytarget_open(pid, &c.target, &err);
	if (ret)
		goto out;
	ret = pygc_open(c.target, &gopts, &c.gc, &err);
	if (ret)
		goto out;
	c.types = census_table_new(true);
	c.holders = census_table_new(false);
	if (!c.types || !c.holders) {
		ret = -ENOMEM;
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	start_ns = clock_monotonic_ns();
	next_ns = start_ns;
	for (;;) {
		struct pygc_snapshot snap;
		struct ptracelock *lock = NULL;
		uint64_t t0 = clock_monotonic_ns(), t1;

		if (want_lock) {
			snap_ret = ptracelock_acquire(pid, &lock, &snap_err);
			if (snap_ret)
				break;
		}
		snap_ret = pygc_snapshot(c.gc, &snap, &snap_err);
		t1 = clock_monotonic_ns();
		if (lock) {
			ptracelock_release(lock);
			c.paused_s += (double)(clock_monotonic_ns() - t0) * 1e-9;
		}
		/* a snapshot's time is its middle: the walk takes a while */
		if (snap_ret == 0 || (snap_ret == -ESRCH && snap.counters.gc_objects > 0)) {
			ret = keep_snapshot(&c, &snap, (double)((t0 + t1) / 2 - start_ns) * 1e-9);
			c.partial = snap_ret != 0;
		}
		pygc_snapshot_clear(&snap);
		if (ret || snap_ret)
			break;
		if (progress)
			fprintf(stderr, "census: snapshot %zu: %llu objects in %.2f s\n",
				c.snapshots, (unsigned long long)c.counters.objects_read,
				c.last_scan_s);
		next_ns += (uint64_t)(interval * 1e9);
		if (stop_requested || (double)(next_ns - start_ns) * 1e-9 > duration + 1e-6)
			break;
		sleep_until(next_ns);
		if (stop_requested)
			break;
		/* a target that went away between snapshots */
		if (!proc_alive(pytarget_proc(c.target))) {
			snap_ret = pms_error_set(&snap_err, ESRCH, "process %d exited", pid);
			break;
		}
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	c.duration = (double)(clock_monotonic_ns() - start_ns) * 1e-9;
	if (ret)
		goto out;
	if (snap_ret && c.snapshots == 0) {
		ret = snap_ret;
		err = snap_err;
		goto out;
	}
	if (json)
		ret = print_json(&c);
	else
		print_text(&c, top);
	fflush(stdout);
out:
	census_table_free(c.types);
	census_table_free(c.holders);
	free(c.hinfo);
	pygc_close(c.gc);
	pytarget_close(c.target);
	if (ret == 0 && snap_ret) {
		/* what was counted is out; the failure still decides the exit code */
		fprintf(stderr, "pymemspy: %s (the census above covers %zu snapshot%s)\n",
			snap_err.msg[0] ? snap_err.msg : strerror(-snap_ret), c.snapshots,
			c.snapshots == 1 ? "" : "s");
		return pms_exit_code(snap_ret);
	}
	return ret ? cli_fail(&err, ret) : PMS_EXIT_OK;
}
