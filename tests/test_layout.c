/*
 * test_layout.c - the memory budget of the structures every key and every
 * context pays for (docs/benchmarks.md, "Round 3: memory per key").
 *
 * ctxbench memory stores 16 keys of 6 + 64 bytes per context; what it
 * measures per key is a leaf, a share of the trie nodes, and a sixteenth of
 * the context and of its two versions. These sizes are that budget, on LP64
 * glibc: a field added to one of them must be paid for here, knowingly.
 */
#include "testutil.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hamt.h"
#include "store.h"

static void test_context_has_no_padding(void **unused)
{
	/* 22 bytes of padding between small fields, once: 224 bytes. */
	if (sizeof(void *) != 8)
		skip();
	assert_true(sizeof(ctx_context) <= 208);
	assert_true(sizeof(ctx_state) <= 152);
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
	assert_true(malloc_usable_size(m.root) <= 120);
	hamt_release(&m);
	hamt_test_hash_hook(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_context_has_no_padding),
	    cmocka_unit_test(test_leaf_header),
	    cmocka_unit_test(test_root_sized_to_its_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
