/* A CPython interpreter running in another process: where its runtime lives, which version and
 * build it is, and the layout to read it with. Opening one reads only; the target never notices. */
#ifndef PMS_PYTARGET_H
#define PMS_PYTARGET_H

#include <stdint.h>
#include <sys/types.h>

#include "errors.h"
#include "proc.h"
#include "pylayout.h"

struct pytarget;

struct pyversion {
	int major, minor, micro;
	char text[32]; /* "3.12.1" */
	enum py_build build;
	const char *evidence; /* what the version was read from */
};

/* Finds the interpreter in process pid. Errors (with a message in err): -ESRCH no process,
 * -EPERM privileges, -PMS_ENOTPYTHON no CPython in it, -PMS_EUNSUPPORTED a version or build we
 * cannot read (the message names it). */
int pytarget_open(pid_t pid, struct pytarget **out, struct pms_error *err);
void pytarget_close(struct pytarget *t);

struct proc *pytarget_proc(struct pytarget *t);
const struct pyversion *pytarget_version(const struct pytarget *t);
const struct py_layout *pytarget_layout(const struct pytarget *t);
/* Address of _PyRuntime in the target. */
uint64_t pytarget_runtime(const struct pytarget *t);
/* Address of PyCode_Type in the target (to check that a pointer is a code object). */
uint64_t pytarget_code_type(const struct pytarget *t);
/* Built-in type objects, found by their exported symbols (in .dynsym on every build, stripped
 * ones included: they are public API). */
enum pytarget_type {
	PYT_TYPE,
	PYT_OBJECT,
	PYT_LIST,
	PYT_TUPLE,
	PYT_DICT,
	PYT_SET,
	PYT_FROZENSET,
	PYT_STR,
	PYT_BYTES,
	PYT_INT,
	PYT_FLOAT,
	PYT_MODULE,
	PYT_TYPE_COUNT,
};
/* Address of a built-in type object in the target; 0 when the symbol is not exported. */
uint64_t pytarget_type_addr(const struct pytarget *t, enum pytarget_type which);
/* The target's path of the file holding the runtime (libpython or the executable). */
const char *pytarget_runtime_file(const struct pytarget *t);
/* Where the layout came from: "built-in table", "_Py_DebugOffsets" ... */
const char *pytarget_layout_source(const struct pytarget *t);

/* Parses a file name like "libpython3.11d.so.1.0", "python3.13t", "libpython3.7m.so": major,
 * minor and ABI flags (d, t, m). 0 or -ENOENT. */
int pytarget_parse_filename(const char *path, int *major, int *minor, char *flags, size_t flagslen);

struct json;
/* Writes "python": {version, build, runtime, layout} into an open JSON object: what dump and
 * census say of the interpreter they read. */
void pytarget_json(struct json *j, struct pytarget *t);

#endif
