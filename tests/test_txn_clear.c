/*
 * test_txn_clear.c - ctx_txn_clear: a commit that builds its version from
 * empty maps (round 11, r11-loop).
 *
 * ctxd's `MULTI; DEL k; HSET k f v; EXEC` (and a pipelined DEL k then writes
 * of k) used to commit one deletion per old field: for a hash of 200,000
 * fields, 0.36 s of the event loop, and a log record holding every key. A
 * clear is O(operations): the old version's trie is neither walked nor freed
 * by the commit (it stays in history and is freed by the reclaimer when it
 * leaves), and the log record (type CLEAR) holds the operations only.
 *
 * Checked without timing: the semantics (ops before the clear discarded,
 * metadata gone, keys_changed exact, the old version intact in history,
 * guards, create transactions); the record's size in the log (a few bytes,
 * where 20,000 deletions took over 100 KB); replay of the record from the log
 * alone, after a checkpoint that covers it, and after kill -9 of a writer
 * that was acknowledged (waiting and nowait commits); the version the clear
 * replaced is handed to the reclaimer when it leaves history, not freed by
 * the committing thread (a clear with one put is not `light`), and so are a
 * dropped context's versions (not freed by the flusher); and watchers
 * are told every key the clear changed, by the committer and (nowait) by the
 * call_rcu worker.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reclaim.h"
#include "store.h" /* a version's refs, RCU read-side sections */

/* Fill context id (created if missing) with n keys "k<i>" = "v<i>" and the
 * metadata entry "m" = "x", in one commit. */
static void fill(ctx_store *s, const char *id, long n)
{
	ctx_txn *t;
	if (ctx_txn_begin(s, id, &t) == CTX_NOT_FOUND) {
		assert_ok(ctx_create(s, id));
		assert_ok(ctx_txn_begin(s, id, &t));
	}
	for (long i = 0; i < n; i++) {
		char k[32], v[32];
		int kl = snprintf(k, sizeof(k), "k%ld", i);
		int vl = snprintf(v, sizeof(v), "v%ld", i);
		assert_ok(ctx_txn_put(t, k, (size_t)kl, v, (size_t)vl));
	}
	assert_ok(ctx_txn_meta_put(t, "m", 1, "x", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

/* Clear id and put the NUL-terminated pairs kv[0] = kv[1], ...; guarded
 * by expected (0: none). */
static ctx_status clear_put(ctx_store *s, const char *id, uint64_t expected, const char *const *kv,
                            size_t pairs, bool nowait, uint64_t *rev)
{
	ctx_txn *t;
	ctx_status st = ctx_txn_begin(s, id, &t);
	if (st != CTX_OK)
		return st;
	assert_ok(ctx_txn_put(t, "before", 6, "gone", 4)); /* discarded by the clear */
	assert_ok(ctx_txn_clear(t));
	for (size_t i = 0; i < pairs; i++)
		assert_ok(ctx_txn_put(t, kv[2 * i], strlen(kv[2 * i]), kv[2 * i + 1],
		                      strlen(kv[2 * i + 1])));
	return nowait ? ctx_txn_commit_nowait(t, expected, NULL, rev)
	              : ctx_txn_commit(t, expected, NULL);
}

static const char *const new_pairs[] = {"k1", "v1", "k2", "changed", "z", "new"};

/* What a clear of fill(n) with new_pairs left as version `version` of id
 * (the head or not), and the version before it, whole in history. */
static void expect_cleared(ctx_store *s, const char *id, uint64_t version, long n)
{
	ctx_state *st;
	assert_ok(ctx_get_at(s, id, version, &st));
	assert_int_equal(ctx_state_count(st), 3);
	assert_int_equal(ctx_state_meta_count(st), 0);
	test_expect_str(st, "k1", "v1");
	test_expect_str(st, "k2", "changed");
	test_expect_str(st, "z", "new");
	assert_false(ctx_state_lookup(st, "k0", 2, NULL, NULL));
	assert_false(ctx_state_lookup(st, "before", 6, NULL, NULL));
	ctx_state_release(st);
	/* every old key but k1 removed, k2 changed, z added; k1 kept as it was */
	ctx_history_entry *h;
	size_t nh, found = 0;
	assert_ok(ctx_history(s, id, &h, &nh));
	for (size_t i = 0; i < nh; i++)
		if (h[i].version == version) {
			found++;
			assert_int_equal(h[i].keys_changed, (size_t)n - 1 + 1);
		}
	free(h);
	assert_int_equal(found, 1);
	assert_ok(ctx_get_at(s, id, version - 1, &st));
	assert_int_equal(ctx_state_count(st), (size_t)n);
	assert_int_equal(ctx_state_meta_count(st), 1);
	test_expect_str(st, "k0", "v0");
	ctx_state_release(st);
}

/* ---- semantics ----------------------------------------------------------------------------- */

static void test_clear_semantics(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	fill(s, "c", 1000); /* version 2 */
	assert_ok(clear_put(s, "c", 2, new_pairs, 3, false, NULL));
	expect_cleared(s, "c", 3, 1000);

	/* guarded by a stale version: a conflict, nothing changed */
	assert_int_equal(clear_put(s, "c", 2, new_pairs, 0, false, NULL), CTX_CONFLICT);
	assert_int_equal(test_version_of(s, "c"), 3);

	/* a clear alone empties the context (it stays, at the next version) */
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_clear(t));
	uint64_t v = 0;
	assert_ok(ctx_txn_commit(t, 0, &v));
	assert_int_equal(v, 4);
	ctx_state *st;
	assert_ok(ctx_get(s, "c", &st));
	assert_int_equal(ctx_state_count(st), 0);
	ctx_state_release(st);

	/* in a create transaction it only discards what came before */
	assert_ok(ctx_txn_begin_create(s, "n", &t));
	assert_ok(ctx_txn_put(t, "x", 1, "1", 1));
	assert_ok(ctx_txn_clear(t));
	assert_ok(ctx_txn_put(t, "y", 1, "2", 1));
	assert_ok(ctx_txn_commit(t, 0, &v));
	assert_int_equal(v, 1);
	assert_ok(ctx_get(s, "n", &st));
	assert_int_equal(ctx_state_count(st), 1);
	test_expect_str(st, "y", "2");
	ctx_state_release(st);

	/* aborting a cleared transaction changes nothing */
	assert_ok(ctx_txn_begin(s, "n", &t));
	assert_ok(ctx_txn_clear(t));
	ctx_txn_abort(t);
	assert_true(test_has_str(s, "n", "y", "2"));

	assert_int_equal(ctx_txn_clear(NULL), CTX_INVALID);
	ctx_close(s);
}

/* ---- the log ------------------------------------------------------------------------------- */

static ctx_options dir_options(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.log_prealloc_bytes = 1; /* off: a segment's size is its records' */
	return o;
}

/* Bytes of the log segments in dir. */
static size_t log_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (strncmp(e->d_name, "wal-", 4) != 0)
			continue;
		char path[4096];
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		assert_int_equal(stat(path, &sb), 0);
		n += (size_t)sb.st_size;
	}
	closedir(d);
	return n;
}

/* Remove the checkpoints of dir: the log alone holds the history. */
static void remove_checkpoints(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d));) {
		if (strncmp(e->d_name, "ckpt-", 5) != 0)
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		assert_int_equal(unlink(path), 0);
	}
	closedir(d);
}

#define BIG 20000

/* One small record, replayed from the log alone. */
static void test_clear_record_small_and_replayed(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("txn_clear_log");
	ctx_options o = dir_options(dir);
	ctx_store *s = test_open(&o);
	fill(s, "big", BIG);
	size_t before = log_bytes(dir);
	assert_ok(clear_put(s, "big", 2, new_pairs, 3, false, NULL));
	size_t grew = log_bytes(dir) - before;
	/* the ops and the id: ~40 bytes; deleting 20,000 keys one by one took
	 * ~180 KB */
	if (grew > 256)
		fail_msg("the clearing commit took %zu bytes of log", grew);
	expect_cleared(s, "big", 3, BIG);
	test_put_str(s, "big", "after", "1"); /* version 4, on the cleared one */
	test_close_keeping_log(s);
	remove_checkpoints(dir);
	assert_ok(ctx_open(&o, &s)); /* replays create, fill, clear, put */
	expect_cleared(s, "big", 3, BIG);
	assert_int_equal(test_version_of(s, "big"), 4);
	assert_true(test_has_str(s, "big", "after", "1"));
	assert_true(test_has_str(s, "big", "z", "new"));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A checkpoint taken after the clear holds the cleared version; the log
 * after it replays on top. */
static void test_clear_under_checkpoint(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("txn_clear_ckpt");
	ctx_options o = dir_options(dir);
	ctx_store *s = test_open(&o);
	fill(s, "c", 500);
	assert_ok(clear_put(s, "c", 0, new_pairs, 3, false, NULL));
	assert_ok(ctx_checkpoint(s));
	test_put_str(s, "c", "after", "1");
	assert_ok(clear_put(s, "c", 0, new_pairs, 3, false, NULL)); /* version 5, in the log */
	test_reopen_same(&s, &o, true, "clear under a checkpoint");
	expect_cleared(s, "c", 3, 500);
	assert_int_equal(test_version_of(s, "c"), 5);
	assert_false(test_has_str(s, "c", "after", NULL));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A writer process commits a clear, says so once it is acknowledged
 * (durable), and is killed with SIGKILL: the clear is there after recovery,
 * with the history before it. nowait: ctx_txn_commit_nowait, acknowledged
 * once ctx_durable_revision reaches its revision (ctxd's path). */
/* The writer, in a fresh image (exec'd: no threads of the parent's tests
 * behind it): fill, clear, acknowledge on fd, wait to be killed. */
static _Noreturn void writer_child(const char *dir, bool nowait, int fd)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = SIZE_MAX / 2; /* no checkpoint: the log replays */
	ctx_store *s;
	if (ctx_open(&o, &s) != CTX_OK)
		_exit(2);
	fill(s, "k", BIG);
	uint64_t rev = 0, durable = 0;
	if (clear_put(s, "k", 2, new_pairs, 3, nowait, &rev) != CTX_OK)
		_exit(3);
	while (nowait && ctx_durable_revision(s, &durable) == CTX_OK && durable < rev)
		usleep(100);
	if (nowait && durable < rev)
		_exit(4);
	char ack = 'a';
	if (write(fd, &ack, 1) != 1)
		_exit(5);
	for (;;)
		pause(); /* killed here */
}

static void crash_after_ack(bool nowait)
{
	char *dir = test_make_dir(nowait ? "txn_clear_kill_nowait" : "txn_clear_kill");
	int rfd;
	pid_t pid = test_spawn_child((const char *const[]){dir, nowait ? "1" : "0", NULL}, &rfd);
	char ack = 0;
	ssize_t got = read(rfd, &ack, 1);
	int status = test_kill_child(pid);
	close(rfd);
	if (got != 1)
		fail_msg("the writer did not acknowledge (status %d)", status);
	assert_true(WIFSIGNALED(status));
	ctx_verify_report rep;
	assert_ok(ctx_verify(dir, &rep));
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = test_open(&o);
	assert_int_equal(test_version_of(s, "k"), 3);
	expect_cleared(s, "k", 3, BIG);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_kill9_after_clear(void **unused)
{
	(void)unused;
	crash_after_ack(false);
}

static void test_kill9_after_clear_nowait(void **unused)
{
	(void)unused;
	crash_after_ack(true);
}

/* ---- freeing what the clear replaced ------------------------------------------------------- */

/* The version a clear replaced owns its whole trie: when it leaves history
 * (here at the next commit, history_depth 1), it goes to the reclaimer,
 * never freed by the committing thread, although the clear had one op (a
 * commit of so few ops is `light`, and the version before a light commit
 * is freed by its committer: reclaim.c). Observed as test_reclaim does:
 * inside an RCU read-side section the reclaimer cannot free it, so its
 * count stays 1 where a free on the spot makes it 0. */
static void test_replaced_version_freed_in_background(void **unused)
{
	(void)unused;
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1;
	ctx_store *s = test_open(&o);
	fill(s, "r", 5000); /* version 2 */
	size_t before = reclaim_pending();
	ctx_rcu_read_lock();
	ctx_state *v2;
	assert_ok(ctx_get_at(s, "r", 2, &v2));
	ctx_state_release(v2);                       /* the section keeps the struct readable */
	assert_int_equal(atomic_load(&v2->refs), 2); /* the head's and the visible one's */
	assert_ok(clear_put(s, "r", 2, new_pairs, 1, false, NULL)); /* cuts version 2 */
	assert_int_equal(ctx_get_at(s, "r", 2, &(ctx_state *){NULL}), CTX_NOT_FOUND);
	/* cut and no longer visible: the reclaimer's reference is left (a free
	 * on the spot leaves 0) */
	assert_int_equal(atomic_load(&v2->refs), 1);
	assert_true(reclaim_pending() >= before + 1);
	ctx_rcu_read_unlock();
	ctx_close(s); /* rcu_barrier: the reclaimer ran */
	assert_int_equal(reclaim_pending(), 0);
}

/* A durable drop hands the dropped context's versions to the reclaimer as
 * well: under ctxd the drop is made durable by the log's flusher, which
 * acknowledges every waiting writer only after it, and freeing a big
 * context's versions there held them all. Observed as above: the head's
 * count stays 1 (the reclaimer's) inside the read-side section, where a
 * release on the spot leaves 0. */
static void test_dropped_versions_freed_in_background(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	fill(s, "d", 5000);
	size_t before = reclaim_pending();
	ctx_rcu_read_lock();
	ctx_state *head;
	assert_ok(ctx_get(s, "d", &head));
	ctx_state_release(head);
	assert_ok(ctx_drop(s, "d"));
	assert_int_equal(atomic_load(&head->refs), 1); /* handed over, not freed */
	assert_true(reclaim_pending() >= before + 1);
	ctx_rcu_read_unlock();
	ctx_close(s);
	assert_int_equal(reclaim_pending(), 0);
}

/* ---- watchers ------------------------------------------------------------------------------ */

static bool event_has_key(const ctx_event *e, const char *k)
{
	for (size_t i = 0; i < e->nkeys; i++)
		if (e->klens[i] == strlen(k) && memcmp(e->keys[i], k, e->klens[i]) == 0)
			return true;
	return false;
}

/* Watchers are told the keys a clear removed and those it put, as for the
 * deletions and puts it replaces: by the committer (waiting commit) and by
 * the call_rcu worker (nowait commit, durability always). */
static void watch_clear(ctx_store *s, const char *id, long n, bool nowait)
{
	fill(s, id, n);
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, id, false, 0, &w));
	uint64_t rev = 0;
	assert_ok(clear_put(s, id, 0, new_pairs, 3, nowait, &rev));
	ctx_event *e = NULL;
	assert_ok(ctx_watch_wait(w, 10000, &e));
	assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
	if (nowait)
		assert_int_equal(e->revision, rev);
	char last[32];
	snprintf(last, sizeof(last), "k%ld", n - 1);
	assert_true(event_has_key(e, "k0"));
	assert_true(event_has_key(e, last));
	assert_true(event_has_key(e, "k2"));
	assert_true(event_has_key(e, "z"));
	assert_false(event_has_key(e, "before"));
	/* n - 1 removed or changed, z added; k1 unchanged: maybe named */
	assert_true(e->nkeys >= (size_t)n && e->nkeys <= (size_t)n + 1);
	ctx_event_free(e);
	ctx_watch_close(w);
}

/* Small clears are reported where the commit is (the committer; for a
 * nowait commit the flusher), big ones (over 4096 keys) by the call_rcu
 * worker for a nowait commit. */
static void test_watch_sees_cleared_keys(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	watch_clear(s, "w", 50, false);
	watch_clear(s, "W", 5000, false);
	ctx_close(s);
	char *dir = test_make_dir("txn_clear_watch");
	ctx_options o = dir_options(dir);
	s = test_open(&o);
	watch_clear(s, "w", 50, true);
	watch_clear(s, "W", 5000, true);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--child") == 0)
		writer_child(argv[2], argv[3][0] == '1', atoi(argv[4]));
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clear_semantics),
	    cmocka_unit_test(test_clear_record_small_and_replayed),
	    cmocka_unit_test(test_clear_under_checkpoint),
	    cmocka_unit_test(test_kill9_after_clear),
	    cmocka_unit_test(test_kill9_after_clear_nowait),
	    cmocka_unit_test(test_replaced_version_freed_in_background),
	    cmocka_unit_test(test_dropped_versions_freed_in_background),
	    cmocka_unit_test(test_watch_sees_cleared_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
