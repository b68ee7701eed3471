/*
 * test_r23_tracker_bytes.c - ctx_tracker_pending_bytes counts what a
 * tracker's unsynced edits hold (round 23), so that ctxd can bound them
 * (CTX.TSET/TDEL against client-query-buffer-limit: tests/server/
 * test_r23_tracker_limit.c).
 *
 * The count is kept as edits come and go (O(1) to read), so every path
 * that changes an edit must keep it: puts that replace a value with a
 * bigger or smaller one, deletes, a sync (all edits gone: back to 0), a
 * refresh that drops the edits the newest version holds, a manual sync's
 * conflicts resolved either way, and edits made while a sync runs (from
 * the merge function: a frozen edit is replaced by a copy). The figure is
 * checked against the bytes the edits' keys and values hold, with at most
 * EDIT_OVERHEAD bytes of bookkeeping an edit plus the table's slots; and
 * it returns to exactly 0 whenever no edit is pending (the table checks
 * its count reaches 0 with the last edit: an assert in debug builds).
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bookkeeping an edit may add to its key and values' bytes (the record,
 * the blob headers) and a table slot's share (the table keeps at most
 * 4 slots per edit once it has 4 or more, 16 before). */
#define EDIT_OVERHEAD 256
#define SLOTS_MAX(n)  (((n) < 4 ? 16 : 4 * (n)) * sizeof(void *))

static void check_bytes(ctx_tracker *t, size_t payload, size_t edits)
{
	size_t got = ctx_tracker_pending_bytes(t);
	size_t most = payload + edits * EDIT_OVERHEAD + SLOTS_MAX(edits);
	if (got < payload || got > most)
		fail_msg("pending bytes %zu, want %zu..%zu (%zu edits)", got, payload, most, edits);
	assert_int_equal(ctx_tracker_pending(t), edits);
}

static char *filled(size_t n, char c)
{
	char *p = malloc(n);
	assert_non_null(p);
	memset(p, c, n);
	return p;
}

static void test_puts_and_deletes(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	assert_ok(ctx_put(s, "c", "a", 1, "base", 4, NULL));
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "c", NULL, &t));
	assert_int_equal(ctx_tracker_pending_bytes(t), 0);
	assert_int_equal(ctx_tracker_pending_bytes(NULL), 0);

	char *big = filled(100000, 'x');
	assert_ok(ctx_tracker_put(t, "key1", 4, big, 100000));
	check_bytes(t, 4 + 100000, 1);
	/* The same key with a smaller value: the big one's bytes are gone. */
	assert_ok(ctx_tracker_put(t, "key1", 4, "small", 5));
	check_bytes(t, 4 + 5, 1);
	assert_true(ctx_tracker_pending_bytes(t) < 10000);
	/* And bigger again. */
	assert_ok(ctx_tracker_put(t, "key1", 4, big, 50000));
	check_bytes(t, 4 + 50000, 1);
	/* A delete holds its key only. */
	assert_ok(ctx_tracker_del(t, "key1", 4));
	check_bytes(t, 4, 1);
	assert_ok(ctx_tracker_del(t, "a", 1));
	check_bytes(t, 4 + 1, 2);

	/* Many edits: the figure follows their bytes. */
	size_t payload = 4 + 1;
	char key[32];
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof(key), "k%04d", i);
		size_t vlen = 100 + (size_t)i;
		assert_ok(ctx_tracker_put(t, key, (size_t)n, big, vlen));
		payload += (size_t)n + vlen;
	}
	check_bytes(t, payload, 1002);

	/* A sync takes them all: back to exactly 0. */
	uint64_t v;
	assert_ok(ctx_tracker_sync(t, &v));
	assert_int_equal(ctx_tracker_pending_bytes(t), 0);
	assert_int_equal(ctx_tracker_pending(t), 0);
	/* A failed edit adds nothing. */
	assert_int_equal(ctx_tracker_put(t, "", 0, "v", 1) == CTX_OK, false);
	assert_int_equal(ctx_tracker_pending_bytes(t), 0);

	free(big);
	ctx_tracker_close(t);
	ctx_close(s);
}

/* A refresh drops the edits the newest version already holds and keeps
 * the others, with their bytes. */
static void test_refresh(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "c", NULL, &t));
	char *big = filled(20000, 'y');
	assert_ok(ctx_tracker_put(t, "same", 4, big, 20000));
	assert_ok(ctx_tracker_put(t, "mine", 4, big, 3000));
	check_bytes(t, 8 + 23000, 2);
	/* Another writer makes "same" what the tracker has. */
	assert_ok(ctx_put(s, "c", "same", 4, big, 20000, NULL));
	assert_ok(ctx_tracker_refresh(t));
	check_bytes(t, 4 + 3000, 1);
	assert_ok(ctx_tracker_sync(t, NULL));
	assert_int_equal(ctx_tracker_pending_bytes(t), 0);
	free(big);
	ctx_tracker_close(t);
	ctx_close(s);
}

/* Manual conflicts resolved both ways, then synced. Taking the current
 * value makes the edit's value the version's (held by the version, not
 * the tracker): the local copy's bytes go. */
static void test_manual_resolve(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	assert_ok(ctx_put(s, "c", "p", 1, "0", 1, NULL));
	assert_ok(ctx_put(s, "c", "q", 1, "0", 1, NULL));
	ctx_tracker_options o = {.strategy = CTX_MERGE_MANUAL};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "c", &o, &t));
	char *big = filled(30000, 'z');
	assert_ok(ctx_tracker_put(t, "p", 1, big, 30000));
	assert_ok(ctx_tracker_put(t, "q", 1, big, 10000));
	assert_ok(ctx_put(s, "c", "p", 1, "remote", 6, NULL));
	assert_ok(ctx_put(s, "c", "q", 1, "remote", 6, NULL));
	T_CHECK_STATUS(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	check_bytes(t, 2 + 40000, 2);
	assert_ok(ctx_tracker_resolve(t, "p", 1, false)); /* take the current */
	check_bytes(t, 2 + 10000, 2);
	assert_true(ctx_tracker_pending_bytes(t) < 10000 + 2 + 2 * EDIT_OVERHEAD + SLOTS_MAX(2));
	assert_ok(ctx_tracker_resolve(t, "q", 1, true)); /* keep the local */
	check_bytes(t, 2 + 10000, 2);
	assert_ok(ctx_tracker_sync(t, NULL));
	assert_int_equal(ctx_tracker_pending_bytes(t), 0);
	size_t vlen;
	assert_ok(ctx_get_value(s, "c", "q", 1, big, 30000, &vlen));
	assert_int_equal(vlen, 10000);
	free(big);
	ctx_tracker_close(t);
	ctx_close(s);
}

/* Edits made while a sync runs (here from its merge function): one of a
 * key the sync holds frozen (replaced in the table by a copy) and one of
 * a new key. After the sync only they are pending, with their bytes; the
 * next sync takes them. */
typedef struct merge_ctx {
	ctx_tracker *t;
	const char *big;
	int calls;
} merge_ctx;

static ctx_status merge_and_edit(void *arg, const ctx_conflict *c, ctx_merge_value *out)
{
	merge_ctx *m = arg;
	if (m->calls++ == 0) {
		assert_ok(ctx_tracker_put(m->t, "k", 1, m->big, 7000)); /* frozen */
		assert_ok(ctx_tracker_put(m->t, "later", 5, m->big, 5000));
	}
	*out = c->local;
	return CTX_OK;
}

static void test_edits_during_sync(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	assert_ok(ctx_put(s, "c", "k", 1, "0", 1, NULL));
	char *big = filled(9000, 'w');
	merge_ctx m = {NULL, big, 0};
	ctx_tracker_options o = {
	    .strategy = CTX_MERGE_FUNCTION, .merge = merge_and_edit, .merge_arg = &m};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "c", &o, &t));
	m.t = t;
	assert_ok(ctx_tracker_put(t, "k", 1, big, 9000));
	assert_ok(ctx_put(s, "c", "k", 1, "remote", 6, NULL)); /* a conflict: the merge runs */
	check_bytes(t, 1 + 9000, 1);
	assert_ok(ctx_tracker_sync(t, NULL));
	assert_true(m.calls >= 1);
	/* "k"'s later edit (7000) and "later" stay pending; a base value of
	 * its own counts too, bounded by the synced value (9000). */
	size_t got = ctx_tracker_pending_bytes(t);
	assert_int_equal(ctx_tracker_pending(t), 2);
	assert_true(got >= 1 + 7000 + 5 + 5000);
	assert_true(got <= 1 + 7000 + 9000 + 5 + 5000 + 2 * EDIT_OVERHEAD + SLOTS_MAX(2));
	m.calls = 1; /* no more edits from the merge */
	assert_ok(ctx_tracker_sync(t, NULL));
	assert_int_equal(ctx_tracker_pending_bytes(t), 0);
	assert_int_equal(ctx_tracker_pending(t), 0);
	free(big);
	ctx_tracker_close(t);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_puts_and_deletes),
	    cmocka_unit_test(test_refresh),
	    cmocka_unit_test(test_manual_resolve),
	    cmocka_unit_test(test_edits_during_sync),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
