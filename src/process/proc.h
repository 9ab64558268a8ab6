/* A process seen from the outside: its memory maps, its threads, and checked reads of its memory
 * (process_vm_readv, falling back to /proc/PID/mem). Nothing here stops or changes the process. */
#ifndef PMS_PROC_H
#define PMS_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errors.h"

struct proc;

struct proc_map {
	uint64_t start, end, offset;
	uint64_t inode;
	char perms[5];
	char path[512]; /* as the target sees it; "" for anonymous mappings */
};

/* Opens PID: reads its maps. -ESRCH when it does not exist, -EACCES/-EPERM with advice naming
 * CAP_SYS_PTRACE when we may not look at it. */
int proc_open(pid_t pid, struct proc **out, struct pms_error *err);
void proc_close(struct proc *p);
pid_t proc_pid(const struct proc *p);

size_t proc_map_count(const struct proc *p);
const struct proc_map *proc_map_at(const struct proc *p, size_t i);
/* The mapping containing addr, or NULL. */
const struct proc_map *proc_map_find(const struct proc *p, uint64_t addr);

/* Reads the maps again (a long-running reader sees new heap mappings). Pointers returned by
 * proc_map_at/proc_map_find before are invalid afterwards. On error the old maps stay. */
int proc_refresh_maps(struct proc *p, struct pms_error *err);

/* Parses one line of /proc/PID/maps. 0 or -EINVAL. */
int proc_maps_parse_line(const char *line, struct proc_map *out);

/* Reads exactly len bytes at addr. 0, -EFAULT (unmapped or partial: normal for torn data),
 * -ESRCH (the process exited), -EPERM (no ptrace rights). Never prints. */
int proc_read(struct proc *p, uint64_t addr, void *buf, size_t len);
int proc_read_u64(struct proc *p, uint64_t addr, uint64_t *out);
/* Reads n ranges of len bytes (addrs[i]) into out, one after the other, in one system call.
 * Returns how many ranges were read whole from the first (the rest failed), or a negative errno. */
#define PROC_READ_MANY_MAX 64
int proc_read_many(struct proc *p, const uint64_t *addrs, size_t n, size_t len, void *out);
int proc_read_i32(struct proc *p, uint64_t addr, int32_t *out);

/* Turns a failed read into the one message users see (target exited, privilege needed...). */
int proc_read_error(struct proc *p, int err, const char *what, struct pms_error *e);

/* The path of the target's file `path` as reachable from here (through /proc/PID/root, so that
 * a process in a container works from the host). */
int proc_host_path(const struct proc *p, const char *path, char *out, size_t outlen);

/* The thread ids of the process, sorted. Returns the count (at most max) or a negative errno. */
int proc_tasks(const struct proc *p, pid_t *tids, size_t max);

/* The state letter of a thread from /proc/PID/task/TID/stat ('R', 'S', 'D', 'T'...), or '?'. */
char proc_task_state(const struct proc *p, pid_t tid);
/* The same for a process not opened (no maps read). */
char proc_task_state_of(pid_t pid, pid_t tid);

/* The command name (comm) of the process; "?" when unreadable. */
const char *proc_comm(const struct proc *p);

/* Resident set size of the process in bytes (from /proc/PID/statm). 0 or -ESRCH. */
int proc_rss(const struct proc *p, uint64_t *bytes);

/* True while the process exists, is not a zombie and is not exiting. */
bool proc_alive(const struct proc *p);

/* True when a thread of a process not opened is gone, a zombie, or exiting. */
bool proc_task_exiting(pid_t pid, pid_t tid);

#endif
