/*
 * test_r18_fanout.c - writers that wait for their own events beside readers.
 *
 * Round 18 (r18-fanout) let a writer that finds the feed lock held leave its
 * event for the holder ("combined reports", commit 6f332ca; its deterministic
 * tests, with a test hook to hold the feed lock, are in 150ebf2); measured
 * within noise under load and reverted (docs/benchmarks.md, round 18). The
 * check kept here holds for any way of placing reports, whatever the timing:
 * many writers on several contexts, each waiting, through a watch of its own
 * context, for its commit's event before its next commit (an event left
 * with nobody to place it would hang the test), while prefix readers take
 * the feed lock all the time: every prefix reader gets every event once, in
 * revision order, whole; half of them close their watch part-way while the
 * others read. The log and the queue hold the whole run, so no watcher may
 * lag. No assertion on timing.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "store.h"
#include "watch.h"

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

/* Drain the prefix watch until every event of the run came, a lag, or
 * nothing more once the writers are done. */
static void *reader_main(void *p)
{
	reader *d = p;
	long total = d->r->commits * WRITERS;
	while (d->got < total && !d->lagged && thread_failures() == 0) {
		ctx_event *e = NULL;
		if (ctx_watch_wait(d->w, 100, &e) != CTX_OK) {
			/* Each writer saw its last event delivered before it was
			 * done: then everything is, and a miss shows as a count. */
			if (atomic_load(&d->r->writers_done) < WRITERS)
				continue;
			if (ctx_watch_next(d->w, &e) != CTX_OK)
				break;
		}
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
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_writers_read_their_own_events_beside_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
