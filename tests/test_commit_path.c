/*
 * test_commit_path.c - what the in-memory commit path of round 6 keeps
 * (docs/benchmarks.md, "Round 6: the in-memory update path").
 *
 * - The store's revision counter, which every commit of a memory-only store
 *   takes with a locked add, lies alone on its cache line: nothing every
 *   commit reads (the log and feed pointers, the context table) is fetched
 *   again after another thread's commit.
 * - A commit notes its time as the context's last access without a
 *   compare-and-swap when the context has no time-to-live (expiry.c,
 *   context_note_commit): the time is still exact, never goes back, and a
 *   time-to-live set, cleared and set again still counts from the right
 *   access.
 * - The history chain, whose links context_push_head now writes with plain
 *   stores under the write lock, holds exactly history_depth versions with
 *   the right revisions, also while other threads commit and walk it.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define T0 1700000000000000ull /* µs since 1970 */

static _Atomic uint64_t fake_now = T0;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load(&fake_now);
}

static ctx_store *open_fake(size_t history_depth)
{
	ctx_options o;
	ctx_options_init(&o);
	o.clock_us = fake_clock;
	o.reaper_ms = 3600000u; /* the reaper runs only when woken */
	o.history_depth = history_depth;
	return test_open(&o);
}

static uint64_t last_access(ctx_store *s, const char *id)
{
	ctx_context_status *v = NULL;
	size_t n = 0;
	assert_ok(ctx_status_view(s, &v, &n));
	uint64_t t = UINT64_MAX;
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].id, id) == 0)
			t = v[i].last_access_us;
	free(v);
	if (t == UINT64_MAX)
		fail_msg("'%s' is not in the status view", id);
	return t;
}

static void put(ctx_store *s, const char *id, const char *key)
{
	assert_ok(ctx_put(s, id, key, strlen(key), "v", 1, NULL));
}

static void test_revision_has_its_own_line(void **unused)
{
	(void)unused;
	size_t rev = offsetof(ctx_store, revision);
	/* The field before it and the fields after it are a line away. */
	assert_true(rev - offsetof(ctx_store, live) >= 64);
	assert_true(offsetof(ctx_store, log) - rev >= 64);
	assert_true(offsetof(ctx_store, feed) - rev >= 64);
	assert_true(offsetof(ctx_store, table) + 64 <= rev);
}

static void test_commit_notes_exact_time(void **unused)
{
	(void)unused;
	atomic_store(&fake_now, T0);
	ctx_store *s = open_fake(0);
	assert_ok(ctx_create(s, "c"));
	assert_int_equal(last_access(s, "c"), T0);

	/* No time-to-live: every commit's own time, to the microsecond. */
	atomic_store(&fake_now, T0 + 7);
	put(s, "c", "a");
	assert_int_equal(last_access(s, "c"), T0 + 7);
	atomic_store(&fake_now, T0 + 8);
	put(s, "c", "b");
	assert_int_equal(last_access(s, "c"), T0 + 8);

	/* A clock that went back does not move the last access back. */
	atomic_store(&fake_now, T0 + 3);
	put(s, "c", "c");
	assert_int_equal(last_access(s, "c"), T0 + 8);

	/* With a time-to-live (the compare-and-swap path): the same. */
	atomic_store(&fake_now, T0 + 1000);
	assert_ok(ctx_set_ttl(s, "c", 5000));
	assert_int_equal(last_access(s, "c"), T0 + 1000);
	atomic_store(&fake_now, T0 + 1500);
	put(s, "c", "d");
	assert_int_equal(last_access(s, "c"), T0 + 1500);
	atomic_store(&fake_now, T0 + 1200);
	put(s, "c", "e");
	assert_int_equal(last_access(s, "c"), T0 + 1500);

	/* Cleared, then commits without one, then set again: it counts from
	 * the setting, and a commit after it refreshes it. */
	atomic_store(&fake_now, T0 + 2000);
	assert_ok(ctx_set_ttl(s, "c", 0));
	atomic_store(&fake_now, T0 + 2100);
	put(s, "c", "f");
	assert_int_equal(last_access(s, "c"), T0 + 2100);
	atomic_store(&fake_now, T0 + 10 * 1000000ull);
	assert_ok(ctx_set_ttl(s, "c", 1000)); /* 1 s */
	assert_int_equal(last_access(s, "c"), T0 + 10 * 1000000ull);
	atomic_store(&fake_now, T0 + 10 * 1000000ull + 900000);
	assert_int_equal(ctx_expire_now(s), 0);
	put(s, "c", "g");
	atomic_store(&fake_now, T0 + 11 * 1000000ull + 800000);
	assert_int_equal(ctx_expire_now(s), 0); /* idle 0.9 s of 1 */
	atomic_store(&fake_now, T0 + 12 * 1000000ull);
	assert_int_equal(ctx_expire_now(s), 1);
	ctx_close(s);
}

/* ---- the history chain under concurrent commits and walks ---------------- */

#define DEPTH    8
#define WRITERS  2
#define COMMITS  3000
#define CONTEXTS 2

typedef struct walk_arg {
	ctx_store *s;
	atomic_bool *stop;
	int failures;
} walk_arg;

static void *writer(void *p)
{
	walk_arg *a = p;
	char key[32];
	for (int i = 0; i < COMMITS; i++) {
		snprintf(key, sizeof(key), "k%d", i % 50);
		if (ctx_put(a->s, i % CONTEXTS ? "h1" : "h0", key, strlen(key), "v", 1, NULL) !=
		    CTX_OK)
			a->failures++;
	}
	return NULL;
}

/* Walk the history of both contexts (oldest first): versions ascending by
 * one, revisions ascending, never more than history_depth of them. */
static int check_history(ctx_store *s, const char *id, size_t *n_out, ctx_history_entry *newest)
{
	ctx_history_entry *h = NULL;
	size_t n = 0;
	if (ctx_history(s, id, &h, &n) != CTX_OK)
		return 1;
	int bad = n == 0 || n > DEPTH;
	for (size_t i = 1; i < n; i++)
		if (h[i].version != h[i - 1].version + 1 || h[i].revision <= h[i - 1].revision)
			bad = 1;
	if (n_out)
		*n_out = n;
	if (newest && n)
		*newest = h[n - 1];
	free(h);
	return bad;
}

static void *walker(void *p)
{
	walk_arg *a = p;
	while (!atomic_load(a->stop))
		for (int c = 0; c < CONTEXTS; c++)
			a->failures += check_history(a->s, c ? "h1" : "h0", NULL, NULL);
	return NULL;
}

static void test_history_chain_concurrent(void **unused)
{
	(void)unused;
	ctx_store *s = open_fake(DEPTH);
	assert_ok(ctx_create(s, "h0"));
	assert_ok(ctx_create(s, "h1"));
	atomic_bool stop = false;
	walk_arg w[WRITERS], r = {s, &stop, 0};
	pthread_t wt[WRITERS], rt;
	assert_int_equal(pthread_create(&rt, NULL, walker, &r), 0);
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (walk_arg){s, &stop, 0};
		assert_int_equal(pthread_create(&wt[i], NULL, writer, &w[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	atomic_store(&stop, true);
	pthread_join(rt, NULL);
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(w[i].failures, 0);
	assert_int_equal(r.failures, 0);

	/* Quiet now: exactly DEPTH versions each, the newest at 1 + its share
	 * of the commits; revisions are one store-wide sequence. */
	uint64_t newest_rev = 0;
	for (int c = 0; c < CONTEXTS; c++) {
		size_t n = 0;
		ctx_history_entry newest = {0};
		assert_int_equal(check_history(s, c ? "h1" : "h0", &n, &newest), 0);
		assert_int_equal(n, DEPTH);
		assert_int_equal(newest.version, 1 + WRITERS * COMMITS / CONTEXTS);
		if (newest.revision > newest_rev)
			newest_rev = newest.revision;
	}
	/* 2 creates and every commit took one revision each. */
	assert_int_equal(newest_rev, 2 + WRITERS * COMMITS);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_revision_has_its_own_line),
	    cmocka_unit_test(test_commit_notes_exact_time),
	    cmocka_unit_test(test_history_chain_concurrent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
