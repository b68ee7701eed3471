/*
 * test_r19_update1t.c - the one-key commit path of round 19 (r19-update1t).
 *
 * 1. ctx_put hands its leaf's reference to the new version's map (txn.c,
 *    single_op): right after a put the newest version's leaf for that key
 *    is held by that map alone (count 1: a reference too many would leak
 *    it, one too few would free it under the map), whether the value
 *    changed or not, on the quick path (no reference to the context) and
 *    on the one that holds a reference (a store that makes automatic
 *    points); a put to a dropped context and a delete leave nothing
 *    behind (the ASan build checks for leaks).
 * 2. The feed's report names the caller's key (the leaf may go with its
 *    version while the report runs): a watch sees every put and delete
 *    with its key, the caller's buffer changed right after each call.
 * 3. A commit publishes its version under the write lock with no read-side
 *    critical section of its own (store.c, context_publish_locked): what
 *    it replaces cannot be freed meanwhile. Right after every put ctx_get
 *    sees the put's version (part 1), and writers racing with drops and
 *    creates of their context, in a memory and a batch store, either
 *    commit or find it gone (the sanitizer builds check the memory).
 * 4. An overwrite changes the map's checksum by the new leaf's content
 *    hash minus the old one's, with the key hashed once (hamt.c,
 *    leaf_sum_change): after every put, delete and same-value put the
 *    checksum equals the sum of the content hashes of what the version
 *    holds, for short and long keys (the 16-bit length escape), values of
 *    changing lengths, and keys that share a full hash (collision nodes).
 */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hamt.h"
#include "store.h"

#define NKEYS 12

/* Key i: short, or long enough to use the leaf's long-length form. */
static size_t key_make(unsigned i, unsigned char *buf)
{
	size_t n = i % 5 == 4 ? HAMT_KLEN_LONG + (i / 5) % 2 : 3 + i % 7; /* <= max_key_size */
	for (size_t j = 0; j < n; j++)
		buf[j] = (unsigned char)('a' + (j * 5 + i) % 26);
	buf[0] = (unsigned char)('A' + i);
	return n;
}

static unsigned char *key_buf(void)
{
	unsigned char *b = malloc(HAMT_KLEN_LONG + 2);
	assert_non_null(b);
	return b;
}

/* The leaf of key in c's newest version, and that version (a reference). */
static const hamt_leaf *newest_leaf(ctx_store *s, const char *id, const void *key, size_t klen,
                                    ctx_state **st)
{
	assert_int_equal(ctx_get(s, id, st), CTX_OK);
	return hamt_find(&(*st)->data, hamt_hash(key, klen), key, klen);
}

static uint64_t sum_pairs;

static bool add_pair(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)arg;
	sum_pairs += hamt_content_hash(key, klen, val, vlen);
	return true;
}

/* c's newest version's data checksum equals the sum of its pairs'. */
static void check_sum(ctx_store *s, const char *id)
{
	ctx_state *st;
	assert_int_equal(ctx_get(s, id, &st), CTX_OK);
	sum_pairs = 0;
	assert_int_equal(ctx_get_each(s, id, add_pair, NULL), CTX_OK);
	assert_true(st->data.sum == sum_pairs);
	ctx_state_release(st);
}

static void put_refs_on(ctx_store *s)
{
	assert_int_equal(ctx_create(s, "c"), CTX_OK);
	unsigned char *key = key_buf();
	char val[40];
	uint64_t rng = 19;
	for (int round = 0; round < 400; round++) {
		unsigned i = (unsigned)test_rand_below(&rng, NKEYS);
		size_t klen = key_make(i, key);
		/* Every third put writes the value the key has (a change of
		 * nothing: the map still takes the new leaf). */
		size_t vlen = 1 + (size_t)(round % 3 == 0 ? i : test_rand_below(&rng, sizeof(val)));
		memset(val, 'a' + (round % 3 == 0 ? 0 : round % 26), vlen);
		uint64_t version = 0;
		assert_int_equal(ctx_put(s, "c", key, klen, val, vlen, &version), CTX_OK);
		ctx_state *st;
		const hamt_leaf *l = newest_leaf(s, "c", key, klen, &st);
		assert_non_null(l);
		assert_int_equal(st->version, version);
		assert_int_equal(l->vlen, vlen);
		assert_memory_equal(hamt_leaf_key(l) + klen, val, vlen);
		/* The new version's map alone holds the leaf the put made. */
		assert_int_equal(atomic_load(&((hamt_leaf *)l)->refs), 1);
		ctx_state_release(st);
		if (round % 7 == 6) {
			unsigned d = (unsigned)test_rand_below(&rng, NKEYS);
			size_t dlen = key_make(d, key);
			ctx_status got = ctx_del(s, "c", key, dlen, NULL);
			assert_true(got == CTX_OK || got == CTX_NOT_FOUND);
			assert_int_equal(ctx_get(s, "c", &st), CTX_OK);
			assert_null(hamt_find(&st->data, hamt_hash(key, dlen), key, dlen));
			ctx_state_release(st);
		}
		check_sum(s, "c");
	}
	assert_int_equal(ctx_drop(s, "c"), CTX_OK);
	size_t klen = key_make(0, key);
	assert_int_equal(ctx_put(s, "c", key, klen, "x", 1, NULL), CTX_NOT_FOUND);
	free(key);
}

/* A clock that stands at its start until armed, then moves on by 600 µs at
 * every read. */
static _Atomic uint64_t step_now = 1700000000000000ull;
static atomic_bool step_armed;

static uint64_t step_clock(void *arg)
{
	(void)arg;
	return atomic_load(&step_armed) ? atomic_fetch_add(&step_now, 600) + 600
	                                : atomic_load(&step_now);
}

/* A put whose commit finds its context past its time-to-live (1 ms: the
 * clock moves on between ctx_put's check and the commit's own read, or
 * before both) fails, and its leaf is the caller's to free: the ASan
 * build sees a leak or a double free if the map's hand-over got it wrong. */
static void test_put_expired(void **state)
{
	(void)state;
	ctx_options o;
	ctx_options_init(&o);
	o.clock_us = step_clock;
	ctx_store *s;
	assert_int_equal(ctx_open(&o, &s), CTX_OK);
	assert_int_equal(ctx_create(s, "t"), CTX_OK);
	assert_int_equal(ctx_put(s, "t", "k", 1, "v", 1, NULL), CTX_OK);
	assert_int_equal(ctx_set_ttl(s, "t", 1), CTX_OK);
	atomic_store(&step_armed, true);
	assert_int_equal(ctx_put(s, "t", "k", 1, "w", 1, NULL), CTX_NOT_FOUND);
	assert_int_equal(ctx_put(s, "t", "k", 1, "w", 1, NULL), CTX_NOT_FOUND);
	ctx_close(s);
	atomic_store(&step_armed, false);
}

static void test_put_leaf_refs(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	put_refs_on(s);
	ctx_close(s);
}

/* A store that makes automatic points commits with a reference to the
 * context (put_or_del's slower path), and a history of 1 cuts every
 * version at the next commit. */
static void test_put_leaf_refs_held(void **state)
{
	(void)state;
	ctx_options o;
	ctx_options_init(&o);
	o.auto_point_every = 5;
	o.history_depth = 1;
	ctx_store *s;
	assert_int_equal(ctx_open(&o, &s), CTX_OK);
	put_refs_on(s);
	ctx_close(s);
}

/* Every put and delete reaches a watch with the caller's key, although the
 * caller's buffer changes right after the call. */
static void test_report_names_key(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	assert_int_equal(ctx_create(s, "w"), CTX_OK);
	ctx_watch *w;
	assert_int_equal(ctx_watch_open(s, "w", false, 0, &w), CTX_OK);
	unsigned char *key = key_buf(), *want = key_buf();
	enum { N = 60 };
	size_t lens[N];
	bool del[N];
	for (unsigned i = 0; i < N; i++) {
		lens[i] = key_make(i % NKEYS, key);
		del[i] = (i / NKEYS) % 2 == 1 && i % 3 == 0; /* keys put before */
		ctx_status st = del[i] ? ctx_del(s, "w", key, lens[i], NULL)
		                       : ctx_put(s, "w", key, lens[i], "v", 1, NULL);
		assert_int_equal(st, CTX_OK);
		memset(key, '#', lens[i]);
	}
	for (unsigned i = 0; i < N; i++) {
		ctx_event *e;
		assert_int_equal(ctx_watch_wait(w, 10000, &e), CTX_OK);
		assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
		assert_int_equal(e->version, i + 2);
		assert_int_equal(e->nkeys, 1);
		assert_int_equal(e->klens[0], lens[i]);
		key_make(i % NKEYS, want);
		assert_memory_equal(e->keys[0], want, lens[i]);
		ctx_event_free(e);
	}
	ctx_watch_close(w);
	free(key);
	free(want);
	ctx_close(s);
}

/* Writers and a dropper of one context. */
typedef struct race {
	ctx_store *s;
	long iters;
	atomic_bool stop;
	atomic_long commits;
} race;

static void *race_writer(void *arg)
{
	race *r = arg;
	char key[8];
	uint64_t rng = (uint64_t)(uintptr_t)&key;
	while (!atomic_load(&r->stop)) {
		snprintf(key, sizeof(key), "k%u", (unsigned)test_rand_below(&rng, 8));
		uint64_t version = 0;
		ctx_status st = ctx_put(r->s, "d", key, strlen(key), "value", 5, &version);
		if (st == CTX_OK) {
			if (version < 1)
				t_fail(__LINE__, "version", (long long)version);
			atomic_fetch_add(&r->commits, 1);
		} else if (st != CTX_NOT_FOUND) {
			t_fail(__LINE__, "put", st);
		}
	}
	return NULL;
}

static void race_on(ctx_store *s)
{
	race r = {.s = s, .iters = test_iters(600, 50)};
	atomic_init(&r.stop, false);
	atomic_init(&r.commits, 0);
	reset_failures();
	pthread_t w[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&w[i], NULL, race_writer, &r), 0);
	for (long i = 0; i < r.iters; i++) {
		ctx_status st = ctx_create(s, "d");
		assert_true(st == CTX_OK || st == CTX_EXISTS);
		sched_yield();
		st = ctx_drop(s, "d");
		assert_true(st == CTX_OK || st == CTX_NOT_FOUND);
	}
	/* The context stays: the writers' next puts commit. */
	assert_int_equal(ctx_create(s, "d"), CTX_OK);
	long before = atomic_load(&r.commits);
	double until = test_now() + 60;
	while (atomic_load(&r.commits) < before + 10 && test_now() < until)
		sched_yield();
	atomic_store(&r.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	assert_no_thread_failures();
	assert_true(atomic_load(&r.commits) >= before + 10);
	ctx_state *st;
	assert_int_equal(ctx_get(s, "d", &st), CTX_OK);
	assert_true(st->version >= 2);
	ctx_state_release(st);
}

static void test_publish_drop_race(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	race_on(s);
	ctx_close(s);
	char *dir = test_make_dir("r19_update1t");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	assert_int_equal(ctx_open(&o, &s), CTX_OK);
	race_on(s);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Keys that share a full hash: overwrites inside collision nodes. */
static uint64_t one_hash(const void *key, size_t klen, uint64_t hash)
{
	(void)key;
	(void)klen;
	(void)hash;
	return 0x5eed5eed5eed5eedull;
}

static void test_sum_collisions(void **state)
{
	(void)state;
	hamt_test_hash_hook(one_hash);
	ctx_store *s = test_open_memory();
	assert_int_equal(ctx_create(s, "h"), CTX_OK);
	unsigned char *key = key_buf();
	uint64_t rng = 7;
	for (int round = 0; round < 120; round++) {
		unsigned i = (unsigned)test_rand_below(&rng, 6);
		size_t klen = key_make(i, key);
		char val[32];
		size_t vlen = 1 + (size_t)test_rand_below(&rng, sizeof(val));
		memset(val, 'a' + round % 3, vlen);
		assert_int_equal(ctx_put(s, "h", key, klen, val, vlen, NULL), CTX_OK);
		if (round % 5 == 4) {
			klen = key_make((unsigned)test_rand_below(&rng, 6), key);
			ctx_status got = ctx_del(s, "h", key, klen, NULL);
			assert_true(got == CTX_OK || got == CTX_NOT_FOUND);
		}
		check_sum(s, "h");
	}
	ctx_close(s);
	hamt_test_hash_hook(NULL);
	free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_leaf_refs),
	    cmocka_unit_test(test_put_leaf_refs_held),
	    cmocka_unit_test(test_put_expired),
	    cmocka_unit_test(test_report_names_key),
	    cmocka_unit_test(test_publish_drop_race),
	    cmocka_unit_test(test_sum_collisions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
