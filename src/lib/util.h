/*
 * util.h - small helpers shared by the files of libctx: the calling thread's
 * error detail, the clock, argument checks.
 */
#ifndef CTX_UTIL_H
#define CTX_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

/* Record a detail message for ctx_last_error() and return st. */
ctx_status ctx_fail(ctx_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Byte order of keys: memcmp, shorter first on a common prefix. */
int ctx_key_compare(const void *a, size_t alen, const void *b, size_t blen);

/* Wall-clock time in microseconds since 1970. */
uint64_t ctx_now_us(void);

/* CTX_OK if id is a valid context id (1..CTX_ID_MAX bytes, no control bytes);
 * *len receives its length. */
ctx_status ctx_check_id(const char *id, size_t *len);

/* Move *ts forward by ms milliseconds (for absolute deadlines). */
#include <time.h>
void ctx_timespec_add_ms(struct timespec *ts, unsigned ms);

/* Initialise a mutex for short critical sections: adaptive (it spins a little
 * before sleeping, since its holder is about to let go). */
#include <pthread.h>
void ctx_mutex_init(pthread_mutex_t *m);

#endif
