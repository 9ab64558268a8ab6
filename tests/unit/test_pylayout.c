/* The generated layout table: sane, equal to the measured offsets, and reproducible. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pylayout.h"

#define PYENV "/root/.pyenv/versions/"

static const struct py_layout *must(int minor, enum py_build build)
{
	const struct py_layout *l = pylayout_builtin(3, minor, build);

	cr_assert_not_null(l, "no built-in layout for 3.%d %s", minor, pylayout_build_name(build));
	return l;
}

/* Asserts that offset `off` plus `width` bytes fits in a struct of `size` bytes. */
#define ASSERT_IN(e, field, width, size)                                                           \
	cr_assert((e)->layout.field >= 0 && (e)->layout.field + (width) <= (e)->layout.size,       \
		  "3.%d %s: " #field " = %d does not fit in " #size " = %d", (e)->minor,           \
		  pylayout_build_name((e)->build), (e)->layout.field, (e)->layout.size)

#define ASSERT_HAS(e, field)                                                                       \
	cr_assert((e)->layout.field >= 0, "3.%d %s: " #field " missing", (e)->minor,               \
		  pylayout_build_name((e)->build))

#define ASSERT_NONE(e, field)                                                                      \
	cr_assert_eq((e)->layout.field, PY_OFF_NONE, "3.%d %s: " #field " should be absent",       \
		     (e)->minor, pylayout_build_name((e)->build))

/* What census reads: present and coherent on 3.8-3.13, absent on 3.14 (not taught yet). */
static void check_census(const struct pylayout_entry *e)
{
	const struct py_layout *l = &e->layout;

	if (e->minor >= 14) {
		ASSERT_NONE(e, gc_head_size);
		ASSERT_NONE(e, gc_generations);
		ASSERT_NONE(e, runtime_gc);
		ASSERT_NONE(e, interp_gc);
		ASSERT_NONE(e, dictkeys_nentries);
		return;
	}
	cr_assert_eq(l->gc_head_size, 16, "3.%d: PyGC_Head is two words", e->minor);
	ASSERT_IN(e, gc_head_next, 8, gc_head_size);
	ASSERT_IN(e, gc_head_prev, 8, gc_head_size);
	cr_assert_neq(l->gc_head_next, l->gc_head_prev);
	/* 3.8 keeps the collector in _PyRuntime, 3.9+ in each interpreter */
	if (e->minor == 8) {
		ASSERT_HAS(e, runtime_gc);
		ASSERT_NONE(e, interp_gc);
	} else {
		ASSERT_NONE(e, runtime_gc);
		ASSERT_HAS(e, interp_gc);
	}
	ASSERT_HAS(e, gc_generations);
	cr_assert_geq(l->gc_generation_stride, l->gc_head_size);
	cr_assert_eq(l->gc_generation_count, 3);
	cr_assert_geq(l->gc_permanent_generation,
		      l->gc_generations + l->gc_generation_count * l->gc_generation_stride);
	ASSERT_HAS(e, interp_modules);
	cr_assert_geq(l->module_dict, l->varobject_size);

	ASSERT_IN(e, type_name, 8, type_size);
	ASSERT_IN(e, type_basicsize, 8, type_size);
	ASSERT_IN(e, type_itemsize, 8, type_size);
	ASSERT_IN(e, type_flags, 8, type_size);
	ASSERT_IN(e, type_dict, 8, type_size);
	ASSERT_IN(e, type_dictoffset, 8, type_size);
	ASSERT_IN(e, heaptype_qualname, 8, heaptype_size);
	cr_assert_gt(l->heaptype_size, l->type_size);
	cr_assert_eq(l->tpflags_heaptype, 1 << 9);
	cr_assert_eq(l->tpflags_have_gc, 1 << 14);
	cr_assert_eq(l->tpflags_type_subclass_bit, 31);
	cr_assert_eq(l->tpflags_preheader, e->minor >= 12 ? 24 : e->minor == 11 ? 16 : 0);

	cr_assert_gt(l->tuple_items, l->varobject_size);
	cr_assert_gt(l->list_items, l->varobject_size);
	cr_assert_gt(l->list_allocated, l->list_items);
	ASSERT_HAS(e, dict_used);
	cr_assert_gt(l->dict_keys, l->dict_used);
	cr_assert_gt(l->dict_values, l->dict_keys);
	if (e->minor <= 10) {
		ASSERT_HAS(e, dictkeys_size);
		ASSERT_NONE(e, dictkeys_log2_size);
		ASSERT_NONE(e, dictkeys_kind);
		ASSERT_NONE(e, dictunicodeentry_size);
	} else {
		ASSERT_NONE(e, dictkeys_size);
		ASSERT_HAS(e, dictkeys_log2_size);
		ASSERT_HAS(e, dictkeys_log2_index_bytes);
		ASSERT_HAS(e, dictkeys_kind);
		ASSERT_HAS(e, dictkeys_unicode_kind);
		cr_assert_eq(l->dictunicodeentry_size, 16);
		ASSERT_IN(e, dictunicodeentry_value, 8, dictunicodeentry_size);
	}
	cr_assert_gt(l->dictkeys_indices, l->dictkeys_nentries);
	cr_assert_eq(l->dictentry_size, 24);
	ASSERT_IN(e, dictentry_key, 8, dictentry_size);
	ASSERT_IN(e, dictentry_value, 8, dictentry_size);
	cr_assert_eq(l->dictvalues_values, e->minor >= 13 ? 8 : 0);
	cr_assert_gt(l->set_table, l->set_mask);
	cr_assert_gt(l->set_smalltable, l->set_table);
	cr_assert_eq(l->setentry_size, 16);
	ASSERT_IN(e, setentry_key, 8, setentry_size);
	if (e->minor >= 12) {
		cr_assert_eq(l->long_tag, l->varobject_size);
		cr_assert_eq(l->long_nonsize_bits, 3);
	} else {
		ASSERT_NONE(e, long_tag);
		ASSERT_NONE(e, long_nonsize_bits);
	}
}

static void check_entry(const struct pylayout_entry *e)
{
	const struct py_layout *l = &e->layout;
	int kind = l->unicode_state_kind_shift, compact = l->unicode_state_compact_shift,
	    ascii = l->unicode_state_ascii_shift;

	cr_assert_eq(e->major, 3);
	cr_assert_eq(l->major, e->major);
	cr_assert_eq(l->minor, e->minor);
	cr_assert(e->source && e->source[0], "3.%d has no source", e->minor);

	/* Everything every frame model needs. */
	ASSERT_HAS(e, runtime_interpreters_head);
	ASSERT_HAS(e, runtime_interpreters_main);
	ASSERT_HAS(e, interp_next);
	ASSERT_HAS(e, interp_threads_head);
	ASSERT_HAS(e, interp_id);
	ASSERT_HAS(e, tstate_next);
	ASSERT_HAS(e, tstate_interp);
	ASSERT_HAS(e, tstate_thread_id);
	ASSERT_IN(e, frame_previous, 8, frame_size);
	ASSERT_IN(e, frame_code, 8, frame_size);
	ASSERT_IN(e, code_argcount, 4, code_size);
	ASSERT_IN(e, code_firstlineno, 4, code_size);
	ASSERT_IN(e, code_filename, 8, code_size);
	ASSERT_IN(e, code_name, 8, code_size);
	ASSERT_IN(e, code_linetable, 8, code_size);
	ASSERT_HAS(e, object_type);
	cr_assert_gt(l->varobject_size, l->object_type);
	cr_assert_gt(l->bytes_data, l->varobject_size);
	ASSERT_IN(e, unicode_length, 8, unicode_ascii_data);
	ASSERT_IN(e, unicode_state, 4, unicode_ascii_data);
	cr_assert_gt(l->unicode_state, l->unicode_length);
	cr_assert_gt(l->unicode_compact_data, l->unicode_ascii_data);
	cr_assert(kind + 3 <= 32 && compact < 32 && ascii < 32);
	cr_assert(compact >= kind + 3 || compact < kind, "kind and compact bits overlap");
	cr_assert(ascii != compact && (ascii >= kind + 3 || ascii < kind));

	switch (l->frame_model) {
	case PY_FRAMES_OBJECTS:
		cr_assert_lt(e->minor, 11);
		ASSERT_HAS(e, tstate_frame);
		ASSERT_IN(e, frame_lasti, 4, frame_size);
		ASSERT_NONE(e, tstate_current_frame);
		ASSERT_NONE(e, frame_owner);
		cr_assert_eq(l->owner_skip_from, 0);
		break;
	case PY_FRAMES_CFRAME:
		cr_assert(e->minor == 11 || e->minor == 12);
		ASSERT_HAS(e, tstate_cframe);
		ASSERT_HAS(e, cframe_current_frame);
		ASSERT_NONE(e, tstate_frame);
		ASSERT_NONE(e, tstate_current_frame);
		break;
	case PY_FRAMES_CURRENT:
		cr_assert_geq(e->minor, 13);
		ASSERT_HAS(e, tstate_current_frame);
		ASSERT_NONE(e, tstate_frame);
		ASSERT_NONE(e, tstate_cframe);
		break;
	default:
		cr_assert_fail("3.%d: bad frame model %d", e->minor, l->frame_model);
	}
	if (l->frame_model != PY_FRAMES_OBJECTS) {
		ASSERT_IN(e, frame_instr_ptr, 8, frame_size);
		ASSERT_IN(e, frame_owner, 1, frame_size);
		ASSERT_NONE(e, frame_lasti);
		ASSERT_HAS(e, tstate_native_thread_id);
		ASSERT_IN(e, code_qualname, 8, code_size);
		ASSERT_IN(e, code_firsttraceable, 4, code_size);
		ASSERT_IN(e, code_code_adaptive, 0, code_size);
		cr_assert_eq(l->linetable_kind, PY_LINES_LOCATIONS311);
		cr_assert_eq(l->owner_skip_from, e->minor >= 12 ? 3 : 0);
	} else {
		cr_assert_eq(l->linetable_kind,
			     e->minor <= 9 ? PY_LINES_LNOTAB : PY_LINES_LINETABLE310);
		cr_assert_eq(l->lasti_in_bytes, e->minor <= 9);
	}

	if (l->gil_model == PY_GIL_RUNTIME) {
		cr_assert_leq(e->minor, 11);
		ASSERT_HAS(e, runtime_gilstate_tstate_current);
		ASSERT_HAS(e, runtime_gil_locked);
		ASSERT_HAS(e, runtime_gil_last_holder);
	} else {
		cr_assert_eq(l->gil_model, PY_GIL_INTERP_PTR);
		cr_assert_geq(e->minor, 12);
		ASSERT_HAS(e, interp_ceval_gil);
		ASSERT_HAS(e, gil_locked);
		ASSERT_HAS(e, gil_last_holder);
		cr_assert_neq(l->gil_locked, l->gil_last_holder);
	}

	/* Thread-local bytecode and tagged frame references are 3.14 only. */
	if (e->minor >= 14 && e->build == PY_BUILD_FREE_THREADED) {
		ASSERT_IN(e, frame_tlbc_index, 4, frame_size);
		ASSERT_IN(e, code_tlbc, 8, code_size);
	} else {
		ASSERT_NONE(e, frame_tlbc_index);
		ASSERT_NONE(e, code_tlbc);
	}
	if (e->minor >= 14)
		cr_assert(l->executable_tag_mask == 1 || l->executable_tag_mask == 3);
	else
		cr_assert_eq(l->executable_tag_mask, 0);
	check_census(e);
}

Test(pylayout, every_entry_is_sane)
{
	cr_assert_geq(pylayout_table_len, 9);
	for (size_t i = 0; i < pylayout_table_len; i++) {
		check_entry(&pylayout_table[i]);
		for (size_t j = 0; j < i; j++)
			cr_assert(pylayout_table[i].minor != pylayout_table[j].minor ||
				      pylayout_table[i].build != pylayout_table[j].build,
				  "two entries for 3.%d %s", pylayout_table[i].minor,
				  pylayout_build_name(pylayout_table[i].build));
	}
}

Test(pylayout, lookup)
{
	int lo = -1, hi = -1;

	for (int minor = 8; minor <= 14; minor++) {
		const struct py_layout *l = must(minor, PY_BUILD_RELEASE);

		cr_assert_eq(l->minor, minor);
		/* debug builds read like release ones (gen-layouts.sh checks it, see pylayout.c) */
		cr_assert_eq(pylayout_builtin(3, minor, PY_BUILD_DEBUG), l);
	}
	cr_assert_eq(must(13, PY_BUILD_FREE_THREADED)->object_type, 24);
	cr_assert_eq(must(14, PY_BUILD_FREE_THREADED)->object_type, 24);
	cr_assert_null(pylayout_builtin(3, 12, PY_BUILD_FREE_THREADED));
	cr_assert_null(pylayout_builtin(3, 7, PY_BUILD_RELEASE));
	cr_assert_null(pylayout_builtin(3, 15, PY_BUILD_RELEASE));
	cr_assert_null(pylayout_builtin(3, 15, PY_BUILD_DEBUG));
	cr_assert_null(pylayout_builtin(2, 7, PY_BUILD_RELEASE));
	cr_assert_null(pylayout_builtin(3, 8, (enum py_build)42));

	pylayout_supported_range(&lo, &hi);
	cr_assert_eq(lo, 8);
	cr_assert_eq(hi, 14);
	pylayout_supported_range(NULL, NULL);

	cr_assert_str_eq(pylayout_build_name(PY_BUILD_RELEASE), "release");
	cr_assert_str_eq(pylayout_build_name(PY_BUILD_DEBUG), "debug");
	cr_assert_str_eq(pylayout_build_name(PY_BUILD_FREE_THREADED), "free-threaded");
	cr_assert_str_eq(pylayout_build_name((enum py_build)42), "unknown");
}

/* Offsets measured from the DWARF of the interpreters on the development machine (gdb offsetof,
 * design/cpython-offsets-x86_64.txt), copied here because CI need not have that file. */
Test(pylayout, matches_measured_offsets)
{
	const struct py_layout *l;

	l = must(8, PY_BUILD_RELEASE);
	cr_expect_eq(l->runtime_interpreters_head, 32);
	cr_expect_eq(l->runtime_interpreters_main, 40);
	cr_expect_eq(l->runtime_gilstate_tstate_current, 1368);
	cr_expect_eq(l->runtime_gil_last_holder, 1160);
	cr_expect_eq(l->runtime_gil_locked, 1168);
	cr_expect_eq(l->interp_threads_head, 8);
	cr_expect_eq(l->interp_id, 16);
	cr_expect_eq(l->tstate_frame, 24);
	cr_expect_eq(l->tstate_thread_id, 176);
	cr_expect_eq(l->frame_previous, 24);
	cr_expect_eq(l->frame_code, 32);
	cr_expect_eq(l->frame_lasti, 104);
	cr_expect_eq(l->frame_size, 368);
	cr_expect_eq(l->code_firstlineno, 40);
	cr_expect_eq(l->code_filename, 104);
	cr_expect_eq(l->code_name, 112);
	cr_expect_eq(l->code_linetable, 120);
	cr_expect_eq(l->code_size, 176);
	cr_expect_eq(l->unicode_ascii_data, 48);
	cr_expect_eq(l->unicode_compact_data, 72);

	l = must(9, PY_BUILD_RELEASE);
	cr_expect_eq(l->runtime_gilstate_tstate_current, 568);
	cr_expect_eq(l->runtime_gil_locked, 368);
	cr_expect_eq(l->runtime_gil_last_holder, 360);
	cr_expect_eq(l->interp_id, 24);
	cr_expect_eq(l->frame_lasti, 104);

	l = must(10, PY_BUILD_RELEASE);
	cr_expect_eq(l->runtime_gilstate_tstate_current, 568);
	cr_expect_eq(l->frame_lasti, 96);
	cr_expect_eq(l->frame_size, 360);
	cr_expect_eq(l->code_linetable, 120);

	l = must(11, PY_BUILD_RELEASE);
	cr_expect_eq(l->runtime_interpreters_head, 40);
	cr_expect_eq(l->runtime_interpreters_main, 48);
	cr_expect_eq(l->runtime_gilstate_tstate_current, 576);
	cr_expect_eq(l->runtime_gil_last_holder, 368);
	cr_expect_eq(l->runtime_gil_locked, 376);
	cr_expect_eq(l->interp_threads_head, 16);
	cr_expect_eq(l->interp_id, 48);
	cr_expect_eq(l->tstate_cframe, 56);
	cr_expect_eq(l->tstate_thread_id, 152);
	cr_expect_eq(l->tstate_native_thread_id, 160);
	cr_expect_eq(l->cframe_current_frame, 8);
	cr_expect_eq(l->frame_code, 32);
	cr_expect_eq(l->frame_previous, 48);
	cr_expect_eq(l->frame_instr_ptr, 56);
	cr_expect_eq(l->frame_owner, 69);
	cr_expect_eq(l->frame_size, 80);
	cr_expect_eq(l->code_argcount, 56);
	cr_expect_eq(l->code_firstlineno, 72);
	cr_expect_eq(l->code_qualname, 128);
	cr_expect_eq(l->code_linetable, 136);
	cr_expect_eq(l->code_code_adaptive, 184);
	cr_expect_eq(l->code_size, 192);

	l = must(12, PY_BUILD_RELEASE);
	cr_expect_eq(l->interp_threads_head, 72);
	cr_expect_eq(l->interp_id, 8);
	cr_expect_eq(l->interp_ceval_gil, 384);
	/* _gil.last_holder 1048 and _gil.locked 1056 inside the interpreter, _gil at 1040 */
	cr_expect_eq(l->gil_last_holder, 8);
	cr_expect_eq(l->gil_locked, 16);
	cr_expect_eq(l->tstate_cframe, 56);
	cr_expect_eq(l->tstate_thread_id, 136);
	cr_expect_eq(l->tstate_native_thread_id, 144);
	cr_expect_eq(l->cframe_current_frame, 0);
	cr_expect_eq(l->frame_code, 0);
	cr_expect_eq(l->frame_previous, 8);
	cr_expect_eq(l->frame_instr_ptr, 56);
	cr_expect_eq(l->frame_owner, 70);
	cr_expect_eq(l->code_argcount, 52);
	cr_expect_eq(l->code_code_adaptive, 192);
	cr_expect_eq(l->code_size, 200);
	cr_expect_eq(l->unicode_ascii_data, 40);
	cr_expect_eq(l->unicode_compact_data, 56);

	l = must(13, PY_BUILD_RELEASE);
	cr_expect_eq(l->runtime_interpreters_head, 632);
	cr_expect_eq(l->runtime_interpreters_main, 640);
	cr_expect_eq(l->interp_next, 7264);
	cr_expect_eq(l->interp_threads_head, 7344);
	cr_expect_eq(l->interp_id, 7272);
	cr_expect_eq(l->interp_ceval_gil, 16);
	cr_expect_eq(l->gil_last_holder, 7760 - 7752);
	cr_expect_eq(l->gil_locked, 7768 - 7752);
	cr_expect_eq(l->tstate_current_frame, 72);
	cr_expect_eq(l->tstate_thread_id, 152);
	cr_expect_eq(l->tstate_native_thread_id, 160);
	cr_expect_eq(l->frame_code, 0);
	cr_expect_eq(l->frame_previous, 8);
	cr_expect_eq(l->frame_instr_ptr, 56);
	cr_expect_eq(l->frame_owner, 70);
	cr_expect_eq(l->frame_size, 80);
	cr_expect_eq(l->code_code_adaptive, 200);
	cr_expect_eq(l->code_size, 208);

	/* Every version: string and bytes headers, state bits interned:2 kind:3 compact:1 ascii:1
	 */
	for (int minor = 8; minor <= 13; minor++) {
		l = must(minor, PY_BUILD_RELEASE);
		cr_expect_eq(l->object_type, 8);
		cr_expect_eq(l->varobject_size, 16);
		cr_expect_eq(l->bytes_data, 32);
		cr_expect_eq(l->unicode_length, 16);
		cr_expect_eq(l->unicode_state, 32);
		cr_expect_eq(l->unicode_state_kind_shift, 2);
		cr_expect_eq(l->unicode_state_compact_shift, 5);
		cr_expect_eq(l->unicode_state_ascii_shift, 6);
	}
}

/* Debian's python3.11d, from its DWARF (gdb 'p &((T *)0)->field' on /usr/bin/python3.11d). */
Test(pylayout, debian_debug_311_reads_as_release)
{
	const struct py_layout *l = must(11, PY_BUILD_DEBUG);

	cr_expect_eq(l->runtime_interpreters_head, 40);
	cr_expect_eq(l->runtime_gilstate_tstate_current, 576);
	cr_expect_eq(l->runtime_gil_locked, 376);
	cr_expect_eq(l->interp_threads_head, 16);
	cr_expect_eq(l->tstate_cframe, 56);
	cr_expect_eq(l->tstate_native_thread_id, 160);
	cr_expect_eq(l->frame_code, 32);
	cr_expect_eq(l->frame_owner, 69);
	cr_expect_eq(l->code_firsttraceable, 168);
	cr_expect_eq(l->code_code_adaptive, 184);
	cr_expect_eq(l->unicode_ascii_data, 48);
}

/* 3.14 comes from sources (tools/layouts-3.14.inc): pin the derivation so an edit shows. */
Test(pylayout, source_derived_314)
{
	const struct py_layout *l = must(14, PY_BUILD_RELEASE), *t;

	cr_expect_eq(l->runtime_interpreters_head, 808);
	cr_expect_eq(l->tstate_current_frame, 72);
	cr_expect_eq(l->frame_owner, 74);
	cr_expect_eq(l->frame_size, 88);
	cr_expect_eq(l->code_code_adaptive, 208);
	cr_expect_eq(l->executable_tag_mask, 3);
	cr_expect_eq(l->owner_skip_from, 3);

	t = must(14, PY_BUILD_FREE_THREADED);
	cr_expect_eq(t->frame_tlbc_index, 72);
	cr_expect_eq(t->frame_owner, 78);
	cr_expect_eq(t->code_tlbc, 224);
	cr_expect_eq(t->code_code_adaptive, 232);
	cr_expect_eq(t->unicode_state_kind_shift, 8);
	/* the free-threaded header is 16 bytes longer; code fields shift with it */
	cr_expect_eq(t->code_filename - l->code_filename, 16);
	cr_expect_eq(t->unicode_state - l->unicode_state, 16);
}

static char *slurp(FILE *f, size_t *len)
{
	size_t cap = 1 << 16, n = 0, got;
	char *buf = malloc(cap);

	cr_assert_not_null(buf);
	while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
	}
	*len = n;
	return buf;
}

/* tools/gen-layouts.sh run now must print the committed table byte for byte. */
Test(pylayout, regeneration_matches_committed_table, .timeout = 300)
{
	static const char *need[] = {
	    PYENV "3.8.18/include/python3.8/internal",
	    PYENV "3.9.18/include/python3.9/internal",
	    PYENV "3.10.13/include/python3.10/internal",
	    PYENV "3.11.7/include/python3.11/internal",
	    PYENV "3.12.1/include/python3.12/internal",
	    PYENV "3.13.0/include/python3.13/internal",
	    "/usr/include/python3.11/internal",
	    "/usr/include/x86_64-linux-gnu/python3.11d/pyconfig.h",
	};
	char *want, *got;
	size_t want_len, got_len;
	FILE *f;
	int status;

	if (access("tools/gen-layouts.sh", X_OK) != 0 ||
	    access("src/python/pylayout_table.c", R_OK) != 0)
		cr_skip_test("run from the repository root to check tools/gen-layouts.sh");
	if (getenv("PMS_PYENV_VERSIONS"))
		cr_skip_test("PMS_PYENV_VERSIONS is set: the table names the default interpreters");
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (access(need[i], R_OK) != 0)
			cr_skip_test("%s is absent: cannot regenerate the layout table here",
				     need[i]);

	f = fopen("src/python/pylayout_table.c", "r");
	cr_assert_not_null(f);
	want = slurp(f, &want_len);
	fclose(f);

	f = popen("tools/gen-layouts.sh", "r");
	cr_assert_not_null(f);
	got = slurp(f, &got_len);
	status = pclose(f);
	cr_assert_eq(status, 0, "tools/gen-layouts.sh failed (status %d)", status);
	cr_assert(got_len == want_len && memcmp(got, want, want_len) == 0,
		  "tools/gen-layouts.sh output differs from src/python/pylayout_table.c: run `make "
		  "layouts` "
		  "and review the diff");
	free(want);
	free(got);
}
