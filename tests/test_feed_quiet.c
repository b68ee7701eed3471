/*
 * test_feed_quiet.c - the feed's quiet path (src/lib/watch.c, QUIET): while
 * nobody watches, a report of the frontier's successor advances the
 * frontier with one compare-and-swap and no lock; a watch opening takes the
 * frontier back (freezes the quiet word) under the feed lock.
 *
 *   - watches opened and closed again and again while reporter threads
 *     report out of order on the quiet path: a watch from now on delivers
 *     every revision handed out after ctx_watch_open returned, in order,
 *     once each; a watch from an explicit revision is refused (CTX_NOT_FOUND)
 *     or delivers every revision from it on;
 *   - the gate (durability batch): unrecorded revisions pass it on the quiet
 *     path, recorded ones wait for it.
 *
 * Reporter threads do not call cmocka's asserts; they only report. Every
 * wait is bounded, so a lost event fails the test instead of hanging it.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "watch.h"

#define REPORTERS 4
#define PER_ROUND 3000u
#define ROUNDS    150

typedef struct race {
	feed *f;
	atomic_uint_least64_t next;     /* the next revision to hand out */
	atomic_uint_least64_t limit;    /* hand out revisions below it */
	atomic_uint_least64_t reported; /* how many were reported */
	atomic_bool stop;
} race;

/* Every 7th revision is a skip (no event). */
static bool is_skip(uint64_t rev)
{
	return rev % 7 == 0;
}

static void report(feed *f, uint64_t rev)
{
	if (is_skip(rev)) {
		feed_skip(f, rev);
		return;
	}
	char key[32];
	int kl = snprintf(key, sizeof(key), "k%" PRIu64, rev);
	const void *keys[1] = {key};
	size_t klens[1] = {(size_t)kl};
	feed_record(f, rev, CTX_EVENT_COMMITTED, "ctx", 3, rev, 1, keys, klens);
}

/* Take revisions below the limit and report them, yielding now and then so
 * that reports overtake each other. */
static void *reporter(void *arg)
{
	race *r = arg;
	unsigned n = 0;
	while (!atomic_load(&r->stop)) {
		uint64_t rev = atomic_load(&r->next);
		if (rev >= atomic_load(&r->limit)) {
			sched_yield();
			continue;
		}
		if (!atomic_compare_exchange_weak(&r->next, &rev, rev + 1))
			continue;
		if (++n % 61 == 0)
			sched_yield(); /* between taking the revision and reporting it */
		report(r->f, rev);
		atomic_fetch_add(&r->reported, 1);
	}
	return NULL;
}

/* Wait until every revision below limit was reported. */
static void wait_reported(race *r, uint64_t first, uint64_t limit)
{
	double deadline = test_now() + 30;
	while (atomic_load(&r->reported) < limit - first) {
		if (test_now() > deadline)
			fail_msg("revisions below %" PRIu64 " not reported", limit);
		sched_yield();
	}
}

/* Read w up to revision last: the events must be strictly increasing, never
 * lagged, and include every non-skip revision from `want` to last. */
static void expect_from(ctx_watch *w, uint64_t want, uint64_t last)
{
	uint64_t prev = 0;
	uint64_t need = want;
	while (need <= last && is_skip(need))
		need++;
	double deadline = test_now() + 30;
	while (need <= last) {
		ctx_event *e = NULL;
		if (ctx_watch_wait(w, 100, &e) != CTX_OK) {
			if (test_now() > deadline)
				fail_msg("revision %" PRIu64 " never delivered (from %" PRIu64 ")",
				         need, want);
			continue;
		}
		uint64_t rev = e->revision;
		bool lagged = e->kind == CTX_EVENT_LAGGED;
		ctx_event_free(e);
		if (lagged)
			fail_msg("lagged at %" PRIu64, rev);
		if (rev <= prev)
			fail_msg("revision %" PRIu64 " after %" PRIu64 ": doubled or out of order",
			         rev, prev);
		if (rev > need)
			fail_msg("revision %" PRIu64 " lost (got %" PRIu64 ", from %" PRIu64 ")",
			         need, rev, want);
		if (is_skip(rev))
			fail_msg("skipped revision %" PRIu64 " delivered", rev);
		prev = rev;
		if (rev == need) {
			need++;
			while (need <= last && is_skip(need))
				need++;
		}
	}
}

/* Watches open while the reporters are on the quiet path (nobody watched
 * since the last round's watch closed): from now on and from an explicit
 * revision taken just before the open. */
static void test_open_while_reporting_quietly(void **unused)
{
	(void)unused;
	race r = {0};
	assert_ok(feed_open(1, &(feed_config){.queue = 1u << 16}, &r.f));
	atomic_init(&r.next, 1);
	atomic_init(&r.limit, 1);
	pthread_t t[REPORTERS];
	for (int i = 0; i < REPORTERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reporter, &r), 0);

	unsigned refused = 0;
	uint64_t first = 1;
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t limit = first + PER_ROUND;
		atomic_store(&r.limit, limit);
		/* Let the reporters run quietly for a while, differently each round. */
		for (int i = 0; i < round % 13; i++)
			sched_yield();
		bool explicit = round % 2;
		uint64_t from = atomic_load(&r.next);
		ctx_watch *w = NULL;
		ctx_status st = feed_watch_open(r.f, "", true, explicit ? from : 0, &w);
		uint64_t after = atomic_load(&r.next); /* handed out after open returned */
		wait_reported(&r, 1, limit);
		if (explicit && st == CTX_NOT_FOUND) {
			refused++;
		} else {
			assert_ok(st);
			expect_from(w, explicit ? from : after, limit - 1);
			ctx_watch_close(w);
		}
		first = limit;
	}
	atomic_store(&r.stop, true);
	for (int i = 0; i < REPORTERS; i++)
		pthread_join(t[i], NULL);
	feed_stats s;
	feed_get_stats(r.f, &s);
	assert_int_equal(s.frontier, first - 1);
	assert_int_equal(s.pending_events, 0);
	printf("# %u of %d explicit watches refused\n", refused, ROUNDS / 2);
	feed_close(r.f);
}

static void expect_event(ctx_watch *w, uint64_t rev)
{
	ctx_event *e = NULL;
	assert_ok(ctx_watch_next(w, &e));
	assert_int_equal(e->revision, rev);
	ctx_event_free(e);
}

/* Under a gate (durability batch), revisions nobody records pass it on the
 * quiet path; a watch opened then from now on starts after them, and its
 * events wait for the gate. */
static void test_quiet_past_the_gate(void **unused)
{
	(void)unused;
	feed *f = NULL;
	assert_ok(feed_open(1, NULL, &f));
	feed_set_gate(f, 0);
	for (uint64_t rev = 1; rev <= 5; rev++)
		report(f, rev);
	feed_stats s;
	feed_get_stats(f, &s);
	assert_int_equal(s.frontier, 5);
	assert_int_equal(s.oldest, 6);
	ctx_watch *w = NULL, *early = NULL;
	assert_int_equal(feed_watch_open(f, "", true, 3, &early), CTX_NOT_FOUND);
	assert_ok(feed_watch_open(f, "", true, 0, &w));
	report(f, 6);
	test_expect_no_event(w); /* above the gate */
	feed_set_gate(f, 6);
	expect_event(w, 6);
	test_expect_no_event(w);
	ctx_watch_close(w);
	/* Quiet again: 8 waits for 7 (locked), then 7 comes; then 9 is quiet. */
	report(f, 8);
	report(f, 7);
	report(f, 9);
	feed_get_stats(f, &s);
	assert_int_equal(s.frontier, 9);
	assert_int_equal(s.pending_events, 0);
	assert_int_equal(s.events_recorded, 1);
	feed_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_while_reporting_quietly),
	    cmocka_unit_test(test_quiet_past_the_gate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
