/*
 * test_r18_combine.c - many threads committing to one context (round 18,
 * docs/benchmarks.md "Round 18: ... (r18-combine)").
 *
 * The commit contract of include/ctx.h under contention on one context's
 * write lock, the case a combining or hand-off change of that lock would
 * touch: every acknowledged commit is one version of its own (the versions
 * the committers are told are distinct and, with the create's 1, exactly
 * 1..N), its revision grows with its version, no unguarded update is lost,
 * and a guarded commit fails with CTX_CONFLICT exactly when its expected
 * version is stale (then nothing changed; else it made expected + 1).
 *
 * More threads than CPUs, and both commit paths: ctx_put (its lookup without
 * a reference, and the fallback that takes one when the write lock is held)
 * and transactions. Worker threads count failures (T_CHECK); the main thread
 * asserts. No timing is asserted.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 16
#define CTX_ID  "hot"

typedef struct shared {
	ctx_store *s;
	long iters;       /* commits per thread */
	bool guarded_odd; /* odd threads commit guarded read-modify-writes */
	/* Per thread: the versions its acknowledged commits were given. */
	uint64_t *versions[THREADS];
	long nversions[THREADS];
	atomic_long conflicts;
} shared;

typedef struct worker {
	pthread_t th;
	int id;
	shared *sh;
} worker;

static void note_version(shared *sh, int id, uint64_t v)
{
	sh->versions[id][sh->nversions[id]++] = v;
}

/* Unguarded: its own key set to its count, by ctx_put and by transactions
 * in turn. */
static void unguarded(shared *sh, int id)
{
	char key[16], val[32];
	snprintf(key, sizeof(key), "k%02d", id);
	for (long i = 1; i <= sh->iters; i++) {
		uint64_t v = 0;
		snprintf(val, sizeof(val), "%ld", i);
		if (i % 2) {
			T_CHECK_STATUS(
			    ctx_put(sh->s, CTX_ID, key, strlen(key), val, strlen(val), &v), CTX_OK);
		} else {
			ctx_txn *t = NULL;
			T_CHECK_STATUS(ctx_txn_begin(sh->s, CTX_ID, &t), CTX_OK);
			if (!t)
				return;
			T_CHECK_STATUS(ctx_txn_put(t, key, strlen(key), val, strlen(val)), CTX_OK);
			T_CHECK_STATUS(ctx_txn_commit(t, 0, &v), CTX_OK);
		}
		T_CHECK(v >= 2);
		note_version(sh, id, v);
	}
}

/* Guarded: read the newest version, add 1 to the shared counter, commit
 * expecting that version. A conflict must mean the version was stale. */
static void guarded(shared *sh, int id)
{
	for (long done = 0; done < sh->iters;) {
		ctx_state *st = NULL;
		T_CHECK_STATUS(ctx_get_latest(sh->s, CTX_ID, &st), CTX_OK);
		if (!st)
			return;
		uint64_t seen = ctx_state_version(st);
		const void *val;
		size_t vlen;
		long n = 0;
		if (ctx_state_lookup(st, "count", 5, &val, &vlen)) {
			char buf[32] = {0};
			memcpy(buf, val, vlen < sizeof(buf) - 1 ? vlen : sizeof(buf) - 1);
			n = strtol(buf, NULL, 10);
		}
		ctx_state_release(st);
		char out[32];
		snprintf(out, sizeof(out), "%ld", n + 1);
		ctx_txn *t = NULL;
		T_CHECK_STATUS(ctx_txn_begin(sh->s, CTX_ID, &t), CTX_OK);
		if (!t)
			return;
		T_CHECK_STATUS(ctx_txn_put(t, "count", 5, out, strlen(out)), CTX_OK);
		uint64_t v = 0;
		ctx_status rc = ctx_txn_commit(t, seen, &v);
		if (rc == CTX_OK) {
			T_CHECK(v == seen + 1);
			note_version(sh, id, v);
			done++;
		} else {
			T_CHECK_STATUS(rc, CTX_CONFLICT);
			/* Stale: a newer version exists now. */
			ctx_state *now = NULL;
			T_CHECK_STATUS(ctx_get_latest(sh->s, CTX_ID, &now), CTX_OK);
			T_CHECK(ctx_state_version(now) > seen);
			ctx_state_release(now);
			atomic_fetch_add(&sh->conflicts, 1);
		}
	}
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	if (w->sh->guarded_odd && w->id % 2)
		guarded(w->sh, w->id);
	else
		unguarded(w->sh, w->id);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Run THREADS workers on one fresh context of a memory store whose history
 * keeps every version, then check the whole contract. */
static void run(bool guarded_odd)
{
	ctx_options o;
	ctx_options_init(&o);
	shared sh = {.iters = test_iters(2000, 100), .guarded_odd = guarded_odd};
	long total = sh.iters * THREADS;
	o.history_depth = (size_t)total + 1;
	assert_ok(ctx_open(&o, &sh.s));
	assert_ok(ctx_create(sh.s, CTX_ID));
	for (int i = 0; i < THREADS; i++) {
		sh.versions[i] = calloc((size_t)sh.iters, sizeof(uint64_t));
		assert_non_null(sh.versions[i]);
	}
	reset_failures();
	worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (worker){.id = i, .sh = &sh};
		assert_int_equal(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(w[i].th, NULL), 0);
	assert_no_thread_failures();

	/* Every acknowledged commit made one version: 2..total + 1, each once. */
	uint64_t *all = malloc((size_t)total * sizeof(*all));
	assert_non_null(all);
	long n = 0;
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(sh.nversions[i], sh.iters);
		/* One thread's commits are ordered: its versions grow. */
		for (long j = 1; j < sh.nversions[i]; j++)
			assert_true(sh.versions[i][j] > sh.versions[i][j - 1]);
		memcpy(all + n, sh.versions[i], (size_t)sh.nversions[i] * sizeof(*all));
		n += sh.nversions[i];
	}
	qsort(all, (size_t)n, sizeof(*all), cmp_u64);
	for (long i = 0; i < n; i++)
		assert_int_equal(all[i], (uint64_t)i + 2);

	/* The newest version is the last one, with every update in it. */
	ctx_state *st = NULL;
	assert_ok(ctx_get_latest(sh.s, CTX_ID, &st));
	assert_int_equal(ctx_state_version(st), (uint64_t)total + 1);
	for (int i = 0; i < THREADS; i++) {
		const void *val;
		size_t vlen;
		char want[32], key[16];
		if (guarded_odd && i % 2)
			continue;
		snprintf(key, sizeof(key), "k%02d", i);
		snprintf(want, sizeof(want), "%ld", sh.iters);
		assert_true(ctx_state_lookup(st, key, strlen(key), &val, &vlen));
		assert_int_equal(vlen, strlen(want));
		assert_memory_equal(val, want, vlen);
	}
	if (guarded_odd) {
		const void *val;
		size_t vlen;
		char want[32];
		snprintf(want, sizeof(want), "%ld", sh.iters * (THREADS / 2));
		assert_true(ctx_state_lookup(st, "count", 5, &val, &vlen));
		assert_int_equal(vlen, strlen(want));
		assert_memory_equal(val, want, vlen);
	}
	ctx_state_release(st);

	/* Revisions follow versions: the kept history, oldest first. */
	ctx_history_entry *h = NULL;
	size_t count = 0;
	assert_ok(ctx_history(sh.s, CTX_ID, &h, &count));
	assert_int_equal(count, (size_t)total + 1);
	for (size_t i = 0; i < count; i++) {
		assert_int_equal(h[i].version, (uint64_t)i + 1);
		if (i)
			assert_true(h[i].revision > h[i - 1].revision);
	}
	free(h);
	free(all);
	for (int i = 0; i < THREADS; i++)
		free(sh.versions[i]);
	ctx_close(sh.s);
}

static void test_unguarded_commits_one_version_each(void **unused)
{
	(void)unused;
	run(false);
}

static void test_guarded_and_unguarded_on_one_context(void **unused)
{
	(void)unused;
	run(true);
}

/* The version check itself, one thread: the current version commits, a
 * stale or a future one is CTX_CONFLICT and changes nothing. */
static void test_expected_exactly(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, CTX_ID));
	uint64_t v = 0;
	assert_ok(ctx_put(s, CTX_ID, "a", 1, "1", 1, &v));
	assert_int_equal(v, 2);
	uint64_t tries[] = {1, 3, 100};
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(s, CTX_ID, &t));
		assert_ok(ctx_txn_put(t, "a", 1, "x", 1));
		uint64_t out = 0;
		assert_int_equal(ctx_txn_commit(t, tries[i], &out), CTX_CONFLICT);
	}
	ctx_state *st = NULL;
	assert_ok(ctx_get_latest(s, CTX_ID, &st));
	assert_int_equal(ctx_state_version(st), 2);
	ctx_state_release(st);
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin(s, CTX_ID, &t));
	assert_ok(ctx_txn_put(t, "a", 1, "y", 1));
	assert_ok(ctx_txn_commit(t, 2, &v));
	assert_int_equal(v, 3);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_expected_exactly),
	    cmocka_unit_test(test_unguarded_commits_one_version_each),
	    cmocka_unit_test(test_guarded_and_unguarded_on_one_context),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
