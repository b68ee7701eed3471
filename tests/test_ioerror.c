/*
 * test_ioerror.c - write, fsync and space failures, injected through the file
 * layer (src/lib/vfs.h: ctx_vfs_faults).
 *
 * The contract checked, under durability always:
 *   - the commit that meets the failure returns CTX_IO, with errno (and
 *     ctx_get_stats().io_errno) the injected cause;
 *   - the store stays readable and shows only durable versions: the failed
 *     commit is not visible;
 *   - every later write (put, delete, transaction, create, drop, checkpoint)
 *     is refused with CTX_CLOSED (errno still the cause): after a failed fsync
 *     the kernel may have dropped the pages, so nothing written later could
 *     be trusted. CTX_IO says "this change met the failure, its outcome is
 *     unknown"; CTX_CLOSED says "refused, nothing of it was written";
 *   - after close and reopen (faults off), every acknowledged commit is there.
 *     A commit that returned CTX_IO may or may not be there, depending on the
 *     failure: after a failed write() nothing of it reached the file, so it is
 *     asserted absent; after a failed fsync its record was written (the page
 *     cache kept it), after ENOSPC part of a batch may be complete, so either
 *     outcome is accepted, but it is all there or not at all, and versions
 *     stay contiguous.
 * A failed checkpoint leaves the store usable and the directory recoverable.
 * A checkpoint is read back before it replaces the older one: one that the
 * disk stored wrong (a bit flipped in a write that succeeded) fails, and the
 * older checkpoint and the log since it stay.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "log.h"
#include "vfs.h"

/* ---- helpers ---------------------------------------------------------------- */

static int reset_faults(void **unused)
{
	vfs_faults_reset();
	ctx_vfs_faults.write_errno = 0;
	ctx_vfs_faults.sync_errno = 0;
	return 0;
}

static ctx_store *open_mode(const char *dir, ctx_durability mode)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = mode;
	o.batch_ms = 2;
	return test_open(&o);
}

static ctx_store *open_dir(const char *dir)
{
	return open_mode(dir, CTX_DURABILITY_ALWAYS);
}

static size_t count_of(ctx_store *s, const char *id)
{
	ctx_state *st = NULL;
	assert_ok(ctx_get(s, id, &st));
	size_t n = ctx_state_count(st);
	ctx_state_release(st);
	return n;
}

static bool has_kv(ctx_store *s, const char *id, const char *key, long val)
{
	ctx_state *st = NULL;
	assert_ok(ctx_get(s, id, &st));
	const void *v = NULL;
	size_t vl = 0;
	bool r = ctx_state_lookup(st, key, strlen(key), &v, &vl);
	if (r)
		r = vl == sizeof(val) && memcmp(v, &val, sizeof(val)) == 0;
	ctx_state_release(st);
	return r;
}

static ctx_status put_n(ctx_store *s, const char *id, long n)
{
	char key[32];
	snprintf(key, sizeof(key), "k%ld", n);
	return ctx_put(s, id, key, strlen(key), &n, sizeof(n), NULL);
}

/* Context "a" with keys k0..k4: versions 1..6, revisions 1..6. */
static ctx_store *open_with_five(const char *dir)
{
	ctx_store *s = open_dir(dir);
	assert_ok(ctx_create(s, "a"));
	for (long i = 0; i < 5; i++)
		assert_ok(put_n(s, "a", i));
	assert_int_equal(test_version_of(s, "a"), 6);
	return s;
}

static void expect_five(ctx_store *s)
{
	for (long i = 0; i < 5; i++) {
		char key[32];
		snprintf(key, sizeof(key), "k%ld", i);
		if (!has_kv(s, "a", key, i))
			fail_msg("acknowledged key %s is missing", key);
	}
}

/* After the failure: reads work, every kind of write is refused. */
static void expect_refusing(ctx_store *s, int err)
{
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.io_errno, err);

	errno = 0;
	assert_int_equal(put_n(s, "a", 100), CTX_CLOSED);
	assert_int_equal(errno, err);
	assert_int_equal(ctx_del(s, "a", "k0", 2, NULL), CTX_CLOSED);
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin(s, "a", &t));
	assert_ok(ctx_txn_put(t, "t", 1, "v", 1));
	assert_int_equal(ctx_txn_commit(t, 0, NULL), CTX_CLOSED);
	assert_ok(ctx_txn_begin(s, "a", &t));
	assert_int_equal(ctx_txn_commit(t, 0, NULL), CTX_CLOSED); /* even an empty one */
	size_t n = ctx_count(s);
	assert_int_equal(ctx_create(s, "new"), CTX_CLOSED);
	assert_int_equal(ctx_count(s), n);
	ctx_state *st = NULL;
	assert_int_equal(ctx_get(s, "new", &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_drop(s, "a"), CTX_CLOSED);
	assert_int_equal(ctx_checkpoint(s), CTX_CLOSED);

	/* Reading goes on, and the refused writes left no trace. */
	assert_int_equal(test_version_of(s, "a"), 6);
	expect_five(s);
	assert_false(has_kv(s, "a", "k100", 100));
	assert_false(has_kv(s, "a", "t", 0));
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, n);
	ctx_list_free(&l);
	assert_ok(ctx_get(s, "a", &st));
	ctx_iter *it = NULL;
	assert_ok(ctx_iter_begin(st, &it));
	const void *k, *v;
	size_t kl, vl, pairs = 0;
	while (ctx_iter_next(it, &k, &kl, &v, &vl))
		pairs++;
	assert_int_equal(pairs, 5);
	ctx_iter_free(it);
	ctx_state_release(st);
}

/* ---- one commit fails ------------------------------------------------------------- */

enum fault { FAULT_WRITE, FAULT_SYNC, FAULT_NOSPACE, FAULT_PARTIAL };

static const char *fault_name(enum fault f)
{
	static const char *names[] = {"write", "fsync", "no space", "partial write"};
	return names[f];
}

static void arm(enum fault f, long n, int err)
{
	switch (f) {
	case FAULT_WRITE:
		ctx_vfs_faults.write_errno = err;
		atomic_store(&ctx_vfs_faults.write_countdown, n);
		break;
	case FAULT_SYNC:
		ctx_vfs_faults.sync_errno = err;
		atomic_store(&ctx_vfs_faults.sync_countdown, n);
		break;
	case FAULT_NOSPACE:
		atomic_store(&ctx_vfs_faults.space_left, 0);
		break;
	case FAULT_PARTIAL:
		atomic_store(&ctx_vfs_faults.space_left, n);
		break;
	}
}

static void check_single_failure(enum fault f)
{
	char name[64];
	snprintf(name, sizeof(name), "ioerr-single-%d", (int)f);
	char *dir = test_make_dir(name);
	ctx_store *s = open_with_five(dir);
	int err = f == FAULT_NOSPACE || f == FAULT_PARTIAL ? ENOSPC : EIO;
	/* (a partial write of 8 bytes: within any record of log format 2, whose
	 * crc, type, length, revision and version take 8 bytes at least) */
	arm(f, f == FAULT_PARTIAL ? 8 : 1, EIO);

	errno = 0;
	ctx_status st = put_n(s, "a", 5);
	if (st != CTX_IO)
		fail_msg("%s failure: put gave %s", fault_name(f), ctx_strerror(st));
	assert_int_equal(errno, err);
	/* Not durable: not visible. */
	assert_int_equal(test_version_of(s, "a"), 6);
	assert_false(has_kv(s, "a", "k5", 5));
	expect_refusing(s, err);
	ctx_close(s);
	reset_faults(NULL);

	ctx_verify_report rep;
	assert_ok(ctx_verify(dir, &rep));
	if (f == FAULT_PARTIAL)
		assert_int_equal(rep.torn_bytes, 8); /* the part that was written */
	else if (f != FAULT_SYNC)
		assert_int_equal(rep.torn_bytes, 0);
	s = open_dir(dir);
	expect_five(s);
	uint64_t v = test_version_of(s, "a");
	if (f == FAULT_SYNC) {
		/* Written, never synced: may be there, but whole. */
		assert_true(v == 6 || v == 7);
		assert_int_equal(has_kv(s, "a", "k5", 5), v == 7);
		assert_int_equal(count_of(s, "a"), v - 1);
	} else {
		/* Nothing of it (or only a torn part) reached the file. */
		assert_int_equal(v, 6);
		assert_false(has_kv(s, "a", "k5", 5));
		assert_int_equal(count_of(s, "a"), 5);
	}
	assert_int_equal(rep.last_revision, v);
	/* Writable again, numbering on from what was recovered. */
	uint64_t nv = 0;
	assert_ok(ctx_put(s, "a", "after", 5, "x", 1, &nv));
	assert_int_equal(nv, v + 1);
	assert_ok(ctx_create(s, "b"));
	ctx_close(s);
	s = open_dir(dir);
	assert_int_equal(test_version_of(s, "a"), v + 1);
	assert_int_equal(test_version_of(s, "b"), 1);
	expect_five(s);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_write_failure(void **unused)
{
	check_single_failure(FAULT_WRITE);
}

static void test_fsync_failure(void **unused)
{
	check_single_failure(FAULT_SYNC);
}

static void test_no_space(void **unused)
{
	check_single_failure(FAULT_NOSPACE);
}

static void test_partial_write_no_space(void **unused)
{
	check_single_failure(FAULT_PARTIAL);
}

/* Other errno values are kept as they are. */
static void test_errno_kept(void **unused)
{
	const int errs[] = {EROFS, EDQUOT, EFBIG};
	for (int i = 0; i < 3; i++) {
		char *dir = test_make_dir("ioerr-errno");
		ctx_store *s = open_with_five(dir);
		arm(i == 1 ? FAULT_SYNC : FAULT_WRITE, 1, errs[i]);
		errno = 0;
		assert_int_equal(put_n(s, "a", 5), CTX_IO);
		assert_int_equal(errno, errs[i]);
		ctx_stats stats;
		ctx_get_stats(s, &stats);
		assert_int_equal(stats.io_errno, errs[i]);
		assert_true(strlen(ctx_last_error()) > 0);
		ctx_close(s);
		reset_faults(NULL);
		test_remove_dir(dir);
		free(dir);
	}
}

/* A create and a drop that meet the failure: nothing changes. */
static void check_failed_create_or_drop(bool create)
{
	char *dir = test_make_dir(create ? "ioerr-create" : "ioerr-drop");
	ctx_store *s = open_with_five(dir);
	assert_ok(ctx_create(s, "d"));
	assert_int_equal(ctx_count(s), 2);
	arm(FAULT_WRITE, 1, EIO);
	errno = 0;
	if (create) {
		assert_int_equal(ctx_create(s, "c"), CTX_IO);
		assert_int_equal(errno, EIO);
		ctx_state *st = NULL;
		assert_int_equal(ctx_get(s, "c", &st), CTX_NOT_FOUND);
	} else {
		assert_int_equal(ctx_drop(s, "d"), CTX_IO);
		assert_int_equal(errno, EIO);
	}
	/* Readers see the durable state: "d" until its drop is durable, no
	 * "c"; and so does the count. */
	assert_int_equal(test_version_of(s, "d"), 1);
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, 2);
	ctx_list_free(&l);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.contexts, 2);
	assert_int_equal(ctx_count(s), 2);
	ctx_close(s);
	reset_faults(NULL);
	s = open_dir(dir);
	ctx_state *st = NULL;
	assert_int_equal(ctx_get(s, "c", &st), CTX_NOT_FOUND);
	assert_int_equal(test_version_of(s, "d"), 1); /* the drop never reached the file */
	assert_int_equal(ctx_count(s), 2);
	expect_five(s);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_failed_create(void **unused)
{
	check_failed_create_or_drop(true);
}

static void test_failed_drop(void **unused)
{
	check_failed_create_or_drop(false);
}

/* ---- failures under concurrent writers ----------------------------------------------- */

enum { THREADS = 4 };

typedef struct putter {
	ctx_store *s;
	char id[16];
	atomic_long acked;
	ctx_status failed;
	int failed_errno;
	ctx_status after;
	long visible_after; /* version seen right after the failure */
} putter;

/* Put k0, k1, ... until a put fails; then one more must fail too. */
static void *putter_main(void *arg)
{
	putter *p = arg;
	for (long n = 0;; n++) {
		errno = 0;
		ctx_status st = put_n(p->s, p->id, n);
		if (st != CTX_OK) {
			p->failed = st;
			p->failed_errno = errno;
			p->after = put_n(p->s, p->id, n + 1000000);
			ctx_state *vs = NULL;
			if (ctx_get(p->s, p->id, &vs) == CTX_OK) {
				p->visible_after = (long)ctx_state_version(vs);
				ctx_state_release(vs);
			}
			return NULL;
		}
		atomic_fetch_add(&p->acked, 1);
		if (n > 1000000)
			return NULL;
	}
}

static void check_concurrent_failure(enum fault f)
{
	char name[64];
	snprintf(name, sizeof(name), "ioerr-threads-%d", (int)f);
	char *dir = test_make_dir(name);
	ctx_store *s = open_dir(dir);
	static putter p[THREADS];
	pthread_t th[THREADS];
	for (int t = 0; t < THREADS; t++) {
		memset(&p[t], 0, sizeof(p[t]));
		p[t].s = s;
		snprintf(p[t].id, sizeof(p[t].id), "c%d", t);
		assert_ok(ctx_create(s, p[t].id));
		assert_int_equal(pthread_create(&th[t], NULL, putter_main, &p[t]), 0);
	}
	/* Let them run a while, then fail a batch in the middle of it all. */
	for (int t = 0; t < THREADS; t++)
		while (atomic_load(&p[t].acked) < 30)
			usleep(100);
	arm(f, f == FAULT_PARTIAL ? 300 : 1, EIO);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	int err = f == FAULT_NOSPACE || f == FAULT_PARTIAL ? ENOSPC : EIO;
	long acked[THREADS];
	int met = 0; /* threads whose put met the failure (the others' came later) */
	for (int t = 0; t < THREADS; t++) {
		acked[t] = atomic_load(&p[t].acked);
		if (p[t].failed != CTX_IO && p[t].failed != CTX_CLOSED)
			fail_msg("thread %d: %s, want io or closed", t, ctx_strerror(p[t].failed));
		met += p[t].failed == CTX_IO;
		assert_int_equal(p[t].failed_errno, err);
		assert_int_equal(p[t].after, CTX_CLOSED);
		/* Only durable versions were ever visible: the acknowledged ones. */
		assert_int_equal(p[t].visible_after, 1 + acked[t]);
		assert_int_equal(test_version_of(s, p[t].id), (uint64_t)(1 + acked[t]));
	}
	assert_true(met >= 1);
	ctx_close(s);
	reset_faults(NULL);

	s = open_dir(dir);
	long extra = 0;
	for (int t = 0; t < THREADS; t++) {
		uint64_t v = test_version_of(s, p[t].id);
		char key[32];
		for (long n = 0; n < acked[t]; n++) {
			snprintf(key, sizeof(key), "k%ld", n);
			if (!has_kv(s, p[t].id, key, n))
				fail_msg("%s failure: acknowledged %s/%s lost", fault_name(f), p[t].id,
				         key);
		}
		snprintf(key, sizeof(key), "k%ld", acked[t]);
		bool failed_there = has_kv(s, p[t].id, key, acked[t]);
		if (f == FAULT_WRITE)
			assert_false(failed_there); /* its batch was never written */
		assert_int_equal(v, (uint64_t)(1 + acked[t] + failed_there));
		assert_int_equal(count_of(s, p[t].id), (size_t)(acked[t] + failed_there));
		extra += failed_there;
	}
	print_message("%s failure under %d writers: %ld failed puts recovered\n", fault_name(f),
	              THREADS, extra);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_concurrent_write_failure(void **unused)
{
	check_concurrent_failure(FAULT_WRITE);
}

static void test_concurrent_fsync_failure(void **unused)
{
	check_concurrent_failure(FAULT_SYNC);
}

static void test_concurrent_no_space(void **unused)
{
	check_concurrent_failure(FAULT_PARTIAL);
}

/* ---- durability batch ------------------------------------------------------------------- */

/* Puts return before the disk is involved; the failure shows in a later
 * call, refused with CTX_CLOSED (no put waits, so none meets the failure
 * itself). After reopen: exactly what was on disk before the fault. */
static void test_batch_mode_failure(void **unused)
{
	char *dir = test_make_dir("ioerr-batch");
	ctx_store *s = open_mode(dir, CTX_DURABILITY_BATCH);
	assert_ok(ctx_create(s, "a"));
	for (long i = 0; i < 5; i++)
		assert_ok(put_n(s, "a", i));
	assert_ok(ctx_checkpoint(s)); /* everything so far is on disk */
	arm(FAULT_WRITE, 1, EIO);
	long n = 5;
	ctx_status st = CTX_OK;
	for (; n < 5 + 100000 && st == CTX_OK; n++) {
		st = put_n(s, "a", n);
		if (n % 64 == 0)
			usleep(1000);
	}
	assert_int_equal(st, CTX_CLOSED);
	assert_int_equal(errno, EIO);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.io_errno, EIO);
	assert_int_equal(put_n(s, "a", -1), CTX_CLOSED);
	ctx_close(s);
	reset_faults(NULL);

	/* The first write after the checkpoint failed: nothing after it is on
	 * disk. */
	s = open_mode(dir, CTX_DURABILITY_BATCH);
	uint64_t v = test_version_of(s, "a");
	assert_int_equal(v, 6);
	for (long i = 0; i < (long)v - 1; i++) {
		char key[32];
		snprintf(key, sizeof(key), "k%ld", i);
		assert_true(has_kv(s, "a", key, i));
	}
	assert_int_equal(count_of(s, "a"), v - 1);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* ---- failed checkpoints ------------------------------------------------------------------ */

static size_t count_files(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0, sl = strlen(suffix);
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		n += l >= sl && strcmp(e->d_name + l - sl, suffix) == 0;
	}
	closedir(d);
	return n;
}

/* A crash image of a live store: its files as they are now. */
static char *copy_live(const char *dir, const char *name)
{
	char *img = test_make_dir(name);
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "cp '%s'/wal-*.log '%s'/ && (cp '%s'/ckpt-*.ckpt '%s'/ 2>/dev/null; true)",
	         dir, img, dir, img);
	assert_int_equal(system(cmd), 0);
	return img;
}

/* How the checkpoint is made to fail. A checkpoint first rotates the log
 * (the new segment: one write, a sync of it and one of the directory), then
 * writes its file (one write for a small store), syncs it, renames it and
 * syncs the directory; the counts below aim at the checkpoint's own steps. */
enum ckpt_fault { CK_WRITE, CK_SYNC, CK_NOSPACE, CK_DIRSYNC };

static void check_failed_checkpoint(enum ckpt_fault f)
{
	char name[64];
	snprintf(name, sizeof(name), "ioerr-ckpt-%d", (int)f);
	char *dir = test_make_dir(name);
	ctx_store *s = open_with_five(dir);
	assert_ok(ctx_checkpoint(s)); /* an older, good one */
	assert_ok(put_n(s, "a", 5));
	assert_ok(ctx_create(s, "b"));
	ctx_stats before;
	ctx_get_stats(s, &before);
	assert_int_equal(before.checkpoints, 1);

	switch (f) {
	case CK_WRITE:
		arm(FAULT_WRITE, 2, EIO);
		break;
	case CK_SYNC:
		arm(FAULT_SYNC, 3, EIO);
		break;
	case CK_NOSPACE:
		/* (the new segment: its header and first zeros, in one write) */
		arm(FAULT_PARTIAL, WAL_HEADER_SIZE + LOG_PREALLOC_FIRST + 40, 0);
		break;
	case CK_DIRSYNC:
		arm(FAULT_SYNC, 4, EIO);
		break;
	}
	errno = 0;
	ctx_status st = ctx_checkpoint(s);
	reset_faults(NULL);
	ctx_stats after;
	ctx_get_stats(s, &after);
	/* (After a failed directory sync the file is complete and in place, only
	 * its name's durability is in doubt: it fails all the same.) */
	assert_int_equal(st, CTX_IO);
	assert_int_equal(errno, f == CK_NOSPACE ? ENOSPC : EIO);
	assert_int_equal(after.checkpoints, 1); /* not counted */
	assert_int_equal(after.checkpoint_revision, before.checkpoint_revision);
	assert_int_equal(count_files(dir, ".tmp"), 0); /* cleaned up */
	/* The log is fine: the store goes on. */
	assert_int_equal(after.io_errno, 0);
	assert_ok(put_n(s, "a", 6));
	assert_ok(ctx_put(s, "b", "x", 1, "y", 1, NULL));

	/* Recoverable as it is now, as if the process died here. */
	char *img = copy_live(dir, "ioerr-ckpt-img");
	ctx_store *r = open_dir(img);
	assert_int_equal(test_version_of(r, "a"), 8);
	expect_five(r);
	assert_true(has_kv(r, "a", "k5", 5));
	assert_true(has_kv(r, "a", "k6", 6));
	assert_int_equal(test_version_of(r, "b"), 2);
	ctx_close(r);

	/* A checkpoint works again, and so does a clean reopen. */
	assert_ok(ctx_checkpoint(s));
	ctx_get_stats(s, &after);
	assert_int_equal(after.checkpoints, 2);
	assert_int_equal(after.checkpoint_revision, after.revision);
	ctx_close(s);
	s = open_dir(dir);
	assert_int_equal(test_version_of(s, "a"), 8);
	assert_int_equal(test_version_of(s, "b"), 2);
	expect_five(s);
	ctx_close(s);
	test_remove_dir(img);
	test_remove_dir(dir);
	free(img);
	free(dir);
}

static void test_checkpoint_write_failure(void **unused)
{
	check_failed_checkpoint(CK_WRITE);
}

static void test_checkpoint_fsync_failure(void **unused)
{
	check_failed_checkpoint(CK_SYNC);
}

static void test_checkpoint_no_space(void **unused)
{
	check_failed_checkpoint(CK_NOSPACE);
}

static void test_checkpoint_dir_sync_failure(void **unused)
{
	check_failed_checkpoint(CK_DIRSYNC);
}

static bool has_file(const char *dir, uint64_t rev, const char *kind)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s-%016llx.%s", dir, kind, (unsigned long long)rev,
	         strcmp(kind, "ckpt") == 0 ? "ckpt" : "log");
	struct stat sb;
	return stat(path, &sb) == 0;
}

/* A checkpoint the disk stored wrong does not read back: it fails (CTX_IO,
 * naming the file), nothing older is deleted, and the directory as it is then
 * recovers everything (from the older checkpoint and the log); the next
 * checkpoint replaces it and deletes what it covers. */
static void test_checkpoint_read_back_failure(void **unused)
{
	char *dir = test_make_dir("ioerr-readback");
	ctx_store *s = open_with_five(dir);
	assert_ok(ctx_checkpoint(s)); /* ckpt-6, the log goes on at wal-7 */
	assert_true(has_file(dir, 6, "ckpt") && has_file(dir, 7, "wal"));
	assert_false(has_file(dir, 1, "wal")); /* read back intact: wal-1 deleted */
	assert_ok(put_n(s, "a", 5));           /* revision 7 */

	atomic_store(&ctx_vfs_faults.flip_tmp_write, true);
	ctx_status st = ctx_checkpoint(s);
	assert_false(atomic_load(&ctx_vfs_faults.flip_tmp_write)); /* it was used */
	assert_int_equal(st, CTX_IO);
	assert_non_null(strstr(ctx_last_error(), "read-back failed"));
	assert_non_null(strstr(ctx_last_error(), "ckpt-0000000000000007.ckpt"));
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoints, 1); /* not counted */
	assert_int_equal(stats.checkpoint_revision, 6);
	/* Nothing deleted: the older checkpoint and the log after it stay. */
	assert_true(has_file(dir, 6, "ckpt") && has_file(dir, 7, "wal"));
	assert_true(has_file(dir, 7, "ckpt") && has_file(dir, 8, "wal"));
	assert_ok(put_n(s, "a", 6)); /* the store goes on: revision 8 */

	/* As if the process died here: the damaged newest is passed over. */
	char *img = copy_live(dir, "ioerr-readback-img");
	ctx_verify_report rep;
	assert_ok(ctx_verify(img, &rep));
	assert_int_equal(rep.checkpoints, 2);
	assert_int_equal(rep.checkpoints_damaged, 1);
	assert_int_equal(rep.checkpoint_revision, 6);
	assert_int_equal(rep.last_revision, 8);
	ctx_store *r = open_dir(img);
	expect_five(r);
	assert_true(has_kv(r, "a", "k5", 5) && has_kv(r, "a", "k6", 6));
	ctx_close(r);

	/* The next checkpoint reads back intact and leaves one generation. */
	assert_ok(ctx_checkpoint(s));
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoints, 2);
	assert_int_equal(stats.checkpoint_revision, 8);
	assert_true(has_file(dir, 8, "ckpt") && has_file(dir, 9, "wal"));
	assert_false(has_file(dir, 6, "ckpt") || has_file(dir, 7, "ckpt"));
	assert_false(has_file(dir, 7, "wal") || has_file(dir, 8, "wal"));
	ctx_close(s);
	s = open_dir(dir);
	expect_five(s);
	assert_true(has_kv(s, "a", "k5", 5) && has_kv(s, "a", "k6", 6));
	ctx_close(s);
	test_remove_dir(img);
	test_remove_dir(dir);
	free(img);
	free(dir);
}

/* The new log segment of a checkpoint cannot be written: the log stops (no
 * write can be trusted after a failed one), the checkpoint fails, nothing
 * acknowledged is lost. */
static void test_rotation_failure(void **unused)
{
	char *dir = test_make_dir("ioerr-rotate");
	ctx_store *s = open_with_five(dir);
	arm(FAULT_WRITE, 1, EIO);
	errno = 0;
	assert_int_equal(ctx_checkpoint(s), CTX_IO);
	assert_int_equal(errno, EIO);
	reset_faults(NULL);
	expect_refusing(s, EIO);
	ctx_close(s);
	s = open_dir(dir);
	assert_int_equal(test_version_of(s, "a"), 6);
	expect_five(s);
	assert_ok(put_n(s, "a", 5));
	ctx_close(s);
	s = open_dir(dir);
	assert_int_equal(test_version_of(s, "a"), 7);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_write_failure, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_fsync_failure, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_no_space, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_partial_write_no_space, reset_faults,
	                                    reset_faults),
	    cmocka_unit_test_setup_teardown(test_errno_kept, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_failed_create, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_failed_drop, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_concurrent_write_failure, reset_faults,
	                                    reset_faults),
	    cmocka_unit_test_setup_teardown(test_concurrent_fsync_failure, reset_faults,
	                                    reset_faults),
	    cmocka_unit_test_setup_teardown(test_concurrent_no_space, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_batch_mode_failure, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_checkpoint_write_failure, reset_faults,
	                                    reset_faults),
	    cmocka_unit_test_setup_teardown(test_checkpoint_fsync_failure, reset_faults,
	                                    reset_faults),
	    cmocka_unit_test_setup_teardown(test_checkpoint_no_space, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_checkpoint_dir_sync_failure, reset_faults,
	                                    reset_faults),
	    cmocka_unit_test_setup_teardown(test_rotation_failure, reset_faults, reset_faults),
	    cmocka_unit_test_setup_teardown(test_checkpoint_read_back_failure, reset_faults,
	                                    reset_faults),
	};
	if (getenv("CTX_TEST_FILTER")) /* run only the tests matching it */
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
