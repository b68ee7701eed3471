/*
 * test_r10_batch.c - what round 10's cheaper checkpoint writing could break
 * (checkpoint.c: sort keys past the shared prefix, inline version lists,
 * versions released right after their section, prefetching; store.c:
 * store_collect's window of prefetched contexts).
 *
 *   - contexts of every size (0, 1, a few, around the insertion-sort bound
 *     of 16, past the inline list of 4 kept versions, with versions only a
 *     point pins, 20,000 keys) and keys that stress the sort key (keys that
 *     are prefixes of each other, zero and 0xff bytes, a long shared prefix,
 *     keys equal in the 8 bytes after it, a short key whose value goes on
 *     like the longer keys) are written to a checkpoint, which
 *     reads back intact (the read-back refuses keys out of order), and come
 *     back from that checkpoint alone exactly: every kept version of every
 *     context, its data, its metadata and its points;
 *   - deltas (versions after the first: puts and deletes, more than 16 of
 *     them) keep their order and content too;
 *   - a second checkpoint, of the store loaded from the first, is the same
 *     again (nothing lost by releasing versions early);
 *   - store_collect (through the checkpoint and ctx_expire_now) sees every
 *     context of a store of more than its window, and of fewer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	o.history_depth = 8;
	o.checkpoint_bytes = (size_t)1 << 40; /* only ctx_checkpoint writes one */
	return test_open(&o);
}

static void put_pairs(ctx_store *s, const char *id, bool create, size_t n,
                      void (*key_of)(size_t i, unsigned char *k, size_t *klen), unsigned tag)
{
	ctx_txn *t = NULL;
	assert_ok(create ? ctx_txn_begin_create(s, id, &t) : ctx_txn_begin(s, id, &t));
	for (size_t i = 0; i < n; i++) {
		unsigned char k[128];
		size_t klen = 0;
		key_of(i, k, &klen);
		char v[32];
		int vlen = snprintf(v, sizeof(v), "v%zu.%u", i, tag);
		assert_ok(ctx_txn_put(t, k, klen, v, (size_t)vlen));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

static void key_plain(size_t i, unsigned char *k, size_t *klen)
{
	*klen = (size_t)snprintf((char *)k, 64, "key-%zu", i * 2654435761u % 1000003);
}

/* Keys that share 30 bytes, then often the same 8 more, and differ after. */
static void key_long_prefix(size_t i, unsigned char *k, size_t *klen)
{
	memset(k, 'P', 30);
	memcpy(k + 30, (i & 1) ? "SAMEPART" : "SAMEPARX", 8);
	*klen = 38 + (size_t)snprintf((char *)k + 38, 64, "%zu", i * 7919 % 10007);
}

/* Binary keys: zero and 0xff bytes, lengths 1 to 12, a shorter key a prefix
 * of longer ones. */
static void key_binary(size_t i, unsigned char *k, size_t *klen)
{
	uint64_t x = i * 0x9E3779B97F4A7C15ull;
	size_t n = 1 + i % 12;
	for (size_t j = 0; j < n; j++) {
		unsigned b = (unsigned)(x >> (j * 5 % 56)) & 0xff;
		k[j] = j % 3 == 0 ? (unsigned char)(b & 1 ? 0xff : 0x00) : (unsigned char)b;
	}
	k[n - 1] = (unsigned char)i; /* distinct within a length */
	k[0] = (unsigned char)(i >> 8);
	*klen = n;
}

static const char *const prefix_keys[] = {"p",         "p\x01",     "pp",       "p\xff",
                                          "p\xff\xff", "ppppppppp", "pppppppp", "ppppppppq",
                                          "q",         "\x01",      "\xff"};

static void put_prefix_keys(ctx_store *s, const char *id)
{
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin_create(s, id, &t));
	for (size_t i = 0; i < sizeof(prefix_keys) / sizeof(*prefix_keys); i++)
		assert_ok(ctx_txn_put(t, prefix_keys[i], strlen(prefix_keys[i]), "x", 1));
	/* Keys with zero bytes: "p", "p\0", "p\0\0" tie on their sort key. */
	assert_ok(ctx_txn_put(t, "p\0", 2, "z1", 2));
	assert_ok(ctx_txn_put(t, "p\0\0", 3, "z2", 2));
	assert_ok(ctx_txn_put(t, "p\0\0\0\0\0\0\0\0\0", 10, "z3", 2));
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "me", 2));
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

/* A short key whose value continues it as the long keys do: the prefix the
 * keys share ends with the short key, not in its value. */
static void put_short_key(ctx_store *s, const char *id)
{
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin_create(s, id, &t));
	assert_ok(ctx_txn_put(t, "a", 1, "bcdefghijklmnop", 15));
	for (int i = 0; i < 40; i++) {
		char k[32];
		int n = snprintf(k, sizeof(k), "abcdefghijklmnop%d", i);
		assert_ok(ctx_txn_put(t, k, (size_t)n, "bcdefghijklmnop", 15));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

/* A context whose versions are more than the inline list holds, with
 * deltas of puts and deletes (more than 16 changes: the quicksort), and
 * versions only points pin (out of the history chain). */
static void build_history(ctx_store *s, const char *id)
{
	put_pairs(s, id, true, 40, key_plain, 0);
	assert_ok(ctx_point_create(s, id, "first", NULL));
	for (unsigned r = 1; r <= 14; r++) {
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(s, id, &t));
		for (size_t i = 0; i < 25; i++) {
			unsigned char k[64];
			size_t klen;
			key_plain(i * 3 + r, k, &klen);
			char v[32];
			int vlen = snprintf(v, sizeof(v), "r%u.%zu", r, i);
			if ((i + r) % 4 == 0)
				assert_ok(ctx_txn_del(t, k, klen));
			else
				assert_ok(ctx_txn_put(t, k, klen, v, (size_t)vlen));
		}
		char m[16];
		int mlen = snprintf(m, sizeof(m), "m%u", r);
		assert_ok(ctx_txn_meta_put(t, "round", 5, m, (size_t)mlen));
		assert_ok(ctx_txn_commit(t, 0, NULL));
		if (r == 3)
			assert_ok(ctx_point_create(s, id, "third", NULL));
	}
}

/* Every kept version of every context of ids: version, revision, keys
 * changed, pinned, and its pairs and metadata in key order. */
static int cmp_lines(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void dump_map(test_buf *b, const ctx_state *st, bool meta)
{
	ctx_iter_stack it;
	assert_ok(meta ? ctx_iter_meta_init(&it, st) : ctx_iter_init(&it, st));
	size_t n = 0, cap = 64;
	char **lines = malloc(cap * sizeof(*lines));
	const void *k, *v;
	size_t kl, vl;
	while (ctx_iter_stack_next(&it, &k, &kl, &v, &vl)) {
		test_buf line = {0};
		for (size_t i = 0; i < kl; i++)
			test_buf_printf(&line, "%02x", ((const unsigned char *)k)[i]);
		test_buf_add(&line, "=", 1);
		test_buf_add(&line, v, vl);
		if (n == cap)
			lines = realloc(lines, (cap *= 2) * sizeof(*lines));
		lines[n++] = line.p;
	}
	qsort(lines, n, sizeof(*lines), cmp_lines);
	test_buf_printf(b, " %s %zu\n", meta ? "meta" : "data", n);
	for (size_t i = 0; i < n; i++) {
		test_buf_printf(b, "  %s\n", lines[i]);
		free(lines[i]);
	}
	free(lines);
}

static char *dump_history(ctx_store *s, const char *const *ids, size_t nids)
{
	test_buf b = {0};
	for (size_t i = 0; i < nids; i++) {
		ctx_history_entry *h = NULL;
		size_t n = 0;
		assert_ok(ctx_history(s, ids[i], &h, &n));
		test_buf_printf(&b, "%s: %zu versions\n", ids[i], n);
		for (size_t j = 0; j < n; j++) {
			test_buf_printf(&b, "v%llu r%llu t%llu changed %zu%s\n",
			                (unsigned long long)h[j].version,
			                (unsigned long long)h[j].revision,
			                (unsigned long long)h[j].time_us, h[j].keys_changed,
			                h[j].pinned ? " pinned" : "");
			ctx_state *st = NULL;
			assert_ok(ctx_get_at(s, ids[i], h[j].version, &st));
			dump_map(&b, st, false);
			dump_map(&b, st, true);
			ctx_state_release(st);
		}
		free(h);
		ctx_point *p = NULL;
		n = 0;
		assert_ok(ctx_point_list(s, ids[i], &p, &n));
		test_buf_printf(&b, "%zu points\n", n);
		for (size_t j = 0; j < n; j++)
			test_buf_printf(&b, " v%llu t%llu keys %zu bytes %zu sum %llx '%s'\n",
			                (unsigned long long)p[j].version,
			                (unsigned long long)p[j].time_us, p[j].keys, p[j].bytes,
			                (unsigned long long)p[j].checksum, p[j].label);
		free(p);
	}
	return b.p;
}

static const char *const ids[] = {"empty", "one",     "small",   "sixteen", "seventeen",
                                  "forty", "prefix",  "binary",  "long",    "history",
                                  "huge",  "after-a", "after-b", "short"};
#define NIDS (sizeof(ids) / sizeof(*ids))

static void build_store(ctx_store *s)
{
	assert_ok(ctx_create(s, "empty"));
	put_pairs(s, "one", true, 1, key_plain, 0);
	put_pairs(s, "small", true, 3, key_plain, 0);
	put_pairs(s, "sixteen", true, 16, key_binary, 0);
	put_pairs(s, "seventeen", true, 17, key_binary, 0);
	put_pairs(s, "forty", true, 40, key_binary, 0);
	put_prefix_keys(s, "prefix");
	put_short_key(s, "short");
	put_pairs(s, "binary", true, 3000, key_binary, 0);
	put_pairs(s, "long", true, 500, key_long_prefix, 0);
	build_history(s, "history");
	put_pairs(s, "huge", true, 20000, key_plain, 0);
	/* Two versions each (inline), the second a delta of 30 changes. */
	put_pairs(s, "after-a", true, 30, key_long_prefix, 0);
	put_pairs(s, "after-a", false, 30, key_long_prefix, 1);
	put_pairs(s, "after-b", true, 5, key_plain, 0);
	put_pairs(s, "after-b", false, 60, key_binary, 1);
}

static void test_sizes_round_trip(void **unused)
{
	char *dir = test_make_dir("r10b-sizes");
	ctx_store *s = open_dir(dir);
	build_store(s);
	char *want = dump_history(s, ids, NIDS);
	/* The read-back (checkpoint_settle) refuses a key out of order. */
	assert_ok(ctx_checkpoint(s));
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoints, 1);
	ctx_close(s);

	char *work = test_checkpoint_alone(dir, "r10b-sizes-alone", NULL, NULL);
	s = open_dir(work);
	char *got = dump_history(s, ids, NIDS);
	test_expect_same_dump(want, got, "the checkpoint alone");
	free(got);

	/* A checkpoint of the loaded store, alone again. */
	assert_ok(ctx_put(s, "one", "k", 1, "v", 1, NULL));
	free(want);
	want = dump_history(s, ids, NIDS);
	assert_ok(ctx_checkpoint(s));
	ctx_close(s);
	char *again = test_checkpoint_alone(work, "r10b-sizes-again", NULL, NULL);
	s = open_dir(again);
	got = dump_history(s, ids, NIDS);
	test_expect_same_dump(want, got, "a checkpoint of the loaded store");
	ctx_close(s);

	ctx_verify_report r;
	assert_ok(ctx_verify(again, &r));
	assert_int_equal(r.checkpoints_damaged, 0);
	free(got);
	free(want);
	test_remove_dir(again);
	test_remove_dir(work);
	test_remove_dir(dir);
	free(again);
	free(work);
	free(dir);
}

/* store_collect with fewer contexts than its window, exactly as many, and
 * many more: every one is in the checkpoint. */
static void test_collect_counts(void **unused)
{
	static const size_t counts[] = {1, 7, 8, 9, 16, 1000};
	for (size_t c = 0; c < sizeof(counts) / sizeof(*counts); c++) {
		char name[64];
		snprintf(name, sizeof(name), "r10b-collect-%zu", counts[c]);
		char *dir = test_make_dir(name);
		ctx_store *s = open_dir(dir);
		for (size_t i = 0; i < counts[c]; i++) {
			char id[32];
			snprintf(id, sizeof(id), "c%zu", i);
			put_pairs(s, id, true, i % 5, key_plain, 0);
		}
		assert_ok(ctx_checkpoint(s));
		ctx_close(s);
		snprintf(name, sizeof(name), "r10b-collect-%zu-alone", counts[c]);
		char *work = test_checkpoint_alone(dir, name, NULL, NULL);
		s = open_dir(work);
		ctx_stats st;
		ctx_get_stats(s, &st);
		assert_int_equal(st.contexts, counts[c]);
		for (size_t i = 0; i < counts[c]; i++) {
			char id[32];
			snprintf(id, sizeof(id), "c%zu", i);
			ctx_state *x = NULL;
			assert_ok(ctx_get(s, id, &x));
			assert_int_equal(ctx_state_count(x), i % 5);
			ctx_state_release(x);
		}
		ctx_close(s);
		test_remove_dir(work);
		test_remove_dir(dir);
		free(work);
		free(dir);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sizes_round_trip),
	    cmocka_unit_test(test_collect_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
