/*
 * test_review11.c - round 11's review of the library (r11-review):
 *
 *   - the expiry reaper sleeps on the monotonic clock. It slept until a
 *     deadline on CLOCK_REALTIME (expiry.c reaper_main): a wall clock stepped
 *     back by an hour after the deadline was taken (NTP after a boot with a
 *     wrong RTC, an administrator) held every round of the reaper for that
 *     hour, so idle contexts outlived their time-to-live in ctx_count, DBSIZE
 *     and memory. This program defines clock_gettime (it wins over libc's at
 *     link time, for libctx.a's calls too) and makes CLOCK_REALTIME read one
 *     hour ahead while the store opens: the same as a clock one hour fast
 *     that is set right just after the reaper took its deadline. The
 *     store's own clock (ctx_options.clock_us, tests/fake_clock.h) decides
 *     what has expired; the wall clock only decides when the reaper wakes.
 *     The reaper (reaper_ms 20) must drop the expired context by itself:
 *     nothing reads it, so nothing wakes the reaper early.
 *   - a damaged newest checkpoint that held contexts with a time-to-live,
 *     skipped at open for an older one, left store.any_ttl set (recovery.c
 *     load_checkpoint clears the store with store_clear and loads the older
 *     one; any_ttl is "a time-to-live was ever set in what is loaded"), so
 *     ctx_count_with_fields (DBSIZE) walked every context instead of reading
 *     its counter, and the reaper scanned the table every round, for the
 *     life of the store. store_clear now resets it. No behaviour but the
 *     cost shows it, so the test reads the flag (store.h) and checks that
 *     the count stays right.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fake_clock.h"
#include "store.h"

/* Create id with k = v. */
static void create_put(ctx_store *s, const char *id, const char *k, const char *v)
{
	assert_int_equal(ctx_create(s, id), CTX_OK);
	test_put_str(s, id, k, v);
}

/* ---- a wall clock that steps --------------------------------------------- */

/* Seconds added to CLOCK_REALTIME (and CLOCK_REALTIME_COARSE) readings. */
static _Atomic long realtime_shift_s;

int clock_gettime(clockid_t id, struct timespec *ts)
{
	long r = syscall(SYS_clock_gettime, id, ts);
	if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
		ts->tv_sec += atomic_load(&realtime_shift_s);
	return (int)r;
}

/* A context past its time-to-live is dropped by the reaper's own rounds,
 * whatever the wall clock did meanwhile. */
static void test_reaper_ignores_wall_clock_steps(void **unused)
{
	(void)unused;
	fake_clock *fc = new_clock();
	ctx_options o;
	ctx_options_init(&o);
	o.clock_us = fake_clock_read;
	o.clock_arg = fc;
	o.reaper_ms = 20;
	/* The wall clock reads an hour ahead while the reaper takes its first
	 * deadline, then is set right. */
	atomic_store(&realtime_shift_s, 3600);
	ctx_store *s = test_open(&o);
	usleep(100 * 1000); /* (the reaper has taken its deadline) */
	atomic_store(&realtime_shift_s, 0);

	create_put(s, "idle", "k", "v");
	create_put(s, "kept", "k", "v");
	assert_int_equal(ctx_set_ttl(s, "idle", 1000), CTX_OK);
	assert_int_equal(ctx_count(s), 2);
	clock_advance(fc, 2000000); /* 2 s on the store's clock: "idle" expired */

	/* A bounded wait for an event, no timed assertion: the reaper wakes
	 * every 20 ms, so 60 s is a generous bound on 2 loaded cores; before
	 * the fix it slept for the hour. */
	double until = test_now() + 60.0;
	while (ctx_count(s) != 1 && test_now() < until)
		usleep(10 * 1000);
	assert_int_equal(ctx_count(s), 1);
	assert_int_equal(ctx_count_with_fields(s, NULL), 1);
	ctx_close(s);
}

/* ---- a skipped checkpoint's time-to-live ------------------------------------ */

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = (size_t)1 << 40; /* only ctx_checkpoint writes one */
	return test_open(&o);
}

/* The newest checkpoint is damaged and held contexts with a time-to-live;
 * the older one and the log hold none: after the fallback, nothing says a
 * time-to-live was ever set, and DBSIZE's count is the store's counter and
 * right. */
static void test_skipped_checkpoint_leaves_no_ttl_mark(void **unused)
{
	(void)unused;
	/* A checkpoint with contexts that have a time-to-live (an hour: none
	 * expires during the test). */
	char *other = test_make_dir("review11_ttl_source");
	ctx_store *s = open_dir(other);
	for (int i = 0; i < 20; i++) {
		char id[32];
		snprintf(id, sizeof(id), "t%02d", i);
		create_put(s, id, "k", "v");
		assert_int_equal(ctx_set_ttl(s, id, 3600 * 1000), CTX_OK);
	}
	assert_int_equal(ctx_checkpoint(s), CTX_OK);
	ctx_close(s);
	size_t ttl_size;
	char *ttl_path = test_newest_checkpoint(other, NULL);
	unsigned char *ttl_ckpt = test_read_file(ttl_path, &ttl_size);
	free(ttl_path);

	/* The store under test: no time-to-live ever, a checkpoint and a log
	 * after it; three contexts with fields and one empty. */
	char *dir = test_make_dir("review11_fallback");
	s = open_dir(dir);
	create_put(s, "a", "k", "v");
	create_put(s, "b", "k", "v");
	assert_int_equal(ctx_checkpoint(s), CTX_OK);
	uint64_t older;
	free(test_newest_checkpoint(dir, &older));
	create_put(s, "c", "k", "v");
	create_put(s, "d", "k", "v");
	ctx_txn *t;
	assert_int_equal(ctx_txn_begin(s, "d", &t), CTX_OK);
	assert_int_equal(ctx_txn_del(t, "k", 1), CTX_OK);
	assert_int_equal(ctx_txn_commit(t, 0, NULL), CTX_OK);
	/* As after a crash: the close's own checkpoint removed, the log after
	 * the older one kept. */
	test_close_keeping_log(s);
	uint64_t at_close;
	char *newest = test_newest_checkpoint(dir, &at_close);
	assert_true(at_close > older);
	assert_int_equal(unlink(newest), 0);
	free(newest);

	/* A newer checkpoint (within the log) that is not this store's: the
	 * loader reads every context of it (setting any_ttl), then finds it
	 * names a revision it does not hold, and falls back to the older one
	 * and the log. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/ckpt-%016" PRIx64 ".ckpt", dir, older + 1);
	test_write_file(path, ttl_ckpt, ttl_size);

	ctx_verify_report report;
	ctx_status vst = ctx_verify(dir, &report);
	if (vst != CTX_OK)
		fail_msg("verify: %s: %s", ctx_strerror(vst), report.message);
	assert_int_equal(report.checkpoints_damaged, 1);
	s = open_dir(dir);
	assert_int_equal(ctx_count(s), 4);
	assert_false(atomic_load(&s->any_ttl));
	uint64_t rev;
	assert_int_equal(ctx_count_with_fields(s, &rev), 3);
	/* and the counter keeps counting */
	test_put_str(s, "d", "k", "again");
	assert_int_equal(ctx_count_with_fields(s, NULL), 4);
	assert_int_equal(ctx_drop(s, "a"), CTX_OK);
	assert_int_equal(ctx_count_with_fields(s, NULL), 3);
	ctx_close(s);

	free(ttl_ckpt);
	test_remove_dir(dir);
	test_remove_dir(other);
	free(dir);
	free(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_reaper_ignores_wall_clock_steps, test_timer_start,
	                                    test_timer_stop),
	    cmocka_unit_test_setup_teardown(test_skipped_checkpoint_leaves_no_ttl_mark,
	                                    test_timer_start, test_timer_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
