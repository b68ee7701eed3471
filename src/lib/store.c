/*
 * store.c - the store and its table of contexts.
 *
 * The table is a hash table of open addressing (store.h, struct ctab): lookups
 * run inside an RCU read-side critical section and never wait; creates and
 * drops insert and remove under the index's lock, which they take anyway for
 * the ordered index. It replaced liburcu's cds_lfht, whose split-ordered list
 * costs a cache miss per chain node on every insert (17-25% of a create at 64
 * threads) and 16 bytes per context plus 16 per bucket; a slot here is the
 * id's hash beside the context's address, so a probe touches no other
 * context. A context is reference counted (the
 * table holds one reference while it is live) and freed one grace period after
 * the last reference goes, so a reader that found it in the table just before
 * a drop can still look at it safely.
 *
 * Creating: the new context is inserted with its write lock held and no
 * visible version; its first version becomes visible before the lock is let
 * go, so a concurrent writer that finds it early waits for the create, and a
 * reader sees either nothing or version 1.
 *
 * Dropping: under the context's write lock, mark it dropped, take it out of the
 * table, and let go of its versions. Commits that wait for the lock afterwards
 * see the mark and return CTX_NOT_FOUND. Listings leave out a context marked
 * dropped at once; a drop whose record never becomes durable (the log failed:
 * the store refuses writes from then on) takes the mark back, under the lock.
 *
 * Beside the table, the ordered index (index.c) holds the same contexts sorted
 * by id, for listing a page in O(log n + page). A context enters the index
 * after it entered the table and leaves it before it leaves the table, both
 * under its write lock: so the index never holds two contexts of one id.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "log.h"
#include "pool.h"
#include "reclaim.h"
#include "store.h"
#include "util.h"
#include "vfs.h"
#include "watch.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels say EINVAL */
#endif

#ifdef CTX_TSAN
char ctx_rcu_grace_token;
#endif

#define DEFAULT_CHECKPOINT_BYTES (64u << 20)
#define MAX_KEY_LIMIT            (16u << 20) /* largest max_key_size accepted   */
#define MAX_VALUE_LIMIT          (1u << 30)  /* largest max_value_size accepted */
/* Largest history_depth accepted: a context counts its chain in 32 bits. */
#define CTX_HISTORY_DEPTH_MAX (UINT32_MAX - 1)
/* Slots of the context table at open (16 bytes each); it grows with the
 * contexts (table_insert). */
#define TABLE_MIN_SLOTS 64u
/* A removed context's slot, until the table is rebuilt. */
#define CTAB_TOMB ((ctx_context *)&ctab_tomb)
static const char ctab_tomb;

void ctx_options_init(ctx_options *o)
{
	memset(o, 0, sizeof(*o));
}

/* ---- contexts ------------------------------------------------------------- */

uint64_t store_now_us(const ctx_store *s)
{
	return s->opts.clock_us ? s->opts.clock_us(s->opts.clock_arg) : ctx_now_us();
}

/* Count c in or out of store.with_fields (write_lock held, or alone): in
 * while it is not dropped and its head has a field. Only a change of that
 * touches the store's counter. */
static inline void context_count_fields(ctx_context *c, bool in)
{
	if (in == c->with_fields)
		return;
	c->with_fields = in;
	if (in)
		atomic_fetch_add(&c->store->with_fields, 1);
	else
		atomic_fetch_sub(&c->store->with_fields, 1);
}

ctx_state *context_push_head(ctx_context *c, ctx_state *next)
{
	/* No locked instruction here (three seq_cst exchanges before round 6,
	 * 6% of a one-thread update): the chain's links change only under the
	 * write lock (or in recovery), so a load and a store do. next is not
	 * seen by anyone before the release store of head (read without the
	 * lock only with acquire, by ctx_get_latest) or before its publication
	 * (context_publish, a compare-and-swap; for a nowait commit the flusher
	 * publishes only once the committer set pending_change.linked, after
	 * this call), so its prev needs no order of its own. The new oldest
	 * version's prev is written only here: the chain holds that version,
	 * so it is never freed meanwhile (the exchange of ctx_state_release).
	 * A reader walking the chain under RCU sees the cut version or NULL,
	 * as before. */
	ctx_state *cut = NULL;
	ctx_state *old = atomic_load_explicit(&c->head, memory_order_relaxed);
	atomic_store_explicit(&next->prev, old, memory_order_relaxed); /* the head's reference */
	if (old)
		old->next = next;
	atomic_store_explicit(&c->head, next, memory_order_release);
	/* A commit never pushes onto a dropped context (it checks under the
	 * lock): only whether next has fields decides. */
	context_count_fields(c, next->data.count != 0);
	if (!c->oldest)
		c->oldest = next;
	if (++c->kept > c->store->opts.history_depth) {
		/* The oldest kept version leaves the chain with the reference
		 * its successor held. Only the lock holder writes a chained
		 * version's prev (its own last release cannot come while its
		 * successor holds it), so a plain release store does what an
		 * exchange did: the oldest versions' lines are cold, and a
		 * locked exchange waited the whole miss (69% of this
		 * function's samples in mixed at 64 threads). */
		cut = c->oldest;
		c->oldest = cut->next;
		c->kept--;
		assert(atomic_load_explicit(&c->oldest->prev, memory_order_relaxed) == cut);
		atomic_store_explicit(&c->oldest->prev, NULL, memory_order_release);
	}
	/* Freeing what only it holds can take milliseconds: the reclaimer does
	 * it in the background, unless it is far behind (reclaim.c), or
	 * recovery replays (nobody reads yet: the caller frees it at once). */
	if (cut && !c->store->replaying && reclaim_defer(cut))
		cut = NULL;
	return cut;
}

void context_retain(ctx_context *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void context_free_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	ctx_context *c = caa_container_of(head, ctx_context, rcu);
	wlock_destroy(&c->write_lock);
	pool_bypass(true); /* the call_rcu worker: it frees, never allocates (pool.c) */
	pool_free(c);
}

void context_release(ctx_context *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		ctx_call_rcu(&c->rcu, context_free_rcu);
}

/* ---- the table of contexts ---------------------------------------------------- */

/* A context's index node lies after its id and NUL, 8-aligned, and finds
 * its key and owner by 16-bit distances (index.h). */
_Static_assert(offsetof(ctx_context, id) + CTX_ID_MAX + 1 + 7 <= UINT16_MAX,
               "a context's index node must lie within 64 KiB of the context");

/* An array of TABLE_MAP_BYTES or more is a mapping of its own, not a malloc
 * block (round 15, docs/benchmarks.md). With malloc, the history of the
 * process decided how a big array came in: a fresh process got a fresh
 * mapping of zero pages, where a probe's read maps the shared zero page and
 * the store that follows faults again, copies it and flushes the TLB of
 * every CPU the process runs on (do_wp_page: 7% of a create at 16 threads,
 * all of it under the index lock); a process that had freed a big block
 * before (glibc then raises its mmap threshold, up to 32 MiB) got arena
 * memory, which calloc clears at once, under the index lock. A mapping of
 * its own starts the same in every process, and can be populated with one
 * madvise(MADV_POPULATE_WRITE) (no fault per page: about half the CPU here),
 * which table_prepare does outside the lock ("Growing", below). */
#define TABLE_MAP_BYTES ((size_t)256 << 10)

static size_t table_bytes(size_t slots)
{
	return sizeof(ctab) + slots * sizeof(ctab_slot);
}

static bool table_mapped(size_t slots)
{
	return table_bytes(slots) >= TABLE_MAP_BYTES;
}

/* The length of a mapped array: whole pages. */
static size_t table_map_len(size_t slots)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (table_bytes(slots) + page - 1) / page * page;
}

/* A new, empty array of `slots` slots (a power of two). populate: a mapped
 * one has its pages filled now, else they fault in as they are touched. */
static ctab *table_alloc(size_t slots, bool populate)
{
	ctab *t;
	if (!table_mapped(slots)) {
		t = calloc(1, table_bytes(slots));
	} else {
		size_t len = table_map_len(slots);
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		t = p == MAP_FAILED ? NULL : p;
		if (t && populate)
			(void)madvise(t, len, MADV_POPULATE_WRITE); /* else they fault in */
	}
	if (t)
		t->mask = slots - 1;
	return t;
}

static void table_free(ctab *t)
{
	if (!t)
		return;
	if (table_mapped(t->mask + 1))
		munmap(t, table_map_len(t->mask + 1));
	else
		free(t);
}

static void table_free_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	table_free(caa_container_of(head, ctab, rcu));
}

static bool context_is(const ctx_context *c, const char *id, size_t idlen)
{
	return c->idlen == idlen && hamt_bytes_equal(c->id, id, idlen);
}

/* Probe t for id (hash h). One slot read per probe step; only a context
 * whose hash matches is touched. */
static ctx_context *table_probe(const ctab *t, uint64_t h, const char *id, size_t idlen)
{
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		ctx_context *c =
		    atomic_load_explicit(&((ctab_slot *)&t->slot[i])->c, memory_order_acquire);
		if (!c)
			return NULL;
		if (c == CTAB_TOMB || atomic_load_explicit(&((ctab_slot *)&t->slot[i])->hash,
		                                           memory_order_relaxed) != h)
			continue;
		tsan_subscribe(c);
		/* The id is at the struct's end, the visible version (what
		 * every read loads next) before it: load both at once. */
		__builtin_prefetch(&c->visible);
		if (context_is(c, id, idlen))
			return c;
	}
}

/* Look up id (hash h); the caller is inside an RCU read-side critical
 * section. While the table grows, the old array first: it holds every
 * context but those created since the growth began. Its address is read
 * before the new array is probed: once it reads NULL, every context moved
 * before, and while it is not NULL it is not freed and still holds what it
 * held (moving does not take a context out of it). */
static ctx_context *table_find(ctx_store *s, uint64_t h, const char *id, size_t idlen)
{
	const ctab *t = atomic_load_explicit(&s->table, memory_order_acquire);
	const ctab *old = atomic_load_explicit(&((ctab *)t)->old, memory_order_acquire);
	ctx_context *c = old ? table_probe(old, h, id, idlen) : NULL;
	return c ? c : table_probe(t, h, id, idlen);
}

static ctx_context *table_lookup(ctx_store *s, const char *id, size_t idlen)
{
	return table_find(s, hamt_hash(id, idlen), id, idlen);
}

/* Start loading the slot where a probe for hash h begins. */
static void table_prefetch(ctx_store *s, uint64_t h)
{
	ctx_rcu_read_lock();
	const ctab *t = atomic_load_explicit(&s->table, memory_order_acquire);
	const ctab *old = atomic_load_explicit(&((ctab *)t)->old, memory_order_acquire);
	if (old)
		__builtin_prefetch(&old->slot[h & old->mask]);
	__builtin_prefetch(&t->slot[h & t->mask], 1);
	ctx_rcu_read_unlock();
}

/* Put c (hash h) into the first free slot of its probe in t (no checks:
 * writers only, index.lock held or t not published). */
static void table_place(ctab *t, uint64_t h, ctx_context *c)
{
	size_t i = h & t->mask;
	for (;;) {
		ctx_context *x = atomic_load_explicit(&t->slot[i].c, memory_order_relaxed);
		if (!x || x == CTAB_TOMB)
			break;
		i = (i + 1) & t->mask;
	}
	atomic_store_explicit(&t->slot[i].hash, h, memory_order_relaxed);
	atomic_store_explicit(&t->slot[i].c, c, memory_order_release);
}

/* ---- growing ------------------------------------------------------------------ */

/* A rebuild used to copy every context into the new array at once, under the
 * index lock: the create that crossed 3/4 of a 1M-slot table waited 26 ms
 * (130-160 ms beside a checkpoint), and so did every create and drop behind
 * it. Now the new array is published at once, empty, with the old one beside
 * it (ctab.old), and each insert moves table_step of the old array's slots
 * into it, as Redis rehashes its dictionaries: the same work, spread over
 * the inserts that follow. Moving copies a slot and leaves the old one as it
 * was, so a reader that probes the old array first finds every context that
 * was there; drops take a context out of both; inserts go to the new array
 * only, after looking in the old one for the id. The step is chosen so that
 * every slot has moved long before the new array could fill up: at least
 * TABLE_STEP_MIN, and twice the old slots over the free slots the new array
 * has below its own 3/4 (a shrink after many drops moves a big, mostly empty
 * array in a few inserts).
 *
 * Ahead (round 15): a big new array (TABLE_MAP_BYTES or more) is not made
 * under the index lock. The insert that finds the table past 3/4 with no
 * array ready asks its create to make one (table_wants_spare sets
 * table_preparing and hands the size out); the create does so once it holds
 * no lock, populated (table_prepare), and leaves it in table_spare; meanwhile
 * inserts go on into the current array, and the first insert that finds the
 * spare ready grows into it. Populating 2 MiB of array per 131,072 slots
 * takes ~4 ms of one thread; while the table fills from 3/4 to 7/8 (1/8 of
 * its slots to insert) it is never waited for. Past 7/8 (the spare not ready:
 * a descheduled thread, a failed mapping) an insert grows at once into an
 * array of lazy pages, as before; a spare left of another size is given back
 * at the next growth. So the table holds at most one array more than it
 * did, and only from 3/4 until its growth. */
#define TABLE_STEP_MIN 16u

/* Move up to n slots of t's old array into t; once all have moved, let the
 * old array go (freed after a grace period). index.lock held. */
static void table_move(ctx_store *s, ctab *t, size_t n)
{
	ctab *old = atomic_load_explicit(&t->old, memory_order_relaxed);
	if (!old)
		return;
	size_t end = old->mask + 1;
	for (; n && s->table_moved < end; n--, s->table_moved++) {
		ctab_slot *o = &old->slot[s->table_moved];
		ctx_context *c = atomic_load_explicit(&o->c, memory_order_relaxed);
		if (c && c != CTAB_TOMB)
			table_place(t, atomic_load_explicit(&o->hash, memory_order_relaxed), c);
	}
	if (s->table_moved == end) {
		atomic_store_explicit(&t->old, NULL, memory_order_release);
		ctx_call_rcu(&old->rcu, table_free_rcu);
	}
}

/* Finish a growth in progress (every slot moved). index.lock held. */
static void table_settle(ctx_store *s)
{
	ctab *t = atomic_load_explicit(&s->table, memory_order_relaxed);
	table_move(s, t, SIZE_MAX);
}

/* Start a rebuild into a new array that the live contexts fill at most half,
 * published at once; the contexts move into it over the inserts that follow.
 * false if out of memory. index.lock held. */
static size_t table_slots_for(size_t live)
{
	size_t slots = TABLE_MIN_SLOTS;
	while (slots < 2 * (live + 1))
		slots *= 2;
	return slots;
}

static bool table_grow(ctx_store *s)
{
	table_settle(s);
	ctab *old = atomic_load_explicit(&s->table, memory_order_relaxed);
	size_t slots = table_slots_for(s->table_live);
	ctab *t = s->table_spare;
	s->table_spare = NULL;
	if (t && t->mask + 1 != slots) {
		/* Never published: no grace period is needed, but the call_rcu
		 * worker, not this lock, pays for the munmap. */
		ctx_call_rcu(&t->rcu, table_free_rcu);
		t = NULL;
	}
	if (!t)
		t = table_alloc(slots, false);
	if (!t)
		return false;
	size_t room = slots / 4 * 3 - (s->table_live + 1);
	size_t step = (2 * (old->mask + 1) + room - 1) / room;
	s->table_step = step > TABLE_STEP_MIN ? step : TABLE_STEP_MIN;
	s->table_moved = 0;
	s->table_tombs = 0;
	atomic_init(&t->old, old);
	atomic_store_explicit(&s->table, t, memory_order_release);
	return true;
}

/* Is c in t (hash h)? Under RCU or index.lock. */
static bool table_holds(const ctab *t, uint64_t h, const ctx_context *c)
{
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		ctx_context *x =
		    atomic_load_explicit(&((ctab_slot *)&t->slot[i])->c, memory_order_acquire);
		if (!x)
			return false;
		if (x == c)
			return true;
	}
}

/* The table t is past 3/4 (used slots with this insert): true to insert
 * into it all the same while a bigger array is made ahead ("Growing"),
 * with *prepare set to that array's slots if the caller is to make it.
 * prepare NULL: the caller cannot (recovery), grow now. index.lock held. */
static bool table_wants_spare(ctx_store *s, const ctab *t, size_t used, size_t *prepare)
{
	size_t slots = table_slots_for(s->table_live);
	if (!prepare || !table_mapped(slots) || used > (t->mask + 1) / 8 * 7)
		return false;
	if (s->table_spare && s->table_spare->mask + 1 == slots)
		return false; /* ready: grow into it now */
	if (!s->table_preparing) {
		s->table_preparing = true;
		*prepare = slots;
	}
	return true;
}

/* Make the array of `slots` slots that an insert asked for, populated,
 * outside any lock, and leave it for the growth (table_grow). */
static void table_prepare(ctx_store *s, size_t slots)
{
	ctab *t = table_alloc(slots, true), *stale;
	index_lock(&s->index);
	stale = s->table_spare;
	s->table_spare = t;
	s->table_preparing = false;
	index_unlock(&s->index);
	table_free(stale); /* never published */
}

/* Insert c unless its id is there: returns the context that holds the id
 * (c if inserted), or NULL when out of memory. *prepare: see
 * table_wants_spare. index.lock held. */
static ctx_context *table_insert(ctx_store *s, ctx_context *c, uint64_t h, size_t *prepare)
{
	ctab *t = atomic_load_explicit(&s->table, memory_order_relaxed);
	size_t used = s->table_live + s->table_tombs + 1;
	if (used > (t->mask + 1) / 4 * 3 && !table_wants_spare(s, t, used, prepare)) {
		/* Out of memory: go on while a slot stays empty (probes end). */
		if (table_grow(s))
			t = atomic_load_explicit(&s->table, memory_order_relaxed);
		else if (used >= t->mask)
			return NULL;
	}
	ctab *old = atomic_load_explicit(&t->old, memory_order_relaxed);
	if (old) {
		ctx_context *x = table_probe(old, h, c->id, c->idlen);
		if (x)
			return x;
		table_move(s, t, s->table_step);
	}
	size_t i = h & t->mask, at = SIZE_MAX;
	for (;; i = (i + 1) & t->mask) {
		ctx_context *x = atomic_load_explicit(&t->slot[i].c, memory_order_relaxed);
		if (!x)
			break;
		if (x == CTAB_TOMB) {
			if (at == SIZE_MAX)
				at = i;
		} else if (atomic_load_explicit(&t->slot[i].hash, memory_order_relaxed) == h &&
		           context_is(x, c->id, c->idlen)) {
			return x;
		}
	}
	if (at == SIZE_MAX)
		at = i;
	else
		s->table_tombs--;
	tsan_publish(c);
	atomic_store_explicit(&t->slot[at].hash, h, memory_order_relaxed);
	atomic_store_explicit(&t->slot[at].c, c, memory_order_release);
	s->table_live++;
	return c;
}

/* Take c (hash h) out of t if it is there; a slot followed by an empty one
 * becomes empty (and so do the tombstones before it): no probe went past it
 * to a key. Counts the tombstones left in *tombs. index.lock held. */
static bool table_unlink(ctab *t, uint64_t h, const ctx_context *c, size_t *tombs)
{
	size_t i = h & t->mask;
	for (;; i = (i + 1) & t->mask) {
		ctx_context *x = atomic_load_explicit(&t->slot[i].c, memory_order_relaxed);
		if (!x)
			return false;
		if (x == c)
			break;
	}
	if (atomic_load_explicit(&t->slot[(i + 1) & t->mask].c, memory_order_relaxed)) {
		atomic_store_explicit(&t->slot[i].c, CTAB_TOMB, memory_order_release);
		++*tombs;
		return true;
	}
	atomic_store_explicit(&t->slot[i].c, NULL, memory_order_release);
	for (i = (i - 1) & t->mask;
	     atomic_load_explicit(&t->slot[i].c, memory_order_relaxed) == CTAB_TOMB;
	     i = (i - 1) & t->mask) {
		atomic_store_explicit(&t->slot[i].c, NULL, memory_order_release);
		--*tombs;
	}
	return true;
}

/* Take c out of the table (if it is there): of both arrays while it grows.
 * index.lock held. */
static void table_remove(ctx_store *s, ctx_context *c)
{
	ctab *t = atomic_load_explicit(&s->table, memory_order_relaxed);
	if (!s->table_live)
		return; /* emptied (store_clear) */
	uint64_t h = hamt_hash(c->id, c->idlen);
	bool found = table_unlink(t, h, c, &s->table_tombs);
	ctab *old = atomic_load_explicit(&t->old, memory_order_relaxed);
	size_t old_tombs = 0; /* not counted: the old array only empties */
	if (old && table_unlink(old, h, c, &old_tombs))
		found = true;
	if (found)
		s->table_live--;
}

static ctx_context *table_scan(table_iter *it)
{
	for (;;) {
		while (it->i <= it->t->mask) {
			const ctab_slot *slot = &it->t->slot[it->i++];
			ctx_context *c =
			    atomic_load_explicit(&((ctab_slot *)slot)->c, memory_order_acquire);
			if (!c || c == CTAB_TOMB)
				continue;
			if (it->skip && table_holds(it->skip,
			                            atomic_load_explicit(&((ctab_slot *)slot)->hash,
			                                                 memory_order_relaxed),
			                            c))
				continue; /* seen in the old array */
			tsan_subscribe(c);
			return c;
		}
		if (!it->next)
			return NULL;
		it->skip = it->t;
		it->t = it->next;
		it->next = NULL;
		it->i = 0;
	}
}

ctx_context *table_first(ctx_store *s, table_iter *it)
{
	const ctab *t = atomic_load_explicit(&s->table, memory_order_acquire);
	const ctab *old = atomic_load_explicit(&((ctab *)t)->old, memory_order_acquire);
	*it = (table_iter){.t = old ? old : t, .next = old ? t : NULL};
	return table_scan(it);
}

ctx_context *table_next(table_iter *it)
{
	return table_scan(it);
}

ctx_status store_check_id(const ctx_store *s, const char *id, size_t *idlen)
{
	return s ? ctx_check_id(id, idlen) : ctx_fail(CTX_INVALID, "NULL store");
}

/* Start loading the first lines of the root of c's visible version from
 * its hint (store.h, root_hint): they arrive while the caller loads the
 * version, or takes the write lock and copies the head (whose root is the
 * visible one but for a commit in flight), instead of after. */
static inline void context_prefetch_root(const ctx_context *c)
{
	uintptr_t root = atomic_load_explicit(&c->root_hint, memory_order_relaxed);
	__builtin_prefetch((const void *)root);
	__builtin_prefetch((const void *)(root + 64));
}

ctx_status store_open_context(ctx_store *s, const char *id, ctx_context **out)
{
	size_t idlen;
	ctx_status st = store_check_id(s, id, &idlen);
	if (st != CTX_OK)
		return st;
	ctx_context *c = store_find_context(s, id, idlen);
	if (!c)
		return ctx_fail(CTX_NOT_FOUND, "no context '%s'", id);
	if (!context_usable(c)) {
		/* Past its time-to-live: gone for every call (expiry.c). */
		context_release(c);
		reaper_kick(s);
		return ctx_fail(CTX_NOT_FOUND, "context '%s' expired", id);
	}
	context_prefetch_root(c);
	*out = c;
	return CTX_OK;
}

/* Take a reference to c unless its count already reached zero; the caller
 * is in an RCU read-side critical section, so c itself is still there. */
static bool context_try_retain(ctx_context *c)
{
	unsigned r = atomic_load_explicit(&c->refs, memory_order_relaxed);
	do {
		if (r == 0)
			return false;
	} while (!atomic_compare_exchange_weak(&c->refs, &r, r + 1));
	return true;
}

/* The context in the table under id, with a reference; one whose drop is
 * decided only if `dropped` (a create waits those out). */
static ctx_context *find_context(ctx_store *s, const char *id, size_t idlen, bool dropped)
{
	ctx_rcu_read_lock();
	ctx_context *c = table_lookup(s, id, idlen);
	/* A context being dropped may be down to its last states: a reference
	 * is taken only while its count is not zero. */
	if (c && ((!dropped && atomic_load(&c->dropped)) || !context_try_retain(c)))
		c = NULL;
	ctx_rcu_read_unlock();
	return c;
}

ctx_context *store_find_context(ctx_store *s, const char *id, size_t idlen)
{
	return find_context(s, id, idlen, false);
}

ctx_context *store_lookup_context_rcu(ctx_store *s, const char *id, size_t idlen)
{
	ctx_context *c = table_lookup(s, id, idlen);
	return c && !atomic_load(&c->dropped) ? c : NULL;
}

/* store_collect's list, growing. */
typedef struct collect_list {
	ctx_context **all;
	size_t n, cap;
	bool ok;
} collect_list;

static void collect_one(collect_list *l, ctx_context *c, bool (*want)(const ctx_context *, void *),
                        void *arg)
{
	if (!l->ok || (want && !want(c, arg)))
		return;
	if (l->n == l->cap) {
		ctx_context **g = realloc(l->all, 2 * l->cap * sizeof(*g));
		if (!(l->ok = g != NULL))
			return;
		l->all = g;
		l->cap *= 2;
	}
	if (context_try_retain(c))
		l->all[l->n++] = c;
}

/* Contexts the scan has passed but not yet looked at: each is prefetched
 * when the scan meets it and looked at (want, its reference count) this
 * many contexts later, so that the cache misses of a window overlap
 * instead of coming one after another. */
#define COLLECT_WINDOW 8

ctx_context **store_collect(ctx_store *s, bool (*want)(const ctx_context *, void *), void *arg,
                            size_t *count)
{
	size_t cap = atomic_load(&s->live) + 16;
	collect_list l = {malloc(cap * sizeof(*l.all)), 0, cap, true};
	l.ok = l.all != NULL;
	ctx_context *window[COLLECT_WINDOW];
	size_t seen = 0;
	table_iter iter;
	ctx_rcu_read_lock();
	for (ctx_context *c = table_first(s, &iter); c && l.ok; c = table_next(&iter)) {
		__builtin_prefetch(c, 1);
		size_t slot = seen++ % COLLECT_WINDOW;
		if (seen > COLLECT_WINDOW)
			collect_one(&l, window[slot], want, arg);
		window[slot] = c;
	}
	size_t first = seen > COLLECT_WINDOW ? seen - COLLECT_WINDOW : 0;
	for (size_t i = first; i < seen && l.ok; i++)
		collect_one(&l, window[i % COLLECT_WINDOW], want, arg);
	ctx_rcu_read_unlock();
	if (!l.ok) {
		for (size_t i = 0; i < l.n; i++)
			context_release(l.all[i]);
		free(l.all);
		ctx_fail(CTX_NOMEM, "no memory to list contexts");
		return NULL;
	}
	*count = l.n;
	return l.all;
}

void context_publish(ctx_context *c, ctx_state *st)
{
	context_publish_ref(c, ctx_state_retain(st));
}

void context_publish_ref(ctx_context *c, ctx_state *st)
{
	ctx_state_release(context_publish_keep(c, st));
}

/* Make st visible unless a version as new is (then false: st is left to
 * the caller); *cur gets the version it replaced. The caller keeps that
 * version's struct from being freed while this reads it. */
static bool publish_swap(ctx_context *c, ctx_state *st, ctx_state **cur)
{
	*cur = atomic_load(&c->visible);
	for (;;) {
		if (*cur ? (*cur)->version >= st->version : atomic_load(&c->gone))
			return false;
		if (atomic_compare_exchange_weak(&c->visible, cur, st))
			break;
	}
	atomic_store_explicit(&c->root_hint, (uintptr_t)st->data.root, memory_order_relaxed);
	return true;
}

/* What follows the swap: the replaced version's hiding, and a drop that
 * raced with a publish into an empty slot undone. */
static ctx_state *publish_done(ctx_context *c, ctx_state *cur)
{
	if (cur)
		state_note_hidden(cur);
	/* A drop that raced with a publish into an empty slot: undo it. */
	if (atomic_load(&c->gone))
		ctx_state_release(atomic_exchange(&c->visible, NULL));
	return cur;
}

ctx_state *context_publish_locked(ctx_context *c, ctx_state *st)
{
	ctx_state *cur;
	if (!publish_swap(c, st, &cur)) {
		ctx_state_release(st);
		return NULL;
	}
	return publish_done(c, cur);
}

ctx_state *context_publish_keep(ctx_context *c, ctx_state *st)
{
	ctx_rcu_read_lock();
	ctx_state *cur;
	bool swapped = publish_swap(c, st, &cur);
	ctx_rcu_read_unlock();
	if (!swapped) {
		ctx_state_release(st);
		return NULL;
	}
	return publish_done(c, cur);
}

/* ---- the store ------------------------------------------------------------ */

/* Create dir (and missing parents). */
static int make_dirs(const char *dir)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (vfs_mkdir(path, 0755) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (vfs_mkdir(path, 0755) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* Lock dir against other processes (and other opens in this one). */
static ctx_status lock_dir(ctx_store *s)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/LOCK", s->dir);
	s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lock_fd < 0)
		return ctx_fail(CTX_IO, "cannot open %s: %s", path, strerror(errno));
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		close(s->lock_fd);
		s->lock_fd = -1;
		errno = e;
		return ctx_fail(CTX_IO, "%s is locked by another process or store (%s)", s->dir,
		                strerror(e));
	}
	fork_track(s); /* a child of fork closes its copy of the lock */
	return CTX_OK;
}

static ctx_status check_options(ctx_options *opts)
{
	if (!opts->max_contexts)
		opts->max_contexts = CTX_DEFAULT_MAX_CONTEXTS;
	if (!opts->max_key_size)
		opts->max_key_size = CTX_DEFAULT_MAX_KEY_SIZE;
	if (!opts->max_value_size)
		opts->max_value_size = CTX_DEFAULT_MAX_VALUE_SIZE;
	if (!opts->checkpoint_bytes)
		opts->checkpoint_bytes = DEFAULT_CHECKPOINT_BYTES;
	if (!opts->history_depth)
		opts->history_depth = 64;
	if (opts->history_depth > CTX_HISTORY_DEPTH_MAX)
		return ctx_fail(CTX_INVALID, "history_depth above %u", CTX_HISTORY_DEPTH_MAX);
	if (!opts->max_points)
		opts->max_points = 10;
	if (!opts->watch_queue)
		opts->watch_queue = 4096;
	if (!opts->watch_history)
		opts->watch_history = 65536;
	if (!opts->reaper_ms)
		opts->reaper_ms = 1000;
	if (opts->max_key_size > MAX_KEY_LIMIT)
		return ctx_fail(CTX_INVALID, "max_key_size above %u", MAX_KEY_LIMIT);
	if (opts->max_value_size > MAX_VALUE_LIMIT)
		return ctx_fail(CTX_INVALID, "max_value_size above %u", MAX_VALUE_LIMIT);
	if ((unsigned)opts->durability > CTX_DURABILITY_NONE)
		return ctx_fail(CTX_INVALID, "unknown durability %d", (int)opts->durability);
	if (opts->dir && opts->durability == CTX_DURABILITY_NONE && !opts->unsafe_no_sync)
		return ctx_fail(CTX_INVALID, "durability none with a dir needs unsafe_no_sync");
	if (opts->dir && !opts->dir[0])
		return ctx_fail(CTX_INVALID, "empty dir");
	return CTX_OK;
}

/* Recover s->dir and start the log and the checkpointer. */
static ctx_status open_dir(ctx_store *s)
{
	if (make_dirs(s->dir) != 0)
		return ctx_fail(CTX_IO, "cannot create %s: %s", s->dir, strerror(errno));
	ctx_status st = lock_dir(s);
	if (st != CTX_OK)
		return st;
	recovery_info info;
	if ((st = recovery_run(s, s->dir, false, &info)) != CTX_OK)
		return st;
	atomic_store(&s->revision, info.last_revision);
	atomic_store(&s->last_checkpoint, info.checkpoint_revision);
	s->wait_durable = s->opts.durability == CTX_DURABILITY_ALWAYS;
	st = log_open(s->dir, info.last_revision, s->opts.durability, s->opts.batch_ms,
	              s->opts.log_prealloc_bytes, &s->log);
	if (st != CTX_OK)
		return st;
	size_t backlog = s->opts.log_backlog_bytes;
	log_set_backlog(s->log, backlog == SIZE_MAX ? 0 : backlog ? backlog : LOG_BACKLOG_DEFAULT);
	/* The log recovered past the checkpoint counts toward the next one, as
	 * if this open had appended it: else a store killed before each run's
	 * log reached checkpoint_bytes never checkpointed, and its log (disk,
	 * recovery time) grew with every crash. Each segment counts the zeros
	 * it was created with too: a crash loop of small runs makes one a run. */
	log_add_growth(s->log, info.replayed_bytes + (uint64_t)info.segments * LOG_PREALLOC_FIRST);
	return checkpointer_start(s);
}

void store_report(ctx_store *s, uint64_t rev, ctx_event_kind kind, const ctx_context *c,
                  uint64_t version, size_t nkeys, const void *const *keys, const size_t *klens)
{
	store_report_id(s, rev, kind, c->id, c->idlen, version, nkeys, keys, klens);
}

void store_report_id(ctx_store *s, uint64_t rev, ctx_event_kind kind, const char *id, size_t idlen,
                     uint64_t version, size_t nkeys, const void *const *keys, const size_t *klens)
{
	if (s->feed)
		feed_record(s->feed, rev, kind, id, idlen, version, nkeys, keys, klens);
}

bool store_report_bare(ctx_store *s, uint64_t rev)
{
	return !s->feed || feed_report_bare(s->feed, rev);
}

void store_report_skip(ctx_store *s, uint64_t rev)
{
	if (s->feed)
		feed_skip(s->feed, rev);
}

/* ---- clearing commits (ctx_txn_clear) --------------------------------------- */

typedef struct clear_keys {
	const void **keys;
	size_t *klens;
	size_t n, cap;
	bool ok;
} clear_keys;

static ctx_status clear_key(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	clear_keys *k = arg;
	const hamt_leaf *l = old ? old : new_;
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 64;
		const void **keys = realloc(k->keys, cap * sizeof(*keys));
		if (keys)
			k->keys = keys;
		size_t *klens = keys ? realloc(k->klens, cap * sizeof(*klens)) : NULL;
		if (!klens)
			return CTX_NOMEM;
		k->klens = klens;
		k->cap = cap;
	}
	k->keys[k->n] = hamt_leaf_key(l);
	k->klens[k->n++] = hamt_leaf_klen(l);
	return CTX_OK;
}

void store_report_clear(ctx_store *s, uint64_t rev, const ctx_context *c, const ctx_state *base,
                        const ctx_state *st, size_t nkeys, const void *const *keys,
                        const size_t *klens)
{
	if (!s->feed)
		return;
	clear_keys k = {NULL, NULL, 0, 0, false};
	if (base && feed_recording(s->feed))
		k.ok = hamt_diff(&base->data, &st->data, clear_key, &k) == CTX_OK;
	if (k.ok)
		store_report(s, rev, CTX_EVENT_COMMITTED, c, st->version, k.n,
		             (const void *const *)k.keys, k.klens);
	else
		store_report(s, rev, CTX_EVENT_COMMITTED, c, st->version, nkeys, keys, klens);
	free(k.keys);
	free(k.klens);
}

bool store_feed_recording(const ctx_store *s)
{
	return s->feed && feed_recording(s->feed);
}

size_t clear_changed(const hamt *old, const hamt *new_)
{
	size_t both = 0, same = 0;
	hamt_cursor cur;
	hamt_cursor_init(&cur, new_);
	for (const hamt_leaf *l; (l = hamt_cursor_next(&cur));) {
		const hamt_leaf *o =
		    hamt_find(old, hamt_leaf_hash(l), hamt_leaf_key(l), hamt_leaf_klen(l));
		if (!o)
			continue;
		both++;
		same += o == l || (o->vlen == l->vlen &&
		                   memcmp(hamt_leaf_value(o), hamt_leaf_value(l), l->vlen) == 0);
	}
	return old->count + new_->count - both - same;
}

/* ctx_close's rcu_barrier (state_drain) allocates, in liburcu, which aborts
 * the process when that fails (urcu_die). A store closed after it ran out of
 * memory (an RLIMIT_AS, or vm.overcommit_memory 2) is at its peak then: what
 * it frees waits for that barrier. So each store holds CLOSE_RESERVE bytes
 * of address space and commit charge, mapped and never touched (no page of
 * memory), from ctx_open on, and unmaps them first thing at close: room for
 * the barrier's few small blocks (glibc falls back to an mmap of 1 MiB when
 * its heap cannot grow). Without the reserve (its mmap failed) the store
 * works as before. */
#define CLOSE_RESERVE ((size_t)2 << 20)

static void *close_reserve_map(void)
{
	void *p = mmap(NULL, CLOSE_RESERVE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	               -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void store_free(ctx_store *s)
{
	if (s->close_reserve)
		munmap(s->close_reserve, CLOSE_RESERVE);
	s->close_reserve = NULL;
	store_clear(s);
	/* Run every deferred free (states, contexts) before the table goes, and
	 * free the versions this thread released and still holds in its batch
	 * (state.c): else a later commit of this thread, maybe in another
	 * store, would pay for freeing them (a 1M-key version: half a second). */
	state_drain();
	table_free(atomic_load(&s->table));
	index_close(&s->index);
	if (s->feed)
		feed_close(s->feed);
	fork_untrack(s);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->dir);
	free(s);
}

ctx_status ctx_open(const ctx_options *o, ctx_store **out)
{
	ctx_options opts;
	if (!out)
		return ctx_fail(CTX_INVALID, "NULL output pointer");
	if (o)
		opts = *o;
	else
		ctx_options_init(&opts);
	ctx_status st = check_options(&opts);
	if (st != CTX_OK)
		return st;
	fork_open();

	ctx_store *s = calloc(1, sizeof(*s));
	if (!s)
		return ctx_fail(CTX_NOMEM, "no memory for a store");
	s->opts = opts;
	s->lock_fd = -1;
	s->fork_gen = atomic_load_explicit(&fork_generation, memory_order_relaxed);
	atomic_init(&s->table, table_alloc(TABLE_MIN_SLOTS, false));
	if (!s->table || index_open(&s->index) != CTX_OK) {
		table_free(atomic_load(&s->table));
		free(s);
		return ctx_fail(CTX_NOMEM, "no memory for the context table");
	}
	s->close_reserve = close_reserve_map();
	if (opts.dir) {
		s->opts.dir = s->dir = strdup(opts.dir);
		st = s->dir ? open_dir(s) : ctx_fail(CTX_NOMEM, "no memory");
	}
	if (st == CTX_OK)
		st = feed_open(atomic_load(&s->revision) + 1,
		               &(feed_config){.history = opts.watch_history,
		                              .history_bytes = opts.watch_history_bytes,
		                              .queue = opts.watch_queue,
		                              .keep_history = opts.watch_keep_history},
		               &s->feed);
	if (st == CTX_OK)
		notify_init(s);
	if (st == CTX_OK)
		st = reaper_start(s);
	if (st != CTX_OK) {
		int e = errno;
		reaper_stop(s);
		checkpointer_stop(s);
		if (s->log)
			log_close(s->log);
		store_free(s);
		errno = e;
		return st;
	}
	*out = s;
	return CTX_OK;
}

/* What a close keeps: the background threads end, and with a dir the final
 * checkpoint is written and the log synced and closed. */
static void store_finish(ctx_store *s)
{
	reaper_stop(s);
	if (s->log) {
		checkpointer_stop(s);
		if (!log_failed(s->log) && checkpoint_run(s) != CTX_OK)
			fprintf(stderr, "ctx: final checkpoint: %s\n", ctx_last_error());
		if (log_close(s->log) != CTX_OK)
			fprintf(stderr, "ctx: closing the log: %s\n", ctx_last_error());
	}
}

void ctx_close(ctx_store *s)
{
	if (!s || store_inherited(s))
		return; /* (fork.c: its threads are the parent's) */
	store_finish(s);
	store_free(s);
}

#if defined(__SANITIZE_ADDRESS__)
#define STORE_LEAK_CHECKED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STORE_LEAK_CHECKED 1
#endif
#endif

bool ctx_use_huge_pages(bool on)
{
	return pool_slab_use_huge(on);
}

/* ctx_close without store_free's walk (round 16): freeing a store frees
 * every node and leaf of every version one by one, each a cache miss
 * (node_release was 80% of ctxd's stop: 1.6 s of CPU for 1.4M fields, 15 s
 * on the loaded machine), for memory the exit gives back anyway. The
 * feed's waker is joined (a thread must not run into the exit's
 * destructors); the call_rcu worker may still be freeing released versions
 * (it frees, takes no lock of the store's, and exit does not wait for it). */
void ctx_close_at_exit(ctx_store *s)
{
#ifdef STORE_LEAK_CHECKED
	ctx_close(s); /* LeakSanitizer would report the store's memory */
#else
	if (!s || store_inherited(s))
		return;
	store_finish(s);
	feed_stop(s->feed);
	fork_untrack(s);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	s->lock_fd = -1;
#endif
}

ctx_status store_check_key(const ctx_store *s, const void *key, size_t klen)
{
	if (klen == 0)
		return ctx_fail(CTX_INVALID, "empty key");
	if (!key)
		return ctx_fail(CTX_INVALID, "NULL key");
	if (klen > s->opts.max_key_size)
		return ctx_fail(CTX_INVALID, "key of %zu bytes exceeds max_key_size %zu", klen,
		                s->opts.max_key_size);
	return CTX_OK;
}

ctx_status store_check_value(const ctx_store *s, const void *val, size_t vlen)
{
	if (!val && vlen)
		return ctx_fail(CTX_INVALID, "NULL value with length %zu", vlen);
	if (vlen > s->opts.max_value_size)
		return ctx_fail(CTX_INVALID, "value of %zu bytes exceeds max_value_size %zu", vlen,
		                s->opts.max_value_size);
	return CTX_OK;
}

/* ---- create, drop, get ---------------------------------------------------- */

static bool reserve_slot(ctx_store *s)
{
	size_t n = atomic_load(&s->live);
	do {
		if (n >= s->opts.max_contexts)
			return false;
	} while (!atomic_compare_exchange_weak(&s->live, &n, n + 1));
	return true;
}

ctx_context *context_new(ctx_store *s, const char *id, size_t idlen, uint64_t created_us)
{
	/* The index node goes after the id, aligned (context_inode). */
	unsigned height = index_random_height();
	size_t at = (offsetof(ctx_context, id) + idlen + 1 + _Alignof(index_node) - 1) &
	            ~(_Alignof(index_node) - 1);
	/* From the pool, not malloc (round 15): a create's context was its
	 * one block of glibc's, whose thread arenas grow a page at a time (an
	 * mprotect and a fault each: sysmalloc was 11% of a create at 16
	 * threads); the pool carves it from slab memory populated 128 KiB at
	 * a time, beside the create's version and trie (pool.c). */
	size_t size = at + index_node_size(height);
	ctx_context *c = pool_alloc(size);
	if (!c)
		return NULL;
	memset(c, 0, size);
	atomic_init(&c->refs, 1);
	c->store = s;
	c->idlen = (uint32_t)idlen;
	memcpy(c->id, id, idlen);
	index_node_init(context_inode(c), height, c->id, idlen, c);
	c->created_us = created_us;
	atomic_init(&c->last_access_us, created_us);
	wlock_init(&c->write_lock);
	return c;
}

/* Let go of c's versions and points. background: the head (and with it
 * the history chain) goes to the reclaimer (reclaim.c) instead of being
 * released here: a dropped context's versions may hold millions of keys,
 * and the thread that makes a drop durable is the log's flusher, which
 * tells every waiting writer that their sync is done only after it (round
 * 11: a DEL of a 200,000-field hash held every write ~1 s). */
static void context_let_go(ctx_context *c, bool background)
{
	ctx_state_release(atomic_exchange(&c->visible, NULL));
	ctx_state *head = c->head;
	c->head = NULL;
	if (!head || !background || c->store->replaying || !reclaim_defer(head))
		ctx_state_release(head);
	context_count_fields(c, false);
	c->oldest = NULL;
	c->kept = 0;
	points_clear(c);
}

/* Take c out of the table and let go of its versions, without counting it
 * out of `live` (it never was counted in). */
static void context_unlink(ctx_store *s, ctx_context *c, bool background)
{
	atomic_store(&c->dropped, true);
	atomic_store(&c->gone, true);
	index_lock(&s->index);
	index_remove_locked(&s->index, context_inode(c)); /* first: see the head comment */
	table_remove(s, c);
	index_unlock(&s->index);
	context_let_go(c, background);
}

/* Take c out of the table and let go of its versions. The caller holds the
 * write lock or is alone (recovery, close). */
static void context_remove(ctx_store *s, ctx_context *c)
{
	context_unlink(s, c, false);
	atomic_fetch_sub(&s->live, 1);
}

/* context_remove for a drop made durable: its versions are freed in the
 * background (context_let_go). */
static void context_remove_dropped(ctx_store *s, ctx_context *c)
{
	context_unlink(s, c, true);
	atomic_fetch_sub(&s->live, 1);
}

/* old's drop is decided but old is still in the table (it leaves once the
 * drop is durable: ctx_drop_nowait, or a ctx_drop still waiting): wait for
 * that, as a writer after the drop must (the context is gone for writers,
 * ctx_get_latest and listing at once). true once it has left; false if the
 * log failed first (the drop never becomes durable: the store refuses
 * writes). */
static bool create_await_drop(ctx_store *s, ctx_context *old)
{
	if (s->wait_durable && log_wait(s->log, old->drop_revision) != CTX_OK)
		return false;
	/* Durable (or nothing to wait for): whoever removes it (the dropper,
	 * or the flusher for a nowait drop) is on its way, holding nothing
	 * this thread holds. */
	while (!atomic_load(&old->gone))
		sched_yield();
	return true;
}

/* A create met context `id` in the table: make EXISTS mean what a reader
 * will see. An existing context that has expired is dropped, one whose drop
 * is decided is waited out (true: try the insert again); one whose own
 * create is not durable yet is waited for. */
static bool create_met_existing(ctx_store *s, const char *id, size_t idlen)
{
	ctx_context *old = find_context(s, id, idlen, true);
	if (!old)
		return true; /* gone meanwhile */
	bool retry = false;
	uint64_t now = store_now_us(s);
	uint64_t ttl = atomic_load(&old->ttl_us);
	if (atomic_load(&old->dropped)) {
		retry = create_await_drop(s, old);
	} else if (context_expired(old, now)) {
		retry = context_drop(old, CTX_EVENT_EXPIRED, now - ttl) == CTX_OK;
	} else if (!atomic_load(&old->visible) && s->log) {
		/* Its create holds the lock until logged; then help publish it
		 * (publishing is idempotent and never goes backwards). */
		context_lock(old);
		ctx_state *head = old->head ? ctx_state_retain(old->head) : NULL;
		context_unlock(old);
		if (head)
			(void)context_publish_durable(old, head, head->revision);
	}
	context_release(old);
	return retry;
}

/* Wait until rev is durable, then show st to readers; drops the caller's
 * reference to st. */
ctx_status context_publish_durable(ctx_context *c, ctx_state *st, uint64_t rev)
{
	ctx_status r = log_wait(c->store->log, rev);
	if (r == CTX_OK)
		context_publish(c, st);
	else
		store_report_skip(c->store, rev); /* never visible: no event */
	ctx_state_release(st);
	return r;
}

/* The body of a drop record: the id. */
static bool id_body(body_buf *b, const ctx_context *c)
{
	if (!body_reserve(b, 2 + c->idlen))
		return false;
	put_u16(b->data, (uint16_t)c->idlen);
	memcpy(b->data + 2, c->id, c->idlen);
	b->len = 2 + c->idlen;
	return true;
}

static ctx_status append_id_record(ctx_store *s, ctx_context *c, uint8_t type, uint64_t *rev,
                                   log_done *done)
{
	body_buf b = {0};
	if (!id_body(&b, c))
		return ctx_fail(CTX_NOMEM, "no memory for a log record");
	log_record rec = {
	    type, 0, c->incarnation, b.data, (uint32_t)b.len, crc32c(0, b.data, b.len), 0};
	ctx_status st = log_append_done(s->log, &rec, rev, done);
	body_free(&b);
	return st;
}

/* Watchers see a create with the keys it wrote. */
static void report_create(ctx_store *s, uint64_t rev, const ctx_context *c, const txn_op *ops,
                          size_t n)
{
	if (!s->feed)
		return; /* nobody to tell (store_report): build no key list */
	const void *kb[8];
	size_t lb[8];
	const void **keys = n <= 8 ? kb : malloc(n * sizeof(*keys));
	size_t *klens = n <= 8 ? lb : malloc(n * sizeof(*klens));
	size_t k = keys && klens ? n : 0;
	for (size_t i = 0; i < k; i++) {
		keys[i] = hamt_leaf_key(ops[i].leaf);
		klens[i] = hamt_leaf_klen(ops[i].leaf);
	}
	store_report(s, rev, CTX_EVENT_CREATED, c, 1, k, keys, klens);
	if (keys != kb)
		free(keys);
	if (klens != lb)
		free(klens);
}

ctx_status ctx_create(ctx_store *s, const char *id)
{
	if (s && store_inherited(s))
		return fork_refuse();
	return store_create(s, id, NULL, 0, NULL);
}

/* ---- changes finished by the flusher (nowait) ------------------------------ */

static void pending_finish(log_done *d, bool durable);

pending_change *pending_new(ctx_context *c, ctx_event_kind kind, const txn_op *ops, size_t n)
{
	pending_change *p = malloc(sizeof(*p) + n * sizeof(p->leaves[0]));
	if (!p)
		return NULL;
	/* A drop's committer links nothing (pending_change.linked). */
	bool links = kind == CTX_EVENT_COMMITTED || kind == CTX_EVENT_CREATED;
	*p = (pending_change){
	    .done = {.fn = pending_finish}, .c = c, .kind = kind, .linked = !links, .nkeys = n};
	context_retain(c);
	for (size_t i = 0; i < n; i++) {
		p->leaves[i] = ops[i].leaf;
		atomic_fetch_add_explicit(&ops[i].leaf->refs, 1, memory_order_relaxed);
	}
	return p;
}

void pending_free(pending_change *p)
{
	for (size_t i = 0; i < p->nkeys; i++)
		hamt_leaf_release(p->leaves[i]);
	ctx_state_release(p->base);
	ctx_state_release(p->st);
	context_release(p->c);
	free(p);
}

/* Report p's change with its keys (without them if out of memory). */
static void pending_report(ctx_store *s, pending_change *p)
{
	const void *kb[8];
	size_t lb[8];
	size_t n = p->nkeys;
	const void **keys = n <= 8 ? kb : malloc(n * sizeof(*keys));
	size_t *klens = n <= 8 ? lb : malloc(n * sizeof(*klens));
	size_t k = keys && klens ? n : 0;
	for (size_t i = 0; i < k; i++) {
		keys[i] = hamt_leaf_key(p->leaves[i]);
		klens[i] = hamt_leaf_klen(p->leaves[i]);
	}
	if (p->base) /* a clearing commit: its keys are a diff (flusher's thread) */
		store_report_clear(s, p->done.rev, p->c, p->base, p->st, k, keys, klens);
	else
		store_report(s, p->done.rev, p->kind, p->c, p->version, k, keys, klens);
	if (keys != kb)
		free(keys);
	if (klens != lb)
		free(klens);
}

/* The flusher finishes a batch's changes one after the other, and each
 * one's first touches were cache misses in a row: its pending_change, its
 * context and new version (written by a loop or writer thread on another
 * core), the version readers saw until now (last touched when it was
 * published, often long ago), its keys' leaves. At 100,000 contexts that
 * was 9% of a pipelined durable HSET's CPU (pending_finish and
 * context_publish_ref, nearly all on their first load). So while one
 * change is finished, the next ones' lines are loaded, two steps apart:
 * five ahead the pending_change itself, three ahead what it points to
 * (context, new version, leaves), one ahead the version readers see now
 * (a pointer read from the context loaded two steps before). A hint only:
 * the batch's list is the flusher's, its entries stay until their own fn
 * runs, and their fields were set before log_append_done; a pointer read
 * from a context may be stale (a prefetch does not fault). */
static const pending_change *pending_next(const log_done *d)
{
	d = d ? d->next : NULL;
	return d && d->fn == pending_finish ? caa_container_of(d, const pending_change, done)
	                                    : NULL;
}

static void pending_prefetch(const log_done *d)
{
	const pending_change *p1 = pending_next(d), *p2 = pending_next(p1 ? &p1->done : NULL);
	const pending_change *p3 = pending_next(p2 ? &p2->done : NULL);
	if (p1) /* its context came two steps ago */
		__builtin_prefetch(atomic_load_explicit(&p1->c->visible, memory_order_relaxed));
	if (!p3)
		return;
	/* p3 itself came two steps ago */
	__builtin_prefetch(p3->c);
	__builtin_prefetch(&p3->c->visible);
	if (p3->st)
		__builtin_prefetch(p3->st);
	for (size_t i = 0; i < p3->nkeys && i < 4; i++)
		__builtin_prefetch(p3->leaves[i]);
	const log_done *d5 = p3->done.next ? p3->done.next->next : NULL;
	if (d5)
		__builtin_prefetch(d5);
}

/* A clear of at most this many keys is reported by the flusher itself (its
 * diff costs about what reporting its keys as deletions did); a bigger one
 * by the call_rcu worker. Reporting later lets events decided before a
 * watch opened reach it (ctx_watch_open says so), so only big clears pay
 * that. */
#define CLEAR_REPORT_INLINE_MAX 4096

/* A clearing commit's report, in the call_rcu worker (pending_finish). */
static void pending_report_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	pool_bypass(true); /* the worker: it frees, never allocates (pool.c) */
	pending_change *p = caa_container_of(head, pending_change, rcu);
	/* (Run in a child of fork for an inherited store: its feed's lock may
	 * be held by a thread the child does not have, fork.c.) */
	if (!store_inherited(p->c->store))
		pending_report(p->c->store, p);
	ctx_state *st = p->st, *base = p->base;
	p->st = p->base = NULL;
	pending_free(p);
	state_release_in_callback(st);
	state_release_in_callback(base);
}

static void pending_finish(log_done *d, bool durable)
{
	pending_change *p = caa_container_of(d, pending_change, done);
	ctx_context *c = p->c;
	ctx_store *s = c->store;
	pending_prefetch(d);
	/* The committer may be between log_append_done and its last touch of
	 * p (pending_change.linked): wait for it, whatever the outcome. */
	while (!atomic_load_explicit(&p->linked, memory_order_acquire))
		sched_yield();
	if (!durable) {
		if (p->kind == CTX_EVENT_CREATED) {
			/* Never visible, and the store refuses writes now. */
			context_lock(c);
			bool remove = !atomic_load(&c->gone);
			if (remove)
				context_remove(s, c);
			context_unlock(c);
			if (remove)
				context_release(c);
		} else if (p->kind == CTX_EVENT_DROPPED || p->kind == CTX_EVENT_EXPIRED) {
			/* Never durable: the context stays, as listings show it (the
			 * store refuses writes now). */
			context_lock(c);
			atomic_store(&c->dropped, false);
			context_count_fields(c, c->head && c->head->data.count != 0);
			context_unlock(c);
		}
		store_report_skip(s, d->rev);
	} else if (p->kind == CTX_EVENT_DROPPED) {
		context_lock(c);
		context_remove_dropped(s, c);
		context_release(c); /* the table's reference */
		context_unlock(c);
		pending_report(s, p);
	} else {
		context_publish(c, p->st);
		if (p->base && p->base->data.count > CLEAR_REPORT_INLINE_MAX) {
			/* A clear of a big version: its removed keys are a diff
			 * of O(keys), which the flusher must not pay before it
			 * tells every waiting writer their sync is done. The
			 * call_rcu worker reports it (watchers get it in revision
			 * order all the same: later events wait for it);
			 * ctx_close's rcu_barrier runs it before the feed
			 * closes. */
			ctx_call_rcu(&p->rcu, pending_report_rcu);
			return;
		}
		pending_report(s, p);
	}
	pending_free(p);
}

static ctx_status create_context(ctx_store *s, const char *id, const txn_op *ops, size_t n,
                                 uint64_t *rev_out, size_t *prepare)
{
	size_t idlen;
	ctx_status st = store_check_id(s, id, &idlen);
	if (st != CTX_OK)
		return st;
	store_throttle(s, rev_out != NULL);
	/* Start loading the table slot now: it arrives while the version is
	 * built, not under the index lock (the insert's one cache miss). */
	uint64_t h = hamt_hash(id, idlen);
	table_prefetch(s, h);
	uint64_t now = store_now_us(s);
	ctx_context *c = context_new(s, id, idlen, now);
	hamt data = {0}, meta = {0};
	body_buf body = {0};
	if (c && n && (st = apply_txn_ops(&data, &meta, ops, n, now, false)) != CTX_OK)
		st = ctx_fail(st, "no memory to create '%s'", id);
	if (c && st == CTX_OK && s->log)
		st = encode_commit(c, ops, n, now, false, &body);
	ctx_state *first = c && st == CTX_OK ? state_new(c, 1, data, meta) : NULL;
	if (!first) {
		hamt_release(&data);
		hamt_release(&meta);
		body_free(&body);
		if (c)
			context_release(c);
		return st != CTX_OK ? st : ctx_fail(CTX_NOMEM, "no memory for a context");
	}
	first->updated_us = now;
	first->changed = data.count;
	/* Inserted locked, invisible and without a head: writers that find it
	 * wait for the create, ctx_get_latest does not see it until its
	 * revision is decided (then first becomes the head), and ctx_get not
	 * until its first version is published. */
	context_lock(c);

	ctx_context *got;
	for (int attempt = 0;; attempt++) {
		index_lock(&s->index);
		got = table_insert(s, c, h, prepare);
		if (got == c)
			index_insert_locked(&s->index, context_inode(c));
		index_unlock(&s->index);
		if (got == c || !got || attempt == 3 || !create_met_existing(s, id, idlen))
			break;
	}
	if (got != c) {
		/* Never published: nobody else can hold it. */
		context_unlock(c);
		ctx_state_release(first); /* drops its reference to c */
		context_release(c);
		body_free(&body);
		if (!got)
			return ctx_fail(CTX_NOMEM, "no memory to create '%s'", id);
		if (s->log && log_failed(s->log)) {
			/* What is in the way may be a drop the failed log will
			 * never make durable: no retry can succeed (as a commit's
			 * CONFLICT after the failure, txn.c). */
			errno = log_failed(s->log);
			return ctx_fail(CTX_CLOSED, "the log failed (%s); writes are refused",
			                strerror(errno));
		}
		return ctx_fail(CTX_EXISTS, "context '%s' exists", id);
	}
	/* Count it only now that it is known to be new: a create that fails
	 * with EXISTS never holds a slot. */
	if (!reserve_slot(s)) {
		context_unlink(s, c, false);
		context_unlock(c);
		ctx_state_release(first);
		context_release(c);
		body_free(&body);
		return ctx_fail(CTX_LIMIT, "max_contexts (%zu) contexts exist",
		                s->opts.max_contexts);
	}
	uint64_t rev;
	pending_change *p = NULL;
	if (rev_out && s->wait_durable && !(p = pending_new(c, CTX_EVENT_CREATED, ops, n))) {
		context_remove(s, c);
		context_unlock(c);
		ctx_state_release(first);
		context_release(c);
		body_free(&body);
		return ctx_fail(CTX_NOMEM, "no memory to create '%s'", id);
	}
	if (p) {
		p->st = ctx_state_retain(first);
		p->version = 1;
	}
	if (s->log) {
		log_record rec = {
		    REC_CREATE, 1, 0, body.data, (uint32_t)body.len, crc32c(0, body.data, body.len),
		    now};
		st = log_append_done(s->log, &rec, &first->revision, p ? &p->done : NULL);
		body_free(&body);
		if (st != CTX_OK) {
			if (p)
				pending_free(p);
			context_remove(s, c);
			context_unlock(c);
			ctx_state_release(first);
			context_release(c);
			return st;
		}
		rev = first->revision;
	} else {
		rev = first->revision = atomic_fetch_add(&s->revision, 1) + 1;
	}
	c->incarnation = rev;
	ctx_state *cut = context_push_head(c, first); /* first's reference moves there */
	if (p)                                        /* p may go now */
		atomic_store_explicit(&p->linked, true, memory_order_release);
	ctx_state_release(cut);
	if (rev_out)
		*rev_out = rev;
	if (p) {
		/* The flusher publishes and reports it once durable. */
		context_unlock(c);
		return CTX_OK;
	}
	context_retain(c); /* ours until reported: a drop may come once unlocked */
	if (s->wait_durable) {
		ctx_state_retain(first);
		context_unlock(c);
		st = context_publish_durable(c, first, rev);
		if (st != CTX_OK) {
			/* Never visible, and the store now refuses writes: take it
			 * out of the table again. */
			context_lock(c);
			bool remove = !atomic_load(&c->gone);
			if (remove)
				context_remove(s, c);
			context_unlock(c);
			if (remove)
				context_release(c);
		}
	} else {
		context_publish(c, first);
		context_unlock(c);
	}
	if (st == CTX_OK)
		report_create(s, rev, c, ops, n);
	context_release(c);
	return st;
}

ctx_status store_create(ctx_store *s, const char *id, const txn_op *ops, size_t n,
                        uint64_t *rev_out)
{
	size_t prepare = 0;
	ctx_status st = create_context(s, id, ops, n, rev_out, &prepare);
	if (prepare) /* holding no lock now */
		table_prepare(s, prepare);
	return st;
}

/* Drop c (kind: dropped or expired); if idle_since is not 0, only if it was
 * not used after that time (else CTX_CONFLICT). The caller's reference to c stays
 * the caller's. */
static ctx_status context_drop_as(ctx_context *c, ctx_event_kind kind, uint64_t idle_since,
                                  uint64_t *rev_out)
{
	ctx_store *s = c->store;
	ctx_status st = CTX_OK;
	pending_change *p = NULL;
	if (rev_out && s->wait_durable && !(p = pending_new(c, kind, NULL, 0)))
		return ctx_fail(CTX_NOMEM, "no memory to drop '%s'", c->id);
	context_lock(c);
	uint64_t rev = 0;
	if (atomic_load(&c->dropped))
		st = ctx_fail(CTX_NOT_FOUND, "no context '%s'", c->id);
	else if (idle_since && atomic_load(&c->last_access_us) > idle_since)
		st = ctx_fail(CTX_CONFLICT, "context '%s' was used meanwhile", c->id);
	else if (s->log)
		st = append_id_record(s, c, kind == CTX_EVENT_EXPIRED ? REC_EXPIRE : REC_DROP, &rev,
		                      p ? &p->done : NULL);
	else
		rev = atomic_fetch_add(&s->revision, 1) + 1;
	if (st != CTX_OK) {
		context_unlock(c);
		if (p)
			pending_free(p);
		return st;
	}
	if (rev_out)
		*rev_out = rev;
	if (p) {
		/* The flusher takes it out of the table once durable. */
		c->drop_revision = rev;
		atomic_store(&c->dropped, true);
		context_count_fields(c, false);
		context_unlock(c);
		return CTX_OK;
	}
	/* No more commits from here on; readers keep seeing the last version
	 * until the drop is durable. */
	c->drop_revision = rev;
	atomic_store(&c->dropped, true);
	context_count_fields(c, false);
	if (s->wait_durable) {
		context_unlock(c);
		st = log_wait(s->log, rev);
		context_lock(c);
	}
	if (st == CTX_OK) {
		context_remove_dropped(s, c);
		context_release(c); /* the table's reference */
	} else {
		atomic_store(&c->dropped, false); /* never durable: nothing changed */
		context_count_fields(c, c->head && c->head->data.count != 0);
	}
	context_unlock(c);
	if (st == CTX_OK)
		store_report(s, rev, kind, c, 0, 0, NULL, NULL);
	else if (rev)
		store_report_skip(s, rev);
	return st;
}

ctx_status context_drop(ctx_context *c, ctx_event_kind kind, uint64_t idle_since)
{
	return context_drop_as(c, kind, idle_since, NULL);
}

ctx_status ctx_drop(ctx_store *s, const char *id)
{
	if (s && store_inherited(s))
		return fork_refuse();
	return ctx_drop_nowait(s, id, NULL);
}

ctx_status ctx_drop_nowait(ctx_store *s, const char *id, uint64_t *revision_out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	ctx_context *c = NULL;
	if (s)
		store_throttle(s, revision_out != NULL);
	ctx_status st = store_open_context(s, id, &c);
	if (st != CTX_OK)
		return st;
	uint64_t rev = 0;
	st = context_drop_as(c, CTX_EVENT_DROPPED, 0, revision_out ? &rev : NULL);
	context_release(c);
	if (st == CTX_OK && revision_out)
		*revision_out = rev;
	return st;
}

/* ---- recovery helpers (single-threaded) ------------------------------------- */

ctx_status store_insert_recovered(ctx_store *s, ctx_context *c, ctx_state *st)
{
	state_release_now(context_push_head(c, st));
	return store_publish_recovered(s, c);
}

ctx_status store_publish_recovered(ctx_store *s, ctx_context *c)
{
	context_retain(c); /* the table's */
	atomic_store(&c->visible, ctx_state_retain(c->head));
	index_lock(&s->index);
	ctx_context *got = table_insert(s, c, hamt_hash(c->id, c->idlen), NULL);
	if (got == c)
		index_insert_locked(&s->index, context_inode(c));
	index_unlock(&s->index);
	if (got != c) {
		/* Not in the table: the caller's reference is the last. */
		context_let_go(c, false);
		context_release(c);
		return ctx_fail(got ? CTX_CORRUPT : CTX_NOMEM,
		                got ? "context '%s' loaded twice" : "no memory for context '%s'",
		                c->id);
	}
	atomic_fetch_add(&s->live, 1);
	return CTX_OK;
}

ctx_context *store_lookup_recovered(ctx_store *s, const char *id, size_t idlen)
{
	ctx_rcu_read_lock();
	ctx_context *c = table_lookup(s, id, idlen);
	ctx_rcu_read_unlock();
	return c;
}

void store_abandon_loaded(ctx_context *c)
{
	context_let_go(c, false);
	context_release(c);
}

void store_remove_recovered(ctx_store *s, ctx_context *c)
{
	context_remove(s, c);
	context_release(c);
}

void store_set_head_recovered(ctx_context *c, ctx_state *st)
{
	state_release_now(context_push_head(c, st));
	state_release_now(atomic_exchange(&c->visible, ctx_state_retain(st)));
}

/* Empty the store (it is closing, or recovery starts over): nothing else
 * uses it. Contexts go in id order, first of the index each time, so that
 * taking each out of the index costs one step per level; in the table's
 * order each removal searched a skip list of every context, cold (a quarter
 * of a create benchmark's CPU time went to closing its store). The table
 * holds only indexed contexts then; its walk is kept for safety. */
void store_clear(ctx_store *s)
{
	/* Swap in an empty table first: each removal then leaves the table at
	 * once, where it cost a cache miss per context in a big array (15% of
	 * a create benchmark's CPU time). The old array is walked last, for
	 * safety, and freed after a grace period. */
	ctab *empty = table_alloc(TABLE_MIN_SLOTS, false), *old;
	index_lock(&s->index);
	table_settle(s);
	old = atomic_load_explicit(&s->table, memory_order_relaxed);
	if (empty) {
		atomic_store_explicit(&s->table, empty, memory_order_release);
		s->table_live = s->table_tombs = 0;
	}
	ctab *spare = s->table_spare; /* sized for the old one */
	s->table_spare = NULL;
	index_unlock(&s->index);
	table_free(spare);
	ctx_rcu_read_lock();
	for (index_node *n; (n = index_seek(&s->index, NULL, 0, false));) {
		ctx_context *c = index_owner(n);
		tsan_subscribe(c);
		context_lock(c);
		context_remove(s, c);
		context_unlock(c);
		context_release(c);
	}
	table_iter iter = {.t = old};
	for (ctx_context *c = table_next(&iter); c; c = table_next(&iter)) {
		if (atomic_load(&c->gone))
			continue; /* removed above (still allocated: RCU) */
		context_lock(c);
		context_remove(s, c);
		context_unlock(c);
		context_release(c);
	}
	ctx_rcu_read_unlock();
	if (empty)
		ctx_call_rcu(&old->rcu, table_free_rcu);
	/* Nothing loaded has a time-to-live now: a damaged checkpoint that
	 * recovery skips (recovery.c load_checkpoint) must not leave its mark
	 * on DBSIZE's count (a walk instead of the counter) and the reaper's
	 * rounds (a scan of the table) for the life of the store. */
	atomic_store(&s->any_ttl, false);
}

ctx_state *state_retain_current(_Atomic(ctx_state *) *slot)
{
	for (;;) {
		ctx_state *v = atomic_load_explicit(slot, memory_order_acquire);
		if (!v || state_try_retain(v))
			return v;
		/* A count of zero on a version the slot still shows: the context
		 * is being let go (the slot held the last reference). Waiting for
		 * the slot to clear could wait for a release that waits for a
		 * grace period this read-side section holds up: absent. */
		if (atomic_load_explicit(slot, memory_order_acquire) == v)
			return NULL;
	}
}

/* ---- the id of a read ----------------------------------------------------------- */

/* The length of a read's id (idlen), with the checks that cost nothing:
 * a NULL store or id, an empty id, one longer than CTX_ID_MAX. Whether its
 * bytes are valid (no control byte) is asked only if the lookup misses
 * (read_missing): every context in the table was created or loaded with a
 * checked id, so an id that names one, byte for byte, is valid. A read that
 * finds its context skips a loop over the id's bytes (round 12,
 * docs/decisions.md); a read of an invalid id still gets CTX_INVALID, after
 * a lookup that cannot find it. */
static inline ctx_status read_id(const ctx_store *s, const char *id, size_t *idlen)
{
	if (!s || !id)
		return store_check_id(s, id, idlen);
	size_t n = strnlen(id, CTX_ID_MAX + 1);
	if (n == 0 || n > CTX_ID_MAX)
		return ctx_check_id(id, idlen);
	*idlen = n;
	return CTX_OK;
}

/* The failure of a read whose lookup found no usable context: CTX_INVALID
 * for an id with a control byte (never checked before, read_id), else
 * CTX_NOT_FOUND (expired: found, so its id is valid). */
static ctx_status read_missing(ctx_store *s, const char *id, bool expired)
{
	if (expired) {
		reaper_kick(s);
		return ctx_fail(CTX_NOT_FOUND, "context '%s' expired", id);
	}
	size_t idlen;
	ctx_status st = ctx_check_id(id, &idlen);
	return st != CTX_OK ? st : ctx_fail(CTX_NOT_FOUND, "no context '%s'", id);
}

/* Whether c may be read: the common case (no time-to-live) inline. */
static inline bool read_usable(ctx_context *c)
{
	return !atomic_load_explicit(&c->ttl_us, memory_order_relaxed) || context_usable(c);
}

ctx_status ctx_get(ctx_store *s, const char *id, ctx_state **out)
{
	size_t idlen;
	ctx_status st = read_id(s, id, &idlen);
	if (st != CTX_OK)
		return st;
	if (!out)
		return ctx_fail(CTX_INVALID, "NULL output pointer");
	ctx_state *v = NULL;
	bool expired = false;
	ctx_rcu_read_lock();
	ctx_context *c = table_lookup(s, id, idlen);
	if (c) {
		v = state_retain_current(&c->visible);
		expired = v && !read_usable(c);
	}
	ctx_rcu_read_unlock();
	if (expired) {
		ctx_state_release(v);
		v = NULL;
	}
	if (!v)
		return read_missing(s, id, expired);
	*out = v;
	return CTX_OK;
}

/* ---- reads without a reference ------------------------------------------------ */

/* The visible version of context id (idlen bytes), with no reference: the
 * caller is inside an RCU read-side critical section, and the version, its
 * maps and every node and leaf they reach stay allocated until it ends
 * (state.c frees a released version's struct and maps one grace period
 * after its last reference goes). NULL if there is none; then *expired says
 * whether it was past its time-to-live. */
static inline const ctx_state *visible_unref(ctx_store *s, const char *id, size_t idlen,
                                             bool *expired)
{
	ctx_context *c = table_lookup(s, id, idlen);
	if (!c)
		return NULL;
	/* Announce reads without a reference before loading `visible` (both
	 * seq_cst; state_note_hidden): the writers of c then keep a hidden
	 * version's trie for a grace period. One store per context, ever. */
	if (!atomic_load(&c->read_noref))
		atomic_store(&c->read_noref, true);
	const ctx_state *v = atomic_load(&c->visible);
	context_prefetch_root(c);
	if (v && !read_usable(c)) {
		*expired = true;
		return NULL;
	}
	return v;
}

ctx_status ctx_get_value(ctx_store *s, const char *id, const void *key, size_t klen, void *buf,
                         size_t cap, size_t *vlen)
{
	size_t idlen;
	ctx_status st = read_id(s, id, &idlen);
	if (st != CTX_OK)
		return st;
	if (!vlen || (!key && klen) || (!buf && cap))
		return ctx_fail(CTX_INVALID, "NULL key, buffer or length pointer");
	bool expired = false;
	uint32_t n = 0;
	uint64_t hash = hamt_hash(key, klen); /* outside the chain of misses */
	ctx_rcu_read_lock();
	const ctx_state *v = visible_unref(s, id, idlen, &expired);
	const hamt_leaf *l = v ? hamt_find(&v->data, hash, key, klen) : NULL;
	if (l) {
		n = l->vlen;
		if (n <= cap && n)
			memcpy(buf, hamt_leaf_value(l), n);
	}
	ctx_rcu_read_unlock();
	if (!v)
		return read_missing(s, id, expired);
	if (!l)
		return ctx_fail(CTX_NOT_FOUND, "no such key in context '%s'", id);
	*vlen = n;
	if (n > cap)
		return ctx_fail(CTX_LIMIT, "value of %u bytes exceeds the buffer of %zu", n, cap);
	return CTX_OK;
}

#define EACH_BATCH 32 /* leaves gathered at a time by ctx_get_each */

ctx_status ctx_get_each(ctx_store *s, const char *id, ctx_pair_fn fn, void *arg)
{
	size_t idlen;
	ctx_status st = read_id(s, id, &idlen);
	if (st != CTX_OK)
		return st;
	if (!fn)
		return ctx_fail(CTX_INVALID, "NULL function");
	bool expired = false;
	ctx_rcu_read_lock();
	const ctx_state *v = visible_unref(s, id, idlen, &expired);
	if (v) {
		/* Gather the leaves a batch at a time, then visit them: the
		 * gathering walks only nodes and starts every leaf's load. */
		hamt_cursor c;
		const hamt_leaf *batch[EACH_BATCH];
		size_t n;
		bool more = true;
		hamt_cursor_start(&c, &v->data);
		do {
			n = hamt_cursor_fill(&c, batch, EACH_BATCH);
			for (size_t i = 0; more && i < n; i++) {
				const hamt_leaf *l = batch[i];
				more = fn(arg, hamt_leaf_key(l), hamt_leaf_klen(l),
				          hamt_leaf_value(l), l->vlen);
			}
		} while (more && n == EACH_BATCH); /* a short batch ends the walk */
	}
	ctx_rcu_read_unlock();
	return v ? CTX_OK : read_missing(s, id, expired);
}

ctx_status ctx_get_latest(ctx_store *s, const char *id, ctx_state **out)
{
	size_t idlen;
	ctx_status st = read_id(s, id, &idlen);
	if (st != CTX_OK)
		return st;
	if (!out)
		return ctx_fail(CTX_INVALID, "NULL output pointer");
	ctx_state *v = NULL;
	bool expired = false;
	ctx_rcu_read_lock();
	ctx_context *c = table_lookup(s, id, idlen);
	if (c && !atomic_load(&c->dropped)) {
		v = state_retain_current(&c->head);
		if (v && atomic_load_explicit(&c->ttl_us, memory_order_relaxed)) {
			expired = context_expired(c, store_now_us(s));
			if (!expired)
				context_touch(c);
		}
	}
	ctx_rcu_read_unlock();
	if (expired) {
		ctx_state_release(v);
		v = NULL;
	}
	if (!v)
		return read_missing(s, id, expired);
	*out = v;
	return CTX_OK;
}

void ctx_get_stats(ctx_store *s, ctx_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	if (!s)
		return;
	out->contexts = atomic_load(&s->live);
	out->revision = atomic_load(&s->revision);
	if (s->log) {
		out->revision = log_last_revision(s->log);
		out->log_syncs = log_syncs(s->log);
		out->log_led_syncs = log_led_rounds(s->log);
		out->io_errno = log_failed(s->log);
		out->checkpoints = atomic_load(&s->checkpoints);
		out->checkpoint_revision = atomic_load(&s->last_checkpoint);
	}
}

size_t ctx_count(ctx_store *s)
{
	return s ? atomic_load(&s->live) : 0;
}

/* ---- listing -------------------------------------------------------------- */

bool store_listed(const ctx_context *c)
{
	tsan_subscribe(c);
	if (!atomic_load(&c->visible) || atomic_load(&c->dropped)) /* not created yet, or gone */
		return false;
	/* Listing is no access: it notes no time, and leaves an expired
	 * context to the reaper's next round. */
	return !atomic_load_explicit(&c->ttl_us, memory_order_relaxed) ||
	       !context_expired(c, store_now_us(c->store));
}

/* The first node a listing of prefix (plen bytes) after `after` looks at: the
 * first id > after, or >= prefix if that comes later. */
static index_node *list_start(ctx_store *s, const char *prefix, size_t plen, const char *after)
{
	size_t alen = after ? strlen(after) : 0;
	if (after && (!plen || ctx_key_compare(after, alen, prefix, plen) >= 0))
		return index_seek(&s->index, after, alen, true);
	return index_seek(&s->index, plen ? prefix : NULL, plen, false);
}

static bool has_prefix(const index_node *n, const char *prefix, size_t plen)
{
	return plen == 0 || (n->klen >= plen && memcmp(index_key(n), prefix, plen) == 0);
}

/* Append a copy of id to the page (false when out of memory). */
static bool page_add(ctx_list *page, size_t *cap, const char *id)
{
	if (page->count == *cap) {
		size_t grown = *cap ? 2 * *cap : 16;
		char **g = realloc(page->ids, grown * sizeof(*g));
		if (!g)
			return false;
		page->ids = g;
		*cap = grown;
	}
	if (!(page->ids[page->count] = strdup(id)))
		return false;
	page->count++;
	return true;
}

ctx_status ctx_list_ids(ctx_store *s, const char *prefix, const char *after, size_t limit,
                        ctx_list *out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!s || !out)
		return ctx_fail(CTX_INVALID, "NULL store or output");
	size_t plen = prefix ? strlen(prefix) : 0;
	size_t cap = limit && limit < 16 ? limit : 16;
	ctx_list page = {0, malloc(cap * sizeof(char *))};
	bool ok = page.ids != NULL;
	ctx_rcu_read_lock();
	index_node *n = list_start(s, prefix, plen, after);
	for (; n && ok && (!limit || page.count < limit); n = index_next(n)) {
		if (!has_prefix(n, prefix, plen))
			break; /* sorted: no later id has it either */
		if (store_listed(index_owner(n)))
			ok = page_add(&page, &cap, index_key(n));
	}
	ctx_rcu_read_unlock();
	if (!ok) {
		ctx_list_free(&page);
		return ctx_fail(CTX_NOMEM, "no memory for the list of ids");
	}
	*out = page;
	return CTX_OK;
}

void ctx_list_free(ctx_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++)
		free(l->ids[i]);
	free(l->ids);
	l->ids = NULL;
	l->count = 0;
}

/* ---- prefetching the contexts of upcoming requests (r7-ctxd) --------------- */

/* How many ids one round of ctx_prefetch carries through its stages. */
#define PREFETCH_MAX 32

/* The context of the first table entry whose hash is h, or NULL (a probe from
 * h's home slot, stopping at an empty slot). Under RCU. */
static ctx_context *prefetch_candidate(const ctab *t, uint64_t h)
{
	for (size_t i = h & t->mask, n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
		ctx_context *c =
		    atomic_load_explicit(&((ctab_slot *)&t->slot[i])->c, memory_order_acquire);
		if (!c)
			return NULL;
		if (c != CTAB_TOMB && atomic_load_explicit(&((ctab_slot *)&t->slot[i])->hash,
		                                           memory_order_relaxed) == h)
			return c;
	}
	return NULL;
}

/* Stage 3 for one context: the lines of its version that taking a
 * reference and reading the trie touch (prefetched, not dereferenced). */
static void prefetch_state(ctx_state *v)
{
	if (!v)
		return;
	__builtin_prefetch(v, 1);
	__builtin_prefetch(&v->data, 0);
}

/* Levels of a key's trie path ctx_prefetch_keys follows: a root and three
 * more reach the leaves of maps of tens of thousands of keys. */
#define PREFETCH_LEVELS 4

/* Stage 5 (with keys): the path to keys[i] in v[i]'s trie, level by level
 * over all of them, so that the misses of one level overlap. Under the
 * references stage 4 took. */
static void prefetch_paths(const ctx_store *s, ctx_state *const *v, const void *const *keys,
                           const size_t *klens, size_t n)
{
	const void *node[PREFETCH_MAX];
	uint64_t h[PREFETCH_MAX];
	for (size_t i = 0; i < n; i++) {
		node[i] =
		    v[i] && keys[i] && klens[i] <= s->opts.max_key_size ? v[i]->data.root : NULL;
		if (node[i])
			h[i] = hamt_hash(keys[i], klens[i]);
	}
	for (unsigned level = 0; level < PREFETCH_LEVELS; level++) {
		bool more = false;
		for (size_t i = 0; i < n; i++)
			if (node[i]) {
				node[i] = hamt_prefetch_step(node[i], h[i], level);
				more = more || node[i];
			}
		if (!more)
			return;
	}
}

static void prefetch_round(ctx_store *s, const char *const *ids, const size_t *idlens,
                           const void *const *keys, const size_t *klens, size_t n)
{
	uint64_t h[PREFETCH_MAX];
	ctx_context *c[PREFETCH_MAX];
	ctx_rcu_read_lock();
	const ctab *t = atomic_load_explicit(&s->table, memory_order_acquire);
	const ctab *old = atomic_load_explicit(&((ctab *)t)->old, memory_order_acquire);
	if (old)
		t = old; /* growing: it holds all but the newest contexts */
	bool named[PREFETCH_MAX];
	for (size_t i = 0; i < n; i++) { /* 1: the slots (no id, or none valid: none) */
		named[i] = ids[i] && idlens[i] && idlens[i] <= CTX_ID_MAX;
		h[i] = named[i] ? hamt_hash(ids[i], idlens[i]) : 0;
		if (named[i])
			__builtin_prefetch(&t->slot[h[i] & t->mask]);
	}
	for (size_t i = 0; i < n; i++) { /* 2: the contexts, id and head */
		c[i] = named[i] ? prefetch_candidate(t, h[i]) : NULL;
		if (c[i]) {
			tsan_subscribe(c[i]);
			__builtin_prefetch(c[i]);
			__builtin_prefetch(&c[i]->visible);
		}
	}
	for (size_t i = 0; i < n; i++) { /* 3: the versions */
		if (!c[i] || !context_is(c[i], ids[i], idlens[i])) {
			c[i] = NULL;
			continue;
		}
		ctx_state *v = atomic_load_explicit(&c[i]->head, memory_order_acquire);
		prefetch_state(v);
		ctx_state *vis = atomic_load_explicit(&c[i]->visible, memory_order_acquire);
		if (vis != v)
			prefetch_state(vis);
	}
	/* 4: the trie roots. A version's root pointer is cleared when its trie
	 * is freed before the struct (state.c), so it is read only under a
	 * reference: taking it now costs an atomic on the line stage 3 loaded,
	 * where the commit's or the read's own first touch of a cold root
	 * would wait for memory. */
	ctx_state *v[PREFETCH_MAX];
	for (size_t i = 0; i < n; i++) {
		v[i] =
		    c[i] && !atomic_load(&c[i]->dropped) ? state_retain_current(&c[i]->head) : NULL;
		if (v[i])
			__builtin_prefetch(v[i]->data.root, 1);
	}
	ctx_rcu_read_unlock();
	if (keys)
		prefetch_paths(s, v, keys, klens, n);
	for (size_t i = 0; i < n; i++)
		ctx_state_release(v[i]);
}

void ctx_prefetch(ctx_store *s, const char *const *ids, const size_t *idlens, size_t n)
{
	ctx_prefetch_keys(s, ids, idlens, NULL, NULL, n);
}

void ctx_prefetch_keys(ctx_store *s, const char *const *ids, const size_t *idlens,
                       const void *const *keys, const size_t *klens, size_t n)
{
	if (!s || !ids || !idlens || (keys && !klens))
		return;
	for (size_t at = 0; at < n; at += PREFETCH_MAX)
		prefetch_round(s, ids + at, idlens + at, keys ? keys + at : NULL,
		               keys ? klens + at : NULL,
		               n - at < PREFETCH_MAX ? n - at : PREFETCH_MAX);
}

/* ---- contexts that hold fields (r7-ctxd, r8-ctxd) --------------------------- */

/* The last revision handed out: at or above that of every change already
 * counted in store.with_fields (read after it). */
static uint64_t last_revision(ctx_store *s)
{
	return s->log ? log_last_revision(s->log) : atomic_load(&s->revision);
}

/* The walk, for a store where a time-to-live was ever set: a context past
 * it counts until the reaper drops it in store.with_fields, but not here. */
static size_t count_with_fields_walk(ctx_store *s, uint64_t *revision_out)
{
	size_t n = 0;
	uint64_t rev = 0, now = store_now_us(s);
	table_iter iter;
	ctx_rcu_read_lock();
	for (ctx_context *c = table_first(s, &iter); c; c = table_next(&iter)) {
		tsan_subscribe(c);
		if (atomic_load(&c->dropped) ||
		    (atomic_load_explicit(&c->ttl_us, memory_order_relaxed) &&
		     context_expired(c, now)))
			continue;
		ctx_state *v = state_retain_current(&c->head);
		if (!v)
			continue;
		if (ctx_state_count(v) > 0) {
			n++;
			if (ctx_state_revision(v) > rev)
				rev = ctx_state_revision(v);
		}
		ctx_state_release(v);
	}
	ctx_rcu_read_unlock();
	/* The count also depends on what the walk left out (contexts emptied
	 * or dropped, maybe not durable yet): the last revision handed out,
	 * read after the walk, covers every change it saw or skipped. */
	uint64_t last = last_revision(s);
	*revision_out = last > rev ? last : rev;
	return n;
}

size_t ctx_count_with_fields(ctx_store *s, uint64_t *revision_out)
{
	uint64_t rev = 0;
	size_t n = 0;
	if (s && atomic_load(&s->any_ttl)) {
		n = count_with_fields_walk(s, &rev);
	} else if (s) {
		n = atomic_load(&s->with_fields);
		rev = last_revision(s);
	}
	if (revision_out)
		*revision_out = rev;
	return n;
}
