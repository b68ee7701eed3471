/*
 * test_review8_recovery.c - round 8 review: log format 2 (round 7: varint
 * record headers, the record's time as a difference from the segment's
 * previous one, one CRC over body and header) against what test_damage.c
 * does not try:
 *   - a clock that jumps back, to 0, past 2^63 and to 2^64 - 1: every
 *     creation, commit, restore and per-key time replays exactly from the
 *     log (the deltas are negative or overflow int64; they must round-trip);
 *   - records with valid checksums whose header varints are too long (11
 *     bytes), whose body length is beyond any file (2^40) or past
 *     REC_MAX_BODY, or whose 10-byte varints carry bits above 64: the first
 *     two are an unsynced tail (cut, the store opens with everything before
 *     them), none crashes or allocates by what it claims;
 *   - a record whose time delta takes the segment's time chain below zero:
 *     replayed as the writer would have written it (the chain is modulo
 *     2^64), never a crash;
 *   - bodies whose key or value length varint is 2^64 - 1, or whose lengths
 *     add past 2^64: CTX_CORRUPT naming the record's offset (malformed
 *     behind a valid checksum), never a read out of bounds.
 * Crash images are copies of the log taken while the store is open, after
 * its commits returned (durability always: they are synced), so the log
 * alone holds the history.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "crc32c.h"
#include "format.h"

static atomic_uint_fast64_t clock_now;
static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load(&clock_now);
}

static ctx_options opts(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.clock_us = fake_clock;
	o.reaper_ms = 1000000;
	o.log_prealloc_bytes = 1; /* records appended: the file ends where they do */
	return o;
}

static const char *seg1 = "wal-0000000000000001.log";

/* The newest segment of an open store's dir, read whole. */
static unsigned char *read_segment(const char *dir, size_t *size)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, seg1);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc((size_t)n + 1);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*size = (size_t)n;
	return b;
}

/* A directory holding only this segment. */
static void stage(const char *dir, const unsigned char *seg, size_t n)
{
	char cmd[1200], path[1024];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, seg1);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(seg, 1, n, f), n);
	fclose(f);
}

/* ---- a wild clock --------------------------------------------------------------------- */

static void step(uint64_t t)
{
	atomic_store(&clock_now, t);
}

/* Version v of "a": its commit time and the times of keys k0..k2. */
static void version_times(ctx_store *s, uint64_t v, uint64_t *t, uint64_t k[3], bool has[3])
{
	ctx_state *st;
	assert_ok(ctx_get_at(s, "a", v, &st));
	*t = ctx_state_updated_us(st);
	for (int i = 0; i < 3; i++) {
		char key[4] = {'k', (char)('0' + i), 0};
		k[i] = 0;
		has[i] = ctx_state_key_time(st, key, 2, &k[i]);
	}
	ctx_state_release(st);
}

static void test_wild_clock_replays_exactly(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("review8_clock");
	char *copy = test_make_dir("review8_clock_copy");
	ctx_options o = opts(dir);
	ctx_store *s;
	step(1000);
	assert_ok(ctx_open(&o, &s));
	static const uint64_t times[] = {
	    5, (1ull << 63) + 7, 3, UINT64_MAX, 0, UINT64_MAX - 1, 1ull << 62, 1ull << 63, 1, 42};
	enum { NT = sizeof(times) / sizeof(times[0]) };
	step(times[0]);
	assert_ok(ctx_create(s, "a"));
	for (size_t i = 1; i < NT; i++) {
		step(times[i]);
		char k[8], v[16];
		snprintf(k, sizeof(k), "k%zu", i % 3);
		snprintf(v, sizeof(v), "v%zu", i);
		assert_ok(ctx_put(s, "a", k, strlen(k), v, strlen(v), NULL));
		if (i == 4) { /* a create with data, at a time below the last */
			ctx_txn *t;
			assert_ok(ctx_txn_begin_create(s, "b", &t));
			assert_ok(ctx_txn_put(t, "x", 1, "y", 1));
			assert_ok(ctx_txn_commit(t, 0, NULL));
		}
		if (i == 6) /* a restore: its ops keep the times the values were set */
			assert_ok(ctx_restore(s, "a", 3, NULL));
		if (i == 7)
			assert_ok(ctx_point_create(s, "a", "p", NULL));
	}
	char *want = test_dump_store(s, true, NULL);
	/* Every version's time and every key's, not only the newest's. */
	uint64_t head, vt[64], kt[64][3];
	bool has[64][3];
	{
		ctx_state *st;
		assert_ok(ctx_get(s, "a", &st));
		head = ctx_state_version(st);
		ctx_state_release(st);
		assert_true(head < 64);
		for (uint64_t v = 1; v <= head; v++)
			version_times(s, v, &vt[v], kt[v], has[v]);
	}
	size_t n;
	unsigned char *seg = read_segment(dir, &n);
	ctx_close(s);
	stage(copy, seg, n);
	ctx_verify_report r;
	assert_ok(ctx_verify(copy, &r));
	assert_int_equal(r.torn_bytes, 0);
	o.dir = copy;
	assert_ok(ctx_open(&o, &s));
	char *got = test_dump_store(s, true, NULL);
	test_expect_same_dump(want, got, "replayed from the log with a wild clock");
	for (uint64_t v = 1; v <= head; v++) {
		uint64_t t, k[3];
		bool h[3];
		version_times(s, v, &t, k, h);
		if (t != vt[v])
			fail_msg("version %llu: updated_us %llu after replay, %llu before",
			         (unsigned long long)v, (unsigned long long)t,
			         (unsigned long long)vt[v]);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(h[i], has[v][i]);
			if (h[i] && k[i] != kt[v][i])
				fail_msg(
				    "version %llu key k%d: time %llu after replay, %llu before",
				    (unsigned long long)v, i, (unsigned long long)k[i],
				    (unsigned long long)kt[v][i]);
		}
	}
	/* The per-key times too (the dump has the versions' times). */
	ctx_state *st;
	assert_ok(ctx_get(s, "a", &st));
	assert_int_equal(ctx_state_created_us(st), times[0]);
	assert_int_equal(ctx_state_updated_us(st), times[NT - 1]);
	ctx_state_release(st);
	ctx_close(s);
	free(want);
	free(got);
	free(seg);
	test_remove_dir(dir);
	test_remove_dir(copy);
	free(dir);
	free(copy);
}

/* ---- crafted records ---------------------------------------------------------------- */

/* The base log: "c" created (revision 1, incarnation 1) and one put
 * (revision 2, version 2), at times 1000 and 2000. */
typedef struct base_log {
	unsigned char *seg;
	size_t n;
	char *work;
} base_log;

static void base_make(base_log *b)
{
	char *dir = test_make_dir("review8_crafted");
	b->work = test_make_dir("review8_crafted_work");
	ctx_options o = opts(dir);
	ctx_store *s;
	step(1000);
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "c"));
	step(2000);
	assert_ok(ctx_put(s, "c", "k", 1, "v", 1, NULL));
	b->seg = read_segment(dir, &b->n);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void base_free(base_log *b)
{
	free(b->seg);
	test_remove_dir(b->work);
	free(b->work);
}

/* A commit body for "c": one put of key (klen stated) and val (vlen stated). */
static size_t body_put(unsigned char *b, uint64_t klen, uint64_t vlen, const char *key,
                       const char *val)
{
	put_u16(b, 1);
	b[2] = 'c';
	size_t p = 3;
	p += put_uv(b + p, 1);
	b[p++] = OP_PUT_CODE;
	p += put_uv(b + p, klen);
	p += put_uv(b + p, vlen);
	memcpy(b + p, key, strlen(key));
	p += strlen(key);
	memcpy(b + p, val, strlen(val));
	return p + strlen(val);
}

/* A raw header: crc (of body and header bytes 4..), type, then `fields`
 * (already encoded varints, nf bytes). */
static size_t raw_record(unsigned char *out, uint8_t type, const unsigned char *fields, size_t nf,
                         const unsigned char *body, size_t blen)
{
	out[4] = type;
	memcpy(out + 5, fields, nf);
	put_u32(out, crc32c(crc32c(0, body, blen), out + 4, 1 + nf));
	memcpy(out + 5 + nf, body, blen);
	return 5 + nf + blen;
}

/* The base log with rec appended, staged in b->work. */
static void stage_with(base_log *b, const unsigned char *rec, size_t len)
{
	unsigned char *buf = malloc(b->n + len);
	memcpy(buf, b->seg, b->n);
	memcpy(buf + b->n, rec, len);
	stage(b->work, buf, b->n + len);
	free(buf);
}

/* verify and open agree: OK with revision `last` (torn or not), or
 * CTX_CORRUPT naming the record's offset. Returns the status. */
static ctx_status check(base_log *b, const char *what, ctx_status want, uint64_t last, bool torn)
{
	ctx_verify_report r;
	ctx_status v = ctx_verify(b->work, &r);
	if (v != want)
		fail_msg("%s: verify %s (%s), want %s", what, ctx_strerror(v), r.message,
		         ctx_strerror(want));
	char off[32];
	snprintf(off, sizeof(off), "%zu", b->n);
	if (want == CTX_CORRUPT && !strstr(r.message, off))
		fail_msg("%s: the message does not name offset %s: %s", what, off, r.message);
	if (want == CTX_OK) {
		assert_int_equal(r.last_revision, last);
		assert_int_equal(r.torn_bytes > 0, torn);
	}
	ctx_options o = opts(b->work);
	ctx_store *s = NULL;
	ctx_status os = ctx_open(&o, &s);
	if (os != want)
		fail_msg("%s: open %s (%s), want %s", what, ctx_strerror(os), ctx_last_error(),
		         ctx_strerror(want));
	if (os == CTX_OK) {
		ctx_stats stats;
		ctx_get_stats(s, &stats);
		assert_int_equal(stats.revision, last);
		ctx_close(s);
	}
	return v;
}

/* The header fields of a COMMIT (or RESTORE) record after its type: body
 * length, revision 3, version 3, incarnation 1, and the time as a zigzag
 * difference from the previous record's. Their bytes. */
static size_t commit_fields(unsigned char *f, uint64_t body_len, int64_t delta)
{
	size_t nf = put_uv(f, body_len);
	nf += put_uv(f + nf, 3);
	nf += put_uv(f + nf, 3);
	nf += put_uv(f + nf, 1);
	return nf + put_uv(f + nf, zigzag(delta));
}

static void test_crafted_v2_records(void **unused)
{
	(void)unused;
	base_log b;
	base_make(&b);
	unsigned char body[256], rec[512], f[64];
	size_t bl, nf;

	/* An 11-byte varint for the body length: no record (header too long). */
	bl = body_put(body, 1, 1, "k", "w");
	nf = 0;
	for (int i = 0; i < 10; i++)
		f[nf++] = 0x80;
	f[nf++] = 0x01;
	nf += put_uv(f + nf, 3); /* revision */
	nf += put_uv(f + nf, 3); /* version */
	nf += put_uv(f + nf, 1); /* incarnation */
	nf += put_uv(f + nf, zigzag(1000));
	stage_with(&b, rec, raw_record(rec, REC_COMMIT, f, nf, body, bl));
	check(&b, "11-byte varint", CTX_OK, 2, true);

	/* A body length of 2^40 (nothing that size follows). */
	nf = commit_fields(f, 1ull << 40, 1000);
	stage_with(&b, rec, raw_record(rec, REC_COMMIT, f, nf, body, bl));
	check(&b, "body length 2^40", CTX_OK, 2, true);

	/* A body length just past REC_MAX_BODY, and UINT64_MAX. */
	nf = commit_fields(f, (uint64_t)REC_MAX_BODY + 1, 1000);
	stage_with(&b, rec, raw_record(rec, REC_COMMIT, f, nf, body, bl));
	check(&b, "body length past REC_MAX_BODY", CTX_OK, 2, true);
	nf = commit_fields(f, UINT64_MAX, 1000);
	stage_with(&b, rec, raw_record(rec, REC_COMMIT, f, nf, body, bl));
	check(&b, "body length 2^64-1", CTX_OK, 2, true);

	/* A time delta taking the chain below zero (2000 - 2001 = 2^64 - 1):
	 * what a writer whose clock read 2^64 - 1 writes. */
	nf = commit_fields(f, bl, -2001);
	stage_with(&b, rec, raw_record(rec, REC_COMMIT, f, nf, body, bl));
	check(&b, "time chain below zero", CTX_OK, 3, false);
	{
		ctx_options o = opts(b.work);
		ctx_store *s;
		stage_with(&b, rec, raw_record(rec, REC_COMMIT, f, nf, body, bl));
		assert_ok(ctx_open(&o, &s));
		ctx_state *st;
		assert_ok(ctx_get(s, "c", &st));
		assert_int_equal(ctx_state_version(st), 3);
		assert_int_equal(ctx_state_updated_us(st), UINT64_MAX);
		uint64_t kt = 0;
		assert_true(ctx_state_key_time(st, "k", 1, &kt));
		assert_int_equal(kt, UINT64_MAX);
		ctx_state_release(st);
		ctx_close(s);
	}

	/* The most negative delta zigzag can say (INT64_MIN). */
	nf = commit_fields(f, bl, INT64_MIN);
	stage_with(&b, rec, raw_record(rec, REC_COMMIT, f, nf, body, bl));
	check(&b, "time delta INT64_MIN", CTX_OK, 3, false);

	/* 10-byte varints whose last byte carries bits past 64 (the writer
	 * never writes them): not a value read modulo 2^64 but a header that
	 * does not parse, so no record: the tail is cut there, as for the
	 * 11-byte varint. */
	nf = put_uv(f, bl);
	{
		uint64_t v = 3;
		for (int i = 0; i < 9; i++, v >>= 7)
			f[nf++] = (unsigned char)((v & 0x7f) | 0x80);
		f[nf++] = 0x7e; /* bits 63..69: 0 then ones past 64 */
	}
	nf += put_uv(f + nf, 3);
	nf += put_uv(f + nf, 1);
	nf += put_uv(f + nf, zigzag(1000));
	stage_with(&b, rec, raw_record(rec, REC_COMMIT, f, nf, body, bl));
	check(&b, "overlong 10-byte revision", CTX_OK, 2, true);

	/* The largest 10-byte varint the writer can write (2^64 - 1: a tenth
	 * byte of 1) still parses. */
	{
		unsigned char u[UV_MAX];
		uint64_t got = 0;
		size_t n = put_uv(u, UINT64_MAX);
		assert_int_equal(n, UV_MAX);
		assert_int_equal(u[UV_MAX - 1], 1);
		assert_int_equal(get_uv(u, n, &got), UV_MAX);
		assert_true(got == UINT64_MAX);
		u[UV_MAX - 1] = 2;
		assert_int_equal(get_uv(u, n, &got), 0);
	}

	/* Bodies malformed behind a valid checksum: key or value length
	 * 2^64 - 1, lengths whose sum wraps past 2^64, an op count of 2^64 - 1. */
	static const struct {
		const char *what;
		uint64_t klen, vlen;
	} bad[] = {
	    {"key length 2^64-1", UINT64_MAX, 1},
	    {"value length 2^64-1", 1, UINT64_MAX},
	    {"key + value lengths wrap 2^64", 1ull << 63, 1ull << 63},
	    {"value length 2^32 + 1", 1, (1ull << 32) + 1},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bl = body_put(body, bad[i].klen, bad[i].vlen, "k", "w");
		nf = commit_fields(f, bl, 1000);
		stage_with(&b, rec, raw_record(rec, REC_COMMIT, f, nf, body, bl));
		check(&b, bad[i].what, CTX_CORRUPT, 0, false);
	}
	/* The same lengths in a CREATE with data (its own parser path). */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t p = 0;
		put_u16(body, 1);
		body[2] = 'd';
		p = 3;
		p += put_uv(body + p, 1);
		body[p++] = OP_PUT_CODE;
		p += put_uv(body + p, bad[i].klen);
		p += put_uv(body + p, bad[i].vlen);
		body[p++] = 'k';
		body[p++] = 'w';
		nf = put_uv(f, p);
		nf += put_uv(f + nf, 3);
		nf += put_uv(f + nf, 1); /* version 1; no incarnation for CREATE */
		nf += put_uv(f + nf, zigzag(1000));
		stage_with(&b, rec, raw_record(rec, REC_CREATE, f, nf, body, p));
		check(&b, bad[i].what, CTX_CORRUPT, 0, false);
	}
	/* A RESTORE whose per-key time varint is 2^64 - 1 (10 bytes): a time,
	 * not a length: replayed (updated - unzigzag wraps), never a crash. */
	bl = body_put(body, 1, 1, "k", "w");
	bl += put_uv(body + bl, UINT64_MAX);
	nf = commit_fields(f, bl, 1000);
	stage_with(&b, rec, raw_record(rec, REC_RESTORE, f, nf, body, bl));
	{
		ctx_verify_report r;
		ctx_status v = ctx_verify(b.work, &r);
		assert_true(v == CTX_OK || v == CTX_CORRUPT);
		check(&b, "restore time 2^64-1", v, v == CTX_OK ? r.last_revision : 0,
		      v == CTX_OK && r.torn_bytes > 0);
	}
	base_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wild_clock_replays_exactly),
	    cmocka_unit_test(test_crafted_v2_records),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
