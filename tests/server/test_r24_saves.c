/*
 * test_r24_saves.c - Redis's operator commands on ctxd (round 24): SAVE,
 * BGSAVE and LASTSAVE write and report checkpoints, ROLE, OBJECT and MEMORY
 * USAGE answer with Redis's reply shapes. Before round 24 every one of them
 * was "-ERR unknown command".
 *
 * SAVE must leave a checkpoint of the current revision on disk
 * (ckpt-R.ckpt) and count in INFO's checkpoints; BGSAVE must write one
 * without holding the client, and a stop while it runs must still exit 0
 * with every write kept; a memory-only server refuses both.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serverutil.h"

#include "suclient.h"

SU_GROUP_SERVER("r24_saves")

/* Whether ckpt-<rev>.ckpt exists in the server's directory. */
static bool checkpoint_file(const su_server *s, long long rev)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/ckpt-%016llx.ckpt", s->dir, (unsigned long long)rev);
	struct stat sb;
	return stat(path, &sb) == 0;
}

/* Wait (60 s at most) until INFO says no BGSAVE runs. */
static void wait_bgsave_done(redisContext *c)
{
	for (int i = 0; i < 6000 && info_int(c, "persistence", "rdb_bgsave_in_progress"); i++)
		usleep(10000);
	assert_int_equal(info_int(c, "persistence", "rdb_bgsave_in_progress"), 0);
}

static void test_save_writes_a_checkpoint(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	long long before = (long long)time(NULL);
	long long last0 = cmd_int(c, "LASTSAVE");
	assert_true(last0 > 0 && last0 <= before);
	for (int i = 0; i < 100; i++)
		EXPECT_INT(c, 1, "HSET save-ctx f%d v%d", i, i);
	long long ckpts = info_int(c, "persistence", "checkpoints");
	long long rev = info_int(c, "persistence", "revision");
	EXPECT_STATUS(c, "OK", "SAVE");
	assert_int_equal(info_int(c, "persistence", "checkpoints"), ckpts + 1);
	assert_int_equal(info_int(c, "persistence", "checkpoint_revision"), rev);
	assert_true(checkpoint_file(srv, rev));
	long long last = cmd_int(c, "LASTSAVE");
	assert_true(last >= before && last <= (long long)time(NULL));
	assert_int_equal(info_int(c, "persistence", "rdb_last_save_time"), last);
	/* Nothing logged since: a second SAVE is a no-op that still succeeds. */
	EXPECT_STATUS(c, "OK", "SAVE");
	assert_int_equal(info_int(c, "persistence", "checkpoints"), ckpts + 1);
	EXPECT_ERR(c, "ERR wrong number of arguments", "SAVE now");
	redisFree(c);
}

static void test_bgsave(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	for (int i = 0; i < 100; i++)
		EXPECT_INT(c, 1, "HSET bg-ctx f%d v%d", i, i);
	long long ckpts = info_int(c, "persistence", "checkpoints");
	long long rev = info_int(c, "persistence", "revision");
	EXPECT_STATUS(c, "Background saving started", "BGSAVE");
	/* The connection is not held: it answers while (or after) the
	 * checkpoint is written. */
	EXPECT_INT(c, 1, "HSET bg-ctx late 1");
	/* A second one, at once: refused while the first runs, else started;
	 * with SCHEDULE, scheduled or started. */
	redisReply *r = cmd(c, "BGSAVE");
	if (r->type == REDIS_REPLY_ERROR)
		assert_string_equal(r->str, "ERR Background save already in progress");
	else
		assert_string_equal(r->str, "Background saving started");
	freeReplyObject(r);
	r = cmd(c, "BGSAVE SCHEDULE");
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	assert_true(strcmp(r->str, "Background saving scheduled") == 0 ||
	            strcmp(r->str, "Background saving started") == 0);
	freeReplyObject(r);
	wait_bgsave_done(c);
	assert_true(info_int(c, "persistence", "checkpoints") > ckpts);
	assert_true(info_int(c, "persistence", "checkpoint_revision") >= rev);
	assert_true(checkpoint_file(srv, info_int(c, "persistence", "checkpoint_revision")));
	char *status = info_field(c, "persistence", "rdb_last_bgsave_status");
	assert_string_equal(status, "ok");
	free(status);
	EXPECT_ERR_EXACT(c, "ERR syntax error", "BGSAVE NOW");
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_ERR(c, "ERR Command not allowed inside a transaction", "BGSAVE");
	EXPECT_ERR(c, "ERR Command not allowed inside a transaction", "SAVE");
	EXPECT_ERR(c, "EXECABORT", "EXEC");
	redisFree(c);
}

/* A stop while a BGSAVE writes: the server waits for it, exits 0, and
 * opens again with every write. */
static void test_stop_during_bgsave(void **state)
{
	(void)state;
	own = su_start("r24_saves_stop", NULL);
	redisContext *c = hconn(own);
	char value[1000];
	memset(value, 'x', sizeof(value));
	for (int i = 0; i < 2000; i++)
		EXPECT_INT(c, 1, "HSET big%d f%d %b", i % 50, i, value, sizeof(value));
	EXPECT_STATUS(c, "Background saving started", "BGSAVE");
	redisFree(c);
	assert_int_equal(su_stop(own), 0);
	su_restart(own, NULL);
	c = hconn(own);
	for (int i = 0; i < 50; i++)
		EXPECT_INT(c, 1, "EXISTS big%d", i);
	EXPECT_INT(c, 40, "HLEN big0");
	redisFree(c);
}

static void test_memory_only_refuses(void **state)
{
	(void)state;
	const char *const none[] = {"--durability", "none", NULL};
	own = su_start("r24_saves_none", none);
	redisContext *c = hconn(own);
	EXPECT_ERR(c, "ERR ctxd runs with durability none", "SAVE");
	EXPECT_ERR(c, "ERR ctxd runs with durability none", "BGSAVE");
	long long last = cmd_int(c, "LASTSAVE");
	assert_true(last > 0 && last <= (long long)time(NULL));
	redisFree(c);
}

static void test_role(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	redisReply *r = cmd(c, "ROLE");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 3);
	assert_string_equal(r->element[0]->str, "master");
	assert_int_equal(r->element[1]->integer, 0);
	assert_int_equal(r->element[2]->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->element[2]->elements, 0);
	freeReplyObject(r);
	redisFree(c);
}

static void test_object(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_INT(c, 2, "HSET obj a 1 b 2");
	redisReply *r = cmd(c, "OBJECT ENCODING obj");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_string_equal(r->str, "hashtable");
	freeReplyObject(r);
	EXPECT_NIL(c, "OBJECT ENCODING nosuch");
	EXPECT_INT(c, 1, "OBJECT REFCOUNT obj");
	EXPECT_NIL(c, "OBJECT REFCOUNT nosuch");
	EXPECT_NIL(c, "OBJECT IDLETIME nosuch");
	EXPECT_NIL(c, "OBJECT FREQ nosuch");
	EXPECT_ERR(c, "ERR An LFU maxmemory policy is not selected", "OBJECT FREQ obj");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'nope'",
	           "OBJECT nope obj");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'ENCODING'",
	           "OBJECT ENCODING");
	/* A context with no field is no key. */
	EXPECT_INT(c, 1, "HSET obj1 x 1");
	EXPECT_INT(c, 1, "HDEL obj1 x");
	EXPECT_NIL(c, "OBJECT ENCODING obj1");
	/* "." names the active context: without one, one error reply (the
	 * next command gets its own). */
	EXPECT_ERR(c, "CTXNOTFOUND no active context", "OBJECT IDLETIME .");
	EXPECT_STATUS(c, "PONG", "PING");
	EXPECT_ERR(c, "CTXNOTFOUND no active context", "MEMORY USAGE .");
	EXPECT_STATUS(c, "PONG", "PING");
	EXPECT_STATUS(c, "OK", "CTX.USE obj");
	EXPECT_INT(c, 0, "OBJECT IDLETIME .");
	EXPECT_INT(c, 1, "OBJECT REFCOUNT .");
	r = cmd(c, "OBJECT HELP");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_true(r->elements > 4);
	freeReplyObject(r);
	/* Idle time: seconds since the last commit; asking is no access. */
	EXPECT_INT(c, 1, "HSET idle f v");
	EXPECT_INT(c, 0, "OBJECT IDLETIME idle");
	sleep(2);
	long long idle = cmd_int(c, "OBJECT IDLETIME idle");
	assert_true(idle >= 1 && idle <= 60);
	assert_true(cmd_int(c, "OBJECT IDLETIME idle") >= idle);
	EXPECT_INT(c, 0, "HSET idle f w");
	assert_true(cmd_int(c, "OBJECT IDLETIME idle") < idle);
	redisFree(c);
}

static void test_memory_usage(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	/* 10 fields of 2-byte names and 8-byte values: 400 + 10 x (10 + 48). */
	for (int i = 0; i < 10; i++)
		EXPECT_INT(c, 1, "HSET mem f%d 12345678", i);
	EXPECT_INT(c, 400 + 10 * (10 + 48), "MEMORY USAGE mem");
	EXPECT_INT(c, 400 + 10 * (10 + 48), "MEMORY USAGE mem SAMPLES 0");
	EXPECT_INT(c, 400 + 10 * (10 + 48), "MEMORY USAGE mem SAMPLES 3");
	/* A bigger value sampled (SAMPLES 0: all of them) raises the mean. */
	EXPECT_INT(c, 1, "HSET mem zz %s", "1234567890123456789012345678901234567890");
	long long all = cmd_int(c, "MEMORY USAGE mem SAMPLES 0");
	assert_int_equal(all, 400 + 11 * ((10 * 10 + 42 + 5) / 11 + 48));
	EXPECT_NIL(c, "MEMORY USAGE nosuch");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "MEMORY USAGE mem SAMPLES -1");
	EXPECT_ERR_EXACT(c, "ERR value is not an integer or out of range",
	                 "MEMORY USAGE mem SAMPLES x");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "MEMORY USAGE mem COUNT 1");
	EXPECT_ERR_EXACT(c, "ERR syntax error", "MEMORY USAGE mem SAMPLES");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'STATS'",
	           "MEMORY STATS");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'USAGE'",
	           "MEMORY USAGE");
	redisReply *r = cmd(c, "MEMORY HELP");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_true(r->elements > 2);
	freeReplyObject(r);
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_save_writes_a_checkpoint),
	    cmocka_unit_test(test_bgsave),
	    cmocka_unit_test_teardown(test_stop_during_bgsave, free_own),
	    cmocka_unit_test_teardown(test_memory_only_refuses, free_own),
	    cmocka_unit_test(test_role),
	    cmocka_unit_test(test_object),
	    cmocka_unit_test(test_memory_usage),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
