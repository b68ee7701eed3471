/*
 * test_r11_loop.c - a DEL of a big hash followed by writes of it, in one
 * EXEC or pipelined, does not hold the event loop for O(fields) (round 11,
 * r11-loop).
 *
 * `MULTI; DEL big; HSET big f v; EXEC` is one commit on the context (round
 * 6: atomic across a crash). It used to delete every old field one by one
 * on the loop thread: for 200,000 fields 0.36 s during which every other
 * client of that loop waited, and a log record of every deleted key. Now
 * the commit clears the context (ctx_txn_clear: the new version starts from
 * empty maps, the old one stays in history and is freed in the background)
 * in O(written fields). A pipelined DEL + HSET of a big hash ran one by one
 * before (GROUP_REPLACE_MAX: a drop, then a create that waited on the loop
 * for the drop's fsync, version 1 again); it is one such commit now.
 *
 * Checked without timing, by what the commit wrote: the log grows by one
 * small record (the log's used bytes: segments are preallocated with
 * zeros), where 20,000 deletions took ~180 KB; the version goes on (one
 * commit, not a drop and a create); and after kill -9 of the server once
 * the reply came, the key holds exactly the written fields at that version.
 */
#include <dirent.h>
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

#define BIG   20000
#define CHUNK 1000

/* HSET key f0 v .. f<n-1> v, CHUNK fields a command, pipelined. */
static void fill(redisContext *c, const char *key, int n)
{
	const char **argv = calloc(2 + 2 * CHUNK, sizeof(*argv));
	char(*f)[16] = calloc(CHUNK, sizeof(*f));
	int cmds = 0;
	for (int at = 0; at < n; at += CHUNK, cmds++) {
		int k = n - at < CHUNK ? n - at : CHUNK;
		argv[0] = "HSET";
		argv[1] = key;
		for (int i = 0; i < k; i++) {
			snprintf(f[i], sizeof(f[i]), "f%d", at + i);
			argv[2 + 2 * i] = f[i];
			argv[3 + 2 * i] = "v";
		}
		assert_int_equal(redisAppendCommandArgv(c, 2 + 2 * k, argv, NULL), REDIS_OK);
	}
	for (int i = 0; i < cmds; i++) {
		redisReply *r;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
		freeReplyObject(r);
	}
	free(f);
	free(argv);
}

/* Bytes of log records in the server's directory: each segment up to its
 * last non-zero byte (the rest is its preallocated tail). */
static size_t log_used(const su_server *s)
{
	DIR *d = opendir(s->dir);
	assert_non_null(d);
	size_t used = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (strncmp(e->d_name, "wal-", 4) != 0)
			continue;
		char path[1200];
		snprintf(path, sizeof(path), "%s/%s", s->dir, e->d_name);
		FILE *f = fopen(path, "rb");
		assert_non_null(f);
		size_t at = 0, last = 0;
		unsigned char buf[65536];
		for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0; at += n)
			for (size_t i = 0; i < n; i++)
				if (buf[i])
					last = at + i + 1;
		fclose(f);
		used += last;
	}
	closedir(d);
	return used;
}

/* After the replace: key holds f = v alone, at version `version`. */
static void expect_replaced(redisContext *c, const char *key, const char *f, long long version)
{
	EXPECT_INT(c, 1, "HLEN %s", key);
	redisReply *r = cmd(c, "HGET %s %s", key, f);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_string_equal(r->str, "new");
	freeReplyObject(r);
	EXPECT_INT(c, 0, "HEXISTS %s f0", key);
	assert_int_equal(cmd_int(c, "CTX.VERSION %s", key), version);
}

/* The EXEC's commit is one small record on the existing context, and it
 * survives kill -9 once replied. */
static void test_exec_replace_of_big_hash(void **state)
{
	(void)state;
	su_server *s = own = su_start("r11_loop_exec", NULL);
	redisContext *c = hconn(s);
	fill(c, "big", BIG);
	long long v = cmd_int(c, "CTX.VERSION big");
	size_t before = log_used(s);
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL big");
	EXPECT_STATUS(c, "QUEUED", "HSET big f new");
	redisReply *r = cmd(c, "EXEC");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 2);
	assert_int_equal(r->element[0]->integer, 1);
	assert_int_equal(r->element[1]->integer, 1);
	freeReplyObject(r);
	size_t grew = log_used(s) - before;
	if (grew > 1024) /* one put and the id: ~30 bytes; 20,000 deletions ~180 KB */
		fail_msg("the EXEC logged %zu bytes", grew);
	expect_replaced(c, "big", "f", v + 1);
	redisFree(c);
	su_kill9(s);
	su_restart(s, NULL);
	c = hconn(s);
	expect_replaced(c, "big", "f", v + 1);
	redisFree(c);
}

/* A pipelined DEL + HSET of a big hash is one such commit too (it ran one
 * by one past 4096 fields: a drop, then a create, version 1). */
static void test_pipelined_replace_of_big_hash(void **state)
{
	(void)state;
	su_server *s = own = su_start("r11_loop_pipe", NULL);
	redisContext *c = hconn(s);
	fill(c, "pbig", BIG);
	long long v = cmd_int(c, "CTX.VERSION pbig");
	size_t before = log_used(s);
	redisAppendCommand(c, "DEL pbig");
	redisAppendCommand(c, "HSET pbig g new");
	for (int i = 0; i < 2; i++) {
		redisReply *r;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
		assert_int_equal(r->integer, 1);
		freeReplyObject(r);
	}
	size_t grew = log_used(s) - before;
	if (grew > 1024)
		fail_msg("the DEL + HSET logged %zu bytes", grew);
	expect_replaced(c, "pbig", "g", v + 1);
	redisFree(c);
	su_kill9(s);
	su_restart(s, NULL);
	c = hconn(s);
	expect_replaced(c, "pbig", "g", v + 1);
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_exec_replace_of_big_hash, free_own),
	    cmocka_unit_test_teardown(test_pipelined_replace_of_big_hash, free_own),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
