/*
 * buf.h - a growable byte buffer for the ctx command-line tool.
 *
 * Output of the CLI (JSON documents, table cells) is built in a buf and written
 * at once. A buf whose allocation failed keeps its old content and sets `oom`;
 * later appends are ignored, so callers check once at the end (buf_ok).
 */
#ifndef CTX_CLI_BUF_H
#define CTX_CLI_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct buf {
	char *data; /* NUL-terminated while not oom */
	size_t len;
	size_t cap;
	bool oom;
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_reset(buf *b); /* empty it, keep the memory */
void buf_append(buf *b, const void *p, size_t n);
void buf_puts(buf *b, const char *s);
void buf_putc(buf *b, char c);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool buf_ok(const buf *b);

/* Take the data (malloc'd, NUL-terminated) and leave b empty. NULL on oom. */
char *buf_take(buf *b);

#endif
