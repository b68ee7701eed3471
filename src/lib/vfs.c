/*
 * vfs.c - file system calls with fault injection and power-loss tracking.
 */
#include "vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

vfs_faults ctx_vfs_faults = {.space_left = -1};

void vfs_faults_reset(void)
{
	atomic_store(&ctx_vfs_faults.write_countdown, 0);
	atomic_store(&ctx_vfs_faults.sync_countdown, 0);
	atomic_store(&ctx_vfs_faults.space_left, -1);
}

/* True when a countdown reaches its call. */
static bool countdown_hits(atomic_long *c)
{
	long n = atomic_load(c);
	while (n > 0) {
		if (atomic_compare_exchange_weak(c, &n, n - 1))
			return n == 1;
	}
	return false;
}

/* ---- power-loss tracking --------------------------------------------------- */

#define SIM_FILES 256

typedef struct sim_file {
	int fd; /* -1 when closed */
	bool used;
	long long size;
	long long synced;
	char path[PATH_MAX];
} sim_file;

typedef struct sim_table {
	pthread_mutex_t lock; /* process-shared */
	sim_file files[SIM_FILES];
} sim_table;

static sim_table *sim;

bool vfs_sim_enable(void)
{
	if (sim)
		return true;
	sim_table *t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	                    -1, 0);
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
		if (sim->files[i].used && sim->files[i].fd == fd)
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

static void sim_opened(const char *path, int fd, int flags)
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
			f->size = f->synced = lseek(fd, 0, SEEK_END);
			strncpy(f->path, path, sizeof(f->path) - 1);
		}
		f->fd = fd;
	}
	pthread_mutex_unlock(&sim->lock);
}

void vfs_sim_crash(bool tear, unsigned seed)
{
	if (!sim)
		return;
	for (int i = 0; i < SIM_FILES; i++) {
		sim_file *f = &sim->files[i];
		if (!f->used)
			continue;
		long long keep = f->synced;
		if (tear && f->size > f->synced)
			keep += rand_r(&seed) % (f->size - f->synced + 1);
		if (truncate(f->path, keep) != 0 && errno != ENOENT)
			continue;
		f->used = false;
	}
}

/* ---- the calls -------------------------------------------------------------- */

int vfs_open(const char *path, int flags, mode_t mode)
{
	int fd;
	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	if (fd >= 0 && sim)
		sim_opened(path, fd, flags);
	return fd;
}

int vfs_write_all(int fd, const void *buf, size_t n)
{
	if (countdown_hits(&ctx_vfs_faults.write_countdown)) {
		errno = ctx_vfs_faults.write_errno ? ctx_vfs_faults.write_errno : EIO;
		return -1;
	}
	long long left = atomic_load(&ctx_vfs_faults.space_left);
	size_t allowed = n;
	if (left >= 0) {
		allowed = (unsigned long long)left < n ? (size_t)left : n;
		atomic_fetch_sub(&ctx_vfs_faults.space_left, (long long)allowed);
	}
	const char *p = buf;
	size_t done = 0;
	while (done < allowed) {
		ssize_t w = write(fd, p + done, allowed - done);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)w;
	}
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

int vfs_sync(int fd)
{
	if (countdown_hits(&ctx_vfs_faults.sync_countdown)) {
		errno = ctx_vfs_faults.sync_errno ? ctx_vfs_faults.sync_errno : EIO;
		return -1;
	}
	if (fdatasync(fd) != 0)
		return -1;
	if (sim) {
		pthread_mutex_lock(&sim->lock);
		sim_file *f = sim_find_fd(fd);
		if (f)
			f->synced = f->size;
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
		if (f)
			f->size = f->synced = len;
		pthread_mutex_unlock(&sim->lock);
	}
	return 0;
}

int vfs_close(int fd)
{
	if (sim) {
		pthread_mutex_lock(&sim->lock);
		sim_file *f = sim_find_fd(fd);
		if (f)
			f->fd = -1;
		pthread_mutex_unlock(&sim->lock);
	}
	return close(fd);
}
