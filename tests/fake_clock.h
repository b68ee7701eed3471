/*
 * fake_clock.h - a store clock (ctx_options.clock_us) that the test sets, and
 * that can hold every thread but one: while held, the other threads that
 * read it (the reaper, in practice) wait in the read, so nothing else in the
 * store acts on the time until clock_release (a bounded wait: 60 s). Shared
 * by test_session.c and test_expiry_semantics.c. Static functions: include
 * it once, after testutil.h.
 */
#ifndef CTX_TESTS_FAKE_CLOCK_H
#define CTX_TESTS_FAKE_CLOCK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#define FAKE_CLOCK_UNUSED __attribute__((unused))

#define T0 1700000000000000ull /* every clock's start, µs since 1970: November 2023 */

typedef struct fake_clock {
	_Atomic uint64_t now;
	/* While set, every thread but `holder` waits in the clock. */
	atomic_bool hold_others;
	_Atomic(pthread_t) holder;
	atomic_uint held_reads; /* reads that found the clock held */
} fake_clock;

/* The clock_us function; its argument is the fake_clock. */
static FAKE_CLOCK_UNUSED uint64_t fake_clock_read(void *arg)
{
	fake_clock *fc = arg;
	if (atomic_load(&fc->hold_others) &&
	    !pthread_equal(pthread_self(), atomic_load(&fc->holder))) {
		atomic_fetch_add(&fc->held_reads, 1);
		double until = test_now() + 60.0;
		while (atomic_load(&fc->hold_others) && test_now() < until)
			usleep(100);
	}
	return atomic_load(&fc->now);
}

/* Hold the other threads that read the clock until clock_release. */
static FAKE_CLOCK_UNUSED void clock_hold_others(fake_clock *fc)
{
	atomic_store(&fc->holder, pthread_self());
	atomic_store(&fc->hold_others, true);
}

static FAKE_CLOCK_UNUSED void clock_release(fake_clock *fc)
{
	atomic_store(&fc->hold_others, false);
}

/* A clock at T0, not held. Clocks live as long as the program: a failed test
 * leaves its store open (cmocka jumps out of it), and that store's reaper may
 * still read its clock. */
static FAKE_CLOCK_UNUSED fake_clock *new_clock(void)
{
	static fake_clock clocks[64];
	static int used;
	assert_true(used < 64);
	fake_clock *fc = &clocks[used++];
	atomic_store(&fc->now, T0);
	atomic_store(&fc->hold_others, false);
	atomic_store(&fc->held_reads, 0);
	return fc;
}

static FAKE_CLOCK_UNUSED void clock_set(fake_clock *fc, uint64_t t)
{
	atomic_store(&fc->now, t);
}

static FAKE_CLOCK_UNUSED void clock_advance(fake_clock *fc, uint64_t dt)
{
	atomic_fetch_add(&fc->now, dt);
}

#endif
