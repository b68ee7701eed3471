/*
 * rcu.c - the threads urcu-memb knows of: libctx registers a thread on its
 * first read-side critical section and unregisters it when it exits.
 *
 * The state is one thread-local byte (ctx_rcu_thread, rcu.h), so a reader's
 * fast path is a load and a branch in front of rcu_read_lock. Everything else
 * happens here, off that path:
 *   - first section (UNSEEN): a thread that liburcu registered already - its
 *     call_rcu workers, which run our callbacks, or a thread the caller
 *     registered - becomes REGISTERED and stays the owner's (registering it
 *     twice would put it in liburcu's registry twice). Any other thread is
 *     registered, with the key set whose destructor unregisters it.
 *   - thread exit: the destructor unregisters the thread (EXITED). Other
 *     destructors may run after ours and call libctx (state.c hands its
 *     batches to the worker from one, a caller may commit from one: round 14,
 *     tests/test_r14_review.c); setting the key again from a destructor is
 *     not reliable (glibc gives up after PTHREAD_DESTRUCTOR_ITERATIONS rounds,
 *     and a registration left behind points into freed thread storage), so
 *     an EXITED thread registers for each outermost section (SECTION) and
 *     unregisters when it ends.
 *   - a thread for which the key cannot be set (out of keys or memory) is
 *     treated as EXITED: registered only inside its sections.
 *   - exit(): no thread's destructor runs; its registrations end with it.
 * `registered` counts the threads registered by us, for the tests (10,000
 * short-lived threads must leave none behind).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "rcu.h"

/* The `registered` bit of liburcu's own record of the thread, to tell a
 * thread it registered (its call_rcu workers) from one it did not. The
 * record is public in its static header; only that field is read. */
#include <urcu/static/urcu-memb.h>

_Thread_local unsigned char ctx_rcu_thread;

static pthread_key_t rcu_key;
static bool rcu_key_ok;
static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;
static atomic_size_t registered;

static void rcu_thread_exit(void *unused)
{
	(void)unused;
	/* A thread cannot exit inside a section of ours; if a caller's did
	 * (it longjmp'd out of a callback), unregistering still ends it. */
	rcu_unregister_thread();
	atomic_fetch_sub_explicit(&registered, 1, memory_order_relaxed);
	ctx_rcu_thread = CTX_RCU_EXITED;
}

static void rcu_key_init(void)
{
	rcu_key_ok = pthread_key_create(&rcu_key, rcu_thread_exit) == 0;
}

/* The thread's first section. */
static void rcu_thread_first(void)
{
	if (URCU_TLS(urcu_memb_reader).registered) {
		ctx_rcu_thread = CTX_RCU_REGISTERED; /* liburcu's, or the caller's */
		return;
	}
	pthread_once(&rcu_once, rcu_key_init);
	if (!rcu_key_ok || pthread_setspecific(rcu_key, &ctx_rcu_thread) != 0) {
		ctx_rcu_thread = CTX_RCU_EXITED;
		return;
	}
	rcu_register_thread();
	atomic_fetch_add_explicit(&registered, 1, memory_order_relaxed);
	ctx_rcu_thread = CTX_RCU_REGISTERED;
}

void ctx_rcu_read_lock_slow(void)
{
	if (ctx_rcu_thread == CTX_RCU_UNSEEN)
		rcu_thread_first();
	if (ctx_rcu_thread == CTX_RCU_EXITED) {
		rcu_register_thread();
		ctx_rcu_thread = CTX_RCU_SECTION;
	}
	rcu_read_lock(); /* REGISTERED, or SECTION (nested or not) */
}

void ctx_rcu_read_unlock_slow(void)
{
	rcu_read_unlock();
	if (ctx_rcu_thread == CTX_RCU_SECTION && !rcu_read_ongoing()) {
		rcu_unregister_thread();
		ctx_rcu_thread = CTX_RCU_EXITED;
	}
}

size_t ctx_rcu_registered_threads(void)
{
	return atomic_load_explicit(&registered, memory_order_relaxed);
}
