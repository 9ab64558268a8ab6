#include "pypools.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* struct pool_header (Objects/obmalloc.c, the same from 3.8 to 3.13 on 64-bit builds) */
#define HDR_COUNT	  0  /* uint, in a union with a pointer */
#define HDR_FREEBLOCK	  8  /* block *: the free list */
#define HDR_NEXTPOOL	  16 /* pool *: the class's list of partly used pools */
#define HDR_PREVPOOL	  24
#define HDR_SZIDX	  36 /* uint: the size class */
#define HDR_NEXTOFFSET	  40 /* uint: where the next never-used block starts */
#define HDR_MAXNEXTOFFSET 44 /* uint: POOL_SIZE - block size */
#define HDR_SIZE	  48 /* POOL_OVERHEAD: blocks start here */

/* usedpools[2c] and [2c+1] are the next/prev links of a fake pool header standing for the list
 * head of class c; that header starts two pointers before them. */
#define USED_STRIDE 16

/* Bounds: of the scan that finds a first partly used pool, and of a list walk. */
#define SCAN_MAX_READS 200000
#define WALK_MAX_POOLS 65536

struct pypools {
	struct proc *proc;
	uint64_t pool_size;
	uint64_t usedpools;
	uint8_t *pool_buf; /* one pool, read whole to walk its free list */
};

static uint32_t get_u32(const uint8_t *b, size_t off)
{
	uint32_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

static uint64_t get_u64(const uint8_t *b, size_t off)
{
	uint64_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

int pypools_header_valid(const uint8_t *hdr, uint64_t pool_size, unsigned *cls_out)
{
	uint32_t cls = get_u32(hdr, HDR_SZIDX), next = get_u32(hdr, HDR_NEXTOFFSET);
	uint32_t count = get_u32(hdr, HDR_COUNT);
	uint64_t size, capacity;

	if (cls >= PYPOOLS_CLASSES)
		return 0;
	size = pypools_block_size(cls);
	capacity = (pool_size - HDR_SIZE) / size;
	if (get_u32(hdr, HDR_MAXNEXTOFFSET) != pool_size - size)
		return 0;
	if (next < HDR_SIZE || next > pool_size || (next - HDR_SIZE) % size != 0)
		return 0;
	if (count > capacity)
		return 0;
	if (cls_out)
		*cls_out = cls;
	return 1;
}

/* Reads the header of the pool at pool; 1 when it is a valid one (its class in *cls). */
static int read_header(struct pypools *pp, uint64_t pool, uint8_t hdr[HDR_SIZE], unsigned *cls)
{
	if (pool % pp->pool_size || proc_read(pp->proc, pool, hdr, HDR_SIZE) != 0)
		return 0;
	if (!pypools_header_valid(hdr, pp->pool_size, cls))
		return 0;
	/* a free list inside the pool (or empty) */
	uint64_t fb = get_u64(hdr, HDR_FREEBLOCK);

	return fb == 0 || (fb >= pool + HDR_SIZE && fb < pool + pp->pool_size);
}

/* Does base look like usedpools: every class's head either empty (pointing at itself) or a
 * valid pool of that class that points back at it? */
static bool usedpools_valid(struct pypools *pp, uint64_t base)
{
	uint64_t links[2 * PYPOOLS_CLASSES];
	uint8_t hdr[HDR_SIZE];
	unsigned nonempty = 0;

	if (proc_read(pp->proc, base, links, sizeof(links)) != 0)
		return false;
	for (unsigned c = 0; c < PYPOOLS_CLASSES; c++) {
		uint64_t head = base + USED_STRIDE * c - USED_STRIDE, first = links[2 * c];
		unsigned cls;

		if (first == head && links[2 * c + 1] == head)
			continue;
		if (!read_header(pp, first, hdr, &cls) || cls != c ||
		    get_u64(hdr, HDR_PREVPOOL) != head)
			return false;
		nonempty++;
	}
	return nonempty > 0;
}

/* From a partly used pool of class cls, follows the list to the one header that is not a pool:
 * the list head in usedpools. */
static int follow_to_head(struct pypools *pp, uint64_t pool, unsigned cls)
{
	uint8_t hdr[HDR_SIZE];
	uint64_t at = pool;

	for (int i = 0; i < WALK_MAX_POOLS; i++) {
		unsigned c;
		uint64_t next;

		if (!read_header(pp, at, hdr, &c) || c != cls)
			break;
		next = get_u64(hdr, HDR_NEXTPOOL);
		if (next == pool || next == 0)
			return -ENOENT;
		if (next % pp->pool_size) {
			uint64_t base = next + USED_STRIDE - USED_STRIDE * (uint64_t)cls;

			if (usedpools_valid(pp, base)) {
				pp->usedpools = base;
				return 0;
			}
			return -ENOENT;
		}
		at = next;
	}
	return -ENOENT;
}

/* Scans the anonymous writable mappings (pymalloc's arenas) for a partly used pool, then finds
 * usedpools from it. The target changes under us: a few attempts. */
static int scan(struct pypools *pp)
{
	size_t reads = 0;

	for (size_t i = 0; i < proc_map_count(pp->proc); i++) {
		const struct proc_map *m = proc_map_at(pp->proc, i);
		uint8_t hdr[HDR_SIZE];

		if (m->path[0] || strncmp(m->perms, "rw", 2) != 0)
			continue;
		for (uint64_t a = (m->start + pp->pool_size - 1) & ~(pp->pool_size - 1);
		     a + pp->pool_size <= m->end; a += pp->pool_size) {
			unsigned cls;

			if (++reads > SCAN_MAX_READS)
				return -ENOENT;
			if (!read_header(pp, a, hdr, &cls))
				continue;
			/* in the used list: neither empty nor full */
			if (get_u32(hdr, HDR_COUNT) == 0 || get_u64(hdr, HDR_FREEBLOCK) == 0)
				continue;
			if (follow_to_head(pp, a, cls) == 0)
				return 0;
		}
	}
	return -ENOENT;
}

int pypools_find(struct proc *p, int minor, struct pypools **out, struct pms_error *err)
{
	/* 3.10 moved to 16 KiB pools on 64-bit builds; try the likely size first */
	const uint64_t sizes[2] = {minor >= 10 ? 16384 : 4096, minor >= 10 ? 4096 : 16384};
	struct pypools *pp;

	*out = NULL;
	pp = calloc(1, sizeof(*pp));
	if (!pp)
		return -ENOMEM;
	pp->proc = p;
	for (int attempt = 0; attempt < 3 && !pp->usedpools; attempt++) {
		for (int i = 0; i < 2 && !pp->usedpools; i++) {
			pp->pool_size = sizes[i];
			scan(pp);
		}
	}
	if (!pp->usedpools) {
		free(pp);
		return pms_error_set(
		    err, PMS_EUNSUPPORTED,
		    "found no pymalloc pool in process %d: --events survivors needs "
		    "CPython's small-object allocator (not PYTHONMALLOC=malloc, not "
		    "a free-threaded build)",
		    (int)proc_pid(p));
	}
	pp->pool_buf = malloc(pp->pool_size);
	if (!pp->pool_buf) {
		free(pp);
		return -ENOMEM;
	}
	*out = pp;
	return 0;
}

void pypools_free(struct pypools *pp)
{
	if (!pp)
		return;
	free(pp->pool_buf);
	free(pp);
}

uint64_t pypools_pool_size(const struct pypools *pp)
{
	return pp->pool_size;
}

uint64_t pypools_usedpools(const struct pypools *pp)
{
	return pp->usedpools;
}

int pypools_next_blocks(struct pypools *pp, uint64_t blocks[PYPOOLS_CLASSES])
{
	uint64_t links[2 * PYPOOLS_CLASSES], pools[PYPOOLS_CLASSES];
	uint8_t hdrs[PYPOOLS_CLASSES][HDR_SIZE];
	unsigned cls[PYPOOLS_CLASSES], n = 0;
	int ret, got;

	memset(blocks, 0, PYPOOLS_CLASSES * sizeof(*blocks));
	ret = proc_read(pp->proc, pp->usedpools, links, sizeof(links));
	if (ret)
		return ret;
	for (unsigned c = 0; c < PYPOOLS_CLASSES; c++) {
		uint64_t pool = links[2 * c];

		if (pool == pp->usedpools + USED_STRIDE * c - USED_STRIDE || pool % pp->pool_size)
			continue; /* empty, or not a pool: the list changed under us */
		pools[n] = pool;
		cls[n++] = c;
	}
	got = proc_read_many(pp->proc, pools, n, HDR_SIZE, hdrs);
	if (got < 0)
		return got;
	for (int i = 0; i < got; i++) {
		unsigned c;
		uint64_t fb = get_u64(hdrs[i], HDR_FREEBLOCK);

		if (pypools_header_valid(hdrs[i], pp->pool_size, &c) && c == cls[i] &&
		    fb >= pools[i] + HDR_SIZE && fb < pools[i] + pp->pool_size)
			blocks[c] = fb;
	}
	return 0;
}

int pypools_next_block(struct pypools *pp, unsigned cls, uint64_t *block)
{
	uint64_t blocks[PYPOOLS_CLASSES];
	int ret;

	if (cls >= PYPOOLS_CLASSES)
		return -EINVAL;
	ret = pypools_next_blocks(pp, blocks);
	if (ret)
		return ret;
	if (!blocks[cls])
		return -EAGAIN;
	*block = blocks[cls];
	return 0;
}

int pypools_block_after(struct pypools *pp, uint64_t block, uint64_t *next)
{
	uint64_t pool = block & ~(pp->pool_size - 1);
	int ret = proc_read_u64(pp->proc, block, next);

	if (ret)
		return ret;
	/* the end of the list (the pool carves a never-used block next), or a list that changed */
	if (*next < pool + HDR_SIZE || *next >= pool + pp->pool_size)
		return -EAGAIN;
	return 0;
}

int pypools_class_of(struct pypools *pp, uint64_t addr)
{
	uint8_t hdr[HDR_SIZE];
	unsigned cls;

	if (!read_header(pp, addr & ~(pp->pool_size - 1), hdr, &cls))
		return -1;
	return (int)cls;
}

int pypools_allocated(struct pypools *pp, uint64_t block, unsigned cls, uint64_t *word)
{
	uint64_t pool = block & ~(pp->pool_size - 1), off = block - pool, size, fb;
	uint64_t capacity;
	unsigned c;
	int ret;

	ret = proc_read(pp->proc, pool, pp->pool_buf, pp->pool_size);
	if (ret)
		return ret;
	if (!pypools_header_valid(pp->pool_buf, pp->pool_size, &c) || c != cls)
		return 0;
	size = pypools_block_size(cls);
	capacity = (pp->pool_size - HDR_SIZE) / size;
	if (get_u32(pp->pool_buf, HDR_COUNT) == 0 || off < HDR_SIZE ||
	    (off - HDR_SIZE) % size != 0 || off >= get_u32(pp->pool_buf, HDR_NEXTOFFSET))
		return 0;
	fb = get_u64(pp->pool_buf, HDR_FREEBLOCK);
	for (uint64_t i = 0; fb && i < capacity; i++) {
		if (fb == block)
			return 0;
		if (fb < pool + HDR_SIZE || fb + 8 > pool + pp->pool_size)
			break; /* torn: the list changed while we read */
		fb = get_u64(pp->pool_buf, fb - pool);
	}
	if (word) /* the block's second word, from the same read */
		*word = get_u64(pp->pool_buf, off + 8);
	return 1;
}
