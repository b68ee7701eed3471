/*
 * test_review10.c - round 9's review observations, against the public
 * header:
 *
 *   - a checkpoint whose last section is damaged (its crc) is skipped for
 *     the generation before it and the log; the context loaded from the
 *     damaged section, with fields, was let go without being counted out
 *     of the store's count of contexts with fields, so
 *     ctx_count_with_fields (ctxd's DBSIZE) said one more than the store
 *     held, for as long as the store stayed open;
 *   - ctx_prefetch and ctx_prefetch_keys are hints with no errors whose
 *     NULL arguments are ignored; a NULL entry of ids was dereferenced, and
 *     (round 10) an id or key length past the limits was hashed as given;
 *   - (round 10) ctx_restore_label with a label no point can have answered
 *     CTX_NOT_FOUND where ctx_point_create answers CTX_INVALID.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static ctx_store *open_at(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	return s;
}

static void test_damaged_section_not_counted(void **state)
{
	(void)state;
	char *dir = test_make_dir("review10_count");
	/* Generation 1: context a. */
	ctx_store *s = open_at(dir);
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "1");
	ctx_close(s);
	/* Generation 2: b too; its close keeps what it would delete (the
	 * checkpoint before it and the log): the directory a crash between
	 * the newest checkpoint's rename and its deletes leaves. Then damage
	 * the newest checkpoint's last section: its crc, the 4 bytes before
	 * the 24-byte trailer. That section's context is built, fields and
	 * all, before the crc says no. */
	s = open_at(dir);
	assert_ok(ctx_create(s, "b"));
	test_put_str(s, "b", "k", "2");
	assert_int_equal(ctx_count_with_fields(s, NULL), 2);
	test_close_keeping_log(s);
	char *path = test_newest_checkpoint(dir, NULL);
	size_t n;
	unsigned char *ck = test_read_file(path, &n);
	assert_true(n > 32 + 24 + 4);
	ck[n - 24 - 1] ^= 0x5a;
	test_write_file(path, ck, n);
	free(ck);
	free(path);

	/* Recovery falls back to generation 1 and the log: both contexts,
	 * counted once each. */
	s = open_at(dir);
	uint64_t keys = 0;
	char *dump = test_dump_store(s, false, &keys);
	assert_int_equal(keys, 2);
	free(dump);
	assert_int_equal(ctx_count_with_fields(s, NULL), 2);
	/* And it stays right through changes: empty both, count 0. */
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "a", &t));
	assert_ok(ctx_txn_del(t, "k", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	assert_ok(ctx_txn_begin(s, "b", &t));
	assert_ok(ctx_txn_del(t, "k", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	assert_int_equal(ctx_count_with_fields(s, NULL), 0);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_prefetch_null_ids(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "1");
	const char *ids[3] = {"a", NULL, "a"};
	size_t idlens[3] = {1, 5, 1};
	const void *keys[3] = {"k", "k", NULL};
	size_t klens[3] = {1, 1, 0};
	ctx_prefetch(s, ids, idlens, 3);
	ctx_prefetch_keys(s, ids, idlens, keys, klens, 3);
	/* More than one round's worth, NULLs spread over them. */
	const char *many[100];
	size_t lens[100];
	for (size_t i = 0; i < 100; i++) {
		many[i] = i % 3 ? "a" : NULL;
		lens[i] = 1;
	}
	ctx_prefetch(s, many, lens, 100);
	/* Lengths no id or key can have (round 10's review: hashed as given,
	 * reading far past the caller's bytes). */
	size_t huge[3] = {(size_t)1 << 40, 1, CTX_ID_MAX + 1};
	size_t hugek[3] = {1, (size_t)1 << 40, 1};
	ctx_prefetch(s, ids, huge, 3);
	ctx_prefetch_keys(s, ids, idlens, keys, hugek, 3);
	/* A hint changes nothing. */
	assert_true(test_has_str(s, "a", "k", "1"));
	ctx_close(s);
}

/* ctx_restore_label with a label no point can have: CTX_INVALID, as
 * ctx_point_create answers for it (it said CTX_NOT_FOUND). */
static void test_restore_bad_label(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "1");
	char longl[CTX_LABEL_MAX + 2];
	memset(longl, 'x', sizeof(longl) - 1);
	longl[sizeof(longl) - 1] = 0;
	assert_int_equal(ctx_point_create(s, "a", longl, NULL), CTX_INVALID);
	assert_int_equal(ctx_restore_label(s, "a", longl, NULL), CTX_INVALID);
	assert_int_equal(ctx_restore_label(s, "a", "bad\nlabel", NULL), CTX_INVALID);
	assert_int_equal(ctx_restore_label(s, "a", "fine", NULL), CTX_NOT_FOUND);
	assert_true(test_has_str(s, "a", "k", "1"));
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_damaged_section_not_counted),
	    cmocka_unit_test(test_prefetch_null_ids),
	    cmocka_unit_test(test_restore_bad_label),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
