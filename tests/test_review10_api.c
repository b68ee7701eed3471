/*
 * test_review10_api.c - round 10 review: public calls that took down the
 * caller instead of answering, or hung.
 *
 *   - ctx_get_stats with a NULL store or output, ctx_state_retain(NULL) and
 *     the ctx_state_* accessors on NULL segfaulted, where every other call
 *     of the header answers NULL (ctx_count, ctx_state_release,
 *     ctx_state_lookup, ctx_tracker_pending, ...): they now answer 0 / NULL
 *     (ctx_get_stats zeroes *out for a NULL store);
 *   - ctx_history and ctx_point_list sized their arrays by history_depth
 *     and max_points, not by what is kept (test_history_sized_by_content);
 *   - under durability batch, the log's flusher slept out batch_ms after
 *     every batch without looking at the store: ctx_checkpoint (which asks
 *     the flusher to rotate the log) and ctx_close waited for the rest of
 *     the period, up to batch_ms (3 s with batch_ms = 3000; here the
 *     period is the largest batch_ms, 49 days: without the fix the test
 *     hangs, and its watchdog alarm - no timing is asserted - fails it).
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static void test_null_accessors(void **state)
{
	(void)state;
	assert_int_equal(ctx_state_version(NULL), 0);
	assert_int_equal(ctx_state_revision(NULL), 0);
	assert_int_equal(ctx_state_count(NULL), 0);
	assert_int_equal(ctx_state_bytes(NULL), 0);
	assert_int_equal(ctx_state_created_us(NULL), 0);
	assert_int_equal(ctx_state_updated_us(NULL), 0);
	assert_int_equal(ctx_state_meta_count(NULL), 0);
	assert_null(ctx_state_id(NULL));
	assert_null(ctx_state_retain(NULL));
}

static void test_null_stats(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	ctx_get_stats(s, NULL); /* nothing to fill: a no-op */
	ctx_stats st;
	memset(&st, 0xff, sizeof(st));
	ctx_get_stats(NULL, &st);
	assert_int_equal(st.contexts, 0);
	assert_int_equal(st.revision, 0);
	assert_int_equal(st.io_errno, 0);
	ctx_get_stats(s, &st);
	assert_int_equal(st.contexts, 1);
	ctx_close(s);
}

/* ctx_history and ctx_point_list allocated by the configured limits, not
 * by what is kept: with history_depth at its documented maximum every
 * ctx_history was CTX_NOMEM (a malloc of 171 GB), with max_points 2^40
 * every ctx_point_list, and max_points SIZE_MAX made its size wrap to a
 * malloc(0) that the list was then written into. */
static void history_and_points_of(size_t history_depth, size_t max_points)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = history_depth;
	o.max_points = max_points;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "a"));
	assert_ok(ctx_put(s, "a", "k", 1, "v", 1, NULL));
	assert_ok(ctx_point_create(s, "a", "p", NULL));
	assert_ok(ctx_put(s, "a", "k", 1, "w", 1, NULL));
	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_ok(ctx_history(s, "a", &h, &n));
	assert_int_equal(n, 3);
	assert_int_equal(h[0].version, 1);
	assert_true(h[1].pinned);
	assert_int_equal(h[2].version, 3);
	free(h);
	ctx_point *p = NULL;
	assert_ok(ctx_point_list(s, "a", &p, &n));
	assert_int_equal(n, 1);
	assert_int_equal(p[0].version, 2);
	assert_string_equal(p[0].label, "p");
	free(p);
	ctx_close(s);
}

static void test_history_sized_by_content(void **state)
{
	(void)state;
	history_and_points_of(4294967294u, 0);
	history_and_points_of(0, (size_t)1 << 40);
	history_and_points_of(0, SIZE_MAX);
}

static void watchdog(int sig)
{
	(void)sig;
	static const char msg[] = "test_review10_api: ctx_checkpoint or ctx_close hung "
	                          "(the flusher sleeps out batch_ms)\n";
	ssize_t r = write(2, msg, sizeof(msg) - 1);
	(void)r;
	_exit(1);
}

static void test_batch_close_does_not_wait_period(void **state)
{
	(void)state;
	char *dir = test_make_dir("review10-batch");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	o.batch_ms = ~0u; /* 49 days */
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	signal(SIGALRM, watchdog);
	alarm(300); /* a hang, not a timing: the period is 49 days */
	assert_ok(ctx_create(s, "a"));
	assert_ok(ctx_put(s, "a", "k", 1, "v1", 2, NULL));
	/* The flusher has taken a batch and now paces itself: the rotation
	 * of the checkpoint and the close must not wait for the period. */
	assert_ok(ctx_checkpoint(s));
	assert_ok(ctx_put(s, "a", "k", 1, "v2", 2, NULL));
	ctx_close(s);
	assert_ok(ctx_open(&o, &s));
	char buf[8];
	size_t n = 0;
	assert_ok(ctx_get_value(s, "a", "k", 1, buf, sizeof(buf), &n));
	assert_int_equal(n, 2);
	assert_memory_equal(buf, "v2", 2);
	ctx_close(s);
	alarm(0);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_null_accessors),
	    cmocka_unit_test(test_null_stats),
	    cmocka_unit_test(test_history_sized_by_content),
	    cmocka_unit_test(test_batch_close_does_not_wait_period),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
