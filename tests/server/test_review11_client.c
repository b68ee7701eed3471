/*
 * test_review11_client.c - round 11 review of CLIENT LIST (r11-review):
 *
 *   - CLIENT LIST formatted every client's line (an snprintf of ~300 bytes
 *     each) while it held srv.reg_lock, the lock every loop takes to accept
 *     or close a connection and to run CLIENT SETNAME/SETINFO: with 10,000
 *     clients, every accept and close of the other loops waited for the
 *     whole list. Now the fields are copied under the lock and formatted
 *     after it. The server runs with tests/server/preload/lockprobe.c
 *     preloaded, which reports on ctxd's log how many mutexes the thread
 *     holds at each CLIENT LIST line's snprintf: the test wants lines, all
 *     formatted holding none. (Not in sanitizer builds: their runtime must
 *     come first; the test is skipped there.)
 *   - a line was cut at 1,023 bytes, without its newline, so a client named
 *     by CLIENT SETNAME with a long name (Redis bounds a name by nothing but
 *     the request) ran into the next client's line, and CLIENT INFO lost
 *     its end. Checked against redis-server with CTXD_TEST_REDIS=1.
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

SU_SERVER_TEARDOWN
static bool probed; /* ctxd runs with lockprobe preloaded */
static bool is_redis;

static int setup(void **state)
{
	(void)state;
	const char *redis = getenv("CTXD_TEST_REDIS");
	is_redis = redis && redis[0] == '1';
	if (is_redis) {
		srv = su_start_redis("review11-client");
		return 0;
	}
#ifdef LOCKPROBE
	setenv("LD_PRELOAD", LOCKPROBE, 1);
	probed = true;
#endif
	srv = su_start("review11-client", NULL);
	unsetenv("LD_PRELOAD");
	return 0;
}

/* The lines of a CLIENT LIST / CLIENT INFO reply; each must end in '\n'. */
static size_t lines_of(const redisReply *r)
{
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_true(r->len > 0);
	assert_int_equal(r->str[r->len - 1], '\n');
	size_t n = 0;
	for (size_t i = 0; i < r->len; i++) {
		if (r->str[i] == '\n') {
			n++;
			/* every line is a client's */
			if (i + 1 < r->len)
				assert_int_equal(strncmp(r->str + i + 1, "id=", 3), 0);
		}
	}
	return n;
}

static void test_client_list_long_names(void **state)
{
	(void)state;
	size_t len = 3000;
	char *name = malloc(len + 1);
	assert_non_null(name);
	for (size_t i = 0; i < len; i++)
		name[i] = (char)('a' + i % 26);
	name[len] = '\0';
	redisContext *a = hconn(srv), *b = hconn(srv), *c = hconn(srv);
	EXPECT_STATUS(a, "OK", "CLIENT SETNAME %s", name);
	EXPECT_STATUS(b, "OK", "CLIENT SETNAME short");
	name[len - 1] = 'Z'; /* lib-ver: a long one too */
	EXPECT_STATUS(b, "OK", "CLIENT SETINFO LIB-VER %s", name);
	name[len - 1] = 'a' + (len - 1) % 26;

	redisReply *r = cmd(c, "CLIENT LIST");
	assert_true(lines_of(r) >= 3);
	char *want = malloc(len + 32);
	snprintf(want, len + 32, " name=%s ", name);
	assert_non_null(strstr(r->str, want));
	assert_non_null(strstr(r->str, " name=short "));
	freeReplyObject(r);

	r = cmd(a, "CLIENT INFO");
	assert_int_equal(lines_of(r), 1);
	assert_non_null(strstr(r->str, want));
	freeReplyObject(r);

	long long idb = cmd_int(b, "CLIENT ID");
	r = cmd(c, "CLIENT LIST ID %lld", idb);
	assert_int_equal(lines_of(r), 1);
	name[len - 1] = 'Z';
	snprintf(want, len + 32, " lib-ver=%s", name);
	assert_non_null(strstr(r->str, want));
	freeReplyObject(r);

	free(want);
	free(name);
	redisFree(c);
	redisFree(b);
	redisFree(a);
}

static void test_client_list_formats_outside_the_lock(void **state)
{
	(void)state;
	if (!probed) {
		print_message("  (skipped: lockprobe is not built here, or redis-server)\n");
		skip();
	}
	redisContext *cs[8];
	for (int i = 0; i < 8; i++) {
		cs[i] = hconn(srv);
		EXPECT_STATUS(cs[i], "OK", "CLIENT SETNAME c%d", i);
	}
	redisReply *r = cmd(cs[0], "CLIENT LIST");
	assert_true(lines_of(r) >= 8);
	freeReplyObject(r);
	r = cmd(cs[1], "CLIENT INFO");
	assert_int_equal(lines_of(r), 1);
	freeReplyObject(r);
	for (int i = 0; i < 8; i++)
		redisFree(cs[i]);

	FILE *f = fopen(srv->log, "r");
	assert_non_null(f);
	char line[512];
	size_t loaded = 0, free_lines = 0, held_lines = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strcmp(line, "lockprobe: loaded\n") == 0)
			loaded++;
		else if (strcmp(line, "lockprobe: client line formatted holding 0 mutex(es)\n") ==
		         0)
			free_lines++;
		else if (strncmp(line, "lockprobe: client line formatted holding", 40) == 0) {
			held_lines++;
			print_error("ctxd: %s", line);
		}
	}
	fclose(f);
	assert_true(loaded >= 1);
	assert_int_equal(held_lines, 0);
	assert_true(free_lines >= 9); /* 8+ lines of CLIENT LIST, 1 of CLIENT INFO */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_list_formats_outside_the_lock),
	    cmocka_unit_test(test_client_list_long_names),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
