/*
 * test_review13_pool.c - round 13 review of the pool's slabs (pool.c) at
 * the edges: address-space limits, a failing mprotect, threads that come
 * and go, fork while other threads use the shared lists.
 *
 * - RLIMIT_AS: the slab range is reserved PROT_NONE, but the kernel counts
 *   it against RLIMIT_AS as any mapping; 64 GiB of it left a process under
 *   a limit of 64 GiB + 768 MiB less than 768 MiB for everything else (a
 *   1 GiB malloc failed after one ctx_put). The range is at most a quarter
 *   of the limit.
 * - RLIMIT_DATA (or strict overcommit): a chunk's mprotect fails, and each
 *   failure used up 2 MiB of the range for good: 32768 failing allocations
 *   and the process had no slabs left once the pressure was over, while
 *   pool_slab_bytes said 64 GiB were handed out. A failed chunk is given
 *   back.
 * - Threads that each allocate blocks of every class, free them and exit
 *   (their caches to the shared lists, their chunk's rest to the next
 *   thread): the slab memory stays that of the first few threads.
 * - fork while two threads take and put blocks on the shared lists (their
 *   mutexes): the child allocates and frees through them (pthread_atfork).
 *
 * The two limit tests run in a forked child before anything in this
 * process touched the pool (the range is reserved once, at the first slab
 * allocation), so they come first. Not under sanitizers: ASan has no
 * slabs, and both reserve terabytes of shadow that an RLIMIT_AS refuses
 * (their helpers are then unused).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define T_SANITIZER 1
#endif
#endif

/* A field of /proc/self/status in bytes (VmSize, VmData); 0 if absent. */
__attribute__((unused)) static size_t status_bytes(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return 0;
	char line[256];
	size_t n = strlen(field), kb = 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			kb = strtoull(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb << 10;
}

/* Run fn in a forked child; its exit status (0: passed). */
__attribute__((unused)) static int in_child(int (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn());
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

__attribute__((unused)) static int put_some(ctx_store *s)
{
	char key[32];
	if (ctx_create(s, "c") != CTX_OK)
		return 1;
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof(key), "k%d", i);
		if (ctx_put(s, "c", key, (size_t)n, "v", 1, NULL) != CTX_OK)
			return 1;
	}
	return 0;
}

__attribute__((unused)) static int child_rlimit_as(void)
{
	size_t vm = status_bytes("VmSize");
	if (!vm)
		return 10;
	struct rlimit rl = {vm + ((size_t)64 << 30) + ((size_t)768 << 20), RLIM_INFINITY};
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		return 11;
	ctx_store *s;
	if (ctx_open(NULL, &s) != CTX_OK || put_some(s))
		return 12;
	if (!pool_slab_bytes())
		return 13; /* slabs still in use, in a range that fits the limit */
	void *big = malloc((size_t)1 << 30);
	if (!big) {
		fprintf(stderr, "a 1 GiB malloc failed under RLIMIT_AS = VmSize + 64.75 GiB\n");
		return 1;
	}
	free(big);
	ctx_close(s);
	return 0;
}

/* The slab reserves a share of RLIMIT_AS, not 64 GiB of it. */
static void test_slab_under_rlimit_as(void **state)
{
	(void)state;
#ifdef T_SANITIZER
	skip();
#else
	assert_int_equal(pool_slab_bytes(), 0); /* nothing reserved in this process yet */
	assert_int_equal(in_child(child_rlimit_as), 0);
#endif
}

__attribute__((unused)) static int child_rlimit_data(void)
{
	size_t data = status_bytes("VmData");
	if (!data)
		return 10;
	/* Room for malloc's small blocks, none for a 2 MiB chunk. */
	struct rlimit tight = {data + ((size_t)1 << 20), RLIM_INFINITY};
	struct rlimit open = {RLIM_INFINITY, RLIM_INFINITY};
	if (setrlimit(RLIMIT_DATA, &tight) != 0)
		return 11;
	/* Each allocation finds an empty cache and no chunk: mprotect fails,
	 * malloc serves it, and the trim frees it (it is malloc's). */
	for (int i = 0; i < 40000; i++) {
		void *p = pool_alloc(100);
		if (!p)
			return 12;
		pool_free(p);
		pool_trim();
	}
	/* Malloc blocks kept across the end of the pressure, freed below among
	 * slab blocks: pool_free tells them apart (free() on a slab block, or a
	 * malloc block on a shared list, would be caught by glibc or the fill
	 * checks). */
	static void *m[100];
	for (int i = 0; i < 100; i++)
		if (!(m[i] = pool_alloc(100)))
			return 15;
	if (setrlimit(RLIMIT_DATA, &open) != 0)
		return 13;
	if (pool_slab_bytes() != 0) {
		fprintf(stderr,
		        "after failed chunks, pool_slab_bytes() = %zu (none was handed out)\n",
		        pool_slab_bytes());
		return 1;
	}
	/* The pressure is over: blocks are carved from a slab again. */
	static void *b[1000];
	for (int i = 0; i < 1000; i++)
		if (!(b[i] = pool_alloc(100)))
			return 14;
	size_t carved = pool_slab_bytes();
	for (int i = 0; i < 1000; i++) {
		pool_free(b[i]);
		if (i % 10 == 0)
			pool_free(m[i / 10]);
	}
	pool_trim();
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 1000; i++)
			if (!(b[i] = pool_alloc(100)))
				return 16;
			else
				memset(b[i], i & 0xff, 100);
		for (int i = 0; i < 1000; i++) {
			const unsigned char *q = b[i];
			if (q[0] != (i & 0xff) || q[99] != (i & 0xff))
				return 17;
			pool_free(b[i]);
		}
		pool_trim();
	}
	if (carved == 0 || carved > ((size_t)2 << 20)) {
		fprintf(stderr, "after the pressure, pool_slab_bytes() = %zu\n", carved);
		return 2;
	}
	return 0;
}

/* A chunk whose mprotect failed is given back: failures under a data limit
 * do not use up the range. */
static void test_slab_after_failed_chunks(void **state)
{
	(void)state;
#ifdef T_SANITIZER
	skip();
#else
	assert_int_equal(pool_slab_bytes(), 0);
	assert_int_equal(in_child(child_rlimit_data), 0);
#endif
}

/* ---- threads that come and go -------------------------------------------------------- */

#define CHURN_BLOCKS 1500

static void *churn_thread(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 7919 + 1;
	void *b[CHURN_BLOCKS];
	size_t sz[CHURN_BLOCKS];
	for (int i = 0; i < CHURN_BLOCKS; i++) {
		sz[i] = 1 + (size_t)test_rand_below(&rng, 264); /* every class */
		b[i] = pool_alloc(sz[i]);
		T_CHECK(b[i] != NULL);
		if (b[i])
			memset(b[i], i & 0xff, sz[i]);
	}
	for (int i = 0; i < CHURN_BLOCKS; i++) {
		const unsigned char *p = b[i];
		if (p)
			T_CHECK(p[0] == (i & 0xff) && p[sz[i] - 1] == (i & 0xff));
		pool_free(b[i]);
	}
	return NULL; /* its cache to the shared lists, its chunk's rest on */
}

static void churn(int threads, int base)
{
	for (int t = 0; t < threads; t += 2) {
		pthread_t a, b;
		assert_int_equal(
		    pthread_create(&a, NULL, churn_thread, (void *)(uintptr_t)(base + t)), 0);
		assert_int_equal(
		    pthread_create(&b, NULL, churn_thread, (void *)(uintptr_t)(base + t + 1)), 0);
		assert_int_equal(pthread_join(a, NULL), 0);
		assert_int_equal(pthread_join(b, NULL), 0);
	}
}

/* Many short-lived threads: slab memory does not grow with their number. */
static void test_slab_thread_churn_bounded(void **state)
{
	(void)state;
	reset_failures();
	churn(8, 0);
	size_t first = pool_slab_bytes();
	int threads = (int)test_iters(600, 60);
	churn(threads, 8);
	assert_no_thread_failures();
	/* Two threads at a time, each holding at most a chunk: a chunk or two
	 * more than the first eight needed, at most. */
	assert_true(pool_slab_bytes() <= first + ((size_t)4 << 20));
}

/* ---- fork while the shared lists are busy -------------------------------------------- */

#define BUSY_BLOCKS 500

typedef struct busy {
	atomic_bool stop;
} busy;

/* Allocate and free as the call_rcu worker does (every free to a shared
 * list, under its mutex), and take them back (slab_take, the same mutex). */
static void *busy_thread(void *arg)
{
	busy *b = arg;
	pool_bypass(true);
	static _Thread_local void *blk[BUSY_BLOCKS];
	while (!atomic_load(&b->stop)) {
		pool_bypass(false);
		for (int i = 0; i < BUSY_BLOCKS; i++)
			blk[i] = pool_alloc(40 + 16 * (size_t)(i % 8));
		pool_bypass(true);
		for (int i = 0; i < BUSY_BLOCKS; i++)
			pool_free(blk[i]);
	}
	return NULL;
}

static void test_fork_with_busy_lists(void **state)
{
	(void)state;
#ifdef T_SANITIZER
	/* ASan has no slabs, and its own allocator's locks are not kept
	 * usable across fork (the child hangs in asan_malloc). */
	skip();
#endif
	busy b = {false};
	pthread_t th[2];
	for (int t = 0; t < 2; t++)
		assert_int_equal(pthread_create(&th[t], NULL, busy_thread, &b), 0);
	int forks = (int)test_iters(200, 20);
	for (int f = 0; f < forks; f++) {
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			/* A lock copied held would hang here (ctest's timeout). */
			static void *blk[BUSY_BLOCKS];
			for (int i = 0; i < BUSY_BLOCKS; i++)
				if (!(blk[i] = pool_alloc(40 + 16 * (size_t)(i % 8))))
					_exit(1);
			pool_bypass(true);
			for (int i = 0; i < BUSY_BLOCKS; i++)
				pool_free(blk[i]);
			_exit(0);
		}
		int st = 0;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	atomic_store(&b.stop, true);
	for (int t = 0; t < 2; t++)
		assert_int_equal(pthread_join(th[t], NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    /* first: nothing in this process may have touched the pool */
	    cmocka_unit_test(test_slab_under_rlimit_as),
	    cmocka_unit_test(test_slab_after_failed_chunks),
	    cmocka_unit_test(test_slab_thread_churn_bounded),
	    cmocka_unit_test(test_fork_with_busy_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
