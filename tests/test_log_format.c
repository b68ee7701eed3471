/*
 * test_log_format.c - the log record encoding (log format version 2) and the
 * replay of logs written in format 1.
 *
 *   - a log written by the format 1 code (tests/log_v1_fixture.h: the rich
 *     store of test_checkpoint_format.c, built with checkpoints off and left
 *     without a close, so all of it is in one segment) replays to exactly
 *     the store it was written from: every kept version with its revision,
 *     time, changed keys and pairs with their times, points, the
 *     time-to-live;
 *   - after that open the store writes format 2 (the new segment's header
 *     says 2); a crash then leaves a format 1 segment followed by a format 2
 *     one, and they replay in order to exactly the store the writer had, and
 *     the same with a checkpoint between (the segment it starts begins its
 *     chain of record times anew);
 *   - a format 2 record is short: a one-put commit of the benchmark's shape
 *     (9-byte id, 6-byte key, 64-byte value) and a create with 4 such keys
 *     take their body plus at most a 19-byte header (format 1: 40 bytes of
 *     header, a u64 time, u32 lengths: 139 and 367 bytes).
 *
 * The fixture was made by compiling this file with -DLOG_FIXTURE_GEN=DIR
 * against the format 1 library (commit 43bf876): main then builds the rich
 * store in DIR and prints the header to stdout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <dirent.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#ifndef LOG_FIXTURE_GEN
#include "format.h"
#include "log_v1_fixture.h"
#endif

/* ---- a store with every kind of content (as test_checkpoint_format.c's) ---------------- */

#include "rich_store.h"

/* Checkpoints only when asked (the whole history stays in the log), no
 * zeros ahead of the records. */
static ctx_store *open_clocked(const char *dir, uint64_t *clock)
{
	ctx_options o;
	rich_options(&o, dir, clock);
	o.checkpoint_bytes = (size_t)1 << 40;
	o.log_prealloc_bytes = 1;
	return test_open(&o);
}

#ifdef LOG_FIXTURE_GEN
/* ---- the fixture generator (see the head comment) --------------------------------------- */

#define STR2(x) #x
#define STR(x)  STR2(x)

int main(void)
{
	const char *dir = STR(LOG_FIXTURE_GEN);
	uint64_t clock = T0;
	ctx_store *s = open_clocked(dir, &clock);
	build_rich_store(s, &clock);
	char *want = settled_dump(s);
	char path[4096];
	snprintf(path, sizeof(path), "%s/wal-%016llx.log", dir, 1ull);
	printf("/* log_v1_fixture.h - a format 1 log segment of test_log_format.c's rich\n"
	       " * store (test_checkpoint_format.c's), written by the format 1 code (commit\n"
	       " * 43bf876), and the dump of the store it was written from. Generated; do\n"
	       " * not edit. */\n");
	printf("#define LOG_V1_CLOCK %lluull\n", (unsigned long long)clock);
	rich_print_bytes("log_v1_bytes", path);
	rich_print_text("log_v1_dump", want);
	fflush(stdout);
	_exit(0); /* no close: no checkpoint, the log holds it all */
}
#else
/* ---- the tests --------------------------------------------------------------------------- */

static void write_bytes(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

typedef struct file_bytes {
	unsigned char *p;
	size_t n;
} file_bytes;

static file_bytes read_bytes(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	file_bytes b;
	b.p = test_read_file(path, &b.n);
	return b;
}

/* The log segments of dir, ascending (their first revisions). */
static size_t segments(const char *dir, uint64_t *firsts, size_t max)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		unsigned long long v;
		if (sscanf(e->d_name, "wal-%16llx.log", &v) == 1 && n < max)
			firsts[n++] = v;
	}
	closedir(d);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && firsts[j - 1] > firsts[j]; j--) {
			uint64_t t = firsts[j];
			firsts[j] = firsts[j - 1];
			firsts[j - 1] = t;
		}
	return n;
}

static uint32_t segment_format(const char *dir, uint64_t first)
{
	char name[64];
	snprintf(name, sizeof(name), "wal-%016llx.log", (unsigned long long)first);
	file_bytes b = read_bytes(dir, name);
	assert_true(b.n >= WAL_HEADER_SIZE);
	assert_memory_equal(b.p, WAL_MAGIC, 8);
	uint32_t v = get_u32(b.p + 8);
	free(b.p);
	return v;
}

static char *fixture_dir(const char *name)
{
	char *dir = test_make_dir(name);
	write_bytes(dir, "wal-0000000000000001.log", log_v1_bytes, sizeof(log_v1_bytes));
	return dir;
}

/* A format 1 log replays to the store it was written from; the store then
 * writes format 2. */
static void test_v1_log_replays(void **unused)
{
	(void)unused;
	char *dir = fixture_dir("logfmt-v1");
	ctx_verify_report rep;
	assert_ok(ctx_verify(dir, &rep));
	assert_int_equal(rep.torn_bytes, 0);
	uint64_t clock = LOG_V1_CLOCK;
	ctx_store *s = open_clocked(dir, &clock);
	char *got = settled_dump(s);
	test_expect_same_dump(log_v1_dump, got, "format 1 log replayed");
	free(got);
	uint64_t firsts[8];
	assert_int_equal(segments(dir, firsts, 8), 2);
	assert_int_equal(segment_format(dir, firsts[0]), FORMAT_V1);
	assert_int_equal(segment_format(dir, firsts[1]), FORMAT_VERSION);
	assert_int_equal(FORMAT_VERSION, 2);
	ctx_close(s);
	/* Closed (a checkpoint): opens again to the same. */
	s = open_clocked(dir, &clock);
	got = settled_dump(s);
	test_expect_same_dump(log_v1_dump, got, "format 1 log replayed, closed, opened");
	free(got);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* More of every kind of record, written in format 2 after the fixture's. */
static void write_more(ctx_store *s, uint64_t *clock, bool checkpoint_between)
{
	char key[32], val[128];
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "user:%04d:name", i * 3);
		snprintf(val, sizeof(val), "second name %d %0*d", i, i * 4, 7);
		put(s, clock, "alpha", key, val);
		if (i % 7 == 3)
			*clock -= 3000; /* a clock that steps back: negative differences */
	}
	ctx_txn *t = NULL;
	*clock += 5;
	assert_ok(ctx_txn_begin(s, "beta", &t));
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "you", 3));
	assert_ok(ctx_txn_del(t, "\xff\xfe", 2));
	memset(val, 'w', sizeof(val));
	assert_ok(ctx_txn_put(t, "\0\0\1", 3, val, sizeof(val)));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	if (checkpoint_between)
		assert_ok(ctx_checkpoint(s));
	*clock += 1000000;
	assert_ok(ctx_txn_begin_create(s, "delta", &t));
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "key-%02d", i);
		assert_ok(ctx_txn_put(t, key, strlen(key), val, 64));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
	uint64_t pinned = 0;
	*clock += 7;
	assert_ok(ctx_point_create(s, "delta", "four keys", &pinned));
	put(s, clock, "delta", "key-00", "short");
	*clock += 7;
	assert_ok(ctx_restore(s, "delta", pinned, NULL));
	assert_ok(ctx_set_ttl(s, "gamma", 5000ull * 1000 * 1000));
	assert_ok(ctx_drop(s, "many-11"));
	*clock += 3;
	assert_ok(ctx_create(s, "many-11"));
	put(s, clock, "many-11", "k", "again");
	*clock += 1000;
}

/* The child (this program run again: a fork of a process whose stores
 * started threads could not start its own under ThreadSanitizer): open dir
 * (the fixture), write more, dump the store to out/dump and the clock to
 * out/clock, and die without closing. */
static int child_main(const char *dir, const char *out, bool checkpoint_between)
{
	char dump_path[4096], clock_path[4096];
	snprintf(dump_path, sizeof(dump_path), "%s/dump", out);
	snprintf(clock_path, sizeof(clock_path), "%s/clock", out);
	uint64_t clock = LOG_V1_CLOCK;
	ctx_store *s = open_clocked(dir, &clock);
	write_more(s, &clock, checkpoint_between);
	char *want = settled_dump(s);
	FILE *f = fopen(dump_path, "w");
	FILE *c = fopen(clock_path, "w");
	if (!f || !c || fputs(want, f) < 0 || fprintf(c, "%llu\n", (unsigned long long)clock) < 0 ||
	    fclose(f) != 0 || fclose(c) != 0)
		_exit(2);
	_exit(0); /* a crash: no close, no checkpoint */
}

/* A child opens the fixture, writes more (format 2), dumps its store to a
 * file and dies without closing; the parent replays both segments. */
static void check_v1_then_v2(bool checkpoint_between)
{
	char *dir = fixture_dir(checkpoint_between ? "logfmt-mixed-ckpt" : "logfmt-mixed");
	char *out = test_make_dir("logfmt-mixed-out");
	fflush(NULL);
	char *argv[] = {
	    "test_log_format", "child", dir, out, checkpoint_between ? "ckpt" : "nockpt", NULL};
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ), 0);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	uint64_t firsts[8];
	size_t n = segments(dir, firsts, 8);
	if (checkpoint_between) {
		/* The checkpoint deleted the format 1 segment. */
		assert_int_equal(n, 1);
		assert_int_equal(segment_format(dir, firsts[0]), FORMAT_VERSION);
	} else {
		assert_int_equal(n, 2);
		assert_int_equal(segment_format(dir, firsts[0]), FORMAT_V1);
		assert_int_equal(segment_format(dir, firsts[1]), FORMAT_VERSION);
	}
	file_bytes want = read_bytes(out, "dump");
	want.p[want.n] = 0;
	file_bytes cl = read_bytes(out, "clock");
	cl.p[cl.n] = 0;
	uint64_t clock = strtoull((char *)cl.p, NULL, 10);
	ctx_verify_report rep;
	assert_ok(ctx_verify(dir, &rep));
	assert_int_equal(rep.torn_bytes, 0);
	ctx_store *s = open_clocked(dir, &clock);
	char *got = settled_dump(s);
	test_expect_same_dump((char *)want.p, got,
	                      checkpoint_between ? "format 2 after a checkpoint, replayed"
	                                         : "format 1 then format 2, replayed");
	free(got);
	ctx_close(s);
	free(want.p);
	free(cl.p);
	test_remove_dir(out);
	free(out);
	test_remove_dir(dir);
	free(dir);
}

static void test_v1_then_v2_replays(void **unused)
{
	(void)unused;
	check_v1_then_v2(false);
}

static void test_v2_after_checkpoint_replays(void **unused)
{
	(void)unused;
	check_v1_then_v2(true);
}

/* The records of the benchmark's shapes, as written. */
static void test_record_sizes(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("logfmt-sizes");
	uint64_t clock = T0;
	ctx_store *s = open_clocked(dir, &clock);
	unsigned char value[64];
	memset(value, 'v', sizeof(value));
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin_create(s, "ctx-00001", &t));
	for (int i = 0; i < 4; i++) {
		char key[8];
		snprintf(key, sizeof(key), "key-%02d", i);
		assert_ok(ctx_txn_put(t, key, 6, value, sizeof(value)));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
	clock += 17;
	assert_ok(ctx_put(s, "ctx-00001", "key-02", 6, value, sizeof(value), NULL));
	file_bytes b = read_bytes(dir, "wal-0000000000000001.log");
	assert_int_equal(get_u32(b.p + 8), FORMAT_VERSION);
	rec_view c = {0}, u = {0};
	assert_null(
	    rec_parse(FORMAT_VERSION, b.p + WAL_HEADER_SIZE, b.n - WAL_HEADER_SIZE, true, &c));
	size_t off = WAL_HEADER_SIZE + c.len;
	assert_null(rec_parse(FORMAT_VERSION, b.p + off, b.n - off, true, &u));
	assert_int_equal(off + u.len, b.n);
	/* Bodies: id (2 + 9), op count (1), per op kind (1), key and value
	 * lengths (1 + 1), key (6), value (64); no time. */
	assert_int_equal(c.type, REC_CREATE);
	assert_int_equal(c.blen, 2 + 9 + 1 + 4 * (1 + 1 + 1 + 6 + 64));
	assert_int_equal(u.type, REC_COMMIT);
	assert_int_equal(u.blen, 2 + 9 + 1 + 1 + 1 + 1 + 6 + 64);
	/* Headers: crc (4), type (1), body length (2 for the create), revision,
	 * version (1 each here), incarnation (commit: 1), the time (the
	 * segment's first: T0 whole, 8 bytes; then a difference of 17 µs). */
	assert_int_equal(c.len - c.blen, 4 + 1 + 2 + 1 + 1 + 8);
	assert_int_equal(u.len - u.blen, 4 + 1 + 1 + 1 + 1 + 1 + 1);
	assert_int_equal(u.time_delta, 17);
	assert_true(u.len <= u.blen + 19 && c.len <= c.blen + 19);
	free(b.p);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "child") == 0)
		return child_main(argv[2], argv[3], strcmp(argv[4], "ckpt") == 0);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v1_log_replays),
	    cmocka_unit_test(test_v1_then_v2_replays),
	    cmocka_unit_test(test_v2_after_checkpoint_replays),
	    cmocka_unit_test(test_record_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
