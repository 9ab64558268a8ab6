#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

struct json {
	FILE *out;
	bool pretty;
	int depth;
	bool after_key;
	/* per nesting level: has this container got an element already? */
	bool has_elem[JSON_MAX_DEPTH];
};

struct json *json_new(FILE *out, bool pretty)
{
	struct json *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->out = out;
	j->pretty = pretty;
	return j;
}

void json_free(struct json *j)
{
	if (!j)
		return;
	fputc('\n', j->out);
	fflush(j->out);
	free(j);
}

static void newline_indent(struct json *j)
{
	if (!j->pretty)
		return;
	fputc('\n', j->out);
	for (int i = 0; i < j->depth; i++)
		fputs("  ", j->out);
}

/* Comma and indentation before a value (unless it follows its key). */
static void before_value(struct json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->depth > 0) {
		if (j->has_elem[j->depth])
			fputc(',', j->out);
		j->has_elem[j->depth] = true;
		newline_indent(j);
	}
}

static void open_container(struct json *j, char c)
{
	before_value(j);
	fputc(c, j->out);
	if (j->depth + 1 < JSON_MAX_DEPTH)
		j->depth++;
	j->has_elem[j->depth] = false;
}

static void close_container(struct json *j, char c)
{
	bool had = j->has_elem[j->depth];

	if (j->depth > 0)
		j->depth--;
	if (had)
		newline_indent(j);
	fputc(c, j->out);
}

void json_object_begin(struct json *j)
{
	open_container(j, '{');
}

void json_object_end(struct json *j)
{
	close_container(j, '}');
}

void json_array_begin(struct json *j)
{
	open_container(j, '[');
}

void json_array_end(struct json *j)
{
	close_container(j, ']');
}

/* Length of a valid UTF-8 sequence starting at s (at most n bytes), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void write_escaped(struct json *j, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;

	fputc('"', j->out);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t len;

		switch (c) {
		case '"':
			fputs("\\\"", j->out);
			i++;
			continue;
		case '\\':
			fputs("\\\\", j->out);
			i++;
			continue;
		case '\n':
			fputs("\\n", j->out);
			i++;
			continue;
		case '\r':
			fputs("\\r", j->out);
			i++;
			continue;
		case '\t':
			fputs("\\t", j->out);
			i++;
			continue;
		default:
			break;
		}
		if (c < 0x20) {
			fprintf(j->out, "\\u%04x", c);
			i++;
			continue;
		}
		len = utf8_seq_len(s + i, n - i);
		if (len == 0) {
			fputs("\\ufffd", j->out);
			i++;
			continue;
		}
		fwrite(s + i, 1, len, j->out);
		i += len;
	}
	fputc('"', j->out);
}

void json_key(struct json *j, const char *key)
{
	before_value(j);
	write_escaped(j, key, strlen(key));
	fputs(j->pretty ? ": " : ":", j->out);
	j->after_key = true;
}

void json_string_len(struct json *j, const char *s, size_t len)
{
	before_value(j);
	write_escaped(j, s, len);
}

void json_string(struct json *j, const char *s)
{
	if (!s) {
		json_null(j);
		return;
	}
	json_string_len(j, s, strlen(s));
}

void json_int(struct json *j, int64_t v)
{
	before_value(j);
	fprintf(j->out, "%" PRId64, v);
}

void json_uint(struct json *j, uint64_t v)
{
	before_value(j);
	fprintf(j->out, "%" PRIu64, v);
}

void json_double(struct json *j, double v)
{
	before_value(j);
	if (!isfinite(v))
		fputs("null", j->out); /* JSON has no NaN or infinity */
	else
		fprintf(j->out, "%.17g", v);
}

void json_bool(struct json *j, bool v)
{
	before_value(j);
	fputs(v ? "true" : "false", j->out);
}

void json_null(struct json *j)
{
	before_value(j);
	fputs("null", j->out);
}

void json_kv_string(struct json *j, const char *key, const char *s)
{
	json_key(j, key);
	json_string(j, s);
}

void json_kv_int(struct json *j, const char *key, int64_t v)
{
	json_key(j, key);
	json_int(j, v);
}

void json_kv_uint(struct json *j, const char *key, uint64_t v)
{
	json_key(j, key);
	json_uint(j, v);
}

void json_kv_double(struct json *j, const char *key, double v)
{
	json_key(j, key);
	json_double(j, v);
}

void json_kv_bool(struct json *j, const char *key, bool v)
{
	json_key(j, key);
	json_bool(j, v);
}
