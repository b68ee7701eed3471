/*
 * test_r15_create.c - the context table's big arrays are made ahead
 * (round 15, r15-create; store.c, "Growing" and TABLE_MAP_BYTES).
 *
 * An array of 256 KiB or more (16,384 slots) is a mapping of its own, not
 * a malloc block, and the next one is made and populated by the create
 * that finds the table past 3/4, after it let go of the index lock; the
 * insert after that grows into it. What is checked: with one thread, every
 * big array the table grows into is page-aligned and resident in full when
 * it is published, and the growth comes at most two inserts past 3/4 (on
 * the base the array came from calloc: not page-aligned, its pages faulted
 * in one by one under the lock); a spare left when the store closes is
 * unmapped; many threads creating and dropping at once while others read
 * keep every context findable and counted, the table never past 7/8.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store.h"

#define BIG_SLOTS 16384u /* the smallest array of 256 KiB or more */

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t array_len(size_t slots)
{
	size_t page = page_size();
	return (sizeof(ctab) + slots * sizeof(ctab_slot) + page - 1) / page * page;
}

/* Every page of t's array resident now. */
static bool resident(const ctab *t)
{
	size_t len = array_len(t->mask + 1), pages = len / page_size();
	unsigned char *vec = malloc(pages);
	assert_non_null(vec);
	bool all = mincore((void *)t, len, vec) == 0;
	for (size_t i = 0; all && i < pages; i++)
		all = vec[i] & 1;
	free(vec);
	return all;
}

static bool present(ctx_store *s, const char *id)
{
	ctx_context *c = store_find_context(s, id, strlen(id));
	if (c)
		context_release(c);
	return c != NULL;
}

/* One thread creates until the table has 128Ki slots: each big array is
 * page-aligned and resident when published, and published at most two
 * inserts past 3/4 of the one before. */
static void test_big_arrays_made_ahead(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	char id[32];
	int n = 0, big_growths = 0;
	ctab *t = atomic_load(&s->table);
	while (t->mask + 1 < 8 * BIG_SLOTS) {
		snprintf(id, sizeof(id), "a-%06d", n++);
		assert_ok(ctx_create(s, id));
		ctab *now = atomic_load(&s->table);
		if (now == t)
			continue;
		size_t cap = t->mask + 1;
		assert_int_equal(now->mask + 1, 2 * cap);
		assert_true((size_t)n <= cap / 4 * 3 + 2);
		if (now->mask + 1 >= BIG_SLOTS) {
			assert_int_equal((uintptr_t)now % page_size(), 0);
			assert_true(resident(now));
			big_growths++;
		}
		t = now;
	}
	assert_int_equal(big_growths, 4); /* 16Ki, 32Ki, 64Ki, 128Ki */
	for (int i = 0; i < n; i += 97) {
		snprintf(id, sizeof(id), "a-%06d", i);
		assert_true(present(s, id));
	}
	assert_int_equal(ctx_count(s), (size_t)n);
	ctx_close(s);
}

/* Past 3/4 of a 64Ki-slot table the spare is there, unused until the next
 * insert; closing the store unmaps it. */
static void test_spare_given_back_at_close(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	char id[32];
	int n = 0;
	while (atomic_load(&s->table)->mask + 1 < 4 * BIG_SLOTS || !s->table_spare) {
		snprintf(id, sizeof(id), "b-%06d", n++);
		assert_ok(ctx_create(s, id));
		assert_true(n < 200000);
	}
	ctab *spare = s->table_spare;
	assert_int_equal(spare->mask + 1, 8 * BIG_SLOTS);
	assert_false(s->table_preparing);
	assert_int_equal((uintptr_t)spare % page_size(), 0);
	assert_true(resident(spare));
	size_t len = array_len(spare->mask + 1);
	unsigned char vec[1];
	ctx_close(s);
	/* Unmapped: mincore says ENOMEM for a range with no mapping. */
	errno = 0;
	assert_int_equal(mincore((void *)spare, page_size(), vec), -1);
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	assert_int_equal(mincore((char *)spare + len - page_size(), page_size(), vec), -1);
	assert_int_equal(errno, ENOMEM);
}

/* Creators race over the growths (the spare made by whichever create found
 * the table past 3/4, the others inserting meanwhile) while readers look up
 * contexts that stay: nothing is missed, counts are exact. */
#define CREATORS 4
#define STAY     100
static ctx_store *shared;
static atomic_bool done;
static long per_thread;

static void *creator(void *arg)
{
	long tid = (long)(intptr_t)arg;
	char id[32];
	for (long i = 0; i < per_thread; i++) {
		snprintf(id, sizeof(id), "c%ld-%ld", tid, i);
		T_CHECK_STATUS(ctx_create(shared, id), CTX_OK);
		if (i % 5 == 4) {
			snprintf(id, sizeof(id), "c%ld-%ld", tid, i - 2);
			T_CHECK_STATUS(ctx_drop(shared, id), CTX_OK);
		}
	}
	return NULL;
}

static void *reader(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg;
	while (!atomic_load(&done)) {
		char id[32];
		snprintf(id, sizeof(id), "stay-%03d", (int)test_rand_below(&seed, STAY));
		T_CHECK(present(shared, id));
	}
	return NULL;
}

static void test_concurrent_creates(void **unused)
{
	(void)unused;
	reset_failures();
	per_thread = test_iters(40000, 12000);
	shared = test_open_memory();
	char id[32];
	for (int i = 0; i < STAY; i++) {
		snprintf(id, sizeof(id), "stay-%03d", i);
		assert_ok(ctx_create(shared, id));
	}
	atomic_store(&done, false);
	pthread_t c[CREATORS], r[2];
	for (long i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader, (void *)(intptr_t)(i + 7)), 0);
	for (long i = 0; i < CREATORS; i++)
		assert_int_equal(pthread_create(&c[i], NULL, creator, (void *)(intptr_t)i), 0);
	for (int i = 0; i < CREATORS; i++)
		pthread_join(c[i], NULL);
	atomic_store(&done, true);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	assert_no_thread_failures();
	size_t live = STAY + CREATORS * (size_t)(per_thread - per_thread / 5);
	assert_int_equal(ctx_count(shared), live);
	for (long t = 0; t < CREATORS; t++) {
		for (long i = 0; i < per_thread; i++) {
			snprintf(id, sizeof(id), "c%ld-%ld", t, i);
			assert_true(present(shared, id) == (i % 5 != 2 || i + 2 >= per_thread));
		}
	}
	ctab *t = atomic_load(&shared->table);
	size_t cap = t->mask + 1;
	assert_true(shared->table_live + shared->table_tombs <= cap / 8 * 7);
	assert_true(cap >= BIG_SLOTS);
	/* Nobody is making a spare; one left over is a big one. */
	assert_false(shared->table_preparing);
	if (shared->table_spare)
		assert_true(shared->table_spare->mask + 1 >= BIG_SLOTS);
	ctx_close(shared);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_big_arrays_made_ahead),
	    cmocka_unit_test(test_spare_given_back_at_close),
	    cmocka_unit_test(test_concurrent_creates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
