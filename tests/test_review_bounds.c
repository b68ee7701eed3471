/*
 * test_review_bounds.c - review probe (round 7): what the store keeps for
 * somebody who does not consume is bounded in bytes, and what it then
 * delivers is still exact.
 *
 *   - a watch nobody reads, while commits with large keys go by: the heap
 *     grows by about watch_history_bytes, not by what was committed (the
 *     events copy the keys); read afterwards, it delivers events in
 *     revision order, each once, then CTX_EVENT_LAGGED at the first
 *     revision it lost, then nothing;
 *   - the same with a watch that read one event and stopped (it holds the
 *     events it took out of the log: at most what the log held);
 *   - nowait commits nobody asks about (no ctx_durable_revision, no
 *     notifier): the store does not keep them pending;
 *   - sessions never closed and trackers never synced over contexts that
 *     are dropped: the store's heap goes back once they are closed.
 * The heap is read with mallinfo2 (glibc); ASan's allocator does not report
 * it, so there the byte checks are vacuous and only the delivery checks
 * run. No timing is asserted.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "testutil.h"

#define KEYS_PER_COMMIT 8
#define KEY_BYTES       (32u << 10)
#define COMMITS         240 /* 240 * 256 KiB of keys = 60 MiB of events if kept */
#define HISTORY_BYTES   (4u << 20)

static size_t heap_now(void)
{
	malloc_trim(0);
	return mallinfo2().uordblks;
}

static ctx_store *open_small(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = 2;
	o.watch_history_bytes = HISTORY_BYTES;
	o.max_key_size = KEY_BYTES;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	return s;
}

/* One commit changing KEYS_PER_COMMIT keys of KEY_BYTES bytes each (the
 * same keys every time, so the context itself does not grow). */
static uint64_t commit_big(ctx_store *s, char *key, int n)
{
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "big", &t));
	char val[16];
	int vl = snprintf(val, sizeof val, "%d", n);
	for (int k = 0; k < KEYS_PER_COMMIT; k++) {
		key[0] = (char)('a' + k);
		assert_ok(ctx_txn_put(t, key, KEY_BYTES, val, (size_t)vl));
	}
	uint64_t v;
	assert_ok(ctx_txn_commit(t, 0, &v));
	return v;
}

/* Read w to its end: strictly increasing revisions, COMMITTED only, then
 * one LAGGED (if lag_expected) and nothing after it. */
static void read_to_end(ctx_watch *w, uint64_t first_rev, uint64_t last_rev, bool lag_expected,
                        size_t *delivered)
{
	uint64_t prev = first_rev - 1;
	bool lagged = false;
	ctx_event *e;
	size_t n = 0;
	while (ctx_watch_next(w, &e) == CTX_OK) {
		assert_false(lagged); /* nothing after LAGGED */
		if (e->kind == CTX_EVENT_LAGGED) {
			lagged = true;
			/* the first revision it lost: after what it delivered */
			assert_true(e->resume_from > prev);
			assert_true(e->resume_from <= last_rev);
		} else {
			assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
			assert_true(e->revision > prev); /* order, once each */
			assert_true(e->revision <= last_rev);
			assert_int_equal(e->nkeys, KEYS_PER_COMMIT);
			assert_int_equal(e->klens[0], KEY_BYTES);
			prev = e->revision;
			n++;
		}
		ctx_event_free(e);
	}
	assert_int_equal(lagged, lag_expected);
	*delivered = n;
}

static void unread_watch(bool read_one)
{
	char *dir = test_make_dir(read_one ? "review_bounds_one" : "review_bounds_none");
	ctx_store *s = open_small(dir);
	assert_ok(ctx_create(s, "big"));
	char *key = malloc(KEY_BYTES);
	assert_non_null(key);
	memset(key, 'k', KEY_BYTES);
	commit_big(s, key, 0);
	size_t before = heap_now();
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, "big", false, 0, &w));
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	uint64_t first_rev = stats.revision + 1;
	size_t peak = 0;
	for (int i = 1; i <= COMMITS; i++) {
		commit_big(s, key, i);
		if (read_one && i == 12) {
			/* take one event: the watch now holds a batch out of the log */
			ctx_event *e;
			assert_ok(ctx_watch_next(w, &e));
			assert_int_equal(e->revision, first_rev);
			ctx_event_free(e);
			first_rev++;
		}
		if (i % 40 == 0) {
			size_t h = heap_now();
			peak = h > peak ? h : peak;
		}
	}
	ctx_get_stats(s, &stats);
	size_t grown = peak > before ? peak - before : 0;
	print_message("%s: heap grew %zu KiB at most over %d commits of %u KiB of keys "
	              "(watch_history_bytes %u KiB)\n",
	              read_one ? "watch read once" : "watch never read", grown >> 10, COMMITS,
	              (KEYS_PER_COMMIT * KEY_BYTES) >> 10, HISTORY_BYTES >> 10);
	/* The log of events (<= HISTORY_BYTES), the batch a reader took out of
	 * it (<= what the log held), the context's kept versions and whatever
	 * the reclaimer has still to free: far below the 60 MiB committed. */
	size_t limit = (read_one ? 2 : 1) * (size_t)HISTORY_BYTES + (12u << 20);
	if (before) /* 0 under ASan: no figure */
		assert_true(grown < limit);
	size_t delivered;
	read_to_end(w, first_rev, stats.revision, true, &delivered);
	assert_true(delivered < COMMITS);
	ctx_watch_close(w);
	ctx_close(s);
	free(key);
	test_remove_dir(dir);
	free(dir);
}

static void test_unread_watch_bounded(void **state)
{
	(void)state;
	unread_watch(false);
}

static void test_watch_read_once_bounded(void **state)
{
	(void)state;
	unread_watch(true);
}

/* Nowait commits nobody asks about: each is finished by the log's flusher
 * on its own; after ctx_close nothing of them is left, and the durable
 * revision had reached every one before (checked once at the end). */
static void test_nowait_unasked(void **state)
{
	(void)state;
	char *dir = test_make_dir("review_bounds_nowait");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "n"));
	uint64_t last_rev = 0, last_v = 0;
	long iters = test_iters(20000, 2000);
	for (long i = 0; i < iters; i++) {
		ctx_txn *t;
		assert_ok(ctx_txn_begin(s, "n", &t));
		assert_ok(ctx_txn_put(t, "k", 1, &i, sizeof i));
		assert_ok(ctx_txn_commit_nowait(t, 0, &last_v, &last_rev));
	}
	/* a waiting commit after them: durable, so all before it are */
	uint64_t v;
	assert_ok(ctx_put(s, "n", "k", 1, "end", 3, &v));
	assert_int_equal(v, last_v + 1);
	uint64_t d;
	assert_ok(ctx_durable_revision(s, &d));
	assert_true(d > last_rev);
	ctx_state *st;
	assert_ok(ctx_get(s, "n", &st));
	assert_int_equal(ctx_state_version(st), v);
	ctx_state_release(st);
	ctx_close(s);
	/* all of it is on disk */
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_get(s, "n", &st));
	assert_int_equal(ctx_state_version(st), v);
	ctx_state_release(st);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Sessions and trackers left open over contexts that are dropped keep
 * what they hold and nothing more: their calls say CTX_NOT_FOUND (the
 * context was dropped), and closing them gives the memory back. */
static void test_sessions_trackers_left_open(void **state)
{
	(void)state;
	size_t before = heap_now();
	ctx_store *s = test_open_memory();
	enum { N = 200 };
	ctx_session *se[N];
	ctx_tracker *tr[N];
	char val[4096];
	memset(val, 'v', sizeof val);
	for (int i = 0; i < N; i++) {
		char id[16];
		snprintf(id, sizeof id, "s%d", i);
		assert_ok(ctx_session_open(s, &se[i]));
		assert_ok(ctx_session_activate(se[i], id, true));
		assert_ok(ctx_put(s, id, "k", 1, val, sizeof val, NULL));
		assert_ok(ctx_tracker_open(s, id, NULL, &tr[i]));
		assert_ok(ctx_tracker_put(tr[i], "local", 5, val, sizeof val));
		assert_ok(ctx_drop(s, id));
		assert_ok(ctx_create(s, id)); /* another context, same id */
	}
	for (int i = 0; i < N; i++) {
		ctx_state *st;
		/* the session names the id: it sees the new, empty context */
		assert_ok(ctx_session_get(se[i], &st));
		assert_int_equal(ctx_state_version(st), 1);
		assert_int_equal(ctx_state_count(st), 0);
		ctx_state_release(st);
		/* the tracker was on the dropped one: never on the new one */
		assert_int_equal(ctx_tracker_put(tr[i], "x", 1, "y", 1), CTX_NOT_FOUND);
		assert_int_equal(ctx_tracker_refresh(tr[i]), CTX_NOT_FOUND);
		assert_int_equal(ctx_tracker_sync(tr[i], NULL), CTX_NOT_FOUND);
		char id[16];
		snprintf(id, sizeof id, "s%d", i);
		assert_ok(ctx_get(s, id, &st));
		assert_int_equal(ctx_state_count(st), 0); /* nothing written to it */
		assert_int_equal(ctx_state_version(st), 1);
		ctx_state_release(st);
	}
	for (int i = 0; i < N; i++) {
		ctx_tracker_close(tr[i]);
		ctx_session_close(se[i]);
	}
	ctx_close(s);
	size_t after = heap_now();
	if (before)
		assert_true(after < before + (1u << 20)); /* N * 8 KiB held before */
}

int main(void)
{
	pool_use_slabs(false); /* mallinfo2 counts malloc's blocks only (pool.c) */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unread_watch_bounded),
	    cmocka_unit_test(test_watch_read_once_bounded),
	    cmocka_unit_test(test_nowait_unasked),
	    cmocka_unit_test(test_sessions_trackers_left_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
