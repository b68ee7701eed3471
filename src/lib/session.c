/*
 * session.c - sessions (a client's active context) and the status view.
 *
 * A session belongs to one client (one connection of the server, one task):
 * it holds the id of its active context and nothing else, so switching is a
 * string copy and a session never pins a version. Many sessions may be used
 * from many threads; one session from one thread at a time.
 *
 * The status view reads every context's visible version under RCU, like any
 * read: it takes no lock. It walks the ordered index of ids (index.c), so it
 * comes out sorted without a sort; contexts past their time-to-live are left
 * out (they are gone for every call, see expiry.c).
 */
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "util.h"

struct ctx_session {
	ctx_store *store;
	char *current;
};

ctx_status ctx_session_open(ctx_store *s, ctx_session **out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!s || !out)
		return ctx_fail(CTX_INVALID, "NULL store or output");
	ctx_session *se = calloc(1, sizeof(*se));
	if (!se)
		return ctx_fail(CTX_NOMEM, "no memory for a session");
	se->store = s;
	*out = se;
	return CTX_OK;
}

void ctx_session_close(ctx_session *se)
{
	if (se && store_inherited(se->store))
		return; /* (fork.c) */
	if (!se)
		return;
	free(se->current);
	free(se);
}

ctx_status ctx_session_activate(ctx_session *se, const char *id, bool create)
{
	if (se && store_inherited(se->store))
		return fork_refuse();
	if (!se)
		return ctx_fail(CTX_INVALID, "NULL session");
	size_t idlen;
	ctx_status r = store_check_id(se->store, id, &idlen);
	if (r != CTX_OK)
		return r;
	char *copy = strdup(id); /* before anything changes */
	if (!copy)
		return ctx_fail(CTX_NOMEM, "no memory for a session");
	ctx_state *st;
	r = ctx_get(se->store, id, &st);
	if (r == CTX_NOT_FOUND && create) {
		r = ctx_create(se->store, id);
		if (r == CTX_OK || r == CTX_EXISTS)
			r = ctx_get(se->store, id, &st);
	}
	if (r != CTX_OK) {
		free(copy);
		return r;
	}
	ctx_state_release(st);
	free(se->current);
	se->current = copy;
	return CTX_OK;
}

const char *ctx_session_current(const ctx_session *se)
{
	return se ? se->current : NULL;
}

ctx_status ctx_session_get(ctx_session *se, ctx_state **out)
{
	if (se && store_inherited(se->store))
		return fork_refuse();
	if (!se || !out)
		return ctx_fail(CTX_INVALID, "NULL session or output");
	if (!se->current)
		return ctx_fail(CTX_NOT_FOUND, "no active context");
	return ctx_get(se->store, se->current, out);
}

/* Fill e with c's status as of version st. */
static void fill_status(ctx_context_status *e, const ctx_context *c, const ctx_state *st)
{
	memcpy(e->id, c->id, c->idlen + 1);
	e->version = st->version;
	e->keys = st->data.count;
	e->bytes = st->data.bytes;
	e->created_us = c->created_us;
	e->last_access_us = atomic_load(&c->last_access_us);
	e->ttl_ms = atomic_load(&c->ttl_us) / 1000;
	const point_set *p = atomic_load(&c->points);
	e->points = p ? p->count : 0;
}

ctx_status ctx_status_view(ctx_store *s, ctx_context_status **out, size_t *count)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!s || !out || !count)
		return ctx_fail(CTX_INVALID, "NULL store or output");
	size_t n = 0, cap = atomic_load(&s->live) + 16;
	ctx_context_status *v = malloc(cap * sizeof(*v));
	if (!v)
		return ctx_fail(CTX_NOMEM, "no memory for the status view");
	bool nomem = false;
	ctx_rcu_read_lock();
	for (index_node *x = index_seek(&s->index, NULL, 0, false); x && !nomem;
	     x = index_next(x)) {
		ctx_context *c = index_owner(x);
		if (!store_listed(c))
			continue;
		ctx_state *st = state_retain_current(&c->visible);
		if (!st) /* gone meanwhile */
			continue;
		if (n == cap) {
			ctx_context_status *g = realloc(v, 2 * cap * sizeof(*v));
			nomem = !g;
			v = g ? g : v;
			cap = g ? 2 * cap : cap;
		}
		if (!nomem)
			fill_status(&v[n++], c, st);
		ctx_state_release(st);
	}
	ctx_rcu_read_unlock();
	if (nomem) {
		free(v);
		return ctx_fail(CTX_NOMEM, "no memory for the status view");
	}
	*out = v;
	*count = n;
	return CTX_OK;
}

ctx_status ctx_context_info(ctx_store *s, const char *id, ctx_context_status *out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	size_t idlen;
	ctx_status r = store_check_id(s, id, &idlen);
	if (r != CTX_OK)
		return r;
	if (!out)
		return ctx_fail(CTX_INVALID, "NULL output");
	ctx_context *c = store_find_context(s, id, idlen);
	if (!c)
		return ctx_fail(CTX_NOT_FOUND, "no context '%s'", id);
	ctx_state *st = NULL;
	if (store_listed(c)) { /* as the status view: no time noted */
		/* fill_status reads c's point set, which a point change frees
		 * after a grace period: fill inside the read section. */
		ctx_rcu_read_lock();
		st = state_retain_current(&c->visible);
		if (st)
			fill_status(out, c, st);
		ctx_rcu_read_unlock();
	}
	if (st)
		ctx_state_release(st);
	context_release(c);
	return st ? CTX_OK : ctx_fail(CTX_NOT_FOUND, "no context '%s'", id);
}
