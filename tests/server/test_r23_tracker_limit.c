/*
 * test_r23_tracker_limit.c - a connection's tracker edits are bounded
 * (round 23).
 *
 * CTX.TSET and CTX.TDEL keep their edits in the connection's tracker until
 * CTX.SYNC: server memory a client fills at will, which nothing bounded
 * (round 22: 1,500 CTX.TSETs of 100 KB held 196 MB in ctxd, and as many
 * more as the client sent). They are now counted
 * (ctx_tracker_pending_bytes) against client-query-buffer-limit, as a
 * transaction's queue is; an edit that would pass it is refused with
 * -CTXLIMIT, the connection and the edits already made kept, and a sync
 * makes room again. Fails on the old code: every CTX.TSET was +OK.
 * maxmemory-clients counts them too, with the client's input and output.
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

SU_GROUP_SERVER("r23_tracker_limit")

#define VALUE (100 * 1000) /* bytes of each CTX.TSET's value */
#define LIMIT (1 << 20)    /* client-query-buffer-limit 1mb */

/* CTX.TSET field value with a VALUE-byte value: true if +OK, false if
 * refused with CTXLIMIT (anything else fails the test). */
static bool tset(redisContext *c, int field, const char *value)
{
	redisReply *r = cmd(c, "CTX.TSET f%d %b", field, value, (size_t)VALUE);
	bool ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
	if (!ok && (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "CTXLIMIT ", 9) != 0))
		fail_msg("CTX.TSET f%d: type %d '%s'", field, r->type, r->str ? r->str : "");
	freeReplyObject(r);
	return ok;
}

static void test_tracker_edits_bounded(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1mb");
	EXPECT_STATUS(c, "OK", "CTX.CREATE tl");
	EXPECT_STATUS(c, "OK", "CTX.TRACK tl");
	char *value = malloc(VALUE);
	assert_non_null(value);
	memset(value, 'v', VALUE);

	/* Up to the limit: about 10 edits of 100 KB, then refused. */
	int n = 0;
	while (n < 100 && tset(c, n, value))
		n++;
	if (n == 100)
		fail_msg("100 CTX.TSETs of 100 KB (10 MB) kept under a 1 MB limit");
	assert_true(n >= LIMIT / VALUE - 2 && n <= LIMIT / VALUE);
	/* Refused again. */
	assert_false(tset(c, n, value));
	/* The connection and the edits made are intact. */
	for (int i = 0; i < n; i++) {
		redisReply *r = cmd(c, "CTX.TGET f%d", i);
		assert_int_equal(r->type, REDIS_REPLY_STRING);
		assert_int_equal(r->len, VALUE);
		freeReplyObject(r);
	}
	EXPECT_NIL(c, "CTX.TGET f%d", n);
	/* Replacing an edit by a smaller value is always room. */
	EXPECT_STATUS(c, "OK", "CTX.TSET f0 small");

	/* A sync takes them: the fields are the context's, and there is room
	 * for as many again. */
	redisReply *r = cmd(c, "CTX.SYNC");
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	EXPECT_INT(c, n, "HLEN tl");
	r = cmd(c, "HGET tl f%d", n - 1);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, VALUE);
	freeReplyObject(r);
	int again = 0;
	while (again < 100 && tset(c, 1000 + again, value))
		again++;
	assert_true(again >= LIMIT / VALUE - 2 && again <= LIMIT / VALUE);

	/* Deletes hold their fields: many of them fill the limit too. */
	r = cmd(c, "CTX.SYNC");
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	char field[1024];
	memset(field, 'd', sizeof(field));
	int dels = 0;
	for (; dels < 5000; dels++) {
		snprintf(field, 16, "%08d", dels);
		field[8] = 'd';
		redisReply *d = cmd(c, "CTX.TDEL %b", field, sizeof(field));
		bool ok = d->type == REDIS_REPLY_STATUS;
		if (!ok && (d->type != REDIS_REPLY_ERROR || strncmp(d->str, "CTXLIMIT ", 9) != 0))
			fail_msg("CTX.TDEL: type %d '%s'", d->type, d->str ? d->str : "");
		freeReplyObject(d);
		if (!ok)
			break;
	}
	if (dels == 5000)
		fail_msg("5000 CTX.TDELs of 1 KB fields kept under a 1 MB limit");
	assert_true(dels > 100);

	/* A larger limit makes room. */
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1gb");
	assert_true(tset(c, 5000, value));
	EXPECT_STATUS(c, "PONG", "PING");
	free(value);
	redisFree(c);
}

/* maxmemory-clients counts the edits too: a client whose tracker holds
 * more than its share while all clients' memory is over the limit is
 * closed, as one whose output or MULTI queue does. */
static void test_tracker_edits_count_in_maxmemory_clients(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET maxmemory-clients 1mb");
	EXPECT_STATUS(c, "OK", "CTX.CREATE tm");
	redisContext *t = hconn(srv);
	EXPECT_STATUS(t, "OK", "CTX.TRACK tm");
	char *value = malloc(VALUE);
	assert_non_null(value);
	memset(value, 'm', VALUE);
	int sent = 0;
	bool closed = false;
	for (; sent < 60 && !closed; sent++) { /* 6 MB against 1 MB */
		redisReply *r = redisCommand(t, "CTX.TSET f%d %b", sent, value, (size_t)VALUE);
		if (!r)
			closed = true;
		else
			freeReplyObject(r);
	}
	if (!closed) { /* closed as it next adds output, at the latest */
		redisReply *r = redisCommand(t, "PING");
		closed = r == NULL;
		if (r)
			freeReplyObject(r);
	}
	if (!closed)
		fail_msg(
		    "a tracker holding %d edits of 100 KB stayed open under maxmemory-clients 1mb",
		    sent);
	redisFree(t);
	EXPECT_STATUS(c, "OK", "CONFIG SET maxmemory-clients 1gb");
	EXPECT_STATUS(c, "PONG", "PING");
	free(value);
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tracker_edits_bounded),
	    cmocka_unit_test(test_tracker_edits_count_in_maxmemory_clients),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
