/* Record files (man/pymemspy-record.5): a 16-byte header, then records framed as type, length,
 * payload, CRC-32. The writer appends whole records only, so that whatever stops it (SIGKILL, a
 * full disk) leaves a file that reads up to its last whole record; the reader trusts nothing it
 * reads and stops at the first record that is cut or fails a check. */
#include "recfile.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "u64map.h"

enum rec_type {
	REC_META = 1,
	REC_STRING = 2,
	REC_SITE = 3,
	REC_STACK = 4,
	REC_TICK = 5,
	REC_END = 6,
	REC_OLDEST = 7,
	REC_WHOLE_STACK = 8,
};

#define HEADER_BYTES	   16
#define RECORD_HEAD	   8 /* type, length */
#define RECORD_CRC	   4
#define MAX_PAYLOAD	   (16u << 20)
#define TOTALS_FIELDS	   7
#define SYNC_SECONDS	   5.0
#define FLUSH_AT	   (1u << 20) /* buffered bytes that trigger a write between flushes */
#define READ_MAX_SITES	   65536      /* as many as a profile keeps */
#define READ_MAX_TIME	   1e9	      /* seconds: 31 years; beyond is damage, not a recording */
#define READ_MAX_VALUE	   ((int64_t)1 << 60) /* bytes in one field: 1 EiB */
#define READ_MAX_BYTES	   ((int64_t)1 << 61) /* sum of |bytes| over a whole file */
#define READ_MAX_BUCKETS   (1u << 16)
#define READ_MAX_FILE_SIZE ((uint64_t)1 << 34)
#define READ_MAX_ESTIMATE  1e100 /* an estimated count or variance: far above any real */
#define READ_MAX_LIVE	   ((int64_t)1 << 40) /* sampled allocations alive at one site */
#define READ_MAX_OLDEST	   8		      /* oldest live allocations of one site */

/* ---- Encoding: little-endian fixed widths, LEB128 varints, zigzag for signed ---- */

struct bytes {
	uint8_t *p;
	size_t len, cap;
	bool oom; /* a put failed: the content is incomplete */
};

static void put(struct bytes *b, const void *data, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *p;

		while (cap - b->len < n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void store_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u16(struct bytes *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};

	put(b, x, sizeof(x));
}

static void put_u32(struct bytes *b, uint32_t v)
{
	uint8_t x[4];

	store_u32(x, v);
	put(b, x, sizeof(x));
}

static void put_u64(struct bytes *b, uint64_t v)
{
	uint8_t x[8];

	for (int i = 0; i < 8; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	put(b, x, sizeof(x));
}

static void put_f64(struct bytes *b, double v)
{
	uint64_t bits;

	memcpy(&bits, &v, sizeof(bits));
	put_u64(b, bits);
}

static void put_uv(struct bytes *b, uint64_t v)
{
	uint8_t x[10];
	size_t n = 0;

	do {
		x[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			x[n] |= 0x80;
		n++;
	} while (v);
	put(b, x, n);
}

static void put_sv(struct bytes *b, int64_t v)
{
	/* zigzag: small magnitudes of either sign take few bytes */
	put_uv(b, v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1);
}

static void put_str(struct bytes *b, const char *s, size_t max)
{
	size_t n = strnlen(s, max < RECFILE_MAX_STRING ? max : RECFILE_MAX_STRING);

	put_u16(b, (uint16_t)n);
	put(b, s, n);
}

/* A reading position inside one payload; any overrun sets bad and reads zeros from then on. */
struct cursor {
	const uint8_t *p;
	size_t len, pos;
	bool bad;
};

static const uint8_t *take(struct cursor *c, size_t n)
{
	const uint8_t *at;

	if (c->bad || n > c->len - c->pos) {
		c->bad = true;
		return NULL;
	}
	at = c->p + c->pos;
	c->pos += n;
	return at;
}

static uint32_t load_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t get_u16(struct cursor *c)
{
	const uint8_t *p = take(c, 2);

	return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

static uint32_t get_u32(struct cursor *c)
{
	const uint8_t *p = take(c, 4);

	return p ? load_u32(p) : 0;
}

static uint64_t get_u64(struct cursor *c)
{
	const uint8_t *p = take(c, 8);
	uint64_t v = 0;

	for (int i = 0; p && i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static double get_f64(struct cursor *c)
{
	uint64_t bits = get_u64(c);
	double v;

	memcpy(&v, &bits, sizeof(v));
	return v;
}

static uint64_t get_uv(struct cursor *c)
{
	uint64_t v = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		const uint8_t *p = take(c, 1);

		if (!p)
			return 0;
		/* the tenth byte holds one bit: more is an overlong or overflowing varint */
		if (shift == 63 && *p > 1)
			break;
		v |= (uint64_t)(*p & 0x7f) << shift;
		if (!(*p & 0x80))
			return v;
	}
	c->bad = true;
	return 0;
}

static int64_t get_sv(struct cursor *c)
{
	uint64_t u = get_uv(c);

	return (u & 1) ? -(int64_t)(u >> 1) - 1 : (int64_t)(u >> 1);
}

/* Copies a string into out[outlen] (cut to fit, always terminated). */
static void get_str(struct cursor *c, char *out, size_t outlen)
{
	uint16_t n = get_u16(c);
	const uint8_t *s = take(c, n);
	size_t k = n < outlen - 1 ? n : outlen - 1;

	if (!s)
		k = 0;
	else
		memcpy(out, s, k);
	out[k] = '\0';
}

static bool time_ok(double t)
{
	return isfinite(t) && t >= 0 && t <= READ_MAX_TIME;
}

/* ---- Writer ---- */

struct wsite {
	uint64_t function, file; /* string ids */
	int line;
	size_t pending; /* 1 + its index in pending when it has a delta this tick, else 0 */
};

/* A delta waiting for its TICK, with the site's series when recfile_tick could read it. */
struct pending {
	struct profile_delta d;
	const int64_t *series;
	size_t nseries;
};

struct recfile_writer {
	int fd;
	struct bytes buf;   /* whole records not yet written */
	uint64_t written;   /* bytes in the file: always whole records */
	int error;	    /* the first error; from then on nothing is written */
	struct u64map *ids; /* string hash -> id */
	char **strings;	    /* by id, to tell hash collisions apart */
	size_t nstrings, strings_cap;
	struct wsite *sites; /* by id, as written */
	uint32_t nsites;
	size_t sites_cap;
	struct u64map *site_ids; /* site_key() -> id, to find ids in profile_sites() */
	struct pending *pending; /* this tick's deltas, until the TICK */
	size_t npending, pending_cap;
	struct bytes threads; /* this tick's thread deltas, encoded */
	uint64_t nthreads;
	double prev_tick; /* time of the previous TICK */
	bool meta_written;
	double last_sync;
	struct profile_delta_sink sink;
};

static double monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(struct recfile_writer *w, int err)
{
	if (!w->error)
		w->error = err;
	w->buf.len = 0;
}

/* Writes the buffer at the end of the file. A failure part-way cuts the file back to where the
 * buffer started, so that the file never ends inside a record. */
static int write_out(struct recfile_writer *w)
{
	size_t done = 0;

	if (w->error)
		return w->error;
	while (done < w->buf.len) {
		ssize_t n =
		    pwrite(w->fd, w->buf.p + done, w->buf.len - done, (off_t)(w->written + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;

			/* back to the last whole record; should that fail too, readers still
			 * stop at the cut one */
			if (done) {
				int ignored = ftruncate(w->fd, (off_t)w->written);

				(void)ignored;
			}
			fail(w, err);
			return err;
		}
		done += (size_t)n;
	}
	w->written += done;
	w->buf.len = 0;
	return 0;
}

static size_t record_begin(struct bytes *b, uint32_t type)
{
	size_t at = b->len;

	put_u32(b, type);
	put_u32(b, 0); /* the length, known at record_end */
	return at;
}

/* Completes the record begun at `at` with its length and CRC; on failure, drops it whole. */
static int record_end(struct recfile_writer *w, size_t at)
{
	struct bytes *b = &w->buf;
	size_t payload;

	if (w->error) {
		b->len = at < b->len ? at : b->len;
		return w->error;
	}
	payload = b->oom ? 0 : b->len - at - RECORD_HEAD;
	if (b->oom || payload > MAX_PAYLOAD) {
		int err = b->oom ? -ENOMEM : -EOVERFLOW;

		b->oom = false;
		b->len = at;
		write_out(w); /* the whole records before it still reach the file */
		fail(w, err);
		return err;
	}
	store_u32(b->p + at + 4, (uint32_t)payload);
	put_u32(b, (uint32_t)crc32(0, b->p + at, (uInt)(b->len - at)));
	if (b->oom) {
		b->oom = false;
		b->len = at;
		fail(w, -ENOMEM);
		return -ENOMEM;
	}
	return b->len >= FLUSH_AT ? write_out(w) : 0;
}

/* The id of string s, written as a STRING record the first time it is seen. */
static int string_id(struct recfile_writer *w, const char *s, uint64_t *id)
{
	size_t n = strnlen(s ? s : "", RECFILE_MAX_STRING);
	uint64_t h, v;
	size_t at;
	char *copy;

	if (!s)
		s = "";
	/* a 64-bit collision between two different strings moves on to the next key */
	for (h = u64map_hash_bytes(s, n, 0x5ec);; h++) {
		if (!u64map_get(w->ids, h, &v))
			break;
		if (strlen(w->strings[v]) == n && memcmp(w->strings[v], s, n) == 0) {
			*id = v;
			return 0;
		}
	}
	if (w->nstrings == w->strings_cap) {
		size_t cap = w->strings_cap ? 2 * w->strings_cap : 256;
		char **p = realloc(w->strings, cap * sizeof(*p));

		if (!p)
			goto nomem;
		w->strings = p;
		w->strings_cap = cap;
	}
	copy = strndup(s, n);
	if (!copy)
		goto nomem;
	if (u64map_put(w->ids, h, w->nstrings)) {
		free(copy);
		goto nomem;
	}
	w->strings[w->nstrings] = copy;
	*id = w->nstrings++;
	at = record_begin(&w->buf, REC_STRING);
	put_uv(&w->buf, *id);
	put_str(&w->buf, copy, n);
	return record_end(w, at);
nomem:
	fail(w, -ENOMEM);
	return -ENOMEM;
}

/* Where a site goes in site_ids: a site is its (function, file, line). */
static uint64_t site_key(const char *function, const char *file, int line)
{
	uint64_t h = u64map_hash_bytes(function, strlen(function), (uint64_t)(uint32_t)line);

	return u64map_hash_bytes(file, strlen(file), h);
}

/* The id of a site of the profile, or UINT32_MAX when it was never written. */
static uint32_t site_id(const struct recfile_writer *w, const struct profile_site *s)
{
	uint64_t id;

	for (uint64_t h = site_key(s->function, s->file, s->line);; h++) {
		if (!u64map_get(w->site_ids, h, &id))
			return UINT32_MAX;
		if (w->sites[id].line == s->line &&
		    strcmp(w->strings[w->sites[id].function], s->function) == 0 &&
		    strcmp(w->strings[w->sites[id].file], s->file) == 0)
			return (uint32_t)id;
	}
}

static int sink_site(void *ctx, uint32_t site, const struct profile_site *s)
{
	struct recfile_writer *w = ctx;
	uint64_t fn, file, h, unused;
	size_t at;

	if (w->error)
		return 0;
	/* the reader takes site ids in order only: anything else would lose every later tick */
	if (site != w->nsites) {
		fail(w, -EINVAL);
		return 0;
	}
	if (string_id(w, s->function, &fn) || string_id(w, s->file, &file))
		return 0;
	if (w->nsites == w->sites_cap) {
		size_t cap = w->sites_cap ? 2 * w->sites_cap : 256;
		struct wsite *p = realloc(w->sites, cap * sizeof(*p));

		if (!p) {
			fail(w, -ENOMEM);
			return 0;
		}
		w->sites = p;
		w->sites_cap = cap;
	}
	for (h = site_key(w->strings[fn], w->strings[file], s->line);
	     u64map_get(w->site_ids, h, &unused); h++)
		;
	if (u64map_put(w->site_ids, h, site)) {
		fail(w, -ENOMEM);
		return 0;
	}
	w->sites[site] = (struct wsite){fn, file, s->line, 0};
	at = record_begin(&w->buf, REC_SITE);
	put_uv(&w->buf, site);
	put_uv(&w->buf, fn);
	put_uv(&w->buf, file);
	put_sv(&w->buf, s->line);
	put_f64(&w->buf, s->first_seen);
	if (record_end(w, at) == 0)
		w->nsites++;
	return 0;
}

static int sink_stack(void *ctx, uint32_t site, const struct profile_frame *frames, size_t n)
{
	struct recfile_writer *w = ctx;
	uint64_t ids[2 * PMS_MAX_DEPTH];
	size_t at;

	if (w->error || n == 0 || site >= w->nsites)
		return 0;
	if (n > PMS_MAX_DEPTH)
		n = PMS_MAX_DEPTH;
	/* strings first: their records must precede the stack that uses them */
	for (size_t i = 0; i < n; i++)
		if (string_id(w, frames[i].function, &ids[2 * i]) ||
		    string_id(w, frames[i].file, &ids[2 * i + 1]))
			return 0;
	at = record_begin(&w->buf, REC_STACK);
	put_uv(&w->buf, site);
	put_uv(&w->buf, n);
	for (size_t i = 0; i < n; i++) {
		put_uv(&w->buf, ids[2 * i]);
		put_uv(&w->buf, ids[2 * i + 1]);
		put_sv(&w->buf, frames[i].line);
	}
	record_end(w, at);
	return 0;
}

static int sink_delta(void *ctx, const struct profile_delta *d)
{
	struct recfile_writer *w = ctx;

	if (w->error || d->site >= w->nsites)
		return 0;
	if (w->sites[d->site].pending) {
		/* taken twice before one tick: one delta */
		struct profile_delta *sum = &w->pending[w->sites[d->site].pending - 1].d;

		sum->grown += d->grown;
		sum->released += d->released;
		sum->samples += d->samples;
		sum->allocs += d->allocs;
		sum->frees += d->frees;
		sum->var_grown += d->var_grown;
		sum->var_live += d->var_live;
		sum->live_samples += d->live_samples;
		return 0;
	}
	if (w->npending == w->pending_cap) {
		size_t cap = w->pending_cap ? 2 * w->pending_cap : 64;
		struct pending *p = realloc(w->pending, cap * sizeof(*p));

		if (!p) {
			fail(w, -ENOMEM);
			return 0;
		}
		w->pending = p;
		w->pending_cap = cap;
	}
	w->pending[w->npending] = (struct pending){*d, NULL, 0};
	w->sites[d->site].pending = ++w->npending;
	return 0;
}

static int sink_thread(void *ctx, uint32_t tid, int64_t bytes)
{
	struct recfile_writer *w = ctx;

	if (w->error)
		return 0;
	put_uv(&w->threads, tid);
	put_sv(&w->threads, bytes);
	w->nthreads++;
	return 0;
}

void recfile_meta_init(struct recfile_meta *m)
{
	struct utsname u;
	struct timespec ts;

	memset(m, 0, sizeof(*m));
	m->coverage = 1.0;
	if (uname(&u) == 0)
		snprintf(m->host, sizeof(m->host), "%.32s, Linux %.80s", u.machine, u.release);
	clock_gettime(CLOCK_REALTIME, &ts);
	m->start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Opens path for a new recording: O_EXCL and O_NOFOLLOW, because the recorder runs as root and
 * path may be in a directory others can write to. */
static int open_new(const char *path, bool force, struct pms_error *err)
{
	const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	struct stat st;
	int fd = open(path, flags, 0600);

	if (fd < 0 && errno == EEXIST && force) {
		if (lstat(path, &st) != 0)
			return pms_error_set(err, errno, "cannot replace %s: %s", path,
					     strerror(errno));
		if (S_ISLNK(st.st_mode))
			return pms_error_set(err, EEXIST,
					     "%s is a symbolic link: refusing to replace it, even "
					     "with --force (remove it, or name another file)",
					     path);
		if (!S_ISREG(st.st_mode))
			return pms_error_set(err, EEXIST,
					     "%s exists and is not a regular file: refusing to "
					     "replace it",
					     path);
		if (unlink(path) != 0 && errno != ENOENT)
			return pms_error_set(err, errno, "cannot replace %s: %s", path,
					     strerror(errno));
		/* whoever recreates the name in between makes this fail: never follow them */
		fd = open(path, flags, 0600);
	}
	if (fd < 0 && errno == EEXIST)
		return pms_error_set(err, EEXIST,
				     "%s already exists: pass --force to replace it, or name "
				     "another file",
				     path);
	if (fd < 0)
		return pms_error_set(err, errno, "cannot create %s: %s", path, strerror(errno));
	return fd;
}

int recfile_create(const char *path, bool force, struct recfile_writer **out, struct pms_error *err)
{
	struct recfile_writer *w;
	int ret;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return pms_error_set(err, ENOMEM, "out of memory creating %s", path);
	w->fd = -1;
	w->ids = u64map_new(1024);
	w->site_ids = u64map_new(1024);
	if (!w->ids || !w->site_ids) {
		ret = pms_error_set(err, ENOMEM, "out of memory creating %s", path);
		goto fail;
	}
	ret = open_new(path, force, err);
	if (ret < 0)
		goto fail;
	w->fd = ret;
	w->sink = (struct profile_delta_sink){
	    .site = sink_site,
	    .stack = sink_stack,
	    .delta = sink_delta,
	    .thread = sink_thread,
	    .ctx = w,
	};
	w->last_sync = monotonic_seconds();
	put(&w->buf, RECFILE_MAGIC, 8);
	put_u32(&w->buf, RECFILE_VERSION);
	put_u32(&w->buf, 0); /* flags */
	if (w->buf.oom) {
		ret = pms_error_set(err, ENOMEM, "out of memory creating %s", path);
		goto fail;
	}
	*out = w;
	return 0;
fail:
	if (w->fd >= 0) {
		close(w->fd);
		unlink(path);
	}
	u64map_free(w->ids);
	u64map_free(w->site_ids);
	free(w->buf.p);
	free(w);
	return ret;
}

int recfile_write_meta(struct recfile_writer *w, const struct recfile_meta *m)
{
	size_t at;
	int ret;

	if (w->error)
		return w->error;
	if (w->meta_written)
		return -EINVAL;
	at = record_begin(&w->buf, REC_META);
	put_u32(&w->buf, (uint32_t)m->pid);
	put_str(&w->buf, m->comm, sizeof(m->comm));
	put_str(&w->buf, m->python_version, sizeof(m->python_version));
	put_str(&w->buf, m->python_build, sizeof(m->python_build));
	put_str(&w->buf, m->events, sizeof(m->events));
	put_str(&w->buf, m->host, sizeof(m->host));
	put_f64(&w->buf, m->start_time);
	put_u64(&w->buf, m->rss_start);
	put_u32(&w->buf, m->budget_per_sec);
	put_u32(&w->buf, m->max_depth);
	/* added with the allocator sources, at the end: earlier readers stop at max_depth */
	put_u64(&w->buf, m->rate);
	put_str(&w->buf, m->allocator, sizeof(m->allocator));
	put_f64(&w->buf, m->coverage);
	ret = record_end(w, at);
	if (ret)
		return ret;
	w->meta_written = true;
	return write_out(w);
}

const struct profile_delta_sink *recfile_sink(struct recfile_writer *w)
{
	return &w->sink;
}

static bool has_alloc(const struct profile_delta *d)
{
	return d->allocs != 0 || d->frees != 0 || d->var_grown != 0 || d->var_live != 0 ||
	       d->live_samples != 0;
}

/* The TICK record. bucket_seconds and nbuckets describe the series of the pending deltas (0
 * when they have none): each delta carries its site's buckets from the one that holds one
 * second before the previous tick, as they are now, so that the reader rebuilds the series
 * exactly (events are delivered in well under a second). */
static int write_tick(struct recfile_writer *w, double at, uint64_t rss,
		      const uint64_t counters[PMS_CNT_MAX], const struct profile_totals *totals,
		      double bucket_seconds, uint64_t nbuckets)
{
	size_t start, lo = 0, nalloc = 0;

	if (!w->error && w->threads.oom)
		fail(w, -ENOMEM);
	if (w->error)
		goto out;
	if (bucket_seconds > 0 && w->prev_tick > 1.0)
		lo = (size_t)((w->prev_tick - 1.0) / bucket_seconds);
	start = record_begin(&w->buf, REC_TICK);
	put_f64(&w->buf, at);
	put_uv(&w->buf, rss);
	put_uv(&w->buf, PMS_CNT_MAX);
	for (int i = 0; i < PMS_CNT_MAX; i++)
		put_uv(&w->buf, counters[i]);
	put_uv(&w->buf, TOTALS_FIELDS);
	put_sv(&w->buf, totals->grown);
	put_sv(&w->buf, totals->released);
	put_sv(&w->buf, totals->shrunk);
	put_uv(&w->buf, totals->events);
	put_uv(&w->buf, totals->stacks_lost);
	put_uv(&w->buf, totals->pages_untracked);
	put_uv(&w->buf, totals->allocs_untracked);
	put_f64(&w->buf, bucket_seconds);
	put_uv(&w->buf, nbuckets);
	put_uv(&w->buf, w->npending);
	for (size_t i = 0; i < w->npending; i++) {
		const struct pending *p = &w->pending[i];
		size_t n = p->series && p->nseries > lo ? p->nseries - lo : 0;

		put_uv(&w->buf, p->d.site);
		put_sv(&w->buf, p->d.grown);
		put_sv(&w->buf, p->d.released);
		put_uv(&w->buf, p->d.samples);
		put_uv(&w->buf, n ? lo : 0);
		put_uv(&w->buf, n);
		for (size_t b = lo; n && b < p->nseries; b++)
			put_sv(&w->buf, p->series[b]);
	}
	put_uv(&w->buf, w->nthreads);
	put(&w->buf, w->threads.p, w->threads.len);
	/* allocator sources: at the end of the payload, where readers of growth-only files stop
	 * reading; absent when no delta has any */
	for (size_t i = 0; i < w->npending; i++)
		nalloc += has_alloc(&w->pending[i].d);
	if (nalloc)
		put_uv(&w->buf, nalloc);
	for (size_t i = 0; nalloc && i < w->npending; i++) {
		const struct profile_delta *d = &w->pending[i].d;

		if (!has_alloc(d))
			continue;
		put_uv(&w->buf, d->site);
		put_f64(&w->buf, d->allocs);
		put_f64(&w->buf, d->frees);
		put_f64(&w->buf, d->var_grown);
		put_f64(&w->buf, d->var_live);
		put_sv(&w->buf, d->live_samples);
	}
	if (record_end(w, start) == 0)
		w->prev_tick = at;
out:
	for (size_t i = 0; i < w->npending; i++)
		w->sites[w->pending[i].d.site].pending = 0;
	w->npending = 0;
	w->threads.len = 0;
	w->threads.oom = false;
	w->nthreads = 0;
	return w->error;
}

int recfile_write_tick(struct recfile_writer *w, double at, uint64_t rss,
		       const uint64_t counters[PMS_CNT_MAX], const struct profile_totals *totals)
{
	return write_tick(w, at, rss, counters, totals, 0, 0);
}

int recfile_tick(struct recfile_writer *w, struct profile *p, double at, uint64_t rss,
		 const uint64_t counters[PMS_CNT_MAX])
{
	const struct profile_site *const *sites;
	uint64_t nbuckets = 0;
	size_t n;
	int ret;

	if (w->error)
		return w->error;
	ret = profile_take_deltas(p, &w->sink);
	if (ret) {
		/* deltas the profile counted as taken are missing: the file would lie from here */
		fail(w, ret);
		return ret;
	}
	if (w->npending) {
		sites = profile_sites(p, &n);
		if (!sites && n) {
			fail(w, -ENOMEM);
			return -ENOMEM;
		}
		for (size_t i = 0; i < n; i++) {
			uint32_t id = site_id(w, sites[i]);

			if (sites[i]->nseries > nbuckets)
				nbuckets = sites[i]->nseries;
			if (id != UINT32_MAX && w->sites[id].pending) {
				struct pending *pd = &w->pending[w->sites[id].pending - 1];

				pd->series = sites[i]->series;
				pd->nseries = sites[i]->nseries;
			}
		}
	}
	return write_tick(w, at, rss, counters, profile_totals(p),
			  nbuckets ? profile_bucket_seconds(p) : 0, nbuckets);
}

/* The stacks with the most net bytes, one WHOLE_STACK record each (allocator sources only: a
 * growth report has no per-stack section). */
static int write_whole_stacks(struct recfile_writer *w, struct profile *p)
{
	struct profile_stack st[RECFILE_WHOLE_STACKS];
	uint64_t ids[2 * PMS_MAX_DEPTH];
	size_t n = profile_stacks(p, st, RECFILE_WHOLE_STACKS), at;

	for (size_t i = 0; i < n && !w->error; i++) {
		size_t nf = st[i].nframes > PMS_MAX_DEPTH ? PMS_MAX_DEPTH : st[i].nframes;

		if (!nf || (!st[i].grown && !st[i].released))
			continue;
		/* strings first: their records must precede the stack that uses them */
		for (size_t f = 0; f < nf; f++)
			if (string_id(w, st[i].frames[f].function, &ids[2 * f]) ||
			    string_id(w, st[i].frames[f].file, &ids[2 * f + 1]))
				return w->error ? w->error : -ENOMEM;
		at = record_begin(&w->buf, REC_WHOLE_STACK);
		put_sv(&w->buf, st[i].grown);
		put_sv(&w->buf, st[i].released);
		put_uv(&w->buf, st[i].samples);
		put_uv(&w->buf, nf);
		for (size_t f = 0; f < nf; f++) {
			put_uv(&w->buf, ids[2 * f]);
			put_uv(&w->buf, ids[2 * f + 1]);
			put_sv(&w->buf, st[i].frames[f].line);
		}
		record_end(w, at);
	}
	return w->error;
}

int recfile_write_oldest(struct recfile_writer *w, struct profile *p)
{
	const struct profile_site *const *sites;
	struct profile_live live[RECFILE_OLDEST_PER_SITE];
	struct bytes body = {0};
	size_t n, at, nsites = 0;

	if (w->error)
		return w->error;
	sites = profile_sites(p, &n);
	if (!sites && n) {
		fail(w, -ENOMEM);
		return -ENOMEM;
	}
	/* sorted by net bytes: the first sites with live samples are the ones a report shows */
	for (size_t i = 0; i < n && nsites < RECFILE_OLDEST_SITES; i++) {
		uint32_t id;
		size_t k, n_live;

		if (!sites[i]->live_samples || (id = site_id(w, sites[i])) == UINT32_MAX)
			continue;
		n_live = profile_oldest_live(p, sites[i], live, RECFILE_OLDEST_PER_SITE);
		/* no size a reader would take for damage (none is real) */
		k = 0;
		for (size_t j = 0; j < n_live; j++)
			if (live[j].size <= (uint64_t)READ_MAX_VALUE)
				live[k++] = live[j];
		if (!k)
			continue;
		put_uv(&body, id);
		put_uv(&body, k);
		for (size_t j = 0; j < k; j++) {
			put_f64(&body, fmin(fmax(live[j].at, 0), READ_MAX_TIME));
			put_uv(&body, live[j].size);
			put_uv(&body, live[j].addr);
			put_uv(&body, live[j].tid);
		}
		nsites++;
	}
	if (body.oom) {
		free(body.p);
		fail(w, -ENOMEM);
		return -ENOMEM;
	}
	if (nsites) {
		at = record_begin(&w->buf, REC_OLDEST);
		put_uv(&w->buf, nsites);
		put(&w->buf, body.p, body.len);
		if (record_end(w, at)) {
			free(body.p);
			return w->error;
		}
	}
	free(body.p);
	return write_whole_stacks(w, p);
}

int recfile_write_end(struct recfile_writer *w, const struct recfile_end *e)
{
	size_t at;

	if (w->error)
		return w->error;
	at = record_begin(&w->buf, REC_END);
	put_f64(&w->buf, e->duration);
	put_str(&w->buf, e->ended_by, sizeof(e->ended_by));
	put_u64(&w->buf, e->rss_end);
	put_f64(&w->buf, e->profiler_cpu);
	put_u64(&w->buf, e->profiler_max_rss);
	put_u64(&w->buf, e->bpf_map_bytes);
	put_u64(&w->buf, e->profile_bytes);
	return record_end(w, at);
}

int recfile_flush(struct recfile_writer *w)
{
	double now;

	if (write_out(w))
		return w->error;
	now = monotonic_seconds();
	/* write(2) already survives a SIGKILL of ours; fdatasync is for the machine going down */
	if (now - w->last_sync >= SYNC_SECONDS) {
		w->last_sync = now;
		if (fdatasync(w->fd) != 0 && errno != EINVAL && errno != EROFS) {
			fail(w, -errno);
			return w->error;
		}
	}
	return 0;
}

int recfile_error(const struct recfile_writer *w)
{
	return w->error;
}

uint64_t recfile_size(const struct recfile_writer *w)
{
	return w->written + w->buf.len;
}

int recfile_close(struct recfile_writer *w)
{
	int ret;

	if (!w)
		return 0;
	if (write_out(w) == 0 && fdatasync(w->fd) != 0 && errno != EINVAL && errno != EROFS)
		fail(w, -errno);
	if (close(w->fd) != 0 && errno != EINTR)
		fail(w, -errno);
	ret = w->error;
	for (size_t i = 0; i < w->nstrings; i++)
		free(w->strings[i]);
	free(w->strings);
	u64map_free(w->ids);
	u64map_free(w->site_ids);
	free(w->sites);
	free(w->pending);
	free(w->buf.p);
	free(w->threads.p);
	free(w);
	return ret;
}

/* ---- Reader ---- */

struct rframe {
	uint32_t function, file; /* string ids */
	int32_t line;
};

struct rsite {
	struct rframe *frames; /* the latest STACK of the site */
	size_t nframes;
	uint64_t tick;	     /* the last tick that had a delta for it */
	uint64_t alloc_tick; /* the last tick whose allocator figures named it */
	/* those figures (allocs...live_samples), checked, until the tick applies them */
	struct profile_delta alloc;
	int64_t live_samples; /* the sum of its live_samples so far */
	bool has_oldest;      /* an OLDEST record named it */
};

struct reader {
	struct recfile_contents *out;
	char **strings;
	size_t nstrings, strings_cap;
	struct rsite *sites;
	size_t nsites, sites_cap;
	size_t whole_stacks; /* WHOLE_STACK records read */
	bool have_meta;
	double prev_tick;
	uint64_t ticks;
	struct profile_totals totals;
	/* what the rebuilt series hold, (site << 32 | bucket) -> bytes, at mirror_bs seconds a
	 * bucket: TICKs carry a site's recent buckets as they are, the profile takes changes */
	struct u64map *mirror;
	double mirror_bs;
	/* sums of |bytes| of everything applied so far: keeping them under 2^61 keeps every
	 * per-site, per-bucket and per-thread sum the profile makes inside int64_t */
	int64_t site_bytes, thread_bytes;
};

/* Invalid content: stop reading here. */
#define BAD (-PMS_EBADFILE)

static int read_meta(struct reader *r, struct cursor *c)
{
	struct recfile_meta *m = &r->out->meta;

	if (r->have_meta)
		return BAD;
	m->pid = (int32_t)get_u32(c);
	get_str(c, m->comm, sizeof(m->comm));
	get_str(c, m->python_version, sizeof(m->python_version));
	get_str(c, m->python_build, sizeof(m->python_build));
	get_str(c, m->events, sizeof(m->events));
	get_str(c, m->host, sizeof(m->host));
	m->start_time = get_f64(c);
	m->rss_start = get_u64(c);
	m->budget_per_sec = get_u32(c);
	m->max_depth = get_u32(c);
	/* the allocator fields were appended: a file written before them ends here */
	m->coverage = 1.0;
	if (!c->bad && c->pos < c->len) {
		m->rate = get_u64(c);
		get_str(c, m->allocator, sizeof(m->allocator));
		m->coverage = get_f64(c);
	}
	if (c->bad || !isfinite(m->start_time) || m->rss_start > (uint64_t)READ_MAX_VALUE ||
	    m->rate > (uint64_t)READ_MAX_VALUE || !isfinite(m->coverage))
		return BAD;
	r->have_meta = true;
	return 0;
}

static int read_string(struct reader *r, struct cursor *c)
{
	uint64_t id = get_uv(c);
	uint16_t n = get_u16(c);
	const uint8_t *s = take(c, n);
	char *copy;

	if (c->bad || id != r->nstrings)
		return BAD;
	if (r->nstrings == r->strings_cap) {
		size_t cap = r->strings_cap ? 2 * r->strings_cap : 256;
		char **p = realloc(r->strings, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->strings = p;
		r->strings_cap = cap;
	}
	copy = malloc((size_t)n + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, s, n);
	copy[n] = '\0';
	r->strings[r->nstrings++] = copy;
	return 0;
}

static bool line_ok(int64_t line)
{
	return line >= INT32_MIN && line <= INT32_MAX;
}

static int read_site(struct reader *r, struct cursor *c)
{
	uint64_t id = get_uv(c), fn = get_uv(c), file = get_uv(c);
	int64_t line = get_sv(c);
	double first_seen = get_f64(c);
	int ret;

	if (c->bad || id != r->nsites || id >= READ_MAX_SITES || fn >= r->nstrings ||
	    file >= r->nstrings || !line_ok(line) || !time_ok(first_seen))
		return BAD;
	if (r->nsites == r->sites_cap) {
		size_t cap = r->sites_cap ? 2 * r->sites_cap : 64;
		struct rsite *p = realloc(r->sites, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->sites = p;
		r->sites_cap = cap;
	}
	ret = profile_define_site(r->out->profile, (uint32_t)id, r->strings[fn], r->strings[file],
				  (int)line, first_seen);
	if (ret == -EINVAL)
		return BAD; /* the same (function, file, line) twice */
	if (ret)
		return ret;
	memset(&r->sites[r->nsites++], 0, sizeof(*r->sites));
	return 0;
}

static int read_stack(struct reader *r, struct cursor *c)
{
	uint64_t site = get_uv(c), n = get_uv(c);
	struct rframe *frames;

	if (c->bad || site >= r->nsites || n == 0 || n > PMS_MAX_DEPTH)
		return BAD;
	frames = calloc(n, sizeof(*frames));
	if (!frames)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint64_t fn = get_uv(c), file = get_uv(c);
		int64_t line = get_sv(c);

		if (c->bad || fn >= r->nstrings || file >= r->nstrings || !line_ok(line)) {
			free(frames);
			return BAD;
		}
		frames[i] = (struct rframe){(uint32_t)fn, (uint32_t)file, (int32_t)line};
	}
	/* only the latest stack counts: the profile gets it once, at the end */
	free(r->sites[site].frames);
	r->sites[site].frames = frames;
	r->sites[site].nframes = n;
	return 0;
}

static bool add_abs(int64_t *sum, int64_t v)
{
	if (v < -READ_MAX_BYTES || v > READ_MAX_BYTES)
		return false;
	*sum += v < 0 ? -v : v;
	return *sum <= READ_MAX_BYTES;
}

static uint64_t mirror_key(uint32_t site, uint64_t bucket)
{
	return (uint64_t)site << 32 | bucket;
}

static int64_t mirror_get(const struct reader *r, uint32_t site, uint64_t bucket)
{
	uint64_t v = 0;
	int64_t out;

	if (r->mirror)
		u64map_get(r->mirror, mirror_key(site, bucket), &v);
	memcpy(&out, &v, sizeof(out));
	return out;
}

static int mirror_add(struct reader *r, uint32_t site, uint64_t bucket, int64_t bytes)
{
	uint64_t v;
	int64_t sum;

	if (!bytes)
		return 0;
	if (!r->mirror && !(r->mirror = u64map_new(1024)))
		return -ENOMEM;
	sum = mirror_get(r, site, bucket) + bytes;
	memcpy(&v, &sum, sizeof(v));
	return u64map_put(r->mirror, mirror_key(site, bucket), v);
}

struct widen_ctx {
	struct u64map *to;
	int err;
};

static void widen_entry(uint64_t key, uint64_t value, void *vctx)
{
	struct widen_ctx *ctx = vctx;
	uint64_t k = (key & ~(uint64_t)UINT32_MAX) | (key & UINT32_MAX) / 2, old = 0;

	/* unsigned sums of two's complement values: the same bits as the signed sums */
	u64map_get(ctx->to, k, &old);
	if (u64map_put(ctx->to, k, old + value))
		ctx->err = -ENOMEM;
}

/* Brings the mirror to bs seconds a bucket, merging pairs as the profile does when it widens.
 * BAD unless bs is a power of two, and not below the mirror's. */
static int mirror_widen(struct reader *r, double bs)
{
	int exp;

	if (bs == 0)
		return 0;
	if (!isfinite(bs) || frexp(bs, &exp) != 0.5 || exp < -10 || exp > 31 || bs < r->mirror_bs)
		return BAD;
	if (r->mirror_bs == 0)
		r->mirror_bs = bs;
	while (r->mirror_bs < bs) {
		struct widen_ctx ctx = {u64map_new(r->mirror ? u64map_count(r->mirror) : 0), 0};

		if (!ctx.to)
			return -ENOMEM;
		if (r->mirror)
			u64map_each(r->mirror, widen_entry, &ctx);
		if (ctx.err) {
			u64map_free(ctx.to);
			return ctx.err;
		}
		u64map_free(r->mirror);
		r->mirror = ctx.to;
		r->mirror_bs *= 2;
	}
	return 0;
}

struct tick_head {
	double at, mid; /* the tick's time, the middle of the interval it covers */
	double bs;	/* seconds a bucket of the series below (0: none) */
	uint64_t nb;	/* buckets in the live profile's series */
};

static bool estimate_ok(double v)
{
	return isfinite(v) && fabs(v) <= READ_MAX_ESTIMATE;
}

/* The allocator figures at the end of a tick (absent from growth recordings and older files):
 * checked and kept with their sites, for the deltas to take when the tick is applied. */
static int tick_allocs(struct reader *r, struct cursor *c)
{
	uint64_t n;

	if (c->pos == c->len)
		return 0;
	n = get_uv(c);
	if (c->bad || n > c->len)
		return BAD;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t site = get_uv(c);
		struct profile_delta a = {.site = (uint32_t)site};
		struct rsite *rs;

		a.allocs = get_f64(c);
		a.frees = get_f64(c);
		a.var_grown = get_f64(c);
		a.var_live = get_f64(c);
		a.live_samples = get_sv(c);
		/* only sites with a delta in this tick, once each */
		if (c->bad || site >= r->nsites)
			return BAD;
		rs = &r->sites[site];
		if (rs->tick != r->ticks || rs->alloc_tick == r->ticks || !estimate_ok(a.allocs) ||
		    !estimate_ok(a.frees) || !estimate_ok(a.var_grown) ||
		    !estimate_ok(a.var_live) || a.live_samples < -READ_MAX_LIVE ||
		    a.live_samples > READ_MAX_LIVE || rs->live_samples + a.live_samples < 0 ||
		    rs->live_samples + a.live_samples > READ_MAX_LIVE)
			return BAD;
		rs->alloc_tick = r->ticks;
		rs->alloc = a;
	}
	return 0;
}

/* The deltas and threads of a tick: checked whole first (apply false), then applied, so that a
 * damaged tick changes nothing. A delta's series buckets are the site's as they are now: what
 * the mirror lacks is the change, and what the buckets do not account for of the delta's net
 * bytes (changes older than the buckets sent) goes with the last of them. */
static int tick_changes(struct reader *r, struct cursor c, const struct tick_head *h, bool apply)
{
	int64_t site_bytes = r->site_bytes, thread_bytes = r->thread_bytes;
	uint64_t n = get_uv(&c);
	int ret;

	if (n > c.len)
		return BAD;
	for (uint64_t i = 0; i < n; i++) {
		struct profile_delta d = {0};
		uint64_t site = get_uv(&c), lo, cnt;
		int64_t parts = 0, rest;
		struct cursor values;
		double t;

		d.grown = get_sv(&c);
		d.released = get_sv(&c);
		d.samples = get_uv(&c);
		lo = get_uv(&c);
		cnt = get_uv(&c);
		if (c.bad || site >= r->nsites || !add_abs(&site_bytes, d.grown) ||
		    !add_abs(&site_bytes, d.released) || lo > h->nb || cnt > h->nb - lo ||
		    (cnt && h->bs == 0))
			return BAD;
		d.site = (uint32_t)site;
		/* a site twice in a tick would be checked against a mirror it changes */
		if (!apply && r->sites[site].tick == r->ticks)
			return BAD;
		r->sites[site].tick = r->ticks;
		values = c;
		for (uint64_t j = 0; j < cnt; j++) {
			int64_t v = get_sv(&c), change;

			if (c.bad || v < -READ_MAX_VALUE || v > READ_MAX_VALUE)
				return BAD;
			change = v - mirror_get(r, d.site, lo + j);
			if (!add_abs(&site_bytes, change))
				return BAD;
			parts += change;
		}
		rest = d.grown - d.released - parts;
		if (!add_abs(&site_bytes, rest))
			return BAD;
		if (!apply)
			continue;
		t = cnt ? ((double)(lo + cnt) - 0.5) * h->bs : h->mid;
		d.grown -= parts;
		if (r->sites[site].alloc_tick == r->ticks) {
			const struct profile_delta *a = &r->sites[site].alloc;

			d.allocs = a->allocs;
			d.frees = a->frees;
			d.var_grown = a->var_grown;
			d.var_live = a->var_live;
			d.live_samples = a->live_samples;
			r->sites[site].live_samples += a->live_samples;
		}
		ret = profile_add_delta(r->out->profile, &d, t);
		if (!ret && r->mirror_bs > 0)
			ret = mirror_add(r, d.site, (uint64_t)fmin(t / r->mirror_bs, UINT32_MAX),
					 rest);
		for (uint64_t j = 0; !ret && j < cnt; j++) {
			struct profile_delta part = {.site = d.site};

			part.grown = get_sv(&values) - mirror_get(r, d.site, lo + j);
			if (!part.grown)
				continue;
			ret = profile_add_delta(r->out->profile, &part,
						((double)(lo + j) + 0.5) * h->bs);
			if (!ret)
				ret = mirror_add(r, d.site, lo + j, part.grown);
		}
		if (ret)
			return ret;
	}
	n = get_uv(&c);
	if (n > c.len)
		return BAD;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t tid = get_uv(&c);
		int64_t bytes = get_sv(&c);

		if (c.bad || tid > UINT32_MAX || !add_abs(&thread_bytes, bytes))
			return BAD;
		if (apply && (ret = profile_add_thread(r->out->profile, (uint32_t)tid, bytes)))
			return ret;
	}
	if (!apply && (ret = tick_allocs(r, &c)))
		return ret;
	if (apply) {
		r->site_bytes = site_bytes;
		r->thread_bytes = thread_bytes;
	}
	return 0;
}

static int read_tick(struct reader *r, struct cursor *c)
{
	uint64_t counters[PMS_CNT_MAX] = {0}, raw[TOTALS_FIELDS] = {0}, n, rss;
	int64_t t[TOTALS_FIELDS];
	struct tick_head h;
	int ret;

	h.at = get_f64(c);
	rss = get_uv(c);
	n = get_uv(c);
	/* counters and totals this reader does not know (added later) are skipped */
	for (uint64_t i = 0; i < n && !c->bad; i++) {
		uint64_t v = get_uv(c);

		if (i < PMS_CNT_MAX)
			counters[i] = v;
	}
	n = get_uv(c);
	for (uint64_t i = 0; i < n && !c->bad; i++) {
		uint64_t v = get_uv(c);

		if (i < TOTALS_FIELDS)
			raw[i] = v;
	}
	h.bs = get_f64(c);
	h.nb = get_uv(c);
	if (c->bad || !time_ok(h.at) || h.at < r->prev_tick || rss > (uint64_t)READ_MAX_VALUE ||
	    h.nb > READ_MAX_BUCKETS || (h.nb && (h.bs == 0 || !time_ok(h.nb * h.bs))))
		return BAD;
	/* grown, released and shrunk are zigzag-signed; the other totals are counts */
	for (int i = 0; i < TOTALS_FIELDS; i++) {
		if (i < 3)
			t[i] = (raw[i] & 1) ? -(int64_t)(raw[i] >> 1) - 1 : (int64_t)(raw[i] >> 1);
		else
			t[i] = raw[i] > (uint64_t)READ_MAX_VALUE ? -1 : (int64_t)raw[i];
		if (t[i] < -READ_MAX_VALUE || t[i] > READ_MAX_VALUE || (i >= 3 && t[i] < 0))
			return BAD;
	}
	ret = mirror_widen(r, h.bs);
	if (ret)
		return ret;
	/* deltas without buckets happened between the previous tick and this one */
	h.mid = (r->prev_tick + h.at) / 2;
	r->ticks++;
	ret = tick_changes(r, *c, &h, false);
	if (ret)
		return ret;
	/* the live series spanned nb buckets: so do ours, even where the last ones hold zero */
	if (h.nb && r->nsites) {
		struct profile_delta none = {.site = 0};

		ret = profile_add_delta(r->out->profile, &none, ((double)h.nb - 0.5) * h.bs);
		if (ret)
			return ret;
	}
	ret = tick_changes(r, *c, &h, true);
	if (ret)
		return ret;
	r->prev_tick = h.at;
	r->out->last_tick = h.at;
	r->out->rss_last = rss;
	memcpy(r->out->counters, counters, sizeof(counters));
	r->totals = (struct profile_totals){
	    .grown = t[0],
	    .released = t[1],
	    .shrunk = t[2],
	    .events = (uint64_t)t[3],
	    .stacks_lost = (uint64_t)t[4],
	    .pages_untracked = (uint64_t)t[5],
	    .allocs_untracked = (uint64_t)t[6],
	};
	return 0;
}

/* The sites' oldest live allocations: checked whole first (apply false), then applied. */
static int oldest_entries(struct reader *r, struct cursor c, bool apply)
{
	uint64_t n = get_uv(&c);
	int ret;

	if (c.bad || n > c.len)
		return BAD;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t site = get_uv(&c), k = get_uv(&c);

		if (c.bad || site >= r->nsites || k == 0 || k > READ_MAX_OLDEST)
			return BAD;
		/* a site once in a file: the profile keeps every one it is given */
		if (!apply && r->sites[site].has_oldest)
			return BAD;
		r->sites[site].has_oldest = true;
		for (uint64_t j = 0; j < k; j++) {
			struct profile_live l;
			uint64_t tid;

			l.at = get_f64(&c);
			l.size = get_uv(&c);
			l.addr = get_uv(&c);
			tid = get_uv(&c);
			if (c.bad || !time_ok(l.at) || l.size > (uint64_t)READ_MAX_VALUE ||
			    tid > UINT32_MAX)
				return BAD;
			l.tid = (uint32_t)tid;
			if (apply && (ret = profile_add_live(r->out->profile, (uint32_t)site, &l)))
				return ret;
		}
		if (apply)
			r->out->oldest_sites++;
	}
	return 0;
}

static int read_oldest(struct reader *r, struct cursor *c)
{
	int ret = oldest_entries(r, *c, false);

	return ret ? ret : oldest_entries(r, *c, true);
}

static int read_whole_stack(struct reader *r, struct cursor *c)
{
	struct profile_frame frames[PMS_MAX_DEPTH];
	int64_t grown = get_sv(c), released = get_sv(c);
	uint64_t samples = get_uv(c), n = get_uv(c);

	/* the writer makes at most RECFILE_WHOLE_STACKS of them: more is damage, not a reason to
	 * allocate without bound */
	if (++r->whole_stacks > RECFILE_WHOLE_STACKS)
		return BAD;
	if (c->bad || n == 0 || n > PMS_MAX_DEPTH || grown < -READ_MAX_BYTES ||
	    grown > READ_MAX_BYTES || released < -READ_MAX_BYTES || released > READ_MAX_BYTES ||
	    samples > (uint64_t)READ_MAX_VALUE)
		return BAD;
	for (size_t i = 0; i < n; i++) {
		uint64_t fn = get_uv(c), file = get_uv(c);
		int64_t line = get_sv(c);

		if (c->bad || fn >= r->nstrings || file >= r->nstrings || !line_ok(line))
			return BAD;
		frames[i] = (struct profile_frame){r->strings[fn], r->strings[file], (int)line};
	}
	return profile_add_stack(r->out->profile, frames, n, grown, released, samples);
}

static int read_end(struct reader *r, struct cursor *c)
{
	struct recfile_end *e = &r->out->end;

	e->duration = get_f64(c);
	get_str(c, e->ended_by, sizeof(e->ended_by));
	e->rss_end = get_u64(c);
	e->profiler_cpu = get_f64(c);
	e->profiler_max_rss = get_u64(c);
	e->bpf_map_bytes = get_u64(c);
	e->profile_bytes = get_u64(c);
	if (c->bad || !time_ok(e->duration) || !time_ok(e->profiler_cpu) ||
	    e->rss_end > (uint64_t)READ_MAX_VALUE) {
		memset(e, 0, sizeof(*e));
		return BAD;
	}
	r->out->has_end = true;
	return 0;
}

static int read_record(struct reader *r, uint32_t type, struct cursor *c)
{
	if (!r->have_meta && type >= REC_STRING && type <= REC_WHOLE_STACK)
		return BAD; /* everything a reader knows comes after the metadata */
	switch (type) {
	case REC_META:
		return read_meta(r, c);
	case REC_STRING:
		return read_string(r, c);
	case REC_SITE:
		return read_site(r, c);
	case REC_STACK:
		return read_stack(r, c);
	case REC_TICK:
		return read_tick(r, c);
	case REC_END:
		return read_end(r, c);
	case REC_WHOLE_STACK:
		return read_whole_stack(r, c);
	case REC_OLDEST:
		return read_oldest(r, c);
	default:
		return 0; /* a record type from a later version: skipped */
	}
}

/* Gives every site its latest stack. */
static int apply_stacks(struct reader *r)
{
	struct profile_frame frames[PMS_MAX_DEPTH];
	int ret;

	for (size_t s = 0; s < r->nsites; s++) {
		const struct rsite *rs = &r->sites[s];

		if (!rs->nframes)
			continue;
		for (size_t i = 0; i < rs->nframes; i++)
			frames[i] = (struct profile_frame){r->strings[rs->frames[i].function],
							   r->strings[rs->frames[i].file],
							   rs->frames[i].line};
		ret = profile_set_stack(r->out->profile, (uint32_t)s, frames, rs->nframes);
		if (ret)
			return ret;
	}
	return 0;
}

/* The CRC that follows n bytes at p matches them. Fuzzing builds skip the check (the libFuzzer
 * convention), so that mutated inputs reach the payload parsers instead of failing here. */
static bool crc_ok(const uint8_t *p, size_t n)
{
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	(void)p;
	(void)n;
	return true;
#else
	return crc32(0, p, (uInt)n) == load_u32(p + n);
#endif
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int recfile_read_buffer(const uint8_t *data, size_t len, struct recfile_contents *out,
			struct pms_error *err)
{
	struct reader r = {.out = out};
	size_t pos = HEADER_BYTES;
	uint32_t version;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return pms_error_set(err, PMS_EBADFILE, "the file is empty: nothing was recorded");
	if (len < 8 || memcmp(data, RECFILE_MAGIC, 8) != 0)
		return pms_error_set(err, PMS_EBADFILE,
				     "not a pymemspy recording (it does not start with %s)",
				     RECFILE_MAGIC);
	if (len < HEADER_BYTES)
		return pms_error_set(err, PMS_EBADFILE,
				     "the file ends inside its header: nothing was recorded");
	version = load_u32(data + 8);
	if (version != RECFILE_VERSION)
		return pms_error_set(err, PMS_EBADFILE,
				     "a recording in format version %u; this pymemspy reads "
				     "version %d (use the pymemspy that recorded it)",
				     version, RECFILE_VERSION);
	out->profile = profile_new(NULL);
	if (!out->profile) {
		ret = pms_error_set(err, ENOMEM, "out of memory reading the recording");
		goto fail;
	}
	out->valid_bytes = pos;
	while (pos < len && !out->has_end) {
		size_t left = len - pos;
		uint32_t type, plen;
		struct cursor c;

		if (left < RECORD_HEAD + RECORD_CRC) {
			out->truncated = true;
			break;
		}
		type = load_u32(data + pos);
		plen = load_u32(data + pos + 4);
		if (plen > MAX_PAYLOAD) {
			out->truncated = out->corrupt = true;
			break;
		}
		if (left < RECORD_HEAD + (size_t)plen + RECORD_CRC) {
			out->truncated = true;
			break;
		}
		if (!crc_ok(data + pos, RECORD_HEAD + plen)) {
			/* damage, unless zeros run from the CRC to the end: a crash after the
			 * file grew but before its last blocks reached the disk */
			out->truncated = true;
			out->corrupt =
			    !all_zero(data + pos + RECORD_HEAD + plen, left - RECORD_HEAD - plen);
			break;
		}
		c = (struct cursor){data + pos + RECORD_HEAD, plen, 0, false};
		ret = read_record(&r, type, &c);
		if (ret == BAD) {
			ret = 0;
			out->truncated = out->corrupt = true;
			break;
		}
		if (ret) {
			pms_error_set(err, ret, "reading the recording: %s", strerror(-ret));
			goto fail;
		}
		pos += RECORD_HEAD + (size_t)plen + RECORD_CRC;
		out->valid_bytes = pos;
	}
	if (!r.have_meta) {
		ret = pms_error_set(err, PMS_EBADFILE,
				    "the recording holds no whole metadata record: it was cut or "
				    "damaged before anything was recorded");
		goto fail;
	}
	ret = apply_stacks(&r);
	if (ret) {
		pms_error_set(err, ret, "reading the recording: %s", strerror(-ret));
		goto fail;
	}
	profile_set_totals(out->profile, &r.totals);
	goto done;
fail:
	profile_free(out->profile);
	out->profile = NULL;
done:
	for (size_t i = 0; i < r.nstrings; i++)
		free(r.strings[i]);
	free(r.strings);
	for (size_t i = 0; i < r.nsites; i++)
		free(r.sites[i].frames);
	free(r.sites);
	u64map_free(r.mirror);
	return ret;
}

int recfile_read(const char *path, struct recfile_contents *out, struct pms_error *err)
{
	struct pms_error inner = {{0}};
	uint8_t *data = NULL;
	size_t len = 0, cap = 0;
	struct stat st;
	int fd, ret;

	memset(out, 0, sizeof(*out));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ENOENT)
			return pms_error_set(err, ENOENT, "%s: no such file", path);
		return pms_error_set(err, -ret, "cannot open %s: %s", path, strerror(-ret));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		ret = pms_error_set(err, PMS_EBADFILE, "%s is not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > READ_MAX_FILE_SIZE) {
		ret = pms_error_set(err, EFBIG, "%s is too large to be a recording (%lld bytes)",
				    path, (long long)st.st_size);
		goto out;
	}
	/* read to the end, not to st_size: a recording still being written grows meanwhile */
	for (;;) {
		ssize_t n;

		if (len == cap) {
			size_t ncap = cap ? 2 * cap : (size_t)st.st_size + 65536;
			uint8_t *p = ncap <= READ_MAX_FILE_SIZE ? realloc(data, ncap) : NULL;

			if (!p) {
				ret = pms_error_set(err, ENOMEM, "out of memory reading %s", path);
				goto out;
			}
			data = p;
			cap = ncap;
		}
		n = read(fd, data + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = pms_error_set(err, errno, "reading %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	ret = recfile_read_buffer(data, len, out, &inner);
	if (ret)
		pms_error_set(err, ret, "%s: %s", path, inner.msg);
out:
	free(data);
	close(fd);
	return ret;
}

void recfile_contents_free(struct recfile_contents *c)
{
	profile_free(c->profile);
	memset(c, 0, sizeof(*c));
}
