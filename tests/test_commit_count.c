/*
 * test_commit_count.c - the number of keys a commit changed (ctx_history's
 * keys_changed), now counted while the commit builds its version instead of
 * by diffing the two versions afterwards.
 *
 * Covered: a put of a new key, of another value, of the same value (changes
 * nothing); a delete; a transaction naming one key several times (put then
 * delete of a new key: nothing; two puts: one key); metadata ops (never data
 * keys); a non-strict delete of an absent key; a transaction past the size
 * where the ops are checked pairwise; every count is also checked against
 * ctx_diff_states between the version and the one before it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static size_t last_changed(ctx_store *s, uint64_t *version)
{
	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_ok(ctx_history(s, "c", &h, &n));
	assert_true(n > 0);
	size_t changed = h[n - 1].keys_changed;
	*version = h[n - 1].version;
	free(h);
	return changed;
}

/* keys_changed of the newest version is want, and so is the diff's count. */
static void expect_changed(ctx_store *s, size_t want)
{
	uint64_t v;
	size_t got = last_changed(s, &v);
	if (got != want)
		fail_msg("version %llu: keys_changed %zu, want %zu", (unsigned long long)v, got,
		         want);
	ctx_state *a, *b;
	ctx_diff *d;
	assert_ok(ctx_get_at(s, "c", v - 1, &a));
	assert_ok(ctx_get_at(s, "c", v, &b));
	assert_ok(ctx_diff_states(a, b, &d));
	assert_int_equal(ctx_diff_count(d), want);
	ctx_diff_free(d);
	ctx_state_release(a);
	ctx_state_release(b);
}

static void put(ctx_store *s, const char *k, const char *v)
{
	assert_ok(ctx_put(s, "c", k, strlen(k), v, strlen(v), NULL));
}

static void test_single_ops(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	put(s, "a", "1");
	expect_changed(s, 1); /* new key */
	put(s, "a", "2");
	expect_changed(s, 1); /* another value */
	put(s, "a", "2");
	expect_changed(s, 0); /* the same value: a version, no change */
	put(s, "b", "");
	expect_changed(s, 1);
	put(s, "b", "");
	expect_changed(s, 0); /* same empty value */
	assert_ok(ctx_del(s, "c", "a", 1, NULL));
	expect_changed(s, 1);
	ctx_close(s);
}

static void test_txn_ops(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	put(s, "x", "0");
	ctx_txn *t;

	/* Put then delete of a key the base lacks: nothing changed. */
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_put(t, "new", 3, "1", 1));
	assert_ok(ctx_txn_del(t, "new", 3));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	expect_changed(s, 0);

	/* Two puts of one key, and one of another: two keys. */
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_put(t, "x", 1, "1", 1));
	assert_ok(ctx_txn_put(t, "x", 1, "2", 1));
	assert_ok(ctx_txn_put(t, "y", 1, "1", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	expect_changed(s, 2);

	/* A key set to another value and back: nothing. */
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_put(t, "x", 1, "9", 1));
	assert_ok(ctx_txn_put(t, "x", 1, "2", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	expect_changed(s, 0);

	/* Metadata and the delete of an absent key change no data key. */
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_meta_put(t, "m", 1, "v", 1));
	assert_ok(ctx_txn_del(t, "absent", 6));
	assert_ok(ctx_txn_put(t, "z", 1, "1", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	expect_changed(s, 1);
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_meta_del(t, "m", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	expect_changed(s, 0);
	ctx_close(s);
}

/* Transactions of 1..40 ops over 24 keys, drawn at random (repeats, same
 * values, deletes of absent keys): every count matches the diff. */
static void test_random_txns(void **unused)
{
	uint64_t seed = test_seed("commit_count", 0xc0);
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	long rounds = test_iters(300, 60);
	for (long r = 0; r < rounds; r++) {
		ctx_txn *t;
		assert_ok(ctx_txn_begin(s, "c", &t));
		int nops = 1 + (int)test_rand_below(&seed, 40);
		for (int i = 0; i < nops; i++) {
			char key[8], val[4];
			snprintf(key, sizeof(key), "k%02d", (int)test_rand_below(&seed, 24));
			snprintf(val, sizeof(val), "%d", (int)test_rand_below(&seed, 3));
			if (test_rand_below(&seed, 4) == 0)
				assert_ok(ctx_txn_del(t, key, strlen(key)));
			else
				assert_ok(ctx_txn_put(t, key, strlen(key), val, strlen(val)));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
		uint64_t v;
		size_t got = last_changed(s, &v);
		expect_changed(s, got);
	}
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_single_ops),
	        cmocka_unit_test(test_txn_ops),
	        cmocka_unit_test(test_random_txns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
