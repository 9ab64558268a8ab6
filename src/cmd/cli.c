#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_long(const char *s, long min, long max, long *out)
{
	char *end = NULL;
	long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int cli_parse_bytes(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	static const char suffixes[] = "kmg";
	unsigned long long v;
	char *end = NULL;
	const char *unit;
	unsigned shift = 0;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		unit = strchr(suffixes, end[0] | 0x20);
		if (!unit || !*unit)
			return -EINVAL;
		shift = 10 * (unsigned)(unit - suffixes + 1);
		end++;
		if (strcmp(end, "") != 0 && strcmp(end, "iB") != 0 && strcmp(end, "B") != 0)
			return -EINVAL;
		if (v > (~0ULL >> shift))
			return -EINVAL;
		v <<= shift;
	}
	if (v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int cli_parse_pid(const char *s, pid_t *out)
{
	long v;
	int err = cli_parse_long(s, 1, INT_MAX, &v);

	if (err)
		return err;
	*out = (pid_t)v;
	return 0;
}

int cli_parse_seconds(const char *s, double *out)
{
	char *end = NULL;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end != '\0' || !isfinite(v) || v < 0 || v > 1e9)
		return -EINVAL;
	*out = v;
	return 0;
}

int cli_fail(const struct pms_error *e, int err)
{
	if (e && e->msg[0])
		fprintf(stderr, "pymemspy: %s\n", e->msg);
	else
		fprintf(stderr, "pymemspy: %s\n", strerror(err < 0 ? -err : err));
	return pms_exit_code(err < 0 ? err : -err);
}

int cli_usage_error(const char *cmd, const char *what)
{
	fprintf(stderr, "pymemspy %s: %s\nTry 'pymemspy %s --help'.\n", cmd, what, cmd);
	return PMS_EXIT_USAGE;
}

void cli_print_exit_codes(void)
{
	printf("\nExit status:\n");
	for (int c = PMS_EXIT_OK; c <= PMS_EXIT_INCONSISTENT; c++)
		printf("  %d  %s\n", c, pms_exit_describe((enum pms_exit)c));
}

int cli_help(void (*usage)(FILE *out))
{
	usage(stdout);
	cli_print_exit_codes();
	return PMS_EXIT_OK;
}

int cli_need_pid(const char *cmd, int argc, pid_t pid)
{
	if (optind < argc)
		return cli_usage_error(cmd, "unexpected argument");
	if (!pid)
		return cli_usage_error(cmd, "--pid is required");
	return 0;
}
