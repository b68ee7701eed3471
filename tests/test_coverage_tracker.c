/*
 * test_coverage_tracker.c - tracker error paths and corners (ctx_tracker_*),
 * and a few argument checks of states, transactions and the status view.
 *
 *   - the edit table reuses the slots of edits a refresh dropped, and the
 *     working copy stays exact;
 *   - a sync that keeps losing its commit to another writer (here: the
 *     merge function itself commits each time) backs off and gives up
 *     with CTX_CONFLICT after its attempts, keeping the edits; it succeeds
 *     once the other writer stops;
 *   - the context dropped from inside the merge function, before and after
 *     the sync began its transaction: CTX_NOT_FOUND, nothing committed;
 *   - a merge function answering with a NULL value of non-zero length:
 *     CTX_INVALID, nothing committed;
 *   - a refresh started while a sync runs waits for it;
 *   - a key edited again while a manual sync runs: its conflict is not
 *     listed (the new edit supersedes what the sync saw);
 *   - a conflict resolved while a manual sync runs (the sync reads that
 *     edit: the resolution goes to a copy): the sync still sees the old
 *     conflict, the resolution holds for the next sync;
 *   - the status view and checkpoints while contexts are created
 *     concurrently: complete, sorted, never a context half-made;
 *   - NULL and bad arguments of lookups and create transactions.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool tracker_has(ctx_tracker *t, const char *k, const char *v)
{
	void *got = NULL;
	size_t gl = 0;
	if (ctx_tracker_get(t, k, strlen(k), &got, &gl) != CTX_OK)
		return v == NULL;
	bool r = v && gl == strlen(v) && memcmp(got, v, gl) == 0;
	free(got);
	return r;
}

/* ---- the edit table ------------------------------------------------------------ */

static void test_edit_slots_reused(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "t"));
	char k[16];
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof(k), "k%02d", i);
		test_put_str(s, "t", k, "base");
	}
	for (int round = 0; round < 30; round++) {
		ctx_tracker *t;
		assert_ok(ctx_tracker_open(s, "t", NULL, &t));
		/* Ten real edits, ten that change nothing (a refresh drops those
		 * and leaves their slots behind). */
		for (int i = 0; i < 20; i++) {
			snprintf(k, sizeof(k), "k%02d", i);
			assert_ok(ctx_tracker_put(t, k, strlen(k), i < 10 ? "new" : "base",
			                          i < 10 ? 3 : 4));
		}
		assert_int_equal(ctx_tracker_pending(t), 20);
		assert_ok(ctx_tracker_refresh(t));
		assert_int_equal(ctx_tracker_pending(t), 10);
		/* New keys land in those slots or in free ones. */
		for (int i = 0; i < 6; i++) {
			snprintf(k, sizeof(k), "n%d-%02d", round, i);
			assert_ok(ctx_tracker_put(t, k, strlen(k), "n", 1));
		}
		assert_int_equal(ctx_tracker_pending(t), 16);
		for (int i = 0; i < 20; i++) {
			snprintf(k, sizeof(k), "k%02d", i);
			assert_true(tracker_has(t, k, i < 10 ? "new" : "base"));
		}
		for (int i = 0; i < 6; i++) {
			snprintf(k, sizeof(k), "n%d-%02d", round, i);
			assert_true(tracker_has(t, k, "n"));
		}
		ctx_tracker_close(t);
	}
	ctx_close(s);
}

/* ---- syncs that cannot finish -------------------------------------------------- */

typedef struct interfere {
	ctx_store *s;
	const char *id;
	int calls;
	int mode;      /* 0: commit each time, 1: drop at call drop_at, 2: NULL value */
	int drop_at;
	bool stop;     /* mode 0: stop interfering */
} interfere;

static ctx_status interfering_merge(void *arg, const ctx_conflict *c, ctx_merge_value *out)
{
	interfere *x = arg;
	int call = x->calls++;
	*out = c->local;
	if (x->mode == 0 && !x->stop) {
		char v[32];
		snprintf(v, sizeof(v), "remote-%d", call);
		/* Another writer gets in first, every time. */
		if (ctx_put(x->s, x->id, c->key, c->klen, v, strlen(v), NULL) != CTX_OK)
			return CTX_IO;
	} else if (x->mode == 1 && call == x->drop_at) {
		if (ctx_drop(x->s, x->id) != CTX_OK)
			return CTX_IO;
	} else if (x->mode == 2) {
		out->present = true;
		out->value = NULL;
		out->len = 5;
	}
	return CTX_OK;
}

static ctx_tracker *open_with_conflict(ctx_store *s, interfere *x, int keys)
{
	ctx_tracker_options o = {.strategy = CTX_MERGE_FUNCTION,
	                         .merge = interfering_merge,
	                         .merge_arg = x};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, x->id, &o, &t));
	char k[16];
	for (int i = 0; i < keys; i++) {
		snprintf(k, sizeof(k), "c%d", i);
		assert_ok(ctx_tracker_put(t, k, strlen(k), "local", 5));
		test_put_str(s, x->id, k, "remote");
	}
	return t;
}

static void test_sync_gives_up(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "t"));
	test_put_str(s, "t", "c0", "base");
	interfere x = {s, "t", 0, 0, 0, false};
	ctx_tracker *t = open_with_conflict(s, &x, 1);
	uint64_t base = ctx_tracker_base_version(t);
	double t0 = test_now();
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	double took = test_now() - t0;
	assert_non_null(strstr(ctx_last_error(), "gave up"));
	/* Each attempt asked the merge function once and lost. */
	assert_true(x.calls >= 100);
	assert_int_equal(test_version_of(s, "t"), base + 1 + (uint64_t)x.calls);
	assert_true(test_has_str(s, "t", "c0", "remote-999") || x.calls != 1000);
	/* It backed off: the later attempts slept. */
	assert_true(took > 0.2);
	/* Nothing of the tracker's was lost or committed. */
	assert_int_equal(ctx_tracker_pending(t), 1);
	assert_true(tracker_has(t, "c0", "local"));
	assert_int_equal(ctx_tracker_base_version(t), base);
	/* Without the interference it goes through. */
	x.stop = true;
	uint64_t v;
	assert_ok(ctx_tracker_sync(t, &v));
	assert_int_equal(v, test_version_of(s, "t"));
	assert_true(test_has_str(s, "t", "c0", "local"));
	assert_int_equal(ctx_tracker_pending(t), 0);
	ctx_tracker_close(t);
	ctx_close(s);
}

static void test_dropped_inside_merge(void **unused)
{
	for (int keys = 1; keys <= 2; keys++) {
		ctx_store *s = test_open_memory();
		assert_ok(ctx_create(s, "t"));
		/* One conflicting key: dropped before the sync's transaction
		 * exists; two: after its first write went into it. */
		interfere x = {s, "t", 0, 1, keys - 1, false};
		ctx_tracker *t = open_with_conflict(s, &x, keys);
		assert_int_equal(ctx_tracker_sync(t, NULL), CTX_NOT_FOUND);
		assert_int_equal(x.calls, keys);
		ctx_state *st;
		assert_int_equal(ctx_get(s, "t", &st), CTX_NOT_FOUND);
		assert_true(ctx_tracker_is_stale(t));
		assert_int_equal(ctx_tracker_pending(t), (size_t)keys);
		assert_int_equal(ctx_tracker_sync(t, NULL), CTX_NOT_FOUND);
		assert_int_equal(ctx_tracker_refresh(t), CTX_NOT_FOUND);
		assert_int_equal(ctx_tracker_put(t, "x", 1, "y", 1), CTX_NOT_FOUND);
		/* A new context of the same name is not the tracked one. */
		assert_ok(ctx_create(s, "t"));
		assert_int_equal(ctx_tracker_sync(t, NULL), CTX_NOT_FOUND);
		assert_int_equal(test_version_of(s, "t"), 1);
		ctx_tracker_close(t);
		ctx_close(s);
	}
}

static void test_merge_gives_null_value(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "t"));
	interfere x = {s, "t", 0, 2, 0, false};
	ctx_tracker *t = open_with_conflict(s, &x, 1);
	uint64_t v = test_version_of(s, "t");
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_INVALID);
	assert_non_null(strstr(ctx_last_error(), "NULL value"));
	assert_int_equal(test_version_of(s, "t"), v);
	assert_int_equal(ctx_tracker_pending(t), 1);
	ctx_tracker_close(t);
	ctx_close(s);
}

/* ---- a refresh waits for a running sync ------------------------------------------- */

typedef struct slow {
	atomic_int in_merge;
	atomic_bool release;
	double released_at;
	double refreshed_at;
	ctx_status refresh_status;
	ctx_tracker *t;
} slow;

static ctx_status slow_merge(void *arg, const ctx_conflict *c, ctx_merge_value *out)
{
	slow *w = arg;
	atomic_store(&w->in_merge, 1);
	double until = test_now() + 60;
	while (!atomic_load(&w->release) && test_now() < until)
		usleep(1000);
	*out = c->local;
	return CTX_OK;
}

static void *syncer(void *p)
{
	slow *w = p;
	if (ctx_tracker_sync(w->t, NULL) != CTX_OK)
		atomic_store(&w->in_merge, -1);
	return NULL;
}

static void *refresher(void *p)
{
	slow *w = p;
	w->refresh_status = ctx_tracker_refresh(w->t);
	w->refreshed_at = test_now();
	return NULL;
}

static void test_refresh_waits_for_sync(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "t"));
	test_put_str(s, "t", "k", "base");
	slow w = {0};
	ctx_tracker_options o = {.strategy = CTX_MERGE_FUNCTION, .merge = slow_merge,
	                         .merge_arg = &w};
	assert_ok(ctx_tracker_open(s, "t", &o, &w.t));
	assert_ok(ctx_tracker_put(w.t, "k", 1, "local", 5));
	test_put_str(s, "t", "k", "remote");
	pthread_t a, b;
	assert_int_equal(pthread_create(&a, NULL, syncer, &w), 0);
	while (atomic_load(&w.in_merge) == 0)
		usleep(1000);
	assert_int_equal(atomic_load(&w.in_merge), 1);
	assert_int_equal(pthread_create(&b, NULL, refresher, &w), 0);
	usleep(50000);
	w.released_at = test_now();
	atomic_store(&w.release, true);
	assert_int_equal(pthread_join(a, NULL), 0);
	assert_int_equal(pthread_join(b, NULL), 0);
	assert_int_equal(atomic_load(&w.in_merge), 1); /* the sync succeeded */
	assert_ok(w.refresh_status);
	assert_true(w.refreshed_at >= w.released_at);
	assert_true(test_has_str(s, "t", "k", "local"));
	assert_int_equal(ctx_tracker_pending(w.t), 0);
	ctx_tracker_close(w.t);
	ctx_close(s);
}

/* ---- an edit made while a manual sync runs ----------------------------------------- */

/* The store's clock is called while the sync reads the context (which has
 * a time-to-live): the hook edits the tracker right then, as another
 * thread could. */
static struct {
	pthread_t main;
	ctx_tracker *t;
	bool resolve; /* resolve c1 (take the current value) instead of editing it */
	atomic_bool armed;
	atomic_int fired;
} hook;

static uint64_t hooked_clock(void *arg)
{
	if (pthread_equal(pthread_self(), hook.main) && atomic_exchange(&hook.armed, false)) {
		atomic_fetch_add(&hook.fired, 1);
		ctx_status st = hook.resolve ? ctx_tracker_resolve(hook.t, "c1", 2, false)
		                             : ctx_tracker_put(hook.t, "c1", 2, "edited again", 12);
		if (st != CTX_OK)
			atomic_fetch_add(&hook.fired, 100);
	}
	return test_wall_us();
}

/* A store on the hooked clock with context t (a ttl of an hour) and a manual
 * tracker on it whose keys c0 to c<n-1> conflict: "local" in the tracker,
 * "remote" in the store. */
static ctx_tracker *open_conflicting(ctx_store **s, int n)
{
	ctx_options opts;
	ctx_options_init(&opts);
	opts.clock_us = hooked_clock;
	*s = NULL;
	assert_ok(ctx_open(&opts, s));
	assert_ok(ctx_create(*s, "t"));
	assert_ok(ctx_set_ttl(*s, "t", 3600 * 1000));
	ctx_tracker_options o = {.strategy = CTX_MERGE_MANUAL};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(*s, "t", &o, &t));
	for (int i = 0; i < n; i++) {
		char k[8];
		snprintf(k, sizeof(k), "c%d", i);
		assert_ok(ctx_tracker_put(t, k, strlen(k), "local", 5));
		test_put_str(*s, "t", k, "remote");
	}
	return t;
}

static void test_edit_during_manual_sync(void **unused)
{
	hook.main = pthread_self(); /* before the store's threads start */
	ctx_store *s;
	ctx_tracker *t = open_conflicting(&s, 3);
	hook.t = t;
	atomic_store(&hook.armed, true);
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	assert_int_equal(atomic_load(&hook.fired), 1);
	const ctx_conflict *c;
	size_t n = ctx_tracker_conflicts(t, &c);
	/* c1 was edited after the sync took its snapshot: not a conflict of
	 * the new edit's. */
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_false(c[i].klen == 2 && memcmp(c[i].key, "c1", 2) == 0);
	assert_true(tracker_has(t, "c1", "edited again"));
	/* Resolving the others and syncing again: c1 conflicts again (it was
	 * made on the old base), the rest are settled. */
	assert_ok(ctx_tracker_resolve(t, "c0", 2, true));
	assert_ok(ctx_tracker_resolve(t, "c2", 2, false));
	ctx_status st = ctx_tracker_sync(t, NULL);
	assert_int_equal(st, CTX_CONFLICT);
	n = ctx_tracker_conflicts(t, &c);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].klen, 2);
	assert_memory_equal(c[0].key, "c1", 2);
	assert_ok(ctx_tracker_resolve(t, "c1", 2, true));
	assert_ok(ctx_tracker_sync(t, NULL));
	assert_true(test_has_str(s, "t", "c0", "local"));
	assert_true(test_has_str(s, "t", "c1", "edited again"));
	assert_true(test_has_str(s, "t", "c2", "remote"));
	ctx_tracker_close(t);
	ctx_close(s);
}

static void test_resolve_during_manual_sync(void **unused)
{
	hook.main = pthread_self();
	ctx_store *s;
	ctx_tracker *t = open_conflicting(&s, 2);
	assert_ok(ctx_tracker_put(t, "only-local", 10, "x", 1));
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	assert_int_equal(ctx_tracker_conflicts(t, NULL), 2);
	uint64_t before = test_version_of(s, "t");
	/* The next sync snapshots c1 still in conflict; c1 is resolved while
	 * the sync runs, so that sync fails on it, but lists nothing: the
	 * resolution is newer than what it saw. */
	hook.t = t;
	hook.resolve = true;
	atomic_store(&hook.fired, 0);
	atomic_store(&hook.armed, true);
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	assert_int_equal(atomic_load(&hook.fired), 1);
	assert_int_equal(test_version_of(s, "t"), before);
	assert_int_equal(ctx_tracker_conflicts(t, NULL), 1); /* c0 */
	assert_true(tracker_has(t, "c1", "remote"));
	assert_int_equal(ctx_tracker_pending(t), 3);
	assert_ok(ctx_tracker_resolve(t, "c0", 2, true));
	assert_ok(ctx_tracker_sync(t, NULL));
	assert_int_equal(ctx_tracker_pending(t), 0);
	assert_true(test_has_str(s, "t", "c0", "local"));
	assert_true(test_has_str(s, "t", "c1", "remote"));
	assert_true(test_has_str(s, "t", "only-local", "x"));
	hook.resolve = false;
	ctx_tracker_close(t);
	ctx_close(s);
}

/* ---- the table walked while contexts are created -------------------------------- */

typedef struct creator {
	ctx_store *s;
	atomic_bool stop;
	atomic_int made;
	atomic_int failures;
} creator;

static void *create_many(void *p)
{
	creator *c = p;
	char id[32];
	for (int i = 0; !atomic_load(&c->stop) && i < 50000; i++) {
		snprintf(id, sizeof(id), "new-%06d", i);
		if (ctx_create(c->s, id) != CTX_OK)
			atomic_fetch_add(&c->failures, 1);
		else
			atomic_fetch_add(&c->made, 1);
	}
	return NULL;
}

static void check_view(ctx_store *s, size_t at_least)
{
	ctx_context_status *v;
	size_t n;
	assert_ok(ctx_status_view(s, &v, &n));
	assert_true(n >= at_least);
	for (size_t i = 0; i < n; i++) {
		assert_true(v[i].version >= 1);
		if (i)
			assert_true(strcmp(v[i - 1].id, v[i].id) < 0);
	}
	free(v);
}

static void test_views_while_creating(void **unused)
{
	for (int durable = 0; durable < 2; durable++) {
		char *dir = durable ? test_make_dir("covtrk-views") : NULL;
		ctx_options o;
		ctx_options_init(&o);
		o.dir = dir;
		ctx_store *s = NULL;
		assert_ok(ctx_open(&o, &s));
		char id[32];
		size_t base = durable ? 200 : 3000;
		for (size_t i = 0; i < base; i++) {
			snprintf(id, sizeof(id), "old-%06zu", i);
			assert_ok(ctx_create(s, id));
		}
		creator c = {s, false, 0, 0};
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, create_many, &c), 0);
		double until = test_now() + (durable ? 0.5 : 0.3);
		int views = 0;
		/* (at least one view, however long this thread was off the CPU) */
		while (views == 0 || test_now() < until) {
			check_view(s, base);
			if (durable && views % 8 == 0)
				assert_ok(ctx_checkpoint(s));
			views++;
		}
		atomic_store(&c.stop, true);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(atomic_load(&c.failures), 0);
		assert_true(views > 0);
		check_view(s, base + (size_t)atomic_load(&c.made));
		assert_int_equal(ctx_count(s), base + (size_t)atomic_load(&c.made));
		if (durable)
			test_reopen_same(&s, &o, false, "after checkpoints taken while creating");
		ctx_close(s);
		if (dir) {
			test_remove_dir(dir);
			free(dir);
		}
	}
}

/* ---- arguments ------------------------------------------------------------------- */

static void test_bad_arguments(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "v");
	ctx_state *st;
	assert_ok(ctx_get(s, "a", &st));
	/* A NULL key with a length finds nothing (and reads nothing). */
	assert_false(ctx_state_lookup(st, NULL, 3, NULL, NULL));
	assert_false(ctx_state_meta(st, NULL, 1, NULL, NULL));
	uint64_t when = 77;
	assert_false(ctx_state_key_time(st, NULL, 2, &when));
	assert_false(ctx_state_key_time(NULL, "k", 1, &when));
	assert_int_equal(when, 77);
	assert_true(ctx_state_key_time(st, "k", 1, &when));
	assert_true(when != 77);
	ctx_state_release(st);
	/* Create transactions check the id and the output first. */
	ctx_txn *t = NULL;
	assert_int_equal(ctx_txn_begin_create(s, "", &t), CTX_INVALID);
	assert_int_equal(ctx_txn_begin_create(s, "bad\nid", &t), CTX_INVALID);
	assert_int_equal(ctx_txn_begin_create(NULL, "x", &t), CTX_INVALID);
	assert_int_equal(ctx_txn_begin_create(s, "x", NULL), CTX_INVALID);
	assert_null(t);
	/* A create transaction's commit takes no expected version. */
	assert_ok(ctx_txn_begin_create(s, "x", &t));
	assert_int_equal(ctx_txn_commit(t, 1, NULL), CTX_INVALID);
	assert_int_equal(ctx_get(s, "x", &st), CTX_NOT_FOUND);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_edit_slots_reused),
	        cmocka_unit_test(test_sync_gives_up),
	        cmocka_unit_test(test_dropped_inside_merge),
	        cmocka_unit_test(test_merge_gives_null_value),
	        cmocka_unit_test(test_refresh_waits_for_sync),
	        cmocka_unit_test(test_edit_during_manual_sync),
	        cmocka_unit_test(test_resolve_during_manual_sync),
	        cmocka_unit_test(test_views_while_creating),
	        cmocka_unit_test(test_bad_arguments),
	};
	if (getenv("CTX_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
