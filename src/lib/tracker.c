/*
 * tracker.c - trackers: working copies of one context, synced back with a
 * three-way, key-level merge.
 *
 * A tracker holds a reference to its base state (the version it was opened,
 * last synced or refreshed at) and a table of local edits: per key, the value
 * put or a delete, with the time of the edit. Reads see the base plus the
 * edits. The base stays available because the tracker holds it, whatever
 * history the store keeps. Besides the public API of libctx, it uses only the
 * store's lookup of a context, a version's incarnation (to tell a context
 * from one created again under the same id) and the trie's lookup by hash
 * (hamt_find): an edit keeps its key's hamt_hash, which also places it in the
 * edit table, so a key is hashed once however often a sync looks it up.
 *
 * MERGE (sync)
 *   Per locally edited key, with b = its base value, l = the local value and
 *   c = its value in the newest version:
 *     l == b or l == c   -> c   (changed remotely only, not at all, or both
 *                                sides made the same change)
 *     c == b             -> l   (changed locally only)
 *     otherwise             a conflict, decided by the strategy.
 *   Values compare by content; "absent" is a value (a delete against a
 *   modify is a conflict). Keys only the other side changed already hold
 *   their merged value in the newest version, so the merge never visits
 *   them: a sync costs O(local edits x log n) lookups, whatever the size of
 *   the context and the number of remote changes (no diff is needed; a key's
 *   base leaf is looked up once per sync, not once per attempt). The
 *   keys whose merged value differs from c are committed as one transaction
 *   guarded by c's version; when another writer got in first (CTX_CONFLICT)
 *   the merge is redone against the new newest version.
 *
 * PER-KEY BASES
 *   An edit's base value b is normally the key's value in the base state. Two
 *   things give an edit a base value of its own:
 *   - resolving a manual conflict: the caller has seen the current value c,
 *     so b becomes c, and a later sync reports the key again only if the key
 *     has moved away from c since;
 *   - an edit made while a sync ran (from the timer's sync, or from inside
 *     the merge function): it was made on the old working copy, so when the
 *     base moves on it keeps that copy's value as its base wherever the new
 *     base differs, and a remote change the caller never saw still counts as
 *     a conflict at the next sync.
 *
 * STRATEGIES for a conflict
 *   latest/oldest compare the local edit's time (the store's clock when
 *   ctx_tracker_put/del was called) with the time the newest version's
 *   value was set (ctx_state_key_time; for a key deleted there, that version's
 *   commit time, the latest the delete can have happened). Ties go to the
 *   current value. function calls the merge function with no lock held; when
 *   a merge is redone after losing a commit race it may be asked about the same
 *   key again. manual commits nothing and keeps the conflicts for
 *   ctx_tracker_conflicts; a tracker put/del of a conflicting key or
 *   ctx_tracker_resolve resolves it.
 *
 * DECISIONS
 *   - A sync that committed and then fails to make its recovery point
 *     (point_on_sync) still returns CTX_OK: the changes are durable and the
 *     edits cleared, so failing would invite a pointless retry.
 *     ctx_last_error() then describes the point's failure. Only a sync that
 *     committed a version makes a point (the context's newest version).
 *   - Timer syncs report to nobody: when one fails the edits stay pending
 *     and the next tick or ctx_tracker_sync retries; the conflicts of a
 *     manual timer sync show in ctx_tracker_conflicts. A tick that finds a
 *     sync or refresh running skips its turn.
 *   - Edits are checked against the store's limits when made (CTX_INVALID),
 *     so that no edit can make every later sync fail. That needs the context
 *     to exist: an edit to a dropped context fails with CTX_NOT_FOUND.
 *   - The context dropped, or dropped and created again, since the base:
 *     sync, refresh, put and del fail with CTX_NOT_FOUND; is_stale says
 *     true. A context is recognised by its incarnation (the revision of its
 *     create, unique in the store), not by its creation time: a drop and a
 *     create within one microsecond (a fake clock, or a fast memory-only
 *     store) make a different context.
 *   - A refresh drops the edits the newest version already holds (and those
 *     that change nothing against their base).
 *   - A sync gives up with CTX_CONFLICT after SYNC_MAX_ATTEMPTS commits lost
 *     to other writers in a row (each loss means another writer progressed),
 *     backing off a little more after each.
 *
 * THREADS AND LOCKS
 *   t->lock guards all of the tracker's state (base, edits, conflicts, the
 *   busy and stop flags). It is a leaf: only lock-free library reads
 *   (ctx_get, ctx_state_lookup) are called under it, never a commit (which
 *   waits for fsync), the merge function or point creation. A sync snapshots
 *   the edits under the lock, merges and commits without it, then applies
 *   the result under it again; edits made in between stay pending. One sync
 *   runs at a time (the busy flag: another sync or a refresh waits on
 *   idle_cv, which releases the lock; a timer tick skips). A refresh does
 *   only lookups and runs under the lock.
 *
 *   The snapshot is the edits themselves, by pointer, and takes no reference
 *   to their keys and values: an edit in it is frozen (never changed or
 *   freed while the sync runs, but for the sync's own results in it,
 *   in_base, took_local and owned, which only the sync touches). A put,
 *   del or resolve of a frozen edit puts a copy in its table slot and
 *   changes the copy (table_thaw_at); the frozen one is the sync's to
 *   free. When the sync ends (under the lock) the synced edits leave the
 *   table and are freed after it, with the replaced ones.
 *
 *   Calls may come from any thread; the array ctx_tracker_conflicts returns
 *   stays valid until the next ctx_tracker_conflicts or ctx_tracker_close.
 *   The merge function may use the tracker (read, edit) but not sync or
 *   refresh it (CTX_INVALID).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"
#include "util.h"

/* A sync gives up after this many guarded commits lost in a row. */
#define SYNC_MAX_ATTEMPTS 1000

/* ---- values ------------------------------------------------------------------ */

/* Immutable bytes shared by reference (keys, values put locally). */
typedef struct blob {
	atomic_size_t refs;
	size_t len;
	unsigned char data[];
} blob;

static blob *blob_new(const void *p, size_t len)
{
	blob *b = malloc(sizeof(*b) + len);
	if (!b)
		return NULL;
	atomic_init(&b->refs, 1);
	b->len = len;
	if (len)
		memcpy(b->data, p, len);
	return b;
}

static blob *blob_ref(blob *b)
{
	if (b)
		atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

static void blob_unref(blob *b)
{
	if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
}

/* A value of a key: present with bytes, or absent (deleted, never there). */
typedef struct val {
	bool present;
	const void *p;
	size_t len;
} val;

static const val ABSENT = {false, NULL, 0};

static bool val_eq(val a, val b)
{
	if (a.present != b.present)
		return false;
	return !a.present ||
	       (a.len == b.len && (a.len == 0 || a.p == b.p || memcmp(a.p, b.p, a.len) == 0));
}

/* The value a trie leaf holds (NULL: absent). */
static val leaf_val(const hamt_leaf *l)
{
	return l ? (val){true, hamt_leaf_value(l), l->vlen} : ABSENT;
}

/* The leaf of key (hash: hamt_hash of it) in st. */
static const hamt_leaf *find_leaf(const ctx_state *st, uint64_t hash, const blob *key)
{
	return hamt_find(&st->data, hash, key->data, key->len);
}

/* A value together with a reference to what keeps its bytes alive: a blob or
 * a state. Taking or copying one never allocates. */
typedef struct held {
	val v;
	blob *b;
	ctx_state *st;
} held;

static held hold_blob(blob *b) /* takes over the caller's reference */
{
	return b ? (held){{true, b->data, b->len}, b, NULL} : (held){ABSENT, NULL, NULL};
}

static held hold_state(ctx_state *st, val v)
{
	return (held){v, NULL, v.present ? ctx_state_retain(st) : NULL};
}

static held hold_copy(const held *h)
{
	return (held){h->v, blob_ref(h->b), h->st ? ctx_state_retain(h->st) : NULL};
}

static void held_release(held *h)
{
	blob_unref(h->b);
	ctx_state_release(h->st);
	*h = (held){ABSENT, NULL, NULL};
}

static ctx_merge_value merge_value(val v, uint64_t time_us)
{
	return (ctx_merge_value){v.present, v.p, v.len, time_us};
}

/* ---- local edits --------------------------------------------------------------- */

/* A key's leaf in the base state, looked up once. */
typedef struct base_leaf {
	const hamt_leaf *leaf;
	bool known;
} base_leaf;

typedef struct edit {
	uint64_t hash; /* hamt_hash of the key: places it in the table and the trie */
	blob *key;
	held val;         /* the local value; absent: deleted                */
	uint64_t time_us; /* when the edit was made                          */
	uint64_t seq;     /* the tracker's edit counter then: later = higher */
	bool has_base;    /* base value given: `base`, not the base state's  */
	held base;        /* that base value                                 */
	size_t snap;      /* 1 + its index in the running sync's snapshot, 0 */
	size_t conflict;  /* 1 + its index in t->conflicts, 0                */
	bool frozen;      /* in the running sync's snapshot: never changed   */
	bool detached;    /* out of the table, the running sync's to free    */
	/* The running sync's, while frozen (set by it alone; see snapshot): */
	base_leaf in_base; /* the key's leaf in the job's base, once looked up */
	bool took_local;   /* the merge result is the local value */
	bool owned;        /* the job's to free (set under t->lock at the end) */
	size_t cost;       /* its bytes as the table last counted them (edit_cost) */
} edit;

/* The bytes a value holds of its own (a blob; a state's are the store's). */
static size_t held_bytes(const held *h)
{
	return h->b ? sizeof(blob) + h->b->len : 0;
}

/* The bytes an edit holds: itself, its key, its local and base values. A
 * blob shared by two edits (a resolve's copy of a frozen edit) counts in
 * each: an upper bound. */
static size_t edit_cost(const edit *e)
{
	return sizeof(*e) + sizeof(blob) + e->key->len + held_bytes(&e->val) + held_bytes(&e->base);
}

static void edit_free(edit *e)
{
	blob_unref(e->key);
	held_release(&e->val);
	held_release(&e->base);
	free(e);
}

static void edit_set_base(edit *e, held b) /* takes over b */
{
	held_release(&e->base);
	e->base = b;
	e->has_base = true;
}

static void edit_clear_base(edit *e)
{
	held_release(&e->base);
	e->has_base = false;
}

/* Open addressing with linear probing. Removal leaves a tombstone, so that
 * removing while iterating is safe; insertion rehashes once live entries and
 * tombstones fill 3/4 of the slots. */
typedef struct edit_table {
	edit **slots; /* NULL: empty, TOMB: removed */
	size_t cap;   /* 0 or a power of two */
	size_t count;
	size_t tombs;
	size_t bytes; /* the live edits' costs (edit_cost), for ctx_tracker_pending_bytes */
} edit_table;

static edit tomb_mark;
#define TOMB    (&tomb_mark)
#define LIVE(e) ((e) && (e) != TOMB)

/* e, in the table, changed its values: count its cost anew. Every change
 * of a live edit's key, val or base is followed by this, or the count
 * drifts (table_settle checks it reaches 0 with the last edit). */
static void table_recost(edit_table *tab, edit *e)
{
	tab->bytes -= e->cost;
	e->cost = edit_cost(e);
	tab->bytes += e->cost;
}

/* The edit of key and its slot (*at), or NULL. */
static edit *table_find_at(const edit_table *tab, uint64_t hash, const void *key, size_t klen,
                           size_t *at)
{
	if (!tab->cap)
		return NULL;
	size_t mask = tab->cap - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		edit *e = tab->slots[i];
		if (!e)
			return NULL;
		if (e != TOMB && e->hash == hash && e->key->len == klen &&
		    memcmp(e->key->data, key, klen) == 0) {
			*at = i;
			return e;
		}
	}
}

static edit *table_find(const edit_table *tab, uint64_t hash, const void *key, size_t klen)
{
	size_t at;
	return table_find_at(tab, hash, key, klen, &at);
}

/* Put e into fresh slots (no tombstones, e's key not there yet). */
static void table_place(edit **slots, size_t cap, edit *e)
{
	size_t mask = cap - 1, i = e->hash & mask;
	while (slots[i])
		i = (i + 1) & mask;
	slots[i] = e;
}

static ctx_status table_insert(edit_table *tab, edit *e)
{
	if ((tab->count + tab->tombs + 1) * 4 > tab->cap * 3) {
		size_t cap = 16;
		while ((tab->count + 1) * 2 > cap)
			cap *= 2;
		edit **slots = calloc(cap, sizeof(*slots));
		if (!slots)
			return ctx_fail(CTX_NOMEM, "no memory for tracker edits");
		for (size_t i = 0; i < tab->cap; i++)
			if (LIVE(tab->slots[i]))
				table_place(slots, cap, tab->slots[i]);
		free(tab->slots);
		tab->slots = slots;
		tab->cap = cap;
		tab->tombs = 0;
	}
	size_t i = e->hash & (tab->cap - 1);
	while (LIVE(tab->slots[i]))
		i = (i + 1) & (tab->cap - 1);
	if (tab->slots[i] == TOMB)
		tab->tombs--;
	tab->slots[i] = e;
	tab->count++;
	e->cost = 0;
	table_recost(tab, e);
	return CTX_OK;
}

/* Take the edit in slot i out of the table; the caller frees it. */
static edit *table_unlink_at(edit_table *tab, size_t i)
{
	edit *e = tab->slots[i];
	tab->slots[i] = TOMB;
	tab->count--;
	tab->tombs++;
	tab->bytes -= e->cost;
	return e;
}

static void table_remove_at(edit_table *tab, size_t i)
{
	edit_free(table_unlink_at(tab, i));
}

/* A frozen edit (in slot i) is about to change: put fresh, a copy of it, in
 * its place (fresh->key set, the rest zero) and leave the frozen one to its
 * sync. Returns fresh. */
static edit *table_thaw_at(edit_table *tab, size_t i, edit *fresh)
{
	edit *old = tab->slots[i];
	fresh->hash = old->hash;
	fresh->val = hold_copy(&old->val);
	fresh->time_us = old->time_us;
	fresh->seq = old->seq;
	fresh->has_base = old->has_base;
	fresh->base = hold_copy(&old->base);
	fresh->snap = old->snap;
	fresh->conflict = old->conflict;
	old->detached = true;
	tab->slots[i] = fresh;
	tab->bytes -= old->cost;
	fresh->cost = 0;
	table_recost(tab, fresh);
	return fresh;
}

/* After removals: an empty table gives its slots back. */
static void table_settle(edit_table *tab)
{
	if (tab->count == 0) {
		assert(tab->bytes == 0);
		free(tab->slots);
		*tab = (edit_table){0};
	}
}

static void table_free(edit_table *tab)
{
	for (size_t i = 0; i < tab->cap; i++)
		if (LIVE(tab->slots[i]))
			edit_free(tab->slots[i]);
	free(tab->slots);
	*tab = (edit_table){0};
}

/* ---- conflicts ------------------------------------------------------------------ */

typedef struct conflict_rec {
	blob *key;
	held base, local, cur;
	uint64_t local_us, cur_us;
	bool resolved;
} conflict_rec;

/* The conflicts of one manual sync: immutable but for the resolved flags
 * (t->lock), shared by the tracker and the caller's view. */
typedef struct conflict_set {
	atomic_size_t refs;
	size_t count;
	size_t cap;
	conflict_rec *recs;
} conflict_set;

static void conflicts_unref(conflict_set *cs)
{
	if (!cs || atomic_fetch_sub_explicit(&cs->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < cs->count; i++) {
		conflict_rec *r = &cs->recs[i];
		blob_unref(r->key);
		held_release(&r->base);
		held_release(&r->local);
		held_release(&r->cur);
	}
	free(cs->recs);
	free(cs);
}

static ctx_status conflicts_add(conflict_set **csp, const conflict_rec *r)
{
	conflict_set *cs = *csp;
	if (!cs) {
		if (!(cs = calloc(1, sizeof(*cs))))
			return ctx_fail(CTX_NOMEM, "no memory for conflicts");
		atomic_init(&cs->refs, 1);
		*csp = cs;
	}
	if (cs->count == cs->cap) {
		size_t cap = cs->cap ? 2 * cs->cap : 8;
		conflict_rec *recs = realloc(cs->recs, cap * sizeof(*recs));
		if (!recs)
			return ctx_fail(CTX_NOMEM, "no memory for conflicts");
		cs->recs = recs;
		cs->cap = cap;
	}
	cs->recs[cs->count++] = *r;
	return CTX_OK;
}

/* ---- the tracker ------------------------------------------------------------------- */

struct ctx_tracker {
	ctx_store *store;
	char *id;
	ctx_tracker_options opts;
	ctx_context *ctx; /* the tracked incarnation (t->base holds a reference) */

	pthread_mutex_t lock;
	pthread_cond_t idle_cv;  /* busy went false          */
	pthread_cond_t timer_cv; /* stop went true (monotonic clock) */
	ctx_state *base;
	edit_table edits;
	uint64_t seq;            /* edits made so far        */
	conflict_set *conflicts; /* of the last manual sync, or NULL */
	bool busy;               /* a sync runs              */
	pthread_t busy_thread;   /* the thread running it    */
	bool stop;               /* the timer must end       */
	bool timer_running;
	pthread_t timer;

	/* What ctx_tracker_conflicts last handed out. */
	conflict_set *view_set;
	ctx_conflict *view;
};

static void clear_conflicts(ctx_tracker *t)
{
	for (size_t i = 0; i < t->edits.cap; i++)
		if (LIVE(t->edits.slots[i]))
			t->edits.slots[i]->conflict = 0;
	conflicts_unref(t->conflicts);
	t->conflicts = NULL;
}

/* The incarnation of the context a version belongs to: the store revision
 * of its create, unique in the store for its whole life (a context dropped
 * and created again, even within the same microsecond, gets a new one). Set
 * before the context's first version is published, so reading it through a
 * version the caller holds needs no lock. */
static uint64_t incarnation_of(const ctx_state *st)
{
	return st->ctx->incarnation;
}

/* The newest version of the tracked context, if it is still the context the
 * base came from (not dropped, not dropped and created again). */
static ctx_status get_current(ctx_tracker *t, const ctx_state *base, ctx_state **out)
{
	ctx_state *cur;
	if (ctx_get(t->store, t->id, &cur) != CTX_OK)
		return ctx_fail(CTX_NOT_FOUND, "tracked context '%s' was dropped", t->id);
	if (incarnation_of(cur) != incarnation_of(base) ||
	    ctx_state_version(cur) < ctx_state_version(base)) {
		ctx_state_release(cur);
		return ctx_fail(CTX_NOT_FOUND, "tracked context '%s' was dropped and created again",
		                t->id);
	}
	*out = cur;
	return CTX_OK;
}

static const hamt_leaf *base_leaf_get(base_leaf *bl, const ctx_state *base, uint64_t hash,
                                      const blob *key)
{
	if (!bl->known)
		*bl = (base_leaf){find_leaf(base, hash, key), true};
	return bl->leaf;
}

/* The leaves of an edited key in the base (into *bl, looked up once: only
 * when the edit has no base of its own) and in cur (*cl). When cur is the
 * base's version, its leaf is the base's. */
static void key_sides(const ctx_state *base, const ctx_state *cur, uint64_t hash, const blob *key,
                      bool own_base, base_leaf *bl, const hamt_leaf **cl)
{
	if (ctx_state_version(cur) == ctx_state_version(base))
		*cl = base_leaf_get(bl, base, hash, key);
	else {
		if (!own_base)
			base_leaf_get(bl, base, hash, key);
		*cl = find_leaf(cur, hash, key);
	}
}

/* ---- sync ------------------------------------------------------------------------ */

/* The snapshot of a sync is the edits it saw when it started, by pointer:
 * an edit is frozen while the sync runs (a new edit of the key replaces it
 * in the table instead of changing it: table_thaw_at), so the sync reads
 * its key and values with no lock and no references taken, and keeps its
 * own per-edit results in the edit's last fields. (A snapshot of copies,
 * 144 bytes an edit, was one calloc above malloc's small sizes, and that
 * made glibc consolidate every small block freed since: 15% of a sync of
 * 100 edits at 1,000 keys.) */
typedef edit snap_edit;

typedef struct sync_job {
	ctx_state *base;         /* the tracker's base at the start          */
	uint64_t seq;            /* edits up to this one are in the snapshot */
	size_t n;                /* edits in the snapshot                    */
	snap_edit **ents;        /* the snapshot                             */
	ctx_state *result;       /* on success: the new base                 */
	bool committed;          /* a version was made                       */
	conflict_set *conflicts; /* manual: what blocked the sync            */
} sync_job;

/* After job_apply or job_fail, with no lock: the edits the table let go of
 * are freed here. */
static void job_free(sync_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		if (j->ents[i]->owned)
			edit_free(j->ents[i]);
	free(j->ents);
	ctx_state_release(j->base);
	ctx_state_release(j->result);
	conflicts_unref(j->conflicts);
}

/* Take the snapshot of the edits (t->lock held). */
static ctx_status job_start(ctx_tracker *t, sync_job *j)
{
	*j = (sync_job){0};
	if (t->edits.count) {
		j->ents = malloc(t->edits.count * sizeof(*j->ents));
		if (!j->ents)
			return ctx_fail(CTX_NOMEM, "no memory to sync %zu edits", t->edits.count);
	}
	for (size_t i = 0; i < t->edits.cap; i++) {
		edit *e = t->edits.slots[i];
		if (!LIVE(e))
			continue;
		j->ents[j->n] = e;
		e->in_base = (base_leaf){0};
		e->took_local = e->owned = false;
		e->frozen = true;
		e->snap = ++j->n;
	}
	j->base = ctx_state_retain(t->base);
	j->seq = t->seq;
	return CTX_OK;
}

/* When the current side set the key: the commit that put its value (its
 * leaf cl there), or, for a key absent there, the newest commit (the latest
 * the delete can be). */
static uint64_t current_time(const ctx_state *cur, const hamt_leaf *cl)
{
	return cl ? cl->time_us : ctx_state_updated_us(cur);
}

/* Decide the conflict on s (b, l, c all different; cl: c's leaf) by the
 * strategy: *r is the result, or, under manual, the conflict is added to
 * j->conflicts. */
static ctx_status decide(ctx_tracker *t, sync_job *j, const snap_edit *s, ctx_state *cur, val b,
                         val l, const hamt_leaf *cl, val *r)
{
	val c = leaf_val(cl);
	uint64_t c_us = current_time(cur, cl);
	switch (t->opts.strategy) {
	case CTX_MERGE_LATEST:
		*r = s->time_us > c_us ? l : c;
		return CTX_OK;
	case CTX_MERGE_OLDEST:
		*r = s->time_us < c_us ? l : c;
		return CTX_OK;
	case CTX_MERGE_FUNCTION: {
		if (!t->opts.merge)
			return ctx_fail(CTX_INVALID,
			                "merge strategy 'function' without a merge function");
		ctx_conflict cf = {s->key->data, s->key->len, merge_value(b, 0),
		                   merge_value(l, s->time_us), merge_value(c, c_us)};
		ctx_merge_value out = cf.current;
		ctx_status st = t->opts.merge(t->opts.merge_arg, &cf, &out);
		if (st != CTX_OK)
			return ctx_fail(st, "the merge function failed on a key of '%s': %s", t->id,
			                ctx_strerror(st));
		if (out.present && !out.value && out.len)
			return ctx_fail(CTX_INVALID,
			                "the merge function gave a NULL value of %zu bytes",
			                out.len);
		*r = out.present ? (val){true, out.value ? out.value : "", out.len} : ABSENT;
		return CTX_OK;
	}
	case CTX_MERGE_MANUAL: {
		conflict_rec rec = {blob_ref(s->key),
		                    s->has_base ? hold_copy(&s->base) : hold_state(j->base, b),
		                    hold_copy(&s->val),
		                    hold_state(cur, c),
		                    s->time_us,
		                    c_us,
		                    false};
		ctx_status st = conflicts_add(&j->conflicts, &rec);
		if (st != CTX_OK) {
			blob_unref(rec.key);
			held_release(&rec.base);
			held_release(&rec.local);
			held_release(&rec.cur);
		}
		*r = c;
		return st;
	}
	}
	return ctx_fail(CTX_INVALID, "unknown merge strategy %d", (int)t->opts.strategy);
}

/* Record key := r in *txn, starting the transaction at the first write.
 * The writes name distinct keys (one per edit, the edit table's keys), and
 * the transaction says so: its commit then counts the keys it changed as it
 * applies them instead of diffing the maps (txn_promise_distinct). */
static ctx_status add_write(ctx_tracker *t, ctx_txn **txn, const blob *key, val r)
{
	ctx_status st;
	if (!*txn) {
		if ((st = ctx_txn_begin(t->store, t->id, txn)) != CTX_OK)
			return st;
		txn_promise_distinct(*txn);
	}
	return r.present ? ctx_txn_put(*txn, key->data, key->len, r.p ? r.p : "", r.len)
	                 : ctx_txn_del(*txn, key->data, key->len);
}

/* Merge the snapshot with cur; the writes go to *txn (NULL if none). Under
 * manual, conflicts fail it with CTX_CONFLICT. */
static ctx_status merge_against(ctx_tracker *t, sync_job *j, ctx_state *cur, ctx_txn **txn)
{
	conflicts_unref(j->conflicts);
	j->conflicts = NULL;
	for (size_t i = 0; i < j->n; i++) {
		snap_edit *s = j->ents[i];
		const hamt_leaf *cl;
		key_sides(j->base, cur, s->hash, s->key, s->has_base, &s->in_base, &cl);
		val b = s->has_base ? s->base.v : leaf_val(s->in_base.leaf);
		val c = leaf_val(cl);
		val l = s->val.v, r = c;
		if (val_eq(l, b) || val_eq(l, c)) {
			r = c;
		} else if (val_eq(c, b)) {
			r = l;
		} else {
			ctx_status st = decide(t, j, s, cur, b, l, cl, &r);
			if (st != CTX_OK)
				return st;
			if (t->opts.strategy == CTX_MERGE_MANUAL)
				continue;
		}
		s->took_local = val_eq(r, l);
		if (!val_eq(r, c)) {
			ctx_status st = add_write(t, txn, s->key, r);
			if (st != CTX_OK)
				return st;
		}
	}
	if (j->conflicts)
		return ctx_fail(CTX_CONFLICT,
		                "%zu keys of '%s' were changed on both sides: see "
		                "ctx_tracker_conflicts",
		                j->conflicts->count, t->id);
	return CTX_OK;
}

/* The state of the version v just committed (or a newer one, if v has left
 * the history already). */
static ctx_status take_version(ctx_tracker *t, uint64_t v, ctx_state **out)
{
	if (ctx_get_at(t->store, t->id, v, out) == CTX_OK)
		return CTX_OK;
	if (ctx_get(t->store, t->id, out) == CTX_OK)
		return CTX_OK;
	return ctx_fail(CTX_NOT_FOUND, "tracked context '%s' was dropped right after the sync",
	                t->id);
}

static void backoff(unsigned attempt)
{
	if (attempt < 4)
		return;
	if (attempt < 16) {
		sched_yield();
		return;
	}
	unsigned shift = attempt - 16 < 10 ? attempt - 16 : 10;
	struct timespec ts = {0, 1000L << shift}; /* 1 µs .. 1 ms */
	nanosleep(&ts, NULL);
}

/* Merge and commit, redoing the merge after losing a commit race. No lock. */
static ctx_status sync_run(ctx_tracker *t, sync_job *j)
{
	for (unsigned attempt = 0;; attempt++) {
		ctx_state *cur;
		ctx_status st = get_current(t, j->base, &cur);
		if (st != CTX_OK)
			return st;
		ctx_txn *txn = NULL;
		if (j->n)
			st = merge_against(t, j, cur, &txn);
		if (st != CTX_OK || !txn) {
			ctx_txn_abort(txn);
			if (st == CTX_OK)
				j->result = cur; /* nothing to write: move the base on */
			else
				ctx_state_release(cur);
			return st;
		}
		uint64_t expected = ctx_state_version(cur), v = 0;
		ctx_state_release(cur);
		st = ctx_txn_commit(txn, expected, &v);
		if (st == CTX_OK) {
			j->committed = true;
			return take_version(t, v, &j->result);
		}
		if (st != CTX_CONFLICT)
			return st;
		if (attempt + 1 >= SYNC_MAX_ATTEMPTS)
			return ctx_fail(CTX_CONFLICT,
			                "sync of '%s' gave up after %d commits lost to "
			                "other writers",
			                t->id, SYNC_MAX_ATTEMPTS);
		backoff(attempt);
	}
}

/* An edit stays pending while the base moves on to nb: v (taken over) is the
 * value it was made on; it becomes the edit's own base if nb differs. */
static void rebase_edit(edit_table *tab, edit *e, ctx_state *nb, held v)
{
	if (val_eq(v.v, leaf_val(find_leaf(nb, e->hash, e->key)))) {
		held_release(&v);
		edit_clear_base(e);
	} else {
		edit_set_base(e, v);
	}
	table_recost(tab, e);
}

/* The sync succeeded: the snapshot's edits are done, later ones stay
 * (t->lock held). */
static void job_apply(ctx_tracker *t, sync_job *j)
{
	ctx_state *old = t->base, *nb = j->result;
	for (size_t i = 0; i < t->edits.cap; i++) {
		edit *e = t->edits.slots[i];
		if (!LIVE(e))
			continue;
		if (e->seq <= j->seq) { /* synced: a frozen one, the job frees it */
			table_unlink_at(&t->edits, i)->detached = true;
			continue;
		}
		/* Made during the sync: on the local value if the sync committed
		 * it, else on what it replaced (its own base or the old base's). */
		const snap_edit *s = e->snap ? j->ents[e->snap - 1] : NULL;
		held v = s && s->took_local ? hold_copy(&s->val)
		         : e->has_base      ? hold_copy(&e->base)
		                       : hold_state(old, leaf_val(find_leaf(old, e->hash, e->key)));
		rebase_edit(&t->edits, e, nb, v);
		e->snap = 0;
	}
	for (size_t k = 0; k < j->n; k++)
		j->ents[k]->owned = true; /* synced, or replaced by a later edit */
	table_settle(&t->edits);
	t->base = nb;
	j->result = NULL;
	ctx_state_release(old); /* not the last reference: j->base holds one */
	clear_conflicts(t);
}

/* The sync failed with st (t->lock held). If manual conflicts failed it,
 * publish them, except for keys edited again meanwhile. */
static void job_fail(ctx_tracker *t, sync_job *j, ctx_status st)
{
	for (size_t i = 0; i < t->edits.cap; i++) {
		edit *e = t->edits.slots[i];
		if (LIVE(e)) {
			e->snap = 0;
			e->frozen = false; /* the table's again */
		}
	}
	for (size_t k = 0; k < j->n; k++)
		j->ents[k]->owned = j->ents[k]->detached; /* replaced meanwhile */
	if (st != CTX_CONFLICT || !j->conflicts)
		return;
	clear_conflicts(t);
	conflict_set *cs = j->conflicts;
	j->conflicts = NULL;
	for (size_t i = 0; i < cs->count; i++) {
		conflict_rec *r = &cs->recs[i];
		edit *e = table_find(&t->edits, hamt_hash(r->key->data, r->key->len), r->key->data,
		                     r->key->len);
		if (!e || e->seq > j->seq)
			r->resolved = true;
		else
			e->conflict = i + 1;
	}
	t->conflicts = cs;
}

/* Wait until no sync runs (t->lock held). A sync or refresh from inside the
 * merge function would wait for itself: CTX_INVALID. */
static ctx_status wait_idle(ctx_tracker *t)
{
	if (t->busy && pthread_equal(t->busy_thread, pthread_self()))
		return ctx_fail(CTX_INVALID, "a tracker cannot sync or refresh from inside its "
		                             "own merge function");
	while (t->busy)
		pthread_cond_wait(&t->idle_cv, &t->lock);
	return CTX_OK;
}

static ctx_status tracker_sync(ctx_tracker *t, bool from_timer, uint64_t *version_out)
{
	sync_job j;
	pthread_mutex_lock(&t->lock);
	if (from_timer && t->busy) {
		pthread_mutex_unlock(&t->lock);
		return CTX_OK;
	}
	ctx_status st = wait_idle(t);
	if (st != CTX_OK) {
		pthread_mutex_unlock(&t->lock);
		return st;
	}
	st = job_start(t, &j);
	if (st != CTX_OK) {
		job_free(&j);
		pthread_mutex_unlock(&t->lock);
		return st;
	}
	t->busy = true;
	t->busy_thread = pthread_self();
	pthread_mutex_unlock(&t->lock);

	st = sync_run(t, &j);

	pthread_mutex_lock(&t->lock);
	if (st == CTX_OK)
		job_apply(t, &j);
	else
		job_fail(t, &j, st);
	uint64_t version = ctx_state_version(t->base);
	t->busy = false;
	pthread_cond_broadcast(&t->idle_cv);
	pthread_mutex_unlock(&t->lock);

	if (st == CTX_OK && j.committed && t->opts.point_on_sync) {
		ctx_status pst = ctx_point_create(t->store, t->id, NULL, NULL);
		if (pst != CTX_OK) {
			char why[200];
			snprintf(why, sizeof(why), "%s", ctx_last_error());
			ctx_fail(pst,
			         "synced '%s' to version %llu, but its recovery point failed: %s",
			         t->id, (unsigned long long)version, why);
		}
	}
	job_free(&j);
	if (st == CTX_OK && version_out)
		*version_out = version;
	return st;
}

/* ---- the timer -------------------------------------------------------------------- */

static void deadline_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ctx_timespec_add_ms(ts, ms);
}

static void *timer_main(void *arg)
{
	ctx_tracker *t = arg;
	struct timespec next;
	deadline_after(&next, t->opts.sync_interval_ms);
	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		if (pthread_cond_timedwait(&t->timer_cv, &t->lock, &next) != ETIMEDOUT)
			continue; /* woken to stop, or spuriously */
		pthread_mutex_unlock(&t->lock);
		(void)tracker_sync(t, true, NULL); /* failures: see DECISIONS */
		deadline_after(&next, t->opts.sync_interval_ms);
		pthread_mutex_lock(&t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* ---- the interface ---------------------------------------------------------------- */

static void tracker_free(ctx_tracker *t)
{
	table_free(&t->edits);
	conflicts_unref(t->conflicts);
	conflicts_unref(t->view_set);
	free(t->view);
	ctx_state_release(t->base);
	pthread_cond_destroy(&t->timer_cv);
	pthread_cond_destroy(&t->idle_cv);
	pthread_mutex_destroy(&t->lock);
	free(t->id);
	free(t);
}

ctx_status ctx_tracker_open(ctx_store *s, const char *id, const ctx_tracker_options *o,
                            ctx_tracker **out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	size_t idlen;
	ctx_status st;
	if (!s || !out)
		return ctx_fail(CTX_INVALID, "NULL store or output pointer");
	if ((st = ctx_check_id(id, &idlen)) != CTX_OK)
		return st;
	ctx_tracker_options opts = {.strategy = CTX_MERGE_LATEST};
	if (o)
		opts = *o;
	if ((unsigned)opts.strategy > CTX_MERGE_MANUAL)
		return ctx_fail(CTX_INVALID, "unknown merge strategy %d", (int)opts.strategy);

	ctx_tracker *t = calloc(1, sizeof(*t));
	if (!t || !(t->id = malloc(idlen + 1))) {
		free(t);
		return ctx_fail(CTX_NOMEM, "no memory for a tracker");
	}
	memcpy(t->id, id, idlen + 1);
	if ((st = ctx_get(s, id, &t->base)) != CTX_OK) {
		free(t->id);
		free(t);
		return st;
	}
	t->store = s;
	t->ctx = t->base->ctx;
	t->opts = opts;
	ctx_mutex_init(&t->lock);
	pthread_cond_init(&t->idle_cv, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->timer_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (opts.sync_interval_ms) {
		int err = pthread_create(&t->timer, NULL, timer_main, t);
		if (err) {
			tracker_free(t);
			return ctx_fail(CTX_NOMEM, "cannot start the tracker's timer: %s",
			                strerror(err));
		}
		t->timer_running = true;
	}
	*out = t;
	return CTX_OK;
}

void ctx_tracker_close(ctx_tracker *t)
{
	if (t && store_inherited(t->store))
		return; /* (fork.c: its timer is the parent's) */
	if (!t)
		return;
	if (t->timer_running) {
		pthread_mutex_lock(&t->lock);
		t->stop = true;
		pthread_cond_signal(&t->timer_cv);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->timer, NULL);
	}
	tracker_free(t);
}

/* Check an edit against the store's limits, as a commit would. */
static ctx_status check_edit(ctx_tracker *t, const void *key, size_t klen, const void *v,
                             size_t vlen, bool put)
{
	ctx_status st = store_check_key(t->store, key, klen);
	if (st == CTX_OK && put)
		st = store_check_value(t->store, v, vlen);
	if (st != CTX_OK)
		return st;
	/* The context object the tracker's versions belong to (they hold a
	 * reference to it, so it cannot be reused for another incarnation). */
	ctx_context *c = store_find_context(t->store, t->id, strlen(t->id));
	bool same = c == t->ctx;
	bool expired = same && context_closed(c); /* past its ttl: gone (expiry.c) */
	if (c)
		context_release(c);
	if (!same)
		return ctx_fail(CTX_NOT_FOUND, "context '%s' was dropped%s", t->id,
		                c ? " and created again" : "");
	if (!expired)
		return CTX_OK;
	reaper_kick(t->store);
	return ctx_fail(CTX_NOT_FOUND, "context '%s' expired", t->id);
}

/* Resolve e's conflict (t->lock held): the caller has seen its current value. */
static void resolve_conflict(ctx_tracker *t, edit *e)
{
	conflict_rec *r = &t->conflicts->recs[e->conflict - 1];
	edit_set_base(e, hold_copy(&r->cur));
	r->resolved = true;
	e->conflict = 0;
}

/* Make v (taken over) the local value of key. */
static ctx_status record_edit(ctx_tracker *t, const void *key, size_t klen, held v)
{
	uint64_t hash = hamt_hash(key, klen);
	uint64_t now = store_now_us(t->store);
	edit *fresh = calloc(1, sizeof(*fresh));
	if (!fresh || !(fresh->key = blob_new(key, klen))) {
		free(fresh);
		held_release(&v);
		return ctx_fail(CTX_NOMEM, "no memory for a tracker edit");
	}
	fresh->hash = hash;
	pthread_mutex_lock(&t->lock);
	size_t at;
	edit *e = table_find_at(&t->edits, hash, key, klen, &at);
	if (e && e->frozen) {
		e = table_thaw_at(&t->edits, at, fresh);
		fresh = NULL;
	} else if (!e) {
		ctx_status st = table_insert(&t->edits, fresh);
		if (st != CTX_OK) {
			pthread_mutex_unlock(&t->lock);
			edit_free(fresh);
			held_release(&v);
			return st;
		}
		e = fresh;
		fresh = NULL;
	}
	held_release(&e->val);
	e->val = v;
	e->time_us = now;
	e->seq = ++t->seq;
	if (e->conflict)
		resolve_conflict(t, e);
	table_recost(&t->edits, e);
	pthread_mutex_unlock(&t->lock);
	if (fresh)
		edit_free(fresh);
	return CTX_OK;
}

ctx_status ctx_tracker_put(ctx_tracker *t, const void *key, size_t klen, const void *v, size_t vlen)
{
	if (t && store_inherited(t->store))
		return fork_refuse();
	if (!t)
		return ctx_fail(CTX_INVALID, "NULL tracker");
	ctx_status st = check_edit(t, key, klen, v, vlen, true);
	if (st != CTX_OK)
		return st;
	blob *b = blob_new(v, vlen);
	if (!b)
		return ctx_fail(CTX_NOMEM, "no memory for a value of %zu bytes", vlen);
	return record_edit(t, key, klen, hold_blob(b));
}

ctx_status ctx_tracker_del(ctx_tracker *t, const void *key, size_t klen)
{
	if (t && store_inherited(t->store))
		return fork_refuse();
	if (!t)
		return ctx_fail(CTX_INVALID, "NULL tracker");
	ctx_status st = check_edit(t, key, klen, NULL, 0, false);
	if (st != CTX_OK)
		return st;
	return record_edit(t, key, klen, (held){ABSENT, NULL, NULL});
}

ctx_status ctx_tracker_get(ctx_tracker *t, const void *key, size_t klen, void **out, size_t *outlen)
{
	if (t && store_inherited(t->store))
		return fork_refuse();
	if (!t || !out || !outlen || (!key && klen))
		return ctx_fail(CTX_INVALID, "NULL tracker, key or output pointer");
	pthread_mutex_lock(&t->lock);
	val v = ABSENT;
	edit *e = table_find(&t->edits, hamt_hash(key, klen), key, klen);
	if (e)
		v = e->val.v;
	else
		v.present = ctx_state_lookup(t->base, key, klen, &v.p, &v.len);
	void *copy = v.present ? malloc(v.len ? v.len : 1) : NULL;
	if (copy && v.len)
		memcpy(copy, v.p, v.len);
	pthread_mutex_unlock(&t->lock);
	if (!v.present)
		return ctx_fail(CTX_NOT_FOUND, "no such key in the tracker of '%s'", t->id);
	if (!copy)
		return ctx_fail(CTX_NOMEM, "no memory for a value of %zu bytes", v.len);
	*out = copy;
	*outlen = v.len;
	return CTX_OK;
}

uint64_t ctx_tracker_base_version(ctx_tracker *t)
{
	if (!t)
		return 0;
	pthread_mutex_lock(&t->lock);
	uint64_t v = ctx_state_version(t->base);
	pthread_mutex_unlock(&t->lock);
	return v;
}

/* (Inherited by a child of fork, ctx_tracker_pending and _bytes answer 0
 * without the lock: a thread of the parent that held it at the fork is not
 * in the child, and the child's copy stays locked forever.) */
size_t ctx_tracker_pending(ctx_tracker *t)
{
	if (!t || store_inherited(t->store))
		return 0;
	pthread_mutex_lock(&t->lock);
	size_t n = t->edits.count;
	pthread_mutex_unlock(&t->lock);
	return n;
}

size_t ctx_tracker_pending_bytes(ctx_tracker *t)
{
	if (!t || store_inherited(t->store))
		return 0;
	pthread_mutex_lock(&t->lock);
	size_t n = t->edits.bytes + t->edits.cap * sizeof(*t->edits.slots);
	pthread_mutex_unlock(&t->lock);
	return n;
}

size_t ctx_tracker_edit_bytes(ctx_tracker *t, const void *key, size_t klen)
{
	if (!t || (!key && klen) || store_inherited(t->store))
		return 0;
	uint64_t hash = hamt_hash(key, klen);
	pthread_mutex_lock(&t->lock);
	edit *e = table_find(&t->edits, hash, key, klen);
	size_t n = e ? e->cost : 0;
	pthread_mutex_unlock(&t->lock);
	return n;
}

bool ctx_tracker_is_stale(ctx_tracker *t)
{
	if (!t)
		return false;
	pthread_mutex_lock(&t->lock);
	ctx_state *base = ctx_state_retain(t->base);
	pthread_mutex_unlock(&t->lock);
	ctx_state *cur;
	bool stale = true; /* dropped counts as moved on */
	if (get_current(t, base, &cur) == CTX_OK) {
		stale = ctx_state_version(cur) != ctx_state_version(base);
		ctx_state_release(cur);
	}
	ctx_state_release(base);
	return stale;
}

/* The base value b of e (its own, or the base state's) and its value c in
 * cur. */
static void edit_sides(const ctx_state *base, const ctx_state *cur, const edit *e, val *b, val *c)
{
	base_leaf bl = {NULL, false};
	const hamt_leaf *cl;
	key_sides(base, cur, e->hash, e->key, e->has_base, &bl, &cl);
	*b = e->has_base ? e->base.v : leaf_val(bl.leaf);
	*c = leaf_val(cl);
}

ctx_status ctx_tracker_refresh(ctx_tracker *t)
{
	if (t && store_inherited(t->store))
		return fork_refuse();
	if (!t)
		return ctx_fail(CTX_INVALID, "NULL tracker");
	pthread_mutex_lock(&t->lock);
	ctx_state *cur;
	ctx_status st = wait_idle(t);
	if (st == CTX_OK)
		st = get_current(t, t->base, &cur);
	if (st != CTX_OK) {
		pthread_mutex_unlock(&t->lock);
		return st;
	}
	size_t conflicts = 0;
	for (size_t i = 0; i < t->edits.cap; i++) {
		edit *e = t->edits.slots[i];
		if (!LIVE(e))
			continue;
		val b, c, l = e->val.v;
		edit_sides(t->base, cur, e, &b, &c);
		if (!val_eq(l, b) && !val_eq(l, c) && !val_eq(c, b))
			conflicts++;
	}
	if (conflicts) {
		uint64_t v = ctx_state_version(cur);
		pthread_mutex_unlock(&t->lock);
		ctx_state_release(cur);
		return ctx_fail(CTX_CONFLICT,
		                "%zu locally edited keys of '%s' were changed "
		                "differently in version %llu: sync to resolve them",
		                conflicts, t->id, (unsigned long long)v);
	}
	for (size_t i = 0; i < t->edits.cap; i++) {
		edit *e = t->edits.slots[i];
		if (!LIVE(e))
			continue;
		val b, c;
		edit_sides(t->base, cur, e, &b, &c);
		if (val_eq(e->val.v, b) || val_eq(e->val.v, c))
			table_remove_at(&t->edits, i); /* the newest version has it */
		else {
			edit_clear_base(e); /* c == b: the new base holds b */
			table_recost(&t->edits, e);
		}
	}
	table_settle(&t->edits);
	clear_conflicts(t);
	ctx_state *old = t->base;
	t->base = cur;
	pthread_mutex_unlock(&t->lock);
	ctx_state_release(old); /* perhaps the last reference: free it unlocked */
	return CTX_OK;
}

ctx_status ctx_tracker_sync(ctx_tracker *t, uint64_t *version_out)
{
	if (t && store_inherited(t->store))
		return fork_refuse();
	if (!t)
		return ctx_fail(CTX_INVALID, "NULL tracker");
	return tracker_sync(t, false, version_out);
}

size_t ctx_tracker_conflicts(ctx_tracker *t, const ctx_conflict **out)
{
	if (!t)
		return 0;
	pthread_mutex_lock(&t->lock);
	conflicts_unref(t->view_set);
	free(t->view);
	t->view_set = NULL;
	t->view = NULL;
	size_t n = 0;
	conflict_set *cs = t->conflicts;
	for (size_t i = 0; cs && i < cs->count; i++)
		n += !cs->recs[i].resolved;
	if (n && (t->view = malloc(n * sizeof(*t->view)))) {
		atomic_fetch_add_explicit(&cs->refs, 1, memory_order_relaxed);
		t->view_set = cs;
		size_t k = 0;
		for (size_t i = 0; i < cs->count; i++) {
			const conflict_rec *r = &cs->recs[i];
			if (r->resolved)
				continue;
			t->view[k++] = (ctx_conflict){
			    r->key->data, r->key->len, merge_value(r->base.v, 0),
			    merge_value(r->local.v, r->local_us), merge_value(r->cur.v, r->cur_us)};
		}
	} else if (n) {
		ctx_fail(CTX_NOMEM, "no memory to list %zu conflicts", n);
		n = 0;
	}
	pthread_mutex_unlock(&t->lock);
	if (out)
		*out = t->view;
	return n;
}

ctx_status ctx_tracker_resolve(ctx_tracker *t, const void *key, size_t klen, bool take_local)
{
	if (t && store_inherited(t->store))
		return fork_refuse();
	if (!t || (!key && klen))
		return ctx_fail(CTX_INVALID, "NULL tracker or key");
	pthread_mutex_lock(&t->lock);
	size_t at;
	edit *e = table_find_at(&t->edits, hamt_hash(key, klen), key, klen, &at);
	if (!e || !e->conflict) {
		pthread_mutex_unlock(&t->lock);
		return ctx_fail(CTX_NOT_FOUND, "no unresolved conflict on that key of '%s'", t->id);
	}
	if (e->frozen) { /* a sync runs and reads it: change a copy */
		edit *fresh = calloc(1, sizeof(*fresh));
		if (!fresh) {
			pthread_mutex_unlock(&t->lock);
			return ctx_fail(CTX_NOMEM, "no memory for a tracker edit");
		}
		fresh->key = blob_ref(e->key);
		e = table_thaw_at(&t->edits, at, fresh);
	}
	if (!take_local) {
		held_release(&e->val);
		e->val = hold_copy(&t->conflicts->recs[e->conflict - 1].cur);
		e->time_us = store_now_us(t->store);
	}
	e->seq = ++t->seq;
	resolve_conflict(t, e);
	table_recost(&t->edits, e);
	pthread_mutex_unlock(&t->lock);
	return CTX_OK;
}
