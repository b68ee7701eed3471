/*
 * test_r24_srv_eof.c - requests that came before the end of a client's
 * stream run, also when they wait behind a blocked command (round 24,
 * r24-srvreview).
 *
 * A client that sends its requests and then shuts its side down (a script
 * piped into a socket) gets every request run and every reply, as long as
 * ctxd reads the end apart from the requests. When the end came in the
 * same read as requests that then waited (behind a command on the thread
 * pool, or, since round 23, behind parked commits: the same path), ctxd
 * closed the connection after the flush: the requests after the waiting
 * one were dropped unrun, their replies never sent. Fails on the old code:
 * the HSET after the second EXPIRE never ran and the connection closed
 * after two replies.
 *
 * To make the end come with the requests in one read: the first EXPIRE
 * waits for a sync held by the syncstall shim (tests/server/preload, built
 * next to ctxd for test_r23_bounds; not under sanitizers: skipped), and
 * meanwhile exactly 65,536 bytes (ctxd's read buffer) and the end of the
 * stream are sent.
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
#include <sys/socket.h>
#include <unistd.h>

#include "serverutil.h"

#include "suclient.h"

SU_GROUP_SERVER("r24_srv_eof")

/* The syncstall shim (built beside the test, not under sanitizers), or
 * false. */
static bool shim_path(char *out, size_t n)
{
#ifdef SYNCSTALL
	snprintf(out, n, "%s", SYNCSTALL);
	return access(out, R_OK) == 0;
#else
	(void)out;
	(void)n;
	return false;
#endif
}

#define READ_BUF 65536 /* ctxd's first read buffer (net.c on_alloc) */
#define EXPIRE   "*3\r\n$6\r\nEXPIRE\r\n$1\r\na\r\n$4\r\n1000\r\n"

static void test_requests_before_the_end_run(void **state)
{
	(void)state;
	char shim[700];
	if (!shim_path(shim, sizeof(shim))) {
		print_message("  (skipped: the syncstall shim is not built here)\n");
		return;
	}
	start_stalled("r24_srv_eof", shim);
	redisContext *c = hconn(own);
	EXPECT_INT(c, 1, "HSET a f v");

	/* the payload: an EXPIRE (to the pool: it waits), then an HSET padded
	 * so that the whole is one full read buffer */
	char *p = malloc(READ_BUF + 1);
	assert_non_null(p);
	size_t e = strlen(EXPIRE), len = 0;
	memcpy(p, EXPIRE, e);
	for (size_t l = READ_BUF - e - 40;; l++) {
		char head[64];
		int h = snprintf(head, sizeof(head),
		                 "*4\r\n$4\r\nHSET\r\n$1\r\nz\r\n$1\r\nf\r\n$%zu\r\n", l);
		if (e + (size_t)h + l + 2 == READ_BUF) {
			memcpy(p + e, head, (size_t)h);
			memset(p + e + h, 'z', l);
			memcpy(p + e + h + l, "\r\n", 2);
			len = READ_BUF;
			break;
		}
		assert_true(e + (size_t)h + l + 2 < READ_BUF);
	}
	assert_int_equal(len, READ_BUF);

	FILE *f = fopen(stall_file, "w");
	assert_non_null(f);
	fclose(f);
	rawconn *w = raw_open(own);
	assert_true(su_send(w->fd, EXPIRE, strlen(EXPIRE)));
	/* until its EXPIRE is on the pool, waiting for the stalled sync (one
	 * loop: CLIENT LIST runs after the read that started it) */
	for (int i = 0;; i++) {
		redisReply *r = cmd(c, "CLIENT LIST");
		assert_int_equal(r->type, REDIS_REPLY_STRING);
		bool waiting = strstr(r->str, "cmd=expire") != NULL;
		freeReplyObject(r);
		if (waiting)
			break;
		if (i > 6000)
			fail_msg("the EXPIRE did not start in 60 s");
		usleep(10000);
	}
	assert_true(su_send(w->fd, p, len));
	assert_int_equal(shutdown(w->fd, SHUT_WR), 0);
	free(p);
	unlink(stall_file);
	raw_expect(w, NULL, ":1"); /* the first EXPIRE */
	raw_expect(w, NULL, ":1"); /* the second */
	const char *out = raw_try_next(w, 60000);
	if (!out)
		fail_msg("the HSET sent before the end of the stream got no reply");
	assert_string_equal(out, ":1\r\n");
	assert_null(raw_try_next(w, 60000)); /* then the close */
	raw_close(w);
	EXPECT_INT(c, 1, "HEXISTS z f");
	redisFree(c);
	assert_int_equal(su_stop(own), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_requests_before_the_end_run, free_stalled),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
