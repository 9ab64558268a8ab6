/* libFuzzer target for the record-file reader: whatever bytes it is given, reading them and
 * printing the report of what was read must neither crash, nor leak, nor hit undefined
 * behaviour. Built and run by tools/fuzz.sh. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "recfile.h"
#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *sink;
	struct pms_error err = {{0}};
	struct recfile_contents c;
	struct pyversion py = {.text = "3.11.7"};
	struct report_meta m = {.python = &py, .top = 10};

	if (!sink)
		sink = fopen("/dev/null", "w");
	if (recfile_read_buffer(data, size, &c, &err) != 0)
		return 0;
	/* what `pymemspy report` does with it: every field read goes into the report */
	m.pid = c.meta.pid;
	m.comm = c.meta.comm;
	m.rss_start = c.meta.rss_start;
	m.rss_end = c.has_end ? c.end.rss_end : c.rss_last;
	m.duration = c.has_end ? c.end.duration : c.last_tick;
	m.ended_by = c.has_end ? pms_end_parse(c.end.ended_by) : PMS_END_UNKNOWN;
	m.no_end_record = !c.has_end;
	m.budget_per_sec = c.meta.budget_per_sec;
	m.max_depth = c.meta.max_depth;
	/* an allocator source: the allocator layout (oldest live allocations, estimates and their
	 * errors) */
	if (pms_source_parse(c.meta.events, &m.source))
		m.source = PMS_SOURCE_GROWTH;
	m.rate = c.meta.rate;
	memcpy(m.allocator, c.meta.allocator, sizeof(m.allocator));
	m.coverage = c.meta.coverage;
	memcpy(m.counters, c.counters, sizeof(m.counters));
	report_text(sink, c.profile, &m);
	report_json(sink, c.profile, &m);
	recfile_contents_free(&c);
	return 0;
}
