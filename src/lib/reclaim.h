/*
 * reclaim.h - freeing the versions that leave history, off the commit path.
 */
#ifndef CTX_RECLAIM_H
#define CTX_RECLAIM_H

#include <stdbool.h>
#include <stddef.h>

#include "ctx.h"
#include "hamt.h"

typedef struct ctx_context ctx_context;

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

/* The commit path's handing over of a context reference (txn.c): the
 * version a commit makes takes over the reference to its context that the
 * version it cuts from history held, when the commit drops that version's
 * last reference, instead of a locked increment and decrement of the
 * context's count (state.c). */

/* state_new without a reference to c: the caller gives it one (from
 * state_take_cut, or context_retain) before anyone else can release it. */
ctx_state *state_new_adopting(ctx_context *c, uint64_t version, hamt data, hamt meta);

/* Drop the caller's reference to cut (a version just cut from history,
 * under its context's write lock). True if it was the last: cut is dead,
 * its reference to its context is the caller's, and the caller frees it
 * with state_free_cut (after unlocking). False: it lives on in others'
 * references. */
bool state_take_cut(ctx_state *cut);

/* Free st after state_take_cut returned true (NULL is ignored); releases
 * the versions before it as ctx_state_release does, but not st's
 * reference to its context. */
void state_free_cut(ctx_state *st);

/* Versions handed over and not yet released (a racy reading, for tests). */
size_t reclaim_pending(void);

#endif
