/*
 * test_log_batch.c - a large batch of small records, written in few writes.
 *
 * Under durability batch with many writers, one batch of the log holds
 * megabytes of records. The log fills pooled chunks with them and writes a
 * batch chunk by chunk; before, a batch had one fixed 256 KiB buffer and
 * every record that no longer fitted became a record of its own, written by
 * its own pwrite (one per commit at 64 threads). Checked here on a log opened
 * directly (log.h), with the flusher held in its durable hook after a first
 * batch so that the next batch is known to hold every record appended
 * meanwhile:
 *   - 12 MiB of 1 KiB records, with big records (> 64 KiB) among them, take
 *     fewer than 100 writes (vfs fault countdown: the 100th write would fail
 *     the log), and every one is durable;
 *   - the segment holds every record in revision order with its body intact
 *     (across chunk boundaries and around the big records), in log format 2:
 *     its checksum over body and header, its time (a difference from the
 *     record before, going back as well as forward) as appended;
 *   - the chunks are recycled: the batch buffers after the large batch are
 *     bounded (log_buffer_bytes: 8 MiB kept at most), not the batch's size.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crc32c.h"
#include "format.h"
#include "log.h"
#include "vfs.h"

/* The durable hook holds the flusher while `hold` is set, after telling the
 * test it is there. */
typedef struct gate {
	pthread_mutex_t m;
	pthread_cond_t cv;
	bool hold;
	bool held;
} gate;

static void gate_hook(void *arg)
{
	gate *g = arg;
	pthread_mutex_lock(&g->m);
	if (g->hold) {
		g->held = true;
		pthread_cond_broadcast(&g->cv);
		while (g->hold)
			pthread_cond_wait(&g->cv, &g->m);
	}
	pthread_mutex_unlock(&g->m);
}

#define SMALL     1024u
#define NSMALL    12288u              /* 12 MiB of small records: 48 chunks */
#define BIGSIZE   (100u << 10)        /* above the log's BIG_RECORD */
#define BIG_AT(i) ((i) % 1000 == 500) /* 12 big records among them */

/* Record i's time: mostly rising, every third one a little back in time
 * (writers read the clock before they take the log's lock). */
#define TIME_OF(i) (1700000000000000ull + 10ull * (i) - ((i) % 3 == 1 ? 25 : 0))

/* Record i's body: its index, then a pattern from it. */
static size_t body_of(uint32_t i, unsigned char *b)
{
	size_t len = BIG_AT(i) ? BIGSIZE : SMALL - 16;
	put_u32(b, i);
	for (size_t k = 4; k < len; k++)
		b[k] = (unsigned char)(i * 31 + k);
	return len;
}

static void test_large_batch_few_writes(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("log_batch");
	gate g = {.hold = true};
	pthread_mutex_init(&g.m, NULL);
	pthread_cond_init(&g.cv, NULL);
	ctx_log *l;
	/* Durability always: no sleep between batches; prealloc off, so that
	 * the only writes are the batches'. */
	assert_int_equal(log_open(dir, 0, CTX_DURABILITY_ALWAYS, 0, 1, &l), CTX_OK);
	log_set_durable_hook(l, gate_hook, &g);
	size_t buffers_before = log_buffer_bytes(l);

	unsigned char *body = malloc(BIGSIZE);
	assert_non_null(body);
	uint64_t rev, first;
	/* Record 0 alone in a batch; the flusher then waits in the hook.
	 * (log_append_done wakes the flusher; since round 16 log_append under
	 * durability always does not: its caller syncs in log_wait.) */
	size_t len = body_of(0, body);
	log_record rec = {REC_COMMIT, 1, 1, body, (uint32_t)len, crc32c(0, body, len), TIME_OF(0)};
	assert_int_equal(log_append_done(l, &rec, &first, NULL), CTX_OK);
	pthread_mutex_lock(&g.m);
	while (!g.held)
		pthread_cond_wait(&g.cv, &g.m);
	pthread_mutex_unlock(&g.m);

	/* The next batch: everything appended while the flusher is held. */
	for (uint32_t i = 1; i <= NSMALL; i++) {
		len = body_of(i, body);
		rec = (log_record){REC_COMMIT,           i + 1,     1, body, (uint32_t)len,
		                   crc32c(0, body, len), TIME_OF(i)};
		assert_int_equal(log_append(l, &rec, &rev), CTX_OK);
		assert_int_equal(rev, first + i);
	}
	ctx_vfs_faults.write_errno = EIO;
	ctx_vfs_faults.write_countdown = 100;
	pthread_mutex_lock(&g.m);
	g.hold = false;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.m);

	assert_int_equal(log_wait(l, rev), CTX_OK);
	assert_int_equal(log_failed(l), 0);
	vfs_faults_reset();
	size_t buffers_after = log_buffer_bytes(l);
	printf("batch buffers: %zu bytes before, %zu after a 12 MiB batch\n", buffers_before,
	       buffers_after);
	/* The pool keeps what one batch used, but at most 32 chunks of 256 KiB
	 * (log.c's POOL_MAX: an idle log holds no more after a burst), and gives
	 * it back after a smaller batch. */
	assert_true(buffers_after <= (32u << 18) + (1u << 20));
	len = body_of(0, body);
	rec = (log_record){REC_COMMIT, 1, 1, body, (uint32_t)len, crc32c(0, body, len), TIME_OF(0)};
	assert_int_equal(log_append(l, &rec, &rev), CTX_OK);
	assert_int_equal(log_wait(l, rev), CTX_OK);
	assert_int_equal(log_append(l, &rec, &rev), CTX_OK);
	assert_int_equal(log_wait(l, rev), CTX_OK);
	assert_true(log_buffer_bytes(l) <= buffers_before);
	assert_int_equal(log_close(l), CTX_OK);

	/* The segment: every record in order, intact. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/wal-%016llx.log", dir, 1ull);
	size_t seg_size = 0;
	unsigned char *seg = test_read_file(path, &seg_size);
	assert_int_equal(get_u32(seg + 8), FORMAT_VERSION);
	size_t off = WAL_HEADER_SIZE;
	uint64_t t = 0; /* the time chain, from 0 at the segment's start */
	for (uint32_t i = 0; i <= NSMALL + 2; i++) {
		rec_view v = {0};
		assert_null(
		    rec_parse(FORMAT_VERSION, seg + off, seg_size - off, true, &v));
		assert_int_equal(v.type, REC_COMMIT);
		assert_int_equal(v.rev, first + i);
		t += (uint64_t)v.time_delta;
		assert_int_equal(t, TIME_OF(i <= NSMALL ? i : 0));
		len = body_of(i <= NSMALL ? i : 0, body);
		assert_int_equal(v.blen, len);
		assert_memory_equal(v.body, body, len);
		off += v.len;
	}
	/* The two small records after it end the segment. */
	assert_int_equal(off, seg_size);
	free(seg);
	free(body);
	pthread_mutex_destroy(&g.m);
	pthread_cond_destroy(&g.cv);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_large_batch_few_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
