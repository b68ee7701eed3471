/*
 * state.c - versions of a context (ctx_state) and iteration over them.
 *
 * A state is one immutable version: a data map and a metadata map (both
 * persistent tries sharing structure with neighbouring versions), its version
 * number, store revision and commit time. It is reference counted; the maps
 * are released as soon as the last reference goes, the struct itself one RCU
 * grace period later, because a reader may still be reading its refs field to
 * try to take a reference (and will see 0 and retry). The structs go to RCU
 * in batches of STATE_BATCH per thread (see state_free_deferred), and come
 * back to the thread that released them to be freed there (WHO FREES).
 *
 * Iteration: a ctx_iter is malloc'd and holds a reference to its state; a
 * ctx_iter_stack is the same trie cursor in the caller's storage, with no
 * reference (the caller holds the state), for readers that must not allocate.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "util.h"

struct ctx_iter {
	ctx_state *st;
	hamt_cursor cursor;
};

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
	atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
	return st;
}

/* ---- freeing the structs, in batches, in the thread that released them ------------ */

/* The struct of a released state must outlive a grace period. One call_rcu
 * per version cost a third of a small commit (the queueing, and waking
 * liburcu's worker thread for nearly every commit), so each thread gathers
 * the structs it released in a batch (an array of STATE_BATCH pointers) and
 * queues the whole batch with one call_rcu when it is full. A thread's
 * partial batch is queued when the thread exits (a thread-specific key's
 * destructor): at most STATE_BATCH - 1 structs per thread wait longer than
 * one grace period, and none is lost.
 *
 * WHO FREES
 *   A committer allocates a struct per commit and, at the same rate,
 *   releases one (the version its commit cut from history). When liburcu's
 *   worker thread freed them, every struct crossed threads, and the worker's
 *   free and the committer's malloc fought over the committer's malloc arena
 *   (futex waits and wakes in a tenth of the samples of a one-thread
 *   update). So the worker frees only what no live thread takes back: the
 *   callback pushes the batch, untouched, on the releasing thread's pool
 *   (`returned`, a lock-free stack with one consumer, who takes the whole
 *   stack with one exchange, so no ABA), and that thread frees what came
 *   back when it queues its next batch, into its own malloc cache.
 *   (Reusing the structs for the thread's next states instead of freeing
 *   them measured better at 1 thread but 8-25% worse at 64: docs/
 *   benchmarks.md, round 3.)
 *
 *   Bounds: a pool holds at most POOL_BATCHES batches; past that (a thread
 *   that released versions and went idle) the worker frees them as before.
 *   A pool outlives its thread while batches are in flight (`refs`: one for
 *   the thread, one per batch); once the thread is gone the worker frees what
 *   comes back, and the last one to let go of the pool frees it with what it
 *   holds. */
#define STATE_BATCH  32
#define POOL_BATCHES 8
#define EMPTY_KEPT   4

typedef struct state_pool state_pool;

typedef struct state_batch {
	struct rcu_head rcu;
	state_pool *pool;         /* NULL: the worker frees the structs */
	struct state_batch *next; /* in a pool's stack or a thread's list */
	unsigned n;
	ctx_state *st[STATE_BATCH];
} state_batch;

struct state_pool {
	_Atomic(state_batch *) returned; /* batches back from RCU, to free */
	atomic_uint held;                /* about how many batches are in returned */
	atomic_uint refs;                /* the thread's, and one per batch in flight */
	atomic_bool orphan;              /* the thread exited */
};

static _Thread_local struct {
	state_batch *gather; /* being filled with released structs */
	bool keyed;          /* the exit destructor is set for this thread */
	state_pool *pool;    /* NULL: the worker frees (out of memory at setup) */
	state_batch *empty;  /* emptied batches, for gathering again */
	unsigned nempty;
} batch;

static pthread_key_t batch_key;
static pthread_once_t batch_once = PTHREAD_ONCE_INIT;

static void batch_free(state_batch *b)
{
	for (unsigned i = 0; i < b->n; i++)
		free(b->st[i]);
	free(b);
}

static void batch_list_free(state_batch *b)
{
	while (b) {
		state_batch *next = b->next;
		batch_free(b);
		b = next;
	}
}

static void pool_release(state_pool *p)
{
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
		return;
	batch_list_free(atomic_exchange_explicit(&p->returned, NULL, memory_order_acquire));
	free(p);
}

/* A batch whose grace period is over: back to its thread's pool, or freed
 * here if it has none, that thread is gone or its pool is full. */
static void state_free_batch_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	state_batch *b = caa_container_of(head, state_batch, rcu);
	state_pool *p = b->pool;
	if (!p || atomic_load_explicit(&p->orphan, memory_order_acquire) ||
	    atomic_load_explicit(&p->held, memory_order_relaxed) >= POOL_BATCHES) {
		batch_free(b);
	} else {
		/* Counted before it is pushed: a take between the two then
		 * undercounts by one batch; counting after could overcount. */
		atomic_fetch_add_explicit(&p->held, 1, memory_order_relaxed);
		state_batch *top = atomic_load_explicit(&p->returned, memory_order_relaxed);
		do
			b->next = top;
		while (!atomic_compare_exchange_weak_explicit(
		    &p->returned, &top, b, memory_order_release, memory_order_relaxed));
	}
	if (p)
		pool_release(p);
}

/* Free the structs of the batches back in this thread's pool; keep a few
 * of the batches to gather into. */
static void pool_drain(state_pool *p)
{
	if (!atomic_load_explicit(&p->returned, memory_order_relaxed))
		return;
	state_batch *b = atomic_exchange_explicit(&p->returned, NULL, memory_order_acquire);
	atomic_store_explicit(&p->held, 0, memory_order_relaxed);
	while (b) {
		state_batch *next = b->next;
		if (batch.nempty < EMPTY_KEPT) {
			for (unsigned i = 0; i < b->n; i++)
				free(b->st[i]);
			b->n = 0;
			b->next = batch.empty;
			batch.empty = b;
			batch.nempty++;
		} else {
			batch_free(b);
		}
		b = next;
	}
}

static void batch_flush(void)
{
	state_batch *b = batch.gather;
	if (!b || !b->n)
		return;
	batch.gather = NULL;
	b->pool = batch.pool;
	if (b->pool) {
		atomic_fetch_add_explicit(&b->pool->refs, 1, memory_order_relaxed);
		pool_drain(b->pool);
	}
	ctx_call_rcu(&b->rcu, state_free_batch_rcu);
}

static void batch_thread_exit(void *unused)
{
	(void)unused;
	batch_flush();
	free(batch.gather);
	batch.gather = NULL;
	if (batch.pool) {
		pool_drain(batch.pool);
		atomic_store_explicit(&batch.pool->orphan, true, memory_order_release);
		pool_release(batch.pool);
		batch.pool = NULL;
	}
	batch_list_free(batch.empty);
	batch.empty = NULL;
	batch.nempty = 0;
}

static void batch_key_init(void)
{
	/* Without the key, every struct is queued on its own (no batching). */
	if (pthread_key_create(&batch_key, batch_thread_exit) != 0)
		batch_key = (pthread_key_t)-1;
}

/* Set up this thread's batches and pool; false if it cannot have them. */
static bool batch_setup(void)
{
	pthread_once(&batch_once, batch_key_init);
	if (batch_key == (pthread_key_t)-1 || pthread_setspecific(batch_key, &batch) != 0)
		return false;
	batch.keyed = true;
	state_pool *p = malloc(sizeof(*p));
	if (p) { /* else the worker frees this thread's structs */
		atomic_init(&p->returned, NULL);
		atomic_init(&p->held, 0);
		atomic_init(&p->refs, 1);
		atomic_init(&p->orphan, false);
		batch.pool = p;
	}
	return true;
}

/* A batch to gather into: an emptied one, or a new one (NULL: no memory). */
static state_batch *batch_get(void)
{
	state_batch *b = batch.empty;
	if (b) {
		batch.empty = b->next;
		batch.nempty--;
	} else if (!(b = malloc(sizeof(*b)))) {
		return NULL;
	}
	b->n = 0;
	return b;
}

static void state_free_one_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	free(caa_container_of(head, ctx_state, rcu));
}

/* Free st's struct one grace period from now (or later, with its batch). */
static void state_free_deferred(ctx_state *st)
{
	if ((!batch.keyed && !batch_setup()) || (!batch.gather && !(batch.gather = batch_get()))) {
		ctx_call_rcu(&st->rcu, state_free_one_rcu);
		return;
	}
	batch.gather->st[batch.gather->n++] = st;
	if (batch.gather->n == STATE_BATCH)
		batch_flush();
}

ctx_state *state_new(ctx_context *c, uint64_t version, hamt data, hamt meta)
{
	ctx_state *st = malloc(sizeof(*st));
	if (!st)
		return NULL;
	atomic_init(&st->refs, 1);
	context_retain(c);
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
	return st;
}

void ctx_state_release(ctx_state *st)
{
	/* A loop, not recursion: the last reference to a version may free the
	 * history chain behind it. */
	while (st && atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1) {
		ctx_state *prev = atomic_exchange(&st->prev, NULL);
		hamt_release(&st->data);
		hamt_release(&st->meta);
		context_release(st->ctx);
		state_free_deferred(st);
		st = prev;
	}
}

uint64_t ctx_state_version(const ctx_state *st)
{
	return st->version;
}

uint64_t ctx_state_revision(const ctx_state *st)
{
	return st->revision;
}

size_t ctx_state_count(const ctx_state *st)
{
	return st->data.count;
}

size_t ctx_state_bytes(const ctx_state *st)
{
	return st->data.bytes;
}

uint64_t ctx_state_created_us(const ctx_state *st)
{
	return st->ctx->created_us;
}

uint64_t ctx_state_updated_us(const ctx_state *st)
{
	return st->updated_us;
}

const char *ctx_state_id(const ctx_state *st)
{
	return st->ctx->id;
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
	return st->meta.count;
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
		*klen = l->klen;
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
	        .kind = !old ? CTX_ADDED : !new_ ? CTX_REMOVED : CTX_CHANGED,
	        .key = hamt_leaf_key(k),
	        .klen = k->klen,
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
