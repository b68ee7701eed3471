/*
 * test_r14_fanout.c - what round 14 changed for writers with watchers on
 * (issue 11):
 *
 *   - a thread whose batch of released versions fills (STATE_HOLD_MAX)
 *     while its tick's grace period is in flight hands the batch to the
 *     call_rcu worker instead of waiting for a grace period itself
 *     (state.c, BOUND): with a reader holding a read-side critical section
 *     open, a writer with watchers on commits thousands of versions (each
 *     cuts and releases one) and finishes while the reader is still in it,
 *     and state_grace_waits does not move. Before the change the writer
 *     blocked in synchronize_rcu until the reader left: the reader here
 *     gives up after READER_PATIENCE_S, and the test fails;
 *   - watchers draining those commits get every revision once, in order;
 *   - 2 writers and 64 watchers draining in threads: every watcher gets
 *     every revision exactly once, in order (the hand-over moves the frees,
 *     not the events).
 */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

#define READER_PATIENCE_S 60.0

typedef struct blocker {
	atomic_bool in, done, gave_up;
} blocker;

/* Hold a read-side critical section until the writer is done (or the
 * patience runs out: the writer was waiting for this reader). */
static void *block_grace_periods(void *p)
{
	blocker *b = p;
	double t0 = test_now();
	ctx_rcu_read_lock();
	atomic_store(&b->in, true);
	while (!atomic_load(&b->done)) {
		if (test_now() - t0 > READER_PATIENCE_S) {
			atomic_store(&b->gave_up, true);
			break;
		}
		usleep(1000);
	}
	ctx_rcu_read_unlock();
	return NULL;
}

/* Take n events from w: revisions first, first + 1, ... (committed). */
static void drain_in_order(ctx_watch *w, uint64_t first, long n)
{
	for (long i = 0; i < n; i++) {
		ctx_event *e = NULL;
		assert_ok(ctx_watch_wait(w, 10000, &e));
		assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
		assert_int_equal(e->revision, first + (uint64_t)i);
		ctx_event_free(e);
	}
	ctx_event *e = NULL;
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND);
}

static void test_full_batch_goes_to_the_worker(void **unused)
{
	(void)unused;
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1; /* every commit cuts and releases one version */
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "w/a"));
	assert_ok(ctx_create(s, "w/b"));
	enum { WATCHERS = 4 };
	ctx_watch *w[WATCHERS];
	for (int i = 0; i < WATCHERS; i++)
		assert_ok(ctx_watch_open(s, "w/", true, 0, &w[i]));
	ctx_state *cur = NULL;
	assert_ok(ctx_get(s, "w/b", &cur)); /* the last commit before the run */
	uint64_t first = ctx_state_revision(cur) + 1;
	ctx_state_release(cur);
	/* Let the worker settle what the setup released. */
	state_drain();

	blocker b = {false, false, false};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, block_grace_periods, &b), 0);
	while (!atomic_load(&b.in))
		sched_yield();
	size_t waits = state_grace_waits();
	/* Three full batches past the first (the tick's, which cannot
	 * complete while the reader is in), well under STATE_DEFERRED_MAX
	 * (4096) handed over: no wait is allowed. */
	const long commits = 3 * 512 + 2 * 32 + 7;
	for (long i = 0; i < commits; i++)
		assert_ok(ctx_put(s, i % 2 ? "w/a" : "w/b", "k", 1, &i, sizeof(i), NULL));
	bool in_time = !atomic_load(&b.gave_up);
	atomic_store(&b.done, true);
	pthread_join(t, NULL);
	assert_true(in_time);
	assert_int_equal(state_grace_waits(), waits);

	for (int i = 0; i < WATCHERS; i++) {
		drain_in_order(w[i], first, commits);
		ctx_watch_close(w[i]);
	}
	ctx_close(s);
}

enum { WRITERS = 2, DRAINERS = 64 };

typedef struct fan {
	ctx_store *s;
	long commits; /* per writer */
	atomic_int writers_done;
	uint64_t first;
	char id_last[16];
} fan;

typedef struct drainer_arg {
	fan *f;
	ctx_watch *w;
	long got;
	uint64_t last;
	bool in_order;
} drainer_arg;

static void *fan_writer(void *p)
{
	fan *f = p;
	static atomic_int next_id;
	char id[16];
	snprintf(id, sizeof(id), "w/%d", atomic_fetch_add(&next_id, 1) % WRITERS);
	for (long i = 0; i < f->commits; i++) {
		T_CHECK_STATUS(ctx_put(f->s, id, "k", 1, &i, sizeof(i), NULL), CTX_OK);
		if (i % 50 == 49)
			usleep(200); /* bursts, as the paced cell's writers */
	}
	atomic_fetch_add(&f->writers_done, 1);
	return NULL;
}

static void *fan_drainer(void *p)
{
	drainer_arg *a = p;
	long want = a->f->commits * WRITERS;
	a->in_order = true;
	while (a->got < want) {
		ctx_event *e = NULL;
		ctx_status st = ctx_watch_wait(a->w, 30000, &e);
		if (st != CTX_OK) {
			T_CHECK_STATUS(st, CTX_OK);
			break;
		}
		if (e->kind != CTX_EVENT_COMMITTED ||
		    e->revision != (a->got ? a->last + 1 : a->f->first))
			a->in_order = false;
		a->last = e->revision;
		a->got++;
		ctx_event_free(e);
	}
	return NULL;
}

static void test_sixty_four_watchers_get_every_event_once(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1;
	/* No watcher may lag: the queue and the history hold the whole run. */
	o.watch_history = 1 << 17;
	o.watch_queue = 1 << 17;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	for (int i = 0; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w/%d", i);
		assert_ok(ctx_create(s, id));
	}
	fan f = {.s = s, .commits = test_iters(20000, 2000)};
	drainer_arg d[DRAINERS];
	pthread_t dt[DRAINERS], wt[WRITERS];
	ctx_state *cur = NULL;
	snprintf(f.id_last, sizeof(f.id_last), "w/%d", WRITERS - 1);
	assert_ok(ctx_get(s, f.id_last, &cur)); /* the last commit before the run */
	f.first = ctx_state_revision(cur) + 1;
	ctx_state_release(cur);
	for (int i = 0; i < DRAINERS; i++) {
		d[i] = (drainer_arg){.f = &f};
		assert_ok(ctx_watch_open(s, "w/", true, 0, &d[i].w));
		assert_int_equal(pthread_create(&dt[i], NULL, fan_drainer, &d[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&wt[i], NULL, fan_writer, &f), 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < DRAINERS; i++) {
		pthread_join(dt[i], NULL);
		assert_int_equal(d[i].got, f.commits * WRITERS);
		assert_true(d[i].in_order);
		ctx_event *e = NULL;
		assert_int_equal(ctx_watch_next(d[i].w, &e), CTX_NOT_FOUND);
		ctx_watch_close(d[i].w);
	}
	assert_no_thread_failures();
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_batch_goes_to_the_worker),
	    cmocka_unit_test(test_sixty_four_watchers_get_every_event_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
