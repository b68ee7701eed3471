/*
 * test_r19_pcpu.c - pool.c's block caches with many threads (round 19).
 *
 * Round 19 tried a per-CPU front for the block cache (blocks freed on a
 * CPU handed to the next thread there) and did not keep it
 * (docs/benchmarks.md, r19-pcpu). What any such change must keep, and
 * what this checks on the per-thread caches: the blocks a thread kept are
 * passed on when it exits and reused by a thread that allocates after it;
 * with more threads than twice the CPUs allocating and freeing bursts
 * (past a thread cache's bounds) and threads exiting among them, no block
 * is handed out twice (each is stamped by its owner and checked before it
 * is freed) and none comes back changed; a child of fork allocates and
 * frees while its parent's threads were doing so. Run under ASan and TSan.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"

/* Threads that keep a cache and wait. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool go;
	int ready;
	pthread_t *t;
	int n;
} park = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, NULL, 0};

static void *park_main(void *arg)
{
	(void)arg;
	pool_free(pool_alloc(40)); /* keeps a cache: counted */
	pthread_mutex_lock(&park.lock);
	park.ready++;
	pthread_cond_broadcast(&park.cv);
	while (!park.go)
		pthread_cond_wait(&park.cv, &park.lock);
	pthread_mutex_unlock(&park.lock);
	return NULL;
}

/* Start n parked threads and wait until each keeps a cache. */
static void park_start(int n)
{
	park.go = false;
	park.ready = 0;
	park.n = n;
	park.t = calloc((size_t)n, sizeof(*park.t));
	assert_non_null(park.t);
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_create(&park.t[i], NULL, park_main, NULL), 0);
	pthread_mutex_lock(&park.lock);
	while (park.ready < n)
		pthread_cond_wait(&park.cv, &park.lock);
	pthread_mutex_unlock(&park.lock);
}

static void park_stop(void)
{
	pthread_mutex_lock(&park.lock);
	park.go = true;
	pthread_cond_broadcast(&park.cv);
	pthread_mutex_unlock(&park.lock);
	for (int i = 0; i < park.n; i++)
		assert_int_equal(pthread_join(park.t[i], NULL), 0);
	free(park.t);
	park.t = NULL;
}

/* More threads than twice the CPUs (where the front would have been on). */
static int park_enough(void)
{
	return 2 * get_nprocs() + 2;
}

/* --- the blocks of an exited thread reused by the next --- */

#define REUSE_N    256
#define REUSE_SIZE 100

static void *reuse_freed[REUSE_N];
static int reuse_count;

/* Keeps REUSE_N blocks (in its cache: under its bounds) and exits. */
static void *reuse_freer(void *arg)
{
	(void)arg;
	for (int i = 0; i < REUSE_N; i++) {
		reuse_freed[i] = pool_alloc(REUSE_SIZE);
		T_CHECK(reuse_freed[i] != NULL);
		memset(reuse_freed[i], 0x5a, REUSE_SIZE);
	}
	for (int i = 0; i < REUSE_N; i++)
		pool_free(reuse_freed[i]);
	return NULL;
}

static void *reuse_taker(void *arg)
{
	(void)arg;
	void *got[REUSE_N];
	int reused = 0;
	for (int i = 0; i < REUSE_N; i++) {
		got[i] = pool_alloc(REUSE_SIZE);
		T_CHECK(got[i] != NULL);
		for (int j = 0; j < REUSE_N; j++)
			reused += got[i] == reuse_freed[j];
	}
	for (int i = 0; i < REUSE_N; i++)
		pool_free(got[i]);
	reuse_count = reused;
	return NULL;
}

static void test_exited_threads_blocks_reused(void **state)
{
	(void)state;
	park_start(park_enough()); /* as many threads as the front wanted */
	test_run_thread(reuse_freer);
	test_run_thread(reuse_taker);
	assert_no_thread_failures();
	printf("blocks of the exited thread reused by the next: %d of %d\n", reuse_count, REUSE_N);
#ifndef T_ASAN
	/* Its cache went to the slab lists of its chunk at its exit, and the
	 * next thread's allocations take them from there before carving (no
	 * slabs under ASan: malloc's blocks, which glibc may hand out anywhere). */
	assert_true(reuse_count >= REUSE_N / 2);
#endif
	park_stop();
}

/* --- bounds with many threads --- */

#define BURST_MAX 700
#define MAX_SIZE  272

static atomic_int burst_rounds;

static void *burst_main(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;
	static _Thread_local void *b[BURST_MAX];
	static _Thread_local size_t sz[BURST_MAX];
	int rounds = atomic_load(&burst_rounds);
	for (int r = 0; r < rounds; r++) {
		int n = 1 + (int)test_rand_below(&rng, BURST_MAX);
		for (int i = 0; i < n; i++) {
			sz[i] = 1 + (size_t)test_rand_below(&rng, MAX_SIZE);
			b[i] = pool_alloc(sz[i]);
			T_CHECK(b[i] != NULL);
			if (b[i])
				memset(b[i], (int)(i & 0xff), sz[i]);
		}
		for (int i = 0; i < n; i++) {
			const unsigned char *p = b[i];
			for (size_t j = 0; p && j < sz[i]; j++)
				if (p[j] != (i & 0xff)) {
					T_CHECK(p[j] == (i & 0xff));
					break;
				}
		}
		for (int i = n - 1; i >= 0; i--)
			pool_free(b[i]);
	}
	return NULL;
}

static void test_bounds_with_many_threads(void **state)
{
	(void)state;
	int n = park_enough() + 8;
	atomic_store(&burst_rounds, (int)test_iters(60, 4));
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	assert_non_null(t);
	for (int i = 0; i < n; i++)
		assert_int_equal(
		    pthread_create(&t[i], NULL, burst_main, (void *)(uintptr_t)(i + 1)), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	free(t);
	assert_no_thread_failures();
	pool_trim();
}

/* --- threads exiting while others allocate --- */

#define OWN_N 300

static atomic_bool own_stop;

/* Allocate OWN_N blocks stamped with (owner, index), check every stamp,
 * free them; rounds times (0: until own_stop). */
static void own_round(uint64_t owner, uint64_t *rng)
{
	uint64_t *b[OWN_N];
	int n = 1 + (int)test_rand_below(rng, OWN_N);
	for (int i = 0; i < n; i++) {
		size_t size = 16 + (size_t)test_rand_below(rng, 200);
		b[i] = pool_alloc(size);
		T_CHECK(b[i] != NULL);
		b[i][0] = owner;
		b[i][1] = (uint64_t)i;
	}
	sched_yield(); /* let others run on this CPU between */
	for (int i = 0; i < n; i++) {
		T_CHECK(b[i][0] == owner && b[i][1] == (uint64_t)i);
		pool_free(b[i]);
	}
}

static atomic_ulong own_next = 1;

static void *own_long(void *arg)
{
	(void)arg;
	uint64_t owner = atomic_fetch_add(&own_next, 1), rng = owner;
	while (!atomic_load(&own_stop))
		own_round(owner, &rng);
	return NULL;
}

static void *own_short(void *arg)
{
	(void)arg;
	uint64_t owner = atomic_fetch_add(&own_next, 1), rng = owner;
	for (int r = 0; r < 3; r++)
		own_round(owner, &rng);
	return NULL; /* its cache goes to the shared lists */
}

static void test_threads_exit_while_others_allocate(void **state)
{
	(void)state;
	park_start(park_enough());
	enum { LONG = 6, WAVE = 8 };
	pthread_t l[LONG], w[WAVE];
	atomic_store(&own_stop, false);
	for (int i = 0; i < LONG; i++)
		assert_int_equal(pthread_create(&l[i], NULL, own_long, NULL), 0);
	long waves = test_iters(40, 4);
	for (long v = 0; v < waves; v++) {
		for (int i = 0; i < WAVE; i++)
			assert_int_equal(pthread_create(&w[i], NULL, own_short, NULL), 0);
		for (int i = 0; i < WAVE; i++)
			assert_int_equal(pthread_join(w[i], NULL), 0);
	}
	atomic_store(&own_stop, true);
	for (int i = 0; i < LONG; i++)
		assert_int_equal(pthread_join(l[i], NULL), 0);
	assert_no_thread_failures();
	park_stop();
	pool_trim();
}

/* --- fork while many threads kept caches --- */
#ifndef T_TSAN

static void *fork_fill(void *arg)
{
	(void)arg;
	void *b[200];
	for (int i = 0; i < 200; i++)
		b[i] = pool_alloc(64);
	for (int i = 0; i < 200; i++)
		pool_free(b[i]);
	return NULL;
}
#endif

static void test_fork_with_many_caches(void **state)
{
	(void)state;
#ifdef T_TSAN
	skip(); /* fork of a threaded process: test_r18_fork covers the handlers */
#else
	park_start(park_enough());
	test_run_thread(fork_fill); /* blocks on the slab lists */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* One thread, the slab locks released by pool.c's handlers. */
		void *b[1000];
		for (int i = 0; i < 1000; i++)
			if (!(b[i] = pool_alloc(64)))
				_exit(2);
		for (int i = 0; i < 1000; i++)
			pool_free(b[i]);
		pool_trim();
		_exit(0);
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	park_stop();
	pool_trim();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exited_threads_blocks_reused),
	    cmocka_unit_test(test_bounds_with_many_threads),
	    cmocka_unit_test(test_threads_exit_while_others_allocate),
	    cmocka_unit_test(test_fork_with_many_caches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
