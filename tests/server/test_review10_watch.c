/*
 * test_review10_watch.c - round 10 review: WATCH kept every key a client
 * named, without a bound, in an array grown by one entry (265 bytes) per
 * key and searched linearly for each new key: one "WATCH k1 ... k40000"
 * held its event loop (every client of it) for 8.8 s, and a client could
 * grow the server by 265 bytes per distinct key, counted in no limit.
 * Now a connection watches at most CTXD_MAX_WATCHED (1024) contexts: a
 * WATCH that would pass it is an error and watches none of its keys;
 * keys already watched do not count again.
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

SU_GROUP_SERVER("review10-watch")

enum { MAX_WATCHED = 1024 };

/* WATCH of the keys w<from> .. w<from + n - 1>. */
static redisReply *watch_range(redisContext *c, int from, int n)
{
	const char **argv = calloc((size_t)n + 1, sizeof(*argv));
	char(*keys)[16] = calloc((size_t)n, sizeof(*keys));
	argv[0] = "WATCH";
	for (int i = 0; i < n; i++) {
		snprintf(keys[i], sizeof(keys[i]), "w%d", from + i);
		argv[i + 1] = keys[i];
	}
	redisReply *r = redisCommandArgv(c, n + 1, argv, NULL);
	assert_non_null(r);
	free(keys);
	free(argv);
	return r;
}

static void test_watch_is_bounded(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	redisReply *r = watch_range(c, 0, MAX_WATCHED + 1);
	assert_int_equal(r->type, REDIS_REPLY_ERROR);
	freeReplyObject(r);
	/* None of them was watched: a write of w0 by another client does
	 * not make EXEC null. */
	redisContext *o = hconn(srv);
	EXPECT_INT(o, 1, "HSET w0 f 1");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET w1 f 1");
	r = cmd(c, "EXEC");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	freeReplyObject(r);

	r = watch_range(c, 0, MAX_WATCHED);
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	freeReplyObject(r);
	r = watch_range(c, 0, 10); /* watched already: no more */
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	freeReplyObject(r);
	r = watch_range(c, MAX_WATCHED, 1);
	assert_int_equal(r->type, REDIS_REPLY_ERROR);
	freeReplyObject(r);
	/* The ones watched still are. */
	EXPECT_INT(o, 1, "HSET w5 f 2");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET w1 f 2");
	EXPECT_NIL(c, "EXEC");
	/* UNWATCH (and EXEC) start again from none. */
	r = watch_range(c, MAX_WATCHED, MAX_WATCHED);
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	freeReplyObject(r);
	redisFree(o);
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_watch_is_bounded),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
