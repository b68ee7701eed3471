/*
 * test_review8_backlog.c - round 8 review: the log's backlog bound
 * (ctx_options.log_backlog_bytes, round 7) with many writers of every kind
 * that does not wait for its own sync, a stalled disk, a failing one, and
 * checkpoints rotating the log meanwhile.
 *
 * The test defines fdatasync itself (libctx's vfs_sync calls it; the
 * executable's definition wins at link time; tests/held_sync.h): while `hold` is set a sync
 * waits; with `fail_eio` set it fails. Checks:
 *   - held: 8 writers (nowait commits of 32 KiB, nowait drop + nowait
 *     create of the same ids with 32 KiB of data, and under durability
 *     batch plain ctx_put) stop once the bound is reached: what all of them
 *     got done while the disk was held fits the bound plus one record per
 *     writer plus the batch the held sync covers (an upper bound: a slow
 *     machine cannot fail it); let go, every call completes and a reopen
 *     holds the last value of every context each writer wrote;
 *   - failing: with 8 writers held back, the held sync fails: every writer
 *     returns (CTX_CLOSED, or CTX_IO for a create or drop that waited for
 *     its own sync, or CTX_EXISTS for a create after a nowait drop that
 *     the failure undid), none hangs; ctx_close returns; the reopened store
 *     holds a prefix of what was decided (each context's version at most
 *     what its writer was told);
 *   - checkpoints: with checkpoint_bytes small, the checkpointer rotates the
 *     log while writers are held back, and everything completes once the
 *     disk is let go (no deadlock between the rotation and the bound).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "held_sync.h" /* fdatasync, held while `hold` is set, failing with `fail_eio` */

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

enum { VALUE = 32 * 1024, CALLS = 120, WRITERS = 8, BACKLOG = 512 * 1024 };

typedef struct writer {
	ctx_store *s;
	int me;
	bool batch; /* durability batch: plain ctx_put too */
	atomic_int done;
	atomic_int finished;
	ctx_status last;
	uint64_t last_version; /* of its context "w<me>", as told */
} writer;

static ctx_status one_call(writer *w, int i, const char *val)
{
	char id[16];
	snprintf(id, sizeof(id), "w%d", w->me);
	uint64_t rev = 0, ver = 0;
	ctx_status st;
	int kind = w->me % 4;
	if (kind == 3 && i % 10 == 9) {
		/* the same id dropped and created again, both nowait */
		st = ctx_drop_nowait(w->s, id, &rev);
		if (st != CTX_OK)
			return st;
		ctx_txn *t;
		if ((st = ctx_txn_begin_create(w->s, id, &t)) != CTX_OK)
			return st;
		ctx_txn_put(t, "k", 1, val, VALUE);
		st = ctx_txn_commit_nowait(t, 0, &ver, &rev);
	} else if (kind == 2 && w->batch) {
		st = ctx_put(w->s, id, "k", 1, val, VALUE, &ver);
	} else {
		ctx_txn *t;
		if ((st = ctx_txn_begin(w->s, id, &t)) != CTX_OK)
			return st;
		ctx_txn_put(t, "k", 1, val, VALUE);
		st = ctx_txn_commit_nowait(t, 0, &ver, &rev);
	}
	if (st == CTX_OK)
		w->last_version = ver;
	return st;
}

static void *write_all(void *p)
{
	writer *w = p;
	char *val = malloc(VALUE);
	for (int i = 0; i < CALLS; i++) {
		memset(val, 'a' + (i + w->me) % 26, VALUE);
		ctx_status st = one_call(w, i, val);
		w->last = st;
		if (st != CTX_OK)
			break;
		atomic_fetch_add(&w->done, 1);
	}
	free(val);
	atomic_store(&w->finished, 1);
	return NULL;
}

static ctx_store *open_dir(const char *dir, ctx_durability d, size_t ckpt)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = d;
	o.log_prealloc_bytes = 1;
	o.log_backlog_bytes = BACKLOG;
	o.checkpoint_bytes = ckpt;
	ctx_store *s;
	ctx_status st = ctx_open(&o, &s);
	if (st != CTX_OK)
		fail_msg("ctx_open: %s: %s", ctx_strerror(st), ctx_last_error());
	return s;
}

static int total_done(writer *w)
{
	int n = 0;
	for (int i = 0; i < WRITERS; i++)
		n += atomic_load(&w[i].done);
	return n;
}

/* Until a sync is held and no writer made progress for 300 ms (60 s at
 * most), or all finished. */
static void wait_stalled(writer *w)
{
	for (int i = 0; i < 200; i++) {
		int before = total_done(w);
		pause_ms(300);
		if (atomic_load(&held) > 0 && total_done(w) == before)
			return;
	}
}

/* The contexts created (durable), then the disk held, then the writers. */
static void start(writer *w, pthread_t *th, ctx_store *s, bool batch)
{
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (writer){.s = s, .me = i, .batch = batch};
		char id[16];
		snprintf(id, sizeof(id), "w%d", i);
		assert_ok(ctx_create(s, id));
	}
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "w0", &t));
	assert_ok(ctx_txn_commit(t, 0, NULL)); /* (always: waits for the creates sync) */
	for (int i = 0; i < WRITERS; i++)
		w[i].last_version = i == 0 ? 2 : 1;
	atomic_store(&hold, true);
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&th[i], NULL, write_all, &w[i]);
}

static void check_reopen(const char *dir, ctx_durability d, writer *w, bool exact)
{
	ctx_store *s = open_dir(dir, d, 0);
	for (int i = 0; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w%d", i);
		ctx_state *st;
		ctx_status g = ctx_get(s, id, &st);
		if (exact) {
			assert_ok(g);
			assert_int_equal(ctx_state_version(st), w[i].last_version);
			const void *v;
			size_t n;
			assert_true(ctx_state_lookup(st, "k", 1, &v, &n));
			assert_int_equal(n, VALUE);
		} else if (g == CTX_OK && w[i].me % 4 != 3) {
			/* a prefix: never past what the writer was told */
			assert_true(ctx_state_version(st) <= w[i].last_version + 1);
		}
		if (g == CTX_OK)
			ctx_state_release(st);
	}
	ctx_close(s);
}

static void held_then_let_go(ctx_durability d, size_t ckpt)
{
	reset_failures();
	char *dir = test_make_dir("review8_backlog");
	ctx_store *s = open_dir(dir, d, ckpt);
	writer w[WRITERS];
	pthread_t th[WRITERS];
	start(w, th, s, d == CTX_DURABILITY_BATCH);
	wait_stalled(w);
	int got = total_done(w);
	printf("backlog %d B, %d writers: %d calls of %d B returned while the disk was held\n",
	       BACKLOG, WRITERS, got, VALUE);
	/* The bound, one record past it per writer, and the held batch (at
	 * most another bound's worth: it was the backlog when taken). A
	 * drop + create counts as one call of two records. */
	assert_true(got < WRITERS * CALLS);
	assert_true(got <= 2 * (BACKLOG / VALUE) + 2 * WRITERS + 2);
	atomic_store(&hold, false);
	for (int i = 0; i < WRITERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].last, CTX_OK);
		assert_int_equal(atomic_load(&w[i].done), CALLS);
	}
	/* A waiting call makes every decided change durable and visible. */
	assert_ok(ctx_create(s, "end"));
	ctx_close(s);
	check_reopen(dir, d, w, true);
	test_remove_dir(dir);
	free(dir);
}

static void test_many_writers_held_always(void **unused)
{
	(void)unused;
	held_then_let_go(CTX_DURABILITY_ALWAYS, 0);
}

static void test_many_writers_held_batch(void **unused)
{
	(void)unused;
	held_then_let_go(CTX_DURABILITY_BATCH, 0);
}

/* checkpoint_bytes of 256 KiB: the checkpointer rotates the log while the
 * writers are held back. */
static void test_held_with_checkpoints(void **unused)
{
	(void)unused;
	held_then_let_go(CTX_DURABILITY_BATCH, 256 * 1024);
}

static void test_many_writers_disk_fails(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("review8_backlog_fail");
	ctx_store *s = open_dir(dir, CTX_DURABILITY_ALWAYS, 0);
	writer w[WRITERS];
	pthread_t th[WRITERS];
	start(w, th, s, false);
	wait_stalled(w);
	atomic_store(&fail_eio, 1);
	atomic_store(&hold, false);
	for (int i = 0; i < WRITERS; i++) {
		pthread_join(th[i], NULL);
		assert_true(atomic_load(&w[i].done) < CALLS);
		/* refused (CTX_CLOSED), or a waiting create/drop met the failure
		 * (CTX_IO); a create after a nowait drop whose record failed finds
		 * the context back (the failed drop takes its mark back): EXISTS */
		if (w[i].last != CTX_CLOSED && w[i].last != CTX_IO &&
		    !(w[i].last == CTX_EXISTS && i % 4 == 3))
			fail_msg("writer %d ended with %s", i, ctx_strerror(w[i].last));
	}
	atomic_store(&fail_eio, 0);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.io_errno, EIO);
	ctx_close(s);
	check_reopen(dir, CTX_DURABILITY_ALWAYS, w, false);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_many_writers_held_always),
	    cmocka_unit_test(test_many_writers_held_batch),
	    cmocka_unit_test(test_held_with_checkpoints),
	    cmocka_unit_test(test_many_writers_disk_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
