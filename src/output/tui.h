/* The screen of `top`: the rows it shows (one per site, function or file), how they sort and are
 * labelled, and the full-screen view (ncurses) that draws them and turns keys into actions. The
 * plain-text snapshots written when stdout is not a terminal share the rows, sorting and labels. */
#ifndef PMS_TUI_H
#define PMS_TUI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errors.h"
#include "leaks.h"
#include "profile.h"

enum tui_sort {
	TUI_SORT_RESIDENT,
	TUI_SORT_GROWTH,
	TUI_SORT_ALLOC,
	TUI_SORT_LEAK,
	TUI_SORT_SAMPLES,
	TUI_SORT_NAME,
	TUI_SORT_MAX,
};

enum tui_group {
	TUI_GROUP_LINE,	    /* one row per site: function, file and line */
	TUI_GROUP_FUNCTION, /* one row per function (and file) */
	TUI_GROUP_FILE,	    /* one row per file */
	TUI_GROUP_MAX,
};

struct tui_row {
	/* what the row stands for: function is NULL when grouped by file, line 0 unless by line */
	const char *function, *file;
	int line;
	size_t sites;	   /* sites summed into the row */
	int64_t resident;  /* bytes grown minus bytes released */
	int64_t allocated; /* bytes charged (what an allocator source counts as allocated) */
	double rate;	   /* change of resident, bytes per second over the rate window */
	uint64_t samples;
	struct leak_verdict leak;
	/* the stack of the member site holding the most, innermost first (valid while the
	 * profile lives) */
	const struct profile_frame *stack;
	size_t stack_len;
};

struct tui_header {
	pid_t pid;
	const char *comm, *python, *build, *events;
	double elapsed;	     /* seconds since attaching */
	uint64_t rss;	     /* target RSS in bytes (0: unknown) */
	int64_t rss_change;  /* since attaching */
	double rss_rate;     /* bytes per second over the rate window */
	double charged_rate; /* net bytes per second charged to sites over the rate window */
	double samples_rate; /* stack walks per second over the rate window */
	uint64_t drops;	     /* events lost to a full ring buffer, plus stacks lost */
	uint64_t sampled_out;
	double window; /* seconds the rates cover */
	size_t nsites;
	bool show_alloc;  /* the event source counts allocations */
	const char *note; /* the source's overhead prediction or stop, or NULL */
};

struct tui_view {
	struct tui_header hdr;
	struct tui_row *rows;
	size_t nrows;
	enum tui_sort sort;
	bool ascending;
	enum tui_group group;
	bool paused, help, stack;
	size_t selected, first;	  /* selected row, first row on screen */
	size_t stack_first;	  /* first frame on screen in the stack view */
	const char *sel_function; /* identity of the selected row, kept across refreshes */
	const char *sel_file;
	int sel_line;
	bool has_sel;
};

/* What a key asks of the caller. */
enum tui_action {
	TUI_NONE,
	TUI_REDRAW,  /* the view changed: draw it */
	TUI_RESORT,  /* the sort changed: sort the rows, reselect, draw */
	TUI_REGROUP, /* the grouping changed: rebuild the rows, draw */
	TUI_RESUME,  /* unpaused: refresh now */
	TUI_QUIT,
};

/* Sorts rows by the view's column and direction (ties: resident bytes, then name). */
void tui_sort_rows(struct tui_row *rows, size_t n, enum tui_sort sort, bool ascending);
/* Whether a column sorts biggest first when chosen (names sort A to Z). */
bool tui_sort_descending_default(enum tui_sort sort);
/* "function (file:line)", "function (file)" or "file", as grouped; basename_only shortens the
 * file to its last component. */
void tui_row_label(const struct tui_row *r, enum tui_group g, bool basename_only, char *out,
		   size_t outlen);
/* The heading of the label column for a grouping. */
const char *tui_group_heading(enum tui_group g);

/* Names on the command line and in the status line: "resident", "growth", "alloc", "leak",
 * "samples", "name"; "line", "function", "file". 0 or -EINVAL. */
int tui_sort_parse(const char *name, enum tui_sort *out);
int tui_group_parse(const char *name, enum tui_group *out);
const char *tui_sort_name(enum tui_sort sort);
const char *tui_group_name(enum tui_group g);

struct tui;

/* Takes over the terminal (stdin and stdout must be terminals). -ENOTTY with a message when it
 * cannot. */
int tui_open(struct tui **out, struct pms_error *err);
/* Gives the terminal back as it was. NULL is fine. */
void tui_close(struct tui *t);
/* Draws the view (adjusts its scroll positions to keep the selection visible). */
void tui_draw(struct tui *t, struct tui_view *v);
/* The next key typed, or -1 when there is none (never waits). */
int tui_getkey(struct tui *t);
/* Applies a key to the view and says what the caller must do. */
enum tui_action tui_key(struct tui_view *v, int key);
/* After the rows changed: selects the row with the remembered identity, or keeps the position. */
void tui_reselect(struct tui_view *v);

#endif
