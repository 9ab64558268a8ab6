/* Reads of another process's memory through a bounded cache of aligned chunks, under a read
 * budget. A census reads millions of small objects that pymalloc packs into pools: one system
 * call per object would cost more than the objects are worth, one per 64 KiB chunk reads a
 * thousand of them at once. The cache holds at most its stated bytes; the budget (bytes per
 * second of remote reads) spreads the reads out, so the target's memory bandwidth and our CPU
 * stay bounded. Nothing is cached across rcache_reset(): each snapshot reads afresh. */
#ifndef PMS_RCACHE_H
#define PMS_RCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "proc.h"

#define RCACHE_CHUNK (64u << 10)

struct rcache;

struct rcache_stats {
	uint64_t bytes_read;  /* bytes copied from the target by system calls */
	uint64_t syscalls;    /* reads made */
	uint64_t failed;      /* reads that found nothing mapped */
	uint64_t throttle_ns; /* time slept to stay within the budget */
};

/* A cache of at most max_bytes (rounded down to whole chunks, at least one) over p, reading at
 * most budget bytes per second (0: no limit). NULL on ENOMEM. */
struct rcache *rcache_new(struct proc *p, size_t max_bytes, uint64_t budget);
void rcache_free(struct rcache *c);

/* Forgets every chunk and restarts the budget's clock; the counters keep counting. */
void rcache_reset(struct rcache *c);

/* Reads exactly len bytes at addr: 0, -EFAULT (not mapped, or partly), -ESRCH (the target
 * exited), -EPERM. */
int rcache_read(struct rcache *c, uint64_t addr, void *buf, size_t len);
int rcache_read_u64(struct rcache *c, uint64_t addr, uint64_t *out);

const struct rcache_stats *rcache_stats(const struct rcache *c);
/* Bytes the cache itself holds (its chunks and table). */
size_t rcache_bytes(const struct rcache *c);

#endif
