/* Pausing every thread of a process for a consistent snapshot, with PTRACE_SEIZE and
 * PTRACE_INTERRUPT: if we die, the kernel detaches and the target runs on (PTRACE_ATTACH would
 * leave it stopped). While the lock is held, SIGINT/SIGTERM/SIGHUP are held back so that Ctrl-C
 * always detaches first. */
#ifndef PMS_PTRACELOCK_H
#define PMS_PTRACELOCK_H

#include <sys/types.h>

#include "errors.h"

struct ptracelock;

/* Stops every thread of pid. -ESRCH, -EPERM (with a message naming CAP_SYS_PTRACE) or another
 * negative errno; on error nothing stays stopped. */
int ptracelock_acquire(pid_t pid, struct ptracelock **out, struct pms_error *err);

/* Resumes every thread and frees the lock; delivers held-back signals afterwards. NULL is fine. */
void ptracelock_release(struct ptracelock *lock);

#endif
