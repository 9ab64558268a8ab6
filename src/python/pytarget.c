#include "pytarget.h"

#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elffile.h"
#include "json.h"
#include "pydebugoffsets.h"

struct pytarget {
	struct proc *proc;
	struct pyversion version;
	struct py_layout layout;
	char layout_source[160];
	uint64_t runtime;
	uint64_t code_type;
	uint64_t types[PYT_TYPE_COUNT];
	char runtime_file[512];
};

static const char *const type_symbols[PYT_TYPE_COUNT] = {
    [PYT_TYPE] = "PyType_Type",		  [PYT_OBJECT] = "PyBaseObject_Type",
    [PYT_LIST] = "PyList_Type",		  [PYT_TUPLE] = "PyTuple_Type",
    [PYT_DICT] = "PyDict_Type",		  [PYT_SET] = "PySet_Type",
    [PYT_FROZENSET] = "PyFrozenSet_Type", [PYT_STR] = "PyUnicode_Type",
    [PYT_BYTES] = "PyBytes_Type",	  [PYT_INT] = "PyLong_Type",
    [PYT_FLOAT] = "PyFloat_Type",	  [PYT_MODULE] = "PyModule_Type",
};

static const char *basename_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

int pytarget_parse_filename(const char *path, int *major, int *minor, char *flags, size_t flagslen)
{
	const char *name = basename_of(path), *p;
	size_t nflags = 0;
	char *end;
	long maj, min;

	if (strncmp(name, "libpython", 9) == 0)
		p = name + 9;
	else if (strncmp(name, "python", 6) == 0)
		p = name + 6;
	else
		return -ENOENT;
	if (!isdigit((unsigned char)*p))
		return -ENOENT;
	maj = strtol(p, &end, 10);
	if (*end != '.' || !isdigit((unsigned char)end[1]))
		return -ENOENT;
	min = strtol(end + 1, &end, 10);
	while (*end && strchr("dmtu", *end) && nflags + 1 < flagslen)
		flags[nflags++] = *end++;
	if (flagslen)
		flags[nflags] = '\0';
	/* what follows must end the name: ".so...", "-config" is not an interpreter */
	if (*end != '\0' && strncmp(end, ".so", 3) != 0)
		return -ENOENT;
	if (maj < 2 || maj > 3 || min < 0 || min > 99)
		return -ENOENT;
	*major = (int)maj;
	*minor = (int)min;
	return 0;
}

/* The mapped file most likely to hold the runtime: libpython if mapped, else the executable. */
static const struct proc_map *find_runtime_file(struct proc *p)
{
	const struct proc_map *exe = NULL;
	char link[64], exe_path[512];
	ssize_t n;

	for (size_t i = 0; i < proc_map_count(p); i++) {
		const struct proc_map *m = proc_map_at(p, i);

		if (strncmp(basename_of(m->path), "libpython", 9) == 0)
			return m;
	}
	snprintf(link, sizeof(link), "/proc/%d/exe", proc_pid(p));
	n = readlink(link, exe_path, sizeof(exe_path) - 1);
	if (n <= 0)
		return NULL;
	exe_path[n] = '\0';
	for (size_t i = 0; i < proc_map_count(p); i++) {
		const struct proc_map *m = proc_map_at(p, i);

		if (strcmp(m->path, exe_path) == 0) {
			exe = m;
			break;
		}
	}
	return exe;
}

/* The first mapping of the file, which gives its load bias. */
static const struct proc_map *first_mapping_of(struct proc *p, const char *path)
{
	for (size_t i = 0; i < proc_map_count(p); i++) {
		const struct proc_map *m = proc_map_at(p, i);

		if (strcmp(m->path, path) == 0)
			return m;
	}
	return NULL;
}

static void set_version(struct pyversion *v, int major, int minor, int micro, const char *evidence)
{
	v->major = major;
	v->minor = minor;
	v->micro = micro;
	v->evidence = evidence;
	snprintf(v->text, sizeof(v->text), "%d.%d.%d", major, minor, micro);
}

static void version_from_hex(struct pyversion *v, uint64_t hex, const char *evidence)
{
	set_version(v, (int)((hex >> 24) & 0xff), (int)((hex >> 16) & 0xff),
		    (int)((hex >> 8) & 0xff), evidence);
}

static int unsupported(struct pytarget *t, struct pms_error *err, const char *why)
{
	int lo, hi;

	pylayout_supported_range(&lo, &hi);
	return pms_error_set(
	    err, PMS_EUNSUPPORTED,
	    "process %d runs Python %s (%s build, %s), which pymemspy cannot read%s%s: "
	    "supported are CPython 3.%d to 3.%d",
	    proc_pid(t->proc), t->version.text, pylayout_build_name(t->version.build),
	    t->runtime_file, why ? ": " : "", why ? why : "", lo, hi);
}

/* Version, from the strongest evidence: _Py_DebugOffsets, Py_Version, the file name, strings. */
static int detect_version(struct pytarget *t, struct elffile *ef, uint64_t bias,
			  const uint8_t *head, size_t headlen, bool *has_debug_offsets)
{
	char flags[8] = "", text[32];
	uint64_t hex, vaddr;
	int major = 0, minor = 0, free_threaded = 0, micro = 0;
	bool named =
	    pytarget_parse_filename(t->runtime_file, &major, &minor, flags, sizeof(flags)) == 0;

	(void)bias;
	*has_debug_offsets = false;
	if (pydebug_header(head, headlen, &hex, &free_threaded) == 0) {
		version_from_hex(&t->version, hex, "_Py_DebugOffsets");
		*has_debug_offsets = true;
	} else if (elffile_symbol(ef, "Py_Version", &vaddr, NULL) == 0 &&
		   elffile_read_vaddr(ef, vaddr, &hex, sizeof(hex)) == 0) {
		version_from_hex(&t->version, hex & 0xffffffff, "Py_Version");
	} else if (elffile_find_version_string(ef, named ? major : 0, named ? minor : 0, text,
					       sizeof(text)) == 0 &&
		   sscanf(text, "%d.%d.%d", &major, &minor, &micro) == 3) {
		set_version(&t->version, major, minor, micro,
			    named ? "file name and version string" : "version string");
	} else if (named) {
		set_version(&t->version, major, minor, 0, "file name");
		snprintf(t->version.text, sizeof(t->version.text), "%d.%d", major, minor);
	} else {
		return -ENOENT;
	}
	if (free_threaded || strchr(flags, 't'))
		t->version.build = PY_BUILD_FREE_THREADED;
	else if (strchr(flags, 'd') ||
		 elffile_symbol(ef, "_Py_NegativeRefcount", &vaddr, NULL) == 0)
		t->version.build = PY_BUILD_DEBUG;
	else
		t->version.build = PY_BUILD_RELEASE;
	return 0;
}

static int choose_layout(struct pytarget *t, const uint8_t *head, size_t headlen,
			 bool has_debug_offsets, struct pms_error *err)
{
	const struct py_layout *builtin;
	struct py_layout zero = {0};
	struct pms_error cross = {{0}};
	int ret;

	if (t->version.major != 3)
		return unsupported(t, err, NULL);
	builtin = pylayout_builtin(3, t->version.minor, t->version.build);
	if (!has_debug_offsets) {
		if (!builtin)
			return unsupported(t, err, NULL);
		t->layout = *builtin;
		snprintf(t->layout_source, sizeof(t->layout_source), "built-in table");
		return 0;
	}
	ret = pydebug_parse(head, headlen, builtin ? builtin : &zero, &t->layout, err);
	if (ret == -PMS_EUNSUPPORTED && builtin) {
		/* a debug-offsets format we do not know, but a table we trust */
		pms_error_clear(err);
		t->layout = *builtin;
		snprintf(t->layout_source, sizeof(t->layout_source), "built-in table");
		return 0;
	}
	if (ret == -PMS_EUNSUPPORTED) {
		pms_error_clear(err);
		return unsupported(t, err, NULL);
	}
	if (ret)
		return ret;
	if (!builtin) {
		snprintf(t->layout_source, sizeof(t->layout_source), "_Py_DebugOffsets");
		return 0;
	}
	if (pydebug_crosscheck(&t->layout, builtin, &cross) == 0)
		snprintf(t->layout_source, sizeof(t->layout_source),
			 "_Py_DebugOffsets (agrees with the built-in table)");
	else
		snprintf(t->layout_source, sizeof(t->layout_source),
			 "_Py_DebugOffsets (differs from the built-in table: %.100s)", cross.msg);
	return 0;
}

int pytarget_open(pid_t pid, struct pytarget **out, struct pms_error *err)
{
	const struct proc_map *file, *first;
	struct elffile *ef = NULL;
	struct pytarget *t;
	uint8_t head[PYDEBUG_MAX_SIZE];
	uint64_t vaddr, size = 0, bias;
	char host_path[600];
	size_t headlen;
	bool has_debug_offsets;
	int ret;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	ret = proc_open(pid, &t->proc, err);
	if (ret)
		goto fail;
	file = find_runtime_file(t->proc);
	if (!file) {
		ret =
		    pms_error_set(err, PMS_ENOTPYTHON,
				  "process %d (%s) is not a Python process: no libpython is mapped "
				  "and its executable cannot be read",
				  pid, proc_comm(t->proc));
		goto fail;
	}
	snprintf(t->runtime_file, sizeof(t->runtime_file), "%s", file->path);
	ret = proc_host_path(t->proc, file->path, host_path, sizeof(host_path));
	if (ret == 0)
		ret = elffile_open(host_path, &ef);
	if (ret) {
		ret = pms_error_set(err, ret == -EACCES ? EPERM : PMS_ENOTPYTHON,
				    "cannot open %s of process %d: %s", file->path, pid,
				    strerror(-ret));
		goto fail;
	}
	if (elffile_symbol(ef, "_PyRuntime", &vaddr, &size) != 0) {
		int major, minor;
		char flags[8];

		/* Interpreters older than 3.7 have no _PyRuntime: name them. A file that only
		 * looks like a newer interpreter by name is not one. */
		if (pytarget_parse_filename(file->path, &major, &minor, flags, sizeof(flags)) ==
			0 &&
		    (major < 3 || (major == 3 && minor < 8)) &&
		    detect_version(t, ef, 0, head, 0, &has_debug_offsets) == 0) {
			ret = unsupported(t, err, "it has no _PyRuntime");
			goto fail;
		}
		ret = pms_error_set(err, PMS_ENOTPYTHON,
				    "process %d (%s) is not a Python process: %s has no _PyRuntime",
				    pid, proc_comm(t->proc), file->path);
		goto fail;
	}
	first = first_mapping_of(t->proc, file->path);
	if (!first || elffile_load_bias(ef, first->start, first->offset, &bias) != 0) {
		ret =
		    pms_error_set(err, PMS_ENOTPYTHON,
				  "cannot tell where %s is loaded in process %d", file->path, pid);
		goto fail;
	}
	t->runtime = bias + vaddr;
	/* The first read of the target: it tells us about privileges and liveness too. */
	headlen = size && size < sizeof(head) ? size : sizeof(head);
	ret = proc_read(t->proc, t->runtime, head, headlen);
	if (ret) {
		ret = proc_read_error(t->proc, ret, "_PyRuntime", err);
		goto fail;
	}
	ret = detect_version(t, ef, bias, head, headlen, &has_debug_offsets);
	if (ret) {
		ret = pms_error_set(
		    err, PMS_EUNSUPPORTED,
		    "process %d has a CPython runtime in %s but its version cannot be "
		    "told",
		    pid, file->path);
		goto fail;
	}
	ret = choose_layout(t, head, headlen, has_debug_offsets, err);
	if (ret)
		goto fail;
	if (elffile_symbol(ef, "PyCode_Type", &vaddr, NULL) == 0)
		t->code_type = bias + vaddr;
	for (int i = 0; i < PYT_TYPE_COUNT; i++)
		if (elffile_symbol(ef, type_symbols[i], &vaddr, NULL) == 0)
			t->types[i] = bias + vaddr;
	elffile_close(ef);
	*out = t;
	return 0;
fail:
	/* a process that exits while we look loses its maps: say it exited, not what it lacks */
	if (ret != -ESRCH && ret != -EPERM && t->proc && !proc_alive(t->proc)) {
		pms_error_clear(err);
		ret = pms_error_set(err, ESRCH, "process %d exited", pid);
	}
	elffile_close(ef);
	pytarget_close(t);
	return ret;
}

void pytarget_close(struct pytarget *t)
{
	if (!t)
		return;
	proc_close(t->proc);
	free(t);
}

struct proc *pytarget_proc(struct pytarget *t)
{
	return t->proc;
}

const struct pyversion *pytarget_version(const struct pytarget *t)
{
	return &t->version;
}

const struct py_layout *pytarget_layout(const struct pytarget *t)
{
	return &t->layout;
}

uint64_t pytarget_runtime(const struct pytarget *t)
{
	return t->runtime;
}

uint64_t pytarget_code_type(const struct pytarget *t)
{
	return t->code_type;
}

uint64_t pytarget_type_addr(const struct pytarget *t, enum pytarget_type which)
{
	return which >= 0 && which < PYT_TYPE_COUNT ? t->types[which] : 0;
}

const char *pytarget_runtime_file(const struct pytarget *t)
{
	return t->runtime_file;
}

const char *pytarget_layout_source(const struct pytarget *t)
{
	return t->layout_source;
}

void pytarget_json(struct json *j, struct pytarget *t)
{
	const struct pyversion *v = pytarget_version(t);

	json_key(j, "python");
	json_object_begin(j);
	json_kv_string(j, "version", v->text);
	json_kv_string(j, "build", pylayout_build_name(v->build));
	json_kv_string(j, "runtime", pytarget_runtime_file(t));
	json_kv_string(j, "layout", pytarget_layout_source(t));
	json_object_end(j);
}
