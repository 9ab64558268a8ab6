/* Where the target's allocators live: the functions the `malloc` and `pymalloc` event sources
 * put uprobes on, found in the files the target has mapped (libc or the allocator that replaces
 * it; the functions CPython's allocator tables point to, read from the target's memory), each
 * with the instruction the probe should sit on. */
#ifndef PMS_ALLOCATORS_H
#define PMS_ALLOCATORS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "pymemspy.h"
#include "pytarget.h"

enum alloc_source {
	ALLOC_SOURCE_MALLOC = 1,   /* libc's malloc family, or jemalloc/tcmalloc/mimalloc */
	ALLOC_SOURCE_PYMALLOC = 2, /* CPython's PyObject_* and PyMem_Raw* domains */
};

struct alloc_probe {
	enum pms_alloc_fn fn;
	char symbol[64];     /* for messages: "malloc", "_PyObject_Malloc", "je_malloc" */
	char path[PATH_MAX]; /* the file to attach to, as this process sees it */
	uint64_t offset;     /* file offset of the function's entry (what uprobes take) */
	/* bytes past the entry where the entry probe sits: a later instruction that the kernel
	 * emulates (push) costs a tenth of one it must single-step (mov); the arguments must still
	 * be in their registers there and every call of interest must pass it */
	uint32_t entry_skip;
	uint64_t address; /* runtime address of the entry in the target */
	uint64_t size;	  /* bytes of the function's code, 0 if unknown: a call of another probed
			   * function made from inside this one is nested, and does not count */
	/* realloc(NULL, n) tail-calls another probed function (pymalloc's _PyObject_Realloc jumps
	 * to _PyObject_Malloc), so the return address cannot tell the nested call: that call is
	 * the one that counts, and this one's NULL case must not */
	bool null_delegates;
};

struct alloc_probes {
	struct alloc_probe *probes;
	size_t n;
	char allocator[32]; /* "glibc", "jemalloc", "tcmalloc", "mimalloc", "cpython 3.12" */
	/* share of the allocations the probed functions see: 1.0, or -1 when known to be below 1
	 * by an amount we cannot tell from the binary (`pymalloc` on builds that copy the fast path
	 * into callers, e.g. Debian's PGO+LTO python3.11; the note says so) */
	double coverage;
	char note[256]; /* what the user should be told when recording starts; "" if nothing */
};

/* Finds the functions to probe for one source; release with allocators_free. Errors (message in
 * err; out is left empty): -ENOENT when the target has no such allocator (statically linked and
 * stripped, tables not found or empty), -PMS_EGARBAGE when a table points outside mapped code,
 * -ESRCH/-EPERM from reading the target. */
int allocators_find(struct pytarget *t, enum alloc_source source, struct alloc_probes *out,
		    struct pms_error *err);
void allocators_free(struct alloc_probes *p);

/* The entry_skip for a function of kind fn whose first bytes are code[0..len): the offset of the
 * first push reached by straight-line code that keeps the arguments and %rsp intact, or 0. */
uint32_t allocators_entry_skip(enum pms_alloc_fn fn, const uint8_t *code, size_t len);

#endif
