/*
 * table.c - aligned columns for people, and the progress bar.
 *
 * A table keeps every cell until table_print, which measures each column in
 * characters (UTF-8 sequences count once) and pads all but the last column.
 * The progress bar writes to stderr only when stderr is a terminal, at most
 * ten times a second, and erases itself at the end, so that redirected output
 * and logs never contain it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void table_init(table *t, size_t ncols, const char *const *header)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	for (size_t i = 0; i < ncols; i++)
		table_cell(t, header[i]);
}

void table_cell(table *t, const char *text)
{
	if (t->filled == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **cells = realloc(t->cells, cap * sizeof(*cells));
		if (!cells) {
			fputs("ctx: out of memory\n", stderr);
			exit(EXIT_FAIL);
		}
		t->cells = cells;
		t->cap = cap;
	}
	t->cells[t->filled] = strdup(text);
	if (!t->cells[t->filled]) {
		fputs("ctx: out of memory\n", stderr);
		exit(EXIT_FAIL);
	}
	t->filled++;
}

void table_cell_bytes(table *t, const void *p, size_t n)
{
	buf b;
	buf_init(&b);
	cli_display(&b, p, n);
	table_cell(t, b.data ? b.data : "");
	buf_free(&b);
}

void table_cell_u64(table *t, uint64_t v)
{
	char s[24];
	snprintf(s, sizeof(s), "%" PRIu64, v);
	table_cell(t, s);
}

void table_cell_time(table *t, uint64_t us)
{
	char s[40];
	cli_format_time(us, s, sizeof(s));
	table_cell(t, s);
}

/* Width in characters: continuation bytes of UTF-8 do not count. */
static size_t text_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static const char *cell_at(const table *t, size_t r, size_t c)
{
	size_t i = r * t->ncols + c;
	return i < t->filled ? t->cells[i] : "";
}

void table_print(const table *t)
{
	size_t rows = (t->filled + t->ncols - 1) / t->ncols;
	size_t *width = calloc(t->ncols, sizeof(*width));
	if (!width)
		return;
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < t->ncols; c++)
			if (text_width(cell_at(t, r, c)) > width[c])
				width[c] = text_width(cell_at(t, r, c));
	for (size_t r = 0; r < rows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = cell_at(t, r, c);
			fputs(s, stdout);
			if (c + 1 < t->ncols)
				printf("%*s", (int)(width[c] - text_width(s) + 2), "");
		}
		fputc('\n', stdout);
	}
	free(width);
}

void table_free(table *t)
{
	for (size_t i = 0; i < t->filled; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

/* ---- progress ------------------------------------------------------- */

void progress_start(progress *p, const char *what, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->on = isatty(STDERR_FILENO) && !getenv("CTX_NO_PROGRESS");
	p->what = what;
	p->total = total;
}

static void progress_draw(progress *p)
{
	if (p->total) {
		unsigned pct = (unsigned)(p->done >= p->total ? 100 : p->done * 100 / p->total);
		char bar[31];
		unsigned fill = pct * 30 / 100;
		memset(bar, '#', fill);
		memset(bar + fill, '.', 30 - fill);
		bar[30] = '\0';
		fprintf(stderr, "\r%s [%s] %3u%% %" PRIu64 "/%" PRIu64, p->what, bar, pct, p->done,
		        p->total);
	} else {
		fprintf(stderr, "\r%s %" PRIu64, p->what, p->done);
	}
	fflush(stderr);
}

void progress_update(progress *p, uint64_t done)
{
	p->done = done;
	if (!p->on)
		return;
	uint64_t now = cli_now_us();
	if (now - p->last_us < 100000u && done != p->total)
		return;
	p->last_us = now;
	progress_draw(p);
}

void progress_end(progress *p)
{
	if (!p->on)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	p->on = false;
}
