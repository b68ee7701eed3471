/*
 * txn.c - transactions: changes to one context, committed as one version.
 *
 * A transaction records its operations without touching the context: each put
 * becomes a ready-made trie leaf (key, value and hash computed up front), so
 * the commit itself does no copying of user data. Committing:
 *
 *   1. lock the context's write lock;
 *   2. check it is not dropped and, if guarded, that its newest version is the
 *      expected one (else CTX_CONFLICT, nothing changed);
 *   3. build the next version from the newest one: O(k log n) trie nodes for k
 *      operations, every other node shared;
 *   4. stamp it with version + 1 and the next store revision, make it the
 *      newest version and the visible one;
 *   5. unlock.
 *
 * Step 3 allocates, and allocation can fail: the half-built maps are then
 * dropped and the context is left as it was (CTX_NOMEM).
 */
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "log.h"
#include "reclaim.h"
#include "store.h"
#include "util.h"

/* ---- the contexts' write lock: its slow paths (store.h) ------------------- */

/* Spins of the slow path before it sleeps. A commit holds the lock for a few
 * hundred nanoseconds; a holder that is not running (preempted: 64 writers
 * on 2 CPUs) will not let go soon, and sleeping is then better than
 * burning the CPU it needs. */
#ifndef WLOCK_SPINS
#define WLOCK_SPINS 100
#endif

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

void wlock_lock_slow(ctx_wlock *l)
{
	for (int i = 0; i < WLOCK_SPINS; i++) {
		cpu_relax();
		unsigned w = atomic_load_explicit(&l->word, memory_order_relaxed);
		if (w == 0 && atomic_compare_exchange_weak_explicit(
		                  &l->word, &w, 1, memory_order_acquire, memory_order_relaxed))
			return;
		if (w == 2)
			break; /* others sleep already: join them */
	}
	/* Held with sleepers from now on (2), until we take it; the unlock
	 * that sees 2 wakes one sleeper, who takes it as 2 again (it cannot
	 * know whether others still sleep). */
	while (atomic_exchange_explicit(&l->word, 2, memory_order_acquire) != 0)
		syscall(SYS_futex, &l->word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

void wlock_wake(ctx_wlock *l)
{
	syscall(SYS_futex, &l->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Operations a transaction holds inside its own allocation before it needs
 * an array of its own: a small transaction (a create of a few keys, a
 * ctxd write batch of one command) makes one allocation, where it made
 * three (the struct, a copy of a create's id, the array). */
#define TXN_INLINE_OPS 8

struct ctx_txn {
	ctx_store *store;
	ctx_context *ctx; /* NULL for a create transaction */
	char *create_id;  /* the id a create transaction makes (in id_buf) */
	bool clear;       /* ctx_txn_clear: the commit starts from empty maps */
	bool distinct;    /* txn_promise_distinct: no two data ops name one key */
	size_t count;
	size_t cap;
	txn_op *ops; /* inline_ops, or malloc'd once past TXN_INLINE_OPS */
	txn_op inline_ops[TXN_INLINE_OPS];
	char id_buf[]; /* a create's id and its NUL */
};

/* A transaction of s on ctx (NULL for a create of id, idlen bytes). */
static ctx_txn *txn_new(ctx_store *s, ctx_context *ctx, const char *id, size_t idlen)
{
	ctx_txn *t = malloc(sizeof(*t) + (id ? idlen + 1 : 0));
	if (!t)
		return NULL;
	t->store = s;
	t->ctx = ctx;
	t->create_id = NULL;
	t->clear = false;
	t->distinct = false;
	t->count = 0;
	t->cap = TXN_INLINE_OPS;
	t->ops = t->inline_ops;
	if (id) {
		memcpy(t->id_buf, id, idlen);
		t->id_buf[idlen] = 0;
		t->create_id = t->id_buf;
	}
	return t;
}

static const uint8_t op_codes[] = {
    [OP_PUT] = OP_PUT_CODE,
    [OP_DEL] = OP_DEL_CODE,
    [OP_META_PUT] = OP_META_PUT_CODE,
    [OP_META_DEL] = OP_META_DEL_CODE,
};

/* Encode the body of the commit record for ops (log format version 2, see
 * format.h): the id, a varint op count, and per op its kind, varint key and
 * value lengths, key and value (with_times: then the zigzag varint of
 * updated_us - the time the value was set). The record's time is its
 * header's (log_record.time_us). Done before any lock is taken: the
 * record's version and revision live in its header. */
static bool op_has_value(enum op_kind k)
{
	return k == OP_PUT || k == OP_META_PUT;
}

ctx_status encode_commit(const ctx_context *c, const txn_op *ops, size_t n, uint64_t updated_us,
                         bool with_times, body_buf *b)
{
	size_t size = 2 + c->idlen + uv_size(n);
	for (size_t i = 0; i < n; i++) {
		const hamt_leaf *l = ops[i].leaf;
		size_t klen = hamt_leaf_klen(l), vlen = op_has_value(ops[i].kind) ? l->vlen : 0;
		size += 1 + uv_size(klen) + uv_size(vlen) + klen + vlen +
		        (with_times ? uv_size(zigzag((int64_t)(updated_us - l->time_us))) : 0);
	}
	if (size > REC_MAX_BODY)
		return ctx_fail(CTX_INVALID, "transaction of %zu bytes exceeds the record limit",
		                size);
	if (!body_reserve(b, size))
		return ctx_fail(CTX_NOMEM, "no memory for a log record");
	unsigned char *p = b->data;
	put_u16(p, (uint16_t)c->idlen);
	memcpy(p + 2, c->id, c->idlen);
	p += 2 + c->idlen;
	p += put_uv(p, n);
	for (size_t i = 0; i < n; i++) {
		const hamt_leaf *l = ops[i].leaf;
		uint32_t vlen = op_has_value(ops[i].kind) ? l->vlen : 0;
		size_t klen = hamt_leaf_klen(l);
		*p++ = op_codes[ops[i].kind];
		p += put_uv(p, klen);
		p += put_uv(p, vlen);
		memcpy(p, hamt_leaf_key(l), klen + vlen);
		p += klen + vlen;
		if (with_times)
			p += put_uv(p, zigzag((int64_t)(updated_us - l->time_us)));
	}
	b->len = size;
	return CTX_OK;
}

/* Apply ops; *changed (if not NULL) gets the number of data keys whose
 * content each op changed (a put of the value a key already had changes
 * nothing). Summed per op, that is the number of keys changed from the base
 * only if no two data ops name one key: the caller checks (ops_distinct).
 * given not NULL (a commit of one op, commit_one): a put's map takes over
 * the caller's reference to the op's leaf instead of one of its own, and
 * *given says whether it did (else the reference is still the caller's). */
static ctx_status apply_ops(hamt *data, hamt *meta, const txn_op *ops, size_t n, uint64_t now,
                            bool strict_del, size_t *changed, bool *given)
{
	uint64_t edit = hamt_edit_token();
	ctx_status st = CTX_OK;
	size_t count = 0;
	for (size_t i = 0; i < n && st == CTX_OK; i++) {
		hamt_leaf *l = ops[i].leaf;
		bool is_data = ops[i].kind == OP_PUT || ops[i].kind == OP_DEL;
		hamt *m = is_data ? data : meta;
		if (ops[i].kind == OP_PUT || ops[i].kind == OP_META_PUT) {
			bool diff = false;
			l->time_us = now; /* not shared yet: only this commit holds it */
			/* Nor its count: a plain increment, no locked operation. */
			if (!given)
				atomic_store_explicit(
				    &l->refs,
				    atomic_load_explicit(&l->refs, memory_order_relaxed) + 1,
				    memory_order_relaxed);
			st = hamt_put(m, l, edit, &diff);
			if (st != CTX_OK && !given)
				hamt_leaf_release(l);
			if (given)
				*given = st == CTX_OK;
			count += is_data && diff;
		} else {
			st = hamt_del(m, hamt_leaf_hash(l), hamt_leaf_key(l), hamt_leaf_klen(l),
			              edit);
			count += is_data && st == CTX_OK;
			if (st == CTX_NOT_FOUND && !strict_del)
				st = CTX_OK;
		}
	}
	if (changed)
		*changed = count;
	return st;
}

ctx_status apply_txn_ops(hamt *data, hamt *meta, const txn_op *ops, size_t n, uint64_t now,
                         bool strict_del)
{
	return apply_ops(data, meta, ops, n, now, strict_del, NULL, NULL);
}

/* Past this many ops, commit_ops counts changed keys with a diff instead of
 * checking the ops pairwise (the diff costs O(changes), like the commit). */
#define DISTINCT_MAX 16

atomic_size_t txn_test_commit_diffs;

/* True if no two data ops of ops name the same key (then the per-op counts
 * of apply_ops add up to the number of keys changed). */
static bool ops_distinct(const txn_op *ops, size_t n)
{
	if (n > DISTINCT_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		const hamt_leaf *a = ops[i].leaf;
		if (ops[i].kind != OP_PUT && ops[i].kind != OP_DEL)
			continue;
		for (size_t j = i + 1; j < n; j++) {
			const hamt_leaf *b = ops[j].leaf;
			if ((ops[j].kind == OP_PUT || ops[j].kind == OP_DEL) &&
			    hamt_leaf_klen(a) == hamt_leaf_klen(b) &&
			    memcmp(hamt_leaf_key(a), hamt_leaf_key(b), hamt_leaf_klen(a)) == 0)
				return false;
		}
	}
	return true;
}

/* A commit by a caller that holds no reference to its context (put_or_del):
 * it is inside an RCU read-side critical section, which keeps c's memory. */
typedef struct noref {
	const char *id; /* the caller's: the feed's report names it */
	size_t idlen;
	bool busy; /* out: the write lock was held, nothing done */
	bool left; /* out: commit_lock ended the critical section */
} noref;

/* A commit of one op by ctx_put or ctx_del (commit_one): the caller's
 * key, which the feed's report names (it outlives the call), and the
 * caller's reference to the op's leaf, which a put hands to the new
 * version's map. That saves the leaf's locked decrement after every
 * ctx_put (the map used to take a reference of its own and the caller
 * dropped its one): the leaf is the map's from then on, and may go with
 * the version while the report runs, so the report reads the caller's
 * key, not the leaf's. */
typedef struct single_op {
	const void *key;
	size_t klen;
	bool given; /* out: the new version's map took the leaf's reference */
} single_op;

/* The second half of every commit (transactions and restores): c's write
 * lock is held and next was built on c->head. Log it (rec: its body is
 * ready, the header is filled here), make it the head, publish it, report it
 * to the feed. Unlocks the write lock. */
static ctx_status commit_finish_rev(ctx_context *c, ctx_state *next, log_record *rec,
                                    const commit_event *ev, uint64_t *version_out,
                                    uint64_t *rev_out, bool owns, const noref *nr);

ctx_status commit_finish(ctx_context *c, ctx_state *next, log_record *rec, const commit_event *ev,
                         uint64_t *version_out)
{
	return commit_finish_rev(c, next, rec, ev, version_out, NULL, true, NULL);
}

/* owns false: next came from state_new_adopting and holds no reference to c
 * yet. It gets the one of the version this commit cuts from history when
 * this commit took that version's last reference (state_take_cut), else a
 * new one; either way before the write lock is released, so before anyone
 * else could release next (it stays in the history chain until a later
 * commit, under the lock, cuts it). That saves a locked increment and a
 * locked decrement of c's count, the line every commit to c writes. */
static ctx_status commit_finish_rev(ctx_context *c, ctx_state *next, log_record *rec,
                                    const commit_event *ev, uint64_t *version_out,
                                    uint64_t *rev_out, bool owns, const noref *nr)
{
	ctx_store *s = c->store;
	ctx_status st = CTX_OK;
	uint64_t rev;
	if (s->log) {
		rec->version = next->version;
		rec->incarnation = c->incarnation;
		if ((st = log_append(s->log, rec, &rev)) != CTX_OK) {
			if (!owns)
				context_retain(c);
			ctx_state_release(next);
			context_unlock(c);
			return st;
		}
	} else {
		rev = atomic_fetch_add(&s->revision, 1) + 1;
	}
	next->revision = rev;
	/* The reference of `visible` (context_publish_ref below), taken while
	 * only this commit can reach next: a plain increment. */
	if (!s->wait_durable)
		atomic_store_explicit(&next->refs,
		                      atomic_load_explicit(&next->refs, memory_order_relaxed) + 1,
		                      memory_order_relaxed);
	ctx_state *cut = context_push_head(c, next), *dead = NULL, *hidden = NULL;
	bool reported = false;
	if (!owns) {
		/* Our reference to cut goes here, whether it was the last or not. */
		if (cut && state_take_cut(cut))
			dead = cut; /* its reference to c is next's now */
		else
			context_retain(c);
		cut = NULL;
	}
	context_note_commit(c, next->updated_us);
	uint64_t version = next->version;
	if (s->wait_durable) {
		/* Flush pipelining: the next writer builds on this version while
		 * this one waits for its sync, holding no lock. */
		ctx_state_retain(next);
		context_unlock(c);
		st = context_publish_durable(c, next, rev);
	} else {
		/* The history chain holds next until a later commit cuts it,
		 * under the lock: no reference of our own is needed. */
		hidden = context_publish_locked(c, next);
		/* Reported before the unlock while nobody records (one
		 * compare-and-swap on the feed's quiet word, no lock): taken
		 * under the lock, rev is reported before this thread can be
		 * preempted or wait for the write lock's sleepers to wake, so
		 * the revisions of the commits around it stay within the
		 * quiet window. Reported after the unlock, a revision whose
		 * thread lost its CPU there held the frontier back, and every
		 * later report took the feed's mutex (64 writers on 2 CPUs:
		 * nearly all of them). */
		reported = store_report_bare(s, rev);
		context_unlock(c);
	}
	/* The versions this commit hid and cut are released after the unlock
	 * and the report below, not before: releasing one may free a batch of
	 * versions or wait for a grace period (state_free_deferred), and until
	 * rev is reported the feed's frontier cannot pass it - every later
	 * revision took the feed's locked path (its quiet path only takes a
	 * revision at most 23 past the frontier's successor) while this
	 * thread waited or was preempted there (64 writers on 2 CPUs). */
	if (st == CTX_OK) {
		/* With nr, c may be gone already (put_or_del): its id is the
		 * caller's, and such stores make no automatic points. */
		if (reported) {
			/* reported bare under the lock (nobody records) */
		} else if (nr)
			store_report_id(s, rev, ev->kind, nr->id, nr->idlen, version, ev->nkeys,
			                ev->keys, ev->klens);
		else if (ev->clear_base)
			store_report_clear(s, rev, c, ev->clear_base, ev->clear_next, ev->nkeys,
			                   ev->keys, ev->klens);
		else
			store_report(s, rev, ev->kind, c, version, ev->nkeys, ev->keys, ev->klens);
		if (!rev_out && s->opts.auto_point_every)
			auto_point(c, version);
		if (version_out)
			*version_out = version;
		if (rev_out)
			*rev_out = rev;
	}
	ctx_state_release(hidden);
	ctx_state_release(cut);
	state_free_cut(dead);
	return st;
}

/* The nowait form of commit_finish: the flusher publishes and reports next
 * once durable (p, allocated by the caller, is handed to the log). */
static ctx_status commit_finish_nowait(ctx_context *c, ctx_state *next, log_record *rec,
                                       pending_change *p, uint64_t *version_out, uint64_t *rev_out)
{
	ctx_store *s = c->store;
	rec->version = next->version;
	rec->incarnation = c->incarnation;
	p->st = ctx_state_retain(next);
	p->version = next->version;
	ctx_status st = log_append_done(s->log, rec, &next->revision, &p->done);
	if (st != CTX_OK) {
		context_unlock(c);
		pending_free(p);
		ctx_state_release(next);
		return st;
	}
	uint64_t rev = next->revision, version = next->version;
	ctx_state *cut = context_push_head(c, next);
	context_note_commit(c, next->updated_us);
	atomic_store_explicit(&p->linked, true, memory_order_release); /* p may go now */
	context_unlock(c);
	ctx_state_release(cut);
	if (version_out)
		*version_out = version;
	if (rev_out)
		*rev_out = rev;
	return CTX_OK;
}

/* A guarded commit expected the version readers see, but a newer one is
 * decided and waits for its sync: wait until readers see it (the caller's
 * retry then reads it) instead of letting a retry loop spin on CTX_CONFLICT.
 * Called with no lock held. */
static void wait_visible(ctx_context *c, uint64_t version, uint64_t rev)
{
	if (log_wait(c->store->log, rev) != CTX_OK)
		return;
	/* A waiting committer publishes right after its sync: yield to it. The
	 * visible version may be cut and freed while we look at it: read its
	 * number inside a read-side critical section. */
	for (int i = 0; i < 10000; i++) {
		ctx_rcu_read_lock();
		ctx_state *v = atomic_load(&c->visible);
		bool seen = !v || v->version >= version;
		ctx_rcu_read_unlock();
		if (seen || atomic_load(&c->dropped))
			return;
		sched_yield();
	}
}

/* Take c's write lock. With nr (no reference held, inside a read-side
 * critical section): only if it is free - waiting for it there could wait
 * for a drop that waits for a grace period (synchronize_rcu, state.c) - and
 * only for a context not dropped, whose head then holds c until we unlock:
 * the critical section ends here. False: not taken (nr->busy when held;
 * else dropped, and the section goes on for the caller). */
static bool commit_lock(ctx_context *c, noref *nr)
{
	if (!nr) {
		context_lock(c);
		return true;
	}
	if (!wlock_trylock(&c->write_lock)) {
		nr->busy = true;
		return false;
	}
	if (atomic_load(&c->dropped)) {
		context_unlock(c);
		return false;
	}
	ctx_rcu_read_unlock();
	nr->left = true;
	return true;
}

/* The version this commit will cut from history (context_push_head), or
 * NULL, with its struct's lines loading. Write lock held. Once history is
 * full every commit cuts one: a version history_depth commits old, whose
 * struct and trie root nobody touched since (1,000 contexts x 64 versions
 * is tens of MB, far more than the caches), and the commit used to meet
 * its misses one after another, most under the write lock: the cut's
 * `next` and the new oldest version's `prev` (context_push_head), the
 * cut's count (state_take_cut), then, after the unlock, its root's count
 * (node_release). Started here, they overlap the building of the new
 * version. A hint only: nothing is read but under the lock. */
static ctx_state *cut_prefetch(const ctx_context *c)
{
	if (c->kept < c->store->opts.history_depth || !c->oldest)
		return NULL;
	const char *p = (const char *)c->oldest;
	/* The struct (136 bytes, 16-byte aligned: three lines at most) is
	 * written (refs, the batch link). */
	__builtin_prefetch(p, 1);
	__builtin_prefetch(p + 64, 1);
	__builtin_prefetch(p + sizeof(ctx_state) - 1, 1);
	return c->oldest;
}

/* The second step, once cut's lines had the build's time to arrive: the
 * next oldest version (its prev is cleared, its `light` read) and cut's
 * roots (their counts are decremented when cut is freed). */
static void cut_prefetch_more(const ctx_state *cut)
{
	if (!cut)
		return;
	const ctx_state *next = cut->next;
	if (next) {
		__builtin_prefetch(next, 0);
		__builtin_prefetch(&next->prev, 1);
	}
	if (cut->data.root)
		__builtin_prefetch(cut->data.root, 1);
	if (cut->meta.root)
		__builtin_prefetch(cut->meta.root, 1);
}

/* Apply ops to the newest version of c and commit the result. If strict_del is
 * set, deleting an absent key fails the commit with CTX_NOT_FOUND. rev_out
 * not NULL: do not wait for durability (ctx_txn_commit_nowait). nr: see
 * struct noref and commit_lock. clear (ctx_txn_clear): apply ops to empty
 * maps instead of the newest version's, O(ops) whatever the size of that
 * version (a CLEAR record; its keys are reported by a diff with no lock
 * held: store_report_clear, by the committer, or for a nowait commit by the
 * call_rcu worker: pending_report_rcu). */
static ctx_status commit_ops(ctx_context *c, const txn_op *ops, size_t n, uint64_t expected,
                             bool strict_del, uint64_t *version_out, uint64_t *rev_out, noref *nr,
                             bool clear, bool known_distinct, single_op *one)
{
	ctx_store *s = c->store;
	ctx_status st = CTX_OK;
	uint64_t now = store_now_us(s);
	body_buf body = {0};
	log_record rec = {0};
	if (s->log) {
		if ((st = encode_commit(c, ops, n, now, false, &body)) != CTX_OK)
			return st;
		rec = (log_record){
		    clear ? REC_CLEAR : REC_COMMIT, 0,  0, body.data, (uint32_t)body.len,
		    crc32c(0, body.data, body.len), now};
	}
	pending_change *p = NULL;
	if (rev_out && s->wait_durable && !(p = pending_new(c, CTX_EVENT_COMMITTED, ops, n))) {
		body_free(&body);
		return ctx_fail(CTX_NOMEM, "no memory to commit to '%s'", c->id);
	}
	/* The keys, for watchers. */
	const void *key_buf[8];
	size_t klen_buf[8];
	const void **keys = n <= 8 ? key_buf : malloc(n * sizeof(*keys));
	size_t *klens = n <= 8 ? klen_buf : malloc(n * sizeof(*klens));
	commit_event ev = {CTX_EVENT_COMMITTED, 0, keys, klens, NULL, NULL};
	if (one) {
		keys[0] = one->key;
		klens[0] = one->klen;
		ev.nkeys = 1;
	} else if (keys && klens) {
		for (size_t i = 0; i < n; i++) {
			keys[i] = hamt_leaf_key(ops[i].leaf);
			klens[i] = hamt_leaf_klen(ops[i].leaf);
		}
		ev.nkeys = n;
	}

	bool distinct = known_distinct || ops_distinct(ops, n);

	if (!commit_lock(c, nr)) {
		st = nr->busy
		         ? CTX_OK
		         : ctx_fail(CTX_NOT_FOUND, "context '%s' was dropped or expired", c->id);
		goto out;
	}
	if (atomic_load(&c->dropped) || context_expired(c, now)) {
		if (!atomic_load(&c->dropped))
			reaper_kick(s);
		st = ctx_fail(CTX_NOT_FOUND, "context '%s' was dropped or expired", c->id);
		goto fail;
	}
	ctx_state *head = c->head;
	if (expected && expected != head->version) {
		st = ctx_fail(CTX_CONFLICT, "context '%s' is at version %llu, not %llu", c->id,
		              (unsigned long long)head->version, (unsigned long long)expected);
		/* The visible version may have left history already (visible
		 * lags the head while commits wait for their sync), held only
		 * by `visible`: a publish, which takes no write lock, may
		 * replace it and free it after a grace period. Read its number
		 * inside a read-side section (round 20, as wait_visible). */
		ctx_rcu_read_lock();
		ctx_state *seen = atomic_load(&c->visible);
		bool behind = seen && seen->version == expected;
		ctx_rcu_read_unlock();
		if (s->wait_durable && behind) {
			uint64_t version = head->version, rev = head->revision;
			context_unlock(c);
			wait_visible(c, version, rev);
			goto out;
		}
		goto fail;
	}

	ctx_state *cut = cut_prefetch(c);
	/* A clear starts from empty maps: the head's trie is neither walked
	 * nor released here (it stays in history; the reclaimer frees it when
	 * it leaves, as `light` is false below). */
	hamt data = clear ? (hamt){0} : hamt_retain(&head->data);
	hamt meta = clear ? (hamt){0} : hamt_retain(&head->meta);
	size_t changed = 0;
	st = apply_ops(&data, &meta, ops, n, now, strict_del, &changed, one ? &one->given : NULL);
	ctx_state *next = NULL;
	if (st == CTX_OK)
		next = p ? state_new(c, head->version + 1, data, meta)
		         : state_new_adopting(c, head->version + 1, data, meta);
	cut_prefetch_more(cut);
	if (!next) {
		hamt_release(&data);
		hamt_release(&meta);
		if (st == CTX_OK)
			st = CTX_NOMEM;
		st = st == CTX_NOT_FOUND ? ctx_fail(st, "no such key in context '%s'", c->id)
		                         : ctx_fail(st, "no memory to commit to '%s'", c->id);
		goto fail;
	}
	next->updated_us = now;
	/* The version a clear replaced owns its whole trie alone: never light. */
	next->light = !clear && n <= RECLAIM_LIGHT_OPS;
	/* Counted while building: no diff of the maps on the common path. */
	if (!clear && !distinct)
		atomic_fetch_add_explicit(&txn_test_commit_diffs, 1, memory_order_relaxed);
	next->changed = clear      ? clear_changed(&head->data, &data)
	                : distinct ? changed
	                           : hamt_diff_count(&head->data, &data);
	/* The version the clear replaced, for the diff that names the keys it
	 * removed: only while events are recorded (else nobody gets them). */
	bool diff = clear && store_feed_recording(s);
	if (p) {
		if (diff) /* the call_rcu worker reports the keys it removed */
			p->base = ctx_state_retain(head);
		st = commit_finish_nowait(c, next, &rec, p, version_out, rev_out);
		p = NULL; /* the log's, or freed */
		goto out;
	}
	if (diff) { /* both held for the report's diff, after the unlock */
		ev.clear_base = ctx_state_retain(head);
		ev.clear_next = ctx_state_retain(next);
	}
	st = commit_finish_rev(c, next, &rec, &ev, version_out, rev_out, false, nr);
	goto out;
fail:
	context_unlock(c);
out:
	if (p)
		pending_free(p);
	ctx_state_release((ctx_state *)ev.clear_base);
	ctx_state_release((ctx_state *)ev.clear_next);
	body_free(&body);
	if (keys != key_buf)
		free(keys);
	if (klens != klen_buf)
		free(klens);
	return st;
}

/* One put or delete (ctx_put, ctx_del) of c, found and usable. */
static ctx_status commit_one(ctx_store *s, ctx_context *c, enum op_kind kind, const void *key,
                             size_t klen, const void *val, size_t vlen, uint64_t *version_out,
                             noref *nr)
{
	ctx_status st;
	if ((st = store_check_key(s, key, klen)) != CTX_OK ||
	    (kind == OP_PUT && (st = store_check_value(s, val, vlen)) != CTX_OK))
		return st;
	txn_op op = {kind, hamt_leaf_new(key, klen, val, vlen)};
	single_op one = {key, klen, false};
	st = op.leaf ? commit_ops(c, &op, 1, 0, kind == OP_DEL, version_out, NULL, nr, false, true,
	                          &one)
	             : ctx_fail(CTX_NOMEM, "no memory for a %s", kind == OP_PUT ? "value" : "key");
	if (!one.given)
		hamt_leaf_release(op.leaf);
	return st;
}

/* ctx_put and ctx_del. Where a commit never waits for a sync and makes no
 * automatic points (memory and batch stores, by default), the context is
 * found under RCU and committed to without a reference of its own: the
 * read-side critical section keeps its memory (contexts are freed a grace
 * period after their last reference) until commit_lock has its write lock
 * and has seen it not dropped; from then on its head holds it, and after
 * the unlock nothing reads it (the feed's report names the caller's id).
 * Two locked operations fewer on the context's first line, which every
 * commit to it writes. When the write lock is held (commit_lock does not
 * wait for it inside the critical section), or the store waits for syncs
 * (an fsync inside a critical section would hold back every grace period)
 * or makes automatic points (they read the context after the unlock), the
 * context is held by a reference for the call, as before. */
static ctx_status put_or_del(ctx_store *s, const char *id, enum op_kind kind, const void *key,
                             size_t klen, const void *val, size_t vlen, uint64_t *version_out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	ctx_context *c;
	size_t idlen;
	ctx_status st;
	if (s)
		store_throttle(s, false); /* before the read-side section below */
	if (s && !s->wait_durable && !s->opts.auto_point_every) {
		if ((st = store_check_id(s, id, &idlen)) != CTX_OK)
			return st;
		noref nr = {id, idlen, false, false};
		ctx_rcu_read_lock();
		if (!(c = store_lookup_context_rcu(s, id, idlen))) {
			st = ctx_fail(CTX_NOT_FOUND, "no context '%s'", id);
		} else if (!context_usable(c)) {
			/* Past its time-to-live: gone for every call (expiry.c). */
			reaper_kick(s);
			st = ctx_fail(CTX_NOT_FOUND, "context '%s' expired", id);
		} else {
			st = commit_one(s, c, kind, key, klen, val, vlen, version_out, &nr);
		}
		if (!nr.left)
			ctx_rcu_read_unlock();
		if (!nr.busy)
			return st;
	}
	if ((st = store_open_context(s, id, &c)) != CTX_OK)
		return st;
	st = commit_one(s, c, kind, key, klen, val, vlen, version_out, NULL);
	context_release(c);
	return st;
}

ctx_status ctx_put(ctx_store *s, const char *id, const void *key, size_t klen, const void *val,
                   size_t vlen, uint64_t *version_out)
{
	return put_or_del(s, id, OP_PUT, key, klen, val, vlen, version_out);
}

ctx_status ctx_del(ctx_store *s, const char *id, const void *key, size_t klen,
                   uint64_t *version_out)
{
	return put_or_del(s, id, OP_DEL, key, klen, NULL, 0, version_out);
}

/* ---- transactions ---------------------------------------------------------- */

ctx_status ctx_txn_begin(ctx_store *s, const char *id, ctx_txn **out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!out)
		return ctx_fail(CTX_INVALID, "NULL output pointer");
	ctx_context *c;
	ctx_status st = store_open_context(s, id, &c);
	if (st != CTX_OK)
		return st;
	ctx_txn *t = txn_new(s, c, NULL, 0);
	if (!t) {
		context_release(c);
		return ctx_fail(CTX_NOMEM, "no memory for a transaction");
	}
	*out = t;
	return CTX_OK;
}

ctx_status ctx_txn_begin_create(ctx_store *s, const char *id, ctx_txn **out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	size_t idlen;
	ctx_status st = store_check_id(s, id, &idlen);
	if (st != CTX_OK)
		return st;
	if (!out)
		return ctx_fail(CTX_INVALID, "NULL output pointer");
	ctx_txn *t = txn_new(s, NULL, id, idlen);
	if (!t)
		return ctx_fail(CTX_NOMEM, "no memory for a transaction");
	*out = t;
	return CTX_OK;
}

static ctx_status txn_add(ctx_txn *t, enum op_kind kind, const void *key, size_t klen,
                          const void *val, size_t vlen)
{
	if (t->count == t->cap) {
		size_t cap = 2 * t->cap;
		bool inline_ = t->ops == t->inline_ops;
		txn_op *ops = realloc(inline_ ? NULL : t->ops, cap * sizeof(*ops));
		if (!ops)
			return ctx_fail(CTX_NOMEM, "no memory for a transaction");
		if (inline_)
			memcpy(ops, t->inline_ops, t->count * sizeof(*ops));
		t->ops = ops;
		t->cap = cap;
	}
	hamt_leaf *l = hamt_leaf_new(key, klen, val, vlen);
	if (!l)
		return ctx_fail(CTX_NOMEM, "no memory for a value");
	t->ops[t->count++] = (txn_op){kind, l};
	return CTX_OK;
}

static ctx_status txn_put(ctx_txn *t, enum op_kind kind, const void *key, size_t klen,
                          const void *val, size_t vlen)
{
	ctx_status st;
	if (!t)
		return ctx_fail(CTX_INVALID, "NULL transaction");
	if ((st = store_check_key(t->store, key, klen)) != CTX_OK ||
	    (st = store_check_value(t->store, val, vlen)) != CTX_OK)
		return st;
	return txn_add(t, kind, key, klen, val, vlen);
}

static ctx_status txn_del(ctx_txn *t, enum op_kind kind, const void *key, size_t klen)
{
	ctx_status st;
	if (!t)
		return ctx_fail(CTX_INVALID, "NULL transaction");
	if ((st = store_check_key(t->store, key, klen)) != CTX_OK)
		return st;
	return txn_add(t, kind, key, klen, NULL, 0);
}

ctx_status ctx_txn_put(ctx_txn *t, const void *key, size_t klen, const void *val, size_t vlen)
{
	return txn_put(t, OP_PUT, key, klen, val, vlen);
}

ctx_status ctx_txn_del(ctx_txn *t, const void *key, size_t klen)
{
	return txn_del(t, OP_DEL, key, klen);
}

ctx_status ctx_txn_meta_put(ctx_txn *t, const void *name, size_t nlen, const void *val, size_t vlen)
{
	return txn_put(t, OP_META_PUT, name, nlen, val, vlen);
}

ctx_status ctx_txn_meta_del(ctx_txn *t, const void *name, size_t nlen)
{
	return txn_del(t, OP_META_DEL, name, nlen);
}

void txn_promise_distinct(ctx_txn *t)
{
	t->distinct = true;
}

ctx_status ctx_txn_clear(ctx_txn *t)
{
	if (!t)
		return ctx_fail(CTX_INVALID, "NULL transaction");
	for (size_t i = 0; i < t->count; i++)
		hamt_leaf_release(t->ops[i].leaf);
	t->count = 0;
	t->distinct = false;
	t->clear = t->create_id == NULL; /* a create starts from empty maps anyway */
	return CTX_OK;
}

void ctx_txn_abort(ctx_txn *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->count; i++)
		hamt_leaf_release(t->ops[i].leaf);
	if (t->ops != t->inline_ops)
		free(t->ops);
	if (t->ctx)
		context_release(t->ctx);
	free(t);
}

static ctx_status txn_commit(ctx_txn *t, uint64_t expected_version, uint64_t *version_out,
                             uint64_t *rev_out)
{
	if (!t)
		return ctx_fail(CTX_INVALID, "NULL transaction");
	if (store_inherited(t->store)) {
		ctx_txn_abort(t);
		return fork_refuse();
	}
	ctx_status st;
	if (!t->create_id)
		store_throttle(t->store, rev_out != NULL); /* (store_create does) */
	if (t->create_id)
		st = expected_version
		         ? ctx_fail(CTX_INVALID, "a create has no expected version")
		         : store_create(t->store, t->create_id, t->ops, t->count, rev_out);
	else
		st = commit_ops(t->ctx, t->ops, t->count, expected_version, false, version_out,
		                rev_out, NULL, t->clear, t->distinct, NULL);
	if (st == CTX_OK && t->create_id && version_out)
		*version_out = 1;
	if (st == CTX_CONFLICT && t->store->log && log_failed(t->store->log)) {
		/* The newest version is one the failed log will never make
		 * durable: no retry can succeed, so say what holds. */
		errno = log_failed(t->store->log);
		st = ctx_fail(CTX_CLOSED, "the log failed (%s); writes are refused",
		              strerror(errno));
	}
	ctx_txn_abort(t);
	return st;
}

ctx_status ctx_txn_commit(ctx_txn *t, uint64_t expected_version, uint64_t *version_out)
{
	return txn_commit(t, expected_version, version_out, NULL);
}

ctx_status ctx_txn_commit_nowait(ctx_txn *t, uint64_t expected_version, uint64_t *version_out,
                                 uint64_t *revision_out)
{
	uint64_t rev = 0;
	ctx_status st = txn_commit(t, expected_version, version_out, &rev);
	if (st == CTX_OK && revision_out)
		*revision_out = rev;
	return st;
}

/* ---- a transaction begun from a version already read (r7-ctxd) ------------ */

/* The version st keeps its context referenced (struct ctx_state), so the
 * transaction takes that context without looking its id up in the table
 * again: a caller that has just read st (ctxd's write batch) saves the
 * second walk. The context is st's incarnation: one dropped since (and
 * perhaps created again under the same id) fails the commit with
 * CTX_NOT_FOUND, as ctx_txn_begin's does when its context is dropped. */
ctx_status ctx_txn_begin_state(const ctx_state *st, ctx_txn **out)
{
	if (!out)
		return ctx_fail(CTX_INVALID, "NULL output pointer");
	if (!st)
		return ctx_fail(CTX_INVALID, "NULL state");
	ctx_txn *t = txn_new(st->ctx->store, st->ctx, NULL, 0);
	if (!t)
		return ctx_fail(CTX_NOMEM, "no memory for a transaction");
	context_retain(st->ctx);
	*out = t;
	return CTX_OK;
}
