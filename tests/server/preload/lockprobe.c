/*
 * lockprobe.c - a preloaded shim (LD_PRELOAD) that tells whether ctxd
 * formats a CLIENT LIST line while it holds a mutex (test_review11_server).
 *
 * It counts, per thread, the mutexes taken through pthread_mutex_lock and
 * pthread_mutex_trylock and not yet given back (ctxd's own locks and those
 * of the libraries it calls through the PLT), and it sees every snprintf
 * of ctxd: one whose format starts as a CLIENT LIST line ("id=%llu addr=")
 * is reported on stderr (ctxd's log) with the count at that moment:
 *
 *     lockprobe: client line formatted holding 1 mutex(es)
 *
 * and "lockprobe: loaded" is written once at start, so a test can tell
 * the shim was there at all. The real functions are glibc's historical
 * aliases (__pthread_mutex_lock@GLIBC_2.2.5 ...), bound by version: no
 * dlsym, which could allocate, and so lock, before it is resolved.
 *
 * Built by CMake as a module (not under sanitizers: their runtime must be
 * first); not part of ctxd.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int real_mutex_lock(pthread_mutex_t *m);
int real_mutex_trylock(pthread_mutex_t *m);
int real_mutex_unlock(pthread_mutex_t *m);
__asm__(".symver real_mutex_lock, __pthread_mutex_lock@GLIBC_2.2.5");
__asm__(".symver real_mutex_trylock, __pthread_mutex_trylock@GLIBC_2.2.5");
__asm__(".symver real_mutex_unlock, __pthread_mutex_unlock@GLIBC_2.2.5");

static __thread int held;

__attribute__((constructor)) static void loaded(void)
{
	static const char msg[] = "lockprobe: loaded\n";
	if (write(2, msg, sizeof(msg) - 1) < 0)
		return;
}

int pthread_mutex_lock(pthread_mutex_t *m)
{
	int r = real_mutex_lock(m);
	if (r == 0)
		held++;
	return r;
}

int pthread_mutex_trylock(pthread_mutex_t *m)
{
	int r = real_mutex_trylock(m);
	if (r == 0)
		held++;
	return r;
}

int pthread_mutex_unlock(pthread_mutex_t *m)
{
	held--;
	return real_mutex_unlock(m);
}

int snprintf(char *s, size_t n, const char *fmt, ...)
{
	if (strncmp(fmt, "id=%llu addr=", 13) == 0) {
		char msg[96];
		int len = snprintf(msg, sizeof(msg),
		                   "lockprobe: client line formatted holding %d mutex(es)\n", held);
		if (len > 0 && write(2, msg, (size_t)len) < 0)
			held += 0;
	}
	va_list ap;
	va_start(ap, fmt);
	int r = vsnprintf(s, n, fmt, ap);
	va_end(ap);
	return r;
}
