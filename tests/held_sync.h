/*
 * held_sync.h - a test program's own fdatasync, which the test can hold
 * (libctx's vfs_sync calls fdatasync; the executable's definition wins at
 * link time). While `hold` is set, every sync waits (counted in `held`)
 * until the test clears it; while `fail_eio` is set, a sync fails with EIO
 * once let go. Shared by test_log_backlog.c, test_review_pending.c and
 * test_review8_backlog.c:
 * include it once, in the test program itself.
 */
#ifndef CTX_TESTS_HELD_SYNC_H
#define CTX_TESTS_HELD_SYNC_H

#include <errno.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_bool hold;
static atomic_int held;                             /* syncs waiting now */
static __attribute__((unused)) atomic_int fail_eio; /* syncs fail with EIO once let go */

int fdatasync(int fd)
{
	if (atomic_load(&hold)) {
		atomic_fetch_add(&held, 1);
		while (atomic_load(&hold)) {
			struct timespec ts = {0, 200 * 1000};
			nanosleep(&ts, NULL);
		}
		atomic_fetch_sub(&held, 1);
	}
	if (atomic_load(&fail_eio)) {
		errno = EIO;
		return -1;
	}
	return (int)syscall(SYS_fdatasync, fd);
}

#endif
