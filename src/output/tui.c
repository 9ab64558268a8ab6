#include "tui.h"

#include <curses.h>
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

/* Below this the table has no room for a label. */
#define TUI_MIN_WIDTH  50
#define TUI_MIN_HEIGHT 8
#define TUI_HEAD_LINES 5 /* header (4) and column headings */
#define TUI_KEY_ESC    27
#define TUI_KEY_CTRL_L 12

#define PAIR_LEAK 1

struct tui {
	SCREEN *screen;
	bool color;
};

/* The numeric columns, left to right, and the key that sorts by each; the label comes last. */
struct column {
	enum tui_sort sort;
	const char *title;
	int width;
	int key;
};

static const struct column columns[] = {
    {TUI_SORT_RESIDENT, "RESIDENT", 10, 'r'}, {TUI_SORT_GROWTH, "GROWTH/s", 11, 'g'},
    {TUI_SORT_ALLOC, "ALLOC", 10, 'a'},	      {TUI_SORT_LEAK, "LEAK", 5, 'l'},
    {TUI_SORT_SAMPLES, "SAMPLES", 8, 's'},
};
#define NCOLUMNS   (sizeof(columns) / sizeof(columns[0]))
#define KEY_NAME   'n'
#define COLUMN_GAP 2

static const char *const sort_names[TUI_SORT_MAX] = {"resident", "growth",  "alloc",
						     "leak",	 "samples", "name"};
static const char *const group_names[TUI_GROUP_MAX] = {"line", "function", "file"};

static const char *const help_lines[] = {
    "pymemspy top: keys",
    "  q             quit (the target keeps running, with nothing of ours attached)",
    "  ?             this help (any key closes it)",
    "  j k, arrows   select a row; PgUp PgDn Home End",
    "  Enter, t      the full stack of the selected row (Esc or Enter goes back)",
    "  p, space      pause the view (recording goes on; p again resumes)",
    "  r g a l s n   sort by resident, growth rate, allocated, leak score, samples,",
    "                name; the same key again reverses the order",
    "  1 2 3, Tab    group by line, by function, by file",
    "  Ctrl-L        redraw the screen",
    "",
    "Columns",
    "  RESIDENT  bytes grown minus bytes released, charged to the row so far",
    "  GROWTH/s  change of RESIDENT per second over the last seconds (header)",
    "  ALLOC     bytes allocated (only for event sources that see allocations)",
    "  LEAK      leak confidence (0 to 1) of a leak candidate: steady growth that",
    "            does not level off (LEAK CANDIDATES in the man page)",
    "  SAMPLES   stack walks that charged the row",
};

/* ---- Rows: sorting and labels (shared with the plain-text snapshots) ---- */

struct sort_ctx {
	enum tui_sort sort;
	int dir; /* 1 ascending, -1 descending */
};

static int cmp_num(double a, double b)
{
	return a < b ? -1 : a > b;
}

static int cmp_name(const struct tui_row *x, const struct tui_row *y)
{
	int c = strcmp(x->function ? x->function : "", y->function ? y->function : "");

	if (!c)
		c = strcmp(x->file, y->file);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Non-candidates rank below every candidate, whatever their score. */
static double leak_key(const struct tui_row *r)
{
	return r->leak.candidate ? r->leak.score : -1.0;
}

static int cmp_rows(const void *a, const void *b, void *vctx)
{
	const struct tui_row *x = a, *y = b;
	const struct sort_ctx *c = vctx;
	int r = 0;

	switch (c->sort) {
	case TUI_SORT_RESIDENT:
		r = cmp_num((double)x->resident, (double)y->resident);
		break;
	case TUI_SORT_GROWTH:
		r = cmp_num(x->rate, y->rate);
		break;
	case TUI_SORT_ALLOC:
		r = cmp_num((double)x->allocated, (double)y->allocated);
		break;
	case TUI_SORT_LEAK:
		r = cmp_num(leak_key(x), leak_key(y));
		break;
	case TUI_SORT_SAMPLES:
		r = cmp_num((double)x->samples, (double)y->samples);
		break;
	case TUI_SORT_NAME:
	case TUI_SORT_MAX:
		r = cmp_name(x, y);
		break;
	}
	r *= c->dir;
	/* ties always the same way, so that equal rows do not swap places between refreshes */
	if (!r)
		r = -cmp_num((double)x->resident, (double)y->resident);
	return r ? r : cmp_name(x, y);
}

void tui_sort_rows(struct tui_row *rows, size_t n, enum tui_sort sort, bool ascending)
{
	struct sort_ctx c = {sort, ascending ? 1 : -1};

	if (n > 1)
		qsort_r(rows, n, sizeof(*rows), cmp_rows, &c);
}

bool tui_sort_descending_default(enum tui_sort sort)
{
	return sort != TUI_SORT_NAME;
}

void tui_row_label(const struct tui_row *r, enum tui_group g, bool basename_only, char *out,
		   size_t outlen)
{
	const char *file = r->file, *slash = strrchr(file, '/');

	if (basename_only && slash && slash[1])
		file = slash + 1;
	if (!r->function)
		snprintf(out, outlen, "%s", *file ? file : "?");
	else if (!*file) /* a pseudo-site: <no python thread>, <stack lost>... */
		snprintf(out, outlen, "%s", r->function);
	else if (g == TUI_GROUP_LINE)
		snprintf(out, outlen, "%s (%s:%d)", r->function, file, r->line);
	else
		snprintf(out, outlen, "%s (%s)", r->function, file);
}

const char *tui_group_heading(enum tui_group g)
{
	switch (g) {
	case TUI_GROUP_FUNCTION:
		return "FUNCTION (FILE)";
	case TUI_GROUP_FILE:
		return "FILE";
	default:
		return "FUNCTION (FILE:LINE)";
	}
}

int tui_sort_parse(const char *name, enum tui_sort *out)
{
	for (int i = 0; i < TUI_SORT_MAX; i++)
		if (!strcmp(name, sort_names[i])) {
			*out = (enum tui_sort)i;
			return 0;
		}
	return -EINVAL;
}

int tui_group_parse(const char *name, enum tui_group *out)
{
	for (int i = 0; i < TUI_GROUP_MAX; i++)
		if (!strcmp(name, group_names[i])) {
			*out = (enum tui_group)i;
			return 0;
		}
	return -EINVAL;
}

const char *tui_sort_name(enum tui_sort sort)
{
	return sort < TUI_SORT_MAX ? sort_names[sort] : "?";
}

const char *tui_group_name(enum tui_group g)
{
	return g < TUI_GROUP_MAX ? group_names[g] : "?";
}

/* ---- The terminal ---- */

int tui_open(struct tui **out, struct pms_error *err)
{
	const char *term = getenv("TERM");
	struct tui *t;

	*out = NULL;
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
		return pms_error_set(err, ENOTTY,
				     "the live view needs a terminal on stdin and stdout");
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	/* file names may be UTF-8; only the character type, so numbers keep their '.' */
	setlocale(LC_CTYPE, "");
	/* newterm, unlike initscr, returns an error instead of exiting */
	t->screen = newterm(NULL, stdout, stdin);
	if (!t->screen) {
		free(t);
		return pms_error_set(err, ENOTTY,
				     "cannot drive this terminal (TERM=%s); redirect stdout to a "
				     "file for plain-text snapshots",
				     term ? term : "unset");
	}
	set_term(t->screen);
	cbreak(); /* Ctrl-C stays a signal: the caller's handler ends the loop */
	noecho();
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	set_escdelay(25);
	curs_set(0);
	if (has_colors() && start_color() == OK) {
		use_default_colors();
		init_pair(PAIR_LEAK, COLOR_RED, -1);
		t->color = true;
	}
	*out = t;
	return 0;
}

void tui_close(struct tui *t)
{
	if (!t)
		return;
	curs_set(1);
	endwin();
	delscreen(t->screen);
	free(t);
}

int tui_getkey(struct tui *t)
{
	int k;

	(void)t;
	k = getch();
	return k == ERR ? -1 : k;
}

/* Bytes of the first `cols` characters of s (UTF-8), so that clipping never splits one. */
static int clip_bytes(const char *s, int cols)
{
	int i = 0, n = 0;

	while (s[i] && n < cols) {
		i++;
		while ((s[i] & 0xc0) == 0x80)
			i++;
		n++;
	}
	return i;
}

static int text_cols(const char *s)
{
	int n = 0;

	for (; *s; s++)
		if ((*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* Writes s at (y, x), clipped to the screen width. */
static void put(int y, int x, const char *s)
{
	int w = getmaxx(stdscr);

	if (x >= w)
		return;
	mvaddnstr(y, x, s, clip_bytes(s, w - x));
}

static void put_right(int y, const char *s)
{
	int w = getmaxx(stdscr), n = text_cols(s);

	put(y, n < w ? w - n : 0, s);
}

static void format_signed(double bytes, char *out, size_t outlen)
{
	char b[24];

	report_format_bytes(bytes, b, sizeof(b));
	snprintf(out, outlen, "%s%s", bytes > 0 ? "+" : "", b);
}

static size_t visible_rows(void)
{
	int h = getmaxy(stdscr) - TUI_HEAD_LINES - 1;

	return h > 0 ? (size_t)h : 0;
}

static const struct tui_row *selected_row(const struct tui_view *v)
{
	return v->nrows && v->selected < v->nrows ? &v->rows[v->selected] : NULL;
}

static void draw_header(const struct tui_view *v)
{
	const struct tui_header *h = &v->hdr;
	char line[512], a[32], b[32], c[32], d[32];

	attron(A_BOLD);
	snprintf(line, sizeof(line), "pid %d (%s)  Python %s %s  events: %s", h->pid, h->comm,
		 h->python, h->build, h->events);
	put(0, 0, line);
	attroff(A_BOLD);
	snprintf(line, sizeof(line), "  %s%.0f s", v->paused ? "PAUSED  " : "", h->elapsed);
	if (v->paused)
		attron(A_REVERSE);
	put_right(0, line);
	if (v->paused)
		attroff(A_REVERSE);

	report_format_bytes((double)h->rss, a, sizeof(a));
	format_signed(h->rss_rate, b, sizeof(b));
	format_signed((double)h->rss_change, c, sizeof(c));
	format_signed(h->charged_rate, d, sizeof(d));
	snprintf(line, sizeof(line), "RSS %s  %s/s  (%s since attaching)   charged %s/s", a, b, c,
		 d);
	put(1, 0, line);
	snprintf(line, sizeof(line), "samples %.0f/s  drops %llu  sampled out %llu  sites %zu%s%s",
		 h->samples_rate, (unsigned long long)h->drops, (unsigned long long)h->sampled_out,
		 h->nsites, h->note ? "  " : "", h->note ? h->note : "");
	put(2, 0, line);
	snprintf(line, sizeof(line), "group: %s  sort: %s (%s)  rates over %.0f s  ? for keys",
		 tui_group_name(v->group), tui_sort_name(v->sort),
		 v->ascending ? "ascending" : "descending", h->window);
	put(3, 0, line);
}

static bool column_shown(const struct tui_view *v, const struct column *c)
{
	return c->sort != TUI_SORT_ALLOC || v->hdr.show_alloc;
}

/* The text of a numeric cell. */
static void cell_text(const struct tui_row *r, enum tui_sort col, char *out, size_t outlen)
{
	switch (col) {
	case TUI_SORT_RESIDENT:
		report_format_bytes((double)r->resident, out, outlen);
		break;
	case TUI_SORT_GROWTH:
		format_signed(r->rate, out, outlen);
		break;
	case TUI_SORT_ALLOC:
		report_format_bytes((double)r->allocated, out, outlen);
		break;
	case TUI_SORT_LEAK:
		if (r->leak.candidate)
			snprintf(out, outlen, "%.2f", r->leak.confidence);
		else
			snprintf(out, outlen, "-");
		break;
	case TUI_SORT_SAMPLES:
		snprintf(out, outlen, "%llu", (unsigned long long)r->samples);
		break;
	default:
		out[0] = '\0';
	}
}

static void draw_table(struct tui *t, struct tui_view *v)
{
	int w = getmaxx(stdscr), x = 1, y = TUI_HEAD_LINES - 1;
	size_t nvis = visible_rows();
	char cell[64], label[1024];

	/* keep the selection on screen */
	if (v->selected < v->first)
		v->first = v->selected;
	if (nvis && v->selected >= v->first + nvis)
		v->first = v->selected - nvis + 1;
	if (v->first + nvis > v->nrows)
		v->first = v->nrows > nvis ? v->nrows - nvis : 0;

	/* the headings in reverse video, the sorting one also bold and underlined */
	attron(A_REVERSE);
	mvhline(y, 0, ' ', w);
	for (size_t c = 0; c < NCOLUMNS; c++) {
		if (!column_shown(v, &columns[c]))
			continue;
		/* an allocator source's resident column is what is allocated and not freed */
		snprintf(cell, sizeof(cell), "%*s", columns[c].width,
			 columns[c].sort == TUI_SORT_RESIDENT && v->hdr.show_alloc
			     ? "LIVE"
			     : columns[c].title);
		attr_set(columns[c].sort == v->sort ? A_REVERSE | A_BOLD | A_UNDERLINE : A_REVERSE,
			 0, NULL);
		put(y, x, cell);
		x += columns[c].width + COLUMN_GAP;
	}
	attr_set(v->sort == TUI_SORT_NAME ? A_REVERSE | A_BOLD | A_UNDERLINE : A_REVERSE, 0, NULL);
	put(y, x, tui_group_heading(v->group));
	attr_set(A_NORMAL, 0, NULL);

	if (!v->nrows)
		put(y + 1, 1, "(no growth charged yet)");
	for (size_t i = v->first; i < v->nrows && i < v->first + nvis; i++) {
		const struct tui_row *r = &v->rows[i];
		int room;

		y++;
		x = 1;
		if (i == v->selected)
			put(y, 0, ">");
		for (size_t c = 0; c < NCOLUMNS; c++) {
			char text[32];
			bool hot = columns[c].sort == TUI_SORT_LEAK && r->leak.candidate;

			if (!column_shown(v, &columns[c]))
				continue;
			cell_text(r, columns[c].sort, text, sizeof(text));
			snprintf(cell, sizeof(cell), "%*s", columns[c].width, text);
			if (hot)
				attron(A_BOLD | (t->color ? COLOR_PAIR(PAIR_LEAK) : 0));
			put(y, x, cell);
			if (hot)
				attroff(A_BOLD | (t->color ? COLOR_PAIR(PAIR_LEAK) : 0));
			x += columns[c].width + COLUMN_GAP;
		}
		/* the full path when it fits, else the file's last component */
		room = w - x;
		tui_row_label(r, v->group, false, label, sizeof(label));
		if (text_cols(label) > room)
			tui_row_label(r, v->group, true, label, sizeof(label));
		put(y, x, label);
		if (i == v->selected)
			mvchgat(y, 0, -1, A_REVERSE, 0, NULL);
	}
}

static void draw_footer(const struct tui_view *v, const char *text)
{
	int h = getmaxy(stdscr), w = getmaxx(stdscr);

	attron(A_REVERSE);
	mvhline(h - 1, 0, ' ', w);
	put(h - 1, 0, text);
	if (v->paused)
		put_right(h - 1, "PAUSED ");
	attroff(A_REVERSE);
}

static void draw_help(void)
{
	int h = getmaxy(stdscr);

	for (size_t i = 0; i < sizeof(help_lines) / sizeof(help_lines[0]) && (int)i < h - 1; i++) {
		if (i == 0 || !strcmp(help_lines[i], "Columns"))
			attron(A_BOLD);
		put((int)i, 0, help_lines[i]);
		attroff(A_BOLD);
	}
}

static void draw_stack(struct tui_view *v)
{
	const struct tui_row *r = selected_row(v);
	int h = getmaxy(stdscr), y = 2;
	char label[1024], line[1200];
	size_t nvis = h > 4 ? (size_t)(h - 4) : 0;

	if (!r) {
		v->stack = false;
		return;
	}
	tui_row_label(r, v->group, false, label, sizeof(label));
	snprintf(line, sizeof(line), "Stack of %s", label);
	attron(A_BOLD);
	put(0, 0, line);
	attroff(A_BOLD);
	if (!r->stack_len) {
		put(y, 2,
		    "(no Python stack: this growth happened outside Python frames, or its stack "
		    "was lost)");
		return;
	}
	snprintf(line, sizeof(line),
		 "%zu frames, innermost first: the stack that charged %s the most", r->stack_len,
		 r->sites > 1 ? "its biggest site" : "it");
	put(1, 0, line);
	if (v->stack_first + nvis > r->stack_len)
		v->stack_first = r->stack_len > nvis ? r->stack_len - nvis : 0;
	for (size_t f = v->stack_first; f < r->stack_len && f < v->stack_first + nvis; f++) {
		snprintf(line, sizeof(line), "  #%-3zu %s  (%s:%d)", f, r->stack[f].function,
			 r->stack[f].file, r->stack[f].line);
		put(y++, 0, line);
	}
}

void tui_draw(struct tui *t, struct tui_view *v)
{
	int h = getmaxy(stdscr), w = getmaxx(stdscr);

	erase();
	if (h < TUI_MIN_HEIGHT || w < TUI_MIN_WIDTH) {
		char line[128];

		snprintf(line, sizeof(line), "too small: %dx%d < %dx%d (q quits)", w, h,
			 TUI_MIN_WIDTH, TUI_MIN_HEIGHT);
		put(0, 0, line);
	} else if (v->help) {
		draw_help();
		draw_footer(v, " any key closes this help   q quit");
	} else if (v->stack && selected_row(v)) {
		draw_stack(v);
		draw_footer(v, " j/k scroll   Enter/Esc back   p pause   q quit");
	} else {
		v->stack = false;
		draw_header(v);
		draw_table(t, v);
		draw_footer(v, " q quit  ? help  j/k select  Enter stack  p pause  "
			       "r g l s n sort  1 2 3 group");
	}
	refresh();
}

/* ---- Keys ---- */

static void remember_selection(struct tui_view *v)
{
	const struct tui_row *r = selected_row(v);

	v->has_sel = r != NULL;
	if (r) {
		v->sel_function = r->function;
		v->sel_file = r->file;
		v->sel_line = r->line;
	}
}

void tui_reselect(struct tui_view *v)
{
	if (v->has_sel)
		for (size_t i = 0; i < v->nrows; i++) {
			const struct tui_row *r = &v->rows[i];

			if (r->function == v->sel_function && r->file == v->sel_file &&
			    r->line == v->sel_line) {
				v->selected = i;
				return;
			}
		}
	/* the row is gone (or nothing was selected): keep the position */
	if (v->selected >= v->nrows)
		v->selected = v->nrows ? v->nrows - 1 : 0;
	remember_selection(v);
}

static void move_selection(struct tui_view *v, long delta)
{
	long s = (long)v->selected + delta;

	if (!v->nrows)
		return;
	if (s < 0)
		s = 0;
	if (s >= (long)v->nrows)
		s = (long)v->nrows - 1;
	v->selected = (size_t)s;
	remember_selection(v);
}

static enum tui_action set_sort(struct tui_view *v, enum tui_sort s)
{
	if (s == TUI_SORT_ALLOC && !v->hdr.show_alloc)
		return TUI_NONE;
	if (v->sort == s) {
		v->ascending = !v->ascending;
	} else {
		v->sort = s;
		v->ascending = !tui_sort_descending_default(s);
	}
	return TUI_RESORT;
}

static enum tui_action set_group(struct tui_view *v, enum tui_group g)
{
	if (v->group == g)
		return TUI_NONE;
	v->group = g;
	/* rows of another grouping have other identities: start at the top */
	v->has_sel = false;
	v->selected = 0;
	v->first = 0;
	return TUI_REGROUP;
}

static enum tui_action stack_key(struct tui_view *v, int key)
{
	long page = (long)visible_rows();

	switch (key) {
	case 'j':
	case KEY_DOWN:
		v->stack_first++; /* clamped when drawn */
		return TUI_REDRAW;
	case 'k':
	case KEY_UP:
		if (v->stack_first)
			v->stack_first--;
		return TUI_REDRAW;
	case KEY_NPAGE:
		v->stack_first += (size_t)page;
		return TUI_REDRAW;
	case KEY_PPAGE:
		v->stack_first = v->stack_first > (size_t)page ? v->stack_first - (size_t)page : 0;
		return TUI_REDRAW;
	case TUI_KEY_ESC:
	case '\n':
	case '\r':
	case KEY_ENTER:
	case 't':
	case KEY_LEFT:
	case KEY_BACKSPACE:
		v->stack = false;
		return TUI_REDRAW;
	default:
		return TUI_NONE;
	}
}

enum tui_action tui_key(struct tui_view *v, int key)
{
	long page = (long)visible_rows();

	if (key == KEY_RESIZE)
		return TUI_REDRAW;
	if (key == TUI_KEY_CTRL_L) {
		clearok(curscr, TRUE);
		return TUI_REDRAW;
	}
	if (key == 'q' || key == 'Q')
		return TUI_QUIT;
	if (v->help) {
		v->help = false;
		return TUI_REDRAW;
	}
	if (key == '?' || key == KEY_F(1)) {
		v->help = true;
		return TUI_REDRAW;
	}
	if (key == 'p' || key == ' ') {
		v->paused = !v->paused;
		return v->paused ? TUI_REDRAW : TUI_RESUME;
	}
	if (v->stack)
		return stack_key(v, key);
	for (size_t c = 0; c < NCOLUMNS; c++)
		if (key == columns[c].key)
			return set_sort(v, columns[c].sort);
	switch (key) {
	case KEY_NAME:
		return set_sort(v, TUI_SORT_NAME);
	case '1':
		return set_group(v, TUI_GROUP_LINE);
	case '2':
		return set_group(v, TUI_GROUP_FUNCTION);
	case '3':
		return set_group(v, TUI_GROUP_FILE);
	case '\t':
		return set_group(v, (enum tui_group)((v->group + 1) % TUI_GROUP_MAX));
	case 'j':
	case KEY_DOWN:
		move_selection(v, 1);
		return TUI_REDRAW;
	case 'k':
	case KEY_UP:
		move_selection(v, -1);
		return TUI_REDRAW;
	case KEY_NPAGE:
		move_selection(v, page);
		return TUI_REDRAW;
	case KEY_PPAGE:
		move_selection(v, -page);
		return TUI_REDRAW;
	case KEY_HOME:
		move_selection(v, -(long)v->nrows);
		return TUI_REDRAW;
	case KEY_END:
		move_selection(v, (long)v->nrows);
		return TUI_REDRAW;
	case '\n':
	case '\r':
	case KEY_ENTER:
	case 't':
	case KEY_RIGHT:
		if (!selected_row(v))
			return TUI_NONE;
		v->stack = true;
		v->stack_first = 0;
		return TUI_REDRAW;
	default:
		return TUI_NONE;
	}
}
