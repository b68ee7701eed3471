/*
 * fork.c - libctx in a child of fork.
 *
 * The rule is SQLite's and LMDB's: a store is not carried across fork, but
 * the child may use the library afresh. A child of a process that used
 * libctx may exit or exec at once (nothing of the parent's is touched:
 * no file written, no lock taken), or open stores of its own (another
 * directory, or the parent's once the parent closed it) and use all of
 * libctx on them. A store it inherited is refused: its background threads
 * (flusher, zeroer, checkpointer, reaper, waker, trackers' timers) are not
 * in the child, nor is any thread that held one of its locks at the fork,
 * so any call that would write, wait or close returns CTX_CLOSED instead
 * (fork_refuse; each call checks the store's fork_generation, one load of
 * a line no writer touches), and its close does nothing: its memory (the
 * child's copy) stays until the child exits.
 *
 * What must be fixed up, by handlers registered with pthread_atfork at the
 * first ctx_open:
 *   - liburcu's call_rcu worker. Every store's close waits for it
 *     (rcu_barrier), so a child without one hung at its first ctx_close
 *     (round 17). liburcu's own rule: call_rcu_before_fork in the parent
 *     pauses the workers (they finish the batch they run, at a point
 *     where their queues are whole) and holds liburcu's call_rcu mutex;
 *     call_rcu_after_fork_child releases it and starts a new worker. That
 *     start is deferred to the child's first ctx_open (fork_open): a child
 *     that only execs or exits starts no thread (ThreadSanitizer kills a
 *     child of a threaded parent that does, unless die_after_fork=0, and a
 *     thread is a waste there). Until then the mutex stays held by the
 *     thread that forked; a fork in such a child, before it opened a store,
 *     skips the pause (there is no worker to pause) and its child inherits
 *     the same state. The callbacks the parent's worker had not run yet
 *     move to the new worker and run in the child: they free the child's
 *     copies of the parent's memory, and a clear's report to an inherited
 *     store's watchers is skipped (store.c, pending_report_rcu).
 *   - urcu-bp's registry: urcu_bp_before_fork holds its grace-period and
 *     registry locks across fork, urcu_bp_after_fork_child drops the
 *     parent's other threads from it (a reader of the parent's caught in
 *     a read-side section would hold back every grace period of the
 *     child), without starting any thread.
 *   - pool.c's slab locks (its own handlers, registered before these).
 *   - the directory locks: a store's flock is held by the open file that
 *     the child's copy of lock_fd shares with the parent, so a child that
 *     lives on would keep the directory locked after the parent closed it
 *     (for the parent's next ctx_open too). The child closes its copies
 *     (fork_child: closing a copy does not release the parent's lock).
 *
 * ORDER
 *   pthread_atfork runs prepare handlers in the reverse order of their
 *   registration, the others in that order. fork_open registers pool.c's
 *   first (pool_fork_ready), then these, so a fork runs: fork_prepare
 *   (fork_lock, pause the call_rcu workers, urcu-bp's locks), then pool.c's
 *   (slab locks); after it pool.c's, then fork_parent / fork_child. The
 *   workers pause before the slab locks are taken: a callback that frees
 *   into a slab list finishes first (round 17's attempt registered
 *   liburcu's handlers before pool.c's registered its own, so the slab
 *   locks were held while the pause waited for such a callback). Nobody
 *   holds fork_lock while waiting for a grace period or a callback.
 *
 * COST
 *   A fork of a process that used libctx waits for the call_rcu worker to
 *   pause: up to its 10 ms sleep between batches (liburcu), plus the batch
 *   it runs. A process that never opened a store registers nothing.
 */
#include <pthread.h>
#include <unistd.h>

#include "fork.h"
#include "pool.h"
#include "rcu.h"
#include "store.h"
#include "util.h"

atomic_uint fork_generation;

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
/* Guards the three below; taken across fork (fork_prepare to fork_parent or
 * fork_child). */
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static ctx_store *stores; /* open stores holding a directory lock */
/* This process is a child of a fork and has not restarted liburcu's
 * call_rcu (call_rcu_after_fork_child): its mutex is held, its worker gone. */
static bool worker_gone;
/* fork_prepare paused the worker (this fork's parent resumes it). */
static bool worker_paused;

static void fork_prepare(void)
{
	pthread_mutex_lock(&fork_lock);
	worker_paused = !worker_gone;
	if (worker_paused)
		call_rcu_before_fork();
	urcu_bp_before_fork();
}

static void fork_parent(void)
{
	urcu_bp_after_fork_parent();
	if (worker_paused)
		call_rcu_after_fork_parent();
	worker_paused = false;
	pthread_mutex_unlock(&fork_lock);
}

static void fork_child(void)
{
	urcu_bp_after_fork_child();
	worker_gone = true;
	worker_paused = false;
	for (ctx_store *s = stores; s; s = s->fork_next) {
		if (s->lock_fd >= 0)
			close(s->lock_fd);
		s->lock_fd = -1;
		s->fork_prev = NULL;
	}
	stores = NULL;
	atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
	pthread_mutex_unlock(&fork_lock);
}

static void fork_register(void)
{
	pool_fork_ready();
	/* The worker now, not at the first call_rcu: a child that has not
	 * restarted liburcu (worker_gone) may still queue callbacks (releasing
	 * a state it held at the fork), which must find the default worker's
	 * queue and not take liburcu's mutex, held until the restart. */
	(void)get_default_call_rcu_data();
	/* Without the handlers (no memory), a fork is what it was before
	 * round 18: the child must exec. */
	(void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void fork_open(void)
{
	pthread_once(&fork_once, fork_register);
	pthread_mutex_lock(&fork_lock);
	if (worker_gone) {
		call_rcu_after_fork_child();
		worker_gone = false;
	}
	pthread_mutex_unlock(&fork_lock);
}

void fork_track(ctx_store *s)
{
	pthread_mutex_lock(&fork_lock);
	s->fork_next = stores;
	if (stores)
		stores->fork_prev = &s->fork_next;
	s->fork_prev = &stores;
	stores = s;
	pthread_mutex_unlock(&fork_lock);
}

void fork_untrack(ctx_store *s)
{
	pthread_mutex_lock(&fork_lock);
	if (s->fork_prev) {
		*s->fork_prev = s->fork_next;
		if (s->fork_next)
			s->fork_next->fork_prev = s->fork_prev;
		s->fork_prev = NULL;
	}
	pthread_mutex_unlock(&fork_lock);
}

ctx_status fork_refuse(void)
{
	return ctx_fail(CTX_CLOSED, "the store was opened before this process forked: a child "
	                            "of fork cannot use it (open a store of its own)");
}
