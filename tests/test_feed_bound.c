/*
 * test_feed_bound.c - what the change feed costs and holds (issue 9):
 *
 *   - with no watch open, commits leave nothing in the feed: no event is
 *     allocated, no key copied, no history kept (8,000 commits of 200 keys
 *     of 200 bytes; the process growth is printed for the record);
 *   - with a watch open, the history stays within watch_history_bytes; a
 *     watch from a revision evicted by that bound is refused ("compacted"),
 *     one from the oldest revision held replays everything after it;
 *   - events not yet delivered are never evicted, whatever the bound; once
 *     delivered, the bound evicts them from the shared log, and a watcher
 *     that had not read them lags, naming the first;
 *   - revisions committed while nobody watched are not held: a watch from
 *     them is refused, naming the revision; a watch from now on skips those
 *     still pending; closing the last watch empties the history;
 *   - a watch opened from now on, while writers commit, receives every
 *     revision after the one it read, each with its keys (watchers come and
 *     go, so reports race with the switch between recorded and bare).
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "watch.h"

/* ---- helpers ------------------------------------------------------------------- */

static ctx_store *open_store(size_t history_bytes, bool keep)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1; /* what grows is the feed, not the context's versions */
	o.watch_history_bytes = history_bytes;
	o.watch_keep_history = keep;
	return test_open(&o);
}

static feed_stats stats_of(ctx_store *s)
{
	feed_stats st;
	feed_get_stats(s->feed, &st);
	return st;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, res = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* One commit to id of nkeys keys of klen bytes (key i starts with i), the
 * values naming the commit. */
static void commit_keys(ctx_store *s, const char *id, int commit, int nkeys, size_t klen)
{
	char key[256], val[16];
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin(s, id, &t));
	int vl = snprintf(val, sizeof(val), "%d", commit);
	for (int k = 0; k < nkeys; k++) {
		memset(key, 'k', klen);
		memcpy(key, &k, sizeof(k));
		assert_ok(ctx_txn_put(t, key, klen, val, (size_t)vl));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

static void expect_commit(ctx_watch *w, uint64_t rev, size_t nkeys)
{
	ctx_event *e = test_next_event(w);
	assert_int_equal(e->revision, rev);
	assert_int_equal(e->nkeys, nkeys);
	ctx_event_free(e);
}

/* Record revision rev on a bare feed, touching key "k<rev>". */
static void rec(feed *f, uint64_t rev)
{
	char key[32];
	int kl = snprintf(key, sizeof(key), "k%" PRIu64, rev);
	const void *keys[1] = {key};
	size_t klens[1] = {(size_t)kl};
	feed_record(f, rev, CTX_EVENT_COMMITTED, "c", 1, rev, 1, keys, klens);
}

/* ---- nobody watching ------------------------------------------------------------ */

static void test_no_watcher_costs_nothing(void **unused)
{
	enum { KEYS = 200, KLEN = 200 };
	long commits = test_iters(8000, 200);
	ctx_store *s = open_store(0, false);
	assert_ok(ctx_create(s, "c"));
	commit_keys(s, "c", 0, KEYS, KLEN); /* the context holds its keys */
	long before = rss_kib();
	for (long i = 1; i <= commits; i++)
		commit_keys(s, "c", (int)i, KEYS, KLEN);
	long after = rss_kib();
	feed_stats st = stats_of(s);
	printf("# %ld commits of %d keys of %d bytes, no watcher: feed holds %zu events, "
	       "%zu bytes (%zu pending), %" PRIu64 " events ever allocated, ring %zu slots; "
	       "RSS %ld -> %ld KiB (%+.1f MiB)\n",
	       commits, KEYS, KLEN, st.history_events, st.history_bytes, st.pending_bytes,
	       st.events_recorded, st.ring_slots, before, after, (after - before) / 1024.0);
	assert_int_equal(st.frontier, (uint64_t)commits + 2);
	assert_int_equal(st.events_recorded, 0);
	assert_int_equal(st.history_events, 0);
	assert_int_equal(st.history_bytes, 0);
	assert_int_equal(st.pending_bytes, 0);
	assert_int_equal(st.oldest, st.frontier + 1);
	ctx_close(s);
}

/* The same commits with watch_keep_history: the history is kept, within the
 * byte bound. */
static void test_keep_history_bounded(void **unused)
{
	enum { KEYS = 200, KLEN = 200, LIMIT = 1 << 20 };
	long commits = test_iters(400, 100);
	ctx_store *s = open_store(LIMIT, true);
	assert_ok(ctx_create(s, "c"));
	for (long i = 1; i <= commits; i++) {
		commit_keys(s, "c", (int)i, KEYS, KLEN);
		feed_stats st = stats_of(s);
		assert_true(st.history_bytes <= LIMIT);
	}
	feed_stats st = stats_of(s);
	assert_int_equal(st.events_recorded, (uint64_t)commits + 1);
	/* Each event holds 200 keys of 200 bytes: the bound keeps 20 to 26. */
	assert_true(st.history_events >= LIMIT / (KEYS * (KLEN + 16) + 256));
	assert_true(st.history_events < LIMIT / (KEYS * KLEN));
	assert_true(st.history_bytes > LIMIT - KEYS * (KLEN + 16) - 256);
	ctx_watch *w = NULL;
	assert_ok(ctx_watch_open(s, "c", false, st.oldest, &w));
	for (uint64_t rev = st.oldest; rev <= st.frontier; rev++)
		expect_commit(w, rev, KEYS);
	test_expect_no_event(w);
	ctx_watch_close(w);
	assert_int_equal(ctx_watch_open(s, "c", false, st.oldest - 1, &w), CTX_NOT_FOUND);
	assert_non_null(strstr(ctx_last_error(), "compacted"));
	ctx_close(s);
}

/* ---- the byte bound with a watcher ------------------------------------------------ */

static void test_history_within_bytes(void **unused)
{
	enum { KEYS = 20, KLEN = 200, LIMIT = 256 << 10 };
	long commits = test_iters(2000, 300);
	ctx_store *s = open_store(LIMIT, false);
	ctx_watch *w = NULL;
	assert_ok(ctx_watch_open(s, "", true, 0, &w));
	assert_ok(ctx_create(s, "c"));
	expect_commit(w, 1, 0);
	size_t most = 0;
	for (long i = 1; i <= commits; i++) {
		commit_keys(s, "c", (int)i, KEYS, KLEN);
		expect_commit(w, (uint64_t)i + 1, KEYS);
		feed_stats st = stats_of(s);
		assert_true(st.history_bytes <= st.history_bytes_limit);
		assert_int_equal(st.history_bytes_limit, LIMIT);
		if (st.history_bytes > most)
			most = st.history_bytes;
	}
	feed_stats st = stats_of(s);
	printf("# %ld commits of %d keys of %d bytes, one watcher, bound %d: history holds "
	       "%zu events, %zu bytes (most %zu), revisions %" PRIu64 "..%" PRIu64 "\n",
	       commits, KEYS, KLEN, LIMIT, st.history_events, st.history_bytes, most, st.oldest,
	       st.frontier);
	/* Each event is ~4.5 KB: the bound, not the revision count, evicted. */
	assert_true(st.history_bytes > LIMIT - KEYS * (KLEN + 16) - 256);
	assert_true(st.frontier - st.oldest + 1 < 65536);
	assert_true(st.oldest > 2);

	/* Evicted by the byte bound: refused, naming the oldest held. */
	ctx_watch *h = NULL;
	assert_int_equal(ctx_watch_open(s, "c", false, st.oldest - 1, &h), CTX_NOT_FOUND);
	assert_non_null(strstr(ctx_last_error(), "compacted"));
	char want[64];
	snprintf(want, sizeof(want), "starts at %" PRIu64, st.oldest);
	assert_non_null(strstr(ctx_last_error(), want));
	assert_int_equal(ctx_watch_open(s, "c", false, 1, &h), CTX_NOT_FOUND);
	/* From the oldest held: all of it, with its keys, then live events. */
	assert_ok(ctx_watch_open(s, "c", false, st.oldest, &h));
	for (uint64_t rev = st.oldest; rev <= st.frontier; rev++)
		expect_commit(h, rev, KEYS);
	test_expect_no_event(h);
	commit_keys(s, "c", -1, KEYS, KLEN);
	expect_commit(h, st.frontier + 1, KEYS);
	expect_commit(w, st.frontier + 1, KEYS);
	ctx_watch_close(h);
	ctx_watch_close(w);
	/* Nobody watches: the history is gone. */
	st = stats_of(s);
	assert_int_equal(st.history_events, 0);
	assert_int_equal(st.history_bytes, 0);
	ctx_close(s);
}

/* The bytes one event of rec() takes in the log (revision rev). */
static size_t event_bytes(uint64_t rev)
{
	feed *f = NULL;
	assert_ok(feed_open(rev, &(feed_config){.keep_history = true}, &f));
	rec(f, rev);
	feed_stats st;
	feed_get_stats(f, &st);
	feed_close(f);
	return st.history_bytes;
}

/* A byte bound of 10 events: 40 reports waiting for revision 1 are all
 * kept, whatever the bound, and delivered in order once it comes; then the
 * bound evicts all but the last 10 from the shared log at once, so the
 * watcher that had not read them lags at revision 1, and a watch from the
 * oldest held (32) gets 32..41 with their keys. (Before issue 11 each
 * watcher had a queue of its own that kept all 41 beyond the bound.) */
static void test_pending_never_evicted(void **unused)
{
	size_t one = event_bytes(41);
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 64, .history_bytes = 10 * one}, &f));
	ctx_watch *w = NULL;
	assert_ok(feed_watch_open(f, "", true, 0, &w));
	for (uint64_t rev = 41; rev >= 2; rev--)
		rec(f, rev);
	test_expect_no_event(w);
	feed_stats st;
	feed_get_stats(f, &st);
	assert_int_equal(st.pending_events, 40);
	assert_true(st.pending_bytes > 10 * one);
	assert_int_equal(st.history_bytes, 0);
	rec(f, 1);
	feed_get_stats(f, &st);
	assert_int_equal(st.pending_events, 0);
	assert_int_equal(st.pending_bytes, 0);
	assert_int_equal(st.history_events, 10);
	assert_int_equal(st.history_bytes, 10 * one);
	assert_int_equal(st.oldest, 32);
	assert_int_equal(st.frontier, 41);
	ctx_event *e = test_next_event(w);
	assert_int_equal(e->kind, CTX_EVENT_LAGGED);
	assert_int_equal(e->resume_from, 1);
	ctx_event_free(e);
	test_expect_no_event(w);
	ctx_watch *h = NULL;
	assert_int_equal(feed_watch_open(f, "", true, 31, &h), CTX_NOT_FOUND);
	assert_ok(feed_watch_open(f, "", true, 32, &h));
	for (uint64_t rev = 32; rev <= 41; rev++) {
		e = test_next_event(h);
		assert_int_equal(e->revision, rev);
		assert_int_equal(e->nkeys, 1);
		char key[32];
		int kl = snprintf(key, sizeof(key), "k%" PRIu64, rev);
		assert_int_equal(e->klens[0], (size_t)kl);
		assert_memory_equal(e->keys[0], key, (size_t)kl);
		ctx_event_free(e);
	}
	test_expect_no_event(h);
	ctx_watch_close(h);
	ctx_watch_close(w);
	feed_close(f);
}

/* ---- revisions nobody watched ----------------------------------------------------- */

static void test_unwatched_revisions_not_held(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, NULL, &f));
	for (uint64_t rev = 1; rev <= 10; rev++)
		rec(f, rev);
	feed_skip(f, 11);
	feed_stats st;
	feed_get_stats(f, &st);
	assert_int_equal(st.frontier, 11);
	assert_int_equal(st.events_recorded, 0);
	assert_int_equal(st.oldest, 12);
	ctx_watch *w = NULL;
	assert_int_equal(feed_watch_open(f, "", true, 5, &w), CTX_NOT_FOUND);
	assert_non_null(strstr(ctx_last_error(), "compacted"));

	ctx_watch *now = NULL, *later = NULL;
	assert_ok(feed_watch_open(f, "", true, 0, &now));
	assert_ok(feed_watch_open(f, "", true, 12, &later)); /* not yet committed */
	rec(f, 12);
	rec(f, 13);
	expect_commit(now, 12, 1);
	expect_commit(now, 13, 1);
	expect_commit(later, 12, 1);
	expect_commit(later, 13, 1);
	/* A second watch replays what was recorded since the first opened. */
	ctx_watch *again = NULL;
	assert_ok(feed_watch_open(f, "", true, 12, &again));
	expect_commit(again, 12, 1);
	expect_commit(again, 13, 1);
	test_expect_no_event(again);
	ctx_watch_close(again);
	ctx_watch_close(later);
	feed_get_stats(f, &st);
	assert_int_equal(st.history_events, 2);
	/* The last watch closes: the history goes with it. */
	ctx_watch_close(now);
	feed_get_stats(f, &st);
	assert_int_equal(st.history_events, 0);
	assert_int_equal(st.history_bytes, 0);
	assert_int_equal(st.oldest, 14);
	assert_int_equal(feed_watch_open(f, "", true, 12, &w), CTX_NOT_FOUND);
	feed_close(f);
}

/* Revision 2 is reported while nobody watches and waits for revision 1:
 * a watch from now on skips it (its change was visible before the watch
 * opened), a watch asking for it is refused naming it, and once it is
 * delivered the history cannot reach back over it. */
static void test_bare_pending_revision(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, NULL, &f));
	rec(f, 2);
	ctx_watch *now = NULL, *w = NULL, *three = NULL;
	assert_ok(feed_watch_open(f, "", true, 0, &now));
	assert_int_equal(feed_watch_open(f, "", true, 1, &w), CTX_NOT_FOUND);
	assert_int_equal(feed_watch_open(f, "", true, 2, &w), CTX_NOT_FOUND);
	assert_non_null(strstr(ctx_last_error(), "revision 2 was committed while no watch"));
	assert_ok(feed_watch_open(f, "", true, 3, &three));
	rec(f, 1); /* recorded: a watch is open */
	rec(f, 3);
	expect_commit(now, 1, 1);
	expect_commit(now, 3, 1);
	test_expect_no_event(now);
	expect_commit(three, 3, 1);
	test_expect_no_event(three);
	feed_stats st;
	feed_get_stats(f, &st);
	assert_int_equal(st.oldest, 3);
	assert_int_equal(st.events_recorded, 2);
	assert_int_equal(feed_watch_open(f, "", true, 1, &w), CTX_NOT_FOUND);
	ctx_watch_close(three);
	ctx_watch_close(now);
	feed_close(f);
}

/* ---- watchers coming and going while writers commit ---------------------------- */

typedef struct churn {
	ctx_store *s;
	atomic_bool stop;
} churn;

typedef struct churn_writer {
	pthread_t th;
	churn *sh;
	int id;
} churn_writer;

static void *churn_write(void *arg)
{
	churn_writer *a = arg;
	char id[16];
	snprintf(id, sizeof(id), "w%d", a->id);
	T_CHECK_STATUS(ctx_create(a->sh->s, id), CTX_OK);
	for (long i = 0; !atomic_load(&a->sh->stop); i++)
		T_CHECK_STATUS(ctx_put(a->sh->s, id, "k", 1, &i, sizeof(i), NULL), CTX_OK);
	return NULL;
}

static uint64_t store_revision(ctx_store *s)
{
	ctx_stats st;
	ctx_get_stats(s, &st);
	return st.revision;
}

/* Wait (yielding) until the feed delivered every revision up to rev. */
static void wait_frontier(ctx_store *s, uint64_t rev)
{
	double deadline = test_now() + 60;
	while (stats_of(s).frontier < rev && test_now() < deadline)
		sched_yield();
	assert_true(stats_of(s).frontier >= rev);
}

/* One watch, from now on or (explicit) from the revision after the store's
 * newest before it opened: unless refused as compacted (explicit only),
 * every revision from `from` to the newest once it was open comes, once, in
 * order, with its key. False if refused. */
static bool churn_round(ctx_store *s, bool explicit)
{
	ctx_watch *w = NULL;
	uint64_t from = store_revision(s) + 1;
	if (explicit) {
		ctx_status st = ctx_watch_open(s, "", true, from, &w);
		if (st == CTX_NOT_FOUND) {
			if (!strstr(ctx_last_error(), "compacted"))
				fail_msg("%s (from %" PRIu64 ")", ctx_last_error(), from);
			return false;
		}
		assert_ok(st);
	} else {
		assert_ok(ctx_watch_open(s, "", true, 0, &w));
		from = store_revision(s) + 1;
	}
	sched_yield();
	uint64_t to = store_revision(s);
	wait_frontier(s, to);
	uint64_t last = 0;
	ctx_event *e = NULL;
	while (ctx_watch_next(w, &e) == CTX_OK) {
		assert_int_not_equal(e->kind, CTX_EVENT_LAGGED);
		assert_true(e->revision > last);
		if (e->revision >= from && e->revision <= to)
			assert_int_equal(e->revision, last < from ? from : last + 1);
		if (e->kind == CTX_EVENT_COMMITTED)
			assert_int_equal(e->nkeys, 1);
		last = e->revision;
		ctx_event_free(e);
	}
	assert_true(last >= to || from > to);
	ctx_watch_close(w);
	return true;
}

static void test_watchers_come_and_go(void **unused)
{
	enum { T = 2 };
	reset_failures();
	ctx_options o;
	ctx_options_init(&o);
	o.watch_queue = 1u << 20;
	o.watch_history = 1u << 20; /* the log is what a watcher reads from: it
	                               must outlast a drainer's wait */
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	churn sh = {.s = s};
	churn_writer a[T];
	for (int i = 0; i < T; i++) {
		a[i] = (churn_writer){.sh = &sh, .id = i};
		assert_int_equal(pthread_create(&a[i].th, NULL, churn_write, &a[i]), 0);
	}
	long rounds = test_iters(1000, 200), opened = 0;
	for (long r = 0; r < rounds; r++) {
		opened += churn_round(s, r % 2);
		sched_yield(); /* a while with nobody watching */
	}
	atomic_store(&sh.stop, true);
	for (int i = 0; i < T; i++)
		pthread_join(a[i].th, NULL);
	assert_no_thread_failures();
	printf("# %ld watches opened (%ld refused as compacted) while %d writers made %" PRIu64
	       " commits\n",
	       opened, rounds - opened, T, store_revision(s));
	assert_true(opened >= rounds / 2);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_no_watcher_costs_nothing),
	        cmocka_unit_test(test_keep_history_bounded),
	        cmocka_unit_test(test_history_within_bytes),
	        cmocka_unit_test(test_pending_never_evicted),
	        cmocka_unit_test(test_unwatched_revisions_not_held),
	        cmocka_unit_test(test_bare_pending_revision),
	        cmocka_unit_test(test_watchers_come_and_go),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
