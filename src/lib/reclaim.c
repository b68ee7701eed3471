/*
 * reclaim.c - freeing the versions that leave history, off the commit path.
 *
 * A commit that makes a context's history longer than history_depth cuts the
 * oldest version off the chain (context_push_head). Releasing that reference
 * frees every trie node and value only that version held: after a transaction
 * that rewrote a million keys, the version before it owns a million leaves,
 * and the commit that happens to cut it would pay milliseconds for it. So the
 * reference is handed to liburcu's call_rcu worker thread instead, which
 * releases it after a grace period (a callback may release anything: the
 * state (struct and maps) then goes through call_rcu once more, with its
 * batch, which liburcu allows from inside a callback). The version travels
 * in a small carrier (reclaim_item): the state's own rcu_head is only free
 * once its last reference is gone (store.h).
 *
 * BOUND
 *   The worker might fall behind (it frees one big version while commits keep
 *   cutting). At most RECLAIM_MAX_PENDING versions wait; past that,
 *   reclaim_defer refuses and the committing thread frees the version it cut
 *   itself, after unlocking, as before: the queue never grows without bound,
 *   and committers help while it is full. The bound counts versions, not
 *   bytes: what a cut version owns alone is not known without walking it (its
 *   trie is mostly shared with the versions after it).
 *
 * LIGHT VERSIONS
 *   What a cut version holds alone is what the commit after it replaced (its
 *   trie shares everything else with that next version). When that commit
 *   was a small transaction (`light`, txn.c; log replay marks the versions
 *   it rebuilds the same way, recovery.c), freeing the cut version costs a
 *   few nodes and leaves: less than queueing it, and the committer frees
 *   memory it allocated itself, where glibc's per-thread cache takes it back,
 *   instead of the worker thread freeing it into another arena's bins. So
 *   reclaim_defer refuses light ones and the committer frees them after
 *   unlocking (its trie at once when no reference-free reader can still be
 *   in it, else with the thread's batch: state.c).
 *
 * DROPPED CONTEXTS
 *   A drop made durable hands the dropped context's head (and with it its
 *   history) here too (store.c, context_let_go): under ctxd the log's
 *   flusher makes drops durable, and freeing a big context there delayed
 *   every writer's acknowledgement (round 11).
 *
 * The count is process-wide (one worker serves every store). ctx_close's
 * rcu_barrier runs every callback queued before it, so a closed store leaves
 * nothing waiting here.
 *
 * THE RECLAIMER'S GRACE PERIODS (round 17)
 *   A thread whose release batch reaches STATE_HOLD_MAX while its tick is in
 *   flight (state.c, BOUND) used to wait for a grace period itself. With 64
 *   threads on 2 CPUs a reader (or a writer between its lookup and its write
 *   lock) preempted inside its read-side section makes that wait one or more
 *   of urcu-bp's 10 ms naps, and urcu-bp runs one grace period per caller, in
 *   turn, on its mutex, while both CPUs idled (round 15). Now such a thread
 *   asks the reclaimer for a grace period (reclaim_grace_request) and goes on
 *   at once; the batch stays with the thread (`handed`, state.c), which frees
 *   it itself, at home, once that grace period is done
 *   (reclaim_grace_done). The reclaimer is one thread per process, started
 *   by the first request, that runs one grace period for every request made
 *   before it starts one (waiters share it) and sleeps on a condition
 *   variable while none is asked for. It frees nothing: a first version
 *   (691d809) handed the batches themselves over, and the reclaimer, one
 *   thread among 64 busy ones, got a sixty-fifth of the CPU and fell behind
 *   (docs/benchmarks.md, round 17). A thread that reaches the bound again
 *   while its handed batch's grace period is still running waits for it
 *   (reclaim_grace_wait: the reclaimer's, shared, not one of its own), so a
 *   thread holds at most 3 * STATE_HOLD_MAX released versions. A fork()ed
 *   child starts its own reclaimer at its first request or wait.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "reclaim.h"
#include "store.h"

static atomic_size_t pending;

/* The state's own rcu_head shares words with fields it still needs until
 * its last reference goes (store.h), so a deferred version travels in a
 * carrier of its own: one small allocation per version that was not light. */
typedef struct reclaim_item {
	struct rcu_head rcu;
	ctx_state *st;
} reclaim_item;

static void reclaim_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	reclaim_item *it = caa_container_of(head, reclaim_item, rcu);
	ctx_state *st = it->st;
	free(it);
	state_release_in_callback(st);
	atomic_fetch_sub_explicit(&pending, 1, memory_order_release);
}

bool reclaim_defer(ctx_state *st)
{
	/* st->next is the version built on st (the chain is under the context's
	 * write lock, held by our caller). */
	if (st->next && st->next->light)
		return false;
	size_t n = atomic_load_explicit(&pending, memory_order_relaxed);
	do {
		if (n >= RECLAIM_MAX_PENDING)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&pending, &n, n + 1, memory_order_relaxed,
	                                                memory_order_relaxed));
	reclaim_item *it = malloc(sizeof(*it));
	if (!it) { /* the committer frees it itself, as when the queue is full */
		atomic_fetch_sub_explicit(&pending, 1, memory_order_relaxed);
		return false;
	}
	it->st = st;
	ctx_call_rcu(&it->rcu, reclaim_rcu);
	return true;
}

size_t reclaim_pending(void)
{
	return atomic_load_explicit(&pending, memory_order_acquire);
}

/* ---- the reclaimer's grace periods -------------------------------------------- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work; /* a grace period was asked for (the reclaimer waits) */
	pthread_cond_t done; /* a grace period ended (reclaim_grace_wait waits) */
	uint64_t requested;  /* grace periods asked for, numbered from 1 */
	unsigned waiters;    /* threads in reclaim_grace_wait */
	bool sleeping;       /* the reclaimer waits on work */
	bool started;
	bool forked; /* pthread_atfork registered */
} rc = {.lock = PTHREAD_MUTEX_INITIALIZER,
        .work = PTHREAD_COND_INITIALIZER,
        .done = PTHREAD_COND_INITIALIZER};

/* The highest request whose grace period has ended. */
static atomic_uint_fast64_t grace_done;

static void reclaim_fork_prepare(void)
{
	pthread_mutex_lock(&rc.lock);
}

static void reclaim_fork_parent(void)
{
	pthread_mutex_unlock(&rc.lock);
}

/* The child has no reclaimer: the next request or wait starts one, whose
 * first grace period covers every request still open. */
static void reclaim_fork_child(void)
{
	rc.started = false;
	rc.sleeping = false;
	rc.waiters = 0;
	pthread_mutex_init(&rc.lock, NULL);
	pthread_cond_init(&rc.work, NULL);
	pthread_cond_init(&rc.done, NULL);
}

static void *reclaimer_main(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&rc.lock);
	for (;;) {
		while (rc.requested == atomic_load_explicit(&grace_done, memory_order_relaxed)) {
			rc.sleeping = true;
			pthread_cond_wait(&rc.work, &rc.lock);
			rc.sleeping = false;
		}
		uint64_t target = rc.requested; /* asked for before it starts */
		pthread_mutex_unlock(&rc.lock);
		synchronize_rcu();
		pthread_mutex_lock(&rc.lock);
		atomic_store_explicit(&grace_done, target, memory_order_release);
		if (rc.waiters)
			pthread_cond_broadcast(&rc.done);
	}
	return NULL;
}

/* Start the reclaimer if it is not running (rc.lock held). False: it could
 * not be started. */
static bool reclaimer_start(void)
{
	if (rc.started)
		return true;
	if (!rc.forked)
		rc.forked = pthread_atfork(reclaim_fork_prepare, reclaim_fork_parent,
		                           reclaim_fork_child) == 0;
	pthread_t t;
	pthread_attr_t attr;
	if (!rc.forked || pthread_attr_init(&attr) != 0)
		return false;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc.started = pthread_create(&t, &attr, reclaimer_main, NULL) == 0;
	pthread_attr_destroy(&attr);
	return rc.started;
}

uint64_t reclaim_grace_request(void)
{
	pthread_mutex_lock(&rc.lock);
	uint64_t seq = 0;
	if (reclaimer_start()) {
		seq = ++rc.requested;
		if (rc.sleeping)
			pthread_cond_signal(&rc.work);
	}
	pthread_mutex_unlock(&rc.lock);
	return seq;
}

bool reclaim_grace_done(uint64_t seq)
{
	if (atomic_load_explicit(&grace_done, memory_order_acquire) < seq)
		return false;
	tsan_after_grace_period();
	return true;
}

void reclaim_grace_wait(uint64_t seq)
{
	if (reclaim_grace_done(seq))
		return;
	pthread_mutex_lock(&rc.lock);
	if (!reclaimer_start()) { /* (a child whose reclaimer could not start) */
		pthread_mutex_unlock(&rc.lock);
		synchronize_rcu();
		tsan_after_grace_period();
		return;
	}
	if (rc.sleeping)
		pthread_cond_signal(&rc.work);
	rc.waiters++;
	while (atomic_load_explicit(&grace_done, memory_order_relaxed) < seq)
		pthread_cond_wait(&rc.done, &rc.lock);
	rc.waiters--;
	pthread_mutex_unlock(&rc.lock);
	atomic_thread_fence(memory_order_acquire);
	tsan_after_grace_period();
}
