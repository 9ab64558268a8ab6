/* The allocator probes' links (uprobes.h). */
#include "uprobes.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pymemspy.h"

struct uprobes {
	const struct alloc_probes *probes;
	enum uprobe_mode mode;
	/* perf uprobes: returns first, then entries (detached first) */
	struct bpf_link **links;
	size_t nlinks, nreturns;
	/* uprobe_multi or session links: returns first, then entries (closed in reverse) */
	int *fds;
	size_t nfds;
};

/* The kernel ABI of BPF_LINK_CREATE for uprobe_multi links (Linux 6.6): the head of union
 * bpf_attr's link_create, with the uprobe_multi member. */
struct uprobe_multi_attr {
	uint32_t prog_fd, target_fd, attach_type, flags;
	uint64_t path, offsets, ref_ctr_offsets, cookies;
	uint32_t cnt, multi_flags, pid, pad;
};
#define PMS_BPF_F_UPROBE_MULTI_RETURN 1

static bool is_free(enum pms_alloc_fn fn)
{
	return fn == PMS_FN_FREE || fn == PMS_FN_PY_FREE;
}

/* Where both probes of a function sit (one trap serves the entry and the return): on the first
 * instruction the kernel emulates, when only instructions that touch neither the arguments nor
 * the stack pointer come before it (allocators_find checks that). A return probe takes the
 * return address from the top of the stack when it fires, which is still where the call left
 * it, so it may sit there too. */
static uint64_t entry_offset(const struct alloc_probe *p)
{
	return p->offset + p->entry_skip;
}

/* The cookie tells the program the function's kind, its flags, and which function it is (its
 * index in the probe list, plus one). */
static uint64_t probe_cookie(const struct uprobes *u, const struct alloc_probe *p)
{
	return (uint64_t)p->fn | (p->null_delegates ? PMS_COOKIE_NULL_DELEGATES : 0) |
	       (uint64_t)(p - u->probes->probes + 1) << PMS_COOKIE_FUNC_SHIFT;
}

static int attach_failed(const struct alloc_probe *probe, int e, struct pms_error *err)
{
	return pms_error_set(
	    err, e == EPERM || e == EACCES ? EPERM : PMS_ENOFEATURE,
	    "cannot put a uprobe on %s in %s (%s)%s", probe->symbol, probe->path, strerror(e),
	    e == EPERM || e == EACCES
		? ": uprobes need CAP_SYS_ADMIN on this kernel; run 'pymemspy doctor'"
		: "");
}

/* One link for every function of one file: entries (or returns), the kind in each cookie. */
static int link_file(struct uprobes *u, struct bpf_program *prog, const char *path, pid_t pid,
		     bool returns, struct pms_error *err)
{
	const struct alloc_probes *probes = u->probes;
	uint64_t *offsets = calloc(probes->n, sizeof(*offsets));
	uint64_t *cookies = calloc(probes->n, sizeof(*cookies));
	struct uprobe_multi_attr a = {0};
	const struct alloc_probe *first = NULL;
	uint32_t n = 0;
	int fd, ret = 0;

	if (!offsets || !cookies) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < probes->n; i++) {
		const struct alloc_probe *p = &probes->probes[i];

		if (strcmp(p->path, path) != 0 || (returns && is_free(p->fn)))
			continue;
		first = first ? first : p;
		offsets[n] = entry_offset(p);
		cookies[n++] = probe_cookie(u, p);
	}
	if (!n)
		goto out;
	a.prog_fd = (uint32_t)bpf_program__fd(prog);
	a.attach_type =
	    u->mode == UPROBE_SESSION ? PMS_BPF_TRACE_UPROBE_SESSION : PMS_BPF_TRACE_UPROBE_MULTI;
	a.path = (uint64_t)(uintptr_t)path;
	a.offsets = (uint64_t)(uintptr_t)offsets;
	a.cookies = (uint64_t)(uintptr_t)cookies;
	a.cnt = n;
	a.multi_flags = returns ? PMS_BPF_F_UPROBE_MULTI_RETURN : 0;
	a.pid = (uint32_t)pid;
	fd = (int)syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));
	if (fd < 0) {
		ret = -errno;
		if (ret != -EINVAL && ret != -EOPNOTSUPP)
			ret = attach_failed(first, errno, err);
		goto out;
	}
	u->fds[u->nfds++] = fd;
out:
	free(offsets);
	free(cookies);
	return ret;
}

/* Whether probe i is the first of its file. */
static bool first_of_file(const struct alloc_probes *probes, size_t i)
{
	for (size_t k = 0; k < i; k++)
		if (strcmp(probes->probes[k].path, probes->probes[i].path) == 0)
			return false;
	return true;
}

/* Links per file: one session link, or a return link then an entry link. */
static int attach_links(struct uprobes *u, const struct uprobe_progs *progs, pid_t pid,
			struct pms_error *err)
{
	bool session = u->mode == UPROBE_SESSION;
	int ret;

	u->fds = calloc(2 * u->probes->n, sizeof(*u->fds));
	if (!u->fds)
		return -ENOMEM;
	/* returns before entries: a call caught at its entry must also be caught at its return */
	for (int pass = session ? 1 : 0; pass < 2; pass++) {
		for (size_t i = 0; i < u->probes->n; i++) {
			if (!first_of_file(u->probes, i))
				continue;
			ret = link_file(u,
					session ? progs->session
					: pass	? progs->enter
						: progs->ret,
					u->probes->probes[i].path, pid, !pass, err);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* One perf uprobe per function, and one return probe per function that returns memory. */
static int attach_perf(struct uprobes *u, const struct uprobe_progs *progs, pid_t pid,
		       struct pms_error *err)
{
	u->links = calloc(2 * u->probes->n, sizeof(*u->links));
	if (!u->links)
		return -ENOMEM;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < u->probes->n; i++) {
			const struct alloc_probe *p = &u->probes->probes[i];
			LIBBPF_OPTS(bpf_uprobe_opts, uo, .retprobe = !pass,
				    .bpf_cookie = probe_cookie(u, p));
			struct bpf_link *link;

			if (!pass && is_free(p->fn))
				continue;
			link = bpf_program__attach_uprobe_opts(pass ? progs->enter : progs->ret,
							       pid, p->path, entry_offset(p), &uo);
			if (!link)
				return attach_failed(p, errno ? errno : EINVAL, err);
			u->links[u->nlinks++] = link;
		}
		if (!pass)
			u->nreturns = u->nlinks;
	}
	return 0;
}

int uprobes_attach(const struct alloc_probes *probes, const struct uprobe_progs *progs, pid_t pid,
		   enum uprobe_mode mode, struct uprobes **out, struct pms_error *err)
{
	struct uprobes *u = calloc(1, sizeof(*u));
	int ret;

	*out = NULL;
	if (!u)
		return -ENOMEM;
	u->probes = probes;
	u->mode = mode;
	ret = mode == UPROBE_PERF ? attach_perf(u, progs, pid, err)
				  : attach_links(u, progs, pid, err);
	if (ret) {
		uprobes_free(u);
		return ret;
	}
	*out = u;
	return 0;
}

const char *uprobes_mode_name(enum uprobe_mode mode)
{
	static const char *const names[] = {"session", "multi", "perf"};

	return (unsigned)mode < 3 ? names[mode] : "unknown";
}

struct link_batch {
	struct bpf_link **links;
	size_t n;
};

static void *destroy_batch(void *arg)
{
	struct link_batch *b = arg;

	for (size_t i = 0; i < b->n; i++)
		bpf_link__destroy(b->links[i]);
	return NULL;
}

/* Destroys links[0..n) from up to 8 threads at once: taking a uprobe out waits for an RCU grace
 * period (about 0.1 s here), so 20 of them one after the other would keep the user (and the
 * target, which pays for every probe still in) waiting for seconds. */
static void destroy_parallel(struct bpf_link **links, size_t n)
{
	enum { THREADS = 8 };
	struct link_batch batches[THREADS];
	pthread_t threads[THREADS];
	bool started[THREADS] = {false};
	size_t per = (n + THREADS - 1) / THREADS;

	if (!n)
		return;
	for (size_t t = 0; t < THREADS; t++) {
		size_t from = t * per < n ? t * per : n, to = from + per > n ? n : from + per;

		batches[t] = (struct link_batch){links + from, to - from};
		if (batches[t].n && t > 0)
			started[t] =
			    pthread_create(&threads[t], NULL, destroy_batch, &batches[t]) == 0;
	}
	destroy_batch(&batches[0]);
	for (size_t t = 1; t < THREADS; t++) {
		if (started[t])
			pthread_join(threads[t], NULL);
		else
			destroy_batch(&batches[t]);
	}
}

void uprobes_detach(struct uprobes *u)
{
	if (!u)
		return;
	/* entries (attached last) go first: no call starts that its return would miss */
	while (u->nfds)
		close(u->fds[--u->nfds]);
	destroy_parallel(u->links + u->nreturns, u->nlinks - u->nreturns);
	destroy_parallel(u->links, u->nreturns);
	u->nlinks = u->nreturns = 0;
}

void uprobes_free(struct uprobes *u)
{
	if (!u)
		return;
	uprobes_detach(u);
	free(u->links);
	free(u->fds);
	free(u);
}
