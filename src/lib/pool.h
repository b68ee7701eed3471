/*
 * pool.h - a per-thread cache of small freed blocks in front of malloc, for
 * the blocks every commit allocates and frees (trie nodes, leaves, version
 * structs).
 */
#ifndef CTX_POOL_H
#define CTX_POOL_H

#include <stdbool.h>
#include <stddef.h>

/* malloc(size), served from the calling thread's cache when it holds a block
 * of size's class. NULL on failure. */
void *pool_alloc(size_t size);

/* free(p) for a block from malloc or pool_alloc (NULL is ignored): kept in the
 * calling thread's cache while its class has room, else freed. */
void pool_free(void *p);

/* pool_free(p) for a block allocated (by pool_alloc or malloc) with a
 * request of at least size bytes: the class comes from size, without
 * asking malloc_usable_size (a call into glibc that reads the chunk's
 * header, a sixth of pool_free's time): the largest class whose blocks are
 * no longer than size. So a size that is not a class's exact usable size
 * (24, 40, 56, ... bytes) files the block one class low, where it is
 * served to smaller requests; the callers pass sizes that fill a chunk. */
void pool_free_sized(void *p, size_t size);

/* Free every block the calling thread's cache holds (ctx_close). */
void pool_trim(void);

/* While on, the calling thread keeps no block: its cache is emptied and
 * every pool_alloc calls malloc, every pool_free free. For liburcu's call_rcu
 * worker (it frees versions other threads allocated and allocates none of
 * them: a cache there would only hold memory, state.c) and for tests that
 * fail chosen malloc calls (test_nomem). */
void pool_bypass(bool on);

#endif
