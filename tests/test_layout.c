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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_context_has_no_padding),
	    cmocka_unit_test(test_leaf_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
