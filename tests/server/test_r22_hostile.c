/*
 * test_r22_hostile.c - what round 22's hostile-input pass (r22-hostile)
 * found in ctxd.
 *
 * - CTX.TRACK right after the connection's own write, pipelined: the
 *   tracker was opened on the newest *durable* version (ctx_get), so a
 *   context created by the previous request was "-CTXNOTFOUND no context"
 *   and a field just written read back its old value through CTX.TGET,
 *   against docs/protocol.md ("a client sees its own writes at once, even
 *   pipelined"). Repeated: the write is decided and not yet durable when
 *   CTX.TRACK runs only most of the time.
 * - MULTI's queue counted against client-query-buffer-limit only its
 *   commands' argument bytes and vectors: 20 bytes for a PING, which with
 *   its slot in the queue and its allocation takes 50-80, so one MULTI held
 *   about 2.5 times the limit (3 GB at the default 1 GB); and the queue's
 *   vector stayed allocated, uncounted, after DISCARD / EXEC (192 MB after
 *   8 million queued PINGs). Now each command counts its overhead too.
 * - A CTX.WATCH stream that is not read: the events of one wake-up (up to
 *   1024, each with its commit's keys) were all appended before the output
 *   limits were checked, at the flush: 3.4 MB pending at a 1 MB hard limit
 *   with events of 60 KB, and without bound for larger commits. Now checked
 *   after each event: closed within one event of the limit.
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

SU_GROUP_SERVER("r22_hostile")

#define ROUNDS 20

static void test_track_sees_own_pipelined_writes(void **state)
{
	(void)state;
	rawconn *r = raw_open(srv);
	char req[512];
	for (int i = 0; i < ROUNDS; i++) {
		/* a context created by the request before */
		snprintf(req, sizeof(req),
		         "*2\r\n$10\r\nCTX.CREATE\r\n$4\r\nn%03d\r\n"
		         "*2\r\n$9\r\nCTX.TRACK\r\n$4\r\nn%03d\r\n",
		         i, i);
		assert_true(su_send(r->fd, req, strlen(req)));
		raw_expect(r, NULL, "+OK");
		raw_expect(r, NULL, "+OK");
		/* a field changed by the request before */
		snprintf(req, sizeof(req),
		         "*4\r\n$4\r\nHSET\r\n$4\r\nh%03d\r\n$1\r\na\r\n$3\r\nold\r\n", i);
		raw_expect(r, req, ":1");
		snprintf(req, sizeof(req),
		         "*4\r\n$4\r\nHSET\r\n$4\r\nh%03d\r\n$1\r\na\r\n$3\r\nnew\r\n"
		         "*2\r\n$9\r\nCTX.TRACK\r\n$4\r\nh%03d\r\n"
		         "*2\r\n$8\r\nCTX.TGET\r\n$1\r\na\r\n",
		         i, i);
		assert_true(su_send(r->fd, req, strlen(req)));
		raw_expect(r, NULL, ":0");
		raw_expect(r, NULL, "+OK");
		raw_expect(r, NULL, "$3\r\nnew\r\n");
	}
	/* and the tracker works on from there: its sync makes version 3 */
	raw_expect(r, "*3\r\n$8\r\nCTX.TSET\r\n$1\r\nb\r\n$1\r\n2\r\n", "+OK");
	raw_expect(r, "*1\r\n$8\r\nCTX.SYNC\r\n", ":3");
	raw_close(r);
}

/* CTX.TRACK's errors still come before anything is opened, and a failed
 * CTX.TRACK leaves the connection's tracker as it was. */
static void test_track_errors(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.TRACK nosuch");
	EXPECT_ERR(c, "ERR no tracker on this connection", "CTX.TGET a");
	EXPECT_ERR(c, "ERR STRATEGY is latest, oldest or manual", "CTX.TRACK x STRATEGY y");
	EXPECT_ERR(c, "ERR INTERVAL is out of range", "CTX.TRACK x INTERVAL 4294967296");
	EXPECT_ERR(c, "ERR syntax error", "CTX.TRACK x POINTS y");
	EXPECT_INT(c, 1, "HSET te a 1");
	EXPECT_STATUS(c, "OK", "CTX.TRACK te STRATEGY manual INTERVAL 100000 POINTS");
	EXPECT_STATUS(c, "OK", "CTX.TSET a 2");
	EXPECT_ERR(c, "CTXNOTFOUND", "CTX.TRACK nosuch");
	redisReply *r = cmd(c, "CTX.TGET a");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_string_equal(r->str, "2");
	freeReplyObject(r);
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_ERR(c, "ERR Command not allowed inside a transaction", "CTX.TRACK te");
	EXPECT_STATUS(c, "OK", "DISCARD");
	redisFree(c);
}

/* MULTI, n PINGs, EXEC in one write; returns how many +QUEUED came back
 * and whether EXEC's array did (else the server closed the connection). */
static int multi_pings(rawconn *r, int n, bool *exec_replied)
{
	static const char ping[] = "*1\r\n$4\r\nPING\r\n";
	size_t len = 32 + (size_t)n * (sizeof(ping) - 1);
	char *req = malloc(len), *p = req;
	assert_non_null(req);
	p += sprintf(p, "*1\r\n$5\r\nMULTI\r\n");
	for (int i = 0; i < n; i++, p += sizeof(ping) - 1)
		memcpy(p, ping, sizeof(ping) - 1);
	p += sprintf(p, "*1\r\n$4\r\nEXEC\r\n");
	/* The server may close while this is being sent: a failed send is fine. */
	(void)su_send(r->fd, req, (size_t)(p - req));
	free(req);
	int queued = 0;
	*exec_replied = false;
	const char *out = raw_try_next(r, 120000);
	if (out)
		assert_string_equal(out, "+OK\r\n");
	while (out && (out = raw_try_next(r, 120000)) != NULL) {
		if (strcmp(out, "+QUEUED\r\n") == 0) {
			queued++;
		} else {
			assert_int_equal(out[0], '*');
			assert_int_equal(atoi(out + 1), n);
			*exec_replied = true;
			break;
		}
	}
	return queued;
}

static void test_multi_queue_counts_its_overhead(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1mb");
	/* 30,000 PINGs: 600 KB of arguments, over 1.5 MB with what queuing them
	 * takes: closed before EXEC */
	rawconn *r = raw_open(srv);
	bool replied;
	int queued = multi_pings(r, 30000, &replied);
	if (replied)
		fail_msg("a MULTI of 30000 PINGs was kept whole under a 1 MiB limit");
	assert_true(queued < 30000);
	raw_close(r);
	/* 4,000 PINGs (about 330 KB counted) are well within it */
	r = raw_open(srv);
	queued = multi_pings(r, 4000, &replied);
	assert_true(replied);
	assert_int_equal(queued, 4000);
	raw_expect(r, "*1\r\n$4\r\nPING\r\n", "+PONG");
	raw_close(r);
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1gb");
	EXPECT_STATUS(c, "PONG", "PING");
	redisFree(c);
}

#define WQ_COMMITS 150
#define WQ_FIELDS  4
#define WQ_KEY     60000 /* under max_key_size (65536) */

static void test_unread_watch_is_closed_within_an_event(void **state)
{
	(void)state;
	own = su_start("r22_hostile_watch", NULL);
	redisContext *c = hconn(own);
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 1mb 0 0");
	rawconn *w = raw_open(own);
	raw_expect(w, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", "%");
	raw_expect(w, "*3\r\n$9\r\nCTX.WATCH\r\n$6\r\nPREFIX\r\n$2\r\nwq\r\n", "+OK");
	/* WQ_COMMITS commits of WQ_FIELDS keys of 60 KB, pipelined: events of
	 * 240 KB, many of them ready at each fsync */
	size_t one = 64 + WQ_FIELDS * (WQ_KEY + 32), len = 0;
	char *req = malloc(one * WQ_COMMITS);
	assert_non_null(req);
	char *key = malloc(WQ_KEY);
	assert_non_null(key);
	memset(key, 'k', WQ_KEY);
	for (int i = 0; i < WQ_COMMITS; i++) {
		len += (size_t)sprintf(req + len, "*%d\r\n$4\r\nHSET\r\n$5\r\nwq%03d\r\n",
		                       2 + 2 * WQ_FIELDS, i);
		for (int f = 0; f < WQ_FIELDS; f++) {
			snprintf(key, WQ_KEY, "%03d-%d", i, f);
			key[strlen(key)] = 'k';
			len += (size_t)sprintf(req + len, "$%d\r\n", WQ_KEY);
			memcpy(req + len, key, WQ_KEY);
			len += WQ_KEY;
			len += (size_t)sprintf(req + len, "\r\n$1\r\nv\r\n");
		}
	}
	free(key);
	rawconn *wr = raw_open(own);
	assert_true(su_send(wr->fd, req, len));
	free(req);
	for (int i = 0; i < WQ_COMMITS; i++)
		raw_expect(wr, NULL, ":4");
	raw_close(wr);
	/* the watcher never reads: closed at the hard limit */
	assert_true(su_wait_closed(w->fd, 60000));
	raw_close(w);
	EXPECT_STATUS(c, "PONG", "PING");
	redisFree(c);
	/* how much it held then: within one event (240 KB) of the limit */
	FILE *f = fopen(own->log, "r");
	assert_non_null(f);
	char line[1024];
	long long pending = -1;
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "closed: ");
		if (p && strstr(p, "over the hard limit 1048576"))
			pending = atoll(p + strlen("closed: "));
	}
	fclose(f);
	if (pending < 0)
		fail_msg("no 'over the hard limit' close in %s", own->log);
	if (pending > (1 << 20) + (512 << 10))
		fail_msg("the watcher held %lld bytes at a hard limit of 1 MiB", pending);
	assert_int_equal(su_stop(own), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_track_sees_own_pipelined_writes),
	    cmocka_unit_test(test_track_errors),
	    cmocka_unit_test(test_multi_queue_counts_its_overhead),
	    cmocka_unit_test_teardown(test_unread_watch_is_closed_within_an_event, free_own),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
