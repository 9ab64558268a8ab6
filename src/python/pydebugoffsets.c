/* _Py_DebugOffsets parser. The struct is a flat run of uint64_t after the 8-byte cookie, so each
 * known version is described by the order of its fields, copied line by line from CPython's
 * declaration (3.13: Include/internal/pycore_runtime.h, 3.14:
 * Include/internal/pycore_debug_offsets.h). A field's byte position is 8 * its index. */
#include "pydebugoffsets.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

/* The fields we read; D_SKIP marks the ones we do not. */
enum dfield {
	D_SKIP = 0,
	D_COOKIE,
	D_VERSION,
	D_FREE_THREADED,
	D_RT_SIZE,
	D_RT_INTERPRETERS_HEAD,
	D_IS_SIZE,
	D_IS_ID,
	D_IS_NEXT,
	D_IS_THREADS_HEAD,
	D_IS_CEVAL_GIL,
	D_IS_GIL_RUNTIME_STATE,
	D_IS_GIL_LOCKED,
	D_IS_GIL_HOLDER,
	D_TS_SIZE,
	D_TS_NEXT,
	D_TS_INTERP,
	D_TS_CURRENT_FRAME,
	D_TS_THREAD_ID,
	D_TS_NATIVE_THREAD_ID,
	D_FR_SIZE,
	D_FR_PREVIOUS,
	D_FR_EXECUTABLE,
	D_FR_INSTR_PTR,
	D_FR_OWNER,
	D_FR_TLBC_INDEX,
	D_CO_SIZE,
	D_CO_FILENAME,
	D_CO_NAME,
	D_CO_QUALNAME,
	D_CO_LINETABLE,
	D_CO_FIRSTLINENO,
	D_CO_ARGCOUNT,
	D_CO_CODE_ADAPTIVE,
	D_CO_TLBC,
	D_OB_SIZE,
	D_OB_TYPE,
	D_BY_SIZE,
	D_BY_OB_SIZE,
	D_BY_OB_SVAL,
	D_UN_SIZE,
	D_UN_STATE,
	D_UN_LENGTH,
	D_UN_ASCII_SIZE,
	D_IS_GC,
	D_IS_IMPORTS_MODULES,
	D_TP_SIZE,
	D_TP_NAME,
	D_TP_FLAGS,
	D_TU_SIZE,
	D_TU_ITEMS,
	D_LI_SIZE,
	D_LI_ITEMS,
	D_DI_SIZE,
	D_DI_KEYS,
	D_DI_VALUES,
	D_GC_SIZE,
	D_COUNT,
};

/* Include/internal/pycore_runtime.h, v3.13.0: 73 words, 584 bytes. */
static const uint8_t format_313[] = {
    D_COOKIE,
    D_VERSION,
    D_FREE_THREADED,
    /* runtime_state */
    D_RT_SIZE,
    D_SKIP /* finalizing */,
    D_RT_INTERPRETERS_HEAD,
    /* interpreter_state */
    D_IS_SIZE,
    D_IS_ID,
    D_IS_NEXT,
    D_IS_THREADS_HEAD,
    D_IS_GC,
    D_IS_IMPORTS_MODULES,
    D_SKIP /* sysdict */,
    D_SKIP /* builtins */,
    D_IS_CEVAL_GIL,
    D_IS_GIL_RUNTIME_STATE,
    D_SKIP /* gil_runtime_state_enabled */,
    D_IS_GIL_LOCKED,
    D_IS_GIL_HOLDER,
    /* thread_state */
    D_TS_SIZE,
    D_SKIP /* prev */,
    D_TS_NEXT,
    D_TS_INTERP,
    D_TS_CURRENT_FRAME,
    D_TS_THREAD_ID,
    D_TS_NATIVE_THREAD_ID,
    D_SKIP /* datastack_chunk */,
    D_SKIP /* status */,
    /* interpreter_frame */
    D_FR_SIZE,
    D_FR_PREVIOUS,
    D_FR_EXECUTABLE,
    D_FR_INSTR_PTR,
    D_SKIP /* localsplus */,
    D_FR_OWNER,
    /* code_object */
    D_CO_SIZE,
    D_CO_FILENAME,
    D_CO_NAME,
    D_CO_QUALNAME,
    D_CO_LINETABLE,
    D_CO_FIRSTLINENO,
    D_CO_ARGCOUNT,
    D_SKIP /* localsplusnames */,
    D_SKIP /* localspluskinds */,
    D_CO_CODE_ADAPTIVE,
    /* pyobject */
    D_OB_SIZE,
    D_OB_TYPE,
    /* type_object: size, tp_name, tp_repr, tp_flags */
    D_TP_SIZE,
    D_TP_NAME,
    D_SKIP,
    D_TP_FLAGS,
    /* tuple_object, list_object, dict_object: 3 words each */
    D_TU_SIZE,
    D_TU_ITEMS,
    D_SKIP /* ob_size */,
    D_LI_SIZE,
    D_LI_ITEMS,
    D_SKIP /* ob_size */,
    D_DI_SIZE,
    D_DI_KEYS,
    D_DI_VALUES,
    /* float_object: 2, long_object: 3 */
    D_SKIP,
    D_SKIP,
    D_SKIP,
    D_SKIP,
    D_SKIP,
    /* bytes_object */
    D_BY_SIZE,
    D_BY_OB_SIZE,
    D_BY_OB_SVAL,
    /* unicode_object */
    D_UN_SIZE,
    D_UN_STATE,
    D_UN_LENGTH,
    D_UN_ASCII_SIZE,
    /* gc: size, collecting */
    D_GC_SIZE,
    D_SKIP,
};

/* Include/internal/pycore_debug_offsets.h, v3.14.0: 95 words, 760 bytes. Inserts
 * interpreter_state.threads_main, .code_object_generation, .tlbc_generation,
 * interpreter_frame.stackpointer, .tlbc_index, code_object.co_tlbc, set_object, gen_object,
 * llist_node and debugger_support. */
static const uint8_t format_314[] = {
    D_COOKIE,
    D_VERSION,
    D_FREE_THREADED,
    /* runtime_state */
    D_RT_SIZE,
    D_SKIP /* finalizing */,
    D_RT_INTERPRETERS_HEAD,
    /* interpreter_state */
    D_IS_SIZE,
    D_IS_ID,
    D_IS_NEXT,
    D_IS_THREADS_HEAD,
    D_SKIP /* threads_main */,
    D_IS_GC,
    D_IS_IMPORTS_MODULES,
    D_SKIP /* sysdict */,
    D_SKIP /* builtins */,
    D_IS_CEVAL_GIL,
    D_IS_GIL_RUNTIME_STATE,
    D_SKIP /* gil_runtime_state_enabled */,
    D_IS_GIL_LOCKED,
    D_IS_GIL_HOLDER,
    D_SKIP /* code_object_generation */,
    D_SKIP /* tlbc_generation */,
    /* thread_state */
    D_TS_SIZE,
    D_SKIP /* prev */,
    D_TS_NEXT,
    D_TS_INTERP,
    D_TS_CURRENT_FRAME,
    D_TS_THREAD_ID,
    D_TS_NATIVE_THREAD_ID,
    D_SKIP /* datastack_chunk */,
    D_SKIP /* status */,
    /* interpreter_frame */
    D_FR_SIZE,
    D_FR_PREVIOUS,
    D_FR_EXECUTABLE,
    D_FR_INSTR_PTR,
    D_SKIP /* localsplus */,
    D_FR_OWNER,
    D_SKIP /* stackpointer */,
    D_FR_TLBC_INDEX,
    /* code_object */
    D_CO_SIZE,
    D_CO_FILENAME,
    D_CO_NAME,
    D_CO_QUALNAME,
    D_CO_LINETABLE,
    D_CO_FIRSTLINENO,
    D_CO_ARGCOUNT,
    D_SKIP /* localsplusnames */,
    D_SKIP /* localspluskinds */,
    D_CO_CODE_ADAPTIVE,
    D_CO_TLBC,
    /* pyobject */
    D_OB_SIZE,
    D_OB_TYPE,
    /* type_object: size, tp_name, tp_repr, tp_flags */
    D_TP_SIZE,
    D_TP_NAME,
    D_SKIP,
    D_TP_FLAGS,
    /* tuple_object: 3, list_object: 3 */
    D_TU_SIZE,
    D_TU_ITEMS,
    D_SKIP /* ob_size */,
    D_LI_SIZE,
    D_LI_ITEMS,
    D_SKIP /* ob_size */,
    /* set_object: size, used, table, mask */
    D_SKIP,
    D_SKIP,
    D_SKIP,
    D_SKIP,
    /* dict_object: 3, float_object: 2, long_object: 3 */
    D_DI_SIZE,
    D_DI_KEYS,
    D_DI_VALUES,
    D_SKIP,
    D_SKIP,
    D_SKIP,
    D_SKIP,
    D_SKIP,
    /* bytes_object */
    D_BY_SIZE,
    D_BY_OB_SIZE,
    D_BY_OB_SVAL,
    /* unicode_object */
    D_UN_SIZE,
    D_UN_STATE,
    D_UN_LENGTH,
    D_UN_ASCII_SIZE,
    /* gc: size, collecting */
    D_GC_SIZE,
    D_SKIP,
    /* gen_object: size, gi_name, gi_iframe, gi_frame_state */
    D_SKIP,
    D_SKIP,
    D_SKIP,
    D_SKIP,
    /* llist_node: next, prev */
    D_SKIP,
    D_SKIP,
    /* debugger_support: eval_breaker, remote_debugger_support, remote_debugging_enabled,
     * debugger_pending_call, debugger_script_path, debugger_script_path_size */
    D_SKIP,
    D_SKIP,
    D_SKIP,
    D_SKIP,
    D_SKIP,
    D_SKIP,
};

_Static_assert(sizeof(format_313) * 8 == 584, "sizeof(_Py_DebugOffsets) in 3.13.0");
_Static_assert(sizeof(format_314) * 8 == 760, "sizeof(_Py_DebugOffsets) in 3.14.0");
_Static_assert(D_COUNT < 256, "field ids are stored as uint8_t");

struct format {
	int minor;
	const uint8_t *fields;
	size_t nfields;
};

static const struct format formats[] = {
    {13, format_313, sizeof(format_313)},
    {14, format_314, sizeof(format_314)},
};

#define HEADER_SIZE 24 /* cookie, version, free_threaded */

/* Sanity caps on the sizes the blob declares: far above any real CPython, far below what would
 * let a garbage offset reach outside a sensible read. */
#define CAP_BIG	  (16u << 20) /* _PyRuntimeState, PyInterpreterState (~360 KiB / ~250 KiB) */
#define CAP_SMALL (64u << 10) /* PyThreadState, frames, code and string objects */

int pydebug_header(const void *blob, size_t len, uint64_t *version_hex, int *free_threaded)
{
	const uint8_t *p = blob;
	uint64_t version, ft;

	if (!blob || len < HEADER_SIZE || memcmp(p, PYDEBUG_COOKIE, 8) != 0)
		return -ENOENT;
	memcpy(&version, p + 8, sizeof(version));
	memcpy(&ft, p + 16, sizeof(ft));
	if (version_hex)
		*version_hex = version;
	if (free_threaded)
		*free_threaded = ft != 0;
	return 0;
}

/* The published values, by field; `have` says which the format carries. */
struct values {
	uint64_t v[D_COUNT];
	bool have[D_COUNT];
};

static const struct format *format_for(int minor)
{
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (formats[i].minor == minor)
			return &formats[i];
	return NULL;
}

/* Checks that a field of `width` bytes at value[f] fits inside value[size]; absent fields pass. */
static int check_in(const struct values *vals, enum dfield f, unsigned width, enum dfield size,
		    const char *fname, const char *sname, struct pms_error *err)
{
	if (!vals->have[f])
		return 0;
	if (vals->v[f] > vals->v[size] || vals->v[size] - vals->v[f] < width)
		return pms_error_set(err, PMS_EGARBAGE,
				     "_Py_DebugOffsets: %s = %" PRIu64 " lies beyond %s = %" PRIu64
				     ": not a CPython runtime, or its memory is damaged",
				     fname, vals->v[f], sname, vals->v[size]);
	return 0;
}

static int check_size(const struct values *vals, enum dfield f, uint64_t cap, const char *name,
		      struct pms_error *err)
{
	if (vals->v[f] == 0 || vals->v[f] > cap)
		return pms_error_set(
		    err, PMS_EGARBAGE,
		    "_Py_DebugOffsets: %s = %" PRIu64
		    " cannot be a struct size: not a CPython runtime, or its memory "
		    "is damaged",
		    name, vals->v[f]);
	return 0;
}

/* Every offset we take must lie inside the struct size the blob itself declares. */
static int validate(const struct values *vals, struct pms_error *err)
{
	static const struct {
		enum dfield f;
		unsigned width;
		enum dfield size;
		const char *fname, *sname;
	} in[] = {
#define IN(f, w, s, fn, sn) {f, w, s, fn, sn}
	    IN(D_RT_INTERPRETERS_HEAD, 8, D_RT_SIZE, "runtime_state.interpreters_head",
	       "runtime_state.size"),
	    IN(D_IS_ID, 8, D_IS_SIZE, "interpreter_state.id", "interpreter_state.size"),
	    IN(D_IS_NEXT, 8, D_IS_SIZE, "interpreter_state.next", "interpreter_state.size"),
	    IN(D_IS_THREADS_HEAD, 8, D_IS_SIZE, "interpreter_state.threads_head",
	       "interpreter_state.size"),
	    IN(D_IS_CEVAL_GIL, 8, D_IS_SIZE, "interpreter_state.ceval_gil",
	       "interpreter_state.size"),
	    IN(D_IS_GIL_RUNTIME_STATE, 1, D_IS_SIZE, "interpreter_state.gil_runtime_state",
	       "interpreter_state.size"),
	    IN(D_IS_GIL_LOCKED, 4, D_IS_SIZE, "interpreter_state.gil_runtime_state_locked",
	       "interpreter_state.size"),
	    IN(D_IS_GIL_HOLDER, 8, D_IS_SIZE, "interpreter_state.gil_runtime_state_holder",
	       "interpreter_state.size"),
	    IN(D_TS_NEXT, 8, D_TS_SIZE, "thread_state.next", "thread_state.size"),
	    IN(D_TS_INTERP, 8, D_TS_SIZE, "thread_state.interp", "thread_state.size"),
	    IN(D_TS_CURRENT_FRAME, 8, D_TS_SIZE, "thread_state.current_frame", "thread_state.size"),
	    IN(D_TS_THREAD_ID, 8, D_TS_SIZE, "thread_state.thread_id", "thread_state.size"),
	    IN(D_TS_NATIVE_THREAD_ID, 8, D_TS_SIZE, "thread_state.native_thread_id",
	       "thread_state.size"),
	    IN(D_FR_PREVIOUS, 8, D_FR_SIZE, "interpreter_frame.previous", "interpreter_frame.size"),
	    IN(D_FR_EXECUTABLE, 8, D_FR_SIZE, "interpreter_frame.executable",
	       "interpreter_frame.size"),
	    IN(D_FR_INSTR_PTR, 8, D_FR_SIZE, "interpreter_frame.instr_ptr",
	       "interpreter_frame.size"),
	    IN(D_FR_OWNER, 1, D_FR_SIZE, "interpreter_frame.owner", "interpreter_frame.size"),
	    IN(D_FR_TLBC_INDEX, 4, D_FR_SIZE, "interpreter_frame.tlbc_index",
	       "interpreter_frame.size"),
	    IN(D_CO_FILENAME, 8, D_CO_SIZE, "code_object.filename", "code_object.size"),
	    IN(D_CO_NAME, 8, D_CO_SIZE, "code_object.name", "code_object.size"),
	    IN(D_CO_QUALNAME, 8, D_CO_SIZE, "code_object.qualname", "code_object.size"),
	    IN(D_CO_LINETABLE, 8, D_CO_SIZE, "code_object.linetable", "code_object.size"),
	    IN(D_CO_FIRSTLINENO, 4, D_CO_SIZE, "code_object.firstlineno", "code_object.size"),
	    IN(D_CO_ARGCOUNT, 4, D_CO_SIZE, "code_object.argcount", "code_object.size"),
	    IN(D_CO_CODE_ADAPTIVE, 0, D_CO_SIZE, "code_object.co_code_adaptive",
	       "code_object.size"),
	    IN(D_CO_TLBC, 8, D_CO_SIZE, "code_object.co_tlbc", "code_object.size"),
	    IN(D_OB_TYPE, 8, D_OB_SIZE, "pyobject.ob_type", "pyobject.size"),
	    IN(D_BY_OB_SIZE, 8, D_BY_SIZE, "bytes_object.ob_size", "bytes_object.size"),
	    IN(D_BY_OB_SVAL, 0, D_BY_SIZE, "bytes_object.ob_sval", "bytes_object.size"),
	    IN(D_UN_STATE, 4, D_UN_ASCII_SIZE, "unicode_object.state",
	       "unicode_object.asciiobject_size"),
	    IN(D_UN_LENGTH, 8, D_UN_ASCII_SIZE, "unicode_object.length",
	       "unicode_object.asciiobject_size"),
	    IN(D_UN_ASCII_SIZE, 0, D_UN_SIZE, "unicode_object.asciiobject_size",
	       "unicode_object.size"),
	    IN(D_IS_GC, 0, D_IS_SIZE, "interpreter_state.gc", "interpreter_state.size"),
	    IN(D_IS_IMPORTS_MODULES, 8, D_IS_SIZE, "interpreter_state.imports_modules",
	       "interpreter_state.size"),
	    IN(D_TP_NAME, 8, D_TP_SIZE, "type_object.tp_name", "type_object.size"),
	    IN(D_TP_FLAGS, 8, D_TP_SIZE, "type_object.tp_flags", "type_object.size"),
	    IN(D_TU_ITEMS, 0, D_TU_SIZE, "tuple_object.ob_item", "tuple_object.size"),
	    IN(D_LI_ITEMS, 8, D_LI_SIZE, "list_object.ob_item", "list_object.size"),
	    IN(D_DI_KEYS, 8, D_DI_SIZE, "dict_object.ma_keys", "dict_object.size"),
	    IN(D_DI_VALUES, 8, D_DI_SIZE, "dict_object.ma_values", "dict_object.size"),
#undef IN
	};
	static const struct {
		enum dfield f;
		uint64_t cap;
		const char *name;
	} sizes[] = {
	    {D_RT_SIZE, CAP_BIG, "runtime_state.size"},
	    {D_IS_SIZE, CAP_BIG, "interpreter_state.size"},
	    {D_TS_SIZE, CAP_SMALL, "thread_state.size"},
	    {D_FR_SIZE, CAP_SMALL, "interpreter_frame.size"},
	    {D_CO_SIZE, CAP_SMALL, "code_object.size"},
	    {D_OB_SIZE, CAP_SMALL, "pyobject.size"},
	    {D_BY_SIZE, CAP_SMALL, "bytes_object.size"},
	    {D_UN_SIZE, CAP_SMALL, "unicode_object.size"},
	    {D_TP_SIZE, CAP_SMALL, "type_object.size"},
	    {D_TU_SIZE, CAP_SMALL, "tuple_object.size"},
	    {D_LI_SIZE, CAP_SMALL, "list_object.size"},
	    {D_DI_SIZE, CAP_SMALL, "dict_object.size"},
	    {D_GC_SIZE, CAP_BIG, "gc.size"},
	};
	int ret;

	if (vals->v[D_FREE_THREADED] > 1)
		return pms_error_set(err, PMS_EGARBAGE,
				     "_Py_DebugOffsets: free_threaded = %" PRIu64
				     " is neither 0 nor 1: not a CPython runtime, or its memory is "
				     "damaged",
				     vals->v[D_FREE_THREADED]);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ret = check_size(vals, sizes[i].f, sizes[i].cap, sizes[i].name, err);
		if (ret)
			return ret;
	}
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		ret =
		    check_in(vals, in[i].f, in[i].width, in[i].size, in[i].fname, in[i].sname, err);
		if (ret)
			return ret;
	}
	/* The GIL fields are interpreter-relative; we keep them relative to the GIL struct. */
	if (vals->v[D_IS_GIL_LOCKED] < vals->v[D_IS_GIL_RUNTIME_STATE] ||
	    vals->v[D_IS_GIL_HOLDER] < vals->v[D_IS_GIL_RUNTIME_STATE])
		return pms_error_set(err, PMS_EGARBAGE,
				     "_Py_DebugOffsets: the GIL's locked (%" PRIu64
				     ") or last_holder (%" PRIu64
				     ") lies before the GIL itself (%" PRIu64 ")",
				     vals->v[D_IS_GIL_LOCKED], vals->v[D_IS_GIL_HOLDER],
				     vals->v[D_IS_GIL_RUNTIME_STATE]);
	return 0;
}

/* 0 in a free-threading-only field means "not in this build" (pycore_debug_offsets.h). */
static int32_t optional(const struct values *vals, enum dfield f)
{
	return vals->have[f] && vals->v[f] != 0 ? (int32_t)vals->v[f] : PY_OFF_NONE;
}

int pydebug_parse(const void *blob, size_t len, const struct py_layout *base, struct py_layout *out,
		  struct pms_error *err)
{
	const uint8_t *p = blob;
	const struct format *fmt;
	struct values vals;
	struct py_layout l;
	uint64_t version;
	int ft, major, minor, ret;

	if (pydebug_header(blob, len, &version, &ft) != 0)
		return pms_error_set(
		    err, PMS_EGARBAGE,
		    "_Py_DebugOffsets: no \"%s\" cookie at the start of _PyRuntime",
		    PYDEBUG_COOKIE);
	major = (int)((version >> 24) & 0xff);
	minor = (int)((version >> 16) & 0xff);
	if (version >> 32)
		return pms_error_set(
		    err, PMS_EGARBAGE,
		    "_Py_DebugOffsets: version 0x%" PRIx64
		    " is not a PY_VERSION_HEX: not a CPython runtime, or its memory "
		    "is damaged",
		    version);
	fmt = major == 3 ? format_for(minor) : NULL;
	if (!fmt)
		return pms_error_set(
		    err, PMS_EUNSUPPORTED,
		    "Python %d.%d publishes _Py_DebugOffsets in a format this build "
		    "of pymemspy does not know (it reads those of 3.13 and 3.14)",
		    major, minor);
	/* The struct is only stable from the first release candidate on (pycore_runtime.h:
	 * "stable between patch versions"); alphas and betas reshuffled it. */
	if (major == 3 && (version & 0xf0) < 0xc0)
		return pms_error_set(err, PMS_EUNSUPPORTED,
				     "Python %d.%d pre-release 0x%08" PRIx64
				     ": its _Py_DebugOffsets may predate the released format",
				     major, minor, version);
	if (len < fmt->nfields * 8)
		return pms_error_set(
		    err, PMS_EGARBAGE,
		    "_Py_DebugOffsets: got %zu bytes, Python 3.%d's struct has %zu: "
		    "the read was cut short",
		    len, minor, fmt->nfields * 8);

	memset(&vals, 0, sizeof(vals));
	for (size_t i = 0; i < fmt->nfields; i++) {
		enum dfield f = fmt->fields[i];

		if (f == D_SKIP)
			continue;
		memcpy(&vals.v[f], p + 8 * i, sizeof(vals.v[f]));
		vals.have[f] = true;
	}
	ret = validate(&vals, err);
	if (ret)
		return ret;

	if (base)
		l = *base;
	else
		memset(&l, 0, sizeof(l));
	l.major = (uint8_t)major;
	l.minor = (uint8_t)minor;
	if (l.frame_model == 0) {
		/* A zeroed base: fill what every 3.13+ has in common. */
		l.frame_model = PY_FRAMES_CURRENT;
		l.linetable_kind = PY_LINES_LOCATIONS311;
		l.gil_model = PY_GIL_INTERP_PTR;
		l.owner_skip_from = 3; /* FRAME_OWNED_BY_CSTACK (3.13) / _INTERPRETER (3.14) */
		l.executable_tag_mask = minor >= 14 ? (ft ? 1 : 3) : 0; /* Py_TAG_BITS */
		l.tstate_frame = l.tstate_cframe = l.cframe_current_frame = PY_OFF_NONE;
		l.frame_lasti = PY_OFF_NONE;
		l.runtime_gilstate_tstate_current = PY_OFF_NONE;
		l.runtime_gil_locked = l.runtime_gil_last_holder = PY_OFF_NONE;
	}
	/* Every value passed validate(), so each fits an int32_t. */
	l.runtime_interpreters_head = (int32_t)vals.v[D_RT_INTERPRETERS_HEAD];

	l.interp_next = (int32_t)vals.v[D_IS_NEXT];
	l.interp_threads_head = (int32_t)vals.v[D_IS_THREADS_HEAD];
	l.interp_id = (int32_t)vals.v[D_IS_ID];
	l.interp_ceval_gil = (int32_t)vals.v[D_IS_CEVAL_GIL];
	l.gil_locked = (int32_t)(vals.v[D_IS_GIL_LOCKED] - vals.v[D_IS_GIL_RUNTIME_STATE]);
	l.gil_last_holder = (int32_t)(vals.v[D_IS_GIL_HOLDER] - vals.v[D_IS_GIL_RUNTIME_STATE]);

	l.tstate_next = (int32_t)vals.v[D_TS_NEXT];
	l.tstate_interp = (int32_t)vals.v[D_TS_INTERP];
	l.tstate_current_frame = (int32_t)vals.v[D_TS_CURRENT_FRAME];
	l.tstate_thread_id = (int32_t)vals.v[D_TS_THREAD_ID];
	l.tstate_native_thread_id = (int32_t)vals.v[D_TS_NATIVE_THREAD_ID];

	l.frame_previous = (int32_t)vals.v[D_FR_PREVIOUS];
	l.frame_code = (int32_t)vals.v[D_FR_EXECUTABLE];
	l.frame_instr_ptr = (int32_t)vals.v[D_FR_INSTR_PTR];
	l.frame_owner = (int32_t)vals.v[D_FR_OWNER];
	l.frame_size = (int32_t)vals.v[D_FR_SIZE];
	l.frame_tlbc_index = optional(&vals, D_FR_TLBC_INDEX);

	l.code_argcount = (int32_t)vals.v[D_CO_ARGCOUNT];
	l.code_firstlineno = (int32_t)vals.v[D_CO_FIRSTLINENO];
	l.code_filename = (int32_t)vals.v[D_CO_FILENAME];
	l.code_name = (int32_t)vals.v[D_CO_NAME];
	l.code_qualname = (int32_t)vals.v[D_CO_QUALNAME];
	l.code_linetable = (int32_t)vals.v[D_CO_LINETABLE];
	l.code_code_adaptive = (int32_t)vals.v[D_CO_CODE_ADAPTIVE];
	l.code_tlbc = optional(&vals, D_CO_TLBC);
	l.code_size = (int32_t)vals.v[D_CO_SIZE];

	l.object_type = (int32_t)vals.v[D_OB_TYPE];
	l.varobject_size = (int32_t)vals.v[D_BY_OB_SIZE];
	l.bytes_data = (int32_t)vals.v[D_BY_OB_SVAL];
	l.unicode_length = (int32_t)vals.v[D_UN_LENGTH];
	l.unicode_state = (int32_t)vals.v[D_UN_STATE];
	l.unicode_ascii_data = (int32_t)vals.v[D_UN_ASCII_SIZE];

	/* What census reads; the rest of its fields (generations inside the collector's state,
	 * dict keys, sets) are not published and keep the table's values. */
	l.interp_gc = (int32_t)vals.v[D_IS_GC];
	l.runtime_gc = PY_OFF_NONE;
	l.interp_modules = (int32_t)vals.v[D_IS_IMPORTS_MODULES];
	l.type_name = (int32_t)vals.v[D_TP_NAME];
	l.type_flags = (int32_t)vals.v[D_TP_FLAGS];
	l.type_size = (int32_t)vals.v[D_TP_SIZE];
	l.tuple_items = (int32_t)vals.v[D_TU_ITEMS];
	l.list_items = (int32_t)vals.v[D_LI_ITEMS];
	l.dict_keys = (int32_t)vals.v[D_DI_KEYS];
	l.dict_values = (int32_t)vals.v[D_DI_VALUES];

	*out = l;
	return 0;
}

/* The fields pydebug_parse() takes from the blob: the only ones worth comparing. */
#define PUBLISHED(X)                                                                               \
	X(runtime_interpreters_head)                                                               \
	X(interp_next)                                                                             \
	X(interp_threads_head)                                                                     \
	X(interp_id)                                                                               \
	X(interp_ceval_gil)                                                                        \
	X(gil_locked)                                                                              \
	X(gil_last_holder)                                                                         \
	X(tstate_next)                                                                             \
	X(tstate_interp)                                                                           \
	X(tstate_current_frame)                                                                    \
	X(tstate_thread_id)                                                                        \
	X(tstate_native_thread_id)                                                                 \
	X(frame_previous)                                                                          \
	X(frame_code)                                                                              \
	X(frame_instr_ptr)                                                                         \
	X(frame_owner)                                                                             \
	X(frame_size)                                                                              \
	X(frame_tlbc_index)                                                                        \
	X(code_argcount)                                                                           \
	X(code_firstlineno)                                                                        \
	X(code_filename)                                                                           \
	X(code_name)                                                                               \
	X(code_qualname)                                                                           \
	X(code_linetable)                                                                          \
	X(code_code_adaptive)                                                                      \
	X(code_tlbc)                                                                               \
	X(code_size)                                                                               \
	X(object_type)                                                                             \
	X(varobject_size)                                                                          \
	X(bytes_data)                                                                              \
	X(unicode_length)                                                                          \
	X(unicode_state)                                                                           \
	X(unicode_ascii_data)                                                                      \
	X(interp_gc)                                                                               \
	X(interp_modules)                                                                          \
	X(type_name)                                                                               \
	X(type_flags)                                                                              \
	X(type_size)                                                                               \
	X(tuple_items)                                                                             \
	X(list_items)                                                                              \
	X(dict_keys)                                                                               \
	X(dict_values)

int pydebug_crosscheck(const struct py_layout *published, const struct py_layout *table,
		       struct pms_error *err)
{
	if (!published || !table)
		return 0;
	if (published->major != table->major || published->minor != table->minor)
		return pms_error_set(err, PMS_EGARBAGE,
				     "the target publishes offsets for Python %d.%d, the table is "
				     "for %d.%d",
				     published->major, published->minor, table->major,
				     table->minor);
#define COMPARE(field)                                                                             \
	if (published->field != PY_OFF_NONE && table->field != PY_OFF_NONE &&                      \
	    published->field != table->field)                                                      \
		return pms_error_set(err, PMS_EGARBAGE,                                            \
				     "%s: the target publishes %d, the built-in table for "        \
				     "%d.%d says %d",                                              \
				     #field, (int)published->field, table->major, table->minor,    \
				     (int)table->field);
	PUBLISHED(COMPARE)
#undef COMPARE
	return 0;
}
