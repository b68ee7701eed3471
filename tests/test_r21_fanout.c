/*
 * test_r21_fanout.c - watch fan-out with the event log at its bounds, where
 * every report evicts the oldest event (log_trim). Round 21 tried prefetching
 * there the record the next report evicts and did not keep it (within noise:
 * docs/benchmarks.md, "Round 21: ... (r21-fanout)"); this file keeps the
 * delivery and wake-up checks, which hold for any build.
 *
 *   - lock-step: a commit, then every watcher - each blocked in
 *     ctx_watch_wait, more of them than a report wakes itself, so the
 *     waker wakes them - must deliver it before the next commit. A
 *     wake-up missed leaves a watcher asleep (its wait times out after
 *     60 s: a failure, not a hang). With the log bounded to 8 revisions, or
 *     to a few records' bytes, each commit evicts one event; prefix and
 *     single-context watchers get exactly their revisions, in order.
 *   - streaming: 2 writers committing freely, the log bounded to 64
 *     revisions; watchers may legally lag, but each delivers contiguous
 *     revisions until a CTX_EVENT_LAGGED that names the revision after its
 *     last one (nothing lost silently, nothing reordered), then reopens
 *     from now and goes on.
 *
 * Nothing here is timed: the only bound is the 60 s wait that turns a
 * missed wake-up into a failure.
 */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { STEP_WATCHERS = 12, STEP_IDS = 3, STREAM_WATCHERS = 16, STREAM_WRITERS = 2 };

/* ---- lock-step ------------------------------------------------------------------- */

typedef struct step {
	ctx_store *s;
	atomic_bool quit; /* a watcher failed: stop waiting for it */
} step;

typedef struct step_watcher {
	step *st;
	ctx_watch *w;
	int only; /* -1: the prefix "s/"; else the context s/<only> */
	long want;
	atomic_long got;
	uint64_t last;
	bool in_order;
} step_watcher;

static void *step_drain(void *p)
{
	step_watcher *a = p;
	a->in_order = true;
	while (atomic_load(&a->got) < a->want) {
		ctx_event *e = NULL;
		ctx_status st = ctx_watch_wait(a->w, 60000, &e);
		if (st != CTX_OK) {
			T_CHECK_STATUS(st, CTX_OK); /* a missed wake-up times out here */
			atomic_store(&a->st->quit, true);
			break;
		}
		char want_id[16];
		snprintf(want_id, sizeof(want_id), "s/%d", a->only);
		if (e->kind != CTX_EVENT_COMMITTED || e->revision <= a->last ||
		    (a->only < 0 && a->last && e->revision != a->last + 1) ||
		    (a->only >= 0 && strcmp(e->id, want_id) != 0))
			a->in_order = false;
		a->last = e->revision;
		ctx_event_free(e);
		atomic_fetch_add(&a->got, 1);
	}
	return NULL;
}

/* Commit n times round-robin over STEP_IDS contexts; after each commit wait
 * until every watcher it concerns has delivered it. */
static void run_lock_step(size_t history, size_t history_bytes)
{
	reset_failures();
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1;
	o.watch_history = history;
	o.watch_history_bytes = history_bytes;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	for (int i = 0; i < STEP_IDS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "s/%d", i);
		assert_ok(ctx_create(s, id));
	}
	step st = {.s = s};
	long n = 400 / test_slowdown(); /* the waker paces itself to 2 ms a pass */
	step_watcher a[STEP_WATCHERS];
	pthread_t t[STEP_WATCHERS];
	for (int i = 0; i < STEP_WATCHERS; i++) {
		int only = i % 4 == 3 ? i / 4 % STEP_IDS : -1;
		char id[16];
		snprintf(id, sizeof(id), only < 0 ? "s/" : "s/%d", only);
		a[i] = (step_watcher){.st = &st, .only = only};
		a[i].want = only < 0 ? n : n / STEP_IDS + (only < n % STEP_IDS);
		assert_ok(ctx_watch_open(s, id, only < 0, 0, &a[i].w));
		assert_int_equal(pthread_create(&t[i], NULL, step_drain, &a[i]), 0);
	}
	long sent[STEP_IDS] = {0};
	for (long c = 0; c < n && !atomic_load(&st.quit); c++) {
		int k = (int)(c % STEP_IDS);
		char id[16];
		snprintf(id, sizeof(id), "s/%d", k);
		assert_ok(ctx_put(s, id, "k", 1, &c, sizeof(c), NULL));
		sent[k]++;
		for (int i = 0; i < STEP_WATCHERS; i++) {
			long want = a[i].only < 0 ? c + 1 : sent[a[i].only];
			while (atomic_load(&a[i].got) < want && !atomic_load(&st.quit))
				sched_yield();
		}
	}
	for (int i = 0; i < STEP_WATCHERS; i++)
		pthread_join(t[i], NULL); /* all of them before any assert */
	for (int i = 0; i < STEP_WATCHERS; i++) {
		assert_int_equal(atomic_load(&a[i].got), a[i].want);
		assert_true(a[i].in_order);
		ctx_event *e = NULL;
		assert_int_equal(ctx_watch_next(a[i].w, &e), CTX_NOT_FOUND);
		ctx_watch_close(a[i].w);
	}
	assert_no_thread_failures();
	ctx_close(s);
}

static void test_lock_step_log_bounded_by_revisions(void **unused)
{
	(void)unused;
	run_lock_step(8, 0);
}

static void test_lock_step_log_bounded_by_bytes(void **unused)
{
	(void)unused;
	/* A few small records (128 bytes each): the byte bound evicts. */
	run_lock_step(1 << 16, 4 * 128);
}

/* ---- streaming --------------------------------------------------------------------- */

typedef struct stream {
	ctx_store *s;
	long commits; /* per writer */
	atomic_int writers_done;
} stream;

typedef struct stream_watcher {
	stream *sm;
	long events, lags;
	bool ok;
} stream_watcher;

static void *stream_write(void *p)
{
	stream *sm = p;
	static atomic_int next_id;
	char id[16];
	snprintf(id, sizeof(id), "f/%d", atomic_fetch_add(&next_id, 1) % STREAM_WRITERS);
	for (long i = 0; i < sm->commits; i++) {
		T_CHECK_STATUS(ctx_put(sm->s, id, "k", 1, &i, sizeof(i), NULL), CTX_OK);
		if (i % 50 == 49)
			usleep(100);
	}
	atomic_fetch_add(&sm->writers_done, 1);
	return NULL;
}

static void *stream_drain(void *p)
{
	stream_watcher *a = p;
	ctx_watch *w;
	a->ok = true;
	T_CHECK_STATUS(ctx_watch_open(a->sm->s, "f/", true, 0, &w), CTX_OK);
	uint64_t last = 0;
	for (;;) {
		bool done = atomic_load(&a->sm->writers_done) == STREAM_WRITERS;
		ctx_event *e = NULL;
		ctx_status st = ctx_watch_next(w, &e);
		if (st == CTX_NOT_FOUND) {
			if (done)
				break; /* everything committed was looked at */
			(void)ctx_watch_wait(w, 10, &e);
			if (!e)
				continue;
		} else if (st != CTX_OK) {
			T_CHECK_STATUS(st, CTX_OK);
			break;
		}
		if (e->kind == CTX_EVENT_LAGGED) {
			/* It names the first revision it will not deliver: the one
			 * after the last it did (or any, before the first). */
			if (last && e->resume_from != last + 1)
				a->ok = false;
			a->lags++;
			ctx_event_free(e);
			ctx_watch_close(w);
			T_CHECK_STATUS(ctx_watch_open(a->sm->s, "f/", true, 0, &w), CTX_OK);
			last = 0;
			continue;
		}
		if (e->kind != CTX_EVENT_COMMITTED || (last && e->revision != last + 1))
			a->ok = false;
		last = e->revision;
		a->events++;
		ctx_event_free(e);
	}
	ctx_watch_close(w);
	return NULL;
}

static void test_streaming_at_the_bound_loses_nothing_silently(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1;
	o.watch_history = 64;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	for (int i = 0; i < STREAM_WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "f/%d", i);
		assert_ok(ctx_create(s, id));
	}
	stream sm = {.s = s, .commits = 10000 / test_slowdown()};
	stream_watcher a[STREAM_WATCHERS];
	pthread_t dt[STREAM_WATCHERS], wt[STREAM_WRITERS];
	for (int i = 0; i < STREAM_WATCHERS; i++) {
		a[i] = (stream_watcher){.sm = &sm};
		assert_int_equal(pthread_create(&dt[i], NULL, stream_drain, &a[i]), 0);
	}
	for (int i = 0; i < STREAM_WRITERS; i++)
		assert_int_equal(pthread_create(&wt[i], NULL, stream_write, &sm), 0);
	for (int i = 0; i < STREAM_WRITERS; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < STREAM_WATCHERS; i++)
		pthread_join(dt[i], NULL); /* all of them before any assert */
	for (int i = 0; i < STREAM_WATCHERS; i++)
		assert_true(a[i].ok);
	assert_no_thread_failures();
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lock_step_log_bounded_by_revisions),
	    cmocka_unit_test(test_lock_step_log_bounded_by_bytes),
	    cmocka_unit_test(test_streaming_at_the_bound_loses_nothing_silently),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
