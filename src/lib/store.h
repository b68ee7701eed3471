/*
 * store.h - the private shape of a store, its contexts and their states.
 *
 * LOCKS (the whole list; there is no other lock in libctx)
 *   context.write_lock   serializes commits to one context and guards its head
 *                        and its dropped flag. Held only for the in-memory part
 *                        of a commit: never across I/O or user code. Nothing
 *                        else is locked while it is held, except:
 *   store.index.lock     serializes creates and drops in the table of
 *                        contexts and the ordered index of ids (index.c): a
 *                        probe of the table, one O(log n) search and a few
 *                        pointer stores (and, while the table grows, a
 *                        step of moving the old array's slots into the new
 *                        one: at least 16 slots, O(1) per insert; the
 *                        rebuild is spread over the inserts after it).
 *                        Taken under a context's write lock
 *                        (write_lock, then index.lock); nothing is taken
 *                        under it.
 *   One more nesting: a create holds its new context's write lock (nobody
 *   else can reach that context yet) while it waits out an old context of
 *   the same id: whose create or drop is not durable yet (it may wait for
 *   the log then), or that expired (it drops it, taking the old one's write
 *   lock). No thread can hold the old one's lock and wait for the new one.
 * Readers take no lock: the table of contexts is an RCU hash table (open
 * addressing, store.c), the index is a skip list read under RCU (listing), a context's
 * visible version is an atomic pointer, and versions are
 * immutable and reference counted. A version's struct is freed only after an
 * RCU grace period, so that a reader may try to take a reference to a version
 * that is being replaced and learn that it lost the race (refs already 0);
 * its trie too, if a read without a reference (ctx_get_value, ctx_get_each)
 * may still be in it (state.c).
 */
#ifndef CTX_STORE_H
#define CTX_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "hamt.h"
#include "index.h"
#include "rcu.h"

typedef struct ctx_context ctx_context;

/* A context's write lock: one 32-bit word, 0 free, 1 held, 2 held with
 * sleepers (a futex; Drepper's "mutex 2"). A pthread_mutex_t was 40 bytes
 * of every context and took more instructions per commit for features the
 * write lock does not use (owner, type, robustness). Taking it: a
 * compare-and-swap; when held, a short spin (the holder's commit is well
 * under a microsecond when it runs), then sleeps on the word. Releasing
 * it: one exchange, and a wake only when someone sleeps. Acquire and
 * release orderings make it a lock for the memory model. Only
 * through these functions: the slow paths are in txn.c. Not recursive; no
 * owner is recorded. */
typedef struct ctx_wlock {
	atomic_uint word;
} ctx_wlock;

void wlock_lock_slow(ctx_wlock *l);
void wlock_wake(ctx_wlock *l);

/* Under ThreadSanitizer the word is announced as a mutex, so that TSan
 * checks the lock order (store.h's LOCKS) and unlocks by non-holders as it
 * does for pthread mutexes; elsewhere these are nothing. */
#ifdef CTX_TSAN
void __tsan_mutex_pre_lock(void *addr, unsigned flags);
void __tsan_mutex_post_lock(void *addr, unsigned flags, int recursion);
int __tsan_mutex_pre_unlock(void *addr, unsigned flags);
void __tsan_mutex_post_unlock(void *addr, unsigned flags);
void __tsan_mutex_destroy(void *addr, unsigned flags);
#define wlock_tsan_pre_lock(l)    __tsan_mutex_pre_lock((l), 0)
#define wlock_tsan_post_lock(l)   __tsan_mutex_post_lock((l), 0, 0)
#define wlock_tsan_pre_unlock(l)  ((void)__tsan_mutex_pre_unlock((l), 0))
#define wlock_tsan_post_unlock(l) __tsan_mutex_post_unlock((l), 0)
#define wlock_destroy(l)          __tsan_mutex_destroy((l), 0)
#define wlock_tsan_pre_trylock(l) __tsan_mutex_pre_lock((l), 1u << 4)
#define wlock_tsan_post_trylock(l, got)                                                            \
	__tsan_mutex_post_lock((l), (got) ? 1u << 4 : (1u << 4) | (1u << 5), 0)
#else
#define wlock_tsan_pre_lock(l)          ((void)(l))
#define wlock_tsan_post_lock(l)         ((void)(l))
#define wlock_tsan_pre_unlock(l)        ((void)(l))
#define wlock_tsan_post_unlock(l)       ((void)(l))
#define wlock_destroy(l)                ((void)(l))
#define wlock_tsan_pre_trylock(l)       ((void)(l))
#define wlock_tsan_post_trylock(l, got) ((void)(l), (void)(got))
#endif

static inline void wlock_init(ctx_wlock *l)
{
	atomic_init(&l->word, 0);
}

static inline void wlock_lock(ctx_wlock *l)
{
	unsigned free_ = 0;
	wlock_tsan_pre_lock(l);
	if (__builtin_expect(!atomic_compare_exchange_strong_explicit(
	                         &l->word, &free_, 1, memory_order_acquire, memory_order_relaxed),
	                     0))
		wlock_lock_slow(l);
	wlock_tsan_post_lock(l);
}

/* Take l only if it is free (no spin, no sleep): true if taken. */
static inline bool wlock_trylock(ctx_wlock *l)
{
	unsigned free_ = 0;
	wlock_tsan_pre_trylock(l);
	bool got = atomic_compare_exchange_strong_explicit(
	    &l->word, &free_, 1, memory_order_acquire, memory_order_relaxed);
	wlock_tsan_post_trylock(l, got);
	return got;
}

static inline void wlock_unlock(ctx_wlock *l)
{
	wlock_tsan_pre_unlock(l);
	if (__builtin_expect(atomic_exchange_explicit(&l->word, 0, memory_order_release) == 2, 0))
		wlock_wake(l);
	wlock_tsan_post_unlock(l);
}

/* The write lock of context c (store.h's LOCKS). */
#define context_lock(c)   wlock_lock(&(c)->write_lock)
#define context_unlock(c) wlock_unlock(&(c)->write_lock)

struct ctx_state {
	atomic_uint refs;
	/* Set by a transaction of few operations: it replaced few nodes of the
	 * version before, so freeing that version is cheap (reclaim.c). Beside
	 * refs, in what would be padding. */
	bool light;
	/* The rcu_head that frees a released state with its batch (state.c)
	 * shares the words of two fields that nothing reads once the last
	 * reference is gone: ctx (released just before) and hidden_seq (read
	 * just before). Readers under RCU read a dead state's version,
	 * revision, time, count, refs and prev (ctx_history, state_try_retain),
	 * never these. A version cut from history while still held goes to
	 * the reclaimer with an rcu_head of its own (reclaim.c). 136 bytes, a
	 * 144-byte malloc chunk: 16 less per version than a separate head. */
	union {
		struct {
			ctx_context *ctx; /* a reference: keeps the id alive */
			/* When it stopped being visible: a tick sequence number
			 * (state.c); its trie may be freed at once when a later
			 * tick has completed. UINT64_MAX: not known, freed one
			 * grace period after release; STATE_UNREAD: no
			 * reference-free read could have seen it. */
			uint64_t hidden_seq;
		};
		struct rcu_head rcu;
	};
	uint64_t version;
	uint64_t revision;
	uint64_t updated_us;
	size_t changed; /* keys written by the commit that made it */
	hamt data;
	hamt meta;
	/* History: each kept version holds a reference to the one before it;
	 * the oldest kept one has none. `next` is the version after it (no
	 * reference; only used under the context's write lock). */
	_Atomic(ctx_state *) prev;
	ctx_state *next;
};

/* Recovery points of a context: an immutable set, replaced whole under the
 * write lock and read under RCU. Each entry holds a reference to its state. */
typedef struct point_entry {
	ctx_state *st;
	size_t keys, bytes; /* of st, copied: st's maps go with its last reference */
	uint64_t time_us;
	uint64_t checksum; /* data.sum + meta.sum when the point was made */
	char label[CTX_LABEL_MAX + 1];
} point_entry;

typedef struct point_set {
	struct rcu_head rcu;
	size_t count;
	point_entry e[];
} point_set;

/* Fields are ordered so that the small ones pair up (no padding holes): 128
 * bytes (two cache lines), then the id and, 8-aligned after it, the index node (8 bytes and 8
 * per level; context_inode). The table of contexts keeps each context's id
 * hash beside its pointer (store.c), so the context holds neither a table
 * node nor the hash. */
struct ctx_context {
	atomic_uint refs; /* table, states, transactions, callers */
	uint32_t idlen;
	ctx_store *store;
	uint64_t created_us;
	uint64_t incarnation; /* revision of its creation */
	/* Newest decided version: written under write_lock; read without it
	 * only by ctx_get_latest (under RCU, taking a reference). */
	_Atomic(ctx_state *) head;
	ctx_state *oldest;           /* oldest version in the history chain */
	_Atomic(point_set *) points; /* NULL: none; what readers see */
	/* Under durability always a point change is shown only once its record
	 * is durable (points.c): while points_pending changes wait for that,
	 * points_decided is the newest decided set, the one writers build on
	 * (owned by its change until installed). Both under write_lock. */
	point_set *points_decided;
	unsigned points_pending; /* see points_decided */
	/* Versions in the chain, head included: at most history_depth + 1,
	 * which check_options bounds (4 bytes, so that root_hint fits in the
	 * context's 128). */
	uint32_t kept;
	ctx_wlock write_lock; /* 4 bytes: context_lock, context_unlock */
	/* Set (once, never cleared) before the first read that takes no
	 * reference: until then no reader can be in a hidden version's trie
	 * without holding the version (state_note_hidden). */
	atomic_bool read_noref;
	atomic_bool dropped;         /* no more commits; set under write_lock */
	atomic_bool gone;            /* out of the table, visible cleared */
	/* Counted in store.with_fields: not dropped and the head has fields
	 * (write_lock, or alone; context_count_fields). */
	bool with_fields;
	atomic_uint_fast64_t ttl_us; /* idle time-to-live, 0 = none */
	atomic_uint_fast64_t last_access_us;
	_Atomic(ctx_state *) visible; /* newest version readers may see */
	/* The data root of a recently visible version (context_publish): only
	 * a prefetch target, never dereferenced, so it may be stale or
	 * dangling (a prefetch does not fault). A read loads it with `visible`
	 * (the same line) and starts loading the root while the version's own
	 * line arrives, one cache miss instead of two in a row (round 7,
	 * docs/benchmarks.md). */
	_Atomic(uintptr_t) root_hint; /* an address, not a pointer */
	union {
		/* For freeing, once the last reference is gone (context_release). */
		struct rcu_head rcu;
		/* Revision of its drop record (write_lock): read only once
		 * `dropped` is set, which recovery never sets on a context it
		 * keeps, and never after the last reference is gone. */
		uint64_t drop_revision;
		/* Log replay only, while the context is alive and before the store
		 * opens (recovery.c): the edit token that built the nodes only the
		 * head holds (0: none, the head is not edited in place), and the
		 * replay plan's entry for this incarnation (NULL: not looked up
		 * yet). Sharing rcu's bytes costs nothing per context. */
		struct {
			uint64_t replay_edit;
			void *replay_plan;
		};
	};
	char id[]; /* idlen bytes and a NUL, then the index node */
};

/* The index node of c, after its id. */
static inline index_node *context_inode(const ctx_context *c)
{
	size_t at = (offsetof(ctx_context, id) + c->idlen + 1 + _Alignof(index_node) - 1) &
	            ~(_Alignof(index_node) - 1);
	return (index_node *)((char *)c + at);
}

/* The table of contexts: open addressing with linear probing, each slot the
 * id's 64-bit hash beside the context's address, so that a lookup reads one
 * slot (a cache line holds four) and touches only the context it finds.
 * Readers probe under RCU without a lock; writers (insert, remove, rebuild)
 * hold store.index.lock. A removed context leaves a tombstone unless the
 * slot after it is empty; the table is rebuilt (into a new array, swapped in
 * and the old one freed after a grace period) when live slots and
 * tombstones pass 3/4 of it, sized to hold the live ones at most half full
 * (a big new array is made ahead outside the lock, the inserts going on up
 * to 7/8 meanwhile: store.c, "Growing").
 * The rebuild is incremental (store.c, "Growing"): the new array is
 * published at once with the old one beside it, and each insert moves a few
 * of the old array's slots into it, so no create pays for all the contexts
 * (a stop-the-world rebuild of 786,432 contexts held the index lock for
 * 26 ms, 130-160 ms beside a checkpoint). */
typedef struct ctab_slot {
	_Atomic(uint64_t) hash;
	_Atomic(ctx_context *) c; /* NULL: empty (ends a probe); CTAB_TOMB: removed */
} ctab_slot;

typedef struct ctab {
	struct rcu_head rcu;
	size_t mask; /* slots - 1 (a power of two) */
	/* While this array grows out of the one before it: that one, which
	 * still holds every context not dropped since (moving copies a slot; it
	 * is never added to), so a lookup probes it first; NULL once every
	 * slot has moved (it is freed a grace period later). */
	_Atomic(struct ctab *) old;
	ctab_slot slot[];
} ctab;

/* Walking the table (store.c): inside an RCU read-side critical section,
 * every context in the table when the walk started, once (a context added or
 * removed meanwhile may or may not be seen). While the table grows, the old
 * array is walked first, then the new one without what the old one holds. */
typedef struct table_iter {
	const ctab *t;    /* the array being walked */
	const ctab *next; /* walked after it (the new array while growing) */
	const ctab *skip; /* the old array, while walking the new one */
	size_t i;
} table_iter;
ctx_context *table_first(ctx_store *s, table_iter *it);
ctx_context *table_next(table_iter *it);

struct ctx_log;

struct ctx_store {
	ctx_options opts;
	char *dir;             /* NULL: memory only */
	int lock_fd;           /* holds the directory's flock */
	unsigned fork_gen;     /* fork_generation at open (fork.c) */
	/* On fork.c's list of stores holding a directory lock (fork_lock). */
	ctx_store *fork_next, **fork_prev;
	_Atomic(ctab *) table; /* the contexts by id (store.c) */
	size_t table_live;     /* contexts in the table (index.lock) */
	size_t table_tombs;    /* its tombstones (index.lock) */
	size_t table_moved;    /* slots of table->old moved so far (index.lock) */
	size_t table_step;     /* slots moved per insert while it grows */
	ctab *table_spare;     /* the next array, made ahead (index.lock) */
	void *close_reserve;   /* unmapped before ctx_close's rcu_barrier (store.c) */
	bool table_preparing;  /* a create is making it (index.lock) */
	ctx_index index;       /* the table's contexts, by id; its lock guards both */
	atomic_size_t live;    /* contexts in the table */
	/* Contexts not dropped whose head has at least one field (ctxd's
	 * DBSIZE, ctx_count_with_fields): moved only where a head gains its
	 * first field or loses its last, or the context is dropped or let go
	 * (context_count_fields), so a commit that keeps a context non-empty
	 * touches it not at all; beside `live`, which every create moves. */
	atomic_size_t with_fields;
	/* The last revision handed out (no log): every commit of a memory-only
	 * store takes the next one with a locked add, from every thread. It has a
	 * cache line of its own (the padding on both sides keeps it alone
	 * whatever the store's alignment): beside it, the fields every commit
	 * reads (log, feed, the table) were fetched again after each other
	 * thread's commit (round 6, docs/benchmarks.md). */
	char revision_pad0[64];
	atomic_uint_fast64_t revision;
	char revision_pad1[64 - sizeof(atomic_uint_fast64_t)];
	struct ctx_log *log;         /* NULL: memory only */
	struct feed *feed;           /* the change feed behind watches */
	pthread_mutex_t notify_lock; /* notifiers (notify.c) */
	struct ctx_notifier *notifiers;
	bool wait_durable; /* durability always: wait for syncs */

	/* The background checkpointer (with a log). */
	pthread_t checkpointer;
	bool checkpointer_running;
	atomic_bool closing;
	atomic_uint_fast64_t last_checkpoint; /* revision of the newest checkpoint */
	atomic_uint_fast64_t checkpoints;     /* written since open */
	atomic_flag checkpoint_busy;          /* one checkpoint at a time */

	/* The expiry reaper (expiry.c). */
	pthread_t reaper;
	bool reaper_running;
	pthread_mutex_t reaper_lock; /* only to sleep on reaper_cv */
	pthread_cond_t reaper_cv;
	bool reaper_stop;
	bool reaper_kicked;
	atomic_bool any_ttl; /* a time-to-live was set since store_clear: scan */
	/* Recovery is building the store (one thread, no readers): versions
	 * that leave history are freed at once, not through RCU or the
	 * reclaimer (context_push_head, state_release_now). */
	bool replaying;
};

/* Notifiers (notify.c): set up the lock and the log's durable hook. */
void notify_init(ctx_store *s);

/* The store's clock (options.clock_us, or the real time). */
uint64_t store_now_us(const ctx_store *s);

/* Make next (built on c->head) the head: the old head becomes its
 * predecessor in the history chain, and the oldest version past
 * history_depth leaves the chain. write_lock held, or recovery. The version
 * that left is freed in the background (reclaim.c); only when too many wait
 * already, or during recovery (s->replaying), is its reference returned
 * (else NULL): the caller then releases it, after unlocking (freeing a big
 * old version can take a while). */
ctx_state *context_push_head(ctx_context *c, ctx_state *next);

/* One operation of a transaction (or of a restore's log record). */
enum op_kind { OP_PUT, OP_DEL, OP_META_PUT, OP_META_DEL };
typedef struct txn_op {
	enum op_kind kind;
	hamt_leaf *leaf; /* for deletes: the key only (a value is ignored) */
} txn_op;

struct body_buf;
/* Encode the body of a commit record holding ops (txn.c). */
ctx_status encode_commit(const ctx_context *c, const txn_op *ops, size_t n, uint64_t updated_us,
                         bool with_times, struct body_buf *b);

/* Apply ops to data and meta under a fresh edit token (txn.c); puts get
 * time `now`. strict_del: deleting an absent key is CTX_NOT_FOUND. */
ctx_status apply_txn_ops(hamt *data, hamt *meta, const txn_op *ops, size_t n, uint64_t now,
                         bool strict_del);

/* The caller of t promises that no two of its data operations name the same
 * key (tracker.c: one operation per edited key), so that the commit takes
 * the number of keys it changed (ctx_history's keys_changed) from the puts
 * and deletes as it applies them, without a diff of the old and new maps.
 * Past DISTINCT_MAX operations that diff was a quarter of a commit of 100
 * puts (txn.c). A ctx_txn_clear withdraws the promise. */
void txn_promise_distinct(ctx_txn *t);

/* Tests only: commits so far that counted their changed keys with a diff of
 * the maps (txn.c). */
extern atomic_size_t txn_test_commit_diffs;

/* Tests only: the records the last recovery's plan pass read intact, in
 * order, before it stopped (recovery.c, plan_build). */
extern atomic_size_t recovery_test_planned;

/* Create context id with ops as its version 1 (store.c). rev_out (NULL:
 * wait for durability) receives the revision of a create that does not wait. */
ctx_status store_create(ctx_store *s, const char *id, const txn_op *ops, size_t n,
                        uint64_t *rev_out);

#include "fork.h"
/* Whether s was opened before this process forked (fork.c): then every
 * call that writes, waits or closes refuses it (fork_refuse). */
static inline bool store_inherited(const ctx_store *s)
{
	return __builtin_expect(
	    s->fork_gen != atomic_load_explicit(&fork_generation, memory_order_relaxed), 0);
}

#include "log.h"
/* Before a change is appended by a writer that does not wait for its own
 * sync (nowait, or durability batch/none): wait while the log's backlog is
 * over ctx_options.log_backlog_bytes (log_throttle). Call with no lock held
 * and outside any RCU read-side critical section. */
static inline void store_throttle(ctx_store *s, bool nowait)
{
	if (s->log && (nowait || !s->wait_durable))
		log_throttle(s->log);
}

/* A change decided without waiting (ctx_txn_commit_nowait, ctx_drop_nowait):
 * the log's flusher finishes it once its record is durable - publishes st,
 * reports it to the feed, or takes a dropped context out of the table - or
 * undoes what it must if the log failed first. */
typedef struct pending_change {
	log_done done;
	ctx_context *c; /* a reference                              */
	ctx_state *st;  /* a reference; NULL for a drop             */
	ctx_event_kind kind;
	uint64_t version;
	/* Set (release) by the committer of a commit or create once st is in
	 * the history chain (context_push_head, right after log_append_done,
	 * waiting for nothing in between), its last touch of p; true from the
	 * start for a drop. The flusher waits for it before anything else:
	 * else a reader could see st visible with no previous version and
	 * ctx_get_latest behind ctx_get, or a failed sync free p under the
	 * committer. */
	atomic_bool linked;
	/* A clearing commit (ctx_txn_clear) while events are recorded: a
	 * reference to the version it replaced, whose keys it removed
	 * (store_report_clear); else NULL. Such a change is reported by the
	 * call_rcu worker (`rcu`), not by the flusher: the diff is O(keys). */
	ctx_state *base;
	struct rcu_head rcu;
	size_t nkeys;
	hamt_leaf *leaves[]; /* references: the keys to report          */
} pending_change;

/* Allocate one for c, taking references to c and to the leaves of ops.
 * NULL if out of memory. */
pending_change *pending_new(ctx_context *c, ctx_event_kind kind, const txn_op *ops, size_t n);
/* Free one the log never took. */
void pending_free(pending_change *p);

/* What a commit reports to watchers. */
typedef struct commit_event {
	ctx_event_kind kind;
	size_t nkeys;
	const void *const *keys;
	const size_t *klens;
	/* A clearing commit (ctx_txn_clear): references to the version it
	 * replaced and to the one it made, reported by store_report_clear;
	 * else NULL. */
	const ctx_state *clear_base, *clear_next;
} commit_event;

struct log_record;
/* Finish a commit: log, push head, publish, report (txn.c). c->write_lock
 * held on entry, released on return. */
ctx_status commit_finish(ctx_context *c, ctx_state *next, struct log_record *rec,
                         const commit_event *ev, uint64_t *version_out);

/* Report revision rev to the change feed (a no-op without one). */
void store_report(ctx_store *s, uint64_t rev, ctx_event_kind kind, const ctx_context *c,
                  uint64_t version, size_t nkeys, const void *const *keys, const size_t *klens);
/* The same with the context's id (idlen bytes) given. */
void store_report_id(ctx_store *s, uint64_t rev, ctx_event_kind kind, const char *id, size_t idlen,
                     uint64_t version, size_t nkeys, const void *const *keys, const size_t *klens);
void store_report_skip(ctx_store *s, uint64_t rev);
/* Report revision rev, a change with no event to record, without a lock
 * (feed_report_bare): callable under a context's write lock. True: done (or
 * no feed); false: report it with store_report* after the unlock. */
bool store_report_bare(ctx_store *s, uint64_t rev);

/* Report a clearing commit (ctx_txn_clear) that made st from base: the keys
 * it changed are found by a diff of the two versions, O(keys of both), with
 * no lock held and never on the log's flusher (pending_report_rcu), and
 * only while the feed records (else it is reported with the keys of its
 * ops: nkeys, keys, klens). */
void store_report_clear(ctx_store *s, uint64_t rev, const ctx_context *c, const ctx_state *base,
                        const ctx_state *st, size_t nkeys, const void *const *keys,
                        const size_t *klens);

/* Whether the store's feed records events now (feed_recording). */
bool store_feed_recording(const ctx_store *s);

/* The number of data keys a clearing commit changed, going from old to
 * new_ (new_ built from empty maps): the keys of old, plus those of new_,
 * less those in both with the same value counted twice, less those in both
 * with another value counted once. O(keys of new_), not O(keys of old):
 * what ctx_history's keys_changed says, without a diff under the lock. */
size_t clear_changed(const hamt *old, const hamt *new_);

/* Make a recovery point of version if auto_point_every says so (points.c). */
void auto_point(ctx_context *c, uint64_t version);

/* Points (points.c): add or remove under the write lock; the old set is
 * freed after a grace period. */
ctx_status points_add(ctx_context *c, ctx_state *st, const char *label, uint64_t time_us,
                      uint64_t checksum);
ctx_status points_remove(ctx_context *c, uint64_t version); /* NOT_FOUND, NOMEM */
void points_clear(ctx_context *c);
/* The newest decided points of c, durable or not (write lock held): what a
 * checkpoint holds, like the decided head. */
const point_set *points_latest(const ctx_context *c);

/* Drop c (CTX_EVENT_DROPPED or CTX_EVENT_EXPIRED); if idle_since is not 0,
 * only if it was not used after that time (else CTX_CONFLICT). */
ctx_status context_drop(ctx_context *c, ctx_event_kind kind, uint64_t idle_since);

/* Check s and a context id (CTX_INVALID with a message if bad). */
ctx_status store_check_id(const ctx_store *s, const char *id, size_t *idlen);

/* Check s and id, find the live context and take a reference to it
 * (CTX_NOT_FOUND with a message if there is none). */
ctx_status store_open_context(ctx_store *s, const char *id, ctx_context **out);

/* References to every context in the table for which want(c, arg) is true
 * (want NULL: all), in a malloc'd array; NULL when out of memory. */
ctx_context **store_collect(ctx_store *s, bool (*want)(const ctx_context *, void *), void *arg,
                            size_t *count);

/* The version *slot (&c->visible or &c->head) points to, with a reference
 * taken (retried while the one seen is being replaced), or NULL: none, or
 * the context is being let go (the version the slot still shows has no
 * reference left; never waits for the slot to clear, which could wait for a
 * grace period the caller holds up). Inside an RCU read-side critical
 * section. */
ctx_state *state_retain_current(_Atomic(ctx_state *) *slot);

/* Whether listings (ctx_list_ids, the status view) show c: created, not
 * gone, not past its time-to-live. Notes no access. Inside an RCU read-side
 * critical section. */
bool store_listed(const ctx_context *c);

/* Contexts: find one and take a reference (NULL if absent), drop one. */
ctx_context *store_find_context(ctx_store *s, const char *id, size_t idlen);
/* The context in the table under id without taking a reference (NULL if
 * absent or its drop is decided): inside an RCU read-side critical section,
 * and c is used only until it ends (ctx_put and ctx_del: under its write
 * lock, `dropped` still clear, its head holds c). */
ctx_context *store_lookup_context_rcu(ctx_store *s, const char *id, size_t idlen);
void context_retain(ctx_context *c);
void context_release(ctx_context *c);

/* Make st the version readers see, unless a newer one is visible already or
 * the context was dropped. Takes a new reference to st for the context. */
void context_publish(ctx_context *c, ctx_state *st);
/* The same with a reference the caller took for it (the commit path, before
 * st was reachable: a plain increment), which is dropped if st is not
 * published. */
void context_publish_ref(ctx_context *c, ctx_state *st);
/* context_publish_ref, except that the reference `visible` held to the
 * version st replaced is handed to the caller (returned; NULL if none) to
 * release later: its release may free a batch of versions or wait for a
 * grace period (state.c), which a commit does after its unlock. */
ctx_state *context_publish_keep(ctx_context *c, ctx_state *st);
/* context_publish_keep for a commit that holds c's write lock in a store
 * that does not wait for syncs (commit_finish_rev), with no read-side
 * critical section of its own (r19-update1t: urcu-bp's read lock and
 * unlock, two calls through the PLT and two __tls_get_addr, were ~3% of a
 * one-key commit's instructions). The version it replaces cannot be freed
 * meanwhile: `visible` holds a reference to it, which only a publish or a
 * drop lets go of; in such a store every publish runs under the lock (this
 * one), and a drop lets go of `visible` only after it decided under the
 * lock - after this commit's unlock, as this commit checked under the lock
 * that c was not dropped. */
ctx_state *context_publish_locked(ctx_context *c, ctx_state *st);

/* Wait until revision rev is durable, then publish st; drops the caller's
 * reference to st. CTX_IO if the log failed first (st stays invisible). */
ctx_status context_publish_durable(ctx_context *c, ctx_state *st, uint64_t rev);

/* A context not yet in the table (recovery), its insertion with a first
 * state, and removal. Only while nothing else uses the store. */
ctx_context *context_new(ctx_store *s, const char *id, size_t idlen, uint64_t created_us);
/* Insert and publish (its head as built): CTX_NOMEM, or CTX_CORRUPT if the
 * id is in the table already; then c holds no versions and the caller's
 * reference is its last. */
ctx_status store_insert_recovered(ctx_store *s, ctx_context *c, ctx_state *st);
ctx_status store_publish_recovered(ctx_store *s, ctx_context *c);
ctx_context *store_lookup_recovered(ctx_store *s, const char *id, size_t idlen);
void store_remove_recovered(ctx_store *s, ctx_context *c);
/* Let go of a context built by loading but never published (a damaged
 * section): its versions, points and its count in store.with_fields, then
 * the caller's reference. */
void store_abandon_loaded(ctx_context *c);
void store_clear(ctx_store *s);

/* Replace the head of a context during recovery (takes over st's reference). */
void store_set_head_recovered(ctx_context *c, ctx_state *st);

/* ctx_state_release for recovery (s->replaying: no reader, no RCU read-side
 * section can hold a state): the structs are freed at once, not after a
 * grace period. */
void state_release_now(ctx_state *st);

/* Expiry (expiry.c). */
ctx_status reaper_start(ctx_store *s);
void reaper_stop(ctx_store *s);
/* Whether c is past its idle time-to-live at time now. */
bool context_expired(const ctx_context *c, uint64_t now);
/* Raise c's last access to t (never lowers it). */
void context_note_access(ctx_context *c, uint64_t t);
/* The same for a commit at t, with c's write lock held: no locked
 * instruction when c has no time-to-live (expiry.c). */
void context_note_commit(ctx_context *c, uint64_t t);
/* Note a read of c (only contexts with a time-to-live track reads). */
void context_touch(ctx_context *c);
/* For a call that found c: false if c is past its time-to-live (it is gone
 * for every call; the caller wakes the reaper), else note the access like
 * context_touch. */
bool context_usable(ctx_context *c);
/* Whether c takes no more changes: dropped, or past its time-to-live. For
 * checks under c's write lock (a time-to-live may run out after the open). */
bool context_closed(const ctx_context *c);
/* Ask the reaper to look now (an expired context was met). */
void reaper_kick(ctx_store *s);
/* The first time-to-live was set (any_ttl turned true): the reaper, asleep
 * without a deadline until then, starts its rounds, the first one reaper_ms
 * from now (no round at once: nothing can be due yet). */
void reaper_arm(ctx_store *s);

/* Checkpoints (checkpoint.c). */
ctx_status checkpoint_run(ctx_store *s);
ctx_status checkpoint_load(ctx_store *s, const char *path, uint64_t *revision_out);
/* Read the checkpoint at path (format 2) back and check it with
 * checkpoint_load's parser, building nothing: every section's structure and
 * crc, and the trailer. What only the built data shows (a deleted key that
 * was never there, an id repeated) is left to the load. CTX_CORRUPT naming
 * file and offset, CTX_IO, CTX_NOMEM. */
ctx_status checkpoint_verify(const char *path, uint64_t *revision_out);
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
/* ctx_state_release from an RCU callback: never waits for a grace period,
 * and queues what it freed at once (the worker keeps no partial batch). */
void state_release_in_callback(ctx_state *st);
/* Free every released state queued so far, and the calling thread's
 * partial batch, before returning (store_free at close, tests; not inside a
 * read-side section). */
void state_drain(void);
/* Released states queued and not yet freed, process-wide (racy; tests). */
size_t state_deferred(void);
#define STATE_UNREAD (UINT64_MAX - 1)
/* st just stopped being visible (the exchange that replaced it is done). */
void state_note_hidden(ctx_state *st);

/* Check a key (or metadata name) and value against the store's limits. */
ctx_status store_check_key(const ctx_store *s, const void *key, size_t klen);
ctx_status store_check_value(const ctx_store *s, const void *val, size_t vlen);

#endif
