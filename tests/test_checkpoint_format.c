/*
 * test_checkpoint_format.c - the checkpoint encoding (format version 2) and
 * the loading of older checkpoints.
 *
 *   - a store with every kind of content (data, metadata, deletes, per-key
 *     times, kept and pinned versions, points with labels and checksums, a
 *     time-to-live, last access times, binary and long keys, empty and long
 *     values) comes back exactly from its checkpoint alone;
 *   - the checkpoint is version 2 and has no fixed cost per key: 16 keys of
 *     6 + 64 bytes per context take at most 1.1 times their payload;
 *   - a version 1 checkpoint (tests/ckpt_v1_fixture.h, written by the
 *     version 1 code) still loads, to exactly the state it was written from;
 *   - a checkpoint of an unknown (newer) version is refused, and the message
 *     says which version it is and which ones this build reads.
 *
 * The fixture was made by compiling this file with -DCKPT_FIXTURE_GEN=DIR
 * against the version 1 library (commit 0959377): main then builds the rich
 * store in DIR and prints the header to stdout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef CKPT_FIXTURE_GEN
#include "ckpt_v1_fixture.h"
#include "format.h"
#endif

/* ---- a store with every kind of content ------------------------------------------------ */

#include "rich_store.h"

static ctx_store *open_clocked(const char *dir, uint64_t *clock)
{
	ctx_options o;
	rich_options(&o, dir, clock);
	return test_open(&o);
}

#ifdef CKPT_FIXTURE_GEN
/* ---- the fixture generator (see the head comment) --------------------------------------- */

#define STR2(x) #x
#define STR(x)  STR2(x)

int main(void)
{
	const char *dir = STR(CKPT_FIXTURE_GEN);
	uint64_t clock = T0;
	ctx_store *s = open_clocked(dir, &clock);
	build_rich_store(s, &clock);
	char *want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	ctx_close(s);
	char path[4096];
	snprintf(path, sizeof(path), "%s/ckpt-%016llx.ckpt", dir,
	         (unsigned long long)stats.checkpoint_revision);
	printf("/* ckpt_v1_fixture.h - a version 1 checkpoint of test_checkpoint_format.c's\n"
	       " * rich store, written by the version 1 code (commit 0959377), and the dump\n"
	       " * of the store it was written from. Generated; do not edit. */\n");
	printf("#define CKPT_V1_CLOCK %lluull\n", (unsigned long long)clock);
	printf("#define CKPT_V1_REVISION %lluull\n", (unsigned long long)stats.checkpoint_revision);
	rich_print_bytes("ckpt_v1_bytes", path);
	rich_print_text("ckpt_v1_dump", want);
	free(want);
	return 0;
}
#else
/* ---- the tests --------------------------------------------------------------------------- */

/* p as checkpoint ckpt-rev.ckpt of dir. */
static void spit(const char *dir, uint64_t rev, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/ckpt-%016llx.ckpt", dir, (unsigned long long)rev);
	test_write_file(path, p, n);
}

static void test_rich_store_round_trip(void **unused)
{
	char *dir = test_make_dir("ckfmt-rich");
	uint64_t clock = T0;
	ctx_store *s = open_clocked(dir, &clock);
	build_rich_store(s, &clock);
	char *want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_close(s);

	uint64_t rev = 0;
	size_t size = 0;
	char *work = test_checkpoint_alone(dir, "ckfmt-rich-alone", &rev, &size);
	char path[4096];
	snprintf(path, sizeof(path), "%s/ckpt-%016llx.ckpt", work, (unsigned long long)rev);
	size_t n = 0;
	unsigned char *p = test_read_file(path, &n);
	assert_int_equal(get_u32(p + 8), CKPT_FORMAT_VERSION);
	assert_int_equal(CKPT_FORMAT_VERSION, 2);
	free(p);

	s = open_clocked(work, &clock);
	char *got = dump_all(s);
	test_expect_same_dump(want, got, "the checkpoint alone");
	/* And once more through a checkpoint written from the loaded state. */
	assert_ok(ctx_put(s, "gamma", "c", 1, "3", 1, NULL));
	free(want);
	want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_close(s);
	char *again = test_checkpoint_alone(work, "ckfmt-rich-again", &rev, &size);
	s = open_clocked(again, &clock);
	free(got);
	got = dump_all(s);
	test_expect_same_dump(want, got, "a checkpoint of a loaded store");
	ctx_close(s);
	free(got);
	free(want);
	test_remove_dir(again);
	test_remove_dir(work);
	test_remove_dir(dir);
	free(again);
	free(work);
	free(dir);
}

/* What ctxbench memory stores: 16 keys "key-00".."key-15" per context with
 * 64-byte values (random here, so that nothing is saved by repetition). */
static void test_bytes_per_key(void **unused)
{
	char *dir = test_make_dir("ckfmt-size");
	uint64_t clock = T0;
	ctx_store *s = open_clocked(dir, &clock);
	enum { NCTX = 2000, NKEYS = 16, VLEN = 64 };
	uint64_t r = test_seed("checkpoint bytes per key", 0xb17e);
	for (int i = 0; i < NCTX; i++) {
		char id[16], key[8];
		unsigned char val[VLEN];
		snprintf(id, sizeof(id), "ctx-%05d", i);
		clock += 1000;
		assert_ok(ctx_create(s, id));
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(s, id, &t));
		for (int k = 0; k < NKEYS; k++) {
			snprintf(key, sizeof(key), "key-%02d", k);
			for (int j = 0; j < VLEN; j++)
				val[j] = (unsigned char)test_rand(&r);
			assert_ok(ctx_txn_put(t, key, 6, val, VLEN));
		}
		clock += 1000;
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
	char *want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_close(s);
	uint64_t rev = 0;
	size_t size = 0;
	char *work = test_checkpoint_alone(dir, "ckfmt-size-alone", &rev, &size);
	double per_key = (double)size / (NCTX * NKEYS), payload = 6 + VLEN;
	print_message("checkpoint: %zu bytes, %.1f per key of %.0f payload bytes (%.2fx)\n", size,
	              per_key, payload, per_key / payload);
	/* Version 1 took 97.4 bytes per key here (1.39x). */
	assert_true(per_key <= 1.1 * payload);
	s = open_clocked(work, &clock);
	char *got = dump_all(s);
	test_expect_same_dump(want, got, "the bytes-per-key store");
	ctx_close(s);
	free(got);
	free(want);
	test_remove_dir(work);
	test_remove_dir(dir);
	free(work);
	free(dir);
}

static void test_version_1_loads(void **unused)
{
	char *dir = test_make_dir("ckfmt-v1");
	assert_int_equal(get_u32(ckpt_v1_bytes + 8), 1);
	spit(dir, CKPT_V1_REVISION, ckpt_v1_bytes, sizeof(ckpt_v1_bytes));
	uint64_t clock = CKPT_V1_CLOCK;
	ctx_verify_report rep;
	assert_ok(ctx_verify(dir, &rep));
	assert_int_equal(rep.checkpoints_damaged, 0);
	ctx_store *s = open_clocked(dir, &clock);
	char *got = dump_all(s);
	test_expect_same_dump(ckpt_v1_dump, got, "a version 1 checkpoint");
	free(got);
	/* The next checkpoint is written in version 2, and holds the same. */
	assert_ok(ctx_put(s, "gamma", "c", 1, "3", 1, NULL));
	char *want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_close(s);
	uint64_t rev = 0;
	size_t size = 0;
	char *work = test_checkpoint_alone(dir, "ckfmt-v1-then-v2", &rev, &size);
	assert_true(rev > CKPT_V1_REVISION);
	assert_true(size < sizeof(ckpt_v1_bytes));
	s = open_clocked(work, &clock);
	got = dump_all(s);
	test_expect_same_dump(want, got, "version 2 written after loading version 1");
	ctx_close(s);
	free(got);
	free(want);
	test_remove_dir(work);
	test_remove_dir(dir);
	free(work);
	free(dir);
}

/* A newer version than this build knows: refused, and the message says so. */
static void test_unknown_version_refused(void **unused)
{
	char *dir = test_make_dir("ckfmt-v3");
	unsigned char *p = malloc(sizeof(ckpt_v1_bytes));
	memcpy(p, ckpt_v1_bytes, sizeof(ckpt_v1_bytes));
	put_u32(p + 8, 3);
	put_u32(p + 28, crc32c(0, p, 28));
	spit(dir, CKPT_V1_REVISION, p, sizeof(ckpt_v1_bytes));
	free(p);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	assert_int_equal(ctx_open(&o, &s), CTX_CORRUPT);
	const char *msg = ctx_last_error();
	print_message("%s\n", msg);
	assert_non_null(strstr(msg, "format version 3"));
	assert_non_null(strstr(msg, "reads versions 1 and 2"));
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rich_store_round_trip),
	    cmocka_unit_test(test_bytes_per_key),
	    cmocka_unit_test(test_version_1_loads),
	    cmocka_unit_test(test_unknown_version_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
