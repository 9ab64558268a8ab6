#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "json.h"
#include "leaks.h"

#define REPORT_MAX_CANDIDATES 10
#define REPORT_STACK_LINES    8

struct candidate {
	const struct profile_site *site;
	struct leak_verdict v;
};

void report_format_bytes(double bytes, char *out, size_t outlen)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = fabs(bytes);
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(out, outlen, "%s%.*f %s", bytes < 0 ? "-" : "", u ? 1 : 0, v, units[u]);
}

/* The sites that look like leaks, best first: the `max` best by score of all of them. */
static size_t find_candidates(struct profile *p, double duration, struct candidate *out, size_t max)
{
	const struct profile_site *const *sites;
	struct leak_rank best[REPORT_MAX_CANDIDATES];
	size_t n, k = 0;

	if (max > REPORT_MAX_CANDIDATES)
		max = REPORT_MAX_CANDIDATES;
	sites = profile_sites(p, &n);
	for (size_t i = 0; i < n && sites; i++) {
		const struct profile_site *s = sites[i];
		struct leak_series ls = {
		    .bytes = s->series,
		    .n = s->nseries,
		    .bucket_seconds = profile_bucket_seconds(p),
		    .duration = duration,
		    .step_bytes = leaks_step_bytes((double)s->grown, s->samples),
		};
		struct leak_verdict v;

		leaks_judge_ex(&ls, &v);
		if (v.candidate)
			leaks_rank(best, &k, max, i, &v);
	}
	for (size_t r = 0; r < k; r++)
		out[r] = (struct candidate){.site = sites[best[r].index], .v = best[r].v};
	return k;
}

double report_top_confidence(struct profile *p, double duration)
{
	struct candidate cands[REPORT_MAX_CANDIDATES];
	size_t n;

	profile_extend_to(p, duration);
	n = find_candidates(p, duration, cands, REPORT_MAX_CANDIDATES);
	return n ? cands[0].v.confidence : 0;
}

static int64_t net(const struct profile_site *s)
{
	return s->grown - s->released;
}

static double site_rate(const struct profile_site *s, double duration)
{
	return duration > 0 ? (double)net(s) / duration : 0;
}

static void print_stack(FILE *out, const struct profile_site *s)
{
	for (size_t f = 0; f < s->stack_len && f < REPORT_STACK_LINES; f++)
		fprintf(out, "        %s %s (%s:%d)\n", f ? "<-" : "at", s->stack[f].function,
			s->stack[f].file, s->stack[f].line);
	if (s->stack_len > REPORT_STACK_LINES)
		fprintf(out, "        ... %zu more frames\n", s->stack_len - REPORT_STACK_LINES);
}

static bool allocator_source(const struct report_meta *m)
{
	return pms_source_is_allocator(m->source);
}

static const char *ended_text(const struct report_meta *m)
{
	return m->no_end_record ? "unknown (the file has no end record)"
				: pms_end_name(m->ended_by);
}

/* Half-width of the 95% interval of an estimate whose variance is var. */
static double error95(double var)
{
	return var > 0 ? 1.96 * sqrt(var) : 0;
}

#define REPORT_OLDEST 3

/* Frees that do not reach the probes make live bytes meaningless: a build that copied its
 * allocator's fast paths into the callers (coverage unknown: Debian's python3.11 with pymalloc,
 * whose free function is never called at all), or no free seen in a recording that allocated. */
static bool frees_unseen(const struct report_meta *m)
{
	return allocator_source(m) && (m->coverage < 0 || (m->counters[PMS_CNT_ALLOC_CALLS] > 0 &&
							   m->counters[PMS_CNT_FREE_CALLS] == 0));
}

static size_t judged_candidates(struct profile *p, const struct report_meta *m,
				struct candidate *out, size_t max)
{
	return frees_unseen(m) ? 0 : find_candidates(p, m->duration, out, max);
}

/* The counters each source's text report lists, in its order. */
static const enum pms_counter growth_counters[] = {
    PMS_CNT_RSS_EVENTS, PMS_CNT_FAULTS,	   PMS_CNT_RELEASES,	 PMS_CNT_READ_ERRORS,
    PMS_CNT_NO_TSTATE,	PMS_CNT_TRUNCATED, PMS_CNT_RINGBUF_FULL,
};
static const enum pms_counter alloc_counters[] = {
    PMS_CNT_ALLOC_CALLS, PMS_CNT_FREE_CALLS,   PMS_CNT_ALLOC_SAMPLES, PMS_CNT_FREES_MATCHED,
    PMS_CNT_NESTED,	 PMS_CNT_LIVE_FULL,    PMS_CNT_READ_ERRORS,   PMS_CNT_NO_TSTATE,
    PMS_CNT_TRUNCATED,	 PMS_CNT_RINGBUF_FULL,
};

static void print_counters(FILE *out, const struct report_meta *m, const enum pms_counter *which,
			   size_t n, const struct profile_totals *t)
{
	fprintf(out, "Counters: ");
	counter_print_list(out, m->counters, which, n);
	fprintf(out, ", stacks lost %llu\n", (unsigned long long)t->stacks_lost);
}

static void print_survivors_summary(FILE *out, const struct report_meta *m)
{
	char held[32], fallback[32];

	report_format_bytes((double)m->counters[PMS_CNT_SURV_HELD], held, sizeof(held));
	report_format_bytes((double)m->counters[PMS_CNT_SURV_FALLBACK], fallback, sizeof(fallback));
	fprintf(out,
		"Survivors: %llu sampled small objects followed (%llu watch arms, %llu thrown "
		"away), %llu survived 1 s, %llu died; %s of growth in pymalloc's pools split among "
		"the survivors' stacks, %s of it to <pymalloc, no survivor> (none yet); "
		"watchpoints on %llu threads (%llu could not be watched), %llu traps\n",
		(unsigned long long)m->counters[PMS_CNT_SURV_FOLLOWED],
		(unsigned long long)m->counters[PMS_CNT_SURV_ARMS],
		(unsigned long long)m->counters[PMS_CNT_SURV_LOST],
		(unsigned long long)m->counters[PMS_CNT_SURV_SURVIVED],
		(unsigned long long)m->counters[PMS_CNT_SURV_DIED], held, fallback,
		(unsigned long long)m->counters[PMS_CNT_SURV_THREADS],
		(unsigned long long)m->counters[PMS_CNT_SURV_UNWATCHED],
		(unsigned long long)m->counters[PMS_CNT_WATCH_TRAPS]);
	if (m->counters[PMS_CNT_SURV_HELD] && !m->counters[PMS_CNT_SURV_SURVIVED])
		fprintf(
		    out,
		    "Warning: no sampled small object survived: growth in pymalloc's pools went "
		    "to the pseudo-site <pymalloc, no survivor>; record longer to learn whose "
		    "objects hold it\n");
}

static void print_alloc_summary(FILE *out, struct profile *p, const struct report_meta *m,
				const struct profile_site *const *sites, size_t n)
{
	double var_live = 0, var_grown = 0, allocs = 0, frees = 0;
	int64_t grown = 0, released = 0;
	char a[32], ae[32], b[32], c[32], d[32], r[32];

	for (size_t i = 0; i < n; i++) {
		grown += sites[i]->grown;
		released += sites[i]->released;
		var_grown += sites[i]->var_grown;
		var_live += sites[i]->var_live;
		allocs += sites[i]->allocs;
		frees += sites[i]->frees;
	}
	report_format_bytes((double)grown, a, sizeof(a));
	report_format_bytes(error95(var_grown), ae, sizeof(ae));
	report_format_bytes((double)released, b, sizeof(b));
	report_format_bytes((double)(grown - released), c, sizeof(c));
	report_format_bytes(error95(var_live), d, sizeof(d));
	report_format_bytes((double)m->rate, r, sizeof(r));
	fprintf(out,
		"Allocated: %s (+/- %s) in %.0f allocations, %s freed in %.0f, %s live at the "
		"end (+/- %s); all estimates\n",
		a, ae, allocs, b, frees, c, d);
	fprintf(out,
		"Sampling: %s (%s): %llu of %llu allocation calls sampled, each allocation of s "
		"bytes with chance 1-exp(-s/%s) and counted 1/chance times; +/- is a 95%% "
		"interval\n",
		m->allocator[0] ? m->allocator : "allocator", pms_source_name(m->source),
		(unsigned long long)m->counters[PMS_CNT_ALLOC_SAMPLES],
		(unsigned long long)m->counters[PMS_CNT_ALLOC_CALLS], r);
	if (m->coverage >= 0 && m->coverage < 0.999)
		fprintf(out,
			"Coverage: the probed functions see about %.0f%% of this interpreter's "
			"allocations (its fast path is inlined into callers): scale accordingly\n",
			100 * m->coverage);
	else if (m->coverage < 0)
		fprintf(out, "Coverage: unknown; this build may serve some allocations without "
			     "calling the probed functions\n");
	print_counters(out, m, alloc_counters, sizeof(alloc_counters) / sizeof(alloc_counters[0]),
		       profile_totals(p));
	if (m->has_overhead) {
		const struct overhead *o = &m->overhead;

		fprintf(out,
			"Overhead: up to %.2f us of traps a call here (timed at start); the target "
			"made %.0f probed calls/s, about %.1f%% of a thread (peak %.1f%%)%s\n",
			o->trap_ns / 1e3, o->calls_per_sec, o->predicted_pct, o->peak_pct,
			o->max_pct > 0 ? "" : "; --max-overhead PCT bounds it");
		if (o->stopped_at >= 0)
			fprintf(
			    out,
			    "Warning: the probes were stopped after %.1f s, above --max-overhead "
			    "%g%%: what follows covers those %.1f s only\n",
			    o->stopped_at, o->max_pct, o->stopped_at);
	}
	if (frees_unseen(m))
		fprintf(out,
			"Warning: frees do not all reach the probes on this build (it copied the "
			"allocator's fast paths into its callers, or no free was seen): live bytes "
			"are not to be trusted, and leaks are not judged; use --events malloc or "
			"growth here\n");
	if (m->counters[PMS_CNT_LIVE_FULL])
		fprintf(out,
			"Warning: the kernel's map of sampled allocations was full %llu times: "
			"those allocations count as allocated but not as live\n",
			(unsigned long long)m->counters[PMS_CNT_LIVE_FULL]);
}

static void print_alloc_sites(FILE *out, struct profile *p, const struct report_meta *m,
			      const struct profile_site *const *sites, size_t nsites)
{
	char a[32], b[32], c[32], d[32];
	size_t shown = 0;

	fprintf(out, "\nTop sites by live bytes\n");
	fprintf(out, "  %-3s %10s %11s %11s %11s %9s %8s  %s\n", "#", "LIVE", "+/-", "ALLOCATED",
		"FREED", "ALLOCS", "SAMPLES", "FUNCTION (FILE:LINE)");
	for (size_t i = 0; i < nsites && shown < m->top; i++) {
		const struct profile_site *s = sites[i];
		struct profile_live oldest[REPORT_OLDEST];
		size_t nold;

		if (net(s) <= 0)
			continue;
		shown++;
		report_format_bytes((double)net(s), a, sizeof(a));
		report_format_bytes(error95(s->var_live), b, sizeof(b));
		report_format_bytes((double)s->grown, c, sizeof(c));
		report_format_bytes((double)s->released, d, sizeof(d));
		fprintf(out, "  %-3zu %10s %11s %11s %11s %9.0f %8llu  %s (%s:%d)\n", shown, a, b,
			c, d, s->allocs, (unsigned long long)s->samples, s->function, s->file,
			s->line);
		print_stack(out, s);
		nold = profile_oldest_live(p, s, oldest, REPORT_OLDEST);
		for (size_t k = 0; k < nold; k++) {
			report_format_bytes((double)oldest[k].size, a, sizeof(a));
			fprintf(out, "        %s %s allocated at %.1f s (%.1f s old), thread %u\n",
				k ? "      " : "oldest:", a, oldest[k].at,
				m->duration - oldest[k].at, oldest[k].tid);
		}
	}
	if (shown == 0)
		fprintf(out, "  (no sampled allocation was still alive at the end)\n");
}

void report_text(FILE *out, struct profile *p, const struct report_meta *m)
{
	const struct profile_totals *t = profile_totals(p);
	struct candidate cands[REPORT_MAX_CANDIDATES];
	const struct profile_site *const *sites;
	size_t nsites, ncands, shown = 0;
	char a[32], b[32], c[32], d[40];
	int64_t positive = 0;

	profile_extend_to(p, m->duration);
	ncands = judged_candidates(p, m, cands, REPORT_MAX_CANDIDATES);
	sites = profile_sites(p, &nsites);
	for (size_t i = 0; i < nsites; i++)
		if (net(sites[i]) > 0)
			positive += net(sites[i]);

	fprintf(out, "pymemspy %s: pid %d (%s), Python %s (%s build)\n",
		m->command ? m->command : "record", m->pid, m->comm, m->python->text,
		pylayout_build_name(m->python->build));
	report_format_bytes((double)m->rss_start, a, sizeof(a));
	report_format_bytes((double)m->rss_end, b, sizeof(b));
	report_format_bytes((double)m->rss_end - (double)m->rss_start, c, sizeof(c));
	fprintf(out, "Recorded %.1f s (ended by %s), events: %s\n", m->duration, ended_text(m),
		pms_source_name(m->source));
	if (m->rss_end)
		fprintf(out, "Target RSS: %s -> %s (%s)\n", a, b, c);
	if (allocator_source(m)) {
		print_alloc_summary(out, p, m, sites, nsites);
		goto candidates;
	}
	report_format_bytes((double)t->grown, a, sizeof(a));
	report_format_bytes((double)t->released, b, sizeof(b));
	report_format_bytes((double)t->shrunk, c, sizeof(c));
	fprintf(out,
		"Charged: %s grown in %llu samples, %s of it released since; RSS decreases %s\n", a,
		(unsigned long long)m->counters[PMS_CNT_SAMPLES], b, c);
	if (m->counters[PMS_CNT_BUDGET_SKIPPED])
		fprintf(
		    out,
		    "Sampling: growth came faster than the budget (%u stack walks/s): %llu of %llu "
		    "growth events were sampled, each weighted by the inverse of its chance, so "
		    "the figures are estimates%s\n",
		    m->budget_per_sec, (unsigned long long)m->counters[PMS_CNT_SAMPLES],
		    (unsigned long long)m->counters[PMS_CNT_GROWTH],
		    m->counters[PMS_CNT_BUDGET_OVERFLOW] ? " (and bursts beyond it were dropped)"
							 : "");
	print_counters(out, m, growth_counters,
		       sizeof(growth_counters) / sizeof(growth_counters[0]), t);
	if (m->source == PMS_SOURCE_SURVIVORS)
		print_survivors_summary(out, m);

candidates:
	fprintf(out, "\nLeak candidates\n");
	if (frees_unseen(m)) {
		fprintf(out, "  Not judged: frees are not seen on this build (see above).\n");
	} else if (ncands == 0) {
		report_format_bytes(leaks_min_rate(m->duration), a, sizeof(a));
		fprintf(out,
			"  Nothing looks like a leak after %.1f s of watching (the smallest rate "
			"that could have been seen: %s/s).\n",
			m->duration, a);
	}
	for (size_t i = 0; i < ncands; i++) {
		const struct profile_site *s = cands[i].site;

		report_format_bytes(cands[i].v.rate, a, sizeof(a));
		report_format_bytes(cands[i].v.rate * 3600, b, sizeof(b));
		report_format_bytes((double)net(s), c, sizeof(c));
		fprintf(out, "  %zu. %s (%s:%d)\n", i + 1, s->function, s->file, s->line);
		fprintf(out,
			"     %s/s (%s per hour), confidence %.2f, first seen at %.1f s, %s so "
			"far\n",
			a, b, cands[i].v.confidence, s->first_seen, c);
		if (allocator_source(m)) {
			struct profile_live oldest;

			if (profile_oldest_live(p, s, &oldest, 1))
				fprintf(out,
					"     %llu sampled allocations still alive, the oldest "
					"from %.1f s (%.1f s old)\n",
					(unsigned long long)s->live_samples, oldest.at,
					m->duration - oldest.at);
		}
		print_stack(out, s);
	}

	if (allocator_source(m)) {
		print_alloc_sites(out, p, m, sites, nsites);
		return;
	}
	fprintf(out, "\nTop sites by resident growth\n");
	fprintf(out, "  %-3s %10s %6s %11s %8s  %s\n", "#", "RESIDENT", "SHARE", "RATE", "SAMPLES",
		"FUNCTION (FILE:LINE)");
	for (size_t i = 0; i < nsites && shown < m->top; i++) {
		const struct profile_site *s = sites[i];

		if (net(s) <= 0)
			continue;
		shown++;
		report_format_bytes((double)net(s), a, sizeof(a));
		report_format_bytes(site_rate(s, m->duration), b, sizeof(b));
		snprintf(d, sizeof(d), "%s/s", b);
		fprintf(out, "  %-3zu %10s %5.1f%% %11s %8llu  %s (%s:%d)\n", shown, a,
			positive ? 100.0 * (double)net(s) / (double)positive : 0.0, d,
			(unsigned long long)s->samples, s->function, s->file, s->line);
		print_stack(out, s);
	}
	if (shown == 0)
		fprintf(out, "  (no resident growth was charged to any site)\n");
}

void report_json_stack(struct json *j, const struct profile_frame *frames, size_t n)
{
	json_key(j, "stack");
	json_array_begin(j);
	for (size_t f = 0; f < n; f++) {
		json_object_begin(j);
		json_kv_string(j, "function", frames[f].function);
		json_kv_string(j, "file", frames[f].file);
		json_kv_int(j, "line", frames[f].line);
		json_object_end(j);
	}
	json_array_end(j);
}

#define REPORT_JSON_STACKS 50

/* "overhead": what the uprobes were predicted to cost the target, and whether they stopped. */
static void json_overhead(struct json *j, const struct overhead *o)
{
	json_key(j, "overhead");
	json_object_begin(j);
	json_kv_double(j, "trap_ns", o->trap_ns);
	json_kv_double(j, "return_trap_ns", o->return_trap_ns);
	json_kv_double(j, "calls_per_sec", o->calls_per_sec);
	json_kv_double(j, "predicted_pct", o->predicted_pct);
	json_kv_double(j, "peak_pct", o->peak_pct);
	json_key(j, "max_pct");
	if (o->max_pct > 0)
		json_double(j, o->max_pct);
	else
		json_null(j);
	json_key(j, "stopped_at");
	if (o->stopped_at >= 0)
		json_double(j, o->stopped_at);
	else
		json_null(j);
	json_object_end(j);
}

/* The allocator sources' view per whole stack: what each allocated, freed and still holds. */
static void json_alloc_stacks(struct json *j, const struct profile *p)
{
	struct profile_stack st[REPORT_JSON_STACKS];
	size_t n = profile_stacks(p, st, REPORT_JSON_STACKS);

	json_key(j, "stacks");
	json_array_begin(j);
	for (size_t i = 0; i < n; i++) {
		json_object_begin(j);
		json_kv_int(j, "allocated", st[i].grown);
		json_kv_int(j, "freed", st[i].released);
		json_kv_int(j, "live", st[i].grown - st[i].released);
		json_kv_uint(j, "samples", st[i].samples);
		report_json_stack(j, st[i].frames, st[i].nframes);
		json_object_end(j);
	}
	json_array_end(j);
}

/* The allocator sources' figures of a site: estimates, their 95% error, the oldest survivors. */
static void json_alloc_site(struct json *j, const struct profile *p, const struct profile_site *s,
			    const struct report_meta *m)
{
	struct profile_live oldest[REPORT_OLDEST];
	size_t n = profile_oldest_live(p, s, oldest, REPORT_OLDEST);

	json_kv_int(j, "allocated", s->grown);
	json_kv_int(j, "freed", s->released);
	json_kv_int(j, "live", net(s));
	json_kv_double(j, "allocated_error", error95(s->var_grown));
	json_kv_double(j, "live_error", error95(s->var_live));
	json_kv_double(j, "allocated_count", s->allocs);
	json_kv_double(j, "freed_count", s->frees);
	/* the difference of two float sums: exactly 0 when no sample is left, never below */
	json_kv_double(j, "live_count", s->live_samples ? fmax(0, s->allocs - s->frees) : 0);
	json_kv_uint(j, "live_samples", s->live_samples);
	json_key(j, "oldest_live");
	json_array_begin(j);
	for (size_t k = 0; k < n; k++) {
		json_object_begin(j);
		json_kv_double(j, "allocated_at", oldest[k].at);
		json_kv_double(j, "age", m->duration - oldest[k].at);
		json_kv_uint(j, "size", oldest[k].size);
		json_kv_uint(j, "tid", oldest[k].tid);
		json_object_end(j);
	}
	json_array_end(j);
}

int report_json(FILE *out, struct profile *p, const struct report_meta *m)
{
	const struct profile_totals *t = profile_totals(p);
	struct candidate cands[REPORT_MAX_CANDIDATES];
	const struct profile_site *const *sites;
	const struct profile_thread *threads;
	size_t nsites, ncands, nthreads;
	struct json *j = json_new(out, true);

	if (!j)
		return -ENOMEM;
	profile_extend_to(p, m->duration);
	ncands = judged_candidates(p, m, cands, REPORT_MAX_CANDIDATES);
	sites = profile_sites(p, &nsites);
	threads = profile_threads(p, &nthreads);

	json_object_begin(j);
	json_kv_string(j, "schema", "pymemspy.report/1");
	json_kv_int(j, "pid", m->pid);
	json_key(j, "python");
	json_object_begin(j);
	json_kv_string(j, "version", m->python->text);
	json_kv_string(j, "build", pylayout_build_name(m->python->build));
	json_object_end(j);
	json_kv_string(j, "events", pms_source_name(m->source));
	json_kv_double(j, "duration", m->duration);
	json_kv_string(j, "ended_by", ended_text(m));

	json_key(j, "leak_candidates");
	json_array_begin(j);
	for (size_t i = 0; i < ncands; i++) {
		const struct profile_site *s = cands[i].site;

		json_object_begin(j);
		json_kv_string(j, "function", s->function);
		json_kv_string(j, "file", s->file);
		json_kv_int(j, "line", s->line);
		json_kv_double(j, "rate", cands[i].v.rate);
		json_kv_double(j, "rate_low", cands[i].v.rate_low);
		json_kv_double(j, "rate_high", cands[i].v.rate_high);
		json_kv_double(j, "confidence", cands[i].v.confidence);
		json_kv_double(j, "first_seen", s->first_seen);
		json_kv_int(j, "bytes", net(s));
		if (allocator_source(m)) {
			struct profile_live oldest;

			json_kv_uint(j, "live_samples", s->live_samples);
			json_key(j, "oldest_age");
			if (profile_oldest_live(p, s, &oldest, 1))
				json_double(j, m->duration - oldest.at);
			else
				json_null(j);
		}
		report_json_stack(j, s->stack, s->stack_len);
		json_object_end(j);
	}
	json_array_end(j);
	json_kv_double(j, "min_detectable_rate", leaks_min_rate(m->duration));
	json_kv_bool(j, "frees_seen", !frees_unseen(m));

	json_key(j, "sites");
	json_array_begin(j);
	for (size_t i = 0; i < nsites; i++) {
		const struct profile_site *s = sites[i];

		if (!s->grown && !s->released && !s->samples)
			continue; /* defined in a file cut before anything was charged to it */
		json_object_begin(j);
		json_kv_string(j, "function", s->function);
		json_kv_string(j, "file", s->file);
		json_kv_int(j, "line", s->line);
		json_kv_int(j, "bytes", net(s));
		json_kv_int(j, "grown", s->grown);
		json_kv_int(j, "released", s->released);
		json_kv_double(j, "rate", site_rate(s, m->duration));
		json_kv_uint(j, "samples", s->samples);
		json_kv_double(j, "first_seen", s->first_seen);
		if (allocator_source(m))
			json_alloc_site(j, p, s, m);
		report_json_stack(j, s->stack, s->stack_len);
		json_object_end(j);
	}
	json_array_end(j);

	if (allocator_source(m))
		json_alloc_stacks(j, p);

	json_key(j, "threads");
	json_array_begin(j);
	for (size_t i = 0; i < nthreads; i++) {
		json_object_begin(j);
		json_kv_uint(j, "tid", threads[i].tid);
		json_kv_int(j, "bytes", threads[i].bytes);
		json_object_end(j);
	}
	json_array_end(j);

	json_key(j, "target");
	json_object_begin(j);
	json_kv_uint(j, "rss_start", m->rss_start);
	/* unknown once the target has exited: null rather than a made-up number */
	json_key(j, "rss_end");
	if (m->rss_end)
		json_uint(j, m->rss_end);
	else
		json_null(j);
	json_key(j, "rss_growth");
	if (m->rss_end)
		json_int(j, (int64_t)m->rss_end - (int64_t)m->rss_start);
	else
		json_null(j);
	json_object_end(j);

	json_key(j, "sampling");
	json_object_begin(j);
	json_kv_uint(j, "budget_per_sec", m->budget_per_sec);
	json_kv_uint(j, "max_depth", m->max_depth);
	json_kv_bool(j, "budget_exceeded", m->counters[PMS_CNT_BUDGET_SKIPPED] > 0);
	if (allocator_source(m)) {
		json_kv_uint(j, "rate", m->rate);
		json_kv_string(j, "allocator", m->allocator);
		if (m->attach)
			json_kv_string(j, "attach", m->attach);
		json_key(j, "coverage");
		if (m->coverage >= 0)
			json_double(j, m->coverage);
		else
			json_null(j);
	}
	if (m->has_overhead)
		json_overhead(j, &m->overhead);
	json_object_end(j);

	json_key(j, "profiler");
	json_object_begin(j);
	json_kv_double(j, "cpu_seconds", m->profiler_cpu);
	json_kv_uint(j, "max_rss", m->profiler_max_rss);
	json_kv_uint(j, "bpf_map_bytes", m->bpf_map_bytes);
	json_kv_uint(j, "profile_bytes", m->profile_bytes);
	json_object_end(j);

	json_key(j, "counters");
	json_object_begin(j);
	json_kv_uint(j, "events", m->counters[PMS_CNT_RSS_EVENTS]);
	for (int c = 0; c < PMS_CNT_MAX; c++)
		json_kv_uint(j, counter_key((enum pms_counter)c), m->counters[c]);
	json_kv_uint(j, "allocs_untracked", t->allocs_untracked);
	json_kv_uint(j, "stacks_lost", t->stacks_lost);
	json_kv_uint(j, "pages_untracked", t->pages_untracked);
	json_kv_int(j, "grown", t->grown);
	json_kv_int(j, "released", t->released);
	json_kv_int(j, "shrunk", t->shrunk);
	json_object_end(j);
	json_object_end(j);
	json_free(j);
	return 0;
}
