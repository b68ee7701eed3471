/*
 * pool.c - a per-thread cache of small freed blocks in front of malloc.
 *
 * Every commit allocates a leaf, the copies of the nodes on its key's path
 * and a version struct, and frees about as much: what the version it cut
 * from history held alone. glibc's per-thread cache keeps 7 blocks of a size,
 * so the frees that come in bursts (the released version structs, freed 32
 * at a time after their grace period, state.c) and the blocks other threads
 * allocated (a cut version's nodes came from whichever thread committed
 * them) overflow it into the arenas' bins: `_int_free` and `_int_malloc`
 * were a sixth of a one-thread update, and at 64 threads a quarter of the
 * futex calls were the arena locks those take.
 *
 * CLASSES: a block of glibc's chunk size 32, 48, ... 32 + 16 * (POOL_CLASSES
 * - 1) bytes goes to the class of its chunk, read from malloc_usable_size
 * (the largest class whose blocks are at most that usable size: a block is
 * never smaller than its class says), or, in pool_free_sized, from the size
 * the caller gives (the same rule applied to it: safe with any malloc). pool_alloc takes from the smallest class
 * whose blocks hold the request, else calls malloc. Every block is a malloc
 * block: pool_free accepts blocks from malloc, free() accepts blocks from
 * pool_alloc, and a block may be freed by any thread, into that thread's
 * cache.
 *
 * BOUND: at most POOL_CAP blocks per class and POOL_BYTES bytes per thread;
 * past either, pool_free calls free. POOL_CAP covers the largest burst of
 * version structs a thread frees at once (state.c: up to STATE_HOLD_MAX +
 * STATE_BATCH, 544, when ticks are slow), which the next commits then
 * allocate again; 64 blocks per class and 32 KiB measured 5-7% slower
 * (docs/benchmarks.md). So an idle thread that committed keeps at most
 * 128 KiB until it exits. A thread's blocks are freed when it
 * exits (a thread-specific key's destructor; after it, and in a thread whose
 * key could not be set, pool_free calls free) or calls pool_trim.
 *
 * LIFO: the block freed last is handed out first, while it is in the cache
 * (a cut version's node has just been read to free it).
 *
 * Under AddressSanitizer a cached block is poisoned, so that a use after
 * pool_free is reported as one after free would be; all but its first word,
 * the link to the next kept block: LeakSanitizer does not look into
 * poisoned memory, and would report every block behind the first of a class
 * as leaked (the fuzz targets' leak checks run while blocks are kept).
 *
 * NOT IN THE CALL_RCU WORKER: the worker frees versions (reclaim.c, and
 * state batches of threads that could not wait) and allocates no node, leaf
 * or version, so a cache there would only hold up to POOL_BYTES until the
 * process exits; its callbacks call pool_bypass first (state.c), and a
 * thread keeps blocks only once it has called pool_alloc (a callback of
 * another file that frees a version keeps nothing either).
 */
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "pool.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#define pool_poison(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define pool_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define pool_poison(p, n)   ((void)(p), (void)(n))
#define pool_unpoison(p, n) ((void)(p), (void)(n))
#endif

#define POOL_CLASSES 16           /* chunks of 32 to 272 bytes */
#define POOL_CAP     576          /* blocks per class: a burst of released versions */
#define POOL_BYTES   (128u << 10) /* bytes per thread */

typedef struct block {
	struct block *next;
} block;

static _Thread_local struct {
	block *head[POOL_CLASSES];
	uint16_t n[POOL_CLASSES];
	size_t bytes;
	bool allocs; /* pool_alloc was called: a thread that only frees keeps nothing */
	bool keyed;  /* the exit destructor is set */
	bool off;    /* exited, no key, or bypassed: pool_free frees */
} pool;

static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static bool pool_key_ok;

/* Usable bytes of a block of class k (its chunk less glibc's 8-byte header). */
static inline size_t class_usable(unsigned k)
{
	return 32 + 16 * (size_t)k - 8;
}

/* The class that serves a request of size bytes (POOL_CLASSES: none). */
static inline unsigned class_for_request(size_t size)
{
	return size <= class_usable(0) ? 0 : (unsigned)((size - class_usable(0) + 15) / 16);
}

/* The class a block of usable bytes belongs to (POOL_CLASSES: none). */
static inline unsigned class_for_block(size_t usable)
{
	if (usable < class_usable(0))
		return POOL_CLASSES;
	size_t k = (usable - class_usable(0)) / 16;
	return k < POOL_CLASSES ? (unsigned)k : POOL_CLASSES;
}

void *pool_alloc(size_t size)
{
	unsigned k = class_for_request(size);
	if (k < POOL_CLASSES && pool.head[k]) {
		block *b = pool.head[k];
		pool_unpoison(b, class_usable(k));
		pool.head[k] = b->next;
		/* The next block of the class: its link is read by the next
		 * allocation, and a block kept long ago is cold. */
		__builtin_prefetch(pool.head[k]);
		pool.n[k]--;
		pool.bytes -= class_usable(k);
		return b;
	}
	pool.allocs = true;
	return malloc(size);
}

static void pool_free_all(void)
{
	for (unsigned k = 0; k < POOL_CLASSES; k++) {
		while (pool.head[k]) {
			block *b = pool.head[k];
			pool_unpoison(b, class_usable(k));
			pool.head[k] = b->next;
			free(b);
		}
		pool.n[k] = 0;
	}
	pool.bytes = 0;
}

static void pool_thread_exit(void *unused)
{
	(void)unused;
	pool_free_all();
	pool.off = true;
}

/* At exit, the exiting thread's blocks (the others' are still reachable
 * from their threads; a leak checker that runs at exit sees none lost). */
static void pool_at_exit(void)
{
	pool_thread_exit(NULL);
}

static void pool_key_init(void)
{
	pool_key_ok =
	    pthread_key_create(&pool_key, pool_thread_exit) == 0 && atexit(pool_at_exit) == 0;
}

/* Set the calling thread's exit destructor (false: no cache here). */
static bool pool_keyed(void)
{
	if (pool.off || !pool.allocs)
		return false;
	if (pool.keyed)
		return true;
	pthread_once(&pool_once, pool_key_init);
	if (!pool_key_ok || pthread_setspecific(pool_key, &pool) != 0) {
		pool.off = true;
		return false;
	}
	pool.keyed = true;
	return true;
}

/* Keep p (a block of class k, or none: POOL_CLASSES) or free it. */
static void pool_keep(void *p, unsigned k)
{
	if (k < POOL_CLASSES && pool.n[k] < POOL_CAP &&
	    pool.bytes + class_usable(k) <= POOL_BYTES && pool_keyed()) {
		block *b = p;
		b->next = pool.head[k];
		pool.head[k] = b;
		pool.n[k]++;
		pool.bytes += class_usable(k);
		pool_poison(b + 1, class_usable(k) - sizeof(*b));
		return;
	}
	free(p);
}

void pool_free(void *p)
{
	if (p)
		pool_keep(p, class_for_block(malloc_usable_size(p)));
}

void pool_free_sized(void *p, size_t size)
{
	/* The block holds at least size bytes (with glibc its chunk may hold
	 * more; under ASan, TSan or another malloc exactly size): the largest
	 * class whose blocks are no longer is always safe, and it is the
	 * block's own class when size fills a glibc chunk, as the sizes of
	 * nodes and version structs do (hamt.c's node_alloc, store.h). */
	if (p)
		pool_keep(p, class_for_block(size));
}

void pool_trim(void)
{
	pool_free_all();
}

void pool_bypass(bool on)
{
	if (on && pool.off && !pool.bytes)
		return;
	pool_free_all();
	pool.off = on;
}
