/*
 * test_review10_config.c - round 10 review: CONFIG SET values that ctxd
 * took silently although they are not numbers it can hold.
 *
 *   - maxclients and timeout were cut to their first 20 bytes and read with
 *     strtoll without looking at ERANGE: "99999999999999999999" set
 *     maxclients to 2^63 - 1, and "000000000000000000005x" (an invalid
 *     value, cut to twenty zeros) set timeout 0;
 *   - a memory size whose unit multiplies it past 64 bits wrapped:
 *     client-output-buffer-limit "normal 16gb..." with 17179869184gb (2^64
 *     bytes) set a hard limit of 0, which turns the output-buffer limit off;
 *     proto-max-bulk-len 17179869185gb set 1 GiB;
 *   - client-output-buffer-limit took "normal 1mb 1mb 60x" and
 *     "normal 1mb 1mb 60 junk" (sscanf stops at what it cannot read).
 * Each is now "ERR Invalid argument" and the value stays as it was; the
 * same parsers read ctxd's --config file (src/server/main.c).
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

SU_GROUP_SERVER("review10-config")

static void test_integers_out_of_range(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET maxclients 1234");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET maxclients 99999999999999999999");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET maxclients 1234567890123456789012");
	expect_config(c, "maxclients", "1234");
	EXPECT_STATUS(c, "OK", "CONFIG SET timeout 77");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET timeout 000000000000000000005x");
	expect_config(c, "timeout", "77");
	EXPECT_STATUS(c, "OK", "CONFIG SET timeout 0");
	EXPECT_STATUS(c, "OK", "CONFIG SET maxclients 10000");
	redisFree(c);
}

static void test_memory_sizes_do_not_wrap(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET proto-max-bulk-len 512mb");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET proto-max-bulk-len 17179869185gb");
	expect_config(c, "proto-max-bulk-len", "536870912");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 2mb 1mb 60");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET client-output-buffer-limit %s",
	           "normal 17179869184gb 1mb 60");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET client-output-buffer-limit %s",
	           "normal 2mb 1mb 60x");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET client-output-buffer-limit %s",
	           "normal 2mb 1mb 60 junk");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET client-output-buffer-limit %s",
	           "normal 2mb 1mb 99999999999999999999");
	expect_config(c, "client-output-buffer-limit", "normal 2097152 1048576 60");
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_integers_out_of_range),
	    cmocka_unit_test(test_memory_sizes_do_not_wrap),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
