/* The attach sequence record and top share (session.h). */
#include "session.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "clock.h"
#include "proc.h"

/* Set by SIGINT/SIGTERM: the one piece of global state, owned by the CLI entry. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct session {
	struct pytarget *target;
	struct profile *profile;
	struct sampler *sampler;
	struct sigaction old_int, old_term, old_pipe;
	bool signals_taken;
	uint64_t start_ns;
	uint64_t rss_start;
	int error; /* first error of the event path */
};

static int on_event(const struct pms_event *ev, size_t size, void *ctx)
{
	struct session *s = ctx;
	double at = ev->ts_ns > s->start_ns ? (double)(ev->ts_ns - s->start_ns) / 1e9 : 0;
	int ret = profile_add_event(s->profile, ev, size, at);

	if (ret && !s->error)
		s->error = ret;
	return 0;
}

int session_open(pid_t pid, struct session **out, struct pms_error *err)
{
	struct sigaction sa = {0};
	struct session *s;
	int ret;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	ret = pytarget_open(pid, &s->target, err);
	if (ret)
		goto fail;
	s->profile = profile_new(s->target);
	if (!s->profile) {
		ret = -ENOMEM;
		goto fail;
	}
	/* signals only set a flag: the command's loop detaches before anything else happens */
	stop_requested = 0;
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &s->old_int);
	sigaction(SIGTERM, &sa, &s->old_term);
	/* a reader that goes away (| head) gives EPIPE, not a death before we detach */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, &s->old_pipe);
	s->signals_taken = true;
	*out = s;
	return 0;
fail:
	session_close(s);
	return ret;
}

int session_require(struct session *s, struct sampler_opts *opts, struct pms_error *err)
{
	int ret = sampler_require(opts, err);

	(void)s;
	if (!ret)
		opts->host_checked =
		    true; /* attach without asking again: the target runs meanwhile */
	return ret;
}

int session_attach(struct session *s, const struct sampler_opts *opts, struct pms_error *err)
{
	int ret = sampler_open(s->target, opts, on_event, s, &s->sampler, err);

	if (ret)
		return ret;
	s->start_ns = clock_monotonic_ns();
	proc_rss(pytarget_proc(s->target), &s->rss_start);
	return 0;
}

double session_elapsed(const struct session *s)
{
	return (double)(clock_monotonic_ns() - s->start_ns) / 1e9;
}

int session_step(struct session *s, int poll_ms, double duration, enum pms_end *ended, char *note,
		 size_t len, struct pms_error *err)
{
	int n = sampler_poll(s->sampler, poll_ms);
	double elapsed;

	note[0] = '\0';
	if (n < 0 && n != -EINTR)
		return pms_error_set(err, -n, "reading the ring buffer: %s", strerror(-n));
	if (s->error)
		return pms_error_set(err, -s->error, "keeping the profile: %s",
				     strerror(-s->error));
	elapsed = session_elapsed(s);
	n = sampler_check(s->sampler, elapsed, note, len, err);
	if (n < 0)
		return n;
	if (n == 0)
		note[0] = '\0';
	if (stop_requested)
		*ended = PMS_END_SIGNAL;
	else if (!proc_alive(pytarget_proc(s->target)))
		*ended = PMS_END_TARGET_EXITED;
	else if (duration > 0 && elapsed >= duration)
		*ended = PMS_END_DURATION;
	else
		return 0;
	return 1;
}

int session_detach(struct session *s, struct pms_error *err)
{
	/* detach first, then take what is already in the ring buffer: from here on the counters
	 * no longer move, so a report and a file's last tick see the same ones */
	sampler_detach(s->sampler);
	while (sampler_poll(s->sampler, 0) > 0)
		;
	if (s->error)
		return pms_error_set(err, -s->error, "keeping the profile: %s",
				     strerror(-s->error));
	return 0;
}

void session_fill_meta(struct session *s, const struct sampler_opts *opts, struct report_meta *m)
{
	const struct alloc_probes *probes = sampler_probes(s->sampler);
	struct rusage ru;

	sampler_counters(s->sampler, m->counters);
	if (sampler_overhead(s->sampler)) {
		m->overhead = *sampler_overhead(s->sampler);
		m->has_overhead = true;
	}
	m->bpf_map_bytes = sampler_map_bytes(s->sampler);
	if (probes) {
		snprintf(m->allocator, sizeof(m->allocator), "%s", probes->allocator);
		m->coverage = probes->coverage;
		m->attach = sampler_attach_name(s->sampler);
	}
	m->pid = proc_pid(pytarget_proc(s->target));
	m->comm = proc_comm(pytarget_proc(s->target));
	m->python = pytarget_version(s->target);
	m->source = opts->source;
	m->budget_per_sec = opts->budget_per_sec;
	m->rate = pms_source_is_allocator(opts->source) ? opts->rate : 0;
	m->max_depth = opts->max_depth;
	m->rss_start = s->rss_start;
	m->profile_bytes = profile_memory(s->profile);
	getrusage(RUSAGE_SELF, &ru);
	m->profiler_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	m->profiler_max_rss = (uint64_t)ru.ru_maxrss * 1024;
}

struct pytarget *session_target(struct session *s)
{
	return s->target;
}

struct profile *session_profile(struct session *s)
{
	return s->profile;
}

struct sampler *session_sampler(struct session *s)
{
	return s->sampler;
}

uint64_t session_start_ns(const struct session *s)
{
	return s->start_ns;
}

uint64_t session_rss_start(const struct session *s)
{
	return s->rss_start;
}

void session_close(struct session *s)
{
	if (!s)
		return;
	sampler_close(s->sampler);
	if (s->signals_taken) {
		sigaction(SIGINT, &s->old_int, NULL);
		sigaction(SIGTERM, &s->old_term, NULL);
		sigaction(SIGPIPE, &s->old_pipe, NULL);
	}
	profile_free(s->profile);
	pytarget_close(s->target);
	free(s);
}
