/*
 * test_robust.c - defects found by black-box testing of ctxd (round 6: real
 * clients, kill -9 loops, hostile input), one test per defect, each sending
 * what the outside tester sent.
 *
 * - A key created by a command pipelined just before TTL/PTTL/EXPIRE NX:
 *   its creation is decided but not yet durable, so it was missing from the
 *   status view the ttl commands read; TTL replied -2 (no such key) and
 *   EXPIRE NX 0 (not set) for a key the same client had just written and
 *   could read with HGET/EXISTS.
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

static su_server *srv;

static int setup(void **state)
{
	srv = su_start("robust", NULL); /* durability always: fsyncs take time */
	return 0;
}

static int teardown(void **state)
{
	assert_int_equal(su_stop(srv), 0);
	su_free(srv);
	return 0;
}

/* Each round sends the write and the ttl command in one packet, so the ttl
 * command runs while the write's fsync is in flight. */
static void test_ttl_after_pipelined_create(void **state)
{
	rawconn *r = raw_open(srv);
	char req[256];
	for (int i = 0; i < 20; i++) {
		snprintf(req, sizeof(req),
		         "HSET pt%d f v\r\nTTL pt%d\r\nPTTL pt%d\r\nEXISTS pt%d\r\n", i, i, i, i);
		assert_true(su_send(r->fd, req, strlen(req)));
		raw_expect(r, NULL, ":1\r\n");
		raw_expect(r, NULL, ":-1\r\n"); /* exists, no ttl (was -2) */
		raw_expect(r, NULL, ":-1\r\n");
		raw_expect(r, NULL, ":1\r\n");
	}
	/* Dropped and created again in one pipeline: the new context has no ttl. */
	raw_expect(r, "HSET pd f v\r\nEXPIRE pd 100\r\n", ":1\r\n");
	raw_expect(r, NULL, ":1\r\n");
	raw_expect(r, "DEL pd\r\nHSET pd f v\r\nTTL pd\r\n", ":1\r\n");
	raw_expect(r, NULL, ":1\r\n");
	raw_expect(r, NULL, ":-1\r\n");
	raw_close(r);
}

static void test_expire_cond_after_pipelined_create(void **state)
{
	rawconn *r = raw_open(srv);
	char req[256];
	for (int i = 0; i < 10; i++) {
		snprintf(req, sizeof(req), "HSET pn%d f v\r\nEXPIRE pn%d 100 NX\r\nTTL pn%d\r\n", i,
		         i, i);
		assert_true(su_send(r->fd, req, strlen(req)));
		raw_expect(r, NULL, ":1\r\n");
		raw_expect(r, NULL, ":1\r\n"); /* was 0: the ttl was not set */
		raw_expect(r, NULL, ":100\r\n");
		snprintf(
		    req, sizeof(req),
		    "HSET pl%d f v\r\nEXPIRE pl%d 100 GT\r\nEXPIRE pl%d 100 LT\r\nTTL pl%d\r\n", i,
		    i, i, i);
		assert_true(su_send(r->fd, req, strlen(req)));
		raw_expect(r, NULL, ":1\r\n");
		raw_expect(r, NULL, ":0\r\n"); /* no ttl counts as infinite: GT never sets */
		raw_expect(r, NULL, ":1\r\n");
		raw_expect(r, NULL, ":100\r\n");
	}
	raw_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ttl_after_pipelined_create),
	    cmocka_unit_test(test_expire_cond_after_pipelined_create),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
