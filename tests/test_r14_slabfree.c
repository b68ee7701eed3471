/*
 * test_r14_slabfree.c - slab chunks whose blocks are all free are given
 * back to the system (pool.c, round 14).
 *
 * Before round 14 a process kept every slab chunk it ever carved: a store
 * of 300,000 keys loaded and closed left its ~14 MiB of trie leaves, nodes
 * and versions resident for good. Now a chunk whose carved blocks are all
 * on the shared lists (none live, none in a thread's cache) is taken off
 * them and, past SLAB_KEEP chunks kept populated, given back
 * (MADV_DONTNEED); its range is handed out again for any class.
 *
 * - A store filled and closed: the process's RSS (/proc/self/statm) drops
 *   by most of what the fill added; a second fill reuses the same range
 *   (the slab's range does not grow) and reads back right.
 * - Through pool.h: blocks of every class allocated by one thread and freed
 *   by another come back as bare chunks, which the next allocations take
 *   again before any new chunk.
 * - Hysteresis: an alloc/free churn smaller than the kept chunks gives no
 *   memory back and takes none back (no madvise per cycle).
 *
 * Run with the decay of round 18 off (pool_slab_set_decay(0, 0)): round
 * 14's give-back at once; test_r18_decay checks the decay's.
 *
 * The RSS checks are left out under sanitizers (ASan has no slabs; TSan's
 * shadow of the freed pages stays); the pool.h ones out under ASan.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"


#define NCTX  30000 /* contexts of KEYS keys: 300,000 keys */
#define KEYS  10
#define CHUNK ((size_t)2 << 20)

/* Resident bytes of this process. */
static size_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	assert_non_null(f);
	unsigned long size = 0, res = 0;
	assert_int_equal(fscanf(f, "%lu %lu", &size, &res), 2);
	fclose(f);
	return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static void fill(ctx_store *s, int round)
{
	char id[32], key[16], val[32];
	for (int i = 0; i < NCTX; i++) {
		snprintf(id, sizeof(id), "ctx-%d", i);
		ctx_txn *t;
		assert_ok(ctx_txn_begin_create(s, id, &t));
		for (int k = 0; k < KEYS; k++) {
			int kl = snprintf(key, sizeof(key), "k%d", k);
			int vl = snprintf(val, sizeof(val), "v%d-%d-%d", round, i, k);
			assert_ok(ctx_txn_put(t, key, (size_t)kl, val, (size_t)vl));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
}

static void check(ctx_store *s, int round)
{
	char id[32], key[16], want[32], got[32];
	for (int i = 0; i < NCTX; i += 7) {
		snprintf(id, sizeof(id), "ctx-%d", i);
		for (int k = 0; k < KEYS; k++) {
			int kl = snprintf(key, sizeof(key), "k%d", k);
			int wl = snprintf(want, sizeof(want), "v%d-%d-%d", round, i, k);
			size_t vl = 0;
			assert_ok(ctx_get_value(s, id, key, (size_t)kl, got, sizeof(got), &vl));
			assert_int_equal(vl, (size_t)wl);
			assert_memory_equal(got, want, vl);
		}
	}
}

/* A store of 300,000 keys filled and closed (ctx_close waits for the
 * reclaimer and trims this thread's cache): RSS drops by most of what it
 * added, and a second store reuses the range. */
static void test_store_closed_rss_given_back(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	fill(s, 0); /* warms malloc's arenas and the slab range */
	ctx_close(s);
	size_t before = rss_bytes(), range = pool_slab_bytes();

	s = test_open_memory();
	fill(s, 1);
	check(s, 1);
	size_t full = rss_bytes();
	ctx_close(s);
	size_t after = rss_bytes();
	print_message("RSS: %zu KiB before, %zu KiB filled, %zu KiB closed; slab range %zu KiB, "
	              "given back %zu KiB\n",
	              before >> 10, full >> 10, after >> 10, pool_slab_bytes() >> 10,
	              pool_slab_given_back() >> 10);
#if !defined(T_ASAN) && !defined(T_TSAN)
	/* Closing gives back the store's ~14 MiB (before round 14: nothing, and
	 * the second fill added little, reusing the first one's chunks)... */
	assert_true(full > after + ((size_t)10 << 20));
	/* ...at least 80% of what the fill added, most of it as chunks given
	 * back (not kept). */
	assert_true(after < before + (full - before) / 5);
	assert_true(pool_slab_given_back() >= (full - before) / 2);
#endif
#ifndef T_ASAN
	/* The second store took the first one's chunks: the range did not grow
	 * (but for the chunks a thread's cache or rest kept busy meanwhile). */
	assert_true(pool_slab_bytes() <= range + 4 * CHUNK);
	assert_true(pool_slab_given_back() >= 2 * CHUNK);
#else
	(void)range;
#endif

	s = test_open_memory();
	fill(s, 2);
	check(s, 2);
	ctx_close(s);
}

#ifndef T_ASAN /* the pool tests below skip under ASan: no slabs there */
#define NBLK (1 << 17) /* 131,072 blocks of 32-272 bytes: ~19 MiB */

static void *blk[NBLK];

static void *alloc_all(void *arg)
{
	(void)arg;
	for (int i = 0; i < NBLK; i++) {
		size_t size = 24 + 16 * (size_t)(i % 16);
		blk[i] = pool_alloc(size);
		T_CHECK(blk[i] != NULL);
		if (blk[i])
			memset(blk[i], i & 0xff, size);
	}
	return NULL; /* its chunk's rest is passed on at exit */
}

static void *free_all(void *arg)
{
	(void)arg;
	for (int i = 0; i < NBLK; i++) {
		const unsigned char *p = blk[i];
		T_CHECK(p[0] == (i & 0xff) && p[23] == (i & 0xff));
		pool_free(blk[i]);
	}
	pool_trim();
	return NULL;
}

#endif

/* Blocks of every class allocated by one thread and freed by another: the
 * chunks they filled are given back but for the few kept, and taken again
 * by the next allocations before any new chunk. */
static void test_pool_chunks_given_back_and_reused(void **state)
{
	(void)state;
#ifdef T_ASAN
	skip();
#else
	reset_failures();
	test_run_thread(alloc_all);
	size_t range = pool_slab_bytes(), back = pool_slab_given_back();
	test_run_thread(free_all);
	assert_no_thread_failures();
	size_t back_freed = pool_slab_given_back();
	print_message("range %zu KiB, given back %zu -> %zu KiB\n", range >> 10, back >> 10,
	              back_freed >> 10);
	/* ~19 MiB in ~10 chunks: all but the 4 kept and the rest passed on. */
	assert_true(back_freed >= back + 4 * CHUNK);

	test_run_thread(alloc_all);
	assert_no_thread_failures();
	assert_true(pool_slab_bytes() <= range + CHUNK); /* the bare chunks first */
	assert_true(pool_slab_given_back() < back_freed);
	test_run_thread(free_all);
	assert_no_thread_failures();
#endif
}

/* Blocks allocated and freed in rounds of ~4 MiB: the kept chunks serve
 * them, nothing is given back or taken back after the first rounds (with
 * no chunk kept, each round took bare chunks and gave them back: the
 * check between allocating and freeing fails). */
static void test_small_churn_keeps_chunks(void **state)
{
	(void)state;
#ifdef T_ASAN
	skip();
#else
	enum { N = 30000 }; /* 30,000 blocks of 136 bytes: ~4 MiB */
	static void *b[N];
	size_t back = 0;
	for (int round = 0; round < 8; round++) {
		for (int i = 0; i < N; i++) {
			b[i] = pool_alloc(128);
			assert_non_null(b[i]);
			memset(b[i], round, 128);
		}
		if (round > 1) /* the kept chunks served them, no bare one */
			assert_int_equal(pool_slab_given_back(), back);
		for (int i = 0; i < N; i++)
			pool_free(b[i]);
		pool_trim();
		if (round == 1)
			back = pool_slab_given_back();
		else if (round > 1)
			assert_int_equal(pool_slab_given_back(), back);
	}
#endif
}

int main(void)
{
	/* These tests check round 14's give-back itself: past SLAB_KEEP, a
	 * chunk emptied goes back at once, with the decay (round 18) off;
	 * test_r18_decay checks that with it the same goes back once idle. */
	pool_slab_set_decay(0, 0);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_closed_rss_given_back),
	    cmocka_unit_test(test_pool_chunks_given_back_and_reused),
	    cmocka_unit_test(test_small_churn_keeps_chunks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
