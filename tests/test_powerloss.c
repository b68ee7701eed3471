/*
 * test_powerloss.c - power cuts that persist pages of unsynced data out of
 * order, under multi-page group commits from 8 writers.
 *
 * Page writeback has no order within a file: after a power cut, a later page
 * of the last group write may be on disk while an earlier one reads as zeros
 * or old bytes. The log then holds a bad record followed by valid ones. None
 * of those records was acknowledged (the group was never fsynced), so the
 * store must open with every acknowledged commit.
 *
 * One iteration:
 *   1. a forked writer opens the directory (durability always, checkpoints
 *      every 256 KiB, so rotations and checkpoints run all along) and runs 8
 *      threads; thread t commits transactions on its own context "w<t>", each
 *      putting "seq" = n and four keys whose values (300..2800 bytes) are a
 *      function of (t, n, key): a group write spans several 4 KiB pages. In
 *      shared memory it notes n as attempted before the commit and as
 *      acknowledged after it returns CTX_OK;
 *   2. the parent kills it 2..30 ms after its open returned, then simulates the power
 *      cut (vfs_sim_crash_with): every 4 KiB page of each file's unsynced
 *      bytes is kept, lost (zeros or garbage) or kept as a random prefix, and
 *      the size survives whole or cut; half of the cuts also lose the
 *      directory entries never fsynced;
 *   3. a forked checker runs ctx_verify (it must accept the directory and
 *      agree with the open), opens it, and checks each thread's context:
 *      seq between acknowledged and attempted, every key the value of that
 *      seq (no half transaction), version = seq + 1 (no commit lost or
 *      doubled). A cut that dropped intact records must have kept them aside
 *      in a torn-*.bin file.
 *
 * A second test creates a data directory under new parent directories under
 * the same simulation, with lost directory entries: the acknowledged commit
 * must survive (the parents are fsynced after mkdir).
 *
 * CTX_POWERLOSS_ITERATIONS=n sets the iterations; CTX_STRESS_SCALE=k
 * multiplies the default count and time budget. The writer process, the
 * kill and the power cut are crash_loop.h's (shared with test_r22_crash.c).
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash_loop.h"
#include "vfs.h"

#define WRITERS   CRASH_WRITERS
#define KEYS      4
#define MAX_VALUE 2800

/* The test's own shared memory (crash_loop.h's `crash` has the rest). */
typedef struct shared {
	uint64_t base[WRITERS]; /* seq recovered before this iteration */
	/* what the checkers saw */
	long iterations;
	long acked_total;       /* commits acknowledged over all iterations */
	long inflight_lost;     /* attempted but not acknowledged, not recovered */
	long torn;              /* iterations whose open cut a tail */
	long torn_with_records; /* ... with intact records after the damage */
	long kept_aside;        /* torn-*.bin files found after those opens */
	long acked_lost;        /* must stay 0 */
} shared;

static shared *sh;

/* ---- the values ------------------------------------------------------------------ */

static uint64_t mix(uint64_t t, uint64_t n, uint64_t k)
{
	uint64_t st =
	    t * 0x9e3779b97f4a7c15ull ^ n * 0xbf58476d1ce4e5b9ull ^ (k + 1) * 0x94d049bb133111ebull;
	return test_rand(&st);
}

static size_t value_of(int t, uint64_t n, int k, unsigned char *buf)
{
	uint64_t st = mix((uint64_t)t, n, (uint64_t)k);
	size_t len = 300 + (size_t)test_rand_below(&st, MAX_VALUE - 300);
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = test_rand(&st);
		memcpy(buf + i, &x, len - i < 8 ? len - i : 8);
	}
	return len;
}

/* ---- the writer ------------------------------------------------------------------ */

static void write_commits(ctx_store *s, int t)
{
	char id[16], key[8];
	snprintf(id, sizeof(id), "w%d", t);
	static _Thread_local unsigned char val[MAX_VALUE + 8];
	for (uint64_t n = sh->base[t] + 1;; n++) {
		ctx_txn *x = NULL;
		ctx_status st = ctx_txn_begin(s, id, &x);
		for (int k = 0; k < KEYS && st == CTX_OK; k++) {
			snprintf(key, sizeof(key), "k%d", k);
			size_t len = value_of(t, n, k, val);
			st = ctx_txn_put(x, key, strlen(key), val, len);
		}
		if (st == CTX_OK)
			st = ctx_txn_put(x, "seq", 3, &n, sizeof(n));
		atomic_store(&crash->attempted[t], n);
		if (st == CTX_OK)
			st = ctx_txn_commit(x, 0, NULL);
		else
			ctx_txn_abort(x);
		if (st != CTX_OK) {
			crash_failf("writer %d: commit %" PRIu64 ": %s: %s", t, n, ctx_strerror(st),
			            ctx_last_error());
			_exit(4);
		}
		atomic_store(&crash->acked[t], n);
	}
}

/* ---- the checker ----------------------------------------------------------------- */

static long count_torn_files(const char *dir)
{
	DIR *d = opendir(dir);
	long n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strncmp(e->d_name, "torn-", 5) == 0;
	if (d)
		closedir(d);
	return n;
}

static int check_thread(ctx_store *s, int t)
{
	char id[16], key[8];
	snprintf(id, sizeof(id), "w%d", t);
	ctx_state *st = NULL;
	ctx_status rc = ctx_get(s, id, &st);
	CHECK(rc == CTX_OK, "%s: %s", id, ctx_strerror(rc));
	const void *v;
	size_t vlen;
	uint64_t seq = 0;
	if (ctx_state_lookup(st, "seq", 3, &v, &vlen)) {
		CHECK(vlen == sizeof(seq), "%s: seq of %zu bytes", id, vlen);
		memcpy(&seq, v, sizeof(seq));
	}
	uint64_t acked = atomic_load(&crash->acked[t]),
	         attempted = atomic_load(&crash->attempted[t]);
	if (acked < sh->base[t])
		acked = sh->base[t];
	if (attempted < sh->base[t])
		attempted = sh->base[t];
	if (seq < acked)
		sh->acked_lost += (long)(acked - seq);
	CHECK(seq >= acked && seq <= attempted,
	      "%s: recovered seq %" PRIu64 ", but %" PRIu64 " acknowledged, %" PRIu64 " attempted",
	      id, seq, acked, attempted);
	CHECK(ctx_state_version(st) == seq + 1, "%s: version %" PRIu64 " at seq %" PRIu64, id,
	      ctx_state_version(st), seq);
	static unsigned char want[MAX_VALUE + 8];
	for (int k = 0; k < KEYS && seq; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		size_t len = value_of(t, seq, k, want);
		CHECK(ctx_state_lookup(st, key, strlen(key), &v, &vlen) && vlen == len &&
		          memcmp(v, want, len) == 0,
		      "%s: %s is not the value of seq %" PRIu64, id, key, seq);
	}
	ctx_state_release(st);
	sh->acked_total += (long)(acked - sh->base[t]);
	if (attempted > acked && seq == acked)
		sh->inflight_lost++;
	sh->base[t] = seq;
	return 0;
}

static int check_main(const char *dir)
{
	ctx_verify_report rep;
	ctx_status st = ctx_verify(dir, &rep);
	CHECK(st == CTX_OK, "ctx_verify: %s: %s", ctx_strerror(st), rep.message);
	long torn_before = count_torn_files(dir);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	st = ctx_open(&o, &s);
	CHECK(st == CTX_OK, "ctx_open: %s: %s", ctx_strerror(st), ctx_last_error());
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	CHECK(rep.last_revision == stats.revision,
	      "verify ends at revision %" PRIu64 ", the open at %" PRIu64, rep.last_revision,
	      stats.revision);
	for (int t = 0; t < WRITERS; t++)
		if (check_thread(s, t))
			return 1;
	ctx_close(s);
	sh->torn += rep.torn_bytes > 0;
	if (rep.torn_records > 0) {
		sh->torn_with_records++;
		long kept = count_torn_files(dir) - torn_before;
		CHECK(kept == 1, "intact records cut, but %ld torn-*.bin files made", kept);
		CHECK(strstr(rep.message, "torn-") != NULL, "verify does not name the file: %s",
		      rep.message);
		sh->kept_aside += kept;
	}
	st = ctx_verify(dir, &rep);
	CHECK(st == CTX_OK && rep.torn_bytes == 0 && strcmp(rep.message, "ok") == 0,
	      "verify after a clean close: %s", rep.message);
	sh->iterations++;
	return 0;
}

/* ---- the loop --------------------------------------------------------------------- */

static int init_main(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	if (ctx_open(&o, &s) != CTX_OK)
		return 1;
	for (int t = 0; t < WRITERS; t++) {
		char id[16];
		snprintf(id, sizeof(id), "w%d", t);
		if (ctx_create(s, id) != CTX_OK)
			return 1;
	}
	ctx_close(s);
	return 0;
}

static void wait_exit0(pid_t pid, const char *what)
{
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s failed (status 0x%x): %s", what, status, crash->fail);
}

static void test_out_of_order_pages(void **unused)
{
	uint64_t seed = test_seed("powerloss pages", 0x9a6e5);
	uint64_t r = seed;
	char *dir = test_make_dir("powerloss");
	sh = crash_setup(sizeof(*sh));
	pid_t pid = crash_fork();
	if (pid == 0)
		exit(init_main(dir));
	wait_exit0(pid, "creating the store");

	long fixed = crash_env_long("CTX_POWERLOSS_ITERATIONS", 0);
	long min = fixed ? fixed : test_iters(200, 40);
	long max = fixed ? fixed : min * 2;
	double budget = (test_slowdown() > 1 ? 40.0 : 25.0) * test_scale(), start = test_now();
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = 256 << 10; /* rotations and checkpoints all along */
	long it = 0;
	for (; it < max && (it < min || test_now() - start < budget); it++) {
		for (int t = 0; t < WRITERS; t++) {
			atomic_store(&crash->attempted[t], sh->base[t]);
			atomic_store(&crash->acked[t], sh->base[t]);
		}
		/* The kill comes 2..30 ms into the writes (whatever the open took),
		 * then the power cut. */
		useconds_t after_us = 2000 + (useconds_t)test_rand_below(&r, 28000);
		crash_writer_killed(it, &o, write_commits, after_us, &r);
		pid = crash_fork();
		if (pid == 0)
			exit(check_main(dir));
		int cs;
		assert_int_equal(waitpid(pid, &cs, 0), pid);
		if (!WIFEXITED(cs) || WEXITSTATUS(cs) != 0)
			fail_msg("iteration %ld (seed %llu) failed: %s; the directory is kept: %s",
			         it, (unsigned long long)seed, crash->fail, dir);
	}
	print_message("power loss, pages out of order: %ld iterations in %.1f s: %ld commits "
	              "acknowledged, %ld lost (must be 0); %ld cuts, %ld of them with intact "
	              "records after the damage (%ld kept aside); %ld in-flight commits lost\n",
	              sh->iterations, test_now() - start, sh->acked_total, sh->acked_lost, sh->torn,
	              sh->torn_with_records, sh->kept_aside, sh->inflight_lost);
	assert_int_equal(sh->iterations, it);
	assert_int_equal(sh->acked_lost, 0);
	assert_true(sh->acked_total > 0);
	crash_teardown();
	test_remove_dir(dir);
	free(dir);
}

/* ---- a new data directory --------------------------------------------------------- */

static int new_dir_writer(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	if (ctx_open(&o, &s) != CTX_OK || ctx_create(s, "x") != CTX_OK ||
	    ctx_put(s, "x", "k", 1, "v", 1, NULL) != CTX_OK)
		return 1;
	atomic_store(&crash->acked[0], 1);
	raise(SIGKILL); /* no close: the crash comes right after the acknowledgement */
	return 2;
}

static int new_dir_check(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	ctx_status st = ctx_open(&o, &s);
	CHECK(st == CTX_OK, "ctx_open: %s: %s", ctx_strerror(st), ctx_last_error());
	ctx_state *x = NULL;
	st = ctx_get(s, "x", &x);
	CHECK(st == CTX_OK, "the acknowledged context is gone (%s)", ctx_strerror(st));
	const void *v;
	size_t n;
	CHECK(ctx_state_lookup(x, "k", 1, &v, &n) && n == 1 && memcmp(v, "v", 1) == 0,
	      "the acknowledged put is gone");
	ctx_state_release(x);
	ctx_close(s);
	return 0;
}

static void test_new_directory_survives(void **unused)
{
	char *base = test_make_dir("powerloss-newdir");
	crash_setup(0);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/a/b/store", base);
	assert_true(vfs_sim_enable());
	vfs_sim_durable_root(base);
	pid_t pid = crash_fork();
	if (pid == 0)
		exit(new_dir_writer(dir));
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(atomic_load(&crash->acked[0]), 1);
	vfs_sim_crash_with(VFS_SIM_CUT | VFS_SIM_ENTRIES, 1);
	vfs_sim_disable();
	pid = crash_fork();
	if (pid == 0)
		exit(new_dir_check(dir));
	wait_exit0(pid, "reopening the new directory after the power cut");
	crash_teardown();
	test_remove_dir(base);
	free(base);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_out_of_order_pages),
	    cmocka_unit_test(test_new_directory_survives),
	};
	if (getenv("CTX_TEST_FILTER")) /* run only the tests matching it */
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
