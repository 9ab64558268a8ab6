/* Line numbers from code objects' line tables (see linetable.h and design/cpython.md section 2).
 *
 * Each decoder walks the table forward from the start, as CPython's PyCode_Addr2Line does, and
 * returns what that function would for every well-formed table. The tables come from another
 * process and may be truncated or garbage, so: every read is checked against len, the running line
 * is kept in 64 bits and the table rejected once it leaves int (CPython computes in int, so no real
 * table gets there), and every loop advances by at least one byte. */
#include "linetable.h"

#include <limits.h>
#include <stdbool.h>

/* A line that left int, or went negative: -1 is the only negative answer the contract allows. */
static int line_result(int64_t line)
{
	return line >= 0 && line <= INT_MAX ? (int)line : -1;
}

static bool line_add(int64_t *line, int64_t delta)
{
	*line += delta;
	return *line >= INT_MIN && *line <= INT_MAX;
}

/* 3.8/3.9 co_lnotab: (address increment, signed line increment) byte pairs. A pair applies once
 * its address is <= offset, so the line at offset is the sum of the pairs up to there. The table
 * does not know where the bytecode ends: offsets past the end get the last line, like CPython. */
static int lnotab_line(const uint8_t *t, size_t len, int firstlineno, int offset)
{
	int64_t line = firstlineno, addr = 0;

	for (size_t i = 0; i + 1 < len; i += 2) {
		addr += t[i];
		if (addr > offset)
			break;
		if (!line_add(&line, (int8_t)t[i + 1]))
			return -1;
	}
	return line_result(line);
}

/* 3.10 co_linetable: (range length in bytes, signed line delta) pairs covering the bytecode from
 * 0; delta -128 means the range has no line and leaves the running line alone. Zero-length ranges
 * only carry line deltas too large for one pair. */
static int linetable310_line(const uint8_t *t, size_t len, int firstlineno, int offset)
{
	int64_t line = firstlineno, end = 0;

	for (size_t i = 0; i + 1 < len; i += 2) {
		int8_t delta = (int8_t)t[i + 1];
		bool no_line = delta == -128;

		end += t[i];
		if (!no_line && !line_add(&line, delta))
			return -1;
		if (offset < end)
			return no_line ? -1 : line_result(line);
	}
	return -1;
}

/* A location-table varint: 6-bit chunks, least significant first, bit 6 = more follow. A byte
 * with bit 7 set starts the next entry, so meeting one (or the end) mid-varint means the table is
 * cut short. Six chunks hold the 32 bits CPython writes; more is garbage. */
static bool read_varint(const uint8_t *t, size_t len, size_t *pos, uint64_t *out)
{
	uint64_t val = 0;

	for (unsigned shift = 0; shift <= 30; shift += 6) {
		if (*pos >= len || (t[*pos] & 0x80))
			return false;
		uint8_t b = t[(*pos)++];

		val |= (uint64_t)(b & 63) << shift;
		if (!(b & 64)) {
			*out = val;
			return val <= UINT32_MAX;
		}
	}
	return false;
}

enum {
	LOC_ONE_LINE0 = 10, /* 10-12: line delta 0, 1, 2, then two column bytes */
	LOC_ONE_LINE2 = 12,
	LOC_NO_COLUMNS = 13, /* signed varint line delta */
	LOC_LONG = 14,	     /* signed varint line delta, then end line and columns */
	LOC_NONE = 15,	     /* no line; the running line is unchanged */
};

/* 3.11+ location table: entries covering the bytecode from 0, each a header byte (bit 7 set,
 * code in bits 3-6, length-1 in code units in bits 0-2) and a payload of bytes with bit 7 clear.
 * Only the line matters here, so payloads after the line delta are skipped, as CPython does. */
static int locations311_line(const uint8_t *t, size_t len, int firstlineno, int offset)
{
	int64_t line = firstlineno, end = 0;
	size_t i = 0;

	/* A table must start on a header; one that does not is not a location table. */
	if (len > 0 && !(t[0] & 0x80))
		return -1;
	while (i < len) {
		uint8_t head = t[i++];
		int code = (head >> 3) & 15;
		int64_t delta = 0;

		if (code == LOC_NO_COLUMNS || code == LOC_LONG) {
			uint64_t v;

			if (!read_varint(t, len, &i, &v))
				return -1;
			/* Signed varints keep the sign in the lowest bit. */
			delta = (v & 1) ? -(int64_t)(v >> 1) : (int64_t)(v >> 1);
		} else if (code >= LOC_ONE_LINE0 && code <= LOC_ONE_LINE2) {
			delta = code - LOC_ONE_LINE0;
		}
		if (!line_add(&line, delta))
			return -1;
		end += ((head & 7) + 1) * 2;
		if (offset < end)
			return code == LOC_NONE ? -1 : line_result(line);
		while (i < len && !(t[i] & 0x80))
			i++;
	}
	return -1;
}

int linetable_line(int kind, const uint8_t *table, size_t len, int firstlineno, int offset)
{
	if (!table)
		len = 0;
	/* Negative offsets (3.11+ frames that have not started) are for the caller to map. */
	if (offset < 0)
		return -1;
	switch (kind) {
	case PY_LINES_LNOTAB:
		return lnotab_line(table, len, firstlineno, offset);
	case PY_LINES_LINETABLE310:
		return linetable310_line(table, len, firstlineno, offset);
	case PY_LINES_LOCATIONS311:
		return locations311_line(table, len, firstlineno, offset);
	default:
		return -1;
	}
}
