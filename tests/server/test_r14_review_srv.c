/*
 * test_r14_review_srv.c - round 14 review of ctxd: HSCAN cursors across
 * writes (every field present throughout the scan is returned at least once,
 * as Redis promises), cursors ctxd never gave, and hostile requests (bulk
 * and multibulk lengths past every limit or negative, nested arrays, binary
 * and over-long keys, wrong arities, MULTI/EXEC misuse): each answered with
 * an error, the server stays up and the data is intact.
 *
 * Before round 14 a scan whose version had left history (more than
 * history_depth, 64, commits to the hash between two pages) went on by
 * position over the newest version: deleting fields that came before the
 * cursor shifted the others back, and 21 of 200 fields present throughout
 * were never returned (test_hscan_after_history_*).
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "serverutil.h"
#include "suclient.h"

static su_server *srv;
static redisContext *left_open; /* a connection with an unfinished scan */

static int setup(void **state)
{
	(void)state;
	srv = su_start("test_r14_review_srv", NULL);
	return 0;
}

/* Stop the server (SIGTERM: it must exit 0, with a scan still unfinished on
 * left_open), then free that connection. */
static int teardown(void **state)
{
	(void)state;
	assert_int_equal(su_stop(srv), 0);
	su_free(srv);
	redisFree(left_open);
	return 0;
}

#define STABLE    200 /* fields present throughout a scan: s0.. */
#define TRANSIENT 200 /* fields deleted during it: t0.. */

static redisContext *conn(void)
{
	return hconn(srv);
}

/* Send n pipelined commands made by fmt with the numbers from..from+n-1 and
 * check that each is answered with an integer. */
static void pipelined(redisContext *c, const char *fmt, int from, int n)
{
	for (int i = from; i < from + n; i++)
		assert_int_equal(redisAppendCommand(c, fmt, i), REDIS_OK);
	for (int i = 0; i < n; i++) {
		redisReply *r;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		if (r->type != REDIS_REPLY_INTEGER)
			fail_msg("'%s': type %d '%s'", fmt, r->type, r->str ? r->str : "");
		freeReplyObject(r);
	}
}

/* The same, one round trip each: a commit each (ctxd groups the pipelined
 * writes of one key into one commit). */
static void one_by_one(redisContext *c, const char *fmt, int from, int n)
{
	for (int i = from; i < from + n; i++) {
		redisReply *r = cmd(c, fmt, i);
		if (r->type != REDIS_REPLY_INTEGER)
			fail_msg("'%s': type %d '%s'", fmt, r->type, r->str ? r->str : "");
		freeReplyObject(r);
	}
}

/* A hash `key` of STABLE stable and TRANSIENT transient fields. */
static void fill(redisContext *c, const char *key)
{
	char fmt[64];
	freeReplyObject(cmd(c, "DEL %s", key));
	snprintf(fmt, sizeof(fmt), "HSET %s s%%d v", key);
	pipelined(c, fmt, 0, STABLE);
	snprintf(fmt, sizeof(fmt), "HSET %s t%%d v", key);
	pipelined(c, fmt, 0, TRANSIENT);
}

/* One HSCAN page of key at *cursor (updated) on c; marks the stable fields
 * returned in seen. */
static void page(redisContext *c, const char *key, char cursor[32], long count, bool seen[])
{
	redisReply *r = cmd(c, "HSCAN %s %s COUNT %ld NOVALUES", key, cursor, count);
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		fail_msg("HSCAN %s %s: type %d '%s'", key, cursor, r->type, r->str ? r->str : "");
	snprintf(cursor, 32, "%s", r->element[0]->str);
	redisReply *f = r->element[1];
	for (size_t i = 0; i < f->elements; i++) {
		int k;
		if (sscanf(f->element[i]->str, "s%d", &k) == 1 && k >= 0 && k < STABLE)
			seen[k] = true;
	}
	freeReplyObject(r);
}

static void expect_all_seen(const bool seen[], const char *what)
{
	int missing = 0;
	for (int i = 0; i < STABLE; i++)
		missing += !seen[i];
	if (missing)
		fail_msg("%s: %d of %d fields present throughout the scan not returned", what,
		         missing, STABLE);
}

/* A scan continued after its version left history: the first page, then
 * every transient field deleted (a commit each, over history_depth), then
 * the rest, on one connection (scan_conns 1) or alternating two. */
static void scan_after_history(int scan_conns)
{
	redisContext *w = conn(), *s[2] = {conn(), conn()};
	fill(w, "h14");
	bool seen[STABLE] = {false};
	char cursor[32] = "0";
	page(s[0], "h14", cursor, 50, seen);
	assert_string_not_equal(cursor, "0");
	one_by_one(w, "HDEL h14 t%d", 0, TRANSIENT);
	int calls = 0;
	while (strcmp(cursor, "0") != 0) {
		assert_true(++calls < 1000);
		page(s[calls % scan_conns], "h14", cursor, 50, seen);
	}
	expect_all_seen(seen, scan_conns == 1 ? "one connection" : "two connections");
	redisFree(w);
	redisFree(s[0]);
	redisFree(s[1]);
}

static void test_hscan_after_history_one_connection(void **state)
{
	(void)state;
	scan_after_history(1);
}

static void test_hscan_after_history_two_connections(void **state)
{
	(void)state;
	scan_after_history(2);
}

/* Writes between every two pages (new fields put, transient ones deleted,
 * more commits than history keeps): every stable field is returned, and the
 * scan ends. */
static void test_hscan_interleaved_writes(void **state)
{
	(void)state;
	redisContext *w = conn(), *s = conn();
	fill(w, "h14w");
	bool seen[STABLE] = {false};
	char cursor[32] = "0";
	int calls = 0, t = 0, nw = 0;
	do {
		assert_true(++calls < 1000);
		page(s, "h14w", cursor, 17, seen);
		one_by_one(w, "HSET h14w n%d v", nw, 40);
		nw += 40;
		if (t < TRANSIENT) {
			one_by_one(w, "HDEL h14w t%d", t, 40);
			t += 40;
		}
	} while (strcmp(cursor, "0") != 0);
	expect_all_seen(seen, "interleaved writes");
	redisFree(w);
	redisFree(s);
}

/* A page asked again gives the same fields; a page skipped ahead and back,
 * or a cursor of another key, are answered (no error, no crash). */
static void test_hscan_repeat_and_foreign_cursors(void **state)
{
	(void)state;
	redisContext *c = conn();
	fill(c, "h14r");
	redisReply *a = cmd(c, "HSCAN h14r 0 COUNT 30");
	assert_int_equal(a->type, REDIS_REPLY_ARRAY);
	char cur[32];
	snprintf(cur, sizeof(cur), "%s", a->element[0]->str);
	redisReply *p1 = cmd(c, "HSCAN h14r %s COUNT 30", cur);
	redisReply *p2 = cmd(c, "HSCAN h14r %s COUNT 30", cur);
	assert_int_equal(p1->element[1]->elements, 60);
	assert_int_equal(p2->element[1]->elements, 60);
	for (size_t i = 0; i < 60; i++)
		assert_string_equal(p1->element[1]->element[i]->str,
		                    p2->element[1]->element[i]->str);
	/* the page after the first, asked before the first again */
	redisReply *far = cmd(c, "HSCAN h14r %s COUNT 30", p1->element[0]->str);
	redisReply *p3 = cmd(c, "HSCAN h14r %s COUNT 30", cur);
	assert_string_equal(p3->element[1]->element[0]->str, p1->element[1]->element[0]->str);
	assert_int_equal(far->element[1]->elements, 60);
	freeReplyObject(far);
	freeReplyObject(p3);
	/* h14r's cursor on another hash, and cursors ctxd never gives */
	EXPECT_INT(c, 2, "HSET h14o a 1 b 2");
	const char *curs[] = {
	    cur,          "-1",         "18446744073709551615", "-9223372036854775808",
	    "4294967295", "4294967296", "137438953472"};
	for (size_t i = 0; i < sizeof(curs) / sizeof(curs[0]); i++) {
		redisReply *r = cmd(c, "HSCAN h14o %s", curs[i]);
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
			fail_msg("HSCAN h14o %s: type %d '%s'", curs[i], r->type,
			         r->str ? r->str : "");
		freeReplyObject(r);
	}
	EXPECT_INT(c, 2, "HLEN h14o");
	EXPECT_INT(c, STABLE + TRANSIENT, "HLEN h14r");
	freeReplyObject(a);
	freeReplyObject(p1);
	freeReplyObject(p2);
	/* an unfinished scan left behind: RESET, then the connection closes
	 * (the server's stop, SIGTERM in teardown, must still exit 0) */
	freeReplyObject(cmd(c, "HSCAN h14r 0 COUNT 5"));
	EXPECT_STATUS(c, "RESET", "RESET");
	freeReplyObject(cmd(c, "HSCAN h14r 0 COUNT 5"));
	redisFree(c);
	left_open = conn();
	freeReplyObject(cmd(left_open, "HSCAN h14r 0 COUNT 5")); /* kept until the server stops */
}

/* Raw requests a protocol error answers (and the connection closes). */
static void expect_protocol_error(const char *req, size_t n, const char *want)
{
	int fd = su_connect(srv);
	assert_true(fd >= 0);
	assert_true(su_send(fd, req, n));
	char buf[512];
	size_t got = su_recv(fd, buf, sizeof(buf) - 1, 20000);
	buf[got] = '\0';
	if (strncmp(buf, want, strlen(want)) != 0)
		fail_msg("got '%s', want '%s'", buf, want);
	assert_true(su_wait_closed(fd, 20000));
	close(fd);
}

static void test_hostile_requests(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 2, "HSET keep f1 v1 f2 v2");
	expect_protocol_error("*2\r\n$4\r\nECHO\r\n$99999999999\r\n", 29,
	                      "-ERR Protocol error: invalid bulk length");
	expect_protocol_error("*2\r\n$4\r\nECHO\r\n$-5\r\n", 20,
	                      "-ERR Protocol error: invalid bulk length");
	expect_protocol_error("*99999999999999\r\n", 17,
	                      "-ERR Protocol error: invalid multibulk length");
	static char nested[6 + 4 * 5000 + 10];
	size_t n = 0;
	n += (size_t)sprintf(nested + n, "*1\r\n");
	for (int i = 0; i < 5000; i++)
		n += (size_t)sprintf(nested + n, "*1\r\n");
	n += (size_t)sprintf(nested + n, "$4\r\nPING\r\n");
	expect_protocol_error(nested, n, "-ERR Protocol error: expected '$', got '*'");
	expect_protocol_error("*1\r\n$4\r\nPINGxx\r\n", 16, "-ERR Protocol error");
	/* negative and zero multibulk counts are skipped, as in Redis */
	rawconn *r = raw_open(srv);
	raw_expect(r, "*-5\r\n*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", "+PONG");
	/* binary keys: control bytes refused, binary fields and values kept */
	static const char bin[] = "*4\r\n$4\r\nHSET\r\n$3\r\nk\0\n\r\n$1\r\nf\r\n$1\r\nv\r\n";
	assert_true(su_send(r->fd, bin, sizeof(bin) - 1));
	raw_expect(r, NULL, "-CTXINVALID");
	static const char binf[] =
	    "*4\r\n$4\r\nHSET\r\n$4\r\nbin4\r\n$3\r\n\0\r\n\r\n$2\r\n\xff\0\r\n";
	assert_true(su_send(r->fd, binf, sizeof(binf) - 1));
	raw_expect(r, NULL, ":1");
	raw_close(r);
	redisReply *v = cmd(c, "HGET bin4 %b", "\0\r\n", (size_t)3);
	assert_int_equal(v->type, REDIS_REPLY_STRING);
	assert_int_equal(v->len, 2);
	assert_memory_equal(v->str, "\xff\0", 2);
	freeReplyObject(v);
	/* over-long and empty keys */
	char longkey[300];
	memset(longkey, 'k', sizeof(longkey));
	redisReply *e = cmd(c, "HSET %b f v", longkey, sizeof(longkey));
	assert_int_equal(e->type, REDIS_REPLY_ERROR);
	freeReplyObject(e);
	e = cmd(c, "HSET %b f v", "", (size_t)0);
	assert_int_equal(e->type, REDIS_REPLY_ERROR);
	freeReplyObject(e);
	/* wrong arities */
	const char *arity[] = {"HSET keep f", "HGET keep", "HDEL keep",     "HSCAN keep",
	                       "HMGET keep",  "HLEN",      "HINCRBY keep f"};
	for (size_t i = 0; i < sizeof(arity) / sizeof(arity[0]); i++)
		EXPECT_ERR(c, "ERR wrong number of arguments", arity[i]);
	/* MULTI/EXEC misuse */
	EXPECT_ERR_EXACT(c, "ERR EXEC without MULTI", "EXEC");
	EXPECT_ERR_EXACT(c, "ERR DISCARD without MULTI", "DISCARD");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_ERR_EXACT(c, "ERR MULTI calls can not be nested", "MULTI");
	EXPECT_ERR_EXACT(c, "ERR WATCH inside MULTI is not allowed", "WATCH keep");
	EXPECT_ERR(c, "ERR wrong number of arguments", "HSET keep f");
	EXPECT_STATUS(c, "QUEUED", "HSET keep f1 changed");
	EXPECT_ERR(c, "EXECABORT", "EXEC");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET keep f1 changed");
	EXPECT_STATUS(c, "QUEUED", "HSET other f1 changed");
	EXPECT_ERR(c, "ERR EXEC refused", "EXEC");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET keep f1 changed");
	EXPECT_STATUS(c, "RESET", "RESET");
	EXPECT_ERR_EXACT(c, "ERR EXEC without MULTI", "EXEC");
	/* the data is intact and the server up */
	redisFree(c);
	c = conn();
	redisReply *all = cmd(c, "HGETALL keep");
	assert_int_equal(all->type, REDIS_REPLY_ARRAY);
	assert_int_equal(all->elements, 4);
	freeReplyObject(all);
	redisReply *f1 = cmd(c, "HGET keep f1");
	assert_string_equal(f1->str, "v1");
	freeReplyObject(f1);
	EXPECT_INT(c, 0, "EXISTS other");
	EXPECT_STATUS(c, "PONG", "PING");
	assert_true(su_alive(srv));
	redisFree(c);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hscan_after_history_one_connection),
	    cmocka_unit_test(test_hscan_after_history_two_connections),
	    cmocka_unit_test(test_hscan_interleaved_writes),
	    cmocka_unit_test(test_hscan_repeat_and_foreign_cursors),
	    cmocka_unit_test(test_hostile_requests),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
