/*
 * test_write_lock.c - the contexts' write lock (a 4-byte futex word,
 * store.h) and the commit path's reference counting (txn.c, state.c).
 *
 * The lock: small, and it excludes: threads that find it held spin, then
 * sleep on the word, and every one of them gets it in turn. The commit
 * path: a new version takes over the context reference of the version it
 * cut from history when it took that version's last reference, and takes a
 * reference of its own when someone else still holds the cut version; at
 * any quiet moment a context's count is its table's reference, the callers'
 * and one per live version.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store.h"

static void test_lock_is_small(void **unused)
{
	(void)unused;
	assert_int_equal(sizeof(ctx_wlock), 4);
	if (sizeof(void *) != 8)
		skip();
	/* 208 bytes with a pthread_mutex_t (40 bytes) */
	assert_true(sizeof(ctx_context) <= 168);
}

#define LOCK_THREADS 8

typedef struct lock_shared {
	ctx_context *c;
	long iters;
	long counter; /* plain: only written under the lock */
	atomic_int inside;
	atomic_int sleepers_ready;
} lock_shared;

static void *lock_worker(void *arg)
{
	lock_shared *sh = arg;
	atomic_fetch_add(&sh->sleepers_ready, 1);
	for (long i = 0; i < sh->iters; i++) {
		context_lock(sh->c);
		if (atomic_fetch_add(&sh->inside, 1) != 0)
			t_fail(__LINE__, "two threads inside the write lock", 0);
		sh->counter++;
		if (i % 1000 == 0)
			usleep(50); /* a holder that sleeps: the others must sleep too */
		atomic_fetch_sub(&sh->inside, 1);
		context_unlock(sh->c);
	}
	return NULL;
}

/* Many threads on one lock, the holder now and then off the CPU: every
 * increment counted once (the futex path: spin, then sleep, then wake). */
static void test_lock_excludes(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	lock_shared sh = {.c = store_find_context(s, "c", 1), .iters = test_iters(20000, 2000)};
	assert_non_null(sh.c);
	atomic_init(&sh.inside, 0);
	atomic_init(&sh.sleepers_ready, 0);
	pthread_t th[LOCK_THREADS];
	/* Hold it while they start, so that they all queue on it at once. */
	context_lock(sh.c);
	for (int i = 0; i < LOCK_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, lock_worker, &sh), 0);
	while (atomic_load(&sh.sleepers_ready) < LOCK_THREADS)
		usleep(100);
	usleep(20000);
	context_unlock(sh.c);
	for (int i = 0; i < LOCK_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_no_thread_failures();
	assert_int_equal(sh.counter, LOCK_THREADS * sh.iters);
	/* Free again, and taken without waiting. */
	assert_int_equal(atomic_load(&sh.c->write_lock.word), 0);
	context_release(sh.c);
	ctx_close(s);
}

/* Versions of c that hold a reference to it: the history chain and the
 * held versions that left it. */
static unsigned expected_refs(ctx_context *c, ctx_state **held, int nheld, unsigned callers)
{
	unsigned n = 1 + callers + (unsigned)c->kept; /* the table's, ours, the chain */
	uint64_t oldest = c->oldest->version;
	for (int i = 0; i < nheld; i++)
		n += held[i] && held[i]->version < oldest;
	return n;
}

/* One thread commits to a context with a short history while it holds some
 * versions: each commit cuts one, which it frees (taking over its reference)
 * or leaves to its holder (a reference of its own). The count stays exact. */
static void test_commit_refs_exact(void **unused)
{
	(void)unused;
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 3;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "c"));
	ctx_context *c = store_find_context(s, "c", 1);
	assert_non_null(c);
	enum { COMMITS = 200 };
	ctx_state *held[COMMITS] = {0};
	int nheld = 0;
	for (int i = 0; i < COMMITS; i++) {
		char v[16];
		int vl = snprintf(v, sizeof(v), "%d", i);
		assert_ok(ctx_put(s, "c", "k", 1, v, (size_t)vl, NULL));
		if (i % 7 == 0)
			assert_ok(ctx_get_latest(s, "c", &held[nheld++]));
		/* Release some of the held ones while they are still in history,
		 * some after they left it. */
		if (i % 11 == 0 && nheld > 1) {
			ctx_state_release(held[nheld - 2]);
			held[nheld - 2] = NULL;
		}
		state_drain();
		assert_int_equal(atomic_load(&c->refs), expected_refs(c, held, nheld, 1));
	}
	for (int i = 0; i < nheld; i++)
		ctx_state_release(held[i]);
	state_drain();
	assert_int_equal(atomic_load(&c->refs), expected_refs(c, NULL, 0, 1));
	context_release(c);
	ctx_close(s);
}

#define REF_THREADS 4

typedef struct refs_shared {
	ctx_store *s;
	long iters;
} refs_shared;

static void *refs_worker(void *arg)
{
	refs_shared *sh = arg;
	uint64_t seed = (uint64_t)(uintptr_t)&seed;
	ctx_state *held = NULL;
	for (long i = 0; i < sh->iters; i++) {
		char k[2] = {(char)('a' + test_rand_below(&seed, 4)), 0};
		T_CHECK_STATUS(ctx_put(sh->s, "c", k, 1, "v", 1, NULL), CTX_OK);
		if (test_rand_below(&seed, 16) == 0) {
			ctx_state_release(held);
			held = NULL;
			T_CHECK_STATUS(ctx_get_latest(sh->s, "c", &held), CTX_OK);
		}
	}
	ctx_state_release(held);
	return NULL;
}

/* Writers and holders at once: once they are done, the count is the
 * table's, ours and the chain's again (none lost, none left over). */
static void test_commit_refs_concurrent(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 4;
	refs_shared sh = {.iters = test_iters(20000, 2000)};
	assert_ok(ctx_open(&o, &sh.s));
	assert_ok(ctx_create(sh.s, "c"));
	ctx_context *c = store_find_context(sh.s, "c", 1);
	assert_non_null(c);
	pthread_t th[REF_THREADS];
	for (int i = 0; i < REF_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, refs_worker, &sh), 0);
	for (int i = 0; i < REF_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_no_thread_failures();
	state_drain();
	assert_int_equal(c->kept, 4);
	assert_int_equal(atomic_load(&c->refs), expected_refs(c, NULL, 0, 1));
	context_release(c);
	ctx_close(sh.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lock_is_small),
	    cmocka_unit_test(test_lock_excludes),
	    cmocka_unit_test(test_commit_refs_exact),
	    cmocka_unit_test(test_commit_refs_concurrent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
