/*
 * test_commands.c - ctxd's data commands over the wire: hashes, keyspace,
 * CTX.*, in RESP2 (hiredis) and RESP3 (raw bytes: Debian's hiredis 0.14
 * does not speak RESP3), with Redis's exact errors, binary-safe fields, big
 * hashes, scans, and concurrent increments and transactions.
 *
 * CTXD_TEST_REDIS=1 runs the Redis-compatible tests against a real
 * redis-server instead (the CTX.* and ctx-only tests are skipped): the reply
 * shapes and error texts expected here are Redis's own.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "serverutil.h"
#include "suclient.h"
#include "sutarget.h"

/* ---- raw RESP (for RESP3 shapes) ------------------------------------------------------- */

static const char *raw_cmd(rawconn *r, ...)
{
	char msg[8192];
	size_t n = 0, argc = 0;
	const char *argv[64];
	va_list ap;
	va_start(ap, r);
	for (const char *s; (s = va_arg(ap, const char *));)
		argv[argc++] = s;
	va_end(ap);
	n += (size_t)snprintf(msg + n, sizeof(msg) - n, "*%zu\r\n", argc);
	for (size_t i = 0; i < argc; i++)
		n += (size_t)snprintf(msg + n, sizeof(msg) - n, "$%zu\r\n%s\r\n", strlen(argv[i]),
		                      argv[i]);
	assert_int_equal(write(r->fd, msg, n), (ssize_t)n);
	return raw_next(r);
}

static rawconn *raw_resp3(void)
{
	rawconn *r = raw_open(&target);
	const char *hello = raw_cmd(r, "HELLO", "3", NULL);
	assert_true(hello[0] == '%');
	return r;
}

/* ---- hashes --------------------------------------------------------------------------------- */

static void test_hash_basic(void **state)
{
	redisContext *c = conn();
	EXPECT_INT(c, 2, "HSET h f1 v1 f2 v2");
	EXPECT_INT(c, 1, "HSET h f2 v2b f3 v3");
	EXPECT_STATUS(c, "v2b", "HGET h f2");
	EXPECT_NIL(c, "HGET h nope");
	EXPECT_NIL(c, "HGET nokey f");
	EXPECT_INT(c, 3, "HLEN h");
	EXPECT_INT(c, 0, "HLEN nokey");
	EXPECT_INT(c, 3, "HSTRLEN h f2");
	EXPECT_INT(c, 0, "HSTRLEN h nope");
	EXPECT_INT(c, 1, "HEXISTS h f1");
	EXPECT_INT(c, 0, "HEXISTS h nope");
	EXPECT_INT(c, 0, "HEXISTS nokey f1");
	EXPECT_INT(c, 0, "HSETNX h f1 other");
	EXPECT_INT(c, 1, "HSETNX h f4 v4");
	EXPECT_STATUS(c, "v1", "HGET h f1");
	EXPECT_STATUS(c, "OK", "HMSET h f5 v5 f6 v6");

	redisReply *r = cmd(c, "HMGET h f1 nope f5");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 3);
	assert_string_equal(r->element[0]->str, "v1");
	assert_int_equal(r->element[1]->type, REDIS_REPLY_NIL);
	assert_string_equal(r->element[2]->str, "v5");
	freeReplyObject(r);
	r = cmd(c, "HMGET nokey a b");
	assert_int_equal(r->elements, 2);
	assert_int_equal(r->element[0]->type, REDIS_REPLY_NIL);
	freeReplyObject(r);

	r = cmd(c, "HGETALL h");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 12);
	int seen = 0;
	for (size_t i = 0; i < r->elements; i += 2) {
		const char *f = r->element[i]->str, *v = r->element[i + 1]->str;
		assert_int_equal(f[0], 'f');
		assert_int_equal(v[0], 'v');
		assert_int_equal(f[1], v[1]);
		seen |= 1 << (f[1] - '0');
	}
	assert_int_equal(seen, 0x7e);
	freeReplyObject(r);
	r = cmd(c, "HKEYS h");
	assert_int_equal(r->elements, 6);
	freeReplyObject(r);
	r = cmd(c, "HVALS h");
	assert_int_equal(r->elements, 6);
	freeReplyObject(r);
	r = cmd(c, "HGETALL nokey");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 0);
	freeReplyObject(r);

	EXPECT_INT(c, 2, "HDEL h f1 f2 nope");
	EXPECT_INT(c, 0, "HDEL h f1");
	EXPECT_INT(c, 0, "HDEL nokey f1");
	EXPECT_INT(c, 4, "HLEN h");

	/* errors: arity, odd pairs */
	EXPECT_ERR(c, "ERR wrong number of arguments for 'hset' command", "HSET h f");
	EXPECT_ERR(c, "ERR wrong number of arguments for 'hset' command", "HSET h f v g");
	EXPECT_ERR(c, "ERR wrong number of arguments for 'hget' command", "HGET h");
	EXPECT_ERR(c, "ERR wrong number of arguments for 'hmset' command", "HMSET h a");
	redisFree(c);
}

/* The last field of a hash removed: the key is gone for Redis commands. */
/* A field written twice in one command, or written earlier in the same
 * MULTI and then read by HDEL/HEXISTS/HSETNX: the write batch looked it up
 * with NULL value pointers and crashed ctxd (found by fuzz_dispatch). */
static void test_field_repeated_in_one_batch(void **state)
{
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET rep f 1 f 2");
	EXPECT_STATUS(c, "2", "HGET rep f");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET rep g 1");
	EXPECT_STATUS(c, "QUEUED", "HSETNX rep g 2");
	EXPECT_STATUS(c, "QUEUED", "HEXISTS rep g");
	EXPECT_STATUS(c, "QUEUED", "HDEL rep g");
	redisReply *r = cmd(c, "EXEC");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 4);
	assert_int_equal(r->element[0]->integer, 1);
	assert_int_equal(r->element[1]->integer, 0);
	assert_int_equal(r->element[2]->integer, 1);
	assert_int_equal(r->element[3]->integer, 1);
	freeReplyObject(r);
	EXPECT_INT(c, 1, "HLEN rep");
	redisFree(c);
}

/* HSET's count of new fields, outside MULTI, is taken after the commit
 * (against the version the commit applied to), and its puts do not look the
 * fields up; HMSET, HSETNX and HINCRBY put without a second lookup. The
 * count must be Redis's in every case: a create, fields new and old,
 * a field repeated in one command, a hash emptied and filled again, and
 * HLEN (counted on demand) after each kind of write, inside MULTI too. */
static void test_hset_new_field_count(void **state)
{
	redisContext *c = conn();
	EXPECT_INT(c, 3, "HSET nf a 1 b 2 c 3");     /* creates the hash  */
	EXPECT_INT(c, 0, "HSET nf a 9 b 9");         /* all there         */
	EXPECT_INT(c, 2, "HSET nf a 1 d 4 e 5 a 2"); /* d, e new; a twice */
	EXPECT_INT(c, 1, "HSET nf f 1 f 2 f 3");     /* one field, thrice */
	EXPECT_STATUS(c, "3", "HGET nf f");
	EXPECT_STATUS(c, "2", "HGET nf a");
	EXPECT_INT(c, 6, "HLEN nf");
	EXPECT_STATUS(c, "OK", "HMSET nf g 1 a 3");
	EXPECT_INT(c, 7, "HLEN nf");
	EXPECT_INT(c, 1, "HSETNX nf h 1");
	EXPECT_INT(c, 8, "HLEN nf");
	EXPECT_INT(c, 5, "HINCRBY nf i 5");
	EXPECT_INT(c, 9, "HLEN nf");
	EXPECT_INT(c, 9, "HDEL nf a b c d e f g h i");
	EXPECT_INT(c, 0, "HLEN nf");
	EXPECT_INT(c, 2, "HSET nf a 1 b 2"); /* emptied: new again */
	EXPECT_INT(c, 1, "DEL nf");
	EXPECT_INT(c, 1, "HSET nf a 1"); /* dropped: new again */
	/* inside MULTI: each HSET counts against the transaction's changes */
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET nf a 2 b 2");
	EXPECT_STATUS(c, "QUEUED", "HSET nf b 3 c 3");
	EXPECT_STATUS(c, "QUEUED", "HLEN nf");
	EXPECT_STATUS(c, "QUEUED", "HMSET nf d 4");
	EXPECT_STATUS(c, "QUEUED", "HINCRBY nf e 1");
	EXPECT_STATUS(c, "QUEUED", "HLEN nf");
	EXPECT_STATUS(c, "QUEUED", "HDEL nf a e");
	EXPECT_STATUS(c, "QUEUED", "HLEN nf");
	redisReply *r = cmd(c, "EXEC");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 8);
	assert_int_equal(r->element[0]->integer, 1);
	assert_int_equal(r->element[1]->integer, 1);
	assert_int_equal(r->element[2]->integer, 3);
	assert_int_equal(r->element[4]->integer, 1);
	assert_int_equal(r->element[5]->integer, 5);
	assert_int_equal(r->element[6]->integer, 2);
	assert_int_equal(r->element[7]->integer, 3);
	freeReplyObject(r);
	EXPECT_INT(c, 3, "HLEN nf");
	/* pipelined: the replies in order, each against the one before */
	for (int i = 0; i < 64; i++)
		redisAppendCommand(c, "HSET nfp f%d x f%d y", i / 2, i / 2 + 1);
	for (int i = 0; i < 64; i++) {
		redisReply *p = NULL;
		assert_int_equal(redisGetReply(c, (void **)&p), REDIS_OK);
		assert_int_equal(p->type, REDIS_REPLY_INTEGER);
		assert_int_equal(p->integer, i == 0 ? 2 : i % 2 == 0 ? 1 : 0);
		freeReplyObject(p);
	}
	EXPECT_INT(c, 33, "HLEN nfp");
	redisFree(c);
}

/* Writers on one hash at once (their commits conflict and are retried):
 * every field is new to exactly one HSET, so the replies must add up to
 * the hash's length. A count taken against any other version than the one
 * a commit applied to would add up to more or less. */
enum { NF_WRITERS = 8, NF_FIELDS = 400 };

typedef struct nf_worker {
	pthread_t t;
	int n;
	long long sum;
} nf_worker;

static atomic_int nf_errors;

static void *nf_main(void *p)
{
	nf_worker *w = p;
	redisContext *c = redisConnect("127.0.0.1", target.port);
	if (!c || c->err) {
		atomic_fetch_add(&nf_errors, 1);
		return NULL;
	}
	/* every writer sets every field, in its own order, two per command */
	for (int i = 0; i < NF_FIELDS; i += 2) {
		int f = (i * (2 * w->n + 1) + 7 * w->n) % NF_FIELDS;
		redisAppendCommand(c, "HSET nfc f%d %d f%d %d", f, w->n, (f + 1) % NF_FIELDS, w->n);
	}
	for (int i = 0; i < NF_FIELDS; i += 2) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK || r->type != REDIS_REPLY_INTEGER)
			atomic_fetch_add(&nf_errors, 1);
		else
			w->sum += r->integer;
		if (r)
			freeReplyObject(r);
	}
	redisFree(c);
	return NULL;
}

static void test_hset_new_field_count_concurrent(void **state)
{
	static nf_worker w[NF_WRITERS];
	atomic_store(&nf_errors, 0);
	for (int i = 0; i < NF_WRITERS; i++) {
		w[i].n = i;
		w[i].sum = 0;
		assert_int_equal(pthread_create(&w[i].t, NULL, nf_main, &w[i]), 0);
	}
	long long sum = 0;
	for (int i = 0; i < NF_WRITERS; i++) {
		pthread_join(w[i].t, NULL);
		sum += w[i].sum;
	}
	assert_int_equal(atomic_load(&nf_errors), 0);
	redisContext *c = conn();
	EXPECT_INT(c, NF_FIELDS, "HLEN nfc");
	redisFree(c);
	assert_int_equal(sum, NF_FIELDS);
}

/* Pipelined HSET/HMSET of one context that arrive in one read are one
 * commit (net.c, run_group): one new version for the lot, every reply the
 * one the command would get alone after the ones before it, in order. */
static void test_pipeline_group_one_commit(void **state)
{
	if (is_redis)
		skip();
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET grp a 0");
	EXPECT_INT(c, 1, "CTX.VERSION grp");
	char b[16 * 96];
	size_t len = 0;
	for (int i = 0; i < 16; i++) {
		char f[16], line[96];
		snprintf(f, sizeof(f), "f%d", i / 2);
		int n = snprintf(line, sizeof(line),
		                 "*6\r\n$%s\r\n%s\r\n$3\r\ngrp\r\n$%zu\r\n%s\r\n$1\r\nx\r\n$"
		                 "1\r\na\r\n$1\r\n%d\r\n",
		                 i % 3 ? "4" : "5", i % 3 ? "HSET" : "HMSET", strlen(f), f, i % 10);
		memcpy(b + len, line, (size_t)n);
		len += (size_t)n;
	}
	rawconn *r = raw_open(&target);
	assert_true(su_send(r->fd, b, len)); /* one write: one read on loopback */
	for (int i = 0; i < 16; i++) {
		const char *want = i % 3 == 0 ? "+OK" : i % 2 == 0 ? ":1" : ":0";
		raw_expect(r, NULL, want);
	}
	raw_close(r);
	EXPECT_INT(c, 2, "CTX.VERSION grp"); /* one commit, not 16 */
	EXPECT_INT(c, 9, "HLEN grp");
	EXPECT_STATUS(c, "5", "HGET grp a");
	redisFree(c);
}

/* DEL of a hash, then writes to it, in one pipelined write (and inside
 * MULTI): Redis recreates the key. ctxd's writes after the DEL met the
 * dropped context, whose drop was not durable yet: its create failed with
 * CTX_EXISTS, turned into CTXCONFLICT after 33 attempts, and inside EXEC the
 * DEL was kept while the HSET was not (found in review, round 5). */
static void test_del_then_write_pipelined(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET delw a 1");
	rawconn *r = raw_open(&target);
	const char *del_hset = "*2\r\n$3\r\nDEL\r\n$4\r\ndelw\r\n"
	                       "*4\r\n$4\r\nHSET\r\n$4\r\ndelw\r\n$1\r\nb\r\n$1\r\n1\r\n"
	                       "*4\r\n$4\r\nHSET\r\n$4\r\ndelw\r\n$1\r\nc\r\n$1\r\n1\r\n";
	assert_true(su_send(r->fd, del_hset, strlen(del_hset)));
	for (int i = 0; i < 3; i++)
		raw_expect(r, NULL, ":1");
	EXPECT_INT(c, 2, "HLEN delw");
	EXPECT_INT(c, 0, "HEXISTS delw a");
	const char *multi = "*1\r\n$5\r\nMULTI\r\n"
	                    "*2\r\n$3\r\nDEL\r\n$4\r\ndelw\r\n"
	                    "*4\r\n$4\r\nHSET\r\n$4\r\ndelw\r\n$1\r\nd\r\n$1\r\n1\r\n"
	                    "*1\r\n$4\r\nEXEC\r\n";
	assert_true(su_send(r->fd, multi, strlen(multi)));
	raw_expect(r, NULL, "+OK");
	raw_expect(r, NULL, "+QUEUED");
	raw_expect(r, NULL, "+QUEUED");
	raw_expect(r, NULL, "*2\r\n:1\r\n:1\r\n");
	raw_close(r);
	EXPECT_INT(c, 1, "HLEN delw");
	EXPECT_STATUS(c, "1", "HGET delw d");
	redisFree(c);
}

/* DEL (or UNLINK) of one key then writes of it, in one read, are one group:
 * one commit that replaces the fields on the same context (version 2 -> 3),
 * not a drop and a create (version 1), whose create waited on the loop
 * thread for the drop's fsync. Replies are Redis's: DEL :1, the writes as on
 * a fresh key; a second DEL in the group :0; a DEL last leaves no key. */
static void test_pipeline_group_del_first(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET gdel a 1");
	EXPECT_INT(c, 1, "HSET gdel b 1");
	rawconn *r = raw_open(&target);
	const char *req = "*2\r\n$3\r\nDEL\r\n$4\r\ngdel\r\n"
	                  "*4\r\n$4\r\nHSET\r\n$4\r\ngdel\r\n$1\r\nc\r\n$1\r\n1\r\n"
	                  "*4\r\n$4\r\nHSET\r\n$4\r\ngdel\r\n$1\r\na\r\n$1\r\n2\r\n";
	assert_true(su_send(r->fd, req, strlen(req)));
	raw_expect(r, NULL, ":1");
	raw_expect(r, NULL, ":1");
	raw_expect(r, NULL, ":1"); /* a is new again after the DEL */
	EXPECT_INT(c, 2, "HLEN gdel");
	EXPECT_INT(c, 0, "HEXISTS gdel b");
	EXPECT_STATUS(c, "2", "HGET gdel a");
	if (!is_redis)
		EXPECT_INT(c, 3, "CTX.VERSION gdel"); /* one commit on the same context */
	/* UNLINK, DEL twice, a write, DEL last: the key is gone */
	req = "*2\r\n$6\r\nUNLINK\r\n$4\r\ngdel\r\n"
	      "*2\r\n$3\r\nDEL\r\n$4\r\ngdel\r\n"
	      "*4\r\n$4\r\nHSET\r\n$4\r\ngdel\r\n$1\r\nd\r\n$1\r\n1\r\n"
	      "*2\r\n$3\r\nDEL\r\n$4\r\ngdel\r\n";
	assert_true(su_send(r->fd, req, strlen(req)));
	raw_expect(r, NULL, ":1");
	raw_expect(r, NULL, ":0");
	raw_expect(r, NULL, ":1");
	raw_expect(r, NULL, ":1");
	raw_close(r);
	EXPECT_INT(c, 0, "EXISTS gdel");
	EXPECT_INT(c, 1, "HSET gdel e 1"); /* and can be created again */
	EXPECT_INT(c, 1, "HLEN gdel");
	redisFree(c);
}

/* Every hash write may join a group: each sees the ones before it, as the
 * same commands one by one would; an error reply in the middle (HINCRBY of
 * a value that is not a number) makes the group run one by one, with the
 * same replies as Redis gives. */
static void mixed_pipeline(redisContext *c, bool with_error)
{
	redisAppendCommand(c, "HSET gmix n 1 s x");
	redisAppendCommand(c, "HINCRBY gmix n 5");
	redisAppendCommand(c, "HSETNX gmix n 9");
	redisAppendCommand(c, "HSETNX gmix m 1");
	redisAppendCommand(c, "HDEL gmix m nope");
	redisAppendCommand(c, "HINCRBYFLOAT gmix n 0.5");
	redisAppendCommand(c, with_error ? "HINCRBY gmix s 1" : "HINCRBY gmix k 1");
	redisAppendCommand(c, "HDEL gmix s");
	const long long want[] = {with_error ? 0 : 2, 6, 0, 1, 1, -1, 1, 1};
	for (int i = 0; i < 8; i++) {
		redisReply *r = NULL;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		if (i == 0 && !with_error) /* the second time only s is new again */
			assert_int_equal(r->integer, 1);
		else if (i == 0)
			assert_int_equal(r->integer, 2);
		else if (i == 5)
			assert_string_equal(r->str, "6.5");
		else if (i == 6 && with_error)
			assert_string_equal(r->str, "ERR hash value is not an integer");
		else
			assert_int_equal(r->integer, want[i]);
		freeReplyObject(r);
	}
}

static void test_pipeline_group_mixed(void **state)
{
	redisContext *c = conn();
	mixed_pipeline(c, true);
	EXPECT_STATUS(c, "6.5", "HGET gmix n");
	EXPECT_INT(c, 1, "HLEN gmix");
	if (!is_redis) {
		/* one by one: HSET, HINCRBY, HSETNX m, HDEL m, HINCRBYFLOAT, HDEL s
		 * (HSETNX n and the failed HINCRBY commit nothing) */
		EXPECT_INT(c, 6, "CTX.VERSION gmix");
	}
	mixed_pipeline(c, false);
	EXPECT_STATUS(c, "6.5", "HGET gmix n");
	EXPECT_STATUS(c, "1", "HGET gmix k");
	EXPECT_INT(c, 2, "HLEN gmix");
	if (!is_redis)
		EXPECT_INT(c, 7, "CTX.VERSION gmix"); /* the 8 writes: one commit */
	redisFree(c);
}

/* A hash write followed, in the same read, by an empty request (an empty
 * inline line): looking ahead for a group must not read the empty request's
 * argument vector, which a new connection does not have yet (fuzz_dispatch
 * found it: a NULL dereference, ctxd crashed). */
static void test_pipeline_group_empty_request(void **state)
{
	rawconn *r = raw_open(&target);
	const char req[] = "HSET gempty a 1\r\n\r\nHSET gempty b 2\r\nPING\r\n";
	assert_true(su_send(r->fd, req, sizeof(req) - 1));
	raw_expect(r, NULL, ":1");
	raw_expect(r, NULL, ":1");
	raw_expect(r, NULL, "+PONG");
	raw_close(r);
}

/* A group whose commit fails (a field over max_key_size) is run again one
 * command at a time: the same replies as without grouping, the other
 * commands applied, each its own commit. */
static void test_pipeline_group_fallback(void **state)
{
	redisContext *c = conn();
	size_t big = 70000; /* over CTX_DEFAULT_MAX_KEY_SIZE */
	char *f = malloc(big);
	memset(f, 'k', big);
	redisAppendCommand(c, "HSET gfb a 1");
	redisAppendCommand(c, "HSET gfb %b 1", f, big);
	redisAppendCommand(c, "HSET gfb b 1 a 2");
	redisReply *r = NULL;
	assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_int_equal(r->integer, 1);
	freeReplyObject(r);
	assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
	if (is_redis) { /* Redis takes it */
		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	} else {
		assert_int_equal(r->type, REDIS_REPLY_ERROR);
		assert_true(strncmp(r->str, "CTX", 3) == 0);
	}
	freeReplyObject(r);
	assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_int_equal(r->integer, 1);
	freeReplyObject(r);
	free(f);
	EXPECT_STATUS(c, "2", "HGET gfb a");
	EXPECT_STATUS(c, "1", "HGET gfb b");
	if (!is_redis)
		EXPECT_INT(c, 2, "CTX.VERSION gfb");
	redisFree(c);
}

static void test_hash_empty_is_absent(void **state)
{
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET e f v");
	EXPECT_INT(c, 1, "EXISTS e");
	EXPECT_INT(c, 1, "HDEL e f");
	EXPECT_INT(c, 0, "EXISTS e");
	EXPECT_STATUS(c, "none", "TYPE e");
	EXPECT_INT(c, 0, "HLEN e");
	EXPECT_INT(c, -2, "TTL e");
	redisReply *r = cmd(c, "KEYS *");
	assert_int_equal(r->elements, 0);
	freeReplyObject(r);
	r = cmd(c, "SCAN 0");
	assert_int_equal(r->element[1]->elements, 0);
	freeReplyObject(r);
	if (!is_redis) {                           /* the context itself remains for CTX.* */
		EXPECT_INT(c, 2, "CTX.VERSION e"); /* 1: created by HSET, 2: HDEL */
		EXPECT_INT(c, 0, "DEL e");         /* dropped, but it was no Redis key */
		EXPECT_ERR(c, "CTXNOTFOUND", "CTX.VERSION e");
	}
	redisFree(c);
}

static void test_hincrby(void **state)
{
	redisContext *c = conn();
	EXPECT_INT(c, 5, "HINCRBY n a 5");
	EXPECT_INT(c, -2, "HINCRBY n a -7");
	EXPECT_STATUS(c, "-2", "HGET n a");
	EXPECT_INT(c, 1, "HSET n big 9223372036854775806");
	EXPECT_INT(c, 9223372036854775807LL, "HINCRBY n big 1");
	EXPECT_ERR(c, "ERR increment or decrement would overflow", "HINCRBY n big 1");
	EXPECT_INT(c, 1, "HSET n neg -9223372036854775808");
	EXPECT_ERR(c, "ERR increment or decrement would overflow", "HINCRBY n neg -1");
	EXPECT_INT(c, 1, "HSET n s abc");
	EXPECT_ERR(c, "ERR hash value is not an integer", "HINCRBY n s 1");
	EXPECT_INT(c, 1, "HSET n sp %s", " 1");
	EXPECT_ERR(c, "ERR hash value is not an integer", "HINCRBY n sp 1");
	EXPECT_INT(c, 1, "HSET n lead 01");
	EXPECT_ERR(c, "ERR hash value is not an integer", "HINCRBY n lead 1");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "HINCRBY n a x");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "HINCRBY n a 1.5");
	EXPECT_ERR(c, "ERR value is not an integer or out of range",
	           "HINCRBY n a 9223372036854775808");
	EXPECT_STATUS(c, "abc", "HGET n s");

	EXPECT_STATUS(c, "10.5", "HINCRBYFLOAT f x 10.5");
	EXPECT_STATUS(c, "10.6", "HINCRBYFLOAT f x 0.1");
	EXPECT_STATUS(c, "5.6", "HINCRBYFLOAT f x -5");
	EXPECT_INT(c, 1, "HSET f e 5.0e3");
	EXPECT_STATUS(c, "5200", "HINCRBYFLOAT f e 2.0e2");
	EXPECT_INT(c, 1, "HSET f i 7");
	EXPECT_STATUS(c, "7.25", "HINCRBYFLOAT f i 0.25");
	EXPECT_STATUS(c, "0", "HINCRBYFLOAT f i -7.25");
	EXPECT_ERR(c, "ERR value is not a valid float", "HINCRBYFLOAT f x abc");
	EXPECT_ERR(c, "ERR value is not a valid float", "HINCRBYFLOAT f x %s", " 1");
	EXPECT_INT(c, 1, "HSET f s xyz");
	EXPECT_ERR(c, "ERR hash value is not a float", "HINCRBYFLOAT f s 1");
	EXPECT_ERR(c, "ERR value is NaN or Infinity", "HINCRBYFLOAT f x inf");
	EXPECT_INT(c, 1, "HSET f h 1e5000");
	EXPECT_ERR(c, "ERR hash value is not a float", "HINCRBYFLOAT f h 1");
	redisFree(c);
}

static void test_binary_safe(void **state)
{
	redisContext *c = conn();
	const char f[] = {'a', 0, 'b', 0}, v[] = {0, 1, 0, 2, 0, 'z'};
	EXPECT_INT(c, 1, "HSET bin %b %b", f, sizeof(f), v, sizeof(v));
	EXPECT_INT(c, 1, "HSET bin %b %b", "a", (size_t)1, "", (size_t)0);
	redisReply *r = cmd(c, "HGET bin %b", f, sizeof(f));
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, sizeof(v));
	assert_memory_equal(r->str, v, sizeof(v));
	freeReplyObject(r);
	r = cmd(c, "HGET bin a");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, 0);
	freeReplyObject(r);
	EXPECT_INT(c, 0, "HEXISTS bin %b", f, (size_t)3);
	EXPECT_INT(c, 6, "HSTRLEN bin %b", f, sizeof(f));
	r = cmd(c, "HGETALL bin");
	assert_int_equal(r->elements, 4);
	bool found = false;
	for (size_t i = 0; i < 4; i += 2)
		if (r->element[i]->len == sizeof(f) && !memcmp(r->element[i]->str, f, sizeof(f))) {
			assert_memory_equal(r->element[i + 1]->str, v, sizeof(v));
			found = true;
		}
	assert_true(found);
	freeReplyObject(r);
	r = cmd(c, "HSCAN bin 0 MATCH a*");
	assert_int_equal(r->element[1]->elements, 4);
	freeReplyObject(r);
	EXPECT_INT(c, 1, "HDEL bin %b", f, sizeof(f));
	EXPECT_INT(c, 1, "HLEN bin");
	redisFree(c);
}

/* A field name ctx cannot store: an error, nothing written. */
static void test_empty_field(void **state)
{
	if (is_redis)
		skip();
	redisContext *c = conn();
	EXPECT_ERR(c, "ERR empty field names", "HSET ef %b v", "", (size_t)0);
	EXPECT_INT(c, 0, "EXISTS ef");
	redisFree(c);
}

static void fill_hash(redisContext *c, const char *key, int n)
{
	for (int base = 0; base < n; base += 1000) {
		int m = n - base < 1000 ? n - base : 1000;
		const char **argv = malloc(sizeof(char *) * (size_t)(2 + 2 * m));
		char(*buf)[24] = malloc(sizeof(*buf) * (size_t)m);
		argv[0] = "HSET";
		argv[1] = key;
		for (int i = 0; i < m; i++) {
			snprintf(buf[i], sizeof(buf[i]), "field:%d", base + i);
			argv[2 + 2 * i] = buf[i];
			argv[3 + 2 * i] = buf[i] + 6;
		}
		redisReply *r = redisCommandArgv(c, 2 + 2 * m, argv, NULL);
		assert_non_null(r);
		assert_int_equal(r->integer, m);
		freeReplyObject(r);
		free(argv);
		free(buf);
	}
}

static void test_hscan_big(void **state)
{
	enum { N = 10000 };
	redisContext *c = conn();
	fill_hash(c, "big", N);
	EXPECT_INT(c, N, "HLEN big");
	static unsigned char seen[N];
	memset(seen, 0, sizeof(seen));
	char cursor[32] = "0";
	int calls = 0, total = 0;
	do {
		redisReply *r = cmd(c, "HSCAN big %s COUNT 97", cursor);
		assert_int_equal(r->type, REDIS_REPLY_ARRAY);
		assert_int_equal(r->elements, 2);
		assert_int_equal(r->element[0]->type, REDIS_REPLY_STRING);
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		redisReply *a = r->element[1];
		assert_int_equal(a->elements % 2, 0);
		for (size_t i = 0; i < a->elements; i += 2) {
			assert_memory_equal(a->element[i]->str, "field:", 6);
			int k = atoi(a->element[i]->str + 6);
			assert_int_equal(k, atoi(a->element[i + 1]->str));
			assert_true(k >= 0 && k < N);
			seen[k]++;
			total++;
		}
		freeReplyObject(r);
		calls++;
		/* writes during the scan do not disturb it (one version) */
		if (!is_redis && calls == 5)
			EXPECT_INT(c, 5, "HSET big new1 x new2 x new3 x new4 x new5 x");
	} while (strcmp(cursor, "0") != 0);
	assert_true(calls > 10);
	for (int i = 0; i < N; i++)
		if (seen[i] != 1)
			fail_msg("field:%d seen %d times", i, seen[i]);
	assert_int_equal(total, N);

	/* MATCH filters; NOVALUES gives fields only */
	int hits = 0;
	strcpy(cursor, "0");
	do {
		redisReply *r = cmd(c, "HSCAN big %s MATCH field:99* COUNT 1000", cursor);
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		hits += (int)r->element[1]->elements / 2;
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	assert_int_equal(hits, 111); /* 99, 990-999, 9900-9999 */
	if (!is_redis) {
		redisReply *r = cmd(c, "HSCAN big 0 COUNT 20000 NOVALUES");
		assert_int_equal(r->element[1]->elements, N + 5);
		assert_string_equal(r->element[0]->str, "0");
		freeReplyObject(r);
	}
	EXPECT_ERR(c, "ERR invalid cursor", "HSCAN big abc");
	EXPECT_ERR(c, "ERR syntax error", "HSCAN big 0 COUNT 0");
	EXPECT_ERR(c, "ERR syntax error", "HSCAN big 0 BOGUS");
	redisReply *r = cmd(c, "HSCAN nokey 0");
	assert_string_equal(r->element[0]->str, "0");
	assert_int_equal(r->element[1]->elements, 0);
	freeReplyObject(r);
	redisFree(c);
}

static void test_hrandfield(void **state)
{
	redisContext *c = conn();
	EXPECT_INT(c, 3, "HSET rf a 1 b 2 c 3");
	redisReply *r = cmd(c, "HRANDFIELD rf");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_true(strchr("abc", r->str[0]) && r->len == 1);
	freeReplyObject(r);
	EXPECT_NIL(c, "HRANDFIELD nokey");
	r = cmd(c, "HRANDFIELD rf 10"); /* distinct, at most the size */
	assert_int_equal(r->elements, 3);
	int mask = 0;
	for (size_t i = 0; i < 3; i++)
		mask |= 1 << (r->element[i]->str[0] - 'a');
	assert_int_equal(mask, 7);
	freeReplyObject(r);
	r = cmd(c, "HRANDFIELD rf 2");
	assert_int_equal(r->elements, 2);
	assert_string_not_equal(r->element[0]->str, r->element[1]->str);
	freeReplyObject(r);
	r = cmd(c, "HRANDFIELD rf -7"); /* repeats allowed, exactly |count| */
	assert_int_equal(r->elements, 7);
	freeReplyObject(r);
	r = cmd(c, "HRANDFIELD rf -4 WITHVALUES");
	assert_int_equal(r->elements, 8);
	for (size_t i = 0; i < 8; i += 2)
		assert_int_equal(r->element[i]->str[0] - 'a' + '1', r->element[i + 1]->str[0]);
	freeReplyObject(r);
	r = cmd(c, "HRANDFIELD rf 0");
	assert_int_equal(r->elements, 0);
	freeReplyObject(r);
	r = cmd(c, "HRANDFIELD nokey 3");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 0);
	freeReplyObject(r);
	EXPECT_ERR(c, "ERR syntax error", "HRANDFIELD rf 1 WITHSCORES");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "HRANDFIELD rf x");
	redisFree(c);
}

/* RESP3: HGETALL is a map, HRANDFIELD WITHVALUES an array of pairs, nulls
 * are '_'; HSCAN stays an array; HINCRBYFLOAT a bulk. */
static void test_resp3_shapes(void **state)
{
	rawconn *r = raw_resp3();
	assert_string_equal(raw_cmd(r, "HSET", "r3", "f", "v", NULL), ":1\r\n");
	assert_string_equal(raw_cmd(r, "HGETALL", "r3", NULL), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
	assert_string_equal(raw_cmd(r, "HGETALL", "nokey", NULL), "%0\r\n");
	assert_string_equal(raw_cmd(r, "HGET", "r3", "x", NULL), "_\r\n");
	assert_string_equal(raw_cmd(r, "HMGET", "r3", "f", "x", NULL), "*2\r\n$1\r\nv\r\n_\r\n");
	assert_string_equal(raw_cmd(r, "HRANDFIELD", "r3", "1", "WITHVALUES", NULL),
	                    "*1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
	assert_string_equal(raw_cmd(r, "HRANDFIELD", "r3", "-2", "WITHVALUES", NULL),
	                    "*2\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
	assert_string_equal(raw_cmd(r, "HRANDFIELD", "nokey", NULL), "_\r\n");
	assert_string_equal(raw_cmd(r, "HSCAN", "r3", "0", NULL),
	                    "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
	assert_string_equal(raw_cmd(r, "HINCRBYFLOAT", "r3", "n", "1.5", NULL), "$3\r\n1.5\r\n");
	assert_string_equal(raw_cmd(r, "HEXISTS", "r3", "f", NULL), ":1\r\n");
	assert_string_equal(raw_cmd(r, "TYPE", "r3", NULL), "+hash\r\n");
	assert_string_equal(raw_cmd(r, "HKEYS", "nokey", NULL), "*0\r\n");
	raw_close(r);
	/* RESP2 on the wire */
	r = raw_open(&target);
	const char *all = raw_cmd(r, "HGETALL", "r3", NULL); /* either order */
	if (strcmp(all, "*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\nn\r\n$3\r\n1.5\r\n") != 0)
		assert_string_equal(all, "*4\r\n$1\r\nn\r\n$3\r\n1.5\r\n$1\r\nf\r\n$1\r\nv\r\n");
	assert_string_equal(raw_cmd(r, "HGET", "r3", "x", NULL), "$-1\r\n");
	assert_string_equal(raw_cmd(r, "HRANDFIELD", "nokey", NULL), "$-1\r\n");
	raw_close(r);
}

/* ---- keyspace ------------------------------------------------------------------------ */

static void test_keyspace(void **state)
{
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET k1 f v");
	EXPECT_INT(c, 1, "HSET k2 f v");
	EXPECT_INT(c, 3, "EXISTS k1 k2 k1 nokey");
	EXPECT_INT(c, 0, "EXISTS nokey");
	EXPECT_STATUS(c, "hash", "TYPE k1");
	EXPECT_STATUS(c, "none", "TYPE nokey");
	EXPECT_INT(c, 2, "DEL k1 k2 nokey");
	EXPECT_INT(c, 0, "EXISTS k1 k2");
	EXPECT_INT(c, 1, "HSET k3 f v");
	EXPECT_INT(c, 1, "UNLINK k3");
	EXPECT_INT(c, 0, "UNLINK k3");
	EXPECT_NIL(c, "HGET k3 f");
	/* other types */
	EXPECT_INT(c, 1, "HSET k4 f v");
	/* Redis's exact words (clients match the whole message) */
#define WRONGTYPE_MSG "WRONGTYPE Operation against a key holding the wrong kind of value"
	EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "GET k4");
	EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "LPUSH k4 x");
	EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "SADD k4 x");
	EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "ZADD k4 1 x");
	EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "INCR k4");
	EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "APPEND k4 x");
	EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "SMEMBERS k4");
	EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "LRANGE k4 0 -1");
	if (!is_redis) {
		EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "SET k5 x");
		EXPECT_ERR_EXACT(c, WRONGTYPE_MSG, "MSET a 1 b 2");
		EXPECT_ERR(c, "ERR ctx cannot rename", "RENAME k4 k6");
		EXPECT_ERR(c, "ERR ctx has idle time-to-lives only", "EXPIREAT k4 1");
		EXPECT_INT(c, 0, "EXISTS k5");
	}
	redisFree(c);
}

static void test_keys_glob(void **state)
{
	redisContext *c = conn();
	const char *names[] = {"hello", "hallo", "hxllo", "hllo",  "heeeello",
	                       "h*llo", "Hello", "hbllo", "h-llo", "h]llo"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		EXPECT_INT(c, 1, "HSET %s f v", names[i]);
	struct {
		const char *pat, *want; /* want: sorted, space separated */
	} cases[] = {
	    {"h?llo", "h*llo h-llo h]llo hallo hbllo hello hxllo"},
	    {"h*llo", "h*llo h-llo h]llo hallo hbllo heeeello hello hllo hxllo"},
	    {"h[ae]llo", "hallo hello"},
	    {"h[^e]llo", "h*llo h-llo h]llo hallo hbllo hxllo"},
	    {"h[a-b]llo", "hallo hbllo"},
	    {"h[b-a]llo", "hallo hbllo"},
	    {"h\\*llo", "h*llo"},
	    {"h[\\]]llo", "h]llo"},
	    {"H*", "Hello"},
	    {"*", "H*llo"}, /* placeholder, replaced below */
	    {"nomatch*", ""},
	    {"hello", "hello"},
	    {"h[-]llo", "h-llo"},
	};
	cases[9].want = "Hello h*llo h-llo h]llo hallo hbllo heeeello hello hllo hxllo";
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *r = cmd(c, "KEYS %s", cases[i].pat);
		assert_int_equal(r->type, REDIS_REPLY_ARRAY);
		/* sort the reply */
		for (size_t a = 0; a < r->elements; a++)
			for (size_t b = a + 1; b < r->elements; b++)
				if (strcmp(r->element[a]->str, r->element[b]->str) > 0) {
					redisReply *t = r->element[a];
					r->element[a] = r->element[b];
					r->element[b] = t;
				}
		char got[512] = "";
		for (size_t a = 0; a < r->elements; a++) {
			if (a)
				strcat(got, " ");
			strcat(got, r->element[a]->str);
		}
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("KEYS %s: got '%s', want '%s'", cases[i].pat, got, cases[i].want);
		freeReplyObject(r);
	}
	redisFree(c);
}

static void test_scan_1000(void **state)
{
	enum { N = 1000 };
	redisContext *c = conn();
	for (int i = 0; i < N; i++)
		redisAppendCommand(c, "HSET sc:%d f %d", i, i);
	for (int i = 0; i < N; i++) {
		redisReply *r;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		assert_int_equal(r->integer, 1);
		freeReplyObject(r);
	}
	EXPECT_INT(c, 1, "HSET other f v");
	static unsigned char seen[N];
	memset(seen, 0, sizeof(seen));
	char cursor[32] = "0";
	int pages = 0;
	do {
		redisReply *r = cmd(c, "SCAN %s MATCH sc:* COUNT 37", cursor);
		assert_int_equal(r->type, REDIS_REPLY_ARRAY);
		assert_int_equal(r->element[0]->type, REDIS_REPLY_STRING);
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++) {
			const char *k = r->element[1]->element[i]->str;
			assert_memory_equal(k, "sc:", 3);
			seen[atoi(k + 3)]++;
		}
		freeReplyObject(r);
		pages++;
	} while (strcmp(cursor, "0") != 0);
	assert_true(pages > 5);
	for (int i = 0; i < N; i++)
		if (seen[i] != 1)
			fail_msg("sc:%d seen %d times", i, seen[i]);
	redisReply *r = cmd(c, "SCAN 0 COUNT 5000 TYPE string");
	assert_int_equal(r->element[1]->elements, 0);
	freeReplyObject(r);
	r = cmd(c, "SCAN 0 COUNT 5000 TYPE hash");
	assert_int_equal(r->element[1]->elements, N + 1);
	freeReplyObject(r);
	r = cmd(c, "KEYS sc:99*");
	assert_int_equal(r->elements, 11);
	freeReplyObject(r);
	EXPECT_ERR(c, "ERR invalid cursor", "SCAN x");
	if (!is_redis)
		EXPECT_ERR(c, "ERR invalid cursor", "SCAN 987654321987");
	redisFree(c);
}

static void test_expire(void **state)
{
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET ex f v");
	EXPECT_INT(c, -1, "TTL ex");
	EXPECT_INT(c, -2, "TTL nokey");
	EXPECT_INT(c, -2, "PTTL nokey");
	EXPECT_INT(c, 0, "EXPIRE nokey 100");
	EXPECT_INT(c, 1, "EXPIRE ex 100");
	redisReply *r = cmd(c, "TTL ex");
	assert_true(r->integer > 90 && r->integer <= 100);
	freeReplyObject(r);
	r = cmd(c, "PTTL ex");
	assert_true(r->integer > 90000 && r->integer <= 100000);
	freeReplyObject(r);
	EXPECT_INT(c, 0, "EXPIRE ex 50 NX");
	EXPECT_INT(c, 1, "EXPIRE ex 200 GT");
	EXPECT_INT(c, 0, "EXPIRE ex 100 GT");
	EXPECT_INT(c, 1, "EXPIRE ex 100 LT");
	EXPECT_INT(c, 1, "PEXPIRE ex 500000 XX");
	r = cmd(c, "TTL ex");
	assert_true(r->integer > 490 && r->integer <= 500);
	freeReplyObject(r);
	EXPECT_ERR(c, "ERR NX and XX, GT or LT options at the same time are not compatible",
	           "EXPIRE ex 10 NX XX");
	EXPECT_INT(c, 1, "PERSIST ex");
	EXPECT_INT(c, 0, "PERSIST ex");
	EXPECT_INT(c, -1, "TTL ex");
	EXPECT_INT(c, 0, "EXPIRE ex 10 XX");
	EXPECT_INT(c, 1, "EXPIRE ex 0"); /* deletes */
	EXPECT_INT(c, 0, "EXISTS ex");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "EXPIRE ex abc");
	redisFree(c);
}

/* ---- concurrency ---------------------------------------------------------------------------- */

static atomic_long thread_errors;

typedef struct worker {
	pthread_t t;
	int n;
	long retries;
} worker;

static void *incr_main(void *p)
{
	worker *w = p;
	redisContext *c = redisConnect("127.0.0.1", target.port);
	if (!c || c->err) {
		atomic_fetch_add(&thread_errors, 1);
		return NULL;
	}
	for (int i = 0; i < w->n; i++) {
		redisReply *r = redisCommand(c, "HINCRBY counter hits 1");
		if (!r || r->type != REDIS_REPLY_INTEGER)
			atomic_fetch_add(&thread_errors, 1);
		if (r)
			freeReplyObject(r);
	}
	redisFree(c);
	return NULL;
}

static void test_hincrby_64_clients(void **state)
{
	enum { T = 64, N = 200 };
	static worker w[T];
	atomic_store(&thread_errors, 0);
	for (int i = 0; i < T; i++) {
		w[i].n = N;
		assert_int_equal(pthread_create(&w[i].t, NULL, incr_main, &w[i]), 0);
	}
	for (int i = 0; i < T; i++)
		pthread_join(w[i].t, NULL);
	assert_int_equal(atomic_load(&thread_errors), 0);
	redisContext *c = conn();
	redisReply *r = cmd(c, "HGET counter hits");
	assert_int_equal(atoll(r->str), T * N);
	freeReplyObject(r);
	redisFree(c);
}

/* WATCH, read, MULTI, write, EXEC; again while EXEC says nil. */
static void *cas_main(void *p)
{
	worker *w = p;
	redisContext *c = redisConnect("127.0.0.1", target.port);
	if (!c || c->err) {
		atomic_fetch_add(&thread_errors, 1);
		return NULL;
	}
	for (int i = 0; i < w->n; i++) {
		for (;;) {
			freeReplyObject(redisCommand(c, "WATCH cas"));
			redisReply *r = redisCommand(c, "HGET cas n");
			long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
			if (r)
				freeReplyObject(r);
			freeReplyObject(redisCommand(c, "MULTI"));
			freeReplyObject(redisCommand(c, "HSET cas n %lld", v + 1));
			freeReplyObject(redisCommand(c, "HSET cas last %d", i));
			r = redisCommand(c, "EXEC");
			if (!r) {
				atomic_fetch_add(&thread_errors, 1);
				break;
			}
			bool done = r->type == REDIS_REPLY_ARRAY;
			if (!done && r->type != REDIS_REPLY_NIL)
				atomic_fetch_add(&thread_errors, 1);
			if (done &&
			    (r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER))
				atomic_fetch_add(&thread_errors, 1);
			freeReplyObject(r);
			if (done)
				break;
			w->retries++;
		}
	}
	redisFree(c);
	return NULL;
}

static void test_watch_multi_exec_16_clients(void **state)
{
	enum { T = 16, N = 100 };
	static worker w[T];
	atomic_store(&thread_errors, 0);
	for (int i = 0; i < T; i++) {
		w[i] = (worker){.n = N};
		assert_int_equal(pthread_create(&w[i].t, NULL, cas_main, &w[i]), 0);
	}
	long retries = 0;
	for (int i = 0; i < T; i++) {
		pthread_join(w[i].t, NULL);
		retries += w[i].retries;
	}
	assert_int_equal(atomic_load(&thread_errors), 0);
	redisContext *c = conn();
	redisReply *r = cmd(c, "HGET cas n");
	assert_int_equal(atoll(r->str), T * N);
	freeReplyObject(r);
	redisFree(c);
	print_message("    16 clients x %d transactions: %ld retries\n", N, retries);
}

/* ---- CTX.* ------------------------------------------------------------------------------------
 */

static void test_ctx_basic(void **state)
{
	if (is_redis)
		skip();
	redisContext *c = conn();
	EXPECT_STATUS(c, "OK", "CTX.CREATE doc title hello body world");
	EXPECT_ERR(c, "CTXEXISTS", "CTX.CREATE doc");
	EXPECT_ERR(c, "ERR wrong number of arguments", "CTX.CREATE doc2 a");
	EXPECT_STATUS(c, "OK", "CTX.CREATE empty");
	EXPECT_INT(c, 1, "CTX.VERSION doc");
	EXPECT_INT(c, 0, "EXISTS empty"); /* no fields: absent to Redis */
	EXPECT_INT(c, 1, "CTX.VERSION empty");

	redisReply *r = cmd(c, "CTX.GET doc");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 14);
	assert_string_equal(r->element[0]->str, "id");
	assert_string_equal(r->element[1]->str, "doc");
	assert_string_equal(r->element[2]->str, "version");
	assert_int_equal(r->element[3]->integer, 1);
	assert_string_equal(r->element[4]->str, "revision");
	assert_string_equal(r->element[6]->str, "created_us");
	assert_true(r->element[7]->integer > 1600000000000000LL);
	assert_string_equal(r->element[8]->str, "updated_us");
	assert_string_equal(r->element[10]->str, "keys");
	assert_int_equal(r->element[11]->integer, 2);
	assert_string_equal(r->element[12]->str, "fields");
	assert_int_equal(r->element[13]->elements, 4);
	freeReplyObject(r);
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.GET nodoc");

	EXPECT_INT(c, 2, "CTX.SET doc title bye");
	EXPECT_INT(c, 3, "CTX.SET doc IFVERSION 2 a 1 b 2");
	EXPECT_ERR(c, "CTXCONFLICT context is at version 3", "CTX.SET doc IFVERSION 2 a 9");
	EXPECT_STATUS(c, "1", "HGET doc a");
	EXPECT_INT(c, 4, "CTX.DEL doc a");
	EXPECT_ERR(c, "CTXCONFLICT context is at version 4", "CTX.DEL doc IFVERSION 1 b");
	EXPECT_INT(c, 5, "CTX.DEL doc IFVERSION 4 b");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.SET nodoc a 1");
	EXPECT_INT(c, 1, "CTX.SET newdoc IFVERSION 0 a 1");
	EXPECT_ERR(c, "CTXCONFLICT context is at version 1", "CTX.SET newdoc IFVERSION 0 a 1");
	EXPECT_ERR(c, "ERR wrong number of arguments", "CTX.SET doc a");

	r = cmd(c, "CTX.GET doc VERSION 1");
	assert_int_equal(r->element[3]->integer, 1);
	freeReplyObject(r);

	r = cmd(c, "CTX.DIFF doc 1 3");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 3); /* a, b added; title changed */
	for (size_t i = 0; i < 3; i++) {
		redisReply *e = r->element[i];
		assert_int_equal(e->elements, 4);
		if (!strcmp(e->element[1]->str, "title")) {
			assert_string_equal(e->element[0]->str, "changed");
			assert_string_equal(e->element[2]->str, "hello");
			assert_string_equal(e->element[3]->str, "bye");
		} else {
			assert_string_equal(e->element[0]->str, "added");
			assert_int_equal(e->element[2]->type, REDIS_REPLY_NIL);
		}
	}
	freeReplyObject(r);

	r = cmd(c, "CTX.HISTORY doc");
	assert_int_equal(r->elements, 5);
	assert_int_equal(r->element[0]->elements, 10);
	assert_string_equal(r->element[0]->element[0]->str, "version");
	assert_int_equal(r->element[0]->element[1]->integer, 1);
	assert_string_equal(r->element[0]->element[8]->str, "pinned");
	freeReplyObject(r);

	/* points and restore */
	EXPECT_INT(c, 5, "CTX.POINT doc LABEL v5");
	EXPECT_INT(c, 6, "CTX.SET doc title third");
	r = cmd(c, "CTX.POINTS doc");
	assert_int_equal(r->elements, 1);
	assert_int_equal(r->element[0]->elements, 12);
	assert_int_equal(r->element[0]->element[1]->integer, 5);
	assert_string_equal(r->element[0]->element[11]->str, "v5");
	freeReplyObject(r);
	EXPECT_INT(c, 7, "CTX.RESTORE doc LABEL v5");
	EXPECT_STATUS(c, "bye", "HGET doc title");
	EXPECT_INT(c, 8, "CTX.RESTORE doc VERSION 6");
	EXPECT_STATUS(c, "third", "HGET doc title");
	EXPECT_INT(c, 9, "CTX.RESTORE doc LATEST");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.RESTORE doc LABEL nolabel");
	EXPECT_ERR(c, "ERR syntax error", "CTX.RESTORE doc SOMETIME");

	/* list */
	r = cmd(c, "CTX.LIST COUNT 2");
	assert_int_equal(r->element[1]->elements, 2);
	assert_string_equal(r->element[1]->element[0]->str, "doc");
	assert_string_equal(r->element[1]->element[1]->str, "empty");
	assert_string_equal(r->element[0]->str, "empty");
	freeReplyObject(r);
	r = cmd(c, "CTX.LIST AFTER empty");
	assert_int_equal(r->element[1]->elements, 1);
	assert_string_equal(r->element[1]->element[0]->str, "newdoc");
	assert_string_equal(r->element[0]->str, "");
	freeReplyObject(r);
	r = cmd(c, "CTX.LIST PREFIX new");
	assert_int_equal(r->element[1]->elements, 1);
	freeReplyObject(r);

	/* the active context */
	EXPECT_NIL(c, "CTX.CURRENT");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.USE nosuch");
	EXPECT_STATUS(c, "OK", "CTX.USE doc");
	EXPECT_STATUS(c, "doc", "CTX.CURRENT");
	EXPECT_STATUS(c, "bye", "HGET . title");
	EXPECT_STATUS(c, "OK", "CTX.USE made CREATE");
	EXPECT_INT(c, 1, "CTX.VERSION made");

	/* drop, expire, stats, verify */
	EXPECT_INT(c, 1, "CTX.DROP newdoc");
	EXPECT_INT(c, 0, "CTX.DROP newdoc");
	EXPECT_INT(c, 1, "CTX.EXPIRE doc 100000");
	EXPECT_INT(c, 0, "CTX.EXPIRE nodoc 100");
	EXPECT_INT(c, 1, "CTX.EXPIRE doc 0");
	r = cmd(c, "CTX.STATS");
	assert_int_equal(r->elements, 12);
	assert_string_equal(r->element[0]->str, "contexts");
	assert_int_equal(r->element[1]->integer, 3);
	assert_string_equal(r->element[4]->str, "durable_revision");
	assert_int_equal(r->element[5]->integer, r->element[3]->integer);
	freeReplyObject(r);
	r = cmd(c, "CTX.VERIFY");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_string_equal(r->element[0]->str, "result");
	assert_string_equal(r->element[1]->str, "ok");
	assert_int_equal(r->element[3]->integer, 0);
	freeReplyObject(r);
	redisFree(c);
}

static void test_ctx_resp3(void **state)
{
	if (is_redis)
		skip();
	rawconn *r = raw_resp3();
	assert_string_equal(raw_cmd(r, "CTX.CREATE", "r3doc", "f", "v", NULL), "+OK\r\n");
	const char *g = raw_cmd(r, "CTX.GET", "r3doc", NULL);
	assert_memory_equal(g, "%7\r\n$2\r\nid\r\n$5\r\nr3doc\r\n$7\r\nversion\r\n:1\r\n", 40);
	assert_non_null(strstr(g, "$6\r\nfields\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n"));
	assert_string_equal(raw_cmd(r, "CTX.CURRENT", NULL), "_\r\n");
	assert_string_equal(raw_cmd(r, "CTX.DIFF", "r3doc", "1", "1", NULL), "*0\r\n");
	assert_string_equal(raw_cmd(r, "CTX.SET", "r3doc", "g", "w", NULL), ":2\r\n");
	assert_string_equal(raw_cmd(r, "CTX.DIFF", "r3doc", "1", "2", NULL),
	                    "*1\r\n*4\r\n$5\r\nadded\r\n$1\r\ng\r\n_\r\n$1\r\nw\r\n");
	assert_string_equal(raw_cmd(r, "CTX.LIST", "PREFIX", "r3", NULL),
	                    "*2\r\n$0\r\n\r\n*1\r\n$5\r\nr3doc\r\n");
	/* a watch: +OK, then push messages */
	assert_string_equal(raw_cmd(r, "CTX.WATCH", "r3doc", NULL), "+OK\r\n");
	redisContext *c = conn();
	EXPECT_INT(c, 3, "CTX.SET r3doc h x");
	redisFree(c);
	const char *ev = raw_next(r);
	assert_memory_equal(ev, ">6\r\n$9\r\nctx.event\r\n$9\r\ncommitted\r\n:", 34);
	assert_non_null(strstr(ev, "$5\r\nr3doc\r\n:3\r\n*1\r\n$1\r\nh\r\n"));
	assert_string_equal(raw_cmd(r, "CTX.UNWATCH", NULL), "+OK\r\n");
	raw_close(r);
}

/* Events as RESP2 arrays; after a reconnect, FROM resumes exactly where the
 * first connection stopped. */
static void test_ctx_watch_resume(void **state)
{
	if (is_redis)
		skip();
	redisContext *w = conn(), *c = conn();
	EXPECT_STATUS(w, "OK", "CTX.WATCH PREFIX wr:");
	EXPECT_STATUS(c, "OK", "CTX.CREATE wr:a");
	for (int i = 1; i <= 5; i++)
		EXPECT_INT(c, i + 1, "CTX.SET wr:a f%d %d", i, i);
	long long last_rev = 0;
	for (int i = 0; i < 6; i++) {
		redisReply *e;
		assert_int_equal(redisGetReply(w, (void **)&e), REDIS_OK);
		assert_int_equal(e->type, REDIS_REPLY_ARRAY);
		assert_int_equal(e->elements, 6);
		assert_string_equal(e->element[0]->str, "ctx.event");
		assert_string_equal(e->element[1]->str, i == 0 ? "created" : "committed");
		assert_true(e->element[2]->integer > last_rev);
		last_rev = e->element[2]->integer;
		assert_string_equal(e->element[3]->str, "wr:a");
		assert_int_equal(e->element[4]->integer, i + 1);
		if (i) {
			assert_int_equal(e->element[5]->elements, 1);
			assert_int_equal(e->element[5]->element[0]->str[1], '0' + i);
		}
		freeReplyObject(e);
	}
	redisFree(w); /* disconnect; changes go on */
	for (int i = 6; i <= 8; i++)
		EXPECT_INT(c, i + 1, "CTX.SET wr:a f%d %d", i, i);
	EXPECT_INT(c, 1, "HSET wr:b x 1");
	EXPECT_INT(c, 1, "CTX.DROP wr:b");
	w = conn();
	EXPECT_STATUS(w, "OK", "CTX.WATCH PREFIX wr: FROM %lld", last_rev + 1);
	const char *kinds[] = {"committed", "committed", "committed", "created", "dropped"};
	for (int i = 0; i < 5; i++) {
		redisReply *e;
		assert_int_equal(redisGetReply(w, (void **)&e), REDIS_OK);
		assert_string_equal(e->element[1]->str, kinds[i]);
		assert_int_equal(e->element[2]->integer, last_rev + 1 + i);
		if (i < 3)
			assert_int_equal(e->element[4]->integer, 7 + i);
		freeReplyObject(e);
	}
	/* RESP2 streaming: other commands refused, UNWATCH allowed */
	EXPECT_ERR(w, "ERR", "HGET wr:a f1");
	EXPECT_STATUS(w, "OK", "CTX.UNWATCH");
	EXPECT_STATUS(w, "1", "HGET wr:a f1");
	redisFree(w);
	redisFree(c);
}

static void test_ctx_tracker(void **state)
{
	if (is_redis)
		skip();
	redisContext *c = conn(), *o = conn();
	EXPECT_ERR(c, "ERR no tracker", "CTX.TSET a 1");
	EXPECT_STATUS(c, "OK", "CTX.CREATE tr a 1 b 1");
	EXPECT_STATUS(c, "OK", "CTX.TRACK tr");
	EXPECT_STATUS(c, "OK", "CTX.TSET a 2");
	EXPECT_STATUS(c, "2", "CTX.TGET a");
	EXPECT_STATUS(c, "1", "HGET tr a"); /* not synced yet */
	EXPECT_STATUS(c, "OK", "CTX.TDEL b");
	EXPECT_NIL(c, "CTX.TGET b");
	EXPECT_INT(c, 2, "CTX.SYNC");
	EXPECT_STATUS(c, "2", "HGET tr a");
	EXPECT_INT(c, 0, "HEXISTS tr b");
	/* manual: a conflict is reported, nothing committed, then resolved */
	EXPECT_STATUS(c, "OK", "CTX.TRACK tr STRATEGY manual");
	EXPECT_STATUS(c, "OK", "CTX.TSET a local");
	EXPECT_INT(o, 3, "CTX.SET tr a current");
	redisReply *r = cmd(c, "CTX.SYNC");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 1);
	redisReply *m = r->element[0];
	assert_int_equal(m->elements, 8);
	assert_string_equal(m->element[0]->str, "field");
	assert_string_equal(m->element[1]->str, "a");
	assert_string_equal(m->element[3]->str, "2");
	assert_string_equal(m->element[5]->str, "local");
	assert_string_equal(m->element[7]->str, "current");
	freeReplyObject(r);
	EXPECT_INT(c, 3, "CTX.VERSION tr");
	EXPECT_ERR(c, "ERR syntax error", "CTX.RESOLVE a BOTH");
	EXPECT_STATUS(c, "OK", "CTX.RESOLVE a LOCAL");
	EXPECT_INT(c, 4, "CTX.SYNC");
	EXPECT_STATUS(c, "local", "HGET tr a");
	EXPECT_STATUS(c, "OK", "CTX.UNTRACK");
	EXPECT_ERR(c, "ERR no tracker", "CTX.SYNC");
	redisFree(c);
	redisFree(o);
}

/* A transaction's commands see its earlier writes, as in Redis. */
static void test_multi_exec_shapes(void **state)
{
	redisContext *c = conn();
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET mx a 1");
	EXPECT_STATUS(c, "QUEUED", "HGET mx a");
	EXPECT_STATUS(c, "QUEUED", "HINCRBY mx a 5");
	EXPECT_STATUS(c, "QUEUED", "HLEN mx");
	EXPECT_STATUS(c, "QUEUED", "HGETALL mx");
	EXPECT_STATUS(c, "QUEUED", "EXISTS mx");
	EXPECT_STATUS(c, "QUEUED", "HDEL mx nope");
	redisReply *r = cmd(c, "EXEC");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 7);
	assert_int_equal(r->element[0]->integer, 1);
	assert_string_equal(r->element[1]->str, "1");
	assert_int_equal(r->element[2]->integer, 6);
	assert_int_equal(r->element[3]->integer, 1);
	assert_int_equal(r->element[4]->elements, 2);
	assert_string_equal(r->element[4]->element[1]->str, "6");
	assert_int_equal(r->element[5]->integer, 1);
	assert_int_equal(r->element[6]->integer, 0);
	freeReplyObject(r);
	EXPECT_STATUS(c, "6", "HGET mx a");
	redisFree(c);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	target_start("test_commands");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_hash_basic, setup),
	    cmocka_unit_test_setup(test_field_repeated_in_one_batch, setup),
	    cmocka_unit_test_setup(test_hset_new_field_count, setup),
	    cmocka_unit_test_setup(test_hset_new_field_count_concurrent, setup),
	    cmocka_unit_test_setup(test_pipeline_group_one_commit, setup),
	    cmocka_unit_test_setup(test_pipeline_group_fallback, setup),
	    cmocka_unit_test_setup(test_pipeline_group_mixed, setup),
	    cmocka_unit_test_setup(test_pipeline_group_empty_request, setup),
	    cmocka_unit_test_setup(test_del_then_write_pipelined, setup),
	    cmocka_unit_test_setup(test_pipeline_group_del_first, setup),
	    cmocka_unit_test_setup(test_hash_empty_is_absent, setup),
	    cmocka_unit_test_setup(test_hincrby, setup),
	    cmocka_unit_test_setup(test_binary_safe, setup),
	    cmocka_unit_test_setup(test_empty_field, setup),
	    cmocka_unit_test_setup(test_hscan_big, setup),
	    cmocka_unit_test_setup(test_hrandfield, setup),
	    cmocka_unit_test_setup(test_resp3_shapes, setup),
	    cmocka_unit_test_setup(test_keyspace, setup),
	    cmocka_unit_test_setup(test_keys_glob, setup),
	    cmocka_unit_test_setup(test_scan_1000, setup),
	    cmocka_unit_test_setup(test_expire, setup),
	    cmocka_unit_test_setup(test_hincrby_64_clients, setup),
	    cmocka_unit_test_setup(test_watch_multi_exec_16_clients, setup),
	    cmocka_unit_test_setup(test_multi_exec_shapes, setup),
	    cmocka_unit_test_setup(test_ctx_basic, setup),
	    cmocka_unit_test_setup(test_ctx_resp3, setup),
	    cmocka_unit_test_setup(test_ctx_watch_resume, setup),
	    cmocka_unit_test_setup(test_ctx_tracker, setup),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	target_stop();
	return failed;
}
