/* CPython's small-object allocator (pymalloc) seen from outside: where the pools of each size
 * class are, which block the next allocation of a class will take, and whether a block is still
 * allocated. Found from the target's data alone, so stripped builds work too: a partly used
 * pool's list links lead to the list heads inside the interpreter's `usedpools` array (a static
 * in 3.8-3.11, inside the interpreter state from 3.12), and every pool header says its class. */
#ifndef PMS_PYPOOLS_H
#define PMS_PYPOOLS_H

#include <stdint.h>

#include "errors.h"
#include "proc.h"

#define PYPOOLS_CLASSES 32 /* 512 bytes in steps of 16 (3.8+, 64-bit) */

struct pypools;

/* Finds the pools of process p (CPython minor version `minor`). -PMS_EUNSUPPORTED with a message
 * when no pymalloc pool is found (PYTHONMALLOC=malloc, a free-threaded build). */
int pypools_find(struct proc *p, int minor, struct pypools **out, struct pms_error *err);
void pypools_free(struct pypools *pp);

uint64_t pypools_pool_size(const struct pypools *pp);
/* Address of the usedpools array in the target. */
uint64_t pypools_usedpools(const struct pypools *pp);

/* Bytes of a block of class cls. */
static inline uint64_t pypools_block_size(unsigned cls)
{
	return ((uint64_t)cls + 1) * 16;
}

/* The block the next allocation of class cls will take: 0, -EAGAIN when the class's current
 * pool has no free block (or the target's data do not hold up), another negative errno when
 * they cannot be read. */
int pypools_next_block(struct pypools *pp, unsigned cls, uint64_t *block);

/* The free block after `block` on its pool's free list: 0, -EAGAIN at the end of the list (the
 * pool carves a never-used block then) or when the list changed, or a read error. */
int pypools_block_after(struct pypools *pp, uint64_t block, uint64_t *next);

/* pypools_next_block at depth 0 for every class at once (two system calls): blocks[c] is 0 for a
 * class without one. 0 or a negative errno. */
int pypools_next_blocks(struct pypools *pp, uint64_t blocks[PYPOOLS_CLASSES]);

/* The class of the pool holding addr, or -1 when addr is not in a pymalloc pool (as far as its
 * header tells). */
int pypools_class_of(struct pypools *pp, uint64_t addr);

/* 1 when block is allocated now from a pool of class cls, 0 when it is free (or the pool serves
 * another class now), a negative errno when it cannot be read. When allocated and word is not
 * NULL, *word gets the block's second word (read with the pool, in the same system call). */
int pypools_allocated(struct pypools *pp, uint64_t block, unsigned cls, uint64_t *word);

/* Checks a pool header read from memory; exposed for the unit tests. cls_out gets its class. */
int pypools_header_valid(const uint8_t *hdr, uint64_t pool_size, unsigned *cls_out);

#endif
