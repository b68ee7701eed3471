/*
 * watch.h - the store's change feed, from which watches are served
 * (private to libctx; the public side is ctx_watch_* in ctx.h).
 *
 * Every revision the store hands out is reported to the feed exactly once,
 * after the change became visible to readers (and so, under durability
 * always, after it is durable): feed_record for a change watchers see,
 * feed_skip for a revision without an event (a recovery point record, a ttl
 * record). Reports arrive from many threads in any order; the feed places
 * each in one shared log and advances the frontier over every revision
 * whose predecessors have all been reported: the events up to the frontier
 * are delivered, in revision order, each once. While a watcher is open (or
 * keep_history is set) the log keeps delivered events - at most `history`
 * revisions and `history_bytes` bytes, the oldest evicted first - and a
 * watch may start from an earlier revision it still holds; events not yet
 * delivered are never evicted. Each watcher reads the log from its own
 * cursor, so a report costs the same whatever the number of watchers: it
 * wakes at most two sleeping watchers itself, and leaves more to the feed's
 * waker thread (started with the first watch). A watcher whose next event left the log, or
 * is `queue` or more revisions behind the frontier, receives one
 * CTX_EVENT_LAGGED event naming the first revision it will not deliver, and
 * nothing after it.
 *
 * Cost when nobody watches (and keep_history is off): one compare-and-swap
 * per revision on a word of the feed's own, no lock, for every report at
 * most 23 revisions past the frontier's successor (otherwise one short
 * critical section); nothing copied, nothing allocated, no history.
 */
#ifndef CTX_WATCH_H
#define CTX_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

typedef struct feed feed;

/* As ctx_options watch_history, watch_history_bytes, watch_queue (how far
 * behind the frontier, in revisions, a watcher's next event may fall before
 * it lags), watch_keep_history (0 = default). */
typedef struct feed_config {
	size_t history;
	size_t history_bytes;
	size_t queue;
	bool keep_history;
	/* The waker's window (see THE WAKER in watch.c), for tests; 0 = the
	 * defaults: linger 0.1 ms, pace 2 ms, a stream's gap 8 ms. */
	long wake_linger_ns, wake_pace_ns, wake_gap_ns;
} feed_config;

/* A feed whose first revision will be next_rev (the store's last recovered
 * revision + 1); cfg NULL = all defaults. Errors: CTX_INVALID (a limit out of
 * range), CTX_NOMEM. */
ctx_status feed_open(uint64_t next_rev, const feed_config *cfg, feed **out);

/* Free the feed. Every watch on it must have been closed. */
void feed_close(feed *f);
/* End f's waker thread, freeing nothing (ctx_close_at_exit). */
void feed_stop(feed *f);

/* Report revision rev's event. keys/klens: the keys the change touched (may
 * be NULL when nkeys is 0); everything is copied. Thread-safe, never blocks
 * for long, never calls user code. Out of memory: the event is recorded
 * without its keys (never dropped: that would stall every later event). */
void feed_record(feed *f, uint64_t rev, ctx_event_kind kind, const char *id, size_t idlen,
                 uint64_t version, size_t nkeys, const void *const *keys, const size_t *klens);

/* Whether events are recorded now (a watch is open, or keep_history): a
 * hint for a reporter whose key list is costly to build (a clearing
 * commit's); a watch that opens right after may get the event without
 * those keys. */
bool feed_recording(const feed *f);

/* Report a revision that has no event. */
void feed_skip(feed *f, uint64_t rev);

/* Report revision rev without an event if nobody records (no watch open,
 * keep_history off) and the quiet path takes it (see QUIET in watch.c):
 * one compare-and-swap, no lock, so a caller may hold its own locks (a
 * commit, under its context's write lock). True: reported. False: nothing
 * done; report rev as usual (feed_record). */
bool feed_report_bare(feed *f, uint64_t rev);

/* Deliver no revision above rev until the gate is raised again (the first
 * call closes a gate that was open). Under durability batch the store
 * reports a change when it becomes visible, before its sync, and raises the
 * gate after each sync, so that watchers see only durable changes. */
void feed_set_gate(feed *f, uint64_t rev);

/* What the feed holds, for tests and measurements. */
typedef struct feed_stats {
	uint64_t frontier;          /* every revision up to it was reported     */
	uint64_t oldest;            /* the history is [oldest, frontier]        */
	size_t history_events;      /* events (with their keys) in the history  */
	size_t history_bytes;       /* their bytes; <= history_bytes_limit      */
	size_t history_bytes_limit; /* the byte bound in effect                 */
	size_t pending_events;      /* recorded, waiting for an earlier report  */
	size_t pending_bytes;       /* their bytes (never evicted)              */
	size_t ring_slots;          /* the ring's size (8 bytes a slot)         */
	uint64_t events_recorded;   /* reports recorded as an allocated event   */
	size_t armed_watchers;      /* watchers waiting for a wake-up           */
	uint64_t inline_wakes;      /* watchers woken by a report itself        */
	uint64_t waker_wakes;       /* watchers woken by the feed's waker       */
	uint64_t waker_passes;      /* the waker's passes over the armed list   */
	long waker_window_ns;       /* its wait before its last pass (0: none)  */
	bool waker_busy;            /* the waker has wake-ups to make (or is
	                               making them, or has not slept yet)       */
} feed_stats;

void feed_get_stats(feed *f, feed_stats *out);

/* The pooled event records (see RECORDS in watch.c), for tests: their
 * sizes, the calling thread's spares and their bound, and how many spares
 * exiting threads freed. */
typedef struct feed_record_info {
	size_t small_bytes, large_bytes;           /* a record's size, counted in the log */
	size_t small_spares_max, large_spares_max; /* a thread's bound */
	size_t small_spares, large_spares;         /* the calling thread's spares */
	size_t freed_at_exit;                      /* by exiting threads, ever */
} feed_record_info;

void feed_record_stats(feed_record_info *out);

/* Open a watch on a feed: the body of ctx_watch_open (which passes the
 * store's feed), callable on a bare feed by tests. */
ctx_status feed_watch_open(feed *f, const char *id, bool prefix, uint64_t from_revision,
                           ctx_watch **out);

#endif
