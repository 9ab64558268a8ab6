#include "ptracelock.h"

#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>

#define LOCK_MAX_THREADS       4096
#define LOCK_STOP_TIMEOUT_MS   2000
#define LOCK_RESUME_TIMEOUT_MS 250

struct ptracelock {
	pid_t pid;
	pid_t tids[LOCK_MAX_THREADS];
	bool blocked[LOCK_MAX_THREADS]; /* sleeping in the kernel when we interrupted it */
	int ntids;
	sigset_t saved_mask;
};

static bool seized(const struct ptracelock *lk, pid_t tid)
{
	for (int i = 0; i < lk->ntids; i++)
		if (lk->tids[i] == tid)
			return true;
	return false;
}

/* Seizes every thread not yet seized; returns how many were added or a negative errno. */
static int seize_new_threads(struct ptracelock *lk)
{
	char path[64];
	struct dirent *de;
	int added = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", lk->pid);
	d = opendir(path);
	if (!d)
		return -ESRCH;
	while ((de = readdir(d)) && lk->ntids < LOCK_MAX_THREADS) {
		pid_t tid = (pid_t)atoi(de->d_name);
		char state;

		if (tid <= 0 || seized(lk, tid))
			continue;
		if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) != 0) {
			int e = errno;

			/* the thread exited meanwhile (an exiting one refuses with EPERM) */
			if (e == ESRCH || (e == EPERM && proc_task_exiting(lk->pid, tid)))
				continue;
			closedir(d);
			return -e;
		}
		state = proc_task_state_of(lk->pid, tid);
		lk->blocked[lk->ntids] = state == 'S' || state == 'D';
		lk->tids[lk->ntids++] = tid;
		ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
		added++;
	}
	closedir(d);
	return added;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until each seized thread reports its stop (or exits), within a deadline. */
static void wait_stopped(struct ptracelock *lk)
{
	bool stopped[LOCK_MAX_THREADS] = {false};
	long deadline = now_ms() + LOCK_STOP_TIMEOUT_MS;
	int remaining = lk->ntids;

	while (remaining > 0 && now_ms() < deadline) {
		bool progress = false;

		for (int i = 0; i < lk->ntids; i++) {
			int status;
			pid_t r;

			if (stopped[i])
				continue;
			r = waitpid(lk->tids[i], &status, __WALL | WNOHANG);
			if (r == lk->tids[i] || (r < 0 && errno == ECHILD)) {
				stopped[i] = true;
				remaining--;
				progress = true;
			}
		}
		if (!progress) {
			struct timespec ts = {0, 1000000};

			nanosleep(&ts, NULL);
		}
	}
}

static bool process_exiting(pid_t pid)
{
	struct pms_error e = {{0}};
	struct proc *p = NULL;
	bool exiting;

	if (proc_open(pid, &p, &e) != 0)
		return true;
	exiting = !proc_alive(p);
	proc_close(p);
	return exiting;
}

int ptracelock_acquire(pid_t pid, struct ptracelock **out, struct pms_error *err)
{
	struct ptracelock *lk;
	sigset_t block;
	int ret;

	*out = NULL;
	lk = calloc(1, sizeof(*lk));
	if (!lk)
		return -ENOMEM;
	lk->pid = pid;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &lk->saved_mask);
	/* threads may be created while we seize: repeat until no new one appears */
	for (int round = 0; round < 16; round++) {
		ret = seize_new_threads(lk);
		if (ret < 0)
			goto fail;
		if (ret == 0)
			break;
	}
	wait_stopped(lk);
	*out = lk;
	return 0;
fail:
	ptracelock_release(lk);
	/* seizing a thread that is exiting fails with EPERM too */
	if ((ret == -EPERM || ret == -EACCES) && (kill(pid, 0) != 0 || process_exiting(pid)))
		ret = -ESRCH;
	if (ret == -EPERM || ret == -EACCES)
		return pms_error_set(
		    err, EPERM,
		    "not allowed to pause process %d (--lock): run as root or grant "
		    "CAP_SYS_PTRACE; check /proc/sys/kernel/yama/ptrace_scope",
		    pid);
	if (ret == -ESRCH)
		return pms_error_set(err, ESRCH, "process %d exited", pid);
	return pms_error_set(err, -ret, "cannot pause process %d: %s", pid, strerror(-ret));
}

/* A thread interrupted in a blocking call restarts it on detach; until it is back inside, a
 * signal sent to it runs its handler and the restarted call then sleeps on (the kernel does not
 * turn the restart into EINTR), so CPython would not run a Python-level handler until the call
 * ends by itself. Returning only once such threads block again keeps that window inside our run. */
static void wait_blocked_again(const struct ptracelock *lk)
{
	long deadline = now_ms() + LOCK_RESUME_TIMEOUT_MS;

	for (int i = 0; i < lk->ntids; i++) {
		while (lk->blocked[i] && now_ms() < deadline) {
			char state = proc_task_state_of(lk->pid, lk->tids[i]);
			struct timespec ts = {0, 200000};

			if (state != 'R' && state != 't' && state != 'T')
				break; /* blocked again, or gone */
			nanosleep(&ts, NULL);
		}
	}
}

void ptracelock_release(struct ptracelock *lk)
{
	if (!lk)
		return;
	for (int i = 0; i < lk->ntids; i++)
		ptrace(PTRACE_DETACH, lk->tids[i], NULL, NULL);
	wait_blocked_again(lk);
	sigprocmask(SIG_SETMASK, &lk->saved_mask, NULL);
	free(lk);
}
