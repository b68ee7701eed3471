/*
 * watch.h - the store's change feed, from which watches are served
 * (private to libctx; the public side is ctx_watch_* in ctx.h).
 *
 * Every revision the store hands out is reported to the feed exactly once,
 * after the change became visible to readers (and so, under durability
 * always, after it is durable): feed_record for a change watchers see,
 * feed_skip for a revision without an event (a recovery point record, a ttl
 * record). Reports arrive from many threads in any order; the feed delivers
 * events in revision order, each once, as soon as every revision before them
 * has been reported. It keeps the last `history` events so that a watch can
 * start from an earlier revision, and gives each watcher a queue of at most
 * `queue` events: a watcher whose queue is full receives one
 * CTX_EVENT_LAGGED event naming the first revision it missed, and nothing
 * after it.
 *
 * Cost when nobody watches: one short critical section per revision.
 */
#ifndef CTX_WATCH_H
#define CTX_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

typedef struct feed feed;

/* A feed whose first revision will be next_rev (the store's last recovered
 * revision + 1). history, queue: as ctx_options watch_history, watch_queue
 * (0 = default). */
ctx_status feed_open(uint64_t next_rev, size_t history, size_t queue, feed **out);

/* Free the feed. Every watch on it must have been closed. */
void feed_close(feed *f);

/* Report revision rev's event. keys/klens: the keys the change touched (may
 * be NULL when nkeys is 0); everything is copied. Thread-safe, never blocks
 * for long, never calls user code. Out of memory: the event is recorded
 * without its keys (never dropped: that would stall every later event). */
void feed_record(feed *f, uint64_t rev, ctx_event_kind kind, const char *id, size_t idlen,
                 uint64_t version, size_t nkeys, const void *const *keys, const size_t *klens);

/* Report a revision that has no event. */
void feed_skip(feed *f, uint64_t rev);

/* Open a watch on a feed: the body of ctx_watch_open (which passes the
 * store's feed), callable on a bare feed by tests. */
ctx_status feed_watch_open(feed *f, const char *id, bool prefix, uint64_t from_revision,
                           ctx_watch **out);

#endif
