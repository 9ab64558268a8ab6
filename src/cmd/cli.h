/* Command-line plumbing shared by the subcommands: the subcommand entry points, checked number
 * parsing, and the one place a failure becomes a message and an exit code. */
#ifndef PMS_CLI_H
#define PMS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "errors.h"

/* Subcommands: each parses its own options (argv[0] is the subcommand name) and returns an
 * exit code (enum pms_exit). */
int cmd_dump(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_record(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_census(int argc, char **argv);

/* Parses a PID: a whole decimal number in 1..INT_MAX. 0 or -EINVAL. */
int cli_parse_pid(const char *s, pid_t *out);
/* Parses a whole decimal number in [min, max]. 0 or -EINVAL. */
int cli_parse_long(const char *s, long min, long max, long *out);
/* Parses a byte count: a whole number with an optional K, M or G suffix (powers of 1024, "KiB"
 * and "k" accepted too), within [min, max]. 0 or -EINVAL. */
int cli_parse_bytes(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parses a non-negative number of seconds (decimals allowed). 0 or -EINVAL. */
int cli_parse_seconds(const char *s, double *out);

/* Prints "pymemspy: <message>" (err's message, or strerror) on stderr and returns the exit code
 * for err. */
int cli_fail(const struct pms_error *e, int err);
/* Prints "pymemspy <cmd>: <what>" and a hint to --help on stderr; returns PMS_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *what);

/* The exit-code table, as printed at the end of every --help. */
void cli_print_exit_codes(void);

/* --help: the command's usage, then the exit codes, on stdout. Returns PMS_EXIT_OK. */
int cli_help(void (*usage)(FILE *out));

/* After getopt: no operand left and --pid given. 0, or PMS_EXIT_USAGE with the message. */
int cli_need_pid(const char *cmd, int argc, pid_t pid);

#endif
