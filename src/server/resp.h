/*
 * resp.h - RESP, the Redis protocol: an incremental request parser that never
 * copies, and the encoding of replies (RESP2 and RESP3).
 *
 * PARSER (in the style of picohttpparser)
 *   resp_parse looks at the bytes of the connection's input from the start of
 *   the next request and returns the number of bytes the request took, or
 *   RESP_INCOMPLETE (call again with more bytes), or RESP_MALFORMED (the frame
 *   can never become valid; f->error says why). The arguments it hands out
 *   point into the caller's buffer. A frame that arrives in pieces is not
 *   parsed again from its start: the frame keeps how far it got (arguments
 *   found, bytes consumed), and if the caller moved its buffer (realloc,
 *   memmove) the argument pointers are moved with it. Nothing is allocated
 *   because of a declared length: the argument vector grows with the
 *   arguments actually received, and a bulk's bytes are only looked at once
 *   they are all there. Every header line is bounded (max_inline).
 *
 *   Two request forms, as in Redis: a multibulk array of bulk strings
 *   (*N\r\n$L\r\n...\r\n), and an inline line of words separated by blanks
 *   ("PING\r\n", for telnet); an inline word may be quoted with "..." or
 *   '...' to hold blanks (no escape sequences). A frame of zero arguments
 *   (*0, *-1 or an empty line) is consumed with argc 0.
 *
 * REPLIES
 *   rbuf is a growable byte buffer; the resp_add_* functions append one RESP
 *   element. Out of memory is fatal (as in Redis): xrealloc aborts.
 */
#ifndef CTXD_RESP_H
#define CTXD_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server.h"

#define RESP_INCOMPLETE (-2)
#define RESP_MALFORMED  (-1)

typedef struct resp_limits {
	size_t max_bulk;   /* longest bulk argument, bytes (proto-max-bulk-len) */
	size_t max_args;   /* most arguments of one request                   */
	size_t max_inline; /* longest inline request or header line, bytes     */
	bool unauth;       /* the limits are those of an unauthenticated client
	                      (only changes the error messages)                 */
} resp_limits;

typedef struct resp_frame {
	arg *argv; /* the arguments found so far (complete frame: all)    */
	size_t argc;
	size_t cap;
	const char *error; /* RESP_MALFORMED: what, without "Protocol error: " */
	/* Resumable state of a multibulk frame (private). */
	const char *base; /* the buffer of the previous call               */
	size_t nargs;     /* declared count, 0 = header not parsed yet     */
	size_t off;       /* bytes of the frame consumed so far            */
	char errbuf[64];
} resp_frame;

/* Parse the request at buf[0..len). See above. */
ssize_t resp_parse(resp_frame *f, const char *buf, size_t len, const resp_limits *lim);
/* Forget the frame's state (after a complete or malformed frame); keeps the
 * vector for the next one. */
void resp_frame_reset(resp_frame *f);
void resp_frame_free(resp_frame *f);

/* ---- reply encoding ---- */

typedef struct rbuf {
	char *p;
	size_t len, cap;
} rbuf;

void *xrealloc(void *p, size_t n); /* aborts on out of memory */
void *xmalloc(size_t n);
char *xstrdup(const char *s);
void rbuf_reserve(rbuf *b, size_t extra);
void rbuf_add(rbuf *b, const void *p, size_t n);
void rbuf_free(rbuf *b);

void resp_add_header(rbuf *b, char type, long long n);             /* e.g. "*3\r\n"      */
void resp_add_simple(rbuf *b, char type, const char *s, size_t n); /* +s / -s, CR LF
                                                              replaced by blanks */
void resp_add_bulk(rbuf *b, const void *p, size_t n);              /* $n\r\n...\r\n      */
void resp_add_double(rbuf *b, int proto, double d);
/* Format a header into out (at least 24 bytes); returns its length. */
size_t resp_format_header(char *out, char type, long long n);

#endif
