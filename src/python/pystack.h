/* Every thread of every interpreter of a CPython target, and each thread's Python frames as
 * (code object, instruction offset) pairs, read from the outside with bounded, checked walks. */
#ifndef PMS_PYSTACK_H
#define PMS_PYSTACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errors.h"
#include "pytarget.h"

/* Bounds on every walk, so that torn or cyclic data cannot keep us looping. */
#define PYSTACK_MAX_INTERPRETERS 256
#define PYSTACK_MAX_THREADS	 4096
#define PYSTACK_DEFAULT_DEPTH	 1024

struct pystack_frame {
	uint64_t code;	/* address of the code object */
	int32_t offset; /* byte offset of the current instruction in its bytecode; -1 if unknown */
};

struct pystack_thread {
	uint64_t tstate;
	uint64_t interp;
	int64_t interp_id;
	pid_t tid;	     /* kernel thread id; 0 when it could not be told */
	uint64_t pthread_id; /* PyThreadState.thread_id */
	bool holds_gil;
	bool truncated; /* more frames than max_frames, or the walk hit unreadable memory */
	unsigned read_errors;
	size_t nframes;
	const struct pystack_frame *frames; /* innermost first; valid during the callback only */
};

/* Called once per thread; a non-zero return stops the walk and is returned by pystack_walk. */
typedef int (*pystack_thread_fn)(const struct pystack_thread *thread, void *ctx);

/* Walks every interpreter and thread. Returns 0, the callback's non-zero value, or a negative
 * errno with a message in err (-ESRCH when the target exited, -PMS_EGARBAGE when the runtime
 * could not be read at all). */
int pystack_walk(struct pytarget *t, size_t max_frames, pystack_thread_fn fn, void *ctx,
		 struct pms_error *err);

#endif
