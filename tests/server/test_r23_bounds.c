/*
 * test_r23_bounds.c - memory of ctxd that grew without a byte bound
 * (round 23, r23-bounds).
 *
 * - An idle connection kept the buffers of its largest request and reply:
 *   its input buffer and its reply buffer up to 1 MiB each, and its
 *   argument vector (16 bytes an argument, up to 1,048,576 arguments:
 *   16 MiB) for its life. maxclients connections that each sent one
 *   large request once and then idled held that many times it (5 MB a
 *   connection after an HDEL of 200,000 fields; 69 KB after a PING, where
 *   Redis 7 holds 10 KB), counted by no limit. Now the loop's timer frees
 *   each connection's emptied buffers once a second; CLIENT LIST's
 *   tot-mem shows what its buffers hold.
 * - maxmemory-clients counted the clients' pending output only: clients
 *   that each sent part of a large request (up to
 *   client-query-buffer-limit, 1 GB, each) and no more held it all, however
 *   many (6 of 40 MB: 274 MB at a maxmemory-clients of 64mb, where Redis 7
 *   closed them). Now their unparsed input and MULTI queues count too.
 * - A client that pipelines writes without reading their replies while the
 *   log's sync stalls (a slow disk): its commits went on at the loop's
 *   rate, each holding its record, version and mark until durable, where
 *   only its 4-byte replies counted (628 MB of RSS in 5 s, 6 MB counted).
 *   Now its input waits once its parked commits hold about 16 MiB, and
 *   runs again as they become durable (SYNCSTALL shim; not under
 *   sanitizers).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serverutil.h"

#include "suclient.h"

SU_GROUP_SERVER("r23_bounds")

/* CLIENT LIST's tot-mem of client `id`, seen from connection c. */
static long long tot_mem(redisContext *c, long long id)
{
	redisReply *r = cmd(c, "CLIENT LIST ID %lld", id);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	const char *p = strstr(r->str, " tot-mem=");
	if (!p)
		fail_msg("no tot-mem in '%s'", r->str);
	long long v = atoll(p + strlen(" tot-mem="));
	freeReplyObject(r);
	return v;
}

#define NFIELDS 100000
#define BIGVAL  (512 << 10)

static void test_idle_connection_frees_its_buffers(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	rawconn *a = raw_open(srv);
	const char *out = NULL;
	assert_true(su_send(a->fd, "CLIENT ID\r\n", 11));
	out = raw_next(a);
	assert_true(out[0] == ':');
	long long id = atoll(out + 1);

	/* A request of 100,002 arguments, all but its last field sent: the
	 * connection holds its input and the arguments parsed so far, and a
	 * timer tick meanwhile must not take them. */
	size_t cap = (size_t)NFIELDS * 16 + 64, len = 0;
	char *req = malloc(cap);
	assert_non_null(req);
	len += (size_t)snprintf(req + len, cap - len, "*%d\r\n$4\r\nHDEL\r\n$5\r\nnokey\r\n",
	                        NFIELDS + 2);
	for (int i = 0; i < NFIELDS; i++)
		len += (size_t)snprintf(req + len, cap - len, "$6\r\nf%05d\r\n", i);
	size_t last = strlen("$6\r\nf99999\r\n");
	assert_true(su_send(a->fd, req, len - last));
	long long held = 0;
	for (int i = 0; i < 600 && held < (1 << 20); i++) {
		held = tot_mem(c, id);
		if (held < (1 << 20))
			usleep(100000);
	}
	if (held < (1 << 20))
		fail_msg("tot-mem %lld with 1.2 MB of a request pending", held);
	usleep(1500000); /* a tick or so with the request incomplete */
	assert_true(su_send(a->fd, req + len - last, last));
	raw_expect(a, NULL, ":0");
	free(req);

	/* a reply of 512 KiB */
	char *val = malloc(BIGVAL);
	assert_non_null(val);
	memset(val, 'v', BIGVAL);
	redisContext *w = hconn(srv);
	EXPECT_INT(w, 1, "HSET r23big f %b", val, (size_t)BIGVAL);
	redisFree(w);
	free(val);
	assert_true(su_send(a->fd, "HSTRLEN r23big f\r\n", 18));
	raw_expect(a, NULL, ":524288");
	assert_true(su_send(a->fd, "HGET r23big f\r\n", 15));
	raw_expect(a, NULL, "$524288\r\nvvvv");

	/* idle now: its buffers go within a second or two */
	for (int i = 0; i < 600 && (held = tot_mem(c, id)) > 4096; i++)
		usleep(100000);
	if (held > 4096)
		fail_msg("an idle connection still holds %lld bytes of buffers after 60 s", held);
	/* and it works on */
	raw_expect(a, "PING\r\n", "+PONG");
	raw_expect(a, "DEL r23big\r\n", ":1");
	raw_close(a);
	redisFree(c);
}

#define MIB     (1 << 20)
#define NPART   4
#define PARTMIB 3

static void test_partial_requests_count_in_maxmemory_clients(void **state)
{
	(void)state;
	static const char *const args[] = {"--maxmemory-clients", "4mb", "--durability", "none",
	                                   NULL};
	own = su_start("r23_partial", args);
	redisContext *c = hconn(own);
	char *chunk = malloc(MIB);
	assert_non_null(chunk);
	memset(chunk, 'p', MIB);
	/* each sends 3 MiB of a 100 MiB value and no more */
	rawconn *p[NPART];
	static const char head[] = "*4\r\n$4\r\nHSET\r\n$2\r\npk\r\n$1\r\nf\r\n$104857600\r\n";
	for (int i = 0; i < NPART; i++) {
		p[i] = raw_open(own);
		if (!su_send(p[i]->fd, head, strlen(head)))
			continue;
		for (int k = 0; k < PARTMIB; k++)
			if (!su_send(p[i]->fd, chunk, MIB)) /* closed by the server */
				break;
	}
	free(chunk);
	/* 12 MiB of input at a limit of 4 MiB: all but one are closed */
	long long mem = 0;
	for (int i = 0; i < 600 && (mem = info_int(c, "memory", "mem_clients_normal")) > 4 * MIB;
	     i++)
		usleep(100000);
	int closed = 0;
	for (int i = 0; i < NPART; i++) {
		closed += su_wait_closed(p[i]->fd, 2000);
		raw_close(p[i]);
	}
	if (closed < NPART - 1)
		fail_msg("%d of %d clients holding %d MiB of input each closed at a "
		         "maxmemory-clients of 4 MiB (mem_clients_normal %lld)",
		         closed, NPART, PARTMIB, mem);
	EXPECT_STATUS(c, "PONG", "PING");
	redisFree(c);
	assert_int_equal(su_stop(own), 0);
}

#define NWRITES 40000
#define WVAL    1000

static void test_parked_writes_hold_back_input(void **state)
{
	(void)state;
#ifndef SYNCSTALL
	print_message("  (skipped: the syncstall shim is not built here)\n");
#else
	start_stalled("r23_stall", SYNCSTALL);
	redisContext *c = hconn(own);
	long long rev0 = info_int(c, "persistence", "revision");

	/* 40,000 writes of 1 KB, alternating two keys (each its own commit) */
	char val[WVAL + 1];
	memset(val, 'w', WVAL);
	val[WVAL] = '\0';
	size_t one = (size_t)snprintf(
	    NULL, 0, "*4\r\n$4\r\nHSET\r\n$1\r\na\r\n$1\r\nf\r\n$%d\r\n%s\r\n", WVAL, val);
	size_t total = one * NWRITES;
	char *req = malloc(total + 1);
	assert_non_null(req);
	for (int i = 0; i < NWRITES; i++)
		snprintf(req + (size_t)i * one, one + 1,
		         "*4\r\n$4\r\nHSET\r\n$1\r\n%c\r\n$1\r\nf\r\n$%d\r\n%s\r\n",
		         i % 2 ? 'b' : 'a', WVAL, val);
	FILE *f = fopen(stall_file, "w");
	assert_non_null(f);
	fclose(f);
	rawconn *w = raw_open(own);
	fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
	size_t sent = 0;
	/* send until all is sent or the server took nothing for 5 s */
	for (int idle = 0; sent < total && idle < 50;) {
		ssize_t k = send(w->fd, req + sent, total - sent, MSG_NOSIGNAL);
		if (k > 0) {
			sent += (size_t)k;
			idle = 0;
			continue;
		}
		assert_true(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
		struct pollfd p = {.fd = w->fd, .events = POLLOUT};
		if (poll(&p, 1, 100) == 0)
			idle++;
	}
	long long during = info_int(c, "persistence", "revision") - rev0;
	print_message("  %lld commits while the sync stalled, %zu of %zu bytes taken\n", during,
	              sent, total);
	/* about 16 MiB / 1.5 KB = 10,800 commits; not all 40,000 */
	if (during >= NWRITES / 2)
		fail_msg("%lld commits (%zu of %zu bytes taken) while the log's sync stalled",
		         during, sent, total);
	/* the sync comes back: everything runs, every reply arrives */
	unlink(stall_file);
	fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) & ~O_NONBLOCK);
	assert_true(su_send(w->fd, req + sent, total - sent));
	free(req);
	for (int i = 0; i < NWRITES; i++)
		raw_expect(w, NULL, i < 2 ? ":1" : ":0");
	raw_close(w);
	assert_int_equal(info_int(c, "persistence", "revision") - rev0, NWRITES);
	redisFree(c);
	assert_int_equal(su_stop(own), 0);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idle_connection_frees_its_buffers),
	    cmocka_unit_test_teardown(test_partial_requests_count_in_maxmemory_clients, free_own),
	    cmocka_unit_test_teardown(test_parked_writes_hold_back_input, free_stalled),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
