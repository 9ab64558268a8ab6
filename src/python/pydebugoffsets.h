/* _Py_DebugOffsets: the layout description CPython 3.13+ publishes at the start of _PyRuntime
 * ("xdebugpy" cookie, version, free_threaded, then groups of uint64_t offsets). The struct grows
 * between minor versions, so it is parsed per minor version from its raw bytes. */
#ifndef PMS_PYDEBUGOFFSETS_H
#define PMS_PYDEBUGOFFSETS_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "pylayout.h"

#define PYDEBUG_COOKIE "xdebugpy"
/* Enough bytes to hold the struct of every version we parse. */
#define PYDEBUG_MAX_SIZE 4096

/* Reads the header: returns 0 and fills version (PY_VERSION_HEX) and free_threaded when blob
 * starts with the cookie; -ENOENT when it does not (pre-3.13 or not _PyRuntime). */
int pydebug_header(const void *blob, size_t len, uint64_t *version_hex, int *free_threaded);

/* Parses the offsets into *out, starting from `base` (the built-in layout of that version, or a
 * zeroed one) and overriding every field the struct publishes. Fields it does not publish keep
 * base's values. Returns -PMS_EUNSUPPORTED for a minor version whose format we do not know,
 * -PMS_EGARBAGE for values that cannot be right (offsets beyond the struct sizes it declares). */
int pydebug_parse(const void *blob, size_t len, const struct py_layout *base, struct py_layout *out,
		  struct pms_error *err);

/* Compares the fields both layouts have; writes the first difference into err and returns
 * -PMS_EGARBAGE, or 0 when they agree. */
int pydebug_crosscheck(const struct py_layout *published, const struct py_layout *table,
		       struct pms_error *err);

#endif
