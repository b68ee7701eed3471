/*
 * test_r15_server.c - pipelined work that leaves loop 0's thread mostly idle
 * stays hosted (round 15, r15-server).
 *
 * With two loops, loop 0 runs loop 1 itself ("hosting", net.c) while the
 * clients send about one request per read. Until round 15 one period of
 * pipelined reads (UNHOST_MIN_RPR requests per read) gave loop 1 its own
 * thread back, however little work they were. When the client is the
 * bottleneck (redis-benchmark's HGETALL with 16 pipelined requests: ctxd at
 * 0.6 of a core over two threads), the second thread only sleeps and wakes
 * more often, and every wake-up costs the client's send: requests per
 * client CPU-second fell about 15% against one thread (docs/benchmarks.md,
 * round 15). Now pipelined reads end hosting only while loop 0's thread
 * uses PIPE_UNHOST_CPU of a core or more (test_server.c's test_loops_hosting
 * checks that busy pipelined work still does).
 *
 * Checked: after unpipelined requests got the loops hosted, paced pipelined
 * reads (16 per read, a pause after each batch: loop 0 nearly idle) get
 * every reply right and never end hosting for their requests per read: the
 * server's debug log has no "own threads" line that gives requests per read
 * as its reason. (A machine crowded by other jobs may end hosting for that
 * reason; its log line names cores, idle and spare CPUs instead.) Before
 * the change the first period of the pipelined batches ended it.
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

#define NC      4   /* connections: both loops get some */
#define DEPTH   16  /* pipelined requests per batch */
#define BATCHES 600 /* paced batches per connection: several control periods */

static const char *const server_args[] = {"--durability", "none", "--loglevel", "debug", NULL};

static int loops_running(redisContext *c)
{
	long long n = info_int(c, "server", "loops_running");
	return (int)n;
}

/* The lines of the server's log that contain `what` and `reason`. */
static int log_lines(const su_server *s, const char *what, const char *reason)
{
	FILE *f = fopen(s->log, "r");
	if (!f)
		fail_msg("cannot read %s", s->log);
	char line[1024];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, what) && (!reason || strstr(line, reason))) {
			fprintf(stderr, "log: %s", line);
			n++;
		}
	fclose(f);
	return n;
}

static void test_paced_pipeline_stays_hosted(void **state)
{
	(void)state;
	su_server *s = own = su_start("r15_server", server_args);
	redisContext *cs[NC];
	for (int k = 0; k < NC; k++)
		cs[k] = hconn(s);
	for (int f = 0; f < 64; f++)
		EXPECT_INT(cs[0], 1, "HSET r15 f%d v%d", f, f);
	/* unpipelined requests until loop 0 hosts loop 1 (bounded by count) */
	int running = loops_running(cs[0]);
	for (long i = 0; i < 200000 && running != 1; i++) {
		for (int k = 0; k < NC; k++) {
			redisReply *r = cmd(cs[k], "HGET r15 f%ld", i % 64);
			assert_int_equal(r->type, REDIS_REPLY_STRING);
			freeReplyObject(r);
		}
		running = loops_running(cs[i % NC]);
	}
	assert_int_equal(running, 1);
	assert_true(log_lines(s, "loops: hosting", NULL) >= 1);
	/* paced pipelined reads: many requests per read, little work */
	for (int b = 0; b < BATCHES; b++) {
		for (int k = 0; k < NC; k++)
			for (int j = 0; j < DEPTH; j++)
				redisAppendCommand(cs[k], "HGET r15 f%d", (b + j) % 64);
		for (int k = 0; k < NC; k++)
			for (int j = 0; j < DEPTH; j++) {
				redisReply *r;
				assert_int_equal(redisGetReply(cs[k], (void **)&r), REDIS_OK);
				assert_int_equal(r->type, REDIS_REPLY_STRING);
				char want[16];
				snprintf(want, sizeof(want), "v%d", (b + j) % 64);
				assert_string_equal(r->str, want);
				freeReplyObject(r);
			}
		usleep(2000);
	}
	/* hosting never ended for the pipelining itself */
	assert_int_equal(log_lines(s, "loops: own threads", "requests per read"), 0);
	for (int k = 0; k < NC; k++)
		redisFree(cs[k]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_paced_pipeline_stays_hosted, free_own),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
