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
 * - client-output-buffer-limit was checked once per read from the socket:
 *   28 KB of pipelined HGETALL of a 100 KB hash, read at once, ran every
 *   command and held 200 MB of replies (and a copy for uv_write) before the
 *   client was closed; a client that never reads swelled ctxd to 2.2 GB.
 * - HRANDFIELD with a negative count builds a reply of the count's length
 *   whatever the hash: one command (HRANDFIELD k -300000000) took 2 GB and
 *   aborted ctxd (out of memory) under a 1.5 GB ulimit; it now stops at the
 *   hard output limit, where the client is closed.
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

SU_GROUP_SERVER("robust") /* durability always: fsyncs take time */

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

/* total_commands_processed from INFO stats. */
static long long commands_processed(redisContext *h)
{
	return info_int(h, "stats", "total_commands_processed");
}

static void test_output_limit_within_one_read(void **state)
{
	redisContext *h = hconn(srv);
	EXPECT_STATUS(h, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 1048576 0 0");
	char *v = malloc(100000);
	memset(v, 'z', 100000);
	redisReply *rep = redisCommand(h, "HSET big f %b", v, (size_t)100000);
	assert_non_null(rep);
	freeReplyObject(rep);
	free(v);

	const char one[] = "HGETALL big\r\n";
	size_t n = 2000, len = n * (sizeof(one) - 1);
	char *req = malloc(len);
	for (size_t i = 0; i < n; i++)
		memcpy(req + i * (sizeof(one) - 1), one, sizeof(one) - 1);
	long long before = commands_processed(h);
	int fd = su_connect(srv);
	assert_true(fd >= 0);
	assert_true(su_send(fd, req, len)); /* one write: one read for ctxd */
	assert_true(su_wait_closed(fd, 20000));
	close(fd);
	free(req);
	/* 1 MB / 100 KB: the 11th reply passes the limit; INFO itself is one. */
	long long ran = commands_processed(h) - before;
	if (ran > 40)
		fail_msg("%lld HGETALL of 100 KB ran past a 1 MB output limit", ran - 1);
	assert_true(su_alive(srv));
	EXPECT_STATUS(h, "OK", "CONFIG SET client-output-buffer-limit %s",
	              "normal 268435456 67108864 60");
	redisFree(h);
}

/* The process's peak resident memory (VmHWM), bytes. */
static size_t peak_rss(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t kb = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %zu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static void test_hrandfield_count_over_output_limit(void **state)
{
	redisContext *h = hconn(srv);
	EXPECT_STATUS(h, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 1048576 0 0");
	EXPECT_INT(h, 1, "HSET hr a 1");
	size_t before = peak_rss(srv->pid);
	/* 100 million picks: 700 MB of reply for a one-field hash */
	int fd = su_connect(srv);
	assert_true(fd >= 0);
	const char req[] = "HRANDFIELD hr -100000000\r\n";
	assert_true(su_send(fd, req, sizeof(req) - 1));
	assert_true(su_wait_closed(fd, 60000));
	close(fd);
	assert_true(su_alive(srv));
	size_t grew = peak_rss(srv->pid) - before;
	if (grew > 64u << 20)
		fail_msg("peak memory grew by %zu MB for a reply over a 1 MB limit", grew >> 20);
	redisReply *r = cmd(h, "HRANDFIELD hr -3");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 3);
	freeReplyObject(r);
	EXPECT_STATUS(h, "OK", "CONFIG SET client-output-buffer-limit %s",
	              "normal 268435456 67108864 60");
	redisFree(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ttl_after_pipelined_create),
	    cmocka_unit_test(test_expire_cond_after_pipelined_create),
	    cmocka_unit_test(test_output_limit_within_one_read),
	    cmocka_unit_test(test_hrandfield_count_over_output_limit),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
