/*
 * test_coverage_hamt.c - hamt_diff (src/lib/hamt.h) on every shape of trie,
 * against a naive model.
 *
 * The store only ever builds tries with its keyed hash, so two keys share a
 * full 64-bit hash (a collision node) practically never, and the diff's
 * collision and leaf-against-subtree branches are not reached by the other
 * tests. Here keys get forced hashes (hamt_test_hash_hook: leaves store no
 * hash, hamt_hash itself returns the forced one): identical full hashes, hashes that
 * share long prefixes, and real ones. For random pairs of maps, the second
 * built from the first (so that they share structure, as versions do):
 *   - hamt_diff reports exactly the keys added, removed and changed (by
 *     value), each once, with the right old and new leaves, whatever the
 *     mix of collision nodes, leaves and subtrees on both sides;
 *   - hamt_diff_count agrees, and a map against itself has no difference;
 *   - a callback that fails at its k-th call stops the diff there, for
 *     every k: the status comes back and no further call is made.
 */
#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hamt.h"

#define NKEYS 48
#define MAXV 12

/* A key's forced hash by mode. */
enum mode { REAL, ONE, FEW, PREFIX, MIXED, NMODES };

static const uint64_t H = 0x0123456789abcdefull;

static uint64_t hash_for(enum mode m, unsigned i, uint64_t real)
{
	switch (m) {
	case REAL:
		return real;
	case ONE:
		return H;
	case FEW:
		/* Groups of equal hashes, some differing only in their top bits
		 * (the last level), some at level 0. */
		switch (i % 5) {
		case 0:
		case 1:
			return H;
		case 2:
			return H ^ (1ull << 62);
		case 3:
			return H ^ 1ull;
		default:
			return 0xfedcba9876543210ull ^ (uint64_t)(i % 3);
		}
	case PREFIX:
		return H ^ ((uint64_t)(i % 4) << 55);
	case MIXED:
	default:
		return i % 2 ? real : (i % 4 == 0 ? H : H ^ (1ull << 61));
	}
}

/* The hook: keys "key<i>" get hash_for(hook_mode, i), the two-byte keys of
 * test_diff_shapes H ("k7": H with bit 62 flipped), others their own. */
static enum mode hook_mode = REAL;

static uint64_t forced(const void *key, size_t klen, uint64_t real)
{
	const char *k = key;
	char buf[16];
	if (klen == 2 && k[0] == 'k')
		return k[1] == '7' ? H ^ (1ull << 62) : H;
	if (klen > 3 && klen < sizeof(buf) && memcmp(k, "key", 3) == 0) {
		memcpy(buf, k, klen);
		buf[klen] = 0;
		return hash_for(hook_mode, (unsigned)atoi(buf + 3), real);
	}
	return real;
}

static int install_hook(void **unused)
{
	hook_mode = REAL;
	hamt_test_hash_hook(forced);
	return 0;
}

static int remove_hook(void **unused)
{
	hamt_test_hash_hook(NULL);
	return 0;
}

/* The model of one map: value per key index, or absent. */
typedef struct model {
	bool present[NKEYS];
	unsigned char val[NKEYS][MAXV];
	size_t vlen[NKEYS];
} model;

static size_t key_of(unsigned i, char *k)
{
	return (size_t)sprintf(k, "key%u", i);
}

static void set_key(hamt *m, model *md, enum mode mode, unsigned i, uint64_t edit,
                    uint64_t *rng)
{
	char k[16];
	size_t kl = key_of(i, k);
	unsigned char v[MAXV];
	size_t vl = (size_t)test_rand_below(rng, MAXV + 1);
	for (size_t j = 0; j < vl; j++)
		v[j] = (unsigned char)('a' + test_rand_below(rng, 3));
	hamt_leaf *l = hamt_leaf_new(k, kl, v, vl);
	assert_non_null(l);
	assert_true(hamt_leaf_hash(l) == hash_for(mode, i, hamt_leaf_hash(l)));
	assert_ok(hamt_set(m, l, edit));
	md->present[i] = true;
	memcpy(md->val[i], v, vl);
	md->vlen[i] = vl;
}

static void del_key(hamt *m, model *md, enum mode mode, unsigned i, uint64_t edit)
{
	char k[16];
	size_t kl = key_of(i, k);
	ctx_status st = hamt_del(m, hamt_hash(k, kl), k, kl, edit);
	assert_int_equal(st, md->present[i] ? CTX_OK : CTX_NOT_FOUND);
	md->present[i] = false;
}

/* What the diff reported. */
typedef struct seen {
	int calls;
	int fail_at; /* fail the call with this index (-1: never) */
	int old_of[NKEYS], new_of[NKEYS]; /* 1 + times reported */
	const hamt_leaf *old_leaf[NKEYS], *new_leaf[NKEYS];
	bool reported[NKEYS];
} seen;

static unsigned index_of(const hamt_leaf *l)
{
	char k[16];
	assert_true(hamt_leaf_klen(l) > 3 && hamt_leaf_klen(l) < sizeof(k));
	memcpy(k, hamt_leaf_key(l), hamt_leaf_klen(l));
	k[hamt_leaf_klen(l)] = 0;
	assert_memory_equal(k, "key", 3);
	unsigned i = (unsigned)atoi(k + 3);
	assert_true(i < NKEYS);
	return i;
}

static ctx_status record(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	seen *s = arg;
	if (s->calls++ == s->fail_at)
		return CTX_LIMIT; /* any status other than OK */
	assert_true(old || new_);
	unsigned i = index_of(old ? old : new_);
	if (old && new_)
		assert_int_equal(index_of(new_), i);
	if (s->reported[i])
		fail_msg("key%u reported twice", i);
	s->reported[i] = true;
	s->old_leaf[i] = old;
	s->new_leaf[i] = new_;
	return CTX_OK;
}

static bool same_value(const model *a, const model *b, unsigned i)
{
	return a->vlen[i] == b->vlen[i] && memcmp(a->val[i], b->val[i], a->vlen[i]) == 0;
}

static void check_leaf(const hamt_leaf *l, const model *md, unsigned i)
{
	assert_non_null(l);
	assert_int_equal(l->vlen, md->vlen[i]);
	if (l->vlen)
		assert_memory_equal(hamt_leaf_value(l), md->val[i], l->vlen);
}

/* hamt_diff(a, b) against the models. Returns the number of differences. */
static int check_diff(const hamt *a, const model *ma, const hamt *b, const model *mb)
{
	seen *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->fail_at = -1;
	assert_ok(hamt_diff(a, b, record, s));
	int want = 0;
	for (unsigned i = 0; i < NKEYS; i++) {
		bool in_a = ma->present[i], in_b = mb->present[i];
		bool differs = in_a != in_b || (in_a && !same_value(ma, mb, i));
		want += differs;
		if (!differs) {
			if (s->reported[i])
				fail_msg("key%u reported but unchanged", i);
			continue;
		}
		if (!s->reported[i])
			fail_msg("key%u changed but not reported (a %d, b %d)", i, in_a, in_b);
		if (in_a)
			check_leaf(s->old_leaf[i], ma, i);
		else
			assert_null(s->old_leaf[i]);
		if (in_b)
			check_leaf(s->new_leaf[i], mb, i);
		else
			assert_null(s->new_leaf[i]);
	}
	assert_int_equal(s->calls, want);
	assert_int_equal(hamt_diff_count(a, b), (size_t)want);
	free(s);
	return want;
}

/* A callback failing at call k, for every k: the diff stops there. */
static void check_failures(const hamt *a, const hamt *b, int total)
{
	for (int k = 0; k < total; k++) {
		seen *s = calloc(1, sizeof(*s));
		assert_non_null(s);
		s->fail_at = k;
		assert_int_equal(hamt_diff(a, b, record, s), CTX_LIMIT);
		assert_int_equal(s->calls, k + 1);
		free(s);
	}
}

static void run(enum mode mode, int rounds, uint64_t seed)
{
	uint64_t rng = seed;
	hook_mode = mode;
	for (int r = 0; r < rounds; r++) {
		hamt a = {0};
		model *ma = calloc(1, sizeof(*ma)), *mb = calloc(1, sizeof(*mb));
		assert_non_null(ma);
		assert_non_null(mb);
		/* A random first map: anything from empty to full. */
		unsigned n = (unsigned)test_rand_below(&rng, NKEYS + 1);
		uint64_t edit = hamt_edit_token();
		for (unsigned k = 0; k < n; k++)
			set_key(&a, ma, mode, (unsigned)test_rand_below(&rng, NKEYS), edit, &rng);
		/* The second: a few changes on a shared copy. */
		hamt b = hamt_retain(&a);
		*mb = *ma;
		unsigned changes = (unsigned)test_rand_below(&rng, r % 4 == 0 ? NKEYS : 6);
		edit = hamt_edit_token();
		for (unsigned k = 0; k < changes; k++) {
			unsigned i = (unsigned)test_rand_below(&rng, NKEYS);
			if (test_rand_below(&rng, 3) == 0)
				del_key(&b, mb, mode, i, edit);
			else
				set_key(&b, mb, mode, i, edit, &rng);
		}
		int d = check_diff(&a, ma, &b, mb);
		int back = check_diff(&b, mb, &a, ma);
		assert_int_equal(d, back);
		assert_int_equal(check_diff(&a, ma, &a, ma), 0);
		if (r % 8 == 0) {
			check_failures(&a, &b, d);
			check_failures(&b, &a, d);
		}
		hamt_release(&a);
		hamt_release(&b);
		free(ma);
		free(mb);
	}
}

static void test_diff_real(void **unused)
{
	run(REAL, (int)test_iters(300, 60), test_seed("diff-real", 11));
}

static void test_diff_one_hash(void **unused)
{
	run(ONE, (int)test_iters(300, 60), test_seed("diff-one", 12));
}

static void test_diff_few_hashes(void **unused)
{
	run(FEW, (int)test_iters(600, 120), test_seed("diff-few", 13));
}

static void test_diff_prefixes(void **unused)
{
	run(PREFIX, (int)test_iters(300, 60), test_seed("diff-prefix", 14));
}

static void test_diff_mixed(void **unused)
{
	run(MIXED, (int)test_iters(600, 120), test_seed("diff-mixed", 15));
}

/* The shapes one by one, so that each branch is met for sure. */
static hamt_leaf *leaf(const char *k, const char *v, uint64_t hash)
{
	hamt_leaf *l = hamt_leaf_new(k, strlen(k), v, strlen(v));
	assert_non_null(l);
	assert_true(hamt_leaf_hash(l) == hash); /* forced */
	return l;
}

static void set(hamt *m, const char *k, const char *v, uint64_t hash, uint64_t edit)
{
	assert_ok(hamt_set(m, leaf(k, v, hash), edit));
}

typedef struct log_t {
	int n;
	char text[512];
} log_t;

static ctx_status log_change(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	log_t *lg = arg;
	const hamt_leaf *k = old ? old : new_;
	size_t len = strlen(lg->text);
	snprintf(lg->text + len, sizeof(lg->text) - len, "%s%.*s:%.*s>%.*s", lg->n++ ? " " : "",
	         (int)hamt_leaf_klen(k), (const char *)hamt_leaf_key(k), old ? (int)old->vlen : 1,
	         old ? (const char *)hamt_leaf_value(old) : "-", new_ ? (int)new_->vlen : 1,
	         new_ ? (const char *)hamt_leaf_value(new_) : "-");
	return CTX_OK;
}

/* The changes as a sorted, space-separated list (the diff's order is the
 * trie's). */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void expect_diff(const hamt *a, const hamt *b, const char *want)
{
	log_t lg = {0};
	assert_ok(hamt_diff(a, b, log_change, &lg));
	char *parts[32];
	int n = 0;
	for (char *p = strtok(lg.text, " "); p && n < 32; p = strtok(NULL, " "))
		parts[n++] = p;
	qsort(parts, (size_t)n, sizeof(parts[0]), cmp_str);
	char got[512] = "";
	for (int i = 0; i < n; i++) {
		strcat(got, i ? " " : "");
		strcat(got, parts[i]);
	}
	assert_string_equal(got, want);
}

/* Counts its calls (arg[0]) and fails the one with index arg[1]. */
static ctx_status fail_after(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	int *c = arg;
	return c[0]++ == c[1] ? CTX_LIMIT : CTX_OK;
}

static void test_diff_shapes(void **unused)
{
	const uint64_t h1 = H, h2 = H ^ (1ull << 62); /* equal up to the last level */
	uint64_t e1 = hamt_edit_token();

	/* Collision node against collision node (same full hash): kept,
	 * changed, removed and added keys. */
	hamt a = {0};
	set(&a, "k1", "1", h1, e1);
	set(&a, "k2", "2", h1, e1);
	set(&a, "k3", "3", h1, e1);
	hamt b = hamt_retain(&a);
	uint64_t e2 = hamt_edit_token();
	set(&b, "k2", "X", h1, e2);
	assert_ok(hamt_del(&b, h1, "k3", 2, e2));
	set(&b, "k4", "4", h1, e2);
	expect_diff(&a, &b, "k2:2>X k3:3>- k4:->4");
	expect_diff(&b, &a, "k2:X>2 k3:->3 k4:4>-");

	/* A single leaf against a subtree ending in a collision node that
	 * holds its key (changed or not) or not. */
	hamt c = {0};
	set(&c, "k1", "1", h1, hamt_edit_token());
	expect_diff(&c, &a, "k2:->2 k3:->3");
	expect_diff(&a, &c, "k2:2>- k3:3>-");
	hamt d = {0};
	set(&d, "k1", "other", h1, hamt_edit_token());
	expect_diff(&d, &a, "k1:other>1 k2:->2 k3:->3");
	hamt e = {0};
	set(&e, "k9", "9", h1, hamt_edit_token()); /* same hash, another key */
	expect_diff(&e, &a, "k1:->1 k2:->2 k3:->3 k9:9>-");
	expect_diff(&a, &e, "k1:1>- k2:2>- k3:3>- k9:->9");

	/* A leaf against a subtree without its position at some level. */
	hamt f = {0};
	set(&f, "k7", "7", h2, hamt_edit_token());
	expect_diff(&f, &a, "k1:->1 k2:->2 k3:->3 k7:7>-");

	/* Two leaves in one slot, different keys. */
	hamt g = {0};
	set(&g, "k5", "5", h1, hamt_edit_token());
	expect_diff(&c, &g, "k1:1>- k5:->5");

	/* Failures from inside each of those shapes come back. */
	for (int k = 0; k < 5; k++) {
		const hamt *pairs[][2] = {{&a, &b}, {&b, &a}, {&c, &a}, {&a, &c}, {&e, &a},
		                          {&a, &e}, {&d, &a}, {&f, &a}, {&a, &f}, {&c, &g}};
		for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
			int calls[2] = {0, k};
			ctx_status st = hamt_diff(pairs[p][0], pairs[p][1], fail_after, calls);
			int total = (int)hamt_diff_count(pairs[p][0], pairs[p][1]);
			assert_int_equal(st, k < total ? CTX_LIMIT : CTX_OK);
			assert_int_equal(calls[0], k < total ? k + 1 : total);
		}
	}
	hamt_release(&a);
	hamt_release(&b);
	hamt_release(&c);
	hamt_release(&d);
	hamt_release(&e);
	hamt_release(&f);
	hamt_release(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_diff_shapes),    cmocka_unit_test(test_diff_real),
	        cmocka_unit_test(test_diff_one_hash),  cmocka_unit_test(test_diff_few_hashes),
	        cmocka_unit_test(test_diff_prefixes),  cmocka_unit_test(test_diff_mixed),
	};
	if (getenv("CTX_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, install_hook, remove_hook);
}
