/*
 * vfs.h - the file system calls libctx makes, in one place.
 *
 * Every write, sync, rename and delete of the log and checkpoints goes through
 * these functions, for two reasons: errors are reported the same way (-1 with
 * errno kept), and tests can inject faults here: fail the Nth write or sync
 * with a chosen errno, run out of space after N bytes, or record how much of
 * each file was synced so that a simulated power loss can throw away the
 * rest (see vfs_sim_*). None of that costs anything when no test asks for it.
 */
#ifndef CTX_VFS_H
#define CTX_VFS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int vfs_open(const char *path, int flags, mode_t mode);
int vfs_write_all(int fd, const void *buf, size_t n); /* 0, or -1 and errno */
int vfs_sync(int fd);                                  /* fdatasync */
int vfs_sync_dir(const char *dir);
int vfs_rename(const char *from, const char *to);
int vfs_unlink(const char *path);
int vfs_truncate(int fd, off_t len);
int vfs_close(int fd);

/* Fault injection, for tests. A countdown of n > 0 makes the nth following
 * call fail with the given errno (then it is off again); space_left >= 0 makes
 * writes fail with ENOSPC once that many more bytes were written. */
typedef struct vfs_faults {
	atomic_long write_countdown;
	int write_errno;
	atomic_long sync_countdown;
	int sync_errno;
	atomic_llong space_left; /* -1 = unlimited */
} vfs_faults;
extern vfs_faults ctx_vfs_faults;
void vfs_faults_reset(void);

/* Power-loss simulation, for tests: vfs_sim_enable maps a table shared with
 * child processes (call it before fork) that tracks, per file, its size and
 * the size last synced. After the writer is killed, vfs_sim_crash cuts every
 * tracked file back to what was synced (tear: plus a random part of the
 * rest, as a torn write would leave). */
bool vfs_sim_enable(void);
void vfs_sim_crash(bool tear, unsigned seed);
void vfs_sim_disable(void);

#endif
