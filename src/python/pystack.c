#include "pystack.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

#define FRAME_READ_MAX	   512
#define OWNED_BY_GENERATOR 1 /* _PyInterpreterFrame.owner, 3.11+ */
#define PTHREAD_SCAN_BYTES 0x1000

struct walk {
	struct pytarget *t;
	struct proc *p;
	const struct py_layout *l;
	struct pystack_frame *frames;
	size_t max_frames;
	pid_t tids[PYSTACK_MAX_THREADS];
	int ntids;
	/* Where glibc keeps the kernel tid inside struct pthread (3.8-3.10 only know pthread_t). */
	int pthread_tid_offset;
	bool pthread_tid_offset_known;
};

static uint64_t get_u64(const uint8_t *buf, int32_t off)
{
	uint64_t v = 0;

	if (off >= 0)
		memcpy(&v, buf + off, sizeof(v));
	return v;
}

static bool is_task(const struct walk *w, pid_t tid)
{
	for (int i = 0; i < w->ntids; i++)
		if (w->tids[i] == tid)
			return true;
	return false;
}

/* Candidate offsets of the tid field in our own struct pthread: the same glibc is very likely
 * the one in the target; each candidate is then checked against the target's task list. */
static void calibrate_pthread_tid(struct walk *w, uint64_t pthread_id)
{
	const uint8_t *self = (const uint8_t *)pthread_self();
	pid_t me = gettid();

	for (int off = 0; off + 4 <= PTHREAD_SCAN_BYTES; off += 4) {
		int32_t mine, theirs;

		memcpy(&mine, self + off, sizeof(mine));
		if (mine != me)
			continue;
		if (proc_read_i32(w->p, pthread_id + (uint64_t)off, &theirs) == 0 &&
		    is_task(w, theirs)) {
			w->pthread_tid_offset = off;
			w->pthread_tid_offset_known = true;
			return;
		}
	}
}

static pid_t thread_tid(struct walk *w, const uint8_t *ts)
{
	const struct py_layout *l = w->l;
	uint64_t pthread_id = get_u64(ts, l->tstate_thread_id);
	int32_t tid = 0;

	if (l->tstate_native_thread_id >= 0) {
		memcpy(&tid, ts + l->tstate_native_thread_id, sizeof(tid));
		return tid;
	}
	if (!pthread_id)
		return 0;
	if (!w->pthread_tid_offset_known)
		calibrate_pthread_tid(w, pthread_id);
	if (!w->pthread_tid_offset_known ||
	    proc_read_i32(w->p, pthread_id + (uint64_t)w->pthread_tid_offset, &tid) != 0 ||
	    !is_task(w, tid))
		return 0;
	return tid;
}

static bool holds_gil(struct walk *w, uint64_t interp, uint64_t tstate)
{
	const struct py_layout *l = w->l;
	uint64_t runtime = pytarget_runtime(w->t), holder = 0, gil = 0;
	int32_t locked = 0;

	if (l->gil_model == PY_GIL_RUNTIME) {
		/* 3.8-3.11: the current tstate is cleared whenever the GIL is released */
		if (proc_read_u64(w->p, runtime + (uint64_t)l->runtime_gilstate_tstate_current,
				  &holder) != 0)
			return false;
		return holder == tstate;
	}
	if (l->interp_ceval_gil < 0 ||
	    proc_read_u64(w->p, interp + (uint64_t)l->interp_ceval_gil, &gil) != 0 || !gil)
		return false;
	if (proc_read_i32(w->p, gil + (uint64_t)l->gil_locked, &locked) != 0 || !locked)
		return false;
	if (proc_read_u64(w->p, gil + (uint64_t)l->gil_last_holder, &holder) != 0)
		return false;
	return holder == tstate;
}

/* The newest frame of a thread. */
static uint64_t first_frame(struct walk *w, const uint8_t *ts, unsigned *errors)
{
	const struct py_layout *l = w->l;
	uint64_t cframe, frame = 0;

	switch (l->frame_model) {
	case PY_FRAMES_OBJECTS:
		return get_u64(ts, l->tstate_frame);
	case PY_FRAMES_CFRAME:
		cframe = get_u64(ts, l->tstate_cframe);
		if (cframe &&
		    proc_read_u64(w->p, cframe + (uint64_t)l->cframe_current_frame, &frame) != 0)
			(*errors)++;
		return frame;
	case PY_FRAMES_CURRENT:
		return get_u64(ts, l->tstate_current_frame);
	}
	return 0;
}

/* Reads the code object fields the walk needs: is it a code object, and where is its first
 * traceable instruction. */
static int code_header(struct walk *w, uint64_t code, int32_t *firsttraceable)
{
	const struct py_layout *l = w->l;
	uint64_t type = 0, code_type = pytarget_code_type(w->t);

	*firsttraceable = 0;
	if (!code)
		return -EFAULT;
	if (proc_read_u64(w->p, code + (uint64_t)l->object_type, &type) != 0)
		return -EFAULT;
	if (code_type && type != code_type)
		return -PMS_EGARBAGE;
	if (l->code_firsttraceable >= 0 &&
	    proc_read_i32(w->p, code + (uint64_t)l->code_firsttraceable, firsttraceable) != 0)
		return -EFAULT;
	return 0;
}

static void walk_frames(struct walk *w, uint64_t frame, struct pystack_thread *th)
{
	const struct py_layout *l = w->l;
	size_t frame_size = l->frame_size > 0 && l->frame_size <= FRAME_READ_MAX
				? (size_t)l->frame_size
				: FRAME_READ_MAX;
	uint8_t buf[FRAME_READ_MAX];
	size_t steps = 0;

	/* Bounded by max_frames real frames and as many skipped ones, so a cycle ends too. */
	while (frame && steps++ < 2 * w->max_frames + 16) {
		uint64_t code, next;
		int32_t offset = -1, firsttraceable = 0;
		uint8_t owner = 0;

		if (th->nframes == w->max_frames) {
			th->truncated = true;
			return;
		}
		if (proc_read(w->p, frame, buf, frame_size) != 0) {
			th->read_errors++;
			th->truncated = true;
			return;
		}
		next = get_u64(buf, l->frame_previous);
		code = get_u64(buf, l->frame_code) & ~(uint64_t)l->executable_tag_mask;
		if (l->frame_owner >= 0)
			owner = buf[l->frame_owner];
		frame = next;
		if (l->owner_skip_from && owner >= l->owner_skip_from)
			continue; /* entry and shim frames of the interpreter itself */
		if (code_header(w, code, &firsttraceable) != 0) {
			if (l->frame_model != PY_FRAMES_CURRENT)
				th->read_errors++;
			continue; /* 3.13+: f_executable may legitimately be something else */
		}
		if (l->frame_model == PY_FRAMES_OBJECTS) {
			int32_t lasti;

			memcpy(&lasti, buf + l->frame_lasti, sizeof(lasti));
			offset = lasti < 0 ? -1 : (l->lasti_in_bytes ? lasti : lasti * 2);
		} else {
			uint64_t instr = get_u64(buf, l->frame_instr_ptr);
			int64_t delta = (int64_t)(instr - (code + (uint64_t)l->code_code_adaptive));

			/* A frame that has not reached its first traceable instruction is not
			 * shown by the interpreter either (_PyFrame_IsIncomplete). */
			if (owner != OWNED_BY_GENERATOR && delta < 2 * (int64_t)firsttraceable)
				continue;
			offset = delta >= 0 && delta < (1 << 30) ? (int32_t)delta : -1;
		}
		w->frames[th->nframes].code = code;
		w->frames[th->nframes].offset = offset;
		th->nframes++;
	}
	if (frame)
		th->truncated = true;
}

static int walk_threads(struct walk *w, uint64_t interp, int64_t interp_id, pystack_thread_fn fn,
			void *ctx)
{
	const struct py_layout *l = w->l;
	uint8_t ts[FRAME_READ_MAX * 2];
	uint64_t tstate = 0;
	size_t ts_size = 0;
	int ret;

	/* read enough of PyThreadState to cover every field we use */
	const int32_t fields[] = {l->tstate_next,
				  l->tstate_interp,
				  l->tstate_frame,
				  l->tstate_cframe,
				  l->tstate_current_frame,
				  l->tstate_thread_id,
				  l->tstate_native_thread_id};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i] >= 0 && (size_t)fields[i] + 8 > ts_size)
			ts_size = (size_t)fields[i] + 8;
	if (ts_size > sizeof(ts))
		return -PMS_EGARBAGE;

	if (proc_read_u64(w->p, interp + (uint64_t)l->interp_threads_head, &tstate) != 0)
		return -EFAULT;
	for (int n = 0; tstate && n < PYSTACK_MAX_THREADS; n++) {
		struct pystack_thread th = {0};

		if (proc_read(w->p, tstate, ts, ts_size) != 0)
			return -EFAULT;
		if (get_u64(ts, l->tstate_interp) != interp)
			return -PMS_EGARBAGE; /* freed or torn: not a thread of this interpreter */
		th.tstate = tstate;
		th.interp = interp;
		th.interp_id = interp_id;
		th.pthread_id = get_u64(ts, l->tstate_thread_id);
		th.tid = thread_tid(w, ts);
		th.holds_gil = holds_gil(w, interp, tstate);
		th.frames = w->frames;
		walk_frames(w, first_frame(w, ts, &th.read_errors), &th);
		ret = fn(&th, ctx);
		if (ret)
			return ret;
		tstate = get_u64(ts, l->tstate_next);
	}
	return 0;
}

int pystack_walk(struct pytarget *t, size_t max_frames, pystack_thread_fn fn, void *ctx,
		 struct pms_error *err)
{
	struct proc *p = pytarget_proc(t);
	const struct py_layout *l = pytarget_layout(t);
	uint64_t interp = 0;
	struct walk *w;
	int ret, n;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->t = t;
	w->p = p;
	w->l = l;
	w->max_frames = max_frames ? max_frames : PYSTACK_DEFAULT_DEPTH;
	w->frames = calloc(w->max_frames, sizeof(*w->frames));
	if (!w->frames) {
		ret = -ENOMEM;
		goto out;
	}
	w->ntids = proc_tasks(p, w->tids, PYSTACK_MAX_THREADS);
	if (w->ntids < 0) {
		ret = pms_error_set(err, ESRCH, "process %d exited", proc_pid(p));
		goto out;
	}
	ret =
	    proc_read_u64(p, pytarget_runtime(t) + (uint64_t)l->runtime_interpreters_head, &interp);
	if (ret) {
		ret = proc_read_error(p, ret, "the interpreter list", err);
		goto out;
	}
	for (n = 0; interp && n < PYSTACK_MAX_INTERPRETERS; n++) {
		int64_t id = 0;

		if (l->interp_id >= 0)
			proc_read(p, interp + (uint64_t)l->interp_id, &id, sizeof(id));
		ret = walk_threads(w, interp, id, fn, ctx);
		if (ret < 0 && !proc_alive(p)) {
			ret = pms_error_set(err, ESRCH, "process %d exited", proc_pid(p));
			goto out;
		}
		if (ret < 0) {
			ret = pms_error_set(err, PMS_EGARBAGE,
					    "the thread list of interpreter %lld changed or could "
					    "not be read; try again, or use --lock",
					    (long long)id);
			goto out;
		}
		if (ret)
			goto out;
		if (proc_read_u64(p, interp + (uint64_t)l->interp_next, &interp) != 0)
			break;
	}
	ret = 0;
out:
	free(w->frames);
	free(w);
	return ret;
}
