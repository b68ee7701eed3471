/*
 * test_watch.c - watches: the change feed (src/lib/watch.h) driven directly,
 * then through a store with many writers.
 *
 * The feed tests report revisions by hand (out of order, skipped, far ahead
 * of the frontier) and check that a watch sees exactly the events it should,
 * in revision order, once each; that a watcher that falls behind is told the
 * exact revision to resume from, and that resuming there gives every missed
 * event with no gap and no duplicate. The store tests check the same with
 * writer threads and real commits, creates and drops.
 *
 * Worker threads do not call cmocka's asserts (not thread-safe): they count
 * failures with T_CHECK, and the main thread asserts none after joining.
 * Every wait is bounded, so a lost event fails the test instead of hanging.
 */
#include "testutil.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "watch.h"

/* ---- helpers ------------------------------------------------------------------- */

/* A feed that keeps its history with no watcher open (watch_keep_history):
 * these tests are about the history itself; test_feed_bound.c covers the
 * feed that records only while watched. */
static feed *open_feed(uint64_t next_rev, size_t history, size_t queue)
{
	feed *f = NULL;
	feed_config cfg = {.history = history, .queue = queue, .keep_history = true};
	assert_ok(feed_open(next_rev, &cfg, &f));
	assert_non_null(f);
	return f;
}

static ctx_watch *watch_feed(feed *f, const char *id, bool prefix, uint64_t from)
{
	ctx_watch *w = NULL;
	assert_ok(feed_watch_open(f, id, prefix, from, &w));
	assert_non_null(w);
	return w;
}

/* Record revision rev as a commit to id of version rev, touching key "k<rev>". */
static void rec(feed *f, uint64_t rev, const char *id)
{
	char key[32];
	int kl = snprintf(key, sizeof(key), "k%" PRIu64, rev);
	const void *keys[1] = {key};
	size_t klens[1] = {(size_t)kl};
	feed_record(f, rev, CTX_EVENT_COMMITTED, id, strlen(id), rev, 1, keys, klens);
}

static bool fd_readable(const ctx_watch *w)
{
	struct pollfd p = {.fd = ctx_watch_fd(w), .events = POLLIN};
	int n = poll(&p, 1, 0);
	assert_true(n >= 0);
	return n == 1 && (p.revents & POLLIN);
}

/* Whether w's fd becomes readable: with more than two watchers armed the
 * feed's waker thread makes it so, after the report (the bound only stops
 * a broken build from hanging). */
static bool fd_becomes_readable(const ctx_watch *w)
{
	struct pollfd p = {.fd = ctx_watch_fd(w), .events = POLLIN};
	int n = poll(&p, 1, 60000);
	assert_true(n >= 0);
	return n == 1 && (p.revents & POLLIN);
}

/* Wait until w[from], w[from + step], ... below n are readable and the
 * waker has made all its wake-ups (a wake-up in flight would make a
 * watcher's fd readable again right after it caught up). */
static void readable_and_settled(feed *f, ctx_watch **w, int from, int n, int step)
{
	for (int i = from; i < n; i += step)
		assert_true(fd_becomes_readable(w[i]));
	for (;;) {
		feed_stats st;
		feed_get_stats(f, &st);
		if (!st.waker_busy)
			break;
		usleep(100);
	}
}

/* The next event must be a commit of revision rev (and id, if not NULL). */
static void expect_event(ctx_watch *w, uint64_t rev, const char *id)
{
	ctx_event *e = NULL;
	ctx_status st = ctx_watch_next(w, &e);
	if (st != CTX_OK)
		fail_msg("expected revision %" PRIu64 ", got status %s", rev, ctx_strerror(st));
	if (e->revision != rev)
		fail_msg("expected revision %" PRIu64 ", got %" PRIu64 " (kind %d)", rev,
		         e->revision, (int)e->kind);
	assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
	assert_int_equal(e->version, rev);
	if (id)
		assert_string_equal(e->id, id);
	char key[32];
	int kl = snprintf(key, sizeof(key), "k%" PRIu64, rev);
	assert_int_equal(e->nkeys, 1);
	assert_int_equal(e->klens[0], (size_t)kl);
	assert_memory_equal(e->keys[0], key, (size_t)kl);
	ctx_event_free(e);
}

static void expect_none(ctx_watch *w)
{
	ctx_event *e = NULL;
	ctx_status st = ctx_watch_next(w, &e);
	if (st != CTX_NOT_FOUND)
		fail_msg("expected no event, got revision %" PRIu64 " (kind %d)",
		         e ? e->revision : 0, e ? (int)e->kind : -1);
	assert_null(e);
	assert_false(fd_readable(w));
}

/* The next event must be LAGGED with resume_from rev. */
static void expect_lagged(ctx_watch *w, uint64_t rev)
{
	ctx_event *e = NULL;
	assert_ok(ctx_watch_next(w, &e));
	assert_int_equal(e->kind, CTX_EVENT_LAGGED);
	assert_int_equal(e->resume_from, rev);
	assert_int_equal(e->revision, rev);
	assert_int_equal(e->version, 0);
	assert_int_equal(e->nkeys, 0);
	ctx_event_free(e);
}

/* ---- the feed, single-threaded ------------------------------------------------ */

static void test_out_of_order_reports_delivered_in_order(void **unused)
{
	feed *f = open_feed(1, 16, 64);
	ctx_watch *w = watch_feed(f, "", true, 0);
	expect_none(w);
	rec(f, 3, "a");
	rec(f, 2, "b");
	expect_none(w); /* 1 is missing: nothing is deliverable */
	feed_skip(f, 5);
	expect_none(w);
	rec(f, 1, "c");
	assert_true(fd_readable(w));
	expect_event(w, 1, "c");
	expect_event(w, 2, "b");
	expect_event(w, 3, "a");
	expect_none(w);
	rec(f, 4, "d");
	expect_event(w, 4, "d");
	expect_none(w); /* 5 was a skip */
	rec(f, 6, "e");
	expect_event(w, 6, "e");
	expect_none(w);
	ctx_watch_close(w);
	feed_close(f);
}

static void test_event_fields(void **unused)
{
	feed *f = open_feed(10, 0, 0); /* defaults */
	ctx_watch *w = watch_feed(f, "ctx", false, 0);
	char k1[] = "alpha", k2[] = "b";
	const void *keys[2] = {k1, k2};
	size_t klens[2] = {5, 1};
	feed_record(f, 10, CTX_EVENT_CREATED, "ctx", 3, 1, 0, NULL, NULL);
	feed_record(f, 11, CTX_EVENT_COMMITTED, "ctx", 3, 2, 2, keys, klens);
	k1[0] = 'X'; /* copied: the event must not see this */
	feed_record(f, 12, CTX_EVENT_RESTORED, "ctx", 3, 3, 1, keys, klens);
	feed_record(f, 13, CTX_EVENT_DROPPED, "ctx", 3, 9, 2, keys, klens);
	feed_record(f, 14, CTX_EVENT_EXPIRED, "ctx", 3, 9, 2, keys, klens);

	ctx_event *e[5];
	for (int i = 0; i < 5; i++)
		assert_ok(ctx_watch_next(w, &e[i]));
	expect_none(w);
	ctx_watch_close(w);
	feed_close(f); /* events outlive their watch and feed */

	assert_int_equal(e[0]->kind, CTX_EVENT_CREATED);
	assert_int_equal(e[0]->revision, 10);
	assert_int_equal(e[0]->version, 1);
	assert_int_equal(e[0]->nkeys, 0);
	assert_string_equal(e[0]->id, "ctx");
	assert_int_equal(e[1]->kind, CTX_EVENT_COMMITTED);
	assert_int_equal(e[1]->version, 2);
	assert_int_equal(e[1]->nkeys, 2);
	assert_int_equal(e[1]->klens[0], 5);
	assert_memory_equal(e[1]->keys[0], "alpha", 5);
	assert_int_equal(e[1]->klens[1], 1);
	assert_memory_equal(e[1]->keys[1], "b", 1);
	assert_int_equal(e[2]->kind, CTX_EVENT_RESTORED);
	assert_int_equal(e[2]->nkeys, 1);
	assert_memory_equal(e[2]->keys[0], "Xlpha", 5);
	for (int i = 3; i < 5; i++) {
		assert_int_equal(e[i]->kind, i == 3 ? CTX_EVENT_DROPPED : CTX_EVENT_EXPIRED);
		assert_int_equal(e[i]->revision, 10 + (uint64_t)i);
		assert_int_equal(e[i]->version, 0);
		assert_int_equal(e[i]->nkeys, 0);
		assert_string_equal(e[i]->id, "ctx");
	}
	for (int i = 0; i < 5; i++)
		ctx_event_free(e[i]);
	ctx_event_free(NULL);
}

static void test_prefix_and_exact(void **unused)
{
	feed *f = open_feed(1, 64, 64);
	ctx_watch *exact = watch_feed(f, "a/x", false, 0);
	ctx_watch *pre = watch_feed(f, "a/", true, 0);
	ctx_watch *all = watch_feed(f, "", true, 0);
	ctx_watch *none = watch_feed(f, "zzz", true, 0);
	const char *ids[] = {"a/x", "a/y", "ab", "b", "a/x/sub", "a", "a/x"};
	for (uint64_t r = 1; r <= 7; r++)
		rec(f, r, ids[r - 1]);
	expect_event(exact, 1, "a/x");
	expect_event(exact, 7, "a/x");
	expect_none(exact);
	expect_event(pre, 1, "a/x");
	expect_event(pre, 2, "a/y");
	expect_event(pre, 5, "a/x/sub");
	expect_event(pre, 7, "a/x");
	expect_none(pre);
	for (uint64_t r = 1; r <= 7; r++)
		expect_event(all, r, ids[r - 1]);
	expect_none(all);
	expect_none(none);
	ctx_watch_close(exact);
	ctx_watch_close(pre);
	ctx_watch_close(all);
	ctx_watch_close(none);
	feed_close(f);
}

/* More watchers than fit the reporter's on-stack wake-up buffer. */
static void test_many_watchers(void **unused)
{
	enum { W = 40 };
	feed *f = open_feed(1, 16, 16);
	ctx_watch *w[W];
	for (int i = 0; i < W; i++)
		w[i] = watch_feed(f, i % 2 ? "a" : "", i % 2 == 0, 0);
	rec(f, 1, "a");
	rec(f, 2, "b");
	readable_and_settled(f, w, 0, W, 1);
	for (int i = 0; i < W; i++) {
		expect_event(w[i], 1, "a");
		if (i % 2 == 0)
			expect_event(w[i], 2, "b");
		expect_none(w[i]);
	}
	for (int i = 0; i < W; i += 2)
		ctx_watch_close(w[i]);
	rec(f, 3, "a");
	readable_and_settled(f, w, 1, W, 2);
	for (int i = 1; i < W; i += 2) {
		expect_event(w[i], 3, "a");
		expect_none(w[i]);
		ctx_watch_close(w[i]);
	}
	feed_close(f);
}

static void test_bad_arguments(void **unused)
{
	feed *f = open_feed(1, 8, 8);
	ctx_watch *w = (ctx_watch *)0x1;
	assert_int_equal(feed_watch_open(f, "", false, 0, &w), CTX_INVALID);
	assert_int_equal(feed_watch_open(f, NULL, false, 0, &w), CTX_INVALID);
	assert_int_equal(feed_watch_open(f, "bad\nid", true, 0, &w), CTX_INVALID);
	assert_int_equal(feed_watch_open(f, "x", false, 0, NULL), CTX_INVALID);
	assert_ptr_equal(w, (ctx_watch *)0x1); /* untouched on failure */
	ctx_event *e = NULL;
	assert_int_equal(ctx_watch_next(NULL, &e), CTX_INVALID);
	assert_int_equal(ctx_watch_wait(NULL, 0, &e), CTX_INVALID);
	assert_int_equal(ctx_watch_fd(NULL), -1);
	ctx_watch_close(NULL);
	w = watch_feed(f, NULL, true, 0); /* NULL prefix = all */
	rec(f, 1, "q");
	expect_event(w, 1, "q");
	ctx_watch_close(w);
	feed_close(f);
	assert_int_equal(ctx_watch_open(NULL, "x", false, 0, &w), CTX_INVALID);
}

static void test_replay_and_compacted(void **unused)
{
	feed *f = open_feed(1, 8, 64);
	for (uint64_t r = 1; r <= 20; r++)
		rec(f, r, r % 2 ? "a" : "b");
	/* History: the last 8 revisions, 13..20. */
	ctx_watch *w = watch_feed(f, "a", false, 13);
	assert_true(fd_readable(w));
	for (uint64_t r = 13; r <= 20; r += 2)
		expect_event(w, r, "a");
	expect_none(w);
	ctx_watch_close(w);

	w = (ctx_watch *)0x1;
	assert_int_equal(feed_watch_open(f, "a", false, 12, &w), CTX_NOT_FOUND);
	assert_non_null(strstr(ctx_last_error(), "compacted"));
	assert_ptr_equal(w, (ctx_watch *)0x1);
	assert_int_equal(feed_watch_open(f, "", true, 1, &w), CTX_NOT_FOUND);

	/* From the future: waits for it. From now: only new events. */
	ctx_watch *later = watch_feed(f, "", true, 25);
	ctx_watch *now = watch_feed(f, "", true, 0);
	ctx_watch *next = watch_feed(f, "", true, 21); /* frontier + 1 */
	expect_none(later);
	for (uint64_t r = 21; r <= 26; r++)
		rec(f, r, "c");
	expect_event(later, 25, "c");
	expect_event(later, 26, "c");
	expect_none(later);
	for (uint64_t r = 21; r <= 26; r++) {
		expect_event(now, r, "c");
		expect_event(next, r, "c");
	}
	expect_none(now);
	expect_none(next);

	/* A pending report never evicts a delivered one (the ring holds the
	 * log and as many pending reports; before issue 11, 29 took the slot of
	 * 21): the history still starts at 19 (frontier 26). */
	rec(f, 29, "d");
	assert_int_equal(feed_watch_open(f, "", true, 18, &w), CTX_NOT_FOUND);
	assert_non_null(strstr(ctx_last_error(), "compacted"));
	w = watch_feed(f, "", true, 19);
	for (uint64_t r = 19; r <= 20; r++)
		expect_event(w, r, r % 2 ? "a" : "b");
	for (uint64_t r = 21; r <= 26; r++)
		expect_event(w, r, "c");
	expect_none(w);
	rec(f, 27, "d");
	rec(f, 28, "d");
	for (uint64_t r = 27; r <= 29; r++) {
		expect_event(w, r, "d");
		expect_event(now, r, "d");
	}
	expect_none(w);
	ctx_watch_close(w);
	ctx_watch_close(later);
	ctx_watch_close(now);
	ctx_watch_close(next);
	feed_close(f);
}

static void test_feed_starts_after_recovered_revision(void **unused)
{
	feed *f = open_feed(101, 16, 16);
	ctx_watch *w = NULL;
	assert_int_equal(feed_watch_open(f, "", true, 50, &w), CTX_NOT_FOUND);
	assert_non_null(strstr(ctx_last_error(), "compacted"));
	w = watch_feed(f, "", true, 101);
	rec(f, 100, "old"); /* before the feed's start: ignored */
	rec(f, 101, "x");
	expect_event(w, 101, "x");
	rec(f, 101, "dup"); /* reported twice: ignored */
	expect_none(w);
	ctx_watch_close(w);
	feed_close(f);
}

static void test_lagged_then_resume(void **unused)
{
	feed *f = open_feed(1, 64, 4);
	ctx_watch *w1 = watch_feed(f, "", true, 0);
	for (uint64_t r = 1; r <= 6; r++)
		rec(f, r, "a");
	for (uint64_t r = 1; r <= 4; r++)
		expect_event(w1, r, "a");
	expect_lagged(w1, 5);
	expect_none(w1);
	rec(f, 7, "a");
	expect_none(w1); /* nothing after the lag */
	ctx_watch_close(w1);

	ctx_watch *w2 = watch_feed(f, "", true, 5);
	for (uint64_t r = 5; r <= 7; r++)
		expect_event(w2, r, "a");
	rec(f, 8, "a");
	expect_event(w2, 8, "a");
	expect_none(w2);
	ctx_watch_close(w2);

	/* A replay larger than the queue lags at once, at the right place. */
	ctx_watch *w3 = watch_feed(f, "", true, 2);
	for (uint64_t r = 2; r <= 5; r++)
		expect_event(w3, r, "a");
	expect_lagged(w3, 6);
	expect_none(w3);
	ctx_watch_close(w3);
	feed_close(f);
}

/* A subscriber with a tiny queue catches up through a chain of resumes. */
static void test_resume_chain_no_gap(void **unused)
{
	enum { N = 200 };
	feed *f = open_feed(1, 256, 3);
	ctx_watch *w = watch_feed(f, "", true, 0);
	for (uint64_t r = 1; r <= N; r++) {
		if (r % 7 == 0)
			feed_skip(f, r);
		else
			rec(f, r, r % 3 ? "p/x" : "q");
	}
	uint64_t expect = 1, resumes = 0;
	for (;;) {
		ctx_event *e = NULL;
		if (ctx_watch_next(w, &e) != CTX_OK)
			break;
		if (e->kind == CTX_EVENT_LAGGED) {
			uint64_t from = e->resume_from;
			ctx_event_free(e);
			ctx_watch_close(w);
			w = watch_feed(f, "", true, from);
			resumes++;
			continue;
		}
		while (expect % 7 == 0)
			expect++;
		assert_int_equal(e->revision, expect);
		expect++;
		ctx_event_free(e);
	}
	assert_int_equal(expect, N + 1);
	assert_true(resumes > 10);
	ctx_watch_close(w);
	feed_close(f);
}

/* Reports far ahead of the frontier (more than the ring) lose nothing: the
 * ring grows to hold them. Once revision 1 comes they are all delivered at
 * once; the shared log keeps the last `history` (4) of them, so the watcher
 * that had not read them lags at revision 1, and a watch from the oldest
 * held gets the rest. (Before issue 11 the watcher's own queue kept all 60,
 * and the history grew with the ring.) */
static void test_reports_beyond_history(void **unused)
{
	enum { N = 60 };
	feed *f = open_feed(1, 4, 1000);
	ctx_watch *w = watch_feed(f, "", true, 0);
	uint64_t order[N - 1];
	for (uint64_t i = 0; i < N - 1; i++)
		order[i] = i + 2;
	uint64_t rng = 42;
	for (size_t i = N - 2; i > 0; i--) {
		size_t j = (size_t)test_rand_below(&rng, i + 1);
		uint64_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (size_t i = 0; i < N - 1; i++)
		rec(f, order[i], "o");
	expect_none(w);
	feed_stats st;
	feed_get_stats(f, &st);
	assert_int_equal(st.pending_events, N - 1);
	assert_int_equal(st.ring_slots, 64); /* 8 at first */
	rec(f, 1, "o");
	feed_get_stats(f, &st);
	assert_int_equal(st.frontier, N);
	assert_int_equal(st.pending_events, 0);
	assert_int_equal(st.oldest, N - 3);
	expect_lagged(w, 1);
	expect_none(w);
	ctx_watch *h = NULL;
	assert_int_equal(feed_watch_open(f, "", true, N - 4, &h), CTX_NOT_FOUND);
	h = watch_feed(f, "", true, N - 3);
	for (uint64_t r = N - 3; r <= N; r++)
		expect_event(h, r, "o");
	expect_none(h);
	/* From then on, read as they come, nothing is missed. */
	for (uint64_t r = N + 1; r <= 130; r++) {
		rec(f, r, "o");
		expect_event(h, r, "o");
	}
	expect_none(h);
	ctx_watch_close(h);
	ctx_watch_close(w);

	/* Pending events are freed by feed_close. */
	rec(f, 140, "o");
	rec(f, 1000, "o");
	feed_close(f);
}

static void test_eventfd_readiness(void **unused)
{
	feed *f = open_feed(1, 16, 16);
	ctx_watch *w = watch_feed(f, "x", false, 0);
	assert_true(ctx_watch_fd(w) >= 0);
	assert_false(fd_readable(w));
	rec(f, 1, "y"); /* not for w */
	assert_false(fd_readable(w));
	rec(f, 2, "x");
	assert_true(fd_readable(w));
	assert_true(fd_readable(w)); /* level: stays readable until taken */
	rec(f, 3, "x");
	expect_event(w, 2, "x");
	assert_true(fd_readable(w)); /* 3 is still pending */
	expect_event(w, 3, "x");
	assert_false(fd_readable(w));
	expect_none(w);
	rec(f, 4, "x");
	assert_true(fd_readable(w));
	expect_event(w, 4, "x");
	assert_false(fd_readable(w));
	ctx_watch_close(w);
	feed_close(f);
}

typedef struct later_report {
	feed *f;
	int delay_ms;
	uint64_t rev;
} later_report;

static void *report_later(void *arg)
{
	later_report *lr = arg;
	usleep((useconds_t)lr->delay_ms * 1000);
	rec(lr->f, lr->rev, "t");
	return NULL;
}

static void test_wait_timeout_and_wakeup(void **unused)
{
	feed *f = open_feed(1, 16, 16);
	ctx_watch *w = watch_feed(f, "t", false, 0);
	ctx_event *e = NULL;
	assert_int_equal(ctx_watch_wait(w, 0, &e), CTX_NOT_FOUND);
	double t0 = test_now();
	assert_int_equal(ctx_watch_wait(w, 100, &e), CTX_NOT_FOUND);
	double waited = test_now() - t0;
	assert_null(e);
	assert_true(waited >= 0.09);
	/* Well past 100 ms: a loaded machine can keep a thread off the CPU
	 * for seconds (a timeout read as seconds would wait 100 s). */
	assert_true(waited < 60.0);

	later_report lr = {f, 50, 1};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, report_later, &lr), 0);
	assert_ok(ctx_watch_wait(w, 10000, &e));
	assert_int_equal(e->revision, 1);
	ctx_event_free(e);
	assert_int_equal(pthread_join(th, NULL), 0);

	lr.rev = 2;
	assert_int_equal(pthread_create(&th, NULL, report_later, &lr), 0);
	assert_ok(ctx_watch_wait(w, -1, &e)); /* forever: bounded by the reporter */
	assert_int_equal(e->revision, 2);
	ctx_event_free(e);
	assert_int_equal(pthread_join(th, NULL), 0);
	ctx_watch_close(w);
	feed_close(f);
}

static void test_close_with_pending_events(void **unused)
{
	feed *f = open_feed(1, 32, 8); /* the log holds all 20 */
	ctx_watch *w1 = watch_feed(f, "", true, 0);
	ctx_watch *w2 = watch_feed(f, "", true, 0);
	ctx_watch *w3 = watch_feed(f, "", true, 0);
	for (uint64_t r = 1; r <= 20; r++)
		rec(f, r, "z");
	ctx_event *held = NULL;
	assert_ok(ctx_watch_next(w2, &held));
	ctx_watch_close(w2); /* the middle of the list */
	ctx_watch_close(w1);
	ctx_watch_close(w3);
	feed_close(f);
	assert_int_equal(held->revision, 1);
	assert_string_equal(held->id, "z");
	ctx_event_free(held);
}

/* ---- the feed, many reporters ------------------------------------------------- */

typedef struct reporters {
	feed *f;
	int nthreads;
	uint64_t n;       /* revisions 1..n */
	atomic_bool done; /* every report made */
} reporters;

typedef struct reporter_arg {
	pthread_t th;
	reporters *sh;
	int id;
} reporter_arg;

static bool is_skip(uint64_t r)
{
	return r % 11 == 0;
}

static const char *id_of(uint64_t r)
{
	return r % 3 == 0 ? "even/odd" : "r";
}

/* Thread t reports the revisions r with r % T == t, in small shuffled
 * batches, yielding now and then so that the others run ahead. */
static void *reporter(void *arg)
{
	reporter_arg *a = arg;
	reporters *sh = a->sh;
	uint64_t rng = 0x9e37ull * (uint64_t)(a->id + 1);
	uint64_t batch[8];
	size_t nb = 0;
	for (uint64_t r = (uint64_t)a->id + 1; r <= sh->n; r += (uint64_t)sh->nthreads) {
		batch[nb++] = r;
		if (nb < 8 && r + (uint64_t)sh->nthreads <= sh->n)
			continue;
		for (size_t i = nb - 1; i > 0; i--) {
			size_t j = (size_t)test_rand_below(&rng, i + 1);
			uint64_t t = batch[i];
			batch[i] = batch[j];
			batch[j] = t;
		}
		for (size_t i = 0; i < nb; i++) {
			if (is_skip(batch[i]))
				feed_skip(sh->f, batch[i]);
			else
				rec(sh->f, batch[i], id_of(batch[i]));
		}
		nb = 0;
		if (test_rand_below(&rng, 16) == 0)
			sched_yield();
	}
	return NULL;
}

/* Opens watches from now, reads a little, closes them: wake-ups racing with
 * close must be safe, and every watch still sees increasing revisions. */
static void *churner(void *arg)
{
	reporters *sh = arg;
	while (!atomic_load(&sh->done)) {
		ctx_watch *w = NULL;
		T_CHECK_STATUS(feed_watch_open(sh->f, "", true, 0, &w), CTX_OK);
		if (!w)
			break;
		uint64_t last = 0;
		for (int i = 0; i < 20; i++) {
			ctx_event *e = NULL;
			if (ctx_watch_wait(w, 5, &e) != CTX_OK)
				break;
			if (e->kind == CTX_EVENT_LAGGED) {
				ctx_event_free(e);
				break;
			}
			T_CHECK(e->revision > last);
			last = e->revision;
			ctx_event_free(e);
		}
		ctx_watch_close(w);
	}
	return NULL;
}

static void test_many_reporters(void **unused)
{
	enum { T = 8 };
	reset_failures();
	reporters sh = {.nthreads = T, .n = (uint64_t)test_iters(200000, 20000)};
	/* A log that holds every revision: the reader never lags. (Before
	 * issue 11 the history was 64, the queue n + 1; the log is now what a
	 * watcher reads from: test_many_reporters_small_log has the small one.) */
	sh.f = open_feed(1, (size_t)sh.n, (size_t)sh.n + 1);
	ctx_watch *all = watch_feed(sh.f, "", true, 0);
	ctx_watch *one = watch_feed(sh.f, "even/odd", false, 0);
	reporter_arg a[T];
	pthread_t churn;
	assert_int_equal(pthread_create(&churn, NULL, churner, &sh), 0);
	for (int i = 0; i < T; i++) {
		a[i].sh = &sh;
		a[i].id = i;
		assert_int_equal(pthread_create(&a[i].th, NULL, reporter, &a[i]), 0);
	}
	uint64_t expect = 1, expect_one = 3;
	double deadline = test_now() + 60;
	while (expect <= sh.n && test_now() < deadline) {
		while (expect <= sh.n && is_skip(expect))
			expect++;
		if (expect > sh.n)
			break;
		ctx_event *e = NULL;
		if (ctx_watch_wait(all, 100, &e) != CTX_OK)
			continue;
		if (e->revision != expect)
			fail_msg("expected revision %" PRIu64 ", got %" PRIu64, expect,
			         e->revision);
		assert_string_equal(e->id, id_of(expect));
		ctx_event_free(e);
		expect++;
		/* Drain the exact watcher as we go, so that its queue stays short. */
		while (ctx_watch_next(one, &e) == CTX_OK) {
			while (is_skip(expect_one))
				expect_one += 3;
			assert_int_equal(e->revision, expect_one);
			assert_string_equal(e->id, "even/odd");
			expect_one += 3;
			ctx_event_free(e);
		}
	}
	for (int i = 0; i < T; i++)
		assert_int_equal(pthread_join(a[i].th, NULL), 0);
	atomic_store(&sh.done, true);
	assert_int_equal(pthread_join(churn, NULL), 0);
	assert_no_thread_failures();
	assert_int_equal(expect, sh.n + 1);
	expect_none(all);
	ctx_event *e = NULL;
	while (ctx_watch_next(one, &e) == CTX_OK) {
		while (is_skip(expect_one))
			expect_one += 3;
		assert_int_equal(e->revision, expect_one);
		expect_one += 3;
		ctx_event_free(e);
	}
	while (expect_one <= sh.n && is_skip(expect_one))
		expect_one += 3;
	assert_true(expect_one > sh.n);
	ctx_watch_close(all);
	ctx_watch_close(one);
	feed_close(sh.f);
}

/* Skip the revisions without an event from *expect on. */
static void skip_skips(uint64_t *expect)
{
	while (is_skip(*expect))
		(*expect)++;
}

/* Reopen a lagged watch at `from`, or at the oldest revision held if the
 * log moved past it meanwhile. Returns the revision it starts from. */
static uint64_t reopen(feed *f, ctx_watch **w, uint64_t from)
{
	ctx_watch_close(*w);
	for (;;) {
		if (feed_watch_open(f, "", true, from, w) == CTX_OK)
			return from;
		feed_stats st;
		feed_get_stats(f, &st);
		if (st.oldest > from)
			from = st.oldest;
	}
}

/* The same with a log of 64 revisions: reports run past the ring (which
 * grows) and the reader falls behind and lags. It must lag exactly where it
 * stood - at or before the next revision it expected, after the last it got
 * - and, reopened there (or at the oldest held), see increasing revisions
 * with the right ids, each following the one before with no gap it was not
 * told of and no duplicate. */
static void test_many_reporters_small_log(void **unused)
{
	enum { T = 8 };
	reset_failures();
	reporters sh = {.nthreads = T, .n = (uint64_t)test_iters(100000, 10000)};
	sh.f = open_feed(1, 64, 64);
	ctx_watch *all = watch_feed(sh.f, "", true, 0);
	reporter_arg a[T];
	for (int i = 0; i < T; i++) {
		a[i].sh = &sh;
		a[i].id = i;
		assert_int_equal(pthread_create(&a[i].th, NULL, reporter, &a[i]), 0);
	}
	uint64_t expect = 1, last = 0, lags = 0;
	bool resumed = false; /* the next event may be past expect */
	double deadline = test_now() + 60;
	for (;;) {
		skip_skips(&expect);
		if (expect > sh.n || test_now() > deadline)
			break;
		ctx_event *e = NULL;
		if (ctx_watch_wait(all, 100, &e) != CTX_OK)
			continue;
		if (e->kind == CTX_EVENT_LAGGED) {
			if (e->resume_from > expect || e->resume_from <= last)
				fail_msg("lagged at %" PRIu64 ": expected %" PRIu64
				         ", last %" PRIu64,
				         e->resume_from, expect, last);
			uint64_t from = e->resume_from;
			ctx_event_free(e);
			from = reopen(sh.f, &all, from);
			resumed = from > expect;
			if (from > expect)
				expect = from;
			lags++;
			continue;
		}
		if (e->revision != expect && !(resumed && e->revision > expect))
			fail_msg("expected revision %" PRIu64 ", got %" PRIu64, expect,
			         e->revision);
		assert_false(is_skip(e->revision));
		assert_string_equal(e->id, id_of(e->revision));
		last = e->revision;
		expect = e->revision + 1;
		resumed = false;
		ctx_event_free(e);
	}
	for (int i = 0; i < T; i++)
		assert_int_equal(pthread_join(a[i].th, NULL), 0);
	assert_true(expect > sh.n);
	feed_stats st;
	feed_get_stats(sh.f, &st);
	printf("# %" PRIu64 " revisions, a log of 64: the reader lagged %" PRIu64
	       " times, the ring grew to %zu slots\n",
	       sh.n, lags, st.ring_slots);
	ctx_watch_close(all);
	feed_close(sh.f);
}

/* ---- through a store ------------------------------------------------------------ */

static ctx_store *open_store_keep(size_t queue, size_t history, bool keep)
{
	ctx_options o;
	ctx_options_init(&o);
	o.watch_queue = queue;
	o.watch_history = history;
	o.watch_keep_history = keep;
	return test_open(&o);
}

static ctx_store *open_store(size_t queue, size_t history)
{
	return open_store_keep(queue, history, false);
}

static uint64_t revision_of(ctx_store *s, const char *id)
{
	ctx_state *st = NULL;
	if (ctx_get(s, id, &st) != CTX_OK)
		return 0;
	uint64_t r = ctx_state_revision(st);
	ctx_state_release(st);
	return r;
}

/* With watch_keep_history, a watch replays what was committed before it. */
static void test_store_watch_open_errors(void **unused)
{
	ctx_store *s = open_store_keep(0, 0, true);
	ctx_watch *w = NULL;
	assert_int_equal(ctx_watch_open(s, "", false, 0, &w), CTX_INVALID);
	assert_int_equal(ctx_watch_open(s, "a\x01", false, 0, &w), CTX_INVALID);
	assert_int_equal(ctx_watch_open(s, "a", false, 0, NULL), CTX_INVALID);
	assert_ok(ctx_create(s, "a"));
	assert_ok(ctx_put(s, "a", "k", 1, "v", 1, NULL));
	assert_ok(ctx_watch_open(s, "a", false, 1, &w));
	ctx_event *e = NULL;
	assert_ok(ctx_watch_next(w, &e));
	assert_int_equal(e->kind, CTX_EVENT_CREATED);
	assert_int_equal(e->revision, 1);
	assert_int_equal(e->version, 1);
	assert_string_equal(e->id, "a");
	ctx_event_free(e);
	assert_ok(ctx_watch_next(w, &e));
	assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
	assert_int_equal(e->revision, 2);
	assert_int_equal(e->version, 2);
	assert_int_equal(e->nkeys, 1);
	assert_memory_equal(e->keys[0], "k", 1);
	ctx_event_free(e);
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND);
	assert_ok(ctx_drop(s, "a"));
	assert_ok(ctx_watch_wait(w, 5000, &e));
	assert_int_equal(e->kind, CTX_EVENT_DROPPED);
	assert_int_equal(e->revision, 3);
	assert_int_equal(e->version, 0);
	ctx_event_free(e);
	ctx_watch_close(w);
	ctx_close(s);
}

/* What a writer saw: one entry per create and commit it made. */
typedef struct wrec {
	uint64_t rev;
	uint64_t version;
	ctx_event_kind kind;
	int thread, ctx; /* ctx < 0: the context outside the prefix */
} wrec;

typedef struct store_writers {
	ctx_store *s;
	int contexts; /* per thread, under the prefix */
	int puts;     /* per context */
} store_writers;

typedef struct writer_arg {
	pthread_t th;
	store_writers *sh;
	int id;
	wrec *recs;
	size_t nrecs;
	int drops;
} writer_arg;

static void note(writer_arg *a, uint64_t rev, uint64_t version, ctx_event_kind kind, int ctx)
{
	T_CHECK(rev != 0);
	a->recs[a->nrecs++] = (wrec){rev, version, kind, a->id, ctx};
}

/* Thread t: contexts w/t/k (created, put to, every other one dropped) and
 * one context outside the prefix, x/t, put to in between. */
static void *store_writer(void *arg)
{
	writer_arg *a = arg;
	store_writers *sh = a->sh;
	char out[32], id[32];
	snprintf(out, sizeof(out), "x/%d", a->id);
	T_CHECK_STATUS(ctx_create(sh->s, out), CTX_OK);
	note(a, revision_of(sh->s, out), 1, CTX_EVENT_CREATED, -1);
	for (int k = 0; k < sh->contexts; k++) {
		snprintf(id, sizeof(id), "w/%d/%d", a->id, k);
		T_CHECK_STATUS(ctx_create(sh->s, id), CTX_OK);
		note(a, revision_of(sh->s, id), 1, CTX_EVENT_CREATED, k);
		for (int p = 0; p < sh->puts; p++) {
			char key[16];
			int kl = snprintf(key, sizeof(key), "k%d", p);
			uint64_t v = 0;
			T_CHECK_STATUS(ctx_put(sh->s, id, key, (size_t)kl, "v", 1, &v), CTX_OK);
			note(a, revision_of(sh->s, id), v, CTX_EVENT_COMMITTED, k);
			if (p % 4 == 0) {
				T_CHECK_STATUS(ctx_put(sh->s, out, key, (size_t)kl, "v", 1, &v),
				               CTX_OK);
				note(a, revision_of(sh->s, out), v, CTX_EVENT_COMMITTED, -1);
			}
		}
		if (k % 2) {
			T_CHECK_STATUS(ctx_drop(sh->s, id), CTX_OK);
			a->drops++;
		}
	}
	return NULL;
}

static void test_store_writers_seen_once_in_order(void **unused)
{
	enum { T = 16 };
	reset_failures();
	ctx_store *s = open_store(1u << 20, 1u << 16);
	store_writers sh = {s, 6, (int)test_iters(40, 8)};
	ctx_watch *w = NULL;
	assert_ok(ctx_watch_open(s, "w/", true, 0, &w));

	size_t per_thread = (size_t)sh.contexts * (size_t)(sh.puts + 1) * 2 + 1;
	writer_arg a[T];
	for (int i = 0; i < T; i++) {
		a[i] = (writer_arg){.sh = &sh, .id = i, .recs = calloc(per_thread, sizeof(wrec))};
		assert_non_null(a[i].recs);
		assert_int_equal(pthread_create(&a[i].th, NULL, store_writer, &a[i]), 0);
	}
	/* Consume while they write. */
	size_t expected = (size_t)T * (size_t)sh.contexts * (size_t)(sh.puts + 1) +
	                  (size_t)T * (size_t)(sh.contexts / 2);
	ctx_event **seen = calloc(expected + 1, sizeof(*seen));
	assert_non_null(seen);
	size_t n = 0;
	double deadline = test_now() + 60;
	while (n < expected && test_now() < deadline) {
		ctx_event *e = NULL;
		if (ctx_watch_wait(w, 100, &e) != CTX_OK)
			continue;
		if (e->kind == CTX_EVENT_LAGGED)
			fail_msg("lagged at %" PRIu64, e->resume_from);
		if (n && e->revision <= seen[n - 1]->revision)
			fail_msg("revision %" PRIu64 " after %" PRIu64, e->revision,
			         seen[n - 1]->revision);
		seen[n++] = e;
	}
	for (int i = 0; i < T; i++)
		assert_int_equal(pthread_join(a[i].th, NULL), 0);
	assert_no_thread_failures();
	assert_int_equal(n, expected);
	expect_none(w);

	/* Every revision of the store is either seen once or outside the prefix. */
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	uint64_t last = stats.revision;
	wrec **by_rev = calloc(last + 1, sizeof(*by_rev));
	assert_non_null(by_rev);
	size_t outside = 0;
	for (int i = 0; i < T; i++) {
		for (size_t j = 0; j < a[i].nrecs; j++) {
			wrec *r = &a[i].recs[j];
			assert_true(r->rev >= 1 && r->rev <= last);
			assert_null(by_rev[r->rev]); /* each revision went to one change */
			by_rev[r->rev] = r;
			outside += r->ctx < 0;
		}
	}
	assert_int_equal(n + outside, last);
	int drops[T][8] = {{0}};
	for (size_t i = 0; i < n; i++) {
		ctx_event *e = seen[i];
		int t = -1, k = -1;
		assert_int_equal(sscanf(e->id, "w/%d/%d", &t, &k), 2);
		assert_true(t >= 0 && t < T && k >= 0 && k < sh.contexts);
		wrec *r = by_rev[e->revision];
		if (e->kind == CTX_EVENT_DROPPED) {
			assert_null(r);
			assert_int_equal(k % 2, 1);
			assert_int_equal(e->version, 0);
			drops[t][k]++;
			continue;
		}
		assert_non_null(r);
		assert_int_equal(r->ctx, k);
		assert_int_equal(r->thread, t);
		assert_int_equal(e->kind, r->kind);
		assert_int_equal(e->version, r->version);
	}
	for (int t = 0; t < T; t++) {
		assert_int_equal(a[t].drops, sh.contexts / 2);
		for (int k = 0; k < sh.contexts; k++)
			assert_int_equal(drops[t][k], k % 2);
	}

	for (size_t i = 0; i < n; i++)
		ctx_event_free(seen[i]);
	free(seen);
	free(by_rev);
	for (int i = 0; i < T; i++)
		free(a[i].recs);
	ctx_watch_close(w);
	ctx_close(s);
}

typedef struct slow_shared {
	ctx_store *s;
	int puts;
} slow_shared;

typedef struct slow_arg {
	pthread_t th;
	slow_shared *sh;
	int id;
	bool create; /* create s/<id> first */
	int puts;    /* then put this many times */
} slow_arg;

static void *slow_writer(void *arg)
{
	slow_arg *a = arg;
	char id[32];
	snprintf(id, sizeof(id), "s/%d", a->id);
	if (a->create)
		T_CHECK_STATUS(ctx_create(a->sh->s, id), CTX_OK);
	for (int p = 0; p < a->puts; p++)
		T_CHECK_STATUS(ctx_put(a->sh->s, id, "k", 1, &p, sizeof(p), NULL), CTX_OK);
	return NULL;
}

static void start_slow_writers(slow_arg *a, int n, slow_shared *sh, bool create, int puts)
{
	for (int i = 0; i < n; i++) {
		a[i] = (slow_arg){.sh = sh, .id = i, .create = create, .puts = puts};
		assert_int_equal(pthread_create(&a[i].th, NULL, slow_writer, &a[i]), 0);
	}
}

static void join_slow_writers(slow_arg *a, int n)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_join(a[i].th, NULL), 0);
}

/* A watcher too slow for its queue lags, then resumes from the history while
 * writers go on, and sees every revision exactly once. The first half of the
 * writes happens before it reads anything, so that the lag is certain; it
 * then reads slowly until told it lagged, and catches up by reopening from
 * the revision named (as often as it lags again) while the second half is
 * written: replay from the history races with live delivery. */
static void test_store_slow_watcher_resumes(void **unused)
{
	enum { T = 4, QUEUE = 16 };
	reset_failures();
	ctx_store *s = open_store(QUEUE, 1u << 16);
	slow_shared sh = {.s = s, .puts = (int)test_iters(1000, 200)};
	int first = sh.puts / 2;
	long total = (long)T * (sh.puts + 1);
	ctx_watch *w = NULL;
	assert_ok(ctx_watch_open(s, "s/", true, 0, &w));
	slow_arg a[T];
	start_slow_writers(a, T, &sh, true, first);
	join_slow_writers(a, T);
	assert_true(fd_readable(w));
	start_slow_writers(a, T, &sh, false, sh.puts - first);

	uint64_t expect = 1;
	int lags = 0;
	double deadline = test_now() + 60;
	while ((long)expect <= total && test_now() < deadline) {
		ctx_event *e = NULL;
		if (ctx_watch_wait(w, 100, &e) != CTX_OK)
			continue;
		if (e->kind == CTX_EVENT_LAGGED) {
			if (lags == 0)
				assert_int_equal(e->resume_from, QUEUE + 1);
			assert_int_equal(e->resume_from, expect);
			ctx_event_free(e);
			/* Open the new watch first: while the lagged one is open the
			 * feed keeps recording, so `expect` is still held. */
			ctx_watch *lagged = w;
			assert_ok(ctx_watch_open(s, "s/", true, expect, &w));
			ctx_watch_close(lagged);
			lags++;
			continue;
		}
		assert_int_equal(e->revision, expect);
		ctx_event_free(e);
		expect++;
		if (lags == 0)
			usleep(500); /* slow until it has lagged once */
	}
	join_slow_writers(a, T);
	assert_no_thread_failures();
	assert_true(lags >= 1);
	assert_int_equal(expect, (uint64_t)total + 1);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.revision, (uint64_t)total);
	expect_none(w);
	ctx_watch_close(w);
	ctx_close(s);
}

/* With a data directory (durability always): events come once durable, in
 * order; after reopening, the feed starts after the recovered revision. */
static void test_store_durable_and_reopened(void **unused)
{
	enum { T = 4 };
	reset_failures();
	char *dir = test_make_dir("watch-durable");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	slow_shared sh = {.s = s, .puts = (int)test_iters(100, 20)};
	long total = (long)T * (sh.puts + 1);
	ctx_watch *w = NULL;
	assert_ok(ctx_watch_open(s, "s/", true, 0, &w));
	slow_arg a[T];
	start_slow_writers(a, T, &sh, true, sh.puts);
	uint64_t expect = 1;
	double deadline = test_now() + 60;
	while ((long)expect <= total && test_now() < deadline) {
		ctx_event *e = NULL;
		if (ctx_watch_wait(w, 100, &e) != CTX_OK)
			continue;
		assert_int_equal(e->revision, expect);
		ctx_event_free(e);
		expect++;
	}
	join_slow_writers(a, T);
	assert_no_thread_failures();
	assert_int_equal(expect, (uint64_t)total + 1);
	ctx_watch_close(w);
	ctx_close(s);

	assert_ok(ctx_open(&o, &s));
	assert_int_equal(ctx_watch_open(s, "s/", true, 1, &w), CTX_NOT_FOUND);
	assert_non_null(strstr(ctx_last_error(), "compacted"));
	assert_ok(ctx_watch_open(s, "s/", true, (uint64_t)total + 1, &w));
	assert_ok(ctx_put(s, "s/0", "k", 1, "v", 1, NULL));
	ctx_event *e = NULL;
	assert_ok(ctx_watch_wait(w, 10000, &e));
	assert_int_equal(e->revision, (uint64_t)total + 1);
	assert_int_equal(e->version, (uint64_t)sh.puts + 2);
	assert_string_equal(e->id, "s/0");
	ctx_event_free(e);
	ctx_watch_close(w);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Each test prints how long it took (testutil.h). */
#define TIMED(f) TEST_TIMED(f)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TIMED(test_out_of_order_reports_delivered_in_order),
	    TIMED(test_event_fields),
	    TIMED(test_prefix_and_exact),
	    TIMED(test_many_watchers),
	    TIMED(test_bad_arguments),
	    TIMED(test_replay_and_compacted),
	    TIMED(test_feed_starts_after_recovered_revision),
	    TIMED(test_lagged_then_resume),
	    TIMED(test_resume_chain_no_gap),
	    TIMED(test_reports_beyond_history),
	    TIMED(test_eventfd_readiness),
	    TIMED(test_wait_timeout_and_wakeup),
	    TIMED(test_close_with_pending_events),
	    TIMED(test_many_reporters),
	    TIMED(test_many_reporters_small_log),
	    TIMED(test_store_watch_open_errors),
	    TIMED(test_store_writers_seen_once_in_order),
	    TIMED(test_store_slow_watcher_resumes),
	    TIMED(test_store_durable_and_reopened),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
