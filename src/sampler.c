#include "sampler.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "growth.skel.h"
#include "host.h"

struct sampler {
	struct growth_bpf *skel;
	struct ring_buffer *rb;
	sampler_event_fn fn;
	void *ctx;
	int ncpus;
};

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

	if (size < PMS_EVENT_SIZE(0))
		return 0; /* never sent by our programs */
	return s->fn(data, size, s->ctx);
}

int sampler_open(struct pytarget *t, const struct sampler_opts *opts, sampler_event_fn fn,
		 void *ctx, struct sampler **out, struct pms_error *err)
{
	struct sampler *s;
	int ret;

	*out = NULL;
	ret = host_require(HOST_NEEDS_GROWTH, err);
	if (ret)
		return ret;
	libbpf_set_print(opts->verbose ? verbose_print : quiet_print);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fn = fn;
	s->ctx = ctx;
	s->ncpus = libbpf_num_possible_cpus();
	if (s->ncpus <= 0) {
		ret = pms_error_set(err, EINVAL, "cannot count the CPUs");
		goto fail;
	}
	s->skel = growth_bpf__open();
	if (!s->skel) {
		ret = pms_error_set(err, errno ? errno : EINVAL, "cannot open the BPF programs: %s",
				    strerror(errno));
		goto fail;
	}
	s->skel->rodata->cfg.tgid = (uint32_t)proc_pid(pytarget_proc(t));
	s->skel->rodata->cfg.max_depth = opts->max_depth;
	s->skel->rodata->cfg.budget_per_sec = opts->budget_per_sec;
	sampler_fill_offsets(pytarget_layout(t), pytarget_runtime(t), &s->skel->rodata->cfg.py);
	ret = growth_bpf__load(s->skel);
	if (ret) {
		ret =
		    pms_error_set(err, ret == -EPERM ? EPERM : PMS_ENOFEATURE,
				  "the kernel refused our BPF programs (%s); run 'pymemspy doctor' "
				  "to see why, or --verbose for the verifier's words",
				  strerror(-ret));
		goto fail;
	}
	ret = growth_bpf__attach(s->skel);
	if (ret) {
		ret = pms_error_set(err, ret == -EPERM ? EPERM : PMS_ENOFEATURE,
				    "cannot attach our BPF programs (%s); run 'pymemspy doctor'",
				    strerror(-ret));
		goto fail;
	}
	s->rb = ring_buffer__new(bpf_map__fd(s->skel->maps.events), on_ringbuf, s, NULL);
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

void sampler_detach(struct sampler *s)
{
	growth_bpf__detach(s->skel);
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
	return woken + consumed;
}

int sampler_counters(struct sampler *s, uint64_t out[PMS_CNT_MAX])
{
	uint64_t *values = calloc((size_t)s->ncpus, sizeof(*values));
	int fd = bpf_map__fd(s->skel->maps.counters);

	if (!values)
		return -ENOMEM;
	for (uint32_t k = 0; k < PMS_CNT_MAX; k++) {
		out[k] = 0;
		if (bpf_map_lookup_elem(fd, &k, values) != 0)
			continue;
		for (int c = 0; c < s->ncpus; c++)
			out[k] += values[c];
	}
	free(values);
	return 0;
}

size_t sampler_map_bytes(const struct sampler *s)
{
	struct bpf_map *map;
	size_t total = 0;

	bpf_object__for_each_map(map, s->skel->obj)
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
	growth_bpf__destroy(s->skel);
	free(s);
}
