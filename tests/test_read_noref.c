/*
 * test_read_noref.c - reads that take no reference (ctx_get_value,
 * ctx_get_each).
 *
 * They must give what ctx_get + ctx_state_lookup / an iterator give; report
 * CTX_INVALID, CTX_NOT_FOUND (no context, no key, past its time-to-live) and
 * CTX_LIMIT (value longer than the buffer, its length reported) exactly as
 * ctx.h says; stop early when the callback says so; and never read freed
 * memory or a torn version while writers replace every version at once
 * (history_depth 1: each commit cuts the version before it) and contexts
 * are dropped and created again. Under ASan a use-after-free fails the test;
 * without a grace period between a version's last reference and the release
 * of its trie (state.c), the stress test reads freed leaves.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"

/* ---- single-threaded behaviour ---------------------------------------------- */

static bool collect(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	ctx_state *st = arg;
	const void *v;
	size_t vl;
	/* Every pair is the visible version's, and appears once. */
	T_CHECK(ctx_state_lookup(st, key, klen, &v, &vl));
	T_CHECK(vl == vlen && memcmp(v, val, vl) == 0);
	return true;
}

static void test_same_as_get(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	for (int i = 0; i < 2000; i++) {
		char key[16], val[32];
		int kl = snprintf(key, sizeof(key), "key-%d", i);
		int vl = snprintf(val, sizeof(val), "value-%d", i * 7);
		assert_ok(ctx_txn_put(t, key, (size_t)kl, val, (size_t)vl));
	}
	assert_ok(ctx_txn_put(t, "empty", 5, "", 0));
	assert_ok(ctx_txn_commit(t, 0, NULL));

	ctx_state *st;
	assert_ok(ctx_get(s, "c", &st));
	char buf[64];
	size_t n;
	for (int i = 0; i < 2000; i++) {
		char key[16];
		int kl = snprintf(key, sizeof(key), "key-%d", i);
		const void *v;
		size_t vl;
		assert_true(ctx_state_lookup(st, key, (size_t)kl, &v, &vl));
		n = 12345;
		assert_ok(ctx_get_value(s, "c", key, (size_t)kl, buf, sizeof(buf), &n));
		assert_int_equal(n, vl);
		assert_memory_equal(buf, v, vl);
	}
	/* An empty value, into no buffer at all. */
	n = 99;
	assert_ok(ctx_get_value(s, "c", "empty", 5, NULL, 0, &n));
	assert_int_equal(n, 0);

	/* ctx_get_each: every pair once, those of the visible version. */
	reset_failures();
	assert_ok(ctx_get_each(s, "c", collect, st));
	assert_no_thread_failures();
	ctx_state_release(st);
	ctx_close(s);
}

typedef struct counter {
	size_t n, stop_at;
} counter;

static bool count_pairs(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	counter *c = arg;
	return ++c->n != c->stop_at;
}

static void test_errors(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	assert_ok(ctx_put(s, "c", "k", 1, "0123456789", 10, NULL));
	assert_ok(ctx_put(s, "c", "j", 1, "x", 1, NULL));
	char buf[16];
	size_t n = 777;
	counter cnt = {0, 0};

	assert_int_equal(ctx_get_value(NULL, "c", "k", 1, buf, sizeof(buf), &n), CTX_INVALID);
	assert_int_equal(ctx_get_value(s, NULL, "k", 1, buf, sizeof(buf), &n), CTX_INVALID);
	assert_int_equal(ctx_get_value(s, "", "k", 1, buf, sizeof(buf), &n), CTX_INVALID);
	assert_int_equal(ctx_get_value(s, "c", NULL, 1, buf, sizeof(buf), &n), CTX_INVALID);
	assert_int_equal(ctx_get_value(s, "c", "k", 1, NULL, 4, &n), CTX_INVALID);
	assert_int_equal(ctx_get_value(s, "c", "k", 1, buf, sizeof(buf), NULL), CTX_INVALID);
	assert_int_equal(n, 777);

	assert_int_equal(ctx_get_value(s, "nope", "k", 1, buf, sizeof(buf), &n), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_value(s, "c", "zz", 2, buf, sizeof(buf), &n), CTX_NOT_FOUND);
	assert_int_equal(n, 777);

	/* Too long for the buffer: nothing copied, the length reported. */
	memset(buf, '#', sizeof(buf));
	assert_int_equal(ctx_get_value(s, "c", "k", 1, buf, 9, &n), CTX_LIMIT);
	assert_int_equal(n, 10);
	assert_int_equal(buf[0], '#');
	assert_int_equal(ctx_get_value(s, "c", "k", 1, NULL, 0, &n), CTX_LIMIT);
	assert_int_equal(n, 10);
	assert_ok(ctx_get_value(s, "c", "k", 1, buf, 10, &n));
	assert_memory_equal(buf, "0123456789", 10);

	assert_int_equal(ctx_get_each(NULL, "c", count_pairs, &cnt), CTX_INVALID);
	assert_int_equal(ctx_get_each(s, NULL, count_pairs, &cnt), CTX_INVALID);
	assert_int_equal(ctx_get_each(s, "c", NULL, &cnt), CTX_INVALID);
	assert_int_equal(ctx_get_each(s, "nope", count_pairs, &cnt), CTX_NOT_FOUND);
	assert_int_equal(cnt.n, 0);
	/* Stopping early is fine; an empty context calls nothing. */
	cnt.stop_at = 1;
	assert_ok(ctx_get_each(s, "c", count_pairs, &cnt));
	assert_int_equal(cnt.n, 1);
	cnt = (counter){0, 0};
	assert_ok(ctx_get_each(s, "c", count_pairs, &cnt));
	assert_int_equal(cnt.n, 2);
	assert_ok(ctx_create(s, "empty"));
	cnt = (counter){0, 0};
	assert_ok(ctx_get_each(s, "empty", count_pairs, &cnt));
	assert_int_equal(cnt.n, 0);

	/* Dropped: gone for both. */
	assert_ok(ctx_drop(s, "c"));
	assert_int_equal(ctx_get_value(s, "c", "k", 1, buf, sizeof(buf), &n), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_each(s, "c", count_pairs, &cnt), CTX_NOT_FOUND);
	ctx_close(s);
}

/* ctx_get_each in the iterators' order: records each pair's key and value
 * pointers (valid while the state is held) and stops after stop_at. */
typedef struct each_log {
	size_t n, stop_at;
	const void *key[2048], *val[2048];
	size_t klen[2048], vlen[2048];
} each_log;

static bool log_pair(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	each_log *e = arg;
	T_CHECK(e->n < 2048);
	e->key[e->n] = key;
	e->klen[e->n] = klen;
	e->val[e->n] = val;
	e->vlen[e->n] = vlen;
	return ++e->n != e->stop_at;
}

/* ctx_get_each gathers leaves a batch at a time (store.c): across batch
 * boundaries it must call fn for every pair once, in ctx_iter's order, with
 * the pairs' own bytes, and stop exactly where fn says, for sizes around
 * the batch (32) and a map of several levels. */
static void test_each_order(void **unused)
{
	static const size_t sizes[] = {0, 1, 2, 16, 31, 32, 33, 64, 65, 100, 2000};
	static const size_t stops[] = {1, 2, 31, 32, 33, 64, 65, 1000};
	ctx_store *s = test_open_memory();
	each_log *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		char id[16];
		snprintf(id, sizeof(id), "c%zu", sizes[z]);
		ctx_txn *t;
		assert_ok(ctx_txn_begin_create(s, id, &t));
		for (size_t i = 0; i < sizes[z]; i++) {
			char key[16], val[32];
			int kl = snprintf(key, sizeof(key), "k%zu", i);
			int vl = snprintf(val, sizeof(val), "v%zu-%zu", i, sizes[z]);
			assert_ok(ctx_txn_put(t, key, (size_t)kl, val, (size_t)vl));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));

		ctx_state *st;
		assert_ok(ctx_get(s, id, &st));
		for (size_t k = 0; k <= sizeof(stops) / sizeof(stops[0]); k++) {
			size_t stop = k < sizeof(stops) / sizeof(stops[0]) ? stops[k] : 0;
			memset(e, 0, sizeof(*e));
			e->stop_at = stop;
			reset_failures();
			assert_ok(ctx_get_each(s, id, log_pair, e));
			assert_no_thread_failures();
			size_t want = stop && stop < sizes[z] ? stop : sizes[z];
			assert_int_equal(e->n, want);
			ctx_iter_stack it;
			assert_ok(ctx_iter_init(&it, st));
			const void *key, *val;
			size_t klen, vlen;
			for (size_t i = 0; i < want; i++) {
				assert_true(ctx_iter_stack_next(&it, &key, &klen, &val, &vlen));
				assert_ptr_equal(e->key[i], key);
				assert_ptr_equal(e->val[i], val);
				assert_int_equal(e->klen[i], klen);
				assert_int_equal(e->vlen[i], vlen);
			}
			if (want == sizes[z])
				assert_false(ctx_iter_stack_next(&it, &key, &klen, &val, &vlen));
		}
		ctx_state_release(st);
	}
	free(e);
	ctx_close(s);
}

static _Atomic uint64_t fake_now; /* read by the reaper too */

static uint64_t fake_clock(void *arg)
{
	return fake_now;
}

static void test_expired(void **unused)
{
	ctx_options o;
	ctx_options_init(&o);
	o.clock_us = fake_clock;
	fake_now = 1000000000;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "t"));
	assert_ok(ctx_put(s, "t", "k", 1, "v", 1, NULL));
	assert_ok(ctx_set_ttl(s, "t", 1000));
	char buf[4];
	size_t n;
	counter cnt = {0, 0};
	fake_now += 500000; /* half the time-to-live: still there */
	assert_ok(ctx_get_value(s, "t", "k", 1, buf, sizeof(buf), &n));
	assert_ok(ctx_get_each(s, "t", count_pairs, &cnt));
	assert_int_equal(cnt.n, 1);
	fake_now += 2000000; /* past it */
	assert_int_equal(ctx_get_value(s, "t", "k", 1, buf, sizeof(buf), &n), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_each(s, "t", count_pairs, &cnt), CTX_NOT_FOUND);
	assert_int_equal(cnt.n, 1);
	ctx_close(s);
}

/* ---- readers against writers and drops ----------------------------------------- */

#define NCTX    4 /* r0, r1 written; r2, r3 also dropped and created again */
#define NKEYS   8
#define VLEN    48
#define READERS 4

typedef struct shared {
	ctx_store *s;
	atomic_bool stop;
	atomic_long reads, misses;
} shared;

static void ctx_name(char *buf, int i)
{
	snprintf(buf, 8, "r%d", i);
}

static void key_name(char *buf, int k)
{
	snprintf(buf, 8, "k%d", k);
}

/* Every key of a version holds VLEN copies of one byte, the version's
 * generation: a reader sees one byte throughout a value, and one byte
 * across the pairs of ctx_get_each. */
static ctx_status write_all(ctx_store *s, const char *id, unsigned char gen, bool create)
{
	unsigned char val[VLEN];
	memset(val, gen, sizeof(val));
	ctx_txn *t;
	ctx_status st = create ? ctx_txn_begin_create(s, id, &t) : ctx_txn_begin(s, id, &t);
	if (st != CTX_OK)
		return st;
	for (int k = 0; k < NKEYS; k++) {
		char key[8];
		key_name(key, k);
		if ((st = ctx_txn_put(t, key, strlen(key), val, sizeof(val))) != CTX_OK) {
			ctx_txn_abort(t);
			return st;
		}
	}
	return ctx_txn_commit(t, 0, NULL);
}

static void *writer(void *arg)
{
	shared *sh = arg;
	unsigned char gen = 1;
	uint64_t rng = (uint64_t)(uintptr_t)arg;
	while (!atomic_load(&sh->stop)) {
		char id[8];
		ctx_name(id, (int)test_rand_below(&rng, NCTX));
		/* One key (a light version) or all of them. */
		if (test_rand_below(&rng, 2)) {
			ctx_status st = write_all(sh->s, id, ++gen, false);
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
		} else {
			unsigned char val[VLEN];
			char key[8];
			key_name(key, (int)test_rand_below(&rng, NKEYS));
			memset(val, ++gen, sizeof(val));
			/* Breaks "one byte across pairs" for ctx_get_each: the
			 * readers check that only within a value. */
			ctx_status st =
			    ctx_put(sh->s, id, key, strlen(key), val, sizeof(val), NULL);
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
		}
	}
	return NULL;
}

static void *dropper(void *arg)
{
	shared *sh = arg;
	unsigned char gen = 200;
	while (!atomic_load(&sh->stop)) {
		for (int i = 2; i < NCTX; i++) {
			char id[8];
			ctx_name(id, i);
			T_CHECK_STATUS(ctx_drop(sh->s, id), CTX_OK);
			T_CHECK_STATUS(write_all(sh->s, id, ++gen, true), CTX_OK);
		}
	}
	return NULL;
}

static bool uniform(const unsigned char *v, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (v[i] != v[0])
			return false;
	return true;
}

typedef struct each_check {
	size_t n;
	bool bad;
} each_check;

static bool check_pair(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	each_check *c = arg;
	c->n++;
	if (vlen != VLEN || klen != 2 || !uniform(val, vlen))
		c->bad = true;
	return true;
}

static void *reader(void *arg)
{
	shared *sh = arg;
	uint64_t rng = (uint64_t)(uintptr_t)&rng;
	long reads = 0, misses = 0;
	while (!atomic_load(&sh->stop)) {
		if (reads >= 256) {
			atomic_fetch_add(&sh->reads, reads);
			reads = 0;
		}
		int i = (int)test_rand_below(&rng, NCTX);
		char id[8], key[8];
		ctx_name(id, i);
		key_name(key, (int)test_rand_below(&rng, NKEYS));
		unsigned char buf[VLEN + 8];
		size_t n = 0;
		ctx_status st = ctx_get_value(sh->s, id, key, strlen(key), buf, sizeof(buf), &n);
		if (st == CTX_OK) {
			T_CHECK(n == VLEN && uniform(buf, n));
			reads++;
		} else {
			/* Only the contexts being dropped may be missing. */
			T_CHECK(st == CTX_NOT_FOUND && i >= 2);
			misses++;
		}
		each_check c = {0, false};
		st = ctx_get_each(sh->s, id, check_pair, &c);
		if (st == CTX_OK) {
			T_CHECK(c.n == NKEYS && !c.bad);
			reads++;
		} else {
			T_CHECK(st == CTX_NOT_FOUND && i >= 2);
			misses++;
		}
	}
	atomic_fetch_add(&sh->reads, reads);
	atomic_fetch_add(&sh->misses, misses);
	return NULL;
}

static void test_readers_against_writers_and_drops(void **unused)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1; /* every commit cuts the version before it */
	shared sh = {0};
	assert_ok(ctx_open(&o, &sh.s));
	for (int i = 0; i < NCTX; i++) {
		char id[8];
		ctx_name(id, i);
		assert_ok(write_all(sh.s, id, 1, true));
	}
	reset_failures();
	pthread_t r[READERS], w[2], d;
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader, &sh), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&w[i], NULL, writer, &sh), 0);
	assert_int_equal(pthread_create(&d, NULL, dropper, &sh), 0);

	/* 1.5 s, or until the first read however long that takes (up to 60 s:
	 * a loaded machine may keep the readers off the CPU). */
	double end = test_now() + 1.5, give_up = test_now() + 60;
	long target = test_iters(400000, 20000);
	while (atomic_load(&sh.reads) < target &&
	       (test_now() < end || (atomic_load(&sh.reads) == 0 && test_now() < give_up)))
		usleep(20000);
	atomic_store(&sh.stop, true);
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	pthread_join(d, NULL);
	assert_no_thread_failures();
	print_message("%ld reads, %ld misses\n", atomic_load(&sh.reads), atomic_load(&sh.misses));
	assert_true(atomic_load(&sh.reads) > 0);
	ctx_close(sh.s);
}

/* A version released by this thread waits in the thread's batch for a grace
 * period (state.c); ctx_close must free what the closing thread still holds,
 * or a later commit of this thread (in any store) pays for it: freeing a
 * large version there took half a second. Checked through the heap in use
 * (mallinfo2; ASan's allocator does not report it, so there the check is
 * vacuous). */
static void test_close_frees_released(void **unused)
{
	(void)unused;
	malloc_trim(0);
	size_t before = mallinfo2().uordblks;
	ctx_store *s = test_open_memory();
	char v[64];
	memset(v, 'v', sizeof(v));
	ctx_txn *t;
	assert_ok(ctx_txn_begin_create(s, "big", &t));
	for (int i = 0; i < 100000; i++) {
		char k[32];
		int kl = snprintf(k, sizeof(k), "key-%d", i);
		assert_ok(ctx_txn_put(t, k, (size_t)kl, v, sizeof(v)));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
	size_t vlen = 0;
	assert_ok(ctx_get_value(s, "big", "key-1", 5, v, sizeof(v), &vlen)); /* read_noref */
	ctx_state *old;
	assert_ok(ctx_get(s, "big", &old));
	assert_ok(ctx_drop(s, "big"));
	ctx_state_release(old); /* the last reference: into this thread's batch */
	ctx_close(s);
	size_t after = mallinfo2().uordblks;
	/* 100,000 pairs are about 10 MB; allow 2 MB of other growth. */
	assert_true(after < before + (2u << 20));
}

int main(void)
{
	pool_use_slabs(false); /* mallinfo2 counts malloc's blocks only (pool.c) */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_same_as_get),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_each_order),
	    cmocka_unit_test(test_expired),
	    cmocka_unit_test(test_readers_against_writers_and_drops),
	    cmocka_unit_test(test_close_frees_released),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
