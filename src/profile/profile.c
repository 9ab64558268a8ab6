#include "profile.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pycode.h"
#include "u64map.h"

#define PROFILE_MAX_SITES   65536
#define PROFILE_MAX_STACKS  65536
#define PROFILE_MAX_PAGES   (512u * 1024) /* 2 GiB of growth tracked page by page */
#define PROFILE_MAX_BUCKETS 1024	  /* series keep their length by widening buckets */
#define PROFILE_MAX_THREADS 4096
#define PAGE_SIZE_BYTES	    4096
#define PROFILE_MAX_LIVE    (1u << 20) /* sampled allocations followed until freed */

/* A sampled allocation still alive (allocator sources). */
struct live_rec {
	uint64_t addr, size;
	double at, weight; /* weight: 1/p, what this sample stands for */
	uint32_t site, tid;
	uint32_t stack; /* index in stacks, UINT32_MAX when none */
};

struct site_rec {
	struct profile_site pub;
	int64_t *series;
	size_t series_cap;
	int64_t best_stack_bytes;
	/* what profile_take_deltas reported already */
	bool announced;
	const struct profile_frame *stack_announced;
	int64_t grown_taken, released_taken;
	uint64_t samples_taken;
	double allocs_taken, frees_taken, var_grown_taken, var_live_taken;
	uint64_t live_samples_taken;
};

struct stack_rec {
	size_t site;
	int64_t bytes;	  /* grown (allocated) */
	int64_t released; /* of which released (freed) */
	uint64_t samples;
	struct profile_frame *frames;
	size_t nframes;
};

struct profile {
	struct pytarget *target;
	struct pycode_cache *codes;
	struct u64map *strings; /* hash -> index in strs */
	char **strs;
	size_t nstrs, strs_cap;
	struct u64map *site_index; /* key hash -> index in sites */
	struct site_rec *sites;
	size_t nsites, sites_cap;
	struct u64map *stack_index; /* stack id -> index in stacks */
	struct stack_rec *stacks;
	size_t nstacks, stacks_cap;
	struct u64map *pages; /* page address -> site << 32 | pages */
	struct u64map *thread_index;
	struct u64map *thread_taken; /* tid -> bytes reported by profile_take_deltas */
	struct profile_thread *threads;
	size_t nthreads;
	struct u64map *live_index; /* address -> index in live */
	struct live_rec *live;
	size_t nlive, live_cap;
	uint32_t *live_holes; /* free slots of live */
	size_t nholes;
	double bucket_seconds;
	size_t nbuckets; /* buckets in use by every series */
	struct profile_totals totals;
	const struct profile_site **sorted;
};

static const char *intern(struct profile *p, const char *s)
{
	uint64_t h = u64map_hash_bytes(s, strlen(s), 0), idx;

	/* a 64-bit collision between two different strings moves on to the next key */
	for (;; h++) {
		if (!u64map_get(p->strings, h, &idx))
			break;
		if (strcmp(p->strs[idx], s) == 0)
			return p->strs[idx];
	}
	if (p->nstrs == p->strs_cap) {
		size_t cap = p->strs_cap ? 2 * p->strs_cap : 256;
		char **n = realloc(p->strs, cap * sizeof(*n));

		if (!n)
			return NULL;
		p->strs = n;
		p->strs_cap = cap;
	}
	p->strs[p->nstrs] = strdup(s);
	if (!p->strs[p->nstrs] || u64map_put(p->strings, h, p->nstrs)) {
		free(p->strs[p->nstrs]);
		return NULL;
	}
	return p->strs[p->nstrs++];
}

struct profile *profile_new(struct pytarget *t)
{
	struct profile *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->target = t;
	p->bucket_seconds = 1.0;
	p->codes = t ? pycode_cache_new(t, 0) : NULL;
	p->strings = u64map_new(1024);
	p->site_index = u64map_new(1024);
	p->stack_index = u64map_new(1024);
	p->pages = u64map_new(4096);
	p->thread_index = u64map_new(64);
	p->thread_taken = u64map_new(64);
	p->live_index = u64map_new(1024);
	p->threads = calloc(PROFILE_MAX_THREADS, sizeof(*p->threads));
	if ((t && !p->codes) || !p->thread_taken || !p->live_index || !p->strings ||
	    !p->site_index || !p->stack_index || !p->pages || !p->thread_index || !p->threads) {
		profile_free(p);
		return NULL;
	}
	return p;
}

void profile_free(struct profile *p)
{
	if (!p)
		return;
	pycode_cache_free(p->codes);
	for (size_t i = 0; i < p->nstrs; i++)
		free(p->strs[i]);
	free(p->strs);
	for (size_t i = 0; i < p->nsites; i++)
		free(p->sites[i].series);
	free(p->sites);
	for (size_t i = 0; i < p->nstacks; i++)
		free(p->stacks[i].frames);
	free(p->stacks);
	u64map_free(p->strings);
	u64map_free(p->site_index);
	u64map_free(p->stack_index);
	u64map_free(p->pages);
	u64map_free(p->thread_index);
	u64map_free(p->thread_taken);
	u64map_free(p->live_index);
	free(p->live);
	free(p->live_holes);
	free(p->threads);
	free(p->sorted);
	free(p);
}

/* The site for (function, file, line), created on first use; SIZE_MAX when full. */
static size_t site_for(struct profile *p, const char *function, const char *file, int line,
		       double at)
{
	struct {
		const char *function, *file;
		int64_t line;
	} key = {function, file, line};
	uint64_t h = u64map_hash_bytes(&key, sizeof(key), 1), idx;
	struct site_rec *s;

	if (u64map_get(p->site_index, h, &idx))
		return (size_t)idx;
	if (p->nsites == PROFILE_MAX_SITES)
		return SIZE_MAX;
	if (p->nsites == p->sites_cap) {
		size_t cap = p->sites_cap ? 2 * p->sites_cap : 64;
		struct site_rec *n = realloc(p->sites, cap * sizeof(*n));

		if (!n)
			return SIZE_MAX;
		p->sites = n;
		p->sites_cap = cap;
	}
	if (u64map_put(p->site_index, h, p->nsites))
		return SIZE_MAX;
	s = &p->sites[p->nsites];
	memset(s, 0, sizeof(*s));
	s->pub.function = function;
	s->pub.file = file;
	s->pub.line = line;
	s->pub.first_seen = at;
	return p->nsites++;
}

/* Halves the resolution of every series so that they keep at most PROFILE_MAX_BUCKETS. */
static void widen_buckets(struct profile *p)
{
	for (size_t i = 0; i < p->nsites; i++) {
		struct site_rec *s = &p->sites[i];

		size_t old = s->pub.nseries;

		for (size_t b = 0; b < old; b++)
			s->series[b / 2] = (b % 2 ? s->series[b / 2] : 0) + s->series[b];
		s->pub.nseries = (old + 1) / 2;
		for (size_t b = s->pub.nseries; b < old; b++)
			s->series[b] = 0;
	}
	p->nbuckets = (p->nbuckets + 1) / 2;
	p->bucket_seconds *= 2;
}

static int series_add(struct profile *p, size_t site, double at, int64_t bytes)
{
	struct site_rec *s = &p->sites[site];
	size_t b;

	if (at < 0)
		at = 0;
	while ((size_t)(at / p->bucket_seconds) >= PROFILE_MAX_BUCKETS)
		widen_buckets(p);
	b = (size_t)(at / p->bucket_seconds);
	if (b >= s->series_cap) {
		size_t cap = s->series_cap ? s->series_cap : 16;
		int64_t *n;

		while (cap <= b)
			cap *= 2;
		n = realloc(s->series, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + s->series_cap, 0, (cap - s->series_cap) * sizeof(*n));
		s->series = n;
		s->series_cap = cap;
	}
	s->series[b] += bytes;
	if (b + 1 > s->pub.nseries)
		s->pub.nseries = b + 1;
	if (b + 1 > p->nbuckets)
		p->nbuckets = b + 1;
	s->pub.series = s->series;
	return 0;
}

static void symbolize(struct profile *p, const struct pms_frame *in, struct profile_frame *out)
{
	const struct pycode_info *info;

	if (p->codes && pycode_lookup(p->codes, in->code, &info) == 0) {
		out->function = intern(p, info->function);
		out->file = intern(p, info->file);
		out->line = pycode_line(p->codes, in->code, in->offset);
	} else {
		out->function = intern(p, "<unknown code>");
		out->file = intern(p, "?");
		out->line = 0;
	}
}

/* The stack of an event, symbolized when it is new; SIZE_MAX when it cannot be had. */
static size_t stack_for(struct profile *p, const struct pms_event *ev, size_t size, double at,
			bool make_site)
{
	struct stack_rec *st;
	uint64_t idx;
	size_t n;

	if (u64map_get(p->stack_index, ev->stack_id, &idx))
		return (size_t)idx;
	if (!(ev->flags & PMS_EVF_STACK_INLINE) || p->nstacks == PROFILE_MAX_STACKS)
		return SIZE_MAX;
	n = ev->nframes > PMS_MAX_DEPTH ? PMS_MAX_DEPTH : ev->nframes;
	if (size < PMS_EVENT_SIZE(n) || n == 0)
		return SIZE_MAX;
	if (p->nstacks == p->stacks_cap) {
		size_t cap = p->stacks_cap ? 2 * p->stacks_cap : 64;
		struct stack_rec *r = realloc(p->stacks, cap * sizeof(*r));

		if (!r)
			return SIZE_MAX;
		p->stacks = r;
		p->stacks_cap = cap;
	}
	st = &p->stacks[p->nstacks];
	memset(st, 0, sizeof(*st));
	st->frames = calloc(n, sizeof(*st->frames));
	if (!st->frames)
		return SIZE_MAX;
	for (size_t i = 0; i < n; i++)
		symbolize(p, &ev->frames[i], &st->frames[i]);
	st->nframes = n;
	/* a stack only learned (nothing charged yet) gets its site when it is first charged: an
	 * empty site would show in every list */
	st->site = make_site ? site_for(p, st->frames[0].function, st->frames[0].file,
					st->frames[0].line, at)
			     : SIZE_MAX;
	if ((make_site && st->site == SIZE_MAX) ||
	    u64map_put(p->stack_index, ev->stack_id, p->nstacks)) {
		free(st->frames);
		return SIZE_MAX;
	}
	return p->nstacks++;
}

/* An event that charges nothing but may carry a stack later events refer to by its hash. */
static void learn_stack(struct profile *p, const struct pms_event *ev, size_t size, double at)
{
	if (ev->stack_id && (ev->flags & PMS_EVF_STACK_INLINE))
		stack_for(p, ev, size, at, false);
}

static void charge_thread(struct profile *p, uint32_t tid, int64_t bytes)
{
	uint64_t idx;

	if (!u64map_get(p->thread_index, tid, &idx)) {
		if (p->nthreads == PROFILE_MAX_THREADS ||
		    u64map_put(p->thread_index, tid, p->nthreads))
			return;
		idx = p->nthreads++;
		p->threads[idx].tid = tid;
	}
	p->threads[idx].bytes += bytes;
}

/* Charges bytes to the site of an event's stack (or a pseudo-site saying why there is none);
 * returns the site, SIZE_MAX when out of memory. */
static size_t charge_site(struct profile *p, const struct pms_event *ev, size_t size, double at,
			  int64_t bytes, size_t *stack_out)
{
	size_t stack = SIZE_MAX, site;
	const char *pseudo = NULL;

	if (ev->flags & PMS_EVF_NO_SURVIVOR) {
		pseudo = "<pymalloc, no survivor>";
	} else if (ev->flags & PMS_EVF_NO_TSTATE) {
		pseudo = "<no python thread>";
	} else if (!ev->stack_id) {
		pseudo = "<no python frame>";
	} else {
		stack = stack_for(p, ev, size, at, true);
		if (stack == SIZE_MAX) {
			p->totals.stacks_lost++;
			pseudo = "<stack lost>";
		}
	}
	if (pseudo) {
		site = site_for(p, intern(p, pseudo), intern(p, ""), 0, at);
	} else {
		struct stack_rec *st = &p->stacks[stack];

		if (st->site == SIZE_MAX)
			st->site = site_for(p, st->frames[0].function, st->frames[0].file,
					    st->frames[0].line, at);
		st->bytes += bytes;
		st->samples++;
		site = st->site;
	}
	*stack_out = stack;
	if (site == SIZE_MAX)
		return SIZE_MAX;
	p->sites[site].pub.grown += bytes;
	p->sites[site].pub.samples++;
	if (stack != SIZE_MAX && p->stacks[stack].bytes > p->sites[site].best_stack_bytes) {
		p->sites[site].best_stack_bytes = p->stacks[stack].bytes;
		p->sites[site].pub.stack = p->stacks[stack].frames;
		p->sites[site].pub.stack_len = p->stacks[stack].nframes;
	}
	return site;
}

static int add_growth(struct profile *p, const struct pms_event *ev, size_t size, double at)
{
	int64_t bytes = ev->bytes;
	size_t site, stack;

	p->totals.events++;
	p->totals.grown += bytes;
	charge_thread(p, ev->tid, bytes);
	site = charge_site(p, ev, size, at, bytes, &stack);
	if (site == SIZE_MAX)
		return -ENOMEM;
	/* remember which site grew this page, so that releasing it can be charged back */
	if (ev->addr && !(ev->flags & PMS_EVF_NO_FAULT) &&
	    u64map_count(p->pages) < PROFILE_MAX_PAGES) {
		uint64_t page = ev->addr & ~(uint64_t)(PAGE_SIZE_BYTES - 1), old = 0;
		uint64_t pages = (uint64_t)(bytes + PAGE_SIZE_BYTES - 1) / PAGE_SIZE_BYTES;

		if (u64map_get(p->pages, page, &old) && (old >> 32) == site)
			pages += old & 0xffffffffu;
		if (u64map_put(p->pages, page, ((uint64_t)site << 32) | (pages & 0xffffffffu)))
			p->totals.pages_untracked++;
	} else {
		p->totals.pages_untracked++;
	}
	return series_add(p, site, at, bytes);
}

struct release_ctx {
	struct profile *p;
	uint64_t start, end;
	double at;
	uint64_t *hits;
	size_t nhits;
};

static void release_page(struct profile *p, uint64_t page, double at)
{
	uint64_t v;
	size_t site;
	int64_t bytes;

	if (!u64map_del(p->pages, page, &v))
		return;
	site = (size_t)(v >> 32);
	bytes = (int64_t)(v & 0xffffffffu) * PAGE_SIZE_BYTES;
	if (site >= p->nsites)
		return;
	p->sites[site].pub.released += bytes;
	p->totals.released += bytes;
	series_add(p, site, at, -bytes);
}

static void collect_in_range(uint64_t key, uint64_t value, void *vctx)
{
	struct release_ctx *c = vctx;

	(void)value;
	if (key >= c->start && key < c->end)
		c->hits[c->nhits++] = key;
}

static void add_release(struct profile *p, const struct pms_event *ev, double at)
{
	uint64_t start = ev->addr & ~(uint64_t)(PAGE_SIZE_BYTES - 1);
	uint64_t end = ev->addr + ev->len;
	uint64_t npages = (end - start + PAGE_SIZE_BYTES - 1) / PAGE_SIZE_BYTES;
	struct release_ctx c = {p, start, end, at, NULL, 0};

	if (end <= start || u64map_count(p->pages) == 0)
		return;
	/* look pages up one by one, or scan what we track: whichever is shorter */
	if (npages <= u64map_count(p->pages)) {
		for (uint64_t a = start; a < end; a += PAGE_SIZE_BYTES)
			release_page(p, a, at);
		return;
	}
	c.hits = malloc(u64map_count(p->pages) * sizeof(*c.hits));
	if (!c.hits)
		return;
	u64map_each(p->pages, collect_in_range, &c);
	for (size_t i = 0; i < c.nhits; i++)
		release_page(p, c.hits[i], at);
	free(c.hits);
}

/* mremap moved a range: the pages it held keep their sites at their new addresses. */
static void add_move(struct profile *p, const struct pms_event *ev)
{
	uint64_t start = ev->addr & ~(uint64_t)(PAGE_SIZE_BYTES - 1), end = ev->addr + ev->len;
	struct release_ctx c = {p, start, end, 0, NULL, 0};
	uint64_t *values;

	if (end <= start || u64map_count(p->pages) == 0)
		return;
	c.hits = malloc(u64map_count(p->pages) * sizeof(*c.hits));
	values = malloc(u64map_count(p->pages) * sizeof(*values));
	if (!c.hits || !values)
		goto out;
	u64map_each(p->pages, collect_in_range, &c);
	/* all out first: the new range may overlap the old one */
	for (size_t i = 0; i < c.nhits; i++)
		u64map_del(p->pages, c.hits[i], &values[i]);
	for (size_t i = 0; i < c.nhits; i++)
		u64map_put(p->pages, ev->new_addr + (c.hits[i] - start), values[i]);
out:
	free(c.hits);
	free(values);
}

/* Forgets a followed allocation: freed, or its address handed out again (so it was freed
 * unseen). The bytes it stood for leave its site's live bytes. */
static void free_live(struct profile *p, uint64_t addr, double at)
{
	struct live_rec *l;
	struct site_rec *s;
	uint64_t idx;
	int64_t bytes;

	if (!u64map_del(p->live_index, addr, &idx) || idx >= p->nlive)
		return;
	l = &p->live[idx];
	s = &p->sites[l->site];
	bytes = llround((double)l->size * l->weight);
	s->pub.released += bytes;
	s->pub.frees += l->weight;
	s->pub.var_live -= (double)l->size * (double)l->size * l->weight * (l->weight - 1);
	if (s->pub.var_live < 0)
		s->pub.var_live = 0;
	s->pub.live_samples--;
	if (l->stack < p->nstacks)
		p->stacks[l->stack].released += bytes;
	p->totals.released += bytes;
	charge_thread(p, l->tid, -bytes);
	series_add(p, l->site, at, -bytes);
	l->weight = 0; /* a hole */
	p->live_holes[p->nholes++] = (uint32_t)idx;
}

/* A slot in live, or SIZE_MAX at the cap. */
static size_t live_slot(struct profile *p)
{
	if (p->nholes)
		return p->live_holes[--p->nholes];
	if (p->nlive == PROFILE_MAX_LIVE)
		return SIZE_MAX;
	if (p->nlive == p->live_cap) {
		size_t cap = p->live_cap ? 2 * p->live_cap : 1024;
		struct live_rec *n = realloc(p->live, cap * sizeof(*n));
		uint32_t *h = realloc(p->live_holes, cap * sizeof(*h));

		if (h)
			p->live_holes = h;
		if (!n || !h) {
			if (n)
				p->live = n;
			return SIZE_MAX;
		}
		p->live = n;
		p->live_cap = cap;
	}
	return p->nlive++;
}

static int add_alloc(struct profile *p, const struct pms_event *ev, size_t size, double at)
{
	/* the probability the kernel sampled it with, in units of 2^-32 */
	double weight = ev->p_q32 ? (double)PMS_P_ONE / (double)ev->p_q32 : 1.0;
	double var = (double)ev->len * (double)ev->len * weight * (weight - 1);
	int64_t bytes = llround((double)ev->len * weight);
	struct site_rec *s;
	size_t site, slot, stack;

	/* the allocator handed this address out again: the block we followed was freed unseen */
	free_live(p, ev->addr, at);
	p->totals.events++;
	p->totals.grown += bytes;
	charge_thread(p, ev->tid, bytes);
	site = charge_site(p, ev, size, at, bytes, &stack);
	if (site == SIZE_MAX)
		return -ENOMEM;
	s = &p->sites[site];
	s->pub.allocs += weight;
	s->pub.var_grown += var;
	slot = ev->flags & PMS_EVF_UNTRACKED ? SIZE_MAX : live_slot(p);
	if (slot == SIZE_MAX || u64map_put(p->live_index, ev->addr, slot)) {
		/* never followed to its free: it stays allocated, not live */
		if (slot != SIZE_MAX) {
			p->live[slot].weight = 0; /* a hole, never a record */
			p->live_holes[p->nholes++] = (uint32_t)slot;
		}
		p->totals.allocs_untracked++;
		s->pub.released += bytes;
		if (stack != SIZE_MAX)
			p->stacks[stack].released += bytes;
		s->pub.frees += weight;
		charge_thread(p, ev->tid, -bytes);
		return 0;
	}
	p->live[slot] = (struct live_rec){
	    .addr = ev->addr,
	    .size = ev->len,
	    .at = at,
	    .weight = weight,
	    .site = (uint32_t)site,
	    .tid = ev->tid,
	    .stack = stack == SIZE_MAX ? UINT32_MAX : (uint32_t)stack,
	};
	s->pub.var_live += var;
	s->pub.live_samples++;
	return series_add(p, site, at, bytes);
}

/* Net bytes, then allocated, then samples, then names: the same order for a recording and for
 * its file read back. */
static int cmp_stacks(const void *a, const void *b)
{
	const struct profile_stack *x = a, *y = b;
	int64_t nx = x->grown - x->released, ny = y->grown - y->released;
	int c;

	if (nx != ny)
		return nx > ny ? -1 : 1;
	if (x->grown != y->grown)
		return x->grown > y->grown ? -1 : 1;
	if (x->samples != y->samples)
		return x->samples > y->samples ? -1 : 1;
	for (size_t i = 0; i < x->nframes && i < y->nframes; i++) {
		if ((c = strcmp(x->frames[i].function, y->frames[i].function)) ||
		    (c = strcmp(x->frames[i].file, y->frames[i].file)))
			return c;
		if (x->frames[i].line != y->frames[i].line)
			return x->frames[i].line < y->frames[i].line ? -1 : 1;
	}
	return x->nframes < y->nframes ? -1 : x->nframes > y->nframes;
}

size_t profile_stacks(const struct profile *p, struct profile_stack *out, size_t max)
{
	struct profile_stack *all;
	size_t n;

	if (!p->nstacks || !max)
		return 0;
	all = malloc(p->nstacks * sizeof(*all));
	if (!all)
		return 0;
	n = 0;
	/* stacks that carry nothing (a rebuilt profile's representative stacks) are not listed */
	for (size_t i = 0; i < p->nstacks; i++)
		if (p->stacks[i].bytes || p->stacks[i].released)
			all[n++] = (struct profile_stack){p->stacks[i].frames, p->stacks[i].nframes,
							  p->stacks[i].bytes, p->stacks[i].released,
							  p->stacks[i].samples};
	qsort(all, n, sizeof(*all), cmp_stacks);
	n = n < max ? n : max;
	memcpy(out, all, n * sizeof(*out));
	free(all);
	return n;
}

size_t profile_oldest_live(const struct profile *p, const struct profile_site *s,
			   struct profile_live *out, size_t max)
{
	size_t n = 0;

	/* insertion into a short sorted list: max is a handful */
	for (size_t i = 0; i < p->nlive && max; i++) {
		const struct live_rec *l = &p->live[i];
		size_t k;

		if (l->weight == 0 || &p->sites[l->site].pub != s)
			continue;
		if (n == max && l->at >= out[n - 1].at)
			continue;
		k = n < max ? n++ : n - 1;
		while (k > 0 && out[k - 1].at > l->at) {
			out[k] = out[k - 1];
			k--;
		}
		out[k] = (struct profile_live){l->at, l->size, l->addr, l->tid};
	}
	return n;
}

int profile_add_event(struct profile *p, const struct pms_event *ev, size_t size, double at)
{
	if (!p->target)
		return -EINVAL; /* a rebuilt profile has no target to symbolize against */
	switch (ev->kind) {
	case PMS_EV_GROWTH:
		if (ev->bytes > 0)
			return add_growth(p, ev, size, at);
		learn_stack(p, ev, size, at);
		return 0;
	case PMS_EV_WATCH:
		learn_stack(p, ev, size, at);
		return 0;
	case PMS_EV_SHRINK:
		p->totals.shrunk += -ev->bytes;
		return 0;
	case PMS_EV_RELEASE:
		add_release(p, ev, at);
		return 0;
	case PMS_EV_MOVE:
		add_move(p, ev);
		return 0;
	case PMS_EV_ALLOC:
		return add_alloc(p, ev, size, at);
	case PMS_EV_FREE:
		free_live(p, ev->addr, at);
		return 0;
	default:
		return 0;
	}
}

static int cmp_sites(const void *a, const void *b)
{
	const struct profile_site *x = *(const struct profile_site *const *)a;
	const struct profile_site *y = *(const struct profile_site *const *)b;
	int64_t nx = x->grown - x->released, ny = y->grown - y->released;

	if (nx != ny)
		return nx > ny ? -1 : 1;
	return x->samples > y->samples ? -1 : x->samples < y->samples;
}

const struct profile_site *const *profile_sites(struct profile *p, size_t *n)
{
	const struct profile_site **sorted = realloc(p->sorted, (p->nsites + 1) * sizeof(*sorted));

	*n = 0;
	if (!sorted)
		return NULL;
	p->sorted = sorted;
	for (size_t i = 0; i < p->nsites; i++) {
		/* every series spans the same buckets, so a report can compare them */
		series_add(p, i, (double)(p->nbuckets ? p->nbuckets - 1 : 0) * p->bucket_seconds,
			   0);
		sorted[i] = &p->sites[i].pub;
	}
	qsort(sorted, p->nsites, sizeof(*sorted), cmp_sites);
	*n = p->nsites;
	return sorted;
}

static int cmp_threads(const void *a, const void *b)
{
	const struct profile_thread *x = a, *y = b;

	return x->bytes > y->bytes ? -1 : x->bytes < y->bytes;
}

const struct profile_thread *profile_threads(struct profile *p, size_t *n)
{
	qsort(p->threads, p->nthreads, sizeof(*p->threads), cmp_threads);
	/* the index is stale after sorting: rebuild it */
	for (size_t i = 0; i < p->nthreads; i++)
		u64map_put(p->thread_index, p->threads[i].tid, i);
	*n = p->nthreads;
	return p->threads;
}

const struct profile_totals *profile_totals(const struct profile *p)
{
	return &p->totals;
}

double profile_bucket_seconds(const struct profile *p)
{
	return p->bucket_seconds;
}

size_t profile_memory(const struct profile *p)
{
	size_t total = sizeof(*p) + u64map_bytes(p->strings) + u64map_bytes(p->site_index) +
		       u64map_bytes(p->stack_index) + u64map_bytes(p->pages) +
		       u64map_bytes(p->thread_index) + p->sites_cap * sizeof(*p->sites) +
		       p->stacks_cap * sizeof(*p->stacks) +
		       PROFILE_MAX_THREADS * sizeof(*p->threads) + u64map_bytes(p->live_index) +
		       p->live_cap * (sizeof(*p->live) + sizeof(*p->live_holes));

	for (size_t i = 0; i < p->nsites; i++)
		total += p->sites[i].series_cap * sizeof(int64_t);
	for (size_t i = 0; i < p->nstacks; i++)
		total += p->stacks[i].nframes * sizeof(struct profile_frame);
	return total;
}

int profile_take_deltas(struct profile *p, const struct profile_delta_sink *sink)
{
	int ret;

	for (size_t i = 0; i < p->nsites; i++) {
		struct site_rec *s = &p->sites[i];

		if (s->announced)
			continue;
		s->announced = true;
		if (sink->site && (ret = sink->site(sink->ctx, (uint32_t)i, &s->pub)))
			return ret;
	}
	for (size_t i = 0; i < p->nsites; i++) {
		struct site_rec *s = &p->sites[i];

		if (s->pub.stack == s->stack_announced)
			continue;
		s->stack_announced = s->pub.stack;
		if (sink->stack &&
		    (ret = sink->stack(sink->ctx, (uint32_t)i, s->pub.stack, s->pub.stack_len)))
			return ret;
	}
	for (size_t i = 0; i < p->nsites; i++) {
		struct site_rec *s = &p->sites[i];
		struct profile_delta d = {
		    .site = (uint32_t)i,
		    .grown = s->pub.grown - s->grown_taken,
		    .released = s->pub.released - s->released_taken,
		    .samples = s->pub.samples - s->samples_taken,
		    .allocs = s->pub.allocs - s->allocs_taken,
		    .frees = s->pub.frees - s->frees_taken,
		    .var_grown = s->pub.var_grown - s->var_grown_taken,
		    .var_live = s->pub.var_live - s->var_live_taken,
		    .live_samples = (int64_t)s->pub.live_samples - (int64_t)s->live_samples_taken,
		};

		if (!d.grown && !d.released && !d.samples && !d.allocs && !d.frees &&
		    !d.live_samples)
			continue;
		s->grown_taken = s->pub.grown;
		s->released_taken = s->pub.released;
		s->samples_taken = s->pub.samples;
		s->allocs_taken = s->pub.allocs;
		s->frees_taken = s->pub.frees;
		s->var_grown_taken = s->pub.var_grown;
		s->var_live_taken = s->pub.var_live;
		s->live_samples_taken = s->pub.live_samples;
		if (sink->delta && (ret = sink->delta(sink->ctx, &d)))
			return ret;
	}
	for (size_t i = 0; i < p->nthreads; i++) {
		uint64_t taken = 0;
		int64_t delta;

		u64map_get(p->thread_taken, p->threads[i].tid, &taken);
		delta = p->threads[i].bytes - (int64_t)taken;
		if (!delta)
			continue;
		if (u64map_put(p->thread_taken, p->threads[i].tid, (uint64_t)p->threads[i].bytes))
			return -ENOMEM;
		if (sink->thread && (ret = sink->thread(sink->ctx, p->threads[i].tid, delta)))
			return ret;
	}
	return 0;
}

int profile_define_site(struct profile *p, uint32_t id, const char *function, const char *file,
			int line, double first_seen)
{
	const char *fn = intern(p, function), *fl = intern(p, file);
	size_t site;

	if (!fn || !fl)
		return -ENOMEM;
	if (id != p->nsites)
		return -EINVAL;
	site = site_for(p, fn, fl, line, first_seen);
	if (site == SIZE_MAX)
		return -ENOMEM;
	if (site != id)
		return -EINVAL; /* the same site defined twice */
	p->sites[site].announced = true;
	return 0;
}

/* A new stack record holding a copy of frames (strings interned). */
static int copy_stack(struct profile *p, const struct profile_frame *frames, size_t n,
		      struct stack_rec **out)
{
	struct stack_rec *st;

	if (n == 0 || n > PMS_MAX_DEPTH)
		return -EINVAL;
	if (p->nstacks == PROFILE_MAX_STACKS)
		return -ENOMEM;
	if (p->nstacks == p->stacks_cap) {
		size_t cap = p->stacks_cap ? 2 * p->stacks_cap : 64;
		struct stack_rec *r = realloc(p->stacks, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		p->stacks = r;
		p->stacks_cap = cap;
	}
	st = &p->stacks[p->nstacks];
	memset(st, 0, sizeof(*st));
	st->frames = calloc(n, sizeof(*st->frames));
	if (!st->frames)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		st->frames[i].function = intern(p, frames[i].function ? frames[i].function : "?");
		st->frames[i].file = intern(p, frames[i].file ? frames[i].file : "?");
		st->frames[i].line = frames[i].line;
		if (!st->frames[i].function || !st->frames[i].file) {
			free(st->frames);
			return -ENOMEM;
		}
	}
	st->nframes = n;
	p->nstacks++;
	*out = st;
	return 0;
}

int profile_set_stack(struct profile *p, uint32_t id, const struct profile_frame *frames, size_t n)
{
	struct stack_rec *st;
	int ret;

	if (id >= p->nsites)
		return -EINVAL;
	ret = copy_stack(p, frames, n, &st);
	if (ret)
		return ret;
	st->site = id;
	p->sites[id].pub.stack = st->frames;
	p->sites[id].pub.stack_len = n;
	p->sites[id].stack_announced = st->frames;
	return 0;
}

int profile_add_delta(struct profile *p, const struct profile_delta *d, double at)
{
	struct site_rec *s;

	if (d->site >= p->nsites)
		return -EINVAL;
	s = &p->sites[d->site];
	s->pub.grown += d->grown;
	s->pub.released += d->released;
	s->pub.samples += d->samples;
	s->pub.allocs += d->allocs;
	s->pub.frees += d->frees;
	s->pub.var_grown += d->var_grown;
	s->pub.var_live += d->var_live;
	s->pub.live_samples = (uint64_t)((int64_t)s->pub.live_samples + d->live_samples);
	s->grown_taken = s->pub.grown;
	s->released_taken = s->pub.released;
	s->samples_taken = s->pub.samples;
	s->allocs_taken = s->pub.allocs;
	s->frees_taken = s->pub.frees;
	s->var_grown_taken = s->pub.var_grown;
	s->var_live_taken = s->pub.var_live;
	s->live_samples_taken = s->pub.live_samples;
	return series_add(p, d->site, at, d->grown - d->released);
}

int profile_add_thread(struct profile *p, uint32_t tid, int64_t bytes)
{
	charge_thread(p, tid, bytes);
	return 0;
}

int profile_add_stack(struct profile *p, const struct profile_frame *frames, size_t n,
		      int64_t grown, int64_t released, uint64_t samples)
{
	struct stack_rec *st;
	int ret = copy_stack(p, frames, n, &st);

	if (ret)
		return ret;
	st->site = SIZE_MAX;
	st->bytes = grown;
	st->released = released;
	st->samples = samples;
	return 0;
}

int profile_add_live(struct profile *p, uint32_t id, const struct profile_live *l)
{
	size_t slot;

	if (id >= p->nsites)
		return -EINVAL;
	slot = live_slot(p);
	if (slot == SIZE_MAX)
		return -ENOMEM;
	/* not indexed by address: a rebuilt profile takes no frees */
	p->live[slot] = (struct live_rec){
	    .addr = l->addr,
	    .size = l->size,
	    .at = l->at,
	    .weight = 1,
	    .site = id,
	    .tid = l->tid,
	    .stack = UINT32_MAX,
	};
	return 0;
}

void profile_set_totals(struct profile *p, const struct profile_totals *t)
{
	p->totals = *t;
}

void profile_extend_to(struct profile *p, double at)
{
	size_t b;

	if (at <= 0)
		return;
	while ((size_t)(at / p->bucket_seconds) >= PROFILE_MAX_BUCKETS)
		widen_buckets(p);
	/* a recording that ends exactly on a bucket boundary does not open the next bucket */
	b = (size_t)((at - 1e-9) / p->bucket_seconds) + 1;
	if (b > p->nbuckets)
		p->nbuckets = b;
}
