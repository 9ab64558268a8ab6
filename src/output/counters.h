/* The one table of the kernel's and survivors' counters (enum pms_counter, bpf/pymemspy.h): the
 * key each has in JSON reports and the words the text report and man 5 use for it. */
#ifndef PMS_COUNTERS_H
#define PMS_COUNTERS_H

#include <stdint.h>
#include <stdio.h>

#include "pymemspy.h"

/* JSON key ("rss_events"); NULL out of range. */
const char *counter_key(enum pms_counter c);

/* Words for people ("rss events"); NULL out of range. */
const char *counter_label(enum pms_counter c);

/* Writes "label N, label N, ..." for the n counters listed. */
void counter_print_list(FILE *out, const uint64_t values[PMS_CNT_MAX],
			const enum pms_counter *which, size_t n);

#endif
