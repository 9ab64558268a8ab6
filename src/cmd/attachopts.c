#include "attachopts.h"

#include <stdio.h>

#include "cli.h"

void attach_opts_init(struct attach_opts *a, unsigned budget, uint64_t rate)
{
	*a = (struct attach_opts){
	    .sampler = {.source = PMS_SOURCE_GROWTH,
			.max_depth = PMS_MAX_DEPTH,
			.budget_per_sec = budget,
			.rate = rate},
	};
}

/* A usage error about a range: fmt takes the two bounds as %g or %.0f. */
static int usage_error(const char *cmd, const char *fmt, double lo, double hi)
{
	char what[160];

	snprintf(what, sizeof(what), fmt, lo, hi);
	cli_usage_error(cmd, what);
	return -1;
}

int attach_opts_parse(struct attach_opts *a, const char *cmd, int c, const char *arg)
{
	struct sampler_opts *s = &a->sampler;
	double pct;
	long v;

	switch (c) {
	case 'e':
		if (pms_source_parse(arg, &s->source)) {
			cli_usage_error(cmd, "--events: the sources are 'growth', 'survivors', "
					     "'malloc' and 'pymalloc'");
			return -1;
		}
		return 1;
	case 'D':
		if (cli_parse_long(arg, 1, PMS_MAX_DEPTH, &v))
			return usage_error(cmd, "--max-depth needs a number from %.0f to %.0f", 1,
					   PMS_MAX_DEPTH);
		s->max_depth = (unsigned)v;
		return 1;
	case 'B':
		if (cli_parse_long(arg, 0, ATTACH_BUDGET_MAX, &v))
			return usage_error(cmd, "--budget needs a number from %.0f to %.0f", 0,
					   ATTACH_BUDGET_MAX);
		s->budget_per_sec = (unsigned)v;
		return 1;
	case 'r':
		if (cli_parse_bytes(arg, PMS_RATE_MIN, PMS_RATE_MAX, &s->rate))
			return usage_error(cmd, "--rate needs a byte count from %.0f to %.0fM",
					   (double)PMS_RATE_MIN, (double)(PMS_RATE_MAX >> 20));
		return 1;
	case 'A':
		if (sampler_parse_attach(arg, &s->attach)) {
			cli_usage_error(cmd, "--attach: 'session', 'multi' or 'perf'");
			return -1;
		}
		return 1;
	case 'O':
		if (cli_parse_seconds(arg, &pct) || pct < ATTACH_OVERHEAD_MIN ||
		    pct > ATTACH_OVERHEAD_MAX)
			return usage_error(cmd, "--max-overhead needs a percentage from %g to %g",
					   ATTACH_OVERHEAD_MIN, ATTACH_OVERHEAD_MAX);
		s->max_overhead_pct = pct;
		a->max_overhead_given = true;
		return 1;
	case 'v':
		s->verbose = true;
		return 1;
	}
	return 0;
}

int attach_opts_check(const struct attach_opts *a, const char *cmd)
{
	if (a->max_overhead_given && !pms_source_is_allocator(a->sampler.source)) {
		cli_usage_error(cmd, "--max-overhead bounds the uprobe sources (--events malloc "
				     "or pymalloc)");
		return -1;
	}
	return 0;
}
