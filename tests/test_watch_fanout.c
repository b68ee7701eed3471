/*
 * test_watch_fanout.c - the shared event log and its armed watchers
 * (issue 11), driven on a bare feed (src/lib/watch.h):
 *
 *   - a watcher with nothing pending is armed, and only armed watchers are
 *     woken: a report with 64 watchers busy behind the frontier arms and
 *     wakes none, and each of them still reads every event from its cursor;
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

#include "watch.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_only_armed_watchers_are_woken),
	    cmocka_unit_test(test_quiet_watcher_stays_armed),
	    cmocka_unit_test(test_queue_counts_revisions_behind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
