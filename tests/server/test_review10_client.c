/*
 * test_review10_client.c - round 10 review: CLIENT LIST ignored its
 * arguments. "CLIENT LIST ID 5" (redis-py's client_list(client_id=...))
 * listed every client, "CLIENT LIST ID abc" and "CLIENT LIST TYPE foo"
 * too, where Redis filters, or replies "ERR Invalid client ID" and
 * "ERR Unknown client type". Every ctxd client is of type normal.
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

SU_GROUP_SERVER("review10-client")

/* The number of lines of a CLIENT LIST reply. */
static size_t listed(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = vcmd(c, fmt, ap);
	va_end(ap);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	size_t n = 0;
	for (const char *p = r->str; (p = strchr(p, '\n')); p++)
		n++;
	freeReplyObject(r);
	return n;
}

static void test_client_list_filters(void **state)
{
	(void)state;
	redisContext *a = hconn(srv), *b = hconn(srv), *d = hconn(srv);
	long long ida = cmd_int(a, "CLIENT ID"), idb = cmd_int(b, "CLIENT ID");
	/* d too has been answered once, so the server has taken it on (the
	 * accepting loop hands a connection to another one: a connect alone
	 * may not be listed yet). */
	cmd_int(d, "CLIENT ID");
	assert_true(listed(a, "CLIENT LIST") >= 3);
	assert_int_equal(listed(a, "CLIENT LIST ID %lld", idb), 1);
	assert_int_equal(listed(a, "CLIENT LIST ID %lld %lld", ida, idb), 2);
	assert_int_equal(listed(a, "CLIENT LIST ID 999999"), 0);
	assert_true(listed(a, "CLIENT LIST TYPE normal") >= 3);
	assert_int_equal(listed(a, "CLIENT LIST TYPE pubsub"), 0);
	assert_int_equal(listed(a, "CLIENT LIST TYPE normal ID %lld", ida), 1);
	EXPECT_ERR(a, "ERR Invalid client ID", "CLIENT LIST ID abc");
	EXPECT_ERR(a, "ERR Unknown client type", "CLIENT LIST TYPE foo");
	EXPECT_ERR(a, "ERR syntax error", "CLIENT LIST ID");
	EXPECT_ERR(a, "ERR syntax error", "CLIENT LIST bogus");
	redisFree(d);
	redisFree(b);
	redisFree(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_list_filters),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
