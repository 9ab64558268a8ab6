/* Starting a real interpreter for the unit tests that read one from outside. */
#ifndef PMS_TEST_PYSPAWN_H
#define PMS_TEST_PYSPAWN_H

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Code that says "ready" once the interpreter has initialised, then sleeps (Python 2 syntax too:
 * the unsupported versions must start). */
#define PYSPAWN_SLEEP                                                                              \
	"import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"

/* Runs `exe [flag] -c code` with one more environment variable (NAME=VALUE) when env is given;
 * the child dies with the test process, even on a failed assert. Skips the test when exe is not
 * installed. Returns its pid; *out reads its standard output. */
static inline pid_t pyspawn(const char *exe, const char *flag, const char *env, const char *code,
			    FILE **out)
{
	int fds[2];
	pid_t pid;

	if (access(exe, X_OK) != 0)
		cr_skip_test("%s is not installed", exe);
	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fds[1], 1);
		close(fds[0]);
		if (env)
			putenv((char *)env);
		if (flag)
			execl(exe, exe, flag, "-c", code, (char *)NULL);
		else
			execl(exe, exe, "-c", code, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	*out = fdopen(fds[0], "r");
	cr_assert_not_null(*out);
	return pid;
}

/* pyspawn of PYSPAWN_SLEEP, once it said "ready". */
static inline pid_t pyspawn_ready(const char *exe, const char *flag, const char *env)
{
	FILE *out;
	pid_t pid = pyspawn(exe, flag, env, PYSPAWN_SLEEP, &out);
	char buf[6];

	cr_assert_eq(fread(buf, 1, sizeof(buf), out), 6, "%s did not start", exe);
	fclose(out);
	return pid;
}

static inline void pyspawn_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

#endif
