/*
 * test_pool.c - the per-thread cache of freed blocks in front of malloc
 * (pool.c), alone and under commits.
 *
 * A block from pool_alloc must hold the bytes asked for whatever class it
 * came from (a block is filed under the largest class its usable size
 * covers, and served to requests of the smallest class that holds them); a
 * block may be freed by a thread other than its allocator; what a thread
 * keeps is freed when it exits or trims (ASan's leak check sees a loss);
 * under ASan a kept block is poisoned. Under commits, the blocks of cut
 * versions pass between threads through the caches: every value read back
 * must be the last one written. Slab blocks (pool.c) are reused across
 * threads and a thread's chunk outlives it. Run under ASan and TSan.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"

#ifdef T_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define NBLOCKS 600
#define MAXSIZE 400

/* Allocate n blocks of sizes from rng, fill each whole, check its size. */
static void fill_blocks(void **b, size_t *sz, int n, uint64_t *rng)
{
	for (int i = 0; i < n; i++) {
		sz[i] = 1 + (size_t)test_rand_below(rng, MAXSIZE);
		b[i] = pool_alloc(sz[i]);
		assert_non_null(b[i]);
		assert_true(pool_usable_size(b[i]) >= sz[i]);
		memset(b[i], (int)(i & 0xff), sz[i]);
	}
}

/* Check the fill of fill_blocks and free the blocks in a shuffled order. */
static void check_and_free(void **b, size_t *sz, int n, uint64_t *rng)
{
	for (int i = 0; i < n; i++) {
		const unsigned char *p = b[i];
		for (size_t j = 0; j < sz[i]; j++)
			assert_int_equal(p[j], i & 0xff);
	}
	for (int i = n - 1; i > 0; i--) {
		int j = (int)test_rand_below(rng, (uint64_t)i + 1);
		void *t = b[i];
		b[i] = b[j];
		b[j] = t;
	}
	for (int i = 0; i < n; i++)
		pool_free(b[i]);
}

/* Blocks of every size, freed and reused in random orders: each holds its
 * request (a block filed one class too high would be short by up to 16
 * bytes: the size check, and ASan on the fill, catch it). */
static void test_blocks_hold_their_request(void **state)
{
	(void)state;
	static void *b[NBLOCKS];
	static size_t sz[NBLOCKS];
	uint64_t rng = test_seed("pool-sizes", 11);
	for (int round = 0; round < 20; round++) {
		fill_blocks(b, sz, NBLOCKS, &rng);
		check_and_free(b, sz, NBLOCKS, &rng);
	}
	for (size_t size = 1; size <= MAXSIZE; size++) {
		void *p = pool_alloc(size);
		assert_non_null(p);
		assert_true(pool_usable_size(p) >= size);
		memset(p, 1, size);
		pool_free(p);
	}
	pool_free(NULL);
	pool_trim();
}

/* A block freed last is served first, to a request of its class (152 and
 * 104 bytes fill their classes' blocks exactly, with glibc and under ASan,
 * whose usable size is the request). */
static void test_freed_block_reused(void **state)
{
	(void)state;
	pool_trim();
	void *a = pool_alloc(152), *b = pool_alloc(152);
	pool_free(a);
	pool_free(b);
	assert_ptr_equal(pool_alloc(152), b);
	assert_ptr_equal(pool_alloc(152), a);
	pool_free(a); /* a slab block is not a malloc block: never free() */
	pool_free(b);
#ifdef T_ASAN
	void *p = pool_alloc(104);
	pool_free(p);
	/* All but the link to the next kept block (LeakSanitizer must see it). */
	assert_false(__asan_address_is_poisoned(p));
	assert_true(__asan_address_is_poisoned((char *)p + sizeof(void *)));
	assert_true(__asan_address_is_poisoned((char *)p + 96));
	assert_ptr_equal(pool_alloc(104), p);
	assert_false(__asan_address_is_poisoned((char *)p + sizeof(void *)));
	pool_free(p);
#endif
	pool_trim();
}

/* pool_free_sized: blocks of every size freed with their request's size, or
 * a smaller one, in random orders, then allocated again and filled whole:
 * none is handed out for a request it cannot hold (the size check, and
 * ASan on the fill; under TSan and ASan a block is exactly its request, so
 * filing it by the size rounded up to a class overflows: the first version
 * of pool_free_sized did, on glibc's word). A block freed with a size that
 * fills a class comes back for that request. */
static void test_sized_free(void **state)
{
	(void)state;
	static void *b[NBLOCKS];
	static size_t sz[NBLOCKS];
	uint64_t rng = test_seed("pool-sized", 13);
	pool_trim();
	for (int round = 0; round < 20; round++) {
		fill_blocks(b, sz, NBLOCKS, &rng);
		for (int i = 0; i < NBLOCKS; i++) {
			size_t less = test_rand_below(&rng, 3) == 0
			                  ? (size_t)test_rand_below(&rng, sz[i]) + 1
			                  : sz[i];
			pool_free_sized(b[i], less);
		}
	}
	for (size_t size = 1; size <= MAXSIZE; size++) {
		void *p = pool_alloc(size);
		assert_non_null(p);
		assert_true(pool_usable_size(p) >= size);
		memset(p, 1, size);
		pool_free_sized(p, size);
		/* A size that is a class's usable size (24, 40, ... 264) files
		 * the block in that class, which serves the same request. */
		if (size < 24 || size > 264 || (size - 24) % 16 != 0)
			continue;
		assert_ptr_equal(pool_alloc(size), p);
		pool_free_sized(p, size);
	}
	pool_free_sized(NULL, 8);
	pool_trim();
}

/* While bypassed, nothing is kept: a freed block goes back to malloc. */
static void test_bypass(void **state)
{
	(void)state;
	pool_bypass(true);
	void *a = pool_alloc(200), *b = pool_alloc(200);
	pool_free(a);
	pool_free(b);
	pool_bypass(false);
	void *c = pool_alloc(200);
	assert_non_null(c);
	pool_free(c);
	pool_trim();
}

typedef struct handoff {
	void **b;
	size_t *sz;
	int n;
} handoff;

/* Free another thread's blocks into this thread's cache, allocate from it,
 * and exit with blocks kept (the exit destructor frees them). */
static void *free_foreign(void *arg)
{
	handoff *h = arg;
	uint64_t rng = 5;
	check_and_free(h->b, h->sz, h->n, &rng);
	void *mine[NBLOCKS];
	size_t msz[NBLOCKS];
	fill_blocks(mine, msz, h->n, &rng);
	check_and_free(mine, msz, h->n, &rng);
	return NULL;
}

static void test_foreign_blocks_and_exit(void **state)
{
	(void)state;
	static void *b[NBLOCKS];
	static size_t sz[NBLOCKS];
	uint64_t rng = test_seed("pool-foreign", 3);
	for (int t = 0; t < 4; t++) {
		fill_blocks(b, sz, NBLOCKS, &rng);
		handoff h = {b, sz, NBLOCKS};
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, free_foreign, &h), 0);
		assert_int_equal(pthread_join(th, NULL), 0);
	}
}

/* SLABS (pool.c): a thread that exits leaves the rest of its chunk to the
 * next one, so threads that come and go each allocating a little do not
 * take a 2 MiB chunk each; and slab blocks freed past a cache's bounds, by
 * a bypassed thread (the call_rcu worker) or kept at a thread's exit, go to
 * their class's shared list, from which other threads allocate them again
 * before carving new memory. Under ASan there are no slabs. */
#define SLAB_THREADS 100
#define SLAB_BLOCKS  2000

static void *alloc_one(void *arg)
{
	*(void **)arg = pool_alloc(100);
	assert_non_null(*(void **)arg);
	memset(*(void **)arg, 7, 100);
	return NULL;
}

static void test_slab_rest_passed_on(void **state)
{
	(void)state;
	void *mine = pool_alloc(100);
	size_t before = pool_slab_bytes();
	static void *b[SLAB_THREADS];
	for (int t = 0; t < SLAB_THREADS; t++) {
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, alloc_one, &b[t]), 0);
		assert_int_equal(pthread_join(th, NULL), 0);
	}
	/* At most one new chunk for all of them (the first may find no rest). */
	assert_true(pool_slab_bytes() <= before + ((size_t)2 << 20));
	for (int t = 0; t < SLAB_THREADS; t++) {
		const unsigned char *p = b[t];
		for (int j = 0; j < 100; j++)
			assert_int_equal(p[j], 7);
		pool_free(b[t]);
	}
	pool_free(mine);
	pool_trim();
}

typedef struct slab_job {
	void **b;
	bool bypass; /* free as the call_rcu worker does */
} slab_job;

static void *alloc_many(void *arg)
{
	slab_job *j = arg;
	for (int i = 0; i < SLAB_BLOCKS; i++) {
		j->b[i] = pool_alloc(200);
		assert_non_null(j->b[i]);
		memset(j->b[i], i & 0xff, 200);
	}
	return NULL;
}

static void *free_many(void *arg)
{
	slab_job *j = arg;
	if (j->bypass)
		pool_bypass(true);
	for (int i = 0; i < SLAB_BLOCKS; i++) {
		const unsigned char *p = j->b[i];
		assert_int_equal(p[0], i & 0xff);
		assert_int_equal(p[199], i & 0xff);
		pool_free(j->b[i]);
	}
	return NULL; /* what it kept goes to the shared lists at exit */
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
	return x < y ? -1 : x > y;
}

static void run(void *(*fn)(void *), slab_job *j)
{
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, fn, j), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
}

static void test_slab_blocks_shared(void **state)
{
	(void)state;
	pool_trim();
	static void *a[SLAB_BLOCKS], *c[SLAB_BLOCKS], *sa[SLAB_BLOCKS], *sc[SLAB_BLOCKS];
	for (int bypass = 0; bypass < 2; bypass++) {
		slab_job ja = {a, bypass}, jc = {c, false};
		run(alloc_many, &ja);
		memcpy(sa, a, sizeof(a));
		run(free_many, &ja); /* past its cache's bounds, then at exit */
		size_t carved = pool_slab_bytes();
		run(alloc_many, &jc);
		if (carved) { /* slabs: all of them again, nothing new carved */
			assert_int_equal(pool_slab_bytes(), carved);
			memcpy(sc, c, sizeof(c));
			qsort(sa, SLAB_BLOCKS, sizeof(*sa), cmp_ptr);
			qsort(sc, SLAB_BLOCKS, sizeof(*sc), cmp_ptr);
			for (int i = 0; i < SLAB_BLOCKS; i++)
				assert_ptr_equal(sa[i], sc[i]);
		}
		jc.bypass = true;
		run(free_many, &jc);
	}
}

/* Blocks freed to the shared lists in an order that alternates between
 * chunks come back a chunk at a time: a thread allocating in a row gets
 * blocks that lie close together (a store loaded after others were dropped
 * reads as fast as a fresh one; round 13). With one list across chunks the
 * allocations alternated between chunks 2.5 MB apart. */
#define SPREAD_BLOCKS 36000 /* of 208 bytes: ~7.5 MB, 4-5 chunks */

static void *alloc_spread(void *arg)
{
	void **b = arg;
	for (int i = 0; i < SPREAD_BLOCKS; i++) {
		b[i] = pool_alloc(200);
		assert_non_null(b[i]);
	}
	return NULL;
}

static void *free_spread(void *arg)
{
	void **b = arg;
	pool_bypass(true); /* every block to the shared lists */
	int third = SPREAD_BLOCKS / 3;
	for (int i = 0; i < third; i++)
		for (int j = 0; j < 3; j++)
			pool_free(b[i + j * third]);
	return NULL;
}

static void test_slab_reuse_by_chunk(void **state)
{
	(void)state;
	pool_trim();
	static void *a[SPREAD_BLOCKS], *c[SPREAD_BLOCKS];
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, alloc_spread, a), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (!pool_slab_bytes())
		skip(); /* no slabs (ASan): malloc's order */
	assert_int_equal(pthread_create(&th, NULL, free_spread, a), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	size_t carved = pool_slab_bytes();
	assert_int_equal(pthread_create(&th, NULL, alloc_spread, c), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(pool_slab_bytes(), carved); /* all reused */
	int jumps = 0;
	for (int i = 1; i < SPREAD_BLOCKS; i++) {
		uintptr_t x = (uintptr_t)c[i - 1], y = (uintptr_t)c[i];
		jumps += (x > y ? x - y : y - x) >= ((size_t)2 << 20);
	}
	assert_true(jumps <= 16);
	for (int i = 0; i < SPREAD_BLOCKS; i++)
		pool_free(c[i]);
	pool_trim();
}

/* Threads allocating and freeing each other's blocks at once, some as the
 * call_rcu worker (through the shared lists): every block holds what its
 * allocator wrote until it is freed. For TSan. */
#define MIX_THREADS 4

static void *mix_loop(void *arg)
{
	slab_job *j = arg;
	for (int r = 0; r < 5; r++) {
		alloc_many(j);
		free_many(j);
	}
	return NULL;
}

static void test_slab_concurrent(void **state)
{
	(void)state;
	static void *b[MIX_THREADS][SLAB_BLOCKS];
	slab_job j[MIX_THREADS];
	pthread_t th[MIX_THREADS];
	for (int t = 0; t < MIX_THREADS; t++) {
		j[t] = (slab_job){b[t], t % 2 == 1};
		assert_int_equal(pthread_create(&th[t], NULL, mix_loop, &j[t]), 0);
	}
	for (int t = 0; t < MIX_THREADS; t++)
		assert_int_equal(pthread_join(th[t], NULL), 0);
}

/* A child of fork allocates and frees through the pool, slab lists
 * included (pthread_atfork keeps their locks usable). */
static void test_slab_after_fork(void **state)
{
	(void)state;
	static void *a[SLAB_BLOCKS];
	slab_job ja = {a, true};
	run(alloc_many, &ja);
	run(free_many, &ja); /* on the shared lists */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (int i = 0; i < SLAB_BLOCKS; i++)
			if (!(a[i] = pool_alloc(200)))
				_exit(1);
		for (int i = 0; i < SLAB_BLOCKS; i++)
			pool_free(a[i]);
		pool_trim();
		_exit(0);
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

#define CONTEXTS 8
#define KEYS     16
#define WRITERS  4

typedef struct writer {
	ctx_store *s;
	int n;
	long commits;
} writer;

/* The value of commit i of writer n: its length walks through every block
 * class of the leaves. */
static size_t value_of(int n, long i, char *buf)
{
	size_t len = 1 + (size_t)(i * 7 % 260);
	for (size_t j = 0; j < len; j++)
		buf[j] = (char)('a' + (n * 31 + i + (long)j) % 26);
	return len;
}

static void *write_loop(void *arg)
{
	writer *w = arg;
	char id[16], key[16], val[300];
	for (long i = 0; i < w->commits; i++) {
		snprintf(id, sizeof(id), "c%ld", i % CONTEXTS);
		int klen = snprintf(key, sizeof(key), "w%d-%ld", w->n, i / CONTEXTS % KEYS);
		size_t vlen = value_of(w->n, i, val);
		T_CHECK_STATUS(ctx_put(w->s, id, key, (size_t)klen, val, vlen, NULL), CTX_OK);
	}
	return NULL;
}

/* Writers share contexts, so each frees (into its cache) the nodes and
 * leaves others allocated when it cuts their versions; every key must read
 * back as its last write. */
static void test_commits_through_caches(void **state)
{
	(void)state;
	reset_failures();
	ctx_store *s = test_open_memory();
	char id[16];
	for (int c = 0; c < CONTEXTS; c++) {
		snprintf(id, sizeof(id), "c%d", c);
		assert_int_equal(ctx_create(s, id), CTX_OK);
	}
	long commits = test_iters(20000, 2000);
	commits -= commits % (CONTEXTS * KEYS);
	writer w[WRITERS];
	pthread_t th[WRITERS];
	for (int n = 0; n < WRITERS; n++) {
		w[n] = (writer){s, n, commits};
		assert_int_equal(pthread_create(&th[n], NULL, write_loop, &w[n]), 0);
	}
	for (int n = 0; n < WRITERS; n++)
		assert_int_equal(pthread_join(th[n], NULL), 0);
	assert_no_thread_failures();
	char key[16], want[300];
	for (int n = 0; n < WRITERS; n++) {
		for (long i = commits - CONTEXTS * KEYS; i < commits; i++) {
			snprintf(id, sizeof(id), "c%ld", i % CONTEXTS);
			int klen = snprintf(key, sizeof(key), "w%d-%ld", n, i / CONTEXTS % KEYS);
			size_t wlen = value_of(n, i, want);
			ctx_state *st;
			assert_int_equal(ctx_get(s, id, &st), CTX_OK);
			const void *v;
			size_t vlen;
			assert_true(ctx_state_lookup(st, key, (size_t)klen, &v, &vlen));
			assert_int_equal(vlen, wlen);
			assert_memory_equal(v, want, wlen);
			ctx_state_release(st);
		}
	}
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_blocks_hold_their_request),
	    cmocka_unit_test(test_freed_block_reused),
	    cmocka_unit_test(test_sized_free),
	    cmocka_unit_test(test_bypass),
	    cmocka_unit_test(test_foreign_blocks_and_exit),
	    cmocka_unit_test(test_slab_rest_passed_on),
	    cmocka_unit_test(test_slab_blocks_shared),
	    cmocka_unit_test(test_slab_reuse_by_chunk),
	    cmocka_unit_test(test_slab_concurrent),
	    cmocka_unit_test(test_slab_after_fork),
	    cmocka_unit_test(test_commits_through_caches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
