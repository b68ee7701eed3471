/*
 * test_watch_fanout.c - the shared event log and its armed watchers
 * (issue 11), driven on a bare feed (src/lib/watch.h):
 *
 *   - a watcher with nothing pending is armed, and only armed watchers are
 *     woken: a report with 64 watchers busy behind the frontier arms and
 *     wakes none, and each of them still reads every event from its cursor;
 *   - a report wakes at most two armed watchers itself (at once: their fds
 *     are readable when it returns); with more armed, the feed's waker
 *     thread wakes them, each once per event that finds it armed, so that
 *     a report's work does not grow with the number of sleeping watchers;
 *   - a watcher that reads before the waker got to it takes its events
 *     all the same (ctx_watch_next never waits for the waker);
 *   - a waker that falls a whole log behind does not make armed watchers
 *     lag: the revisions it has not looked at are looked at before they
 *     leave the log;
 *   - a report that wakes a watcher itself while a pass of the waker is
 *     due hands it the revisions the waker has not looked at yet;
 *   - a watcher that catches up while the waker's wake-up of it is in
 *     flight has an unreadable fd once ctx_watch_next says CTX_NOT_FOUND;
 *   - a watcher of one context stays armed (and unwoken) across revisions of
 *     other contexts, and is not lagged by them while it waits;
 *   - watch_queue counts revisions behind the frontier: an event left unread
 *     while watch_queue other revisions go by makes the watcher lag right
 *     after the revisions of that window.
 */
#include "testutil.h"

#include <inttypes.h>
#include <poll.h>
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

static bool fd_readable(const ctx_watch *w)
{
	struct pollfd p = {.fd = ctx_watch_fd(w), .events = POLLIN};
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Whether w's fd becomes readable (the waker's doing, after the report;
 * the bound only stops a broken build from hanging). */
static bool fd_becomes_readable(const ctx_watch *w)
{
	struct pollfd p = {.fd = ctx_watch_fd(w), .events = POLLIN};
	return poll(&p, 1, 60000) == 1 && (p.revents & POLLIN);
}

static size_t armed(feed *f)
{
	feed_stats st;
	feed_get_stats(f, &st);
	return st.armed_watchers;
}

static void expect_rev(ctx_watch *w, uint64_t rev, ctx_event_kind kind)
{
	ctx_event *e = NULL;
	assert_ok(ctx_watch_next(w, &e));
	if (e->revision != rev || e->kind != kind)
		fail_msg("expected revision %" PRIu64 " kind %d, got %" PRIu64 " kind %d", rev,
		         (int)kind, e->revision, (int)e->kind);
	ctx_event_free(e);
}

static void expect_none(ctx_watch *w)
{
	ctx_event *e = NULL;
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND);
	assert_false(fd_readable(w));
}

static void test_only_armed_watchers_are_woken(void **unused)
{
	enum { W = 64, N = 100 };
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 256, .queue = 1000}, &f));
	ctx_watch *w[W];
	for (int i = 0; i < W; i++)
		assert_ok(feed_watch_open(f, "", true, 0, &w[i]));
	assert_int_equal(armed(f), W);
	rec(f, 1, "a");
	for (int i = 0; i < W; i++)
		assert_true(fd_becomes_readable(w[i]));
	feed_waker_settles(f);
	assert_int_equal(armed(f), 0); /* all woken, none armed */
	for (int i = 0; i < W; i++) {
		assert_true(fd_readable(w[i]));
		expect_rev(w[i], 1, CTX_EVENT_COMMITTED);
		assert_false(fd_readable(w[i])); /* caught up: armed again */
	}
	assert_int_equal(armed(f), W);
	/* Half read nothing more: they stay behind, unarmed, readable. */
	for (uint64_t r = 2; r <= N; r++)
		rec(f, r, "a");
	for (int i = 0; i < W; i++)
		assert_true(fd_becomes_readable(w[i]));
	feed_waker_settles(f);
	assert_int_equal(armed(f), 0);
	for (int i = 0; i < W; i++) {
		assert_true(fd_readable(w[i]));
		for (uint64_t r = 2; r <= N; r++)
			expect_rev(w[i], r, CTX_EVENT_COMMITTED);
		expect_none(w[i]);
	}
	assert_int_equal(armed(f), W);
	for (int i = 0; i < W; i++)
		ctx_watch_close(w[i]);
	assert_int_equal(armed(f), 0);
	feed_close(f);
}

static void test_quiet_watcher_stays_armed(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 64, .queue = 4}, &f));
	ctx_watch *x = NULL;
	assert_ok(feed_watch_open(f, "x", false, 0, &x));
	/* 200 revisions of another context: past the log (64) and the queue
	 * (4), but x had nothing pending: it stays armed and asleep. */
	for (uint64_t r = 1; r <= 200; r++)
		rec(f, r, "y");
	assert_int_equal(armed(f), 1);
	assert_false(fd_readable(x));
	expect_none(x);
	rec(f, 201, "x");
	assert_int_equal(armed(f), 0);
	assert_true(fd_readable(x));
	expect_rev(x, 201, CTX_EVENT_COMMITTED);
	expect_none(x);
	ctx_watch_close(x);
	feed_close(f);
}

static void test_queue_counts_revisions_behind(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 64, .queue = 4}, &f));
	ctx_watch *x = NULL;
	assert_ok(feed_watch_open(f, "x", false, 0, &x));
	rec(f, 1, "x");
	for (uint64_t r = 2; r <= 3; r++)
		rec(f, r, "y");
	rec(f, 4, "x");
	for (uint64_t r = 5; r <= 10; r++)
		rec(f, r, "y");
	/* Event 1 is 9 revisions behind the frontier (10), past the queue of
	 * 4: x delivers the window [1, 5) - events 1 and 4 - then lags at 5. */
	expect_rev(x, 1, CTX_EVENT_COMMITTED);
	expect_rev(x, 4, CTX_EVENT_COMMITTED);
	ctx_event *e = NULL;
	assert_ok(ctx_watch_next(x, &e));
	assert_int_equal(e->kind, CTX_EVENT_LAGGED);
	assert_int_equal(e->resume_from, 5);
	assert_string_equal(e->id, "x");
	ctx_event_free(e);
	expect_none(x);
	rec(f, 11, "x");
	expect_none(x); /* nothing after the lag */
	ctx_watch_close(x);
	feed_close(f);
}

static void test_few_armed_are_woken_by_the_report(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 64, .queue = 64}, &f));
	ctx_watch *a = NULL, *b = NULL;
	assert_ok(feed_watch_open(f, "x", false, 0, &a));
	assert_ok(feed_watch_open(f, "", true, 0, &b));
	rec(f, 1, "x");
	/* Two armed: woken by the report itself, readable when it returns. */
	assert_true(fd_readable(a));
	assert_true(fd_readable(b));
	feed_stats st = feed_stats_of(f);
	assert_int_equal(st.inline_wakes, 2);
	assert_int_equal(st.waker_wakes, 0);
	expect_rev(a, 1, CTX_EVENT_COMMITTED);
	expect_rev(b, 1, CTX_EVENT_COMMITTED);
	expect_none(a);
	expect_none(b);
	ctx_watch_close(a);
	ctx_watch_close(b);
	feed_close(f);
}

static void test_many_armed_are_woken_by_the_waker(void **unused)
{
	enum { W = 64, ROUNDS = 20 };
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 256, .queue = 1000}, &f));
	ctx_watch *w[W];
	for (int i = 0; i < W; i++) /* half on "a", half on everything */
		assert_ok(feed_watch_open(f, i % 2 ? "a" : "", i % 2 == 0, 0, &w[i]));
	uint64_t rev = 0;
	for (int r = 0; r < ROUNDS; r++) {
		rec(f, ++rev, "b"); /* for the prefix watchers only */
		rec(f, ++rev, "a");
		for (int i = 0; i < W; i++) {
			assert_true(fd_becomes_readable(w[i]));
			if (i % 2 == 0)
				expect_rev(w[i], rev - 1, CTX_EVENT_COMMITTED);
			expect_rev(w[i], rev, CTX_EVENT_COMMITTED);
		}
		feed_waker_settles(f);
		for (int i = 0; i < W; i++)
			expect_none(w[i]); /* caught up: armed, unreadable */
		assert_int_equal(armed(f), W);
	}
	/* No report woke anybody itself; each watcher was woken by the waker
	 * at most once a round (the first event it matched, or it had read
	 * before the waker got to it). */
	feed_stats st = feed_stats_of(f);
	assert_int_equal(st.inline_wakes, 0);
	assert_true(st.waker_wakes > 0);
	assert_true(st.waker_wakes <= (uint64_t)W * ROUNDS);
	for (int i = 0; i < W; i++)
		ctx_watch_close(w[i]);
	feed_close(f);
}

static void test_read_before_the_waker(void **unused)
{
	enum { W = 8 };
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 64, .queue = 64}, &f));
	ctx_watch *w[W];
	for (int i = 0; i < W; i++)
		assert_ok(feed_watch_open(f, "", true, 0, &w[i]));
	/* Read at once after each report, whether or not the waker has
	 * woken the watcher yet: every event is there, in order, once. */
	for (uint64_t r = 1; r <= 200; r++) {
		rec(f, r, r % 2 ? "x" : "y");
		for (int i = 0; i < W; i++) {
			ctx_event *e = NULL;
			assert_ok(ctx_watch_next(w[i], &e));
			assert_int_equal(e->revision, r);
			ctx_event_free(e);
		}
	}
	feed_waker_settles(f);
	for (int i = 0; i < W; i++) {
		expect_none(w[i]);
		ctx_watch_close(w[i]);
	}
	feed_close(f);
}

static void test_quiet_watchers_armed_while_the_waker_lags(void **unused)
{
	enum { W = 3, N = 20000 };
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 16, .queue = 4}, &f));
	ctx_watch *w[W];
	for (int i = 0; i < W; i++) /* three armed: the waker's to wake */
		assert_ok(feed_watch_open(f, "x", false, 0, &w[i]));
	/* Revisions of another context, far past the log (16), faster than
	 * the waker can look: none is for them, so none may lag. */
	for (uint64_t r = 1; r <= N; r++)
		rec(f, r, "y");
	rec(f, N + 1, "x");
	for (int i = 0; i < W; i++) {
		assert_true(fd_becomes_readable(w[i]));
		expect_rev(w[i], N + 1, CTX_EVENT_COMMITTED);
	}
	feed_waker_settles(f);
	for (int i = 0; i < W; i++) {
		expect_none(w[i]);
		ctx_watch_close(w[i]);
	}
	feed_close(f);
}

/* A pass of the waker is due (three were armed when revision 2r-1 was
 * delivered), then only two are armed (one closes) and a report wakes a
 * watcher itself: the watcher reads from the revisions the waker has not
 * looked at yet, not from the new event, which would skip 2r-1 (round 4's
 * branch did: 64 revisions skipped in test_many_reporters). Each round
 * fails without the fix only when the waker has not made its pass between
 * the two reports, so the test makes many rounds. */
static void test_inline_wake_while_a_pass_is_due(void **unused)
{
	enum { R = 2000 };
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 64, .queue = 64}, &f));
	ctx_watch *all = NULL, *x = NULL;
	assert_ok(feed_watch_open(f, "", true, 0, &all));
	assert_ok(feed_watch_open(f, "x", false, 0, &x));
	uint64_t rev = 0;
	for (int r = 0; r < R; r++) {
		ctx_watch *third = NULL;
		assert_ok(feed_watch_open(f, "", true, 0, &third));
		assert_int_equal(armed(f), 3);
		rec(f, ++rev, "x"); /* three armed: left to the waker */
		ctx_watch_close(third);
		rec(f, ++rev, "y"); /* at most two armed: woken by the report */
		expect_rev(all, rev - 1, CTX_EVENT_COMMITTED);
		expect_rev(all, rev, CTX_EVENT_COMMITTED);
		expect_rev(x, rev - 1, CTX_EVENT_COMMITTED);
		feed_waker_settles(f);
		expect_none(all);
		expect_none(x);
	}
	ctx_watch_close(all);
	ctx_watch_close(x);
	feed_close(f);
}

/* A watcher that takes its event while the waker's wake-up of it is in
 * flight (woken, fd not yet written) and then finds nothing more: its fd
 * is unreadable when ctx_watch_next says CTX_NOT_FOUND, as with the
 * report's own wake-ups. Round 4's branch armed it only once the wake-up
 * had landed and otherwise left the fd readable (a caught-up watcher's fd
 * readable in test_replay_and_compacted); with 64 watchers on one waker
 * pass, read as soon as it wrote the first fd, most rounds find some
 * wake-up in flight. */
static void test_caught_up_while_the_waker_writes(void **unused)
{
	enum { W = 64, R = 500 };
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 64, .queue = 64}, &f));
	ctx_watch *w[W];
	for (int i = 0; i < W; i++)
		assert_ok(feed_watch_open(f, "", true, 0, &w[i]));
	for (uint64_t r = 1; r <= R; r++) {
		rec(f, r, "a");
		/* Once the waker writes the first fd, it is busy with the others. */
		struct pollfd p[W];
		for (int i = 0; i < W; i++)
			p[i] = (struct pollfd){.fd = ctx_watch_fd(w[i]), .events = POLLIN};
		assert_true(poll(p, W, 60000) > 0);
		for (int i = 0; i < W; i++) {
			expect_rev(w[i], r, CTX_EVENT_COMMITTED);
			expect_none(w[i]);
		}
	}
	for (int i = 0; i < W; i++)
		ctx_watch_close(w[i]);
	feed_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_only_armed_watchers_are_woken),
	    cmocka_unit_test(test_quiet_watcher_stays_armed),
	    cmocka_unit_test(test_queue_counts_revisions_behind),
	    cmocka_unit_test(test_few_armed_are_woken_by_the_report),
	    cmocka_unit_test(test_many_armed_are_woken_by_the_waker),
	    cmocka_unit_test(test_read_before_the_waker),
	    cmocka_unit_test(test_quiet_watchers_armed_while_the_waker_lags),
	    cmocka_unit_test(test_inline_wake_while_a_pass_is_due),
	    cmocka_unit_test(test_caught_up_while_the_waker_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
