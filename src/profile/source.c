/* Names of the event sources and of the ways a recording ends (source.h). */
#include <errno.h>
#include <string.h>

#include "source.h"

/* indexed by enum pms_source */
static const char *const source_names[] = {"growth", "malloc", "pymalloc", "survivors"};

/* indexed by enum pms_end */
static const char *const end_names[] = {"unknown", "signal", "duration", "target exited",
					"confident"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int pms_source_parse(const char *text, enum pms_source *out)
{
	for (size_t i = 0; i < COUNT(source_names); i++) {
		if (strcmp(text, source_names[i]) == 0) {
			*out = (enum pms_source)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *pms_source_name(enum pms_source source)
{
	return (unsigned)source < COUNT(source_names) ? source_names[source] : "unknown";
}

const char *pms_end_name(enum pms_end end)
{
	return (unsigned)end < COUNT(end_names) ? end_names[end] : "unknown";
}

enum pms_end pms_end_parse(const char *text)
{
	for (size_t i = 1; i < COUNT(end_names); i++)
		if (strcmp(text, end_names[i]) == 0)
			return (enum pms_end)i;
	return PMS_END_UNKNOWN;
}
