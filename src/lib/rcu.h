/*
 * rcu.h - read-copy-update for libctx, and what ThreadSanitizer must know of it.
 *
 * libctx uses liburcu's "bullet-proof" flavour (urcu-bp): any thread may enter a
 * read-side critical section without registering first, which is what a library
 * called from threads it does not own needs. Readers pay a few instructions
 * (urcu-bp uses the membarrier system call to keep the read side free of
 * fences); writers wait for, or defer work past, a grace period.
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

#include <urcu-bp.h>

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
		rcu_read_unlock();                     \
	} while (0)
#define tsan_after_grace_period() __tsan_acquire(&ctx_rcu_grace_token)
#else
#define tsan_publish(p) ((void)(p))
#define tsan_subscribe(p) ((void)(p))
#define ctx_rcu_read_unlock() rcu_read_unlock()
#define tsan_after_grace_period() ((void)0)
#endif

#define ctx_rcu_read_lock() rcu_read_lock()

/* call_rcu: everything the caller did before queueing the callback happens
 * before the callback (liburcu's queue orders it; tell TSan). */
#ifdef CTX_TSAN
#define ctx_call_rcu(head, fn)                                 \
	do {                                                   \
		__tsan_release(&ctx_rcu_grace_token);          \
		call_rcu(head, fn);                            \
	} while (0)
#else
#define ctx_call_rcu(head, fn) call_rcu(head, fn)
#endif

#endif
