/*
 * test_count_with_fields.c - ctx_count_with_fields (src/lib/store.c), what
 * ctxd's DBSIZE answers: the contexts ctx_list_ids would list whose newest
 * decided version has at least one field, and the highest revision among
 * them. Contexts without fields (created empty, or emptied), dropped ones
 * and ones past their time-to-live are not counted.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static uint64_t put(ctx_store *s, const char *id, const char *k)
{
	uint64_t rev = 0;
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, id, &t));
	assert_ok(ctx_txn_put(t, k, strlen(k), "v", 1));
	assert_ok(ctx_txn_commit_nowait(t, 0, NULL, &rev));
	return rev;
}

/* The count by listing every id and reading each (what DBSIZE did). */
static size_t count_by_listing(ctx_store *s)
{
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	size_t n = 0;
	for (size_t i = 0; i < l.count; i++) {
		ctx_state *st;
		if (ctx_get_latest(s, l.ids[i], &st) != CTX_OK)
			continue;
		n += ctx_state_count(st) > 0;
		ctx_state_release(st);
	}
	ctx_list_free(&l);
	return n;
}

static void test_counts_contexts_with_fields(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	uint64_t rev = 1;
	assert_int_equal(ctx_count_with_fields(s, &rev), 0);
	assert_int_equal(rev, 0);
	char id[32];
	uint64_t last = 0;
	for (int i = 0; i < 300; i++) {
		snprintf(id, sizeof(id), "c%d", i);
		assert_ok(ctx_create(s, id));
		if (i % 3 != 0) /* every third stays without fields */
			last = put(s, id, "f");
	}
	assert_int_equal(ctx_count(s), 300);
	assert_int_equal(ctx_count_with_fields(s, &rev), 200);
	assert_int_equal(rev, last);
	assert_int_equal(count_by_listing(s), 200);
	/* emptied: no longer counted; dropped: neither */
	assert_ok(ctx_del(s, "c1", "f", 1, NULL));
	assert_ok(ctx_drop(s, "c2"));
	assert_ok(ctx_drop(s, "c3")); /* had no fields */
	assert_int_equal(ctx_count_with_fields(s, NULL), 198);
	assert_int_equal(count_by_listing(s), 198);
	/* a later write moves the revision */
	uint64_t r2 = put(s, "c4", "g");
	assert_int_equal(ctx_count_with_fields(s, &rev), 198);
	assert_int_equal(rev, r2);
	assert_int_equal(ctx_count_with_fields(NULL, &rev), 0);
	assert_int_equal(rev, 0);
	ctx_close(s);
}

/* A context past its time-to-live is not listed, so not counted. */
static void test_expired_not_counted(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "keep"));
	put(s, "keep", "f");
	assert_ok(ctx_create(s, "short"));
	put(s, "short", "f");
	assert_int_equal(ctx_count_with_fields(s, NULL), 2);
	assert_ok(ctx_set_ttl(s, "short", 1));
	usleep(50 * 1000); /* past the 1 ms ttl: not a bound on anything */
	assert_int_equal(ctx_count_with_fields(s, NULL), 1);
	assert_int_equal(count_by_listing(s), 1);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counts_contexts_with_fields),
	    cmocka_unit_test(test_expired_not_counted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
