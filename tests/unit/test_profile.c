#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "profile.h"
#include "pytarget.h"

static pid_t child;
static struct pytarget *target;

/* A real interpreter to symbolize against (the events themselves are synthesized). */
static void start(void)
{
	const char *exe = "/usr/bin/python3.11";
	struct pms_error err = {{0}};
	int fds[2];
	char buf[6];

	if (access(exe, X_OK) != 0)
		cr_skip_test("%s is not installed", exe);
	cr_assert_eq(pipe(fds), 0);
	child = fork();
	if (child == 0) {
		dup2(fds[1], 1);
		execl(exe, exe, "-c",
		      "import sys,time; sys.stdout.write('ready\\n'); sys.stdout.flush(); "
		      "time.sleep(60)",
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	ssize_t got = read(fds[0], buf, sizeof(buf));

	cr_assert_eq(got, 6, "read %zd (errno %d)", got, errno);
	close(fds[0]);
	cr_assert_eq(pytarget_open(child, &target, &err), 0, "%s", err.msg);
}

static void stop(void)
{
	pytarget_close(target);
	target = NULL;
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
}

static struct pms_event growth(uint32_t tid, uint64_t addr, int64_t bytes, uint8_t flags)
{
	struct pms_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = PMS_EV_GROWTH;
	ev.tid = tid;
	ev.addr = addr;
	ev.bytes = bytes;
	ev.flags = flags;
	return ev;
}

Test(profile, growth_without_python_and_release_by_address, .init = start, .fini = stop)
{
	struct profile *p = profile_new(target);
	struct pms_event ev = growth(7, 0x10000, 8192, PMS_EVF_NO_TSTATE);
	struct pms_event rel;
	const struct profile_site *const *sites;
	size_t n;

	cr_assert_not_null(p);
	cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), 0.5), 0);
	ev = growth(7, 0x20000, 4096, PMS_EVF_NO_TSTATE);
	cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), 1.5), 0);
	memset(&rel, 0, sizeof(rel));
	rel.kind = PMS_EV_RELEASE;
	rel.addr = 0x10000;
	rel.len = 0x2000;
	cr_assert_eq(profile_add_event(p, &rel, PMS_EVENT_SIZE(0), 2.5), 0);

	sites = profile_sites(p, &n);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(sites[0]->function, "<no python thread>");
	cr_assert_eq(sites[0]->grown, 12288);
	cr_assert_eq(sites[0]->released, 8192);
	cr_assert_eq(sites[0]->nseries, 3);
	cr_assert_eq(sites[0]->series[0], 8192);
	cr_assert_eq(sites[0]->series[1], 4096);
	cr_assert_eq(sites[0]->series[2], -8192);
	cr_assert_eq(profile_totals(p)->grown, 12288);
	cr_assert_eq(profile_totals(p)->released, 8192);
	profile_free(p);
}

/* survivors' pool growth that no survivor took: its own pseudo-site, whatever stack touched it
 * first (under churn that stack is the churn's) */
Test(profile, growth_no_survivor_took_goes_to_its_pseudo_site, .init = start, .fini = stop)
{
	struct profile *p = profile_new(target);
	struct pms_event ev = growth(7, 0x40000, 16384, PMS_EVF_NO_SURVIVOR);
	const struct profile_site *const *sites;
	size_t n;

	cr_assert_not_null(p);
	ev.stack_id = 0x1234; /* the first toucher's, not charged */
	cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), 0.5), 0);
	sites = profile_sites(p, &n);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(sites[0]->function, "<pymalloc, no survivor>");
	cr_assert_eq(sites[0]->grown, 16384);
	profile_free(p);
}

Test(profile, stacks_are_symbolized_once_and_lost_ones_counted, .init = start, .fini = stop)
{
	struct profile *p = profile_new(target);
	struct pms_event ev = growth(9, 0x30000, 4096, PMS_EVF_STACK_INLINE);
	const struct profile_site *const *sites;
	const struct profile_thread *threads;
	size_t n;

	/* a code object address that is not one: symbolized as unknown, never a crash */
	ev.stack_id = 42;
	ev.nframes = 2;
	ev.frames[0].code = 0x10;
	ev.frames[1].code = 0xdeadbeef000;
	cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(2), 0.1), 0);
	/* the same stack again, by id only */
	ev.flags = 0;
	ev.nframes = 0;
	cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), 0.2), 0);
	/* a stack id we never received */
	ev.stack_id = 43;
	cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), 0.3), 0);
	/* a truncated event claiming more frames than it carries is not trusted */
	ev.stack_id = 44;
	ev.flags = PMS_EVF_STACK_INLINE;
	ev.nframes = 100;
	cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(1), 0.4), 0);

	sites = profile_sites(p, &n);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(sites[0]->function, "<unknown code>");
	cr_assert_eq(sites[0]->grown, 8192);
	cr_assert_eq(sites[0]->stack_len, 2);
	cr_assert_str_eq(sites[1]->function, "<stack lost>");
	cr_assert_eq(profile_totals(p)->stacks_lost, 2);
	threads = profile_threads(p, &n);
	cr_assert_eq(n, 1);
	cr_assert_eq(threads[0].tid, 9);
	cr_assert_eq(threads[0].bytes, 16384);
	profile_free(p);
}

Test(profile, long_recordings_keep_bounded_series, .init = start, .fini = stop)
{
	struct profile *p = profile_new(target);
	const struct profile_site *const *sites;
	size_t n;
	int64_t total = 0;

	for (int s = 0; s < 5000; s++) {
		struct pms_event ev = growth(1, 0, 4096, PMS_EVF_NO_TSTATE | PMS_EVF_NO_FAULT);

		cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), (double)s), 0);
	}
	sites = profile_sites(p, &n);
	cr_assert_leq(sites[0]->nseries, 1024);
	cr_assert_geq(profile_bucket_seconds(p), 5.0);
	for (size_t i = 0; i < sites[0]->nseries; i++)
		total += sites[0]->series[i];
	cr_assert_eq(total, 5000 * 4096, "no byte is lost when buckets widen");
	profile_free(p);
}

Test(profile, series_reach_the_end_of_the_recording, .init = start, .fini = stop)
{
	struct profile *p = profile_new(target);
	const struct profile_site *const *sites;
	size_t n;

	/* grows for 6 s, then nothing until 30 s: the flat tail must be part of the series */
	for (int s = 0; s < 6; s++) {
		struct pms_event ev = growth(1, 0, 1 << 20, PMS_EVF_NO_TSTATE | PMS_EVF_NO_FAULT);

		cr_assert_eq(profile_add_event(p, &ev, PMS_EVENT_SIZE(0), s + 0.5), 0);
	}
	profile_extend_to(p, 30.0);
	sites = profile_sites(p, &n);
	cr_assert_eq(n, 1);
	cr_assert_eq(sites[0]->nseries, 30);
	cr_assert_eq(sites[0]->series[29], 0);
	profile_free(p);
}
