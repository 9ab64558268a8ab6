/* A census of a running CPython heap, from outside: the collector's generation lists give every
 * tracked container (wherever it was allocated), one level of their items gives the objects the
 * collector does not track (str, bytes, int, float, untracked dicts and tuples), and sys.modules
 * gives the containers a person can name (module.NAME, module.Class.attr, module.NAME.attr).
 * Everything is read while the target runs: every link and every object is validated (its type
 * pointer must point at a type, sizes must be sane), and what fails is counted, not trusted. */
#ifndef PMS_PYGC_H
#define PMS_PYGC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "pytarget.h"

#define PYGC_DEFAULT_BUDGET (256ull << 20) /* bytes of remote reads per second */
#define PYGC_DEFAULT_CACHE  (16u << 20)	   /* read cache */
#define PYGC_DEFAULT_SEEN   (1u << 19)	   /* untracked objects deduplicated per snapshot */
#define PYGC_HOLDER_SAMPLE  32		   /* newest items whose types a holder reports */

struct pygc;

struct pygc_opts {
	uint64_t budget;    /* 0: no limit */
	size_t cache_bytes; /* 0: PYGC_DEFAULT_CACHE */
	size_t max_seen;    /* 0: PYGC_DEFAULT_SEEN */
};

/* A type seen by the census; indices stay valid for the life of the struct pygc. */
struct pygc_type {
	uint64_t addr;
	char name[160];		       /* qualified name: "Invoice", "OrderedDict", "Outer.Inner" */
	char module[128];	       /* "builtins" for the built-in types */
	bool is_list, is_dict, is_set; /* exactly list, dict, set or frozenset */
	/* as read when first seen (the bits census uses never change after PyType_Ready) */
	uint64_t flags;
	int64_t basicsize, itemsize;
};

struct pygc_tally {
	uint32_t type; /* index, pygc_type_at() */
	uint64_t count, bytes;
};

/* A container reachable by a name from a module. */
struct pygc_holder {
	char path[256];
	uint32_t type;
	uint64_t addr;
	uint64_t length, bytes;
	uint32_t item_types[PYGC_HOLDER_SAMPLE]; /* the newest items' types (lists: the last) */
	size_t nitems;
};

struct pygc_counters {
	uint64_t objects_read;	  /* objects whose header was read and checked */
	uint64_t gc_objects;	  /* of which on the collector's lists */
	uint64_t torn_reads;	  /* list links that did not hold up (the target changed them) */
	uint64_t invalid_objects; /* objects whose type or sizes failed validation */
	uint64_t unseen;	  /* untracked objects counted without deduplication (set full) */
	uint64_t bytes_read;	  /* remote bytes read, all snapshots so far */
	uint64_t throttle_ns;	  /* time slept to stay within the read budget, so far */
};

struct pygc_snapshot {
	struct pygc_tally *tallies; /* by type, in no order */
	size_t ntallies;
	struct pygc_holder *holders;
	size_t nholders;
	struct pygc_counters counters;
	double scan_s; /* how long the walk took */
};

/* Prepares a census of t. -PMS_EUNSUPPORTED (with a message) for builds census cannot read:
 * free-threaded ones (no generation lists), versions whose layout lacks census's fields. */
int pygc_open(struct pytarget *t, const struct pygc_opts *o, struct pygc **out,
	      struct pms_error *err);
void pygc_close(struct pygc *g);

/* One census. On -ESRCH (the target exited) or another read error, *snap holds what was counted
 * until then. */
int pygc_snapshot(struct pygc *g, struct pygc_snapshot *snap, struct pms_error *err);
void pygc_snapshot_clear(struct pygc_snapshot *snap);

const struct pygc_type *pygc_type_at(const struct pygc *g, uint32_t index);
size_t pygc_type_count(const struct pygc *g);
/* Bytes the census holds (cache, tables), for the profiler's own-cost figure. */
size_t pygc_memory(const struct pygc *g);

#endif
