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
 *   fork: as with SQLite and LMDB, do not carry an open store across fork,
 *   but a child may use libctx afresh. The child of a process that used
 *   libctx may exit or exec at once (it touches none of the parent's files
 *   and holds none of its directory locks), or open stores of its own -
 *   another directory, or the parent's once the parent closed it - and use
 *   every call on them. A store the child inherited (and every ctx_txn,
 *   ctx_watch, ctx_tracker, ctx_session and ctx_notifier made from it) is
 *   unusable there, its threads being the parent's: every call on it that
 *   returns a ctx_status returns CTX_CLOSED (ctx_last_error says why),
 *   ctx_expire_now, ctx_tracker_pending, ctx_tracker_pending_bytes and
 *   ctx_tracker_edit_bytes return 0, ctx_flush_defer and ctx_notifier_want and
 *   _clear do nothing, and ctx_close, ctx_close_at_exit and the handles'
 *   close calls do nothing (the child's copy of its memory stays until the
 *   child exits). Exceptions, the reads that never block: ctx_get,
 *   ctx_get_value, ctx_get_each and ctx_get_latest (a check there cost
 *   reads measurably) and the accessors of a ctx_state held at the fork
 *   answer from the child's copy of the store as it was at the fork, and
 *   releasing such a state is allowed. libctx registers pthread_atfork
 *   handlers at the first ctx_open: a fork then waits for liburcu's
 *   call_rcu worker to pause between two batches (up to about 10 ms), and
 *   the child's first ctx_open starts the child's worker (a child that
 *   only execs or exits starts no thread). ThreadSanitizer kills a child of
 *   a threaded process that starts a thread unless die_after_fork=0.
 *   Do not fork inside a ctx_get_each callback (a read-side section, which
 *   must not block anyway): the fork's pause of the call_rcu worker may
 *   wait for a grace period that section holds back.
 *
 * ERRORS
 *   Every fallible function returns a ctx_status. On failure nothing has
 *   changed and output parameters are left untouched. ctx_strerror() names a
 *   status; ctx_last_error() gives a detail message for the calling thread's
 *   last failure (which argument, which file and offset). Each function's
 *   "Errors:" line lists every status it can return.
 *
 *   With a data directory, a write can fail in two ways after an I/O error:
 *   CTX_IO - the write met the failure (its fsync or write failed while it
 *   waited), so whether it survives a restart is unknown; CTX_CLOSED - the
 *   log had failed before, so the write was refused and nothing of it was
 *   written. After the first failure the store refuses every write for good
 *   (Linux may drop the pages of a failed fsync, so nothing written later
 *   could be trusted) and keeps serving reads; ctx_get_stats().io_errno,
 *   and errno after either status, give the cause. Reopen the store to
 *   write again.
 *
 *   One exception: CTX_IO from a call that commits (ctx_put, ctx_del,
 *   ctx_txn_commit, ctx_create, ctx_drop, and the others that write) means
 *   the log's write or fsync failed. The change is not visible in this
 *   process, and the store refuses every later write, but its outcome on
 *   disk is UNKNOWN: its record may have reached the disk before the failure,
 *   so the change may or may not be there after a restart (SQLite and etcd
 *   document the same for a failed fsync). Reopen the store to learn which.
 *   (If the log had failed before the call, the change was not made.)
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
	CTX_CLOSED     /* the store refuses writes: its log failed earlier, or
	                  it was opened before this process forked (THREADS) */
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
	unsigned batch_ms;         /* CTX_DURABILITY_BATCH period; 0 = 10 ms
	                              (ctx_checkpoint and ctx_close do not wait
	                              out a period)                           */
	bool unsafe_no_sync;       /* allow CTX_DURABILITY_NONE with a dir        */
	size_t checkpoint_bytes;   /* log growth that starts a background
	                              checkpoint (the log an open recovered
	                              past the checkpoint counts, so that a
	                              store killed again and again still
	                              checkpoints); 0 = default (64 MiB).
	                              Also the bytes of torn-*.bin files
	                              ctx_open keeps (the newest; see ctx_open) */
	size_t history_depth;      /* versions kept per context (besides those
	                              points pin); 0 = default (64); at most
	                              2^32 - 2                                    */
	size_t max_points;         /* recovery points per context; the oldest
	                              is dropped past it; 0 = default (10)        */
	unsigned auto_point_every; /* a point every K commits; 0 = never (best
	                              effort: a commit whose point cannot be
	                              made still succeeds)                        */
	size_t watch_queue;        /* how far behind the newest delivered
	                              revision a watcher may fall before it lags:
	                              once the next event it would take is this
	                              many revisions old (revisions of any
	                              context count), it delivers that many
	                              revisions' worth of events, then
	                              CTX_EVENT_LAGGED; 0 = default (4096).
	                              Watchers read one shared event history,
	                              so a watcher also lags when what it has
	                              not read leaves that history
	                              (watch_history, watch_history_bytes)     */
	size_t watch_history;      /* revisions kept for watchers to start from
	                              an earlier one (recovery point and ttl
	                              records count too); 0 = default (65536)     */
	size_t watch_history_bytes; /* bytes the kept events may hold (each: its
	                               id, its keys, 16 bytes a key and ~100
	                               bytes, counted as 128 or 256 when it fits
	                               in that: events are pooled); past this or
	                               watch_history the oldest kept events are
	                               evicted, never undelivered ones; 0 =
	                               default (64 MiB)                           */
	bool watch_keep_history;    /* keep that history while no watch is open
	                               too. false (default): while none is open,
	                               events are not recorded at all (no copy of
	                               the keys, no memory per commit), and a
	                               watch can start only from revisions
	                               committed while some watch was open        */
	unsigned reaper_ms;        /* how often expired contexts are looked for;
	                              0 = default (1000)                          */
	size_t log_prealloc_bytes; /* with a dir (durability always or batch):
	                              the newest log segment is written with
	                              zeros and synced ahead of its records, so
	                              a commit's fsync does not also commit a
	                              file size change; a segment starts with
	                              64 KiB of zeros and grows by chunks that
	                              double it, up to this size. Costs disk: at
	                              most one chunk, cut off when the segment
	                              is rotated or the store closed. 0 =
	                              default (4 MiB); below 4096 = off (records
	                              appended to a growing file)               */
	size_t log_backlog_bytes;  /* with a dir: log bytes appended but not yet
	                              durable (written, under durability none)
	                              at which writers that do not wait for
	                              their own sync (ctx_txn_commit_nowait,
	                              ctx_drop_nowait, every write under
	                              durability batch or none) wait before
	                              they append, until the disk catches up:
	                              so a slow or stalled disk holds writers
	                              back instead of growing the heap. Each
	                              writer may add one record past it. 0 =
	                              default (64 MiB); SIZE_MAX = no bound     */
	/* The clock, in µs since 1970 (creation, commit, access and point times,
	 * expiry). NULL = the real time; tests pass a fake one. */
	uint64_t (*clock_us)(void *clock_arg);
	void *clock_arg;
} ctx_options;

/* Fill *o with the defaults: memory only, durability always (once a dir is
 * set), default limits. Always call it before setting fields, so that fields
 * added later get their defaults. */
void ctx_options_init(ctx_options *o);

/* Open a store with options o (NULL = all defaults) and store it in *out.
 * With a dir, the directory is created if missing, locked against other
 * processes, and recovered: the newest valid checkpoint, then the log. A
 * missing directory is created and its parent fsynced. After a power cut,
 * the end of the newest log segment may hold a group write that was never
 * fsynced (so never acknowledged), with its pages persisted in any order:
 * from its first damaged record on, it is cut, the cut bytes are kept in
 * DIR/torn-<segment>-<offset>.bin (without the zeros they end with), and
 * stderr says so; then the oldest torn-*.bin files are deleted until they
 * hold at most checkpoint_bytes together, the new one always kept (stderr
 * says so too). Zeros from a record's end to the end of a segment are its
 * preallocated tail (see log_prealloc_bytes): its clean end, cut off
 * quietly. A checkpoint deletes the one before it and the log it covers once
 * it reads back intact (one generation stays), so a checkpoint damaged
 * later, at rest, is CTX_CORRUPT. Where an older checkpoint and the log since
 * it are still there (a crash before those deletes, a failed read-back), a
 * damaged newest checkpoint is passed over; if every checkpoint is damaged
 * but the log is complete from revision 1, the state is rebuilt from the log
 * (stderr says so). See docs/file-format.md, "Recovery".
 * Errors: CTX_INVALID (out NULL, a limit out of range, durability NONE with a
 * dir but without unsafe_no_sync), CTX_IO (the directory cannot be created or
 * read, or another process or open store holds it: errno EWOULDBLOCK and
 * "locked" in the message; a torn tail cannot be cut; errno is kept), CTX_CORRUPT (damage in data that was synced, which
 * recovery must not skip: ctx_last_error names file and offset), CTX_NOMEM. */
ctx_status ctx_open(const ctx_options *o, ctx_store **out);

/* Close the store and free everything it owns. All other calls on s must have
 * returned (a ctx_watch_wait too), and every ctx_state, ctx_txn and ctx_iter
 * obtained from it must be released, and every ctx_watch, ctx_tracker,
 * ctx_session and ctx_notifier closed, first: they refer to the store, and
 * closing one after ctx_close touches freed memory. NULL is a no-op. */
void ctx_close(ctx_store *s);

/* Close the store as ctx_close does, for a process that exits right after
 * (ctxd's stop): the background threads end, and with a dir the final
 * checkpoint is written and the log is synced and closed, so every change
 * ctx_close would keep is kept, and the directory is unlocked for the next
 * ctx_open. But the contexts and their versions are not freed: that walks
 * every key and node of every version still held, about a microsecond a
 * key on a busy machine (a cache miss each), seconds to tens of seconds
 * for a store of millions of keys, for memory the process's exit gives
 * back at once. The store's memory stays allocated (and s unusable) until
 * the process exits; the same rules as ctx_close apply before the call.
 * In a build with AddressSanitizer (LeakSanitizer) it frees everything, as
 * ctx_close. NULL is a no-op. */
void ctx_close_at_exit(ctx_store *s);

/* Process-wide: whether libctx may give the memory of its versions (trie
 * nodes and leaves) transparent huge pages, where the kernel's THP mode is
 * "always" or "madvise". On by default: huge pages make a memory-bound
 * store's commits and reads faster (fewer TLB misses: docs/benchmarks.md,
 * round 20). Their cost is the first touch of each: 2 MiB zeroed at once
 * (~0.1-0.2 ms on bare metal, 1-5 ms in a VM whose host has not backed the
 * memory yet), paid by the commit that grows the store into it, so a
 * growing store's tail latency sees it. ctxd turns them off by default
 * (--huge-pages): one such pause holds every client of a loop. Takes effect
 * only before the process's first ctx_open (which sets the memory up):
 * returns true if the setting took, false if called after it (nothing
 * changes); a call racing the first open in another thread is one or the
 * other, never true with its setting unread. Thread-safe. (A build without
 * libctx's slab, as under AddressSanitizer, has nothing to set: true.) */
bool ctx_use_huge_pages(bool on);

/* Write a checkpoint now (stores with a dir; the background checkpointer
 * also writes one whenever the log grew by checkpoint_bytes, and ctx_close
 * writes a last one). Writers keep going while it is written. Once synced and
 * renamed into place it is read back from the disk and checked; only then are
 * the older checkpoint and the log segments it covers deleted, so the
 * directory holds one checkpoint plus the log since it. A no-op for a
 * memory-only store, and when nothing was logged since the last one.
 * Errors: CTX_INVALID (s NULL), CTX_IO (writing it failed, or it did not
 * read back intact: ctx_last_error says "read-back failed" and names the
 * file; nothing older was deleted), CTX_CLOSED (the log had failed: no
 * checkpoint is written), CTX_NOMEM. */
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
	uint64_t log_led_syncs;       /* of log_syncs, those run by a thread
	                                 that needed the sync itself (a waiting
	                                 commit, ctx_flush) instead of the
	                                 log's flusher thread                   */
} ctx_stats;
/* Fill *out (all zero for a NULL store; out NULL: a no-op). */
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
	                                 cut (an interrupted, unacknowledged write),
	                                 up to the last non-zero one (zeros after
	                                 it are the segment's preallocated tail)  */
	uint64_t torn_records;        /* intact records after the damage, cut
	                                 with it (kept aside in torn-*.bin)       */
	size_t contexts;              /* contexts recovery would give           */
	uint64_t keys;                /* keys in them                           */
	char message[512];            /* the problem found; or "ok", or "ok;
	                                 opening repairs: ..." saying what an
	                                 open would cut, keep aside, or rebuild */
} ctx_verify_report;

/* Check the data directory dir offline, exactly as opening it would, without
 * changing anything (a torn tail is counted, not cut, nor kept aside; the
 * message says what an open would do). Fills *report (if not
 * NULL). Returns CTX_OK if recovery would succeed, CTX_CORRUPT (message names
 * file and offset), CTX_IO (unreadable; or locked by an open store: errno
 * EWOULDBLOCK),
 * CTX_INVALID (dir NULL), CTX_NOMEM. */
ctx_status ctx_verify(const char *dir, ctx_verify_report *report);

/* ------------------------------------------------------------------------ */
/* Contexts                                                                  */

/* Create an empty context at version 1.
 * Errors: CTX_INVALID (bad id, s NULL), CTX_EXISTS, CTX_LIMIT (max_contexts
 * live contexts exist), CTX_IO (its fsync failed: outcome unknown, and the
 * context is not shown), CTX_CLOSED, CTX_NOMEM. */
ctx_status ctx_create(ctx_store *s, const char *id);

/* Drop a context and all its data. States already obtained stay valid.
 * Errors: CTX_INVALID, CTX_NOT_FOUND, CTX_IO (its fsync failed: outcome
 * unknown, and readers keep seeing the context), CTX_CLOSED, CTX_NOMEM. */
ctx_status ctx_drop(ctx_store *s, const char *id);

/* Number of live contexts in s. Never blocks. A context past its
 * time-to-live counts until the reaper has dropped it. */
size_t ctx_count(ctx_store *s);

/* How many contexts whose newest decided version (ctx_get_latest) has at
 * least one field: ctxd's DBSIZE, which does not count contexts without
 * fields as keys. Dropped contexts (a drop decided, durable or not) are not
 * counted, contexts past their time-to-live are not, and a context whose
 * create with fields is decided is counted from then on, before its sync.
 * O(1) (a counter the store keeps where a head gains its first field or
 * loses its last, or a context is dropped) while no time-to-live was ever
 * set in the store; after that, one walk of the context table taking one
 * reference per context (O(contexts)), which leaves out contexts past their
 * time-to-live that the reaper has not dropped yet. Changes made during the
 * call may or may not be counted. *revision_out (may be NULL): the last
 * revision handed out when the count was taken, at or above that of every
 * change the count reflects, counted or left out (an emptied or dropped
 * context too): what a reply built on the count depends on
 * (ctx_durable_revision). 0 for a NULL store; no errors. */
size_t ctx_count_with_fields(ctx_store *s, uint64_t *revision_out);

/* A page of context ids, as returned by ctx_list. */
typedef struct ctx_list {
	size_t count; /* number of ids                          */
	char **ids;   /* NUL-terminated ids, in byte order       */
} ctx_list;

/* List the ids of live contexts that start with prefix (NULL or "" = all), in
 * ascending byte order, starting after the id `after` (NULL = from the first),
 * at most limit of them (0 = no limit). To page through, pass the last id of
 * one page as `after` of the next. Free the result with ctx_list_free.
 * A page costs O(log n + limit) for n contexts (an ordered index of ids), not
 * O(n). Contexts past their time-to-live are left out (see ctx_set_ttl).
 * Never blocks writers and takes no lock. While contexts are created and
 * dropped, a page is still strictly ascending and a pass page by page lists
 * every context that existed throughout it, each once; contexts created or
 * dropped during the pass may or may not appear.
 * Errors: CTX_INVALID (s or out NULL), CTX_NOMEM. */
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

/* Copy the value of key (klen bytes) in the newest visible version of context
 * id into buf (cap bytes) and its length into *vlen: what ctx_get,
 * ctx_state_lookup, a copy and ctx_state_release do, without taking a
 * reference (no write to shared memory; the version cannot be freed while
 * the call reads it). Never blocks and takes no lock. A value longer than cap
 * is not copied: *vlen receives its length and the result is CTX_LIMIT (call
 * again with a buffer of *vlen bytes; the version may have changed by then).
 * Errors: CTX_INVALID (s NULL, a bad id, key NULL with klen > 0, vlen NULL,
 * buf NULL with cap > 0), CTX_NOT_FOUND (no such context, past its
 * time-to-live, or no such key: *vlen unchanged), CTX_LIMIT. */
ctx_status ctx_get_value(ctx_store *s, const char *id, const void *key, size_t klen,
                         void *buf, size_t cap, size_t *vlen);

/* Called by ctx_get_each for each pair; return true for the next one, false
 * to stop. key and val are valid only during the call. */
typedef bool (*ctx_pair_fn)(void *arg, const void *key, size_t klen, const void *val,
                            size_t vlen);

/* Call fn(arg, ...) for every pair of the newest visible version of context
 * id, in an unspecified order (the iterators'), without taking a reference:
 * the version cannot be freed during the call. fn runs inside the store's
 * read-side critical section, so it must be short and must not block, wait
 * for another thread, or call libctx (the store's memory reclamation waits
 * for such sections to end); to do more per pair, use ctx_get and an
 * iterator. Takes no lock. Stopping early (fn returns false) is CTX_OK.
 * Errors: CTX_INVALID (s NULL, a bad id, fn NULL), CTX_NOT_FOUND (no such
 * context, or past its time-to-live: fn is not called). */
ctx_status ctx_get_each(ctx_store *s, const char *id, ctx_pair_fn fn, void *arg);

/* Take another reference to st (for handing it to another thread); st
 * itself (NULL for NULL). */
ctx_state *ctx_state_retain(ctx_state *st);

/* Drop one reference; the version's memory is reclaimed when the last
 * reference goes. NULL is a no-op. */
void ctx_state_release(ctx_state *st);

/* The accessors below answer 0 (ctx_state_id: NULL) for a NULL st. */
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

/* Iterate over the metadata map of st instead. Errors: as ctx_iter_begin. */
ctx_status ctx_iter_meta_begin(const ctx_state *st, ctx_iter **out);

/* Advance to the next pair; false once all pairs have been seen. Pointers
 * stay valid until the iterator is freed. */
bool ctx_iter_next(ctx_iter *it, const void **key, size_t *klen,
                   const void **val, size_t *vlen);

/* Free the iterator and its reference. NULL is a no-op. */
void ctx_iter_free(ctx_iter *it);

/* An iterator in the caller's storage (on the stack, typically): no
 * allocation and no reference of its own, so the fastest way to read a whole
 * state. Its fields are private. */
typedef struct ctx_iter_stack {
	const void *priv_[32];
} ctx_iter_stack;

/* Start iterating the pairs of st (ctx_iter_meta_init: its metadata) with
 * it, in the order ctx_iter_begin gives. The caller must hold st for as long
 * as it uses it and the pointers it returns; there is nothing to free.
 * Errors: CTX_INVALID (it or st NULL; a non-NULL it then yields nothing). */
ctx_status ctx_iter_init(ctx_iter_stack *it, const ctx_state *st);
ctx_status ctx_iter_meta_init(ctx_iter_stack *it, const ctx_state *st);

/* Advance it to the next pair, as ctx_iter_next; false once all pairs have
 * been seen. Pointers stay valid as long as the state is held. */
bool ctx_iter_stack_next(ctx_iter_stack *it, const void **key, size_t *klen,
                         const void **val, size_t *vlen);

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

/* Set key to val in context id, as one commit. If version_out is not NULL, it
 * receives the new version. Unguarded: concurrent puts all apply.
 * Errors: CTX_INVALID (bad id, key or value size, NULL pointers, a change
 * too large for one log record), CTX_NOT_FOUND (no such context, or it was
 * dropped or expired), CTX_IO (durability always: its fsync failed; the
 * outcome is unknown, and the new version is not shown), CTX_CLOSED,
 * CTX_NOMEM. */
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

/* Start a transaction whose commit creates context id with the recorded
 * operations as its version 1, in one atomic commit (one log record, one
 * sync): readers see the context with all its data or not at all. Nothing
 * is checked against the store until the commit, which fails with
 * CTX_EXISTS if the id exists then, or CTX_LIMIT; its expected_version must
 * be 0 and its version_out is 1. Errors: CTX_INVALID, CTX_NOMEM. */
ctx_status ctx_txn_begin_create(ctx_store *s, const char *id, ctx_txn **out);

/* Start a transaction on the context that st is a version of, without
 * looking its id up again (for a caller that has just read st, e.g. with
 * ctx_get_latest, and commits guarded by ctx_state_version(st)). The
 * transaction is bound to that context as it was when st was read: if it is
 * dropped before the commit (even if a context of the same id is created
 * again), the commit fails with CTX_NOT_FOUND, where ctx_txn_begin by id
 * would apply to the new context. st stays the caller's to release. Unlike
 * ctx_txn_begin it does not count as use of a context with a time-to-live
 * (ctx_set_ttl; the read that gave st may, and the commit does); a context
 * that expired meanwhile fails the commit with CTX_NOT_FOUND.
 * Errors: CTX_INVALID (st or out NULL), CTX_NOMEM. */
ctx_status ctx_txn_begin_state(const ctx_state *st, ctx_txn **out);

/* Record a put or a delete in t. Operations apply in the order recorded (a
 * later put of the same key wins). Deleting an absent key is not an error: it
 * changes nothing. The data is copied.
 * Errors: CTX_INVALID (sizes, NULL t), CTX_NOMEM. A failed call leaves t as it
 * was, still usable. */
ctx_status ctx_txn_put(ctx_txn *t, const void *key, size_t klen, const void *val, size_t vlen);
ctx_status ctx_txn_del(ctx_txn *t, const void *key, size_t klen);

/* Record the removal of every key and metadata entry: the commit builds its
 * version from empty maps instead of from the newest version's, then applies
 * the operations recorded after this call (those recorded before it are
 * discarded: they would be removed anyway). It replaces the deletion of
 * every key one by one (what a Redis DEL followed by writes of the same key
 * is): the commit costs O(operations) under the context's lock, whatever the
 * size of the version it replaces, and its log record holds the operations
 * only (a CLEAR record, docs/file-format.md). That version's data is not
 * walked or freed by the commit: it stays in history as any version does,
 * and is freed in the background when it leaves it. Watchers are told
 * every key the commit changes, found by a diff of the two versions, O(keys
 * of both), with no lock held (by the committer for ctx_txn_commit, by a
 * background thread for ctx_txn_commit_nowait: later events wait for it, so
 * delivery stays in revision order), and only while a watch is open or
 * watch_keep_history is set: a watch that opens as the commit is reported
 * may get its event with the keys of its operations only. The version's
 * keys_changed (ctx_history) is exact, found in O(operations). In a create
 * transaction it only discards the operations recorded before.
 * Errors: CTX_INVALID (t NULL). */
ctx_status ctx_txn_clear(ctx_txn *t);

/* The same for metadata entries. */
ctx_status ctx_txn_meta_put(ctx_txn *t, const void *name, size_t nlen, const void *val,
                            size_t vlen);
ctx_status ctx_txn_meta_del(ctx_txn *t, const void *name, size_t nlen);

/* Commit all recorded operations atomically as one new version: readers see
 * either none or all of them. If expected_version is not 0 and the context's
 * newest version differs, nothing changes and the result is CTX_CONFLICT.
 * Under durability always, the newest version can be ahead of the one
 * ctx_get shows while its sync is pending: a guarded commit that expected
 * the shown version then waits until the newer one is shown before it
 * answers CTX_CONFLICT, so that the caller's retry reads it. For
 * read-modify-write loops, read with ctx_get_latest instead: the guarded
 * commit then meets no pending version and returns once its own change
 * (and so the version it was built on) is durable; such a loop needs about
 * one attempt per success. One built on ctx_get succeeds only in the moment
 * between a durable sync and the next commit of any other writer: with one
 * writer committing back to back beside it, it took 50 to 3,800 attempts
 * per success, depending on scheduling (tests/test_nowait.c and ctxfeatures
 * measure both).
 * An empty transaction still makes a new version. Frees t, whatever the
 * result. On success *version_out (if not NULL) is the new version.
 * Errors: CTX_CONFLICT, CTX_NOT_FOUND (context dropped or expired),
 * CTX_EXISTS and CTX_LIMIT (a create: see ctx_txn_begin_create), CTX_INVALID
 * (t NULL, a create with an expected version, a change too large for one
 * log record), CTX_IO (as ctx_put), CTX_CLOSED (also in place of
 * CTX_CONFLICT once the log has failed: no retry could succeed), CTX_NOMEM. */
ctx_status ctx_txn_commit(ctx_txn *t, uint64_t expected_version, uint64_t *version_out);

/* Discard t without committing. NULL is a no-op. */
void ctx_txn_abort(ctx_txn *t);

/* ------------------------------------------------------------------------ */
/* Committing without waiting: for event loops (the ctxd server)             */
/*
 * An event loop must never wait for an fsync. These calls decide a change at
 * once and let the caller learn later, through a pollable file descriptor,
 * when it may be acknowledged.
 *
 * SEMANTICS
 *   A change committed with ctx_txn_commit_nowait (or dropped with
 *   ctx_drop_nowait) has its version and revision decided when the call
 *   returns: later commits to the context build on it, and it is in the log
 *   ahead of them. It becomes visible to ctx_get, and is reported to
 *   watchers, only once it is durable, exactly like a change made by
 *   ctx_txn_commit. The caller may acknowledge it once
 *   ctx_durable_revision() reaches its revision; before that a crash may
 *   lose it (and then everything after it: durability is a prefix of the
 *   revision order).
 *
 *   ctx_get_latest reads the newest decided version, which may not be
 *   durable yet. A server that answers a read from it must hold the answer
 *   until ctx_durable_revision() reaches ctx_state_revision() of that state,
 *   as it holds a write's reply: then no client ever sees a change that could
 *   still be lost, a client sees its own writes, and a guarded commit built
 *   on the latest version does not conflict with a pending one.
 *
 *   Under CTX_DURABILITY_BATCH and NONE, and for memory-only stores, every
 *   revision may be acknowledged as soon as it is handed out (that is what
 *   those modes promise), so ctx_durable_revision() is already at the
 *   returned revision.
 */

/* Commit t as ctx_txn_commit does (same checks, same errors, t is freed),
 * but return as soon as the new version is decided, without waiting for it
 * to be durable. *version_out and *revision_out (each may be NULL) receive
 * the new version and its store-wide revision. No automatic recovery point
 * is made (auto_point_every applies to waiting commits only). It waits only
 * while the log holds more than ctx_options.log_backlog_bytes not yet
 * durable (a disk slower than the writers), before it decides anything.
 * Errors: as ctx_txn_commit, except CTX_IO: it does not wait, so a failed
 * fsync shows in ctx_durable_revision instead. */
ctx_status ctx_txn_commit_nowait(ctx_txn *t, uint64_t expected_version, uint64_t *version_out,
                                 uint64_t *revision_out);

/* Drop context id as ctx_drop does, without waiting: *revision_out (may be
 * NULL) receives the drop's revision. The context is gone for
 * ctx_get_latest, writes and ctx_list_ids at once; ctx_get keeps showing its
 * last version until the drop is durable. A create of the same id meanwhile
 * (ctx_create, or a commit of ctx_txn_begin_create, nowait or not) waits
 * until the drop is durable, then creates: it never fails with CTX_EXISTS
 * because of a decided drop. Errors: as ctx_drop, except CTX_IO (it does
 * not wait). */
ctx_status ctx_drop_nowait(ctx_store *s, const char *id, uint64_t *revision_out);

/* Take the newest decided version of context id into *out, durable or not
 * (see SEMANTICS above). Never blocks. Errors: CTX_INVALID, CTX_NOT_FOUND
 * (no such context, or its drop is decided, or it expired). */
ctx_status ctx_get_latest(ctx_store *s, const char *id, ctx_state **out);

/* A hint: the caller is about to read or write the contexts ids[0..n-1]
 * (idlens[i] bytes each; no NUL needed), e.g. the keys of the requests of
 * one pipelined read. Starts loading into the cache what finding each one
 * and its newest version touches (the table slot, the context, the
 * version), all ids stage by stage, so that the cache misses of n
 * lookups overlap instead of following each other. Changes nothing and
 * takes no reference: ids that name no context, or contexts changed or
 * dropped meanwhile, only make the hint useless. Has no errors (NULL
 * arguments, NULL entries of ids and lengths no id can have are ignored). */
void ctx_prefetch(ctx_store *s, const char *const *ids, const size_t *idlens, size_t n);

/* ctx_prefetch, and then the path to key keys[i] (klens[i] bytes; NULL: no
 * key for that id) in the trie of each context's newest version, level by
 * level over all of them (the first levels: enough for contexts of tens of
 * thousands of keys), e.g. the field of each HGET or HINCRBY of a read. A
 * hint as ctx_prefetch is: changes nothing, no errors (NULL arguments are
 * ignored; keys NULL is ctx_prefetch). */
void ctx_prefetch_keys(ctx_store *s, const char *const *ids, const size_t *idlens,
                       const void *const *keys, const size_t *klens, size_t n);

/* Set *revision to the highest revision that may be acknowledged (see
 * SEMANTICS). Never blocks. Returns CTX_OK, or CTX_IO once the log has
 * failed: revisions above *revision will then never become durable, and the
 * store refuses writes. Errors: CTX_INVALID (s or revision NULL), CTX_IO. */
ctx_status ctx_durable_revision(ctx_store *s, uint64_t *revision);

/* Under durability always: if no sync of the log is running and changes
 * are decided but not yet written, write and sync them on the calling thread
 * now (as the waiting commit that finds the disk idle does), then return;
 * if a sync is running, return at once: its thread, or the log's flusher,
 * takes them next. So an event loop that parked replies can sync them
 * itself at the end of its turn, as Redis's does, instead of handing them
 * to the flusher thread and being woken back (two wake-ups on other CPUs
 * per turn); it blocks for one fsync. A no-op under batch and none.
 * Errors: CTX_INVALID (s NULL), CTX_IO (the log failed, now or before). */
ctx_status ctx_flush(ctx_store *s);

/* Under durability always, while on: the changes the calling thread decides
 * without waiting (ctx_txn_commit_nowait, ctx_drop_nowait and the like) do
 * not wake the log's flusher thread; the thread must call ctx_flush (or a
 * waiting write) before it waits for anything, or they may stay unwritten
 * until another write comes. Off (the default), or under batch and none,
 * they do. Per thread, for one store at a time (turning it on for another
 * store turns it off for the first); turn it off before closing s. No
 * errors (s NULL: a no-op). */
void ctx_flush_defer(ctx_store *s, bool on);

/* A pollable signal that the durable revision advanced (or the log failed).
 * Open one per event loop: each has its own file descriptor (an eventfd).
 * Errors: CTX_INVALID, CTX_IO (no eventfd), CTX_NOMEM. */
typedef struct ctx_notifier ctx_notifier;
ctx_status ctx_notifier_open(ctx_store *s, ctx_notifier **out);

/* The descriptor: readable after ctx_durable_revision() may have advanced.
 * Do not read or close it; call ctx_notifier_clear when it is readable. */
int ctx_notifier_fd(const ctx_notifier *n);

/* Make the descriptor readable only after a synced batch that brings the
 * durable revision to rev or beyond (or after a failure of the log), not
 * after every batch: rev 0 (the default) signals after every batch,
 * UINT64_MAX only on a failure. To wait for rev without losing a signal:
 * ctx_notifier_want(n, rev), then read ctx_durable_revision(); if it is
 * below rev, the descriptor becomes readable once rev is durable. Call from
 * one thread per notifier (its loop's). */
void ctx_notifier_want(ctx_notifier *n, uint64_t rev);

/* Make the descriptor unreadable again; then read ctx_durable_revision().
 * (A signal that arrives between the two leaves it readable, so none is
 * lost.) */
void ctx_notifier_clear(ctx_notifier *n);

/* Stop signalling and free n. NULL is a no-op. Close every notifier before
 * ctx_close. */
void ctx_notifier_close(ctx_notifier *n);

/* ------------------------------------------------------------------------ */
/* History and diffs                                                         */

/* Take version `version` of context id, if it is still kept: one of the last
 * history_depth versions, or a version a recovery point pins.
 * Errors: CTX_INVALID, CTX_NOT_FOUND (no such context, or the version has
 * left history or never existed). */
ctx_status ctx_get_at(ctx_store *s, const char *id, uint64_t version, ctx_state **out);

/* One kept version, as listed by ctx_history. */
typedef struct ctx_history_entry {
	uint64_t version;
	uint64_t revision;
	uint64_t time_us;    /* its commit time                               */
	size_t keys_changed; /* keys added, changed or removed by its commit   */
	bool pinned;         /* a recovery point pins it                       */
} ctx_history_entry;

/* The kept versions of context id, oldest first, in a malloc'd array the
 * caller frees with free(). Errors: CTX_INVALID, CTX_NOT_FOUND, CTX_NOMEM. */
ctx_status ctx_history(ctx_store *s, const char *id, ctx_history_entry **out, size_t *count);

/* When a key of a state was last set: the commit time of the version that
 * put its current value. False if the key is absent. */
bool ctx_state_key_time(const ctx_state *st, const void *key, size_t klen, uint64_t *time_us);

typedef enum ctx_change_kind { CTX_ADDED, CTX_CHANGED, CTX_REMOVED } ctx_change_kind;

/* One difference between two states. Values of the side that lacks the key
 * are NULL with length 0. */
typedef struct ctx_change {
	ctx_change_kind kind;
	const void *key;
	size_t klen;
	const void *old_value;
	size_t old_len;
	const void *new_value;
	size_t new_len;
} ctx_change;

typedef struct ctx_diff ctx_diff;

/* The keys added, changed and removed going from `from` to `to`, in key order
 * (bytewise, shorter first on a common prefix). Both states should be
 * versions of one context: the cost then grows with the number of changed
 * keys, not with the size of the context, because unchanged parts are shared
 * and skipped. The diff holds references to both states. Errors:
 * CTX_INVALID, CTX_NOMEM. */
ctx_status ctx_diff_states(const ctx_state *from, const ctx_state *to, ctx_diff **out);
size_t ctx_diff_count(const ctx_diff *d);
const ctx_change *ctx_diff_get(const ctx_diff *d, size_t i); /* NULL past the end */
void ctx_diff_free(ctx_diff *d);

/* ------------------------------------------------------------------------ */
/* Recovery points and restore                                               */

#define CTX_LABEL_MAX 64 /* longest point label, bytes */

typedef struct ctx_point {
	uint64_t version;  /* the version it pins                          */
	uint64_t time_us;  /* when the point was made                      */
	size_t keys;       /* keys in that version                         */
	size_t bytes;      /* key and value bytes in that version          */
	uint64_t checksum; /* of the version's content (order-independent)  */
	char label[CTX_LABEL_MAX + 1]; /* "" if none                        */
} ctx_point;

/* Pin the newest version of context id as a recovery point, with an optional
 * label (NULL or "" = none; at most CTX_LABEL_MAX bytes, no control bytes).
 * Costs O(1) in the size of the context. If the context has max_points
 * points already, the oldest is removed. Persistent with a data directory.
 * Under durability always the new point (and the removal of the oldest) is
 * shown - by ctx_point_list, ctx_history, ctx_get_at, the status view - only
 * once durable, like a commit: when the call returns CTX_OK, and never if
 * it returns CTX_IO. *version_out (if not NULL) receives the pinned version.
 * Errors: CTX_INVALID (bad id or label), CTX_NOT_FOUND, CTX_IO (its fsync
 * failed: outcome unknown, the point is not shown), CTX_CLOSED, CTX_NOMEM. */
ctx_status ctx_point_create(ctx_store *s, const char *id, const char *label,
                            uint64_t *version_out);

/* The points of context id, oldest first, in a malloc'd array to free().
 * Errors: CTX_INVALID, CTX_NOT_FOUND, CTX_NOMEM. */
ctx_status ctx_point_list(ctx_store *s, const char *id, ctx_point **out, size_t *count);

/* Remove the point on `version`; under durability always, readers stop
 * seeing it once the removal is durable (as ctx_point_create).
 * Errors: CTX_INVALID, CTX_NOT_FOUND (no such context or point), CTX_IO (its
 * fsync failed: outcome unknown, the point is still shown), CTX_CLOSED,
 * CTX_NOMEM. */
ctx_status ctx_point_delete(ctx_store *s, const char *id, uint64_t version);

/* Make the data and metadata of `version` (a point, or any version still in
 * history) the newest version of context id. A restore is a commit: it makes
 * version + 1 of the current newest, readers and watchers see it (watchers as
 * CTX_EVENT_RESTORED), and another restore can undo it. Under the context's
 * write lock it costs O(1) in the size of the context and of the change, with
 * or without a data directory (the log record names the restored version
 * instead of copying it); the keys it changes, which watchers are told, are
 * found without the lock in O(changed keys). A point whose checksum does not
 * match its content is refused. After a crash, replaying a restore needs the
 * version it restored: reopen with history_depth and max_points no smaller
 * than when it was made (else CTX_CORRUPT naming the record).
 * Errors: CTX_INVALID, CTX_NOT_FOUND (no such context or version),
 * CTX_CORRUPT (the point is damaged; ctx_last_error names it), CTX_IO (as
 * ctx_put), CTX_CLOSED, CTX_NOMEM. */
ctx_status ctx_restore(ctx_store *s, const char *id, uint64_t version, uint64_t *new_version_out);

/* Restore the newest point; the newest point with this label; the newest
 * point made at or before time_us. Errors as ctx_restore; CTX_NOT_FOUND if
 * no point matches. */
ctx_status ctx_restore_latest(ctx_store *s, const char *id, uint64_t *new_version_out);
ctx_status ctx_restore_label(ctx_store *s, const char *id, const char *label,
                             uint64_t *new_version_out);
ctx_status ctx_restore_before(ctx_store *s, const char *id, uint64_t time_us,
                              uint64_t *new_version_out);

/* ------------------------------------------------------------------------ */
/* Watches                                                                   */

typedef enum ctx_event_kind {
	CTX_EVENT_CREATED,
	CTX_EVENT_COMMITTED,
	CTX_EVENT_RESTORED,
	CTX_EVENT_DROPPED,
	CTX_EVENT_EXPIRED,
	CTX_EVENT_LAGGED /* the watcher fell behind (watch_queue), or what it
	                    had not read left the event history: events from
	                    resume_from on are not delivered to it; open a
	                    watch from there (refused if no longer held), then
	                    close this one (a lagged watch still counts as open,
	                    so the history is kept meanwhile). Its revision is
	                    resume_from, its id the watch's id or prefix, its
	                    version 0 */
} ctx_event_kind;

typedef struct ctx_event {
	ctx_event_kind kind;
	uint64_t revision;    /* store-wide order                             */
	uint64_t version;     /* the context's version after the change (0 for
	                         dropped and expired)                          */
	const char *id;       /* the context                                  */
	size_t nkeys;         /* committed/restored: the keys changed          */
	const void *const *keys;
	const size_t *klens;
	uint64_t resume_from; /* CTX_EVENT_LAGGED: first revision missed      */
} ctx_event;

typedef struct ctx_watch ctx_watch;

/* Watch the context `id`, or (prefix = true) every context whose id starts
 * with `id` ("" = all). from_revision 0 = changes from now on (every
 * change reported after the watch is registered: a commit decided just
 * before the open but reported after it, by a writer preempted in between,
 * may be delivered although later revisions reported before the open are
 * not, so the first event's revision can be below what ctx_get showed at
 * the open; to miss nothing, pass a revision instead); otherwise
 * every change with a revision >= from_revision, which the store must still
 * hold in its event history: the last watch_history revisions, within
 * watch_history_bytes (the oldest are evicted first), and - unless
 * watch_keep_history - only revisions committed while at least one watch was
 * open (the history is emptied when the last watch closes). A revision not
 * yet committed is always held. Events arrive in revision order, each once,
 * and only once durable: under durability batch too, an event waits for
 * the sync that covers it (at most batch_ms), although readers see the
 * change at once. Errors: CTX_INVALID, CTX_NOT_FOUND (from_revision is not
 * held: "compacted"; ctx_last_error names the oldest revision held, or the
 * newer revision committed while no watch was open; nothing is delivered),
 * CTX_NOMEM, CTX_IO (no eventfd). */
ctx_status ctx_watch_open(ctx_store *s, const char *id, bool prefix, uint64_t from_revision,
                          ctx_watch **out);

/* A file descriptor that is readable while events are pending (for poll,
 * epoll, libuv). Do not read or close it; ctx_watch_next clears it. It may
 * now and then be readable with nothing pending (ctx_watch_next then says
 * CTX_NOT_FOUND), never the other way round - but for the moment it takes
 * to wake it: when more than two watches of the store wait with nothing
 * pending, a commit leaves waking them to a thread of the store's, which
 * gathers commits and then makes their descriptors readable, instead of the
 * commit doing it (ctx_watch_next finds the event at once either way). It
 * gathers for about 0.1 ms after a pause of 8 ms or more, and while commits
 * keep coming, twice as long as the last time, up to 2 ms: a commit's
 * descriptor is readable within about 0.1 ms after a pause, and within about
 * 2 ms while commits stream (ctx_watch_wait wakes as the descriptor does). */
int ctx_watch_fd(const ctx_watch *w);

/* Take the next pending event, without waiting. Free it with
 * ctx_event_free. After CTX_EVENT_LAGGED the watch delivers nothing more.
 * Errors: CTX_INVALID (w or out NULL), CTX_NOT_FOUND (none pending). */
ctx_status ctx_watch_next(ctx_watch *w, ctx_event **out);

/* Wait up to timeout_ms (-1, or any negative value, = forever) for an event, then take it as
 * ctx_watch_next. Errors: CTX_INVALID (w or out NULL), CTX_NOT_FOUND (the
 * timeout passed), CTX_IO (poll failed; errno kept). */
ctx_status ctx_watch_wait(ctx_watch *w, int timeout_ms, ctx_event **out);

/* Free an event taken from a watch. NULL is a no-op. */
void ctx_event_free(ctx_event *e);

/* Stop watching and free w with its pending events; its fd is closed. Call
 * it before ctx_close, with no ctx_watch_wait on w in progress. NULL is a
 * no-op. */
void ctx_watch_close(ctx_watch *w);

/* ------------------------------------------------------------------------ */
/* Trackers: working copies with sync and conflict resolution                */

typedef enum ctx_merge_strategy {
	CTX_MERGE_LATEST,   /* the most recent change of the key wins         */
	CTX_MERGE_OLDEST,   /* the earliest change wins                      */
	CTX_MERGE_FUNCTION, /* the merge function decides per key            */
	CTX_MERGE_MANUAL    /* nothing is committed while conflicts remain   */
} ctx_merge_strategy;

/* One side of a conflict: present = false means deleted (or never there). */
typedef struct ctx_merge_value {
	bool present;
	const void *value;
	size_t len;
	uint64_t time_us; /* when this side changed the key (base: 0)       */
} ctx_merge_value;

typedef struct ctx_conflict {
	const void *key;
	size_t klen;
	ctx_merge_value base, local, current;
} ctx_conflict;

/* Decide one conflict: set *out (present, value, len) to what the key gets.
 * out->value must stay valid until the sync returns (point into the
 * conflict's values, or into memory the caller owns). Return CTX_OK, or any
 * other status to fail the sync with it. Called with no lock held. */
typedef ctx_status (*ctx_merge_fn)(void *arg, const ctx_conflict *c, ctx_merge_value *out);

typedef struct ctx_tracker_options {
	ctx_merge_strategy strategy;
	ctx_merge_fn merge;        /* CTX_MERGE_FUNCTION                       */
	void *merge_arg;
	unsigned sync_interval_ms; /* also sync on a timer; 0 = only on demand */
	bool point_on_sync;        /* a recovery point after each sync          */
} ctx_tracker_options;

typedef struct ctx_tracker ctx_tracker;

/* Track context id: a working copy based on its newest version. o NULL =
 * strategy latest, no timer. Errors: CTX_INVALID, CTX_NOT_FOUND, CTX_NOMEM. */
ctx_status ctx_tracker_open(ctx_store *s, const char *id, const ctx_tracker_options *o,
                            ctx_tracker **out);

/* Local edits, kept in the working copy until a sync. Errors: CTX_INVALID
 * (t NULL, key or value outside the store's limits), CTX_NOT_FOUND (the context was
 * dropped, or dropped and created again: a context created again under the
 * same id is another context, however soon), CTX_NOMEM. */
ctx_status ctx_tracker_put(ctx_tracker *t, const void *key, size_t klen, const void *val,
                           size_t vlen);
ctx_status ctx_tracker_del(ctx_tracker *t, const void *key, size_t klen);

/* Read the working copy (base plus local edits). The value is copied into a
 * malloc'd buffer the caller frees. Errors: CTX_INVALID (t, val or vlen
 * NULL, or key NULL with a length), CTX_NOT_FOUND (no such key), CTX_NOMEM. */
ctx_status ctx_tracker_get(ctx_tracker *t, const void *key, size_t klen, void **val,
                           size_t *vlen);

uint64_t ctx_tracker_base_version(ctx_tracker *t);
size_t ctx_tracker_pending(ctx_tracker *t); /* local edits not yet synced */

/* The bytes of memory the local edits not yet synced hold: their keys and
 * values, the tracker's record of each and its table (an upper bound: a
 * value two edits share counts twice; a base value read from a version
 * counts nothing, as that version's memory is the store's). O(1). It grows
 * with ctx_tracker_put/del of new keys and bigger values, and falls back
 * to what later edits hold once a sync or refresh takes the rest; a bound
 * on a tracker's edits is this figure checked before each edit. 0 for
 * NULL. */
size_t ctx_tracker_pending_bytes(ctx_tracker *t);

/* Of ctx_tracker_pending_bytes, what the unsynced edit of one key holds
 * (its record, key, local and base values), 0 if the key has none (or t is
 * NULL). A put or del of that key replaces it: a bound checked before an
 * edit subtracts this, so that an edit that shrinks a key's value is never
 * refused for the bytes it gives back. O(1) on average. */
size_t ctx_tracker_edit_bytes(ctx_tracker *t, const void *key, size_t klen);

/* Whether the context has moved past the tracker's base version. */
bool ctx_tracker_is_stale(ctx_tracker *t);

/* Rebase onto the newest version, keeping local edits (no commit). Fails
 * with CTX_CONFLICT, changing nothing, if a locally edited key was changed
 * differently on both sides: sync resolves those. Errors: CTX_CONFLICT,
 * CTX_NOT_FOUND (the context was dropped, or dropped and created again),
 * CTX_INVALID (t NULL, or called from inside the merge function). */
ctx_status ctx_tracker_refresh(ctx_tracker *t);

/* Three-way merge of base, local edits and the newest version, committed as
 * one version guarded by the version merged against (redone if another
 * writer got in first). Changes on one side apply; a key changed on both
 * sides to different values is resolved by the strategy. Under
 * CTX_MERGE_MANUAL with conflicts, nothing is committed and the result is
 * CTX_CONFLICT: ctx_tracker_conflicts lists them; resolve each with a
 * tracker put/del or ctx_tracker_resolve, then sync again. On success the
 * tracker is based on the new version with no pending edits, and
 * *version_out (if not NULL) is that version (the base, if nothing was
 * pending). If the commit succeeded but point_on_sync's point could not be
 * made, the result is still CTX_OK and ctx_last_error() says why. Calling
 * sync or refresh from inside the merge function is CTX_INVALID.
 * Errors: CTX_CONFLICT, CTX_NOT_FOUND (context dropped, or dropped and
 * created again: nothing is written to the new context), the merge
 * function's status, CTX_INVALID (t NULL, called from inside the merge
 * function, strategy function without a merge function, a merged value
 * that is NULL with a length or outside the store's limits), CTX_IO (as
 * ctx_put), CTX_CLOSED, CTX_NOMEM. */
ctx_status ctx_tracker_sync(ctx_tracker *t, uint64_t *version_out);

/* The conflicts of the last manual sync still unresolved. The array stays
 * valid until the next ctx_tracker_conflicts or ctx_tracker_close, so the
 * caller may resolve while walking it. */
size_t ctx_tracker_conflicts(ctx_tracker *t, const ctx_conflict **out);

/* Resolve a conflict of a manual sync by taking the current (take_local =
 * false) or the local value. Errors: CTX_INVALID (t NULL, or key NULL
 * with a length), CTX_NOT_FOUND (no such conflict), CTX_NOMEM (only while a
 * sync runs: the resolution then goes to a copy of the edit). */
ctx_status ctx_tracker_resolve(ctx_tracker *t, const void *key, size_t klen, bool take_local);

/* Stop the timer, discard unsynced edits, free t. NULL is a no-op. */
void ctx_tracker_close(ctx_tracker *t);

/* ------------------------------------------------------------------------ */
/* Sessions and expiry                                                       */

typedef struct ctx_session ctx_session;

/* A per-client handle with an active context. Errors: CTX_INVALID, CTX_NOMEM. */
ctx_status ctx_session_open(ctx_store *s, ctx_session **out);
void ctx_session_close(ctx_session *se);

/* Make id the session's active context (it must exist; create = true
 * creates it if missing). Errors: CTX_INVALID, CTX_NOT_FOUND, and with
 * create as ctx_create: CTX_LIMIT, CTX_IO, CTX_CLOSED; CTX_NOMEM. */
ctx_status ctx_session_activate(ctx_session *se, const char *id, bool create);

/* The active context's id, or NULL. Valid until the next activate/close. */
const char *ctx_session_current(const ctx_session *se);

/* The newest version of the active context. Errors: CTX_INVALID (se or
 * out NULL), CTX_NOT_FOUND (none active, or it was dropped or expired). */
ctx_status ctx_session_get(ctx_session *se, ctx_state **out);

/* One context, in the status view. */
typedef struct ctx_context_status {
	char id[CTX_ID_MAX + 1];
	uint64_t version;
	size_t keys;
	size_t bytes;
	uint64_t created_us;
	uint64_t last_access_us; /* last commit, or last read of a context with
	                            a time-to-live */
	uint64_t ttl_ms;         /* idle time-to-live, 0 = none               */
	size_t points;
} ctx_context_status;

/* The status of every live context, sorted by id, in a malloc'd array to
 * free(); contexts past their time-to-live, and contexts whose drop is
 * decided (ctx_drop_nowait) but not yet durable, are left out, as in
 * ctx_list_ids. Takes no lock.
 * Errors: CTX_INVALID, CTX_NOMEM. */
ctx_status ctx_status_view(ctx_store *s, ctx_context_status **out, size_t *count);

/* The status of context id alone, as ctx_status_view would list it (its
 * version is the one ctx_get returns): O(1) (one table lookup), takes no
 * lock, and is no access (it notes no time, so it never keeps a context
 * with a time-to-live alive).
 * Errors: CTX_INVALID (NULL store or output, bad id), CTX_NOT_FOUND (no
 * such context, it expired, its creation is not durable yet, or its drop is
 * decided). */
ctx_status ctx_context_info(ctx_store *s, const char *id, ctx_context_status *out);

/* Give context id an idle time-to-live (0 = none): once nobody read or wrote
 * it for ttl_ms (on the store's clock), it expires. Persistent with a dir.
 *
 * An expired context is gone for every call at once, whether or not the
 * background reaper has dropped it yet: ctx_get, ctx_get_at, ctx_history,
 * ctx_point_create/list/delete, every restore, ctx_put, ctx_del,
 * ctx_txn_begin, ctx_txn_commit (of a transaction begun before), ctx_set_ttl,
 * ctx_drop, ctx_tracker_open and a tracker's edits, sync and refresh, and
 * ctx_session_activate/get return CTX_NOT_FOUND; ctx_list_ids and
 * ctx_status_view leave it out; nothing brings it back (ctx_create of its id
 * makes a new, empty context). The first call that meets it wakes the
 * reaper, which drops it durably (watchers see CTX_EVENT_EXPIRED, never
 * CTX_EVENT_DROPPED); until then only ctx_count still counts it. Reads count
 * as use (ctx_get, ctx_get_at, ctx_history, ctx_point_list: at most once a
 * millisecond), and so do commits, points and ctx_txn_begin (even if the
 * transaction then commits nothing); listings do not.
 * Under durability always the time-to-live takes effect (for expiry and
 * the status view) only once durable: when the call returns CTX_OK, and
 * never if it returns CTX_IO.
 * Errors: CTX_INVALID (bad id, ttl_ms above UINT64_MAX / 1000),
 * CTX_NOT_FOUND (no such context, or it expired), CTX_IO (its fsync failed:
 * outcome unknown, the time-to-live does not apply), CTX_CLOSED, CTX_NOMEM. */
ctx_status ctx_set_ttl(ctx_store *s, const char *id, uint64_t ttl_ms);

/* Run the reaper now (tests with a fake clock). Returns how many expired. */
size_t ctx_expire_now(ctx_store *s);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* CTX_H */
