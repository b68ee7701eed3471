/*
 * feed_util.h - what the tests of the change feed (src/lib/watch.h) read of
 * a feed: its statistics as a value, and a wait for its waker to be idle.
 */
#ifndef CTX_TEST_FEED_UTIL_H
#define CTX_TEST_FEED_UTIL_H

#include <unistd.h>

#include "watch.h"

static inline feed_stats feed_stats_of(feed *f)
{
	feed_stats st;
	feed_get_stats(f, &st);
	return st;
}

/* Until the waker has made every wake-up it had to and sleeps. */
static inline void feed_waker_settles(feed *f)
{
	while (feed_stats_of(f).waker_busy)
		usleep(100);
}

#endif
