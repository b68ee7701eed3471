/* test_smoke.c - the first thing that must work: open, create, put, get. */
#include "testutil.h"

static void test_put_get(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	uint64_t v = 0;
	assert_ok(ctx_put(s, "a", "k", 1, "v", 1, &v));
	assert_int_equal(v, 2);
	ctx_state *st;
	assert_ok(ctx_get(s, "a", &st));
	const void *val;
	size_t vlen;
	assert_true(ctx_state_lookup(st, "k", 1, &val, &vlen));
	assert_int_equal(vlen, 1);
	assert_memory_equal(val, "v", 1);
	ctx_state_release(st);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_put_get)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
