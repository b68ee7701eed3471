/*
 * test_review10b_config.c - round 10's second review: CONFIG SET numbers
 * that are not numbers, still taken after round 10's checks.
 *
 *   - a memory size with a blank before a minus sign: parse_mem_size refused
 *     a '-' only as the first byte, and strtoull skips blanks and negates,
 *     so proto-max-bulk-len " -1" was 18446744073709551615 (the wrap the
 *     round 10 fix meant to refuse) and client-query-buffer-limit " -1" no
 *     limit at all;
 *   - a value with a NUL byte: timeout, maxclients and
 *     client-output-buffer-limit were copied with "%.*s", which stops at the
 *     NUL, so "5\0junk" was timeout 5;
 *   - blanks or a plus sign before timeout's digits (strtoll skips them;
 *     Redis's string2ll refuses them).
 * Each is now "ERR Invalid argument" and the value stays as it was.
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

SU_GROUP_SERVER("review10b-config")

static void test_negative_size_after_blank(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET proto-max-bulk-len 512mb");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-query-buffer-limit 1gb");
	static const char *const bad[] = {" -1", "\t-1", " -1048576", " 1mb", "+1mb"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET proto-max-bulk-len %s", bad[i]);
		EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET client-query-buffer-limit %s",
		           bad[i]);
	}
	expect_config(c, "proto-max-bulk-len", "536870912");
	expect_config(c, "client-query-buffer-limit", "1073741824");
	redisFree(c);
}

static void test_nul_and_blanks_in_numbers(void **state)
{
	(void)state;
	redisContext *c = hconn(srv);
	EXPECT_STATUS(c, "OK", "CONFIG SET timeout 77");
	EXPECT_STATUS(c, "OK", "CONFIG SET maxclients 1234");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 2mb 1mb 60");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET timeout %b", "5\0junk", (size_t)6);
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET maxclients %b", "9\0", (size_t)2);
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET timeout %s", " 5");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET timeout %s", "+5");
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET proto-max-bulk-len %b", "2mb\0x",
	           (size_t)5);
	EXPECT_ERR(c, "ERR Invalid argument", "CONFIG SET client-output-buffer-limit %b",
	           "normal 4mb 1mb 30\0junk", (size_t)22);
	expect_config(c, "timeout", "77");
	expect_config(c, "maxclients", "1234");
	expect_config(c, "client-output-buffer-limit", "normal 2097152 1048576 60");
	EXPECT_STATUS(c, "OK", "CONFIG SET timeout 0");
	EXPECT_STATUS(c, "OK", "CONFIG SET maxclients 10000");
	EXPECT_STATUS(c, "OK", "CONFIG SET client-output-buffer-limit %s", "normal 256mb 64mb 60");
	redisFree(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_negative_size_after_blank),
	    cmocka_unit_test(test_nul_and_blanks_in_numbers),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
