/*
 * fork.h - what a child of fork inherits from libctx, and what it may do
 * (fork.c).
 */
#ifndef CTX_FORK_H
#define CTX_FORK_H

#include <stdatomic.h>
#include <stdbool.h>

#include "ctx.h"

struct ctx_store;

/* Forks this process has gone through since libctx's fork handlers were
 * registered (each child adds one). A store records it at open: a store
 * whose count differs was inherited from a parent. */
extern atomic_uint fork_generation;

/* At every ctx_open, before anything else: registers the fork handlers once
 * (after pool.c's, so that theirs run in the order fork.c explains) and, in
 * a child of a fork, gives liburcu its call_rcu worker back (the first
 * ctx_open of the child). */
void fork_open(void);

/* Track s (open, with its directory's lock in s->lock_fd), so that a child
 * of fork closes its copy of the lock; untrack before closing the lock. */
void fork_track(struct ctx_store *s);
void fork_untrack(struct ctx_store *s);

/* CTX_CLOSED (with the detail message) for a store opened before this
 * process forked: its threads are not in this process. */
ctx_status fork_refuse(void);

#endif
