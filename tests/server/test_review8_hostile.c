/*
 * test_review8_hostile.c - round 8 review: ctxd's round 7 input path
 * (the check phase runs the input of a poll phase's reads after one
 * ctx_prefetch of the keys a light scan of their multibulk headers finds;
 * input read before an end of stream runs first) against hostile clients.
 * Every case ends with the server alive, other clients answered, and the
 * data written before intact:
 *   - a client that sends writes and half-closes (shutdown SHUT_WR): every
 *     reply arrives (after its fsync), then the server closes;
 *   - a client that pipelines writes and resets the connection before any
 *     reply: the server carries on; what it applied is whole, and survives
 *     a clean restart exactly;
 *   - pipelines whose keys the prefetch scan must pass over: empty, 256 and
 *     257 bytes, 100 KB (past any id), binary with NUL and CR LF inside
 *     (one reply each, in order; a valid key its Redis answer),
 *     interleaved on other connections with headers the scan must not trust
 *     ("*0", "*-1", "$-1", "$99999999999", "*1048577", digits without CR
 *     LF): each request its Redis answer or an error, each bad header a
 *     protocol error and a close;
 *   - many clients each sending one request per read at once (the poll
 *     phase's reads prefetched together), some of them closing in the same
 *     poll phase: every open one gets exactly its own reply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serverutil.h"

#include "suclient.h"

SU_GROUP_SERVER("review8-hostile")

static void ping_ok(void)
{
	redisContext *c = hconn(srv);
	redisReply *r = cmd(c, "PING");
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	assert_string_equal(r->str, "PONG");
	freeReplyObject(r);
	redisFree(c);
}

/* "*4 HSET key f<i> v<i>" in RESP. */
static size_t hset_req(char *b, const char *key, int i)
{
	char f[16], v[16];
	int fn = snprintf(f, sizeof(f), "f%d", i), vn = snprintf(v, sizeof(v), "v%d", i);
	return (size_t)sprintf(b, "*4\r\n$4\r\nHSET\r\n$%zu\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n",
	                       strlen(key), key, fn, f, vn, v);
}

static void test_half_close_gets_every_reply(void **state)
{
	(void)state;
	enum { N = 50 };
	char *buf = malloc(N * 64);
	size_t n = 0;
	for (int i = 0; i < N; i++)
		n += hset_req(buf + n, "hc", i);
	rawconn *r = raw_open(srv);
	assert_true(su_send(r->fd, buf, n));
	shutdown(r->fd, SHUT_WR);
	for (int i = 0; i < N; i++)
		raw_expect(r, NULL, ":1");
	assert_null(raw_try_next(r, 20000)); /* then the server closes */
	raw_close(r);
	free(buf);
	redisContext *c = hconn(srv);
	EXPECT_INT(c, N, "HLEN hc");
	redisFree(c);
}

/* Each field present holds its own value; the count. */
static long long check_whole(redisContext *c, const char *key)
{
	redisReply *r = cmd(c, "HGETALL %s", key);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	for (size_t e = 0; e + 1 < r->elements; e += 2) {
		assert_true(r->element[e]->str[0] == 'f');
		assert_true(r->element[e + 1]->str[0] == 'v');
		assert_string_equal(r->element[e]->str + 1, r->element[e + 1]->str + 1);
	}
	long long n = (long long)r->elements / 2;
	freeReplyObject(r);
	return n;
}

static void test_reset_with_parked_replies(void **state)
{
	(void)state;
	enum { N = 400 };
	char *buf = malloc(N * 64);
	size_t n = 0;
	for (int i = 0; i < N; i++)
		n += hset_req(buf + n, "rst", i);
	for (int round = 0; round < 5; round++) {
		int fd = su_connect(srv);
		assert_true(fd >= 0);
		assert_true(su_send(fd, buf, n));
		struct linger lg = {1, 0}; /* close sends a reset */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	free(buf);
	ping_ok();
	redisContext *c = hconn(srv);
	long long before = check_whole(c, "rst");
	assert_true(before >= 0 && before <= N);
	redisFree(c);
	/* A clean restart keeps what was applied (input the server had read
	 * may still have been running on another loop when it was counted:
	 * at least as much), and a second one exactly that. */
	assert_int_equal(su_stop(srv), 0);
	su_restart(srv, NULL);
	c = hconn(srv);
	long long after = check_whole(c, "rst");
	assert_true(after >= before && after <= N);
	redisFree(c);
	assert_int_equal(su_stop(srv), 0);
	su_restart(srv, NULL);
	c = hconn(srv);
	assert_int_equal(check_whole(c, "rst"), after);
	redisFree(c);
}

/* A request of argc arguments, each given as (pointer, length). */
static size_t resp_req(char *b, int argc, const char *const *argv, const size_t *lens)
{
	size_t n = (size_t)sprintf(b, "*%d\r\n", argc);
	for (int i = 0; i < argc; i++) {
		n += (size_t)sprintf(b + n, "$%zu\r\n", lens[i]);
		memcpy(b + n, argv[i], lens[i]);
		n += lens[i];
		memcpy(b + n, "\r\n", 2);
		n += 2;
	}
	return n;
}

static void test_prefetch_scan_hostile_keys(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_INT(c, 1, "HSET keep f v");
	redisFree(c);
	/* Keys the scan hands to ctx_prefetch (or passes over). */
	static char k256[256], k257[257], kbig[100000];
	memset(k256, 'a', sizeof(k256));
	memset(k257, 'b', sizeof(k257));
	memset(kbig, 'c', sizeof(kbig));
	static const char bin[] = {'x', 0, '\r', '\n', '*', '2', '\r', '\n', 0x7f};
	struct {
		const char *k;
		size_t n;
		const char *want; /* reply prefix to HSET k f v ("": any one reply;
		                     keys that are no context id are ctxd's to refuse) */
	} keys[] = {
	    {"", 0, ""},
	    {k256, sizeof(k256), ":"},
	    {k257, sizeof(k257), ""},
	    {kbig, sizeof(kbig), ""},
	    {bin, sizeof(bin), ""},
	    {"keep", 4, ":0"},
	};
	enum { NK = sizeof(keys) / sizeof(keys[0]) };
	char *buf = malloc(NK * 4 * 110000);
	size_t n = 0;
	for (int rep = 0; rep < 4; rep++)
		for (int i = 0; i < NK; i++) {
			const char *argv[] = {"HSET", keys[i].k, "f", "v"};
			size_t lens[] = {4, keys[i].n, 1, 1};
			n += resp_req(buf + n, 4, argv, lens);
		}
	rawconn *r = raw_open(srv);
	assert_true(su_send(r->fd, buf, n));
	for (int rep = 0; rep < 4; rep++)
		for (int i = 0; i < NK; i++) {
			const char *got = raw_next(r);
			/* the first HSET of a new key adds a field; later ones not */
			const char *want = keys[i].want;
			if (strcmp(want, ":") == 0 && rep > 0)
				want = ":0";
			if (strncmp(got, want, strlen(want)) != 0)
				fail_msg("key %d (%zu bytes) rep %d: got '%.80s', want '%s'", i,
				         keys[i].n, rep, got, want);
		}
	raw_close(r);
	free(buf);
	/* Headers the scan must not trust, each on its own connection, with a
	 * good request before it: the good one answered, then an error and a
	 * close (or, for an incomplete header, nothing until more comes). */
	static const char *bad[] = {
	    "*0\r\n",
	    "*-1\r\n",
	    "*2\r\n$4\r\nHGET\r\n$-1\r\n",
	    "*2\r\n$4\r\nHGET\r\n$99999999999\r\n",
	    "*1048577\r\n$4\r\nPING\r\n",
	    "*2\r\n$4\r\nHGET\r\n$4keep\r\n",
	    "*2\r\n$4\r\nHGET\r\n$4\r\nkeepXX\r\n",
	    "*3x\r\n",
	    "*\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rawconn *b = raw_open(srv);
		const char good[] = "*3\r\n$4\r\nHGET\r\n$4\r\nkeep\r\n$1\r\nf\r\n";
		char req[256];
		int len = snprintf(req, sizeof(req), "%s%s", good, bad[i]);
		assert_true(su_send(b->fd, req, (size_t)len));
		raw_expect(b, NULL, "$1");
		/* An error or nothing more; then the server must still serve. */
		const char *next = raw_try_next(b, 300);
		if (next && next[0] != '-' && strcmp(next, "*-1\r\n") != 0 &&
		    strcmp(next, "*0\r\n") != 0)
			fail_msg("bad header %zu: got '%.80s'", i, next);
		raw_close(b);
		ping_ok();
	}
	c = hconn(srv);
	redisReply *x = cmd(c, "HGET keep f");
	assert_int_equal(x->type, REDIS_REPLY_STRING);
	assert_string_equal(x->str, "v");
	freeReplyObject(x);
	redisFree(c);
}

static void test_many_single_request_clients(void **state)
{
	(void)state;
	enum { N = 60 };
	int fds[N];
	for (int i = 0; i < N; i++) {
		fds[i] = su_connect(srv);
		assert_true(fds[i] >= 0);
	}
	for (int round = 0; round < 5; round++) {
		/* Every client sends its one request before any reads; every
		 * seventh closes right after sending (its end of stream in the
		 * same poll phase). */
		for (int i = 0; i < N; i++) {
			if (fds[i] < 0)
				continue;
			char req[128];
			size_t n = hset_req(req, "many", round * N + i);
			char get[96];
			int gn = snprintf(get, sizeof(get),
			                  "*3\r\n$4\r\nHGET\r\n$4\r\nmany\r\n$%d\r\nf%d\r\n",
			                  snprintf(NULL, 0, "f%d", round * N + i), round * N + i);
			memcpy(req + n, get, (size_t)gn);
			assert_true(su_send(fds[i], req, n + (size_t)gn));
			if ((i + round) % 7 == 0) {
				shutdown(fds[i], SHUT_WR);
			}
		}
		for (int i = 0; i < N; i++) {
			if (fds[i] < 0)
				continue;
			char want[64], got[64] = {0};
			int wn = snprintf(want, sizeof(want), ":1\r\n$%d\r\nv%d\r\n",
			                  snprintf(NULL, 0, "v%d", round * N + i), round * N + i);
			size_t g = su_recv(fds[i], got, (size_t)wn, 20000);
			if (g != (size_t)wn || memcmp(got, want, (size_t)wn) != 0)
				fail_msg("client %d round %d: got '%.*s', want '%s'", i, round,
				         (int)g, got, want);
			if ((i + round) % 7 == 0) {
				assert_true(su_wait_closed(fds[i], 20000));
				close(fds[i]);
				fds[i] = su_connect(srv);
				assert_true(fds[i] >= 0);
			}
		}
	}
	for (int i = 0; i < N; i++)
		close(fds[i]);
	redisContext *c = hconn(srv);
	EXPECT_INT(c, 5 * N, "HLEN many");
	redisFree(c);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_half_close_gets_every_reply),
	    cmocka_unit_test(test_reset_with_parked_replies),
	    cmocka_unit_test(test_prefetch_scan_hostile_keys),
	    cmocka_unit_test(test_many_single_request_clients),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
