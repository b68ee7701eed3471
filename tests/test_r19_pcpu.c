/*
 * test_r19_pcpu.c - the per-CPU front of pool.c's block cache (round 19).
 *
 * With more threads keeping a cache than twice the CPUs, a thread keeps a
 * few blocks a class and passes the rest to the front of the CPU it runs
 * on, where the next thread on that CPU takes them. Checked: blocks freed
 * by one thread are handed to another on the same CPU while the first is
 * still alive (without the front they stay in the first thread's cache);
 * no front holds more than its bound with many threads allocating and
 * freeing bursts, and pool_trim empties every front; threads that exit
 * while others allocate leave no block handed out twice (each block is
 * stamped by its owner and checked before it is freed); a child of fork
 * allocates and frees with the fronts in use. Under ASan there are no
 * fronts (nor slabs): the tests check that the front is off. Run under
 * TSan too.
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

#define FRONTS 64 /* pool.c's PCPU_SLOTS */

/* Threads that keep a cache and wait: enough of them turn the front on. */
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

/* Enough parked threads for the front: more than twice the CPUs. */
static int park_enough(void)
{
	return 2 * get_nprocs() + 2;
}

static void check_fronts_bounded(void)
{
	for (unsigned i = 0; i < FRONTS; i++)
		assert_true(pool_cpu_front_bytes(i) <= pool_cpu_front_bound());
}

static size_t fronts_bytes(void)
{
	size_t all = 0;
	for (unsigned i = 0; i < FRONTS; i++)
		all += pool_cpu_front_bytes(i);
	return all;
}

/* --- blocks freed on one thread reused by another on the same CPU --- */
#ifndef T_ASAN

#define REUSE_N    256
#define REUSE_SIZE 100

static struct {
	int cpu;
	void *freed[REUSE_N];
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int stage; /* 1: the freer freed; 2: the taker is done */
	int reused;
} reuse = {0, {0}, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static bool pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

static void reuse_wait(int stage)
{
	pthread_mutex_lock(&reuse.lock);
	while (reuse.stage < stage)
		pthread_cond_wait(&reuse.cv, &reuse.lock);
	pthread_mutex_unlock(&reuse.lock);
}

static void reuse_signal(int stage)
{
	pthread_mutex_lock(&reuse.lock);
	reuse.stage = stage;
	pthread_cond_broadcast(&reuse.cv);
	pthread_mutex_unlock(&reuse.lock);
}

/* Frees REUSE_N blocks, then stays alive (its cache with it) until the
 * taker is done. */
static void *reuse_freer(void *arg)
{
	(void)arg;
	T_CHECK(pin(reuse.cpu));
	for (int i = 0; i < REUSE_N; i++) {
		reuse.freed[i] = pool_alloc(REUSE_SIZE);
		T_CHECK(reuse.freed[i] != NULL);
		memset(reuse.freed[i], 0x5a, REUSE_SIZE);
	}
	for (int i = 0; i < REUSE_N; i++)
		pool_free(reuse.freed[i]);
	reuse_signal(1);
	reuse_wait(2);
	return NULL;
}

static void *reuse_taker(void *arg)
{
	(void)arg;
	T_CHECK(pin(reuse.cpu));
	reuse_wait(1);
	void *got[REUSE_N];
	int reused = 0;
	for (int i = 0; i < REUSE_N; i++) {
		got[i] = pool_alloc(REUSE_SIZE);
		T_CHECK(got[i] != NULL);
		for (int j = 0; j < REUSE_N; j++)
			reused += got[i] == reuse.freed[j];
	}
	for (int i = 0; i < REUSE_N; i++)
		pool_free(got[i]);
	reuse.reused = reused;
	reuse_signal(2);
	return NULL;
}
#endif

static void test_freed_blocks_reused_on_the_cpu(void **state)
{
	(void)state;
	park_start(park_enough());
#ifdef T_ASAN
	assert_false(pool_cpu_front_on());
	park_stop();
	skip();
#else
	assert_true(pool_cpu_front_on());
	int cpu = sched_getcpu();
	assert_true(cpu >= 0);
	reuse.cpu = cpu;
	reuse.stage = 0;
	pthread_t f, t;
	assert_int_equal(pthread_create(&f, NULL, reuse_freer, NULL), 0);
	assert_int_equal(pthread_create(&t, NULL, reuse_taker, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(pthread_join(f, NULL), 0);
	assert_no_thread_failures();
	/* The freer keeps at most pool.c's POOL_MAG (32) of them; a trylock
	 * may fail now and then (the taker is on the same CPU, but TSan's
	 * own threads and a failed pin are not ruled out): most, not all. */
	printf("blocks of the freer reused by the taker: %d of %d\n", reuse.reused, REUSE_N);
	assert_true(reuse.reused >= REUSE_N / 2);
	check_fronts_bounded();
	park_stop();
	pool_trim();
	assert_int_equal(fronts_bytes(), 0);
#endif
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
		for (unsigned f = 0; f < FRONTS; f++)
			T_CHECK(pool_cpu_front_bytes(f) <= pool_cpu_front_bound());
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
		assert_int_equal(pthread_create(&t[i], NULL, burst_main, (void *)(uintptr_t)(i + 1)),
		                 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	free(t);
	assert_no_thread_failures();
	check_fronts_bounded();
	/* Every thread that kept a cache exited: the front is off again, and
	 * pool_trim gives back what the fronts still hold. */
	assert_false(pool_cpu_front_on());
	pool_trim();
	assert_int_equal(fronts_bytes(), 0);
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
	return NULL; /* its cache goes to the shared lists, its fronts' blocks stay */
}

static void test_threads_exit_while_others_allocate(void **state)
{
	(void)state;
	park_start(park_enough());
#ifndef T_ASAN
	assert_true(pool_cpu_front_on());
#endif
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
	check_fronts_bounded();
	park_stop();
	pool_trim();
	assert_int_equal(fronts_bytes(), 0);
}

/* --- fork with the fronts in use --- */
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

static void test_fork_with_fronts(void **state)
{
	(void)state;
#ifdef T_TSAN
	skip(); /* fork of a threaded process: test_r18_fork covers the handlers */
#else
	park_start(park_enough());
	test_run_thread(fork_fill); /* blocks in this CPU's front */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* One thread: the front is off, and what the fronts held is
		 * still there to be given back. */
		void *b[1000];
		for (int i = 0; i < 1000; i++)
			if (!(b[i] = pool_alloc(64)))
				_exit(2);
		for (int i = 0; i < 1000; i++)
			pool_free(b[i]);
		pool_trim();
		_exit(pool_cpu_front_on() ? 3 : fronts_bytes() ? 4 : 0);
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
	    cmocka_unit_test(test_freed_blocks_reused_on_the_cpu),
	    cmocka_unit_test(test_bounds_with_many_threads),
	    cmocka_unit_test(test_threads_exit_while_others_allocate),
	    cmocka_unit_test(test_fork_with_fronts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
