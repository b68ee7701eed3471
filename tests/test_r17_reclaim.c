/*
 * test_r17_reclaim.c - writers at their release bound while a reader holds
 * a grace period (round 17, reclaim.c's reclaimer).
 *
 * A thread whose release batch reaches STATE_HOLD_MAX while its tick is in
 * flight hands it to the reclaimer's grace period and goes on, instead of
 * waiting for a grace period itself (state.c, BOUND). One reader holds a
 * read-side section (a ctx_get_each callback that blocks: a reader preempted
 * for a long time) while writers commit more versions than a thread held
 * before it had to wait (32 + STATE_HOLD_MAX), but fewer than the three
 * batches it may hold now:
 * - no writer waits at its bound (state_bound_waits stays 0; with the
 *   hand-over disabled - reclaim_grace_request returning 0 - every writer
 *   waits and the test fails);
 * - a writer never holds more than its bound (state_thread_held);
 * - the writers exit with batches handed over while the reader still holds
 *   its section, and nothing it read is freed (its values are compared
 *   inside the section, after the writers are gone: ASan reports a use
 *   after free);
 * - every commit is there afterwards, and nothing leaks once the store is
 *   closed (LeakSanitizer).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reclaim.h"
#include "testutil.h"

#define KEYS    16
#define WRITERS 6
/* Releases a writer makes: past 32 + 512 (the old bound), below 32 + 2 *
 * 512 (the open batch reaching the bound a second time, its handed one
 * still waiting): with history 64, COMMITS - 64 of them. */
#define COMMITS 1000

static ctx_store *store;
static atomic_int phase; /* 1: the reader is in its section; 2: leave it */
static atomic_int writers_done;

typedef struct seen {
	const void *val[KEYS];
	char copy[KEYS][32];
	size_t len[KEYS];
	int n;
} seen;

static seen held_seen;

static bool hold_pair(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	seen *w = arg;
	(void)key;
	(void)klen;
	if (w->n < KEYS && vlen < sizeof(w->copy[0])) {
		w->val[w->n] = val;
		w->len[w->n] = vlen;
		memcpy(w->copy[w->n], val, vlen);
		w->n++;
	}
	if (w->n == 1) { /* hold the section until the writers are gone */
		atomic_store(&phase, 1);
		while (atomic_load(&phase) != 2)
			usleep(1000);
	}
	/* Still inside the section: what it saw is intact. */
	for (int i = 0; i < w->n; i++)
		T_CHECK(memcmp(w->val[i], w->copy[i], w->len[i]) == 0);
	return true;
}

static void *reader_main(void *unused)
{
	(void)unused;
	T_CHECK_STATUS(ctx_get_each(store, "shared", hold_pair, &held_seen), CTX_OK);
	return NULL;
}

/* Writer 0 rewrites the context the reader reads (its versions' tries wait
 * for the reader's section); the others their own. */
static void *writer_main(void *arg)
{
	int idx = (int)(intptr_t)arg;
	char id[16];
	snprintf(id, sizeof(id), "w%d", idx);
	if (idx == 0)
		strcpy(id, "shared");
	size_t most = 0;
	for (int i = 0; i < COMMITS; i++) {
		char key[8], val[32];
		int kn = snprintf(key, sizeof(key), "k%d", i % KEYS);
		int vn = snprintf(val, sizeof(val), "value-%d", i);
		T_CHECK_STATUS(ctx_put(store, id, key, (size_t)kn, val, (size_t)vn, NULL), CTX_OK);
		size_t held = state_thread_held();
		if (held > most)
			most = held;
	}
	T_CHECK(most <= state_thread_held_max());
	/* it held more than a thread could before it had to wait */
	T_CHECK(most > 32 + 512);
	atomic_fetch_add(&writers_done, 1);
	return NULL;
}

static void test_writers_pass_the_bound_while_a_reader_holds(void **unused)
{
	(void)unused;
	reset_failures();
	store = test_open_memory();
	assert_ok(ctx_create(store, "shared"));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(store, "shared", &t));
	for (int i = 0; i < KEYS; i++) {
		char key[8], val[32];
		int kn = snprintf(key, sizeof(key), "k%d", i);
		int vn = snprintf(val, sizeof(val), "first-%d", i);
		assert_ok(ctx_txn_put(t, key, (size_t)kn, val, (size_t)vn));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
	for (int i = 1; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w%d", i);
		assert_ok(ctx_create(store, id));
	}
	size_t waits = state_bound_waits();
	pthread_t reader, w[WRITERS];
	atomic_store(&phase, 0);
	atomic_store(&writers_done, 0);
	assert_int_equal(pthread_create(&reader, NULL, reader_main, NULL), 0);
	while (atomic_load(&phase) != 1)
		usleep(1000);
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&w[i], NULL, writer_main, (void *)(intptr_t)i), 0);
	/* Until every writer finished or waits at its bound (which, with the
	 * reader holding, lasts until it leaves). */
	while ((size_t)atomic_load(&writers_done) + (state_bound_waits() - waits) < WRITERS)
		usleep(1000);
	size_t waited = state_bound_waits() - waits;
	if (waited == 0) /* the writers exit, their batches handed over */
		for (int i = 0; i < WRITERS; i++)
			pthread_join(w[i], NULL);
	atomic_store(&phase, 2); /* the reader checks its values, then leaves */
	pthread_join(reader, NULL);
	if (waited != 0)
		for (int i = 0; i < WRITERS; i++)
			pthread_join(w[i], NULL);
	assert_int_equal(waited, 0);
	assert_no_thread_failures();
	assert_int_equal(held_seen.n, KEYS);

	for (int i = 0; i < WRITERS; i++) {
		char id[16], want[32], got[32];
		snprintf(id, sizeof(id), "w%d", i);
		if (i == 0)
			strcpy(id, "shared");
		for (int k = 0; k < KEYS; k++) {
			char key[8];
			int kn = snprintf(key, sizeof(key), "k%d", k);
			int last = (COMMITS - 1 - k) / KEYS * KEYS + k; /* its last commit */
			int wn = snprintf(want, sizeof(want), "value-%d", last);
			size_t gn = 0;
			assert_ok(ctx_get_value(store, id, key, (size_t)kn, got, sizeof(got), &gn));
			assert_int_equal(gn, (size_t)wn);
			assert_memory_equal(got, want, gn);
		}
		ctx_state *st;
		assert_ok(ctx_get_latest(store, id, &st));
		assert_int_equal(ctx_state_version(st), i == 0 ? 2 + COMMITS : 1 + COMMITS);
		ctx_state_release(st);
	}
	ctx_close(store);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_writers_pass_the_bound_while_a_reader_holds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
