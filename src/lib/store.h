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
	uint64_t incarnation;          /* revision of its creation */
	ctx_state *head;               /* newest committed version (write_lock) */
	_Atomic(ctx_state *) visible;  /* newest version readers may see */
	atomic_bool dropped;           /* no more commits; set under write_lock */
	uint64_t drop_revision;        /* revision of its drop record (write_lock) */
	atomic_bool gone;              /* out of the table, visible cleared */
	struct rcu_head rcu;
	size_t idlen;
	char id[];
};

struct ctx_log;

struct ctx_store {
	ctx_options opts;
	char *dir;                         /* NULL: memory only */
	int lock_fd;                       /* holds the directory's flock */
	struct cds_lfht *table;
	atomic_size_t live;                /* contexts in the table */
	atomic_uint_fast64_t revision;     /* last revision handed out (no log) */
	struct ctx_log *log;               /* NULL: memory only */
	bool wait_durable;                 /* durability always: wait for syncs */

	/* The background checkpointer (with a log). */
	pthread_t checkpointer;
	bool checkpointer_running;
	atomic_bool closing;
	atomic_uint_fast64_t last_checkpoint; /* revision of the newest checkpoint */
	uint64_t prev_checkpoint;          /* and of the one before */
	atomic_uint_fast64_t checkpoints;  /* written since open */
	atomic_flag checkpoint_busy;       /* one checkpoint at a time */
};

/* Contexts: find one and take a reference (NULL if absent), drop one. */
ctx_context *store_find_context(ctx_store *s, const char *id, size_t idlen);
void context_retain(ctx_context *c);
void context_release(ctx_context *c);

/* Make st the version readers see, unless a newer one is visible already or
 * the context was dropped. Takes a new reference to st for the context. */
void context_publish(ctx_context *c, ctx_state *st);

/* Wait until revision rev is durable, then publish st; drops the caller's
 * reference to st. CTX_IO if the log failed first (st stays invisible). */
ctx_status context_publish_durable(ctx_context *c, ctx_state *st, uint64_t rev);

/* A context not yet in the table (recovery), its insertion with a first
 * state, and removal. Only while nothing else uses the store. */
ctx_context *context_new(ctx_store *s, const char *id, size_t idlen, uint64_t created_us);
void store_insert_recovered(ctx_store *s, ctx_context *c, ctx_state *st);
ctx_context *store_lookup_recovered(ctx_store *s, const char *id, size_t idlen);
void store_remove_recovered(ctx_store *s, ctx_context *c);
void store_clear(ctx_store *s);

/* Replace the head of a context during recovery (takes over st's reference). */
void store_set_head_recovered(ctx_context *c, ctx_state *st);

/* Checkpoints (checkpoint.c). */
ctx_status checkpoint_run(ctx_store *s);
ctx_status checkpoint_load(ctx_store *s, const char *path, uint64_t *revision_out);
ctx_status checkpointer_start(ctx_store *s);
void checkpointer_stop(ctx_store *s);

/* Recovery (recovery.c): load the newest valid checkpoint, replay the log.
 * read_only: cut nothing, delete nothing (for verify). */
typedef struct recovery_info {
	uint64_t checkpoint_revision;
	size_t checkpoints;
	size_t checkpoints_damaged;
	size_t segments;
	uint64_t records;
	uint64_t replayed_bytes;
	uint64_t last_revision;
	uint64_t torn_bytes;
} recovery_info;
ctx_status recovery_run(ctx_store *s, const char *dir, bool read_only, recovery_info *info);

/* States. */
ctx_state *state_new(ctx_context *c, uint64_t version, hamt data, hamt meta);
bool state_try_retain(ctx_state *st);

/* Check a key (or metadata name) and value against the store's limits. */
ctx_status store_check_key(const ctx_store *s, const void *key, size_t klen);
ctx_status store_check_value(const ctx_store *s, const void *val, size_t vlen);

#endif
