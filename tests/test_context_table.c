/*
 * test_context_table.c - the table of contexts (open addressing, store.c) and
 * what a context costs (docs/benchmarks.md, "Round 5: the context table and
 * the context struct").
 *
 * The table keeps each id's hash beside the context's address; a removed
 * context leaves a tombstone (or an empty slot when the next one is empty),
 * and the table is rebuilt into a new array when live slots and tombstones
 * pass 3/4 of it. What is checked: the bytes of a context and of its index
 * node; that churn (creates and drops of ever new ids) does not grow the
 * table past what its live contexts need; that ids that collide on their
 * hash are told apart; that the ordered listing, drops and recreation keep
 * working through rebuilds; and that lookups, listings and the status of
 * each id stay right while other threads create and drop the same ids
 * (TSan runs this too). The table grows a few slots per insert (store.c,
 * "Growing"): while both arrays are there, every context is found, counted
 * and walked once, drops take it out of both, and readers never miss a
 * context that stays.
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

#include "hamt.h"
#include "store.h"

static size_t slots(ctx_store *s)
{
	return atomic_load(&s->table)->mask + 1;
}

/* A context is 128 bytes besides its id and index node (208 with a
 * cds_lfht node, its hash, an index pointer, a size_t length and a 40-byte
 * pthread mutex), and its index node 8 bytes plus 8 per level (32 plus 8
 * with a key pointer, key length and owner): for "ctx-00000", its node
 * starts 144 bytes in (224 before), and with one level the request is 160
 * bytes (264 before). */
static void test_context_bytes(void **unused)
{
	(void)unused;
	if (sizeof(void *) != 8)
		skip();
	assert_true(sizeof(ctx_context) <= 128);
	assert_int_equal(index_node_size(1), 16);
	assert_int_equal(index_node_size(3), 32);
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "ctx-00000"));
	ctx_context *c = store_find_context(s, "ctx-00000", 9);
	assert_non_null(c);
	index_node *n = context_inode(c);
	assert_ptr_equal(index_owner(n), c);
	assert_string_equal(index_key(n), "ctx-00000");
	assert_true((char *)n - (char *)c <= 144);
	context_release(c);
	ctx_close(s);
}

/* Creates and drops of ever new ids: the table stays sized to the contexts
 * that live, not to all the ids it ever held. */
static void test_churn_does_not_grow(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	enum { LIVE = 300, ROUNDS = 40 };
	char id[32];
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < LIVE; i++) {
			snprintf(id, sizeof(id), "r%d-%d", r, i);
			assert_ok(ctx_create(s, id));
		}
		for (int i = 0; i < LIVE; i += 7) {
			snprintf(id, sizeof(id), "r%d-%d", r, i);
			ctx_state *st = NULL;
			assert_ok(ctx_get(s, id, &st));
			ctx_state_release(st);
		}
		for (int i = 0; i < LIVE; i++) {
			snprintf(id, sizeof(id), "r%d-%d", r, i);
			assert_ok(ctx_drop(s, id));
		}
		assert_int_equal(ctx_count(s), 0);
		/* 12,000 ids in all; never more than 4 slots per live one. */
		assert_true(slots(s) <= 4 * (LIVE + 1));
	}
	for (int r = 0; r < ROUNDS; r += 5) {
		snprintf(id, sizeof(id), "r%d-%d", r, 11);
		ctx_state *st = NULL;
		assert_int_equal(ctx_get(s, id, &st), CTX_NOT_FOUND);
	}
	ctx_close(s);
}

/* Every id hashes to one of 4 values: long probe runs of equal hashes,
 * told apart by the id; drops in the middle of a run (tombstones) and at
 * its end (emptied slots) keep the rest findable, and a rebuild too. */
static uint64_t four_hashes(const void *key, size_t klen, uint64_t hash)
{
	(void)key;
	(void)klen;
	return hash & 3;
}

static void test_colliding_hashes(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	hamt_test_hash_hook(four_hashes);
	enum { N = 200 };
	char id[32];
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "h%03d", i);
		assert_ok(ctx_create(s, id));
	}
	for (int i = 0; i < N; i += 3) {
		snprintf(id, sizeof(id), "h%03d", i);
		assert_ok(ctx_drop(s, id));
	}
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "h%03d", i);
		ctx_state *st = NULL;
		ctx_status want = i % 3 ? CTX_OK : CTX_NOT_FOUND;
		assert_int_equal(ctx_get(s, id, &st), want);
		if (st)
			ctx_state_release(st);
		assert_int_equal(ctx_create(s, id), i % 3 ? CTX_EXISTS : CTX_OK);
	}
	assert_int_equal(ctx_count(s), N);
	ctx_list l;
	assert_ok(ctx_list_ids(s, "h", NULL, 0, &l));
	assert_int_equal(l.count, N);
	for (size_t i = 0; i < l.count; i++) {
		snprintf(id, sizeof(id), "h%03zu", i);
		assert_string_equal(l.ids[i], id);
	}
	ctx_list_free(&l);
	hamt_test_hash_hook(NULL);
	ctx_close(s);
}

/* Recovery inserts every context of a checkpoint and of the log into the
 * table (growing it from its smallest size) and a drop in the log takes one
 * out again. */
static void test_recovered_table(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("context_table");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	enum { N = 3000 };
	char id[32];
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "ctx-%d", i);
		assert_ok(ctx_create(s, id));
	}
	assert_ok(ctx_checkpoint(s));
	for (int i = 0; i < N; i += 2) {
		snprintf(id, sizeof(id), "ctx-%d", i);
		assert_ok(ctx_drop(s, id));
	}
	for (int i = N; i < N + 100; i++) {
		snprintf(id, sizeof(id), "ctx-%d", i);
		assert_ok(ctx_create(s, id));
	}
	ctx_close(s);
	assert_ok(ctx_open(&o, &s));
	assert_int_equal(ctx_count(s), N / 2 + 100);
	for (int i = 0; i < N + 100; i++) {
		snprintf(id, sizeof(id), "ctx-%d", i);
		ctx_state *st = NULL;
		bool live = i >= N || i % 2;
		assert_int_equal(ctx_get(s, id, &st), live ? CTX_OK : CTX_NOT_FOUND);
		if (st)
			ctx_state_release(st);
	}
	assert_true(4 * ctx_count(s) <= 3 * slots(s));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Threads create and drop the same 64 ids over and over (rebuilding the
 * table now and then: it starts at 64 slots) while readers look them up and
 * list them: a lookup finds a live context or none, a listing is sorted and
 * holds each id at most once, and the ids that stay are always found. */
#define CHURNERS 3
#define LOOKERS  2
#define HOT      64
#define STAYING  100
static ctx_store *shared;
static atomic_bool stop;

static void *churner(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	for (int n = 0; n < 4000; n++) {
		char id[32];
		snprintf(id, sizeof(id), "hot-%02d", rand_r(&seed) % HOT);
		ctx_status st = rand_r(&seed) % 2 ? ctx_create(shared, id) : ctx_drop(shared, id);
		T_CHECK(st == CTX_OK || st == CTX_EXISTS || st == CTX_NOT_FOUND);
	}
	return NULL;
}

static void *looker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	while (!atomic_load(&stop)) {
		char id[32];
		ctx_state *st = NULL;
		snprintf(id, sizeof(id), "hot-%02d", rand_r(&seed) % HOT);
		ctx_status r = ctx_get(shared, id, &st);
		T_CHECK(r == CTX_OK || r == CTX_NOT_FOUND);
		if (st) {
			T_CHECK(ctx_state_version(st) == 1);
			ctx_state_release(st);
		}
		snprintf(id, sizeof(id), "stay-%03d", rand_r(&seed) % STAYING);
		r = ctx_get(shared, id, &st);
		T_CHECK(r == CTX_OK);
		if (r == CTX_OK)
			ctx_state_release(st);
		ctx_list l;
		if (ctx_list_ids(shared, "hot-", NULL, 0, &l) == CTX_OK) {
			for (size_t i = 1; i < l.count; i++)
				T_CHECK(strcmp(l.ids[i - 1], l.ids[i]) < 0);
			T_CHECK(l.count <= HOT);
			ctx_list_free(&l);
		}
	}
	return NULL;
}

static void test_churn_under_readers(void **unused)
{
	(void)unused;
	reset_failures();
	shared = test_open_memory();
	char id[32];
	for (int i = 0; i < STAYING; i++) {
		snprintf(id, sizeof(id), "stay-%03d", i);
		assert_ok(ctx_create(shared, id));
	}
	atomic_store(&stop, false);
	pthread_t c[CHURNERS], l[LOOKERS];
	for (long i = 0; i < LOOKERS; i++)
		assert_int_equal(pthread_create(&l[i], NULL, looker, (void *)(intptr_t)(i + 7)), 0);
	for (long i = 0; i < CHURNERS; i++)
		assert_int_equal(pthread_create(&c[i], NULL, churner, (void *)(intptr_t)(i + 1)),
		                 0);
	for (int i = 0; i < CHURNERS; i++)
		pthread_join(c[i], NULL);
	atomic_store(&stop, true);
	for (int i = 0; i < LOOKERS; i++)
		pthread_join(l[i], NULL);
	assert_no_thread_failures();
	/* What is left agrees between the count, lookups and the listing. */
	size_t live = 0;
	for (int i = 0; i < HOT; i++) {
		snprintf(id, sizeof(id), "hot-%02d", i);
		ctx_state *st = NULL;
		if (ctx_get(shared, id, &st) == CTX_OK) {
			live++;
			ctx_state_release(st);
		}
	}
	ctx_list all;
	assert_ok(ctx_list_ids(shared, "hot-", NULL, 0, &all));
	assert_int_equal(all.count, live);
	ctx_list_free(&all);
	assert_int_equal(ctx_count(shared), live + STAYING);
	ctx_close(shared);
}

/* The context counts its history chain in 32 bits (so that the root hint
 * fits in its 128 bytes): a depth the count could not reach is refused at
 * open, the largest one it can is taken. */
static void test_history_depth_bound(void **unused)
{
	(void)unused;
	ctx_options o;
	ctx_options_init(&o);
	ctx_store *s = NULL;
	o.history_depth = (size_t)UINT32_MAX;
	assert_int_equal(ctx_open(&o, &s), CTX_INVALID);
	assert_null(s);
	if (sizeof(size_t) > 4) {
		o.history_depth = (size_t)UINT32_MAX + 5;
		assert_int_equal(ctx_open(&o, &s), CTX_INVALID);
	}
	o.history_depth = (size_t)UINT32_MAX - 1;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "a"));
	for (int i = 0; i < 100; i++)
		assert_ok(ctx_put(s, "a", "k", 1, &i, sizeof(i), NULL));
	ctx_context *c = store_find_context(s, "a", 1);
	assert_non_null(c);
	assert_int_equal(c->kept, 101); /* nothing cut: every version kept */
	context_release(c);
	ctx_close(s);
}

/* The root hint follows the visible version: after each commit it is the
 * root of the version a read sees (what the read prefetches). */
static void test_root_hint_follows_visible(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "h"));
	ctx_context *c = store_find_context(s, "h", 1);
	assert_non_null(c);
	for (int i = 0; i < 200; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i % 37);
		assert_ok(ctx_put(s, "h", key, strlen(key), &i, sizeof(i), NULL));
		ctx_state *v = NULL;
		assert_ok(ctx_get(s, "h", &v));
		assert_true(atomic_load(&c->root_hint) == (uintptr_t)v->data.root);
		ctx_state_release(v);
	}
	context_release(c);
	ctx_close(s);
}

static ctab *growing_from(ctx_store *s)
{
	return atomic_load(&atomic_load(&s->table)->old);
}

static bool present(ctx_store *s, const char *id)
{
	ctx_context *c = store_find_context(s, id, strlen(id));
	if (c)
		context_release(c);
	return c != NULL;
}

static void put_one(ctx_store *s, const char *id)
{
	assert_ok(ctx_put(s, id, "k", 1, "v", 1, NULL));
}

/* The insert that passes 3/4 of the table publishes a new array and moves
 * only a step of the old one; until the last slot has moved, lookups,
 * counts, walks, drops and re-creates see one table. */
static void test_growth_is_incremental(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	char id[32];
	int n = 0;
	/* Fill a 4096-slot table to its 3/4 (it starts at 64 and grows). */
	while (slots(s) < 4096 || !growing_from(s)) {
		snprintf(id, sizeof(id), "g-%05d", n++);
		assert_ok(ctx_create(s, id));
		put_one(s, id);
		assert_true(n < 100000);
	}
	ctab *old = growing_from(s);
	assert_int_equal(old->mask + 1, 2048);
	assert_int_equal(slots(s), 4096);
	/* One insert moved one step, not the whole array. */
	assert_true(s->table_moved <= s->table_step);
	assert_true(s->table_moved < old->mask + 1);
	/* Every context is found, counted and walked once while both arrays
	 * are there. */
	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "g-%05d", i);
		assert_true(present(s, id));
	}
	uint64_t rev = 0;
	assert_int_equal(ctx_count_with_fields(s, &rev), (size_t)n);
	assert_int_equal(ctx_count(s), (size_t)n);
	/* Drop one that has moved and one that has not, re-create one. */
	assert_ok(ctx_drop(s, "g-00000"));
	snprintf(id, sizeof(id), "g-%05d", n - 1);
	assert_ok(ctx_drop(s, id));
	assert_false(present(s, "g-00000"));
	assert_false(present(s, id));
	assert_ok(ctx_create(s, id));
	put_one(s, id);
	assert_int_equal(ctx_create(s, "g-00001"), CTX_EXISTS);
	assert_int_equal(ctx_count_with_fields(s, &rev), (size_t)n - 1);
	/* Inserts finish the move. */
	int more = 0;
	while (growing_from(s)) {
		snprintf(id, sizeof(id), "h-%05d", more++);
		assert_ok(ctx_create(s, id));
		assert_true(more < 2048);
	}
	assert_true(more > 1); /* the move took more than one insert */
	assert_int_equal(ctx_count(s), (size_t)(n - 1 + more));
	assert_int_equal(ctx_count_with_fields(s, &rev), (size_t)n - 1);
	for (int i = 1; i < n; i++) {
		snprintf(id, sizeof(id), "g-%05d", i);
		assert_true(present(s, id));
	}
	assert_false(present(s, "g-00000"));
	ctx_close(s);
}

/* Readers look up contexts that stay, and count them, while one thread
 * creates 20,000 more (the table grows from 64 to 64Ki slots, each growth
 * moved over the inserts after it): no lookup misses, no count is short. */
#define GROW_STAY 200
static atomic_bool grow_done;

static void *grow_reader(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	while (!atomic_load(&grow_done)) {
		char id[32];
		snprintf(id, sizeof(id), "stay-%03d", rand_r(&seed) % GROW_STAY);
		ctx_state *st = NULL;
		ctx_status r = ctx_get(shared, id, &st);
		T_CHECK(r == CTX_OK);
		if (r == CTX_OK)
			ctx_state_release(st);
		if (rand_r(&seed) % 64 == 0)
			T_CHECK(ctx_count_with_fields(shared, NULL) == GROW_STAY);
	}
	return NULL;
}

static void test_growth_under_readers(void **unused)
{
	(void)unused;
	reset_failures();
	shared = test_open_memory();
	char id[32];
	for (int i = 0; i < GROW_STAY; i++) {
		snprintf(id, sizeof(id), "stay-%03d", i);
		assert_ok(ctx_create(shared, id));
		put_one(shared, id);
	}
	atomic_store(&grow_done, false);
	pthread_t r[2];
	for (long i = 0; i < 2; i++)
		assert_int_equal(
		    pthread_create(&r[i], NULL, grow_reader, (void *)(intptr_t)(i + 3)), 0);
	for (int i = 0; i < 20000; i++) {
		snprintf(id, sizeof(id), "new-%05d", i);
		assert_ok(ctx_create(shared, id));
		if (i % 3 == 0)
			assert_ok(ctx_drop(shared, id));
	}
	atomic_store(&grow_done, true);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	assert_no_thread_failures();
	assert_int_equal(ctx_count(shared), GROW_STAY + 20000 - 6667);
	ctx_close(shared);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_context_bytes),
	    cmocka_unit_test(test_churn_does_not_grow),
	    cmocka_unit_test(test_colliding_hashes),
	    cmocka_unit_test(test_recovered_table),
	    cmocka_unit_test(test_churn_under_readers),
	    cmocka_unit_test(test_history_depth_bound),
	    cmocka_unit_test(test_root_hint_follows_visible),
	    cmocka_unit_test(test_growth_is_incremental),
	    cmocka_unit_test(test_growth_under_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
