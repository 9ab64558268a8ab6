#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allocators.h"
#include "pyspawn.h"

#define PYENV  "/root/.pyenv/versions/"
#define LIBDIR "/usr/lib/x86_64-linux-gnu/"

/* ---- the entry-skip walker on hand-assembled prologues ---- */

static uint32_t skip_of(enum pms_alloc_fn fn, const char *hex)
{
	uint8_t code[32];
	size_t n = 0;

	for (const char *s = hex; *s && n < sizeof(code);) {
		unsigned v;

		if (*s == ' ') {
			s++;
			continue;
		}
		cr_assert_eq(sscanf(s, "%2x", &v), 1);
		code[n++] = (uint8_t)v;
		s += 2;
	}
	return allocators_entry_skip(fn, code, n);
}

Test(allocators, entry_skip_walks_only_verified_forms)
{
	/* glibc free: test %rdi,%rdi; je rel32; push %rbp */
	cr_assert_eq(skip_of(PMS_FN_FREE, "48 85 ff 0f 84 bf 00 00 00 55"), 9);
	/* the same je in a malloc is not a NULL check */
	cr_assert_eq(skip_of(PMS_FN_MALLOC, "48 85 ff 0f 84 bf 00 00 00 55"), 0);
	/* a push first: nothing to skip */
	cr_assert_eq(skip_of(PMS_FN_MALLOC, "41 54 55 53"), 0);
	/* glibc valloc: cmpb $0,x(%rip); push %rbx */
	cr_assert_eq(skip_of(PMS_FN_VALLOC, "80 3d 31 0e 14 00 00 53"), 7);
	/* 3.11 _PyObject_Malloc: lea -1(%rsi),%rax; push %rbx */
	cr_assert_eq(skip_of(PMS_FN_PY_MALLOC, "48 8d 46 ff 53"), 4);
	/* ... but not when the lea overwrites the size */
	cr_assert_eq(skip_of(PMS_FN_PY_MALLOC, "48 8d 76 ff 53"), 0);
	/* sub $0x18,%rsp moves the stack */
	cr_assert_eq(skip_of(PMS_FN_MALLOC, "48 83 ec 18 53"), 0);
	/* mov %rdi,%rsi: rsi is an argument of PyMalloc (ctx, size), not of malloc (size) */
	cr_assert_eq(skip_of(PMS_FN_PY_MALLOC, "48 89 fe 53"), 0);
	cr_assert_eq(skip_of(PMS_FN_MALLOC, "48 89 fe 53"), 3);
	/* endbr64; push %rbp */
	cr_assert_eq(skip_of(PMS_FN_REALLOC, "f3 0f 1e fa 55"), 4);
	/* test %rsi,%rsi; js: a negative size in PyMalloc, but rdi is its ctx */
	cr_assert_eq(skip_of(PMS_FN_PY_MALLOC, "48 85 f6 78 10 53"), 5);
	cr_assert_eq(skip_of(PMS_FN_PY_MALLOC, "48 85 ff 78 10 53"), 0);
	/* PyFree's pointer is rsi: je after testing rdi is not a NULL free */
	cr_assert_eq(skip_of(PMS_FN_PY_FREE, "48 85 f6 74 10 53"), 5);
	cr_assert_eq(skip_of(PMS_FN_PY_FREE, "48 85 ff 74 10 53"), 0);
	/* a store to the stack, an unknown instruction, nothing at all */
	cr_assert_eq(skip_of(PMS_FN_MALLOC, "48 89 7c 24 08 53"), 0);
	cr_assert_eq(skip_of(PMS_FN_MALLOC, "0f 0b 53"), 0);
	cr_assert_eq(skip_of(PMS_FN_MALLOC, ""), 0);
	/* a truncated instruction before the push */
	cr_assert_eq(skip_of(PMS_FN_FREE, "48 85 ff 0f 84 bf"), 0);
	/* 41 90 is xchg %eax,%r8d, not a nop */
	cr_assert_eq(skip_of(PMS_FN_MALLOC, "41 90 53"), 0);
	cr_assert_eq(skip_of(PMS_FN_MALLOC, "90 53"), 1);
}

/* ---- against real interpreters ---- */

/* The file offset of sym in path, computed here with libelf (symbol tables, then the PT_LOAD
 * segment holding it), independently of the code under test. Symbols may come from another file
 * (symsrc: a separate debug file) whose segments hold no bytes. 0 when absent. */
static uint64_t file_offset_in(const char *path, const char *symsrc, const char *sym)
{
	uint64_t vaddr = 0, off = 0;
	Elf_Scn *scn = NULL;
	size_t nphdr;
	Elf *elf;
	int fd;

	cr_assert_neq(elf_version(EV_CURRENT), EV_NONE);
	fd = open(symsrc, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", symsrc);
	elf = elf_begin(fd, ELF_C_READ, NULL);
	cr_assert_not_null(elf);
	while (!vaddr && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) ||
		    (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB) || !sh.sh_entsize)
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym s;
			const char *n;

			if (!gelf_getsym(data, (int)i, &s) || s.st_shndx == SHN_UNDEF)
				continue;
			n = elf_strptr(elf, sh.sh_link, s.st_name);
			if (n && strcmp(n, sym) == 0) {
				vaddr = s.st_value;
				break;
			}
		}
	}
	elf_end(elf);
	close(fd);

	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", path);
	elf = elf_begin(fd, ELF_C_READ, NULL);
	cr_assert_not_null(elf);
	cr_assert_eq(elf_getphdrnum(elf, &nphdr), 0);
	for (size_t i = 0; vaddr && i < nphdr; i++) {
		GElf_Phdr ph;

		if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD && vaddr >= ph.p_vaddr &&
		    vaddr < ph.p_vaddr + ph.p_filesz)
			off = vaddr - ph.p_vaddr + ph.p_offset;
	}
	elf_end(elf);
	close(fd);
	return off;
}

static uint64_t file_offset_of(const char *path, const char *sym)
{
	return file_offset_in(path, path, sym);
}

/* Debian installs the symbols of its stripped python3.11 by build id (python3.11-dbg). */
static bool debug_file_of(const char *path, char *out, size_t outlen)
{
	Elf_Scn *scn = NULL;
	bool found = false;
	Elf *elf;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return false;
	elf = elf_begin(fd, ELF_C_READ, NULL);
	while (elf && !found && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		GElf_Nhdr nh;
		Elf_Data *data;
		size_t off = 0, name_off, desc_off;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		data = elf_getdata(scn, NULL);
		while (data && (off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
			const uint8_t *id = (const uint8_t *)data->d_buf + desc_off;
			int n;

			if (nh.n_type != NT_GNU_BUILD_ID || nh.n_descsz < 2)
				continue;
			n = snprintf(out, outlen, "/usr/lib/debug/.build-id/%02x/", id[0]);
			for (size_t i = 1; i < nh.n_descsz; i++)
				n += snprintf(out + n, outlen - (size_t)n, "%02x", id[i]);
			snprintf(out + n, outlen - (size_t)n, ".debug");
			found = access(out, R_OK) == 0;
			break;
		}
	}
	if (elf)
		elf_end(elf);
	close(fd);
	return found;
}

static const struct alloc_probe *probe_named(const struct alloc_probes *ap, const char *sym)
{
	for (size_t i = 0; i < ap->n; i++)
		if (strcmp(ap->probes[i].symbol, sym) == 0)
			return &ap->probes[i];
	return NULL;
}

/* Every probe: a readable file, no two at one place, and a skip that lands on a push. */
static void check_probes(struct pytarget *t, const struct alloc_probes *ap)
{
	struct proc *proc = pytarget_proc(t);
	uint8_t code_mem[16], code_file[16];

	cr_assert_gt(ap->n, 0);
	for (size_t i = 0; i < ap->n; i++) {
		const struct alloc_probe *pr = &ap->probes[i];
		uint8_t b[2] = {0, 0};
		int fd = open(pr->path, O_RDONLY);

		cr_assert_geq(fd, 0, "%s: cannot open %s", pr->symbol, pr->path);
		cr_assert_neq(pr->address, 0);
		/* the same function seen in the target's memory and in the file */
		cr_assert_eq(proc_read(proc, pr->address, code_mem, sizeof(code_mem)), 0, "%s",
			     pr->symbol);
		cr_assert_eq(pread(fd, code_file, sizeof(code_file), (off_t)pr->offset),
			     (ssize_t)sizeof(code_file));
		cr_assert_arr_eq(code_mem, code_file, sizeof(code_mem), "%s", pr->symbol);
		cr_assert_eq(pread(fd, b, 2, (off_t)(pr->offset + pr->entry_skip)), 2);
		close(fd);
		if (pr->entry_skip)
			cr_assert((b[0] >= 0x50 && b[0] <= 0x57) ||
				      (b[0] == 0x41 && b[1] >= 0x50 && b[1] <= 0x57),
				  "%s+%u is %02x %02x, not a push", pr->symbol, pr->entry_skip,
				  b[0], b[1]);
		for (size_t j = 0; j < i; j++)
			cr_assert(ap->probes[j].offset != pr->offset ||
				      strcmp(ap->probes[j].path, pr->path) != 0,
				  "%s and %s share a probe", ap->probes[j].symbol, pr->symbol);
	}
}

static void check_malloc(struct pytarget *t, const char *want_allocator, const char *want_file)
{
	struct pms_error err = {{0}};
	struct alloc_probes ap;
	const struct alloc_probe *m, *f;

	cr_assert_eq(allocators_find(t, ALLOC_SOURCE_MALLOC, &ap, &err), 0, "%s", err.msg);
	cr_assert_str_eq(ap.allocator, want_allocator);
	cr_assert_eq(ap.coverage, 1.0);
	check_probes(t, &ap);
	m = probe_named(&ap, "malloc");
	f = probe_named(&ap, "free");
	cr_assert(m && f, "malloc and free are probed");
	cr_assert(strstr(m->path, want_file), "%s is not in %s", m->path, want_file);
	for (size_t i = 0; i < ap.n; i++)
		cr_assert_eq(ap.probes[i].offset,
			     file_offset_of(ap.probes[i].path, ap.probes[i].symbol), "%s",
			     ap.probes[i].symbol);
	cr_assert_eq(m->fn, PMS_FN_MALLOC);
	cr_assert_eq(f->fn, PMS_FN_FREE);
	/* exported symbols have sizes: the ranges of nested calls */
	cr_assert_gt(m->size, 0);
	cr_assert_gt(f->size, 0);
	allocators_free(&ap);
}

enum py_kind { PY_SYMBOLS, PY_STRIPPED_INLINED, PY_DEBUG_HOOKS };

static void check_interpreter(const char *exe, enum py_kind kind)
{
	const char *obj_malloc = kind == PY_STRIPPED_INLINED ? "PyObject_Malloc@table"
				 : kind == PY_DEBUG_HOOKS    ? "_PyMem_DebugMalloc"
							     : "_PyObject_Malloc";
	const char *obj_free = kind == PY_STRIPPED_INLINED ? "PyObject_Free@table"
			       : kind == PY_DEBUG_HOOKS	   ? "_PyMem_DebugFree"
							   : "_PyObject_Free";
	struct pms_error err = {{0}};
	struct pytarget *t = NULL;
	struct alloc_probes ap;
	const struct alloc_probe *m, *f;
	pid_t pid = pyspawn_ready(exe, NULL, NULL);
	char dbg[256];

	cr_assert_eq(pytarget_open(pid, &t, &err), 0, "%s: %s", exe, err.msg);
	check_malloc(t, "glibc", "libc.so.6");

	cr_assert_eq(allocators_find(t, ALLOC_SOURCE_PYMALLOC, &ap, &err), 0, "%s: %s", exe,
		     err.msg);
	check_probes(t, &ap);
	/* raw: 4 functions; mem and obj share pymalloc's (or the debug hooks') 4 */
	cr_assert_eq(ap.n, 8, "%s: %zu probes", exe, ap.n);
	for (size_t i = 0; i < ap.n; i++)
		cr_assert(ap.probes[i].fn >= PMS_FN_PY_MALLOC && ap.probes[i].fn <= PMS_FN_PY_FREE);
	m = probe_named(&ap, obj_malloc);
	f = probe_named(&ap, obj_free);
	cr_assert(m && f, "%s: no %s or %s", exe, obj_malloc, obj_free);
	cr_assert_eq(m->fn, PMS_FN_PY_MALLOC);
	cr_assert_eq(f->fn, PMS_FN_PY_FREE);
	if (kind == PY_STRIPPED_INLINED) {
		cr_assert_lt(ap.coverage, 0);
		cr_assert(strstr(ap.note, "fast path"), "note: %s", ap.note);
		/* where the symbols are installed (LTO renamed them), the table's functions are
		 * pymalloc's */
		if (debug_file_of(exe, dbg, sizeof(dbg))) {
			cr_assert_eq(m->offset,
				     file_offset_in(exe, dbg, "_PyObject_Malloc.lto_priv.0"));
			cr_assert_eq(f->offset,
				     file_offset_in(exe, dbg, "_PyObject_Free.lto_priv.0"));
		}
	} else {
		cr_assert_eq(ap.coverage, 1.0);
		cr_assert_gt(m->size, 0);
		cr_assert_eq(m->offset, file_offset_of(m->path, obj_malloc));
		cr_assert_eq(f->offset, file_offset_of(f->path, obj_free));
		cr_assert(probe_named(&ap, kind == PY_DEBUG_HOOKS ? "_PyMem_DebugRawMalloc"
								  : "_PyMem_RawMalloc"));
		if (kind == PY_DEBUG_HOOKS)
			cr_assert(strstr(ap.note, "debug hooks"), "note: %s", ap.note);
		else
			cr_assert_str_eq(ap.note, "");
	}
	/* only pymalloc's own realloc jumps to a probed malloc with NULL: it alone is marked */
	for (size_t i = 0; i < ap.n; i++)
		cr_assert_eq(ap.probes[i].null_delegates,
			     strcmp(ap.probes[i].symbol, "_PyObject_Realloc") == 0, "%s: %s", exe,
			     ap.probes[i].symbol);
	if (kind == PY_SYMBOLS)
		cr_assert(probe_named(&ap, "_PyObject_Realloc") &&
			  probe_named(&ap, "_PyObject_Realloc")->null_delegates);
	allocators_free(&ap);
	cr_assert_eq(ap.n, 0);
	pyspawn_stop(pid);
	pytarget_close(t);
}

Test(allocators, python_3_8)
{
	check_interpreter(PYENV "3.8.18/bin/python3.8", PY_SYMBOLS);
}
Test(allocators, python_3_9)
{
	check_interpreter(PYENV "3.9.18/bin/python3.9", PY_SYMBOLS);
}
Test(allocators, python_3_10)
{
	check_interpreter(PYENV "3.10.13/bin/python3.10", PY_SYMBOLS);
}
Test(allocators, python_3_11)
{
	check_interpreter(PYENV "3.11.7/bin/python3.11", PY_SYMBOLS);
}
Test(allocators, python_3_12_tables_in_runtime)
{
	check_interpreter(PYENV "3.12.1/bin/python3.12", PY_SYMBOLS);
}
Test(allocators, python_3_13_tables_in_runtime)
{
	check_interpreter(PYENV "3.13.0/bin/python3.13", PY_SYMBOLS);
}
Test(allocators, debian_static_stripped_inlined)
{
	check_interpreter("/usr/bin/python3.11", PY_STRIPPED_INLINED);
}
Test(allocators, debian_debug_build_hooks)
{
	check_interpreter("/usr/bin/python3.11d", PY_DEBUG_HOOKS);
}

/* tracemalloc and PYTHONMALLOC=malloc put other functions in the tables: those are probed. */
Test(allocators, tables_changed_at_startup)
{
	const char *exe = PYENV "3.11.7/bin/python3.11";
	struct pms_error err = {{0}};
	struct pytarget *t = NULL;
	struct alloc_probes ap;
	pid_t pid = pyspawn_ready(exe, "-Xtracemalloc", NULL);

	cr_assert_eq(pytarget_open(pid, &t, &err), 0, "%s", err.msg);
	cr_assert_eq(allocators_find(t, ALLOC_SOURCE_PYMALLOC, &ap, &err), 0, "%s", err.msg);
	check_probes(t, &ap);
	cr_assert(probe_named(&ap, "tracemalloc_malloc_gil"));
	cr_assert(probe_named(&ap, "tracemalloc_raw_malloc"));
	cr_assert_null(probe_named(&ap, "_PyObject_Malloc"));
	cr_assert(strstr(ap.note, "tracemalloc"), "note: %s", ap.note);
	allocators_free(&ap);
	pyspawn_stop(pid);
	pytarget_close(t);

	pid = pyspawn_ready(exe, NULL, "PYTHONMALLOC=malloc");
	cr_assert_eq(pytarget_open(pid, &t, &err), 0, "%s", err.msg);
	cr_assert_eq(allocators_find(t, ALLOC_SOURCE_PYMALLOC, &ap, &err), 0, "%s", err.msg);
	check_probes(t, &ap);
	cr_assert_eq(ap.n, 4, "every domain uses the raw functions");
	cr_assert(probe_named(&ap, "_PyMem_RawMalloc"));
	cr_assert(strstr(ap.note, "pymalloc is off"), "note: %s", ap.note);
	allocators_free(&ap);
	pyspawn_stop(pid);
	pytarget_close(t);
}

/* An allocator preloaded in place of glibc's is the one probed (tests skip the libraries that
 * are not installed: Debian's libjemalloc2, libtcmalloc-minimal4, libmimalloc2.0). */
Test(allocators, preloaded_allocators)
{
	static const struct {
		const char *lib, *name;
	} libs[] = {
	    {LIBDIR "libjemalloc.so.2", "jemalloc"},
	    {LIBDIR "libtcmalloc_minimal.so.4", "tcmalloc"},
	    {LIBDIR "libmimalloc.so.2", "mimalloc"},
	};
	const char *exe = PYENV "3.11.7/bin/python3.11";
	int ran = 0;

	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		struct pms_error err = {{0}};
		struct pytarget *t = NULL;
		char env[256];
		pid_t pid;

		if (access(libs[i].lib, R_OK) != 0)
			continue;
		snprintf(env, sizeof(env), "LD_PRELOAD=%s", libs[i].lib);
		pid = pyspawn_ready(exe, NULL, env);
		cr_assert_eq(pytarget_open(pid, &t, &err), 0, "%s", err.msg);
		check_malloc(t, libs[i].name, libs[i].name);
		pyspawn_stop(pid);
		pytarget_close(t);
		ran++;
	}
	if (!ran)
		cr_skip_test("no jemalloc, tcmalloc or mimalloc installed");
}
