/*
 * test_r12_notify.c - a notifier told which revision its loop waits for
 * (ctx_notifier_want) is signalled after the batch that makes that revision
 * durable, and not after batches that release nothing it waits for; one that
 * was never told (want 0) is signalled after every batch, as before.
 */
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static bool readable(ctx_notifier *n, int timeout_ms)
{
	struct pollfd p = {ctx_notifier_fd(n), POLLIN, 0};
	return poll(&p, 1, timeout_ms) == 1;
}

/* A blocking commit: returns once its revision is durable. */
static uint64_t put(ctx_store *s, const char *k)
{
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_put(t, k, strlen(k), "v", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	uint64_t d = 0;
	assert_ok(ctx_durable_revision(s, &d));
	return d;
}

/* The flusher writes the eventfds of one batch in one pass under the store's
 * notifier lock; opening (and closing) a notifier takes that lock, so after
 * it every write of a pass that had begun is done. */
static void after_pass(ctx_store *s)
{
	ctx_notifier *x;
	assert_ok(ctx_notifier_open(s, &x));
	ctx_notifier_close(x);
}

static void test_notifier_signals_only_what_is_wanted(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r12_notify");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_ALWAYS;
	ctx_store *s = test_open(&o);
	ctx_txn *t;
	assert_ok(ctx_txn_begin_create(s, "c", &t));
	assert_ok(ctx_txn_commit(t, 0, NULL));

	ctx_notifier *every, *none, *later;
	assert_ok(ctx_notifier_open(s, &every)); /* never told: every batch */
	assert_ok(ctx_notifier_open(s, &none));
	assert_ok(ctx_notifier_open(s, &later));
	ctx_notifier_want(none, UINT64_MAX); /* no reply waits */

	uint64_t d = put(s, "a");
	ctx_notifier_want(later, d + 2); /* waits for the second commit from now */
	assert_true(readable(every, -1));
	after_pass(s);
	assert_false(readable(none, 0));
	ctx_notifier_clear(every);
	ctx_notifier_clear(later); /* (may have been signalled before its want) */

	/* The next batch reaches d + 1 only: nothing for `later` or `none`. */
	assert_int_equal(put(s, "b"), d + 1);
	assert_true(readable(every, -1));
	after_pass(s);
	assert_false(readable(none, 0));
	assert_false(readable(later, 0));
	ctx_notifier_clear(every);

	/* d + 2 is what `later` waits for. */
	assert_int_equal(put(s, "c"), d + 2);
	assert_true(readable(later, -1));
	assert_true(readable(every, -1));
	after_pass(s);
	assert_false(readable(none, 0));

	ctx_notifier_close(every);
	ctx_notifier_close(none);
	ctx_notifier_close(later);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_notifier_signals_only_what_is_wanted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
