/*
 * test_layout.c - the memory budget of the structures every key and every
 * context pays for (docs/benchmarks.md, "Round 3: memory per key").
 *
 * ctxbench memory stores 16 keys of 6 + 64 bytes per context; what it
 * measures per key is a leaf, a share of the trie nodes (a root and the pair
 * nodes below it), and a sixteenth of the context and of its version
 * (docs/benchmarks.md, "Round 4: memory per key"). These sizes are that
 * budget, on LP64 glibc: a field added to one of them must be paid for here,
 * knowingly.
 */
#include "testutil.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hamt.h"
#include "pool.h"
#include "store.h"

static void test_context_has_no_padding(void **unused)
{
	/* 22 bytes of padding between small fields, once: 224 bytes. */
	if (sizeof(void *) != 8)
		skip();
	assert_true(sizeof(ctx_context) <= 208);
	/* The rcu_head shares ctx and hidden_seq's words: 136 bytes, a
	 * 144-byte chunk (152 and 160 with a head of its own). */
	assert_true(sizeof(ctx_state) <= 136);
}

static void test_leaf_header(void **unused)
{
	/* No content hash and no position hash in the leaf, a 16-bit key
	 * length, no padding before the key: 18 bytes (28 with the position
	 * hash, 40 with a checksum and 4 bytes of padding too). */
	assert_int_equal(HAMT_LEAF_HEADER, 18);
	hamt_leaf *l = hamt_leaf_new("k", 1, "v", 1);
	assert_non_null(l);
	assert_ptr_equal(hamt_leaf_key(l), (const unsigned char *)l + HAMT_LEAF_HEADER);
	hamt_leaf_release(l);
}

/* Key i of test_root_sized_to_its_keys lands in root slot i. */
static uint64_t slot_per_key(const void *key, size_t klen, uint64_t hash)
{
	(void)klen;
	(void)hash;
	const char *k = key;
	return (uint64_t)((k[1] - '0') * 10 + (k[2] - '0'));
}

/* A map built by one transaction (one edit token) grows its nodes two slots
 * at a time up to 16: 12 keys in 12 root slots take a 120-byte root (a
 * 128-byte chunk), where growth by half (4, 6, 10, 16) left a 16-slot root
 * of 152 bytes (160). */
static void test_root_sized_to_its_keys(void **unused)
{
	if (sizeof(void *) != 8)
		skip();
	hamt_test_hash_hook(slot_per_key);
	hamt m = {0};
	uint64_t edit = hamt_edit_token();
	char key[4];
	for (int i = 0; i < 12; i++) {
		snprintf(key, sizeof(key), "k%02d", i);
		hamt_leaf *l = hamt_leaf_new(key, 3, "v", 1);
		assert_non_null(l);
		assert_int_equal(hamt_set(&m, l, edit), CTX_OK);
	}
	assert_int_equal(m.count, 12);
	for (int i = 0; i < 12; i++) {
		snprintf(key, sizeof(key), "k%02d", i);
		assert_non_null(hamt_find(&m, hamt_hash(key, 3), key, 3));
	}
	assert_true(pool_usable_size(m.root) <= 120);
	hamt_release(&m);
	hamt_test_hash_hook(NULL);
}

/* Key "kNN" goes to root slot 0 and, one level down, to slot NN. */
static uint64_t one_root_slot(const void *key, size_t klen, uint64_t hash)
{
	(void)klen;
	(void)hash;
	const char *k = key;
	return (uint64_t)((k[1] - '0') * 10 + (k[2] - '0')) << 5;
}

static void add_usable(const void *node, void *arg)
{
	*(size_t *)arg += pool_usable_size((void *)node);
}

static size_t node_bytes(const hamt *m)
{
	size_t n = 0;
	hamt_test_walk_nodes(m, add_usable, &n);
	return n;
}

static void put(hamt *m, int i, const char *val, uint64_t edit)
{
	char key[4];
	snprintf(key, sizeof(key), "k%02d", i);
	hamt_leaf *l = hamt_leaf_new(key, 3, val, strlen(val));
	assert_non_null(l);
	assert_int_equal(hamt_set(m, l, edit), CTX_OK);
}

/* The value of key i in m, or NULL. */
static const char *get(const hamt *m, int i)
{
	static char out[16];
	char key[4];
	snprintf(key, sizeof(key), "k%02d", i);
	const hamt_leaf *l = hamt_find(m, hamt_hash(key, 3), key, 3);
	if (!l)
		return NULL;
	assert_true(l->vlen < sizeof(out));
	memcpy(out, hamt_leaf_value(l), l->vlen);
	out[l->vlen] = 0;
	return out;
}

/* Two keys that share a root slot go one level down into a pair node of 24
 * bytes (a 32-byte chunk), not a 2-slot bitmap node of 40 (48). */
static void test_pair_node_is_small(void **unused)
{
	if (sizeof(void *) != 8)
		skip();
	hamt_test_hash_hook(one_root_slot);
	hamt m = {0};
	uint64_t edit = hamt_edit_token();
	put(&m, 0, "a", edit);
	size_t root = node_bytes(&m);
	put(&m, 1, "b", edit);
	assert_true(node_bytes(&m) - root <= 24);
	assert_string_equal(get(&m, 0), "a");
	assert_string_equal(get(&m, 1), "b");
	assert_null(get(&m, 2));
	assert_null(get(&m, 33)); /* root slot 1: not in the pair's slot */
	hamt_release(&m);
	hamt_test_hash_hook(NULL);
}

static ctx_status count_diff(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	(void)old;
	(void)new_;
	(*(int *)arg)++;
	return CTX_OK;
}

/* Pair nodes are never changed: a later version copies them (borrowing), the
 * build that made one moves it into a bitmap node, and every version keeps
 * its content (ASan: no leak, no double free). */
static void test_pair_nodes_across_versions(void **unused)
{
	hamt_test_hash_hook(one_root_slot);
	hamt v1 = {0};
	uint64_t e1 = hamt_edit_token();
	put(&v1, 0, "a", e1);
	put(&v1, 1, "b", e1);
	put(&v1, 2, "c", e1); /* the same build: the pair becomes a bitmap node */
	put(&v1, 5, "x", e1);
	put(&v1, 6, "y", e1); /* root slot 0 now holds a node of 5 slots */
	hamt w1 = {0};
	put(&w1, 3, "d", e1);
	put(&w1, 4, "e", e1); /* a pair, published with w1 */

	hamt w2 = hamt_retain(&w1);
	uint64_t e2 = hamt_edit_token();
	put(&w2, 4, "E", e2); /* a copy of the published pair */
	assert_string_equal(get(&w1, 4), "e");
	assert_string_equal(get(&w2, 4), "E");
	assert_string_equal(get(&w2, 3), "d");
	int n = 0;
	assert_int_equal(hamt_diff(&w1, &w2, count_diff, &n), CTX_OK);
	assert_int_equal(n, 1);

	hamt w3 = hamt_retain(&w1);
	uint64_t e3 = hamt_edit_token();
	put(&w3, 7, "f", e3); /* a third key next to the published pair */
	assert_int_equal(hamt_del(&w3, hamt_hash("k03", 3), "k03", 3, e3), CTX_OK);
	assert_null(get(&w3, 3));
	assert_string_equal(get(&w3, 4), "e");
	assert_string_equal(get(&w3, 7), "f");
	assert_string_equal(get(&w1, 3), "d");
	n = 0;
	assert_int_equal(hamt_diff(&w1, &w3, count_diff, &n), CTX_OK);
	assert_int_equal(n, 2);

	hamt w4 = hamt_retain(&w1);
	uint64_t e4 = hamt_edit_token();
	assert_int_equal(hamt_del(&w4, hamt_hash("k04", 3), "k04", 3, e4), CTX_OK);
	assert_int_equal(w4.count, 1);
	assert_string_equal(get(&w4, 3), "d");
	assert_string_equal(get(&w1, 4), "e");

	for (int i = 0; i < 7; i++)
		assert_non_null(get(&v1, i == 3 || i == 4 ? 5 : i));
	n = 0;
	assert_int_equal(hamt_diff(&v1, &w1, count_diff, &n), CTX_OK);
	assert_int_equal(n, 7);
	hamt_cursor c;
	hamt_cursor_init(&c, &v1);
	int seen = 0;
	while (hamt_cursor_next(&c))
		seen++;
	assert_int_equal(seen, 5);
	hamt_release(&v1);
	hamt_release(&w4);
	hamt_release(&w3);
	hamt_release(&w2);
	hamt_release(&w1);
	hamt_test_hash_hook(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_context_has_no_padding),
	    cmocka_unit_test(test_leaf_header),
	    cmocka_unit_test(test_root_sized_to_its_keys),
	    cmocka_unit_test(test_pair_node_is_small),
	    cmocka_unit_test(test_pair_nodes_across_versions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
