/* Chunked remote-read cache: two-way set associative, each chunk clipped to the mapping that
 * holds the address that brought it in (a chunk may straddle the end of a mapping). */
#include "rcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

struct slot {
	uint64_t base;	 /* chunk-aligned address; 0 = empty */
	uint32_t lo, hi; /* the valid bytes: [base + lo, base + hi) */
	uint64_t used;	 /* the last use, for replacement inside a set */
};

struct rcache {
	struct proc *proc;
	struct slot *slots;
	uint8_t *data; /* nslots chunks */
	size_t nslots; /* even: sets of two */
	uint64_t budget;
	uint64_t clock;
	uint64_t t0_ns, since_reset;
	struct rcache_stats stats;
};

struct rcache *rcache_new(struct proc *p, size_t max_bytes, uint64_t budget)
{
	struct rcache *c = calloc(1, sizeof(*c));
	size_t n = max_bytes / RCACHE_CHUNK;

	if (!c)
		return NULL;
	n &= ~(size_t)1;
	if (n < 2)
		n = 2;
	c->proc = p;
	c->nslots = n;
	c->budget = budget;
	c->slots = calloc(n, sizeof(*c->slots));
	c->data = malloc(n * RCACHE_CHUNK);
	if (!c->slots || !c->data) {
		rcache_free(c);
		return NULL;
	}
	rcache_reset(c);
	return c;
}

void rcache_free(struct rcache *c)
{
	if (!c)
		return;
	free(c->slots);
	free(c->data);
	free(c);
}

void rcache_reset(struct rcache *c)
{
	memset(c->slots, 0, c->nslots * sizeof(*c->slots));
	c->t0_ns = clock_monotonic_ns();
	c->since_reset = 0;
}

const struct rcache_stats *rcache_stats(const struct rcache *c)
{
	return &c->stats;
}

size_t rcache_bytes(const struct rcache *c)
{
	return c->nslots * (RCACHE_CHUNK + sizeof(struct slot)) + sizeof(*c);
}

/* Sleeps as long as the bytes read since the reset run ahead of the budget (one chunk of burst
 * allowed). */
static void throttle(struct rcache *c, size_t n)
{
	uint64_t now, allowed, ahead_ns;
	struct timespec ts;

	c->since_reset += n;
	if (!c->budget)
		return;
	now = clock_monotonic_ns();
	allowed = (uint64_t)((double)(now - c->t0_ns) * 1e-9 * (double)c->budget) + RCACHE_CHUNK;
	if (c->since_reset <= allowed)
		return;
	ahead_ns = (uint64_t)((double)(c->since_reset - allowed) * 1e9 / (double)c->budget);
	ts.tv_sec = (time_t)(ahead_ns / 1000000000ull);
	ts.tv_nsec = (long)(ahead_ns % 1000000000ull);
	nanosleep(&ts, NULL);
	c->stats.throttle_ns += ahead_ns;
}

static int direct(struct rcache *c, uint64_t addr, void *buf, size_t len)
{
	int ret = proc_read(c->proc, addr, buf, len);

	c->stats.syscalls++;
	if (ret == 0) {
		c->stats.bytes_read += len;
		throttle(c, len);
	} else {
		c->stats.failed++;
	}
	return ret;
}

/* The slot holding addr's chunk, filled if needed; NULL when the chunk cannot be cached (no
 * mapping known there, or the read failed): the caller reads directly. *err is set to a fatal
 * errno (-ESRCH, -EPERM) when there is one. */
static struct slot *lookup(struct rcache *c, uint64_t addr, int *err)
{
	uint64_t base = addr & ~(uint64_t)(RCACHE_CHUNK - 1);
	uint64_t h = (base / RCACHE_CHUNK) * 0x9E3779B97F4A7C15ull;
	size_t set = (size_t)((h >> 32) % (c->nslots / 2)) * 2;
	struct slot *a = &c->slots[set], *b = &c->slots[set + 1], *s;
	const struct proc_map *m;
	uint64_t lo, hi;
	int ret;

	*err = 0;
	c->clock++;
	if (a->base == base) {
		a->used = c->clock;
		return a;
	}
	if (b->base == base) {
		b->used = c->clock;
		return b;
	}
	m = proc_map_find(c->proc, addr);
	if (!m)
		return NULL;
	lo = m->start > base ? m->start : base;
	hi = m->end < base + RCACHE_CHUNK ? m->end : base + RCACHE_CHUNK;
	s = a->used <= b->used ? a : b;
	s->base = 0;
	ret = proc_read(c->proc, lo, c->data + (size_t)(s - c->slots) * RCACHE_CHUNK + (lo - base),
			(size_t)(hi - lo));
	c->stats.syscalls++;
	if (ret) {
		c->stats.failed++;
		if (ret == -ESRCH || ret == -EPERM)
			*err = ret;
		return NULL;
	}
	c->stats.bytes_read += hi - lo;
	throttle(c, (size_t)(hi - lo));
	s->base = base;
	s->lo = (uint32_t)(lo - base);
	s->hi = (uint32_t)(hi - base);
	s->used = c->clock;
	return s;
}

int rcache_read(struct rcache *c, uint64_t addr, void *buf, size_t len)
{
	uint8_t *out = buf;

	if (addr == 0 || addr + len < addr)
		return -EFAULT;
	while (len) {
		uint64_t off = addr & (RCACHE_CHUNK - 1);
		size_t piece = RCACHE_CHUNK - off < len ? RCACHE_CHUNK - off : len;
		struct slot *s;
		int err, ret;

		s = lookup(c, addr, &err);
		if (err)
			return err;
		if (!s || off < s->lo || off + piece > s->hi) {
			/* not cacheable here: read the rest in one go */
			ret = direct(c, addr, out, len);
			return ret;
		}
		memcpy(out, c->data + (size_t)(s - c->slots) * RCACHE_CHUNK + off, piece);
		out += piece;
		addr += piece;
		len -= piece;
	}
	return 0;
}

int rcache_read_u64(struct rcache *c, uint64_t addr, uint64_t *out)
{
	return rcache_read(c, addr, out, sizeof(*out));
}
