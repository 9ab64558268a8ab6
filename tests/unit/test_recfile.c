#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "profile.h"
#include "pytarget.h"
#include "recfile.h"
#include "report.h"

/* The subcommand (declared in cli.h once wired into main.c). */
int cmd_report(int argc, char **argv);

/* ---- A temporary directory per test ---- */

static char dir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void make_dir(void)
{
	strcpy(dir, "/tmp/pms-recfile-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
	if (dir[0])
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	dir[0] = '\0';
}

static void path_in(char *out, size_t outlen, const char *name)
{
	snprintf(out, outlen, "%s/%s", dir, name);
}

/* ---- A synthetic recording: what profile_take_deltas would report, and what it adds up to ---- */

#define NS	 400 /* sites */
#define NT	 64  /* ticks at most */
#define NTHREADS 4

struct model {
	size_t nsites;
	int64_t grown[NS], released[NS];
	uint64_t samples[NS];
	double first_seen[NS];
	int64_t series[NS][NT];
	int stack_seed[NS]; /* -1: no stack yet */
	size_t stack_len[NS];
	int64_t thread_bytes[NTHREADS];
	uint64_t counters[PMS_CNT_MAX];
	struct profile_totals totals;
	double last_at;
	uint64_t last_rss;
	int ticks;
	uint64_t rng;
};

static uint64_t rnd(struct model *m)
{
	m->rng = m->rng * 6364136223846793005ull + 1442695040888963407ull;
	return m->rng >> 33;
}

static void site_names(size_t i, char *fn, size_t fnlen, char *file, size_t filelen, int *line)
{
	snprintf(fn, fnlen, "fn_%zu", i);
	snprintf(file, filelen, "/srv/app/package/module_%zu.py", i % 40);
	*line = 100 + (int)i;
}

/* Frame f of the stack `seed` of site i: the site itself innermost, then callers. */
static void frame_names(size_t i, int seed, size_t f, char *fn, size_t fnlen, char *file,
			size_t filelen, int *line)
{
	if (f == 0) {
		site_names(i, fn, fnlen, file, filelen, line);
		return;
	}
	snprintf(fn, fnlen, "Caller%d.method_%zu", (seed + (int)f) % 50, f);
	snprintf(file, filelen, "/srv/app/package/sub/caller_%d.py", (seed * 3 + (int)f) % 30);
	*line = 10 + seed % 7 + (int)f;
}

static void send_stack(struct model *m, const struct profile_delta_sink *s, size_t i)
{
	char fn[PMS_MAX_DEPTH][48], file[PMS_MAX_DEPTH][64];
	struct profile_frame frames[PMS_MAX_DEPTH];
	size_t n = m->stack_len[i];

	for (size_t f = 0; f < n; f++) {
		frame_names(i, m->stack_seed[i], f, fn[f], sizeof(fn[f]), file[f], sizeof(file[f]),
			    &frames[f].line);
		frames[f].function = fn[f];
		frames[f].file = file[f];
	}
	cr_assert_eq(s->stack(s->ctx, (uint32_t)i, frames, n), 0);
}

/* One tick k (at k + 1 s): `fresh` new sites, `changes` deltas, a few stack changes. */
static void model_tick(struct model *m, struct recfile_writer *w, int k, size_t fresh,
		       size_t changes, size_t depth)
{
	const struct profile_delta_sink *s = recfile_sink(w);
	double at = k + 1.0;

	cr_assert_lt(k, NT);
	for (size_t n = 0; n < fresh && m->nsites < NS; n++) {
		size_t i = m->nsites++;
		char fn[48], file[64];
		struct profile_site site = {0};

		site_names(i, fn, sizeof(fn), file, sizeof(file), &site.line);
		site.function = fn;
		site.file = file;
		site.first_seen = k + 0.25 + (double)(i % 5) / 10;
		m->first_seen[i] = site.first_seen;
		m->stack_seed[i] = -1;
		cr_assert_eq(s->site(s->ctx, (uint32_t)i, &site), 0);
	}
	for (size_t i = 0; i < m->nsites; i++) {
		/* new sites get a stack; a few others change theirs (a new stack overtook) */
		if (m->stack_seed[i] >= 0 && rnd(m) % 50)
			continue;
		m->stack_seed[i] = (int)(rnd(m) % 1000);
		m->stack_len[i] = 1 + (i + (size_t)k) % depth;
		send_stack(m, s, i);
	}
	for (size_t j = 0; j < changes && m->nsites; j++) {
		size_t i = ((size_t)k * changes + j) % m->nsites;
		struct profile_delta d = {.site = (uint32_t)i};

		if (j >= m->nsites)
			break; /* every site changed once this tick */
		d.grown = (int64_t)(4096 * (1 + rnd(m) % 200));
		d.released = rnd(m) % 3 == 0 ? (int64_t)(4096 * (rnd(m) % 50)) : 0;
		d.samples = 1 + rnd(m) % 40;
		m->grown[i] += d.grown;
		m->released[i] += d.released;
		m->samples[i] += d.samples;
		m->series[i][k] += d.grown - d.released;
		m->totals.grown += d.grown;
		m->totals.released += d.released;
		m->totals.events += d.samples;
		cr_assert_eq(s->delta(s->ctx, &d), 0);
	}
	for (uint32_t t = 0; t < NTHREADS; t++) {
		int64_t b = (int64_t)(rnd(m) % 100000) - 20000;

		m->thread_bytes[t] += b;
		cr_assert_eq(s->thread(s->ctx, 1000 + t, b), 0);
	}
	for (int c = 0; c < PMS_CNT_MAX; c++)
		m->counters[c] += rnd(m) % 1000;
	m->totals.shrunk += 4096;
	m->totals.stacks_lost += k % 2;
	m->totals.pages_untracked += 3;
	m->last_at = at;
	m->last_rss = 100000000 + (uint64_t)k * 1000000;
	m->ticks = k + 1;
	cr_assert_eq(recfile_write_tick(w, at, m->last_rss, m->counters, &m->totals), 0);
}

static void model_meta(struct recfile_meta *meta)
{
	recfile_meta_init(meta);
	meta->pid = 4242;
	strcpy(meta->comm, "python3.11");
	strcpy(meta->python_version, "3.11.7");
	strcpy(meta->python_build, "debug");
	strcpy(meta->events, "growth");
	meta->rss_start = 50000000;
	meta->budget_per_sec = 2000;
	meta->max_depth = 128;
}

static const struct recfile_end model_end = {
    .duration = 42.5,
    .ended_by = "duration",
    .rss_end = 123456789,
    .profiler_cpu = 0.75,
    .profiler_max_rss = 9 << 20,
    .bpf_map_bytes = 1 << 20,
    .profile_bytes = 3 << 20,
};

/* Writes a recording of `ticks` ticks to path; returns its size. */
static uint64_t write_model(const char *path, struct model *m, int ticks, size_t fresh,
			    size_t changes, size_t depth, bool end)
{
	struct pms_error err = {{0}};
	struct recfile_writer *w;
	struct recfile_meta meta;
	uint64_t size;

	memset(m, 0, sizeof(*m));
	m->rng = 12345;
	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	model_meta(&meta);
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	for (int k = 0; k < ticks; k++) {
		model_tick(m, w, k, fresh, changes, depth);
		cr_assert_eq(recfile_flush(w), 0);
	}
	if (end)
		cr_assert_eq(recfile_write_end(w, &model_end), 0);
	size = recfile_size(w);
	cr_assert_eq(recfile_close(w), 0);
	return size;
}

static const struct profile_site *find_site(struct profile *p, size_t i)
{
	const struct profile_site *const *sites;
	char fn[48];
	size_t n;

	snprintf(fn, sizeof(fn), "fn_%zu", i);
	sites = profile_sites(p, &n);
	for (size_t k = 0; k < n; k++)
		if (strcmp(sites[k]->function, fn) == 0)
			return sites[k];
	return NULL;
}

/* What c holds is exactly the model (after its first `ticks` ticks). */
static void check_model(const struct recfile_contents *c, const struct model *m)
{
	const struct profile_thread *threads;
	const struct profile_totals *t = profile_totals(c->profile);
	size_t n;

	cr_assert_str_eq(c->meta.comm, "python3.11");
	cr_assert_str_eq(c->meta.python_version, "3.11.7");
	cr_assert_str_eq(c->meta.python_build, "debug");
	cr_assert_eq(c->meta.pid, 4242);
	cr_assert_eq(c->meta.rss_start, 50000000);
	cr_assert_eq(c->meta.budget_per_sec, 2000);
	cr_assert_eq(c->meta.max_depth, 128);
	cr_assert_eq(c->last_tick, m->last_at);
	cr_assert_eq(c->rss_last, m->last_rss);
	cr_assert_eq(memcmp(c->counters, m->counters, sizeof(m->counters)), 0);
	cr_assert_eq(t->grown, m->totals.grown);
	cr_assert_eq(t->released, m->totals.released);
	cr_assert_eq(t->shrunk, m->totals.shrunk);
	cr_assert_eq(t->events, m->totals.events);
	cr_assert_eq(t->stacks_lost, m->totals.stacks_lost);
	cr_assert_eq(t->pages_untracked, m->totals.pages_untracked);

	profile_sites(c->profile, &n);
	cr_assert_eq(n, m->nsites);
	for (size_t i = 0; i < m->nsites; i++) {
		const struct profile_site *s = find_site(c->profile, i);
		char fn[48], file[64];
		int line;

		cr_assert_not_null(s, "site %zu", i);
		site_names(i, fn, sizeof(fn), file, sizeof(file), &line);
		cr_assert_str_eq(s->file, file);
		cr_assert_eq(s->line, line);
		cr_assert_eq(s->first_seen, m->first_seen[i]);
		cr_assert_eq(s->grown, m->grown[i], "site %zu", i);
		cr_assert_eq(s->released, m->released[i]);
		cr_assert_eq(s->samples, m->samples[i]);
		cr_assert_eq(s->stack_len, m->stack_len[i], "site %zu", i);
		for (size_t f = 0; f < s->stack_len; f++) {
			frame_names(i, m->stack_seed[i], f, fn, sizeof(fn), file, sizeof(file),
				    &line);
			cr_assert_str_eq(s->stack[f].function, fn);
			cr_assert_str_eq(s->stack[f].file, file);
			cr_assert_eq(s->stack[f].line, line);
		}
		cr_assert_eq(profile_bucket_seconds(c->profile), 1.0);
		cr_assert_geq(s->nseries, (size_t)m->ticks);
		for (size_t b = 0; b < s->nseries; b++)
			cr_assert_eq(s->series[b], b < NT ? m->series[i][b] : 0,
				     "site %zu bucket %zu", i, b);
	}
	threads = profile_threads(c->profile, &n);
	cr_assert_eq(n, NTHREADS);
	for (size_t k = 0; k < n; k++) {
		cr_assert_geq(threads[k].tid, 1000);
		cr_assert_lt(threads[k].tid, 1000 + NTHREADS);
		cr_assert_eq(threads[k].bytes, m->thread_bytes[threads[k].tid - 1000]);
	}
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *data;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	data = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(data);
	cr_assert_eq(read(fd, data, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return data;
}

static void spill(const char *path, const uint8_t *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* ---- Round trips ---- */

Test(recfile, round_trip_keeps_sites_bytes_series_stacks_threads, .init = make_dir,
     .fini = remove_dir)
{
	static struct model m;
	struct recfile_contents c;
	struct pms_error err = {{0}};
	char path[128];
	struct stat st;

	path_in(path, sizeof(path), "a.pmsrec");
	write_model(path, &m, 30, 12, 25, 24, true);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(recfile_read(path, &c, &err), 0, "%s", err.msg);
	cr_assert_not(c.truncated);
	cr_assert_not(c.corrupt);
	cr_assert(c.has_end);
	cr_assert_eq(c.valid_bytes, (uint64_t)st.st_size);
	cr_assert_eq(c.end.duration, 42.5);
	cr_assert_str_eq(c.end.ended_by, "duration");
	cr_assert_eq(c.end.rss_end, 123456789);
	cr_assert_eq(c.end.profiler_cpu, 0.75);
	cr_assert_eq(c.end.profiler_max_rss, 9 << 20);
	cr_assert_eq(c.end.bpf_map_bytes, 1 << 20);
	cr_assert_eq(c.end.profile_bytes, 3 << 20);
	check_model(&c, &m);
	recfile_contents_free(&c);
	cr_assert_null(c.profile);
}

/* ---- Live profiles (events symbolized against a running interpreter) ---- */

static pid_t python_pid;
static struct pytarget *python;

static void start_python(void)
{
	const char *exe = "/usr/bin/python3.11";
	struct pms_error err = {{0}};
	int fds[2];
	char buf[6];

	make_dir();
	if (access(exe, X_OK) != 0)
		return;
	cr_assert_eq(pipe(fds), 0);
	python_pid = fork();
	if (python_pid == 0) {
		dup2(fds[1], 1);
		execl(exe, exe, "-c",
		      "import sys,time; sys.stdout.write('ready\\n'); sys.stdout.flush(); "
		      "time.sleep(120)",
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], buf, sizeof(buf)), 6);
	close(fds[0]);
	if (pytarget_open(python_pid, &python, &err) != 0)
		cr_log_warn("cannot read the interpreter: %s", err.msg);
}

static void stop_python(void)
{
	pytarget_close(python);
	python = NULL;
	if (python_pid > 0) {
		kill(python_pid, SIGKILL);
		waitpid(python_pid, NULL, 0);
	}
	python_pid = 0;
	remove_dir();
}

static struct pms_event event(uint16_t kind, uint32_t tid, uint64_t addr, int64_t bytes)
{
	struct pms_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = kind;
	ev.tid = tid;
	ev.addr = addr;
	ev.bytes = bytes;
	ev.len = kind == PMS_EV_RELEASE ? (uint64_t)bytes : 0;
	return ev;
}

/* The rebuilt profile is the live one: sites, bytes, samples, first seen, stacks, every series
 * bucket, threads, totals. */
static void check_same(struct profile *live, struct profile *rebuilt)
{
	const struct profile_site *const *src, *const *dst;
	const struct profile_thread *a, *b;
	size_t nsrc, ndst, na, nb;

	src = profile_sites(live, &nsrc);
	dst = profile_sites(rebuilt, &ndst);
	cr_assert_eq(nsrc, ndst);
	cr_assert_eq(profile_bucket_seconds(live), profile_bucket_seconds(rebuilt));
	for (size_t i = 0; i < nsrc; i++) {
		cr_assert_str_eq(dst[i]->function, src[i]->function);
		cr_assert_str_eq(dst[i]->file, src[i]->file);
		cr_assert_eq(dst[i]->line, src[i]->line);
		cr_assert_eq(dst[i]->grown, src[i]->grown);
		cr_assert_eq(dst[i]->released, src[i]->released);
		cr_assert_eq(dst[i]->samples, src[i]->samples);
		cr_assert_eq(dst[i]->first_seen, src[i]->first_seen);
		cr_assert_eq(dst[i]->stack_len, src[i]->stack_len);
		for (size_t f = 0; f < src[i]->stack_len; f++) {
			cr_assert_str_eq(dst[i]->stack[f].function, src[i]->stack[f].function);
			cr_assert_str_eq(dst[i]->stack[f].file, src[i]->stack[f].file);
			cr_assert_eq(dst[i]->stack[f].line, src[i]->stack[f].line);
		}
		cr_assert_eq(dst[i]->nseries, src[i]->nseries, "site %zu: %zu buckets, not %zu", i,
			     dst[i]->nseries, src[i]->nseries);
		for (size_t k = 0; k < src[i]->nseries; k++)
			cr_assert_eq(dst[i]->series[k], src[i]->series[k],
				     "site %s, bucket %zu: %lld, not %lld", src[i]->function, k,
				     (long long)dst[i]->series[k], (long long)src[i]->series[k]);
	}
	cr_assert_eq(profile_totals(rebuilt)->grown, profile_totals(live)->grown);
	cr_assert_eq(profile_totals(rebuilt)->released, profile_totals(live)->released);
	cr_assert_eq(profile_totals(rebuilt)->events, profile_totals(live)->events);
	a = profile_threads(live, &na);
	b = profile_threads(rebuilt, &nb);
	cr_assert_eq(na, nb);
	for (size_t i = 0; i < na; i++) {
		cr_assert_eq(a[i].tid, b[i].tid);
		cr_assert_eq(a[i].bytes, b[i].bytes);
	}
}

/* Recorded through recfile_tick, a live profile reads back as the same profile, to the series
 * bucket, even with events on either side of the ticks' second boundaries. */
Test(recfile, round_trip_of_a_live_profile, .init = start_python, .fini = stop_python)
{
	struct pms_error err = {{0}};
	struct profile *p;
	struct recfile_writer *w;
	struct recfile_meta meta;
	struct recfile_contents c;
	uint64_t counters[PMS_CNT_MAX] = {0};
	char path[128];

	if (!python)
		cr_skip_test("needs /usr/bin/python3.11, readable");
	p = profile_new(python);
	cr_assert_not_null(p);
	path_in(path, sizeof(path), "live.pmsrec");
	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	recfile_meta_init(&meta);
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	for (int k = 0; k < 8; k++) {
		uint64_t addr = 0x100000 + (uint64_t)k * 0x10000;
		struct pms_event ev = event(PMS_EV_GROWTH, 7 + k % 2, addr, 4096 * (1 + k));

		/* three stacks of the same (unknown) site take turns at being the heaviest */
		ev.flags = PMS_EVF_STACK_INLINE;
		ev.stack_id = 100 + k % 3;
		ev.nframes = 2 + k % 3;
		for (uint32_t f = 0; f < ev.nframes; f++)
			ev.frames[f].code = 0x10 + f + (uint64_t)k % 3;
		cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(ev.nframes), k + 0.25), 0);
		ev = event(PMS_EV_GROWTH, 9, addr + 0x8000, 4096);
		ev.flags = k % 2 ? PMS_EVF_NO_TSTATE : 0;
		cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), k + 0.3), 0);
		if (k % 3 == 2) {
			ev = event(PMS_EV_RELEASE, 9, addr - 0x10000, 0x10000);
			cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), k + 0.75), 0);
		}
		/* after the second boundary, before the tick: the next bucket */
		ev = event(PMS_EV_GROWTH, 9, addr + 0xc000, 8192);
		ev.flags = PMS_EVF_NO_TSTATE;
		cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), k + 1.05), 0);
		counters[PMS_CNT_SAMPLES] += 2;
		cr_assert_eq(recfile_tick(w, p, k + 1.1, 1 << 20, counters), 0);
		cr_assert_eq(recfile_flush(w), 0);
	}
	cr_assert_eq(recfile_close(w), 0);

	cr_assert_eq(recfile_read(path, &c, &err), 0, "%s", err.msg);
	check_same(p, c.profile);
	cr_assert_eq(c.counters[PMS_CNT_SAMPLES], 16);
	recfile_contents_free(&c);
	profile_free(p);
}

/* A long recording: the series widen their buckets (1 s, then 2 s, then 4 s) in the live
 * profile and in the rebuilt one alike. */
Test(recfile, series_stay_exact_when_buckets_widen, .init = start_python, .fini = stop_python)
{
	struct pms_error err = {{0}};
	struct profile *p;
	struct recfile_writer *w;
	struct recfile_meta meta;
	struct recfile_contents c;
	uint64_t counters[PMS_CNT_MAX] = {0}, rng = 7;
	char path[128];

	if (!python)
		cr_skip_test("needs /usr/bin/python3.11, readable");
	p = profile_new(python);
	cr_assert_not_null(p);
	path_in(path, sizeof(path), "long.pmsrec");
	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	recfile_meta_init(&meta);
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	for (int k = 0; k < 3000; k++) {
		double at = k + 1.0 + (double)(k % 7) / 20; /* ticks with some jitter */

		for (int e = 0; e < 3; e++) {
			struct pms_event ev;
			double t;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			t = at - (double)((rng >> 33) % 1000) / 1000;
			ev = event(PMS_EV_GROWTH, 1 + e, 0x7000000 + (uint64_t)(k * 3 + e) * 4096,
				   4096 * (int64_t)(1 + (rng >> 40) % 4));
			ev.flags = (e == 0 ? PMS_EVF_NO_TSTATE : 0) | PMS_EVF_STACK_INLINE;
			ev.stack_id = e ? 200 + (uint64_t)e : 0;
			ev.nframes = 1;
			ev.frames[0].code = 0x40 + (uint64_t)e;
			cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(1), t), 0);
		}
		if (k % 10 == 9) {
			struct pms_event ev = event(
			    PMS_EV_RELEASE, 1, 0x7000000 + (uint64_t)(k - 9) * 3 * 4096, 4096 * 15);

			cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), at - 0.01), 0);
		}
		cr_assert_eq(recfile_tick(w, p, at, 0, counters), 0);
		cr_assert_eq(recfile_flush(w), 0);
	}
	cr_assert_geq(profile_bucket_seconds(p), 4.0);
	cr_log_info("3000 ticks, 3 sites: %llu bytes", (unsigned long long)recfile_size(w));
	cr_assert_eq(recfile_close(w), 0);
	cr_assert_eq(recfile_read(path, &c, &err), 0, "%s", err.msg);
	check_same(p, c.profile);
	recfile_contents_free(&c);
	profile_free(p);
}

/* ---- Cut and damaged files ---- */

/* Reads a prefix of a whole recording: an error only before the metadata, else a prefix of
 * what the whole holds. */
static void check_prefix(const uint8_t *data, size_t len, size_t cut, const struct model *m,
			 size_t meta_end)
{
	struct recfile_contents c;
	struct pms_error err = {{0}};
	int ret = recfile_read_buffer(data, cut, &c, &err);
	size_t n;

	if (cut < meta_end) {
		cr_assert_eq(ret, -PMS_EBADFILE, "cut at %zu: %d", cut, ret);
		cr_assert_neq(err.msg[0], '\0');
		cr_assert_null(c.profile);
		return;
	}
	cr_assert_eq(ret, 0, "cut at %zu: %s", cut, err.msg);
	cr_assert_not(c.corrupt, "cut at %zu", cut);
	cr_assert_leq(c.valid_bytes, cut);
	cr_assert_eq(c.truncated, c.valid_bytes != cut, "cut at %zu", cut);
	cr_assert_eq(c.has_end, cut == len);
	cr_assert_leq(c.last_tick, m->last_at);
	profile_sites(c.profile, &n);
	cr_assert_leq(n, m->nsites);
	for (size_t i = 0; i < n; i++) {
		const struct profile_site *s = find_site(c.profile, i);

		cr_assert_not_null(s, "sites are defined in order: %zu", i);
		cr_assert_leq(s->grown, m->grown[i]);
		cr_assert_leq(s->samples, m->samples[i]);
	}
	recfile_contents_free(&c);
}

Test(recfile, every_byte_of_a_small_file_cut, .init = make_dir, .fini = remove_dir)
{
	static struct model m;
	char path[128];
	uint8_t *data;
	size_t len, meta_end;

	path_in(path, sizeof(path), "small.pmsrec");
	write_model(path, &m, 3, 4, 4, 3, true);
	data = slurp(path, &len);
	/* the header, then the META record: its length is at bytes 20..23 */
	meta_end = 16 + 12 + (data[20] | data[21] << 8 | data[22] << 16 | (size_t)data[23] << 24);
	for (size_t cut = 0; cut <= len; cut++)
		check_prefix(data, len, cut, &m, meta_end);
	free(data);
}

static int run_report(char **argv, int argc, const char *out, const char *errout)
{
	int saved_out, saved_err, fd, rc;

	fflush(stdout);
	fflush(stderr);
	saved_out = dup(1);
	saved_err = dup(2);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 1);
	close(fd);
	fd = open(errout, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
	rc = cmd_report(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	return rc;
}

static char *text_of(const char *path)
{
	size_t len;
	char *s = (char *)slurp(path, &len);

	s[len] = '\0';
	return s;
}

/* The report command on a file cut at every 1 KB boundary: a report that says it is truncated,
 * exit 0; or, cut before anything was recorded, exit 7. */
Test(recfile, report_of_a_file_cut_at_every_kilobyte, .init = make_dir, .fini = remove_dir)
{
	static struct model m;
	char path[128], cut[128], out[128], errout[128];
	uint8_t *data;
	size_t len, meta_end;

	path_in(path, sizeof(path), "big.pmsrec");
	path_in(cut, sizeof(cut), "cut.pmsrec");
	path_in(out, sizeof(out), "out.txt");
	path_in(errout, sizeof(errout), "err.txt");
	write_model(path, &m, 40, 10, 30, 32, true);
	data = slurp(path, &len);
	cr_assert_gt(len, 20 * 1024);
	meta_end = 16 + 12 + (data[20] | data[21] << 8 | data[22] << 16 | (size_t)data[23] << 24);
	for (size_t at = 0; at <= len; at += 1024) {
		char *argv[] = {"report", cut, NULL};
		char *argvj[] = {"report", cut, "--json", NULL};
		char *text;
		int rc;

		spill(cut, data, at);
		check_prefix(data, len, at, &m, meta_end);
		rc = run_report(argv, 2, out, errout);
		text = text_of(at < meta_end ? errout : out);
		if (at < meta_end) {
			cr_assert_eq(rc, 7, "cut at %zu: exit %d", at, rc);
			cr_assert_neq(text[0], '\0');
		} else {
			cr_assert_eq(rc, 0, "cut at %zu: exit %d", at, rc);
			cr_assert(strstr(text, "pymemspy report: pid 4242 (python3.11)"));
			cr_assert(strstr(text, "This recording is truncated: it ends at"), "%s",
				  text);
		}
		free(text);
		rc = run_report(argvj, 3, out, errout);
		cr_assert_eq(rc, at < meta_end ? 7 : 0);
		if (at >= meta_end) {
			text = text_of(out);
			cr_assert(strstr(text, "\"truncated\": true"));
			cr_assert(strstr(text, "\"schema\": \"pymemspy.report/1\""));
			free(text);
		}
	}
	free(data);
}

Test(recfile, report_of_a_whole_file, .init = make_dir, .fini = remove_dir)
{
	static struct model m;
	char path[128], out[128], errout[128];
	char *argv[] = {"report", path, "--top", "3", NULL};
	char *argvj[] = {"report", "--json", path, NULL};
	char *text;

	path_in(path, sizeof(path), "whole.pmsrec");
	path_in(out, sizeof(out), "out.txt");
	path_in(errout, sizeof(errout), "err.txt");
	write_model(path, &m, 10, 10, 10, 5, true);
	cr_assert_eq(run_report(argv, 4, out, errout), 0);
	text = text_of(out);
	cr_assert(strstr(text, "pymemspy report: pid 4242 (python3.11), Python 3.11.7 (debug "
			       "build)"),
		  "%s", text);
	cr_assert(strstr(text, "Recorded 42.5 s (ended by duration)"));
	cr_assert(strstr(text, "Top sites by resident growth"));
	cr_assert_null(strstr(text, "This recording is truncated"));
	free(text);
	cr_assert_eq(run_report(argvj, 3, out, errout), 0);
	text = text_of(out);
	cr_assert(strstr(text, "\"truncated\": false"));
	cr_assert(strstr(text, "\"recording\": {\"path\":"));
	free(text);
	if (access("/usr/bin/python3", X_OK) == 0) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "/usr/bin/python3 -m json.tool %s > /dev/null", out);
		cr_assert_eq(system(cmd), 0, "the JSON report parses");
	}
}

/* The first payload byte of the record that holds byte `pos`. */
static size_t payload_near(const uint8_t *data, size_t len, size_t pos)
{
	size_t at = 16;

	for (;;) {
		size_t plen = data[at + 4] | data[at + 5] << 8 | data[at + 6] << 16 |
			      (size_t)data[at + 7] << 24;

		cr_assert_lt(at + 12 + plen, len + 1);
		if (at + 12 + plen > pos && plen > 0)
			return at + 8;
		at += 12 + plen;
	}
}

Test(recfile, damaged_records_stop_the_reading_there, .init = make_dir, .fini = remove_dir)
{
	static struct model m;
	struct recfile_contents whole, c;
	struct pms_error err = {{0}};
	char path[128], out[128], errout[128];
	char *argv[] = {"report", path, NULL};
	uint8_t *data;
	size_t len;

	path_in(path, sizeof(path), "d.pmsrec");
	path_in(out, sizeof(out), "out.txt");
	path_in(errout, sizeof(errout), "err.txt");
	write_model(path, &m, 12, 8, 10, 6, true);
	data = slurp(path, &len);
	cr_assert_eq(recfile_read_buffer(data, len, &whole, &err), 0);
	for (size_t at = 16; at < len; at += 7) {
		int ret;

		data[at] ^= 0x5a;
		pms_error_clear(&err);
		ret = recfile_read_buffer(data, len, &c, &err);
		if (ret == 0) {
			/* the damaged record and everything after it are not read */
			cr_assert(c.truncated, "flip at %zu", at);
			cr_assert_leq(c.valid_bytes, at);
			cr_assert_not(c.has_end);
			cr_assert_leq(c.last_tick, whole.last_tick);
			recfile_contents_free(&c);
		} else {
			cr_assert_eq(ret, -PMS_EBADFILE);
		}
		data[at] ^= 0x5a;
	}
	/* one damaged payload byte in the middle: exit 7, after the report of what precedes it */
	data[payload_near(data, len, len / 2)] ^= 1;
	spill(path, data, len);
	cr_assert_eq(run_report(argv, 2, out, errout), 7);
	{
		char *text = text_of(errout);

		cr_assert(strstr(text, "is damaged at byte"), "%s", text);
		free(text);
		text = text_of(out);
		cr_assert(strstr(text, "a damaged record follows"), "%s", text);
		free(text);
	}
	/* zeros where the end should be (a crash before the data reached the disk): cut, not
	 * damaged */
	memset(data + payload_near(data, len, len / 2), 0, len - payload_near(data, len, len / 2));
	cr_assert_eq(recfile_read_buffer(data, len, &c, &err), 0);
	cr_assert(c.truncated);
	cr_assert_not(c.corrupt, "valid %llu of %zu", (unsigned long long)c.valid_bytes, len);
	recfile_contents_free(&c);
	recfile_contents_free(&whole);
	free(data);
}

Test(recfile, random_damage_never_crashes, .init = make_dir, .fini = remove_dir)
{
	static struct model m;
	char path[128];
	uint8_t *data, *copy;
	size_t len;
	uint64_t rng = 99;

	path_in(path, sizeof(path), "r.pmsrec");
	write_model(path, &m, 6, 6, 6, 4, true);
	data = slurp(path, &len);
	copy = malloc(len);
	for (int round = 0; round < 3000; round++) {
		struct recfile_contents c;
		struct pms_error err = {{0}};
		size_t n;

		memcpy(copy, data, len);
		for (int k = 0; k < 1 + round % 8; k++) {
			rng = rng * 6364136223846793005ull + 1;
			copy[16 + (rng >> 33) % (len - 16)] = (uint8_t)(rng >> 20);
		}
		n = round % 2 ? len : 16 + (rng >> 40) % (len - 16);
		if (recfile_read_buffer(copy, n, &c, &err) == 0) {
			cr_assert_not_null(c.profile);
			profile_sites(c.profile, &n);
			recfile_contents_free(&c);
		}
	}
	free(copy);
	free(data);
}

static uint8_t *record(uint32_t type, const void *payload, uint32_t len, size_t *outlen)
{
	uint8_t *r = malloc(12 + len);
	uint32_t crc;

	for (int i = 0; i < 4; i++) {
		r[i] = (uint8_t)(type >> (8 * i));
		r[4 + i] = (uint8_t)(len >> (8 * i));
	}
	memcpy(r + 8, payload, len);
	crc = (uint32_t)crc32(0, r, 8 + len);
	for (int i = 0; i < 4; i++)
		r[8 + len + i] = (uint8_t)(crc >> (8 * i));
	*outlen = 12 + len;
	return r;
}

Test(recfile, unknown_records_are_skipped, .init = make_dir, .fini = remove_dir)
{
	static struct model m;
	struct recfile_contents c;
	struct pms_error err = {{0}};
	char path[128];
	uint8_t *data, *withx, *x;
	size_t len, xlen, meta_end;

	path_in(path, sizeof(path), "u.pmsrec");
	write_model(path, &m, 5, 5, 5, 4, true);
	data = slurp(path, &len);
	meta_end = 16 + 12 + (data[20] | data[21] << 8 | data[22] << 16 | (size_t)data[23] << 24);
	x = record(0x4242, "from a later version", 20, &xlen);
	withx = malloc(len + 2 * xlen);
	/* one before the metadata, one after */
	memcpy(withx, data, 16);
	memcpy(withx + 16, x, xlen);
	memcpy(withx + 16 + xlen, data + 16, meta_end - 16);
	memcpy(withx + xlen + meta_end, x, xlen);
	memcpy(withx + 2 * xlen + meta_end, data + meta_end, len - meta_end);
	cr_assert_eq(recfile_read_buffer(withx, len + 2 * xlen, &c, &err), 0, "%s", err.msg);
	cr_assert_not(c.truncated);
	cr_assert(c.has_end);
	check_model(&c, &m);
	recfile_contents_free(&c);
	free(x);
	free(withx);
	free(data);
}

Test(recfile, foreign_files_and_other_versions_are_refused, .init = make_dir, .fini = remove_dir)
{
	static struct model m;
	struct recfile_contents c;
	struct pms_error err = {{0}};
	char path[128], other[128], out[128], errout[128];
	char *argv[] = {"report", other, NULL};
	uint8_t *data;
	size_t len;

	path_in(path, sizeof(path), "v.pmsrec");
	path_in(other, sizeof(other), "other");
	path_in(out, sizeof(out), "out.txt");
	path_in(errout, sizeof(errout), "err.txt");
	write_model(path, &m, 2, 2, 2, 2, true);
	data = slurp(path, &len);

	cr_assert_eq(recfile_read_buffer(data, 0, &c, &err), -PMS_EBADFILE);
	cr_assert(strstr(err.msg, "empty"), "%s", err.msg);
	pms_error_clear(&err);
	cr_assert_eq(recfile_read_buffer((const uint8_t *)"#!/bin/sh\necho hi\n", 18, &c, &err),
		     -PMS_EBADFILE);
	cr_assert(strstr(err.msg, "not a pymemspy recording"), "%s", err.msg);
	pms_error_clear(&err);
	data[8] = 2; /* version 2 */
	cr_assert_eq(recfile_read_buffer(data, len, &c, &err), -PMS_EBADFILE);
	cr_assert(strstr(err.msg, "version 2"), "%s", err.msg);
	cr_assert_null(c.profile);
	data[8] = 1;
	data[3] = 'm';
	cr_assert_eq(recfile_read_buffer(data, len, &c, &err), -PMS_EBADFILE);

	spill(other, (const uint8_t *)"{\"schema\": \"pymemspy.report/1\"}\n", 32);
	cr_assert_eq(run_report(argv, 2, out, errout), 7);
	{
		char *text = text_of(errout);

		cr_assert(strstr(text, "not a pymemspy recording"), "%s", text);
		free(text);
	}
	pms_error_clear(&err);
	cr_assert_eq(recfile_read(dir, &c, &err), -PMS_EBADFILE, "a directory");
	pms_error_clear(&err);
	path_in(other, sizeof(other), "absent");
	cr_assert_eq(recfile_read(other, &c, &err), -ENOENT);
	cr_assert_neq(run_report(argv, 2, out, errout), 0);
	free(data);
}

/* ---- Creating the file safely (the recorder runs as root) ---- */

Test(recfile, never_overwrites_nor_follows_a_symlink, .init = make_dir, .fini = remove_dir)
{
	struct pms_error err = {{0}};
	struct recfile_writer *w;
	struct recfile_meta meta;
	char path[128], victim[128], link[128], sub[128];
	struct stat st;
	mode_t old = umask(0);

	path_in(path, sizeof(path), "rec.pmsrec");
	path_in(victim, sizeof(victim), "victim");
	path_in(link, sizeof(link), "link.pmsrec");
	path_in(sub, sizeof(sub), "subdir");
	spill(victim, (const uint8_t *)"precious", 8);
	cr_assert_eq(symlink(victim, link), 0);
	cr_assert_eq(mkdir(sub, 0700), 0);

	/* mode 0600 whatever the umask */
	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	recfile_meta_init(&meta);
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	cr_assert_eq(recfile_close(w), 0);
	umask(old);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);

	/* an existing file: refused, unless --force */
	cr_assert_eq(recfile_create(path, false, &w, &err), -EEXIST);
	cr_assert(strstr(err.msg, "--force"), "%s", err.msg);
	cr_assert_null(w);
	pms_error_clear(&err);
	cr_assert_eq(recfile_create(path, true, &w, &err), 0, "%s", err.msg);
	cr_assert_eq(recfile_close(w), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 16, "replaced by a new recording (header only)");

	/* a symlink: refused, with or without --force, and its target untouched */
	pms_error_clear(&err);
	cr_assert_eq(recfile_create(link, false, &w, &err), -EEXIST);
	pms_error_clear(&err);
	cr_assert_eq(recfile_create(link, true, &w, &err), -EEXIST);
	cr_assert(strstr(err.msg, "symbolic link"), "%s", err.msg);
	cr_assert_eq(lstat(link, &st), 0);
	cr_assert(S_ISLNK(st.st_mode));
	cr_assert_eq(stat(victim, &st), 0);
	cr_assert_eq(st.st_size, 8);

	/* a dangling symlink: refused too (O_EXCL never creates through it) */
	cr_assert_eq(unlink(victim), 0);
	pms_error_clear(&err);
	cr_assert_eq(recfile_create(link, false, &w, &err), -EEXIST);
	cr_assert_neq(access(victim, F_OK), 0, "nothing created through the link");

	/* not a regular file */
	pms_error_clear(&err);
	cr_assert_eq(recfile_create(sub, true, &w, &err), -EEXIST);
	cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
	cr_assert_eq(stat(sub, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
}

/* ---- Crashes and full disks ---- */

/* The recorder killed with SIGKILL between two ticks: the file reads up to the last flush. */
Test(recfile, sigkill_loses_at_most_the_last_tick, .init = make_dir, .fini = remove_dir)
{
	struct recfile_contents c;
	struct pms_error err = {{0}};
	char path[128];
	int fds[2];
	pid_t child;
	char ticks = 0;

	path_in(path, sizeof(path), "killed.pmsrec");
	cr_assert_eq(pipe(fds), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		static struct model m;
		struct recfile_writer *w;
		struct recfile_meta meta;

		close(fds[0]);
		memset(&m, 0, sizeof(m));
		m.rng = 1;
		if (recfile_create(path, false, &w, &err))
			_exit(1);
		model_meta(&meta);
		recfile_write_meta(w, &meta);
		for (int k = 0; k < NT; k++) {
			char one = 1;

			model_tick(&m, w, k, 5, 8, 8);
			recfile_flush(w);
			if (write(fds[1], &one, 1) != 1)
				_exit(1);
		}
		pause();
		_exit(0);
	}
	close(fds[1]);
	while (ticks < 11) {
		char one;

		cr_assert_eq(read(fds[0], &one, 1), 1);
		ticks++;
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	close(fds[0]);

	cr_assert_eq(recfile_read(path, &c, &err), 0, "%s", err.msg);
	cr_assert_not(c.has_end);
	cr_assert_not(c.corrupt);
	/* killed anywhere after its 11th flush: every flushed tick is there, nothing damaged */
	cr_assert_geq(c.last_tick, 11.0);
	recfile_contents_free(&c);
}

/* Writes ticks until the writer fails; checks the failure is sticky and the file whole. */
static void fill_until_failure(const char *path, int expected)
{
	static struct model m;
	struct pms_error err = {{0}};
	struct recfile_writer *w;
	struct recfile_meta meta;
	struct recfile_contents c;
	struct stat st;
	int ret = 0, k;

	memset(&m, 0, sizeof(m));
	m.rng = 3;
	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	model_meta(&meta);
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	for (k = 0; k < NT && !ret; k++) {
		const struct profile_delta_sink *s = recfile_sink(w);

		/* many big stacks: a few kilobytes a tick */
		if (recfile_write_tick(w, k + 1.0, 0, m.counters, &m.totals) == 0) {
			struct profile_site site = {.function = "f", .file = "g", .line = k};
			char names[PMS_MAX_DEPTH][80];
			struct profile_frame frames[PMS_MAX_DEPTH];

			for (int f = 0; f < PMS_MAX_DEPTH; f++) {
				snprintf(names[f], sizeof(names[f]),
					 "/a/rather/long/path/to/a/module_%d_%d.py", k, f);
				frames[f] = (struct profile_frame){names[f], names[f], f};
			}
			s->site(s->ctx, (uint32_t)k, &site);
			s->stack(s->ctx, (uint32_t)k, frames, PMS_MAX_DEPTH);
		}
		ret = recfile_flush(w);
	}
	cr_assert_eq(ret, expected, "flush: %d", ret);
	cr_assert_eq(recfile_error(w), expected);
	cr_assert_eq(recfile_write_tick(w, k + 1.0, 0, m.counters, &m.totals), expected);
	cr_assert_eq(recfile_write_end(w, &model_end), expected);
	cr_assert_eq(recfile_flush(w), expected);
	cr_assert_eq(recfile_close(w), expected);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_gt(st.st_size, 16);

	cr_assert_eq(recfile_read(path, &c, &err), 0, "%s", err.msg);
	cr_assert_not(c.truncated, "whole records only");
	cr_assert_eq(c.valid_bytes, (uint64_t)st.st_size);
	cr_assert_not(c.has_end);
	cr_assert_gt(c.last_tick, 0);
	recfile_contents_free(&c);
}

/* A write limit (RLIMIT_FSIZE) fails writes part-way, like a full disk, without root. */
Test(recfile, a_failed_write_keeps_the_file_whole, .init = make_dir, .fini = remove_dir)
{
	struct rlimit rl = {.rlim_cur = 40000, .rlim_max = RLIM_INFINITY};
	char path[128];

	/* the write fails with EFBIG instead of killing us */
	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
		cr_skip_test("cannot set RLIMIT_FSIZE: %s", strerror(errno));
	path_in(path, sizeof(path), "limited.pmsrec");
	fill_until_failure(path, -EFBIG);
}

static char mounted[128];

/* Unmounts the test's tmpfs whatever happened, before its directory goes. */
static void unmount_and_remove(void)
{
	if (mounted[0])
		umount2(mounted, MNT_DETACH);
	mounted[0] = '\0';
	remove_dir();
}

Test(recfile, a_full_disk_stops_the_file_and_keeps_it_readable, .init = make_dir,
     .fini = unmount_and_remove)
{
	char mnt[128], path[160];

	path_in(mnt, sizeof(mnt), "tmpfs");
	cr_assert_eq(mkdir(mnt, 0700), 0);
	if (geteuid() != 0)
		cr_skip_test("needs root to mount a small tmpfs");
	/* in a mount namespace of our own: the tmpfs goes with this process, even if it crashes */
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		cr_skip_test("cannot make a mount namespace: %s", strerror(errno));
	if (mount("pms-recfile", mnt, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k") != 0)
		cr_skip_test("cannot mount a tmpfs: %s", strerror(errno));
	strcpy(mounted, mnt);
	snprintf(path, sizeof(path), "%s/full.pmsrec", mnt);
	fill_until_failure(path, -ENOSPC);
}

/* ---- Size ---- */

/* At default settings a minute must take at most 1 MB: 60 ticks with ~20 sites changed per
 * tick, new sites appearing, representative stacks of 32 frames changing now and then. */
Test(recfile, a_minute_takes_well_under_a_megabyte, .init = make_dir, .fini = remove_dir)
{
	static struct model m;
	char path[128];
	uint64_t size, busy;

	path_in(path, sizeof(path), "minute.pmsrec");
	size = write_model(path, &m, 60, 5, 20, 32, true);
	cr_log_info("a minute, 20 sites changed per tick, %zu sites: %llu bytes", m.nsites,
		    (unsigned long long)size);
	cr_assert_leq(size, 1000000);
	remove(path);
	/* ten times busier: 200 sites changed every second, 400 sites */
	busy = write_model(path, &m, 60, 50, 200, 32, true);
	cr_log_info("a minute, 200 sites changed per tick, %zu sites: %llu bytes", m.nsites,
		    (unsigned long long)busy);
	cr_assert_leq(busy, 1000000);
}

/* The same with a live profile: 300 real functions (code objects of the interpreter, in 40
 * files), events with stacks of 4 to 30 of them, 20 sites changed a second, written by
 * recfile_tick with their series buckets. */
Test(recfile, a_live_minute_takes_well_under_a_megabyte, .init = make_dir, .fini = remove_dir)
{
	const char *exe = "/usr/bin/python3.11";
	enum { NFUNC = 300 };
	struct pms_error err = {{0}};
	struct pytarget *t = NULL;
	static uint64_t code[NFUNC];
	uint64_t counters[PMS_CNT_MAX] = {0}, rng = 5;
	struct recfile_writer *w;
	struct recfile_meta meta;
	struct recfile_contents c;
	struct profile *p;
	char path[128], line[64];
	int fds[2];
	size_t nsites;
	pid_t pid;
	FILE *in;

	if (access(exe, X_OK) != 0)
		cr_skip_test("%s is not installed", exe);
	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		execl(exe, exe, "-c",
		      "import sys, time\n"
		      "fs = []\n"
		      "for i in range(300):\n"
		      "    ns = {}\n"
		      "    src = '\\n' * (i % 50) + 'def handler_%d(x):\\n    return x\\n' % i\n"
		      "    exec(compile(src, '/srv/app/service/module_%d.py' % (i % 40), 'exec'), "
		      "ns)\n"
		      "    fs.append(ns['handler_%d' % i])\n"
		      "for f in fs:\n"
		      "    print(id(f.__code__))\n"
		      "sys.stdout.flush()\n"
		      "time.sleep(60)\n",
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	in = fdopen(fds[0], "r");
	for (int i = 0; i < NFUNC; i++) {
		cr_assert_not_null(fgets(line, sizeof(line), in));
		code[i] = strtoull(line, NULL, 10);
	}
	fclose(in);
	if (pytarget_open(pid, &t, &err) != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		cr_skip_test("cannot read the interpreter: %s", err.msg);
	}
	p = profile_new(t);
	path_in(path, sizeof(path), "live-minute.pmsrec");
	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	recfile_meta_init(&meta);
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	for (int k = 0; k < 60; k++) {
		for (int j = 0; j < 20; j++) {
			/* sites appear over the first 15 s; each has two stacks that take turns */
			int site = (k * 20 + j) % (k < 15 ? 20 * (k + 1) : NFUNC), variant;
			struct pms_event ev;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			variant = (int)(rng >> 60) % 2;
			memset(&ev, 0, sizeof(ev));
			ev.kind = PMS_EV_GROWTH;
			ev.tid = 100 + (uint32_t)j % 4;
			ev.addr = 0x10000000 + ((uint64_t)k * 20 + (uint64_t)j) * 4096;
			ev.bytes = 4096 * (int64_t)(1 + (rng >> 40) % 64);
			ev.flags = PMS_EVF_STACK_INLINE;
			ev.stack_id = (uint64_t)site * 2 + (uint64_t)variant + 1;
			ev.nframes = 4 + (uint32_t)(site + variant) % 27;
			for (uint32_t f = 0; f < ev.nframes; f++)
				ev.frames[f].code = code[(site + (int)f * (7 + variant)) % NFUNC];
			cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(ev.nframes),
						       k + (double)j / 20),
				     0);
		}
		cr_assert_eq(recfile_tick(w, p, k + 1.0, 1 << 26, counters), 0);
		cr_assert_eq(recfile_flush(w), 0);
	}
	profile_sites(p, &nsites);
	cr_log_info("a live minute, 20 sites changed a second, %zu sites: %llu bytes", nsites,
		    (unsigned long long)recfile_size(w));
	cr_assert_geq(nsites, 250, "the functions were symbolized");
	cr_assert_leq(recfile_size(w), 1000000);
	cr_assert_eq(recfile_close(w), 0);
	cr_assert_eq(recfile_read(path, &c, &err), 0, "%s", err.msg);
	check_same(p, c.profile);
	recfile_contents_free(&c);
	profile_free(p);
	pytarget_close(t);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* ---- --diff ---- */

static void write_two_sites(const char *path, int64_t leak, int64_t other, bool third)
{
	struct pms_error err = {{0}};
	struct recfile_writer *w;
	struct recfile_meta meta;
	const struct profile_delta_sink *s;
	uint64_t counters[PMS_CNT_MAX] = {0};
	struct profile_totals totals = {0};
	struct profile_frame frame = {"leaky", "/srv/app.py", 9};
	struct profile_site a = {.function = "leaky", .file = "/srv/app.py", .line = 9};
	struct profile_site b = {.function = "steady", .file = "/srv/app.py", .line = 20};
	struct profile_site c = {.function = "fresh", .file = "/srv/new.py", .line = 1};

	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	model_meta(&meta);
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	s = recfile_sink(w);
	cr_assert_eq(s->site(s->ctx, 0, &a), 0);
	cr_assert_eq(s->stack(s->ctx, 0, &frame, 1), 0);
	cr_assert_eq(s->site(s->ctx, 1, &b), 0);
	if (third)
		cr_assert_eq(s->site(s->ctx, 2, &c), 0);
	for (int k = 0; k < 10; k++) {
		struct profile_delta d0 = {.site = 0, .grown = leak, .samples = 1};
		struct profile_delta d1 = {.site = 1, .grown = other, .samples = 1};
		struct profile_delta d2 = {.site = 2, .grown = 1000, .samples = 1};

		s->delta(s->ctx, &d0);
		s->delta(s->ctx, &d1);
		if (third)
			s->delta(s->ctx, &d2);
		cr_assert_eq(recfile_write_tick(w, k + 1.0, 0, counters, &totals), 0);
	}
	cr_assert_eq(recfile_close(w), 0);
}

Test(recfile, diff_shows_what_grew_most_first, .init = make_dir, .fini = remove_dir)
{
	char a[128], b[128], out[128], errout[128];
	char *argv[] = {"report", "--diff", a, b, NULL};
	char *argvj[] = {"report", "--diff", a, b, "--json", NULL};
	char *text, *leaky, *steady, *fresh;

	path_in(a, sizeof(a), "a.pmsrec");
	path_in(b, sizeof(b), "b.pmsrec");
	path_in(out, sizeof(out), "out.txt");
	path_in(errout, sizeof(errout), "err.txt");
	write_two_sites(a, 4096, 4096, false);
	write_two_sites(b, 40960, 4096, true);

	cr_assert_eq(run_report(argv, 4, out, errout), 0);
	text = text_of(out);
	leaky = strstr(text, "leaky (/srv/app.py:9)");
	fresh = strstr(text, "fresh (/srv/new.py:1) [new]");
	cr_assert_not_null(leaky, "%s", text);
	cr_assert_not_null(fresh, "%s", text);
	cr_assert_lt(leaky, fresh, "the biggest change first");
	cr_assert_null(strstr(text, "steady ("), "unchanged sites are not listed");
	free(text);

	cr_assert_eq(run_report(argvj, 5, out, errout), 0);
	text = text_of(out);
	cr_assert(strstr(text, "\"schema\": \"pymemspy.diff/1\""));
	leaky = strstr(text, "\"function\": \"leaky\"");
	steady = strstr(text, "\"function\": \"steady\"");
	cr_assert_not_null(leaky);
	cr_assert_not_null(steady);
	cr_assert_lt(leaky, steady);
	cr_assert(strstr(text, "\"status\": \"new\""));
	cr_assert(strstr(text, "\"rate_change\": 36864"), "%s", text);
	free(text);
	if (access("/usr/bin/python3", X_OK) == 0) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "/usr/bin/python3 -m json.tool %s > /dev/null", out);
		cr_assert_eq(system(cmd), 0, "the JSON diff parses");
	}

	/* usage errors */
	{
		char *bad[] = {"report", "--diff", a, NULL};
		char *none[] = {"report", NULL};

		cr_assert_eq(run_report(bad, 3, out, errout), 2);
		cr_assert_eq(run_report(none, 1, out, errout), 2);
	}
}

/* ---- Allocator sources (--events malloc, pymalloc) ---- */

#define NA 6 /* sites of the allocator model; the last one has growth deltas only */

/* What the deltas of an allocator recording add up to. Every value is a multiple of 1/4 well
 * under 2^40: sums are exact in any order, so the rebuilt doubles must be equal, not close. */
struct amodel {
	int64_t grown[NA], released[NA];
	uint64_t samples[NA];
	double allocs[NA], frees[NA], var_grown[NA], var_live[NA];
	int64_t live[NA];
	int deltas[NA];
	uint64_t counters[PMS_CNT_MAX];
	struct profile_totals totals;
	double last_at;
};

static void alloc_names(size_t i, char *fn, size_t fnlen, int *line)
{
	snprintf(fn, fnlen, "alloc_%zu", i);
	*line = 10 + (int)i;
}

static void alloc_meta(struct recfile_meta *meta, const char *events)
{
	model_meta(meta);
	strcpy(meta->events, events);
	meta->rate = 65536;
	strcpy(meta->allocator, "cpython 3.11");
	meta->coverage = 0.875;
}

static void alloc_delta(struct amodel *m, const struct profile_delta_sink *s,
			const struct profile_delta *d)
{
	size_t i = d->site;

	m->grown[i] += d->grown;
	m->released[i] += d->released;
	m->samples[i] += d->samples;
	m->allocs[i] += d->allocs;
	m->frees[i] += d->frees;
	m->var_grown[i] += d->var_grown;
	m->var_live[i] += d->var_live;
	m->live[i] += d->live_samples;
	m->totals.grown += d->grown;
	m->totals.released += d->released;
	m->totals.events += d->samples;
	cr_assert_eq(s->delta(s->ctx, d), 0);
}

/* The profile recfile_write_oldest reads: the model's sites (same names, same order) with its
 * net bytes and live samples, and five live allocations each, the last site's included (it has
 * no live samples: none of its allocations may be written). */
static struct profile *alloc_oldest_profile(const struct amodel *m)
{
	struct profile *q = profile_new(NULL);

	cr_assert_not_null(q);
	for (size_t i = 0; i < NA; i++) {
		struct profile_delta d = {.site = (uint32_t)i,
					  .grown = m->grown[i],
					  .released = m->released[i],
					  .live_samples = m->live[i]};
		char fn[32];
		int line;

		alloc_names(i, fn, sizeof(fn), &line);
		cr_assert_eq(profile_define_site(q, (uint32_t)i, fn, "/srv/heap.py", line, 0.5), 0);
		cr_assert_eq(profile_add_delta(q, &d, 1.0), 0);
		for (int k = 0; k < 5; k++) {
			/* out of order: the file has the oldest three */
			struct profile_live l = {.at = 0.25 + (double)((k * 3) % 5) + (double)i / 8,
						 .size = 1000 * (i + 1) + (uint64_t)k,
						 .addr =
						     0x7f0000000000ull + i * 0x10000 + (uint64_t)k,
						 .tid = 100 + (uint32_t)k};

			cr_assert_eq(profile_add_live(q, (uint32_t)i, &l), 0);
		}
	}
	return q;
}

/* Writes an allocator recording of `ticks` ticks through the sink; returns the profile its
 * OLDEST record was written from (with_oldest), else NULL. */
static struct profile *write_alloc_model(const char *path, struct amodel *m, int ticks,
					 bool with_oldest, bool end)
{
	struct pms_error err = {{0}};
	struct recfile_writer *w;
	struct recfile_meta meta;
	const struct profile_delta_sink *s;
	struct profile *q = NULL;

	memset(m, 0, sizeof(*m));
	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	alloc_meta(&meta, "pymalloc");
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	s = recfile_sink(w);
	for (size_t i = 0; i < NA; i++) {
		struct profile_site site = {.file = "/srv/heap.py", .first_seen = 0.5};
		struct profile_frame frames[2] = {{NULL, "/srv/heap.py", 0},
						  {"main", "/srv/m.py", 3}};
		char fn[32];

		alloc_names(i, fn, sizeof(fn), &site.line);
		site.function = fn;
		frames[0].function = fn;
		frames[0].line = site.line;
		cr_assert_eq(s->site(s->ctx, (uint32_t)i, &site), 0);
		cr_assert_eq(s->stack(s->ctx, (uint32_t)i, frames, 2), 0);
	}
	for (int k = 0; k < ticks; k++) {
		for (size_t i = 0; i < NA; i++) {
			struct profile_delta d = {.site = (uint32_t)i};

			if ((i + (size_t)k) % 3 == 0)
				continue;
			d.grown = 65536 * (int64_t)(i + 1) * (k % 4 + 1);
			d.released = k % 2 ? 32768 * (int64_t)i : 0;
			d.samples = 2 + i;
			if (i < NA - 1) {
				d.allocs = 1.25 * (double)(i + 1) * (k % 4 + 1);
				d.frees = k % 2 ? 0.75 * (double)i : 0;
				d.var_grown = 1048576.5 * (double)(i + 1);
				d.var_live = (k % 3 == 1 ? -0.25 : 1.5) * 1048576 * (double)(i + 1);
				/* +3, -1, +3...: never below zero */
				d.live_samples = m->deltas[i]++ % 2 ? -1 : 3;
			}
			if (i == 0) {
				/* taken twice before one tick: the writer sums them */
				struct profile_delta half = d;

				half.grown = d.grown / 2;
				half.released = 0;
				half.samples = 1;
				half.allocs = d.allocs / 2;
				half.frees = 0;
				half.var_grown = d.var_grown / 2;
				half.var_live = 0.5;
				half.live_samples = 1;
				alloc_delta(m, s, &half);
				d.grown -= half.grown;
				d.samples -= 1;
				d.allocs -= half.allocs;
				d.var_grown -= half.var_grown;
				d.var_live -= 0.5;
				d.live_samples -= 1;
			}
			alloc_delta(m, s, &d);
		}
		for (int c = 0; c < PMS_CNT_MAX; c++)
			m->counters[c] += 1000 * (uint64_t)(c + 1) + (uint64_t)k;
		m->totals.stacks_lost += 1;
		m->totals.allocs_untracked += 2 + (uint64_t)k;
		m->last_at = k + 1.0;
		cr_assert_eq(recfile_write_tick(w, m->last_at, 1 << 26, m->counters, &m->totals),
			     0);
		cr_assert_eq(recfile_flush(w), 0);
	}
	if (with_oldest) {
		q = alloc_oldest_profile(m);
		cr_assert_eq(recfile_write_oldest(w, q), 0);
	}
	if (end)
		cr_assert_eq(recfile_write_end(w, &model_end), 0);
	cr_assert_eq(recfile_close(w), 0);
	return q;
}

static const struct profile_site *site_named(struct profile *p, const char *fn)
{
	const struct profile_site *const *sites;
	size_t n;

	sites = profile_sites(p, &n);
	for (size_t k = 0; k < n; k++)
		if (strcmp(sites[k]->function, fn) == 0)
			return sites[k];
	return NULL;
}

static void check_oldest(struct profile *rebuilt, const struct profile_site *s,
			 struct profile *from, const struct profile_site *fs)
{
	struct profile_live want[RECFILE_OLDEST_PER_SITE], got[8];
	size_t nw = 0, ng = profile_oldest_live(rebuilt, s, got, 8);

	if (fs && fs->live_samples)
		nw = profile_oldest_live(from, fs, want, RECFILE_OLDEST_PER_SITE);
	cr_assert_eq(ng, nw, "%s: %zu oldest, not %zu", s->function, ng, nw);
	for (size_t k = 0; k < nw; k++) {
		cr_assert_eq(got[k].at, want[k].at);
		cr_assert_eq(got[k].size, want[k].size);
		cr_assert_eq(got[k].addr, want[k].addr);
		cr_assert_eq(got[k].tid, want[k].tid);
	}
}

static void check_alloc_model(struct recfile_contents *c, const struct amodel *m, struct profile *q)
{
	const struct profile_totals *t = profile_totals(c->profile);
	size_t n;

	cr_assert_str_eq(c->meta.events, "pymalloc");
	cr_assert_eq(c->meta.rate, 65536);
	cr_assert_str_eq(c->meta.allocator, "cpython 3.11");
	cr_assert_eq(c->meta.coverage, 0.875);
	cr_assert_eq(c->last_tick, m->last_at);
	cr_assert_eq(memcmp(c->counters, m->counters, sizeof(m->counters)), 0,
		     "every counter, the allocator ones included");
	cr_assert_eq(t->grown, m->totals.grown);
	cr_assert_eq(t->released, m->totals.released);
	cr_assert_eq(t->events, m->totals.events);
	cr_assert_eq(t->stacks_lost, m->totals.stacks_lost);
	cr_assert_eq(t->allocs_untracked, m->totals.allocs_untracked);
	profile_sites(c->profile, &n);
	cr_assert_eq(n, NA);
	for (size_t i = 0; i < NA; i++) {
		char fn[32];
		int line;
		const struct profile_site *s;

		alloc_names(i, fn, sizeof(fn), &line);
		s = site_named(c->profile, fn);
		cr_assert_not_null(s, "%s", fn);
		cr_assert_eq(s->line, line);
		cr_assert_eq(s->stack_len, 2);
		cr_assert_eq(s->grown, m->grown[i], "%s", fn);
		cr_assert_eq(s->released, m->released[i]);
		cr_assert_eq(s->samples, m->samples[i]);
		cr_assert_eq(s->allocs, m->allocs[i], "%s: %f, not %f", fn, s->allocs,
			     m->allocs[i]);
		cr_assert_eq(s->frees, m->frees[i]);
		cr_assert_eq(s->var_grown, m->var_grown[i]);
		cr_assert_eq(s->var_live, m->var_live[i]);
		cr_assert_eq(s->live_samples, (uint64_t)m->live[i]);
		if (q)
			check_oldest(c->profile, s, q, site_named(q, fn));
	}
	cr_assert_eq(c->oldest_sites, q ? NA - 1 : 0);
}

Test(recfile, allocator_figures_and_oldest_live_round_trip, .init = make_dir, .fini = remove_dir)
{
	static struct amodel m;
	struct recfile_contents c;
	struct pms_error err = {{0}};
	struct profile *q;
	char path[128];

	path_in(path, sizeof(path), "alloc.pmsrec");
	q = write_alloc_model(path, &m, 12, true, true);
	cr_assert_gt(m.live[0], 0);
	cr_assert_eq(recfile_read(path, &c, &err), 0, "%s", err.msg);
	cr_assert_not(c.truncated);
	cr_assert(c.has_end);
	check_alloc_model(&c, &m, q);
	recfile_contents_free(&c);
	profile_free(q);
}

/* Files cut anywhere: whole records only, the allocator figures of a tick with its deltas, the
 * oldest live allocations all or none. */
Test(recfile, every_byte_of_an_allocator_file_cut, .init = make_dir, .fini = remove_dir)
{
	static struct amodel m;
	char path[128];
	struct profile *q;
	uint8_t *data;
	size_t len, meta_end;

	path_in(path, sizeof(path), "acut.pmsrec");
	q = write_alloc_model(path, &m, 4, true, true);
	data = slurp(path, &len);
	meta_end = 16 + 12 + (data[20] | data[21] << 8 | data[22] << 16 | (size_t)data[23] << 24);
	for (size_t cut = meta_end; cut <= len; cut++) {
		struct recfile_contents c;
		struct pms_error err = {{0}};
		const struct profile_site *const *sites;
		size_t n;

		cr_assert_eq(recfile_read_buffer(data, cut, &c, &err), 0, "cut at %zu: %s", cut,
			     err.msg);
		cr_assert_not(c.corrupt, "cut at %zu", cut);
		cr_assert_eq(c.truncated, c.valid_bytes != cut);
		cr_assert_eq(c.meta.rate, 65536);
		cr_assert(c.oldest_sites == 0 || c.oldest_sites == NA - 1, "cut at %zu", cut);
		sites = profile_sites(c.profile, &n);
		for (size_t k = 0; k < n; k++) {
			size_t i = (size_t)atoi(sites[k]->function + 6);

			cr_assert_lt(i, NA);
			cr_assert_leq(sites[k]->allocs, m.allocs[i]);
			cr_assert_leq(sites[k]->var_grown, m.var_grown[i]);
			/* a tick's allocation figures come with its bytes, never without */
			cr_assert_eq(sites[k]->allocs == 0, sites[k]->grown == 0 || i == NA - 1);
		}
		if (cut == len)
			check_alloc_model(&c, &m, q);
		recfile_contents_free(&c);
	}
	free(data);
	profile_free(q);
}

/* Of many sites with live samples, the RECFILE_OLDEST_SITES with the most net bytes. */
Test(recfile, oldest_live_of_the_biggest_sites_only, .init = make_dir, .fini = remove_dir)
{
	enum { MANY = RECFILE_OLDEST_SITES + 3 };
	struct pms_error err = {{0}};
	struct recfile_writer *w;
	struct recfile_meta meta;
	struct recfile_contents c;
	const struct profile_delta_sink *s;
	struct profile *q = profile_new(NULL);
	uint64_t counters[PMS_CNT_MAX] = {0};
	struct profile_totals totals = {0};
	char path[128], fn[32];

	path_in(path, sizeof(path), "many.pmsrec");
	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	alloc_meta(&meta, "malloc");
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	s = recfile_sink(w);
	for (size_t i = 0; i < MANY; i++) {
		struct profile_site site = {.function = fn, .file = "/srv/x.py", .line = 1};
		struct profile_delta d = {.site = (uint32_t)i,
					  .grown = 4096 * (int64_t)(i + 1),
					  .samples = 1,
					  .allocs = 1,
					  .live_samples = 1};
		struct profile_live l = {.at = 0.5, .size = 4096, .addr = i, .tid = 1};

		snprintf(fn, sizeof(fn), "f%zu", i);
		cr_assert_eq(s->site(s->ctx, (uint32_t)i, &site), 0);
		cr_assert_eq(s->delta(s->ctx, &d), 0);
		cr_assert_eq(profile_define_site(q, (uint32_t)i, fn, "/srv/x.py", 1, 0), 0);
		cr_assert_eq(profile_add_delta(q, &d, 0.5), 0);
		cr_assert_eq(profile_add_live(q, (uint32_t)i, &l), 0);
	}
	cr_assert_eq(recfile_write_tick(w, 1.0, 0, counters, &totals), 0);
	cr_assert_eq(recfile_write_oldest(w, q), 0);
	cr_assert_eq(recfile_close(w), 0);
	cr_assert_eq(recfile_read(path, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(c.oldest_sites, RECFILE_OLDEST_SITES);
	for (size_t i = 0; i < MANY; i++) {
		struct profile_live got[4];
		const struct profile_site *site;

		snprintf(fn, sizeof(fn), "f%zu", i);
		site = site_named(c.profile, fn);
		cr_assert_not_null(site);
		cr_assert_eq(profile_oldest_live(c.profile, site, got, 4), i < 3 ? 0u : 1u,
			     "site %zu", i);
	}
	recfile_contents_free(&c);
	profile_free(q);
}

/* ---- Hand-made files: the previous format, and later additions ---- */

struct hand {
	uint8_t d[4096];
	size_t n, rec;
};

static void h8(struct hand *h, unsigned v)
{
	cr_assert_lt(h->n, sizeof(h->d));
	h->d[h->n++] = (uint8_t)v;
}

static void h32(struct hand *h, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		h8(h, (v >> (8 * i)) & 0xff);
}

static void h64(struct hand *h, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		h8(h, (unsigned)(v >> (8 * i)) & 0xff);
}

static void hf64(struct hand *h, double d)
{
	uint64_t v;

	memcpy(&v, &d, sizeof(v));
	h64(h, v);
}

static void huv(struct hand *h, uint64_t v)
{
	do {
		h8(h, (unsigned)(v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

static void hsv(struct hand *h, int64_t v)
{
	huv(h, v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1);
}

static void hstr(struct hand *h, const char *s)
{
	size_t n = strlen(s);

	h8(h, n & 0xff);
	h8(h, n >> 8);
	for (size_t i = 0; i < n; i++)
		h8(h, (unsigned char)s[i]);
}

static void hbegin(struct hand *h, uint32_t type)
{
	h->rec = h->n;
	h32(h, type);
	h32(h, 0);
}

static void hend(struct hand *h)
{
	uint32_t len = (uint32_t)(h->n - h->rec - 8);

	for (int i = 0; i < 4; i++)
		h->d[h->rec + 4 + i] = (uint8_t)(len >> (8 * i));
	h32(h, (uint32_t)crc32(0, h->d + h->rec, (uInt)(h->n - h->rec)));
}

/* The header, the META of format version 1 as first written (no allocator fields) unless
 * `extra`, two strings and one site with a stack. */
static void hand_start(struct hand *h, bool alloc_fields, bool extra)
{
	h->n = 0;
	for (const char *m = RECFILE_MAGIC; *m; m++)
		h8(h, (unsigned char)*m);
	h32(h, 1);
	h32(h, 0);
	hbegin(h, 1);
	h32(h, 777);
	hstr(h, "python3");
	hstr(h, "3.11.7");
	hstr(h, "release");
	hstr(h, alloc_fields ? "malloc" : "growth");
	hstr(h, "x86_64, Linux 6.1.0");
	hf64(h, 1.7e9);
	h64(h, 1 << 24);
	h32(h, 500);
	h32(h, 64);
	if (alloc_fields) {
		h64(h, 4096);
		hstr(h, "glibc");
		hf64(h, -1);
	}
	if (extra)
		hstr(h, "a field of a later version");
	hend(h);
	hbegin(h, 2);
	huv(h, 0);
	hstr(h, "grow");
	hend(h);
	hbegin(h, 2);
	huv(h, 1);
	hstr(h, "/srv/a.py");
	hend(h);
	hbegin(h, 3);
	huv(h, 0);
	huv(h, 0);
	huv(h, 1);
	hsv(h, 7);
	hf64(h, 0.5);
	hend(h);
	hbegin(h, 4);
	huv(h, 0);
	huv(h, 1);
	huv(h, 0);
	huv(h, 1);
	hsv(h, 7);
	hend(h);
}

/* A TICK at `at` with ncounters counters (counter i = 100 + i), ntotals totals and one delta
 * of site 0 (+8192, -4096, 2 samples); then `tail` (allocator figures...) written by the
 * caller before hend. */
static void hand_tick(struct hand *h, double at, uint64_t ncounters, uint64_t ntotals)
{
	hbegin(h, 5);
	hf64(h, at);
	huv(h, 1 << 25);
	huv(h, ncounters);
	for (uint64_t i = 0; i < ncounters; i++)
		huv(h, 100 + i);
	huv(h, ntotals);
	for (uint64_t i = 0; i < ntotals; i++)
		huv(h, i < 3 ? 2 * (1000 + i) : 1000 + i); /* the first three zigzag-signed */
	hf64(h, 0);
	huv(h, 0);
	huv(h, 1);
	huv(h, 0);
	hsv(h, 8192);
	hsv(h, 4096);
	huv(h, 2);
	huv(h, 0);
	huv(h, 0);
	huv(h, 1);
	huv(h, 4242);
	hsv(h, 8192);
}

static void hand_end(struct hand *h)
{
	hbegin(h, 6);
	hf64(h, 3.0);
	hstr(h, "duration");
	h64(h, 1 << 25);
	hf64(h, 0.1);
	h64(h, 1);
	h64(h, 2);
	h64(h, 3);
	hend(h);
}

/* A file as the previous version wrote it (META without the allocator fields, 12 counters, 6
 * totals, no allocator figures) reads as a growth recording. */
Test(recfile, files_of_the_previous_version_still_read, .init = make_dir, .fini = remove_dir)
{
	static struct hand h;
	struct recfile_contents c;
	struct pms_error err = {{0}};
	const struct profile_site *const *sites;
	const struct profile_totals *t;
	char path[128], out[128], errout[128];
	char *argv[] = {"report", path, NULL};
	char *text;
	size_t n;

	hand_start(&h, false, false);
	hand_tick(&h, 1.0, 12, 6);
	hend(&h);
	hand_tick(&h, 2.0, 12, 6);
	hend(&h);
	hand_end(&h);
	cr_assert_eq(recfile_read_buffer(h.d, h.n, &c, &err), 0, "%s", err.msg);
	cr_assert_not(c.truncated);
	cr_assert(c.has_end);
	cr_assert_str_eq(c.meta.events, "growth");
	cr_assert_eq(c.meta.max_depth, 64);
	cr_assert_eq(c.meta.rate, 0);
	cr_assert_str_eq(c.meta.allocator, "");
	cr_assert_eq(c.meta.coverage, 1.0);
	for (int i = 0; i < PMS_CNT_MAX; i++)
		cr_assert_eq(c.counters[i], i < 12 ? 100 + (uint64_t)i : 0, "counter %d", i);
	t = profile_totals(c.profile);
	cr_assert_eq(t->grown, 1000);
	cr_assert_eq(t->released, 1001);
	cr_assert_eq(t->pages_untracked, 1005);
	cr_assert_eq(t->allocs_untracked, 0);
	sites = profile_sites(c.profile, &n);
	cr_assert_eq(n, 1);
	cr_assert_eq(sites[0]->grown, 16384);
	cr_assert_eq(sites[0]->released, 8192);
	cr_assert_eq(sites[0]->samples, 4);
	cr_assert_eq(sites[0]->allocs, 0);
	cr_assert_eq(sites[0]->live_samples, 0);
	cr_assert_eq(c.oldest_sites, 0);
	recfile_contents_free(&c);

	path_in(path, sizeof(path), "old.pmsrec");
	path_in(out, sizeof(out), "out.txt");
	path_in(errout, sizeof(errout), "err.txt");
	spill(path, h.d, h.n);
	cr_assert_eq(run_report(argv, 2, out, errout), 0);
	text = text_of(out);
	cr_assert(strstr(text, "Top sites by resident growth"), "%s", text);
	cr_assert(strstr(text, "grow (/srv/a.py:7)"), "%s", text);
	free(text);
}

/* What a later version may add is skipped: fields after the known ones (META, TICK), more
 * counters and totals than this reader knows, records of unknown types. */
Test(recfile, later_additions_are_skipped)
{
	static struct hand h;
	struct recfile_contents c;
	struct pms_error err = {{0}};
	const struct profile_site *const *sites;
	size_t n;

	hand_start(&h, true, true);
	hand_tick(&h, 1.0, PMS_CNT_MAX + 7, 12);
	huv(&h, 1); /* allocator figures of site 0 */
	huv(&h, 0);
	hf64(&h, 2.5);
	hf64(&h, 0.5);
	hf64(&h, 1e9);
	hf64(&h, 5e8);
	hsv(&h, 2);
	hstr(&h, "a later field");
	hend(&h);
	hbegin(&h, 99);
	hstr(&h, "a later record");
	hend(&h);
	hbegin(&h, 7); /* OLDEST: site 0, one allocation */
	huv(&h, 1);
	huv(&h, 0);
	huv(&h, 1);
	hf64(&h, 0.75);
	huv(&h, 300);
	huv(&h, 0xdead0000);
	huv(&h, 4242);
	hstr(&h, "a later field");
	hend(&h);
	hand_end(&h);
	cr_assert_eq(recfile_read_buffer(h.d, h.n, &c, &err), 0, "%s", err.msg);
	cr_assert_not(c.truncated);
	cr_assert(c.has_end);
	cr_assert_eq(c.meta.rate, 4096);
	cr_assert_str_eq(c.meta.allocator, "glibc");
	cr_assert_eq(c.meta.coverage, -1);
	for (int i = 0; i < PMS_CNT_MAX; i++)
		cr_assert_eq(c.counters[i], 100 + (uint64_t)i);
	cr_assert_eq(profile_totals(c.profile)->allocs_untracked, 1006);
	sites = profile_sites(c.profile, &n);
	cr_assert_eq(n, 1);
	cr_assert_eq(sites[0]->allocs, 2.5);
	cr_assert_eq(sites[0]->frees, 0.5);
	cr_assert_eq(sites[0]->var_grown, 1e9);
	cr_assert_eq(sites[0]->var_live, 5e8);
	cr_assert_eq(sites[0]->live_samples, 2);
	cr_assert_eq(c.oldest_sites, 1);
	{
		struct profile_live l[2];

		cr_assert_eq(profile_oldest_live(c.profile, sites[0], l, 2), 1);
		cr_assert_eq(l[0].at, 0.75);
		cr_assert_eq(l[0].size, 300);
		cr_assert_eq(l[0].addr, 0xdead0000);
		cr_assert_eq(l[0].tid, 4242);
	}
	recfile_contents_free(&c);
}

/* Allocator figures and oldest allocations that do not fit what precedes them are damage. */
Test(recfile, inconsistent_allocator_records_are_damage)
{
	static struct hand h;
	struct recfile_contents c;
	struct pms_error err = {{0}};
	/* site, allocs, live_samples: a site with no delta in the tick; live samples below 0;
	 * not a number; the same site twice */
	static const struct {
		uint64_t site;
		double allocs;
		int64_t live;
		bool twice;
	} bad[] = {{1, 1, 1, false}, {0, 1, -1, false}, {0, NAN, 1, false}, {0, 1, 1, true}};

	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		hand_start(&h, true, false);
		hand_tick(&h, 1.0, 3, 3);
		hend(&h);
		hand_tick(&h, 2.0, 3, 3);
		huv(&h, bad[k].twice ? 2 : 1);
		for (int r = 0; r < (bad[k].twice ? 2 : 1); r++) {
			huv(&h, bad[k].site);
			hf64(&h, bad[k].allocs);
			hf64(&h, 0);
			hf64(&h, 0);
			hf64(&h, 0);
			hsv(&h, bad[k].live);
		}
		hend(&h);
		hand_end(&h);
		pms_error_clear(&err);
		cr_assert_eq(recfile_read_buffer(h.d, h.n, &c, &err), 0, "%s", err.msg);
		cr_assert(c.corrupt, "case %zu", k);
		cr_assert_eq(c.last_tick, 1.0, "the damaged tick changes nothing");
		cr_assert_eq(profile_sites(c.profile, &(size_t){0})[0]->allocs, 0);
		recfile_contents_free(&c);
	}
	/* an OLDEST naming a site twice, or an unknown one */
	for (int k = 0; k < 2; k++) {
		hand_start(&h, true, false);
		hbegin(&h, 7);
		huv(&h, k ? 1 : 2);
		for (int r = 0; r < (k ? 1 : 2); r++) {
			huv(&h, k ? 5 : 0);
			huv(&h, 1);
			hf64(&h, 0.5);
			huv(&h, 300);
			huv(&h, 1);
			huv(&h, 1);
		}
		hend(&h);
		hand_end(&h);
		cr_assert_eq(recfile_read_buffer(h.d, h.n, &c, &err), 0, "%s", err.msg);
		cr_assert(c.corrupt, "case %d", k);
		cr_assert_eq(c.oldest_sites, 0);
		recfile_contents_free(&c);
	}
}

/* ---- An allocator recording, live: the file's report is the recorder's ---- */

static bool close_to(double a, double b)
{
	return fabs(a - b) <= 1e-9 * fmax(1, fmax(fabs(a), fabs(b)));
}

static struct pms_event alloc_event(int k, int e)
{
	struct pms_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = PMS_EV_ALLOC;
	ev.tid = 7 + (uint32_t)e % 2;
	ev.addr = 0x5000000 + (uint64_t)(k * 8 + e) * 0x1000;
	ev.len = 100 + 700 * (uint64_t)e + 13 * (uint64_t)k;
	ev.p_q32 = pms_sample_p_q32(ev.len, 4096); /* weights of 1.5 to 40 */
	/* four sites: no thread state, no Python frame, a stack, a stack that never came */
	switch (e % 4) {
	case 0:
		ev.flags = PMS_EVF_NO_TSTATE;
		break;
	case 1:
		break;
	case 2:
		ev.flags = PMS_EVF_STACK_INLINE;
		ev.stack_id = 300;
		ev.nframes = 2;
		ev.frames[0].code = 0x77;
		ev.frames[1].code = 0x78;
		break;
	default:
		ev.stack_id = 999;
		break;
	}
	if (k == 3 && e == 5)
		ev.flags |= PMS_EVF_UNTRACKED;
	return ev;
}

/* What `report FILE` prints, byte for byte, is what `record` printed from its live profile:
 * the allocator layout (allocated, freed, live, +/-, counts, oldest live), text and JSON. */
Test(recfile, an_allocator_recording_reports_as_recorded, .init = start_python, .fini = stop_python)
{
	struct pms_error err = {{0}};
	struct profile *p;
	struct recfile_writer *w;
	struct recfile_meta meta;
	struct recfile_contents c;
	struct recfile_end e = model_end;
	uint64_t counters[PMS_CNT_MAX] = {0};
	struct pyversion py = {.major = 3, .minor = 11, .micro = 7, .text = "3.11.7"};
	struct report_meta rm = {0};
	char path[128], out[128], errout[128], mine[128];
	char *argv[] = {"report", path, NULL}, *argvj[] = {"report", path, "--json", NULL};
	const struct profile_site *const *src;
	size_t n;
	char *text, *want;
	FILE *f;

	if (!python)
		cr_skip_test("needs /usr/bin/python3.11, readable");
	p = profile_new(python);
	cr_assert_not_null(p);
	path_in(path, sizeof(path), "live-alloc.pmsrec");
	path_in(out, sizeof(out), "out.txt");
	path_in(errout, sizeof(errout), "err.txt");
	path_in(mine, sizeof(mine), "mine.txt");
	cr_assert_eq(recfile_create(path, false, &w, &err), 0, "%s", err.msg);
	alloc_meta(&meta, "malloc");
	meta.rate = 4096;
	strcpy(meta.allocator, "glibc");
	cr_assert_eq(recfile_write_meta(w, &meta), 0);
	for (int k = 0; k < 10; k++) {
		for (int ev_i = 0; ev_i < 8; ev_i++) {
			struct pms_event ev = alloc_event(k, ev_i);

			cr_assert_eq(
			    profile_add_event(p, &ev, PMS_EVENT_SIZE(ev.nframes), k + ev_i / 10.0),
			    0);
		}
		/* half of what was allocated two seconds ago is freed */
		for (int ev_i = 0; k >= 2 && ev_i < 8; ev_i += 2) {
			struct pms_event ev = alloc_event(k - 2, ev_i);

			ev.kind = PMS_EV_FREE;
			cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), k + 0.85), 0);
		}
		counters[PMS_CNT_ALLOC_CALLS] += 800;
		counters[PMS_CNT_ALLOC_SAMPLES] += 8;
		counters[PMS_CNT_FREES_MATCHED] += k >= 2 ? 4 : 0;
		counters[PMS_CNT_NESTED] += 1;
		cr_assert_eq(recfile_tick(w, p, k + 1.05, 1 << 26, counters), 0);
	}
	/* as the recorder ends: a last tick, the oldest live allocations, the END */
	cr_assert_eq(recfile_tick(w, p, 10.5, 1 << 26, counters), 0);
	cr_assert_eq(recfile_write_oldest(w, p), 0);
	e.duration = 10.5;
	cr_assert_eq(recfile_write_end(w, &e), 0);
	cr_assert_eq(recfile_close(w), 0);

	cr_assert_eq(recfile_read(path, &c, &err), 0, "%s", err.msg);
	check_same(p, c.profile);
	cr_assert_eq(profile_totals(c.profile)->allocs_untracked, 1);
	cr_assert_eq(profile_totals(c.profile)->allocs_untracked,
		     profile_totals(p)->allocs_untracked);
	src = profile_sites(p, &n);
	cr_assert_eq(n, 4);
	for (size_t i = 0; i < n; i++) {
		const struct profile_site *s = site_named(c.profile, src[i]->function);

		cr_assert_not_null(s);
		cr_assert(close_to(s->allocs, src[i]->allocs), "%s", s->function);
		cr_assert(close_to(s->frees, src[i]->frees));
		cr_assert(close_to(s->var_grown, src[i]->var_grown));
		cr_assert(close_to(s->var_live, src[i]->var_live));
		cr_assert_eq(s->live_samples, src[i]->live_samples);
		cr_assert_gt(s->live_samples, 0);
		check_oldest(c.profile, s, p, src[i]);
	}
	cr_assert_eq(c.oldest_sites, 4);
	recfile_contents_free(&c);

	/* the recorder's report, with what it knew (as record.c fills report_meta) */
	py.build = PY_BUILD_DEBUG;
	py.evidence = "the recording";
	rm.pid = 4242;
	rm.comm = "python3.11";
	rm.python = &py;
	rm.source = PMS_SOURCE_MALLOC;
	rm.duration = e.duration;
	rm.rss_start = 50000000;
	rm.rss_end = e.rss_end;
	memcpy(rm.counters, counters, sizeof(counters));
	rm.budget_per_sec = 2000;
	rm.rate = 4096;
	strcpy(rm.allocator, "glibc");
	rm.coverage = 0.875;
	rm.max_depth = 128;
	rm.profiler_cpu = e.profiler_cpu;
	rm.profiler_max_rss = e.profiler_max_rss;
	rm.bpf_map_bytes = e.bpf_map_bytes;
	rm.profile_bytes = e.profile_bytes;
	rm.ended_by = pms_end_parse(e.ended_by);
	rm.top = 10;
	rm.command = "report";
	f = fopen(mine, "w");
	report_text(f, p, &rm);
	fclose(f);
	cr_assert_eq(run_report(argv, 2, out, errout), 0);
	text = text_of(out);
	want = text_of(mine);
	cr_assert(strstr(want, "Top sites by live bytes"), "%s", want);
	cr_assert(strstr(want, "oldest:"), "%s", want);
	cr_assert(strstr(want, "Coverage: the probed functions see about 88%"), "%s", want);
	cr_assert_str_eq(text, want);
	free(text);
	free(want);

	f = fopen(mine, "w");
	cr_assert_eq(report_json(f, p, &rm), 0);
	fclose(f);
	cr_assert_eq(run_report(argvj, 3, out, errout), 0);
	text = text_of(out);
	want = text_of(mine);
	/* the file's document is the recorder's with "truncated" and "recording" added */
	*strrchr(want, '}') = '\0';
	while (strlen(want) && strchr(" \n", want[strlen(want) - 1]))
		want[strlen(want) - 1] = '\0';
	cr_assert(strstr(want, "\"allocated_at\": "), "%s", want);
	cr_assert(strstr(want, "\"allocator\": \"glibc\""), "%s", want);
	{
		size_t at = 0;

		while (want[at] && text[at] == want[at])
			at++;
		cr_assert_eq(want[at], '\0', "differs at %zu: ...%.200s\n---\n...%.200s", at,
			     text + (at > 100 ? at - 100 : 0), want + (at > 100 ? at - 100 : 0));
	}
	cr_assert(strstr(text + strlen(want), "\"truncated\": false"));
	free(text);
	free(want);
	profile_free(p);
}

/* --diff of two allocator recordings compares live bytes; a growth recording and an allocator
 * one are not compared. */
Test(recfile, diff_of_allocator_recordings, .init = make_dir, .fini = remove_dir)
{
	static struct amodel m;
	char a[128], b[128], g[128], out[128], errout[128];
	char *argv[] = {"report", "--diff", a, b, NULL};
	char *argvj[] = {"report", "--diff", a, b, "--json", NULL};
	char *mixed[] = {"report", "--diff", g, b, NULL};
	char *text;

	path_in(a, sizeof(a), "a.pmsrec");
	path_in(b, sizeof(b), "b.pmsrec");
	path_in(g, sizeof(g), "g.pmsrec");
	path_in(out, sizeof(out), "out.txt");
	path_in(errout, sizeof(errout), "err.txt");
	profile_free(write_alloc_model(a, &m, 3, true, true));
	profile_free(write_alloc_model(b, &m, 9, true, true));
	write_two_sites(g, 4096, 4096, false);

	cr_assert_eq(run_report(argv, 4, out, errout), 0);
	text = text_of(out);
	cr_assert(strstr(text, "Sites whose live bytes changed most"), "%s", text);
	cr_assert(strstr(text, "alloc_4 (/srv/heap.py:14)"), "%s", text);
	free(text);
	cr_assert_eq(run_report(argvj, 5, out, errout), 0);
	text = text_of(out);
	cr_assert(strstr(text, "\"measure\": \"live_bytes\""), "%s", text);
	free(text);

	cr_assert_eq(run_report(mixed, 4, out, errout), 2);
	text = text_of(errout);
	cr_assert(strstr(text, "records 'growth' events and"), "%s", text);
	cr_assert(strstr(text, "same --events"), "%s", text);
	free(text);
}
