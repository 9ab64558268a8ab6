/* Line-table decoders (src/linetable.c): checked against what every installed interpreter reports
 * (fixtures from tests/fixtures/linetable.py, see tools/gen-fixtures.sh), against hand-written
 * tables for each format, and against truncated and random input. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linetable.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* xorshift64*: a fixed seed makes every run test the same inputs. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
	rng_state = seed ? seed : 1;
}

static uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint32_t rng_below(uint32_t n)
{
	return n ? (uint32_t)(rng_next() >> 32) % n : 0;
}

/* An exact-size heap copy of the first n bytes, so that AddressSanitizer (make sanitize) flags
 * any read past the length the decoder was given. NULL for n == 0, which decoders must accept. */
static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
	if (n == 0)
		return NULL;
	uint8_t *p = malloc(n);

	cr_assert_not_null(p);
	memcpy(p, src, n);
	return p;
}

static int decode_exact(int kind, const uint8_t *t, size_t n, int first, int offset)
{
	uint8_t *copy = exact_copy(t, n);
	int line = linetable_line(kind, copy, n, first, offset);

	free(copy);
	return line;
}

/* Expect `want[i]` at byte offset 2*i for i < n, and -1 (not covered) from offset 2*n on. */
static void expect_lines(int kind, const uint8_t *t, size_t len, int first, const int *want,
			 size_t n, bool covered_past_end)
{
	uint8_t *copy = exact_copy(t, len);

	for (size_t i = 0; i < n; i++) {
		int got = linetable_line(kind, copy, len, first, (int)(2 * i));

		cr_expect_eq(got, want[i], "kind %d, offset %zu: line %d, expected %d", kind, 2 * i,
			     got, want[i]);
		/* Odd offsets fall inside the same code unit. */
		got = linetable_line(kind, copy, len, first, (int)(2 * i + 1));
		cr_expect_eq(got, want[i], "kind %d, offset %zu: line %d, expected %d", kind,
			     2 * i + 1, got, want[i]);
	}
	if (!covered_past_end) {
		cr_expect_eq(linetable_line(kind, copy, len, first, (int)(2 * n)), -1,
			     "kind %d: offset %zu past the table", kind, 2 * n);
		cr_expect_eq(linetable_line(kind, copy, len, first, INT_MAX), -1);
	}
	cr_expect_eq(linetable_line(kind, copy, len, first, -1), -1, "negative offset");
	free(copy);
}

/* Location-table encoders, written from the format description (cpython.md section 2). */
static size_t put_varint(uint8_t *p, uint32_t v)
{
	size_t n = 0;

	while (v >= 64) {
		p[n++] = 64 | (v & 63);
		v >>= 6;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static size_t put_svarint(uint8_t *p, int32_t v)
{
	return put_varint(p, v < 0 ? ((uint32_t)(-(int64_t)v) << 1) | 1 : (uint32_t)v << 1);
}

static uint8_t loc_head(int code, int units)
{
	return (uint8_t)(0x80 | (code << 3) | (units - 1));
}

/* ---- fixtures: every offset of every code object, as each interpreter reports it --------- */

struct fixture_code {
	int kind, first;
	size_t noffsets, tlen;
	char label[256];
	uint8_t *table;
	int *lines;
};

static char *read_whole(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	do {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 1 << 20;
			char *grown = realloc(buf, cap + 1);

			cr_assert_not_null(grown);
			buf = grown;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Next line of a NUL-terminated buffer: returns it (terminated in place), advances *cursor. */
static char *next_line(char **cursor)
{
	char *line = *cursor, *nl;

	if (!*line)
		return NULL;
	nl = strchr(line, '\n');
	if (nl) {
		*nl = '\0';
		*cursor = nl + 1;
	} else {
		*cursor = line + strlen(line);
	}
	return line;
}

/* Parses one "code / table / lines" record; false (after reporting) when the file is malformed. */
static bool parse_record(const char *path, char *codeline, char **cursor, struct fixture_code *c)
{
	char *tl, *ll, *p, *endp;

	memset(c, 0, sizeof(*c));
	if (sscanf(codeline, "code %d %d %zu %255s", &c->kind, &c->first, &c->noffsets, c->label) !=
	    4) {
		cr_expect_fail("%s: bad record line: %.80s", path, codeline);
		return false;
	}
	tl = next_line(cursor);
	ll = next_line(cursor);
	if (!tl || strncmp(tl, "table ", 6) || !ll || strncmp(ll, "lines", 5)) {
		cr_expect_fail("%s: %s: missing table or lines", path, c->label);
		return false;
	}
	tl += 6;
	if (strcmp(tl, "-") != 0) {
		size_t hexlen = strlen(tl);

		c->tlen = hexlen / 2;
		c->table = malloc(c->tlen ? c->tlen : 1);
		cr_assert_not_null(c->table);
		for (size_t i = 0; i < c->tlen; i++) {
			int hi = hexval(tl[2 * i]), lo = hexval(tl[2 * i + 1]);

			if (hi < 0 || lo < 0 || hexlen % 2) {
				cr_expect_fail("%s: %s: bad hex table", path, c->label);
				return false;
			}
			c->table[i] = (uint8_t)(hi << 4 | lo);
		}
	}
	c->lines = malloc((c->noffsets ? c->noffsets : 1) * sizeof(int));
	cr_assert_not_null(c->lines);
	p = ll + 5;
	for (size_t i = 0; i < c->noffsets; i++) {
		long v = strtol(p, &endp, 10);

		if (endp == p || v < -1 || v > INT_MAX) {
			cr_expect_fail("%s: %s: bad or missing line %zu", path, c->label, i);
			return false;
		}
		c->lines[i] = (int)v;
		p = endp;
	}
	while (*p == ' ')
		p++;
	if (*p) {
		cr_expect_fail("%s: %s: more lines than the %zu offsets announced", path, c->label,
			       c->noffsets);
		return false;
	}
	return true;
}

static void free_record(struct fixture_code *c)
{
	free(c->table);
	free(c->lines);
	c->table = NULL;
	c->lines = NULL;
}

struct fixture_stats {
	size_t files, codes, offsets, mismatches, truncated_checks;
};

/* For 3.10 and 3.11+ tables, cutting the table short may only turn a line into "unknown" (-1):
 * entries before the cut still decode as before, whatever the cut splits. (3.8/3.9 tables have no
 * such property: a shorter lnotab just stops adding deltas.) */
static size_t check_truncations(const char *name, const struct fixture_code *c)
{
	size_t checks = 0;

	if (c->kind == PY_LINES_LNOTAB || c->tlen == 0)
		return 0;
	for (int k = 0; k < 3; k++) {
		size_t cut = rng_below((uint32_t)c->tlen);
		uint8_t *copy = exact_copy(c->table, cut);
		/* Sample at most ~200 offsets: the big module bodies have thousands. */
		size_t step = c->noffsets / 200 + 1;

		for (size_t i = 0; i < c->noffsets; i += step) {
			int got = linetable_line(c->kind, copy, cut, c->first, (int)(2 * i));

			checks++;
			if (got != c->lines[i] && got != -1)
				cr_expect_fail(
				    "%s: %s: table cut at %zu/%zu, offset %zu: line %d, full "
				    "table %d",
				    name, c->label, cut, c->tlen, 2 * i, got, c->lines[i]);
		}
		free(copy);
	}
	return checks;
}

static void check_fixture_file(const char *dir, const char *name, struct fixture_stats *total)
{
	char path[4096];
	char *buf, *cursor, *line;
	size_t codes = 0, offsets = 0, mismatches = 0;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		cr_assert_fail("path too long: %s/%s", dir, name);
	buf = read_whole(path);
	cr_assert_not_null(buf, "cannot read %s", path);
	cursor = buf;
	while ((line = next_line(&cursor))) {
		struct fixture_code c;

		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (!parse_record(name, line, &cursor, &c)) {
			free_record(&c);
			break;
		}
		codes++;
		for (size_t i = 0; i < c.noffsets; i++) {
			int got = linetable_line(c.kind, c.table, c.tlen, c.first, (int)(2 * i));

			offsets++;
			if (got == c.lines[i])
				continue;
			/* One failure per mismatch would drown the report: show the first few. */
			if (++mismatches <= 10)
				cr_expect_fail(
				    "%s: %s (kind %d, first line %d): offset %zu: line %d, "
				    "interpreter says %d",
				    name, c.label, c.kind, c.first, 2 * i, got, c.lines[i]);
		}
		total->truncated_checks += check_truncations(name, &c);
		free_record(&c);
	}
	free(buf);
	cr_log_info("linetable fixture %s: %zu code objects, %zu offsets, %zu mismatches", name,
		    codes, offsets, mismatches);
	cr_expect_gt(codes, 0, "%s holds no code objects", name);
	cr_expect_eq(mismatches, 0, "%s: %zu of %zu offsets decoded differently", name, mismatches,
		     offsets);
	total->files++;
	total->codes += codes;
	total->offsets += offsets;
	total->mismatches += mismatches;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(linetable, fixtures_from_interpreters)
{
	const char *root = getenv("PMS_FIXTURES");
	char dir[4096];
	DIR *d;
	struct dirent *e;
	char *names[256];
	size_t n = 0;
	struct fixture_stats total = {0};

	if (!root || !*root)
		cr_skip_test("PMS_FIXTURES is not set (tools/gen-fixtures.sh DIR, then "
			     "PMS_FIXTURES=DIR)");
	if (snprintf(dir, sizeof(dir), "%s/linetable", root) >= (int)sizeof(dir))
		cr_skip_test("PMS_FIXTURES is too long");
	d = opendir(dir);
	if (!d)
		cr_skip_test("no %s: run tools/gen-fixtures.sh %s", dir, root);
	while ((e = readdir(d)) && n < sizeof(names) / sizeof(names[0])) {
		size_t len = strlen(e->d_name);

		if (len > 4 && strcmp(e->d_name + len - 4, ".txt") == 0)
			names[n++] = strdup(e->d_name);
	}
	closedir(d);
	/* A directory the generator made but filled with nothing means it broke: fail, not skip. */
	cr_assert_gt(n, 0, "%s has no fixtures", dir);
	qsort(names, n, sizeof(names[0]), cmp_names);
	rng_seed(0x11e7ab1e);
	for (size_t i = 0; i < n; i++) {
		check_fixture_file(dir, names[i], &total);
		free(names[i]);
	}
	cr_log_info("linetable fixtures: %zu interpreters, %zu code objects, %zu offsets, %zu "
		    "mismatches; %zu truncated-table checks",
		    total.files, total.codes, total.offsets, total.mismatches,
		    total.truncated_checks);
}

/* ---- 3.8/3.9 co_lnotab ---------------------------------------------------------------------- */

Test(linetable, lnotab_basic)
{
	/* (address increment, signed line increment) pairs, first line 7. */
	static const uint8_t t[] = {
	    0,	 1,    /* at 0: line 8 (a pair at address 0 applies from the start) */
	    6,	 2,    /* from 6: 10 */
	    4,	 0xfe, /* from 10: 8 (-2) */
	    255, 0,    /* an address step too long for one pair... */
	    3,	 127,  /* ...then from 268: 135 */
	    0,	 127,  /* and a line step too long for one pair: 262 */
	    5,	       /* odd trailing byte: ignored */
	};
	for (int off = 0; off < 6; off++)
		cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 7, off), 8);
	for (int off = 6; off < 10; off++)
		cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 7, off), 10);
	for (int off = 10; off < 268; off++)
		cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 7, off), 8);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 7, 268), 262);
	/* lnotab does not know where the bytecode ends: past the end is the last line. */
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 7, INT_MAX), 262);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 7, -2), -1);
}

Test(linetable, lnotab_empty_is_first_line)
{
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, NULL, 0, 42, 0), 42);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, NULL, 0, 42, 1000), 42);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, (const uint8_t *)"\x04", 1, 42, 8), 42);
}

Test(linetable, lnotab_negative_lines)
{
	/* Lines may go down (loops, multi-line calls), never below 0 in a sane table. */
	static const uint8_t t[] = {2, 0x81 /* -127 */, 2, 0x81};

	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 300, 1), 300);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 300, 2), 173);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 300, 4), 46);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, sizeof(t), 100, 4), -1, "line below 0");
}

/* ---- 3.10 co_linetable ---------------------------------------------------------------------- */

Test(linetable, linetable310_basic)
{
	static const uint8_t t[] = {
	    4, 0,    /* 0-3: 20 */
	    6, 1,    /* 4-9: 21 */
	    2, 0x80, /* 10-11: no line (-128), running line stays 21 */
	    4, 0xff, /* 12-15: 20 */
	    0, 127,  /* zero-length ranges carry big deltas... */
	    0, 127,  /* ... */
	    2, 6,    /* 16-17: 280 */
	};
	static const int want[] = {20, 20, 21, 21, 21, -1, 20, 20, 280};

	expect_lines(PY_LINES_LINETABLE310, t, sizeof(t), 20, want, 9, false);
}

Test(linetable, linetable310_no_line_keeps_running_line)
{
	static const uint8_t t[] = {2, 3, 2, 0x80, 2, 0x80, 2, 1};
	static const int want[] = {8, -1, -1, 9};

	expect_lines(PY_LINES_LINETABLE310, t, sizeof(t), 5, want, 4, false);
}

Test(linetable, linetable310_long_ranges)
{
	/* A range longer than 254 bytes is split, the rest with delta 0. */
	static const uint8_t t[] = {254, 3, 254, 0, 4, 0x80};

	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, t, sizeof(t), 1, 0), 4);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, t, sizeof(t), 1, 253), 4);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, t, sizeof(t), 1, 254), 4);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, t, sizeof(t), 1, 507), 4);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, t, sizeof(t), 1, 508), -1);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, t, sizeof(t), 1, 512), -1);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, NULL, 0, 1, 0), -1, "empty table");
}

/* ---- 3.11+ location table ------------------------------------------------------------------- */

Test(linetable, locations311_every_code)
{
	static const uint8_t t[] = {
	    0xe8, 0x00,		       /* 13 no columns, 1 unit, delta 0: 0-1 line 10 */
	    0xd9, 0x04, 0x08,	       /* 11 one line +1, 2 units: 2-5 line 11 */
	    0xaa, 0x12,		       /* 5 short form, 3 units: 6-11 line 11 */
	    0xf8,		       /* 15 no line, 1 unit: 12-13 */
	    0xf7, 0x48, 0x03, 2, 5, 9, /* 14 long, 8 units, delta +100 (varint 200): 14-29 */
	    0xe8, 0x53, 0x03,	       /* 13, delta -105 (varint 211): 30-31 line 6 */
	    0xe0, 0x01, 0x02,	       /* 12 one line +2: 32-33 line 8 */
	    0x80, 0x00,		       /* 0 short form: 34-35 line 8 */
	    0xd0, 0x01, 0x02,	       /* 10 one line +0: 36-37 line 8 */
	    0xcb, 0x7f,		       /* 9 short form, 4 units: 38-45 line 8 */
	};
	static const int want[] = {10,	11,  11,  11, 11, 11, -1, 111, 111, 111, 111, 111,
				   111, 111, 111, 6,  8,  8,  8,  8,   8,   8,	 8};

	expect_lines(PY_LINES_LOCATIONS311, t, sizeof(t), 10, want, 23, false);
}

Test(linetable, locations311_signed_varints)
{
	static const int32_t deltas[] = {0,	1,	 -1,	      31,      -31,	  32,
					 -32,	2047,	 -2048,	      70000,   -70000,	  40000000,
					 -4000, INT_MAX, INT_MIN + 1, 1 << 30, -(1 << 30)};
	uint8_t t[16];

	for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
		for (int code = 13; code <= 14; code++) {
			size_t n = 0;

			t[n++] = loc_head(code, 1);
			n += put_svarint(t + n, deltas[i]);
			if (code == 14) { /* end line delta, column + 1, end column + 1 */
				n += put_varint(t + n, 0);
				n += put_varint(t + n, 1);
				n += put_varint(t + n, 70);
			}
			int64_t want64 = (int64_t)5 + deltas[i];
			int want = want64 >= 0 && want64 <= INT_MAX ? (int)want64 : -1;

			cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, t, n, 5, 0), want,
				     "code %d, delta %d", code, deltas[i]);
			/* The delta counts from the running line, whatever the first line. */
			cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, t, n, 0, 0),
				     deltas[i] >= 0 ? deltas[i] : -1, "code %d, delta %d", code,
				     deltas[i]);
		}
	}
}

Test(linetable, locations311_no_line_keeps_running_line)
{
	uint8_t t[16];
	size_t n = 0;

	t[n++] = loc_head(13, 2);
	n += put_svarint(t + n, 5);
	t[n++] = loc_head(15, 8);
	t[n++] = loc_head(13, 1);
	n += put_svarint(t + n, 0);
	t[n++] = loc_head(15, 1);
	t[n++] = loc_head(11, 1);
	t[n++] = 0;
	t[n++] = 0;
	static const int want[] = {105, 105, -1, -1, -1, -1, -1, -1, -1, -1, 105, -1, 106};

	expect_lines(PY_LINES_LOCATIONS311, t, n, 100, want, 13, false);
}

Test(linetable, locations311_malformed)
{
	/* Does not start on an entry header. */
	static const uint8_t no_head[] = {0x08, 0xe8, 0x00};
	/* Varint cut by the end of the table, and by the next entry's header. */
	static const uint8_t cut_end[] = {0xd8, 0, 0, 0xe8, 0x48};
	static const uint8_t cut_head[] = {0xd8, 0, 0, 0xe8, 0x48, 0x80, 0};
	/* Seven varint chunks: more than the 32 bits CPython writes. */
	static const uint8_t too_long[] = {0xe8, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x01};
	/* Six chunks but over 32 bits. */
	static const uint8_t too_big[] = {0xe8, 0x40, 0x40, 0x40, 0x40, 0x40, 0x3f};
	/* A short-form entry whose column byte is missing: the line is still known. */
	static const uint8_t no_column[] = {0xd8, 0, 0, 0x80};

	cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, no_head, sizeof(no_head), 1, 0), -1);
	cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, cut_end, sizeof(cut_end), 1, 0), 2);
	cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, cut_end, sizeof(cut_end), 1, 2), -1);
	cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, cut_head, sizeof(cut_head), 1, 0), 2);
	cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, cut_head, sizeof(cut_head), 1, 2), -1);
	cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, too_long, sizeof(too_long), 1, 0), -1);
	cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, too_big, sizeof(too_big), 1, 0), -1);
	cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, no_column, sizeof(no_column), 1, 2), 2);
	cr_expect_eq(decode_exact(PY_LINES_LOCATIONS311, no_column, sizeof(no_column), 1, 4), -1);
}

/* ---- every format: edges and robustness ----------------------------------------------------- */

Test(linetable, unknown_kind_and_null_table)
{
	static const uint8_t t[] = {0x80, 0};

	cr_expect_eq(linetable_line(0, t, sizeof(t), 1, 0), -1);
	cr_expect_eq(linetable_line(4, t, sizeof(t), 1, 0), -1);
	cr_expect_eq(linetable_line(-1, t, sizeof(t), 1, 0), -1);
	/* A NULL table with a length (a failed read) is an empty table, never dereferenced. */
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, NULL, 100, 3, 0), 3);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, NULL, 100, 3, 0), -1);
	cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, NULL, 100, 3, 0), -1);
}

Test(linetable, huge_first_line)
{
	static const uint8_t lno_up[] = {0, 1}, lno_zero[] = {2, 0};
	static const uint8_t l310_up[] = {2, 1}, l310_zero[] = {2, 0};
	static const uint8_t loc_up[] = {0xd8, 0, 0}, loc_zero[] = {0xd0, 0, 0};
	static const uint8_t loc_back[] = {0xe8, 0x03}; /* -1 */

	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, lno_zero, 2, INT_MAX, 0), INT_MAX);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, lno_up, 2, INT_MAX, 0), -1);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, l310_zero, 2, INT_MAX, 0), INT_MAX);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, l310_up, 2, INT_MAX, 0), -1);
	cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, loc_zero, 3, INT_MAX, 0), INT_MAX);
	cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, loc_up, 3, INT_MAX, 0), -1);
	cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, loc_back, 2, INT_MIN, 0), -1);
	cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, loc_back, 2, 0, 0), -1);
	cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, loc_back, 2, INT_MAX, 0), INT_MAX - 1);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, NULL, 0, INT_MIN, 0), -1);
}

Test(linetable, offsets_past_the_end)
{
	static const uint8_t l310[] = {6, 1};
	static const uint8_t loc[] = {0xea, 0x02};

	for (int off = 6; off < 64; off++) {
		cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, l310, 2, 1, off), -1);
		cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, loc, 2, 1, off), -1);
	}
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, l310, 2, 1, INT_MAX), -1);
	cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, loc, 2, 1, INT_MAX), -1);
	cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, loc, 2, 1, INT_MIN), -1);
}

/* Every prefix of each hand-written table decodes without reading past it. */
Test(linetable, truncated_tables)
{
	uint8_t loc[64];
	size_t n = 0;

	loc[n++] = loc_head(14, 3);
	n += put_svarint(loc + n, -40000000);
	n += put_varint(loc + n, 3);
	n += put_varint(loc + n, 100);
	n += put_varint(loc + n, 200);
	loc[n++] = loc_head(13, 2);
	n += put_svarint(loc + n, 70000);
	loc[n++] = loc_head(11, 8);
	loc[n++] = 0x11;
	loc[n++] = 0x22;
	loc[n++] = loc_head(15, 4);
	static const uint8_t l310[] = {4, 0, 0, 127, 6, 0x80, 254, 0xff, 2, 3};
	static const uint8_t lno[] = {0, 1, 6, 2, 4, 0xfe, 255, 0, 3, 127};
	const struct {
		int kind;
		const uint8_t *t;
		size_t len;
	} cases[] = {
	    {PY_LINES_LOCATIONS311, loc, 0},
	    {PY_LINES_LINETABLE310, l310, sizeof(l310)},
	    {PY_LINES_LNOTAB, lno, sizeof(lno)},
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t len = cases[c].len ? cases[c].len : n;

		for (size_t cut = 0; cut <= len; cut++) {
			uint8_t *copy = exact_copy(cases[c].t, cut);

			for (int off = -2; off < 600; off++) {
				int got = linetable_line(cases[c].kind, copy, cut, 50000000, off);
				int full =
				    linetable_line(cases[c].kind, cases[c].t, len, 50000000, off);

				cr_assert_geq(got, -1);
				/* Cutting a 3.10+ table only loses lines, never changes them. */
				if (cases[c].kind != PY_LINES_LNOTAB && got != -1)
					cr_assert_eq(got, full, "kind %d cut %zu offset %d",
						     cases[c].kind, cut, off);
			}
			free(copy);
		}
	}
}

/* Random bytes, every kind, extreme arguments: answers stay in range and nothing reads past len.
 * Half the inputs have bit 7 forced on now and then so location tables get past their first
 * entries. */
Test(linetable, random_bytes)
{
	static const int firsts[] = {0, 1, 7, 1000000, INT_MAX, INT_MAX - 1, INT_MIN, -1};
	uint8_t buf[2048];

	rng_seed(20240611);
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = iter % 50 == 0 ? rng_below(sizeof(buf) + 1) : rng_below(97);
		bool heads = iter & 1;

		for (size_t i = 0; i < len; i++) {
			buf[i] = (uint8_t)rng_next();
			if (heads && rng_below(3) == 0)
				buf[i] |= 0x80;
		}
		uint8_t *copy = exact_copy(buf, len);
		int first = iter % 3 ? (int)rng_below(100000) : firsts[rng_below(8)];

		for (int kind = 0; kind <= 4; kind++) {
			int offs[] = {
			    0,	1,	 2,	 (int)rng_below(64), (int)rng_below(70000),
			    -1, INT_MAX, INT_MIN};

			for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
				int got = linetable_line(kind, copy, len, first, offs[k]);

				if (got < -1)
					cr_expect_fail("kind %d len %zu first %d offset %d: %d",
						       kind, len, first, offs[k], got);
			}
			/* The newer tables cover at most 254 bytes per 2 (3.10) or 16 per 1
			 * (3.11+): INT_MAX is never covered. */
			if (kind == PY_LINES_LINETABLE310 || kind == PY_LINES_LOCATIONS311)
				cr_expect_eq(linetable_line(kind, copy, len, first, INT_MAX), -1);
		}
		free(copy);
	}
}

/* Random well-formed location tables, built entry by entry with the line each entry should give:
 * the encoder side of the format, against the decoder. */
Test(linetable, random_valid_locations311)
{
	uint8_t t[4096];
	int want[2048]; /* per code unit */

	rng_seed(311);
	for (int iter = 0; iter < 3000; iter++) {
		int first = (int)rng_below(1 << 20);
		int64_t line = first;
		size_t n = 0, units = 0;

		while (n + 40 < sizeof(t) && units + 8 < sizeof(want) / sizeof(want[0]) &&
		       rng_below(40) != 0) {
			int code = (int)rng_below(16), len = 1 + (int)rng_below(8);
			int32_t delta = 0;

			/* Keep the running line within [0, 2^30]. */
			if (code == 13 || code == 14) {
				delta = rng_below(4) ? (int32_t)rng_below(200) - 100
						     : (int32_t)rng_below(1 << 24) - (1 << 23);
				if (line + delta < 0 || line + delta > (1 << 30))
					delta = -delta;
				if (line + delta < 0)
					delta = 0;
			} else if (code >= 10 && code <= 12) {
				delta = code - 10;
			}
			t[n++] = loc_head(code, len);
			if (code == 13 || code == 14)
				n += put_svarint(t + n, delta);
			if (code == 14) {
				n += put_varint(t + n, rng_below(5));
				n += put_varint(t + n, rng_below(300));
				n += put_varint(t + n, rng_below(300));
			} else if (code >= 10 && code <= 12) {
				t[n++] = (uint8_t)rng_below(128);
				t[n++] = (uint8_t)rng_below(128);
			} else if (code < 10) {
				t[n++] = (uint8_t)rng_below(128);
			}
			line += delta;
			for (int u = 0; u < len; u++)
				want[units++] = code == 15 ? -1 : (int)line;
		}
		uint8_t *copy = exact_copy(t, n);

		for (size_t u = 0; u <= units; u++) {
			int exp = u < units ? want[u] : -1;
			int got =
			    linetable_line(PY_LINES_LOCATIONS311, copy, n, first, (int)(2 * u));

			if (got != exp) {
				cr_expect_fail("iteration %d, offset %zu: line %d, expected %d",
					       iter, 2 * u, got, exp);
				break;
			}
		}
		free(copy);
	}
}

/* A megabyte of entries: decoding is linear and ends. */
Test(linetable, large_tables_terminate)
{
	size_t len = 1 << 20;
	uint8_t *t = malloc(len);

	cr_assert_not_null(t);
	memset(t, loc_head(15, 8), len);
	cr_expect_eq(linetable_line(PY_LINES_LOCATIONS311, t, len, 1, INT_MAX), -1);
	memset(t, 0, len);
	cr_expect_eq(linetable_line(PY_LINES_LINETABLE310, t, len, 1, 0), -1);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, len, 1, INT_MAX), 1);
	memset(t, 0x7f, len);
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, len, 1, INT_MAX), 1 + 127 * (1 << 19));
	cr_expect_eq(linetable_line(PY_LINES_LNOTAB, t, len, INT_MAX - 1000, INT_MAX), -1,
		     "line left int");
	free(t);
}
