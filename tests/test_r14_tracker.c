/*
 * test_r14_tracker.c - a tracker sync's commit counts the keys it changed
 * without a diff of the maps (round 14, docs/benchmarks.md "Round 14:
 * tracker sync and idle background threads (r14-tracker)"), and the sync's
 * result is exactly what it was.
 *
 * - One scenario of 40 base keys, a remote commit and 36 local edits (more
 *   than the 16 operations up to which a commit checks its keys pairwise),
 *   under every strategy (latest, oldest, function, manual): the values,
 *   the conflicts a manual sync lists (base, local and current sides and
 *   their times), keys_changed of the sync's version (equal to the number
 *   of keys ctx_diff_states finds) and every key's time, checked against
 *   what the merge rules say, key by key.
 * - The same scenario in a durable store, closed and opened again: the
 *   replayed history gives the sync's version the same keys_changed.
 * - The commit of a sync of more than 16 edits does no diff of the maps
 *   (txn_test_commit_diffs), where a plain transaction of as many puts
 *   does one: this fails without the change.
 * - A sync whose local edits hold a key twice in its table history (put,
 *   delete, put again) still writes each key once, with the last value.
 * - An idle durable store's background threads (flusher, zeroer,
 *   checkpointer, reaper) do not wake in 1.2 s: the checkpointer used to
 *   wake every second and the reaper every reaper_ms even with no
 *   time-to-live anywhere. The reaper still wakes for the first
 *   time-to-live set and drops the context when it expires.
 */
#include "testutil.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

#define T0 1700000000000000ull /* µs since 1970 */

static _Atomic uint64_t fake_now = T0;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load(&fake_now);
}

static void set_now(uint64_t us)
{
	atomic_store(&fake_now, us);
}

static ctx_store *open_fake(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.clock_us = fake_clock;
	o.reaper_ms = 3600000u;
	return test_open(&o);
}

static void key_name(char *buf, size_t cap, char kind, int i)
{
	snprintf(buf, cap, "%c%02d", kind, i);
}

/* ---- the scenario ------------------------------------------------------ */

/* Times: the base at T0, local edits at T0+5 (older than the remote
 * commit) or T0+20 (newer), the remote commit at T0+10, the sync at T0+30. */
#define T_LOCAL_OLD (T0 + 5)
#define T_REMOTE    (T0 + 10)
#define T_LOCAL_NEW (T0 + 20)
#define T_SYNC      (T0 + 30)

/* What a key is in the scenario:
 *   k00-k04  both changed (local older): a conflict
 *   k05-k09  both changed (local newer): a conflict
 *   k10      deleted remotely, put locally (older): a conflict
 *   k11      deleted remotely, not edited
 *   k12-k14  both set to the same value: no conflict, no write
 *   k15      deleted locally only
 *   k16-k19  changed remotely only
 *   k20-k39  changed locally only
 *   n00-n04  added locally
 * 11 conflicts, 26 local-only changes. */
static void scenario_base(ctx_store *s)
{
	set_now(T0);
	assert_ok(ctx_create(s, "c"));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	for (int i = 0; i < 40; i++) {
		char k[8], v[16];
		key_name(k, sizeof(k), 'k', i);
		snprintf(v, sizeof(v), "base-%02d", i);
		assert_ok(ctx_txn_put(t, k, strlen(k), v, strlen(v)));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

static void scenario_edits(ctx_store *s, ctx_tracker *tr)
{
	char k[8], v[16];
	set_now(T_LOCAL_OLD);
	for (int i = 0; i <= 4; i++) {
		key_name(k, sizeof(k), 'k', i);
		snprintf(v, sizeof(v), "local-%02d", i);
		assert_ok(ctx_tracker_put(tr, k, strlen(k), v, strlen(v)));
	}
	assert_ok(ctx_tracker_put(tr, "k10", 3, "local-10", 8));
	for (int i = 12; i <= 14; i++) {
		key_name(k, sizeof(k), 'k', i);
		snprintf(v, sizeof(v), "same-%02d", i);
		assert_ok(ctx_tracker_put(tr, k, strlen(k), v, strlen(v)));
	}
	assert_ok(ctx_tracker_del(tr, "k15", 3));
	for (int i = 20; i < 40; i++) {
		key_name(k, sizeof(k), 'k', i);
		snprintf(v, sizeof(v), "local-%02d", i);
		assert_ok(ctx_tracker_put(tr, k, strlen(k), v, strlen(v)));
	}
	for (int i = 0; i < 5; i++) {
		key_name(k, sizeof(k), 'n', i);
		snprintf(v, sizeof(v), "new-%02d", i);
		assert_ok(ctx_tracker_put(tr, k, strlen(k), v, strlen(v)));
	}

	/* The remote commit. */
	set_now(T_REMOTE);
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	for (int i = 0; i <= 9; i++) {
		key_name(k, sizeof(k), 'k', i);
		snprintf(v, sizeof(v), "remote-%02d", i);
		assert_ok(ctx_txn_put(t, k, strlen(k), v, strlen(v)));
	}
	assert_ok(ctx_txn_del(t, "k10", 3));
	assert_ok(ctx_txn_del(t, "k11", 3));
	for (int i = 12; i <= 14; i++) {
		key_name(k, sizeof(k), 'k', i);
		snprintf(v, sizeof(v), "same-%02d", i);
		assert_ok(ctx_txn_put(t, k, strlen(k), v, strlen(v)));
	}
	for (int i = 16; i <= 19; i++) {
		key_name(k, sizeof(k), 'k', i);
		snprintf(v, sizeof(v), "remote-%02d", i);
		assert_ok(ctx_txn_put(t, k, strlen(k), v, strlen(v)));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));

	/* The newer local side of k05-k09. */
	set_now(T_LOCAL_NEW);
	for (int i = 5; i <= 9; i++) {
		key_name(k, sizeof(k), 'k', i);
		snprintf(v, sizeof(v), "local-%02d", i);
		assert_ok(ctx_tracker_put(tr, k, strlen(k), v, strlen(v)));
	}
}

/* How a conflict (k00-k10) is decided. */
enum outcome { TAKE_LOCAL, TAKE_REMOTE, TAKE_MERGED };

static enum outcome decided(ctx_merge_strategy st, int i)
{
	switch (st) {
	case CTX_MERGE_LATEST:
		return i >= 5 && i <= 9 ? TAKE_LOCAL : TAKE_REMOTE;
	case CTX_MERGE_OLDEST:
		return i >= 5 && i <= 9 ? TAKE_REMOTE : TAKE_LOCAL;
	case CTX_MERGE_FUNCTION:
		return TAKE_MERGED;
	case CTX_MERGE_MANUAL: /* resolved: even keys local, odd ones current */
		return i % 2 == 0 ? TAKE_LOCAL : TAKE_REMOTE;
	}
	return TAKE_REMOTE;
}

/* The expected value ("" and false: absent) and time of key k after the sync. */
static bool expected(ctx_merge_strategy st, char kind, int i, char *v, size_t cap,
                     uint64_t *time_us, bool *written)
{
	*written = false;
	if (kind == 'n') {
		snprintf(v, cap, "new-%02d", i);
		*time_us = T_SYNC;
		*written = true;
		return true;
	}
	if (i <= 10) {
		enum outcome o = decided(st, i);
		*time_us = T_SYNC;
		*written = o != TAKE_REMOTE;
		if (o == TAKE_MERGED) {
			snprintf(v, cap, "merged-%02d", i);
			return true;
		}
		if (o == TAKE_LOCAL) {
			snprintf(v, cap, "local-%02d", i);
			return true;
		}
		*time_us = T_REMOTE;
		if (i == 10)
			return false;
		snprintf(v, cap, "remote-%02d", i);
		return true;
	}
	if (i == 11)
		return false;
	if (i <= 14) {
		snprintf(v, cap, "same-%02d", i);
		*time_us = T_REMOTE;
		return true;
	}
	if (i == 15) {
		*written = true;
		return false;
	}
	if (i <= 19) {
		snprintf(v, cap, "remote-%02d", i);
		*time_us = T_REMOTE;
		return true;
	}
	snprintf(v, cap, "local-%02d", i);
	*time_us = T_SYNC;
	*written = true;
	return true;
}

static ctx_status merge_fn(void *arg, const ctx_conflict *c, ctx_merge_value *out)
{
	char (*buf)[16] = arg; /* one buffer per key k00-k10: valid until the sync returns */
	const char *k = c->key; /* "kNN", not NUL-terminated */
	int i = (k[1] - '0') * 10 + (k[2] - '0');
	snprintf(buf[i], sizeof(buf[i]), "merged-%02d", i);
	*out = (ctx_merge_value){true, buf[i], strlen(buf[i]), 0};
	return CTX_OK;
}

/* The conflicts of a manual sync: k00-k10, each side as the scenario made it. */
static void check_conflicts(ctx_tracker *tr)
{
	const ctx_conflict *cf = NULL;
	size_t n = ctx_tracker_conflicts(tr, &cf);
	assert_int_equal(n, 11);
	bool seen[11] = {false};
	for (size_t j = 0; j < n; j++) {
		char k[8], want[16];
		assert_int_equal(cf[j].klen, 3);
		memcpy(k, cf[j].key, 3);
		k[3] = 0;
		assert_int_equal(k[0], 'k');
		int i = atoi(k + 1);
		assert_true(i >= 0 && i <= 10 && !seen[i]);
		seen[i] = true;
		snprintf(want, sizeof(want), "base-%02d", i);
		assert_true(cf[j].base.present);
		assert_memory_equal(cf[j].base.value, want, cf[j].base.len);
		snprintf(want, sizeof(want), "local-%02d", i);
		assert_true(cf[j].local.present);
		assert_int_equal(cf[j].local.len, strlen(want));
		assert_memory_equal(cf[j].local.value, want, strlen(want));
		assert_int_equal(cf[j].local.time_us, i >= 5 && i <= 9 ? T_LOCAL_NEW : T_LOCAL_OLD);
		assert_int_equal(cf[j].current.time_us, T_REMOTE);
		if (i == 10) {
			assert_false(cf[j].current.present);
		} else {
			snprintf(want, sizeof(want), "remote-%02d", i);
			assert_true(cf[j].current.present);
			assert_int_equal(cf[j].current.len, strlen(want));
			assert_memory_equal(cf[j].current.value, want, strlen(want));
		}
	}
}

/* keys_changed that ctx_history gives version v of "c". */
static size_t keys_changed(ctx_store *s, uint64_t v)
{
	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_ok(ctx_history(s, "c", &h, &n));
	size_t changed = SIZE_MAX;
	for (size_t i = 0; i < n; i++)
		if (h[i].version == v)
			changed = h[i].keys_changed;
	free(h);
	assert_true(changed != SIZE_MAX);
	return changed;
}

/* Check "c" at version v against the scenario's expectations under st. */
static void check_result(ctx_store *s, ctx_merge_strategy st, uint64_t v)
{
	ctx_state *now, *before;
	assert_ok(ctx_get_at(s, "c", v, &now));
	assert_ok(ctx_get_at(s, "c", v - 1, &before));
	assert_int_equal(ctx_state_updated_us(now), T_SYNC);
	size_t writes = 0, present = 0;
	for (int pass = 0; pass < 2; pass++) {
		char kind = pass ? 'n' : 'k';
		for (int i = 0; i < (pass ? 5 : 40); i++) {
			char k[8], want[16];
			uint64_t want_us = 0, got_us = 0;
			bool written;
			key_name(k, sizeof(k), kind, i);
			bool there = expected(st, kind, i, want, sizeof(want), &want_us, &written);
			writes += written;
			const void *got;
			size_t gl;
			bool has = ctx_state_lookup(now, k, strlen(k), &got, &gl);
			if (has != there)
				fail_msg("%s: %s, want %s", k, has ? "present" : "absent",
				         there ? want : "absent");
			if (!there)
				continue;
			present++;
			if (gl != strlen(want) || memcmp(got, want, gl) != 0)
				fail_msg("%s: '%.*s', want '%s'", k, (int)gl, (const char *)got, want);
			assert_true(ctx_state_key_time(now, k, strlen(k), &got_us));
			if (got_us != want_us)
				fail_msg("%s: time %llu, want %llu", k, (unsigned long long)got_us,
				         (unsigned long long)want_us);
		}
	}
	assert_int_equal(ctx_state_count(now), present);
	ctx_diff *d;
	assert_ok(ctx_diff_states(before, now, &d));
	assert_int_equal(ctx_diff_count(d), writes);
	ctx_diff_free(d);
	assert_int_equal(keys_changed(s, v), writes);
	assert_true(writes > 16); /* past the pairwise check: the promise counts */
	ctx_state_release(before);
	ctx_state_release(now);
}

/* The scenario under st in a store at dir (NULL: memory); the sync's version. */
static uint64_t run_scenario(ctx_store *s, ctx_merge_strategy st)
{
	char bufs[11][16];
	ctx_tracker_options o = {.strategy = st};
	if (st == CTX_MERGE_FUNCTION) {
		o.merge = merge_fn;
		o.merge_arg = bufs;
	}
	scenario_base(s);
	ctx_tracker *tr;
	assert_ok(ctx_tracker_open(s, "c", &o, &tr));
	scenario_edits(s, tr);
	set_now(T_SYNC);
	uint64_t v = 0;
	if (st == CTX_MERGE_MANUAL) {
		assert_int_equal(ctx_tracker_sync(tr, &v), CTX_CONFLICT);
		check_conflicts(tr);
		for (int i = 0; i <= 10; i++) {
			char k[8];
			key_name(k, sizeof(k), 'k', i);
			assert_ok(ctx_tracker_resolve(tr, k, strlen(k), i % 2 == 0));
		}
		assert_int_equal(ctx_tracker_conflicts(tr, NULL), 0);
	}
	assert_ok(ctx_tracker_sync(tr, &v));
	assert_int_equal(v, 4); /* create, base, remote, sync */
	assert_int_equal(ctx_tracker_pending(tr), 0);
	assert_int_equal(ctx_tracker_base_version(tr), v);
	ctx_tracker_close(tr);
	return v;
}

static void scenario_in_memory(ctx_merge_strategy st)
{
	ctx_store *s = open_fake(NULL);
	uint64_t v = run_scenario(s, st);
	check_result(s, st, v);
	ctx_close(s);
}

static void test_latest(void **unused)
{
	(void)unused;
	scenario_in_memory(CTX_MERGE_LATEST);
}

static void test_oldest(void **unused)
{
	(void)unused;
	scenario_in_memory(CTX_MERGE_OLDEST);
}

static void test_function(void **unused)
{
	(void)unused;
	scenario_in_memory(CTX_MERGE_FUNCTION);
}

static void test_manual(void **unused)
{
	(void)unused;
	scenario_in_memory(CTX_MERGE_MANUAL);
}

/* Durable: the log's replay recounts keys_changed with a diff; the same. */
static void test_durable_reopen(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r14_tracker_durable");
	ctx_store *s = open_fake(dir);
	uint64_t v = run_scenario(s, CTX_MERGE_LATEST);
	check_result(s, CTX_MERGE_LATEST, v);
	test_close_keeping_log(s);
	s = open_fake(dir);
	check_result(s, CTX_MERGE_LATEST, v);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* ---- no diff in the sync's commit -------------------------------------- */

static void test_sync_commit_does_no_diff(void **unused)
{
	(void)unused;
	ctx_store *s = open_fake(NULL);
	scenario_base(s);
	/* A plain transaction of 40 puts counts its keys with a diff. */
	size_t d0 = atomic_load(&txn_test_commit_diffs);
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	for (int i = 0; i < 40; i++) {
		char k[8];
		key_name(k, sizeof(k), 'p', i);
		assert_ok(ctx_txn_put(t, k, strlen(k), "plain", 5));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
	assert_int_equal(atomic_load(&txn_test_commit_diffs), d0 + 1);

	/* A sync of 40 edits, one of them put, deleted and put again: no diff,
	 * and every key written once, with its last value. */
	ctx_tracker *tr;
	assert_ok(ctx_tracker_open(s, "c", NULL, &tr));
	for (int i = 0; i < 40; i++) {
		char k[8], v[16];
		key_name(k, sizeof(k), 'k', i);
		snprintf(v, sizeof(v), "tracked-%02d", i);
		if (i == 7) {
			assert_ok(ctx_tracker_put(tr, k, strlen(k), "first", 5));
			assert_ok(ctx_tracker_del(tr, k, strlen(k)));
		}
		assert_ok(ctx_tracker_put(tr, k, strlen(k), v, strlen(v)));
	}
	assert_int_equal(ctx_tracker_pending(tr), 40);
	uint64_t v = 0;
	size_t d1 = atomic_load(&txn_test_commit_diffs);
	assert_ok(ctx_tracker_sync(tr, &v));
	assert_int_equal(atomic_load(&txn_test_commit_diffs), d1);
	assert_int_equal(keys_changed(s, v), 40);
	ctx_state *st;
	assert_ok(ctx_get(s, "c", &st));
	assert_int_equal(ctx_state_count(st), 80);
	const void *got;
	size_t gl;
	assert_true(ctx_state_lookup(st, "k07", 3, &got, &gl));
	assert_int_equal(gl, 10);
	assert_memory_equal(got, "tracked-07", 10);
	ctx_state_release(st);
	ctx_tracker_close(tr);
	ctx_close(s);
}

/* ---- an idle store's background threads sleep --------------------------- */

/* Voluntary context switches (wake-ups) of this process's ctx-* threads so
 * far; *threads gets how many there are. */
static unsigned long ctx_thread_wakeups(int *threads)
{
	unsigned long sum = 0;
	*threads = 0;
	DIR *d = opendir("/proc/self/task");
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], comm[64] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue; /* ended meanwhile */
		bool ours = fgets(comm, sizeof(comm), f) && strncmp(comm, "ctx-", 4) == 0;
		fclose(f);
		if (!ours)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		char line[256];
		while (fgets(line, sizeof(line), f))
			if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0)
				sum += strtoul(line + 24, NULL, 10);
		fclose(f);
		(*threads)++;
	}
	closedir(d);
	return sum;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* A durable store with nothing to do: its flusher, zeroer, checkpointer and
 * reaper (no context has a time-to-live) do not wake at all in 1.2 s, where
 * the checkpointer woke every second and the reaper every reaper_ms (50
 * here). Counted in wake-ups, not time. */
static void test_idle_store_threads_sleep(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r14_tracker_idle");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.reaper_ms = 50;
	ctx_store *s = test_open(&o);
	assert_ok(ctx_create(s, "idle"));
	assert_ok(ctx_put(s, "idle", "k", 1, "v", 1, NULL));
	sleep_ms(300); /* let the open's and the commit's work settle */
	int threads, threads_after;
	unsigned long before = ctx_thread_wakeups(&threads);
	sleep_ms(1200);
	unsigned long after = ctx_thread_wakeups(&threads_after);
	assert_int_equal(threads, 4); /* ctx-flusher, -zeroer, -checkpoint, -reaper */
	assert_int_equal(threads_after, threads);
	if (after != before)
		fail_msg("an idle store's threads woke %lu times in 1.2 s", after - before);
	/* Still awake to work: a commit and a reopen see everything. */
	assert_ok(ctx_put(s, "idle", "k2", 2, "v2", 2, NULL));
	ctx_close(s);
	s = test_open(&o);
	ctx_state *st;
	assert_ok(ctx_get(s, "idle", &st));
	assert_int_equal(ctx_state_count(st), 2);
	ctx_state_release(st);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static bool listed(ctx_store *s, const char *id)
{
	ctx_context_status *v = NULL;
	size_t n = 0;
	assert_ok(ctx_status_view(s, &v, &n));
	bool found = false;
	for (size_t i = 0; i < n; i++)
		found |= strcmp(v[i].id, id) == 0;
	free(v);
	return found;
}

/* The reaper that slept with no deadline wakes for the first time-to-live
 * and drops the context once it expires, untouched (a listing is no
 * access), in memory and under durability always (where the time-to-live
 * applies from the flusher, once durable). */
static void test_reaper_wakes_for_first_ttl(void **unused)
{
	(void)unused;
	for (int durable = 0; durable < 2; durable++) {
		char *dir = durable ? test_make_dir("r14_tracker_ttl") : NULL;
		ctx_options o;
		ctx_options_init(&o);
		o.dir = dir;
		o.reaper_ms = 20;
		ctx_store *s = test_open(&o);
		assert_ok(ctx_create(s, "keep"));
		assert_ok(ctx_create(s, "short"));
		sleep_ms(100); /* the reaper is asleep, with no deadline */
		assert_ok(ctx_set_ttl(s, "short", 50));
		double t0 = test_now();
		while (listed(s, "short") && test_now() - t0 < 60)
			sleep_ms(10);
		assert_false(listed(s, "short"));
		assert_true(listed(s, "keep"));
		ctx_close(s);
		if (dir) {
			test_remove_dir(dir);
			free(dir);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_latest),
	    cmocka_unit_test(test_oldest),
	    cmocka_unit_test(test_function),
	    cmocka_unit_test(test_manual),
	    cmocka_unit_test(test_durable_reopen),
	    cmocka_unit_test(test_sync_commit_does_no_diff),
	    cmocka_unit_test(test_idle_store_threads_sleep),
	    cmocka_unit_test(test_reaper_wakes_for_first_ttl),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
