/*
 * test_exec_atomic.c - MULTI/EXEC that deletes a key and writes it again
 * (MULTI; DEL k; HSET k ...; EXEC): all or nothing across a crash, and the
 * same replies as Redis.
 *
 * Before round 6 such an EXEC committed a drop of the context and then a
 * create (two log records, two syncs). A crash between them kept the drop
 * alone: after a restart the key was gone although the EXEC that deleted it
 * also wrote it (Redis with appendfsync always keeps all or nothing of a
 * transaction: redis-check-aof cuts a partial one). Now it is one commit on
 * the existing context that deletes the old fields and puts the new ones.
 *
 * test_crash_mid_exec kills ctxd (SIGKILL) at varied moments while one
 * client streams such transactions, restarts it, and checks that the key is
 * there with all the fields of one transaction, not older than the last one
 * acknowledged. The other tests check the replies reply for reply;
 * CTXD_TEST_REDIS=1 runs those against a real redis-server (the ctx-only
 * parts are skipped then). ctx-only: the context's version goes on (one
 * commit), CTX.WATCH sees one event, a key with an idle ttl (set before a
 * restart too) loses it as in Redis, and MULTI refuses the CTX.* writes
 * that would commit outside the transaction.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* ---- helpers ------------------------------------------------------------------------------- */

/* EXEC's reply: an array of n integers, as want. */
static void expect_exec_ints(redisContext *c, size_t n, const long long *want)
{
	redisReply *r = cmd(c, "EXEC");
	if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
		fail_msg("EXEC: type %d, %zu elements, want an array of %zu (%s)", r->type,
		         r->elements, n, r->str ? r->str : "");
	for (size_t i = 0; i < n; i++) {
		redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_INTEGER || e->integer != want[i])
			fail_msg("EXEC reply %zu: type %d %lld '%s', want :%lld", i, e->type,
			         e->integer, e->str ? e->str : "", want[i]);
	}
	freeReplyObject(r);
}

static void expect_exec_nil(redisContext *c)
{
	redisReply *r = cmd(c, "EXEC");
	if (r->type != REDIS_REPLY_NIL)
		fail_msg("EXEC: type %d, want a null array", r->type);
	freeReplyObject(r);
}

/* HGETALL's reply sorted into "f=v,f=v" (ctxd and Redis list in different
 * orders). */
static char *hgetall_text(redisContext *c, const char *key)
{
	redisReply *r = cmd(c, "HGETALL %s", key);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	size_t n = r->elements / 2;
	char **pairs = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		pairs[i] = malloc(r->element[2 * i]->len + r->element[2 * i + 1]->len + 2);
		sprintf(pairs[i], "%s=%s", r->element[2 * i]->str, r->element[2 * i + 1]->str);
	}
	for (size_t i = 1; i < n; i++) /* insertion sort: a few fields */
		for (size_t j = i; j > 0 && strcmp(pairs[j - 1], pairs[j]) > 0; j--) {
			char *t = pairs[j];
			pairs[j] = pairs[j - 1];
			pairs[j - 1] = t;
		}
	char *out = calloc(1, 4096);
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(out, ",");
		strncat(out, pairs[i], 4000 - strlen(out));
		free(pairs[i]);
	}
	free(pairs);
	freeReplyObject(r);
	return out;
}

static void expect_hash(redisContext *c, const char *key, const char *want)
{
	char *got = hgetall_text(c, key);
	if (strcmp(got, want) != 0)
		fail_msg("HGETALL %s: '%s', want '%s'", key, got, want);
	free(got);
}

/* Whether KEYS * lists key. */
static bool keys_lists(redisContext *c, const char *key)
{
	redisReply *r = cmd(c, "KEYS *");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	bool found = false;
	for (size_t i = 0; i < r->elements; i++)
		found = found || strcmp(r->element[i]->str, key) == 0;
	freeReplyObject(r);
	return found;
}

/* Whether a full SCAN lists key. */
static bool scan_lists(redisContext *c, const char *key)
{
	bool found = false;
	char cursor[64] = "0";
	do {
		redisReply *r = cmd(c, "SCAN %s COUNT 100", cursor);
		assert_int_equal(r->type, REDIS_REPLY_ARRAY);
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++)
			found = found || strcmp(r->element[1]->element[i]->str, key) == 0;
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	return found;
}

/* ---- replies, as Redis gives them ------------------------------------------------------ */

/* DEL of a hash then writes, in one EXEC: the key holds the new fields only;
 * HSET counts its fields as new (the DEL emptied the key). */
static void test_del_then_write(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 3, "HSET dw a 1 b 2 c 3");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL dw");
	EXPECT_STATUS(c, "QUEUED", "HSET dw a 9 d 4");
	EXPECT_STATUS(c, "QUEUED", "HLEN dw");
	EXPECT_STATUS(c, "QUEUED", "HEXISTS dw b");
	expect_exec_ints(c, 4, (long long[]){1, 2, 2, 0});
	expect_hash(c, "dw", "a=9,d=4");
	EXPECT_INT(c, 1, "EXISTS dw");
	EXPECT_STATUS(c, "hash", "TYPE dw");
	EXPECT_INT(c, -1, "TTL dw");
	if (!is_redis) /* one commit on the context, not a drop and a create */
		EXPECT_INT(c, 2, "CTX.VERSION dw");
	redisFree(c);
}

/* A key with a ttl, deleted and written again in one EXEC: the new key has
 * no ttl (Redis: TTL -1). */
static void test_del_then_write_drops_ttl(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET dt a 1");
	EXPECT_INT(c, 1, "EXPIRE dt 1000");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL dt");
	EXPECT_STATUS(c, "QUEUED", "HSET dt b 2");
	expect_exec_ints(c, 2, (long long[]){1, 1});
	expect_hash(c, "dt", "b=2");
	EXPECT_INT(c, -1, "TTL dt");
	if (!is_redis) { /* the ttl'd key was dropped and created; others not */
		EXPECT_INT(c, 1, "CTX.VERSION dt");
		EXPECT_INT(c, 1, "HSET dn a 1");
		EXPECT_STATUS(c, "OK", "MULTI");
		EXPECT_STATUS(c, "QUEUED", "DEL dn");
		EXPECT_STATUS(c, "QUEUED", "HSET dn b 2");
		expect_exec_ints(c, 2, (long long[]){1, 1});
		EXPECT_INT(c, 2, "CTX.VERSION dn");
		EXPECT_INT(c, -1, "TTL dn");
	}
	redisFree(c);
}

/* A ttl set before a restart: the first DEL + write after it still drops
 * the ttl (ctxd looks each context's ttl up as the EXEC commits). */
static void test_ttl_from_before_restart(void **state)
{
	(void)state;
	if (is_redis)
		skip();
	su_server *s = own = su_start("exec_atomic_ttl", NULL);
	redisContext *c = hconn(s);
	EXPECT_INT(c, 1, "HSET tr a 1");
	EXPECT_INT(c, 1, "HSET tn a 1");
	EXPECT_INT(c, 1, "EXPIRE tr 1000");
	redisFree(c);
	assert_int_equal(su_stop(s), 0);
	su_restart(s, NULL);
	c = hconn(s);
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL tr");
	EXPECT_STATUS(c, "QUEUED", "HSET tr b 2");
	expect_exec_ints(c, 2, (long long[]){1, 1});
	EXPECT_INT(c, -1, "TTL tr");
	expect_hash(c, "tr", "b=2");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL tn");
	EXPECT_STATUS(c, "QUEUED", "HSET tn b 2");
	expect_exec_ints(c, 2, (long long[]){1, 1});
	EXPECT_INT(c, 2, "CTX.VERSION tn");
	redisFree(c);
}

/* DEL of a missing key, then a write: DEL says 0, the key is created. */
static void test_del_missing_then_write(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL dm");
	EXPECT_STATUS(c, "QUEUED", "HSET dm f v");
	expect_exec_ints(c, 2, (long long[]){0, 1});
	expect_hash(c, "dm", "f=v");
	if (!is_redis)
		EXPECT_INT(c, 1, "CTX.VERSION dm");
	redisFree(c);
}

/* DEL, a write, then HDEL of every field: the key does not exist afterwards
 * for EXISTS, TYPE, TTL, HLEN, KEYS and SCAN (ctxd keeps an empty context,
 * which Redis commands treat as absent). Then written again: it exists. */
static void test_del_write_then_empty(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 2, "HSET de a 1 b 2");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL de");
	EXPECT_STATUS(c, "QUEUED", "HSET de x 1");
	EXPECT_STATUS(c, "QUEUED", "HDEL de x a");
	EXPECT_STATUS(c, "QUEUED", "EXISTS de");
	expect_exec_ints(c, 4, (long long[]){1, 1, 1, 0});
	EXPECT_INT(c, 0, "EXISTS de");
	EXPECT_STATUS(c, "none", "TYPE de");
	EXPECT_INT(c, -2, "TTL de");
	EXPECT_INT(c, 0, "HLEN de");
	assert_false(keys_lists(c, "de"));
	assert_false(scan_lists(c, "de"));
	EXPECT_INT(c, 0, "DEL de");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL de");
	EXPECT_STATUS(c, "QUEUED", "HSET de y 2");
	expect_exec_ints(c, 2, (long long[]){0, 1});
	expect_hash(c, "de", "y=2");
	assert_true(keys_lists(c, "de"));
	assert_true(scan_lists(c, "de"));
	redisFree(c);
}

/* A DEL as the last command after writes: the key is gone. Two DELs around
 * a write: the second one counts the key the write made. */
static void test_write_then_del(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET wd a 1");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET wd b 2");
	EXPECT_STATUS(c, "QUEUED", "DEL wd");
	expect_exec_ints(c, 2, (long long[]){1, 1});
	EXPECT_INT(c, 0, "EXISTS wd");
	EXPECT_INT(c, 1, "HSET wd a 1");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL wd");
	EXPECT_STATUS(c, "QUEUED", "HSET wd c 3");
	EXPECT_STATUS(c, "QUEUED", "DEL wd");
	EXPECT_STATUS(c, "QUEUED", "HSETNX wd c 4");
	expect_exec_ints(c, 4, (long long[]){1, 1, 1, 1});
	expect_hash(c, "wd", "c=4");
	redisFree(c);
}

/* SET over a hash: Redis replaces the hash with a string. ctxd has hashes
 * only: SET is refused with WRONGTYPE, and inside EXEC that error alone is
 * the reply and nothing of the transaction applies (docs/protocol.md). */
static void test_set_over_hash(void **state)
{
	(void)state;
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET sh a 1");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL sh");
	EXPECT_STATUS(c, "QUEUED", "SET sh v");
	redisReply *r = cmd(c, "EXEC");
	if (is_redis) {
		assert_int_equal(r->type, REDIS_REPLY_ARRAY);
		assert_int_equal(r->elements, 2);
		EXPECT_STATUS(c, "string", "TYPE sh");
	} else {
		assert_int_equal(r->type, REDIS_REPLY_ERROR);
		assert_true(strncmp(r->str, "WRONGTYPE", 9) == 0);
		expect_hash(c, "sh", "a=1"); /* the DEL did not apply either */
	}
	freeReplyObject(r);
	redisFree(c);
}

/* WATCH, then another client's DEL + HSET in one EXEC that leaves the very
 * same fields: the key was touched, so the watching EXEC fails (null). */
static void test_watch_sees_del_write(void **state)
{
	(void)state;
	redisContext *c = conn(), *o = conn();
	EXPECT_INT(c, 1, "HSET ww a 1");
	EXPECT_STATUS(c, "OK", "WATCH ww");
	EXPECT_STATUS(o, "OK", "MULTI");
	EXPECT_STATUS(o, "QUEUED", "DEL ww");
	EXPECT_STATUS(o, "QUEUED", "HSET ww a 1");
	expect_exec_ints(o, 2, (long long[]){1, 1});
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "HSET ww b 2");
	expect_exec_nil(c);
	expect_hash(c, "ww", "a=1");
	/* WATCH of a missing key, created by another client's DEL + HSET */
	EXPECT_STATUS(c, "OK", "WATCH wm");
	EXPECT_STATUS(o, "OK", "MULTI");
	EXPECT_STATUS(o, "QUEUED", "DEL wm");
	EXPECT_STATUS(o, "QUEUED", "HSET wm a 1");
	expect_exec_ints(o, 2, (long long[]){0, 1});
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL wm");
	EXPECT_STATUS(c, "QUEUED", "HSET wm z 9");
	expect_exec_nil(c);
	expect_hash(c, "wm", "a=1");
	redisFree(o);
	redisFree(c);
}

/* WATCH of the key the transaction itself deletes and writes: it applies,
 * and the WATCH ends with the EXEC (a later EXEC is not affected). */
static void test_watch_own_del_write(void **state)
{
	(void)state;
	redisContext *c = conn(), *o = conn();
	EXPECT_INT(c, 2, "HSET wo a 1 b 2");
	EXPECT_STATUS(c, "OK", "WATCH wo");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL wo");
	EXPECT_STATUS(c, "QUEUED", "HSET wo c 3");
	expect_exec_ints(c, 2, (long long[]){1, 1});
	expect_hash(c, "wo", "c=3");
	EXPECT_INT(o, 1, "HSET wo d 4"); /* after the EXEC: watches are gone */
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL wo");
	EXPECT_STATUS(c, "QUEUED", "HSET wo e 5");
	expect_exec_ints(c, 2, (long long[]){1, 1});
	expect_hash(c, "wo", "e=5");
	redisFree(o);
	redisFree(c);
}

/* CTX.WATCH sees such an EXEC as one change of the context, naming the old
 * fields and the new (it saw a drop, then a create). */
static void test_ctx_watch_sees_one_change(void **state)
{
	(void)state;
	if (is_redis)
		skip();
	redisContext *c = conn();
	EXPECT_INT(c, 2, "HSET cw a 1 b 2");
	rawconn *w = raw_open(&target);
	raw_expect(w, "*2\r\n$9\r\nCTX.WATCH\r\n$2\r\ncw\r\n", "+OK");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL cw");
	EXPECT_STATUS(c, "QUEUED", "HSET cw c 3");
	expect_exec_ints(c, 2, (long long[]){1, 1});
	/* [ctx.event, committed, revision, id, version 2, [a, b, c] in some order] */
	const char *head = "*6\r\n$9\r\nctx.event\r\n$9\r\ncommitted\r\n:";
	const char *mid = "\r\n$2\r\ncw\r\n:2\r\n*3\r\n";
	const char *got = raw_next(w);
	const char *fields = strstr(got, mid);
	if (strncmp(got, head, strlen(head)) != 0 || !fields)
		fail_msg("event '%s'", got);
	fields += strlen(mid);
	assert_int_equal(strlen(fields), 3 * strlen("$1\r\na\r\n"));
	assert_non_null(strstr(fields, "$1\r\na\r\n"));
	assert_non_null(strstr(fields, "$1\r\nb\r\n"));
	assert_non_null(strstr(fields, "$1\r\nc\r\n"));
	raw_close(w);
	redisFree(c);
}

/* CTX.CREATE, CTX.SET, CTX.DEL and CTX.DROP commit on their own, not
 * through the transaction's batch: queued, they escaped EXEC's one commit
 * (CTX.SET applied although a later command's error made EXEC apply
 * nothing; CTX.DROP dropped at once, the batch conflicted and its retry
 * created the context again). MULTI refuses them: EXECABORT, nothing runs. */
static void test_ctx_writes_refused_in_multi(void **state)
{
	(void)state;
	if (is_redis)
		skip();
	redisContext *c = conn();
	EXPECT_INT(c, 1, "HSET cm a 1");
	const char *writes[] = {"CTX.SET cm b 2", "CTX.DEL cm a", "CTX.DROP cm",
	                        "CTX.CREATE cm2 a 1"};
	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		EXPECT_STATUS(c, "OK", "MULTI");
		EXPECT_STATUS(c, "QUEUED", "HSET cm c 3");
		EXPECT_ERR(c, "ERR Command not allowed inside a transaction", writes[i]);
		EXPECT_ERR(c, "EXECABORT", "EXEC");
	}
	expect_hash(c, "cm", "a=1");
	EXPECT_INT(c, 1, "CTX.VERSION cm");
	EXPECT_INT(c, 0, "EXISTS cm2");
	redisFree(c);
}

/* ---- a crash in the middle --------------------------------------------------------------------
 */

#define CRASH_ROUNDS 24
#define CRASH_TXNS   2000 /* transactions sent per round, pipelined */

/* "*N\r\n$len\r\narg..." for a NULL-terminated list of arguments. */
static size_t resp_args(char *out, size_t cap, const char *const *argv)
{
	size_t argc = 0, n;
	while (argv[argc])
		argc++;
	n = (size_t)snprintf(out, cap, "*%zu\r\n", argc);
	for (size_t i = 0; i < argc; i++)
		n += (size_t)snprintf(out + n, cap - n, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
	return n;
}

/* One transaction: MULTI; DEL ck; HSET ck a N b N; EXEC. */
static size_t crash_txn(char *out, size_t cap, long seq)
{
	char v[32];
	snprintf(v, sizeof(v), "%ld", seq);
	size_t n = resp_args(out, cap, (const char *const[]){"MULTI", NULL});
	n += resp_args(out + n, cap - n, (const char *const[]){"DEL", "ck", NULL});
	n += resp_args(out + n, cap - n, (const char *const[]){"HSET", "ck", "a", v, "b", v, NULL});
	n += resp_args(out + n, cap - n, (const char *const[]){"EXEC", NULL});
	return n;
}

typedef struct sender {
	int fd;
	char *buf;
	size_t n;
} sender;

static void *send_all(void *arg)
{
	sender *sd = arg;
	su_send(sd->fd, sd->buf, sd->n); /* fails once the server is killed */
	return NULL;
}

/* Send CRASH_TXNS transactions from a thread, kill ctxd after delay_us,
 * then read the replies it sent before dying; returns the last sequence
 * number acknowledged (0 = none). */
static long crash_stream(su_server *s, long first, useconds_t delay_us)
{
	rawconn *r = raw_open(s);
	size_t cap = (size_t)CRASH_TXNS * 160, n = 0;
	char *buf = malloc(cap);
	for (long i = 0; i < CRASH_TXNS; i++)
		n += crash_txn(buf + n, cap - n, first + i);
	sender sd = {r->fd, buf, n};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, send_all, &sd), 0);
	usleep(delay_us);
	su_kill9(s);
	pthread_join(t, NULL);
	free(buf);
	long last = 0;
	for (long i = 0; i < CRASH_TXNS;) {
		const char *rep = raw_try_next(r, 2000);
		if (!rep)
			break;
		if (rep[0] == '*') { /* EXEC's reply */
			assert_true(rep[1] == '2');
			last = first + i;
			i++;
		}
	}
	raw_close(r);
	return last;
}

/* Kill ctxd at varied moments while one client streams DEL + HSET
 * transactions, restart it, and look at the key: it must exist with the two
 * fields of one transaction, at or after the last one acknowledged. Before
 * the change, a kill between the drop's record and the create's left the
 * key missing. */
static void test_crash_mid_exec(void **state)
{
	(void)state;
	if (is_redis)
		skip();
	su_server *s = own = su_start("exec_atomic_crash", NULL);
	redisContext *c = hconn(s);
	EXPECT_INT(c, 2, "HSET ck a 0 b 0");
	redisFree(c);
	long seq = 1;
	int missing = 0, torn = 0, with_acks = 0;
	for (int round = 0; round < CRASH_ROUNDS; round++) {
		/* the kill comes 1 to 70 ms into the stream, at varied points of
		 * a transaction */
		long acked = crash_stream(s, seq, (useconds_t)(1000 + round * 3000));
		with_acks += acked > 0;
		su_restart(s, NULL);
		c = hconn(s);
		redisReply *a = cmd(c, "HGET ck a"), *b = cmd(c, "HGET ck b");
		if (a->type == REDIS_REPLY_NIL || b->type == REDIS_REPLY_NIL) {
			missing++;
			fprintf(stderr, "round %d: key missing after the crash (last acked %ld)\n",
			        round, acked);
			EXPECT_INT(c, 2, "HSET ck a 0 b 0");
		} else {
			long va = atol(a->str), vb = atol(b->str);
			torn += va != vb;
			if (va < acked)
				fail_msg("round %d: a = %ld, but %ld was acknowledged", round, va,
				         acked);
		}
		freeReplyObject(a);
		freeReplyObject(b);
		redisFree(c);
		seq += CRASH_TXNS;
	}
	fprintf(stderr, "crash rounds: %d, with acknowledged transactions: %d, key missing: %d\n",
	        CRASH_ROUNDS, with_acks, missing);
	assert_int_equal(torn, 0);
	if (missing)
		fail_msg("%d of %d crashes kept a DEL without the HSET of its EXEC", missing,
		         CRASH_ROUNDS);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	target_start("test_exec_atomic");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_del_then_write, setup),
	    cmocka_unit_test_setup(test_del_missing_then_write, setup),
	    cmocka_unit_test_setup(test_del_write_then_empty, setup),
	    cmocka_unit_test_setup(test_write_then_del, setup),
	    cmocka_unit_test_setup(test_set_over_hash, setup),
	    cmocka_unit_test_setup(test_watch_sees_del_write, setup),
	    cmocka_unit_test_setup(test_watch_own_del_write, setup),
	    /* last: once a ttl was set, ctxd commits DEL + write as before */
	    cmocka_unit_test_setup(test_del_then_write_drops_ttl, setup),
	    cmocka_unit_test_setup(test_ctx_watch_sees_one_change, setup),
	    cmocka_unit_test_setup(test_ctx_writes_refused_in_multi, setup),
	    cmocka_unit_test_teardown(test_ttl_from_before_restart, free_own),
	    cmocka_unit_test_teardown(test_crash_mid_exec, free_own),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	target_stop();
	return failed;
}
