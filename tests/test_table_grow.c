/*
 * test_table_grow.c - the context table grows with the contexts.
 *
 * The table (open addressing, store.c) is rebuilt into a bigger array by
 * the create that finds it 3/4 full, while lookups go on in the old array;
 * a store opened with many contexts grows the same way during recovery.
 * What is checked: the slots keep up with the contexts (at most 3/4 used,
 * at most 4 slots per context), and every context stays findable while the
 * table is rebuilt under concurrent creates and reads (TSan and ASan builds
 * run this too).
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

#include "store.h" /* the table */

static size_t slots(ctx_store *s)
{
	return atomic_load(&s->table)->mask + 1;
}

#define CREATORS 4
#define READERS  2
#define PER      12000 /* contexts per creator: 48,000 in all, from 64 slots */

static ctx_store *store;
static atomic_long created[CREATORS]; /* contexts creator i has made so far */
static atomic_bool done;

static void *creator(void *arg)
{
	long me = (long)(intptr_t)arg;
	for (long i = 0; i < PER; i++) {
		char id[32];
		snprintf(id, sizeof(id), "c%ld-%ld", me, i);
		ctx_status st = ctx_create(store, id);
		T_CHECK(st == CTX_OK);
		atomic_store(&created[me], i + 1);
	}
	return NULL;
}

/* Looks up contexts already created (each must be there) while the table
 * is being resized. */
static void *reader(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	long reads = 0;
	while (!atomic_load(&done) || reads < 1000) {
		long who = rand_r(&seed) % CREATORS, n = atomic_load(&created[who]);
		if (n == 0)
			continue;
		char id[32];
		snprintf(id, sizeof(id), "c%ld-%ld", who, rand_r(&seed) % n);
		ctx_state *st = NULL;
		ctx_status s = ctx_get(store, id, &st);
		T_CHECK(s == CTX_OK);
		if (st)
			ctx_state_release(st);
		reads++;
	}
	return NULL;
}

static void test_grows_under_load(void **unused)
{
	(void)unused;
	reset_failures();
	store = test_open_memory();
	size_t before = slots(store);
	pthread_t c[CREATORS], r[READERS];
	for (long i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader, (void *)(intptr_t)(i + 1)), 0);
	for (long i = 0; i < CREATORS; i++)
		assert_int_equal(pthread_create(&c[i], NULL, creator, (void *)(intptr_t)i), 0);
	for (int i = 0; i < CREATORS; i++)
		pthread_join(c[i], NULL);
	atomic_store(&done, true);
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);
	assert_no_thread_failures();

	size_t n = ctx_count(store);
	assert_int_equal(n, CREATORS * PER);
	size_t after = slots(store);
	assert_true(before < n);
	assert_true(4 * n <= 3 * after); /* at most 3/4 used */
	assert_true(after <= 4 * (n + 1));
	for (long w = 0; w < CREATORS; w++)
		for (long i = 0; i < PER; i++) {
			char id[32];
			snprintf(id, sizeof(id), "c%ld-%ld", w, i);
			ctx_state *st = NULL;
			assert_ok(ctx_get(store, id, &st));
			ctx_state_release(st);
		}
	ctx_close(store);
}

static void test_sized_at_open(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("table_grow");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	enum { N = 40000 };
	for (int i = 0; i < N; i++) {
		char id[32];
		snprintf(id, sizeof(id), "ctx-%d", i);
		assert_ok(ctx_create(s, id));
	}
	ctx_close(s);

	assert_ok(ctx_open(&o, &s));
	assert_int_equal(ctx_count(s), N);
	size_t b = slots(s);
	assert_true(4 * N <= 3 * b && b <= 4 * (N + 1));
	for (int i = 0; i < N; i += 97) {
		char id[32];
		snprintf(id, sizeof(id), "ctx-%d", i);
		ctx_state *st = NULL;
		assert_ok(ctx_get(s, id, &st));
		ctx_state_release(st);
	}
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_grows_under_load),
	    cmocka_unit_test(test_sized_at_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
