/*
 * test_replay_light.c - versions rebuilt by log replay are marked `light`
 * exactly as the commits that wrote them were (src/lib/recovery.c,
 * reclaim.c).
 *
 * A version cut from history after a light commit (at most
 * RECLAIM_LIGHT_OPS ops) is freed by the thread that cut it, at once; after
 * a larger one it goes to the reclaimer. Replay must mark the versions it
 * rebuilds the same way: it cuts one version per record once history is
 * full, and handing each to the reclaimer's thread cost 6-23% more CPU
 * in replaying one-put commits (docs/benchmarks.md, "Round 3: recovery and
 * checkpoints"): the replaying thread's malloc then finds its memory freed
 * into its arena by another thread. Observed as test_reclaim.c
 * does, without timing: inside an RCU read-side section no grace period
 * ends, so a version handed to the reclaimer still has its reference (1)
 * where one freed on the spot has none (0), its struct still readable.
 *
 * The log is written by a forked child that leaves with _exit, so that no
 * closing checkpoint covers it and the reopen replays every record. The
 * fork comes first, while this process has no library threads.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reclaim.h"
#include "store.h" /* the refs and light flag of a version, RCU sections */

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = 2;
	return test_open(&o);
}

/* One transaction of n puts on id (returns false on failure: used in the
 * child too, where cmocka's asserts cannot report). */
static bool put_n(ctx_store *s, const char *id, long n, int gen)
{
	ctx_txn *t;
	if (ctx_txn_begin(s, id, &t) != CTX_OK)
		return false;
	for (long i = 0; i < n; i++) {
		char k[32], v[32];
		int kl = snprintf(k, sizeof(k), "k%ld", i);
		int vl = snprintf(v, sizeof(v), "g%d-%ld", gen, i);
		if (ctx_txn_put(t, k, (size_t)kl, v, (size_t)vl) != CTX_OK)
			return false;
	}
	return ctx_txn_commit(t, 0, NULL) == CTX_OK;
}

/* The child: context "a" gets versions 2 (100 ops), 3 (17 ops: not light)
 * and 4 (16 ops: light); context "b" versions 2 (16 ops) and 3 (17 ops).
 * Each is synced (durability always) before the next; then it dies without
 * closing. */
static void write_log_and_die(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = 2;
	ctx_store *s;
	const long light = RECLAIM_LIGHT_OPS;
	bool ok = ctx_open(&o, &s) == CTX_OK && ctx_create(s, "a") == CTX_OK &&
	          ctx_create(s, "b") == CTX_OK && put_n(s, "a", 100, 0) &&
	          put_n(s, "a", light + 1, 1) && put_n(s, "a", light, 2) &&
	          put_n(s, "b", light, 0) && put_n(s, "b", light + 1, 1);
	_exit(ok ? 0 : 1);
}

static ctx_state *peek_version(ctx_store *s, const char *id, uint64_t version)
{
	ctx_state *st;
	assert_ok(ctx_get_at(s, id, version, &st));
	ctx_state_release(st);
	return st;
}

static void test_replayed_versions_are_light_as_written(void **unused)
{
	char *dir = test_make_dir("replay_light");
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		write_log_and_die(dir);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	ctx_store *s = open_dir(dir);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoint_revision, 0); /* all of it was replayed */

	rcu_barrier(); /* what replay handed to the reclaimer is freed */
	ctx_rcu_read_lock();
	size_t before = reclaim_pending();
	ctx_state *a3 = peek_version(s, "a", 3), *a4 = peek_version(s, "a", 4);
	ctx_state *b2 = peek_version(s, "b", 2), *b3 = peek_version(s, "b", 3);
	assert_false(a3->light);
	assert_true(a4->light);
	assert_false(b3->light);
	/* a's version 5 cuts version 3, whose successor 4 was light: freed by
	 * this thread at once. */
	assert_true(put_n(s, "a", 1, 3));
	assert_int_equal(atomic_load(&a3->refs), 0);
	assert_int_equal(reclaim_pending(), before);
	/* b's version 4 cuts version 2, whose successor 3 was not light: the
	 * reclaimer takes it. */
	assert_true(put_n(s, "b", 1, 2));
	assert_int_equal(atomic_load(&b2->refs), 1);
	assert_int_equal(reclaim_pending(), before + 1);
	ctx_rcu_read_unlock();

	ctx_close(s);
	assert_int_equal(reclaim_pending(), 0);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_replayed_versions_are_light_as_written),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
