/*
 * test_allocator.c - ctxd runs on the allocator its build was configured
 * with (CMake CTX_JEMALLOC, src/server/alloc.c): INFO memory's
 * mem_allocator says "jemalloc-<version>" when the build links jemalloc
 * into ctxd (CTXD_EXPECT_JEMALLOC=1, set by CMakeLists.txt) and "libc"
 * otherwise, so a build whose linking silently stops replacing malloc
 * fails here. Under jemalloc: the background purge thread is on and the
 * dirty decay is ctxd's 30 s, the heap is advised onto transparent huge
 * pages (thp:always, round 12: a write's history grows the heap, and 4 KiB
 * page faults were a quarter of a pipelined HSET's CPU), and MALLOC_CONF
 * from the environment still overrides them. Where the kernel allows THP
 * (not "[never]"), the heap of a server that took writes does hold huge
 * pages (AnonHugePages in /proc/PID/smaps_rollup).
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
	char *thp = info_field(c, "memory", "jemalloc_thp");
	assert_non_null(thp);
	assert_string_equal(thp, "always");
	free(thp);
	redisFree(c);
	su_free(s);

	setenv("MALLOC_CONF", "background_thread:false,dirty_decay_ms:5000,thp:default", 1);
	s = su_start("allocator_env", NULL);
	unsetenv("MALLOC_CONF");
	c = hconn(s);
	assert_int_equal(info_int(c, "memory", "jemalloc_background_thread"), 0);
	assert_int_equal(info_int(c, "memory", "jemalloc_dirty_decay_ms"), 5000);
	thp = info_field(c, "memory", "jemalloc_thp");
	assert_non_null(thp);
	assert_string_equal(thp, "default");
	free(thp);
	redisFree(c);
	su_free(s);
}

/* The kB of AnonHugePages in /proc/PID/smaps_rollup; -1 if not there. */
static long anon_huge_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long kb = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Whether the kernel may back an madvise'd range with huge pages. */
static bool kernel_thp_allowed(void)
{
	char line[256] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return false;
	bool ok = fgets(line, sizeof(line), f) && !strstr(line, "[never]");
	fclose(f);
	return ok;
}

static void test_heap_on_huge_pages(void **unused)
{
	(void)unused;
	if (!CTXD_EXPECT_JEMALLOC || !kernel_thp_allowed())
		skip();
	su_server *s = su_start("allocator_thp", NULL);
	if (anon_huge_kb(s->pid) < 0) {
		su_free(s);
		skip();
	}
	redisContext *c = hconn(s);
	/* 64 MB of fields: the heap grows by many huge pages' worth */
	static char val[4096];
	memset(val, 'v', sizeof(val));
	for (int i = 0; i < 16384; i++)
		redisAppendCommand(c, "HSET h%d f %b", i % 64, val, sizeof(val));
	for (int i = 0; i < 16384; i++) {
		redisReply *r = NULL;
		assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
		freeReplyObject(r);
	}
	long kb = anon_huge_kb(s->pid);
	if (kb < 2048)
		fail_msg("AnonHugePages: %ld kB after 64 MB of writes, want >= 2048", kb);
	redisFree(c);
	su_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_info_names_the_configured_allocator),
	    cmocka_unit_test(test_jemalloc_configuration),
	    cmocka_unit_test(test_heap_on_huge_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
