/*
 * reclaim.h - freeing the versions that leave history, off the commit path.
 */
#ifndef CTX_RECLAIM_H
#define CTX_RECLAIM_H

#include <stdbool.h>
#include <stddef.h>

#include "ctx.h"

/* At most this many versions wait to be freed; past it, committers free
 * their own (after unlocking). */
#define RECLAIM_MAX_PENDING 1024

/* A commit of at most this many ops replaces so few nodes of the version
 * before that freeing it costs less than handing it to the reclaimer: the
 * commit (or the replay of its record) is `light`. */
#define RECLAIM_LIGHT_OPS 16

/* Take over the reference st (a version that just left history) and free it
 * in the background. False if RECLAIM_MAX_PENDING versions wait already, or
 * if st is cheap to free (the commit after it was light, reclaim.c): the
 * caller keeps the reference and releases it itself. Short, lock-free and
 * never blocks: callable under a context's write lock. */
bool reclaim_defer(ctx_state *st);

/* Versions handed over and not yet released (a racy reading, for tests). */
size_t reclaim_pending(void);

#endif
