/*
 * test_r19_obuf_srv.c - maxmemory-clients: a bound on all clients' unsent
 * output together (round 19, r19-obuf).
 *
 * The per-client limits (client-output-buffer-limit) bound one client; in
 * round 18, 10 clients that sent requests and never read their replies held
 * 1.46 GB. Now past maxmemory-clients (default 1gb) a client holding more
 * than its share of it is closed when it adds output (net.c, ALL CLIENTS'
 * OUTPUT). Checked, with the per-client limits off:
 * - 10 such clients, each asking for 32 replies of 1 MiB: clients are
 *   closed, the output held (INFO mem_clients_normal) stays within the
 *   limit plus a reply and the counting grain a client, the server goes
 *   on serving, and once they are gone the count is back to exactly 0;
 * - a client below the limit that reads gets all its replies;
 * - 0 turns the bound off: 3 such clients keep 3 x ~20 MiB and stay;
 * - CONFIG GET / SET and their errors.
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

#define MIB     ((size_t)1 << 20)
#define HOGS    10
#define REPLIES 32
#define GRAIN   ((size_t)16 << 10) /* net.c's OUT_GRAIN */

static const char hget[] = "*3\r\n$4\r\nHGET\r\n$3\r\nbig\r\n$1\r\nf\r\n";

/* The per-client limits off; a 1 MiB value to ask for. */
static redisContext *setup_server(const su_server *s)
{
	redisContext *admin = hconn(s);
	wait_connected(admin, 1);
	EXPECT_STATUS(admin, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 0 0 0");
	char *v = malloc(MIB);
	assert_non_null(v);
	memset(v, 'v', MIB);
	redisReply *r = cmd(admin, "HSET big f %b", v, MIB);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	free(v);
	return admin;
}

/* Ask for REPLIES replies of 1 MiB on fd, and read none. */
static void hog_send(int fd)
{
	for (int i = 0; i < REPLIES; i++)
		assert_true(su_send(fd, hget, sizeof(hget) - 1));
}

/* A connection that asks for REPLIES replies of 1 MiB and reads none. */
static int hog(const su_server *s)
{
	int fd = su_connect(s);
	assert_true(fd >= 0);
	hog_send(fd);
	return fd;
}

static void test_hogs_are_closed_past_the_bound(void **state)
{
	(void)state;
	static const char *const args[] = {"--maxmemory-clients", "8mb", "--durability", "none",
	                                   NULL};
	own = su_start("r19_obuf", args);
	redisContext *admin = setup_server(own);
	expect_config(admin, "maxmemory-clients", "8388608");
	assert_int_equal(info_int(admin, "memory", "maxmemory_clients"), 8 * MIB);

	int fd[HOGS];
	for (int i = 0; i < HOGS; i++)
		fd[i] = hog(own);
	/* Each asks for 32 MiB, of which the sockets take a few: without the
	 * bound ~150 MiB would be held. Wait until some are closed. */
	while (info_int(admin, "clients", "connected_clients") > HOGS)
		usleep(20000);
	long long held = info_int(admin, "memory", "mem_clients_normal");
	long long bound = (long long)(8 * MIB + HOGS * (MIB + GRAIN) + MIB);
	print_message("held %lld bytes with %lld hogs left (bound %lld)\n", held,
	              info_int(admin, "clients", "connected_clients") - 1, bound);
	if (held > bound)
		fail_msg("mem_clients_normal %lld over %lld", held, bound);
	/* Still serving, a 1 MiB reply too. */
	redisReply *r = cmd(admin, "HGET big f");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, MIB);
	freeReplyObject(r);
	for (int i = 0; i < HOGS; i++)
		close(fd[i]);
	wait_connected(admin, 1);
	/* Every byte counted was given back: exactly 0 (admin's small
	 * replies are never counted). */
	assert_int_equal(info_int(admin, "memory", "mem_clients_normal"), 0);

	/* Below the bound, a client that reads gets every reply. */
	redisContext *reader = hconn(own);
	for (int i = 0; i < 4; i++)
		assert_int_equal(redisAppendCommand(reader, "HGET big f"), REDIS_OK);
	for (int i = 0; i < 4; i++) {
		redisReply *x;
		assert_int_equal(redisGetReply(reader, (void **)&x), REDIS_OK);
		assert_int_equal(x->type, REDIS_REPLY_STRING);
		assert_int_equal(x->len, MIB);
		freeReplyObject(x);
	}
	redisFree(reader);
	wait_connected(admin, 1);
	assert_int_equal(info_int(admin, "memory", "mem_clients_normal"), 0);
	redisFree(admin);
	assert_int_equal(su_stop(own), 0);
}

static void test_zero_is_no_bound(void **state)
{
	(void)state;
	static const char *const args[] = {"--maxmemory-clients", "0", "--durability", "none",
	                                   NULL};
	own = su_start("r19_obuf_off", args);
	redisContext *admin = setup_server(own);
	expect_config(admin, "maxmemory-clients", "0");
	/* All three connected before any asks: the count below is then 4
	 * unless one was closed (round 20: with the requests sent at once, the
	 * output of two could pass the mark while the third was not accepted
	 * yet, under ASan on a loaded machine). */
	int fd[3];
	for (int i = 0; i < 3; i++) {
		fd[i] = su_connect(own);
		assert_true(fd[i] >= 0);
	}
	wait_connected(admin, 4);
	for (int i = 0; i < 3; i++)
		hog_send(fd[i]);
	/* Their replies made (at most a few MiB each in the sockets). */
	while (info_int(admin, "memory", "mem_clients_normal") < (long long)(3 * 12 * MIB))
		usleep(20000);
	assert_int_equal(info_int(admin, "clients", "connected_clients"), 4);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	wait_connected(admin, 1);
	assert_int_equal(info_int(admin, "memory", "mem_clients_normal"), 0);
	redisFree(admin);
	assert_int_equal(su_stop(own), 0);
}

static void test_config(void **state)
{
	(void)state;
	own = su_start("r19_obuf_config", NULL);
	redisContext *c = hconn(own);
	expect_config(c, "maxmemory-clients", "1073741824");
	EXPECT_ERR(c, "ERR Invalid argument for CONFIG SET 'maxmemory-clients'",
	           "CONFIG SET maxmemory-clients 1000");
	EXPECT_ERR(c, "ERR Invalid argument for CONFIG SET 'maxmemory-clients'",
	           "CONFIG SET maxmemory-clients lots");
	expect_config(c, "maxmemory-clients", "1073741824");
	EXPECT_STATUS(c, "OK", "CONFIG SET maxmemory-clients 2gb");
	expect_config(c, "maxmemory-clients", "2147483648");
	EXPECT_STATUS(c, "OK", "CONFIG SET maxmemory-clients 0");
	expect_config(c, "maxmemory-clients", "0");
	redisFree(c);
	assert_int_equal(su_stop(own), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_hogs_are_closed_past_the_bound, free_own),
	    cmocka_unit_test_teardown(test_zero_is_no_bound, free_own),
	    cmocka_unit_test_teardown(test_config, free_own),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
