/*
 * hamt.h - a persistent hash array mapped trie (private to libctx).
 *
 * A map from binary keys to binary values whose versions share structure: an
 * update copies the O(log32 n) nodes on the path to its key and shares every
 * other node with the version it started from. Versions are immutable once
 * published, so any number of threads may read one while another builds the
 * next. Nodes and leaves are reference counted (atomically); a node is freed
 * when the last version or node that holds it lets go. A copied node holds
 * its children through the node it was copied from (it borrows them, see
 * hamt.c), so a copy costs one reference, not one per child.
 *
 * Building a version: a writer takes its own reference to the base root, then
 * applies changes with hamt_set/hamt_del and one "edit" token that no other
 * build ever uses. A node created under the token belongs to that build alone
 * until the build is published, so the build changes it in place instead of
 * copying it again: a transaction of k changes costs O(k log n) and not
 * O(k log n) allocations per change.
 */
#ifndef CTX_HAMT_H
#define CTX_HAMT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ctx.h"

/* A leaf is one allocation of HAMT_LEAF_HEADER (18) bytes and then the key
 * and value: the 8-byte field first, then the 4-byte and 2-byte ones, so the
 * data starts at byte 18 with no padding, and the allocation is
 * offsetof(data) + klen + vlen (+ 4 for a long key), not sizeof (which rounds
 * up to 24): a 6-byte key and 64-byte value take 88 bytes, glibc's 96-byte
 * chunk.
 * A leaf keeps no hash of its own: not its content hash (hamt_leaf_sum
 * recomputes it from its bytes when a map needs it, see struct hamt), and not
 * its trie position (a lookup navigates by the hash of the key it looks for
 * and compares lengths and bytes at the leaf; the few places that need an
 * existing leaf's position, splitting a slot or a diff, recompute it with
 * hamt_leaf_hash). The position hash is keyed per process and never stored
 * on disk.
 * klen16 is the key's length when it is below HAMT_KLEN_LONG; a longer key
 * (ctx allows up to 16 MiB) sets it to HAMT_KLEN_LONG and stores its length
 * as a u32 at the start of data, before the key bytes. Use the accessors. */
typedef struct hamt_leaf {
	uint64_t time_us; /* commit time of the version that set it */
	atomic_uint refs;
	uint32_t vlen;
	uint16_t klen16;      /* key length, or HAMT_KLEN_LONG            */
	unsigned char data[]; /* [u32 klen if long] key bytes, value bytes */
} hamt_leaf;

#define HAMT_KLEN_LONG   0xFFFFu
#define HAMT_LEAF_HEADER offsetof(hamt_leaf, data)
_Static_assert(offsetof(hamt_leaf, data) == 18, "hamt_leaf: no padding before the key");

typedef struct hamt_node hamt_node;

/* A copy of a node shares its children by borrowing them from the node it
 * copies (hamt.c's head comment): at most HAMT_BORROW_CHAIN times in a row,
 * then the copy is a full one; a borrowing node may let go of at most
 * HAMT_BORROW_DROPS borrowed leaves of at most HAMT_BORROW_SMALL bytes of key
 * and value each (else it takes references to all its children first). So a
 * live node keeps alive at most HAMT_BORROW_CHAIN * HAMT_BORROW_DROPS leaves
 * that no map holds, all small. */
#define HAMT_BORROW_CHAIN 8
#define HAMT_BORROW_DROPS 2
#define HAMT_BORROW_SMALL 256

/* One map: its root (NULL when empty), key count, key+value bytes, and the
 * sum (mod 2^64) of its leaves' content hashes (hamt_leaf_sum): an
 * order-independent checksum of its content, kept up to date in O(1) per
 * change (the hash of the leaf that enters, and of the one that leaves,
 * computed from their bytes). */
typedef struct hamt {
	hamt_node *root;
	size_t count;
	size_t bytes;
	uint64_t sum;
} hamt;

/* A leaf's key length, key and value (see struct hamt_leaf). */
static inline size_t hamt_leaf_klen(const hamt_leaf *l)
{
	if (l->klen16 != HAMT_KLEN_LONG)
		return l->klen16;
	uint32_t k;
	memcpy(&k, l->data, sizeof(k));
	return k;
}
static inline const void *hamt_leaf_key(const hamt_leaf *l)
{
	return l->data + (l->klen16 == HAMT_KLEN_LONG ? sizeof(uint32_t) : 0);
}
static inline const void *hamt_leaf_value(const hamt_leaf *l)
{
	return (const unsigned char *)hamt_leaf_key(l) + hamt_leaf_klen(l);
}

/* Whether the n bytes at a and b are equal. Inline for up to 16 bytes (two
 * overlapping loads per side, no call): ids and keys are mostly short, and
 * every read compares one of each. */
static inline bool hamt_bytes_equal(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	if (n > 16)
		return memcmp(x, y, n) == 0;
	if (n >= 8) {
		uint64_t x0, x1, y0, y1;
		memcpy(&x0, x, 8);
		memcpy(&y0, y, 8);
		memcpy(&x1, x + n - 8, 8);
		memcpy(&y1, y + n - 8, 8);
		return ((x0 ^ y0) | (x1 ^ y1)) == 0;
	}
	if (n >= 4) {
		uint32_t x0, x1, y0, y1;
		memcpy(&x0, x, 4);
		memcpy(&y0, y, 4);
		memcpy(&x1, x + n - 4, 4);
		memcpy(&y1, y + n - 4, 4);
		return ((x0 ^ y0) | (x1 ^ y1)) == 0;
	}
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return false;
	return true;
}

/* The process-wide keyed hash of a key (seeded at first use). */
uint64_t hamt_hash(const void *key, size_t klen);

/* The trie position of a leaf: hamt_hash of its key, recomputed. */
static inline uint64_t hamt_leaf_hash(const hamt_leaf *l)
{
	return hamt_hash(hamt_leaf_key(l), hamt_leaf_klen(l));
}

/* Tests only: from now on hamt_hash returns hook(key, klen, its own hash)
 * (NULL restores it), to force keys into shared slots and collision nodes
 * now that leaves do not store a hash to overwrite. Change it only while no
 * map built under another hook is alive: a trie's shape depends on it. */
typedef uint64_t (*hamt_hash_hook)(const void *key, size_t klen, uint64_t hash);
void hamt_test_hash_hook(hamt_hash_hook hook);

/* Tests only: fn(node, arg) for every trie node of m (each once; leaves are
 * not nodes), parents before children. */
void hamt_test_walk_nodes(const hamt *m, void (*fn)(const void *node, void *arg), void *arg);

/* A new leaf with one reference, or NULL when out of memory. */
hamt_leaf *hamt_leaf_new(const void *key, size_t klen, const void *val, size_t vlen);
void hamt_leaf_release(hamt_leaf *l);

/* A fresh edit token, never returned before in this process. */
uint64_t hamt_edit_token(void);

/* The leaf for key in m, or NULL. */
const hamt_leaf *hamt_find(const hamt *m, uint64_t hash, const void *key, size_t klen);

/* One step of prefetching the path to the key of hash `hash` (ctx_prefetch
 * with keys): node is a node of a map at depth `level` (a root: 0), which
 * this reads (so call it once node has had time to arrive); starts loading
 * the slot the path goes on to, and returns it if it is a node (for the
 * next step, at level + 1), NULL if it is a leaf, absent, or in a pair or
 * collision node. The caller holds a reference to the map's version. */
const void *hamt_prefetch_step(const void *node, uint64_t hash, unsigned level);

/* Reference management of whole maps: retain takes a reference to m's root
 * for a new map, release drops the one held by *m and empties it. */
hamt hamt_retain(const hamt *m);
void hamt_release(hamt *m);

/* Put leaf into *m under edit token edit, taking over the caller's reference
 * to leaf. Returns CTX_OK or CTX_NOMEM (then *m is unchanged and the leaf's
 * reference is still the caller's). */
ctx_status hamt_set(hamt *m, hamt_leaf *leaf, uint64_t edit);

/* hamt_set that also says whether the map's content changed: *changed is
 * false only when the key was present with the same value already. */
ctx_status hamt_put(hamt *m, hamt_leaf *leaf, uint64_t edit, bool *changed);

/* Replay's puts (recovery.c), many to one large map in a row: hamt_put
 * with the key's hash (hamt_hash) given, so that it is computed once per
 * op; and hamt_prefetch_paths, which starts loading the nodes and leaves on
 * the paths to n hashes (walking them side by side, so that their cache
 * misses overlap) before the puts to them follow. A hint only: it changes
 * nothing (the map must not change while it runs: it reads the nodes). */
ctx_status hamt_put_hashed(hamt *m, hamt_leaf *leaf, uint64_t hash, uint64_t edit, bool *changed);
void hamt_prefetch_paths(const hamt *m, const uint64_t *hash, size_t n);

/* Remove key from *m. CTX_OK, CTX_NOT_FOUND (nothing changed) or CTX_NOMEM
 * (nothing changed). */
ctx_status hamt_del(hamt *m, uint64_t hash, const void *key, size_t klen, uint64_t edit);

/* Report the differences between maps a and b (built with the same hash):
 * fn(arg, old, new) per key, with old NULL for an added key and new NULL for
 * a removed one. Subtrees the two share are skipped, so the cost grows with
 * the number of differences. Stops at the first non-OK status of fn. */
typedef ctx_status (*hamt_diff_fn)(void *arg, const hamt_leaf *old, const hamt_leaf *new_);
ctx_status hamt_diff(const hamt *a, const hamt *b, hamt_diff_fn fn, void *arg);

/* The number of keys added, changed or removed from a to b (hamt_diff). */
size_t hamt_diff_count(const hamt *a, const hamt *b);

/* The content hash of a key and value (never 0), and of a leaf's. */
uint64_t hamt_content_hash(const void *key, size_t klen, const void *val, size_t vlen);
uint64_t hamt_leaf_sum(const hamt_leaf *l);

/* Iteration over a map, in trie order. The map must stay alive (held by the
 * caller) while the iterator is used. */
#define HAMT_MAX_DEPTH 14
typedef struct hamt_cursor {
	int depth;
	const hamt_node *node[HAMT_MAX_DEPTH];
	uint32_t pos[HAMT_MAX_DEPTH];
} hamt_cursor;

void hamt_cursor_init(hamt_cursor *c, const hamt *m);

/* hamt_cursor_init without its prefetch of the root's first slots: for a
 * walk by hamt_cursor_fill only, which prefetches all of them on entering
 * the root. */
static inline void hamt_cursor_start(hamt_cursor *c, const hamt *m)
{
	c->depth = m->root ? 1 : 0;
	c->node[0] = m->root;
	c->pos[0] = 0;
}

/* Start loading what the first slots of m's root point to (all of a small
 * map's leaves): for a walk of m that comes a little later, whose root the
 * caller prefetched before (checkpoint.c, writing contexts one by one). */
void hamt_prefetch_top(const hamt *m);
const hamt_leaf *hamt_cursor_next(hamt_cursor *c);

/* The next leaves of c's walk, at most max of them, into out (the same
 * order as hamt_cursor_next); fewer than max only when the walk reached its
 * end (so a caller may stop there without one more call), 0 at the end.
 * Each node's targets are all prefetched when the walk enters it, and no
 * leaf is read: a caller that visits the leaves afterwards finds their
 * cache misses overlapped, not one after another. */
size_t hamt_cursor_fill(hamt_cursor *c, const hamt_leaf **out, size_t max);

#endif
