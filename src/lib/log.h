/*
 * log.h - the write-ahead log: append, group commit, rotation.
 */
#ifndef CTX_LOG_H
#define CTX_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

typedef struct ctx_log ctx_log;

/* The zeros a new segment is created with (fewer if prealloc is smaller). */
#define LOG_PREALLOC_FIRST (64u << 10)

/* A record to append: the header fields and a body prepared (and checksummed)
 * by the caller before taking any lock. The log writes the header (format
 * version 2, format.h) under its lock. */
typedef struct log_record {
	uint8_t type;
	uint64_t version;
	uint64_t incarnation; /* ignored for REC_CREATE: its own revision */
	const unsigned char *body;
	uint32_t body_len;
	uint32_t body_crc;
	uint64_t time_us; /* CREATE, COMMIT, RESTORE (rec_has_time): the
	                   * record's time, which the header holds (as a
	                   * difference from the previous record's) and their
	                   * bodies do not; ignored for other types */
} log_record;

/* Open a new segment in dir whose first record will have revision
 * last_rev + 1, and start the flusher thread. prealloc: the largest chunk of
 * zeros a segment is grown by ahead of its records (0 = default, 4 MiB;
 * below 4096 = none: records are appended); none under CTX_DURABILITY_NONE. */
ctx_status log_open(const char *dir, uint64_t last_rev, ctx_durability mode, unsigned batch_ms,
                    size_t prealloc, ctx_log **out);

/* Flush and sync everything appended, stop the flusher, cut the segment's
 * zeros off (unsynced) and close it.
 * Returns CTX_IO if the last flush failed. */
ctx_status log_close(ctx_log *l);

/* Work to do once a record is durable: the flusher calls fn(done, true)
 * after the batch holding the record is synced (written, without sync, under
 * CTX_DURABILITY_NONE) and before it tells waiters, or fn(done, false) if the
 * log failed first. Calls come in revision order, from the flusher thread,
 * with no lock held; fn must not wait for the log. */
typedef struct log_done {
	struct log_done *next;
	void (*fn)(struct log_done *done, bool durable);
	uint64_t rev; /* set by log_append */
} log_done;

/* Append rec, assigning it the next revision (*rev_out). Short: copies the
 * record into the current batch under the log's lock and wakes the flusher
 * (under durability always it does not: the caller must log_wait for the
 * revision, which syncs it itself if no sync runs).
 * CTX_CLOSED if the log has failed (the store then refuses writes; errno is
 * the failure's), CTX_NOMEM. */
ctx_status log_append(ctx_log *l, const log_record *rec, uint64_t *rev_out);

/* The same, queueing done (may be NULL) with the record; on failure done is
 * not queued and never called. It wakes the flusher in every mode, unless
 * the calling thread defers (log_defer). */
ctx_status log_append_done(ctx_log *l, const log_record *rec, uint64_t *rev_out, log_done *done);

/* The highest revision every write up to which may be acknowledged: synced
 * under CTX_DURABILITY_ALWAYS, handed out otherwise. */
uint64_t log_acked_revision(ctx_log *l);

/* The last revision written and synced (written, under durability none). */
uint64_t log_synced_revision(ctx_log *l);

/* Call fn(arg) after every later advance of the durable revision and after
 * a failure (from the flusher, no log lock held). One hook per log. */
void log_set_durable_hook(ctx_log *l, void (*fn)(void *arg), void *arg);

/* Wait, holding no lock, until revision rev is on disk (synced under
 * CTX_DURABILITY_ALWAYS, written otherwise). CTX_IO if the log failed first. */
ctx_status log_wait(ctx_log *l, uint64_t rev);

/* Make the flusher start a new segment after the records appended so far;
 * wait until it has, and return the last revision of the older segments. */
ctx_status log_rotate(ctx_log *l, uint64_t *last_rev_out);

/* Bytes appended since the last rotation (a cheap, racy reading). */
uint64_t log_bytes_since_rotate(ctx_log *l);

/* Count `bytes` as appended since the last rotation: the log an open
 * recovered past the checkpoint, so that it counts toward the next one. */
void log_add_growth(ctx_log *l, uint64_t bytes);

/* Wait until the log has grown past `bytes` since the last rotation, or the
 * timeout (ms; 0: none) passed, or log_kick was called. True if it grew
 * past. */
bool log_wait_growth(ctx_log *l, uint64_t bytes, unsigned timeout_ms);
void log_kick(ctx_log *l);

/* The errno of the failure that stopped the log, or 0. */
int log_failed(ctx_log *l);

/* Bound the log's backlog: records appended and not yet durable (written,
 * under CTX_DURABILITY_NONE) to about max bytes (0 = no bound). */
void log_set_backlog(ctx_log *l, size_t max);
#define LOG_BACKLOG_DEFAULT ((size_t)64 << 20)

/* Wait, with no lock held and outside any RCU read-side critical section,
 * while the backlog is over its bound and the log has not failed: writers
 * that do not wait for their own sync (nowait commits, durability batch and
 * none) call it before they append, so that a slow or stalled disk holds
 * them back instead of growing the heap without bound. Each caller may add
 * one record past the bound. O(1) when under it. */
void log_throttle(ctx_log *l);

/* Bytes held by the batch buffers (for tests: bounded, whatever the size
 * of the records that went through). */
size_t log_buffer_bytes(ctx_log *l);

/* Counters for statistics. */
uint64_t log_syncs(ctx_log *l);
/* Of log_syncs, those of rounds (write and sync of a batch) run by a thread
 * that needed the sync itself (log_wait, log_flush) instead of the flusher
 * (a failed sync counts in neither). */
uint64_t log_led_rounds(ctx_log *l);
/* Durability always: on the calling thread, appends to l wake no flusher
 * while on (the thread waits for them, or calls log_flush, soon after);
 * off, or other modes: they do. */
void log_defer(ctx_log *l, bool on);
/* Durability always: if no round runs and records are pending, write and
 * sync them on the calling thread now; else return at once (the running
 * round's thread, or the flusher, takes them). CTX_IO once the log failed. */
ctx_status log_flush(ctx_log *l);
uint64_t log_last_revision(ctx_log *l);

/* Build a body: helpers for callers preparing records. */
typedef struct body_buf {
	unsigned char *data;
	size_t len;
	size_t cap;
} body_buf;
bool body_reserve(body_buf *b, size_t more);
void body_free(body_buf *b);

#endif
