/*
 * test_r10_fanout.c - the change feed's pooled event records (issue 11,
 * round 10: a writer builds its events in records it evicted earlier, so
 * the steady state of a full log costs no malloc or free):
 *
 *   - a small event is counted in the log at its record's size (128 bytes),
 *     a medium one at 256, a larger one at its own size; the history byte
 *     bound holds with them counted so, and evicts exactly as many;
 *   - events arrive intact and in order while the records of evicted ones
 *     are reused under them, and an event a caller still holds is never
 *     reused (its bytes stay what they were, however many records go by);
 *   - events larger than a record arrive intact;
 *   - watchers that close with events taken out of the log, or handed to
 *     the caller and not yet freed, leave those events intact;
 *   - many writers and watchers at once (run under TSan by `make tsan`):
 *     every watcher gets every revision, in order, with its keys;
 *   - the spare records a thread keeps stay within their bound, and a
 *     thread's spares are freed when it exits.
 */
#include "testutil.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feed_util.h"
#include "store.h"

/* ---- helpers ------------------------------------------------------------------- */

/* The key bytes of revision rev's event, key i: klen bytes named after both. */
static void key_of(uint64_t rev, size_t i, char *out, size_t klen)
{
	for (size_t j = 0; j < klen; j++)
		out[j] = (char)('a' + (rev * 7 + i * 3 + j) % 26);
}

/* Report rev on id with nkeys keys of klen bytes (key_of). */
static void rec(feed *f, uint64_t rev, const char *id, size_t nkeys, size_t klen)
{
	char *bytes = malloc(nkeys * klen + 1);
	const void **keys = malloc((nkeys + 1) * sizeof(*keys));
	size_t *klens = malloc((nkeys + 1) * sizeof(*klens));
	assert_non_null(bytes);
	assert_non_null(keys);
	assert_non_null(klens);
	for (size_t i = 0; i < nkeys; i++) {
		key_of(rev, i, bytes + i * klen, klen);
		keys[i] = bytes + i * klen;
		klens[i] = klen;
	}
	feed_record(f, rev, CTX_EVENT_COMMITTED, id, strlen(id), rev + 1000, nkeys, keys, klens);
	free(bytes);
	free(keys);
	free(klens);
}

/* Whether e is revision rev's event of rec(f, rev, id, nkeys, klen). */
static bool intact(const ctx_event *e, uint64_t rev, const char *id, size_t nkeys, size_t klen)
{
	if (e->kind != CTX_EVENT_COMMITTED || e->revision != rev || e->version != rev + 1000 ||
	    strcmp(e->id, id) != 0 || e->nkeys != nkeys)
		return false;
	char want[1024];
	for (size_t i = 0; i < nkeys; i++) {
		key_of(rev, i, want, klen);
		if (e->klens[i] != klen || memcmp(e->keys[i], want, klen) != 0)
			return false;
	}
	return true;
}

static feed_record_info records(void)
{
	feed_record_info ri;
	feed_record_stats(&ri);
	return ri;
}

/* The bytes one event takes in the log. */
static size_t bytes_of(const char *id, size_t nkeys, size_t klen)
{
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.keep_history = true}, &f));
	rec(f, 1, id, nkeys, klen);
	size_t bytes = feed_stats_of(f).history_bytes;
	feed_close(f);
	return bytes;
}

/* ---- accounting ----------------------------------------------------------------- */

/* Events are counted at their record's size, and the byte bound holds with
 * them counted so: a bound of 10 small records keeps exactly 10 events. */
static void test_counted_at_record_size(void **unused)
{
	feed_record_info ri = records();
	assert_int_equal(ri.small_bytes, 128);
	assert_int_equal(ri.large_bytes, 256);
	assert_int_equal(bytes_of("c", 0, 0), ri.small_bytes);
	assert_int_equal(bytes_of("c", 1, 1), ri.small_bytes);
	assert_int_equal(bytes_of("c", 4, 20), ri.large_bytes);
	size_t big = bytes_of("c", 8, 100);
	assert_true(big > 8 * 100 + ri.large_bytes - 256 && big > ri.large_bytes);

	for (int kind = 0; kind < 3; kind++) {
		size_t nkeys = kind == 0 ? 1 : kind == 1 ? 4 : 8;
		size_t klen = kind == 0 ? 1 : kind == 1 ? 20 : 100;
		size_t one = bytes_of("c", nkeys, klen);
		feed *f = NULL;
		assert_ok(
		    feed_open(1, &(feed_config){.history = 4096, .history_bytes = 10 * one}, &f));
		ctx_watch *w = NULL;
		assert_ok(feed_watch_open(f, "c", false, 0, &w));
		for (uint64_t rev = 1; rev <= 500; rev++) {
			rec(f, rev, "c", nkeys, klen);
			ctx_event *e = test_next_event(w);
			assert_true(intact(e, rev, "c", nkeys, klen));
			ctx_event_free(e);
			feed_stats st = feed_stats_of(f);
			assert_true(st.history_bytes <= st.history_bytes_limit);
			assert_int_equal(st.history_bytes, st.history_events * one);
		}
		feed_stats st = feed_stats_of(f);
		assert_int_equal(st.history_events, 10);
		assert_int_equal(st.history_bytes, 10 * one);
		assert_int_equal(st.oldest, 491);
		ctx_watch_close(w);
		feed_close(f);
	}
}

/* ---- reuse ---------------------------------------------------------------------- */

/* A history of 16 revisions, 2,996 small and medium events: the records of
 * evicted events are built into again and again while the watcher reads
 * every event intact and in order; events the caller holds (every 100th,
 * freed only at the end) keep their bytes while thousands of records are
 * reused around them. */
static void test_reuse_keeps_events_intact(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 16}, &f));
	ctx_watch *w = NULL;
	assert_ok(feed_watch_open(f, "", true, 0, &w));
	ctx_event *held[40];
	size_t nheld = 0;
	for (uint64_t rev = 1; rev <= 2996; rev++) {
		size_t nkeys = rev % 3, klen = rev % 5 + 1;
		rec(f, rev, rev % 2 ? "a" : "bb", nkeys, klen);
		if (rev % 7)
			continue; /* read in sevens: some read after later reports */
		for (uint64_t r = rev - 6; r <= rev; r++) {
			ctx_event *e = test_next_event(w);
			assert_true(intact(e, r, r % 2 ? "a" : "bb", r % 3, r % 5 + 1));
			if (r % 100 == 0)
				held[nheld++] = e;
			else
				ctx_event_free(e);
		}
	}
	test_expect_no_event(w);
	feed_record_info ri = records();
	assert_true(ri.small_spares <= ri.small_spares_max);
	assert_true(ri.small_spares + ri.large_spares > 0); /* records were kept to reuse */
	for (size_t i = 0; i < nheld; i++) {
		uint64_t r = held[i]->revision;
		assert_int_equal(r, (i + 1) * 100);
		assert_true(intact(held[i], r, r % 2 ? "a" : "bb", r % 3, r % 5 + 1));
		ctx_event_free(held[i]);
	}
	ctx_watch_close(w);
	feed_close(f);
}

/* Events larger than the largest record (keys of 300 and 1000 bytes) keep
 * their own allocation, interleaved with small ones reusing records. */
static void test_large_events_intact(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 8}, &f));
	ctx_watch *w = NULL;
	assert_ok(feed_watch_open(f, "c", false, 0, &w));
	for (uint64_t rev = 1; rev <= 600; rev++) {
		size_t nkeys = rev % 3 == 0 ? 3 : 1, klen = rev % 3 == 0   ? 1000
		                                            : rev % 3 == 1 ? 300
		                                                           : 2;
		rec(f, rev, "c", nkeys, klen);
		ctx_event *e = test_next_event(w);
		assert_true(intact(e, rev, "c", nkeys, klen));
		ctx_event_free(e);
	}
	ctx_watch_close(w);
	feed_close(f);
}

/* ---- closing with records in flight ------------------------------------------- */

/* Watchers close with events in their batch (taken out of the log, not yet
 * handed out) and with events handed out and not yet freed; the log then
 * evicts everything and reuses the records. The events handed out stay
 * intact, and freeing them after the close (and after the feed went on)
 * is fine. */
static void test_close_with_records_in_flight(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 32}, &f));
	ctx_watch *keep = NULL;
	assert_ok(feed_watch_open(f, "", true, 0, &keep)); /* keeps the log recording */
	ctx_event *out[8][3];
	for (int round = 0; round < 8; round++) {
		ctx_watch *w = NULL;
		assert_ok(feed_watch_open(f, "", true, 0, &w));
		uint64_t base = feed_stats_of(f).frontier;
		for (uint64_t rev = base + 1; rev <= base + 20; rev++)
			rec(f, rev, "c", 1, 3);
		for (int i = 0; i < 3; i++) { /* the rest stay in w's batch */
			out[round][i] = test_next_event(w);
			assert_true(intact(out[round][i], base + 1 + (uint64_t)i, "c", 1, 3));
		}
		ctx_watch_close(w);
		while (true) { /* the keeper drains (so nothing lags) */
			ctx_event *e = NULL;
			if (ctx_watch_next(keep, &e) != CTX_OK)
				break;
			ctx_event_free(e);
		}
	}
	uint64_t base = feed_stats_of(f).frontier;
	for (uint64_t rev = base + 1; rev <= base + 200; rev++) /* evict and reuse all */
		rec(f, rev, "c", 1, 3);
	for (int round = 0; round < 8; round++)
		for (int i = 0; i < 3; i++) {
			uint64_t r = out[round][i]->revision;
			assert_true(intact(out[round][i], r, "c", 1, 3));
			ctx_event_free(out[round][i]);
		}
	ctx_watch_close(keep);
	feed_close(f);
}

/* ---- many threads ------------------------------------------------------------- */

#define WRITERS  4
#define WATCHERS 4
#define HISTORY  1024

typedef struct run run;
static run *watchers_of_run; /* WATCHERS of them, for the writers' flow control */
static long slowest_watcher(void);

struct run {
	ctx_store *s;
	int id;
	long commits;
	uint64_t v0; /* the context's version before the writer starts */
	atomic_int *writers_left;
	atomic_long *committed; /* by all writers */
	atomic_long events;
	ctx_watch *w;
	uint64_t v0s[WRITERS]; /* a watcher's: each context's version at the start */
};

/* The events read by the watcher furthest behind. */
static long slowest_watcher(void)
{
	long least = LONG_MAX;
	for (int i = 0; i < WATCHERS; i++) {
		long n = atomic_load(&watchers_of_run[i].events);
		least = n < least ? n : least;
	}
	return least;
}

/* Each commit puts one key "k<version>" on the writer's context, so an
 * event names its own key. */
static void *writer_main(void *arg)
{
	run *r = arg;
	char id[16];
	snprintf(id, sizeof(id), "m/%d", r->id);
	for (long i = 0; i < r->commits; i++) {
		while (atomic_load(r->committed) - slowest_watcher() > HISTORY / 4)
			sched_yield(); /* no watcher may fall out of the history */
		/* One writer a context, from version v0: this commit makes
		 * version v0 + i + 1, which its key names. */
		char key[32];
		snprintf(key, sizeof(key), "k%" PRIu64, r->v0 + (uint64_t)i + 1);
		uint64_t v = 0;
		if (ctx_put(r->s, id, key, strlen(key), "v", 1, &v) != CTX_OK ||
		    v != r->v0 + (uint64_t)i + 1) {
			t_fail(__LINE__, "put", i);
			break;
		}
		atomic_fetch_add(r->committed, 1);
	}
	atomic_fetch_sub(r->writers_left, 1);
	return NULL;
}

/* Reads everything; checks revisions rise, each context's versions go up
 * by one, and each event's key names its version. */
static void *watcher_main(void *arg)
{
	run *r = arg;
	uint64_t last_rev = 0, last_version[WRITERS];
	for (int i = 0; i < WRITERS; i++)
		last_version[i] = r->v0s[i];
	for (;;) {
		bool done = atomic_load(r->writers_left) == 0;
		ctx_event *e = NULL;
		ctx_status st = ctx_watch_wait(r->w, done ? 0 : 50, &e);
		if (st != CTX_OK) {
			if (done)
				break;
			continue;
		}
		if (e->kind != CTX_EVENT_COMMITTED) {
			t_fail(__LINE__, "event kind", e->kind);
			ctx_event_free(e);
			break;
		}
		int c = e->id[2] - '0';
		char want[32];
		snprintf(want, sizeof(want), "k%" PRIu64, e->version);
		if (e->revision <= last_rev)
			t_fail(__LINE__, "revision order", (long long)e->revision);
		if (c < 0 || c >= WRITERS || e->version != last_version[c] + 1)
			t_fail(__LINE__, "version of its context", (long long)e->version);
		else
			last_version[c] = e->version;
		if (e->nkeys != 1 || e->klens[0] != strlen(want) ||
		    memcmp(e->keys[0], want, e->klens[0]) != 0)
			t_fail(__LINE__, "key of the event", (long long)e->revision);
		last_rev = e->revision;
		ctx_event_free(e);
		atomic_fetch_add(&r->events, 1);
	}
	return NULL;
}

/* 4 writers on their own contexts and 4 watchers of all of them, with a
 * history (1,024 revisions) far shorter than the run: records go round
 * between the writers' spares all the time. Every watcher gets every
 * revision, in order, intact (a large watch_queue, and the writers wait
 * while a watcher is a quarter of the history behind: none lags). */
static void test_many_threads(void **unused)
{
	reset_failures();
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1;
	o.durability = CTX_DURABILITY_NONE;
	o.watch_history = HISTORY;
	o.watch_queue = 1u << 20;
	ctx_store *s = test_open(&o);
	for (int i = 0; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "m/%d", i);
		assert_ok(ctx_create(s, id));
	}
	long commits = test_iters(5000, 500);
	atomic_int writers_left = WRITERS;
	atomic_long committed = 0;
	run ws[WRITERS], rs[WATCHERS];
	pthread_t wt[WRITERS], rt[WATCHERS];
	watchers_of_run = rs;
	for (int i = 0; i < WATCHERS; i++) {
		rs[i] = (run){.s = s, .id = i, .writers_left = &writers_left};
		for (int c = 0; c < WRITERS; c++) {
			char id[16];
			snprintf(id, sizeof(id), "m/%d", c);
			rs[i].v0s[c] = test_version_of(s, id);
		}
		assert_ok(ctx_watch_open(s, "m/", true, 0, &rs[i].w));
		assert_int_equal(pthread_create(&rt[i], NULL, watcher_main, &rs[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "m/%d", i);
		ws[i] = (run){.s = s,
		              .id = i,
		              .commits = commits,
		              .v0 = test_version_of(s, id),
		              .writers_left = &writers_left,
		              .committed = &committed};
		assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &ws[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < WATCHERS; i++) {
		pthread_join(rt[i], NULL);
		assert_int_equal(atomic_load(&rs[i].events), WRITERS * commits);
		ctx_watch_close(rs[i].w);
	}
	assert_no_thread_failures();
	feed_record_info ri = records();
	assert_true(ri.small_spares <= ri.small_spares_max);
	assert_true(ri.large_spares <= ri.large_spares_max);
	ctx_close(s);
}

/* ---- the bound on spares ------------------------------------------------------- */

/* One thread releases 5,000 records (a watcher's caller freeing events it
 * held, the log evicting the rest): it keeps at most 128 small spares, and
 * builds its next events in them. */
static void test_spares_bounded(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 8192}, &f));
	ctx_watch *w = NULL;
	assert_ok(feed_watch_open(f, "c", false, 0, &w));
	static ctx_event *held[5000];
	for (uint64_t rev = 1; rev <= 5000; rev++) {
		rec(f, rev, "c", 1, 2);
		held[rev - 1] = test_next_event(w);
	}
	ctx_watch_close(w); /* the log lets go of every event: the caller's are last */
	for (int i = 0; i < 5000; i++) {
		assert_true(intact(held[i], (uint64_t)i + 1, "c", 1, 2));
		ctx_event_free(held[i]);
		feed_record_info ri = records();
		assert_true(ri.small_spares <= ri.small_spares_max);
	}
	feed_record_info ri = records();
	assert_int_equal(ri.small_spares, ri.small_spares_max);
	assert_int_equal(ri.small_spares_max, 128);
	/* The next events come out of the spares. */
	assert_ok(feed_watch_open(f, "c", false, 0, &w));
	size_t spares = records().small_spares;
	for (uint64_t rev = 5001; rev <= 5050; rev++)
		rec(f, rev, "c", 1, 2);
	assert_int_equal(records().small_spares, spares - 50);
	for (uint64_t rev = 5001; rev <= 5050; rev++) {
		ctx_event *e = test_next_event(w);
		assert_true(intact(e, rev, "c", 1, 2));
		ctx_event_free(e);
	}
	ctx_watch_close(w);
	feed_close(f);
}

typedef struct held {
	ctx_event **events;
	int n;
	size_t spares; /* the thread's small spares once it freed them */
} held;

static void *free_held(void *arg)
{
	held *h = arg;
	for (int i = 0; i < h->n; i++)
		ctx_event_free(h->events[i]);
	h->spares = records().small_spares;
	return NULL;
}

/* A thread that frees the last references to 100 events keeps them as
 * spares (up to its bound), and frees them when it exits. */
static void test_spares_freed_at_thread_exit(void **unused)
{
	feed *f = NULL;
	assert_ok(feed_open(1, &(feed_config){.history = 256}, &f));
	ctx_watch *w = NULL;
	assert_ok(feed_watch_open(f, "c", false, 0, &w));
	ctx_event *events[100];
	for (uint64_t rev = 1; rev <= 100; rev++) {
		rec(f, rev, "c", 1, 2);
		events[rev - 1] = test_next_event(w);
	}
	ctx_watch_close(w); /* the log lets go of them: the thread's frees are last */
	size_t before = records().freed_at_exit;
	held h = {events, 100, 0};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, free_held, &h), 0);
	pthread_join(t, NULL);
	assert_int_equal(h.spares, 100);
	assert_int_equal(records().freed_at_exit - before, 100);
	feed_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counted_at_record_size),
	    cmocka_unit_test(test_reuse_keeps_events_intact),
	    cmocka_unit_test(test_large_events_intact),
	    cmocka_unit_test(test_close_with_records_in_flight),
	    cmocka_unit_test(test_many_threads),
	    cmocka_unit_test(test_spares_bounded),
	    cmocka_unit_test(test_spares_freed_at_thread_exit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
