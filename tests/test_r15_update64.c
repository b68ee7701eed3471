/*
 * test_r15_update64.c - threads at the release bound share grace periods
 * (state.c, "SHARED GRACE PERIODS"; docs/benchmarks.md, round 15).
 *
 * A committing thread whose batch of released versions reaches its bound
 * while its tick is in flight waits for a grace period. urcu-bp runs one
 * grace period per synchronize_rcu call, one call at a time, and each
 * lasts 10 ms or more when a reader is preempted in its section: 64
 * committers at the bound on 2 CPUs queued for one each, and the CPUs went
 * idle. So state.c's waiters share them (state_synchronize).
 *
 * The test counts the calls to urcu_bp_synchronize_rcu made by its writer
 * threads (this program defines the symbol, so libctx's calls come here,
 * and forwards them to liburcu-bp). One thread holds a read-side critical
 * section, so no grace period can end and no tick completes: each writer,
 * committing to its own context whose history keeps 1 version (every
 * commit releases one), fills its batches and blocks at the bound. Once all
 * are blocked the reader leaves. Shared, the writers' waits took at most
 * two grace periods (the one a writer started, and one for those that
 * arrived while it ran); one each, WRITERS. Then every commit is checked
 * (version 1 + commits, the last value there), and the writers commit on
 * with nothing held, through more bounds.
 */
#include "testutil.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <urcu-bp.h>

#define WRITERS 8
#define COMMITS 3000 /* per writer: past the bound (544 releases) more than once */

static _Thread_local bool counted; /* a writer thread: its calls are counted */
static atomic_long writer_syncs;

/* liburcu-bp's own, found once (its worker thread calls this one too). */
static void (*real_synchronize)(void);
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

static void find_real(void)
{
	*(void **)&real_synchronize = dlsym(RTLD_NEXT, "urcu_bp_synchronize_rcu");
}

void urcu_bp_synchronize_rcu(void);
void urcu_bp_synchronize_rcu(void)
{
	pthread_once(&real_once, find_real);
	if (counted)
		atomic_fetch_add(&writer_syncs, 1);
	real_synchronize();
}

typedef struct shared {
	ctx_store *s;
	atomic_long done[WRITERS];
	atomic_int hold, holding;
	atomic_long errors;
} shared;

typedef struct warg {
	shared *sh;
	int tid;
} warg;

static void ctx_id(char *id, size_t cap, int w)
{
	snprintf(id, cap, "w%d", w);
}

static void *writer(void *p)
{
	warg *a = p;
	counted = true;
	char id[16], val[24];
	ctx_id(id, sizeof(id), a->tid);
	for (int i = 1; i <= COMMITS; i++) {
		int vl = snprintf(val, sizeof(val), "%d", i);
		if (ctx_put(a->sh->s, id, "k", 1, val, (size_t)vl, NULL) != CTX_OK)
			atomic_fetch_add(&a->sh->errors, 1);
		atomic_store(&a->sh->done[a->tid], i);
	}
	return NULL;
}

/* Holds a read-side critical section while sh->hold is set. */
static void *holder(void *p)
{
	shared *sh = p;
	rcu_read_lock();
	atomic_store(&sh->holding, 1);
	while (atomic_load(&sh->hold))
		sched_yield();
	rcu_read_unlock();
	return NULL;
}

static void nap_ms(long ms)
{
	struct timespec ts = {0, ms * 1000000L};
	nanosleep(&ts, NULL);
}

static void test_waiters_share_grace_periods(void **state)
{
	(void)state;
	static shared sh;
	memset(&sh, 0, sizeof(sh));
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1; /* every commit cuts and releases a version */
	assert_ok(ctx_open(&o, &sh.s));
	for (int w = 0; w < WRITERS; w++) {
		char id[16];
		ctx_id(id, sizeof(id), w);
		assert_ok(ctx_create(sh.s, id));
	}
	atomic_store(&sh.hold, 1);
	pthread_t ht, wt[WRITERS];
	assert_int_equal(pthread_create(&ht, NULL, holder, &sh), 0);
	while (!atomic_load(&sh.holding))
		sched_yield();
	warg wa[WRITERS];
	for (int w = 0; w < WRITERS; w++) {
		wa[w] = (warg){&sh, w};
		assert_int_equal(pthread_create(&wt[w], NULL, writer, &wa[w]), 0);
	}
	/* Every writer blocked at its bound: no progress for 100 naps in a
	 * row (a writer that could go on would have). Not an assertion: a
	 * writer merely slow here makes a third grace period at most. */
	long last[WRITERS] = {0};
	bool finished = false;
	for (int still = 0; still < 100 && !finished;) {
		nap_ms(5);
		bool moved = false;
		for (int w = 0; w < WRITERS; w++) {
			long d = atomic_load(&sh.done[w]);
			moved |= d != last[w];
			finished |= d == COMMITS;
			last[w] = d;
		}
		still = moved ? 0 : still + 1;
	}
	long blocked_syncs = atomic_load(&writer_syncs);
	for (int w = 0; w < WRITERS; w++)
		assert_true(last[w] < COMMITS); /* the bound held them */
	atomic_store(&sh.hold, 0);
	for (int w = 0; w < WRITERS; w++)
		pthread_join(wt[w], NULL);
	pthread_join(ht, NULL);
	long after = atomic_load(&writer_syncs);
	printf("writers' synchronize_rcu calls: %ld while blocked, %ld in all\n", blocked_syncs,
	       after);

	/* WRITERS waited; they shared one or two grace periods, not one each. */
	assert_true(blocked_syncs >= 1);
	assert_true(blocked_syncs <= 2);
	assert_int_equal(atomic_load(&sh.errors), 0);
	for (int w = 0; w < WRITERS; w++) {
		char id[16];
		ctx_id(id, sizeof(id), w);
		ctx_state *st;
		assert_ok(ctx_get(sh.s, id, &st));
		assert_int_equal(ctx_state_version(st), 1 + COMMITS);
		const void *v;
		size_t vl;
		char want[24];
		snprintf(want, sizeof(want), "%d", COMMITS);
		assert_true(ctx_state_lookup(st, "k", 1, &v, &vl));
		assert_int_equal(vl, strlen(want));
		assert_memory_equal(v, want, vl);
		ctx_state_release(st);
	}
	ctx_close(sh.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_waiters_share_grace_periods),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
