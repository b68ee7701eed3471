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
/* Write all of buf at offset off (the file position does not move). For the
 * power-loss table, a write below the file's end overwrites bytes that were
 * zeros (the only such writes libctx makes: log records over a segment's
 * zero-filled, synced tail), so a crash before the next sync turns what it
 * loses of them back into zeros. */
int vfs_pwrite_all(int fd, const void *buf, size_t n, off_t off);
int vfs_sync(int fd); /* fdatasync */
int vfs_sync_dir(const char *dir);
int vfs_mkdir(const char *path, mode_t mode); /* mkdir, then fsync its parent */
int vfs_rename(const char *from, const char *to);
int vfs_unlink(const char *path);
int vfs_truncate(int fd, off_t len);
int vfs_close(int fd);

/* Fault injection, for tests. A countdown of n > 0 makes the nth following
 * call fail with the given errno (then it is off again); space_left >= 0 makes
 * writes fail with ENOSPC once that many more bytes were written. With
 * flip_tmp_write set, the first write to the next file opened whose name ends
 * in ".tmp" (a checkpoint being written) stores one bit flipped and reports
 * success, as a disk that stores wrong (then it is off again). With
 * keep_unlinked set, vfs_unlink reports success and removes nothing (a test
 * keeps the files a close would delete). With hold_zero_writes set, a
 * vfs_pwrite_all of zeros only (the log's preallocation: a record is never
 * all zeros) counts itself in zero_writes_held and waits until it is
 * cleared or, numbered n from 1, until zero_writes_let reaches n (a test
 * holds the writing of the next chunk, or lets it go one write at a time). */
typedef struct vfs_faults {
	atomic_long write_countdown;
	atomic_int write_errno;
	atomic_long sync_countdown;
	atomic_int sync_errno;
	atomic_llong space_left; /* -1 = unlimited */
	atomic_bool flip_tmp_write;
	atomic_bool keep_unlinked;
	atomic_bool hold_zero_writes;
	atomic_long zero_writes_held;
	atomic_long zero_writes_let;
	atomic_int fault_tid; /* not 0: the countdowns count only this thread's calls (gettid) */
} vfs_faults;
extern vfs_faults ctx_vfs_faults;
void vfs_faults_reset(void);

/* Power-loss simulation, for tests: vfs_sim_enable maps a table shared with
 * child processes (call it before fork) that tracks, per file, its size and
 * the size last synced, and which directories were fsynced. After the writer
 * is killed, vfs_sim_crash_with throws away what a power cut may lose:
 *   VFS_SIM_CUT      every tracked file back to what was synced;
 *   VFS_SIM_TEAR     plus a random prefix of the rest (one torn write);
 *   VFS_SIM_PAGES    each 4 KiB page of the unsynced bytes independently
 *                    kept, lost (zeros or garbage) or kept as a random
 *                    prefix, and the size kept whole or cut at random
 *                    (page writeback has no order);
 *   (bytes overwritten in place since the last sync, vfs_pwrite_all below
 *   the end, go back to zeros: all of them with CUT, all but a random prefix
 *   with TEAR, page by page with PAGES: kept, zeros, or a prefix kept)
 *   VFS_SIM_ENTRIES  (added to one of the above) files created whose
 *                    directory was not fsynced since are lost, and so is a
 *                    directory whose parent was never fsynced, below a root
 *                    declared with vfs_sim_durable_root.
 * vfs_sim_crash(tear, seed) is VFS_SIM_TEAR or VFS_SIM_CUT. A crash forgets
 * every file, synced directory and root. */
#define VFS_SIM_CUT     0u
#define VFS_SIM_TEAR    1u
#define VFS_SIM_PAGES   2u
#define VFS_SIM_ENTRIES 4u
bool vfs_sim_enable(void);
void vfs_sim_durable_root(const char *dir);
void vfs_sim_crash_with(unsigned how, unsigned seed);
void vfs_sim_crash(bool tear, unsigned seed);
void vfs_sim_disable(void);

#endif
