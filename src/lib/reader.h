/*
 * reader.h - bounds-checked parsing of a byte range (log record bodies,
 * checkpoint sections). Every take checks the remaining length first; once a
 * take fails the reader is "bad", every later take fails too and returns
 * zeros, so a parser can read a whole structure and check `bad` once.
 */
#ifndef CTX_READER_H
#define CTX_READER_H

#include <stdbool.h>
#include <stdint.h>

#include "format.h"

typedef struct reader {
	const unsigned char *p, *end;
	bool bad;
} reader;

/* The next n bytes, or NULL (and the reader turns bad). */
static inline const unsigned char *take(reader *r, uint64_t n)
{
	if (r->bad || (uint64_t)(r->end - r->p) < n) {
		r->bad = true;
		return NULL;
	}
	const unsigned char *q = r->p;
	r->p += n;
	return q;
}

static inline uint64_t take_u64(reader *r)
{
	const unsigned char *q = take(r, 8);
	return q ? get_u64(q) : 0;
}

static inline uint32_t take_u32(reader *r)
{
	const unsigned char *q = take(r, 4);
	return q ? get_u32(q) : 0;
}

#endif
