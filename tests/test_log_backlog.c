/*
 * test_log_backlog.c - a stalled disk holds back writers that do not wait for
 * their own sync (ctx_options.log_backlog_bytes), instead of letting the
 * records and versions they decide pile up in the heap without bound
 * (tests/probes/probe_nowait_backlog.c: 400 nowait commits of 256 KiB with a
 * slow fdatasync grew the heap by 199 MiB before round 7).
 *
 * The test defines fdatasync itself (tests/held_sync.h: libctx's vfs_sync
 * calls it; the executable's definition wins at link time): while `hold` is
 * set, a sync waits until the test lets it go. The checks are upper bounds on what a
 * writer gets done while the disk is held, so a slow machine cannot fail
 * them; without the bound the writer finishes everything at once.
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

#include "held_sync.h" /* fdatasync, held while `hold` is set */

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

enum { VALUE = 64 * 1024, COMMITS = 200, BACKLOG = 1 << 20 };

static ctx_store *open_dir(const char *dir, ctx_durability d, size_t backlog)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = d;
	o.log_prealloc_bytes = 1; /* no zeroer syncs in the picture */
	o.log_backlog_bytes = backlog;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	return s;
}

typedef struct writer {
	ctx_store *s;
	bool nowait;
	atomic_int done; /* commits returned */
	atomic_int failed;
	ctx_status last;
} writer;

static void *write_all(void *p)
{
	writer *w = p;
	static char val[VALUE];
	for (int i = 0; i < COMMITS; i++) {
		memset(val, 'a' + i % 26, sizeof(val));
		ctx_status st;
		if (w->nowait) {
			ctx_txn *t;
			uint64_t rev;
			st = ctx_txn_begin(w->s, "c", &t);
			if (st == CTX_OK) {
				ctx_txn_put(t, "k", 1, val, sizeof(val));
				st = ctx_txn_commit_nowait(t, 0, NULL, &rev);
			}
		} else {
			st = ctx_put(w->s, "c", "k", 1, val, sizeof(val), NULL);
		}
		w->last = st;
		if (st != CTX_OK) {
			atomic_fetch_add(&w->failed, 1);
			break;
		}
		atomic_fetch_add(&w->done, 1);
	}
	return NULL;
}

/* Until a sync is held and the writer made no progress for 300 ms (60 s at
 * most): it is held back, or done. */
static void wait_stalled_count(atomic_int *done)
{
	for (int i = 0; i < 200; i++) {
		int before = atomic_load(done);
		pause_ms(300);
		if (atomic_load(&held) > 0 && atomic_load(done) == before)
			return;
	}
}

static void wait_stalled(writer *w)
{
	wait_stalled_count(&w->done);
}

/* Hold the disk; let the writer run until it stops (or 60 s); the commits it
 * got done must fit the backlog: its bytes, one record past it, and the
 * batch the held sync covers. Then let the disk go: everything completes. */
static void check_held_back(ctx_durability d, bool nowait)
{
	char *dir = test_make_dir("log_backlog");
	ctx_store *s = open_dir(dir, d, BACKLOG);
	assert_ok(ctx_create(s, "c"));
	atomic_store(&hold, true);
	writer w = {.s = s, .nowait = nowait};
	pthread_t th;
	pthread_create(&th, NULL, write_all, &w);
	wait_stalled(&w);
	int got = atomic_load(&w.done);
	printf("backlog %d B: %d commits of %d B while the disk was held\n", BACKLOG, got, VALUE);
	assert_true(got < COMMITS);
	assert_true(got <= BACKLOG / VALUE + 3);
	atomic_store(&hold, false);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&w.failed), 0);
	assert_int_equal(atomic_load(&w.done), COMMITS);
	ctx_close(s);
	/* Every commit reached the log, in order. */
	s = open_dir(dir, d, 0);
	ctx_state *st;
	assert_ok(ctx_get(s, "c", &st));
	assert_int_equal(ctx_state_version(st), 1 + COMMITS);
	const void *v;
	size_t n;
	assert_true(ctx_state_lookup(st, "k", 1, &v, &n));
	assert_int_equal(n, VALUE);
	assert_int_equal(((const char *)v)[0], 'a' + (COMMITS - 1) % 26);
	ctx_state_release(st);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_nowait_commits_held_back(void **unused)
{
	check_held_back(CTX_DURABILITY_ALWAYS, true);
}

static void test_batch_puts_held_back(void **unused)
{
	check_held_back(CTX_DURABILITY_BATCH, false);
}

/* A writer held back by the bound is let go with the log's failure, and
 * told so: it does not wait forever for a disk that failed. */
static void test_held_back_writer_sees_failure(void **unused)
{
	char *dir = test_make_dir("log_backlog_fail");
	ctx_store *s = open_dir(dir, CTX_DURABILITY_BATCH, BACKLOG);
	assert_ok(ctx_create(s, "c"));
	atomic_store(&hold, true);
	writer w = {.s = s, .nowait = false};
	pthread_t th;
	pthread_create(&th, NULL, write_all, &w);
	wait_stalled(&w);
	atomic_store(&fail_eio, 1);
	atomic_store(&hold, false);
	pthread_join(th, NULL);
	atomic_store(&fail_eio, 0);
	assert_true(atomic_load(&w.done) < COMMITS);
	assert_int_equal(atomic_load(&w.failed), 1);
	assert_int_equal(w.last, CTX_CLOSED);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* The small writes that are not commits of keys (ttl changes, points made
 * and deleted, restores) wait on the bound too under durability batch: held
 * back after about BACKLOG bytes of their records, not 20,000 calls (round
 * 8's review: tests/probes/probe8_batch_unthrottled.c). */
enum { SMALL_BACKLOG = 64 << 10, SMALL_CALLS = 20000 };

typedef struct small_writer {
	ctx_store *s;
	int kind; /* 0 ttl, 1 point create + delete, 2 restore */
	atomic_int done;
	ctx_status last;
} small_writer;

static void *write_small(void *p)
{
	small_writer *w = p;
	for (int i = 0; i < SMALL_CALLS; i++) {
		uint64_t v = 0;
		ctx_status st;
		if (w->kind == 0) {
			st = ctx_set_ttl(w->s, "c", 3600000 + (uint64_t)i);
		} else if (w->kind == 1) {
			st = ctx_point_create(w->s, "c", "p", &v);
			if (st == CTX_OK)
				st = ctx_point_delete(w->s, "c", v);
		} else {
			st = ctx_restore(w->s, "c", 2, NULL);
		}
		w->last = st;
		if (st != CTX_OK)
			break;
		atomic_fetch_add(&w->done, 1);
	}
	return NULL;
}

static void test_batch_small_writes_held_back(void **unused)
{
	(void)unused;
	for (int kind = 0; kind < 3; kind++) {
		char *dir = test_make_dir("log_backlog_small");
		ctx_store *s = open_dir(dir, CTX_DURABILITY_BATCH, SMALL_BACKLOG);
		assert_ok(ctx_create(s, "c"));
		assert_ok(ctx_put(s, "c", "k", 1, "x", 1, NULL));
		assert_ok(ctx_point_create(s, "c", "base", NULL)); /* pins version 2 */
		ctx_state *st;
		assert_ok(ctx_get_latest(s, "c", &st));
		uint64_t rev = ctx_state_revision(st), durable = 0;
		ctx_state_release(st);
		for (int i = 0; i < 6000 && durable < rev; i++) { /* the batch's sync */
			assert_ok(ctx_durable_revision(s, &durable));
			pause_ms(10);
		}
		assert_true(durable >= rev);
		atomic_store(&hold, true);
		small_writer w = {.s = s, .kind = kind};
		pthread_t th;
		pthread_create(&th, NULL, write_small, &w);
		wait_stalled_count(&w.done);
		int got = atomic_load(&w.done);
		printf("kind %d: %d calls while the disk was held\n", kind, got);
		assert_true(got < SMALL_CALLS);
		assert_true(got <= SMALL_BACKLOG / 16 + 3); /* records of 16 B at least */
		atomic_store(&hold, false);
		pthread_join(th, NULL);
		assert_int_equal(w.last, CTX_OK);
		assert_int_equal(atomic_load(&w.done), SMALL_CALLS);
		ctx_close(s);
		test_remove_dir(dir);
		free(dir);
	}
}

/* SIZE_MAX: no bound, as before (the writer finishes with the disk held). */
static void test_no_bound(void **unused)
{
	char *dir = test_make_dir("log_backlog_none");
	ctx_store *s = open_dir(dir, CTX_DURABILITY_BATCH, SIZE_MAX);
	assert_ok(ctx_create(s, "c"));
	atomic_store(&hold, true);
	writer w = {.s = s, .nowait = false};
	pthread_t th;
	pthread_create(&th, NULL, write_all, &w);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&w.done), COMMITS);
	atomic_store(&hold, false);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nowait_commits_held_back),
	    cmocka_unit_test(test_batch_puts_held_back),
	    cmocka_unit_test(test_held_back_writer_sees_failure),
	    cmocka_unit_test(test_batch_small_writes_held_back),
	    cmocka_unit_test(test_no_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
