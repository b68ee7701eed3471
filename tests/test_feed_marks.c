/*
 * test_feed_marks.c - the feed's quiet marks (src/lib/watch.c, QUIET):
 * while nobody records, a report past the frontier's successor is a mark
 * in the marks ring, stored without the feed lock and confirmed by reading
 * the quiet word again; a freeze takes the marks it finds, a marker that
 * sees the word frozen (or thawed again) retracts its own and reports under
 * the lock.
 *
 *   - a straggler (this thread) takes a revision and holds it while
 *     reporter threads report thousands past it out of order; a watch opens
 *     meanwhile (from now on, or from the straggler's revision), then the
 *     straggler reports: the watch delivers the straggler's event and every
 *     revision handed out after it opened, in order, once each, no skip;
 *   - the same with a thread freezing and thawing the word all along
 *     (feed_get_stats takes the feed lock), and nobody watching: every
 *     revision is passed, nothing recorded, nothing left pending;
 *   - one thread: marks past a missing revision, a freeze in between (they
 *     wait in the ring, and go back to the marks ring at the thaw), marks
 *     further ahead than the marks ring holds (it grows), then the missing
 *     revision passes them all.
 *
 * Reporter threads do not call cmocka's asserts; they only report. Every
 * wait is bounded, so a lost revision fails the test instead of hanging
 * it. Nothing here depends on timing: the assertions are the feed's
 * invariants, whatever the interleaving.
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

#include "watch.h"

#define REPORTERS 6
#define ROUNDS    120

typedef struct race {
	feed *f;
	atomic_uint_least64_t next;     /* the next revision to hand out */
	atomic_uint_least64_t limit;    /* hand out revisions below it */
	atomic_uint_least64_t reported; /* how many were reported */
	atomic_bool stop;
	atomic_bool freeze; /* the freezer thread runs */
} race;

/* Every 5th revision is a skip (no event). */
static bool is_skip(uint64_t rev)
{
	return rev % 5 == 0;
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

/* Take revisions below the limit and report them, yielding now and then
 * between taking one and reporting it, so that reports overtake each
 * other. */
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
		if (++n % 37 == 0)
			sched_yield();
		report(r->f, rev);
		atomic_fetch_add(&r->reported, 1);
	}
	return NULL;
}

/* Freeze and thaw the quiet word again and again (feed_get_stats takes the
 * feed lock) while r->freeze is set. */
static void *freezer(void *arg)
{
	race *r = arg;
	while (!atomic_load(&r->stop)) {
		if (!atomic_load(&r->freeze)) {
			sched_yield();
			continue;
		}
		feed_stats s;
		feed_get_stats(r->f, &s);
		sched_yield();
	}
	return NULL;
}

/* Wait until `count` revisions were reported by the reporters. */
static void wait_reported(race *r, uint64_t count)
{
	double deadline = test_now() + 30;
	while (atomic_load(&r->reported) < count) {
		if (test_now() > deadline)
			fail_msg("only %" PRIu64 " of %" PRIu64 " revisions reported",
			         (uint64_t)atomic_load(&r->reported), count);
		sched_yield();
	}
}

/* Take the straggler's revision: the next one not a skip (the skips before
 * it are reported here). */
static uint64_t take_straggler(race *r)
{
	for (;;) {
		uint64_t rev = atomic_fetch_add(&r->next, 1);
		if (!is_skip(rev))
			return rev;
		report(r->f, rev);
		atomic_fetch_add(&r->reported, 1);
	}
}

/* Read w up to revision last: the events must be strictly increasing,
 * never lagged, never a skip, and include `first` and every non-skip
 * revision from `want` to last. */
static void expect_events(ctx_watch *w, uint64_t first, uint64_t want, uint64_t last)
{
	uint64_t prev = 0;
	bool got_first = false;
	uint64_t need = want;
	while (need <= last && is_skip(need))
		need++;
	double deadline = test_now() + 30;
	while (need <= last || !got_first) {
		ctx_event *e = NULL;
		if (ctx_watch_wait(w, 100, &e) != CTX_OK) {
			if (test_now() > deadline)
				fail_msg("revision %" PRIu64 " never delivered (straggler %" PRIu64
				         " %s, from %" PRIu64 ")",
				         need, first, got_first ? "delivered" : "not delivered",
				         want);
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
		if (is_skip(rev))
			fail_msg("skipped revision %" PRIu64 " delivered", rev);
		if (rev > first && !got_first)
			fail_msg("straggler %" PRIu64 " lost (got %" PRIu64 ")", first, rev);
		if (rev > need && need <= last)
			fail_msg("revision %" PRIu64 " lost (got %" PRIu64 ", from %" PRIu64 ")",
			         need, rev, want);
		got_first |= rev == first;
		prev = rev;
		if (rev == need) {
			need++;
			while (need <= last && is_skip(need))
				need++;
		}
	}
}

static void race_start(race *r, pthread_t *t, pthread_t *fz)
{
	assert_ok(feed_open(1, &(feed_config){.queue = 1u << 20}, &r->f));
	atomic_init(&r->next, 1);
	atomic_init(&r->limit, 1);
	for (int i = 0; i < REPORTERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reporter, r), 0);
	assert_int_equal(pthread_create(fz, NULL, freezer, r), 0);
}

static void race_stop(race *r, pthread_t *t, pthread_t fz)
{
	atomic_store(&r->stop, true);
	for (int i = 0; i < REPORTERS; i++)
		pthread_join(t[i], NULL);
	pthread_join(fz, NULL);
}

/* Watches open while the reporters mark past a straggler. */
static void test_open_past_a_straggler(void **unused)
{
	(void)unused;
	static race r; /* reporters outlive a failed test: not on its stack */
	memset(&r, 0, sizeof(r));
	pthread_t t[REPORTERS], fz;
	race_start(&r, t, &fz);
	unsigned refused = 0;
	for (int round = 0; round < ROUNDS; round++) {
		/* Some rounds run past the marks ring's first size (4096). */
		uint64_t per_round = round % 10 == 3 ? 6000 : 1500 + 97 * (uint64_t)(round % 7);
		atomic_store(&r.freeze, round % 3 == 1);
		uint64_t straggler = take_straggler(&r);
		uint64_t limit = straggler + 1 + per_round;
		uint64_t before = atomic_load(&r.reported);
		atomic_store(&r.limit, limit);
		/* Let the others report past the straggler, more or less far. */
		wait_reported(&r, before + (uint64_t)(round % 5) * per_round / 5);
		bool explicit = round % 4 == 2;
		ctx_watch *w = NULL;
		ctx_status st = feed_watch_open(r.f, "", true, explicit ? straggler : 0, &w);
		uint64_t after = atomic_load(&r.next); /* handed out after open returned */
		report(r.f, straggler);
		atomic_fetch_add(&r.reported, 1);
		wait_reported(&r, limit - 1);
		atomic_store(&r.freeze, false);
		if (explicit && st == CTX_NOT_FOUND) {
			refused++; /* a bare mark at or after the straggler: refused */
			continue;
		}
		assert_ok(st);
		expect_events(w, straggler, explicit ? straggler : after, limit - 1);
		ctx_watch_close(w);
	}
	race_stop(&r, t, fz);
	feed_stats s;
	feed_get_stats(r.f, &s);
	assert_int_equal(s.frontier, atomic_load(&r.next) - 1);
	assert_int_equal(s.pending_events, 0);
	printf("# %u of %d explicit watches refused\n", refused, ROUNDS / 4);
	feed_close(r.f);
}

/* Nobody watches; the word freezes and thaws all along while the others
 * mark past a straggler: every revision is passed once the straggler
 * reports, nothing is recorded and nothing stays pending. */
static void test_freezes_while_marking(void **unused)
{
	(void)unused;
	static race r; /* reporters outlive a failed test: not on its stack */
	memset(&r, 0, sizeof(r));
	pthread_t t[REPORTERS], fz;
	race_start(&r, t, &fz);
	atomic_store(&r.freeze, true);
	for (int round = 0; round < ROUNDS / 2; round++) {
		uint64_t straggler = take_straggler(&r);
		uint64_t limit = straggler + 1 + 3000;
		uint64_t before = atomic_load(&r.reported);
		atomic_store(&r.limit, limit);
		wait_reported(&r, before + (uint64_t)(round % 4) * 1000);
		report(r.f, straggler);
		atomic_fetch_add(&r.reported, 1);
		wait_reported(&r, limit - 1);
		feed_stats s;
		feed_get_stats(r.f, &s);
		if (s.frontier != limit - 1)
			fail_msg("round %d: frontier %" PRIu64 ", every revision up to %" PRIu64
			         " reported",
			         round, s.frontier, limit - 1);
		assert_int_equal(s.pending_events, 0);
		assert_int_equal(s.events_recorded, 0);
	}
	race_stop(&r, t, fz);
	feed_close(r.f);
}

/* One thread: marks wait for a missing revision across freezes, the marks
 * ring grows for a report further ahead than it holds, and the missing
 * revision passes them all. */
static void test_marks_in_order(void **unused)
{
	(void)unused;
	feed *f = NULL;
	assert_ok(feed_open(1, NULL, &f));
	for (uint64_t rev = 2; rev <= 100; rev++)
		report(f, rev);
	feed_stats s;
	feed_get_stats(f, &s); /* a freeze: the marks wait in the ring */
	assert_int_equal(s.frontier, 0);
	assert_int_equal(s.pending_events, 0);
	for (uint64_t rev = 101; rev <= 9000; rev++) /* past the first 4096 */
		report(f, rev);
	feed_get_stats(f, &s);
	assert_int_equal(s.frontier, 0);
	/* A watch from revision 50 would miss bare revisions: refused. */
	ctx_watch *w = NULL;
	assert_int_equal(feed_watch_open(f, "", true, 50, &w), CTX_NOT_FOUND);
	report(f, 1);
	feed_get_stats(f, &s);
	assert_int_equal(s.frontier, 9000);
	assert_int_equal(s.oldest, 9001);
	assert_int_equal(s.events_recorded, 0);
	/* Reported twice: ignored. */
	report(f, 500);
	report(f, 9001);
	feed_get_stats(f, &s);
	assert_int_equal(s.frontier, 9001);
	/* A watch from now on gets what follows, marked or not. */
	assert_ok(feed_watch_open(f, "", true, 0, &w));
	report(f, 9003);
	report(f, 9002);
	expect_events(w, 9002, 9003, 9003);
	ctx_watch_close(w);
	feed_close(f);
}

/* A marker stopped in the window between reading the quiet word and
 * storing its mark, while this thread acts on the feed. */
typedef struct stopped {
	feed *f;
	uint64_t rev;
	atomic_int state; /* 0 running, 1 stopped in the hook, 2 go on */
} stopped;

static stopped *the_stopped;

static void stop_hook(feed *f, uint64_t rev)
{
	stopped *s = the_stopped;
	if (!s || f != s->f || rev != s->rev)
		return;
	atomic_store(&s->state, 1);
	double deadline = test_now() + 30;
	while (atomic_load(&s->state) != 2 && test_now() < deadline)
		sched_yield();
}

static void *report_stopped(void *arg)
{
	stopped *s = arg;
	report(s->f, s->rev);
	return NULL;
}

/* Report s->rev in a thread of its own, stopped in the hook until
 * act(f) was done here. */
static void report_across(stopped *s, void (*act)(stopped *s))
{
	the_stopped = s;
	feed_test_mark_hook(stop_hook);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, report_stopped, s), 0);
	double deadline = test_now() + 30;
	while (atomic_load(&s->state) != 1) {
		if (test_now() > deadline)
			fail_msg("revision %" PRIu64 " was not marked", s->rev);
		sched_yield();
	}
	act(s);
	atomic_store(&s->state, 2);
	pthread_join(t, NULL);
	feed_test_mark_hook(NULL);
	the_stopped = NULL;
}

static ctx_watch *opened;

static void open_watch(stopped *s)
{
	assert_ok(feed_watch_open(s->f, "", true, 0, &opened));
}

/* A watch opens while a marker of revision 3 is in its window: the mark is
 * stored after the open's freeze took the marks, and the word stays frozen
 * while the watch is open. The marker sees it frozen, retracts the mark
 * and reports under the lock, recorded: the watch gets 1, 2 and 3. */
static void test_mark_across_an_open(void **unused)
{
	(void)unused;
	feed *f = NULL;
	assert_ok(feed_open(1, NULL, &f));
	feed_stats st;
	feed_get_stats(f, &st); /* a new feed's word thaws at the first unlock */
	stopped s = {.f = f, .rev = 3};
	report_across(&s, open_watch);
	report(f, 2);
	report(f, 1);
	expect_events(opened, 1, 1, 3);
	feed_get_stats(f, &st);
	assert_int_equal(st.frontier, 3);
	assert_int_equal(st.pending_events, 0);
	ctx_watch_close(opened);
	opened = NULL;
	feed_close(f);
}

/* Report revision 5000 (the marks ring holds 4096): the ring is replaced
 * by a larger one, under the lock, and the word thaws again with a new
 * generation. */
static void replace_ring(stopped *s)
{
	report(s->f, 5000);
}

/* A marker of revision 3 in its window while the marks ring is replaced:
 * it stores its mark into the old ring, which nobody reads any more; it
 * sees the generation moved, retracts the mark and reports under the
 * lock. Every revision up to 5000 is then passed. */
static void test_mark_across_a_new_ring(void **unused)
{
	(void)unused;
	feed *f = NULL;
	assert_ok(feed_open(1, NULL, &f));
	feed_stats st;
	feed_get_stats(f, &st); /* a new feed's word thaws at the first unlock */
	stopped s = {.f = f, .rev = 3};
	report_across(&s, replace_ring);
	for (uint64_t rev = 4999; rev >= 1; rev--)
		if (rev != 3)
			report(f, rev);
	feed_get_stats(f, &st);
	if (st.frontier != 5000)
		fail_msg("frontier %" PRIu64 ": a revision after it was lost", st.frontier);
	assert_int_equal(st.events_recorded, 0);
	/* The feed is quiet again: a watch from now on gets what follows. */
	assert_ok(feed_watch_open(f, "", true, 0, &opened));
	report(f, 5001);
	expect_events(opened, 5001, 5001, 5001);
	ctx_watch_close(opened);
	opened = NULL;
	feed_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_past_a_straggler),
	    cmocka_unit_test(test_freezes_while_marking),
	    cmocka_unit_test(test_marks_in_order),
	    cmocka_unit_test(test_mark_across_an_open),
	    cmocka_unit_test(test_mark_across_a_new_ring),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
