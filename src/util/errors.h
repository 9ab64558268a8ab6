/* Errors: functions return 0 or a negative errno; the top of the call chain prints one message
 * and turns the errno into one of the documented exit codes below. */
#ifndef PMS_ERRORS_H
#define PMS_ERRORS_H

#include <stddef.h>

/* Exit codes, documented in --help and man/pymemspy.1. Never 124 or above (timeout, signals). */
enum pms_exit {
	PMS_EXIT_OK = 0,
	PMS_EXIT_FAILURE = 1,	   /* anything not listed below */
	PMS_EXIT_USAGE = 2,	   /* bad command line */
	PMS_EXIT_NO_PROCESS = 3,   /* no such process, or it exited while we worked */
	PMS_EXIT_NOT_PYTHON = 4,   /* the process runs no CPython we can find */
	PMS_EXIT_UNSUPPORTED = 5,  /* a CPython version or build we cannot read */
	PMS_EXIT_PRIVILEGE = 6,	   /* missing privilege (ptrace, CAP_BPF, CAP_PERFMON...) */
	PMS_EXIT_BAD_FILE = 7,	   /* a record file that is corrupt or of another format */
	PMS_EXIT_HOST = 8,	   /* this host lacks a kernel feature the mode needs */
	PMS_EXIT_INCONSISTENT = 9, /* the target's memory did not make sense (torn or freed data) */
};

/* errno values with a project meaning (they map to the exit codes above). */
#define PMS_ENOTPYTHON	 ENOEXEC	 /* not a Python process */
#define PMS_EUNSUPPORTED EPROTONOSUPPORT /* unsupported interpreter version or build */
#define PMS_EBADFILE	 EBADMSG	 /* corrupt or foreign file */
#define PMS_ENOFEATURE	 ENOSYS		 /* kernel feature missing */
#define PMS_EGARBAGE	 EFAULT		 /* remote data failed validation */
#define PMS_EUSAGE	 EDOM		 /* the command line asks what cannot be done */

/* One message explaining a failure, filled where the failure is understood, printed once by main.
 */
struct pms_error {
	char msg[512];
};

/* Sets err->msg (printf-style) unless a message is already set; returns -errnum for `return`. */
int pms_error_set(struct pms_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears the message. */
void pms_error_clear(struct pms_error *err);

/* Maps a negative errno from any module to an exit code. */
enum pms_exit pms_exit_code(int err);

/* Name and one-line meaning of an exit code, for --help and the man page. */
const char *pms_exit_describe(enum pms_exit code);

#endif
