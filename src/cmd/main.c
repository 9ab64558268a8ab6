/* pymemspy: memory profiler for running CPython processes. The subcommand table. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "version.h"

struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct subcommand subcommands[] = {
    {"record", cmd_record, "attach, record memory growth by Python site, report"},
    {"top", cmd_top, "a live view of memory growth by Python site"},
    {"report", cmd_report, "print the report of a record file (or the diff of two)"},
    {"dump", cmd_dump, "print every thread's Python stack"},
    {"census", cmd_census, "count live objects by type, and the named containers that grow"},
    {"doctor", cmd_doctor, "check what this host allows pymemspy to do"},
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: pymemspy <command> [options]\n\n"
		     "Memory profiler for running CPython processes, attached from the outside.\n\n"
		     "Commands:\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(out, "  %-8s %s\n", subcommands[i].name, subcommands[i].summary);
	fprintf(out, "\n'pymemspy <command> --help' describes each command.\n"
		     "\nExamples:\n"
		     "  sudo pymemspy record --pid 4242 --duration 60\n"
		     "  sudo pymemspy dump --pid 4242\n"
		     "  sudo pymemspy census --pid 4242 --duration 30\n"
		     "  sudo pymemspy doctor\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		cli_print_exit_codes();
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("pymemspy %s\n", PMS_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (!strcmp(argv[1], subcommands[i].name))
			return subcommands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "pymemspy: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
