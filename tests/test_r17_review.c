/*
 * test_r17_review.c - a hostile review of round 16's library changes
 * (r17-review): leader/follower group commit (log.c, log_lead), ctx_flush,
 * ctx_flush_defer, the stat log_led_syncs and ctx_close_at_exit.
 *
 * What is checked:
 * - a leader cancelled in its sync (pthread_cancel; fdatasync and pwrite are
 *   cancellation points, and a waiting commit reaches them only since round
 *   16): the round is finished all the same, so later commits are synced
 *   and the store closes. On the base the cancelled thread left the round
 *   running for good: every later durable commit and ctx_close hung;
 * - a leader's failed fdatasync: CTX_IO reaches the leader and every
 *   follower of the group, and no later commit is acknowledged; and
 *   log_led_syncs stays "of log_syncs" (on the base a failed led round was
 *   counted there and not in log_syncs, so log_syncs - log_led_syncs, the
 *   flusher's syncs, wrapped around);
 * - ctx_flush: CTX_IO once the log failed, CTX_OK on batch and memory
 *   stores; deferred commits (ctx_flush_defer) are synced once, by one
 *   ctx_flush;
 * - ctx_close_at_exit: the directory is unlocked and complete (a second
 *   store opened on it in the same process sees every change, nowait ones
 *   included, and works); a store closed so with a watch and a session
 *   still open, then exit: the process exits 0 (child process).
 * The fdatasync of this program can be held (as held_sync.h's, and it
 * notes which thread it holds). Nothing is
 * timed; a commit that does not return within minutes is reported as hung
 * instead of hanging the test.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/syscall.h>

#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define CTX_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CTX_TEST_ASAN 1
#endif
#endif

/* This program's fdatasync (libctx's vfs_sync calls it): while `hold` is
 * set every sync waits, counted in `held`, the last one's thread in
 * held_tid; once let go, it fails with EIO while `fail_eio` is set. */
static atomic_bool hold;
static atomic_int held;
static atomic_int held_tid;
static atomic_int fail_eio;

int fdatasync(int fd)
{
	if (atomic_load(&hold)) {
		atomic_store(&held_tid, (int)gettid());
		atomic_fetch_add(&held, 1);
		while (atomic_load(&hold)) {
			struct timespec ts = {0, 200 * 1000};
			nanosleep(&ts, NULL); /* a cancellation point, as fdatasync */
		}
		atomic_fetch_sub(&held, 1);
	}
	if (atomic_load(&fail_eio)) {
		errno = EIO;
		return -1;
	}
	return (int)syscall(SYS_fdatasync, fd);
}

static ctx_stats stats_of(ctx_store *s)
{
	ctx_stats st;
	ctx_get_stats(s, &st);
	return st;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Wait (up to `seconds`, a hang's bound, not a timing) until *flag. */
static bool wait_flag(atomic_bool *flag, int seconds)
{
	for (long i = 0; i < seconds * 100L && !atomic_load(flag); i++)
		sleep_ms(10);
	return atomic_load(flag);
}

typedef struct put_job {
	atomic_int tid;
	ctx_store *s;
	const char *id;
	char key[24];
	ctx_status st;
	atomic_bool done;
} put_job;

static void *put_main(void *p)
{
	put_job *j = p;
	atomic_store(&j->tid, (int)gettid());
	j->st = ctx_put(j->s, j->id, j->key, strlen(j->key), "v", 1, NULL);
	atomic_store(&j->done, true);
	return NULL;
}

static void put_start(put_job *j, pthread_t *th, ctx_store *s, const char *id, const char *key)
{
	j->s = s;
	j->id = id;
	snprintf(j->key, sizeof(j->key), "%s", key);
	j->st = CTX_IO;
	atomic_store(&j->tid, 0);
	atomic_store(&j->done, false);
	assert_int_equal(pthread_create(th, NULL, put_main, j), 0);
}

static void wait_held(int n)
{
	for (long i = 0; i < 60000 && atomic_load(&held) < n; i++)
		sleep_ms(1);
	assert_true(atomic_load(&held) >= n);
}

/* ---- a leader cancelled in its sync ----------------------------------------------------- */

static void test_cancelled_leader(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r17_review_cancel");
	ctx_store *s = test_open_always(dir, 1);
	assert_ok(ctx_create(s, "c"));
	for (int i = 0; i < 5; i++) /* the flusher waits for work from now on */
		test_put_str(s, "c", "warm", "v");

	/* A writer alone leads its sync (its append woke no flusher): hold
	 * it there and cancel the thread. The flusher may take a round now and
	 * then (on its way back to its wait): try again until a leader holds. */
	put_job j;
	pthread_t th;
	bool led = false;
	for (int attempt = 0; attempt < 20 && !led; attempt++) {
		atomic_store(&hold, true);
		put_start(&j, &th, s, "c", "k1");
		wait_held(1);
		led = atomic_load(&held_tid) == atomic_load(&j.tid);
		if (!led) {
			atomic_store(&hold, false);
			pthread_join(th, NULL);
			assert_ok(j.st);
		}
	}
	assert_true(led);
	assert_int_equal(pthread_cancel(th), 0);
	sleep_ms(20); /* (the cancel acts at once where it can) */
	atomic_store(&hold, false);
	void *ret = NULL;
	pthread_join(th, &ret);
	/* (on the base the cancel ended the thread inside the round; now it
	 * acts at a cancellation point after the round, if any) */
	bool cancelled = ret == PTHREAD_CANCELED && !atomic_load(&j.done);

	/* Another commit, and the store's close, must not hang. */
	put_job k;
	pthread_t th2;
	put_start(&k, &th2, s, "c", "k2");
	if (!wait_flag(&k.done, 120))
		fail_msg("a commit after a leader cancelled in its sync hung (its thread %s)",
		         cancelled ? "was cancelled" : "returned");
	pthread_join(th2, NULL);
	assert_ok(k.st);
	if (atomic_load(&j.done))
		assert_ok(j.st);
	ctx_close(s);
	/* The cancelled leader's round was finished: its own change is on
	 * disk (synced by the round it took), whether its call returned or
	 * not. */
	s = test_open_always(dir, 1);
	assert_true(test_has_str(s, "c", "k1", "v"));
	assert_true(test_has_str(s, "c", "k2", "v"));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* ---- a leader's failed sync ------------------------------------------------------------- */

#define FOLLOWERS 3

static void test_failed_leader_sync(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r17_review_eio");
	ctx_store *s = test_open_always(dir, 1);
	const char *ids[1 + FOLLOWERS] = {"a", "b", "c", "d"};
	for (int i = 0; i < 1 + FOLLOWERS; i++) {
		assert_ok(ctx_create(s, ids[i]));
		test_put_str(s, ids[i], "before", "v");
	}
	ctx_stats st0 = stats_of(s);
	/* The leader holds its sync; the followers' commits are decided
	 * meanwhile (the next group); then the leader's sync fails. */
	atomic_store(&hold, true);
	put_job j[1 + FOLLOWERS];
	pthread_t th[1 + FOLLOWERS];
	put_start(&j[0], &th[0], s, ids[0], "k");
	wait_held(1);
	for (int i = 1; i <= FOLLOWERS; i++)
		put_start(&j[i], &th[i], s, ids[i], "k");
	/* (their appends happen while the sync is held: wait until decided) */
	for (int i = 1; i <= FOLLOWERS; i++) {
		for (long n = 0; n < 60000; n++) {
			ctx_state *l = NULL;
			assert_ok(ctx_get_latest(s, ids[i], &l));
			bool decided = test_state_has_str(l, "k", "v");
			ctx_state_release(l);
			if (decided)
				break;
			sleep_ms(1);
		}
	}
	atomic_store(&fail_eio, 1);
	atomic_store(&hold, false);
	for (int i = 0; i <= FOLLOWERS; i++) {
		pthread_join(th[i], NULL);
		/* Every waiter of the failed sync, and of the group after it,
		 * is told: none is acknowledged. */
		assert_int_equal(j[i].st, CTX_IO);
		assert_false(test_has_str(s, ids[i], "k", "v"));
	}
	/* Later commits are refused, nothing is acknowledged over the failure. */
	assert_int_equal(ctx_put(s, "a", "later", 5, "v", 1, NULL), CTX_CLOSED);
	uint64_t d;
	assert_int_equal(ctx_durable_revision(s, &d), CTX_IO);
	assert_int_equal(ctx_flush(s), CTX_IO);
	ctx_stats st1 = stats_of(s);
	assert_int_equal(st1.io_errno, EIO);
	/* log_led_syncs counts syncs among log_syncs: never more. */
	assert_true(st1.log_led_syncs <= st1.log_syncs);
	assert_true(st1.log_led_syncs - st0.log_led_syncs <= st1.log_syncs - st0.log_syncs);
	ctx_close(s);
	atomic_store(&fail_eio, 0);
	s = test_open_always(dir, 1);
	for (int i = 0; i < 1 + FOLLOWERS; i++) {
		assert_true(test_has_str(s, ids[i], "before", "v"));
		assert_false(test_has_str(s, ids[i], "later", "v"));
	}
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* ---- ctx_flush and ctx_flush_defer --------------------------------------------------------- */

/* Deferred commits are synced once, by one ctx_flush (or by the flusher if
 * it was on its way: then by nobody else), and each exactly once: a second
 * ctx_flush syncs nothing. */
static void test_deferred_synced_once(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r17_review_defer");
	ctx_store *s = test_open_always(dir, 1);
	assert_ok(ctx_create(s, "a"));
	for (int i = 0; i < 5; i++)
		test_put_str(s, "a", "warm", "v");
	long rounds = test_iters(50, 10);
	for (long r = 0; r < rounds; r++) {
		ctx_flush_defer(s, true);
		uint64_t syncs0 = stats_of(s).log_syncs, rev = 0;
		for (int i = 0; i < 10; i++) {
			char k[32];
			snprintf(k, sizeof(k), "k%ld.%d", r, i);
			rev = test_commit_nowait(s, "a", k);
		}
		assert_ok(ctx_flush(s));
		while (test_durable(s) < rev) /* (the flusher's round, if it took them) */
			sleep_ms(1);
		uint64_t syncs1 = stats_of(s).log_syncs;
		assert_true(syncs1 - syncs0 >= 1 && syncs1 - syncs0 <= 2);
		assert_ok(ctx_flush(s));
		assert_int_equal(stats_of(s).log_syncs, syncs1);
		ctx_flush_defer(s, false);
	}
	ctx_close(s);
	s = test_open_always(dir, 1);
	ctx_state *st;
	assert_ok(ctx_get(s, "a", &st));
	assert_int_equal(ctx_state_count(st), (size_t)(rounds * 10 + 1));
	ctx_state_release(st);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* ---- ctx_close_at_exit ------------------------------------------------------------------------ */

static void test_close_at_exit_then_reopen(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r17_review_atexit");
	ctx_store *s = test_open_always(dir, 1);
	long n = test_iters(200, 20);
	assert_ok(ctx_create(s, "a"));
	for (long i = 0; i < n; i++) {
		char k[24];
		snprintf(k, sizeof(k), "k%ld", i);
		if (i % 2)
			test_put_str(s, "a", k, "v");
		else
			(void)test_commit_nowait(s, "a", k); /* not yet synced, some */
	}
	ctx_close_at_exit(s);
	/* Unlocked, and complete: the same process opens it again. */
	for (int round = 0; round < 2; round++) {
		s = test_open_always(dir, 1);
		ctx_state *st;
		assert_ok(ctx_get(s, "a", &st));
		assert_int_equal(ctx_state_count(st), (size_t)(n + round));
		ctx_state_release(st);
		char k[24];
		snprintf(k, sizeof(k), "again%d", round);
		test_put_str(s, "a", k, "v");
		if (round == 0)
			ctx_close_at_exit(s);
		else
			ctx_close(s);
	}
	test_remove_dir(dir);
	free(dir);
}

/* A store closed with ctx_close_at_exit while a watch and a session are
 * still open (the header's rule says to close them first; a process that
 * exits does not always), then exit: the exit must not crash. In a child
 * process of its own (this program run again: a fork of a process that used
 * liburcu's call_rcu has no call_rcu thread, and a close's rcu_barrier
 * waits for it forever). */
static int child_close_at_exit(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_ALWAYS;
	ctx_store *s = NULL;
	if (ctx_open(&o, &s) != CTX_OK || ctx_create(s, "a") != CTX_OK)
		return 3;
	ctx_watch *w = NULL;
	ctx_session *se = NULL;
	if (ctx_watch_open(s, "a", false, 0, &w) != CTX_OK || ctx_session_open(s, &se) != CTX_OK)
		return 4;
	for (int i = 0; i < 100; i++)
		if (ctx_put(s, "a", "k", 1, &i, sizeof(i), NULL) != CTX_OK)
			return 5;
	ctx_close_at_exit(s);
	return 0;
}

static void test_close_at_exit_with_handles_open(void **unused)
{
	(void)unused;
#ifdef CTX_TEST_ASAN
	/* (ctx_close_at_exit is ctx_close there, and the handles left open
	 * are leaks and touches of freed memory by the header's rule) */
	skip();
#endif
	char *dir = test_make_dir("r17_review_atexit_open");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/proc/self/exe", "test_r17_review", "--child-close-at-exit", dir, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	ctx_store *s = test_open_always(dir, 1);
	ctx_state *st;
	assert_ok(ctx_get(s, "a", &st));
	assert_int_equal(ctx_state_version(st), 101);
	ctx_state_release(st);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A failed test must not leave the next one's syncs held or failing. */
static int reset_syncs(void **unused)
{
	(void)unused;
	atomic_store(&hold, false);
	atomic_store(&fail_eio, 0);
	atomic_store(&held_tid, 0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--child-close-at-exit"))
		return child_close_at_exit(argv[2]);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_cancelled_leader, reset_syncs),
	    cmocka_unit_test_setup(test_failed_leader_sync, reset_syncs),
	    cmocka_unit_test_setup(test_deferred_synced_once, reset_syncs),
	    cmocka_unit_test_setup(test_close_at_exit_then_reopen, reset_syncs),
	    cmocka_unit_test_setup(test_close_at_exit_with_handles_open, reset_syncs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
