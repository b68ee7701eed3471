/*
 * test_leaf_keys.c - the 18-byte leaf (src/lib/hamt.h): a 16-bit key length
 * with an escape for long keys, and no stored position hash.
 *
 *   - keys around and past the escape (65534 short form; 65535, 65536 and
 *     longer stored with a u32 length before the key) keep their length, key
 *     and value through the leaf accessors, the trie, a checksum, iteration,
 *     diffs, a checkpoint and a reopen, and a log-only replay;
 *   - under random puts and deletes with forced hash collisions (through
 *     hamt_test_hash_hook: full collisions in collision nodes, long shared
 *     prefixes), with short and long keys mixed, every version of the map
 *     matches a reference model: each key's value, iteration (each present
 *     key once), count, bytes, the checksum (the sum of the content hashes),
 *     and hamt_diff against the version before;
 *   - the same through the store: a context's content and its point's
 *     checksum match the model before and after a checkpoint and a reopen.
 */
#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hamt.h"

/* ---- keys ------------------------------------------------------------------ */

#define NKEYS 48
#define MAXV  40

/* Key lengths: mostly short, some at and past the 16-bit escape. */
static size_t key_len(unsigned i)
{
	static const size_t longs[] = {65534, 65535, 65536, 70001, 200000};
	return i % 6 == 5 ? longs[(i / 6) % 5] : 4 + i % 13;
}

/* Key i: its 4-byte index, then filler that depends on i. */
static unsigned char *key_make(unsigned i, size_t *klen)
{
	size_t n = key_len(i);
	unsigned char *k = malloc(n);
	assert_non_null(k);
	k[0] = (unsigned char)i;
	k[1] = (unsigned char)(i >> 8);
	k[2] = 0;
	k[3] = 0;
	for (size_t j = 4; j < n; j++)
		k[j] = (unsigned char)('a' + (j * 7 + i) % 26);
	*klen = n;
	return k;
}

typedef struct keyset {
	unsigned char *k[NKEYS];
	size_t kl[NKEYS];
} keyset;

static void keys_init(keyset *ks)
{
	for (unsigned i = 0; i < NKEYS; i++)
		ks->k[i] = key_make(i, &ks->kl[i]);
}

static void keys_free(keyset *ks)
{
	for (unsigned i = 0; i < NKEYS; i++)
		free(ks->k[i]);
}

static unsigned key_index(const hamt_leaf *l)
{
	const unsigned char *k = hamt_leaf_key(l);
	assert_true(hamt_leaf_klen(l) >= 4);
	unsigned i = k[0] | (unsigned)k[1] << 8;
	assert_true(i < NKEYS);
	return i;
}

/* ---- forced hashes ----------------------------------------------------------- */

static uint64_t hook_mask;

static uint64_t masked(const void *key, size_t klen, uint64_t real)
{
	return real & hook_mask;
}

static int reset_hash(void **unused)
{
	hamt_test_hash_hook(NULL);
	return 0;
}

/* ---- the leaf itself --------------------------------------------------------- */

static void test_leaf_lengths(void **unused)
{
	static const size_t lens[] = {0, 1, 16, 17, 65533, 65534, 65535, 65536, 1u << 20};
	for (size_t t = 0; t < sizeof(lens) / sizeof(lens[0]); t++) {
		size_t n = lens[t];
		unsigned char *k = malloc(n + 1);
		assert_non_null(k);
		for (size_t j = 0; j < n; j++)
			k[j] = (unsigned char)(j * 31 + t);
		hamt_leaf *l = hamt_leaf_new(k, n, "value", 5);
		assert_non_null(l);
		assert_int_equal(hamt_leaf_klen(l), n);
		assert_int_equal(l->klen16, n < 65535 ? n : 65535);
		/* The key right after the header, or after the u32 length. */
		assert_ptr_equal(hamt_leaf_key(l), l->data + (n < 65535 ? 0 : 4));
		assert_memory_equal(hamt_leaf_key(l), k, n);
		assert_memory_equal(hamt_leaf_value(l), "value", 5);
		assert_int_equal(l->vlen, 5);
		assert_true(hamt_leaf_hash(l) == hamt_hash(k, n));
		assert_true(hamt_leaf_sum(l) == hamt_content_hash(k, n, "value", 5));

		hamt m = {0};
		uint64_t edit = hamt_edit_token();
		assert_ok(hamt_set(&m, l, edit));
		assert_int_equal(m.bytes, n + 5);
		assert_ptr_equal(hamt_find(&m, hamt_hash(k, n), k, n), l);
		/* One byte shorter or different: another key. */
		if (n > 0) {
			assert_null(hamt_find(&m, hamt_hash(k, n - 1), k, n - 1));
			k[n - 1] ^= 1;
			assert_null(hamt_find(&m, hamt_hash(k, n), k, n));
			k[n - 1] ^= 1;
		}
		assert_ok(hamt_del(&m, hamt_hash(k, n), k, n, edit));
		assert_null(m.root);
		assert_int_equal(m.count, 0);
		assert_true(m.sum == 0);
		free(k);
	}
}

/* ---- random operations against a model -------------------------------------- */

typedef struct model {
	bool present[NKEYS];
	unsigned char val[NKEYS][MAXV];
	size_t vlen[NKEYS];
} model;

static void check_map(const hamt *m, const model *md, const keyset *ks)
{
	size_t count = 0, bytes = 0;
	uint64_t sum = 0;
	for (unsigned i = 0; i < NKEYS; i++) {
		const hamt_leaf *l =
		    hamt_find(m, hamt_hash(ks->k[i], ks->kl[i]), ks->k[i], ks->kl[i]);
		if (!md->present[i]) {
			assert_null(l);
			continue;
		}
		assert_non_null(l);
		assert_int_equal(hamt_leaf_klen(l), ks->kl[i]);
		assert_memory_equal(hamt_leaf_key(l), ks->k[i], ks->kl[i]);
		assert_int_equal(l->vlen, md->vlen[i]);
		if (l->vlen)
			assert_memory_equal(hamt_leaf_value(l), md->val[i], l->vlen);
		count++;
		bytes += ks->kl[i] + md->vlen[i];
		sum += hamt_content_hash(ks->k[i], ks->kl[i], md->val[i], md->vlen[i]);
	}
	assert_int_equal(m->count, count);
	assert_int_equal(m->bytes, bytes);
	assert_true(m->sum == sum);

	int seen[NKEYS] = {0};
	size_t n = 0;
	hamt_cursor c;
	hamt_cursor_init(&c, m);
	const hamt_leaf *l;
	while ((l = hamt_cursor_next(&c))) {
		unsigned i = key_index(l);
		assert_true(md->present[i]);
		assert_int_equal(seen[i]++, 0);
		assert_int_equal(hamt_leaf_klen(l), ks->kl[i]);
		n++;
	}
	assert_int_equal(n, count);
}

typedef struct diffs {
	int old_of[NKEYS], new_of[NKEYS];
	int calls;
} diffs;

static ctx_status record(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	diffs *d = arg;
	d->calls++;
	if (old)
		d->old_of[key_index(old)]++;
	if (new_)
		d->new_of[key_index(new_)]++;
	if (old && new_)
		assert_int_equal(key_index(old), key_index(new_));
	return CTX_OK;
}

static void check_diff(const hamt *a, const model *ma, const hamt *b, const model *mb)
{
	diffs *d = calloc(1, sizeof(*d));
	assert_non_null(d);
	assert_ok(hamt_diff(a, b, record, d));
	int want = 0;
	for (unsigned i = 0; i < NKEYS; i++) {
		bool changed = ma->present[i] != mb->present[i] ||
		               (ma->present[i] && (ma->vlen[i] != mb->vlen[i] ||
		                                   memcmp(ma->val[i], mb->val[i], ma->vlen[i])));
		want += changed;
		assert_int_equal(d->old_of[i], changed && ma->present[i]);
		assert_int_equal(d->new_of[i], changed && mb->present[i]);
	}
	assert_int_equal(d->calls, want);
	assert_int_equal(hamt_diff_count(a, b), (size_t)want);
	free(d);
}

static void run_model(uint64_t mask, uint64_t seed)
{
	hook_mask = mask;
	hamt_test_hash_hook(mask == ~0ull ? NULL : masked);
	keyset ks;
	keys_init(&ks);
	uint64_t rng = seed;
	hamt m = {0};
	model *md = calloc(1, sizeof(*md)), *prev = calloc(1, sizeof(*prev));
	assert_non_null(md);
	assert_non_null(prev);
	int batches = (int)test_iters(150, 40);
	for (int b = 0; b < batches; b++) {
		hamt before = hamt_retain(&m);
		*prev = *md;
		uint64_t edit = hamt_edit_token();
		unsigned ops = 1 + (unsigned)test_rand_below(&rng, b % 10 == 0 ? 40 : 6);
		for (unsigned o = 0; o < ops; o++) {
			unsigned i = (unsigned)test_rand_below(&rng, NKEYS);
			if (md->present[i] && test_rand_below(&rng, 3) == 0) {
				assert_ok(hamt_del(&m, hamt_hash(ks.k[i], ks.kl[i]), ks.k[i],
				                   ks.kl[i], edit));
				md->present[i] = false;
				continue;
			}
			unsigned char v[MAXV];
			size_t vl = (size_t)test_rand_below(&rng, MAXV + 1);
			for (size_t j = 0; j < vl; j++)
				v[j] = (unsigned char)test_rand_below(&rng, 3);
			hamt_leaf *l = hamt_leaf_new(ks.k[i], ks.kl[i], v, vl);
			assert_non_null(l);
			bool changed = true;
			assert_ok(hamt_put(&m, l, edit, &changed));
			bool same =
			    md->present[i] && md->vlen[i] == vl && !memcmp(md->val[i], v, vl);
			assert_int_equal(changed, !same);
			md->present[i] = true;
			memcpy(md->val[i], v, vl);
			md->vlen[i] = vl;
		}
		check_map(&m, md, &ks);
		check_map(&before, prev, &ks); /* the version before never changes */
		check_diff(&before, prev, &m, md);
		check_diff(&m, md, &before, prev);
		hamt_release(&before);
	}
	/* Delete everything: back to the empty map, checksum 0. */
	uint64_t edit = hamt_edit_token();
	for (unsigned i = 0; i < NKEYS; i++)
		if (md->present[i])
			assert_ok(
			    hamt_del(&m, hamt_hash(ks.k[i], ks.kl[i]), ks.k[i], ks.kl[i], edit));
	assert_null(m.root);
	assert_true(m.sum == 0);
	hamt_release(&m);
	free(md);
	free(prev);
	keys_free(&ks);
	hamt_test_hash_hook(NULL);
}

static void test_model_real_hash(void **unused)
{
	run_model(~0ull, test_seed("leaf-real", 21));
}

/* Four full hashes: every key in one of four collision nodes at full depth,
 * under a chain of one-slot nodes. */
static void test_model_full_collisions(void **unused)
{
	run_model(0x3ull, test_seed("leaf-full", 22));
}

/* Keys spread at level 0, then shared prefixes down to the last level,
 * where the top bits split them again. */
static void test_model_shared_prefixes(void **unused)
{
	run_model(0xf00000000000001full, test_seed("leaf-prefix", 23));
}

/* One hash for all: one collision node. */
static void test_model_one_hash(void **unused)
{
	run_model(0, test_seed("leaf-one", 24));
}

/* ---- through the store --------------------------------------------------------- */

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.max_key_size = 1u << 20;
	o.durability = CTX_DURABILITY_NONE;
	o.unsafe_no_sync = true;
	ctx_store *s = NULL;
	ctx_status st = ctx_open(&o, &s);
	if (st != CTX_OK)
		fail_msg("ctx_open %s: %d %s", dir, (int)st, ctx_last_error());
	return s;
}

/* Context "c" holds exactly the model: values, iteration, count, bytes, and
 * a new point's checksum (the sum of the content hashes). */
static void check_store(ctx_store *s, const model *md, const keyset *ks)
{
	ctx_state *st = NULL;
	assert_ok(ctx_get(s, "c", &st));
	size_t count = 0, bytes = 0;
	uint64_t sum = 0;
	for (unsigned i = 0; i < NKEYS; i++) {
		const void *v;
		size_t vl;
		bool got = ctx_state_lookup(st, ks->k[i], ks->kl[i], &v, &vl);
		assert_int_equal(got, md->present[i]);
		if (!got)
			continue;
		assert_int_equal(vl, md->vlen[i]);
		if (vl)
			assert_memory_equal(v, md->val[i], vl);
		count++;
		bytes += ks->kl[i] + vl;
		sum += hamt_content_hash(ks->k[i], ks->kl[i], md->val[i], md->vlen[i]);
	}
	assert_int_equal(ctx_state_count(st), count);
	assert_int_equal(ctx_state_bytes(st), bytes);
	ctx_iter *it = NULL;
	assert_ok(ctx_iter_begin(st, &it));
	const void *k;
	size_t kl, n = 0;
	int seen[NKEYS] = {0};
	while (ctx_iter_next(it, &k, &kl, NULL, NULL)) {
		assert_true(kl >= 4);
		unsigned i = ((const unsigned char *)k)[0] | (unsigned)((const unsigned char *)k)[1]
		                                                 << 8;
		assert_true(i < NKEYS);
		assert_int_equal(kl, ks->kl[i]);
		assert_memory_equal(k, ks->k[i], kl);
		assert_int_equal(seen[i]++, 0);
		n++;
	}
	ctx_iter_free(it);
	assert_int_equal(n, count);
	ctx_state_release(st);

	uint64_t pv = 0;
	assert_ok(ctx_point_create(s, "c", NULL, &pv));
	ctx_point *pts = NULL;
	size_t np = 0;
	assert_ok(ctx_point_list(s, "c", &pts, &np));
	assert_true(np > 0);
	assert_int_equal(pts[np - 1].version, pv);
	assert_true(pts[np - 1].checksum == sum);
	assert_int_equal(pts[np - 1].keys, count);
	free(pts);
}

static void random_commits(ctx_store *s, model *md, const keyset *ks, uint64_t *rng, int n)
{
	for (int c = 0; c < n; c++) {
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(s, "c", &t));
		unsigned ops = 1 + (unsigned)test_rand_below(rng, 5);
		for (unsigned o = 0; o < ops; o++) {
			unsigned i = (unsigned)test_rand_below(rng, NKEYS);
			if (test_rand_below(rng, 4) == 0) {
				assert_ok(ctx_txn_del(t, ks->k[i], ks->kl[i]));
				md->present[i] = false;
				continue;
			}
			unsigned char v[MAXV];
			size_t vl = (size_t)test_rand_below(rng, MAXV + 1);
			for (size_t j = 0; j < vl; j++)
				v[j] = (unsigned char)test_rand_below(rng, 256);
			assert_ok(ctx_txn_put(t, ks->k[i], ks->kl[i], v, vl));
			md->present[i] = true;
			memcpy(md->val[i], v, vl);
			md->vlen[i] = vl;
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
}

static void test_store_long_keys(void **unused)
{
	keyset ks;
	keys_init(&ks);
	model *md = calloc(1, sizeof(*md));
	assert_non_null(md);
	uint64_t rng = test_seed("leaf-store", 25);
	char *dir = test_make_dir("leaf-keys");
	ctx_store *s = open_dir(dir);
	assert_ok(ctx_create(s, "c"));

	/* Every key once, so that each long one is in for sure. */
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin(s, "c", &t));
	for (unsigned i = 0; i < NKEYS; i++) {
		md->present[i] = true;
		md->vlen[i] = i % 7;
		memset(md->val[i], 'a' + (int)(i % 26), md->vlen[i]);
		assert_ok(ctx_txn_put(t, ks.k[i], ks.kl[i], md->val[i], md->vlen[i]));
	}
	uint64_t v1 = 0;
	assert_ok(ctx_txn_commit(t, 0, &v1));
	check_store(s, md, &ks);

	/* A change of a long key's value, seen by a diff of states. */
	ctx_state *a = NULL, *b = NULL;
	assert_ok(ctx_get(s, "c", &a));
	assert_ok(ctx_put(s, "c", ks.k[5], ks.kl[5], "changed", 7, NULL));
	md->vlen[5] = 7;
	memcpy(md->val[5], "changed", 7);
	assert_ok(ctx_del(s, "c", ks.k[11], ks.kl[11], NULL));
	md->present[11] = false;
	assert_ok(ctx_get(s, "c", &b));
	ctx_diff *d = NULL;
	assert_ok(ctx_diff_states(a, b, &d));
	assert_int_equal(ctx_diff_count(d), 2);
	for (size_t j = 0; j < 2; j++) {
		const ctx_change *ch = ctx_diff_get(d, j);
		unsigned i = ch->kind == CTX_CHANGED ? 5 : 11;
		assert_int_equal(ch->kind, i == 5 ? CTX_CHANGED : CTX_REMOVED);
		assert_int_equal(ch->klen, ks.kl[i]);
		assert_memory_equal(ch->key, ks.k[i], ch->klen);
	}
	ctx_diff_free(d);
	ctx_state_release(a);
	ctx_state_release(b);

	random_commits(s, md, &ks, &rng, 30);
	check_store(s, md, &ks);
	char *want = test_dump_store(s, true, NULL);
	test_close_keeping_log(s);

	/* The log alone (no checkpoint was written before the close), replayed
	 * from revision 1. */
	char *copy = test_make_dir("leaf-keys-log");
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "cp '%s'/wal-*.log '%s'/", dir, copy);
	assert_int_equal(system(cmd), 0);
	s = open_dir(copy);
	char *got = test_dump_store(s, true, NULL);
	test_expect_same_dump(want, got, "log-only replay with long keys");
	free(got);
	free(want);
	ctx_close(s);

	/* The directory: the checkpoint of the close, then more commits, a
	 * checkpoint now and commits after it (the log past it). */
	s = open_dir(dir);
	random_commits(s, md, &ks, &rng, 30);
	assert_ok(ctx_checkpoint(s));
	random_commits(s, md, &ks, &rng, 30);
	check_store(s, md, &ks);
	want = test_dump_store(s, true, NULL);
	test_close_keeping_log(s);
	s = open_dir(dir);
	got = test_dump_store(s, true, NULL);
	test_expect_same_dump(want, got, "reopened with long keys");
	free(got);
	check_store(s, md, &ks);
	ctx_close(s);

	free(want);
	test_remove_dir(copy);
	test_remove_dir(dir);
	free(copy);
	free(dir);
	free(md);
	keys_free(&ks);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_leaf_lengths, reset_hash),
	    cmocka_unit_test_setup(test_model_real_hash, reset_hash),
	    cmocka_unit_test_setup(test_model_full_collisions, reset_hash),
	    cmocka_unit_test_setup(test_model_shared_prefixes, reset_hash),
	    cmocka_unit_test_setup(test_model_one_hash, reset_hash),
	    cmocka_unit_test_setup(test_store_long_keys, reset_hash),
	};
	if (getenv("CTX_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
