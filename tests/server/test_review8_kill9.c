/*
 * test_review8_kill9.c - round 8 review: kill -9 of ctxd (durability always,
 * the default) while several clients write at once, then a restart: every
 * acknowledged write is there, nothing that was never sent is, and every
 * EXEC is whole.
 *
 * Round 7 changed ctxd's write path (a write batch's transaction starts
 * from the version its command read, ctx_txn_begin_state; the input of a
 * poll phase's reads runs in the check phase after one prefetch of every
 * ready client's keys) and the log (format 2, the backlog bound). The
 * clients, each on its own connection and thread, until the server dies:
 *   - two field writers: HSET h<r>:<t> f<i> <i>, one request at a time;
 *   - a pipelining writer: 64 HSETs of its own hash sent, then their 64
 *     replies read (acknowledged: the replies read);
 *   - a counter client: HINCRBY c<r> n 1 on one hash that the other
 *     writers increment too, every fourth request;
 *   - an EXEC client: MULTI, HSET m<r> a <i>, HINCRBY m<r> c 1, HSET m<r> b
 *     <i>, EXEC;
 *   - a drop-and-write client: DEL d<r>, then HSET d<r> x <i>: the same id
 *     dropped and created again (a write batch from a version of an older
 *     incarnation must not apply to the new one).
 * The main thread kills the server (SIGKILL) at a random moment once every
 * client has had at least one reply, restarts it on the same directory and
 * checks, per round:
 *   - each field writer's hash holds f0..f<acked-1> with their values and
 *     no field at or past what it sent;
 *   - the counter is between the increments acknowledged and those sent;
 *   - m<r>: a == b, c == a + 1 (one EXEC per index, whole), a at least the
 *     last EXEC acknowledged;
 *   - d<r>: absent (a DEL after the last acknowledged HSET may have been
 *     kept), or x between the last acknowledged HSET and the last sent.
 * Then the server stops cleanly (exit 0). No timing is asserted; the kill
 * delay is random and only spreads the moments tried.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serverutil.h"

#include "suclient.h"

enum { FIELD_WRITERS = 2, PIPE = 64, ROUNDS = 4 };

typedef struct shared {
	const su_server *srv;
	int round;
	atomic_long cnt_sent, cnt_acked;
	atomic_int started; /* clients that have had a reply */
} shared;

typedef struct client_job {
	shared *sh;
	int kind;         /* 0,1 field writers, 2 pipeliner, 3 counter, 4 exec, 5 drop+write */
	long sent, acked; /* requests sent / acknowledged (sequence numbers) */
	long last_acked, last_sent; /* exec and drop+write: indexes */
	long del_sent;              /* drop+write: index of the last DEL sent */
} client_job;

static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static redisContext *connect_quiet(const su_server *s)
{
	redisContext *c = redisConnect("127.0.0.1", s->port);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	struct timeval tv = {60, 0};
	redisSetTimeout(c, tv);
	return c;
}

static bool int_reply(redisReply *r)
{
	return r && r->type == REDIS_REPLY_INTEGER;
}

/* HINCRBY c<r> n 1 (every fourth request of the writers). */
static bool bump(redisContext *c, shared *sh)
{
	atomic_fetch_add(&sh->cnt_sent, 1);
	redisReply *r = redisCommand(c, "HINCRBY c%d n 1", sh->round);
	bool ok = int_reply(r);
	if (ok)
		atomic_fetch_add(&sh->cnt_acked, 1);
	if (r)
		freeReplyObject(r);
	return ok;
}

static void mark_started(client_job *j, bool *marked)
{
	if (!*marked) {
		*marked = true;
		atomic_fetch_add(&j->sh->started, 1);
	}
}

static void *client_main(void *p)
{
	client_job *j = p;
	shared *sh = j->sh;
	redisContext *c = connect_quiet(sh->srv);
	bool marked = false;
	j->last_acked = j->last_sent = j->del_sent = -1;
	if (!c) {
		mark_started(j, &marked);
		return NULL;
	}
	for (long i = 0;; i++) {
		redisReply *r = NULL;
		bool ok = false;
		if (j->kind <= 1) {
			j->sent = i + 1;
			r = redisCommand(c, "HSET h%d:%d f%ld %ld", sh->round, j->kind, i, i);
			ok = int_reply(r);
			if (ok)
				j->acked = i + 1;
		} else if (j->kind == 2) {
			for (int k = 0; k < PIPE; k++)
				redisAppendCommand(c, "HSET p%d f%ld %ld", sh->round, i * PIPE + k,
				                   i * PIPE + k);
			j->sent = (i + 1) * PIPE;
			ok = true;
			for (int k = 0; k < PIPE && ok; k++) {
				if (redisGetReply(c, (void **)&r) != REDIS_OK)
					r = NULL;
				ok = int_reply(r);
				if (ok)
					j->acked = i * PIPE + k + 1;
				if (r)
					freeReplyObject(r);
				r = NULL;
			}
		} else if (j->kind == 3) {
			ok = bump(c, sh);
		} else if (j->kind == 4) {
			j->last_sent = i;
			redisAppendCommand(c, "MULTI");
			redisAppendCommand(c, "HSET m%d a %ld", sh->round, i);
			redisAppendCommand(c, "HINCRBY m%d c 1", sh->round);
			redisAppendCommand(c, "HSET m%d b %ld", sh->round, i);
			redisAppendCommand(c, "EXEC");
			ok = true;
			for (int k = 0; k < 5 && ok; k++) {
				if (redisGetReply(c, (void **)&r) != REDIS_OK)
					r = NULL;
				ok = r && r->type != REDIS_REPLY_ERROR;
				if (ok && k == 4)
					ok = r->type == REDIS_REPLY_ARRAY && r->elements == 3;
				if (r)
					freeReplyObject(r);
				r = NULL;
			}
			if (ok)
				j->last_acked = i;
		} else {
			j->del_sent = i;
			r = redisCommand(c, "DEL d%d", sh->round);
			ok = int_reply(r);
			if (r)
				freeReplyObject(r);
			r = NULL;
			if (ok) {
				j->last_sent = i;
				r = redisCommand(c, "HSET d%d x %ld", sh->round, i);
				ok = int_reply(r);
				if (ok)
					j->last_acked = i;
			}
		}
		if (r)
			freeReplyObject(r);
		if (!ok)
			break;
		mark_started(j, &marked);
		if (j->kind <= 2 && i % 4 == 3 && !bump(c, sh))
			break;
	}
	mark_started(j, &marked);
	redisFree(c);
	return NULL;
}

/* The integer value of a hash field (-1 if absent). */
static long long field(redisContext *c, const char *key, const char *f)
{
	redisReply *r = cmd(c, "HGET %s %s", key, f);
	long long v = -1;
	if (r->type == REDIS_REPLY_STRING)
		v = atoll(r->str);
	else
		assert_int_equal(r->type, REDIS_REPLY_NIL);
	freeReplyObject(r);
	return v;
}

/* Every field f0..f<acked-1> of key holds its index; none at or past sent. */
static void check_fields(redisContext *c, const char *key, long acked, long sent)
{
	redisReply *r = cmd(c, "HGETALL %s", key);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	char *seen = calloc((size_t)sent + 1, 1);
	for (size_t e = 0; e + 1 < r->elements; e += 2) {
		const char *f = r->element[e]->str;
		assert_true(f[0] == 'f');
		long idx = atol(f + 1);
		if (idx < 0 || idx >= sent)
			fail_msg("%s holds %s, never sent (sent %ld)", key, f, sent);
		assert_int_equal(atol(r->element[e + 1]->str), idx);
		seen[idx] = 1;
	}
	for (long i = 0; i < acked; i++)
		if (!seen[i])
			fail_msg("%s lost f%ld, acknowledged (acked %ld, sent %ld)", key, i, acked,
			         sent);
	free(seen);
	freeReplyObject(r);
}

static void test_kill9_under_concurrent_writers(void **state)
{
	(void)state;
	su_server *s = su_start("review8-kill9", NULL);
	uint64_t rnd = (uint64_t)time(NULL) * 2654435761u | 1;
	printf("seed %llu\n", (unsigned long long)rnd);
	for (int round = 0; round < ROUNDS; round++) {
		shared sh = {.srv = s, .round = round};
		enum { N = 6 };
		client_job jobs[N];
		pthread_t th[N];
		for (int k = 0; k < N; k++) {
			jobs[k] = (client_job){.sh = &sh, .kind = k};
			pthread_create(&th[k], NULL, client_main, &jobs[k]);
		}
		/* Once every client has had a reply: a random moment more. */
		while (atomic_load(&sh.started) < N)
			usleep(1000);
		usleep((useconds_t)((next_rand(&rnd) % 400) * 1000));
		su_kill9(s);
		for (int k = 0; k < N; k++)
			pthread_join(th[k], NULL);
		su_restart(s, NULL);
		redisContext *c = hconn(s);
		char key[32];
		for (int k = 0; k < FIELD_WRITERS; k++) {
			snprintf(key, sizeof(key), "h%d:%d", round, k);
			check_fields(c, key, jobs[k].acked, jobs[k].sent);
		}
		snprintf(key, sizeof(key), "p%d", round);
		check_fields(c, key, jobs[2].acked, jobs[2].sent);
		snprintf(key, sizeof(key), "c%d", round);
		long long n = field(c, key, "n");
		if (n < 0)
			n = 0;
		printf("round %d: fields acked %ld %ld %ld; counter %lld (acked %ld, sent %ld); "
		       "exec %ld/%ld; drop+write %ld/%ld\n",
		       round, jobs[0].acked, jobs[1].acked, jobs[2].acked, n,
		       atomic_load(&sh.cnt_acked), atomic_load(&sh.cnt_sent), jobs[4].last_acked,
		       jobs[4].last_sent, jobs[5].last_acked, jobs[5].last_sent);
		assert_true(n >= atomic_load(&sh.cnt_acked));
		assert_true(n <= atomic_load(&sh.cnt_sent));
		snprintf(key, sizeof(key), "m%d", round);
		long long a = field(c, key, "a"), b = field(c, key, "b"), mc = field(c, key, "c");
		assert_int_equal(a, b);
		if (a >= 0)
			assert_int_equal(mc, a + 1);
		assert_true(a >= jobs[4].last_acked);
		assert_true(a <= jobs[4].last_sent);
		snprintf(key, sizeof(key), "d%d", round);
		long long x = field(c, key, "x");
		/* Absent only if a DEL was sent after the last acknowledged HSET
		 * (DEL i comes before HSET i). */
		if (jobs[5].last_acked >= 0 && jobs[5].del_sent == jobs[5].last_acked)
			assert_true(x >= 0);
		if (x >= 0) {
			assert_true(x >= jobs[5].last_acked);
			assert_true(x <= jobs[5].last_sent);
		}
		redisFree(c);
	}
	assert_int_equal(su_stop(s), 0);
	su_free(s);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill9_under_concurrent_writers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
