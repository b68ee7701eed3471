/*
 * test_coverage_store.c - the corners of opening, recovering, logging and
 * checkpointing that the other tests do not reach.
 *
 * Hand-written logs (valid checksums, chosen content):
 *   - every record kind recovers as the live store would have built it: a
 *     create with initial data and metadata, commits, a time-to-live, a
 *     point on the head and one on an older version, the removal of a point
 *     that does not exist (nothing to do), a drop; with a history too short
 *     for a point's version, the point is lost and the store still opens;
 *   - malformed bodies (a point removal or a drop with trailing bytes, a
 *     point label too long, a create with data and trailing bytes, a short
 *     ttl record) and a segment whose header names another first revision
 *     are CTX_CORRUPT naming the file, for ctx_verify and ctx_open alike;
 *   - a checkpoint that covers records the log no longer has (its old
 *     segment cut at a record boundary): recovery ends at the checkpoint.
 * Odd directory contents: a segment or checkpoint that cannot be read (a
 * dangling symlink) or mapped (a directory) is CTX_IO; a torn tail that
 * cannot be cut (failing fsync) is CTX_IO, and the next open cuts it.
 * Opening: paths too long, below a regular file, an empty path, a LOCK that
 * is a directory, a log segment that cannot be created: CTX_INVALID or
 * CTX_IO, nothing served, and the directory opens afterwards.
 * Checkpoints and the log: a checkpoint whose temporary file cannot be
 * created or renamed, a rotation whose new segment cannot be created (the
 * store then refuses writes), a failing final checkpoint at close, failing
 * background checkpoints (they succeed again once possible), concurrent
 * ctx_checkpoint calls, and the log's growth counter.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "log.h"
#include "store.h"
#include "vfs.h"

/* ---- helpers ------------------------------------------------------------------- */

static ctx_store *open_opts(const char *dir, size_t history_depth)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = history_depth;
	return test_open(&o);
}

static ctx_store *open_dir(const char *dir)
{
	return open_opts(dir, 0);
}

static char *path_in(const char *dir, const char *name)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);
	assert_non_null(p);
	sprintf(p, "%s/%s", dir, name);
	return p;
}

static char *seg_path(const char *dir, uint64_t first)
{
	char name[64];
	snprintf(name, sizeof(name), "wal-%016llx.log", (unsigned long long)first);
	return path_in(dir, name);
}

static char *ckpt_path(const char *dir, uint64_t rev, const char *ext)
{
	char name[64];
	snprintf(name, sizeof(name), "ckpt-%016llx.%s", (unsigned long long)rev, ext);
	return path_in(dir, name);
}

static uint64_t revision_of(ctx_store *s)
{
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	return stats.revision;
}

/* ---- hand-written logs ------------------------------------------------------------ */

typedef struct wal {
	unsigned char buf[8192];
	size_t len;
	uint64_t next_rev;
} wal;

static void wal_begin(wal *w, uint64_t first, uint64_t header_first)
{
	memset(w, 0, sizeof(*w));
	memcpy(w->buf, WAL_MAGIC, 8);
	put_u32(w->buf + 8, FORMAT_V1); /* records of log format 1, still read */
	put_u32(w->buf + 12, WAL_HEADER_SIZE);
	put_u64(w->buf + 16, header_first);
	put_u32(w->buf + 28, crc32c(0, w->buf, 28));
	w->len = WAL_HEADER_SIZE;
	w->next_rev = first;
}

/* Append a record; returns its revision. */
static uint64_t wal_rec(wal *w, uint8_t type, uint64_t version, uint64_t incarnation,
                        const unsigned char *body, size_t blen)
{
	assert_true(w->len + REC_HEADER_SIZE + blen <= sizeof(w->buf));
	unsigned char *h = w->buf + w->len;
	uint64_t rev = w->next_rev++;
	memset(h, 0, REC_HEADER_SIZE);
	put_u32(h + 4, (uint32_t)blen);
	put_u64(h + 8, rev);
	put_u64(h + 16, version);
	put_u64(h + 24, type == REC_CREATE ? rev : incarnation);
	h[32] = type;
	put_u32(h + 36, crc32c(0, body, blen));
	put_u32(h, crc32c(0, h + 4, REC_HEADER_SIZE - 4));
	memcpy(h + REC_HEADER_SIZE, body, blen);
	w->len += REC_HEADER_SIZE + blen;
	return rev;
}

static void wal_write(const wal *w, const char *dir, uint64_t first)
{
	char *p = seg_path(dir, first);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(w->buf, 1, w->len, f), w->len);
	fclose(f);
	free(p);
}

/* Record bodies. */
typedef struct body {
	unsigned char b[1024];
	size_t n;
} body;

static void b_u8(body *b, uint8_t v)
{
	b->b[b->n++] = v;
}
static void b_u32(body *b, uint32_t v)
{
	put_u32(b->b + b->n, v);
	b->n += 4;
}
static void b_u64(body *b, uint64_t v)
{
	put_u64(b->b + b->n, v);
	b->n += 8;
}
static void b_bytes(body *b, const char *s)
{
	memcpy(b->b + b->n, s, strlen(s));
	b->n += strlen(s);
}
static void b_id(body *b, const char *id)
{
	b->n = 0;
	put_u16(b->b, (uint16_t)strlen(id));
	b->n = 2;
	b_bytes(b, id);
}
static void b_op(body *b, uint8_t kind, const char *k, const char *v)
{
	b_u8(b, kind);
	b_u32(b, (uint32_t)strlen(k));
	b_u32(b, (uint32_t)strlen(v));
	b_bytes(b, k);
	b_bytes(b, v);
}

/* Record times: now, so that a time-to-live in them has not run out. */
static uint64_t T0;

/* create "a" (1), a := {k: v1} (2), {k: v2} (3). */
static void wal_basics(wal *w, body *b)
{
	b_id(b, "a");
	b_u64(b, T0);
	wal_rec(w, REC_CREATE, 1, 0, b->b, b->n);
	b_id(b, "a");
	b_u64(b, T0 + 1);
	b_u32(b, 1);
	b_op(b, OP_PUT_CODE, "k", "v1");
	wal_rec(w, REC_COMMIT, 2, 1, b->b, b->n);
	b_id(b, "a");
	b_u64(b, T0 + 2);
	b_u32(b, 1);
	b_op(b, OP_PUT_CODE, "k", "v2");
	wal_rec(w, REC_COMMIT, 3, 1, b->b, b->n);
}

static void test_handwritten_log(void **unused)
{
	T0 = test_wall_us();
	char *dir = test_make_dir("cov-handlog");
	wal w;
	body b;
	wal_begin(&w, 1, 1);
	wal_basics(&w, &b);
	/* A point on the head (3), and one on version 2 (older than the
	 * head when replayed). */
	b_id(&b, "a");
	b_u64(&b, T0 + 3);
	b_u64(&b, 42);
	b_u8(&b, 4);
	b_bytes(&b, "head");
	wal_rec(&w, REC_POINT, 3, 1, b.b, b.n);
	b_id(&b, "a");
	b_u64(&b, T0 + 4);
	b_u64(&b, 43);
	b_u8(&b, 3);
	b_bytes(&b, "old");
	wal_rec(&w, REC_POINT, 2, 1, b.b, b.n);
	/* Removing a point that is not there changes nothing. */
	b_id(&b, "a");
	wal_rec(&w, REC_POINT_DEL, 1, 1, b.b, b.n);
	/* A create with data and metadata. */
	b_id(&b, "b");
	b_u64(&b, T0 + 5);
	b_u32(&b, 3);
	b_op(&b, OP_PUT_CODE, "x", "1");
	b_op(&b, OP_META_PUT_CODE, "m", "2");
	b_op(&b, OP_DEL_CODE, "nothing", "");
	uint64_t b_rev = wal_rec(&w, REC_CREATE, 1, 0, b.b, b.n);
	/* A time-to-live for b, and a context created and dropped. */
	b_id(&b, "b");
	b_u64(&b, 3600ull * 1000000);
	b_u64(&b, T0 + 6);
	wal_rec(&w, REC_TTL, 0, b_rev, b.b, b.n);
	b_id(&b, "gone");
	b_u64(&b, T0 + 7);
	uint64_t g_rev = wal_rec(&w, REC_CREATE, 1, 0, b.b, b.n);
	b_id(&b, "gone");
	wal_rec(&w, REC_DROP, 0, g_rev, b.b, b.n);
	wal_write(&w, dir, 1);

	ctx_verify_report r;
	assert_ok(ctx_verify(dir, &r));
	assert_int_equal(r.records, 10);
	assert_int_equal(r.last_revision, 10);
	assert_int_equal(r.contexts, 2);
	assert_int_equal(r.keys, 2);
	assert_int_equal(r.torn_bytes, 0);

	ctx_store *s = open_dir(dir);
	assert_true(test_has_str(s, "a", "k", "v2"));
	assert_true(test_has_str(s, "b", "x", "1"));
	ctx_state *st;
	assert_ok(ctx_get(s, "b", &st));
	assert_int_equal(ctx_state_meta_count(st), 1);
	ctx_state_release(st);
	assert_int_equal(ctx_get(s, "gone", &st), CTX_NOT_FOUND);
	ctx_point *p;
	size_t n;
	assert_ok(ctx_point_list(s, "a", &p, &n));
	assert_int_equal(n, 2);
	assert_int_equal(p[0].version, 3);
	assert_string_equal(p[0].label, "head");
	assert_int_equal(p[1].version, 2);
	assert_string_equal(p[1].label, "old");
	free(p);
	ctx_context_status *v;
	assert_ok(ctx_status_view(s, &v, &n));
	assert_int_equal(n, 2);
	assert_string_equal(v[1].id, "b");
	assert_int_equal(v[1].ttl_ms, 3600000);
	free(v);
	ctx_close(s);

	/* Again from the log alone, keeping one version: the point on version
	 * 2 has nothing to pin any more, and is dropped with a warning. */
	DIR *d = opendir(dir);
	struct dirent *e;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "ckpt-", 5) == 0 || strncmp(e->d_name, "wal-", 4) == 0) {
			char *q = path_in(dir, e->d_name);
			unlink(q);
			free(q);
		}
	closedir(d);
	wal_write(&w, dir, 1);
	s = open_opts(dir, 1);
	assert_ok(ctx_point_list(s, "a", &p, &n));
	assert_int_equal(n, 1);
	assert_int_equal(p[0].version, 3);
	free(p);
	assert_true(test_has_str(s, "a", "k", "v2"));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* One malformed record after the basics: CTX_CORRUPT from both verify and
 * open, naming the file. */
static void expect_corrupt_log(const wal *w, const char *what)
{
	char *dir = test_make_dir("cov-badlog");
	wal_write(w, dir, 1);
	ctx_verify_report r;
	ctx_status st = ctx_verify(dir, &r);
	if (st != CTX_CORRUPT)
		fail_msg("%s: verify: %s (%s)", what, ctx_strerror(st), r.message);
	assert_non_null(strstr(r.message, "wal-0000000000000001.log"));
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	st = ctx_open(&o, &s);
	if (st != CTX_CORRUPT)
		fail_msg("%s: open: %s (%s)", what, ctx_strerror(st), ctx_last_error());
	assert_null(s);
	assert_non_null(strstr(ctx_last_error(), "wal-0000000000000001.log"));
	test_remove_dir(dir);
	free(dir);
}

static void test_malformed_records(void **unused)
{
	T0 = test_wall_us();
	wal w;
	body b;

	wal_begin(&w, 1, 1);
	wal_basics(&w, &b);
	b_id(&b, "a");
	b_u8(&b, 0); /* trailing */
	wal_rec(&w, REC_POINT_DEL, 2, 1, b.b, b.n);
	expect_corrupt_log(&w, "point removal with trailing bytes");

	wal_begin(&w, 1, 1);
	wal_basics(&w, &b);
	b_id(&b, "a");
	b_u64(&b, T0);
	b_u64(&b, 1);
	b_u8(&b, CTX_LABEL_MAX + 1);
	for (int i = 0; i <= CTX_LABEL_MAX; i++)
		b_u8(&b, 'x');
	wal_rec(&w, REC_POINT, 3, 1, b.b, b.n);
	expect_corrupt_log(&w, "point label too long");

	wal_begin(&w, 1, 1);
	wal_basics(&w, &b);
	b_id(&b, "c");
	b_u64(&b, T0);
	b_u32(&b, 1);
	b_op(&b, OP_PUT_CODE, "x", "1");
	b_u8(&b, 7); /* trailing */
	wal_rec(&w, REC_CREATE, 1, 0, b.b, b.n);
	expect_corrupt_log(&w, "create with data and trailing bytes");

	wal_begin(&w, 1, 1);
	wal_basics(&w, &b);
	b_id(&b, "a");
	b_u8(&b, 0);
	wal_rec(&w, REC_DROP, 0, 1, b.b, b.n);
	expect_corrupt_log(&w, "drop with trailing bytes");

	wal_begin(&w, 1, 1);
	wal_basics(&w, &b);
	b_id(&b, "a");
	b_u64(&b, 1000);
	wal_rec(&w, REC_TTL, 0, 1, b.b, b.n);
	expect_corrupt_log(&w, "short ttl record");

	/* A segment named for revision 1 whose header says 2. */
	wal_begin(&w, 1, 2);
	wal_basics(&w, &b);
	expect_corrupt_log(&w, "segment header with another first revision");
}

/* Segments as the store writes them: sizes and boundaries of records. */
static size_t record_offset(const char *path, int index)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	static unsigned char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	size_t off = WAL_HEADER_SIZE;
	for (int i = 0; i < index; i++) {
		rec_view v;
		assert_null(rec_parse(FORMAT_VERSION, buf + off, n - off, true, &v));
		off += v.len;
	}
	return off;
}

/* The checkpoint covers records the log lost (the older segment cut at a
 * record boundary, the newer one gone): recovery ends at the checkpoint. */
static void test_checkpoint_beyond_log(void **unused)
{
	char *dir = test_make_dir("cov-beyond");
	ctx_store *s = open_dir(dir);
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k1", "1");
	test_put_str(s, "a", "k2", "2");
	/* The checkpoint deletes wal-1, which it covers: keep a link to it, as
	 * a crash before that delete would leave it. */
	char *seg1 = seg_path(dir, 1), *seg4 = seg_path(dir, 4);
	char *kept = path_in(dir, "wal-1.kept");
	assert_int_equal(link(seg1, kept), 0);
	assert_ok(ctx_checkpoint(s)); /* covers 1..3; the log goes on at wal-4 */
	assert_int_equal(revision_of(s), 3);
	ctx_close(s);
	/* Close wrote no new checkpoint (nothing new), so ckpt-3 is the one. */
	char *ck = ckpt_path(dir, 3, "ckpt");
	struct stat sb;
	assert_int_equal(stat(ck, &sb), 0);
	free(ck);
	assert_int_equal(stat(seg1, &sb), -1);
	assert_int_equal(rename(kept, seg1), 0);
	free(kept);
	assert_int_equal(truncate(seg1, (off_t)record_offset(seg1, 2)), 0);
	assert_int_equal(unlink(seg4), 0);

	ctx_verify_report r;
	assert_ok(ctx_verify(dir, &r));
	assert_int_equal(r.checkpoint_revision, 3);
	assert_int_equal(r.last_revision, 3);
	assert_int_equal(r.records, 2);
	s = open_dir(dir);
	assert_true(test_has_str(s, "a", "k2", "2"));
	uint64_t v;
	assert_ok(ctx_put(s, "a", "k3", 2, "3", 1, &v));
	assert_int_equal(v, 4);
	assert_int_equal(revision_of(s), 4);
	ctx_close(s);
	s = open_dir(dir);
	assert_true(test_has_str(s, "a", "k3", "3"));
	ctx_close(s);
	free(seg1);
	free(seg4);
	test_remove_dir(dir);
	free(dir);
}

/* ---- odd directory contents -------------------------------------------------------- */

static ctx_status open_status(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	ctx_status st = ctx_open(&o, &s);
	if (st == CTX_OK)
		ctx_close(s);
	else
		assert_null(s);
	return st;
}

static void test_unreadable_files(void **unused)
{
	char *dir = test_make_dir("cov-unreadable");
	ctx_store *s = open_dir(dir);
	assert_ok(ctx_create(s, "a"));
	ctx_close(s); /* ckpt-1, wal-2 */

	/* A segment that is a dangling symlink, then a directory. */
	char *seg = seg_path(dir, 2);
	char *moved = path_in(dir, "moved-away");
	assert_int_equal(rename(seg, moved), 0);
	assert_int_equal(symlink("/nonexistent/segment", seg), 0);
	ctx_verify_report r;
	assert_int_equal(ctx_verify(dir, &r), CTX_IO);
	assert_non_null(strstr(r.message, "cannot read"));
	assert_int_equal(open_status(dir), CTX_IO);
	assert_int_equal(unlink(seg), 0);
	assert_int_equal(mkdir(seg, 0755), 0);
	assert_int_equal(ctx_verify(dir, &r), CTX_IO);
	assert_non_null(strstr(r.message, "cannot map"));
	assert_int_equal(open_status(dir), CTX_IO);
	assert_int_equal(rmdir(seg), 0);
	assert_int_equal(rename(moved, seg), 0);

	/* A checkpoint that is a dangling symlink, then a directory. */
	char *ck = ckpt_path(dir, 1, "ckpt");
	assert_int_equal(rename(ck, moved), 0);
	assert_int_equal(symlink("/nonexistent/checkpoint", ck), 0);
	assert_int_equal(ctx_verify(dir, &r), CTX_IO);
	assert_non_null(strstr(r.message, "cannot open checkpoint"));
	assert_int_equal(open_status(dir), CTX_IO);
	assert_int_equal(unlink(ck), 0);
	assert_int_equal(mkdir(ck, 0755), 0);
	assert_int_equal(ctx_verify(dir, &r), CTX_IO);
	assert_non_null(strstr(r.message, "cannot map checkpoint"));
	assert_int_equal(open_status(dir), CTX_IO);
	assert_int_equal(rmdir(ck), 0);
	assert_int_equal(rename(moved, ck), 0);

	/* Everything back: it opens with its data. */
	s = open_dir(dir);
	ctx_state *st;
	assert_ok(ctx_get(s, "a", &st));
	ctx_state_release(st);
	ctx_close(s);
	free(seg);
	free(moved);
	free(ck);
	test_remove_dir(dir);
	free(dir);
}

static void test_tail_cut_fails(void **unused)
{
	char *dir = test_make_dir("cov-cutfail");
	ctx_store *s = open_dir(dir);
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "v");
	uint64_t rev = revision_of(s);
	/* A copy of the segment taken while open holds every record (no
	 * closing checkpoint); add a torn record to it. */
	char *seg = seg_path(dir, 1);
	FILE *f = fopen(seg, "rb");
	assert_non_null(f);
	static unsigned char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	ctx_close(s);
	/* (its records end before the preallocated zeros: the torn record goes
	 * over those, where the log would have written it) */
	size_t end = WAL_HEADER_SIZE;
	rec_view v;
	while (!rec_parse(FORMAT_VERSION, buf + end, n - end, true, &v))
		end += v.len;
	assert_true(end > WAL_HEADER_SIZE && end <= n);
	n = end;
	char *img = test_make_dir("cov-cutfail-img");
	char *iseg = seg_path(img, 1);
	f = fopen(iseg, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, n, f), n);
	assert_int_equal(fwrite("torn-record", 1, 11, f), 11);
	fclose(f);

	ctx_verify_report r;
	assert_ok(ctx_verify(img, &r));
	assert_int_equal(r.torn_bytes, 11);
	/* The cut's fsync fails: the open fails, and changes nothing
	 * visible; the next open cuts the tail. */
	ctx_vfs_faults.sync_errno = EIO;
	atomic_store(&ctx_vfs_faults.sync_countdown, 1);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = img;
	s = NULL;
	assert_int_equal(ctx_open(&o, &s), CTX_IO);
	vfs_faults_reset();
	assert_null(s);
	assert_non_null(strstr(ctx_last_error(), "torn tail"));
	s = open_dir(img);
	assert_true(test_has_str(s, "a", "k", "v"));
	assert_int_equal(revision_of(s), rev);
	ctx_close(s);
	assert_ok(ctx_verify(img, &r));
	assert_int_equal(r.torn_bytes, 0);
	free(seg);
	free(iseg);
	test_remove_dir(img);
	free(img);
	test_remove_dir(dir);
	free(dir);
}

/* ---- opening ----------------------------------------------------------------------- */

static void test_open_errors(void **unused)
{
	char *dir = test_make_dir("cov-open");
	ctx_options o;
	ctx_options_init(&o);
	ctx_store *s = NULL;

	o.dir = "";
	assert_int_equal(ctx_open(&o, &s), CTX_INVALID);

	/* A path longer than any path. */
	char *lng = malloc(5000);
	assert_non_null(lng);
	memset(lng, 'x', 4999);
	lng[0] = '/';
	lng[4999] = 0;
	o.dir = lng;
	assert_int_equal(ctx_open(&o, &s), CTX_IO);
	assert_int_equal(errno, ENAMETOOLONG);
	free(lng);

	/* Below a regular file: the last component, or one above it. */
	char *file = path_in(dir, "file");
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	char *below = path_in(file, "x");
	char *deeper = path_in(below, "y");
	o.dir = below;
	assert_int_equal(ctx_open(&o, &s), CTX_IO);
	assert_int_equal(errno, ENOTDIR);
	o.dir = deeper;
	assert_int_equal(ctx_open(&o, &s), CTX_IO);
	assert_int_equal(errno, ENOTDIR);
	/* The regular file itself: exists, but holds no LOCK. */
	o.dir = file;
	assert_int_equal(ctx_open(&o, &s), CTX_IO);
	assert_null(s);

	/* A LOCK that cannot be opened. */
	char *data = path_in(dir, "data");
	char *lock = path_in(data, "LOCK");
	assert_int_equal(mkdir(data, 0755), 0);
	assert_int_equal(mkdir(lock, 0755), 0);
	o.dir = data;
	assert_int_equal(ctx_open(&o, &s), CTX_IO);
	assert_non_null(strstr(ctx_last_error(), "LOCK"));
	assert_int_equal(rmdir(lock), 0);

	/* The first log segment cannot be written: CTX_IO, errno kept; the
	 * directory opens the next time. */
	s = open_dir(data);
	assert_ok(ctx_create(s, "a"));
	ctx_close(s);
	ctx_vfs_faults.write_errno = ENOSPC;
	atomic_store(&ctx_vfs_faults.write_countdown, 1);
	s = NULL;
	errno = 0;
	assert_int_equal(ctx_open(&o, &s), CTX_IO);
	assert_int_equal(errno, ENOSPC);
	vfs_faults_reset();
	assert_null(s);
	assert_non_null(strstr(ctx_last_error(), "log segment"));
	s = open_dir(data);
	ctx_state *st;
	assert_ok(ctx_get(s, "a", &st));
	ctx_state_release(st);
	ctx_close(s);

	/* Statistics of no store are zero. */
	ctx_stats stats;
	memset(&stats, 0xff, sizeof(stats));
	ctx_get_stats(NULL, &stats);
	assert_int_equal(stats.contexts, 0);
	assert_int_equal(stats.revision, 0);
	assert_int_equal(stats.io_errno, 0);

	free(file);
	free(below);
	free(deeper);
	free(data);
	free(lock);
	test_remove_dir(dir);
	free(dir);
}

/* ---- checkpoints and the log -------------------------------------------------------- */

/* Directories in the way of the names a checkpoint or segment for
 * revisions lo..hi would take. */
static void obstruct(const char *dir, const char *prefix, const char *ext, uint64_t lo,
                     uint64_t hi, bool make)
{
	for (uint64_t r = lo; r <= hi; r++) {
		char name[64];
		snprintf(name, sizeof(name), "%s%016llx.%s", prefix, (unsigned long long)r, ext);
		char *p = path_in(dir, name);
		char *inner = path_in(p, "x");
		if (make) {
			assert_int_equal(mkdir(p, 0755), 0);
			assert_int_equal(mkdir(inner, 0755), 0); /* not empty: no rename over it */
		} else {
			assert_int_equal(rmdir(inner), 0);
			assert_int_equal(rmdir(p), 0);
		}
		free(inner);
		free(p);
	}
}

static void test_checkpoint_failures(void **unused)
{
	char *dir = test_make_dir("cov-ckptfail");
	ctx_store *s = open_dir(dir);
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "1");
	ctx_stats stats;

	/* The temporary file cannot be created. */
	uint64_t rev = revision_of(s);
	obstruct(dir, "ckpt-", "tmp", rev, rev, true);
	assert_int_equal(ctx_checkpoint(s), CTX_IO);
	obstruct(dir, "ckpt-", "tmp", rev, rev, false);
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoints, 0);

	/* The final name is taken: the rename fails, the temporary file goes. */
	test_put_str(s, "a", "k", "2");
	rev = revision_of(s);
	obstruct(dir, "ckpt-", "ckpt", rev, rev, true);
	assert_int_equal(ctx_checkpoint(s), CTX_IO);
	char *tmp = ckpt_path(dir, rev, "tmp");
	struct stat sb;
	assert_int_equal(stat(tmp, &sb), -1);
	free(tmp);
	obstruct(dir, "ckpt-", "ckpt", rev, rev, false);
	/* Writes go on, and the next checkpoint succeeds. */
	test_put_str(s, "a", "k", "3");
	assert_ok(ctx_checkpoint(s));
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoints, 1);
	assert_int_equal(stats.checkpoint_revision, revision_of(s));
	/* Nothing new: a second one is a no-op that succeeds. */
	assert_ok(ctx_checkpoint(s));
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoints, 1);

	/* The closing checkpoint fails: close goes on, and the log has it all. */
	test_put_str(s, "a", "k", "4");
	rev = revision_of(s);
	obstruct(dir, "ckpt-", "tmp", rev, rev, true);
	ctx_close(s);
	obstruct(dir, "ckpt-", "tmp", rev, rev, false);
	s = open_dir(dir);
	assert_true(test_has_str(s, "a", "k", "4"));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_rotation_fails(void **unused)
{
	char *dir = test_make_dir("cov-rotfail");
	ctx_store *s = open_dir(dir);
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "1");
	uint64_t rev = revision_of(s);
	/* The next segment's name is taken: the log fails for good. */
	obstruct(dir, "wal-", "log", rev + 1, rev + 1, true);
	assert_int_equal(ctx_checkpoint(s), CTX_IO);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_true(stats.io_errno != 0);
	assert_int_equal(ctx_put(s, "a", "k", 1, "2", 1, NULL), CTX_CLOSED);
	assert_true(test_has_str(s, "a", "k", "1"));
	ctx_close(s);
	obstruct(dir, "wal-", "log", rev + 1, rev + 1, false);
	s = open_dir(dir);
	assert_true(test_has_str(s, "a", "k", "1"));
	test_put_str(s, "a", "k", "3");
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Background checkpoints that fail are retried: once possible again, one
 * succeeds without anyone asking. */
static void test_background_checkpoint_retries(void **unused)
{
	char *dir = test_make_dir("cov-bgckpt");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = 4096;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "a"));
	obstruct(dir, "ckpt-", "tmp", 1, 120, true);
	static char big[1500];
	memset(big, 'b', sizeof(big) - 1);
	for (int i = 0; i < 40; i++)
		assert_ok(ctx_put(s, "a", "k", 1, big, sizeof(big), NULL));
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoints, 0);
	obstruct(dir, "ckpt-", "tmp", 1, 120, false);
	double until = test_now() + 60;
	for (int i = 0; stats.checkpoints == 0 && test_now() < until; i++) {
		assert_ok(ctx_put(s, "a", "k", 1, big, sizeof(big), NULL));
		usleep(20000);
		ctx_get_stats(s, &stats);
	}
	assert_true(stats.checkpoints > 0);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

typedef struct ckpt_arg {
	ctx_store *s;
	int rounds;
	atomic_int failures;
} ckpt_arg;

static void *checkpointing(void *p)
{
	ckpt_arg *a = p;
	for (int i = 0; i < a->rounds; i++)
		if (ctx_checkpoint(a->s) != CTX_OK)
			atomic_fetch_add(&a->failures, 1);
	return NULL;
}

/* Checkpoints asked for by several threads at once (one runs at a time),
 * with writers going on. */
static void test_concurrent_checkpoints(void **unused)
{
	char *dir = test_make_dir("cov-ckptconc");
	ctx_store *s = open_dir(dir);
	assert_ok(ctx_create(s, "a"));
	ckpt_arg a = {s, (int)test_iters(20, 6), 0};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, checkpointing, &a), 0);
	char k[16];
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		test_put_str(s, "a", k, "v");
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	assert_int_equal(atomic_load(&a.failures), 0);
	assert_ok(ctx_checkpoint(s));
	char *want = test_dump_store(s, true, NULL);
	ctx_close(s);
	s = open_dir(dir);
	char *got = test_dump_store(s, true, NULL);
	test_expect_same_dump(want, got, "after concurrent checkpoints");
	free(want);
	free(got);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* The log's count of bytes appended since the last rotation. */
static void test_log_growth_counter(void **unused)
{
	char *dir = test_make_dir("cov-growth");
	ctx_store *s = open_dir(dir);
	assert_int_equal(log_bytes_since_rotate(s->log), 0);
	assert_ok(ctx_create(s, "a"));
	uint64_t after_create = log_bytes_since_rotate(s->log);
	/* The create's record: a header, then id length, id and an op count
	 * (0, one byte); the time is in the header. */
	{
		char *seg = seg_path(dir, 1);
		FILE *f = fopen(seg, "rb");
		assert_non_null(f);
		static unsigned char buf[4096];
		size_t n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		free(seg);
		rec_view v;
		assert_null(rec_parse(FORMAT_VERSION, buf + WAL_HEADER_SIZE, n - WAL_HEADER_SIZE,
		                      true, &v));
		assert_int_equal(v.type, REC_CREATE);
		assert_int_equal(v.blen, 2 + 1 + 1);
		assert_int_equal(after_create, v.len);
	}
	test_put_str(s, "a", "k", "v");
	assert_true(log_bytes_since_rotate(s->log) > after_create);
	assert_ok(ctx_checkpoint(s));
	assert_int_equal(log_bytes_since_rotate(s->log), 0);
	/* A rotation with nothing appended keeps the (empty) segment. */
	assert_ok(ctx_checkpoint(s));
	assert_int_equal(log_bytes_since_rotate(s->log), 0);
	assert_true(log_wait_growth(s->log, 0, 10));
	assert_false(log_wait_growth(s->log, 1, 10));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_handwritten_log),
	        cmocka_unit_test(test_malformed_records),
	        cmocka_unit_test(test_checkpoint_beyond_log),
	        cmocka_unit_test(test_unreadable_files),
	        cmocka_unit_test(test_tail_cut_fails),
	        cmocka_unit_test(test_open_errors),
	        cmocka_unit_test(test_checkpoint_failures),
	        cmocka_unit_test(test_rotation_fails),
	        cmocka_unit_test(test_background_checkpoint_retries),
	        cmocka_unit_test(test_concurrent_checkpoints),
	        cmocka_unit_test(test_log_growth_counter),
	};
	if (getenv("CTX_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
