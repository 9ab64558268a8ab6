/* _Py_DebugOffsets: the real 3.13 struct out of libpython, and synthesized 3.14 ones. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pydebugoffsets.h"

#define LIBPYTHON313 "/root/.pyenv/versions/3.13.0/lib/libpython3.13.so.1.0"

/* Copies the initialised bytes of `_PyRuntime` (its start is _Py_DebugOffsets) out of an ELF
 * file: the .dynsym symbol's address, inside the PROGBITS section holding it. */
static size_t runtime_bytes(const char *path, uint8_t *buf, size_t cap)
{
	Elf_Scn *scn = NULL;
	GElf_Addr addr = 0;
	size_t got = 0;
	Elf *e;
	int fd;

	cr_assert_neq(elf_version(EV_CURRENT), EV_NONE);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", path);
	e = elf_begin(fd, ELF_C_READ, NULL);
	cr_assert_not_null(e, "%s: %s", path, elf_errmsg(-1));

	while (!addr && (scn = elf_nextscn(e, scn)) != NULL) {
		GElf_Shdr sh;
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
			continue;
		d = elf_getdata(scn, NULL);
		for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *name;

			if (!gelf_getsym(d, (int)i, &sym))
				continue;
			name = elf_strptr(e, sh.sh_link, sym.st_name);
			if (name && strcmp(name, "_PyRuntime") == 0) {
				addr = sym.st_value;
				break;
			}
		}
	}
	cr_assert_neq(addr, 0, "%s exports no _PyRuntime", path);

	scn = NULL;
	while ((scn = elf_nextscn(e, scn)) != NULL) {
		GElf_Shdr sh;
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS || addr < sh.sh_addr ||
		    addr >= sh.sh_addr + sh.sh_size)
			continue;
		d = elf_getdata(scn, NULL);
		cr_assert_not_null(d);
		got = sh.sh_addr + sh.sh_size - addr;
		if (got > cap)
			got = cap;
		memcpy(buf, (const uint8_t *)d->d_buf + (addr - sh.sh_addr), got);
		break;
	}
	elf_end(e);
	close(fd);
	cr_assert_gt(got, 0, "_PyRuntime is not in an initialised section of %s", path);
	return got;
}

Test(debugoffsets, header)
{
	uint8_t blob[32] = "xdebugpy";
	uint64_t v = 0x030d00f0, hex = 0;
	int ft = -1;

	memcpy(blob + 8, &v, 8);
	v = 1;
	memcpy(blob + 16, &v, 8);
	cr_assert_eq(pydebug_header(blob, sizeof(blob), &hex, &ft), 0);
	cr_assert_eq(hex, 0x030d00f0);
	cr_assert_eq(ft, 1);
	cr_assert_eq(pydebug_header(blob, 23, &hex, &ft), -ENOENT);
	cr_assert_eq(pydebug_header(NULL, 0, &hex, &ft), -ENOENT);
	blob[0] = 'y';
	cr_assert_eq(pydebug_header(blob, sizeof(blob), &hex, &ft), -ENOENT);
}

Test(debugoffsets, real_313_agrees_with_table)
{
	static uint8_t blob[PYDEBUG_MAX_SIZE];
	const struct py_layout *table = pylayout_builtin(3, 13, PY_BUILD_RELEASE);
	struct py_layout zero = {0}, out, bare;
	struct pms_error err = {{0}};
	uint64_t hex;
	size_t len;
	int ft;

	if (access(LIBPYTHON313, R_OK) != 0)
		cr_skip_test("%s is not installed", LIBPYTHON313);
	len = runtime_bytes(LIBPYTHON313, blob, sizeof(blob));
	cr_assert_eq(pydebug_header(blob, len, &hex, &ft), 0);
	cr_assert_eq(hex, 0x030d00f0, "version %llx", (unsigned long long)hex);
	cr_assert_eq(ft, 0);

	cr_assert_not_null(table);
	cr_assert_eq(pydebug_parse(blob, len, table, &out, &err), 0, "%s", err.msg);
	cr_assert_eq(pydebug_crosscheck(&out, table, &err), 0, "%s", err.msg);
	/* what it does not publish comes from the table */
	cr_assert_eq(out.runtime_interpreters_main, table->runtime_interpreters_main);
	cr_assert_eq(out.unicode_state_ascii_shift, table->unicode_state_ascii_shift);
	cr_assert_eq(out.code_firsttraceable, table->code_firsttraceable);

	/* from a zeroed base: the published numbers alone, equal to the measured ones */
	cr_assert_eq(pydebug_parse(blob, len, &zero, &bare, &err), 0, "%s", err.msg);
	cr_assert_eq(bare.major, 3);
	cr_assert_eq(bare.minor, 13);
	cr_assert_eq(bare.frame_model, PY_FRAMES_CURRENT);
	cr_assert_eq(bare.runtime_interpreters_head, 632);
	cr_assert_eq(bare.interp_threads_head, 7344);
	cr_assert_eq(bare.interp_ceval_gil, 16);
	cr_assert_eq(bare.gil_locked, 16);
	cr_assert_eq(bare.gil_last_holder, 8);
	cr_assert_eq(bare.tstate_current_frame, 72);
	cr_assert_eq(bare.frame_owner, 70);
	cr_assert_eq(bare.frame_size, 80);
	cr_assert_eq(bare.code_code_adaptive, 200);
	cr_assert_eq(bare.unicode_ascii_data, 40);
	cr_assert_eq(bare.frame_tlbc_index, PY_OFF_NONE);
	cr_assert_eq(bare.code_tlbc, PY_OFF_NONE);
	cr_assert_eq(bare.executable_tag_mask, 0);
	/* census's share, measured by tools/layoutgen.c from the headers */
	cr_assert_eq(bare.interp_gc, 7400);
	cr_assert_eq(bare.interp_modules, 7656);
	cr_assert_eq(bare.type_name, 24);
	cr_assert_eq(bare.type_flags, 168);
	cr_assert_eq(bare.type_size, 416);
	cr_assert_eq(bare.tuple_items, 24);
	cr_assert_eq(bare.list_items, 24);
	cr_assert_eq(bare.dict_keys, 32);
	cr_assert_eq(bare.dict_values, 40);
	cr_assert_eq(pydebug_crosscheck(&bare, table, &err), 0, "%s", err.msg);
}

/* _Py_DebugOffsets as declared in CPython 3.14's Include/internal/pycore_debug_offsets.h. Kept
 * apart from the parser's own field list so each checks the other. */
struct dbg314 {
	char cookie[8];
	uint64_t version, free_threaded;
	struct {
		uint64_t size, finalizing, interpreters_head;
	} runtime_state;
	struct {
		uint64_t size, id, next, threads_head, threads_main, gc, imports_modules, sysdict,
		    builtins, ceval_gil, gil_runtime_state, gil_runtime_state_enabled,
		    gil_runtime_state_locked, gil_runtime_state_holder, code_object_generation,
		    tlbc_generation;
	} interpreter_state;
	struct {
		uint64_t size, prev, next, interp, current_frame, thread_id, native_thread_id,
		    datastack_chunk, status;
	} thread_state;
	struct {
		uint64_t size, previous, executable, instr_ptr, localsplus, owner, stackpointer,
		    tlbc_index;
	} interpreter_frame;
	struct {
		uint64_t size, filename, name, qualname, linetable, firstlineno, argcount,
		    localsplusnames, localspluskinds, co_code_adaptive, co_tlbc;
	} code_object;
	struct {
		uint64_t size, ob_type;
	} pyobject;
	struct {
		uint64_t size, tp_name, tp_repr, tp_flags;
	} type_object;
	struct {
		uint64_t size, ob_item, ob_size;
	} tuple_object, list_object;
	struct {
		uint64_t size, used, table, mask;
	} set_object;
	struct {
		uint64_t size, ma_keys, ma_values;
	} dict_object;
	struct {
		uint64_t size, ob_fval;
	} float_object;
	struct {
		uint64_t size, lv_tag, ob_digit;
	} long_object;
	struct {
		uint64_t size, ob_size, ob_sval;
	} bytes_object;
	struct {
		uint64_t size, state, length, asciiobject_size;
	} unicode_object;
	struct {
		uint64_t size, collecting;
	} gc;
	struct {
		uint64_t size, gi_name, gi_iframe, gi_frame_state;
	} gen_object;
	struct {
		uint64_t next, prev;
	} llist_node;
	struct {
		uint64_t eval_breaker, remote_debugger_support, remote_debugging_enabled,
		    debugger_pending_call, debugger_script_path, debugger_script_path_size;
	} debugger_support;
};
_Static_assert(sizeof(struct dbg314) == 760, "3.14 _Py_DebugOffsets is 760 bytes");

/* What a 3.14 (or 3.14t) _PyRuntime would publish, from the struct layouts of its sources
 * (the same derivation as tools/layouts-3.14.inc). Fields the parser skips (gc, sysdict,
 * code_object_generation...) hold plausible placeholders. */
static struct dbg314 make314(int free_threaded)
{
	int ft = free_threaded != 0,
	    hdr = ft ? 16 : 0; /* 3.14t objects have 16 more header bytes */
	struct dbg314 d = {
	    .version = 0x030e00f0,
	    .free_threaded = (uint64_t)ft,
	    .runtime_state = {.size = ft ? 362240 : 316424,
			      .finalizing = 784,
			      .interpreters_head = 808},
	    .interpreter_state = {.size = ft ? 246656 : 225808,
				  .id = 7280,
				  .next = 7272,
				  .threads_head = 7344,
				  .threads_main = 7360,
				  .gc = 7376,
				  .imports_modules = 7600,
				  .sysdict = 7368,
				  .builtins = 7376,
				  .ceval_gil = 16,
				  .gil_runtime_state = ft ? 7808 : 7760,
				  .gil_runtime_state_enabled = 0,
				  .gil_runtime_state_locked = ft ? 7808 + 24 : 7760 + 16,
				  .gil_runtime_state_holder = ft ? 7808 + 16 : 7760 + 8,
				  .code_object_generation = 7968,
				  .tlbc_generation = ft ? 8000 : 0},
	    .thread_state = {.size = 824,
			     .prev = 0,
			     .next = 8,
			     .interp = 16,
			     .current_frame = 72,
			     .thread_id = 152,
			     .native_thread_id = 160,
			     .datastack_chunk = 232,
			     .status = 32},
	    .interpreter_frame = {.size = 88,
				  .previous = 8,
				  .executable = 0,
				  .instr_ptr = 56,
				  .localsplus = 80,
				  .owner = ft ? 78 : 74,
				  .stackpointer = 64,
				  .tlbc_index = ft ? 72 : 0},
	    .code_object = {.size = ft ? 240 : 216,
			    .filename = 112 + hdr,
			    .name = 120 + hdr,
			    .qualname = 128 + hdr,
			    .linetable = 136 + hdr,
			    .firstlineno = 68 + hdr,
			    .argcount = 52 + hdr,
			    .localsplusnames = 96 + hdr,
			    .localspluskinds = 104 + hdr,
			    .co_code_adaptive = ft ? 232 : 208,
			    .co_tlbc = ft ? 224 : 0},
	    .pyobject = {.size = 16 + hdr, .ob_type = 8 + hdr},
	    .bytes_object = {.size = 40 + hdr, .ob_size = 16 + hdr, .ob_sval = 32 + hdr},
	    .unicode_object = {.size = 64 + hdr,
			       .state = 32 + hdr,
			       .length = 16 + hdr,
			       .asciiobject_size = 40 + hdr},
	    .type_object = {.size = 416 + hdr,
			    .tp_name = 24 + hdr,
			    .tp_repr = 88 + hdr,
			    .tp_flags = 168 + hdr},
	    .tuple_object = {.size = 32 + hdr, .ob_item = 24 + hdr, .ob_size = 16 + hdr},
	    .list_object = {.size = 40 + hdr, .ob_item = 24 + hdr, .ob_size = 16 + hdr},
	    .dict_object = {.size = 48 + hdr, .ma_keys = 32 + hdr, .ma_values = 40 + hdr},
	    .gc = {.size = 400, .collecting = 8},
	};

	memcpy(d.cookie, PYDEBUG_COOKIE, 8);
	return d;
}

Test(debugoffsets, synthesized_314)
{
	const struct py_layout *table = pylayout_builtin(3, 14, PY_BUILD_RELEASE);
	struct dbg314 d = make314(0);
	struct pms_error err = {{0}};
	struct py_layout out, zero = {0};

	cr_assert_not_null(table);
	cr_assert_eq(pydebug_parse(&d, sizeof(d), table, &out, &err), 0, "%s", err.msg);
	cr_assert_eq(out.minor, 14);
	cr_assert_eq(out.runtime_interpreters_head, 808);
	cr_assert_eq(out.interp_threads_head, 7344);
	cr_assert_eq(out.gil_locked, 16);
	cr_assert_eq(out.gil_last_holder, 8);
	cr_assert_eq(out.tstate_current_frame, 72);
	cr_assert_eq(out.frame_owner, 74);
	cr_assert_eq(out.code_code_adaptive, 208);
	cr_assert_eq(out.frame_tlbc_index, PY_OFF_NONE);
	cr_assert_eq(out.code_tlbc, PY_OFF_NONE);
	cr_assert_eq(out.executable_tag_mask, 3);
	cr_assert_eq(pydebug_crosscheck(&out, table, &err), 0, "%s", err.msg);

	cr_assert_eq(pydebug_parse(&d, sizeof(d), &zero, &out, &err), 0, "%s", err.msg);
	cr_assert_eq(out.executable_tag_mask, 3);
	cr_assert_eq(out.owner_skip_from, 3);
	cr_assert_eq(out.frame_model, PY_FRAMES_CURRENT);
}

Test(debugoffsets, synthesized_314t)
{
	const struct py_layout *table = pylayout_builtin(3, 14, PY_BUILD_FREE_THREADED);
	struct dbg314 d = make314(1);
	struct pms_error err = {{0}};
	struct py_layout out, zero = {0};
	uint64_t hex;
	int ft;

	cr_assert_not_null(table);
	cr_assert_eq(pydebug_header(&d, sizeof(d), &hex, &ft), 0);
	cr_assert_eq(ft, 1);
	cr_assert_eq(pydebug_parse(&d, sizeof(d), table, &out, &err), 0, "%s", err.msg);
	cr_assert_eq(out.frame_tlbc_index, 72);
	cr_assert_eq(out.code_tlbc, 224);
	cr_assert_eq(out.object_type, 24);
	cr_assert_eq(out.gil_locked, 24);
	cr_assert_eq(pydebug_crosscheck(&out, table, &err), 0, "%s", err.msg);

	cr_assert_eq(pydebug_parse(&d, sizeof(d), &zero, &out, &err), 0, "%s", err.msg);
	cr_assert_eq(out.executable_tag_mask, 1);
}

Test(debugoffsets, truncated_blobs_are_rejected)
{
	struct dbg314 d = make314(0);
	struct py_layout out, zero = {0};

	for (size_t len = 0; len < sizeof(d); len++) {
		struct pms_error err = {{0}};
		uint8_t *copy = malloc(len ? len : 1); /* exact size, so ASan sees any overread */

		cr_assert_not_null(copy);
		memcpy(copy, &d, len);
		cr_assert_eq(pydebug_parse(copy, len, &zero, &out, &err), -PMS_EGARBAGE,
			     "length %zu accepted", len);
		cr_assert_neq(err.msg[0], '\0');
		free(copy);
	}
}

static void expect_garbage(struct dbg314 *d, const char *needle)
{
	struct pms_error err = {{0}};
	struct py_layout out, zero = {0};

	cr_assert_eq(pydebug_parse(d, sizeof(*d), &zero, &out, &err), -PMS_EGARBAGE,
		     "accepted garbage (%s)", needle);
	cr_assert_not_null(strstr(err.msg, needle), "message \"%s\" does not name %s", err.msg,
			   needle);
}

Test(debugoffsets, garbage_offsets_are_rejected)
{
	struct dbg314 d;

	d = make314(0);
	d.thread_state.current_frame = 10000;
	expect_garbage(&d, "thread_state.current_frame");

	d = make314(0);
	d.thread_state.native_thread_id = d.thread_state.size - 4; /* straddles the end */
	expect_garbage(&d, "thread_state.native_thread_id");

	d = make314(0);
	d.interpreter_frame.owner = UINT64_MAX;
	expect_garbage(&d, "interpreter_frame.owner");

	d = make314(0);
	d.code_object.size = 0;
	expect_garbage(&d, "code_object.size");

	d = make314(0);
	d.interpreter_state.size = UINT64_MAX;
	expect_garbage(&d, "interpreter_state.size");

	d = make314(0);
	d.runtime_state.interpreters_head = d.runtime_state.size;
	expect_garbage(&d, "runtime_state.interpreters_head");

	d = make314(0);
	d.unicode_object.asciiobject_size = d.unicode_object.size + 8;
	expect_garbage(&d, "unicode_object.asciiobject_size");

	d = make314(0);
	d.interpreter_state.gil_runtime_state_locked = 8;
	expect_garbage(&d, "GIL");

	d = make314(0);
	d.free_threaded = 7;
	expect_garbage(&d, "free_threaded");

	d = make314(0);
	d.version = 0xdeadbeef030e00f0ULL;
	expect_garbage(&d, "PY_VERSION_HEX");
}

/* Random damage must be rejected or yield offsets inside the declared sizes: never a crash. */
Test(debugoffsets, random_damage_never_crashes)
{
	struct dbg314 base = make314(0);
	uint64_t words[sizeof(base) / 8];
	unsigned seed = 1234;

	for (int round = 0; round < 20000; round++) {
		struct pms_error err = {{0}};
		struct py_layout out, zero = {0};
		size_t i;

		memcpy(words, &base, sizeof(words));
		for (int k = 0; k < 1 + round % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			i = 3 + (seed >> 8) % (sizeof(words) / 8 - 3);
			seed = seed * 1103515245u + 12345u;
			words[i] = (round & 1) ? (seed >> 4) % 1024 : ((uint64_t)seed << 20) | seed;
		}
		if (pydebug_parse(words, sizeof(words), &zero, &out, &err) == 0) {
			const struct dbg314 *d = (const void *)words;

			cr_assert_leq((uint64_t)out.tstate_current_frame + 8, d->thread_state.size);
			cr_assert_leq((uint64_t)out.frame_owner + 1, d->interpreter_frame.size);
			cr_assert_leq((uint64_t)out.code_name + 8, d->code_object.size);
			cr_assert_geq(out.gil_locked, 0);
		} else {
			cr_assert_neq(err.msg[0], '\0');
		}
	}
}

Test(debugoffsets, unknown_versions_are_unsupported)
{
	struct dbg314 d = make314(0);
	struct pms_error err = {{0}};
	struct py_layout out, zero = {0};

	d.version = 0x030f00f0; /* 3.15.0 */
	cr_assert_eq(pydebug_parse(&d, sizeof(d), &zero, &out, &err), -PMS_EUNSUPPORTED);
	cr_assert_not_null(strstr(err.msg, "3.15"), "%s", err.msg);

	pms_error_clear(&err);
	d.version = 0x040000f0;
	cr_assert_eq(pydebug_parse(&d, sizeof(d), &zero, &out, &err), -PMS_EUNSUPPORTED);
	cr_assert_not_null(strstr(err.msg, "4.0"), "%s", err.msg);

	pms_error_clear(&err);
	d.version = 0x030e00b1; /* 3.14.0b1: the struct was still moving */
	cr_assert_eq(pydebug_parse(&d, sizeof(d), &zero, &out, &err), -PMS_EUNSUPPORTED);
	cr_assert_not_null(strstr(err.msg, "pre-release"), "%s", err.msg);

	pms_error_clear(&err);
	d.version = 0x030e01c1; /* a 3.14.1 release candidate: patch releases keep the format */
	cr_assert_eq(pydebug_parse(&d, sizeof(d), &zero, &out, &err), 0, "%s", err.msg);

	pms_error_clear(&err);
	memcpy(d.cookie, "ydebugpy", 8);
	cr_assert_eq(pydebug_parse(&d, sizeof(d), &zero, &out, &err), -PMS_EGARBAGE);
}

Test(debugoffsets, crosscheck_reports_first_difference)
{
	const struct py_layout *table = pylayout_builtin(3, 13, PY_BUILD_RELEASE);
	struct pms_error err = {{0}};
	struct py_layout l;

	cr_assert_not_null(table);
	l = *table;
	cr_assert_eq(pydebug_crosscheck(&l, table, &err), 0);
	l.tstate_current_frame += 8;
	cr_assert_eq(pydebug_crosscheck(&l, table, &err), -PMS_EGARBAGE);
	cr_assert_not_null(strstr(err.msg, "tstate_current_frame"), "%s", err.msg);

	pms_error_clear(&err);
	l = *table;
	l.code_tlbc = PY_OFF_NONE;	/* absent on one side: not a difference */
	l.unicode_state_kind_shift = 9; /* not published: not compared */
	cr_assert_eq(pydebug_crosscheck(&l, table, &err), 0, "%s", err.msg);

	l.minor = 14;
	cr_assert_eq(pydebug_crosscheck(&l, table, &err), -PMS_EGARBAGE);
}
