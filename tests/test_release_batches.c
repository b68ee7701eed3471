/*
 * test_release_batches.c - the batches of released version structs a thread
 * holds for a grace period (state.c: BOUND, ARRAYS).
 *
 * A thread that releases versions keeps their structs in its home's arrays
 * until a grace period has passed. What must hold however slow grace periods
 * are: a thread never holds more than 2 * STATE_HOLD_MAX of them (past
 * that it waits for a grace period itself, or, inside a read-side critical
 * section where it must not wait, hands them to the worker); ctx_close
 * leaves the closing thread holding none; a thread that exits with full
 * batches loses none (ASan's leak check) and frees none twice; versions
 * others hold stay intact while their neighbours' structs are recycled. No
 * assertion depends on timing: stalled grace periods only make the bound's
 * paths more likely.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#include "reclaim.h"
#include "store.h"

#define CONTEXTS 4
#define HELD_MAX (2 * STATE_HOLD_MAX)

static atomic_int writers_done;

/* Enter read-side critical sections of about a millisecond, back to back,
 * until the writers are done: grace periods then last that long at least,
 * and the writers' batches grow. */
static void *staller(void *arg)
{
	(void)arg;
	struct timespec ms = {0, 1000000};
	while (!atomic_load(&writers_done)) {
		ctx_rcu_read_lock();
		nanosleep(&ms, NULL);
		ctx_rcu_read_unlock();
	}
	return NULL;
}

typedef struct writer {
	ctx_store *s;
	int n;
	long commits;
	size_t most; /* the most states this thread held */
} writer;

static void *write_loop(void *arg)
{
	writer *w = arg;
	char id[16], val[32];
	for (long i = 0; i < w->commits; i++) {
		snprintf(id, sizeof(id), "c%ld", i % CONTEXTS);
		int len = snprintf(val, sizeof(val), "%d-%ld", w->n, i);
		T_CHECK_STATUS(ctx_put(w->s, id, "k", 1, val, (size_t)len, NULL), CTX_OK);
		size_t held = state_held();
		T_CHECK(held <= HELD_MAX);
		if (held > w->most)
			w->most = held;
	}
	return NULL; /* exits holding its batches: the destructor hands them on */
}

static ctx_store *open_store(unsigned history)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = history;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	char id[16];
	for (int c = 0; c < CONTEXTS; c++) {
		snprintf(id, sizeof(id), "c%d", c);
		assert_ok(ctx_create(s, id));
	}
	return s;
}

/* Writers cut a version per commit while a staller keeps grace periods
 * long; every thread stays within the bound after every commit, and every
 * acknowledged commit made a version (the last values read back). */
static void test_bound_while_grace_periods_stall(void **state)
{
	(void)state;
	ctx_store *s = open_store(1);
	reset_failures();
	enum { THREADS = 6 };
	long commits = test_iters(6000, 1200) / CONTEXTS * CONTEXTS;
	atomic_store(&writers_done, 0);
	pthread_t st, t[THREADS];
	writer w[THREADS];
	assert_int_equal(pthread_create(&st, NULL, staller, NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (writer){s, i, commits, 0};
		assert_int_equal(pthread_create(&t[i], NULL, write_loop, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	atomic_store(&writers_done, 1);
	pthread_join(st, NULL);
	assert_no_thread_failures();
	for (int c = 0; c < CONTEXTS; c++) {
		char id[16];
		snprintf(id, sizeof(id), "c%d", c);
		ctx_state *v;
		assert_ok(ctx_get(s, id, &v));
		assert_int_equal(ctx_state_version(v), 1 + (uint64_t)THREADS * (commits / CONTEXTS));
		ctx_state_release(v);
	}
	for (int i = 0; i < THREADS; i++)
		assert_true(w[i].most <= HELD_MAX);
	ctx_close(s);
	assert_int_equal(state_held(), 0);
}

/* Commits made inside a read-side critical section: no grace period can
 * end while it lasts, so the thread's batches fill; it must not wait for
 * one (a deadlock) and must not exceed the bound either: it hands its open
 * batch to the worker. After the section and ctx_close it holds none. */
static void test_commits_inside_a_read_section(void **state)
{
	(void)state;
	ctx_store *s = open_store(1);
	size_t deferred_before = state_deferred();
	long n = 3 * STATE_HOLD_MAX + 7;
	size_t most = 0;
	ctx_rcu_read_lock();
	for (long i = 0; i < n; i++) {
		char val[24];
		int len = snprintf(val, sizeof(val), "%ld", i);
		assert_ok(ctx_put(s, "c0", "k", 1, val, (size_t)len, NULL));
		size_t held = state_held();
		assert_true(held <= HELD_MAX);
		if (held > most)
			most = held;
	}
	/* Nothing could be freed meanwhile: what the thread does not hold
	 * went to the worker. */
	assert_true(most >= STATE_HOLD_MAX);
	assert_true(state_deferred() > deferred_before);
	ctx_rcu_read_unlock();
	ctx_state *v;
	assert_ok(ctx_get(s, "c0", &v));
	assert_int_equal(ctx_state_version(v), 1 + (uint64_t)n);
	const void *val;
	size_t vlen;
	char want[24];
	int len = snprintf(want, sizeof(want), "%ld", n - 1);
	assert_true(ctx_state_lookup(v, "k", 1, &val, &vlen));
	assert_int_equal(vlen, (size_t)len);
	assert_memory_equal(val, want, vlen);
	ctx_state_release(v);
	ctx_close(s);
	assert_int_equal(state_held(), 0);
}

/* A thread that released versions holds some until its next full batch;
 * ctx_close frees them (and a store opened after it starts from none).
 * Versions this thread holds meanwhile keep their values. */
static void test_close_leaves_none_held(void **state)
{
	(void)state;
	for (int round = 0; round < 3; round++) {
		ctx_store *s = open_store(1);
		enum { N = 100 };
		ctx_state *kept[4];
		for (int i = 0; i < N; i++) {
			char val[24];
			int len = snprintf(val, sizeof(val), "%d-%d", round, i);
			assert_ok(ctx_put(s, "c1", "k", 1, val, (size_t)len, NULL));
			if (i % 25 == 0)
				assert_ok(ctx_get(s, "c1", &kept[i / 25]));
		}
		/* N - 1 versions were cut (history 1), less the held ones:
		 * N - 1 is not a multiple of the batch size, so some wait. */
		assert_true(state_held() > 0);
		assert_true(state_held() <= HELD_MAX);
		for (int k = 0; k < 4; k++) {
			const void *val;
			size_t vlen;
			char want[24];
			int len = snprintf(want, sizeof(want), "%d-%d", round, k * 25);
			assert_int_equal(ctx_state_version(kept[k]), 2 + (uint64_t)k * 25);
			assert_true(ctx_state_lookup(kept[k], "k", 1, &val, &vlen));
			assert_int_equal(vlen, (size_t)len);
			assert_memory_equal(val, want, vlen);
			ctx_state_release(kept[k]);
		}
		ctx_close(s);
		assert_int_equal(state_held(), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bound_while_grace_periods_stall),
	    cmocka_unit_test(test_commits_inside_a_read_section),
	    cmocka_unit_test(test_close_leaves_none_held),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
