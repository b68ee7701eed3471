/*
 * test_dbsize.c - DBSIZE counts the keys Redis commands see: contexts with
 * at least one field (cmd_conn.c, over ctx_count_with_fields). Not counted:
 * a context created without fields (CTX.CREATE), a hash whose last field
 * was deleted (the context stays, with no fields), a deleted key, a key
 * past its expiry; FLUSHDB leaves 0 (for the Redis commands here, the
 * counts redis-server gives).
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

static void test_dbsize_counts_keys(void **unused)
{
	(void)unused;
	redisContext *c = hconn(srv_);
	ok(c, "FLUSHDB");
	assert_int_equal(cmd_int(c, "DBSIZE"), 0);
	for (int i = 0; i < 500; i++)
		redisAppendCommand(c, "HSET dbs:%d f v", i);
	for (int i = 0; i < 500; i++) {
		redisReply *r;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		freeReplyObject(r);
	}
	assert_int_equal(cmd_int(c, "DBSIZE"), 500);
	ok(c, "CTX.CREATE dbs:empty"); /* a context, not a key */
	assert_int_equal(cmd_int(c, "DBSIZE"), 500);
	assert_int_equal(cmd_int(c, "HDEL dbs:0 f"), 1); /* emptied */
	assert_int_equal(cmd_int(c, "EXISTS dbs:0"), 0);
	assert_int_equal(cmd_int(c, "DBSIZE"), 499);
	assert_int_equal(cmd_int(c, "DEL dbs:1"), 1);
	assert_int_equal(cmd_int(c, "DBSIZE"), 498);
	assert_int_equal(cmd_int(c, "PEXPIRE dbs:2 1"), 1);
	usleep(100 * 1000); /* past the 1 ms expiry: not a bound on anything */
	assert_int_equal(cmd_int(c, "DBSIZE"), 497);
	assert_int_equal(cmd_int(c, "HSET dbs:0 g v"), 1); /* a key again */
	assert_int_equal(cmd_int(c, "DBSIZE"), 498);
	ok(c, "FLUSHDB");
	assert_int_equal(cmd_int(c, "DBSIZE"), 0);
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
	    cmocka_unit_test(test_dbsize_counts_keys),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
