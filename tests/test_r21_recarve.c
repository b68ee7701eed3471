/*
 * test_r21_recarve.c - a chunk given back is unbacked whole, and carved
 * again past the range's start it comes back as one huge page (pool.c,
 * RECARVE; round 21, r21-recarve).
 *
 * Before round 21 the chunks given back after the decay were linked
 * through their headers: a chunk past the range's first 32 MiB kept its
 * header's page resident, which split its huge page, and when it was
 * carved again it was populated in 4 KiB pages and collapsed (a copy).
 * Now their stack is an array beside the range.
 *
 * - One thread carves 48 MiB of blocks, frees them all, with the decay off
 *   (pool_slab_set_decay(0, ...): every emptied chunk past the 4 kept is
 *   given back at once). Every chunk 34-46 MiB into the range is then
 *   either kept (resident whole) or given back with no page resident
 *   (mincore); some are given back. Before round 21 each given-back one
 *   kept its header's page: the check fails ("1 page resident").
 * - Carving again takes the 4 kept chunks, then given-back ones. Where the
 *   kernel gives huge pages (the first carve's last chunk, touched only in
 *   its first pieces, is resident whole: a huge page), a given-back chunk
 *   past 32 MiB carved again is resident whole after a few blocks (one
 *   huge page's first touch); before round 21 it had a few dozen small
 *   pages. Where the kernel gave no huge page the check is skipped (said
 *   in the output).
 *
 * Under ASan (no slabs: malloc's blocks) only the blocks' contents are
 * checked.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"

#define MIB   ((size_t)1 << 20)
#define CHUNK (2 * MIB)
#define BLOCK 256
#define CARVE (48 * MIB) /* the first carve: past the 32 MiB start */
#define MAXB  ((CARVE + 16 * MIB) / BLOCK) /* the second test may carve every chunk again */
#ifdef T_TSAN
#define STRIDE 64 /* each byte read is instrumented: a few seconds less */
#else
#define STRIDE 1
#endif

static unsigned char **blocks;
static size_t nblocks;

/* Carve BLOCK-byte blocks until `bytes` more are carved, each filled with
 * its index. */
static void carve(size_t bytes)
{
	size_t to = nblocks + bytes / BLOCK;
	assert_true(to <= MAXB);
	while (nblocks < to) {
		unsigned char *p = pool_alloc(BLOCK);
		assert_non_null(p);
		memset(p, (int)(nblocks & 0xff), BLOCK);
		blocks[nblocks++] = p;
	}
}

static void check_and_free(void)
{
	for (size_t i = 0; i < nblocks; i++) {
		for (size_t k = 0; k < BLOCK; k += STRIDE)
			if (blocks[i][k] != (unsigned char)(i & 0xff))
				fail_msg("block %zu byte %zu overwritten", i, k);
		pool_free(blocks[i]);
	}
	nblocks = 0;
	pool_trim();
}

#ifndef T_ASAN
/* Pages of the chunk at c resident (mincore). */
static size_t resident_pages(uintptr_t c)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = CHUNK / page, in = 0;
	unsigned char *v = malloc(n);
	assert_non_null(v);
	assert_int_equal(mincore((void *)c, CHUNK, v), 0);
	for (size_t i = 0; i < n; i++)
		in += v[i] & 1;
	free(v);
	return in;
}

static uintptr_t base;      /* the range's first chunk (the first block's) */
static bool huge_available; /* the first carve's last chunk was a huge page */

/* The first test of the process: the first block is the range's first. */
static void test_given_back_whole(void **unused)
{
	(void)unused;
	size_t pages = CHUNK / (size_t)sysconf(_SC_PAGESIZE);
	pool_slab_set_decay(0, 0); /* past the 4 kept, given back at once */
	carve(CARVE + 64 * 1024);  /* 64 KiB into the 25th chunk */
	base = (uintptr_t)blocks[0] & ~(uintptr_t)(CHUNK - 1);
	uintptr_t last = (uintptr_t)blocks[nblocks - 1] & ~(uintptr_t)(CHUNK - 1);
	assert_true(last - base >= CARVE); /* one thread carves its chunks in order */
	size_t last_in = resident_pages(last);
	huge_available = pool_slab_huge() && last_in == pages;
	check_and_free();
	size_t back = pool_slab_given_back(), given = 0;
	assert_true(back >= 8 * CHUNK); /* 4 kept of 24 emptied */
	for (uintptr_t c = base + 34 * MIB; c < base + 46 * MIB; c += CHUNK) {
		size_t in = resident_pages(c);
		if (in != pages && in != 0)
			fail_msg("chunk at %zu MiB: %zu pages resident", (size_t)(c - base) >> 20, in);
		given += in == 0;
	}
	print_message("huge %d, last chunk %zu/%zu pages resident, %zu MiB given back, "
	              "%zu of 6 chunks at 34-46 MiB bare\n",
	              pool_slab_huge(), last_in, pages, back >> 20, given);
	assert_true(given > 0);
}

/* Carving again: the kept chunks first, then the bare ones, the last given
 * back first. Carves until a block lands in a bare chunk past 32 MiB (the
 * first test saw 34-46 MiB bare), then 16 KiB more. */
static void test_recarved_huge(void **unused)
{
	(void)unused;
	size_t pages = CHUNK / (size_t)sysconf(_SC_PAGESIZE);
	size_t back = pool_slab_given_back(), bytes = pool_slab_bytes();
	uintptr_t c = 0;
	while (nblocks < MAXB - 64 && !c) {
		carve(BLOCK);
		uintptr_t at = (uintptr_t)blocks[nblocks - 1] - base;
		if (at >= 34 * MIB && at < 46 * MIB)
			c = base + (at & ~(uintptr_t)(CHUNK - 1));
	}
	assert_true(c != 0);
	carve(16 * 1024);
	assert_true(pool_slab_bytes() == bytes);    /* no fresh chunk */
	assert_true(pool_slab_given_back() < back); /* bare ones were carved */
	size_t in = resident_pages(c);
	print_message("huge pages available %d; carved again at %zu MiB after %zu KiB: "
	              "%zu/%zu pages resident\n",
	              huge_available, (size_t)(c - base) >> 20, nblocks * BLOCK >> 10, in, pages);
	if (huge_available)
		assert_int_equal(in, pages); /* one huge page */
	else
		print_message("(not checked: the kernel gave no huge page)\n");
	check_and_free();
}
#else
static void test_blocks_keep_their_bytes(void **unused)
{
	(void)unused;
	carve(4 * MIB); /* ASan: malloc's blocks */
	check_and_free();
}
#endif

int main(void)
{
	blocks = malloc(MAXB * sizeof(*blocks));
	if (!blocks)
		return 1;
	const struct CMUnitTest tests[] = {
#ifndef T_ASAN
	    cmocka_unit_test(test_given_back_whole),
	    cmocka_unit_test(test_recarved_huge),
#else
	    cmocka_unit_test(test_blocks_keep_their_bytes),
#endif
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(blocks);
	return rc;
}
