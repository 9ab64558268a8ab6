/* The options every command that attaches to a target shares (record, top and those to come):
 * the event source, stack depth, walk budget, sampling rate, how probes attach, the overhead
 * bound and libbpf's verbosity. One parser, one set of messages, ranges from the constants. */
#ifndef PMS_ATTACHOPTS_H
#define PMS_ATTACHOPTS_H

#include <getopt.h>
#include <stdbool.h>

#include "sampler.h"

#define ATTACH_BUDGET_MAX   1000000 /* stack walks per second */
#define ATTACH_OVERHEAD_MIN 0.01    /* --max-overhead, % of one thread */
#define ATTACH_OVERHEAD_MAX 100.0

/* getopt_long entries (long names, their short letters) and short letters for the parser. */
#define ATTACH_LONG_OPTIONS                                                                        \
	{"events", required_argument, NULL, 'e'}, {"max-depth", required_argument, NULL, 'D'},     \
	    {"budget", required_argument, NULL, 'B'}, {"rate", required_argument, NULL, 'r'},      \
	    {"attach", required_argument, NULL, 'A'},                                              \
	    {"max-overhead", required_argument, NULL, 'O'},                                        \
	{                                                                                          \
		"verbose", no_argument, NULL, 'v'                                                  \
	}
#define ATTACH_SHORT_OPTIONS "e:r:v"

struct attach_opts {
	struct sampler_opts sampler;
	bool max_overhead_given;
};

/* Defaults: growth, the deepest stacks, `budget` walks/s, `rate` bytes between samples. */
void attach_opts_init(struct attach_opts *a, unsigned budget, uint64_t rate);

/* Applies option c (with its argument) when it is one of ours: 1 applied, 0 not ours, -1 a
 * usage error already printed for `cmd` (exit 2). */
int attach_opts_parse(struct attach_opts *a, const char *cmd, int c, const char *arg);

/* Checks the options against each other once all are parsed: 0, or -1 with the usage error
 * printed. */
int attach_opts_check(const struct attach_opts *a, const char *cmd);

#endif
