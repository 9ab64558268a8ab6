/* Code objects of a target turned into names: qualified function name, file, and the line of an
 * instruction. Cached by address and re-validated against address reuse on every lookup. */
#ifndef PMS_PYCODE_H
#define PMS_PYCODE_H

#include <stddef.h>
#include <stdint.h>

#include "pytarget.h"

struct pycode_cache;

struct pycode_info {
	const char *function; /* co_qualname (3.11+) or co_name, UTF-8 */
	const char *file;     /* co_filename, UTF-8 */
	int firstlineno;
};

/* A cache of at most `capacity` code objects (0: a default). NULL on ENOMEM. */
struct pycode_cache *pycode_cache_new(struct pytarget *t, size_t capacity);
void pycode_cache_free(struct pycode_cache *c);

/* Reads (or finds) the code object at addr. Returns 0 and *info (owned by the cache, valid until
 * the next call), or -EFAULT / -PMS_EGARBAGE when addr does not hold a readable code object, or
 * -ESRCH when the target exited. */
int pycode_lookup(struct pycode_cache *c, uint64_t addr, const struct pycode_info **info);

/* The line of the instruction at byte offset `offset` of the code object at addr (looked up as
 * above); co_firstlineno when offset < 0; -1 when it cannot be told. */
int pycode_line(struct pycode_cache *c, uint64_t addr, int offset);

/* Decodes a str object's payload (compact ASCII, Latin-1, UCS-2 or UCS-4) into UTF-8.
 * `state` is PyASCIIObject.state, data points at the characters. Returns the UTF-8 length written
 * (NUL-terminated, truncated to fit outlen), or -1 when the state is not a compact string. */
int pycode_unicode_to_utf8(const struct py_layout *l, uint32_t state, const uint8_t *data,
			   size_t nchars, char *out, size_t outlen);

#endif
