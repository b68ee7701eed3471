/*
 * text_buf.h - a text buffer that grows, for tests that compare stores by
 * dumping them as text (test_replay_inplace.c, test_r14_replay.c).
 */
#ifndef CTX_TEST_TEXT_BUF_H
#define CTX_TEST_TEXT_BUF_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct text {
	char *p;
	size_t n, cap;
} text;

/* Append printf-style to t (aborts without memory). */
static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static void add(text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (t->n + (size_t)len + 1 > t->cap) {
		t->cap = 2 * (t->n + (size_t)len + 1);
		t->p = realloc(t->p, t->cap);
		if (!t->p)
			abort();
	}
	va_start(ap, fmt);
	vsnprintf(t->p + t->n, t->cap - t->n, fmt, ap);
	va_end(ap);
	t->n += (size_t)len;
}

/* qsort comparator of C strings (char *). */
static __attribute__((unused)) int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

#endif
