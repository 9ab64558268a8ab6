/* The census walk. Remote reads go through a chunk cache (pymalloc packs objects densely, so one
 * 64 KiB read serves hundreds of objects) under a byte budget. */
#include "pygc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "pycode.h"
#include "rcache.h"
#include "u64map.h"

/* The fast-subclass bits of tp_flags and two others: the same in every 3.x object.h read here
 * (MANAGED_DICT from 3.11 on: tpflags_preheader says whether the version has it). */
#define TPF_LONG	 (1ul << 24)
#define TPF_LIST	 (1ul << 25)
#define TPF_TUPLE	 (1ul << 26)
#define TPF_BYTES	 (1ul << 27)
#define TPF_UNICODE	 (1ul << 28)
#define TPF_DICT	 (1ul << 29)
#define TPF_READY	 (1ul << 12)
#define TPF_MANAGED_DICT (1ul << 4)

/* Where 3.11+ keeps an instance's materialised __dict__ when its type has a managed dict: three
 * words before the object (MANAGED_DICT_OFFSET in 3.11-3.13); 3.12 tags inline values with bit
 * 0 instead of pointing at a dict. */
#define MANAGED_DICT_BEFORE 24

/* Bounds that make garbage fail fast. */
#define MAX_BASICSIZE (1u << 20)
#define MAX_ITEMSIZE  (1u << 16)
#define MAX_ITEMS     (1u << 24)   /* items of one container read for the one-level walk */
#define MAX_WALK      (200u << 20) /* objects on one generation list */
#define MAX_BAD_TYPES (1u << 16)   /* type pointers remembered as invalid, per snapshot */
#define MAX_TYPES     (1u << 20)
#define MAX_HOLDERS   8192
#define MAX_MODULES   65536
#define ITEM_BATCH    512
#define OBJ_READ      80 /* a GC head and the start of an object: every field census reads */
#define GC_PREV_MASK  (~(uint64_t)3) /* _gc_prev keeps flags in its two low bits */

struct pygc {
	struct pytarget *target;
	struct proc *proc;
	const struct py_layout *l;
	struct rcache *cache;
	uint64_t type_type, list_type, tuple_type, dict_type, set_type, frozenset_type, str_type,
	    int_type, module_type;
	struct pygc_type *types;
	size_t ntypes, captypes;
	struct u64map *type_by_addr; /* addr -> index + 1 */
	struct u64map *bad_types;    /* addrs that failed validation this snapshot */
	struct u64map *seen;	     /* untracked objects counted this snapshot */
	size_t max_seen;
	/* this snapshot's tallies, by type index */
	uint64_t *count, *bytes;
	size_t captally;
	struct pygc_snapshot *snap;
	int fatal; /* -ESRCH / -EPERM seen */
};

static int rd(struct pygc *g, uint64_t addr, void *buf, size_t len)
{
	int ret = rcache_read(g->cache, addr, buf, len);

	if (ret == -ESRCH || ret == -EPERM)
		g->fatal = ret;
	return ret;
}

/* Reads an object's first len bytes. A small object at the end of a mapping (the next page a
 * guard, or not mapped) cannot be over-read: then only what lies before the page's end is
 * read, at least min bytes, and the rest is zeroed. */
static int rd_obj(struct pygc *g, uint64_t addr, uint8_t *buf, size_t len, size_t min)
{
	uint64_t to_page_end = 4096 - (addr & 4095);
	int ret = rd(g, addr, buf, len);

	if (ret != -EFAULT || to_page_end >= len || to_page_end < min)
		return ret;
	ret = rd(g, addr, buf, (size_t)to_page_end);
	if (ret == 0)
		memset(buf + to_page_end, 0, len - (size_t)to_page_end);
	return ret;
}

static uint64_t u64_at(const uint8_t *buf, int32_t off)
{
	uint64_t v;

	memcpy(&v, buf + off, sizeof(v));
	return v;
}

static bool aligned_ptr(uint64_t p)
{
	return p >= 4096 && (p & 7) == 0 && p < (1ull << 47);
}

int pygc_open(struct pytarget *t, const struct pygc_opts *o, struct pygc **out,
	      struct pms_error *err)
{
	const struct pyversion *v = pytarget_version(t);
	const struct py_layout *l = pytarget_layout(t);
	struct pygc *g;

	*out = NULL;
	if (v->build == PY_BUILD_FREE_THREADED)
		return pms_error_set(err, PMS_EUNSUPPORTED,
				     "census cannot read free-threaded Python %s yet: its objects "
				     "live in per-thread mimalloc heaps, not on the collector's "
				     "generation lists",
				     v->text);
	if (l->gc_head_size <= 0 || l->gc_generations < 0 ||
	    (l->runtime_gc < 0 && l->interp_gc < 0) || l->type_name < 0 || l->type_flags < 0 ||
	    l->dictkeys_nentries < 0 || l->interp_modules < 0 || l->list_items < 0)
		return pms_error_set(err, PMS_EUNSUPPORTED,
				     "census does not know the collector of Python %s yet "
				     "(supported: 3.8 to 3.13)",
				     v->text);
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->target = t;
	g->proc = pytarget_proc(t);
	g->l = l;
	g->type_type = pytarget_type_addr(t, PYT_TYPE);
	g->list_type = pytarget_type_addr(t, PYT_LIST);
	g->tuple_type = pytarget_type_addr(t, PYT_TUPLE);
	g->dict_type = pytarget_type_addr(t, PYT_DICT);
	g->set_type = pytarget_type_addr(t, PYT_SET);
	g->frozenset_type = pytarget_type_addr(t, PYT_FROZENSET);
	g->str_type = pytarget_type_addr(t, PYT_STR);
	g->int_type = pytarget_type_addr(t, PYT_INT);
	g->module_type = pytarget_type_addr(t, PYT_MODULE);
	if (!g->type_type || !g->list_type || !g->dict_type || !g->str_type || !g->module_type) {
		free(g);
		return pms_error_set(err, PMS_ENOTPYTHON,
				     "%s does not export PyType_Type, PyList_Type, PyDict_Type, "
				     "PyUnicode_Type and PyModule_Type: census needs them",
				     pytarget_runtime_file(t));
	}
	g->max_seen = o && o->max_seen ? o->max_seen : PYGC_DEFAULT_SEEN;
	g->cache = rcache_new(g->proc, o && o->cache_bytes ? o->cache_bytes : PYGC_DEFAULT_CACHE,
			      o ? o->budget : PYGC_DEFAULT_BUDGET);
	g->type_by_addr = u64map_new(1024);
	if (!g->cache || !g->type_by_addr) {
		pygc_close(g);
		return -ENOMEM;
	}
	*out = g;
	return 0;
}

void pygc_close(struct pygc *g)
{
	if (!g)
		return;
	rcache_free(g->cache);
	u64map_free(g->type_by_addr);
	u64map_free(g->bad_types);
	u64map_free(g->seen);
	free(g->types);
	free(g->count);
	free(g->bytes);
	free(g);
}

const struct pygc_type *pygc_type_at(const struct pygc *g, uint32_t index)
{
	return index < g->ntypes ? &g->types[index] : NULL;
}

size_t pygc_type_count(const struct pygc *g)
{
	return g->ntypes;
}

size_t pygc_memory(const struct pygc *g)
{
	return sizeof(*g) + rcache_bytes(g->cache) + u64map_bytes(g->type_by_addr) +
	       (g->bad_types ? u64map_bytes(g->bad_types) : 0) +
	       (g->seen ? u64map_bytes(g->seen) : 0) + g->captypes * sizeof(*g->types) +
	       g->captally * 2 * sizeof(uint64_t);
}

/* ---- strings ---- */

/* Reads the str object at addr as UTF-8 into out. 0, or -EINVAL when it is not a compact str. */
static int read_str(struct pygc *g, uint64_t addr, char *out, size_t outlen)
{
	const struct py_layout *l = g->l;
	uint8_t hdr[96], data[256];
	uint64_t type, len;
	uint32_t state;
	unsigned kind;
	size_t n, at;

	out[0] = '\0';
	if (!aligned_ptr(addr) || (size_t)l->unicode_compact_data > sizeof(hdr) ||
	    rd_obj(g, addr, hdr, (size_t)l->unicode_compact_data, (size_t)l->unicode_ascii_data) !=
		0)
		return -EINVAL;
	type = u64_at(hdr, l->object_type);
	if (type != g->str_type)
		return -EINVAL;
	len = u64_at(hdr, l->unicode_length);
	memcpy(&state, hdr + l->unicode_state, sizeof(state));
	kind = (state >> l->unicode_state_kind_shift) & 7;
	if (!((state >> l->unicode_state_compact_shift) & 1) || kind == 0 || kind == 3 || kind > 4)
		return -EINVAL;
	at = (state >> l->unicode_state_ascii_shift) & 1 ? (size_t)l->unicode_ascii_data
							 : (size_t)l->unicode_compact_data;
	n = len < sizeof(data) / kind ? (size_t)len : sizeof(data) / kind;
	if (n && rd(g, addr + at, data, n * kind) != 0)
		return -EINVAL;
	return pycode_unicode_to_utf8(l, state, data, n, out, outlen) < 0 ? -EINVAL : 0;
}

/* ---- dicts ---- */

struct dict_view {
	uint64_t keys, values, used;
	uint64_t size, nentries, usable;
	uint64_t entries; /* address of entry 0 */
	size_t entry_size, key_off, value_off;
	uint64_t owned; /* bytes of the tables this dict owns */
};

/* Reads a dict's header and its keys object's header. 0 or -EINVAL. */
static int dict_open(struct pygc *g, uint64_t addr, struct dict_view *d)
{
	const struct py_layout *l = g->l;
	uint8_t hdr[64], kh[64];
	uint64_t index_bytes;

	memset(d, 0, sizeof(*d));
	if (rd_obj(g, addr, hdr, sizeof(hdr), 48) != 0)
		return -EINVAL;
	d->used = u64_at(hdr, l->dict_used);
	d->keys = u64_at(hdr, l->dict_keys);
	d->values = u64_at(hdr, l->dict_values);
	if (!aligned_ptr(d->keys) || rd_obj(g, d->keys, kh, sizeof(kh), 40) != 0)
		return -EINVAL;
	d->nentries = u64_at(kh, l->dictkeys_nentries);
	if (l->dictkeys_size >= 0) {
		uint64_t es;

		d->size = u64_at(kh, l->dictkeys_size);
		es = d->size <= 0xff ? 1 : d->size <= 0xffff ? 2 : d->size <= 0xffffffffull ? 4 : 8;
		index_bytes = es * d->size;
		d->entry_size = (size_t)l->dictentry_size;
		d->key_off = (size_t)l->dictentry_key;
		d->value_off = (size_t)l->dictentry_value;
	} else {
		uint8_t log2 = kh[l->dictkeys_log2_size], log2i = kh[l->dictkeys_log2_index_bytes];

		if (log2 > 40 || log2i > 43)
			return -EINVAL;
		d->size = 1ull << log2;
		index_bytes = 1ull << log2i;
		if (kh[l->dictkeys_kind] == (uint8_t)l->dictkeys_unicode_kind) {
			d->entry_size = (size_t)l->dictunicodeentry_size;
			d->key_off = (size_t)l->dictunicodeentry_key;
			d->value_off = (size_t)l->dictunicodeentry_value;
		} else {
			d->entry_size = (size_t)l->dictentry_size;
			d->key_off = (size_t)l->dictentry_key;
			d->value_off = (size_t)l->dictentry_value;
		}
	}
	/* a power of two, and the entries fit in it (USABLE_FRACTION is 2/3) */
	if (d->size < 8 || (d->size & (d->size - 1)) || d->size > (1ull << 40))
		return -EINVAL;
	d->usable = (d->size << 1) / 3;
	if (d->nentries > d->usable || d->used > d->nentries)
		return -EINVAL;
	d->entries = d->keys + (uint64_t)l->dictkeys_indices + index_bytes;
	if (d->values)
		d->owned = (uint64_t)l->dictvalues_values + 8 * d->usable; /* keys are shared */
	else if (d->nentries == 0 && d->used == 0 && d->size == 8)
		d->owned = 0; /* the shared empty keys object, or a fresh table: count nothing */
	else
		d->owned = (uint64_t)l->dictkeys_indices + index_bytes + d->entry_size * d->usable;
	return 0;
}

/* Calls fn(key, value) for every live entry, at most max of them, newest last; stops early
 * when fn returns non-zero. 0, or -EINVAL when a read fails. */
static int dict_each(struct pygc *g, const struct dict_view *d, uint64_t skip_before,
		     int (*fn)(struct pygc *g, uint64_t key, uint64_t value, void *ctx), void *ctx)
{
	uint8_t buf[ITEM_BATCH * 24];
	uint64_t vals[ITEM_BATCH];
	uint64_t n = d->nentries;

	for (uint64_t i = skip_before; i < n;) {
		size_t batch = n - i < ITEM_BATCH ? (size_t)(n - i) : ITEM_BATCH;

		if (rd(g, d->entries + i * d->entry_size, buf, batch * d->entry_size) != 0)
			return -EINVAL;
		if (d->values &&
		    rd(g, d->values + (uint64_t)g->l->dictvalues_values + i * 8, vals, batch * 8))
			return -EINVAL;
		for (size_t k = 0; k < batch; k++) {
			uint64_t key = u64_at(buf + k * d->entry_size, (int32_t)d->key_off);
			uint64_t value =
			    d->values ? vals[k]
				      : u64_at(buf + k * d->entry_size, (int32_t)d->value_off);

			if (!key || !value)
				continue;
			if (fn(g, key, value, ctx))
				return 0;
		}
		i += batch;
	}
	return 0;
}

/* ---- types ---- */

static int add_type(struct pygc *g, const struct pygc_type *t, uint32_t *index)
{
	if (g->ntypes >= MAX_TYPES)
		return -ENOSPC;
	if (g->ntypes == g->captypes) {
		size_t cap = g->captypes ? 2 * g->captypes : 256;
		struct pygc_type *n = realloc(g->types, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		g->types = n;
		g->captypes = cap;
	}
	g->types[g->ntypes] = *t;
	*index = (uint32_t)g->ntypes;
	if (u64map_put(g->type_by_addr, t->addr, g->ntypes + 1))
		return -ENOMEM;
	g->ntypes++;
	return 0;
}

struct module_lookup {
	char *out;
	size_t outlen;
	bool found;
};

static int find_module_name(struct pygc *g, uint64_t key, uint64_t value, void *ctx)
{
	struct module_lookup *m = ctx;
	char name[16];

	if (read_str(g, key, name, sizeof(name)) != 0 || strcmp(name, "__module__") != 0)
		return 0;
	m->found = read_str(g, value, m->out, m->outlen) == 0;
	return 1;
}

/* A type pointer is believed when it points at an object whose own type is `type` (or a
 * metatype: a type with the type-subclass flag), that is ready, has a readable name and sane
 * sizes. The verdict is cached: good ones for the census's life, bad ones for the snapshot. */
static int type_index(struct pygc *g, uint64_t addr, uint32_t *index)
{
	const struct py_layout *l = g->l;
	uint8_t buf[1024], meta[256], nbuf[160];
	struct pygc_type t;
	uint64_t v, metatype, flags, tp_name;
	int64_t basicsize, itemsize;
	size_t len = (size_t)l->heaptype_size;
	int ret;

	if (u64map_get(g->type_by_addr, addr, &v)) {
		*index = (uint32_t)(v - 1);
		return 0;
	}
	if (!aligned_ptr(addr) || (g->bad_types && u64map_get(g->bad_types, addr, &v)))
		return -EINVAL;
	if (len > sizeof(buf) || rd(g, addr, buf, len) != 0) {
		len = (size_t)l->type_size;
		if (rd(g, addr, buf, len) != 0)
			goto bad;
	}
	metatype = u64_at(buf, l->object_type);
	if (metatype != g->type_type) {
		uint64_t mflags;

		if (!aligned_ptr(metatype) || (size_t)l->type_flags + 8 > sizeof(meta) ||
		    rd(g, metatype, meta, (size_t)l->type_flags + 8) != 0)
			goto bad;
		mflags = u64_at(meta, l->type_flags);
		if (!((mflags >> l->tpflags_type_subclass_bit) & 1))
			goto bad;
	}
	flags = u64_at(buf, l->type_flags);
	basicsize = (int64_t)u64_at(buf, l->type_basicsize);
	itemsize = (int64_t)u64_at(buf, l->type_itemsize);
	tp_name = u64_at(buf, l->type_name);
	if (!(flags & TPF_READY) || basicsize < 16 || basicsize > MAX_BASICSIZE || itemsize < 0 ||
	    itemsize > MAX_ITEMSIZE || !tp_name)
		goto bad;
	memset(&t, 0, sizeof(t));
	t.addr = addr;
	if (rd(g, tp_name, nbuf, sizeof(nbuf)) != 0 && rd(g, tp_name, nbuf, 32) != 0)
		goto bad;
	nbuf[sizeof(nbuf) - 1] = '\0';
	if (!nbuf[0])
		goto bad;
	for (const uint8_t *p = nbuf; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			goto bad;
	if ((flags & (uint64_t)l->tpflags_heaptype) && len == (size_t)l->heaptype_size) {
		struct module_lookup m = {t.module, sizeof(t.module), false};
		struct dict_view d;
		uint64_t dict = u64_at(buf, l->type_dict);

		if (read_str(g, u64_at(buf, l->heaptype_qualname), t.name, sizeof(t.name)) != 0)
			snprintf(t.name, sizeof(t.name), "%s", (const char *)nbuf);
		if (aligned_ptr(dict) && dict_open(g, dict, &d) == 0)
			dict_each(g, &d, 0, find_module_name, &m);
		if (!m.found)
			snprintf(t.module, sizeof(t.module), "?");
	} else {
		const char *dot = strrchr((const char *)nbuf, '.');

		if (dot) {
			snprintf(t.module, sizeof(t.module), "%.*s",
				 (int)(dot - (const char *)nbuf), (const char *)nbuf);
			snprintf(t.name, sizeof(t.name), "%s", dot + 1);
		} else {
			snprintf(t.module, sizeof(t.module), "builtins");
			snprintf(t.name, sizeof(t.name), "%s", (const char *)nbuf);
		}
	}
	t.is_list = addr == g->list_type;
	t.is_dict = addr == g->dict_type;
	t.is_set = addr == g->set_type || addr == g->frozenset_type;
	t.flags = flags;
	t.basicsize = basicsize;
	t.itemsize = itemsize;
	ret = add_type(g, &t, index);
	return ret;
bad:
	if (!g->bad_types)
		g->bad_types = u64map_new(256);
	if (g->bad_types && u64map_count(g->bad_types) < MAX_BAD_TYPES)
		u64map_put(g->bad_types, addr, 1);
	return -EINVAL;
}

/* ---- objects ---- */

struct obj {
	uint64_t addr, type_addr;
	uint32_t type;
	uint64_t flags;
	int64_t basicsize, itemsize;
	uint64_t bytes; /* the object, its GC head and pre-header, and the buffers it owns */
	int64_t ob_size;
	uint8_t head[OBJ_READ - 16]; /* the object's first bytes */
};

static int tally(struct pygc *g, uint32_t type, uint64_t bytes)
{
	if (type >= g->captally) {
		size_t cap = g->captally ? g->captally : 256;
		uint64_t *c, *b;

		while (cap <= type)
			cap *= 2;
		c = realloc(g->count, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		g->count = c;
		b = realloc(g->bytes, cap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		g->bytes = b;
		memset(c + g->captally, 0, (cap - g->captally) * sizeof(*c));
		memset(b + g->captally, 0, (cap - g->captally) * sizeof(*b));
		g->captally = cap;
	}
	g->count[type]++;
	g->bytes[type] += bytes;
	return 0;
}

/* Validates the object whose first bytes are in o->head and sizes it. 0 or -EINVAL. */
static int size_object(struct pygc *g, struct obj *o, bool gc)
{
	const struct py_layout *l = g->l;
	const uint8_t *h = o->head;
	int64_t refcnt = (int64_t)u64_at(h, 0), n = 0;
	uint64_t bytes;

	const struct pygc_type *t;

	o->type_addr = u64_at(h, l->object_type);
	if (refcnt <= 0 || type_index(g, o->type_addr, &o->type) != 0)
		return -EINVAL;
	t = &g->types[o->type];
	o->flags = t->flags;
	o->basicsize = t->basicsize;
	o->itemsize = t->itemsize;
	o->ob_size = (int64_t)u64_at(h, l->varobject_size);
	bytes = (uint64_t)o->basicsize;
	if (o->flags & TPF_UNICODE) {
		uint32_t state;
		uint64_t len = (uint64_t)o->ob_size; /* PyASCIIObject.length sits there too */
		unsigned kind;

		memcpy(&state, h + l->unicode_state, sizeof(state));
		kind = (state >> l->unicode_state_kind_shift) & 7;
		if (len > (1ull << 40))
			return -EINVAL;
		if ((state >> l->unicode_state_compact_shift) & 1) {
			if ((state >> l->unicode_state_ascii_shift) & 1)
				bytes = (uint64_t)l->unicode_ascii_data + len + 1;
			else
				bytes = (uint64_t)l->unicode_compact_data +
					(len + 1) * (kind ? kind : 1);
		}
	} else if (o->itemsize) {
		if ((o->flags & TPF_LONG) && l->long_tag >= 0)
			n = (int64_t)((uint64_t)o->ob_size >> l->long_nonsize_bits);
		else
			n = o->ob_size < 0 ? -o->ob_size : o->ob_size;
		if (n < 0 || n > (1ll << 40) / o->itemsize)
			return -EINVAL;
		bytes += (uint64_t)(n * o->itemsize);
	}
	if (o->flags & TPF_LIST) {
		int64_t allocated = (int64_t)u64_at(h, l->list_allocated);

		if (allocated < o->ob_size || o->ob_size < 0 || allocated > (1ll << 36))
			return -EINVAL;
		bytes += 8 * (uint64_t)allocated;
	} else if (o->flags & TPF_DICT) {
		struct dict_view d;

		if (dict_open(g, o->addr, &d) == 0)
			bytes += d.owned;
	} else if (g->l->set_table >= 0 &&
		   (o->type_addr == g->set_type || o->type_addr == g->frozenset_type)) {
		uint64_t table = u64_at(h, l->set_table), mask = u64_at(h, l->set_mask);

		if (mask > (1ull << 36))
			return -EINVAL;
		if (table != o->addr + (uint64_t)l->set_smalltable)
			bytes += (mask + 1) * (uint64_t)l->setentry_size;
	}
	if (gc) {
		bytes += (uint64_t)l->gc_head_size;
		if (o->flags & (uint64_t)l->tpflags_preheader)
			bytes += 16;
	}
	o->bytes = bytes;
	return 0;
}

/* An item of a container: counted here unless the collector tracks it (then its list counts it)
 * or it was counted already this snapshot. */
static void visit_item(struct pygc *g, uint64_t addr)
{
	struct obj o;
	uint64_t v;

	if (!aligned_ptr(addr))
		return;
	if (g->seen && u64map_get(g->seen, addr, &v))
		return;
	o.addr = addr;
	if (rd_obj(g, addr, o.head, sizeof(o.head), 32) != 0) {
		g->snap->counters.invalid_objects++;
		return;
	}
	g->snap->counters.objects_read++;
	if (size_object(g, &o, false) != 0) {
		g->snap->counters.invalid_objects++;
		return;
	}
	if ((o.flags >> g->l->tpflags_type_subclass_bit) & 1) {
		uint64_t own;

		/* a class: type's tp_is_gc says only heap types carry a GC head (static types
		 * such as int are plain data in the interpreter's image) */
		if (rd(g, addr + (uint64_t)g->l->type_flags, &own, 8) != 0)
			return;
		if (!(own & (uint64_t)g->l->tpflags_heaptype))
			o.flags &= ~(uint64_t)g->l->tpflags_have_gc;
	}
	if (o.flags & (uint64_t)g->l->tpflags_have_gc) {
		uint64_t next;

		if (rd(g, addr - (uint64_t)g->l->gc_head_size + (uint64_t)g->l->gc_head_next, &next,
		       8) != 0 ||
		    next != 0)
			return; /* tracked (or unreadable): the lists count it */
		o.bytes += (uint64_t)g->l->gc_head_size;
		if (o.flags & (uint64_t)g->l->tpflags_preheader)
			o.bytes += 16;
	}
	if (g->seen && u64map_count(g->seen) < g->max_seen)
		u64map_put(g->seen, addr, 1);
	else
		g->snap->counters.unseen++;
	tally(g, o.type, o.bytes);
}

/* Reads n pointers at addr in batches and visits each. */
static void visit_array(struct pygc *g, uint64_t addr, uint64_t n)
{
	uint64_t items[ITEM_BATCH];

	if (n > MAX_ITEMS)
		n = MAX_ITEMS;
	for (uint64_t i = 0; i < n;) {
		size_t batch = n - i < ITEM_BATCH ? (size_t)(n - i) : ITEM_BATCH;

		if (rd(g, addr + 8 * i, items, 8 * batch) != 0)
			return;
		for (size_t k = 0; k < batch; k++)
			visit_item(g, items[k]);
		i += batch;
	}
}

static int visit_entry(struct pygc *g, uint64_t key, uint64_t value, void *ctx)
{
	(void)ctx;
	visit_item(g, key);
	visit_item(g, value);
	return g->fatal;
}

/* One level below an exact list, tuple, dict, set or frozenset. */
static void visit_items(struct pygc *g, const struct obj *o)
{
	const struct py_layout *l = g->l;

	if (o->type_addr == g->list_type) {
		visit_array(g, u64_at(o->head, l->list_items), (uint64_t)o->ob_size);
	} else if (o->type_addr == g->tuple_type) {
		visit_array(g, o->addr + (uint64_t)l->tuple_items, (uint64_t)o->ob_size);
	} else if (o->type_addr == g->dict_type) {
		struct dict_view d;

		if (dict_open(g, o->addr, &d) == 0)
			dict_each(g, &d, 0, visit_entry, NULL);
	} else if (o->type_addr == g->set_type || o->type_addr == g->frozenset_type) {
		uint64_t table = u64_at(o->head, l->set_table), mask = u64_at(o->head, l->set_mask);
		uint8_t buf[ITEM_BATCH * 16];
		size_t es = (size_t)l->setentry_size;

		if (es > 16 || mask >= MAX_ITEMS)
			return;
		for (uint64_t i = 0; i <= mask;) {
			size_t batch =
			    mask + 1 - i < ITEM_BATCH ? (size_t)(mask + 1 - i) : ITEM_BATCH;

			if (rd(g, table + i * es, buf, batch * es) != 0)
				return;
			for (size_t k = 0; k < batch; k++) {
				uint64_t key = u64_at(buf + k * es, l->setentry_key);
				/* setentry is {key, hash}: the hash is the other word */
				int64_t hash =
				    (int64_t)u64_at(buf + k * es, l->setentry_key == 0 ? 8 : 0);

				if (key && hash != -1) /* -1: the dummy left by a removal */
					visit_item(g, key);
			}
			i += batch;
		}
	}
}

/* Walks one generation list from its head. */
static void walk_list(struct pygc *g, uint64_t head, const uint64_t *heads, size_t nheads)
{
	const struct py_layout *l = g->l;
	uint64_t prev = head, cur, steps = 0;
	uint8_t buf[OBJ_READ];

	if (rd(g, head + (uint64_t)l->gc_head_next, &cur, 8) != 0)
		return;
	cur &= GC_PREV_MASK;
	while (cur != head && !g->fatal) {
		struct obj o;
		uint64_t next, back;
		bool other_head = false;

		for (size_t i = 0; i < nheads; i++)
			other_head |= cur == heads[i];
		if (other_head || !aligned_ptr(cur) || ++steps > MAX_WALK) {
			g->snap->counters.torn_reads++;
			return;
		}
		if (rd_obj(g, cur, buf, sizeof(buf), 48) != 0) {
			g->snap->counters.torn_reads++;
			return;
		}
		next = u64_at(buf, l->gc_head_next) & GC_PREV_MASK;
		back = u64_at(buf, l->gc_head_prev) & GC_PREV_MASK;
		if (back != prev)
			g->snap->counters.torn_reads++; /* linked or unlinked under us: go on */
		o.addr = cur + (uint64_t)l->gc_head_size;
		memcpy(o.head, buf + l->gc_head_size, sizeof(o.head));
		g->snap->counters.objects_read++;
		if (size_object(g, &o, true) == 0) {
			g->snap->counters.gc_objects++;
			tally(g, o.type, o.bytes);
			visit_items(g, &o);
		} else {
			g->snap->counters.invalid_objects++;
		}
		prev = cur;
		cur = next;
	}
}

/* ---- holders ---- */

struct holder_walk {
	const char *prefix; /* "module" or "module.Class" or "module.NAME" */
	const char *module;
	int depth;
};

static struct pygc_holder *holder_add(struct pygc *g)
{
	struct pygc_snapshot *s = g->snap;

	if (s->nholders >= MAX_HOLDERS)
		return NULL;
	if (s->nholders % 64 == 0) {
		struct pygc_holder *n = realloc(s->holders, (s->nholders + 64) * sizeof(*n));

		if (!n)
			return NULL;
		s->holders = n;
	}
	memset(&s->holders[s->nholders], 0, sizeof(s->holders[0]));
	return &s->holders[s->nholders++];
}

struct sample {
	struct pygc *g;
	struct pygc_holder *h;
};

static void sample_item(struct pygc *g, struct pygc_holder *h, uint64_t item)
{
	uint8_t hdr[16];
	uint32_t t;

	if (h->nitems >= PYGC_HOLDER_SAMPLE || !aligned_ptr(item) || rd(g, item, hdr, 16) != 0 ||
	    type_index(g, u64_at(hdr, g->l->object_type), &t) != 0)
		return;
	h->item_types[h->nitems++] = t;
}

static int sample_entry(struct pygc *g, uint64_t key, uint64_t value, void *ctx)
{
	(void)key;
	sample_item(g, ctx, value);
	return 0;
}

/* Records the container at addr (already sized in o) as a holder named path. */
static void record_holder(struct pygc *g, const char *path, const struct obj *o)
{
	const struct py_layout *l = g->l;
	struct pygc_holder *h;

	for (size_t i = 0; i < g->snap->nholders; i++)
		if (g->snap->holders[i].addr == o->addr)
			return; /* reachable by two names: the first one found stays */
	h = holder_add(g);
	if (!h)
		return;
	snprintf(h->path, sizeof(h->path), "%s", path);
	h->type = o->type;
	h->addr = o->addr;
	h->bytes = o->bytes;
	if (o->flags & TPF_LIST) {
		uint64_t n = (uint64_t)o->ob_size, from, items[PYGC_HOLDER_SAMPLE], hdr[2];

		h->length = n;
		/* A growing list moves its item array: the header and the newest items are read
		 * together, past the cache, so that they belong to each other. */
		if (proc_read(g->proc, o->addr + (uint64_t)l->varobject_size, hdr, sizeof(hdr)) ||
		    (int32_t)(l->list_items - l->varobject_size) != 8)
			return;
		n = hdr[0];
		from = n > PYGC_HOLDER_SAMPLE ? n - PYGC_HOLDER_SAMPLE : 0;
		if (n <= (1ull << 36) && n > from &&
		    proc_read(g->proc, hdr[1] + 8 * from, items, 8 * (n - from)) == 0)
			for (uint64_t i = 0; i < n - from; i++)
				sample_item(g, h, items[i]);
	} else if (o->flags & TPF_DICT) {
		struct dict_view d;

		if (dict_open(g, o->addr, &d) == 0) {
			h->length = d.used;
			dict_each(g, &d,
				  d.nentries > PYGC_HOLDER_SAMPLE ? d.nentries - PYGC_HOLDER_SAMPLE
								  : 0,
				  sample_entry, h);
		}
	} else {
		h->length = u64_at(o->head, l->set_used);
	}
}

static bool is_container(struct pygc *g, const struct obj *o)
{
	return (o->flags & (TPF_LIST | TPF_DICT)) || o->type_addr == g->set_type ||
	       o->type_addr == g->frozenset_type;
}

static int read_obj(struct pygc *g, uint64_t addr, struct obj *o)
{
	o->addr = addr;
	if (!aligned_ptr(addr) || rd_obj(g, addr, o->head, sizeof(o->head), 32) != 0)
		return -EINVAL;
	return size_object(g, o, false);
}

static int holder_name(struct pygc *g, uint64_t key, uint64_t value, void *ctx);

/* The names in one namespace dict (a module's, a class's, an instance's). */
static void walk_namespace(struct pygc *g, uint64_t dict, const char *prefix, const char *module,
			   int depth)
{
	struct holder_walk w = {prefix, module, depth};
	struct dict_view d;

	uint64_t type;

	if (aligned_ptr(dict) && rd(g, dict + (uint64_t)g->l->object_type, &type, 8) == 0 &&
	    type == g->dict_type && dict_open(g, dict, &d) == 0 && d.nentries < MAX_ITEMS)
		dict_each(g, &d, 0, holder_name, &w);
}

/* The __dict__ of an instance, when it has one that is a real dict. */
static uint64_t instance_dict(struct pygc *g, const struct obj *o)
{
	const struct py_layout *l = g->l;
	uint64_t dict = 0;
	int64_t off;

	if (l->tpflags_preheader && (o->flags & TPF_MANAGED_DICT)) {
		if (rd(g, o->addr - MANAGED_DICT_BEFORE, &dict, 8) != 0 || (dict & 1))
			return 0;
	} else if (rd(g, o->type_addr + (uint64_t)l->type_dictoffset, &off, 8) == 0 && off > 0 &&
		   off < o->basicsize) {
		if (rd(g, o->addr + (uint64_t)off, &dict, 8) != 0)
			return 0;
	}
	return dict;
}

static int holder_name(struct pygc *g, uint64_t key, uint64_t value, void *ctx)
{
	struct holder_walk *w = ctx;
	char name[128], path[256];
	struct obj o;

	if (g->fatal)
		return 1;
	if (read_str(g, key, name, sizeof(name)) != 0 || !name[0] ||
	    (name[0] == '_' && name[1] == '_'))
		return 0; /* dunders: the interpreter's own bookkeeping */
	if (read_obj(g, value, &o) != 0)
		return 0;
	snprintf(path, sizeof(path), "%s.%s", w->prefix, name);
	if (is_container(g, &o)) {
		record_holder(g, path, &o);
		return 0;
	}
	if (w->depth > 0)
		return 0;
	/* o.flags are the flags of value's type: the type-subclass bit makes value a class */
	if ((o.flags >> g->l->tpflags_type_subclass_bit) & 1) {
		const struct pygc_type *ct;
		uint64_t dict;
		uint32_t ci;

		/* a class defined in this module: its attributes (module.Class.attr) */
		if (type_index(g, value, &ci) != 0)
			return 0;
		ct = pygc_type_at(g, ci);
		if (!(ct->flags & (uint64_t)g->l->tpflags_heaptype) ||
		    strcmp(ct->module, w->module) != 0)
			return 0;
		if (rd(g, value + (uint64_t)g->l->type_dict, &dict, 8) == 0)
			walk_namespace(g, dict, path, w->module, w->depth + 1);
		return 0;
	}
	/* an instance of a class with a __dict__: module.NAME.attr */
	if (o.flags & (uint64_t)g->l->tpflags_heaptype) {
		uint64_t dict = instance_dict(g, &o);

		if (dict)
			walk_namespace(g, dict, path, w->module, w->depth + 1);
	}
	return 0;
}

static int module_entry(struct pygc *g, uint64_t key, uint64_t value, void *ctx)
{
	char name[128];
	uint64_t type, dict;
	int *n = ctx;

	if (g->fatal || ++*n > MAX_MODULES)
		return 1;
	if (read_str(g, key, name, sizeof(name)) != 0 ||
	    rd(g, value + (uint64_t)g->l->object_type, &type, 8) != 0 || type != g->module_type ||
	    rd(g, value + (uint64_t)g->l->module_dict, &dict, 8) != 0)
		return 0;
	walk_namespace(g, dict, name, name, 0);
	return 0;
}

static void walk_modules(struct pygc *g, uint64_t interp)
{
	struct dict_view d;
	uint64_t modules;
	int n = 0;

	if (rd(g, interp + (uint64_t)g->l->interp_modules, &modules, 8) != 0 ||
	    !aligned_ptr(modules) || dict_open(g, modules, &d) != 0)
		return;
	dict_each(g, &d, 0, module_entry, &n);
}

/* ---- snapshots ---- */

void pygc_snapshot_clear(struct pygc_snapshot *snap)
{
	free(snap->tallies);
	free(snap->holders);
	memset(snap, 0, sizeof(*snap));
}

static int finish(struct pygc *g, struct pygc_snapshot *snap)
{
	size_t n = 0;

	for (size_t i = 0; i < g->captally; i++)
		n += g->count[i] != 0;
	snap->tallies = calloc(n ? n : 1, sizeof(*snap->tallies));
	if (!snap->tallies)
		return -ENOMEM;
	for (size_t i = 0; i < g->captally; i++)
		if (g->count[i]) {
			snap->tallies[snap->ntallies].type = (uint32_t)i;
			snap->tallies[snap->ntallies].count = g->count[i];
			snap->tallies[snap->ntallies].bytes = g->bytes[i];
			snap->ntallies++;
		}
	return 0;
}

int pygc_snapshot(struct pygc *g, struct pygc_snapshot *snap, struct pms_error *err)
{
	const struct py_layout *l = g->l;
	uint64_t start = clock_monotonic_ns(), interp, base;
	uint64_t heads[8];
	size_t nheads = 0;
	int ret;

	memset(snap, 0, sizeof(*snap));
	g->snap = snap;
	g->fatal = 0;
	if (g->captally) {
		memset(g->count, 0, g->captally * sizeof(*g->count));
		memset(g->bytes, 0, g->captally * sizeof(*g->bytes));
	}
	u64map_free(g->bad_types);
	g->bad_types = NULL;
	u64map_free(g->seen);
	g->seen = u64map_new(65536);
	if (!g->seen)
		return -ENOMEM;
	ret = proc_refresh_maps(g->proc, err);
	if (ret)
		return ret;
	rcache_reset(g->cache);

	if (l->runtime_gc >= 0) {
		base = pytarget_runtime(g->target) + (uint64_t)l->runtime_gc;
	} else {
		ret = proc_read_u64(
		    g->proc, pytarget_runtime(g->target) + (uint64_t)l->runtime_interpreters_main,
		    &interp);
		if (ret)
			return proc_read_error(g->proc, ret, "the main interpreter", err);
		base = interp + (uint64_t)l->interp_gc;
	}
	for (int i = 0; i < l->gc_generation_count && nheads < 7; i++)
		heads[nheads++] =
		    base + (uint64_t)l->gc_generations + (uint64_t)(i * l->gc_generation_stride);
	heads[nheads++] = base + (uint64_t)l->gc_permanent_generation;
	for (size_t i = 0; i < nheads && !g->fatal; i++)
		walk_list(g, heads[i], heads, nheads);
	if (!g->fatal) {
		ret = proc_read_u64(
		    g->proc, pytarget_runtime(g->target) + (uint64_t)l->runtime_interpreters_main,
		    &interp);
		/* the names are read afresh: the walk's chunks are a scan old by now */
		rcache_reset(g->cache);
		if (ret == 0)
			walk_modules(g, interp);
		else if (ret == -ESRCH || ret == -EPERM)
			g->fatal = ret;
	}
	snap->scan_s = (double)(clock_monotonic_ns() - start) * 1e-9;
	snap->counters.bytes_read = rcache_stats(g->cache)->bytes_read;
	snap->counters.throttle_ns = rcache_stats(g->cache)->throttle_ns;
	ret = finish(g, snap);
	g->snap = NULL;
	if (ret)
		return ret;
	if (g->fatal)
		return proc_read_error(g->proc, g->fatal, "the heap", err);
	if (snap->counters.gc_objects == 0)
		return pms_error_set(err, PMS_EGARBAGE,
				     "census found no object on the collector's lists of process "
				     "%d: its memory does not look like CPython %s's",
				     proc_pid(g->proc), pytarget_version(g->target)->text);
	return 0;
}
