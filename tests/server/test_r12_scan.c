/*
 * test_r12_scan.c - SCAN and HSCAN at their edges answer as redis-server 7.0
 * does (round 12), and INFO keyspace counts the keys DBSIZE counts. Also
 * other patterns and numbers at their edges: CONFIG GET's patterns are
 * Redis's globs without case (reversed ranges, '^' negates, '!' is a byte),
 * integers past 64 bits or without digits, and RESP lengths past 64 bits.
 *
 * Cursors are read as Redis reads them (strtoul): a sign is taken ("-1" is
 * 2^64 - 1, "+0" and "-0" are 0), the empty string is 0, leading zeros are
 * fine, the argument ends at a NUL byte; a leading blank, trailing bytes or
 * more than 64 bits are "ERR invalid cursor". A SCAN cursor ctxd never hands
 * out (2^63 and above, so every small negative one) ends the scan instead
 * of being refused. The cursor's syntax is checked first, then (HSCAN) the
 * key, whose absence answers an empty, finished scan whatever the options
 * say, then the options (COUNT 0 or negative: "ERR syntax error"; COUNT not
 * a long: "ERR value is not an integer or out of range"), and last the
 * cursor's meaning (ctxd's unknown SCAN cursor error).
 *
 * CTXD_TEST_REDIS=1 runs it against redis-server: every reply expected here
 * is Redis's own (where ctxd gives a subset of what Redis may, as the
 * elements of a scan from a cursor it never gave, the check is !is_redis).
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "serverutil.h"
#include "suclient.h"
#include "sutarget.h"

/* A scan reply: cursor want_cursor and, unless want_n < 0, want_n elements. */
static void check_scan(redisReply *r, const char *what, const char *want_cursor, long want_n)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		fail_msg("%s: type %d '%s', want a scan reply", what, r->type,
		         r->str ? r->str : "");
	if (strcmp(r->element[0]->str, want_cursor) != 0)
		fail_msg("%s: cursor '%s', want '%s'", what, r->element[0]->str, want_cursor);
	if (want_n >= 0 && r->element[1]->elements != (size_t)want_n)
		fail_msg("%s: %zu elements, want %ld", what, r->element[1]->elements, want_n);
	freeReplyObject(r);
}

/* SCAN / HSCAN key with the cursor as given (binary: may be empty or hold a
 * NUL), then up to two more arguments. */
static redisReply *scan_raw(redisContext *c, const char *key, const char *cur, size_t curlen,
                            const char *a1, const char *a2)
{
	const char *argv[6];
	size_t lens[6], n = 0;
	argv[n] = key ? "HSCAN" : "SCAN", lens[n] = strlen(argv[n]), n++;
	if (key)
		argv[n] = key, lens[n] = strlen(key), n++;
	argv[n] = cur, lens[n] = curlen, n++;
	if (a1)
		argv[n] = a1, lens[n] = strlen(a1), n++;
	if (a2)
		argv[n] = a2, lens[n] = strlen(a2), n++;
	redisReply *r = redisCommandArgv(c, (int)n, argv, lens);
	if (!r)
		fail_msg("no reply: %s", c->errstr);
	return r;
}

static void expect_invalid_cursor(redisContext *c, const char *key, const char *cur)
{
	redisReply *r = scan_raw(c, key, cur, strlen(cur), NULL, NULL);
	if (r->type != REDIS_REPLY_ERROR || strcmp(r->str, "ERR invalid cursor") != 0)
		fail_msg("%s '%s': type %d '%s', want 'ERR invalid cursor'", key ? "HSCAN" : "SCAN",
		         cur, r->type, r->str ? r->str : "");
	freeReplyObject(r);
}

/* Cursors Redis reads as 0 start the scan; those it refuses are refused. */
static void test_scan_cursor_syntax(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET k f v");
	const char *zeros[] = {"", "+0", "-0", "00", "000000000000000000000000000000"};
	for (size_t i = 0; i < sizeof(zeros) / sizeof(zeros[0]); i++) {
		check_scan(scan_raw(c, NULL, zeros[i], strlen(zeros[i]), NULL, NULL), zeros[i], "0",
		           1);
		check_scan(scan_raw(c, "k", zeros[i], strlen(zeros[i]), NULL, NULL), zeros[i], "0",
		           2);
	}
	/* the argument ends at its NUL byte, as Redis's C string does */
	check_scan(scan_raw(c, NULL, "0\0junk", 6, NULL, NULL), "0\\0junk", "0", 1);
	check_scan(scan_raw(c, "k", "0\0junk", 6, NULL, NULL), "0\\0junk", "0", 2);
	const char *bad[] = {" 0",
	                     "0 ",
	                     "\t0",
	                     "0x0",
	                     "+",
	                     "-",
	                     "+-1",
	                     "1.0",
	                     "abc",
	                     "1e3",
	                     "18446744073709551616",
	                     "-18446744073709551616"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_invalid_cursor(c, NULL, bad[i]);
		expect_invalid_cursor(c, "k", bad[i]);
		expect_invalid_cursor(c, "nokey", bad[i]);
	}
	redisFree(c);
}

/* Negative and huge cursors are no error: the scan answers and ends (Redis
 * may list the keys of its last bucket; ctxd's SCAN lists none). */
static void test_scan_never_given_cursors(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET k f v");
	EXPECT_INT(c, 3, "HSET h a 1 b 2 c 3");
	const char *curs[] = {"-1", "-2", "18446744073709551615", "9223372036854775808",
	                      "-9223372036854775808"};
	for (size_t i = 0; i < sizeof(curs) / sizeof(curs[0]); i++) {
		check_scan(cmd(c, "SCAN %s", curs[i]), curs[i], "0", is_redis ? -1 : 0);
		check_scan(cmd(c, "SCAN %s COUNT 1000 MATCH *", curs[i]), curs[i], "0",
		           is_redis ? -1 : 0);
		/* ctxd: (version << 32) | position; a position past the end ends it */
		check_scan(cmd(c, "HSCAN h %s", curs[i]), curs[i], "0", -1);
		check_scan(cmd(c, "HSCAN nokey %s", curs[i]), curs[i], "0", 0);
		/* the options are still checked */
		EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN %s COUNT 0", curs[i]);
	}
	if (!is_redis) /* a cursor ctxd may have given and forgot: an error, not the end */
		EXPECT_ERR(c, "ERR invalid cursor: ctxd keeps SCAN cursors", "SCAN 12345");
	/* checked after the options, as Redis checks its cursor's meaning */
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 12345 COUNT 0");
	redisFree(c);
}

static void test_scan_options(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET k f v");
	EXPECT_INT(c, 1, "HSET other f v");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 0 COUNT 0");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 0 COUNT -1");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 0 COUNT -9223372036854775808");
	const char *notint[] = {"+5", " 5", "5 ", "05", "5.0", "x", "9223372036854775808"};
	for (size_t i = 0; i < sizeof(notint) / sizeof(notint[0]); i++) {
		EXPECT_ERR_EXACT(c, "ERR value is not an integer or out of range",
		                 "SCAN 0 COUNT %s", notint[i]);
		EXPECT_ERR_EXACT(c, "ERR value is not an integer or out of range",
		                 "HSCAN k 0 COUNT %s", notint[i]);
	}
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 0 COUNT");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 0 MATCH");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 0 TYPE");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 0 NOVALUES");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 0 BOGUS");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "SCAN 0 MATCH * COUNT 0");
	check_scan(cmd(c, "SCAN 0 MATCH k*"), "MATCH k* without COUNT", "0", 1);
	check_scan(cmd(c, "SCAN 0 match k* count 5"), "lower-case options", "0", 1);
	check_scan(cmd(c, "SCAN 0 COUNT 9223372036854775807"), "COUNT LLONG_MAX", "0", 2);
	check_scan(cmd(c, "SCAN 0 TYPE hash"), "TYPE hash", "0", 2);
	check_scan(cmd(c, "SCAN 0 TYPE HASH"), "TYPE HASH", "0", 2);
	check_scan(cmd(c, "SCAN 0 TYPE string"), "TYPE string", "0", 0);
	check_scan(cmd(c, "SCAN 0 TYPE nosuchtype"), "TYPE nosuchtype", "0", 0);
	check_scan(cmd(c, "SCAN 0 TYPE hash MATCH o*"), "TYPE and MATCH", "0", 1);
	redisFree(c);
}

/* HSCAN: an absent key (or an emptied hash, which Redis deletes) answers an
 * empty, finished scan before its options are read; on a hash they are
 * checked as SCAN's. */
static void test_hscan_edges(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 3, "HSET h a 1 b 2 c 3");
	EXPECT_INT(c, 1, "HSET emptied f v");
	EXPECT_INT(c, 1, "HDEL emptied f");
	const char *keys[] = {"nokey", "emptied"};
	for (size_t i = 0; i < 2; i++) {
		const char *k = keys[i];
		check_scan(cmd(c, "HSCAN %s 0 COUNT 0", k), "absent COUNT 0", "0", 0);
		check_scan(cmd(c, "HSCAN %s 0 COUNT -1", k), "absent COUNT -1", "0", 0);
		check_scan(cmd(c, "HSCAN %s 0 COUNT x", k), "absent COUNT x", "0", 0);
		check_scan(cmd(c, "HSCAN %s 0 COUNT", k), "absent COUNT", "0", 0);
		check_scan(cmd(c, "HSCAN %s 0 MATCH", k), "absent MATCH", "0", 0);
		check_scan(cmd(c, "HSCAN %s 0 BOGUS", k), "absent BOGUS", "0", 0);
		check_scan(cmd(c, "HSCAN %s 0 TYPE hash", k), "absent TYPE", "0", 0);
		expect_invalid_cursor(c, k, "x");
	}
	EXPECT_ERR_EXACT(c, "ERR syntax error", "HSCAN h 0 COUNT 0");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "HSCAN h 0 COUNT -1");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "HSCAN h 0 COUNT");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "HSCAN h 0 MATCH");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "HSCAN h 0 BOGUS");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "HSCAN h 0 TYPE hash"); /* SCAN's only */
	EXPECT_ERR_EXACT(c, "ERR syntax error", "HSCAN h 0 MATCH a* COUNT 0");
	check_scan(cmd(c, "HSCAN h 0 MATCH a*"), "MATCH a* without COUNT", "0", 2);
	check_scan(cmd(c, "HSCAN h 0 COUNT 9223372036854775807"), "COUNT LLONG_MAX", "0", 6);
	redisFree(c);
}

/* INFO keyspace's keys= is DBSIZE: an emptied hash is no key; an empty
 * database has no db0 line. */
static void test_info_keyspace_counts_keys(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 2, "HSET a f v g w");
	EXPECT_INT(c, 1, "HSET b f v");
	char *v = info_field(c, "keyspace", "db0");
	assert_non_null(v);
	assert_true(strncmp(v, "keys=2,", 7) == 0);
	free(v);
	EXPECT_INT(c, 2, "HDEL a f g");
	EXPECT_INT(c, 1, "DBSIZE");
	v = info_field(c, "keyspace", "db0");
	assert_non_null(v);
	assert_true(strncmp(v, "keys=1,", 7) == 0);
	free(v);
	EXPECT_INT(c, 1, "HDEL b f");
	EXPECT_INT(c, 0, "DBSIZE");
	assert_null(info_field(c, "keyspace", "db0"));
	/* the default sections and "everything" carry it too */
	EXPECT_INT(c, 1, "HSET b f v");
	redisReply *r = cmd(c, "INFO");
	assert_non_null(strstr(r->str, "\r\ndb0:keys=1,"));
	freeReplyObject(r);
	v = info_field(c, "everything", "db0");
	assert_non_null(v);
	assert_true(strncmp(v, "keys=1,", 7) == 0);
	free(v);
	redisFree(c);
}

/* CONFIG GET pattern: Redis's stringmatchlen without case (it was fnmatch:
 * "[z-a]" matched nothing, "[!a]" negated). */
static void test_config_get_patterns(void **state)
{
	(void)state;
	redisContext *c = conn();
	const char *hit[] = {"[A-Z]AXCLIENTS", "[z-a]AXCLIENTS", "[^a]axclients", "MAXCLIENT?",
	                     "[L-N]axclients"};
	for (size_t i = 0; i < sizeof(hit) / sizeof(hit[0]); i++) {
		redisReply *r = cmd(c, "CONFIG GET %s", hit[i]);
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    strcmp(r->element[0]->str, "maxclients") != 0)
			fail_msg("CONFIG GET %s: type %d, %zu elements, want maxclients", hit[i],
			         r->type, r->elements);
		freeReplyObject(r);
	}
	const char *miss[] = {"[N-Z]axclients", "[!a]axclients", "maxclients[", "["};
	for (size_t i = 0; i < sizeof(miss) / sizeof(miss[0]); i++) {
		redisReply *r = cmd(c, "CONFIG GET %s", miss[i]);
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 0)
			fail_msg("CONFIG GET %s: type %d, %zu elements, want none", miss[i],
			         r->type, r->elements);
		freeReplyObject(r);
	}
	redisFree(c);
}

/* Integers: no digits after '-', more than 20 bytes, past 64 bits. RESP
 * lengths past 64 bits: Redis's protocol errors. */
static void test_numbers_past_64_bits(void **state)
{
	(void)state;
	redisContext *c = conn();
	const char *bad[] = {"-", "000000000000000000000001", "99999999999999999999",
	                     "-9223372036854775809", "9223372036854775808"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		EXPECT_ERR_EXACT(c, "ERR value is not an integer or out of range", "HINCRBY n f %s",
		                 bad[i]);
	EXPECT_INT(c, 0, "EXISTS n");
	EXPECT_ERR_EXACT(c, "ERR wrong number of arguments for 'hmset' command", "HMSET n f");
	redisFree(c);
	rawconn *r = raw_open(&target);
	raw_expect(r, "*9999999999999999999\r\n", "-ERR Protocol error: invalid multibulk length");
	raw_close(r);
	r = raw_open(&target);
	raw_expect(r, "*1\r\n$9999999999999999999\r\n", "-ERR Protocol error: invalid bulk length");
	raw_close(r);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	target_start("test_r12_scan");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_scan_cursor_syntax, setup),
	    cmocka_unit_test_setup(test_scan_never_given_cursors, setup),
	    cmocka_unit_test_setup(test_scan_options, setup),
	    cmocka_unit_test_setup(test_hscan_edges, setup),
	    cmocka_unit_test_setup(test_info_keyspace_counts_keys, setup),
	    cmocka_unit_test_setup(test_config_get_patterns, setup),
	    cmocka_unit_test_setup(test_numbers_past_64_bits, setup),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	target_stop();
	return failed;
}
