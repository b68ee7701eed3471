/*
 * test_r17_fanout.c - watchers that read the log beside the writers.
 *
 * Round 17 (r17-fanout) let a watcher that is not armed read the shared
 * event log under a second lock (evict_lock) instead of the feed lock, and
 * cleared evicted slots in batches (the "limbo"); measured within noise
 * under load and reverted (docs/benchmarks.md, round 17; the change is
 * commit 6815dd9). These checks hold for any way of reading the log beside
 * the writers, whatever the timing:
 *   - many writers, watchers draining in threads while the log evicts
 *     under them: each watcher gets every event once, in revision order,
 *     each event whole (its id and key are the ones its writer committed:
 *     a record reused under a reader would not be); nothing after a lag;
 *   - a watcher that never reads holds the writers to nothing: the log
 *     stays within its bytes and revisions, and the watcher, read at last,
 *     delivers a gapless run of whole events and then lags, naming the first
 *     revision it misses;
 *   - a watcher closed while the others read (and its own thread reads)
 *     leaves the others their every event.
 * No assertion on timing: a watcher that falls out of the log may lag
 * (legal), and then the test checks what it delivered before.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "watch.h"

enum { WRITERS = 6, WATCHERS = 12 };

typedef struct run {
	ctx_store *s;
	long commits; /* per writer */
	atomic_int writers_done;
	atomic_int next_writer;
	uint64_t first; /* the first revision of the run */
} run;

/* Writer n commits key "k<n>.<i>" to context "w/<n>" for i = 0, 1, ... */
static void *writer_main(void *p)
{
	run *r = p;
	int n = atomic_fetch_add(&r->next_writer, 1);
	char id[16], key[32];
	snprintf(id, sizeof(id), "w/%d", n);
	for (long i = 0; i < r->commits; i++) {
		int klen = snprintf(key, sizeof(key), "k%d.%ld", n, i);
		T_CHECK_STATUS(ctx_put(r->s, id, key, (size_t)klen, &i, sizeof(i), NULL), CTX_OK);
		if (i % 40 == 39)
			usleep(100); /* bursts, so that watchers also sleep and arm */
	}
	atomic_fetch_add(&r->writers_done, 1);
	return NULL;
}

typedef struct reader {
	run *r;
	ctx_watch *w;
	long close_after; /* > 0: close the watch after this many events */
	long got, lags;
	long next[WRITERS]; /* the counter each writer's next event must carry */
	uint64_t last;
	bool ok;
	char why[160];
} reader;

static void reader_fail(reader *d, const char *what, const ctx_event *e)
{
	if (!d->ok)
		return;
	d->ok = false;
	snprintf(d->why, sizeof(d->why), "%s at revision %" PRIu64 " (after %" PRIu64 ", %ld got)",
	         what, e ? e->revision : 0, d->last, d->got);
}

/* Check one event: in order, whole, and its writer's next. */
static void reader_check(reader *d, const ctx_event *e)
{
	if (e->kind != CTX_EVENT_COMMITTED) {
		reader_fail(d, "not a commit", e);
		return;
	}
	if (e->revision <= d->last || e->revision < d->r->first) {
		reader_fail(d, "out of order or twice", e);
		return;
	}
	int n = -1;
	long i = -1;
	char key[32];
	if (sscanf(e->id, "w/%d", &n) != 1 || n < 0 || n >= WRITERS || e->nkeys != 1 ||
	    e->klens[0] >= sizeof(key)) {
		reader_fail(d, "not a writer's event", e);
		return;
	}
	memcpy(key, e->keys[0], e->klens[0]);
	key[e->klens[0]] = '\0';
	int kn = -1;
	if (sscanf(key, "k%d.%ld", &kn, &i) != 2 || kn != n || e->version == 0) {
		reader_fail(d, "key of another event", e);
		return;
	}
	/* Without a lag so far, every event of writer n comes, in its order. */
	if (i != d->next[n]) {
		reader_fail(d, "a writer's event missing or repeated", e);
		return;
	}
	d->next[n] = i + 1;
	d->last = e->revision;
	d->got++;
}

static void *reader_main(void *p)
{
	reader *d = p;
	long want = d->r->commits * WRITERS;
	d->ok = true;
	while (d->got < want) {
		ctx_event *e = NULL;
		ctx_status st = ctx_watch_wait(d->w, 200, &e);
		if (st == CTX_NOT_FOUND) {
			if (atomic_load(&d->r->writers_done) == WRITERS) {
				/* Everything is committed: what is pending is readable. */
				if (ctx_watch_next(d->w, &e) != CTX_OK) {
					reader_fail(d, "events missing at the end", NULL);
					break;
				}
			} else {
				continue;
			}
		} else if (st != CTX_OK) {
			reader_fail(d, "wait failed", NULL);
			break;
		}
		if (e->kind == CTX_EVENT_LAGGED) {
			/* Legal when descheduled past the log; nothing may follow,
			 * and it names the first revision not delivered. */
			d->lags++;
			if (e->resume_from <= d->last)
				reader_fail(d, "lag names a delivered revision", e);
			ctx_event_free(e);
			ctx_event *more = NULL;
			if (ctx_watch_next(d->w, &more) == CTX_OK) {
				reader_fail(d, "an event after the lag", more);
				ctx_event_free(more);
			}
			break;
		}
		reader_check(d, e);
		ctx_event_free(e);
		if (!d->ok)
			break;
		if (d->close_after && d->got == d->close_after) {
			ctx_watch_close(d->w);
			d->w = NULL;
			break;
		}
	}
	return NULL;
}

static ctx_store *open_with(size_t history, size_t history_bytes, size_t queue)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1;
	o.watch_history = history;
	o.watch_history_bytes = history_bytes;
	o.watch_queue = queue;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	for (int i = 0; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w/%d", i);
		assert_ok(ctx_create(s, id));
	}
	return s;
}

static uint64_t next_revision(ctx_store *s)
{
	feed_stats st;
	feed_get_stats(s->feed, &st);
	return st.frontier + 1;
}

/* Run WRITERS writers against the readers d[0..n), opened on the prefix. */
static void run_readers(run *r, reader *d, int n)
{
	pthread_t rt[WATCHERS], wt[WRITERS];
	r->first = next_revision(r->s);
	for (int i = 0; i < n; i++) {
		d[i].r = r;
		assert_ok(ctx_watch_open(r->s, "w/", true, 0, &d[i].w));
		assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &d[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&wt[i], NULL, writer_main, r), 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < n; i++)
		pthread_join(rt[i], NULL);
}

/* The log (4,096 revisions) evicts many times over under the readers. */
static void test_every_event_once_in_order_while_evicting(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_store *s = open_with(4096, 0, 4096);
	run r = {.s = s, .commits = test_iters(4000, 800)};
	reader d[WATCHERS] = {0};
	run_readers(&r, d, WATCHERS);
	long complete = 0;
	for (int i = 0; i < WATCHERS; i++) {
		if (!d[i].ok)
			fail_msg("watcher %d: %s", i, d[i].why);
		if (!d[i].lags) {
			assert_int_equal(d[i].got, r.commits * WRITERS);
			complete++;
		}
		ctx_event *e = NULL;
		assert_int_equal(ctx_watch_next(d[i].w, &e), CTX_NOT_FOUND);
		ctx_watch_close(d[i].w);
	}
	print_message("%ld of %d watchers got all %ld events (the others lagged)\n", complete,
	              WATCHERS, r.commits * WRITERS);
	feed_stats st;
	feed_get_stats(s->feed, &st);
	assert_int_equal(st.history_events, 0); /* nobody watches: the log is empty */
	assert_no_thread_failures();
	ctx_close(s);
}

/* A watcher that does not read while the writers fill the log many times
 * over: the log keeps its bounds, and the watcher then delivers a gapless
 * run of whole events, then lags. */
static void test_slow_watcher_bounded_by_log_bytes(void **unused)
{
	(void)unused;
	reset_failures();
	enum { LIMIT = 32 << 10 };
	ctx_store *s = open_with(1 << 16, LIMIT, 1 << 16);
	run r = {.s = s, .commits = test_iters(3000, 600)};
	r.first = next_revision(s);
	reader slow = {.r = &r, .ok = true};
	assert_ok(ctx_watch_open(s, "w/", true, 0, &slow.w));
	pthread_t wt[WRITERS];
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &r), 0);
	for (int round = 0; atomic_load(&r.writers_done) < WRITERS; round++) {
		feed_stats st;
		feed_get_stats(s->feed, &st);
		assert_true(st.history_bytes <= LIMIT);
		usleep(1000);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	feed_stats st;
	feed_get_stats(s->feed, &st);
	assert_true(st.history_bytes <= LIMIT);
	assert_true(st.history_events > 0);
	assert_true(st.oldest > r.first); /* the log evicted what the watcher missed */

	/* A watch from the log's oldest revision (opened while the slow one
	 * keeps the log) gets every revision of it, whole and in order. */
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, "w/", true, st.oldest, &w));

	/* Read it all: the first events are gone, so it lags at once, at the
	 * first revision it missed (the watch opened before any of them). */
	ctx_event *e = NULL;
	assert_ok(ctx_watch_next(slow.w, &e));
	assert_int_equal(e->kind, CTX_EVENT_LAGGED);
	assert_int_equal(e->resume_from, r.first);
	ctx_event_free(e);
	assert_int_equal(ctx_watch_next(slow.w, &e), CTX_NOT_FOUND);
	ctx_watch_close(slow.w);

	uint64_t want = st.oldest;
	while (ctx_watch_next(w, &e) == CTX_OK) {
		assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
		assert_int_equal(e->revision, want);
		assert_int_equal(e->nkeys, 1);
		char key[32];
		memcpy(key, e->keys[0], e->klens[0]);
		key[e->klens[0]] = '\0';
		int n = -1, kn = -2;
		long i = -1;
		assert_int_equal(sscanf(e->id, "w/%d", &n), 1);
		assert_int_equal(sscanf(key, "k%d.%ld", &kn, &i), 2);
		assert_int_equal(n, kn);
		want++;
		ctx_event_free(e);
	}
	assert_int_equal(want, st.frontier + 1);
	ctx_watch_close(w);
	assert_no_thread_failures();
	ctx_close(s);
}

/* Half the watchers close their watch part-way, from their own reading
 * thread, while the others read on: those get every event. */
static void test_watcher_closed_while_others_read(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_store *s = open_with(1 << 17, 0, 1 << 17);
	run r = {.s = s, .commits = test_iters(3000, 600)};
	reader d[WATCHERS] = {0};
	for (int i = 0; i < WATCHERS; i += 2)
		d[i].close_after = 1 + (long)i * r.commits * WRITERS / (2 * WATCHERS);
	run_readers(&r, d, WATCHERS);
	for (int i = 0; i < WATCHERS; i++) {
		if (!d[i].ok)
			fail_msg("watcher %d: %s", i, d[i].why);
		assert_int_equal(d[i].lags, 0); /* the log holds the whole run */
		if (d[i].close_after) {
			assert_int_equal(d[i].got, d[i].close_after);
			assert_null(d[i].w);
			continue;
		}
		assert_int_equal(d[i].got, r.commits * WRITERS);
		ctx_watch_close(d[i].w);
	}
	assert_no_thread_failures();
	ctx_close(s);
}

/* Readers at the log's tail, where the limbo is cleared: a history of 128
 * revisions (limbo of 64) and a queue of 96, and readers that resume after
 * each lag from the revision it names (or from now, once that is gone),
 * checking each event whole: a slot cleared or a record reused under a
 * reader shows as another writer's key. */
typedef struct tail_reader {
	run *r;
	long events, lags;
	bool ok;
} tail_reader;

static void *tail_main(void *p)
{
	tail_reader *t = p;
	ctx_watch *w;
	T_CHECK_STATUS(ctx_watch_open(t->r->s, "w/", true, 0, &w), CTX_OK);
	uint64_t last = 0;
	t->ok = true;
	while (atomic_load(&t->r->writers_done) < WRITERS) {
		ctx_event *e = NULL;
		if (ctx_watch_next(w, &e) != CTX_OK) {
			usleep(50);
			continue;
		}
		if (e->kind == CTX_EVENT_LAGGED) {
			uint64_t from = e->resume_from;
			ctx_event_free(e);
			t->lags++;
			ctx_watch *nw;
			if (ctx_watch_open(t->r->s, "w/", true, from, &nw) != CTX_OK)
				T_CHECK_STATUS(ctx_watch_open(t->r->s, "w/", true, 0, &nw), CTX_OK);
			ctx_watch_close(w);
			w = nw;
			last = 0;
			continue;
		}
		char key[32];
		int n = -1, kn = -2;
		long i = -1;
		bool whole = e->kind == CTX_EVENT_COMMITTED && e->revision > last && e->nkeys == 1 &&
		             e->klens[0] < sizeof(key) && sscanf(e->id, "w/%d", &n) == 1;
		if (whole) {
			memcpy(key, e->keys[0], e->klens[0]);
			key[e->klens[0]] = '\0';
			whole = sscanf(key, "k%d.%ld", &kn, &i) == 2 && kn == n;
		}
		if (!whole)
			t->ok = false;
		last = e->revision;
		t->events++;
		ctx_event_free(e);
		if (t->events % 16 == 0)
			usleep(20); /* fall behind now and then */
	}
	ctx_watch_close(w);
	return NULL;
}

static void test_readers_at_the_log_tail(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_store *s = open_with(128, 0, 96);
	run r = {.s = s, .commits = test_iters(6000, 1500)};
	tail_reader t[WATCHERS] = {0};
	pthread_t tt[WATCHERS], wt[WRITERS];
	for (int i = 0; i < WATCHERS; i++) {
		t[i].r = &r;
		assert_int_equal(pthread_create(&tt[i], NULL, tail_main, &t[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &r), 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	long events = 0, lags = 0;
	for (int i = 0; i < WATCHERS; i++) {
		pthread_join(tt[i], NULL);
		assert_true(t[i].ok);
		events += t[i].events;
		lags += t[i].lags;
	}
	print_message("%ld events, %ld lags\n", events, lags);
	feed_stats st;
	feed_get_stats(s->feed, &st);
	assert_int_equal(st.history_events, 0);
	assert_no_thread_failures();
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_event_once_in_order_while_evicting),
	    cmocka_unit_test(test_slow_watcher_bounded_by_log_bytes),
	    cmocka_unit_test(test_watcher_closed_while_others_read),
	    cmocka_unit_test(test_readers_at_the_log_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
