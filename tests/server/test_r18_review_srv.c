/*
 * test_r18_review_srv.c - round 18's review of ctxd (r18-review).
 *
 * - SHUTDOWN's arguments. docs/protocol.md said they were ignored, so
 *   `SHUTDOWN ABORT` (Redis 7: cancel a pending shutdown; "No shutdown in
 *   progress" when there is none) and `SHUTDOWN anything` stopped the
 *   server. Now ABORT answers Redis's error, an unknown modifier (or SAVE
 *   with NOSAVE) is a syntax error, and the connection and the server go
 *   on (a PING behind it on the same connection is answered: before the
 *   fix the +OK was followed by the close and the stop). SHUTDOWN, SHUTDOWN
 *   NOSAVE NOW and the like still stop it gracefully (exit status 0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "serverutil.h"

/* Send req on a new connection, read until want bytes or 10 s. */
static void exchange(const su_server *s, const char *req, char *out, size_t want)
{
	int fd = su_connect(s);
	assert_true(fd >= 0);
	assert_true(su_send(fd, req, strlen(req)));
	memset(out, 0, want + 1);
	su_recv(fd, out, want, 10000);
	close(fd);
}

static void test_shutdown_abort_and_bad_modifiers_do_not_stop(void **state)
{
	(void)state;
	su_server *s = su_start("r18_shutdown_args", NULL);
	static const struct {
		const char *req, *reply;
	} cases[] = {
	    {"SHUTDOWN ABORT\r\nPING\r\n", "-ERR No shutdown in progress.\r\n+PONG\r\n"},
	    {"SHUTDOWN abort\r\nPING\r\n", "-ERR No shutdown in progress.\r\n+PONG\r\n"},
	    {"SHUTDOWN NOSAVE ABORT\r\nPING\r\n", "-ERR syntax error\r\n+PONG\r\n"},
	    {"SHUTDOWN SAVE NOSAVE\r\nPING\r\n", "-ERR syntax error\r\n+PONG\r\n"},
	    {"SHUTDOWN PLEASE\r\nPING\r\n", "-ERR syntax error\r\n+PONG\r\n"},
	};
	char buf[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		exchange(s, cases[i].req, buf, strlen(cases[i].reply));
		if (strcmp(buf, cases[i].reply) != 0)
			fail_msg("%s: got \"%s\"", cases[i].req, buf);
	}
	exchange(s, "PING\r\n", buf, 7);
	assert_string_equal(buf, "+PONG\r\n");
	assert_true(su_alive(s));
	su_free(s);
}

static void test_shutdown_modifiers_stop_gracefully(void **state)
{
	(void)state;
	static const char *const reqs[] = {"SHUTDOWN\r\n", "SHUTDOWN NOSAVE NOW\r\n",
	                                   "SHUTDOWN save force\r\n"};
	su_server *s = su_start("r18_shutdown_stop", NULL);
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		char buf[16];
		if (i)
			su_restart(s, NULL);
		int fd = su_connect(s);
		assert_true(fd >= 0);
		assert_true(su_send(fd, reqs[i], strlen(reqs[i])));
		memset(buf, 0, sizeof(buf));
		su_recv(fd, buf, 5, 10000);
		assert_string_equal(buf, "+OK\r\n");
		assert_true(su_wait_closed(fd, 60000));
		close(fd);
		int st;
		assert_int_equal(waitpid(s->pid, &st, 0), s->pid);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
		s->pid = 0;
	}
	su_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shutdown_abort_and_bad_modifiers_do_not_stop),
	    cmocka_unit_test(test_shutdown_modifiers_stop_gracefully),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
