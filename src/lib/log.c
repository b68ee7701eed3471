/*
 * log.c - the write-ahead log, with group commit and flush pipelining.
 *
 * Writers never do I/O. A commit copies its record into the current batch (a
 * list of pooled memory chunks, see log_piece) under the log lock: a short
 * critical section, the only one writers to different contexts share. One
 * flusher thread owns the files: it swaps the current batch for an empty
 * one, writes it with one pwrite() per chunk and syncs it with one
 * fdatasync(), then tells the waiting writers how far the
 * log is durable. While it syncs batch k, writers fill batch k+1; each sync
 * thus covers every commit that arrived during the previous one, and the
 * commits per sync grow with the number of writers (group commit). Writers
 * wait for durability with no lock held (the durable lock is only taken to
 * sleep on its condition variable).
 *
 * Under durability always a round (take a batch, write, sync, report) may
 * also be run by a thread that needs the sync itself, when no round is
 * running (leader/follower group commit, log_lead): a waiting commit
 * (log_wait) or an event loop at the end of its turn (log_flush) takes
 * what is pending and syncs it on its own thread; records appended
 * meanwhile are the next group, which a follower woken by the round's end
 * (it gives up the role before it wakes them) or the flusher takes. At
 * one writer that saves two hand-offs per commit (wake the flusher on the
 * other CPU, be woken back). One round runs at a time (flushing, under
 * log.lock): whoever runs it owns the files. A waiting commit's append
 * (log_append) and a deferring thread's (log_defer) do not wake the
 * flusher: that thread waits for, or flushes, them itself; a leader that
 * leaves records pending (or a stop, or a rotation: the flusher's alone)
 * wakes the flusher. Completions still run in revision order: rounds do
 * not overlap, and a round's durable revision is stored before the role
 * is given up. A leader's round runs with its thread's cancellation
 * disabled (pwrite and fdatasync are cancellation points): cancelled in
 * it, the thread would keep the role for good, and every later commit and
 * the close would wait for it (round 17, r17-review).
 *
 * Revisions are handed out under the log lock, so the log holds records in
 * revision order, with no gaps. The record header (log format 2, format.h)
 * is written there too: varints of the body length, revision, version and
 * incarnation, and for creates and commits the record's time as a
 * difference from the previous such record's (last_time, reset when the
 * flusher takes the batch that ends a segment, so that every segment's
 * chain of times starts from 0); its CRC continues the body's, which the
 * writer computed before it took any lock.
 *
 * Segments are written ahead with zeros (ALWAYS and BATCH): a new segment is
 * its header and PREALLOC_FIRST bytes of zeros, synced, and records are
 * written over those zeros in place (pwrite at seg_off), so a batch's
 * fdatasync flushes data only; appending to a growing file made every
 * fdatasync commit the new size through the file system's journal too
 * (ctxsyncbench: 4 KiB write + fdatasync, p50 ~195 us appending, ~132 us
 * overwriting, on ext4 here). A zeroer thread writes the zeros ahead,
 * through a descriptor of its own, in ZERO_SLICE slices each synced: once
 * fewer than half a chunk of synced zeros are left after a batch, the flusher
 * asks it to top them up to a chunk past the records, and takes what it has
 * synced after each batch. So neither the flusher nor any writer waits for
 * a chunk (written inline by the flusher, a 4 MiB chunk and its sync took
 * 4-12 ms once per chunk, and the commits behind it waited); a batch sync
 * that overlaps a slice flushes at most that slice. A batch larger than the
 * synced zeros left is appended past them, with the zeroer held off the file
 * meanwhile (its sync then commits the size change too). Chunks double the
 * segment's size, from PREALLOC_FIRST to prealloc_max
 * (ctx_options.log_prealloc_bytes, default 4 MiB), so a small store's
 * segment stays small. Before a rotation creates the next segment the
 * zeroer is held off, so no zeros of an older segment are ever unsynced
 * (recovery would read garbage there as damage); a rotated or closed
 * segment is cut back to its records (ftruncate, unsynced: a crash may
 * leave the zeros, which recovery reads as the segment's clean end). Disk
 * usage is thus the records plus at most one chunk, in the newest segment
 * (and in a segment whose store crashed, until recovery cuts it).
 *
 * After a failed write or sync the log stops for good: Linux may drop the
 * dirty pages of a failed fsync, so a retry could report success for data
 * that is gone. Every waiter gets CTX_IO (its change may or may not have
 * reached the disk); every later append gets CTX_CLOSED (refused: nothing
 * of it was written).
 *
 * Waiting for durability is a futex wait on a batch counter, not a condition
 * variable: when a sync completes, every writer of the batch wakes at once
 * and none has to take a mutex on its way out (with 64 writers on 2 cores a
 * condition variable's mutex made the wake-ups queue behind each other).
 *
 * LOCKS
 *   log.lock  the current batch, revision counter, rotation request, chunk
 *             pool (a chunk is allocated with it released). Never
 *             held across I/O; nothing else is locked under it.
 *   log.zlock the zeroer's request and progress (zready, ztarget, zbusy,
 *             its descriptor). The zeroer never holds it across I/O; the
 *             flusher holds it, with the zeroer idle (zbusy false; zheld
 *             keeps it from starting a slice while the flusher waits), across
 *             an appended batch and a rotation, so that no zeros are
 *             written where records go. Never taken with log.lock held.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "util.h"
#include "vfs.h"

/* A batch is a list of pieces, written one after the other in revision
 * order: pooled chunks of CHUNK bytes that appends fill with records, and
 * big records (cap 0), each built whole (header and body) by its writer
 * before the log lock is taken and freed once written. A record larger than
 * BIG_RECORD is a big record; any other goes into the batch's last piece if
 * that is a chunk with room for it, else into a new chunk taken from the
 * pool. So no append copies the pending batch under the lock, no append
 * waits for memory under it (a writer that finds the pool empty allocates
 * a chunk with the lock released), one large transaction leaves no large
 * buffer behind, and a batch of thousands of records is written in a few
 * pwrite calls (before, a batch had one fixed 256 KiB buffer: at 64 threads
 * under durability batch most records overflowed it and became big records,
 * each malloc'd, locked twice and written by its own pwrite). */
typedef struct log_piece {
	struct log_piece *next;
	size_t start; /* where its bytes begin in data (a big record's header
	               * is shorter than the room left for it) */
	size_t len;   /* bytes of records, from data + start */
	size_t cap;   /* CHUNK for a pooled chunk, 0 for a big record */
	unsigned char data[];
} log_piece;

#define CHUNK      (256u << 10)
#define BIG_RECORD (64u << 10)

/* The pool keeps POOL_MIN chunks, or as many as the last batch used if more,
 * so that a steady load reuses its chunks and a burst's chunks are freed
 * after the next, smaller, batch; but never more than POOL_MAX (8 MiB; a
 * 10 ms batch of 64 threads creating under durability batch used about 15),
 * so that a log left idle after a burst holds no more than that. */
#define POOL_MIN 2
#define POOL_MAX 32

/* Preallocation: a new segment's first zeros, and how few zeros left make
 * the flusher write the next chunk after a batch. */
#define PREALLOC_FIRST       LOG_PREALLOC_FIRST
#define ZERO_SLICE           (64u << 10)
#define PREALLOC_DEFAULT_MAX (4u << 20)

struct ctx_log {
	char *dir;
	ctx_durability mode;
	unsigned batch_ms;
	size_t prealloc_max; /* 0: segments grow by their records only */

	pthread_mutex_t lock;
	pthread_cond_t work_cv;   /* the flusher waits for work here       */
	pthread_cond_t growth_cv; /* the checkpointer waits for growth here */
	pthread_cond_t pace_cv;   /* batch mode: the flusher's pause between
	                             batches (CLOCK_MONOTONIC), cut short by a
	                             stop or a rotation                     */
	log_piece *cur;           /* records appended, not yet taken       */
	log_piece *cur_last;      /* cur's last piece (NULL if none)       */
	log_done *cur_done;       /* their completions, in revision order  */
	log_done **cur_done_tail;
	log_piece *pool;    /* spare chunks                          */
	size_t pooled;      /* how many                              */
	uint64_t last_rev;  /* last revision handed out              */
	uint64_t last_time; /* time of the last record that has one, in
	                     * the current segment (0: none yet): a record's
	                     * header holds its time as a difference from it */
	uint64_t bytes_since_rotate;
	size_t pending;   /* records appended, not yet taken       */
	size_t cur_bytes; /* their bytes                          */
	bool stop;
	bool kicked;
	bool flushing; /* a round runs (the flusher's or a leader's): its
	                * thread owns the files and the fields below */
	bool rotate_requested;
	bool rotate_done;
	uint64_t rotated_at;
	uint64_t growth_wanted; /* wake growth_cv when bytes_since_rotate reach it */

	/* The flushing thread's (the flusher's, or a leader's, see flushing). */
	pthread_t flusher;
	atomic_size_t chunks; /* chunks allocated: pooled, filling, being written */
	int seg_fd;
	uint64_t seg_first; /* first revision of the current segment */
	uint64_t seg_off;   /* where the next record goes: its records' end */
	uint64_t seg_alloc; /* synced zeros (or records) from seg_off up to it */

	/* The zeroer (prealloc_max > 0): writes the segment's next chunk of
	 * zeros ahead, in ZERO_SLICE slices each synced, through a descriptor of
	 * its own. Under zlock: the fields below; never held across I/O. */
	pthread_t zeroer;
	bool zeroer_started;
	pthread_mutex_t zlock;
	pthread_cond_t zcv; /* the zeroer waits for work, the flusher for !zbusy */
	int zfd;            /* the current segment, opened again; -1: none */
	uint64_t zready;    /* zeros written and synced up to here */
	uint64_t ztarget;   /* zeros wanted up to here */
	bool zbusy;         /* a slice is being written, from zready */
	bool zheld;         /* the flusher waits for zlock: no next slice */
	bool zstop;
	bool grow_failed; /* zeros could not be written: append (this segment) */

	atomic_uint durable_seq; /* +1 per completed batch: the futex word */
	atomic_uint waiters;     /* writers inside log_wait               */
	atomic_uint_fast64_t durable_rev;
	atomic_uint_fast64_t handed_rev; /* last_rev, readable without the lock */
	void (*durable_hook)(void *arg);
	void *durable_hook_arg;
	atomic_int failed_errno;
	atomic_uint_fast64_t syncs;
	atomic_uint_fast64_t led; /* of syncs, those of a leader (log_lead) */
	atomic_uint in_wait;      /* threads in log_wait: one alone leads */
	/* The backlog: bytes appended and not yet durable (the batch being
	 * synced and the current one), and its bound (log_throttle). */
	atomic_size_t unsynced;
	size_t backlog_max;
};

bool body_reserve(body_buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return true;
	/* A first reservation is exact: most bodies are built with one (a
	 * commit's record, a few hundred bytes), and a small block comes from
	 * malloc's per-thread cache; 4096 bytes did not, and cost every
	 * durable commit a trip through the arena (and its lock). */
	size_t cap = b->cap ? b->cap : b->len + more;
	while (cap < b->len + more)
		cap *= 2;
	unsigned char *d = realloc(b->data, cap);
	if (!d)
		return false;
	b->data = d;
	b->cap = cap;
	return true;
}

void body_free(body_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Write zeros to [from, to) of fd (not synced). */
static int write_zeros(int fd, uint64_t from, uint64_t to)
{
	static const unsigned char zeros[64u << 10];
	while (from < to) {
		size_t n = to - from < sizeof(zeros) ? (size_t)(to - from) : sizeof(zeros);
		if (vfs_pwrite_all(fd, zeros, n, (off_t)from) != 0)
			return -1;
		from += n;
	}
	return 0;
}

/* Create segment wal-<first>.log with its header and `zeros` bytes of zeros
 * after it, synced, and sync the dir. */
static void segment_path(const char *dir, uint64_t first, char *path, size_t n)
{
	snprintf(path, n, "%s/wal-%016llx.log", dir, (unsigned long long)first);
}

static int segment_create(const char *dir, uint64_t first, size_t zeros, uint64_t *size)
{
	char path[4096];
	segment_path(dir, first, path, sizeof(path));
	int fd = vfs_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	/* One write: the header and the zeros (only the header if no memory). */
	unsigned char h[WAL_HEADER_SIZE], *buf = calloc(1, WAL_HEADER_SIZE + zeros);
	size_t len = buf ? WAL_HEADER_SIZE + zeros : WAL_HEADER_SIZE;
	file_header_put(buf ? buf : h, WAL_MAGIC, first);
	int rc = vfs_pwrite_all(fd, buf ? buf : h, len, 0);
	free(buf);
	if (rc != 0 || vfs_sync(fd) != 0 || vfs_sync_dir(dir) != 0) {
		int e = errno;
		vfs_close(fd);
		errno = e;
		return -1;
	}
	*size = len;
	return fd;
}

/* The zeros a new segment starts with. */
static size_t first_chunk(const ctx_log *l)
{
	return l->prealloc_max < PREALLOC_FIRST ? l->prealloc_max : PREALLOC_FIRST;
}

/* Under zlock, with no slice being written: cut the segment back to its
 * records (a rotated or closed one). Not synced: if the cut is lost,
 * recovery reads the zeros as the segment's end. */
static void segment_trim(ctx_log *l)
{
	if ((l->seg_alloc > l->seg_off || l->zready > l->seg_off || l->grow_failed) &&
	    !atomic_load(&l->failed_errno) && vfs_truncate(l->seg_fd, (off_t)l->seg_off) == 0)
		l->seg_alloc = l->zready = l->ztarget = l->seg_off;
}

/* Take zlock once no slice is being written (the zeroer then stays off the
 * file until zlock_release). zheld keeps the zeroer from starting its next
 * slice meanwhile: the flusher waits for one slice, never a whole chunk. */
static void zlock_idle(ctx_log *l)
{
	pthread_mutex_lock(&l->zlock);
	l->zheld = true;
	while (l->zbusy)
		pthread_cond_wait(&l->zcv, &l->zlock);
}

static void zlock_release(ctx_log *l)
{
	l->zheld = false;
	pthread_cond_broadcast(&l->zcv);
	pthread_mutex_unlock(&l->zlock);
}

static void wake_waiters(ctx_log *l)
{
	atomic_fetch_add(&l->durable_seq, 1);
	if (atomic_load(&l->waiters))
		syscall(SYS_futex, &l->durable_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void log_fail(ctx_log *l, int err, const char *what)
{
	int expected = 0;
	if (atomic_compare_exchange_strong(&l->failed_errno, &expected, err ? err : EIO))
		fprintf(stderr,
		        "ctx: log %s failed in %s: %s; the store refuses writes from now on\n",
		        what, l->dir, strerror(err));
	wake_waiters(l);
}

/* Write a batch's pieces at the end of the segment's records, over the
 * synced zeros the zeroer made. A batch longer than those is appended past
 * them (its sync then also commits the size change, as without
 * preallocation), with the zeroer held off the file meanwhile. */
static int write_batch(ctx_log *l, const log_piece *batch)
{
	uint64_t len = 0;
	for (const log_piece *p = batch; p; p = p->next)
		len += p->len;
	bool held = l->seg_off + len > l->seg_alloc && l->prealloc_max;
	if (held) {
		zlock_idle(l);
		if (l->zready > l->seg_alloc)
			l->seg_alloc = l->zready;
	}
	uint64_t at = l->seg_off;
	int rc = 0;
	for (const log_piece *p = batch; p && rc == 0; p = p->next) {
		if (p->len && vfs_pwrite_all(l->seg_fd, p->data + p->start, p->len, (off_t)at) != 0)
			rc = -1;
		at += p->len;
	}
	if (rc == 0) {
		l->seg_off += len;
		if (l->seg_off > l->seg_alloc)
			l->seg_alloc = l->seg_off;
	}
	if (held) {
		if (l->seg_alloc > l->zready) /* (the zeroer goes on after the records) */
			l->zready = l->seg_alloc;
		if (l->ztarget < l->zready)
			l->ztarget = l->zready;
		zlock_release(l);
	}
	return rc;
}

/* After a batch: take the zeros the zeroer has synced since, and once fewer
 * than half a chunk are left, ask it for the next chunk (doubling the
 * segment, up to prealloc_max). The flusher never writes or syncs zeros. */
static void prealloc_ahead(ctx_log *l)
{
	if (!l->prealloc_max || atomic_load(&l->failed_errno))
		return;
	pthread_mutex_lock(&l->zlock);
	if (l->zready > l->seg_alloc)
		l->seg_alloc = l->zready;
	uint64_t chunk = l->seg_alloc < l->prealloc_max ? l->seg_alloc : l->prealloc_max;
	if (l->ztarget <= l->zready && l->zready - l->seg_off < chunk / 2 && !l->grow_failed) {
		l->ztarget = l->seg_off + chunk;
		pthread_cond_broadcast(&l->zcv);
	}
	pthread_mutex_unlock(&l->zlock);
}

/* The zeroer: write [zready, ztarget) with zeros, a slice at a time, each
 * synced through its own descriptor (so that an fsync error of the file is
 * reported to the flusher's descriptor too), then publish it in zready.
 * A slice's pages that a concurrent batch sync has to flush are at most
 * ZERO_SLICE; a failed write stops zeroing this segment (records are then
 * appended), a failed sync fails the log as the flusher's would. */
static void *zeroer_main(void *arg)
{
	ctx_log *l = arg;
	pthread_setname_np(pthread_self(), "ctx-zeroer");
	pthread_mutex_lock(&l->zlock);
	for (;;) {
		while (!l->zstop && (l->zheld || l->zready >= l->ztarget || l->zfd < 0 ||
		                     l->grow_failed || atomic_load(&l->failed_errno)))
			pthread_cond_wait(&l->zcv, &l->zlock);
		if (l->zstop)
			break;
		uint64_t from = l->zready;
		uint64_t to = l->ztarget - from > ZERO_SLICE ? from + ZERO_SLICE : l->ztarget;
		int fd = l->zfd;
		l->zbusy = true;
		pthread_mutex_unlock(&l->zlock);
		int wrc = write_zeros(fd, from, to);
		int src = wrc == 0 ? vfs_sync(fd) : 0;
		int err = errno;
		pthread_mutex_lock(&l->zlock);
		l->zbusy = false;
		if (wrc != 0) {
			l->grow_failed = true;
		} else if (src != 0) {
			l->grow_failed = true;
			log_fail(l, err, "fsync");
		} else {
			l->zready = to;
		}
		pthread_cond_broadcast(&l->zcv);
	}
	pthread_mutex_unlock(&l->zlock);
	return NULL;
}

/* Stop the zeroer thread (if started) and close its descriptor. */
static void zeroer_stop(ctx_log *l)
{
	pthread_mutex_lock(&l->zlock);
	l->zstop = true;
	pthread_cond_broadcast(&l->zcv);
	pthread_mutex_unlock(&l->zlock);
	if (l->zeroer_started)
		pthread_join(l->zeroer, NULL);
	l->zeroer_started = false;
	if (l->zfd >= 0)
		vfs_close(l->zfd);
	l->zfd = -1;
}

/* Under zlock, idle: point the zeroer at the segment starting at `first`,
 * whose zeros (synced) end at `size`. */
static void zeroer_switch(ctx_log *l, uint64_t first, uint64_t size)
{
	if (l->zfd >= 0)
		vfs_close(l->zfd);
	l->zfd = -1;
	l->zready = l->ztarget = size;
	l->grow_failed = false;
	if (!l->prealloc_max)
		return;
	char path[4096];
	segment_path(l->dir, first, path, sizeof(path));
	l->zfd = vfs_open(path, O_WRONLY | O_CLOEXEC, 0);
	if (l->zfd < 0)
		l->grow_failed = true; /* (records appended to this segment) */
}

/* A big record with rec's body in place and room for its header before it
 * (its size is known only under the lock: log_append_done sets start). */
static log_piece *big_new(const log_record *rec)
{
	size_t len = REC2_HEADER_MAX + (size_t)rec->body_len;
	log_piece *b = malloc(sizeof(*b) + len);
	if (!b)
		return NULL;
	b->next = NULL;
	b->start = 0;
	b->len = len;
	b->cap = 0;
	memcpy(b->data + REC2_HEADER_MAX, rec->body, rec->body_len);
	return b;
}

static log_piece *chunk_new(ctx_log *l)
{
	log_piece *c = malloc(sizeof(*c) + CHUNK);
	if (!c)
		return NULL;
	c->next = NULL;
	c->start = 0;
	c->len = 0;
	c->cap = CHUNK;
	atomic_fetch_add_explicit(&l->chunks, 1, memory_order_relaxed);
	return c;
}

/* Free a list of pieces. */
static void pieces_free(ctx_log *l, log_piece *p)
{
	while (p) {
		log_piece *next = p->next;
		if (p->cap)
			atomic_fetch_sub_explicit(&l->chunks, 1, memory_order_relaxed);
		free(p);
		p = next;
	}
}

/* After a batch was written: its chunks go back to the pool, which keeps
 * max(POOL_MIN, chunks the batch used), at most POOL_MAX; big records and
 * the rest are freed (outside the lock). */
static void pieces_recycle(ctx_log *l, log_piece *batch)
{
	log_piece *chunks = NULL, *drop = NULL;
	size_t used = 0;
	while (batch) {
		log_piece *next = batch->next;
		if (batch->cap) {
			batch->len = 0;
			batch->next = chunks;
			chunks = batch;
			used++;
		} else {
			batch->next = drop;
			drop = batch;
		}
		batch = next;
	}
	size_t keep = used > POOL_MAX ? POOL_MAX : used > POOL_MIN ? used : POOL_MIN;
	pthread_mutex_lock(&l->lock);
	while (chunks && l->pooled < keep) {
		log_piece *next = chunks->next;
		chunks->next = l->pool;
		l->pool = chunks;
		l->pooled++;
		chunks = next;
	}
	while (l->pooled > keep) { /* a larger batch's chunks, left over */
		log_piece *c = l->pool;
		l->pool = c->next;
		l->pooled--;
		c->next = drop;
		drop = c;
	}
	pthread_mutex_unlock(&l->lock);
	for (log_piece *c = chunks; c;) { /* (chunks not kept) */
		log_piece *next = c->next;
		c->next = drop;
		drop = c;
		c = next;
	}
	pieces_free(l, drop);
}

/* Run the completions of a batch, in revision order. */
static void run_done(log_done *d, bool ok)
{
	while (d) {
		log_done *next = d->next; /* d may be freed by its fn */
		d->fn(d, ok);
		d = next;
	}
}

/* Pause until `ms` after *start (batch mode: a batch is taken at most every
 * batch_ms, however long its write and sync took), or until a stop or a
 * rotation is asked for: ctx_close and ctx_checkpoint do not wait out the
 * period (up to batch_ms, 49 days at most). */
static void sleep_until(ctx_log *l, const struct timespec *start, unsigned ms)
{
	struct timespec until = *start;
	ctx_timespec_add_ms(&until, ms);
	pthread_mutex_lock(&l->lock);
	while (!l->stop && !l->rotate_requested &&
	       pthread_cond_timedwait(&l->pace_cv, &l->lock, &until) == 0)
		;
	pthread_mutex_unlock(&l->lock);
}

/* A batch taken from the log (under l->lock), to be written and synced by
 * whoever took it: the flusher, or a leader (log_lead). */
typedef struct log_round {
	log_piece *batch;
	log_done *done;
	uint64_t upto;
	size_t taken;
	void (*hook)(void *);
	void *hook_arg;
} log_round;

/* Under l->lock: take the current batch, and the flushing role with it. */
static void round_take(ctx_log *l, log_round *r)
{
	l->flushing = true;
	r->batch = l->cur;
	l->cur = l->cur_last = NULL;
	r->done = l->cur_done;
	l->cur_done = NULL;
	l->cur_done_tail = &l->cur_done;
	r->upto = l->last_rev;
	l->pending = 0;
	r->taken = l->cur_bytes;
	l->cur_bytes = 0;
	r->hook = l->durable_hook;
	r->hook_arg = l->durable_hook_arg;
}

/* Write a taken batch, sync it, run its completions and report it durable.
 * Returns whether the log is still good. */
static bool round_run(ctx_log *l, log_round *r, bool led)
{
	bool ok = !atomic_load(&l->failed_errno);
	bool any = r->batch != NULL;
	if (ok && any && write_batch(l, r->batch) != 0) {
		log_fail(l, errno, "write");
		ok = false;
	}
	pieces_recycle(l, r->batch);
	if (ok && any && l->mode != CTX_DURABILITY_NONE) {
		if (vfs_sync(l->seg_fd) != 0) {
			log_fail(l, errno, "fsync");
			ok = false;
		} else {
			/* (led first: log_led_syncs never passes log_syncs) */
			if (led)
				atomic_fetch_add_explicit(&l->led, 1, memory_order_relaxed);
			atomic_fetch_add(&l->syncs, 1);
		}
	}
	run_done(r->done, ok);
	atomic_fetch_sub(&l->unsynced, r->taken); /* before the wake-up */
	if (ok)
		atomic_store(&l->durable_rev, r->upto);
	return ok;
}

/* After round_run: wake the writers waiting for it and the durable hook
 * (possibly after the next round began: they read the durable revision). */
static void round_report(ctx_log *l, const log_round *r, bool ok)
{
	if (ok)
		wake_waiters(l);
	if (r->hook && (!ok || r->batch))
		r->hook(r->hook_arg);
}

/* The flusher: take a batch, write it, sync it, report, repeat. A batch
 * is taken only while no leader (log_lead) runs one: one round at a time. */
static void *flusher_main(void *arg)
{
	ctx_log *l = arg;
	pthread_setname_np(pthread_self(), "ctx-flusher"); /* (top -H, perf sched) */
	/* Under durability none nothing waits for the flusher's sync (there is
	 * none): it only hands records to the kernel. SCHED_BATCH (same share
	 * of the CPU as nice 0) keeps its wake-up, one per batch, from
	 * preempting the committer that woke it when no CPU is idle; it runs
	 * at the next tick or when a CPU frees. Under batch and always, commits
	 * and readers wait for its sync: it keeps the normal policy. */
	if (l->mode == CTX_DURABILITY_NONE) {
		struct sched_param sp = {0};
		(void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	}
	for (;;) {
		struct timespec round_start;
		log_round r;
		pthread_mutex_lock(&l->lock);
		while (l->flushing || (!l->pending && !l->stop && !l->rotate_requested))
			pthread_cond_wait(&l->work_cv, &l->lock);
		clock_gettime(CLOCK_MONOTONIC, &round_start);
		bool stop = l->stop, rotate = l->rotate_requested;
		if (rotate) /* the records appended from now on begin a segment */
			l->last_time = 0;
		round_take(l, &r);
		pthread_mutex_unlock(&l->lock);

		bool any = r.batch != NULL;
		bool ok = round_run(l, &r, false);
		round_report(l, &r, ok);
		uint64_t upto = r.upto;
		if (rotate && ok && upto + 1 != l->seg_first) {
			/* (A segment still without records is kept as it is.) */
			/* The zeroer is held off first: no zeros of the old
			 * segment may be unsynced once a newer one exists
			 * (recovery would read them as damage there). */
			uint64_t size;
			zlock_idle(l);
			int fd = segment_create(l->dir, upto + 1, first_chunk(l), &size);
			if (fd < 0) {
				log_fail(l, errno, "segment create");
				zlock_release(l);
			} else {
				segment_trim(l);
				vfs_close(l->seg_fd);
				l->seg_fd = fd;
				l->seg_first = upto + 1;
				l->seg_off = WAL_HEADER_SIZE;
				l->seg_alloc = size;
				zeroer_switch(l, upto + 1, size);
				zlock_release(l);
			}
		} else if (ok && any && !stop) {
			prealloc_ahead(l);
		}
		pthread_mutex_lock(&l->lock);
		l->flushing = false;
		if (rotate) {
			l->rotate_requested = false;
			l->rotate_done = true;
			l->rotated_at = upto;
			l->bytes_since_rotate = 0;
			pthread_cond_broadcast(&l->growth_cv);
		}
		pthread_mutex_unlock(&l->lock);
		if (stop)
			return NULL;
		if (l->mode == CTX_DURABILITY_BATCH && !rotate)
			sleep_until(l, &round_start, l->batch_ms);
	}
}

/* Leader/follower group commit (durability always): if no round is
 * running and records are pending, take them and write and sync them on
 * the calling thread, as the flusher would; false if another thread's
 * round runs (or nothing is pending, or the flusher has a stop or a
 * rotation to do). A thread that needs a sync thus does it itself when the
 * disk is idle, with no hand-off to the flusher and back (two wake-ups on
 * the other CPU per commit at one writer); the records appended meanwhile
 * are the next group, which the flusher or the next leader takes. */
static bool log_lead(ctx_log *l)
{
	if (l->mode != CTX_DURABILITY_ALWAYS)
		return false;
	log_round r;
	pthread_mutex_lock(&l->lock);
	if (l->flushing || !l->pending || l->stop || l->rotate_requested) {
		pthread_mutex_unlock(&l->lock);
		return false;
	}
	round_take(l, &r);
	pthread_mutex_unlock(&l->lock);
	/* The round is the group's, not the caller's alone: a thread cancelled
	 * in it (pwrite and fdatasync are cancellation points) would leave it
	 * taken for good, and every later commit, and ctx_close, waiting for
	 * it. The cancel acts at the caller's next cancellation point. */
	int cancel_state;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
	bool ok = round_run(l, &r, true);
	if (ok && r.batch)
		prealloc_ahead(l);
	/* The role is given up before the waiters are woken, so that one of
	 * them can lead the next round. What was appended meanwhile (deferred
	 * appends among it, that woke nobody), a stop or a rotation: the
	 * flusher's, unless a leader comes first. */
	pthread_mutex_lock(&l->lock);
	l->flushing = false;
	bool more = l->pending || l->stop || l->rotate_requested;
	pthread_mutex_unlock(&l->lock);
	round_report(l, &r, ok);
	if (more)
		pthread_cond_signal(&l->work_cv);
	pthread_setcancelstate(cancel_state, NULL);
	return true;
}

ctx_status log_open(const char *dir, uint64_t last_rev, ctx_durability mode, unsigned batch_ms,
                    size_t prealloc, ctx_log **out)
{
	ctx_log *l = calloc(1, sizeof(*l));
	if (!l || !(l->dir = strdup(dir))) {
		free(l);
		return ctx_fail(CTX_NOMEM, "no memory for the log");
	}
	l->mode = mode;
	l->batch_ms = batch_ms ? batch_ms : 10;
	l->last_rev = last_rev;
	l->cur_done_tail = &l->cur_done;
	atomic_init(&l->durable_rev, last_rev);
	atomic_init(&l->handed_rev, last_rev);
	if (mode != CTX_DURABILITY_NONE)
		l->prealloc_max = !prealloc ? PREALLOC_DEFAULT_MAX : prealloc < 4096 ? 0 : prealloc;
	l->seg_first = last_rev + 1;
	l->seg_off = WAL_HEADER_SIZE;
	l->seg_fd = segment_create(dir, last_rev + 1, first_chunk(l), &l->seg_alloc);
	if (l->seg_fd < 0) {
		int e = errno;
		free(l->dir);
		free(l);
		errno = e;
		return ctx_fail(CTX_IO, "cannot create a log segment in %s: %s", dir, strerror(e));
	}
	/* The pool's first chunks (if out of memory: allocated by appends). */
	for (log_piece *c; l->pooled < POOL_MIN && (c = chunk_new(l)); l->pooled++) {
		c->next = l->pool;
		l->pool = c;
	}
	ctx_mutex_init(&l->lock);
	pthread_cond_init(&l->work_cv, NULL);
	pthread_condattr_t monotonic;
	pthread_condattr_init(&monotonic);
	pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
	pthread_cond_init(&l->growth_cv, &monotonic);
	pthread_cond_init(&l->pace_cv, &monotonic);
	pthread_condattr_destroy(&monotonic);
	ctx_mutex_init(&l->zlock);
	pthread_cond_init(&l->zcv, NULL);
	l->zfd = -1;
	zeroer_switch(l, last_rev + 1, l->seg_alloc);
	/* Without a zeroer (no thread to be had), records are appended past
	 * the first zeros. */
	l->zeroer_started = l->zfd >= 0 && pthread_create(&l->zeroer, NULL, zeroer_main, l) == 0;
	if (pthread_create(&l->flusher, NULL, flusher_main, l) != 0) {
		zeroer_stop(l);
		vfs_close(l->seg_fd);
		pieces_free(l, l->pool);
		free(l->dir);
		free(l);
		return ctx_fail(CTX_NOMEM, "cannot start the log flusher");
	}
	*out = l;
	return CTX_OK;
}

ctx_status log_close(ctx_log *l)
{
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_signal(&l->work_cv);
	pthread_cond_signal(&l->pace_cv);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->flusher, NULL);
	int err = atomic_load(&l->failed_errno);
	zeroer_stop(l);
	segment_trim(l);
	vfs_close(l->seg_fd);
	pieces_free(l, l->cur);
	pieces_free(l, l->pool);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->work_cv);
	pthread_cond_destroy(&l->growth_cv);
	pthread_cond_destroy(&l->pace_cv);
	pthread_mutex_destroy(&l->zlock);
	pthread_cond_destroy(&l->zcv);
	free(l->dir);
	free(l);
	if (err) {
		errno = err;
		return ctx_fail(CTX_IO, "the log failed: %s", strerror(err));
	}
	return CTX_OK;
}


/* The log whose appends on this thread wake no flusher (log_defer). */
static _Thread_local const ctx_log *deferring;

void log_defer(ctx_log *l, bool on)
{
	if (on && l->mode == CTX_DURABILITY_ALWAYS)
		deferring = l;
	else if (deferring == l)
		deferring = NULL;
}

/* Under l->lock: put p at the end of the current batch. */
static void piece_link(ctx_log *l, log_piece *p)
{
	if (l->cur_last)
		l->cur_last->next = p;
	else
		l->cur = p;
	l->cur_last = p;
}

/* Under l->lock: the chunk a record of `need` bytes (not a big one) goes
 * into: the batch's last piece if it is a chunk with room, else a chunk from
 * the pool, linked to the batch. NULL if the pool is empty. */
static log_piece *room_for(ctx_log *l, size_t need)
{
	log_piece *t = l->cur_last;
	if (t && t->cap && t->len + need <= t->cap)
		return t;
	log_piece *c = l->pool;
	if (!c)
		return NULL;
	l->pool = c->next;
	l->pooled--;
	c->next = NULL;
	piece_link(l, c);
	return c;
}

static ctx_status append(ctx_log *l, const log_record *rec, uint64_t *rev_out, log_done *done,
                         bool defer);

/* Under always, the caller waits for the record (log_wait): it leads the
 * round itself if the disk is idle, so the flusher is not woken for it. */
ctx_status log_append(ctx_log *l, const log_record *rec, uint64_t *rev_out)
{
	return append(l, rec, rev_out, NULL, l->mode == CTX_DURABILITY_ALWAYS);
}

ctx_status log_append_done(ctx_log *l, const log_record *rec, uint64_t *rev_out, log_done *done)
{
	return append(l, rec, rev_out, done, deferring == l);
}

static ctx_status append(ctx_log *l, const log_record *rec, uint64_t *rev_out, log_done *done,
                         bool defer)
{
	unsigned char h[REC2_HEADER_MAX];
	int err = atomic_load(&l->failed_errno);
	if (err) {
		errno = err;
		return ctx_fail(CTX_CLOSED, "the log failed earlier (%s); writes are refused",
		                strerror(err));
	}
	/* Room for the longest header: its size is known once the revision is. */
	size_t need = REC2_HEADER_MAX + (size_t)rec->body_len;
	log_piece *big = NULL, *dst;
	if (need > BIG_RECORD && !(big = big_new(rec)))
		return ctx_fail(CTX_NOMEM, "no memory for a log record");
	pthread_mutex_lock(&l->lock);
	while (!big && !(dst = room_for(l, need))) {
		/* The pool is empty: add a chunk to it, allocated unlocked (if
		 * out of memory, this record alone, as a big one). */
		pthread_mutex_unlock(&l->lock);
		log_piece *c = chunk_new(l);
		if (!c && !(big = big_new(rec)))
			return ctx_fail(CTX_NOMEM, "no memory for a log record");
		pthread_mutex_lock(&l->lock);
		if (c) {
			c->next = l->pool;
			l->pool = c;
			l->pooled++;
		}
	}
	uint64_t rev = ++l->last_rev;
	atomic_store_explicit(&l->handed_rev, rev, memory_order_relaxed);
	if (done) {
		done->rev = rev;
		done->next = NULL;
		*l->cur_done_tail = done;
		l->cur_done_tail = &done->next;
	}
	int64_t dt = 0;
	if (rec_has_time(rec->type)) {
		dt = (int64_t)(rec->time_us - l->last_time);
		l->last_time = rec->time_us;
	}
	size_t hlen = rec2_header_put(h, rec->type, rev, rec->version, rec->incarnation, dt,
	                              rec->body_len, rec->body_crc);
	need = hlen + (size_t)rec->body_len;
	if (big) {
		big->start = REC2_HEADER_MAX - hlen;
		big->len = need;
		memcpy(big->data + big->start, h, hlen);
		piece_link(l, big);
	} else {
		unsigned char *at = dst->data + dst->len;
		memcpy(at, h, hlen);
		memcpy(at + hlen, rec->body, rec->body_len);
		dst->len += need;
	}
	/* The flusher waits for work only while nothing is pending: the
	 * append that makes the batch non-empty wakes it, after the unlock
	 * (below). */
	bool wake = l->pending++ == 0;
	l->bytes_since_rotate += need;
	l->cur_bytes += need;
	atomic_fetch_add_explicit(&l->unsynced, need, memory_order_relaxed);
	if (l->growth_wanted && l->bytes_since_rotate >= l->growth_wanted) {
		l->growth_wanted = 0;
		pthread_cond_broadcast(&l->growth_cv);
	}
	/* Under the lock: the flusher takes it before running done, so done
	 * sees *rev_out (often the revision field of the state it publishes). */
	*rev_out = rev;
	pthread_mutex_unlock(&l->lock);
	/* Signalled with the lock released: signalled under it, a flusher woken
	 * on this CPU (the other one busy, with a checkpoint say) preempted the
	 * committer, only to find the lock held, sleep on it and be woken by
	 * the unlock a second time: two switches and two wake-ups of the
	 * committer's CPU per batch. pending is read by the flusher under the
	 * lock, and a flusher waiting on work_cv now was waiting before we took
	 * the lock, so the signal reaches it (ctx_close waits for every call). */
	if (wake && !defer)
		pthread_cond_signal(&l->work_cv);
	return CTX_OK;
}

static bool l_flushing(ctx_log *l)
{
	pthread_mutex_lock(&l->lock);
	bool f = l->flushing;
	pthread_mutex_unlock(&l->lock);
	return f;
}

/* Wake the flusher for what is pending (deferred appends wake nobody). */
static void log_kick_flusher(ctx_log *l)
{
	pthread_mutex_lock(&l->lock);
	bool pending = l->pending != 0;
	pthread_mutex_unlock(&l->lock);
	if (pending)
		pthread_cond_signal(&l->work_cv);
}

/* Sleep until durable_seq moves from seq (a round ended) or the log failed. */
static void wait_seq(ctx_log *l, unsigned seq)
{
	atomic_fetch_add(&l->waiters, 1);
	if (atomic_load(&l->durable_seq) == seq && !atomic_load(&l->failed_errno))
		syscall(SYS_futex, &l->durable_seq, FUTEX_WAIT_PRIVATE, seq, NULL, NULL, 0);
	atomic_fetch_sub(&l->waiters, 1);
}

static bool durable_reached(const ctx_log *l, uint64_t rev)
{
	return atomic_load(&l->durable_rev) >= rev;
}

static bool backlog_within(const ctx_log *l, uint64_t max)
{
	return atomic_load(&l->unsynced) <= max;
}

/* Sleep on the batch counter until done(l, arg) holds or the log failed.
 * The flusher changes what done reads before it bumps durable_seq and
 * wakes, so a waiter that read the old durable_seq either sees the change
 * or is woken. */
static void wait_batches(ctx_log *l, bool (*done)(const ctx_log *, uint64_t), uint64_t arg)
{
	atomic_fetch_add(&l->waiters, 1);
	for (;;) {
		unsigned seq = atomic_load(&l->durable_seq);
		if (done(l, arg) || atomic_load(&l->failed_errno))
			break;
		syscall(SYS_futex, &l->durable_seq, FUTEX_WAIT_PRIVATE, seq, NULL, NULL, 0);
	}
	atomic_fetch_sub(&l->waiters, 1);
}

ctx_status log_wait(ctx_log *l, uint64_t rev)
{
	/* Lead while the disk is idle; else follow: wait for the running
	 * round, then lead the next one if nobody took it. */
	bool alone = atomic_fetch_add(&l->in_wait, 1) == 0;
	while (alone && !durable_reached(l, rev) && !atomic_load(&l->failed_errno)) {
		unsigned seq = atomic_load(&l->durable_seq);
		if (log_lead(l))
			continue;
		if (!l_flushing(l))
			break; /* (a stop or a rotation: the flusher's round) */
		wait_seq(l, seq);
	}
	if (!alone)
		log_kick_flusher(l); /* others wait too: the flusher's groups */
	atomic_fetch_sub(&l->in_wait, 1);
	if (!durable_reached(l, rev))
		wait_batches(l, durable_reached, rev);
	if (durable_reached(l, rev))
		return CTX_OK;
	errno = atomic_load(&l->failed_errno);
	return ctx_fail(CTX_IO, "the log failed before the change was durable: %s",
	                strerror(errno));
}

void log_set_backlog(ctx_log *l, size_t max)
{
	l->backlog_max = max;
}

void log_throttle(ctx_log *l)
{
	size_t max = l->backlog_max;
	if (max && atomic_load_explicit(&l->unsynced, memory_order_relaxed) > max) {
		log_kick_flusher(l); /* (deferred appends woke nobody) */
		wait_batches(l, backlog_within, max);
	}
}

ctx_status log_flush(ctx_log *l)
{
	log_lead(l);
	int err = atomic_load(&l->failed_errno);
	if (err) {
		errno = err;
		return ctx_fail(CTX_IO, "the log failed: %s", strerror(err));
	}
	return CTX_OK;
}

uint64_t log_led_rounds(ctx_log *l)
{
	return atomic_load(&l->led);
}

ctx_status log_rotate(ctx_log *l, uint64_t *last_rev_out)
{
	pthread_mutex_lock(&l->lock);
	l->rotate_requested = true;
	l->rotate_done = false;
	pthread_cond_signal(&l->work_cv);
	pthread_cond_signal(&l->pace_cv);
	while (!l->rotate_done)
		pthread_cond_wait(&l->growth_cv, &l->lock);
	*last_rev_out = l->rotated_at;
	pthread_mutex_unlock(&l->lock);
	int err = atomic_load(&l->failed_errno);
	if (err) {
		errno = err;
		return ctx_fail(CTX_IO, "the log failed: %s", strerror(err));
	}
	return CTX_OK;
}

uint64_t log_bytes_since_rotate(ctx_log *l)
{
	pthread_mutex_lock(&l->lock);
	uint64_t n = l->bytes_since_rotate;
	pthread_mutex_unlock(&l->lock);
	return n;
}

void log_add_growth(ctx_log *l, uint64_t bytes)
{
	pthread_mutex_lock(&l->lock);
	l->bytes_since_rotate += bytes;
	pthread_cond_broadcast(&l->growth_cv);
	pthread_mutex_unlock(&l->lock);
}

bool log_wait_growth(ctx_log *l, uint64_t bytes, unsigned timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until); /* growth_cv's clock */
	ctx_timespec_add_ms(&until, timeout_ms);
	pthread_mutex_lock(&l->lock);
	l->growth_wanted = bytes;
	while (l->bytes_since_rotate < bytes && !l->kicked)
		if (!timeout_ms)
			pthread_cond_wait(&l->growth_cv, &l->lock);
		else if (pthread_cond_timedwait(&l->growth_cv, &l->lock, &until) != 0)
			break;
	bool grown = l->bytes_since_rotate >= bytes;
	l->kicked = false;
	l->growth_wanted = 0;
	pthread_mutex_unlock(&l->lock);
	return grown;
}

void log_kick(ctx_log *l)
{
	pthread_mutex_lock(&l->lock);
	l->kicked = true;
	pthread_cond_broadcast(&l->growth_cv);
	pthread_mutex_unlock(&l->lock);
}

uint64_t log_acked_revision(ctx_log *l)
{
	if (l->mode == CTX_DURABILITY_ALWAYS)
		return atomic_load(&l->durable_rev);
	return atomic_load(&l->handed_rev);
}

uint64_t log_synced_revision(ctx_log *l)
{
	return atomic_load(&l->durable_rev);
}

void log_set_durable_hook(ctx_log *l, void (*fn)(void *arg), void *arg)
{
	pthread_mutex_lock(&l->lock);
	l->durable_hook_arg = arg;
	l->durable_hook = fn;
	pthread_mutex_unlock(&l->lock);
}

int log_failed(ctx_log *l)
{
	return atomic_load(&l->failed_errno);
}

uint64_t log_last_revision(ctx_log *l)
{
	pthread_mutex_lock(&l->lock);
	uint64_t r = l->last_rev;
	pthread_mutex_unlock(&l->lock);
	return r;
}

size_t log_buffer_bytes(ctx_log *l)
{
	return atomic_load_explicit(&l->chunks, memory_order_relaxed) * (size_t)CHUNK;
}

uint64_t log_syncs(ctx_log *l)
{
	return atomic_load(&l->syncs);
}
