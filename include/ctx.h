/*
 * ctx.h - the public interface of libctx, an embeddable context store.
 *
 * This header is the manual: a user should never need to read the sources.
 *
 * MODEL
 *   A store (ctx_store) holds contexts, each named by an id. A context's data is
 *   a map from keys (binary-safe byte strings) to values (binary-safe bytes),
 *   plus a small metadata map. Every committed change to a context makes a new
 *   immutable version (ctx_state): versions start at 1 when the context is
 *   created and grow by exactly 1 per commit. The store also stamps every
 *   commit with a store-wide revision, so all changes in the store have one
 *   total order.
 *
 * THREADS
 *   Every function taking a ctx_store may be called from any number of threads
 *   at once, with no registration. Reads (ctx_get and the ctx_state_*
 *   accessors) never block: they take no lock a writer holds and wait for no
 *   I/O. A ctx_state handle is immutable; it may be shared between threads and
 *   stays valid, showing exactly the same data, until released. A ctx_txn and a
 *   ctx_iter belong to one thread at a time (no internal locking).
 *
 * ERRORS
 *   Every fallible function returns a ctx_status. On failure nothing has
 *   changed and output parameters are left untouched. ctx_strerror() names a
 *   status; ctx_last_error() gives a detail message for the calling thread's
 *   last failure (which argument, which file and offset).
 *
 * LIMITS
 *   Context ids: 1..256 bytes, no NUL and no control characters (bytes < 0x20
 *   and 0x7f). Keys: 1..max_key_size bytes. Values: 0..max_value_size bytes.
 *   Metadata names follow the key rules, metadata values the value rules.
 *   Anything outside them is CTX_INVALID.
 */
#ifndef CTX_H
#define CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Everything declared here is exported from libctx.so; the rest is hidden. */
#pragma GCC visibility push(default)

#define CTX_VERSION_STRING "0.1.0"

#define CTX_ID_MAX 256                         /* longest context id, bytes */
#define CTX_DEFAULT_MAX_CONTEXTS 1000000u      /* ctx_options.max_contexts */
#define CTX_DEFAULT_MAX_KEY_SIZE 65536u        /* ctx_options.max_key_size */
#define CTX_DEFAULT_MAX_VALUE_SIZE (16u << 20) /* ctx_options.max_value_size */

typedef struct ctx_store ctx_store; /* the manager: a set of contexts            */
typedef struct ctx_state ctx_state; /* one immutable version of one context      */
typedef struct ctx_txn ctx_txn;     /* changes to one context, committed at once */
typedef struct ctx_iter ctx_iter;   /* a cursor over the pairs of one state      */

/* Result of every fallible call. */
typedef enum ctx_status {
	CTX_OK = 0,
	CTX_NOT_FOUND, /* no such context, key or version                        */
	CTX_EXISTS,    /* a context with that id exists already                  */
	CTX_CONFLICT,  /* a guarded commit saw another version than expected     */
	CTX_LIMIT,     /* a configured limit (context count, ...) is reached     */
	CTX_INVALID,   /* a bad argument: id, key or value size, NULL, ...       */
	CTX_IO,        /* an operating system call failed; errno keeps the cause */
	CTX_CORRUPT,   /* stored data failed its checksum or is malformed        */
	CTX_NOMEM,     /* out of memory                                          */
	CTX_CLOSED     /* the store refuses writes (closed or failed)            */
} ctx_status;

/* A short constant English name for s ("conflict", "not found", ...). Never
 * NULL; unknown values give "unknown status". */
const char *ctx_strerror(ctx_status s);

/* A message describing the calling thread's most recent failure in libctx, for
 * example "key of 70000 bytes exceeds max_key_size 65536". Valid until the
 * thread's next call into libctx. Empty string if there was none. */
const char *ctx_last_error(void);

/* ------------------------------------------------------------------------ */
/* Opening and closing a store                                               */

/* When a write call may return, relative to its change reaching the disk. */
typedef enum ctx_durability {
	CTX_DURABILITY_ALWAYS = 0, /* after its change is fsynced (the default)    */
	CTX_DURABILITY_BATCH,      /* at once; fsync at least every batch_ms, so a
	                              crash loses at most that window             */
	CTX_DURABILITY_NONE        /* never fsync: memory only, or with a dir and
	                              unsafe_no_sync, a log the OS writes whenever */
} ctx_durability;

typedef struct ctx_options {
	const char *dir;           /* data directory; NULL = memory only          */
	size_t max_contexts;       /* hard limit on live contexts; 0 = default    */
	size_t max_key_size;       /* longest key, bytes; 0 = default             */
	size_t max_value_size;     /* longest value, bytes; 0 = default           */
	ctx_durability durability; /* with a dir; ignored without one             */
	unsigned batch_ms;         /* CTX_DURABILITY_BATCH period; 0 = 10 ms      */
	bool unsafe_no_sync;       /* allow CTX_DURABILITY_NONE with a dir        */
	size_t checkpoint_bytes;   /* log growth that starts a background
	                              checkpoint; 0 = default (64 MiB)            */
} ctx_options;

/* Fill *o with the defaults: memory only, durability always (once a dir is
 * set), default limits. Always call it before setting fields, so that fields
 * added later get their defaults. */
void ctx_options_init(ctx_options *o);

/* Open a store with options o (NULL = all defaults) and store it in *out.
 * With a dir, the directory is created if missing, locked against other
 * processes, and recovered: the newest valid checkpoint, then the log.
 * Errors: CTX_INVALID (out NULL, a limit out of range, durability NONE with a
 * dir but without unsafe_no_sync), CTX_IO (the directory cannot be created or
 * read, or another process holds it: "locked"; errno is kept), CTX_CORRUPT
 * (damage that recovery must not skip: ctx_last_error names file and offset),
 * CTX_NOMEM. */
ctx_status ctx_open(const ctx_options *o, ctx_store **out);

/* Close the store and free everything it owns. All other calls on s must have
 * returned, and every ctx_state, ctx_txn and ctx_iter obtained from it must be
 * released first. NULL is a no-op. */
void ctx_close(ctx_store *s);

/* Write a checkpoint now (stores with a dir; the background checkpointer
 * also writes one whenever the log grew by checkpoint_bytes, and ctx_close
 * writes a last one). Writers keep going while it is written. A no-op for a
 * memory-only store. Errors: CTX_IO. */
ctx_status ctx_checkpoint(ctx_store *s);

/* Numbers describing a store, for monitoring and tests. */
typedef struct ctx_stats {
	size_t contexts;              /* live contexts                          */
	uint64_t revision;            /* last revision handed out               */
	uint64_t log_syncs;           /* fdatasync calls on the log since open  */
	uint64_t checkpoints;         /* checkpoints written since open         */
	uint64_t checkpoint_revision; /* revision the newest checkpoint covers   */
	int io_errno;                 /* errno of the failure that stopped
	                                 writes, or 0                           */
} ctx_stats;
void ctx_get_stats(ctx_store *s, ctx_stats *out);

/* What ctx_verify found in a data directory. */
typedef struct ctx_verify_report {
	uint64_t checkpoint_revision; /* revision of the checkpoint used (0: none) */
	size_t checkpoints;           /* checkpoint files found                 */
	size_t checkpoints_damaged;   /* of which failed their checks           */
	size_t segments;              /* log segments read                      */
	uint64_t records;             /* log records read                       */
	uint64_t last_revision;       /* revision recovery would end at         */
	uint64_t torn_bytes;          /* bytes at the log's end recovery would
	                                 cut (an interrupted, unacknowledged write) */
	size_t contexts;              /* contexts recovery would give           */
	uint64_t keys;                /* keys in them                           */
	char message[512];            /* the problem found, or "ok"             */
} ctx_verify_report;

/* Check the data directory dir offline, exactly as opening it would, without
 * changing anything (a torn tail is counted, not cut). Fills *report (if not
 * NULL). Returns CTX_OK if recovery would succeed, CTX_CORRUPT (message names
 * file and offset), CTX_IO (unreadable, or locked by an open store),
 * CTX_NOMEM. */
ctx_status ctx_verify(const char *dir, ctx_verify_report *report);

/* ------------------------------------------------------------------------ */
/* Contexts                                                                  */

/* Create an empty context at version 1.
 * Errors: CTX_INVALID (bad id), CTX_EXISTS, CTX_LIMIT (max_contexts live
 * contexts exist), CTX_NOMEM. */
ctx_status ctx_create(ctx_store *s, const char *id);

/* Drop a context and all its data. States already obtained stay valid.
 * Errors: CTX_INVALID, CTX_NOT_FOUND. */
ctx_status ctx_drop(ctx_store *s, const char *id);

/* Number of live contexts in s. Never blocks. */
size_t ctx_count(ctx_store *s);

/* A page of context ids, as returned by ctx_list. */
typedef struct ctx_list {
	size_t count; /* number of ids                          */
	char **ids;   /* NUL-terminated ids, in byte order       */
} ctx_list;

/* List the ids of live contexts that start with prefix (NULL or "" = all), in
 * ascending byte order, starting after the id `after` (NULL = from the first),
 * at most limit of them (0 = no limit). To page through, pass the last id of
 * one page as `after` of the next. Free the result with ctx_list_free.
 * Never blocks writers. Errors: CTX_INVALID (s or out NULL), CTX_NOMEM. */
ctx_status ctx_list_ids(ctx_store *s, const char *prefix, const char *after,
                        size_t limit, ctx_list *out);

/* Free the ids of a list filled by ctx_list_ids and zero it. */
void ctx_list_free(ctx_list *l);

/* ------------------------------------------------------------------------ */
/* Reading: states                                                           */

/* Take the newest visible version of context id into *out. Never blocks and
 * takes no lock. The caller owns one reference: release it with
 * ctx_state_release. Errors: CTX_INVALID, CTX_NOT_FOUND. */
ctx_status ctx_get(ctx_store *s, const char *id, ctx_state **out);

/* Take another reference to st (for handing it to another thread). */
ctx_state *ctx_state_retain(ctx_state *st);

/* Drop one reference; the version's memory is reclaimed when the last
 * reference goes. NULL is a no-op. */
void ctx_state_release(ctx_state *st);

uint64_t ctx_state_version(const ctx_state *st);  /* 1 at creation, +1 per commit */
uint64_t ctx_state_revision(const ctx_state *st); /* store-wide commit order      */
size_t ctx_state_count(const ctx_state *st);      /* number of keys               */
size_t ctx_state_bytes(const ctx_state *st);      /* sum of key and value lengths */
uint64_t ctx_state_created_us(const ctx_state *st); /* context creation, µs since 1970 */
uint64_t ctx_state_updated_us(const ctx_state *st); /* this version's commit, µs     */

/* The context id of st, NUL-terminated. Valid as long as st is held. */
const char *ctx_state_id(const ctx_state *st);

/* Look up key in st. If present, set *val and *vlen (either may be NULL) to the
 * value, which stays valid as long as st is held, and return true. */
bool ctx_state_lookup(const ctx_state *st, const void *key, size_t klen,
                      const void **val, size_t *vlen);

/* The same for the metadata map. */
bool ctx_state_meta(const ctx_state *st, const void *name, size_t nlen,
                    const void **val, size_t *vlen);
size_t ctx_state_meta_count(const ctx_state *st);

/* Iterate over all key/value pairs of st (in an unspecified but stable
 * order: two iterations of the same state give the same order). The iterator
 * holds its own reference to st. Errors: CTX_INVALID, CTX_NOMEM. */
ctx_status ctx_iter_begin(const ctx_state *st, ctx_iter **out);

/* Iterate over the metadata map of st instead. */
ctx_status ctx_iter_meta_begin(const ctx_state *st, ctx_iter **out);

/* Advance to the next pair; false once all pairs have been seen. Pointers
 * stay valid until the iterator is freed. */
bool ctx_iter_next(ctx_iter *it, const void **key, size_t *klen,
                   const void **val, size_t *vlen);

/* Free the iterator and its reference. NULL is a no-op. */
void ctx_iter_free(ctx_iter *it);

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

/* Set key to val in context id, as one commit. If version_out is not NULL, it
 * receives the new version. Unguarded: concurrent puts all apply.
 * Errors: CTX_INVALID (bad id, key or value size), CTX_NOT_FOUND (no such
 * context), CTX_NOMEM, CTX_CLOSED. */
ctx_status ctx_put(ctx_store *s, const char *id, const void *key, size_t klen,
                   const void *val, size_t vlen, uint64_t *version_out);

/* Delete key from context id, as one commit.
 * Errors: as ctx_put, and CTX_NOT_FOUND if the key is absent (nothing is
 * committed then). */
ctx_status ctx_del(ctx_store *s, const char *id, const void *key, size_t klen,
                   uint64_t *version_out);

/* Start a transaction on context id. Nothing is read or locked until commit;
 * the context must exist now (CTX_NOT_FOUND) and when committing.
 * Errors: CTX_INVALID, CTX_NOT_FOUND, CTX_NOMEM. */
ctx_status ctx_txn_begin(ctx_store *s, const char *id, ctx_txn **out);

/* Record a put or a delete in t. Operations apply in the order recorded (a
 * later put of the same key wins). Deleting an absent key is not an error: it
 * changes nothing. The data is copied.
 * Errors: CTX_INVALID (sizes, NULL t), CTX_NOMEM. A failed call leaves t as it
 * was, still usable. */
ctx_status ctx_txn_put(ctx_txn *t, const void *key, size_t klen, const void *val, size_t vlen);
ctx_status ctx_txn_del(ctx_txn *t, const void *key, size_t klen);

/* The same for metadata entries. */
ctx_status ctx_txn_meta_put(ctx_txn *t, const void *name, size_t nlen, const void *val,
                            size_t vlen);
ctx_status ctx_txn_meta_del(ctx_txn *t, const void *name, size_t nlen);

/* Commit all recorded operations atomically as one new version: readers see
 * either none or all of them. If expected_version is not 0 and the context's
 * newest version differs, nothing changes and the result is CTX_CONFLICT.
 * An empty transaction still makes a new version. Frees t, whatever the
 * result. On success *version_out (if not NULL) is the new version.
 * Errors: CTX_CONFLICT, CTX_NOT_FOUND (context dropped), CTX_NOMEM,
 * CTX_CLOSED, CTX_INVALID (t NULL). */
ctx_status ctx_txn_commit(ctx_txn *t, uint64_t expected_version, uint64_t *version_out);

/* Discard t without committing. NULL is a no-op. */
void ctx_txn_abort(ctx_txn *t);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* CTX_H */
