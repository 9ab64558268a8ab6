#include "overhead.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "hostcost.h"

bool overhead_insn_emulated(const uint8_t *code, size_t len)
{
	if (len >= 1 && code[0] >= 0x50 && code[0] <= 0x57)
		return true; /* push %reg */
	if (len >= 2 && code[0] == 0x41 && code[1] >= 0x50 && code[1] <= 0x57)
		return true; /* push %r8..%r15 */
	if (len >= 1 && (code[0] == 0x90 || code[0] == 0xe8 || code[0] == 0xe9 || code[0] == 0xeb))
		return true; /* nop, call, jmp */
	if (len >= 2 &&
	    ((code[0] == 0x0f && code[1] == 0x1f) || (code[0] == 0x66 && code[1] == 0x90)))
		return true; /* long nops */
	return false;
}

/* Whether the probe's instruction is emulated, from the file it is attached to. Unreadable
 * counts as single-stepped: the prediction errs high. */
static bool probe_emulated(const struct alloc_probe *p)
{
	uint8_t code[4];
	int fd = open(p->path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = pread(fd, code, sizeof(code), (off_t)(p->offset + p->entry_skip));
	close(fd);
	return n > 0 && overhead_insn_emulated(code, (size_t)n);
}

int overhead_init(struct overhead *o, const struct alloc_probes *probes, double max_pct,
		  struct pms_error *err)
{
	struct hostcost_uprobe u;
	long type;
	int ret;

	memset(o, 0, sizeof(*o));
	o->max_pct = max_pct;
	o->stopped_at = -1;
	ret = host_uprobe_pmu_type(&type);
	if (!ret)
		ret = hostcost_uprobe(type, &u);
	if (ret)
		return pms_error_set(err, ret == -EACCES || ret == -EPERM ? EPERM : PMS_ENOFEATURE,
				     "cannot time a uprobe trap on this host: %s", strerror(-ret));
	o->return_trap_ns = u.return_ns;
	o->nprobes = probes->n < PMS_MAX_PROBES ? probes->n : PMS_MAX_PROBES;
	for (size_t i = 0; i < o->nprobes; i++) {
		const struct alloc_probe *p = &probes->probes[i];
		bool is_free = p->fn == PMS_FN_FREE || p->fn == PMS_FN_PY_FREE;

		/* an allocation pays its entry and its return, a free its entry */
		o->call_ns[i] =
		    (probe_emulated(p) ? u.emulated_ns : u.sstep_ns) + (is_free ? 0 : u.return_ns);
	}
	return 0;
}

bool overhead_update(struct overhead *o, const uint64_t calls[PMS_MAX_PROBES], double elapsed)
{
	double window = elapsed - o->last_t, trapped_ns = 0, ncalls = 0, dearest = 0;

	if (o->stopped_at >= 0 || window < OVERHEAD_WINDOW_S)
		return false;
	for (size_t i = 0; i < o->nprobes; i++) {
		uint64_t d = calls[i] >= o->last_calls[i] ? calls[i] - o->last_calls[i] : 0;

		trapped_ns += (double)d * o->call_ns[i];
		ncalls += (double)d;
		if (d && o->call_ns[i] > dearest)
			dearest = o->call_ns[i];
		o->last_calls[i] = calls[i];
	}
	o->calls_per_sec = ncalls / window;
	o->predicted_pct =
	    trapped_ns / (window * 1e9) > 1 ? 100 : 100 * trapped_ns / (window * 1e9);
	if (dearest > 0)
		o->trap_ns = dearest;
	if (o->predicted_pct > o->peak_pct)
		o->peak_pct = o->predicted_pct;
	o->last_t = elapsed;
	return o->max_pct > 0 && o->predicted_pct > o->max_pct;
}

void overhead_describe(const struct overhead *o, const char *source, char *buf, size_t len)
{
	int n = snprintf(buf, len,
			 "%s: %.0f probed calls/s, at up to %.2f us a call here (traps timed at "
			 "start): about %.1f%% of a thread predicted",
			 source, o->calls_per_sec, o->trap_ns / 1e3, o->predicted_pct);

	if (n < 0 || (size_t)n >= len)
		return;
	if (o->stopped_at >= 0)
		snprintf(buf + n, len - (size_t)n,
			 ", above --max-overhead %g%%: probes stopped after %.1f s", o->max_pct,
			 o->stopped_at);
	else if (o->max_pct > 0)
		snprintf(buf + n, len - (size_t)n, " (--max-overhead %g%%)", o->max_pct);
}
