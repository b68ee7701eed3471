/*
 * test_resp.c - the RESP request parser (src/server/resp.c): complete and
 * partial frames, frames fed one byte at a time and moved between calls,
 * inline requests, every malformed case and limit, no allocation for a
 * declared length, and random bytes that must never crash it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

static const resp_limits lim = {512u << 20, 1024 * 1024, 65536, false};
static const resp_limits unauth = {16384, 10, 65536, true};

static ssize_t parse_str(resp_frame *f, const char *s, const resp_limits *l)
{
	resp_frame_reset(f);
	return resp_parse(f, s, strlen(s), l);
}

static void assert_arg(const arg *a, const char *want)
{
	assert_int_equal(a->n, strlen(want));
	assert_memory_equal(a->p, want, a->n);
}

static void test_multibulk(void **state)
{
	resp_frame f = {0};
	const char *s = "*3\r\n$4\r\nHSET\r\n$1\r\nk\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n";
	ssize_t r = parse_str(&f, s, &lim);
	assert_int_equal(r, 27);
	assert_int_equal(f.argc, 3);
	assert_arg(&f.argv[0], "HSET");
	assert_arg(&f.argv[1], "k");
	assert_arg(&f.argv[2], "");
	resp_frame_reset(&f);
	r = resp_parse(&f, s + 27, strlen(s) - 27, &lim);
	assert_int_equal(r, 14);
	assert_int_equal(f.argc, 1);
	assert_int_equal(parse_str(&f, "*0\r\n", &lim), 4);
	assert_int_equal(f.argc, 0);
	assert_int_equal(parse_str(&f, "*-1\r\n", &lim), 5);
	assert_int_equal(f.argc, 0);
	resp_frame_free(&f);
}

/* One byte at a time, each time from a fresh copy of the buffer (so the
 * parser must move the arguments it found with it). */
static void test_byte_at_a_time(void **state)
{
	const char *s = "*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$11\r\nhello world\r\n";
	size_t n = strlen(s);
	resp_frame f = {0};
	for (size_t k = 1; k <= n; k++) {
		char *copy = malloc(k);
		memcpy(copy, s, k);
		ssize_t r = resp_parse(&f, copy, k, &lim);
		if (k < n) {
			assert_int_equal(r, RESP_INCOMPLETE);
		} else {
			assert_int_equal(r, (ssize_t)n);
			assert_int_equal(f.argc, 3);
			assert_arg(&f.argv[0], "SET");
			assert_arg(&f.argv[1], "hello");
			assert_arg(&f.argv[2], "hello world");
		}
		free(copy);
	}
	resp_frame_free(&f);
}

static void test_inline(void **state)
{
	resp_frame f = {0};
	assert_int_equal(parse_str(&f, "PING\r\n", &lim), 6);
	assert_int_equal(f.argc, 1);
	assert_arg(&f.argv[0], "PING");
	assert_int_equal(parse_str(&f, "  ECHO \t 'hello world'  \"x y\" z\n", &lim), 32);
	assert_int_equal(f.argc, 4);
	assert_arg(&f.argv[1], "hello world");
	assert_arg(&f.argv[2], "x y");
	assert_arg(&f.argv[3], "z");
	assert_int_equal(parse_str(&f, "\r\n", &lim), 2);
	assert_int_equal(f.argc, 0);
	assert_int_equal(parse_str(&f, "PING", &lim), RESP_INCOMPLETE);
	assert_int_equal(parse_str(&f, "ECHO 'abc\r\n", &lim), RESP_MALFORMED);
	assert_string_equal(f.error, "unbalanced quotes in request");
	assert_int_equal(parse_str(&f, "ECHO 'abc'd\r\n", &lim), RESP_MALFORMED);
	char *big = malloc(70000);
	memset(big, 'a', 69999);
	big[69999] = '\0';
	assert_int_equal(parse_str(&f, big, &lim), RESP_MALFORMED);
	assert_string_equal(f.error, "too big inline request");
	big[100] = '\0';
	assert_int_equal(parse_str(&f, big, &lim), RESP_INCOMPLETE);
	free(big);
	resp_frame_free(&f);
}

static void expect_error(const char *s, const resp_limits *l, const char *msg)
{
	resp_frame f = {0};
	assert_int_equal(parse_str(&f, s, l), RESP_MALFORMED);
	assert_string_equal(f.error, msg);
	resp_frame_free(&f);
}

static void test_malformed(void **state)
{
	expect_error("*abc\r\n", &lim, "invalid multibulk length");
	expect_error("*2\n", &lim, "invalid multibulk length");
	expect_error("*2\r\n:1\r\n", &lim, "expected '$', got ':'");
	expect_error("*1\r\n$-5\r\n", &lim, "invalid bulk length");
	expect_error("*1\r\n$x\r\n", &lim, "invalid bulk length");
	expect_error("*1\r\n$3\r\nabcde\r\n", &lim, "expected CR LF after a bulk string");
	expect_error("*1\r\n$4000000000\r\n", &lim, "invalid bulk length");
	expect_error("*1\r\n$99999999999999999999\r\n", &lim, "invalid bulk length");
	expect_error("*2000000\r\n", &lim, "invalid multibulk length");
	expect_error("*11\r\n", &unauth, "unauthenticated multibulk length");
	expect_error("*1\r\n$16385\r\n", &unauth, "unauthenticated bulk length");
	expect_error("PING a b c d e f g h i j k\r\n", &unauth, "unauthenticated multibulk length");
	/* a header line without its end, longer than the bound */
	char *big = malloc(70000);
	memcpy(big, "*1", 2);
	memset(big + 2, '1', 69997);
	big[69999] = '\0';
	expect_error(big, &lim, "too big mbulk count string");
	memcpy(big, "*1\r\n$", 5);
	expect_error(big, &lim, "too big bulk count string");
	free(big);
}

/* A declared count or length allocates nothing: the vector grows only with
 * arguments that arrived. */
static void test_no_allocation_for_declared_sizes(void **state)
{
	resp_frame f = {0};
	assert_int_equal(parse_str(&f, "*1000000\r\n$3\r\nabc\r\n", &lim), RESP_INCOMPLETE);
	assert_true(f.cap <= 16);
	assert_int_equal(parse_str(&f, "*1\r\n$500000000\r\nabc", &lim), RESP_INCOMPLETE);
	assert_true(f.cap <= 16);
	resp_frame_free(&f);
}

/* A frame of many arguments that arrives in pieces is parsed in one pass:
 * the state says how far it got (the result is the same as in one go). */
static void test_many_args_in_pieces(void **state)
{
	rbuf b = {0};
	resp_add_header(&b, '*', 100000);
	for (int i = 0; i < 100000; i++) {
		char t[16];
		int n = snprintf(t, sizeof(t), "%d", i);
		resp_add_bulk(&b, t, (size_t)n);
	}
	resp_frame f = {0};
	ssize_t r = RESP_INCOMPLETE;
	for (size_t k = 4096; r == RESP_INCOMPLETE; k += 4096)
		r = resp_parse(&f, b.p, k < b.len ? k : b.len, &lim);
	assert_int_equal(r, (ssize_t)b.len);
	assert_int_equal(f.argc, 100000);
	assert_arg(&f.argv[99999], "99999");
	resp_frame_free(&f);
	rbuf_free(&b);
}

/* Random and mutated frames: never a crash, never a result past the end. */
static void test_random_bytes(void **state)
{
	uint64_t x = 88172645463325252ull;
	const char *seeds[] = {"*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n", "PING 'a b'\r\n",
	                       "*1\r\n$0\r\n\r\n"};
	char buf[64];
	resp_frame f = {0};
	for (int it = 0; it < 200000; it++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t n;
		if (it % 2) {
			const char *s = seeds[x % 3];
			n = strlen(s);
			memcpy(buf, s, n);
			buf[(x >> 8) % n] = (char)(x >> 16);
			n = (x >> 24) % (n + 1);
		} else {
			n = (x >> 8) % sizeof(buf);
			for (size_t i = 0; i < n; i++)
				buf[i] = "*$\r\n0123-aQ '\""[(x >> (i % 50)) % 15];
		}
		resp_frame_reset(&f);
		ssize_t r = resp_parse(&f, buf, n, &lim);
		assert_true(r == RESP_INCOMPLETE || r == RESP_MALFORMED ||
		            (r > 0 && (size_t)r <= n));
		for (size_t i = 0; r > 0 && i < f.argc; i++)
			assert_true(f.argv[i].p >= buf && f.argv[i].p + f.argv[i].n <= buf + n);
	}
	resp_frame_free(&f);
}

static void test_reply_encoding(void **state)
{
	rbuf b = {0};
	resp_add_header(&b, '*', -1);
	resp_add_header(&b, ':', -9223372036854775807LL - 1);
	resp_add_simple(&b, '-', "ERR a\r\nb", 8);
	resp_add_bulk(&b, "xy", 2);
	resp_add_double(&b, 3, 1.5);
	resp_add_double(&b, 2, 1.5);
	const char *want =
	    "*-1\r\n:-9223372036854775808\r\n-ERR a  b\r\n$2\r\nxy\r\n,1.5\r\n$3\r\n1.5\r\n";
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.p, want, b.len);
	rbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_multibulk),
	    cmocka_unit_test(test_byte_at_a_time),
	    cmocka_unit_test(test_inline),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_no_allocation_for_declared_sizes),
	    cmocka_unit_test(test_many_args_in_pieces),
	    cmocka_unit_test(test_random_bytes),
	    cmocka_unit_test(test_reply_encoding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
