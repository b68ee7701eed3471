/*
 * test_iter_stack.c - iteration in the caller's storage (ctx_iter_init,
 * ctx_iter_meta_init, ctx_iter_stack_next).
 *
 * It must give exactly the pairs, and in the order, of ctx_iter_begin /
 * ctx_iter_meta_begin, for empty, small and large states (deep tries); keep
 * giving the pairs of the state it started on while newer versions are
 * committed; run two at once over one state; and refuse NULLs with
 * CTX_INVALID, a non-NULL cursor then yielding nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Both iterations of st (data or meta) give the same sequence. */
static size_t same_as_heap_iter(const ctx_state *st, bool meta)
{
	ctx_iter *h;
	ctx_iter_stack it;
	assert_ok(meta ? ctx_iter_meta_begin(st, &h) : ctx_iter_begin(st, &h));
	assert_ok(meta ? ctx_iter_meta_init(&it, st) : ctx_iter_init(&it, st));
	const void *k1, *v1, *k2, *v2;
	size_t kl1, vl1, kl2, vl2, n = 0;
	for (;;) {
		bool a = ctx_iter_next(h, &k1, &kl1, &v1, &vl1);
		bool b = ctx_iter_stack_next(&it, &k2, &kl2, &v2, &vl2);
		assert_int_equal(a, b);
		if (!a)
			break;
		assert_ptr_equal(k1, k2);
		assert_ptr_equal(v1, v2);
		assert_int_equal(kl1, kl2);
		assert_int_equal(vl1, vl2);
		n++;
	}
	assert_false(ctx_iter_stack_next(&it, NULL, NULL, NULL, NULL)); /* stays done */
	ctx_iter_free(h);
	return n;
}

static void test_matches_heap_iterator(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	ctx_state *st;
	assert_ok(ctx_get(s, "c", &st));
	assert_int_equal(same_as_heap_iter(st, false), 0);
	assert_int_equal(same_as_heap_iter(st, true), 0);
	ctx_state_release(st);

	int sizes[] = {1, 16, 5000};
	int have = 0;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
		ctx_txn *t;
		assert_ok(ctx_txn_begin(s, "c", &t));
		for (; have < sizes[i]; have++) {
			char key[16], val[16];
			snprintf(key, sizeof(key), "key-%d", have);
			snprintf(val, sizeof(val), "v%d", have);
			assert_ok(ctx_txn_put(t, key, strlen(key), val, strlen(val)));
			if (have % 7 == 0)
				assert_ok(ctx_txn_meta_put(t, key, strlen(key), val, strlen(val)));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
		assert_ok(ctx_get(s, "c", &st));
		assert_int_equal(same_as_heap_iter(st, false), (size_t)have);
		assert_int_equal(same_as_heap_iter(st, true), ctx_state_meta_count(st));
		ctx_state_release(st);
	}
	ctx_close(s);
}

/* The cursor keeps reading the version it started on; values match lookups. */
static void test_stable_under_commits(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	for (int i = 0; i < 100; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i);
		assert_ok(ctx_put(s, "c", key, strlen(key), "old", 3, NULL));
	}
	ctx_state *st;
	assert_ok(ctx_get(s, "c", &st));
	ctx_iter_stack a, b;
	assert_ok(ctx_iter_init(&a, st));
	assert_ok(ctx_iter_init(&b, st));
	size_t n = 0;
	const void *k, *v;
	size_t kl, vl;
	while (ctx_iter_stack_next(&a, &k, &kl, &v, &vl)) {
		/* Rewrite and delete keys while iterating: the old version stays. */
		assert_ok(ctx_put(s, "c", k, kl, "new", 3, NULL));
		if (n % 3 == 0)
			assert_ok(ctx_del(s, "c", k, kl, NULL));
		assert_int_equal(vl, 3);
		assert_memory_equal(v, "old", 3);
		const void *lv;
		assert_true(ctx_state_lookup(st, k, kl, &lv, NULL));
		assert_ptr_equal(lv, v);
		/* A second cursor over the same state, in step. */
		const void *k2;
		assert_true(ctx_iter_stack_next(&b, &k2, NULL, NULL, NULL));
		assert_ptr_equal(k2, k);
		n++;
	}
	assert_int_equal(n, 100);
	assert_false(ctx_iter_stack_next(&b, NULL, NULL, NULL, NULL));
	ctx_state_release(st);
	ctx_close(s);
}

static void test_null_arguments(void **unused)
{
	ctx_iter_stack it;
	assert_int_equal(ctx_iter_init(&it, NULL), CTX_INVALID);
	assert_false(ctx_iter_stack_next(&it, NULL, NULL, NULL, NULL));
	assert_int_equal(ctx_iter_meta_init(&it, NULL), CTX_INVALID);
	assert_false(ctx_iter_stack_next(&it, NULL, NULL, NULL, NULL));
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	ctx_state *st;
	assert_ok(ctx_get(s, "c", &st));
	assert_int_equal(ctx_iter_init(NULL, st), CTX_INVALID);
	assert_int_equal(ctx_iter_meta_init(NULL, st), CTX_INVALID);
	assert_false(ctx_iter_stack_next(NULL, NULL, NULL, NULL, NULL));
	ctx_state_release(st);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_matches_heap_iterator),
	    cmocka_unit_test(test_stable_under_commits),
	    cmocka_unit_test(test_null_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
