/*
 * watch.c - the change feed: one shared log of events, read by every watch
 * from its own cursor.
 *
 * EVENTS
 *   Every revision is reported once, as an event (feed_record) or as a skip
 *   (feed_skip). While anybody may want it - a watcher is open, or the store
 *   keeps history for later watches (watch_keep_history) - an event is built
 *   completely, in one record (see RECORDS) or allocation holding the public
 *   ctx_event, the id and a copy of the keys, before any lock is taken.
 *   Events are immutable once built and reference counted: the ring holds
 *   one reference, and a watcher takes one for each event it reads out of
 *   the ring, which ctx_watch_next hands to the caller (ctx_event_free drops
 *   it).
 *
 *   Otherwise nothing is copied and nothing allocated: the revision is
 *   passed on the quiet path (below), or marked in its slot as "bare"
 *   (reported, event not recorded). A skip is always a mark or quiet. So a
 *   revision always has exactly one slot value or quiet report standing for
 *   it, and nobody watching costs (most of the time) one compare-and-swap
 *   per revision and no memory that grows.
 *
 * RECORDS
 *   An event of at most RECORD_SMALL (128) bytes - header, id, keys: most
 *   commits of a few short keys - is built in a record of that size, one of
 *   at most RECORD_LARGE (256) in one of that size, and it is counted in the
 *   log at its record's size (watch_history_bytes); a larger one has an
 *   allocation of its own, counted at its size. A record whose last
 *   reference goes (mostly the ring's, evicted by the reporter that bounds
 *   the log: the writers) becomes a spare of the releasing thread, which
 *   builds its next events in its spares, the last released first (still in
 *   cache): in the steady state, the log full, a commit evicts one event and
 *   builds one, without malloc or free (their slow paths, with 64 watchers,
 *   were 13% of the writers' CPU). A thread keeps at most SPARES_SMALL (128)
 *   small and SPARES_LARGE (64) large spares - 32 KiB - and frees the rest;
 *   its spares are freed when it exits (a thread-specific key's destructor).
 *   So spares add at most 32 KiB a thread to the memory the log's bounds
 *   allow.
 *
 * QUIET: REPORTS WITHOUT THE LOCK WHILE NOBODY RECORDS
 *   The quiet word (a line of its own) is frontier << QUIET_SHIFT | ahead << 1
 *   | FROZEN. While it is not frozen, it owns the frontier: a report that
 *   does not record (no watcher, keep off) advances it with one
 *   compare-and-swap, without the feed lock - the frontier's successor moves
 *   the frontier (over the revisions noted ahead, too), a revision at most
 *   quiet_window (23, or the ring's size - 1 if smaller) past the successor
 *   sets its bit in `ahead`. Anything else (frozen, further ahead, a
 *   duplicate) takes the locked path. Whoever takes the feed lock freezes
 *   the word first (feed_freeze: one fetch-or) and takes the frontier back:
 *   the revisions the quiet path passed were bare, so the log (empty: nobody
 *   records) starts after them, and those noted ahead become bare marks in
 *   their slots. Unlocking thaws the word (feed_thaw) if nobody records and
 *   no report waits in the ring; so while anybody records it stays frozen
 *   and every report is locked, as before.
 *   The race with ctx_watch_open: the open freezes the word under the lock
 *   before it reads the frontier and registers. A quiet report's
 *   compare-and-swap comes before that fetch-or (then its revision is bare,
 *   at or before the frontier the watch starts after, or a bare mark it
 *   skips or is refused for, exactly like a bare mark of the locked path)
 *   or fails and takes the lock, behind the open, and records. A report is
 *   made after its change became visible, so a quiet one's change was
 *   visible before ctx_watch_open returned.
 *   The gate (feed_set_gate) holds back only recorded revisions: the quiet
 *   path, and the locked path while nobody records, pass it (a bare
 *   revision delivers nothing).
 *
 * SLOTS
 *   A slot is a uint64_t: 0 (empty), an fevent pointer (malloc'd, so its two
 *   low bits are 0), or rev << 2 | SLOT_SKIP / SLOT_BARE (revisions stay
 *   below 2^62).
 *
 * THE RING, THE FRONTIER AND THE LOG
 *   The feed keeps a ring of `cap` slots (at first twice watch_history
 *   rounded up to a power of two), slot rev & mask standing for revision
 *   rev. The frontier F is the highest revision such that every revision
 *   <= F has been reported; events up to F are delivered, those above it
 *   wait in their slots until the gap below them is reported. The log
 *   [oldest, F] is what watchers read, and what a watch may start from.
 *   Invariants (feed lock):
 *     - every pending report (rev > F) is in its slot, and rev - oldest <
 *       cap: the ring spans the log and every pending report, so placing a
 *       report never overwrites a slot in use;
 *     - every slot holds 0, a pending revision, or a revision in
 *       [oldest, F]: a revision leaving the log leaves its slot;
 *     - for every rev in [oldest, F], slot rev & mask holds rev (an event, a
 *       skip, or a bare mark reported before any watch opened);
 *     - log_bytes (the bytes of its events) <= bytes_limit, and
 *       F + 1 - oldest <= history (watch_history rounded up), each time the
 *       lock is released;
 *     - while no watcher is open and keep is off, the log is empty
 *       (oldest = F + 1);
 *     - last_bare is the highest revision ever marked bare; while a watcher
 *       is open no revision is marked bare.
 *   Only the log is ever evicted, oldest first: past either bound, and when
 *   the last watcher closes (keep off); never for the sake of a pending
 *   report, and pending events are never dropped. Evicted events are
 *   released after the lock (a list in the reporter's wake-up record). A
 *   watch may start from any revision >= oldest and above last_bare: a bare
 *   mark stands for an event nobody recorded, so a watch from at or before
 *   it would miss it (feed_holds refuses it, naming it); a watch from now
 *   on skips the bare marks, all made before it opened.
 *
 *   Reports may arrive in any order. The ring holds a log of `history`
 *   revisions and as many pending ones; a report further ahead (a writer was
 *   descheduled between taking its revision and reporting it while the
 *   others carried on) makes the ring grow, doubling until the report fits.
 *   The new ring is allocated before the lock is taken (the reporter drops
 *   the lock, allocates, and looks again); under the lock the slots are
 *   only moved, and since they span fewer than cap revisions they cannot
 *   collide in a larger ring. The ring keeps its size afterwards (the log's
 *   bounds do not change): memory follows the longest stall, as it must,
 *   since every event after the stalled revision has to be kept. Nothing is
 *   lost and nobody waits for the stalled writer.
 *
 * RECORDED OR BARE
 *   A reporter reads `recording` (watchers open, or keep) without the lock
 *   to decide whether to build the event, and checks again under the lock:
 *   if a watcher opened meanwhile, it drops the lock, builds the event and
 *   looks again, so that no revision is marked bare while a watcher is open.
 *   A watch opened from now on (from_revision 0) skips the bare revisions
 *   still pending when it opens: each was marked before the watch registered,
 *   and a report comes after its change became visible, so the change was
 *   visible before ctx_watch_open returned. A watch from an explicit revision
 *   wants them, and is refused ("compacted") if from_revision <= last_bare.
 *
 *   Out of memory: an event without room for its keys is recorded without
 *   them (as watch.h promises); if even a bare event or a larger ring cannot
 *   be allocated, the reporter retries after a millisecond with no lock
 *   held. Dropping a report instead would stall every later event for good.
 *
 * WATCHERS: A CURSOR INTO THE SHARED LOG
 *   A report places its event and advances the frontier: its work under the
 *   lock does not depend on the number of watchers (but for waking idle
 *   ones, below). A watcher keeps a cursor, the next revision it has to look
 *   at; ctx_watch_next reads forward from it under the feed lock, filtering
 *   by id or prefix itself, and takes a reference to up to BATCH matching
 *   events at a time into a small buffer of its own (so a fast reader takes
 *   the feed lock once per BATCH events, and a lock hold scans at most
 *   SCAN_MAX slots). A watcher lags - gets one CTX_EVENT_LAGGED naming the
 *   first revision it will not deliver, and nothing after it - when
 *     - its cursor fell out of the log (cursor < oldest: the history bounds
 *       evicted what it had not read): it lags at the cursor; or
 *     - the next event it would take is `queue` (watch_queue) or more
 *       revisions behind the frontier: it still delivers the matching events
 *       of the `queue` revisions from that event on, then lags at the
 *       revision after them (lag_at). So a watcher never has more than
 *       `queue` revisions' worth of events to catch up on, as a queue of
 *       `queue` events did before.
 *   Memory is the log's (bounded by watch_history and watch_history_bytes,
 *   whatever the watchers do) plus at most BATCH events per watcher taken
 *   out of it. Writers never wait for a slow reader.
 *
 * WAKE-UPS: ARMED WATCHERS
 *   Each watcher owns an eventfd (nonblocking). It is written only for a
 *   watcher that is armed: one that read everything up to the frontier,
 *   found nothing more, cleared its eventfd, and then (feed lock) saw the
 *   frontier still where its read ended. Armed watchers are on a list
 *   (narmed of them). A report that delivers an event while at most
 *   INLINE_WAKE (2) are armed walks that list and takes off each armed
 *   watcher the event matches: it moves the watcher's cursor to that event
 *   (the revisions in between did not match, or the watcher would have been
 *   taken off earlier), and wakes it after the lock is released. Those woken
 *   are chained through wake_next, each with a reference so that a
 *   concurrent ctx_watch_close cannot free it or reuse its fd number;
 *   `waking` is set while a watcher is on such a chain, and a watcher does
 *   not arm again until it is cleared (the chain link is then free).
 *
 *   THE WAKER. With more armed, a report only notes wake_due (and due_from,
 *   the first revision delivered since) and signals the waker thread if it
 *   sleeps: its work no longer grows with the number of sleeping watchers,
 *   and the eventfd writes - a kernel wake-up each, 15-21% of the writers'
 *   time with 64 watchers - leave the commit path. The waker (started with
 *   the first watch, joined by feed_close) waits WAKER_LINGER_NS (0.1 ms)
 *   once signalled, so that the commits of a burst gather and each sleeping
 *   watcher is woken once for all of them rather than once per commit it
 *   happens to be armed for (with paced writers and 64 watchers, the
 *   writers' CPU per commit rose 26-27% against 37-39% without the wait:
 *   fewer wake-ups preempting them and fewer readers at the feed lock);
 *   a watcher that is awake reads without waiting for it. That wait is the
 *   linger after a pause, and it paces itself while commits stream (round
 *   11): a signal within WAKER_GAP_NS (8 ms) of its last pass makes it wait
 *   twice its last wait, up to WAKER_PACE_NS (2 ms), so that paced writers
 *   committing a burst every millisecond wake each sleeping watcher about
 *   once per 2 ms instead of once per burst (the watchers' CPU per event
 *   halved with 64 of them); a lone commit after a pause is still woken for
 *   within about 0.1 ms (waker_window). Then it takes
 *   the feed lock, looks at each armed watcher's revisions delivered
 *   since its last pass (from max(cursor, due_from)), wakes as above those with a match and those
 *   with more than SCAN_MAX revisions to look at (they look themselves),
 *   moves the cursor of the others past what it looked at, and writes the
 *   fds after the lock. A revision it has not looked at never leaves the
 *   log first: log_trim makes the pass itself before evicting due_from (a
 *   waker descheduled for a whole log would otherwise leave armed watchers
 *   not knowing whether the evicted revisions were theirs). Commits made
 *   while it works need no signal: one pass serves them all. Without the
 *   thread (pthread_create failed) reports wake inline.
 *   So an armed watcher may have events delivered that nobody woke it for
 *   yet. Whoever takes it off the armed list while a pass is due hands it
 *   max(cursor, due_from), the first revision not looked at for it: the
 *   waker, the reader itself, and also a report waking it inline because
 *   the armed fell back to INLINE_WAKE (moving its cursor to that report's
 *   event would skip the revisions in between: round 4's branch lost 64 so
 *   in test_many_reporters). ctx_watch_next does not wait for the waker:
 *   watch_read finds the events (from max(cursor, due_from) while
 *   wake_due), disarms the watcher and makes its fd readable itself
 *   (self_woken).
 *
 *   A reader that catches up arms itself right after handing out its last
 *   event, so its fd is unreadable again as soon as nothing is pending. The
 *   fd may be readable with nothing pending (a spurious wake-up, cleared by
 *   the next ctx_watch_next); it is unreadable with events pending only
 *   between a delivery and the waker's (or the reader's own) wake-up: a
 *   watcher with events pending is armed only in that window, and the
 *   report that gives it one either unarms it (its fd about to be written)
 *   or leaves it to the waker it signalled. A reader that finds new events
 *   when it reaches the frontier keeps reading without touching its fd
 *   (watch_busy): it is not armed, so its fd is still readable. A reader
 *   that has nothing pending but a wake-up of it still in flight (woken by
 *   the waker or a report, fd not yet written) waits for that wake-up to
 *   land before it clears its fd and arms (watch_settle): unarmed, it can
 *   get no new one, and the one in flight is a thread with no lock held
 *   between two statements. Not waiting, it could not arm (the chain link
 *   is in use) and left its fd readable after CTX_NOT_FOUND, which with
 *   the waker happened to a single-threaded caller too.
 *
 * LOCKS (order: watch.lock, then feed.lock; nothing else is taken under
 * either, and no other nesting exists; the quiet word is frozen while
 * feed.lock is held - see QUIET - so the frontier is its holder's)
 *   watch.lock  one watcher's consumer side: its buffer and lag event.
 *               Serialises ctx_watch_next calls on one watch (and
 *               ctx_watch_close's drain); never held across a system call.
 *   feed.lock   the ring, frontier, oldest, last_bare, the byte counters,
 *               the armed list and narmed, the waker's fields (waker_state,
 *               waker_idle, waker_stop, wake_due, due_from; waker_cv waits
 *               on this lock), and each watcher's cursor, lag_at, armed and
 *               wake_next fields. Held to place one report and deliver what
 *               became deliverable (plus the armed walk, for at most
 *               INLINE_WAKE armed), for one read of at most SCAN_MAX slots,
 *               for one waker pass, or to register, arm and unregister a
 *               watcher; never across a system call or user code; nothing is
 *               allocated or freed under it. Two of its fields are also read
 *               without it, by watch_busy: a watcher's `armed` and the
 *               feed's frontier_pub (atomics; see watch_busy).
 *
 * DURABILITY
 *   The feed delivers what it is told; that reports come once durable is the
 *   store's side. Under durability batch a commit is reported when visible,
 *   before the sync that makes it durable, and feed_set_gate holds the
 *   frontier back until that sync is done (see docs/decisions.md).
 */
#include "watch.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

#define DEFAULT_HISTORY       65536u
#define DEFAULT_HISTORY_BYTES ((size_t)64 << 20)
#define DEFAULT_QUEUE         4096u
#define BATCH                 64u      /* events a watcher takes out of the log at once */
#define SCAN_MAX              1024u    /* slots one read looks at under the feed lock */
#define INLINE_WAKE           2u       /* armed watchers a report wakes itself */
#define WAKER_LINGER_NS       100000L  /* the waker's first wait before a pass */
#define WAKER_PACE_NS         2000000L /* its longest, while commits stream */
#define WAKER_GAP_NS          8000000L /* a pause that ends a stream */
#define RECORD_CLASSES        2u       /* pooled event records (see RECORDS): */
#define RECORD_SMALL          128u     /*   the small ones' bytes */
#define RECORD_LARGE          256u     /*   the large ones' bytes */
#define SPARES_SMALL          128u     /* spare small records a thread keeps */
#define SPARES_LARGE          64u      /* spare large records a thread keeps */

/* Slot values besides 0 and an event pointer (see SLOTS). */
#define SLOT_SKIP 1u
#define SLOT_BARE 2u
#define SLOT_TAGS 3u
#define MAX_REV   (((uint64_t)1 << 62) - 1)

typedef struct fevent {
	ctx_event pub; /* first: ctx_event_free's argument is this struct */
	atomic_uint refs;
	uint8_t record; /* 0: malloc'd; else a pooled record of class record - 1
	                   (see RECORDS) */
	size_t idlen;
	size_t bytes;             /* counted in the log: the record's size for one */
	struct fevent *dead_next; /* on a list of evicted events (feed.lock), or of
	                             a thread's spare records */
	/* then: size_t klens[nkeys]; const void *keys[nkeys]; id; key bytes */
} fevent;

struct ctx_watch {
	feed *feed;
	int fd;
	unsigned fork_gen; /* its store's (fork.c) */
	atomic_uint refs;  /* the handle, plus wake-ups in flight */
	bool prefix;
	size_t idlen;
	char *id;

	/* feed.lock */
	uint64_t cursor;   /* the next revision to look at */
	uint64_t lag_at;   /* 0, or the revision it lags at (see WATCHERS) */
	atomic_bool armed; /* written under feed.lock; see watch_busy */
	struct ctx_watch *arm_prev, *arm_next;
	struct ctx_watch *wake_next; /* on a reporter's chain while waking */
	atomic_bool waking;

	/* watch.lock */
	pthread_mutex_t lock;
	fevent *buf[BATCH]; /* taken out of the log: buf[head .. head+count) */
	size_t head, count;
	bool caught_up;  /* the last read reached the frontier */
	bool self_woken; /* a read disarmed it: its fd is to be made readable */
	bool lag_due;    /* after buf, deliver lag_ev */
	bool done;       /* lag_ev was delivered: nothing more */
	fevent *lag_ev;  /* ready for the lag (allocated at open) */
};

struct feed {
	pthread_mutex_t lock;
	uint64_t *ring;                     /* slots */
	uint64_t mask;                      /* cap - 1 */
	uint64_t frontier;                  /* every revision <= frontier was reported */
	atomic_uint_least64_t frontier_pub; /* frontier, for watch_busy */
	uint64_t oldest;                    /* the log: [oldest, frontier] is in the ring */
	uint64_t gate;                      /* deliver no revision above it (feed_set_gate) */
	uint64_t last_bare;                 /* the highest revision marked bare, or 0 */
	size_t log_bytes, log_events;
	size_t pending_bytes, pending_events;
	size_t bytes_limit;
	uint64_t history; /* the log's revision bound (watch_history) */
	uint64_t events_recorded;
	size_t pending_slots; /* slots placed above the frontier (any kind) */
	bool keep;            /* watch_keep_history */
	size_t nwatchers;
	size_t queue;     /* watch_queue: see WATCHERS */
	ctx_watch *armed; /* the armed watchers, linked by arm_next/arm_prev */
	size_t narmed;    /* how many */

	/* The waker (see WAKE-UPS). */
	pthread_t waker;
	pthread_cond_t waker_cv; /* the waker sleeps on it with the feed lock */
	enum { WAKER_NONE, WAKER_STARTING, WAKER_RUNNING, WAKER_FAILED } waker_state;
	bool waker_idle;   /* asleep on waker_cv: a report that sets wake_due signals it */
	bool waker_stop;   /* feed_close */
	bool wake_due;     /* events were delivered with more than INLINE_WAKE armed */
	uint64_t due_from; /* the first of them (wake_due) */
	uint64_t inline_wakes, waker_wakes, waker_passes;
	long linger_ns, pace_ns, gap_ns; /* the window's bounds (fixed) */
	long window_ns;                  /* the waker's wait before its last pass */
	int64_t last_pass_ns;            /* when it ended (the waker's own) */

	/* The quiet path (see QUIET), on a line of its own: written by every
	 * report while nobody watches, read by every reporter. */
	_Alignas(64) atomic_uint_least64_t quiet; /* see QUIET */
	atomic_bool recording;                    /* keep || nwatchers: a hint for reporters */
	uint64_t quiet_window;                    /* how far ahead a quiet report may be (fixed) */
	_Alignas(64) char quiet_end;
};

/* The quiet word: frontier << QUIET_SHIFT | ahead << 1 | QUIET_FROZEN, where
 * bit i of `ahead` stands for revision frontier + 2 + i (reported). */
#define QUIET_FROZEN 1u
#define QUIET_BITS   23u
#define QUIET_SHIFT  (QUIET_BITS + 1)
#define QUIET_AHEAD  (((uint64_t)1 << QUIET_BITS) - 1)
#define QUIET_LIMIT  (((uint64_t)1 << (64 - QUIET_SHIFT)) - ((uint64_t)1 << QUIET_SHIFT))

/* ---- slots ----------------------------------------------------------------------- */

static uint64_t slot_mark(uint64_t rev, unsigned tag)
{
	return rev << 2 | tag;
}

static uint64_t slot_of_event(fevent *e)
{
	return (uint64_t)(uintptr_t)e;
}

static fevent *slot_event(uint64_t v)
{
	return v && !(v & SLOT_TAGS) ? (fevent *)(uintptr_t)v : NULL;
}

/* The revision a slot stands for; 0 for an empty one. */
static uint64_t slot_rev(uint64_t v)
{
	fevent *e = slot_event(v);
	return e ? e->pub.revision : v >> 2;
}

/* ---- events ------------------------------------------------------------------ */

/* ---- records: the pool of small events (see RECORDS) ------------------------- */

static const size_t record_bytes[RECORD_CLASSES] = {RECORD_SMALL, RECORD_LARGE};
static const unsigned spares_max[RECORD_CLASSES] = {SPARES_SMALL, SPARES_LARGE};

/* A thread's spare records of each class, and whether the thread may keep
 * any (its exit frees them: spares_key's destructor). */
typedef struct spares {
	fevent *head[RECORD_CLASSES]; /* linked through dead_next */
	unsigned n[RECORD_CLASSES];   /* <= spares_max */
	enum { SPARES_NEW, SPARES_KEYED, SPARES_OFF } state;
} spares;

static _Thread_local spares thread_spares;
static pthread_key_t spares_key;
static pthread_once_t spares_once = PTHREAD_ONCE_INIT;
static bool spares_keyed;
static atomic_size_t spares_exited; /* records freed by spares_exit, for tests */

/* The thread exits: free its spares; records it releases from now on (in
 * later destructors) are freed at once. */
static void spares_exit(void *arg)
{
	spares *sp = arg;
	sp->state = SPARES_OFF;
	for (unsigned c = 0; c < RECORD_CLASSES; c++) {
		atomic_fetch_add_explicit(&spares_exited, sp->n[c], memory_order_relaxed);
		while (sp->head[c]) {
			fevent *e = sp->head[c];
			sp->head[c] = e->dead_next;
			free(e);
		}
		sp->n[c] = 0;
	}
}

static void spares_key_init(void)
{
	spares_keyed = pthread_key_create(&spares_key, spares_exit) == 0;
}

/* Keep record e (no reference left) as a spare of this thread, or free it. */
static void record_put(fevent *e)
{
	spares *sp = &thread_spares;
	unsigned c = e->record - 1u;
	if (sp->state == SPARES_NEW) {
		pthread_once(&spares_once, spares_key_init);
		sp->state = spares_keyed && pthread_setspecific(spares_key, sp) == 0 ? SPARES_KEYED
		                                                                     : SPARES_OFF;
	}
	if (sp->state != SPARES_KEYED || sp->n[c] >= spares_max[c]) {
		free(e);
		return;
	}
	e->dead_next = sp->head[c];
	sp->head[c] = e;
	sp->n[c]++;
}

/* A record of class c (not zeroed): a spare of this thread, or new. */
static fevent *record_get(unsigned c)
{
	spares *sp = &thread_spares;
	fevent *e = sp->head[c];
	if (!e)
		return malloc(record_bytes[c]);
	sp->head[c] = e->dead_next;
	sp->n[c]--;
	return e;
}

void feed_record_stats(feed_record_info *out)
{
	spares *sp = &thread_spares;
	*out = (feed_record_info){
	    .small_bytes = RECORD_SMALL,
	    .large_bytes = RECORD_LARGE,
	    .small_spares_max = SPARES_SMALL,
	    .large_spares_max = SPARES_LARGE,
	    .small_spares = sp->n[0],
	    .large_spares = sp->n[1],
	    .freed_at_exit = atomic_load_explicit(&spares_exited, memory_order_relaxed),
	};
}

/* Room for an event with its id and keys, its size as counted in the log
 * in *size (the record's size for one): the smallest record it fits in, or
 * its own allocation; NULL without memory (or for sizes past any memory).
 * Only the fevent header is zeroed: fevent_new writes the rest. */
static fevent *fevent_alloc(size_t idlen, size_t nkeys, const size_t *klens, size_t *size_out)
{
	size_t size = sizeof(fevent) + idlen + 1;
	if (nkeys) {
		if (nkeys > (SIZE_MAX / 2 - size) / (sizeof(size_t) + sizeof(void *)))
			return NULL;
		size += nkeys * (sizeof(size_t) + sizeof(void *));
		for (size_t i = 0; i < nkeys; i++) {
			if (klens[i] > SIZE_MAX / 2 - size)
				return NULL;
			size += klens[i];
		}
	}
	unsigned c = 0;
	while (c < RECORD_CLASSES && size > record_bytes[c])
		c++;
	fevent *e = c < RECORD_CLASSES ? record_get(c) : malloc(size);
	if (!e)
		return NULL;
	memset(e, 0, sizeof(*e));
	e->record = c < RECORD_CLASSES ? (uint8_t)(c + 1) : 0;
	*size_out = c < RECORD_CLASSES ? record_bytes[c] : size;
	return e;
}

/* A new event with one reference, or NULL without memory. */
static fevent *fevent_new(ctx_event_kind kind, uint64_t rev, const char *id, size_t idlen,
                          uint64_t version, size_t nkeys, const void *const *keys,
                          const size_t *klens)
{
	if (kind == CTX_EVENT_DROPPED || kind == CTX_EVENT_EXPIRED || kind == CTX_EVENT_LAGGED) {
		version = 0;
		nkeys = 0;
	}
	size_t bytes = 0;
	fevent *e = fevent_alloc(idlen, nkeys, klens, &bytes);
	if (!e)
		return NULL;
	atomic_init(&e->refs, 1);
	e->idlen = idlen;
	e->bytes = bytes;
	e->pub.kind = kind;
	e->pub.revision = rev;
	e->pub.version = version;
	e->pub.nkeys = nkeys;
	char *p = (char *)(e + 1);
	size_t *kl = (size_t *)(void *)p;
	p += nkeys * sizeof(size_t);
	const void **kp = (const void **)(void *)p;
	p += nkeys * sizeof(void *);
	memcpy(p, id, idlen);
	p[idlen] = '\0';
	e->pub.id = p;
	p += idlen + 1;
	for (size_t i = 0; i < nkeys; i++) {
		kl[i] = klens[i];
		if (klens[i])
			memcpy(p, keys[i], klens[i]);
		kp[i] = p;
		p += klens[i];
	}
	e->pub.keys = nkeys ? kp : NULL;
	e->pub.klens = nkeys ? kl : NULL;
	return e;
}

/* An event for a report, whatever memory is left: without its keys if they
 * do not fit, and if not even that, retry after a pause (no lock held). A
 * report must never be dropped: every later revision would wait for it. */
static fevent *fevent_for_report(ctx_event_kind kind, uint64_t rev, const char *id, size_t idlen,
                                 uint64_t version, size_t nkeys, const void *const *keys,
                                 const size_t *klens)
{
	fevent *e = fevent_new(kind, rev, id, idlen, version, nkeys, keys, klens);
	while (!e) {
		e = fevent_new(kind, rev, id, idlen, version, 0, NULL, NULL);
		if (!e)
			nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	return e;
}

static void fevent_retain(fevent *e)
{
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

static void fevent_release(fevent *e)
{
	if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (e->record)
		record_put(e);
	else
		free(e);
}

void ctx_event_free(ctx_event *e)
{
	fevent_release((fevent *)e);
}

/* Put e on a list of events to release once the feed lock is dropped: it
 * hands the ring's reference to the list. */
static void dead_push(fevent **dead, fevent *e)
{
	e->dead_next = *dead;
	*dead = e;
}

static void dead_release(fevent *e)
{
	while (e) {
		fevent *next = e->dead_next;
		fevent_release(e);
		e = next;
	}
}
/* ---- watchers ------------------------------------------------------------------ */

static bool watch_matches(const ctx_watch *w, const fevent *e)
{
	if (w->prefix)
		return e->idlen >= w->idlen && memcmp(e->pub.id, w->id, w->idlen) == 0;
	return e->idlen == w->idlen && memcmp(e->pub.id, w->id, w->idlen) == 0;
}

static void watch_retain(ctx_watch *w)
{
	atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
}

static void watch_release(ctx_watch *w)
{
	if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) != 1)
		return;
	close(w->fd);
	for (size_t i = 0; i < w->count; i++)
		fevent_release(w->buf[(w->head + i) % BATCH]);
	fevent_release(w->lag_ev);
	pthread_mutex_destroy(&w->lock);
	free(w->id);
	free(w);
}

static void watch_signal(ctx_watch *w)
{
	uint64_t one = 1;
	/* Nonblocking; it can only fail when the counter is about to overflow,
	 * and then the fd is readable anyway. */
	ssize_t n = write(w->fd, &one, sizeof(one));
	(void)n;
}

/* Clear the eventfd (EAGAIN: nothing to clear). */
static void watch_unsignal(ctx_watch *w)
{
	uint64_t v;
	ssize_t n = read(w->fd, &v, sizeof(v));
	(void)n;
}

/* ---- the armed list (feed.lock) ------------------------------------------------ */

/* Whether w is armed: exact under feed.lock; see watch_busy otherwise. */
static bool is_armed(const ctx_watch *w)
{
	return atomic_load_explicit(&w->armed, memory_order_acquire);
}

static void arm(feed *f, ctx_watch *w)
{
	atomic_store_explicit(&w->armed, true, memory_order_relaxed);
	f->narmed++;
	w->arm_prev = NULL;
	w->arm_next = f->armed;
	if (f->armed)
		f->armed->arm_prev = w;
	f->armed = w;
}

static void disarm(feed *f, ctx_watch *w)
{
	if (!is_armed(w))
		return;
	if (w->arm_prev)
		w->arm_prev->arm_next = w->arm_next;
	else
		f->armed = w->arm_next;
	if (w->arm_next)
		w->arm_next->arm_prev = w->arm_prev;
	atomic_store_explicit(&w->armed, false, memory_order_release);
	f->narmed--;
}

/* What a reporter does after the lock: wake watchers, release events. */
typedef struct wakeups {
	ctx_watch *wake; /* chained through wake_next, each with a reference */
	fevent *dead;    /* evicted events */
	bool kick;       /* signal the waker */
} wakeups;

/* Take armed watcher w off the armed list, its cursor moved to rev (its
 * next event), to be woken after the lock (feed.lock held). */
static void wake_one(feed *f, ctx_watch *w, uint64_t rev, wakeups *wk)
{
	w->cursor = rev; /* before disarm's release: see watch_busy */
	disarm(f, w);
	atomic_store_explicit(&w->waking, true, memory_order_relaxed);
	watch_retain(w);
	w->wake_next = wk->wake;
	wk->wake = w;
}

/* Where armed watcher w may have events to be woken for (feed.lock held):
 * the revisions delivered since the waker's last pass, from its cursor on
 * (those before were looked at, inline or by a pass). */
static uint64_t waker_from(const feed *f, const ctx_watch *w)
{
	if (!f->wake_due)
		return f->frontier + 1;
	return w->cursor > f->due_from ? w->cursor : f->due_from;
}

/* e was delivered: take off the armed list every watcher it matches, its
 * cursor moved to e, to be woken after the lock. */
static void wake_armed(feed *f, const fevent *e, wakeups *wk)
{
	ctx_watch *next;
	for (ctx_watch *w = f->armed; w; w = next) {
		next = w->arm_next;
		if (e->pub.revision < w->cursor || !watch_matches(w, e))
			continue;
		/* While a pass is due, the revisions from due_from on were not
		 * looked at for w: it reads from there, not from e. */
		wake_one(f, w, f->wake_due ? waker_from(f, w) : e->pub.revision, wk);
		f->inline_wakes++;
	}
}

/* e was delivered with watchers armed: wake those it matches now if they
 * are few (or there is no waker), else leave them to the waker. */
static void wake_for(feed *f, const fevent *e, wakeups *wk)
{
	if (f->narmed <= INLINE_WAKE || f->waker_state != WAKER_RUNNING) {
		wake_armed(f, e, wk);
		return;
	}
	if (!f->wake_due) {
		f->wake_due = true;
		f->due_from = e->pub.revision;
	}
	if (f->waker_idle) {
		f->waker_idle = false;
		wk->kick = true;
	}
}

static bool feed_records(const feed *f);
static void slot_place(feed *f, uint64_t rev, uint64_t v);

/* ---- the quiet path (see QUIET) ---------------------------------------------- */

/* Whether the quiet word is frozen (feed.lock held: only its holders
 * freeze and thaw it, so the bit cannot change under them). */
static bool quiet_frozen(feed *f)
{
	return atomic_load_explicit(&f->quiet, memory_order_relaxed) & QUIET_FROZEN;
}

/* Take the frontier back from the quiet path (feed.lock held): from now on
 * no report advances it without the lock. Revisions the quiet path passed
 * were all bare, so the log stays empty and starts after them; those it
 * noted ahead of the frontier become bare marks in their slots (within the
 * window, so they fit: ring_fits). */
static void feed_freeze(feed *f)
{
	if (quiet_frozen(f))
		return;
	uint64_t w = atomic_fetch_or_explicit(&f->quiet, QUIET_FROZEN, memory_order_acq_rel);
	uint64_t frontier = w >> QUIET_SHIFT;
	uint64_t ahead = w >> 1 & QUIET_AHEAD;
	assert(frontier >= f->frontier && f->oldest == f->frontier + 1 && !f->pending_slots);
	if (frontier != f->frontier) {
		f->frontier = frontier;
		f->oldest = frontier + 1;
		atomic_store_explicit(&f->frontier_pub, frontier, memory_order_release);
	}
	for (uint64_t i = 0; ahead; i++, ahead >>= 1) {
		uint64_t rev = frontier + 2 + i;
		if (ahead & 1)
			slot_place(f, rev, slot_mark(rev, SLOT_BARE));
	}
}

/* Hand the frontier to the quiet path if it may have it (feed.lock held,
 * about to be released): nobody records, and no report waits in the ring
 * (so the log is empty, and the next revision to deliver is frontier + 1). */
static void feed_thaw(feed *f)
{
	if (!quiet_frozen(f) || feed_records(f) || f->pending_slots || f->frontier >= QUIET_LIMIT)
		return;
	assert(f->oldest == f->frontier + 1);
	atomic_store_explicit(&f->quiet, f->frontier << QUIET_SHIFT, memory_order_release);
}

/* The feed lock, with the frontier in its holder's hands. */
static void feed_lock(feed *f)
{
	pthread_mutex_lock(&f->lock);
	feed_freeze(f);
}

static void feed_unlock(feed *f)
{
	feed_thaw(f);
	pthread_mutex_unlock(&f->lock);
}

/* The quiet word after reporting rev, or 0 if rev is for the locked path
 * (see QUIET). */
static uint64_t quiet_next(const feed *f, uint64_t w, uint64_t rev)
{
	uint64_t frontier = w >> QUIET_SHIFT;
	uint64_t ahead = w >> 1 & QUIET_AHEAD;
	if ((w & QUIET_FROZEN) || rev <= frontier || frontier >= QUIET_LIMIT)
		return 0; /* frozen, or reported twice (the locked path says so) */
	uint64_t d = rev - frontier;
	if (d == 1) {
		/* bit j of v stands for frontier + 1 + j: pass its trailing ones */
		uint64_t v = ahead << 1 | 1;
		unsigned t = (unsigned)__builtin_ctzll(~v);
		return (frontier + t) << QUIET_SHIFT | (v >> t >> 1) << 1;
	}
	if (d - 2 >= f->quiet_window || (ahead >> (d - 2) & 1))
		return 0; /* too far ahead, or reported twice */
	return w | (uint64_t)1 << (d - 2) << 1;
}

/* Report rev without the lock if nobody records and rev is at most
 * quiet_window revisions past the frontier's successor: one
 * compare-and-swap on the quiet word. False: take the locked path. */
static bool report_quiet(feed *f, uint64_t rev)
{
	uint64_t w = atomic_load_explicit(&f->quiet, memory_order_relaxed);
	for (;;) {
		uint64_t next = quiet_next(f, w, rev);
		if (!next)
			return false;
		if (atomic_compare_exchange_weak_explicit(&f->quiet, &w, next, memory_order_acq_rel,
		                                          memory_order_relaxed))
			return true;
	}
}

static void lock_feed(feed *f, wakeups *wk)
{
	wk->wake = NULL;
	wk->dead = NULL;
	wk->kick = false;
	feed_lock(f);
}

/* Write the eventfd of each watcher on the chain (no lock held). */
static void wake_chain(ctx_watch *w)
{
	ctx_watch *next;
	for (; w; w = next) {
		next = w->wake_next;
		watch_signal(w);
		atomic_store_explicit(&w->waking, false, memory_order_release);
		watch_release(w);
	}
}

/* Release the feed lock, then signal the waker, wake the collected
 * watchers and release the evicted events. */
static void unlock_and_wake(feed *f, wakeups *wk)
{
	feed_unlock(f);
	if (wk->kick)
		pthread_cond_signal(&f->waker_cv);
	wk->kick = false;
	wake_chain(wk->wake);
	wk->wake = NULL;
	dead_release(wk->dead);
	wk->dead = NULL;
}

/* ---- the waker ----------------------------------------------------------------- */

/* One armed watcher, for the waker (feed.lock held): wake it if a revision
 * delivered since the last pass holds an event it matches (or left the log:
 * it is to lag), or if there are more than SCAN_MAX of them (it looks
 * itself); else move its cursor past them. */
static void waker_look(feed *f, ctx_watch *w, wakeups *wk)
{
	uint64_t rev = waker_from(f, w);
	bool wake = rev <= f->frontier && (rev < f->oldest || f->frontier - rev >= SCAN_MAX);
	for (; !wake && rev <= f->frontier; rev++) {
		uint64_t v = f->ring[rev & f->mask];
		fevent *e = slot_event(v);
		wake = e && slot_rev(v) == rev && watch_matches(w, e);
		if (wake)
			break;
	}
	if (wake) {
		wake_one(f, w, rev, wk);
		f->waker_wakes++;
	} else {
		w->cursor = rev;
	}
}

/* One pass over the armed watchers (feed.lock held): those to wake go on
 * wk's chain. */
static void waker_pass(feed *f, wakeups *wk)
{
	f->waker_passes++;
	ctx_watch *next;
	for (ctx_watch *w = f->armed; w; w = next) {
		next = w->arm_next;
		waker_look(f, w, wk);
	}
	f->wake_due = false;
}

static int64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The waker's wait before its next pass, at `now` (feed.lock held): the
 * linger after a pause of gap_ns or more since its last pass, else twice
 * its last wait, at most pace_ns (see THE WAKER). */
static long waker_window(feed *f, int64_t now)
{
	bool stream = f->last_pass_ns && now - f->last_pass_ns < f->gap_ns;
	long w = stream ? 2 * f->window_ns : f->linger_ns;
	f->window_ns = w > f->pace_ns ? f->pace_ns : w < f->linger_ns ? f->linger_ns : w;
	return f->window_ns;
}

/* The waker: wakes the armed watchers of events delivered while more than
 * INLINE_WAKE were armed, so that a report costs the same whatever the
 * number of sleeping watchers (see WAKE-UPS). */
static void *waker_main(void *arg)
{
	feed *f = arg;
	wakeups wk;
	lock_feed(f, &wk);
	while (!f->waker_stop) {
		if (!f->wake_due) {
			f->waker_idle = true;
			feed_thaw(f); /* the wait releases the lock */
			pthread_cond_wait(&f->waker_cv, &f->lock);
			feed_freeze(f);
			f->waker_idle = false;
			continue;
		}
		/* Let the commits of the moment gather: one pass, and one
		 * wake-up per watcher, for all of them (see THE WAKER). */
		long window = waker_window(f, monotonic_ns());
		feed_unlock(f);
		nanosleep(&(struct timespec){window / 1000000000L, window % 1000000000L}, NULL);
		feed_lock(f);
		if (!f->wake_due)
			continue; /* log_trim made the pass */
		waker_pass(f, &wk);
		feed_unlock(f);
		wake_chain(wk.wake);
		wk.wake = NULL;
		f->last_pass_ns = monotonic_ns();
		feed_lock(f);
	}
	feed_unlock(f);
	return NULL;
}

/* Start the waker with the first watch (no lock held); without it, reports
 * wake every watcher themselves. */
static void waker_start(feed *f)
{
	feed_lock(f);
	bool start = f->waker_state == WAKER_NONE;
	if (start)
		f->waker_state = WAKER_STARTING;
	feed_unlock(f);
	if (!start)
		return;
	int err = pthread_create(&f->waker, NULL, waker_main, f);
	feed_lock(f);
	f->waker_state = err ? WAKER_FAILED : WAKER_RUNNING;
	feed_unlock(f);
}

/* Stop the waker (feed_close; no watch is open). */
static void waker_join(feed *f)
{
	feed_lock(f);
	bool running = f->waker_state == WAKER_RUNNING;
	f->waker_stop = true;
	feed_unlock(f);
	if (!running)
		return;
	pthread_cond_signal(&f->waker_cv);
	pthread_join(f->waker, NULL);
}

/* ---- the feed ------------------------------------------------------------------ */

ctx_status feed_open(uint64_t next_rev, const feed_config *cfg, feed **out)
{
	feed_config c = cfg ? *cfg : (feed_config){0};
	if (!c.history)
		c.history = DEFAULT_HISTORY;
	if (!c.history_bytes)
		c.history_bytes = DEFAULT_HISTORY_BYTES;
	if (!c.queue)
		c.queue = DEFAULT_QUEUE;
	if (c.history > ((size_t)1 << 40) || c.queue > SIZE_MAX / 4)
		return ctx_fail(CTX_INVALID, "watch_history %zu or watch_queue %zu too large",
		                c.history, c.queue);
	if (next_rev > MAX_REV)
		return ctx_fail(CTX_INVALID, "revision %llu past the feed's range",
		                (unsigned long long)next_rev);
	size_t history = 1;
	while (history < c.history)
		history <<= 1;
	size_t cap = 2 * history; /* the log, and as many pending reports */
	feed *f = aligned_alloc(64, (sizeof(*f) + 63) & ~(size_t)63);
	if (f)
		memset(f, 0, sizeof(*f));
	uint64_t *ring = calloc(cap, sizeof(*ring));
	if (!f || !ring) {
		free(f);
		free(ring);
		return ctx_fail(CTX_NOMEM, "no memory for a watch history of %zu events", cap);
	}
	ctx_mutex_init(&f->lock);
	pthread_cond_init(&f->waker_cv, NULL);
	f->ring = ring;
	f->mask = cap - 1;
	f->history = history;
	f->frontier = next_rev ? next_rev - 1 : 0;
	atomic_init(&f->frontier_pub, f->frontier);
	atomic_init(&f->quiet, f->frontier << QUIET_SHIFT | QUIET_FROZEN); /* thawed by an unlock */
	f->quiet_window = cap - 1 < QUIET_BITS ? cap - 1 : QUIET_BITS;
	f->gate = UINT64_MAX;
	f->oldest = f->frontier + 1;
	f->bytes_limit = c.history_bytes;
	f->keep = c.keep_history;
	atomic_init(&f->recording, c.keep_history);
	f->queue = c.queue;
	f->linger_ns = c.wake_linger_ns > 0 ? c.wake_linger_ns : WAKER_LINGER_NS;
	f->pace_ns = c.wake_pace_ns > 0 ? c.wake_pace_ns : WAKER_PACE_NS;
	f->gap_ns = c.wake_gap_ns > 0 ? c.wake_gap_ns : WAKER_GAP_NS;
	if (f->pace_ns < f->linger_ns)
		f->pace_ns = f->linger_ns;
	*out = f;
	return CTX_OK;
}

void feed_stop(feed *f)
{
	if (f)
		waker_join(f);
}

void feed_close(feed *f)
{
	if (!f)
		return;
	waker_join(f);
	for (uint64_t i = 0; i <= f->mask; i++)
		fevent_release(slot_event(f->ring[i]));
	pthread_cond_destroy(&f->waker_cv);
	pthread_mutex_destroy(&f->lock);
	free(f->ring);
	free(f);
}

/* The oldest revision a watch may start from (feed.lock held). */
static uint64_t history_start(const feed *f)
{
	uint64_t start = f->last_bare + 1 > f->oldest ? f->last_bare + 1 : f->oldest;
	return start > f->frontier + 1 ? f->frontier + 1 : start;
}

void feed_get_stats(feed *f, feed_stats *out)
{
	feed_lock(f);
	*out = (feed_stats){
	    .frontier = f->frontier,
	    .oldest = history_start(f),
	    .history_events = f->log_events,
	    .history_bytes = f->log_bytes,
	    .history_bytes_limit = f->bytes_limit,
	    .pending_events = f->pending_events,
	    .pending_bytes = f->pending_bytes,
	    .ring_slots = (size_t)(f->mask + 1),
	    .events_recorded = f->events_recorded,
	    .armed_watchers = f->narmed,
	    .inline_wakes = f->inline_wakes,
	    .waker_wakes = f->waker_wakes,
	    .waker_passes = f->waker_passes,
	    .waker_window_ns = f->waker_passes ? f->window_ns : 0,
	    .waker_busy = f->wake_due || (f->waker_state == WAKER_RUNNING && !f->waker_idle),
	};
	feed_unlock(f);
}

/* Whether events are recorded now: a watcher is open, or keep is set. */
static bool feed_records(const feed *f)
{
	return f->keep || f->nwatchers > 0;
}

/* Take the revisions [oldest, to) out of the log (to <= frontier + 1);
 * their events go to wk's dead list. Before a revision the waker has not
 * looked at yet (from due_from on) leaves, the pass is made here: a waker
 * that fell a whole log behind (descheduled on a busy machine) must not
 * leave an armed watcher to guess whether the evicted revisions held its
 * events (it would have to lag). */
static void log_trim(feed *f, uint64_t to, wakeups *wk)
{
	for (; f->oldest < to; f->oldest++) {
		if (f->wake_due && f->oldest >= f->due_from)
			waker_pass(f, wk);
		uint64_t *slot = &f->ring[f->oldest & f->mask];
		if (slot_rev(*slot) != f->oldest)
			continue;
		fevent *e = slot_event(*slot);
		if (e) {
			f->log_bytes -= e->bytes;
			f->log_events--;
			dead_push(&wk->dead, e);
		}
		*slot = 0;
	}
}

/* Evict from the log what its bounds no longer allow. */
static void log_bound(feed *f, wakeups *wk)
{
	if (!feed_records(f))
		log_trim(f, f->frontier + 1, wk);
	if (f->frontier + 1 - f->oldest > f->history)
		log_trim(f, f->frontier + 1 - f->history, wk);
	while (f->log_bytes > f->bytes_limit)
		log_trim(f, f->oldest + 1, wk);
}

/* Put the pending report v for rev into its slot, empty since the ring
 * spans [oldest, rev] (ring_fits). */
static void slot_place(feed *f, uint64_t rev, uint64_t v)
{
	uint64_t *slot = &f->ring[rev & f->mask];
	assert(*slot == 0);
	*slot = v;
	f->pending_slots++;
	fevent *e = slot_event(v);
	if (e) {
		f->pending_bytes += e->bytes;
		f->pending_events++;
		f->events_recorded++;
	} else if ((v & SLOT_TAGS) == SLOT_BARE && rev > f->last_bare) {
		f->last_bare = rev;
	}
}

/* Move the slots into new_ring, of new_cap slots (at least twice the old
 * size: no two revisions can meet in one slot). */
static void ring_grow(feed *f, uint64_t *new_ring, uint64_t new_cap)
{
	for (uint64_t i = 0; i <= f->mask; i++) {
		uint64_t v = f->ring[i];
		if (v)
			new_ring[slot_rev(v) & (new_cap - 1)] = v;
	}
	free(f->ring);
	f->ring = new_ring;
	f->mask = new_cap - 1;
}

/* calloc that waits for memory (no lock held). */
static void *calloc_retry(size_t n, size_t size)
{
	void *p;
	while (!(p = calloc(n, size)))
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	return p;
}

/* Advance the frontier over every contiguous reported revision, moving each
 * event into the log and waking the armed watchers it matches, then bound
 * the log. */
static void advance(feed *f, wakeups *wk)
{
	for (;;) {
		uint64_t rev = f->frontier + 1;
		uint64_t v = f->ring[rev & f->mask];
		if (!v || slot_rev(v) != rev || (rev > f->gate && feed_records(f)))
			break; /* unrecorded revisions pass the gate: see QUIET */
		f->frontier = rev;
		f->pending_slots--;
		fevent *e = slot_event(v);
		if (e) {
			f->pending_bytes -= e->bytes;
			f->pending_events--;
			f->log_bytes += e->bytes;
			f->log_events++;
			if (f->armed)
				wake_for(f, e, wk);
		}
	}
	atomic_store_explicit(&f->frontier_pub, f->frontier, memory_order_release);
	log_bound(f, wk);
}

/* Reports further ahead of the frontier than this are a caller's bug. */
#define MAX_AHEAD ((uint64_t)1 << 32)

/* One report, as feed_record or feed_skip received it. */
typedef struct report {
	uint64_t rev;
	bool skip;
	ctx_event_kind kind;
	const char *id;
	size_t idlen;
	uint64_t version;
	size_t nkeys;
	const void *const *keys;
	const size_t *klens;
} report;

static fevent *report_event(const report *r)
{
	return fevent_for_report(r->kind, r->rev, r->id, r->idlen, r->version, r->nkeys, r->keys,
	                         r->klens);
}

/* Whether rev can be placed in the ring as it is (or is to be ignored). */
static bool ring_fits(const feed *f, uint64_t rev)
{
	return rev <= f->frontier || rev - f->oldest <= f->mask || rev - f->frontier > MAX_AHEAD;
}

/* Take the feed lock with the ring large enough for r and, if events are
 * recorded, r's event built in *e (both made with the lock dropped). */
static void lock_for_report(feed *f, const report *r, fevent **e, wakeups *wk)
{
	uint64_t *bigger = NULL;
	uint64_t bigger_cap = 0;
	for (;;) {
		lock_feed(f, wk);
		uint64_t cap = f->mask + 1;
		if (!ring_fits(f, r->rev)) {
			if (bigger_cap > r->rev - f->oldest && bigger_cap >= 2 * cap) {
				ring_grow(f, bigger, bigger_cap);
				bigger = NULL;
			} else {
				uint64_t want = cap * 2;
				while (want <= r->rev - f->oldest)
					want *= 2;
				unlock_and_wake(f, wk); /* nothing to wake yet */
				free(bigger);
				bigger = calloc_retry((size_t)want, sizeof(*bigger));
				bigger_cap = want;
				continue;
			}
		}
		if (!r->skip && !*e && feed_records(f)) {
			unlock_and_wake(f, wk); /* a watcher opened meanwhile */
			*e = report_event(r);
			continue;
		}
		break;
	}
	free(bigger);
}

bool feed_recording(const feed *f)
{
	return atomic_load_explicit(&((feed *)f)->recording, memory_order_relaxed);
}

static void feed_report(feed *f, const report *r)
{
	fevent *e = NULL;
	if (!r->skip && atomic_load_explicit(&f->recording, memory_order_relaxed))
		e = report_event(r);
	else if (report_quiet(f, r->rev))
		return;
	wakeups wk;
	lock_for_report(f, r, &e, &wk);
	uint64_t rev = r->rev;
	if (rev <= f->frontier || rev - f->frontier > MAX_AHEAD || rev > MAX_REV ||
	    slot_rev(f->ring[rev & f->mask]) == rev) {
		/* Reported twice, or absurdly far ahead: a bug in the caller. */
		unlock_and_wake(f, &wk);
		fevent_release(e);
		return;
	}
	uint64_t v = e ? slot_of_event(e) : slot_mark(rev, r->skip ? SLOT_SKIP : SLOT_BARE);
	slot_place(f, rev, v);
	advance(f, &wk);
	unlock_and_wake(f, &wk);
}

void feed_record(feed *f, uint64_t rev, ctx_event_kind kind, const char *id, size_t idlen,
                 uint64_t version, size_t nkeys, const void *const *keys, const size_t *klens)
{
	report r = {rev, false, kind, id, idlen, version, nkeys, keys, klens};
	feed_report(f, &r);
}

void feed_set_gate(feed *f, uint64_t rev)
{
	wakeups wk;
	lock_feed(f, &wk);
	if (f->gate == UINT64_MAX || rev > f->gate) {
		f->gate = rev;
		advance(f, &wk);
	}
	unlock_and_wake(f, &wk);
}

bool feed_report_bare(feed *f, uint64_t rev)
{
	/* As feed_report decides: a reporter that saw `recording` clear
	 * reports bare (see QUIET for the race with ctx_watch_open). */
	return !atomic_load_explicit(&f->recording, memory_order_relaxed) && report_quiet(f, rev);
}

void feed_skip(feed *f, uint64_t rev)
{
	report r = {.rev = rev, .skip = true};
	feed_report(f, &r);
}

/* ---- watches ------------------------------------------------------------------- */

static ctx_status watch_new(feed *f, const char *id, size_t idlen, bool prefix, ctx_watch **out)
{
	ctx_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return ctx_fail(CTX_NOMEM, "no memory for a watch");
	w->feed = f;
	w->fd = -1;
	atomic_init(&w->refs, 1);
	atomic_init(&w->waking, false);
	atomic_init(&w->armed, false);
	w->prefix = prefix;
	w->idlen = idlen;
	w->id = malloc(idlen + 1);
	w->lag_ev = fevent_new(CTX_EVENT_LAGGED, 0, id, idlen, 0, 0, NULL, NULL);
	if (!w->id || !w->lag_ev) {
		fevent_release(w->lag_ev);
		free(w->id);
		free(w);
		return ctx_fail(CTX_NOMEM, "no memory for a watch");
	}
	memcpy(w->id, id, idlen);
	w->id[idlen] = '\0';
	w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->fd < 0) {
		int e = errno;
		ctx_status st = ctx_fail(CTX_IO, "eventfd for a watch: %s", strerror(e));
		fevent_release(w->lag_ev);
		free(w->id);
		free(w);
		errno = e;
		return st;
	}
	ctx_mutex_init(&w->lock);
	*out = w;
	return CTX_OK;
}

/* w lags at rev: after the events it holds, LAGGED naming rev. */
static void watch_lag(ctx_watch *w, uint64_t rev)
{
	w->lag_due = true;
	w->lag_ev->pub.revision = rev;
	w->lag_ev->pub.resume_from = rev;
}

/* Read forward from w's cursor into its empty buffer (watch.lock, or w not
 * yet published, and feed.lock held): at most BATCH matching events, at
 * most SCAN_MAX slots looked at. Notes a lag (see WATCHERS), and whether
 * the read reached the frontier. An armed watcher has nothing to read. */
static void watch_read(feed *f, ctx_watch *w)
{
	if (is_armed(w)) {
		/* Events may be delivered that the waker has not woken it for
		 * yet: it takes them itself, and makes its fd readable. */
		uint64_t from = waker_from(f, w);
		w->caught_up = from > f->frontier;
		if (w->caught_up)
			return;
		disarm(f, w);
		w->cursor = from;
		w->self_woken = true;
	}
	uint64_t rev = w->cursor;
	for (size_t n = 0; rev <= f->frontier && w->count < BATCH && n < SCAN_MAX; rev++, n++) {
		if (rev < f->oldest || (w->lag_at && rev >= w->lag_at)) {
			watch_lag(w, rev < f->oldest ? rev : w->lag_at);
			w->cursor = rev;
			return;
		}
		uint64_t v = f->ring[rev & f->mask];
		fevent *e = slot_event(v);
		if (!e || slot_rev(v) != rev || !watch_matches(w, e))
			continue;
		if (!w->lag_at && f->frontier - rev >= f->queue)
			w->lag_at = rev + f->queue;
		fevent_retain(e);
		w->buf[(w->head + w->count++) % BATCH] = e;
	}
	w->cursor = rev;
	w->caught_up = rev > f->frontier;
}

/* The next event for the caller (watch.lock held), read from the log when
 * the buffer is empty; NULL if none is pending. *idle: nothing more is
 * pending after it. */
static fevent *watch_take(ctx_watch *w, bool *idle)
{
	feed *f = w->feed;
	while (!w->count && !w->lag_due && !w->done) {
		feed_lock(f);
		watch_read(f, w);
		feed_unlock(f);
		if (w->caught_up)
			break;
	}
	fevent *e = NULL;
	if (w->count) {
		e = w->buf[w->head];
		w->head = (w->head + 1) % BATCH;
		w->count--;
	} else if (w->lag_due) {
		e = w->lag_ev;
		w->lag_ev = NULL;
		w->lag_due = false;
		w->done = true;
	}
	*idle = !w->count && !w->lag_due && (w->caught_up || w->done);
	return e;
}

/* Whether w, neither armed nor done, has something to read: then its fd is
 * readable (or about to be, by the reporter that disarmed it), since only
 * watch_rest clears it, and makes it readable again unless it arms.
 * Without the feed lock (it is taken once per look at the frontier by
 * every reader, and the writers wait for it): w->lock holds count,
 * lag_due and done; `armed` read false can become true only by w's reader,
 * which holds w->lock, and the cursor is then written only under w->lock
 * (wake_one writes it before disarm's release); frontier_pub is the
 * frontier of the last advance, never above the real one. So `busy` is
 * exact, and a stale `not busy` sends the caller to watch_rest's exact
 * check under the feed lock. */
static bool watch_busy(ctx_watch *w)
{
	feed *f = w->feed;
	pthread_mutex_lock(&w->lock);
	bool busy = !w->done && !is_armed(w) &&
	            (w->count || w->lag_due ||
	             w->cursor <= atomic_load_explicit(&f->frontier_pub, memory_order_acquire));
	pthread_mutex_unlock(&w->lock);
	return busy;
}

/* Wait until no wake-up of w is in flight (its eventfd written, `waking`
 * cleared), so that the fd cleared next stays clear. w is not armed (or is
 * about to be disarmed with an event pending), so no new wake-up starts
 * meanwhile; the one in flight is a thread between two statements with no
 * lock held (wake_chain). */
static void watch_settle(ctx_watch *w)
{
	while (atomic_load_explicit(&w->waking, memory_order_acquire))
		sched_yield();
}

/* w has nothing pending: clear its eventfd, then arm it, unless something
 * arrived meanwhile or a wake-up of it is still in flight; then make the fd
 * readable again and return false. A reader that keeps finding new events
 * when it reaches the frontier (the writers are ahead) returns false at
 * once, without the two system calls (watch_busy). */
static bool watch_rest(ctx_watch *w)
{
	if (watch_busy(w))
		return false;
	feed *f = w->feed;
	watch_settle(w);
	watch_unsignal(w);
	pthread_mutex_lock(&w->lock);
	feed_lock(f);
	bool rest = w->done || is_armed(w);
	if (!rest && !w->count && !w->lag_due && w->cursor > f->frontier &&
	    !atomic_load_explicit(&w->waking, memory_order_acquire)) {
		arm(f, w);
		rest = true;
	}
	feed_unlock(f);
	pthread_mutex_unlock(&w->lock);
	if (!rest)
		watch_signal(w);
	return rest;
}

/* Whether the feed holds every event from `from` on (feed.lock held); if
 * not, the error. */
static ctx_status feed_holds(const feed *f, uint64_t from)
{
	if (from < f->oldest)
		return ctx_fail(CTX_NOT_FOUND,
		                "revision %llu is compacted: the watch history starts at %llu",
		                (unsigned long long)from, (unsigned long long)history_start(f));
	if (from <= f->last_bare)
		return ctx_fail(CTX_NOT_FOUND,
		                "revision %llu is compacted: revision %llu was committed while "
		                "no watch was open (see watch_keep_history)",
		                (unsigned long long)from, (unsigned long long)f->last_bare);
	return CTX_OK;
}

ctx_status feed_watch_open(feed *f, const char *id, bool prefix, uint64_t from_revision,
                           ctx_watch **out)
{
	if (!f || !out)
		return ctx_fail(CTX_INVALID, "NULL store or output for a watch");
	if (!id && prefix)
		id = "";
	size_t idlen = 0;
	if (!prefix || (id && *id)) {
		ctx_status st = ctx_check_id(id, &idlen);
		if (st != CTX_OK)
			return st;
	}
	ctx_watch *w = NULL;
	ctx_status st = watch_new(f, id, idlen, prefix, &w);
	if (st != CTX_OK)
		return st;
	waker_start(f);

	feed_lock(f);
	if (from_revision == 0) {
		w->cursor = f->frontier + 1; /* pending bare revisions are skipped */
	} else if ((st = feed_holds(f, from_revision)) != CTX_OK) {
		feed_unlock(f);
		watch_release(w);
		return st;
	} else {
		w->cursor = from_revision;
	}
	f->nwatchers++;
	atomic_store_explicit(&f->recording, true, memory_order_relaxed);
	watch_read(f, w); /* the replay, if from an earlier revision */
	bool pending = w->count || w->lag_due || !w->caught_up;
	if (!pending)
		arm(f, w);
	feed_unlock(f);

	if (pending)
		watch_signal(w);
	*out = w;
	return CTX_OK;
}

ctx_status ctx_watch_open(ctx_store *s, const char *id, bool prefix, uint64_t from_revision,
                          ctx_watch **out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!s)
		return ctx_fail(CTX_INVALID, "NULL store");
	ctx_status st = feed_watch_open(s->feed, id, prefix, from_revision, out);
	if (st == CTX_OK)
		(*out)->fork_gen = s->fork_gen;
	return st;
}

/* Whether w was opened before this process forked (fork.c). */
static inline bool watch_inherited(const ctx_watch *w)
{
	return __builtin_expect(
	    w->fork_gen != atomic_load_explicit(&fork_generation, memory_order_relaxed), 0);
}

int ctx_watch_fd(const ctx_watch *w)
{
	return w ? w->fd : -1;
}

/* The next pending event, or NULL (the body of ctx_watch_next, without
 * its error message). */
static ctx_event *watch_next(ctx_watch *w)
{
	for (int tries = 0;; tries++) {
		bool idle;
		pthread_mutex_lock(&w->lock);
		fevent *e = watch_take(w, &idle);
		bool signal = w->self_woken;
		w->self_woken = false;
		pthread_mutex_unlock(&w->lock);
		if (signal)
			watch_signal(w); /* it disarmed itself with events pending */
		if (e) {
			if (idle)
				watch_rest(w); /* the fd is unreadable again at once */
			return &e->pub;
		}
		/* Nothing: rest, unless events slipped in (then look once more;
		 * the fd stays readable if they are not taken). */
		if (watch_rest(w) || tries)
			return NULL;
	}
}

ctx_status ctx_watch_next(ctx_watch *w, ctx_event **out)
{
	if (w && watch_inherited(w))
		return fork_refuse();
	if (!w || !out)
		return ctx_fail(CTX_INVALID, "NULL watch or output");
	ctx_event *e = watch_next(w);
	if (!e)
		return ctx_fail(CTX_NOT_FOUND, "no event pending");
	*out = e; /* outputs are untouched on failure */
	return CTX_OK;
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The clock is read only once the first look found nothing: a reader that
 * keeps up with busy writers finds an event pending nearly every call. */
ctx_status ctx_watch_wait(ctx_watch *w, int timeout_ms, ctx_event **out)
{
	if (w && watch_inherited(w))
		return fork_refuse();
	if (!w || !out)
		return ctx_fail(CTX_INVALID, "NULL watch or output");
	int64_t deadline = -1;
	for (;;) {
		ctx_event *e = watch_next(w);
		if (e) {
			*out = e;
			return CTX_OK;
		}
		int wait = -1;
		if (timeout_ms >= 0) {
			if (deadline < 0)
				deadline = monotonic_ms() + timeout_ms;
			int64_t left = deadline - monotonic_ms();
			if (left <= 0)
				return ctx_fail(CTX_NOT_FOUND, "no event within %d ms", timeout_ms);
			wait = left > 1000000 ? 1000000 : (int)left;
		}
		struct pollfd p = {.fd = w->fd, .events = POLLIN};
		if (poll(&p, 1, wait) < 0 && errno != EINTR)
			return ctx_fail(CTX_IO, "poll on a watch: %s", strerror(errno));
	}
}

void ctx_watch_close(ctx_watch *w)
{
	if (w && watch_inherited(w))
		return; /* (fork.c: its feed is the parent's) */
	if (!w)
		return;
	feed *f = w->feed;
	wakeups wk;
	lock_feed(f, &wk);
	disarm(f, w);
	f->nwatchers--;
	if (!feed_records(f)) {
		atomic_store_explicit(&f->recording, false, memory_order_relaxed);
		log_bound(f, &wk); /* nobody left to want the log */
	}
	unlock_and_wake(f, &wk);
	/* No report reaches it now; wake-ups in flight hold references. */
	pthread_mutex_lock(&w->lock);
	while (w->count) {
		fevent_release(w->buf[w->head]);
		w->head = (w->head + 1) % BATCH;
		w->count--;
	}
	pthread_mutex_unlock(&w->lock);
	watch_release(w);
}
