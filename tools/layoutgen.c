/* layoutgen: prints one pylayout_table[] entry measured from the CPython headers it is compiled
 * against. tools/gen-layouts.sh builds it once per installed interpreter:
 *
 *   cc -std=gnu11 -DPy_BUILD_CORE -I<include>/python3.X -I<include>/python3.X/internal \
 *      tools/layoutgen.c -o layoutgen && ./layoutgen <release|debug|free-threaded> "<source>"
 *
 * Every number comes from offsetof/sizeof on the interpreter's own structs, or from poking a real
 * struct (the unicode state bitfield), so nothing here is transcribed by hand. Field names differ
 * between versions: the few conditionals are the macros in "Version differences" below. */
#include <Python.h>
#include <frameobject.h>

#include "pycore_pystate.h"
#if PY_VERSION_HEX >= 0x03090000
#include "pycore_interp.h" /* struct _is left pycore_pystate.h in 3.9 */
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include "pycore_frame.h"
#endif
#if PY_VERSION_HEX >= 0x030A0000
#include "pycore_moduleobject.h"
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include "pycore_dict.h"
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NONE		  (-1L)
#define OFF(type, member) ((long)offsetof(type, member))
#define SIZE(type)	  ((long)sizeof(type))

/* ---- Version differences (3.8 .. 3.13) ---- */

#if PY_VERSION_HEX >= 0x030B0000
#define THREADS_HEAD threads.head
#else
#define THREADS_HEAD tstate_head
#endif

/* Up to 3.11 the GIL lives in _PyRuntime and gilstate names its holder; from 3.12 each
 * interpreter points at its own struct _gil_runtime_state. */
#if PY_VERSION_HEX < 0x030C0000
#define GIL_MODEL	   "PY_GIL_RUNTIME"
#define RT_TSTATE_CURRENT  OFF(_PyRuntimeState, gilstate.tstate_current)
#define RT_GIL_LOCKED	   OFF(_PyRuntimeState, ceval.gil.locked)
#define RT_GIL_LAST_HOLDER OFF(_PyRuntimeState, ceval.gil.last_holder)
#define INTERP_CEVAL_GIL   NONE
#define GIL_LOCKED	   NONE
#define GIL_LAST_HOLDER	   NONE
#else
#define GIL_MODEL	   "PY_GIL_INTERP_PTR"
#define RT_TSTATE_CURRENT  NONE
#define RT_GIL_LOCKED	   NONE
#define RT_GIL_LAST_HOLDER NONE
#define INTERP_CEVAL_GIL   OFF(PyInterpreterState, ceval.gil)
#define GIL_LOCKED	   OFF(struct _gil_runtime_state, locked)
#define GIL_LAST_HOLDER	   OFF(struct _gil_runtime_state, last_holder)
#endif

#if PY_VERSION_HEX < 0x030B0000 /* 3.8-3.10: PyFrameObject chain */
#define FRAME_MODEL	 "PY_FRAMES_OBJECTS"
#define TS_FRAME	 OFF(PyThreadState, frame)
#define TS_CFRAME	 NONE
#define CFRAME_CURRENT	 NONE
#define TS_CURRENT_FRAME NONE
#define TS_NATIVE_TID	 NONE
#define FRAME_PREVIOUS	 OFF(PyFrameObject, f_back)
#define FRAME_CODE	 OFF(PyFrameObject, f_code)
#define FRAME_LASTI	 OFF(PyFrameObject, f_lasti)
#define FRAME_INSTR	 NONE
#define FRAME_OWNER	 NONE
#define FRAME_SIZE	 SIZE(PyFrameObject)
#elif PY_VERSION_HEX < 0x030D0000 /* 3.11-3.12: cframe->current_frame */
#define FRAME_MODEL	 "PY_FRAMES_CFRAME"
#define TS_FRAME	 NONE
#define TS_CFRAME	 OFF(PyThreadState, cframe)
#define CFRAME_CURRENT	 OFF(_PyCFrame, current_frame)
#define TS_CURRENT_FRAME NONE
#define TS_NATIVE_TID	 OFF(PyThreadState, native_thread_id)
#define FRAME_PREVIOUS	 OFF(_PyInterpreterFrame, previous)
#define FRAME_CODE	 OFF(_PyInterpreterFrame, f_code)
#define FRAME_LASTI	 NONE
#define FRAME_INSTR	 OFF(_PyInterpreterFrame, prev_instr)
#define FRAME_OWNER	 OFF(_PyInterpreterFrame, owner)
#define FRAME_SIZE	 SIZE(_PyInterpreterFrame)
#else /* 3.13: tstate->current_frame */
#define FRAME_MODEL	 "PY_FRAMES_CURRENT"
#define TS_FRAME	 NONE
#define TS_CFRAME	 NONE
#define CFRAME_CURRENT	 NONE
#define TS_CURRENT_FRAME OFF(PyThreadState, current_frame)
#define TS_NATIVE_TID	 OFF(PyThreadState, native_thread_id)
#define FRAME_PREVIOUS	 OFF(_PyInterpreterFrame, previous)
#define FRAME_CODE	 OFF(_PyInterpreterFrame, f_executable)
#define FRAME_LASTI	 NONE
#define FRAME_INSTR	 OFF(_PyInterpreterFrame, instr_ptr)
#define FRAME_OWNER	 OFF(_PyInterpreterFrame, owner)
#define FRAME_SIZE	 SIZE(_PyInterpreterFrame)
#endif

/* 3.12 added shim frames owned by the C stack; everything at or above that owner is skipped. */
#if PY_VERSION_HEX >= 0x030C0000
#define OWNER_SKIP_FROM ((long)FRAME_OWNED_BY_CSTACK)
#else
#define OWNER_SKIP_FROM 0L
#endif

#if PY_VERSION_HEX < 0x030A0000
#define LINETABLE_KIND "PY_LINES_LNOTAB"
#define CODE_LINETABLE OFF(PyCodeObject, co_lnotab)
#define LASTI_IN_BYTES 1L
#elif PY_VERSION_HEX < 0x030B0000
#define LINETABLE_KIND "PY_LINES_LINETABLE310"
#define CODE_LINETABLE OFF(PyCodeObject, co_linetable)
#define LASTI_IN_BYTES 0L
#else
#define LINETABLE_KIND "PY_LINES_LOCATIONS311"
#define CODE_LINETABLE OFF(PyCodeObject, co_linetable)
#define LASTI_IN_BYTES 0L
#endif

#if PY_VERSION_HEX >= 0x030B0000
#define CODE_QUALNAME	    OFF(PyCodeObject, co_qualname)
#define CODE_ADAPTIVE	    OFF(PyCodeObject, co_code_adaptive)
#define CODE_FIRSTTRACEABLE OFF(PyCodeObject, _co_firsttraceable)
#else
#define CODE_QUALNAME	    NONE
#define CODE_ADAPTIVE	    NONE
#define CODE_FIRSTTRACEABLE NONE
#endif

/* ---- Census: the collector's lists, types, containers ---- */

/* The collector's state sits in _PyRuntime in 3.8 and in each interpreter from 3.9. */
#if PY_VERSION_HEX < 0x03090000
#define RT_GC	  OFF(_PyRuntimeState, gc)
#define INTERP_GC NONE
#else
#define RT_GC	  NONE
#define INTERP_GC OFF(PyInterpreterState, gc)
#endif

/* sys.modules: interp->modules until 3.11, interp->imports.modules from 3.12. */
#if PY_VERSION_HEX < 0x030C0000
#define INTERP_MODULES OFF(PyInterpreterState, modules)
#else
#define INTERP_MODULES OFF(PyInterpreterState, imports.modules)
#endif

/* Before 3.10 PyModuleObject is private to Objects/moduleobject.c and before 3.11 the dict keys
 * object to Objects/dict-common.h: no installed header declares them. These declarations carry
 * only the members up to the ones we measure, in CPython's order and types (3.8.18, 3.9.18 and
 * 3.10.13 read the same: md_dict follows the object header; dk_refcnt, dk_size, dk_lookup,
 * dk_usable, dk_nentries, then the index array). A live 13-key dict of each of those
 * interpreters, read through ctypes, showed 1, 32, a pointer, 8, 13 in those five words; census's
 * end-to-end test reads every dict of its target through these numbers. */
#if PY_VERSION_HEX < 0x030A0000
typedef struct {
	PyObject_HEAD PyObject *md_dict;
} PyModuleObject;
#endif
#if PY_VERSION_HEX < 0x030B0000
struct pms_dictkeys_38 {
	Py_ssize_t dk_refcnt;
	Py_ssize_t dk_size;
	void *dk_lookup;
	Py_ssize_t dk_usable;
	Py_ssize_t dk_nentries;
	char dk_indices[];
};
struct pms_dictentry_38 {
	Py_hash_t me_hash;
	PyObject *me_key;
	PyObject *me_value;
};
#define DK_SIZE_FIELD	      OFF(struct pms_dictkeys_38, dk_size)
#define DK_LOG2_SIZE	      NONE
#define DK_LOG2_INDEX_BYTES   NONE
#define DK_KIND		      NONE
#define DK_NENTRIES	      OFF(struct pms_dictkeys_38, dk_nentries)
#define DK_INDICES	      OFF(struct pms_dictkeys_38, dk_indices)
#define DICTENTRY_SIZE	      SIZE(struct pms_dictentry_38)
#define DICTENTRY_KEY	      OFF(struct pms_dictentry_38, me_key)
#define DICTENTRY_VALUE	      OFF(struct pms_dictentry_38, me_value)
#define DICTUENTRY_SIZE	      NONE
#define DICTUENTRY_KEY	      NONE
#define DICTUENTRY_VALUE      NONE
#define DICTVALUES_VALUES     0L /* ma_values is a plain PyObject *[] */
#define DICTKEYS_UNICODE_KIND NONE
#else
#define DK_SIZE_FIELD	      NONE
#define DK_LOG2_SIZE	      OFF(PyDictKeysObject, dk_log2_size)
#define DK_LOG2_INDEX_BYTES   OFF(PyDictKeysObject, dk_log2_index_bytes)
#define DK_KIND		      OFF(PyDictKeysObject, dk_kind)
#define DK_NENTRIES	      OFF(PyDictKeysObject, dk_nentries)
#define DK_INDICES	      OFF(PyDictKeysObject, dk_indices)
#define DICTENTRY_SIZE	      SIZE(PyDictKeyEntry)
#define DICTENTRY_KEY	      OFF(PyDictKeyEntry, me_key)
#define DICTENTRY_VALUE	      OFF(PyDictKeyEntry, me_value)
#define DICTUENTRY_SIZE	      SIZE(PyDictUnicodeEntry)
#define DICTUENTRY_KEY	      OFF(PyDictUnicodeEntry, me_key)
#define DICTUENTRY_VALUE      OFF(PyDictUnicodeEntry, me_value)
#define DICTVALUES_VALUES     OFF(PyDictValues, values)
#define DICTKEYS_UNICODE_KIND ((long)DICT_KEYS_UNICODE)
#endif

/* Objects that carry words before their PyGC_Head (managed dict and weakref slots). */
#if PY_VERSION_HEX >= 0x030C0000
#define TPFLAGS_PREHEADER ((long)Py_TPFLAGS_PREHEADER)
#elif PY_VERSION_HEX >= 0x030B0000
#define TPFLAGS_PREHEADER ((long)Py_TPFLAGS_MANAGED_DICT)
#else
#define TPFLAGS_PREHEADER 0L
#endif

/* 3.12 packs an int's digit count and sign into lv_tag. */
#if PY_VERSION_HEX >= 0x030C0000
#define LONG_TAG	  OFF(PyLongObject, long_value.lv_tag)
#define LONG_NONSIZE_BITS ((long)_PyLong_NON_SIZE_BITS)
#else
#define LONG_TAG	  NONE
#define LONG_NONSIZE_BITS NONE
#endif

/* ---- Output ---- */

static void num(const char *name, long v)
{
	if (v < 0)
		printf("\t\t\t.%s = PY_OFF_NONE,\n", name);
	else
		printf("\t\t\t.%s = %ld,\n", name, v);
}

static void sym(const char *name, const char *v)
{
	printf("\t\t\t.%s = %s,\n", name, v);
}

/* Lowest set bit of the 32-bit word at `off`: where a bitfield we just set to 1 landed. */
static long lowest_bit(const void *obj, size_t off)
{
	uint32_t w;

	memcpy(&w, (const char *)obj + off, sizeof(w));
	for (long bit = 0; bit < 32; bit++)
		if (w & (UINT32_C(1) << bit))
			return bit;
	return -1;
}

/* The number of the only set bit of a flag. */
static long bit_number(unsigned long flag)
{
	for (long bit = 0; bit < 64; bit++)
		if (flag == (1UL << bit))
			return bit;
	return -1;
}

/* The compiler places bitfields; ask it rather than trusting a transcription. */
static long unicode_bit(int which)
{
	PyASCIIObject a;

	memset(&a, 0, sizeof(a));
	if (which == 0)
		a.state.kind = 1;
	else if (which == 1)
		a.state.compact = 1;
	else
		a.state.ascii = 1;
	return lowest_bit(&a, offsetof(PyASCIIObject, state));
}

int main(int argc, char **argv)
{
	const char *build, *build_enum;

	if (argc != 3) {
		fprintf(stderr, "usage: %s release|debug|free-threaded SOURCE\n", argv[0]);
		return 2;
	}
	build = argv[1];
	if (strcmp(build, "release") == 0)
		build_enum = "PY_BUILD_RELEASE";
	else if (strcmp(build, "debug") == 0)
		build_enum = "PY_BUILD_DEBUG";
	else if (strcmp(build, "free-threaded") == 0)
		build_enum = "PY_BUILD_FREE_THREADED";
	else {
		fprintf(stderr, "layoutgen: unknown build %s\n", build);
		return 2;
	}
	/* The flavour must be what the headers were compiled as, or the entry would lie. */
#ifdef Py_DEBUG
	const char *compiled = "debug";
#elif defined(Py_GIL_DISABLED)
	const char *compiled = "free-threaded";
#else
	const char *compiled = "release";
#endif
	if (strcmp(build, compiled) != 0) {
		fprintf(stderr, "layoutgen: asked for %s but the headers were compiled as %s\n",
			build, compiled);
		return 1;
	}

	printf("\t{\n");
	printf("\t\t.major = %d,\n\t\t.minor = %d,\n", PY_MAJOR_VERSION, PY_MINOR_VERSION);
	printf("\t\t.build = %s,\n", build_enum);
	printf("\t\t.source = \"%s\",\n", argv[2]);
	printf("\t\t.layout = {\n");
	num("major", PY_MAJOR_VERSION);
	num("minor", PY_MINOR_VERSION);
	sym("frame_model", FRAME_MODEL);
	sym("linetable_kind", LINETABLE_KIND);
	sym("gil_model", GIL_MODEL);
	num("lasti_in_bytes", LASTI_IN_BYTES);
	num("owner_skip_from", OWNER_SKIP_FROM);
	num("executable_tag_mask", 0); /* f_executable is a plain PyObject * before 3.14 */

	num("runtime_interpreters_head", OFF(_PyRuntimeState, interpreters.head));
	num("runtime_interpreters_main", OFF(_PyRuntimeState, interpreters.main));
	num("runtime_gilstate_tstate_current", RT_TSTATE_CURRENT);
	num("runtime_gil_locked", RT_GIL_LOCKED);
	num("runtime_gil_last_holder", RT_GIL_LAST_HOLDER);

	num("interp_next", OFF(PyInterpreterState, next));
	num("interp_threads_head", OFF(PyInterpreterState, THREADS_HEAD));
	num("interp_id", OFF(PyInterpreterState, id));
	num("interp_ceval_gil", INTERP_CEVAL_GIL);
	num("gil_locked", GIL_LOCKED);
	num("gil_last_holder", GIL_LAST_HOLDER);

	num("tstate_next", OFF(PyThreadState, next));
	num("tstate_interp", OFF(PyThreadState, interp));
	num("tstate_frame", TS_FRAME);
	num("tstate_cframe", TS_CFRAME);
	num("cframe_current_frame", CFRAME_CURRENT);
	num("tstate_current_frame", TS_CURRENT_FRAME);
	num("tstate_thread_id", OFF(PyThreadState, thread_id));
	num("tstate_native_thread_id", TS_NATIVE_TID);

	num("frame_previous", FRAME_PREVIOUS);
	num("frame_code", FRAME_CODE);
	num("frame_lasti", FRAME_LASTI);
	num("frame_instr_ptr", FRAME_INSTR);
	num("frame_owner", FRAME_OWNER);
	num("frame_size", FRAME_SIZE);
	num("frame_tlbc_index", NONE); /* thread-local bytecode arrived in 3.14t */

	num("code_argcount", OFF(PyCodeObject, co_argcount));
	num("code_firstlineno", OFF(PyCodeObject, co_firstlineno));
	num("code_filename", OFF(PyCodeObject, co_filename));
	num("code_name", OFF(PyCodeObject, co_name));
	num("code_qualname", CODE_QUALNAME);
	num("code_linetable", CODE_LINETABLE);
	num("code_code_adaptive", CODE_ADAPTIVE);
	num("code_firsttraceable", CODE_FIRSTTRACEABLE);
	num("code_tlbc", NONE);
	num("code_size", SIZE(PyCodeObject));

	num("object_type", OFF(PyObject, ob_type));
	num("varobject_size", OFF(PyVarObject, ob_size));
	num("bytes_data", OFF(PyBytesObject, ob_sval));
	num("unicode_length", OFF(PyASCIIObject, length));
	num("unicode_state", OFF(PyASCIIObject, state));
	num("unicode_ascii_data", SIZE(PyASCIIObject));
	num("unicode_compact_data", SIZE(PyCompactUnicodeObject));
	num("unicode_state_kind_shift", unicode_bit(0));
	num("unicode_state_compact_shift", unicode_bit(1));
	num("unicode_state_ascii_shift", unicode_bit(2));

	num("gc_head_size", SIZE(PyGC_Head));
	num("gc_head_next", OFF(PyGC_Head, _gc_next));
	num("gc_head_prev", OFF(PyGC_Head, _gc_prev));
	num("runtime_gc", RT_GC);
	num("interp_gc", INTERP_GC);
	num("gc_generations", OFF(struct _gc_runtime_state, generations));
	num("gc_generation_stride", SIZE(struct gc_generation));
	num("gc_generation_count", NUM_GENERATIONS);
	num("gc_permanent_generation", OFF(struct _gc_runtime_state, permanent_generation));
	num("interp_modules", INTERP_MODULES);
	num("module_dict", OFF(PyModuleObject, md_dict));

	num("type_name", OFF(PyTypeObject, tp_name));
	num("type_basicsize", OFF(PyTypeObject, tp_basicsize));
	num("type_itemsize", OFF(PyTypeObject, tp_itemsize));
	num("type_flags", OFF(PyTypeObject, tp_flags));
	num("type_dict", OFF(PyTypeObject, tp_dict));
	num("type_dictoffset", OFF(PyTypeObject, tp_dictoffset));
	num("type_size", SIZE(PyTypeObject));
	num("heaptype_qualname", OFF(PyHeapTypeObject, ht_qualname));
	num("heaptype_size", SIZE(PyHeapTypeObject));
	num("tpflags_heaptype", (long)Py_TPFLAGS_HEAPTYPE);
	num("tpflags_have_gc", (long)Py_TPFLAGS_HAVE_GC);
	/* 1 << 31 does not fit the table's int32_t: its bit number does. */
	num("tpflags_type_subclass_bit", bit_number((unsigned long)Py_TPFLAGS_TYPE_SUBCLASS));
	num("tpflags_preheader", TPFLAGS_PREHEADER);

	num("tuple_items", OFF(PyTupleObject, ob_item));
	num("list_items", OFF(PyListObject, ob_item));
	num("list_allocated", OFF(PyListObject, allocated));
	num("dict_used", OFF(PyDictObject, ma_used));
	num("dict_keys", OFF(PyDictObject, ma_keys));
	num("dict_values", OFF(PyDictObject, ma_values));
	num("dictkeys_size", DK_SIZE_FIELD);
	num("dictkeys_log2_size", DK_LOG2_SIZE);
	num("dictkeys_log2_index_bytes", DK_LOG2_INDEX_BYTES);
	num("dictkeys_kind", DK_KIND);
	num("dictkeys_unicode_kind", DICTKEYS_UNICODE_KIND);
	num("dictkeys_nentries", DK_NENTRIES);
	num("dictkeys_indices", DK_INDICES);
	num("dictentry_size", DICTENTRY_SIZE);
	num("dictentry_key", DICTENTRY_KEY);
	num("dictentry_value", DICTENTRY_VALUE);
	num("dictunicodeentry_size", DICTUENTRY_SIZE);
	num("dictunicodeentry_key", DICTUENTRY_KEY);
	num("dictunicodeentry_value", DICTUENTRY_VALUE);
	num("dictvalues_values", DICTVALUES_VALUES);
	num("set_used", OFF(PySetObject, used));
	num("set_mask", OFF(PySetObject, mask));
	num("set_table", OFF(PySetObject, table));
	num("set_smalltable", OFF(PySetObject, smalltable));
	num("setentry_size", SIZE(setentry));
	num("setentry_key", OFF(setentry, key));
	num("long_tag", LONG_TAG);
	num("long_nonsize_bits", LONG_NONSIZE_BITS);
	printf("\t\t},\n\t},\n");
	return 0;
}
