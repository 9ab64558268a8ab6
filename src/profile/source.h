/* The event sources a recording can come from, and how a recording ended: named once here and
 * parsed to these enums at the edges (the command line, a record file), so that no code further
 * in decides by comparing strings. */
#ifndef PMS_SOURCE_H
#define PMS_SOURCE_H

#include <stdbool.h>

enum pms_source {
	PMS_SOURCE_GROWTH = 0,	  /* resident growth: rss_stat, page faults, releasing syscalls */
	PMS_SOURCE_MALLOC = 1,	  /* uprobes on the malloc family and free */
	PMS_SOURCE_PYMALLOC = 2,  /* uprobes on CPython's allocator table functions */
	PMS_SOURCE_SURVIVORS = 3, /* growth, with pymalloc's share split by surviving samples */
};

/* "growth", "malloc", "pymalloc", "survivors" -> source. 0 or -EINVAL. */
int pms_source_parse(const char *text, enum pms_source *out);

/* The canonical name ("growth"...); "unknown" out of range. */
const char *pms_source_name(enum pms_source source);

/* Whether a source samples allocator calls (malloc, pymalloc): then --rate applies and the
 * report counts live bytes, not resident growth. */
static inline bool pms_source_is_allocator(enum pms_source source)
{
	return source == PMS_SOURCE_MALLOC || source == PMS_SOURCE_PYMALLOC;
}

enum pms_end {
	PMS_END_UNKNOWN = 0, /* a record file without an end record */
	PMS_END_SIGNAL,	     /* Ctrl-C or SIGTERM */
	PMS_END_DURATION,    /* --duration passed */
	PMS_END_TARGET_EXITED,
	PMS_END_CONFIDENT, /* --until-confident reached its confidence */
};

/* "signal", "duration", "target exited", "confident"; "unknown" for PMS_END_UNKNOWN. */
const char *pms_end_name(enum pms_end end);

/* The inverse; an unknown text gives PMS_END_UNKNOWN. */
enum pms_end pms_end_parse(const char *text);

#endif
