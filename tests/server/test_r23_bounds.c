/*
 * test_r23_bounds.c - memory of ctxd that grew without a byte bound
 * (round 23, r23-bounds).
 *
 * - An idle connection kept the buffers of its largest request and reply:
 *   its input buffer and its reply buffer up to 1 MiB each, and its
 *   argument vector (16 bytes an argument, up to 1,048,576 arguments:
 *   16 MiB) for its life. maxclients connections that each sent one
 *   large request once and then idled held that many times it (5 MB a
 *   connection after an HDEL of 200,000 fields; 69 KB after a PING, where
 *   Redis 7 holds 10 KB), counted by no limit. Now the loop's timer frees
 *   each connection's emptied buffers once a second; CLIENT LIST's
 *   tot-mem shows what its buffers hold.
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

SU_GROUP_SERVER("r23_bounds")

/* CLIENT LIST's tot-mem of client `id`, seen from connection c. */
static long long tot_mem(redisContext *c, long long id)
{
	redisReply *r = cmd(c, "CLIENT LIST ID %lld", id);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	const char *p = strstr(r->str, " tot-mem=");
	if (!p)
		fail_msg("no tot-mem in '%s'", r->str);
	long long v = atoll(p + strlen(" tot-mem="));
	freeReplyObject(r);
	return v;
}

#define NFIELDS 100000
#define BIGVAL  (512 << 10)

static void test_idle_connection_frees_its_buffers(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	rawconn *a = raw_open(srv);
	const char *out = NULL;
	assert_true(su_send(a->fd, "CLIENT ID\r\n", 11));
	out = raw_next(a);
	assert_true(out[0] == ':');
	long long id = atoll(out + 1);

	/* A request of 100,002 arguments, all but its last field sent: the
	 * connection holds its input and the arguments parsed so far, and a
	 * timer tick meanwhile must not take them. */
	size_t cap = (size_t)NFIELDS * 16 + 64, len = 0;
	char *req = malloc(cap);
	assert_non_null(req);
	len += (size_t)snprintf(req + len, cap - len, "*%d\r\n$4\r\nHDEL\r\n$5\r\nnokey\r\n",
	                        NFIELDS + 2);
	for (int i = 0; i < NFIELDS; i++)
		len += (size_t)snprintf(req + len, cap - len, "$6\r\nf%05d\r\n", i);
	size_t last = strlen("$6\r\nf99999\r\n");
	assert_true(su_send(a->fd, req, len - last));
	long long held = 0;
	for (int i = 0; i < 600 && held < (1 << 20); i++) {
		held = tot_mem(c, id);
		if (held < (1 << 20))
			usleep(100000);
	}
	if (held < (1 << 20))
		fail_msg("tot-mem %lld with 1.2 MB of a request pending", held);
	usleep(1500000); /* a tick or so with the request incomplete */
	assert_true(su_send(a->fd, req + len - last, last));
	raw_expect(a, NULL, ":0");
	free(req);

	/* a reply of 512 KiB */
	char *val = malloc(BIGVAL);
	assert_non_null(val);
	memset(val, 'v', BIGVAL);
	redisContext *w = hconn(srv);
	EXPECT_INT(w, 1, "HSET r23big f %b", val, (size_t)BIGVAL);
	redisFree(w);
	free(val);
	assert_true(su_send(a->fd, "HSTRLEN r23big f\r\n", 18));
	raw_expect(a, NULL, ":524288");
	assert_true(su_send(a->fd, "HGET r23big f\r\n", 15));
	raw_expect(a, NULL, "$524288\r\nvvvv");

	/* idle now: its buffers go within a second or two */
	for (int i = 0; i < 600 && (held = tot_mem(c, id)) > 4096; i++)
		usleep(100000);
	if (held > 4096)
		fail_msg("an idle connection still holds %lld bytes of buffers after 60 s", held);
	/* and it works on */
	raw_expect(a, "PING\r\n", "+PONG");
	raw_expect(a, "DEL r23big\r\n", ":1");
	raw_close(a);
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idle_connection_frees_its_buffers),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
