/*
 * test_allocator.c - ctxd runs on the allocator its build was configured
 * with (CMake CTX_JEMALLOC, src/server/alloc.c): INFO memory's
 * mem_allocator says "jemalloc-<version>" when the build links jemalloc
 * into ctxd (CTXD_EXPECT_JEMALLOC=1, set by CMakeLists.txt) and "libc"
 * otherwise, so a build whose linking silently stops replacing malloc
 * fails here. Under jemalloc: the background purge thread is on and the
 * dirty decay is ctxd's 30 s, and MALLOC_CONF from the environment still
 * overrides both.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "serverutil.h"
#include "suclient.h"

#ifndef CTXD_EXPECT_JEMALLOC
#error "CMakeLists.txt sets CTXD_EXPECT_JEMALLOC to the build's CTX_JEMALLOC"
#endif

static char *allocator_of(su_server *s)
{
	redisContext *c = hconn(s);
	char *v = info_field(c, "memory", "mem_allocator");
	redisFree(c);
	assert_non_null(v);
	return v;
}

static void test_info_names_the_configured_allocator(void **unused)
{
	(void)unused;
	su_server *s = su_start("allocator", NULL);
	char *name = allocator_of(s);
	if (CTXD_EXPECT_JEMALLOC) {
		if (strncmp(name, "jemalloc-", 9) != 0 || strlen(name) < 14)
			fail_msg("mem_allocator:%s, want jemalloc-<version> (CTX_JEMALLOC=ON)",
			         name);
	} else {
		assert_string_equal(name, "libc");
	}
	free(name);
	su_free(s);
}

static void test_jemalloc_configuration(void **unused)
{
	(void)unused;
	if (!CTXD_EXPECT_JEMALLOC)
		skip();
	su_server *s = su_start("allocator_conf", NULL);
	redisContext *c = hconn(s);
	assert_int_equal(info_int(c, "memory", "jemalloc_background_thread"), 1);
	assert_int_equal(info_int(c, "memory", "jemalloc_dirty_decay_ms"), 30000);
	redisFree(c);
	su_free(s);

	setenv("MALLOC_CONF", "background_thread:false,dirty_decay_ms:5000", 1);
	s = su_start("allocator_env", NULL);
	unsetenv("MALLOC_CONF");
	c = hconn(s);
	assert_int_equal(info_int(c, "memory", "jemalloc_background_thread"), 0);
	assert_int_equal(info_int(c, "memory", "jemalloc_dirty_decay_ms"), 5000);
	redisFree(c);
	su_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_info_names_the_configured_allocator),
	    cmocka_unit_test(test_jemalloc_configuration),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
