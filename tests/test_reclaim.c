/*
 * test_reclaim.c - the version that leaves history is freed off the commit
 * path (src/lib/reclaim.c), boundedly, and nothing is lost or leaked.
 *
 * How it is observed without timing: the reclaimer frees after an RCU grace
 * period, and a grace period cannot end while this thread is inside an RCU
 * read-side critical section. So, inside one, a commit that cuts a version
 * from history must leave that version alive (its reference handed to the
 * reclaimer: refs still 1) where the old code freed it on the spot (refs 0;
 * the struct itself stays readable until the grace period, which is what
 * lets the test look). Past RECLAIM_MAX_PENDING waiting versions, the
 * committing thread must free its own. After ctx_close (rcu_barrier) nothing
 * waits; ASan builds check that nothing leaks.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reclaim.h"
#include "store.h" /* the refs of a version, RCU read-side sections */

static ctx_store *open_depth(size_t depth)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = depth;
	return test_open(&o);
}

static void put_n(ctx_store *s, const char *id, long n, int gen)
{
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, id, &t));
	for (long i = 0; i < n; i++) {
		char k[32], v[32];
		int kl = snprintf(k, sizeof(k), "k%ld", i);
		int vl = snprintf(v, sizeof(v), "g%d-%ld", gen, i);
		assert_ok(ctx_txn_put(t, k, (size_t)kl, v, (size_t)vl));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

/* The version `version` of id, without keeping a reference: only the history
 * chain holds it then. The caller is inside an RCU read-side section, so the
 * struct stays readable even once freed. */
static ctx_state *peek_version(ctx_store *s, const char *id, uint64_t version)
{
	ctx_state *st;
	assert_ok(ctx_get_at(s, id, version, &st));
	ctx_state_release(st);
	return st;
}

static unsigned refs_of(ctx_state *st)
{
	return atomic_load(&st->refs);
}

/* The commit that cuts a version does not free it: the reclaimer does, after
 * the grace period. */
static void test_cut_version_freed_in_background(void **unused)
{
	ctx_store *s = open_depth(2);
	assert_ok(ctx_create(s, "c"));
	put_n(s, "c", 1000, 0); /* version 2: the one that will leave */
	size_t before = reclaim_pending();

	put_n(s, "c", 1000, 1); /* version 3 */

	ctx_rcu_read_lock();
	ctx_state *v2 = peek_version(s, "c", 2);
	assert_int_equal(refs_of(v2), 1); /* the chain's: version 3 points at it */
	put_n(s, "c", 1, 2);              /* version 4: cuts version 2 */
	assert_int_equal(ctx_get_at(s, "c", 2, &(ctx_state *){NULL}), CTX_NOT_FOUND);
	assert_int_equal(refs_of(v2), 1); /* handed over, not freed */
	assert_true(reclaim_pending() >= before + 1);
	ctx_rcu_read_unlock();

	ctx_close(s); /* rcu_barrier: the reclaimer has run */
	assert_int_equal(reclaim_pending(), 0);
}

/* A version the caller holds stays whole after it left history and after
 * the reclaimer dropped the chain's reference. */
static void test_held_version_stays_readable(void **unused)
{
	ctx_store *s = open_depth(1);
	assert_ok(ctx_create(s, "h"));
	put_n(s, "h", 5000, 0);
	ctx_state *held;
	assert_ok(ctx_get(s, "h", &held));
	for (int g = 1; g <= 20; g++)
		put_n(s, "h", 100, g);
	rcu_barrier(); /* the reclaimer ran: only our reference is left */
	assert_int_equal(refs_of(held), 1);
	assert_int_equal(ctx_state_count(held), 5000);
	for (long i = 0; i < 5000; i += 97) {
		char k[32], want[32];
		int kl = snprintf(k, sizeof(k), "k%ld", i);
		snprintf(want, sizeof(want), "g0-%ld", i);
		const void *v;
		size_t vl;
		assert_true(ctx_state_lookup(held, k, (size_t)kl, &v, &vl));
		assert_int_equal(vl, strlen(want));
		assert_memory_equal(v, want, vl);
	}
	ctx_state_release(held);
	ctx_close(s);
	assert_int_equal(reclaim_pending(), 0);
}

/* While the reclaimer cannot run (a grace period is held open), at most
 * RECLAIM_MAX_PENDING versions wait; later cuts are freed by the committing
 * thread itself. */
static void test_queue_is_bounded(void **unused)
{
	ctx_store *s = open_depth(1);
	assert_ok(ctx_create(s, "b"));
	ctx_rcu_read_lock();
	size_t start = reclaim_pending();
	long commits = (long)RECLAIM_MAX_PENDING + 50;
	for (long i = 0; i < commits; i++)
		put_n(s, "b", 17, (int)i); /* not light: handed to the reclaimer */
	assert_int_equal(reclaim_pending(), RECLAIM_MAX_PENDING);
	assert_true(start < RECLAIM_MAX_PENDING);
	/* The queue is full: the next cut is freed on the spot. */
	uint64_t head = 0;
	ctx_state *st;
	assert_ok(ctx_get(s, "b", &st));
	head = ctx_state_version(st);
	ctx_state_release(st);
	ctx_state *last = peek_version(s, "b", head);
	put_n(s, "b", 17, -1);
	put_n(s, "b", 17, -2);
	assert_int_equal(refs_of(last), 0);
	assert_int_equal(reclaim_pending(), RECLAIM_MAX_PENDING);
	ctx_rcu_read_unlock();
	ctx_close(s);
	assert_int_equal(reclaim_pending(), 0);
}

/* A version cut by the commit after a small transaction (at most 16 ops:
 * "light") is freed by the committing thread at once: it holds alone only
 * the few nodes that transaction replaced. One after a larger transaction
 * goes to the reclaimer. */
static void test_light_version_freed_at_once(void **unused)
{
	ctx_store *s = open_depth(1);
	assert_ok(ctx_create(s, "l"));
	put_n(s, "l", 100, 0); /* version 2 */
	ctx_rcu_read_lock();
	size_t before = reclaim_pending();
	ctx_state *v2 = peek_version(s, "l", 2);
	put_n(s, "l", 16, 1); /* version 3, light: cuts version 2 */
	assert_int_equal(refs_of(v2), 0);
	assert_int_equal(reclaim_pending(), before);
	ctx_state *v3 = peek_version(s, "l", 3);
	put_n(s, "l", 17, 2); /* version 4, not light: version 3 waits */
	assert_int_equal(refs_of(v3), 1);
	assert_int_equal(reclaim_pending(), before + 1);
	ctx_rcu_read_unlock();
	ctx_close(s);
	assert_int_equal(reclaim_pending(), 0);
}

/* Many writers on many contexts with a short history, readers holding old
 * versions: every value read is one that was written (ASan/TSan check the
 * frees), and the store closes with nothing waiting. */
typedef struct rw_arg {
	ctx_store *s;
	int n;
	long rounds;
} rw_arg;

static void *writer_main(void *arg)
{
	rw_arg *a = arg;
	char id[16];
	snprintf(id, sizeof(id), "w%d", a->n % 4);
	for (long i = 0; i < a->rounds; i++) {
		char v[32];
		int vl = snprintf(v, sizeof(v), "%ld", i);
		T_CHECK_STATUS(ctx_put(a->s, id, "k", 1, v, (size_t)vl, NULL), CTX_OK);
		ctx_state *st;
		if (ctx_get(a->s, id, &st) == CTX_OK) {
			const void *p;
			size_t len;
			T_CHECK(ctx_state_lookup(st, "k", 1, &p, &len));
			T_CHECK(len > 0 && len < 32);
			ctx_state_release(st);
		}
	}
	return NULL;
}

static void test_concurrent_commits(void **unused)
{
	ctx_store *s = open_depth(2);
	for (int i = 0; i < 4; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w%d", i);
		assert_ok(ctx_create(s, id));
	}
	reset_failures();
	pthread_t th[8];
	rw_arg args[8];
	for (int i = 0; i < 8; i++) {
		args[i] = (rw_arg){s, i, test_iters(5000, 500)};
		assert_int_equal(pthread_create(&th[i], NULL, writer_main, &args[i]), 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	assert_no_thread_failures();
	ctx_close(s);
	assert_int_equal(reclaim_pending(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cut_version_freed_in_background),
	    cmocka_unit_test(test_held_version_stays_readable),
	    cmocka_unit_test(test_light_version_freed_at_once),
	    cmocka_unit_test(test_queue_is_bounded),
	    cmocka_unit_test(test_concurrent_commits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
