/*
 * sutarget.h - the server whose replies a test checks, for the tests that
 * also run against a real redis-server to check their expectations
 * (test_commands.c, test_exec_atomic.c): ctxd normally, redis-server when
 * CTXD_TEST_REDIS=1 (the tests skip their ctx-only parts when is_redis).
 * target_start in main before the tests, target_stop after them; setup, as
 * each test's setup, empties the server. Static: each test program includes
 * it once, after suclient.h.
 */
#ifndef CTXD_SUTARGET_H
#define CTXD_SUTARGET_H

static bool is_redis;
static su_server *target_server; /* ctxd or redis-server */
/* The same server's port, for suclient.h's helpers (raw_open(&target)). */
static su_server target;

/* Start ctxd (under `name`), or redis-server with CTXD_TEST_REDIS=1. */
static void target_start(const char *name)
{
	const char *redis = getenv("CTXD_TEST_REDIS");
	is_redis = redis && redis[0] == '1';
	target_server = is_redis ? su_start_redis(name) : su_start(name, NULL);
	target.port = target_server->port;
}

/* Stop the server and remove its directory. */
static void target_stop(void)
{
	su_free(target_server);
	target_server = NULL;
}

static redisContext *conn(void)
{
	return hconn(&target);
}

/* Empty the server: FLUSHALL on Redis; on ctxd, drop every context (FLUSHALL
 * leaves the empty ones). */
static void flush_all(void)
{
	redisContext *c = conn();
	if (is_redis)
		freeReplyObject(cmd(c, "FLUSHALL"));
	else
		drop_all_contexts(c);
	redisFree(c);
}

/* Each test's setup: start from an empty server. */
static int setup(void **state)
{
	(void)state;
	flush_all();
	return 0;
}

#endif
