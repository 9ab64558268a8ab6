/* Lookup in the generated layout table (src/pylayout_table.c, tools/gen-layouts.sh). */
#include "pylayout.h"

#include <stddef.h>

static const struct py_layout *find(int major, int minor, enum py_build build)
{
	for (size_t i = 0; i < pylayout_table_len; i++) {
		const struct pylayout_entry *e = &pylayout_table[i];

		if (e->major == major && e->minor == minor && e->build == build)
			return &e->layout;
	}
	return NULL;
}

const struct py_layout *pylayout_builtin(int major, int minor, enum py_build build)
{
	switch (build) {
	case PY_BUILD_RELEASE:
	case PY_BUILD_FREE_THREADED:
		return find(major, minor, build);
	case PY_BUILD_DEBUG:
		/* Py_DEBUG changes none of the fields we read: gen-layouts.sh recompiles every
		 * version's headers with -DPy_DEBUG (and Debian's python3.11d headers) and refuses
		 * to write the table if any number differs, and python3.11d's DWARF agrees. 3.14 is
		 * unverified but publishes _Py_DebugOffsets, which override the table. Builds
		 * configured --with-trace-refs (two more pointers per object) are not covered. */
		if (find(major, minor, build))
			return find(major, minor, build);
		return find(major, minor, PY_BUILD_RELEASE);
	}
	return NULL;
}

void pylayout_supported_range(int *min_minor, int *max_minor)
{
	int lo = 0, hi = 0;

	for (size_t i = 0; i < pylayout_table_len; i++) {
		const struct pylayout_entry *e = &pylayout_table[i];

		if (e->major != 3 || e->build != PY_BUILD_RELEASE)
			continue;
		if (lo == 0 || e->minor < lo)
			lo = e->minor;
		if (e->minor > hi)
			hi = e->minor;
	}
	if (min_minor)
		*min_minor = lo;
	if (max_minor)
		*max_minor = hi;
}

const char *pylayout_build_name(enum py_build build)
{
	switch (build) {
	case PY_BUILD_RELEASE:
		return "release";
	case PY_BUILD_DEBUG:
		return "debug";
	case PY_BUILD_FREE_THREADED:
		return "free-threaded";
	}
	return "unknown";
}
