/*
 * test_count_with_fields.c - ctx_count_with_fields (src/lib/store.c), what
 * ctxd's DBSIZE answers: the contexts ctx_list_ids would list whose newest
 * decided version has at least one field, and a revision the answer
 * depends on. Contexts without fields (created empty, or emptied), dropped
 * ones and ones past their time-to-live are not counted. Without a
 * time-to-live in the store the count is the store's counter of contexts
 * with fields (kept where heads change, r8-ctxd): these tests check that it
 * agrees with a count by listing through creates, puts, deletes, drops,
 * failed syncs (a create or drop that never becomes durable) and recovery.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vfs.h"

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

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	ctx_status st = ctx_open(&o, &s);
	if (st != CTX_OK)
		fail_msg("ctx_open: %s: %s", ctx_strerror(st), ctx_last_error());
	return s;
}

/* A create with fields in one commit (one head, no empty version first). */
static ctx_status create_with(ctx_store *s, const char *id, const char *k)
{
	ctx_txn *t;
	ctx_status st = ctx_txn_begin_create(s, id, &t);
	if (st != CTX_OK)
		return st;
	st = ctx_txn_put(t, k, strlen(k), "v", 1);
	if (st != CTX_OK) {
		ctx_txn_abort(t);
		return st;
	}
	return ctx_txn_commit(t, 0, NULL);
}

/* Random creates (empty or with fields), puts, deletes of fields (some
 * empty a context), drops and creates again over 48 ids, on a store with a
 * log: after every step the count equals the count by listing; after a
 * close and an open (recovery from the checkpoint and the log) too. */
static void test_counter_agrees_with_listing(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("count-fields");
	ctx_store *s = open_dir(dir);
	uint64_t seed = test_seed("count_with_fields", 11);
	char id[16], k[16];
	for (int step = 0; step < 1500; step++) {
		snprintf(id, sizeof(id), "c%d", (int)test_rand_below(&seed, 48));
		snprintf(k, sizeof(k), "k%d", (int)test_rand_below(&seed, 3));
		ctx_status st;
		switch (test_rand_below(&seed, 6)) {
		case 0:
			st = ctx_create(s, id);
			break;
		case 1:
			st = create_with(s, id, k);
			break;
		case 2:
		case 3:
			st = ctx_put(s, id, k, strlen(k), "v", 1, NULL);
			break;
		case 4:
			st = ctx_del(s, id, k, strlen(k), NULL);
			break;
		default:
			st = ctx_drop(s, id);
			break;
		}
		if (st != CTX_OK && st != CTX_NOT_FOUND && st != CTX_EXISTS)
			fail_msg("step %d: %s: %s", step, ctx_strerror(st), ctx_last_error());
		if (ctx_count_with_fields(s, NULL) != count_by_listing(s))
			fail_msg("step %d: counted %zu, listed %zu", step,
			         ctx_count_with_fields(s, NULL), count_by_listing(s));
	}
	size_t n = ctx_count_with_fields(s, NULL);
	ctx_close(s);
	s = open_dir(dir);
	assert_int_equal(ctx_count_with_fields(s, NULL), n);
	assert_int_equal(count_by_listing(s), n);
	ctx_close(s);
	s = open_dir(dir); /* from the close's checkpoint alone */
	assert_int_equal(ctx_count_with_fields(s, NULL), n);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A create whose sync fails never shows: not counted. */
static void test_failed_create_not_counted(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("count-fields-create");
	ctx_store *s = open_dir(dir);
	assert_ok(create_with(s, "a", "f"));
	assert_int_equal(ctx_count_with_fields(s, NULL), 1);
	ctx_vfs_faults.sync_errno = EIO;
	atomic_store(&ctx_vfs_faults.sync_countdown, 1);
	assert_int_equal(create_with(s, "b", "f"), CTX_IO);
	vfs_faults_reset();
	assert_int_equal(ctx_count_with_fields(s, NULL), 1);
	assert_int_equal(count_by_listing(s), 1);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A drop whose sync fails changes nothing: the context counts again. */
static void test_failed_drop_counted_again(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("count-fields-drop");
	ctx_store *s = open_dir(dir);
	assert_ok(create_with(s, "a", "f"));
	assert_ok(create_with(s, "b", "f"));
	assert_int_equal(ctx_count_with_fields(s, NULL), 2);
	ctx_vfs_faults.sync_errno = EIO;
	atomic_store(&ctx_vfs_faults.sync_countdown, 1);
	assert_int_equal(ctx_drop(s, "a"), CTX_IO);
	vfs_faults_reset();
	assert_int_equal(ctx_count_with_fields(s, NULL), 2);
	assert_int_equal(count_by_listing(s), 2);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A drop that does not wait (ctxd's DEL) leaves the count at once, before
 * its sync; a create that does not wait counts at once, and the revision
 * given covers it (a reply built on the count waits for it). */
static void test_nowait_changes_count_at_once(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("count-fields-nowait");
	ctx_store *s = open_dir(dir);
	assert_ok(create_with(s, "a", "f"));
	uint64_t rev = 0, got = 0;
	ctx_txn *t;
	assert_ok(ctx_txn_begin_create(s, "b", &t));
	assert_ok(ctx_txn_put(t, "f", 1, "v", 1));
	assert_ok(ctx_txn_commit_nowait(t, 0, NULL, &rev));
	assert_int_equal(ctx_count_with_fields(s, &got), 2);
	assert_true(got >= rev);
	assert_ok(ctx_drop_nowait(s, "a", &rev));
	assert_int_equal(ctx_count_with_fields(s, &got), 1);
	assert_true(got >= rev);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counts_contexts_with_fields),
	    cmocka_unit_test(test_expired_not_counted),
	    cmocka_unit_test(test_counter_agrees_with_listing),
	    cmocka_unit_test(test_failed_create_not_counted),
	    cmocka_unit_test(test_failed_drop_counted_again),
	    cmocka_unit_test(test_nowait_changes_count_at_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
