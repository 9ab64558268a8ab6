#include "sampler.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.skel.h"
#include "growth.skel.h"
#include "clock.h"
#include "host.h"
#include "survivors.h"
#include "survivors.skel.h"
#include "uprobes.h"

struct sampler {
	enum pms_source source;
	struct growth_bpf *growth; /* one of the two skeletons, by source */
	struct alloc_bpf *alloc;
	struct bpf_object *obj;
	struct bpf_map *events, *counters;
	/* allocator sources: the probes and how they were attached */
	struct uprobes *uprobes;
	enum uprobe_mode mode;
	struct alloc_probes probes;
	struct ring_buffer *rb;
	sampler_event_fn fn;
	void *ctx;
	int ncpus;
	/* survivors: its program (sharing the growth maps) and the watchpoints */
	struct survivors_bpf *watch;
	struct survivors *surv;
	bool detached;
	/* allocator sources: the predicted overhead, from the trap cost timed at open */
	struct overhead overhead;
	bool has_overhead;
	struct pms_event held; /* a growth event whose bytes survivors holds, passed on without */
};

/* indexed by enum pms_source */

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

static int verbose_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

void sampler_fill_offsets(const struct py_layout *l, uint64_t runtime, struct pms_py_offsets *o)
{
	memset(o, 0, sizeof(*o));
	o->runtime = runtime;
	o->runtime_interpreters_head = l->runtime_interpreters_head;
	o->interp_next = l->interp_next;
	o->interp_threads_head = l->interp_threads_head;
	o->tstate_next = l->tstate_next;
	o->tstate_thread_id = l->tstate_thread_id;
	o->tstate_native_thread_id = l->tstate_native_thread_id;
	o->tstate_frame = l->tstate_frame;
	o->tstate_cframe = l->tstate_cframe;
	o->cframe_current_frame = l->cframe_current_frame;
	o->tstate_current_frame = l->tstate_current_frame;
	o->frame_previous = l->frame_previous;
	o->frame_code = l->frame_code;
	o->frame_lasti = l->frame_lasti;
	o->frame_instr_ptr = l->frame_instr_ptr;
	o->frame_owner = l->frame_owner;
	o->code_code_adaptive = l->code_code_adaptive;
	o->frame_model = l->frame_model;
	o->lasti_in_bytes = l->lasti_in_bytes;
	o->owner_skip_from = l->owner_skip_from;
	o->executable_tag_mask = l->executable_tag_mask;
}

static int on_ringbuf(void *ctx, void *data, size_t size)
{
	struct sampler *s = ctx;
	const struct pms_event *ev = data;

	if (size < PMS_EVENT_SIZE(0))
		return 0; /* never sent by our programs */
	if (s->surv && ev->kind == PMS_EV_WATCH) {
		surv_on_watch(s->surv, ev);
	} else if (s->surv && ev->kind == PMS_EV_RELEASE) {
		surv_release(s->surv, ev->addr, ev->len);
	} else if (s->surv && ev->kind == PMS_EV_MOVE) {
		surv_move(s->surv, ev->addr, ev->new_addr, ev->len);
	} else if (s->surv && surv_hold_growth(s->surv, ev)) {
		/* the profile still learns the stack, without its bytes */
		if (size > sizeof(s->held))
			size = sizeof(s->held);
		memcpy(&s->held, ev, size);
		s->held.bytes = 0;
		return s->fn(&s->held, size, s->ctx);
	}
	return s->fn(ev, size, s->ctx);
}

/* survivors: a page of growth with its owner, as a growth event (the stack reached the profile
 * with an earlier event). */
static void charge_survivor(void *ctx, const struct surv_charge *c)
{
	struct sampler *s = ctx;
	struct pms_event ev;

	memset(&ev, 0, PMS_EVENT_SIZE(0));
	/* charged now, not when the page was touched: a record file's ticks carry the recent
	 * buckets of each series, and a charge into a bucket already written is not one of them */
	ev.ts_ns = clock_monotonic_ns();
	ev.kind = PMS_EV_GROWTH;
	ev.addr = c->addr;
	ev.member = c->member;
	ev.bytes = c->bytes;
	ev.stack_id = c->stack_id;
	ev.tid = c->tid;
	/* without a survivor the first toucher is a guess that under churn names the churn: the
	 * growth goes to a pseudo-site that says no survivor took it */
	ev.flags = (uint8_t)((c->flags & ~PMS_EVF_STACK_INLINE) |
			     (c->survivor ? PMS_EVF_SURVIVOR : PMS_EVF_NO_SURVIVOR));
	s->fn(&ev, PMS_EVENT_SIZE(0), s->ctx);
}

static int load_failed(int ret, struct pms_error *err)
{
	return pms_error_set(
	    err, ret == -EPERM ? EPERM : PMS_ENOFEATURE,
	    "the kernel refused our BPF programs (%s); run 'pymemspy doctor' to see "
	    "why, or --verbose for the verifier's words",
	    strerror(-ret));
}

/* The configuration every program reads (each skeleton has its own copy). */
static void fill_config(struct pms_config *cfg, struct pytarget *t, const struct sampler_opts *opts)
{
	cfg->tgid = (uint32_t)proc_pid(pytarget_proc(t));
	cfg->max_depth = opts->max_depth;
	cfg->budget_per_sec = opts->budget_per_sec;
	cfg->rate = opts->rate;
	sampler_fill_offsets(pytarget_layout(t), pytarget_runtime(t), &cfg->py);
}

static int open_growth(struct sampler *s, struct pytarget *t, const struct sampler_opts *opts,
		       struct pms_error *err)
{
	int ret;

	s->growth = growth_bpf__open();
	if (!s->growth)
		return pms_error_set(err, errno ? errno : EINVAL,
				     "cannot open the BPF programs: %s", strerror(errno));
	s->obj = s->growth->obj;
	s->events = s->growth->maps.events;
	s->counters = s->growth->maps.counters;
	fill_config(&s->growth->rodata->cfg, t, opts);
	ret = growth_bpf__load(s->growth);
	if (ret)
		return load_failed(ret, err);
	ret = growth_bpf__attach(s->growth);
	if (ret)
		return pms_error_set(err, ret == -EPERM ? EPERM : PMS_ENOFEATURE,
				     "cannot attach our BPF programs (%s); run 'pymemspy doctor'",
				     strerror(-ret));
	return 0;
}

/* survivors: the growth programs, then the watch program on their maps, then the watches. */
static int open_survivors(struct sampler *s, struct pytarget *t, const struct sampler_opts *opts,
			  struct pms_error *err)
{
	struct {
		struct bpf_map *mine, *growth;
	} shared[4];
	struct surv_opts sopts = {0};
	int ret = open_growth(s, t, opts, err);

	if (ret)
		return ret;
	s->watch = survivors_bpf__open();
	if (!s->watch)
		return pms_error_set(err, errno ? errno : EINVAL,
				     "cannot open the BPF programs: %s", strerror(errno));
	shared[0].mine = s->watch->maps.events, shared[0].growth = s->growth->maps.events;
	shared[1].mine = s->watch->maps.counters, shared[1].growth = s->growth->maps.counters;
	shared[2].mine = s->watch->maps.tstates, shared[2].growth = s->growth->maps.tstates;
	shared[3].mine = s->watch->maps.seen_stacks, shared[3].growth = s->growth->maps.seen_stacks;
	for (int i = 0; i < 4; i++) {
		ret = bpf_map__reuse_fd(shared[i].mine, bpf_map__fd(shared[i].growth));
		if (ret)
			return load_failed(ret, err);
	}
	fill_config(&s->watch->rodata->cfg, t, opts);
	sopts.debug_allocator = pytarget_version(t)->build == PY_BUILD_DEBUG;
	s->watch->rodata->cfg.debug_allocator = sopts.debug_allocator;
	/* PyType_Type is the type of every type object: of PyCode_Type too */
	ret = proc_read_u64(pytarget_proc(t), pytarget_code_type(t) + 8, &sopts.type_type);
	if (ret)
		return proc_read_error(pytarget_proc(t), ret, "PyCode_Type", err);
	s->watch->rodata->cfg.type_type = sopts.type_type;
	ret = survivors_bpf__load(s->watch);
	if (ret)
		return load_failed(ret, err);
	return surv_open(pytarget_proc(t), pytarget_version(t)->minor,
			 bpf_program__fd(s->watch->progs.pms_watch_hit),
			 bpf_map__fd(s->watch->maps.arm), bpf_map__fd(s->watch->maps.deaths),
			 &sopts, &s->surv, err);
}

static int load_alloc(struct sampler *s, struct pytarget *t, const struct sampler_opts *opts,
		      enum uprobe_mode mode, struct pms_error *err)
{
	struct bpf_program *enter, *ret_prog, *session;
	size_t nranges = 0;
	int ret;

	s->alloc = alloc_bpf__open();
	if (!s->alloc)
		return pms_error_set(err, errno ? errno : EINVAL,
				     "cannot open the BPF programs: %s", strerror(errno));
	s->obj = s->alloc->obj;
	s->events = s->alloc->maps.events;
	s->counters = s->alloc->maps.counters;
	fill_config(&s->alloc->rodata->cfg, t, opts);
	if (opts->max_live)
		bpf_map__set_max_entries(s->alloc->maps.live, opts->max_live);
	for (size_t i = 0; i < s->probes.n && nranges < PMS_MAX_RANGES; i++) {
		const struct alloc_probe *p = &s->probes.probes[i];

		if (!p->address || !p->size)
			continue;
		s->alloc->rodata->range_start[nranges] = p->address;
		s->alloc->rodata->range_end[nranges++] = p->address + p->size;
	}
	s->alloc->rodata->nranges = (uint32_t)nranges;
	enter = s->alloc->progs.pms_alloc_enter;
	ret_prog = s->alloc->progs.pms_alloc_return;
	session = s->alloc->progs.pms_alloc_session;
	bpf_program__set_autoload(session, mode == UPROBE_SESSION);
	bpf_program__set_autoload(enter, mode != UPROBE_SESSION);
	bpf_program__set_autoload(ret_prog, mode != UPROBE_SESSION);
	if (mode == UPROBE_SESSION)
		bpf_program__set_expected_attach_type(session, PMS_BPF_TRACE_UPROBE_SESSION);
	if (mode == UPROBE_MULTI) {
		bpf_program__set_expected_attach_type(enter, PMS_BPF_TRACE_UPROBE_MULTI);
		bpf_program__set_expected_attach_type(ret_prog, PMS_BPF_TRACE_UPROBE_MULTI);
	}
	ret = alloc_bpf__load(s->alloc);
	return ret ? (mode != UPROBE_PERF ? ret : load_failed(ret, err)) : 0;
}

static int open_alloc(struct sampler *s, struct pytarget *t, const struct sampler_opts *opts,
		      struct pms_error *err)
{
	pid_t pid = proc_pid(pytarget_proc(t));
	int ret;

	ret = allocators_find(
	    t, opts->source == PMS_SOURCE_PYMALLOC ? ALLOC_SOURCE_PYMALLOC : ALLOC_SOURCE_MALLOC,
	    &s->probes, err);
	if (ret)
		return ret;
	/* SAMPLER_ATTACH_X is uprobe_mode X + 1; AUTO starts at the best */
	enum uprobe_mode first = opts->attach == SAMPLER_ATTACH_AUTO
				     ? UPROBE_SESSION
				     : (enum uprobe_mode)(opts->attach - 1);

	for (enum uprobe_mode mode = first;; mode++) {
		struct uprobe_progs progs;
		bool loaded;

		ret = load_alloc(s, t, opts, mode, err);
		loaded = !ret;
		if (loaded) {
			progs = (struct uprobe_progs){.enter = s->alloc->progs.pms_alloc_enter,
						      .ret = s->alloc->progs.pms_alloc_return,
						      .session = s->alloc->progs.pms_alloc_session};
			ret = uprobes_attach(&s->probes, &progs, pid, mode, &s->uprobes, err);
		}
		if (!ret) {
			s->mode = mode;
			return 0;
		}
		/* anything but "this kernel has no such link" is a real failure, and perf
		 * uprobes are the last resort */
		if (mode == UPROBE_PERF || (ret != -EINVAL && ret != -EOPNOTSUPP && ret != -E2BIG &&
					    ret != -ESRCH && ret != -ENOENT))
			return loaded || mode == UPROBE_PERF ? ret : load_failed(ret, err);
		alloc_bpf__destroy(s->alloc);
		s->alloc = NULL;
	}
}

int sampler_require(const struct sampler_opts *opts, struct pms_error *err)
{
	/* survivors: the watchpoint self-test refuses a host whose watchpoints never trap, before
	 * anything is attached (exit 8), instead of a whole recording with no sample */
	return host_require(opts->source == PMS_SOURCE_GROWTH	   ? HOST_NEEDS_GROWTH
			    : opts->source == PMS_SOURCE_SURVIVORS ? HOST_NEEDS_SURVIVORS
								   : HOST_NEEDS_ALLOCATOR,
			    err);
}

int sampler_open(struct pytarget *t, const struct sampler_opts *opts, sampler_event_fn fn,
		 void *ctx, struct sampler **out, struct pms_error *err)
{
	struct sampler *s;
	int ret;

	*out = NULL;
	ret = opts->host_checked ? 0 : sampler_require(opts, err);
	if (ret)
		return ret;
	libbpf_set_print(opts->verbose ? verbose_print : quiet_print);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->source = opts->source;
	s->fn = fn;
	s->ctx = ctx;
	s->ncpus = libbpf_num_possible_cpus();
	if (s->ncpus <= 0) {
		ret = pms_error_set(err, EINVAL, "cannot count the CPUs");
		goto fail;
	}
	ret = opts->source == PMS_SOURCE_GROWTH	     ? open_growth(s, t, opts, err)
	      : opts->source == PMS_SOURCE_SURVIVORS ? open_survivors(s, t, opts, err)
						     : open_alloc(s, t, opts, err);
	if (ret)
		goto fail;
	if (s->alloc) {
		struct pms_error cost_err = {{0}};

		/* without a bound, a trap we cannot time only costs the prediction */
		ret = overhead_init(&s->overhead, &s->probes, opts->max_overhead_pct,
				    opts->max_overhead_pct > 0 ? err : &cost_err);
		if (ret && opts->max_overhead_pct > 0)
			goto fail;
		s->has_overhead = ret == 0;
		ret = 0;
	}
	s->rb = ring_buffer__new(bpf_map__fd(s->events), on_ringbuf, s, NULL);
	if (!s->rb) {
		ret = pms_error_set(err, errno ? errno : ENOMEM, "cannot map the ring buffer: %s",
				    strerror(errno));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	sampler_close(s);
	return ret;
}

const struct alloc_probes *sampler_probes(const struct sampler *s)
{
	return s->alloc ? &s->probes : NULL;
}

const char *sampler_attach_name(const struct sampler *s)
{
	return s->alloc ? uprobes_mode_name(s->mode) : NULL;
}

int sampler_parse_attach(const char *text, enum sampler_attach *out)
{
	for (int m = UPROBE_SESSION; m <= UPROBE_PERF; m++) {
		if (strcmp(text, uprobes_mode_name((enum uprobe_mode)m)) == 0) {
			*out = (enum sampler_attach)(m + 1);
			return 0;
		}
	}
	return -EINVAL;
}

void sampler_describe(const struct sampler *s, FILE *out)
{
	size_t nfree = 0;

	if (s->surv) {
		char line[512];

		surv_describe(s->surv, line, sizeof(line));
		fprintf(out, "pymemspy: %s\n", line);
		return;
	}
	if (!s->alloc)
		return;
	for (size_t i = 0; i < s->probes.n; i++)
		nfree += s->probes.probes[i].fn == PMS_FN_FREE ||
			 s->probes.probes[i].fn == PMS_FN_PY_FREE;
	fprintf(out,
		"pymemspy: %zu uprobes on %s's allocation functions and %zu on its free%s (%s)\n",
		s->probes.n - nfree, s->probes.allocator, nfree, nfree == 1 ? "" : "s",
		s->mode == UPROBE_SESSION ? "uprobe sessions: a return probe only for sampled calls"
		: s->mode == UPROBE_MULTI ? "uprobe_multi links"
					  : "perf uprobes");
	if (s->source == PMS_SOURCE_PYMALLOC)
		fprintf(out,
			"pymemspy: --events pymalloc traps every Python allocation and free: the "
			"target will run several times slower while we record (see OVERHEAD in "
			"pymemspy(1)); for staging, not production\n");
	if (s->probes.note[0])
		fprintf(out, "pymemspy: %s\n", s->probes.note);
}

/* Entries 0..n of a per-CPU array map of u64, each summed over the CPUs. */
static int sum_percpu(const struct sampler *s, int fd, uint64_t *out, uint32_t n)
{
	uint64_t *values = calloc((size_t)s->ncpus, sizeof(*values));

	if (!values)
		return -ENOMEM;
	for (uint32_t k = 0; k < n; k++) {
		out[k] = 0;
		if (bpf_map_lookup_elem(fd, &k, values) != 0)
			continue;
		for (int c = 0; c < s->ncpus; c++)
			out[k] += values[c];
	}
	free(values);
	return 0;
}

int sampler_check(struct sampler *s, double elapsed, char *note, size_t len, struct pms_error *err)
{
	struct overhead *o = &s->overhead;
	uint64_t calls[PMS_MAX_PROBES];
	bool over;

	if (s->surv && !s->detached) {
		int ret = surv_health(s->surv, clock_monotonic_ns(), err);

		if (ret)
			return ret;
	}
	if (!s->has_overhead || s->detached || elapsed - o->last_t < OVERHEAD_WINDOW_S)
		return 0;
	if (sum_percpu(s, bpf_map__fd(s->alloc->maps.probe_calls), calls, PMS_MAX_PROBES))
		return 0; /* no prediction this time; the recording goes on */
	over = overhead_update(o, calls, elapsed);
	if (over) {
		o->stopped_at = elapsed;
		sampler_detach(s);
	}
	if (!over && o->said)
		return 0;
	o->said = true;
	overhead_describe(o, pms_source_name(s->source), note, len);
	return 1;
}

const struct overhead *sampler_overhead(const struct sampler *s)
{
	return s->has_overhead ? &s->overhead : NULL;
}

void sampler_detach(struct sampler *s)
{
	surv_stop(s->surv);
	s->detached = true;
	if (s->growth)
		growth_bpf__detach(s->growth);
	uprobes_detach(s->uprobes);
}

int sampler_poll(struct sampler *s, int timeout_ms)
{
	int woken, consumed;

	/* the programs rarely wake us (see send() in growth.bpf.c): wait, then drain anyway */
	woken = ring_buffer__poll(s->rb, timeout_ms);
	if (woken < 0)
		return woken;
	consumed = ring_buffer__consume(s->rb);
	if (consumed < 0)
		return consumed;
	if (s->surv) {
		surv_tick(s->surv, clock_monotonic_ns(), charge_survivor, s);
		if (s->detached)
			surv_flush(s->surv, charge_survivor, s);
	}
	return woken + consumed;
}

int sampler_counters(struct sampler *s, uint64_t out[PMS_CNT_MAX])
{
	int ret = sum_percpu(s, bpf_map__fd(s->counters), out, PMS_CNT_MAX);

	if (ret)
		return ret;
	if (s->surv)
		surv_counters(s->surv, out);
	return 0;
}

size_t sampler_map_bytes(const struct sampler *s)
{
	struct bpf_map *map;
	size_t total = 0;

	bpf_object__for_each_map(map, s->obj)
	{
		size_t entry = bpf_map__key_size(map) + bpf_map__value_size(map);

		if (bpf_map__type(map) == BPF_MAP_TYPE_RINGBUF)
			total += bpf_map__max_entries(map);
		else if (bpf_map__type(map) == BPF_MAP_TYPE_PERCPU_ARRAY)
			total += (size_t)bpf_map__max_entries(map) * bpf_map__value_size(map) *
				 (size_t)s->ncpus;
		else
			total += (size_t)bpf_map__max_entries(map) * entry;
	}
	return total;
}

void sampler_close(struct sampler *s)
{
	if (!s)
		return;
	ring_buffer__free(s->rb);
	uprobes_free(s->uprobes);
	surv_close(s->surv);
	survivors_bpf__destroy(s->watch);
	growth_bpf__destroy(s->growth);
	alloc_bpf__destroy(s->alloc);
	allocators_free(&s->probes);
	free(s);
}
