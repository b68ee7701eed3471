/*
 * store.c - the store and its table of contexts.
 *
 * The table is liburcu's lock-free resizable hash table (cds_lfht): lookups run
 * inside an RCU read-side critical section and never wait; creates and drops
 * are lock-free insertions and removals. A context is reference counted (the
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
 * see the mark and return CTX_NOT_FOUND.
 */
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "util.h"

#ifdef CTX_TSAN
char ctx_rcu_grace_token;
#endif

#define MAX_KEY_LIMIT (16u << 20)   /* largest max_key_size accepted   */
#define MAX_VALUE_LIMIT (1u << 30)  /* largest max_value_size accepted */

void ctx_options_init(ctx_options *o)
{
	memset(o, 0, sizeof(*o));
}

/* ---- contexts ------------------------------------------------------------- */

void context_retain(ctx_context *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void context_free_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	ctx_context *c = caa_container_of(head, ctx_context, rcu);
	pthread_mutex_destroy(&c->write_lock);
	free(c);
}

void context_release(ctx_context *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		call_rcu(&c->rcu, context_free_rcu);
}

typedef struct id_key {
	const char *id;
	size_t len;
} id_key;

static int context_match(struct cds_lfht_node *node, const void *key)
{
	const ctx_context *c = caa_container_of(node, ctx_context, node);
	const id_key *k = key;
	tsan_subscribe(c);
	return c->idlen == k->len && memcmp(c->id, k->id, k->len) == 0;
}

/* Look up id; the caller is inside an RCU read-side critical section. */
static ctx_context *table_lookup(ctx_store *s, const char *id, size_t idlen)
{
	id_key k = {id, idlen};
	struct cds_lfht_iter iter;
	cds_lfht_lookup(s->table, hamt_hash(id, idlen), context_match, &k, &iter);
	struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
	return node ? caa_container_of(node, ctx_context, node) : NULL;
}

ctx_context *store_find_context(ctx_store *s, const char *id, size_t idlen)
{
	ctx_rcu_read_lock();
	ctx_context *c = table_lookup(s, id, idlen);
	if (c) {
		/* A context out of the table may be down to its last states; only
		 * hand out one that is still live. */
		unsigned r = atomic_load_explicit(&c->refs, memory_order_relaxed);
		do {
			if (r == 0 || atomic_load(&c->dropped)) {
				c = NULL;
				break;
			}
		} while (!atomic_compare_exchange_weak(&c->refs, &r, r + 1));
	}
	ctx_rcu_read_unlock();
	return c;
}

void context_publish(ctx_context *c, ctx_state *st)
{
	ctx_state_retain(st);
	ctx_rcu_read_lock();
	ctx_state *cur = atomic_load(&c->visible);
	for (;;) {
		if (cur ? cur->version >= st->version : atomic_load(&c->dropped)) {
			ctx_rcu_read_unlock();
			ctx_state_release(st);
			return;
		}
		if (atomic_compare_exchange_weak(&c->visible, &cur, st))
			break;
	}
	ctx_rcu_read_unlock();
	ctx_state_release(cur);
	/* A drop that raced with a publish into an empty slot: undo it. */
	if (atomic_load(&c->dropped))
		ctx_state_release(atomic_exchange(&c->visible, NULL));
}

/* ---- the store ------------------------------------------------------------ */

ctx_status ctx_open(const ctx_options *o, ctx_store **out)
{
	ctx_options opts;
	if (!out)
		return ctx_fail(CTX_INVALID, "NULL output pointer");
	if (o)
		opts = *o;
	else
		ctx_options_init(&opts);
	if (opts.dir)
		return ctx_fail(CTX_INVALID, "persistence (dir) is not available in this build");
	if (!opts.max_contexts)
		opts.max_contexts = CTX_DEFAULT_MAX_CONTEXTS;
	if (!opts.max_key_size)
		opts.max_key_size = CTX_DEFAULT_MAX_KEY_SIZE;
	if (!opts.max_value_size)
		opts.max_value_size = CTX_DEFAULT_MAX_VALUE_SIZE;
	if (opts.max_key_size > MAX_KEY_LIMIT)
		return ctx_fail(CTX_INVALID, "max_key_size above %u", MAX_KEY_LIMIT);
	if (opts.max_value_size > MAX_VALUE_LIMIT)
		return ctx_fail(CTX_INVALID, "max_value_size above %u", MAX_VALUE_LIMIT);

	ctx_store *s = calloc(1, sizeof(*s));
	if (!s)
		return ctx_fail(CTX_NOMEM, "no memory for a store");
	s->opts = opts;
	s->table = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	if (!s->table) {
		free(s);
		return ctx_fail(CTX_NOMEM, "no memory for the context table");
	}
	*out = s;
	return CTX_OK;
}

void ctx_close(ctx_store *s)
{
	if (!s)
		return;
	struct cds_lfht_iter iter;
	ctx_context *c;
	ctx_rcu_read_lock();
	cds_lfht_for_each_entry(s->table, &iter, c, node) {
		cds_lfht_del(s->table, &c->node);
		atomic_store(&c->dropped, true);
		ctx_state_release(c->head);
		ctx_state_release(atomic_exchange(&c->visible, NULL));
		c->head = NULL;
		context_release(c);
	}
	ctx_rcu_read_unlock();
	/* Run every deferred free (states, contexts) before the table goes. */
	rcu_barrier();
	cds_lfht_destroy(s->table, NULL);
	free(s);
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

ctx_status ctx_create(ctx_store *s, const char *id)
{
	size_t idlen;
	ctx_status st = s ? ctx_check_id(id, &idlen) : ctx_fail(CTX_INVALID, "NULL store");
	if (st != CTX_OK)
		return st;
	if (!reserve_slot(s))
		return ctx_fail(CTX_LIMIT, "max_contexts (%zu) contexts exist", s->opts.max_contexts);

	ctx_context *c = calloc(1, sizeof(*c) + idlen + 1);
	if (!c) {
		atomic_fetch_sub(&s->live, 1);
		return ctx_fail(CTX_NOMEM, "no memory for a context");
	}
	cds_lfht_node_init(&c->node);
	atomic_init(&c->refs, 1); /* the table's */
	c->store = s;
	c->idlen = idlen;
	memcpy(c->id, id, idlen + 1);
	c->id_hash = hamt_hash(id, idlen);
	c->created_us = ctx_now_us();
	pthread_mutex_init(&c->write_lock, NULL);
	hamt empty = {0};
	ctx_state *first = state_new(c, 1, empty, empty);
	if (!first) {
		pthread_mutex_destroy(&c->write_lock);
		free(c);
		atomic_fetch_sub(&s->live, 1);
		return ctx_fail(CTX_NOMEM, "no memory for a context");
	}
	first->updated_us = c->created_us;
	c->head = first;
	pthread_mutex_lock(&c->write_lock);
	tsan_publish(c);

	id_key k = {c->id, idlen};
	ctx_rcu_read_lock();
	struct cds_lfht_node *got =
	        cds_lfht_add_unique(s->table, c->id_hash, context_match, &k, &c->node);
	ctx_rcu_read_unlock();
	if (got != &c->node) {
		/* Never published: nobody else can hold it. */
		pthread_mutex_unlock(&c->write_lock);
		c->head = NULL;
		ctx_state_release(first); /* drops its reference to c */
		atomic_fetch_sub(&s->live, 1);
		context_release(c);
		return ctx_fail(CTX_EXISTS, "context '%s' exists", id);
	}
	first->revision = atomic_fetch_add(&s->revision, 1) + 1;
	context_publish(c, first);
	pthread_mutex_unlock(&c->write_lock);
	return CTX_OK;
}

ctx_status ctx_drop(ctx_store *s, const char *id)
{
	size_t idlen;
	ctx_status st = s ? ctx_check_id(id, &idlen) : ctx_fail(CTX_INVALID, "NULL store");
	if (st != CTX_OK)
		return st;
	ctx_context *c = store_find_context(s, id, idlen);
	if (!c)
		return ctx_fail(CTX_NOT_FOUND, "no context '%s'", id);

	pthread_mutex_lock(&c->write_lock);
	if (atomic_load(&c->dropped)) {
		pthread_mutex_unlock(&c->write_lock);
		context_release(c);
		return ctx_fail(CTX_NOT_FOUND, "no context '%s'", id);
	}
	atomic_store(&c->dropped, true);
	ctx_rcu_read_lock();
	cds_lfht_del(s->table, &c->node);
	ctx_rcu_read_unlock();
	atomic_fetch_add(&s->revision, 1);
	ctx_state *visible = atomic_exchange(&c->visible, NULL);
	ctx_state *head = c->head;
	c->head = NULL;
	pthread_mutex_unlock(&c->write_lock);

	ctx_state_release(visible);
	ctx_state_release(head);
	atomic_fetch_sub(&s->live, 1);
	context_release(c); /* the table's reference */
	context_release(c); /* ours */
	return CTX_OK;
}

ctx_status ctx_get(ctx_store *s, const char *id, ctx_state **out)
{
	size_t idlen;
	ctx_status st = s ? ctx_check_id(id, &idlen) : ctx_fail(CTX_INVALID, "NULL store");
	if (st != CTX_OK)
		return st;
	if (!out)
		return ctx_fail(CTX_INVALID, "NULL output pointer");
	ctx_state *v = NULL;
	ctx_rcu_read_lock();
	ctx_context *c = table_lookup(s, id, idlen);
	if (c) {
		/* Retry while the version we saw is being replaced and freed. */
		while ((v = atomic_load_explicit(&c->visible, memory_order_acquire)) &&
		       !state_try_retain(v))
			;
	}
	ctx_rcu_read_unlock();
	if (!v)
		return ctx_fail(CTX_NOT_FOUND, "no context '%s'", id);
	*out = v;
	return CTX_OK;
}

size_t ctx_count(ctx_store *s)
{
	return s ? atomic_load(&s->live) : 0;
}

/* ---- listing -------------------------------------------------------------- */

static int compare_ids(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

ctx_status ctx_list_ids(ctx_store *s, const char *prefix, const char *after, size_t limit,
                        ctx_list *out)
{
	if (!s || !out)
		return ctx_fail(CTX_INVALID, "NULL store or output");
	size_t plen = prefix ? strlen(prefix) : 0;
	size_t cap = 16, n = 0;
	char **ids = malloc(cap * sizeof(*ids));
	bool nomem = !ids;

	struct cds_lfht_iter iter;
	ctx_context *c;
	ctx_rcu_read_lock();
	cds_lfht_for_each_entry(s->table, &iter, c, node) {
		if (nomem)
			break;
		tsan_subscribe(c);
		if (atomic_load(&c->dropped) || !atomic_load(&c->visible))
			continue;
		if (plen && (c->idlen < plen || memcmp(c->id, prefix, plen) != 0))
			continue;
		if (after && strcmp(c->id, after) <= 0)
			continue;
		if (n == cap) {
			char **grown = realloc(ids, 2 * cap * sizeof(*ids));
			if (!grown) {
				nomem = true;
				break;
			}
			ids = grown;
			cap *= 2;
		}
		if (!(ids[n] = strdup(c->id)))
			nomem = true;
		else
			n++;
	}
	ctx_rcu_read_unlock();

	if (!nomem) {
		qsort(ids, n, sizeof(*ids), compare_ids);
		if (limit && n > limit) {
			for (size_t i = limit; i < n; i++)
				free(ids[i]);
			n = limit;
		}
		out->count = n;
		out->ids = ids;
		return CTX_OK;
	}
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	return ctx_fail(CTX_NOMEM, "no memory for the list of ids");
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
