/*
 * test_r19_replay.c - a log of 100-put transactions, damaged, recovers
 * exactly the records before the damage (src/lib/recovery.c, "a reader
 * thread ahead of the replay"; round 19).
 *
 * Replay of a segment of more than READER_MIN (1 MiB) of records reads the
 * records on a second thread, in batches, while the opening thread applies
 * them. Whatever the reader finds (the end, a zero tail, a torn or corrupt
 * record), the opening thread must act on it at the same record as a replay
 * on one thread: cut the newest segment there, keep the torn bytes aside,
 * and recover every record before it and nothing after it.
 *
 * The log: a store with contexts "big" (100-put transactions of 64-byte
 * values over 2,000 keys; some put a key twice or delete one, some put
 * metadata) and "small" (one-put commits), about 3 MB in one segment. It
 * is written once (durability batch, closed keeping the log; checkpoints
 * and the empty segment the close began removed: the log alone is
 * replayed), its records found with the format's
 * own parser, then copies of it are damaged: the last record torn, a
 * checksum broken in the middle (and in the first and the last batch a
 * reader hands over), the file cut short mid-record and at a record
 * boundary, zeros after the records. Each copy is opened and compared
 * (test_dump_store) with a memory store that ran the same first records.
 * Under sanitizers only the cases the reader thread reads run (the damage
 * past its first MiB). A CRC-32C check compares the hardware checksum (three streams over long
 * buffers) with the table version at every length and alignment that
 * matters.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"

#define STEPS 500 /* records after the two creates */

/* Step i of the workload (one record, revision i + 3). */
static void step(ctx_store *s, long i)
{
	char key[32], val[64];
	memset(val, 'a' + (int)(i % 26), sizeof(val));
	if (i % 5 == 4) {
		snprintf(key, sizeof(key), "s%ld", i % 7);
		assert_ok(ctx_put(s, "small", key, strlen(key), val, 8, NULL));
		return;
	}
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "big", &t));
	for (long j = 0; j < 100; j++) {
		int kl = snprintf(key, sizeof(key), "key-%ld", (i * 37 + j * 53) % 2000);
		if (j == 50 && i % 9 == 0)
			assert_ok(ctx_txn_del(t, key, (size_t)kl));
		else
			assert_ok(ctx_txn_put(t, key, (size_t)kl, val, sizeof(val)));
	}
	if (i % 11 == 0) /* a key twice: not the distinct-keys path */
		assert_ok(ctx_txn_put(t, "key-7", 5, "twice", 5));
	if (i % 13 == 0)
		assert_ok(ctx_txn_meta_put(t, "m", 1, val, 3));
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

/* Revisions 1 and 2 (of them, the first n). */
static void creates(ctx_store *s, uint64_t n)
{
	if (n > 0)
		assert_ok(ctx_create(s, "big"));
	if (n > 1)
		assert_ok(ctx_create(s, "small"));
}

/* The dump of a memory store that made the first `revisions` records. */
static char *model_dump(uint64_t revisions)
{
	ctx_store *s = test_open_memory();
	creates(s, revisions);
	for (uint64_t i = 0; i + 2 < revisions; i++)
		step(s, (long)i);
	char *d = test_dump_store(s, false, NULL);
	ctx_close(s);
	return d;
}

typedef struct log_file {
	char path[64]; /* the segment's name */
	unsigned char *bytes;
	size_t size;
	size_t off[STEPS + 3], len[STEPS + 3]; /* record of revision r at [r - 1] */
	size_t end;                            /* where the records end */
} log_file;

static char *origin;
static log_file lf;

/* Write the log once, and find its records. */
static int setup(void **unused)
{
	(void)unused;
	origin = test_make_dir("r19-replay");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = origin;
	o.durability = CTX_DURABILITY_BATCH;
	o.checkpoint_bytes = (size_t)1 << 40;
	ctx_store *s = test_open(&o);
	creates(s, 2);
	for (long i = 0; i < STEPS; i++)
		step(s, i);
	test_close_keeping_log(s);
	DIR *d = opendir(origin);
	struct dirent *e;
	int segments = 0;
	while ((e = readdir(d))) {
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s", origin, e->d_name);
		if (strncmp(e->d_name, "ckpt-", 5) == 0)
			unlink(p);
		struct stat sb;
		if (strncmp(e->d_name, "wal-", 4) == 0 && stat(p, &sb) == 0) {
			if (sb.st_size <= WAL_HEADER_SIZE) { /* the one the close began */
				unlink(p);
				continue;
			}
			snprintf(lf.path, sizeof(lf.path), "%.63s", e->d_name);
			segments++;
		}
	}
	closedir(d);
	assert_int_equal(segments, 1);
	char p[4200];
	snprintf(p, sizeof(p), "%s/%s", origin, lf.path);
	lf.bytes = test_read_file(p, &lf.size);
	uint32_t fmt = get_u32(lf.bytes + 8);
	size_t off = WAL_HEADER_SIZE;
	uint64_t rev = 0;
	while (off < lf.size && rev < STEPS + 2) {
		rec_view v = {0};
		assert_null(rec_parse(fmt, lf.bytes + off, lf.size - off, true, &v));
		assert_int_equal(v.rev, rev + 1);
		lf.off[rev] = off;
		lf.len[rev] = v.len;
		rev = v.rev;
		off += v.len;
	}
	assert_int_equal(rev, STEPS + 2);
	lf.end = off;
	/* More than the reader's threshold (1 MiB) before the damage in the
	 * middle. */
	assert_true(lf.off[STEPS / 2] > ((size_t)1 << 20) + 100000);
	return 0;
}

static int teardown(void **unused)
{
	(void)unused;
	test_remove_dir(origin);
	free(origin);
	free(lf.bytes);
	return 0;
}

/* A copy of the log as bytes [0, size) of it, then `zeros` zero bytes,
 * with byte `flip` (if not SIZE_MAX) changed; opened, it must recover
 * exactly the records of revisions 1..keep, and keep the cut bytes aside
 * if `torn`. */
static void damaged(const char *name, size_t size, size_t zeros, size_t flip, uint64_t keep,
                    bool torn)
{
	char *dir = test_make_dir(name);
	char p[4200];
	snprintf(p, sizeof(p), "%s/%s", dir, lf.path);
	unsigned char *b = calloc(1, size + zeros + 1);
	assert_non_null(b);
	memcpy(b, lf.bytes, size);
	if (flip != SIZE_MAX)
		b[flip] ^= 0x5a;
	test_write_file(p, b, size + zeros);
	free(b);

	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = (size_t)1 << 40;
	ctx_store *s = test_open(&o);
	ctx_stats st;
	ctx_get_stats(s, &st);
	assert_int_equal(st.revision, keep);
	char *got = test_dump_store(s, false, NULL);
	char *want = model_dump(keep);
	test_expect_same_dump(want, got, name);
	free(got);
	free(want);
	ctx_close(s);

	/* The torn bytes are kept aside exactly when something non-zero was cut. */
	DIR *d = opendir(dir);
	struct dirent *e;
	int aside = 0;
	while ((e = readdir(d)))
		aside += strncmp(e->d_name, "torn-", 5) == 0;
	closedir(d);
	assert_int_equal(aside, torn ? 1 : 0);
	test_remove_dir(dir);
	free(dir);
}

static void test_whole_log(void **unused)
{
	(void)unused;
	damaged("r19-whole", lf.size, 0, SIZE_MAX, STEPS + 2, false);
}

static void test_torn_last_record(void **unused)
{
	(void)unused;
	size_t last = lf.off[STEPS + 1];
	damaged("r19-torn-last", last + lf.len[STEPS + 1] / 2, 0, SIZE_MAX, STEPS + 1, true);
}

/* The index of the first record from revision `from` on that is a 100-put
 * transaction (small false) or a one-put commit (small true). */
static uint64_t record_from(uint64_t from, bool small)
{
	uint64_t r = from;
	while (r < 2 || ((r - 2) % 5 == 4) != small) /* lf.off[r]: step r - 2 */
		r++;
	return r;
}

static void test_bad_checksum_in_the_middle(void **unused)
{
	(void)unused;
	/* A body byte of a 100-put record, then the last of a one-put commit. */
	uint64_t r = record_from(STEPS / 2, false);
	damaged("r19-crc-mid", lf.size, 0, lf.off[r] + lf.len[r] / 2, r, true);
	if (test_slowdown() > 1)
		return; /* sanitizers: the thread's cases only, in a few seconds */
	r = record_from(STEPS / 2, true);
	damaged("r19-crc-mid-small", lf.size, 0, lf.off[r] + lf.len[r] - 1, r, true);
}

static void test_bad_checksum_at_the_edges(void **unused)
{
	(void)unused;
	/* The last record the reader hands over; then the first (nothing is
	 * recovered) and the first transaction (read on one thread: the
	 * records before the damage are under the reader's 1 MiB). */
	damaged("r19-crc-last", lf.size, 0, lf.off[STEPS + 1] + 20, STEPS + 1, true);
	if (test_slowdown() > 1)
		return;
	damaged("r19-crc-first", lf.size, 0, lf.off[0] + lf.len[0] - 1, 0, true);
	damaged("r19-crc-first-txn", lf.size, 0, lf.off[2] + 30, 2, true);
}

static void test_short_file(void **unused)
{
	(void)unused;
	uint64_t r = STEPS * 3 / 4; /* cut mid-record */
	damaged("r19-short-mid", lf.off[r] + 7, 0, SIZE_MAX, r, true);
	if (test_slowdown() > 1)
		return;
	/* cut at a record boundary: a clean end, nothing kept aside */
	damaged("r19-short-boundary", lf.off[r], 0, SIZE_MAX, r, false);
	/* and zeros after it: the preallocated tail */
	damaged("r19-zeros", lf.off[r], 1u << 20, SIZE_MAX, r, false);
}

/* The hardware CRC-32C (three streams over long buffers, combined) against
 * the table version: every length up to 3 * 2048 + 64 and past it, at
 * every alignment, and chained. */
static void test_crc32c_three_streams(void **unused)
{
	(void)unused;
	size_t max = 3 * 2048 * 2 + 200;
	unsigned char *b = malloc(max + 8);
	assert_non_null(b);
	uint64_t rng = 19;
	for (size_t i = 0; i < max + 8; i++)
		b[i] = (unsigned char)test_rand(&rng);
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
	for (size_t n = 0; n <= max; n += n < 800 ? 1 : 7)
		for (size_t a = 0; a < 8; a += n < 800 ? 3 : 1) {
			uint32_t seed = (uint32_t)test_rand(&rng);
			assert_int_equal(crc32c(seed, b + a, n), crc32c_portable(seed, b + a, n));
		}
	/* A long buffer in two calls equals it in one. */
	assert_int_equal(crc32c(crc32c(0, b, 5000), b + 5000, max - 5000), crc32c(0, b, max));
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc32c_three_streams),
	    cmocka_unit_test(test_whole_log),
	    cmocka_unit_test(test_torn_last_record),
	    cmocka_unit_test(test_bad_checksum_in_the_middle),
	    cmocka_unit_test(test_bad_checksum_at_the_edges),
	    cmocka_unit_test(test_short_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
