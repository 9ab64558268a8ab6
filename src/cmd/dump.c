/* pymemspy dump: every thread's Python stack, read from the outside. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "ptracelock.h"
#include "pycode.h"
#include "pystack.h"
#include "pytarget.h"

#define DUMP_MAX_TID_STATES 4096
#define DUMP_ATTEMPTS	    3

struct dump_frame {
	char *function, *file;
	int line;
};

struct dump_thread {
	pid_t tid;
	int64_t interp_id;
	bool holds_gil, idle, truncated;
	size_t nframes;
	struct dump_frame *frames;
};

struct dump {
	struct pytarget *target;
	struct pycode_cache *codes;
	struct dump_thread *threads;
	size_t nthreads, cap;
	/* thread states ('R', 'S'...) read before any lock, by tid */
	pid_t state_tids[DUMP_MAX_TID_STATES];
	char states[DUMP_MAX_TID_STATES];
	int nstates;
};

static void dump_clear_threads(struct dump *d)
{
	for (size_t i = 0; i < d->nthreads; i++) {
		for (size_t f = 0; f < d->threads[i].nframes; f++) {
			free(d->threads[i].frames[f].function);
			free(d->threads[i].frames[f].file);
		}
		free(d->threads[i].frames);
	}
	free(d->threads);
	d->threads = NULL;
	d->nthreads = d->cap = 0;
}

static char state_of(const struct dump *d, pid_t tid)
{
	for (int i = 0; i < d->nstates; i++)
		if (d->state_tids[i] == tid)
			return d->states[i];
	return '?';
}

static void read_states(struct dump *d)
{
	struct proc *p = pytarget_proc(d->target);
	int n = proc_tasks(p, d->state_tids, DUMP_MAX_TID_STATES);

	d->nstates = n > 0 ? n : 0;
	for (int i = 0; i < d->nstates; i++)
		d->states[i] = proc_task_state(p, d->state_tids[i]);
}

static int collect_thread(const struct pystack_thread *th, void *ctx)
{
	struct dump *d = ctx;
	struct dump_thread *out;

	if (d->nthreads == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		struct dump_thread *n = realloc(d->threads, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		d->threads = n;
		d->cap = cap;
	}
	out = &d->threads[d->nthreads++];
	memset(out, 0, sizeof(*out));
	out->tid = th->tid;
	out->interp_id = th->interp_id;
	out->holds_gil = th->holds_gil;
	out->truncated = th->truncated;
	/* a thread that is not running and does not hold the GIL is waiting for something */
	out->idle = !th->holds_gil && state_of(d, th->tid) != 'R';
	out->frames = calloc(th->nframes ? th->nframes : 1, sizeof(*out->frames));
	if (!out->frames)
		return -ENOMEM;
	for (size_t i = 0; i < th->nframes; i++) {
		const struct pycode_info *info;
		struct dump_frame *f = &out->frames[out->nframes];

		if (pycode_lookup(d->codes, th->frames[i].code, &info) != 0) {
			out->truncated = true;
			continue; /* freed or torn code object: skip the frame, keep the rest */
		}
		f->function = strdup(info->function);
		f->file = strdup(info->file);
		f->line = pycode_line(d->codes, th->frames[i].code, th->frames[i].offset);
		out->nframes++;
		if (!f->function || !f->file)
			return -ENOMEM;
	}
	return 0;
}

static void print_text(const struct dump *d)
{
	const struct pyversion *v = pytarget_version(d->target);
	struct proc *p = pytarget_proc(d->target);

	printf("Process %d (%s): Python %s (%s build)\n", proc_pid(p), proc_comm(p), v->text,
	       pylayout_build_name(v->build));
	printf("Runtime: %s\n", pytarget_runtime_file(d->target));
	for (size_t i = 0; i < d->nthreads; i++) {
		const struct dump_thread *th = &d->threads[i];

		printf("\nThread %d (interpreter %lld%s%s)%s\n", th->tid, (long long)th->interp_id,
		       th->holds_gil ? ", holds the GIL" : "", th->idle ? ", idle" : ", active",
		       th->truncated ? " [stack truncated]" : "");
		if (th->nframes == 0)
			printf("    (no Python frames)\n");
		for (size_t f = 0; f < th->nframes; f++)
			printf("    %s (%s:%d)\n", th->frames[f].function, th->frames[f].file,
			       th->frames[f].line);
	}
}

static int print_json(const struct dump *d)
{
	struct json *j = json_new(stdout, true);

	if (!j)
		return -ENOMEM;
	json_object_begin(j);
	json_kv_string(j, "schema", "pymemspy.dump/1");
	json_kv_int(j, "pid", proc_pid(pytarget_proc(d->target)));
	pytarget_json(j, d->target);
	json_key(j, "threads");
	json_array_begin(j);
	for (size_t i = 0; i < d->nthreads; i++) {
		const struct dump_thread *th = &d->threads[i];

		json_object_begin(j);
		json_kv_int(j, "tid", th->tid);
		json_kv_int(j, "interpreter", th->interp_id);
		json_kv_bool(j, "holds_gil", th->holds_gil);
		json_kv_bool(j, "idle", th->idle);
		json_kv_bool(j, "truncated", th->truncated);
		json_key(j, "frames");
		json_array_begin(j);
		for (size_t f = 0; f < th->nframes; f++) {
			json_object_begin(j);
			json_kv_string(j, "function", th->frames[f].function);
			json_kv_string(j, "file", th->frames[f].file);
			json_kv_int(j, "line", th->frames[f].line);
			json_object_end(j);
		}
		json_array_end(j);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
	json_free(j);
	return 0;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: pymemspy dump --pid PID [--json] [--lock] [--max-depth N]\n\n"
	    "Prints every thread of every interpreter of a running CPython process: its native\n"
	    "thread id, whether it holds the GIL or is idle, and its Python stack, innermost\n"
	    "frame first. The target is not stopped unless --lock is given.\n\n"
	    "Options:\n"
	    "  -p, --pid PID        the process to read\n"
	    "  -j, --json           one JSON document (schema pymemspy.dump/1) on stdout\n"
	    "  -l, --lock           pause the target (PTRACE_SEIZE) for a consistent snapshot;\n"
	    "                       it is always resumed, even on error or Ctrl-C\n"
	    "  -d, --max-depth N    at most N frames per thread (default %d)\n"
	    "  -h, --help           this help\n\n"
	    "Needs ptrace rights over the target: root, or CAP_SYS_PTRACE.\n\n"
	    "Examples:\n"
	    "  sudo pymemspy dump --pid 4242\n"
	    "  sudo pymemspy dump --pid 4242 --json | jq '.threads[0].frames[0]'\n",
	    PYSTACK_DEFAULT_DEPTH);
}

int cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"pid", required_argument, NULL, 'p'}, {"json", no_argument, NULL, 'j'},
	    {"lock", no_argument, NULL, 'l'},	   {"max-depth", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},	   {NULL, 0, NULL, 0},
	};
	struct pms_error err = {{0}};
	struct ptracelock *lock = NULL;
	struct dump d = {0};
	bool json = false, want_lock = false;
	long depth = PYSTACK_DEFAULT_DEPTH;
	pid_t pid = 0;
	int c, ret = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:jld:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (cli_parse_pid(optarg, &pid))
				return cli_usage_error("dump", "--pid needs a process id");
			break;
		case 'j':
			json = true;
			break;
		case 'l':
			want_lock = true;
			break;
		case 'd':
			if (cli_parse_long(optarg, 1, 65536, &depth))
				return cli_usage_error("dump",
						       "--max-depth needs a number from 1 to "
						       "65536");
			break;
		case 'h':
			return cli_help(usage);
		default:
			return cli_usage_error("dump", "unknown option");
		}
	}
	if (cli_need_pid("dump", argc, pid))
		return PMS_EXIT_USAGE;

	ret = pytarget_open(pid, &d.target, &err);
	if (ret)
		goto out;
	d.codes = pycode_cache_new(d.target, 0);
	if (!d.codes) {
		ret = -ENOMEM;
		goto out;
	}
	read_states(&d);
	if (want_lock) {
		ret = ptracelock_acquire(pid, &lock, &err);
		if (ret)
			goto out;
	}
	/* Without the lock the thread list can change under us: try a few times. */
	for (int attempt = 0; attempt < DUMP_ATTEMPTS; attempt++) {
		dump_clear_threads(&d);
		pms_error_clear(&err);
		ret = pystack_walk(d.target, (size_t)depth, collect_thread, &d, &err);
		if (ret != -PMS_EGARBAGE)
			break;
	}
	ptracelock_release(lock);
	lock = NULL;
	if (ret)
		goto out;
	if (json)
		ret = print_json(&d);
	else
		print_text(&d);
out:
	ptracelock_release(lock);
	dump_clear_threads(&d);
	pycode_cache_free(d.codes);
	pytarget_close(d.target);
	return ret ? cli_fail(&err, ret) : PMS_EXIT_OK;
}
