/*
 * hamt.c - the persistent hash array mapped trie behind every state.
 *
 * Shape: a node holds up to 32 slots selected by 5 bits of the 64-bit key hash
 * per level (level 12 uses the last 4 bits). A slot holds either a leaf (a
 * key/value pair; the pointer's low bit is set) or a child node. A node keeps
 * only its occupied slots, in index order, with a 32-bit bitmap saying which
 * indexes are present (Bagwell's HAMT). Past the last level, keys whose full
 * hashes are equal share a collision node: a plain list of leaves.
 *
 * Invariants:
 *   - a node reachable from a published version is never modified again;
 *   - a node whose edit token equals the running build's token was created by
 *     that build and is reachable only from it, so the build may modify it;
 *   - every slot owns one reference to what it points to;
 *   - no node is empty except transiently during a delete (then removed), and
 *     a non-root node that would hold a single leaf is replaced by the leaf,
 *     so the shape of a map depends only on its keys.
 */
#include "hamt.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define BITS 5
#define LAST_LEVEL 12 /* 12 * 5 = 60: level 12 takes the top 4 bits */
#define KIND_BITMAP 0
#define KIND_COLLISION 1

struct hamt_node {
	atomic_uint refs;
	uint8_t kind;
	uint8_t cap;  /* slots allocated (bitmap nodes: <= 32) */
	uint16_t len; /* slots used */
	uint32_t bitmap;
	uint64_t edit;
	void *slot[]; /* leaf pointers are tagged with bit 0 */
};

/* Collision nodes may exceed 32 leaves; their cap/len use the same fields, so
 * they are limited to 65535 keys of one identical 64-bit hash, which a keyed
 * hash makes unreachable in practice (hamt_set reports CTX_NOMEM past it). */
#define COLLISION_MAX 65535

static uint64_t hash_seed;
static atomic_uint_fast64_t next_edit = 1;

static void seed_init(void)
{
	uint64_t seed = 0;
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)(uintptr_t)&seed ^ 0x9e3779b97f4a7c15ull;
	hash_seed = seed;
}

static pthread_once_t seed_once = PTHREAD_ONCE_INIT;
static atomic_bool seeded;

static void seed_init_once(void)
{
	seed_init();
	atomic_store_explicit(&seeded, true, memory_order_release);
}

uint64_t hamt_hash(const void *key, size_t klen)
{
	/* Every read hashes its id and key: after the first, one load instead
	 * of a call into pthread_once. */
	if (!atomic_load_explicit(&seeded, memory_order_acquire))
		pthread_once(&seed_once, seed_init_once);
	return XXH3_64bits_withSeed(key, klen, hash_seed);
}

uint64_t hamt_content_hash(const void *key, size_t klen, const void *val, size_t vlen)
{
	/* Fixed seeds: the checksum is stored on disk and compared later. */
	uint64_t h = XXH3_64bits_withSeed(val, vlen, XXH3_64bits(key, klen));
	return h ? h : 1;
}

/* Tokens are taken from the shared counter in blocks, so that committers on
 * different contexts do not all bounce one cache line: each thread hands out
 * its own block. Unique all the same, which is all a token needs to be. */
#define EDIT_BLOCK 1024

uint64_t hamt_edit_token(void)
{
	static _Thread_local uint64_t next, end;
	if (next == end) {
		next = atomic_fetch_add_explicit(&next_edit, EDIT_BLOCK, memory_order_relaxed);
		end = next + EDIT_BLOCK;
	}
	return next++;
}

/* ---- slots ---------------------------------------------------------------- */

static inline bool slot_is_leaf(const void *s)
{
	return (uintptr_t)s & 1;
}
static inline hamt_leaf *slot_leaf(const void *s)
{
	return (hamt_leaf *)((uintptr_t)s & ~(uintptr_t)1);
}
static inline hamt_node *slot_node(const void *s)
{
	return (hamt_node *)s;
}
static inline void *leaf_slot(hamt_leaf *l)
{
	return (void *)((uintptr_t)l | 1);
}

static inline unsigned level_index(uint64_t hash, unsigned level)
{
	return (unsigned)(hash >> (BITS * level)) & 31u;
}

static inline unsigned bit_pos(uint32_t bitmap, uint32_t bit)
{
	return (unsigned)__builtin_popcount(bitmap & (bit - 1));
}

/* ---- leaves --------------------------------------------------------------- */

hamt_leaf *hamt_leaf_new(const void *key, size_t klen, const void *val, size_t vlen)
{
	hamt_leaf *l = malloc(sizeof(*l) + klen + vlen);
	if (!l)
		return NULL;
	atomic_init(&l->refs, 1);
	l->klen = (uint32_t)klen;
	l->vlen = (uint32_t)vlen;
	l->hash = hamt_hash(key, klen);
	l->sum = hamt_content_hash(key, klen, val, vlen);
	l->time_us = 0;
	memcpy(l->data, key, klen);
	if (vlen)
		memcpy(l->data + klen, val, vlen);
	return l;
}

static void leaf_retain(hamt_leaf *l)
{
	atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void hamt_leaf_release(hamt_leaf *l)
{
	if (l && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
		free(l);
}

static bool leaf_matches(const hamt_leaf *l, uint64_t hash, const void *key, size_t klen)
{
	return l->hash == hash && l->klen == klen && memcmp(l->data, key, klen) == 0;
}

/* Same key (known) and same value. */
static bool leaf_same(const hamt_leaf *a, const hamt_leaf *b)
{
	return a == b || (a->vlen == b->vlen && a->sum == b->sum &&
	                  memcmp(hamt_leaf_value(a), hamt_leaf_value(b), a->vlen) == 0);
}

/* ---- nodes ---------------------------------------------------------------- */

static hamt_node *node_alloc(uint8_t kind, unsigned cap, uint64_t edit)
{
	hamt_node *n = malloc(sizeof(*n) + cap * sizeof(void *));
	if (!n)
		return NULL;
	atomic_init(&n->refs, 1);
	n->kind = kind;
	n->cap = (uint8_t)(kind == KIND_BITMAP ? cap : 0);
	n->len = 0;
	n->bitmap = kind == KIND_BITMAP ? 0 : cap; /* collision: bitmap = capacity */
	n->edit = edit;
	return n;
}

static unsigned node_cap(const hamt_node *n)
{
	return n->kind == KIND_BITMAP ? n->cap : n->bitmap;
}

static void node_release(hamt_node *n);

static void slot_retain(void *s)
{
	if (slot_is_leaf(s))
		leaf_retain(slot_leaf(s));
	else
		atomic_fetch_add_explicit(&slot_node(s)->refs, 1, memory_order_relaxed);
}

static void slot_release(void *s)
{
	if (slot_is_leaf(s))
		hamt_leaf_release(slot_leaf(s));
	else
		node_release(slot_node(s));
}

static void node_release(hamt_node *n)
{
	if (!n || atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned i = 0; i < n->len; i++)
		slot_release(n->slot[i]);
	free(n);
}

/* A copy of n owned by edit, with room for `extra` more slots; every slot of
 * the copy holds a new reference. */
static hamt_node *node_clone(const hamt_node *n, unsigned extra, uint64_t edit)
{
	unsigned cap = n->len + extra;
	if (n->kind == KIND_BITMAP && cap > 32)
		cap = 32;
	hamt_node *c = node_alloc(n->kind, cap, edit);
	if (!c)
		return NULL;
	c->len = n->len;
	if (n->kind == KIND_BITMAP)
		c->bitmap = n->bitmap;
	for (unsigned i = 0; i < n->len; i++) {
		c->slot[i] = n->slot[i];
		slot_retain(c->slot[i]);
	}
	return c;
}

/* Make *np modifiable by edit, with room for `extra` more slots: keep it if
 * the build owns it and it has room, otherwise replace it by a copy and drop
 * the reference *np held. */
static ctx_status node_make_editable(void **np, unsigned extra, uint64_t edit)
{
	hamt_node *n = *np;
	if (n->edit == edit && n->len + extra <= node_cap(n))
		return CTX_OK;
	/* Owned nodes grow by doubling; shared ones are copied to their size. */
	unsigned grow = n->edit == edit ? (n->len ? n->len : 1) : extra;
	if (grow < extra)
		grow = extra;
	hamt_node *c = node_clone(n, grow, edit);
	if (!c)
		return CTX_NOMEM;
	node_release(n);
	*np = c;
	return CTX_OK;
}

static void node_insert_slot(hamt_node *n, unsigned pos, void *s)
{
	memmove(&n->slot[pos + 1], &n->slot[pos], (n->len - pos) * sizeof(void *));
	n->slot[pos] = s;
	n->len++;
}

static void node_remove_slot(hamt_node *n, unsigned pos)
{
	memmove(&n->slot[pos], &n->slot[pos + 1], (n->len - pos - 1) * sizeof(void *));
	n->len--;
}

/* A new node at `level` holding the two leaves a and b (their references move
 * in), nesting deeper while their hash bits agree. */
static hamt_node *node_pair(void *a, void *b, unsigned level, uint64_t edit)
{
	uint64_t ha = slot_leaf(a)->hash, hb = slot_leaf(b)->hash;
	if (level > LAST_LEVEL) {
		hamt_node *c = node_alloc(KIND_COLLISION, 2, edit);
		if (!c)
			return NULL;
		c->slot[0] = a;
		c->slot[1] = b;
		c->len = 2;
		return c;
	}
	unsigned ia = level_index(ha, level), ib = level_index(hb, level);
	hamt_node *n = node_alloc(KIND_BITMAP, 2, edit);
	if (!n)
		return NULL;
	if (ia == ib) {
		hamt_node *child = node_pair(a, b, level + 1, edit);
		if (!child) {
			free(n);
			return NULL;
		}
		n->bitmap = 1u << ia;
		n->slot[0] = child;
		n->len = 1;
	} else {
		n->bitmap = (1u << ia) | (1u << ib);
		n->slot[0] = ia < ib ? a : b;
		n->slot[1] = ia < ib ? b : a;
		n->len = 2;
	}
	return n;
}

/* ---- lookup --------------------------------------------------------------- */

const hamt_leaf *hamt_find(const hamt *m, uint64_t hash, const void *key, size_t klen)
{
	const hamt_node *n = m->root;
	for (unsigned level = 0; n; level++) {
		const void *s;
		if (n->kind == KIND_COLLISION) {
			for (unsigned i = 0; i < n->len; i++) {
				const hamt_leaf *l = slot_leaf(n->slot[i]);
				if (leaf_matches(l, hash, key, klen))
					return l;
			}
			return NULL;
		}
		uint32_t bit = 1u << level_index(hash, level);
		if (!(n->bitmap & bit))
			return NULL;
		s = n->slot[bit_pos(n->bitmap, bit)];
		if (slot_is_leaf(s)) {
			const hamt_leaf *l = slot_leaf(s);
			return leaf_matches(l, hash, key, klen) ? l : NULL;
		}
		n = slot_node(s);
	}
	return NULL;
}

hamt hamt_retain(const hamt *m)
{
	if (m->root)
		atomic_fetch_add_explicit(&m->root->refs, 1, memory_order_relaxed);
	return *m;
}

void hamt_release(hamt *m)
{
	node_release(m->root);
	m->root = NULL;
	m->count = 0;
	m->bytes = 0;
	m->sum = 0;
}

/* ---- insert --------------------------------------------------------------- */

/* Bytes and content hash of the leaf replaced by a set; bytes -1 if the key
 * was new. */
typedef struct set_result {
	long long replaced_bytes;
	uint64_t replaced_sum;
	bool same; /* the replaced leaf held the same value */
} set_result;

static ctx_status set_collision(void **np, hamt_leaf *leaf, uint64_t edit, set_result *r)
{
	hamt_node *n = *np;
	for (unsigned i = 0; i < n->len; i++) {
		hamt_leaf *old = slot_leaf(n->slot[i]);
		if (leaf_matches(old, leaf->hash, hamt_leaf_key(leaf), leaf->klen)) {
			if (node_make_editable(np, 0, edit) != CTX_OK)
				return CTX_NOMEM;
			r->replaced_bytes = (long long)old->klen + old->vlen;
			r->replaced_sum = old->sum;
			r->same = leaf_same(old, leaf);
			hamt_node *e = *np;
			slot_release(e->slot[i]);
			e->slot[i] = leaf_slot(leaf);
			return CTX_OK;
		}
	}
	if (n->len >= COLLISION_MAX || node_make_editable(np, 1, edit) != CTX_OK)
		return CTX_NOMEM;
	hamt_node *e = *np;
	node_insert_slot(e, e->len, leaf_slot(leaf));
	return CTX_OK;
}

static ctx_status set_in(void **np, unsigned level, hamt_leaf *leaf, uint64_t edit,
                         set_result *r)
{
	hamt_node *n = *np;
	if (n->kind == KIND_COLLISION)
		return set_collision(np, leaf, edit, r);

	uint32_t bit = 1u << level_index(leaf->hash, level);
	unsigned pos = bit_pos(n->bitmap, bit);

	if (!(n->bitmap & bit)) {
		if (node_make_editable(np, 1, edit) != CTX_OK)
			return CTX_NOMEM;
		n = *np;
		node_insert_slot(n, pos, leaf_slot(leaf));
		n->bitmap |= bit;
		return CTX_OK;
	}

	void *s = n->slot[pos];
	if (!slot_is_leaf(s)) {
		if (node_make_editable(np, 0, edit) != CTX_OK)
			return CTX_NOMEM;
		n = *np;
		return set_in(&n->slot[pos], level + 1, leaf, edit, r);
	}

	hamt_leaf *old = slot_leaf(s);
	if (leaf_matches(old, leaf->hash, hamt_leaf_key(leaf), leaf->klen)) {
		if (node_make_editable(np, 0, edit) != CTX_OK)
			return CTX_NOMEM;
		r->replaced_bytes = (long long)old->klen + old->vlen;
		r->replaced_sum = old->sum;
		r->same = leaf_same(old, leaf);
		n = *np;
		slot_release(n->slot[pos]);
		n->slot[pos] = leaf_slot(leaf);
		return CTX_OK;
	}

	/* Two different keys meet in this slot: push both one level down. */
	leaf_retain(old);
	hamt_node *pair = node_pair(s, leaf_slot(leaf), level + 1, edit);
	if (!pair) {
		hamt_leaf_release(old);
		return CTX_NOMEM;
	}
	if (node_make_editable(np, 0, edit) != CTX_OK) {
		/* Undo: the pair holds one reference to old and the caller's leaf. */
		leaf_retain(leaf);
		node_release(pair);
		return CTX_NOMEM;
	}
	n = *np;
	slot_release(n->slot[pos]);
	n->slot[pos] = pair;
	return CTX_OK;
}

ctx_status hamt_set(hamt *m, hamt_leaf *leaf, uint64_t edit)
{
	return hamt_put(m, leaf, edit, NULL);
}

ctx_status hamt_put(hamt *m, hamt_leaf *leaf, uint64_t edit, bool *changed)
{
	set_result r = {.replaced_bytes = -1};
	if (!m->root) {
		hamt_node *n = node_alloc(KIND_BITMAP, 4, edit);
		if (!n)
			return CTX_NOMEM;
		uint32_t bit = 1u << level_index(leaf->hash, 0);
		n->bitmap = bit;
		n->slot[0] = leaf_slot(leaf);
		n->len = 1;
		m->root = n;
	} else {
		/* A NOMEM deep in the path may leave copies made above it in place;
		 * they hold the same data as before, so the map is unchanged. */
		void *root = m->root;
		ctx_status st = set_in(&root, 0, leaf, edit, &r);
		m->root = root;
		if (st != CTX_OK)
			return st;
	}
	if (r.replaced_bytes < 0) {
		m->count++;
	} else {
		m->bytes -= (size_t)r.replaced_bytes;
		m->sum -= r.replaced_sum;
	}
	m->bytes += (size_t)leaf->klen + leaf->vlen;
	m->sum += leaf->sum;
	if (changed)
		*changed = !r.same;
	return CTX_OK;
}

/* ---- delete --------------------------------------------------------------- */

/* Remove the key (known to be present) below *np. Afterwards *np may be empty
 * (len 0) or hold a single leaf; the caller collapses it. */
static ctx_status del_in(void **np, unsigned level, uint64_t hash, const void *key,
                         size_t klen, uint64_t edit, size_t *freed, uint64_t *sum)
{
	hamt_node *n = *np;
	unsigned pos;
	if (n->kind == KIND_COLLISION) {
		for (pos = 0; pos < n->len; pos++)
			if (leaf_matches(slot_leaf(n->slot[pos]), hash, key, klen))
				break;
	} else {
		pos = bit_pos(n->bitmap, 1u << level_index(hash, level));
	}
	if (node_make_editable(np, 0, edit) != CTX_OK)
		return CTX_NOMEM;
	n = *np;
	void *s = n->slot[pos];

	if (slot_is_leaf(s)) {
		*freed = (size_t)slot_leaf(s)->klen + slot_leaf(s)->vlen;
		*sum = slot_leaf(s)->sum;
		slot_release(s);
		node_remove_slot(n, pos);
		if (n->kind == KIND_BITMAP)
			n->bitmap &= ~(1u << level_index(hash, level));
		return CTX_OK;
	}

	ctx_status st = del_in(&n->slot[pos], level + 1, hash, key, klen, edit, freed, sum);
	if (st != CTX_OK)
		return st;
	hamt_node *child = n->slot[pos];
	if (child->len == 1 && slot_is_leaf(child->slot[0])) {
		/* Collapse a child left with one leaf into this slot. */
		void *only = child->slot[0];
		slot_retain(only);
		node_release(child);
		n->slot[pos] = only;
	}
	return CTX_OK;
}

ctx_status hamt_del(hamt *m, uint64_t hash, const void *key, size_t klen, uint64_t edit)
{
	if (!hamt_find(m, hash, key, klen))
		return CTX_NOT_FOUND;
	size_t freed = 0;
	uint64_t sum = 0;
	void *root = m->root;
	ctx_status st = del_in(&root, 0, hash, key, klen, edit, &freed, &sum);
	m->root = root;
	if (st != CTX_OK)
		return st;
	if (m->root->len == 0) {
		node_release(m->root);
		m->root = NULL;
	}
	m->count--;
	m->bytes -= freed;
	m->sum -= sum;
	return CTX_OK;
}

/* ---- iteration ------------------------------------------------------------ */

#define PREFETCH_AHEAD 3

/* Start loading what slot s points to: a leaf's header and the start of its
 * key and value (two cache lines), or a node's header and first slots. */
static inline void prefetch_slot(const void *s)
{
	const char *p = slot_is_leaf(s) ? (const char *)slot_leaf(s) : s;
	__builtin_prefetch(p);
	__builtin_prefetch(p + 64);
}

/* Prefetch the first slots of n, whose walk is about to begin. */
static inline void prefetch_first(const hamt_node *n)
{
	for (unsigned i = 0; i < n->len && i < PREFETCH_AHEAD; i++)
		prefetch_slot(n->slot[i]);
}

void hamt_cursor_init(hamt_cursor *c, const hamt *m)
{
	if (m->root)
		prefetch_first(m->root);
	c->depth = m->root ? 1 : 0;
	c->node[0] = m->root;
	c->pos[0] = 0;
}

const hamt_leaf *hamt_cursor_next(hamt_cursor *c)
{
	while (c->depth > 0) {
		int d = c->depth - 1;
		const hamt_node *n = c->node[d];
		if (c->pos[d] >= n->len) {
			c->depth--;
			continue;
		}
		unsigned pos = c->pos[d]++;
		/* Reading a whole map is a walk over leaves scattered in memory:
		 * fetch a few ahead so that their cache misses overlap. */
		if (pos + PREFETCH_AHEAD < n->len)
			prefetch_slot(n->slot[pos + PREFETCH_AHEAD]);
		void *s = n->slot[pos];
		if (slot_is_leaf(s))
			return slot_leaf(s);
		c->node[c->depth] = slot_node(s);
		c->pos[c->depth] = 0;
		c->depth++;
		prefetch_first(slot_node(s));
	}
	return NULL;
}

/* ---- diff ----------------------------------------------------------------- */

/* Every leaf under slot s, reported as removed (added = false) or added. */
static ctx_status diff_all(const void *s, bool added, hamt_diff_fn fn, void *arg)
{
	if (slot_is_leaf(s))
		return added ? fn(arg, NULL, slot_leaf(s)) : fn(arg, slot_leaf(s), NULL);
	const hamt_node *n = slot_node(s);
	for (unsigned i = 0; i < n->len; i++) {
		ctx_status st = diff_all(n->slot[i], added, fn, arg);
		if (st != CTX_OK)
			return st;
	}
	return CTX_OK;
}

/* The leaf with l's key in the subtree s whose root is at `level`, or NULL. */
static const hamt_leaf *find_under(const void *s, unsigned level, const hamt_leaf *l)
{
	while (!slot_is_leaf(s)) {
		const hamt_node *n = slot_node(s);
		if (n->kind == KIND_COLLISION) {
			for (unsigned i = 0; i < n->len; i++)
				if (leaf_matches(slot_leaf(n->slot[i]), l->hash, hamt_leaf_key(l), l->klen))
					return slot_leaf(n->slot[i]);
			return NULL;
		}
		uint32_t bit = 1u << level_index(l->hash, level);
		if (!(n->bitmap & bit))
			return NULL;
		s = n->slot[bit_pos(n->bitmap, bit)];
		level++;
	}
	const hamt_leaf *x = slot_leaf(s);
	return leaf_matches(x, l->hash, hamt_leaf_key(l), l->klen) ? x : NULL;
}

/* A leaf on one side against a subtree on the other. */
static ctx_status diff_leaf_tree(const hamt_leaf *l, const void *tree, unsigned level,
                                 bool leaf_is_old, hamt_diff_fn fn, void *arg);

static ctx_status diff_slots(const void *a, const void *b, unsigned level, hamt_diff_fn fn,
                             void *arg)
{
	if (a == b)
		return CTX_OK;
	if (!a)
		return diff_all(b, true, fn, arg);
	if (!b)
		return diff_all(a, false, fn, arg);
	if (slot_is_leaf(a) && slot_is_leaf(b)) {
		const hamt_leaf *x = slot_leaf(a), *y = slot_leaf(b);
		if (leaf_matches(x, y->hash, hamt_leaf_key(y), y->klen))
			return leaf_same(x, y) ? CTX_OK : fn(arg, x, y);
		ctx_status st = fn(arg, x, NULL);
		return st != CTX_OK ? st : fn(arg, NULL, y);
	}
	if (slot_is_leaf(a))
		return diff_leaf_tree(slot_leaf(a), b, level, true, fn, arg);
	if (slot_is_leaf(b))
		return diff_leaf_tree(slot_leaf(b), a, level, false, fn, arg);

	const hamt_node *x = slot_node(a), *y = slot_node(b);
	if (x->kind == KIND_COLLISION || y->kind == KIND_COLLISION) {
		/* Both are collision nodes of the same hash (same depth). */
		for (unsigned i = 0; i < x->len; i++) {
			const hamt_leaf *l = slot_leaf(x->slot[i]), *o = NULL;
			for (unsigned j = 0; j < y->len && !o; j++)
				if (leaf_matches(slot_leaf(y->slot[j]), l->hash, hamt_leaf_key(l), l->klen))
					o = slot_leaf(y->slot[j]);
			ctx_status st = !o ? fn(arg, l, NULL) : leaf_same(l, o) ? CTX_OK : fn(arg, l, o);
			if (st != CTX_OK)
				return st;
		}
		for (unsigned j = 0; j < y->len; j++) {
			const hamt_leaf *l = slot_leaf(y->slot[j]);
			bool found = false;
			for (unsigned i = 0; i < x->len && !found; i++)
				found = leaf_matches(slot_leaf(x->slot[i]), l->hash, hamt_leaf_key(l),
				                     l->klen);
			if (!found) {
				ctx_status st = fn(arg, NULL, l);
				if (st != CTX_OK)
					return st;
			}
		}
		return CTX_OK;
	}
	uint32_t all = x->bitmap | y->bitmap;
	while (all) {
		uint32_t bit = all & -all;
		all &= all - 1;
		const void *sa = x->bitmap & bit ? x->slot[bit_pos(x->bitmap, bit)] : NULL;
		const void *sb = y->bitmap & bit ? y->slot[bit_pos(y->bitmap, bit)] : NULL;
		ctx_status st = diff_slots(sa, sb, level + 1, fn, arg);
		if (st != CTX_OK)
			return st;
	}
	return CTX_OK;
}

static ctx_status diff_leaf_tree(const hamt_leaf *l, const void *tree, unsigned level,
                                 bool leaf_is_old, hamt_diff_fn fn, void *arg)
{
	/* Everything in the tree but l's key is added (or removed); l's key is
	 * changed, unchanged, or removed (added). */
	const hamt_leaf *match = find_under(tree, level, l);
	ctx_status st = CTX_OK;
	if (!match)
		st = leaf_is_old ? fn(arg, l, NULL) : fn(arg, NULL, l);
	else if (!leaf_same(l, match))
		st = leaf_is_old ? fn(arg, l, match) : fn(arg, match, l);
	if (st != CTX_OK)
		return st;
	hamt_cursor c;
	hamt sub = {.root = slot_node(tree)};
	hamt_cursor_init(&c, &sub);
	const hamt_leaf *x;
	while ((x = hamt_cursor_next(&c))) {
		if (x == match)
			continue;
		st = leaf_is_old ? fn(arg, NULL, x) : fn(arg, x, NULL);
		if (st != CTX_OK)
			return st;
	}
	return CTX_OK;
}

ctx_status hamt_diff(const hamt *a, const hamt *b, hamt_diff_fn fn, void *arg)
{
	if (a->root == b->root)
		return CTX_OK;
	if (!a->root)
		return diff_all(b->root, true, fn, arg);
	if (!b->root)
		return diff_all(a->root, false, fn, arg);
	return diff_slots(a->root, b->root, 0, fn, arg);
}

static ctx_status count_change(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	(*(size_t *)arg)++;
	return CTX_OK;
}

size_t hamt_diff_count(const hamt *a, const hamt *b)
{
	size_t n = 0;
	hamt_diff(a, b, count_change, &n);
	return n;
}
