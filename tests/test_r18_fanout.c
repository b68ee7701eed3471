/*
 * test_r18_fanout.c - combined reports: a writer that finds the feed lock
 * held leaves its event for the holder (see COMBINED in src/lib/watch.c).
 *
 *   - reports made while the feed lock is held (feed_test_hold, by the
 *     reporting thread itself: without combining it would wait for itself)
 *     are placed by the release, out of order and with a duplicate among
 *     them: every watcher gets each event once, in revision order, and an
 *     armed watcher's fd is readable once the release returns;
 *   - a hundred reports left at once are placed within the log's bounds: a
 *     watcher that never read lags at its first revision, naming it; a watch
 *     from the log's oldest revision gets the rest, whole;
 *   - with many writers on several contexts and readers taking the feed
 *     lock all the time (so that reports are left for them): each writer
 *     waits for its own commit's event before its next commit (an event
 *     left with nobody to place it would hang the test); every prefix reader
 *     gets every event once, in revision order, whole; half of them close
 *     their watch part-way while the others read.
 * No assertion on timing or on how many reports were left in the threaded
 * test (a quiet machine may leave few); its log and queue hold the whole
 * run, so no watcher may lag.
 */
#include "testutil.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "store.h"
#include "watch.h"

static void record(feed *f, uint64_t rev, const char *id, const char *key)
{
	const void *keys[] = {key};
	size_t klens[] = {strlen(key)};
	feed_record(f, rev, CTX_EVENT_COMMITTED, id, strlen(id), rev, 1, keys, klens);
}

static bool readable(ctx_watch *w)
{
	struct pollfd p = {.fd = ctx_watch_fd(w), .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

/* Take the next event of w, which must be rev of context id. */
static void expect_event(ctx_watch *w, uint64_t rev, const char *id)
{
	ctx_event *e = NULL;
	assert_ok(ctx_watch_next(w, &e));
	assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
	assert_int_equal(e->revision, rev);
	assert_string_equal(e->id, id);
	char key[32];
	snprintf(key, sizeof(key), "k%" PRIu64, rev);
	assert_int_equal(e->nkeys, 1);
	assert_int_equal(e->klens[0], strlen(key));
	assert_memory_equal(e->keys[0], key, strlen(key));
	ctx_event_free(e);
}

static void expect_none(ctx_watch *w)
{
	ctx_event *e = NULL;
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND);
	assert_null(e);
}

static void test_reports_left_while_the_lock_is_held(void **unused)
{
	(void)unused;
	feed *f;
	assert_ok(feed_open(1, &(feed_config){.history = 256, .queue = 1024}, &f));
	ctx_watch *a, *all;
	assert_ok(feed_watch_open(f, "a", false, 0, &a));
	assert_ok(feed_watch_open(f, "", true, 0, &all));
	assert_false(readable(a)); /* both armed: nothing pending */
	assert_false(readable(all));

	feed_test_hold(f, true);
	record(f, 3, "a", "k3");
	record(f, 1, "a", "k1");
	record(f, 2, "b", "k2");
	record(f, 2, "b", "k2"); /* twice: a caller's bug, dropped */
	feed_test_hold(f, false);

	feed_stats st;
	feed_get_stats(f, &st);
	assert_int_equal(st.combined_left, 4);
	assert_int_equal(st.frontier, 3);
	assert_int_equal(st.events_recorded, 3);
	assert_int_equal(st.history_events, 3);
	assert_int_equal(st.pending_events, 0);
	/* Two armed watchers are woken inline, by the release's after-lock
	 * work: their fds are readable when it returns. */
	assert_true(readable(a));
	assert_true(readable(all));
	expect_event(all, 1, "a");
	expect_event(all, 2, "b");
	expect_event(all, 3, "a");
	expect_none(all);
	expect_event(a, 1, "a");
	expect_event(a, 3, "a");
	expect_none(a);
	assert_false(readable(a));

	/* A report while nobody holds the lock is placed by its reporter. */
	record(f, 4, "a", "k4");
	feed_get_stats(f, &st);
	assert_int_equal(st.combined_left, 4);
	assert_int_equal(st.frontier, 4);
	assert_true(readable(a));
	expect_event(a, 4, "a");
	expect_event(all, 4, "a");

	ctx_watch_close(a);
	ctx_watch_close(all);
	feed_close(f);
}

static void test_left_reports_within_the_log_bounds(void **unused)
{
	(void)unused;
	feed_record_info ri;
	feed_record_stats(&ri);
	size_t limit = 16 * ri.small_bytes;
	feed *f;
	assert_ok(feed_open(1, &(feed_config){.history = 1024, .history_bytes = limit, .queue = 4096},
	                    &f));
	ctx_watch *idle;
	assert_ok(feed_watch_open(f, "", true, 0, &idle));
	enum { N = 100 };
	feed_test_hold(f, true);
	for (uint64_t rev = N; rev >= 1; rev--) {
		char key[32];
		snprintf(key, sizeof(key), "k%" PRIu64, rev);
		record(f, rev, rev % 2 ? "odd" : "even", key);
	}
	feed_test_hold(f, false);

	feed_stats st;
	feed_get_stats(f, &st);
	assert_int_equal(st.combined_left, N);
	assert_int_equal(st.frontier, N);
	assert_true(st.history_bytes <= limit);
	assert_int_equal(st.history_events, limit / ri.small_bytes);
	assert_int_equal(st.oldest, N + 1 - limit / ri.small_bytes);
	assert_int_equal(st.pending_events, 0);

	ctx_event *e = NULL;
	assert_ok(ctx_watch_next(idle, &e));
	assert_int_equal(e->kind, CTX_EVENT_LAGGED);
	assert_int_equal(e->resume_from, 1);
	ctx_event_free(e);
	expect_none(idle);

	ctx_watch *from;
	assert_ok(feed_watch_open(f, "", true, st.oldest, &from));
	for (uint64_t rev = st.oldest; rev <= N; rev++)
		expect_event(from, rev, rev % 2 ? "odd" : "even");
	expect_none(from);
	ctx_watch_close(from);
	ctx_watch_close(idle);
	feed_close(f);
}

enum { WRITERS = 4, READERS = 8 };

typedef struct run {
	ctx_store *s;
	long commits; /* per writer */
	atomic_int next_writer;
	atomic_int writers_done;
	uint64_t first;
} run;

/* Writer n commits "k<n>.<i>" to context "c/<n>" and waits for its event
 * through its own watch of that context before the next commit. */
static void *writer_main(void *p)
{
	run *r = p;
	int n = atomic_fetch_add(&r->next_writer, 1);
	char id[16], key[32];
	snprintf(id, sizeof(id), "c/%d", n);
	ctx_watch *own;
	T_CHECK_STATUS(ctx_watch_open(r->s, id, false, 0, &own), CTX_OK);
	for (long i = 0; i < r->commits && thread_failures() == 0; i++) {
		int klen = snprintf(key, sizeof(key), "k%d.%ld", n, i);
		uint64_t version = 0;
		T_CHECK_STATUS(ctx_put(r->s, id, key, (size_t)klen, &i, sizeof(i), &version), CTX_OK);
		/* Its event may wait for an earlier revision another writer
		 * has not reported yet: wait, with no time limit (an event
		 * left with nobody to place it would hang here). */
		ctx_event *e = NULL;
		T_CHECK_STATUS(ctx_watch_wait(own, -1, &e), CTX_OK);
		if (!e)
			break;
		T_CHECK(e->kind == CTX_EVENT_COMMITTED && e->version == version && e->nkeys == 1 &&
		        e->klens[0] == (size_t)klen && memcmp(e->keys[0], key, (size_t)klen) == 0);
		ctx_event_free(e);
	}
	ctx_watch_close(own);
	atomic_fetch_add(&r->writers_done, 1);
	return NULL;
}

typedef struct reader {
	run *r;
	ctx_watch *w;
	long close_after; /* > 0: close the watch after this many events */
	long got;
	long next[WRITERS]; /* the counter each writer's next event carries */
	uint64_t last;
	bool lagged;
} reader;

/* Drain the prefix watch until every event of the run came (or a lag). */
static void *reader_main(void *p)
{
	reader *d = p;
	long total = d->r->commits * WRITERS;
	while (d->got < total && !d->lagged && thread_failures() == 0) {
		ctx_event *e = NULL;
		if (ctx_watch_wait(d->w, 100, &e) != CTX_OK)
			continue;
		if (e->kind == CTX_EVENT_LAGGED) {
			T_CHECK(e->resume_from > d->last);
			d->lagged = true;
			ctx_event_free(e);
			break;
		}
		int n = -1;
		T_CHECK(e->revision > d->last && e->revision >= d->r->first);
		T_CHECK(sscanf(e->id, "c/%d", &n) == 1 && n >= 0 && n < WRITERS);
		if (n >= 0 && n < WRITERS) {
			char key[32];
			int klen = snprintf(key, sizeof(key), "k%d.%ld", n, d->next[n]);
			T_CHECK(e->nkeys == 1 && e->klens[0] == (size_t)klen &&
			        memcmp(e->keys[0], key, (size_t)klen) == 0);
			d->next[n]++;
		}
		d->last = e->revision;
		d->got++;
		ctx_event_free(e);
		if (d->close_after && d->got == d->close_after) {
			ctx_watch_close(d->w);
			d->w = NULL;
			return NULL;
		}
	}
	return NULL;
}

static void test_writers_read_their_own_events_beside_readers(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1;
	/* The log and the queue hold the whole run: no lag is legal (a writer
	 * descheduled before it reads its event may fall any number of
	 * revisions behind the others). */
	o.watch_history = 1 << 16;
	o.watch_queue = 1 << 16;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	for (int i = 0; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "c/%d", i);
		assert_ok(ctx_create(s, id));
	}
	feed_stats st;
	feed_get_stats(s->feed, &st);
	run r = {.s = s, .commits = test_iters(3000, 500), .first = st.frontier + 1};
	reader d[READERS];
	memset(d, 0, sizeof(d));
	pthread_t rt[READERS], wt[WRITERS];
	for (int i = 0; i < READERS; i++) {
		d[i].r = &r;
		d[i].close_after = i % 2 ? r.commits * WRITERS / (i + 1) : 0;
		assert_ok(ctx_watch_open(s, "c/", true, 0, &d[i].w));
		assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &d[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &r), 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < READERS; i++)
		pthread_join(rt[i], NULL);
	assert_no_thread_failures();

	long total = r.commits * WRITERS;
	for (int i = 0; i < READERS; i++) {
		if (d[i].w)
			ctx_watch_close(d[i].w);
		assert_false(d[i].lagged);
		assert_int_equal(d[i].got, d[i].close_after ? d[i].close_after : total);
		if (!d[i].close_after)
			for (int n = 0; n < WRITERS; n++)
				assert_int_equal(d[i].next[n], r.commits);
	}
	feed_get_stats(s->feed, &st);
	assert_int_equal(st.frontier, r.first - 1 + (uint64_t)total);
	assert_int_equal(st.pending_events, 0);
	printf("# %ld commits, %" PRIu64 " reports left for the lock's holder\n", total,
	       st.combined_left);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reports_left_while_the_lock_is_held),
	    cmocka_unit_test(test_left_reports_within_the_log_bounds),
	    cmocka_unit_test(test_writers_read_their_own_events_beside_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
