/*
 * test_commit_report.c - when a commit reports its revision to the change
 * feed (src/lib/txn.c, commit_finish_rev; round 12, r12-update64).
 *
 *   - While nobody records, a commit reports its revision bare under its
 *     context's write lock (feed_report_bare), before it releases the
 *     version it cut from history: a writer that then waits there (its
 *     batch of released versions is full and a reader holds back the grace
 *     period, so it calls synchronize_rcu) does not hold the feed's
 *     frontier back. Another writer's commits meanwhile leave the frontier
 *     at the store's newest revision. Before, the revision was reported
 *     after that release: the frontier stayed below the waiting writer's
 *     revision, and every later report took the feed's mutex.
 *   - 64 writers put to 8 contexts (the update benchmark's shape) while a
 *     watch of every context opens after they started: it delivers events
 *     in increasing revision order, and every revision decided after the
 *     open returned, once each, with each context's versions one by one
 *     from there (before it, ctx_watch_open's contract allows gaps: a late
 *     report is delivered while a later one made before the open is not;
 *     a TSan run met such a gap).
 *
 * Writer threads do not call cmocka's asserts. Waits are bounded or end
 * when the awaited thing happens; no assertion depends on timing.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcu.h"
#include "store.h"
#include "watch.h"

static ctx_store *open_store(void)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1; /* every commit cuts a version: released at once */
	/* The watch of the second test is read once the writers are done:
	 * room for all their events, no lag. */
	o.watch_queue = 1u << 20;
	o.watch_history = 1u << 20;
	return test_open(&o);
}

static uint64_t version_of(ctx_store *s, const char *id)
{
	ctx_state *st = NULL;
	assert_int_equal(ctx_get(s, id, &st), CTX_OK);
	uint64_t v = ctx_state_version(st);
	ctx_state_release(st);
	return v;
}

/* ---- a writer waiting after its commit holds no revision back ------------- */

typedef struct stuck {
	ctx_store *s;
	atomic_bool stop;
	atomic_uint_least64_t done;
} stuck;

static void *stuck_writer(void *arg)
{
	stuck *w = arg;
	while (!atomic_load(&w->stop)) {
		if (ctx_put(w->s, "a", "k", 1, "v", 1, NULL) != CTX_OK)
			break;
		atomic_fetch_add(&w->done, 1);
	}
	return NULL;
}

static void test_waiting_writer_holds_no_revision_back(void **unused)
{
	(void)unused;
	ctx_store *s = open_store();
	assert_int_equal(ctx_create(s, "a"), CTX_OK);
	assert_int_equal(ctx_create(s, "b"), CTX_OK);
	stuck w = {.s = s};
	atomic_init(&w.stop, false);
	atomic_init(&w.done, 0);
	/* This thread's read-side critical section holds back every grace
	 * period: the writer's tick never completes, its open batch of
	 * released versions fills (state.c, STATE_HOLD_MAX) and it waits in
	 * synchronize_rcu, inside a commit that has taken its revision. */
	ctx_rcu_read_lock();
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, stuck_writer, &w), 0);
	/* Until it waits: no commit for 200 ms (it never gets out while we
	 * hold the section; a hundred thousand commits are far more than it
	 * can make first). */
	uint64_t last = UINT64_MAX;
	for (int quiet = 0; quiet < 200;) {
		usleep(1000);
		uint64_t d = atomic_load(&w.done);
		quiet = d == last ? quiet + 1 : 0;
		last = d;
		assert_true(d < 100000);
	}
	assert_true(last > 0);
	/* Another writer's commits, reported as they return. */
	for (int i = 0; i < 200; i++)
		assert_int_equal(ctx_put(s, "b", "k", 1, "v", 1, NULL), CTX_OK);
	feed_stats st;
	feed_get_stats(s->feed, &st);
	uint64_t newest = atomic_load(&s->revision);
	printf("# writer waits after %" PRIu64 " commits; frontier %" PRIu64
	       ", newest revision %" PRIu64 "\n",
	       last, st.frontier, newest);
	/* Checked once the writer is let go (a failed assert leaves no read
	 * lock held and no thread behind). */
	bool passed = st.frontier == newest;
	ctx_rcu_read_unlock();
	atomic_store(&w.stop, true);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(passed);
	assert_int_equal(version_of(s, "b"), 201);
	assert_int_equal(version_of(s, "a"), 1 + atomic_load(&w.done));
	feed_get_stats(s->feed, &st);
	assert_int_equal(st.frontier, atomic_load(&s->revision));
	ctx_close(s);
}

/* ---- 64 writers, a watch opened among them ----------------------------- */

#define WRITERS  64
#define CONTEXTS 8
#define PUTS     400

typedef struct crowd {
	ctx_store *s;
	atomic_ulong puts;
} crowd;

typedef struct writer {
	crowd *c;
	unsigned n;
} writer;

static void *crowd_writer(void *arg)
{
	writer *w = arg;
	char id[16], key[16];
	for (unsigned i = 0; i < PUTS; i++) {
		snprintf(id, sizeof(id), "c%u", (w->n + i) % CONTEXTS);
		int kl = snprintf(key, sizeof(key), "k%u", w->n);
		if (ctx_put(w->c->s, id, key, (size_t)kl, &i, sizeof(i), NULL) != CTX_OK)
			abort();
		atomic_fetch_add_explicit(&w->c->puts, 1, memory_order_relaxed);
	}
	return NULL;
}

static void test_64_writers_watch_in_order(void **unused)
{
	(void)unused;
	ctx_store *s = open_store();
	char id[16];
	for (unsigned i = 0; i < CONTEXTS; i++) {
		snprintf(id, sizeof(id), "c%u", i);
		assert_int_equal(ctx_create(s, id), CTX_OK);
	}
	crowd c = {.s = s};
	atomic_init(&c.puts, 0);
	pthread_t t[WRITERS];
	writer w[WRITERS];
	for (unsigned i = 0; i < WRITERS; i++) {
		w[i] = (writer){&c, i};
		assert_int_equal(pthread_create(&t[i], NULL, crowd_writer, &w[i]), 0);
	}
	/* Opened among them: once a quarter of their commits are made (or
	 * later, should this thread not run until then). */
	while (atomic_load(&c.puts) < WRITERS * PUTS / 4)
		sched_yield();
	ctx_watch *wa = NULL;
	assert_int_equal(ctx_watch_open(s, "", true, 0, &wa), CTX_OK);
	/* Every revision above `opened` was decided after the open returned,
	 * so reported after it: delivered, each once, with none missing.
	 * Below it ctx_watch_open's contract allows gaps: a commit reported
	 * late (its writer preempted) is delivered while a later one reported
	 * before the open is not (include/ctx.h). */
	uint64_t opened = atomic_load(&s->revision);
	for (unsigned i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	/* A last commit, after them all (and after the watch opened, should
	 * the writers have been done before it): the watch ends with it. */
	assert_int_equal(ctx_create(s, "end"), CTX_OK);
	uint64_t newest = atomic_load(&s->revision);
	uint64_t prev_rev = 0, events = 0, seen[CONTEXTS] = {0}, seen_rev[CONTEXTS] = {0};
	while (prev_rev < newest) {
		ctx_event *e = NULL;
		ctx_status st = ctx_watch_wait(wa, 10000, &e);
		if (st != CTX_OK) {
			feed_stats fs;
			feed_get_stats(s->feed, &fs);
			printf("# after revision %" PRIu64 " of %" PRIu64
			       ": %d (%s); frontier %" PRIu64 "\n",
			       prev_rev, newest, st, ctx_last_error(), fs.frontier);
		}
		assert_int_equal(st, CTX_OK);
		assert_non_null(e);
		assert_true(e->revision > prev_rev);
		if (e->revision > opened) /* none after `opened` is missing */
			assert_int_equal(e->revision, (prev_rev > opened ? prev_rev : opened) + 1);
		prev_rev = e->revision;
		if (e->revision == newest) {
			assert_string_equal(e->id, "end");
			ctx_event_free(e);
			break;
		}
		assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
		unsigned k = (unsigned)atoi(e->id + 1);
		assert_true(k < CONTEXTS);
		if (seen[k] && seen_rev[k] >= opened)
			assert_int_equal(e->version, seen[k] + 1);
		else
			assert_true(e->version > seen[k]);
		seen[k] = e->version;
		seen_rev[k] = e->revision;
		events++;
		ctx_event_free(e);
	}
	printf("# %" PRIu64 " events after the watch opened, then revision %" PRIu64 "\n", events,
	       newest);
	unsigned long total = 0;
	for (unsigned i = 0; i < CONTEXTS; i++) {
		snprintf(id, sizeof(id), "c%u", i);
		uint64_t v = version_of(s, id);
		if (seen[i])
			assert_int_equal(v, seen[i]);
		total += v - 1;
	}
	assert_int_equal(total, (unsigned long)WRITERS * PUTS);
	ctx_watch_close(wa);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_waiting_writer_holds_no_revision_back),
	    cmocka_unit_test(test_64_writers_watch_in_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
