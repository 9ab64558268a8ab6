/* Where the target's allocators live.
 *
 * `malloc`: the object that really serves malloc() in the target. The dynamic linker binds
 * malloc to the first object in its search order that exports it, and only allocator
 * replacements (LD_PRELOAD or linked jemalloc, tcmalloc, mimalloc) export it besides libc, so
 * any mapped object other than libc and ld.so defining malloc and free is the one in use.
 *
 * `pymalloc`: the functions CPython's PyMemAllocatorEx tables point to, read from the target's
 * memory (tracemalloc, debug hooks and PyMem_SetAllocator replace them there). The tables are
 * found the same way on every build, stripped or not: the exported wrappers PyMem_RawMalloc,
 * PyMem_Malloc and PyObject_Malloc read the table's ctx and its malloc slot 8 bytes further
 * before calling through it, so decoding their first instructions gives the table's address.
 * Measured with gdb on this machine:
 *   pyenv 3.8-3.11 (shared libpython, -fPIC, no semantic interposition):
 *     mov %rdi,%rsi; test %rdi,%rdi; js; mov _PyObject(%rip),%rdi; jmp *_PyObject+8(%rip)
 *   pyenv 3.12, 3.13 (tables inside _PyRuntime, reached through the GOT):
 *     mov %rdi,%rsi; test; js; mov GOT(%rip),%rax; mov 0xb0(%rax),%rdi; jmp *0xb8(%rax)
 *     (3.13: 0x310/0x318 for obj)
 *   Debian python3.11 (static libpython, non-PIE, PGO+LTO, stripped):
 *     sub $0x18,%rsp; test; js; mov _PyObject+8(%rip),%rax; mov %rdi,%rsi;
 *     mov _PyObject(%rip),%rdi; cmp $_PyObject_Malloc,%rax; jne ...; <inlined fast path>
 *     (its PyMem_RawMalloc loads ctx into %rdx and moves it to %rdi on the slow path)
 *   Debian python3.11d (debug, non-PIE):
 *     test; js; sub $8,%rsp; mov %rdi,%rsi; mov _PyObject(%rip),%rdi; call *_PyObject+8(%rip)
 * On 3.8-3.11 builds with .symtab the static tables _PyMem_Raw, _PyMem, _PyObject are the
 * fallback when a wrapper has another form.
 *
 * Debug hooks (python3.11d, PYTHONMALLOC=debug) and tracemalloc put their own functions in the
 * tables; those are what the interpreter calls, so they are what we probe (they see every call
 * with the size the caller asked for), and the note says so. */
#include "allocators.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elffile.h"
#include "pymemspy.h"
#include "proc.h"

/* Room for every probe of one source: 10 malloc-family functions, or 3 domains x 4. */

/* Bytes of a function's start that the decoders look at. */
#define CODE_WINDOW 64

/* Past this many RIP-relative reads of the PyObject_Malloc table slot, the build has copied
 * pymalloc's fast path into its callers: pyenv 3.8-3.11 have 6 (wrappers, PyMem_SetAllocator),
 * python3.11d 3, Debian's PGO+LTO python3.11 165. pyenv 3.12+ reach _PyRuntime through the GOT
 * (0 reads): a PIC build with inlined copies would not be noticed, none is known. */
#define INLINED_SLOT_READS 16

/* ---- a small x86-64 decoder: the instruction forms function prologues start with ---- */

enum reg {
	REG_RAX = 0,
	REG_RCX = 1,
	REG_RDX = 2,
	REG_RBX = 3,
	REG_RSP = 4,
	REG_RBP = 5,
	REG_RSI = 6,
	REG_RDI = 7,
	REG_NONE = 0xff,
};

struct insn {
	uint8_t len;
	uint8_t op; /* the opcode byte; after 0x0f when twobyte */
	bool twobyte;
	bool rep;  /* f3 prefix (endbr64) */
	bool rexb; /* REX.B without ModRM: the register in the opcode is r8-r15 */
	bool has_modrm;
	uint8_t modrm; /* raw byte */
	uint8_t mod;   /* 0-3 */
	uint8_t reg;   /* ModRM.reg with REX.R: register number or opcode extension */
	uint8_t rm;    /* ModRM.rm with REX.B: the register when mod == 3, else the base */
	bool riprel;   /* the memory operand is disp32(%rip) */
	bool indexed;  /* the memory operand has an index register (SIB) */
	int64_t disp;  /* memory displacement */
	int64_t rel;   /* branch displacement (jcc, jmp, call rel) */
};

/* Operand sizes of the immediates that follow ModRM, by one-byte opcode. */
static int imm_after_modrm(uint8_t op, uint8_t reg, bool opsize16)
{
	switch (op) {
	case 0x80:
	case 0x83:
	case 0xc0:
	case 0xc1:
	case 0xc6:
	case 0x6b:
		return 1;
	case 0x81:
	case 0xc7:
	case 0x69:
		return opsize16 ? 2 : 4;
	case 0xf6:
		return (reg & 7) <= 1 ? 1 : 0;
	case 0xf7:
		return (reg & 7) <= 1 ? (opsize16 ? 2 : 4) : 0;
	default:
		return 0;
	}
}

static bool onebyte_has_modrm(uint8_t op)
{
	/* ALU ops r/m forms: 00-03, 08-0b, ..., 38-3b */
	if (op < 0x40 && (op & 7) <= 3)
		return true;
	switch (op) {
	case 0x63:
	case 0x69:
	case 0x6b:
	case 0x80:
	case 0x81:
	case 0x83:
	case 0x84:
	case 0x85:
	case 0x86:
	case 0x87:
	case 0x88:
	case 0x89:
	case 0x8a:
	case 0x8b:
	case 0x8d:
	case 0x8f:
	case 0xc0:
	case 0xc1:
	case 0xc6:
	case 0xc7:
	case 0xd1:
	case 0xd3:
	case 0xf6:
	case 0xf7:
	case 0xfe:
	case 0xff:
		return true;
	default:
		return false;
	}
}

static bool twobyte_has_modrm(uint8_t op)
{
	return op == 0x1e || op == 0x1f || (op >= 0x40 && op <= 0x4f) || op == 0xaf || op == 0xb6 ||
	       op == 0xb7 || op == 0xbe || op == 0xbf || op == 0x10 || op == 0x11;
}

static int32_t le32(const uint8_t *p)
{
	return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			 (uint32_t)p[3] << 24);
}

/* Decodes the instruction at code[0..len). 0, or -1 for a form not listed here (callers then
 * stop: nothing is guessed). */
static int decode(const uint8_t *code, size_t len, struct insn *in)
{
	size_t i = 0;
	bool opsize16 = false;
	uint8_t rex = 0;
	int imm = 0;

	memset(in, 0, sizeof(*in));
	for (int n = 0; n < 4 && i < len; n++, i++) {
		uint8_t b = code[i];

		if (b == 0x66)
			opsize16 = true;
		else if (b == 0xf3)
			in->rep = true;
		else if (b != 0xf2 && b != 0x2e && b != 0x3e && b != 0x64 && b != 0x65)
			break;
	}
	if (i < len && (code[i] & 0xf0) == 0x40)
		rex = code[i++];
	if (i >= len)
		return -1;
	in->op = code[i++];
	if (in->op == 0x0f) {
		if (i >= len)
			return -1;
		in->twobyte = true;
		in->op = code[i++];
		if (in->op >= 0x80 && in->op <= 0x8f) { /* jcc rel32 */
			if (i + 4 > len)
				return -1;
			in->rel = le32(code + i);
			in->len = (uint8_t)(i + 4);
			return 0;
		}
		if (!twobyte_has_modrm(in->op))
			return -1;
		in->has_modrm = true;
	} else if (onebyte_has_modrm(in->op)) {
		in->has_modrm = true;
	} else {
		uint8_t op = in->op;

		in->rexb = rex & 1;
		if ((op >= 0x70 && op <= 0x7f) || op == 0xeb) { /* jcc rel8, jmp rel8 */
			if (i + 1 > len)
				return -1;
			in->rel = (int8_t)code[i++];
		} else if (op == 0xe8 || op == 0xe9) {
			if (i + 4 > len)
				return -1;
			in->rel = le32(code + i);
			i += 4;
		} else if (op == 0x3c || op == 0xa8) {
			i += 1;
		} else if (op == 0x3d || op == 0xa9) {
			i += opsize16 ? 2 : 4;
		} else if (op >= 0xb8 && op <= 0xbf) {
			i += (rex & 8) ? 8 : opsize16 ? 2 : 4;
		} else if (!((op >= 0x50 && op <= 0x5f) || op == 0x90 || op == 0xc3 ||
			     op == 0xcc)) {
			return -1; /* push, pop, nop, ret, int3 have no operand bytes */
		}
		if (i > len)
			return -1;
		in->len = (uint8_t)i;
		return 0;
	}

	if (i >= len)
		return -1;
	in->modrm = code[i++];
	in->mod = in->modrm >> 6;
	in->reg = (uint8_t)(((in->modrm >> 3) & 7) | ((rex & 4) ? 8 : 0));
	in->rm = (uint8_t)((in->modrm & 7) | ((rex & 1) ? 8 : 0));
	if (in->mod != 3) {
		if ((in->modrm & 7) == 4) { /* SIB */
			uint8_t sib;

			if (i >= len)
				return -1;
			sib = code[i++];
			in->indexed = ((sib >> 3) & 7) != 4 || (rex & 2);
			in->rm = (uint8_t)((sib & 7) | ((rex & 1) ? 8 : 0));
			if (in->mod == 0 && (sib & 7) == 5) {
				in->rm = REG_NONE;
				if (i + 4 > len)
					return -1;
				in->disp = le32(code + i);
				i += 4;
			}
		} else if (in->mod == 0 && (in->modrm & 7) == 5) {
			in->riprel = true;
			in->rm = REG_NONE;
			if (i + 4 > len)
				return -1;
			in->disp = le32(code + i);
			i += 4;
		}
		if (in->mod == 1) {
			if (i + 1 > len)
				return -1;
			in->disp = (int8_t)code[i++];
		} else if (in->mod == 2) {
			if (i + 4 > len)
				return -1;
			in->disp = le32(code + i);
			i += 4;
		}
	}
	if (!in->twobyte)
		imm = imm_after_modrm(in->op, in->reg, opsize16);
	i += (size_t)imm;
	if (i > len)
		return -1;
	in->len = (uint8_t)i;
	return 0;
}

/* ---- entry_skip ---- */

/* Argument registers of each kind (System V: rdi, rsi, rdx), as a bit mask of reg numbers, and
 * the register whose NULL (free) or negative size (malloc: above PY_SSIZE_T_MAX, which CPython
 * and libc refuse without allocating) is the only reason to branch away before the push. */
static void fn_regs(enum pms_alloc_fn fn, unsigned *args, int *ptr_reg, int *size_reg)
{
	const unsigned di = 1u << REG_RDI, si = 1u << REG_RSI, dx = 1u << REG_RDX;

	*ptr_reg = -1;
	*size_reg = -1;
	switch (fn) {
	case PMS_FN_MALLOC:
	case PMS_FN_VALLOC:
		*args = di;
		*size_reg = REG_RDI;
		break;
	case PMS_FN_FREE:
		*args = di;
		*ptr_reg = REG_RDI;
		break;
	case PMS_FN_CALLOC:
	case PMS_FN_REALLOC:
	case PMS_FN_ALIGNED:
		*args = di | si;
		break;
	case PMS_FN_PY_MALLOC:
		*args = di | si;
		*size_reg = REG_RSI;
		break;
	case PMS_FN_PY_FREE:
		*args = di | si;
		*ptr_reg = REG_RSI;
		break;
	default: /* reallocarray, posix_memalign, PyCalloc, PyRealloc */
		*args = di | si | dx;
		break;
	}
}

/* Walks the straight-line start of a function up to its first push, accepting only
 * instructions that keep the arguments and %rsp as the caller left them:
 *   endbr64, nop; test and cmp (flags only; memory operands are only read);
 *   mov/lea/xor/mov-immediate into a register that holds no argument of this kind and is not
 *   %rsp; je after `test ptr,ptr` (free of NULL) and js after `test size,size` (negative size).
 * Anything else ends the walk with 0: a probe on the entry is always right, only slower.
 * Incoming branches to the skipped instructions are not checked: compilers do not jump back into
 * a prologue.
 *
 * First instructions and resulting skips, measured with gdb/objdump on this machine:
 *   glibc 2.36 (every interpreter): malloc, calloc, realloc start with push (0);
 *     free `test %rdi,%rdi; je; push %rbp` (9); posix_memalign, valloc, pvalloc
 *     `cmpb $0,__malloc_initialized(%rip); push` (7); aligned_alloc = memalign `cmpb; je; jmp
 *     _mid_memalign` (0: the je is not a NULL check); reallocarray `mov; mul; ...` (0).
 *   pyenv 3.8: _PyObject_Malloc/Calloc/Realloc push (0); _PyObject_Free `test %rsi,%rsi; je;
 *     mov %rsi,%rax; subq $1,_Py_AllocatedBlocks(%rip)` (0: memory write).
 *   pyenv 3.9-3.11: _PyObject_Malloc `lea -1(%rsi),%rax; push %rbx` (4); Calloc, Realloc push
 *     (0); _PyObject_Free `test %rsi,%rsi; je; mov %rsi,%rax; push` (3.9: 12) or `...; mov
 *     %rsi,%rcx|%rdx; lea arena_map_root(%rip),%rdx|%rcx; push %rbx` (3.10, 3.11: 15).
 *   pyenv 3.12, 3.13: _PyObject_Malloc/Calloc/Realloc push (0); _PyObject_Free `test %rsi,%rsi;
 *     je; push` (9).
 *   every build: _PyMem_RawMalloc `test %rsi,%rsi; mov $1,%eax; cmovne; mov %rax,%rdi; jmp
 *     malloc@plt`, _PyMem_RawCalloc/Realloc/Free move arguments first and tail-call libc, no
 *     push (0).
 *   Debian python3.11: _PyObject_Malloc `lea -1(%rsi),%rax; sub $0x18,%rsp` (0); Calloc,
 *     Realloc push (0); _PyObject_Free `test %rsi,%rsi; je; mov %rsi,%rdx; mov %rsi,%rax; push`
 *     (15).
 *   python3.11d debug hooks: _PyMem_Debug{Malloc,Calloc,Realloc,Free} and DebugRawRealloc push
 *     (0); DebugRawMalloc/DebugRawCalloc `sub $8,%rsp` (0); DebugRawFree `test %rsi,%rsi; je;
 *     push` (5).
 *   tracemalloc (pyenv 3.11): hooks start with push (0), tracemalloc_free `test; je; push` (5).
 *   jemalloc 5.3 malloc `cmp $0x1000,%rdi; ja`, free `mov %rdi,%rax; ...`; tcmalloc 2.10 malloc
 *     and free load a hook pointer and branch on it; mimalloc 2.0 loads the thread's heap into
 *     %rdi: all 0, their other functions start with push. */
uint32_t allocators_entry_skip(enum pms_alloc_fn fn, const uint8_t *code, size_t len)
{
	unsigned args;
	int ptr_reg, size_reg, tested = -1;
	size_t at = 0;

	fn_regs(fn, &args, &ptr_reg, &size_reg);
	for (int n = 0; n < 8 && at < len; n++) {
		struct insn in;
		int dest = -1, was_tested = tested;

		if (decode(code + at, len - at, &in) != 0)
			return 0;
		tested = -1;
		if (!in.twobyte && in.op >= 0x50 && in.op <= 0x57)
			return (uint32_t)at; /* push: emulated by the kernel */
		if (in.twobyte) {
			if (in.op == 0x1e && in.rep && in.modrm == 0xfa)
				goto next; /* endbr64 */
			if (in.op == 0x1f)
				goto next; /* multi-byte nop */
			if ((in.op == 0x84 && was_tested == ptr_reg && ptr_reg >= 0) ||
			    (in.op == 0x88 && was_tested == size_reg && size_reg >= 0))
				goto next; /* je rel32 / js rel32 */
			return 0;
		}
		switch (in.op) {
		case 0x90:
			if (in.rexb)
				return 0; /* 41 90 is xchg %eax,%r8d */
			goto next;
		case 0x74: /* je: the NULL pointer given to free */
			if (was_tested == ptr_reg && ptr_reg >= 0)
				goto next;
			return 0;
		case 0x78: /* js: a size that no allocator grants */
			if (was_tested == size_reg && size_reg >= 0)
				goto next;
			return 0;
		case 0x84:
		case 0x85:
			if (in.mod == 3 && in.reg == in.rm)
				tested = in.reg;
			goto next;
		case 0x38:
		case 0x39:
		case 0x3a:
		case 0x3b:
		case 0x3c:
		case 0x3d:
			goto next;
		case 0x80:
		case 0x81:
		case 0x83:
			if ((in.reg & 7) == 7) /* cmp $imm, r/m */
				goto next;
			return 0;
		case 0x89: /* mov r, r/m: register destinations only (no stack writes) */
			if (in.mod != 3)
				return 0;
			dest = in.rm;
			break;
		case 0x8b:
		case 0x8d:
			dest = in.reg;
			break;
		case 0x31:
		case 0x33:
			if (in.mod != 3)
				return 0;
			dest = in.op == 0x31 ? in.rm : in.reg;
			break;
		default:
			if (in.op < 0xb8 || in.op > 0xbf)
				return 0;
			dest = (in.op & 7) | (in.rexb ? 8 : 0); /* mov $imm, reg */
			break;
		}
		if (dest == REG_RSP || (dest < 16 && (args & (1u << dest))))
			return 0;
	next:
		at += in.len;
	}
	return 0;
}

/* ---- shared helpers ---- */

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

static const struct proc_map *first_map_of(struct proc *p, const char *path)
{
	for (size_t i = 0; i < proc_map_count(p); i++) {
		const struct proc_map *m = proc_map_at(p, i);

		if (strcmp(m->path, path) == 0)
			return m;
	}
	return NULL;
}

/* One of the target's files, opened from here, with its load bias in the target. */
struct mapped {
	char target_path[512];
	char host_path[PATH_MAX];
	struct elffile *ef;
	uint64_t bias;
};

static int mapped_open(struct proc *p, const char *target_path, struct mapped *m,
		       struct pms_error *err)
{
	const struct proc_map *map = first_map_of(p, target_path);
	int ret;

	memset(m, 0, sizeof(*m));
	snprintf(m->target_path, sizeof(m->target_path), "%s", target_path);
	if (!map)
		return pms_error_set(err, ENOENT, "%s is not mapped in process %d", target_path,
				     (int)proc_pid(p));
	ret = proc_host_path(p, target_path, m->host_path, sizeof(m->host_path));
	if (ret < 0)
		return pms_error_set(err, -ret, "path too long: %s", target_path);
	ret = elffile_open(m->host_path, &m->ef);
	if (ret < 0)
		return pms_error_set(err, -ret, "cannot read %s: %s", m->host_path, strerror(-ret));
	ret = elffile_load_bias(m->ef, map->start, map->offset, &m->bias);
	if (ret < 0) {
		elffile_close(m->ef);
		m->ef = NULL;
		return pms_error_set(err, ENOENT, "%s: no loadable segment at its mapping",
				     m->host_path);
	}
	return 0;
}

static void mapped_close(struct mapped *m)
{
	elffile_close(m->ef);
	m->ef = NULL;
}

/* The file offset of runtime address addr, which must be executable code of m's file. */
static int code_offset(struct proc *p, const struct mapped *m, uint64_t addr, uint64_t *off)
{
	const struct proc_map *map = proc_map_find(p, addr);

	if (!map || map->perms[2] != 'x' || strcmp(map->path, m->target_path) != 0)
		return -ENOENT;
	*off = map->offset + (addr - map->start);
	return 0;
}

/* The entry skip of the function at vaddr of ef, from the file's bytes (the target's may already
 * hold uprobe breakpoints). */
static uint32_t skip_from_file(struct elffile *ef, uint64_t vaddr, enum pms_alloc_fn fn)
{
	uint8_t code[32];

	if (elffile_read_vaddr(ef, vaddr, code, sizeof(code)) == 0)
		return allocators_entry_skip(fn, code, sizeof(code));
	if (elffile_read_vaddr(ef, vaddr, code, 16) == 0)
		return allocators_entry_skip(fn, code, 16);
	return 0;
}

/* Adds a probe unless one sits at the same place already (aliases: memalign/aligned_alloc,
 * tc_malloc/malloc; pymalloc domains sharing a function). */
static void add_probe(struct alloc_probes *out, enum pms_alloc_fn fn, const char *symbol,
		      const char *host_path, uint64_t offset, uint32_t skip, uint64_t address,
		      uint64_t size)
{
	struct alloc_probe *pr;

	for (size_t i = 0; i < out->n; i++)
		if (out->probes[i].offset == offset && strcmp(out->probes[i].path, host_path) == 0)
			return;
	if (out->n >= PMS_MAX_PROBES)
		return;
	pr = &out->probes[out->n++];
	pr->fn = fn;
	snprintf(pr->symbol, sizeof(pr->symbol), "%s", symbol);
	snprintf(pr->path, sizeof(pr->path), "%s", host_path);
	pr->offset = offset;
	pr->entry_skip = skip;
	pr->address = address;
	pr->size = size;
}

static void note_add(struct alloc_probes *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note_add(struct alloc_probes *out, const char *fmt, ...)
{
	size_t used = strlen(out->note);
	va_list ap;

	if (used > 0 && used + 2 < sizeof(out->note)) {
		memcpy(out->note + used, "; ", 3);
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(out->note + used, sizeof(out->note) - used, fmt, ap);
	va_end(ap);
}

/* ---- the malloc family ---- */

static const struct {
	const char *name;
	enum pms_alloc_fn fn;
} malloc_family[] = {
    {"malloc", PMS_FN_MALLOC},
    {"calloc", PMS_FN_CALLOC},
    {"realloc", PMS_FN_REALLOC},
    {"reallocarray", PMS_FN_REALLOCARRAY},
    {"posix_memalign", PMS_FN_POSIX_MEMALIGN},
    {"aligned_alloc", PMS_FN_ALIGNED},
    {"memalign", PMS_FN_ALIGNED},
    {"valloc", PMS_FN_VALLOC},
    {"pvalloc", PMS_FN_VALLOC},
    {"free", PMS_FN_FREE},
};

/* Prefixes allocators export their own names with (jemalloc built with a prefix, tcmalloc's
 * tc_ aliases, mimalloc's mi_ API). */
static const char *const alloc_prefixes[] = {"", "je_", "tc_", "mi_"};

static bool is_libc(const char *base)
{
	return strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libc-", 5) == 0 ||
	       strncmp(base, "ld-musl-", 8) == 0 || strncmp(base, "libc.musl-", 10) == 0;
}

/* The dynamic loader: old glibc ld.so exported a minimal malloc used only before relocation. */
static bool is_ld_so(const char *base)
{
	return strncmp(base, "ld-linux", 8) == 0 || strncmp(base, "ld-2.", 5) == 0 ||
	       strncmp(base, "ld.so", 5) == 0;
}

static void allocator_name(const char *base, char *out, size_t outlen)
{
	static const char *const known[] = {"jemalloc", "tcmalloc", "mimalloc",
					    "hoard",	"snmalloc", "rpmalloc"};

	if (strncmp(base, "ld-musl-", 8) == 0 || strncmp(base, "libc.musl-", 10) == 0) {
		snprintf(out, outlen, "musl");
		return;
	}
	if (is_libc(base)) {
		snprintf(out, outlen, "glibc");
		return;
	}
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strstr(base, known[i])) {
			snprintf(out, outlen, "%s", known[i]);
			return;
		}
	}
	snprintf(out, outlen, "%s", base);
}

/* Which prefix ef exports malloc and free under: 0 for none, else index+1 in alloc_prefixes. */
static int exported_prefix(struct elffile *ef)
{
	for (size_t k = 0; k < sizeof(alloc_prefixes) / sizeof(alloc_prefixes[0]); k++) {
		char m[32], f[32];
		uint64_t v;

		snprintf(m, sizeof(m), "%smalloc", alloc_prefixes[k]);
		snprintf(f, sizeof(f), "%sfree", alloc_prefixes[k]);
		if (elffile_symbol(ef, m, &v, NULL) == 0 && elffile_symbol(ef, f, &v, NULL) == 0)
			return (int)k + 1;
	}
	return 0;
}

/* Looks at every mapped object once: the first non-libc one defining malloc and free wins
 * (one with a known allocator name before others), then libc. Objects that define only prefixed
 * names (je_malloc...) do not replace malloc(): they are used only when there is no libc. */
static int pick_malloc_object(struct proc *p, const char *runtime_file, char *pick, size_t picklen,
			      char *prefixed_only, size_t prefixedlen)
{
	char libc[512] = "", chosen[512] = "", prefixed[512] = "";
	bool chosen_known = false;
	const char *prev = "";

	for (size_t i = 0; i < proc_map_count(p); i++) {
		const struct proc_map *m = proc_map_at(p, i);
		const char *base = base_name(m->path);
		char host[PATH_MAX], name[32];
		struct elffile *ef = NULL;
		bool seen = strcmp(m->path, prev) == 0;
		int k;

		prev = m->path;
		if (m->path[0] != '/' || seen || is_ld_so(base))
			continue;
		/* the maps repeat a file for each segment, not always next to each other */
		if (strcmp(m->path, libc) == 0 || strcmp(m->path, chosen) == 0 ||
		    strcmp(m->path, prefixed) == 0)
			continue;
		if (proc_host_path(p, m->path, host, sizeof(host)) < 0 ||
		    elffile_open(host, &ef) < 0)
			continue;
		k = exported_prefix(ef);
		elffile_close(ef);
		if (k == 0)
			continue;
		if (is_libc(base)) {
			if (!libc[0] && k == 1)
				snprintf(libc, sizeof(libc), "%s", m->path);
			continue;
		}
		if (k > 1) {
			/* CPython 3.13 bundles mimalloc (mi_*) for its own allocator tables */
			if (!prefixed[0] && strcmp(m->path, runtime_file) != 0)
				snprintf(prefixed, sizeof(prefixed), "%s", m->path);
			continue;
		}
		allocator_name(base, name, sizeof(name));
		if (!chosen[0] || (!chosen_known && strcmp(name, base) != 0)) {
			snprintf(chosen, sizeof(chosen), "%s", m->path);
			chosen_known = strcmp(name, base) != 0;
		}
	}
	snprintf(prefixed_only, prefixedlen, "%s", prefixed);
	if (chosen[0])
		snprintf(pick, picklen, "%s", chosen);
	else if (libc[0])
		snprintf(pick, picklen, "%s", libc);
	else if (prefixed[0])
		snprintf(pick, picklen, "%s", prefixed);
	else
		return -ENOENT;
	return 0;
}

static int find_malloc(struct pytarget *t, struct alloc_probes *out, struct pms_error *err)
{
	struct proc *p = pytarget_proc(t);
	char pick[512], prefixed[512];
	struct mapped m = {0};
	bool have_malloc = false, have_free = false;
	int ret;

	ret = pick_malloc_object(p, pytarget_runtime_file(t), pick, sizeof(pick), prefixed,
				 sizeof(prefixed));
	if (ret < 0)
		return pms_error_set(err, ENOENT,
				     "process %d maps no object that defines malloc and free (a "
				     "statically linked, stripped program?): nothing to probe",
				     (int)proc_pid(p));
	ret = mapped_open(p, pick, &m, err);
	if (ret < 0)
		goto cleanup;
	allocator_name(base_name(pick), out->allocator, sizeof(out->allocator));
	for (size_t i = 0; i < sizeof(malloc_family) / sizeof(malloc_family[0]); i++) {
		for (size_t k = 0; k < sizeof(alloc_prefixes) / sizeof(alloc_prefixes[0]); k++) {
			char sym[64];
			uint64_t vaddr, size, off;

			snprintf(sym, sizeof(sym), "%s%s", alloc_prefixes[k],
				 malloc_family[i].name);
			if (elffile_symbol(m.ef, sym, &vaddr, &size) != 0)
				continue;
			if (code_offset(p, &m, m.bias + vaddr, &off) != 0)
				continue; /* not in mapped code: an odd symbol, ignore it */
			add_probe(out, malloc_family[i].fn, sym, m.host_path, off,
				  skip_from_file(m.ef, vaddr, malloc_family[i].fn), m.bias + vaddr,
				  size);
			if (malloc_family[i].fn == PMS_FN_MALLOC)
				have_malloc = true;
			if (malloc_family[i].fn == PMS_FN_FREE)
				have_free = true;
			break;
		}
	}
	if (!have_malloc || !have_free) {
		ret = pms_error_set(err, ENOENT, "%s defines no malloc or free in its mapped code",
				    pick);
		goto cleanup;
	}
	if (prefixed[0] && strcmp(prefixed, pick) != 0)
		note_add(out,
			 "%s is loaded but exports only prefixed names (its own callers' "
			 "allocations are not seen)",
			 base_name(prefixed));
	out->coverage = 1.0;
	ret = 0;
cleanup:
	mapped_close(&m);
	return ret;
}

/* ---- pymalloc ---- */

enum py_domain { DOMAIN_RAW, DOMAIN_MEM, DOMAIN_OBJ, DOMAIN_COUNT };

static const struct {
	const char *wrapper;	  /* exported; loads the table and calls its malloc */
	const char *table_symbol; /* 3.8-3.11, .symtab only */
	const char *prefix;	  /* for names of functions without a symbol */
} domains[DOMAIN_COUNT] = {
    [DOMAIN_RAW] = {"PyMem_RawMalloc", "_PyMem_Raw", "PyMem_Raw"},
    [DOMAIN_MEM] = {"PyMem_Malloc", "_PyMem", "PyMem_"},
    [DOMAIN_OBJ] = {"PyObject_Malloc", "_PyObject", "PyObject_"},
};

/* The table's slots after ctx, in PyMemAllocatorEx order. */
static const struct {
	const char *what;
	enum pms_alloc_fn fn;
} slots[4] = {
    {"Malloc", PMS_FN_PY_MALLOC},
    {"Calloc", PMS_FN_PY_CALLOC},
    {"Realloc", PMS_FN_PY_REALLOC},
    {"Free", PMS_FN_PY_FREE},
};

/* Functions the tables may point to, to name them when the file has symbols. */
static const char *const py_fn_names[] = {
    "_PyObject_Malloc",	       "_PyObject_Calloc",	  "_PyObject_Realloc",
    "_PyObject_Free",	       "_PyMem_RawMalloc",	  "_PyMem_RawCalloc",
    "_PyMem_RawRealloc",       "_PyMem_RawFree",	  "_PyMem_DebugRawMalloc",
    "_PyMem_DebugRawCalloc",   "_PyMem_DebugRawRealloc",  "_PyMem_DebugRawFree",
    "_PyMem_DebugMalloc",      "_PyMem_DebugCalloc",	  "_PyMem_DebugRealloc",
    "_PyMem_DebugFree",	       "tracemalloc_malloc_gil",  "tracemalloc_calloc_gil",
    "tracemalloc_realloc_gil", "tracemalloc_free",	  "tracemalloc_raw_malloc",
    "tracemalloc_raw_calloc",  "tracemalloc_raw_realloc", "_PyObject_MiMalloc",
    "_PyObject_MiCalloc",      "_PyObject_MiRealloc",	  "_PyObject_MiFree",
    "_PyMem_MiMalloc",	       "_PyMem_MiCalloc",	  "_PyMem_MiRealloc",
    "_PyMem_MiFree",
};

#define N_PY_FN_NAMES (sizeof(py_fn_names) / sizeof(py_fn_names[0]))

/* Addresses of py_fn_names in one file, looked up once. */
struct py_names {
	uint64_t vaddr[N_PY_FN_NAMES], size[N_PY_FN_NAMES];
	bool found[N_PY_FN_NAMES];
};

static void py_names_load(struct elffile *ef, struct py_names *names)
{
	for (size_t i = 0; i < N_PY_FN_NAMES; i++) {
		char lto[64];

		names->found[i] =
		    elffile_symbol(ef, py_fn_names[i], &names->vaddr[i], &names->size[i]) == 0;
		if (names->found[i] || !elffile_has_symtab(ef))
			continue;
		/* LTO builds rename file-local functions */
		snprintf(lto, sizeof(lto), "%s.lto_priv.0", py_fn_names[i]);
		names->found[i] = elffile_symbol(ef, lto, &names->vaddr[i], &names->size[i]) == 0;
	}
}

/* The name and size of the function at vaddr, or NULL (size 0). */
static const char *py_names_at(const struct py_names *names, uint64_t vaddr, uint64_t *size)
{
	*size = 0;
	for (size_t i = 0; i < N_PY_FN_NAMES; i++) {
		if (names->found[i] && names->vaddr[i] == vaddr) {
			*size = names->size[i];
			return py_fn_names[i];
		}
	}
	return NULL;
}

/* Reads a wrapper's straight-line start (see the top of this file) and collects the addresses
 * of the memory it reads: disp32(%rip), or disp(%reg) where reg was loaded from disp32(%rip) (a
 * GOT slot, read from the target). Every form seen loads the table's ctx and reads its malloc
 * slot 8 bytes further (into a register, or through an indirect jump or call), in whichever
 * order and register: the table is the address A read together with A + 8. 0 or -ENOENT. */
static int table_from_wrapper(struct proc *p, const struct mapped *m, uint64_t vaddr,
			      uint64_t *table)
{
	uint8_t code[CODE_WINDOW];
	uint64_t known[16] = {0}, reads[16];
	bool is_known[16] = {false};
	size_t at = 0, nreads = 0;

	if (elffile_read_vaddr(m->ef, vaddr, code, sizeof(code)) != 0 &&
	    elffile_read_vaddr(m->ef, vaddr, code, 32) != 0)
		return -ENOENT;
	for (int n = 0; n < 16 && at < sizeof(code); n++) {
		struct insn in;
		uint64_t next, addr = 0, val;
		bool load, branch;

		if (decode(code + at, sizeof(code) - at, &in) != 0)
			break;
		next = m->bias + vaddr + at + in.len;
		at += in.len;
		if (in.has_modrm && in.mod != 3 && !in.indexed) {
			if (in.riprel)
				addr = next + (uint64_t)in.disp;
			else if (in.rm < 16 && is_known[in.rm])
				addr = known[in.rm] + (uint64_t)in.disp;
		}
		/* mov, cmp (38-3b, 81/83 /7), jmp/call through memory */
		load = !in.twobyte && (in.op == 0x8b || (in.op >= 0x38 && in.op <= 0x3b) ||
				       ((in.op == 0x81 || in.op == 0x83) && (in.reg & 7) == 7));
		branch = !in.twobyte && in.op == 0xff && ((in.reg & 7) == 2 || (in.reg & 7) == 4);
		if ((load || branch) && addr && nreads < 16)
			reads[nreads++] = addr;
		if (!in.twobyte && in.op == 0x8b) {
			is_known[in.reg] = addr && proc_read_u64(p, addr, &val) == 0;
			known[in.reg] = is_known[in.reg] ? val : 0;
		} else if (!in.twobyte && in.op == 0x89 && in.mod == 3) {
			is_known[in.rm] = is_known[in.reg];
			known[in.rm] = known[in.reg];
		} else if (in.has_modrm && !in.twobyte && in.op == 0x8d) {
			is_known[in.reg] = false;
		}
		if (!in.twobyte && (in.op == 0xc3 || in.op == 0xe9 || in.op == 0xeb || branch))
			break; /* the end of the straight line */
	}
	for (size_t i = 0; i < nreads; i++)
		for (size_t j = 0; j < nreads; j++)
			if (reads[j] == reads[i] + 8) {
				*table = reads[i];
				return 0;
			}
	return -ENOENT;
}

/* Counts the RIP-relative reads (mov into a register, cmp) of slot in m's mapped code. Copies
 * of pymalloc's fast path each start with one: load the table's malloc, compare it with
 * _PyObject_Malloc. The bytes are matched, not decoded, but a match needs the exact 32-bit
 * displacement to the slot, so chance hits are negligible next to the threshold. */
static int count_slot_reads(struct proc *p, const struct mapped *m, uint64_t slot, unsigned *count)
{
	*count = 0;
	for (size_t i = 0; i < proc_map_count(p); i++) {
		const struct proc_map *map = proc_map_at(p, i);
		uint64_t len = map->end - map->start;
		uint8_t *buf;
		int ret;

		if (map->perms[2] != 'x' || strcmp(map->path, m->target_path) != 0)
			continue;
		if (len > (256u << 20))
			continue;
		buf = malloc(len);
		if (!buf)
			return -ENOMEM;
		ret = proc_read(p, map->start, buf, len);
		if (ret < 0) {
			free(buf);
			return ret;
		}
		for (uint64_t j = 0; j + 11 <= len; j++) {
			uint8_t rex = buf[j], op = buf[j + 1], modrm = buf[j + 2];
			uint64_t ilen;

			if ((rex & 0xf8) != 0x48 || (modrm & 0xc7) != 0x05)
				continue;
			if (op == 0x8b || op == 0x39 || op == 0x3b)
				ilen = 7;
			else if (op == 0x81 && modrm == 0x3d && rex == 0x48)
				ilen = 11; /* cmpq $imm32, disp32(%rip) */
			else
				continue;
			if (map->start + j + ilen + (uint64_t)(int64_t)le32(buf + j + 3) == slot)
				(*count)++;
		}
		free(buf);
	}
	return 0;
}

/* Adds the probe for one table function at runtime address addr. */
static int add_py_probe(struct proc *p, const struct mapped *rt, const struct py_names *rt_names,
			struct alloc_probes *out, enum py_domain d, int slot, uint64_t addr,
			const char **named, struct pms_error *err)
{
	const struct proc_map *map = proc_map_find(p, addr);
	struct mapped other = {0};
	const struct mapped *m = rt;
	struct py_names other_names;
	const struct py_names *names = rt_names;
	char sym[64];
	uint64_t off, size;
	int ret;

	*named = NULL;
	if (!map || map->perms[2] != 'x' || map->path[0] != '/')
		return pms_error_set(err, PMS_EGARBAGE,
				     "CPython's %s allocator table points its %s at 0x%llx, "
				     "which is not in mapped code",
				     domains[d].wrapper, slots[slot].what,
				     (unsigned long long)addr);
	if (strcmp(map->path, rt->target_path) != 0) {
		/* PyMem_SetAllocator with functions of another object (an extension) */
		ret = mapped_open(p, map->path, &other, err);
		if (ret < 0)
			return ret;
		py_names_load(other.ef, &other_names);
		m = &other;
		names = &other_names;
	}
	ret = code_offset(p, m, addr, &off);
	if (ret < 0) {
		ret = pms_error_set(err, PMS_EGARBAGE, "0x%llx is not code of %s",
				    (unsigned long long)addr, m->target_path);
		goto cleanup;
	}
	*named = py_names_at(names, addr - m->bias, &size);
	if (*named)
		snprintf(sym, sizeof(sym), "%s", *named);
	else
		snprintf(sym, sizeof(sym), "%s%s@table", domains[d].prefix, slots[slot].what);
	add_probe(out, slots[slot].fn, sym, m->host_path, off,
		  skip_from_file(m->ef, addr - m->bias, slots[slot].fn), addr, size);
	/* pymalloc's realloc: `if (ptr == NULL) return _PyObject_Malloc(ctx, nbytes);`, a tail
	 * call in every build named here (not in inlined builds, which have no such symbol) */
	if (out->n && *named && strcmp(*named, "_PyObject_Realloc") == 0 &&
	    strcmp(out->probes[out->n - 1].symbol, "_PyObject_Realloc") == 0)
		out->probes[out->n - 1].null_delegates = true;
	if (m != rt && !strstr(out->note, base_name(map->path)))
		note_add(out, "CPython's allocator was replaced by functions of %s",
			 base_name(map->path));
	ret = 0;
cleanup:
	if (m != rt)
		mapped_close(&other);
	return ret;
}

static int find_table(struct proc *p, const struct mapped *rt, enum py_domain d, uint64_t *table,
		      struct pms_error *err)
{
	uint64_t vaddr;

	if (elffile_symbol(rt->ef, domains[d].wrapper, &vaddr, NULL) == 0 &&
	    table_from_wrapper(p, rt, vaddr, table) == 0)
		return 0;
	if (elffile_symbol(rt->ef, domains[d].table_symbol, &vaddr, NULL) == 0) {
		*table = rt->bias + vaddr;
		return 0;
	}
	return pms_error_set(err, ENOENT,
			     "cannot find CPython's %s allocator table in %s (the function has a "
			     "form this version does not know, and the file has no symbol %s)",
			     domains[d].wrapper, rt->host_path, domains[d].table_symbol);
}

static int find_pymalloc(struct pytarget *t, struct alloc_probes *out, struct pms_error *err)
{
	struct proc *p = pytarget_proc(t);
	struct py_names names;
	struct mapped rt = {0};
	bool debug = false, traced = false;
	uint64_t obj_slot = 0, obj_malloc = 0;
	unsigned reads = 0;
	int ret;

	ret = mapped_open(p, pytarget_runtime_file(t), &rt, err);
	if (ret < 0)
		goto cleanup;
	py_names_load(rt.ef, &names);
	snprintf(out->allocator, sizeof(out->allocator), "cpython %.23s",
		 pytarget_version(t)->text);
	/* obj first: the functions it shares with mem (pymalloc's) get its names */
	for (int d = DOMAIN_COUNT - 1; d >= 0; d--) {
		uint64_t table = 0, fns[5];

		ret = find_table(p, &rt, (enum py_domain)d, &table, err);
		if (ret < 0)
			goto cleanup;
		ret = proc_read(p, table, fns, sizeof(fns));
		if (ret < 0) {
			ret = proc_read_error(p, ret, "CPython's allocator table", err);
			goto cleanup;
		}
		if (!fns[1] || !fns[4]) {
			ret = pms_error_set(err, ENOENT,
					    "CPython's %s allocator table at 0x%llx is empty (the "
					    "interpreter is not initialised yet, or is exiting)",
					    domains[d].wrapper, (unsigned long long)table);
			goto cleanup;
		}
		if (d == DOMAIN_OBJ) {
			obj_slot = table + 8;
			obj_malloc = fns[1];
		}
		if (d == DOMAIN_RAW && fns[1] == obj_malloc)
			note_add(out, "pymalloc is off (PYTHONMALLOC=malloc?): every domain calls "
				      "the raw allocator, which calls malloc");
		for (int s = 0; s < 4; s++) {
			const char *named;

			if (!fns[1 + s])
				continue; /* calloc and realloc may be absent in foreign tables */
			ret = add_py_probe(p, &rt, &names, out, (enum py_domain)d, s, fns[1 + s],
					   &named, err);
			if (ret < 0)
				goto cleanup;
			if (named && strncmp(named, "_PyMem_Debug", 12) == 0)
				debug = true;
			if (named && strncmp(named, "tracemalloc_", 12) == 0)
				traced = true;
		}
	}
	if (debug)
		note_add(out, "the allocator tables point at CPython's debug hooks (debug build or "
			      "PYTHONMALLOC=debug): those are probed");
	if (traced)
		note_add(out, "tracemalloc is tracing: its hooks are probed");

	out->coverage = 1.0;
	ret = count_slot_reads(p, &rt, obj_slot, &reads);
	if (ret < 0) {
		ret = proc_read_error(p, ret, "the interpreter's code", err);
		goto cleanup;
	}
	if (reads > INLINED_SLOT_READS) {
		/* How many allocations the copies serve depends on the workload (one run here:
		 * 136k of 609k reached _PyObject_Malloc), so no fraction is claimed. */
		out->coverage = -1;
		note_add(out,
			 "this build copies pymalloc's fast path into its callers (%u sites): the "
			 "probes see only part of the allocations, share unknown",
			 reads);
	}
	ret = 0;
cleanup:
	mapped_close(&rt);
	return ret;
}

int allocators_find(struct pytarget *t, enum alloc_source source, struct alloc_probes *out,
		    struct pms_error *err)
{
	int ret;

	memset(out, 0, sizeof(*out));
	out->probes = calloc(PMS_MAX_PROBES, sizeof(*out->probes));
	if (!out->probes)
		return pms_error_set(err, ENOMEM, "out of memory");
	switch (source) {
	case ALLOC_SOURCE_MALLOC:
		ret = find_malloc(t, out, err);
		break;
	case ALLOC_SOURCE_PYMALLOC:
		ret = find_pymalloc(t, out, err);
		break;
	default:
		ret = pms_error_set(err, EINVAL, "unknown allocation source %d", (int)source);
		break;
	}
	if (ret < 0)
		allocators_free(out);
	return ret;
}

void allocators_free(struct alloc_probes *p)
{
	if (!p)
		return;
	free(p->probes);
	memset(p, 0, sizeof(*p));
}
