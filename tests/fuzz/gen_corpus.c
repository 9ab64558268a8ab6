/* Writes the fuzz target's seed corpus: small valid recordings (whole, cut, with every record
 * type, growth and allocator sources), so that the fuzzer starts from inputs that get past the
 * header and the CRCs. gen_corpus DIR */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "recfile.h"

/* ---- A seed built by hand: TICKs whose deltas carry series buckets, which only a live
 * profile makes the writer produce ---- */

static unsigned char hand[4096];
static size_t hand_len, rec_start;

static void b8(unsigned v)
{
	hand[hand_len++] = (unsigned char)v;
}

static void b32(uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b8((v >> (8 * i)) & 0xff);
}

static void bf64(double d)
{
	uint64_t v;

	memcpy(&v, &d, sizeof(v));
	for (int i = 0; i < 8; i++)
		b8((unsigned)(v >> (8 * i)) & 0xff);
}

static void uv(uint64_t v)
{
	do {
		b8((unsigned)(v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

static void sv(int64_t v)
{
	uv(v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1);
}

static void str(const char *s)
{
	size_t n = strlen(s);

	b8(n & 0xff);
	b8(n >> 8);
	memcpy(hand + hand_len, s, n);
	hand_len += n;
}

static void begin(uint32_t type)
{
	rec_start = hand_len;
	b32(type);
	b32(0);
}

static void end(void)
{
	uint32_t len = (uint32_t)(hand_len - rec_start - 8);

	for (int i = 0; i < 4; i++)
		hand[rec_start + 4 + i] = (unsigned char)(len >> (8 * i));
	b32((uint32_t)crc32(0, hand + rec_start, (uInt)(hand_len - rec_start)));
}

/* A tick at `at` whose one delta (site 0) carries buckets [lo, lo + n) = values. */
static void tick(double at, double bs, uint64_t nb, int64_t grown, uint64_t lo,
		 const int64_t *values, size_t n)
{
	begin(5);
	bf64(at);
	uv(1 << 24);
	uv(2);
	uv(10);
	uv(20);
	uv(3);
	sv(grown);
	sv(0);
	sv(0);
	bf64(bs);
	uv(nb);
	uv(1);
	uv(0);
	sv(grown);
	sv(0);
	uv(1);
	uv(lo);
	uv(n);
	for (size_t i = 0; i < n; i++)
		sv(values[i]);
	uv(1);
	uv(4242);
	sv(grown);
	end();
}

static int hand_seed(const char *dir)
{
	static const int64_t v1[] = {4096, 8192}, v2[] = {12288, 8192}, v3[] = {20480, 4096};
	char path[4096];
	FILE *f;

	memcpy(hand, "PYMEMSPY", 8);
	hand_len = 8;
	b32(1);
	b32(0);
	begin(1);
	b32(42);
	str("python3");
	str("3.12.1");
	str("release");
	str("growth");
	str("x86_64");
	bf64(1.7e9);
	for (int i = 0; i < 8; i++)
		b8(0);
	b32(2000);
	b32(128);
	end();
	begin(2);
	uv(0);
	str("leak");
	end();
	begin(2);
	uv(1);
	str("/srv/app.py");
	end();
	begin(3);
	uv(0);
	uv(0);
	uv(1);
	sv(9);
	bf64(0.5);
	end();
	begin(4);
	uv(0);
	uv(2);
	uv(0);
	uv(1);
	sv(9);
	uv(0);
	uv(1);
	sv(40);
	end();
	tick(1.1, 1, 2, 12288, 0, v1, 2);
	tick(2.1, 1, 2, 8192, 0, v2, 2);
	/* the buckets widened to 2 s: 0 and 1 merged */
	tick(3.1, 2, 2, 4096, 0, v3, 2);
	begin(6);
	bf64(3.1);
	str("duration");
	for (int i = 0; i < 8; i++)
		b8(0);
	bf64(0.01);
	for (int i = 0; i < 24; i++)
		b8(0);
	end();
	snprintf(path, sizeof(path), "%s/series", dir);
	f = fopen(path, "wb");
	if (!f || fwrite(hand, 1, hand_len, f) != hand_len || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	return 0;
}

/* A recording of `ticks` ticks over `nsites` sites; cut to `keep` bytes when keep > 0. */
static int seed(const char *dir, const char *name, int ticks, int nsites, bool end, long keep)
{
	struct pms_error err = {{0}};
	struct recfile_writer *w;
	struct recfile_meta meta;
	struct recfile_end e = {.duration = ticks, .ended_by = "duration", .rss_end = 1 << 24};
	uint64_t counters[PMS_CNT_MAX] = {0};
	struct profile_totals totals = {0};
	const struct profile_delta_sink *s;
	char path[4096];
	int ret;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ret = recfile_create(path, true, &w, &err);
	if (ret) {
		fprintf(stderr, "gen_corpus: %s\n", err.msg);
		return ret;
	}
	recfile_meta_init(&meta);
	meta.pid = 42;
	strcpy(meta.comm, "python3");
	strcpy(meta.python_version, "3.12.1");
	strcpy(meta.python_build, "release");
	strcpy(meta.events, "growth");
	meta.budget_per_sec = 2000;
	meta.max_depth = 128;
	recfile_write_meta(w, &meta);
	s = recfile_sink(w);
	for (int k = 0; k < ticks; k++) {
		for (int i = 0; i < nsites; i++) {
			struct profile_frame frames[3] = {{"leak", "/srv/app.py", 9 + i},
							  {"handle", "/srv/app.py", 40},
							  {"<module>", "/srv/main.py", 1}};
			struct profile_site site = {.function = "leak",
						    .file = "/srv/app.py",
						    .line = 9 + i,
						    .first_seen = k + 0.5};
			struct profile_delta d = {.site = (uint32_t)i,
						  .grown = 65536 * (i + 1),
						  .released = 4096 * (k % 2),
						  .samples = 3};

			if (k == 0)
				s->site(s->ctx, (uint32_t)i, &site);
			if (k == 0 || k % 3 == i % 3)
				s->stack(s->ctx, (uint32_t)i, frames, 1 + (size_t)(k + i) % 3);
			s->delta(s->ctx, &d);
		}
		s->thread(s->ctx, 4242 + (uint32_t)k % 2, 65536);
		counters[PMS_CNT_SAMPLES] += 3;
		totals.grown += 65536;
		recfile_write_tick(w, k + 1.0, (uint64_t)(1 << 24) + (uint64_t)k * 65536, counters,
				   &totals);
		recfile_flush(w);
	}
	if (end)
		recfile_write_end(w, &e);
	ret = recfile_close(w);
	if (!ret && keep > 0 && truncate(path, keep) != 0)
		ret = -1;
	return ret;
}

/* An allocator recording (--events malloc): META with the rate, allocator and coverage, deltas
 * with allocator figures, the OLDEST record; cut to `keep` bytes when keep > 0. */
static int alloc_seed(const char *dir, const char *name, long keep)
{
	struct pms_error err = {{0}};
	struct recfile_writer *w;
	struct recfile_meta meta;
	struct recfile_end e = {.duration = 4, .ended_by = "signal", .rss_end = 1 << 24};
	uint64_t counters[PMS_CNT_MAX] = {0};
	struct profile_totals totals = {0};
	const struct profile_delta_sink *s;
	struct profile *p = profile_new(NULL);
	char path[4096];
	int ret;

	if (!p)
		return -1;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ret = recfile_create(path, true, &w, &err);
	if (ret) {
		fprintf(stderr, "gen_corpus: %s\n", err.msg);
		profile_free(p);
		return ret;
	}
	recfile_meta_init(&meta);
	meta.pid = 43;
	strcpy(meta.comm, "python3");
	strcpy(meta.python_version, "3.12.1");
	strcpy(meta.python_build, "release");
	strcpy(meta.events, "malloc");
	meta.max_depth = 128;
	meta.rate = 65536;
	strcpy(meta.allocator, "glibc");
	meta.coverage = 1.0;
	recfile_write_meta(w, &meta);
	s = recfile_sink(w);
	for (int k = 0; k < 4; k++) {
		for (int i = 0; i < 3; i++) {
			struct profile_frame frame = {"make", "/srv/heap.py", 20 + i};
			struct profile_site site = {.function = "make",
						    .file = "/srv/heap.py",
						    .line = 20 + i,
						    .first_seen = 0.25};
			struct profile_delta d = {.site = (uint32_t)i,
						  .grown = 70000 * (i + 1),
						  .released = 20000 * (k % 2),
						  .samples = 2,
						  .allocs = 3.5 * (i + 1),
						  .frees = 1.25 * (k % 2),
						  .var_grown = 4.5e9,
						  .var_live = 2.25e9,
						  .live_samples = k % 2 ? 1 : 2};

			if (k == 0) {
				s->site(s->ctx, (uint32_t)i, &site);
				s->stack(s->ctx, (uint32_t)i, &frame, 1);
				profile_define_site(p, (uint32_t)i, site.function, site.file,
						    site.line, site.first_seen);
			}
			s->delta(s->ctx, &d);
			profile_add_delta(p, &d, k + 0.5);
			if (k < 2) {
				struct profile_live l = {k + 0.5, 1000 + (uint64_t)i,
							 0x1000 * (k + 1), 4242};

				profile_add_live(p, (uint32_t)i, &l);
			}
		}
		counters[PMS_CNT_ALLOC_CALLS] += 1000;
		counters[PMS_CNT_ALLOC_SAMPLES] += 6;
		totals.allocs_untracked += (uint64_t)k;
		recfile_write_tick(w, k + 1.0, 1 << 24, counters, &totals);
		recfile_flush(w);
	}
	recfile_write_oldest(w, p);
	recfile_write_end(w, &e);
	ret = recfile_close(w);
	profile_free(p);
	if (!ret && keep > 0 && truncate(path, keep) != 0)
		ret = -1;
	return ret;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus DIR\n");
		return 2;
	}
	if (seed(argv[1], "whole", 6, 3, true, 0) || seed(argv[1], "no-end", 4, 2, false, 0) ||
	    seed(argv[1], "cut", 5, 2, false, 700) || seed(argv[1], "meta-only", 0, 0, false, 0) ||
	    seed(argv[1], "many-sites", 3, 12, true, 0) || hand_seed(argv[1]) ||
	    alloc_seed(argv[1], "alloc", 0) || alloc_seed(argv[1], "alloc-cut", 900))
		return 1;
	return 0;
}
