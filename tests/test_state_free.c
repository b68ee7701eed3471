/*
 * test_state_free.c - version structs freed by the thread that released them
 * (state.c, WHO FREES).
 *
 * A released version's struct goes back, after a grace period, to the thread
 * that released it, which frees it when it next queues a batch; the worker
 * frees it only if that thread is gone or holds too many. These tests check
 * what must not change because of it: a version someone holds keeps its
 * number, revision, values and key count however many versions are made and
 * cut meanwhile, and every thread's exit (with batches still waiting for
 * their grace period, so that the worker meets a pool whose thread is gone)
 * loses and corrupts nothing. Run them under ASan and TSan: a struct freed
 * too early or twice shows there.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define CONTEXTS 4

typedef struct writer {
	ctx_store *s;
	int n;
	long commits;
} writer;

/* Put key "k" = the commit's number into every context, n times each. */
static void *write_loop(void *arg)
{
	writer *w = arg;
	char id[16], val[32];
	for (long i = 0; i < w->commits; i++) {
		snprintf(id, sizeof(id), "c%ld", i % CONTEXTS);
		int len = snprintf(val, sizeof(val), "%d-%ld", w->n, i);
		T_CHECK_STATUS(ctx_put(w->s, id, "k", 1, val, (size_t)len, NULL), CTX_OK);
	}
	return NULL;
}

typedef struct held {
	ctx_state *st;
	uint64_t version, revision;
	size_t count;
	char val[32];
	size_t vlen;
} held;

static void note(held *h, ctx_state *st)
{
	const void *v;
	size_t vlen;
	h->st = st;
	h->version = ctx_state_version(st);
	h->revision = ctx_state_revision(st);
	h->count = ctx_state_count(st);
	h->vlen = 0;
	if (ctx_state_lookup(st, "k", 1, &v, &vlen) && vlen < sizeof(h->val)) {
		memcpy(h->val, v, vlen);
		h->vlen = vlen;
	}
}

static void check_unchanged(const held *h)
{
	const void *v = NULL;
	size_t vlen = 0;
	assert_int_equal(ctx_state_version(h->st), h->version);
	assert_int_equal(ctx_state_revision(h->st), h->revision);
	assert_int_equal(ctx_state_count(h->st), h->count);
	if (h->vlen) {
		assert_true(ctx_state_lookup(h->st, "k", 1, &v, &vlen));
		assert_int_equal(vlen, h->vlen);
		assert_memory_equal(v, h->val, vlen);
	}
}

/* Rounds of short-lived writer threads; between rounds the main thread
 * takes versions and holds them while later rounds make (and cut, with a
 * history of 4) thousands of versions whose structs are freed. */
static void test_held_versions_survive_reuse(void **state)
{
	(void)state;
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 4;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	char id[16];
	for (int c = 0; c < CONTEXTS; c++) {
		snprintf(id, sizeof(id), "c%d", c);
		assert_ok(ctx_create(s, id));
	}
	reset_failures();
	enum { ROUNDS = 12, THREADS = 4 };
	long commits = test_iters(4000, 400) / CONTEXTS * CONTEXTS;
	held h[ROUNDS * CONTEXTS];
	size_t nheld = 0;
	for (int r = 0; r < ROUNDS; r++) {
		pthread_t t[THREADS];
		writer w[THREADS];
		for (int i = 0; i < THREADS; i++) {
			w[i] = (writer){s, r * THREADS + i, commits};
			assert_int_equal(pthread_create(&t[i], NULL, write_loop, &w[i]), 0);
		}
		for (int i = 0; i < THREADS; i++)
			pthread_join(t[i], NULL);
		assert_no_thread_failures();
		for (size_t i = 0; i < nheld; i++)
			check_unchanged(&h[i]);
		for (int c = 0; c < CONTEXTS; c++) {
			ctx_state *st;
			snprintf(id, sizeof(id), "c%d", c);
			assert_ok(ctx_get(s, id, &st));
			note(&h[nheld++], st);
			/* Every round added THREADS * commits / CONTEXTS versions. */
			assert_int_equal(ctx_state_version(st),
			                 1 + (uint64_t)(r + 1) * THREADS * (commits / CONTEXTS));
		}
	}
	for (size_t i = 0; i < nheld; i++) {
		check_unchanged(&h[i]);
		ctx_state_release(h[i].st);
	}
	ctx_close(s);
}

/* A thread that only releases versions (it drops the last reference to
 * versions others made and cut) and then exits: its structs must be freed,
 * not lost (ASan's leak check) nor freed twice. */
typedef struct dropper {
	ctx_state **st;
	size_t n;
} dropper;

static void *drop_all(void *arg)
{
	dropper *d = arg;
	for (size_t i = 0; i < d->n; i++)
		ctx_state_release(d->st[i]);
	return NULL;
}

static void test_releasing_thread_exits(void **state)
{
	(void)state;
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 1;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "a"));
	size_t n = (size_t)test_iters(5000, 500);
	ctx_state **st = calloc(n, sizeof(*st));
	assert_non_null(st);
	for (size_t i = 0; i < n; i++) {
		char val[24];
		int len = snprintf(val, sizeof(val), "%zu", i);
		assert_ok(ctx_put(s, "a", "k", 1, val, (size_t)len, NULL));
		assert_ok(ctx_get(s, "a", &st[i]));
		assert_int_equal(ctx_state_version(st[i]), i + 2);
	}
	/* Held versions are intact although history kept one at a time. */
	for (size_t i = 0; i < n; i++) {
		const void *v;
		size_t vlen;
		char want[24];
		int len = snprintf(want, sizeof(want), "%zu", i);
		assert_true(ctx_state_lookup(st[i], "k", 1, &v, &vlen));
		assert_int_equal(vlen, (size_t)len);
		assert_memory_equal(v, want, vlen);
	}
	pthread_t t;
	dropper d = {st, n};
	assert_int_equal(pthread_create(&t, NULL, drop_all, &d), 0);
	pthread_join(t, NULL);
	/* More commits after that thread is gone, from this one. */
	for (size_t i = 0; i < n; i++)
		assert_ok(ctx_put(s, "a", "k", 1, "x", 1, NULL));
	ctx_state *last;
	assert_ok(ctx_get(s, "a", &last));
	assert_int_equal(ctx_state_version(last), 2 * n + 1);
	ctx_state_release(last);
	free(st);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_held_versions_survive_reuse),
	    cmocka_unit_test(test_releasing_thread_exits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
