#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pytarget.h"
#include "pyspawn.h"

Test(pytarget, parses_interpreter_file_names)
{
	int major, minor;
	char flags[8];

	cr_assert_eq(pytarget_parse_filename("/usr/lib/libpython3.11.so.1.0", &major, &minor, flags,
					     sizeof(flags)),
		     0);
	cr_assert_eq(major, 3);
	cr_assert_eq(minor, 11);
	cr_assert_str_eq(flags, "");
	cr_assert_eq(
	    pytarget_parse_filename("libpython3.7m.so.1.0", &major, &minor, flags, sizeof(flags)),
	    0);
	cr_assert_eq(minor, 7);
	cr_assert_str_eq(flags, "m");
	cr_assert_eq(
	    pytarget_parse_filename("/usr/bin/python3.13t", &major, &minor, flags, sizeof(flags)),
	    0);
	cr_assert_str_eq(flags, "t");
	cr_assert_eq(
	    pytarget_parse_filename("/usr/bin/python3.11d", &major, &minor, flags, sizeof(flags)),
	    0);
	cr_assert_str_eq(flags, "d");
	cr_assert_eq(
	    pytarget_parse_filename("libpython2.7.so.1.0", &major, &minor, flags, sizeof(flags)),
	    0);
	cr_assert_eq(major, 2);
	cr_assert_eq(pytarget_parse_filename("/usr/bin/python3.11-config", &major, &minor, flags,
					     sizeof(flags)),
		     -ENOENT);
	cr_assert_eq(
	    pytarget_parse_filename("/usr/bin/sleep", &major, &minor, flags, sizeof(flags)),
	    -ENOENT);
	cr_assert_eq(pytarget_parse_filename("python", &major, &minor, flags, sizeof(flags)),
		     -ENOENT);
}

struct expect {
	const char *exe;
	const char *version_prefix;
	enum py_build build;
};

static void check_version(const struct expect *e)
{
	struct pms_error err = {{0}};
	struct pytarget *t = NULL;
	pid_t pid = pyspawn_ready(e->exe, NULL, NULL);
	int ret = pytarget_open(pid, &t, &err);

	pyspawn_stop(pid);
	cr_assert_eq(ret, 0, "%s: %s", e->exe, err.msg);
	cr_assert_eq(
	    strncmp(pytarget_version(t)->text, e->version_prefix, strlen(e->version_prefix)), 0,
	    "%s: got %s", e->exe, pytarget_version(t)->text);
	cr_assert_eq(pytarget_version(t)->build, e->build, "%s", e->exe);
	cr_assert_neq(pytarget_runtime(t), 0);
	cr_assert_neq(pytarget_code_type(t), 0);
	pytarget_close(t);
}

#define PYENV "/root/.pyenv/versions/"

Test(pytarget, version_3_8)
{
	check_version(&(struct expect){PYENV "3.8.18/bin/python3.8", "3.8.18", PY_BUILD_RELEASE});
}
Test(pytarget, version_3_10)
{
	check_version(
	    &(struct expect){PYENV "3.10.13/bin/python3.10", "3.10.13", PY_BUILD_RELEASE});
}
Test(pytarget, version_3_12)
{
	check_version(&(struct expect){PYENV "3.12.1/bin/python3.12", "3.12.1", PY_BUILD_RELEASE});
}
Test(pytarget, version_3_13_from_debug_offsets)
{
	check_version(&(struct expect){PYENV "3.13.0/bin/python3.13", "3.13.0", PY_BUILD_RELEASE});
}
Test(pytarget, version_debian_static)
{
	check_version(&(struct expect){"/usr/bin/python3.11", "3.11.", PY_BUILD_RELEASE});
}
Test(pytarget, version_debian_debug)
{
	check_version(&(struct expect){"/usr/bin/python3.11d", "3.11.", PY_BUILD_DEBUG});
}

Test(pytarget, old_versions_are_unsupported)
{
	const char *exes[] = {PYENV "2.7.18/bin/python2.7", PYENV "3.6.15/bin/python3.6",
			      PYENV "3.7.16/bin/python3.7"};
	const char *names[] = {"2.7.18", "3.6.15", "3.7.16"};

	for (size_t i = 0; i < 3; i++) {
		struct pms_error err = {{0}};
		struct pytarget *t = NULL;
		pid_t pid;
		int ret;

		if (access(exes[i], X_OK) != 0)
			continue;
		pid = pyspawn_ready(exes[i], NULL, NULL);
		ret = pytarget_open(pid, &t, &err);
		pyspawn_stop(pid);
		cr_assert_eq(ret, -PMS_EUNSUPPORTED, "%s: %d %s", exes[i], ret, err.msg);
		cr_assert(strstr(err.msg, names[i]) != NULL, "%s", err.msg);
	}
}

Test(pytarget, not_python)
{
	struct pms_error err = {{0}};
	struct pytarget *t = NULL;
	pid_t pid = fork();
	int ret;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	usleep(100000);
	ret = pytarget_open(pid, &t, &err);
	pyspawn_stop(pid);
	cr_assert_eq(ret, -PMS_ENOTPYTHON, "%d %s", ret, err.msg);
	cr_assert(strstr(err.msg, "not a Python process") != NULL, "%s", err.msg);
}
