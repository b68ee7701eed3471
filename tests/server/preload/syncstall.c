/*
 * syncstall.c - a preloaded shim (LD_PRELOAD) that holds every fsync and
 * fdatasync of ctxd while the file named by $SYNCSTALL_FILE exists: a log
 * whose disk stalls (test_r23_bounds).
 *
 * Built by CMake as a module (not under sanitizers: their runtime must be
 * first); not part of ctxd.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static void stall(void)
{
	const char *f = getenv("SYNCSTALL_FILE");
	while (f && access(f, F_OK) == 0)
		usleep(10000);
}

int fdatasync(int fd)
{
	static int (*real)(int);
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
	stall();
	return real(fd);
}

int fsync(int fd)
{
	static int (*real)(int);
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "fsync");
	stall();
	return real(fd);
}
