/*
 * test_cov_conn.c - ctxd's connection and server commands beyond the happy
 * paths of test_server.c: PING/AUTH/HELLO/SELECT argument errors, QUIT,
 * every CLIENT subcommand (SETNAME/GETNAME/ID/INFO/LIST/SETINFO/KILL in both
 * forms/NO-EVICT), CONFIG GET patterns and CONFIG SET of every setting
 * (values read back, bad values refused, all or nothing), requirepass set
 * at run time, COMMAND COUNT/LIST/INFO/DOCS, every INFO section in RESP2 and
 * RESP3, maxclients reached, the idle timeout, the output-buffer limits
 * (hard and soft), the query-buffer limit, big input and output buffers,
 * DBSIZE over more than one page, a RESP2 connection streaming events, and
 * the id checks shared by all commands.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serverutil.h"

/* ---- raw replies ----------------------------------------------------------------------- */

#include "suclient.h"

SU_GROUP_SERVER("covconn")

/* The "addr=" of this connection. */
static char *my_addr(redisContext *c)
{
	redisReply *r = cmd(c, "CLIENT INFO");
	const char *p = strstr(r->str, "addr=");
	assert_non_null(p);
	p += 5;
	char *a = strndup(p, strcspn(p, " "));
	freeReplyObject(r);
	return a;
}

/* ---- connection commands --------------------------------------------------------------------- */

static void test_connection_argument_errors(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_ERR(c, "ERR wrong number of arguments for 'ping' command", "PING a b");
	EXPECT_ERR(c, "ERR syntax error", "AUTH a b c");
	EXPECT_ERR(c, "ERR AUTH <password> called without any password configured", "AUTH pw");
	/* no password configured: the default user takes any password */
	EXPECT_STATUS(c, "OK", "AUTH default anything");
	EXPECT_ERR(c, "WRONGPASS", "AUTH someone anything");
	EXPECT_ERR(c, "ERR Syntax error in HELLO option 'BOGUS'", "HELLO 3 BOGUS");
	EXPECT_ERR(c, "ERR Syntax error in HELLO option 'AUTH'", "HELLO 2 AUTH onlyuser");
	EXPECT_ERR(c, "ERR Protocol version is not an integer", "HELLO %s", "");
	EXPECT_ERR(c, "ERR Protocol version is not an integer",
	           "HELLO 123456789012345678901234567890");
	EXPECT_ERR(c, "NOPROTO", "HELLO 1");
	EXPECT_ERR(c, "ERR Client names cannot contain spaces", "HELLO 2 SETNAME %s", "a\nb");
	/* SELECT's number: strict */
	EXPECT_STATUS(c, "OK", "SELECT 0");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "SELECT x");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "SELECT 01");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "SELECT -0");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "SELECT +1");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "SELECT %s", "");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "SELECT 99999999999999999999");
	EXPECT_ERR(c, "ERR value is not an integer or out of range",
	           "SELECT 1234567890123456789012345678901234567890");
	EXPECT_ERR(c, "ERR DB index is out of range", "SELECT -1");
	redisReply *r = cmd(c, "TIME");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 2);
	assert_true(atoll(r->element[0]->str) > 1600000000);
	assert_true(atoll(r->element[1]->str) < 1000000);
	freeReplyObject(r);
	/* a command name longer than any known one */
	char longname[100];
	memset(longname, 'X', 99);
	longname[99] = '\0';
	EXPECT_ERR(c, "ERR unknown command 'XXXX", "%s", longname);
	/* QUIT answers, then the server closes */
	EXPECT_STATUS(c, "OK", "QUIT");
	assert_true(su_wait_closed(c->fd, 20000));
	redisFree(c);
	/* QUIT behind a pipeline: the earlier replies still come */
	rawconn *rc = raw_open(srv);
	assert_true(su_send(rc->fd, "PING a\r\nQUIT\r\nPING b\r\n", 22));
	raw_expect(rc, NULL, "$1\r\na\r\n");
	raw_expect(rc, NULL, "+OK\r\n");
	assert_true(su_wait_closed(rc->fd, 20000));
	raw_close(rc);
}

/* Bad context ids, shared by every command taking a key. */
static void test_id_checks(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_ERR(c, "CTXINVALID a context id (key) is 1 to 256 bytes", "HSET %s f v", "");
	char big[300];
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	EXPECT_ERR(c, "CTXINVALID a context id (key) is 1 to 256 bytes", "HSET %s f v", big);
	EXPECT_ERR(c, "CTXINVALID a context id (key) may not hold control bytes", "HSET %b f v",
	           "a\x01", (size_t)2);
	EXPECT_ERR(c, "CTXINVALID a context id (key) may not hold control bytes", "HSET %b f v",
	           "a\x7f", (size_t)2);
	/* "." is the active context: none yet */
	EXPECT_ERR(c, "CTXNOTFOUND no active context", "HSET . f v");
	EXPECT_ERR(c, "CTXNOTFOUND no active context", "HGET . f");
	EXPECT_ERR(c, "CTXNOTFOUND no active context", "EXISTS .");
	/* reads of ids that cannot exist answer as for a missing key */
	EXPECT_NIL(c, "HGET %s f", "");
	EXPECT_NIL(c, "HGET %s f", big);
	EXPECT_INT(c, 0, "HLEN %b", "\x01", (size_t)1);
	EXPECT_INT(c, 0, "EXISTS %s %s", "", big);
	EXPECT_INT(c, 0, "DEL %s", "");
	/* with an active context "." names it */
	EXPECT_STATUS(c, "OK", "CTX.USE active CREATE");
	EXPECT_INT(c, 1, "HSET . f v");
	EXPECT_STATUS(c, "v", "HGET active f");
	EXPECT_STATUS(c, "v", "HGET . f");
	EXPECT_INT(c, 1, "EXISTS .");
	EXPECT_STATUS(c, "active", "CTX.CURRENT");
	EXPECT_INT(c, 1, "DEL .");
	redisFree(c);
}

/* ---- CLIENT ---------------------------------------------------------------------------------- */

static void test_client_subcommands(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_NIL(c, "CLIENT GETNAME");
	EXPECT_STATUS(c, "OK", "CLIENT SETNAME first");
	EXPECT_STATUS(c, "first", "CLIENT GETNAME");
	EXPECT_ERR(c, "ERR Client names cannot contain spaces", "CLIENT SETNAME %s", "a b");
	redisReply *r = cmd(c, "CLIENT ID");
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	long long id = r->integer;
	freeReplyObject(r);
	r = cmd(c, "CLIENT INFO");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	char want[64];
	snprintf(want, sizeof(want), "id=%lld ", id);
	assert_non_null(strstr(r->str, want));
	assert_non_null(strstr(r->str, " name=first "));
	assert_non_null(strstr(r->str, " cmd=client "));
	assert_null(strchr(strchr(r->str, '\n') + 1, '\n')); /* one line */
	freeReplyObject(r);
	EXPECT_STATUS(c, "OK", "CLIENT SETINFO LIB-NAME mylib");
	EXPECT_STATUS(c, "OK", "CLIENT SETINFO lib-ver 1.2.3");
	EXPECT_ERR(c, "ERR Client names cannot contain spaces", "CLIENT SETINFO LIB-VER %s", "1 2");
	EXPECT_ERR(c, "ERR Client names cannot contain spaces", "CLIENT SETINFO LIB-NAME %s",
	           "x\ty");
	EXPECT_ERR(c, "ERR Unrecognized option 'FOO'", "CLIENT SETINFO FOO bar");
	r = cmd(c, "CLIENT INFO");
	assert_non_null(strstr(r->str, "lib-name=mylib lib-ver=1.2.3"));
	freeReplyObject(r);
	EXPECT_STATUS(c, "OK", "CLIENT NO-EVICT on");
	EXPECT_STATUS(c, "OK", "CLIENT NO-TOUCH off");
	/* on or off only, as in Redis (round 22: anything was +OK). */
	EXPECT_ERR(c, "ERR syntax error", "CLIENT NO-EVICT maybe");
	EXPECT_ERR(c, "ERR syntax error", "CLIENT NO-TOUCH 1");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'BOGUS'",
	           "CLIENT BOGUS");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'GETNAME'",
	           "CLIENT GETNAME extra");
	/* HELLO SETNAME names the connection too; CLIENT LIST shows both */
	redisContext *o = hconn(srv);
	r = cmd(o, "HELLO 2 SETNAME second");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	freeReplyObject(r);
	assert_true(client_listed(c, "first"));
	assert_true(client_listed(c, "second"));
	redisFree(o);
	redisFree(c);
}

static void test_client_kill(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CLIENT SETNAME killer");
	/* old form: by address */
	redisContext *v1 = hconn(srv);
	EXPECT_STATUS(v1, "OK", "CLIENT SETNAME victim1");
	char *a1 = my_addr(v1);
	EXPECT_STATUS(c, "OK", "CLIENT KILL %s", a1);
	assert_true(su_wait_closed(v1->fd, 20000));
	redisFree(v1);
	free(a1);
	EXPECT_ERR(c, "ERR No such client", "CLIENT KILL 1.2.3.4:5");
	EXPECT_ERR(c, "ERR No such client", "CLIENT KILL ID"); /* old form: "ID" is an address */
	/* new form: ID, ADDR, SKIPME */
	redisContext *v2 = hconn(srv);
	redisReply *r = cmd(v2, "CLIENT ID");
	long long id2 = r->integer;
	freeReplyObject(r);
	EXPECT_INT(c, 1, "CLIENT KILL ID %lld", id2);
	assert_true(su_wait_closed(v2->fd, 20000));
	redisFree(v2);
	EXPECT_INT(c, 0, "CLIENT KILL ID %lld", id2);
	redisContext *v3 = hconn(srv);
	char *a3 = my_addr(v3);
	EXPECT_INT(c, 1, "CLIENT KILL ADDR %s SKIPME yes", a3);
	assert_true(su_wait_closed(v3->fd, 20000));
	redisFree(v3);
	free(a3);
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CLIENT KILL ID abc");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CLIENT KILL ID -1");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CLIENT KILL ID 1x");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CLIENT KILL ID %s",
	           "123456789012345678901234567890123");
	EXPECT_ERR(c, "ERR value is not an integer or out of range", "CLIENT KILL ID %s",
	           "99999999999999999999");
	EXPECT_ERR(c, "ERR syntax error", "CLIENT KILL ID 1 ADDR");
	EXPECT_ERR(c, "ERR syntax error", "CLIENT KILL FOO bar");
	/* SKIPME yes (the default) spares the caller */
	r = cmd(c, "CLIENT ID");
	long long me = r->integer;
	freeReplyObject(r);
	EXPECT_INT(c, 0, "CLIENT KILL ID %lld", me);
	EXPECT_STATUS(c, "PONG", "PING");
	/* SKIPME no: the caller itself, answered first */
	EXPECT_INT(c, 1, "CLIENT KILL ID %lld SKIPME no", me);
	assert_true(su_wait_closed(c->fd, 20000));
	redisFree(c);
	/* the old form on its own address: OK, then closed */
	c = hconn(srv);
	char *mine = my_addr(c);
	EXPECT_STATUS(c, "OK", "CLIENT KILL %s", mine);
	assert_true(su_wait_closed(c->fd, 20000));
	redisFree(c);
	free(mine);
}

/* ---- CONFIG ---------------------------------------------------------------------------------- */

static void test_config_get_set(void **state)
{
	redisContext *c = hconn(srv);
	redisReply *r = cmd(c, "CONFIG GET *");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 2 * 23); /* round 16: scan-hold-seconds, scan-hold-bytes,
	                                        sync-inline; round 19: maxmemory-clients;
	                                        round 23: huge-pages */
	freeReplyObject(r);
	r = cmd(c, "CONFIG GET port PORT p*");
	assert_int_equal(r->elements, 4); /* port, proto-max-bulk-len; each once */
	freeReplyObject(r);
	r = cmd(c, "CONFIG GET nosuch");
	assert_int_equal(r->elements, 0);
	freeReplyObject(r);
	expect_config(c, "databases", "1");
	expect_config(c, "maxmemory-policy", "noeviction");
	expect_config(c, "durability", "always");
	expect_config(c, "loops", "2");
	expect_config(c, "loops-merge", "yes");
	expect_config(c, "sync-inline", "no");
	expect_config(c, "huge-pages", "no");

	/* the memory settings with every unit */
	EXPECT_STATUS(c, "OK", "CONFIG SET proto-max-bulk-len 2048");
	expect_config(c, "proto-max-bulk-len", "2048");
	EXPECT_STATUS(c, "OK", "CONFIG SET proto-max-bulk-len 3k");
	expect_config(c, "proto-max-bulk-len", "3000");
	EXPECT_STATUS(c, "OK", "CONFIG SET proto-max-bulk-len 3KB");
	expect_config(c, "proto-max-bulk-len", "3072");
	EXPECT_STATUS(c, "OK", "CONFIG SET proto-max-bulk-len 2m");
	expect_config(c, "proto-max-bulk-len", "2000000");
	EXPECT_STATUS(c, "OK", "CONFIG SET proto-max-bulk-len 2mb");
	expect_config(c, "proto-max-bulk-len", "2097152");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1g");
	expect_config(c, "client-query-buffer-limit", "1000000000");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1Gb proto-max-bulk-len 512mb");
	expect_config(c, "client-query-buffer-limit", "1073741824");
	expect_config(c, "proto-max-bulk-len", "536870912");
	const char *bad_mem[] = {"100", "-5k", "", "12q", "k", "123456789012345678901234567890123"};
	for (size_t i = 0; i < sizeof(bad_mem) / sizeof(bad_mem[0]); i++)
		EXPECT_ERR(c, "ERR Invalid argument for CONFIG SET 'proto-max-bulk-len'",
		           "CONFIG SET proto-max-bulk-len %s", bad_mem[i]);
	EXPECT_ERR(c, "ERR Invalid argument for CONFIG SET 'client-query-buffer-limit'",
	           "CONFIG SET client-query-buffer-limit 1000");

	/* numbers */
	EXPECT_ERR(c, "ERR Invalid argument 'abc' for CONFIG SET 'timeout'",
	           "CONFIG SET timeout abc");
	EXPECT_ERR(c, "ERR Invalid argument '-1' for CONFIG SET 'timeout'",
	           "CONFIG SET timeout -1");
	EXPECT_ERR(c, "ERR Invalid argument '' for CONFIG SET 'timeout'", "CONFIG SET timeout %s",
	           "");
	EXPECT_ERR(c, "ERR Invalid argument '0' for CONFIG SET 'maxclients'",
	           "CONFIG SET maxclients 0");
	/* a timeout whose microseconds do not fit 64 bits would wrap to a tiny
	 * one (18446744073709552 s is 0.384 s after the wrap): refused, as on
	 * the command line, past 2^40 s */
	EXPECT_ERR(c, "ERR Invalid argument '18446744073709552' for CONFIG SET 'timeout'",
	           "CONFIG SET timeout 18446744073709552");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET timeout 1099511627777");
	EXPECT_STATUS(c, "OK", "CONFIG SET timeout 1099511627776");
	expect_config(c, "timeout", "1099511627776");
	EXPECT_STATUS(c, "OK", "CONFIG SET timeout 0 maxclients 10000");

	/* the output limit: class normal, two sizes, seconds */
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 8mb 4mb 30");
	expect_config(c, "client-output-buffer-limit", "normal 8388608 4194304 30");
	const char *bad_obuf[] = {"bogus 1 2 3", "normal 1 2", "normal x 2 3", "normal 1 y 3",
	                          "normal 1 2 -3", "", "normal 1 2 3 replica 1 2",
	                          "pubsub 1 2 x normal 1 2 3",
	                          /* a word past 31 bytes is refused, not cut in two
	                             words (this one was read as hard 1, soft 5) */
	                          "normal 00000000000000000000000000000015 6"};
	for (size_t i = 0; i < sizeof(bad_obuf) / sizeof(bad_obuf[0]); i++)
		EXPECT_ERR(c, "ERR Invalid argument for CONFIG SET 'client-output-buffer-limit'",
		           "CONFIG SET client-output-buffer-limit %s", bad_obuf[i]);
	expect_config(c, "client-output-buffer-limit", "normal 8388608 4194304 30");
	/* Redis's whole value (what redis.conf and client tools write): the
	 * replica and pubsub groups are checked and ignored (ctxd has
	 * neither); without a normal group the limits stay. */
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s",
	              "normal 2mb 1mb 10 replica 256mb 64mb 60 pubsub 32mb 8mb 60");
	expect_config(c, "client-output-buffer-limit", "normal 2097152 1048576 10");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", "slave 1 2 3");
	expect_config(c, "client-output-buffer-limit", "normal 2097152 1048576 10");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 8mb 4mb 30");

	/* all or nothing: a bad pair leaves the good ones unapplied */
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET timeout 77 proto-max-bulk-len 1");
	expect_config(c, "timeout", "0");
	EXPECT_ERR(c, "ERR Unknown option or number of arguments for CONFIG SET - 'port'",
	           "CONFIG SET timeout 77 port 1");
	expect_config(c, "timeout", "0");
	EXPECT_ERR(c, "ERR wrong number of arguments for 'config|set' command",
	           "CONFIG SET timeout");
	EXPECT_ERR(c, "ERR wrong number of arguments for 'config|set' command",
	           "CONFIG SET timeout 1 maxclients");
	EXPECT_STATUS(c, "OK", "CONFIG RESETSTAT");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'GET'",
	           "CONFIG GET");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'REWRITE'",
	           "CONFIG REWRITE");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'RESETSTAT'",
	           "CONFIG RESETSTAT x");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 256mb 64mb 60");
	redisFree(c);
}

/* requirepass set at run time: new connections must AUTH, old ones stay. */
static void test_requirepass_at_runtime(void **state)
{
	redisContext *admin = hconn(srv);
	EXPECT_STATUS(admin, "OK", "CONFIG SET requirepass %s", "run time");
	expect_config(admin, "requirepass", "run time");
	EXPECT_STATUS(admin, "PONG", "PING"); /* authenticated when it connected */
	redisContext *c = hconn(srv);
	EXPECT_ERR(c, "NOAUTH Authentication required.", "PING");
	EXPECT_ERR(c, "NOAUTH Authentication required.", "HGET x f");
	EXPECT_ERR(c, "WRONGPASS", "AUTH %s", "run");
	EXPECT_ERR(c, "WRONGPASS", "AUTH %s", "run timeX");
	EXPECT_ERR(c, "NOAUTH HELLO must be called", "HELLO 3");
	EXPECT_STATUS(c, "OK", "AUTH %s", "run time");
	EXPECT_STATUS(c, "PONG", "PING");
	/* RESET: authenticated no more */
	EXPECT_STATUS(c, "RESET", "RESET");
	EXPECT_ERR(c, "NOAUTH", "PING");
	/* inside MULTI the NOAUTH error aborts the transaction */
	EXPECT_STATUS(c, "OK", "AUTH default %s", "run time");
	/* switched off again: new connections need nothing */
	EXPECT_STATUS(admin, "OK", "CONFIG SET requirepass %s", "");
	expect_config(admin, "requirepass", "");
	redisContext *d = hconn(srv);
	EXPECT_STATUS(d, "PONG", "PING");
	EXPECT_STATUS(d, "RESET", "RESET");
	EXPECT_STATUS(d, "PONG", "PING");
	redisFree(d);
	redisFree(c);
	redisFree(admin);
}

/* ---- COMMAND, INFO -----------------------------------------------------------------------------
 */

static void test_command_introspection(void **state)
{
	redisContext *c = hconn(srv);
	redisReply *r = cmd(c, "COMMAND COUNT");
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	size_t n = (size_t)r->integer;
	freeReplyObject(r);
	assert_true(n > 100);
	r = cmd(c, "COMMAND LIST");
	assert_int_equal(r->elements, n);
	bool hset = false, watch = false;
	for (size_t i = 0; i < n; i++) {
		hset |= strcmp(r->element[i]->str, "hset") == 0;
		watch |= strcmp(r->element[i]->str, "ctx.watch") == 0;
	}
	assert_true(hset && watch);
	freeReplyObject(r);
	r = cmd(c, "COMMAND");
	assert_int_equal(r->elements, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(r->element[i]->elements, 10);
	freeReplyObject(r);
	r = cmd(c, "COMMAND INFO");
	assert_int_equal(r->elements, n);
	freeReplyObject(r);
	r = cmd(c, "COMMAND INFO hset nosuch ctx.watch dbsize auth");
	assert_int_equal(r->elements, 5);
	assert_string_equal(r->element[0]->element[0]->str, "hset");
	assert_int_equal(r->element[0]->element[1]->integer, -4);
	assert_string_equal(r->element[0]->element[2]->element[0]->str, "write");
	assert_int_equal(r->element[0]->element[3]->integer, 1); /* first key */
	assert_string_equal(r->element[0]->element[6]->element[0]->str, "@hash");
	assert_int_equal(r->element[1]->type, REDIS_REPLY_NIL);
	redisReply *flags = r->element[2]->element[2];
	assert_int_equal(flags->elements, 2);
	assert_string_equal(flags->element[0]->str, "no_multi");
	assert_string_equal(flags->element[1]->str, "pubsub");
	flags = r->element[3]->element[2];
	assert_string_equal(flags->element[0]->str, "readonly");
	assert_string_equal(flags->element[1]->str, "blocking");
	assert_string_equal(r->element[4]->element[2]->element[0]->str, "no_auth");
	assert_int_equal(r->element[4]->element[3]->integer, 0);
	freeReplyObject(r);
	r = cmd(c, "COMMAND DOCS hget nosuch");
	assert_int_equal(r->elements, 2);
	assert_string_equal(r->element[0]->str, "hget");
	assert_int_equal(r->element[1]->elements, 6);
	assert_string_equal(r->element[1]->element[1]->str, "Get a field's value");
	assert_string_equal(r->element[1]->element[5]->str, "hash");
	freeReplyObject(r);
	r = cmd(c, "COMMAND DOCS");
	assert_int_equal(r->elements, 2 * n);
	freeReplyObject(r);
	r = cmd(c, "COMMAND DOCS nosuch");
	assert_int_equal(r->elements, 0);
	freeReplyObject(r);
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'GETKEYS'",
	           "COMMAND GETKEYS hget a b");
	EXPECT_ERR(c, "ERR unknown subcommand or wrong number of arguments for 'COUNT'",
	           "COMMAND COUNT x");
	redisFree(c);
	/* RESP3: flags are sets, DOCS is a map */
	rawconn *rc = raw_open(srv);
	raw_expect(rc, "HELLO 3\r\n", "%7");
	raw_expect(rc, "COMMAND INFO ping\r\n",
	           "*1\r\n*10\r\n$4\r\nping\r\n:-1\r\n~1\r\n+pubsub\r\n");
	raw_expect(rc, "COMMAND DOCS echo\r\n", "%1\r\n$4\r\necho\r\n%3\r\n$7\r\nsummary\r\n");
	raw_close(rc);
}

static void test_info_sections(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_INT(c, 1, "HSET infokey f v");
	struct {
		const char *arg, *has, *lacks;
	} cases[] = {
	    {"server", "# Server\r\n", "# Clients"},
	    {"clients", "connected_clients:", "# Server"},
	    {"memory", "used_memory_rss:", "# Clients"},
	    {"persistence", "aof_enabled:1", "# Stats"},
	    {"stats", "total_commands_processed:", "# Memory"},
	    {"replication", "role:master", "# Keyspace"},
	    {"keyspace", "db0:keys=", "# Server"},
	    {"all", "# Keyspace", NULL},
	    {"everything", "# Replication", NULL},
	    {"default", "# Persistence", NULL},
	    {"SERVER CLIENTS", "# Clients", "# Memory"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *r = cmd(c, "INFO %s", cases[i].arg);
		if (strchr(cases[i].arg, ' ')) {
			freeReplyObject(r);
			r = cmd(c, "INFO server clients");
		}
		assert_int_equal(r->type, REDIS_REPLY_STRING);
		if (!strstr(r->str, cases[i].has))
			fail_msg("INFO %s lacks %s", cases[i].arg, cases[i].has);
		if (cases[i].lacks && strstr(r->str, cases[i].lacks))
			fail_msg("INFO %s has %s", cases[i].arg, cases[i].lacks);
		/* no empty line at the end */
		assert_false(r->len >= 4 && strcmp(r->str + r->len - 4, "\r\n\r\n") == 0);
		freeReplyObject(r);
	}
	redisReply *r = cmd(c, "INFO nosuch");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, 0);
	freeReplyObject(r);
	char *ks = info_field(c, "keyspace", "db0");
	assert_non_null(ks);
	assert_true(strncmp(ks, "keys=", 5) == 0 && atoll(ks + 5) >= 1);
	free(ks);
	assert_int_equal(info_int(c, "clients", "maxclients"), 10000);
	EXPECT_INT(c, 1, "DEL infokey");
	redisFree(c);
	/* RESP3: verbatim text */
	rawconn *rc = raw_open(srv);
	raw_expect(rc, "HELLO 3\r\n", "%7");
	raw_expect(rc, "INFO replication\r\n",
	           "=52\r\ntxt:# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
	raw_expect(rc, "CLIENT INFO\r\n", "=");
	raw_close(rc);
}

/* ---- limits ------------------------------------------------------------------------------------
 */

static void test_maxclients(void **state)
{
	redisContext *c = hconn(srv);
	long long rejected = info_int(c, "stats", "rejected_connections");
	/* The previous test's connections may be closed but not yet seen by
	 * the server: wait until only this one is counted (up to 60 s; a
	 * connection still open after that is really open). */
	long long now = info_int(c, "clients", "connected_clients");
	for (int i = 0; i < 6000 && now > 1; i++) {
		usleep(10000);
		now = info_int(c, "clients", "connected_clients");
	}
	EXPECT_STATUS(c, "OK", "CONFIG SET maxclients %lld", now + 1);
	redisContext *second = hconn(srv);
	EXPECT_STATUS(second, "PONG", "PING");
	/* the third is told and closed */
	rawconn *third = raw_open(srv);
	raw_expect(third, NULL, "-ERR max number of clients reached\r\n");
	assert_true(su_wait_closed(third->fd, 20000));
	raw_close(third);
	assert_int_equal(info_int(c, "stats", "rejected_connections"), rejected + 1);
	redisFree(second);
	/* a place is free again (the close may take a moment to be seen) */
	bool ok = false;
	for (int i = 0; i < 2000 && !ok; i++) {
		redisContext *n = hconn(srv);
		redisReply *r = redisCommand(n, "PING");
		ok = r && r->type == REDIS_REPLY_STATUS;
		freeReplyObject(r);
		redisFree(n);
		if (!ok)
			usleep(10000);
	}
	assert_true(ok);
	EXPECT_STATUS(c, "OK", "CONFIG SET maxclients 10000");
	redisFree(c);
}

static void test_idle_timeout(void **state)
{
	/* The watching client is set up before the timeout is on: a client
	 * is closed when it has been idle for over a second at the server's
	 * once-a-second check, and a loop stalled for a second on a loaded
	 * machine can run that check before it reads a command waiting in
	 * the socket (a connection made just before counts as idle). */
	rawconn *w = raw_open(srv);
	raw_expect(w, "HELLO 3\r\n", "%7");
	raw_expect(w, "CTX.WATCH idlewatch\r\n", "+OK");
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET timeout 1");
	/* an idle client is closed by the once-a-second check (20 s bound) */
	int fd = su_connect(srv);
	assert_true(fd >= 0);
	assert_true(su_wait_closed(fd, 20000));
	close(fd);
	/* a watching client is not idle: it was idle all along, and is told
	 * of a change made by another client (which, connecting while the
	 * timeout is on, may be closed before its command is read: again) */
	for (;;) {
		redisContext *d = hconn(srv);
		redisReply *r = redisCommand(d, "CTX.CREATE idlewatch");
		bool done = r != NULL;
		if (r && !(r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0) &&
		    !(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "CTXEXISTS", 9) == 0))
			fail_msg("CTX.CREATE idlewatch: type %d '%s'", r->type,
			         r->str ? r->str : "");
		freeReplyObject(r);
		redisFree(d);
		if (done)
			break;
	}
	raw_expect(w, NULL, ">6\r\n$9\r\nctx.event\r\n$7\r\ncreated\r\n");
	/* the first connection, idle meanwhile, was closed too */
	assert_true(su_wait_closed(c->fd, 20000));
	redisFree(c);
	/* the watching client, still served, turns the timeout off */
	raw_expect(w, "PING\r\n", "+PONG");
	raw_expect(w, "CONFIG SET timeout 0\r\n", "+OK");
	raw_close(w);
}

/* A client that does not read: over the hard limit it is closed at once;
 * over the soft limit for the given seconds (0 here), at the next check. */
static void output_limit_case(const char *limit)
{
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", limit);
	int small = 4096;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv->port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	/* 40 replies of 1 MB each asked at once, never read */
	static char frames[4096];
	size_t n = (size_t)snprintf(frames, sizeof(frames), "CLIENT SETNAME nonreader\r\n");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(frames + n, sizeof(frames) - n,
		                      "*3\r\n$4\r\nHGET\r\n$6\r\nbigval\r\n$1\r\nf\r\n");
	assert_true(su_send(fd, frames, n));
	/* gone from CLIENT LIST (a bound of 20 s for a broken server) */
	bool listed = true;
	for (int i = 0; i < 2000 && listed; i++) {
		listed = client_listed(c, "nonreader");
		if (listed)
			usleep(10000);
	}
	if (listed)
		fail_msg("limit '%s': the client was not closed", limit);
	close(fd);
	EXPECT_STATUS(c, "PONG", "PING");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 256mb 64mb 60");
	redisFree(c);
}

static void test_output_limits(void **state)
{
	redisContext *c = hconn(srv);
	char *big = malloc(1 << 20);
	memset(big, 'b', 1 << 20);
	EXPECT_INT(c, 1, "HSET bigval f %b", big, (size_t)(1 << 20));
	/* a reader gets a big reply whole (partly through uv_write) */
	redisReply *r = cmd(c, "HGET bigval f");
	assert_int_equal(r->len, 1 << 20);
	freeReplyObject(r);
	redisFree(c);
	output_limit_case("normal 2mb 0 0");
	output_limit_case("normal 0 2mb 0");
	/* a slow reader under the limits gets everything; QUIT after it closes
	 * once the last byte is out */
	int fd = su_connect(srv);
	char frame[100];
	int n = snprintf(frame, sizeof(frame), "*3\r\n$4\r\nHGET\r\n$6\r\nbigval\r\n$1\r\nf\r\n");
	for (int i = 0; i < 8; i++)
		assert_true(su_send(fd, frame, (size_t)n));
	/* a write after the reads: its reply waits for the fsync, the reads'
	 * replies go ahead of it */
	const char *w = "*4\r\n$4\r\nHSET\r\n$6\r\nbigval\r\n$1\r\ng\r\n$1\r\nx\r\nQUIT\r\n";
	assert_true(su_send(fd, w, strlen(w)));
	size_t want = 8 * ((size_t)(1 << 20) + 12) + 4 + 5;
	char *got = malloc(want + 16);
	size_t have = su_recv(fd, got, want, 20000);
	assert_int_equal(have, want);
	assert_memory_equal(got + want - 9, ":1\r\n+OK\r\n", 9);
	assert_true(su_wait_closed(fd, 20000));
	close(fd);
	free(got);
	free(big);
}

static void test_query_buffer_limit(void **state)
{
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 4kb");
	/* a bulk declared bigger than the limit, its bytes still coming */
	rawconn *r = raw_open(srv);
	const char *head = "*2\r\n$4\r\nECHO\r\n$100000\r\n";
	assert_true(su_send(r->fd, head, strlen(head)));
	char *body = malloc(10000);
	memset(body, 'q', 10000);
	su_send(r->fd, body, 10000); /* may fail once the server closed */
	assert_true(su_wait_closed(r->fd, 20000));
	raw_close(r);
	/* a transaction's queue counts too */
	r = raw_open(srv);
	raw_expect(r, "MULTI\r\n", "+OK");
	char frame[3000];
	int n =
	    snprintf(frame, sizeof(frame), "*4\r\n$4\r\nHSET\r\n$2\r\nqb\r\n$1\r\nf\r\n$2000\r\n");
	memset(frame + n, 'v', 2000);
	memcpy(frame + n + 2000, "\r\n", 2);
	bool closed = false;
	for (int i = 0; i < 10 && !closed; i++) {
		if (!su_send(r->fd, frame, (size_t)n + 2002))
			break;
		char out[16];
		closed = su_recv(r->fd, out, 9, 20000) != 9; /* +QUEUED, until closed */
	}
	assert_true(closed || su_wait_closed(r->fd, 20000));
	raw_close(r);
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1gb");
	/* a big request is fine, and its buffer is given back afterwards */
	size_t bn = 3u << 20;
	char *bigarg = malloc(bn);
	memset(bigarg, 'e', bn);
	redisReply *rep = cmd(c, "ECHO %b", bigarg, bn);
	assert_int_equal(rep->len, bn);
	freeReplyObject(rep);
	EXPECT_STATUS(c, "PONG", "PING");
	free(bigarg);
	free(body);
	redisFree(c);
}

/* ---- DBSIZE, streaming connections, errors
 * -------------------------------------------------------- */

static void test_dbsize_pages(void **state)
{
	redisContext *c = hconn(srv);
	long long before;
	redisReply *r = cmd(c, "DBSIZE");
	before = r->integer;
	freeReplyObject(r);
	for (int i = 0; i < 1500; i++)
		redisAppendCommand(c, "HSET db:%04d f v", i);
	for (int i = 0; i < 20; i++)
		redisAppendCommand(c, "CTX.CREATE dbempty:%02d", i); /* no fields: not keys */
	for (int i = 0; i < 1520; i++) {
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		assert_true(r->type != REDIS_REPLY_ERROR);
		freeReplyObject(r);
	}
	EXPECT_INT(c, before + 1500, "DBSIZE");
	/* a client that goes away while its DBSIZE runs */
	for (int i = 0; i < 20; i++) {
		int fd = su_connect(srv);
		assert_true(su_send(fd, "DBSIZE\r\n", 8));
		if (i % 2) {
			struct linger l = {1, 0}; /* reset, not a clean close */
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		}
		close(fd);
	}
	EXPECT_INT(c, before + 1500, "DBSIZE");
	/* cleanup: DEL in pages */
	for (int i = 0; i < 1500; i++)
		redisAppendCommand(c, "DEL db:%04d", i);
	for (int i = 0; i < 20; i++)
		redisAppendCommand(c, "CTX.DROP dbempty:%02d", i);
	for (int i = 0; i < 1520; i++) {
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
		assert_int_equal(r->integer, 1);
		freeReplyObject(r);
	}
	EXPECT_INT(c, before, "DBSIZE");
	redisFree(c);
}

/* A RESP2 connection that streams events takes only PING, QUIT, RESET
 * and CTX.(UN)WATCH; PING answers in the pub/sub shape. */
static void test_resp2_streaming(void **state)
{
	rawconn *r = raw_open(srv);
	raw_expect(r, "CTX.WATCH streamed\r\n", "+OK");
	raw_expect(r, "PING\r\n", "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
	raw_expect(r, "PING hi\r\n", "*2\r\n$4\r\npong\r\n$2\r\nhi\r\n");
	raw_expect(r, "HGET streamed f\r\n",
	           "-ERR Can't execute 'hget': only CTX.UNWATCH, PING, QUIT and RESET are allowed");
	redisContext *c = hconn(srv);
	EXPECT_INT(c, 1, "HSET streamed f v");
	raw_expect(r, NULL, "*6\r\n$9\r\nctx.event\r\n$7\r\ncreated\r\n");
	raw_expect(r, "CTX.UNWATCH\r\n", "+OK");
	raw_expect(r, "PING\r\n", "+PONG");
	raw_expect(r, "CTX.WATCH streamed\r\n", "+OK");
	raw_expect(r, "RESET\r\n", "+RESET");
	raw_expect(r, "HGET streamed f\r\n", "$1\r\nv\r\n");
	EXPECT_INT(c, 1, "DEL streamed");
	redisFree(c);
	raw_close(r);
}

/* Errors longer than the formatting buffer come whole. */
static void test_long_error(void **state)
{
	redisContext *c = hconn(srv);
	char a[257], b[257];
	memset(a, 'a', 256);
	memset(b, 'b', 256);
	a[256] = b[256] = '\0';
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_STATUS(c, "QUEUED", "DEL %s %s", a, b);
	redisReply *r = cmd(c, "EXEC");
	assert_int_equal(r->type, REDIS_REPLY_ERROR);
	assert_true(r->len > 512);
	assert_non_null(strstr(r->str, b));
	assert_non_null(strstr(r->str, a));
	freeReplyObject(r);
	/* an unknown command in MULTI aborts EXEC */
	EXPECT_STATUS(c, "OK", "MULTI");
	EXPECT_ERR(c, "ERR unknown command 'NOSUCH'", "NOSUCH");
	EXPECT_ERR(c, "ERR wrong number of arguments for 'hget' command", "HGET x");
	EXPECT_ERR(c, "EXECABORT", "EXEC");
	redisFree(c);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_connection_argument_errors),
	    cmocka_unit_test(test_id_checks),
	    cmocka_unit_test(test_client_subcommands),
	    cmocka_unit_test(test_client_kill),
	    cmocka_unit_test(test_config_get_set),
	    cmocka_unit_test(test_requirepass_at_runtime),
	    cmocka_unit_test(test_command_introspection),
	    cmocka_unit_test(test_info_sections),
	    cmocka_unit_test(test_maxclients),
	    cmocka_unit_test(test_idle_timeout),
	    cmocka_unit_test(test_output_limits),
	    cmocka_unit_test(test_query_buffer_limit),
	    cmocka_unit_test(test_dbsize_pages),
	    cmocka_unit_test(test_resp2_streaming),
	    cmocka_unit_test(test_long_error),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
