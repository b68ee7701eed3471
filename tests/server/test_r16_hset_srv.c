/*
 * test_r16_hset_srv.c - ctxd syncs a turn's durable writes on the loop's own
 * thread (round 16, r16-hset; net.c, SYNC INLINE).
 *
 * With --sync-inline yes (off by default: it measured slower under load
 * here) and durability always, the writes of a loop's turn wake no flusher: at
 * the end of the turn the loop syncs them itself (ctx_flush), unless a sync
 * runs already, and releases their replies. INFO persistence counts the
 * syncs a thread that needed them ran itself (log_led_syncs) beside all of
 * them (log_syncs).
 *
 * Checked:
 *   - one client, unpipelined HSETs on one loop: one sync per request, and
 *     the loop ran them (at least half: the flusher thread may take the
 *     first ones on its way to its first wait; nothing wakes it after that).
 *     Before round 16 every sync was the flusher's (and INFO had no
 *     log_led_syncs);
 *   - 16 clients on two loops, each HINCRBY-ing its own counter one request
 *     at a time: every reply is the count the client expects (in order,
 *     none lost), the syncs are at most the requests, and after a kill -9
 *     and a restart every acknowledged increment is there.
 *   - by default (no --sync-inline) the flusher runs the syncs of that one
 *     client, as before.
 * Nothing is timed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serverutil.h"

#include "suclient.h"

#define NC 16 /* clients of the concurrent test */

static const char *const one_loop[] = {"--durability", "always", "--loops", "1",
                                        "--sync-inline", "yes", NULL};
static const char *const two_loops[] = {"--durability", "always", "--loops", "2",
                                         "--sync-inline", "yes", NULL};

static void test_one_client_loop_syncs(void **state)
{
	(void)state;
	su_server *s = own = su_start("r16_hset_one", one_loop);
	redisContext *c = hconn(s);
	long long syncs0 = info_int(c, "persistence", "log_syncs");
	long long led0 = info_int(c, "persistence", "log_led_syncs");
	int n = 100;
	for (int i = 0; i < n; i++)
		EXPECT_INT(c, 1, "HSET h%d f v", i);
	long long syncs1 = info_int(c, "persistence", "log_syncs");
	long long led1 = info_int(c, "persistence", "log_led_syncs");
	print_message("%d HSETs: %lld syncs, %lld run by the loop\n", n, syncs1 - syncs0,
	              led1 - led0);
	assert_int_equal(syncs1 - syncs0, n);
	assert_true(led1 - led0 >= n / 2);
	for (int i = 0; i < n; i++) {
		redisReply *r = cmd(c, "HGET h%d f", i);
		assert_int_equal(r->type, REDIS_REPLY_STRING);
		assert_string_equal(r->str, "v");
		freeReplyObject(r);
	}
	redisFree(c);
}

typedef struct counter_job {
	const su_server *s;
	int id;
	long n;
	long acked; /* the last count acknowledged */
	int bad;
} counter_job;

static void *counter(void *p)
{
	counter_job *j = p;
	redisContext *c = redisConnect("127.0.0.1", j->s->port);
	if (!c || c->err) {
		j->bad++;
		return NULL;
	}
	for (long i = 1; i <= j->n; i++) {
		redisReply *r = redisCommand(c, "HINCRBY cnt%d n 1", j->id);
		if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != i)
			j->bad++;
		else
			j->acked = i;
		if (r)
			freeReplyObject(r);
	}
	redisFree(c);
	return NULL;
}

static void test_many_clients_acked_after_sync(void **state)
{
	(void)state;
	su_server *s = own = su_start("r16_hset_many", two_loops);
	redisContext *c = hconn(s);
	long long syncs0 = info_int(c, "persistence", "log_syncs");
	pthread_t th[NC];
	counter_job j[NC];
	long n = 100;
	for (int k = 0; k < NC; k++) {
		j[k] = (counter_job){s, k, n, 0, 0};
		assert_int_equal(pthread_create(&th[k], NULL, counter, &j[k]), 0);
	}
	for (int k = 0; k < NC; k++)
		pthread_join(th[k], NULL);
	for (int k = 0; k < NC; k++) {
		assert_int_equal(j[k].bad, 0);
		assert_int_equal(j[k].acked, n);
	}
	long long syncs = info_int(c, "persistence", "log_syncs") - syncs0;
	long long led = info_int(c, "persistence", "log_led_syncs");
	print_message("%d clients x %ld HINCRBY: %lld syncs, %lld led\n", NC, n, syncs, led);
	assert_true(syncs >= 1 && syncs <= NC * n);
	redisFree(c);

	/* Every reply was sent after its sync: a kill -9 loses none. */
	su_kill9(s);
	su_restart(s, two_loops);
	c = hconn(s);
	for (int k = 0; k < NC; k++)
		EXPECT_INT(c, n + 1, "HINCRBY cnt%d n 1", k);
	redisFree(c);
}

static const char *const default_args[] = {"--durability", "always", "--loops", "1", NULL};

static void test_default_flusher_syncs(void **state)
{
	(void)state;
	su_server *s = own = su_start("r16_hset_default", default_args);
	redisContext *c = hconn(s);
	expect_config(c, "sync-inline", "no");
	long long syncs0 = info_int(c, "persistence", "log_syncs");
	long long led0 = info_int(c, "persistence", "log_led_syncs");
	for (int i = 0; i < 50; i++)
		EXPECT_INT(c, 1, "HSET h%d f v", i);
	assert_int_equal(info_int(c, "persistence", "log_syncs") - syncs0, 50);
	/* (A checkpoint's wait for the log may lead a round: not all 0.) */
	assert_true(info_int(c, "persistence", "log_led_syncs") - led0 < 25);
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_one_client_loop_syncs, free_own),
	    cmocka_unit_test_teardown(test_many_clients_acked_after_sync, free_own),
	    cmocka_unit_test_teardown(test_default_flusher_syncs, free_own),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
