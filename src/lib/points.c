/*
 * points.c - history, recovery points and restore.
 *
 * History: every version holds a reference to the one before it, so the kept
 * versions of a context form a chain from its head back to `oldest`; a
 * commit that makes the chain longer than history_depth cuts its oldest
 * link (context_push_head). Looking a version up walks the chain from the
 * visible version under RCU, without a lock: a version's struct outlives its
 * last reference by a grace period, and a link cut meanwhile only ends the
 * walk early ("left history").
 *
 * Points: an immutable set per context (at most max_points entries), each
 * holding a reference to the version it pins, so a point costs O(1) whatever
 * the size of the context: the version's trie is shared, not copied. The set
 * is replaced whole under the context's write lock and read under RCU.
 * Under durability always, a point change (create, delete) is shown only
 * once its record is durable, like a commit: the new set is decided under
 * the write lock (c->points_decided, which later point changes and restores
 * build on) and installed for readers by a log completion that the flusher
 * runs after the sync, in revision order (so concurrent changes install in
 * the order they were decided), or thrown away if the log failed first.
 * A checkpoint holds the decided set, as it holds the decided head.
 * Each point records the content checksum of its version (hamt.sum of data
 * and metadata, kept up to date by every change in O(1)); restore compares
 * it again and refuses a point whose content no longer matches.
 *
 * Restore: the target version's tries become the next version's tries (O(1)
 * again), and the log record (RESTORE_REF) names the target by version and
 * content checksum instead of copying its data, so what a restore does under
 * the write lock is O(1) whatever the size of the context or of the change.
 * Replay finds the target where the restore found it: the replayed history
 * and points mirror the live ones (the checkpoint holds every kept version
 * and every point; a restore the checkpoint covers is not replayed at all).
 * Watchers are told the keys the restore changes: that diff of two immutable
 * versions is computed with no lock held, against the head seen under the
 * lock, and again if a commit got in before the lock was taken back (after
 * RESTORE_UNLOCKED_TRIES lost races, under the lock, so a restore always
 * ends).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "format.h"
#include "log.h"
#include "store.h"
#include "util.h"

/* ---- the point set ---------------------------------------------------------- */

static void point_set_free_rcu(struct rcu_head *head)
{
	tsan_after_grace_period();
	free(caa_container_of(head, point_set, rcu));
}

/* Install `next` (NULL: none) as c's points; the references the old set held
 * go (those of states `next` keeps were retained for it). */
static void points_replace(ctx_context *c, point_set *next)
{
	point_set *old = atomic_exchange(&c->points, next);
	if (!old)
		return;
	for (size_t i = 0; i < old->count; i++)
		ctx_state_release(old->e[i].st);
	ctx_call_rcu(&old->rcu, point_set_free_rcu);
}

/* The set a point change or a restore builds on (write lock held, or
 * recovery): the newest decided one. */
const point_set *points_latest(const ctx_context *c)
{
	return c->points_pending ? c->points_decided : atomic_load(&c->points);
}

/* A copy of c's points without the entry of `skip_version` (0: none) and
 * without the first `drop_oldest` entries, with room for one more. */
static point_set *points_copy(const ctx_context *c, uint64_t skip_version, size_t drop_oldest)
{
	const point_set *old = points_latest(c);
	size_t n = old ? old->count : 0;
	point_set *p = malloc(sizeof(*p) + (n + 1) * sizeof(point_entry));
	if (!p)
		return NULL;
	p->count = 0;
	for (size_t i = drop_oldest; i < n; i++) {
		if (old->e[i].st->version == skip_version)
			continue;
		p->e[p->count] = old->e[i];
		ctx_state_retain(p->e[p->count].st);
		p->count++;
	}
	return p;
}

static const point_entry *points_find(const point_set *p, uint64_t version)
{
	for (size_t i = 0; p && i < p->count; i++)
		if (p->e[i].st->version == version)
			return &p->e[i];
	return NULL;
}

/* The set c's points would be with a point on st (replacing one on the same
 * version; the oldest leaves past max_points). NULL when out of memory.
 * Nothing changes until points_install. */
static point_set *points_with(ctx_context *c, ctx_state *st, const char *label, uint64_t time_us,
                              uint64_t checksum)
{
	const point_set *old = points_latest(c);
	size_t n = old ? old->count : 0;
	bool replacing = points_find(old, st->version) != NULL;
	size_t over =
	    !replacing && n >= c->store->opts.max_points ? n + 1 - c->store->opts.max_points : 0;
	point_set *p = points_copy(c, st->version, over);
	if (!p)
		return NULL;
	point_entry *e = &p->e[p->count++];
	e->st = ctx_state_retain(st);
	e->keys = st->data.count;
	e->bytes = st->data.bytes;
	e->time_us = time_us;
	e->checksum = checksum;
	snprintf(e->label, sizeof(e->label), "%s", label ? label : "");
	return p;
}

/* Make p (from points_with or points_copy) c's points. */
static void points_install(ctx_context *c, point_set *p)
{
	points_replace(c, p->count ? p : NULL);
	if (!p->count)
		free(p);
}

/* Throw away a set that was never installed. */
static void points_discard(point_set *p)
{
	for (size_t i = 0; i < p->count; i++)
		ctx_state_release(p->e[i].st);
	free(p);
}

ctx_status points_add(ctx_context *c, ctx_state *st, const char *label, uint64_t time_us,
                      uint64_t checksum)
{
	point_set *p = points_with(c, st, label, time_us, checksum);
	if (!p)
		return ctx_fail(CTX_NOMEM, "no memory for a point");
	points_install(c, p);
	return CTX_OK;
}

ctx_status points_remove(ctx_context *c, uint64_t version)
{
	if (!points_find(points_latest(c), version))
		return CTX_NOT_FOUND;
	point_set *p = points_copy(c, version, 0);
	if (!p)
		return ctx_fail(CTX_NOMEM, "no memory to remove a point");
	points_install(c, p);
	return CTX_OK;
}

void points_clear(ctx_context *c)
{
	points_replace(c, NULL);
}

static uint64_t content_checksum(const ctx_state *st)
{
	return st->data.sum + st->meta.sum;
}

/* ---- lookups ---------------------------------------------------------------- */

/* Version `version` in the chain from `from`, or in the points p; the caller
 * is in an RCU read-side critical section or holds the write lock. */
static ctx_state *find_version(const point_set *p, ctx_state *from, uint64_t version)
{
	ctx_state *st = from;
	while (st && st->version > version)
		st = atomic_load(&st->prev);
	if (st && st->version == version)
		return st;
	const point_entry *e = points_find(p, version);
	return e ? e->st : NULL;
}

ctx_status ctx_get_at(ctx_store *s, const char *id, uint64_t version, ctx_state **out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	ctx_context *c;
	ctx_status st = out ? store_open_context(s, id, &c) : ctx_fail(CTX_INVALID, "NULL output");
	if (st != CTX_OK)
		return st;
	ctx_state *found = NULL;
	ctx_rcu_read_lock();
	ctx_state *v = atomic_load_explicit(&c->visible, memory_order_acquire);
	if (v && version <= v->version) {
		found = find_version(atomic_load(&c->points), v, version);
		if (found && !state_try_retain(found))
			found = NULL;
	}
	ctx_rcu_read_unlock();
	context_release(c);
	if (!found)
		return ctx_fail(CTX_NOT_FOUND, "version %llu of '%s' is not in history",
		                (unsigned long long)version, id);
	*out = found;
	return CTX_OK;
}

static int compare_entries(const void *a, const void *b)
{
	const ctx_history_entry *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

/* Room in *h (n entries used of *cap) for one more, doubling it. */
static bool history_room(ctx_history_entry **h, size_t n, size_t *cap)
{
	if (n < *cap)
		return true;
	ctx_history_entry *g = realloc(*h, *cap * 2 * sizeof(**h));
	if (!g)
		return false;
	*h = g;
	*cap *= 2;
	return true;
}

/* The array grows with the versions found, not sized by the limits: with
 * history_depth 2^32 - 2 (allowed) it was a malloc of 171 GB, CTX_NOMEM
 * for every call, and max_points near SIZE_MAX wrapped its size. */
ctx_status ctx_history(ctx_store *s, const char *id, ctx_history_entry **out, size_t *count)
{
	if (s && store_inherited(s))
		return fork_refuse();
	ctx_context *c;
	ctx_status st =
	    out && count ? store_open_context(s, id, &c) : ctx_fail(CTX_INVALID, "NULL output");
	if (st != CTX_OK)
		return st;
	size_t most = s->opts.history_depth + 1, n = 0, cap = 16;
	most = s->opts.max_points > SIZE_MAX - most ? SIZE_MAX : most + s->opts.max_points;
	ctx_history_entry *h = malloc(cap * sizeof(*h));
	bool room = h != NULL;
	ctx_rcu_read_lock();
	const point_set *p = atomic_load(&c->points);
	for (ctx_state *v = atomic_load(&c->visible);
	     room && v && n < most && (room = history_room(&h, n, &cap)); v = atomic_load(&v->prev))
		h[n++] = (ctx_history_entry){v->version, v->revision, v->updated_us, v->changed,
		                             points_find(p, v->version) != NULL};
	size_t chained = n;
	uint64_t newest = n ? h[0].version : 0;
	for (size_t i = 0; room && p && i < p->count && n < most; i++) {
		const ctx_state *v = p->e[i].st;
		bool listed = v->version > newest;
		for (size_t j = 0; j < chained && !listed; j++)
			listed = h[j].version == v->version;
		if (!listed && (room = history_room(&h, n, &cap)))
			h[n++] = (ctx_history_entry){v->version, v->revision, v->updated_us,
			                             v->changed, true};
	}
	ctx_rcu_read_unlock();
	context_release(c);
	if (!room) {
		free(h);
		return ctx_fail(CTX_NOMEM, "no memory for the history");
	}
	qsort(h, n, sizeof(*h), compare_entries);
	*out = h;
	*count = n;
	return CTX_OK;
}

/* ---- points ----------------------------------------------------------------- */

static ctx_status check_label(const char *label)
{
	if (!label)
		return CTX_OK;
	size_t n = strnlen(label, CTX_LABEL_MAX + 1);
	if (n > CTX_LABEL_MAX)
		return ctx_fail(CTX_INVALID, "label longer than %d bytes", CTX_LABEL_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)label[i] < 0x20 || label[i] == 0x7f)
			return ctx_fail(CTX_INVALID, "label has a control byte at %zu", i);
	return CTX_OK;
}

/* Log a point record (or a point removal) of c; write lock held. done (may
 * be NULL) is queued with it (log_append_done). */
static ctx_status log_point(ctx_context *c, uint8_t type, const point_entry *e, uint64_t version,
                            uint64_t *rev, log_done *done)
{
	size_t llen = e ? strlen(e->label) : 0;
	unsigned char buf[2 + CTX_ID_MAX + 17 + CTX_LABEL_MAX];
	put_u16(buf, (uint16_t)c->idlen);
	memcpy(buf + 2, c->id, c->idlen);
	size_t len = 2 + c->idlen;
	if (e) {
		put_u64(buf + len, e->time_us);
		put_u64(buf + len + 8, e->checksum);
		buf[len + 16] = (unsigned char)llen;
		memcpy(buf + len + 17, e->label, llen);
		len += 17 + llen;
	}
	log_record rec = {type, version, c->incarnation, buf, (uint32_t)len, crc32c(0, buf, len),
	                  0};
	return log_append_done(c->store->log, &rec, rev, done);
}

/* A point change waiting for its record to be durable (durability always). */
typedef struct point_change {
	log_done done;
	ctx_context *c; /* a reference */
	point_set *set; /* c's points once the record is durable */
} point_change;

/* The flusher: the record is durable (show the set) or never will be. */
static void point_change_done(log_done *d, bool durable)
{
	point_change *pc = caa_container_of(d, point_change, done);
	ctx_context *c = pc->c;
	context_lock(c);
	if (durable && !atomic_load(&c->gone))
		points_install(c, pc->set);
	else
		points_discard(pc->set);
	if (--c->points_pending == 0)
		c->points_decided = NULL;
	context_unlock(c);
	context_release(c);
	free(pc);
}

/* Log the change of c's points to p (e: the new entry, or NULL for the
 * removal of `version`) and make p c's points: at once, or under durability
 * always once the record is durable. Takes p, whatever the result. Write
 * lock held. */
static ctx_status points_change(ctx_context *c, uint8_t type, const point_entry *e,
                                uint64_t version, point_set *p, uint64_t *rev)
{
	ctx_store *s = c->store;
	point_change *pc = NULL;
	ctx_status st = CTX_OK;
	if (s->log && s->wait_durable) {
		if (!(pc = malloc(sizeof(*pc)))) {
			points_discard(p);
			return ctx_fail(CTX_NOMEM, "no memory for a point change");
		}
		*pc = (point_change){.done = {.fn = point_change_done}, .c = c, .set = p};
		context_retain(c);
	}
	if (s->log)
		st = log_point(c, type, e, version, rev, pc ? &pc->done : NULL);
	if (st != CTX_OK) {
		if (pc) {
			context_release(c);
			free(pc);
		}
		points_discard(p);
		return st;
	}
	if (!pc) {
		points_install(c, p);
		return CTX_OK;
	}
	/* Queued: its completion waits for the write lock we hold. */
	c->points_pending++;
	c->points_decided = p;
	return CTX_OK;
}

/* Wait for a point record to be durable and report its revision. */
static ctx_status finish_point_record(ctx_store *s, uint64_t rev)
{
	ctx_status st = s->wait_durable ? log_wait(s->log, rev) : CTX_OK;
	store_report_skip(s, rev);
	return st;
}

/* Pin version `version` (the head when 0) of c. */
static ctx_status point_create(ctx_context *c, uint64_t version, const char *label,
                               uint64_t *version_out)
{
	ctx_store *s = c->store;
	uint64_t rev = 0;
	ctx_status st = CTX_OK;
	context_lock(c);
	ctx_state *v = context_closed(c) ? NULL
	               : version         ? find_version(points_latest(c), c->head, version)
	                                 : c->head;
	if (!v) {
		context_unlock(c);
		return ctx_fail(CTX_NOT_FOUND, "context '%s' was dropped", c->id);
	}
	uint64_t pinned = v->version;
	/* Everything that can fail comes before the log record. */
	point_set *p = points_with(c, v, label, store_now_us(s), content_checksum(v));
	if (!p)
		st = ctx_fail(CTX_NOMEM, "no memory for a point");
	else
		st = points_change(c, REC_POINT, &p->e[p->count - 1], pinned, p, &rev);
	context_unlock(c);
	if (st == CTX_OK && s->log)
		st = finish_point_record(s, rev);
	if (st == CTX_OK && version_out)
		*version_out = pinned;
	return st;
}

ctx_status ctx_point_create(ctx_store *s, const char *id, const char *label, uint64_t *version_out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	ctx_context *c;
	if (s)
		store_throttle(s, false);
	ctx_status st = check_label(label);
	if (st == CTX_OK)
		st = store_open_context(s, id, &c);
	if (st != CTX_OK)
		return st;
	st = point_create(c, 0, label, version_out);
	context_release(c);
	return st;
}

void auto_point(ctx_context *c, uint64_t version)
{
	unsigned k = c->store->opts.auto_point_every;
	if (k && version % k == 0)
		(void)point_create(c, version, "auto", NULL);
}

ctx_status ctx_point_list(ctx_store *s, const char *id, ctx_point **out, size_t *count)
{
	if (s && store_inherited(s))
		return fork_refuse();
	ctx_context *c;
	ctx_status st =
	    out && count ? store_open_context(s, id, &c) : ctx_fail(CTX_INVALID, "NULL output");
	if (st != CTX_OK)
		return st;
	/* Sized by the points there are, not by max_points (whose + 1 wrapped
	 * to a malloc(0) written past at SIZE_MAX). */
	ctx_rcu_read_lock();
	const point_set *p = atomic_load(&c->points);
	size_t cap = p ? p->count : 0, n = 0;
	ctx_point *list = malloc((cap ? cap : 1) * sizeof(*list));
	if (list) {
		for (size_t i = 0; i < cap; i++) {
			const point_entry *e = &p->e[i];
			ctx_point *o = &list[n++];
			o->version = e->st->version;
			o->time_us = e->time_us;
			o->keys = e->keys;
			o->bytes = e->bytes;
			o->checksum = e->checksum;
			memcpy(o->label, e->label, sizeof(o->label));
		}
	}
	ctx_rcu_read_unlock();
	context_release(c);
	if (!list)
		return ctx_fail(CTX_NOMEM, "no memory for the list of points");
	*out = list;
	*count = n;
	return CTX_OK;
}

ctx_status ctx_point_delete(ctx_store *s, const char *id, uint64_t version)
{
	if (s && store_inherited(s))
		return fork_refuse();
	ctx_context *c;
	if (s)
		store_throttle(s, false);
	ctx_status st = store_open_context(s, id, &c);
	if (st != CTX_OK)
		return st;
	uint64_t rev = 0;
	context_lock(c);
	point_set *p = NULL;
	if (context_closed(c) || !points_find(points_latest(c), version))
		st = ctx_fail(CTX_NOT_FOUND, "no point on version %llu of '%s'",
		              (unsigned long long)version, id);
	else if (!(p = points_copy(c, version, 0)))
		st = ctx_fail(CTX_NOMEM, "no memory to remove a point");
	else
		st = points_change(c, REC_POINT_DEL, NULL, version, p, &rev);
	context_unlock(c);
	if (st == CTX_OK && s->log)
		st = finish_point_record(s, rev);
	context_release(c);
	return st;
}

/* ---- restore ---------------------------------------------------------------- */

/* The keys a restore changes, for watchers, and how many data keys: computed
 * from two immutable versions (references held), so without the write lock. */
typedef struct restore_diff {
	ctx_state *from, *to; /* the head and the target it was computed for */
	size_t count, cap;
	txn_op *ops;
	bool meta;
	size_t data_changes;
	const void **keys;
	size_t *klens;
} restore_diff;

static ctx_status collect_op(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	restore_diff *r = arg;
	if (r->count == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 16;
		txn_op *g = realloc(r->ops, cap * sizeof(*g));
		if (!g)
			return CTX_NOMEM;
		r->ops = g;
		r->cap = cap;
	}
	bool put = new_ != NULL;
	r->ops[r->count++] =
	    (txn_op){put ? (r->meta ? OP_META_PUT : OP_PUT) : (r->meta ? OP_META_DEL : OP_DEL),
	             (hamt_leaf *)(put ? new_ : old)};
	return CTX_OK;
}

static void diff_free(restore_diff *d)
{
	if (d->from)
		ctx_state_release(d->from);
	if (d->to)
		ctx_state_release(d->to);
	free(d->ops);
	free(d->keys);
	free(d->klens);
	*d = (restore_diff){0};
}

/* Compute the diff from head to target, taking references to both. O(diff):
 * the caller holds no lock, except in the fallback of restore(). */
static ctx_status diff_compute(restore_diff *d, ctx_state *head, const ctx_state *target)
{
	diff_free(d);
	d->from = ctx_state_retain(head);
	d->to = ctx_state_retain((ctx_state *)target);
	if (hamt_diff(&head->data, &target->data, collect_op, d) != CTX_OK)
		return CTX_NOMEM;
	d->data_changes = d->count;
	d->meta = true;
	if (hamt_diff(&head->meta, &target->meta, collect_op, d) != CTX_OK ||
	    !(d->keys = malloc((d->count + 1) * sizeof(*d->keys))) ||
	    !(d->klens = malloc((d->count + 1) * sizeof(*d->klens))))
		return CTX_NOMEM;
	for (size_t i = 0; i < d->count; i++) {
		d->keys[i] = hamt_leaf_key(d->ops[i].leaf);
		d->klens[i] = hamt_leaf_klen(d->ops[i].leaf);
	}
	return CTX_OK;
}

/* A new version of c sharing target's tries (NULL when out of memory). */
static ctx_state *new_version_of(ctx_context *c, uint64_t version, const ctx_state *target)
{
	hamt data = hamt_retain(&target->data), meta = hamt_retain(&target->meta);
	ctx_state *next = state_new(c, version, data, meta);
	if (!next) {
		hamt_release(&data);
		hamt_release(&meta);
	}
	return next;
}

/* The body of a RESTORE_REF record (format.h): id, commit time, the target's
 * version and content checksum. Its size does not depend on the diff. */
static size_t encode_restore_ref(const ctx_context *c, uint64_t now, const ctx_state *target,
                                 unsigned char *buf)
{
	put_u16(buf, (uint16_t)c->idlen);
	memcpy(buf + 2, c->id, c->idlen);
	unsigned char *p = buf + 2 + c->idlen;
	put_u64(p, now);
	put_u64(p + 8, target->version);
	put_u64(p + 16, content_checksum(target));
	return 2 + c->idlen + 24;
}

/* Restore the version chosen by pick(c, arg) (write lock held). */
typedef const ctx_state *(*pick_fn)(ctx_context *c, const void *arg, bool *is_point,
                                    uint64_t *checksum);

/* Under c's write lock: the target of a restore, or a failure (the lock is
 * then released). */
static ctx_status pick_target(ctx_context *c, pick_fn pick, const void *arg, const ctx_state **out)
{
	bool is_point = false;
	uint64_t checksum = 0;
	const ctx_state *target = context_closed(c) ? NULL : pick(c, arg, &is_point, &checksum);
	ctx_status st = CTX_OK;
	if (!target)
		st = ctx_fail(CTX_NOT_FOUND, "no such version or point of '%s'", c->id);
	else if (is_point && checksum != content_checksum(target))
		st = ctx_fail(CTX_CORRUPT, "point on version %llu of '%s' is damaged (checksum)",
		              (unsigned long long)target->version, c->id);
	if (st != CTX_OK)
		context_unlock(c);
	*out = target;
	return st;
}

/* The keys a restore changes are computed without the write lock, against
 * the head seen under it; if a commit got in meanwhile, again. After this
 * many tries the diff is computed under the lock, so a restore always ends. */
#define RESTORE_UNLOCKED_TRIES 3

static ctx_status restore(ctx_store *s, const char *id, pick_fn pick, const void *arg,
                          uint64_t *new_version_out)
{
	if (s)
		store_throttle(s, false); /* (durability batch and none) */
	ctx_context *c;
	ctx_status st = store_open_context(s, id, &c);
	if (st != CTX_OK)
		return st;
	restore_diff d = {0};
	const ctx_state *target = NULL;
	for (int attempt = 0;; attempt++) {
		context_lock(c);
		if ((st = pick_target(c, pick, arg, &target)) != CTX_OK)
			goto out; /* unlocked */
		if (d.from == c->head && d.to == target)
			break; /* the diff computed unlocked still holds */
		if (attempt >= RESTORE_UNLOCKED_TRIES) {
			st = diff_compute(&d, c->head, target);
			break;
		}
		/* Both referenced before the unlock: once it is let go, a
		 * commit may cut target from history, or a point change
		 * unpin it, and its last reference go (round 20: a
		 * reference taken after the unlock could come too late). */
		ctx_state *head = ctx_state_retain(c->head);
		ctx_state *to = ctx_state_retain((ctx_state *)target);
		context_unlock(c);
		st = diff_compute(&d, head, to); /* takes its own references */
		ctx_state_release(head);
		ctx_state_release(to);
		if (st != CTX_OK) {
			st = ctx_fail(CTX_NOMEM, "no memory to restore '%s'", id);
			goto out;
		}
	}
	/* Write lock held: O(1) from here to the unlock. */
	uint64_t now = store_now_us(s);
	ctx_state *next = st == CTX_OK ? new_version_of(c, c->head->version + 1, target) : NULL;
	if (!next) {
		context_unlock(c);
		st = ctx_fail(CTX_NOMEM, "no memory to restore '%s'", id);
		goto out;
	}
	next->updated_us = now;
	next->changed = d.data_changes;
	unsigned char body[2 + CTX_ID_MAX + 24];
	size_t blen = s->log ? encode_restore_ref(c, now, target, body) : 0;
	log_record rec = {
	    REC_RESTORE_REF, 0, 0, body, (uint32_t)blen, blen ? crc32c(0, body, blen) : 0, 0};
	commit_event ev = {CTX_EVENT_RESTORED, d.count, d.keys, d.klens, NULL, NULL};
	st = commit_finish(c, next, &rec, &ev, new_version_out);
out:
	diff_free(&d);
	context_release(c);
	return st;
}

static const ctx_state *pick_version(ctx_context *c, const void *arg, bool *is_point,
                                     uint64_t *checksum)
{
	uint64_t version = *(const uint64_t *)arg;
	const point_entry *e = points_find(points_latest(c), version);
	if (e) {
		*is_point = true;
		*checksum = e->checksum;
		return e->st;
	}
	return find_version(NULL, c->head, version);
}

/* The newest point satisfying `match`. */
static const ctx_state *pick_point(ctx_context *c, bool (*match)(const point_entry *, const void *),
                                   const void *arg, bool *is_point, uint64_t *checksum)
{
	const point_set *p = points_latest(c);
	const point_entry *best = NULL;
	for (size_t i = 0; p && i < p->count; i++)
		if (match(&p->e[i], arg) && (!best || p->e[i].time_us >= best->time_us))
			best = &p->e[i];
	if (!best)
		return NULL;
	*is_point = true;
	*checksum = best->checksum;
	return best->st;
}

static bool match_any(const point_entry *e, const void *arg)
{
	return true;
}

static bool match_label(const point_entry *e, const void *arg)
{
	return strcmp(e->label, arg) == 0;
}

static bool match_before(const point_entry *e, const void *arg)
{
	return e->time_us <= *(const uint64_t *)arg;
}

static const ctx_state *pick_latest(ctx_context *c, const void *arg, bool *p, uint64_t *sum)
{
	return pick_point(c, match_any, arg, p, sum);
}

static const ctx_state *pick_label(ctx_context *c, const void *arg, bool *p, uint64_t *sum)
{
	return pick_point(c, match_label, arg, p, sum);
}

static const ctx_state *pick_before(ctx_context *c, const void *arg, bool *p, uint64_t *sum)
{
	return pick_point(c, match_before, arg, p, sum);
}

ctx_status ctx_restore(ctx_store *s, const char *id, uint64_t version, uint64_t *new_version_out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	return restore(s, id, pick_version, &version, new_version_out);
}

ctx_status ctx_restore_latest(ctx_store *s, const char *id, uint64_t *new_version_out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	return restore(s, id, pick_latest, NULL, new_version_out);
}

ctx_status ctx_restore_label(ctx_store *s, const char *id, const char *label,
                             uint64_t *new_version_out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!label)
		return ctx_fail(CTX_INVALID, "NULL label");
	/* A label no point can have is a bad argument, as ctx_point_create
	 * says of it, not a point that was not found. */
	ctx_status st = check_label(label);
	if (st != CTX_OK)
		return st;
	return restore(s, id, pick_label, label, new_version_out);
}

ctx_status ctx_restore_before(ctx_store *s, const char *id, uint64_t time_us,
                              uint64_t *new_version_out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	return restore(s, id, pick_before, &time_us, new_version_out);
}
