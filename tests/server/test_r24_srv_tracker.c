/*
 * test_r24_srv_tracker.c - a CTX.TSET or CTX.TDEL that replaces a key's
 * edit is checked for what it adds, not for all its bytes (round 24,
 * r24-srvreview).
 *
 * Round 23 bounded a tracker's unsynced edits by client-query-buffer-limit,
 * checking the pending bytes plus the new edit's key and value. An edit
 * replaces the key's earlier edit, whose bytes go: a tracker at the limit
 * refused to rewrite one of its own values with one of the same size (or a
 * smaller one, or to delete it), although that adds nothing. Fails on the
 * old code: the same-size rewrite was -CTXLIMIT.
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

SU_GROUP_SERVER("r24_srv_tracker")

#define VALUE (100 * 1000) /* bytes of each CTX.TSET's value */

/* CTX.TSET f<field> value (n bytes): true if +OK, false if -CTXLIMIT
 * (anything else fails the test). Field names have 3 digits: every edit's
 * key is as long as every other's. */
static bool tset(redisContext *c, int field, const char *value, size_t n)
{
	redisReply *r = cmd(c, "CTX.TSET f%03d %b", field, value, n);
	bool ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
	if (!ok && (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "CTXLIMIT ", 9) != 0))
		fail_msg("CTX.TSET f%03d: type %d '%s'", field, r->type, r->str ? r->str : "");
	freeReplyObject(r);
	return ok;
}

static void test_replacing_an_edit_at_the_limit(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1mb");
	EXPECT_STATUS(c, "OK", "CTX.CREATE rt");
	EXPECT_STATUS(c, "OK", "CTX.TRACK rt");
	char *value = malloc(3 * VALUE);
	assert_non_null(value);
	memset(value, 'v', 3 * VALUE);

	int n = 0;
	while (n < 100 && tset(c, n, value, VALUE))
		n++;
	assert_true(n > 2 && n < 100);
	/* a new key of the same size: still refused */
	assert_false(tset(c, n, value, VALUE));
	/* rewriting an edit with a value of the same size adds nothing */
	memset(value, 'w', VALUE);
	if (!tset(c, 0, value, VALUE))
		fail_msg("a same-size rewrite of an edit refused at the limit (%d edits)", n);
	/* and a smaller one, and a delete, give bytes back */
	assert_true(tset(c, 1, value, VALUE / 2));
	EXPECT_STATUS(c, "OK", "CTX.TDEL f002");
	/* growing an edit by more than the room left is refused */
	assert_false(tset(c, 3, value, 3 * VALUE));
	/* what was accepted is there */
	redisReply *r = cmd(c, "CTX.TGET f000");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, VALUE);
	assert_int_equal(r->str[0], 'w');
	freeReplyObject(r);
	r = cmd(c, "CTX.TGET f001");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, VALUE / 2);
	freeReplyObject(r);
	EXPECT_NIL(c, "CTX.TGET f002");
	r = cmd(c, "CTX.TGET f003");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, VALUE);
	freeReplyObject(r);
	/* the sync commits them */
	r = cmd(c, "CTX.SYNC");
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	EXPECT_INT(c, n - 1, "HLEN rt");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1gb");
	free(value);
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_replacing_an_edit_at_the_limit),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
