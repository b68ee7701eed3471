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
 */
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
