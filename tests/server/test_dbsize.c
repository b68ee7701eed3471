/*
 * test_dbsize.c - DBSIZE counts the keys Redis commands see: contexts with
 * at least one field (cmd_conn.c, over ctx_count_with_fields). Not counted:
 * a context created without fields (CTX.CREATE), a hash whose last field
 * was deleted (the context stays, with no fields), a deleted key, a key
 * past its expiry; FLUSHDB leaves 0 (for the Redis commands here, the
 * counts redis-server gives). A DBSIZE right behind a write in one pipeline
 * counts that write, whether its sync has happened yet or not (durability
 * always, the default: the write's reply waits for its sync, DBSIZE's for
 * every revision its count may include).
 *
 * INFO keyspace's db0:keys= is the same count (round 12: it was ctx_count,
 * which counted the contexts without fields and those past their expiry
 * not yet reaped); checked after every DBSIZE here.
 */
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

static su_server *srv_;

static void ok(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = vcmd(c, fmt, ap);
	va_end(ap);
	if (r->type == REDIS_REPLY_ERROR)
		fail_msg("%s: %s", fmt, r->str);
	freeReplyObject(r);
}

/* INFO keyspace's keys= (0 when the db0 line is absent, as Redis leaves it
 * out for an empty database). */
static long long info_keys(redisContext *c)
{
	redisReply *r = cmd(c, "INFO keyspace");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	const char *p = strstr(r->str, "db0:keys=");
	long long n = p ? atoll(p + strlen("db0:keys=")) : 0;
	if (p)
		assert_true(n > 0);
	freeReplyObject(r);
	return n;
}

/* DBSIZE, which must equal INFO keyspace's count. */
static long long dbsize(redisContext *c)
{
	long long n = cmd_int(c, "DBSIZE");
	assert_int_equal(info_keys(c), n);
	return n;
}

static void test_dbsize_counts_keys(void **unused)
{
	(void)unused;
	redisContext *c = hconn(srv_);
	ok(c, "FLUSHDB");
	assert_int_equal(dbsize(c), 0);
	for (int i = 0; i < 500; i++)
		redisAppendCommand(c, "HSET dbs:%d f v", i);
	for (int i = 0; i < 500; i++) {
		redisReply *r;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		freeReplyObject(r);
	}
	assert_int_equal(dbsize(c), 500);
	ok(c, "CTX.CREATE dbs:empty"); /* a context, not a key */
	assert_int_equal(dbsize(c), 500);
	assert_int_equal(cmd_int(c, "HDEL dbs:0 f"), 1); /* emptied */
	assert_int_equal(cmd_int(c, "EXISTS dbs:0"), 0);
	assert_int_equal(dbsize(c), 499);
	assert_int_equal(cmd_int(c, "DEL dbs:1"), 1);
	assert_int_equal(dbsize(c), 498);
	assert_int_equal(cmd_int(c, "PEXPIRE dbs:2 1"), 1);
	usleep(100 * 1000); /* past the 1 ms expiry: not a bound on anything */
	assert_int_equal(dbsize(c), 497);
	assert_int_equal(cmd_int(c, "HSET dbs:0 g v"), 1); /* a key again */
	assert_int_equal(dbsize(c), 498);
	ok(c, "FLUSHDB");
	assert_int_equal(dbsize(c), 0);
	redisFree(c);
}

static long long reply_int_of(redisContext *c)
{
	redisReply *r;
	assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
	if (r->type != REDIS_REPLY_INTEGER)
		fail_msg("expected an integer, got type %d (%s)", r->type,
		         r->type == REDIS_REPLY_ERROR ? r->str : "");
	long long v = r->integer;
	freeReplyObject(r);
	return v;
}

/* Pipelined: a new key, DBSIZE, its deletion, DBSIZE; and a new key in
 * one EXEC-free group of writes. Each DBSIZE sees the writes before it. */
static void test_dbsize_after_pipelined_writes(void **unused)
{
	(void)unused;
	redisContext *c = hconn(srv_);
	ok(c, "FLUSHDB");
	for (int round = 0; round < 20; round++) {
		redisAppendCommand(c, "HSET dbp:%d f v", round);
		redisAppendCommand(c, "DBSIZE");
		redisAppendCommand(c, "HSET dbp:%d g v", round);
		redisAppendCommand(c, "DEL dbp:%d", round);
		redisAppendCommand(c, "DBSIZE");
		redisAppendCommand(c, "HSET dbq:%d f v", round);
		redisAppendCommand(c, "DBSIZE");
		assert_int_equal(reply_int_of(c), 1);
		assert_int_equal(reply_int_of(c), round + 1);
		assert_int_equal(reply_int_of(c), 1);
		assert_int_equal(reply_int_of(c), 1);
		assert_int_equal(reply_int_of(c), round);
		assert_int_equal(reply_int_of(c), 1);
		assert_int_equal(reply_int_of(c), round + 1);
	}
	ok(c, "FLUSHDB");
	redisFree(c);
}

static int setup(void **state)
{
	(void)state;
	srv_ = su_start("dbsize", NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	su_free(srv_);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dbsize_after_pipelined_writes),
	    cmocka_unit_test(test_dbsize_counts_keys),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
