/*
 * test_cov_data.c - the error paths and options of ctxd's data commands:
 * every CTX.* command with bad ids, missing contexts, wrong argument counts
 * and bad numbers; CTX.TRACK options and the tracker commands without a
 * tracker; CTX.WATCH with PREFIX and FROM, restored/expired events and a
 * watch that falls behind (ctx.lost); the hash commands' checks (empty
 * fields, floats at the edges, HSCAN options and deep patterns, HRANDFIELD
 * ranges); SCAN/KEYS glob corners; EXPIRE flags and bad times; TTL and
 * PERSIST of impossible keys; MULTI with refused commands, WATCH details and
 * commits that fail; the active context "." everywhere.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serverutil.h"

/* ---- raw replies ----------------------------------------------------------------------- */

#include "suclient.h"

SU_GROUP_SERVER("covdata")

/* A string of n copies of c (static, up to 70000 bytes). */
static const char *rep(char c, size_t n)
{
	static char b[70001];
	assert_true(n < sizeof(b));
	memset(b, c, n);
	b[n] = '\0';
	return b;
}

/* ---- CTX.* contexts ------------------------------------------------------------------------- */

static void test_ctx_context_errors(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_ERR(c, "ERR wrong number of arguments for 'ctx.create' command", "CTX.CREATE e1 f");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.CREATE %s", "");
	EXPECT_ERR(c, "CTXINVALID", "CTX.CREATE e1 a 1 %s 2", ""); /* an empty field */
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.GET e1");                /* nothing was made */
	EXPECT_STATUS(c, "OK", "CTX.CREATE e1 a 1");
	EXPECT_ERR(c, "CTXEXISTS", "CTX.CREATE e1");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.DROP %s", "");
	EXPECT_INT(c, 0, "CTX.DROP nosuch");

	/* CTX.LIST: options and their checks */
	EXPECT_ERR(c, "CTXINVALID the prefix is longer than 256 bytes or holds a NUL byte",
	           "CTX.LIST PREFIX %s", rep('p', 300));
	EXPECT_ERR(c, "CTXINVALID the AFTER id is longer", "CTX.LIST AFTER %b", "a\0b", (size_t)3);
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.LIST COUNT x");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.LIST COUNT -1");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.LIST COUNT %s",
	           "123456789012345678901");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.LIST COUNT %s",
	           "18446744073709551616");
	EXPECT_ERR(c, "ERR COUNT must be at least 1", "CTX.LIST COUNT 0");
	EXPECT_ERR(c, "ERR syntax error", "CTX.LIST BOGUS");
	EXPECT_ERR(c, "ERR syntax error", "CTX.LIST PREFIX");
	redisReply *r = cmd(c, "CTX.LIST PREFIX e AFTER e0 COUNT 18446744073709551615");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_string_equal(r->element[0]->str, "");
	assert_int_equal(r->element[1]->elements, 1);
	assert_string_equal(r->element[1]->element[0]->str, "e1");
	freeReplyObject(r);

	/* CTX.GET, CTX.VERSION */
	EXPECT_ERR(c, "ERR syntax error", "CTX.GET e1 VERSION");
	EXPECT_ERR(c, "ERR syntax error", "CTX.GET e1 AT 1");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.GET %s", "");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.GET e1 VERSION x");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.GET e1 VERSION 99");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.GET nosuch VERSION 1");
	r = cmd(c, "CTX.GET e1 VERSION 1");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 14);
	assert_string_equal(r->element[1]->str, "e1");
	freeReplyObject(r);
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.VERSION %s", "");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.VERSION nosuch");

	/* CTX.SET / CTX.DEL argument shapes and guards */
	EXPECT_ERR(c, "ERR wrong number of arguments for 'ctx.set' command", "CTX.SET e1 a");
	EXPECT_ERR(c, "ERR wrong number of arguments for 'ctx.set' command",
	           "CTX.SET e1 IFVERSION 1 a");
	EXPECT_ERR(c, "ERR wrong number of arguments for 'ctx.set' command", "CTX.SET e1 a 1 b");
	EXPECT_ERR(c, "ERR wrong number of arguments for 'ctx.del' command",
	           "CTX.DEL e1 IFVERSION 1");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.SET %s a 1", "");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.SET e1 IFVERSION x a 1");
	EXPECT_ERR(c, "CTXINVALID", "CTX.SET e1 %s 1", "");
	EXPECT_ERR(c, "CTXINVALID", "CTX.DEL e1 %s", "");
	EXPECT_ERR(c, "CTXINVALID", "CTX.SET e1 %s 1", rep('k', 70000)); /* over max_key_size */
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.SET nosuch a 1");
	EXPECT_ERR(c, "CTXCONFLICT context is at version 0 (it does not exist)",
	           "CTX.SET nosuch IFVERSION 3 a 1");
	EXPECT_ERR(c, "CTXCONFLICT context is at version 1", "CTX.SET e1 IFVERSION 0 a 1");
	EXPECT_INT(c, 1, "CTX.SET e2 IFVERSION 0 a 1"); /* IFVERSION 0 creates */
	EXPECT_INT(c, 2, "CTX.DEL e2 IFVERSION 1 a");
	EXPECT_INT(c, 3, "CTX.DEL e2 nosuchfield");
	EXPECT_INT(c, 1, "CTX.DROP e2");
	redisFree(c);
}

static void test_ctx_points_restore_errors(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CTX.CREATE pr a 1");
	EXPECT_INT(c, 2, "CTX.SET pr a 2 b 2");
	EXPECT_ERR(c, "ERR syntax error", "CTX.POINT pr LABEL");
	EXPECT_ERR(c, "ERR syntax error", "CTX.POINT pr NAME x");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.POINT %s", "");
	EXPECT_ERR(c, "CTXINVALID the label is longer than 256 bytes", "CTX.POINT pr LABEL %s",
	           rep('l', 300));
	EXPECT_ERR(c, "CTXINVALID", "CTX.POINT pr LABEL %s", rep('l', 100)); /* > CTX_LABEL_MAX */
	EXPECT_ERR(c, "CTXINVALID", "CTX.POINT pr LABEL %b", "a\x01", (size_t)2);
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.POINT nosuch");
	EXPECT_INT(c, 2, "CTX.POINT pr LABEL two");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.POINTS %s", "");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.POINTS nosuch");

	EXPECT_ERR(c, "ERR syntax error: CTX.RESTORE", "CTX.RESTORE pr BOGUS");
	EXPECT_ERR(c, "ERR syntax error: CTX.RESTORE", "CTX.RESTORE pr LATEST x");
	EXPECT_ERR(c, "ERR syntax error: CTX.RESTORE", "CTX.RESTORE pr VERSION");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.RESTORE %s LATEST", "");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.RESTORE pr VERSION x");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.RESTORE pr AT -5");
	EXPECT_ERR(c, "CTXINVALID the label is longer", "CTX.RESTORE pr LABEL %b", "a\0",
	           (size_t)2);
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.RESTORE pr VERSION 99");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.RESTORE pr LABEL nosuch");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.RESTORE pr AT 1");
	/* AT a time after everything: the newest version, made again */
	EXPECT_INT(c, 3, "CTX.RESTORE pr AT 18446744073709551615");
	EXPECT_INT(c, 4, "CTX.RESTORE pr VERSION 1");
	EXPECT_STATUS(c, "1", "HGET pr a");

	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.HISTORY %s", "");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.HISTORY nosuch");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.DIFF %s 1 2", "");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.DIFF pr x 2");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.DIFF pr 1 y");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.DIFF pr 1 99");
	/* backwards: from the newer to the older version */
	redisReply *r = cmd(c, "CTX.DIFF pr 2 1");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 2);
	assert_string_equal(r->element[0]->element[0]->str, "changed");
	assert_string_equal(r->element[1]->element[0]->str, "removed");
	assert_int_equal(r->element[1]->element[3]->type, REDIS_REPLY_NIL);
	freeReplyObject(r);

	/* CTX.EXPIRE */
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.EXPIRE pr x");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.EXPIRE %s 100", "");
	EXPECT_INT(c, 0, "CTX.EXPIRE nosuch 100");
	EXPECT_INT(c, 1, "CTX.EXPIRE pr 0");
	EXPECT_INT(c, 1, "CTX.DROP pr");
	redisFree(c);
}

/* CTX.USE's checks; the active context in every command family. */
static void test_ctx_use_and_dot(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_NIL(c, "CTX.CURRENT");
	EXPECT_ERR(c, "ERR syntax error", "CTX.USE u1 MAKE");
	EXPECT_ERR(c, "CTXINVALID the id is longer than 256 bytes", "CTX.USE %s", rep('u', 300));
	EXPECT_ERR(c, "CTXINVALID", "CTX.USE %b", "u\x01", (size_t)2);
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.USE nosuch");
	/* no active context: "." is an error for reads, writes and keyspace commands */
	const char *dot_cmds[] = {
	    "HMGET . f",    "HGETALL .",   "HKEYS .",       "HSCAN . 0",          "HRANDFIELD .",
	    "HSETNX . f v", "HDEL . f",    "HINCRBY . f 1", "HINCRBYFLOAT . f 1", "TTL .",
	    "PTTL .",       "PERSIST .",   "EXPIRE . 10",   "EXPIRE . -1 XX",     "TYPE .",
	    "CTX.GET .",    "CTX.POINT .", "CTX.TRACK .",   "CTX.WATCH .",        "WATCH ."};
	for (size_t i = 0; i < sizeof(dot_cmds) / sizeof(dot_cmds[0]); i++)
		EXPECT_ERR(c, "CTXNOTFOUND no active context", dot_cmds[i]);
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET . f v");
	EXPECT_ERR(c, "CTXNOTFOUND no active context", "EXEC");
	/* with one */
	EXPECT_STATUS(c, "OK", "CTX.USE u1 CREATE");
	EXPECT_STATUS(c, "u1", "CTX.CURRENT");
	EXPECT_INT(c, 1, "HSET . f 5");
	EXPECT_INT(c, 7, "HINCRBY . f 2");
	EXPECT_STATUS(c, "hash", "TYPE .");
	EXPECT_INT(c, 1, "EXPIRE . 100 NX");
	EXPECT_INT(c, 1, "PERSIST .");
	EXPECT_INT(c, -1, "TTL .");
	EXPECT_STATUS(c, "OK", "CTX.USE u1"); /* exists: no CREATE needed */
	EXPECT_INT(c, 1, "DEL u1");
	redisFree(c);
}

/* ---- watches ------------------------------------------------------------------------------- */

static void next_event(redisContext *w, const char *kind, const char *id)
{
	redisReply *e;
	assert_int_equal(redisGetReply(w, (void **)&e), REDIS_OK);
	assert_int_equal(e->type, REDIS_REPLY_ARRAY);
	if (strcmp(e->element[1]->str, kind) != 0 || strcmp(e->element[3]->str, id) != 0)
		fail_msg("event %s %s, want %s %s", e->element[1]->str, e->element[3]->str, kind,
		         id);
	freeReplyObject(e);
}

static void test_ctx_watch(void **state)
{
	redisContext *c = hconn(srv), *w = hconn(srv);
	EXPECT_ERR(c, "ERR syntax error: CTX.WATCH", "CTX.WATCH a b");
	EXPECT_ERR(c, "ERR syntax error: CTX.WATCH", "CTX.WATCH a FROM");
	EXPECT_ERR(c, "ERR syntax error: CTX.WATCH", "CTX.WATCH PREFIX p FROM 1 2");
	EXPECT_ERR(c, "CTXINVALID the prefix is longer", "CTX.WATCH PREFIX %s", rep('p', 300));
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.WATCH %s", "");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.WATCH a FROM x");
	EXPECT_ERR(c, "CTXINVALID context id has control byte", "CTX.WATCH PREFIX %b", "a\x01",
	           (size_t)2);
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_ERR(c, "ERR Command not allowed inside a transaction", "CTX.WATCH a");
	EXPECT_STATUS(c, "OK", "DISCARD");
	/* restored, dropped and expired events, by prefix */
	EXPECT_STATUS(w, "OK", "CTX.WATCH PREFIX wx:");
	EXPECT_STATUS(c, "OK", "CTX.CREATE wx:a f 1");
	EXPECT_INT(c, 2, "CTX.SET wx:a f 2");
	EXPECT_INT(c, 3, "CTX.RESTORE wx:a VERSION 1");
	EXPECT_STATUS(c, "OK", "CTX.CREATE wx:b f 1");
	EXPECT_INT(c, 1, "CTX.EXPIRE wx:b 1"); /* gone once idle 1 ms, when the reaper looks */
	EXPECT_STATUS(c, "OK", "CTX.CREATE other");
	next_event(w, "created", "wx:a");
	next_event(w, "committed", "wx:a");
	next_event(w, "restored", "wx:a");
	next_event(w, "created", "wx:b");
	next_event(w, "expired", "wx:b");
	/* a second CTX.WATCH replaces the first */
	EXPECT_STATUS(w, "OK", "CTX.WATCH wx:a");
	EXPECT_INT(c, 1, "CTX.DROP other");
	EXPECT_INT(c, 1, "CTX.DROP wx:a");
	next_event(w, "dropped", "wx:a");
	EXPECT_STATUS(w, "OK", "CTX.UNWATCH");
	EXPECT_STATUS(w, "OK", "CTX.UNWATCH"); /* none: fine */
	redisFree(w);
	redisFree(c);
}

/* A watch from far back that cannot queue all its history at once says
 * ctx.lost with the revision to go on from, and nothing more. */
static void test_ctx_watch_lost(void **state)
{
	redisContext *c = hconn(srv);
	redisReply *r = cmd(c, "CTX.STATS");
	long long from = r->element[3]->integer + 1; /* revision */
	freeReplyObject(r);
	const int n = 6000;
	EXPECT_STATUS(c, "OK", "CTX.CREATE lostctx");
	for (int i = 0; i < n; i++)
		redisAppendCommand(c, "CTX.SET lostctx f %d", i);
	for (int i = 0; i < n; i++) {
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		freeReplyObject(r);
	}
	rawconn *w = raw_open(srv);
	raw_expect(w, "HELLO 3\r\n", "%7");
	char msg[128];
	snprintf(msg, sizeof(msg), "CTX.WATCH lostctx FROM %lld\r\n", from);
	raw_expect(w, msg, "+OK");
	long long events = 0;
	for (;;) {
		const char *e = raw_next(w);
		if (strncmp(e, ">4\r\n$8\r\nctx.lost\r\n:", 19) == 0) {
			long long resume = atoll(e + 19);
			assert_true(resume > from);
			assert_non_null(strstr(e, "FROM "));
			break;
		}
		assert_memory_equal(e, ">6\r\n$9\r\nctx.event\r\n", 19);
		events++;
		assert_true(events <= n + 1);
	}
	assert_true(events > 0);
	raw_close(w);
	EXPECT_INT(c, 1, "CTX.DROP lostctx");
	redisFree(c);
}

/* ---- trackers ------------------------------------------------------------------------------ */

static void test_ctx_tracker_options(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_ERR(c, "ERR no tracker on this connection", "CTX.TDEL f");
	EXPECT_ERR(c, "ERR no tracker on this connection", "CTX.TGET f");
	EXPECT_ERR(c, "ERR no tracker on this connection", "CTX.SYNC");
	EXPECT_ERR(c, "ERR no tracker on this connection", "CTX.RESOLVE f LOCAL");
	EXPECT_STATUS(c, "OK", "CTX.UNTRACK"); /* none: fine */
	EXPECT_STATUS(c, "OK", "CTX.CREATE tk a 1");
	EXPECT_ERR(c, "ERR STRATEGY is latest, oldest or manual", "CTX.TRACK tk STRATEGY newest");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CTX.TRACK tk INTERVAL x");
	EXPECT_ERR(c, "ERR INTERVAL is out of range", "CTX.TRACK tk INTERVAL 4294967296");
	EXPECT_ERR(c, "ERR syntax error", "CTX.TRACK tk BOGUS");
	EXPECT_ERR(c, "ERR syntax error", "CTX.TRACK tk STRATEGY");
	EXPECT_ERR(c, "CTXINVALID a context id", "CTX.TRACK %s", "");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.TRACK nosuch");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_ERR(c, "ERR Command not allowed inside a transaction", "CTX.TRACK tk");
	EXPECT_STATUS(c, "OK", "DISCARD");
	/* oldest: the earlier change wins a conflict (here: ours) */
	EXPECT_STATUS(c, "OK", "CTX.TRACK tk STRATEGY oldest");
	EXPECT_STATUS(c, "OK", "CTX.TSET a mine");
	redisContext *o = hconn(srv);
	EXPECT_INT(o, 2, "CTX.SET tk a theirs");
	EXPECT_INT(c, 3, "CTX.SYNC");
	EXPECT_STATUS(c, "mine", "HGET tk a");
	/* latest, with POINTS: every sync makes a recovery point */
	EXPECT_STATUS(c, "OK", "CTX.TRACK tk STRATEGY latest INTERVAL 0 POINTS");
	EXPECT_STATUS(c, "OK", "CTX.TSET b 2");
	EXPECT_INT(c, 4, "CTX.SYNC");
	redisReply *r = cmd(c, "CTX.POINTS tk");
	assert_int_equal(r->elements, 1);
	freeReplyObject(r);
	/* bad fields */
	EXPECT_ERR(c, "CTXINVALID", "CTX.TSET %s v", "");
	EXPECT_ERR(c, "CTXINVALID", "CTX.TDEL %s", "");
	EXPECT_NIL(c, "CTX.TGET %s", ""); /* no such key, as for any other */
	EXPECT_NIL(c, "CTX.TGET nosuch");
	/* resolve without a conflict */
	EXPECT_ERR(c, "CTX", "CTX.RESOLVE a CURRENT");
	/* the tracked context dropped under the tracker */
	EXPECT_STATUS(c, "OK", "CTX.TSET c 3");
	EXPECT_INT(o, 1, "CTX.DROP tk");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.SYNC");
	EXPECT_STATUS(c, "OK", "CTX.UNTRACK");
	redisFree(o);
	redisFree(c);
}

/* ---- hashes -------------------------------------------------------------------------------- */

static void test_hash_checks(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_ERR(c, "ERR empty field names are not supported", "HSETNX hk %s v", "");
	EXPECT_ERR(c, "CTXINVALID a context id", "HSETNX %s f v", "");
	EXPECT_ERR(c, "CTXINVALID a context id", "HDEL %s f", "");
	EXPECT_ERR(c, "ERR empty field names are not supported", "HINCRBY hk %s 1", "");
	EXPECT_ERR(c, "CTXINVALID a context id", "HINCRBY %s f 1", "");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "HINCRBY hk f 01");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "HINCRBY hk f %s",
	           "-9223372036854775809");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "HINCRBY hk f %s",
	           "9223372036854775808");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "HINCRBY hk f %s",
	           "99999999999999999999");
	EXPECT_INT(c, -9223372036854775807LL - 1, "HINCRBY hk min %s", "-9223372036854775808");
	EXPECT_ERR(c, "ERR increment or decrement would overflow", "HINCRBY hk min -1");
	EXPECT_INT(c, 0, "HINCRBY hk zero 0");
	/* floats at the edges */
	EXPECT_ERR(c, "ERR empty field names are not supported", "HINCRBYFLOAT hk %s 1", "");
	EXPECT_ERR(c, "CTXINVALID a context id", "HINCRBYFLOAT %s f 1", "");
	EXPECT_ERR(c, "ERR value is not a valid float", "HINCRBYFLOAT hk f %s", rep('1', 6000));
	EXPECT_ERR(c, "ERR value is not a valid float", "HINCRBYFLOAT hk f %s", " 1");
	EXPECT_ERR(c, "ERR value is NaN or Infinity", "HINCRBYFLOAT hk f inf");
	redisReply *r = cmd(c, "HINCRBYFLOAT hk huge 1e4900");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, 4901); /* all its digits, as Redis prints it */
	freeReplyObject(r);
	freeReplyObject(cmd(c, "HINCRBYFLOAT hk huge2 1.1e4932"));
	EXPECT_ERR(c, "ERR increment would produce NaN or Infinity",
	           "HINCRBYFLOAT hk huge2 1.1e4932");
	EXPECT_INT(c, 1, "HSET hk negzero -0");
	EXPECT_STATUS(c, "0", "HINCRBYFLOAT hk negzero -0");
	/* HRANDFIELD ranges */
	EXPECT_ERR(c, "ERR syntax error", "HRANDFIELD hk 1 WITHVALUES x");
	EXPECT_ERR(c, "ERR value is out of range", "HRANDFIELD hk 9223372036854775807");
	EXPECT_ERR(c, "ERR value is out of range", "HRANDFIELD hk -9223372036854775807");
	/* a command's write that the store refuses at commit: nothing changes */
	EXPECT_ERR(c, "CTXINVALID", "HSET hk %s v", rep('k', 70000));
	EXPECT_INT(c, 0, "HEXISTS hk %s", rep('k', 70000));
	EXPECT_INT(c, 1, "DEL hk");
	redisFree(c);
}

/* A field named twice in one command, or again later in one transaction:
 * the second look finds it among the batch's own changes (this crashed
 * ctxd: wb_get wrote through the NULL value pointer of an existence check). */
static void test_repeated_field_in_one_batch(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_INT(c, 1, "HSET rf f 1 f 2");
	EXPECT_STATUS(c, "2", "HGET rf f");
	EXPECT_INT(c, 1, "HSET rf g 1 g 2 f 3");
	EXPECT_STATUS(c, "OK", "HMSET rf g 3 g 4");
	EXPECT_STATUS(c, "4", "HGET rf g");
	EXPECT_INT(c, 2, "HDEL rf f f g");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET rf a 1 b 2");
	EXPECT_STATUS(c, "QUEUED", "HDEL rf a");
	EXPECT_STATUS(c, "QUEUED", "HSETNX rf b 3");
	EXPECT_STATUS(c, "QUEUED", "HEXISTS rf b");
	EXPECT_STATUS(c, "QUEUED", "HSETNX rf a 4");
	redisReply *r = cmd(c, "EXEC");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 5);
	long long want[] = {2, 1, 0, 1, 1};
	for (int i = 0; i < 5; i++)
		assert_int_equal(r->element[i]->integer, want[i]);
	freeReplyObject(r);
	r = cmd(c, "HGETALL rf");
	assert_int_equal(r->elements, 4);
	freeReplyObject(r);
	EXPECT_INT(c, 1, "DEL rf");
	redisFree(c);
}

/* HSCAN's options; a pattern deep enough to hit the matcher's recursion
 * bound; a context without fields is no hash. */
static void test_hscan_options(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_ERR(c, "ERR invalid cursor", "HSCAN hs x");
	/* an absent key answers an empty scan before the options are read, as
	 * Redis (round 12; test_r12_scan.c) */
	redisReply *r = cmd(c, "HSCAN hs 0 COUNT x");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	freeReplyObject(r);
	EXPECT_INT(c, 3, "HSET hs apple 1 avocado 2 banana 3");
	EXPECT_ERR(c, "ERR invalid cursor", "HSCAN hs x");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "HSCAN hs 0 COUNT x");
	EXPECT_ERR(c, "ERR syntax error", "HSCAN hs 0 COUNT 0");
	EXPECT_ERR(c, "ERR syntax error", "HSCAN hs 0 TYPE hash");
	EXPECT_ERR(c, "ERR syntax error", "HSCAN hs 0 MATCH");
	r = cmd(c, "HSCAN hs 0 MATCH a* COUNT 100 NOVALUES");
	assert_string_equal(r->element[0]->str, "0");
	assert_int_equal(r->element[1]->elements, 2);
	freeReplyObject(r);
	/* a field of 1100 'a's and a pattern of 1100 "*a": the matcher stops
	 * at its depth bound (no match) instead of recursing on */
	char *field = strdup(rep('a', 1100));
	char *pat = malloc(2201);
	for (int i = 0; i < 1100; i++)
		memcpy(pat + 2 * i, "*a", 2);
	pat[2200] = '\0';
	EXPECT_INT(c, 1, "HSET hs %s 4", field);
	r = cmd(c, "HSCAN hs 0 MATCH %s COUNT 100", pat);
	assert_int_equal(r->element[1]->elements, 0);
	freeReplyObject(r);
	r = cmd(c, "HSCAN hs 0 MATCH *a*a*a*b COUNT 100"); /* gives up early, no match */
	assert_int_equal(r->element[1]->elements, 0);
	freeReplyObject(r);
	free(field);
	free(pat);
	/* a cursor from an older version keeps reading that version */
	r = cmd(c, "HSCAN hs 0 COUNT 1");
	char cursor[32];
	snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
	freeReplyObject(r);
	EXPECT_INT(c, 1, "HSET hs cherry 5");
	r = cmd(c, "HSCAN hs %s COUNT 100", cursor);
	assert_string_equal(r->element[0]->str, "0");
	assert_int_equal(r->element[1]->elements, 2 * 3); /* 4 fields then, 1 read */
	freeReplyObject(r);
	/* empty context */
	EXPECT_STATUS(c, "OK", "CTX.CREATE hsempty");
	r = cmd(c, "HSCAN hsempty 0");
	assert_string_equal(r->element[0]->str, "0");
	assert_int_equal(r->element[1]->elements, 0);
	freeReplyObject(r);
	EXPECT_NIL(c, "HRANDFIELD hsempty");
	EXPECT_INT(c, 0, "DEL hsempty");
	EXPECT_INT(c, 1, "DEL hs");
	redisFree(c);
}

/* ---- keyspace ------------------------------------------------------------------------------ */

static redisReply *keys(redisContext *c, const char *pattern)
{
	redisReply *r = cmd(c, "KEYS %s", pattern);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	return r;
}

static void expect_keys(redisContext *c, const char *pattern, size_t want)
{
	redisReply *r = keys(c, pattern);
	if (r->elements != want)
		fail_msg("KEYS %s: %zu keys, want %zu", pattern, r->elements, want);
	freeReplyObject(r);
}

static void test_scan_keys_globs(void **state)
{
	redisContext *c = hconn(srv);
	const char *ids[] = {"g:abc", "g:abd", "g:a]c", "g:xyz", "g:a*c", "g:A"};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		EXPECT_INT(c, 1, "HSET %s f v", ids[i]);
	expect_keys(c, "g:*", 6);
	expect_keys(c, "g:**c", 3);     /* abc a]c a*c */
	expect_keys(c, "g:a[b-c]?", 2); /* abc abd */
	expect_keys(c, "g:a[c-b]c", 1); /* a reversed range: abc */
	expect_keys(c, "g:a[^b]c", 2);  /* a]c a*c */
	expect_keys(c, "g:a[\\]]c", 1); /* a]c */
	expect_keys(c, "g:a\\*c", 1);   /* a*c */
	expect_keys(c, "g:a[bd", 0);    /* unterminated: the last byte closes it */
	expect_keys(c, "g:ab[cd", 2);   /* abc abd: as in Redis */
	expect_keys(c, "g:a", 0);       /* case matters */
	expect_keys(c, "g:*b*b*b*q", 0);
	/* SCAN's options */
	EXPECT_ERR(c, "ERR invalid cursor", "SCAN x");
	EXPECT_ERR(c, "ERR invalid cursor: ctxd keeps SCAN cursors in memory", "SCAN 99999999");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "SCAN 0 COUNT x");
	EXPECT_ERR(c, "ERR syntax error", "SCAN 0 NOVALUES");
	redisReply *r = cmd(c, "SCAN 0 TYPE string");
	assert_string_equal(r->element[0]->str, "0");
	assert_int_equal(r->element[1]->elements, 0);
	freeReplyObject(r);
	size_t seen = 0;
	char cursor[32] = "0";
	do {
		r = cmd(c, "SCAN %s MATCH g:a* COUNT 2 TYPE hash", cursor);
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		seen += r->element[1]->elements;
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	assert_int_equal(seen, 4); /* not g:A */
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		EXPECT_INT(c, 1, "DEL %s", ids[i]);
	/* TYPE and EXISTS of impossible keys */
	EXPECT_STATUS(c, "none", "TYPE %s", "");
	EXPECT_INT(c, 0, "TOUCH %s nosuch", "");
	redisFree(c);
}

static void test_expire_flags(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_INT(c, 1, "HSET ex f v");
	EXPECT_ERR(c, "ERR Unsupported option BOGUS", "EXPIRE ex 10 BOGUS");
	EXPECT_ERR(c, "ERR NX and XX, GT or LT options at the same time are not compatible",
	           "EXPIRE ex 10 NX XX");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "EXPIRE ex ten");
	EXPECT_ERR(c, "ERR invalid expire time in 'expire' command", "EXPIRE ex %s",
	           "9223372036854775807");
	/* past the store's bound: Redis's error (round 10 review), not CTXINVALID */
	EXPECT_ERR(c, "ERR invalid expire time in 'pexpire' command",
	           "PEXPIRE ex 9223372036854775807");
	/* NX: only without a ttl; XX: only with one */
	EXPECT_INT(c, 0, "EXPIRE ex 100 XX");
	EXPECT_INT(c, -1, "TTL ex");
	EXPECT_INT(c, 1, "EXPIRE ex 100 NX");
	EXPECT_INT(c, 0, "EXPIRE ex 200 NX");
	EXPECT_INT(c, 1, "EXPIRE ex 200 XX");
	/* GT: only a longer ttl; LT: only a shorter one */
	EXPECT_INT(c, 0, "EXPIRE ex 100 GT");
	EXPECT_INT(c, 1, "EXPIRE ex 300 GT");
	EXPECT_INT(c, 0, "EXPIRE ex 400 LT");
	EXPECT_INT(c, 1, "EXPIRE ex 50 LT");
	redisReply *r = cmd(c, "PTTL ex");
	assert_true(r->integer > 40000 && r->integer <= 50000);
	freeReplyObject(r);
	EXPECT_INT(c, 1, "PERSIST ex");
	EXPECT_INT(c, 0, "PERSIST ex");
	EXPECT_INT(c, 0, "EXPIRE ex 100 GT"); /* no ttl counts as infinite */
	EXPECT_INT(c, 1, "EXPIRE ex 100 LT");
	/* a time <= 0 deletes, unless the flags say no */
	EXPECT_INT(c, 0, "EXPIRE nosuch -1 XX");
	EXPECT_INT(c, 0, "EXPIRE nosuch -1 GT");
	EXPECT_INT(c, 0, "EXPIRE nosuch -1");
	EXPECT_INT(c, 1, "EXPIRE ex 0 XX");
	EXPECT_INT(c, 0, "EXISTS ex");
	/* keys that cannot exist */
	EXPECT_INT(c, 0, "EXPIRE %s 10", "");
	EXPECT_INT(c, -2, "TTL %s", "");
	EXPECT_INT(c, -2, "PTTL %s", rep('t', 300));
	EXPECT_INT(c, 0, "PERSIST %s", "");
	EXPECT_INT(c, 0, "PERSIST nosuch");
	EXPECT_INT(c, -2, "TTL nosuch");
	EXPECT_INT(c, 0, "EXPIRE nosuch 10");
	redisFree(c);
}

/* ---- transactions ---------------------------------------------------------------------------- */

static void test_multi_details(void **state)
{
	redisContext *c = hconn(srv);
	/* commands refused inside MULTI abort it */
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_ERR(c, "ERR Command not allowed inside a transaction", "DBSIZE");
	EXPECT_ERR(c, "ERR Command not allowed inside a transaction", "CTX.SYNC");
	EXPECT_ERR(c, "ERR MULTI calls can not be nested", "MULTI");
	EXPECT_ERR(c, "ERR WATCH inside MULTI is not allowed", "WATCH a");
	EXPECT_ERR(c, "EXECABORT Transaction discarded because of previous errors.", "EXEC");
	EXPECT_ERR(c, "ERR EXEC without MULTI", "EXEC");
	EXPECT_ERR(c, "ERR DISCARD without MULTI", "DISCARD");
	/* WATCH: bad ids, repeats, UNWATCH */
	EXPECT_ERR(c, "CTXINVALID a context id", "WATCH %s", "");
	EXPECT_STATUS(c, "OK", "WATCH mw mw mw");
	EXPECT_STATUS(c, "OK", "UNWATCH");
	redisContext *o = hconn(srv);
	EXPECT_INT(o, 1, "HSET mw base 1");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "PING");        /* no key */
	EXPECT_STATUS(c, "QUEUED", "HSET mw a 1"); /* not watched any more: applies */
	EXPECT_STATUS(c, "QUEUED", "HSET mw b 2");
	EXPECT_STATUS(c, "QUEUED", "HDEL mw a");
	EXPECT_STATUS(c, "QUEUED", "HSET mw base 2");
	EXPECT_STATUS(c, "QUEUED", "HGETALL mw"); /* sees base + overlay */
	redisReply *r = cmd(c, "EXEC");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 6);
	assert_string_equal(r->element[0]->str, "PONG");
	redisReply *all = r->element[5];
	assert_int_equal(all->elements, 4); /* base (changed to 2) and b (2), each once */
	assert_string_equal(all->element[1]->str, "2");
	assert_string_equal(all->element[3]->str, "2");
	assert_true(strcmp(all->element[0]->str, all->element[2]->str) != 0);
	freeReplyObject(r);
	/* a new context whose transaction deletes a field it set */
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET mnew a 1 b 2");
	EXPECT_STATUS(c, "QUEUED", "HDEL mnew a");
	r = cmd(c, "EXEC");
	assert_int_equal(r->elements, 2);
	freeReplyObject(r);
	r = cmd(c, "HGETALL mnew");
	assert_int_equal(r->elements, 2);
	assert_string_equal(r->element[0]->str, "b");
	freeReplyObject(r);
	/* a commit the store refuses: the error alone, nothing applied */
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET mnew c 3");
	EXPECT_STATUS(c, "QUEUED", "HSET mnew %s v", rep('k', 70000));
	EXPECT_ERR(c, "CTXINVALID", "EXEC");
	EXPECT_INT(c, 0, "HEXISTS mnew c");
	/* RESP3: a WATCHed context that moved makes EXEC answer null */
	rawconn *w = raw_open(srv);
	raw_expect(w, "HELLO 3\r\n", "%7");
	raw_expect(w, "WATCH mnew\r\n", "+OK");
	EXPECT_INT(o, 1, "HSET mnew moved 1");
	raw_expect(w, "MULTI\r\n", "+OK");
	raw_expect(w, "HSET mnew x 1\r\n", "+QUEUED");
	raw_expect(w, "EXEC\r\n", "_\r\n");
	raw_close(w);
	EXPECT_INT(c, 2, "DEL mw mnew");
	redisFree(o);
	redisFree(c);
}

/* Clients that leave while their blocking command runs, or that ask to
 * quit behind one: the server finishes the work and stays well. */
static void test_leave_during_jobs(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CTX.CREATE jobs a 1");
	for (int i = 0; i < 30; i++) {
		int fd = su_connect(srv);
		const char *req = i % 3 == 0   ? "CTX.POINT jobs\r\n"
		                  : i % 3 == 1 ? "CTX.VERIFY\r\n"
		                               : "DBSIZE\r\n";
		assert_true(su_send(fd, req, strlen(req)));
		if (i % 2) {
			struct linger l = {1, 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		} else {
			shutdown(fd, SHUT_WR);
		}
		close(fd);
	}
	/* QUIT queued behind a blocking command: both answered, then closed */
	rawconn *r = raw_open(srv);
	assert_true(su_send(r->fd, "CTX.POINT jobs\r\nQUIT\r\n", 22));
	raw_expect(r, NULL, ":1\r\n");
	raw_expect(r, NULL, "+OK\r\n");
	assert_true(su_wait_closed(r->fd, 20000));
	raw_close(r);
	/* the same with the client's half close */
	r = raw_open(srv);
	assert_true(su_send(r->fd, "DBSIZE\r\nPING\r\n", 14));
	shutdown(r->fd, SHUT_WR);
	raw_expect(r, NULL, ":");
	raw_expect(r, NULL, "+PONG\r\n");
	assert_true(su_wait_closed(r->fd, 20000));
	raw_close(r);
	redisReply *v = cmd(c, "CTX.VERIFY");
	assert_string_equal(v->element[1]->str, "ok");
	freeReplyObject(v);
	EXPECT_INT(c, 1, "CTX.DROP jobs");
	redisFree(c);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ctx_context_errors),
	    cmocka_unit_test(test_ctx_points_restore_errors),
	    cmocka_unit_test(test_ctx_use_and_dot),
	    cmocka_unit_test(test_ctx_watch),
	    cmocka_unit_test(test_ctx_watch_lost),
	    cmocka_unit_test(test_ctx_tracker_options),
	    cmocka_unit_test(test_hash_checks),
	    cmocka_unit_test(test_repeated_field_in_one_batch),
	    cmocka_unit_test(test_hscan_options),
	    cmocka_unit_test(test_scan_keys_globs),
	    cmocka_unit_test(test_expire_flags),
	    cmocka_unit_test(test_multi_details),
	    cmocka_unit_test(test_leave_during_jobs),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
