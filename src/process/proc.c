#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#define PROC_MAX_MAPS	65536
#define PROC_PF_EXITING 0x4 /* task flag: getting shut down */

struct proc {
	pid_t pid;
	int mem_fd; /* /proc/PID/mem, opened on first need */
	bool use_mem_file;
	char comm[64];
	struct proc_map *maps;
	size_t nmaps;
};

int proc_maps_parse_line(const char *line, struct proc_map *m)
{
	unsigned long long start, end, offset, inode;
	unsigned int dmaj, dmin;
	char perms[8];
	int pos = 0;

	memset(m, 0, sizeof(*m));
	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu%n", &start, &end, perms, &offset, &dmaj,
		   &dmin, &inode, &pos) < 7)
		return -EINVAL;
	if (end < start || strlen(perms) != 4)
		return -EINVAL;
	m->start = start;
	m->end = end;
	m->offset = offset;
	m->inode = inode;
	memcpy(m->perms, perms, 5);
	line += pos;
	while (*line == ' ' || *line == '\t')
		line++;
	snprintf(m->path, sizeof(m->path), "%s", line);
	m->path[strcspn(m->path, "\n")] = '\0';
	return 0;
}

static int read_maps(struct proc *p, struct pms_error *err)
{
	char path[64], line[1024];
	size_t cap = 256;
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", p->pid);
	f = fopen(path, "re");
	if (!f) {
		ret = -errno;
		goto fail;
	}
	p->maps = calloc(cap, sizeof(*p->maps));
	if (!p->maps) {
		ret = -ENOMEM;
		goto out;
	}
	while (fgets(line, sizeof(line), f) && p->nmaps < PROC_MAX_MAPS) {
		if (p->nmaps == cap) {
			struct proc_map *n = realloc(p->maps, 2 * cap * sizeof(*n));

			if (!n) {
				ret = -ENOMEM;
				goto out;
			}
			p->maps = n;
			cap *= 2;
		}
		if (proc_maps_parse_line(line, &p->maps[p->nmaps]) == 0)
			p->nmaps++;
	}
	if (ferror(f))
		ret = -errno ? -errno : -EIO;
out:
	fclose(f);
	if (ret == 0 && p->nmaps == 0)
		ret = -ESRCH; /* a zombie or a kernel thread has no maps */
fail:
	if (ret == -ENOENT || ret == -ESRCH)
		return pms_error_set(err, ESRCH, "process %d has no memory maps: it exited",
				     p->pid);
	if (ret == -EACCES || ret == -EPERM)
		return pms_error_set(
		    err, EPERM,
		    "not allowed to read process %d: run as root, or grant "
		    "CAP_SYS_PTRACE (and check /proc/sys/kernel/yama/ptrace_scope)",
		    p->pid);
	if (ret)
		return pms_error_set(err, -ret, "reading %s: %s", path, strerror(-ret));
	return 0;
}

int proc_open(pid_t pid, struct proc **out, struct pms_error *err)
{
	struct proc *p;
	char path[64];
	FILE *f;
	int ret;

	*out = NULL;
	if (pid <= 0)
		return pms_error_set(err, EINVAL, "invalid pid %d", pid);
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return pms_error_set(err, ESRCH, "no process with pid %d", pid);
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->mem_fd = -1;
	snprintf(p->comm, sizeof(p->comm), "?");
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	f = fopen(path, "re");
	if (!f) {
		ret = pms_error_set(err, ESRCH, "no process with pid %d", pid);
		goto fail;
	}
	if (fgets(p->comm, sizeof(p->comm), f))
		p->comm[strcspn(p->comm, "\n")] = '\0';
	fclose(f);
	ret = read_maps(p, err);
	if (ret)
		goto fail;
	*out = p;
	return 0;
fail:
	proc_close(p);
	return ret;
}

int proc_refresh_maps(struct proc *p, struct pms_error *err)
{
	struct proc_map *old = p->maps;
	size_t nold = p->nmaps;
	int ret;

	p->maps = NULL;
	p->nmaps = 0;
	ret = read_maps(p, err);
	if (ret) {
		free(p->maps);
		p->maps = old;
		p->nmaps = nold;
		return ret;
	}
	free(old);
	return 0;
}

void proc_close(struct proc *p)
{
	if (!p)
		return;
	if (p->mem_fd >= 0)
		close(p->mem_fd);
	free(p->maps);
	free(p);
}

pid_t proc_pid(const struct proc *p)
{
	return p->pid;
}

const char *proc_comm(const struct proc *p)
{
	return p->comm;
}

size_t proc_map_count(const struct proc *p)
{
	return p->nmaps;
}

const struct proc_map *proc_map_at(const struct proc *p, size_t i)
{
	return i < p->nmaps ? &p->maps[i] : NULL;
}

const struct proc_map *proc_map_find(const struct proc *p, uint64_t addr)
{
	size_t lo = 0, hi = p->nmaps;

	/* maps are sorted by address */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < p->maps[mid].start)
			hi = mid;
		else if (addr >= p->maps[mid].end)
			lo = mid + 1;
		else
			return &p->maps[mid];
	}
	return NULL;
}

/* The state letter and flags of a thread (tid) or of the process (tid 0) from its stat file.
 * 0, or -ESRCH when it is gone or unreadable. */
static int read_stat(pid_t pid, pid_t tid, char *state, unsigned *flags)
{
	char path[96], buf[512], *close_paren;
	ssize_t n;
	int fd;

	if (tid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';
	close_paren = strrchr(buf, ')'); /* comm may contain spaces and parentheses */
	if (!close_paren || close_paren[1] != ' ')
		return -ESRCH;
	*state = close_paren[2];
	/* state ppid pgrp session tty_nr tpgid flags */
	*flags = 0;
	if (sscanf(close_paren + 2, "%*c %*d %*d %*d %*d %*d %u", flags) != 1)
		*flags = 0;
	return 0;
}

/* Gone, a zombie, or exiting (PF_EXITING: it has already lost, or is losing, its memory and
 * files). */
static bool stat_ended(pid_t pid, pid_t tid)
{
	unsigned flags;
	char state;

	return read_stat(pid, tid, &state, &flags) != 0 || state == 'Z' || state == 'X' ||
	       (flags & PROC_PF_EXITING);
}

bool proc_alive(const struct proc *p)
{
	return !stat_ended(p->pid, 0);
}

bool proc_task_exiting(pid_t pid, pid_t tid)
{
	return stat_ended(pid, tid);
}

static int read_mem_file(struct proc *p, uint64_t addr, void *buf, size_t len)
{
	ssize_t n;

	if (p->mem_fd < 0) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d/mem", p->pid);
		p->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (p->mem_fd < 0)
			return errno == ENOENT ? -ESRCH : -errno;
	}
	n = pread(p->mem_fd, buf, len, (off_t)addr);
	if (n < 0)
		return errno == EIO ? -EFAULT : -errno;
	return (size_t)n == len ? 0 : -EFAULT;
}

int proc_read(struct proc *p, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = {.iov_base = buf, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)addr, .iov_len = len};
	ssize_t n;

	if (len == 0)
		return 0;
	if (addr == 0 || addr + len < addr)
		return -EFAULT;
	if (p->use_mem_file)
		return read_mem_file(p, addr, buf, len);
	n = process_vm_readv(p->pid, &local, 1, &remote, 1, 0);
	if (n == (ssize_t)len)
		return 0;
	if (n >= 0)
		return -EFAULT; /* partial: the range crosses into an unmapped page */
	if (errno == ENOSYS) {
		p->use_mem_file = true;
		return read_mem_file(p, addr, buf, len);
	}
	return -errno;
}

int proc_read_many(struct proc *p, const uint64_t *addrs, size_t n, size_t len, void *out)
{
	struct iovec local[PROC_READ_MANY_MAX], remote[PROC_READ_MANY_MAX];
	size_t done = 0;
	ssize_t got;

	if (n > PROC_READ_MANY_MAX)
		return -EINVAL;
	if (p->use_mem_file || n == 0) {
		for (done = 0; done < n; done++)
			if (proc_read(p, addrs[done], (char *)out + done * len, len) != 0)
				break;
		return (int)done;
	}
	for (size_t i = 0; i < n; i++) {
		local[i] = (struct iovec){.iov_base = (char *)out + i * len, .iov_len = len};
		remote[i] = (struct iovec){.iov_base = (void *)(uintptr_t)addrs[i], .iov_len = len};
	}
	got = process_vm_readv(p->pid, local, n, remote, n, 0);
	if (got < 0)
		return -errno;
	return (int)((size_t)got / len); /* it stops at the first range it cannot read */
}

int proc_read_u64(struct proc *p, uint64_t addr, uint64_t *out)
{
	return proc_read(p, addr, out, sizeof(*out));
}

int proc_read_i32(struct proc *p, uint64_t addr, int32_t *out)
{
	return proc_read(p, addr, out, sizeof(*out));
}

int proc_read_error(struct proc *p, int err, const char *what, struct pms_error *e)
{
	switch (-err) {
	case ESRCH:
		return pms_error_set(e, ESRCH, "process %d exited while reading %s", p->pid, what);
	case EPERM:
	case EACCES:
		return pms_error_set(
		    e, EPERM,
		    "not allowed to read the memory of process %d: run as root, or "
		    "grant CAP_SYS_PTRACE (and check "
		    "/proc/sys/kernel/yama/ptrace_scope)",
		    p->pid);
	case EFAULT:
		return pms_error_set(e, PMS_EGARBAGE,
				     "could not read %s in process %d: the address is not mapped",
				     what, p->pid);
	default:
		return pms_error_set(e, -err, "reading %s in process %d: %s", what, p->pid,
				     strerror(-err));
	}
}

int proc_host_path(const struct proc *p, const char *path, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "/proc/%d/root%s%s", p->pid, path[0] == '/' ? "" : "/", path);

	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

int proc_tasks(const struct proc *p, pid_t *tids, size_t max)
{
	char path[64];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", p->pid);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? -ESRCH : -errno;
	while ((de = readdir(d)) && n < max) {
		long v;
		char *end;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		v = strtol(de->d_name, &end, 10);
		if (*end == '\0' && v > 0)
			tids[n++] = (pid_t)v;
	}
	closedir(d);
	qsort(tids, n, sizeof(*tids), cmp_pid);
	return (int)n;
}

char proc_task_state(const struct proc *p, pid_t tid)
{
	return proc_task_state_of(p->pid, tid);
}

char proc_task_state_of(pid_t pid, pid_t tid)
{
	unsigned flags;
	char state;

	return read_stat(pid, tid, &state, &flags) == 0 ? state : '?';
}

int proc_rss(const struct proc *p, uint64_t *bytes)
{
	unsigned long long size, resident;
	char path[64];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/proc/%d/statm", p->pid);
	f = fopen(path, "re");
	if (!f)
		return -ESRCH;
	n = fscanf(f, "%llu %llu", &size, &resident);
	fclose(f);
	if (n != 2)
		return -ESRCH;
	*bytes = resident * (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}
