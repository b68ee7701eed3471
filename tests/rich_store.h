/*
 * rich_store.h - a store with every kind of content (data, metadata, deletes,
 * per-key times, kept and pinned versions, points with labels and checksums,
 * a time-to-live, last access times, binary and long keys, empty and long
 * values) on a fake clock, and a text dump of everything a checkpoint or a
 * log replay must bring back. Shared by test_checkpoint_format.c and
 * test_log_format.c (and their fixture generators, built against older
 * libraries: keep it to the public header). Each includer defines its own
 * open_clocked(dir, clock): rich_options and what it adds to them.
 */
#ifndef CTX_TESTS_RICH_STORE_H
#define CTX_TESTS_RICH_STORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define RICH_UNUSED __attribute__((unused))

#define T0 1700000000000000ull /* the fake clock's start, µs */

/* The store's background threads (the expiry reaper, kicked by the first
 * time-to-live) read the clock while the test moves it: atomics. */
static RICH_UNUSED uint64_t fake_clock(void *arg)
{
	return __atomic_load_n((uint64_t *)arg, __ATOMIC_RELAXED);
}

static RICH_UNUSED void clock_add(uint64_t *clock, uint64_t us)
{
	__atomic_fetch_add(clock, us, __ATOMIC_RELAXED);
}

/* The options both includers start from: a store in dir on the fake clock
 * at *clock, keeping 8 versions per context. */
static RICH_UNUSED void rich_options(ctx_options *o, const char *dir, uint64_t *clock)
{
	ctx_options_init(o);
	o->dir = dir;
	o->clock_us = fake_clock;
	o->clock_arg = clock;
	o->history_depth = 8;
}

static RICH_UNUSED void put(ctx_store *s, uint64_t *clock, const char *id, const char *key,
                            const char *val)
{
	clock_add(clock, 1234);
	if (ctx_put(s, id, key, strlen(key), val, strlen(val), NULL) != CTX_OK)
		fail_msg("put %s %s: %s", id, key, ctx_last_error());
}

static RICH_UNUSED void build_rich_store(ctx_store *s, uint64_t *clock)
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
	clock_add(clock, 777);
	assert_ok(ctx_txn_begin(s, "alpha", &t));
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "me", 2));
	assert_ok(ctx_txn_meta_put(t, "kind", 4, "", 0));
	assert_ok(ctx_txn_del(t, "user:0003:name", 14));
	assert_ok(ctx_txn_put(t, "user:0004:name", 14, "changed", 7));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	uint64_t pinned = 0;
	clock_add(clock, 50);
	assert_ok(ctx_point_create(s, "alpha", "before the storm", &pinned));
	/* Past history_depth (8): the pinned version leaves the chain. */
	for (int i = 0; i < 12; i++) {
		snprintf(key, sizeof(key), "user:%04d:seen", i % 7);
		snprintf(val, sizeof(val), "%d", i);
		put(s, clock, "alpha", key, val);
	}
	clock_add(clock, 99);
	assert_ok(ctx_txn_begin(s, "alpha", &t));
	assert_ok(ctx_txn_meta_del(t, "kind", 4));
	assert_ok(ctx_txn_del(t, "user:0005:name", 14));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	clock_add(clock, 10);
	assert_ok(ctx_point_create(s, "alpha", NULL, NULL));
	clock_add(clock, 10);
	assert_ok(ctx_restore(s, "alpha", pinned, NULL));
	put(s, clock, "alpha", "after", "restore");
	assert_ok(ctx_set_ttl(s, "alpha", 1000ull * 1000 * 1000));

	/* Binary keys, an empty value, long keys and values. */
	assert_ok(ctx_create(s, "beta"));
	clock_add(clock, 5);
	assert_ok(ctx_txn_begin(s, "beta", &t));
	assert_ok(ctx_txn_put(t, "\0\0\1", 3, "zeros", 5));
	assert_ok(ctx_txn_put(t, "\0\0", 2, "", 0));
	assert_ok(ctx_txn_put(t, "\xff\xfe", 2, "high", 4));
	memset(key, 'k', sizeof(key));
	memset(val, 'v', sizeof(val));
	assert_ok(ctx_txn_put(t, key, sizeof(key), val, sizeof(val)));
	assert_ok(ctx_txn_put(t, key, 1, val, 200));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	clock_add(clock, 5);
	assert_ok(ctx_txn_begin(s, "beta", &t));
	assert_ok(ctx_txn_del(t, "\0\0", 2));
	assert_ok(ctx_txn_put(t, key, 2, val, 130));
	assert_ok(ctx_txn_commit(t, 0, NULL));

	/* Created with its data in one commit. */
	clock_add(clock, 5);
	assert_ok(ctx_txn_begin_create(s, "gamma", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "1", 1));
	assert_ok(ctx_txn_put(t, "b", 1, "2", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));

	/* Many small contexts, one of them dropped again, one recreated. */
	for (int i = 0; i < 40; i++) {
		char id[32];
		snprintf(id, sizeof(id), "many-%02d", i);
		clock_add(clock, 3);
		assert_ok(ctx_create(s, id));
		for (int k = 0; k < i % 5; k++) {
			snprintf(key, sizeof(key), "key-%02d", k);
			put(s, clock, id, key, "value");
		}
	}
	assert_ok(ctx_drop(s, "many-07"));
	clock_add(clock, 3);
	assert_ok(ctx_create(s, "many-08x"));
	assert_ok(ctx_drop(s, "many-09"));
	assert_ok(ctx_create(s, "many-09"));
	put(s, clock, "many-09", "again", "yes");
	clock_add(clock, 1000);
}

/* ---- a dump of everything a checkpoint keeps -------------------------------------------- */

typedef struct text {
	char *p;
	size_t n, cap;
} text;

static RICH_UNUSED void add(text *b, const char *fmt, ...)
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

static RICH_UNUSED void add_bytes(text *b, const void *p, size_t n)
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

static RICH_UNUSED int pair_cmp(const void *a, const void *b)
{
	const pair *x = a, *y = b;
	size_t n = x->kl < y->kl ? x->kl : y->kl;
	int c = memcmp(x->k, y->k, n);
	return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
}

static RICH_UNUSED void add_map(text *b, const ctx_state *st, bool meta)
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
static RICH_UNUSED char *dump_all(ctx_store *s)
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
static RICH_UNUSED char *settled_dump(ctx_store *s)
{
	free(dump_all(s));
	return dump_all(s);
}

/* ---- the fixture generators' output (see the includers' head comments) ------------------ */

/* A file's bytes as a C array named `name`, 16 to a line. */
static RICH_UNUSED void rich_print_bytes(const char *name, const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	printf("static const unsigned char %s[] = {", name);
	int c;
	for (size_t i = 0; (c = fgetc(f)) != EOF; i++)
		printf("%s0x%02x,", i % 16 ? "" : "\n\t", c);
	printf("\n};\n");
	fclose(f);
}

/* A dump as a C string literal named `name`, one line of the dump a line. */
static RICH_UNUSED void rich_print_text(const char *name, const char *dump)
{
	printf("static const char %s[] =\n", name);
	for (const char *p = dump; *p;) {
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
}

#endif
