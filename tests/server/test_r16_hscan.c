/*
 * test_r16_hscan.c - the version an unfinished HSCAN holds is released, and
 * a populated ctxd stops (round 16, r16-hscan).
 *
 * Since round 14 a connection's unfinished HSCAN holds the version it walks
 * (cmd_hash.c), so that a scan continued on its connection misses no field
 * present throughout. A client that never finished its scan held that
 * version, and every field of it that later writes deleted or rewrote, for
 * its connection's life. Now the loop's timer releases it when the scan
 * was not continued for scan-hold-seconds, when it was idle a second while
 * the held versions pass scan-hold-bytes, or when its hash is gone; INFO
 * memory counts the held versions (scan_versions_held, _bytes) and INFO
 * stats the early releases (scan_versions_released). Checked here:
 * - each of the three releases happens (waited for by polling INFO, with no
 *   bound on how soon: only that it happens), and a scan continued after
 *   its version was released still returns every field present
 *   throughout, whatever was deleted meanwhile (its version left history:
 *   the scan starts again on the newest version);
 * - a finished scan holds nothing, an HSCAN of an absent hash releases;
 * - a ctxd holding a populated store (durability batch) stops on SIGTERM
 *   with exit status 0, and every acknowledged field is there after a
 *   restart.
 * Without the change the INFO fields are missing and nothing releases the
 * idle scan: every scan test fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serverutil.h"

#include "suclient.h"

#define STABLE    150  /* fields present throughout a scan: s0.. */
#define TRANSIENT 150  /* fields deleted during it (one commit each): t0.. */
#define POLLS     1200 /* INFO polls, 100 ms apart, before giving up */

/* HSET key with s0..s(STABLE-1) and t0..t(TRANSIENT-1), one command. */
static void fill(redisContext *c, const char *key)
{
	size_t argc = 2 + 2 * (STABLE + TRANSIENT);
	const char **argv = calloc(argc, sizeof(*argv));
	char(*names)[16] = calloc(STABLE + TRANSIENT, sizeof(*names));
	assert_non_null(argv);
	assert_non_null(names);
	argv[0] = "HSET";
	argv[1] = key;
	for (int i = 0; i < STABLE + TRANSIENT; i++) {
		if (i < STABLE)
			snprintf(names[i], sizeof(names[i]), "s%d", i);
		else
			snprintf(names[i], sizeof(names[i]), "t%d", i - STABLE);
		argv[2 + 2 * i] = names[i];
		argv[3 + 2 * i] = "v";
	}
	redisReply *r = redisCommandArgv(c, (int)argc, argv, NULL);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_int_equal(r->integer, STABLE + TRANSIENT);
	freeReplyObject(r);
	free(names);
	free(argv);
}

/* One HSCAN page from cursor `cur`; marks the stable fields it returns in
 * seen and returns the next cursor. */
static unsigned long long page(redisContext *c, const char *key, unsigned long long cur, bool *seen)
{
	redisReply *r = cmd(c, "HSCAN %s %llu COUNT 10", key, cur);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 2);
	unsigned long long next = strtoull(r->element[0]->str, NULL, 10);
	redisReply *a = r->element[1];
	assert_int_equal(a->elements % 2, 0);
	for (size_t i = 0; i < a->elements; i += 2) {
		int k;
		if (sscanf(a->element[i]->str, "s%d", &k) == 1 && k >= 0 && k < STABLE)
			seen[k] = true;
	}
	freeReplyObject(r);
	return next;
}

static long long held(redisContext *c)
{
	return info_int(c, "memory", "scan_versions_held");
}

/* Poll INFO until no scan version is held; fails if that never happens. */
static void wait_released(redisContext *c)
{
	for (int i = 0; i < POLLS; i++) {
		if (held(c) == 0)
			return;
		usleep(100 * 1000);
	}
	fail_msg("the scan's version was still held after %d polls", POLLS);
}

/* Delete every transient field, one commit each: more commits than
 * history keeps (64), so the scan's first version leaves history. */
static void delete_transient(redisContext *c, const char *key)
{
	for (int i = 0; i < TRANSIENT; i++)
		EXPECT_INT(c, 1, "HDEL %s t%d", key, i);
}

static void expect_all_stable(const bool *seen)
{
	for (int k = 0; k < STABLE; k++)
		if (!seen[k])
			fail_msg("field s%d, present throughout the scan, was never returned", k);
}

/* A ctxd named name (durability none, scan-hold-seconds far off), a hash h
 * filled, and the first page of a scan of it read on `scanner`, which now
 * holds one version. */
typedef struct held_scan {
	redisContext *scanner, *writer;
	bool seen[STABLE];
	unsigned long long cur;
} held_scan;

static void start_held_scan(const char *name, held_scan *s)
{
	static const char *const args[] = {"--durability", "none", "--scan-hold-seconds", "100000",
	                                   NULL};
	own = su_start(name, args);
	s->scanner = hconn(own);
	s->writer = hconn(own);
	fill(s->writer, "h");
	assert_int_equal(held(s->writer), 0);
	memset(s->seen, 0, sizeof s->seen);
	s->cur = page(s->scanner, "h", 0, s->seen);
	assert_true(s->cur != 0);
	assert_int_equal(held(s->writer), 1);
}

static void stop_held_scan(held_scan *s)
{
	redisFree(s->scanner);
	redisFree(s->writer);
	assert_int_equal(su_stop(own), 0);
}

/* A scan left idle past scan-hold-seconds is released by the loop's timer;
 * continued afterwards (its version gone from history), it still returns
 * every field present throughout. */
static void test_idle_scan_released(void **state)
{
	(void)state;
	held_scan s;
	start_held_scan("r16_hscan_idle", &s);
	expect_config(s.writer, "scan-hold-seconds", "100000");
	assert_true(info_int(s.writer, "memory", "scan_versions_held_bytes") > 0);
	long long released = info_int(s.writer, "stats", "scan_versions_released");
	EXPECT_STATUS(s.writer, "OK", "CONFIG SET scan-hold-seconds 1");
	delete_transient(s.writer, "h");
	wait_released(s.writer);
	assert_int_equal(info_int(s.writer, "memory", "scan_versions_held_bytes"), 0);
	assert_true(info_int(s.writer, "stats", "scan_versions_released") > released);
	while (s.cur != 0)
		s.cur = page(s.scanner, "h", s.cur, s.seen);
	expect_all_stable(s.seen);
	assert_int_equal(held(s.writer), 0); /* the finished scan holds nothing */
	stop_held_scan(&s);
}

/* Past scan-hold-bytes, a scan idle for a second is released even though
 * scan-hold-seconds is far off; continued, it ends with every field. */
static void test_scan_over_bytes_released(void **state)
{
	(void)state;
	held_scan s;
	start_held_scan("r16_hscan_bytes", &s);
	EXPECT_STATUS(s.writer, "OK", "CONFIG SET scan-hold-bytes 1");
	expect_config(s.writer, "scan-hold-bytes", "1");
	wait_released(s.writer);
	assert_true(info_int(s.writer, "stats", "scan_versions_released") >= 1);
	delete_transient(s.writer, "h");
	while (s.cur != 0)
		s.cur = page(s.scanner, "h", s.cur, s.seen);
	expect_all_stable(s.seen);
	EXPECT_ERR(s.writer, "ERR Invalid argument", "CONFIG SET scan-hold-bytes lots");
	stop_held_scan(&s);
}

/* A scan whose hash is deleted is released by the timer, without waiting
 * for scan-hold-seconds; an HSCAN of the absent hash ends the scan. */
static void test_scan_of_gone_hash_released(void **state)
{
	(void)state;
	held_scan s;
	start_held_scan("r16_hscan_gone", &s);
	EXPECT_INT(s.writer, 1, "DEL h");
	wait_released(s.writer);
	assert_int_equal(info_int(s.writer, "stats", "scan_versions_released"), 1);
	assert_int_equal(page(s.scanner, "h", s.cur, s.seen), 0);
	/* the same at the next page, before any timer: a new scan of g, g
	 * deleted, its next page replies 0 [] and holds nothing */
	fill(s.writer, "g");
	s.cur = page(s.scanner, "g", 0, s.seen);
	assert_true(s.cur != 0);
	assert_int_equal(held(s.writer), 1);
	EXPECT_INT(s.writer, 1, "DEL g");
	assert_int_equal(page(s.scanner, "g", s.cur, s.seen), 0);
	assert_int_equal(held(s.writer), 0);
	stop_held_scan(&s);
}

#define BIG_FIELDS   60000 /* one hash */
#define SMALL_CTX    400   /* contexts of SMALL_FIELDS fields */
#define SMALL_FIELDS 25
#define PIPE         1000 /* pipelined requests before reading their replies */

static void pipe_replies(redisContext *c, int n)
{
	for (int i = 0; i < n; i++) {
		redisReply *r;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
		freeReplyObject(r);
	}
}

/* A stop of a populated ctxd (durability batch) ends, with exit status 0
 * and a scan left unfinished, and the data is all there after a restart. */
static void test_populated_stop_and_restart(void **state)
{
	(void)state;
	static const char *const args[] = {"--durability", "batch", NULL};
	own = su_start("r16_hscan_stop", args);
	redisContext *c = hconn(own);
	int queued = 0;
	for (int i = 0; i < BIG_FIELDS; i++) {
		redisAppendCommand(c, "HSET big f%d value-%d", i, i);
		if (++queued == PIPE) {
			pipe_replies(c, queued);
			queued = 0;
		}
	}
	for (int k = 0; k < SMALL_CTX; k++)
		for (int i = 0; i < SMALL_FIELDS; i++) {
			redisAppendCommand(c, "HSET small:%d f%d %d", k, i, k * i);
			if (++queued == PIPE) {
				pipe_replies(c, queued);
				queued = 0;
			}
		}
	pipe_replies(c, queued);
	bool seen[STABLE] = {false};
	assert_true(page(c, "big", 0, seen) != 0); /* left unfinished at the stop */
	assert_int_equal(held(c), 1);
	redisFree(c);
	assert_int_equal(su_stop(own), 0);
	su_restart(own, args);
	c = hconn(own);
	EXPECT_INT(c, BIG_FIELDS, "HLEN big");
	EXPECT_INT(c, SMALL_FIELDS, "HLEN small:%d", SMALL_CTX - 1);
	redisReply *r = cmd(c, "HGET big f%d", BIG_FIELDS - 1);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	char want[32];
	snprintf(want, sizeof(want), "value-%d", BIG_FIELDS - 1);
	assert_string_equal(r->str, want);
	freeReplyObject(r);
	EXPECT_INT(c, SMALL_CTX + 1, "DBSIZE");
	assert_int_equal(held(c), 0);
	redisFree(c);
	assert_int_equal(su_stop(own), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_idle_scan_released, free_own),
	    cmocka_unit_test_teardown(test_scan_over_bytes_released, free_own),
	    cmocka_unit_test_teardown(test_scan_of_gone_hash_released, free_own),
	    cmocka_unit_test_teardown(test_populated_stop_and_restart, free_own),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
