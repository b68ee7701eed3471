/*
 * test_review10_group.c - round 10 review of 9230072 (a pipelined DEL k
 * joins the group of writes of k after it: one commit that replaces k's
 * fields). The replace deletes every old field in that one commit: on a
 * context of 200,000 fields a pipelined "DEL big" + "HSET big x 1" held its
 * event loop 0.36-0.40 s and logged a 2.5 MB record of deletions, where the
 * drop and the create took 0.013-0.068 s (fsync included). A group whose
 * DEL met more than 4096 fields then ran one by one (a drop, then a
 * create: version 1 again, and the create waited on the loop for the
 * drop's fsync). Since round 11 (r11-loop) the replace is a clear
 * (ctx_txn_clear), O(1) whatever the size: every group keeps its one
 * commit, and the version goes on (tests/server/test_r11_loop.c measures
 * the log it writes).
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

SU_GROUP_SERVER("review10-group")

/* HSET key with fields f0 .. f<n-1> in one command. */
static void fill(redisContext *c, const char *key, int n)
{
	const char **argv = calloc((size_t)(2 + 2 * n), sizeof(*argv));
	char(*f)[16] = calloc((size_t)n, sizeof(*f));
	argv[0] = "HSET";
	argv[1] = key;
	for (int i = 0; i < n; i++) {
		snprintf(f[i], sizeof(f[i]), "f%d", i);
		argv[2 + 2 * i] = f[i];
		argv[3 + 2 * i] = "v";
	}
	redisReply *r = redisCommandArgv(c, 2 + 2 * n, argv, NULL);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	free(f);
	free(argv);
}

/* Pipelined DEL key + HSET key x 1; then key's version (CTX.VERSION). */
static long long del_hset_version(redisContext *c, const char *key)
{
	redisAppendCommand(c, "DEL %s", key);
	redisAppendCommand(c, "HSET %s x 1", key);
	redisReply *r;
	assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
	assert_int_equal(r->integer, 1);
	freeReplyObject(r);
	assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
	assert_int_equal(r->integer, 1);
	freeReplyObject(r);
	EXPECT_INT(c, 1, "HLEN %s", key);
	return cmd_int(c, "CTX.VERSION %s", key);
}

static void test_group_del_of_large_context_replaces(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	fill(c, "small", 100);
	fill(c, "small", 100);                             /* version 2 */
	assert_int_equal(del_hset_version(c, "small"), 3); /* replaced: one commit */
	fill(c, "large", 5000);
	fill(c, "large", 5000);
	assert_int_equal(del_hset_version(c, "large"), 3); /* replaced too: a clear */
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_group_del_of_large_context_replaces),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
