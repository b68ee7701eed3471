/*
 * test_r16_hscan_close.c - ctx_close_at_exit, the close ctxd stops with (round 16,
 * r16-hscan).
 *
 * ctxd took tens of seconds to stop with a big store: ctx_close freed every
 * node and leaf of every version one by one (80% of the stop in
 * node_release), memory the process's exit gives back anyway.
 * ctx_close_at_exit keeps what ctx_close keeps (final checkpoint, the log
 * synced and closed, the directory unlocked) and leaves the memory to the
 * exit. Checked: under durability always and batch, every commit (waiting
 * and nowait) is there when the directory is opened again in the same
 * process (which also shows the lock was let go), and the final checkpoint
 * was written; a memory-only store with
 * an open watch and a held-back history closes, and the library serves a
 * new store afterwards. (A new function: without the change this does not
 * build; no time is asserted.)
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define KEYS 3000
#define PER  100 /* puts per waiting commit */
#define LATE 50  /* nowait commits after them */

static void fill(ctx_store *s)
{
	assert_int_equal(ctx_create(s, "big"), CTX_OK);
	char k[32], v[32];
	for (int i = 0; i < KEYS; i += PER) {
		ctx_txn *t;
		assert_int_equal(ctx_txn_begin(s, "big", &t), CTX_OK);
		for (int j = i; j < i + PER; j++) {
			int kn = snprintf(k, sizeof(k), "k%d", j),
			    vn = snprintf(v, sizeof(v), "v%d", j);
			assert_int_equal(ctx_txn_put(t, k, (size_t)kn, v, (size_t)vn), CTX_OK);
		}
		assert_int_equal(ctx_txn_commit(t, 0, NULL), CTX_OK);
	}
	for (int i = 0; i < LATE; i++) {
		ctx_txn *t;
		int kn = snprintf(k, sizeof(k), "late%d", i);
		assert_int_equal(ctx_txn_begin(s, "big", &t), CTX_OK);
		assert_int_equal(ctx_txn_put(t, k, (size_t)kn, "x", 1), CTX_OK);
		assert_int_equal(ctx_txn_commit_nowait(t, 0, NULL, NULL), CTX_OK);
	}
}

static void check(ctx_store *s)
{
	ctx_state *st;
	assert_int_equal(ctx_get(s, "big", &st), CTX_OK);
	assert_int_equal(ctx_state_count(st), KEYS + LATE);
	char k[32], v[32];
	for (int i = 0; i < KEYS; i += 7) {
		int kn = snprintf(k, sizeof(k), "k%d", i), vn = snprintf(v, sizeof(v), "v%d", i);
		const void *val;
		size_t vlen;
		assert_true(ctx_state_lookup(st, k, (size_t)kn, &val, &vlen));
		assert_int_equal(vlen, (size_t)vn);
		assert_memory_equal(val, v, (size_t)vn);
	}
	assert_true(ctx_state_lookup(st, "late49", 6, NULL, NULL));
	ctx_state_release(st);
}

/* The files of dir whose names start with prefix. */
static int files_named(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

static void close_at_exit_keeps(ctx_durability durability, const char *name)
{
	char *dir = test_make_dir(name);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = durability;
	ctx_store *s;
	assert_int_equal(ctx_open(&o, &s), CTX_OK);
	fill(s);
	ctx_close_at_exit(s);
	/* the final checkpoint was written */
	assert_true(files_named(dir, "ckpt-") >= 1);
	assert_int_equal(ctx_open(&o, &s), CTX_OK); /* not "locked" */
	check(s);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_close_at_exit_always(void **state)
{
	(void)state;
	close_at_exit_keeps(CTX_DURABILITY_ALWAYS, "r16_exit_always");
}

static void test_close_at_exit_batch(void **state)
{
	(void)state;
	close_at_exit_keeps(CTX_DURABILITY_BATCH, "r16_exit_batch");
}

/* A memory-only store with history, a watch closed before and events kept
 * closes; then a new store works (the pool and the threads it shares with
 * other stores are intact). */
static void test_close_at_exit_memory(void **state)
{
	(void)state;
	ctx_close_at_exit(NULL);
	ctx_options o;
	ctx_options_init(&o);
	o.watch_keep_history = true;
	ctx_store *s;
	assert_int_equal(ctx_open(&o, &s), CTX_OK);
	ctx_watch *w;
	assert_int_equal(ctx_watch_open(s, "big", false, 0, &w), CTX_OK);
	fill(s);
	ctx_watch_close(w);
	ctx_close_at_exit(s);
	s = test_open_memory();
	fill(s);
	check(s);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_close_at_exit_always),
	    cmocka_unit_test(test_close_at_exit_batch),
	    cmocka_unit_test(test_close_at_exit_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
