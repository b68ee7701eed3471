/*
 * test_r11_fanout.c - what round 11 changed for 64 watchers and 2 writers
 * (issue 11):
 *
 *   - the feed's waker paces itself: after a pause it waits its linger
 *     (0.1 ms) before a pass, and while commits keep coming (each pass
 *     within the gap of the last) twice its last wait, up to its pace
 *     (2 ms), so that sleeping watchers are woken at most about once per
 *     pace, not once per burst of commits; a pause resets it;
 *   - with the window grown and shrinking again, no wake-up is lost: many
 *     watchers asleep in ctx_watch_wait, writers committing in bursts with
 *     pauses, every watcher gets every revision in order.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "feed_util.h"

static void rec(feed *f, uint64_t rev, const char *id)
{
	const void *keys[1] = {"k"};
	size_t klens[1] = {1};
	feed_record(f, rev, CTX_EVENT_COMMITTED, id, strlen(id), rev, 1, keys, klens);
}

/* Every watcher takes revision rev and is caught up (armed again). */
static void all_take(ctx_watch **w, int n, uint64_t rev)
{
	for (int i = 0; i < n; i++) {
		ctx_event *e = NULL;
		assert_ok(ctx_watch_next(w[i], &e));
		assert_int_equal(e->revision, rev);
		ctx_event_free(e);
		assert_int_equal(ctx_watch_next(w[i], &e), CTX_NOT_FOUND);
	}
}

enum { W = 8 }; /* more than INLINE_WAKE: the waker wakes them */

/* Rounds of one commit each, every watcher reading it after the waker's
 * pass: the window of round r is the linger doubled r times, at most the
 * pace, while each round comes within the gap (60 s here) of the last
 * pass; after a pause longer than the gap it is the linger again. */
static void test_window_grows_while_commits_stream(void **unused)
{
	(void)unused;
	const long linger = 100000, pace = 800000;
	feed *f = NULL;
	assert_ok(feed_open(1,
	                    &(feed_config){.history = 256,
	                                   .queue = 1000,
	                                   .wake_linger_ns = linger,
	                                   .wake_pace_ns = pace,
	                                   .wake_gap_ns = 60000000000L},
	                    &f));
	ctx_watch *w[W];
	for (int i = 0; i < W; i++)
		assert_ok(feed_watch_open(f, "", true, 0, &w[i]));
	assert_int_equal(feed_stats_of(f).waker_window_ns, 0);
	long want = linger;
	for (uint64_t rev = 1; rev <= 7; rev++) {
		uint64_t passes = feed_stats_of(f).waker_passes;
		rec(f, rev, "a");
		feed_waker_settles(f);
		feed_stats st = feed_stats_of(f);
		assert_int_equal(st.waker_passes, passes + 1);
		assert_int_equal(st.waker_window_ns, want);
		all_take(w, W, rev);
		want = want * 2 > pace ? pace : want * 2;
	}
	assert_int_equal(want, pace); /* it reached the pace and stayed there */
	for (int i = 0; i < W; i++)
		ctx_watch_close(w[i]);
	feed_close(f);
}

static void test_window_resets_after_a_pause(void **unused)
{
	(void)unused;
	const long linger = 100000;
	feed *f = NULL;
	assert_ok(feed_open(1,
	                    &(feed_config){.history = 256,
	                                   .queue = 1000,
	                                   .wake_linger_ns = linger,
	                                   .wake_pace_ns = 800000,
	                                   .wake_gap_ns = 1000000},
	                    &f));
	ctx_watch *w[W];
	for (int i = 0; i < W; i++)
		assert_ok(feed_watch_open(f, "", true, 0, &w[i]));
	for (uint64_t rev = 1; rev <= 5; rev++) {
		rec(f, rev, "a");
		feed_waker_settles(f);
		assert_int_equal(feed_stats_of(f).waker_window_ns, linger);
		all_take(w, W, rev);
		usleep(20000); /* a pause of 20 ms: more than the gap of 1 ms */
	}
	for (int i = 0; i < W; i++)
		ctx_watch_close(w[i]);
	feed_close(f);
}

/* ---- no lost wake-up ------------------------------------------------------------- */

enum { WATCHERS = 64, WRITERS = 2, BURSTS = 40, BURST = 25 };

typedef struct run {
	ctx_store *s;
	int n;
	atomic_int *ready;
} run;

/* Bursts of BURST commits to context w/n, with pauses of 0 to 3 ms: the
 * waker's window grows and resets. */
static void *burst_writer(void *arg)
{
	run *r = arg;
	char id[16];
	snprintf(id, sizeof(id), "w/%d", r->n);
	while (atomic_load(r->ready) < WATCHERS)
		usleep(100);
	uint64_t seed = 1234 + (uint64_t)r->n;
	for (int b = 0; b < BURSTS; b++) {
		for (int i = 0; i < BURST; i++)
			T_CHECK_STATUS(ctx_put(r->s, id, "k", 1, &i, sizeof(i), NULL), CTX_OK);
		usleep((useconds_t)test_rand_below(&seed, 3000));
	}
	return NULL;
}

/* Wait for every commit of the writers (each of its context's versions
 * 2 .. 1 + BURSTS * BURST), in revision order; a wait that never ends is a
 * lost wake-up (60 s: the test fails instead of hanging). */
static void *sleepy_watcher(void *arg)
{
	run *r = arg;
	ctx_watch *w = NULL;
	T_CHECK_STATUS(ctx_watch_open(r->s, "w/", true, 0, &w), CTX_OK);
	atomic_fetch_add(r->ready, 1);
	uint64_t last_rev = 0, next_version[WRITERS];
	for (int i = 0; i < WRITERS; i++)
		next_version[i] = 2;
	for (int got = 0; got < WRITERS * BURSTS * BURST; got++) {
		ctx_event *e = NULL;
		ctx_status st = ctx_watch_wait(w, 60000, &e);
		T_CHECK_STATUS(st, CTX_OK);
		if (st != CTX_OK)
			break;
		T_CHECK(e->kind == CTX_EVENT_COMMITTED);
		T_CHECK(e->revision > last_rev);
		int n = e->id[2] - '0';
		T_CHECK(n >= 0 && n < WRITERS);
		if (n >= 0 && n < WRITERS)
			T_CHECK(e->version == next_version[n]++);
		last_rev = e->revision;
		ctx_event_free(e);
	}
	ctx_watch_close(w);
	return NULL;
}

static void test_no_lost_wakeup_with_bursts(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_store *s = test_open_memory();
	atomic_int ready = 0;
	for (int i = 0; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w/%d", i);
		assert_ok(ctx_create(s, id));
	}
	run rs[WATCHERS], ws[WRITERS];
	pthread_t rt[WATCHERS], wt[WRITERS];
	for (int i = 0; i < WATCHERS; i++) {
		rs[i] = (run){s, i, &ready};
		assert_int_equal(pthread_create(&rt[i], NULL, sleepy_watcher, &rs[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++) {
		ws[i] = (run){s, i, &ready};
		assert_int_equal(pthread_create(&wt[i], NULL, burst_writer, &ws[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < WATCHERS; i++)
		pthread_join(rt[i], NULL);
	assert_no_thread_failures();
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_window_grows_while_commits_stream),
	    cmocka_unit_test(test_window_resets_after_a_pause),
	    cmocka_unit_test(test_no_lost_wakeup_with_bursts),
	};
	return cmocka_run_group_tests(tests, test_timer_start, test_timer_stop);
}
