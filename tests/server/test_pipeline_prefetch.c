/*
 * test_pipeline_prefetch.c - pipelined reads and writes of many keys, the
 * shapes that ctxd's read path hands to ctx_prefetch (net.c, prefetch_keys)
 * and that its write batch commits from the version it read
 * (ctx_txn_begin_state, multi.c).
 *
 * The prefetch scans the requests of one read ahead of the parser; it must
 * change no reply: whatever the read holds (many keys, a key too long for
 * an id, an inline command, a request cut at the end of the read, a key
 * dropped and written again within the pipeline), the replies are the
 * ones each request gets alone, in order. The write batch's transaction is
 * bound to the context version the command read: pipelined counters from
 * two connections on the same keys (conflicts, retries, groups) add up
 * exactly, and a key dropped and created again between two pipelines is
 * written as the new key. The input of all the reads of one poll phase runs
 * in the check phase, after one prefetch of all their keys: many
 * connections with one request each are answered each its own reply, and
 * requests followed by the end of the stream are all answered first. Invariants only: no timing, no
 * counts that depend on the machine's speed.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "ctx.h"
#include "serverutil.h"
#include "suclient.h"

static su_server *srv_;

/* An output buffer of RESP requests. */
typedef struct out {
	char *p;
	size_t n, cap;
} out;

static void add(out *o, const char *s, size_t n)
{
	if (o->n + n > o->cap) {
		o->cap = (o->n + n) * 2;
		o->p = realloc(o->p, o->cap);
		assert_non_null(o->p);
	}
	memcpy(o->p + o->n, s, n);
	o->n += n;
}

/* One multibulk request of argc NUL-terminated arguments. */
static void req(out *o, int argc, ...)
{
	char h[32];
	int k = snprintf(h, sizeof(h), "*%d\r\n", argc);
	add(o, h, (size_t)k);
	va_list ap;
	va_start(ap, argc);
	for (int i = 0; i < argc; i++) {
		const char *a = va_arg(ap, const char *);
		k = snprintf(h, sizeof(h), "$%zu\r\n", strlen(a));
		add(o, h, (size_t)k);
		add(o, a, strlen(a));
		add(o, "\r\n", 2);
	}
	va_end(ap);
}

static void expect(rawconn *r, const char *want)
{
	const char *got = raw_next(r);
	if (strcmp(got, want) != 0)
		fail_msg("got '%.200s', want '%s'", got, want);
}

static void expect_bulk(rawconn *r, const char *v)
{
	char want[128];
	snprintf(want, sizeof(want), "$%zu\r\n%s\r\n", strlen(v), v);
	expect(r, want);
}

/* 200 requests on 100 keys in one send: every write, then every read. */
static void test_many_keys_one_read(void **unused)
{
	(void)unused;
	rawconn *r = raw_open(srv_);
	out o = {0};
	char k[32], v[32];
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "pk:%d", i);
		snprintf(v, sizeof(v), "v%d", i);
		req(&o, 4, "HSET", k, "f", v);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "pk:%d", i);
		req(&o, 3, "HGET", k, "f");
	}
	req(&o, 3, "HGET", "pk:absent", "f");
	assert_true(su_send(r->fd, o.p, o.n));
	for (int i = 0; i < 100; i++)
		expect(r, ":1\r\n");
	for (int i = 0; i < 100; i++) {
		snprintf(v, sizeof(v), "v%d", i);
		expect_bulk(r, v);
	}
	expect(r, "$-1\r\n");
	free(o.p);
	raw_close(r);
}

/* What the scan must step over or stop at: a key longer than any id, an
 * inline command, an empty key, a request cut at the end of the send. */
static void test_odd_requests(void **unused)
{
	(void)unused;
	rawconn *r = raw_open(srv_);
	out o = {0};
	char longkey[CTX_ID_MAX + 2];
	memset(longkey, 'L', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	req(&o, 4, "HSET", "odd:1", "f", "1");
	req(&o, 4, "HSET", longkey, "f", "1");
	add(&o, "PING\r\n", 6);
	req(&o, 4, "HSET", "odd:2", "f", "2");
	req(&o, 1, "PING");
	req(&o, 3, "HGET", "", "f");
	req(&o, 3, "HGET", "odd:1", "f");
	size_t cut = o.n;
	req(&o, 3, "HGET", "odd:2", "f");
	assert_true(su_send(r->fd, o.p, cut + 7)); /* "*3\r\n$4\r\nH": cut inside */
	expect(r, ":1\r\n");
	const char *e = raw_next(r);
	if (e[0] != '-')
		fail_msg("a key of %zu bytes: got '%.100s', want an error", strlen(longkey), e);
	expect(r, "+PONG\r\n");
	expect(r, ":1\r\n");
	expect(r, "+PONG\r\n");
	e = raw_next(r); /* the empty key: an error or nil, never a crash */
	assert_true(e[0] == '-' || strcmp(e, "$-1\r\n") == 0);
	expect_bulk(r, "1");
	assert_true(su_send(r->fd, o.p + cut + 7, o.n - cut - 7));
	expect_bulk(r, "2");
	free(o.p);
	raw_close(r);
}

/* A key written, dropped and written again inside one pipeline, and a key
 * dropped and created again between two pipelines (the batch of the second
 * starts from the new context). */
static void test_drop_and_write_again(void **unused)
{
	(void)unused;
	rawconn *r = raw_open(srv_);
	out o = {0};
	req(&o, 4, "HSET", "dw", "f", "1");
	req(&o, 2, "DEL", "dw");
	req(&o, 4, "HSET", "dw", "g", "2");
	req(&o, 3, "HGET", "dw", "f");
	req(&o, 3, "HGET", "dw", "g");
	req(&o, 2, "HLEN", "dw");
	assert_true(su_send(r->fd, o.p, o.n));
	expect(r, ":1\r\n");
	expect(r, ":1\r\n");
	expect(r, ":1\r\n");
	expect(r, "$-1\r\n");
	expect_bulk(r, "2");
	expect(r, ":1\r\n");
	o.n = 0;
	req(&o, 2, "DEL", "dw");
	req(&o, 4, "HSET", "dw", "h", "3");
	req(&o, 4, "HSET", "dw", "i", "4");
	req(&o, 4, "HINCRBY", "dw", "n", "5");
	req(&o, 2, "HLEN", "dw");
	req(&o, 3, "HGET", "dw", "g");
	assert_true(su_send(r->fd, o.p, o.n));
	expect(r, ":1\r\n");
	expect(r, ":1\r\n");
	expect(r, ":1\r\n");
	expect(r, ":5\r\n");
	expect(r, ":3\r\n");
	expect(r, "$-1\r\n");
	free(o.p);
	raw_close(r);
}

/* Requests and the end of the stream in one send: every request is
 * answered before the server closes (the read's input runs before the end
 * of stream is handled, although input normally waits for the check
 * phase). libuv mostly sees the end in a later poll phase (a read that
 * does not fill its buffer ends the phase's reads of the socket), so this
 * guards the common order; the same phase needs a read that fills its
 * buffer exactly. */
static void test_input_then_eof(void **unused)
{
	(void)unused;
	for (int round = 0; round < 20; round++) {
		rawconn *r = raw_open(srv_);
		out o = {0};
		req(&o, 1, "PING");
		req(&o, 4, "HSET", "eof:k", "f", "v");
		req(&o, 3, "HGET", "eof:k", "f");
		add(&o, "PING\r\n", 6);
		assert_true(su_send(r->fd, o.p, o.n));
		shutdown(r->fd, SHUT_WR);
		expect(r, "+PONG\r\n");
		const char *got = raw_next(r);
		assert_true(strcmp(got, ":1\r\n") == 0 || strcmp(got, ":0\r\n") == 0);
		expect_bulk(r, "v");
		expect(r, "+PONG\r\n");
		assert_true(su_wait_closed(r->fd, 20000));
		free(o.p);
		raw_close(r);
	}
}

/* Many connections, one request each, sent before any reply is read: the
 * server runs them together (one poll phase's reads, their keys prefetched
 * at once); each gets its own reply. Among them a key too long for an id,
 * an inline command, a request in two pieces, and a connection reset right
 * after its request. */
enum { CONNS = 40 };

static void test_many_connections_one_request(void **unused)
{
	(void)unused;
	for (int round = 0; round < 5; round++) {
		rawconn *r[CONNS];
		out o[CONNS];
		char k[32], v[32];
		char longkey[CTX_ID_MAX + 2];
		memset(longkey, 'L', sizeof(longkey) - 1);
		longkey[sizeof(longkey) - 1] = '\0';
		for (int i = 0; i < CONNS; i++) {
			r[i] = raw_open(srv_);
			o[i] = (out){0};
			snprintf(k, sizeof(k), "mc:%d", i);
			snprintf(v, sizeof(v), "r%dv%d", round, i);
			if (i == 5)
				req(&o[i], 4, "HSET", longkey, "f", "1");
			else if (i == 6)
				add(&o[i], "PING\r\n", 6);
			else
				req(&o[i], 4, "HSET", k, "f", v);
		}
		for (int i = 0; i < CONNS; i++) /* request 7 in two pieces */
			assert_true(su_send(r[i]->fd, o[i].p, i == 7 ? 5 : o[i].n));
		struct linger l = {1, 0};
		setsockopt(r[8]->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		close(r[8]->fd);
		r[8]->fd = -1;
		assert_true(su_send(r[7]->fd, o[7].p + 5, o[7].n - 5));
		for (int i = 0; i < CONNS; i++) {
			if (i == 8)
				continue;
			const char *got = raw_next(r[i]);
			if (i == 5)
				assert_int_equal(got[0], '-');
			else if (i == 6)
				assert_string_equal(got, "+PONG\r\n");
			else
				assert_true(strcmp(got, ":1\r\n") == 0 ||
				            strcmp(got, ":0\r\n") == 0);
		}
		for (int i = 0; i < CONNS; i++) { /* each read its own write back */
			if (i == 5 || i == 6 || i == 8)
				continue;
			snprintf(k, sizeof(k), "mc:%d", i);
			snprintf(v, sizeof(v), "r%dv%d", round, i);
			o[i].n = 0;
			req(&o[i], 3, "HGET", k, "f");
			assert_true(su_send(r[i]->fd, o[i].p, o[i].n));
		}
		for (int i = 0; i < CONNS; i++) {
			if (i != 5 && i != 6 && i != 8) {
				snprintf(v, sizeof(v), "r%dv%d", round, i);
				expect_bulk(r[i], v);
			}
			free(o[i].p);
			if (r[i]->fd < 0)
				free(r[i]);
			else
				raw_close(r[i]);
		}
	}
}

enum { KEYS = 8, ROUNDS = 150, DEPTH = 16 };

/* Pipelines of DEPTH HINCRBY by 1 over KEYS keys, ROUNDS times (hiredis:
 * one context per thread; cmocka's asserts stay in the main thread). */
static void *incr_client(void *arg)
{
	(void)arg;
	long bad = 0;
	redisContext *c = redisConnect("127.0.0.1", srv_->port);
	if (!c || c->err) {
		redisFree(c);
		return (void *)1L;
	}
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < DEPTH; i++)
			redisAppendCommand(c, "HINCRBY cnt:%d n 1", (round + i) % KEYS);
		for (int i = 0; i < DEPTH; i++) {
			redisReply *r = NULL;
			if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
				redisFree(c);
				return (void *)(bad + 1);
			}
			bad += r->type != REDIS_REPLY_INTEGER;
			freeReplyObject(r);
		}
	}
	redisFree(c);
	return (void *)bad;
}

/* Two connections (spread over ctxd's loops) increment the same counters:
 * conflicts are run again, never lost or applied twice. */
static void test_counters_add_up(void **unused)
{
	(void)unused;
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, incr_client, NULL), 0);
	for (int i = 0; i < 2; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		assert_int_equal((long)bad, 0);
	}
	redisContext *c = hconn(srv_);
	long long sum = 0;
	for (int i = 0; i < KEYS; i++) {
		redisReply *r = cmd(c, "HGET cnt:%d n", i);
		assert_int_equal(r->type, REDIS_REPLY_STRING);
		sum += atoll(r->str);
		freeReplyObject(r);
	}
	assert_int_equal(sum, 2LL * ROUNDS * DEPTH);
	redisFree(c);
}

static int setup(void **state)
{
	(void)state;
	srv_ = su_start("pipeline_prefetch", NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	su_free(srv_);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_many_keys_one_read),
	    cmocka_unit_test(test_odd_requests),
	    cmocka_unit_test(test_drop_and_write_again),
	    cmocka_unit_test(test_counters_add_up),
	    cmocka_unit_test(test_input_then_eof),
	    cmocka_unit_test(test_many_connections_one_request),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
