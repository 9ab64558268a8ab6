/* A streaming JSON writer: every --json document goes through it, so escaping and commas are
 * right in one place. Keys and strings are escaped; invalid UTF-8 becomes U+FFFD. */
#ifndef PMS_JSON_H
#define PMS_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct json;

/* A writer on `out`; pretty-prints with two-space indents when `pretty`. NULL on ENOMEM. */
struct json *json_new(FILE *out, bool pretty);
/* Ends the document with a newline and frees the writer (not the stream). */
void json_free(struct json *j);

void json_object_begin(struct json *j);
void json_object_end(struct json *j);
void json_array_begin(struct json *j);
void json_array_end(struct json *j);
/* The key of the next value inside an object. */
void json_key(struct json *j, const char *key);

void json_string(struct json *j, const char *s);
void json_string_len(struct json *j, const char *s, size_t len);
void json_int(struct json *j, int64_t v);
void json_uint(struct json *j, uint64_t v);
void json_double(struct json *j, double v);
void json_bool(struct json *j, bool v);
void json_null(struct json *j);

/* Key + value shorthands. */
void json_kv_string(struct json *j, const char *key, const char *s);
void json_kv_int(struct json *j, const char *key, int64_t v);
void json_kv_uint(struct json *j, const char *key, uint64_t v);
void json_kv_double(struct json *j, const char *key, double v);
void json_kv_bool(struct json *j, const char *key, bool v);

#endif
