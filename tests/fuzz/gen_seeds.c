/*
 * gen_seeds.c - builds the seed corpora of the fuzz targets from real stores.
 *
 *   usage: fuzz_gen_seeds CORPUS_DIR   (writes CORPUS_DIR/fuzz_{record,checkpoint,recovery})
 *
 * A few small scenarios drive a store with a data directory through the
 * public API (creates with initial data, commits, deletes, metadata, points,
 * restores, time-to-live, expiry, drops and re-creates, checkpoints with full
 * and delta versions). After each scenario, and at chosen moments while the
 * store is open, the directory's files become seeds in each target's input
 * format:
 *   fuzz_record/      each log segment, its records re-encoded as fuzz_record
 *                     reads them (type, version, incarnation, body length, body);
 *   fuzz_checkpoint/  each checkpoint raw (mode byte 0) and framed (mode byte
 *                     3, format version 2, as fuzz_checkpoint reads it); and
 *                     the version 1 checkpoint of tests/ckpt_v1_fixture.h,
 *                     raw and framed (mode byte 1);
 *   fuzz_recovery/    the directory's files joined by the separator
 *                     fuzz_recovery splits at (the newest checkpoint or two, then the segments).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../ckpt_v1_fixture.h"
#include "ctx.h"
#include "format.h"

#define CHECK(call)                                                                                \
	do {                                                                                       \
		ctx_status st_ = (call);                                                           \
		if (st_ != CTX_OK) {                                                               \
			fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,  \
			        ctx_strerror(st_), ctx_last_error());                              \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static const char *out_dir;
static char work[4096];
static uint64_t fake_now = 1700000000000000ull;

static uint64_t clock_us(void *arg)
{
	return fake_now;
}

/* ---- bytes ------------------------------------------------------------------ */

typedef struct buf {
	unsigned char *p;
	size_t n, cap;
} buf;

static void buf_add(buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		if (!(b->p = realloc(b->p, b->cap)))
			exit(1);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void read_file(const char *path, buf *b)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		exit(1);
	unsigned char chunk[65536];
	size_t k;
	while ((k = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(b, chunk, k);
	fclose(f);
}

static void emit(const char *target, const char *name, const buf *b)
{
	char path[8192];
	snprintf(path, sizeof(path), "%s/%s", out_dir, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(b->p, 1, b->n, f) != b->n || fclose(f) != 0) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(1);
	}
}

/* ---- converting files to target inputs --------------------------------------- */

/* A segment's records as fuzz_record reads them. */
static void record_seed(const buf *seg, buf *out)
{
	uint32_t fmt = seg->n >= WAL_HEADER_SIZE ? get_u32(seg->p + 8) : 0;
	rec_view v;
	for (size_t off = WAL_HEADER_SIZE;
	     off < seg->n && !rec_parse(fmt, seg->p + off, seg->n - off, true, &v);) {
		if (v.blen > 0xffff)
			break;
		unsigned char in[19];
		in[0] = v.type;
		put_u64(in + 1, v.version);
		put_u64(in + 9, v.incarnation);
		put_u16(in + 17, (uint16_t)v.blen);
		buf_add(out, in, sizeof(in));
		buf_add(out, v.body, v.blen);
		off += v.len;
	}
}

/* Where the payload starting at body ends: the trailer that matches it
 * (format version 1: u64 length, u32 crc). */
static size_t payload_length(const unsigned char *body, const unsigned char *end)
{
	uint32_t crc = 0;
	for (size_t n = 0; body + n + CKPT_SECTION_TRAILER <= end; n++) {
		if (get_u64(body + n) == n && get_u32(body + n + 8) == crc)
			return n;
		crc = crc32c(crc, body + n, 1);
	}
	return SIZE_MAX;
}

/* The same for format version 2: the u32 crc that matches it. */
static size_t payload_length_v2(const unsigned char *body, const unsigned char *end)
{
	uint32_t crc = 0;
	for (size_t n = 0; body + n + CKPT_V2_SECTION_TRAILER <= end; n++) {
		if (get_u32(body + n) == crc)
			return n;
		crc = crc32c(crc, body + n, 1);
	}
	return SIZE_MAX;
}

/* A version 2 checkpoint as fuzz_checkpoint's framed mode 3 reads it. */
static void framed_checkpoint_v2(const buf *ck, buf *out)
{
	unsigned char mode = 3;
	buf_add(out, &mode, 1);
	buf_add(out, ck->p + 16, 8);
	const unsigned char *p = ck->p + CKPT_HEADER_SIZE, *end = ck->p + ck->n - CKPT_TRAILER_SIZE;
	while (p < end) {
		size_t n = payload_length_v2(p, end);
		if (n == SIZE_MAX)
			break;
		unsigned char len[4];
		put_u32(len, (uint32_t)n);
		buf_add(out, len, 4);
		buf_add(out, p, n);
		p += n + CKPT_V2_SECTION_TRAILER;
	}
}

/* A version 1 checkpoint as fuzz_checkpoint's framed mode 1 reads it. */
static void framed_checkpoint(const buf *ck, buf *out)
{
	unsigned char mode = 1;
	buf_add(out, &mode, 1);
	buf_add(out, ck->p + 16, 8);
	const unsigned char *p = ck->p + CKPT_HEADER_SIZE, *end = ck->p + ck->n - CKPT_TRAILER_SIZE;
	while (p + CKPT_SECTION_SIZE <= end) {
		size_t n = payload_length(p + CKPT_SECTION_SIZE, end);
		if (n == SIZE_MAX)
			break;
		unsigned char len[4];
		put_u32(len, (uint32_t)n);
		buf_add(out, p + 4, CKPT_SECTION_SIZE - 4);
		buf_add(out, len, 4);
		buf_add(out, p + CKPT_SECTION_SIZE, n);
		p += CKPT_SECTION_SIZE + n + CKPT_SECTION_TRAILER;
	}
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Turn the files of the work directory into seeds named after `name`. */
static void snapshot(const char *name)
{
	DIR *d = opendir(work);
	char *names[64];
	size_t n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) && n < 64)
		if (!strncmp(e->d_name, "ckpt-", 5) || !strncmp(e->d_name, "wal-", 4))
			names[n++] = strdup(e->d_name);
	if (d)
		closedir(d);
	qsort(names, n, sizeof(*names), cmp_names); /* ckpt-* before wal-*, ascending */
	size_t nckpt = 0;
	while (nckpt < n && !strncmp(names[nckpt], "ckpt-", 5))
		nckpt++;
	buf dir = {0};
	size_t files = 0;
	for (size_t i = 0; i < n; i++) {
		char path[8192], seed[256];
		snprintf(path, sizeof(path), "%s/%s", work, names[i]);
		buf f = {0}, s = {0};
		read_file(path, &f);
		if (i < nckpt) {
			unsigned char mode = 0;
			buf_add(&s, &mode, 1);
			buf_add(&s, f.p, f.n);
			snprintf(seed, sizeof(seed), "%s-%zu-raw", name, i);
			emit("fuzz_checkpoint", seed, &s);
			s.n = 0;
			if (get_u32(f.p + 8) == CKPT_FORMAT_V1)
				framed_checkpoint(&f, &s);
			else
				framed_checkpoint_v2(&f, &s);
			snprintf(seed, sizeof(seed), "%s-%zu-framed", name, i);
			emit("fuzz_checkpoint", seed, &s);
		} else {
			record_seed(&f, &s);
			snprintf(seed, sizeof(seed), "%s-%zu", name, i - nckpt);
			if (s.n)
				emit("fuzz_record", seed, &s);
		}
		/* The directory seed: the two newest checkpoints, then the segments. */
		if ((i >= nckpt || i + 2 >= nckpt) && files < 4) {
			if (files++)
				buf_add(&dir, "@@CTXFILE@@", 11);
			buf_add(&dir, f.p, f.n);
		}
		free(f.p);
		free(s.p);
		free(names[i]);
	}
	if (dir.n)
		emit("fuzz_recovery", name, &dir);
	free(dir.p);
}

/* ---- scenarios -------------------------------------------------------------- */

static ctx_store *open_work(size_t history_depth)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = work;
	o.clock_us = clock_us;
	o.history_depth = history_depth;
	/* The smallest preallocation: a segment copied while open ends with 4 KiB
	 * of zeros (its zero tail), not 64 KiB. */
	o.log_prealloc_bytes = 4096;
	ctx_store *s;
	CHECK(ctx_open(&o, &s));
	return s;
}

static void fresh_work(void)
{
	char cmd[8300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", work);
	if (system(cmd) != 0)
		exit(1);
}

static void put(ctx_store *s, const char *id, const char *k, const char *v)
{
	fake_now += 1000;
	CHECK(ctx_put(s, id, k, strlen(k), v, strlen(v), NULL));
}

/* Plain commits: creates, puts, deletes, metadata, a multi-key transaction. */
static void scenario_commits(void)
{
	fresh_work();
	ctx_store *s = open_work(0);
	CHECK(ctx_create(s, "app/a"));
	put(s, "app/a", "user", "alice");
	put(s, "app/a", "lang", "en");
	CHECK(ctx_del(s, "app/a", "lang", 4, NULL));
	ctx_txn *t;
	CHECK(ctx_txn_begin(s, "app/a", &t));
	CHECK(ctx_txn_put(t, "k1", 2, "v1", 2));
	CHECK(ctx_txn_put(t, "k2", 2, "", 0));
	CHECK(ctx_txn_meta_put(t, "owner", 5, "ops", 3));
	CHECK(ctx_txn_commit(t, 0, NULL));
	CHECK(ctx_txn_begin(s, "app/a", &t));
	CHECK(ctx_txn_meta_del(t, "owner", 5));
	CHECK(ctx_txn_commit(t, 0, NULL));
	CHECK(ctx_txn_begin_create(s, "app/b", &t));
	CHECK(ctx_txn_put(t, "init", 4, "yes", 3));
	CHECK(ctx_txn_meta_put(t, "m", 1, "x", 1));
	CHECK(ctx_txn_commit(t, 0, NULL));
	put(s, "app/b", "more", "data");
	snapshot("commits-open");
	ctx_close(s);
	snapshot("commits-closed");
}

/* Points, restores, point removal, a drop and a re-create. */
static void scenario_points(void)
{
	fresh_work();
	ctx_store *s = open_work(0);
	uint64_t v, pinned;
	CHECK(ctx_create(s, "doc"));
	put(s, "doc", "title", "draft");
	CHECK(ctx_point_create(s, "doc", "first", &pinned));
	put(s, "doc", "title", "final");
	put(s, "doc", "body", "text");
	CHECK(ctx_point_create(s, "doc", NULL, &v));
	CHECK(ctx_restore(s, "doc", pinned, &v));
	CHECK(ctx_point_delete(s, "doc", v - 1));
	CHECK(ctx_create(s, "tmp"));
	put(s, "tmp", "x", "1");
	CHECK(ctx_drop(s, "tmp"));
	CHECK(ctx_create(s, "tmp"));
	put(s, "tmp", "y", "2");
	snapshot("points-open");
	CHECK(ctx_checkpoint(s));
	put(s, "doc", "after", "checkpoint");
	CHECK(ctx_point_create(s, "doc", "later", &v));
	snapshot("points-ckpt-log");
	ctx_close(s);
	snapshot("points-closed");
}

/* Time-to-live and expiry on the fake clock. */
static void scenario_ttl(void)
{
	fresh_work();
	ctx_store *s = open_work(0);
	CHECK(ctx_create(s, "sess/1"));
	CHECK(ctx_create(s, "sess/2"));
	put(s, "sess/1", "token", "abc");
	put(s, "sess/2", "token", "def");
	CHECK(ctx_set_ttl(s, "sess/1", 1000));
	CHECK(ctx_set_ttl(s, "sess/2", 60000));
	snapshot("ttl-open");
	fake_now += 5000000;
	ctx_expire_now(s);
	put(s, "sess/2", "seen", "yes");
	snapshot("ttl-expired");
	ctx_close(s);
	snapshot("ttl-closed");
}

/* Many versions with a short history: checkpoints with delta versions,
 * several checkpoints in a row (each deleting the one before it and the log
 * it covers; the corpus was first built when two generations stayed). */
static void scenario_history(void)
{
	fresh_work();
	ctx_store *s = open_work(3);
	CHECK(ctx_create(s, "h"));
	uint64_t v;
	for (int i = 0; i < 8; i++) {
		char k[16], val[16];
		snprintf(k, sizeof(k), "k%d", i % 3);
		snprintf(val, sizeof(val), "v%d", i);
		put(s, "h", k, val);
		if (i == 4)
			CHECK(ctx_point_create(s, "h", "mid", &v));
		if (i % 3 == 2)
			CHECK(ctx_checkpoint(s));
	}
	CHECK(ctx_del(s, "h", "k0", 2, NULL));
	snapshot("history-open");
	ctx_close(s);
	snapshot("history-closed");
	s = open_work(3);
	put(s, "h", "again", "1");
	snapshot("history-reopened");
	ctx_close(s);
}

/* The version 1 checkpoint the tests keep (format version 1 is still read). */
static void fixture_v1(void)
{
	buf f = {0}, s = {0};
	buf_add(&f, ckpt_v1_bytes, sizeof(ckpt_v1_bytes));
	unsigned char mode = 0;
	buf_add(&s, &mode, 1);
	buf_add(&s, f.p, f.n);
	emit("fuzz_checkpoint", "v1-fixture-raw", &s);
	s.n = 0;
	framed_checkpoint(&f, &s);
	emit("fuzz_checkpoint", "v1-fixture-framed", &s);
	free(f.p);
	free(s.p);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	out_dir = argv[1];
	mkdir(out_dir, 0755);
	snprintf(work, sizeof(work), "%s/ctx-gen-seeds-%d",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
	scenario_commits();
	scenario_points();
	scenario_ttl();
	scenario_history();
	fixture_v1();
	fresh_work();
	return 0;
}
