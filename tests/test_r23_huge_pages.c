/*
 * test_r23_huge_pages.c - ctx_use_huge_pages (round 23): the process-wide
 * switch ctxd uses to keep the store's memory off transparent huge pages
 * (their first touch, 1-5 ms in a VM, held a whole loop: twice the p99 of
 * redis-benchmark's HSET into a growing store).
 *
 * Called before the process's first ctx_open it takes (true) and the slab
 * gets no huge pages whatever the kernel's THP mode; called after, it is
 * refused (false) and changes nothing. (Huge pages on, where THP allows
 * them, is test_r20_huge's.) The store works the same either way.
 */
#include "testutil.h"

#include <stdio.h>

#include "pool.h"

static void test_off_before_the_first_open(void **state)
{
	(void)state;
	assert_true(ctx_use_huge_pages(false));
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	char key[32];
	for (int i = 0; i < 20000; i++) {
		int n = snprintf(key, sizeof(key), "k%06d", i);
		assert_ok(ctx_put(s, "c", key, (size_t)n, key, (size_t)n, NULL));
	}
	assert_false(pool_slab_huge());
#if !T_ASAN
	/* the slab is set up now: too late either way */
	assert_false(ctx_use_huge_pages(true));
	assert_false(ctx_use_huge_pages(false));
#endif
	assert_false(pool_slab_huge());
	char buf[16];
	size_t vlen;
	assert_ok(ctx_get_value(s, "c", "k019999", 7, buf, sizeof(buf), &vlen));
	assert_int_equal(vlen, 7);
	assert_memory_equal(buf, "k019999", 7);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_off_before_the_first_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
