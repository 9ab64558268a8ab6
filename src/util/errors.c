#include "errors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int pms_error_set(struct pms_error *err, int errnum, const char *fmt, ...)
{
	if (errnum < 0)
		errnum = -errnum;
	if (err && err->msg[0] == '\0') {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -errnum;
}

void pms_error_clear(struct pms_error *err)
{
	if (err)
		err->msg[0] = '\0';
}

enum pms_exit pms_exit_code(int err)
{
	if (err >= 0)
		return PMS_EXIT_OK;
	switch (-err) {
	case PMS_EUSAGE:
		return PMS_EXIT_USAGE;
	case ESRCH:
		return PMS_EXIT_NO_PROCESS;
	case PMS_ENOTPYTHON:
		return PMS_EXIT_NOT_PYTHON;
	case PMS_EUNSUPPORTED:
		return PMS_EXIT_UNSUPPORTED;
	case EPERM:
	case EACCES:
		return PMS_EXIT_PRIVILEGE;
	case PMS_EBADFILE:
		return PMS_EXIT_BAD_FILE;
	case PMS_ENOFEATURE:
	case EOPNOTSUPP:
		return PMS_EXIT_HOST;
	case PMS_EGARBAGE:
		return PMS_EXIT_INCONSISTENT;
	default:
		return PMS_EXIT_FAILURE;
	}
}

const char *pms_exit_describe(enum pms_exit code)
{
	switch (code) {
	case PMS_EXIT_OK:
		return "success";
	case PMS_EXIT_FAILURE:
		return "other failure (the message says which)";
	case PMS_EXIT_USAGE:
		return "bad command line";
	case PMS_EXIT_NO_PROCESS:
		return "no such process, or the target exited";
	case PMS_EXIT_NOT_PYTHON:
		return "the process is not running CPython";
	case PMS_EXIT_UNSUPPORTED:
		return "unsupported CPython version or build";
	case PMS_EXIT_PRIVILEGE:
		return "missing privilege (the message names the capability)";
	case PMS_EXIT_BAD_FILE:
		return "corrupt or foreign record file (a truncated one is reported, exit 0)";
	case PMS_EXIT_HOST:
		return "this host lacks a kernel feature the mode needs";
	case PMS_EXIT_INCONSISTENT:
		return "the target's memory could not be read consistently";
	}
	return "unknown";
}
