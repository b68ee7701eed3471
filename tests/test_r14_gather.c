/*
 * test_r14_gather.c - ctx_gather_begin/end (round 14, r14-server): a
 * thread's nowait commits between them wake the log's flusher once, at the
 * end, so they share one sync; nothing is acknowledged early; a thread that
 * waits for durability inside the bracket is not left waiting for itself.
 *
 * The flusher waits for work without a timeout and is woken only by the
 * append that makes a batch non-empty (or a checkpoint's rotation, which
 * this store's defaults do not reach with a few small records), so
 * "nothing synced while gathered" is exact here, not a matter of timing.
 */
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define COMMITS 20

static uint64_t nowait_put(ctx_store *s, const char *k)
{
	ctx_txn *t;
	uint64_t rev = 0;
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_put(t, k, strlen(k), "v", 1));
	assert_ok(ctx_txn_commit_nowait(t, 0, NULL, &rev));
	return rev;
}

static uint64_t syncs(ctx_store *s)
{
	ctx_stats st;
	ctx_get_stats(s, &st);
	return st.log_syncs;
}

static uint64_t durable(ctx_store *s)
{
	uint64_t d = 0;
	assert_ok(ctx_durable_revision(s, &d));
	return d;
}

static ctx_store *open_always(char **dir)
{
	*dir = test_make_dir("r14_gather");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = *dir;
	o.durability = CTX_DURABILITY_ALWAYS;
	ctx_store *s = test_open(&o);
	ctx_txn *t;
	assert_ok(ctx_txn_begin_create(s, "c", &t));
	assert_ok(ctx_txn_commit(t, 0, NULL)); /* waits: the flusher is idle after */
	return s;
}

/* Wait (no deadline but the test's) until rev is durable, via a notifier. */
static void wait_durable(ctx_store *s, uint64_t rev)
{
	ctx_notifier *n;
	assert_ok(ctx_notifier_open(s, &n));
	ctx_notifier_want(n, rev);
	while (durable(s) < rev) {
		struct pollfd p = {ctx_notifier_fd(n), POLLIN, 0};
		poll(&p, 1, -1);
		ctx_notifier_clear(n);
	}
	ctx_notifier_close(n);
}

/* A waiting commit, then a pause for the flusher to go back to waiting for
 * work: a flusher still finishing that batch's round (notifiers, the
 * zeroer) when the next record comes takes it without being woken, and a
 * try that sees this is repeated (the pause is not an assertion). */
static void settle(ctx_store *s, const char *k)
{
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_put(t, k, strlen(k), "v", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	usleep(20 * 1000);
}

#define TRIES 20

/* One try: true if the flusher stayed idle throughout the bracket. */
static bool gather_once(ctx_store *s, int try)
{
	settle(s, "settle");
	uint64_t syncs0 = syncs(s), durable0 = durable(s);
	ctx_gather_begin(s);
	ctx_gather_begin(s); /* nested: only the outer end wakes the flusher */
	uint64_t last = 0;
	for (int i = 0; i < COMMITS; i++) {
		char k[32];
		snprintf(k, sizeof(k), "k%d.%d", try, i);
		last = nowait_put(s, k);
	}
	ctx_gather_end(s);
	usleep(50 * 1000); /* a flusher woken by the first commit syncs now */
	bool idle = syncs(s) == syncs0;
	if (idle)
		assert_int_equal(durable(s), durable0); /* nothing acknowledged early */
	assert_true(last > durable0);
	ctx_gather_end(s);
	wait_durable(s, last);
	if (idle)
		assert_int_equal(syncs(s), syncs0 + 1); /* all COMMITS in one batch */
	return idle;
}

static void test_gathered_commits_share_one_sync(void **unused)
{
	(void)unused;
	char *dir;
	ctx_store *s = open_always(&dir);
	int try = 0;
	while (!gather_once(s, try))
		if (++try == TRIES)
			fail_msg("the flusher synced inside the bracket in %d tries out of %d", TRIES,
			         TRIES);

	/* Without the bracket the first commit wakes the flusher at once. */
	uint64_t syncs0 = syncs(s);
	uint64_t rev = nowait_put(s, "alone");
	wait_durable(s, rev);
	assert_int_equal(syncs(s), syncs0 + 1);

	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A waiting commit inside the bracket, after a nowait one that held the
 * batch back: it wakes the flusher itself and returns durable. */
static void test_waiting_commit_inside_is_not_stuck(void **unused)
{
	(void)unused;
	char *dir;
	ctx_store *s = open_always(&dir);
	ctx_gather_begin(s);
	uint64_t first = nowait_put(s, "a");
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_put(t, "b", 1, "v", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	assert_true(durable(s) > first);
	ctx_gather_end(s);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Another thread's commit joins a batch this thread holds back: it is
 * acknowledged once the bracket ends, never before. */
static void *other_commit(void *arg)
{
	ctx_store *s = arg;
	ctx_txn *t;
	if (ctx_txn_begin(s, "c", &t) != CTX_OK || ctx_txn_put(t, "o", 1, "v", 1) != CTX_OK ||
	    ctx_txn_commit(t, 0, NULL) != CTX_OK)
		return (void *)1;
	return NULL;
}

static bool other_once(ctx_store *s, int try)
{
	settle(s, "settle");
	uint64_t syncs0 = syncs(s);
	char k[32];
	snprintf(k, sizeof(k), "m%d", try);
	ctx_gather_begin(s);
	uint64_t mine = nowait_put(s, k);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, other_commit, s), 0);
	usleep(50 * 1000);
	bool idle = syncs(s) == syncs0;
	if (idle)
		assert_true(durable(s) < mine); /* still held, the other one too */
	ctx_gather_end(s);
	void *ret;
	pthread_join(th, &ret);
	assert_null(ret);
	assert_true(durable(s) > mine);
	return idle;
}

static void test_other_thread_waits_for_the_end(void **unused)
{
	(void)unused;
	char *dir;
	ctx_store *s = open_always(&dir);
	int try = 0;
	while (!other_once(s, try))
		if (++try == TRIES)
			fail_msg("the flusher synced inside the bracket in %d tries out of %d", TRIES,
			         TRIES);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gathered_commits_share_one_sync),
	    cmocka_unit_test(test_waiting_commit_inside_is_not_stuck),
	    cmocka_unit_test(test_other_thread_waits_for_the_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
