/*
 * store.h - the private shape of a store, its contexts and their states.
 *
 * LOCKS (the whole list; there is no other lock in libctx)
 *   context.write_lock   serializes commits to one context and guards its head
 *                        and its dropped flag. Held only for the in-memory part
 *                        of a commit: never across I/O or user code. Nothing
 *                        else is locked while it is held.
 * Readers take no lock: the table of contexts is an RCU hash table (liburcu's
 * cds_lfht), a context's visible version is an atomic pointer, and versions are
 * immutable and reference counted. A version's struct is freed only after an
 * RCU grace period, so that a reader may try to take a reference to a version
 * that is being replaced and learn that it lost the race (refs already 0).
 */
#ifndef CTX_STORE_H
#define CTX_STORE_H

#include <pthread.h>
#include <stdatomic.h>

#include "ctx.h"
#include "hamt.h"
#include "rcu.h"

typedef struct ctx_context ctx_context;

struct ctx_state {
	atomic_uint refs;
	ctx_context *ctx; /* a reference: keeps the id alive */
	uint64_t version;
	uint64_t revision;
	uint64_t updated_us;
	hamt data;
	hamt meta;
	struct rcu_head rcu;
};

struct ctx_context {
	struct cds_lfht_node node; /* in store.table while live */
	atomic_uint refs;          /* table, states, transactions, callers */
	ctx_store *store;
	uint64_t id_hash;
	uint64_t created_us;
	pthread_mutex_t write_lock;
	ctx_state *head;               /* newest committed version (write_lock) */
	_Atomic(ctx_state *) visible;  /* newest version readers may see */
	atomic_bool dropped;           /* set once, under write_lock */
	struct rcu_head rcu;
	size_t idlen;
	char id[];
};

struct ctx_store {
	ctx_options opts;
	struct cds_lfht *table;
	atomic_size_t live;                /* contexts in the table */
	atomic_uint_fast64_t revision;     /* last revision handed out */
};

/* Contexts: find one and take a reference (NULL if absent), drop one. */
ctx_context *store_find_context(ctx_store *s, const char *id, size_t idlen);
void context_retain(ctx_context *c);
void context_release(ctx_context *c);

/* Make st the version readers see, unless a newer one is visible already or
 * the context was dropped. Takes a new reference to st for the context. */
void context_publish(ctx_context *c, ctx_state *st);

/* States. */
ctx_state *state_new(ctx_context *c, uint64_t version, hamt data, hamt meta);
bool state_try_retain(ctx_state *st);

/* Check a key (or metadata name) and value against the store's limits. */
ctx_status store_check_key(const ctx_store *s, const void *key, size_t klen);
ctx_status store_check_value(const ctx_store *s, const void *val, size_t vlen);

#endif
