/*
 * asyncdelay.c - a preloaded shim (LD_PRELOAD) that makes every
 * uv_async_send of a thread other than ctxd's main thread wait
 * ASYNCDELAY_US microseconds before it sends (test_r15_review_srv).
 *
 * A loop that hands a connection to another one (net.c, handoff_push)
 * wakes it with uv_async_send. The delay widens the moment between the
 * hand-over and its wake-up, so that a stopping loop woken by an earlier
 * hand-over takes the descriptor, closes it and ends meanwhile: the late
 * wake-up then went to a closed loop, and libuv 1.44 aborts on that. The
 * main thread's sends (net_stop's SIGTERM wake-ups) are not delayed.
 *
 * Built by CMake as a module (not under sanitizers: their runtime must be
 * first); not part of ctxd.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

int uv_async_send(uv_async_t *h)
{
	static int (*real)(uv_async_t *);
	static long delay = -1;
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "uv_async_send");
	if (delay < 0) {
		const char *e = getenv("ASYNCDELAY_US");
		delay = e ? atol(e) : 0;
	}
	if (delay > 0 && syscall(SYS_gettid) != getpid())
		usleep((useconds_t)delay);
	return real(h);
}
