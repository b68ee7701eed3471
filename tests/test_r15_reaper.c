/*
 * test_r15_reaper.c - the first time-to-live arms the reaper; it does not
 * run a round at once (round 15).
 *
 * Round 14 let an idle store's reaper sleep with no deadline until the first
 * time-to-live, and ttl_apply woke it with a kick, which runs a round at
 * once. A test that sets time-to-lives on a fake clock, moves the clock and
 * then expires by hand (test_nomem's "expire" scenario, with reaper_ms
 * 100000 so that only the test expires) then raced that round: under load it
 * came after the clock moved and took 13 of the 20 contexts the test
 * expected ctx_expire_now to return (seen once in a whole-suite run). Nothing
 * can be due when the first time-to-live is set, so the reaper now only
 * starts its rounds, the first reaper_ms later; a kick (an expired context
 * met by a call) still runs a round at once.
 *
 * Checked with the clock held (fake_clock.h): a round reads the store clock,
 * so a round after the first ttl would be a held read.
 */
#include "testutil.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#include "fake_clock.h"

static ctx_store *open_with(fake_clock *fc, unsigned reaper_ms)
{
	ctx_options o;
	ctx_options_init(&o);
	o.clock_us = fake_clock_read;
	o.clock_arg = fc;
	o.reaper_ms = reaper_ms;
	return test_open(&o);
}

/* No round follows the first time-to-live: the clock, held, is not read by
 * another thread; the test alone expires what the moved clock made due. */
static void test_first_ttl_runs_no_round(void **unused)
{
	(void)unused;
	for (int i = 0; i < 5; i++) {
		fake_clock *fc = new_clock();
		ctx_store *s = open_with(fc, 3600000u);
		assert_ok(ctx_create(s, "a"));
		assert_ok(ctx_create(s, "b"));
		usleep(20000); /* the reaper is asleep, with no deadline */
		clock_hold_others(fc);
		assert_ok(ctx_set_ttl(s, "a", 1000));
		assert_ok(ctx_set_ttl(s, "b", 1000));
		usleep(100000); /* a round at once would be reading the clock now */
		assert_int_equal(atomic_load(&fc->held_reads), 0);
		clock_advance(fc, 2000000);
		assert_int_equal(ctx_expire_now(s), 2);
		clock_release(fc);
		assert_int_equal(ctx_count(s), 0);
		ctx_close(s);
	}
}

/* The armed reaper keeps its rounds: with a short reaper_ms it drops what
 * expires without any call. */
static void test_armed_reaper_rounds(void **unused)
{
	(void)unused;
	fake_clock *fc = new_clock();
	ctx_store *s = open_with(fc, 10);
	assert_ok(ctx_create(s, "keep"));
	assert_ok(ctx_create(s, "short"));
	usleep(20000);
	assert_ok(ctx_set_ttl(s, "short", 1000));
	clock_advance(fc, 2000000);
	double t0 = test_now();
	while (ctx_count(s) != 1 && test_now() - t0 < 30)
		usleep(5000);
	assert_int_equal(ctx_count(s), 1);
	ctx_close(s);
}

/* A kick still runs a round at once: a read that meets an expired context
 * makes the reaper drop it, with reaper_ms an hour. */
static void test_kick_runs_round(void **unused)
{
	(void)unused;
	fake_clock *fc = new_clock();
	ctx_store *s = open_with(fc, 3600000u);
	assert_ok(ctx_create(s, "keep"));
	assert_ok(ctx_create(s, "short"));
	assert_ok(ctx_set_ttl(s, "short", 1000));
	clock_advance(fc, 2000000);
	ctx_state *st = NULL;
	assert_int_equal(ctx_get(s, "short", &st), CTX_NOT_FOUND);
	double t0 = test_now();
	while (ctx_count(s) != 1 && test_now() - t0 < 30)
		usleep(5000);
	assert_int_equal(ctx_count(s), 1);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_ttl_runs_no_round),
	    cmocka_unit_test(test_armed_reaper_rounds),
	    cmocka_unit_test(test_kick_runs_round),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
