/* The sequence every attaching command shares (record, top, and what comes next): open the
 * target and its profile, take Ctrl-C and SIGTERM, check the host, attach the sampler, then step:
 * poll the events into the profile and say when to stop (a signal, --duration, the target
 * exiting, the host failing the mode). One session at a time: the signal flag is the CLI's. */
#ifndef PMS_SESSION_H
#define PMS_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errors.h"
#include "profile.h"
#include "pytarget.h"
#include "report.h"
#include "sampler.h"
#include "source.h"

struct session;

/* Opens the target and a profile for it, and makes SIGINT/SIGTERM only set a flag (and SIGPIPE
 * an EPIPE): nothing is attached yet. */
int session_open(pid_t pid, struct session **out, struct pms_error *err);

/* Whether this host and our privileges allow opts->source (sampler_require), asked before
 * anything is left behind (a record file); session_attach then does not ask again. */
int session_require(struct session *s, struct sampler_opts *opts, struct pms_error *err);

/* Attaches the sampler; its events go into the profile, timed from now. */
int session_attach(struct session *s, const struct sampler_opts *opts, struct pms_error *err);

/* One step: delivers the events of at most poll_ms, then checks the sampler, the target and the
 * clock. Returns 0 to go on, 1 to stop (*ended says why), or a negative errno with a message.
 * A line for the user (the overhead prediction, the probes stopped) lands in note, else note is
 * "". duration 0: no end but the others. */
int session_step(struct session *s, int poll_ms, double duration, enum pms_end *ended, char *note,
		 size_t len, struct pms_error *err);

/* Seconds since attaching. */
double session_elapsed(const struct session *s);

/* Detaches the programs and delivers what is still in the ring buffer: the counters stop. 0, or
 * the event path's first error. */
int session_detach(struct session *s, struct pms_error *err);

/* What a report says of the session besides the profile: the target, the source and its
 * settings, the counters, the profiler's own cost. Leaves duration, rss_end and ended_by. */
void session_fill_meta(struct session *s, const struct sampler_opts *opts, struct report_meta *m);

struct pytarget *session_target(struct session *s);
struct profile *session_profile(struct session *s);
struct sampler *session_sampler(struct session *s);
uint64_t session_start_ns(const struct session *s);
uint64_t session_rss_start(const struct session *s);

/* Detaches, restores the signals, frees. NULL is fine. */
void session_close(struct session *s);

#endif
