/*
 * test_hamt.c - the persistent trie (src/lib/hamt.h) against a naive model.
 *
 * Keys are drawn from a small key space so that overwrites and deletes of
 * present and absent keys are frequent. After every change the changed key is
 * looked up; after every batch the whole map is compared with the model
 * (count, bytes, every lookup, a full iteration), and so are older versions
 * kept with hamt_retain before later batches: they must never change.
 *
 * Every batch runs under a fresh edit token (several changes under one token
 * take the in-place path). Hash collisions are forced by overwriting
 * leaf->hash after hamt_leaf_new: identical full 64-bit hashes (collision
 * nodes) and hashes that share long prefixes (deep chains, collapses).
 */
#include "testutil.h"

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hamt.h"
#include "pool.h"

#define MAXV 300 /* past HAMT_BORROW_SMALL: a few large values */

/* How a key's hash is chosen. */
enum hash_mode {
	HASH_REAL,     /* hamt_hash, as the library uses it                  */
	HASH_GROUPS,   /* a few values: full collisions and shared prefixes  */
	HASH_MIXED,    /* half real, half grouped                            */
	HASH_ONE,      /* every key the same full hash                       */
	HASH_PREFIXES, /* distinct hashes sharing 50 low bits (deep chains)  */
};

static const uint64_t H0 = 0x0123456789abcdefull;

/* Group hashes: equal pairs (full collisions), hashes differing only in the
 * top bits (level 12, the last, 4-bit level), in a middle level, at level 0,
 * and an unrelated one. */
static uint64_t group_hash(unsigned g)
{
	switch (g % 8) {
	case 0:
	case 1:
		return H0;
	case 2:
		return H0 ^ (1ull << 63);
	case 3:
		return H0 ^ (1ull << 60);
	case 4:
		return H0 ^ (1ull << 35);
	case 5:
		return H0 ^ 1ull;
	case 6:
		return 0xfedcba9876543210ull;
	default:
		return H0 ^ (1ull << 59);
	}
}

typedef struct model {
	unsigned nkeys;
	enum hash_mode mode;
	bool *present;
	unsigned char (*val)[MAXV];
	size_t *vlen;
	size_t count;
	size_t bytes;
} model;

/* Key i: its 4-byte index, then 0..6 bytes that include NULs. */
static size_t make_key(unsigned i, unsigned char *key)
{
	key[0] = (unsigned char)i;
	key[1] = (unsigned char)(i >> 8);
	key[2] = (unsigned char)(i >> 16);
	key[3] = (unsigned char)(i >> 24);
	size_t extra = i % 7;
	for (size_t j = 0; j < extra; j++)
		key[4 + j] = (unsigned char)(j % 2 ? 0 : 'x' + j);
	return 4 + extra;
}

static unsigned key_index(const unsigned char *key)
{
	return key[0] | (unsigned)key[1] << 8 | (unsigned)key[2] << 16 | (unsigned)key[3] << 24;
}

/* Key i's hash in mode, real being hamt's own hash of it. */
static uint64_t mode_hash(enum hash_mode mode, unsigned i, uint64_t real)
{
	switch (mode) {
	case HASH_REAL:
		return real;
	case HASH_GROUPS:
		return group_hash(i);
	case HASH_MIXED:
		return i % 2 ? real : group_hash(i / 2);
	case HASH_ONE:
		return H0;
	case HASH_PREFIXES:
		/* The same low 50 bits (levels 0..9), different above. */
		return H0 ^ ((uint64_t)(i * 2654435761u) << 50);
	}
	return 0;
}

/* Leaves store no hash to overwrite: hamt_hash itself gives the model's keys
 * their forced hashes (hamt_test_hash_hook), in the mode of the last model
 * made. Reset to the real hash before every test (reset_hash). */
static enum hash_mode hook_mode = HASH_REAL;

static uint64_t forced_hash(const void *key, size_t klen, uint64_t real)
{
	return klen >= 4 ? mode_hash(hook_mode, key_index(key), real) : real;
}

static int reset_hash(void **unused)
{
	hook_mode = HASH_REAL;
	hamt_test_hash_hook(NULL);
	return 0;
}

static uint64_t key_hash(const model *md, unsigned i, const unsigned char *key, size_t klen)
{
	assert_true(hook_mode == md->mode);
	return hamt_hash(key, klen);
}

static model *model_new(unsigned nkeys, enum hash_mode mode)
{
	hook_mode = mode;
	hamt_test_hash_hook(mode == HASH_REAL ? NULL : forced_hash);
	model *md = calloc(1, sizeof(*md));
	assert_non_null(md);
	md->nkeys = nkeys;
	md->mode = mode;
	md->present = calloc(nkeys, sizeof(*md->present));
	md->val = calloc(nkeys, sizeof(*md->val));
	md->vlen = calloc(nkeys, sizeof(*md->vlen));
	assert_non_null(md->present);
	assert_non_null(md->val);
	assert_non_null(md->vlen);
	return md;
}

static model *model_copy(const model *src)
{
	model *md = model_new(src->nkeys, src->mode);
	memcpy(md->present, src->present, src->nkeys * sizeof(*md->present));
	memcpy(md->val, src->val, src->nkeys * sizeof(*md->val));
	memcpy(md->vlen, src->vlen, src->nkeys * sizeof(*md->vlen));
	md->count = src->count;
	md->bytes = src->bytes;
	return md;
}

static void model_free(model *md)
{
	free(md->present);
	free(md->val);
	free(md->vlen);
	free(md);
}

/* A leaf for key i with the given value, its hash forced to the model's. */
static hamt_leaf *make_leaf(const model *md, unsigned i, const unsigned char *val, size_t vlen)
{
	unsigned char key[16];
	size_t klen = make_key(i, key);
	hamt_leaf *l = hamt_leaf_new(key, klen, val, vlen);
	assert_non_null(l);
	assert_int_equal(hamt_leaf_klen(l), klen);
	assert_int_equal(l->vlen, vlen);
	assert_int_equal(atomic_load(&l->refs), 1);
	assert_true(hamt_leaf_hash(l) == key_hash(md, i, key, klen));
	return l;
}

static void check_key(const hamt *m, const model *md, unsigned i)
{
	unsigned char key[16];
	size_t klen = make_key(i, key);
	const hamt_leaf *l = hamt_find(m, key_hash(md, i, key, klen), key, klen);
	if (!md->present[i]) {
		if (l)
			fail_msg("key %u found but absent in the model", i);
		return;
	}
	if (!l)
		fail_msg("key %u missing", i);
	assert_int_equal(hamt_leaf_klen(l), klen);
	assert_memory_equal(hamt_leaf_key(l), key, klen);
	assert_int_equal(l->vlen, md->vlen[i]);
	if (md->vlen[i])
		assert_memory_equal(hamt_leaf_value(l), md->val[i], md->vlen[i]);
}

/* hamt_cursor_fill, in batches of 1, 3, 32 and 64 leaves, yields exactly
 * hamt_cursor_next's sequence: the same leaves in the same order, each once,
 * and then 0, again 0 at the end. */
static void check_fill(const hamt *m)
{
	static const size_t sizes[] = {1, 3, 32, 64};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		hamt_cursor ref, c;
		hamt_cursor_init(&ref, m);
		hamt_cursor_init(&c, m);
		const hamt_leaf *batch[64];
		size_t n, total = 0;
		while ((n = hamt_cursor_fill(&c, batch, sizes[k]))) {
			assert_true(n <= sizes[k]);
			for (size_t i = 0; i < n; i++)
				assert_ptr_equal(batch[i], hamt_cursor_next(&ref));
			total += n;
			/* Only the last batch may be short. */
			if (n < sizes[k])
				assert_int_equal(total, m->count);
		}
		assert_null(hamt_cursor_next(&ref));
		assert_int_equal(total, m->count);
		assert_int_equal(hamt_cursor_fill(&c, batch, sizes[k]), 0);
	}
}

/* The whole map equals the model: count, bytes, every lookup, and one full
 * iteration that yields every present key exactly once (and the batched
 * walk, check_fill, the same leaves in the same order). */
static void check_all(const hamt *m, const model *md)
{
	assert_int_equal(m->count, md->count);
	assert_int_equal(m->bytes, md->bytes);
	/* The checksum: the sum of the present keys' content hashes, however
	 * the map got there (puts of new keys, of the same value again, of
	 * other values, deletes). */
	uint64_t sum = 0;
	for (unsigned i = 0; i < md->nkeys; i++) {
		unsigned char key[16];
		size_t klen = make_key(i, key);
		if (md->present[i])
			sum += hamt_content_hash(key, klen, md->val[i], md->vlen[i]);
	}
	assert_true(m->sum == sum);
	if (md->count == 0)
		assert_null(m->root);
	for (unsigned i = 0; i < md->nkeys; i++)
		check_key(m, md, i);

	unsigned char *seen = calloc(md->nkeys, 1);
	assert_non_null(seen);
	hamt_cursor c;
	hamt_cursor_init(&c, m);
	const hamt_leaf *l;
	size_t n = 0, bytes = 0;
	while ((l = hamt_cursor_next(&c))) {
		assert_true(hamt_leaf_klen(l) >= 4);
		unsigned i = key_index(hamt_leaf_key(l));
		assert_true(i < md->nkeys);
		if (!md->present[i])
			fail_msg("iteration yields key %u, absent in the model", i);
		if (seen[i]++)
			fail_msg("iteration yields key %u twice", i);
		unsigned char key[16];
		size_t klen = make_key(i, key);
		assert_int_equal(hamt_leaf_klen(l), klen);
		assert_memory_equal(hamt_leaf_key(l), key, klen);
		assert_true(hamt_leaf_hash(l) == key_hash(md, i, key, klen));
		assert_int_equal(l->vlen, md->vlen[i]);
		if (l->vlen)
			assert_memory_equal(hamt_leaf_value(l), md->val[i], l->vlen);
		n++;
		bytes += hamt_leaf_klen(l) + l->vlen;
	}
	/* The end is sticky. */
	assert_null(hamt_cursor_next(&c));
	assert_int_equal(n, md->count);
	assert_int_equal(bytes, md->bytes);
	free(seen);
	check_fill(m);
}

static void do_set(hamt *m, model *md, unsigned i, uint64_t edit, uint64_t *rng)
{
	unsigned char val[MAXV];
	/* Mostly small values, one in 8 up to MAXV. */
	size_t vmax = test_rand_below(rng, 8) == 0 ? MAXV : 40;
	size_t vlen = test_rand_below(rng, 5) == 0 ? 0 : (size_t)test_rand_below(rng, vmax + 1);
	for (size_t j = 0; j < vlen; j++)
		val[j] = (unsigned char)test_rand(rng);
	hamt_leaf *l = make_leaf(md, i, val, vlen);
	size_t klen = hamt_leaf_klen(l);
	assert_ok(hamt_set(m, l, edit));
	if (md->present[i]) {
		md->bytes -= klen + md->vlen[i];
	} else {
		md->present[i] = true;
		md->count++;
	}
	memcpy(md->val[i], val, vlen);
	md->vlen[i] = vlen;
	md->bytes += klen + vlen;
}

static void do_del(hamt *m, model *md, unsigned i, uint64_t edit)
{
	unsigned char key[16];
	size_t klen = make_key(i, key);
	hamt before = *m;
	ctx_status r = hamt_del(m, key_hash(md, i, key, klen), key, klen, edit);
	if (md->present[i]) {
		assert_int_equal(r, CTX_OK);
		md->present[i] = false;
		md->count--;
		md->bytes -= klen + md->vlen[i];
	} else {
		assert_int_equal(r, CTX_NOT_FOUND);
		/* Nothing changed, not even the root pointer. */
		assert_ptr_equal(m->root, before.root);
		assert_int_equal(m->count, before.count);
		assert_int_equal(m->bytes, before.bytes);
	}
}

/* A kept older version and what it must keep showing. */
typedef struct snap {
	hamt map;
	model *md;
} snap;

/* The randomized model run: `batches` batches of 1..max_batch random changes,
 * each batch under its own edit token; after each batch the map and the last
 * few retained versions are checked. */
static void run_model(enum hash_mode mode, unsigned nkeys, int batches, int max_batch,
                      uint64_t seed)
{
	enum { KEEP = 4 };
	uint64_t rng = seed;
	model *md = model_new(nkeys, mode);
	hamt m = {0};
	snap kept[KEEP] = {{{0}, NULL}};
	int next_kept = 0;
	uint64_t last_edit = 0;

	for (int b = 0; b < batches; b++) {
		uint64_t edit = hamt_edit_token();
		assert_true(edit != last_edit);
		last_edit = edit;
		/* Phases: grow, churn, shrink, so that the map fills up and empties
		 * (collapse down to nothing) several times. */
		int phase = (b / 40) % 3;
		unsigned set_pct = phase == 0 ? 80 : phase == 1 ? 55 : 20;
		int n = 1 + (int)test_rand_below(&rng, (uint64_t)max_batch);
		for (int k = 0; k < n; k++) {
			unsigned i = (unsigned)test_rand_below(&rng, nkeys);
			if (test_rand_below(&rng, 100) < set_pct)
				do_set(&m, md, i, edit, &rng);
			else
				do_del(&m, md, i, edit);
			assert_int_equal(m.count, md->count);
			assert_int_equal(m.bytes, md->bytes);
			check_key(&m, md, i);
		}
		check_all(&m, md);
		for (int k = 0; k < KEEP; k++)
			if (kept[k].md)
				check_all(&kept[k].map, kept[k].md);

		/* Keep this version; later batches use new tokens. */
		snap *sp = &kept[next_kept];
		next_kept = (next_kept + 1) % KEEP;
		if (sp->md) {
			hamt_release(&sp->map);
			assert_null(sp->map.root);
			assert_int_equal(sp->map.count, 0);
			model_free(sp->md);
		}
		sp->map = hamt_retain(&m);
		assert_ptr_equal(sp->map.root, m.root);
		sp->md = model_copy(md);
	}
	/* Delete everything left: the map empties back to no root. */
	uint64_t edit = hamt_edit_token();
	for (unsigned i = 0; i < nkeys; i++)
		if (md->present[i])
			do_del(&m, md, i, edit);
	check_all(&m, md);
	assert_null(m.root);
	for (int k = 0; k < KEEP; k++) {
		if (!kept[k].md)
			continue;
		check_all(&kept[k].map, kept[k].md);
		hamt_release(&kept[k].map);
		model_free(kept[k].md);
	}
	hamt_release(&m);
	model_free(md);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_model_real_hash_small(void **unused)
{
	run_model(HASH_REAL, 64, (int)test_iters(1500, 300), 12, test_seed("real-small", 1));
}

static void test_model_real_hash_large(void **unused)
{
	/* Enough keys for full 32-slot nodes and a few levels. */
	run_model(HASH_REAL, 3000, (int)test_iters(300, 120), 200, test_seed("real-large", 2));
}

static void test_model_collision_groups(void **unused)
{
	run_model(HASH_GROUPS, 64, (int)test_iters(1500, 300), 12, test_seed("groups", 3));
}

static void test_model_mixed(void **unused)
{
	run_model(HASH_MIXED, 200, (int)test_iters(900, 240), 30, test_seed("mixed", 4));
}

static void test_model_one_hash(void **unused)
{
	/* Every key in one collision node, well past 32 leaves. */
	run_model(HASH_ONE, 300, (int)test_iters(400, 120), 40, test_seed("one-hash", 5));
}

static void test_model_shared_prefixes(void **unused)
{
	run_model(HASH_PREFIXES, 128, (int)test_iters(900, 240), 16, test_seed("prefixes", 6));
}

static void test_model_single_changes(void **unused)
{
	/* One change per token: the copy-on-write path only. */
	run_model(HASH_GROUPS, 48, (int)test_iters(3000, 600), 1, test_seed("single", 7));
	run_model(HASH_REAL, 48, (int)test_iters(3000, 600), 1, test_seed("single-real", 8));
}

/* Build the same key set two ways; the iteration order (the trie shape) must
 * be the same: the shape depends only on the keys. */
static void check_canonical(enum hash_mode mode, unsigned nkeys, uint64_t seed)
{
	uint64_t rng = seed;
	model *ma = model_new(nkeys, mode), *mb = model_new(nkeys, mode);
	hamt a = {0}, b = {0};
	bool *want = calloc(nkeys, sizeof(*want));
	assert_non_null(want);
	for (unsigned i = 0; i < nkeys; i++)
		want[i] = test_rand_below(&rng, 2);

	/* a: insert the wanted keys in ascending order, one token. */
	uint64_t edit = hamt_edit_token();
	for (unsigned i = 0; i < nkeys; i++)
		if (want[i])
			do_set(&a, ma, i, edit, &rng);
	/* b: insert all keys in descending order over many tokens, then delete
	 * the unwanted ones in random order, again over many tokens. */
	for (unsigned i = nkeys; i-- > 0;) {
		if (i % 5 == 0)
			edit = hamt_edit_token();
		do_set(&b, mb, i, edit, &rng);
	}
	unsigned *order = malloc(nkeys * sizeof(*order));
	assert_non_null(order);
	for (unsigned i = 0; i < nkeys; i++)
		order[i] = i;
	for (unsigned i = nkeys; i > 1; i--) {
		unsigned j = (unsigned)test_rand_below(&rng, i);
		unsigned t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
	for (unsigned k = 0; k < nkeys; k++) {
		if (k % 3 == 0)
			edit = hamt_edit_token();
		if (!want[order[k]])
			do_del(&b, mb, order[k], edit);
	}
	check_all(&a, ma);
	check_all(&b, mb);
	assert_int_equal(a.count, b.count);

	hamt_cursor ca, cb;
	hamt_cursor_init(&ca, &a);
	hamt_cursor_init(&cb, &b);
	for (;;) {
		const hamt_leaf *la = hamt_cursor_next(&ca), *lb = hamt_cursor_next(&cb);
		if (!la || !lb) {
			assert_null(la);
			assert_null(lb);
			break;
		}
		assert_int_equal(key_index(hamt_leaf_key(la)), key_index(hamt_leaf_key(lb)));
	}
	hamt_release(&a);
	hamt_release(&b);
	model_free(ma);
	model_free(mb);
	free(want);
	free(order);
}

static void test_shape_depends_only_on_keys(void **unused)
{
	uint64_t seed = test_seed("canonical", 9);
	for (int r = 0; r < 20; r++) {
		check_canonical(HASH_REAL, 500, seed + (uint64_t)r);
		check_canonical(HASH_PREFIXES, 100, seed + 100 + (uint64_t)r);
	}
}

static void test_collision_node_lifecycle(void **unused)
{
	/* Step by step: two keys with one full hash make a collision node at the
	 * bottom of a 13-level chain; a third joins it; deleting collapses it
	 * back to a single leaf at the root, then to nothing. */
	model *md = model_new(8, HASH_ONE);
	uint64_t rng = 11;
	hamt m = {0};
	uint64_t e1 = hamt_edit_token();
	do_set(&m, md, 0, e1, &rng);
	check_all(&m, md);
	hamt v1 = hamt_retain(&m);
	model *m1 = model_copy(md);

	uint64_t e2 = hamt_edit_token();
	do_set(&m, md, 1, e2, &rng);
	check_all(&m, md);
	hamt v2 = hamt_retain(&m);
	model *m2 = model_copy(md);

	uint64_t e3 = hamt_edit_token();
	do_set(&m, md, 2, e3, &rng);
	do_set(&m, md, 2, e3, &rng); /* overwrite inside the collision node */
	do_set(&m, md, 1, e3, &rng);
	check_all(&m, md);
	hamt v3 = hamt_retain(&m);
	model *m3 = model_copy(md);

	uint64_t e4 = hamt_edit_token();
	do_del(&m, md, 5, e4); /* same hash, absent key */
	do_del(&m, md, 1, e4);
	check_all(&m, md);
	do_del(&m, md, 0, e4);
	check_all(&m, md);
	assert_int_equal(m.count, 1);
	/* A lone leaf left: a fresh map with only that key has the same shape:
	 * one leaf straight under the root. */
	hamt_cursor c;
	hamt_cursor_init(&c, &m);
	assert_non_null(hamt_cursor_next(&c));
	assert_int_equal(c.depth, 1);
	do_del(&m, md, 2, e4);
	assert_null(m.root);
	check_all(&m, md);

	check_all(&v1, m1);
	check_all(&v2, m2);
	check_all(&v3, m3);
	/* The collision node sits below the last level: cursor depth 14. */
	hamt_cursor_init(&c, &v3);
	assert_non_null(hamt_cursor_next(&c));
	assert_int_equal(c.depth, HAMT_MAX_DEPTH);

	hamt_release(&v1);
	hamt_release(&v2);
	hamt_release(&v3);
	hamt_release(&m);
	model_free(md);
	model_free(m1);
	model_free(m2);
	model_free(m3);
}

static void test_in_place_under_one_token(void **unused)
{
	/* Many changes under one token after a retained base: the base never
	 * changes, however much the build mutates its own nodes in place. */
	model *md = model_new(2000, HASH_MIXED);
	uint64_t rng = test_seed("in-place", 12);
	hamt m = {0};
	uint64_t e = hamt_edit_token();
	for (unsigned i = 0; i < 2000; i += 2)
		do_set(&m, md, i, e, &rng);
	hamt base = hamt_retain(&m);
	model *mbase = model_copy(md);
	e = hamt_edit_token();
	for (int k = 0; k < 20000; k++) {
		unsigned i = (unsigned)test_rand_below(&rng, 2000);
		if (test_rand_below(&rng, 3))
			do_set(&m, md, i, e, &rng);
		else
			do_del(&m, md, i, e);
	}
	check_all(&m, md);
	check_all(&base, mbase);
	hamt_release(&base);
	/* Still fine after the base is gone. */
	check_all(&m, md);
	hamt_release(&m);
	model_free(md);
	model_free(mbase);
}

/* ---- borrowing (hamt.c: owned and borrowed slots) ------------------------------ */

static unsigned leaf_refs(const hamt_leaf *l)
{
	return atomic_load(&((hamt_leaf *)l)->refs);
}

static hamt_leaf *leaf_of(unsigned i, size_t vlen)
{
	unsigned char key[16], val[1024];
	memset(val, (int)i, vlen);
	return hamt_leaf_new(key, make_key(i, key), val, vlen);
}

static hamt_leaf *find_key(const hamt *m, unsigned i)
{
	unsigned char key[16];
	size_t klen = make_key(i, key);
	return (hamt_leaf *)hamt_find(m, hamt_hash(key, klen), key, klen);
}

/* A map of n small keys, built under one token. */
static hamt small_map(unsigned n)
{
	hamt m = {0};
	uint64_t e = hamt_edit_token();
	for (unsigned i = 0; i < n; i++)
		assert_ok(hamt_set(&m, leaf_of(i, 20), e));
	return m;
}

static void test_copy_takes_no_child_reference(void **unused)
{
	/* A one-key change to a published map copies the path to the key, but
	 * the copy borrows the other children: their counts stay at 1. */
	hamt m = small_map(16);
	hamt v0 = hamt_retain(&m);
	assert_ok(hamt_set(&m, leaf_of(3, 20), hamt_edit_token()));
	assert_ptr_not_equal(m.root, v0.root);
	for (unsigned i = 0; i < 16; i++) {
		hamt_leaf *l = find_key(&m, i);
		assert_non_null(l);
		if (i != 3)
			assert_ptr_equal(l, find_key(&v0, i));
		assert_int_equal(leaf_refs(l), 1);
	}
	hamt_release(&v0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(leaf_refs(find_key(&m, i)), 1);
	hamt_release(&m);
}

static void test_borrowing_frees_large_values(void **unused)
{
	/* A large value replaced in a borrowing copy is not kept alive by the
	 * copy's base once the version that held it is gone. */
	hamt m = small_map(16);
	hamt_leaf *big = leaf_of(5, 1000);
	atomic_fetch_add(&big->refs, 1); /* ours, to watch it */
	assert_ok(hamt_set(&m, big, hamt_edit_token()));
	hamt v1 = hamt_retain(&m);
	assert_ok(hamt_set(&m, leaf_of(5, 10), hamt_edit_token()));
	assert_int_equal(leaf_refs(big), 2); /* ours and v1's */
	hamt_release(&v1);
	assert_int_equal(leaf_refs(big), 1); /* only ours: m does not keep it */
	hamt_leaf_release(big);

	/* A deleted large value, likewise. */
	big = leaf_of(6, 1000);
	atomic_fetch_add(&big->refs, 1);
	assert_ok(hamt_set(&m, big, hamt_edit_token()));
	v1 = hamt_retain(&m);
	unsigned char key[16];
	size_t klen = make_key(6, key);
	assert_ok(hamt_del(&m, hamt_hash(key, klen), key, klen, hamt_edit_token()));
	hamt_release(&v1);
	assert_int_equal(leaf_refs(big), 1);
	hamt_leaf_release(big);
	hamt_release(&m);
}

/* Key i's index at the root (hamt.c: the hash's low 5 bits). */
static unsigned root_index(unsigned i)
{
	unsigned char key[16];
	size_t klen = make_key(i, key);
	return (unsigned)(hamt_hash(key, klen) & 31);
}

static void test_borrowing_retention_bounded(void **unused)
{
	/* Many one-key versions, each released as soon as the next exists: the
	 * small values no version holds any more stay alive through borrowed
	 * slots, at most HAMT_BORROW_CHAIN * HAMT_BORROW_DROPS per live node. The
	 * keys changed are leaves of the root (alone at their root index), so
	 * one node is involved. */
	enum { ROUNDS = 100, KEYS = 16 };
	unsigned hot[4], nhot = 0;
	for (unsigned i = 0; i < KEYS && nhot < 4; i++) {
		unsigned same = 0;
		for (unsigned j = 0; j < KEYS; j++)
			same += root_index(j) == root_index(i);
		if (same == 1)
			hot[nhot++] = i;
	}
	assert_true(nhot >= 2);
	hamt m = small_map(KEYS);
	hamt_leaf *seen[ROUNDS];
	unsigned max_kept = 0;
	for (int r = 0; r < ROUNDS; r++) {
		hamt prev = hamt_retain(&m);
		unsigned key = hot[(unsigned)r % nhot];
		seen[r] = leaf_of(key, 20);
		atomic_fetch_add(&seen[r]->refs, 1);
		assert_ok(hamt_set(&m, seen[r], hamt_edit_token()));
		hamt_release(&prev);
		unsigned kept = 0;
		for (int k = 0; k <= r; k++)
			if (leaf_refs(seen[k]) > 1 &&
			    find_key(&m, hot[(unsigned)k % nhot]) != seen[k])
				kept++;
		assert_true(kept <= HAMT_BORROW_CHAIN * HAMT_BORROW_DROPS);
		max_kept = kept > max_kept ? kept : max_kept;
	}
	/* Borrowing did happen (else nothing would be kept). */
	assert_true(max_kept > 0);
	hamt_release(&m);
	for (int r = 0; r < ROUNDS; r++) {
		assert_int_equal(leaf_refs(seen[r]), 1);
		hamt_leaf_release(seen[r]);
	}
}

static void test_bytes_equal(void **unused)
{
	/* Every length around the inline cases (0-3, 4-7, 8-16, longer), equal
	 * and differing in each single byte. */
	unsigned char a[40], b[40];
	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (unsigned char)(i * 37 + 1);
	for (size_t n = 0; n <= 33; n++) {
		memcpy(b, a, sizeof(a));
		assert_true(hamt_bytes_equal(a, b, n));
		for (size_t i = 0; i < n; i++) {
			b[i] ^= 0x40;
			assert_false(hamt_bytes_equal(a, b, n));
			b[i] ^= 0x40;
		}
		b[n] ^= 1; /* past the end: not compared */
		assert_true(hamt_bytes_equal(a, b, n));
	}
}

static void test_empty_map(void **unused)
{
	hamt m = {0};
	hamt_cursor c;
	hamt_cursor_init(&c, &m);
	assert_null(hamt_cursor_next(&c));
	const hamt_leaf *batch[4];
	hamt_cursor_init(&c, &m);
	assert_int_equal(hamt_cursor_fill(&c, batch, 4), 0);
	assert_null(hamt_find(&m, hamt_hash("k", 1), "k", 1));
	assert_int_equal(hamt_del(&m, hamt_hash("k", 1), "k", 1, hamt_edit_token()), CTX_NOT_FOUND);
	hamt r = hamt_retain(&m);
	assert_null(r.root);
	hamt_release(&r);
	hamt_release(&m);

	/* Leaves: zero-length value, binary key, hash as hamt_hash. */
	hamt_leaf *l = hamt_leaf_new("\0k\0", 3, NULL, 0);
	assert_non_null(l);
	assert_true(hamt_leaf_hash(l) == hamt_hash("\0k\0", 3));
	assert_int_equal(l->vlen, 0);
	assert_memory_equal(hamt_leaf_key(l), "\0k\0", 3);
	assert_ok(hamt_set(&m, l, hamt_edit_token()));
	assert_int_equal(m.count, 1);
	assert_int_equal(m.bytes, 3);
	const hamt_leaf *f = hamt_find(&m, hamt_hash("\0k\0", 3), "\0k\0", 3);
	assert_ptr_equal(f, l);
	assert_null(hamt_find(&m, hamt_hash("\0k", 2), "\0k", 2));
	hamt_release(&m);
	assert_null(m.root);
	assert_int_equal(m.count, 0);
	assert_int_equal(m.bytes, 0);
}

static void test_leaf_layout(void **unused)
{
	/* The key follows the header with no padding, and a leaf is one
	 * allocation of header + key + value: a 6-byte key and a 64-byte value
	 * (ctxbench memory's payload) take a 96-byte malloc chunk (88 usable
	 * bytes), not 112 as with the 28-byte header that held a position hash,
	 * or 128 as with the 40-byte one that held a checksum too. */
	enum { N = 64 };
	char val[64];
	memset(val, 'v', sizeof(val));
	hamt_leaf *l[N];
	size_t least = SIZE_MAX;
	for (int i = 0; i < N; i++) {
		l[i] = hamt_leaf_new("key000", 6, val, sizeof(val));
		assert_non_null(l[i]);
		size_t u = pool_usable_size(l[i]);
		assert_true(u >= HAMT_LEAF_HEADER + 6 + sizeof(val));
		least = u < least ? u : least;
	}
	assert_int_equal(HAMT_LEAF_HEADER, 18);
	assert_int_equal(hamt_leaf_klen(l[0]), 6);
	assert_ptr_equal(hamt_leaf_key(l[0]), (const unsigned char *)l[0] + 18);
	assert_ptr_equal(hamt_leaf_value(l[0]), (const unsigned char *)l[0] + 24);
	/* malloc may hand out a bigger free chunk now and then: the smallest. */
	assert_true(least <= 88);
	assert_true(hamt_leaf_sum(l[0]) == hamt_content_hash("key000", 6, val, sizeof(val)));
	for (int i = 0; i < N; i++)
		hamt_leaf_release(l[i]);
}

static void test_hash_function(void **unused)
{
	/* Deterministic within the process, sensitive to every byte and to the
	 * length (a sanity check, not a quality test). */
	unsigned char k[32] = {0};
	uint64_t h = hamt_hash(k, sizeof(k));
	assert_true(h == hamt_hash(k, sizeof(k)));
	assert_true(h != hamt_hash(k, sizeof(k) - 1));
	for (size_t i = 0; i < sizeof(k); i++) {
		k[i] = 1;
		assert_true(hamt_hash(k, sizeof(k)) != h);
		k[i] = 0;
	}
}

#define TOKENS_PER_THREAD 5000

static void *token_thread(void *arg)
{
	uint64_t *out = arg;
	for (int i = 0; i < TOKENS_PER_THREAD; i++)
		out[i] = hamt_edit_token();
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_edit_tokens_unique(void **unused)
{
	enum { T = 4 };
	uint64_t *all = malloc(sizeof(uint64_t) * T * TOKENS_PER_THREAD);
	assert_non_null(all);
	pthread_t th[T];
	for (int i = 0; i < T; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, token_thread, all + (size_t)i * TOKENS_PER_THREAD),
		    0);
	for (int i = 0; i < T; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	qsort(all, T * TOKENS_PER_THREAD, sizeof(uint64_t), cmp_u64);
	for (size_t i = 1; i < T * TOKENS_PER_THREAD; i++)
		assert_true(all[i] != all[i - 1]);
	free(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_empty_map, reset_hash),
	    cmocka_unit_test_setup(test_bytes_equal, reset_hash),
	    cmocka_unit_test_setup(test_copy_takes_no_child_reference, reset_hash),
	    cmocka_unit_test_setup(test_borrowing_frees_large_values, reset_hash),
	    cmocka_unit_test_setup(test_borrowing_retention_bounded, reset_hash),
	    cmocka_unit_test_setup(test_hash_function, reset_hash),
	    cmocka_unit_test_setup(test_leaf_layout, reset_hash),
	    cmocka_unit_test_setup(test_edit_tokens_unique, reset_hash),
	    cmocka_unit_test_setup(test_collision_node_lifecycle, reset_hash),
	    cmocka_unit_test_setup(test_model_real_hash_small, reset_hash),
	    cmocka_unit_test_setup(test_model_real_hash_large, reset_hash),
	    cmocka_unit_test_setup(test_model_collision_groups, reset_hash),
	    cmocka_unit_test_setup(test_model_mixed, reset_hash),
	    cmocka_unit_test_setup(test_model_one_hash, reset_hash),
	    cmocka_unit_test_setup(test_model_shared_prefixes, reset_hash),
	    cmocka_unit_test_setup(test_model_single_changes, reset_hash),
	    cmocka_unit_test_setup(test_in_place_under_one_token, reset_hash),
	    cmocka_unit_test_setup(test_shape_depends_only_on_keys, reset_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
