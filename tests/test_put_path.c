/*
 * test_put_path.c - what the in-memory commit path of round 7 keeps
 * (docs/benchmarks.md, "Round 7: the commit path at 64 threads").
 *
 * - ctx_put and ctx_del of memory and batch stores hold no reference to the
 *   context (txn.c, put_or_del): it is found under RCU and its write lock
 *   taken only if free; when it is held they fall back to a reference. The
 *   context's count, the history chain's counts and the visible version's
 *   (taken with a plain increment before the new version is reachable) stay
 *   exact while many threads put and delete, and while contexts are dropped
 *   and created again under them; the feed names the right context.
 * - A put that finds the write lock held waits for it (the fallback path)
 *   and commits after it: it never returns while the lock is held.
 */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define HOT 4

/* The counts of c, after its history is full and nobody else holds
 * anything: the table's reference and one per chained version; the head
 * held by the chain and by `visible`, every older one by its successor. */
static void check_counts(ctx_store *s, const char *id)
{
	ctx_context *c = store_find_context(s, id, strlen(id));
	assert_non_null(c);
	context_lock(c);
	size_t kept = c->kept, walked = 0;
	assert_ptr_equal(atomic_load(&c->visible), c->head);
	assert_int_equal(atomic_load(&c->head->refs), 2);
	uint64_t v = c->head->version;
	for (ctx_state *st = c->head; st; st = atomic_load(&st->prev)) {
		if (st != c->head)
			assert_int_equal(atomic_load(&st->refs), 1);
		assert_int_equal(st->version, v); /* dense */
		v--;
		walked++;
	}
	assert_int_equal(walked, kept);
	/* The table's, the chain's, ours. */
	assert_int_equal(atomic_load(&c->refs), 1 + kept + 1);
	context_unlock(c);
	context_release(c);
}

typedef struct shared {
	ctx_store *s;
	long per_thread;
	atomic_long ok[HOT];
	atomic_int stop;
} shared;

typedef struct worker {
	pthread_t th;
	int id;
	shared *sh;
} worker;

static void *put_worker(void *arg)
{
	worker *w = arg;
	shared *sh = w->sh;
	uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
	char key[16], id[8];
	for (long i = 0; i < sh->per_thread; i++) {
		int h = (int)test_rand_below(&rng, HOT);
		snprintf(id, sizeof(id), "h%d", h);
		snprintf(key, sizeof(key), "k%d", (int)test_rand_below(&rng, 8));
		uint64_t v = 0;
		ctx_status r = test_rand_below(&rng, 4)
		                   ? ctx_put(sh->s, id, key, strlen(key), "val", 3, &v)
		                   : ctx_del(sh->s, id, key, strlen(key), &v);
		T_CHECK(r == CTX_OK || r == CTX_NOT_FOUND);
		if (r == CTX_OK) {
			T_CHECK(v >= 2);
			atomic_fetch_add(&sh->ok[h], 1);
		}
	}
	return NULL;
}

static void run_workers(shared *sh, int n, void *(*fn)(void *))
{
	worker *w = calloc((size_t)n, sizeof(*w));
	assert_non_null(w);
	for (int i = 0; i < n; i++) {
		w[i].id = i;
		w[i].sh = sh;
		assert_int_equal(pthread_create(&w[i].th, NULL, fn, &w[i]), 0);
	}
	for (int i = 0; i < n; i++)
		pthread_join(w[i].th, NULL);
	free(w);
}

/* The id of hot context h ("h0" to "h3"). */
static void hot_id(char id[8], int h)
{
	snprintf(id, 8, "h%d", h);
}

/* A memory store keeping `depth` versions per context, with the HOT
 * contexts created empty: sh's store, its counts zero, per_thread set. */
static void open_hot(shared *sh, size_t depth)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = depth;
	sh->s = NULL;
	assert_ok(ctx_open(&o, &sh->s));
	sh->per_thread = test_iters(20000, 2000);
	for (int h = 0; h < HOT; h++) {
		char id[8];
		hot_id(id, h);
		assert_ok(ctx_create(sh->s, id));
		atomic_init(&sh->ok[h], 0);
	}
	atomic_init(&sh->stop, 0);
}

/* Every acknowledged put or delete is one version: the versions are dense
 * and their number is the number acknowledged; the counts are exact. */
static void test_counts_exact_many_threads(void **unused)
{
	(void)unused;
	enum { T = 16 };
	reset_failures();
	shared sh;
	open_hot(&sh, 8);
	ctx_store *s = sh.s;
	for (int h = 0; h < HOT; h++) {
		char id[8];
		hot_id(id, h);
		/* Fill the history first, and give the deletes keys to find. */
		for (int k = 0; k < 16; k++) {
			char key[16];
			snprintf(key, sizeof(key), "k%d", k % 8);
			assert_ok(ctx_put(s, id, key, strlen(key), "v", 1, NULL));
		}
	}
	run_workers(&sh, T, put_worker);
	assert_no_thread_failures();
	for (int h = 0; h < HOT; h++) {
		char id[8];
		hot_id(id, h);
		ctx_state *st;
		assert_ok(ctx_get(s, id, &st));
		assert_int_equal(ctx_state_version(st), 1 + 16 + atomic_load(&sh.ok[h]));
		ctx_state_release(st);
		check_counts(s, id);
	}
	ctx_close(s);
}

static void *churn_dropper(void *arg)
{
	worker *w = arg;
	shared *sh = w->sh;
	uint64_t rng = 77;
	while (!atomic_load(&sh->stop)) {
		char id[8];
		snprintf(id, sizeof(id), "h%d", (int)test_rand_below(&rng, HOT));
		ctx_status r = ctx_drop(sh->s, id);
		T_CHECK(r == CTX_OK || r == CTX_NOT_FOUND);
		r = ctx_create(sh->s, id);
		T_CHECK(r == CTX_OK || r == CTX_EXISTS);
	}
	return NULL;
}

typedef struct churn {
	shared *sh;
	int writers;
	atomic_int left;
} churn;

static churn the_churn;

static void *churn_thread(void *arg)
{
	worker *w = arg;
	if (w->id == 0)
		return churn_dropper(arg);
	put_worker(arg);
	if (atomic_fetch_sub(&the_churn.left, 1) == 1)
		atomic_store(&w->sh->stop, 1);
	return NULL;
}

/* Puts and deletes while their contexts are dropped and created again:
 * each gets OK or NOT_FOUND (never touches a freed context: ASan, TSan),
 * and what is left has exact counts and takes puts. */
static void test_puts_against_drops(void **unused)
{
	(void)unused;
	enum { T = 9 };
	reset_failures();
	shared sh;
	open_hot(&sh, 4);
	ctx_store *s = sh.s;
	the_churn.sh = &sh;
	atomic_init(&the_churn.left, T - 1);
	run_workers(&sh, T, churn_thread);
	assert_no_thread_failures();
	for (int h = 0; h < HOT; h++) {
		char id[8];
		hot_id(id, h);
		ctx_status r = ctx_create(s, id);
		assert_true(r == CTX_OK || r == CTX_EXISTS);
		for (int k = 0; k < 8; k++)
			assert_ok(ctx_put(s, id, "k", 1, "v", 1, NULL));
		check_counts(s, id);
	}
	ctx_close(s);
}

/* The feed names the context of each put (the caller's id, since the
 * committer holds no reference after unlocking), in dense versions. */
static void test_feed_names_the_context(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "alpha"));
	assert_ok(ctx_create(s, "beta"));
	ctx_watch *w = NULL;
	assert_ok(ctx_watch_open(s, "", true, 0, &w));
	for (int i = 0; i < 20; i++)
		assert_ok(ctx_put(s, i % 2 ? "beta" : "alpha", "k", 1, "v", 1, NULL));
	assert_ok(ctx_del(s, "alpha", "k", 1, NULL));
	uint64_t va = 1, vb = 1, rev = 0;
	for (int i = 0; i < 21; i++) {
		ctx_event *e = NULL;
		assert_ok(ctx_watch_wait(w, 10000, &e));
		assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
		assert_true(e->revision > rev);
		rev = e->revision;
		bool alpha = i == 20 || i % 2 == 0;
		assert_string_equal(e->id, alpha ? "alpha" : "beta");
		assert_int_equal(e->version, alpha ? ++va : ++vb);
		assert_int_equal(e->nkeys, 1);
		ctx_event_free(e);
	}
	ctx_watch_close(w);
	ctx_close(s);
}

typedef struct held_put {
	ctx_store *s;
	atomic_int done;
	ctx_status st;
	uint64_t version;
} held_put;

static void *put_behind_lock(void *arg)
{
	held_put *p = arg;
	p->st = ctx_put(p->s, "held", "k", 1, "after", 5, &p->version);
	atomic_store(&p->done, 1);
	return NULL;
}

/* A put that finds the write lock held does not commit around it: it
 * returns only after the holder lets go, with the version after the
 * holder's. */
static void test_put_waits_for_held_lock(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "held"));
	assert_ok(ctx_put(s, "held", "k", 1, "before", 6, NULL));
	ctx_context *c = store_find_context(s, "held", 4);
	assert_non_null(c);
	held_put p = {.s = s};
	atomic_init(&p.done, 0);
	context_lock(c);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, put_behind_lock, &p), 0);
	/* Until the put sleeps on the lock (its word says so: 2) or returns. */
	while (atomic_load(&c->write_lock.word) != 2 && !atomic_load(&p.done))
		sched_yield();
	assert_int_equal(atomic_load(&p.done), 0); /* the lock is still ours */
	assert_int_equal(c->head->version, 2);
	context_unlock(c);
	pthread_join(th, NULL);
	assert_ok(p.st);
	assert_int_equal(p.version, 3);
	context_release(c);
	ctx_state *st;
	assert_ok(ctx_get(s, "held", &st));
	const void *v;
	size_t vlen;
	assert_true(ctx_state_lookup(st, "k", 1, &v, &vlen));
	assert_int_equal(vlen, 5);
	assert_memory_equal(v, "after", 5);
	ctx_state_release(st);
	check_counts(s, "held");
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counts_exact_many_threads),
	    cmocka_unit_test(test_puts_against_drops),
	    cmocka_unit_test(test_feed_names_the_context),
	    cmocka_unit_test(test_put_waits_for_held_lock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
