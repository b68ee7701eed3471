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
 *   - no node is empty except transiently during a delete (then removed), and
 *     a non-root node that would hold a single leaf is replaced by the leaf,
 *     so the shape of a map depends only on its keys.
 *
 * REFERENCES: OWNED AND BORROWED SLOTS
 *   Nodes and leaves are reference counted. Copying a node used to take a
 *   reference to each of its children (and freeing the copy dropped them):
 *   two atomic operations on up to 32 cache lines elsewhere in memory for
 *   each version of a small map, a third of a one-key commit. Instead, a copy
 *   may *borrow*: it takes one reference to the node it copies (its `base`)
 *   and none to the children, which the base keeps alive. Each slot of a
 *   bitmap node is owned (its bit in `owned`: the node holds a reference to
 *   the target) or borrowed (the node holds none). Collision nodes own all
 *   their slots and never borrow.
 *
 *   Invariant B: a borrowed slot of node c points to something c->base keeps
 *   alive. Proof: a borrow copy starts with every slot equal to its base's
 *   (owned or, recursively, borrowed there: alive while the base is); the
 *   base is immutable from then on (it was published, or belongs to a build
 *   that has ended: tokens are never reused; a node of the running build is
 *   grown in place of being borrowed from, node_grow); c holds its reference
 *   to the base until c is freed or unborrows; and c only ever turns a
 *   borrowed slot into an owned one (writing a new target) or removes it.
 *   So freeing c releases exactly its owned slots and its base (node_release,
 *   a loop along the base chain), and every reference is dropped once.
 *
 *   Bounded retention: a target that c stops pointing to while borrowing it
 *   stays alive as long as c's base does. That is allowed only when it costs
 *   nothing or little: (a) it became the base of c's copy of it, or is held
 *   by a new pair node (it is still in the map); (b) it is a leaf of at most
 *   HAMT_BORROW_SMALL bytes, at most HAMT_BORROW_DROPS of them per node
 *   (`dropped`).
 *   Any other drop of a borrowed slot first makes c own all its slots
 *   (node_unborrow: a reference to each borrowed target, the base released),
 *   and so every node above c on the build's path (path_unborrow): each of
 *   them dropped its borrowed child under (a), as the base of the copy
 *   below, and c's old version stops being a base once c unborrows; were
 *   the ancestors to keep their bases, those would keep the old child, and
 *   it whatever c meant to let go of. Unborrowed, the old nodes are held by
 *   the old versions alone and go with them.
 *   Borrowing is chained at most HAMT_BORROW_CHAIN times (`chain`; the next
 *   copy is a full one), so a live node keeps alive at most HAMT_BORROW_CHAIN
 *   earlier copies of itself and HAMT_BORROW_CHAIN * HAMT_BORROW_DROPS small
 *   leaves that no version holds. Versions in history hold those anyway in
 *   the common case (history_depth 64 > HAMT_BORROW_CHAIN).
 *
 *   A one-key commit to a small map now copies its root with no atomic
 *   operation at all (the map's reference to the old root moves into the
 *   copy's base), and dropping the version that left history touches one
 *   node and one leaf, not every child; every HAMT_BORROW_CHAIN-th copy is
 *   full.
 */
#include "hamt.h"
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define BITS           5
#define LAST_LEVEL     12 /* 12 * 5 = 60: level 12 takes the top 4 bits */
#define KIND_BITMAP    0
#define KIND_COLLISION 1
#define KIND_PAIR      2

struct hamt_node {
	atomic_uint refs; /* first: test_nomem reads it */
	uint8_t kind : 2;
	uint8_t chain : 4;   /* borrow copies between this node and a full one */
	uint8_t dropped : 2; /* borrowed small leaves this node let go of */
	uint8_t cap;         /* slots allocated (bitmap nodes: <= 32); pair: index of slot 0 */
	uint16_t len;        /* slots used; pair: index of slot 1 */
	uint32_t bitmap;
	uint32_t owned; /* bitmap nodes: the bits of the slots it holds references to */
	uint64_t edit;
	/* cap slots (leaf pointers are tagged with bit 0), then, in a node that
	 * borrows (chain > 0), its base: a reference to the node whose other
	 * slots it borrows (node_base). A node that does not borrow, most of
	 * them, spends no word on it. */
	void *slot[];
};

_Static_assert(HAMT_BORROW_CHAIN < 16 && HAMT_BORROW_DROPS < 4, "hamt_node bit fields");
_Static_assert(sizeof(hamt_node) == 24, "node_alloc: an even number of words fills a chunk");

/* PAIR NODES
 *   Two keys that share a slot of a node are pushed one level down into a
 *   node of their own (node_pair). In a small map that is most of its
 *   nodes (16 random keys: a root of ~12 slots and ~3.6 such nodes), and a
 *   bitmap node of 2 slots is 40 bytes, a 48-byte malloc chunk. A pair
 *   node is the first 8 bytes of the header (refs, the kind byte with
 *   chain and dropped 0, `cap` holding the level index of its first slot
 *   and `len` that of its second, the smaller first) and then its two
 *   slots (pair_slots): 24 bytes, a 32-byte chunk. It holds exactly two
 *   leaves and owns them, and it is never changed: a build that needs to
 *   change one replaces it with a bitmap node (node_make_editable: moved,
 *   when the build's parent holds its only reference, else a borrowing
 *   copy as for any published node). Readers see it through node_len,
 *   node_slots and node_bitmap, or the kind tests of hamt_find and
 *   find_under. A pair node is never a root. */
#define PAIR_SIZE (8 + 2 * sizeof(void *))

static inline void **pair_slots(const hamt_node *n)
{
	return (void **)((char *)n + 8);
}

static inline unsigned node_len(const hamt_node *n)
{
	return n->kind == KIND_PAIR ? 2 : n->len;
}

static inline void *const *node_slots(const hamt_node *n)
{
	return n->kind == KIND_PAIR ? pair_slots(n) : n->slot;
}

static inline uint32_t node_bitmap(const hamt_node *n)
{
	return n->kind == KIND_PAIR ? (1u << n->cap) | (1u << n->len) : n->bitmap;
}

/* Collision nodes may exceed 32 leaves; their cap/len use the same fields, so
 * they are limited to 65535 keys of one identical 64-bit hash, which a keyed
 * hash makes unreachable in practice (hamt_set reports CTX_NOMEM past it). */
#define COLLISION_MAX 65535

static uint64_t hash_seed;
static _Atomic(hamt_hash_hook) hash_hook; /* hamt_test_hash_hook */
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
	uint64_t h = XXH3_64bits_withSeed(key, klen, hash_seed);
	hamt_hash_hook hook = atomic_load_explicit(&hash_hook, memory_order_relaxed);
	return __builtin_expect(hook != NULL, 0) ? hook(key, klen, h) : h;
}

void hamt_test_hash_hook(hamt_hash_hook hook)
{
	atomic_store_explicit(&hash_hook, hook, memory_order_relaxed);
}

/* The content hash of a value whose key hashed (unseeded) to key_hash. */
static inline uint64_t content_hash_keyed(uint64_t key_hash, const void *val, size_t vlen)
{
	uint64_t h = XXH3_64bits_withSeed(val, vlen, key_hash);
	return h ? h : 1;
}

uint64_t hamt_content_hash(const void *key, size_t klen, const void *val, size_t vlen)
{
	/* Fixed seeds: the checksum is stored on disk and compared later. */
	return content_hash_keyed(XXH3_64bits(key, klen), val, vlen);
}

uint64_t hamt_leaf_sum(const hamt_leaf *l)
{
	size_t klen = hamt_leaf_klen(l);
	const unsigned char *key = hamt_leaf_key(l);
	return hamt_content_hash(key, klen, key + klen, l->vlen);
}

/* The change of a map's checksum when leaf replaces old, a leaf of the same
 * key: hamt_leaf_sum(leaf) - hamt_leaf_sum(old), with the key hashed once
 * (an overwrite hashed it twice, a quarter of the checksum's hashing of a
 * small pair: r19-update1t). */
static uint64_t leaf_sum_change(const hamt_leaf *old, const hamt_leaf *leaf)
{
	size_t klen = hamt_leaf_klen(leaf);
	const unsigned char *key = hamt_leaf_key(leaf), *old_key = hamt_leaf_key(old);
	uint64_t key_hash = XXH3_64bits(key, klen);
	return content_hash_keyed(key_hash, key + klen, leaf->vlen) -
	       content_hash_keyed(key_hash, old_key + klen, old->vlen);
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
	size_t extra = klen >= HAMT_KLEN_LONG ? sizeof(uint32_t) : 0;
	hamt_leaf *l = pool_alloc(HAMT_LEAF_HEADER + extra + klen + vlen);
	if (!l)
		return NULL;
	atomic_init(&l->refs, 1);
	l->vlen = (uint32_t)vlen;
	l->time_us = 0;
	if (extra) {
		uint32_t k = (uint32_t)klen;
		l->klen16 = HAMT_KLEN_LONG;
		memcpy(l->data, &k, sizeof(k));
	} else {
		l->klen16 = (uint16_t)klen;
	}
	memcpy(l->data + extra, key, klen);
	if (vlen)
		memcpy(l->data + extra + klen, val, vlen);
	return l;
}

static void leaf_retain(hamt_leaf *l)
{
	atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void hamt_leaf_release(hamt_leaf *l)
{
	if (l && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
		pool_free(l);
}

/* Whether l holds key. No hash to compare first: the trie position already
 * agrees, and most keys are short (hamt_bytes_equal inline). */
static inline bool leaf_matches(const hamt_leaf *l, const void *key, size_t klen)
{
	if (klen < HAMT_KLEN_LONG)
		return l->klen16 == klen && hamt_bytes_equal(l->data, key, klen);
	return hamt_leaf_klen(l) == klen && memcmp(hamt_leaf_key(l), key, klen) == 0;
}

/* Whether a and b hold the same key. */
static inline bool leaf_same_key(const hamt_leaf *a, const hamt_leaf *b)
{
	return leaf_matches(a, hamt_leaf_key(b), hamt_leaf_klen(b));
}

/* Key and value bytes of a leaf (what struct hamt's bytes counts). */
static inline size_t leaf_bytes(const hamt_leaf *l)
{
	return hamt_leaf_klen(l) + l->vlen;
}

/* Same key (known) and same value. */
static bool leaf_same(const hamt_leaf *a, const hamt_leaf *b)
{
	return a == b ||
	       (a->vlen == b->vlen && memcmp(hamt_leaf_value(a), hamt_leaf_value(b), a->vlen) == 0);
}

/* ---- nodes ---------------------------------------------------------------- */

/* Room for at least cap slots, and for a base if with_base. The 24-byte
 * header and an even number of 8-byte words after it fill a malloc chunk
 * (glibc: an 8-byte header, 16-byte steps), so the capacity is rounded up
 * to make the words even: the extra slot is free (a pair node is 48 bytes). */
static hamt_node *node_alloc(uint8_t kind, unsigned cap, uint64_t edit, bool with_base)
{
	if (((cap + with_base) & 1) && (kind == KIND_BITMAP ? cap < 32 : cap < COLLISION_MAX))
		cap++;
	hamt_node *n = pool_alloc(sizeof(*n) + (cap + with_base) * sizeof(void *));
	if (!n)
		return NULL;
	atomic_init(&n->refs, 1);
	n->kind = kind;
	n->chain = 0;
	n->dropped = 0;
	n->cap = (uint8_t)(kind == KIND_BITMAP ? cap : 0);
	n->len = 0;
	n->bitmap = kind == KIND_BITMAP ? 0 : cap; /* collision: bitmap = capacity */
	n->owned = 0;
	n->edit = edit;
	return n;
}

/* The node n borrows from, or NULL (bitmap nodes only borrow). */
static hamt_node *node_base(const hamt_node *n)
{
	return n->chain ? (hamt_node *)n->slot[n->cap] : NULL;
}

static unsigned node_cap(const hamt_node *n)
{
	return n->kind == KIND_BITMAP ? n->cap : n->bitmap;
}

/* The bytes node_alloc (or node_pair) asked for n, for pool_free_sized: a
 * base's word counts only while n borrows, which is never more than was
 * asked. */
static size_t node_size(const hamt_node *n)
{
	if (n->kind == KIND_PAIR)
		return PAIR_SIZE;
	return sizeof(*n) + (node_cap(n) + (n->chain != 0)) * sizeof(void *);
}

/* Whether n holds a reference of its own to the slot of bit (a collision
 * node owns all of its slots). */
static inline bool node_owns(const hamt_node *n, uint32_t bit)
{
	return n->kind != KIND_BITMAP || (n->owned & bit);
}

static void node_release(hamt_node *n);

static void node_retain(hamt_node *n)
{
	atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
}

static void slot_retain(void *s)
{
	if (slot_is_leaf(s))
		leaf_retain(slot_leaf(s));
	else
		node_retain(slot_node(s));
}

static void slot_release(void *s)
{
	if (slot_is_leaf(s))
		hamt_leaf_release(slot_leaf(s));
	else
		node_release(slot_node(s));
}

/* Release the slots n owns. */
static void node_release_slots(hamt_node *n)
{
	if (n->kind == KIND_PAIR) {
		slot_release(pair_slots(n)[0]);
		slot_release(pair_slots(n)[1]);
		return;
	}
	if (n->kind == KIND_COLLISION) {
		for (unsigned i = 0; i < n->len; i++)
			slot_release(n->slot[i]);
		return;
	}
	uint32_t bm = n->bitmap;
	for (unsigned pos = 0; bm; pos++, bm &= bm - 1)
		if (n->owned & (bm & -bm))
			slot_release(n->slot[pos]);
}

/* Start loading, for writing, what n's owned slots point to and its base:
 * node_release is about to decrement each of their counts. A node freed
 * from a version cut from history is cold, and so are the targets it
 * owns (the leaf its commit wrote, a node an earlier copy replaced) and
 * the previous copy it borrowed from: one after another they were a
 * chain of misses (base -> its leaf -> its base ...), half of a cut's
 * time (round 7's profile: the two decrements were 44% and 45% of
 * node_release's samples). Loaded together, their misses overlap. */
static void node_prefetch_owned(const hamt_node *n, const hamt_node *base)
{
	if (base)
		__builtin_prefetch(base, 1);
	void *const *slots = node_slots(n);
	if (n->kind != KIND_BITMAP) {
		for (unsigned i = 0, len = node_len(n); i < len; i++)
			__builtin_prefetch(slot_leaf(slots[i]), 1);
		return;
	}
	uint32_t bm = n->bitmap;
	for (unsigned pos = 0; bm; pos++, bm &= bm - 1)
		if (n->owned & (bm & -bm))
			__builtin_prefetch(slot_leaf(slots[pos]), 1);
}

static void node_release(hamt_node *n)
{
	/* A loop along the base chain (at most HAMT_BORROW_CHAIN long); recursion
	 * only down the trie. */
	while (n && atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) == 1) {
		hamt_node *base = node_base(n);
		node_prefetch_owned(n, base);
		node_release_slots(n);
		pool_free_sized(n, node_size(n));
		n = base;
	}
}

/* A copy of n owned by edit, with room for `extra` more slots; every slot of
 * the copy holds a new reference (a full copy: no base). */
static hamt_node *node_clone(const hamt_node *n, unsigned extra, uint64_t edit)
{
	uint8_t kind = n->kind == KIND_COLLISION ? KIND_COLLISION : KIND_BITMAP;
	unsigned len = node_len(n), cap = len + extra;
	if (kind == KIND_BITMAP && cap > 32)
		cap = 32;
	hamt_node *c = node_alloc(kind, cap, edit, false);
	if (!c)
		return NULL;
	c->len = (uint16_t)len;
	if (kind == KIND_BITMAP)
		c->bitmap = c->owned = node_bitmap(n);
	void *const *slots = node_slots(n);
	/* Every child's count is written: load them together (see
	 * node_prefetch_owned), not one miss after another. */
	for (unsigned i = 0; i < len; i++)
		__builtin_prefetch(slot_leaf(slots[i]), 1);
	for (unsigned i = 0; i < len; i++) {
		c->slot[i] = slots[i];
		slot_retain(c->slot[i]);
	}
	return c;
}

/* A copy of bitmap node n owned by edit that borrows every slot from n: no
 * child is touched. The caller gives the copy its reference to n. */
static hamt_node *node_borrow(hamt_node *n, unsigned extra, uint64_t edit)
{
	unsigned len = node_len(n), cap = len + extra;
	if (cap > 32)
		cap = 32;
	hamt_node *c = node_alloc(KIND_BITMAP, cap, edit, true);
	if (!c)
		return NULL;
	c->len = (uint16_t)len;
	c->bitmap = node_bitmap(n);
	c->chain = (uint8_t)(n->chain + 1);
	c->slot[c->cap] = n;
	memcpy(c->slot, node_slots(n), len * sizeof(void *));
	return c;
}

static bool can_borrow(const hamt_node *n)
{
	return n->kind != KIND_COLLISION && n->chain < HAMT_BORROW_CHAIN;
}

/* Make the build's node n own all its slots: a reference to each borrowed
 * one, and none to its base any more. */
static void node_unborrow(hamt_node *n)
{
	hamt_node *base = node_base(n);
	if (!base)
		return;
	uint32_t bm = n->bitmap;
	for (unsigned pos = 0; bm; pos++, bm &= bm - 1)
		if (!(n->owned & (bm & -bm)))
			slot_retain(n->slot[pos]);
	n->owned = n->bitmap;
	node_release(base);
	n->chain = 0; /* no base any more (its word stays unused) */
	n->dropped = 0;
}

/* The build's nodes from the root down to where a change is being made. */
typedef struct path {
	hamt_node *node[HAMT_MAX_DEPTH + 1];
	unsigned depth;
} path;

static hamt_node *path_top(const path *p)
{
	return p->depth ? p->node[p->depth - 1] : NULL;
}

/* Unborrow every node of the path, not only the one that must drop a slot:
 * each of them dropped its old version while that became the base of its
 * copy below (allowed, (a)), and that copy stops holding it. */
static void path_unborrow(path *p)
{
	for (unsigned i = 0; i < p->depth; i++)
		node_unborrow(p->node[i]);
}

/* Move the build's node *np to an allocation with room for `extra` more
 * slots (references, base and ownership move with it). */
static ctx_status node_grow(void **np, unsigned extra)
{
	/* Two slots at a time up to 16 (node_alloc rounds to an even count:
	 * each step is one 16-byte malloc size), then by a quarter: a map
	 * built by one transaction keeps at most the slack of its last
	 * growth (a copy is made to measure). A root of 12 keys takes 128
	 * bytes, not the 160 of 16 slots (docs/benchmarks.md, "Round 4:
	 * memory per key"). */
	hamt_node *n = *np;
	unsigned step = n->len < 16 ? 2 : n->len / 4;
	unsigned cap = n->len + (step > extra ? step : extra);
	if (n->kind == KIND_BITMAP && cap > 32)
		cap = 32;
	hamt_node *c = node_alloc(n->kind, cap, n->edit, n->chain != 0);
	if (!c)
		return CTX_NOMEM;
	c->len = n->len;
	c->chain = n->chain;
	c->dropped = n->dropped;
	if (n->kind == KIND_BITMAP) {
		c->bitmap = n->bitmap;
		c->owned = n->owned;
	}
	if (c->chain)
		c->slot[c->cap] = node_base(n);
	memcpy(c->slot, n->slot, n->len * sizeof(void *));
	pool_free(n);
	*np = c;
	return CTX_OK;
}

static ctx_status node_copy_editable(path *p, uint32_t bit, void **np, unsigned extra,
                                     uint64_t edit);

/* node_make_editable of a pair node (never changed in place): when the
 * build's parent holds its only reference (the build made it, mostly), the
 * pair moves into a bitmap node with its references; otherwise it is
 * copied like any published node. Only this build reaches a node whose
 * single reference its own node owns: every other node that points to it
 * owns it too, or borrows it from a base that does. */
static ctx_status pair_make_editable(path *p, uint32_t bit, void **np, unsigned extra,
                                     uint64_t edit)
{
	hamt_node *n = *np, *parent = path_top(p);
	if (!node_owns(parent, bit) || atomic_load_explicit(&n->refs, memory_order_acquire) != 1)
		return node_copy_editable(p, bit, np, extra, edit);
	hamt_node *c = node_alloc(KIND_BITMAP, 2 + extra, edit, false);
	if (!c)
		return CTX_NOMEM;
	c->len = 2;
	c->bitmap = c->owned = node_bitmap(n);
	memcpy(c->slot, pair_slots(n), 2 * sizeof(void *));
	pool_free(n);
	*np = c;
	p->node[p->depth++] = c;
	return CTX_OK;
}

/* Make *np modifiable by edit, with room for `extra` more slots, and push it
 * on the path. *np is the slot of bit in the path's last node, or the map's
 * root (empty path: the map owns it). Keep it if the build owns it (moved if
 * it has no room); otherwise replace it by a copy that borrows from it (or a
 * full copy, past HAMT_BORROW_CHAIN) and give the parent a reference of its
 * own to the copy. */
static ctx_status node_make_editable(path *p, uint32_t bit, void **np, unsigned extra,
                                     uint64_t edit)
{
	ctx_status st = CTX_OK;
	hamt_node *n = *np;
	if (n->kind == KIND_PAIR)
		return pair_make_editable(p, bit, np, extra, edit);
	if (n->edit == edit) {
		if (n->len + extra > node_cap(n))
			st = node_grow(np, extra);
		if (st == CTX_OK)
			p->node[p->depth++] = *np;
		return st;
	}
	return node_copy_editable(p, bit, np, extra, edit);
}

/* node_make_editable of a node the build does not own: a borrowing copy,
 * or a full one past HAMT_BORROW_CHAIN. */
static ctx_status node_copy_editable(path *p, uint32_t bit, void **np, unsigned extra,
                                     uint64_t edit)
{
	hamt_node *n = *np, *parent = path_top(p);
	bool owned = !parent || node_owns(parent, bit);
	bool borrow = can_borrow(n);
	if (!owned && !borrow) {
		/* A full copy drops n without making it a base: parent must own
		 * its reference to release it (see the head comment). */
		path_unborrow(p);
		owned = true;
	}
	hamt_node *c = borrow ? node_borrow(n, extra, edit) : node_clone(n, extra, edit);
	if (!c)
		return CTX_NOMEM;
	if (borrow && !owned)
		node_retain(n); /* the copy's base reference */
	else if (!borrow)
		node_release(n); /* parent's reference, replaced */
	/* else parent's reference to n moves to the copy's base */
	*np = c;
	if (parent && parent->kind == KIND_BITMAP)
		parent->owned |= bit;
	p->node[p->depth++] = c;
	return CTX_OK;
}

/* The build's node n, last on the path, is about to stop pointing to its
 * slot at pos (bit): release it if n owns it. A borrowed one stays with n's
 * base; n may leave there only HAMT_BORROW_DROPS small leaves, else the path
 * first owns all its slots. */
static void slot_forget(path *p, hamt_node *n, unsigned pos, uint32_t bit)
{
	void *s = n->slot[pos];
	if (!node_owns(n, bit)) {
		const hamt_leaf *l = slot_leaf(s);
		if (slot_is_leaf(s) && leaf_bytes(l) <= HAMT_BORROW_SMALL &&
		    n->dropped < HAMT_BORROW_DROPS) {
			n->dropped++;
			return;
		}
		path_unborrow(p);
	}
	slot_release(s);
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
 * in) of hashes ha and hb, nesting deeper while their hash bits agree. */
static hamt_node *node_pair(void *a, uint64_t ha, void *b, uint64_t hb, unsigned level,
                            uint64_t edit)
{
	if (level > LAST_LEVEL) {
		hamt_node *c = node_alloc(KIND_COLLISION, 2, edit, false);
		if (!c)
			return NULL;
		c->slot[0] = a;
		c->slot[1] = b;
		c->len = 2;
		return c;
	}
	unsigned ia = level_index(ha, level), ib = level_index(hb, level);
	if (ia != ib) {
		hamt_node *n = pool_alloc(PAIR_SIZE);
		if (!n)
			return NULL;
		atomic_init(&n->refs, 1);
		n->kind = KIND_PAIR;
		n->chain = 0;
		n->dropped = 0;
		n->cap = (uint8_t)(ia < ib ? ia : ib);
		n->len = (uint16_t)(ia < ib ? ib : ia);
		pair_slots(n)[0] = ia < ib ? a : b;
		pair_slots(n)[1] = ia < ib ? b : a;
		return n;
	}
	hamt_node *n = node_alloc(KIND_BITMAP, 2, edit, false);
	if (!n)
		return NULL;
	hamt_node *child = node_pair(a, ha, b, hb, level + 1, edit);
	if (!child) {
		pool_free(n);
		return NULL;
	}
	n->bitmap = n->owned = 1u << ia;
	n->slot[0] = child;
	n->len = 1;
	return n;
}

/* ---- lookup --------------------------------------------------------------- */

/* Start loading every cache line of a leaf of up to 128 bytes (a 6-byte key
 * and a 64-byte value is 88) wherever it starts, with the line of its header
 * (loaded by the key compare): the caller copies the value next. A leaf is
 * 16-byte aligned, so one that starts 48 bytes into a line spans three:
 * l + 64 is the second and l + 127 the third (for other starts it is the
 * second again, or one line past a short leaf). */
static inline void leaf_prefetch(const hamt_leaf *l)
{
	__builtin_prefetch((const char *)l + 64);
	__builtin_prefetch((const char *)l + 127);
}

const hamt_leaf *hamt_find(const hamt *m, uint64_t hash, const void *key, size_t klen)
{
	const hamt_node *n = m->root;
	for (unsigned level = 0; n; level++) {
		const void *s;
		/* The slot array of a node wider than 4 slots starts in the next
		 * cache lines: load them with the header, not after it. */
		__builtin_prefetch((const char *)n + 64);
		__builtin_prefetch((const char *)n + 128);
		if (n->kind != KIND_BITMAP) {
			if (n->kind == KIND_PAIR) {
				unsigned i = level_index(hash, level);
				if (i != n->cap && i != n->len)
					return NULL;
				const hamt_leaf *l = slot_leaf(pair_slots(n)[i != n->cap]);
				leaf_prefetch(l);
				return leaf_matches(l, key, klen) ? l : NULL;
			}
			for (unsigned i = 0; i < n->len; i++) {
				const hamt_leaf *l = slot_leaf(n->slot[i]);
				if (leaf_matches(l, key, klen))
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
			leaf_prefetch(l);
			return leaf_matches(l, key, klen) ? l : NULL;
		}
		n = slot_node(s);
	}
	return NULL;
}

const void *hamt_prefetch_step(const void *node, uint64_t hash, unsigned level)
{
	const hamt_node *n = node;
	if (!n)
		return NULL;
	if (n->kind != KIND_BITMAP) {
		unsigned i = level_index(hash, level);
		if (n->kind == KIND_PAIR && (i == n->cap || i == n->len))
			__builtin_prefetch(slot_leaf(pair_slots(n)[i != n->cap]));
		return NULL;
	}
	uint32_t bit = 1u << level_index(hash, level);
	if (!(n->bitmap & bit))
		return NULL;
	const void *s = n->slot[bit_pos(n->bitmap, bit)];
	if (slot_is_leaf(s)) {
		__builtin_prefetch(slot_leaf(s));
		return NULL;
	}
	const char *c = (const char *)slot_node(s);
	__builtin_prefetch(c);
	__builtin_prefetch(c + 64);
	__builtin_prefetch(c + 128);
	return c;
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

/* Bytes of the leaf replaced by a set (-1 if the key was new), and the
 * change of the map's checksum a replacement makes (leaf_sum_change). */
typedef struct set_result {
	long long replaced_bytes;
	uint64_t sum_change;
	bool same; /* the replaced leaf held the same value */
} set_result;

/* set_in and del_in work on *np, the slot of bit pbit in the last node of
 * the path (empty: the map's root). */
static ctx_status set_collision(path *p, uint32_t pbit, void **np, hamt_leaf *leaf, uint64_t edit,
                                set_result *r)
{
	hamt_node *n = *np;
	for (unsigned i = 0; i < n->len; i++) {
		hamt_leaf *old = slot_leaf(n->slot[i]);
		if (leaf_same_key(old, leaf)) {
			if (node_make_editable(p, pbit, np, 0, edit) != CTX_OK)
				return CTX_NOMEM;
			r->replaced_bytes = (long long)leaf_bytes(old);
			r->same = leaf_same(old, leaf);
			r->sum_change = r->same ? 0 : leaf_sum_change(old, leaf);
			hamt_node *e = *np;
			slot_release(e->slot[i]);
			e->slot[i] = leaf_slot(leaf);
			return CTX_OK;
		}
	}
	if (n->len >= COLLISION_MAX || node_make_editable(p, pbit, np, 1, edit) != CTX_OK)
		return CTX_NOMEM;
	hamt_node *e = *np;
	node_insert_slot(e, e->len, leaf_slot(leaf));
	return CTX_OK;
}

static ctx_status set_in(path *p, uint32_t pbit, void **np, unsigned level, hamt_leaf *leaf,
                         uint64_t hash, uint64_t edit, set_result *r)
{
	hamt_node *n = *np;
	if (n->kind == KIND_COLLISION)
		return set_collision(p, pbit, np, leaf, edit, r);

	uint32_t bit = 1u << level_index(hash, level), bitmap = node_bitmap(n);
	unsigned pos = bit_pos(bitmap, bit);
	bool present = bitmap & bit;
	if (node_make_editable(p, pbit, np, present ? 0 : 1, edit) != CTX_OK)
		return CTX_NOMEM;
	n = *np;

	if (!present) {
		node_insert_slot(n, pos, leaf_slot(leaf));
		n->bitmap |= bit;
		n->owned |= bit;
		return CTX_OK;
	}

	void *s = n->slot[pos];
	if (!slot_is_leaf(s))
		return set_in(p, bit, &n->slot[pos], level + 1, leaf, hash, edit, r);

	hamt_leaf *old = slot_leaf(s);
	if (leaf_same_key(old, leaf)) {
		r->replaced_bytes = (long long)leaf_bytes(old);
		r->same = leaf_same(old, leaf);
		r->sum_change = r->same ? 0 : leaf_sum_change(old, leaf);
		slot_forget(p, n, pos, bit);
		n->slot[pos] = leaf_slot(leaf);
		n->owned |= bit;
		return CTX_OK;
	}

	/* Two different keys meet in this slot: push both one level down. The
	 * pair takes n's reference to old, or a new one if n borrows it (old
	 * stays alive in the pair: nothing to account for). old's position is
	 * recomputed: leaves do not store it. */
	bool owned = node_owns(n, bit);
	if (!owned)
		leaf_retain(old);
	hamt_node *pair = node_pair(s, hamt_leaf_hash(old), leaf_slot(leaf), hash, level + 1, edit);
	if (!pair) {
		if (!owned)
			hamt_leaf_release(old);
		return CTX_NOMEM;
	}
	n->slot[pos] = pair;
	n->owned |= bit;
	return CTX_OK;
}

ctx_status hamt_set(hamt *m, hamt_leaf *leaf, uint64_t edit)
{
	return hamt_put(m, leaf, edit, NULL);
}

ctx_status hamt_put(hamt *m, hamt_leaf *leaf, uint64_t edit, bool *changed)
{
	return hamt_put_hashed(m, leaf, hamt_leaf_hash(leaf), edit, changed);
}

/* ---- delete --------------------------------------------------------------- */

/* Remove the key (known to be present) below *np. Afterwards *np may be empty
 * (len 0) or hold a single leaf; the caller collapses it. */
static ctx_status del_in(path *p, uint32_t pbit, void **np, unsigned level, uint64_t hash,
                         const void *key, size_t klen, uint64_t edit, size_t *freed, uint64_t *sum)
{
	hamt_node *n = *np;
	unsigned pos;
	uint32_t bit = 0;
	if (n->kind == KIND_COLLISION) {
		for (pos = 0; pos < n->len; pos++)
			if (leaf_matches(slot_leaf(n->slot[pos]), key, klen))
				break;
	} else {
		bit = 1u << level_index(hash, level);
		pos = bit_pos(node_bitmap(n), bit);
	}
	if (node_make_editable(p, pbit, np, 0, edit) != CTX_OK)
		return CTX_NOMEM;
	n = *np;
	void *s = n->slot[pos];

	if (slot_is_leaf(s)) {
		*freed = leaf_bytes(slot_leaf(s));
		*sum = hamt_leaf_sum(slot_leaf(s));
		slot_forget(p, n, pos, bit);
		node_remove_slot(n, pos);
		if (n->kind == KIND_BITMAP) {
			n->bitmap &= ~bit;
			n->owned &= ~bit;
		}
		return CTX_OK;
	}

	ctx_status st = del_in(p, bit, &n->slot[pos], level + 1, hash, key, klen, edit, freed, sum);
	if (st != CTX_OK)
		return st;
	hamt_node *child = n->slot[pos]; /* the build's now, and n owns it */
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
	path p = {.depth = 0};
	ctx_status st = del_in(&p, 0, &root, 0, hash, key, klen, edit, &freed, &sum);
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

#define PREFETCH_AHEAD 6

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
	void *const *slots = node_slots(n);
	for (unsigned i = 0, len = node_len(n); i < len && i < PREFETCH_AHEAD; i++)
		prefetch_slot(slots[i]);
}

void hamt_prefetch_top(const hamt *m)
{
	if (m->root)
		prefetch_first(m->root);
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
		unsigned len = node_len(n);
		if (c->pos[d] >= len) {
			c->depth--;
			continue;
		}
		unsigned pos = c->pos[d]++;
		void *const *slots = node_slots(n);
		/* Reading a whole map is a walk over leaves scattered in memory:
		 * fetch a few ahead so that their cache misses overlap. */
		if (pos + PREFETCH_AHEAD < len)
			prefetch_slot(slots[pos + PREFETCH_AHEAD]);
		void *s = slots[pos];
		if (slot_is_leaf(s))
			return slot_leaf(s);
		c->node[c->depth] = slot_node(s);
		c->pos[c->depth] = 0;
		c->depth++;
		prefetch_first(slot_node(s));
	}
	return NULL;
}

size_t hamt_cursor_fill(hamt_cursor *c, const hamt_leaf **out, size_t max)
{
	/* One node at a time: its slots in a tight loop, the node's kind and
	 * length read once. A pair node below (two leaves, most of a small
	 * map's nodes) is taken in place, without a push and a pop, when both
	 * its leaves fit: its line was prefetched when its parent was entered,
	 * its two leaves are prefetched here, as entering it would. */
	size_t k = 0;
	while (k < max && c->depth > 0) {
		int d = c->depth - 1;
		const hamt_node *n = c->node[d];
		unsigned pos = c->pos[d], len = node_len(n);
		void *const *slots = node_slots(n);
		/* Entering n: start loading all its targets at once. */
		if (pos == 0)
			for (unsigned i = 0; i < len; i++)
				prefetch_slot(slots[i]);
		const hamt_node *down = NULL;
		while (pos < len && k < max) {
			void *s = slots[pos++];
			if (slot_is_leaf(s)) {
				out[k++] = slot_leaf(s);
				continue;
			}
			const hamt_node *x = slot_node(s);
			if (x->kind == KIND_PAIR && max - k >= 2) {
				void *const *ps = pair_slots(x);
				prefetch_slot(ps[0]);
				prefetch_slot(ps[1]);
				out[k++] = slot_leaf(ps[0]);
				out[k++] = slot_leaf(ps[1]);
				continue;
			}
			down = x;
			break;
		}
		c->pos[d] = pos;
		if (down) {
			c->node[c->depth] = down;
			c->pos[c->depth] = 0;
			c->depth++;
		} else if (pos >= len) {
			c->depth--;
		}
	}
	return k;
}

static void walk_nodes(const hamt_node *n, void (*fn)(const void *node, void *arg), void *arg)
{
	fn(n, arg);
	void *const *slots = node_slots(n);
	for (unsigned i = 0, len = node_len(n); i < len; i++)
		if (!slot_is_leaf(slots[i]))
			walk_nodes(slot_node(slots[i]), fn, arg);
}

void hamt_test_walk_nodes(const hamt *m, void (*fn)(const void *node, void *arg), void *arg)
{
	if (m->root)
		walk_nodes(m->root, fn, arg);
}

/* ---- diff ----------------------------------------------------------------- */

/* Every leaf under slot s, reported as removed (added = false) or added. */
static ctx_status diff_all(const void *s, bool added, hamt_diff_fn fn, void *arg)
{
	if (slot_is_leaf(s))
		return added ? fn(arg, NULL, slot_leaf(s)) : fn(arg, slot_leaf(s), NULL);
	const hamt_node *n = slot_node(s);
	void *const *slots = node_slots(n);
	for (unsigned i = 0, len = node_len(n); i < len; i++) {
		ctx_status st = diff_all(slots[i], added, fn, arg);
		if (st != CTX_OK)
			return st;
	}
	return CTX_OK;
}

/* The leaf with l's key in the subtree s whose root is at `level`, or NULL. */
static const hamt_leaf *find_under(const void *s, unsigned level, const hamt_leaf *l)
{
	uint64_t hash = hamt_leaf_hash(l);
	while (!slot_is_leaf(s)) {
		const hamt_node *n = slot_node(s);
		if (n->kind == KIND_COLLISION) {
			for (unsigned i = 0; i < n->len; i++)
				if (leaf_same_key(slot_leaf(n->slot[i]), l))
					return slot_leaf(n->slot[i]);
			return NULL;
		}
		uint32_t bit = 1u << level_index(hash, level), bitmap = node_bitmap(n);
		if (!(bitmap & bit))
			return NULL;
		s = node_slots(n)[bit_pos(bitmap, bit)];
		level++;
	}
	const hamt_leaf *x = slot_leaf(s);
	return leaf_same_key(x, l) ? x : NULL;
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
		if (leaf_same_key(x, y))
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
				if (leaf_same_key(slot_leaf(y->slot[j]), l))
					o = slot_leaf(y->slot[j]);
			ctx_status st = !o                ? fn(arg, l, NULL)
			                : leaf_same(l, o) ? CTX_OK
			                                  : fn(arg, l, o);
			if (st != CTX_OK)
				return st;
		}
		for (unsigned j = 0; j < y->len; j++) {
			const hamt_leaf *l = slot_leaf(y->slot[j]);
			bool found = false;
			for (unsigned i = 0; i < x->len && !found; i++)
				found = leaf_same_key(slot_leaf(x->slot[i]), l);
			if (!found) {
				ctx_status st = fn(arg, NULL, l);
				if (st != CTX_OK)
					return st;
			}
		}
		return CTX_OK;
	}
	uint32_t xb = node_bitmap(x), yb = node_bitmap(y), all = xb | yb;
	void *const *xs = node_slots(x), *const *ys = node_slots(y);
	while (all) {
		uint32_t bit = all & -all;
		all &= all - 1;
		const void *sa = xb & bit ? xs[bit_pos(xb, bit)] : NULL;
		const void *sb = yb & bit ? ys[bit_pos(yb, bit)] : NULL;
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

/* ---- replay: puts whose paths were loaded ahead --------------------------- */

/* Keys walked side by side by hamt_prefetch_paths: enough misses in flight
 * to cover the memory's latency, few enough that their lines stay cached
 * until the puts that follow use them. */
#define PREFETCH_GROUP 32

/* Start loading what the walk to hash[i] reads at one level, for every key of
 * a group in turn: a round reads a node's bitmap (loaded by the round before)
 * and starts loading its slot, the next reads the slot and starts loading
 * the child, or the leaf's lines (its key, and the value that a put of the
 * same key compares and hashes: an unaligned chunk of up to 128 bytes). So
 * the misses of one level of all the group's keys overlap, where a put after
 * another pays them one by one.
 * Only reads, but it follows the nodes' pointers: the map must not change
 * while it walks (after it, what it loaded is only a hint). */
static void prefetch_group(const hamt_node *root, const uint64_t *hash, size_t g)
{
	const hamt_node *node[PREFETCH_GROUP];
	void *const *slot[PREFETCH_GROUP];
	size_t live = g;
	for (size_t i = 0; i < g; i++)
		node[i] = root;
	for (unsigned level = 0; live && level <= LAST_LEVEL; level++) {
		for (size_t i = 0; i < g; i++) {
			const hamt_node *n = node[i];
			if (!n)
				continue;
			uint32_t bit = 1u << level_index(hash[i], level);
			uint32_t bitmap = n->kind == KIND_COLLISION ? 0 : node_bitmap(n);
			if (!(bitmap & bit)) {
				node[i] = NULL;
				live--;
				continue;
			}
			slot[i] = &node_slots(n)[bit_pos(bitmap, bit)];
			__builtin_prefetch(slot[i]);
		}
		for (size_t i = 0; i < g; i++) {
			if (!node[i])
				continue;
			const void *s = *slot[i];
			if (slot_is_leaf(s)) {
				const char *l = (const char *)slot_leaf(s);
				__builtin_prefetch(l);
				__builtin_prefetch(l + 64);
				__builtin_prefetch(l + 112); /* a 128-byte chunk's third line */
				node[i] = NULL;
				live--;
				continue;
			}
			node[i] = slot_node(s);
			__builtin_prefetch(node[i]);
		}
	}
}

void hamt_prefetch_paths(const hamt *m, const uint64_t *hash, size_t n)
{
	if (!m->root)
		return;
	for (size_t b = 0; b < n; b += PREFETCH_GROUP)
		prefetch_group(m->root, hash + b, n - b < PREFETCH_GROUP ? n - b : PREFETCH_GROUP);
}

ctx_status hamt_put_hashed(hamt *m, hamt_leaf *leaf, uint64_t hash, uint64_t edit, bool *changed)
{
	set_result r = {.replaced_bytes = -1};
	if (!m->root) {
		hamt_node *n = node_alloc(KIND_BITMAP, 4, edit, false);
		if (!n)
			return CTX_NOMEM;
		uint32_t bit = 1u << level_index(hash, 0);
		n->bitmap = n->owned = bit;
		n->slot[0] = leaf_slot(leaf);
		n->len = 1;
		m->root = n;
	} else {
		/* A NOMEM deep in the path may leave copies made above it in place;
		 * they hold the same data as before, so the map is unchanged. */
		void *root = m->root;
		path p = {.depth = 0};
		ctx_status st = set_in(&p, 0, &root, 0, leaf, hash, edit, &r);
		m->root = root;
		if (st != CTX_OK)
			return st;
	}
	if (r.replaced_bytes < 0)
		m->count++;
	else
		m->bytes -= (size_t)r.replaced_bytes;
	m->bytes += leaf_bytes(leaf);
	/* The same value again leaves the checksum as it was: no hashing. */
	if (!r.same)
		m->sum += r.replaced_bytes < 0 ? hamt_leaf_sum(leaf) : r.sum_change;
	if (changed)
		*changed = !r.same;
	return CTX_OK;
}
