/*
 * util.c - error details, the clock and argument checks.
 *
 * The detail message lives in thread-local storage, so that reporting an error
 * takes no lock and one thread's failure never overwrites another's message.
 */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_error[256];

ctx_status ctx_fail(ctx_status st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return st;
}

const char *ctx_last_error(void)
{
	return last_error;
}

const char *ctx_strerror(ctx_status s)
{
	switch (s) {
	case CTX_OK:
		return "ok";
	case CTX_NOT_FOUND:
		return "not found";
	case CTX_EXISTS:
		return "already exists";
	case CTX_CONFLICT:
		return "version conflict";
	case CTX_LIMIT:
		return "limit reached";
	case CTX_INVALID:
		return "invalid argument";
	case CTX_IO:
		return "I/O error";
	case CTX_CORRUPT:
		return "data corrupt";
	case CTX_NOMEM:
		return "out of memory";
	case CTX_CLOSED:
		return "store closed";
	}
	return "unknown status";
}

uint64_t ctx_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

ctx_status ctx_check_id(const char *id, size_t *len)
{
	if (!id)
		return ctx_fail(CTX_INVALID, "context id is NULL");
	size_t n = strnlen(id, CTX_ID_MAX + 1);
	if (n == 0)
		return ctx_fail(CTX_INVALID, "context id is empty");
	if (n > CTX_ID_MAX)
		return ctx_fail(CTX_INVALID, "context id longer than %d bytes", CTX_ID_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		if (c < 0x20 || c == 0x7f)
			return ctx_fail(CTX_INVALID, "context id has control byte 0x%02x at %zu",
			                c, i);
	}
	*len = n;
	return CTX_OK;
}

void ctx_mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
}

void ctx_timespec_add_ms(struct timespec *ts, unsigned ms)
{
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}
