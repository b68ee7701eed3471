/*
 * state.c - versions of a context (ctx_state) and iteration over them.
 *
 * A state is one immutable version: a data map and a metadata map (both
 * persistent tries sharing structure with neighbouring versions), its version
 * number, store revision and commit time. It is reference counted; the maps
 * are released as soon as the last reference goes, the struct itself one RCU
 * grace period later, because a reader may still be reading its refs field to
 * try to take a reference (and will see 0 and retry). The structs go to RCU
 * in batches of STATE_BATCH per thread (see state_free_deferred). Log replay
 * runs before anyone can read the store and frees them at once
 * (state_release_now).
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

/* ---- freeing the structs, in batches ------------------------------------------- */

/* The struct of a released state must outlive a grace period. One call_rcu
 * per version cost a third of a small commit (the queueing, and waking
 * liburcu's worker thread for nearly every commit), so each thread gathers
 * the structs it released in a batch, linked through their `next` field
 * (unused once the last reference is gone: no history chain holds them), and
 * queues the whole batch with one call_rcu when STATE_BATCH are in it. A
 * thread's partial batch is queued when the thread exits (a thread-specific
 * key's destructor): at most STATE_BATCH - 1 structs per thread wait longer
 * than one grace period, and none is lost. */
#define STATE_BATCH 32

static _Thread_local struct {
	ctx_state *head;
	unsigned n;
	bool keyed; /* the exit destructor is set for this thread */
} batch;

static pthread_key_t batch_key;
static pthread_once_t batch_once = PTHREAD_ONCE_INIT;

static void state_free_batch_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	ctx_state *st = caa_container_of(head, ctx_state, rcu);
	while (st) {
		ctx_state *next = st->next;
		free(st);
		st = next;
	}
}

static void batch_flush(void)
{
	if (!batch.head)
		return;
	ctx_call_rcu(&batch.head->rcu, state_free_batch_rcu);
	batch.head = NULL;
	batch.n = 0;
}

static void batch_thread_exit(void *unused)
{
	(void)unused;
	batch_flush();
}

static void batch_key_init(void)
{
	/* Without the key, every struct is queued on its own (no batching). */
	if (pthread_key_create(&batch_key, batch_thread_exit) != 0)
		batch_key = (pthread_key_t)-1;
}

/* Free st's struct one grace period from now (or later, with its batch). */
static void state_free_deferred(ctx_state *st)
{
	if (!batch.keyed) {
		pthread_once(&batch_once, batch_key_init);
		if (batch_key == (pthread_key_t)-1 || pthread_setspecific(batch_key, &batch) != 0) {
			st->next = NULL;
			ctx_call_rcu(&st->rcu, state_free_batch_rcu);
			return;
		}
		batch.keyed = true;
	}
	st->next = batch.head;
	batch.head = st;
	if (++batch.n >= STATE_BATCH)
		batch_flush();
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

void state_release_now(ctx_state *st)
{
	while (st && atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1) {
		ctx_state *prev = atomic_exchange(&st->prev, NULL);
		hamt_release(&st->data);
		hamt_release(&st->meta);
		context_release(st->ctx);
		free(st);
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
