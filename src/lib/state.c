/*
 * state.c - versions of a context (ctx_state) and iteration over them.
 *
 * A state is one immutable version: a data map and a metadata map (both
 * persistent tries sharing structure with neighbouring versions), its version
 * number, store revision and commit time. It is reference counted; the maps
 * are released as soon as the last reference goes, the struct itself one RCU
 * grace period later, because a reader may still be reading its refs field to
 * try to take a reference (and will see 0 and retry).
 */
#include <stdlib.h>

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
	st->updated_us = ctx_now_us();
	st->data = data;
	st->meta = meta;
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

static void state_free_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	free(caa_container_of(head, ctx_state, rcu));
}

void ctx_state_release(ctx_state *st)
{
	if (!st || atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1)
		return;
	hamt_release(&st->data);
	hamt_release(&st->meta);
	context_release(st->ctx);
	ctx_call_rcu(&st->rcu, state_free_rcu);
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

bool ctx_iter_next(ctx_iter *it, const void **key, size_t *klen, const void **val,
                   size_t *vlen)
{
	const hamt_leaf *l = it ? hamt_cursor_next(&it->cursor) : NULL;
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

void ctx_iter_free(ctx_iter *it)
{
	if (!it)
		return;
	ctx_state_release(it->st);
	free(it);
}
