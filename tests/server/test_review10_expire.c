/*
 * test_review10_expire.c - round 10 review: EXPIRE and PEXPIRE checked
 * their time against INT64_MAX milliseconds, libctx's ctx_set_ttl against
 * UINT64_MAX / 1000 (its microseconds must fit 64 bits): a time between the
 * two (PEXPIRE k 9223372036854775807, EXPIRE k 9000000000000000) got
 * libctx's "-CTXINVALID ttl too large" from a Redis command, where Redis
 * replies "-ERR invalid expire time in '...' command". The key keeps no ttl.
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

SU_GROUP_SERVER("review10-expire")

static void test_expire_beyond_libctx_bound(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_INT(c, 1, "HSET e f v");
	EXPECT_ERR(c, "ERR invalid expire time in 'pexpire' command",
	           "PEXPIRE e 9223372036854775807");
	EXPECT_ERR(c, "ERR invalid expire time in 'pexpire' command",
	           "PEXPIRE e 18446744073709552");
	EXPECT_ERR(c, "ERR invalid expire time in 'expire' command", "EXPIRE e 9000000000000000");
	EXPECT_INT(c, -1, "TTL e");
	EXPECT_INT(c, 1, "PEXPIRE e 18446744073709551"); /* libctx's largest */
	EXPECT_INT(c, 1, "PERSIST e");
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_expire_beyond_libctx_bound),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
