/*
 * test_r20_huge.c - slab chunks on huge pages, carved by threads in
 * pieces (pool.c, PIECES AND HUGE PAGES, round 20).
 *
 * Before round 20 every thread that carved took a 2 MiB chunk of its own:
 * 64 threads took 64 chunks (on huge pages, 64 pages of 2 MiB zeroed). Now
 * a chunk is cut into 128 KiB pieces shared out among threads.
 *
 * - 64 threads each carve blocks of every class at once (all alive, none
 *   freed meanwhile): every byte keeps its owner's stamp (no block overlaps
 *   another), and the blocks lie in at most 8 chunks (before: 64; checked
 *   by setting SLAB_PIECE to SLAB_CHUNK, which is the old scheme).
 * - Waves of threads that allocate megabytes, free them and exit: the
 *   chunks come back (kept or given back) but for a few holding pieces not
 *   yet carved, and the next waves reuse them (the range does not grow).
 *   The waves reach past the range's first 32 MiB, which is on small pages
 *   collapsed into huge ones, into the part advised MADV_HUGEPAGE.
 * - pool_slab_huge() says what the kernel's THP mode allows, and a process
 *   that turned huge pages off (pool_slab_use_huge(false), as with THP
 *   "never") carves the same way: the first check again in a child.
 *
 * Under ASan (no slabs: malloc's blocks) only the stamps and the overlap
 * are checked.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"

#define THREADS 64
#define PER     32 /* blocks per thread: two of each class */
#define CHUNK   ((size_t)2 << 20)

typedef struct {
	unsigned char *p;
	size_t size;
} carved;

static carved blocks[THREADS * PER];
static pthread_barrier_t all_carved;

static unsigned char stamp(size_t i)
{
	return (unsigned char)(i * 7 + 1);
}

static void *carver_main(void *arg)
{
	size_t t = (size_t)(uintptr_t)arg;
	for (size_t i = 0; i < PER; i++) {
		size_t n = t * PER + i, size = 24 + 16 * (i % 16); /* every class */
		unsigned char *p = pool_alloc(size);
		if (p)
			memset(p, stamp(n), size);
		blocks[n] = (carved){p, size};
	}
	/* None is freed before all are carved: no block handed out twice. */
	pthread_barrier_wait(&all_carved);
	return NULL;
}

static int by_address(const void *a, const void *b)
{
	const carved *x = a, *y = b;
	return x->p < y->p ? -1 : x->p > y->p;
}

/* 64 threads carve at once; returns the number of 2 MiB chunks the blocks
 * lie in (the range is aligned to 2 MiB). */
static size_t carve_at_once(void)
{
	assert_int_equal(pthread_barrier_init(&all_carved, NULL, THREADS + 1), 0);
	pthread_t th[THREADS];
	for (size_t t = 0; t < THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, carver_main, (void *)(uintptr_t)t),
		                 0);
	pthread_barrier_wait(&all_carved);
	for (size_t t = 0; t < THREADS; t++)
		assert_int_equal(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&all_carved);
	for (size_t n = 0; n < THREADS * PER; n++) {
		assert_non_null(blocks[n].p);
		assert_true(pool_usable_size(blocks[n].p) >= blocks[n].size);
		for (size_t i = 0; i < blocks[n].size; i++)
			if (blocks[n].p[i] != stamp(n))
				fail_msg("block %zu byte %zu overwritten", n, i);
	}
	carved *sorted = malloc(sizeof(blocks));
	assert_non_null(sorted);
	memcpy(sorted, blocks, sizeof(blocks));
	qsort(sorted, THREADS * PER, sizeof(carved), by_address);
	size_t chunks = 0;
	uintptr_t last = UINTPTR_MAX;
	for (size_t n = 0; n < THREADS * PER; n++) {
		if (n)
			assert_true(sorted[n - 1].p + pool_usable_size(sorted[n - 1].p) <=
			            sorted[n].p);
		uintptr_t c = (uintptr_t)sorted[n].p / CHUNK;
		chunks += c != last;
		last = c;
	}
	free(sorted);
	for (size_t n = 0; n < THREADS * PER; n++)
		pool_free(blocks[n].p);
	pool_trim();
	return chunks;
}

#ifndef T_ASAN
/* Whether the kernel's THP mode lets an advised range have huge pages. */
static bool thp_allowed(void)
{
	char buf[128] = {0};
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return strstr(buf, "[always]") || strstr(buf, "[madvise]");
}

/* Huge-page bytes of this process (printed only: the kernel may have no
 * free 2 MiB page to give). */
static size_t anon_huge_bytes(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	if (!f)
		return 0;
	char line[256];
	size_t kb = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %zu kB", &kb) == 1)
			break;
	fclose(f);
	return kb << 10;
}

/* The first test of the process: no slab block was freed before, so every
 * thread carves. */
static void test_threads_share_chunks(void **unused)
{
	(void)unused;
	size_t range = pool_slab_bytes();
	size_t chunks = carve_at_once();
	print_message("64 threads: blocks in %zu chunks, range %zu -> %zu KiB, huge %d, "
	              "AnonHugePages %zu KiB\n",
	              chunks, range >> 10, pool_slab_bytes() >> 10, pool_slab_huge(),
	              anon_huge_bytes() >> 10);
	assert_true(chunks <= 8);
	assert_true(pool_slab_bytes() <= range + 8 * CHUNK);
	/* Again: the same memory, no new chunk. */
	range = pool_slab_bytes();
	assert_true(carve_at_once() <= 8);
	assert_true(pool_slab_bytes() <= range + CHUNK);
}

static void test_huge_follows_the_kernel(void **unused)
{
	(void)unused;
	assert_int_equal(pool_slab_huge(), thp_allowed());
}

#define WAVE_THREADS 8
#define WAVE_BLOCKS  16000 /* of 256 bytes: ~4.3 MiB a thread, past the 32 MiB not advised */

static pthread_barrier_t wave_allocated;

static void *wave_main(void *arg)
{
	(void)arg;
	void **b = malloc(WAVE_BLOCKS * sizeof(*b));
	if (!b) {
		t_fail(__LINE__, "malloc", 0);
		pthread_barrier_wait(&wave_allocated);
		return NULL;
	}
	for (size_t i = 0; i < WAVE_BLOCKS; i++) {
		b[i] = pool_alloc(256);
		if (!b[i]) {
			t_fail(__LINE__, "pool_alloc", (long long)i);
			break;
		}
		memset(b[i], (int)i, 256);
	}
	pthread_barrier_wait(&wave_allocated); /* all held at once */
	for (size_t i = 0; i < WAVE_BLOCKS && b[i]; i++) {
		if (((unsigned char *)b[i])[255] != (unsigned char)i)
			t_fail(__LINE__, "stamp", (long long)i);
		pool_free(b[i]);
	}
	free(b);
	return NULL; /* the exit passes the cache and the piece on */
}

static void run_wave(void)
{
	pthread_t th[WAVE_THREADS];
	assert_int_equal(pthread_barrier_init(&wave_allocated, NULL, WAVE_THREADS), 0);
	for (int t = 0; t < WAVE_THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, wave_main, NULL), 0);
	for (int t = 0; t < WAVE_THREADS; t++)
		assert_int_equal(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&wave_allocated);
	assert_no_thread_failures();
}

/* Slab bytes held: handed out, neither given back nor kept empty. */
static size_t slab_held(void)
{
	return pool_slab_bytes() - pool_slab_given_back() - pool_slab_kept();
}

static void test_waves_give_chunks_back(void **unused)
{
	(void)unused;
	pool_slab_set_decay(0, 0); /* round 14's give-back at once */
	pool_trim();
	size_t held = slab_held(), range = pool_slab_bytes();
	run_wave();
	size_t grown = pool_slab_bytes() - range, after = slab_held();
	print_message("wave: range grew %zu KiB, held %zu -> %zu KiB, given back %zu KiB\n",
	              grown >> 10, held >> 10, after >> 10, pool_slab_given_back() >> 10);
	assert_true(grown >= 8 * CHUNK); /* ~35 MiB held at once */
	/* Every block is free: what stays held are chunks with pieces on the
	 * list of rests (the threads' rests, the last chunk cut). */
	assert_true(after <= held + (WAVE_THREADS + 2) * CHUNK);
	range = pool_slab_bytes();
	for (int i = 0; i < 3; i++)
		run_wave();
	assert_true(pool_slab_bytes() <= range + 2 * CHUNK); /* reused */
	assert_true(slab_held() <= held + (WAVE_THREADS + 2) * CHUNK);
	pool_slab_set_decay(10000, (size_t)512 << 20);
}

/* The child: huge pages off before the range is reserved. */
static void test_child_without_huge_pages(void **unused)
{
	(void)unused;
	test_threads_share_chunks(NULL);
	assert_false(pool_slab_huge());
}

static void test_without_huge_pages(void **unused)
{
	(void)unused;
	int rfd;
	pid_t pid = test_spawn_child((const char *const[]){"nohuge", NULL}, &rfd);
	close(rfd);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}
#else
/* No slabs: malloc's blocks, the same stamps and no overlap. */
static void test_threads_carve_malloc_blocks(void **unused)
{
	(void)unused;
	(void)carve_at_once(); /* its checks: stamps, no overlap */
	(void)carve_at_once();
	assert_false(pool_slab_huge());
	assert_int_equal(pool_slab_bytes(), 0);
}
#endif

int main(int argc, char **argv)
{
#ifndef T_ASAN
	if (argc >= 3 && strcmp(argv[1], "--child") == 0) {
		pool_slab_use_huge(false); /* before any slab allocation */
		const struct CMUnitTest child[] = {
		    cmocka_unit_test(test_child_without_huge_pages),
		};
		return cmocka_run_group_tests(child, NULL, NULL) ? 1 : 0;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threads_share_chunks), /* first: see above */
	    cmocka_unit_test(test_huge_follows_the_kernel),
	    cmocka_unit_test(test_waves_give_chunks_back),
	    cmocka_unit_test(test_without_huge_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
#else
	(void)argc, (void)argv;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threads_carve_malloc_blocks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
