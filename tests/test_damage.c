/*
 * test_damage.c - recovery from damaged data directories.
 *
 * Every case starts from a directory whose history is known exactly: the same
 * operations are applied to a memory-only store (the model), and the model's
 * canonical dump after each record is kept, so "the first k records" has one
 * exact expected state. The directory is then damaged (truncated, bits
 * flipped, garbage appended, files removed, records and checkpoints crafted
 * with valid checksums but bad content) and the test checks that:
 *   - ctx_verify and ctx_open agree (same status), and verify changes no file;
 *   - damage in the newest segment is its unsynced tail (a power cut may
 *     persist a later page of the last group write but not an earlier one):
 *     the first damaged record and everything after it are cut, and the
 *     store opens with exactly the records before it; the cut bytes, unless
 *     all zeros, are kept aside in one torn-*.bin file, and verify says so;
 *   - damage that lies in synced data is CTX_CORRUPT naming the file (and the
 *     offset), and a failed open serves nothing and changes nothing: damage
 *     in an older segment, below the revision a checkpoint proves synced, a
 *     damaged header with records after it, a record with valid checksums
 *     but out of order, a missing segment, every checkpoint damaged without
 *     the log from revision 1;
 *   - a clean close keeps one generation (the last checkpoint and the log
 *     after it), so a damaged sole checkpoint is CTX_CORRUPT naming it;
 *   - where a crash between a checkpoint's rename and its deletes left the
 *     older generation, a damaged newest checkpoint falls back to the older
 *     one and the log; with every checkpoint damaged, a complete log
 *     rebuilds the state;
 *   - no input crashes the process (the sanitizer builds check the reads).
 *
 * Crash images are made without killing anything: a store closed cleanly,
 * with the files its last checkpoint deleted put back and its checkpoints
 * removed, is exactly what a writer killed after its last acknowledged commit
 * leaves under durability always (the whole history in the log).
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"

/* ---- helpers ---------------------------------------------------------------- */

/* n without the zeros p[0..n) ends with: the torn bytes recovery counts
 * (zeros at a segment's end are its preallocated tail). */
static long long nonzero_len(const unsigned char *p, size_t n)
{
	while (n && !p[n - 1])
		n--;
	return (long long)n;
}

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	return test_open(&o);
}

static void path_join(char *buf, size_t n, const char *dir, const char *name)
{
	int w = snprintf(buf, n, "%s/%s", dir, name);
	assert_true(w > 0 && (size_t)w < n);
}

static char *seg_name(uint64_t first)
{
	static _Thread_local char b[64];
	snprintf(b, sizeof(b), "wal-%016llx.log", (unsigned long long)first);
	return b;
}

static char *ckpt_name(uint64_t rev)
{
	static _Thread_local char b[64];
	snprintf(b, sizeof(b), "ckpt-%016llx.ckpt", (unsigned long long)rev);
	return b;
}

/* Whole files. */
typedef struct blob {
	unsigned char *p;
	size_t n;
} blob;

static blob read_file(const char *dir, const char *name)
{
	char path[4096];
	path_join(path, sizeof(path), dir, name);
	blob b;
	b.p = test_read_file(path, &b.n);
	return b;
}

static void write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	path_join(path, sizeof(path), dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void remove_file(const char *dir, const char *name)
{
	char path[4096];
	path_join(path, sizeof(path), dir, name);
	assert_int_equal(unlink(path), 0);
}

static bool has_file(const char *dir, const char *name)
{
	char path[4096];
	path_join(path, sizeof(path), dir, name);
	struct stat sb;
	return stat(path, &sb) == 0;
}

/* All files of a directory (but LOCK), sorted by name, with contents. */
typedef struct dir_snap {
	size_t n;
	char names[32][64];
	blob data[32];
} dir_snap;

static int cmp_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void snap_take(const char *dir, dir_snap *s)
{
	memset(s, 0, sizeof(*s));
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "LOCK") == 0)
			continue;
		assert_true(s->n < 32 && strlen(e->d_name) < 64);
		strcpy(s->names[s->n++], e->d_name);
	}
	closedir(d);
	qsort(s->names, s->n, sizeof(s->names[0]), cmp_names);
	for (size_t i = 0; i < s->n; i++)
		s->data[i] = read_file(dir, s->names[i]);
}

static void snap_free(dir_snap *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->data[i].p);
	s->n = 0;
}

static void snap_expect_same(const dir_snap *a, const dir_snap *b, const char *what)
{
	if (a->n != b->n)
		fail_msg("%s changed the directory: %zu files before, %zu after", what, a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		if (strcmp(a->names[i], b->names[i]) != 0)
			fail_msg("%s changed the directory: %s became %s", what, a->names[i],
			         b->names[i]);
		if (a->data[i].n != b->data[i].n ||
		    memcmp(a->data[i].p, b->data[i].p, a->data[i].n) != 0)
			fail_msg("%s changed %s (%zu bytes before, %zu after)", what, a->names[i],
			         a->data[i].n, b->data[i].n);
	}
}

/* Remove every file of dir (it has no subdirectories), or create it. */
static void clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		assert_int_equal(mkdir(dir, 0755), 0);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			remove_file(dir, e->d_name);
	closedir(d);
}

/* Copy every file of src (but LOCK) into dst, emptied first. */
static void copy_dir(const char *src, const char *dst)
{
	clear_dir(dst);
	dir_snap s;
	snap_take(src, &s);
	for (size_t i = 0; i < s.n; i++)
		write_file(dst, s.names[i], s.data[i].p, s.data[i].n);
	snap_free(&s);
}

/* ---- building directories with a known history -------------------------------- */

#define NCTX 4

/* The history of a store: the model's dump after each of its records
 * (dumps[k] = after the first k records). */
typedef struct history {
	ctx_store *model;
	size_t n, cap;
	char **dumps;
	uint64_t r; /* the generator's state */
} history;

static void history_init(history *h, uint64_t seed)
{
	memset(h, 0, sizeof(*h));
	h->model = test_open_memory();
	h->r = seed;
	h->cap = 256;
	h->dumps = calloc(h->cap, sizeof(char *));
	assert_non_null(h->dumps);
	h->dumps[0] = test_dump_store(h->model, false, NULL);
}

static void history_free(history *h)
{
	for (size_t i = 0; i <= h->n; i++)
		free(h->dumps[i]);
	free(h->dumps);
	ctx_close(h->model);
}

static bool model_has(history *h, const char *id, const char *key)
{
	ctx_state *st = NULL;
	if (ctx_get(h->model, id, &st) != CTX_OK)
		return false;
	bool r = !key || ctx_state_lookup(st, key, strlen(key), NULL, NULL);
	ctx_state_release(st);
	return r;
}

/* One random operation, applied to s and to the model; each makes exactly
 * one log record. small: a short put (for the records at a segment's end). */
static void history_step(history *h, ctx_store *s, bool small)
{
	ctx_store *both[2] = {h->model, s};
	uint64_t *r = &h->r;
	char id[8], key[16];
	unsigned char val[400];
	snprintf(id, sizeof(id), "c%d", (int)test_rand_below(r, NCTX));
	snprintf(key, sizeof(key), "k%d", (int)test_rand_below(r, 12));
	size_t vlen =
	    test_rand_below(r, 10) == 0 ? 200 + test_rand_below(r, 200) : test_rand_below(r, 40);
	if (small)
		vlen = test_rand_below(r, 3);
	for (size_t i = 0; i < vlen; i++)
		val[i] = (unsigned char)test_rand(r);
	int op = small ? 0 : (int)test_rand_below(r, 100);
	if (!model_has(h, id, NULL)) {
		bool with_data = !small && test_rand_below(r, 2);
		for (int i = 0; i < 2; i++) {
			if (!with_data) {
				assert_ok(ctx_create(both[i], id));
				continue;
			}
			ctx_txn *t = NULL; /* created with data: one record */
			assert_ok(ctx_txn_begin_create(both[i], id, &t));
			assert_ok(ctx_txn_put(t, key, strlen(key), val, vlen));
			assert_ok(ctx_txn_meta_put(t, "m0", 2, val, vlen / 2));
			assert_ok(ctx_txn_commit(t, 0, NULL));
		}
	} else if (op < 40) {
		for (int i = 0; i < 2; i++)
			assert_ok(ctx_put(both[i], id, key, strlen(key), val, vlen, NULL));
	} else if (op < 55 && model_has(h, id, key)) {
		for (int i = 0; i < 2; i++)
			assert_ok(ctx_del(both[i], id, key, strlen(key), NULL));
	} else if (op < 92) {
		int nops = (int)test_rand_below(r, 5);
		int kinds[5], keys[5];
		for (int j = 0; j < nops; j++) {
			kinds[j] = (int)test_rand_below(r, 4);
			keys[j] = (int)test_rand_below(r, 12);
		}
		for (int i = 0; i < 2; i++) {
			ctx_txn *t = NULL;
			assert_ok(ctx_txn_begin(both[i], id, &t));
			for (int j = 0; j < nops; j++) {
				char k[16];
				snprintf(k, sizeof(k), "%c%d", kinds[j] >= 2 ? 'm' : 'k', keys[j]);
				if (kinds[j] == 0 || kinds[j] == 2)
					assert_ok((kinds[j] ? ctx_txn_meta_put : ctx_txn_put)(
					    t, k, strlen(k), val, vlen / (size_t)(j + 1)));
				else
					assert_ok((kinds[j] == 3 ? ctx_txn_meta_del
					                         : ctx_txn_del)(t, k, strlen(k)));
			}
			assert_ok(ctx_txn_commit(t, 0, NULL));
		}
	} else {
		for (int i = 0; i < 2; i++)
			assert_ok(ctx_drop(both[i], id));
	}
	if (h->n + 1 == h->cap) {
		h->dumps = realloc(h->dumps, (h->cap *= 2) * sizeof(char *));
		assert_non_null(h->dumps);
	}
	h->dumps[++h->n] = test_dump_store(h->model, false, NULL);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.revision, h->n); /* one record per step */
}

/* Put back the files of before that dir no longer has. */
static void restore_missing(const char *dir, const dir_snap *before)
{
	for (size_t i = 0; i < before->n; i++)
		if (!has_file(dir, before->names[i]))
			write_file(dir, before->names[i], before->data[i].p, before->data[i].n);
}

/* A session: open dir, steps, close. The close's checkpoint, once read back,
 * deletes the checkpoint before it and the log it covers (one generation
 * stays). With before, the files as they were just before the close are
 * kept there; with unpruned, what the close deleted is put back: the image a
 * crash between the last checkpoint's rename and its deletes leaves. */
static void history_run_with(history *h, const char *dir, int steps, int small_tail, bool unpruned,
                             dir_snap *before)
{
	ctx_store *s = open_dir(dir);
	for (int i = 0; i < steps; i++)
		history_step(h, s, i >= steps - small_tail);
	dir_snap local;
	dir_snap *b = before ? before : &local;
	snap_take(dir, b);
	ctx_close(s);
	if (unpruned)
		restore_missing(dir, b);
	if (!before)
		snap_free(b);
}

static void history_run(history *h, const char *dir, int steps, int small_tail, bool unpruned)
{
	history_run_with(h, dir, steps, small_tail, unpruned, NULL);
}

static void remove_checkpoints(const char *dir)
{
	dir_snap s;
	snap_take(dir, &s);
	for (size_t i = 0; i < s.n; i++)
		if (strncmp(s.names[i], "ckpt-", 5) == 0)
			remove_file(dir, s.names[i]);
	snap_free(&s);
}

/* Records of a segment: their offsets. */
typedef struct seg_layout {
	size_t n;
	size_t start[512], end[512];
	uint64_t rev[512];
	rec_view rec[512]; /* (its body points into the segment's blob) */
	size_t size;
} seg_layout;

static void parse_segment(const blob *b, seg_layout *l)
{
	memset(l, 0, sizeof(*l));
	l->size = b->n;
	assert_true(b->n >= WAL_HEADER_SIZE);
	assert_memory_equal(b->p, WAL_MAGIC, 8);
	size_t off = WAL_HEADER_SIZE;
	while (off < b->n) {
		/* Zeros to the end: the preallocated tail of a segment that was
		 * open (a copy taken before the close cut it), its clean end. */
		size_t z = off;
		while (z < b->n && b->p[z] == 0)
			z++;
		if (z == b->n) {
			l->size = off;
			break;
		}
		assert_true(l->n < 512);
		rec_view *v = &l->rec[l->n];
		assert_null(rec_parse(get_u32(b->p + 8), b->p + off, b->n - off, true, v));
		l->start[l->n] = off;
		l->rev[l->n] = v->rev;
		off += v->len;
		assert_true(off <= b->n);
		l->end[l->n++] = off;
	}
}

/* Records entirely before byte offset t. */
static size_t records_before(const seg_layout *l, size_t t)
{
	size_t k = 0;
	while (k < l->n && l->end[k] <= t)
		k++;
	return k;
}

/* A crash image: the whole history in wal-1, no checkpoint. */
typedef struct log_image {
	char *dir; /* pristine, never opened after it was made */
	history h;
	blob seg; /* wal-1 */
	seg_layout lay;
} log_image;

static void log_image_make(log_image *img, const char *name, uint64_t seed, int steps)
{
	img->dir = test_make_dir(name);
	history_init(&img->h, seed);
	history_run(&img->h, img->dir, steps, 3, true);
	remove_checkpoints(img->dir);
	/* The close left a segment with no record after wal-1: drop it too, so
	 * that wal-1 is the newest segment, as a killed writer leaves it. */
	remove_file(img->dir, seg_name((uint64_t)steps + 1));
	remove_file(img->dir, "LOCK");
	dir_snap s;
	snap_take(img->dir, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.names[0], seg_name(1));
	snap_free(&s);
	img->seg = read_file(img->dir, seg_name(1));
	parse_segment(&img->seg, &img->lay);
	assert_int_equal(img->lay.n, (size_t)steps);
	for (size_t i = 0; i < img->lay.n; i++)
		assert_int_equal(img->lay.rev[i], i + 1);
}

static void log_image_free(log_image *img)
{
	test_remove_dir(img->dir);
	free(img->dir);
	free(img->seg.p);
	history_free(&img->h);
}

/* ---- the check every case runs ---------------------------------------------------- */

typedef struct expect {
	ctx_status status;
	const char *dump;       /* with CTX_OK: the state recovery must give  */
	uint64_t revision;      /* with CTX_OK: the last revision              */
	long long torn;         /* with CTX_OK, if >= 0: torn bytes verify counts */
	long long damaged;      /* with CTX_OK, if >= 0: checkpoints damaged    */
	long long torn_records; /* with CTX_OK, if >= 0: intact records cut     */
	const char *file;       /* with CTX_CORRUPT: named in the message      */
	long long offset;       /* with CTX_CORRUPT, if >= 0: "offset <n>"     */
	long long cut_to;       /* with CTX_OK, if > 0: wal-1's size once open
	                           (the cut is on disk; the close's checkpoint
	                           then deletes wal-1)                         */
} expect;

static void expect_message(const char *msg, const expect *e, const char *what)
{
	if (e->file && !strstr(msg, e->file))
		fail_msg("%s: the error does not name %s: %s", what, e->file, msg);
	if (e->offset >= 0) {
		char off[64];
		snprintf(off, sizeof(off), "offset %lld", e->offset);
		if (!strstr(msg, off))
			fail_msg("%s: the error does not name %s: %s", what, off, msg);
	}
}

/* Verify, then open dir; both must give e. Returns nothing; fails the test. */
static void check_dir(const char *dir, const expect *e, const char *what)
{
	dir_snap before, after;
	snap_take(dir, &before);
	ctx_verify_report rep;
	ctx_status vst = ctx_verify(dir, &rep);
	snap_take(dir, &after);
	snap_expect_same(&before, &after, "ctx_verify");
	snap_free(&after);
	if (vst != e->status)
		fail_msg("%s: ctx_verify gave %s (%s), expected %s", what, ctx_strerror(vst),
		         rep.message, ctx_strerror(e->status));

	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	ctx_status ost = ctx_open(&o, &s);
	if (ost != vst)
		fail_msg("%s: ctx_open gave %s (%s) but ctx_verify %s (%s)", what,
		         ctx_strerror(ost), ctx_last_error(), ctx_strerror(vst), rep.message);
	if (ost != CTX_OK) {
		assert_null(s); /* nothing served */
		expect_message(ctx_last_error(), e, what);
		expect_message(rep.message, e, what);
		snap_take(dir, &after);
		snap_expect_same(&before, &after, "a failed ctx_open");
		snap_free(&after);
		snap_free(&before);
		return;
	}
	/* A cut is said; the cut bytes (unless zeros) are kept aside, whole but
	 * for the zeros they end with (a segment's preallocated tail): those are
	 * not counted as torn either. */
	if (rep.torn_bytes == 0 && rep.checkpoints_damaged == 0)
		assert_string_equal(rep.message, "ok");
	else
		assert_true(strncmp(rep.message, "ok; opening repairs: ", 21) == 0);
	if (rep.torn_bytes)
		assert_non_null(strstr(rep.message, "unsynced tail"));
	snap_take(dir, &after);
	size_t aside = 0;
	for (size_t i = 0; i < after.n; i++) {
		if (strncmp(after.names[i], "torn-", 5) != 0)
			continue;
		bool old = false;
		for (size_t j = 0; j < before.n && !old; j++)
			old = strcmp(before.names[j], after.names[i]) == 0;
		if (old)
			continue;
		aside++;
		assert_int_equal(after.data[i].n, rep.torn_bytes);
		assert_true(after.data[i].p[after.data[i].n - 1] != 0);
		assert_non_null(strstr(rep.message, after.names[i]));
	}
	assert_true(aside <= (rep.torn_bytes > 0));
	bool cut_seen = false;
	for (size_t i = 0; i < after.n && e->cut_to > 0; i++) {
		if (strcmp(after.names[i], seg_name(1)) == 0) {
			/* Its records end at cut_to; an open store may have put a
			 * preallocated zero tail after them again. */
			blob seg = {after.data[i].p, after.data[i].n};
			seg_layout *l = malloc(sizeof(*l));
			assert_non_null(l);
			parse_segment(&seg, l);
			assert_int_equal(l->size, e->cut_to);
			free(l);
			cut_seen = true;
		}
	}
	assert_true(cut_seen || e->cut_to <= 0);
	if (rep.torn_records)
		assert_int_equal(aside, 1);
	if (e->torn_records >= 0 && rep.torn_records != (uint64_t)e->torn_records)
		fail_msg("%s: verify counted %llu intact records cut, expected %lld", what,
		         (unsigned long long)rep.torn_records, e->torn_records);
	snap_free(&after);
	snap_free(&before);
	uint64_t keys = 0;
	char *got = test_dump_store(s, false, &keys);
	test_expect_same_dump(e->dump, got, what);
	free(got);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.revision, e->revision);
	assert_int_equal(rep.last_revision, e->revision);
	assert_int_equal(rep.contexts, ctx_count(s));
	assert_int_equal(rep.keys, keys);
	if (e->torn >= 0 && rep.torn_bytes != (uint64_t)e->torn)
		fail_msg("%s: verify counted %llu torn bytes, expected %lld", what,
		         (unsigned long long)rep.torn_bytes, e->torn);
	if (e->damaged >= 0)
		assert_int_equal(rep.checkpoints_damaged, (size_t)e->damaged);
	ctx_close(s);
}

static expect expect_ok(const char *dump, uint64_t revision, long long torn)
{
	return (expect){CTX_OK, dump, revision, torn, -1, -1, NULL, -1, 0};
}

static expect expect_corrupt(const char *file, long long offset)
{
	return (expect){CTX_CORRUPT, NULL, 0, -1, -1, -1, file, offset, 0};
}

/* Put img's segment, damaged as buf, alone into work. */
static void stage_segment(const char *work, const void *buf, size_t n)
{
	clear_dir(work);
	write_file(work, seg_name(1), buf, n);
}

/* The same, followed by an empty newest segment starting at `next`: wal-1 is
 * then an older segment, synced before the newer one began. */
static void stage_older_segment(const char *work, const void *buf, size_t n, uint64_t next)
{
	stage_segment(work, buf, n);
	unsigned char h[WAL_HEADER_SIZE];
	file_header_put(h, WAL_MAGIC, next);
	write_file(work, seg_name(next), h, sizeof(h));
}

/* The same, with a (damaged) checkpoint named rev: its name proves the log
 * was synced up to rev. */
static void stage_under_checkpoint(const char *work, const void *buf, size_t n, uint64_t rev)
{
	stage_segment(work, buf, n);
	write_file(work, ckpt_name(rev), "not a checkpoint", 16);
}

/* ---- torn tails ---------------------------------------------------------------------- */

/* Cut the segment at every byte offset of its last three records (two in
 * sanitizer builds), and at a sample of the other offsets, its header's
 * included: recovery keeps exactly the complete records and cuts the rest. */
static void test_truncate_every_offset(void **unused)
{
	log_image img;
	log_image_make(&img, "dmg-trunc", 0x7a11, 40);
	char *work = test_make_dir("dmg-trunc-work");
	const seg_layout *l = &img.lay;
	size_t from = l->start[l->n - ((test_slowdown() > 1) ? 2 : 3)];
	print_message("truncating at every offset in %zu..%zu, some in 0..%zu\n", from, l->size,
	              from);
	int cases = 0;
	for (size_t t = 0; t <= l->size; t++) {
		if (t > WAL_HEADER_SIZE && t < from && t % 211 != 0)
			continue;
		if (t < WAL_HEADER_SIZE && t % 8 != 7)
			continue;
		stage_segment(work, img.seg.p, t);
		size_t k = t < WAL_HEADER_SIZE ? 0 : records_before(l, t);
		size_t keep = k ? l->end[k - 1] : WAL_HEADER_SIZE;
		long long torn = t < WAL_HEADER_SIZE ? nonzero_len(img.seg.p, t)
		                                     : nonzero_len(img.seg.p + keep, t - keep);
		char what[64];
		snprintf(what, sizeof(what), "cut at %zu", t);
		expect e = expect_ok(img.h.dumps[k], k, torn);
		/* The cut is on disk: the records kept, nothing of the torn one. */
		if (t >= WAL_HEADER_SIZE)
			e.cut_to = (long long)keep;
		check_dir(work, &e, what);
		cases++;
		/* And recovery of a recovered directory gives the same again. */
		if (t % 16 == 0) {
			e.torn = 0;
			e.cut_to = 0;
			check_dir(work, &e, "reopen after the cut");
		}
	}
	print_message("%d truncations checked\n", cases);
	test_remove_dir(work);
	free(work);
	log_image_free(&img);
}

/* Garbage after the last record: a torn tail, cut; zeros after it: the
 * segment's clean end (its preallocated tail). Zeros over the end of the
 * last record: the record is cut. A complete, valid record out of order is not a
 * torn write: corrupt. */
static void test_garbage_tail(void **unused)
{
	log_image img;
	log_image_make(&img, "dmg-tail", 0x6a7b, 30);
	char *work = test_make_dir("dmg-tail-work");
	const seg_layout *l = &img.lay;
	const size_t lens[] = {1, 7, 39, 40, 41, 100, 4096, 65536};
	uint64_t r = 99;
	for (int zero = 0; zero < 2; zero++) {
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			size_t n = l->size + lens[i];
			unsigned char *buf = malloc(n);
			memcpy(buf, img.seg.p, l->size);
			for (size_t j = l->size; j < n; j++)
				buf[j] = zero ? 0 : (unsigned char)test_rand(&r);
			stage_segment(work, buf, n);
			free(buf);
			char what[64];
			snprintf(what, sizeof(what), "%zu %s bytes appended", lens[i],
			         zero ? "zero" : "random");
			/* Zeros after the last record are the segment's clean end
			 * (its preallocated tail): nothing kept aside, nothing said;
			 * either way the open cuts the segment back to its records. */
			expect e =
			    expect_ok(img.h.dumps[l->n], l->n, zero ? 0 : (long long)lens[i]);
			e.cut_to = (long long)l->size;
			check_dir(work, &e, what);
		}
	}
	/* Zeros from the middle of the last record on, as a file system may leave
	 * after a crash (size updated, data not). */
	for (size_t cut = l->start[l->n - 1]; cut < l->size; cut += 5) {
		size_t n = l->size + 512;
		unsigned char *buf = calloc(1, n);
		memcpy(buf, img.seg.p, cut);
		stage_segment(work, buf, n);
		/* (zeros over zeros may leave the record as it was) */
		bool intact = memcmp(buf, img.seg.p, l->size) == 0;
		size_t nonzero = cut; /* the torn bytes end at the last non-zero one */
		while (nonzero > l->start[l->n - 1] && !buf[nonzero - 1])
			nonzero--;
		free(buf);
		expect e = intact ? expect_ok(img.h.dumps[l->n], l->n, 0)
		                  : expect_ok(img.h.dumps[l->n - 1], l->n - 1,
		                              (long long)(nonzero - l->start[l->n - 1]));
		check_dir(work, &e, "zeros over the last record");
	}
	/* A copy of an earlier record after the last one. */
	{
		size_t rl = l->end[2] - l->start[2];
		size_t n = l->size + rl;
		unsigned char *buf = malloc(n);
		memcpy(buf, img.seg.p, l->size);
		memcpy(buf + l->size, img.seg.p + l->start[2], rl);
		stage_segment(work, buf, n);
		free(buf);
		expect e = expect_corrupt(seg_name(1), (long long)l->size);
		check_dir(work, &e, "a stale record appended");
	}
	test_remove_dir(work);
	free(work);
	log_image_free(&img);
}

/* ---- bit flips in the log ------------------------------------------------------------- */

/* A flipped bit in any record of the newest segment: the unsynced tail from
 * that record on is cut (the records after it were intact: counted, and kept
 * aside with it). The same damage in an older segment, or below the revision
 * a checkpoint proves synced, is corrupt, naming the file and the offset. */
static void test_bitflips_in_log(void **unused)
{
	uint64_t seed = test_seed("bitflips", 0xb17f11b5);
	log_image img;
	log_image_make(&img, "dmg-flip", seed, 25);
	char *work = test_make_dir("dmg-flip-work");
	const seg_layout *l = &img.lay;
	uint64_t r = seed;
	unsigned char *buf = malloc(l->size);
	for (size_t j = 0; j < l->n; j++) {
		for (int rep = 0; rep < 2; rep++) {
			memcpy(buf, img.seg.p, l->size);
			size_t len = l->end[j] - l->start[j];
			/* rep 0: one bit in the header, 1: one or more anywhere. */
			int flips = rep == 1 ? 1 + (int)test_rand_below(&r, 3) : 1;
			for (int f = 0; f < flips; f++) {
				size_t at = l->start[j] +
				            (rep == 0 ? test_rand_below(&r, len - l->rec[j].blen)
				                      : test_rand_below(&r, len));
				buf[at] ^= (unsigned char)(1u << test_rand_below(&r, 8));
			}
			if (memcmp(buf, img.seg.p, l->size) == 0)
				continue; /* several flips of one bit cancelled out */
			char what[96];
			snprintf(what, sizeof(what),
			         "bits flipped in record %zu of %zu (seed %llu)", j, l->n,
			         (unsigned long long)seed);
			stage_segment(work, buf, l->size);
			long long torn = nonzero_len(buf + l->start[j], l->size - l->start[j]);
			expect e = expect_ok(img.h.dumps[j], j, torn);
			e.torn_records = (long long)(l->n - j - 1);
			check_dir(work, &e, what);
			/* What was cut is in the file kept aside, byte for byte. */
			char aside[64];
			snprintf(aside, sizeof(aside), "torn-%016llx-%016llx.bin", 1ull,
			         (unsigned long long)l->start[j]);
			blob b = read_file(work, aside);
			assert_int_equal(b.n, torn);
			assert_memory_equal(b.p, buf + l->start[j], b.n);
			free(b.p);

			stage_older_segment(work, buf, l->size, l->n + 1);
			e = expect_corrupt(seg_name(1), (long long)l->start[j]);
			check_dir(work, &e, "in an older segment");

			stage_under_checkpoint(work, buf, l->size,
			                       j + 1 + test_rand_below(&r, l->n - j));
			e = expect_corrupt(seg_name(1), (long long)l->start[j]);
			check_dir(work, &e, "below a checkpoint's revision");
		}
	}
	/* Above the revision the checkpoint proves synced: a cut. */
	memcpy(buf, img.seg.p, l->size);
	buf[l->start[l->n - 2] + 3] ^= 1;
	stage_under_checkpoint(work, buf, l->size, l->n - 2);
	expect e = expect_ok(img.h.dumps[l->n - 2], l->n - 2,
	                     nonzero_len(buf + l->start[l->n - 2], l->size - l->start[l->n - 2]));
	e.torn_records = 1;
	check_dir(work, &e, "above a checkpoint's revision");
	free(buf);
	test_remove_dir(work);
	free(work);
	log_image_free(&img);
}

/* A damaged header of the newest segment, with acknowledged records after
 * it, is damage with valid data after it: corrupt, not a segment whose
 * creation was interrupted (that one has no record). */
static void test_damaged_segment_header(void **unused)
{
	log_image img;
	log_image_make(&img, "dmg-hdr", 0x4ead, 20);
	char *work = test_make_dir("dmg-hdr-work");
	unsigned char *buf = malloc(img.seg.n);
	const size_t at[] = {0, 5, 9, 17, 24, 29};
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		memcpy(buf, img.seg.p, img.seg.n);
		buf[at[i]] ^= 0x10;
		stage_segment(work, buf, img.seg.n);
		char what[64];
		snprintf(what, sizeof(what), "segment header byte %zu flipped", at[i]);
		expect e = expect_corrupt(seg_name(1), 0);
		check_dir(work, &e, what);
	}
	/* The legitimate case, for contrast: a header cut short, nothing after. */
	stage_segment(work, img.seg.p, 20);
	expect e = expect_ok(img.h.dumps[0], 0, nonzero_len(img.seg.p, 20));
	check_dir(work, &e, "segment header cut short");
	free(buf);
	test_remove_dir(work);
	free(work);
	log_image_free(&img);
}

/* ---- records and checkpoints with valid checksums but bad content ------------------- */

/* A record of log format 2 (its time, if its type has one, 1 µs after the
 * record before). */
static size_t make_record(unsigned char *out, uint8_t type, uint64_t rev, uint64_t version,
                          uint64_t incarnation, const unsigned char *body, uint32_t blen)
{
	size_t h =
	    rec2_header_put(out, type, rev, version, incarnation, 1, blen, crc32c(0, body, blen));
	memcpy(out + h, body, blen);
	return h + blen;
}

/* A commit body (log format 2): id, op count, ops (kind, key length, value
 * length, key, value); klen: the key length it states. */
static size_t commit_body_klen(unsigned char *b, const char *id, uint32_t nops, uint8_t kind,
                               const char *key, uint64_t klen, const char *val)
{
	size_t idl = strlen(id), kl = strlen(key), vl = strlen(val);
	put_u16(b, (uint16_t)idl);
	memcpy(b + 2, id, idl);
	size_t p = 2 + idl;
	p += put_uv(b + p, nops);
	b[p++] = kind;
	p += put_uv(b + p, klen);
	p += put_uv(b + p, vl);
	memcpy(b + p, key, kl);
	memcpy(b + p + kl, val, vl);
	return p + kl + vl;
}

static size_t commit_body(unsigned char *b, const char *id, uint32_t nops, uint8_t kind,
                          const char *key, const char *val)
{
	return commit_body_klen(b, id, nops, kind, key, strlen(key), val);
}

/* The newest version and incarnation of context id in the final state. */
static uint64_t final_version(const log_image *img, const char *id, uint64_t *incarnation)
{
	/* Scan the records: the last CREATE of id gives the incarnation, and the
	 * commits after it the version. */
	uint64_t inc = 0, ver = 0;
	for (size_t j = 0; j < img->lay.n; j++) {
		const rec_view *v = &img->lay.rec[j];
		const unsigned char *body = v->body;
		size_t idl = get_u16(body);
		if (idl != strlen(id) || memcmp(body + 2, id, idl) != 0)
			continue;
		if (v->type == REC_CREATE) {
			inc = v->incarnation;
			ver = 1;
		} else if (v->type == REC_COMMIT && v->incarnation == inc) {
			ver = v->version;
		} else if (v->type == REC_DROP) {
			inc = ver = 0;
		}
	}
	*incarnation = inc;
	return ver;
}

static void test_crafted_records(void **unused)
{
	log_image img;
	log_image_make(&img, "dmg-craft", 0xc4af7, 25);
	char *work = test_make_dir("dmg-craft-work");
	const seg_layout *l = &img.lay;
	uint64_t next = l->n + 1;
	/* A live context to aim commits at. */
	const char *id = NULL;
	uint64_t inc = 0, ver = 0;
	static const char *ids[NCTX] = {"c0", "c1", "c2", "c3"};
	for (int i = 0; i < NCTX && !id; i++)
		if ((ver = final_version(&img, ids[i], &inc)) != 0)
			id = ids[i];
	assert_non_null(id);

	unsigned char body[600];
	struct {
		const char *what;
		size_t len;
	} cases[16];
	unsigned char recs[16][700];
	int n = 0;
#define ADD(desc, type, rev, version, incarn, blen)                                                \
	do {                                                                                       \
		cases[n].len = make_record(recs[n], type, rev, version, incarn, body, blen);       \
		cases[n].what = desc;                                                              \
		n++;                                                                               \
	} while (0)
	size_t bl;
	bl = commit_body(body, id, 1, OP_PUT_CODE, "k", "v");
	ADD("unknown record type", 12, next, ver + 1, inc, (uint32_t)bl);
	ADD("revision out of order", REC_COMMIT, next + 1, ver + 1, inc, (uint32_t)bl);
	ADD("revision repeated", REC_COMMIT, next - 1, ver + 1, inc, (uint32_t)bl);
	ADD("version gap", REC_COMMIT, next, ver + 2, inc, (uint32_t)bl);
	bl = commit_body(body, id, 1, 7, "k", "v");
	ADD("unknown op kind", REC_COMMIT, next, ver + 1, inc, (uint32_t)bl);
	bl = commit_body(body, id, 1, OP_PUT_CODE, "", "v");
	ADD("empty key", REC_COMMIT, next, ver + 1, inc, (uint32_t)bl);
	bl = commit_body(body, id, 1000000, OP_PUT_CODE, "k", "v");
	ADD("op count beyond the body", REC_COMMIT, next, ver + 1, inc, (uint32_t)bl);
	bl = commit_body_klen(body, id, 1, OP_PUT_CODE, "k", 0xfffffff0u, "v");
	ADD("key length beyond the body", REC_COMMIT, next, ver + 1, inc, (uint32_t)bl);
	bl = commit_body(body, id, 1, OP_PUT_CODE, "k", "v");
	body[bl] = 'x';
	ADD("bytes after the last op", REC_COMMIT, next, ver + 1, inc, (uint32_t)bl + 1);
	bl = commit_body(body, "bad\x01id", 1, OP_PUT_CODE, "k", "v");
	ADD("control byte in the id", REC_COMMIT, next, 2, 1, (uint32_t)bl);
	memset(body, 'a', 400);
	put_u16(body, 300);
	ADD("id of 300 bytes", REC_DROP, next, 0, 1, 302);
	put_u16(body, 0);
	ADD("empty id", REC_DROP, next, 0, 1, 2);
	put_u16(body, 50);
	ADD("id longer than the body", REC_DROP, next, 0, 1, 10);
	/* A create of a context that exists (in log format 2 a create's
	 * incarnation is its revision: not written, so never another). */
	put_u16(body, (uint16_t)strlen(id));
	memcpy(body + 2, id, strlen(id));
	ADD("create of a live context", REC_CREATE, next, 1, next, (uint32_t)(2 + strlen(id)));
	ADD("create with a version other than 1", REC_CREATE, next, 2, next,
	    (uint32_t)(2 + strlen(id)));
#undef ADD
	unsigned char *buf = malloc(l->size + 700);
	for (int i = 0; i < n; i++) {
		memcpy(buf, img.seg.p, l->size);
		memcpy(buf + l->size, recs[i], cases[i].len);
		stage_segment(work, buf, l->size + cases[i].len);
		expect e = expect_corrupt(seg_name(1), (long long)l->size);
		check_dir(work, &e, cases[i].what);
	}
	free(buf);
	test_remove_dir(work);
	free(work);
	log_image_free(&img);
}

/* ---- checkpoints ------------------------------------------------------------------------- */

/* Two sessions, the second one ended by a crash between its last
 * checkpoint's rename and its deletes: ckpt-R1, ckpt-R2, the segment R1+1..
 * with the records of the second session, and an empty newest segment. A
 * clean close leaves only ckpt-R2 and the empty segment (checked here). */
typedef struct ckpt_image {
	char *dir;
	history h;
	uint64_t r1, r2;
} ckpt_image;

static void ckpt_image_make(ckpt_image *img, const char *name, uint64_t seed)
{
	img->dir = test_make_dir(name);
	history_init(&img->h, seed);
	history_run(&img->h, img->dir, 30, 0, false);
	img->r1 = img->h.n;
	dir_snap before, s;
	history_run_with(&img->h, img->dir, 30, 0, false, &before);
	img->r2 = img->h.n;
	remove_file(img->dir, "LOCK");
	snap_take(img->dir, &s);
	assert_int_equal(s.n, 2); /* one generation */
	assert_string_equal(s.names[0], ckpt_name(img->r2));
	assert_string_equal(s.names[1], seg_name(img->r2 + 1));
	snap_free(&s);
	restore_missing(img->dir, &before);
	snap_free(&before);
	snap_take(img->dir, &s);
	assert_int_equal(s.n, 4);
	assert_string_equal(s.names[0], ckpt_name(img->r1));
	assert_string_equal(s.names[1], ckpt_name(img->r2));
	assert_string_equal(s.names[2], seg_name(img->r1 + 1));
	assert_string_equal(s.names[3], seg_name(img->r2 + 1));
	snap_free(&s);
}

static void ckpt_image_free(ckpt_image *img)
{
	test_remove_dir(img->dir);
	free(img->dir);
	history_free(&img->h);
}

typedef void damage_fn(unsigned char *buf, size_t *n, uint64_t *r);

static void flip_header(unsigned char *b, size_t *n, uint64_t *r)
{
	b[test_rand_below(r, CKPT_HEADER_SIZE)] ^= (unsigned char)(1u << test_rand_below(r, 8));
}

static void flip_first_section(unsigned char *b, size_t *n, uint64_t *r)
{
	b[CKPT_HEADER_SIZE + test_rand_below(r, CKPT_SECTION_SIZE)] ^= 0x04;
}

static void flip_body(unsigned char *b, size_t *n, uint64_t *r)
{
	size_t lo = CKPT_HEADER_SIZE, hi = *n - CKPT_TRAILER_SIZE;
	b[lo + test_rand_below(r, hi - lo)] ^= (unsigned char)(1u << test_rand_below(r, 8));
}

static void flip_trailer(unsigned char *b, size_t *n, uint64_t *r)
{
	b[*n - CKPT_TRAILER_SIZE + test_rand_below(r, CKPT_TRAILER_SIZE)] ^= 0x80;
}

static void cut_half(unsigned char *b, size_t *n, uint64_t *r)
{
	*n /= 2;
}

static void cut_last_byte(unsigned char *b, size_t *n, uint64_t *r)
{
	*n -= 1;
}

static void cut_all(unsigned char *b, size_t *n, uint64_t *r)
{
	*n = 0;
}

static void add_garbage(unsigned char *b, size_t *n, uint64_t *r)
{
	for (int i = 0; i < 100; i++)
		b[(*n)++] = (unsigned char)test_rand(r);
}

static void zero_middle(unsigned char *b, size_t *n, uint64_t *r)
{
	memset(b + *n / 3, 0, *n / 3);
}

static const struct {
	const char *what;
	damage_fn *fn;
} ckpt_damage[] = {
    {"bit flipped in the header", flip_header},
    {"bit flipped in a section header", flip_first_section},
    {"bit flipped in the sections", flip_body},
    {"bit flipped in the trailer", flip_trailer},
    {"cut in half", cut_half},
    {"last byte cut", cut_last_byte},
    {"emptied", cut_all},
    {"garbage appended", add_garbage},
    {"zeros in the middle", zero_middle},
};
#define NDAMAGE (sizeof(ckpt_damage) / sizeof(ckpt_damage[0]))

static void damage_file(const char *dir, const char *name, damage_fn *fn, uint64_t *r)
{
	blob b = read_file(dir, name);
	blob orig = {malloc(b.n + 1), b.n};
	memcpy(orig.p, b.p, b.n);
	b.p = realloc(b.p, b.n + 200);
	fn(b.p, &b.n, r);
	if (b.n == orig.n && memcmp(b.p, orig.p, b.n) == 0)
		b.p[b.n / 2] ^= 1; /* (zeros over zeros changed nothing) */
	free(orig.p);
	write_file(dir, name, b.p, b.n);
	free(b.p);
}

static void test_damaged_checkpoint_falls_back(void **unused)
{
	uint64_t seed = test_seed("checkpoint damage", 0xc4ec);
	ckpt_image img;
	ckpt_image_make(&img, "dmg-ckpt", seed);
	char *work = test_make_dir("dmg-ckpt-work");
	uint64_t r = seed;
	const char *full = img.h.dumps[img.r2];

	/* Control: the image as it is. */
	copy_dir(img.dir, work);
	expect e = expect_ok(full, img.r2, 0);
	e.damaged = 0;
	check_dir(work, &e, "undamaged");
	/* And as a clean close leaves it: one generation. */
	copy_dir(img.dir, work);
	remove_file(work, ckpt_name(img.r1));
	remove_file(work, seg_name(img.r1 + 1));
	check_dir(work, &e, "one generation");

	for (size_t d = 0; d < NDAMAGE; d++) {
		for (int rep = 0; rep < 1 + (test_scale() > 1); rep++) {
			char what[128];
			/* The newest damaged: the older one and the log give it all. */
			copy_dir(img.dir, work);
			damage_file(work, ckpt_name(img.r2), ckpt_damage[d].fn, &r);
			snprintf(what, sizeof(what), "newest checkpoint %s", ckpt_damage[d].what);
			e = expect_ok(full, img.r2, 0);
			e.damaged = 1;
			check_dir(work, &e, what);

			/* The older damaged: not even read. */
			copy_dir(img.dir, work);
			damage_file(work, ckpt_name(img.r1), ckpt_damage[d].fn, &r);
			snprintf(what, sizeof(what), "older checkpoint %s", ckpt_damage[d].what);
			e = expect_ok(full, img.r2, 0);
			e.damaged = 0;
			check_dir(work, &e, what);

			/* Both damaged: nothing to start from. */
			copy_dir(img.dir, work);
			damage_file(work, ckpt_name(img.r2), ckpt_damage[d].fn, &r);
			damage_file(work, ckpt_name(img.r1), ckpt_damage[d].fn, &r);
			snprintf(what, sizeof(what), "both checkpoints %s", ckpt_damage[d].what);
			e = expect_corrupt(ckpt_name(img.r2), -1);
			check_dir(work, &e, what);

			/* One generation (a clean close), its checkpoint damaged:
			 * nothing else holds the state, as with LMDB or SQLite. */
			copy_dir(img.dir, work);
			remove_file(work, ckpt_name(img.r1));
			remove_file(work, seg_name(img.r1 + 1));
			damage_file(work, ckpt_name(img.r2), ckpt_damage[d].fn, &r);
			snprintf(what, sizeof(what), "sole checkpoint %s", ckpt_damage[d].what);
			e = expect_corrupt(ckpt_name(img.r2), -1);
			check_dir(work, &e, what);

			/* The newest damaged and the log it needs missing. */
			copy_dir(img.dir, work);
			damage_file(work, ckpt_name(img.r2), ckpt_damage[d].fn, &r);
			remove_file(work, seg_name(img.r1 + 1));
			snprintf(what, sizeof(what), "newest checkpoint %s, log gone",
			         ckpt_damage[d].what);
			e = expect_corrupt(NULL, -1);
			check_dir(work, &e, what);
		}
	}
	/* A checkpoint whose name and content disagree is not trusted. */
	copy_dir(img.dir, work);
	{
		blob b = read_file(work, ckpt_name(img.r1));
		remove_file(work, ckpt_name(img.r2));
		write_file(work, ckpt_name(img.r2), b.p, b.n);
		free(b.p);
	}
	e = expect_ok(full, img.r2, 0);
	e.damaged = 1;
	check_dir(work, &e, "checkpoint under another revision's name");

	test_remove_dir(work);
	free(work);
	ckpt_image_free(&img);
}

/* With a single checkpoint, damaged, but the complete log (from revision 1)
 * still there: the state is rebuilt from the log, and verify says so. With
 * the first segment gone too, it is an error that names the checkpoint and
 * where it is damaged. */
static void test_damaged_only_checkpoint(void **unused)
{
	char *dir = test_make_dir("dmg-one-ckpt");
	history h;
	history_init(&h, 0x0ce);
	history_run(&h, dir, 25, 0, true); /* crashed before deleting wal-1 */
	uint64_t r1 = h.n;
	char *work = test_make_dir("dmg-one-ckpt-work");
	uint64_t r = 5;
	for (size_t d = 0; d < NDAMAGE; d++) {
		copy_dir(dir, work);
		assert_true(has_file(work, ckpt_name(r1)));
		assert_true(has_file(work, seg_name(1)));
		damage_file(work, ckpt_name(r1), ckpt_damage[d].fn, &r);
		ctx_verify_report rep;
		assert_ok(ctx_verify(work, &rep));
		assert_int_equal(rep.checkpoint_revision, 0);
		assert_non_null(strstr(rep.message, "rebuilt from the complete log"));
		assert_non_null(strstr(rep.message, ckpt_name(r1)));
		expect e = expect_ok(h.dumps[r1], r1, 0);
		e.damaged = 1;
		check_dir(work, &e, ckpt_damage[d].what);

		/* And it goes on: new commits, a reopen, a checkpoint, which
		 * replaces the damaged one and the log it covers. */
		ctx_store *s = open_dir(work);
		assert_ok(ctx_create(s, "after"));
		assert_ok(ctx_checkpoint(s));
		assert_false(has_file(work, ckpt_name(r1)));
		assert_false(has_file(work, seg_name(1)));
		ctx_close(s);
		s = open_dir(work);
		ctx_state *st = NULL;
		assert_ok(ctx_get(s, "after", &st));
		ctx_state_release(st);
		ctx_close(s);

		copy_dir(dir, work);
		damage_file(work, ckpt_name(r1), ckpt_damage[d].fn, &r);
		remove_file(work, seg_name(1));
		e = expect_corrupt(ckpt_name(r1), -1);
		check_dir(work, &e, ckpt_damage[d].what);
		assert_int_equal(ctx_verify(work, &rep), CTX_CORRUPT); /* and where */
		assert_non_null(strstr(rep.message, "offset"));
	}
	test_remove_dir(work);
	test_remove_dir(dir);
	free(work);
	free(dir);
	history_free(&h);
}

/* Checkpoints with valid checksums but bad content. They start from a real
 * checkpoint (format version 2) of a store with one context, whose section
 * is then easy to find whatever its payload's layout: header, payload, its
 * u32 crc, file trailer. The section's checksum is recomputed after each
 * change. */
typedef struct one_ckpt {
	unsigned char *p;
	size_t n;
	size_t sec, body, trailer; /* offsets: section, payload, section crc */
} one_ckpt;

static void one_ckpt_load(one_ckpt *c, const blob *b)
{
	c->p = malloc(2 * b->n + 64);
	assert_non_null(c->p);
	memcpy(c->p, b->p, b->n);
	c->n = b->n;
	assert_int_equal(get_u32(c->p + 8), CKPT_FORMAT_VERSION);
	c->sec = CKPT_HEADER_SIZE;
	c->body = c->sec;
	c->trailer = c->n - CKPT_TRAILER_SIZE - CKPT_V2_SECTION_TRAILER;
	assert_int_equal(get_u32(c->p + c->trailer),
	                 crc32c(0, c->p + c->body, c->trailer - c->body));
	assert_int_equal(get_u64(c->p + c->n - CKPT_TRAILER_SIZE + 8), 1);
}

/* Recompute the checksums after a change. */
static void one_ckpt_seal(one_ckpt *c)
{
	put_u32(c->p + c->trailer, crc32c(0, c->p + c->body, c->trailer - c->body));
	unsigned char *t = c->p + c->n - CKPT_TRAILER_SIZE;
	put_u32(t + 20, crc32c(0, t, 20));
	put_u32(c->p + 28, crc32c(0, c->p, 28));
}

/* Insert (n > 0) or remove (n < 0) bytes at off, keeping the rest. */
static void one_ckpt_splice(one_ckpt *c, size_t off, long n)
{
	if (n > 0)
		memmove(c->p + off + n, c->p + off, c->n - off);
	else
		memmove(c->p + off, c->p + off - n, c->n - off + n);
	c->n += (size_t)n;
	c->trailer += (size_t)n;
}

static void test_crafted_checkpoints(void **unused)
{
	/* The source: one context with data and metadata, history of 4. */
	char *src = test_make_dir("dmg-craft-src");
	ctx_store *m = test_open_memory();
	ctx_store *s = open_dir(src);
	ctx_store *both[2] = {m, s};
	for (int i = 0; i < 2; i++) {
		assert_ok(ctx_create(both[i], "ctx-a"));
		assert_ok(ctx_put(both[i], "ctx-a", "k1", 2, "v1", 2, NULL));
		assert_ok(ctx_put(both[i], "ctx-a", "k2", 2, "v2", 2, NULL));
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(both[i], "ctx-a", &t));
		assert_ok(ctx_txn_meta_put(t, "m", 1, "x", 1));
		assert_ok(ctx_txn_del(t, "k1", 2));
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
	char *want = test_dump_store(m, false, NULL);
	ctx_close(m);
	ctx_close(s);
	blob orig = read_file(src, ckpt_name(4));
	char *dir = test_make_dir("dmg-craft-ckpt");

	/* The checkpoint alone is a whole store. */
	clear_dir(dir);
	write_file(dir, ckpt_name(4), orig.p, orig.n);
	expect e = expect_ok(want, 4, 0);
	check_dir(dir, &e, "the checkpoint alone");

	enum { CASES = 10 };
	static const char *what[CASES] = {
	    "id length 0",
	    "id of 300 bytes",
	    "control byte in the id",
	    "id longer than the file",
	    "context repeated",
	    "payload one byte short",
	    "a byte after the payload",
	    "payload emptied",
	    "wrong context count",
	    "unknown format version",
	};
	for (int i = 0; i < CASES; i++) {
		one_ckpt c;
		one_ckpt_load(&c, &orig);
		switch (i) {
		/* The payload starts with the id's length, a varint of 1 byte. */
		case 0:
			c.p[c.body] = 0;
			break;
		case 1:
			one_ckpt_splice(&c, c.body + 1, 1);
			put_uv(c.p + c.body, 300);
			break;
		case 2:
			c.p[c.body + 1 + 2] = 0x01;
			break;
		case 3:
			one_ckpt_splice(&c, c.body + 1, 4);
			put_uv(c.p + c.body, 0x7ffffff0u);
			break;
		case 4: { /* the section twice */
			size_t len = c.trailer + CKPT_V2_SECTION_TRAILER - c.sec;
			one_ckpt_seal(&c);
			memmove(c.p + c.sec + 2 * len, c.p + c.sec + len, c.n - c.sec - len);
			memcpy(c.p + c.sec + len, c.p + c.sec, len);
			c.n += len;
			put_u64(c.p + c.n - CKPT_TRAILER_SIZE + 8, 2);
			unsigned char *t = c.p + c.n - CKPT_TRAILER_SIZE;
			put_u32(t + 20, crc32c(0, t, 20));
			goto write;
		}
		case 5:
			one_ckpt_splice(&c, c.trailer - 1, -1);
			break;
		case 6:
			one_ckpt_splice(&c, c.trailer, 1);
			c.p[c.trailer - 1] = 0;
			break;
		case 7:
			one_ckpt_splice(&c, c.body + 5, -(long)(c.trailer - c.body - 5));
			break;
		case 8:
			put_u64(c.p + c.n - CKPT_TRAILER_SIZE + 8, 3);
			break;
		default:
			put_u32(c.p + 8, CKPT_FORMAT_VERSION + 1);
			break;
		}
		one_ckpt_seal(&c);
	write:
		clear_dir(dir);
		write_file(dir, ckpt_name(4), c.p, c.n);
		free(c.p);
		e = expect_corrupt(ckpt_name(4), -1);
		check_dir(dir, &e, what[i]);
	}

	/* Random bytes of the payload changed, checksums made to match: the
	 * parser must stay within the file and either refuse the section or
	 * load something; never crash, and verify and open agree. */
	uint64_t r = test_seed("crafted checkpoints", 0x5ea1);
	int refused = 0, loaded = 0;
	double start = test_now(), budget = 2.0 * test_scale();
	long i = 0, min = 40, max = 500L * test_scale();
	for (; i < max && (i < min || test_now() - start < budget); i++) {
		one_ckpt c;
		one_ckpt_load(&c, &orig);
		size_t plen = c.trailer - c.body;
		for (int k = 0, nk = 1 + (int)test_rand_below(&r, 3); k < nk; k++) {
			size_t at = c.body + test_rand_below(&r, plen);
			if (test_rand_below(&r, 2))
				c.p[at] ^= (unsigned char)(1u << test_rand_below(&r, 8));
			else
				c.p[at] =
				    (unsigned char)(test_rand_below(&r, 3) == 0 ? 0xff
				                                                : test_rand(&r));
		}
		one_ckpt_seal(&c);
		clear_dir(dir);
		write_file(dir, ckpt_name(4), c.p, c.n);
		free(c.p);
		dir_snap before, after;
		snap_take(dir, &before);
		ctx_verify_report rep;
		ctx_status vst = ctx_verify(dir, &rep);
		snap_take(dir, &after);
		snap_expect_same(&before, &after, "ctx_verify");
		snap_free(&before);
		snap_free(&after);
		ctx_options o;
		ctx_options_init(&o);
		o.dir = dir;
		ctx_store *x = NULL;
		ctx_status ost = ctx_open(&o, &x);
		if (ost != vst)
			fail_msg(
			    "mutated checkpoint %ld: ctx_open gave %s (%s), ctx_verify %s (%s)", i,
			    ctx_strerror(ost), ctx_last_error(), ctx_strerror(vst), rep.message);
		if (ost == CTX_OK) {
			loaded++;
			/* A changed time-to-live or access time may have expired the
			 * context: let the reaper drop it, as it would in the
			 * background, before the dump counts contexts. */
			ctx_expire_now(x);
			free(test_dump_store(x, false, NULL)); /* everything it holds can be read */
			ctx_close(x);
		} else {
			assert_int_equal(ost, CTX_CORRUPT);
			assert_null(x);
			refused++;
		}
	}
	print_message("mutated checkpoints: %ld, %d refused, %d loaded\n", i, refused, loaded);
	assert_true(refused > 0);

	free(orig.p);
	free(want);
	test_remove_dir(dir);
	test_remove_dir(src);
	free(dir);
	free(src);
}

/* ---- missing segments -------------------------------------------------------------------- */

/* Three sessions, each ended by a crash before its checkpoint's deletes,
 * with the checkpoints removed after each, so that no segment is ever
 * deleted: wal-1, wal-A, wal-B with records, wal-C empty. */
static void test_missing_segments(void **unused)
{
	char *dir = test_make_dir("dmg-segs");
	history h;
	history_init(&h, 0x5e65);
	uint64_t firsts[4] = {1, 0, 0, 0};
	for (int i = 0; i < 3; i++) {
		history_run(&h, dir, 15, 0, true);
		remove_checkpoints(dir);
		firsts[i + 1] = h.n + 1;
	}
	remove_file(dir, "LOCK");
	for (int i = 0; i < 4; i++)
		assert_true(has_file(dir, seg_name(firsts[i])));
	char *work = test_make_dir("dmg-segs-work");

	copy_dir(dir, work);
	expect e = expect_ok(h.dumps[h.n], h.n, 0);
	check_dir(work, &e, "all segments");

	copy_dir(dir, work);
	remove_file(work, seg_name(firsts[3])); /* the empty newest: harmless */
	check_dir(work, &e, "empty newest segment removed");

	copy_dir(dir, work);
	remove_file(work, seg_name(firsts[1]));
	e = expect_corrupt(seg_name(firsts[2]), -1);
	check_dir(work, &e, "middle segment missing");

	copy_dir(dir, work);
	remove_file(work, seg_name(firsts[0]));
	e = expect_corrupt(NULL, -1);
	check_dir(work, &e, "first segment missing");

	/* A torn-looking end in an older segment is not a torn tail. */
	copy_dir(dir, work);
	{
		blob b = read_file(work, seg_name(firsts[1]));
		write_file(work, seg_name(firsts[1]), b.p, b.n - 3);
		free(b.p);
	}
	e = expect_corrupt(seg_name(firsts[1]), -1);
	check_dir(work, &e, "older segment cut");

	copy_dir(dir, work);
	{
		blob b = read_file(work, seg_name(firsts[1]));
		b.p[3] ^= 1;
		write_file(work, seg_name(firsts[1]), b.p, b.n);
		free(b.p);
	}
	e = expect_corrupt(seg_name(firsts[1]), -1);
	check_dir(work, &e, "older segment header damaged");

	copy_dir(dir, work);
	{
		blob b = read_file(work, seg_name(firsts[1]));
		b.p = realloc(b.p, b.n + 64);
		memset(b.p + b.n, 0, 64);
		write_file(work, seg_name(firsts[1]), b.p, b.n + 64);
		free(b.p);
	}
	/* Zeros after an older segment's records: its preallocated tail, left
	 * by a crash before the rotation cut it off. The clean end. */
	e = expect_ok(h.dumps[h.n], h.n, 0);
	check_dir(work, &e, "zeros after an older segment");

	/* Garbage then zeros after an older segment: damage in synced data. */
	copy_dir(dir, work);
	{
		blob b = read_file(work, seg_name(firsts[1]));
		b.p = realloc(b.p, b.n + 4096);
		memset(b.p + b.n, 0, 4096);
		b.p[b.n] = 0x5a;
		write_file(work, seg_name(firsts[1]), b.p, b.n + 4096);
		free(b.p);
	}
	e = expect_corrupt(seg_name(firsts[1]), -1);
	check_dir(work, &e, "garbage and zeros after an older segment");

	/* An older segment's last record turned into zeros, the zeros running
	 * to its end: a clean end there, but the next segment's first revision
	 * shows the record missing. */
	copy_dir(dir, work);
	{
		blob b = read_file(work, seg_name(firsts[1]));
		size_t last = WAL_HEADER_SIZE, o = WAL_HEADER_SIZE;
		rec_view v;
		while (!rec_parse(FORMAT_VERSION, b.p + o, b.n - o, true, &v)) {
			last = o;
			o += v.len;
		}
		memset(b.p + last, 0, b.n - last);
		write_file(work, seg_name(firsts[1]), b.p, b.n);
		free(b.p);
	}
	e = expect_corrupt(seg_name(firsts[2]), -1);
	check_dir(work, &e, "an older segment's last record zeroed");

	test_remove_dir(work);
	test_remove_dir(dir);
	free(work);
	free(dir);
	history_free(&h);
}

/* ---- random damage ---------------------------------------------------------------------- */

/* Random damage to the log of a crash image. The expected outcome follows
 * from where the damage is: the records before the first damaged one are
 * recovered, and the intact ones after it are counted as cut. Staged as an
 * older segment (a newer one after it), any damage is corrupt. */
static void fuzz_log(log_image *img, const char *work, uint64_t *r, int *counts)
{
	const seg_layout *l = &img->lay;
	size_t n = l->size;
	unsigned char *buf = malloc(n + 5000);
	memcpy(buf, img->seg.p, n);
	int kind = (int)test_rand_below(r, 5);
	bool older = test_rand_below(r, 4) == 0;
	size_t lo = WAL_HEADER_SIZE; /* (header damage: see test_damaged_segment_header) */
	size_t at = lo + test_rand_below(r, n - lo);
	bool truncated = false;
	switch (kind) {
	case 0: /* flip bits here and there */
		for (int i = 0, k = 1 + (int)test_rand_below(r, 3); i < k; i++)
			buf[lo + test_rand_below(r, n - lo)] ^=
			    (unsigned char)(1u << test_rand_below(r, 8));
		break;
	case 1: { /* overwrite a range with random bytes */
		size_t len = 1 + test_rand_below(r, 200);
		for (size_t i = at; i < at + len && i < n; i++)
			buf[i] = (unsigned char)test_rand(r);
		break;
	}
	case 2: { /* zero a range, perhaps to the end */
		size_t len = test_rand_below(r, 2) ? n - at : 1 + test_rand_below(r, 300);
		memset(buf + at, 0, at + len < n ? len : n - at);
		break;
	}
	case 3: /* truncate */
		n = at;
		truncated = true;
		break;
	default: { /* append garbage */
		size_t len = 1 + test_rand_below(r, 4000);
		for (size_t i = 0; i < len; i++)
			buf[n + i] = (unsigned char)test_rand(r);
		n += len;
	}
	}
	/* Where is it damaged? */
	size_t first = SIZE_MAX;
	for (size_t i = 0; i < l->size && i < n; i++)
		if (buf[i] != img->seg.p[i]) {
			first = i;
			break;
		}
	if (first == SIZE_MAX && n < l->size)
		first = n;
	if (older)
		stage_older_segment(work, buf, n, l->n + 1);
	else
		stage_segment(work, buf, n);
	expect e;
	char what[64];
	if (first == SIZE_MAX && n == l->size) {
		e = expect_ok(img->h.dumps[l->n], l->n, 0);
		snprintf(what, sizeof(what), "fuzz: nothing changed");
	} else if (older) {
		/* (a cut at a record boundary, or zeros from one to the end - a zero
		 * tail - leave a gap before the next segment: named with the offset
		 * in a message that long paths may cut short) */
		size_t j = records_before(l, first == SIZE_MAX ? l->size : first);
		bool gap = truncated || first == SIZE_MAX ||
		           (j < l->n && nonzero_len(buf + l->start[j], n - l->start[j]) == 0);
		e = expect_corrupt(seg_name(1), gap ? -1 : (long long)l->start[j]);
		snprintf(what, sizeof(what), "fuzz kind %d at %zu, older segment", kind, first);
		counts[3]++;
	} else if (first == SIZE_MAX) { /* only appended */
		e = expect_ok(img->h.dumps[l->n], l->n, nonzero_len(buf + l->size, n - l->size));
		snprintf(what, sizeof(what), "fuzz: %zu bytes appended", n - l->size);
		counts[0]++;
	} else {
		size_t j = records_before(l, first); /* the first damaged record */
		long long intact = 0;
		for (size_t k = j + 1; k < l->n && !truncated; k++)
			intact +=
			    l->end[k] <= n && memcmp(buf + l->start[k], img->seg.p + l->start[k],
			                             l->end[k] - l->start[k]) == 0;
		/* (zeros from record j's start to the end: its clean end, 0 torn) */
		e = expect_ok(img->h.dumps[j], j, nonzero_len(buf + l->start[j], n - l->start[j]));
		if (truncated) {
			size_t keep = j ? l->end[j - 1] : WAL_HEADER_SIZE;
			e.torn = nonzero_len(buf + keep, n - keep);
		}
		e.torn_records = intact;
		counts[intact ? 1 : 2]++;
		snprintf(what, sizeof(what), "fuzz kind %d at %zu (record %zu)", kind, first, j);
	}
	check_dir(work, &e, what);
	free(buf);
}

/* Random damage to one file of a directory with two checkpoints: whatever it
 * is, the other files hold everything. */
static void fuzz_ckpt_image(ckpt_image *img, const char *work, uint64_t *r)
{
	copy_dir(img->dir, work);
	const char *names[4] = {ckpt_name(img->r1), ckpt_name(img->r2), seg_name(img->r1 + 1),
	                        seg_name(img->r2 + 1)};
	char name[64];
	snprintf(name, sizeof(name), "%s", names[test_rand_below(r, 4)]);
	blob b = read_file(work, name);
	b.p = realloc(b.p, b.n + 5000);
	size_t at = test_rand_below(r, b.n);
	switch (test_rand_below(r, 4)) {
	case 0:
		b.p[at] ^= (unsigned char)(1u << test_rand_below(r, 8));
		break;
	case 1:
		for (size_t i = at, len = 1 + test_rand_below(r, 100); i < at + len && i < b.n; i++)
			b.p[i] = (unsigned char)test_rand(r);
		break;
	case 2:
		b.n = at;
		break;
	default:
		for (size_t i = 0, len = 1 + test_rand_below(r, 4000); i < len; i++)
			b.p[b.n++] = (unsigned char)test_rand(r);
	}
	write_file(work, name, b.p, b.n);
	free(b.p);
	expect e = expect_ok(img->h.dumps[img->r2], img->r2, -1);
	char what[96];
	snprintf(what, sizeof(what), "fuzz of %s", name);
	check_dir(work, &e, what);
}

static void test_random_damage(void **unused)
{
	uint64_t seed = test_seed("random damage", 0xf022);
	uint64_t r = seed;
	log_image img;
	log_image_make(&img, "dmg-fuzz", seed, 40);
	ckpt_image cimg;
	ckpt_image_make(&cimg, "dmg-fuzz-ckpt", seed + 1);
	char *work = test_make_dir("dmg-fuzz-work");
	/* A time budget, for the sanitizer builds; a fixed minimum, whatever. */
	double budget = 2.5 * test_scale(), start = test_now();
	long min = (test_slowdown() > 1) ? 40 : 60, max = 400L * test_scale();
	long trials = 0;
	int counts[4] = {0, 0, 0, 0};
	while (trials < max && (trials < min || test_now() - start < budget)) {
		if (trials % 3 == 2)
			fuzz_ckpt_image(&cimg, work, &r);
		else
			fuzz_log(&img, work, &r, counts);
		trials++;
	}
	print_message("random damage: %ld trials (log: %d appended, %d cut with intact records "
	              "after the damage, %d cut with none, %d corrupt in an older segment)\n",
	              trials, counts[0], counts[1], counts[2], counts[3]);
	assert_true(counts[1] > 0 && counts[2] > 0 && counts[3] > 0);
	test_remove_dir(work);
	free(work);
	ckpt_image_free(&cimg);
	log_image_free(&img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_truncate_every_offset),
	    cmocka_unit_test(test_garbage_tail),
	    cmocka_unit_test(test_bitflips_in_log),
	    cmocka_unit_test(test_damaged_segment_header),
	    cmocka_unit_test(test_crafted_records),
	    cmocka_unit_test(test_damaged_checkpoint_falls_back),
	    cmocka_unit_test(test_damaged_only_checkpoint),
	    cmocka_unit_test(test_crafted_checkpoints),
	    cmocka_unit_test(test_missing_segments),
	    cmocka_unit_test(test_random_damage),
	};
	if (getenv("CTX_TEST_FILTER")) /* run only the tests matching it */
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
