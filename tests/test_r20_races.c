/*
 * test_r20_races.c - round 20's audit of objects reached without a lock
 * (r20-races, docs/benchmarks.md): the uses it found unprotected, each
 * raced here by threads that replace and free the object while another
 * thread reaches it.
 *
 * 1. A restore picks its target under the context's write lock, but took
 *    its reference to it only after the unlock (for the diff computed with
 *    no lock held). Meanwhile a commit may cut the target from history, or
 *    a point delete unpin it, and its last reference go: the restore then
 *    raised a count of zero (a version already on its way to be freed; its
 *    trie freed at once), diffed freed nodes and released it a second time.
 *    The race is likely: the restorer's unlock wakes a committer waiting
 *    for the lock (a futex call), which commits and cuts while the
 *    restorer is still in that call. Restorers here aim at the oldest
 *    version kept (history_depth 2) and at a point that a third thread
 *    moves on, while writers commit one-key changes (light: the cut
 *    version's trie is freed by the committer at once). The sanitizer
 *    builds see the freed trie read; every build checks each restore's
 *    outcome and the store after the run.
 *
 * 2. A guarded commit that lost (its expected version is the visible one,
 *    but a newer version waits for its sync) read the visible version's
 *    number outside any read-side section: that version may have left
 *    history (history_depth 1) and be held only by `visible`, which a
 *    publish (no write lock) replaces and then frees it after a grace
 *    period. Raced here by guarded writers on one context of a store that
 *    waits for syncs; the window is a few instructions, so this part is a
 *    check that the path works (every commit OK or CONFLICT, the versions
 *    dense) more than a likely reproduction.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- 1: restores while their targets are cut and unpinned --------------------- */

#define WRITERS 3

static ctx_store *g_store;
static atomic_bool g_stop;
static atomic_long g_restored, g_missed;

static void *cut_writer(void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg * 1000003u;
	while (!atomic_load(&g_stop)) {
		char v[24];
		int n = snprintf(v, sizeof v, "w%u", i++);
		T_CHECK_STATUS(ctx_put(g_store, "c", "k", 1, v, (size_t)n, NULL), CTX_OK);
	}
	return NULL;
}

/* Pins the head, then unpins the point before it: the point set changes
 * all the time, and an unpinned version that left history loses its last
 * reference. */
static void *point_mover(void *arg)
{
	(void)arg;
	uint64_t last = 0;
	while (!atomic_load(&g_stop)) {
		uint64_t v = 0;
		T_CHECK_STATUS(ctx_point_create(g_store, "c", "p", &v), CTX_OK);
		if (last && last != v) {
			ctx_status st = ctx_point_delete(g_store, "c", last);
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
		}
		last = v;
	}
	return NULL;
}

static void *restorer(void *arg)
{
	bool by_point = arg != NULL;
	long rounds = test_iters(3000, 300);
	for (long i = 0; i < rounds; i++) {
		uint64_t nv = 0;
		ctx_status st;
		if (by_point) {
			st = ctx_restore_latest(g_store, "c", &nv);
		} else {
			ctx_state *cur;
			T_CHECK_STATUS(ctx_get(g_store, "c", &cur), CTX_OK);
			uint64_t head = ctx_state_version(cur);
			ctx_state_release(cur);
			/* The oldest version history_depth 2 keeps: the next
			 * commit cuts it. */
			st = ctx_restore(g_store, "c", head - 1, &nv);
		}
		T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
		if (st == CTX_OK) {
			T_CHECK(nv > 1);
			atomic_fetch_add(&g_restored, 1);
		} else {
			atomic_fetch_add(&g_missed, 1);
		}
	}
	return NULL;
}

static void test_restore_while_target_goes(void **state)
{
	(void)state;
	reset_failures();
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 2;
	o.max_points = 2;
	assert_ok(ctx_open(&o, &g_store));
	assert_ok(ctx_create(g_store, "c"));
	assert_ok(ctx_put(g_store, "c", "k", 1, "v0", 2, NULL));
	atomic_store(&g_stop, false);
	pthread_t w[WRITERS], pm, r[2];
	for (uintptr_t i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&w[i], NULL, cut_writer, (void *)i), 0);
	assert_int_equal(pthread_create(&pm, NULL, point_mover, NULL), 0);
	for (uintptr_t i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&r[i], NULL, restorer, (void *)i), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	atomic_store(&g_stop, true);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	pthread_join(pm, NULL);
	assert_no_thread_failures();
	assert_true(atomic_load(&g_restored) + atomic_load(&g_missed) > 0);

	/* The store is whole: the head reads back, every kept version and
	 * point is readable, and a restore of the oldest kept one works. */
	ctx_state *head;
	assert_ok(ctx_get(g_store, "c", &head));
	uint64_t hv = ctx_state_version(head);
	assert_int_equal(ctx_state_count(head), 1);
	ctx_state_release(head);
	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_ok(ctx_history(g_store, "c", &h, &n));
	assert_true(n >= 1 && n <= o.history_depth + 1 + o.max_points);
	for (size_t i = 0; i < n; i++) {
		ctx_state *v;
		assert_ok(ctx_get_at(g_store, "c", h[i].version, &v));
		assert_int_equal(ctx_state_version(v), h[i].version);
		assert_int_equal(ctx_state_count(v), 1);
		ctx_state_release(v);
	}
	uint64_t nv = 0;
	assert_ok(ctx_restore(g_store, "c", h[0].version, &nv));
	assert_int_equal(nv, hv + 1);
	free(h);
	ctx_close(g_store);
}

/* ---- 2: guarded commits behind the visible version ------------------------------ */

#define GUARDED 4

static atomic_long g_commits, g_conflicts;

static void *guarded_writer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	long rounds = test_iters(150, 40);
	for (long i = 0; i < rounds; i++) {
		ctx_state *cur;
		T_CHECK_STATUS(ctx_get(g_store, "g", &cur), CTX_OK);
		uint64_t seen = ctx_state_version(cur);
		ctx_state_release(cur);
		ctx_txn *t;
		T_CHECK_STATUS(ctx_txn_begin(g_store, "g", &t), CTX_OK);
		char v[24];
		int n = snprintf(v, sizeof v, "%u.%ld", id, i);
		T_CHECK_STATUS(ctx_txn_put(t, "k", 1, v, (size_t)n), CTX_OK);
		uint64_t made = 0;
		ctx_status st = ctx_txn_commit(t, seen, &made); /* frees t */
		T_CHECK(st == CTX_OK || st == CTX_CONFLICT);
		if (st == CTX_OK) {
			T_CHECK(made == seen + 1);
			atomic_fetch_add(&g_commits, 1);
		} else {
			atomic_fetch_add(&g_conflicts, 1);
		}
	}
	return NULL;
}

static void test_guarded_commit_behind_visible(void **state)
{
	(void)state;
	reset_failures();
	char *dir = test_make_dir("r20_races");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = 1;
	assert_ok(ctx_open(&o, &g_store));
	assert_ok(ctx_create(g_store, "g"));
	pthread_t w[GUARDED];
	for (uintptr_t i = 0; i < GUARDED; i++)
		assert_int_equal(pthread_create(&w[i], NULL, guarded_writer, (void *)i), 0);
	for (int i = 0; i < GUARDED; i++)
		pthread_join(w[i], NULL);
	assert_no_thread_failures();
	long commits = atomic_load(&g_commits);
	assert_true(commits > 0);
	/* Every successful commit made exactly one version. */
	ctx_state *cur;
	assert_ok(ctx_get(g_store, "g", &cur));
	assert_int_equal(ctx_state_version(cur), (uint64_t)commits + 1);
	ctx_state_release(cur);
	ctx_close(g_store);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_restore_while_target_goes),
	    cmocka_unit_test(test_guarded_commit_behind_visible),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
