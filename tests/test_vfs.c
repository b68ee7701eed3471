/*
 * test_vfs.c - the file layer (src/lib/vfs.h) and CRC-32C (src/lib/crc32c.h),
 * in-process.
 *
 * test_crash.c drives the power-loss table from forked children that are
 * killed, so their coverage data is lost and the table's own logic is never
 * checked directly. Here everything runs in this process:
 *   - fault injection: write and sync countdowns (with and without an errno),
 *     ENOSPC through space_left (partial writes), reset;
 *   - the plain error paths of every call (bad fd, missing file or dir);
 *   - the power-loss table: sizes and synced sizes per file, reopen, rename
 *     over a tracked file, unlink, truncate, a full table, a crash with and
 *     without a torn tail (files cut exactly to what was synced, or to
 *     somewhere between that and their size), a file that cannot be cut;
 *     pages of unsynced data persisted out of order (kept, zeros, a prefix,
 *     garbage); directory entries lost unless their directory was fsynced;
 *   - a store under the table: data a checkpoint synced survives a crash,
 *     records the OS never synced are gone or, with a torn tail, a prefix of
 *     them is there; the crash image verifies and reopens;
 *   - CRC-32C: the standard check value from both implementations, chaining,
 *     and equality of the hardware and table versions with an independent
 *     bitwise reference on every length 0..300 at every alignment.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "log.h"
#include "store.h"
#include "vfs.h"

/* ---- helpers ---------------------------------------------------------------- */

static int reset_all(void **unused)
{
	vfs_faults_reset();
	ctx_vfs_faults.write_errno = 0;
	ctx_vfs_faults.sync_errno = 0;
	vfs_sim_disable();
	return 0;
}

static long long file_size(const char *path)
{
	struct stat sb;
	if (stat(path, &sb) != 0)
		return -1;
	return (long long)sb.st_size;
}

static char *path_in(const char *dir, const char *name)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);
	assert_non_null(p);
	sprintf(p, "%s/%s", dir, name);
	return p;
}

/* Write n bytes of pattern c through the vfs layer, asserting success. */
static void put_bytes(int fd, size_t n, int c)
{
	unsigned char buf[4096];
	assert_true(n <= sizeof(buf));
	memset(buf, c, n);
	assert_int_equal(vfs_write_all(fd, buf, n), 0);
}

static int open_rw(const char *path)
{
	int fd = vfs_open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	assert_true(fd >= 0);
	return fd;
}

/* ---- fault injection -------------------------------------------------------- */

static void test_write_countdown(void **unused)
{
	char *dir = test_make_dir("vfs-wcount");
	char *p = path_in(dir, "f");
	int fd = open_rw(p);

	/* The third write fails with the chosen errno, and only the third. */
	ctx_vfs_faults.write_errno = EDQUOT;
	atomic_store(&ctx_vfs_faults.write_countdown, 3);
	put_bytes(fd, 10, 'a');
	put_bytes(fd, 10, 'b');
	errno = 0;
	assert_int_equal(vfs_write_all(fd, "xxxxx", 5), -1);
	assert_int_equal(errno, EDQUOT);
	assert_int_equal(file_size(p), 20); /* nothing of the failed write */
	put_bytes(fd, 7, 'c');
	assert_int_equal(file_size(p), 27);
	assert_int_equal(atomic_load(&ctx_vfs_faults.write_countdown), 0);

	/* Without an errno the failure is EIO. */
	ctx_vfs_faults.write_errno = 0;
	atomic_store(&ctx_vfs_faults.write_countdown, 1);
	errno = 0;
	assert_int_equal(vfs_write_all(fd, "y", 1), -1);
	assert_int_equal(errno, EIO);
	put_bytes(fd, 1, 'd');
	assert_int_equal(file_size(p), 28);

	/* A reset turns a pending countdown off. */
	atomic_store(&ctx_vfs_faults.write_countdown, 1);
	vfs_faults_reset();
	put_bytes(fd, 2, 'e');
	assert_int_equal(file_size(p), 30);

	/* The content is exactly the successful writes, in order. */
	assert_int_equal(vfs_close(fd), 0);
	FILE *f = fopen(p, "rb");
	assert_non_null(f);
	char buf[64];
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 30);
	fclose(f);
	assert_memory_equal(buf, "aaaaaaaaaabbbbbbbbbbcccccccdee", 30);

	free(p);
	test_remove_dir(dir);
	free(dir);
}

static void test_sync_countdown(void **unused)
{
	char *dir = test_make_dir("vfs-scount");
	char *p = path_in(dir, "f");
	int fd = open_rw(p);
	put_bytes(fd, 4, 'a');

	ctx_vfs_faults.sync_errno = ENOSPC;
	atomic_store(&ctx_vfs_faults.sync_countdown, 2);
	assert_int_equal(vfs_sync(fd), 0);
	errno = 0;
	assert_int_equal(vfs_sync(fd), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(vfs_sync(fd), 0);

	/* EIO without an errno; a directory sync goes through the same
	 * countdown, and keeps the errno across its close. */
	ctx_vfs_faults.sync_errno = 0;
	atomic_store(&ctx_vfs_faults.sync_countdown, 1);
	errno = 0;
	assert_int_equal(vfs_sync_dir(dir), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(vfs_sync_dir(dir), 0);

	assert_int_equal(vfs_close(fd), 0);
	free(p);
	test_remove_dir(dir);
	free(dir);
}

static void test_space_left(void **unused)
{
	char *dir = test_make_dir("vfs-space");
	char *p = path_in(dir, "f");
	int fd = open_rw(p);

	atomic_store(&ctx_vfs_faults.space_left, 10);
	put_bytes(fd, 4, 'a');
	assert_int_equal(atomic_load(&ctx_vfs_faults.space_left), 6);
	/* A write larger than the space left writes what fits, then ENOSPC. */
	errno = 0;
	assert_int_equal(vfs_write_all(fd, "0123456789", 10), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(file_size(p), 10);
	assert_int_equal(atomic_load(&ctx_vfs_faults.space_left), 0);
	/* Full: nothing more goes in, and an empty write still succeeds. */
	errno = 0;
	assert_int_equal(vfs_write_all(fd, "z", 1), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(vfs_write_all(fd, "", 0), 0);
	assert_int_equal(file_size(p), 10);
	/* Reset: unlimited again. */
	vfs_faults_reset();
	assert_int_equal(atomic_load(&ctx_vfs_faults.space_left), -1);
	put_bytes(fd, 100, 'b');
	assert_int_equal(file_size(p), 110);

	assert_int_equal(vfs_close(fd), 0);
	FILE *f = fopen(p, "rb");
	assert_non_null(f);
	char buf[16];
	assert_int_equal(fread(buf, 1, 10, f), 10);
	fclose(f);
	assert_memory_equal(buf, "aaaa012345", 10);
	free(p);
	test_remove_dir(dir);
	free(dir);
}

/* Every call reports the operating system's failure as -1 with errno. */
static void test_plain_errors(void **unused)
{
	char *dir = test_make_dir("vfs-errors");
	char *p = path_in(dir, "f");
	char *missing = path_in(dir, "missing/f");

	errno = 0;
	assert_int_equal(vfs_open(missing, O_WRONLY | O_CREAT, 0644), -1);
	assert_int_equal(errno, ENOENT);
	errno = 0;
	assert_int_equal(vfs_sync_dir(missing), -1);
	assert_int_equal(errno, ENOENT);
	errno = 0;
	assert_int_equal(vfs_rename(missing, p), -1);
	assert_int_equal(errno, ENOENT);
	errno = 0;
	assert_int_equal(vfs_unlink(missing), -1);
	assert_int_equal(errno, ENOENT);
	errno = 0;
	assert_int_equal(vfs_sync(-1), -1);
	assert_int_equal(errno, EBADF);

	/* A read-only descriptor can be neither written nor truncated. */
	int fd = open_rw(p);
	put_bytes(fd, 3, 'a');
	assert_int_equal(vfs_close(fd), 0);
	int ro = vfs_open(p, O_RDONLY, 0);
	assert_true(ro >= 0);
	errno = 0;
	assert_int_equal(vfs_write_all(ro, "x", 1), -1);
	assert_int_equal(errno, EBADF);
	assert_int_not_equal(vfs_truncate(ro, 0), 0);
	assert_true(errno == EBADF || errno == EINVAL);
	assert_int_equal(vfs_close(ro), 0);
	assert_int_equal(file_size(p), 3);

	free(p);
	free(missing);
	test_remove_dir(dir);
	free(dir);
}

/* ---- the power-loss table ----------------------------------------------------- */

static void test_sim_off(void **unused)
{
	/* Without the table, crash and disable do nothing, and enabling twice
	 * keeps the first table. */
	vfs_sim_crash(true, 1);
	vfs_sim_disable();
	char *dir = test_make_dir("vfs-simoff");
	char *p = path_in(dir, "f");
	int fd = open_rw(p);
	put_bytes(fd, 10, 'a'); /* not tracked: written before the table */
	assert_true(vfs_sim_enable());
	assert_true(vfs_sim_enable());
	put_bytes(fd, 10, 'b'); /* its fd is unknown to the table */
	assert_int_equal(vfs_sync(fd), 0);
	assert_int_equal(vfs_close(fd), 0);
	vfs_sim_crash(false, 1);
	assert_int_equal(file_size(p), 20);
	vfs_sim_disable();
	vfs_sim_disable();
	free(p);
	test_remove_dir(dir);
	free(dir);
}

static void test_sim_sizes(void **unused)
{
	char *dir = test_make_dir("vfs-sim");
	char *a = path_in(dir, "a"), *b = path_in(dir, "b"), *c = path_in(dir, "c");
	char *ro = path_in(dir, "ro"), *gone = path_in(dir, "gone");

	/* A file with content before the table knows it: that content counts
	 * as synced when it is opened for writing. */
	int fd = vfs_open(c, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(vfs_write_all(fd, "0123456789", 10), 0);
	assert_int_equal(vfs_close(fd), 0);
	/* A file only ever opened read-only is not tracked. */
	fd = vfs_open(ro, O_WRONLY | O_CREAT, 0644);
	assert_int_equal(vfs_write_all(fd, "abc", 3), 0);
	assert_int_equal(vfs_close(fd), 0);

	assert_true(vfs_sim_enable());

	int fa = open_rw(a);
	put_bytes(fa, 100, 'a');
	assert_int_equal(vfs_sync(fa), 0);
	put_bytes(fa, 50, 'A'); /* never synced */

	int fb = open_rw(b);
	put_bytes(fb, 30, 'b'); /* nothing synced */

	int fc = open_rw(c);
	put_bytes(fc, 5, 'c');

	int fr = vfs_open(ro, O_RDONLY, 0);
	assert_true(fr >= 0);
	assert_int_equal(vfs_close(fr), 0);

	/* Reopening a tracked file keeps what it knew: the synced size stays,
	 * writes through the new fd count. */
	assert_int_equal(vfs_close(fa), 0);
	fa = open_rw(a);
	put_bytes(fa, 20, 'B');
	assert_int_equal(file_size(a), 170);

	/* Truncating makes the new length synced. */
	int fg = open_rw(gone);
	put_bytes(fg, 8, 'g');
	assert_int_equal(vfs_truncate(fg, 4), 0);
	put_bytes(fg, 6, 'G');
	assert_int_equal(vfs_close(fg), 0);
	/* An unlinked file is forgotten: the crash does not bring it back. */
	char *g2 = path_in(dir, "gone2");
	fg = open_rw(g2);
	put_bytes(fg, 8, 'x');
	assert_int_equal(vfs_close(fg), 0);
	assert_int_equal(vfs_unlink(g2), 0);

	vfs_sim_crash(false, 7);
	assert_int_equal(file_size(a), 100);
	assert_int_equal(file_size(b), 0);
	assert_int_equal(file_size(c), 10);
	assert_int_equal(file_size(ro), 3);
	assert_int_equal(file_size(gone), 4);
	assert_int_equal(file_size(g2), -1);

	/* The crash forgot every file: writes after it are not cut by a second
	 * crash (their fds are no longer known). */
	put_bytes(fa, 10, 'z');
	vfs_sim_crash(false, 8);
	assert_true(file_size(a) > 100);

	assert_int_equal(vfs_close(fa), 0);
	assert_int_equal(vfs_close(fb), 0);
	assert_int_equal(vfs_close(fc), 0);
	vfs_sim_disable();
	free(a);
	free(b);
	free(c);
	free(ro);
	free(gone);
	free(g2);
	test_remove_dir(dir);
	free(dir);
}

static void test_sim_rename(void **unused)
{
	char *dir = test_make_dir("vfs-rename");
	char *tmp = path_in(dir, "x.tmp"), *fin = path_in(dir, "x"), *old = path_in(dir, "old");
	assert_true(vfs_sim_enable());

	/* The file renamed over is forgotten; the renamed one keeps its sizes
	 * under its new name (a checkpoint: write, sync, rename). */
	int fo = open_rw(fin);
	put_bytes(fo, 40, 'o');
	assert_int_equal(vfs_close(fo), 0);

	int ft = open_rw(tmp);
	put_bytes(ft, 64, 't');
	assert_int_equal(vfs_sync(ft), 0);
	put_bytes(ft, 16, 'T');
	assert_int_equal(vfs_close(ft), 0);
	assert_int_equal(vfs_rename(tmp, fin), 0);
	assert_int_equal(vfs_sync_dir(dir), 0);

	/* A rename of an untracked file changes nothing in the table. */
	int fd = open(old, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "12345", 5), 5);
	close(fd);
	char *old2 = path_in(dir, "old2");
	assert_int_equal(vfs_rename(old, old2), 0);
	/* Unlinking an untracked file is fine too. */
	assert_int_equal(vfs_unlink(old2), 0);

	vfs_sim_crash(false, 3);
	assert_int_equal(file_size(fin), 64);
	assert_int_equal(file_size(tmp), -1);
	vfs_sim_disable();
	free(tmp);
	free(fin);
	free(old);
	free(old2);
	test_remove_dir(dir);
	free(dir);
}

/* With a tear, each file keeps what was synced plus a random part of the
 * rest; over many seeds every cut lies in [synced, size] and both ends and
 * the middle occur. */
static void test_sim_tear(void **unused)
{
	char *dir = test_make_dir("vfs-tear");
	char *p = path_in(dir, "f");
	bool saw_synced = false, saw_full = false, saw_between = false;
	for (unsigned seed = 1; seed <= 200 && !(saw_synced && saw_full && saw_between); seed++) {
		unlink(p);
		assert_true(vfs_sim_enable());
		int fd = open_rw(p);
		put_bytes(fd, 10, 's');
		assert_int_equal(vfs_sync(fd), 0);
		put_bytes(fd, 5, 'u');
		assert_int_equal(vfs_close(fd), 0);
		vfs_sim_crash(true, seed);
		long long n = file_size(p);
		assert_true(n >= 10 && n <= 15);
		saw_synced |= n == 10;
		saw_full |= n == 15;
		saw_between |= n > 10 && n < 15;
		vfs_sim_disable();
	}
	assert_true(saw_synced);
	assert_true(saw_full);
	assert_true(saw_between);
	free(p);
	test_remove_dir(dir);
	free(dir);
}

/* A tracked path that cannot be cut (now a directory) stays in the table
 * and is tried again at the next crash; other files are still cut. */
static void test_sim_uncuttable(void **unused)
{
	char *dir = test_make_dir("vfs-uncut");
	char *p = path_in(dir, "f"), *q = path_in(dir, "q");
	assert_true(vfs_sim_enable());
	int fd = open_rw(p);
	put_bytes(fd, 5, 'a');
	assert_int_equal(vfs_close(fd), 0);
	int fq = open_rw(q);
	put_bytes(fq, 5, 'q');
	assert_int_equal(vfs_close(fq), 0);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkdir(p, 0755), 0);
	vfs_sim_crash(false, 1);
	assert_int_equal(file_size(q), 0);
	/* Make it a file again: the second crash cuts it (it was not forgotten). */
	assert_int_equal(rmdir(p), 0);
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "123", 3), 3);
	close(fd);
	vfs_sim_crash(false, 2);
	assert_int_equal(file_size(p), 0);
	vfs_sim_disable();
	free(p);
	free(q);
	test_remove_dir(dir);
	free(dir);
}

/* More files than the table holds: the first 256 are tracked, the rest are
 * left alone by a crash. */
static void test_sim_full_table(void **unused)
{
	char *dir = test_make_dir("vfs-full");
	assert_true(vfs_sim_enable());
	enum { N = 260 };
	char name[32];
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		char *p = path_in(dir, name);
		int fd = open_rw(p);
		put_bytes(fd, 3, 'x');
		assert_int_equal(vfs_close(fd), 0);
		free(p);
	}
	vfs_sim_crash(false, 1);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		char *p = path_in(dir, name);
		assert_int_equal(file_size(p), i < 256 ? 0 : 3);
		free(p);
	}
	vfs_sim_disable();
	test_remove_dir(dir);
	free(dir);
}

/* Pages mode: the synced bytes are untouched; past them, every 4 KiB page is
 * the written bytes, zeros, a prefix of the written bytes then zeros, or
 * garbage, independently; the size is in [synced, size]. Over many seeds,
 * each fate occurs, and a later page survives an earlier lost one. */
static void test_sim_pages(void **unused)
{
	char *dir = test_make_dir("vfs-pages");
	char *p = path_in(dir, "f");
	enum { SYNCED = 1000, PAGES = 6, SIZE = PAGES * 4096 };
	bool kept = false, zeros = false, prefix = false, garbage = false, full = false,
	     shorter = false, later_after_lost = false;
	static unsigned char got[SIZE];
	for (unsigned seed = 1; seed <= 100; seed++) {
		unlink(p);
		assert_true(vfs_sim_enable());
		int fd = open_rw(p);
		put_bytes(fd, SYNCED, 's');
		assert_int_equal(vfs_sync(fd), 0);
		for (long long left = SIZE - SYNCED; left > 0; left -= 4096)
			put_bytes(fd, left < 4096 ? (size_t)left : 4096, 'u');
		assert_int_equal(vfs_close(fd), 0);
		vfs_sim_crash_with(VFS_SIM_PAGES, seed);
		vfs_sim_disable();
		long long n = file_size(p);
		assert_true(n >= SYNCED && n <= SIZE);
		full |= n == SIZE;
		shorter |= n < SIZE;
		FILE *f = fopen(p, "rb");
		assert_non_null(f);
		assert_int_equal(fread(got, 1, (size_t)n, f), (size_t)n);
		fclose(f);
		for (long long i = 0; i < SYNCED; i++)
			assert_int_equal(got[i], 's');
		bool lost_before = false;
		for (long long pg = 0; pg * 4096 < n; pg++) {
			long long lo = pg * 4096 > SYNCED ? pg * 4096 : SYNCED;
			long long hi = (pg + 1) * 4096 < n ? (pg + 1) * 4096 : n;
			long long u = lo, z;
			while (u < hi && got[u] == 'u')
				u++;
			for (z = u; z < hi && got[z] == 0; z++)
				;
			if (u == hi) {
				kept = true;
				later_after_lost |= lost_before && hi - lo > 100;
			} else if (z == hi) {
				*(u == lo ? &zeros : &prefix) = true;
				lost_before |= u == lo;
			} else {
				garbage = true; /* neither written bytes nor zeros */
				lost_before = true;
			}
		}
	}
	assert_true(kept && zeros && prefix && garbage && full && shorter && later_after_lost);
	free(p);
	test_remove_dir(dir);
	free(dir);
}

/* Entries mode: a created file whose directory was not fsynced since is lost;
 * one fsynced is kept. A directory made below the declared root is lost
 * unless its parent was fsynced: vfs_mkdir does that. */
static void test_sim_entries(void **unused)
{
	char *root = test_make_dir("vfs-entries");
	char *synced = path_in(root, "synced"), *unsynced = path_in(root, "unsynced");
	char *old = path_in(root, "old"), *made = path_in(root, "made");
	char *in_made = path_in(made, "g"), *plain = path_in(made, "plain");
	char *in_plain = path_in(plain, "f");
	int fd = open(old, O_WRONLY | O_CREAT | O_CLOEXEC, 0644); /* before the table */
	assert_true(fd >= 0);
	close(fd);
	assert_true(vfs_sim_enable());
	vfs_sim_durable_root(root);
	const char *files[5] = {synced, old, in_made, in_plain, unsynced};
	for (int i = 0; i < 5; i++) {
		if (i == 1)
			assert_int_equal(vfs_sync_dir(root), 0); /* synced's entry */
		if (i == 2) {
			assert_int_equal(vfs_mkdir(made, 0755), 0);  /* root fsynced */
			assert_int_equal(vfs_mkdir(made, 0755), -1); /* (mkdir's errors stay) */
			assert_int_equal(errno, EEXIST);
		}
		if (i == 3)
			assert_int_equal(mkdir(plain, 0755), 0); /* made never fsynced */
		fd = open_rw(files[i]);
		put_bytes(fd, 10, 'x');
		assert_int_equal(vfs_sync(fd), 0);
		assert_int_equal(vfs_close(fd), 0);
		if (i == 3)
			assert_int_equal(vfs_sync_dir(plain), 0);
	}
	vfs_sim_crash_with(VFS_SIM_CUT | VFS_SIM_ENTRIES, 1);
	vfs_sim_disable();
	assert_int_equal(file_size(synced), 10);
	assert_int_equal(file_size(old), 10);
	assert_int_equal(file_size(unsynced), -1); /* created after root's last fsync */
	assert_int_equal(file_size(in_made), -1);  /* made never fsynced */
	assert_true(file_size(made) >= 0);         /* but made itself is there */
	assert_int_equal(file_size(plain), -1);    /* its entry in made was lost */
	free(synced);
	free(unsynced);
	free(old);
	free(made);
	free(in_made);
	free(plain);
	free(in_plain);
	test_remove_dir(root);
	free(root);
}

/* ---- a store under the power-loss table ------------------------------------- */

static ctx_store *open_nosync(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_NONE;
	o.unsafe_no_sync = true;
	return test_open(&o);
}

static ctx_store *open_always(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	return test_open(&o);
}

/* Wait until everything appended is in the file (not synced: durability
 * none writes without fsync). */
static void wait_written(ctx_store *s)
{
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_ok(log_wait(s->log, stats.revision));
}

static void copy_dir(const char *from, const char *to)
{
	test_remove_dir(to);
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s' && rm -f '%s/LOCK'", from, to, to);
	assert_int_equal(system(cmd), 0);
}

/* Sizes of the log segments of dir, by first revision. */
static size_t segment_sizes(const char *dir, unsigned long long *first, long long *size, size_t max)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		unsigned long long v;
		char tail[8];
		if (sscanf(e->d_name, "wal-%16llx.lo%1s", &v, tail) == 2 && n < max) {
			char *p = path_in(dir, e->d_name);
			first[n] = v;
			size[n] = file_size(p);
			n++;
			free(p);
		}
	}
	closedir(d);
	return n;
}

/* Records the OS never synced are lost by a power loss; what the checkpoint
 * synced survives, and the crash image verifies and opens. */
static void test_sim_store_power_loss(void **unused)
{
	char *dir = test_make_dir("vfs-store");
	char *img = test_make_dir("vfs-store-img");
	assert_true(vfs_sim_enable());
	ctx_store *s = open_nosync(dir);
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k1", "v1");
	/* Synced: the checkpoint and the new segment's header; read back intact,
	 * it deleted wal-1 (one generation), so the log is wal-3 alone. */
	assert_ok(ctx_checkpoint(s));
	test_put_str(s, "a", "k2", "v2");
	assert_ok(ctx_create(s, "b"));
	test_put_str(s, "b", "x", "y");
	wait_written(s);

	unsigned long long first[8];
	long long size[8];
	size_t n = segment_sizes(dir, first, size, 8);
	assert_int_equal(n, 1);
	assert_int_equal(first[0], 3);
	bool grown = false;
	for (size_t i = 0; i < n; i++)
		grown |= size[i] > WAL_HEADER_SIZE;
	assert_true(grown); /* the records are in the files, just not synced */

	vfs_sim_crash(false, 1);
	n = segment_sizes(dir, first, size, 8);
	assert_int_equal(n, 1);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(size[i], WAL_HEADER_SIZE); /* only the synced headers */
	copy_dir(dir, img);
	ctx_close(s);
	vfs_sim_disable();

	ctx_verify_report r;
	assert_ok(ctx_verify(img, &r));
	assert_int_equal(r.checkpoint_revision, 2);
	assert_int_equal(r.last_revision, 2);
	assert_int_equal(r.contexts, 1);
	assert_int_equal(r.keys, 1);
	assert_int_equal(r.torn_bytes, 0);
	s = open_always(img);
	assert_int_equal(ctx_count(s), 1);
	assert_true(test_has_str(s, "a", "k1", "v1"));
	assert_false(test_has_str(s, "a", "k2", NULL));
	ctx_state *st;
	assert_int_equal(ctx_get(s, "b", &st), CTX_NOT_FOUND);
	/* It takes writes again, and they last. */
	test_put_str(s, "a", "k3", "v3");
	ctx_close(s);
	s = open_always(img);
	assert_true(test_has_str(s, "a", "k3", "v3"));
	ctx_close(s);

	test_remove_dir(dir);
	test_remove_dir(img);
	free(dir);
	free(img);
}

/* A torn tail: whatever part of the unsynced records a power loss leaves,
 * recovery gives a prefix of the history (never a hole, never garbage). */
static void test_sim_store_torn(void **unused)
{
	char *dir = test_make_dir("vfs-torn");
	char *img = test_make_dir("vfs-torn-img");
	int seen[8] = {0};
	int rounds = (int)test_iters(24, 8);
	for (int round = 0; round < rounds; round++) {
		test_remove_dir(dir);
		assert_int_equal(mkdir(dir, 0755), 0);
		assert_true(vfs_sim_enable());
		ctx_store *s = open_nosync(dir);
		assert_ok(ctx_create(s, "a"));
		test_put_str(s, "a", "k1", "v1");
		assert_ok(ctx_checkpoint(s)); /* a at version 2 is safe */
		char k[8];
		for (int i = 2; i <= 5; i++) {
			snprintf(k, sizeof(k), "k%d", i);
			test_put_str(s, "a", k, "v");
		}
		assert_ok(ctx_create(s, "b"));
		wait_written(s);
		vfs_sim_crash(true, (unsigned)round * 7919u + 1);
		copy_dir(dir, img);
		ctx_close(s);
		vfs_sim_disable();

		ctx_verify_report r;
		ctx_status vst = ctx_verify(img, &r);
		if (vst != CTX_OK)
			fail_msg("round %d: verify: %s", round, r.message);
		s = open_always(img);
		ctx_state *st;
		assert_ok(ctx_get(s, "a", &st));
		uint64_t v = ctx_state_version(st);
		assert_true(v >= 2 && v <= 6);
		/* Exactly k1..k(v-1). */
		assert_int_equal(ctx_state_count(st), v - 1);
		for (int i = 1; i <= 5; i++) {
			snprintf(k, sizeof(k), "k%d", i);
			assert_int_equal(ctx_state_lookup(st, k, strlen(k), NULL, NULL),
			                 i <= (int)v - 1);
		}
		ctx_state_release(st);
		ctx_status bst = ctx_get(s, "b", &st);
		if (bst == CTX_OK) {
			assert_int_equal(v, 6); /* b came after all of a's puts */
			ctx_state_release(st);
		}
		assert_int_equal(ctx_count(s), bst == CTX_OK ? 2 : 1);
		seen[v - 1 + (bst == CTX_OK)]++;
		ctx_close(s);
	}
	/* The cuts are spread: at least the two ends were met. */
	int kinds = 0;
	for (int i = 0; i < 8; i++)
		kinds += seen[i] > 0;
	assert_true(kinds >= 2);
	test_remove_dir(dir);
	test_remove_dir(img);
	free(dir);
	free(img);
}

/* Under durability always, every acknowledged write was synced: a power
 * loss at any moment between writes loses nothing. */
static void test_sim_store_always(void **unused)
{
	char *dir = test_make_dir("vfs-always");
	char *img = test_make_dir("vfs-always-img");
	assert_true(vfs_sim_enable());
	ctx_store *s = open_always(dir);
	assert_ok(ctx_create(s, "a"));
	char k[16];
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		test_put_str(s, "a", k, "v");
		if (i == 9)
			assert_ok(ctx_checkpoint(s));
	}
	assert_ok(ctx_point_create(s, "a", "p", NULL));
	assert_ok(ctx_drop(s, "a"));
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "after", "drop");
	char *want = test_dump_store(s, true, NULL);
	vfs_sim_crash(true, 5);
	copy_dir(dir, img);
	ctx_close(s);
	vfs_sim_disable();
	s = open_always(img);
	char *got = test_dump_store(s, true, NULL);
	test_expect_same_dump(want, got, "after a power loss under durability always");
	free(got);
	free(want);
	ctx_close(s);
	test_remove_dir(dir);
	test_remove_dir(img);
	free(dir);
	free(img);
}

/* ---- CRC-32C ---------------------------------------------------------------- */

/* Bit by bit, straight from the definition: an independent reference. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t n)
{
	crc = ~crc;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

static void test_crc_check_value(void **unused)
{
	const char *s = "123456789";
	assert_true(crc32c(0, s, 9) == 0xE3069283u);
	assert_true(crc32c_portable(0, s, 9) == 0xE3069283u);
	assert_true(crc_bitwise(0, (const unsigned char *)s, 9) == 0xE3069283u);
	/* Empty input leaves the crc as it is. */
	assert_true(crc32c(0, s, 0) == 0);
	assert_true(crc32c_portable(0, s, 0) == 0);
	assert_true(crc32c(0x12345678u, s, 0) == 0x12345678u);
	assert_true(crc32c_portable(0x12345678u, s, 0) == 0x12345678u);
	/* Other known values: 32 zero bytes, 32 0xff bytes (RFC 3720 B.4). */
	unsigned char z[32];
	memset(z, 0, sizeof(z));
	assert_true(crc32c(0, z, 32) == 0x8A9136AAu);
	assert_true(crc32c_portable(0, z, 32) == 0x8A9136AAu);
	memset(z, 0xff, sizeof(z));
	assert_true(crc32c(0, z, 32) == 0x62A8AB43u);
	assert_true(crc32c_portable(0, z, 32) == 0x62A8AB43u);
	/* Chaining: the crc of a whole is the crc of its second part started
	 * from the crc of the first. */
	for (size_t cut = 0; cut <= 9; cut++) {
		assert_true(crc32c(crc32c(0, s, cut), s + cut, 9 - cut) == 0xE3069283u);
		assert_true(crc32c_portable(crc32c_portable(0, s, cut), s + cut, 9 - cut) ==
		            0xE3069283u);
	}
}

static void test_crc_random(void **unused)
{
	uint64_t rng = test_seed("crc", 42);
	unsigned char *buf = malloc(300 + 16);
	assert_non_null(buf);
	for (size_t i = 0; i < 316; i++)
		buf[i] = (unsigned char)test_rand(&rng);
	for (size_t len = 0; len <= 300; len++) {
		for (size_t align = 0; align < 16; align++) {
			const unsigned char *p = buf + align;
			uint32_t seed = (uint32_t)test_rand(&rng);
			uint32_t want = crc_bitwise(seed, p, len);
			uint32_t hw = crc32c(seed, p, len), sw = crc32c_portable(seed, p, len);
			if (hw != want || sw != want)
				fail_msg(
				    "len %zu align %zu: bitwise %08x crc32c %08x portable %08x",
				    len, align, want, hw, sw);
		}
	}
	/* A single flipped bit always changes the crc. */
	for (size_t bit = 0; bit < 300 * 8; bit += 13) {
		uint32_t before = crc32c(0, buf, 300);
		buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		assert_true(crc32c(0, buf, 300) != before);
		assert_true(crc32c_portable(0, buf, 300) == crc32c(0, buf, 300));
		buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_write_countdown, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sync_countdown, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_space_left, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_plain_errors, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_off, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_sizes, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_rename, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_tear, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_uncuttable, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_full_table, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_pages, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_entries, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_store_power_loss, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_store_torn, reset_all, reset_all),
	    cmocka_unit_test_setup_teardown(test_sim_store_always, reset_all, reset_all),
	    cmocka_unit_test(test_crc_check_value),
	    cmocka_unit_test(test_crc_random),
	};
	if (getenv("CTX_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
