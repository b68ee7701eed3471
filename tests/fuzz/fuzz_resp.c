/*
 * fuzz_resp.c - libFuzzer target: ctxd's RESP request parser (src/server/resp.c).
 *
 * Input: byte 0 chooses the limits, byte 1 seeds the split points, the rest
 * is what a client sends (any mix of multibulk frames and inline lines).
 *   byte 0 bits 0-1: max_inline 65536, 16, 64 or 256 bytes
 *          bit 2:    unauthenticated limits (10 arguments, 16384-byte bulks)
 *          bit 3:    tiny limits (4 arguments, 8-byte bulks)
 *
 * The stream is parsed twice, as a connection does (net.c, process_input):
 * parse a request, drop the bytes it took, stop at the first malformed one.
 *   WHOLE: all the bytes in one buffer.
 *   SPLIT: the bytes arrive in pieces of 1 to 64 bytes (lengths from a
 *     generator seeded by byte 1); each arrival goes to a new heap buffer of
 *     exactly the bytes held (the old one is freed, so a stale argument
 *     pointer is a use-after-free for ASan), and after the requests of an
 *     arrival are run the unconsumed bytes are moved to the buffer's start.
 * Both must give the same requests (bytes consumed, arguments), the same
 * malformed request with the same message, and the same incomplete tail.
 * Besides: every argument lies inside the bytes its request consumed, no
 * request has more arguments or longer bulks than the limits, an inline
 * request still incomplete is shorter than max_inline, and each request
 * encoded again as a multibulk frame (resp_add_header, resp_add_bulk) parses
 * back to the same arguments. Memory errors and undefined behaviour are the
 * sanitizers' to catch; an endless loop or quadratic rescans show up as a
 * timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "resp.h"

/* One request found: its length, its arguments (copied), or the error. */
typedef struct found {
	ssize_t r; /* bytes consumed, or RESP_MALFORMED */
	size_t argc;
	char *args; /* argc times (u64 length, bytes) */
	size_t args_len;
	char *error; /* a copy: it may point into the frame */
} found;

typedef struct result {
	found *v;
	size_t n, cap;
	size_t tail; /* bytes left over, incomplete */
} result;

static resp_limits limits_for(uint8_t b)
{
	static const size_t inl[4] = {65536, 16, 64, 256};
	resp_limits l = {512u << 20, 1024 * 1024, inl[b & 3], false};
	if (b & 4)
		l = (resp_limits){16384, 10, l.max_inline, true};
	if (b & 8) {
		l.max_args = 4;
		l.max_bulk = 8;
	}
	return l;
}

/* The checks on one complete request at buf[0..r). */
static void check_request(const resp_frame *f, const char *buf, ssize_t r, size_t len,
                          const resp_limits *lim)
{
	if (r <= 0 || (size_t)r > len)
		fuzz_fail("resp_parse consumed %zd of %zu bytes", r, len);
	if (f->argc > lim->max_args)
		fuzz_fail("a request of %zu arguments, limit %zu", f->argc, lim->max_args);
	for (size_t i = 0; i < f->argc; i++) {
		const arg *a = &f->argv[i];
		if (a->p < buf || a->p + a->n > buf + r)
			fuzz_fail("argument %zu lies outside its request", i);
		if (buf[0] == '*' && a->n > lim->max_bulk)
			fuzz_fail("a bulk of %zu bytes, limit %zu", a->n, lim->max_bulk);
	}
}

static void record(result *res, const resp_frame *f, ssize_t r)
{
	if (res->n == res->cap) {
		res->cap = res->cap ? res->cap * 2 : 16;
		res->v = xrealloc(res->v, res->cap * sizeof(found));
	}
	found *d = &res->v[res->n++];
	memset(d, 0, sizeof(*d));
	d->r = r;
	if (r == RESP_MALFORMED) {
		d->error = xstrdup(f->error);
		return;
	}
	d->argc = f->argc;
	rbuf b = {0};
	for (size_t i = 0; i < f->argc; i++) {
		uint64_t n = f->argv[i].n;
		rbuf_add(&b, &n, sizeof(n));
		rbuf_add(&b, f->argv[i].p, f->argv[i].n);
	}
	d->args = b.p;
	d->args_len = b.len;
}

static void result_free(result *res)
{
	for (size_t i = 0; i < res->n; i++) {
		free(res->v[i].args);
		free(res->v[i].error);
	}
	free(res->v);
}

/* Encode the request as a multibulk frame and parse it back. */
static void check_roundtrip(const resp_frame *f)
{
	rbuf b = {0};
	resp_add_header(&b, '*', (long long)f->argc);
	for (size_t i = 0; i < f->argc; i++)
		resp_add_bulk(&b, f->argv[i].p, f->argv[i].n);
	char *copy = xmalloc(b.len);
	memcpy(copy, b.p, b.len);
	resp_frame g = {0};
	resp_limits big = {SIZE_MAX, SIZE_MAX, 65536, false};
	ssize_t r = resp_parse(&g, copy, b.len, &big);
	if (r != (ssize_t)b.len || g.argc != f->argc)
		fuzz_fail("a request encoded again parses to %zd bytes, %zu arguments (want %zu, "
		          "%zu)",
		          r, g.argc, b.len, f->argc);
	for (size_t i = 0; i < f->argc; i++)
		if (g.argv[i].n != f->argv[i].n ||
		    (g.argv[i].n && memcmp(g.argv[i].p, f->argv[i].p, g.argv[i].n) != 0))
			fuzz_fail("argument %zu changed in a round trip", i);
	resp_frame_free(&g);
	free(copy);
	rbuf_free(&b);
}

/* Run the requests in buf[*pos..len) as process_input does; true once a
 * request was malformed (the connection is then closed). */
static bool run_requests(resp_frame *f, const char *buf, size_t len, size_t *pos,
                         const resp_limits *lim, result *res)
{
	while (*pos < len) {
		const char *p = buf + *pos;
		size_t left = len - *pos;
		ssize_t r = resp_parse(f, p, left, lim);
		if (r == RESP_INCOMPLETE) {
			if (p[0] != '*' && left >= lim->max_inline)
				fuzz_fail("an inline request of %zu bytes is still incomplete "
				          "(max_inline %zu)",
				          left, lim->max_inline);
			return false;
		}
		if (r == RESP_MALFORMED) {
			if (!f->error || !f->error[0])
				fuzz_fail("a malformed request without a message");
			record(res, f, r);
			resp_frame_reset(f);
			return true;
		}
		if (r < RESP_MALFORMED)
			fuzz_fail("resp_parse returned %zd", r);
		check_request(f, p, r, left, lim);
		record(res, f, r);
		if (f->argc)
			check_roundtrip(f);
		resp_frame_reset(f);
		*pos += (size_t)r;
	}
	return false;
}

static void parse_whole(const uint8_t *data, size_t size, const resp_limits *lim, result *res)
{
	char *buf = xmalloc(size);
	if (size)
		memcpy(buf, data, size);
	resp_frame f = {0};
	size_t pos = 0;
	if (!run_requests(&f, buf, size, &pos, lim, res))
		res->tail = size - pos;
	resp_frame_free(&f);
	free(buf);
}

static void parse_split(const uint8_t *data, size_t size, uint8_t seed, const resp_limits *lim,
                        result *res)
{
	uint32_t x = 0x9e3779b9u ^ seed;
	char *buf = NULL;
	size_t held = 0, fed = 0;
	resp_frame f = {0};
	bool closed = false;
	while (fed < size && !closed) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		size_t piece = 1 + (seed & 0x80 ? x % 64 : x % 8);
		if (piece > size - fed)
			piece = size - fed;
		char *nb = xmalloc(held + piece);
		if (held)
			memcpy(nb, buf, held);
		memcpy(nb + held, data + fed, piece);
		free(buf);
		buf = nb;
		held += piece;
		fed += piece;
		size_t pos = 0;
		closed = run_requests(&f, buf, held, &pos, lim, res);
		if (pos) {
			memmove(buf, buf + pos, held - pos);
			held -= pos;
		}
	}
	if (!closed)
		res->tail = held;
	resp_frame_free(&f);
	free(buf);
}

static void compare(const result *a, const result *b)
{
	size_t n = a->n < b->n ? a->n : b->n;
	for (size_t i = 0; i < n; i++) {
		const found *x = &a->v[i], *y = &b->v[i];
		if (x->r != y->r)
			fuzz_fail("request %zu: whole parsing says %zd, split parsing %zd", i, x->r,
			          y->r);
		if (x->r == RESP_MALFORMED && strcmp(x->error, y->error) != 0)
			fuzz_fail("request %zu: whole parsing says '%s', split parsing '%s'", i,
			          x->error, y->error);
		if (x->argc != y->argc || x->args_len != y->args_len ||
		    (x->args_len && memcmp(x->args, y->args, x->args_len) != 0))
			fuzz_fail("request %zu: whole and split parsing give other arguments", i);
	}
	if (a->n != b->n)
		fuzz_fail("whole parsing finds %zu requests, split parsing %zu", a->n, b->n);
	if (a->tail != b->tail)
		fuzz_fail("whole parsing leaves %zu bytes, split parsing %zu", a->tail, b->tail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	resp_limits lim = limits_for(data[0]);
	result whole = {0}, split = {0};
	parse_whole(data + 2, size - 2, &lim, &whole);
	parse_split(data + 2, size - 2, data[1], &lim, &split);
	compare(&whole, &split);
	result_free(&whole);
	result_free(&split);
	return 0;
}
