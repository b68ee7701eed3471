/*
 * test_r18_decay.c - emptied slab chunks past the 4 kept for good are kept
 * populated while they are in use again soon, and given back once they
 * stayed unused for the decay time (pool.c, DECAY, round 18).
 *
 * Before round 18 every chunk past SLAB_KEEP (4) was given back the moment
 * its blocks were all free: a process that closed a store of hundreds of
 * MiB and opened the next populated all of it again (the rwlock map's
 * glibc heap does not: docs/benchmarks.md, round 17).
 *
 * - A store's burst of creates, closed: its chunks are kept (nothing given
 *   back, RSS stays); a second store's burst takes them (the range does not
 *   grow, nothing new is given back, the kept bytes drop); once idle for
 *   the decay time they are given back by the pool's own thread, and RSS
 *   drops.
 * - The bound: with at most 3 chunks past the 4 allowed, a burst of ~19 MiB
 *   keeps 7 chunks and gives the others back at once; a lower bound gives
 *   back at once what is past it.
 *
 * The decay is measured on the monotonic clock inside the pool (the pool
 * serves every store of the process, so no store's clock): the test sets a
 * long time (nothing may decay while it checks) and then a short one, and
 * waits for the give-back with a bounded poll (no fixed sleep). RSS checks
 * are left out under sanitizers; the whole test skips under ASan (no slabs).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"


#define CHUNK ((size_t)2 << 20)
#define FLOOR (4 * CHUNK) /* SLAB_KEEP chunks, kept for good */
#define LONG  600000u     /* ms: nothing decays while the test checks */
#define BIG   ((size_t)1 << 30)

#ifndef T_ASAN
static size_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	assert_non_null(f);
	unsigned long size = 0, res = 0;
	assert_int_equal(fscanf(f, "%lu %lu", &size, &res), 2);
	fclose(f);
	return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Wait (at most 60 s) until no more than FLOOR bytes are kept. */
static bool wait_kept_floor(void)
{
	double until = test_now() + 60.0;
	while (pool_slab_kept() > FLOOR && test_now() < until)
		usleep(2000);
	return pool_slab_kept() <= FLOOR;
}

/* Wait (at most 60 s) until at least target bytes were given back: the
 * decay thread may be giving a chunk back that it took off the kept list
 * (madvise runs with no lock held). */
static bool wait_given_back(size_t target)
{
	double until = test_now() + 60.0;
	while (pool_slab_given_back() < target && test_now() < until)
		usleep(1000);
	return pool_slab_given_back() >= target;
}

static void burst(ctx_store *s, int n, int round)
{
	char id[32], val[32];
	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "ctx-%d", i);
		ctx_txn *t;
		assert_ok(ctx_txn_begin_create(s, id, &t));
		for (int k = 0; k < 4; k++) {
			char key[8];
			int kl = snprintf(key, sizeof(key), "k%d", k);
			int vl = snprintf(val, sizeof(val), "v%d-%d-%d", round, i, k);
			assert_ok(ctx_txn_put(t, key, (size_t)kl, val, (size_t)vl));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
	size_t vl;
	assert_ok(ctx_get_value(s, "ctx-7", "k3", 2, val, sizeof(val), &vl));
	char want[32];
	assert_int_equal(vl, (size_t)snprintf(want, sizeof(want), "v%d-7-3", round));
	assert_memory_equal(val, want, vl);
}
#endif

/* Creates, close, creates again, close, idle: kept, reused, given back. */
static void test_burst_kept_reused_then_given_back(void **state)
{
	(void)state;
#ifdef T_ASAN
	skip();
#else
	int n = (int)test_iters(60000, 40000); /* ~22-33 MiB of slab blocks */
	pool_slab_set_decay(LONG, BIG);
	ctx_store *s = test_open_memory();
	burst(s, n, 0);
	ctx_close(s);
	size_t range = pool_slab_bytes(), back = pool_slab_given_back();
	size_t kept = pool_slab_kept(), rss_kept = rss_bytes();
	print_message("after the first burst: range %zu KiB, kept %zu KiB, given back %zu KiB, "
	              "RSS %zu KiB\n",
	              range >> 10, kept >> 10, back >> 10, rss_kept >> 10);
	/* Its chunks are kept (before round 18: all but 4 given back). */
	assert_true(kept >= FLOOR + 4 * CHUNK);

	s = test_open_memory();
	burst(s, n, 1);
	/* The second burst took the kept chunks: no new range (but for the
	 * chunks a thread's cache or rest kept busy), none given back. */
	assert_true(pool_slab_bytes() <= range + 2 * CHUNK);
	assert_int_equal(pool_slab_given_back(), back);
	assert_true(pool_slab_kept() < kept);
	ctx_close(s);
	assert_int_equal(pool_slab_given_back(), back);
	kept = pool_slab_kept();
	assert_true(kept >= FLOOR + 4 * CHUNK);

	/* Idle: with a short decay time the pool's thread gives them back. */
	size_t rss_before = rss_bytes();
	pool_slab_set_decay(100, BIG);
	assert_true(wait_kept_floor());
	size_t rss_after = rss_bytes();
	print_message("kept %zu KiB, given back %zu KiB more; RSS %zu -> %zu KiB\n", kept >> 10,
	              (pool_slab_given_back() - back) >> 10, rss_before >> 10, rss_after >> 10);
	assert_true(wait_given_back(back + (kept - FLOOR)));
#ifndef T_TSAN
	assert_true(rss_after + (kept - FLOOR) / 2 < rss_before);
#endif
	pool_slab_set_decay(LONG, BIG);
#endif
}

#ifndef T_ASAN
#define NBLK (1 << 17) /* 131,072 blocks of 32-272 bytes: ~19 MiB */
static void *blk[NBLK];

static void *alloc_all(void *arg)
{
	(void)arg;
	for (int i = 0; i < NBLK; i++) {
		blk[i] = pool_alloc(24 + 16 * (size_t)(i % 16));
		T_CHECK(blk[i] != NULL);
		if (blk[i])
			memset(blk[i], i & 0xff, 24);
	}
	return NULL;
}

static void *free_all(void *arg)
{
	(void)arg;
	for (int i = 0; i < NBLK; i++)
		pool_free(blk[i]);
	pool_trim();
	return NULL;
}

#endif

/* At most the bound is kept past the 4 chunks; a lower bound applies at once. */
static void test_kept_bytes_bounded(void **state)
{
	(void)state;
#ifdef T_ASAN
	skip();
#else
	reset_failures();
	pool_slab_set_decay(LONG, 3 * CHUNK);
	test_run_thread(alloc_all); /* takes the bare chunks of the test before first */
	size_t back = pool_slab_given_back();
	test_run_thread(free_all);
	assert_no_thread_failures();
	size_t kept = pool_slab_kept(), gone = pool_slab_given_back() - back;
	print_message("kept %zu KiB, given back %zu KiB\n", kept >> 10, gone >> 10);
	/* ~10 chunks emptied (but for a rest passed on): 7 kept, the others
	 * given back at once. */
	assert_true(kept <= FLOOR + 3 * CHUNK);
	assert_true(kept + gone >= FLOOR + 4 * CHUNK);
	assert_true(gone >= CHUNK);

	back = pool_slab_given_back();
	pool_slab_set_decay(LONG, CHUNK);
	print_message("bound lowered: kept %zu KiB, given back %zu KiB more\n",
	              pool_slab_kept() >> 10, (pool_slab_given_back() - back) >> 10);
	assert_true(pool_slab_kept() <= FLOOR + CHUNK);
	assert_true(wait_given_back(back + (kept - FLOOR - CHUNK)));

	/* Reused: the same burst again takes the kept and bare chunks. */
	size_t range = pool_slab_bytes();
	test_run_thread(alloc_all);
	assert_true(pool_slab_bytes() <= range + CHUNK);
	assert_true(pool_slab_kept() < FLOOR);
	test_run_thread(free_all);
	assert_no_thread_failures();
	assert_true(pool_slab_kept() <= FLOOR + CHUNK);
	pool_slab_set_decay(LONG, BIG);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_burst_kept_reused_then_given_back),
	    cmocka_unit_test(test_kept_bytes_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
