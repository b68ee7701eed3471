/*
 * multi.c - write batches (the wbatch of server.h) and transactions: MULTI,
 * EXEC, DISCARD, WATCH, UNWATCH.
 *
 * WRITE BATCH
 *   A wbatch starts from the newest decided version of one context
 *   (ctx_get_latest; NULL if absent) and records changes in an overlay: a
 *   small open-addressing table from field to new value or deletion, kept in
 *   the order the changes were made. Reads through the batch see base +
 *   overlay. The commit replays the overlay into one transaction committed
 *   with ctx_txn_commit_nowait, guarded by the base's version (a create is
 *   guarded by "must not exist"), so a batch applies only on top of exactly
 *   what its command read: if anything else got in first the commit says
 *   CTX_CONFLICT and the core runs the command again on a fresh batch.
 *   The transaction starts from the base (ctx_txn_begin_state): no second
 *   walk of the context table, and bound to the base's incarnation (a
 *   context dropped and created again meanwhile is a conflict, even at the
 *   same version number).
 *   A batch whose context was dropped (DEL) and not written afterwards
 *   commits with ctx_drop_nowait. One dropped and then written (MULTI; DEL
 *   k; HSET k ...; EXEC) commits as ONE transaction on the existing
 *   context, guarded by the base's version: it clears the context
 *   (ctx_txn_clear: every field and metadata entry of the base goes, in
 *   O(1) whatever their number) and puts the overlay's fields
 *   (commit_replace). Until round 11 it deleted the base's fields one by
 *   one, O(fields) on the loop thread (0.36 s for 200,000). It used to be a drop and a
 *   create: two log records and two syncs (the create even waited on the
 *   loop thread for the drop's sync), and a crash between them kept the
 *   drop alone, a key gone although the EXEC that deleted it also wrote it
 *   (tests/server/test_exec_atomic.c). For Redis commands the result is the
 *   same key (a context with no fields is absent for them); for CTX.* the
 *   context keeps its identity: version numbers go on, history and points
 *   stay, CTX.WATCH sees one update, not a drop and a create. One thing the
 *   transaction cannot carry: the context's idle ttl (ctx_set_ttl is its
 *   own record). Redis's DEL + write leaves a key without a ttl, so a
 *   context that has one (ctx_context_info, one lookup) is committed as a
 *   drop and a create, as before: two commits, not atomic across a crash.
 *   A write that leaves no fields keeps the context (version with zero
 *   fields): Redis commands treat it as absent, CTX.* commands still see it.
 *   The field count is kept as changes are recorded, except after
 *   wb_put_blind (a put that does not look its field up: HSET, HMSET) and
 *   from the start (most writes never ask): then wb_count works it out on
 *   demand, base count + overlay puts absent from the base - overlay
 *   deletions present in it. wbatch_new_fields counts the puts absent from
 *   the base: HSET's reply, taken after the commit (whose path copy has
 *   just read the base's nodes: the lookups are warm), which is exact
 *   because the commit is guarded by the base's version. Each thread keeps
 *   one freed batch with its small arrays for the next wbatch_new.
 *
 * TRANSACTIONS
 *   MULTI queues copies of the commands (after checking name and arity: an
 *   error there makes EXEC answer EXECABORT). EXEC checks the WATCHed
 *   contexts' versions (null reply if one moved), requires every queued
 *   command with a key to name the same context, then runs all queued
 *   commands against one batch and commits it once: one version. If a queued
 *   command replies an error, nothing is committed and EXEC replies that
 *   error alone (stronger than Redis, which applies the rest).
 *   ACROSS A CRASH an EXEC is all or nothing: it touches one context and is
 *   one commit, one log record (a DEL followed by writes too, see above),
 *   except a DEL followed by writes of a context that may have an idle ttl
 *   (drop, then create). libctx has no commit spanning several contexts, which is
 *   one reason EXEC refuses a second context.
 */
#include "core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- write batches --------------------------------------------------------------- */

typedef struct wentry {
	char *k; /* key then value, one allocation */
	size_t kn;
	char *v;
	size_t vn;
	bool del;
} wentry;

struct wbatch {
	char id[CTX_ID_MAX + 1];
	ctx_state *base;
	bool exists;  /* with the recorded changes */
	bool dropped; /* the base is dropped       */
	bool dirty;
	bool count_stale; /* wb_put_blind since: count is computed on demand */
	size_t count;
	wentry *ents;
	size_t nents, capents;
	uint32_t *slots; /* index + 1 into ents; 0 = empty */
	size_t nslots;
};

static uint64_t hash_bytes(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ull;
	return h;
}

static wentry *find(wbatch *w, const void *k, size_t kn, size_t *slot)
{
	if (!w->nslots)
		return NULL;
	size_t mask = w->nslots - 1;
	size_t i = (size_t)hash_bytes(k, kn) & mask;
	for (;; i = (i + 1) & mask) {
		uint32_t s = w->slots[i];
		if (!s) {
			if (slot)
				*slot = i;
			return NULL;
		}
		wentry *e = &w->ents[s - 1];
		if (e->kn == kn && memcmp(e->k, k, kn) == 0) {
			if (slot)
				*slot = i;
			return e;
		}
	}
}

static void rehash(wbatch *w)
{
	size_t n = w->nslots ? w->nslots * 2 : 16;
	free(w->slots);
	w->slots = calloc(n, sizeof(uint32_t));
	if (!w->slots)
		abort();
	w->nslots = n;
	for (size_t e = 0; e < w->nents; e++) {
		size_t i = (size_t)hash_bytes(w->ents[e].k, w->ents[e].kn) & (n - 1);
		while (w->slots[i])
			i = (i + 1) & (n - 1);
		w->slots[i] = (uint32_t)(e + 1);
	}
}

static void record(wbatch *w, const void *k, size_t kn, const void *v, size_t vn, bool del)
{
	size_t slot = 0; /* set by find, or by the find after a rehash */
	wentry *e = find(w, k, kn, &slot);
	if (e) {
		char *nk = xmalloc(kn + vn + 1);
		memcpy(nk, k, kn);
		if (vn)
			memcpy(nk + kn, v, vn);
		free(e->k);
		e->k = nk;
		e->v = nk + kn;
		e->vn = vn;
		e->del = del;
		return;
	}
	if ((w->nents + 1) * 2 > w->nslots) {
		rehash(w);
		find(w, k, kn, &slot);
	}
	if (w->nents == w->capents) {
		w->capents = w->capents ? w->capents * 2 : 8;
		w->ents = xrealloc(w->ents, w->capents * sizeof(wentry));
	}
	wentry *ne = &w->ents[w->nents];
	ne->k = xmalloc(kn + vn + 1);
	memcpy(ne->k, k, kn);
	if (vn)
		memcpy(ne->k + kn, v, vn);
	ne->kn = kn;
	ne->v = ne->k + kn;
	ne->vn = vn;
	ne->del = del;
	w->nents++;
	w->slots[slot] = (uint32_t)w->nents;
}

static void clear_overlay(wbatch *w)
{
	for (size_t i = 0; i < w->nents; i++)
		free(w->ents[i].k);
	w->nents = 0;
	if (w->slots)
		memset(w->slots, 0, w->nslots * sizeof(uint32_t));
}

/* One freed batch per thread, kept with its (small) arrays for the next
 * command: a write then allocates no batch, slot table or entry array. */
#define SPARE_MAX_SLOTS 64
static _Thread_local wbatch *spare;

static wbatch *batch_alloc(void)
{
	wbatch *w = spare;
	if (!w)
		return calloc(1, sizeof(*w));
	spare = NULL;
	wentry *ents = w->ents;
	uint32_t *slots = w->slots;
	size_t capents = w->capents, nslots = w->nslots;
	*w = (wbatch){.ents = ents, .capents = capents, .slots = slots, .nslots = nslots};
	return w;
}

void wbatch_spare_free(void)
{
	if (spare) {
		free(spare->ents);
		free(spare->slots);
		free(spare);
		spare = NULL;
	}
}

wbatch *wbatch_new(const char *id, ctx_status *st)
{
	ctx_state *base = NULL;
	ctx_status s = ctx_get_latest(srv.store, id, &base);
	if (s != CTX_OK && s != CTX_NOT_FOUND) {
		*st = s;
		return NULL;
	}
	wbatch *w = batch_alloc();
	if (!w) {
		ctx_state_release(base);
		*st = CTX_NOMEM;
		return NULL;
	}
	size_t n = strnlen(id, CTX_ID_MAX);
	memcpy(w->id, id, n);
	w->id[n] = '\0';
	w->base = s == CTX_OK ? base : NULL;
	w->exists = w->base != NULL;
	w->count_stale = true; /* counted on demand: a write may never ask */
	return w;
}

void wbatch_free(wbatch *w)
{
	if (!w)
		return;
	clear_overlay(w);
	ctx_state_release(w->base);
	w->base = NULL;
	if (!spare && w->nslots <= SPARE_MAX_SLOTS) {
		spare = w;
		return;
	}
	free(w->ents);
	free(w->slots);
	free(w);
}

const char *wbatch_id(const wbatch *w)
{
	return w->id;
}

bool wbatch_dirty(const wbatch *w)
{
	return w->dirty;
}

bool wb_exists(wbatch *w)
{
	return w->exists;
}

/* Whether k is a field of the version the batch started from. */
static bool in_base(const wbatch *w, const void *k, size_t kn)
{
	return w->base && !w->dropped && ctx_state_lookup(w->base, k, kn, NULL, NULL);
}

size_t wb_count(wbatch *w)
{
	if (w->count_stale) {
		size_t n = w->base && !w->dropped ? ctx_state_count(w->base) : 0;
		for (size_t i = 0; i < w->nents; i++) {
			bool was = in_base(w, w->ents[i].k, w->ents[i].kn);
			n += !w->ents[i].del && !was;
			n -= w->ents[i].del && was;
		}
		w->count = n;
		w->count_stale = false;
	}
	return w->count;
}

size_t wbatch_new_fields(const wbatch *w)
{
	size_t n = 0;
	for (size_t i = 0; i < w->nents; i++)
		n += !w->ents[i].del && !in_base(w, w->ents[i].k, w->ents[i].kn);
	return n;
}

const ctx_state *wb_base(wbatch *w)
{
	return w->dropped ? NULL : w->base;
}

bool wb_get(wbatch *w, const void *k, size_t kn, const void **v, size_t *vn)
{
	wentry *e = find(w, k, kn, NULL);
	if (e) {
		if (e->del)
			return false;
		if (v)
			*v = e->v;
		if (vn)
			*vn = e->vn;
		return true;
	}
	if (w->dropped || !w->base)
		return false;
	return ctx_state_lookup(w->base, k, kn, v, vn);
}

void wb_put(wbatch *w, const void *k, size_t kn, const void *v, size_t vn)
{
	const void *ov;
	size_t on;
	if (!w->exists)
		w->exists = true;
	if (!wb_get(w, k, kn, &ov, &on))
		w->count++;
	record(w, k, kn, v, vn, false);
	w->dirty = true;
}

void wb_put_blind(wbatch *w, const void *k, size_t kn, const void *v, size_t vn)
{
	w->exists = true;
	record(w, k, kn, v, vn, false);
	w->dirty = true;
	w->count_stale = true;
}

void wb_del(wbatch *w, const void *k, size_t kn)
{
	const void *ov;
	size_t on;
	if (!wb_get(w, k, kn, &ov, &on))
		return;
	w->count--;
	record(w, k, kn, NULL, 0, true);
	w->dirty = true;
}

void wb_drop(wbatch *w)
{
	if (!w->exists)
		return;
	clear_overlay(w);
	w->dropped = w->base != NULL;
	w->exists = false;
	w->count = 0;
	w->count_stale = false;
	w->dirty = w->dropped;
}

void wb_foreach(wbatch *w, wb_visit_fn *fn, void *farg)
{
	if (w->base && !w->dropped) {
		ctx_iter *it;
		if (ctx_iter_begin(w->base, &it) == CTX_OK) {
			const void *k, *v;
			size_t kn, vn;
			while (ctx_iter_next(it, &k, &kn, &v, &vn)) {
				if (find(w, k, kn, NULL))
					continue;
				if (!fn(farg, k, kn, v, vn)) {
					ctx_iter_free(it);
					return;
				}
			}
			ctx_iter_free(it);
		}
	}
	for (size_t i = 0; i < w->nents; i++)
		if (!w->ents[i].del &&
		    !fn(farg, w->ents[i].k, w->ents[i].kn, w->ents[i].v, w->ents[i].vn))
			return;
}

static ctx_status as_conflict(ctx_status st)
{
	return (st == CTX_NOT_FOUND || st == CTX_EXISTS) ? CTX_CONFLICT : st;
}

/* ---- DEL then a write of the same context: one commit --------------------------- */

/* Whether context id has an idle ttl now (true when it cannot tell; a
 * context gone meanwhile has none: the commit meets the conflict). A ttl
 * set after this look is ordered after the EXEC, as in Redis. */
static bool has_ttl(const char *id)
{
	ctx_context_status v;
	ctx_status st = ctx_context_info(srv.store, id, &v);
	return st == CTX_NOT_FOUND ? false : st != CTX_OK || v.ttl_ms != 0;
}

/* DEL then writes of a context that existed: one commit on the existing
 * context, guarded by the base's version, that removes every old field and
 * metadata entry (ctx_txn_clear: the new version starts from empty maps, in
 * O(1), not one deletion per old field) and puts the new fields, instead
 * of a drop and a create (two log records, two syncs: a crash between them
 * kept the drop alone). */
static ctx_status commit_replace(wbatch *w, uint64_t *rev)
{
	ctx_txn *t;
	ctx_status st = ctx_txn_begin_state(w->base, &t);
	if (st != CTX_OK)
		return as_conflict(st);
	st = ctx_txn_clear(t);
	for (size_t i = 0; i < w->nents && st == CTX_OK; i++)
		if (!w->ents[i].del)
			st = ctx_txn_put(t, w->ents[i].k, w->ents[i].kn, w->ents[i].v,
			                 w->ents[i].vn);
	if (st != CTX_OK) {
		ctx_txn_abort(t);
		return st;
	}
	st = ctx_txn_commit_nowait(t, ctx_state_version(w->base), NULL, rev);
	return as_conflict(st);
}

ctx_status wbatch_commit(wbatch *w, uint64_t *rev)
{
	*rev = 0;
	if (!w->dirty)
		return CTX_OK;
	ctx_status st;
	if (w->dropped && w->exists && !has_ttl(w->id))
		return commit_replace(w, rev);
	if (w->dropped) {
		st = ctx_drop_nowait(srv.store, w->id, rev);
		if (st != CTX_OK)
			return as_conflict(st);
	}
	if (!w->exists)
		return CTX_OK;
	bool create = !w->base || w->dropped;
	ctx_txn *t;
	st = create ? ctx_txn_begin_create(srv.store, w->id, &t) : ctx_txn_begin_state(w->base, &t);
	if (st != CTX_OK)
		return as_conflict(st);
	for (size_t i = 0; i < w->nents; i++) {
		wentry *e = &w->ents[i];
		if (e->del && create)
			continue;
		st =
		    e->del ? ctx_txn_del(t, e->k, e->kn) : ctx_txn_put(t, e->k, e->kn, e->v, e->vn);
		if (st != CTX_OK) {
			ctx_txn_abort(t);
			return st;
		}
	}
	uint64_t r = 0;
	st = ctx_txn_commit_nowait(t, create ? 0 : ctx_state_version(w->base), NULL, &r);
	if (st != CTX_OK)
		return as_conflict(st);
	*rev = r;
	return CTX_OK;
}

/* ---- MULTI / EXEC ---------------------------------------------------------------- */

static void unwatch(client *c)
{
	free(c->watched);
	c->watched = NULL;
	c->nwatched = c->capwatched = 0;
}

/* A queued command's memory besides its arguments' bytes and vectors:
 * its slot in c->queue (up to twice, as the vector doubles) and its copy's
 * allocation rounding and header. */
#define QUEUE_OVERHEAD (2 * sizeof(queued_cmd) + 16)

static void discard_queue(client *c)
{
	for (size_t i = 0; i < c->nqueue; i++)
		free(c->queue[i].argv);
	c->nqueue = 0;
	c->queue_bytes = 0;
	/* A transaction of millions of commands grew the vector to tens of
	 * bytes each: keeping it would hold that for the connection's life,
	 * uncounted, once queue_bytes is back to 0. */
	if (c->capqueue > 1024) {
		free(c->queue);
		c->queue = NULL;
		c->capqueue = 0;
	}
	c->in_multi = false;
	c->multi_error = false;
}

void multi_reset(client *c)
{
	discard_queue(c);
	unwatch(c);
}

bool multi_intercept(client *c, const command *cmd, int argc, const arg *argv)
{
	static const char *const now[] = {"EXEC", "DISCARD", "MULTI", "WATCH", "QUIT", "RESET"};
	for (size_t i = 0; i < sizeof(now) / sizeof(now[0]); i++)
		if (strcmp(cmd->name, now[i]) == 0)
			return false;
	c->cmd_start = c->out_base + c->out.len;
	if (cmd->flags & (CMD_NOMULTI | CMD_BLOCKING)) {
		reply_error(c, "ERR Command not allowed inside a transaction");
		c->multi_error = true;
		c->replies++;
		return true;
	}
	size_t bytes = (size_t)argc * sizeof(arg);
	for (int i = 0; i < argc; i++)
		bytes += argv[i].n;
	/* What queue_bytes counts against client-query-buffer-limit: the copy,
	 * and the command's slot in the vector (twice: the vector doubles) and
	 * the copy's allocation overhead (QUEUE_OVERHEAD), which outweigh a
	 * short command's bytes: a PING counted as its 20 bytes alone let one
	 * MULTI hold about 2.5 times the limit (round 22). */
	size_t counted = bytes + QUEUE_OVERHEAD;
	arg *copy = xmalloc(bytes ? bytes : 1);
	char *p = (char *)(copy + argc);
	for (int i = 0; i < argc; i++) {
		if (argv[i].n)
			memcpy(p, argv[i].p, argv[i].n);
		copy[i].p = p;
		copy[i].n = argv[i].n;
		p += argv[i].n;
	}
	if (c->nqueue == c->capqueue) {
		c->capqueue = c->capqueue ? c->capqueue * 2 : 8;
		c->queue = xrealloc(c->queue, c->capqueue * sizeof(queued_cmd));
	}
	c->queue[c->nqueue++] = (queued_cmd){cmd, argc, copy};
	c->queue_bytes += counted;
	/* Checked here, per queued command, and not only after each read
	 * (run_input): one read can bring a whole MULTI ... EXEC, whose EXEC
	 * empties the queue before that check, and a read of up to the limit
	 * queues several times the limit in copies (round 22: CI's loaded
	 * machine read 30,000 PINGs and their EXEC at once, and ran them). */
	size_t qlimit =
	    atomic_load_explicit(&srv.cfg.client_query_buffer_limit, memory_order_relaxed);
	if (qlimit && c->queue_bytes > qlimit) {
		server_log('W',
		           "client id=%llu addr=%s closed: a transaction's queue of %zu bytes over "
		           "client-query-buffer-limit",
		           (unsigned long long)c->id, c->addr, c->queue_bytes);
		client_close(c);
		return true;
	}
	rbuf_add(&c->out, "+QUEUED\r\n", 9);
	c->replies++;
	return true;
}

static void cmd_multi(client *c, int argc, const arg *argv)
{
	if (c->in_multi) {
		reply_error(c, "ERR MULTI calls can not be nested");
		return;
	}
	c->in_multi = true;
	c->multi_error = false;
	reply_ok(c);
}

static void cmd_discard(client *c, int argc, const arg *argv)
{
	if (!c->in_multi) {
		reply_error(c, "ERR DISCARD without MULTI");
		return;
	}
	multi_reset(c);
	reply_ok(c);
}

/* What WATCH remembers of a context: the revision of its latest version (0
 * if absent). A revision names one commit store-wide, so a context dropped
 * and created again at the same version number still counts as changed.
 *
 * A latest version whose revision is still 0 is a create in flight: libctx
 * makes a new context's first version its head before the log hands out
 * its revision, and ctx_get_latest can return it in that window. Taking
 * that 0 for "absent" lost updates: a client that WATCHed the absent
 * context and read nothing saw it "unchanged" at EXEC, and its commit,
 * guarded by version 1, applied on top of the create (test_redis_py
 * test_watch_create_race). Such a revision is WATCH_IN_FLIGHT, which never
 * counts as unchanged: EXEC replies null and the client retries. */
#define WATCH_IN_FLIGHT UINT64_MAX

static uint64_t watch_revision(const ctx_state *st)
{
	if (!st)
		return 0;
	uint64_t r = ctx_state_revision(st);
	return r ? r : WATCH_IN_FLIGHT;
}

static bool watch_unchanged(uint64_t now, uint64_t recorded)
{
	return now == recorded && now != WATCH_IN_FLIGHT;
}

static uint64_t latest_version(const char *id)
{
	ctx_state *st;
	if (ctx_get_latest(srv.store, id, &st) != CTX_OK)
		return 0;
	uint64_t v = watch_revision(st);
	ctx_state_release(st);
	return v;
}

static bool is_watched(client *c, const char *id);

/* A watched context changed between EXEC's check and the batch's base. */
static bool watched_base_moved(client *c, const wbatch *w)
{
	for (size_t i = 0; i < c->nwatched; i++)
		if (strcmp(c->watched[i].id, c->exec_id) == 0) {
			const ctx_state *b = wb_base((wbatch *)w);
			return !watch_unchanged(watch_revision(b), c->watched[i].version);
		}
	return false;
}

static void cmd_watch(client *c, int argc, const arg *argv)
{
	if (c->in_multi) {
		reply_error(c, "ERR WATCH inside MULTI is not allowed");
		return;
	}
	size_t before = c->nwatched;
	for (int i = 1; i < argc; i++) {
		char id[CTX_ID_MAX + 1];
		if (!arg_to_id(c, &argv[i], id)) { /* refused whole, as below */
			c->nwatched = before;
			return;
		}
		bool seen = false;
		for (size_t k = 0; k < c->nwatched && !seen; k++)
			seen = strcmp(c->watched[k].id, id) == 0;
		if (seen)
			continue;
		if (c->nwatched == CTXD_MAX_WATCHED) { /* refused whole */
			c->nwatched = before;
			reply_error(c, "ERR WATCH of more than %d contexts on one connection",
			            CTXD_MAX_WATCHED);
			return;
		}
		if (c->nwatched == c->capwatched) {
			c->capwatched = c->capwatched ? c->capwatched * 2 : 4;
			c->watched = xrealloc(c->watched, c->capwatched * sizeof(watched_key));
		}
		memcpy(c->watched[c->nwatched].id, id, sizeof(id));
		c->watched[c->nwatched].version = latest_version(id);
		c->nwatched++;
	}
	reply_ok(c);
}

static void cmd_unwatch(client *c, int argc, const arg *argv)
{
	unwatch(c);
	reply_ok(c);
}

static bool watched_moved(client *c)
{
	for (size_t i = 0; i < c->nwatched; i++)
		if (!watch_unchanged(latest_version(c->watched[i].id), c->watched[i].version))
			return true;
	return false;
}

static bool is_watched(client *c, const char *id)
{
	for (size_t i = 0; i < c->nwatched; i++)
		if (strcmp(c->watched[i].id, id) == 0)
			return true;
	return false;
}

/* Find the one context of the queue into c->exec_id ("" if none). */
static bool exec_context(client *c)
{
	c->exec_id[0] = '\0';
	for (size_t i = 0; i < c->nqueue; i++) {
		queued_cmd *q = &c->queue[i];
		if (q->cmd->first_key <= 0 || q->cmd->first_key >= q->argc)
			continue;
		char id[CTX_ID_MAX + 1];
		if (!arg_to_id(c, &q->argv[q->cmd->first_key], id))
			return false;
		if (!c->exec_id[0]) {
			memcpy(c->exec_id, id, sizeof(id));
		} else if (strcmp(id, c->exec_id) != 0) {
			reply_error(c,
			            "ERR EXEC refused: the queued commands touch more than one "
			            "context ('%s' and '%s'); a transaction works on one context, "
			            "nothing was applied",
			            c->exec_id, id);
			return false;
		}
	}
	return true;
}

/* Run the queue once against a fresh batch. Returns the commit status; on a
 * queued command's error, replies it alone and returns CTX_OK. */
static ctx_status exec_once(client *c, size_t mark)
{
	ctx_status st = CTX_OK;
	c->exec_wb = c->exec_id[0] ? wbatch_new(c->exec_id, &st) : NULL;
	if (c->exec_id[0] && !c->exec_wb) {
		reply_ctx_error(c, st);
		return CTX_OK;
	}
	/* The batch starts from the latest version, which may be newer than the
	 * one EXEC checked against WATCH: then the transaction must fail. */
	if (c->exec_wb && watched_base_moved(c, c->exec_wb)) {
		wbatch_free(c->exec_wb);
		c->exec_wb = NULL;
		return CTX_CONFLICT;
	}
	if (c->exec_wb && wb_base(c->exec_wb))
		client_need_durable(c, ctx_state_revision(wb_base(c->exec_wb)));
	reply_array(c, c->nqueue);
	c->in_exec = true;
	for (size_t i = 0; i < c->nqueue; i++) {
		queued_cmd *q = &c->queue[i];
		size_t m = reply_mark(c);
		exec_command(c, q->cmd, q->argc, q->argv);
		if (c->out.len > m && c->out.p[m] == '-') {
			size_t n;
			const char *e = reply_at(c, m, &n);
			char *copy = xmalloc(n);
			memcpy(copy, e, n);
			reply_truncate(c, mark);
			reply_raw(c, copy, n);
			free(copy);
			c->in_exec = false;
			wbatch_free(c->exec_wb);
			c->exec_wb = NULL;
			return CTX_OK;
		}
	}
	c->in_exec = false;
	uint64_t rev = 0;
	if (c->exec_wb)
		st = wbatch_commit(c->exec_wb, &rev);
	wbatch_free(c->exec_wb);
	c->exec_wb = NULL;
	if (st == CTX_OK)
		client_need_durable(c, rev);
	return st;
}

static void cmd_exec(client *c, int argc, const arg *argv)
{
	if (!c->in_multi) {
		reply_error(c, "ERR EXEC without MULTI");
		return;
	}
	if (c->multi_error) {
		reply_error(c, "EXECABORT Transaction discarded because of previous errors.");
		multi_reset(c);
		return;
	}
	if (watched_moved(c)) {
		reply_null_array(c);
		multi_reset(c);
		return;
	}
	if (!exec_context(c)) {
		multi_reset(c);
		return;
	}
	for (int attempt = 0;; attempt++) {
		size_t mark = reply_mark(c);
		ctx_status st = exec_once(c, mark);
		if (st == CTX_OK)
			break;
		reply_truncate(c, mark);
		if (st == CTX_CONFLICT && is_watched(c, c->exec_id)) {
			reply_null_array(c);
			break;
		}
		if (!commit_retry(c, st, attempt))
			break;
	}
	multi_reset(c);
}

const command multi_commands[] = {
    {"MULTI", cmd_multi, 1, CMD_NOMULTI, 0, "Starts a transaction (on one context).",
     "transactions"},
    {"EXEC", cmd_exec, 1, 0, 0, "Executes the queued commands as one commit, all or nothing.",
     "transactions"},
    {"DISCARD", cmd_discard, 1, 0, 0, "Discards a transaction.", "transactions"},
    {"WATCH", cmd_watch, -2, CMD_NOMULTI, 1, "Makes EXEC fail if a context's version changes.",
     "transactions"},
    {"UNWATCH", cmd_unwatch, 1, 0, 0, "Forgets the WATCHed contexts.", "transactions"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};
