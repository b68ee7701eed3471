/*
 * rcu.h - read-copy-update for libctx, and what ThreadSanitizer must know of it.
 *
 * libctx uses liburcu's membarrier flavour (urcu-memb). Readers pay a few
 * instructions (the membarrier system call keeps the read side free of
 * fences); writers wait for, or defer work past, a grace period. Until round
 * 16 it used the "bullet-proof" flavour (urcu-bp), which needs no
 * registration but whose synchronize_rcu naps 10 ms (poll) whenever a reader
 * is inside a critical section, and runs one grace period per caller; memb's
 * waits on a futex that the last reader's rcu_read_unlock wakes, and one
 * grace period serves every caller queued while it ran (docs/benchmarks.md,
 * round 16).
 *
 * REGISTRATION: memb must know every reader thread, and libctx is called from
 * threads it does not own, so it registers a thread itself, on the thread's
 * first read-side critical section (ctx_rcu_read_lock: a thread-local state,
 * one load and a branch when registered), and unregisters it when the thread
 * exits (a thread-specific key's destructor, rcu.c). ctx_call_rcu enters a
 * read-side section around call_rcu, which memb needs from a registered
 * thread too. The other cases, all in rcu.c:
 *   - a thread liburcu registered already (its call_rcu workers, or a
 *     caller's thread registered by its owner, who keeps it registered while
 *     it calls libctx) is used as it is, and not unregistered by us;
 *   - after our destructor ran (other destructors of the thread call libctx
 *     later: state.c's batches, a caller's commit), each outermost section
 *     registers the thread for itself and its unlock unregisters it: nothing
 *     stays registered once the thread is gone;
 *   - exit() runs no thread destructors: registrations stay, with the
 *     process.
 * synchronize_rcu and rcu_barrier need no registration (a registered caller
 * must not be inside a section).
 *
 * liburcu orders memory with its own assembly, which ThreadSanitizer cannot
 * see. The macros below state the happens-before edges RCU guarantees so that
 * a TSan build checks our code, not liburcu's:
 *   - an object published through the context table is released by its
 *     creator before insertion and acquired by whoever finds it (the table's
 *     slots are C11 atomics, which TSan sees; the marks are kept for
 *     clarity);
 *   - every read-side critical section releases the grace token when it
 *     ends, and every RCU callback acquires it before freeing: a grace period
 *     separates all earlier readers from the free.
 * In other builds they compile to nothing.
 */
#ifndef CTX_RCU_H
#define CTX_RCU_H

#include <stddef.h>
#include <urcu.h>

/* The thread's registration with urcu-memb (rcu.c). */
enum {
	CTX_RCU_UNSEEN,     /* no section yet: the next one registers */
	CTX_RCU_REGISTERED, /* registered (by us, or by liburcu or the caller) */
	CTX_RCU_EXITED,     /* our destructor ran: not registered */
	CTX_RCU_SECTION     /* registered for the section in progress only */
};
extern _Thread_local unsigned char ctx_rcu_thread;
void ctx_rcu_read_lock_slow(void);
void ctx_rcu_read_unlock_slow(void);
/* Threads libctx registered and has not unregistered (tests). */
size_t ctx_rcu_registered_threads(void);

static inline void ctx_rcu_read_lock(void)
{
	if (__builtin_expect(ctx_rcu_thread == CTX_RCU_REGISTERED, 1))
		rcu_read_lock();
	else
		ctx_rcu_read_lock_slow();
}

static inline void ctx_rcu_read_unlock_raw(void)
{
	if (__builtin_expect(ctx_rcu_thread == CTX_RCU_REGISTERED, 1))
		rcu_read_unlock();
	else
		ctx_rcu_read_unlock_slow();
}

#if defined(__SANITIZE_THREAD__)
#define CTX_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CTX_TSAN 1
#endif
#endif

#ifdef CTX_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char ctx_rcu_grace_token;
#define tsan_publish(p) __tsan_release((void *)(p))
#define tsan_subscribe(p) __tsan_acquire((void *)(p))
#define ctx_rcu_read_unlock()                          \
	do {                                           \
		__tsan_release(&ctx_rcu_grace_token);  \
		ctx_rcu_read_unlock_raw();             \
	} while (0)
#define tsan_after_grace_period() __tsan_acquire(&ctx_rcu_grace_token)
#else
#define tsan_publish(p) ((void)(p))
#define tsan_subscribe(p) ((void)(p))
#define ctx_rcu_read_unlock() ctx_rcu_read_unlock_raw()
#define tsan_after_grace_period() ((void)0)
#endif

/* call_rcu: everything the caller did before queueing the callback happens
 * before the callback (liburcu's queue orders it; tell TSan: the section's
 * unlock releases the grace token). memb's call_rcu enters a read-side
 * section itself, so the thread must be registered: the section around it
 * sees to that. */
#define ctx_call_rcu(head, fn)                 \
	do {                                   \
		ctx_rcu_read_lock();           \
		call_rcu(head, fn);            \
		ctx_rcu_read_unlock();         \
	} while (0)

#endif
