/*
 * pool.h - a per-thread cache of small freed blocks in front of slab chunks
 * and malloc, for the blocks every commit allocates and frees (trie nodes,
 * leaves, version structs) and for contexts (store.c, round 15).
 */
#ifndef CTX_POOL_H
#define CTX_POOL_H

#include <stdbool.h>
#include <stddef.h>

/* A block of size bytes, served from the calling thread's cache when it holds a block
 * of size's class. NULL on failure. */
void *pool_alloc(size_t size);

/* Free p, a block from pool_alloc or malloc (NULL is ignored): kept in the
 * calling thread's cache while its class has room, else freed (a slab
 * block to its class's shared list, pool.c). The only way to free a block
 * from pool_alloc. */
void pool_free(void *p);

/* pool_free(p) for a block allocated (by pool_alloc or malloc) with a
 * request of at least size bytes: the class comes from size, without
 * asking malloc_usable_size (a call into glibc that reads the chunk's
 * header, a sixth of pool_free's time): the largest class whose blocks are
 * no longer than size. So a size that is not a class's exact usable size
 * (24, 40, 56, ... bytes) files the block one class low, where it is
 * served to smaller requests; the callers pass sizes that fill a chunk. */
void pool_free_sized(void *p, size_t size);

/* The bytes p (from pool_alloc) can hold: its class's for a slab block
 * (pool.c), malloc_usable_size for a malloc block. For tests and layout
 * checks: a slab block is not a malloc block, malloc_usable_size and free
 * must never see it. */
size_t pool_usable_size(void *p);

/* Bytes of the slab range handed out to threads as chunks so far (0 under
 * ASan, or when the range could not be reserved): every slab block lies in
 * them. Only grows (a chunk whose mprotect failed is given back, and counts
 * at most while it is tried); for tests. The range is 64 GiB, or a quarter
 * of RLIMIT_AS if that is less (pool.c). */
size_t pool_slab_bytes(void);

/* Bytes of the slab range given back to the system (MADV_DONTNEED) and not
 * handed out again: chunks whose blocks were all free, past the few kept
 * populated for the next (pool.c). 0 under ASan; for tests. */
size_t pool_slab_given_back(void);

/* Bytes of emptied slab chunks kept populated (not given back) for the
 * next chunks: up to 4 chunks (8 MiB) for good, and past them, up to a
 * bound (512 MiB) for as long as they stay unused for the decay time
 * (10 s), after which a process-wide thread gives them back (pool.c,
 * DECAY). A chunk being given back (madvise, no lock held) counts in
 * neither this nor pool_slab_given_back for that moment. 0 under ASan;
 * for tests. */
size_t pool_slab_kept(void);

/* Process-wide: chunks kept past the 4 kept for good are given back once
 * unused for decay_ms (0: at once, as before round 18), and at most
 * max_bytes of them are kept. Defaults 10,000 ms and 512 MiB. For tests
 * (a lower bound takes effect at once; a shorter time once the decay
 * thread looks again, which the call makes it do). */
void pool_slab_set_decay(unsigned decay_ms, size_t max_bytes);

/* Process-wide: with on false, the slab range gets no huge pages (nothing
 * advised MADV_HUGEPAGE or collapsed: pool.c, PIECES AND HUGE PAGES), as
 * with the kernel's THP "never". Takes effect only if called before the
 * first slab allocation reserves the range: false (nothing changed) after
 * it. ctx_use_huge_pages. */
bool pool_slab_use_huge(bool on);

/* Whether the slab range is given huge pages: reserved, the kernel's THP
 * in "always" or "madvise" mode, and pool_slab_use_huge(false) not called
 * before. False under ASan (no slabs). */
bool pool_slab_huge(void);

/* Process-wide: with on false, pool_alloc takes no new block from a slab
 * (blocks already carved are still reused from the caches and shared
 * lists). Default on. For tests that count the heap with mallinfo2, which
 * sees malloc's blocks only; call it before the first allocation. */
void pool_use_slabs(bool on);

/* While on, the slab chunks the calling thread takes to carve (a fresh
 * one, or one given back) are backed by huge pages where the system has
 * them (MADV_HUGEPAGE; THP "madvise" or "always"): one fault per 2 MiB. In
 * this VM the first touch of each 4 KiB page of fresh memory costs ~20 us
 * even after MADV_POPULATE_WRITE mapped it, ~1 us with huge pages
 * (docs/benchmarks.md, round 20). For recovery, which builds a whole store
 * on one thread; off by default (a thread's first block would zero 2 MiB). */
void pool_huge_chunks(bool on);

/* Register the pool's fork handlers now if they are not (they lock the
 * slab lists across fork): fork.c registers its own after them, so that
 * its prepare handler runs before the pool's (pthread_atfork runs prepare
 * handlers in the reverse order of registration). */
void pool_fork_ready(void);

/* Give every block the calling thread's cache holds back (ctx_close): a
 * malloc block to free, a slab block to its class's shared list. */
void pool_trim(void);

/* While on, the calling thread keeps no block: its cache is emptied and
 * every pool_alloc calls malloc, every pool_free free. For liburcu's call_rcu
 * worker (it frees versions other threads allocated and allocates none of
 * them: a cache there would only hold memory, state.c) and for tests that
 * fail chosen malloc calls (test_nomem). */
void pool_bypass(bool on);

#endif
