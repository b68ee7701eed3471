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
 * THE RECLAIMER (round 17)
 *   A thread whose release batch reaches STATE_HOLD_MAX while its tick is in
 *   flight (state.c, BOUND) used to wait for a grace period itself. With 64
 *   threads on 2 CPUs a reader (or a writer between its lookup and its write
 *   lock) preempted inside its read-side section makes that wait one or more
 *   of urcu-bp's 10 ms naps, and the threads queued one grace period each on
 *   urcu-bp's mutex while both CPUs idled (round 15). Now such a batch is
 *   handed to the reclaimer: one thread per process, started by the first
 *   hand-over, that takes every batch handed over so far, waits for one grace
 *   period for all of them and frees them; the writer goes on at once. The
 *   batches waiting for, or in, the reclaimer's grace period are bounded:
 *   at most RECLAIM_HOLD_MAX versions (`held`); a hand-over that would pass
 *   it is refused and the writer waits for a grace period itself, as before
 *   (back-pressure: memory stays bounded when the reclaimer cannot keep up
 *   or cannot run). The bound counts versions, like the others of libctx:
 *   a batch's version is mostly its struct (its trie freed at once, state.c,
 *   TRIES FREED AT ONCE) or what one light commit replaced. Its frees go to
 *   the reclaimer's own block cache, which it hands to the shared slab lists
 *   a class at a time (pool_gather, pool_trim: one lock per class and run,
 *   not per block); the writers take them back from there, SLAB_BATCH at a
 *   time. A writer that exits leaves what it handed over to the reclaimer;
 *   state_drain (ctx_close) waits until the reclaimer holds nothing. The
 *   thread is never stopped (it sleeps on a condition variable when there is
 *   nothing to free); a fork()ed child starts its own at its first
 *   hand-over, and what the parent's was freeing then is lost to the child
 *   (memory, never a use after free).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "pool.h"

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

/* ---- the reclaimer thread ----------------------------------------------------- */

/* Above this the reclaimer hands the blocks it freed to the shared lists
 * (half the cache's byte bound, pool.c, so that none goes alone). */
#define RECLAIM_TRIM_BYTES (64u << 10)

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work; /* a batch was handed over (the reclaimer waits) */
	pthread_cond_t idle; /* the reclaimer freed what it took (drains wait) */
	ctx_state *head;     /* batches handed over, joined through next */
	size_t queued;       /* versions in head */
	bool busy;           /* the reclaimer is in a grace period or freeing */
	bool sleeping;       /* it waits on work */
	bool started;
	bool forked; /* pthread_atfork registered */
} rc = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .work = PTHREAD_COND_INITIALIZER,
          .idle = PTHREAD_COND_INITIALIZER};

static atomic_size_t held; /* queued, plus the versions the reclaimer took */

static void reclaim_fork_prepare(void)
{
	pthread_mutex_lock(&rc.lock);
}

static void reclaim_fork_parent(void)
{
	pthread_mutex_unlock(&rc.lock);
}

/* The child has no reclaimer: the next hand-over starts one, which frees
 * the batches still queued; what the parent's was freeing is forgotten. */
static void reclaim_fork_child(void)
{
	atomic_store(&held, rc.queued);
	rc.busy = false;
	rc.started = false;
	rc.sleeping = false;
	pthread_mutex_init(&rc.lock, NULL);
	pthread_cond_init(&rc.work, NULL);
	pthread_cond_init(&rc.idle, NULL);
}

static void *reclaimer_main(void *unused)
{
	(void)unused;
	pool_gather();
	pthread_mutex_lock(&rc.lock);
	for (;;) {
		while (!rc.head) {
			rc.sleeping = true;
			pthread_cond_wait(&rc.work, &rc.lock);
			rc.sleeping = false;
		}
		ctx_state *st = rc.head;
		size_t n = rc.queued;
		rc.head = NULL;
		rc.queued = 0;
		rc.busy = true;
		pthread_mutex_unlock(&rc.lock);
		synchronize_rcu(); /* every batch taken is older than it */
		tsan_after_grace_period();
		while (st) {
			ctx_state *next = st->next;
			st->next = NULL;
			state_free_released(st);
			if (pool_cached() > RECLAIM_TRIM_BYTES)
				pool_trim();
			st = next;
		}
		pool_trim();
		atomic_fetch_sub_explicit(&held, n, memory_order_release);
		pthread_mutex_lock(&rc.lock);
		rc.busy = false;
		if (!rc.head)
			pthread_cond_broadcast(&rc.idle);
	}
	return NULL;
}

bool reclaim_hand_over(ctx_state *head, ctx_state *tail, size_t n)
{
	size_t h = atomic_load_explicit(&held, memory_order_relaxed);
	do {
		if (h + n > RECLAIM_HOLD_MAX)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&held, &h, h + n, memory_order_relaxed,
	                                                memory_order_relaxed));
	pthread_mutex_lock(&rc.lock);
	if (!rc.started) {
		if (!rc.forked)
			rc.forked = pthread_atfork(reclaim_fork_prepare, reclaim_fork_parent,
			                           reclaim_fork_child) == 0;
		pthread_t t;
		pthread_attr_t attr;
		bool ok = rc.forked && pthread_attr_init(&attr) == 0;
		if (ok) {
			pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			ok = pthread_create(&t, &attr, reclaimer_main, NULL) == 0;
			pthread_attr_destroy(&attr);
		}
		if (!ok) { /* the caller waits itself, as without a reclaimer */
			pthread_mutex_unlock(&rc.lock);
			atomic_fetch_sub_explicit(&held, n, memory_order_relaxed);
			return false;
		}
		rc.started = true;
	}
	tail->next = rc.head;
	rc.head = head;
	rc.queued += n;
	if (rc.sleeping)
		pthread_cond_signal(&rc.work);
	pthread_mutex_unlock(&rc.lock);
	return true;
}

size_t reclaim_held(void)
{
	return atomic_load_explicit(&held, memory_order_acquire);
}

void reclaim_quiesce(void)
{
	pthread_mutex_lock(&rc.lock);
	while (rc.started && (rc.head || rc.busy))
		pthread_cond_wait(&rc.idle, &rc.lock);
	pthread_mutex_unlock(&rc.lock);
}
