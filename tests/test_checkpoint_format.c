/*
 * test_checkpoint_format.c - the checkpoint encoding (format version 2) and
 * the loading of older checkpoints.
 *
 *   - a store with every kind of content (data, metadata, deletes, per-key
 *     times, kept and pinned versions, points with labels and checksums, a
 *     time-to-live, last access times, binary and long keys, empty and long
 *     values) comes back exactly from its checkpoint alone;
 *   - the checkpoint is version 2 and has no fixed cost per key: 16 keys of
 *     6 + 64 bytes per context take at most 1.1 times their payload;
 *   - a version 1 checkpoint (tests/ckpt_v1_fixture.h, written by the
 *     version 1 code) still loads, to exactly the state it was written from;
 *   - a checkpoint of an unknown (newer) version is refused, and the message
 *     says which version it is and which ones this build reads.
 *
 * The fixture was made by compiling this file with -DCKPT_FIXTURE_GEN=DIR
 * against the version 1 library (commit 0959377): main then builds the rich
 * store in DIR and prints the header to stdout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef CKPT_FIXTURE_GEN
#include "ckpt_v1_fixture.h"
#include "format.h"
#endif

/* ---- a store with every kind of content ------------------------------------------------ */

#define T0 1700000000000000ull /* the fake clock's start, µs */

static uint64_t fake_clock(void *arg)
{
	return *(uint64_t *)arg;
}

static ctx_store *open_clocked(const char *dir, uint64_t *clock)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.clock_us = fake_clock;
	o.clock_arg = clock;
	o.history_depth = 8;
	ctx_store *s = NULL;
	ctx_status st = ctx_open(&o, &s);
	if (st != CTX_OK)
		fail_msg("ctx_open(%s): %s: %s", dir, ctx_strerror(st), ctx_last_error());
	return s;
}

static void put(ctx_store *s, uint64_t *clock, const char *id, const char *key, const char *val)
{
	*clock += 1234;
	if (ctx_put(s, id, key, strlen(key), val, strlen(val), NULL) != CTX_OK)
		fail_msg("put %s %s: %s", id, key, ctx_last_error());
}

static void build_rich_store(ctx_store *s, uint64_t *clock)
{
	/* Keys sharing long prefixes, metadata, deletes, points, a restore. */
	if (ctx_create(s, "alpha") != CTX_OK)
		fail_msg("create: %s", ctx_last_error());
	char key[64], val[400];
	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof(key), "user:%04d:name", i);
		snprintf(val, sizeof(val), "name number %d", i);
		put(s, clock, "alpha", key, val);
	}
	ctx_txn *t = NULL;
	*clock += 777;
	assert_ok(ctx_txn_begin(s, "alpha", &t));
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "me", 2));
	assert_ok(ctx_txn_meta_put(t, "kind", 4, "", 0));
	assert_ok(ctx_txn_del(t, "user:0003:name", 14));
	assert_ok(ctx_txn_put(t, "user:0004:name", 14, "changed", 7));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	uint64_t pinned = 0;
	*clock += 50;
	assert_ok(ctx_point_create(s, "alpha", "before the storm", &pinned));
	/* Past history_depth (8): the pinned version leaves the chain. */
	for (int i = 0; i < 12; i++) {
		snprintf(key, sizeof(key), "user:%04d:seen", i % 7);
		snprintf(val, sizeof(val), "%d", i);
		put(s, clock, "alpha", key, val);
	}
	*clock += 99;
	assert_ok(ctx_txn_begin(s, "alpha", &t));
	assert_ok(ctx_txn_meta_del(t, "kind", 4));
	assert_ok(ctx_txn_del(t, "user:0005:name", 14));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	*clock += 10;
	assert_ok(ctx_point_create(s, "alpha", NULL, NULL));
	*clock += 10;
	assert_ok(ctx_restore(s, "alpha", pinned, NULL));
	put(s, clock, "alpha", "after", "restore");
	assert_ok(ctx_set_ttl(s, "alpha", 1000ull * 1000 * 1000));

	/* Binary keys, an empty value, long keys and values. */
	assert_ok(ctx_create(s, "beta"));
	*clock += 5;
	assert_ok(ctx_txn_begin(s, "beta", &t));
	assert_ok(ctx_txn_put(t, "\0\0\1", 3, "zeros", 5));
	assert_ok(ctx_txn_put(t, "\0\0", 2, "", 0));
	assert_ok(ctx_txn_put(t, "\xff\xfe", 2, "high", 4));
	memset(key, 'k', sizeof(key));
	memset(val, 'v', sizeof(val));
	assert_ok(ctx_txn_put(t, key, sizeof(key), val, sizeof(val)));
	assert_ok(ctx_txn_put(t, key, 1, val, 200));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	*clock += 5;
	assert_ok(ctx_txn_begin(s, "beta", &t));
	assert_ok(ctx_txn_del(t, "\0\0", 2));
	assert_ok(ctx_txn_put(t, key, 2, val, 130));
	assert_ok(ctx_txn_commit(t, 0, NULL));

	/* Created with its data in one commit. */
	*clock += 5;
	assert_ok(ctx_txn_begin_create(s, "gamma", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "1", 1));
	assert_ok(ctx_txn_put(t, "b", 1, "2", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));

	/* Many small contexts, one of them dropped again, one recreated. */
	for (int i = 0; i < 40; i++) {
		char id[32];
		snprintf(id, sizeof(id), "many-%02d", i);
		*clock += 3;
		assert_ok(ctx_create(s, id));
		for (int k = 0; k < i % 5; k++) {
			snprintf(key, sizeof(key), "key-%02d", k);
			put(s, clock, id, key, "value");
		}
	}
	assert_ok(ctx_drop(s, "many-07"));
	*clock += 3;
	assert_ok(ctx_create(s, "many-08x"));
	assert_ok(ctx_drop(s, "many-09"));
	assert_ok(ctx_create(s, "many-09"));
	put(s, clock, "many-09", "again", "yes");
	*clock += 1000;
}

/* ---- a dump of everything a checkpoint keeps -------------------------------------------- */

typedef struct text {
	char *p;
	size_t n, cap;
} text;

static void add(text *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char line[1024];
	int w = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	assert_true(w >= 0 && (size_t)w < sizeof(line));
	if (b->n + (size_t)w + 1 > b->cap) {
		b->cap = 2 * (b->n + (size_t)w + 1);
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, line, (size_t)w + 1);
	b->n += (size_t)w;
}

static void add_bytes(text *b, const void *p, size_t n)
{
	const unsigned char *c = p;
	if (n > 24) {
		uint64_t h = 1469598103934665603ull;
		for (size_t i = 0; i < n; i++)
			h = (h ^ c[i]) * 1099511628211ull;
		add(b, "<%zu bytes %016llx>", n, (unsigned long long)h);
		return;
	}
	add(b, "'");
	for (size_t i = 0; i < n; i++)
		add(b, c[i] >= 32 && c[i] < 127 && c[i] != '\'' ? "%c" : "\\x%02x", c[i]);
	add(b, "'");
}

typedef struct pair {
	const void *k, *v;
	size_t kl, vl;
} pair;

static int pair_cmp(const void *a, const void *b)
{
	const pair *x = a, *y = b;
	size_t n = x->kl < y->kl ? x->kl : y->kl;
	int c = memcmp(x->k, y->k, n);
	return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
}

static void add_map(text *b, const ctx_state *st, bool meta)
{
	ctx_iter *it = NULL;
	assert_ok(meta ? ctx_iter_meta_begin(st, &it) : ctx_iter_begin(st, &it));
	pair *ps = NULL;
	size_t n = 0;
	pair p;
	while (ctx_iter_next(it, &p.k, &p.kl, &p.v, &p.vl)) {
		ps = realloc(ps, (n + 1) * sizeof(*ps));
		ps[n++] = p;
	}
	if (n > 1)
		qsort(ps, n, sizeof(*ps), pair_cmp);
	for (size_t i = 0; i < n; i++) {
		add(b, "    %s ", meta ? "m" : "k");
		add_bytes(b, ps[i].k, ps[i].kl);
		add(b, " = ");
		add_bytes(b, ps[i].v, ps[i].vl);
		uint64_t when = 0;
		if (!meta && ctx_state_key_time(st, ps[i].k, ps[i].kl, &when))
			add(b, " set %llu", (unsigned long long)when);
		add(b, "\n");
	}
	free(ps);
	ctx_iter_free(it);
}

/* Every context's status, kept versions (with their pairs and key times) and
 * points, in id order. */
static char *dump_all(ctx_store *s)
{
	text b = {0};
	add(&b, "");
	ctx_context_status *cs = NULL;
	size_t n = 0;
	assert_ok(ctx_status_view(s, &cs, &n));
	for (size_t i = 0; i < n; i++) {
		const char *id = cs[i].id;
		add(&b,
		    "ctx '%s' version %llu keys %zu bytes %zu created %llu access %llu ttl %llu "
		    "points %zu\n",
		    id, (unsigned long long)cs[i].version, cs[i].keys, cs[i].bytes,
		    (unsigned long long)cs[i].created_us, (unsigned long long)cs[i].last_access_us,
		    (unsigned long long)cs[i].ttl_ms, cs[i].points);
		ctx_history_entry *h = NULL;
		size_t nh = 0;
		assert_ok(ctx_history(s, id, &h, &nh));
		for (size_t j = 0; j < nh; j++) {
			add(&b, "  v%llu revision %llu time %llu changed %zu%s\n",
			    (unsigned long long)h[j].version, (unsigned long long)h[j].revision,
			    (unsigned long long)h[j].time_us, h[j].keys_changed,
			    h[j].pinned ? " pinned" : "");
			ctx_state *st = NULL;
			assert_ok(ctx_get_at(s, id, h[j].version, &st));
			add_map(&b, st, false);
			add_map(&b, st, true);
			ctx_state_release(st);
		}
		free(h);
		ctx_point *p = NULL;
		size_t np = 0;
		assert_ok(ctx_point_list(s, id, &p, &np));
		for (size_t j = 0; j < np; j++)
			add(&b, "  point v%llu time %llu keys %zu bytes %zu sum %016llx '%s'\n",
			    (unsigned long long)p[j].version, (unsigned long long)p[j].time_us,
			    p[j].keys, p[j].bytes, (unsigned long long)p[j].checksum, p[j].label);
		free(p);
	}
	free(cs);
	return b.p;
}

/* The dump after the reads of a first dump touched what they touch (the
 * last access of contexts with a time-to-live): what a checkpoint taken now
 * holds. */
static char *settled_dump(ctx_store *s)
{
	free(dump_all(s));
	return dump_all(s);
}

#ifdef CKPT_FIXTURE_GEN
/* ---- the fixture generator (see the head comment) --------------------------------------- */

#define STR2(x) #x
#define STR(x)  STR2(x)

int main(void)
{
	const char *dir = STR(CKPT_FIXTURE_GEN);
	uint64_t clock = T0;
	ctx_store *s = open_clocked(dir, &clock);
	build_rich_store(s, &clock);
	char *want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	ctx_close(s);
	char path[4096];
	snprintf(path, sizeof(path), "%s/ckpt-%016llx.ckpt", dir,
	         (unsigned long long)stats.checkpoint_revision);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	printf("/* ckpt_v1_fixture.h - a version 1 checkpoint of test_checkpoint_format.c's\n"
	       " * rich store, written by the version 1 code (commit 0959377), and the dump\n"
	       " * of the store it was written from. Generated; do not edit. */\n");
	printf("#define CKPT_V1_CLOCK %lluull\n", (unsigned long long)clock);
	printf("#define CKPT_V1_REVISION %lluull\n", (unsigned long long)stats.checkpoint_revision);
	printf("static const unsigned char ckpt_v1_bytes[] = {");
	int c;
	for (size_t i = 0; (c = fgetc(f)) != EOF; i++)
		printf("%s0x%02x,", i % 16 ? "" : "\n\t", c);
	printf("\n};\nstatic const char ckpt_v1_dump[] =\n");
	for (const char *p = want; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
		printf("    \"");
		for (size_t i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)p[i];
			if (ch == '\n')
				printf("\\n");
			else if (ch == '"' || ch == '\\')
				printf("\\%c", ch);
			else
				printf("%c", ch);
		}
		printf("\"\n");
		p += len;
	}
	printf("    ;\n");
	fclose(f);
	free(want);
	return 0;
}
#else
/* ---- the tests --------------------------------------------------------------------------- */

static char *only_checkpoint(const char *dir, uint64_t *rev)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	char *name = NULL;
	char path[4096];
	while ((e = readdir(d))) {
		unsigned long long v;
		char tail[8];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (sscanf(e->d_name, "ckpt-%16llx.ckp%1s", &v, tail) == 2) {
			if (!name || v > *rev) {
				free(name);
				name = strdup(path);
				*rev = v;
			}
		}
	}
	closedir(d);
	assert_non_null(name);
	return name;
}

static unsigned char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*n = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *p = malloc(*n + 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, *n, f), *n);
	fclose(f);
	return p;
}

static void spit(const char *dir, uint64_t rev, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/ckpt-%016llx.ckpt", dir, (unsigned long long)rev);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* The newest checkpoint of dir, alone in a fresh directory. */
static char *isolate_checkpoint(const char *dir, const char *name, uint64_t *rev, size_t *size)
{
	char *path = only_checkpoint(dir, rev);
	unsigned char *p = slurp(path, size);
	char *work = test_make_dir(name);
	spit(work, *rev, p, *size);
	free(p);
	free(path);
	return work;
}

static void test_rich_store_round_trip(void **unused)
{
	char *dir = test_make_dir("ckfmt-rich");
	uint64_t clock = T0;
	ctx_store *s = open_clocked(dir, &clock);
	build_rich_store(s, &clock);
	char *want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_close(s);

	uint64_t rev = 0;
	size_t size = 0;
	char *work = isolate_checkpoint(dir, "ckfmt-rich-alone", &rev, &size);
	char path[4096];
	snprintf(path, sizeof(path), "%s/ckpt-%016llx.ckpt", work, (unsigned long long)rev);
	size_t n = 0;
	unsigned char *p = slurp(path, &n);
	assert_int_equal(get_u32(p + 8), CKPT_FORMAT_VERSION);
	assert_int_equal(CKPT_FORMAT_VERSION, 2);
	free(p);

	s = open_clocked(work, &clock);
	char *got = dump_all(s);
	test_expect_same_dump(want, got, "the checkpoint alone");
	/* And once more through a checkpoint written from the loaded state. */
	assert_ok(ctx_put(s, "gamma", "c", 1, "3", 1, NULL));
	free(want);
	want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_close(s);
	char *again = isolate_checkpoint(work, "ckfmt-rich-again", &rev, &size);
	s = open_clocked(again, &clock);
	free(got);
	got = dump_all(s);
	test_expect_same_dump(want, got, "a checkpoint of a loaded store");
	ctx_close(s);
	free(got);
	free(want);
	test_remove_dir(again);
	test_remove_dir(work);
	test_remove_dir(dir);
	free(again);
	free(work);
	free(dir);
}

/* What ctxbench memory stores: 16 keys "key-00".."key-15" per context with
 * 64-byte values (random here, so that nothing is saved by repetition). */
static void test_bytes_per_key(void **unused)
{
	char *dir = test_make_dir("ckfmt-size");
	uint64_t clock = T0;
	ctx_store *s = open_clocked(dir, &clock);
	enum { NCTX = 2000, NKEYS = 16, VLEN = 64 };
	uint64_t r = test_seed("checkpoint bytes per key", 0xb17e);
	for (int i = 0; i < NCTX; i++) {
		char id[16], key[8];
		unsigned char val[VLEN];
		snprintf(id, sizeof(id), "ctx-%05d", i);
		clock += 1000;
		assert_ok(ctx_create(s, id));
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(s, id, &t));
		for (int k = 0; k < NKEYS; k++) {
			snprintf(key, sizeof(key), "key-%02d", k);
			for (int j = 0; j < VLEN; j++)
				val[j] = (unsigned char)test_rand(&r);
			assert_ok(ctx_txn_put(t, key, 6, val, VLEN));
		}
		clock += 1000;
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
	char *want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_close(s);
	uint64_t rev = 0;
	size_t size = 0;
	char *work = isolate_checkpoint(dir, "ckfmt-size-alone", &rev, &size);
	double per_key = (double)size / (NCTX * NKEYS), payload = 6 + VLEN;
	print_message("checkpoint: %zu bytes, %.1f per key of %.0f payload bytes (%.2fx)\n", size,
	              per_key, payload, per_key / payload);
	/* Version 1 took 97.4 bytes per key here (1.39x). */
	assert_true(per_key <= 1.1 * payload);
	s = open_clocked(work, &clock);
	char *got = dump_all(s);
	test_expect_same_dump(want, got, "the bytes-per-key store");
	ctx_close(s);
	free(got);
	free(want);
	test_remove_dir(work);
	test_remove_dir(dir);
	free(work);
	free(dir);
}

static void test_version_1_loads(void **unused)
{
	char *dir = test_make_dir("ckfmt-v1");
	assert_int_equal(get_u32(ckpt_v1_bytes + 8), 1);
	spit(dir, CKPT_V1_REVISION, ckpt_v1_bytes, sizeof(ckpt_v1_bytes));
	uint64_t clock = CKPT_V1_CLOCK;
	ctx_verify_report rep;
	assert_ok(ctx_verify(dir, &rep));
	assert_int_equal(rep.checkpoints_damaged, 0);
	ctx_store *s = open_clocked(dir, &clock);
	char *got = dump_all(s);
	test_expect_same_dump(ckpt_v1_dump, got, "a version 1 checkpoint");
	free(got);
	/* The next checkpoint is written in version 2, and holds the same. */
	assert_ok(ctx_put(s, "gamma", "c", 1, "3", 1, NULL));
	char *want = settled_dump(s);
	assert_ok(ctx_checkpoint(s));
	ctx_close(s);
	uint64_t rev = 0;
	size_t size = 0;
	char *work = isolate_checkpoint(dir, "ckfmt-v1-then-v2", &rev, &size);
	assert_true(rev > CKPT_V1_REVISION);
	assert_true(size < sizeof(ckpt_v1_bytes));
	s = open_clocked(work, &clock);
	got = dump_all(s);
	test_expect_same_dump(want, got, "version 2 written after loading version 1");
	ctx_close(s);
	free(got);
	free(want);
	test_remove_dir(work);
	test_remove_dir(dir);
	free(work);
	free(dir);
}

/* A newer version than this build knows: refused, and the message says so. */
static void test_unknown_version_refused(void **unused)
{
	char *dir = test_make_dir("ckfmt-v3");
	unsigned char *p = malloc(sizeof(ckpt_v1_bytes));
	memcpy(p, ckpt_v1_bytes, sizeof(ckpt_v1_bytes));
	put_u32(p + 8, 3);
	put_u32(p + 28, crc32c(0, p, 28));
	spit(dir, CKPT_V1_REVISION, p, sizeof(ckpt_v1_bytes));
	free(p);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	assert_int_equal(ctx_open(&o, &s), CTX_CORRUPT);
	const char *msg = ctx_last_error();
	print_message("%s\n", msg);
	assert_non_null(strstr(msg, "format version 3"));
	assert_non_null(strstr(msg, "reads versions 1 and 2"));
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rich_store_round_trip),
	    cmocka_unit_test(test_bytes_per_key),
	    cmocka_unit_test(test_version_1_loads),
	    cmocka_unit_test(test_unknown_version_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
