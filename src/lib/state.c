/*
 * state.c - versions of a context (ctx_state) and iteration over them.
 *
 * A state is one immutable version: a data map and a metadata map (both
 * persistent tries sharing structure with neighbouring versions), its version
 * number, store revision and commit time. It is reference counted. When the
 * last reference goes, the struct AND its maps are freed one RCU grace period
 * later: a reader may still be reading its refs field to try to take a
 * reference (and will see 0 and retry), and the reference-free reads
 * (ctx_get_value, ctx_get_each) read the trie of the visible version inside
 * one read-side critical section without any reference. Every trie node and
 * leaf is kept alive by the maps of each version that reaches it, so one
 * grace period between the last reference to a version and the release of its
 * maps covers every node such a reader can reach. They go to RCU in batches of
 * STATE_BATCH per thread (see state_free_deferred), and at most
 * STATE_DEFERRED_MAX states wait process-wide: past that a thread that fills
 * a batch waits for a grace period itself (synchronize_rcu) and frees it. Log replay
 * runs before anyone can read the store and frees them at once
 * (state_release_now). Structs, like trie nodes and leaves, come from and go
 * back to the thread's block cache (pool.c); the call_rcu worker's callbacks
 * bypass it (they free, and never allocate one).
 *
 * Iteration: a ctx_iter is malloc'd and holds a reference to its state; a
 * ctx_iter_stack is the same trie cursor in the caller's storage, with no
 * reference (the caller holds the state), for readers that must not allocate.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "reclaim.h"
#include "store.h"
#include "util.h"

struct ctx_iter {
	ctx_state *st;
	hamt_cursor cursor;
};

ctx_state *state_new_adopting(ctx_context *c, uint64_t version, hamt data, hamt meta)
{
	ctx_state *st = pool_alloc(sizeof(*st));
	if (!st)
		return NULL;
	atomic_init(&st->refs, 1);
	st->ctx = c;
	st->version = version;
	st->revision = 0;
	st->updated_us = 0; /* every caller sets its commit time */
	st->changed = 0;
	st->light = false;
	st->data = data;
	st->meta = meta;
	atomic_init(&st->prev, NULL);
	st->next = NULL;
	st->hidden_seq = UINT64_MAX;
	return st;
}

ctx_state *state_new(ctx_context *c, uint64_t version, hamt data, hamt meta)
{
	ctx_state *st = state_new_adopting(c, version, data, meta);
	if (st)
		context_retain(c);
	return st;
}

/* Take a reference unless the count already dropped to zero. The caller is in
 * an RCU read-side critical section, so the struct itself is still there. */
bool state_try_retain(ctx_state *st)
{
	unsigned r = atomic_load_explicit(&st->refs, memory_order_relaxed);
	while (r != 0) {
		if (atomic_compare_exchange_weak_explicit(&st->refs, &r, r + 1,
		                                          memory_order_acquire,
		                                          memory_order_relaxed))
			return true;
	}
	return false;
}

ctx_state *ctx_state_retain(ctx_state *st)
{
	if (!st)
		return NULL;
	atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
	return st;
}

/* ---- freeing the states, in batches ------------------------------------------- */

/* A released state (struct and maps) must outlive a grace period. One
 * call_rcu per version cost a third of a small commit (the queueing, and
 * waking liburcu's worker thread for nearly every commit), so each thread
 * gathers the states it released in a batch, linked through their `next`
 * field (unused once the last reference is gone: no history chain holds
 * them), STATE_BATCH at a time.
 *
 * FREED AT HOME: a full batch becomes the thread's `waiting` batch and the
 * thread queues its `tick`, an rcu_head whose callback only says that a grace
 * period has passed. The thread frees the waiting batch itself, at its next
 * full batch after the tick: the memory goes back to the thread that
 * released it (mostly the committer that allocated it, whose glibc cache
 * takes it back; the call_rcu worker freeing it made 64 committing threads
 * queue on glibc's arena locks), and the worker runs an empty callback.
 *
 * TRIES FREED AT ONCE: ticks are numbered (`tick_queued`) and their
 * callbacks record the highest one completed (`tick_done`). A version that
 * stops being visible (context_publish) records the last number handed out
 * (state_note_hidden). Once a tick queued after that has completed, every
 * reader that saw the version visible has left its critical section, so its
 * trie is freed as soon as its last reference goes, by the releasing thread,
 * while it is warm (state_free_deferred): the common case, a version cut from
 * history 64 commits after it was hidden. Only the struct waits then (for
 * readers trying to take a reference). hidden_seq UINT64_MAX (never hidden
 * by a publish: drops, recovery) always waits. A context that no
 * reference-free read ever touched (its `read_noref` flag, set once by the
 * first one) hides versions as STATE_UNREAD: their tries are freed at once,
 * as before these reads existed, so writers of contexts read only through
 * ctx_get pay nothing for them.
 *
 * BOUND: while a tick is in flight (the worker may starve: 64 committing
 * threads on 2 CPUs), the thread's open batch grows, up to STATE_HOLD_MAX;
 * then the thread waits for a grace period itself (synchronize_rcu) and frees
 * both batches. A thread that may not wait - inside a read-side critical
 * section (a deadlock), or in an RCU callback (reclaim.c; the worker itself)
 * - or that is exiting queues its batch with one call_rcu that frees it in
 * the worker (`deferred` counts those; past STATE_DEFERRED_MAX a thread
 * that may wait frees its batch after synchronize_rcu instead). So each
 * thread holds at most 2 * STATE_HOLD_MAX released states, and the worker's
 * queue at most STATE_DEFERRED_MAX plus those of threads that could not
 * wait. The bound counts versions, not bytes, like reclaim.c's: a version
 * owns alone what the commit after it replaced. A thread's batches are
 * handed to the worker when it exits (a thread-specific key's destructor);
 * none is lost. */
#define STATE_BATCH        32
#define STATE_HOLD_MAX     512
#define STATE_DEFERRED_MAX 4096

#define HOME_DONE   1u /* no tick in flight */
#define HOME_EXITED 2u /* the thread exited: the tick's callback frees all */

/* ADDRESSES BESIDE THE LISTS: a home keeps the addresses of its open and
 * waiting batches in two arrays too, and frees those batches from the
 * arrays, prefetching FREE_AHEAD states ahead. A batch is freed a grace
 * period after it closed: at 64 threads on 2 CPUs that is thousands of
 * commits of the other threads later, and its states are cold; walking the
 * list waited for each state's miss (its `next`, on its third line) before
 * it could start the next one: 89% of state_free_deferred's samples, 53 ns
 * per update at 64 threads against 15 at 2 (round 11, docs/benchmarks.md).
 * The lists stay: the paths that hand a batch to the worker or free it at
 * exit use them. While the thread has a home, every state of its open list
 * is in `open` (state_free_deferred), and `wait` holds the `waiting` list's. */
#define FREE_AHEAD 8

typedef struct home {
	struct rcu_head tick;
	atomic_uint flags;
	uint64_t seq;       /* of the tick in flight */
	ctx_state *waiting; /* released before the tick was queued */
	unsigned nwait;     /* states in `waiting` (and in `wait`) */
	ctx_state **open, **wait;
	ctx_state *slots[2][STATE_HOLD_MAX];
} home;

static atomic_size_t deferred;

/* Ticks queued and the highest one completed. A reader that saw a version
 * visible began before it was hidden; a tick queued after that completes
 * after the reader's critical section ended. */
static atomic_uint_fast64_t tick_queued, tick_done;

void state_note_hidden(ctx_state *st)
{
	/* All seq_cst: if no reader had set read_noref when this load runs
	 * (after the exchange that hid st), a reader that sets it later loads
	 * `visible` after that exchange, and never sees st. */
	st->hidden_seq = atomic_load(&st->ctx->read_noref) ? atomic_load(&tick_queued) : STATE_UNREAD;
}

/* Whether no reference-free reader can still be in st's trie: a tick queued
 * after st was hidden has completed. */
static bool state_trie_unread(const ctx_state *st)
{
	return st->hidden_seq == STATE_UNREAD ||
	       st->hidden_seq < atomic_load_explicit(&tick_done, memory_order_acquire);
}

static _Thread_local struct {
	ctx_state *head; /* the open batch */
	unsigned n;
	bool keyed;   /* the exit destructor is set for this thread */
	bool no_wait; /* in an RCU callback: never synchronize_rcu */
	bool exited;  /* its exit destructor ran: each state is queued alone */
	home *h;      /* NULL: every full batch goes to the worker */
} batch;

static pthread_key_t batch_key;
static pthread_once_t batch_once = PTHREAD_ONCE_INIT;

/* Free a list of released states (a grace period has passed). */
static size_t state_free_list(ctx_state *st)
{
	size_t n = 0;
	while (st) {
		ctx_state *next = st->next;
		hamt_release(&st->data);
		hamt_release(&st->meta);
		pool_free_sized(st, sizeof(*st));
		st = next;
		n++;
	}
	return n;
}

/* Free the n states of array a (a grace period has passed), prefetching
 * ahead: the lines of a state that the free touches (its maps' roots, and
 * the first word, which pool.c writes). */
static void state_free_array(ctx_state *const *a, size_t n)
{
	for (size_t i = 0; i < n && i < FREE_AHEAD; i++) {
		__builtin_prefetch(a[i], 1);
		__builtin_prefetch((const char *)a[i] + 64, 1);
	}
	for (size_t i = 0; i < n; i++) {
		if (i + FREE_AHEAD < n) {
			__builtin_prefetch(a[i + FREE_AHEAD], 1);
			__builtin_prefetch((const char *)a[i + FREE_AHEAD] + 64, 1);
		}
		ctx_state *st = a[i];
		hamt_release(&st->data);
		hamt_release(&st->meta);
		pool_free_sized(st, sizeof(*st));
	}
}

/* Free h's waiting batch (its grace period has passed). */
static void home_free_waiting(home *h)
{
	state_free_array(h->wait, h->nwait);
	h->waiting = NULL;
	h->nwait = 0;
}

static void state_free_batch_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	pool_bypass(true); /* the worker: nothing to allocate again (pool.c) */
	size_t n = state_free_list(caa_container_of(head, ctx_state, rcu));
	atomic_fetch_sub_explicit(&deferred, n, memory_order_relaxed);
}

/* Queue the list at head (n states) to be freed by the worker after a grace
 * period, or wait for one here and free it (may_wait, and too many queued
 * already). */
static void state_defer_list(ctx_state *head, size_t n, bool may_wait)
{
	if (may_wait && !batch.no_wait &&
	    atomic_load_explicit(&deferred, memory_order_relaxed) >= STATE_DEFERRED_MAX &&
	    !rcu_read_ongoing()) {
		synchronize_rcu();
		tsan_after_grace_period();
		state_free_list(head);
		return;
	}
	atomic_fetch_add_explicit(&deferred, n, memory_order_relaxed);
	ctx_call_rcu(&head->rcu, state_free_batch_rcu);
}

static void home_tick_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	pool_bypass(true);
	home *h = caa_container_of(head, home, tick);
	uint64_t done = atomic_load_explicit(&tick_done, memory_order_relaxed);
	while (done < h->seq && !atomic_compare_exchange_weak_explicit(&tick_done, &done, h->seq,
	                                                               memory_order_release,
	                                                               memory_order_relaxed))
		;
	if (atomic_fetch_or_explicit(&h->flags, HOME_DONE, memory_order_acq_rel) & HOME_EXITED) {
		state_free_list(h->waiting);
		free(h);
	}
}

/* Take the open batch (the caller frees or queues it). */
static ctx_state *batch_take(size_t *n)
{
	ctx_state *head = batch.head;
	*n = batch.n;
	batch.head = NULL;
	batch.n = 0;
	return head;
}

/* The open batch is full: free the waiting one if its grace period passed
 * and make the open one wait; or keep gathering while the tick is in flight
 * (up to STATE_HOLD_MAX, then wait here). False: not handled at home. */
static bool batch_home(bool may_wait)
{
	home *h = batch.h;
	size_t n;
	if (!h || batch.no_wait)
		return false;
	if (atomic_load_explicit(&h->flags, memory_order_acquire) & HOME_DONE) {
		home_free_waiting(h);
		ctx_state **a = h->wait; /* the open batch's array becomes `wait` */
		h->wait = h->open;
		h->open = a;
		h->waiting = batch_take(&n);
		h->nwait = (unsigned)n;
		h->seq = atomic_fetch_add(&tick_queued, 1) + 1;
		atomic_store_explicit(&h->flags, 0, memory_order_relaxed);
		ctx_call_rcu(&h->tick, home_tick_rcu);
		return true;
	}
	if (batch.n < STATE_HOLD_MAX)
		return true;
	if (!may_wait || rcu_read_ongoing())
		return false;
	synchronize_rcu(); /* both batches are older than it */
	tsan_after_grace_period();
	state_free_array(h->open, batch.n);
	batch_take(&n);
	home_free_waiting(h);
	return true;
}

static void batch_flush(bool may_wait)
{
	if (!batch.head || batch_home(may_wait))
		return;
	size_t n;
	ctx_state *head = batch_take(&n);
	state_defer_list(head, n, may_wait);
}

static void batch_thread_exit(void *unused)
{
	(void)unused;
	size_t n;
	ctx_state *head = batch_take(&n);
	if (head)
		state_defer_list(head, n, false);
	home *h = batch.h;
	batch.h = NULL;
	/* Releases after this (other destructors of this thread, a commit in
	 * one) go to the worker one by one: nothing would flush an open batch
	 * (before round 14 one was kept, and lost with the thread). */
	batch.exited = true;
	if (h && atomic_fetch_or_explicit(&h->flags, HOME_EXITED, memory_order_acq_rel) & HOME_DONE) {
		state_free_list(h->waiting);
		free(h);
	}
}

static void batch_key_init(void)
{
	/* Without the key, every state is queued on its own (no batching). */
	if (pthread_key_create(&batch_key, batch_thread_exit) != 0)
		batch_key = (pthread_key_t)-1;
}

/* Free st (struct and maps) one grace period from now (or later, with its
 * batch). */
static void state_free_deferred(ctx_state *st)
{
	/* Hidden long enough ago (a version cut from history, mostly): its
	 * trie goes now, in this thread, while it is warm; the struct waits,
	 * for readers trying to take a reference (see the head comment). */
	if (state_trie_unread(st)) {
		hamt_release(&st->data);
		hamt_release(&st->meta);
	}
	if (batch.exited) {
		st->next = NULL;
		state_defer_list(st, 1, false);
		return;
	}
	if (!batch.keyed) {
		pthread_once(&batch_once, batch_key_init);
		if (batch_key == (pthread_key_t)-1 || pthread_setspecific(batch_key, &batch) != 0) {
			st->next = NULL;
			state_defer_list(st, 1, false);
			return;
		}
		batch.keyed = true;
		if ((batch.h = malloc(sizeof(*batch.h)))) {
			atomic_init(&batch.h->flags, HOME_DONE);
			batch.h->waiting = NULL;
			batch.h->nwait = 0;
			batch.h->open = batch.h->slots[0];
			batch.h->wait = batch.h->slots[1];
		}
	}
	st->next = batch.head;
	batch.head = st;
	/* The open batch never holds more than STATE_HOLD_MAX (batch_home). */
	if (batch.h) {
		assert(batch.n < STATE_HOLD_MAX);
		batch.h->open[batch.n] = st;
	}
	if (++batch.n >= STATE_BATCH)
		batch_flush(true);
}

void ctx_state_release(ctx_state *st)
{
	/* A loop, not recursion: the last reference to a version may free the
	 * history chain behind it. */
	while (st && atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1) {
		ctx_state *prev = atomic_exchange(&st->prev, NULL);
		context_release(st->ctx);
		state_free_deferred(st);
		st = prev;
	}
}

bool state_take_cut(ctx_state *cut)
{
	return atomic_fetch_sub_explicit(&cut->refs, 1, memory_order_acq_rel) == 1;
}

void state_free_cut(ctx_state *st)
{
	if (!st)
		return;
	/* Dead: nobody else changes its prev (readers only read it), and a
	 * version cut from history has none (the exchange in
	 * context_push_head): no locked exchange for nothing. */
	ctx_state *prev = atomic_load_explicit(&st->prev, memory_order_acquire);
	if (prev)
		prev = atomic_exchange(&st->prev, NULL);
	state_free_deferred(st);
	ctx_state_release(prev);
}

void state_release_in_callback(ctx_state *st)
{
	pool_bypass(true);
	batch.no_wait = true;
	ctx_state_release(st);
	batch_flush(false);
	batch.no_wait = false;
}

void state_drain(void)
{
	size_t n;
	ctx_state *head = batch_take(&n);
	if (head)
		state_defer_list(head, n, false);
	rcu_barrier(); /* the batches and ticks, and reclaim.c's versions... */
	rcu_barrier(); /* ...whose states those callbacks queued in turn     */
	home *h = batch.h;
	if (h && atomic_load_explicit(&h->flags, memory_order_acquire) & HOME_DONE)
		home_free_waiting(h);
	pool_trim(); /* and the blocks this thread kept of what it freed */
}

size_t state_deferred(void)
{
	return atomic_load_explicit(&deferred, memory_order_relaxed);
}

void state_release_now(ctx_state *st)
{
	while (st && atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1) {
		ctx_state *prev = atomic_exchange(&st->prev, NULL);
		hamt_release(&st->data);
		hamt_release(&st->meta);
		context_release(st->ctx);
		pool_free_sized(st, sizeof(*st));
		st = prev;
	}
}

uint64_t ctx_state_version(const ctx_state *st)
{
	return st ? st->version : 0;
}

uint64_t ctx_state_revision(const ctx_state *st)
{
	return st ? st->revision : 0;
}

size_t ctx_state_count(const ctx_state *st)
{
	return st ? st->data.count : 0;
}

size_t ctx_state_bytes(const ctx_state *st)
{
	return st ? st->data.bytes : 0;
}

uint64_t ctx_state_created_us(const ctx_state *st)
{
	return st ? st->ctx->created_us : 0;
}

uint64_t ctx_state_updated_us(const ctx_state *st)
{
	return st ? st->updated_us : 0;
}

const char *ctx_state_id(const ctx_state *st)
{
	return st ? st->ctx->id : NULL;
}

static bool map_lookup(const hamt *m, const void *key, size_t klen, const void **val,
                       size_t *vlen)
{
	if (!key && klen)
		return false;
	const hamt_leaf *l = hamt_find(m, hamt_hash(key, klen), key, klen);
	if (!l)
		return false;
	if (val)
		*val = hamt_leaf_value(l);
	if (vlen)
		*vlen = l->vlen;
	return true;
}

bool ctx_state_lookup(const ctx_state *st, const void *key, size_t klen, const void **val,
                      size_t *vlen)
{
	return st && map_lookup(&st->data, key, klen, val, vlen);
}

bool ctx_state_meta(const ctx_state *st, const void *name, size_t nlen, const void **val,
                    size_t *vlen)
{
	return st && map_lookup(&st->meta, name, nlen, val, vlen);
}

size_t ctx_state_meta_count(const ctx_state *st)
{
	return st ? st->meta.count : 0;
}

static ctx_status iter_begin(const ctx_state *st, const hamt *m, ctx_iter **out)
{
	if (!st || !out)
		return ctx_fail(CTX_INVALID, "NULL state or output");
	ctx_iter *it = malloc(sizeof(*it));
	if (!it)
		return ctx_fail(CTX_NOMEM, "no memory for an iterator");
	it->st = ctx_state_retain((ctx_state *)st);
	hamt_cursor_init(&it->cursor, m);
	*out = it;
	return CTX_OK;
}

ctx_status ctx_iter_begin(const ctx_state *st, ctx_iter **out)
{
	return iter_begin(st, st ? &st->data : NULL, out);
}

ctx_status ctx_iter_meta_begin(const ctx_state *st, ctx_iter **out)
{
	return iter_begin(st, st ? &st->meta : NULL, out);
}

/* Report leaf l (if any) through the output pointers of the iterators. */
static bool iter_out(const hamt_leaf *l, const void **key, size_t *klen, const void **val,
                     size_t *vlen)
{
	if (!l)
		return false;
	if (key)
		*key = hamt_leaf_key(l);
	if (klen)
		*klen = hamt_leaf_klen(l);
	if (val)
		*val = hamt_leaf_value(l);
	if (vlen)
		*vlen = l->vlen;
	return true;
}

bool ctx_iter_next(ctx_iter *it, const void **key, size_t *klen, const void **val,
                   size_t *vlen)
{
	return iter_out(it ? hamt_cursor_next(&it->cursor) : NULL, key, klen, val, vlen);
}

/* ---- iteration in the caller's storage ---------------------------------------- */

/* A ctx_iter_stack is a hamt_cursor; the public type only reserves room. */
_Static_assert(sizeof(hamt_cursor) <= sizeof(ctx_iter_stack), "ctx_iter_stack too small");
_Static_assert(_Alignof(hamt_cursor) <= _Alignof(ctx_iter_stack), "ctx_iter_stack alignment");

static ctx_status iter_init(ctx_iter_stack *it, const ctx_state *st, bool meta)
{
	hamt_cursor *c = (hamt_cursor *)it;
	hamt empty = {0};
	if (c)
		hamt_cursor_init(c, st ? (meta ? &st->meta : &st->data) : &empty);
	return c && st ? CTX_OK : ctx_fail(CTX_INVALID, "NULL iterator or state");
}

ctx_status ctx_iter_init(ctx_iter_stack *it, const ctx_state *st)
{
	return iter_init(it, st, false);
}

ctx_status ctx_iter_meta_init(ctx_iter_stack *it, const ctx_state *st)
{
	return iter_init(it, st, true);
}

bool ctx_iter_stack_next(ctx_iter_stack *it, const void **key, size_t *klen, const void **val,
                         size_t *vlen)
{
	return iter_out(it ? hamt_cursor_next((hamt_cursor *)it) : NULL, key, klen, val, vlen);
}

void ctx_iter_free(ctx_iter *it)
{
	if (!it)
		return;
	ctx_state_release(it->st);
	free(it);
}

bool ctx_state_key_time(const ctx_state *st, const void *key, size_t klen, uint64_t *time_us)
{
	if (!st || (!key && klen))
		return false;
	const hamt_leaf *l = hamt_find(&st->data, hamt_hash(key, klen), key, klen);
	if (l && time_us)
		*time_us = l->time_us;
	return l != NULL;
}

/* ---- diffs ------------------------------------------------------------------ */

struct ctx_diff {
	ctx_state *from, *to;
	size_t count, cap;
	ctx_change *changes;
};

static ctx_status diff_collect(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	ctx_diff *d = arg;
	if (d->count == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		ctx_change *g = realloc(d->changes, cap * sizeof(*g));
		if (!g)
			return CTX_NOMEM;
		d->changes = g;
		d->cap = cap;
	}
	const hamt_leaf *k = old ? old : new_;
	d->changes[d->count++] = (ctx_change){
	    .kind = !old    ? CTX_ADDED
	            : !new_ ? CTX_REMOVED
	                    : CTX_CHANGED,
	    .key = hamt_leaf_key(k),
	    .klen = hamt_leaf_klen(k),
	    .old_value = old ? hamt_leaf_value(old) : NULL,
	    .old_len = old ? old->vlen : 0,
	    .new_value = new_ ? hamt_leaf_value(new_) : NULL,
	    .new_len = new_ ? new_->vlen : 0,
	};
	return CTX_OK;
}

int ctx_key_compare(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	return c ? c : (alen > blen) - (alen < blen);
}

static int change_compare(const void *a, const void *b)
{
	const ctx_change *x = a, *y = b;
	return ctx_key_compare(x->key, x->klen, y->key, y->klen);
}

ctx_status ctx_diff_states(const ctx_state *from, const ctx_state *to, ctx_diff **out)
{
	if (!from || !to || !out)
		return ctx_fail(CTX_INVALID, "NULL state or output");
	ctx_diff *d = calloc(1, sizeof(*d));
	if (!d)
		return ctx_fail(CTX_NOMEM, "no memory for a diff");
	d->from = ctx_state_retain((ctx_state *)from);
	d->to = ctx_state_retain((ctx_state *)to);
	if (hamt_diff(&from->data, &to->data, diff_collect, d) != CTX_OK) {
		ctx_diff_free(d);
		return ctx_fail(CTX_NOMEM, "no memory for a diff");
	}
	if (d->count > 1)
		qsort(d->changes, d->count, sizeof(*d->changes), change_compare);
	*out = d;
	return CTX_OK;
}

size_t ctx_diff_count(const ctx_diff *d)
{
	return d ? d->count : 0;
}

const ctx_change *ctx_diff_get(const ctx_diff *d, size_t i)
{
	return d && i < d->count ? &d->changes[i] : NULL;
}

void ctx_diff_free(ctx_diff *d)
{
	if (!d)
		return;
	ctx_state_release(d->from);
	ctx_state_release(d->to);
	free(d->changes);
	free(d);
}
