/*
 * probe8_batch_unthrottled.c - under durability batch, ctx_set_ttl,
 * ctx_point_create, ctx_point_delete and the restores append to the log
 * without the backlog bound: with a stalled disk they never wait, and the
 * log's unsynced batch grows with every call.
 *
 * ctx.h, ctx_options.log_backlog_bytes: "writers that do not wait for their
 * own sync (ctx_txn_commit_nowait, ctx_drop_nowait, every write under
 * durability batch or none) wait before they append, until the disk
 * catches up ... Each writer may add one record past it." store_throttle is
 * called by ctx_put/ctx_del (txn.c put_or_del), ctx_txn_commit[_nowait]
 * (txn.c txn_commit), store_create and ctx_drop_nowait (store.c) only; the
 * other appends - expiry.c log_ttl (ctx_set_ttl), points.c log_point
 * (ctx_point_create, ctx_point_delete), the restores (points.c, through
 * commit_finish) and the reaper's REC_EXPIRE - go straight to
 * log_append_done, and under durability batch none of them waits for
 * anything (points.c finish_point_record and expiry.c ctx_set_ttl wait only
 * if s->wait_durable).
 *
 * The probe holds the disk (it defines fdatasync itself; libctx.a's
 * vfs_sync calls it and this definition wins at link time), sets a backlog
 * bound of 64 KiB, then:
 *   1. ctx_put of 100-byte values: held back after about 64 KiB (the bound
 *      works for commits) - the control;
 *   2. ctx_set_ttl, ctx_point_create + ctx_point_delete, ctx_restore in
 *      loops of CALLS each: every call returns at once, the disk still held.
 * It prints how many calls of each kind returned while the disk was held
 * and the heap's growth (mallinfo2: the log's 256 KiB chunks).
 *
 * Build and run (from the worktree, after `make build`):
 *   cc -O1 -g -Iinclude tests/probes/probe8_batch_unthrottled.c build/libctx.a \
 *      $(pkg-config --libs liburcu-bp liburcu-cds libxxhash) -lpthread \
 *      -o /tmp/probe8_batch
 *   /tmp/probe8_batch /tmp/probe8_batch.dir
 * Exit status 1 if the defect shows (a kind of write got more than the bound
 * allows past it while the disk was held), 0 if every kind was held back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ctx.h"

static atomic_bool hold;
static atomic_int held;

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
	return (int)syscall(SYS_fdatasync, fd);
}

enum { BACKLOG = 64 << 10, CALLS = 200000 };

typedef struct job {
	ctx_store *s;
	int kind; /* 0 put, 1 ttl, 2 point create+delete, 3 restore */
	atomic_long done;
	ctx_status last;
} job;

static void *run(void *p)
{
	job *j = p;
	char val[100];
	memset(val, 'v', sizeof(val));
	for (long i = 0; i < CALLS; i++) {
		ctx_status st = CTX_OK;
		uint64_t v = 0;
		switch (j->kind) {
		case 0:
			st = ctx_put(j->s, "c", "k", 1, val, sizeof(val), NULL);
			break;
		case 1:
			st = ctx_set_ttl(j->s, "c", 3600000 + (uint64_t)i);
			break;
		case 2:
			st = ctx_point_create(j->s, "c", "p", &v);
			if (st == CTX_OK)
				st = ctx_point_delete(j->s, "c", v);
			break;
		case 3:
			st = ctx_restore(j->s, "c", 2, NULL);
			break;
		}
		j->last = st;
		if (st != CTX_OK)
			break;
		atomic_fetch_add(&j->done, 1);
	}
	return NULL;
}

static size_t heap(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp/probe8_batch.dir";
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 2;
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	o.batch_ms = 1;
	o.log_prealloc_bytes = 1; /* no zeroer syncs */
	o.log_backlog_bytes = BACKLOG;
	o.max_points = 4;
	ctx_store *s;
	if (ctx_open(&o, &s) != CTX_OK) {
		fprintf(stderr, "open: %s\n", ctx_last_error());
		return 2;
	}
	/* Version 2, pinned by a point: what the restores restore. */
	if (ctx_create(s, "c") != CTX_OK || ctx_put(s, "c", "k", 1, "x", 1, NULL) != CTX_OK ||
	    ctx_point_create(s, "c", "base", NULL) != CTX_OK)
		return 2;
	/* Let the creation's records be synced before the disk stalls. */
	struct timespec ts = {0, 50 * 1000000};
	nanosleep(&ts, NULL);
	static const char *names[] = {"ctx_put (control)", "ctx_set_ttl", "ctx_point_create+delete",
	                              "ctx_restore"};
	int bad = 0;
	atomic_store(&hold, true);
	for (int kind = 0; kind < 4; kind++) {
		size_t h0 = heap();
		job j = {.s = s, .kind = kind};
		pthread_t th;
		pthread_create(&th, NULL, run, &j);
		/* Until the writer stops making progress (held) or finishes. */
		long before = -1;
		for (int i = 0; i < 100; i++) {
			nanosleep(&(struct timespec){0, 300 * 1000000}, NULL);
			long now = atomic_load(&j.done);
			if (now == before || now == CALLS)
				break;
			before = now;
		}
		long got = atomic_load(&j.done);
		size_t h1 = heap();
		printf("%-24s %7ld of %d calls returned with the disk held (bound %d B), "
		       "heap +%zu KiB, syncs held %d\n",
		       names[kind], got, CALLS, BACKLOG, (h1 > h0 ? h1 - h0 : 0) >> 10,
		       atomic_load(&held));
		fflush(stdout);
		/* Each record is at least ~20 bytes: more than twice the bound's
		 * worth of them means nothing held the writer back. */
		if (got > 2 * BACKLOG / 20)
			bad = 1;
		if (got < CALLS) {
			/* held back: let the disk go for a moment so it finishes */
			atomic_store(&hold, false);
			pthread_join(th, NULL);
			atomic_store(&hold, true);
		} else {
			pthread_join(th, NULL);
		}
	}
	atomic_store(&hold, false);
	ctx_close(s);
	printf(bad ? "DEFECT: some writes are not held back by log_backlog_bytes under "
	             "durability batch\n"
	           : "ok: every kind of write was held back\n");
	return bad;
}
