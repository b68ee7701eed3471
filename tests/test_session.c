/*
 * test_session.c - sessions (a client's active context), the status view,
 * idle time-to-live with its reaper, and the max_contexts limit.
 *
 * Expiry is decided on a fake clock: the store's clock_us reads an atomic
 * variable that the test advances, so no test sleeps to make time pass. The
 * only waits are bounded polls for the reaper thread to act on what the fake
 * clock already decided (ctx_count reaching a value), so a lost wake-up fails
 * the test instead of hanging it.
 *
 * Unless a test wants the reaper's timer, stores are opened with a reaper
 * period of an hour: the reaper then runs only when woken (by a read or a
 * commit that meets an expired context), and ctx_expire_now's return value
 * is exact.
 *
 * Worker threads do not call cmocka's asserts (not thread-safe): they count
 * failures with T_CHECK, and the main thread asserts none after joining.
 */
#include "testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the fake clock (fake_clock.h) --------------------------------------------- */

#include "fake_clock.h"

#define MS             1000ull             /* µs */
#define SEC            1000000ull          /* µs */
#define REAPER_IDLE_MS 3600000u            /* an hour: the reaper runs only when woken */

/* ---- helpers ------------------------------------------------------------------- */

/* A store on clock fc (dir NULL = memory only; max_contexts 0 = default;
 * reaper_ms 0 = REAPER_IDLE_MS). */
static ctx_store *open_store(fake_clock *fc, const char *dir, size_t max_contexts,
                             unsigned reaper_ms)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.max_contexts = max_contexts;
	o.reaper_ms = reaper_ms ? reaper_ms : REAPER_IDLE_MS;
	o.clock_us = fake_clock_read;
	o.clock_arg = fc;
	return test_open(&o);
}

static ctx_session *open_session(ctx_store *s)
{
	ctx_session *se = NULL;
	assert_ok(ctx_session_open(s, &se));
	assert_non_null(se);
	return se;
}

static void expect_missing(ctx_store *s, const char *id)
{
	ctx_state *st = (ctx_state *)&st;
	assert_int_equal(ctx_get(s, id, &st), CTX_NOT_FOUND);
	assert_ptr_equal(st, (ctx_state *)&st); /* output untouched */
}

/* Poll (bounded) until ctx_count(s) == n; false on timeout. */
static bool wait_count(ctx_store *s, size_t n, double seconds)
{
	double until = test_now() + seconds;
	while (ctx_count(s) != n) {
		if (test_now() > until)
			return false;
		usleep(1000);
	}
	return true;
}

/* The status view, failing the test on error. */
static ctx_context_status *view(ctx_store *s, size_t *n)
{
	ctx_context_status *v = NULL;
	*n = (size_t)-1;
	assert_ok(ctx_status_view(s, &v, n));
	assert_non_null(v);
	return v;
}

/* The status of one context (must be in the view). */
static ctx_context_status status_of(ctx_store *s, const char *id)
{
	size_t n;
	ctx_context_status *v = view(s, &n);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].id, id) == 0) {
			ctx_context_status r = v[i];
			free(v);
			return r;
		}
	}
	free(v);
	fail_msg("context '%s' is not in the status view", id);
	ctx_context_status none;
	memset(&none, 0, sizeof(none));
	return none;
}

/* Remove the checkpoints of dir, so that the next open recovers from the log
 * alone: the state a kill -9 before the final checkpoint leaves. Valid after
 * a single session closed with test_close_keeping_log (which puts back the
 * log segments the final checkpoint deleted). */
static void remove_checkpoints(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	char path[4096];
	int removed = 0;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "ckpt-", 5) == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			assert_int_equal(unlink(path), 0);
			removed++;
		}
	}
	closedir(d);
	assert_true(removed > 0);
}

/* ---- sessions -------------------------------------------------------------------- */

static void test_session_null_arguments(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	ctx_session *se = (ctx_session *)&se;
	assert_int_equal(ctx_session_open(NULL, &se), CTX_INVALID);
	assert_ptr_equal(se, (ctx_session *)&se);
	assert_int_equal(ctx_session_open(s, NULL), CTX_INVALID);
	se = open_session(s);

	assert_int_equal(ctx_session_activate(NULL, "a", true), CTX_INVALID);
	assert_int_equal(ctx_session_activate(se, NULL, false), CTX_INVALID);
	assert_int_equal(ctx_session_activate(se, NULL, true), CTX_INVALID);
	assert_int_equal(ctx_session_activate(se, "", true), CTX_INVALID);
	assert_int_equal(ctx_session_activate(se, "bad\x01id", true), CTX_INVALID);
	char longid[CTX_ID_MAX + 2];
	memset(longid, 'x', sizeof(longid) - 1);
	longid[CTX_ID_MAX + 1] = 0;
	assert_int_equal(ctx_session_activate(se, longid, true), CTX_INVALID);
	assert_int_equal(ctx_count(s), 0);
	assert_null(ctx_session_current(se));

	ctx_state *st = (ctx_state *)&st;
	assert_int_equal(ctx_session_get(NULL, &st), CTX_INVALID);
	assert_ptr_equal(st, (ctx_state *)&st);
	assert_ok(ctx_session_activate(se, "a", true));
	assert_int_equal(ctx_session_get(se, NULL), CTX_INVALID);

	assert_null(ctx_session_current(NULL));
	ctx_session_close(NULL); /* a no-op */

	ctx_context_status *v = (ctx_context_status *)&v;
	size_t n = 77;
	assert_int_equal(ctx_status_view(NULL, &v, &n), CTX_INVALID);
	assert_int_equal(ctx_status_view(s, NULL, &n), CTX_INVALID);
	assert_int_equal(ctx_status_view(s, &v, NULL), CTX_INVALID);
	assert_ptr_equal(v, (ctx_context_status *)&v);
	assert_int_equal(n, 77);

	assert_int_equal(ctx_set_ttl(NULL, "a", 1000), CTX_INVALID);
	assert_int_equal(ctx_set_ttl(s, NULL, 1000), CTX_INVALID);
	assert_int_equal(ctx_set_ttl(s, "", 1000), CTX_INVALID);
	assert_int_equal(ctx_set_ttl(s, "bad\nid", 1000), CTX_INVALID);
	assert_int_equal(ctx_set_ttl(s, "a", UINT64_MAX), CTX_INVALID);
	assert_int_equal(status_of(s, "a").ttl_ms, 0);
	assert_int_equal(ctx_expire_now(NULL), 0);
	ctx_session_close(se);

	/* A NULL output is a bad argument whether or not a context is active
	 * (as for ctx_get, which checks its arguments before looking). */
	se = open_session(s);
	assert_int_equal(ctx_session_get(se, NULL), CTX_INVALID);
	ctx_session_close(se);
	ctx_close(s);
}

static void test_session_activate(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	ctx_session *se = open_session(s);
	assert_null(ctx_session_current(se));
	ctx_state *st = (ctx_state *)&st;
	assert_int_equal(ctx_session_get(se, &st), CTX_NOT_FOUND); /* none active */
	assert_ptr_equal(st, (ctx_state *)&st);

	/* Missing, without create: nothing changes. */
	assert_int_equal(ctx_session_activate(se, "missing", false), CTX_NOT_FOUND);
	assert_null(ctx_session_current(se));
	assert_int_equal(ctx_count(s), 0);

	/* create = true creates it, at version 1. */
	assert_ok(ctx_session_activate(se, "made", true));
	assert_string_equal(ctx_session_current(se), "made");
	assert_int_equal(ctx_count(s), 1);
	assert_int_equal(test_version_of(s, "made"), 1);
	assert_ok(ctx_session_get(se, &st));
	assert_string_equal(ctx_state_id(st), "made");
	assert_int_equal(ctx_state_version(st), 1);
	assert_int_equal(ctx_state_count(st), 0);
	assert_int_equal(ctx_state_created_us(st), T0);
	ctx_state_release(st);

	/* create = true on an existing context uses it: no new version. */
	test_put_str(s, "made", "k", "v");
	assert_ok(ctx_session_activate(se, "made", true));
	assert_int_equal(ctx_count(s), 1);
	assert_int_equal(test_version_of(s, "made"), 2);

	/* An existing context, without create. */
	assert_ok(ctx_create(s, "other"));
	assert_ok(ctx_session_activate(se, "other", false));
	assert_string_equal(ctx_session_current(se), "other");

	/* A failed activate leaves the active context as it was. */
	assert_int_equal(ctx_session_activate(se, "nope", false), CTX_NOT_FOUND);
	assert_string_equal(ctx_session_current(se), "other");
	assert_int_equal(ctx_session_activate(se, "bad\x7fid", true), CTX_INVALID);
	assert_string_equal(ctx_session_current(se), "other");

	/* The id is copied: the caller's buffer may change. */
	char buf[16];
	strcpy(buf, "made");
	assert_ok(ctx_session_activate(se, buf, false));
	strcpy(buf, "xxxx");
	assert_string_equal(ctx_session_current(se), "made");

	ctx_session_close(se);
	ctx_close(s);
}

static void test_session_switch_and_get(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_ok(ctx_create(s, "a"));
	assert_ok(ctx_create(s, "b"));
	test_put_str(s, "a", "who", "a1");
	test_put_str(s, "b", "who", "b1");
	test_put_str(s, "b", "who", "b2");

	ctx_session *se = open_session(s);
	ctx_session *other = open_session(s);
	assert_ok(ctx_session_activate(se, "a", false));
	assert_ok(ctx_session_activate(other, "b", false));

	ctx_state *st;
	assert_ok(ctx_session_get(se, &st));
	assert_string_equal(ctx_state_id(st), "a");
	assert_int_equal(ctx_state_version(st), 2);
	test_expect_str(st, "who", "a1");
	ctx_state_release(st);

	/* The newest version, also after commits made elsewhere. */
	test_put_str(s, "a", "who", "a2");
	assert_ok(ctx_session_get(se, &st));
	assert_int_equal(ctx_state_version(st), 3);
	test_expect_str(st, "who", "a2");
	ctx_state_release(st);

	/* Switch, and switch back; the other session is independent. */
	for (int round = 0; round < 3; round++) {
		assert_ok(ctx_session_activate(se, "b", false));
		assert_string_equal(ctx_session_current(se), "b");
		assert_ok(ctx_session_get(se, &st));
		assert_string_equal(ctx_state_id(st), "b");
		assert_int_equal(ctx_state_version(st), 3);
		test_expect_str(st, "who", "b2");
		ctx_state_release(st);
		assert_ok(ctx_session_activate(se, "a", false));
		assert_string_equal(ctx_session_current(se), "a");
		assert_ok(ctx_session_get(se, &st));
		assert_string_equal(ctx_state_id(st), "a");
		test_expect_str(st, "who", "a2");
		ctx_state_release(st);
		assert_string_equal(ctx_session_current(other), "b");
	}
	/* A session pins no version: states it handed out stay valid. */
	ctx_state *held;
	assert_ok(ctx_session_get(other, &held));
	test_put_str(s, "b", "who", "b3");
	test_expect_str(held, "who", "b2");
	assert_ok(ctx_session_get(other, &st));
	test_expect_str(st, "who", "b3");
	ctx_state_release(st);
	ctx_session_close(other);
	test_expect_str(held, "who", "b2");
	ctx_state_release(held);

	ctx_session_close(se);
	ctx_close(s);
}

static void test_session_get_after_drop(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	ctx_session *se = open_session(s);
	assert_ok(ctx_session_activate(se, "gone", true));
	test_put_str(s, "gone", "k", "v");
	ctx_state *held;
	assert_ok(ctx_session_get(se, &held));
	assert_ok(ctx_drop(s, "gone"));

	ctx_state *st = (ctx_state *)&st;
	assert_int_equal(ctx_session_get(se, &st), CTX_NOT_FOUND);
	assert_ptr_equal(st, (ctx_state *)&st);
	/* What was read before the drop stays valid. */
	test_expect_str(held, "k", "v");
	ctx_state_release(held);
	assert_int_equal(ctx_session_activate(se, "gone", false), CTX_NOT_FOUND);

	/* Expiry is a drop too. */
	assert_ok(ctx_session_activate(se, "idle", true));
	assert_ok(ctx_set_ttl(s, "idle", 1000));
	clock_advance(fc, 2 * SEC);
	assert_int_equal(ctx_session_get(se, &st), CTX_NOT_FOUND);
	assert_ptr_equal(st, (ctx_state *)&st);
	assert_int_equal(ctx_session_activate(se, "idle", false), CTX_NOT_FOUND);

	ctx_session_close(se);
	ctx_close(s);
}

/* 16 threads, each with its own session, switch among 8 contexts and commit
 * to whichever is active. Each commit writes a key unique to (thread, seq)
 * whose value is the id the session reported as current: afterwards every key
 * is in exactly the context that was current when it was written, with that
 * context's id as value, and every context's key count and version are exact. */
#define SW_THREADS  16
#define SW_CONTEXTS 8

typedef struct switcher {
	ctx_store *s;
	int idx;
	long iters;
	unsigned char *target; /* context index of each commit */
	long counts[SW_CONTEXTS];
	pthread_barrier_t *start;
} switcher;

static const char *sw_id(int j)
{
	static const char *ids[SW_CONTEXTS] = {"ctx/0", "ctx/1", "ctx/2", "ctx/3",
	                                       "ctx/4", "ctx/5", "ctx/6", "ctx/7"};
	return ids[j];
}

static void *switcher_main(void *arg)
{
	switcher *w = arg;
	uint64_t rng = 0x5e55u + (uint64_t)w->idx * 7919u;
	ctx_session *se = NULL;
	T_CHECK_STATUS(ctx_session_open(w->s, &se), CTX_OK);
	pthread_barrier_wait(w->start);
	if (!se)
		return NULL;
	long last_seq[SW_CONTEXTS];
	for (int j = 0; j < SW_CONTEXTS; j++)
		last_seq[j] = -1;
	for (long i = 0; i < w->iters; i++) {
		int j = (int)test_rand_below(&rng, SW_CONTEXTS);
		T_CHECK_STATUS(ctx_session_activate(se, sw_id(j), (i & 1) != 0), CTX_OK);
		const char *cur = ctx_session_current(se);
		T_CHECK(cur && strcmp(cur, sw_id(j)) == 0);
		if (!cur)
			break;
		char key[32];
		int kl = snprintf(key, sizeof(key), "t%02d-%06ld", w->idx, i);
		ctx_status st = ctx_put(w->s, cur, key, (size_t)kl, cur, strlen(cur), NULL);
		T_CHECK_STATUS(st, CTX_OK);
		if (st != CTX_OK)
			continue;
		w->target[i] = (unsigned char)j;
		w->counts[j]++;
		if (i % 8 == 0) {
			/* The session reads the context it made current, with every
			 * earlier commit of this thread to it. */
			ctx_state *v = NULL;
			T_CHECK_STATUS(ctx_session_get(se, &v), CTX_OK);
			if (v) {
				T_CHECK(strcmp(ctx_state_id(v), sw_id(j)) == 0);
				T_CHECK(ctx_state_lookup(v, key, (size_t)kl, NULL, NULL));
				if (last_seq[j] >= 0) {
					kl = snprintf(key, sizeof(key), "t%02d-%06ld", w->idx,
					              last_seq[j]);
					T_CHECK(ctx_state_lookup(v, key, (size_t)kl, NULL, NULL));
				}
				ctx_state_release(v);
			}
		}
		last_seq[j] = i;
	}
	ctx_session_close(se);
	return NULL;
}

static void test_session_threads_switching(void **unused)
{
	reset_failures();
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	for (int j = 0; j < SW_CONTEXTS; j++)
		assert_ok(ctx_create(s, sw_id(j)));
	long iters = test_iters(1500, 150);
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, SW_THREADS);
	switcher w[SW_THREADS];
	pthread_t th[SW_THREADS];
	for (int t = 0; t < SW_THREADS; t++) {
		memset(&w[t], 0, sizeof(w[t]));
		w[t].s = s;
		w[t].idx = t;
		w[t].iters = iters;
		w[t].target = malloc((size_t)iters);
		assert_non_null(w[t].target);
		memset(w[t].target, 0xff, (size_t)iters);
		w[t].start = &start;
		assert_int_equal(pthread_create(&th[t], NULL, switcher_main, &w[t]), 0);
	}
	for (int t = 0; t < SW_THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&start);
	assert_no_thread_failures();

	assert_int_equal(ctx_count(s), SW_CONTEXTS);
	long total = 0;
	for (int j = 0; j < SW_CONTEXTS; j++) {
		long want = 0;
		for (int t = 0; t < SW_THREADS; t++)
			want += w[t].counts[j];
		total += want;
		ctx_state *st;
		assert_ok(ctx_get(s, sw_id(j), &st));
		assert_int_equal(ctx_state_count(st), want);
		assert_int_equal(ctx_state_version(st), 1 + want);
		/* Every pair: the value is this context's id, and the writer
		 * recorded this context as the target of that commit. */
		ctx_iter *it;
		assert_ok(ctx_iter_begin(st, &it));
		const void *k, *v;
		size_t kl, vl;
		long seen = 0;
		while (ctx_iter_next(it, &k, &kl, &v, &vl)) {
			assert_int_equal(vl, strlen(sw_id(j)));
			assert_memory_equal(v, sw_id(j), vl);
			char key[32];
			assert_true(kl < sizeof(key));
			memcpy(key, k, kl);
			key[kl] = 0;
			int t;
			long i;
			assert_int_equal(sscanf(key, "t%d-%ld", &t, &i), 2);
			assert_true(t >= 0 && t < SW_THREADS && i >= 0 && i < iters);
			assert_int_equal(w[t].target[i], j);
			seen++;
		}
		ctx_iter_free(it);
		assert_int_equal(seen, want);
		ctx_state_release(st);
	}
	assert_int_equal(total, (long)SW_THREADS * iters);
	for (int t = 0; t < SW_THREADS; t++)
		free(w[t].target);
	ctx_close(s);
}

/* Many sessions activate the same new ids with create = true at once, on a
 * durable store (a create becomes visible only once fsynced): every activate
 * succeeds, and each id is created once. */
#define RACE_THREADS 8
#define RACE_IDS     12

typedef struct racer {
	ctx_store *s;
	pthread_barrier_t *start;
} racer;

static void *racer_main(void *arg)
{
	racer *r = arg;
	ctx_session *se = NULL;
	T_CHECK_STATUS(ctx_session_open(r->s, &se), CTX_OK);
	for (int k = 0; k < RACE_IDS; k++) {
		char id[32];
		snprintf(id, sizeof(id), "fresh-%d", k);
		pthread_barrier_wait(r->start);
		if (!se)
			continue;
		T_CHECK_STATUS(ctx_session_activate(se, id, true), CTX_OK);
		const char *cur = ctx_session_current(se);
		T_CHECK(cur && strcmp(cur, id) == 0);
		ctx_state *st = NULL;
		T_CHECK_STATUS(ctx_session_get(se, &st), CTX_OK);
		ctx_state_release(st);
	}
	ctx_session_close(se);
	return NULL;
}

static void test_session_concurrent_create(void **unused)
{
	reset_failures();
	fake_clock *fc = new_clock();
	char *dir = test_make_dir("session-create-race");
	ctx_store *s = open_store(fc, dir, 0, 0);
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, RACE_THREADS);
	racer r = {s, &start};
	pthread_t th[RACE_THREADS];
	for (int t = 0; t < RACE_THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, racer_main, &r), 0);
	for (int t = 0; t < RACE_THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&start);
	assert_int_equal(ctx_count(s), RACE_IDS);
	for (int k = 0; k < RACE_IDS; k++) {
		char id[32];
		snprintf(id, sizeof(id), "fresh-%d", k);
		assert_int_equal(test_version_of(s, id), 1);
	}
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
	assert_no_thread_failures();
}

/* ---- the status view --------------------------------------------------------------- */

static void test_status_view(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	size_t n;
	ctx_context_status *v = view(s, &n);
	assert_int_equal(n, 0);
	free(v);

	assert_ok(ctx_create(s, "beta")); /* at T0 */
	assert_ok(ctx_point_create(s, "beta", "one", NULL));
	clock_advance(fc, 1 * MS);
	test_put_str(s, "beta", "b", "1");
	clock_advance(fc, 1 * MS);
	assert_ok(ctx_point_create(s, "beta", NULL, NULL));
	clock_set(fc, T0 + 10 * MS);
	assert_ok(ctx_create(s, "alpha"));
	clock_set(fc, T0 + 20 * MS);
	test_put_str(s, "alpha", "k1", "v1");
	clock_set(fc, T0 + 30 * MS);
	test_put_str(s, "alpha", "k22", "value");
	clock_set(fc, T0 + 40 * MS);
	assert_ok(ctx_create(s, "gamma"));
	test_put_str(s, "gamma", "g", "");
	clock_set(fc, T0 + 50 * MS);
	assert_ok(ctx_set_ttl(s, "gamma", 5000));
	assert_ok(ctx_create(s, "Zed")); /* upper case sorts first */
	assert_ok(ctx_create(s, "alpha/sub"));

	v = view(s, &n);
	assert_int_equal(n, 5);
	const char *order[] = {"Zed", "alpha", "alpha/sub", "beta", "gamma"};
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v[i].id, order[i]);
	/* alpha: two commits */
	assert_int_equal(v[1].version, 3);
	assert_int_equal(v[1].keys, 2);
	assert_int_equal(v[1].bytes, 2 + 2 + 3 + 5);
	assert_int_equal(v[1].created_us, T0 + 10 * MS);
	assert_int_equal(v[1].last_access_us, T0 + 30 * MS);
	assert_int_equal(v[1].ttl_ms, 0);
	assert_int_equal(v[1].points, 0);
	/* beta: two points (making one is no access) */
	assert_int_equal(v[3].version, 2);
	assert_int_equal(v[3].keys, 1);
	assert_int_equal(v[3].bytes, 2);
	assert_int_equal(v[3].created_us, T0);
	assert_int_equal(v[3].last_access_us, T0 + 1 * MS);
	assert_int_equal(v[3].points, 2);
	/* gamma: a ttl (setting it counts as an access) */
	assert_int_equal(v[4].version, 2);
	assert_int_equal(v[4].keys, 1);
	assert_int_equal(v[4].bytes, 1);
	assert_int_equal(v[4].created_us, T0 + 40 * MS);
	assert_int_equal(v[4].last_access_us, T0 + 50 * MS);
	assert_int_equal(v[4].ttl_ms, 5000);
	assert_int_equal(v[4].points, 0);
	/* Zed: fresh */
	assert_int_equal(v[0].version, 1);
	assert_int_equal(v[0].created_us, T0 + 50 * MS);
	assert_int_equal(v[0].last_access_us, T0 + 50 * MS);
	free(v);

	/* Reads note the time only for contexts with a ttl. */
	clock_set(fc, T0 + 60 * MS);
	assert_int_equal(test_version_of(s, "alpha"), 3);
	assert_int_equal(test_version_of(s, "gamma"), 2);
	assert_int_equal(status_of(s, "alpha").last_access_us, T0 + 30 * MS);
	assert_int_equal(status_of(s, "gamma").last_access_us, T0 + 60 * MS);
	/* Commits always do. */
	clock_set(fc, T0 + 70 * MS);
	test_put_str(s, "alpha", "k1", "v1b");
	assert_int_equal(status_of(s, "alpha").last_access_us, T0 + 70 * MS);
	assert_int_equal(status_of(s, "alpha").bytes, 2 + 3 + 3 + 5);

	/* Dropped contexts are absent. */
	assert_ok(ctx_drop(s, "beta"));
	assert_ok(ctx_drop(s, "Zed"));
	v = view(s, &n);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].id, "alpha");
	assert_string_equal(v[1].id, "alpha/sub");
	assert_string_equal(v[2].id, "gamma");
	free(v);

	/* Many contexts, created out of order: all there, sorted. */
	uint64_t rng = 42;
	for (int i = 0; i < 300; i++) {
		char id[32];
		snprintf(id, sizeof(id), "m%08llx-%d",
		         (unsigned long long)test_rand(&rng) & 0xffffffffu, i);
		assert_ok(ctx_create(s, id));
	}
	v = view(s, &n);
	assert_int_equal(n, 303);
	assert_int_equal(ctx_count(s), 303);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(v[i - 1].id, v[i].id) < 0);
	free(v);
	ctx_close(s);
}

/* The status view while other threads create and drop contexts: every entry
 * is a whole, sorted, and the stable contexts are always there. (Under TSan
 * this also checks that the view reads no version that a drop is releasing
 * without holding a reference to it.) */
typedef struct churner {
	ctx_store *s;
	atomic_bool *stop;
	int idx;
} churner;

static void *churner_main(void *arg)
{
	churner *c = arg;
	long i = 0;
	while (!atomic_load(c->stop)) {
		char id[32];
		snprintf(id, sizeof(id), "churn-%d-%ld", c->idx, i % 50);
		ctx_status st = ctx_create(c->s, id);
		T_CHECK(st == CTX_OK || st == CTX_EXISTS);
		if (st == CTX_OK)
			T_CHECK_STATUS(ctx_put(c->s, id, "k", 1, "v", 1, NULL), CTX_OK);
		if (i % 3 == 0) {
			st = ctx_drop(c->s, id);
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
		}
		i++;
	}
	return NULL;
}

static void test_status_view_concurrent(void **unused)
{
	reset_failures();
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_ok(ctx_create(s, "stable-a"));
	assert_ok(ctx_create(s, "stable-b"));
	test_put_str(s, "stable-b", "k", "v");
	atomic_bool stop = false;
	churner c[4];
	pthread_t th[4];
	for (int t = 0; t < 4; t++) {
		c[t] = (churner){s, &stop, t};
		assert_int_equal(pthread_create(&th[t], NULL, churner_main, &c[t]), 0);
	}
	/* Checked with T_CHECK: the churners must be stopped before failing. */
	long rounds = test_iters(3000, 300);
	for (long r = 0; r < rounds && !thread_failures(); r++) {
		size_t n = 0;
		ctx_context_status *v = NULL;
		T_CHECK_STATUS(ctx_status_view(s, &v, &n), CTX_OK);
		if (!v)
			break;
		int stable = 0;
		for (size_t i = 0; i < n; i++) {
			if (i)
				T_CHECK(strcmp(v[i - 1].id, v[i].id) < 0);
			T_CHECK(v[i].version >= 1);
			if (strcmp(v[i].id, "stable-b") == 0) {
				T_CHECK(v[i].version == 2 && v[i].keys == 1 && v[i].bytes == 2);
				stable++;
			} else if (strcmp(v[i].id, "stable-a") == 0) {
				stable++;
			} else {
				/* created (empty), then one put; a view of a
				 * context being dropped still shows a whole
				 * version */
				T_CHECK(strncmp(v[i].id, "churn-", 6) == 0);
				T_CHECK(v[i].version <= 2);
				if (v[i].keys != v[i].version - 1 ||
				    v[i].bytes != 2 * (v[i].version - 1))
					t_fail(__LINE__,
					       "a churn context's entry is torn: keys and "
					       "bytes do not match its version (value: "
					       "version * 100 + keys)",
					       (long long)(v[i].version * 100 + v[i].keys));
			}
		}
		T_CHECK(stable == 2);
		free(v);
	}
	atomic_store(&stop, true);
	for (int t = 0; t < 4; t++)
		pthread_join(th[t], NULL);
	assert_no_thread_failures();
	ctx_close(s);
}

/* ---- expiry on the fake clock --------------------------------------------------------- */

static void test_expiry_basic(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_ok(ctx_create(s, "idle"));
	assert_ok(ctx_create(s, "forever"));
	test_put_str(s, "idle", "k", "v");
	assert_ok(ctx_set_ttl(s, "idle", 1000));
	assert_int_equal(status_of(s, "idle").ttl_ms, 1000);

	/* Not yet: no read, only the reaper looks. */
	clock_set(fc, T0 + 999 * MS);
	assert_int_equal(ctx_expire_now(s), 0);
	assert_int_equal(ctx_count(s), 2);

	/* Past it: the reaper drops it; the other context stays. */
	clock_set(fc, T0 + 1001 * MS);
	assert_int_equal(ctx_expire_now(s), 1);
	assert_int_equal(ctx_count(s), 1);
	expect_missing(s, "idle");
	assert_int_equal(ctx_drop(s, "idle"), CTX_NOT_FOUND);
	assert_int_equal(ctx_set_ttl(s, "idle", 1000), CTX_NOT_FOUND);
	assert_int_equal(ctx_expire_now(s), 0);
	assert_int_equal(test_version_of(s, "forever"), 1);

	/* The id is free again: a new context, without the old data or ttl. */
	assert_ok(ctx_create(s, "idle"));
	ctx_state *st;
	assert_ok(ctx_get(s, "idle", &st));
	assert_int_equal(ctx_state_version(st), 1);
	assert_int_equal(ctx_state_count(st), 0);
	ctx_state_release(st);
	assert_int_equal(status_of(s, "idle").ttl_ms, 0);
	clock_advance(fc, 3600 * SEC);
	assert_int_equal(ctx_expire_now(s), 0);
	assert_int_equal(ctx_count(s), 2);
	ctx_close(s);
}

/* A read of an expired context says CTX_NOT_FOUND at once (before any
 * reaper ran) and wakes the reaper, which drops it. */
static void test_expiry_read_wakes_reaper(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_ok(ctx_create(s, "idle"));
	assert_ok(ctx_set_ttl(s, "idle", 500));
	clock_set(fc, T0 + 400 * MS);
	assert_int_equal(ctx_count(s), 1);
	clock_set(fc, T0 + 400 * MS + 500 * MS);
	expect_missing(s, "idle");
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	ctx_list_free(&l);
	/* The reaper's period is an hour: only the wake-up can drop it. */
	assert_true(wait_count(s, 0, 60.0));
	size_t n;
	ctx_context_status *v = view(s, &n);
	assert_int_equal(n, 0);
	free(v);
	ctx_close(s);
}

/* A commit to an expired context fails with CTX_NOT_FOUND, also that of a
 * transaction begun before it expired. */
static void test_expiry_commit_fails(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_ok(ctx_create(s, "idle"));
	test_put_str(s, "idle", "k", "v");
	assert_ok(ctx_set_ttl(s, "idle", 1000));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "idle", &t));
	assert_ok(ctx_txn_put(t, "x", 1, "y", 1));
	clock_set(fc, T0 + 2 * SEC);
	uint64_t ver = 777;
	assert_int_equal(ctx_txn_commit(t, 0, &ver), CTX_NOT_FOUND);
	assert_int_equal(ver, 777);
	assert_int_equal(ctx_put(s, "idle", "k", 1, "w", 1, &ver), CTX_NOT_FOUND);
	assert_int_equal(ctx_del(s, "idle", "k", 1, &ver), CTX_NOT_FOUND);
	assert_int_equal(ver, 777);
	expect_missing(s, "idle");
	assert_true(wait_count(s, 0, 60.0));
	ctx_close(s);
}

/* A read or a commit shortly before the deadline postpones it by a whole
 * ttl from that access. */
static void test_expiry_postponed_by_access(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	ctx_session *se = open_session(s);
	const char *ids[] = {"by-read", "by-commit", "by-session", "untouched"};
	for (int i = 0; i < 4; i++) {
		assert_ok(ctx_create(s, ids[i]));
		assert_ok(ctx_set_ttl(s, ids[i], 1000));
	}
	assert_ok(ctx_session_activate(se, "by-session", false)); /* a read, at T0 */

	clock_set(fc, T0 + 990 * MS);
	assert_int_equal(test_version_of(s, "by-read"), 1);
	test_put_str(s, "by-commit", "k", "v");
	ctx_state *st;
	assert_ok(ctx_session_get(se, &st));
	ctx_state_release(st);
	for (int i = 0; i < 3; i++)
		assert_int_equal(status_of(s, ids[i]).last_access_us, T0 + 990 * MS);
	assert_int_equal(status_of(s, "untouched").last_access_us, T0);

	/* Past the first deadline: only the untouched one goes. */
	clock_set(fc, T0 + 1500 * MS);
	assert_int_equal(ctx_expire_now(s), 1);
	assert_int_equal(ctx_count(s), 3);
	assert_int_equal(ctx_set_ttl(s, "untouched", 5), CTX_NOT_FOUND);

	/* Just before the postponed deadline: still there. */
	clock_set(fc, T0 + 1989 * MS);
	assert_int_equal(ctx_expire_now(s), 0);
	assert_int_equal(ctx_count(s), 3);
	/* Past it: all three go. */
	clock_set(fc, T0 + 1991 * MS);
	assert_int_equal(ctx_expire_now(s), 3);
	assert_int_equal(ctx_count(s), 0);
	for (int i = 0; i < 3; i++)
		expect_missing(s, ids[i]);
	assert_int_equal(ctx_session_get(se, &st), CTX_NOT_FOUND);
	ctx_session_close(se);
	ctx_close(s);
}

/* Reads note the time at most once per millisecond of the store clock, and
 * only for contexts with a ttl; a new ttl restarts the idle time. */
static void test_expiry_read_refresh_granularity(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_ok(ctx_create(s, "t"));
	assert_ok(ctx_create(s, "plain"));
	assert_ok(ctx_set_ttl(s, "t", 60000));
	clock_set(fc, T0 + 500);
	assert_int_equal(test_version_of(s, "t"), 1);
	assert_int_equal(status_of(s, "t").last_access_us, T0);
	clock_set(fc, T0 + 1500);
	assert_int_equal(test_version_of(s, "t"), 1);
	assert_int_equal(status_of(s, "t").last_access_us, T0 + 1500);
	clock_set(fc, T0 + 7 * SEC);
	assert_int_equal(test_version_of(s, "plain"), 1);
	assert_int_equal(status_of(s, "plain").last_access_us, T0);

	/* Setting a ttl counts as an access: a long-idle context given a ttl
	 * does not expire at once. */
	clock_set(fc, T0 + 100 * SEC);
	assert_ok(ctx_set_ttl(s, "plain", 1000));
	assert_int_equal(status_of(s, "plain").last_access_us, T0 + 100 * SEC);
	assert_int_equal(ctx_expire_now(s), 1); /* "t": idle 98.5 s of 60 */
	assert_int_equal(test_version_of(s, "plain"), 1);
	assert_int_equal(ctx_count(s), 1);
	ctx_close(s);
}

/* ttl 0 removes the expiry; a new ttl replaces the old one. */
static void test_ttl_zero_removes_expiry(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_ok(ctx_create(s, "a"));
	assert_ok(ctx_create(s, "b"));
	assert_ok(ctx_set_ttl(s, "a", 1000));
	assert_ok(ctx_set_ttl(s, "a", 0));
	assert_ok(ctx_set_ttl(s, "b", 1000));
	assert_ok(ctx_set_ttl(s, "b", 100000)); /* longer */
	assert_int_equal(status_of(s, "a").ttl_ms, 0);
	assert_int_equal(status_of(s, "b").ttl_ms, 100000);
	clock_set(fc, T0 + 50 * SEC);
	assert_int_equal(ctx_expire_now(s), 0);
	assert_int_equal(test_version_of(s, "a"), 1);
	assert_ok(ctx_set_ttl(s, "b", 10)); /* shorter, from now */
	clock_set(fc, T0 + 50 * SEC + 5 * MS);
	assert_int_equal(ctx_expire_now(s), 0);
	clock_set(fc, T0 + 50 * SEC + 11 * MS);
	assert_int_equal(ctx_expire_now(s), 1);
	expect_missing(s, "b");
	clock_set(fc, T0 + 1000000 * SEC);
	assert_int_equal(ctx_expire_now(s), 0);
	assert_int_equal(test_version_of(s, "a"), 1);
	ctx_close(s);
}

static void test_set_ttl_missing(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_int_equal(ctx_set_ttl(s, "nope", 1000), CTX_NOT_FOUND);
	assert_int_equal(ctx_set_ttl(s, "nope", 0), CTX_NOT_FOUND);
	assert_ok(ctx_create(s, "dropped"));
	assert_ok(ctx_drop(s, "dropped"));
	assert_int_equal(ctx_set_ttl(s, "dropped", 1000), CTX_NOT_FOUND);
	assert_int_equal(ctx_count(s), 0);
	ctx_close(s);
}

/* An expired context that the reaper has not dropped yet is gone for every
 * call: ctx_get and commits say CTX_NOT_FOUND, so ctx_set_ttl must too, not
 * revive it with its old data. */
static void test_set_ttl_on_expired(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_ok(ctx_create(s, "old"));
	test_put_str(s, "old", "secret", "stale");
	assert_ok(ctx_set_ttl(s, "old", 1000));
	clock_set(fc, T0 + 5 * SEC);
	/* Nothing has read it (so nothing woke the reaper): */
	ctx_status st = ctx_set_ttl(s, "old", 0);
	ctx_state *v = NULL;
	ctx_status gst = ctx_get(s, "old", &v);
	ctx_state_release(v);
	if (st != CTX_NOT_FOUND || gst != CTX_NOT_FOUND)
		fail_msg("ctx_set_ttl on an expired context gave %s, and then ctx_get %s "
		         "(the expired data came back)",
		         ctx_strerror(st), ctx_strerror(gst));
	assert_true(wait_count(s, 0, 60.0));
	ctx_close(s);
}

/* Creating an id whose context expired (not reaped yet, nothing read it)
 * makes a fresh context: ctx_get calls the id missing, so ctx_create must not
 * call it existing. */
static void test_create_over_expired(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	assert_ok(ctx_create(s, "old"));
	test_put_str(s, "old", "secret", "stale");
	assert_ok(ctx_set_ttl(s, "old", 1000));
	clock_set(fc, T0 + 10 * SEC);
	ctx_status st = ctx_create(s, "old");
	if (st != CTX_OK)
		fail_msg("ctx_create over an expired context: %s (%s)", ctx_strerror(st),
		         ctx_last_error());
	ctx_state *v;
	assert_ok(ctx_get(s, "old", &v));
	assert_int_equal(ctx_state_version(v), 1);
	assert_int_equal(ctx_state_count(v), 0);
	ctx_state_release(v);
	assert_int_equal(ctx_count(s), 1);
	ctx_close(s);
}

/* The same through a session: activating an expired id with create = true
 * gives a fresh context, never CTX_NOT_FOUND. (The activate's read of the
 * expired context wakes the reaper; whether the reaper drops it before the
 * create looks must not matter. The clock holds the reaper back while the
 * activate runs, which makes the outcome deterministic: a slow reaper.) */
static void test_session_activate_create_over_expired(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	ctx_session *se = open_session(s);
	for (int round = 0; round < 4; round++) {
		char id[32];
		snprintf(id, sizeof(id), "sess-%d", round);
		assert_ok(ctx_session_activate(se, id, true));
		test_put_str(s, id, "k", "v");
		assert_ok(ctx_set_ttl(s, id, 1000));
		clock_advance(fc, 2 * SEC);
		if (round & 1)
			clock_hold_others(fc);
		ctx_status st = ctx_session_activate(se, id, true);
		clock_release(fc);
		if (st != CTX_OK)
			fail_msg("round %d: activate(create) over an expired context: %s (%s)",
			         round, ctx_strerror(st), ctx_last_error());
		ctx_state *v;
		assert_ok(ctx_session_get(se, &v));
		assert_int_equal(ctx_state_version(v), 1);
		assert_int_equal(ctx_state_count(v), 0);
		ctx_state_release(v);
	}
	ctx_session_close(se);
	ctx_close(s);
}

/* The background reaper finds expired contexts on its own, on its period. */
static void test_expiry_reaper_timer(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 5);
	for (int i = 0; i < 20; i++) {
		char id[16];
		snprintf(id, sizeof(id), "r%02d", i);
		assert_ok(ctx_create(s, id));
		if (i % 2 == 0)
			assert_ok(ctx_set_ttl(s, id, 1000 + (uint64_t)i * 100));
	}
	/* ttls 1000, 1200, .., 2800 ms: at 1.95 s the five up to 1.8 s go. */
	clock_set(fc, T0 + 1950 * MS);
	assert_true(wait_count(s, 15, 60.0));
	usleep(20000); /* a few more periods: nothing else goes */
	assert_int_equal(ctx_count(s), 15);
	clock_set(fc, T0 + 3 * SEC);
	assert_true(wait_count(s, 10, 60.0));
	usleep(20000); /* a few more periods: nothing else goes */
	assert_int_equal(ctx_count(s), 10);
	size_t n;
	ctx_context_status *v = view(s, &n);
	assert_int_equal(n, 10);
	for (size_t i = 0; i < n; i++) {
		int k;
		assert_int_equal(sscanf(v[i].id, "r%d", &k), 1);
		assert_int_equal(k % 2, 1);
		assert_int_equal(v[i].ttl_ms, 0);
	}
	free(v);
	ctx_close(s);
}

/* Watchers see an expiry as CTX_EVENT_EXPIRED (a drop as DROPPED). */
static ctx_event *next_event(ctx_watch *w)
{
	ctx_event *e = NULL;
	ctx_status st = ctx_watch_wait(w, 10000, &e);
	if (st != CTX_OK)
		fail_msg("no event: %s", ctx_strerror(st));
	assert_non_null(e);
	return e;
}

static void test_expiry_watch_event(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 0);
	ctx_watch *all, *one;
	assert_ok(ctx_watch_open(s, "", true, 0, &all));
	assert_ok(ctx_create(s, "w1"));
	assert_ok(ctx_create(s, "w2"));
	assert_ok(ctx_watch_open(s, "w1", false, 0, &one));
	test_put_str(s, "w1", "k", "v");
	assert_ok(ctx_set_ttl(s, "w1", 1000));
	clock_set(fc, T0 + 2 * SEC);
	assert_int_equal(ctx_expire_now(s), 1);
	assert_ok(ctx_drop(s, "w2"));

	ctx_event *e = next_event(one);
	assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
	assert_string_equal(e->id, "w1");
	uint64_t commit_rev = e->revision;
	ctx_event_free(e);
	e = next_event(one);
	assert_int_equal(e->kind, CTX_EVENT_EXPIRED);
	assert_string_equal(e->id, "w1");
	assert_int_equal(e->version, 0);
	assert_true(e->revision > commit_rev);
	ctx_event_free(e);
	assert_int_equal(ctx_watch_next(one, &e), CTX_NOT_FOUND);

	ctx_event_kind want[] = {CTX_EVENT_CREATED, CTX_EVENT_CREATED, CTX_EVENT_COMMITTED,
	                         CTX_EVENT_EXPIRED, CTX_EVENT_DROPPED};
	const char *want_id[] = {"w1", "w2", "w1", "w1", "w2"};
	uint64_t prev = 0;
	for (int i = 0; i < 5; i++) {
		e = next_event(all);
		assert_int_equal(e->kind, want[i]);
		assert_string_equal(e->id, want_id[i]);
		assert_true(e->revision > prev);
		prev = e->revision;
		ctx_event_free(e);
	}
	assert_int_equal(ctx_watch_next(all, &e), CTX_NOT_FOUND);
	ctx_watch_close(one);
	ctx_watch_close(all);

	/* An expiry found by a read and dropped by the woken reaper too. */
	assert_ok(ctx_create(s, "w3"));
	assert_ok(ctx_set_ttl(s, "w3", 10));
	assert_ok(ctx_watch_open(s, "w3", false, 0, &one));
	clock_advance(fc, 20 * MS);
	expect_missing(s, "w3");
	e = next_event(one);
	assert_int_equal(e->kind, CTX_EVENT_EXPIRED);
	assert_string_equal(e->id, "w3");
	ctx_event_free(e);
	ctx_watch_close(one);
	ctx_close(s);
}

/* ---- expiry and the data directory ------------------------------------------------------- */

/* An expiry is durable: after close and reopen (from the checkpoint, and
 * from the log alone) the context is gone, the others intact. */
static void test_expiry_durable(void **unused)
{
	fake_clock *fc = new_clock();
	char *dir = test_make_dir("session-expiry-durable");
	ctx_store *s = open_store(fc, dir, 0, 0);
	assert_ok(ctx_create(s, "keep"));
	assert_ok(ctx_create(s, "gone"));
	test_put_str(s, "keep", "k", "kv");
	test_put_str(s, "gone", "g", "gv");
	assert_ok(ctx_set_ttl(s, "gone", 1000));
	clock_set(fc, T0 + 2 * SEC);
	assert_int_equal(ctx_expire_now(s), 1);
	expect_missing(s, "gone");
	test_close_keeping_log(s);

	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1)
			remove_checkpoints(dir); /* as after a kill -9: the log only */
		s = open_store(fc, dir, 0, 0);
		assert_int_equal(ctx_count(s), 1);
		expect_missing(s, "gone");
		ctx_state *st;
		assert_ok(ctx_get(s, "keep", &st));
		test_expect_str(st, "k", "kv");
		ctx_state_release(st);
		ctx_close(s);
	}
	/* Expired by a read (the woken reaper), then the store closed at once. */
	s = open_store(fc, dir, 0, 0);
	assert_ok(ctx_set_ttl(s, "keep", 1000));
	clock_advance(fc, 2 * SEC);
	expect_missing(s, "keep");
	assert_true(wait_count(s, 0, 60.0));
	ctx_close(s);
	s = open_store(fc, dir, 0, 0);
	assert_int_equal(ctx_count(s), 0);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A ttl survives reopen, with the idle time it had: reopened before the
 * deadline the context is there, reopened after it, it expires. */
static void test_ttl_survives_reopen(void **unused)
{
	fake_clock *fc = new_clock();
	char *dir = test_make_dir("session-ttl-reopen");
	ctx_store *s = open_store(fc, dir, 0, 0);
	assert_ok(ctx_create(s, "t"));
	assert_ok(ctx_create(s, "none"));
	test_put_str(s, "t", "k", "v");
	clock_set(fc, T0 + 1 * SEC);
	assert_ok(ctx_set_ttl(s, "t", 10000));
	assert_ok(ctx_set_ttl(s, "none", 10000));
	assert_ok(ctx_set_ttl(s, "none", 0));
	ctx_close(s);

	clock_set(fc, T0 + 6 * SEC);
	s = open_store(fc, dir, 0, 0);
	ctx_context_status t = status_of(s, "t");
	assert_int_equal(t.ttl_ms, 10000);
	assert_int_equal(t.last_access_us, T0 + 1 * SEC);
	assert_int_equal(status_of(s, "none").ttl_ms, 0);
	assert_int_equal(ctx_expire_now(s), 0);
	assert_int_equal(ctx_count(s), 2);
	ctx_close(s);

	clock_set(fc, T0 + 12 * SEC);
	s = open_store(fc, dir, 0, 0);
	assert_int_equal(ctx_expire_now(s), 1);
	expect_missing(s, "t");
	assert_int_equal(test_version_of(s, "none"), 1);
	ctx_close(s);

	clock_set(fc, T0 + 100000 * SEC);
	s = open_store(fc, dir, 0, 0);
	assert_int_equal(ctx_count(s), 1);
	assert_int_equal(ctx_expire_now(s), 0);
	assert_int_equal(test_version_of(s, "none"), 1);
	ctx_close(s);

	/* Reopened past the deadline, the reaper (no explicit call) drops it. */
	s = open_store(fc, dir, 0, 0);
	assert_ok(ctx_set_ttl(s, "none", 1000));
	ctx_close(s);
	clock_advance(fc, 5 * SEC);
	s = open_store(fc, dir, 0, 5);
	assert_true(wait_count(s, 0, 60.0));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* The same from the log alone (a kill -9 before any checkpoint): the replay
 * must not count idle time from before the last commit. */
static void test_ttl_survives_log_replay(void **unused)
{
	fake_clock *fc = new_clock();
	char *dir = test_make_dir("session-ttl-replay");
	ctx_store *s = open_store(fc, dir, 0, 0);
	assert_ok(ctx_create(s, "committed"));
	assert_ok(ctx_set_ttl(s, "committed", 1000000)); /* 1000 s */
	clock_set(fc, T0 + 200 * SEC);
	test_put_str(s, "committed", "k", "v"); /* idle from T0 + 200 s */
	test_close_keeping_log(s);
	remove_checkpoints(dir);

	/* 900 s after the commit to "committed", 1100 s after its ttl was set. */
	clock_set(fc, T0 + 1100 * SEC);
	s = open_store(fc, dir, 0, 0);
	assert_int_equal(status_of(s, "committed").ttl_ms, 1000000);
	assert_int_equal(status_of(s, "committed").last_access_us, T0 + 200 * SEC);
	ctx_expire_now(s);
	/* "committed" was used 900 s ago: it must stay. */
	assert_int_equal(test_version_of(s, "committed"), 2);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A ttl set long after the context's last commit, then a crash, and a
 * reopen within the ttl of the setting: the idle time must not count from
 * before the ttl was set (the live store resets it there). */
static void test_ttl_set_late_survives_log_replay(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s;
	char *dir = test_make_dir("session-ttl-replay2");
	s = open_store(fc, dir, 0, 0);
	assert_ok(ctx_create(s, "late"));
	clock_set(fc, T0 + 100 * SEC);
	assert_ok(ctx_set_ttl(s, "late", 10000));
	test_close_keeping_log(s);
	remove_checkpoints(dir);
	clock_set(fc, T0 + 105 * SEC);
	s = open_store(fc, dir, 0, 0);
	assert_int_equal(status_of(s, "late").ttl_ms, 10000);
	assert_int_equal(ctx_expire_now(s), 0);
	assert_int_equal(test_version_of(s, "late"), 1);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A commit reads the clock before it takes the context's write lock, and
 * notes that time as the last access when it is done. If a read noted a
 * later time meanwhile, the last access must not go back: here a read at
 * 900 ms and a commit that read the clock at 0 ms but finished later; at
 * 1500 ms the context has been idle 600 ms of its 1000 ms ttl. The stall is
 * made by the fake clock itself: for the writer thread it returns the time
 * and then waits (what a preemption right after reading the clock does). */
typedef struct stall_clock {
	_Atomic uint64_t now;
	atomic_bool sampled;
	atomic_bool go;
} stall_clock;

static _Thread_local bool tl_stall_next;

static uint64_t stall_clock_read(void *arg)
{
	stall_clock *sc = arg;
	uint64_t v = atomic_load(&sc->now);
	if (tl_stall_next) {
		tl_stall_next = false;
		atomic_store(&sc->sampled, true);
		double until = test_now() + 60.0;
		while (!atomic_load(&sc->go) && test_now() < until)
			usleep(100);
	}
	return v;
}

typedef struct stalled_writer {
	ctx_store *s;
	ctx_status result;
} stalled_writer;

static void *stalled_writer_main(void *arg)
{
	stalled_writer *w = arg;
	tl_stall_next = true;
	w->result = ctx_put(w->s, "hot", "k", 1, "late", 4, NULL);
	tl_stall_next = false;
	return NULL;
}

static void test_commit_never_rewinds_access(void **unused)
{
	static stall_clock sc; /* outlives a failed test's store */
	atomic_store(&sc.now, T0);
	atomic_store(&sc.sampled, false);
	atomic_store(&sc.go, false);
	ctx_options o;
	ctx_options_init(&o);
	o.reaper_ms = REAPER_IDLE_MS;
	o.clock_us = stall_clock_read;
	o.clock_arg = &sc;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "hot"));
	assert_ok(ctx_set_ttl(s, "hot", 1000));

	stalled_writer w = {s, CTX_IO};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, stalled_writer_main, &w), 0);
	double until = test_now() + 60.0;
	while (!atomic_load(&sc.sampled) && test_now() < until)
		usleep(100);
	if (!atomic_load(&sc.sampled)) {
		atomic_store(&sc.go, true);
		pthread_join(th, NULL);
		fail_msg("the writer never read the clock");
	}
	atomic_store(&sc.now, T0 + 900 * MS);
	assert_int_equal(test_version_of(s, "hot"), 1); /* a read at 900 ms */
	assert_int_equal(status_of(s, "hot").last_access_us, T0 + 900 * MS);
	atomic_store(&sc.go, true);
	pthread_join(th, NULL);
	assert_ok(w.result);

	uint64_t last = status_of(s, "hot").last_access_us;
	atomic_store(&sc.now, T0 + 1500 * MS);
	size_t expired = ctx_expire_now(s);
	if (last < T0 + 900 * MS || expired != 0)
		fail_msg("a commit that read the clock before a read set the last access back "
		         "to %+lld ms (from +900 ms); at +1500 ms with a 1000 ms ttl "
		         "ctx_expire_now dropped %zu context(s)",
		         (long long)(last - T0) / 1000, expired);
	assert_int_equal(test_version_of(s, "hot"), 2);
	ctx_close(s);
}

/* ---- max_contexts ------------------------------------------------------------------------- */

static void test_max_contexts_limit(void **unused)
{
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 3, 0);
	ctx_session *se = open_session(s);
	assert_ok(ctx_create(s, "a"));
	assert_ok(ctx_session_activate(se, "b", true));
	assert_ok(ctx_create(s, "c"));
	assert_int_equal(ctx_create(s, "d"), CTX_LIMIT);
	assert_int_equal(ctx_count(s), 3);
	expect_missing(s, "d");
	/* Through a session: CTX_LIMIT, the active context unchanged. */
	assert_int_equal(ctx_session_activate(se, "d", true), CTX_LIMIT);
	assert_string_equal(ctx_session_current(se), "b");
	assert_int_equal(ctx_session_activate(se, "d", false), CTX_NOT_FOUND);
	/* Existing contexts still activate, and CTX_EXISTS beats CTX_LIMIT. */
	assert_ok(ctx_session_activate(se, "a", true));
	assert_int_equal(ctx_create(s, "a"), CTX_EXISTS);
	size_t n;
	ctx_context_status *v = view(s, &n);
	assert_int_equal(n, 3);
	free(v);

	/* A drop frees a slot, for exactly one create. */
	assert_ok(ctx_drop(s, "a"));
	assert_ok(ctx_session_activate(se, "d", true));
	assert_int_equal(ctx_create(s, "e"), CTX_LIMIT);

	/* So does an expiry, by ctx_expire_now ... */
	assert_ok(ctx_set_ttl(s, "b", 1000));
	clock_set(fc, T0 + 2 * SEC);
	assert_int_equal(ctx_expire_now(s), 1);
	assert_ok(ctx_create(s, "e"));
	assert_int_equal(ctx_create(s, "f"), CTX_LIMIT);

	/* ... and by the reaper a read woke. */
	assert_ok(ctx_set_ttl(s, "c", 1000));
	clock_set(fc, T0 + 4 * SEC);
	expect_missing(s, "c");
	assert_true(wait_count(s, 2, 60.0));
	assert_ok(ctx_session_activate(se, "f", true));
	assert_int_equal(ctx_session_activate(se, "g", true), CTX_LIMIT);
	assert_string_equal(ctx_session_current(se), "f");
	assert_int_equal(ctx_count(s), 3);
	ctx_session_close(se);
	ctx_close(s);
}

/* Many threads creating at once never pass the limit: exactly max creates
 * succeed, the rest get CTX_LIMIT. */
#define LIM_THREADS    8
#define LIM_PER_THREAD 16
#define LIM_MAX        37

typedef struct limiter {
	ctx_store *s;
	int idx;
	int ok;
	pthread_barrier_t *start;
} limiter;

static void *limiter_main(void *arg)
{
	limiter *l = arg;
	ctx_session *se = NULL;
	T_CHECK_STATUS(ctx_session_open(l->s, &se), CTX_OK);
	pthread_barrier_wait(l->start);
	for (int i = 0; i < LIM_PER_THREAD; i++) {
		char id[32];
		snprintf(id, sizeof(id), "lim-%d-%d", l->idx, i);
		ctx_status st =
		    (i & 1) && se ? ctx_session_activate(se, id, true) : ctx_create(l->s, id);
		T_CHECK(st == CTX_OK || st == CTX_LIMIT);
		if (st == CTX_OK)
			l->ok++;
		T_CHECK(ctx_count(l->s) <= LIM_MAX);
	}
	ctx_session_close(se);
	return NULL;
}

/* At the limit: creates that fail with CTX_LIMIT. */
typedef struct overflower {
	ctx_store *s;
	int idx;
	atomic_bool *stop;
} overflower;

static void *overflower_main(void *arg)
{
	overflower *o = arg;
	for (long i = 0; !atomic_load(o->stop); i++) {
		char id[32];
		snprintf(id, sizeof(id), "over-%d-%ld", o->idx, i);
		T_CHECK_STATUS(ctx_create(o->s, id), CTX_LIMIT);
	}
	return NULL;
}

static void test_max_contexts_concurrent(void **unused)
{
	reset_failures();
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, LIM_MAX, 0);
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, LIM_THREADS);
	limiter l[LIM_THREADS];
	pthread_t th[LIM_THREADS];
	for (int t = 0; t < LIM_THREADS; t++) {
		l[t] = (limiter){s, t, 0, &start};
		assert_int_equal(pthread_create(&th[t], NULL, limiter_main, &l[t]), 0);
	}
	int ok = 0;
	for (int t = 0; t < LIM_THREADS; t++) {
		pthread_join(th[t], NULL);
		ok += l[t].ok;
	}
	pthread_barrier_destroy(&start);
	assert_no_thread_failures();
	assert_int_equal(ok, LIM_MAX);
	assert_int_equal(ctx_count(s), LIM_MAX);
	size_t n;
	ctx_context_status *v = view(s, &n);
	assert_int_equal(n, LIM_MAX);
	free(v);

	/* Refused creates never make the count pass the limit, not even for
	 * a moment. */
	atomic_bool stop = false;
	overflower o[4];
	pthread_t oth[4];
	for (int t = 0; t < 4; t++) {
		o[t] = (overflower){s, t, &stop};
		assert_int_equal(pthread_create(&oth[t], NULL, overflower_main, &o[t]), 0);
	}
	size_t most = 0;
	long polls = test_iters(2000000, 200000);
	for (long i = 0; i < polls; i++) {
		size_t c = ctx_count(s);
		if (c > most)
			most = c;
	}
	atomic_store(&stop, true);
	for (int t = 0; t < 4; t++)
		pthread_join(oth[t], NULL);
	assert_no_thread_failures();
	if (most > LIM_MAX)
		fail_msg("ctx_count showed %zu contexts with max_contexts %d", most, LIM_MAX);
	assert_int_equal(ctx_count(s), LIM_MAX);
	ctx_close(s);
}

/* ---- expiry with threads ------------------------------------------------------------------ */

/* Readers and a writer use a context with a ttl while the clock moves on by a
 * quarter ttl per step, each step waiting until every thread has used it at
 * the new time; the reaper runs every millisecond. The context is never idle for a
 * ttl, so it must never expire. Then the readers stop, the clock jumps past
 * the ttl and the reaper drops it, with writers still trying. */
#define EXP_READERS 4

typedef struct exp_shared {
	ctx_store *s;
	_Atomic uint64_t epoch;
	atomic_bool stop;
	atomic_bool expect_live;
	_Atomic uint64_t seen[EXP_READERS + 1]; /* the last: the writer */
	atomic_long not_found_after;
} exp_shared;

typedef struct exp_reader {
	exp_shared *sh;
	int idx;
} exp_reader;

static void *exp_reader_main(void *arg)
{
	exp_reader *r = arg;
	exp_shared *sh = r->sh;
	ctx_session *se = NULL;
	T_CHECK_STATUS(ctx_session_open(sh->s, &se), CTX_OK);
	T_CHECK_STATUS(ctx_session_activate(se, "hot", false), CTX_OK);
	while (!atomic_load(&sh->stop)) {
		uint64_t e = atomic_load(&sh->epoch);
		ctx_state *st = NULL;
		ctx_status rs =
		    (r->idx & 1) ? ctx_session_get(se, &st) : ctx_get(sh->s, "hot", &st);
		/* Loaded after the read: the main thread clears it before it
		 * moves the clock past the ttl. */
		bool live = atomic_load(&sh->expect_live);
		if (live) {
			T_CHECK_STATUS(rs, CTX_OK);
		} else {
			T_CHECK(rs == CTX_OK || rs == CTX_NOT_FOUND);
			if (rs == CTX_NOT_FOUND)
				atomic_fetch_add(&sh->not_found_after, 1);
		}
		ctx_state_release(st);
		atomic_store(&sh->seen[r->idx], e);
	}
	ctx_session_close(se);
	return NULL;
}

static void *exp_writer_main(void *arg)
{
	exp_shared *sh = arg;
	long i = 0;
	while (!atomic_load(&sh->stop)) {
		/* The epoch is loaded before the commit reads the clock, as the
		 * readers do: the main thread moves the clock on only once every
		 * thread has finished an access begun at the current time, so no
		 * access carries a time more than a step old. (An older one would
		 * set the last access back: see test_commit_never_rewinds_access.) */
		uint64_t e = atomic_load(&sh->epoch);
		char v[24];
		int vl = snprintf(v, sizeof(v), "%ld", i++);
		ctx_status st = ctx_put(sh->s, "hot", "w", 1, v, (size_t)vl, NULL);
		atomic_store(&sh->seen[EXP_READERS], e);
		if (atomic_load(&sh->expect_live))
			T_CHECK_STATUS(st, CTX_OK);
		else
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
		if (st == CTX_NOT_FOUND)
			usleep(100);
	}
	return NULL;
}

static void test_expiry_races_with_readers(void **unused)
{
	reset_failures();
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL, 0, 1);
	assert_ok(ctx_create(s, "hot"));
	assert_ok(ctx_create(s, "cold"));
	assert_ok(ctx_set_ttl(s, "hot", 1000));
	assert_ok(ctx_set_ttl(s, "cold", 100000000));
	exp_shared *sh = calloc(1, sizeof(*sh));
	assert_non_null(sh);
	sh->s = s;
	atomic_store(&sh->expect_live, true);
	exp_reader r[EXP_READERS];
	pthread_t th[EXP_READERS + 1];
	for (int i = 0; i < EXP_READERS; i++) {
		r[i] = (exp_reader){sh, i};
		assert_int_equal(pthread_create(&th[i], NULL, exp_reader_main, &r[i]), 0);
	}
	assert_int_equal(pthread_create(&th[EXP_READERS], NULL, exp_writer_main, sh), 0);

	long steps = test_iters(300, 60);
	double deadline = test_now() + 60.0;
	for (long k = 1; k <= steps && test_now() < deadline; k++) {
		clock_advance(fc, 250 * MS);
		atomic_store(&sh->epoch, (uint64_t)k);
		for (int i = 0; i <= EXP_READERS; i++)
			while (atomic_load(&sh->seen[i]) < (uint64_t)k && test_now() < deadline)
				sched_yield();
		if (k % 16 == 0)
			T_CHECK(ctx_expire_now(s) == 0);
	}
	/* No asserts until the threads are stopped. */
	T_CHECK(test_now() < deadline);
	if (ctx_count(s) != 2)
		t_fail(__LINE__, "the context expired while used every quarter ttl",
		       (long long)ctx_count(s));

	/* Now let it go idle: everyone may see it vanish. */
	atomic_store(&sh->expect_live, false);
	/* A read that found it live just before a jump may note the time
	 * after the jump (it reads the clock twice): a legitimate access that
	 * keeps it alive. So jump again until it goes. */
	double jump_until = test_now() + 60.0;
	while (ctx_count(s) != 1 && test_now() < jump_until) {
		clock_advance(fc, 5 * SEC);
		usleep(2000);
	}
	T_CHECK(ctx_count(s) == 1);
	double until = test_now() + 60.0;
	while (atomic_load(&sh->not_found_after) == 0 && test_now() < until)
		usleep(1000);
	atomic_store(&sh->stop, true);
	for (int i = 0; i <= EXP_READERS; i++)
		pthread_join(th[i], NULL);
	assert_no_thread_failures();
	assert_true(atomic_load(&sh->not_found_after) > 0);
	expect_missing(s, "hot");
	assert_int_equal(test_version_of(s, "cold"), 1);
	free(sh);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_null_arguments),
	    cmocka_unit_test(test_session_activate),
	    cmocka_unit_test(test_session_switch_and_get),
	    cmocka_unit_test(test_session_get_after_drop),
	    cmocka_unit_test(test_session_threads_switching),
	    cmocka_unit_test(test_session_concurrent_create),
	    cmocka_unit_test(test_status_view),
	    cmocka_unit_test(test_status_view_concurrent),
	    cmocka_unit_test(test_expiry_basic),
	    cmocka_unit_test(test_expiry_read_wakes_reaper),
	    cmocka_unit_test(test_expiry_commit_fails),
	    cmocka_unit_test(test_expiry_postponed_by_access),
	    cmocka_unit_test(test_expiry_read_refresh_granularity),
	    cmocka_unit_test(test_ttl_zero_removes_expiry),
	    cmocka_unit_test(test_set_ttl_missing),
	    cmocka_unit_test(test_set_ttl_on_expired),
	    cmocka_unit_test(test_create_over_expired),
	    cmocka_unit_test(test_session_activate_create_over_expired),
	    cmocka_unit_test(test_expiry_reaper_timer),
	    cmocka_unit_test(test_expiry_watch_event),
	    cmocka_unit_test(test_expiry_durable),
	    cmocka_unit_test(test_ttl_survives_reopen),
	    cmocka_unit_test(test_ttl_survives_log_replay),
	    cmocka_unit_test(test_ttl_set_late_survives_log_replay),
	    cmocka_unit_test(test_commit_never_rewinds_access),
	    cmocka_unit_test(test_max_contexts_limit),
	    cmocka_unit_test(test_max_contexts_concurrent),
	    cmocka_unit_test(test_expiry_races_with_readers),
	};
	/* CTX_TEST_FILTER=pattern (with * wildcards) runs only matching tests. */
	const char *filter = getenv("CTX_TEST_FILTER");
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
