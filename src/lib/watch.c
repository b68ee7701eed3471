/*
 * watch.c - the change feed and the watches served from it.
 *
 * EVENTS
 *   Every revision is reported once, as an event (feed_record) or as a skip
 *   (feed_skip). While anybody may want it - a watcher is open, or the store
 *   keeps history for later watches (watch_keep_history) - a record is built
 *   completely, one malloc holding the public ctx_event, the id and a copy of
 *   the keys, before any lock is taken. Events are immutable once built and
 *   reference counted: the ring holds one reference and each watcher queue
 *   that received the event holds one, which ctx_watch_next hands to the
 *   caller (ctx_event_free drops it).
 *
 *   Otherwise nothing is copied and nothing allocated: the revision is
 *   marked in its slot as "bare" (reported, event not recorded). A skip is
 *   always a mark. So a revision always has exactly one slot value standing
 *   for it, and nobody watching costs one short critical section per
 *   revision and no memory that grows.
 *
 * SLOTS
 *   A slot is a uint64_t: 0 (empty), an fevent pointer (malloc'd, so its two
 *   low bits are 0), or rev << 2 | SLOT_SKIP / SLOT_BARE (revisions stay
 *   below 2^62).
 *
 * THE RING, THE FRONTIER AND THE HISTORY
 *   The feed keeps a ring of `cap` slots (watch_history rounded up to a power
 *   of two), slot rev & mask standing for revision rev. The frontier F is the
 *   highest revision such that every revision <= F has been reported; events
 *   up to F are delivered, those above it wait in their slots until the gap
 *   below them is reported. The history [oldest, F] is what a watch may start
 *   from. Invariants (feed lock):
 *     - every pending report (rev > F) is in its slot: rev <= F + cap;
 *     - every slot holds 0, a pending revision, or a revision in
 *       [oldest, F]: a revision leaving the history leaves its slot;
 *     - for every rev in [oldest, F], slot rev & mask holds rev as an event
 *       or a skip, never as a bare mark: the history has no hole;
 *     - history_bytes (the bytes of its events) <= history_bytes_limit, and
 *       F + 1 - oldest <= cap, each time the lock is released;
 *     - while no watcher is open and keep is off, the history is empty
 *       (oldest = F + 1);
 *     - last_bare is the highest revision ever marked bare; while a watcher
 *       is open no revision is marked bare.
 *   Only the history is ever evicted, oldest first: past either bound, when
 *   a pending report needs the slot of a delivered revision, when a bare
 *   revision is delivered (the history cannot reach over it), and when the
 *   last watcher closes (keep off). Pending events are never dropped.
 *   Evicted events are released after the lock (a list in the delivery's
 *   wake-up buffer).
 *
 *   Reports may arrive in any order. One that lands more than cap ahead of
 *   the frontier (a writer was descheduled between taking its revision and
 *   reporting it while the others carried on) would overwrite an undelivered
 *   event: the ring grows instead, doubling until the report fits. The new
 *   ring is allocated before the lock is taken (the reporter drops the lock,
 *   allocates, and looks again); under the lock the slots are only moved,
 *   and by the second invariant they cannot collide in a ring twice as
 *   large. The ring keeps its size afterwards (so the revision bound of the
 *   history grows with it; the byte bound does not): memory follows the
 *   longest stall, as it must, since every event after the stalled revision
 *   has to be kept. Nothing is lost and nobody waits for the stalled writer.
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
 * WATCHERS
 *   A watcher has a bounded queue (watch_queue events, plus one slot kept
 *   for the CTX_EVENT_LAGGED event, which is allocated when the watch opens
 *   so that lagging never needs memory). Delivery appends under the
 *   watcher's lock; when the queue is full, or cannot grow, the watcher gets
 *   LAGGED naming the first revision it missed and nothing afterwards:
 *   writers never wait for a slow reader. A lagged watcher stays open (and
 *   keeps events recorded) until closed. A watch that starts from an earlier
 *   revision is filled from the ring under the feed lock, so that replay and
 *   live delivery meet with no gap and no duplicate.
 *
 * WAKE-UPS
 *   Each watcher owns an eventfd (nonblocking), written when its queue goes
 *   from empty to non-empty. Writes happen after the feed lock is released:
 *   delivery collects the watchers to wake (each at most once per report,
 *   each with a reference so that a concurrent ctx_watch_close cannot free it
 *   or reuse its fd number) into a buffer sized, before the lock, by the
 *   number of watchers; only if that buffer cannot be allocated does a wake-up
 *   happen under the lock. The consumer reads the eventfd when it empties the
 *   queue, then looks at the queue again and writes the eventfd itself if an
 *   event slipped in meanwhile: the fd may be readable with nothing pending
 *   (a spurious wake-up, cleared by the next ctx_watch_next), but never
 *   unreadable with events pending.
 *
 * LOCKS (order: feed.lock, then watch.lock; nothing else is taken under
 * either, and no other nesting exists)
 *   feed.lock   the ring, frontier, oldest, last_bare, the byte counters,
 *               the watcher list, and each watcher's lagged and sig_seq
 *               fields. Held to place one report and deliver what became
 *               deliverable, or to register, replay and unregister a
 *               watcher; never across a system call (but for the
 *               out-of-memory wake-up fallback above) or user code. The only
 *               allocation under it is a watcher queue doubling (amortised;
 *               if it fails, the watcher lags); nothing is freed under it.
 *   watch.lock  one watcher's queue. Taken by delivery (under feed.lock) and
 *               by the consumer (alone), never across a system call.
 *
 * DURABILITY
 *   The feed delivers what it is told; that reports come once durable is the
 *   store's side. Under durability batch a commit is reported when visible,
 *   before the sync that makes it durable (see docs/decisions.md).
 */
#include "watch.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

#define DEFAULT_HISTORY 65536u
#define DEFAULT_HISTORY_BYTES ((size_t)64 << 20)
#define DEFAULT_QUEUE 4096u
#define FIRST_QUEUE_CAP 16u
#define LOCAL_SIGNALS 16u

/* Slot values besides 0 and an event pointer (see SLOTS). */
#define SLOT_SKIP 1u
#define SLOT_BARE 2u
#define SLOT_TAGS 3u
#define MAX_REV   (((uint64_t)1 << 62) - 1)

typedef struct fevent {
	ctx_event pub; /* first: ctx_event_free's argument is this struct */
	atomic_uint refs;
	size_t idlen;
	size_t bytes;             /* the allocation, counted in the history */
	struct fevent *dead_next; /* on a list of evicted events (feed.lock) */
	/* then: size_t klens[nkeys]; const void *keys[nkeys]; id; key bytes */
} fevent;

struct ctx_watch {
	feed *feed;
	int fd;
	atomic_uint refs; /* the handle, plus wake-ups in flight */
	bool prefix;
	size_t idlen;
	char *id;
	uint64_t from; /* deliver revisions >= from */

	/* feed.lock */
	struct ctx_watch *prev, *next;
	bool lagged;
	uint64_t sig_seq; /* the report that last chose to wake it */

	/* watch.lock */
	pthread_mutex_t lock;
	fevent **q; /* circular: q[(head + i) % cap], i < count */
	size_t qcap, qhead, qcount;
	fevent *lag_ev; /* ready for the lag; NULL once queued */
};

struct feed {
	pthread_mutex_t lock;
	uint64_t *ring;     /* slots */
	uint64_t mask;      /* cap - 1 */
	uint64_t frontier;  /* every revision <= frontier was reported */
	uint64_t oldest;    /* history: [oldest, frontier] is in the ring */
	uint64_t gate;      /* deliver no revision above it (feed_set_gate) */
	uint64_t last_bare; /* the highest revision marked bare, or 0 */
	size_t history_bytes, history_events;
	size_t pending_bytes, pending_events;
	size_t bytes_limit;
	uint64_t events_recorded;
	bool keep;             /* watch_keep_history */
	atomic_bool recording; /* keep || nwatchers: a hint for reporters */
	ctx_watch *watchers;
	size_t nwatchers;
	size_t queue;
	uint64_t report_seq;
};

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

/* Room for an event with its id and keys, zeroed, its size in *size; NULL
 * without memory (or for sizes past any memory). */
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
	*size_out = size;
	return calloc(1, size);
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
static fevent *fevent_for_report(ctx_event_kind kind, uint64_t rev, const char *id,
                                 size_t idlen, uint64_t version, size_t nkeys,
                                 const void *const *keys, const size_t *klens)
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
	if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
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

/* ---- watcher queues (watch.lock) -------------------------------------------- */

static void q_put(ctx_watch *w, fevent *e)
{
	w->q[(w->qhead + w->qcount) % w->qcap] = e;
	w->qcount++;
}

static fevent *q_take(ctx_watch *w)
{
	fevent *e = w->q[w->qhead];
	w->qhead = (w->qhead + 1) % w->qcap;
	w->qcount--;
	return e;
}

/* Double the queue's room, up to queue + 1. False without memory. */
static bool q_grow(ctx_watch *w, size_t limit)
{
	size_t cap = w->qcap * 2 < limit ? w->qcap * 2 : limit;
	if (cap <= w->qcap)
		return false;
	fevent **q = malloc(cap * sizeof(*q));
	if (!q)
		return false;
	for (size_t i = 0; i < w->qcount; i++)
		q[i] = w->q[(w->qhead + i) % w->qcap];
	free(w->q);
	w->q = q;
	w->qcap = cap;
	w->qhead = 0;
	return true;
}

/* Queue e for w (feed.lock held), or make w lag at e. True if the queue was
 * empty, i.e. w needs a wake-up. A queue always keeps one free slot for the
 * lag event. */
static bool watch_deliver(feed *f, ctx_watch *w, fevent *e)
{
	pthread_mutex_lock(&w->lock);
	bool was_empty = w->qcount == 0;
	if (w->qcount < f->queue && (w->qcount + 2 <= w->qcap || q_grow(w, f->queue + 1))) {
		fevent_retain(e);
		q_put(w, e);
	} else {
		fevent *lag = w->lag_ev;
		lag->pub.revision = e->pub.revision;
		lag->pub.resume_from = e->pub.revision;
		w->lag_ev = NULL;
		q_put(w, lag);
		w->lagged = true;
	}
	pthread_mutex_unlock(&w->lock);
	return was_empty;
}

static bool watch_matches(const ctx_watch *w, const fevent *e)
{
	if (w->lagged || e->pub.revision < w->from)
		return false;
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
	while (w->qcount)
		fevent_release(q_take(w));
	fevent_release(w->lag_ev);
	pthread_mutex_destroy(&w->lock);
	free(w->q);
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

/* ---- wake-ups and frees collected under the feed lock --------------------------- */

typedef struct wakeups {
	ctx_watch **w;
	size_t n, cap;
	ctx_watch *local[LOCAL_SIGNALS];
	fevent *dead; /* evicted events, released after the lock */
} wakeups;

/* Take the feed lock with room in wk for a wake-up of every watcher (a
 * watcher is woken at most once per report, and none is added while the lock
 * is held). */
static void lock_for_delivery(feed *f, wakeups *wk)
{
	wk->w = wk->local;
	wk->cap = LOCAL_SIGNALS;
	wk->n = 0;
	wk->dead = NULL;
	for (;;) {
		pthread_mutex_lock(&f->lock);
		if (f->nwatchers <= wk->cap)
			break;
		size_t want = f->nwatchers + LOCAL_SIGNALS;
		pthread_mutex_unlock(&f->lock);
		ctx_watch **buf = malloc(want * sizeof(*buf));
		if (!buf) {
			pthread_mutex_lock(&f->lock);
			break; /* wake the rest under the lock */
		}
		if (wk->w != wk->local)
			free(wk->w);
		wk->w = buf;
		wk->cap = want;
	}
	f->report_seq++;
}

static void wakeup_add(feed *f, wakeups *wk, ctx_watch *w)
{
	if (w->sig_seq == f->report_seq)
		return;
	w->sig_seq = f->report_seq;
	if (wk->n < wk->cap) {
		watch_retain(w);
		wk->w[wk->n++] = w;
	} else {
		watch_signal(w); /* out of memory only */
	}
}

/* Release the feed lock, then wake the collected watchers and release the
 * evicted events. */
static void unlock_and_wake(feed *f, wakeups *wk)
{
	pthread_mutex_unlock(&f->lock);
	for (size_t i = 0; i < wk->n; i++) {
		watch_signal(wk->w[i]);
		watch_release(wk->w[i]);
	}
	if (wk->w != wk->local)
		free(wk->w);
	dead_release(wk->dead);
	wk->dead = NULL;
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
	size_t cap = 1;
	while (cap < c.history)
		cap <<= 1;
	feed *f = calloc(1, sizeof(*f));
	uint64_t *ring = calloc(cap, sizeof(*ring));
	if (!f || !ring) {
		free(f);
		free(ring);
		return ctx_fail(CTX_NOMEM, "no memory for a watch history of %zu events", cap);
	}
	ctx_mutex_init(&f->lock);
	f->ring = ring;
	f->mask = cap - 1;
	f->frontier = next_rev ? next_rev - 1 : 0;
	f->gate = UINT64_MAX;
	f->oldest = f->frontier + 1;
	f->bytes_limit = c.history_bytes;
	f->keep = c.keep_history;
	atomic_init(&f->recording, c.keep_history);
	f->queue = c.queue;
	*out = f;
	return CTX_OK;
}

void feed_close(feed *f)
{
	if (!f)
		return;
	for (uint64_t i = 0; i <= f->mask; i++)
		fevent_release(slot_event(f->ring[i]));
	pthread_mutex_destroy(&f->lock);
	free(f->ring);
	free(f);
}

void feed_get_stats(feed *f, feed_stats *out)
{
	pthread_mutex_lock(&f->lock);
	*out = (feed_stats){
	        .frontier = f->frontier,
	        .oldest = f->oldest,
	        .history_events = f->history_events,
	        .history_bytes = f->history_bytes,
	        .history_bytes_limit = f->bytes_limit,
	        .pending_events = f->pending_events,
	        .pending_bytes = f->pending_bytes,
	        .ring_slots = (size_t)(f->mask + 1),
	        .events_recorded = f->events_recorded,
	};
	pthread_mutex_unlock(&f->lock);
}

/* Whether events are recorded now: a watcher is open, or keep is set. */
static bool feed_records(const feed *f)
{
	return f->keep || f->nwatchers > 0;
}

/* Take the revisions [oldest, to) out of the history (to <= frontier + 1);
 * their events go to *dead. */
static void history_trim(feed *f, uint64_t to, fevent **dead)
{
	for (; f->oldest < to; f->oldest++) {
		uint64_t *slot = &f->ring[f->oldest & f->mask];
		if (slot_rev(*slot) != f->oldest)
			continue;
		fevent *e = slot_event(*slot);
		if (e) {
			f->history_bytes -= e->bytes;
			f->history_events--;
			dead_push(dead, e);
		}
		*slot = 0;
	}
}

/* Evict from the history what its bounds no longer allow. */
static void history_bound(feed *f, fevent **dead)
{
	uint64_t cap = f->mask + 1;
	if (!feed_records(f))
		history_trim(f, f->frontier + 1, dead);
	if (f->frontier + 1 > cap)
		history_trim(f, f->frontier + 1 - cap, dead);
	while (f->history_bytes > f->bytes_limit)
		history_trim(f, f->oldest + 1, dead);
}

/* Put the pending report v for rev into its slot, over a delivered one
 * (which leaves the history, and everything before it). */
static void slot_place(feed *f, uint64_t rev, uint64_t v, fevent **dead)
{
	uint64_t *slot = &f->ring[rev & f->mask];
	if (*slot)
		history_trim(f, slot_rev(*slot) + 1, dead);
	*slot = v;
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

static void deliver(feed *f, fevent *e, wakeups *wk)
{
	for (ctx_watch *w = f->watchers; w; w = w->next)
		if (watch_matches(w, e) && watch_deliver(f, w, e))
			wakeup_add(f, wk, w);
}

/* Advance the frontier over every contiguous reported revision, delivering
 * each event on the way into the history, then bound the history. */
static void advance(feed *f, wakeups *wk)
{
	for (;;) {
		uint64_t rev = f->frontier + 1;
		uint64_t v = f->ring[rev & f->mask];
		if (!v || slot_rev(v) != rev || rev > f->gate)
			break;
		f->frontier = rev;
		fevent *e = slot_event(v);
		if (e) {
			f->pending_bytes -= e->bytes;
			f->pending_events--;
			f->history_bytes += e->bytes;
			f->history_events++;
			deliver(f, e, wk);
		} else if ((v & SLOT_TAGS) == SLOT_BARE) {
			history_trim(f, rev + 1, &wk->dead); /* no history across a hole */
		}
	}
	history_bound(f, &wk->dead);
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
	return rev <= f->frontier || rev - f->frontier <= f->mask + 1 ||
	       rev - f->frontier > MAX_AHEAD;
}

/* Take the feed lock with the ring large enough for r and, if events are
 * recorded, r's event built in *e (both made with the lock dropped). */
static void lock_for_report(feed *f, const report *r, fevent **e, wakeups *wk)
{
	uint64_t *bigger = NULL;
	uint64_t bigger_cap = 0;
	for (;;) {
		lock_for_delivery(f, wk);
		uint64_t cap = f->mask + 1;
		if (!ring_fits(f, r->rev)) {
			if (bigger_cap >= r->rev - f->frontier && bigger_cap >= 2 * cap) {
				ring_grow(f, bigger, bigger_cap);
				bigger = NULL;
			} else {
				uint64_t want = cap * 2;
				while (want < r->rev - f->frontier)
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

static void feed_report(feed *f, const report *r)
{
	fevent *e = NULL;
	if (!r->skip && atomic_load_explicit(&f->recording, memory_order_relaxed))
		e = report_event(r);
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
	slot_place(f, rev, v, &wk.dead);
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
	lock_for_delivery(f, &wk);
	if (f->gate == UINT64_MAX || rev > f->gate) {
		f->gate = rev;
		advance(f, &wk);
	}
	unlock_and_wake(f, &wk);
}

void feed_skip(feed *f, uint64_t rev)
{
	report r = {.rev = rev, .skip = true};
	feed_report(f, &r);
}

/* ---- watches ------------------------------------------------------------------- */

static ctx_status watch_new(feed *f, const char *id, size_t idlen, bool prefix,
                            uint64_t from, ctx_watch **out)
{
	ctx_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return ctx_fail(CTX_NOMEM, "no memory for a watch");
	w->feed = f;
	w->fd = -1;
	atomic_init(&w->refs, 1);
	w->prefix = prefix;
	w->idlen = idlen;
	w->from = from;
	w->qcap = f->queue + 1 < FIRST_QUEUE_CAP ? f->queue + 1 : FIRST_QUEUE_CAP;
	w->id = malloc(idlen + 1);
	w->q = malloc(w->qcap * sizeof(*w->q));
	w->lag_ev = fevent_new(CTX_EVENT_LAGGED, 0, id, idlen, 0, 0, NULL, NULL);
	if (!w->id || !w->q || !w->lag_ev) {
		fevent_release(w->lag_ev);
		free(w->q);
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
		free(w->q);
		free(w->id);
		free(w);
		errno = e;
		return st;
	}
	ctx_mutex_init(&w->lock);
	*out = w;
	return CTX_OK;
}

/* Queue the history events [from, frontier] that w wants (feed.lock held).
 * True if any was queued. */
static bool watch_replay(feed *f, ctx_watch *w)
{
	bool queued = false;
	for (uint64_t rev = w->from; rev <= f->frontier && !w->lagged; rev++) {
		fevent *e = slot_event(f->ring[rev & f->mask]);
		if (e && e->pub.revision == rev && watch_matches(w, e))
			queued |= watch_deliver(f, w, e);
	}
	return queued;
}

/* Whether the feed holds every event from `from` on (feed.lock held); if
 * not, the error. */
static ctx_status feed_holds(const feed *f, uint64_t from)
{
	if (from < f->oldest)
		return ctx_fail(CTX_NOT_FOUND,
		                "revision %llu is compacted: the watch history starts at %llu",
		                (unsigned long long)from, (unsigned long long)f->oldest);
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
	ctx_status st = watch_new(f, id, idlen, prefix, from_revision, &w);
	if (st != CTX_OK)
		return st;

	pthread_mutex_lock(&f->lock);
	if (from_revision == 0) {
		w->from = f->frontier + 1; /* pending bare revisions are skipped */
	} else if ((st = feed_holds(f, from_revision)) != CTX_OK) {
		pthread_mutex_unlock(&f->lock);
		watch_release(w);
		return st;
	}
	bool pending = watch_replay(f, w);
	w->next = f->watchers;
	if (w->next)
		w->next->prev = w;
	f->watchers = w;
	f->nwatchers++;
	atomic_store_explicit(&f->recording, true, memory_order_relaxed);
	pthread_mutex_unlock(&f->lock);

	if (pending)
		watch_signal(w);
	*out = w;
	return CTX_OK;
}

ctx_status ctx_watch_open(ctx_store *s, const char *id, bool prefix, uint64_t from_revision,
                          ctx_watch **out)
{
	if (!s)
		return ctx_fail(CTX_INVALID, "NULL store");
	return feed_watch_open(s->feed, id, prefix, from_revision, out);
}

int ctx_watch_fd(const ctx_watch *w)
{
	return w ? w->fd : -1;
}

/* Take the next event; *emptied: the queue is empty now. */
static fevent *watch_take(ctx_watch *w, bool *emptied)
{
	pthread_mutex_lock(&w->lock);
	fevent *e = w->qcount ? q_take(w) : NULL;
	*emptied = w->qcount == 0;
	pthread_mutex_unlock(&w->lock);
	return e;
}

/* The queue was seen empty: clear the eventfd, then make it readable again
 * if an event arrived in between (its writer may have written the fd before
 * the read). */
static void watch_clear(ctx_watch *w)
{
	uint64_t v;
	ssize_t n = read(w->fd, &v, sizeof(v)); /* EAGAIN: nothing to clear */
	(void)n;
	pthread_mutex_lock(&w->lock);
	bool pending = w->qcount > 0;
	pthread_mutex_unlock(&w->lock);
	if (pending)
		watch_signal(w);
}

ctx_status ctx_watch_next(ctx_watch *w, ctx_event **out)
{
	if (!w || !out)
		return ctx_fail(CTX_INVALID, "NULL watch or output");
	bool emptied;
	fevent *e = watch_take(w, &emptied);
	if (!e) {
		watch_clear(w);
		e = watch_take(w, &emptied);
		if (!e)
			return ctx_fail(CTX_NOT_FOUND, "no event pending");
	}
	if (emptied)
		watch_clear(w);
	*out = &e->pub;
	return CTX_OK;
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ctx_status ctx_watch_wait(ctx_watch *w, int timeout_ms, ctx_event **out)
{
	if (!w || !out)
		return ctx_fail(CTX_INVALID, "NULL watch or output");
	int64_t deadline = timeout_ms >= 0 ? monotonic_ms() + timeout_ms : 0;
	for (;;) {
		ctx_status st = ctx_watch_next(w, out);
		if (st != CTX_NOT_FOUND)
			return st;
		int wait = -1;
		if (timeout_ms >= 0) {
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
	if (!w)
		return;
	feed *f = w->feed;
	fevent *dead = NULL;
	pthread_mutex_lock(&f->lock);
	if (w->prev)
		w->prev->next = w->next;
	else
		f->watchers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	f->nwatchers--;
	if (!feed_records(f)) {
		atomic_store_explicit(&f->recording, false, memory_order_relaxed);
		history_bound(f, &dead); /* nobody left to want the history */
	}
	pthread_mutex_unlock(&f->lock);
	dead_release(dead);
	/* No delivery reaches it now; wake-ups in flight hold references. */
	pthread_mutex_lock(&w->lock);
	while (w->qcount)
		fevent_release(q_take(w));
	pthread_mutex_unlock(&w->lock);
	watch_release(w);
}
