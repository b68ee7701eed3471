/*
 * test_r15_review.c - round 15's review of what round 14 merged (r15-review),
 * through the public header: the paths a change of round 14 made risky.
 *
 * - A tracker sync's commit takes keys_changed from its operations without
 *   a diff (txn_promise_distinct): random syncs (local puts, deletes and
 *   puts again of one key, deletes of absent keys, values equal to the
 *   current ones; a remote commit before the sync) under latest and oldest:
 *   the sync's keys_changed is the number of keys ctx_diff_states finds
 *   between its version and the one before, and a durable store's replayed
 *   history says the same.
 * - The reaper sleeps with no deadline until the first time-to-live is set
 *   (round 14); recovery raises the mark instead. A time-to-live that comes
 *   back from the final checkpoint, or from the log alone, still has the
 *   reaper drop its context once it expires, untouched (ctx_count is no
 *   access), with no call that would wake it.
 * - Opening and closing with and without a first time-to-live (which kicks
 *   the reaper) and with a log that grew (which wakes the checkpointer that
 *   waits with no timeout) never hangs: ctx_close returns every time.
 * - Replay reads 4 KiB ahead in mapped segments (round 14): a log cut at
 *   every offset near the 4 KiB marks and at a stride elsewhere (segments
 *   shorter than the window included) opens with a prefix of the commits,
 *   each one whole, and more of them the further the cut.
 */
#include "testutil.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 1700000000000000ull /* µs since 1970 */

static _Atomic uint64_t fake_now = T0;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load(&fake_now);
}

/* ---- a sync's keys_changed -------------------------------------------------------------- */

#define KEYSPACE 24

static void key_of(char *buf, size_t cap, uint64_t i)
{
	snprintf(buf, cap, "k%02u", (unsigned)i);
}

/* One of three values, so that puts often equal what is there. */
static void value_of(char *buf, size_t cap, uint64_t i)
{
	snprintf(buf, cap, "v%u", (unsigned)(i % 3));
}

static size_t diff_count(ctx_store *s, const char *id, uint64_t from, uint64_t to)
{
	ctx_state *a, *b;
	assert_ok(ctx_get_at(s, id, from, &a));
	assert_ok(ctx_get_at(s, id, to, &b));
	ctx_diff *d;
	assert_ok(ctx_diff_states(a, b, &d));
	size_t n = ctx_diff_count(d);
	ctx_diff_free(d);
	ctx_state_release(a);
	ctx_state_release(b);
	return n;
}

static size_t history_keys_changed(ctx_store *s, const char *id, uint64_t version)
{
	ctx_history_entry *h;
	size_t n;
	assert_ok(ctx_history(s, id, &h, &n));
	size_t changed = (size_t)-1;
	for (size_t i = 0; i < n; i++)
		if (h[i].version == version)
			changed = h[i].keys_changed;
	free(h);
	if (changed == (size_t)-1)
		fail_msg("version %llu of '%s' is not in its history", (unsigned long long)version,
		         id);
	return changed;
}

/* One random scenario on context id; returns the sync's version (0: the
 * sync committed nothing). */
static uint64_t random_sync(ctx_store *s, const char *id, uint64_t *r)
{
	char k[8], v[8];
	assert_ok(ctx_create(s, id));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, id, &t));
	for (uint64_t i = 0; i < KEYSPACE; i++)
		if (test_rand_below(r, 4)) {
			key_of(k, sizeof(k), i);
			value_of(v, sizeof(v), test_rand(r));
			assert_ok(ctx_txn_put(t, k, strlen(k), v, strlen(v)));
		}
	assert_ok(ctx_txn_commit(t, 0, NULL));
	ctx_tracker_options o = {.strategy =
	                             test_rand_below(r, 2) ? CTX_MERGE_LATEST : CTX_MERGE_OLDEST};
	ctx_tracker *tr;
	assert_ok(ctx_tracker_open(s, id, &o, &tr));
	uint64_t edits = 1 + test_rand_below(r, 40); /* past 16: no pairwise check either */
	for (uint64_t e = 0; e < edits; e++) {
		key_of(k, sizeof(k), test_rand_below(r, KEYSPACE));
		if (test_rand_below(r, 3) == 0) {
			assert_ok(ctx_tracker_del(tr, k, strlen(k)));
		} else {
			value_of(v, sizeof(v), test_rand(r));
			assert_ok(ctx_tracker_put(tr, k, strlen(k), v, strlen(v)));
		}
		atomic_fetch_add(&fake_now, 1);
	}
	/* The remote side: puts, deletes, a delete and a put of one key. */
	assert_ok(ctx_txn_begin(s, id, &t));
	for (uint64_t i = 0, n = test_rand_below(r, 10); i < n; i++) {
		key_of(k, sizeof(k), test_rand_below(r, KEYSPACE));
		value_of(v, sizeof(v), test_rand(r));
		assert_ok(test_rand_below(r, 2) ? ctx_txn_put(t, k, strlen(k), v, strlen(v))
		                                : ctx_txn_del(t, k, strlen(k)));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
	atomic_fetch_add(&fake_now, 1);
	uint64_t before = test_version_of(s, id), after = 0;
	assert_ok(ctx_tracker_sync(tr, &after));
	ctx_tracker_close(tr);
	uint64_t now = test_version_of(s, id);
	return now > before ? now : 0;
}

static void check_sync(ctx_store *s, const char *id, uint64_t v)
{
	size_t want = diff_count(s, id, v - 1, v), got = history_keys_changed(s, id, v);
	if (got != want)
		fail_msg("'%s' version %llu: keys_changed %zu, the diff finds %zu", id,
		         (unsigned long long)v, got, want);
}

static void test_sync_keys_changed_random(void **unused)
{
	(void)unused;
	uint64_t seed = test_seed("r15 sync keys_changed", 0x5eed15), r = seed;
	ctx_store *s = test_open_memory();
	long n = test_iters(400, 60), synced = 0;
	for (long i = 0; i < n; i++) {
		char id[16];
		snprintf(id, sizeof(id), "c%d", (int)i);
		uint64_t v = random_sync(s, id, &r);
		if (v) {
			check_sync(s, id, v);
			synced++;
		}
	}
	ctx_close(s);
	assert_true(synced > n / 2);

	/* Durable, then replayed. */
	char *dir = test_make_dir("r15_review_sync");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	s = test_open(&o);
	enum { DURABLE = 40 };
	uint64_t versions[DURABLE];
	for (int i = 0; i < DURABLE; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d%d", i);
		versions[i] = random_sync(s, id, &r);
	}
	test_close_keeping_log(s);
	s = test_open(&o);
	for (int i = 0; i < DURABLE; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d%d", i);
		if (versions[i])
			check_sync(s, id, versions[i]);
	}
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* ---- the reaper after a reopen -------------------------------------------------------- */

static ctx_store *open_clocked(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.clock_us = fake_clock;
	o.reaper_ms = 10;
	return test_open(&o);
}

/* Wait until ctx_count is n (it is no access: it wakes nobody). */
static void wait_count(ctx_store *s, size_t n)
{
	double t0 = test_now();
	while (ctx_count(s) != n && test_now() - t0 < 20)
		usleep(5000);
	assert_int_equal(ctx_count(s), n);
}

static void reaper_after_reopen(bool log_only)
{
	char *dir = test_make_dir("r15_review_ttl");
	atomic_store(&fake_now, T0);
	ctx_store *s = open_clocked(dir);
	assert_ok(ctx_create(s, "keep"));
	assert_ok(ctx_create(s, "short"));
	assert_ok(ctx_set_ttl(s, "short", 10000)); /* 10 s on the fake clock */
	char *from = dir;
	if (log_only) {
		test_close_keeping_log(s);
		from = test_make_dir("r15_review_ttl_log");
		char cmd[8192];
		snprintf(cmd, sizeof(cmd), "cp '%s'/wal-*.log '%s'/", dir, from);
		assert_int_equal(system(cmd), 0);
	} else {
		ctx_close(s);
	}
	atomic_store(&fake_now, T0 + 1000000); /* 1 s: alive at the open */
	s = open_clocked(from);
	assert_int_equal(ctx_count(s), 2);
	usleep(50000); /* the reaper's rounds find nothing expired */
	assert_int_equal(ctx_count(s), 2);
	atomic_store(&fake_now, T0 + 20000000); /* expired: the reaper alone drops it */
	wait_count(s, 1);
	ctx_close(s);
	s = open_clocked(from);
	assert_int_equal(ctx_count(s), 1); /* dropped durably */
	ctx_close(s);
	if (from != dir) {
		test_remove_dir(from);
		free(from);
	}
	test_remove_dir(dir);
	free(dir);
}

static void test_reaper_after_reopen_checkpoint(void **unused)
{
	(void)unused;
	reaper_after_reopen(false);
}

static void test_reaper_after_reopen_log_only(void **unused)
{
	(void)unused;
	reaper_after_reopen(true);
}

/* ---- open and close never hang -------------------------------------------------------- */

static void test_open_close_cycles(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r15_review_cycles");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = 4096; /* the checkpointer wakes for most cycles' writes */
	char big[1500];
	memset(big, 'x', sizeof(big));
	long n = test_iters(40, 10);
	for (long i = 0; i < n; i++) {
		ctx_store *s = test_open(&o);
		char id[16];
		snprintf(id, sizeof(id), "c%d", (int)i);
		switch (i % 4) {
		case 0: /* idle */
			break;
		case 1: /* the first time-to-live of this open kicks the reaper */
			assert_ok(ctx_create(s, id));
			assert_ok(ctx_set_ttl(s, id, 3600000));
			break;
		case 2: /* past checkpoint_bytes: the checkpointer wakes */
			assert_ok(ctx_create(s, id));
			for (int k = 0; k < 4; k++)
				assert_ok(ctx_put(s, id, &"abcd"[k], 1, big, sizeof(big), NULL));
			break;
		default: /* both, and the close comes at once */
			assert_ok(ctx_create(s, id));
			assert_ok(ctx_put(s, id, "k", 1, big, sizeof(big), NULL));
			assert_ok(ctx_set_ttl(s, id, 3600000));
			break;
		}
		ctx_close(s);
	}
	ctx_store *s = test_open(&o);
	assert_int_equal(ctx_count(s), (size_t)(n - (n + 3) / 4));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* ---- a log cut anywhere --------------------------------------------------------------- */

/* The log's first segment (the final checkpoint's rotation left an empty
 * one after it). */
static char *first_segment(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	char *found = NULL;
	for (struct dirent *e; (e = readdir(d));)
		if (strncmp(e->d_name, "wal-", 4) == 0 &&
		    (!found || strcmp(e->d_name, found) < 0)) {
			free(found);
			found = strdup(e->d_name);
		}
	closedir(d);
	assert_non_null(found);
	return found;
}

/* Commit i puts "seq" = i and "v" = i's value (its size varies, so
 * records cross the 4 KiB marks at many offsets). */
static size_t value_size(int i)
{
	return (size_t)(i * 397 % 1400) + 1;
}

static void check_prefix(ctx_store *s, int *last)
{
	ctx_state *st;
	if (ctx_get(s, "c", &st) != CTX_OK) {
		*last = 0; /* its create was cut */
		return;
	}
	const void *p;
	size_t n;
	int seq = 0;
	if (ctx_state_lookup(st, "seq", 3, &p, &n)) {
		char buf[16] = {0};
		memcpy(buf, p, n < 15 ? n : 15);
		seq = atoi(buf);
		assert_true(ctx_state_lookup(st, "v", 1, &p, &n));
		assert_int_equal(n, value_size(seq));
		for (size_t j = 0; j < n; j++)
			assert_int_equal(((const unsigned char *)p)[j], (unsigned char)(seq + j));
	}
	assert_int_equal(ctx_state_version(st), (uint64_t)seq + 1);
	ctx_state_release(st);
	*last = seq;
}

static void test_log_cut_anywhere(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r15_review_cut");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = test_open(&o);
	assert_ok(ctx_create(s, "c"));
	enum { COMMITS = 24 };
	unsigned char val[1500];
	for (int i = 1; i <= COMMITS; i++) {
		char seq[16];
		snprintf(seq, sizeof(seq), "%d", i);
		for (size_t j = 0; j < value_size(i); j++)
			val[j] = (unsigned char)(i + j);
		ctx_txn *t;
		assert_ok(ctx_txn_begin(s, "c", &t));
		assert_ok(ctx_txn_put(t, "seq", 3, seq, strlen(seq)));
		assert_ok(ctx_txn_put(t, "v", 1, val, value_size(i)));
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
	test_close_keeping_log(s);
	char *seg = first_segment(dir);
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, seg);
	size_t size;
	unsigned char *log = test_read_file(path, &size);
	/* The log's end: where its zero tail (preallocation) starts. */
	size_t used = size;
	while (used > 0 && log[used - 1] == 0)
		used--;
	assert_true(used > 2 * 4096);

	char *cut = test_make_dir("r15_review_cut_copy");
	char cut_path[4096];
	snprintf(cut_path, sizeof(cut_path), "%s/%s", cut, seg);
	int prev = 0, cuts = 0;
	for (size_t at = 0; at <= used; at++) {
		bool near_mark = at % 4096 < 4 || at % 4096 > 4092;
		if (!near_mark && at % (size_t)(61 * test_slowdown()) != 0 && at != used)
			continue;
		test_remove_dir(cut);
		assert_int_equal(mkdir(cut, 0700), 0);
		test_write_file(cut_path, log, at);
		ctx_options co;
		ctx_options_init(&co);
		co.dir = cut;
		ctx_store *c = NULL;
		ctx_status st = ctx_open(&co, &c);
		if (st != CTX_OK)
			fail_msg("a log cut at %zu of %zu: %s: %s", at, used, ctx_strerror(st),
			         ctx_last_error());
		int last;
		check_prefix(c, &last);
		ctx_close(c);
		if (last < prev)
			fail_msg("a log cut at %zu holds commit %d, one cut earlier held %d", at,
			         last, prev);
		prev = last;
		cuts++;
	}
	assert_int_equal(prev, COMMITS);
	print_message("  %d cuts of a %zu-byte log\n", cuts, used);
	free(log);
	free(seg);
	test_remove_dir(cut);
	free(cut);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sync_keys_changed_random),
	    cmocka_unit_test(test_reaper_after_reopen_checkpoint),
	    cmocka_unit_test(test_reaper_after_reopen_log_only),
	    cmocka_unit_test(test_open_close_cycles),
	    cmocka_unit_test(test_log_cut_anywhere),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
