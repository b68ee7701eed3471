/*
 * index.c - the ordered index of context ids: a skip list read under RCU.
 *
 * A skip list is a sorted linked list (level 0) with express lanes above it:
 * a node is on levels 0..height-1, and each level holds about a quarter of
 * the nodes of the level below. A seek runs along the top lane while the
 * next key is smaller than the target, then drops a level: O(log n) steps.
 *
 * Why a skip list: every change is a few single-pointer stores, which is what
 * RCU readers need. Readers never lock; each pointer they follow was, at the
 * moment they read it, a link of a sorted list. Writers keep two rules:
 *   - insert links a node bottom-up, each link stored with release after the
 *     node's own pointer at that level: a reader that finds it on level i
 *     finds its levels below i filled in;
 *   - remove unlinks top-down and never touches the removed node's pointers:
 *     a reader standing on it walks on to what followed it when it left,
 *     which is never past a node that stayed in the index.
 * So a walk sees, in ascending order and at most once, every node that was
 * in the index for the whole walk; nodes added or removed meanwhile may or
 * may not be seen. A removed node is freed by its owner after a grace period.
 *
 * Invariant: keys are unique (the store inserts a context after it entered
 * the table and removes it before it leaves the table, and the table holds
 * one context per id).
 *
 * LOCKS: ix->lock serializes writers; it is taken last (under a context's
 * write lock) and nothing is taken under it.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "util.h"

ctx_status index_open(ctx_index *ix)
{
	ix->head = calloc(1, index_node_size(INDEX_MAX_HEIGHT));
	if (!ix->head)
		return ctx_fail(CTX_NOMEM, "no memory for the index of contexts");
	index_node_init(ix->head, INDEX_MAX_HEIGHT, NULL, 0, NULL);
	ctx_mutex_init(&ix->lock);
	return CTX_OK;
}

void index_close(ctx_index *ix)
{
	if (!ix->head)
		return;
	pthread_mutex_destroy(&ix->lock);
	free(ix->head);
	ix->head = NULL;
}

/* A per-thread xorshift generator, seeded from the clock and the thread's
 * stack address (heights need to be independent of ids, not secret). */
static uint64_t random_bits(void)
{
	static _Thread_local uint64_t x;
	if (!x) {
		uint64_t z = ctx_now_us() ^ (uint64_t)(uintptr_t)&x;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull; /* splitmix64's finalizer */
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		x = (z ^ (z >> 31)) | 1;
	}
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

unsigned index_random_height(void)
{
	uint64_t bits = random_bits();
	unsigned h = 1;
	while (h < INDEX_MAX_HEIGHT && (bits & 3) == 0) {
		h++;
		bits >>= 2;
	}
	return h;
}

size_t index_node_size(unsigned height)
{
	return sizeof(index_node) + height * sizeof(_Atomic(index_node *));
}

void index_node_init(index_node *n, unsigned height, const char *key, size_t klen, void *owner)
{
	assert(!key || (key <= (const char *)n && (const char *)n - key <= UINT16_MAX));
	assert(!owner || ((char *)owner <= (char *)n && (char *)n - (char *)owner <= UINT16_MAX));
	assert(klen <= UINT16_MAX);
	n->key_back = key ? (uint16_t)((const char *)n - key) : 0;
	n->owner_back = owner ? (uint16_t)((char *)n - (char *)owner) : 0;
	n->klen = (uint16_t)klen;
	n->height = (uint16_t)height;
	for (unsigned i = 0; i < height; i++)
		atomic_init(&n->next[i], NULL);
}

static index_node *link_at(const index_node *n, unsigned level)
{
	return atomic_load_explicit(&((index_node *)n)->next[level], memory_order_acquire);
}

/* Whether node n comes before the target (key, klen; or_equal: at it too). */
static bool comes_before(const index_node *n, const char *key, size_t klen, bool or_equal)
{
	int c = ctx_key_compare(index_key(n), n->klen, key, klen);
	return c < 0 || (or_equal && c == 0);
}

/* The last node on each level that comes before the target (writers). */
static void find_preds(ctx_index *ix, const char *key, size_t klen, index_node **preds)
{
	index_node *x = ix->head;
	for (unsigned i = INDEX_MAX_HEIGHT; i-- > 0;) {
		index_node *nx;
		while ((nx = link_at(x, i)) && comes_before(nx, key, klen, false))
			x = nx;
		preds[i] = x;
	}
}

void index_lock(ctx_index *ix)
{
	pthread_mutex_lock(&ix->lock);
}

void index_unlock(ctx_index *ix)
{
	pthread_mutex_unlock(&ix->lock);
}

void index_insert_locked(ctx_index *ix, index_node *n)
{
	index_node *preds[INDEX_MAX_HEIGHT];
	find_preds(ix, index_key(n), n->klen, preds);
	assert(!link_at(preds[0], 0) ||
	       ctx_key_compare(index_key(link_at(preds[0], 0)), link_at(preds[0], 0)->klen,
	                       index_key(n), n->klen) != 0);
	for (unsigned i = 0; i < n->height; i++) {
		atomic_store_explicit(&n->next[i], link_at(preds[i], i), memory_order_relaxed);
		atomic_store_explicit(&preds[i]->next[i], n, memory_order_release);
	}
}

void index_remove_locked(ctx_index *ix, index_node *n)
{
	index_node *preds[INDEX_MAX_HEIGHT];
	find_preds(ix, index_key(n), n->klen, preds);
	for (unsigned i = n->height; i-- > 0;) {
		assert(link_at(preds[i], i) == n);
		atomic_store_explicit(&preds[i]->next[i], link_at(n, i), memory_order_release);
	}
}

void index_insert(ctx_index *ix, index_node *n)
{
	index_lock(ix);
	index_insert_locked(ix, n);
	index_unlock(ix);
}

void index_remove(ctx_index *ix, index_node *n)
{
	index_lock(ix);
	index_remove_locked(ix, n);
	index_unlock(ix);
}

index_node *index_seek(ctx_index *ix, const char *key, size_t klen, bool after)
{
	index_node *x = ix->head;
	for (unsigned i = INDEX_MAX_HEIGHT; key && i-- > 0;) {
		index_node *nx;
		while ((nx = link_at(x, i)) && comes_before(nx, key, klen, after))
			x = nx;
	}
	return link_at(x, 0);
}

index_node *index_next(const index_node *n)
{
	return link_at(n, 0);
}
