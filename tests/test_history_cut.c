/*
 * test_history_cut.c - the history chain as commits cut its oldest version,
 * and the keys a create reports (store.c: context_push_head, report_create;
 * docs/benchmarks.md, "Round 6: mixed and create at 64 threads").
 *
 * context_push_head cuts the oldest kept version with a release store of
 * NULL into its successor's prev (it was a locked exchange); the chain is
 * walked meanwhile by readers without the write lock (ctx_history,
 * ctx_get_at). What is checked: after every commit the history holds
 * exactly min(commits, history_depth) consecutive versions ending at the
 * head, and each listed version can be read with its own value; readers
 * that walk the chain while a writer cuts it see consecutive versions, at
 * most history_depth of them, each readable or already cut (TSan runs
 * this). And a create reports its keys to a watcher, both for a few keys
 * (kept on the stack) and for more than eight (allocated).
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH 5

static ctx_store *open_depth(size_t depth, bool keep)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = depth;
	o.watch_keep_history = keep;
	return test_open(&o);
}

static void put_n(ctx_store *s, const char *id, uint64_t n)
{
	char v[32];
	int len = snprintf(v, sizeof(v), "v%llu", (unsigned long long)n);
	assert_ok(ctx_put(s, id, "k", 1, v, (size_t)len, NULL));
}

/* The value version ver of "a" must hold: the create is version 1 (no key),
 * the put numbered n makes version n + 1. */
static void check_version_value(ctx_store *s, uint64_t ver)
{
	ctx_state *st = NULL;
	assert_ok(ctx_get_at(s, "a", ver, &st));
	char want[32];
	int len = snprintf(want, sizeof(want), "v%llu", (unsigned long long)(ver - 1));
	const void *got = NULL;
	size_t vlen = 0;
	assert_true(ctx_state_lookup(st, "k", 1, &got, &vlen));
	assert_int_equal(vlen, (size_t)len);
	assert_memory_equal(got, want, vlen);
	ctx_state_release(st);
}

/* One thread: the kept window slides one version per commit. */
static void test_window_slides(void **unused)
{
	(void)unused;
	ctx_store *s = open_depth(DEPTH, false);
	assert_ok(ctx_create(s, "a"));
	for (uint64_t n = 1; n <= 40; n++) {
		put_n(s, "a", n);
		ctx_history_entry *h = NULL;
		size_t count = 0;
		assert_ok(ctx_history(s, "a", &h, &count));
		uint64_t head = n + 1, want = head < DEPTH ? head : DEPTH;
		assert_int_equal(count, want);
		for (size_t i = 0; i < count; i++)
			assert_int_equal(h[i].version, head - count + 1 + i);
		free(h);
		if (head > DEPTH) {
			ctx_state *st = NULL;
			assert_int_equal(ctx_get_at(s, "a", head - DEPTH, &st), CTX_NOT_FOUND);
		}
		check_version_value(s, head - want + 1 > 1 ? head - want + 1 : 2);
	}
	ctx_close(s);
}

typedef struct shared {
	ctx_store *s;
	atomic_bool stop;
} shared;

static void *walker(void *arg)
{
	shared *sh = arg;
	while (!atomic_load(&sh->stop)) {
		ctx_history_entry *h = NULL;
		size_t count = 0;
		if (ctx_history(sh->s, "a", &h, &count) != CTX_OK) {
			t_fail(__LINE__, "ctx_history", 0);
			break;
		}
		if (count == 0 || count > DEPTH)
			t_fail(__LINE__, "history length", (long long)count);
		for (size_t i = 1; i < count; i++)
			if (h[i].version != h[i - 1].version + 1)
				t_fail(__LINE__, "versions not consecutive",
				       (long long)h[i].version);
		/* Read the oldest listed version: found with its value, or cut
		 * by the writer meanwhile (NOT_FOUND), never anything else. */
		uint64_t ver = count ? h[0].version : 0;
		free(h);
		if (ver < 2)
			continue;
		ctx_state *st = NULL;
		ctx_status r = ctx_get_at(sh->s, "a", ver, &st);
		if (r == CTX_NOT_FOUND)
			continue;
		if (r != CTX_OK) {
			t_fail(__LINE__, "ctx_get_at", r);
			continue;
		}
		char want[32];
		int len = snprintf(want, sizeof(want), "v%llu", (unsigned long long)(ver - 1));
		const void *got = NULL;
		size_t vlen = 0;
		if (!ctx_state_lookup(st, "k", 1, &got, &vlen) || vlen != (size_t)len ||
		    memcmp(got, want, vlen) != 0)
			t_fail(__LINE__, "old version's value", (long long)ver);
		ctx_state_release(st);
	}
	return NULL;
}

/* A writer cuts the chain while two readers walk it. */
static void test_cut_under_readers(void **unused)
{
	(void)unused;
	reset_failures();
	shared sh = {.s = open_depth(DEPTH, false)};
	assert_ok(ctx_create(sh.s, "a"));
	put_n(sh.s, "a", 1);
	pthread_t r[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&r[i], NULL, walker, &sh), 0);
	uint64_t n = (uint64_t)test_iters(20000, 2000);
	for (uint64_t i = 2; i <= n; i++)
		put_n(sh.s, "a", i);
	atomic_store(&sh.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	assert_no_thread_failures();
	ctx_history_entry *h = NULL;
	size_t count = 0;
	assert_ok(ctx_history(sh.s, "a", &h, &count));
	assert_int_equal(count, DEPTH);
	assert_int_equal(h[DEPTH - 1].version, n + 1);
	free(h);
	check_version_value(sh.s, n + 2 - DEPTH);
	ctx_close(sh.s);
}

/* A create's event lists the keys it wrote, for n keys. */
static void create_reports_keys(size_t n)
{
	ctx_store *s = open_depth(0, false);
	ctx_watch *w = NULL;
	assert_ok(ctx_watch_open(s, "", true, 0, &w));
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin_create(s, "c", &t));
	char key[16];
	for (size_t i = 0; i < n; i++) {
		int len = snprintf(key, sizeof(key), "key%zu", i);
		assert_ok(ctx_txn_put(t, key, (size_t)len, "v", 1));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
	ctx_event *e = NULL;
	assert_ok(ctx_watch_next(w, &e));
	assert_int_equal(e->kind, CTX_EVENT_CREATED);
	assert_string_equal(e->id, "c");
	assert_int_equal(e->nkeys, n);
	for (size_t i = 0; i < n; i++) {
		int len = snprintf(key, sizeof(key), "key%zu", i);
		bool found = false;
		for (size_t j = 0; j < e->nkeys && !found; j++)
			found =
			    e->klens[j] == (size_t)len && memcmp(e->keys[j], key, (size_t)len) == 0;
		assert_true(found);
	}
	ctx_event_free(e);
	ctx_watch_close(w);
	ctx_close(s);
}

static void test_create_reports_keys(void **unused)
{
	(void)unused;
	create_reports_keys(0);
	create_reports_keys(3);
	create_reports_keys(8);
	create_reports_keys(9);
	create_reports_keys(40);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_window_slides),
	    cmocka_unit_test(test_cut_under_readers),
	    cmocka_unit_test(test_create_reports_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
