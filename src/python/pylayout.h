/* CPython memory layouts: where each field we read lives, per minor version.
 *
 * Version differences are data: one struct py_layout per minor version, generated from each
 * interpreter's own headers by tools/gen-layouts.sh (`make layouts`; src/pylayout_table.c,
 * committed), and overridden by the target's own _Py_DebugOffsets where the interpreter publishes
 * them (3.13+). Offsets are in bytes; PY_OFF_NONE marks a field this version does not have. */
#ifndef PMS_PYLAYOUT_H
#define PMS_PYLAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define PY_OFF_NONE (-1)

/* How a thread's frames are chained. */
enum py_frame_model {
	PY_FRAMES_OBJECTS = 1, /* 3.8-3.10: tstate->frame, PyFrameObject, f_back/f_code/f_lasti */
	PY_FRAMES_CFRAME = 2,  /* 3.11-3.12: tstate->cframe->current_frame, _PyInterpreterFrame */
	PY_FRAMES_CURRENT = 3, /* 3.13+: tstate->current_frame, _PyInterpreterFrame */
};

/* Which line-number table a code object carries (see linetable.h). */
enum py_linetable_kind {
	PY_LINES_LNOTAB = 1,	   /* 3.8-3.9 co_lnotab */
	PY_LINES_LINETABLE310 = 2, /* 3.10 co_linetable */
	PY_LINES_LOCATIONS311 = 3, /* 3.11+ co_linetable (location table) */
};

/* Where the GIL state lives. */
enum py_gil_model {
	PY_GIL_RUNTIME = 1,    /* 3.8-3.11: _PyRuntime.ceval.gil, holder also in gilstate */
	PY_GIL_INTERP_PTR = 2, /* 3.12+: interp->ceval.gil points to a struct _gil_runtime_state */
};

struct py_layout {
	uint8_t major, minor;
	uint8_t frame_model;	/* enum py_frame_model */
	uint8_t linetable_kind; /* enum py_linetable_kind */
	uint8_t gil_model;	/* enum py_gil_model */
	uint8_t lasti_in_bytes; /* 3.8-3.9: f_lasti counts bytes; 3.10: code units */
	/* Frames whose owner is >= this are interpreter-internal (entry/shim) and skipped;
	 * 0 means this version has no such frames. 3.12/3.13: 3 (FRAME_OWNED_BY_CSTACK),
	 * 3.14: 3 (INTERPRETER=3, CSTACK=4). */
	uint8_t owner_skip_from;
	/* Low bits to clear from f_executable / f_funcobj (3.14 _PyStackRef tags); 0 before. */
	uint8_t executable_tag_mask;

	/* _PyRuntimeState */
	int32_t runtime_interpreters_head;
	int32_t runtime_interpreters_main;
	int32_t runtime_gilstate_tstate_current; /* 3.8-3.11 */
	int32_t runtime_gil_locked;		 /* 3.8-3.11: _PyRuntime.ceval.gil.locked */
	int32_t runtime_gil_last_holder;	 /* 3.8-3.11: _PyRuntime.ceval.gil.last_holder */

	/* PyInterpreterState */
	int32_t interp_next;
	int32_t interp_threads_head; /* tstate_head (3.8-3.10) or threads.head (3.11+) */
	int32_t interp_id;
	int32_t interp_ceval_gil; /* 3.12+: pointer to struct _gil_runtime_state */
	int32_t gil_locked;	  /* 3.12+: offset inside struct _gil_runtime_state */
	int32_t gil_last_holder;  /* 3.12+: offset inside struct _gil_runtime_state */

	/* PyThreadState */
	int32_t tstate_next;
	int32_t tstate_interp;
	int32_t tstate_frame;		 /* 3.8-3.10: PyFrameObject *frame */
	int32_t tstate_cframe;		 /* 3.11-3.12: _PyCFrame *cframe */
	int32_t cframe_current_frame;	 /* 3.11-3.12: offset in _PyCFrame */
	int32_t tstate_current_frame;	 /* 3.13+ */
	int32_t tstate_thread_id;	 /* pthread_t */
	int32_t tstate_native_thread_id; /* 3.11+: kernel tid */

	/* Frames: PyFrameObject (3.8-3.10) or _PyInterpreterFrame (3.11+) */
	int32_t frame_previous;	  /* f_back or previous */
	int32_t frame_code;	  /* f_code or f_executable */
	int32_t frame_lasti;	  /* 3.8-3.10: int f_lasti */
	int32_t frame_instr_ptr;  /* 3.11-3.12 prev_instr, 3.13+ instr_ptr */
	int32_t frame_owner;	  /* 3.11+: char owner */
	int32_t frame_size;	  /* sizeof the frame struct, for one bounded read */
	int32_t frame_tlbc_index; /* 3.14t: int32, which co_tlbc copy instr_ptr is in */

	/* PyCodeObject */
	int32_t code_argcount;
	int32_t code_firstlineno;
	int32_t code_filename;
	int32_t code_name;
	int32_t code_qualname;	/* 3.11+ */
	int32_t code_linetable; /* co_lnotab (3.8-3.9) or co_linetable (3.10+), a bytes object */
	int32_t code_code_adaptive;  /* 3.11+: start of the bytecode inside the code object */
	int32_t code_firsttraceable; /* 3.11+: _co_firsttraceable */
	int32_t code_tlbc;	     /* 3.14t: _PyCodeArray *co_tlbc, per-thread bytecode */
	int32_t code_size;	     /* bytes to read to see every field above */

	/* Objects */
	int32_t object_type;	      /* ob_type in PyObject */
	int32_t varobject_size;	      /* ob_size in PyVarObject */
	int32_t bytes_data;	      /* ob_sval in PyBytesObject */
	int32_t unicode_length;	      /* PyASCIIObject.length */
	int32_t unicode_state;	      /* PyASCIIObject.state */
	int32_t unicode_ascii_data;   /* sizeof(PyASCIIObject) */
	int32_t unicode_compact_data; /* sizeof(PyCompactUnicodeObject) */
	/* Bit positions inside the 32-bit state word. */
	uint8_t unicode_state_kind_shift;    /* kind:3 */
	uint8_t unicode_state_compact_shift; /* compact:1 */
	uint8_t unicode_state_ascii_shift;   /* ascii:1 */

	/* The cyclic collector (census). Every GC object is preceded by a PyGC_Head whose
	 * _gc_next/_gc_prev link it into one generation's list (flag bits in the low bits of
	 * _gc_prev). The collector's state sits in _PyRuntime (3.8) or each interpreter (3.9+). */
	int32_t gc_head_size; /* sizeof(PyGC_Head) */
	int32_t gc_head_next;
	int32_t gc_head_prev;
	int32_t runtime_gc;		 /* 3.8: _PyRuntime.gc */
	int32_t interp_gc;		 /* 3.9+: interp->gc */
	int32_t gc_generations;		 /* generations[0] in struct _gc_runtime_state */
	int32_t gc_generation_stride;	 /* sizeof(struct gc_generation); its head is first */
	int32_t gc_generation_count;	 /* NUM_GENERATIONS */
	int32_t gc_permanent_generation; /* gc.freeze()'s list, in struct _gc_runtime_state */
	int32_t interp_modules;		 /* sys.modules: modules (3.8-3.11), imports.modules */
	int32_t module_dict;		 /* PyModuleObject.md_dict */

	/* PyTypeObject, PyHeapTypeObject and the tp_flags bits census reads. */
	int32_t type_name; /* const char *tp_name */
	int32_t type_basicsize;
	int32_t type_itemsize;
	int32_t type_flags; /* unsigned long tp_flags */
	int32_t type_dict;
	int32_t type_dictoffset;
	int32_t type_size; /* sizeof(PyTypeObject) */
	int32_t heaptype_qualname;
	int32_t heaptype_size; /* sizeof(PyHeapTypeObject) */
	int32_t tpflags_heaptype;
	int32_t tpflags_have_gc;
	int32_t tpflags_type_subclass_bit; /* 31: a mask of 1 << 31 does not fit an int32_t */
	int32_t tpflags_preheader; /* 3.11+: flags whose objects carry 2 words before the GC head */

	/* Containers and the buffers they own. */
	int32_t tuple_items; /* ob_item[] inline */
	int32_t list_items;  /* PyObject **ob_item */
	int32_t list_allocated;
	int32_t dict_used;
	int32_t dict_keys;		   /* PyDictKeysObject *ma_keys */
	int32_t dict_values;		   /* ma_values: NULL for a combined table */
	int32_t dictkeys_size;		   /* 3.8-3.10: Py_ssize_t dk_size */
	int32_t dictkeys_log2_size;	   /* 3.11+: uint8_t dk_log2_size */
	int32_t dictkeys_log2_index_bytes; /* 3.11+: uint8_t */
	int32_t dictkeys_kind;		   /* 3.11+: uint8_t dk_kind */
	int32_t dictkeys_unicode_kind;	   /* 3.11+: DICT_KEYS_UNICODE (entries without hash) */
	int32_t dictkeys_nentries;	   /* Py_ssize_t dk_nentries */
	int32_t dictkeys_indices;	   /* dk_indices[]; the entries follow the index array */
	int32_t dictentry_size;		   /* PyDictKeyEntry {hash, key, value} */
	int32_t dictentry_key;
	int32_t dictentry_value;
	int32_t dictunicodeentry_size; /* 3.11+: PyDictUnicodeEntry {key, value} */
	int32_t dictunicodeentry_key;
	int32_t dictunicodeentry_value;
	int32_t dictvalues_values; /* values[] inside what ma_values points to */
	int32_t set_used;
	int32_t set_mask;
	int32_t set_table;
	int32_t set_smalltable; /* table == &smalltable: nothing allocated apart */
	int32_t setentry_size;
	int32_t setentry_key;
	int32_t long_tag;	   /* 3.12+: lv_tag (digit count << nonsize bits | sign) */
	int32_t long_nonsize_bits; /* 3.12+ */
};

/* Build flavours that change layouts. */
enum py_build {
	PY_BUILD_RELEASE = 0,
	PY_BUILD_DEBUG = 1,
	PY_BUILD_FREE_THREADED = 2,
};

/* The built-in layout for a minor version and build, or NULL when we have none
 * (unsupported version, or a build whose layout only _Py_DebugOffsets can give). */
const struct py_layout *pylayout_builtin(int major, int minor, enum py_build build);

/* Lowest and highest minor version of Python 3 with a built-in layout. */
void pylayout_supported_range(int *min_minor, int *max_minor);

const char *pylayout_build_name(enum py_build build);

/* The generated table (src/pylayout_table.c). */
struct pylayout_entry {
	int major, minor;
	enum py_build build;
	const char *source; /* where the numbers came from: headers of which interpreter */
	struct py_layout layout;
};
extern const struct pylayout_entry pylayout_table[];
extern const size_t pylayout_table_len;

#endif
