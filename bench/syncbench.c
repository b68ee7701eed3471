/*
 * syncbench.c - what a log write + fdatasync costs, by how the file is laid out.
 *
 *   ctxsyncbench [-n SYNCS] [-r ROUNDS] [-b BYTES] [DIR]
 *
 * Measures one write of BYTES (default 4096) followed by fdatasync, the log
 * flusher's commit path, in three ways on files in DIR (default "."):
 *
 *   append      the file grows by BYTES each time (what log.c did until
 *               round 3: O_APPEND to a new segment), so every fdatasync
 *               also has to commit the new size through the journal;
 *   overwrite   pwrite at the next offset of a file written with zeros and
 *               synced beforehand: the blocks are allocated and written, the
 *               size does not change, fdatasync only flushes data;
 *   fallocate   pwrite at the next offset of a file preallocated with
 *               fallocate (unwritten extents on ext4/xfs): the size does not
 *               change, but the first write of each extent converts it to
 *               written, a metadata change the journal must commit.
 *
 * The three run in interleaved rounds (each round runs each mode for SYNCS/
 * ROUNDS syncs, in a rotating order), so the neighbours' load and the disk's
 * drift fall on all of them alike. Reports p50, p90, p99 and mean in µs per
 * write + fdatasync. The files are removed at the end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { M_APPEND, M_OVERWRITE, M_FALLOCATE, M_COUNT };
static const char *const mode_names[M_COUNT] = {"append", "overwrite", "fallocate"};

typedef struct mode_state {
	char path[4096];
	int fd;
	off_t off;
	double *lat; /* µs, one per sync */
	size_t n;
} mode_state;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int die(const char *what, const char *path)
{
	fprintf(stderr, "ctxsyncbench: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

/* Prepare the file of a mode, big enough for every sync of the run. */
static void prepare(mode_state *m, int mode, const char *dir, off_t size)
{
	snprintf(m->path, sizeof(m->path), "%s/syncbench-%s.tmp", dir, mode_names[mode]);
	int flags = O_WRONLY | O_CREAT | O_TRUNC | (mode == M_APPEND ? O_APPEND : 0);
	m->fd = open(m->path, flags, 0644);
	if (m->fd < 0)
		die("open", m->path);
	if (mode == M_OVERWRITE) {
		static char zeros[1 << 20];
		for (off_t at = 0; at < size; at += sizeof(zeros))
			if (write(m->fd, zeros, sizeof(zeros)) != (ssize_t)sizeof(zeros))
				die("write", m->path);
	} else if (mode == M_FALLOCATE) {
		int rc = posix_fallocate(m->fd, 0, size);
		if (rc) {
			errno = rc;
			die("fallocate", m->path);
		}
	}
	if (fsync(m->fd) != 0)
		die("fsync", m->path);
}

static void one_sync(mode_state *m, int mode, const char *buf, size_t bytes)
{
	double t0 = now_us();
	ssize_t w = mode == M_APPEND ? write(m->fd, buf, bytes) : pwrite(m->fd, buf, bytes, m->off);
	if (w != (ssize_t)bytes)
		die("write", m->path);
	if (fdatasync(m->fd) != 0)
		die("fdatasync", m->path);
	m->lat[m->n++] = now_us() - t0;
	m->off += (off_t)bytes;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

int main(int argc, char **argv)
{
	size_t syncs = 3000, rounds = 10, bytes = 4096;
	int c;
	while ((c = getopt(argc, argv, "n:r:b:h")) != -1) {
		switch (c) {
		case 'n':
			syncs = strtoul(optarg, NULL, 10);
			break;
		case 'r':
			rounds = strtoul(optarg, NULL, 10);
			break;
		case 'b':
			bytes = strtoul(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr,
			        "usage: ctxsyncbench [-n SYNCS] [-r ROUNDS] [-b BYTES] [DIR]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	const char *dir = optind < argc ? argv[optind] : ".";
	if (!syncs || !rounds || !bytes || rounds > syncs) {
		fprintf(stderr, "ctxsyncbench: bad -n, -r or -b\n");
		return 2;
	}
	size_t per_round = syncs / rounds;
	syncs = per_round * rounds;
	off_t size = (off_t)(syncs * bytes + (1u << 20));
	char *buf = malloc(bytes);
	if (!buf)
		return 1;
	memset(buf, 'r', bytes);
	mode_state m[M_COUNT];
	for (int i = 0; i < M_COUNT; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		m[i].lat = calloc(syncs, sizeof(double));
		if (!m[i].lat)
			return 1;
		prepare(&m[i], i, dir, size);
	}
	for (size_t r = 0; r < rounds; r++)
		for (int k = 0; k < M_COUNT; k++) {
			int i = (int)((r + (size_t)k) % M_COUNT);
			for (size_t s = 0; s < per_round; s++)
				one_sync(&m[i], i, buf, bytes);
		}
	printf("%zu x %zu-byte write + fdatasync per mode, %zu interleaved rounds, in %s\n", syncs,
	       bytes, rounds, dir);
	printf("%-10s %9s %9s %9s %9s  (µs)\n", "mode", "p50", "p90", "p99", "mean");
	for (int i = 0; i < M_COUNT; i++) {
		double sum = 0;
		for (size_t s = 0; s < m[i].n; s++)
			sum += m[i].lat[s];
		qsort(m[i].lat, m[i].n, sizeof(double), cmp_double);
		printf("%-10s %9.1f %9.1f %9.1f %9.1f\n", mode_names[i], pct(m[i].lat, m[i].n, 0.5),
		       pct(m[i].lat, m[i].n, 0.9), pct(m[i].lat, m[i].n, 0.99),
		       sum / (double)m[i].n);
		close(m[i].fd);
		unlink(m[i].path);
		free(m[i].lat);
	}
	free(buf);
	return 0;
}
