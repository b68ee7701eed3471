/*
 * test_review10b_watch.c - round 10's second review: a WATCH refused for a
 * key that is not a valid context id ("", over 256 bytes, a control byte)
 * answered an error but kept watching the keys before that one, so a later
 * EXEC could come back null because of a command that had failed. Round
 * 10's bound already refuses a WATCH whole; now an invalid key does too.
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

SU_GROUP_SERVER("review10b-watch")

static void test_invalid_key_watches_nothing(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	redisContext *o = hconn(srv);
	EXPECT_STATUS(c, "OK", "WATCH kept");
	redisReply *r = cmd(c, "WATCH before %s after", "");
	assert_int_equal(r->type, REDIS_REPLY_ERROR);
	freeReplyObject(r);
	/* Another client writes "before": the failed WATCH watched nothing. */
	EXPECT_INT(o, 1, "HSET before f 1");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET x f 1");
	r = cmd(c, "EXEC");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	freeReplyObject(r);
	/* The WATCH that succeeded before it still counts. */
	EXPECT_STATUS(c, "OK", "WATCH kept");
	r = cmd(c, "WATCH before2 %s", "");
	assert_int_equal(r->type, REDIS_REPLY_ERROR);
	freeReplyObject(r);
	EXPECT_INT(o, 1, "HSET kept f 1");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET x f 2");
	EXPECT_NIL(c, "EXEC");
	redisFree(o);
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_invalid_key_watches_nothing),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
