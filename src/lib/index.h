/*
 * index.h - an ordered index of context ids: a skip list read under RCU.
 *
 * The table of contexts (store.c) finds an id in O(1) but knows no order;
 * this index keeps the same contexts sorted by id (byte order, shorter first
 * on a common prefix), so that a page of ids costs O(log n + page).
 *
 * Readers (inside an RCU read-side critical section) take no lock: they seek
 * and walk level 0 through atomic pointers. Writers (insert, remove) are
 * serialized by the index's own mutex, held for one O(log n) search and a few
 * pointer stores; no I/O is done under it. The store also guards its table
 * of contexts with this mutex (index_lock, then the *_locked calls), so that
 * a create or a drop takes one lock for both.
 *
 * The nodes belong to the caller (a context embeds one): the index never
 * allocates or frees a node. A node does not point to its key or its owner:
 * both lie in the caller's memory at most 64 KiB before the node (a context
 * puts its node right after its id), and the node keeps the distances, so
 * a node costs 8 bytes plus 8 per level. A key, its NUL and the padding
 * before the node must fit within those 64 KiB (a context's id is at most
 * CTX_ID_MAX bytes: store.c checks it at compile time). A removed node keeps
 * its forward pointers, so a
 * reader standing on it walks on in order; the caller frees it only after a
 * grace period (a context is freed by call_rcu). A node is inserted once and
 * removed at most once.
 */
#ifndef CTX_INDEX_H
#define CTX_INDEX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

#define INDEX_MAX_HEIGHT 20 /* 4^20 nodes before levels stop paying */

typedef struct index_node {
	uint16_t klen;
	uint16_t height;     /* 1..INDEX_MAX_HEIGHT */
	uint16_t key_back;   /* the key starts this many bytes before the node */
	uint16_t owner_back; /* and its owner this many */
	_Atomic(struct index_node *) next[];
} index_node;

/* The key of n (NUL-terminated; lives as long as the node), and its owner. */
static inline const char *index_key(const index_node *n)
{
	return (const char *)n - n->key_back;
}

static inline void *index_owner(const index_node *n)
{
	return (char *)n - n->owner_back;
}

typedef struct ctx_index {
	pthread_mutex_t lock; /* writers only */
	index_node *head;     /* sentinel of INDEX_MAX_HEIGHT levels */
} ctx_index;

/* Open and close an index (CTX_NOMEM). Close only once it is empty or no
 * reader can reach it. */
ctx_status index_open(ctx_index *ix);
void index_close(ctx_index *ix);

/* A random height for a new node (each level with probability 1/4), and
 * the size of a node of that height. key (klen < 64 KiB bytes, NUL after
 * them) and owner must lie at most 64 KiB before n, in memory that lives as
 * long as n; NULL for the head only. */
unsigned index_random_height(void);
size_t index_node_size(unsigned height);
void index_node_init(index_node *n, unsigned height, const char *key, size_t klen, void *owner);

/* Add n (its key must not be in the index) and take it out again. */
void index_insert(ctx_index *ix, index_node *n);
void index_remove(ctx_index *ix, index_node *n);
/* The same with ix->lock held by the caller (index_lock). */
void index_lock(ctx_index *ix);
void index_unlock(ctx_index *ix);
void index_insert_locked(ctx_index *ix, index_node *n);
void index_remove_locked(ctx_index *ix, index_node *n);

/* Readers, inside an RCU read-side critical section: the first node whose
 * key is >= key (strictly greater if `after`), the first of all (key NULL),
 * and the node after n. NULL at the end. */
index_node *index_seek(ctx_index *ix, const char *key, size_t klen, bool after);
index_node *index_next(const index_node *n);

#endif
