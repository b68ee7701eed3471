/*
 * vfs.c - file system calls with fault injection and power-loss tracking.
 *
 * The power-loss table (tests only) models what a disk keeps after a power
 * cut: per file, what fdatasync made durable ([0, synced)) and what was only
 * written ([synced, size)); per directory, whether its entries were made
 * durable by an fsync of the directory. vfs_sim_crash_with() then throws away
 * what the model says may be lost, in one of three ways:
 *   - cut: everything unsynced is lost;
 *   - tear: a random prefix of the unsynced bytes survives (one torn write);
 *   - pages: page writeback has no order, so each 4 KiB page of unsynced
 *     data is independently kept, lost (it reads as zeros, or as garbage:
 *     old bytes of a reused block), or kept as a random prefix; the file's
 *     size survives whole or is cut at a random point.
 * Bytes overwritten in place (vfs_pwrite_all below the file's end: log
 * records over a segment's synced zero tail) and not synced since are a
 * range [dirty_lo, dirty_hi) below `synced`; a crash turns them back into
 * the zeros they were, in the same three ways (no garbage: the old bytes of
 * those blocks are known to be zeros).
 * A file may be open through several descriptors at once (the log's flusher
 * and zeroer): writes through any of them count, and a sync covers what was
 * written before it started (another descriptor may write meanwhile).
 * With VFS_SIM_ENTRIES, a file created while the table was on whose
 * directory was not fsynced afterwards is lost, and so is a directory whose
 * parent was never fsynced (up to a root the test declares durable).
 */
#include "vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

vfs_faults ctx_vfs_faults = {.space_left = -1};

/* The file flip_tmp_write picked, until its first write (or -1). */
static atomic_int flip_fd = -1;

void vfs_faults_reset(void)
{
	atomic_store(&ctx_vfs_faults.write_countdown, 0);
	atomic_store(&ctx_vfs_faults.sync_countdown, 0);
	atomic_store(&ctx_vfs_faults.space_left, -1);
	atomic_store(&ctx_vfs_faults.flip_tmp_write, false);
	atomic_store(&ctx_vfs_faults.keep_unlinked, false);
	atomic_store(&ctx_vfs_faults.hold_zero_writes, false);
	atomic_store(&ctx_vfs_faults.zero_writes_held, 0);
	atomic_store(&ctx_vfs_faults.zero_writes_let, 0);
	atomic_store(&ctx_vfs_faults.fault_tid, 0);
	atomic_store(&flip_fd, -1);
}

static bool is_tmp(const char *path)
{
	size_t n = strlen(path);
	return n > 4 && strcmp(path + n - 4, ".tmp") == 0;
}

/* Write n bytes of buf with one bit of the middle one flipped. */
static int write_flipped(int fd, const void *buf, size_t n)
{
	unsigned char *copy = malloc(n);
	if (!copy) {
		errno = ENOMEM;
		return -1;
	}
	memcpy(copy, buf, n);
	copy[n / 2] ^= 0x10;
	int r = vfs_write_all(fd, copy, n);
	free(copy);
	return r;
}

/* True when a countdown reaches its call. */
static bool countdown_hits(atomic_long *c)
{
	int tid = atomic_load(&ctx_vfs_faults.fault_tid);
	if (tid && tid != (int)gettid())
		return false; /* another thread's call (the log's flusher or zeroer) */
	long n = atomic_load(c);
	while (n > 0) {
		if (atomic_compare_exchange_weak(c, &n, n - 1))
			return n == 1;
	}
	return false;
}

/* ---- power-loss tracking --------------------------------------------------- */

#define SIM_FILES 256

#define SIM_DIRS 64
#define SIM_PAGE 4096

#define SIM_FDS 4 /* descriptors open on one file at once (the log: 2) */

typedef struct sim_file {
	int fd[SIM_FDS]; /* -1: unused slot */
	bool used;
	bool created;      /* created while the table was on */
	bool entry_synced; /* its directory fsynced since it was created */
	long long size;
	long long synced;
	long long dirty_lo, dirty_hi; /* overwritten in place since the last sync */
	char path[PATH_MAX];
} sim_file;

typedef struct sim_table {
	pthread_mutex_t lock; /* process-shared */
	sim_file files[SIM_FILES];
	int nroots, nsynced;
	char roots[4][PATH_MAX];              /* directories the test declares durable */
	char synced_dirs[SIM_DIRS][PATH_MAX]; /* directories fsynced (by path) */
} sim_table;

static sim_table *sim;

bool vfs_sim_enable(void)
{
	if (sim)
		return true;
	sim_table *t =
	    mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		return false;
	memset(t, 0, sizeof(*t));
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&t->lock, &a);
	pthread_mutexattr_destroy(&a);
	sim = t;
	return true;
}

void vfs_sim_disable(void)
{
	if (!sim)
		return;
	munmap(sim, sizeof(*sim));
	sim = NULL;
}

static sim_file *sim_find_fd(int fd)
{
	for (int i = 0; i < SIM_FILES; i++)
		for (int j = 0; sim->files[i].used && j < SIM_FDS; j++)
			if (sim->files[i].fd[j] == fd)
				return &sim->files[i];
	return NULL;
}

static sim_file *sim_find_path(const char *path)
{
	for (int i = 0; i < SIM_FILES; i++)
		if (sim->files[i].used && strcmp(sim->files[i].path, path) == 0)
			return &sim->files[i];
	return NULL;
}

static void sim_opened(const char *path, int fd, int flags, bool created)
{
	if (!(flags & (O_WRONLY | O_RDWR)))
		return;
	pthread_mutex_lock(&sim->lock);
	sim_file *f = sim_find_path(path);
	for (int i = 0; !f && i < SIM_FILES; i++)
		if (!sim->files[i].used)
			f = &sim->files[i];
	if (f) {
		if (!f->used) {
			f->used = true;
			f->created = created;
			f->entry_synced = false;
			f->size = f->synced = lseek(fd, 0, SEEK_END);
			f->dirty_lo = f->dirty_hi = 0;
			strncpy(f->path, path, sizeof(f->path) - 1);
			for (int j = 0; j < SIM_FDS; j++)
				f->fd[j] = -1;
		}
		for (int j = 0; j < SIM_FDS; j++)
			if (f->fd[j] < 0) {
				f->fd[j] = fd;
				break;
			}
	}
	pthread_mutex_unlock(&sim->lock);
}

/* path without its last component, into out ("." if it has none). */
static void parent_of(const char *path, char *out, size_t n)
{
	snprintf(out, n, "%s", path);
	size_t len = strlen(out);
	while (len > 1 && out[len - 1] == '/')
		out[--len] = 0;
	char *slash = strrchr(out, '/');
	if (!slash)
		snprintf(out, n, ".");
	else if (slash == out)
		out[1] = 0;
	else
		*slash = 0;
}

static bool same_dir(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	while (la > 1 && a[la - 1] == '/')
		la--;
	while (lb > 1 && b[lb - 1] == '/')
		lb--;
	return la == lb && memcmp(a, b, la) == 0;
}

/* A directory was fsynced: the entries in it are durable. */
static void sim_dir_synced(const char *dir)
{
	pthread_mutex_lock(&sim->lock);
	char parent[PATH_MAX];
	for (int i = 0; i < SIM_FILES; i++) {
		sim_file *f = &sim->files[i];
		if (!f->used)
			continue;
		parent_of(f->path, parent, sizeof(parent));
		if (same_dir(parent, dir))
			f->entry_synced = true;
	}
	bool known = false;
	for (int i = 0; i < sim->nsynced && !known; i++)
		known = same_dir(sim->synced_dirs[i], dir);
	if (!known && sim->nsynced < SIM_DIRS)
		snprintf(sim->synced_dirs[sim->nsynced++], PATH_MAX, "%s", dir);
	pthread_mutex_unlock(&sim->lock);
}

void vfs_sim_durable_root(const char *dir)
{
	if (sim && sim->nroots < 4)
		snprintf(sim->roots[sim->nroots++], PATH_MAX, "%s", dir);
}

static bool is_root(const char *dir)
{
	for (int i = 0; i < sim->nroots; i++)
		if (same_dir(sim->roots[i], dir))
			return true;
	return false;
}

static bool was_synced(const char *dir)
{
	for (int i = 0; i < sim->nsynced; i++)
		if (same_dir(sim->synced_dirs[i], dir))
			return true;
	return false;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

/* The directory holding path, or one above it, whose entry in its parent was
 * never made durable (below a declared root) is lost with all it holds. */
static void lose_undurable_dirs(const char *path)
{
	char d[PATH_MAX], parent[PATH_MAX], lost[PATH_MAX] = "";
	parent_of(path, d, sizeof(d));
	while (!is_root(d) && strcmp(d, "/") != 0 && strcmp(d, ".") != 0) {
		parent_of(d, parent, sizeof(parent));
		if (!was_synced(parent))
			snprintf(lost, sizeof(lost), "%s", d);
		snprintf(d, sizeof(d), "%s", parent);
	}
	if (lost[0] && is_root(d))
		nftw(lost, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Pages mode: damage the unsynced bytes [f->synced, f->size) of f's file
 * page by page, and pick the size that survives. */
static long long tear_pages(const sim_file *f, unsigned *seed)
{
	long long len = f->size;
	if (rand_r(seed) % 2)
		len = f->synced + rand_r(seed) % (f->size - f->synced + 1);
	int fd = open(f->path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return len;
	unsigned char buf[SIM_PAGE];
	for (long long p = f->synced / SIM_PAGE * SIM_PAGE; p < len; p += SIM_PAGE) {
		long long lo = p > f->synced ? p : f->synced;
		long long hi = p + SIM_PAGE < len ? p + SIM_PAGE : len;
		size_t n = (size_t)(hi - lo), from;
		switch (rand_r(seed) % 4) {
		case 0: /* persisted */
			continue;
		case 1: /* lost: zeros */
			from = 0;
			memset(buf, 0, n);
			break;
		case 2: /* a prefix persisted */
			from = (size_t)rand_r(seed) % (n + 1);
			memset(buf, 0, n);
			break;
		default: /* lost: old bytes of the block */
			from = 0;
			for (size_t i = 0; i < n; i++)
				buf[i] = (unsigned char)rand_r(seed);
		}
		if (pwrite(fd, buf + from, n - from, lo + (off_t)from) < 0)
			break;
	}
	close(fd);
	return len;
}

/* Turn what a crash loses of the bytes overwritten in place since the last
 * sync back into zeros, as `how` says. */
static void lose_overwrites(const sim_file *f, unsigned how, unsigned *seed)
{
	long long lo = f->dirty_lo, hi = f->dirty_hi < f->synced ? f->dirty_hi : f->synced;
	if (lo >= hi)
		return;
	int fd = open(f->path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	static const unsigned char zeros[SIM_PAGE];
	for (long long p = lo; p < hi;) {
		long long end = (p / SIM_PAGE + 1) * SIM_PAGE;
		size_t n = (size_t)((end < hi ? end : hi) - p), from = 0;
		if (how & VFS_SIM_PAGES) {
			unsigned r = (unsigned)rand_r(seed) % 3;
			from = r == 0 ? n : r == 1 ? 0 : (size_t)rand_r(seed) % (n + 1);
		} else if (how & VFS_SIM_TEAR) {
			/* One torn write: a prefix of the whole range survives. */
			long long keep = lo + rand_r(seed) % (hi - lo + 1);
			p = keep;
			n = (size_t)(hi - keep);
			end = hi;
		}
		while (from < n) {
			size_t k = n - from < SIM_PAGE ? n - from : SIM_PAGE;
			if (pwrite(fd, zeros, k, p + (off_t)from) < 0)
				break;
			from += k;
		}
		p = end < hi ? end : hi;
	}
	close(fd);
}

void vfs_sim_crash_with(unsigned how, unsigned seed)
{
	if (!sim)
		return;
	for (int i = 0; i < SIM_FILES; i++) {
		sim_file *f = &sim->files[i];
		if (!f->used)
			continue;
		if ((how & VFS_SIM_ENTRIES) && f->created && !f->entry_synced) {
			if (unlink(f->path) == 0 || errno == ENOENT)
				f->used = false;
			continue;
		}
		lose_overwrites(f, how, &seed);
		long long keep = f->synced;
		if ((how & VFS_SIM_PAGES) && f->size > f->synced)
			keep = tear_pages(f, &seed);
		else if ((how & VFS_SIM_TEAR) && f->size > f->synced)
			keep += rand_r(&seed) % (f->size - f->synced + 1);
		if (truncate(f->path, keep) != 0 && errno != ENOENT)
			continue;
		if (how & VFS_SIM_ENTRIES)
			lose_undurable_dirs(f->path);
		f->used = false;
	}
	sim->nsynced = 0;
	sim->nroots = 0;
}

void vfs_sim_crash(bool tear, unsigned seed)
{
	vfs_sim_crash_with(tear ? VFS_SIM_TEAR : VFS_SIM_CUT, seed);
}

/* ---- the calls -------------------------------------------------------------- */

int vfs_open(const char *path, int flags, mode_t mode)
{
	int fd;
	struct stat sb;
	bool created = sim && (flags & O_CREAT) && stat(path, &sb) != 0;
	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	if (fd >= 0 && sim)
		sim_opened(path, fd, flags, created);
	if (fd >= 0 && atomic_load(&ctx_vfs_faults.flip_tmp_write) && is_tmp(path) &&
	    atomic_exchange(&ctx_vfs_faults.flip_tmp_write, false))
		atomic_store(&flip_fd, fd);
	return fd;
}

int vfs_mkdir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) != 0)
		return -1;
	char parent[PATH_MAX];
	parent_of(path, parent, sizeof(parent));
	return vfs_sync_dir(parent);
}

/* The injected faults of a write of n bytes: true (errno set) if it must
 * fail at once; else *allowed is how many bytes the simulated free space
 * lets through (n unless space_left is set). */
static bool write_fault(size_t n, size_t *allowed)
{
	if (countdown_hits(&ctx_vfs_faults.write_countdown)) {
		int e = atomic_load(&ctx_vfs_faults.write_errno);
		errno = e ? e : EIO;
		return true;
	}
	long long left = atomic_load(&ctx_vfs_faults.space_left);
	*allowed = n;
	if (left >= 0) {
		*allowed = (unsigned long long)left < n ? (size_t)left : n;
		atomic_fetch_sub(&ctx_vfs_faults.space_left, (long long)*allowed);
	}
	return false;
}

/* Writes all n bytes of buf, at off when positioned (pwrite), else at the
 * file offset (write); retries short writes and EINTR. 0, or -1 (errno). */
static int write_loop(int fd, const void *buf, size_t n, bool positioned, off_t off)
{
	const char *p = buf;
	size_t done = 0;
	while (done < n) {
		ssize_t w = !positioned ? write(fd, p + done, n - done)
		                        : pwrite(fd, p + done, n - done, off + (off_t)done);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)w;
	}
	return 0;
}

int vfs_write_all(int fd, const void *buf, size_t n)
{
	int flip = fd;
	if (n && atomic_load(&flip_fd) == fd && atomic_compare_exchange_strong(&flip_fd, &flip, -1))
		return write_flipped(fd, buf, n);
	size_t allowed;
	if (write_fault(n, &allowed))
		return -1;
	size_t done = allowed;
	if (write_loop(fd, buf, allowed, false, 0) < 0)
		return -1;
	if (sim) {
		pthread_mutex_lock(&sim->lock);
		sim_file *f = sim_find_fd(fd);
		if (f)
			f->size += (long long)done;
		pthread_mutex_unlock(&sim->lock);
	}
	if (allowed < n) {
		errno = ENOSPC;
		return -1;
	}
	return 0;
}

/* hold_zero_writes: a write of zeros only waits until it is cleared or let
 * go by number (zero_writes_let). */
static void hold_zeros(const void *buf, size_t n)
{
	const unsigned char *p = buf;
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return;
	long number = atomic_fetch_add(&ctx_vfs_faults.zero_writes_held, 1) + 1;
	while (atomic_load(&ctx_vfs_faults.hold_zero_writes) &&
	       atomic_load(&ctx_vfs_faults.zero_writes_let) < number)
		usleep(1000);
}

int vfs_pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
	if (atomic_load_explicit(&ctx_vfs_faults.hold_zero_writes, memory_order_relaxed))
		hold_zeros(buf, n);
	size_t allowed;
	if (write_fault(n, &allowed))
		return -1;
	size_t done = allowed;
	if (write_loop(fd, buf, allowed, true, off) < 0)
		return -1;
	if (sim && done) {
		pthread_mutex_lock(&sim->lock);
		sim_file *f = sim_find_fd(fd);
		long long lo = off, hi = off + (long long)done;
		if (f && lo < f->synced) {
			if (f->dirty_lo >= f->dirty_hi || lo < f->dirty_lo)
				f->dirty_lo = lo;
			if (hi > f->dirty_hi)
				f->dirty_hi = hi;
		}
		if (f && hi > f->size)
			f->size = hi;
		pthread_mutex_unlock(&sim->lock);
	}
	if (allowed < n) {
		errno = ENOSPC;
		return -1;
	}
	return 0;
}

int vfs_sync(int fd)
{
	if (countdown_hits(&ctx_vfs_faults.sync_countdown)) {
		int e = atomic_load(&ctx_vfs_faults.sync_errno);
		errno = e ? e : EIO;
		return -1;
	}
	/* What the sync covers is what was written before it started (another
	 * descriptor may write meanwhile: the log's zeroer). */
	long long size = -1, lo = 0, hi = 0;
	if (sim) {
		pthread_mutex_lock(&sim->lock);
		sim_file *f = sim_find_fd(fd);
		if (f) {
			size = f->size;
			lo = f->dirty_lo;
			hi = f->dirty_hi;
		}
		pthread_mutex_unlock(&sim->lock);
	}
	if (fdatasync(fd) != 0)
		return -1;
	if (sim && size >= 0) {
		pthread_mutex_lock(&sim->lock);
		sim_file *f = sim_find_fd(fd);
		if (f) {
			long long upto = size < f->size ? size : f->size;
			if (upto > f->synced)
				f->synced = upto;
			if (f->dirty_lo == lo && f->dirty_hi == hi)
				f->dirty_lo = f->dirty_hi = 0;
		}
		pthread_mutex_unlock(&sim->lock);
	}
	return 0;
}

int vfs_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = vfs_sync(fd);
	int saved = errno;
	close(fd);
	if (rc == 0 && sim)
		sim_dir_synced(dir);
	errno = saved;
	return rc;
}

int vfs_rename(const char *from, const char *to)
{
	if (rename(from, to) != 0)
		return -1;
	if (sim) {
		pthread_mutex_lock(&sim->lock);
		sim_file *old = sim_find_path(to);
		if (old)
			old->used = false;
		sim_file *f = sim_find_path(from);
		if (f)
			strncpy(f->path, to, sizeof(f->path) - 1);
		pthread_mutex_unlock(&sim->lock);
	}
	return 0;
}

int vfs_unlink(const char *path)
{
	if (atomic_load_explicit(&ctx_vfs_faults.keep_unlinked, memory_order_relaxed))
		return 0;
	if (unlink(path) != 0)
		return -1;
	if (sim) {
		pthread_mutex_lock(&sim->lock);
		sim_file *f = sim_find_path(path);
		if (f)
			f->used = false;
		pthread_mutex_unlock(&sim->lock);
	}
	return 0;
}

int vfs_truncate(int fd, off_t len)
{
	if (ftruncate(fd, len) != 0)
		return -1;
	if (sim) {
		pthread_mutex_lock(&sim->lock);
		sim_file *f = sim_find_fd(fd);
		if (f) {
			f->size = f->synced = len;
			f->dirty_lo = f->dirty_hi = 0;
		}
		pthread_mutex_unlock(&sim->lock);
	}
	return 0;
}

int vfs_close(int fd)
{
	int flip = fd;
	atomic_compare_exchange_strong(&flip_fd, &flip, -1);
	if (sim) {
		pthread_mutex_lock(&sim->lock);
		sim_file *f = sim_find_fd(fd);
		if (f)
			for (int j = 0; j < SIM_FDS; j++)
				if (f->fd[j] == fd)
					f->fd[j] = -1;
		pthread_mutex_unlock(&sim->lock);
	}
	return close(fd);
}
