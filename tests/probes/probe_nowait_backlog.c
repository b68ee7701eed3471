/*
 * probe_nowait_backlog.c - nothing bounds the bytes of nowait commits (and
 * of durability-batch commits) waiting for a slow sync.
 *
 * The brief of the review: "every buffer, queue and cache is bounded in
 * bytes also with nobody consuming (... pending nowait commits)". log.c
 * says "no append waits for memory" under its lock, and ctx.h promises
 * ctx_txn_commit_nowait returns "as soon as the new version is decided":
 * so while one fdatasync is slow (a loaded disk, a stalled NFS mount, a
 * cloud volume's throttling), every nowait commit adds its record to the
 * log's batch and keeps its pending_change with its new version, and the
 * heap grows with what the caller commits, without limit and without the
 * caller being told. Durability batch has the same shape for ordinary
 * ctx_put (it returns at once by contract).
 *
 * The probe slows the disk by defining fdatasync itself (the static
 * libctx.a calls it; this definition wins at link time): each sync sleeps
 * 2 s before doing the real one. It commits 400 nowait transactions of one
 * 256 KiB value each to one context with history_depth 1 (the store keeps
 * one version), then prints the heap growth and how far the durable
 * revision is behind.
 *
 * Build and run (from the worktree, after `make build`):
 *   cc -O1 -g -Iinclude tests/probes/probe_nowait_backlog.c build/libctx.a \
 *      $(pkg-config --libs liburcu-bp liburcu-cds libxxhash) -lpthread \
 *      -o /tmp/probe_backlog
 *   /tmp/probe_backlog /tmp/probe_backlog.dir
 * Shows (2026-12-03, main 43bf876): the heap grows by about 100 MiB (the
 * 400 values) while the durable revision stays behind; with a stalled
 * disk it grows until the process is killed for memory.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ctx.h"

int fdatasync(int fd)
{
	usleep(2000 * 1000);
	return (int)syscall(SYS_fdatasync, fd);
}

static size_t heap(void)
{
	return mallinfo2().uordblks;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp/probe_backlog.dir";
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 2;
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = 1;
	o.log_prealloc_bytes = 1; /* off: no zeroer syncs in the picture */
	ctx_store *s;
	if (ctx_open(&o, &s) != CTX_OK || ctx_create(s, "c") != CTX_OK)
		return 2;
	size_t vlen = 256 << 10, n = 400;
	char *val = malloc(vlen);
	memset(val, 'v', vlen);
	size_t before = heap();
	uint64_t rev = 0;
	for (size_t i = 0; i < n; i++) {
		ctx_txn *t;
		val[0] = (char)i;
		if (ctx_txn_begin(s, "c", &t) != CTX_OK ||
		    ctx_txn_put(t, "k", 1, val, vlen) != CTX_OK ||
		    ctx_txn_commit_nowait(t, 0, NULL, &rev) != CTX_OK)
			return 3;
	}
	uint64_t d = 0;
	ctx_durable_revision(s, &d);
	size_t after = heap();
	printf("%zu nowait commits of %zu KiB: heap +%zu MiB, durable revision %llu of %llu "
	       "(%llu pending)\n",
	       n, vlen >> 10, (after - before) >> 20, (unsigned long long)d,
	       (unsigned long long)rev, (unsigned long long)(rev - d));
	ctx_close(s);
	free(val);
	/* more than half the values held at once: nothing bounded it */
	return after - before > (n * vlen) / 2 ? 1 : 0;
}
