/*
 * test_r22_clients.c - what round 22's run of real client libraries against
 * ctxd found (r22-clients: redis-rb 4.8, phpredis 5.3, predis 1.1, Perl
 * Redis 2.000 and Redis::Fast 0.34, redis-lua 2.0, go-redis v5, redigo,
 * aioredis 1.3, from Debian; differential runs of the same request sequences
 * against Debian's redis-server 7.0).
 *
 * Checked:
 *   - EXPIRE/PEXPIRE GT and LT compare the new ttl with the time left (what
 *     TTL reports), as Redis compares expiry instants: EXPIRE k 100, some
 *     time later EXPIRE k 100 GT sets it (:1) and PEXPIRE k 99900 LT, 99.9 s
 *     from now being later than the expiry, does not (:0). Before round 22
 *     they compared with the whole ttl (read after the command's own read had
 *     restarted the idle clock): GT replied :0 and LT :1 there.
 * CTXD_TEST_REDIS=1 runs the same checks against redis-server (they pass).
 * The waits only make time pass; nothing is timed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serverutil.h"

#include "suclient.h"

SU_SERVER_TEARDOWN

static int setup(void **state)
{
	(void)state;
	const char *redis = getenv("CTXD_TEST_REDIS");
	srv = redis && redis[0] == '1' ? su_start_redis("r22-clients")
	                               : su_start("r22-clients", NULL);
	return 0;
}

/* TTL of key in [lo, hi] seconds: TTL rounds the time left, and a loaded
 * machine may stall between the command that set it and this one. */
static void expect_ttl_within(redisContext *c, const char *key, long long lo, long long hi)
{
	redisReply *r = cmd(c, "TTL %s", key);
	if (r->type != REDIS_REPLY_INTEGER || r->integer < lo || r->integer > hi)
		fail_msg("TTL %s: type %d %lld, want %lld..%lld", key, r->type, r->integer, lo, hi);
	freeReplyObject(r);
}

static void test_expire_gt_lt_time_left(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_INT(c, 1, "HSET r22:ttl f v");
	EXPECT_INT(c, 1, "EXPIRE r22:ttl 100");
	usleep(300 * 1000); /* at least 0.3 s of the 100 s are gone */
	/* 99.9 s from now is past the expiry (at most 99.7 s from now): not less. */
	EXPECT_INT(c, 0, "PEXPIRE r22:ttl 99900 LT");
	usleep(300 * 1000);
	/* 100 s from now is past the expiry: greater, so set. */
	EXPECT_INT(c, 1, "EXPIRE r22:ttl 100 GT");
	expect_ttl_within(c, "r22:ttl", 95, 100);
	/* Smaller than the time left: LT sets, GT does not. */
	EXPECT_INT(c, 0, "EXPIRE r22:ttl 50 GT");
	EXPECT_INT(c, 1, "EXPIRE r22:ttl 50 LT");
	expect_ttl_within(c, "r22:ttl", 45, 50);
	/* No ttl counts as infinite. */
	EXPECT_INT(c, 1, "PERSIST r22:ttl");
	EXPECT_INT(c, 0, "EXPIRE r22:ttl 100 GT");
	EXPECT_INT(c, 1, "EXPIRE r22:ttl 100 LT");
	EXPECT_INT(c, 1, "DEL r22:ttl");
	EXPECT_INT(c, 0, "EXPIRE r22:ttl 100 GT");
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_expire_gt_lt_time_left),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
