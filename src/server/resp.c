/*
 * resp.c - the RESP request parser and reply encoding (see resp.h).
 *
 * The multibulk parser walks a frame one element at a time and records, after
 * each complete argument, how many bytes of the frame it consumed: a frame
 * that arrives in many reads costs one pass over its bytes, not one per read.
 * Header lines are searched for their CR LF only within max_inline bytes, so
 * a peer sending an endless header is refused once it passes the bound.
 */
#include "resp.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "ctxd: out of memory allocating %zu bytes\n", n);
		abort();
	}
	return q;
}

void *xmalloc(size_t n)
{
	return xrealloc(NULL, n);
}

char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xmalloc(n), s, n);
}

/* ---- parser ------------------------------------------------------------------ */

void resp_frame_reset(resp_frame *f)
{
	f->argc = 0;
	f->nargs = 0;
	f->off = 0;
	f->base = NULL;
	f->error = NULL;
}

void resp_frame_free(resp_frame *f)
{
	free(f->argv);
	memset(f, 0, sizeof(*f));
}

static void push_arg(resp_frame *f, const char *p, size_t n)
{
	if (f->argc == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 16;
		f->argv = xrealloc(f->argv, f->cap * sizeof(arg));
	}
	f->argv[f->argc].p = p;
	f->argv[f->argc].n = n;
	f->argc++;
}

static ssize_t malformed(resp_frame *f, const char *msg)
{
	f->error = msg;
	return RESP_MALFORMED;
}

/* Find the end of the line at p (p[0..len)); bounded by max. Returns the
 * length of the line without CR LF, -2 if incomplete, -1 if too long. */
static ssize_t line_end(const char *p, size_t len, size_t max)
{
	size_t lim = len < max + 2 ? len : max + 2;
	const char *nl = memchr(p, '\n', lim);
	if (!nl)
		return len >= max + 2 ? -1 : -2;
	size_t n = (size_t)(nl - p);
	if (n == 0 || p[n - 1] != '\r')
		return -3; /* a header line must end with CR LF */
	return (ssize_t)(n - 1);
}

/* Parse a decimal integer of exactly n bytes (optional '-'). */
static bool parse_ll(const char *p, size_t n, long long *out)
{
	bool neg = false;
	unsigned long long v = 0;
	if (n > 0 && p[0] == '-') {
		neg = true;
		p++;
		n--;
	}
	if (n == 0 || n > 19)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (unsigned long long)(p[i] - '0');
	}
	if (v > (unsigned long long)INT64_MAX)
		return false;
	*out = neg ? -(long long)v : (long long)v;
	return true;
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

static ssize_t parse_inline(resp_frame *f, const char *buf, size_t len, const resp_limits *lim)
{
	size_t max = lim->max_inline;
	const char *nl = memchr(buf, '\n', len < max ? len : max);
	if (!nl)
		return len >= max ? malformed(f, "too big inline request") : RESP_INCOMPLETE;
	size_t n = (size_t)(nl - buf);
	size_t end = (n > 0 && buf[n - 1] == '\r') ? n - 1 : n;
	size_t i = 0;
	f->argc = 0;
	while (i < end) {
		while (i < end && is_blank(buf[i]))
			i++;
		if (i == end)
			break;
		if (f->argc == lim->max_args)
			return malformed(f, lim->unauth ? "unauthenticated multibulk length"
			                                : "invalid multibulk length");
		if (buf[i] == '"' || buf[i] == '\'') {
			char q = buf[i++];
			const char *close = memchr(buf + i, q, end - i);
			if (!close || ((size_t)(close - buf) + 1 < end && !is_blank(close[1])))
				return malformed(f, "unbalanced quotes in request");
			push_arg(f, buf + i, (size_t)(close - (buf + i)));
			i = (size_t)(close - buf) + 1;
		} else {
			size_t s = i;
			while (i < end && !is_blank(buf[i]))
				i++;
			push_arg(f, buf + s, i - s);
		}
	}
	return (ssize_t)(n + 1);
}

/* Read a header line "<type><int>\r\n" at buf[off]; -2/-1 as resp_parse. */
static ssize_t header(resp_frame *f, const char *buf, size_t len, const resp_limits *lim,
                      const char *too_big, long long *v)
{
	ssize_t n = line_end(buf, len, lim->max_inline);
	if (n == -2)
		return RESP_INCOMPLETE;
	if (n == -1)
		return malformed(f, too_big);
	if (n == -3 || !parse_ll(buf + 1, (size_t)n - 1, v))
		return malformed(f, buf[0] == '*' ? "invalid multibulk length"
		                                  : "invalid bulk length");
	return n + 2;
}

static ssize_t parse_multibulk(resp_frame *f, const char *buf, size_t len, const resp_limits *lim)
{
	long long v;
	if (f->base && f->base != buf)
		for (size_t i = 0; i < f->argc; i++)
			f->argv[i].p = buf + (f->argv[i].p - f->base);
	f->base = buf;
	if (f->nargs == 0) {
		ssize_t h = header(f, buf, len, lim, "too big mbulk count string", &v);
		if (h < 0)
			return h;
		if (v <= 0)
			return h; /* an empty request */
		if ((unsigned long long)v > lim->max_args)
			return malformed(f, lim->unauth ? "unauthenticated multibulk length"
			                                : "invalid multibulk length");
		f->nargs = (size_t)v;
		f->off = (size_t)h;
		f->argc = 0;
	}
	while (f->argc < f->nargs) {
		const char *p = buf + f->off;
		size_t left = len - f->off;
		if (left == 0)
			return RESP_INCOMPLETE;
		if (p[0] != '$') {
			snprintf(f->errbuf, sizeof(f->errbuf), "expected '$', got '%c'",
			         (p[0] >= 0x20 && p[0] < 0x7f) ? p[0] : '?');
			return malformed(f, f->errbuf);
		}
		ssize_t h = header(f, p, left, lim, "too big bulk count string", &v);
		if (h < 0)
			return h;
		if (v < 0 || (unsigned long long)v > lim->max_bulk)
			return malformed(f, lim->unauth ? "unauthenticated bulk length"
			                                : "invalid bulk length");
		size_t need = (size_t)h + (size_t)v + 2;
		if (left < need)
			return RESP_INCOMPLETE;
		if (p[need - 2] != '\r' || p[need - 1] != '\n')
			return malformed(f, "expected CR LF after a bulk string");
		push_arg(f, p + h, (size_t)v);
		f->off += need;
	}
	return (ssize_t)f->off;
}

ssize_t resp_parse(resp_frame *f, const char *buf, size_t len, const resp_limits *lim)
{
	if (len == 0)
		return RESP_INCOMPLETE;
	if (buf[0] == '*')
		return parse_multibulk(f, buf, len, lim);
	f->argc = 0;
	return parse_inline(f, buf, len, lim);
}

/* ---- replies ----------------------------------------------------------------- */

void rbuf_reserve(rbuf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < extra)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

void rbuf_add(rbuf *b, const void *p, size_t n)
{
	rbuf_reserve(b, n);
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

void rbuf_free(rbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

size_t resp_format_header(char *out, char type, long long n)
{
	char tmp[24];
	size_t i = 0;
	unsigned long long v = n < 0 ? (unsigned long long)(-(n + 1)) + 1 : (unsigned long long)n;
	do {
		tmp[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	size_t k = 0;
	out[k++] = type;
	if (n < 0)
		out[k++] = '-';
	while (i)
		out[k++] = tmp[--i];
	out[k++] = '\r';
	out[k++] = '\n';
	return k;
}

void resp_add_header(rbuf *b, char type, long long n)
{
	rbuf_reserve(b, 24);
	b->len += resp_format_header(b->p + b->len, type, n);
}

void resp_add_simple(rbuf *b, char type, const char *s, size_t n)
{
	rbuf_reserve(b, n + 3);
	char *o = b->p + b->len;
	o[0] = type;
	for (size_t i = 0; i < n; i++)
		o[1 + i] = (s[i] == '\r' || s[i] == '\n') ? ' ' : s[i];
	o[n + 1] = '\r';
	o[n + 2] = '\n';
	b->len += n + 3;
}

void resp_add_bulk(rbuf *b, const void *p, size_t n)
{
	rbuf_reserve(b, n + 26);
	b->len += resp_format_header(b->p + b->len, '$', (long long)n);
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len++] = '\r';
	b->p[b->len++] = '\n';
}

void resp_add_double(rbuf *b, int proto, double d)
{
	char tmp[64];
	int n;
	if (isinf(d))
		n = snprintf(tmp, sizeof(tmp), "%s", d > 0 ? "inf" : "-inf");
	else if (isnan(d))
		n = snprintf(tmp, sizeof(tmp), "nan");
	else
		n = snprintf(tmp, sizeof(tmp), "%.17g", d);
	if (proto == 3)
		resp_add_simple(b, ',', tmp, (size_t)n);
	else
		resp_add_bulk(b, tmp, (size_t)n);
}
